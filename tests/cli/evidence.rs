//! The evidence a gate rests on: a run whose endpoint dies stops and is resumable, statuses
//! say when rows errored, compare and promote refuse broken evidence and say why, a criterion
//! that replaces the default says what it left unchecked, and statistics over rows that all
//! agree show no zero error.

use crate::{Env, Mock, echo_dataset, echo_prompt, sql_value};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The mock's port, from its URL.
fn port(mock: &Mock) -> String {
    mock.url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Waits for `child` to exit, at most `limit`; its exit code and stderr.
fn wait(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code(), stderr);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not stop within {limit:?} of its endpoint dying");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `rows` queries, the first `first` of them `A i` and the rest `B i` (a mock rule tells them
/// apart), written as an echo dataset.
fn split_dataset(env: &Env, name: &str, rows: usize, first: usize, (a, b): (&str, &str)) -> String {
    let queries: Vec<String> = (0..rows)
        .map(|i| format!("{} {i}", if i < first { a } else { b }))
        .collect();
    echo_dataset(env, name, &queries)
}

/// Waits, bounded, until the mock has answered 100 calls, then kills its process: an endpoint
/// that dies in the middle of a run.
fn kill_after_100(mock: Mock) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while mock.requests() < 100 {
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(mock);
}

/// Stored results of the only experiment: (all, errored).
fn stored(env: &Env) -> (u64, u64) {
    let all = sql_value(&env.db, "SELECT COUNT(*) FROM results");
    let errored = sql_value(
        &env.db,
        "SELECT COUNT(*) FROM results WHERE status = 'error'",
    );
    (all.parse().unwrap(), errored.parse().unwrap())
}

#[test]
fn an_endpoint_killed_mid_run_stops_it_and_a_resume_completes_it_exactly() {
    let env = Env::new();
    echo_prompt(&env);
    let queries: Vec<String> = (0..3000).map(|i| format!("question {i}")).collect();
    let data = echo_dataset(&env, "big.csv", &queries);
    let mock = Mock::start(&env, &["--latency-ms", "20"]);
    let url = mock.url.clone();
    let child = env
        .std_cmd()
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &url,
            "--concurrency",
            "4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Some answers first, then the endpoint's process is killed.
    let port = port(&mock);
    kill_after_100(mock);
    // Without the breaker every one of the ~2,900 rows left would be tried four times with
    // back-off: many minutes. The breaker stops it within its window.
    let (code, stderr) = wait(child, Duration::from_secs(90));
    assert_eq!(code, Some(3), "{stderr}");
    let listed = env.json(&["experiment", "list", "--json"]);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["status"], "interrupted", "{listed}");
    assert!(
        stderr.contains("the endpoint stopped answering")
            && stderr.contains(&format!("runner experiment resume {id}")),
        "{stderr}"
    );
    let (all, errored) = stored(&env);
    assert!(
        (50..3000).contains(&all),
        "{all} results stored before the breaker"
    );
    assert!(
        stderr.contains(&format!("{all} of 3000 results are stored")),
        "{stderr}"
    );
    // The gate takes no interrupted experiment, and names it.
    let out = env.run(&["compare", &id, &id]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("it was interrupted"), "{err}");
    assert!(
        err.contains(&format!("runner experiment resume {id}")),
        "{err}"
    );

    // The endpoint is back on the same address: the resume sends only what has no answer.
    let ok_before = all - errored;
    let back = Mock::start_on(&env, &port, &[]);
    let out = env.json(&["experiment", "resume", &id, "--json"]);
    assert_eq!(out["experiment"]["status"], "completed", "{out}");
    assert_eq!(out["experiment"]["error_count"], 0);
    assert_eq!(stored(&env), (3000, 0));
    assert_eq!(back.requests(), 3000 - ok_before, "a row was sent twice");
}

#[test]
fn an_endpoint_answering_500_after_row_100_trips_the_breaker() {
    let env = Env::new();
    echo_prompt(&env);
    let data = split_dataset(&env, "d.csv", 400, 100, ("early", "late"));
    let rules = env.write(
        "rules.yaml",
        "- pattern: '^late'\n  reply: down\n  status: 500\n",
    );
    let failing = Mock::start(&env, &["--responses", rules.to_str().unwrap()]);
    let port = port(&failing);
    let out = env.run(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &failing.url,
        "--concurrency",
        "1",
        "--max-retries",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("20 rows in a row failed"), "{err}");
    // The streak that tripped the breaker is not stored: those rows failed because the
    // endpoint was down, and the resume sends them.
    assert_eq!(stored(&env), (100, 0));
    assert_eq!(failing.requests(), 120);
    drop(failing);
    let listed = env.json(&["experiment", "list", "--json"]);
    assert_eq!(listed[0]["status"], "interrupted");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let back = Mock::start_on(&env, &port, &[]);
    env.ok(&["experiment", "resume", &id]);
    assert_eq!(stored(&env), (400, 0));
    assert_eq!(back.requests(), 300);
}

/// An experiment of the echo prompt in which `bad` of 20 rows errored (a 400 from the mock,
/// which the breaker leaves alone: the endpoint answered).
fn errored_run(env: &Env, mock: &Mock, bad: usize, extra: &[&str]) -> (Option<i32>, String) {
    let data = split_dataset(env, "e.csv", 20, bad, ("refuse", "fine"));
    let mut args = vec![
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &mock.url,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        out.status.code(),
        json["experiment"]["id"].as_str().unwrap().to_string(),
    )
}

fn refusing_mock(env: &Env) -> Mock {
    let rules = env.write(
        "refuse.yaml",
        "- pattern: '^refuse'\n  reply: no\n  status: 400\n",
    );
    Mock::start(env, &["--responses", rules.to_str().unwrap()])
}

#[test]
fn errored_rows_make_completed_with_errors_and_fail_the_run_unless_allowed() {
    let env = Env::new();
    echo_prompt(&env);
    let mock = refusing_mock(&env);
    let (code, id) = errored_run(&env, &mock, 2, &[]);
    assert_eq!(code, Some(1), "any errored row fails the run by default");
    let shown = env.json(&["experiment", "show", &id, "--json"]);
    assert_eq!(shown["experiment"]["status"], "completed_with_errors");
    assert_eq!(shown["experiment"]["error_count"], 2);
    assert_eq!(shown["experiment"]["error_rate"], 0.1);
    let table = env.ok(&["experiment", "list"]);
    assert!(table.contains("ERRORS"), "{table}");
    assert!(
        table.contains("completed_with_errors") && table.contains("2 (10.0%)"),
        "{table}"
    );
    // Allowed, the same run passes its check; runner.toml can allow it too.
    let (code, _) = errored_run(&env, &mock, 2, &["--max-error-rate", "0.1"]);
    assert_eq!(code, Some(0));
    env.write("runner.toml", "[thresholds]\nmax_error_rate = 0.05\n");
    let (code, _) = errored_run(&env, &mock, 2, &[]);
    assert_eq!(code, Some(1), "10% errored is beyond runner.toml's 5%");
}

/// `echo` v1 as production and v2 (the same template, a new version) as staging.
fn two_versions(env: &Env) {
    env.ok(&[
        "prompt",
        "update",
        "echo",
        "--template",
        "{{ query }}",
        "-m",
        "v2",
    ]);
    env.ok(&[
        "tag",
        "set",
        "echo",
        "production",
        "--version",
        "1",
        "--force",
    ]);
    env.ok(&["tag", "set", "echo", "staging", "--version", "2"]);
}

#[test]
fn the_gate_refuses_errored_or_named_broken_evidence_and_says_which() {
    let env = Env::new();
    echo_prompt(&env);
    two_versions(&env);
    let mock = refusing_mock(&env);
    let data = split_dataset(&env, "e.csv", 20, 2, ("refuse", "fine"));
    let run = |tag: &str| {
        let out = env.run(&[
            "experiment",
            "--prompt",
            "echo",
            "--tag",
            tag,
            "--dataset",
            &data,
            "--base-url",
            &mock.url,
            "--json",
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["experiment"]["id"].as_str().unwrap().to_string()
    };
    let (base, cand) = (run("production"), run("staging"));
    let promote = |extra: &[&str]| {
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
            &mock.url,
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    // compare finds by fingerprint and runs nothing without --run: passed over, named.
    let err = env.fails(
        &[
            "compare",
            "--prompt",
            "echo",
            "--tags",
            "production,staging",
            "--dataset",
            &data,
            "--base-url",
            &mock.url,
        ],
        2,
    );
    assert!(
        err.contains(&format!("the newest, {base}, was passed over"))
            && err.contains("2 of its 20 results errored (10.0%), beyond --max-error-rate 0.0%"),
        "{err}"
    );
    // promote runs a fresh one for what it passed over, and refuses that too.
    let args = promote(&[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&refs);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "passed over experiment {cand} of echo v2 (staging)"
        )) && err.contains("cannot stand as evidence: 2 of its 20 results errored"),
        "{err}"
    );
    // Named: refused the same way.
    let err = env.fails(
        &[
            "promote",
            "--prompt",
            "echo",
            "--from",
            "staging",
            "--to",
            "production",
            "--candidate-experiment",
            &cand,
            "--baseline-experiment",
            &base,
        ],
        2,
    );
    assert!(
        err.contains(&format!(
            "--baseline-experiment {base}: not evidence a gate takes"
        )),
        "{err}"
    );
    let err = env.fails(&["compare", &base, &cand], 2);
    assert!(err.contains("results errored"), "{err}");
    // Allowed: the gate runs, both sides' error rates are in its table, and the rows errored
    // on both sides are no regression.
    let args = promote(&["--max-error-rate", "0.1", "--dry-run"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.ok(&refs);
    assert!(out.contains("gate PASSED"), "{out}");
    assert!(
        out.contains("max error rate") && out.contains("baseline 10.0% · candidate 10.0%"),
        "{out}"
    );
    let json_args = promote(&["--max-error-rate", "0.1", "--json", "-m", "allowed"]);
    let refs: Vec<&str> = json_args.iter().map(String::as_str).collect();
    let json = env.json(&refs);
    assert_eq!(json["moved"], true, "{json}");
    let history = env.json(&["tag", "history", "echo", "--json"]);
    let evidence = &history.as_array().unwrap().last().unwrap()["evidence"];
    assert_eq!(evidence["candidate_error_rate"], 0.1, "{history}");
    assert_eq!(evidence["baseline_error_rate"], 0.1);
    let checks: Vec<&str> = evidence["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(checks.contains(&"max error rate"), "{checks:?}");
    assert!(checks.contains(&"no new failures"), "{checks:?}");
}

#[test]
fn a_killed_run_named_as_evidence_is_called_interrupted() {
    let env = Env::new();
    echo_prompt(&env);
    two_versions(&env);
    let queries: Vec<String> = (0..2000).map(|i| format!("q {i}")).collect();
    let data = echo_dataset(&env, "d.csv", &queries);
    let mock = Mock::start(&env, &["--latency-ms", "50"]);
    let (mut child, id) = crate::spawn_listed_experiment(&env, &data, &mock.url, "2", "running");
    child.kill().unwrap();
    child.wait().unwrap();
    let done = Mock::start(&env, &[]);
    let out = env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--tag",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &done.url,
        "--json",
    ]);
    let base = out["experiment"]["id"].as_str().unwrap().to_string();
    // spawn_listed_experiment runs the echo prompt's newest version: v2, staging.
    let err = env.fails(
        &[
            "promote",
            "--prompt",
            "echo",
            "--from",
            "staging",
            "--to",
            "production",
            "--candidate-experiment",
            &id,
            "--baseline-experiment",
            &base,
        ],
        2,
    );
    assert!(err.contains("it was interrupted"), "{err}");
    assert!(!err.contains("running"), "{err}");
}

#[test]
fn the_endpoint_is_not_part_of_the_fingerprint_unless_asked() {
    let env = Env::new();
    echo_prompt(&env);
    two_versions(&env);
    let queries: Vec<String> = (0..10).map(|i| format!("q {i}")).collect();
    let data = echo_dataset(&env, "d.csv", &queries);
    let first = Mock::start(&env, &[]);
    env.ok(&[
        "compare",
        "--prompt",
        "echo",
        "--tags",
        "production,staging",
        "--dataset",
        &data,
        "--base-url",
        &first.url,
        "--run",
    ]);
    let other = Mock::start(&env, &[]);
    // `compare --tags production,staging` of this dataset against the second endpoint.
    let compare = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            "--prompt",
            "echo",
            "--tags",
            "production,staging",
            "--dataset",
            &data,
            "--base-url",
            &other.url,
        ];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let plain = compare(&[]);
    let out = env.run(&plain.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("run against {}", first.url)), "{err}");
    assert_eq!(other.requests(), 0);
    // With --same-endpoint the stored runs do not count, and the error names the difference.
    let same = compare(&["--same-endpoint"]);
    let err = env.fails(&same.iter().map(String::as_str).collect::<Vec<_>>(), 2);
    assert!(
        err.contains(&format!("it ran against {}", first.url))
            && err.contains(&format!("pass --base-url {}", first.url)),
        "{err}"
    );
    // Another model: the nearest stored experiment's model is named.
    let model = compare(&["--model", "other-model"]);
    let err = env.fails(&model.iter().map(String::as_str).collect::<Vec<_>>(), 2);
    assert!(
        err.contains("its model is test-model (this run: other-model)"),
        "{err}"
    );
}

#[test]
fn a_min_pass_rate_gate_says_regressions_were_not_checked_and_agreeing_rows_show_no_zero_error() {
    let env = Env::new();
    echo_prompt(&env);
    two_versions(&env);
    let queries: Vec<String> = (0..12).map(|i| format!("q {i}")).collect();
    let data = echo_dataset(&env, "d.csv", &queries);
    let mock = Mock::start(&env, &[]);
    let base = [
        "--prompt",
        "echo",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &mock.url,
        "--dry-run",
    ];
    let mut args = vec!["promote"];
    args.extend_from_slice(&base);
    args.extend_from_slice(&["--min-pass-rate", "0.5"]);
    let out = env.ok(&args);
    assert!(
        out.contains(
            "note: regressions not checked: --min-pass-rate replaces the default; add --no-new-failures to keep it"
        ),
        "{out}"
    );
    // Every row passes on both sides: no zero standard error, and a detectable effect from
    // the row count.
    assert!(out.contains("n/a (no variation)"), "{out}");
    assert!(!out.contains("0.0 pts (unpaired"), "{out}");
    let mut args = vec!["promote"];
    args.extend_from_slice(&base);
    args.push("--json");
    let json = env.json(&args);
    let d = &json["comparison"]["evaluators"][0]["pass_rate_difference"];
    assert!(d["se"].is_null(), "{d}");
    assert_eq!(d["se_note"], "no variation: every row agrees");
    let mde = d["minimum_detectable_effect"].as_f64().unwrap();
    assert!(mde > 0.1 && mde < 0.5, "{mde}");
    // The default gate warns about itself once, in one line.
    let mut args = vec!["promote"];
    args.extend_from_slice(&base);
    let out = env.cmd().args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.matches("warning: the default gate").count(),
        1,
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    // Markdown and JUnit carry the same.
    let md = env.path("gate.md");
    let junit = env.path("gate.xml");
    let mut args = vec!["promote"];
    args.extend_from_slice(&base);
    let (md_s, junit_s) = (md.to_str().unwrap(), junit.to_str().unwrap());
    args.extend_from_slice(&[
        "--min-pass-rate",
        "0.5",
        "--markdown",
        md_s,
        "--junit",
        junit_s,
    ]);
    env.ok(&args);
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("regressions not checked"), "{md}");
    assert!(md.contains("n/a (no variation)"), "{md}");
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.contains("max error rate"), "{xml}");
}

#[test]
fn a_worker_whose_endpoint_dies_exits_3_and_hands_its_items_back() {
    let env = Env::new();
    echo_prompt(&env);
    let queries: Vec<String> = (0..3000).map(|i| format!("question {i}")).collect();
    let data = echo_dataset(&env, "big.csv", &queries);
    let mock = Mock::start(&env, &["--latency-ms", "20"]);
    let planned = env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &mock.url,
        "--detach",
        "--json",
    ]);
    let id = planned["id"].as_str().unwrap().to_string();
    let worker = env
        .std_cmd()
        .args(["worker", &id, "--concurrency", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    kill_after_100(mock);
    let (code, stderr) = wait(worker, Duration::from_secs(90));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("the endpoint stopped answering")
            && stderr.contains(&format!("runner worker {id}")),
        "{stderr}"
    );
    // Nothing stays leased to the worker that left, and no errored result was stored for the
    // rows that failed while the endpoint was gone.
    let leased = sql_value(
        &env.db,
        "SELECT COUNT(*) FROM work_items WHERE state = 'leased'",
    );
    assert_eq!(leased, "0");
    let (all, errored) = stored(&env);
    assert_eq!(errored, 0, "{stderr}");
    assert!(
        (50..3000).contains(&all),
        "{all} results stored; the worker said: {stderr}"
    );
}
