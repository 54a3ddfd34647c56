//! The web UI's production views at the HTML level: spans exported over OTLP/HTTP (protobuf) to
//! the real `runner serve`, then a prompt's Production section (each version's figures, the
//! chart with one line per tag move), a version's recent spans, and one span's page, its hostile
//! content escaped.

use super::{Env, Server};
pub use crate::otlp::{int, span_hex, text, trace_hex};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use runner::trace::SpanFilter;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const MINUTE: u64 = 60_000;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An LLM span (12 tokens in, 5 out) with id `id` in trace `id`, started at `start_ms`, lasting
/// `latency_ms`, with `attributes` beside the usual ones; an errored one says "rate limited".
pub fn llm_span(
    id: u64,
    start_ms: u64,
    latency_ms: u64,
    attributes: Vec<KeyValue>,
    error: bool,
) -> Span {
    let start = start_ms * 1_000_000;
    let mut all = vec![
        text("openinference.span.kind", "LLM"),
        text("llm.model_name", "gpt-4o-mini"),
        int("llm.token_count.prompt", 12),
        int("llm.token_count.completion", 5),
    ];
    all.extend(attributes);
    Span {
        trace_id: [id.to_be_bytes(), 7u64.to_be_bytes()].concat(),
        span_id: id.to_be_bytes().to_vec(),
        name: "ChatCompletion".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + latency_ms * 1_000_000,
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

/// The attribute that links a span to version `seq` of `greet`.
pub fn version(seq: i64) -> KeyValue {
    text("llm.prompt_template.version", &format!("greet@v{seq}"))
}

/// Spans from the service `support-bot`, as an exporter sends them (protobuf).
pub fn export(server: &Server, spans: Vec<Span>) {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "support-bot")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, body) = post(
        server,
        "/v1/traces",
        "application/x-protobuf",
        request.encode_to_vec(),
    );
    assert_eq!(status, 200, "{body}");
}

/// Span annotations through Phoenix's route, written before the answer (`?sync`).
pub fn annotate(server: &Server, annotations: Value) {
    let (status, body) = post(
        server,
        "/v1/span_annotations?sync=true",
        "application/json",
        serde_json::to_vec(&json!({ "data": annotations })).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
}

fn post(server: &Server, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let request = server
        .http
        .post(format!("{}{path}", server.base))
        .header("content-type", content_type)
        .body(body);
    server.runtime.block_on(async {
        let reply = request.send().await.expect("POST");
        let status = reply.status().as_u16();
        (status, reply.text().await.unwrap_or_default())
    })
}

/// Waits (bounded) until the store holds `count` spans: the server writes them off the
/// request path.
pub fn wait_for_spans(env: &Env, count: usize) {
    let store = runner::store::open(&env.db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stored = 0;
        store
            .visit_spans(&SpanFilter::default(), &mut |_| {
                stored += 1;
                Ok(())
            })
            .unwrap();
        if stored >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {stored} of {count} spans stored"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `greet` v1 and v2 made by the CLI: production set on v1, staging on v2, then production
/// moved to v2 (three tag moves, all now).
pub fn greet(env: &Env) {
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "Hi {{name}}",
        "--model",
        "gpt-4o-mini",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "Hello {{name}}",
        "--tag",
        "staging",
    ]);
    env.ok(&[
        "tag",
        "set",
        "greet",
        "production",
        "--version",
        "2",
        "--force",
        "-m",
        "ship v2",
    ]);
}

/// The page's table row of version `seq`.
fn row(page: &str, seq: i64) -> &str {
    let start = page
        .find(&format!("<tr data-version=\"{seq}\">"))
        .unwrap_or_else(|| panic!("no row for v{seq} in {page}"));
    let end = start + page[start..].find("</tr>").unwrap();
    &page[start..end]
}

/// The chart's two drawings, wide (a page) then narrow (a phone), each from its `<svg` to its
/// `</svg>`.
fn drawings(page: &str) -> Vec<&str> {
    ["wide", "narrow"]
        .iter()
        .map(|class| {
            let start = page
                .find(&format!("<svg class=\"{class}\""))
                .unwrap_or_else(|| panic!("no {class} drawing in {page}"));
            let end = start + page[start..].find("</svg>").unwrap();
            &page[start..end]
        })
        .collect()
}

/// Each bar of the chart: (its colour class, its tooltip).
fn bars(page: &str) -> Vec<(String, String)> {
    page.split("<rect class=\"")
        .skip(1)
        .map(|rest| {
            let class = rest[..rest.find('"').unwrap()].to_string();
            let title = &rest[rest.find("<title>").unwrap() + "<title>".len()..];
            (class, title[..title.find("</title>").unwrap()].to_string())
        })
        .collect()
}

#[test]
fn the_production_section_shows_each_versions_traffic_and_every_tag_move() {
    let env = Env::new();
    greet(&env);
    let server = Server::start(&env, &[]);
    let start = now_ms() - 180 * MINUTE;
    // v1: ten calls 5 minutes apart, 100 to 1,000 ms, the 3rd and 7th errored.
    let mut spans: Vec<Span> = (0..10u64)
        .map(|i| {
            llm_span(
                i + 1,
                start + i * 5 * MINUTE,
                (i + 1) * 100,
                vec![version(1)],
                i == 2 || i == 6,
            )
        })
        .collect();
    // v2: four calls of 200 ms, an hour later.
    spans.extend((0..4u64).map(|i| {
        llm_span(
            11 + i,
            start + 60 * MINUTE + i * 5 * MINUTE,
            200,
            vec![version(2)],
            false,
        )
    }));
    // One that names no version.
    spans.push(llm_span(15, start + 70 * MINUTE, 300, vec![], false));
    export(&server, spans);
    wait_for_spans(&env, 15);
    let scored = |id: u64, score: f64| {
        json!({"span_id": span_hex(id), "name": "correctness", "annotator_kind": "LLM",
               "result": {"score": score}})
    };
    annotate(
        &server,
        json!([
            scored(1, 1.0),
            scored(2, 0.0),
            scored(4, 1.0),
            scored(5, 1.0),
            {"span_id": span_hex(11), "name": "thumbs", "annotator_kind": "HUMAN",
             "result": {"label": "down"}},
        ]),
    );

    let page = server.get("/prompts/greet");
    assert_eq!(page.status, 200, "{}", page.text);
    let text = &page.text;
    assert!(text.contains("<section id=\"production\"><h2>Production</h2>"));
    assert!(
        text.contains("14 requests · 2 versions · 1 unlinked span (naming no version runner knows) · intervals at 95% confidence"),
        "{text}"
    );
    // The 24-hour window is the one chosen.
    assert!(
        text.contains(
            "href=\"/prompts/greet?window=24h#production\" aria-current=\"page\">24h</a>"
        )
    );

    // v1: 10 requests, 2 errors (20 %, Wilson's 95 % interval 5.7–51.0 %), nearest-rank
    // p50 500 ms and p95 1,000 ms, 120 / 50 tokens at gpt-4o-mini's price, correctness mean
    // 0.75 (t interval −0.05–1.55) and 3 of 4 passing (Wilson 30.1–95.4 %).
    let v1 = row(text, 1);
    for expected in [
        "<td class=\"num requests\" data-label=\"Requests\">10<div class=\"muted small errors\">2 errors</div>",
        "<td class=\"num error-rate\" data-label=\"Error rate\">20.0%<div class=\"muted small interval\">5.7–51.0%</div>",
        "500 / 1000 ms",
        "120 / 50<div class=\"muted small cost\">$0.000048</div>",
        "<span class=\"muted small\">mean</span> 0.75 <span class=\"muted small\">-0.05–1.55</span>",
        "<span class=\"muted small\">pass</span> 75.0% <span class=\"muted small\">30.1–95.4%</span>",
        "3 of 4 passed",
        "support-bot <span class=\"muted\">api · 10</span>",
        "href=\"/prompts/greet/versions/1\">v1</a></td>",
    ] {
        assert!(v1.contains(expected), "v1 lacks {expected}: {v1}");
    }
    // v2: 4 requests, none errored (0–49.0 %), 200 ms, production and staging on it now; the
    // thumbs-down counts as a fail; v1 has no thumbs.
    let v2 = row(text, 2);
    for expected in [
        "<td class=\"num requests\" data-label=\"Requests\">4<div class=\"muted small errors\">0 errors</div>",
        "0.0%<div class=\"muted small interval\">0.0–49.0%</div>",
        "200 / 200 ms",
        "48 / 20<div class=\"muted small cost\">$0.000019</div>",
        ">production</span>",
        ">staging</span>",
        "<span class=\"muted small\">pass</span> 0.0%",
        "0 of 1 passed",
    ] {
        assert!(v2.contains(expected), "v2 lacks {expected}: {v2}");
    }
    assert!(v1.contains("data-label=\"thumbs\">–</td>"), "{v1}");

    // The chart, in each drawing: every request in a bar of its version's colour (the table's
    // swatch), and one dashed line per tag move in the window, labelled.
    for drawing in drawings(text) {
        chart_shows_the_traffic(drawing, v1, v2);
    }
    assert!(text.contains("Mean score · correctness"));
    assert!(text.contains("Requests per 15 minutes"));
    assert_eq!(text.matches("Requests per 15 minutes").count(), 2);
    // Another score, another window; a window with no traffic says how to send some.
    let thumbs = server.get("/prompts/greet?window=24h&score=thumbs");
    assert!(
        thumbs
            .text
            .contains("No annotation named &#39;thumbs&#39; has a score in this window; the chart shows &#39;correctness&#39;."),
        "{}",
        thumbs.text
    );
    let hour = server.get("/prompts/greet?window=1h");
    assert_eq!(hour.status, 200);
    assert!(
        hour.text
            .contains("No production traffic for this prompt in the last hour."),
        "{}",
        hour.text
    );
    assert!(hour.text.contains("<code>/v1/traces</code>"));
    assert!(!hour.text.contains("<svg"));
    let week = server.get("/prompts/greet?window=7d");
    assert!(week.text.contains("Requests per 6 hours"), "{}", week.text);
    for drawing in drawings(&week.text) {
        assert_eq!(drawing.matches("<line class=\"move\"").count(), 3);
    }
    let refused = server.get("/prompts/greet?window=2h");
    assert_eq!(refused.status, 422);
    assert!(refused.text.contains("expected 1h, 24h, 7d or 30d"));
}

/// One drawing of the production chart of `the_production_section_shows_each_versions_traffic_and_every_tag_move`:
/// v1's 10 requests and v2's 4 in bars of their table rows' colours, and its three tag moves.
fn chart_shows_the_traffic(drawing: &str, v1: &str, v2: &str) {
    let bars = bars(drawing);
    let requests = |version: &str| -> u64 {
        bars.iter()
            .filter(|(_, title)| title.starts_with(&format!("{version} · ")))
            .map(|(_, title)| {
                let n = title.split(" · ").nth(2).unwrap();
                n.split(' ').next().unwrap().parse::<u64>().unwrap()
            })
            .sum()
    };
    assert_eq!((requests("v1"), requests("v2")), (10, 4));
    let colour = |row: &str| {
        let swatch = &row[row.find("swatch ").unwrap() + "swatch ".len()..];
        swatch[..swatch.find('"').unwrap()].to_string()
    };
    assert_ne!(colour(v1), colour(v2));
    for (seq, v) in [(1, v1), (2, v2)] {
        assert!(
            bars.iter()
                .filter(|(_, title)| title.starts_with(&format!("v{seq} · ")))
                .all(|(class, _)| *class == colour(v)),
            "v{seq} is drawn in its table colour, {}",
            colour(v)
        );
    }
    assert_eq!(
        drawing.matches("<line class=\"move\"").count(),
        3,
        "{drawing}"
    );
    for label in ["production → v1", "staging → v2", "production → v2"] {
        assert_eq!(
            drawing.matches(&format!(">{label}</text>")).count(),
            1,
            "{label}"
        );
    }
    for title in [
        "Requests per 15 minutes",
        "Error rate",
        "Mean score · correctness",
    ] {
        assert!(drawing.contains(&format!(">{title}</text>")), "{title}");
    }
}

#[test]
fn a_version_lists_its_spans_and_a_span_page_shows_everything_escaped() {
    let env = Env::new();
    greet(&env);
    let server = Server::start(&env, &[]);
    let at = now_ms() - 30 * MINUTE;
    let hostile = llm_span(
        1,
        at,
        250,
        vec![
            version(1),
            text(
                "llm.prompt_template.variables",
                r#"{"name": "<b>Ann</b>", "count": 3}"#,
            ),
            text("llm.input_messages.0.message.role", "system"),
            text("llm.input_messages.0.message.content", "Be <i>brief</i>"),
            text("llm.input_messages.1.message.role", "user"),
            text("llm.input_messages.1.message.content", "Hi \"there\""),
            text("llm.output_messages.0.message.role", "assistant"),
            text(
                "llm.output_messages.0.message.content",
                "<script>alert(1)</script> & done",
            ),
            text("user.note", "<img src=x onerror=alert(2)>"),
        ],
        false,
    );
    let failed = llm_span(2, at + MINUTE, 900, vec![version(1)], true);
    let other = llm_span(3, at + 2 * MINUTE, 100, vec![version(2)], false);
    export(&server, vec![hostile, failed, other]);
    wait_for_spans(&env, 3);
    annotate(
        &server,
        json!([{"span_id": span_hex(1), "name": "tone<script>", "annotator_kind": "HUMAN",
                "result": {"label": "<b>rude</b>", "score": 0.25,
                           "explanation": "</td><script>alert(3)</script>"}}]),
    );

    // The version lists its own spans, newest first, each linked to its page.
    let page = server.get("/prompts/greet/versions/1");
    assert_eq!(page.status, 200, "{}", page.text);
    let spans = &page.text[page
        .text
        .find("<section id=\"spans\"><h2>Recent production spans</h2>")
        .expect("the spans section")..];
    let first = spans
        .find(&format!("href=\"/spans/{}\"", span_hex(2)))
        .unwrap();
    let second = spans
        .find(&format!("href=\"/spans/{}\"", span_hex(1)))
        .unwrap();
    assert!(first < second, "newest first");
    assert!(!spans.contains(&span_hex(3)), "v2's span is not v1's");
    assert!(spans.contains("The 2 spans linked to this version"));
    assert!(spans.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; done"));
    assert!(spans.contains("<span class=\"error\">rate limited</span>"));
    assert!(spans.contains("250 ms") && spans.contains("12 in · 5 out"));
    assert!(!page.text.contains("<script>alert"));
    let empty = server.get("/prompts/greet/versions/2");
    assert!(
        empty
            .text
            .contains(&format!("href=\"/spans/{}\"", span_hex(3)))
    );

    // The span's page: every fact, the variables, the messages, the output, the annotation,
    // the raw attributes folded, all escaped; and the way to replay it.
    let span = server.get(&format!("/spans/{}", span_hex(1)));
    assert_eq!(span.status, 200, "{}", span.text);
    let text = &span.text;
    for expected in [
        format!("<code>{}</code>", trace_hex(1)),
        format!("<code>{}</code>", span_hex(1)),
        "<a href=\"/prompts/greet/versions/1\">greet v1</a>".to_string(),
        "linked by openinference attributes".to_string(),
        "<dt>Project</dt><dd>default</dd>".to_string(),
        "<dt>Service</dt><dd>support-bot</dd>".to_string(),
        "<dt>Model</dt><dd>gpt-4o-mini</dd>".to_string(),
        "<dt>Latency</dt><dd>250 ms</dd>".to_string(),
        "<dt>Tokens</dt><dd>12 in · 5 out</dd>".to_string(),
        ">ok</span>".to_string(),
        "<code class=\"var\">name</code></td><td><pre class=\"cell\">&lt;b&gt;Ann&lt;/b&gt;</pre>"
            .to_string(),
        "<code class=\"var\">count</code></td><td><pre class=\"cell\">3</pre>".to_string(),
        "<li class=\"message role-system\"><div class=\"role\">system</div><pre>Be &lt;i&gt;brief&lt;/i&gt;</pre></li>"
            .to_string(),
        "<div class=\"role\">user</div><pre>Hi &quot;there&quot;</pre>".to_string(),
        "<pre class=\"block output\">&lt;script&gt;alert(1)&lt;/script&gt; &amp; done</pre>"
            .to_string(),
        "<td>tone&lt;script&gt;</td><td data-label=\"On\">span</td><td data-label=\"Kind\">HUMAN</td><td data-label=\"Label\">&lt;b&gt;rude&lt;/b&gt;</td><td class=\"num\" data-label=\"Score\">0.25</td>"
            .to_string(),
        "&lt;/td&gt;&lt;script&gt;alert(3)&lt;/script&gt;".to_string(),
        "<details class=\"raw\"><summary>Raw attributes (".to_string(),
        "&quot;user.note&quot;: &quot;&lt;img src=x onerror=alert(2)&gt;&quot;".to_string(),
        format!(
            "<a class=\"replay\" href=\"/prompts/greet/versions/1?span={}\">Replay in the playground</a>",
            span_hex(1)
        ),
    ] {
        assert!(text.contains(&expected), "the span page lacks {expected}: {text}");
    }
    assert_eq!(text.matches("<script").count(), 0, "no script at all");
    assert!(!text.contains("<img"));
    assert!(!text.contains("<b>"));

    let failed = server.get(&format!("/spans/{}", span_hex(2)));
    assert!(
        failed
            .text
            .contains(">error</span> <span class=\"error\">rate limited</span>")
    );
    assert!(
        failed
            .text
            .contains("<h2>Output</h2><p class=\"muted\">none recorded</p>")
    );

    // Unknown spans are the UI's 404 page, whatever the id looks like.
    for path in [
        format!("/spans/{}", span_hex(99)),
        "/spans/not-a-span".to_string(),
        "/spans/%3Cscript%3E".to_string(),
    ] {
        let missing = server.get(&path);
        assert_eq!(missing.status, 404, "{path}");
        assert!(missing.text.contains("<h1>404 Not Found</h1>"), "{path}");
        assert!(!missing.text.contains("<script"), "{path}");
    }
}
