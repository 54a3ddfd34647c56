//! Streamed answers: a reply sent as OpenAI streams it, server-sent events of
//! `chat.completion.chunk`s (the role, one word at a time, the finish reason, the usage when
//! asked for, then `data: [DONE]`), paced by the configured chunk interval. It only encodes a
//! reply already chosen: it must not read requests, choose replies or apply rate limits, and
//! the non-streamed bodies stay in `wire`.

use super::wire::Usage;
use axum::body::Bytes;
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A completion as OpenAI streams it: server-sent events of `chat.completion.chunk`s (the role,
/// then one word at a time with the space before it, then the finish reason, then the usage
/// when asked for), `data: [DONE]` at the end, `chunk` apart.
pub(super) fn stream_response(
    seq: u64,
    model: String,
    reply: String,
    usage: Option<Usage>,
    chunk: Duration,
) -> Response {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!("chatcmpl-mock-{seq}");
    let event = |choices: Value, usage: Option<&Usage>| {
        let mut chunk = serde_json::json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = serde_json::to_value(usage).unwrap_or(Value::Null);
        }
        format!("data: {chunk}\n\n")
    };
    let mut events = vec![event(
        serde_json::json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        None,
    )];
    // Each word with the whitespace before it, so the pieces join into the reply exactly.
    let mut start = 0;
    let bytes = reply.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i > start {
            let piece = &reply[start..i];
            events.push(event(
                serde_json::json!([{"index": 0, "delta": {"content": piece}, "finish_reason": null}]),
                None,
            ));
            start = i;
        }
    }
    events.push(event(
        serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        None,
    ));
    if let Some(usage) = &usage {
        events.push(event(serde_json::json!([]), Some(usage)));
    }
    events.push("data: [DONE]\n\n".to_string());
    let stream =
        futures::stream::iter(events.into_iter().enumerate()).then(move |(n, text)| async move {
            if n > 0 && !chunk.is_zero() {
                tokio::time::sleep(chunk).await;
            }
            Ok::<_, std::convert::Infallible>(Bytes::from(text))
        });
    let mut response = Response::new(axum::body::Body::from_stream(stream));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    response
}
