//! The experiment runner: bounded concurrency over dataset rows, scoring, batched result
//! writing, resume and interruption.
//!
//! Rows stream from the file on a reader thread, requests run as tokio tasks (never more than
//! the concurrency limit in flight), and every result goes over a channel to one writer thread
//! that owns its own store connection and commits in batches. Nothing accumulates in memory.

use crate::client::{Client, Completion, Failure, FailureKind, request_body};
use crate::dataset::{self, Row};
use crate::eval::{EvalInput, Evaluator};
use crate::model::{
    Experiment, ExperimentStatus, JsonObject, Message, PromptVersion, ResultStatus, RunResult,
    Score, hex,
};
use crate::store::{ExperimentStore, ResponseCache, ResultSink, StoreError, WorkItem};
use crate::template::{CompiledTemplate, lookup};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

/// What happens during a run, for whoever shows it (a progress bar, plain lines, a page).
pub enum RunEvent<'a> {
    /// Requests are about to go out: `planned` results in all, `already` of them stored by an
    /// earlier run.
    Started {
        experiment: &'a Experiment,
        planned: u64,
        already: u64,
    },
    /// Where the run stands: sent a few times a second while it runs, and once at its end.
    Progress(Tally),
    /// Ctrl-C or SIGTERM: requests in flight get `grace` to finish, then are abandoned.
    Interrupted { grace: Duration },
    /// No more requests go out.
    Stopped,
    /// A run made as evidence for another command (compare, promote) ended as stored.
    Ended {
        experiment: &'a Experiment,
        summary: &'a crate::model::Summary,
        stats: &'a crate::model::RunStats,
        /// What it cost, when a price names its model.
        cost: Option<&'a crate::view::CostView>,
    },
    /// Something a person watching should know (which experiment stands as evidence, say).
    Notice(String),
}

/// Receives the events of a run.
pub trait Reporter {
    fn report(&self, event: RunEvent<'_>);
}

/// A reporter that shows nothing.
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: RunEvent<'_>) {}
}

/// Results this run has produced so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub done: u64,
    pub errors: u64,
    pub cached: u64,
    /// Requests waiting in back-off now, retries so far, and why the latest one waits.
    pub retry: crate::client::RetryState,
    /// 429s, time held back by limits, and the adaptive concurrency.
    pub throttle: crate::limit::ThrottleState,
}

/// How often a running experiment reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Identical failures (status and message) of the first calls, before any answered, after
/// which a run stops instead of failing every row and every retry the same way.
pub const FAIL_FAST_AFTER: usize = 5;

/// The breaker: this many rows in a row whose calls found no endpoint (refused or reset
/// connections, timeouts, 5xx or 429 after every retry) stop the run.
pub const BREAKER_ROWS: usize = 20;

/// The breaker's other window: no call answered for this long while at least
/// `BREAKER_MIN_ROWS` rows in a row failed that way also stops the run (a slow, dying endpoint
/// that fails fewer rows than `BREAKER_ROWS` a minute).
pub const BREAKER_SILENCE: Duration = Duration::from_secs(10);

/// Failed rows in a row the silence window needs before it trips.
pub const BREAKER_MIN_ROWS: usize = 3;

/// How long in-flight requests may finish after an interruption before they are abandoned.
pub const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// Results per write transaction at most; a batch is whatever has arrived, up to this.
const BATCH: usize = 512;

/// Everything a run needs, resolved and checked before the first request.
pub struct Plan {
    pub experiment: Experiment,
    pub version: PromptVersion,
    pub template: CompiledTemplate,
    pub dataset: PathBuf,
    pub evaluators: Vec<Evaluator>,
    pub client: Client,
    pub judge_model: String,
    pub cache: CacheUse,
    /// `--max-cost`: no request is sent whose estimated cost would exceed it.
    pub budget: Option<Arc<crate::cost::Budget>>,
}

/// How a run uses the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUse {
    /// Answers already in the cache may stand for a call.
    pub read: bool,
    /// New answers are kept for later runs.
    pub write: bool,
    /// A cached answer older than this is not used (the call is made and the entry renewed).
    pub max_age: Option<Duration>,
}

impl CacheUse {
    /// From an experiment's stored settings: `--no-cache` neither reads nor writes, `--fresh`
    /// writes but never reads.
    pub fn of(settings: &crate::model::RunSettings) -> CacheUse {
        CacheUse {
            read: !settings.no_cache && !settings.fresh,
            write: !settings.no_cache,
            max_age: settings.cache_ttl_secs.map(Duration::from_secs),
        }
    }
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Interrupted,
    /// The endpoint refused the key before any call succeeded.
    Auth(String),
    /// No connection could be made before any call succeeded.
    Unreachable(String),
    /// The first `FAIL_FAST_AFTER` calls all failed the same way, before any succeeded.
    Rejected(String),
    /// Results could not be stored (the writer stopped) or a task failed: the run stops
    /// rather than send requests whose answers would be lost.
    Broken(String),
    /// The next request would have spent more than `--max-cost`; it was not sent.
    Budget,
    /// The endpoint stopped answering after the run had begun (see `Breaker`): nothing more is
    /// sent, and the run is resumable once it answers again.
    EndpointDown(String),
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExperimentStatus,
    pub stop: Option<Stop>,
    pub wall: Duration,
    /// Results produced by this run (not counting those a resume skipped).
    pub processed: u64,
    /// The age of the oldest cached answer this run used, if it used any.
    pub oldest_cached: Option<Duration>,
    /// 429s, time held back, and the concurrency the run ended at.
    pub throttle: crate::limit::ThrottleState,
}

/// Template variables no column or constant supplies.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    pub variables: Vec<String>,
    pub available: Vec<String>,
}

/// Checks, before any request, that every template variable has a source: a column (or a
/// dotted field of a JSONL row), a `--column` rename of an existing column, or a `--var`.
pub fn preflight(
    template: &CompiledTemplate,
    info: &dataset::DatasetInfo,
    settings: &crate::model::RunSettings,
) -> Result<(), Missing> {
    let has_column = |name: &str| info.columns.iter().chain(&info.fields).any(|c| c == name);
    let variables: Vec<String> = template
        .variables()
        .iter()
        .filter(|var| {
            let constant = settings.vars.contains_key(var.as_str());
            let renamed = settings
                .columns
                .iter()
                .any(|(v, column)| v == *var && has_column(column));
            !(constant || renamed || has_column(var))
        })
        .cloned()
        .collect();
    if variables.is_empty() {
        Ok(())
    } else {
        Err(Missing {
            variables,
            available: info.columns.clone(),
        })
    }
}

/// A run failed as a whole (the store, or the dataset changed under us).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error("the result writer failed: {0}")]
    Writer(String),
}

/// Which (row, repetition) pairs already have a successful result: one bit each.
pub struct Done {
    bits: Vec<u64>,
    repetitions: usize,
}

impl Done {
    pub fn new(rows: usize, repetitions: usize) -> Done {
        Done {
            bits: vec![0; (rows * repetitions).div_ceil(64)],
            repetitions,
        }
    }

    fn slot(&self, row: usize, repetition: usize) -> usize {
        row * self.repetitions + repetition
    }

    pub fn insert(&mut self, row: usize, repetition: usize) {
        let slot = self.slot(row, repetition);
        if let Some(word) = self.bits.get_mut(slot / 64) {
            *word |= 1 << (slot % 64);
        }
    }

    /// How many pairs are done.
    pub fn count(&self) -> u64 {
        self.bits
            .iter()
            .map(|word| u64::from(word.count_ones()))
            .sum()
    }

    pub fn contains(&self, row: usize, repetition: usize) -> bool {
        let slot = self.slot(row, repetition);
        self.bits
            .get(slot / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }

    /// From the store: every successful result of an experiment.
    pub fn load(store: &dyn ExperimentStore, experiment: &Experiment) -> Result<Done, StoreError> {
        let settings = &experiment.settings;
        let mut done = Done::new(experiment.dataset.rows as usize, settings.repetitions);
        store.visit_successes(&experiment.id, &mut |row, rep| {
            if row >= 0 && rep >= 0 {
                done.insert(row as usize, rep as usize);
            }
        })?;
        Ok(done)
    }
}

/// Where a run's work comes from.
pub enum Source {
    /// The dataset's rows (the first `--limit`, those of the shard), each repetition not in
    /// `Done` yet.
    Dataset(Done),
    /// Items leased from a detached experiment's work queue; `already` of them were done
    /// before this run started.
    Queue { feed: Arc<dyn Feed>, already: u64 },
}

/// Leases work items for a run that shares its experiment with other workers.
pub trait Feed: Send + Sync {
    /// Up to `max` more items: an empty list when none is free now (others hold the rest;
    /// ask again soon), None when every item is done.
    fn next(&self, max: usize) -> Result<Option<Vec<WorkItem>>, StoreError>;
}

/// How long a worker waits before asking again when every remaining item is leased by others.
const FEED_POLL: Duration = Duration::from_millis(500);

/// The failure every call so far ended with (status and message), and how many calls did.
type FirstFailures = (Option<(Option<u16>, String)>, usize);

/// Shared state of one run.
struct Shared {
    plan: Plan,
    counters: Arc<Counters>,
    stop: AtomicBool,
    stop_reason: Mutex<Option<Stop>>,
    stopped: Notify,
    /// Any call answered: after that, a 401 is a row failure, not a bad key.
    any_ok: AtomicBool,
    /// The failure the calls so far all ended with, and how many did (before any answer).
    first_failures: Mutex<FirstFailures>,
    cache: Option<Arc<dyn ResponseCache>>,
    breaker: Mutex<Breaker>,
}

impl Shared {
    fn halt(&self, reason: Stop) {
        let mut slot = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    /// Counts a failure before any answer; true once `FAIL_FAST_AFTER` in a row were the same.
    fn same_failure(&self, status: Option<u16>, message: &str) -> bool {
        let mut seen = self
            .first_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let this = (status, message.to_string());
        if seen.0.as_ref() == Some(&this) {
            seen.1 += 1;
        } else {
            *seen = (Some(this), 1);
        }
        seen.1 >= FAIL_FAST_AFTER
    }

    fn halted(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn interrupted(&self) -> bool {
        matches!(
            *self.stop_reason.lock().unwrap_or_else(|p| p.into_inner()),
            Some(Stop::Interrupted)
        )
    }
}

/// Whether a failure says the endpoint is gone rather than that it refused this one row: no
/// connection, a dropped one, no answer in time, or a server error (or 429) after every retry.
fn endpoint_gone(failure: &Failure) -> bool {
    match failure.kind {
        FailureKind::Unreachable | FailureKind::Connection | FailureKind::Timeout => true,
        FailureKind::Http => failure
            .http_status
            .is_some_and(|status| status >= 500 || status == 429),
        FailureKind::Auth | FailureKind::InvalidResponse | FailureKind::Budget => false,
    }
}

/// The run's circuit breaker. Rows whose calls found no endpoint are held back instead of
/// stored while they are a streak: an answer (any answer) ends the streak and they are stored
/// as the row failures they were; a streak of `BREAKER_ROWS`, or of `BREAKER_MIN_ROWS` with
/// nothing answered for `BREAKER_SILENCE`, trips the breaker: the run stops sending, and the
/// held rows are dropped, never stored, so a resume (or another worker) sends them again once
/// the endpoint is back. Rows that failed while the endpoint was gone are not evidence about
/// the prompt.
struct Breaker {
    /// Failed rows of the current streak, not stored yet.
    held: Vec<RunResult>,
    /// When a call last answered (or the run began).
    last_answer: Instant,
    tripped: bool,
}

/// What the breaker makes of one row's result.
enum Verdict {
    /// Store these now (the row, and a streak it ended).
    Store(Vec<RunResult>),
    /// Held in a streak (or dropped after a trip): nothing to store yet.
    Hold,
    /// This row tripped the breaker: stop the run, with this reason.
    Trip(String),
}

impl Breaker {
    fn new() -> Breaker {
        Breaker {
            held: Vec::new(),
            last_answer: Instant::now(),
            tripped: false,
        }
    }

    /// Takes a finished row: `gone` when its call found no endpoint.
    fn take(&mut self, result: RunResult, gone: Option<&str>) -> Verdict {
        let Some(reason) = gone else {
            // A cached answer or a template that did not render says nothing of the endpoint.
            let answered = if result.status == ResultStatus::Ok {
                !result.cached
            } else {
                !result.messages.is_empty()
            };
            if !answered {
                return Verdict::Store(vec![result]);
            }
            self.last_answer = Instant::now();
            let mut store = std::mem::take(&mut self.held);
            store.push(result);
            return Verdict::Store(store);
        };
        if self.tripped {
            return Verdict::Hold;
        }
        self.held.push(result);
        let streak = self.held.len();
        let silent = self.last_answer.elapsed();
        if streak >= BREAKER_ROWS || (streak >= BREAKER_MIN_ROWS && silent >= BREAKER_SILENCE) {
            self.tripped = true;
            self.held.clear();
            return Verdict::Trip(format!(
                "{streak} rows in a row failed, none answered for {:.0} s; the last: {reason}",
                silent.as_secs_f64(),
            ));
        }
        Verdict::Hold
    }

    /// The held rows, to store when the run ends without a trip (they were row failures of an
    /// endpoint that never stopped for long enough to count as gone).
    fn drain(&mut self) -> Vec<RunResult> {
        if self.tripped {
            Vec::new()
        } else {
            std::mem::take(&mut self.held)
        }
    }
}

/// Runs `work`, reporting the run's progress every `PROGRESS_EVERY` meanwhile.
async fn ticking<F: std::future::Future>(
    work: F,
    counters: &Counters,
    reporter: &dyn Reporter,
) -> F::Output {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => reporter.report(RunEvent::Progress(counters.tally())),
        }
    }
}

/// Results counted as tasks finish them.
#[derive(Default)]
struct Counters {
    /// The client's retry state, read into each tally.
    retries: Arc<crate::client::Retries>,
    /// The client's throttle, read into each tally.
    throttle: Option<Arc<crate::limit::Throttle>>,
    done: AtomicU64,
    errors: AtomicU64,
    cached: AtomicU64,
    /// Milliseconds: the oldest cached answer used so far.
    oldest_cached_ms: AtomicU64,
}

impl Counters {
    fn note_cache_age(&self, age: Duration) {
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX).max(1);
        self.oldest_cached_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The age of the oldest cached answer used, if any was.
    pub fn oldest_cached(&self) -> Option<Duration> {
        match self.oldest_cached_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    fn tally(&self) -> Tally {
        Tally {
            done: self.done.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            retry: self.retries.state(),
            throttle: self
                .throttle
                .as_ref()
                .map(|t| t.state())
                .unwrap_or_default(),
        }
    }
}

/// Waits for every task. A task that panicked lost its row: that makes the run broken (never
/// "completed"), so it is neither reused as evidence nor mistaken for a full run.
async fn join_all(tasks: &mut JoinSet<()>, shared: &Shared) {
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            shared.halt(Stop::Broken("a request task failed unexpectedly".into()));
        }
    }
}

/// Runs (or resumes) an experiment until every row is done, the endpoint refuses the key, or
/// `interrupt` resolves. Every finished result is in `sink` when this returns; answers are
/// looked up in `cache` first when the plan uses the cache.
pub async fn run(
    plan: Plan,
    sink: Arc<dyn ResultSink>,
    cache: Arc<dyn ResponseCache>,
    source: Source,
    reporter: &dyn Reporter,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<Outcome, RunError> {
    let started = Instant::now();
    reporter.report(RunEvent::Started {
        experiment: &plan.experiment,
        planned: plan.experiment.planned as u64,
        already: match &source {
            Source::Dataset(done) => done.count(),
            Source::Queue { already, .. } => *already,
        },
    });
    let counters = Arc::new(Counters {
        retries: plan.client.retries(),
        throttle: Some(plan.client.throttle()),
        ..Counters::default()
    });
    let settings = plan.experiment.settings.clone();
    let experiment_id = plan.experiment.id.clone();
    let cache = (plan.cache.read || plan.cache.write).then_some(cache);
    let shared = Arc::new(Shared {
        plan,
        counters,
        stop: AtomicBool::new(false),
        stop_reason: Mutex::new(None),
        stopped: Notify::new(),
        any_ok: AtomicBool::new(false),
        first_failures: Mutex::new((None, 0)),
        cache,
        breaker: Mutex::new(Breaker::new()),
    });

    // One writer thread writes every result; results reach it as they finish.
    let (results_tx, results_rx) = mpsc::channel::<RunResult>(BATCH * 4);
    let writer = std::thread::spawn(move || write_all(&*sink, &experiment_id, results_rx));

    // At most --concurrency in flight; fewer while the endpoint answers 429 (see limit::Gate).
    let gate = shared.plan.client.throttle().gate.clone();
    let mut tasks = JoinSet::new();
    let mut processed = 0u64;
    let mut dataset_error = None;
    let mut reader = None;
    tokio::pin!(interrupt);
    let mut dispatcher = Dispatcher {
        shared: &shared,
        gate: &gate,
        tasks: &mut tasks,
        results: &results_tx,
        processed: &mut processed,
    };
    let dispatch = async {
        match source {
            Source::Dataset(done) => {
                // Rows stream from a reader thread; the bounded channel keeps only a few in
                // memory.
                let limit = settings.limit.unwrap_or(usize::MAX);
                let (rows_tx, mut rows_rx) =
                    mpsc::channel::<Result<Row, dataset::DatasetError>>(256);
                let mut rows = match dataset::rows(&shared.plan.dataset) {
                    Ok(rows) => rows,
                    Err(e) => {
                        dataset_error = Some(e);
                        return;
                    }
                };
                reader = Some(std::thread::spawn(move || {
                    for _ in 0..limit {
                        let Some(row) = rows.next() else { break };
                        if rows_tx.blocking_send(row).is_err() {
                            break;
                        }
                    }
                    rows.content_hash()
                }));
                'rows: while let Some(row) = rows_rx.recv().await {
                    let row = match row {
                        Ok(row) => Arc::new(row),
                        Err(e) => {
                            dataset_error = Some(e);
                            break;
                        }
                    };
                    if settings.shard.is_some_and(|shard| !shard.contains(&row.id)) {
                        continue;
                    }
                    for repetition in 0..settings.repetitions {
                        if done.contains(row.index, repetition) {
                            continue;
                        }
                        if !dispatcher.send(row.clone(), repetition, None).await {
                            break 'rows;
                        }
                    }
                }
            }
            Source::Queue { feed, .. } => {
                // Leases at most twice the concurrency at once: what a worker that dies takes
                // with it until its leases run out.
                let cap = settings.concurrency.max(1);
                let outstanding = Arc::new(Outstanding::default());
                'feed: loop {
                    if shared.halted() {
                        break;
                    }
                    while outstanding.count() > cap {
                        tokio::select! {
                            _ = outstanding.freed.notified() => {}
                            _ = tokio::time::sleep(FEED_POLL) => {}
                            _ = shared.stopped.notified() => break 'feed,
                        }
                    }
                    let want = 2 * cap - outstanding.count();
                    let next = {
                        let feed = feed.clone();
                        tokio::task::spawn_blocking(move || feed.next(want)).await
                    };
                    let items = match next {
                        Ok(Ok(Some(items))) => items,
                        Ok(Ok(None)) => break,
                        Ok(Err(e)) => {
                            shared.halt(Stop::Broken(format!("the work queue failed: {e}")));
                            break;
                        }
                        Err(e) => {
                            shared.halt(Stop::Broken(format!("the work queue failed: {e}")));
                            break;
                        }
                    };
                    if items.is_empty() {
                        tokio::select! {
                            _ = tokio::time::sleep(FEED_POLL) => {}
                            _ = shared.stopped.notified() => break,
                        }
                        continue;
                    }
                    for item in items {
                        outstanding.take();
                        let row = Arc::new(Row {
                            index: item.row_index as usize,
                            id: item.row_id,
                            values: item.values,
                        });
                        let repetition = item.repetition as usize;
                        if !dispatcher
                            .send(row, repetition, Some(outstanding.clone()))
                            .await
                        {
                            break 'feed;
                        }
                    }
                }
            }
        }
    };
    let counters = &shared.counters;
    tokio::select! {
        _ = ticking(dispatch, counters, reporter) => {}
        _ = &mut interrupt => shared.halt(Stop::Interrupted),
    }
    // What is in flight finishes; after an interruption (before or during this wait) only
    // for a grace period, then it is abandoned.
    if !shared.interrupted() {
        tokio::select! {
            _ = ticking(join_all(&mut tasks, &shared), counters, reporter) => {}
            _ = &mut interrupt => shared.halt(Stop::Interrupted),
        }
    }
    if shared.interrupted() {
        reporter.report(RunEvent::Interrupted {
            grace: GRACE_PERIOD,
        });
        let grace = tokio::time::timeout(GRACE_PERIOD, join_all(&mut tasks, &shared));
        if ticking(grace, counters, reporter).await.is_err() {
            tasks.abort_all();
            join_all(&mut tasks, &shared).await;
        }
    }
    // A streak the run ended in without tripping the breaker: those rows failed as rows,
    // unless the run stopped because the endpoint could not be reached at all.
    let unreachable = matches!(
        *shared.stop_reason.lock().unwrap_or_else(|p| p.into_inner()),
        Some(Stop::Unreachable(_))
    );
    let held = if unreachable {
        Vec::new()
    } else {
        shared
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
    };
    forward(&shared, &results_tx, held).await;
    reporter.report(RunEvent::Progress(counters.tally()));
    reporter.report(RunEvent::Stopped);
    drop(results_tx);
    let parsed_hash = reader.map(|reader| reader.join());
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| RunError::Writer(e.to_string()))?
        .map_err(|_| RunError::Writer("it stopped unexpectedly".into()))?;
    written?;
    if let Some(e) = dataset_error {
        return Err(e.into());
    }
    // The rows were read a second time for the run: the results belong to the recorded hash
    // only if the bytes they were parsed from hash to it (a file overwritten and restored
    // during the run is caught too).
    // The file as it is now must hash the same too: a file that changed after its rows were
    // read no longer names the content the results came from.
    // A worker reads no dataset: the rows came with its work items.
    let expected_hash = &shared.plan.experiment.dataset.hash;
    let parsed_matches = matches!(&parsed_hash, None | Some(Ok(Ok(_))))
        && !matches!(&parsed_hash, Some(Ok(Ok(hash))) if hash != expected_hash);
    let file_matches = parsed_hash.is_none()
        || !crate::model::file_hash(&shared.plan.dataset).is_ok_and(|hash| &hash != expected_hash);
    if !(parsed_matches && file_matches) {
        shared.halt(Stop::Broken(format!(
            "dataset {} changed while the experiment ran",
            shared.plan.dataset.display()
        )));
    }
    let stop = shared
        .stop_reason
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let status = match &stop {
        None => ExperimentStatus::Completed,
        // The rest is resumable, with a larger budget or once the endpoint is back.
        Some(Stop::Interrupted | Stop::Budget | Stop::EndpointDown(_)) => {
            ExperimentStatus::Interrupted
        }
        Some(Stop::Auth(_) | Stop::Unreachable(_) | Stop::Rejected(_) | Stop::Broken(_)) => {
            ExperimentStatus::Failed
        }
    };
    Ok(Outcome {
        status,
        stop,
        wall: started.elapsed(),
        processed,
        oldest_cached: shared.counters.oldest_cached(),
        throttle: shared.plan.client.throttle().state(),
    })
}

/// Work items leased and not finished yet, so a worker leases only what it can soon run.
#[derive(Default)]
struct Outstanding {
    count: AtomicU64,
    freed: Notify,
}

impl Outstanding {
    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst) as usize
    }

    fn take(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn finish(&self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        self.freed.notify_one();
    }
}

/// Starts requests, never more than the gate allows at once.
struct Dispatcher<'a> {
    shared: &'a Arc<Shared>,
    gate: &'a Arc<crate::limit::Gate>,
    tasks: &'a mut JoinSet<()>,
    results: &'a mpsc::Sender<RunResult>,
    processed: &'a mut u64,
}

impl Dispatcher<'_> {
    /// Starts one row × repetition once a slot is free; false when the run stops instead.
    async fn send(
        &mut self,
        row: Arc<Row>,
        repetition: usize,
        outstanding: Option<Arc<Outstanding>>,
    ) -> bool {
        let shared = self.shared;
        if shared.halted() {
            return false;
        }
        let permit = tokio::select! {
            permit = self.gate.acquire() => match permit {
                Some(permit) => permit,
                None => return false,
            },
            _ = shared.stopped.notified() => return false,
        };
        if shared.halted() {
            return false;
        }
        let task_shared = shared.clone();
        let results = self.results.clone();
        self.tasks.spawn(async move {
            // None: not sent (the budget); nothing to store, the row stays to run.
            if let Some((result, gone)) = process(&task_shared, &row, repetition).await {
                let verdict = task_shared
                    .breaker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(result, gone.as_deref());
                match verdict {
                    Verdict::Store(ready) => forward(&task_shared, &results, ready).await,
                    Verdict::Hold => {}
                    Verdict::Trip(reason) => task_shared.halt(Stop::EndpointDown(reason)),
                }
            }
            drop(permit);
            if let Some(outstanding) = outstanding {
                outstanding.finish();
            }
        });
        *self.processed += 1;
        while let Some(joined) = self.tasks.try_join_next() {
            if let Err(e) = joined
                && e.is_panic()
            {
                shared.halt(Stop::Broken("a request task failed unexpectedly".into()));
            }
        }
        true
    }
}

/// Hands results to the writer. The writer only goes away when the store failed: then the run
/// stops rather than send requests whose answers could not be kept.
async fn forward(shared: &Shared, results: &mpsc::Sender<RunResult>, ready: Vec<RunResult>) {
    for result in ready {
        if results.send(result).await.is_err() {
            shared.halt(Stop::Broken("results could not be stored".into()));
            return;
        }
    }
}

/// The writer: takes whatever results have arrived (up to a batch) and commits them together.
fn write_all(
    sink: &dyn ResultSink,
    experiment_id: &str,
    mut results: mpsc::Receiver<RunResult>,
) -> Result<(), StoreError> {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = results.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match results.try_recv() {
                Ok(result) => batch.push(result),
                Err(_) => break,
            }
        }
        sink.write_results(experiment_id, &batch)?;
        batch.clear();
    }
    Ok(())
}

/// The variables a row renders with: its columns, `--column` renames, then `--var` constants.
fn row_vars(row: &Row, plan: &Plan) -> JsonObject {
    let settings = &plan.experiment.settings;
    let mut vars = row.values.clone();
    for (var, column) in &settings.columns {
        if let Some(value) = lookup(&row.values, column).cloned() {
            vars.insert(var.clone(), value);
        }
    }
    for (key, value) in &settings.vars {
        vars.insert(key.clone(), value.clone());
    }
    vars
}

fn expected_of(row: &Row, plan: &Plan) -> Option<String> {
    let column = plan.experiment.settings.expected_column.as_deref()?;
    match lookup(&row.values, column)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Cache key: endpoint, the exact request body, the row and the repetition. Keyed by row, a
/// cached answer is always this row's own answer from an earlier run: two rows that render the
/// same request are two samples, and a first run never reports an answer as cached.
pub(crate) fn cache_key(base_url: &str, body: &[u8], row_id: &str, repetition: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(base_url.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher.update(b"\n");
    hasher.update(row_id.len().to_string().as_bytes());
    hasher.update(b":");
    hasher.update(row_id.as_bytes());
    hasher.update(b"\n");
    hasher.update(repetition.to_string().as_bytes());
    hex(&hasher.finalize())
}

/// Clocks of machines that share a store differ by this much at most; an entry dated further
/// ahead claims a time no machine has seen.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How old a cache entry written at `created_at` is now; None when the time cannot be read or
/// lies in the future beyond clock skew (such an entry is treated as too old to trust: a date
/// ahead of now would otherwise make it fresh under any `--cache-ttl`, for ever).
fn entry_age(created_at: &str) -> Option<Duration> {
    let at =
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let age = (time::OffsetDateTime::now_utc() - at).as_seconds_f64();
    if age < -CLOCK_SKEW.as_secs_f64() {
        return None;
    }
    Some(Duration::from_secs_f64(age.max(0.0)))
}

/// Runs one row × repetition; None when the request was not sent because the budget would not
/// cover it (the run stops; the row is left for a resume). With the result comes, when its
/// call found no endpoint, why (for the breaker).
async fn process(
    shared: &Shared,
    row: &Row,
    repetition: usize,
) -> Option<(RunResult, Option<String>)> {
    let plan = &shared.plan;
    let started_at = crate::model::now();
    let vars = row_vars(row, plan);
    let expected = expected_of(row, plan);
    let mut result = RunResult {
        row_index: row.index as i64,
        row_id: row.id.clone(),
        repetition: repetition as i64,
        vars,
        expected,
        messages: Vec::new(),
        output: None,
        finish_reason: None,
        status: ResultStatus::Error,
        error_kind: None,
        error_message: None,
        http_status: None,
        attempts: 0,
        latency_ms: 0.0,
        prompt_tokens: None,
        completion_tokens: None,
        cached: false,
        started_at,
        finished_at: String::new(),
        scores: Vec::new(),
        cache_key: None,
    };
    let outcome = match plan.template.render(&result.vars) {
        Err(e) => Err(Failure {
            kind: FailureKind::InvalidResponse,
            message: e.to_string(),
            http_status: None,
            attempts: 0,
            latency_ms: 0.0,
        }),
        Ok(messages) => {
            let body = request_body(&plan.experiment.model, &messages, &plan.version.params);
            result.messages = messages;
            call(shared, &body, repetition, &mut result).await
        }
    };
    let mut gone = None;
    match outcome {
        Ok(completion) => {
            shared.any_ok.store(true, Ordering::Relaxed);
            result.status = ResultStatus::Ok;
            result.output = Some(completion.text);
            result.finish_reason = completion.finish_reason;
            result.http_status = Some(completion.http_status);
            result.attempts = completion.attempts;
            result.latency_ms = completion.latency_ms;
            result.prompt_tokens = completion.prompt_tokens;
            result.completion_tokens = completion.completion_tokens;
            result.scores = score(shared, &result).await;
        }
        Err(failure) if failure.kind == FailureKind::Budget => {
            shared.halt(Stop::Budget);
            return None;
        }
        Err(failure) => {
            // Before any answer, a refused key or an endpoint that cannot be reached is a
            // setup problem: stop instead of failing every row the same way.
            if !shared.any_ok.load(Ordering::Relaxed) {
                match failure.kind {
                    FailureKind::Auth => shared.halt(Stop::Auth(failure.message.clone())),
                    FailureKind::Unreachable => {
                        shared.halt(Stop::Unreachable(failure.message.clone()))
                    }
                    // The same refusal again and again before any answer (a misspelled model,
                    // a proxy without a key behind it): every row would fail the same way.
                    FailureKind::Http | FailureKind::InvalidResponse => {
                        if shared.same_failure(failure.http_status, &failure.message) {
                            shared.halt(Stop::Rejected(failure.message.clone()));
                        }
                    }
                    FailureKind::Timeout | FailureKind::Connection | FailureKind::Budget => {}
                }
            }
            if endpoint_gone(&failure) {
                gone = Some(failure.message.clone());
            }
            // A template that cannot render this row never reached the endpoint.
            result.error_kind = Some(if result.messages.is_empty() {
                "render".to_string()
            } else {
                failure.kind.as_str().to_string()
            });
            result.error_message = Some(failure.message);
            result.http_status = failure.http_status;
            result.attempts = failure.attempts;
            result.latency_ms = failure.latency_ms;
            result.scores = plan
                .evaluators
                .iter()
                .map(|e| Score::call_failed(e.name()))
                .collect();
        }
    }
    result.finished_at = crate::model::now();
    if let Some(key) = crate::redact::key(plan.client.api_key()) {
        scrub(&mut result, key);
    }
    let counters = &shared.counters;
    counters.done.fetch_add(1, Ordering::Relaxed);
    if result.status == ResultStatus::Error {
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    if result.cached {
        counters.cached.fetch_add(1, Ordering::Relaxed);
    }
    Some((result, gone))
}

/// The last line of defence for the key: an answer, an error or a scorer's reason that repeats
/// it (an echoing endpoint, a scorer that prints its environment) is stored without it.
fn scrub(result: &mut RunResult, key: &str) {
    let clean = |text: &mut String| {
        if text.contains(key) {
            *text = crate::redact::apply(text, key);
        }
    };
    for text in [
        &mut result.output,
        &mut result.error_message,
        &mut result.expected,
    ]
    .into_iter()
    .flatten()
    {
        clean(text);
    }
    fn clean_value(value: &mut Value, clean: &dyn Fn(&mut String)) {
        match value {
            Value::String(text) => clean(text),
            Value::Array(items) => items.iter_mut().for_each(|v| clean_value(v, clean)),
            Value::Object(map) => map.values_mut().for_each(|v| clean_value(v, clean)),
            _ => {}
        }
    }
    for value in result.vars.values_mut() {
        clean_value(value, &clean);
    }
    for score in &mut result.scores {
        clean(&mut score.reason);
    }
    for message in &mut result.messages {
        clean(&mut message.content);
    }
}

/// The answer from the cache when it is there, else from the endpoint.
async fn call(
    shared: &Shared,
    body: &Value,
    repetition: usize,
    result: &mut RunResult,
) -> Result<Completion, Failure> {
    let plan = &shared.plan;
    if let Some(cache) = &shared.cache {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let key = cache_key(plan.client.base_url(), &bytes, &result.row_id, repetition);
        let hit = if plan.cache.read {
            cache.cached_response(&key).ok().flatten()
        } else {
            None
        };
        let hit = hit.and_then(|hit| {
            let age = entry_age(&hit.created_at)?;
            plan.cache
                .max_age
                .is_none_or(|max| age <= max)
                .then_some((hit, age))
        });
        if let Some((hit, age)) = hit {
            shared.counters.note_cache_age(age);
            result.cached = true;
            return Ok(Completion {
                text: hit.output,
                finish_reason: hit.finish_reason,
                prompt_tokens: hit.prompt_tokens,
                completion_tokens: hit.completion_tokens,
                http_status: hit.http_status.unwrap_or(200),
                attempts: 0,
                latency_ms: hit.latency_ms,
            });
        }
        if plan.cache.write {
            result.cache_key = Some(key);
        }
    }
    // A cached answer costs nothing; a call holds its estimated cost until it is answered.
    let reservation = match &plan.budget {
        Some(budget) => {
            let (prompt, completion) = plan.client.estimate(body);
            match budget.reserve_waiting(prompt, completion).await {
                Some(reservation) => Some((budget, reservation)),
                None => {
                    return Err(Failure {
                        kind: FailureKind::Budget,
                        message: format!(
                            "not sent: it would take the run past --max-cost {}",
                            crate::cost::usd(budget.max_usd)
                        ),
                        http_status: None,
                        attempts: 0,
                        latency_ms: 0.0,
                    });
                }
            }
        }
        None => None,
    };
    let answer = plan.client.complete(body).await;
    if let Some((budget, reservation)) = reservation {
        match &answer {
            Ok(c) => budget.settle(reservation, c.prompt_tokens.zip(c.completion_tokens)),
            Err(_) => budget.release(reservation),
        }
    }
    answer
}

async fn score(shared: &Shared, result: &RunResult) -> Vec<Score> {
    let plan = &shared.plan;
    let output = result.output.as_deref().unwrap_or("");
    let input = EvalInput {
        vars: &result.vars,
        output,
        expected: result.expected.as_deref(),
        latency_ms: result.latency_ms,
    };
    let mut scores = Vec::with_capacity(plan.evaluators.len());
    for evaluator in &plan.evaluators {
        let score = if let Some(messages) = evaluator.judge_messages(&input) {
            judge(shared, evaluator, &messages).await
        } else if evaluator.blocks() {
            // An external program blocks while it runs; keep it off the async workers.
            tokio::task::block_in_place(|| evaluator.score(&input))
        } else {
            evaluator.score(&input)
        };
        scores.push(score);
    }
    scores
}

async fn judge(shared: &Shared, evaluator: &Evaluator, messages: &[Message]) -> Score {
    let mut params = JsonObject::new();
    params.insert("temperature".into(), json!(0));
    let body = request_body(&shared.plan.judge_model, messages, &params);
    match shared.plan.client.complete(&body).await {
        Ok(reply) => evaluator.judge_verdict(&reply.text),
        Err(failure) => Score {
            evaluator: evaluator.name().to_string(),
            score: 0.0,
            pass: false,
            reason: format!("the judge call failed: {}", failure.message),
            error: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_bits() {
        let mut done = Done::new(100, 3);
        assert!(!done.contains(5, 2));
        done.insert(5, 2);
        done.insert(99, 2);
        assert!(done.contains(5, 2));
        assert!(done.contains(99, 2));
        assert!(!done.contains(5, 1));
        assert!(!done.contains(6, 0));
        // Out of range is never "done" and never panics.
        done.insert(1000, 0);
        assert!(!done.contains(1000, 0));
    }

    fn result(status: ResultStatus, called: bool, cached: bool) -> RunResult {
        RunResult {
            row_index: 0,
            row_id: "0".into(),
            repetition: 0,
            vars: JsonObject::new(),
            expected: None,
            messages: if called {
                vec![Message::text("user", "hi")]
            } else {
                Vec::new()
            },
            output: None,
            finish_reason: None,
            status,
            error_kind: None,
            error_message: None,
            http_status: None,
            attempts: 1,
            latency_ms: 0.0,
            prompt_tokens: None,
            completion_tokens: None,
            cached,
            started_at: String::new(),
            finished_at: String::new(),
            scores: Vec::new(),
            cache_key: None,
        }
    }

    fn stored(verdict: Verdict) -> usize {
        match verdict {
            Verdict::Store(results) => results.len(),
            Verdict::Hold => 0,
            Verdict::Trip(_) => usize::MAX,
        }
    }

    #[test]
    fn the_breaker_holds_a_streak_and_trips_at_its_length() {
        let mut breaker = Breaker::new();
        let gone = Some("connection refused");
        for _ in 0..BREAKER_ROWS - 1 {
            assert_eq!(
                stored(breaker.take(result(ResultStatus::Error, true, false), gone)),
                0
            );
        }
        // A cached answer and a row that never rendered say nothing of the endpoint.
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Ok, true, true), None)),
            1
        );
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Error, false, false), None)),
            1
        );
        match breaker.take(result(ResultStatus::Error, true, false), gone) {
            Verdict::Trip(reason) => assert!(reason.contains("20 rows in a row"), "{reason}"),
            _ => panic!("the 20th failed row in a row trips the breaker"),
        }
        // After a trip, failed rows are dropped (a resume sends them again), never stored.
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Error, true, false), gone)),
            0
        );
        assert!(breaker.drain().is_empty());
    }

    #[test]
    fn an_answer_ends_a_streak_and_its_rows_are_stored_as_failures() {
        let mut breaker = Breaker::new();
        let gone = Some("HTTP 503");
        for _ in 0..5 {
            breaker.take(result(ResultStatus::Error, true, false), gone);
        }
        // A 400 is an answer: the endpoint is there, so the streak's rows failed as rows.
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Error, true, false), None)),
            6
        );
        breaker.take(result(ResultStatus::Error, true, false), gone);
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Ok, true, false), None)),
            2
        );
        breaker.take(result(ResultStatus::Error, true, false), gone);
        assert_eq!(
            breaker.drain().len(),
            1,
            "a run that ends in a short streak stores it"
        );
    }

    #[test]
    fn silence_trips_the_breaker_with_fewer_rows() {
        let mut breaker = Breaker::new();
        breaker.last_answer = Instant::now() - BREAKER_SILENCE;
        let gone = Some("timed out");
        for _ in 0..BREAKER_MIN_ROWS - 1 {
            assert_eq!(
                stored(breaker.take(result(ResultStatus::Error, true, false), gone)),
                0
            );
        }
        assert!(matches!(
            breaker.take(result(ResultStatus::Error, true, false), gone),
            Verdict::Trip(_)
        ));
    }

    #[test]
    fn what_counts_as_an_endpoint_gone() {
        let failure = |kind, status| Failure {
            kind,
            message: String::new(),
            http_status: status,
            attempts: 1,
            latency_ms: 0.0,
        };
        assert!(endpoint_gone(&failure(FailureKind::Connection, None)));
        assert!(endpoint_gone(&failure(FailureKind::Unreachable, None)));
        assert!(endpoint_gone(&failure(FailureKind::Timeout, None)));
        assert!(endpoint_gone(&failure(FailureKind::Http, Some(502))));
        assert!(endpoint_gone(&failure(FailureKind::Http, Some(429))));
        assert!(!endpoint_gone(&failure(FailureKind::Http, Some(400))));
        assert!(!endpoint_gone(&failure(
            FailureKind::InvalidResponse,
            Some(200)
        )));
        assert!(!endpoint_gone(&failure(FailureKind::Auth, Some(401))));
    }

    #[test]
    fn a_cache_entry_dated_in_the_future_is_never_fresh() {
        let at = |offset: time::Duration| {
            crate::model::format_time(time::OffsetDateTime::now_utc() + offset)
        };
        assert!(entry_age(&at(time::Duration::days(365))).is_none());
        assert!(entry_age(&at(time::Duration::minutes(5))).is_none());
        // Within clock skew it is just new; in the past it has its age.
        assert_eq!(
            entry_age(&at(time::Duration::seconds(10))),
            Some(Duration::ZERO)
        );
        let hour = entry_age(&at(time::Duration::hours(-1))).unwrap();
        assert!(hour >= Duration::from_secs(3599), "{hour:?}");
        assert!(entry_age("yesterday").is_none());
    }

    #[test]
    fn cache_keys_differ_by_endpoint_body_row_and_repetition() {
        let a = cache_key("http://a", b"{}", "1", 0);
        assert_eq!(a, cache_key("http://a", b"{}", "1", 0));
        assert_ne!(a, cache_key("http://b", b"{}", "1", 0));
        assert_ne!(a, cache_key("http://a", b"{ }", "1", 0));
        assert_ne!(a, cache_key("http://a", b"{}", "2", 0));
        assert_ne!(a, cache_key("http://a", b"{}", "1", 1));
        // The row id is length-prefixed: no id and body split can collide with another.
        assert_ne!(cache_key("u", b"x", "12", 0), cache_key("u", b"x", "1", 20));
    }
}
