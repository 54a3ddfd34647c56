//! Conversations as inputs: a chat template's placeholder message expands a dataset column's
//! list of messages in place (`prompt render --json` and what the endpoint receives show it),
//! and a malformed list is refused before any call, naming its row.

use crate::{Env, Mock};
use serde_json::{Value, json};

fn setup(env: &Env) {
    let messages = env.write(
        "support.json",
        r#"[{"role": "system", "content": "You are {{company}}'s support agent."},
            {"role": "placeholder", "content": "history"},
            {"role": "user", "content": "{{question}}"}]"#,
    );
    env.ok(&[
        "prompt",
        "create",
        "support",
        "--messages-file",
        messages.to_str().unwrap(),
        "--model",
        "mock",
    ]);
}

#[test]
fn a_placeholder_expands_each_row_s_conversation() {
    let env = Env::new();
    setup(&env);
    // Rendered by hand: the two messages of the history sit between system and user.
    let vars = env.write(
        "vars.json",
        &json!({"company": "Acme", "question": "And now?",
                "history": [{"role": "user", "content": "Where is order 7?"},
                            {"role": "assistant", "content": "It ships today."}]})
        .to_string(),
    );
    let rendered = env.json(&[
        "prompt",
        "render",
        "support",
        "--vars-file",
        vars.to_str().unwrap(),
        "--json",
    ]);
    let roles: Vec<&str> = rendered["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{rendered}"))
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "{rendered}");
    assert_eq!(rendered["messages"][2]["content"], "It ships today.");
    // Langfuse's placeholder form reads the same.
    let langfuse = env.write(
        "langfuse.json",
        r#"[{"role": "system", "content": "You are {{company}}'s support agent."},
            {"type": "placeholder", "name": "history"},
            {"role": "user", "content": "{{question}}"}]"#,
    );
    env.ok(&[
        "prompt",
        "create",
        "support2",
        "--messages-file",
        langfuse.to_str().unwrap(),
    ]);
    let again = env.json(&[
        "prompt",
        "render",
        "support2",
        "--vars-file",
        vars.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(again["messages"], rendered["messages"]);
    // An experiment sends each row's conversation: a JSONL list and a CSV cell alike.
    let mock = Mock::start(&env, &[]);
    let data = env.write(
        "threads.jsonl",
        &[
            json!({"id": "a", "company": "Acme", "question": "Refund?",
                   "history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}),
            json!({"id": "b", "company": "Acme", "question": "Status?", "history": []}),
            json!({"id": "c", "company": "Acme", "question": "Again?",
                   "history": "[{\"role\": \"user\", \"content\": \"first\"}]"}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n"),
    );
    env.ok(&[
        "experiment",
        "--prompt",
        "support",
        "--dataset",
        data.to_str().unwrap(),
        "--base-url",
        &mock.url,
    ]);
    let shown = env.json(&["experiment", "show", "last", "--rows", "--json"]);
    let sent = |id: &str| -> Vec<(String, String)> {
        let row = shown["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["row_id"] == id)
            .unwrap();
        row["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_string(),
                    m["content"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let system = (
        "system".to_string(),
        "You are Acme's support agent.".to_string(),
    );
    assert_eq!(
        sent("a"),
        [
            system.clone(),
            ("user".into(), "Hi".into()),
            ("assistant".into(), "Hello!".into()),
            ("user".into(), "Refund?".into())
        ]
    );
    assert_eq!(
        sent("b"),
        [system.clone(), ("user".into(), "Status?".into())]
    );
    assert_eq!(sent("c")[1], ("user".into(), "first".into()));
    // The mock echoes the last user message: the question, after the history.
    let row_a = shown["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["row_id"] == "a")
        .unwrap();
    assert_eq!(row_a["output"], "Refund?");
}

#[test]
fn a_malformed_conversation_is_refused_before_any_call_naming_its_row() {
    let env = Env::new();
    setup(&env);
    let mock = Mock::start(&env, &[]);
    let data = env.write(
        "threads.csv",
        "id,company,question,history\n\
         fine,Acme,Q,[]\n\
         broken,Acme,Q,\"[{\"\"role\"\": \"\"bot\"\", \"\"content\"\": \"\"hi\"\"}]\"\n",
    );
    let err = env.fails(
        &[
            "experiment",
            "--prompt",
            "support",
            "--dataset",
            data.to_str().unwrap(),
            "--base-url",
            &mock.url,
        ],
        2,
    );
    assert!(
        err.contains("row broken: history: message 1: role 'bot'"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(mock.requests(), 0);
    // A placeholder that names no column is refused when the prompt is made.
    let bad = env.write(
        "bad.json",
        r#"[{"role": "placeholder", "content": "two words"}, {"role": "user", "content": "hi"}]"#,
    );
    let err = env.fails(
        &[
            "prompt",
            "create",
            "bad",
            "--messages-file",
            bad.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("placeholder message 1"), "{err}");
}
