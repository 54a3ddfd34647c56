//! `runner experiment --target`: the team's own application answers each row, as a long-lived
//! program reading JSON lines (`cmd:`) or as an HTTP route, instead of one chat call.

use crate::Env;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An application as a program: one JSON object a line in, one out. It crashes the first time
/// it sees "crash" (the row must be retried on a fresh process), answers an error for "fail",
/// and otherwise says what it was given and what it can see of the environment.
const APP: &str = r#"
import json, os, sys
for line in sys.stdin:
    req = json.loads(line)
    query = req["variables"]["query"]
    if query == "crash" and not os.path.exists("crashed"):
        open("crashed", "w").close()
        print("about to crash", file=sys.stderr, flush=True)
        sys.exit(3)
    if query == "fail":
        print(json.dumps({"error": "no answer for that"}), flush=True)
        continue
    said = req["messages"][-1]["content"]
    out = {
        "output": f"{query} | key {os.environ.get('OPENAI_API_KEY', 'absent')} | team {os.environ.get('TEAM', 'absent')} | v{req['version']} {req['tag']} {req['model']} | {said}",
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        "metadata": {"pid": os.getpid()},
        "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": json.dumps({"q": query})}}],
    }
    print(json.dumps(out), flush=True)
"#;

fn prompt(env: &Env) {
    env.ok(&[
        "prompt",
        "create",
        "support",
        "--template",
        "Customer: {{query}}",
        "--model",
        "test-model",
        "--tag",
        "production",
    ]);
}

fn dataset(env: &Env, queries: &[&str]) -> String {
    let mut text = String::from("id,query,expected\n");
    for (i, q) in queries.iter().enumerate() {
        text.push_str(&format!("r{i},{q},{q}\n"));
    }
    env.write("rows.csv", &text).to_str().unwrap().to_string()
}

fn rows_of(env: &Env, id: &str) -> Vec<Value> {
    let shown = env.json(&["experiment", "show", id, "--rows", "--json"]);
    shown["rows"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], query: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["vars"]["query"] == query)
        .unwrap_or_else(|| panic!("no row {query}: {rows:?}"))
}

#[test]
fn a_program_answers_each_row_is_restarted_when_it_crashes_and_sees_no_secrets() {
    let env = Env::new();
    prompt(&env);
    env.write("app.py", APP);
    let data = dataset(&env, &["hello", "crash", "fail", "world", "again"]);
    let output = env
        .cmd()
        .env("OPENAI_API_KEY", "sk-never-shown")
        .env("TEAM", "blue")
        .args([
            "experiment",
            "--prompt",
            "support",
            "--tag",
            "production",
            "--dataset",
            &data,
            // Nothing listens there: a target run needs no endpoint.
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--target",
            "cmd:python3 app.py",
            "--target-env",
            "TEAM",
            "--concurrency",
            "2",
            "--max-error-rate",
            "0.5",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["summary"]["ok"], 4, "{out:#}");
    assert_eq!(out["summary"]["errored"], 1);
    assert_eq!(
        out["experiment"]["settings"]["target"],
        "cmd:python3 app.py"
    );
    let id = out["experiment"]["id"].as_str().unwrap();
    let rows = rows_of(&env, id);
    let hello = row(&rows, "hello");
    let text = hello["output"].as_str().unwrap();
    // The rendered messages, the version and tag and model reached it; the API key did not,
    // the named variable did.
    assert!(
        text.starts_with(
            "hello | key absent | team blue | v1 production test-model | Customer: hello"
        ),
        "{text}"
    );
    assert_eq!(hello["status"], "ok");
    assert_eq!(hello["prompt_tokens"], 10);
    assert_eq!(hello["completion_tokens"], 5);
    // Its tool calls (in runner's form: name, arguments as JSON) and metadata are kept with
    // the result.
    assert_eq!(
        hello["extra"]["tool_calls"][0],
        serde_json::json!({"id": null, "name": "lookup", "arguments": {"q": "hello"}}),
        "{hello:#}"
    );
    assert!(hello["extra"]["metadata"]["pid"].is_number(), "{hello:#}");
    assert!(row(&rows, "fail").get("extra").is_none());
    // The crash was answered by a fresh process on the second attempt.
    let crash = row(&rows, "crash");
    assert_eq!(crash["status"], "ok", "{crash:#}");
    assert_eq!(crash["attempts"], 2);
    let fail = row(&rows, "fail");
    assert_eq!(fail["status"], "error");
    assert!(
        fail["error_message"]
            .as_str()
            .unwrap()
            .contains("the target answered an error: no answer for that"),
        "{fail:#}"
    );
    // The icontains evaluator judged the outputs as it judges an endpoint's.
    // Four of five pass: the errored row counts as a failure.
    assert_eq!(out["summary"]["evaluators"][0]["pass_rate"], 0.8, "{out:#}");
}

#[test]
fn a_program_that_never_starts_stops_the_run_and_bad_specs_write_nothing() {
    let env = Env::new();
    prompt(&env);
    let data = dataset(&env, &["a", "b", "c"]);
    let base = [
        "experiment",
        "--prompt",
        "support",
        "--dataset",
        data.as_str(),
    ];
    for (extra, says) in [
        (
            vec!["--target", "ftp://example.com/run"],
            "neither cmd:PROGRAM",
        ),
        (vec!["--target", "cmd:  "], "names no program"),
        (
            vec!["--target", "cmd:python3 app.py", "--target-env", "1BAD"],
            "not an environment variable",
        ),
        (
            vec!["--target", "cmd:python3 app.py", "--detach"],
            "--detach",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend(extra.iter());
        let stderr = env.fails(&args, 2);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
    }
    // A program that exits at once: every attempt fails, the run says why and stops.
    let mut args = base.to_vec();
    args.extend([
        "--target",
        "cmd:echo 'no such app' >&2; exit 7",
        "--max-retries",
        "1",
        "--json",
    ]);
    let output = env.run(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the target cmd:echo 'no such app' >&2; exit 7 answered no row"),
        "{stderr}"
    );
    // Why, in its own words: the exit status and its last line on stderr.
    assert!(stderr.contains("(exit 7), saying: no such app"), "{stderr}");
    // Nothing is left of the experiment.
    assert_eq!(env.json(&["experiment", "list", "--json"]), json!([]));
    // An HTTP target nobody listens on is found before anything is written.
    let mut args = base.to_vec();
    args.extend(["--target", "http://127.0.0.1:9/run"]);
    let output = env.run(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot reach the target http://127.0.0.1:9/run"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: start your application"), "{stderr}");
}

/// An application behind an HTTP route, on a free loopback port: answers each POSTed row, 503
/// the first time it sees "busy", 400 for "bad". Counts the requests.
struct App {
    url: String,
    seen: Arc<Mutex<Vec<Value>>>,
}

fn http_app() -> App {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/run", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let busy = Arc::new(AtomicUsize::new(0));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            // The run's probe before it starts connects and sends nothing.
            let Ok(request) = serde_json::from_slice::<Value>(&body) else {
                continue;
            };
            log.lock().unwrap().push(request.clone());
            let query = request["variables"]["query"].as_str().unwrap_or("");
            let (status, answer) = match query {
                "busy" if busy.fetch_add(1, Ordering::SeqCst) == 0 => {
                    ("503 Service Unavailable", json!({"detail": "warming up"}))
                }
                "bad" => ("400 Bad Request", json!({"detail": "cannot answer that"})),
                _ => (
                    "200 OK",
                    json!({"output": {"answer": format!("{query} via http")},
                           "usage": {"input_tokens": 7, "output_tokens": 3}}),
                ),
            };
            let text = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    App { url, seen }
}

#[test]
fn an_http_route_answers_each_row_and_is_retried_like_an_endpoint() {
    let env = Env::new();
    prompt(&env);
    let app = http_app();
    let data = dataset(&env, &["hello", "busy", "bad"]);
    let run = || {
        env.json(&[
            "experiment",
            "--prompt",
            "support",
            "--dataset",
            &data,
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--target",
            &app.url,
            "--eval",
            "regex:via http",
            "--concurrency",
            "1",
            "--max-error-rate",
            "0.5",
            "--json",
        ])
    };
    let out = run();
    assert_eq!(out["summary"]["ok"], 2, "{out:#}");
    assert_eq!(out["summary"]["errored"], 1);
    let id = out["experiment"]["id"].as_str().unwrap();
    let rows = rows_of(&env, id);
    let hello = row(&rows, "hello");
    // Any JSON output is kept as its text; usage in either spelling counts.
    assert_eq!(hello["output"], r#"{"answer":"hello via http"}"#);
    assert_eq!(hello["prompt_tokens"], 7);
    assert_eq!(hello["completion_tokens"], 3);
    assert_eq!(row(&rows, "busy")["attempts"], 2);
    let bad = row(&rows, "bad");
    assert_eq!(bad["status"], "error");
    assert!(
        bad["error_message"].as_str().unwrap().contains("HTTP 400"),
        "{bad:#}"
    );
    // Each row's request: variables, rendered messages, model, version and tag.
    let seen = app.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    let first = seen
        .iter()
        .find(|r| r["variables"]["query"] == "hello")
        .unwrap();
    assert_eq!(first["messages"][0]["content"], "Customer: hello");
    assert_eq!(first["model"], "test-model");
    assert_eq!(first["prompt"], "support");
    assert_eq!(first["version"], 1);
    assert_eq!(first["tag"], Value::Null);
    assert_eq!(first["repetition"], 0);

    // --max-rpm paces a target's rows: 20 at most 600 a minute (a quarter second's burst)
    // are held back, and the summary says for how long.
    let many: Vec<String> = (0..20).map(|i| format!("paced{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let paced_data = dataset(&env, &many);
    let paced = env.json(&[
        "experiment",
        "--prompt",
        "support",
        "--dataset",
        &paced_data,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--target",
        &app.url,
        "--concurrency",
        "8",
        "--max-rpm",
        "600",
        "--json",
    ]);
    assert_eq!(paced["summary"]["ok"], 20, "{paced:#}");
    assert!(
        paced["run"]["throttled_secs"].as_f64().unwrap() > 0.0,
        "{:#}",
        paced["run"]
    );
    // Back to the three rows (the run below reads the same file).
    dataset(&env, &["hello", "busy", "bad"]);

    // The same run again asks the application again: its code may have changed since.
    let again = run();
    assert_eq!(again["summary"]["ok"], 2, "{again:#}");
    let asked = rows_of(&env, again["experiment"]["id"].as_str().unwrap());
    assert_eq!(row(&asked, "hello")["cached"], false);
    // 4 requests the first time, 20 paced ones, and 3 now.
    assert_eq!(app.seen.lock().unwrap().len(), 27);
}

#[test]
fn a_killed_run_resumes_with_its_target_and_asks_only_the_missing_rows() {
    let env = Env::new();
    prompt(&env);
    // Slow enough to be killed half way; writes down every row it is asked.
    env.write(
        "slow.py",
        r#"
import json, sys, time
for line in sys.stdin:
    req = json.loads(line)
    with open("asked.log", "a") as log:
        log.write(req["row_id"] + "\n")
    time.sleep(0.02)
    print(json.dumps({"output": req["variables"]["query"]}), flush=True)
"#,
    );
    let queries: Vec<String> = (0..150).map(|i| format!("q{i}")).collect();
    let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
    let data = dataset(&env, &queries);
    super::experiments::kill_mid_run(
        &env,
        &[
            "experiment",
            "--prompt",
            "support",
            "--dataset",
            &data,
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--target",
            "cmd:python3 slow.py",
            "--concurrency",
            "2",
        ],
        20,
    );
    let stored: Vec<String> = crate::sql(&env.db, "SELECT row_id FROM results")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(stored.len() < 150, "killed in the middle: {}", stored.len());
    let id = crate::sql(&env.db, "SELECT id FROM experiments").remove(0)[0].clone();

    let out = env.json(&["experiment", "resume", &id, "--json"]);
    assert_eq!(out["experiment"]["status"], "completed", "{out:#}");
    assert_eq!(out["summary"]["ok"], 150);
    let asked = std::fs::read_to_string(env.path("asked.log")).unwrap();
    let asked: Vec<&str> = asked.lines().collect();
    // Every row was asked, and a row stored before the kill was not asked again.
    for i in 0..150 {
        assert!(
            asked.contains(&format!("r{i}").as_str()),
            "r{i} never asked"
        );
    }
    for row in &stored {
        let times = asked.iter().filter(|a| **a == row.as_str()).count();
        assert_eq!(times, 1, "{row} was asked {times} times");
    }
}

#[test]
fn promote_runs_both_sides_through_the_target_and_moves_the_tag_only_when_it_passes() {
    let env = Env::new();
    env.ok(&[
        "prompt",
        "create",
        "bot",
        "--template",
        "Greet. Customer: {{query}}",
        "--model",
        "test-model",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "bot",
        "--template",
        "Use the facts. Customer: {{query}}",
        "--tag",
        "staging",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "bot",
        "--template",
        "Be brief. Customer: {{query}}",
        "--tag",
        "brief",
    ]);
    // The application answers with the facts only when its prompt asks for them.
    env.write(
        "app.py",
        r#"
import json, sys
for line in sys.stdin:
    req = json.loads(line)
    query = req["variables"]["query"]
    facts = "Use the facts" in req["messages"][0]["content"]
    print(json.dumps({"output": f"about {query}" if facts else "Hello!"}), flush=True)
"#,
    );
    let data = dataset(
        &env,
        &["order", "refund", "password", "invoice", "shipping"],
    );
    let promote = |from: &str| {
        env.run(&[
            "promote",
            "--prompt",
            "bot",
            "--from",
            from,
            "--to",
            "production",
            "--dataset",
            &data,
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--target",
            "cmd:python3 app.py",
        ])
    };
    let moved = promote("staging");
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    let production = || {
        let tags = env.json(&["tag", "list", "bot", "--json"]);
        tags.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "production")
            .unwrap()["version_seq"]
            .clone()
    };
    assert_eq!(production(), 2);
    // v3 answers no better than the greeting v1 did, and worse than v2: refused, nothing moves.
    let refused = promote("brief");
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(production(), 2);
    // Both experiments of each promotion are stored with the target they ran with.
    let listed = env.json(&["experiment", "list", "--json"]);
    let listed = listed.as_array().unwrap();
    // Both sides of each promotion ran anew: a target's answers are never reused.
    assert_eq!(listed.len(), 4, "{listed:?}");
    for experiment in listed {
        let shown = env.json(&[
            "experiment",
            "show",
            experiment["id"].as_str().unwrap(),
            "--json",
        ]);
        assert_eq!(
            shown["experiment"]["settings"]["target"], "cmd:python3 app.py",
            "{shown:#}"
        );
    }
}

#[test]
fn output_out_of_step_with_its_requests_is_never_taken_for_the_next_answer() {
    let env = Env::new();
    prompt(&env);
    // The first answer comes with a second line no request asked for; one answer is not JSON.
    env.write(
        "chatty.py",
        r#"
import json, sys
for n, line in enumerate(sys.stdin):
    req = json.loads(line)
    query = req["variables"]["query"]
    if query == "garbled":
        print("oops, not json", flush=True)
        continue
    extra = json.dumps({"output": "stale"}) + "\n" if query == "first" else ""
    sys.stdout.write(json.dumps({"output": query}) + "\n" + extra)
    sys.stdout.flush()
"#,
    );
    let data = dataset(&env, &["first", "second", "garbled", "third"]);
    let out = env.json(&[
        "experiment",
        "--prompt",
        "support",
        "--dataset",
        &data,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--target",
        "cmd:python3 chatty.py",
        "--concurrency",
        "1",
        "--max-retries",
        "1",
        "--max-error-rate",
        "0.5",
        "--json",
    ]);
    let rows = rows_of(&env, out["experiment"]["id"].as_str().unwrap());
    for query in ["first", "second", "third"] {
        assert_eq!(row(&rows, query)["output"], query, "{rows:?}");
    }
    let garbled = row(&rows, "garbled");
    assert_eq!(garbled["status"], "error");
    assert_eq!(garbled["attempts"], 2);
    assert!(
        garbled["error_message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{garbled:#}"
    );
}
