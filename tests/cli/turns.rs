//! Multi-turn rows: a row's `turns` run in sequence against the mock, each answer appended
//! before the next turn, scored per turn (against `expected_turns`) with a row verdict; a
//! malformed list is refused before any call, naming the row.

use crate::{Env, Mock};

fn setup(env: &Env) {
    let messages = env.write(
        "sys.json",
        r#"[{"role": "system", "content": "You help {{company}}."}]"#,
    );
    env.ok(&[
        "prompt",
        "create",
        "helper",
        "--messages-file",
        messages.to_str().unwrap(),
        "--model",
        "mock",
    ]);
}

#[test]
fn each_turn_is_answered_in_sequence_and_scored() {
    let env = Env::new();
    setup(&env);
    let mock = Mock::start(&env, &[]);
    let data = env.write(
        "chats.jsonl",
        r#"{"id": "a", "company": "Acme", "turns": ["hello", "refund please"], "expected_turns": ["hello", "refund"]}
{"id": "b", "company": "Acme", "turns": ["hi", "cancel"], "expected_turns": ["hi", "refund"]}
"#,
    );
    let out = env.run(&[
        "experiment",
        "--prompt",
        "helper",
        "--dataset",
        data.to_str().unwrap(),
        "--base-url",
        &mock.url,
        "--eval",
        "contains",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mock.requests(), 4, "two turns a row");
    let shown = env.json(&["experiment", "show", "last", "--rows", "--json"]);
    let row = |id: &str| {
        shown["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["row_id"] == id)
            .unwrap()
            .clone()
    };
    let a = row("a");
    let sent: Vec<String> = a["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            "system:You help Acme.",
            "user:hello",
            "assistant:hello",
            "user:refund please",
            "assistant:refund please"
        ]
    );
    assert_eq!(a["output"], "refund please");
    assert_eq!(a["scores"][0]["pass"], true);
    assert_eq!(a["scores"][0]["reason"], "all 2 turns pass");
    assert_eq!(
        a["extra"]["turns"][1]["scores"][0]["reason"],
        "output contains \"refund\""
    );
    let b = row("b");
    assert_eq!(b["scores"][0]["pass"], false);
    assert_eq!(
        b["scores"][0]["reason"],
        "turn 2: output does not contain \"refund\""
    );
    assert_eq!(b["scores"][0]["score"], 0.5, "the mean of its turns");
    assert_eq!(b["extra"]["turns"][0]["scores"][0]["pass"], true);
}

#[test]
fn malformed_turns_are_refused_before_any_call() {
    let env = Env::new();
    setup(&env);
    let mock = Mock::start(&env, &[]);
    let cases = [
        (
            "num.csv",
            "id,company,turns\nx,Acme,\"[1]\"\n",
            "row x: turns: turn 1 is not text",
        ),
        (
            "empty.csv",
            "id,company,turns\ny,Acme,[]\n",
            "row y: turns: an empty list",
        ),
        (
            "count.csv",
            "id,company,turns,expected_turns\nz,Acme,\"[\"\"a\"\", \"\"b\"\"]\",\"[\"\"a\"\"]\"\n",
            "row z: expected_turns has 1 answers for 2 turns",
        ),
    ];
    for (name, text, needle) in cases {
        let data = env.write(name, text);
        let err = env.fails(
            &[
                "experiment",
                "--prompt",
                "helper",
                "--dataset",
                data.to_str().unwrap(),
                "--base-url",
                &mock.url,
            ],
            2,
        );
        assert!(err.contains(needle), "{name}: {err}");
        assert!(err.contains("hint:"), "{err}");
    }
    assert_eq!(mock.requests(), 0);
}
