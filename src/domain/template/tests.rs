//! Tests of the template engine as its callers use it: compile, variables, render and lookup,
//! examples and properties. They must not reach into one parser's internals.

use super::parse::EXCERPT_CHARS;
use super::*;
use crate::model::{JsonObject, Message, Template, TemplateFormat};
use TemplateFormat::{FString, Mustache, None as Plain};
use proptest::prelude::*;
use serde_json::Value;
use serde_json::json;

fn obj(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("test vars must be an object, got {other}"),
    }
}

fn msg(role: &str, content: &str) -> Message {
    Message::text(role, content)
}

#[test]
fn variables_in_order_deduplicated() {
    let cases: &[(TemplateFormat, &str, &[&str])] = &[
        (
            Mustache,
            "Hi {{name}}, {{ age }} {{name}}",
            &["name", "age"],
        ),
        (
            Mustache,
            "{{customer.name}} {{  customer.id\t}}",
            &["customer.name", "customer.id"],
        ),
        (Mustache, "{{{raw}}} {{! a note }}{{x}}", &["raw", "x"]),
        (
            Mustache,
            "{{& amp}} {{a-b}} {{_x1}}",
            &["amp", "a-b", "_x1"],
        ),
        (Mustache, "a { b } }} c {x}", &[]),
        (Mustache, "\\{{not}} {{yes}}", &["yes"]),
        (Mustache, "{{b}}{{a}}{{b}}{{c}}{{a}}", &["b", "a", "c"]),
        (Mustache, "", &[]),
        (FString, "{a} {b.c} {a} {{lit}} }}", &["a", "b.c"]),
        (Plain, "{{a}} {b} \\{{c}}", &[]),
    ];
    for (format, text, expected) in cases {
        let got = variables(*format, &Template::Str((*text).into()))
            .unwrap_or_else(|e| panic!("{format} {text:?}: {e}"));
        assert_eq!(got, *expected, "{format} {text:?}");
    }
}

#[test]
fn renders_values() {
    let cases: &[(TemplateFormat, &str, Value, &str)] = &[
        (
            Mustache,
            "{{n}} {{f}} {{neg}}",
            json!({"n": 3, "f": 1.5, "neg": -2}),
            "3 1.5 -2",
        ),
        (
            Mustache,
            "{{t}}/{{f}}/{{z}}",
            json!({"t": true, "f": false, "z": null}),
            "true/false/",
        ),
        (
            Mustache,
            "{{c.name}} {{ c.address.city }}",
            json!({"c": {"name": "Ann", "address": {"city": "Oslo"}}}),
            "Ann Oslo",
        ),
        (
            Mustache,
            "{{c}} {{l}}",
            json!({"c": {"a": 1}, "l": [1, "x"]}),
            r#"{"a":1} [1,"x"]"#,
        ),
        (
            Mustache,
            "{{a.b}}",
            json!({"a.b": "exact", "a": {"b": "nested"}}),
            "exact",
        ),
        (Mustache, "{{{x}}} {{&x}}", json!({"x": "<b>"}), "<b> <b>"),
        (Mustache, "\\{{x}} {{x}}", json!({"x": "1"}), "{{x}} 1"),
        (Mustache, "a}} {b} {{x}}}", json!({"x": "1"}), "a}} {b} 1}"),
        (Mustache, "a{{! hi }}b", json!({}), "ab"),
        (Mustache, "{{x}}", json!({"x": "{{y}} {z}"}), "{{y}} {z}"),
        (
            Mustache,
            "héllo {{x}} ✓",
            json!({"x": "wörld"}),
            "héllo wörld ✓",
        ),
        (Mustache, r#"{"k": {{x}}}"#, json!({"x": 5}), r#"{"k": 5}"#),
        (FString, "{{{x}}}", json!({"x": "1"}), "{1}"),
        (
            FString,
            "{a.b}-{n}",
            json!({"a": {"b": "B"}, "n": 7}),
            "B-7",
        ),
        (FString, "{x}", json!({"x": "{y}"}), "{y}"),
        (Plain, "{{x}} {y} \\{{ }", json!({}), "{{x}} {y} \\{{ }"),
    ];
    for (format, text, vars, expected) in cases {
        let got = render_text(*format, text, &obj(vars.clone()))
            .unwrap_or_else(|e| panic!("{format} {text:?}: {e}"));
        assert_eq!(got, *expected, "{format} {text:?}");
    }
}

#[test]
fn malformed_templates_fail_with_position() {
    // (format, text, line, column, substring of the reason)
    let cases: &[(TemplateFormat, &str, usize, usize, &str)] = &[
        (Mustache, "Hello {{name", 1, 7, "unclosed `{{`"),
        (
            Mustache,
            "ok\n  {{#items}}x{{/items}}",
            2,
            3,
            "not supported",
        ),
        (Mustache, "{{^x}}", 1, 1, "not supported"),
        (Mustache, "{{/x}}", 1, 1, "not supported"),
        (Mustache, "{{>partial}}", 1, 1, "not supported"),
        (Mustache, "{{=<% %>=}}", 1, 1, "not supported"),
        (Mustache, "a {{}}", 1, 3, "invalid variable name"),
        (Mustache, "{{a b}}", 1, 1, "invalid variable name"),
        (Mustache, r#"{{"x": 1}}"#, 1, 1, "invalid variable name"),
        (Mustache, "{{1abc}}", 1, 1, "invalid variable name"),
        (Mustache, "{{a..b}}", 1, 1, "invalid variable name"),
        (Mustache, "{{a.}}", 1, 1, "invalid variable name"),
        (Mustache, "{{{x}}", 1, 1, "unclosed `{{{`"),
        (Mustache, "héé {{", 1, 5, "unclosed `{{`"),
        (
            Mustache,
            "{{ok}}\r\nx\n\t{{ bad name }}",
            3,
            2,
            "invalid variable name",
        ),
        (FString, "{x", 1, 1, "unclosed '{'"),
        (FString, "a }", 1, 3, "single '}'"),
        (FString, "x {}", 1, 3, "positional"),
        (FString, "{0}", 1, 1, "positional"),
        (FString, "{x:>10}", 1, 1, "format spec"),
        (FString, "{x!r}", 1, 1, "conversion"),
        (FString, "{ x }", 1, 1, "invalid variable name"),
        (FString, "{a{b}}", 1, 1, "unexpected '{'"),
        (FString, "ab\ncd {x.}", 2, 4, "invalid variable name"),
    ];
    for (format, text, line, column, reason) in cases {
        match CompiledTemplate::compile(*format, &Template::Str((*text).into())) {
            Err(TemplateError::Parse {
                message_index: None,
                role: None,
                line: l,
                column: c,
                reason: r,
                excerpt,
            }) => {
                assert_eq!((l, c), (*line, *column), "{format} {text:?}");
                assert!(r.contains(reason), "{format} {text:?}: {r}");
                assert!(
                    !excerpt.is_empty() && !excerpt.contains('\n'),
                    "{excerpt:?}"
                );
            }
            other => panic!("{format} {text:?}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn parse_error_display_and_excerpt() {
    let err = CompiledTemplate::compile(
        Mustache,
        &Template::Str(format!("x\nsay {{{{name {}", "y".repeat(50))),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("line 2, column 5"), "{text}");
    assert!(text.contains("unclosed `{{`"), "{text}");
    let TemplateError::Parse { excerpt, .. } = err else {
        panic!("expected a parse error");
    };
    assert!(
        excerpt.starts_with("{{name y") && excerpt.ends_with('…'),
        "{excerpt}"
    );
    assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
}

#[test]
fn missing_names_every_variable_once() {
    let compiled = CompiledTemplate::compile(
        Mustache,
        &Template::Str("{{a}} {{b.c}} {{present}} {{a}} {{d}} {{n}}".into()),
    )
    .expect("valid template");
    let vars = obj(json!({"b": {}, "present": 1, "n": null}));
    let err = compiled.render(&vars).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Missing {
            names: vec!["a".into(), "b.c".into(), "d".into()]
        }
    );
    assert_eq!(err.to_string(), "missing variables: a, b.c, d");
    assert_eq!(compiled.missing(&vars), ["a", "b.c", "d"]);
    let err = render_text(FString, "{x} {y.z}", &obj(json!({"y": "flat"}))).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Missing {
            names: vec!["x".into(), "y.z".into()]
        }
    );
}

#[test]
fn lookup_rule() {
    let vars = obj(json!({"a.b": 1, "a": {"b": 2, "c": {"d": 3}}, "s": "x", "n": null}));
    let cases: &[(&str, Option<Value>)] = &[
        ("a.b", Some(json!(1))),
        ("a.c.d", Some(json!(3))),
        ("a.c", Some(json!({"d": 3}))),
        ("n", Some(Value::Null)),
        ("s.len", None),
        ("a.x", None),
        ("zz", None),
        ("", None),
    ];
    for (name, expected) in cases {
        assert_eq!(lookup(&vars, name), expected.as_ref(), "{name}");
    }
}

#[test]
fn str_template_renders_one_user_message() {
    let compiled = CompiledTemplate::compile(Mustache, &Template::Str("Hi {{n}}".into()))
        .expect("valid template");
    let out = compiled.render(&obj(json!({"n": "Ada"}))).expect("renders");
    assert_eq!(out, vec![msg("user", "Hi Ada")]);
}

#[test]
fn chat_templates() {
    let template = Template::Chat(vec![
        msg("system", "You help {{company}}."),
        msg("developer", "Be brief."),
        msg("user", "{{question}} ({{company}})"),
        msg("assistant", "ok"),
        msg("tool", "{{result}}"),
    ]);
    let compiled = CompiledTemplate::compile(Mustache, &template).expect("valid chat");
    assert_eq!(compiled.variables(), ["company", "question", "result"]);
    let out = compiled
        .render(&obj(
            json!({"company": "Acme", "question": "Why?", "result": [1]}),
        ))
        .expect("renders");
    assert_eq!(
        out,
        vec![
            msg("system", "You help Acme."),
            msg("developer", "Be brief."),
            msg("user", "Why? (Acme)"),
            msg("assistant", "ok"),
            msg("tool", "[1]"),
        ]
    );
    assert_eq!(
        compiled.render(&obj(json!({"company": "Acme"}))),
        Err(TemplateError::Missing {
            names: vec!["question".into(), "result".into()]
        })
    );
}

#[test]
fn a_placeholder_expands_a_column_s_conversation_in_place() {
    let template = Template::Chat(vec![
        msg("system", "You help {{company}}."),
        msg("placeholder", "history"),
        msg("user", "{{question}}"),
    ]);
    let compiled = CompiledTemplate::compile(Mustache, &template).expect("valid chat");
    assert!(compiled.has_placeholder());
    assert_eq!(compiled.variables(), ["company", "history", "question"]);
    // Text from a CSV cell, or a list from JSONL: the same messages.
    let history = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "ai", "content": "It is 18C in {{company}}."}
    ]);
    for value in [history.clone(), Value::String(history.to_string())] {
        let out = compiled
            .render(&obj(
                json!({"company": "Acme", "question": "And tomorrow?", "history": value}),
            ))
            .expect("renders");
        assert_eq!(out.len(), 6);
        assert_eq!(out[0], msg("system", "You help Acme."));
        assert_eq!(out[1], msg("user", "Weather in Paris?"));
        let call = &out[2].parts.as_ref().unwrap()[0];
        assert_eq!(out[2].role, "assistant");
        assert_eq!(call["type"], "tool_call");
        assert_eq!(call["tool_call"]["name"], "weather");
        assert_eq!(out[3].role, "tool");
        assert_eq!(out[3].parts.as_ref().unwrap()[0]["tool_call_id"], "c1");
        // A conversation's text is sent as written, never rendered.
        assert_eq!(out[4], msg("assistant", "It is 18C in {{company}}."));
        assert_eq!(out[5], msg("user", "And tomorrow?"));
    }
    let empty = compiled
        .render(&obj(
            json!({"company": "A", "question": "Q", "history": "[]"}),
        ))
        .unwrap();
    assert_eq!(empty.len(), 2);
    for (value, needle) in [
        (json!("not json"), "history: not a JSON list of messages"),
        (json!({"role": "user"}), "history: not a JSON list"),
        (
            json!([{"content": "hi"}]),
            "history: message 1: it has no `role`",
        ),
        (
            json!([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]),
            "message 2: role 'bot'",
        ),
        (
            json!([{"role": "tool", "content": "x"}]),
            "needs the `tool_call_id`",
        ),
        (
            json!([{"role": "tool", "tool_call_id": "x", "content": "1"}]),
            "tool_call_id 'x' answers no call",
        ),
        (
            json!([{"role": "user", "content": "x", "tool_calls": []}]),
            "only an assistant's may",
        ),
    ] {
        let err = compiled
            .render(&obj(
                json!({"company": "A", "question": "Q", "history": value}),
            ))
            .unwrap_err();
        assert!(matches!(err, TemplateError::Conversation { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    // A placeholder names one column.
    for bad in ["", "two words", "{{a b}}"] {
        let template = Template::Chat(vec![msg("placeholder", bad), msg("user", "hi")]);
        assert!(matches!(
            CompiledTemplate::compile(Mustache, &template),
            Err(TemplateError::Placeholder { .. })
        ));
    }
    // A call written without an id gets one, which a tool message may answer.
    let plain = json!([
        {"role": "assistant", "tool_calls": [{"name": "weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "tool_call_id": "call_1_1", "content": "3C"}
    ]);
    let out = compiled
        .render(&obj(
            json!({"company": "A", "question": "Q", "history": plain}),
        ))
        .expect("renders");
    assert_eq!(
        out[1].parts.as_ref().unwrap()[0]["tool_call_id"],
        "call_1_1"
    );
    // Phoenix's form: the call is a `tool_call` part, the answer a `tool_result` part.
    let phoenix = json!([
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        {"role": "assistant", "content": [{"type": "tool_call", "tool_call_id": "p1",
            "tool_call": {"type": "function", "name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "content": [{"type": "tool_result", "tool_call_id": "p1", "tool_result": {"c": 3}}]}
    ]);
    let out = compiled
        .render(&obj(
            json!({"company": "A", "question": "Q", "history": phoenix}),
        ))
        .expect("Phoenix's parts render");
    assert_eq!(out[2].parts.as_ref().unwrap()[0]["tool_call_id"], "p1");
    let result = &out[3].parts.as_ref().unwrap()[0];
    assert_eq!(
        (out[3].role.as_str(), &result["tool_call_id"]),
        ("tool", &json!("p1"))
    );
    assert_eq!(result["tool_result"], "{\"c\":3}");
    for (value, needle) in [
        (
            json!([{"role": "tool", "content": [{"type": "tool_result", "tool_call_id": "zz", "tool_result": "1"}]}]),
            "tool_call_id 'zz' answers no call",
        ),
        (
            json!([{"role": "assistant", "content": [{"type": "tool_call", "tool_call": {"name": "w"}}]}]),
            "needs its `tool_call_id`",
        ),
        (
            json!([{"role": "user", "content": [{"type": "tool_call", "tool_call_id": "u"}]}]),
            "only an assistant's may",
        ),
    ] {
        let err = compiled
            .render(&obj(
                json!({"company": "A", "question": "Q", "history": value}),
            ))
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let braced = Template::Chat(vec![msg("placeholder", "{{ history }}"), msg("user", "hi")]);
    assert_eq!(
        CompiledTemplate::compile(Mustache, &braced)
            .unwrap()
            .variables(),
        ["history"]
    );
}

#[test]
fn chat_errors() {
    let bad_role = Template::Chat(vec![msg("user", "hi"), msg("bot", "hi")]);
    let err = CompiledTemplate::compile(Mustache, &bad_role).unwrap_err();
    assert_eq!(err, TemplateError::InvalidRole { role: "bot".into() });
    let text = err.to_string();
    assert!(
        text.contains("'bot'")
            && text.contains("system, developer, user, assistant, ai, model, tool")
    );

    let upper = Template::Chat(vec![msg("User", "hi")]);
    assert!(matches!(
        CompiledTemplate::compile(FString, &upper),
        Err(TemplateError::InvalidRole { .. })
    ));

    let empty = Template::Chat(vec![]);
    assert_eq!(
        CompiledTemplate::compile(Plain, &empty).unwrap_err(),
        TemplateError::EmptyChat
    );

    let second = Template::Chat(vec![msg("system", "fine {x}"), msg("user", "oops {x")]);
    let err = CompiledTemplate::compile(FString, &second).unwrap_err();
    assert!(
        matches!(
            &err,
            TemplateError::Parse { message_index: Some(1), role: Some(role), line: 1, column: 6, .. }
                if role == "user"
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("message 2 (user)"), "{err}");
}

#[test]
fn none_format_never_fails() {
    for text in ["{{", "}", "{x:>10}", "{{#a}}", "\\{{", "{}"] {
        let out = render_text(Plain, text, &JsonObject::new()).expect("none never fails");
        assert_eq!(out, text);
    }
}

/// One placeholder spelling per format, chosen by `style`.
fn placeholder(format: TemplateFormat, name: &str, style: usize) -> String {
    match (format, style % 3) {
        (FString, _) => format!("{{{name}}}"),
        (_, 0) => format!("{{{{{name}}}}}"),
        (_, 1) => format!("{{{{ {name}  }}}}"),
        _ => format!("{{{{{{{name}}}}}}}"),
    }
}

type Chunks = Vec<(String, String, usize, String)>;

fn chunks() -> impl Strategy<Value = (Chunks, String)> {
    let literal = "[a-zA-Z0-9 .,:;!?#=&^/>\n-]{0,12}";
    let name = "[a-zA-Z_][a-zA-Z0-9_-]{0,4}(\\.[a-z_][a-z0-9_-]{0,3}){0,2}";
    (
        prop::collection::vec((literal, name, 0..3usize, "\\PC{0,8}"), 0..8),
        literal,
    )
}

/// Builds the template text, the full variable map, the expected output and the names in order.
fn build(
    format: TemplateFormat,
    chunks: &Chunks,
    tail: &str,
) -> (String, JsonObject, String, Vec<String>) {
    let mut text = String::new();
    let mut expected = String::new();
    let mut vars = JsonObject::new();
    let mut names = Vec::new();
    for (literal, name, style, value) in chunks {
        if !vars.contains_key(name) {
            vars.insert(name.clone(), Value::String(value.clone()));
            names.push(name.clone());
        }
        text.push_str(literal);
        text.push_str(&placeholder(format, name, *style));
        expected.push_str(literal);
        if let Some(Value::String(v)) = vars.get(name) {
            expected.push_str(v);
        }
    }
    text.push_str(tail);
    expected.push_str(tail);
    (text, vars, expected, names)
}

proptest! {
    #[test]
    fn compile_never_panics(
        any_text in ".*",
        brace_text in "[{}\\\\ a-z.!#:&>=\n-]{0,30}",
    ) {
        for text in [&any_text, &brace_text] {
            for format in [Mustache, FString, Plain] {
                let _ = CompiledTemplate::compile(format, &Template::Str(text.clone()));
                let chat = Template::Chat(vec![msg("system", "x"), msg("user", text)]);
                let _ = CompiledTemplate::compile(format, &chat);
                let _ = render_text(format, text, &JsonObject::new());
            }
        }
    }

    /// Whatever compiles renders, given a value for each variable it lists: never a panic,
    /// never a missing variable it did not report.
    #[test]
    fn whatever_compiles_renders(
        any_text in ".*",
        brace_text in "[{}\\\\ a-z.!#:&>=\n-]{0,30}",
        value in ".*",
    ) {
        for text in [&any_text, &brace_text] {
            for format in [Mustache, FString, Plain] {
                let chat = Template::Chat(vec![msg("system", text), msg("user", text)]);
                for template in [Template::Str(text.clone()), chat] {
                    let Ok(compiled) = CompiledTemplate::compile(format, &template) else {
                        continue;
                    };
                    let vars: JsonObject = compiled
                        .variables()
                        .iter()
                        .map(|name| (name.clone(), Value::String(value.clone())))
                        .collect();
                    prop_assert!(compiled.render(&vars).is_ok(), "{} {:?}", format, text);
                }
            }
        }
    }

    #[test]
    fn render_is_literals_plus_values((chunks, tail) in chunks()) {
        for format in [Mustache, FString] {
            let (text, vars, expected, _) = build(format, &chunks, &tail);
            let got = render_text(format, &text, &vars);
            prop_assert_eq!(got, Ok(expected), "{} {:?}", format, text);
        }
    }

    #[test]
    fn variables_are_exactly_what_render_needs((chunks, tail) in chunks()) {
        for format in [Mustache, FString] {
            let (text, vars, _, names) = build(format, &chunks, &tail);
            let compiled = CompiledTemplate::compile(format, &Template::Str(text.clone()));
            prop_assert!(compiled.is_ok(), "{} {:?}", format, text);
            let Ok(compiled) = compiled else { continue };
            prop_assert_eq!(compiled.variables(), names.as_slice());
            prop_assert!(compiled.render(&vars).is_ok());
            prop_assert!(compiled.missing(&vars).is_empty());
            for name in &names {
                let mut fewer = vars.clone();
                fewer.remove(name);
                prop_assert_eq!(
                    compiled.render(&fewer),
                    Err(TemplateError::Missing { names: vec![name.clone()] })
                );
            }
        }
    }
}
