//! Reliability (issue 6): what runner records under every endpoint fault, crash safety under
//! `kill -9`, concurrent writers on one store, hostile input, and secrets.
//!
//! Every test runs the real binary against a fresh temporary store and the fault server on a
//! random loopback port. Waits are bounded polls, never sleeps used as synchronisation.

use crate::fault_server::{Entry, FaultServer, HUGE};
use crate::{Env, dump, echo_dataset as dataset, echo_prompt, integrity, sql, sql_value, try_sql};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// One finished experiment against the fault server.
struct Faulted {
    env: Env,
    server: FaultServer,
    out: Value,
    id: String,
    rows: Vec<Value>,
    queries: Vec<String>,
    repetitions: usize,
}

impl Faulted {
    /// The stored result of row `r{index}`, repetition 0.
    fn row(&self, index: usize) -> &Value {
        let id = format!("r{index}");
        self.rows
            .iter()
            .find(|r| r["row_id"] == id.as_str() && r["repetition"] == 0)
            .unwrap_or_else(|| panic!("no result for {id}"))
    }

    /// Requests the server saw for row `index` (its message is its query).
    fn requests(&self, index: usize) -> Vec<Entry> {
        let query = &self.queries[index];
        self.server
            .log()
            .into_iter()
            .filter(|e| &e.message == query)
            .collect()
    }
}

/// Runs `echo` over one row per query (plus `extra` flags) and checks that every row is
/// accounted for.
fn run_faults(latency: Duration, queries: &[&str], extra: &[&str]) -> Faulted {
    let env = Env::new();
    let server = FaultServer::start(latency);
    run_on(env, server, queries, extra)
}

fn run_on(env: Env, server: FaultServer, queries: &[&str], extra: &[&str]) -> Faulted {
    echo_prompt(&env);
    let queries = strings(queries);
    let data = dataset(&env, "faults.csv", &queries);
    let base = server.base_url();
    let mut args = vec![
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--json",
        // Faults are the point here: the run records them and its own check (no errored row
        // by default) is told to allow them.
        "--max-error-rate",
        "1",
    ];
    args.extend_from_slice(extra);
    let out = env.json(&args);
    let id = out["experiment"]["id"].as_str().unwrap().to_string();
    let shown = env.json(&["experiment", "show", &id, "--rows", "--json"]);
    let rows = shown["rows"].as_array().unwrap().clone();
    let repetitions = out["experiment"]["settings"]["repetitions"]
        .as_u64()
        .unwrap_or(1) as usize;
    let faulted = Faulted {
        env,
        server,
        out,
        id,
        rows,
        queries,
        repetitions,
    };
    assert_accounted(&faulted);
    faulted
}

/// ok + errored = rows × repetitions, each (row, repetition) exactly once, in the summary, in
/// `experiment show` and in the store itself; every errored call counts as failed for every
/// evaluator; and each row's recorded attempts add up to the requests the server saw for it.
fn assert_accounted(f: &Faulted) {
    let planned = f.queries.len() * f.repetitions;
    let summary = &f.out["summary"];
    // A run that recorded errored rows says so in its status.
    let errored = summary["errored"].as_u64().unwrap();
    let status = if errored > 0 {
        "completed_with_errors"
    } else {
        "completed"
    };
    assert_eq!(f.out["experiment"]["status"], status, "{}", f.out);
    assert_eq!(f.out["experiment"]["error_count"], errored, "{}", f.out);
    assert_eq!(summary["results"], planned as u64, "{summary}");
    assert_eq!(summary["missing"], 0, "{summary}");
    assert_eq!(
        summary["ok"].as_u64().unwrap() + summary["errored"].as_u64().unwrap(),
        planned as u64,
        "{summary}"
    );
    assert_eq!(f.rows.len(), planned);
    let pairs: BTreeSet<(String, u64)> = f
        .rows
        .iter()
        .map(|r| {
            (
                r["row_id"].as_str().unwrap().to_string(),
                r["repetition"].as_u64().unwrap(),
            )
        })
        .collect();
    let wanted: BTreeSet<(String, u64)> = (0..f.queries.len())
        .flat_map(|i| (0..f.repetitions as u64).map(move |rep| (format!("r{i}"), rep)))
        .collect();
    assert_eq!(pairs, wanted, "every (row, repetition) exactly once");
    let (count, distinct) = counts(&f.env.db, &f.id);
    assert_eq!((count, distinct), (planned as i64, planned as i64));
    let ok = f.rows.iter().filter(|r| r["status"] == "ok").count();
    assert_eq!(summary["ok"], ok as u64);
    for evaluator in summary["evaluators"].as_array().unwrap() {
        assert_eq!(evaluator["total"], planned as u64, "{evaluator}");
        assert!(evaluator["passed"].as_u64().unwrap() <= ok as u64);
    }
    for r in f.rows.iter().filter(|r| r["status"] == "error") {
        assert!(
            r["error_kind"].is_string() && r["error_message"].is_string(),
            "an errored row says why: {r}"
        );
        assert!(
            r["scores"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["pass"] == false),
            "a failed call fails every evaluator: {r}"
        );
    }
    // Attempts recorded = requests seen, per distinct message (repetitions share a message).
    let log = f.server.log();
    let mut attempts: BTreeMap<String, u64> = BTreeMap::new();
    for r in &f.rows {
        let message = r["vars"]["query"].as_str().unwrap().to_string();
        *attempts.entry(message).or_default() += r["attempts"].as_u64().unwrap();
    }
    for (message, recorded) in attempts {
        let seen = log.iter().filter(|e| e.message == message).count() as u64;
        assert_eq!(
            recorded,
            seen,
            "attempts recorded vs requests seen for {message:?}; log: {:?}",
            log.iter().map(|e| &e.message).collect::<Vec<_>>()
        );
    }
}

/// Results of an experiment, and distinct (row, repetition) pairs among them, from the store.
fn counts(db: &Path, id: &str) -> (i64, i64) {
    let row = &sql(
        db,
        &format!(
            "SELECT COUNT(*), (SELECT COUNT(*) FROM (SELECT DISTINCT row_index, repetition \
             FROM results WHERE experiment_id = '{id}') d) FROM results WHERE experiment_id = '{id}'"
        ),
    )[0];
    (row[0].parse().unwrap(), row[1].parse().unwrap())
}

/// The `error:` and `hint:` lines at the end of stderr (progress lines may come before).
fn last_two_lines(stderr: &str) -> (String, String) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    (
        lines[lines.len() - 2].to_string(),
        lines[lines.len() - 1].to_string(),
    )
}

fn gaps(entries: &[Entry]) -> Vec<Duration> {
    entries.windows(2).map(|w| w[1].at - w[0].at).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. One test per fault
// ---------------------------------------------------------------------------------------------

#[test]
fn fault_429_retry_after_seconds_is_waited_out() {
    let f = run_faults(
        Duration::ZERO,
        &["a fault=429:1:2", "plain"],
        &["--max-retries", "2"],
    );
    let a = f.requests(0);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].retry_after.as_deref(), Some("2"));
    assert!(
        a[1].at - a[0].at >= Duration::from_secs(2),
        "retried {:?} after a Retry-After of 2 s",
        a[1].at - a[0].at
    );
    assert_eq!(f.row(0)["status"], "ok");
    assert_eq!(f.row(0)["attempts"], 2);
    assert_eq!(f.row(0)["output"], "a fault=429:1:2");
}

#[test]
fn fault_429_retry_after_http_date_is_waited_out() {
    let f = run_faults(
        Duration::ZERO,
        &["b fault=429date:1:2", "plain"],
        &["--max-retries", "2"],
    );
    let b = f.requests(0);
    assert_eq!(b.len(), 2);
    let until = httpdate::parse_http_date(b[0].retry_after.as_deref().unwrap()).unwrap();
    assert!(
        b[1].wall >= until,
        "came back at {:?}, before the date the server named ({:?})",
        b[1].wall,
        until
    );
    assert_eq!(f.row(0)["status"], "ok");
    assert_eq!(f.row(0)["attempts"], 2);
}

#[test]
fn fault_429_asking_for_more_than_120_s_fails_the_row_without_waiting() {
    let started = Instant::now();
    let f = run_faults(
        Duration::ZERO,
        &["c fault=429:1:600", "plain"],
        &["--max-retries", "3"],
    );
    assert!(started.elapsed() < Duration::from_secs(30), "it waited");
    assert_eq!(f.requests(0).len(), 1);
    let c = f.row(0);
    assert_eq!(c["status"], "error");
    assert_eq!(c["error_kind"], "http");
    assert_eq!(c["http_status"], 429);
    assert_eq!(c["attempts"], 1);
    assert!(
        c["error_message"].as_str().unwrap().contains("600 s"),
        "{c}"
    );
    assert_eq!(f.row(1)["status"], "ok");
}

/// A retryable status: twice then success is ok on the third attempt, always is an error after
/// `--max-retries 2`; the waits between attempts grow (500 ms base, doubled, half of each step
/// random, so at least 250 ms then 500 ms).
fn retried_with_backoff(code: u16) {
    let twice = format!("t fault={code}:2");
    let always = format!("u fault={code}");
    let f = run_faults(
        Duration::ZERO,
        &[&twice, &always, "plain"],
        &["--max-retries", "2", "--concurrency", "4"],
    );
    for index in [0, 1] {
        let seen = f.requests(index);
        assert_eq!(seen.len(), 3, "{code}: 1 + 2 retries");
        let waits = gaps(&seen);
        assert!(
            waits[0] >= Duration::from_millis(250) && waits[1] >= Duration::from_millis(500),
            "{code}: backoff {waits:?}"
        );
    }
    assert_eq!(f.row(0)["status"], "ok");
    assert_eq!(f.row(0)["attempts"], 3);
    let u = f.row(1);
    assert_eq!(u["status"], "error");
    assert_eq!(u["error_kind"], "http");
    assert_eq!(u["http_status"], code);
    assert_eq!(u["attempts"], 3);
    assert!(
        u["error_message"]
            .as_str()
            .unwrap()
            .contains(&format!("fault {code}")),
        "{u}"
    );
    assert_eq!(f.row(2)["status"], "ok");
}

#[test]
fn fault_500_is_retried_with_backoff() {
    retried_with_backoff(500);
}

#[test]
fn fault_502_is_retried_with_backoff() {
    retried_with_backoff(502);
}

#[test]
fn fault_503_is_retried_with_backoff() {
    retried_with_backoff(503);
}

#[test]
fn fault_504_is_retried_with_backoff() {
    retried_with_backoff(504);
}

/// A status that is never retried: one request, recorded with its status, and the run goes on.
/// One at a time and after a success, so that 401/403 are a row's failure, not a refused key.
fn not_retried(code: u16, kind: &str) {
    let faulty = format!("n fault={code}");
    let f = run_faults(
        Duration::ZERO,
        &["first", &faulty, "after"],
        &["--max-retries", "3", "--concurrency", "1"],
    );
    assert_eq!(f.requests(1).len(), 1, "{code} was retried");
    let n = f.row(1);
    assert_eq!(n["status"], "error");
    assert_eq!(n["error_kind"], kind);
    assert_eq!(n["http_status"], code);
    assert_eq!(n["attempts"], 1);
    assert!(
        n["error_message"]
            .as_str()
            .unwrap()
            .contains(&format!("fault {code}")),
        "{n}"
    );
    assert_eq!(f.row(0)["status"], "ok");
    assert_eq!(f.row(2)["status"], "ok");
    assert_eq!(f.out["summary"]["errored"], 1);
}

#[test]
fn fault_400_is_not_retried() {
    not_retried(400, "http");
}

#[test]
fn fault_401_after_a_success_is_recorded_not_retried() {
    not_retried(401, "auth");
}

#[test]
fn fault_403_after_a_success_is_recorded_not_retried() {
    not_retried(403, "auth");
}

#[test]
fn fault_404_is_not_retried() {
    not_retried(404, "http");
}

#[test]
fn fault_422_is_not_retried() {
    not_retried(422, "http");
}

#[test]
fn fault_403_before_any_success_stops_the_run_and_writes_nothing() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let queries: Vec<String> = (0..30).map(|i| format!("q{i} fault=403")).collect();
    let data = dataset(&env, "d.csv", &queries);
    let base = server.base_url();
    let before = dump(&env.db);
    let output = env.run(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--concurrency",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(3));
    let err = String::from_utf8_lossy(&output.stderr);
    let (error, hint) = last_two_lines(&err);
    assert!(
        error.starts_with("error: ") && error.contains("refused the credentials"),
        "{err}"
    );
    assert!(
        hint.starts_with("hint: ") && hint.contains("OPENAI_API_KEY"),
        "{err}"
    );
    assert_eq!(dump(&env.db), before, "the failed run left a trace");
    assert!(
        server.log().len() <= 4,
        "stopped instead of hammering: {} requests",
        server.log().len()
    );
    assert!(
        server
            .log()
            .iter()
            .all(|e| e.fault.as_deref() == Some("403")),
        "never retried"
    );
}

/// A fault that ends in a timeout: `--timeout 1 --max-retries 1` gives two attempts, each cut
/// off after about a second, recorded as `timeout`.
fn times_out(kind: &str) {
    let faulty = format!("h fault={kind}");
    let started = Instant::now();
    let f = run_faults(
        Duration::ZERO,
        &[&faulty, "plain"],
        &["--timeout", "1", "--max-retries", "1"],
    );
    let seen = f.requests(0);
    assert_eq!(seen.len(), 2, "{kind}: one retry");
    assert!(
        gaps(&seen)[0] >= Duration::from_millis(950),
        "{kind}: the first attempt was given up after {:?}",
        gaps(&seen)[0]
    );
    let h = f.row(0);
    assert_eq!(h["status"], "error");
    assert_eq!(h["error_kind"], "timeout", "{h}");
    assert_eq!(h["attempts"], 2);
    assert!(h["http_status"].is_null() || h["http_status"] == 200);
    let latency = h["latency_ms"].as_f64().unwrap();
    assert!(
        (900.0..3000.0).contains(&latency),
        "{kind}: the last attempt took {latency} ms"
    );
    assert_eq!(f.row(1)["status"], "ok");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{kind}: {:?}",
        started.elapsed()
    );
}

#[test]
fn fault_hang_before_headers_times_out() {
    times_out("hang");
}

#[test]
fn fault_stop_mid_body_times_out() {
    times_out("hangbody");
}

#[test]
fn fault_slow_drip_times_out_on_the_whole_not_per_read() {
    // Each byte arrives 50 ms after the last, so no single read stalls; the whole body would
    // take ~10 s. The timeout bounds the attempt, body included.
    times_out("slowdrip");
}

#[test]
fn fault_dropped_connection_is_retried_then_recorded() {
    let f = run_faults(
        Duration::ZERO,
        &["first", "d fault=drop:1", "e fault=drop"],
        &["--max-retries", "1", "--concurrency", "1"],
    );
    assert_eq!(f.requests(1).len(), 2);
    assert_eq!(f.row(1)["status"], "ok");
    assert_eq!(f.row(1)["attempts"], 2);
    assert_eq!(f.requests(2).len(), 2);
    let e = f.row(2);
    assert_eq!(e["status"], "error");
    assert_eq!(e["error_kind"], "connection", "{e}");
    assert_eq!(e["attempts"], 2);
}

#[test]
fn fault_dropped_connections_on_the_first_rows_do_not_stop_a_reachable_run() {
    // The endpoint accepts connections and then drops them: that is a fault of those rows,
    // not an unreachable endpoint, even before any call has succeeded.
    let f = run_faults(
        Duration::ZERO,
        &["d0 fault=drop", "d1 fault=drop", "plain"],
        &["--max-retries", "1", "--concurrency", "1"],
    );
    assert_eq!(f.row(0)["error_kind"], "connection");
    assert_eq!(f.row(1)["error_kind"], "connection");
    assert_eq!(f.row(2)["status"], "ok");
}

/// A 200 whose body is not a usable completion: recorded as `invalid_response`, not retried.
fn invalid_response(kind: &str, needle: &str) {
    let faulty = format!("i fault={kind}");
    let f = run_faults(Duration::ZERO, &[&faulty, "plain"], &["--max-retries", "3"]);
    assert_eq!(f.requests(0).len(), 1, "{kind} was retried");
    let i = f.row(0);
    assert_eq!(i["status"], "error");
    assert_eq!(i["error_kind"], "invalid_response");
    assert_eq!(i["http_status"], 200);
    assert_eq!(i["attempts"], 1);
    assert!(i["output"].is_null());
    let message = i["error_message"].as_str().unwrap();
    assert!(message.contains(needle), "{kind}: {message}");
    assert!(message.len() < 1000, "{kind}: an error message stays short");
    assert_eq!(f.row(1)["status"], "ok");
}

#[test]
fn fault_invalid_json_is_an_invalid_response() {
    invalid_response("badjson", "not JSON");
}

#[test]
fn fault_no_choices_is_an_invalid_response() {
    invalid_response("nochoices", "no `choices`");
}

#[test]
fn fault_empty_choices_is_an_invalid_response() {
    invalid_response("emptychoices", "`choices` is empty");
}

#[test]
fn fault_null_content_is_an_invalid_response() {
    invalid_response("nullcontent", "null");
}

#[test]
fn fault_huge_body_is_refused_without_being_stored() {
    let started = Instant::now();
    invalid_response("huge", "larger than 16 MiB");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The server really offered the whole thing.
    const { assert!(HUGE > 16 * 1024 * 1024) };
}

#[test]
fn fault_endless_body_is_cut_off_long_before_the_timeout() {
    let started = Instant::now();
    let f = run_faults(
        Duration::ZERO,
        &["x fault=endless", "plain"],
        &["--timeout", "30"],
    );
    let x = f.row(0);
    assert_eq!(x["error_kind"], "invalid_response", "{x}");
    assert!(x["latency_ms"].as_f64().unwrap() < 15_000.0, "{x}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn faults_at_a_rate_leave_every_row_accounted_for() {
    // Every 3rd request (by arrival) gets a 500, whatever row it is for.
    let env = Env::new();
    let server = FaultServer::with_rate(Duration::from_millis(2), "500", 3);
    let queries: Vec<String> = (0..60).map(|i| format!("rated {i}")).collect();
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let f = run_on(
        env,
        server,
        &refs,
        &[
            "--repetitions",
            "2",
            "--concurrency",
            "8",
            "--max-retries",
            "1",
        ],
    );
    let faulted = f.server.log().iter().filter(|e| e.fault.is_some()).count();
    assert!(faulted >= 40, "{faulted} faults");
    for r in &f.rows {
        match r["status"].as_str().unwrap() {
            "ok" => assert!(r["attempts"] == 1 || r["attempts"] == 2, "{r}"),
            _ => {
                assert_eq!(r["http_status"], 500, "{r}");
                assert_eq!(r["attempts"], 2, "{r}");
            }
        }
    }
}

#[test]
fn every_fault_at_once_with_repetitions_is_accounted_for() {
    let kinds = [
        "429:1:1",
        "429date:1:1",
        "408:1",
        "500:1",
        "502",
        "503:1",
        "504",
        "400",
        "404",
        "422",
        "drop:1",
        "drop",
        "hang",
        "hangbody",
        "slowdrip",
        "badjson",
        "nochoices",
        "emptychoices",
        "nullcontent",
        "huge",
    ];
    let mut queries: Vec<String> = vec!["warm up".into()];
    queries.extend(kinds.iter().map(|k| format!("all fault={k}")));
    queries.push("plain".into());
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let started = Instant::now();
    let f = run_faults(
        Duration::ZERO,
        &refs,
        &[
            "--repetitions",
            "2",
            "--concurrency",
            "48",
            "--timeout",
            "1",
            "--max-retries",
            "1",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // What each fault ends as, over both repetitions.
    let outcome = |kind: &str| -> BTreeSet<String> {
        let query = format!("all fault={kind}");
        f.rows
            .iter()
            .filter(|r| r["vars"]["query"] == query.as_str())
            .map(|r| match r["status"].as_str().unwrap() {
                "ok" => "ok".to_string(),
                _ => r["error_kind"].as_str().unwrap().to_string(),
            })
            .collect()
    };
    let expect = |kind: &str, what: &[&str]| {
        let wanted: BTreeSet<String> = what.iter().map(|s| s.to_string()).collect();
        assert_eq!(outcome(kind), wanted, "{kind}");
    };
    expect("429:1:1", &["ok"]);
    expect("429date:1:1", &["ok"]);
    expect("408:1", &["ok"]);
    expect("500:1", &["ok"]);
    expect("502", &["http"]);
    expect("503:1", &["ok"]);
    expect("504", &["http"]);
    expect("400", &["http"]);
    expect("404", &["http"]);
    expect("422", &["http"]);
    expect("drop:1", &["ok"]);
    expect("drop", &["connection"]);
    expect("hang", &["timeout"]);
    expect("hangbody", &["timeout"]);
    expect("slowdrip", &["timeout"]);
    expect("badjson", &["invalid_response"]);
    expect("nochoices", &["invalid_response"]);
    expect("emptychoices", &["invalid_response"]);
    expect("nullcontent", &["invalid_response"]);
    expect("huge", &["invalid_response"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Crash safety: kill -9 at several points, then resume
// ---------------------------------------------------------------------------------------------

/// Polls `ready` (every 5 ms, at most `limit`) while `child` runs; panics when the child ends
/// first or time runs out.
fn poll_while_running(
    child: &mut Child,
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child at most `limit`, killing it past that; returns its output.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("a runner process ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn experiment_ids(db: &Path) -> Vec<String> {
    try_sql(db, "SELECT id FROM experiments ORDER BY created_at")
        .unwrap_or_default()
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
}

fn ok_count(db: &Path) -> usize {
    try_sql(db, "SELECT COUNT(*) FROM results WHERE status = 'ok'")
        .and_then(|rows| rows[0][0].parse().ok())
        .unwrap_or(0)
}

/// Every successful result: (row index, repetition) → (row id, output).
fn successes(db: &Path, id: &str) -> BTreeMap<(i64, i64), (String, String)> {
    sql(
        db,
        &format!(
            "SELECT row_index, repetition, row_id, output FROM results \
             WHERE experiment_id = '{id}' AND status = 'ok'"
        ),
    )
    .into_iter()
    .map(|r| {
        (
            (r[0].parse().unwrap(), r[1].parse().unwrap()),
            (r[2].clone(), r[3].clone()),
        )
    })
    .collect()
}

/// What an experiment's stored results say, without timings: for comparing two runs.
fn result_set(env: &Env, id: &str) -> Vec<(String, u64, String, String, String)> {
    let shown = env.json(&["experiment", "show", id, "--rows", "--json"]);
    shown["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row_id"].as_str().unwrap().to_string(),
                r["repetition"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                r["output"].as_str().unwrap_or("").to_string(),
                r["messages"].to_string(),
            )
        })
        .collect()
}

#[test]
fn kill_9_at_several_points_then_resume_equals_an_uninterrupted_run() {
    const ROWS: usize = 2000;
    let queries: Vec<String> = (0..ROWS).map(|i| format!("q{i:04}")).collect();
    let args = |data: &str, base: &str| -> Vec<String> {
        strings(&[
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            data,
            "--base-url",
            base,
            "--concurrency",
            "8",
        ])
    };

    // The reference: the same run, uninterrupted, on its own store and endpoint, meanwhile.
    let reference = Env::new();
    let reference_server = FaultServer::start(Duration::from_millis(10));
    echo_prompt(&reference);
    let reference_data = dataset(&reference, "big.csv", &queries);
    let reference_child = reference
        .std_cmd()
        .args(args(&reference_data, &reference_server.base_url()))
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(10));
    echo_prompt(&env);
    let data = dataset(&env, "big.csv", &queries);
    let base = server.base_url();
    // Kill points: as soon as the experiment exists (no result yet, or barely), then at three
    // progress thresholds; the last three kills hit `experiment resume`, not the first run.
    let thresholds = [0usize, 500, 1000, 1500];
    let mut id: Option<String> = None;
    let mut kept: BTreeMap<(i64, i64), (String, String)> = BTreeMap::new();
    let mut resent = Vec::new();
    for threshold in thresholds {
        let stage_started = server.now();
        let mut cmd = env.std_cmd();
        match &id {
            None => cmd.args(args(&data, &base)),
            Some(id) => cmd.args(["experiment", "resume", id]),
        };
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        poll_while_running(
            &mut child,
            Duration::from_secs(60),
            &format!("{threshold} stored results"),
            || !experiment_ids(&env.db).is_empty() && ok_count(&env.db) >= threshold,
        );
        child.kill().unwrap();
        child.wait().unwrap();

        assert_eq!(integrity(&env.db), "ok", "after the kill at {threshold}");
        let ids = experiment_ids(&env.db);
        assert_eq!(ids.len(), 1, "a resume never makes a second experiment");
        let current = id.get_or_insert_with(|| ids[0].clone()).clone();
        let status = sql_value(&env.db, "SELECT status FROM experiments");
        assert_eq!(
            status, "running",
            "a killed run cannot have said it finished"
        );
        let now = successes(&env.db, &current);
        // No lost successful row, none overwritten.
        for (key, value) in &kept {
            assert_eq!(
                now.get(key),
                Some(value),
                "lost or changed after the kill at {threshold}"
            );
        }
        let (count, distinct) = counts(&env.db, &current);
        assert_eq!(count, distinct, "no duplicate (row, repetition)");
        assert!(
            now.len() < ROWS,
            "killed at {threshold}, yet everything was done"
        );
        // This stage asked only for rows without a stored success.
        let asked: Vec<String> = server
            .log()
            .into_iter()
            .filter(|e| e.at >= stage_started)
            .map(|e| e.message)
            .collect();
        let already: BTreeSet<&String> = kept.values().map(|(_, output)| output).collect();
        assert!(
            asked.iter().all(|m| !already.contains(m)),
            "a row with a stored success was asked for again"
        );
        // What was asked for and is not stored now was in flight (or not yet committed).
        let lost = asked
            .iter()
            .filter(|m| !now.values().any(|(_, output)| output == *m))
            .count();
        resent.push(lost);
        kept = now;
    }

    let id = id.unwrap();
    let resume_started = server.now();
    let out = env.json(&["experiment", "resume", &id, "--json"]);
    assert_eq!(out["experiment"]["status"], "completed");
    assert_eq!(out["summary"]["results"], ROWS as u64);
    assert_eq!(out["summary"]["ok"], ROWS as u64);
    assert_eq!(integrity(&env.db), "ok");
    let last: Vec<String> = server
        .log()
        .into_iter()
        .filter(|e| e.at >= resume_started)
        .map(|e| e.message)
        .collect();
    assert_eq!(
        last.len(),
        ROWS - kept.len(),
        "the last resume asked for exactly the missing rows"
    );
    let finished = successes(&env.db, &id);
    for (key, value) in &kept {
        assert_eq!(finished.get(key), Some(value));
    }
    // Only what was in flight at each kill (8 at most), or had finished but was not committed
    // yet, is asked for twice. The writer commits whatever has arrived as soon as the previous
    // commit ends, so the second part is what 8 workers finish during one commit: a few rows on
    // an SQLite file, more while a loaded PostgreSQL server syncs its log (at 10 ms a request,
    // 8 workers finish 8 rows per 10 ms of commit). 64 bounds a commit of up to 70 ms.
    let total = server.log().len();
    assert!(
        resent.iter().all(|&n| n <= 64),
        "requests lost per kill: {resent:?}"
    );
    assert_eq!(total, ROWS + resent.iter().sum::<usize>());

    let reference_out = wait_bounded(reference_child, Duration::from_secs(120));
    assert!(reference_out.status.success());
    let reference_json: Value = serde_json::from_slice(&reference_out.stdout).unwrap();
    let reference_id = reference_json["experiment"]["id"].as_str().unwrap();
    let expected = result_set(&reference, reference_id);
    assert_eq!(expected.len(), ROWS);
    assert_eq!(
        result_set(&env, &id),
        expected,
        "same row ids, same outputs"
    );
    eprintln!("requests re-sent after each kill: {resent:?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Concurrent writers
// ---------------------------------------------------------------------------------------------

fn tag_history(env: &Env, prompt: &str, tag: &str) -> Vec<Value> {
    env.json(&["tag", "history", prompt, tag, "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// The tag points where its last history entry says, and the history is one unbroken chain:
/// each change starts where the previous one left the tag.
fn assert_tag_matches_history(env: &Env, prompt: &str, tag: &str) {
    let history = tag_history(env, prompt, tag);
    for pair in history.windows(2) {
        assert_eq!(
            pair[1]["from_version_id"], pair[0]["to_version_id"],
            "broken history chain: {pair:?}"
        );
    }
    let last = history.last().expect("a history");
    let tags = env.json(&["tag", "list", prompt, "--json"]);
    let current = tags
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tag)
        .map(|t| t["version_id"].clone())
        .unwrap_or(Value::Null);
    assert_eq!(
        current, last["to_version_id"],
        "tag vs its last history entry"
    );
}

#[test]
fn four_experiments_and_tag_moves_at_once_share_one_store() {
    const ROWS: usize = 250;
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(10));
    echo_prompt(&env);
    env.ok(&["prompt", "update", "echo", "--template", "v2 {{query}}"]);
    env.ok(&["prompt", "update", "echo", "--template", "v3 {{query}}"]);
    env.ok(&["tag", "set", "echo", "staging", "--version", "1"]);
    env.ok(&["tag", "set", "echo", "canary", "--version", "1"]);
    let base = server.base_url();
    let children: Vec<Child> = (0..4)
        .map(|k| {
            let queries: Vec<String> = (0..ROWS).map(|i| format!("run{k} q{i}")).collect();
            let data = dataset(&env, &format!("d{k}.csv"), &queries);
            env.std_cmd()
                .args([
                    "experiment",
                    "--prompt",
                    "echo",
                    "--version",
                    "1",
                    "--dataset",
                    &data,
                    "--base-url",
                    &base,
                    "--concurrency",
                    "4",
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Meanwhile two writers move tags, one in a thread, one here.
    const MOVES: usize = 20;
    let mover = |tag: &'static str| {
        let cmd = env.std_cmd();
        let program = cmd.get_program().to_owned();
        let dir = env.dir.path().to_path_buf();
        let db = env.db.clone();
        std::thread::spawn(move || {
            for i in 0..MOVES {
                // 2, 3, 1, 2, …: every set moves the tag.
                let version = (1 + (i + 1) % 3).to_string();
                let output = std::process::Command::new(&program)
                    .current_dir(&dir)
                    .env("RUNNER_DB", &db)
                    .env("USER", "mover")
                    .args(["tag", "set", "echo", tag, "--version", &version])
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&output.stderr).to_string();
                assert!(output.status.success(), "tag set {tag}: {stderr}");
                assert!(!stderr.to_lowercase().contains("locked"), "{stderr}");
            }
        })
    };
    let canary = mover("canary");
    let staging = mover("staging");
    staging.join().unwrap();
    canary.join().unwrap();
    for child in children {
        let output = wait_bounded(child, Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(
            !stderr.to_lowercase().contains("locked") && !stderr.to_lowercase().contains("busy"),
            "{stderr}"
        );
        let out: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(out["summary"]["ok"], ROWS as u64, "{out}");
        let id = out["experiment"]["id"].as_str().unwrap();
        assert_eq!(counts(&env.db, id), (ROWS as i64, ROWS as i64));
        assert_eq!(successes(&env.db, id).len(), ROWS);
    }
    for tag in ["staging", "canary"] {
        // The first set, then every move (each one changes the version).
        assert_eq!(tag_history(&env, "echo", tag).len(), 1 + MOVES, "{tag}");
        assert_tag_matches_history(&env, "echo", tag);
    }
    // The writers really overlapped: tags moved while all four experiments were running.
    let row = sql(
        &env.db,
        "SELECT MAX(created_at), MIN(finished_at) FROM experiments",
    )
    .remove(0);
    let (last_start, first_end) = (row[0].clone(), row[1].clone());
    let during = tag_history(&env, "echo", "staging")
        .iter()
        .chain(tag_history(&env, "echo", "canary").iter())
        .filter(|e| {
            let at = e["at"].as_str().unwrap();
            at > last_start.as_str() && at < first_end.as_str()
        })
        .count();
    assert!(during > 0, "no tag moved while the experiments ran");
    assert_eq!(integrity(&env.db), "ok");
}

/// greet: v1 fails every row (production), v2 passes (staging), v3 passes too.
fn promotable(env: &Env) {
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
    env.ok(&["prompt", "update", "greet", "--template", "Also {{query}}"]);
}

/// A dataset unique to `round` (an extra column), so each promotion runs fresh experiments.
fn promote_data(env: &Env, round: usize, rows: usize) -> String {
    let mut text = String::from("id,query,expected,round\n");
    for i in 0..rows {
        text.push_str(&format!("r{i},word{i},word{i},{round}\n"));
    }
    env.write(&format!("promote{round}.csv"), &text)
        .to_str()
        .unwrap()
        .to_string()
}

fn spawn_promote(env: &Env, data: &str, base: &str) -> Child {
    env.std_cmd()
        .args([
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
            base,
            "--concurrency",
            "2",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn promote_racing_a_forced_tag_set_leaves_the_tag_where_its_history_says() {
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(20));
    promotable(&env);
    let base = server.base_url();

    // Deterministic: the tag moves while the gate is being evaluated. The promotion must not
    // overwrite that move.
    let data = promote_data(&env, 0, 40);
    let mut promote = spawn_promote(&env, &data, &base);
    poll_while_running(
        &mut promote,
        Duration::from_secs(60),
        "the promotion's first experiment",
        || !experiment_ids(&env.db).is_empty(),
    );
    env.ok(&[
        "tag",
        "set",
        "greet",
        "production",
        "--version",
        "3",
        "--force",
    ]);
    let output = wait_bounded(promote, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let (error, hint) = last_two_lines(&stderr);
    assert!(
        error.contains("moved while the gate was being evaluated"),
        "{stderr}"
    );
    assert!(hint.starts_with("hint: "), "{stderr}");
    let history = tag_history(&env, "greet", "production");
    assert_eq!(history.last().unwrap()["action"], "move");
    assert_eq!(history.last().unwrap()["to_seq"], 3);
    assert_tag_matches_history(&env, "greet", "production");

    // Free races: both start together, whoever wins, the tag and its history agree.
    for round in 1..=3 {
        env.ok(&[
            "tag",
            "set",
            "greet",
            "production",
            "--version",
            "1",
            "--force",
        ]);
        let data = promote_data(&env, round, 10);
        let promote = spawn_promote(&env, &data, &base);
        let tag_set = env
            .std_cmd()
            .args([
                "tag",
                "set",
                "greet",
                "production",
                "--version",
                "3",
                "--force",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let tag_set = wait_bounded(tag_set, Duration::from_secs(60));
        assert!(
            tag_set.status.success(),
            "{}",
            String::from_utf8_lossy(&tag_set.stderr)
        );
        let promoted = wait_bounded(promote, Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&promoted.stderr);
        assert!(
            matches!(promoted.status.code(), Some(0) | Some(3)),
            "round {round}: {stderr}"
        );
        assert!(!stderr.to_lowercase().contains("locked"), "{stderr}");
        assert_tag_matches_history(&env, "greet", "production");
        let history = tag_history(&env, "greet", "production");
        let promotions: Vec<&Value> = history
            .iter()
            .filter(|e| e["action"] == "promote")
            .collect();
        if promoted.status.code() == Some(0) {
            let last_promotion = promotions.last().expect("a promotion entry");
            assert_eq!(last_promotion["to_seq"], 2);
        }
    }
    assert_eq!(integrity(&env.db), "ok");
}

// ---------------------------------------------------------------------------------------------
// 4. Hostile input
// ---------------------------------------------------------------------------------------------

/// Runs a command that must fail: the exit code, nothing written (`Env::fails`), and stderr
/// exactly two lines, `error: …` naming every needle, then `hint: …`. Returns the error line.
fn refused(env: &Env, args: &[&str], code: i32, needles: &[&str]) -> String {
    let stderr = env.fails(args, code);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "{args:?}: one error line and one hint: {stderr}"
    );
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[1].starts_with("hint: "), "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
    lines[0].to_string()
}

/// A message a person can read at once.
fn short(line: &str) {
    assert!(
        line.chars().count() <= 400,
        "{} characters: {line:.200}…",
        line.len()
    );
}

#[test]
fn hostile_datasets_are_refused_before_any_request() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let base = server.base_url();
    let files: &[(&str, &[u8], &[&str])] = &[
        ("ragged.csv", b"id,query\n1,a\n2,b,c\n", &["ragged.csv", "line 3", "fields"]),
        (
            "unbalanced.csv",
            b"id,query\n1,\"never closed\n2,b\n3,c\n",
            &["unbalanced.csv", "line 2", "never closed"],
        ),
        (
            "latin1.csv",
            b"id,query\n1,caf\xe9\n",
            &["latin1.csv", "line 2", "UTF-8"],
        ),
        (
            "utf16.csv",
            b"i\x00d\x00,\x00q\x00\n\x001\x00,\x00a\x00\n\x00",
            &["utf16.csv", "line 1", "NUL byte"],
        ),
        ("nul.csv", b"id,query\n1,a\x00b\n", &["nul.csv", "line 2", "NUL byte"]),
        ("empty.csv", b"", &["empty.csv", "no data rows"]),
        ("header.csv", b"id,query\n", &["header.csv", "no data rows"]),
        (
            "dupcols.csv",
            b"id,query,query\n1,a,b\n",
            &["dupcols.csv", "line 1", "duplicate column name \"query\""],
        ),
        (
            "broken.jsonl",
            b"{\"id\": 1, \"query\": \"a\"}\n{\"id\": 2, \"query\": \n{\"id\": 3, \"query\": \"c\"}\n",
            &["broken.jsonl", "line 2", "invalid JSON"],
        ),
        (
            "dupids.csv",
            b"id,query\n1,a\n1,b\n",
            &["dupids.csv", "line 3", "duplicate id"],
        ),
        ("data.txt", b"id,query\n1,a\n", &["data.txt", "unknown dataset format"]),
    ];
    for (name, bytes, needles) in files {
        let path = env.path(name);
        std::fs::write(&path, bytes).unwrap();
        let line = refused(
            &env,
            &[
                "experiment",
                "--prompt",
                "echo",
                "--dataset",
                path.to_str().unwrap(),
                "--base-url",
                &base,
            ],
            2,
            needles,
        );
        short(&line);
    }
    assert!(server.log().is_empty(), "a request was sent");
}

#[test]
fn a_10_mb_cell_is_data_recorded_whole() {
    // A big cell is not an error: it is sent and recorded as it is (the file is read once to
    // check it, then streamed, never held whole).
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let big = "x".repeat(10 * 1024 * 1024);
    let data = dataset(&env, "big_cell.csv", &[big.clone(), "small".to_string()]);
    let out = env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &server.base_url(),
        "--json",
    ]);
    assert_eq!(out["summary"]["ok"], 2, "{out}");
    let id = out["experiment"]["id"].as_str().unwrap();
    let length: i64 = sql_value(
        &env.db,
        &format!(
            "SELECT length(output) FROM results WHERE experiment_id = '{id}' AND row_id = 'r0'"
        ),
    )
    .parse()
    .unwrap();
    assert_eq!(length as usize, big.len());
}

#[test]
fn hostile_templates_are_refused() {
    let env = Env::new();
    echo_prompt(&env);
    let nested = format!("{}x{}", "{{#a}}".repeat(5000), "{{/a}}".repeat(5000));
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            strings(&["--template", "Hello {{name"]),
            vec!["unclosed `{{`", "line 1"],
        ),
        (
            strings(&["--template", "Hello {name", "--format", "fstring"]),
            vec!["unclosed '{'"],
        ),
        (
            strings(&["--template", "{{ not a name }}"]),
            vec!["invalid variable name"],
        ),
        (strings(&["--template", &nested]), vec!["sections"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["prompt", "create", "hostile"];
        args.extend(extra.iter().map(String::as_str));
        let line = refused(&env, &args, 2, &needles);
        short(&line);
    }
}

#[test]
fn a_template_with_10000_variables_works_and_names_what_is_missing() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let template: String = (0..10_000).map(|i| format!("{{{{v{i}}}}} ")).collect();
    let started = Instant::now();
    env.ok(&[
        "prompt",
        "create",
        "wide",
        "--template",
        &template,
        "--model",
        "m",
    ]);
    let shown = env.json(&["prompt", "show", "wide", "--json"]);
    assert_eq!(shown["variables"].as_array().unwrap().len(), 10_000);
    // Every missing variable is named (strict rendering), nothing is sent, nothing written.
    let data = dataset(&env, "d.csv", &strings(&["q"]));
    let line = refused(
        &env,
        &[
            "experiment",
            "--prompt",
            "wide",
            "--dataset",
            &data,
            "--base-url",
            &server.base_url(),
        ],
        2,
        &["v0", "v19", "and 9980 more"],
    );
    // The line names the first variables and counts the rest.
    short(&line);
    assert!(line.contains("and 9980 more"), "{line}");
    assert!(server.log().is_empty());
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn hostile_names_and_params_are_refused() {
    let env = Env::new();
    echo_prompt(&env);
    env.ok(&["tag", "set", "echo", "staging", "--version", "1"]);
    let long = "a".repeat(10 * 1024);
    let names = ["has space", "a/b", "../up", "😀", "tab\there", ""];
    for name in names {
        let line = refused(
            &env,
            &["prompt", "create", name, "--template", "x"],
            2,
            &["invalid prompt name"],
        );
        short(&line);
        let line = refused(
            &env,
            &["tag", "set", "echo", name, "--version", "1"],
            2,
            &["invalid tag name"],
        );
        short(&line);
    }
    // A name with a newline stays on one line (escaped), and a 10 KB name is cut short.
    let line = refused(
        &env,
        &["prompt", "create", "new\nline", "--template", "x"],
        2,
        &["invalid prompt name \"new\\nline\""],
    );
    short(&line);
    let line = refused(
        &env,
        &["prompt", "create", &long, "--template", "x"],
        2,
        &["at most 128 characters"],
    );
    short(&line);
    refused(
        &env,
        &["tag", "set", "echo", "12345", "--version", "1"],
        2,
        &["only of digits"],
    );
    let params: &[(&str, &[&str])] = &[
        ("temperature", &["expected KEY=VALUE"]),
        ("=0.7", &["expected KEY=VALUE"]),
        ("stop=[\"\\n\"", &["invalid JSON"]),
        ("response_format={\"type\":", &["invalid JSON"]),
    ];
    for (param, needles) in params {
        for command in ["create", "update"] {
            let name = if command == "create" { "fresh" } else { "echo" };
            let line = refused(
                &env,
                &["prompt", command, name, "--template", "x", "--param", param],
                2,
                needles,
            );
            short(&line);
        }
    }
    let line = refused(
        &env,
        &["prompt", "update", "echo", "--meta", "no-equals-sign"],
        2,
        &["expected KEY=VALUE"],
    );
    short(&line);
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Files in a directory, by name.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

#[test]
fn hostile_store_paths_are_refused_and_never_altered() {
    let env = Env::new();
    // A --db in a directory that does not exist: nothing is created. (A read of a store that
    // does not exist says so, as documented; it creates nothing either.)
    let missing = env.path("no/such/dir/runner.db");
    let missing = missing.to_str().unwrap();
    let line = refused(
        &env,
        &["--db", missing, "prompt", "create", "p", "--template", "x"],
        3,
        &["does not exist"],
    );
    short(&line);
    let err = env.fails(&["--db", missing, "prompt", "list"], 2);
    assert!(
        err.starts_with(&format!("error: no store at {missing}\n")),
        "{err}"
    );
    assert!(!env.path("no").exists());

    // A --db in a directory nobody may write to. As root every directory is writable, so
    // there the test uses /proc, which refuses new files to everyone.
    let locked = env.path("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    let read_only = if root {
        std::path::PathBuf::from("/proc/runner-test.db")
    } else {
        locked.join("runner.db")
    };
    let line = refused(
        &env,
        &[
            "--db",
            read_only.to_str().unwrap(),
            "prompt",
            "create",
            "p",
            "--template",
            "x",
        ],
        3,
        &["cannot open store"],
    );
    short(&line);
    assert!(!read_only.exists());
    assert!(listing(&locked).is_empty());

    // A file that is not SQLite: refused for reading and for writing, byte for byte unchanged.
    let text = env.write("notes.db", "these are my notes, not a database\n");
    let before = sha256(&text);
    for args in [
        vec!["prompt", "list"],
        vec!["prompt", "create", "p", "--template", "x"],
        vec!["experiment", "list"],
    ] {
        let mut all = vec!["--db", text.to_str().unwrap()];
        all.extend(args);
        let line = refused(&env, &all, 3, &["not a runner store"]);
        short(&line);
    }
    assert_eq!(sha256(&text), before);

    // A store from a newer runner: refused with a hint, never altered (no migration, no
    // journal mode change, no leftover -wal / -shm).
    let newer_dir = env.path("newer");
    std::fs::create_dir(&newer_dir).unwrap();
    let newer = newer_dir.join("runner.db");
    env.ok(&[
        "--db",
        newer.to_str().unwrap(),
        "prompt",
        "create",
        "p",
        "--template",
        "x",
    ]);
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let files = listing(&newer_dir);
    let before = sha256(&newer);
    for args in [
        vec!["prompt", "list"],
        vec!["prompt", "show", "p"],
        vec!["prompt", "update", "p", "--template", "y"],
        vec!["tag", "set", "p", "live", "--version", "1"],
        vec!["experiment", "list"],
    ] {
        let mut all = vec!["--db", newer.to_str().unwrap()];
        all.extend(args);
        let line = refused(&env, &all, 3, &["schema version 99", "newer"]);
        short(&line);
    }
    assert_eq!(sha256(&newer), before, "a newer store was altered");
    assert_eq!(listing(&newer_dir), files, "files were left next to it");
}

// ---------------------------------------------------------------------------------------------
// 5. Security
// ---------------------------------------------------------------------------------------------

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn the_api_key_never_reaches_the_store_any_output_or_any_file() {
    const KEY: &str = "sk-reliability-7f3a9c1e-SECRET";
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let base = server.base_url();
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut run = |label: &str, args: &[&str], extra_env: &[(&str, &str)]| -> Output {
        let mut cmd = env.cmd();
        cmd.env("OPENAI_API_KEY", KEY);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let output = cmd.args(args).output().unwrap();
        outputs.push((label.to_string(), output.clone()));
        output
    };
    run(
        "create",
        &[
            "prompt",
            "create",
            "greet",
            "--template",
            "I cannot help.",
            "--model",
            "m",
            "--tag",
            "production",
        ],
        &[],
    );
    run(
        "update",
        &[
            "prompt",
            "update",
            "greet",
            "--template",
            "About {{query}}",
            "--tag",
            "staging",
        ],
        &[],
    );
    let data = env.write(
        "cases.csv",
        "id,query,expected\na,order,order\nb,password,password\nc,refund fault=400,refund\nd,x fault=500:1,x\n",
    );
    let data = data.to_str().unwrap();
    let first = run(
        "experiment",
        &[
            "experiment",
            "--prompt",
            "greet",
            "--tag",
            "staging",
            "--dataset",
            data,
            "--base-url",
            &base,
            "--json",
            "--max-error-rate",
            "1",
        ],
        &[],
    );
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let id = serde_json::from_slice::<Value>(&first.stdout).unwrap()["experiment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    run(
        "show",
        &["experiment", "show", &id, "--rows", "--json"],
        &[],
    );
    run("show table", &["experiment", "show", &id, "--rows"], &[]);
    run(
        "show csv",
        &["experiment", "show", &id, "--csv", "rows.csv"],
        &[],
    );
    run("list", &["experiment", "list", "--json"], &[]);
    let compare = run(
        "compare",
        &[
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
            "--markdown",
            "--max-error-rate",
            "1",
        ],
        &[],
    );
    assert!(
        compare.status.success(),
        "{}",
        String::from_utf8_lossy(&compare.stderr)
    );
    let promote = run(
        "promote",
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
            "--min-pass-rate",
            "0.5",
            "--max-error-rate",
            "1",
            "--json",
            "--markdown",
            "gate.md",
            "--junit",
            "gate.xml",
        ],
        &[],
    );
    assert!(
        matches!(promote.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&promote.stderr)
    );
    run("history", &["tag", "history", "greet", "--json"], &[]);
    run(
        "render",
        &[
            "prompt", "render", "greet", "--tag", "staging", "--var", "query=q", "--json",
        ],
        &[],
    );
    run("export", &["export", "exported"], &[]);
    // Failing endpoints: a refused key, an unreachable one, and a key that cannot be a header.
    run(
        "create refused",
        &[
            "prompt",
            "create",
            "refused",
            "--template",
            "{{query}} fault=401",
            "--model",
            "m",
        ],
        &[],
    );
    let refused = run(
        "refused",
        &[
            "experiment",
            "--prompt",
            "refused",
            "--dataset",
            data,
            "--base-url",
            &base,
        ],
        &[],
    );
    assert_eq!(refused.status.code(), Some(3));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable_url = format!("http://127.0.0.1:{port}/v1");
    let unreachable = run(
        "unreachable",
        &[
            "experiment",
            "--prompt",
            "greet",
            "--dataset",
            data,
            "--base-url",
            &unreachable_url,
            "--json",
        ],
        &[],
    );
    assert_eq!(unreachable.status.code(), Some(3));
    let bad_key = format!("{KEY}\nX-Injected: yes");
    let mut cmd = env.cmd();
    let invalid = cmd
        .env("OPENAI_API_KEY", &bad_key)
        .args([
            "experiment",
            "--prompt",
            "greet",
            "--dataset",
            data,
            "--base-url",
            &base,
        ])
        .output()
        .unwrap();
    assert_eq!(
        invalid.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&invalid.stderr)
    );
    outputs.push(("bad key".into(), invalid));
    // A key written into the endpoint URL would be stored with the experiment: refused.
    let in_url = format!("http://user:{KEY}@{}/v1", server.addr);
    let requests = server.log().len();
    for (label, args, extra) in [
        (
            "key in --base-url",
            vec![
                "experiment",
                "--prompt",
                "greet",
                "--dataset",
                data,
                "--base-url",
                &in_url,
            ],
            vec![],
        ),
        (
            "key in OPENAI_BASE_URL",
            vec!["experiment", "--prompt", "greet", "--dataset", data],
            vec![("OPENAI_BASE_URL", in_url.as_str())],
        ),
    ] {
        let mut cmd = env.cmd();
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let before = dump(&env.db);
        let output = cmd.args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(output.status.code(), Some(2), "{label}: {stderr}");
        assert!(stderr.contains("carries credentials"), "{label}: {stderr}");
        assert_eq!(dump(&env.db), before, "{label}");
        outputs.push((label.into(), output));
    }
    assert_eq!(server.log().len(), requests, "nothing was sent");

    // The key was in play: every request carried it.
    assert!(!server.log().is_empty());
    assert!(
        server
            .log()
            .iter()
            .all(|e| e.authorization.as_deref() == Some(&format!("Bearer {KEY}")[..]))
    );
    // And it is nowhere: not in any output, error message or JSON …
    for (label, output) in &outputs {
        for stream in [&output.stdout, &output.stderr] {
            assert!(
                !String::from_utf8_lossy(stream).contains("reliability-7f3a9c1e"),
                "{label} printed the key"
            );
        }
    }
    // … nor in any file: the store, its -wal / -shm, the CSV, the reports, the export.
    let files = files_under(env.dir.path());
    let wanted: &[&str] = if crate::is_postgres(&env.db) {
        // The store is a database: its every row is searched instead of the file.
        let rows = dump(&env.db).join("\n");
        assert!(!rows.is_empty());
        assert!(
            !rows.contains("reliability-7f3a9c1e"),
            "the key reached the store"
        );
        &["rows.csv", "gate.md", "gate.xml"]
    } else {
        &["runner.db", "rows.csv", "gate.md", "gate.xml"]
    };
    for wanted in wanted {
        assert!(
            files.iter().any(|f| f.ends_with(wanted)),
            "{wanted} was not written: {files:?}"
        );
    }
    assert!(files.iter().any(|f| f.starts_with(env.path("exported"))));
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(20).any(|w| w == b"reliability-7f3a9c1e"),
            "key found in {}",
            file.display()
        );
    }
}

#[test]
fn a_dataset_value_never_becomes_a_command_in_a_cmd_evaluator() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let script = env.write(
        "judge.sh",
        "#!/bin/sh\ncat >> seen.jsonl\necho >> seen.jsonl\necho '{\"score\": 1, \"pass\": true, \"reason\": \"read it\"}'\n",
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hostile = [
        "$(touch PWNED1)",
        "; touch PWNED2",
        "`touch PWNED3`",
        "| touch PWNED4",
        "&& touch PWNED5 #",
        "\"; touch PWNED6; echo \"",
        "'$(touch PWNED7)'",
        "x\ntouch PWNED8",
    ];
    let data = dataset(&env, "hostile.csv", &strings(&hostile));
    let out = env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &server.base_url(),
        "--eval",
        &format!("cmd:{}", script.display()),
        "--eval",
        "exact",
        "--json",
    ]);
    assert_eq!(out["summary"]["ok"], hostile.len() as u64);
    let cmd = &out["summary"]["evaluators"][0];
    assert_eq!(
        cmd["passed"],
        hostile.len() as u64,
        "the program ran for every row: {cmd}"
    );
    assert_eq!(
        out["summary"]["evaluators"][1]["passed"],
        hostile.len() as u64
    );
    // The program got each value as data, on stdin …
    let seen = std::fs::read_to_string(env.path("seen.jsonl")).unwrap();
    let inputs: Vec<Value> = seen
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for value in hostile {
        assert!(
            inputs
                .iter()
                .any(|i| i["output"] == value && i["vars"]["query"] == value),
            "{value:?} did not arrive as data"
        );
    }
    // … and nothing ran it.
    let pwned: Vec<_> = files_under(env.dir.path())
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("PWNED"))
        .collect();
    assert!(pwned.is_empty(), "{pwned:?}");
}

/// SQL is only ever built from literals and the store's own constants: every `format!` that
/// builds SQL interpolates nothing but the named constants below, every statement is given a
/// literal, such a `format!`, or a constant, and user data reaches SQLite only as bound
/// parameters. A scan of src/, so a new statement is checked as soon as it is written.
#[test]
fn every_sql_statement_is_parameterised() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in files_under(&src) {
        if file.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        // The store's unit tests and their throwaway PostgreSQL cluster (compiled only for
        // `cargo test`) count rows table by table and name each test's database.
        if name.ends_with("tests.rs") || name == "store/test_cluster.rs" {
            continue;
        }
        if !name.starts_with("store") {
            assert!(
                !text.contains("rusqlite") && !text.contains("tokio_postgres"),
                "{name}: SQL belongs in src/store only"
            );
            continue;
        }
        let (count, found) = sql_problems(&name, &text);
        checked += count;
        problems.extend(found);
        // Each allowed constant really is a string constant of the store.
        for constant in SQL_CONSTANTS {
            if text.contains(&format!("{{{constant}}}")) {
                // `const NAME: &str = "…"`, the literal on the same line or the next.
                let declaration =
                    regex::Regex::new(&format!(r#"const {constant}: &str =\s*""#)).unwrap();
                let declared = files_under(&src.join("store"))
                    .iter()
                    .any(|f| declaration.is_match(&std::fs::read_to_string(f).unwrap()));
                assert!(declared, "{constant} is not a string constant");
            }
        }
    }
    assert!(checked >= 20, "the scan found only {checked} SQL strings");
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The scan itself catches what it is meant to catch.
    let bad = r#"
        conn.execute(&format!("DELETE FROM tags WHERE name = '{name}'"), [])?;
        let sql = format!("SELECT * FROM prompts WHERE name = '{}'", user);
        conn.prepare_cached(&format!("{base} AND v.seq = {seq}"))?;
        tx.execute(&query, params![])?;
        conn.query_row(sql_text.as_str(), [], |r| r.get(0))?;
    "#;
    let (_, found) = sql_problems("bad.rs", bad);
    let found: BTreeSet<String> = found.into_iter().collect();
    assert_eq!(found.len(), 6, "{found:#?}");
}

/// Interpolated into SQL and allowed: the column lists and joins declared as
/// `const NAME: &str = "…"` in src/store.
const SQL_CONSTANTS: &[&str] = &[
    "ALIVE_NOTIFY",
    "ENTRY_SELECT",
    "TOKEN_COLUMNS",
    "TASK_EXPERIMENT_SELECT",
    "TASK_RUN_COLUMNS",
    "TASK_EVALUATION_COLUMNS",
    "VERSION_COLUMNS",
    "TAG_CREATED",
    "PROMPT_FIELDS",
    "EVENT_COLUMNS",
    "EVENT_JOINS",
    "EXPERIMENT_COLUMNS",
    "EXPERIMENT_JOINS",
    "RESULT_COLUMNS",
    "TAG_WITH_MESSAGE",
    "TAG_COLUMNS",
    "TAG_JOINS",
    "NOW_MS",
    "RESULTS_INSERT",
    "RESULTS_UPSERT",
    "SCORES_UPSERT",
    "CACHE_INSERT",
    "CACHE_UPSERT",
    "RESULT_VALUES",
    "SCORE_INSERT",
    "CACHE_VALUES",
    "SPAN_COLUMNS",
    "ANNOTATION_COLUMNS",
    "ROLLOUT_COLUMNS",
    "ROLLOUT_JOINS",
    "DATASET_COLUMNS",
    "DATASET_JOINS",
    "SPAN_INSERT",
    "LOOKUP_UPSERT",
    "ANNOTATION_UPSERT",
    "SPAN_INSERT_COLUMNS",
    "COMPLETE_ITEMS",
];

/// Allowed too: `base` in `resolve` and `select` (`prompt_select`), themselves `format!`s of
/// the constants above (checked like every other); `sql` in `migrate`, each migration file
/// compiled in with `include_str!` (in the PostgreSQL pool, the SQL its callers pass, checked
/// here at each call; in the store's algorithms, a whole statement `sql::Dialect` gives); the
/// fragments `sql::Dialect` gives, each a `&'static str` literal of src/store/sql.rs (`lock`,
/// `order`, `tags`, `now`, `scores`, `overriding`, `kept_id`); and `statement`, the pool's
/// prepared form of a statement; `setup`, the span writer's `sql::Dialect` statement; and
/// `conditions`, the WHERE clause of a span filter, joined in
/// `store/logic/traces.rs` from `&'static str` fragments and `$n` placeholders only (every value
/// it filters on is a bound parameter).
const SQL_LOCALS: &[&str] = &[
    "conditions",
    "setup",
    "base",
    "select",
    "sql",
    "statement",
    "lock",
    "order",
    "tags",
    "now",
    "scores",
    "overriding",
    "kept_id",
];

/// (SQL strings checked, problems) in one source file.
fn sql_problems(name: &str, text: &str) -> (usize, Vec<String>) {
    let keywords = regex::Regex::new(
        r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|ALTER|DROP|WHERE|ORDER BY|VALUES)\b",
    )
    .unwrap();
    let placeholder = regex::Regex::new(r"\{([^{}]*)\}").unwrap();
    let call = regex::Regex::new(
        r"\.(execute|execute_batch|prepare|prepare_cached|query_row|exec|opt|one|query|stream|batch)\(\s*([^\s,)]*)",
    )
    .unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut check_format = |at: usize, always: bool, problems: &mut Vec<String>| {
        let rest = text[at + "format!(".len()..].trim_start();
        let Some(literal) = string_literal(rest) else {
            problems.push(format!("{name}: SQL format! without a literal"));
            return;
        };
        if !always && !keywords.is_match(&literal.text) {
            return;
        }
        checked += 1;
        if !rest[literal.len..].trim_start().starts_with(')') {
            problems.push(format!(
                "{name}: SQL format! with arguments: {:.80}",
                literal.text
            ));
        }
        let unescaped = literal.text.replace("{{", "").replace("}}", "");
        for cap in placeholder.captures_iter(&unescaped) {
            let inner = cap[1].split(':').next().unwrap_or("");
            if !SQL_CONSTANTS.contains(&inner) && !SQL_LOCALS.contains(&inner) {
                problems.push(format!(
                    "{name}: SQL built from {{{inner}}}: {:.80}",
                    literal.text
                ));
            }
        }
    };
    // Every `format!` whose literal reads as SQL.
    for (at, _) in text.match_indices("format!(") {
        check_format(at, false, &mut problems);
    }
    // The SQL handed to rusqlite or the PostgreSQL pool: a literal, a `format!` (checked whatever it reads like), a
    // constant, an allowed local, or (on a prepared statement) the parameters.
    for cap in call.captures_iter(text) {
        let first = cap.get(2).unwrap();
        let arg = first.as_str().trim_start_matches('&');
        if arg.starts_with("format!(") {
            let at = first.start() + first.as_str().find("format!(").unwrap();
            check_format(at, true, &mut problems);
            continue;
        }
        // The multi-row span insert of store/logic/traces.rs: built once from
        // SPAN_INSERT_COLUMNS and `$n` placeholders only (its own unit test checks the text).
        let fine = arg.starts_with("span_insert(")
            || arg.starts_with('"')
            || arg.starts_with("params!")
            || arg.starts_with("params_from_iter(")
            || arg.starts_with('[')
            || arg.is_empty()
            || SQL_CONSTANTS.contains(&arg)
            || SQL_LOCALS.contains(&arg);
        if !fine {
            problems.push(format!("{name}: .{}({arg} …)", &cap[1]));
        }
    }
    (checked, problems)
}

struct Literal {
    text: String,
    /// Bytes of source the literal takes up.
    len: usize,
}

/// The string literal at the start of `source` (plain or raw), with `\` line continuations
/// folded, or None.
fn string_literal(source: &str) -> Option<Literal> {
    if let Some(rest) = source.strip_prefix('r') {
        let hashes = rest.chars().take_while(|&c| c == '#').count();
        let body = rest[hashes..].strip_prefix('"')?;
        let close = format!("\"{}", "#".repeat(hashes));
        let end = body.find(&close)?;
        return Some(Literal {
            text: body[..end].to_string(),
            len: 1 + hashes + 1 + end + close.len(),
        });
    }
    let body = source.strip_prefix('"')?;
    let mut text = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                return Some(Literal {
                    text,
                    len: 1 + i + 1,
                });
            }
            '\\' => match chars.next() {
                Some((_, '\n')) => {
                    // A continuation: skip the next line's leading whitespace.
                    let rest = &body[i + 2..];
                    let skip = rest.len() - rest.trim_start().len();
                    for _ in 0..rest[..skip].chars().count() {
                        chars.next();
                    }
                }
                Some((_, escaped)) => {
                    text.push('\\');
                    text.push(escaped);
                }
                None => return None,
            },
            other => text.push(other),
        }
    }
    None
}

#[test]
fn a_refused_key_is_asked_once_not_once_per_concurrency_slot() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let queries: Vec<String> = (0..200).map(|i| format!("q{i} fault=401")).collect();
    let data = dataset(&env, "d.csv", &queries);
    let base = server.base_url();
    let output = env.run(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &base,
        "--concurrency",
        "64",
    ]);
    assert_eq!(output.status.code(), Some(3));
    // The first answer is the refusal; no other row is sent into it.
    assert_eq!(server.log().len(), 1, "{} requests", server.log().len());
}

#[test]
fn a_redirect_within_http_is_followed_and_one_to_https_is_refused_by_name() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    echo_prompt(&env);
    let base = server.base_url();
    // Without a proxy named (with one, the client keeps the certificates and follows).
    let run = |data: &str| {
        let mut cmd = env.cmd();
        for proxy in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env_remove(proxy);
        }
        cmd.args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            data,
            "--base-url",
            &base,
            "--json",
        ])
        .output()
        .unwrap()
    };
    // A 308 to the server's own path keeps the method and body: the answer is stored.
    let data = dataset(&env, "moved.csv", &strings(&["q0 fault=308http:1", "q1"]));
    let out = run(&data);
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["experiment"]["status"], "completed", "{json}");
    assert_eq!(json["experiment"]["error_count"], 0, "{json}");
    assert_eq!(server.log().len(), 3, "{:?}", server.log());

    // To https:// the client does not follow (the request already went out in plain text):
    // the run stops at once, saying where the endpoint moved.
    let data = dataset(
        &env,
        "tls.csv",
        &strings(&["q0 fault=308https", "q1 fault=308https"]),
    );
    let before = server.log().len();
    let out = run(&data);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redirected to https://localhost:9/v1/chat/completions")
            && err.contains("pass the https:// URL itself"),
        "{err}"
    );
    assert_eq!(server.log().len() - before, 1, "{:?}", server.log());
}
