//! One span per HTTP request: its id (the caller's `X-Request-Id` when plain, else a new one,
//! sent back in the answer), method and path, and one log line when it is answered, with the
//! status and the time taken. Every log line written while the request is served (a refusal,
//! a tag moved from the web UI, a store failure) carries the span's fields.
//!
//! This layer logs and labels; it decides nothing about the request and reads nothing from
//! its body, and it never logs the query string (a login's `next`, a filter) or a header value.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The name of the header that carries the request id both ways.
pub const REQUEST_ID: &str = "x-request-id";

pub async fn request(request: Request, next: Next) -> Response {
    let offered = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    let id = crate::logging::request_id(offered);
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    let ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, ms, "answered");
        } else {
            tracing::info!(status, ms, "answered");
        }
    });
    response
}
