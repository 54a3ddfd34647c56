//! Phoenix's annotation routes, as its client calls them: `POST /v1/span_annotations` and
//! `POST /v1/trace_annotations` with `{"data": [{name, span_id | trace_id, annotator_kind,
//! result: {label, score, explanation}, metadata, identifier}]}`. With `?sync=true` the answer
//! waits until the annotations are stored and carries their ids, or is 404 naming the spans or
//! traces that do not exist, with nothing stored; without it, the answer is immediate (`{"data":
//! []}`) and annotations of unknown targets are dropped, as Phoenix does.
//!
//! Annotations go through `ingest` behind the spans queued before them, so one sent right after
//! its span's export finds the span. This module validates and translates; it must not write
//! the store itself.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{Shared, json_body, query};
use crate::ingest::Refused;
use crate::trace::{self, ANNOTATOR_KINDS, Annotation, Target};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Annotations accepted in one request at most.
const MAX_ANNOTATIONS: usize = 10_000;
const MAX_NAME_CHARS: usize = 200;

#[derive(Deserialize)]
pub(super) struct SyncQuery {
    sync: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    name: String,
    span_id: Option<String>,
    trace_id: Option<String>,
    annotator_kind: String,
    #[serde(default)]
    result: Option<Outcome>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    identifier: Option<String>,
}

#[derive(Deserialize)]
struct Outcome {
    label: Option<String>,
    score: Option<f64>,
    explanation: Option<String>,
}

pub(super) async fn span_annotations(
    State(shared): State<Arc<Shared>>,
    caller: axum::Extension<Caller>,
    sync: Result<Query<SyncQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    annotate(shared, &caller, Target::Span, sync, body).await
}

pub(super) async fn trace_annotations(
    State(shared): State<Arc<Shared>>,
    caller: axum::Extension<Caller>,
    sync: Result<Query<SyncQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    annotate(shared, &caller, Target::Trace, sync, body).await
}

async fn annotate(
    shared: Arc<Shared>,
    caller: &Caller,
    target: Target,
    sync: Result<Query<SyncQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let sync = match query(sync)?.sync.as_deref() {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
        Some(v) => {
            return Err(ApiError::unprocessable(format!(
                "sync: expected true or false, got '{v}'"
            )));
        }
    };
    let body: Body = json_body(body)?;
    if body.data.len() > MAX_ANNOTATIONS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_ANNOTATIONS} annotations per request"),
        ));
    }
    let now = trace::now_ms();
    let annotations = body
        .data
        .into_iter()
        .enumerate()
        .map(|(index, item)| check(index, item, target, now, &caller.actor))
        .collect::<ApiResult<Vec<Annotation>>>()?;
    if annotations.is_empty() {
        return Ok(Json(json!({"data": []})).into_response());
    }
    let kind = match target {
        Target::Span => "SpanAnnotation",
        Target::Trace => "TraceAnnotation",
    };
    match shared.ingest.annotate(annotations, sync).await {
        Ok(None) => Ok(Json(json!({"data": []})).into_response()),
        Ok(Some(Ok(Ok(ids)))) => {
            let data: Vec<Value> = ids
                .into_iter()
                .map(|id| {
                    let global =
                        base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{id}"));
                    json!({"id": global})
                })
                .collect();
            Ok(Json(json!({"data": data})).into_response())
        }
        Ok(Some(Ok(Err(missing)))) => Err(ApiError::not_found(format!(
            "Could not find {} with IDs: {}",
            match target {
                Target::Span => "spans",
                Target::Trace => "traces",
            },
            missing.join(", ")
        ))),
        Ok(Some(Err(e))) => Err(e.into()),
        Err(Refused::Full) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ingest queue is full; retry shortly",
        )),
        Err(Refused::Closed) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )),
    }
}

fn check(index: usize, item: Item, target: Target, now: i64, actor: &str) -> ApiResult<Annotation> {
    let at = |what: String| ApiError::unprocessable(format!("data[{index}]: {what}"));
    let name = item.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(at(format!("name must be 1 to {MAX_NAME_CHARS} characters")));
    }
    let kind = item.annotator_kind.to_ascii_uppercase();
    if !ANNOTATOR_KINDS.contains(&kind.as_str()) {
        return Err(at(format!(
            "annotator_kind must be HUMAN, LLM or CODE, got '{}'",
            item.annotator_kind
        )));
    }
    let (id, width, field) = match target {
        Target::Span => (item.span_id, 16, "span_id"),
        Target::Trace => (item.trace_id, 32, "trace_id"),
    };
    let id = id
        .map(|i| i.trim().to_ascii_lowercase())
        .ok_or_else(|| at(format!("{field} is required")))?;
    if id.len() != width || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(at(format!(
            "{field} must be {width} hexadecimal digits, got '{id}'"
        )));
    }
    let (label, score, explanation) = match item.result {
        Some(r) => (r.label, r.score, r.explanation),
        None => (None, None, None),
    };
    if label.is_none() && score.is_none() && explanation.is_none() {
        return Err(at(
            "give at least one of result.label, result.score, result.explanation".into(),
        ));
    }
    if score.is_some_and(|s| !s.is_finite()) {
        return Err(at("result.score must be a finite number".into()));
    }
    let mut metadata = match item.metadata {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(at("metadata must be a JSON object".into())),
    };
    metadata
        .entry("runner.sender")
        .or_insert_with(|| Value::String(actor.to_string()));
    let metadata = Value::Object(metadata).to_string();
    if metadata.len() > trace::MAX_TEXT_CHARS {
        return Err(at(format!(
            "metadata is over {} bytes",
            trace::MAX_TEXT_CHARS
        )));
    }
    Ok(Annotation {
        target,
        target_id: id,
        name,
        annotator_kind: kind,
        label: label.map(|l| trace::cap(&l)),
        score,
        explanation: explanation.map(|e| trace::cap(&e)),
        metadata,
        identifier: item
            .identifier
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
        source: "api".into(),
        time_ms: now,
    })
}
