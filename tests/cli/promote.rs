//! `runner compare` and `runner promote` against a real endpoint on a random loopback port.

use crate::fault_server::FaultServer;
use crate::{Env, dump};
use serde_json::Value;
use std::time::Duration;

/// A prompt with production on v1 (echoes the query: passes `icontains`) and staging on v2.
fn setup(env: &Env, staging_template: &str) -> String {
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "Q: {{query}}",
        "--model",
        "m",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        staging_template,
        "--tag",
        "staging",
        // Some tests promote the same content.
        "--allow-same",
    ]);
    let data = env.write(
        "cases.csv",
        "id,query,expected\na,where is my order,order\nb,reset my password,password\nc,refund please,refund\n",
    );
    data.to_str().unwrap().to_string()
}

fn tag_rows(env: &Env) -> Vec<String> {
    dump(&env.db)
        .into_iter()
        .filter(|r| r.starts_with("tags:") || r.starts_with("tag_events:"))
        .collect()
}

#[test]
fn compare_needs_experiments_or_run_and_then_shows_the_rows() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "{{query}}");
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "Answer: {{query}}",
        "--tag",
        "candidate",
    ]);
    let base = server.base_url();
    let err = env.fails(
        &[
            "compare",
            "--prompt",
            "greet",
            "--tags",
            "production,candidate",
            "--dataset",
            &data,
            "--base-url",
            &base,
        ],
        2,
    );
    assert!(
        err.contains("no completed experiment")
            && err.contains("--run")
            && err.contains("runner experiment"),
        "{err}"
    );
    assert!(server.log().is_empty());
    let json = env.json(&[
        "compare",
        "--prompt",
        "greet",
        "--tags",
        "production,candidate",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--run",
        "--json",
    ]);
    assert_eq!(json["baseline"]["rows"], 3);
    assert_eq!(json["candidate"]["rows"], 3);
    assert_eq!(json["evaluators"][0]["evaluator"], "icontains");
    assert_eq!(server.log().len(), 6);
    // A second compare reuses both experiments: nothing is sent.
    let text = env.ok(&[
        "compare",
        "--prompt",
        "greet",
        "--tags",
        "production,candidate",
        "--dataset",
        &data,
        "--base-url",
        &base,
    ]);
    assert_eq!(server.log().len(), 6);
    assert!(
        text.contains("pass rate [icontains]") && text.contains("latency p95"),
        "{text}"
    );
    let markdown = env.ok(&[
        "compare",
        "--prompt",
        "greet",
        "--tags",
        "production,candidate",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--markdown",
    ]);
    assert!(
        markdown.contains("| metric | baseline | candidate | change |"),
        "{markdown}"
    );
    // By experiment ids.
    let ids: Vec<String> = env
        .json(&["experiment", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let by_id = env.json(&["compare", &ids[1], &ids[0], "--json"]);
    assert_eq!(by_id["candidate"]["experiment"], ids[0].as_str());
    env.fails(&["compare", &ids[0]], 2);
}

#[test]
fn a_better_candidate_is_promoted_with_its_evidence() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "I cannot help.",
        "--model",
        "m",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "About {{query}}",
        "--tag",
        "staging",
    ]);
    let data = env.write(
        "cases.csv",
        "id,query,expected\na,order,order\nb,password,password\n",
    );
    let data = data.to_str().unwrap();
    let base = server.base_url();
    let out = env.json(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        data,
        "--base-url",
        &base,
        "--min-pass-rate",
        "0.9",
        "--no-new-failures",
        "-m",
        "better answers",
        "--json",
        "--junit",
        "gate.xml",
        "--markdown",
        "gate.md",
    ]);
    assert_eq!(out["passed"], true);
    assert_eq!(out["moved"], true);
    let prod = env.json(&["prompt", "show", "greet", "--tag", "production", "--json"]);
    assert_eq!(prod["seq"], 2);
    let history = env.json(&["tag", "history", "greet", "production", "--json"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "promote");
    assert_eq!(last["message"], "better answers");
    assert_eq!(last["from_seq"], 1);
    assert_eq!(last["to_seq"], 2);
    let evidence = &last["evidence"];
    assert_eq!(evidence["verdict"], "pass");
    assert_eq!(evidence["policy"]["min_pass_rate"], 0.9);
    assert_eq!(evidence["policy"]["no_new_failures"], true);
    let experiments: Vec<String> = env
        .json(&["experiment", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        experiments.contains(
            &evidence["candidate_experiment"]
                .as_str()
                .unwrap()
                .to_string()
        )
    );
    assert!(
        experiments.contains(
            &evidence["baseline_experiment"]
                .as_str()
                .unwrap()
                .to_string()
        )
    );
    let junit = std::fs::read_to_string(env.path("gate.xml")).unwrap();
    assert!(
        junit.contains("<testcase name=\"min pass rate [icontains]\"")
            && !junit.contains("<failure"),
        "{junit}"
    );
    assert!(
        std::fs::read_to_string(env.path("gate.md"))
            .unwrap()
            .contains("gate PASSED")
    );
    // Promoting again: production already points at staging's version.
    let again = env.ok(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        data,
        "--base-url",
        &base,
    ]);
    assert!(again.contains("nothing to promote"), "{again}");
}

#[test]
fn a_worse_candidate_fails_the_gate_and_moves_nothing() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "Sorry, no.");
    let base = server.base_url();
    let before = tag_rows(&env);
    let output = env
        .cmd()
        .args([
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--min-pass-rate",
            "0.9",
            "--max-regression",
            "0.05",
            "--no-new-failures",
            "--max-error-rate",
            "0",
            "--max-p95-latency-ms",
            "60000",
            "--junit",
            "gate.xml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("gate FAILED, nothing moved"), "{text}");
    for needle in [
        "min pass rate [icontains]",
        "max regression [icontains]",
        "no new failures",
        "3 row(s): a, b, c",
        "max error rate",
        "max p95 latency",
        "FAIL",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    assert_eq!(tag_rows(&env), before, "a failed gate touches no tag");
    let junit = std::fs::read_to_string(env.path("gate.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).expect("the JUnit report is valid XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 5, "one test case per criterion");
    let failed: Vec<&str> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap())
        .collect();
    assert_eq!(
        failed,
        vec![
            "min pass rate [icontains]",
            "max regression [icontains]",
            "no new failures"
        ]
    );
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("failures"), Some("3"));
    // The same with --dry-run: the verdict's exit code, nothing moved either way.
    let dry = env.run(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--dry-run",
    ]);
    assert_eq!(dry.status.code(), Some(1));
    assert_eq!(tag_rows(&env), before);
}

#[test]
fn dry_run_of_a_passing_gate_moves_nothing() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "Again: {{query}}");
    let base = server.base_url();
    let before = tag_rows(&env);
    let out = env.json(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--dry-run",
        "--json",
    ]);
    assert_eq!(out["passed"], true, "default policy: no regression");
    assert_eq!(out["moved"], false);
    assert_eq!(out["verdict"]["policy"]["max_regression"], 0.0);
    assert_eq!(tag_rows(&env), before);
}

#[test]
fn a_new_target_tag_is_decided_by_absolute_criteria_alone() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "About {{query}}");
    let base = server.base_url();
    let err = env.fails(
        &[
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "canary",
            "--dataset",
            &data,
            "--base-url",
            &base,
        ],
        2,
    );
    assert!(
        err.contains("no baseline") && err.contains("--min-pass-rate"),
        "{err}"
    );
    assert!(server.log().is_empty());
    let out = env.json(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "canary",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--min-pass-rate",
        "1.0",
        "--json",
    ]);
    assert_eq!(out["passed"], true);
    assert_eq!(out["baseline_version"], Value::Null);
    assert_eq!(
        env.json(&["prompt", "show", "greet", "--tag", "canary", "--json"])["seq"],
        2
    );
    // Out-of-range thresholds are input errors before anything runs.
    env.fails(
        &[
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "qa",
            "--dataset",
            &data,
            "--min-pass-rate",
            "90",
        ],
        2,
    );
    env.fails(
        &[
            "promote",
            "--prompt",
            "greet",
            "--from",
            "nosuch",
            "--to",
            "qa",
            "--dataset",
            &data,
            "--min-pass-rate",
            "0.5",
        ],
        2,
    );
}

#[test]
fn repetitions_vote_by_majority_and_report_flaky_rows() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "{{query}}",
        "--model",
        "m",
        "--tag",
        "staging",
    ]);
    // The first attempt of row b fails (400, not retried); its other repetitions answer.
    let data = env.write(
        "cases.csv",
        "id,query,expected\na,order,order\nb,refund fault=400:1,refund\n",
    );
    let base = server.base_url();
    let out = env.json(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        data.to_str().unwrap(),
        "--base-url",
        &base,
        "--repetitions",
        "3",
        "--min-pass-rate",
        "1.0",
        // One errored answer of six: allowed here, so the vote decides the row.
        "--max-error-rate",
        "0.2",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(
        out["passed"], true,
        "b passes in 2 of 3 repetitions: a majority"
    );
    let flaky = out["comparison"]["flaky"].as_array().unwrap();
    assert_eq!(flaky.len(), 1);
    assert_eq!(flaky[0]["row_id"], "b");
    let agreement = flaky[0]["agreement"].as_f64().unwrap();
    assert!((agreement - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(out["comparison"]["candidate"]["results"], 6);
}

#[test]
fn runner_toml_supplies_the_endpoint_dataset_and_gate() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "Sorry, no.");
    env.write(
        "runner.toml",
        &format!(
            "base_url = \"{}\"\nconcurrency = 2\n\n[prompts.greet]\ndataset = \"{data}\"\nevals = [\"icontains\", \"max-latency:60000\"]\n\n[prompts.greet.gate]\nmin_pass_rate = 0.5\n",
            server.base_url()
        ),
    );
    let output = env.run(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--json",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["verdict"]["policy"]["min_pass_rate"], 0.5);
    let evaluators: Vec<&str> = out["comparison"]["evaluators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["evaluator"].as_str().unwrap())
        .collect();
    assert_eq!(evaluators, vec!["icontains", "max-latency:60000"]);
    let experiments = env.json(&["experiment", "list", "--json"]);
    assert_eq!(experiments[0]["settings"]["concurrency"], 2);
    // A flag beats the file.
    let out = env.json(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--min-pass-rate",
        "0.0",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(out["passed"], true);
}

#[test]
fn the_demo_runs_end_to_end() {
    let env = Env::new();
    let output = env.run(&["demo", "--dir", "demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("gate PASSED, tag moved"), "{stdout}");
    assert!(stdout.contains("gate FAILED, nothing moved"), "{stdout}");
    assert!(env.path("demo/runner.db").exists());
    // The user's own store is untouched.
    assert!(!env.db.exists());
}

#[test]
fn a_row_missing_on_one_side_is_reported_and_counts_against_the_candidate() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "Q: {{query}}");
    let base = server.base_url();
    let full = env.json(&[
        "experiment",
        "--prompt",
        "greet",
        "--tag",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--json",
    ]);
    let partial = env.json(&[
        "experiment",
        "--prompt",
        "greet",
        "--tag",
        "staging",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--limit",
        "2",
        "--json",
    ]);
    let (a, b) = (
        full["experiment"]["id"].as_str().unwrap(),
        partial["experiment"]["id"].as_str().unwrap(),
    );
    let json = env.json(&["compare", a, b, "--json"]);
    assert_eq!(json["only_in_baseline"], serde_json::json!(["c"]));
    assert_eq!(json["new_failures"], serde_json::json!(["c"]));
    let text = env.ok(&["compare", a, b]);
    assert!(text.contains("baseline only"), "{text}");
}

#[test]
fn a_gate_without_evaluators_is_refused_and_errored_rows_are_new_failures() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "{{query}}",
        "--model",
        "m",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "{{query}} fault=400",
        "--tag",
        "staging",
    ]);
    // No expected column, no --eval: nothing would judge the answers.
    let data = env.write("plain.csv", "id,query\na,hello\nb,world\n");
    let data = data.to_str().unwrap();
    let base = server.base_url();
    let err = env.fails(
        &[
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
            "--dataset",
            data,
            "--base-url",
            &base,
        ],
        2,
    );
    assert!(
        err.contains("at least one evaluator") && err.contains("--eval"),
        "{err}"
    );
    assert!(server.log().is_empty());
    // With an evaluator that ignores the answer, the errored candidate is refused as
    // evidence (exit 2, naming it), and allowed, its errored rows still fail the gate.
    let before = tag_rows(&env);
    let gate = |extra: &[&str]| {
        let mut args = vec![
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
            "--dataset",
            data,
            "--base-url",
            &base,
            "--eval",
            "max-latency:60000",
            "--no-new-failures",
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let refused = gate(&[]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("cannot stand as evidence") && err.contains("2 of its 2 results errored"),
        "{err}"
    );
    let output = gate(&["--max-error-rate", "1", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        out["comparison"]["new_failures"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(tag_rows(&env), before);
}

#[test]
fn fresh_runs_new_experiments_and_unwritable_reports_fail_before_anything_runs() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "About {{query}}");
    let base = server.base_url();
    let err = env.fails(
        &[
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--dry-run",
            "--junit",
            "no/such/dir/gate.xml",
        ],
        3,
    );
    assert!(err.contains("gate.xml"), "{err}");
    assert!(server.log().is_empty(), "nothing ran");
    let args = [
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--dry-run",
    ];
    env.ok(&args);
    assert_eq!(server.log().len(), 6);
    env.ok(&args);
    assert_eq!(server.log().len(), 6, "reused");
    let mut fresh = args.to_vec();
    fresh.extend(["--fresh", "--no-cache"]);
    env.ok(&fresh);
    assert_eq!(server.log().len(), 12, "--fresh ran both sides again");
}

#[test]
fn an_experiment_is_reused_only_when_everything_that_shaped_it_matches() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "{{who}}: {{query}}",
        "--model",
        "m",
        "--tag",
        "staging",
    ]);
    env.ok(&["tag", "set", "greet", "production", "--version", "1"]);
    let data = env.write("cases.csv", "id,query,expected\na,order,order\n");
    let data = data.to_str().unwrap();
    let base = server.base_url();
    let rubric = env.write("rubric.txt", "VERDICT {\"score\": 1, \"pass\": true}\n");
    let judge = format!("judge:{}", rubric.display());
    let compare = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            "--prompt",
            "greet",
            "--tags",
            "production,staging",
            "--dataset",
            data,
            "--base-url",
            &base,
            "--run",
            "--no-cache",
            "--eval",
            "icontains",
            "--eval",
            &judge,
        ];
        args.extend_from_slice(extra);
        env.ok(&args);
        server.log().len()
    };
    // production and staging are one version: the first run serves both sides.
    let first = compare(&["--var", "who=Ada"]);
    assert_eq!(first, 2, "one row, answer plus judge call");
    assert_eq!(
        compare(&["--var", "who=Ada"]),
        first,
        "same everything: reused"
    );
    let after_var = compare(&["--var", "who=Bob"]);
    assert!(
        after_var > first,
        "another --var constant is another experiment"
    );
    std::fs::write(&rubric, "VERDICT {\"score\": 0, \"pass\": false}\n").unwrap();
    assert!(
        compare(&["--var", "who=Bob"]) > after_var,
        "an edited rubric makes the old one stale"
    );
}

#[test]
fn both_sides_have_one_name_on_compare_and_promote_and_the_old_spellings_still_work() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "Again: {{query}}");
    let base = server.base_url();
    let new = env.json(&[
        "compare",
        "--prompt",
        "greet",
        "--baseline",
        "production",
        "--candidate",
        "staging",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--run",
        "--json",
    ]);
    let old = env.json(&[
        "compare",
        "--prompt",
        "greet",
        "--tags",
        "production,staging",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--json",
    ]);
    for side in ["baseline", "candidate"] {
        assert_eq!(new[side]["experiment"], old[side]["experiment"], "{side}");
    }
    assert_eq!(new["baseline"]["label"], "greet v1 (production)");
    assert_eq!(new["candidate"]["label"], "greet v2 (staging)");
    for (candidate, baseline) in [("--candidate", "--baseline"), ("--from", "--to")] {
        let out = env.json(&[
            "promote",
            "--prompt",
            "greet",
            candidate,
            "staging",
            baseline,
            "production",
            "--dataset",
            &data,
            "--base-url",
            &base,
            "--dry-run",
            "--json",
        ]);
        assert_eq!(out["passed"], true, "{candidate}: {out}");
        assert_eq!(out["from"], "staging");
        assert_eq!(out["to"], "production");
    }
    // One side alone is refused before anything runs.
    let err = env.fails(
        &[
            "compare",
            "--prompt",
            "greet",
            "--baseline",
            "production",
            "--dataset",
            &data,
        ],
        2,
    );
    assert!(err.contains("--candidate"), "{err}");
    // The help names the sides once; the older spellings are not advertised.
    let help = env.ok(&["promote", "--help"]);
    assert!(
        help.contains("--candidate <TAG>") && help.contains("--baseline <TAG>"),
        "{help}"
    );
    assert!(
        !help.contains("--from <") && !help.contains("--to <"),
        "{help}"
    );
    let help = env.ok(&["compare", "--help"]);
    assert!(help.contains("--baseline <TAG>"), "{help}");
    assert!(!help.contains("--tags <"), "{help}");
}

#[test]
fn colour_marks_verdicts_only_where_asked_and_never_in_json() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let data = setup(&env, "Again: {{query}}");
    let base = server.base_url();
    let args = [
        "promote",
        "--prompt",
        "greet",
        "--candidate",
        "staging",
        "--baseline",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--dry-run",
    ];
    let run = |vars: &[(&str, &str)], extra: &[&str]| {
        let out = env
            .cmd()
            .env_remove("NO_COLOR")
            .envs(vars.iter().copied())
            .args(args)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    // Not a terminal: plain.
    let (plain, _) = run(&[], &[]);
    assert!(!plain.contains('\x1b'), "{plain}");
    // CLICOLOR_FORCE paints the verdict and the pass cells.
    let (painted, stderr) = run(&[("CLICOLOR_FORCE", "1")], &[]);
    assert!(painted.contains("gate \x1b[32mPASSED\x1b[0m"), "{painted}");
    assert!(painted.contains("\x1b[32mpass\x1b[0m"), "{painted}");
    assert!(
        stderr.contains("\x1b[33mwarning:\x1b[0m") || !stderr.contains("warning:"),
        "{stderr}"
    );
    // Without the codes the text is the plain text, byte for byte.
    let stripped = painted
        .replace("\x1b[32m", "")
        .replace("\x1b[31m", "")
        .replace("\x1b[1;31m", "")
        .replace("\x1b[0m", "");
    assert_eq!(stripped, plain);
    // NO_COLOR wins over CLICOLOR_FORCE; --color never over both; JSON is never painted.
    let (off, _) = run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], &[]);
    assert!(!off.contains('\x1b'));
    let (off, _) = run(&[("CLICOLOR_FORCE", "1")], &["--color", "never"]);
    assert!(!off.contains('\x1b'));
    let (json, _) = run(&[], &["--color", "always", "--json"]);
    assert!(!json.contains('\x1b'));
    serde_json::from_str::<Value>(&json).unwrap();
    let (on, _) = run(&[("NO_COLOR", "1")], &["--color", "always"]);
    assert!(on.contains('\x1b'));
}
