//! `runner dataset from-traces`: production spans sent to a real `runner serve` over OTLP
//! (protobuf), annotated through Phoenix's routes, written as dataset rows with each filter, the
//! file checked line by line, and then run as an experiment against the mock endpoint. Also
//! the helpers the UI's replay test shares: spans, their export and the wait for ingest.

use super::{Env, Mock};
pub use crate::otlp::{span_hex, text, trace_hex};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `runner serve`, killed when dropped.
pub struct Serve {
    child: Child,
    pub base: String,
}

impl Serve {
    pub fn start(env: &Env) -> Serve {
        let mut child = env
            .std_cmd()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start runner serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .expect("read the address line");
        let Some(at) = first.find("http://") else {
            let _ = child.kill();
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .ok();
            panic!("no address on the first line {first:?}; stderr: {stderr}");
        };
        // The log is read as it comes, so a full pipe never stalls the server.
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let base = first[at..].split_whitespace().next().unwrap().to_string();
        Serve { child, base }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request to a server at `base`; returns the status and the body.
pub fn send(
    base: &str,
    token: Option<&str>,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    runner::client::install_tls();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("body").to_vec())
    })
}

/// A span of trace `trace` with id `id`, started at `start_ms` (ms since the epoch), lasting
/// 250 ms, with these attributes; an LLM span unless the attributes say otherwise.
pub fn span(trace: u64, id: u64, start_ms: i64, attributes: Vec<KeyValue>, error: bool) -> Span {
    let start = start_ms as u64 * 1_000_000;
    let mut all = vec![text("llm.model_name", "gpt-4o-mini")];
    if !attributes
        .iter()
        .any(|a| a.key == "openinference.span.kind")
    {
        all.push(text("openinference.span.kind", "LLM"));
    }
    all.extend(attributes);
    Span {
        trace_id: [trace.to_be_bytes(), 7u64.to_be_bytes()].concat(),
        span_id: id.to_be_bytes().to_vec(),
        name: "ChatCompletion".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 250_000_000,
        attributes: all,
        status: Some(Status {
            code: if error { 2 } else { 1 },
            message: if error {
                "timeout".into()
            } else {
                String::new()
            },
        }),
        ..Default::default()
    }
}

/// A call of `prompt@version` with these template variables (a JSON object's text).
pub fn call(
    trace: u64,
    id: u64,
    start_ms: i64,
    version: &str,
    variables: Option<&str>,
    error: bool,
) -> Span {
    let mut attributes = vec![text("llm.prompt_template.version", version)];
    if let Some(variables) = variables {
        attributes.push(text("llm.prompt_template.variables", variables));
    }
    span(trace, id, start_ms, attributes, error)
}

/// Exports spans as OTLP protobuf, in `project` when one is named; every span must be taken.
pub fn export(base: &str, token: Option<&str>, project: Option<&str>, spans: Vec<Span>) {
    let mut resource = vec![text("service.name", "support-bot")];
    if let Some(project) = project {
        resource.push(text("openinference.project.name", project));
    }
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, body) = send(
        base,
        token,
        "/v1/traces",
        "application/x-protobuf",
        request.encode_to_vec(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = ExportTraceServiceResponse::decode(&body[..]).unwrap();
    assert_eq!(answer.partial_success, None, "every span is taken");
}

/// Posts annotations to Phoenix's route (`span_annotations` or `trace_annotations`) and waits
/// until they are stored.
pub fn annotate(base: &str, route: &str, data: Value) {
    let body = serde_json::to_vec(&json!({ "data": data })).unwrap();
    let (status, answer) = send(
        base,
        None,
        &format!("/v1/{route}?sync=true"),
        "application/json",
        body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
}

/// Waits (bounded) until the store holds each of these spans: the server writes them off the
/// request path.
pub fn wait_for_spans(env: &Env, ids: &[u64]) {
    let store = runner::store::open(&env.db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in ids {
        while store.span(&span_hex(*id)).unwrap().is_none() {
            assert!(Instant::now() < deadline, "span {id} was never stored");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn now_ms() -> i64 {
    runner::trace::now_ms()
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// `greet` v1 (production) and v2 (staging), and this traffic, annotated:
///
/// | span | trace | version | started | status | variables | annotations |
/// |---|---|---|---|---|---|---|
/// | 1 | 1 | v1 | 3 days ago | ok | Ada, refund | correctness 0.2; correction |
/// | 2 | 2 | v1 | 2 h ago | error | hostile text | trace: thumbs down |
/// | 3 | 3 | v2 | 1 h ago | ok | Cy, hello | correctness 0.9 |
/// | 4 | 4 | v2 | 30 min ago | error | none | correctness 0.1 |
/// | 5 | 5 | v2 | 10 min ago | ok | Di, invoice, `id` | on its unlinked parent 6: correctness 0.4, metadata expected |
/// | 9 | 9 | v1 | 5 min ago | ok | an experiment run's span (never production) | correctness 0.0 |
fn traffic(env: &Env) -> Serve {
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "Hi {{name}}, about {{topic}}",
        "--model",
        "test-model",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "Hello {{name}}: {{topic}}",
        "-m",
        "shorter",
        "--tag",
        "staging",
    ]);
    let server = Serve::start(env);
    let now = now_ms();
    let parent = span(
        5,
        6,
        now - 10 * MINUTE - 1_000,
        vec![text("openinference.span.kind", "CHAIN")],
        false,
    );
    let mut child = call(
        5,
        5,
        now - 10 * MINUTE,
        "greet@v2",
        Some(r#"{"name": "Di", "topic": "invoice", "id": "cust-9"}"#),
        false,
    );
    child.parent_span_id = parent.span_id.clone();
    export(
        &server.base,
        None,
        None,
        vec![
            call(
                1,
                1,
                now - 72 * HOUR,
                "greet@production",
                Some(r#"{"name": "Ada", "topic": "refund"}"#),
                false,
            ),
            call(
                2,
                2,
                now - 2 * HOUR,
                "greet@v1",
                Some(r#"{"name": "Bo <b>", "topic": "\"late\" order\nline2 ✓"}"#),
                true,
            ),
            call(
                3,
                3,
                now - HOUR,
                "greet@staging",
                Some(r#"{"name": "Cy", "topic": "hello"}"#),
                false,
            ),
            call(4, 4, now - 30 * MINUTE, "greet@v2", None, true),
            parent,
            child,
        ],
    );
    export(
        &server.base,
        None,
        Some("Experiment-0a1b2c"),
        vec![call(
            9,
            9,
            now - 5 * MINUTE,
            "greet@v1",
            Some(r#"{"name": "Eve", "topic": "test"}"#),
            false,
        )],
    );
    wait_for_spans(env, &[1, 2, 3, 4, 5, 6, 9]);
    let score = |id: u64, value: f64| {
        json!({"span_id": span_hex(id), "name": "correctness", "annotator_kind": "LLM",
               "result": {"score": value}})
    };
    annotate(
        &server.base,
        "span_annotations",
        json!([
            score(1, 0.2),
            {"span_id": span_hex(1), "name": "correction", "annotator_kind": "HUMAN",
             "result": {"explanation": "Your refund is on its way."}},
            score(3, 0.9),
            score(4, 0.1),
            {"span_id": span_hex(6), "name": "correctness", "annotator_kind": "HUMAN",
             "result": {"score": 0.4, "label": "partial"},
             "metadata": {"expected": "Invoice sent"}},
            score(9, 0.0),
        ]),
    );
    annotate(
        &server.base,
        "trace_annotations",
        json!([{"trace_id": trace_hex(2), "name": "thumbs", "annotator_kind": "HUMAN",
                "result": {"label": "down"}}]),
    );
    server
}

/// The row each span of `traffic` becomes.
fn row(id: u64) -> String {
    let (variables, expected) = match id {
        1 => (
            r#""name":"Ada","topic":"refund""#,
            Some("Your refund is on its way."),
        ),
        2 => (r#""name":"Bo <b>","topic":"\"late\" order\nline2 ✓""#, None),
        3 => (r#""name":"Cy","topic":"hello""#, None),
        5 => (
            r#""name":"Di","topic":"invoice","var_id":"cust-9""#,
            Some("Invoice sent"),
        ),
        other => panic!("span {other} makes no row"),
    };
    let expected = expected
        .map(|e| format!(r#""expected":"{e}","#))
        .unwrap_or_default();
    format!(
        r#"{{"id":"{span}",{variables},{expected}"span_id":"{span}","trace_id":"{trace}"}}"#,
        span = span_hex(id),
        trace = trace_hex(id),
    )
}

/// Runs `dataset from-traces greet FLAGS --out NAME --json`; returns the summary, the file's
/// text and stderr.
fn from_traces(env: &Env, name: &str, flags: &[&str]) -> (Value, String, String) {
    let mut args = vec!["dataset", "from-traces", "greet"];
    args.extend_from_slice(flags);
    args.extend(["--out", name, "--json"]);
    let output = env.run(&args);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        output.status.success(),
        "runner {args:?}: {:?}\n{stderr}",
        output.status.code()
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let written = std::fs::read_to_string(env.path(name)).unwrap();
    (summary, written, stderr)
}

fn lines(ids: &[u64]) -> String {
    ids.iter().map(|id| row(*id) + "\n").collect()
}

#[test]
fn each_filter_writes_exactly_the_rows_of_its_spans() {
    let env = Env::new();
    let _server = traffic(&env);
    let v1 = env.json(&["prompt", "show", "greet", "--version", "1", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let until = runner::model::format_time(
        time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(now_ms() - 45 * MINUTE) * 1_000_000,
        )
        .unwrap(),
    );

    // Everything: oldest first; the span without variables skipped and counted, the
    // experiment's span left out, `expected` from a correction or an annotation's metadata.
    let (summary, written, stderr) = from_traces(&env, "all.jsonl", &[]);
    assert_eq!(
        summary,
        json!({"rows": 4, "skipped_no_variables": 1, "out": "all.jsonl"})
    );
    assert_eq!(written, lines(&[1, 2, 3, 5]));
    assert_eq!(
        stderr.lines().next().unwrap(),
        "wrote 4 rows to all.jsonl from 5 matching spans of greet; skipped 1 span: no \
         template variables"
    );
    assert!(
        stderr.contains("note: the variable id was written as the column var_id")
            && stderr.contains("--column id=var_id"),
        "{stderr}"
    );

    let cases: Vec<(Vec<&str>, Vec<u64>, u64)> = vec![
        (vec!["--where", "score.correctness < 0.5"], vec![1, 5], 1),
        (vec!["--where", "score.correctness>=0.9"], vec![3], 0),
        (vec!["--where", "score.correctness != 0.2"], vec![3, 5], 1),
        (vec!["--status", "error"], vec![2], 1),
        (vec!["--label", "thumbs=down"], vec![2], 0),
        (vec!["--label", "correctness=partial"], vec![5], 0),
        (vec!["--version", "v2"], vec![3, 5], 1),
        (vec!["--version", "staging"], vec![3, 5], 1),
        (vec!["--version", "1"], vec![1, 2], 0),
        (vec!["--version", &v1], vec![1, 2], 0),
        (vec!["--since", "24h"], vec![2, 3, 5], 1),
        (vec!["--since", "24h", "--until", &until], vec![2, 3], 0),
        (vec!["--limit", "2"], vec![3, 5], 1),
        (
            vec![
                "--where",
                "score.correctness < 0.5",
                "--version",
                "production",
            ],
            vec![1],
            0,
        ),
        (
            vec!["--status", "error", "--where", "score.correctness < 0.5"],
            vec![],
            1,
        ),
    ];
    for (flags, ids, skipped) in cases {
        let (summary, written, _) = from_traces(&env, "rows.jsonl", &flags);
        assert_eq!(written, lines(&ids), "{flags:?}");
        assert_eq!(
            summary,
            json!({"rows": ids.len(), "skipped_no_variables": skipped, "out": "rows.jsonl"}),
            "{flags:?}"
        );
    }

    // No matching span is no error: an empty file, and the line says so.
    let (summary, written, stderr) = from_traces(&env, "none.jsonl", &["--label", "thumbs=up"]);
    assert_eq!(
        summary,
        json!({"rows": 0, "skipped_no_variables": 0, "out": "none.jsonl"})
    );
    assert_eq!(written, "");
    assert!(stderr.contains("no span of greet matches"), "{stderr}");
}

#[test]
fn bad_input_says_why_and_writes_nothing() {
    let env = Env::new();
    let _server = traffic(&env);
    env.write("kept.jsonl", "{\"id\":\"old\"}\n");
    std::fs::create_dir(env.path("folder")).unwrap();
    let cases: [(&[&str], &str, &str); 8] = [
        (
            &["nosuch", "--out", "kept.jsonl"],
            "nosuch",
            "runner prompt list",
        ),
        (
            &["greet", "--version", "v7", "--out", "kept.jsonl"],
            "version 7",
            "runner prompt versions greet",
        ),
        (
            &[
                "greet",
                "--where",
                "correctness < 0.5",
                "--out",
                "kept.jsonl",
            ],
            "--where",
            "score.correctness < 0.5",
        ),
        (
            &["greet", "--label", "thumbs", "--out", "kept.jsonl"],
            "--label",
            "thumbs=down",
        ),
        (
            &["greet", "--since", "yesterday", "--out", "kept.jsonl"],
            "--since 'yesterday'",
            "24h",
        ),
        (
            &["greet", "--out", "folder"],
            "is a directory",
            "folder/failing.jsonl",
        ),
        (&["greet", "--out", "rows.csv"], "JSON Lines", ".jsonl"),
        (
            &["greet", "--out", "missing/rows.jsonl"],
            "there is no folder",
            "mkdir -p missing",
        ),
    ];
    for (flags, says, hint) in cases {
        let mut args = vec!["dataset", "from-traces"];
        args.extend_from_slice(flags);
        let stderr = env.fails(&args, 2);
        let first = stderr.lines().next().unwrap();
        assert!(first.contains(says), "{flags:?}: {stderr}");
        let hinted = stderr.lines().find(|l| l.starts_with("hint: ")).unwrap();
        assert!(hinted.contains(hint), "{flags:?}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(env.path("kept.jsonl")).unwrap(),
            "{\"id\":\"old\"}\n",
            "{flags:?}"
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("runner.db"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["folder", "kept.jsonl"],
        "no file written, no temporary left"
    );
    assert_eq!(std::fs::read_dir(env.path("folder")).unwrap().count(), 0);
    // A --status other than error is clap's usage error.
    let out = env.run(&[
        "dataset",
        "from-traces",
        "greet",
        "--status",
        "ok",
        "--out",
        "x.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!env.path("x.jsonl").exists());
}

#[test]
fn the_rows_run_as_an_experiment_on_the_version_they_came_from_and_another() {
    let env = Env::new();
    let _server = traffic(&env);
    let (_, written, _) = from_traces(&env, "failing.jsonl", &[]);
    assert_eq!(written.lines().count(), 4);
    let mock = Mock::start(&env, &[]);
    for (tag, rendered) in [
        ("production", "Hi Ada, about refund"),
        ("staging", "Hello Ada: refund"),
    ] {
        let run = env.json(&[
            "experiment",
            "--prompt",
            "greet",
            "--tag",
            tag,
            "--dataset",
            "failing.jsonl",
            "--base-url",
            &mock.url,
            "--json",
        ]);
        assert_eq!(run["experiment"]["status"], "completed", "{run}");
        assert_eq!(run["experiment"]["dataset"]["rows"], 4);
        assert_eq!(run["summary"]["ok"], 4);
        // The file has an expected column: the default evaluator compares with it.
        assert_eq!(run["experiment"]["evaluators"], json!(["icontains"]));
        let id = run["experiment"]["id"].as_str().unwrap();
        let shown = env.json(&["experiment", "show", id, "--rows", "--json"]);
        let rows = shown["rows"].as_array().unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r["row_id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [span_hex(1), span_hex(2), span_hex(3), span_hex(5)],
            "rows keep the span ids"
        );
        assert_eq!(rows[0]["messages"][0]["content"], rendered);
        assert_eq!(rows[0]["expected"], "Your refund is on its way.");
        assert_eq!(rows[0]["vars"]["trace_id"], trace_hex(1));
        assert_eq!(rows[3]["expected"], "Invoice sent");
        assert_eq!(rows[1]["vars"]["topic"], "\"late\" order\nline2 ✓");
    }
    assert_eq!(mock.requests(), 8);
}
