//! Tests of prompt files: each format read, every refusal with its line, and a stored version written back and read again unchanged.

use super::*;
use serde_json::{Value, json};

fn version(template: Template, format: TemplateFormat) -> PromptVersion {
    let mut params = JsonObject::new();
    params.insert("temperature".into(), json!(0.2));
    params.insert("max_tokens".into(), json!(500));
    params.insert("stop".into(), json!(["\n\n", "END"]));
    params.insert("response_format".into(), json!({"type": "json_object"}));
    let mut metadata = JsonObject::new();
    metadata.insert("owner".into(), json!("support-team"));
    metadata.insert("reviewed".into(), json!(true));
    metadata.insert("ticket".into(), json!(1234));
    metadata.insert(
        "nested".into(),
        json!({"a": [1, 2.5, "x"], "b": {"c": "yes"}}),
    );
    let hash = content_hash(format, &template, Some("gpt-4o-mini"), &params, &metadata);
    PromptVersion {
        id: "0193-id".into(),
        prompt: "greeting".into(),
        seq: 3,
        template_type: template.kind(),
        format,
        template,
        model: Some("gpt-4o-mini".into()),
        provider: None,
        params,
        metadata,
        description: Some("Greets a customer: politely".into()),
        message: Some("not written to the file".into()),
        author: "tester".into(),
        content_hash: hash,
        created_at: "2025-01-01T00:00:00Z".into(),
    }
}

/// Texts that a naive writer gets wrong: line ends, indentation, YAML 1.1 words, quotes,
/// comment and flow characters, long lines, non-ASCII.
fn awkward_texts() -> Vec<String> {
    vec![
        "Hello {{name}}".into(),
        "Hello {{name}}\n".into(),
        "Hello {{name}}\n\n\n".into(),
        "\nleading line break {{x}}".into(),
        "  indented first line {{x}}\nthen not".into(),
        "trailing spaces   \nand a tab\there\t\n".into(),
        "yes".into(),
        "null".into(),
        "123".into(),
        "- looks like a list\n# looks like a comment\nkey: looks like a map {{x}}".into(),
        "'single' and \"double\" quotes, a backslash \\ and {braces}".into(),
        "windows line ends\r\nstay\r\n".into(),
        format!("a long line {} end", "word ".repeat(60)),
        "Grüße, 你好, emoji 🙂 {{name}}".into(),
        "---\n...\n%YAML".into(),
        "\"\"\" and ''' inside".into(),
    ]
}

#[test]
fn a_rendered_file_reads_back_the_same_in_every_syntax() {
    for syntax in [Syntax::Yaml, Syntax::Json, Syntax::Toml] {
        for text in awkward_texts() {
            let v = version(Template::Str(text.clone()), TemplateFormat::Mustache);
            let tags = vec!["staging".to_string(), "canary".to_string()];
            let rendered =
                render(&v, &tags, syntax).unwrap_or_else(|e| panic!("{syntax:?} {text:?}: {e}"));
            let path = PathBuf::from(format!("greeting.{}", extension(syntax)));
            let back = parse(&path, &rendered)
                .unwrap_or_else(|e| panic!("{syntax:?} {text:?}: {e:?}\n{rendered}"));
            assert!(back.matches(&v), "{syntax:?} {text:?}:\n{rendered}");
            assert_eq!(back.template, v.template);
            assert_eq!(back.tags, tags);
            assert_eq!(back.message, None, "the version's message is not written");
            assert_eq!(back.name, "greeting");
        }
        let chat = Template::Chat(vec![
            Message::text("system", "You are {name}.\nBe brief.\n"),
            Message::text("user", "{query}"),
            Message::with_parts(
                "assistant",
                vec![
                    json!({"type": "text", "text": "Looking it up: {query}"}),
                    json!({"type": "tool_call", "tool_call_id": "call_1",
                           "tool_call": {"type": "function", "name": "lookup", "arguments": "{}"}}),
                ],
            ),
        ]);
        let mut v = version(chat, TemplateFormat::FString);
        v.provider = Some("ANTHROPIC".into());
        let rendered = render(&v, &[], syntax).unwrap();
        let back = parse(
            &PathBuf::from(format!("greeting.{}", extension(syntax))),
            &rendered,
        )
        .unwrap();
        assert!(back.matches(&v), "{syntax:?}:\n{rendered}");
        assert_eq!(back.format, TemplateFormat::FString);
        assert_eq!(back.template, v.template);
        assert_eq!(back.provider.as_deref(), Some("ANTHROPIC"));
        let mut elsewhere = v.clone();
        elsewhere.provider = None;
        assert!(
            !back.matches(&elsewhere),
            "the provider is part of a file's content"
        );
    }
}

#[test]
fn a_yaml_file_is_written_for_people() {
    let v = version(
        Template::Str("You are a support agent for {{company}}.\nCustomer: {{query}}\n".into()),
        TemplateFormat::Mustache,
    );
    let text = render(&v, &["staging".into()], Syntax::Yaml).unwrap();
    insta::assert_snapshot!(text);
}

#[test]
fn toml_cannot_hold_null_and_says_so() {
    let mut v = version(Template::Str("hi".into()), TemplateFormat::None);
    v.metadata.insert("reviewer".into(), Value::Null);
    v.content_hash = content_hash(
        v.format,
        &v.template,
        v.model.as_deref(),
        &v.params,
        &v.metadata,
    );
    let refused = render(&v, &[], Syntax::Toml).unwrap_err();
    assert!(refused.contains("unsupported"), "{refused}");
    assert!(render(&v, &[], Syntax::Yaml).is_ok());
    assert!(render(&v, &[], Syntax::Json).is_ok());
}

/// (file name, text, a word each reason must contain; empty: the file is good)
fn cases() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        ("ok.yaml", "template: Hello {{name}}\n", vec![]),
        (
            "history.yaml",
            "messages:\n  - role: placeholder\n    content: history\n  - role: user\n    content: '{{q}}'\n",
            vec![],
        ),
        (
            "ok.yml",
            "template: Hello {{name}}\nformat: mustache\n",
            vec![],
        ),
        (
            "ok.json",
            r#"{"$schema": "../schemas/prompt-file.schema.json", "template": "Hi {name}", "format": "fstring", "params": {"temperature": 0.5, "custom": [1]}, "tags": ["staging"]}"#,
            vec![],
        ),
        (
            "ok.toml",
            "model = \"gpt-4o\"\ntemplate = \"Hi\"\n[params]\nmax_tokens = 10\n[metadata]\nowner = \"me\"\n",
            vec![],
        ),
        (
            "chat.yaml",
            "messages:\n  - role: system\n    content: Be brief.\n  - role: user\n    content: '{{q}}'\n",
            vec![],
        ),
        ("empty.yaml", "", vec!["empty"]),
        ("none.yaml", "model: gpt-4o\n", vec!["needs a template"]),
        (
            "both.yaml",
            "template: a\nmessages:\n  - role: user\n    content: b\n",
            vec!["both"],
        ),
        (
            "unknown.yaml",
            "template: a\ntemprature: 0.2\n",
            vec!["temprature"],
        ),
        ("format.yaml", "template: a\nformat: jinja\n", vec!["jinja"]),
        (
            "role.yaml",
            "messages:\n  - role: robot\n    content: b\n",
            vec!["robot"],
        ),
        (
            "nochat.yaml",
            "messages: []\n",
            vec!["at least one message"],
        ),
        (
            "extra.yaml",
            "messages:\n  - role: user\n    content: b\n    name: x\n",
            vec!["name"],
        ),
        (
            "parts.yaml",
            "messages:\n  - role: user\n    parts:\n      - {type: text, text: '{{q}}'}\n",
            vec![],
        ),
        (
            "noparts.yaml",
            "messages:\n  - role: user\n  - role: ai\n    content: a\n    parts: []\n",
            vec!["message 1 needs a content", "message 2 has both"],
        ),
        ("brace.yaml", "template: 'Hello {{name'\n", vec!["template"]),
        (
            "temp.yaml",
            "template: a\nparams:\n  temperature: 3\n  max_tokens: 0\n",
            vec!["max_tokens must be", "temperature must be"],
        ),
        (
            "tags.yaml",
            "template: a\ntags: [staging, '123', staging, 'a b']\n",
            vec!["123", "twice", "a b"],
        ),
        ("bad name.yaml", "template: a\n", vec!["prompt name"]),
        ("broken.json", "{\"template\": ", vec!["invalid JSON"]),
        (
            "broken.toml",
            "template = \n",
            vec!["invalid TOML at line 1"],
        ),
        ("broken.yaml", "template: [a\n", vec!["invalid YAML"]),
        ("list.yaml", "- template: a\n", vec!["invalid YAML"]),
        ("number.json", r#"{"template": 12}"#, vec!["invalid JSON"]),
        (
            "params.yaml",
            "template: a\nparams: [1]\n",
            vec!["invalid YAML"],
        ),
    ]
}

#[test]
fn every_problem_of_a_file_is_named() {
    for (name, text, words) in cases() {
        let result = parse(Path::new(name), text);
        if words.is_empty() {
            assert!(result.is_ok(), "{name}: {result:?}");
            continue;
        }
        let reasons = result.expect_err(name);
        assert_eq!(reasons.len(), words.len(), "{name}: {reasons:?}");
        for (reason, word) in reasons.iter().zip(&words) {
            assert!(reason.contains(word), "{name}: {reason:?} lacks {word:?}");
        }
    }
}

fn schema() -> jsonschema::Validator {
    let text = include_str!("../../../schemas/prompt-file.schema.json");
    jsonschema::validator_for(&serde_json::from_str(text).unwrap()).unwrap()
}

/// The file's text as the JSON value the schema sees (what an editor's YAML / TOML plugin
/// hands a JSON Schema validator), or None when it is not a document at all.
fn as_json(name: &str, text: &str) -> Option<Value> {
    match Syntax::of(Path::new(name))? {
        Syntax::Yaml => serde_saphyr::from_str::<Value>(text).ok(),
        Syntax::Json => serde_json::from_str(text).ok(),
        Syntax::Toml => toml::from_str::<Value>(text).ok(),
    }
}

#[test]
fn the_json_schema_accepts_what_runner_accepts_and_rejects_what_it_rejects() {
    let schema = schema();
    // Beyond the common cases: what a schema can see of each rule.
    let mut all = cases();
    all.extend([
        (
            "n.json",
            r#"{"template": "a", "params": {"n": 1.5}}"#,
            vec!["n must"],
        ),
        (
            "s.json",
            r#"{"template": "a", "params": {"stop": [1]}}"#,
            vec!["stop"],
        ),
        ("d.json", r#"{"template": "a", "tags": [".."]}"#, vec![".."]),
        (
            "u.json",
            r#"{"template": "a", "params": {"user": "u", "x": null}}"#,
            vec![],
        ),
        (
            "m.json",
            r#"{"template": "a", "model": null, "metadata": {"k": null}}"#,
            vec![],
        ),
    ]);
    for (name, text, words) in all {
        let runner_accepts = parse(Path::new(name), text).is_ok();
        assert_eq!(runner_accepts, words.is_empty(), "{name}");
        // Two things only runner can check: the file's name and the template's syntax.
        if matches!(name, "bad name.yaml" | "brace.yaml") {
            continue;
        }
        let schema_accepts = as_json(name, text).is_some_and(|v| schema.is_valid(&v));
        assert_eq!(
            schema_accepts, runner_accepts,
            "{name}: the schema and runner disagree"
        );
    }
}

#[test]
fn the_json_schema_accepts_every_file_runner_writes() {
    let schema = schema();
    for syntax in [Syntax::Yaml, Syntax::Json, Syntax::Toml] {
        for text in awkward_texts() {
            let v = version(Template::Str(text), TemplateFormat::Mustache);
            let name = format!("greeting.{}", extension(syntax));
            let rendered = render(&v, &["staging".into()], syntax).unwrap();
            let value = as_json(&name, &rendered).unwrap();
            let errors: Vec<String> = schema.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{name}: {errors:?}\n{rendered}");
        }
    }
}

#[test]
fn reading_a_folder_reports_every_bad_file_and_two_files_for_one_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("good.yaml", "template: hi\n");
    write("twice.yaml", "template: a\n");
    write("twice.json", r#"{"template": "a"}"#);
    write("bad.toml", "template = 1\n");
    write("README.md", "not a prompt");
    write(".hidden.yaml", "not: read");
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    std::fs::write(dir.path().join("latin1.yaml"), b"template: caf\xe9\n").unwrap();
    let (sources, problems) = read_dir(dir.path()).unwrap();
    assert_eq!(
        sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["good"]
    );
    let shown: Vec<String> = problems
        .iter()
        .map(|p| {
            format!(
                "{}: {}",
                p.path.file_name().unwrap().to_string_lossy(),
                p.reasons.join("; ")
            )
        })
        .collect();
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0].starts_with("bad.toml: invalid TOML"), "{shown:?}");
    assert_eq!(shown[1], "latin1.yaml: it is not UTF-8 text");
    assert!(
        shown[2].starts_with("twice.json: prompt 'twice' has 2 files"),
        "{shown:?}"
    );
}
