//! `POST /v1/traces`: OTLP/HTTP, as every OpenTelemetry exporter and Phoenix's own `register`
//! send it. Protobuf (`application/x-protobuf`) or JSON (`application/json`), gzip or not; the
//! wire types are the OpenTelemetry project's (`opentelemetry-proto`, prost and serde).
//!
//! Answers follow the OTLP/HTTP specification: 200 with `partial_success` naming spans that
//! were refused (a bad id, too many attributes) or kept unlinked (a version runner does not
//! know), 400 for a body that does not decode, 413 over the size limit (after decompression
//! too), 415 for another media type, and 503 with `Retry-After` when the ingest queue is full,
//! so exporters back off and send again. Error bodies are `google.rpc.Status` in the request's
//! encoding. A request is decoded whole before anything is queued: a malformed one stores
//! nothing.
//!
//! This module turns OTLP into `trace::Span`s and hands them to `ingest`; it must not write
//! the store itself, and prompt lookups never wait on it.

use super::Shared;
use super::auth::Caller;
use crate::ingest::Refused;
use crate::trace::{self, Annotation, Span, SpanStatus, Target};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Map, Value};
use std::io::Read;
use std::sync::Arc;

/// Largest OTLP body accepted, compressed or not (an exporter's default batch of 512 LLM
/// spans with their messages is a few MiB).
pub const DEFAULT_TRACE_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Batches decoded at once: half the cores (at least one). Each sender's batch would otherwise
/// take a core of its own, and with every core busy decoding, prompt lookups and the ingest
/// writer wait for one: on two cores, four senders' batches decoded at once doubled the
/// lookups' p99 while ingesting (measured with examples/otlp_load), and took no more spans a
/// second, the writer being the slower end.
static DECODERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

/// `google.rpc.Status`, the body of OTLP/HTTP error answers (the message is all runner sets).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn media_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// An OTLP answer in the request's encoding.
fn answer(encoding: Encoding, status: StatusCode, message: String) -> Response {
    let body = match (status.is_success(), encoding) {
        // A full success leaves `partial_success` unset.
        (true, Encoding::Protobuf) => ExportTraceServiceResponse::default().encode_to_vec(),
        (true, Encoding::Json) => b"{}".to_vec(),
        (false, Encoding::Protobuf) => RpcStatus {
            code: grpc_code(status),
            message,
        }
        .encode_to_vec(),
        (false, Encoding::Json) => {
            serde_json::to_vec(&serde_json::json!({"code": grpc_code(status), "message": message}))
                .unwrap_or_default()
        }
    };
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(encoding.media_type()),
    );
    response
}

/// The gRPC code OTLP pairs with an HTTP status.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// What a batch came to: spans to store, the evaluation events they carried, and what was
/// refused or left unlinked.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub spans: Vec<Span>,
    pub events: Vec<Annotation>,
    pub rejected: i64,
    pub reasons: Vec<String>,
    /// The spans that name a version runner does not know (kept, unlinked).
    pub unknown: Vec<String>,
}

pub(super) async fn export(
    State(shared): State<Arc<Shared>>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let encoding = match media_type.as_deref() {
        Some("application/x-protobuf") | Some("application/protobuf") => Encoding::Protobuf,
        Some("application/json") => Encoding::Json,
        other => {
            return answer(
                Encoding::Json,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "OTLP/HTTP takes application/x-protobuf or application/json, not {}",
                    other.unwrap_or("a body without Content-Type")
                ),
            );
        }
    };
    let limit = shared.trace_body_limit;
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return answer(
                encoding,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over the {limit}-byte limit; send smaller batches"),
            );
        }
        Err(e) => return answer(encoding, e.status(), e.body_text()),
    };
    let gzip = match headers.get(CONTENT_ENCODING).map(|v| v.to_str()) {
        None => false,
        Some(Ok(v)) if v.eq_ignore_ascii_case("gzip") => true,
        Some(Ok(v)) if v.eq_ignore_ascii_case("identity") => false,
        Some(other) => {
            return answer(
                encoding,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {} is not supported: send gzip or nothing",
                    other.unwrap_or("(unreadable)")
                ),
            );
        }
    };
    let sender = caller.actor.clone();
    let worker = Arc::clone(&shared);
    // Decompressing, decoding and resolving versions is CPU and store work: off the async
    // threads, so prompt lookups are not held behind a large batch.
    let span = tracing::Span::current();
    // Held until the batch is decoded: see `DECODERS`.
    let _decoding = DECODERS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            tokio::sync::Semaphore::new((cores / 2).max(1))
        })
        .acquire()
        .await;
    let decoded = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let request = if gzip {
                decode(encoding, &gunzip(&body, limit)?)?
            } else {
                decode(encoding, &body)?
            };
            Ok::<_, (StatusCode, String)>(batch(&worker, request, &sender))
        })
    })
    .await;
    let batch = match decoded {
        Ok(Ok(batch)) => batch,
        Ok(Err((status, message))) => return answer(encoding, status, message),
        Err(e) => {
            return answer(
                encoding,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("decoding failed: {e}"),
            );
        }
    };
    let accepted = batch.spans.len();
    let rejected = batch.rejected;
    let mut message = batch.reasons.join("; ");
    if !batch.unknown.is_empty() {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&format!(
            "{} span(s) name a version this server does not know ({}): kept, unlinked",
            batch.unknown.len(),
            batch
                .unknown
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if accepted > 0 {
        match shared.ingest.spans(batch.spans, batch.events) {
            Ok(()) => {}
            Err(Refused::Full) => {
                tracing::warn!(
                    spans = accepted,
                    "ingest queue full; the sender is told to retry"
                );
                let mut response = answer(
                    encoding,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the ingest queue is full; retry after the time in Retry-After".into(),
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
            Err(Refused::Closed) => {
                return answer(
                    encoding,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down; retry against another".into(),
                );
            }
        }
    }
    tracing::debug!(accepted, rejected, "spans queued");
    let mut response = answer(encoding, StatusCode::OK, String::new());
    if rejected > 0 || !message.is_empty() {
        let partial = ExportTracePartialSuccess {
            rejected_spans: rejected,
            error_message: message,
        };
        let body = match encoding {
            Encoding::Protobuf => ExportTraceServiceResponse {
                partial_success: Some(partial),
            }
            .encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&serde_json::json!({
                "partialSuccess": {
                    "rejectedSpans": partial.rejected_spans,
                    "errorMessage": partial.error_message,
                }
            }))
            .unwrap_or_default(),
        };
        *response.body_mut() = axum::body::Body::from(body);
    }
    response
}

/// A gzip body, decompressed up to `limit` bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    reader.read_to_end(&mut out).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the gzip body does not decompress: {e}"),
        )
    })?;
    if out.len() > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body decompresses to more than the {limit}-byte limit; send smaller batches"
            ),
        ));
    }
    Ok(out)
}

fn decode(
    encoding: Encoding,
    raw: &[u8],
) -> Result<ExportTraceServiceRequest, (StatusCode, String)> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(raw).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the body is not an OTLP ExportTraceServiceRequest: {e}"),
            )
        }),
        Encoding::Json => serde_json::from_slice(raw).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the body is not OTLP JSON: {e}"),
            )
        }),
    }
}

/// The request's spans as runner keeps them, linked to versions where they name one.
pub(super) fn batch(shared: &Shared, request: ExportTraceServiceRequest, sender: &str) -> Batch {
    let mut out = Batch::default();
    for resource_spans in request.resource_spans {
        let resource: Map<String, Value> = resource_spans
            .resource
            .map(|r| attributes(r.attributes))
            .unwrap_or_default();
        let text = |key: &str| resource.get(key).and_then(trace::scalar_text);
        let project = text("openinference.project.name")
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| trace::DEFAULT_PROJECT.to_string());
        let service = text("service.name");
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                match convert(shared, span, &project, service.as_deref(), sender, &mut out) {
                    Ok(span) => out.spans.push(span),
                    Err(reason) => {
                        out.rejected += 1;
                        if out.reasons.len() < 5 && !out.reasons.contains(&reason) {
                            out.reasons.push(reason);
                        }
                    }
                }
            }
        }
    }
    out
}

fn convert(
    shared: &Shared,
    mut span: opentelemetry_proto::tonic::trace::v1::Span,
    project: &str,
    service: Option<&str>,
    sender: &str,
    out: &mut Batch,
) -> Result<Span, String> {
    let trace_id = id_hex(&span.trace_id, 16).ok_or("a span has an invalid trace id")?;
    let span_id = id_hex(&span.span_id, 8).ok_or("a span has an invalid span id")?;
    let parent_id = if span.parent_span_id.is_empty() {
        None
    } else {
        Some(id_hex(&span.parent_span_id, 8).ok_or("a span has an invalid parent span id")?)
    };
    if span.attributes.len() > trace::MAX_ATTRIBUTES {
        return Err(format!(
            "a span has {} attributes, more than the {} accepted",
            span.attributes.len(),
            trace::MAX_ATTRIBUTES
        ));
    }
    // Taken, not copied: a span's attributes are most of its bytes.
    let attrs = attributes(std::mem::take(&mut span.attributes));
    let facts = trace::call_facts(&attrs);
    let link = match trace::claim(&attrs) {
        None => None,
        Some((claim, source)) => match shared.ingest.resolve(&claim, source) {
            Ok(Some(link)) => Some(link),
            Ok(None) => {
                if out.unknown.len() < 20 {
                    out.unknown.push(claim_text(&claim));
                }
                None
            }
            Err(e) => {
                tracing::warn!("cannot resolve a span's version: {e}");
                None
            }
        },
    };
    let status = match span.status.as_ref().map(|s| s.code) {
        Some(2) => SpanStatus::Error,
        Some(1) => SpanStatus::Ok,
        _ => SpanStatus::Unset,
    };
    let exception = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .and_then(|e| {
            attributes(e.attributes.clone())
                .get("exception.message")
                .and_then(trace::scalar_text)
        });
    let error = (status == SpanStatus::Error).then(|| {
        let message = span
            .status
            .as_ref()
            .map(|s| s.message.clone())
            .unwrap_or_default();
        trace::cap(if message.is_empty() {
            exception.as_deref().unwrap_or("error")
        } else {
            &message
        })
    });
    let start_ms = (span.start_time_unix_nano / 1_000_000).min(i64::MAX as u64) as i64;
    let end_ms = (span.end_time_unix_nano / 1_000_000).min(i64::MAX as u64) as i64;
    for event in &span.events {
        if event.name != "gen_ai.evaluation.result" {
            continue;
        }
        let fields = attributes(event.attributes.clone());
        let text = |k: &str| fields.get(k).and_then(trace::scalar_text);
        let Some(name) = text("gen_ai.evaluation.name").filter(|n| !n.is_empty()) else {
            continue;
        };
        let score = fields
            .get("gen_ai.evaluation.score.value")
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
            .filter(|s| s.is_finite());
        let label = text("gen_ai.evaluation.score.label");
        if score.is_none() && label.is_none() {
            continue;
        }
        out.events.push(Annotation {
            target: Target::Span,
            target_id: span_id.clone(),
            name: trace::cap(&name),
            annotator_kind: "LLM".into(),
            label: label.map(|l| trace::cap(&l)),
            score,
            explanation: text("gen_ai.evaluation.explanation").map(|t| trace::cap(&t)),
            metadata: "{}".into(),
            identifier: String::new(),
            source: "otlp".into(),
            time_ms: (event.time_unix_nano / 1_000_000).min(i64::MAX as u64) as i64,
        });
    }
    Ok(Span {
        trace_id,
        span_id,
        parent_id,
        project: trace::cap(project),
        experiment: project.starts_with(trace::EXPERIMENT_PROJECT_PREFIX),
        service: service.map(trace::cap),
        sender: Some(sender.to_string()),
        name: trace::cap(&span.name),
        kind: facts.kind,
        start_ms,
        end_ms: end_ms.max(start_ms),
        status,
        error,
        link,
        model: facts.model.map(|m| trace::cap(&m)),
        input_tokens: facts.input_tokens,
        output_tokens: facts.output_tokens,
        variables: facts
            .variables
            .filter(|v| v.len() <= trace::MAX_TEXT_CHARS * 4),
        input: facts.input,
        output: facts.output,
        attributes: trace::stored_attributes(&attrs),
    })
}

fn claim_text(claim: &trace::Claim) -> String {
    match claim {
        trace::Claim::Id(id) => id.clone(),
        trace::Claim::Number { prompt, number } => format!("{prompt}@v{number}"),
        trace::Claim::Tag { prompt, tag } => format!("{prompt}@{tag}"),
    }
}

/// An id of `len` bytes, not all zero, as lower-case hex.
fn id_hex(bytes: &[u8], len: usize) -> Option<String> {
    (bytes.len() == len && bytes.iter().any(|b| *b != 0)).then(|| crate::model::hex(bytes))
}

/// OTLP attributes as a JSON object (later keys win, as the specification allows).
fn attributes(list: Vec<KeyValue>) -> Map<String, Value> {
    list.into_iter()
        .map(|kv| (kv.key, kv.value.map_or(Value::Null, value)))
        .collect()
}

fn value(any: AnyValue) -> Value {
    match any.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        Some(any_value::Value::IntValue(i)) => Value::from(i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(d).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::ArrayValue(list)) => {
            Value::Array(list.values.into_iter().map(value).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::Object(attributes(list.values)),
        Some(any_value::Value::BytesValue(bytes)) => Value::String(crate::model::hex(&bytes)),
        #[allow(unreachable_patterns)]
        Some(_) => Value::Null,
    }
}
