//! The client: the only user of HTTP. OpenAI-compatible chat completions with timeouts, retries,
//! backoff with jitter and `Retry-After`. This file owns the `Client` itself (its configuration,
//! connection pool, pacing by the shared `Throttle`, the send-and-retry loop and one attempt's
//! request and response), the endpoint URL checks and the outcome types (`Completion`,
//! `Failure`); the retry policy lives in `retry`, streamed answers in `sse` and the
//! chat-completions body format in `wire`, and this file must not grow its own copies of them.
//! It must not store, redact or judge answers either: callers do that with what it returns.

mod retry;
mod sse;
mod wire;

pub use retry::{Retries, RetryCause, RetryState, parse_retry_after};
pub use sse::SseParser;
pub use wire::request_body;

use crate::limit::{Reported, Throttle};
use retry::{Attempt, MAX_RETRY_AFTER, RETRYABLE, backoff, retry_cause};
use serde_json::{Value, json};
use sse::{StreamError, read_stream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wire::{error_message, parse_completion};

/// The public OpenAI endpoint, used when neither `--base-url` nor `OPENAI_BASE_URL` is set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A chat completion is text for a person to read: a body past this comes from a broken or
/// hostile server, and reading on would only exhaust memory (an endless body would be bounded
/// by nothing but the timeout).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long the endpoint's model list (`Client::lists_model`) is waited for at most.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's expected completion tokens before any answer has said otherwise.
const DEFAULT_COMPLETION_ESTIMATE: u64 = 256;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub api_key: Option<String>,
    /// Per attempt, covering connect, headers and the whole body.
    pub timeout: Duration,
    pub max_retries: u32,
    /// First backoff step; doubled each retry, capped at `backoff_cap`, with jitter.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Connections kept open for reuse: the run's concurrency (and the most the adaptive
    /// concurrency allows).
    pub pool_size: usize,
    /// `--max-rpm` / `--max-tpm`: the buckets requests are paced by from the start; the
    /// endpoint's `x-ratelimit-*` headers set or tighten them as the run goes.
    pub max_rpm: Option<f64>,
    pub max_tpm: Option<f64>,
}

impl ClientConfig {
    pub fn new(base_url: &str) -> ClientConfig {
        ClientConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: None,
            timeout: Duration::from_secs(60),
            max_retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(20),
            pool_size: 16,
            max_rpm: None,
            max_tpm: None,
        }
    }
}

/// Why a call produced no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 401 / 403: the key is missing or wrong; retrying cannot help.
    Auth,
    /// A status that is not retried, or a retryable one after the last attempt.
    Http,
    Timeout,
    /// The connection dropped, or broke mid-answer: the endpoint is there.
    Connection,
    /// No connection could be made (refused, no route, unknown host). Recorded as
    /// `connection` too; kept apart because before any answer it means a wrong endpoint,
    /// which stops the run, while a dropped connection is one row's fault.
    Unreachable,
    /// The body was not the chat-completion JSON we asked for.
    InvalidResponse,
    /// Not sent: its estimated cost would have taken the run past `--max-cost`.
    Budget,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Auth => "auth",
            FailureKind::Http => "http",
            FailureKind::Timeout => "timeout",
            FailureKind::Connection | FailureKind::Unreachable => "connection",
            FailureKind::InvalidResponse => "invalid_response",
            FailureKind::Budget => "budget",
        }
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub http_status: u16,
    pub attempts: u32,
    /// Of the attempt that answered.
    pub latency_ms: f64,
    /// What a target answered beside its output (`tool_calls`, `metadata`); None from an
    /// endpoint.
    pub extra: Option<crate::model::JsonObject>,
}

/// No answer, as data: the row is recorded with it and the run goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub http_status: Option<u16>,
    pub attempts: u32,
    /// Of the last attempt.
    pub latency_ms: f64,
}

/// The client cannot be built (a setup error, not a row failure).
#[derive(Debug, thiserror::Error)]
#[error("invalid endpoint '{url}': {reason}")]
pub struct ConfigError {
    pub url: String,
    pub reason: String,
}

pub struct Client {
    http: reqwest::Client,
    /// Parsed once: parsing a URL (with IDNA) per request was a measurable share of the
    /// per-row CPU.
    url: reqwest::Url,
    config: ClientConfig,
    retries: Arc<Retries>,
    throttle: Arc<Throttle>,
    /// Mean completion tokens seen so far (a request's estimate when it sets no max_tokens).
    completion_mean: AtomicU64,
    /// An answer came from runner's own mock (its `x-runner-mock` header): nothing is spent.
    mock: Arc<std::sync::atomic::AtomicBool>,
    /// The endpoint is on this machine, where the mock listens: only there is the header
    /// believed, so no remote endpoint or proxy can zero a run's cost or lift its budget.
    loopback: bool,
}

/// `localhost` or a loopback address (`127.0.0.1`, `::1`, without brackets): a name of this
/// machine. An address cannot be rebound.
pub fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` names this machine (see `is_loopback_name`).
fn is_loopback(url: &reqwest::Url) -> bool {
    is_loopback_name(url.host_str().unwrap_or("").trim_matches(['[', ']']))
}

/// Makes ring the process's TLS crypto provider (reqwest is built without one, to keep aws-lc's
/// C build out); every `reqwest::Client` needs it. A provider already installed is kept.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client builder for requests to `url`, with the process's TLS provider installed.
///
/// An `http://` URL needs no certificate, so its client is built without the system's root
/// certificates: reading and parsing them (every file under /etc/ssl/certs) is most of what a
/// one-row run costs besides its request, at every start. Such a client follows no redirect to
/// `https://`, and says so: the request went out in plain text already (with its key), and the
/// URL to give is the `https://` one.
pub fn http_builder(url: &str) -> reqwest::ClientBuilder {
    install_tls();
    let builder = reqwest::Client::builder();
    if !reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "http") || proxied() {
        return builder;
    }
    builder
        .tls_certs_only(std::iter::empty())
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().scheme() == "https" {
                let to = attempt.url().to_string();
                attempt.error(format!(
                    "redirected to {to}: pass the https:// URL itself (this request went out \
                     unencrypted)"
                ))
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else {
                attempt.follow()
            }
        }))
}

/// Whether the environment names a proxy for plain HTTP, which may itself be reached over TLS:
/// then a client keeps the root certificates whatever its URL.
fn proxied() -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// Redirects followed at most, as reqwest's own policy.
const MAX_REDIRECTS: usize = 10;

/// Checks that a base URL can be used, without building a client (which loads the system's
/// root certificates: worth doing once, not to validate a flag).
pub fn check_base_url(base_url: &str) -> Result<(), ConfigError> {
    let refuse = |reason: String| ConfigError {
        url: shown_url(base_url),
        reason,
    };
    let parsed = reqwest::Url::parse(base_url).map_err(|e| refuse(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(refuse("the URL must start with http:// or https://".into()));
    }
    // The base URL is stored with every experiment and shown in reports: a key passed as a
    // query parameter would be kept and printed.
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(refuse(
            "the URL carries a query or fragment (?… or #…); a key belongs in OPENAI_API_KEY"
                .into(),
        ));
    }
    Ok(())
}

/// A URL as an error shows it: user information (`user:password@`) and any query are never
/// repeated, even when the URL does not parse.
pub fn shown_url(url: &str) -> String {
    let (head, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let path = match path.find(['?', '#']) {
        Some(cut) => format!("{}?…", &path[..cut]),
        None => path.to_string(),
    };
    format!("{head}{authority}{path}")
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ConfigError> {
        check_base_url(&config.base_url)?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| ConfigError {
                    url: config.base_url.clone(),
                    reason: "OPENAI_API_KEY holds characters that cannot go in a header".into(),
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = http_builder(&config.base_url)
            .default_headers(headers)
            .pool_max_idle_per_host(config.pool_size.max(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError {
                url: config.base_url.clone(),
                reason: e.to_string(),
            })?;
        let url =
            reqwest::Url::parse(&format!("{}/chat/completions", config.base_url)).map_err(|e| {
                ConfigError {
                    url: config.base_url.clone(),
                    reason: e.to_string(),
                }
            })?;
        let throttle = Arc::new(Throttle::new(
            config.max_rpm,
            config.max_tpm,
            config.pool_size,
        ));
        let loopback = is_loopback(&url);
        Ok(Client {
            http,
            url,
            config,
            retries: Arc::default(),
            throttle,
            completion_mean: AtomicU64::new(DEFAULT_COMPLETION_ESTIMATE),
            mock: Arc::default(),
            loopback,
        })
    }

    /// Whether an answer so far came from runner's own mock, which charges nothing; shared
    /// with the run, which records it once the run ends.
    pub fn mock(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.mock.clone()
    }

    pub fn answered_by_mock(&self) -> bool {
        self.mock.load(Ordering::Relaxed)
    }

    /// The limits this client paces itself by, its adaptive concurrency and their figures.
    pub fn throttle(&self) -> Arc<Throttle> {
        self.throttle.clone()
    }

    /// A request's token cost before it is sent: its text at about four characters a token,
    /// plus what it may generate (`max_tokens`, else the mean completion so far).
    fn estimate_tokens(&self, body: &Value) -> f64 {
        let (prompt, completion) = self.estimate(body);
        prompt + completion
    }

    /// A request's estimated (prompt, completion) tokens, as `estimate_tokens` adds them up.
    pub fn estimate(&self, body: &Value) -> (f64, f64) {
        let mut chars = 0usize;
        if let Some(messages) = body.get("messages").and_then(Value::as_array) {
            for message in messages {
                match message.get("content") {
                    Some(Value::String(text)) => chars += text.len(),
                    Some(other) => chars += other.to_string().len(),
                    None => {}
                }
            }
        }
        let completion = body
            .get("max_tokens")
            .or_else(|| body.get("max_completion_tokens"))
            .and_then(Value::as_f64)
            .unwrap_or_else(|| self.completion_mean.load(Ordering::Relaxed) as f64);
        ((chars as f64 / 4.0).ceil(), completion)
    }

    /// What this client's retries are doing, shared with whoever shows progress.
    pub fn retries(&self) -> Arc<Retries> {
        self.retries.clone()
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// The key this client sends, so that nothing stored can carry it (see `scrub`).
    pub fn api_key(&self) -> Option<&str> {
        self.config.api_key.as_deref()
    }

    /// Whether the endpoint's `GET {base}/models`, asked with this client's key, lists `model`
    /// and, when the client sends a key, refuses (401 or 403) the same request with a key that
    /// cannot be valid: then the key is taken and the model is served, before any chat answer
    /// says so. A list served whatever the key proves nothing of it. Anything else (a refusal,
    /// no such route, a list without the model, a body that is no such list, no answer within
    /// `LIST_TIMEOUT`) is false. The list's rate-limit headers are not read: a route of its own
    /// may be limited otherwise than chat.
    pub async fn lists_model(&self, model: &str) -> bool {
        let url = format!("{}/models", self.config.base_url);
        let wrong_key_refused = async {
            if self.config.api_key.is_none() {
                return true;
            }
            let sent = self
                .http
                .get(&url)
                .header(
                    reqwest::header::AUTHORIZATION,
                    "Bearer runner-checks-a-wrong-key",
                )
                .timeout(self.config.timeout.min(LIST_TIMEOUT))
                .send()
                .await;
            sent.is_ok_and(|r| matches!(r.status().as_u16(), 401 | 403))
        };
        let (listed, refused) = tokio::join!(self.listed(&url, model), wrong_key_refused);
        listed && refused
    }

    /// Whether `GET url`, with this client's key, answers a model list naming `model`.
    async fn listed(&self, url: &str, model: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct List {
            data: Vec<Listed>,
        }
        #[derive(serde::Deserialize)]
        struct Listed {
            id: String,
        }
        let sent = self
            .http
            .get(url)
            .timeout(self.config.timeout.min(LIST_TIMEOUT))
            .send()
            .await;
        let Ok(response) = sent else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let Ok((bytes, false)) = read_body(response).await else {
            return false;
        };
        serde_json::from_slice::<List>(&bytes)
            .is_ok_and(|list| list.data.iter().any(|m| m.id == model))
    }

    /// Sends one chat completion, retrying what is worth retrying.
    pub async fn complete(&self, body: &Value) -> Result<Completion, Failure> {
        self.send(body, None).await
    }

    /// Sends one chat completion asking for a stream (`"stream": true`, usage included), and
    /// hands each piece of the answer to `delta` as it arrives. An endpoint that answers with
    /// one JSON body instead (it does not stream) gives its whole answer as one piece. Retries
    /// as `complete` does, until the first piece has been handed on; after that a broken
    /// stream is a failure, not a retry (the pieces shown cannot be taken back).
    pub async fn complete_streaming(
        &self,
        body: &Value,
        delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Completion, Failure> {
        let mut body = body.clone();
        if let Value::Object(map) = &mut body {
            map.insert("stream".into(), json!(true));
            map.insert("stream_options".into(), json!({"include_usage": true}));
        }
        self.send(&body, Some(delta)).await
    }

    async fn send(
        &self,
        body: &Value,
        mut delta: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<Completion, Failure> {
        let estimate = self.estimate_tokens(body);
        let body = serde_json::to_vec(body).map_err(|e| Failure {
            kind: FailureKind::InvalidResponse,
            message: format!("cannot encode the request: {e}"),
            http_status: None,
            attempts: 0,
            latency_ms: 0.0,
        })?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.throttle.pace(estimate).await;
            let mut shown = false;
            let outcome = match delta.as_deref_mut() {
                Some(sink) => {
                    let mut tracked = |piece: &str| {
                        shown = true;
                        sink(piece)
                    };
                    self.attempt(&body, attempt, Some(&mut tracked)).await
                }
                None => self.attempt(&body, attempt, None).await,
            };
            let outcome = match outcome {
                // Part of the answer is out: a retry would show it again.
                Attempt::Retry { failure, .. } if shown => Attempt::Fail(failure),
                other => other,
            };
            match outcome {
                Attempt::Done(completion) => {
                    if let (Some(p), Some(c)) =
                        (completion.prompt_tokens, completion.completion_tokens)
                    {
                        self.throttle.limits.settle(estimate, (p + c) as f64);
                        // A slow-moving mean: the next estimates follow what answers cost.
                        let mean = self.completion_mean.load(Ordering::Relaxed) as f64;
                        let next = mean * 0.9 + c.max(0) as f64 * 0.1;
                        self.completion_mean
                            .store(next.round() as u64, Ordering::Relaxed);
                    }
                    return Ok(completion);
                }
                Attempt::Fail(failure) => return Err(failure),
                Attempt::Retry {
                    failure,
                    wait_at_least,
                } => {
                    if attempt > self.config.max_retries {
                        return Err(failure);
                    }
                    if wait_at_least > MAX_RETRY_AFTER {
                        return Err(Failure {
                            message: format!(
                                "{} (the server asked to wait {} s, longer than runner waits)",
                                failure.message,
                                wait_at_least.as_secs()
                            ),
                            ..failure
                        });
                    }
                    let wait = backoff(self.config.backoff_base, self.config.backoff_cap, attempt)
                        .max(wait_at_least);
                    let _waiting = self.retries.wait(retry_cause(&failure), wait);
                    let _held = (failure.http_status == Some(429)).then(|| self.throttle.hold());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        body: &[u8],
        attempt: u32,
        delta: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Attempt {
        let started = Instant::now();
        let elapsed = |started: Instant| started.elapsed().as_secs_f64() * 1000.0;
        let sent = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .timeout(self.config.timeout)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            // A refused redirect is refused again at every attempt.
            Err(e) if e.is_redirect() => {
                return Attempt::Fail(transport_failure(&e, attempt, elapsed(started)));
            }
            Err(e) => {
                return Attempt::Retry {
                    failure: transport_failure(&e, attempt, elapsed(started)),
                    wait_at_least: Duration::ZERO,
                };
            }
        };
        let status = response.status().as_u16();
        let reported = Reported::from_headers(|name| {
            response.headers().get(name).and_then(|v| v.to_str().ok())
        });
        self.throttle.answered(status, &reported);
        if self.loopback
            && (200..300).contains(&status)
            && response.headers().contains_key(crate::mock::MOCK_HEADER)
        {
            self.mock.store(true, Ordering::Relaxed);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let event_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let delta = match delta {
            Some(delta) if (200..300).contains(&status) && event_stream => {
                return match read_stream(response, delta).await {
                    Ok(mut completion) => {
                        completion.http_status = status;
                        completion.attempts = attempt;
                        completion.latency_ms = elapsed(started);
                        Attempt::Done(completion)
                    }
                    Err(StreamError::Transport(e)) => Attempt::Retry {
                        failure: transport_failure(&e, attempt, elapsed(started)),
                        wait_at_least: Duration::ZERO,
                    },
                    Err(StreamError::Invalid(message)) => Attempt::Fail(Failure {
                        kind: FailureKind::InvalidResponse,
                        message,
                        http_status: Some(status),
                        attempts: attempt,
                        latency_ms: elapsed(started),
                    }),
                };
            }
            other => other,
        };
        // The per-request timeout set above also bounds this read, so a server that stops
        // sending mid-body times out like one that never answers.
        let (bytes, too_large) = match read_body(response).await {
            Ok(read) => read,
            Err(e) => {
                return Attempt::Retry {
                    failure: transport_failure(&e, attempt, elapsed(started)),
                    wait_at_least: Duration::ZERO,
                };
            }
        };
        let latency_ms = elapsed(started);
        if too_large && (200..300).contains(&status) {
            return Attempt::Fail(Failure {
                kind: FailureKind::InvalidResponse,
                message: format!(
                    "the response body is larger than {} MiB; runner stopped reading it",
                    MAX_BODY >> 20
                ),
                http_status: Some(status),
                attempts: attempt,
                latency_ms,
            });
        }
        if (200..300).contains(&status) {
            return match parse_completion(&bytes) {
                Ok(mut completion) => {
                    completion.http_status = status;
                    completion.attempts = attempt;
                    completion.latency_ms = latency_ms;
                    // Asked to stream, answered whole: the answer is one piece.
                    if let Some(delta) = delta {
                        delta(&completion.text);
                    }
                    Attempt::Done(completion)
                }
                Err(message) => Attempt::Fail(Failure {
                    kind: FailureKind::InvalidResponse,
                    message,
                    http_status: Some(status),
                    attempts: attempt,
                    latency_ms,
                }),
            };
        }
        let failure = Failure {
            kind: if status == 401 || status == 403 {
                FailureKind::Auth
            } else {
                FailureKind::Http
            },
            message: format!("HTTP {status}: {}", error_message(&bytes)),
            http_status: Some(status),
            attempts: attempt,
            latency_ms,
        };
        if RETRYABLE.contains(&status) {
            Attempt::Retry {
                failure,
                wait_at_least: retry_after.unwrap_or(Duration::ZERO),
            }
        } else {
            Attempt::Fail(failure)
        }
    }
}

/// Reads at most `MAX_BODY` bytes of a body; true when there was more (the rest is not read).
async fn read_body(mut response: reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Ok((Vec::new(), true));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

fn transport_failure(e: &reqwest::Error, attempt: u32, latency_ms: f64) -> Failure {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connect() || e.is_redirect() {
        // A redirect refused (to https://, or too many) fails every request alike: the
        // endpoint as given cannot be reached.
        FailureKind::Unreachable
    } else {
        FailureKind::Connection
    };
    // reqwest's top-level message is generic; the innermost cause says what happened.
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let (outer, inner) = (e.to_string(), cause.to_string());
    let message = if e.is_timeout() {
        "timed out".to_string()
    } else if outer == inner {
        outer
    } else {
        format!("{outer}: {inner}")
    };
    Failure {
        kind,
        message,
        http_status: None,
        attempts: attempt,
        latency_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_client_builds_with_the_ring_provider() {
        // Without a crypto provider reqwest cannot build a TLS client at all.
        let client = Client::new(ClientConfig::new("https://api.example.invalid/v1"));
        assert!(client.is_ok());
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn only_an_endpoint_on_this_machine_is_believed_when_it_says_it_is_the_mock() {
        let on = |u: &str| is_loopback(&reqwest::Url::parse(u).unwrap());
        for url in [
            "http://127.0.0.1:8089/v1",
            "http://127.9.9.9/v1",
            "http://localhost:8089/v1",
            "http://LOCALHOST/v1",
            "http://[::1]:8089/v1",
        ] {
            assert!(on(url), "{url}");
        }
        for url in [
            "https://api.openai.com/v1",
            "http://10.0.0.5:8089/v1",
            "http://localhost.example.com/v1",
            "http://[2001:db8::1]/v1",
        ] {
            assert!(!on(url), "{url}");
        }
    }

    #[test]
    fn a_client_needs_an_http_or_https_url() {
        assert!(Client::new(ClientConfig::new("http://127.0.0.1:1")).is_ok());
        assert!(Client::new(ClientConfig::new("ftp://x")).is_err());
        assert!(Client::new(ClientConfig::new("not a url")).is_err());
    }
}
