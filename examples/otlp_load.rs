//! An OTLP/HTTP load generator for span ingest: it sends batches of LLM spans, written as
//! OpenInference's OpenAI instrumentation writes them (messages, request and response bodies,
//! token counts, the prompt template and its version), from several concurrent senders to
//! `POST /v1/traces`, then waits until the store counts every span (read through a connection
//! kept open, `--count sqlite:PATH` or `--count postgres://…`, or a command that prints the
//! number: `--count "sqlite3 …"`). It can also time a prompt lookup (a GET) at a steady pace,
//! first with the server idle, then while the spans go in. `benches/traces.sh` runs it against
//! `runner serve` and a Phoenix server.
//!
//! ```sh
//! cargo run --release --example otlp_load -- http://127.0.0.1:6006 --spans 102400 \
//!     --count sqlite:runner.db [--batch 512] [--senders 4]
//!     [--token T] [--version NAME@v1] [--lookup /v1/prompts/NAME/tags/production]
//! ```
//!
//! Every body is encoded before the clock starts, so the generator's own CPU during the run is
//! the sending. A 503 is waited out as an exporter does (its `Retry-After`, else a second) and
//! sent again. It prints one JSON object: spans, seconds to send them and to have them stored,
//! spans per second, 503s, spans the server refused, and the lookups' percentiles.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Options {
    url: String,
    token: Option<String>,
    spans: usize,
    batch: usize,
    senders: usize,
    threads: usize,
    version: String,
    count: String,
    wait: f64,
    poll_ms: u64,
    lookup: Option<String>,
    lookup_every_ms: u64,
    idle: f64,
}

const USAGE: &str = "otlp_load URL --count sqlite:PATH|postgres://…|CMD [--spans N] \
     [--batch N] [--senders N] \
     [--threads N] [--token T] [--version REF] [--wait SECS] [--poll-ms MS] [--lookup PATH] \
     [--lookup-every-ms MS] [--idle SECS]";

fn main() {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!("hint: {USAGE}");
            std::process::exit(2);
        }
    };
    // reqwest is built without a default TLS provider; the URLs are plain http, but the
    // client still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(&options)) {
        Ok(report) => println!("{report}"),
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(3);
        }
    }
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        url: String::new(),
        token: None,
        spans: 102_400,
        batch: 512,
        senders: 4,
        threads: 2,
        version: "bench@v1".into(),
        count: String::new(),
        wait: 300.0,
        poll_ms: 50,
        lookup: None,
        lookup_every_ms: 10,
        idle: 3.0,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--token" => options.token = Some(value("--token")?),
            "--spans" => options.spans = number(&value("--spans")?)?,
            "--batch" => options.batch = number(&value("--batch")?)?,
            "--senders" => options.senders = number(&value("--senders")?)?,
            "--threads" => options.threads = number(&value("--threads")?)?,
            "--version" => options.version = value("--version")?,
            "--count" => options.count = value("--count")?,
            "--wait" => options.wait = number(&value("--wait")?)?,
            "--poll-ms" => options.poll_ms = number(&value("--poll-ms")?)?,
            "--lookup" => options.lookup = Some(value("--lookup")?),
            "--lookup-every-ms" => options.lookup_every_ms = number(&value("--lookup-every-ms")?)?,
            "--idle" => options.idle = number(&value("--idle")?)?,
            other if options.url.is_empty() && other.starts_with("http://") => {
                options.url = other.trim_end_matches('/').to_string()
            }
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    if options.url.is_empty() {
        return Err("the server's http:// URL is missing".into());
    }
    if options.count.is_empty() {
        return Err(
            "--count is missing: sqlite:PATH, postgres://… or a command that prints how many \
             spans are stored"
                .into(),
        );
    }
    if options.spans == 0 || options.batch == 0 || options.senders == 0 || options.threads == 0 {
        return Err("spans, batch, senders and threads must be positive".into());
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a number"))
}

async fn run(options: &Options) -> Result<serde_json::Value, String> {
    let (bodies, last_ids) = encode_batches(options);
    let bodies = Arc::new(bodies);
    let counter = Counter::open(&options.count).await?;
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!(
        "{} spans in {} bodies, {:.0} bytes a span",
        options.spans,
        bodies.len(),
        bytes as f64 / options.spans as f64
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.senders + 1)
        .build()
        .map_err(|e| e.to_string())?;
    let before = counter.count().await?;

    let idle = match &options.lookup {
        Some(path) => {
            let stop = Arc::new(AtomicBool::new(false));
            let sampler = tokio::spawn(lookups(
                client.clone(),
                lookup_url(options, path),
                options.token.clone(),
                options.lookup_every_ms,
                Arc::clone(&stop),
            ));
            tokio::time::sleep(Duration::from_secs_f64(options.idle)).await;
            stop.store(true, Ordering::SeqCst);
            Some(sampler.await.map_err(|e| e.to_string())??)
        }
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let busy = options.lookup.as_ref().map(|path| {
        tokio::spawn(lookups(
            client.clone(),
            lookup_url(options, path),
            options.token.clone(),
            options.lookup_every_ms,
            Arc::clone(&stop),
        ))
    });
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut senders = Vec::with_capacity(options.senders);
    for _ in 0..options.senders {
        senders.push(tokio::spawn(sender(
            client.clone(),
            format!("{}/v1/traces", options.url),
            options.token.clone(),
            Arc::clone(&bodies),
            Arc::clone(&next),
            Arc::clone(&retries),
            Arc::clone(&rejected),
        )));
    }
    for task in senders {
        task.await.map_err(|e| e.to_string())??;
    }
    let sent = start.elapsed();
    let target = before + options.spans as u64 - rejected.load(Ordering::SeqCst);
    let deadline = start + Duration::from_secs_f64(options.wait);
    // A full count of a large table is itself heavy work for the server under test (on
    // PostgreSQL it reads the whole table): with a store to read, the ids of each batch's last
    // span are looked up first (an index probe), and the full count runs once they are all
    // there, or at least once a second. The time taken is the moment before the counting
    // statement starts, whose snapshot then holds every span.
    let mut last_full: Option<Instant> = None;
    let stored = loop {
        let ready = counter.probe(&last_ids).await;
        if ready || last_full.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let at = start.elapsed();
            let now = counter.count().await?;
            last_full = Some(Instant::now());
            if now >= target {
                break at;
            }
            if Instant::now() > deadline {
                stop.store(true, Ordering::SeqCst);
                return Err(format!(
                    "{} of {} spans stored after {:.0} s",
                    now - before,
                    target - before,
                    options.wait
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(options.poll_ms)).await;
    };
    stop.store(true, Ordering::SeqCst);
    let busy = match busy {
        Some(task) => Some(task.await.map_err(|e| e.to_string())??),
        None => None,
    };
    let stored_spans = target - before;
    Ok(json!({
        "spans": options.spans,
        "stored": stored_spans,
        "batch": options.batch,
        "senders": options.senders,
        "bytes_per_span": (bytes as f64 / options.spans as f64).round(),
        "send_seconds": sent.as_secs_f64(),
        "stored_seconds": stored.as_secs_f64(),
        "spans_per_second": stored_spans as f64 / stored.as_secs_f64(),
        "retries_503": retries.load(Ordering::SeqCst),
        "rejected": rejected.load(Ordering::SeqCst),
        "lookup_idle": idle.map(|l| l.summary()),
        "lookup_ingesting": busy.map(|l| l.summary()),
    }))
}

fn lookup_url(options: &Options, path: &str) -> String {
    format!("{}{}", options.url, path)
}

/// Sends the bodies not yet taken by another sender, one at a time.
async fn sender(
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    bodies: Arc<Vec<Vec<u8>>>,
    next: Arc<AtomicUsize>,
    retries: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
) -> Result<(), String> {
    loop {
        let index = next.fetch_add(1, Ordering::SeqCst);
        let Some(body) = bodies.get(index) else {
            return Ok(());
        };
        loop {
            let mut request = client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(body.clone());
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .map_err(|e| format!("POST {url}: {e}"))?;
            let status = response.status();
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            let answer = response.bytes().await.map_err(|e| e.to_string())?;
            if status.as_u16() == 503 || status.as_u16() == 429 {
                retries.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                continue;
            }
            if !status.is_success() {
                return Err(format!(
                    "POST {url} answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
            // A JSON answer (a server that ignores the request's media type) carries no
            // protobuf partial success; an empty body is a full success.
            if let Ok(decoded) = ExportTraceServiceResponse::decode(answer.as_ref())
                && let Some(partial) = decoded.partial_success
            {
                rejected.fetch_add(partial.rejected_spans.max(0) as u64, Ordering::SeqCst);
            }
            break;
        }
    }
}

/// Lookup latencies, in microseconds.
struct Lookups {
    micros: Vec<u64>,
    failed: u64,
}

impl Lookups {
    fn summary(&self) -> serde_json::Value {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let n = sorted.len();
            (n > 0).then(|| {
                let at = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
                sorted[at] as f64 / 1000.0
            })
        };
        json!({
            "count": sorted.len(),
            "failed": self.failed,
            "p50_ms": rank(0.50),
            "p99_ms": rank(0.99),
            "max_ms": sorted.last().map(|m| *m as f64 / 1000.0),
        })
    }
}

/// One GET every `every_ms` (a missed tick is not made up) until `stop`.
async fn lookups(
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    every_ms: u64,
    stop: Arc<AtomicBool>,
) -> Result<Lookups, String> {
    let mut tally = Lookups {
        micros: Vec::new(),
        failed: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(every_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let mut request = client.get(&url);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let sent = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let ok = response.status().is_success();
        response.bytes().await.map_err(|e| e.to_string())?;
        let micros = sent.elapsed().as_micros() as u64;
        if ok {
            tally.micros.push(micros);
        } else {
            tally.failed += 1;
        }
    }
    if tally.failed > 0 && tally.micros.is_empty() {
        return Err(format!("every lookup of {url} failed"));
    }
    Ok(tally)
}

/// Where the stored spans are counted: a command that prints the number (through `sh -c`), or
/// a connection kept open to the store's file (`sqlite:PATH`) or database (`postgres://…`).
enum Counter {
    Command(String),
    Sqlite(Arc<std::sync::Mutex<rusqlite::Connection>>),
    Postgres(tokio_postgres::Client),
}

impl Counter {
    async fn open(location: &str) -> Result<Counter, String> {
        if let Some(path) = location.strip_prefix("sqlite:") {
            let conn = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(|e| format!("cannot open {path}: {e}"))?;
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            return Ok(Counter::Sqlite(Arc::new(std::sync::Mutex::new(conn))));
        }
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            let (client, connection) = tokio_postgres::connect(location, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("cannot connect to {location}: {e}"))?;
            tokio::spawn(connection);
            return Ok(Counter::Postgres(client));
        }
        Ok(Counter::Command(location.to_string()))
    }

    /// Every span stored.
    async fn count(&self) -> Result<u64, String> {
        match self {
            Counter::Command(command) => count_command(command).await,
            Counter::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                    conn.query_row("SELECT COUNT(*) FROM spans", [], |r| r.get::<_, i64>(0))
                        .map(|n| n as u64)
                        .map_err(|e| format!("cannot count the spans: {e}"))
                })
                .await
                .map_err(|e| e.to_string())?
            }
            Counter::Postgres(client) => client
                .query_one("SELECT COUNT(*) FROM spans", &[])
                .await
                .map(|row| row.get::<_, i64>(0) as u64)
                .map_err(|e| format!("cannot count the spans: {e}")),
        }
    }

    /// Whether every one of `ids` is stored (always true for a command: it can only count).
    async fn probe(&self, ids: &[String]) -> bool {
        match self {
            Counter::Command(_) => true,
            Counter::Sqlite(conn) => {
                let conn = Arc::clone(conn);
                let ids = serde_json::to_string(ids).unwrap_or_default();
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                    conn.query_row(
                        "SELECT COUNT(*) = json_array_length(?1) FROM spans \
                         WHERE span_id IN (SELECT value FROM json_each(?1))",
                        [&ids],
                        |r| r.get::<_, bool>(0),
                    )
                    .unwrap_or(false)
                })
                .await
                .unwrap_or(false)
            }
            Counter::Postgres(client) => client
                .query_one(
                    "SELECT COUNT(*) FROM spans WHERE span_id = ANY($1)",
                    &[&ids],
                )
                .await
                .is_ok_and(|row| row.get::<_, i64>(0) as usize >= ids.len()),
        }
    }
}

/// Runs a count command (through `sh -c`) and reads the number it prints.
async fn count_command(command: &str) -> Result<u64, String> {
    let command = command.to_string();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .map_err(|e| format!("cannot run the count command: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "the count command failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        text.trim()
            .parse()
            .map_err(|_| format!("the count command printed '{}', not a number", text.trim()))
    })
    .await
    .map_err(|e| e.to_string())?
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

const SYSTEM: &str = "You are a support agent for {{company}}. Answer the customer's question \
     in at most three sentences, friendly and concrete. If the question is about an order, \
     give its status and the next step; never invent tracking numbers.";
const QUERIES: [&str; 4] = [
    "Hello, I ordered a pair of running shoes last Tuesday (order {n}) and the tracking page \
     has said 'label created' for five days now. Could you tell me whether it has actually \
     shipped, and if not, when it will? I need them before a race on Saturday.",
    "I was charged twice for my subscription this month, once on the 1st and again on the 3rd, \
     both for the full annual amount. My account number is {n}. Please refund the duplicate \
     charge and confirm by email; I have attached screenshots of both card statements.",
    "The blender I bought (order {n}) stopped working after two weeks: it makes a grinding \
     noise and then the motor cuts out. Is this covered by the warranty, and do I need to send \
     it back or can you ship a replacement first? I no longer have the box.",
    "Can I change the delivery address on order {n}? I am moving next week and the parcel is \
     scheduled to arrive on Thursday. The new address is in the same city, about three miles \
     from the old one, and I can be home all day on Friday if that helps.",
];
const ANSWER: &str = "Thanks for reaching out, and sorry for the trouble with order {n}. I \
     checked with the warehouse: it left our depot yesterday evening and the carrier expects to \
     deliver it on Thursday before noon, so it will arrive in time. You will get an email with \
     the live tracking link within the hour; if it has not moved by Thursday morning, reply \
     here and we will send a replacement by express courier at no cost.";

/// Every batch, encoded: `options.spans` spans, `options.batch` to a body.
/// The encoded bodies, and the id (hex) of each body's last span.
fn encode_batches(options: &Options) -> (Vec<Vec<u8>>, Vec<String>) {
    // A fresh seed each run: a second run into the same store sends new spans.
    let mut rng = fastrand::Rng::new();
    let run = rng.u32(..);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let resource = Resource {
        attributes: vec![
            text("service.name", "support-bot"),
            text("openinference.project.name", "support"),
            text("telemetry.sdk.language", "python"),
            text("telemetry.sdk.name", "opentelemetry"),
            text("telemetry.sdk.version", "1.45.2"),
        ],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "openinference.instrumentation.openai".into(),
        version: "0.1.66".into(),
        ..Default::default()
    };
    let mut bodies = Vec::new();
    let mut last_ids = Vec::new();
    let mut index = 0usize;
    while index < options.spans {
        let n = options.batch.min(options.spans - index);
        let spans: Vec<Span> = (index..index + n)
            .map(|i| llm_span(&mut rng, run, i, now_ns, &options.version))
            .collect();
        if let Some(last) = spans.last() {
            last_ids.push(runner::model::hex(&last.span_id));
        }
        index += n;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope.clone()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        bodies.push(request.encode_to_vec());
    }
    (bodies, last_ids)
}

/// One chat completion as OpenInference's OpenAI instrumentation records it; one in twenty
/// failed with a 500.
fn llm_span(rng: &mut fastrand::Rng, run: u32, index: usize, now_ns: u64, version: &str) -> Span {
    let n = 10_000 + index;
    let query = QUERIES[index % QUERIES.len()].replace("{n}", &n.to_string());
    let answer = ANSWER.replace("{n}", &n.to_string());
    let system = SYSTEM.replace("{{company}}", "Acme");
    let failed = index % 20 == 7;
    let prompt_tokens =
        (system.split_whitespace().count() + query.split_whitespace().count()) as i64;
    let completion_tokens = answer.split_whitespace().count() as i64;
    let request = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": query}],
        "temperature": 0.2,
        "max_tokens": 300,
    });
    let mut attributes = vec![
        text("openinference.span.kind", "LLM"),
        text("llm.system", "openai"),
        text("llm.provider", "openai"),
        text("llm.model_name", "gpt-4o-mini-2024-07-18"),
        text(
            "llm.invocation_parameters",
            r#"{"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 300}"#,
        ),
        text("input.mime_type", "application/json"),
        text("input.value", request.to_string()),
        text("llm.input_messages.0.message.role", "system"),
        text("llm.input_messages.0.message.content", system),
        text("llm.input_messages.1.message.role", "user"),
        text("llm.input_messages.1.message.content", query.clone()),
        text("llm.prompt_template.template", SYSTEM),
        text(
            "llm.prompt_template.variables",
            json!({"company": "Acme", "query": query}).to_string(),
        ),
        text("llm.prompt_template.version", version),
    ];
    let mut events = Vec::new();
    let status = if failed {
        events.push(span::Event {
            time_unix_nano: now_ns,
            name: "exception".into(),
            attributes: vec![
                text("exception.type", "openai.InternalServerError"),
                text(
                    "exception.message",
                    "Error code: 500 - {'error': {'message': 'upstream overloaded'}}",
                ),
            ],
            ..Default::default()
        });
        Status {
            code: 2,
            message: "InternalServerError: Error code: 500".into(),
        }
    } else {
        let response = json!({
            "id": format!("chatcmpl-{run:x}{index}"),
            "object": "chat.completion",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        });
        attributes.extend([
            text("output.mime_type", "application/json"),
            text("output.value", response.to_string()),
            text("llm.output_messages.0.message.role", "assistant"),
            text("llm.output_messages.0.message.content", answer),
            int("llm.token_count.prompt", prompt_tokens),
            int("llm.token_count.completion", completion_tokens),
            int("llm.token_count.total", prompt_tokens + completion_tokens),
        ]);
        Status {
            code: 1,
            message: String::new(),
        }
    };
    // Random ids, as OpenTelemetry's SDKs make them (a collision among a million spans has a
    // chance near 1e-8).
    let trace_id = rng.u128(1..).to_be_bytes();
    let span_id = rng.u64(1..).to_be_bytes();
    let parent_id = rng.u64(1..).to_be_bytes();
    let latency_ns = rng.u64(300_000_000..2_500_000_000);
    let end = now_ns - rng.u64(0..60_000_000_000);
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent_id.to_vec(),
        name: "ChatCompletion".into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: end - latency_ns,
        end_time_unix_nano: end,
        attributes,
        events,
        status: Some(status),
        ..Default::default()
    }
}
