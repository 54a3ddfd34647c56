//! A chat-completions endpoint for tests that misbehaves on request, on a random loopback port.
//!
//! Raw HTTP/1.1 over tokio, so it can do what a well-behaved framework will not: stall mid-body,
//! drop a connection, send a broken body. A request picks its behaviour with a token in its last
//! user message, `fault=KIND[:N[:SECS]]`; N counts the attempts (per distinct message) that get
//! the fault before the request succeeds. Without a token it echoes the last user message.
//! A message holding `VERDICT <text>` gets `<text>` as the reply (for judge evaluators).
//!
//! Kinds: `429` (Retry-After: SECS), `429date` (Retry-After as an HTTP date), `408`, `500`,
//! `502`, `503`, `504`, `400`, `401`, `403`, `404`, `422`, `308http` (a redirect to its own
//! path), `308https` (a redirect to `https://localhost:9`), `drop` (close without answering),
//! `hang` (never answer: no headers), `hangbody` (headers and half a body, then silence),
//! `slowdrip` (headers, then the body one byte every 50 ms: each read is quick, the whole
//! takes seconds),
//! `huge` (a valid completion of `HUGE` bytes, with its Content-Length), `endless` (a 200 with
//! no length that never stops sending), `badjson`, `nochoices`, `emptychoices`, `nullcontent`.
//!
//! `FaultServer::with_rate` also faults every Nth request (by arrival) that carries no token.
//! Anything but a POST is not logged: `GET …/models` lists `test-model` for the key
//! `LISTED_KEY` and refuses any other (401); any other route is 404.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The one key the model list (`GET …/models`) is given for.
pub const LISTED_KEY: &str = "sk-listed-key";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Since the server started.
    pub at: Duration,
    /// Wall-clock arrival, to compare with a `Retry-After` HTTP date.
    pub wall: SystemTime,
    /// The last user message.
    pub message: String,
    pub authorization: Option<String>,
    /// The fault this request got (decided on arrival), if any.
    pub fault: Option<String>,
    /// The `Retry-After` value sent back, if any.
    pub retry_after: Option<String>,
}

/// Every Nth request without a token gets this fault.
#[derive(Debug, Clone)]
pub struct Rate {
    pub kind: String,
    pub every: usize,
}

struct State {
    started: Instant,
    log: Mutex<Vec<Entry>>,
    attempts: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    arrivals: AtomicUsize,
    rate: Option<Rate>,
}

pub struct FaultServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The longest any stalled answer waits before the server gives up on it; bounded so tests
/// always end.
const STALL: Duration = Duration::from_secs(20);

/// Size of the content `huge` sends (a multiple of 1 MiB): far over anything a chat
/// completion needs.
pub const HUGE: usize = 20 * 1024 * 1024;

/// Between two bytes of a `slowdrip` body.
const DRIP: Duration = Duration::from_millis(50);

impl FaultServer {
    /// Starts on 127.0.0.1 with a free port, answering after `latency`.
    pub fn start(latency: Duration) -> FaultServer {
        FaultServer::launch(latency, None)
    }

    /// As `start`, and every `every`th request (by arrival) without a token gets `kind`.
    pub fn with_rate(latency: Duration, kind: &str, every: usize) -> FaultServer {
        assert!(every > 0);
        FaultServer::launch(
            latency,
            Some(Rate {
                kind: kind.to_string(),
                every,
            }),
        )
    }

    fn launch(latency: Duration, rate: Option<Rate>) -> FaultServer {
        let state = Arc::new(State {
            started: Instant::now(),
            log: Mutex::default(),
            attempts: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            arrivals: AtomicUsize::new(0),
            rate,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                ready_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("ready");
                let started = shared.started;
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let state = shared.clone();
                        tokio::spawn(connection(stream, state, started, latency));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = shutdown_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        let addr = ready_rx.recv().expect("server started");
        FaultServer {
            addr,
            state,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn log(&self) -> Vec<Entry> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests whose last user message contains `needle`.
    pub fn requests_for(&self, needle: &str) -> Vec<Entry> {
        self.log()
            .into_iter()
            .filter(|e| e.message.contains(needle))
            .collect()
    }

    /// Time on the server's clock, to split the log into before and after.
    pub fn now(&self) -> Duration {
        self.state.started.elapsed()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Request {
    /// The request line's method (`POST` for a chat completion) and path.
    method: String,
    path: String,
    body: Vec<u8>,
    authorization: Option<String>,
}

async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let mut length = 0usize;
            let mut authorization = None;
            for line in head.lines().skip(1) {
                if let Some((name, value)) = line.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "authorization" => authorization = Some(value.trim().to_string()),
                        _ => {}
                    }
                }
            }
            let total = end + 4 + length;
            while buffer.len() < total {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            let body = buffer[end + 4..total].to_vec();
            buffer.drain(..total);
            let mut line = head.split_whitespace();
            let method = line.next().unwrap_or("").to_string();
            let path = line.next().unwrap_or("").to_string();
            return Some(Request {
                method,
                path,
                body,
                authorization,
            });
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn last_user_message(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

/// `fault=KIND[:N[:SECS]]` in the message.
fn fault_of(message: &str) -> Option<(String, usize, u64)> {
    let start = message.find("fault=")? + "fault=".len();
    let token: String = message[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let mut parts = token.split(':');
    let kind = parts.next()?.to_string();
    let times = parts
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let secs = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    Some((kind, times, secs))
}

fn response(status: u16, extra_headers: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn completion(text: &str) -> String {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": text.split_whitespace().count()}
    })
    .to_string()
}

fn error_body(message: &str) -> String {
    json!({"error": {"message": message, "type": "test"}}).to_string()
}

async fn connection(mut stream: TcpStream, state: Arc<State>, started: Instant, latency: Duration) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        // Only chat completions are logged. The model list (`GET …/models`) names
        // `test-model` for the key `LISTED_KEY` alone and refuses any other; any other GET is
        // not there.
        if request.method != "POST" {
            let answer = if request.path.ends_with("/models") {
                if request.authorization.as_deref() == Some(&format!("Bearer {LISTED_KEY}")) {
                    let list = json!({"object": "list",
                                      "data": [{"id": "test-model", "object": "model"}]});
                    response(200, "", &list.to_string())
                } else {
                    response(401, "", &error_body("invalid key"))
                }
            } else {
                response(404, "", &error_body("no such route"))
            };
            if stream.write_all(&answer).await.is_err() {
                return;
            }
            continue;
        }
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let keep = answer(&mut stream, &state, started, latency, request).await;
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !keep {
            return;
        }
    }
}

/// Answers one request; false when the connection must close.
async fn answer(
    stream: &mut TcpStream,
    state: &State,
    started: Instant,
    latency: Duration,
    request: Request,
) -> bool {
    let arrived = started.elapsed();
    let wall = SystemTime::now();
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let message = last_user_message(&body);
    let all_text = body.to_string();
    let attempt = {
        let mut attempts = state.attempts.lock().unwrap();
        let n = attempts.entry(message.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let arrival = state.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
    let fault = match fault_of(&message) {
        Some(fault) => Some(fault).filter(|(_, times, _)| attempt <= *times),
        None => state
            .rate
            .as_ref()
            .filter(|rate| arrival.is_multiple_of(rate.every))
            .map(|rate| (rate.kind.clone(), usize::MAX, 1)),
    };
    let retry_after = match fault.as_ref().map(|(k, _, s)| (k.as_str(), *s)) {
        Some(("429", secs)) => Some(secs.to_string()),
        Some(("429date", secs)) => Some(httpdate::fmt_http_date(wall + Duration::from_secs(secs))),
        _ => None,
    };
    // Logged on arrival, so a request left hanging is in the log too.
    state.log.lock().unwrap().push(Entry {
        at: arrived,
        wall,
        message: message.clone(),
        authorization: request.authorization,
        fault: fault.as_ref().map(|(kind, _, _)| kind.clone()),
        retry_after: retry_after.clone(),
    });
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (bytes, close) = match fault.as_ref().map(|(k, _, s)| (k.as_str(), *s)) {
        None => {
            let text = match all_text.find("VERDICT ") {
                Some(at) => {
                    // The verdict runs to the end of its line in the JSON-escaped text.
                    let rest = &all_text[at + "VERDICT ".len()..];
                    let end = rest
                        .find("\\n")
                        .or_else(|| rest.find('"'))
                        .unwrap_or(rest.len());
                    rest[..end].replace("\\\"", "\"")
                }
                None => message.clone(),
            };
            (response(200, "", &completion(&text)), false)
        }
        Some(("429" | "429date", _)) => (
            response(
                429,
                &format!("retry-after: {}\r\n", retry_after.unwrap_or_default()),
                &error_body("slow down"),
            ),
            false,
        ),
        Some((
            code @ ("408" | "500" | "502" | "503" | "504" | "400" | "401" | "403" | "404" | "422"),
            _,
        )) => {
            let status: u16 = code.parse().unwrap();
            (
                response(status, "", &error_body(&format!("fault {code}"))),
                false,
            )
        }
        // A redirect that keeps the method and body: to this server's own path (followed,
        // and answered as the attempt after it), or to https:// (an endpoint moved to TLS).
        Some(("308http", _)) => (
            response(308, "location: /v1/chat/completions?redirected\r\n", ""),
            false,
        ),
        Some(("308https", _)) => (
            response(
                308,
                "location: https://localhost:9/v1/chat/completions\r\n",
                "",
            ),
            false,
        ),
        Some(("drop", _)) => (Vec::new(), true),
        Some(("hang", _)) => {
            tokio::time::sleep(STALL).await;
            (Vec::new(), true)
        }
        Some(("hangbody", _)) => {
            let full = completion(&message);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                full.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&full.as_bytes()[..full.len() / 2]).await;
            let _ = stream.flush().await;
            tokio::time::sleep(STALL).await;
            (Vec::new(), true)
        }
        Some(("slowdrip", _)) => {
            let full = completion(&message);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                full.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let dripping = Instant::now();
            for byte in full.as_bytes() {
                if dripping.elapsed() > STALL || stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                let _ = stream.flush().await;
                tokio::time::sleep(DRIP).await;
            }
            (Vec::new(), true)
        }
        Some(("huge", _)) => {
            // A valid completion whose content is HUGE bytes, streamed in chunks with its
            // Content-Length up front, as a real server would send it.
            let open = r#"{"choices":[{"message":{"role":"assistant","content":""#;
            let close = r#""},"finish_reason":"stop"}]}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{open}",
                open.len() + HUGE + close.len()
            );
            let chunk = vec![b'x'; 1024 * 1024];
            let mut sent = stream.write_all(head.as_bytes()).await.is_ok();
            for _ in 0..HUGE / chunk.len() {
                sent = sent && stream.write_all(&chunk).await.is_ok();
            }
            if sent {
                let _ = stream.write_all(close.as_bytes()).await;
            }
            (Vec::new(), true)
        }
        Some(("endless", _)) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"choices\": [{\"message\": {\"content\": \"";
            let _ = stream.write_all(head.as_bytes()).await;
            let chunk = vec![b'x'; 64 * 1024];
            let sending = Instant::now();
            while sending.elapsed() < STALL && stream.write_all(&chunk).await.is_ok() {}
            (Vec::new(), true)
        }
        Some(("badjson", _)) => (response(200, "", "{\"choices\": [oops"), false),
        Some(("nochoices", _)) => (response(200, "", "{\"id\": \"x\"}"), false),
        Some(("emptychoices", _)) => (response(200, "", "{\"choices\": []}"), false),
        Some(("nullcontent", _)) => (
            response(
                200,
                "",
                r#"{"choices":[{"message":{"role":"assistant","content":null}}]}"#,
            ),
            false,
        ),
        Some((other, _)) => panic!("unknown fault {other}"),
    };
    if !bytes.is_empty() && stream.write_all(&bytes).await.is_err() {
        return false;
    }
    !close
}
