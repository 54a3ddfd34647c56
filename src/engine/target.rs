//! Targets: what answers a row when the thing under test is the team's own application rather
//! than one chat call. `cmd:PROGRAM` is a long-lived program (run by `sh -c`) that reads one
//! JSON object a line on stdin and answers one a line on stdout, several of them for
//! concurrency; `http://…` / `https://…` is a route each row is POSTed to as JSON.
//!
//! A row's request: `{"row_id", "repetition", "variables", "messages", "model", "parameters",
//! "prompt", "version_id", "version", "tag"}`. The answer: `{"output": TEXT or any JSON}`, with
//! optional `"usage": {"prompt_tokens", "completion_tokens"}` (cost and limits count them),
//! `"error": TEXT` (the row is recorded as errored with it), and `tool_calls` / `metadata`,
//! stored with the result as they came (`RunResult::extra`).
//!
//! A program that exits, closes its output, answers something that is not one JSON object a
//! line, or stays silent past the timeout is stopped and replaced, and the row is tried again
//! (up to the run's retries); an HTTP target is retried on 408, 429, 5xx, timeouts and
//! dropped connections, as the endpoint is. A `cmd:` target's environment holds only PATH,
//! HOME, the locale, TMPDIR and the variables named with `--target-env`: never the API key or
//! the store's credentials unless the user names them.

use crate::client::{Completion, Failure, FailureKind};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The longest answer line (or HTTP body) read from a target.
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Lines of a program's stderr kept to say why it stopped.
const STDERR_LINES: usize = 5;
/// Variables every program gets, when they are set.
const BASE_ENV: [&str; 7] = ["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ"];

/// Checks a `--target` spec without starting anything.
pub fn check_spec(spec: &str) -> crate::error::Result<()> {
    let spec = spec.trim();
    let hint = "--target cmd:'python app.py' or --target http://127.0.0.1:8000/run";
    if let Some(program) = spec.strip_prefix("cmd:") {
        if program.trim().is_empty() {
            return Err(
                crate::error::Error::invalid("--target cmd: names no program").with_hint(hint),
            );
        }
        return Ok(());
    }
    match reqwest::Url::parse(spec) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(crate::error::Error::invalid(format!(
            "--target '{spec}' is neither cmd:PROGRAM nor an http(s) URL"
        ))
        .with_hint(hint)),
    }
}

/// Checks a `--target-env` name.
pub fn check_env_name(name: &str) -> crate::error::Result<()> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(crate::error::Error::invalid(format!(
            "--target-env '{name}' is not an environment variable's name"
        ))
        .with_hint("a name such as OPENAI_BASE_URL; its value is read from this environment"))
    }
}

/// Makes this process's memory and environment unreadable by other processes of the same
/// user (Linux: not dumpable, so `/proc/PID/environ` is root's), so a program run as a target
/// cannot read the API key or the store's credentials from its parent either.
fn forbid_reading_this_process() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) changes a flag of this process; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// A run's target.
pub struct Target {
    spec: String,
    kind: Kind,
    timeout: Duration,
    max_retries: u32,
}

enum Kind {
    Http {
        url: reqwest::Url,
        http: reqwest::Client,
    },
    Command {
        program: String,
        env: Vec<(String, String)>,
        idle: Mutex<Vec<Worker>>,
    },
}

/// One running program.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Target {
    /// A target for `spec` (checked by `check_spec`), with the run's timeout and retries, and
    /// for `cmd:` the named variables' values from this environment.
    pub fn new(
        spec: &str,
        timeout: Duration,
        max_retries: u32,
        env_names: &[String],
    ) -> crate::error::Result<Target> {
        check_spec(spec)?;
        let spec = spec.trim().to_string();
        let kind = match spec.strip_prefix("cmd:") {
            Some(program) => {
                forbid_reading_this_process();
                let env = BASE_ENV
                    .iter()
                    .map(|n| n.to_string())
                    .chain(env_names.iter().cloned())
                    .filter_map(|name| std::env::var(&name).ok().map(|value| (name, value)))
                    .collect();
                Kind::Command {
                    program: program.trim().to_string(),
                    env,
                    idle: Mutex::new(Vec::new()),
                }
            }
            None => {
                let http = crate::client::http_builder(&spec)
                    .timeout(timeout)
                    .build()
                    .map_err(|e| crate::error::Error::invalid(format!("--target: {e}")))?;
                let url = reqwest::Url::parse(&spec)
                    .map_err(|e| crate::error::Error::invalid(format!("--target: {e}")))?;
                Kind::Http { url, http }
            }
        };
        Ok(Target {
            spec,
            kind,
            timeout,
            max_retries,
        })
    }

    /// The spec, as the cache keys answers by it.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The URL of an HTTP target (probed before a run starts).
    pub fn url(&self) -> Option<&str> {
        match &self.kind {
            Kind::Http { url, .. } => Some(url.as_str()),
            Kind::Command { .. } => None,
        }
    }

    /// Asks the target for one row's answer.
    pub async fn call(&self, request: &Value) -> Result<Completion, Failure> {
        let mut line = serde_json::to_vec(request).map_err(|e| Failure {
            kind: FailureKind::InvalidResponse,
            message: format!("cannot encode the target's request: {e}"),
            http_status: None,
            attempts: 0,
            latency_ms: 0.0,
        })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = match &self.kind {
                Kind::Http { url, http } => self.post(http, url, &line, attempt, started).await,
                Kind::Command { program, env, idle } => {
                    line.push(b'\n');
                    let outcome = self
                        .exchange(program, env, idle, &line, attempt, started)
                        .await;
                    line.pop();
                    outcome
                }
            };
            match outcome {
                Step::Done(result) => return result,
                Step::Retry(failure) if attempt > self.max_retries => return Err(failure),
                Step::Retry(_) => {
                    let wait = Duration::from_millis(200 * 2u64.pow(attempt.min(5)));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn post(
        &self,
        http: &reqwest::Client,
        url: &reqwest::Url,
        body: &[u8],
        attempt: u32,
        started: Instant,
    ) -> Step {
        let elapsed = || started.elapsed().as_secs_f64() * 1000.0;
        let failure = |kind, message: String, status| Failure {
            kind,
            message,
            http_status: status,
            attempts: attempt,
            latency_ms: elapsed(),
        };
        let sent = http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Step::Retry(failure(
                    FailureKind::Timeout,
                    format!(
                        "the target {} did not answer within {:?}",
                        self.spec, self.timeout
                    ),
                    None,
                ));
            }
            Err(e) if e.is_connect() => {
                return Step::Retry(failure(
                    FailureKind::Unreachable,
                    format!("cannot reach the target {}: {e}", self.spec),
                    None,
                ));
            }
            // A refused redirect (to https://, or too many) is refused again at every attempt.
            Err(e) if e.is_redirect() => {
                return Step::Done(Err(failure(
                    FailureKind::Unreachable,
                    format!("cannot reach the target {}: {e}", self.spec),
                    None,
                )));
            }
            Err(e) => {
                return Step::Retry(failure(
                    FailureKind::Connection,
                    format!("the target {} dropped the request: {e}", self.spec),
                    None,
                ));
            }
        };
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_ANSWER {
                        return Step::Done(Err(failure(
                            FailureKind::InvalidResponse,
                            format!(
                                "the target's answer is larger than {} MiB",
                                MAX_ANSWER >> 20
                            ),
                            Some(status),
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Step::Retry(failure(
                        FailureKind::Connection,
                        format!("the target {} broke off its answer: {e}", self.spec),
                        Some(status),
                    ));
                }
            }
        }
        if status == 408 || status == 429 || status >= 500 {
            return Step::Retry(failure(
                FailureKind::Http,
                format!("the target answered HTTP {status}: {}", snippet(&bytes)),
                Some(status),
            ));
        }
        if !(200..300).contains(&status) {
            return Step::Done(Err(failure(
                FailureKind::Http,
                format!("the target answered HTTP {status}: {}", snippet(&bytes)),
                Some(status),
            )));
        }
        Step::Done(answer(&bytes, status, attempt, elapsed()))
    }

    async fn exchange(
        &self,
        program: &str,
        env: &[(String, String)],
        idle: &Mutex<Vec<Worker>>,
        line: &[u8],
        attempt: u32,
        started: Instant,
    ) -> Step {
        let elapsed = || started.elapsed().as_secs_f64() * 1000.0;
        let pooled = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let fresh = pooled.is_none();
        let mut worker = match pooled {
            Some(worker) => worker,
            None => match spawn(program, env) {
                Ok(worker) => worker,
                Err(e) => {
                    return Step::Done(Err(Failure {
                        kind: FailureKind::Unreachable,
                        message: format!("cannot start the target `{program}`: {e}"),
                        http_status: None,
                        attempts: attempt,
                        latency_ms: elapsed(),
                    }));
                }
            },
        };
        let asked = tokio::time::timeout(self.timeout, worker.ask(line)).await;
        match asked {
            Ok(Ok(reply)) => match answer(&reply, 200, attempt, elapsed()) {
                // Not one JSON object: the program's output is out of step with its requests
                // (a stray print, an answer over two lines). It is replaced and the row retried.
                Err(failure) if failure.kind == FailureKind::InvalidResponse => {
                    let said = worker.stop().await;
                    Step::Retry(Failure {
                        message: format!("{}{said}; it was restarted", failure.message),
                        ..failure
                    })
                }
                outcome => {
                    // More output already waiting after the answer: the next request would read
                    // it as its own answer, so this copy is not used again.
                    if worker.stdout.buffer().is_empty() {
                        idle.lock().unwrap_or_else(|e| e.into_inner()).push(worker);
                    } else {
                        worker.stop().await;
                    }
                    Step::Done(outcome)
                }
            },
            Ok(Err(why)) => {
                let said = worker.stop().await;
                Step::Retry(Failure {
                    // A program that stops before its first answer is as good as missing: if
                    // no row has been answered yet, the run stops rather than fail every row.
                    kind: if fresh {
                        FailureKind::Unreachable
                    } else {
                        FailureKind::Connection
                    },
                    message: format!("the target `{program}` {why}{said}; it was restarted"),
                    http_status: None,
                    attempts: attempt,
                    latency_ms: elapsed(),
                })
            }
            Err(_) => {
                worker.stop().await;
                Step::Retry(Failure {
                    kind: FailureKind::Timeout,
                    message: format!(
                        "the target `{program}` did not answer within {:?}; it was restarted",
                        self.timeout
                    ),
                    http_status: None,
                    attempts: attempt,
                    latency_ms: elapsed(),
                })
            }
        }
    }
}

enum Step {
    Done(Result<Completion, Failure>),
    Retry(Failure),
}

fn spawn(program: &str, env: &[(String, String)]) -> std::io::Result<Worker> {
    let mut command = Command::new("sh");
    command.arg("-c").arg(program);
    // Its own process group, so stopping it stops what it started too.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(err) = child.stderr.take() {
        let kept = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == STDERR_LINES {
                    kept.pop_front();
                }
                kept.push_back(line.chars().take(300).collect());
            }
        });
    }
    Ok(Worker {
        child,
        stdin,
        stdout,
        stderr,
    })
}

impl Worker {
    /// Sends one request line and reads one answer line.
    async fn ask(&mut self, line: &[u8]) -> Result<Vec<u8>, String> {
        self.stdin
            .write_all(line)
            .await
            .map_err(|e| format!("did not take the request ({e})"))?;
        self.stdin
            .flush()
            .await
            .map_err(|e| format!("did not take the request ({e})"))?;
        let mut reply = Vec::new();
        let read = (&mut self.stdout)
            .take(MAX_ANSWER as u64 + 1)
            .read_until(b'\n', &mut reply)
            .await
            .map_err(|e| format!("could not be read ({e})"))?;
        if read == 0 {
            return Err("closed its output".into());
        }
        if reply.last() != Some(&b'\n') {
            return Err(if reply.len() > MAX_ANSWER {
                format!("answered a line longer than {} MiB", MAX_ANSWER >> 20)
            } else {
                "closed its output mid-answer".into()
            });
        }
        Ok(reply)
    }

    /// Stops the program; returns what it last said on stderr, as a clause.
    async fn stop(mut self) -> String {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            // The group `spawn` made: the shell and whatever it started.
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is shared.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        // Its stderr reader may still be passing on the last lines.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let said: Vec<String> = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let exit = match status {
            Ok(Ok(status)) if status.code().is_some() => {
                format!(" (exit {})", status.code().unwrap_or(0))
            }
            _ => String::new(),
        };
        match said.last() {
            Some(last) => format!("{exit}, saying: {last}"),
            None => exit,
        }
    }
}

/// A target's answer as a completion: `output` (text as is, other JSON as its text), `usage`,
/// or `error`.
fn answer(bytes: &[u8], status: u16, attempt: u32, latency_ms: f64) -> Result<Completion, Failure> {
    let invalid = |message: String| Failure {
        kind: FailureKind::InvalidResponse,
        message,
        http_status: Some(status),
        attempts: attempt,
        latency_ms,
    };
    let value: Value = crate::json::from_slice(bytes).map_err(|e| {
        invalid(format!(
            "the target's answer is not JSON ({e}): {}",
            snippet(bytes)
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(invalid(format!(
            "the target's answer is not a JSON object: {}",
            snippet(bytes)
        )));
    };
    match map.get("error") {
        None | Some(Value::Null) => {}
        Some(error) => {
            let text = error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_string);
            return Err(Failure {
                kind: FailureKind::Http,
                message: format!(
                    "the target answered an error: {}",
                    text.chars().take(2_000).collect::<String>()
                ),
                http_status: Some(status),
                attempts: attempt,
                latency_ms,
            });
        }
    }
    let calls = match map.get("tool_calls").filter(|v| !v.is_null()) {
        None => Vec::new(),
        Some(calls) => crate::tool_calls::read(calls)
            .map_err(|e| invalid(format!("the target's \"tool_calls\": {e}")))?,
    };
    let text = match map.get("output") {
        Some(Value::String(text)) => text.clone(),
        // An answer that is only tool calls has no text.
        Some(Value::Null) | None if !calls.is_empty() => String::new(),
        Some(Value::Null) | None => {
            return Err(invalid(
                "the target's answer has no \"output\" (nor an \"error\")".into(),
            ));
        }
        Some(other) => other.to_string(),
    };
    let usage = map.get("usage");
    let tokens = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| usage?.get(*n)?.as_i64())
            .filter(|n| *n >= 0)
    };
    let mut extra = crate::model::JsonObject::new();
    // Tool calls in either form (OpenAI's or `{name, arguments}`), kept in runner's form.
    if !calls.is_empty() {
        extra.insert("tool_calls".into(), crate::tool_calls::to_value(&calls));
    }
    if let Some(metadata) = map.get("metadata").filter(|v| !v.is_null()) {
        extra.insert("metadata".into(), metadata.clone());
    }
    Ok(Completion {
        text,
        finish_reason: None,
        prompt_tokens: tokens(["prompt_tokens", "input_tokens"]),
        completion_tokens: tokens(["completion_tokens", "output_tokens"]),
        http_status: status,
        attempts: attempt,
        latency_ms,
        extra: (!extra.is_empty()).then_some(extra),
    })
}

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        .trim()
        .to_string()
}

/// One row's request to a target.
#[allow(clippy::too_many_arguments)]
pub fn request(
    row_id: &str,
    repetition: usize,
    variables: &crate::model::JsonObject,
    messages: &[crate::model::Message],
    model: &str,
    parameters: &crate::model::JsonObject,
    version: &crate::model::PromptVersion,
    tag: Option<&str>,
) -> Value {
    json!({
        "row_id": row_id,
        "repetition": repetition,
        "variables": variables,
        "messages": messages,
        "model": model,
        "parameters": parameters,
        "prompt": version.prompt,
        "version_id": version.id,
        "version": version.seq,
        "tag": tag,
    })
}
