//! Fuzzes the template parser: any text, in every format, as a string template and as a chat
//! message, must compile or fail with an error (never panic), and whatever compiles must render
//! once every variable it lists has a value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::model::{JsonObject, Message, Template, TemplateFormat};
use runner::template::{CompiledTemplate, render_text};
use serde_json::Value;

fuzz_target!(|text: &str| {
    for format in [
        TemplateFormat::Mustache,
        TemplateFormat::FString,
        TemplateFormat::None,
    ] {
        let _ = render_text(format, text, &JsonObject::new());
        let chat = Template::Chat(vec![
            Message {
                role: "system".into(),
                content: text.into(),
            },
            Message {
                role: "user".into(),
                content: text.into(),
            },
        ]);
        for template in [Template::Str(text.to_string()), chat] {
            let Ok(compiled) = CompiledTemplate::compile(format, &template) else {
                continue;
            };
            // A value full of delimiters must come out as it went in, never parsed again.
            let vars: JsonObject = compiled
                .variables()
                .iter()
                .map(|name| (name.clone(), Value::String("{{x}} {y} }}".into())))
                .collect();
            let rendered = compiled.render(&vars).expect("whatever compiles renders");
            assert_eq!(rendered.len(), template_messages(&template));
            assert_eq!(compiled.missing(&vars), Vec::<String>::new());
        }
    }
});

fn template_messages(template: &Template) -> usize {
    match template {
        Template::Str(_) => 1,
        Template::Chat(messages) => messages.len(),
    }
}
