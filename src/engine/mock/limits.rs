//! The mock's own rate limits: per-minute request and token buckets enforced like a hosted
//! API's (a second's worth at once), the admit-or-refuse decision for one request, and the
//! `x-ratelimit-*` and `Retry-After` headers that describe it. It only decides and describes:
//! the server builds the 429 answer and settles the tokens an answer really used, and this
//! module must not read requests or write bodies.

use axum::http::header;
use axum::response::Response;
use std::time::Duration;

/// How much a limit lets through at once: a second's worth, as hosted APIs enforce a per-minute
/// limit over short windows.
pub(super) const MOCK_BURST: Duration = Duration::from_secs(1);

/// The mock's own buckets.
pub(super) struct MockLimits {
    pub(super) requests: Option<crate::limit::Bucket>,
    pub(super) tokens: Option<crate::limit::Bucket>,
}

/// What the `x-ratelimit-*` headers of one answer say.
pub(super) struct LimitHeaders {
    requests: Option<(f64, u64, Duration)>,
    tokens: Option<(f64, u64, Duration)>,
    retry_after: Option<Duration>,
}

impl MockLimits {
    /// Takes one request of `tokens` when both buckets allow it; the headers either way.
    pub(super) fn admit(&mut self, tokens: f64) -> (bool, LimitHeaders) {
        let now = std::time::Instant::now();
        let r = self.requests.as_mut().map(|b| b.clone().try_take(1.0, now));
        let t = self
            .tokens
            .as_mut()
            .map(|b| b.clone().try_take(tokens, now));
        let wait = match (r, t) {
            (Some(Err(a)), Some(Err(b))) => Some(a.max(b)),
            (Some(Err(a)), _) | (_, Some(Err(a))) => Some(a),
            _ => None,
        };
        if wait.is_none() {
            if let Some(b) = self.requests.as_mut() {
                let _ = b.try_take(1.0, now);
            }
            if let Some(b) = self.tokens.as_mut() {
                let _ = b.try_take(tokens, now);
            }
        }
        let describe = |bucket: &mut Option<crate::limit::Bucket>| {
            bucket
                .as_mut()
                .map(|b| (b.per_minute(), b.remaining(now), b.reset_in(now)))
        };
        let headers = LimitHeaders {
            requests: describe(&mut self.requests),
            tokens: describe(&mut self.tokens),
            retry_after: wait,
        };
        (wait.is_none(), headers)
    }
}

impl LimitHeaders {
    pub(super) fn apply(&self, response: &mut Response) {
        let headers = response.headers_mut();
        let mut put = |name: &'static str, value: String| {
            if let Ok(value) = header::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        if let Some((limit, remaining, reset)) = self.requests {
            put("x-ratelimit-limit-requests", format!("{limit}"));
            put("x-ratelimit-remaining-requests", remaining.to_string());
            put(
                "x-ratelimit-reset-requests",
                crate::limit::format_reset(reset),
            );
        }
        if let Some((limit, remaining, reset)) = self.tokens {
            put("x-ratelimit-limit-tokens", format!("{limit}"));
            put("x-ratelimit-remaining-tokens", remaining.to_string());
            put(
                "x-ratelimit-reset-tokens",
                crate::limit::format_reset(reset),
            );
        }
        if let Some(wait) = self.retry_after {
            // Whole seconds, as HTTP's delay-seconds are; the exact wait beside it.
            put(
                "retry-after",
                wait.as_secs_f64().ceil().max(1.0).to_string(),
            );
            put("retry-after-ms", wait.as_millis().max(1).to_string());
        }
    }
}
