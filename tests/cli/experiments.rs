//! `runner experiment` against a real HTTP endpoint on a random loopback port.

use crate::fault_server::FaultServer;
use crate::{Env, dump, echo_dataset as csv, echo_prompt};
use serde_json::{Value, json};
use std::time::Duration;

fn run_json(env: &Env, server: &FaultServer, extra: &[&str]) -> Value {
    let base = server.base_url();
    let mut args = vec!["experiment", "--base-url", base.as_str(), "--json"];
    args.extend_from_slice(extra);
    env.json(&args)
}

fn rows(env: &Env, id: &str) -> Vec<Value> {
    let shown = env.json(&["experiment", "show", id, "--rows", "--json"]);
    shown["rows"].as_array().unwrap().clone()
}

#[test]
fn seed_flow_runs_production_and_staging() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    env.ok(&[
        "prompt",
        "create",
        "customer_support_greeting",
        "--template",
        "You are a support agent for {{company_name}}. Customer Query: {{query}}",
        "--model",
        "gpt-4",
        "--param",
        "temperature=0.7",
        "--param",
        "max_tokens=500",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "customer_support_greeting",
        "--template",
        "Support for {{company_name}}, escalate when asked twice. Query: {{query}}",
        "-m",
        "Added escalation guidelines",
        "--tag",
        "staging",
    ]);
    let dataset = env.write(
        "queries.csv",
        "id,company_name,query,expected\n1,Acme,Where is my order?,order\n2,Acme,\"Refund, please\",Refund\n3,Acme,Reset my password,password\n",
    );
    let dataset = dataset.to_str().unwrap();
    let mut ids = Vec::new();
    for tag in ["production", "staging"] {
        let out = run_json(
            &env,
            &server,
            &[
                "--prompt",
                "customer_support_greeting",
                "--tag",
                tag,
                "--dataset",
                dataset,
            ],
        );
        assert_eq!(out["experiment"]["status"], "completed");
        assert_eq!(out["experiment"]["tag"], tag);
        assert_eq!(out["experiment"]["dataset"]["rows"], 3);
        assert_eq!(out["summary"]["ok"], 3);
        assert_eq!(out["summary"]["errored"], 0);
        // Default evaluator with an expected column: icontains.
        assert_eq!(out["experiment"]["evaluators"], json!(["icontains"]));
        assert_eq!(out["summary"]["evaluators"][0]["pass_rate"], 1.0);
        ids.push(out["experiment"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(server.log().len(), 6);
    let listed = env.json(&[
        "experiment",
        "list",
        "--prompt",
        "customer_support_greeting",
        "--json",
    ]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // Each result keeps its inputs and what was sent.
    let staging = rows(&env, &ids[1]);
    assert_eq!(staging.len(), 3);
    assert_eq!(staging[1]["row_id"], "2");
    assert_eq!(staging[1]["vars"]["query"], "Refund, please");
    assert_eq!(
        staging[1]["messages"],
        json!([{"role": "user", "content": "Support for Acme, escalate when asked twice. Query: Refund, please"}])
    );
    assert_eq!(staging[1]["status"], "ok");
    assert_eq!(staging[1]["attempts"], 1);
    assert_eq!(staging[1]["finish_reason"], "stop");
    assert!(staging[1]["prompt_tokens"].as_i64().is_some());
    let table = env.ok(&["experiment", "show", &ids[0], "--rows"]);
    assert!(table.contains("Where is my order?"), "{table}");
}

#[test]
fn the_cache_answers_repeats_and_no_cache_bypasses_it() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let data = csv(&env, "d.csv", &["one", "two"]);
    let first = run_json(&env, &server, &["--prompt", "echo", "--dataset", &data]);
    assert_eq!(first["summary"]["cached"], 0);
    let second = run_json(&env, &server, &["--prompt", "echo", "--dataset", &data]);
    assert_eq!(second["summary"]["cached"], 2);
    assert_eq!(server.log().len(), 2, "cached rows sent nothing");
    let cached_rows = rows(&env, second["experiment"]["id"].as_str().unwrap());
    assert!(
        cached_rows
            .iter()
            .all(|r| r["cached"] == true && r["output"] == r["vars"]["query"])
    );
    let third = run_json(
        &env,
        &server,
        &["--prompt", "echo", "--dataset", &data, "--no-cache"],
    );
    assert_eq!(third["summary"]["cached"], 0);
    assert_eq!(server.log().len(), 4);
    // Repetitions are separate samples, each with its own cache entry.
    let reps = run_json(
        &env,
        &server,
        &["--prompt", "echo", "--dataset", &data, "--repetitions", "2"],
    );
    assert_eq!(reps["summary"]["results"], 4);
    assert_eq!(reps["summary"]["cached"], 2);
}

#[test]
fn a_first_run_is_never_cached_and_fresh_and_ttl_mean_what_they_say() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    // Three rows that render the very same request: three samples, not one answer shared.
    let data = csv(&env, "same.csv", &["same", "same", "same"]);
    let first = run_json(&env, &server, &["--prompt", "echo", "--dataset", &data]);
    assert_eq!(first["summary"]["cached"], 0, "{first}");
    assert_eq!(server.log().len(), 3, "every row of a first run is sent");
    assert!(first["run"]["oldest_cached_secs"].is_null(), "{first}");

    // A second run uses this row's own earlier answer and says how old it is.
    let text = env.ok(&[
        "experiment",
        "--base-url",
        &server.base_url(),
        "--prompt",
        "echo",
        "--dataset",
        &data,
    ]);
    assert!(
        text.contains("3 cached (answers from earlier runs, up to"),
        "{text}"
    );
    assert_eq!(server.log().len(), 3);
    let second = run_json(&env, &server, &["--prompt", "echo", "--dataset", &data]);
    assert!(second["run"]["oldest_cached_secs"].as_f64().unwrap() >= 0.0);

    // --fresh reads no cached answer...
    let fresh = run_json(
        &env,
        &server,
        &["--prompt", "echo", "--dataset", &data, "--fresh"],
    );
    assert_eq!(fresh["summary"]["cached"], 0);
    assert_eq!(server.log().len(), 6);
    // ...and a TTL of zero makes every entry too old, so each is asked again and renewed.
    let stale = run_json(
        &env,
        &server,
        &["--prompt", "echo", "--dataset", &data, "--cache-ttl", "0s"],
    );
    assert_eq!(stale["summary"]["cached"], 0);
    assert_eq!(server.log().len(), 9);
    let recent = run_json(
        &env,
        &server,
        &["--prompt", "echo", "--dataset", &data, "--cache-ttl", "1h"],
    );
    assert_eq!(recent["summary"]["cached"], 3);
    assert_eq!(server.log().len(), 9);

    // A duration that is not one is refused before anything runs.
    let err = env.fails(
        &[
            "experiment",
            "--base-url",
            &server.base_url(),
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--cache-ttl",
            "soon",
        ],
        2,
    );
    assert!(
        err.contains("--cache-ttl 'soon' is not a duration"),
        "{err}"
    );
    assert!(err.contains("hint: write whole seconds"), "{err}");
    assert_eq!(server.log().len(), 9);
}

#[test]
fn promote_fresh_sends_every_row_again() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    env.ok(&["tag", "set", "echo", "production", "--version", "1"]);
    env.ok(&[
        "prompt",
        "update",
        "echo",
        "--template",
        "{{query}}!",
        "--tag",
        "staging",
    ]);
    let data = csv(&env, "p.csv", &["a", "b"]);
    let promote = |extra: &[&str]| {
        let base = server.base_url();
        let mut args = vec![
            "promote",
            "--prompt",
            "echo",
            "--from",
            "staging",
            "--to",
            "production",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--eval",
            "contains",
            "--dry-run",
        ];
        args.extend_from_slice(extra);
        env.ok(&args);
    };
    promote(&[]);
    assert_eq!(server.log().len(), 4, "two rows for each side");
    promote(&[]);
    assert_eq!(server.log().len(), 4, "the stored experiments are reused");
    promote(&["--fresh"]);
    assert_eq!(
        server.log().len(),
        8,
        "--fresh runs anew and reads no cached answer"
    );
}

#[test]
fn faults_are_retried_or_recorded_and_every_row_is_accounted_for() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let data = csv(
        &env,
        "faults.csv",
        &[
            "a fault=429:1:1",
            "b fault=429date:1:2",
            "c fault=500:1",
            "d fault=400",
            "e fault=hangbody",
            "f fault=drop:1",
            "g fault=badjson",
            "h fault=422",
            "i plain",
        ],
    );
    let out = run_json(
        &env,
        &server,
        &[
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--timeout",
            "1",
            "--max-retries",
            "1",
            "--eval",
            "contains",
            "--max-error-rate",
            "1",
        ],
    );
    assert_eq!(out["summary"]["results"], 9);
    let results = rows(&env, out["experiment"]["id"].as_str().unwrap());
    let by_id = |id: &str| results.iter().find(|r| r["row_id"] == id).unwrap().clone();

    // 429 with Retry-After: 1 second, honoured.
    let a = server.requests_for("a fault=429");
    assert_eq!(a.len(), 2);
    assert!(
        a[1].at - a[0].at >= Duration::from_secs(1),
        "retried after {:?}",
        a[1].at - a[0].at
    );
    assert_eq!(by_id("r0")["status"], "ok");
    assert_eq!(by_id("r0")["attempts"], 2);
    // Retry-After as an HTTP date two seconds ahead: never earlier than that second.
    let b = server.requests_for("b fault=429date");
    assert_eq!(b.len(), 2);
    assert!(
        b[1].at - b[0].at >= Duration::from_secs(1),
        "retried after {:?}",
        b[1].at - b[0].at
    );
    // 500 then success.
    assert_eq!(server.requests_for("c fault=500").len(), 2);
    assert_eq!(by_id("r2")["status"], "ok");
    // 400 and 422: not retried, recorded with their status.
    assert_eq!(server.requests_for("d fault=400").len(), 1);
    assert_eq!(by_id("r3")["status"], "error");
    assert_eq!(by_id("r3")["http_status"], 400);
    assert_eq!(by_id("r3")["attempts"], 1);
    assert!(
        by_id("r3")["error_message"]
            .as_str()
            .unwrap()
            .contains("fault 400")
    );
    assert_eq!(server.requests_for("h fault=422").len(), 1);
    // A body that stops half-way times out, is retried, and is recorded as a timeout.
    assert_eq!(server.requests_for("e fault=hangbody").len(), 2);
    assert_eq!(by_id("r4")["error_kind"], "timeout");
    assert_eq!(by_id("r4")["attempts"], 2);
    // A dropped connection is retried.
    assert_eq!(by_id("r5")["status"], "ok");
    assert_eq!(by_id("r5")["attempts"], 2);
    // A broken body is an invalid response, not retried.
    assert_eq!(by_id("r6")["error_kind"], "invalid_response");
    assert_eq!(server.requests_for("g fault=badjson").len(), 1);
    assert_eq!(by_id("r8")["status"], "ok");

    // Every row once; errored rows count as failed for the evaluator.
    assert_eq!(out["summary"]["ok"], 5);
    assert_eq!(out["summary"]["errored"], 4);
    let ev = &out["summary"]["evaluators"][0];
    assert_eq!(ev["passed"], 5);
    assert_eq!(ev["total"], 9);
    let mut ids: Vec<String> = results
        .iter()
        .map(|r| r["row_id"].as_str().unwrap().to_string())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 9);
}

#[test]
fn concurrency_never_exceeds_the_limit() {
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(40));
    echo_prompt(&env);
    let queries: Vec<String> = (0..40).map(|i| format!("q{i}")).collect();
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let data = csv(&env, "many.csv", &refs);
    let out = run_json(
        &env,
        &server,
        &["--prompt", "echo", "--dataset", &data, "--concurrency", "4"],
    );
    assert_eq!(out["summary"]["ok"], 40);
    assert_eq!(
        server.max_in_flight(),
        4,
        "in flight at most (and, with 40 rows, at some point exactly) 4"
    );
}

#[test]
fn rejected_credentials_stop_the_run_and_leave_the_store_as_it_was() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let queries: Vec<String> = (0..50).map(|i| format!("q{i} fault=401")).collect();
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let data = csv(&env, "d.csv", &refs);
    let base = server.base_url();
    let before = dump(&env.db);
    let output = env
        .cmd()
        .env("OPENAI_API_KEY", "sk-test-secret-123")
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--concurrency",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refused the credentials") && stderr.contains("OPENAI_API_KEY"),
        "{stderr}"
    );
    assert!(
        server.log().len() <= 4,
        "stopped instead of hammering: {} requests",
        server.log().len()
    );
    assert_eq!(
        server.log()[0].authorization.as_deref(),
        Some("Bearer sk-test-secret-123")
    );
    assert_eq!(dump(&env.db), before);
    // The key is never printed nor stored.
    assert!(!stderr.contains("sk-test-secret-123"));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("sk-test-secret-123"));
}

#[test]
fn the_api_key_is_sent_but_never_stored_or_printed() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let data = csv(&env, "d.csv", &["hello", "d fault=400"]);
    let base = server.base_url();
    let output = env
        .cmd()
        .env("OPENAI_API_KEY", "sk-test-secret-456")
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--json",
            "--max-error-rate",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        server
            .log()
            .iter()
            .all(|e| e.authorization.as_deref() == Some("Bearer sk-test-secret-456"))
    );
    let id = serde_json::from_slice::<Value>(&output.stdout).unwrap()["experiment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = env.ok(&["experiment", "show", &id, "--rows", "--json"]);
    for text in [
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
        shown,
    ] {
        assert!(!text.contains("sk-test-secret-456"));
    }
    for file in ["runner.db", "runner.db-wal"] {
        if let Ok(bytes) = std::fs::read(env.path(file)) {
            assert!(
                !bytes.windows(18).any(|w| w == b"sk-test-secret-456"),
                "key found in {file}"
            );
        }
    }
}

#[test]
fn an_unreachable_endpoint_is_exit_3_with_nothing_written() {
    let env = Env::new();
    echo_prompt(&env);
    let data = csv(&env, "d.csv", &["hello"]);
    // A port that was just free: bind, read it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = env.fails(
        &[
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &format!("http://127.0.0.1:{port}/v1"),
        ],
        3,
    );
    assert!(
        err.contains("cannot reach") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn bad_input_is_exit_2_before_any_request() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "Hi {{name}} from {{company}}: {{query}}",
        "--model",
        "m",
    ]);
    let base = server.base_url();
    let ragged = env.write(
        "ragged.csv",
        "query,expected\nfine,x\n\"quoted, ok\",y\ntoo,many,fields\n",
    );
    let good = env.write("good.csv", "query,expected,who\nq,x,Ada\n");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "--dataset",
                ragged.to_str().unwrap(),
                "--var",
                "name=x",
                "--var",
                "company=y",
            ],
            vec!["ragged.csv", "line 4"],
        ),
        (
            vec!["--dataset", good.to_str().unwrap()],
            vec!["name", "company", "query, expected, who", "--column"],
        ),
        (
            vec![
                "--dataset",
                good.to_str().unwrap(),
                "--column",
                "name=nosuch",
                "--var",
                "company=y",
            ],
            vec!["name"],
        ),
        (vec!["--dataset", "missing.csv"], vec!["missing.csv"]),
        (
            vec![
                "--dataset",
                good.to_str().unwrap(),
                "--var",
                "company=y",
                "--column",
                "name=who",
                "--eval",
                "regex:(",
            ],
            vec!["regex:("],
        ),
        (
            vec![
                "--dataset",
                good.to_str().unwrap(),
                "--var",
                "company=y",
                "--column",
                "name=who",
                "--eval",
                "bogus",
            ],
            vec!["bogus"],
        ),
        (
            vec![
                "--dataset",
                good.to_str().unwrap(),
                "--var",
                "company=y",
                "--column",
                "name=who",
                "--expected-column",
                "nope",
            ],
            vec!["nope"],
        ),
        (
            vec![
                "--dataset",
                good.to_str().unwrap(),
                "--var",
                "company=y",
                "--column",
                "name=who",
                "--concurrency",
                "0",
            ],
            vec!["--concurrency"],
        ),
        (
            vec!["--dataset", good.to_str().unwrap(), "--tag", "nosuchtag"],
            vec!["nosuchtag"],
        ),
    ];
    for (extra, needles) in cases {
        let mut args = vec![
            "experiment",
            "--prompt",
            "greet",
            "--base-url",
            base.as_str(),
        ];
        args.extend(extra);
        let err = env.fails(&args, 2);
        for needle in needles {
            assert!(
                err.contains(needle),
                "{args:?}: expected {needle:?} in {err}"
            );
        }
    }
    assert!(
        server.log().is_empty(),
        "a request was sent: {:?}",
        server.log()
    );
    // The renames and constants make the same run valid.
    let out = run_json(
        &env,
        &server,
        &[
            "--prompt",
            "greet",
            "--dataset",
            good.to_str().unwrap(),
            "--column",
            "name=who",
            "--var",
            "company=Acme",
        ],
    );
    let id = out["experiment"]["id"].as_str().unwrap();
    assert_eq!(
        rows(&env, id)[0]["messages"][0]["content"],
        "Hi Ada from Acme: q"
    );
}

#[test]
fn every_evaluator_scores_through_the_cli() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let data = env.write(
        "cases.jsonl",
        "{\"id\": \"j\", \"query\": \"{\\\"a\\\": 1}\", \"expected\": \"{\\\"a\\\": 1}\"}\n\
         {\"id\": \"t\", \"query\": \"Hello world\", \"expected\": \"hello world!\"}\n",
    );
    let schema = env.write("schema.json", r#"{"type": "object", "required": ["a"]}"#);
    let rubric = env.write(
        "rubric.txt",
        "Be nice.\nVERDICT {\"score\": 0.9, \"pass\": true, \"reason\": \"fine\"}\n",
    );
    let bad_rubric = env.write("bad_rubric.txt", "Be nice.\nVERDICT it looks fine to me\n");
    let passing = env.write("pass.sh", "#!/bin/sh\ngrep -q '\"output\"' && echo '{\"score\": 1, \"pass\": true, \"reason\": \"saw output\"}'\n");
    let failing = env.write("fail.sh", "#!/bin/sh\necho broken >&2\nexit 1\n");
    for script in [&passing, &failing] {
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(script)
            .status()
            .unwrap();
    }
    let specs = [
        "exact".to_string(),
        "contains".to_string(),
        "icontains".to_string(),
        "regex:^Hello".to_string(),
        "json".to_string(),
        format!("json-schema:{}", schema.display()),
        "similarity:0.8".to_string(),
        "max-latency:60000".to_string(),
        format!("judge:{}", rubric.display()),
        format!("judge:{}", bad_rubric.display()),
        format!("cmd:{}", passing.display()),
        format!("cmd:{}", failing.display()),
    ];
    let data = data.to_str().unwrap().to_string();
    let mut args = vec!["--prompt", "echo", "--dataset", data.as_str()];
    for spec in &specs {
        args.push("--eval");
        args.push(spec);
    }
    let out = run_json(&env, &server, &args);
    let summary = &out["summary"]["evaluators"];
    let passed = |i: usize| summary[i]["passed"].as_i64().unwrap();
    let errors = |i: usize| summary[i]["errors"].as_i64().unwrap();
    assert_eq!(passed(0), 1, "exact: only the JSON row matches exactly");
    assert_eq!(passed(1), 1, "contains is case-sensitive");
    assert_eq!(
        passed(2),
        1,
        "icontains: 'hello world!' is not inside 'Hello world'"
    );
    assert_eq!(passed(3), 1, "regex");
    assert_eq!(passed(4), 1, "json");
    assert_eq!(passed(5), 1, "json-schema");
    assert_eq!(passed(6), 2, "similarity");
    assert_eq!(passed(7), 2, "max-latency");
    assert_eq!(passed(8), 2, "judge with a clean verdict");
    assert_eq!(
        (passed(9), errors(9)),
        (0, 2),
        "an unparseable verdict is an evaluator error, never a pass"
    );
    assert_eq!(passed(10), 2, "cmd reading the row on stdin");
    assert_eq!(
        (passed(11), errors(11)),
        (0, 2),
        "a failing cmd is an evaluator error"
    );
    let results = rows(&env, out["experiment"]["id"].as_str().unwrap());
    let reason = results[0]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["evaluator"] == specs[9].as_str())
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("unparseable"), "{reason}");
}

/// Waits (bounded, 60 s) until at least `at_least` results are stored; with `running`, also
/// asserts the process has not ended before that.
pub(crate) fn wait_for_results(
    env: &Env,
    at_least: i64,
    mut running: Option<&mut std::process::Child>,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stored_results(env) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never got going"
        );
        if let Some(child) = running.as_mut() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before it could be killed"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `runner ARGS` (output discarded), waits until at least `at_least` results are
/// stored, and kills it (-9) in the middle of its run.
pub(crate) fn kill_mid_run(env: &Env, args: &[&str], at_least: i64) {
    let mut child = env
        .std_cmd()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_results(env, at_least, Some(&mut child));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Results stored so far, read straight from the store.
fn stored_results(env: &Env) -> i64 {
    crate::try_sql(&env.db, "SELECT COUNT(*) FROM results")
        .and_then(|rows| rows[0][0].parse().ok())
        .unwrap_or(0)
}

#[test]
fn kill_9_then_resume_completes_exactly_the_missing_rows() {
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(25));
    echo_prompt(&env);
    // Rows 60 to 63 hang on their first attempt: with 4 in flight the run stalls there, with
    // exactly rows 0 to 59 stored, however slowly the machine runs it, and is killed then.
    let queries: Vec<String> = (0..300)
        .map(|i| match i {
            60..64 => format!("q{i:03} fault=hang:1"),
            _ => format!("q{i:03}"),
        })
        .collect();
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let data = csv(&env, "big.csv", &refs);
    let base = server.base_url();
    let mut child = env
        .std_cmd()
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--concurrency",
            "4",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until part of the run is stored, then kill -9 in the middle.
    wait_for_results(&env, 60, Some(&mut child));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(crate::integrity(&env.db), "ok");
    let row = crate::sql(&env.db, "SELECT id, status FROM experiments").remove(0);
    let (id, status) = (row[0].clone(), row[1].clone());
    assert_eq!(
        status, "running",
        "a killed run cannot have said it finished"
    );
    let stored: Vec<String> = crate::sql(&env.db, "SELECT row_id FROM results WHERE status = 'ok'")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(stored.len(), 60, "killed in the middle: {stored:?}");

    let before_resume = server.now();
    let out = env.json(&["experiment", "resume", &id, "--json"]);
    assert_eq!(out["experiment"]["status"], "completed");
    assert_eq!(out["summary"]["results"], 300);
    assert_eq!(out["summary"]["ok"], 300);
    // The resume asked for exactly the rows that had no stored result.
    let mut resumed: Vec<String> = server
        .log()
        .into_iter()
        .filter(|e| e.at >= before_resume)
        .map(|e| e.message)
        .collect();
    resumed.sort();
    let mut missing: Vec<String> = (0..300)
        .filter(|i| !stored.contains(&format!("r{i}")))
        .map(|i| queries[i].clone())
        .collect();
    missing.sort();
    assert_eq!(resumed, missing);
    // Same row ids and outputs as an uninterrupted run of the deterministic endpoint.
    let results = rows(&env, &id);
    assert_eq!(results.len(), 300);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["row_id"], format!("r{i}"));
        assert_eq!(r["output"], queries[i].as_str());
    }
}

#[test]
fn ctrl_c_stores_what_finished_exits_130_and_resume_finishes() {
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(25));
    echo_prompt(&env);
    let queries: Vec<String> = (0..200).map(|i| format!("q{i:03}")).collect();
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let data = csv(&env, "big.csv", &refs);
    let base = server.base_url();
    let child = env
        .std_cmd()
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--concurrency",
            "2",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_results(&env, 20, None);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let partial: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(partial["experiment"]["status"], "interrupted");
    let done = partial["summary"]["results"].as_i64().unwrap();
    assert!(done > 0 && done < 200, "{done}");
    assert_eq!(partial["summary"]["missing"], 200 - done);
    assert!(String::from_utf8_lossy(&output.stderr).contains("experiment resume"));
    let id = partial["experiment"]["id"].as_str().unwrap();
    let out = env.json(&["experiment", "resume", id, "--json"]);
    assert_eq!(out["summary"]["ok"], 200);
    assert_eq!(out["experiment"]["status"], "completed");
    // No row was asked for twice.
    let mut messages: Vec<String> = server.log().iter().map(|e| e.message.clone()).collect();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), server.log().len());
}

#[test]
fn show_writes_csv_and_lists_rows() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let data = csv(&env, "d.csv", &["alpha, with comma", "beta fault=400"]);
    let out = run_json(
        &env,
        &server,
        &[
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--eval",
            "exact",
            "--name",
            "smoke",
            "--max-error-rate",
            "1",
        ],
    );
    let id = out["experiment"]["id"].as_str().unwrap();
    // A unique prefix is enough.
    let shown = env.json(&["experiment", "show", &id[..8], "--json"]);
    assert_eq!(shown["experiment"]["name"], "smoke");
    env.ok(&["experiment", "show", id, "--csv", "out.csv"]);
    let mut reader = csv::Reader::from_path(env.path("out.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert!(headers.iter().any(|h| h == "exact.pass"));
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 2);
    assert_eq!(&records[0][4], "alpha, with comma");
    assert_eq!(&records[1][3], "error");
    let table = env.ok(&["experiment", "show", id, "--rows"]);
    assert!(
        table.contains("error: http") && table.contains("EXACT"),
        "{table}"
    );
    env.fails(&["experiment", "show", "exp_nosuch"], 2);
}

#[test]
fn a_dataset_changed_during_the_run_fails_the_experiment() {
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(25));
    echo_prompt(&env);
    let queries: Vec<String> = (0..200).map(|i| format!("q{i:03}")).collect();
    let data = csv(&env, "moving.csv", &queries);
    let base = server.base_url();
    let child = env
        .std_cmd()
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--concurrency",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_results(&env, 10, None);
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("r999,late,late\n");
    std::fs::write(&data, text).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("changed while the experiment ran") && stderr.contains("hint:"),
        "{stderr}"
    );
    let listed = env.json(&["experiment", "list", "--json"]);
    assert_eq!(listed[0]["status"], "failed", "never reusable as evidence");
}

#[test]
fn a_dataset_overwritten_and_restored_during_the_run_fails_the_experiment() {
    use std::io::{Seek, SeekFrom, Write};
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(20));
    echo_prompt(&env);
    // Larger than the reader's buffer, so the tail is read well after the run starts.
    let pad = "x".repeat(300);
    let queries: Vec<String> = (0..2000).map(|i| format!("q{i:04} {pad}")).collect();
    let data = csv(&env, "restored.csv", &queries);
    let original = std::fs::read(&data).unwrap();
    let base = server.base_url();
    let child = env
        .std_cmd()
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--concurrency",
            "4",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_results(&env, 10, None);
    // The last quarter of the file changes in place (same length), is read by the run, and
    // is put back before the run ends: the file then hashes as recorded.
    let tail = original.len() * 3 / 4;
    let changed: Vec<u8> = original[tail..]
        .iter()
        .map(|&b| if b == b'x' { b'y' } else { b })
        .collect();
    let mut file = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    file.seek(SeekFrom::Start(tail as u64)).unwrap();
    file.write_all(&changed).unwrap();
    wait_for_results(&env, 1900, None);
    file.seek(SeekFrom::Start(tail as u64)).unwrap();
    file.write_all(&original[tail..]).unwrap();
    drop(file);
    assert_eq!(std::fs::read(&data).unwrap(), original);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("changed while the experiment ran"),
        "{stderr}"
    );
}

#[test]
fn limit_runs_exactly_the_first_rows_in_file_order_across_read_batches() {
    // The reader hands rows over 64 at a time: a limit that is not a multiple of 64 still
    // runs exactly that many rows, the first ones, each once, and sends them in file order.
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let queries: Vec<String> = (0..200).map(|i| format!("q{i}")).collect();
    let data = csv(&env, "d.csv", &queries);
    let out = run_json(
        &env,
        &server,
        &[
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--limit",
            "130",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(out["summary"]["results"], 130, "{out}");
    let mut ids: Vec<String> = rows(&env, out["experiment"]["id"].as_str().unwrap())
        .iter()
        .map(|r| r["row_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (0..130).map(|i| format!("r{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
    // One request at a time: the endpoint saw the rows in the file's order.
    let sent: Vec<String> = server
        .log()
        .iter()
        .map(|request| request.message.clone())
        .collect();
    let in_order: Vec<String> = (0..130).map(|i| format!("q{i}")).collect();
    assert_eq!(sent, in_order);
}

/// Each stored result's start and end of one experiment, in start order.
fn spans(env: &Env, id: &str) -> Vec<(String, String)> {
    crate::sql(
        &env.db,
        &format!(
            "SELECT started_at, finished_at FROM results WHERE experiment_id = '{id}' \
             ORDER BY started_at"
        ),
    )
    .into_iter()
    .map(|row| (row[0].clone(), row[1].clone()))
    .collect()
}

#[test]
fn a_model_the_endpoint_lists_lets_the_rows_go_before_the_first_answer() {
    let env = Env::new();
    // The mock lists one model, `mock`, to any key or none, and answers any model.
    env.ok(&[
        "prompt",
        "create",
        "listed",
        "--template",
        "{{query}}",
        "--model",
        "mock",
    ]);
    echo_prompt(&env);
    let data = csv(&env, "d.csv", &["a", "b", "c", "d"]);
    let mock = crate::Mock::start(&env, &["--latency-ms", "300"]);
    let faults = FaultServer::start(Duration::from_millis(300));
    let run = |prompt: &str, url: &str, key: Option<&str>| {
        let mut cmd = env.cmd();
        if let Some(key) = key {
            cmd.env("OPENAI_API_KEY", key);
        }
        let out = cmd
            .args([
                "experiment",
                "--prompt",
                prompt,
                "--dataset",
                &data,
                "--base-url",
                url,
                "--concurrency",
                "4",
                "--no-cache",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        spans(&env, json["experiment"]["id"].as_str().unwrap())
    };
    // Timestamps are of one millisecond clock and of one width, so they compare as text.
    let all_before_the_first_answer = |spans: &[(String, String)]| {
        let first_end = spans.iter().map(|(_, end)| end).min().unwrap();
        spans.iter().all(|(start, _)| start < first_end)
    };
    let all_after_it =
        |spans: &[(String, String)]| spans[1..].iter().all(|(start, _)| *start >= spans[0].1);
    // No key, and the list names the model: every row goes before the first answer.
    let listed = run("listed", &mock.url, None);
    assert_eq!(listed.len(), 4);
    assert!(all_before_the_first_answer(&listed), "{listed:?}");
    // Not listed (a misspelled model, say): the other rows wait for the first answer.
    let unlisted = run("echo", &mock.url, None);
    assert_eq!(unlisted.len(), 4);
    assert!(all_after_it(&unlisted), "{unlisted:?}");
    // With a key, a list served whatever the key proves nothing of it: they wait.
    let any_key = run("listed", &mock.url, Some("sk-anything"));
    assert!(all_after_it(&any_key), "{any_key:?}");
    // A list given for this key and refused to a wrong one proves it: they go.
    let checked = run(
        "echo",
        &faults.base_url(),
        Some(crate::fault_server::LISTED_KEY),
    );
    assert_eq!(checked.len(), 4);
    assert!(all_before_the_first_answer(&checked), "{checked:?}");
    // Another key is refused the list: they wait for the first answer.
    let refused = run("echo", &faults.base_url(), Some("sk-other"));
    assert!(all_after_it(&refused), "{refused:?}");
}
