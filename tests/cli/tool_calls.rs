//! Tool calls as results, offline against the mock: the mock answers with calls from its rules,
//! each result keeps them (`experiment show`, `--json`, CSV), and `tool-call`, `tool-name` and
//! `tool-args-valid` judge them with reasons that name the first difference; a dataset or a
//! version that lacks what an evaluator needs is refused before any call.

use crate::{Env, Mock};
use serde_json::{Value, json};

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"},
  "days": {"type": "integer", "minimum": 1}}, "required": ["city"],
  "additionalProperties": false}}},
  {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}}]"#;

/// Rules: weather in a city is a call (with the city captured), "two days" a call with a bad
/// argument, "clock" two calls, anything else text.
const RULES: &str = r#"
- pattern: 'weather in (\w+)'
  tool_calls:
    - name: weather
      arguments: {city: "$1"}
- pattern: 'two days'
  tool_calls:
    - name: weather
      arguments: {city: Paris, days: "two"}
- pattern: 'clock'
  reply: 'Checking.'
  tool_calls:
    - name: time
      arguments: {}
    - name: weather
      arguments: {city: Oslo}
"#;

fn setup(env: &Env) -> (Mock, String) {
    let tools = format!("tools={}", TOOLS.replace('\n', " "));
    env.ok(&[
        "prompt",
        "create",
        "assistant",
        "--template",
        "{{query}}",
        "--model",
        "mock",
        "--param",
        &tools,
    ]);
    let rules = env.write("rules.yaml", RULES);
    let mock = Mock::start(env, &["--responses", rules.to_str().unwrap()]);
    let data = env.write(
        "calls.csv",
        "id,query,expected_tool_calls\n\
         paris,weather in Paris,\"[{\"\"name\"\": \"\"weather\"\", \"\"arguments\"\": {\"\"city\"\": \"\"Paris\"\"}}]\"\n\
         lyon,weather in Lyon,\"[{\"\"name\"\": \"\"weather\"\", \"\"arguments\"\": {\"\"city\"\": \"\"Paris\"\"}}]\"\n\
         days,two days please,\"[{\"\"name\"\": \"\"weather\"\", \"\"arguments\"\": {\"\"city\"\": \"\"Paris\"\"}}]\"\n\
         clock,clock and weather,\"[{\"\"name\"\": \"\"weather\"\", \"\"arguments\"\": {\"\"city\"\": \"\"Oslo\"\"}}, {\"\"name\"\": \"\"time\"\", \"\"arguments\"\": {}}]\"\n\
         chat,hello there,[]\n",
    );
    (mock, data.to_str().unwrap().to_string())
}

/// Row `id`'s verdict and reason from `evaluator`.
fn score(rows: &[Value], id: &str, evaluator: &str) -> (bool, String) {
    let row = rows.iter().find(|r| r["row_id"] == id).unwrap();
    let s = row["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["evaluator"] == evaluator)
        .unwrap_or_else(|| panic!("no {evaluator} score on {id}: {row}"));
    (
        s["pass"].as_bool().unwrap(),
        s["reason"].as_str().unwrap().to_string(),
    )
}

const ALL: [&str; 4] = [
    "tool-call",
    "tool-call:any-order",
    "tool-name",
    "tool-args-valid",
];

/// `runner experiment` of the assistant over `data` against `url` with `evals`, gated on nothing.
fn experiment(env: &Env, data: &str, url: &str, evals: &[&str]) -> std::process::Output {
    let mut args = vec![
        "experiment",
        "--prompt",
        "assistant",
        "--dataset",
        data,
        "--base-url",
        url,
    ];
    for eval in evals {
        args.extend(["--eval", eval]);
    }
    args.extend(["--min-pass-rate", "0"]);
    env.run(&args)
}

#[test]
fn the_mock_s_tool_calls_are_kept_and_judged() {
    let env = Env::new();
    let (mock, data) = setup(&env);
    let out = experiment(&env, &data, &mock.url, &ALL);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = env.json(&["experiment", "show", "last", "--json", "--rows"]);
    let rows = shown["rows"].as_array().unwrap();
    // The calls are stored in order, arguments as JSON, with the endpoint's ids.
    let paris = rows.iter().find(|r| r["row_id"] == "paris").unwrap();
    let calls = &paris["extra"]["tool_calls"];
    assert_eq!(calls[0]["name"], "weather");
    assert_eq!(calls[0]["arguments"], json!({"city": "Paris"}));
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(paris["output"], "");
    assert_eq!(paris["finish_reason"], "tool_calls");
    for evaluator in ALL {
        assert!(score(rows, "paris", evaluator).0, "{evaluator}");
    }
    // The first difference, named.
    assert_eq!(
        score(rows, "lyon", "tool-call"),
        (false, "city: expected \"Paris\", got \"Lyon\"".into())
    );
    assert!(score(rows, "lyon", "tool-name").0, "the same tool");
    assert!(score(rows, "lyon", "tool-args-valid").0, "valid arguments");
    // An argument the tool's schema refuses.
    let (pass, reason) = score(rows, "days", "tool-args-valid");
    assert!(!pass && reason.contains("/days"), "{reason}");
    // Two calls in the other order: only `any-order` and `tool-name` accept them.
    assert_eq!(
        score(rows, "clock", "tool-call").1,
        "call 1: expected weather, got time"
    );
    for evaluator in ["tool-call:any-order", "tool-name", "tool-args-valid"] {
        assert!(score(rows, "clock", evaluator).0, "{evaluator}");
    }
    // No call expected, none made.
    assert_eq!(
        score(rows, "chat", "tool-call"),
        (true, "no tool call, as expected".into())
    );
    // The table shows the calls where the answer is.
    let table = env.ok(&["experiment", "show", "last", "--rows"]);
    assert!(table.contains("→ weather"), "{table}");
    // So does the CSV.
    let csv = env.path("rows.csv");
    env.ok(&["experiment", "show", "last", "--csv", csv.to_str().unwrap()]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.lines().next().unwrap().contains(",tool_calls,"),
        "{text}"
    );
    assert!(text.contains("\"\"city\"\":\"\"Paris\"\""), "{text}");
}

/// `compare` shows a row answered by tool calls alone with its calls, not as an empty answer.
#[test]
fn compare_shows_an_answer_made_of_calls() {
    let env = Env::new();
    let (rules, data) = setup(&env);
    // The baseline's endpoint answers in text (the mock without rules echoes), the
    // candidate's with calls: the rows a call was expected on improve.
    let echo = Mock::start(&env, &[]);
    let mut ids = Vec::new();
    for mock in [&echo, &rules] {
        let out = experiment(&env, &data, &mock.url, &["tool-name"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(
            env.json(&["experiment", "show", "last", "--json"])["experiment"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let compared = env.json(&[
        "compare",
        "--baseline-experiment",
        &ids[0],
        "--candidate-experiment",
        &ids[1],
        "--json",
    ]);
    let improved = compared["comparison"]["improved"]
        .as_array()
        .or_else(|| compared["improved"].as_array())
        .unwrap_or_else(|| panic!("no improved rows: {compared}"));
    let paris = improved
        .iter()
        .find(|r| r["row_id"] == "paris")
        .unwrap_or_else(|| panic!("{compared}"));
    assert_eq!(
        paris["candidate"]["output"], "→ weather({\"city\":\"Paris\"})",
        "{paris}"
    );
    let text = env.ok(&[
        "compare",
        "--baseline-experiment",
        &ids[0],
        "--candidate-experiment",
        &ids[1],
    ]);
    assert!(text.contains("→ weather"), "{text}");
}

#[test]
fn what_a_tool_evaluator_needs_is_checked_before_any_call() {
    let env = Env::new();
    let (mock, _) = setup(&env);
    let plain = env.write("plain.csv", "query\nweather in Paris\n");
    env.ok(&[
        "prompt",
        "create",
        "bare",
        "--template",
        "{{query}}",
        "--model",
        "mock",
    ]);
    let refused = |prompt: &str, eval: &str| {
        env.fails(
            &[
                "experiment",
                "--prompt",
                prompt,
                "--dataset",
                plain.to_str().unwrap(),
                "--base-url",
                &mock.url,
                "--eval",
                eval,
            ],
            2,
        )
    };
    let err = refused("assistant", "tool-call");
    assert!(err.contains("has no expected_tool_calls column"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let err = refused("bare", "tool-args-valid");
    assert!(err.contains("bare v1 declares none"), "{err}");
    let err = refused("assistant", "tool-call:sideways");
    assert!(err.contains("unknown option 'sideways'"), "{err}");
    assert_eq!(mock.requests(), 0);
}
