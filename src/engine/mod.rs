//! The row engine: runs (or resumes) an experiment with bounded concurrency over a dataset's
//! rows or a work queue's items, streaming every result to one writer so nothing accumulates in
//! memory. This file owns a run's public types and `run`, which puts the steps together:
//! `dispatch` sends the work out as tokio tasks, `row` makes one row's result, `breaker` judges
//! failed calls, `writer` commits results in batches on its own thread, `done` tracks what a
//! resume skips, `state` is what the tasks share, `cache` keys cached answers and `preflight`
//! checks a plan's variables. It must not parse flags, print, or decide what an outcome means
//! for a command: that is the workflow's.

pub mod client;
pub mod eval;
pub mod limit;
pub mod mock;
pub mod target;

mod breaker;
mod cache;
mod dispatch;
mod done;
mod preflight;
mod row;
mod state;
mod writer;

pub use breaker::{BREAKER_MIN_ROWS, BREAKER_ROWS, BREAKER_SILENCE};
pub(crate) use cache::cache_key;
pub use done::{Done, Feed, Source};
pub use preflight::{EmptyInput, Missing, empty_inputs, preflight};
pub use row::{EXPECTED_TURNS, TURNS, turns_of, vars_of};

use crate::client::Client;
use crate::dataset::DatasetError;
use crate::eval::Evaluator;
use crate::model::{Experiment, ExperimentStatus, PromptVersion, RunResult};
use crate::store::{ResponseCache, ResultSink, StoreError};
use crate::template::CompiledTemplate;
use dispatch::{Dispatched, Dispatcher, join_all};
use state::{Counters, Shared};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use writer::{Writer, forward};

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

/// How long in-flight requests may finish after an interruption before they are abandoned.
pub const GRACE_PERIOD: Duration = Duration::from_secs(5);

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
    /// `--target`: the application that answers each row instead of one call to `client`
    /// (which judges still use).
    pub target: Option<Arc<target::Target>>,
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

/// A run failed as a whole (the store, or the dataset changed under us).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("the result writer failed: {0}")]
    Writer(String),
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
    interrupt: impl Future<Output = ()>,
) -> Result<Outcome, RunError> {
    let started = Instant::now();
    reporter.report(RunEvent::Started {
        experiment: &plan.experiment,
        planned: plan.experiment.planned as u64,
        already: source.already(),
    });
    let shared = Shared::new(plan, cache);
    // One writer thread writes every result; results reach it as they finish.
    let (results, writer) = Writer::start(sink, shared.plan.experiment.id.clone());
    tokio::pin!(interrupt);
    let (dispatched, mut tasks) =
        dispatch(&shared, source, &results, &mut interrupt, reporter).await;
    finish_in_flight(&shared, &mut tasks, &mut interrupt, reporter).await;
    store_held(&shared, &results).await;
    reporter.report(RunEvent::Progress(shared.counters.tally()));
    reporter.report(RunEvent::Stopped);
    drop(results);
    let parsed_hash = dispatched.reader.map(|reader| reader.join());
    writer.finish().await?;
    if let Some(e) = dispatched.dataset_error {
        return Err(e.into());
    }
    check_dataset(&shared, parsed_hash);
    Ok(outcome(&shared, started, dispatched.processed))
}

/// Sends the source's work out, reporting progress meanwhile, until it runs out, the run
/// stops, or `interrupt` resolves (which stops the run). The dispatcher runs as a task on the
/// runtime's workers (see `Dispatcher`); an interrupt halts the run, which it sees at its next
/// row.
async fn dispatch<F: Future<Output = ()>>(
    shared: &Arc<Shared>,
    source: Source,
    results: &mpsc::Sender<RunResult>,
    interrupt: &mut Pin<&mut F>,
    reporter: &dyn Reporter,
) -> (Dispatched, JoinSet<()>) {
    let mut dispatcher = Dispatcher::new(shared.clone(), JoinSet::new(), results.clone());
    let mut running = tokio::spawn(async move {
        dispatcher.dispatch(source).await;
        dispatcher.finish()
    });
    let joined = tokio::select! {
        joined = ticking(&mut running, &shared.counters, reporter) => joined,
        _ = interrupt.as_mut() => {
            shared.halt(Stop::Interrupted);
            // It stops at its next row. One held up longer (a worker's claim on a store that
            // does not answer) is not waited out: it is stopped, with what it had in flight,
            // whose rows stay to run.
            match tokio::time::timeout(
                GRACE_PERIOD,
                ticking(&mut running, &shared.counters, reporter),
            )
            .await
            {
                Ok(joined) => joined,
                Err(_) => {
                    running.abort();
                    running.await
                }
            }
        }
    };
    match joined {
        Ok(finished) => finished,
        Err(e) => {
            // A dispatcher that panicked, or was stopped after an interrupt's grace, took its
            // tasks with it (a JoinSet aborts them when dropped): their rows have no result,
            // and the run is broken (or interrupted, the reason given first), never complete.
            shared.halt(Stop::Broken(format!(
                "sending the rows failed unexpectedly: {e}"
            )));
            (Dispatched::default(), JoinSet::new())
        }
    }
}

/// What is in flight finishes; after an interruption (before or during this wait) only for a
/// grace period, or until a second Ctrl-C, then it is abandoned.
async fn finish_in_flight<F: Future<Output = ()>>(
    shared: &Shared,
    tasks: &mut JoinSet<()>,
    interrupt: &mut Pin<&mut F>,
    reporter: &dyn Reporter,
) {
    let counters = &shared.counters;
    if !shared.interrupted() {
        tokio::select! {
            _ = ticking(join_all(tasks, shared), counters, reporter) => {}
            _ = interrupt.as_mut() => shared.halt(Stop::Interrupted),
        }
    }
    if shared.interrupted() {
        reporter.report(RunEvent::Interrupted {
            grace: GRACE_PERIOD,
        });
        let grace = tokio::time::timeout(GRACE_PERIOD, join_all(tasks, shared));
        // A second Ctrl-C ends the wait at once: the rows in flight are abandoned (no answer,
        // nothing stored), and a resume runs them.
        let finished = tokio::select! {
            waited = ticking(grace, counters, reporter) => waited.is_ok(),
            _ = tokio::signal::ctrl_c() => false,
        };
        if !finished {
            tasks.abort_all();
            join_all(tasks, shared).await;
        }
    }
}

/// A streak the run ended in without tripping the breaker: those rows failed as rows, and go
/// to the writer, unless the run stopped because the endpoint could not be reached at all.
async fn store_held(shared: &Shared, results: &mpsc::Sender<RunResult>) {
    let unreachable = matches!(shared.reason(), Some(Stop::Unreachable(_)));
    let held = if unreachable {
        Vec::new()
    } else {
        shared
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
    };
    forward(shared, results, held).await;
}

/// Stops the run as broken when the dataset is not the one the experiment recorded.
///
/// The rows were read a second time for the run: the results belong to the recorded hash only
/// if the bytes they were parsed from hash to it (a file overwritten and restored during the
/// run is caught too). The file as it is now must hash the same too: a file that changed after
/// its rows were read no longer names the content the results came from. A worker reads no
/// dataset (`parsed_hash` is None): the rows came with its work items.
fn check_dataset(
    shared: &Shared,
    parsed_hash: Option<std::thread::Result<Result<String, DatasetError>>>,
) {
    let expected_hash = &shared.plan.experiment.dataset.hash;
    let parsed_matches = matches!(&parsed_hash, None | Some(Ok(Ok(_))))
        && !matches!(&parsed_hash, Some(Ok(Ok(hash))) if hash != expected_hash);
    let file_matches = parsed_hash.is_none()
        || !crate::dataset::file_hash(&shared.plan.dataset)
            .is_ok_and(|hash| &hash != expected_hash);
    if !(parsed_matches && file_matches) {
        shared.halt(Stop::Broken(format!(
            "dataset {} changed while the experiment ran",
            shared.plan.dataset.display()
        )));
    }
}

/// How the run ended: its status follows from why it stopped, if it did.
fn outcome(shared: &Shared, started: Instant, processed: u64) -> Outcome {
    let stop = shared.reason();
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
    Outcome {
        status,
        stop,
        wall: started.elapsed(),
        processed,
        oldest_cached: shared.counters.oldest_cached(),
        throttle: shared.plan.client.throttle().state(),
    }
}

/// Runs `work`, reporting the run's progress every `PROGRESS_EVERY` meanwhile.
async fn ticking<F: Future>(work: F, counters: &Counters, reporter: &dyn Reporter) -> F::Output {
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
