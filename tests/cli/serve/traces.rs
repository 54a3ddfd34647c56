//! Production traffic into `runner serve`: OTLP/HTTP at `/v1/traces` (protobuf and JSON, gzip
//! or not), the answers the OTLP specification asks for, links to versions by every
//! convention, Phoenix's annotation routes, the ingest token role and the lookup roll-up.

use super::{Env, READER, Server, WRITER, bearer, chat_body, tokens};
pub(super) use crate::otlp::{int, span_hex, text, trace_hex};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use runner::trace::{Span as Stored, SpanFilter};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

pub(super) const INGESTER: &str = "in-00112233445566778899aabbccddeeff";

/// An LLM span: trace `trace`, span `id`, started `ms` after a fixed time, with `attributes`.
pub(super) fn llm_span(trace: u64, id: u64, attributes: Vec<KeyValue>, error: bool) -> Span {
    let start = 1_780_000_000_000_000_000u64 + id * 1_000_000;
    let mut all = vec![
        text("openinference.span.kind", "LLM"),
        text("llm.model_name", "gpt-4o-mini"),
        int("llm.token_count.prompt", 12),
        int("llm.token_count.completion", 5),
    ];
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
                "rate limited".into()
            } else {
                String::new()
            },
        }),
        ..Default::default()
    }
}

pub(super) fn request(project: Option<&str>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    let mut resource = vec![text("service.name", "support-bot")];
    if let Some(project) = project {
        resource.push(text("openinference.project.name", project));
    }
    ExportTraceServiceRequest {
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
    }
}

impl Server {
    pub(super) fn export(
        &self,
        auth: Option<&str>,
        body: Vec<u8>,
        content_type: &str,
        gzip: bool,
    ) -> super::Reply {
        let mut headers = vec![("content-type", content_type)];
        if let Some(auth) = auth {
            headers.push(("authorization", auth));
        }
        let body = if gzip {
            headers.push(("content-encoding", "gzip"));
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body).unwrap();
            encoder.finish().unwrap()
        } else {
            body
        };
        self.send("POST", "/v1/traces", &headers, Some(body))
            .expect("POST /v1/traces")
    }
}

/// The spans in the store once `count` of them arrived (written off the request path).
pub(super) fn stored(env: &Env, count: usize, experiments: bool) -> Vec<Stored> {
    let store = runner::store::open(&env.db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut spans = Vec::new();
        store
            .visit_spans(
                &SpanFilter {
                    experiments,
                    ..SpanFilter::default()
                },
                &mut |s| {
                    spans.push(s);
                    Ok(())
                },
            )
            .unwrap();
        if spans.len() >= count || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server with prompt `greet` at v1 and v2, `production` on v1; returns v1's and v2's ids.
pub(super) fn greet(server: &Server, auth: &[(&str, &str)]) -> (String, String) {
    let first = server.call(
        "POST",
        "/v1/prompts",
        auth,
        Some(&chat_body("greet", "Hi {{name}}")),
    );
    assert_eq!(first.status, 200, "{}", first.text);
    let v1 = first.json()["data"]["id"].as_str().unwrap().to_string();
    let second = server.call(
        "POST",
        "/v1/prompts",
        auth,
        Some(&chat_body("greet", "Hey {{name}}")),
    );
    let v2 = second.json()["data"]["id"].as_str().unwrap().to_string();
    let tagged = server.call(
        "POST",
        &format!("/v1/prompt_versions/{v1}/tags"),
        auth,
        Some(&json!({"name": "production"})),
    );
    assert!(tagged.status < 300, "{}", tagged.text);
    (v1, v2)
}

#[test]
fn spans_arrive_by_protobuf_json_and_gzip_linked_by_every_convention() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let (v1, v2) = greet(&server, &[]);
    let spans = [
        llm_span(
            1,
            1,
            vec![text("llm.prompt_template.version", "greet@v2")],
            false,
        ),
        llm_span(
            2,
            2,
            vec![text("llm.prompt_template.version", "greet@production")],
            true,
        ),
        llm_span(
            3,
            3,
            vec![
                text("llm.prompt_template.version", &v2),
                text("llm.prompt_template.variables", r#"{"name": "Ada"}"#),
            ],
            false,
        ),
        llm_span(
            4,
            4,
            vec![
                text("gen_ai.prompt.name", "greet"),
                text("gen_ai.prompt.version", "1"),
            ],
            false,
        ),
        llm_span(5, 5, vec![text("runner.prompt.version_id", &v1)], false),
        llm_span(
            6,
            6,
            vec![
                text("runner.prompt.name", "greet"),
                text("runner.prompt.tag", "production"),
            ],
            false,
        ),
        llm_span(7, 7, vec![], false),
    ];
    let reply = server.export(
        None,
        request(None, spans[..3].to_vec()).encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("content-type"), "application/x-protobuf");
    let answer = ExportTraceServiceResponse::decode(&reply.bytes[..]).unwrap();
    assert_eq!(
        answer.partial_success, None,
        "a full success leaves partial_success unset"
    );
    let json_body = serde_json::to_vec(&request(None, spans[3..5].to_vec())).unwrap();
    let reply = server.export(None, json_body, "application/json", false);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), json!({}));
    let reply = server.export(
        None,
        request(None, spans[5..].to_vec()).encode_to_vec(),
        "application/x-protobuf",
        true,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);

    let stored = stored(&env, 7, false);
    assert_eq!(stored.len(), 7);
    let link = |id: u64| {
        let span = stored.iter().find(|s| s.span_id == span_hex(id)).unwrap();
        span.link
            .as_ref()
            .map(|l| (l.version_number, l.source, l.tag.clone()))
    };
    assert_eq!(link(1), Some((2, "openinference", None)));
    assert_eq!(
        link(2),
        Some((1, "openinference", Some("production".into())))
    );
    assert_eq!(link(3), Some((2, "openinference", None)));
    assert_eq!(link(4), Some((1, "gen_ai", None)));
    assert_eq!(link(5), Some((1, "runner", None)));
    assert_eq!(link(6), Some((1, "runner", Some("production".into()))));
    assert_eq!(link(7), None);
    let errored = stored.iter().find(|s| s.span_id == span_hex(2)).unwrap();
    assert_eq!(errored.error.as_deref(), Some("rate limited"));
    let third = stored.iter().find(|s| s.span_id == span_hex(3)).unwrap();
    assert_eq!(third.variables.as_deref(), Some(r#"{"name":"Ada"}"#));
    assert_eq!(
        (third.input_tokens, third.output_tokens),
        (Some(12), Some(5))
    );
    assert_eq!(third.latency_ms(), 250);
    assert_eq!(third.service.as_deref(), Some("support-bot"));
    assert_eq!(third.project, "default");

    // An exporter's retry stores nothing twice.
    let again = server.export(
        None,
        request(None, spans[..3].to_vec()).encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(again.status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(self::stored(&env, 8, false).len(), 7);

    // Experiment runs (Phoenix's `Experiment-…` projects) are kept apart from production.
    let run = llm_span(
        8,
        8,
        vec![text("llm.prompt_template.version", "greet@v1")],
        false,
    );
    server.export(
        None,
        request(Some("Experiment-0a1b2c"), vec![run]).encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    let all = self::stored(&env, 8, true);
    assert_eq!(all.len(), 8);
    assert!(
        all.iter()
            .any(|s| s.experiment && s.project == "Experiment-0a1b2c")
    );
    assert_eq!(self::stored(&env, 8, false).len(), 7);
}

#[test]
fn bad_otlp_bodies_are_refused_as_the_specification_says_and_store_nothing() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    greet(&server, &[]);
    let good = request(None, vec![llm_span(1, 1, vec![], false)]).encode_to_vec();

    // Truncated protobuf: 400 with a google.rpc.Status body in protobuf.
    let reply = server.export(
        None,
        good[..good.len() - 3].to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.header("content-type"), "application/x-protobuf");
    assert!(
        reply.text.contains("not an OTLP ExportTraceServiceRequest"),
        "{}",
        reply.text
    );
    // Malformed JSON: 400 in JSON.
    let reply = server.export(
        None,
        b"{\"resourceSpans\": [".to_vec(),
        "application/json",
        false,
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("not OTLP JSON")
    );
    // Another media type: 415.
    let reply = server.export(None, good.clone(), "text/plain", false);
    assert_eq!(reply.status, 415, "{}", reply.text);
    // A gzip body that is not gzip: 400.
    let reply = server
        .send(
            "POST",
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
            Some(good.clone()),
        )
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text);
    // Over the size limit: 413, for a body of 100 MB or one that decompresses past it.
    let huge = vec![0u8; 100 * 1024 * 1024];
    let reply = server.export(None, huge, "application/x-protobuf", false);
    assert_eq!(reply.status, 413);
    let bomb = vec![0u8; 17 * 1024 * 1024];
    let reply = server.export(None, bomb, "application/x-protobuf", true);
    assert_eq!(
        reply.status, 413,
        "a gzip bomb is cut at the limit: {}",
        reply.text
    );
    // A span with a million attributes is refused alone, and the server goes on.
    let million: Vec<KeyValue> = (0..1_000_000).map(|i| int("k", i)).collect();
    let reply = server.export(
        None,
        request(None, vec![llm_span(9, 9, million, false)]).encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let partial = ExportTraceServiceResponse::decode(&reply.bytes[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 1);

    // A span with too many attributes, or a bad id, is refused alone (partial success); the
    // others in the batch are kept, and a version runner does not know is reported.
    let many: Vec<KeyValue> = (0..5_000).map(|i| int(&format!("k{i}"), i)).collect();
    let mut bad_id = llm_span(3, 3, vec![], false);
    bad_id.span_id = vec![0; 8];
    let batch = request(
        None,
        vec![
            llm_span(2, 2, many, false),
            bad_id,
            llm_span(
                4,
                4,
                vec![text("llm.prompt_template.version", "greet@v9")],
                false,
            ),
            llm_span(5, 5, vec![], false),
        ],
    );
    let reply = server.export(None, batch.encode_to_vec(), "application/x-protobuf", false);
    assert_eq!(reply.status, 200);
    let partial = ExportTraceServiceResponse::decode(&reply.bytes[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("5004 attributes"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("invalid span id"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("greet@v9"),
        "{}",
        partial.error_message
    );
    let kept = stored(&env, 2, false);
    let mut ids: Vec<&str> = kept.iter().map(|s| s.span_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, [span_hex(4), span_hex(5)]);
    assert!(kept.iter().all(|s| s.link.is_none()));
}

#[test]
fn an_ingest_token_sends_traces_and_reads_prompts_and_nothing_else() {
    let env = Env::new();
    let args = tokens(&env);
    // An application's token sits in the same file as the writers', marked `ingest:`.
    env.write(
        "writers.txt",
        &format!("ci:{WRITER}\ningest:support-bot:{INGESTER}\n"),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&env, &args);
    let writer = bearer(WRITER);
    greet(&server, &[("authorization", &writer)]);
    let ingest = bearer(INGESTER);
    let body = request(
        None,
        vec![llm_span(
            1,
            1,
            vec![text("llm.prompt_template.version", "greet@production")],
            false,
        )],
    );

    let sent = server.export(
        Some(&ingest),
        body.encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(sent.status, 200, "{}", sent.text);
    let read = server.call(
        "GET",
        "/v1/prompts/greet/tags/production",
        &[("authorization", &ingest)],
        None,
    );
    assert_eq!(read.status, 200);
    let write = server.call(
        "POST",
        "/v1/prompts",
        &[("authorization", &ingest)],
        Some(&chat_body("greet", "x")),
    );
    assert_eq!(write.status, 403, "{}", write.text);
    assert!(write.text.contains("ingest token"), "{}", write.text);
    // A read-only token may not send traces; no token, or a wrong one, is 401.
    let reader = bearer(READER);
    let refused = server.export(
        Some(&reader),
        body.encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(refused.status, 403);
    assert_eq!(
        server
            .export(None, body.encode_to_vec(), "application/x-protobuf", false)
            .status,
        401
    );
    assert_eq!(
        server
            .export(
                Some("Bearer not-a-token-at-all-000000"),
                body.encode_to_vec(),
                "application/x-protobuf",
                false
            )
            .status,
        401
    );

    let kept = stored(&env, 1, false);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].sender.as_deref(), Some("api:support-bot"));
}

#[test]
fn annotations_follow_phoenix_with_sync_and_unknown_spans() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    greet(&server, &[]);
    let body = request(
        None,
        vec![llm_span(
            1,
            1,
            vec![text("llm.prompt_template.version", "greet@v1")],
            false,
        )],
    );
    assert_eq!(
        server
            .export(None, body.encode_to_vec(), "application/x-protobuf", false)
            .status,
        200
    );
    // Sent right after the export: the annotation waits behind the span, so it finds it.
    let one = json!({"data": [{
        "span_id": span_hex(1), "name": "helpfulness", "annotator_kind": "HUMAN",
        "result": {"label": "good", "score": 0.9, "explanation": "clear"},
        "metadata": {"reviewer": "ada"}, "identifier": "",
    }]});
    let reply = server.post("/v1/span_annotations?sync=true", &one);
    assert_eq!(reply.status, 200, "{}", reply.text);
    let id = reply.json()["data"][0]["id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    // The same name and identifier again replaces it: the same id.
    let again = server.post("/v1/span_annotations?sync=true", &one);
    assert_eq!(again.json()["data"][0]["id"], id.as_str());

    // An unknown span: 404 naming it, and nothing of the batch stored.
    let mixed = json!({"data": [
        {"span_id": span_hex(1), "name": "thumbs", "annotator_kind": "HUMAN", "result": {"label": "up"}},
        {"span_id": span_hex(99), "name": "thumbs", "annotator_kind": "HUMAN", "result": {"label": "up"}},
    ]});
    let reply = server.post("/v1/span_annotations?sync=true", &mixed);
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert!(reply.text.contains(&span_hex(99)), "{}", reply.text);
    let store = runner::store::open(&env.db).unwrap();
    let span = store.span(&span_hex(1)).unwrap().unwrap();
    let names: Vec<String> = store
        .span_annotations(&span)
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["helpfulness"]);

    // Without sync the answer is immediate and empty; the annotation lands shortly after.
    let trace = json!({"data": [{"trace_id": trace_hex(1), "name": "resolved", "annotator_kind": "CODE", "result": {"score": 1}}]});
    let reply = server.post("/v1/trace_annotations", &trace);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), json!({"data": []}));
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.span_annotations(&span).unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.span_annotations(&span).unwrap().len(), 2);

    // What Phoenix refuses, runner refuses, with 422 naming the entry.
    for (bad, says) in [
        (
            json!({"data": [{"span_id": span_hex(1), "name": "x", "annotator_kind": "ROBOT", "result": {"score": 1}}]}),
            "annotator_kind",
        ),
        (
            json!({"data": [{"span_id": "xyz", "name": "x", "annotator_kind": "LLM", "result": {"score": 1}}]}),
            "span_id",
        ),
        (
            json!({"data": [{"span_id": span_hex(1), "name": "x", "annotator_kind": "LLM"}]}),
            "at least one",
        ),
        (
            json!({"data": [{"span_id": span_hex(1), "name": "", "annotator_kind": "LLM", "result": {"score": 1}}]}),
            "name",
        ),
        (json!({"rows": []}), "data"),
    ] {
        let reply = server.post("/v1/span_annotations?sync=true", &bad);
        assert_eq!(reply.status, 422, "{bad}: {}", reply.text);
        assert!(reply.text.contains(says), "{bad}: {}", reply.text);
    }
}

#[test]
fn tag_lookups_are_rolled_up_per_minute_by_sender_and_agent() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let (v1, _) = greet(&server, &[]);
    for _ in 0..3 {
        let reply = server.call(
            "GET",
            "/v1/prompts/greet/tags/production",
            &[("user-agent", "support-bot/1.2")],
            None,
        );
        assert_eq!(reply.status, 200);
    }
    server.call(
        "GET",
        "/v1/prompts/greet/latest",
        &[("user-agent", "cron")],
        None,
    );
    let store = runner::store::open(&env.db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut counts: Vec<(String, String, String, i64)> = Vec::new();
    while Instant::now() < deadline {
        counts = store
            .lookups("greet", None, None)
            .unwrap()
            .into_iter()
            .map(|(k, n)| (k.tag, k.version_id, k.user_agent, n))
            .collect();
        if counts.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    counts.sort();
    let v2 = store
        .version("greet", &runner::model::VersionRef::Latest)
        .unwrap()
        .id;
    assert_eq!(
        counts,
        [
            ("latest".to_string(), v2, "cron".to_string(), 1),
            (
                "production".to_string(),
                v1,
                "support-bot/1.2".to_string(),
                3
            ),
        ]
    );
}

/// Spans at `start_ms` (milliseconds since the epoch) for `runner production` to read.
pub(super) fn timed_span(
    trace: u64,
    id: u64,
    start_ms: u64,
    version: &str,
    error: bool,
    latency_ms: u64,
) -> Span {
    let mut span = llm_span(
        trace,
        id,
        vec![text("llm.prompt_template.version", version)],
        error,
    );
    span.start_time_unix_nano = start_ms * 1_000_000;
    span.end_time_unix_nano = (start_ms + latency_ms) * 1_000_000;
    span
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn production_counts_each_version_with_intervals_and_compares_two() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let (v1, _) = greet(&server, &[]);
    let start = now_ms() - 3_600_000;
    // v1: 40 calls, 4 errors, 100 ms; v2: 40 calls, 12 errors, 300 ms; one unlinked call.
    let mut spans = Vec::new();
    for i in 0..40u64 {
        spans.push(timed_span(
            i + 1,
            i + 1,
            start + i * 1_000,
            "greet@v1",
            i % 10 == 0,
            100,
        ));
        spans.push(timed_span(
            100 + i,
            100 + i,
            start + 60_000 + i * 1_000,
            "greet@v2",
            i % 10 < 3,
            300,
        ));
    }
    spans.push(llm_span(999, 999, vec![], false));
    let mut unlinked = spans.pop().unwrap();
    unlinked.start_time_unix_nano = (start + 5_000) * 1_000_000;
    unlinked.end_time_unix_nano = (start + 5_100) * 1_000_000;
    spans.push(unlinked);
    let reply = server.export(
        None,
        request(None, spans).encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(stored(&env, 81, false).len(), 81);
    // Feedback on two v1 calls through Phoenix's route.
    let feedback = json!({"data": [
        {"span_id": span_hex(2), "name": "helpful", "annotator_kind": "HUMAN", "result": {"score": 1.0, "label": "good"}},
        {"span_id": span_hex(3), "name": "helpful", "annotator_kind": "HUMAN", "result": {"score": 0.0, "label": "bad"}},
    ]});
    assert_eq!(
        server
            .post("/v1/span_annotations?sync=true", &feedback)
            .status,
        200
    );

    let report = env.json(&["production", "greet", "--since", "2h", "--json"]);
    assert_eq!(report["prompt"], "greet");
    assert_eq!(report["unlinked_spans"], 1);
    let versions = report["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let (second, first) = (&versions[0], &versions[1]);
    assert_eq!(
        (
            second["version"].as_i64(),
            second["requests"].as_i64(),
            second["errors"].as_i64()
        ),
        (Some(2), Some(40), Some(12))
    );
    assert_eq!(
        (
            first["version"].as_i64(),
            first["requests"].as_i64(),
            first["errors"].as_i64()
        ),
        (Some(1), Some(40), Some(4))
    );
    assert_eq!(first["version_id"], v1.as_str());
    assert_eq!(first["tags"], json!(["production"]));
    assert_eq!(first["error_rate"], 0.1);
    let interval = first["error_rate_interval"].as_array().unwrap();
    assert!(interval[0].as_f64().unwrap() < 0.1 && interval[1].as_f64().unwrap() > 0.1);
    assert_eq!(first["latency_p50_ms"], 100.0);
    assert_eq!(second["latency_p95_ms"], 300.0);
    assert_eq!(first["input_tokens"], 480);
    assert_eq!(first["output_tokens"], 200);
    assert!(first["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(first["scores"][0]["name"], "helpful");
    assert_eq!(first["scores"][0]["count"], 2);
    assert_eq!(first["scores"][0]["mean"], 0.5);
    assert_eq!(first["scores"][0]["passed"], 1);
    assert_eq!(first["applications"][0]["service"], "support-bot");
    assert!(
        report["tag_moves"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["tag"] == "production" && m["to_version"] == 1)
    );
    assert!(report["series"]["points"].as_array().unwrap().len() >= 2);

    // The text report says the same, and --tag keeps the versions the tag pointed at.
    let text = env.ok(&["production", "greet", "--since", "2h"]);
    assert!(text.contains("v1 (production)"), "{text}");
    assert!(text.contains("10.0% ["), "{text}");
    assert!(text.contains("named no version"), "{text}");
    let tagged = env.json(&[
        "production",
        "greet",
        "--since",
        "2h",
        "--tag",
        "production",
        "--json",
    ]);
    let numbers: Vec<i64> = tagged["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1]);

    // Two versions compared, unpaired, with the test named.
    let compared = env.json(&[
        "production",
        "compare",
        "greet",
        "--versions",
        "1,2",
        "--since",
        "2h",
        "--json",
    ]);
    assert_eq!(compared["baseline"], 1);
    assert_eq!(compared["candidate"], 2);
    assert_eq!(compared["error_rate"]["test"], "two-proportion z-test");
    assert!((compared["error_rate"]["difference"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert_eq!(compared["latency_ms"]["test"], "Welch's t-test");
    assert_eq!(compared["latency_ms"]["difference"], 200.0);
    let text = env.ok(&[
        "production",
        "compare",
        "greet",
        "--versions",
        "production,2",
        "--since",
        "2h",
    ]);
    assert!(
        text.contains("two-proportion z-test") && text.contains("Welch's t-test"),
        "{text}"
    );

    // Bad input: one line, a hint, exit 2, nothing changed.
    for (args, says) in [
        (
            vec!["production", "greet", "--since", "yesterday"],
            "--since 'yesterday'",
        ),
        (
            vec!["production", "greet", "--since", "1h", "--until", "2h"],
            "window is empty",
        ),
        (
            vec!["production", "compare", "greet", "--versions", "1"],
            "two versions",
        ),
        (vec!["production"], "needs a prompt name"),
    ] {
        let output = env.run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("hint: "), "{stderr}");
    }
    let unknown = env.run(&["production", "nope"]);
    assert_ne!(unknown.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nope"));
}

#[test]
fn compare_sets_each_versions_production_beside_its_experiment() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    greet(&server, &[]);
    let start = now_ms() - 600_000;
    let spans: Vec<Span> = (0..10u64)
        .map(|i| timed_span(i + 1, i + 1, start + i * 1_000, "greet@v1", i < 3, 120))
        .collect();
    server.export(
        None,
        request(None, spans).encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(stored(&env, 10, false).len(), 10);
    let mock = super::super::Mock::start(&env, &[]);
    let data = super::super::echo_dataset(&env, "d.csv", &["hello", "where is my order"]);
    let run = |version: &str| {
        env.json(&[
            "experiment",
            "--prompt",
            "greet",
            "--version",
            version,
            "--dataset",
            &data,
            "--var",
            "company=Acme",
            "--column",
            "name=query",
            "--base-url",
            &mock.url,
            "--json",
        ])["experiment"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (first, second) = (run("1"), run("2"));
    let compared = env.json(&["compare", &first, &second, "--production", "1h", "--json"]);
    let production = &compared["production"];
    assert_eq!(production["baseline"]["version"], 1);
    assert_eq!(production["baseline"]["requests"], 10);
    assert_eq!(production["baseline"]["errors"], 3);
    assert_eq!(production["candidate"], serde_json::Value::Null);
    let text = env.ok(&["compare", &first, &second, "--production", "1h"]);
    assert!(text.contains("in production"), "{text}");
    assert!(text.contains("30.0% ["), "{text}");
    assert!(text.contains("no traffic"), "{text}");
}

#[test]
fn spans_past_the_retention_are_pruned() {
    let env = Env::new();
    let server = Server::start(&env, &["--trace-retention", "1h"]);
    greet(&server, &[]);
    let now = now_ms();
    let spans = vec![
        timed_span(1, 1, now - 2 * 3_600_000, "greet@v1", false, 100),
        timed_span(2, 2, now - 60_000, "greet@v1", false, 100),
    ];
    server.export(
        None,
        request(None, spans).encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(stored(&env, 2, false).len(), 2);
    // Retention runs when the server starts and then in the background.
    server.stop();
    let server = Server::start(&env, &["--trace-retention", "1h"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = stored(&env, 1, false);
    while left.len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = stored(&env, 1, false);
    }
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].span_id, span_hex(2));
    drop(server);
    let bad = env.run(&["serve", "--trace-retention", "forever"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--trace-retention 'forever'"));
}

/// Holds the store's spans table locked against writers until dropped.
enum Lock {
    Sqlite(rusqlite::Connection),
    Postgres(tokio::runtime::Runtime, tokio_postgres::Client),
}

impl Lock {
    fn take(env: &Env) -> Lock {
        if crate::POSTGRES {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let url = env.db.to_str().unwrap().to_string();
            let client = runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client
                    .batch_execute("BEGIN; LOCK TABLE spans IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                client
            });
            Lock::Postgres(runtime, client)
        } else {
            let connection = rusqlite::Connection::open(&env.db).unwrap();
            connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
            Lock::Sqlite(connection)
        }
    }

    fn release(self) {
        match self {
            Lock::Sqlite(connection) => connection.execute_batch("COMMIT").unwrap(),
            Lock::Postgres(runtime, client) => {
                runtime.block_on(client.batch_execute("COMMIT")).unwrap()
            }
        }
    }
}

#[test]
fn a_full_ingest_queue_asks_exporters_to_retry_and_loses_nothing_it_took() {
    let env = Env::new();
    let server = Server::start(&env, &["--ingest-queue", "10"]);
    greet(&server, &[]);
    let batch = |from: u64| {
        let spans = (from..from + 10)
            .map(|i| {
                llm_span(
                    i,
                    i,
                    vec![text("llm.prompt_template.version", "greet@v1")],
                    false,
                )
            })
            .collect();
        request(None, spans).encode_to_vec()
    };
    // The store is locked against writers: the first batch is taken and waits in the queue.
    let lock = Lock::take(&env);
    let first = server.export(None, batch(1), "application/x-protobuf", false);
    assert_eq!(first.status, 200, "{}", first.text);
    let full = server.export(None, batch(11), "application/x-protobuf", false);
    assert_eq!(full.status, 503, "{}", full.text);
    assert_eq!(full.header("retry-after"), "1");
    // Prompt lookups do not wait on ingest.
    let started = Instant::now();
    let lookup = server.get("/v1/prompts/greet/tags/production");
    assert_eq!(lookup.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    lock.release();
    // Once the store takes writes again the queued batch is written, and the retried one is
    // taken.
    assert_eq!(stored(&env, 10, false).len(), 10);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut retried = server.export(None, batch(11), "application/x-protobuf", false);
    while retried.status == 503 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        retried = server.export(None, batch(11), "application/x-protobuf", false);
    }
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(stored(&env, 20, false).len(), 20);
}

#[test]
fn store_copy_carries_production_traffic_and_its_figures() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    greet(&server, &[]);
    let start = now_ms() - 600_000;
    let spans: Vec<Span> = (0..30u64)
        .map(|i| {
            let version = if i < 20 { "greet@v1" } else { "greet@v2" };
            timed_span(
                i + 1,
                i + 1,
                start + i * 1_000,
                version,
                i % 7 == 0,
                100 + i,
            )
        })
        .collect();
    server.export(
        None,
        request(None, spans).encode_to_vec(),
        "application/x-protobuf",
        false,
    );
    assert_eq!(stored(&env, 30, false).len(), 30);
    let feedback = json!({"data": [
        {"span_id": span_hex(2), "name": "helpful", "annotator_kind": "HUMAN", "result": {"score": 1.0}},
        {"span_id": span_hex(25), "name": "helpful", "annotator_kind": "LLM", "result": {"score": 0.25, "label": "meh"}},
    ]});
    assert_eq!(
        server
            .post("/v1/span_annotations?sync=true", &feedback)
            .status,
        200
    );
    server.get("/v1/prompts/greet/tags/production");
    // The lookup roll-up is written when the server stops.
    server.stop();

    let copy = env.path("copy.db");
    let copy = copy.to_str().unwrap();
    let source = env.db.to_str().unwrap().to_string();
    let said = env.ok(&["store", "copy", "--from", &source, "--to", copy]);
    assert!(
        said.contains(
            "30 span(s), 2 annotation(s), 1 lookup count(s), 0 dataset version(s) and 0 \
             experiment(s) of the Phoenix client"
        ),
        "{said}"
    );
    let since = super::super::production_time(start - 60_000);
    let until = super::super::production_time(start + 3_600_000);
    let window = [
        "production",
        "greet",
        "--since",
        &since,
        "--until",
        &until,
        "--json",
    ];
    let original = env.json(&window);
    let mut args = vec!["--db", copy];
    args.extend(window);
    assert_eq!(env.json(&args), original);
    assert_eq!(original["versions"][1]["scores"][0]["mean"], 1.0);
    assert_eq!(original["lookups"][0]["count"], 1);
    // A store that holds spans is not an empty destination.
    let again = env.run(&["store", "copy", "--from", &source, "--to", copy]);
    assert_ne!(again.status.code(), Some(0));
}
