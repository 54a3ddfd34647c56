//! A store behind `runner serve`: `--db https://runner.example.com` (or `http://` on
//! loopback). Every store call is one request to the server's store route
//! (`POST /v1/store/{op}`, a JSON array of the call's arguments), answered with the call's value
//! or the very `StoreError` the server's store raised; the server checks the caller's token and
//! role on each, and records the token's name as the actor of every write. Nothing above this
//! module knows the store is remote, with one exception that is the point of a remote store: a
//! promotion's tag move, which the server evaluates itself (`POST /v1/promotions`).
//!
//! Calls that hand the store a callback run it here: a version or dataset builder sees the
//! latest version read first, and the write goes through only if that is still the latest
//! (`Raced` otherwise, after a few tries); visitors get the whole answer, then are called in
//! order.
//!
//! Reaching the server: a request that could not connect is tried again with backoff for up
//! to a minute once the server has answered before (a server restarting under a running
//! experiment), and fails at once (exit 3, with the URL) when it never answered. A write is
//! sent once: only a refused connection, which the server never saw, is sent again.

use super::*;
use crate::model::{DatasetEntry, DatasetVersion, TaskEvaluation, TaskExperiment, TaskRun};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The version of the store protocol: the server refuses another, naming both.
pub const PROTOCOL: u32 = 1;

/// The header a request names its protocol in.
pub const PROTOCOL_HEADER: &str = "x-runner-store-protocol";

/// How long a call waits for its answer (a large experiment's outcomes can take a while).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a call keeps trying to reach a server that answered before.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// How often a builder is run again after another writer got in first (each after a short
/// random pause, so that writers racing for one prompt spread out).
const RACE_TRIES: usize = 100;

fn pause_after_race() {
    std::thread::sleep(Duration::from_millis(fastrand::u64(1..=20)));
}

/// True when `location` is a runner server's URL.
pub fn is_url(location: &Path) -> bool {
    location
        .to_str()
        .is_some_and(|t| t.starts_with("http://") || t.starts_with("https://"))
}

/// What the server says about itself (`GET /v1/store`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    pub runner: String,
    pub protocol: u32,
    pub schema: i64,
    /// The token's name and role as the server sees them.
    pub actor: String,
    pub role: String,
}

/// A failed call as the server sends it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub store_error: StoreError,
}

pub struct RemoteStore {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    /// Runs the requests; a call waits for its answer on the calling thread.
    runtime: Option<tokio::runtime::Runtime>,
    /// The server answered at least once (so a refused connection is a restart, not a typo).
    reached: AtomicBool,
    hello: Hello,
}

impl Drop for RemoteStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl RemoteStore {
    /// Connects to the server at `url` with the token `credentials::token_for` finds, and
    /// checks that both speak the same store protocol and the token is accepted.
    pub fn open(url: &str) -> Result<RemoteStore> {
        let base = url.trim_end_matches('/');
        let token = credentials::token_for(base).map_err(|reason| StoreError::Unauthorized {
            location: base.to_string(),
            reason,
        })?;
        RemoteStore::open_with(url, token)
    }

    /// `open` with the token given (`runner login` checks one before it keeps it).
    pub fn open_with(url: &str, token: Option<String>) -> Result<RemoteStore> {
        let base = url.trim_end_matches('/').to_string();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("runner-remote")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unreachable {
                location: base.clone(),
                reason: format!("cannot start the client: {e}"),
            })?;
        let client = {
            let _inside = runtime.enter();
            crate::client::http_builder(&base)
                .timeout(CALL_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(256)
                .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| StoreError::Unreachable {
                    location: base.clone(),
                    reason: e.to_string(),
                })?
        };
        let mut store = RemoteStore {
            base,
            token,
            client,
            runtime: Some(runtime),
            reached: AtomicBool::new(false),
            hello: Hello {
                runner: String::new(),
                protocol: PROTOCOL,
                schema: 0,
                actor: String::new(),
                role: String::new(),
            },
        };
        store.hello = store.fetch_hello()?;
        if store.hello.protocol != PROTOCOL {
            return Err(StoreError::Protocol {
                location: store.base.clone(),
                reason: format!(
                    "it is runner {} speaking store protocol {}, this is runner {} speaking {}",
                    store.hello.runner,
                    store.hello.protocol,
                    env!("CARGO_PKG_VERSION"),
                    PROTOCOL
                ),
            });
        }
        Ok(store)
    }

    /// Who the server takes this client for.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The server's address, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn fetch_hello(&self) -> Result<Hello> {
        let actor = credentials::actor();
        let reply = self.send(|client| {
            let mut request = client
                .get(format!("{}/v1/store", self.base))
                .header(PROTOCOL_HEADER, PROTOCOL.to_string());
            if let Some(actor) = &actor {
                request = request.header("x-runner-actor", actor.as_str());
            }
            self.authorised(request)
        })?;
        self.read(reply)
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request (built afresh for each try) and waits for its answer; a connection the
    /// server never accepted is tried again while it may be restarting.
    fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes)> {
        self.send_retrying(build, false)
    }

    /// `send`; with `repeatable`, a request whose answer was lost (the server stopped while it
    /// worked) is sent again too: a read, or a write that leaves the store as it is when it
    /// comes twice.
    fn send_retrying(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        repeatable: bool,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes)> {
        let runtime = self.runtime.as_ref().expect("open until dropped");
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let request = build(&self.client);
            let answer = super::postgres::pool::block(runtime.spawn(async move {
                let reply = request.send().await?;
                let status = reply.status();
                let body = reply.bytes().await?;
                Ok::<_, reqwest::Error>((status, body))
            }))
            .map_err(|e| StoreError::Unreachable {
                location: self.base.clone(),
                reason: format!("the request was lost: {e}"),
            })?;
            match answer {
                Ok((status, body)) if status == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    if started.elapsed() < RECONNECT_FOR {
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    return Ok((status, body));
                }
                Ok(answer) => {
                    self.reached.store(true, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(e)
                    if (e.is_connect() || (repeatable && !e.is_builder()))
                        && self.reached.load(Ordering::Relaxed)
                        && started.elapsed() < RECONNECT_FOR =>
                {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    let mut reason = e.to_string();
                    let mut cause = std::error::Error::source(&e);
                    while let Some(c) = cause {
                        reason.push_str(": ");
                        reason.push_str(&c.to_string());
                        cause = c.source();
                    }
                    return Err(StoreError::Unreachable {
                        location: self.base.clone(),
                        reason,
                    });
                }
            }
        }
    }

    /// The value of an answer, or the error it carries.
    fn read<R: DeserializeOwned>(
        &self,
        (status, body): (reqwest::StatusCode, bytes::Bytes),
    ) -> Result<R> {
        let protocol = |reason: String| StoreError::Protocol {
            location: self.base.clone(),
            reason,
        };
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| protocol(format!("an answer that is not what was asked for ({e})")));
        }
        if let Ok(failure) = serde_json::from_slice::<Failure>(&body) {
            return Err(failure.store_error);
        }
        // Not the store's own error: the server's (authentication, a size limit, a route this
        // server does not have).
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("error")
                    .and_then(|e| {
                        e.as_str().map(str::to_string).or_else(|| {
                            e.get("message")
                                .and_then(|m| m.as_str())
                                .map(str::to_string)
                        })
                    })
                    .or_else(|| {
                        v.get("message")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    })
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_string()
            });
        Err(match status.as_u16() {
            401 => StoreError::Unauthorized {
                location: self.base.clone(),
                reason: message,
            },
            403 => StoreError::Forbidden {
                needs: needed_role(&message),
                reason: message,
            },
            404 => protocol(format!(
                "404 Not Found: it may not be a runner server, or an older one without the store route ({message})"
            )),
            code => protocol(format!("HTTP {code}: {message}")),
        })
    }

    /// One store call: `op` with its arguments, answered with its value.
    fn call<A: Serialize, R: DeserializeOwned>(&self, op: &str, args: &A) -> Result<R> {
        let body = serde_json::to_vec(args).map_err(|e| StoreError::Protocol {
            location: self.base.clone(),
            reason: format!("cannot encode the call {op}: {e}"),
        })?;
        let body = bytes::Bytes::from(body);
        let url = format!("{}/v1/store/{op}", self.base);
        let actor = credentials::actor();
        let reply = self.send_retrying(
            |client| {
                let mut request = client
                    .post(&url)
                    .header(PROTOCOL_HEADER, PROTOCOL.to_string())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                if let Some(actor) = &actor {
                    request = request.header("x-runner-actor", actor.as_str());
                }
                self.authorised(request)
            },
            repeatable(op),
        )?;
        self.read(reply)
    }
}

/// The calls that read prompts (what an application's ingest token may call too).
pub const PROMPT_READS: &[&str] = &[
    "version",
    "version_by_id",
    "versions",
    "prompts_page",
    "tags",
    "tag",
    "tag_target",
    "latest_target",
    "version_tags",
    "prompt_tags",
    "history",
    "prompt",
];

/// Every other call that only reads.
pub const READS: &[&str] = &[
    "archive",
    "archived_prompts",
    "experiment",
    "experiments",
    "matching",
    "visit_outcomes",
    "verdicts",
    "row_texts",
    "visit_successes",
    "summary",
    "tokens",
    "visit_results",
    "fingerprint",
    "visit_cache",
    "cached_response",
    "work_counts",
    "lease_owners",
    "span",
    "visit_spans",
    "scored_spans",
    "visit_annotations",
    "span_annotations",
    "count_spans",
    "count_unlinked",
    "lookups",
    "rollouts",
    "rollout_now",
    "dataset_entries",
    "dataset_entry",
    "dataset_versions_of",
    "dataset_version",
    "datasets",
    "dataset_versions",
    "dataset_content",
    "dataset_by_hash",
    "task_experiment",
    "task_experiments",
    "task_runs",
    "task_run",
    "task_evaluations",
];

/// Calls that may be sent again when their answer was lost: reads, and writes that leave the
/// store as it is the second time (a successful result is never replaced; a lease renewed
/// twice is renewed; an experiment finished twice is finished).
fn repeatable(op: &str) -> bool {
    // The writes, and the admin's reads of tokens.
    const TWICE_ALIKE: &[&str] = &[
        "write_results",
        "complete_items",
        "finish_experiment",
        "mark_mock",
        "reopen_experiment",
        "renew_lease",
        "release_lease",
        "renew_items",
        "release_items",
        "finish_work",
        "restore_cache",
        "write_spans",
        "api_tokens",
        "token_by_digest",
    ];
    PROMPT_READS.contains(&op) || READS.contains(&op) || TWICE_ALIKE.contains(&op)
}

/// A promotion the server evaluates (`POST /v1/promotions`): the experiments that are its
/// evidence, named by id, and the criteria. The server reads both experiments from its store,
/// checks they are of the versions `from` and `to` point at now, runs the gate with its own
/// code (under its own `[gate]` as a floor the request cannot lower), and moves the tag only
/// if it passes. A client sends no verdict.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PromotionCall {
    pub prompt: String,
    pub from: String,
    pub to: String,
    pub candidate_experiment: String,
    pub baseline_experiment: Option<String>,
    pub policy: crate::gate::Policy,
    pub confidence: f64,
    pub cluster_column: Option<String>,
    pub same_endpoint: bool,
    pub message: Option<String>,
    pub dry_run: bool,
}

/// What the server's gate decided.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PromotionAnswer {
    pub passed: bool,
    /// The recorded move; None when the gate failed, on a dry run, or when the tag was there.
    pub moved: Option<TagEvent>,
    /// The criteria as the server evaluated them.
    pub criteria: Vec<serde_json::Value>,
    pub notes: Vec<String>,
    /// The policy that decided (the request's, raised to the server's floor).
    pub policy: crate::gate::Policy,
}

impl RemoteStore {
    /// Asks the server to evaluate a promotion and move the tag if it passes. A refusal that
    /// is not the store's (a request the gate cannot take) comes back as its status and text.
    pub fn promote(
        &self,
        call: &PromotionCall,
    ) -> Result<std::result::Result<PromotionAnswer, (u16, String)>> {
        let body =
            bytes::Bytes::from(serde_json::to_vec(call).map_err(|e| StoreError::Protocol {
                location: self.base.clone(),
                reason: format!("cannot encode the promotion: {e}"),
            })?);
        let url = format!("{}/v1/promotions", self.base);
        let actor = credentials::actor();
        let (status, reply) = self.send(|client| {
            let mut request = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(actor) = &actor {
                request = request.header("x-runner-actor", actor.as_str());
            }
            self.authorised(request)
        })?;
        if status.is_success() {
            return self.read((status, reply)).map(Ok);
        }
        if matches!(status.as_u16(), 401 | 403) {
            return Err(self
                .read::<serde_json::Value>((status, reply))
                .expect_err("not a success"));
        }
        if let Ok(failure) = serde_json::from_slice::<Failure>(&reply) {
            return Err(failure.store_error);
        }
        let text = String::from_utf8_lossy(&reply[..reply.len().min(2000)])
            .trim()
            .to_string();
        Ok(Err((status.as_u16(), text)))
    }
}

/// The role a 403 names (`… needs the deploy role …`), for the hint.
fn needed_role(message: &str) -> String {
    ["admin", "deploy", "promote", "write", "ingest", "read"]
        .into_iter()
        .find(|role| message.contains(&format!("{role} role")))
        .unwrap_or("write")
        .to_string()
}

/// A result crosses the wire with the cache key its answer is kept under (which a result's
/// own JSON leaves out).
pub type WireResult = (RunResult, Option<String>);

pub fn wire_results(batch: &[RunResult]) -> Vec<WireResult> {
    batch
        .iter()
        .map(|r| (r.clone(), r.cache_key.clone()))
        .collect()
}

pub fn from_wire(batch: Vec<WireResult>) -> Vec<RunResult> {
    batch
        .into_iter()
        .map(|(mut r, key)| {
            r.cache_key = key;
            r
        })
        .collect()
}

/// A summary crosses the wire with each evaluator's judged count and spread (which its own
/// JSON leaves out).
pub type WireSummary = (Summary, Vec<(i64, crate::model::RowSpread)>);

pub fn wire_summary(summary: Summary) -> WireSummary {
    let extra = summary
        .evaluators
        .iter()
        .map(|e| (e.judged, e.spread))
        .collect();
    (summary, extra)
}

pub fn from_wire_summary((mut summary, extra): WireSummary) -> Summary {
    for (evaluator, (judged, spread)) in summary.evaluators.iter_mut().zip(extra) {
        evaluator.judged = judged;
        evaluator.spread = spread;
    }
    summary
}

impl PromptStore for RemoteStore {
    fn create_prompt(
        &self,
        name: &str,
        version: NewVersion,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion> {
        self.call("create_prompt", &(name, version, tags, change))
    }

    fn append_version_with(
        &self,
        name: &str,
        build: &mut BuildVersion<'_>,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion> {
        for _ in 0..RACE_TRIES {
            let latest = self.version(name, &VersionRef::Latest)?;
            let version = build(&latest)?;
            match self.call("append_version", &(name, latest.seq, version, tags, change)) {
                Err(StoreError::Raced { .. }) => pause_after_race(),
                other => return other,
            }
        }
        Err(StoreError::Raced {
            name: name.to_string(),
        })
    }

    fn version(&self, name: &str, reference: &VersionRef) -> Result<PromptVersion> {
        self.call("version", &(name, reference))
    }

    fn version_by_id(&self, id: &str) -> Result<Option<PromptVersion>> {
        self.call("version_by_id", &(id,))
    }

    fn versions(&self, name: &str) -> Result<Vec<PromptVersion>> {
        self.call("versions", &(name,))
    }

    fn prompts_page(
        &self,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Prompt, PromptVersion)>> {
        self.call("prompts_page", &(from, limit as u64))
    }

    fn tags(&self, name: &str) -> Result<Vec<Tag>> {
        self.call("tags", &(name,))
    }

    fn tag(&self, name: &str, tag: &str) -> Result<Option<Tag>> {
        self.call("tag", &(name, tag))
    }

    fn tag_target(&self, name: &str, tag: &str) -> Result<(String, String)> {
        self.call("tag_target", &(name, tag))
    }

    fn latest_target(&self, name: &str) -> Result<(String, String)> {
        self.call("latest_target", &(name,))
    }

    fn version_tags(&self, version_id: &str) -> Result<Vec<(Tag, Option<String>)>> {
        self.call("version_tags", &(version_id,))
    }

    fn prompt_tags(&self, name: &str) -> Result<Vec<(Tag, Option<String>)>> {
        self.call("prompt_tags", &(name,))
    }

    fn set_tag(
        &self,
        name: &str,
        tag: &str,
        target: &VersionRef,
        change: &TagChange,
    ) -> Result<TagOutcome> {
        self.call("set_tag", &(name, tag, target, change))
    }

    fn delete_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent> {
        self.call("delete_tag", &(name, tag, change))
    }

    fn rollback_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent> {
        self.call("rollback_tag", &(name, tag, change))
    }

    fn history(&self, name: &str, tag: Option<&str>) -> Result<Vec<TagEvent>> {
        self.call("history", &(name, tag))
    }

    fn archive(&self, name: &str) -> Result<PromptArchive> {
        self.call("archive", &(name,))
    }

    fn import(&self, archives: &[PromptArchive]) -> Result<()> {
        self.call("import", &(archives,))
    }

    fn restore(&self, archives: &[PromptArchive]) -> Result<()> {
        self.call("restore", &(archives,))
    }

    fn prompt(&self, name: &str) -> Result<(Prompt, PromptVersion)> {
        self.call("prompt", &(name,))
    }

    fn update_prompt(&self, name: &str, update: &PromptUpdate, actor: &str) -> Result<()> {
        self.call("update_prompt", &(name, update, actor))
    }

    fn archive_prompt(&self, name: &str, change: &TagChange) -> Result<()> {
        self.call("archive_prompt", &(name, change))
    }

    fn restore_prompt(&self, name: &str, actor: &str) -> Result<()> {
        self.call("restore_prompt", &(name, actor))
    }

    fn archived_prompts(&self) -> Result<Vec<String>> {
        self.call("archived_prompts", &())
    }
}

impl ExperimentStore for RemoteStore {
    fn create_experiment(&self, new: &NewExperiment) -> Result<Experiment> {
        self.call("create_experiment", &(new,))
    }

    fn experiment(&self, id: &str) -> Result<Experiment> {
        self.call("experiment", &(id,))
    }

    fn experiments(&self, prompt: Option<&str>) -> Result<Vec<Experiment>> {
        self.call("experiments", &(prompt,))
    }

    fn matching(&self, fingerprint: &str) -> Result<Vec<(Experiment, i64)>> {
        self.call("matching", &(fingerprint,))
    }

    fn visit_outcomes(
        &self,
        experiment: &Experiment,
        cluster_column: Option<&str>,
        visit: &mut dyn FnMut(RowOutcome) -> Result<()>,
    ) -> Result<()> {
        let outcomes: Vec<RowOutcome> =
            self.call("visit_outcomes", &(experiment, cluster_column))?;
        outcomes.into_iter().try_for_each(visit)
    }

    fn verdicts(
        &self,
        experiment: &Experiment,
        cluster_column: Option<&str>,
    ) -> Result<Vec<RowOutcome>> {
        self.call("verdicts", &(experiment, cluster_column))
    }

    fn row_texts(&self, experiment: &Experiment, row_ids: &[String]) -> Result<Vec<RowText>> {
        self.call("row_texts", &(experiment, row_ids))
    }

    fn mark_mock(&self, id: &str) -> Result<()> {
        self.call("mark_mock", &(id,))
    }

    fn finish_experiment(&self, id: &str, status: ExperimentStatus, wall_ms: i64) -> Result<()> {
        self.call("finish_experiment", &(id, status, wall_ms))
    }

    fn discard_experiment(&self, id: &str) -> Result<()> {
        self.call("discard_experiment", &(id,))
    }

    fn reopen_experiment(&self, id: &str) -> Result<()> {
        self.call("reopen_experiment", &(id,))
    }

    fn take_lease(
        &self,
        id: &str,
        owner: &str,
        ttl: std::time::Duration,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<()> {
        // Whether a holder is alive is known where it runs: the server takes every holder for
        // alive until this machine says one of its own is gone, and is asked again.
        let ttl_ms = ttl.as_millis() as u64;
        let mut gone: Vec<String> = Vec::new();
        loop {
            match self.call("take_lease", &(id, owner, ttl_ms, &gone)) {
                Err(StoreError::ExperimentBusy { holder, .. })
                    if !gone.contains(&holder) && !alive(&holder) =>
                {
                    gone.push(holder);
                }
                other => return other,
            }
        }
    }

    fn renew_lease(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<bool> {
        self.call("renew_lease", &(id, owner, ttl.as_millis() as u64))
    }

    fn release_lease(&self, id: &str, owner: &str) -> Result<()> {
        self.call("release_lease", &(id, owner))
    }

    fn visit_successes(&self, id: &str, visit: &mut dyn FnMut(i64, i64)) -> Result<()> {
        let successes: Vec<(i64, i64)> = self.call("visit_successes", &(id,))?;
        for (row, repetition) in successes {
            visit(row, repetition);
        }
        Ok(())
    }

    fn summary(&self, experiment: &Experiment) -> Result<Summary> {
        let wire: WireSummary = self.call("summary", &(experiment,))?;
        Ok(from_wire_summary(wire))
    }

    fn tokens(&self, id: &str) -> Result<(i64, i64)> {
        self.call("tokens", &(id,))
    }

    fn visit_results(&self, id: &str, visit: &mut VisitResult<'_>) -> Result<()> {
        let results: Vec<RunResult> = self.call("visit_results", &(id,))?;
        results.into_iter().try_for_each(visit)
    }

    fn fingerprint(&self, id: &str) -> Result<Option<String>> {
        self.call("fingerprint", &(id,))
    }

    fn restore_experiment(&self, experiment: &Experiment, fingerprint: Option<&str>) -> Result<()> {
        self.call("restore_experiment", &(experiment, fingerprint))
    }

    fn visit_cache(
        &self,
        visit: &mut dyn FnMut(&str, CachedResponse, &str) -> Result<()>,
    ) -> Result<()> {
        let entries: Vec<(String, CachedResponse, String)> = self.call("visit_cache", &())?;
        for (key, response, at) in entries {
            visit(&key, response, &at)?;
        }
        Ok(())
    }

    fn restore_cache(&self, entries: &[(String, CachedResponse, String)]) -> Result<()> {
        self.call("restore_cache", &(entries,))
    }
}

impl WorkQueue for RemoteStore {
    fn plan_experiment(
        &self,
        new: &NewExperiment,
        key: Option<&str>,
        repetitions: i64,
        next_row: &mut dyn FnMut() -> Result<Option<PlanRow>>,
    ) -> Result<(Experiment, bool)> {
        let mut rows = Vec::new();
        while let Some(row) = next_row()? {
            rows.push(row);
        }
        self.call("plan_experiment", &(new, key, repetitions, rows))
    }

    fn claim_items(
        &self,
        id: &str,
        owner: &str,
        ttl: std::time::Duration,
        max: usize,
    ) -> Result<Vec<WorkItem>> {
        self.call(
            "claim_items",
            &(id, owner, ttl.as_millis() as u64, max as u64),
        )
    }

    fn renew_items(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<u64> {
        self.call("renew_items", &(id, owner, ttl.as_millis() as u64))
    }

    fn lease_owners(&self, id: &str) -> Result<Vec<String>> {
        self.call("lease_owners", &(id,))
    }

    fn release_items(&self, id: &str, owner: &str) -> Result<u64> {
        self.call("release_items", &(id, owner))
    }

    fn complete_items(&self, id: &str, owner: &str, batch: &[RunResult]) -> Result<usize> {
        let written: u64 = self.call("complete_items", &(id, owner, wire_results(batch)))?;
        Ok(written as usize)
    }

    fn work_counts(&self, id: &str) -> Result<Option<WorkCounts>> {
        self.call("work_counts", &(id,))
    }

    fn finish_work(&self, id: &str) -> Result<ExperimentStatus> {
        self.call("finish_work", &(id,))
    }
}

impl ResultSink for RemoteStore {
    fn write_results(&self, experiment_id: &str, batch: &[RunResult]) -> Result<()> {
        self.call("write_results", &(experiment_id, wire_results(batch)))
    }
}

impl ResponseCache for RemoteStore {
    fn cached_response(&self, key: &str) -> Result<Option<CachedResponse>> {
        self.call("cached_response", &(key,))
    }
}

impl TraceStore for RemoteStore {
    fn write_spans(
        &self,
        spans: &[crate::trace::Span],
        annotations: &[crate::trace::Annotation],
    ) -> Result<u64> {
        self.call("write_spans", &(spans, annotations))
    }

    fn annotate(
        &self,
        annotations: &[crate::trace::Annotation],
    ) -> Result<std::result::Result<Vec<i64>, Vec<String>>> {
        self.call("annotate", &(annotations,))
    }

    fn record_lookups(&self, counts: &[(crate::trace::LookupKey, i64)]) -> Result<()> {
        self.call("record_lookups", &(counts,))
    }

    fn visit_spans(
        &self,
        filter: &crate::trace::SpanFilter,
        visit: &mut dyn FnMut(crate::trace::Span) -> Result<()>,
    ) -> Result<()> {
        let spans: Vec<crate::trace::Span> = self.call("visit_spans", &(filter,))?;
        spans.into_iter().try_for_each(visit)
    }

    fn span(&self, span_id: &str) -> Result<Option<crate::trace::Span>> {
        self.call("span", &(span_id,))
    }

    fn scored_spans(
        &self,
        filter: &crate::trace::SpanFilter,
    ) -> Result<Vec<crate::trace::ScoredSpan>> {
        self.call("scored_spans", &(filter,))
    }

    fn visit_annotations(
        &self,
        visit: &mut dyn FnMut(crate::trace::Annotation) -> Result<()>,
    ) -> Result<()> {
        let annotations: Vec<crate::trace::Annotation> = self.call("visit_annotations", &())?;
        annotations.into_iter().try_for_each(visit)
    }

    fn span_annotations(&self, span: &crate::trace::Span) -> Result<Vec<crate::trace::Annotation>> {
        self.call("span_annotations", &(span,))
    }

    fn count_spans(&self, filter: &crate::trace::SpanFilter) -> Result<i64> {
        self.call("count_spans", &(filter,))
    }

    fn count_unlinked(&self, filter: &crate::trace::SpanFilter) -> Result<i64> {
        self.call("count_unlinked", &(filter,))
    }

    fn lookups(
        &self,
        prompt: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<(crate::trace::LookupKey, i64)>> {
        self.call("lookups", &(prompt, since_ms, until_ms))
    }

    fn prune_traces(&self, before_ms: i64) -> Result<u64> {
        self.call("prune_traces", &(before_ms,))
    }
}

impl RolloutStore for RemoteStore {
    fn start_rollout(
        &self,
        rollout: &crate::canary::Rollout,
        change: &TagChange,
    ) -> Result<TagEvent> {
        self.call("start_rollout", &(rollout, change))
    }

    fn rollouts(&self, prompt: Option<&str>, running: bool) -> Result<Vec<crate::canary::Rollout>> {
        self.call("rollouts", &(prompt, running))
    }

    fn rollout_now(&self, id: &str) -> Result<Option<crate::canary::RolloutNow>> {
        self.call("rollout_now", &(id,))
    }

    fn record_look(
        &self,
        seen: &crate::canary::Rollout,
        next: &crate::canary::Rollout,
    ) -> Result<bool> {
        self.call("record_look", &(seen, next))
    }

    fn finish_rollout(
        &self,
        seen: &crate::canary::Rollout,
        status: crate::canary::Status,
        evidence: serde_json::Value,
        change: &TagChange,
    ) -> Result<Option<Vec<TagEvent>>> {
        self.call("finish_rollout", &(seen, status, evidence, change))
    }
}

impl DatasetStore for RemoteStore {
    fn push_dataset_with(
        &self,
        name: &str,
        must_be_new: bool,
        make: &mut VersionBuilder<'_>,
    ) -> Result<(DatasetVersion, bool)> {
        for _ in 0..RACE_TRIES {
            let latest = match self.dataset_content(name, None) {
                Ok(found) => Some(found),
                Err(StoreError::UnknownDataset { .. }) => None,
                Err(e) => return Err(e),
            };
            if must_be_new && latest.is_some() {
                return Err(StoreError::DatasetExists {
                    name: name.to_string(),
                });
            }
            let made = make(latest.as_ref().map(|(v, c)| (v, c.as_str())))?;
            let expected = latest.as_ref().map(|(v, _)| v.id.clone());
            match (made, latest) {
                (None, Some((version, _))) => return Ok((version, false)),
                (made, _) => {
                    match self.call("push_dataset", &(name, must_be_new, expected, made)) {
                        Err(StoreError::Raced { .. }) => pause_after_race(),
                        other => return other,
                    }
                }
            }
        }
        Err(StoreError::Raced {
            name: name.to_string(),
        })
    }

    fn dataset_entries(
        &self,
        name: Option<&str>,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DatasetEntry>> {
        self.call("dataset_entries", &(name, from, limit as u64))
    }

    fn dataset_entry(&self, id: &str) -> Result<Option<DatasetEntry>> {
        self.call("dataset_entry", &(id,))
    }

    fn dataset_versions_of(
        &self,
        dataset_id: &str,
        from_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DatasetVersion>> {
        self.call("dataset_versions_of", &(dataset_id, from_seq, limit as u64))
    }

    fn dataset_version(&self, id: &str) -> Result<Option<(DatasetVersion, String)>> {
        self.call("dataset_version", &(id,))
    }

    fn delete_dataset(&self, id: &str) -> Result<bool> {
        self.call("delete_dataset", &(id,))
    }

    fn datasets(&self) -> Result<Vec<DatasetVersion>> {
        self.call("datasets", &())
    }

    fn dataset_versions(&self, name: &str) -> Result<Vec<DatasetVersion>> {
        self.call("dataset_versions", &(name,))
    }

    fn dataset_content(&self, name: &str, seq: Option<i64>) -> Result<(DatasetVersion, String)> {
        self.call("dataset_content", &(name, seq))
    }

    fn dataset_by_hash(&self, hash: &str) -> Result<Option<(DatasetVersion, String)>> {
        self.call("dataset_by_hash", &(hash,))
    }
}

impl TaskStore for RemoteStore {
    fn create_task_experiment(
        &self,
        new: &NewTaskExperiment,
        mirror: &NewExperiment,
    ) -> Result<TaskExperiment> {
        self.call("create_task_experiment", &(new, mirror))
    }

    fn task_experiment(&self, id: &str) -> Result<Option<TaskExperiment>> {
        self.call("task_experiment", &(id,))
    }

    fn task_experiments(
        &self,
        dataset_id: &str,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskExperiment>> {
        self.call("task_experiments", &(dataset_id, from, limit as u64))
    }

    fn record_task_run(&self, run: &TaskRun, result: Option<&RunResult>) -> Result<String> {
        self.call(
            "record_task_run",
            &(run, result.map(|r| (r.clone(), r.cache_key.clone()))),
        )
    }

    fn task_runs(
        &self,
        experiment_id: &str,
        from: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<TaskRun>> {
        self.call("task_runs", &(experiment_id, from, limit.map(|l| l as u64)))
    }

    fn task_run(&self, id: &str) -> Result<Option<TaskRun>> {
        self.call("task_run", &(id,))
    }

    fn record_task_evaluation(
        &self,
        evaluation: &TaskEvaluation,
        score: Option<(i64, i64, &crate::model::Score)>,
    ) -> Result<String> {
        self.call("record_task_evaluation", &(evaluation, score))
    }

    fn task_evaluations(&self, experiment_id: &str) -> Result<Vec<TaskEvaluation>> {
        self.call("task_evaluations", &(experiment_id,))
    }

    fn delete_task_experiment(&self, id: &str) -> Result<bool> {
        self.call("delete_task_experiment", &(id,))
    }

    fn restore_task_experiment(&self, experiment: &TaskExperiment) -> Result<()> {
        self.call("restore_task_experiment", &(experiment,))
    }

    fn restore_task_runs(&self, runs: &[TaskRun], evaluations: &[TaskEvaluation]) -> Result<()> {
        self.call("restore_task_runs", &(runs, evaluations))
    }
}

impl TokenStore for RemoteStore {
    fn create_token(&self, new: &NewToken) -> Result<ApiToken> {
        self.call("create_token", &(new,))
    }

    fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        self.call("api_tokens", &())
    }

    fn revoke_token(&self, name: &str, actor: &str) -> Result<bool> {
        self.call("revoke_token", &(name, actor))
    }

    fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>> {
        self.call("token_by_digest", &(digest,))
    }
}

impl Store for RemoteStore {
    fn schema_version(&self) -> Result<i64> {
        Ok(self.hello.schema)
    }

    fn location(&self) -> String {
        self.base.clone()
    }

    fn remote(&self) -> Option<&RemoteStore> {
        Some(self)
    }
}

/// Where the token for a server comes from: `RUNNER_TOKEN`, else the file `RUNNER_TOKEN_FILE`
/// names, else the profile `runner login` wrote for that URL (or the one `RUNNER_PROFILE`
/// names). Profiles live in `credentials.toml` under the user's config folder, mode 0600.
pub mod credentials {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
    pub struct Profiles {
        #[serde(default)]
        pub profiles: BTreeMap<String, Profile>,
    }

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct Profile {
        pub url: String,
        pub token: String,
    }

    /// The folder runner keeps its own configuration in: `RUNNER_CONFIG_DIR`, else
    /// `$XDG_CONFIG_HOME/runner`, else `~/.config/runner`.
    pub fn folder() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("RUNNER_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("runner"));
        }
        std::env::var_os("HOME")
            .filter(|d| !d.is_empty())
            .map(|home| PathBuf::from(home).join(".config").join("runner"))
    }

    pub fn file() -> Option<PathBuf> {
        folder().map(|f| f.join("credentials.toml"))
    }

    /// The profiles written so far (none when the file does not exist).
    pub fn load() -> Result<Profiles, String> {
        let Some(path) = file() else {
            return Ok(Profiles::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| format!("{} is not a credentials file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profiles::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the profiles, readable by the user alone (0600), replacing the file whole.
    pub fn save(profiles: &Profiles) -> Result<PathBuf, String> {
        let path = file().ok_or("no config folder: set HOME or RUNNER_CONFIG_DIR")?;
        let folder = path.parent().expect("a file in a folder");
        std::fs::create_dir_all(folder)
            .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
        let text = toml::to_string(profiles).map_err(|e| e.to_string())?;
        let temporary = path.with_extension("toml.new");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut out = options
                .open(&temporary)
                .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
            out.write_all(text.as_bytes())
                .and_then(|()| out.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
        }
        std::fs::rename(&temporary, &path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// The token for the server at `base`, if any is configured.
    pub fn token_for(base: &str) -> Result<Option<String>, String> {
        if let Some(token) = std::env::var("RUNNER_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            return Ok(Some(token.trim().to_string()));
        }
        if let Some(path) = std::env::var_os("RUNNER_TOKEN_FILE").filter(|p| !p.is_empty()) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read RUNNER_TOKEN_FILE {}: {e}",
                    PathBuf::from(&path).display()
                )
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(format!(
                    "RUNNER_TOKEN_FILE {} is empty",
                    PathBuf::from(&path).display()
                ));
            }
            return Ok(Some(token.to_string()));
        }
        let profiles = load()?;
        if let Some(name) = std::env::var("RUNNER_PROFILE")
            .ok()
            .filter(|n| !n.is_empty())
        {
            return match profiles.profiles.get(&name) {
                Some(profile) => Ok(Some(profile.token.clone())),
                None => Err(format!(
                    "RUNNER_PROFILE names no profile '{name}' (see `runner login`)"
                )),
            };
        }
        Ok(profiles
            .profiles
            .values()
            .find(|p| p.url.trim_end_matches('/') == base)
            .map(|p| p.token.clone()))
    }

    /// Who acts, as the request's `X-Runner-Actor` names it (`--author`, set by the CLI).
    pub fn actor() -> Option<String> {
        ACTOR.get().cloned()
    }

    static ACTOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

    /// Names the person or job behind this process's requests (recorded after the token's
    /// name, which the server decides).
    pub fn set_actor(actor: &str) {
        let printable: String = actor
            .chars()
            .filter(|c| (' '..='~').contains(c))
            .take(64)
            .collect();
        if !printable.trim().is_empty() {
            let _ = ACTOR.set(printable.trim().to_string());
        }
    }
}
