//! One experiment across many processes: `experiment --detach` plans it as work items,
//! `runner worker` processes lease and run them, `experiment wait` returns when the last result
//! is in. Real processes on one store (an SQLite file here, PostgreSQL in `cli_postgres`), a
//! real mock endpoint counting the requests it answers.

use crate::{Env, Mock, echo_dataset, integrity, sql, sql_value};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Kills the worker processes still running when the test ends, passed or not.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn worker(env: &Env, id: &str, extra: &[&str]) -> Child {
    env.std_cmd()
        .args(["worker", id, "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker")
}

fn finished(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "worker failed with {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn count(env: &Env, query: &str) -> i64 {
    sql_value(&env.db, query).parse().unwrap()
}

/// Waits, bounded, until `query` counts at least `at_least`.
fn until(env: &Env, query: &str, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(env, query) < at_least {
        assert!(
            Instant::now() < deadline,
            "never reached {at_least}: {query}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn queries(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("question number {i}")).collect()
}

/// The numbers a summary is made of, without timings (which differ from run to run).
fn outcome(summary: &Value) -> Value {
    let s = &summary["summary"];
    serde_json::json!({
        "results": s["results"],
        "ok": s["ok"],
        "errored": s["errored"],
        "missing": s["missing"],
        "evaluators": s["evaluators"].as_array().unwrap().iter().map(|e| {
            serde_json::json!([e["evaluator"], e["passed"], e["total"], e["pass_rate"], e["mean_score"]])
        }).collect::<Vec<_>>(),
        "prompt_tokens": s["prompt_tokens"],
        "completion_tokens": s["completion_tokens"],
    })
}

#[test]
fn four_workers_one_killed_one_late_give_every_row_exactly_one_result() {
    const ROWS: i64 = 240;
    let env = Env::new();
    let mock = Mock::start(&env, &["--latency-ms", "60"]);
    let url = mock.url.clone();
    env.ok(&[
        "prompt",
        "create",
        "echo",
        "--template",
        "{{query}}",
        "--model",
        "m",
    ]);
    let data = echo_dataset(&env, "d.csv", &queries(ROWS as usize));
    let plan = [
        "experiment",
        "--prompt",
        "echo",
        "--version",
        "1",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--detach",
        "--key",
        "ci-run-7",
        "--json",
    ];
    // Three planning jobs at once: one experiment, planned once.
    let planners: Vec<Child> = (0..3)
        .map(|_| {
            env.std_cmd()
                .args(plan)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let planned: Vec<Value> = planners.into_iter().map(finished).collect();
    let id = planned[0]["id"].as_str().unwrap().to_string();
    assert!(
        planned.iter().all(|p| p["id"] == planned[0]["id"]),
        "{planned:?}"
    );
    assert_eq!(planned.iter().filter(|p| p["created"] == true).count(), 1);
    assert_eq!(planned[0]["items"], ROWS);
    assert_eq!(mock.requests(), 0, "planning sent requests");

    // Leases of 4 s: short enough that the killed worker's items come back within the test,
    // long enough that a live worker on a loaded machine renews its own in time (with 2 s,
    // a machine busy with other builds let live leases lapse and rows ran twice).
    let args = ["--concurrency", "4", "--lease", "4"];
    let mut workers = Workers(vec![
        worker(&env, &id, &args),
        worker(&env, &id, &args),
        worker(&env, &id, &args),
    ]);
    // Mid-run: one worker is killed while it holds leases.
    until(&env, "SELECT COUNT(*) FROM results", ROWS / 4);
    let victim = workers.0.remove(1);
    let pid = victim.id() as i32;
    let leased = format!(
        "SELECT COUNT(*) FROM work_items WHERE state = 'leased' AND lease_owner LIKE '% pid {pid} on %'"
    );
    // Frozen first, so what it holds cannot change between the count and the kill; a worker
    // caught between two batches holds nothing, so it is let go and caught again.
    let mut frozen = false;
    for _ in 0..500 {
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        if count(&env, &leased) > 0 {
            frozen = true;
            break;
        }
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        frozen,
        "the worker never held a lease while it was looked at"
    );
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let mut victim = victim;
    victim.wait().unwrap();
    let held = count(&env, &leased);
    // At most twice its concurrency in flight, plus answers still waiting for their batched
    // write (a loaded machine's writer lags): those stay leased until written.
    assert!(held > 0, "the killed worker held {held} items");
    // Another starts late.
    workers.0.push(worker(&env, &id, &args));

    let waited = env.run(&["experiment", "wait", &id, "--timeout", "120", "--json"]);
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let stderr = String::from_utf8(waited.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{ROWS}/{ROWS} items done")),
        "{stderr}"
    );
    let summary: Value = serde_json::from_slice(&waited.stdout).unwrap();
    assert_eq!(summary["experiment"]["status"], "completed");
    let reports: Vec<Value> = workers.0.drain(..).map(finished).collect();
    for report in &reports {
        assert_eq!(report["dropped"], 0, "{report}");
        assert_eq!(report["status"], "completed", "{report}");
    }

    // Exactly one successful result per row × repetition, and nothing else.
    assert_eq!(
        sql(
            &env.db,
            &format!(
                "SELECT COUNT(*), COUNT(DISTINCT row_index), SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) \
                 FROM results WHERE experiment_id = '{id}'"
            )
        ),
        vec![vec![ROWS.to_string(), ROWS.to_string(), ROWS.to_string()]]
    );
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM work_items WHERE state <> 'done'"
        ),
        0
    );
    // The endpoint saw each row once, plus at most what the killed worker had leased.
    let seen = mock.requests() as i64;
    assert!(
        seen >= ROWS && seen <= ROWS + held,
        "{seen} requests for {ROWS} rows, the killed worker held {held}"
    );
    // Its items were leased again after its leases ran out.
    let reclaimed = count(&env, "SELECT SUM(claims) - COUNT(*) FROM work_items");
    assert!(reclaimed >= held, "{reclaimed} reclaimed, {held} held");
    let written: i64 = reports.iter().map(|r| r["written"].as_i64().unwrap()).sum();
    assert!(written <= ROWS, "{written}");
    assert_eq!(integrity(&env.db), "ok");

    // It reads like any other experiment, and like a single-process run of the same plan.
    let shown = env.json(&["experiment", "show", &id, "--json"]);
    assert_eq!(shown["experiment"]["status"], "completed");
    let single = env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--version",
        "1",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--no-cache",
        "--json",
    ]);
    assert_eq!(outcome(&shown), outcome(&single));
    let listed = env.ok(&["experiment", "list"]);
    assert!(listed.contains(&id), "{listed}");
}

#[test]
fn workers_refuse_what_they_cannot_run_and_write_nothing() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--latency-ms", "0"]);
    let url = mock.url.clone();
    env.ok(&[
        "prompt",
        "create",
        "echo",
        "--template",
        "{{query}}",
        "--model",
        "m",
    ]);
    let data = echo_dataset(&env, "d.csv", &queries(3));
    let plain = env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--version",
        "1",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--json",
    ]);
    let plain_id = plain["experiment"]["id"].as_str().unwrap();
    let err = env.fails(&["worker", plain_id], 2);
    assert!(err.contains("was not planned for workers"), "{err}");
    assert!(err.contains("hint: "), "{err}");
    let err = env.fails(&["experiment", "wait", plain_id], 2);
    assert!(err.contains("was not planned for workers"), "{err}");
    let err = env.fails(&["worker", "exp_nosuch"], 2);
    assert!(err.contains("unknown experiment"), "{err}");
    let detach = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "--prompt",
            "echo",
            "--version",
            "1",
            "--dataset",
            &data,
            "--base-url",
            &url,
            "--detach",
        ];
        args.extend_from_slice(extra);
        env.fails(&args, 2)
    };
    let err = detach(&["--max-cost", "1"]);
    assert!(err.contains("--max-cost"), "{err}");
    let err = env.fails(
        &[
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--key",
            "k",
        ],
        2,
    );
    assert!(err.contains("--detach"), "{err}");
    // The same key with another plan is refused rather than mixed in.
    let id = env.ok(&[
        "experiment",
        "--prompt",
        "echo",
        "--version",
        "1",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--detach",
        "--key",
        "k1",
    ]);
    let err = detach(&["--key", "k1", "--repetitions", "2"]);
    assert!(err.contains("already names experiment"), "{err}");
    let err = env.fails(&["worker", id.trim(), "--lease", "0"], 2);
    assert!(err.contains("--lease"), "{err}");
    // A worker that cannot reach the endpoint leases nothing.
    let err = env.fails(
        &["worker", id.trim(), "--base-url", "http://127.0.0.1:9/v1"],
        3,
    );
    assert!(err.contains("cannot reach the endpoint"), "{err}");
    // Until a worker runs, the experiment waits: a wait that times out says so (exit 3).
    let out = env.run(&["experiment", "wait", id.trim(), "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("not finished after"), "{stderr}");
    assert!(stderr.contains("0/3 items done"), "{stderr}");
    let shown = env.json(&["experiment", "show", id.trim(), "--json"]);
    assert_eq!(shown["experiment"]["status"], "running");
}

#[test]
fn shards_in_their_own_stores_merge_into_one_experiment_like_an_unsharded_run() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--latency-ms", "0"]);
    let url = mock.url.clone();
    let data = echo_dataset(&env, "d.csv", &queries(40));
    let shard_store = |name: &str| env.path(name).to_str().unwrap().to_string();
    let (s1, s2, s3) = (
        shard_store("s1.db"),
        shard_store("s2.db"),
        shard_store("s3.db"),
    );
    // One prompt, its version ids kept across stores (each CI job imports the same export).
    env.ok(&[
        "--db",
        &s1,
        "prompt",
        "create",
        "echo",
        "--template",
        "{{query}}",
        "--model",
        "m",
    ]);
    env.ok(&["--db", &s1, "export", "prompts"]);
    for db in [&s2, &s3, &env.db.to_str().unwrap().to_string()] {
        env.ok_as_admin(&["--db", db, "import", "prompts"]);
    }
    let run = |db: &str, shard: &str, extra: &[&str]| {
        let mut args = vec![
            "--db",
            db,
            "experiment",
            "--prompt",
            "echo",
            "--version",
            "1",
            "--dataset",
            &data,
            "--base-url",
            &url,
            "--shard",
            shard,
            "--json",
        ];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    let first = run(&s1, "1/2", &[]);
    let second = run(&s2, "2/2", &[]);
    let (a, b) = (
        first["summary"]["results"].as_i64().unwrap(),
        second["summary"]["results"].as_i64().unwrap(),
    );
    assert_eq!(a + b, 40);
    assert!(a > 5 && b > 5, "an uneven split: {a} and {b}");
    assert_eq!(first["summary"]["missing"], 0);
    // The same rows land in the same shard on every run.
    let again = run(&s3, "1/2", &["--no-cache"]);
    assert_eq!(again["summary"]["results"], first["summary"]["results"]);

    // Refused, nothing written: a gap, a duplicate, another plan.
    let err = env.fails(
        &[
            "experiment",
            "merge",
            &s1,
            "--into",
            env.db.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("shard(s) 2/2 missing"), "{err}");
    let err = env.fails(
        &[
            "experiment",
            "merge",
            &s1,
            &s3,
            &s2,
            "--into",
            env.db.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("shard 1/2 is there twice"), "{err}");
    let s4 = shard_store("s4.db");
    env.ok(&[
        "--db",
        &s4,
        "prompt",
        "create",
        "echo",
        "--template",
        "{{query}}",
        "--model",
        "m",
    ]);
    run(&s4, "2/2", &["--repetitions", "2"]);
    let err = env.fails(
        &[
            "experiment",
            "merge",
            &s1,
            &s4,
            "--into",
            env.db.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("of another plan"), "{err}");
    let err = env.fails(
        &[
            "experiment",
            "merge",
            &s1,
            "nosuch.db",
            "--into",
            env.db.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("there is no store at nosuch.db"), "{err}");
    let err = env.fails(
        &[
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--shard",
            "3/2",
        ],
        2,
    );
    assert!(err.contains("--shard '3/2'"), "{err}");

    let merged = env.json(&[
        "experiment",
        "merge",
        &s1,
        &s2,
        "--into",
        env.db.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (merged["shards"].as_i64(), merged["results"].as_i64()),
        (Some(2), Some(40))
    );
    let id = merged["id"].as_str().unwrap();
    let shown = env.json(&["experiment", "show", id, "--json"]);
    assert_eq!(shown["experiment"]["status"], "completed");
    assert_eq!(shown["experiment"]["planned"], 40);
    let single = env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--version",
        "1",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--no-cache",
        "--json",
    ]);
    assert_eq!(outcome(&shown), outcome(&single));
    // Stands as evidence like an unsharded run: found by its plan's fingerprint.
    let compared = env.json(&[
        "compare",
        id,
        single["experiment"]["id"].as_str().unwrap(),
        "--json",
    ]);
    assert!(compared.is_object(), "{compared}");
}

/// The tag rows and their history, to show a refused promotion moved nothing.
fn tags(env: &Env) -> Vec<String> {
    crate::dump(&env.db)
        .into_iter()
        .filter(|r| r.starts_with("tags:") || r.starts_with("tag_events:"))
        .collect()
}

#[test]
fn promote_gates_on_experiments_finished_by_workers() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--latency-ms", "0"]);
    let url = mock.url.clone();
    env.ok(&[
        "prompt",
        "create",
        "echo",
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
        "echo",
        "--template",
        "Q: {{query}}",
        "--tag",
        "staging",
    ]);
    let data = echo_dataset(&env, "d.csv", &queries(12));
    let other = echo_dataset(&env, "other.csv", &["a", "b", "c", "d", "e"]);
    // The fan-out: each side planned, run by a worker, waited for.
    let fan_out = |tag: &str, data: &str, run: bool| {
        let id = env
            .ok(&[
                "experiment",
                "--prompt",
                "echo",
                "--tag",
                tag,
                "--dataset",
                data,
                "--base-url",
                &url,
                "--detach",
            ])
            .trim()
            .to_string();
        if run {
            env.ok(&["worker", &id]);
            env.ok(&["experiment", "wait", &id]);
        }
        id
    };
    let cand = fan_out("staging", &data, true);
    let base = fan_out("production", &data, true);
    let pending = fan_out("staging", &other, false);
    let sent = mock.requests();
    let experiments = count(&env, "SELECT COUNT(*) FROM experiments");

    // Plain promote finds both by fingerprint and runs nothing.
    let out = env.run(&[
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
        &url,
        "--dry-run",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("using experiment {cand}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("using experiment {base}")),
        "{stderr}"
    );
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["moved"], false, "{verdict}");

    // Named experiments that are not what the gate is about: exit 2, nothing moved.
    let tags_before = tags(&env);
    let named = |candidate: &str, baseline: Option<&str>, code: i32| {
        let mut args = vec![
            "promote",
            "--prompt",
            "echo",
            "--from",
            "staging",
            "--to",
            "production",
            "--candidate-experiment",
            candidate,
        ];
        if let Some(baseline) = baseline {
            args.extend(["--baseline-experiment", baseline]);
        }
        env.fails(&args, code)
    };
    let err = named(&base, Some(&cand), 2);
    assert!(
        err.contains("it is an experiment of echo v2, but --baseline production points at echo v1"),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
    let err = named(&cand, Some(&cand), 2);
    assert!(err.contains("--baseline-experiment"), "{err}");
    let err = named(&pending, Some(&base), 2);
    assert!(
        err.contains("not evidence a gate takes: it is still running"),
        "{err}"
    );
    assert!(
        err.contains(&format!("runner experiment wait {pending}")),
        "{err}"
    );
    env.ok(&["worker", &pending]);
    let err = named(&pending, Some(&base), 2);
    assert!(err.contains("ran on different datasets"), "{err}");
    let err = named(&cand, None, 2);
    assert!(err.contains("needs --baseline-experiment"), "{err}");
    let err = named("exp_nosuch", Some(&base), 2);
    assert!(err.contains("unknown experiment"), "{err}");
    // Evidence named is not evidence made: run options are refused with it.
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
            "--dataset",
            &data,
        ],
        2,
    );
    assert!(err.contains("--dataset"), "{err}");
    assert_eq!(tags(&env), tags_before);

    // compare takes the same names.
    let compared = env.json(&[
        "compare",
        "--baseline-experiment",
        &base,
        "--candidate-experiment",
        &cand,
        "--json",
    ]);
    assert_eq!(compared, env.json(&["compare", &base, &cand, "--json"]));

    // The gate on exactly those two: passes, moves the tag, records them as its evidence.
    let verdict = env.json(&[
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
        "-m",
        "fan-in",
        "--json",
    ]);
    assert_eq!(
        (&verdict["passed"], &verdict["moved"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{verdict}"
    );
    let history = env.json(&["tag", "history", "echo", "production", "--json"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "promote");
    assert_eq!(last["to_seq"], 2);
    assert_eq!(last["evidence"]["candidate_experiment"], cand.as_str());
    assert_eq!(last["evidence"]["baseline_experiment"], base.as_str());
    // Nothing ran for the gate: no request, no new experiment (the pending one's worker
    // sent its five).
    assert_eq!(mock.requests(), sent + 5);
    assert_eq!(count(&env, "SELECT COUNT(*) FROM experiments"), experiments);
    assert_eq!(integrity(&env.db), "ok");
}

#[test]
fn workers_keep_the_experiments_rate_limit_together() {
    // 600 a minute is 10 a second; two workers each pacing at it alone would send 20.
    const RPM: &str = "600";
    const ROWS: usize = 60;
    let env = Env::new();
    let mock = Mock::start(&env, &["--latency-ms", "20", "--rpm", RPM]);
    let url = mock.url.clone();
    env.ok(&[
        "prompt",
        "create",
        "echo",
        "--template",
        "{{query}}",
        "--model",
        "m",
    ]);
    let data = echo_dataset(&env, "d.csv", &queries(ROWS));
    let id = env
        .ok(&[
            "experiment",
            "--prompt",
            "echo",
            "--version",
            "1",
            "--dataset",
            &data,
            "--base-url",
            &url,
            "--max-rpm",
            RPM,
            "--detach",
        ])
        .trim()
        .to_string();
    let shown = env.json(&["experiment", "show", &id, "--json"]);
    assert_eq!(shown["experiment"]["settings"]["max_rpm"], 600.0, "{shown}");
    let args = ["--concurrency", "8"];
    let mut workers = Workers(vec![worker(&env, &id, &args), worker(&env, &id, &args)]);
    let started = Instant::now();
    let waited = env.run(&["experiment", "wait", &id, "--timeout", "120"]);
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let elapsed = started.elapsed();
    let reports: Vec<Value> = workers.0.drain(..).map(finished).collect();
    // Both worked: the limit was shared, not kept by one worker doing everything.
    for report in &reports {
        assert!(report["written"].as_i64().unwrap() > 5, "{report}");
    }
    let stats = mock.stats();
    let limited = stats["rate_limited"].as_u64().unwrap();
    assert!(
        limited <= 2,
        "{limited} answers were 429 in {elapsed:?}: {stats}"
    );
    assert_eq!(
        count(
            &env,
            &format!("SELECT COUNT(*) FROM results WHERE experiment_id = '{id}' AND status = 'ok'")
        ),
        ROWS as i64
    );
}

/// `runner worker --log-format json` logs its run as JSON lines for a log collector (its start,
/// and its end with the figures), while stdout keeps the summary a script reads.
#[test]
fn a_worker_logs_json_lines_when_asked() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--latency-ms", "0"]);
    env.ok(&[
        "prompt",
        "create",
        "echo",
        "--template",
        "{{query}}",
        "--model",
        "m",
    ]);
    let data = echo_dataset(&env, "d.csv", &queries(4));
    let id = env.ok(&[
        "experiment",
        "--prompt",
        "echo",
        "--version",
        "1",
        "--dataset",
        &data,
        "--base-url",
        &mock.url,
        "--detach",
    ]);
    let out = env.run(&["worker", id.trim(), "--json", "--log-format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["written"], 4);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let said = |message: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {stderr}"))
    };
    assert_eq!(said("started")["fields"]["planned"], 4);
    let finished = said("worker finished");
    assert_eq!(finished["fields"]["written"], 4);
    assert_eq!(finished["fields"]["status"], "completed");
    assert_eq!(finished["fields"]["experiment"], id.trim());
}
