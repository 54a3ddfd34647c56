//! The mock's HTTP server: the router and its routes (chat completions with and without `/v1`,
//! models, `/healthz`, `/stats`, an OpenAI-style 404 for anything else), the state every request
//! shares and its counters, the accept loop, and the chat handler that reads a request, asks the
//! rules for a reply and the limits for admission, sleeps the latency and answers. It must not
//! grow its own copies of what the other files hold: bodies and error replies are `wire`'s,
//! streamed answers `sse`'s, rule matching `rules`' and rate limits `limits`'.

use super::limits::{MOCK_BURST, MockLimits};
use super::rules::{CompiledRule, choose, compile};
use super::sse::stream_response;
use super::wire::{
    AssistantMessage, ChatRequest, Choice, Completion, CompletionId, Usage, error_response,
    json_response,
};
use super::{MockConfig, MockError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::Serialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The model named by `/v1/models`, and the reply's `model` when the request names none.
const MODEL_ID: &str = "mock";

/// Prompts with large contexts are legitimate test input; axum's 2 MB default would reject them.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// The axum Router serving the mock's routes (rules compiled once, shared via Arc state).
pub fn router(config: MockConfig) -> Result<Router, MockError> {
    let now = std::time::Instant::now();
    let burst = config.burst.unwrap_or(MOCK_BURST);
    let limits = (config.rpm.is_some() || config.tpm.is_some()).then(|| {
        std::sync::Mutex::new(MockLimits {
            requests: config.rpm.map(|r| crate::limit::Bucket::new(r, burst, now)),
            tokens: config.tpm.map(|t| crate::limit::Bucket::new(t, burst, now)),
        })
    });
    let shared = Arc::new(Shared {
        latency: config.latency,
        chunk: config.chunk,
        priced: config.priced,
        rules: compile(&config.rules, None)?,
        stats: Stats::default(),
        limits,
    });
    Ok(Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared))
}

/// Serves on an already-bound listener until `shutdown` resolves. Tests bind 127.0.0.1:0 and read the port from the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: MockConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app =
        router(config).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // Replies are small single writes; Nagle's algorithm would hold them back waiting for an ACK
    // and cap a keep-alive connection at a few dozen requests per second.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

struct Shared {
    latency: Duration,
    chunk: Duration,
    priced: bool,
    rules: Vec<CompiledRule>,
    stats: Stats,
    limits: Option<std::sync::Mutex<MockLimits>>,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Requests answered 429 by the mock's own limits.
    rate_limited: AtomicU64,
}

/// Holds one unit of `in_flight` for as long as a chat request is being handled, including when
/// the client hangs up and hyper drops the handler mid-sleep.
struct InFlight<'a>(&'a Stats);

impl Stats {
    /// Returns the request's 1-based sequence number, used for its completion id.
    fn enter(&self) -> (u64, InFlight<'_>) {
        let seq = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        (seq, InFlight(self))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Every chat answer says it comes from the mock (unless `priced`), so a run records that
/// nothing was spent.
async fn chat(State(shared): State<Arc<Shared>>, body: Result<Bytes, BytesRejection>) -> Response {
    let priced = shared.priced;
    let mut response = answer(shared, body).await;
    if !priced {
        response.headers_mut().insert(
            super::MOCK_HEADER,
            axum::http::HeaderValue::from_static("free"),
        );
    }
    response
}

async fn answer(shared: Arc<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let (seq, _in_flight) = shared.stats.enter();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error_response(rejection.status(), &rejection.body_text()),
    };
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("We could not parse the JSON body of your request: {e}"),
            );
        }
    };
    if request.messages.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
        );
    }

    let last_user = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.text())
        .unwrap_or(Cow::Borrowed(""));

    // The rule decides the latency, so matching happens before the sleep; the reply does not
    // depend on when it is chosen.
    let (chosen, reply) = choose(&shared.rules, &last_user);

    let prompt_tokens: u64 = request.messages.iter().map(|m| m.content.words()).sum();
    let completion_tokens = reply.split_whitespace().count() as u64;
    let mut charged = 0.0;
    let limit_headers = match &shared.limits {
        None => None,
        Some(limits) => {
            let cost = prompt_tokens as f64
                + request
                    .max_tokens
                    .or(request.max_completion_tokens)
                    .unwrap_or(completion_tokens as f64);
            let (admitted, headers) = limits.lock().unwrap_or_else(|p| p.into_inner()).admit(cost);
            if !admitted {
                shared.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit reached for requests. Please try again later.",
                );
                headers.apply(&mut response);
                return response;
            }
            charged = cost;
            Some(headers)
        }
    };
    // What the answer really used is known now: what was held for max_tokens beyond it goes
    // back, as a hosted API settles a request's tokens once it is answered.
    if let Some(limits) = &shared.limits {
        let used = (prompt_tokens + completion_tokens) as f64;
        if let Some(bucket) = limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tokens
            .as_mut()
        {
            bucket.adjust(charged - used, std::time::Instant::now());
        }
    }

    let latency = chosen.and_then(|r| r.latency).unwrap_or(shared.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    if let Some(status) = chosen.and_then(|r| r.status) {
        return error_response(status, &reply);
    }

    let tool_calls = chosen.and_then(|r| r.tool_calls(&last_user, seq));
    if request.stream && tool_calls.is_some() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the mock streams text answers only, and the rule this message matched answers with tool calls",
        );
    }

    if request.stream {
        let usage = request
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
            .then_some(Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
            });
        let model = request.model.as_deref().unwrap_or(MODEL_ID).to_string();
        let mut response = stream_response(seq, model, reply.into_owned(), usage, shared.chunk);
        if let Some(headers) = limit_headers {
            headers.apply(&mut response);
        }
        return response;
    }

    let completion = Completion {
        id: CompletionId(seq),
        object: "chat.completion",
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        model: request.model.as_deref().unwrap_or(MODEL_ID),
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                // An answer of tool calls alone has no content, as OpenAI sends it.
                content: (tool_calls.is_none() || !reply.is_empty()).then_some(&*reply),
                tool_calls: tool_calls.as_deref(),
            },
            finish_reason: if tool_calls.is_some() {
                "tool_calls"
            } else {
                "stop"
            },
        }],
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        },
    };
    let mut response = json_response(StatusCode::OK, &completion);
    if let Some(headers) = limit_headers {
        headers.apply(&mut response);
    }
    response
}

async fn models() -> Response {
    #[derive(Serialize)]
    struct Model {
        id: &'static str,
        object: &'static str,
        // Fixed, so that the listing is as deterministic as the completions.
        created: u64,
        owned_by: &'static str,
    }
    #[derive(Serialize)]
    struct List {
        object: &'static str,
        data: [Model; 1],
    }
    let list = List {
        object: "list",
        data: [Model {
            id: MODEL_ID,
            object: "model",
            created: 0,
            owned_by: "runner",
        }],
    };
    json_response(StatusCode::OK, &list)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    #[derive(Serialize)]
    struct Snapshot {
        requests: u64,
        in_flight: u64,
        max_in_flight: u64,
        rate_limited: u64,
    }
    let s = &shared.stats;
    let snapshot = Snapshot {
        requests: s.requests.load(Ordering::Relaxed),
        in_flight: s.in_flight.load(Ordering::Relaxed),
        max_in_flight: s.max_in_flight.load(Ordering::Relaxed),
        rate_limited: s.rate_limited.load(Ordering::Relaxed),
    };
    json_response(StatusCode::OK, &snapshot)
}

/// A misconfigured base URL should fail the way it fails against OpenAI: a 404 with an error
/// body naming the URL, rather than an empty 404 the client has to guess about.
async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({method} {})", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::{Rule, load_rules};
    use serde_json::{Value, json};
    use std::time::Instant;
    use tokio::sync::oneshot;

    struct TestServer {
        base: String,
        client: reqwest::Client,
        shutdown: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl TestServer {
        async fn start(config: MockConfig) -> TestServer {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            let port = listener.local_addr().expect("local addr").port();
            let (shutdown, stop) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, config, async {
                let _ = stop.await;
            }));
            TestServer {
                base: format!("http://127.0.0.1:{port}"),
                client: {
                    crate::client::install_tls();
                    reqwest::Client::new()
                },
                shutdown,
                task,
            }
        }

        async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
            let response = self
                .client
                .post(format!("{}{path}", self.base))
                .json(body)
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (status, response.json().await.expect("json body"))
        }

        async fn chat(&self, body: &Value) -> (u16, Value) {
            self.post("/v1/chat/completions", body).await
        }

        async fn get(&self, path: &str) -> (u16, String) {
            let response = self
                .client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (status, response.text().await.expect("text body"))
        }

        async fn stop(self) {
            let _ = self.shutdown.send(());
            self.task
                .await
                .expect("server task")
                .expect("server result");
        }
    }

    fn user(content: &str) -> Value {
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": content}]})
    }

    fn rule(pattern: &str, reply: &str) -> Rule {
        Rule {
            pattern: pattern.to_string(),
            reply: Some(reply.to_string()),
            tool_calls: None,
            status: None,
            latency_ms: None,
        }
    }

    fn content(body: &Value) -> &str {
        body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content string")
    }

    #[tokio::test]
    async fn echoes_the_last_user_message_with_word_counts() {
        let server = TestServer::start(MockConfig::default()).await;
        let request = json!({
            "model": "gpt-test",
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": null},
                {"role": "user", "content": "  hello   there\nworld "}
            ]
        });
        let (status, body) = server.chat(&request).await;
        assert_eq!(status, 200);
        assert!(
            body["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("chatcmpl-mock-"))
        );
        assert_eq!(body["object"], "chat.completion");
        assert!(body["created"].as_u64().is_some_and(|c| c > 1_600_000_000));
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(
            body["choices"],
            json!([{
                "index": 0,
                "message": {"role": "assistant", "content": "  hello   there\nworld "},
                "finish_reason": "stop"
            }])
        );
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11})
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn model_defaults_to_mock() {
        let server = TestServer::start(MockConfig::default()).await;
        let (status, body) = server
            .chat(&json!({"messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["model"], "mock");
        server.stop().await;
    }

    #[tokio::test]
    async fn joins_the_text_parts_of_list_content() {
        let server = TestServer::start(MockConfig::default()).await;
        let request = json!({
            "model": "gpt-test",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "first part"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "second"}
            ]}]
        });
        let (status, body) = server.chat(&request).await;
        assert_eq!(status, 200);
        assert_eq!(content(&body), "first part\nsecond");
        assert_eq!(body["usage"]["prompt_tokens"], 3);
        assert_eq!(body["usage"]["completion_tokens"], 3);
        server.stop().await;
    }

    #[tokio::test]
    async fn first_matching_rule_wins_and_expands_captures() {
        let config = MockConfig {
            chunk: std::time::Duration::ZERO,
            rules: vec![
                rule(
                    r"^weather in (?P<city>\w+) on (\w+)",
                    "Sunny in ${city} on $2.",
                ),
                rule("weather", "never reached for the message above"),
                rule("price", "It costs $$5."),
            ],
            ..MockConfig::default()
        };
        let server = TestServer::start(config).await;
        let (_, body) = server.chat(&user("weather in Oslo on Monday?")).await;
        assert_eq!(content(&body), "Sunny in Oslo on Monday.");
        assert_eq!(body["usage"]["completion_tokens"], 5);
        let (_, body) = server.chat(&user("what is the price")).await;
        assert_eq!(content(&body), "It costs $5.");
        let (_, body) = server.chat(&user("tell me the weather")).await;
        assert_eq!(content(&body), "never reached for the message above");
        let (_, body) = server.chat(&user("no rule for this")).await;
        assert_eq!(content(&body), "no rule for this");
        server.stop().await;
    }

    #[tokio::test]
    async fn rules_match_only_the_last_user_message() {
        let config = MockConfig {
            chunk: std::time::Duration::ZERO,
            rules: vec![rule("secret", "matched")],
            ..MockConfig::default()
        };
        let server = TestServer::start(config).await;
        let request = json!({"messages": [
            {"role": "system", "content": "secret"},
            {"role": "user", "content": "secret question"},
            {"role": "assistant", "content": "secret answer"},
            {"role": "user", "content": "plain"}
        ]});
        let (_, body) = server.chat(&request).await;
        assert_eq!(content(&body), "plain");
        server.stop().await;
    }

    #[tokio::test]
    async fn loads_a_yaml_rules_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rules.yaml");
        std::fs::write(
            &path,
            "- pattern: '^capital of (\\w+)'\n  reply: 'The capital of $1 is Paris.'\n\
             - pattern: down\n  reply: overloaded\n  status: 503\n  latency_ms: 5\n",
        )
        .expect("write rules");
        let rules = load_rules(&path).expect("load yaml");
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].status, Some(503));
        assert_eq!(rules[1].latency_ms, Some(5));
        let server = TestServer::start(MockConfig {
            chunk: std::time::Duration::ZERO,
            rules,
            ..MockConfig::default()
        })
        .await;
        let (status, body) = server.chat(&user("capital of France")).await;
        assert_eq!(status, 200);
        assert_eq!(content(&body), "The capital of France is Paris.");
        server.stop().await;
    }

    #[tokio::test]
    async fn loads_a_json_rules_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rules.json");
        std::fs::write(
            &path,
            r#"[{"pattern": "(?i)hello", "reply": "Hi! How can I help?"}]"#,
        )
        .expect("write rules");
        let rules = load_rules(&path).expect("load json");
        let server = TestServer::start(MockConfig {
            chunk: std::time::Duration::ZERO,
            rules,
            ..MockConfig::default()
        })
        .await;
        let (status, body) = server.chat(&user("HELLO there")).await;
        assert_eq!(status, 200);
        assert_eq!(content(&body), "Hi! How can I help?");
        assert_eq!(body["usage"]["completion_tokens"], 5);
        server.stop().await;
    }

    #[tokio::test]
    async fn status_rule_answers_with_an_openai_error() {
        let mut failing = rule("overload", "The engine is currently overloaded.");
        failing.status = Some(503);
        let mut limited = rule("limit", "");
        limited.status = Some(429);
        let server = TestServer::start(MockConfig {
            chunk: std::time::Duration::ZERO,
            rules: vec![failing, limited],
            ..MockConfig::default()
        })
        .await;
        let (status, body) = server.chat(&user("overload me")).await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            json!({"error": {
                "message": "The engine is currently overloaded.",
                "type": "server_error",
                "param": null,
                "code": null
            }})
        );
        let (status, body) = server.chat(&user("limit me")).await;
        assert_eq!(status, 429);
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["message"], "Too Many Requests");
        server.stop().await;
    }

    #[tokio::test]
    async fn malformed_requests_get_400_in_openai_shape() {
        let server = TestServer::start(MockConfig::default()).await;
        let url = format!("{}/v1/chat/completions", server.base);
        let bad_bodies = [
            "{not json",
            r#"{"model": "gpt-test"}"#,
            r#"{"messages": "hello"}"#,
            r#"{"messages": []}"#,
            r#"{"messages": [{"role": "user", "content": 42}]}"#,
        ];
        for bad in bad_bodies {
            let response = server
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(bad)
                .send()
                .await
                .expect("send");
            assert_eq!(response.status().as_u16(), 400, "body {bad}");
            let body: Value = response.json().await.expect("json error body");
            let error = &body["error"];
            assert!(
                error["message"].as_str().is_some_and(|m| !m.is_empty()),
                "body {bad}"
            );
            assert_eq!(error["type"], "invalid_request_error");
            assert_eq!(error["param"], Value::Null);
            assert_eq!(error["code"], Value::Null);
        }
        let (_, body) = server.post("/v1/chat/completions", &json!({})).await;
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("messages"))
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn serves_chat_with_and_without_the_v1_prefix() {
        let server = TestServer::start(MockConfig::default()).await;
        for path in ["/v1/chat/completions", "/chat/completions"] {
            let (status, body) = server.post(path, &user("ping")).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(content(&body), "ping", "{path}");
        }
        let (status, body) = server.post("/v2/chat/completions", &user("ping")).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        server.stop().await;
    }

    #[tokio::test]
    async fn lists_the_mock_model_and_reports_health() {
        let server = TestServer::start(MockConfig::default()).await;
        for path in ["/v1/models", "/models"] {
            let (status, text) = server.get(path).await;
            assert_eq!(status, 200, "{path}");
            let body: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(body["object"], "list");
            assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
            assert_eq!(body["data"][0]["id"], "mock");
            assert_eq!(body["data"][0]["object"], "model");
        }
        assert_eq!(server.get("/healthz").await, (200, "ok".to_string()));
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stats_count_concurrent_requests() {
        const N: u64 = 8;
        let mut slow = rule("slow", "done");
        // Long enough for all N requests to be in flight together; only counts are asserted.
        slow.latency_ms = Some(300);
        let server = Arc::new(
            TestServer::start(MockConfig {
                chunk: std::time::Duration::ZERO,
                rules: vec![slow],
                ..MockConfig::default()
            })
            .await,
        );
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..N {
            let server = Arc::clone(&server);
            tasks.spawn(async move { server.chat(&user("slow please")).await });
        }
        while let Some(result) = tasks.join_next().await {
            let (status, body) = result.expect("request task");
            assert_eq!(status, 200);
            assert_eq!(content(&body), "done");
        }
        let (status, text) = server.get("/stats").await;
        assert_eq!(status, 200);
        let stats: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            stats,
            json!({"requests": N, "in_flight": 0, "max_in_flight": N, "rate_limited": 0})
        );
        let server = Arc::into_inner(server).expect("sole owner");
        server.stop().await;
    }

    #[tokio::test]
    async fn latency_is_honoured() {
        let mut slower = rule("slower", "late");
        slower.latency_ms = Some(150);
        let server = TestServer::start(MockConfig {
            chunk: std::time::Duration::ZERO,
            latency: Duration::from_millis(100),
            rules: vec![slower],
            ..Default::default()
        })
        .await;
        // Lower bounds only: a loaded machine may be slower, never faster.
        let start = Instant::now();
        let (status, _) = server.chat(&user("quick")).await;
        assert_eq!(status, 200);
        assert!(start.elapsed() >= Duration::from_millis(100));
        let start = Instant::now();
        let (_, body) = server.chat(&user("slower")).await;
        assert_eq!(content(&body), "late");
        assert!(start.elapsed() >= Duration::from_millis(150));
        server.stop().await;
    }

    #[test]
    fn router_rejects_invalid_rules_built_in_code() {
        let config = MockConfig {
            chunk: std::time::Duration::ZERO,
            rules: vec![rule("ok", "ok"), rule("ok", "ok"), rule("[z-a]", "x")],
            ..MockConfig::default()
        };
        let err = router(config).expect_err("invalid regex");
        assert!(matches!(
            err,
            MockError::Rule {
                index: 2,
                path: None,
                ..
            }
        ));
        assert!(err.to_string().contains("rules[2]"));
    }

    #[tokio::test]
    async fn same_request_gets_the_same_reply() {
        let server = TestServer::start(MockConfig {
            chunk: std::time::Duration::ZERO,
            rules: vec![rule(r"(\d+) \+ (\d+)", "$1 plus $2")],
            ..MockConfig::default()
        })
        .await;
        let request = json!({"model": "m", "messages": [
            {"role": "system", "content": "Be exact."},
            {"role": "user", "content": "what is 2 + 3"}
        ]});
        let (_, mut first) = server.chat(&request).await;
        let (_, mut second) = server.chat(&request).await;
        assert_ne!(first["id"], second["id"]);
        for body in [&mut first, &mut second] {
            let object = body.as_object_mut().expect("object");
            object.remove("id");
            object.remove("created");
        }
        assert_eq!(first, second);
        assert_eq!(content(&first), "2 plus 3");
        server.stop().await;
    }
}
