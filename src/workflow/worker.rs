//! One experiment across many machines: plan it as work items (`experiment --detach`), let any
//! number of workers lease and run them (`runner worker`), wait for the last result
//! (`experiment wait`). The store is the coordinator: a worker holds leases it renews while it
//! works, writes each result in the transaction that completes its item, and a dead worker's
//! items are leased again once its leases run out. It parses no flag and prints nothing (progress
//! goes to the `Reporter` it is handed), and it must not hand out work itself: claims and leases
//! are the store's work queue's.

use super::Context;
use super::experiment::{
    Prepared, client, dataset_error, evaluators, fingerprint, hostname, legacy_fingerprint, plan,
    probe, runtime,
};
use super::settings::WorkerSettings;
use crate::dataset;
use crate::engine::{self, Feed, Reporter, Source, Stop};
use crate::error::{Error, Result};
use crate::limit::Throttle;
use crate::model::{
    DatasetRef, Detached, Experiment, ExperimentStatus, NewExperiment, RunResult, VersionRef,
};
use crate::store::{ResultSink, Store, StoreError, WorkCounts, WorkItem};
use crate::template::CompiledTemplate;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a worker's lease on its items lasts without renewal (renewed every third of it):
/// a worker that dies holds its items this long, then another worker takes them.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A detached experiment as planned: the experiment, and whether this call created it.
pub struct Planned {
    pub experiment: Experiment,
    pub created: bool,
    pub counts: WorkCounts,
}

/// Plans a prepared run as work items: the experiment and one item per row × repetition in one
/// transaction, each item with its row's values, so workers need only the store. Sends nothing.
/// Its key and check are the settings' (`ExperimentSettings::for_experiment` with `--detach`).
pub fn detach(prepared: Prepared, ctx: &Context) -> Result<Planned> {
    let asked = &prepared.settings;
    let mut settings = asked.run.clone();
    let key = settings
        .detached
        .get_or_insert_with(Detached::default)
        .key
        .clone();
    let rows = settings
        .limit
        .map_or(prepared.info.rows, |l| l.min(prepared.info.rows));
    let new = NewExperiment {
        name: asked.name.clone(),
        prompt: Some(asked.prompt.clone()),
        version_id: Some(prepared.version.id.clone()),
        tag: prepared.tag.clone(),
        dataset: DatasetRef {
            path: asked.dataset_label.clone().unwrap_or_else(|| {
                std::fs::canonicalize(&asked.dataset)
                    .unwrap_or_else(|_| asked.dataset.clone())
                    .display()
                    .to_string()
            }),
            hash: prepared.info.hash.clone(),
            rows: prepared.info.rows as i64,
            columns: prepared.info.columns.clone(),
        },
        model: prepared.model.clone(),
        base_url: asked.base_url.clone(),
        evaluators: prepared.specs.clone(),
        planned: (rows * settings.repetitions) as i64,
        settings: settings.clone(),
        author: ctx.author.clone(),
        fingerprint: prepared.fingerprint.clone(),
    };
    let store = ctx.store()?;
    let mut source = dataset::rows(&asked.dataset).map_err(dataset_error)?;
    let mut left = rows;
    let mut failure = None;
    let planned = store.plan_experiment(
        &new,
        key.as_deref(),
        settings.repetitions as i64,
        &mut || {
            if left == 0 {
                return Ok(None);
            }
            left -= 1;
            match source.next() {
                None => Ok(None),
                Some(Ok(row)) => Ok(Some((row.index as i64, row.id, row.values))),
                Some(Err(e)) => {
                    failure = Some(e);
                    Err(StoreError::Abandoned)
                }
            }
        },
    );
    let (experiment, created) = match (planned, failure) {
        (Ok(planned), _) => planned,
        (Err(StoreError::Abandoned), Some(e)) => return Err(dataset_error(e)),
        (Err(e), _) => return Err(e.into()),
    };
    if !created && store.fingerprint(&experiment.id)?.as_deref() != Some(&prepared.fingerprint) {
        return Err(Error::invalid(format!(
            "--key {} already names experiment {}, planned with other settings",
            key.as_deref().unwrap_or_default(),
            experiment.id
        ))
        .with_hint(
            "every job that shares a key must run the same command on the same files; \
             put the configuration into the key",
        ));
    }
    let counts = store.work_counts(&experiment.id)?.unwrap_or_default();
    Ok(Planned {
        experiment,
        created,
        counts,
    })
}

/// How a worker's run ended.
#[derive(Debug, Clone)]
pub struct WorkerOutcome {
    pub experiment: Experiment,
    pub owner: String,
    /// Results this worker wrote.
    pub written: u64,
    /// Results it had to drop: their lease had been taken over by another worker.
    pub dropped: u64,
    pub errored: u64,
    pub wall: Duration,
    pub counts: WorkCounts,
    pub status: ExperimentStatus,
}

/// Who a worker is, as its leases name it: unique even for two workers in one process.
fn worker_owner() -> String {
    format!(
        "worker {:04x} pid {} on {}",
        fastrand::u16(..),
        std::process::id(),
        hostname()
    )
}

/// A detached experiment by id, refusing one that is not.
fn detached(store: &dyn Store, id: &str) -> Result<(Experiment, WorkCounts)> {
    let experiment = store.experiment(id)?;
    match store.work_counts(&experiment.id)? {
        Some(counts) => Ok((experiment, counts)),
        None => Err(Error::invalid(format!(
            "experiment {} was not planned for workers",
            experiment.id
        ))
        .with_hint(format!(
            "plan one with `runner experiment ... --detach`; this one runs with `runner experiment resume {}`",
            experiment.id
        ))),
    }
}

/// Leases from the store's queue: items free now, an empty list while others hold the rest,
/// None when every item is done (or the experiment failed).
struct QueueFeed {
    store: Arc<dyn Store>,
    id: String,
    owner: String,
    lease: Duration,
}

impl Feed for QueueFeed {
    fn next(&self, max: usize) -> std::result::Result<Option<Vec<WorkItem>>, StoreError> {
        let items = self
            .store
            .claim_items(&self.id, &self.owner, self.lease, max)?;
        if !items.is_empty() {
            return Ok(Some(items));
        }
        let counts = self.store.work_counts(&self.id)?.unwrap_or_default();
        if counts.done >= counts.items
            || self.store.experiment(&self.id)?.status == ExperimentStatus::Failed
        {
            return Ok(None);
        }
        Ok(Some(Vec::new()))
    }
}

/// Completes items as their results arrive: a result whose lease another worker took over is
/// dropped, never written.
struct ItemSink {
    store: Arc<dyn Store>,
    owner: String,
    written: AtomicU64,
    dropped: AtomicU64,
    errored: AtomicU64,
}

impl ResultSink for ItemSink {
    fn write_results(
        &self,
        experiment_id: &str,
        batch: &[RunResult],
    ) -> std::result::Result<(), StoreError> {
        let written = self
            .store
            .complete_items(experiment_id, &self.owner, batch)?;
        self.written.fetch_add(written as u64, Ordering::Relaxed);
        self.dropped
            .fetch_add((batch.len() - written) as u64, Ordering::Relaxed);
        let errored = batch
            .iter()
            .filter(|r| r.status == crate::model::ResultStatus::Error)
            .count();
        self.errored.fetch_add(errored as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// How often a worker that shares rate limits looks again at how many workers share them: a
/// worker that joins runs at most this long before the others slow down for it.
const SHARE_TICK: Duration = Duration::from_millis(500);

/// The experiment's `--max-rpm` / `--max-tpm`, kept by all its workers together: each paces at
/// the limit ÷ the workers holding live leases (itself included), looked at again every
/// `SHARE_TICK` (a worker that stops holding leases, finished or dead, frees its share
/// once its leases are done or run out).
struct Share {
    throttle: Arc<Throttle>,
    max_rpm: Option<f64>,
    max_tpm: Option<f64>,
}

impl Share {
    /// Sets this worker's share from the workers holding leases now; returns how many share.
    fn update(&self, store: &dyn Store, id: &str, owner: &str) -> Option<usize> {
        let others = store
            .lease_owners(id)
            .ok()?
            .iter()
            .filter(|o| *o != owner)
            .count();
        self.throttle
            .limits
            .share(self.max_rpm, self.max_tpm, others + 1);
        Some(others + 1)
    }
}

/// Renews a worker's leases every third of their length until dropped, and keeps its share of
/// the experiment's rate limits.
struct Renewer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Renewer {
    fn start(
        store: Arc<dyn Store>,
        id: String,
        owner: String,
        lease: Duration,
        share: Option<Share>,
    ) -> Renewer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let every = lease / 3;
        let tick = match &share {
            Some(_) => every.min(SHARE_TICK),
            None => every,
        };
        let thread = std::thread::spawn(move || {
            let mut renewed = Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                if renewed.elapsed() + tick / 2 >= every {
                    // A failed renewal is retried at the next tick; a lease that ran out
                    // meanwhile may be taken over, and then this worker's result for it is
                    // dropped.
                    let _ = store.renew_items(&id, &owner, lease);
                    renewed = Instant::now();
                }
                if let Some(share) = &share {
                    // A failed look keeps the share as it was until the next tick.
                    share.update(&*store, &id, &owner);
                }
            }
        });
        Renewer {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs items of a detached experiment until none is left, the endpoint refuses this worker,
/// or `interrupt` resolves (its unfinished items are given back at once).
pub fn work(
    ctx: &Context,
    settings: &WorkerSettings,
    reporter: &dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> Result<WorkerOutcome> {
    let store = ctx.store()?;
    let (mut experiment, _) = detached(&*store, &settings.id)?;
    if experiment.status == ExperimentStatus::Failed {
        return Err(Error::operational(format!(
            "experiment {} failed: a worker stopped it",
            experiment.id
        ))
        .with_hint("the stored results are kept; plan a new experiment once the cause is fixed"));
    }
    if let Some(concurrency) = settings.concurrency {
        experiment.settings.concurrency = concurrency;
    }
    let (prompt, version_id, _) = crate::workflow::runnable(&experiment)?;
    let version = store.version(prompt, &VersionRef::Id(version_id.to_string()))?;
    let template = CompiledTemplate::compile(version.format, &version.template)?;
    // `--target` is refused with `--detach`; an experiment that names one anyway (written by
    // hand into the store) must not have its rows answered by the endpoint instead.
    if let Some(target) = &experiment.settings.target {
        return Err(Error::invalid(format!(
            "experiment {} is answered by the target {target}, which workers do not run",
            experiment.id
        ))
        .with_hint(format!(
            "run it in one process: runner experiment resume {}",
            experiment.id
        )));
    }
    // The store names the evaluators, and anyone who can write it could name any program or
    // file: this machine runs (or reads) only those its own command line or runner.toml
    // allows, checked before any is prepared.
    let allowed: Vec<String> = settings
        .allowed
        .iter()
        .map(|a| crate::eval::normalized(a))
        .collect();
    if let Some(spec) = experiment.evaluators.iter().find(|spec| {
        crate::eval::reaches_out(spec) && !allowed.contains(&crate::eval::normalized(spec))
    }) {
        let hint = match spec.split_once(':') {
            Some(("cmd", program)) => format!(
                "if you trust it: runner worker {} --allow-cmd '{}' (or allow_cmd under [worker] in runner.toml)",
                experiment.id,
                program.trim()
            ),
            _ => format!(
                "if you trust it: runner worker {} --allow-eval '{}' (or allow_eval under [worker] in runner.toml)",
                experiment.id,
                crate::eval::normalized(spec)
            ),
        };
        return Err(Error::invalid(format!(
            "experiment {} names evaluator '{spec}', which runs a program or reads a file on this \
             machine; a worker runs only those it is allowed",
            experiment.id
        ))
        .with_hint(hint));
    }
    let evaluators = evaluators(
        &experiment.evaluators,
        experiment.settings.expected_column.is_some(),
    )?;
    // Evaluator files (rubrics, schemas, programs) are read here: they must be those the
    // experiment was planned with.
    let expected = [
        fingerprint(
            &version.id,
            &experiment.dataset.hash,
            &experiment.model,
            &evaluators,
            &experiment.settings,
        ),
        legacy_fingerprint(
            &version.id,
            &experiment.dataset.hash,
            &experiment.model,
            &experiment.base_url,
            &evaluators,
            &experiment.settings,
        ),
    ];
    let stored = store.fingerprint(&experiment.id)?;
    if !expected.iter().any(|e| stored.as_deref() == Some(e)) {
        return Err(Error::invalid(format!(
            "the evaluator files here differ from those experiment {} was planned with",
            experiment.id
        ))
        .with_hint("run the worker from a checkout of the same commit as the planning job"));
    }
    let base_url = settings
        .base_url
        .clone()
        .unwrap_or_else(|| experiment.base_url.clone());
    let client = client(&base_url, &experiment.settings)?;
    let runtime = runtime()?;
    probe(&runtime, client.base_url())?;
    let owner = worker_owner();
    let counts = store.work_counts(&experiment.id)?.unwrap_or_default();
    let (max_rpm, max_tpm) = (experiment.settings.max_rpm, experiment.settings.max_tpm);
    let share = (max_rpm.is_some() || max_tpm.is_some()).then(|| Share {
        throttle: client.throttle(),
        max_rpm,
        max_tpm,
    });
    if let Some(share) = &share
        && let Some(workers) = share.update(&*store, &experiment.id, &owner)
        && workers > 1
    {
        reporter.report(engine::RunEvent::Notice(format!(
            "sharing the experiment's rate limits with {} other worker(s)",
            workers - 1
        )));
    }
    let renewer = Renewer::start(
        store.clone(),
        experiment.id.clone(),
        owner.clone(),
        settings.lease,
        share,
    );
    let sink = Arc::new(ItemSink {
        store: store.clone(),
        owner: owner.clone(),
        written: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        errored: AtomicU64::new(0),
    });
    let feed = Arc::new(QueueFeed {
        store: store.clone(),
        id: experiment.id.clone(),
        owner: owner.clone(),
        lease: settings.lease,
    });
    let dataset = crate::workflow::datasets::recorded(
        &*store,
        &experiment.dataset.path,
        &experiment.dataset.hash,
    )?;
    let id = experiment.id.clone();
    let mock = client.mock();
    let already_mock = experiment.settings.mock;
    let plan = plan(
        experiment, version, template, &dataset, evaluators, client, None,
    );
    let started = Instant::now();
    let outcome = runtime.block_on(engine::run(
        plan,
        sink.clone(),
        store.clone(),
        Source::Queue {
            feed,
            already: counts.done as u64,
        },
        reporter,
        interrupt,
    ));
    drop(renewer);
    // Whatever this worker still holds goes back at once, not when its leases run out.
    let _ = store.release_items(&id, &owner);
    let outcome = outcome.map_err(|e| match e {
        engine::RunError::Store(e) => Error::from(e),
        other => Error::operational(format!("worker stopped: {other}")),
    })?;
    if !already_mock && mock.load(std::sync::atomic::Ordering::Relaxed) {
        store.mark_mock(&id)?;
    }
    match &outcome.stop {
        Some(Stop::Auth(message) | Stop::Unreachable(message) | Stop::Rejected(message)) => {
            // Every worker would fail the same way: the experiment fails, so `experiment
            // wait` returns now instead of at its timeout.
            store.finish_experiment(&id, ExperimentStatus::Failed, 0)?;
            return Err(Error::operational(format!(
                "experiment {id} failed: the endpoint refused this worker before any call succeeded: {message}"
            ))
            .with_hint(
                "check OPENAI_API_KEY, --base-url and the model; the results stored so far are kept",
            ));
        }
        Some(Stop::EndpointDown(reason)) => {
            let counts = store.work_counts(&id)?.unwrap_or_default();
            return Err(Error::operational(format!(
                "worker stopped: the endpoint stopped answering ({reason}); experiment {id}: \
                 {}/{} items done, this worker's unfinished items went back to the queue",
                counts.done, counts.items
            ))
            .with_hint(format!(
                "once the endpoint answers again, start workers: runner worker {id}"
            )));
        }
        Some(Stop::Broken(message)) => {
            return Err(
                Error::operational(format!("worker stopped: {message}")).with_hint(format!(
                    "its items go back to the queue; start another: runner worker {id}"
                )),
            );
        }
        _ => {}
    }
    if outcome.stop.is_none() {
        store.finish_work(&id)?;
    }
    // As read back: a run that completed with errored results says so.
    let experiment = store.experiment(&id)?;
    let status = experiment.status;
    let counts = store.work_counts(&id)?.unwrap_or_default();
    Ok(WorkerOutcome {
        experiment,
        owner,
        written: sink.written.load(Ordering::Relaxed),
        dropped: sink.dropped.load(Ordering::Relaxed),
        errored: sink.errored.load(Ordering::Relaxed),
        wall: started.elapsed(),
        counts,
        status: if outcome.stop == Some(Stop::Interrupted) {
            ExperimentStatus::Interrupted
        } else {
            status
        },
    })
}

/// How a wait ended.
pub enum Waited {
    /// Every item has its result (the experiment is completed).
    Completed(Experiment),
    /// A worker failed it.
    Failed(Experiment, WorkCounts),
    /// The time ran out first.
    TimedOut(Experiment, WorkCounts),
}

/// How often `wait` looks at the store.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// Blocks until every item of a detached experiment is done (or it failed, or `timeout`
/// passed), calling `progress` with where it stands at each look.
pub fn wait(
    ctx: &Context,
    id: &str,
    timeout: Option<Duration>,
    progress: &mut dyn FnMut(&Experiment, &WorkCounts),
) -> Result<Waited> {
    let started = Instant::now();
    let reader = ctx.store_for_reading()?;
    let (experiment, _) = detached(&*reader, id)?;
    let id = experiment.id;
    loop {
        let experiment = reader.experiment(&id)?;
        let counts = reader.work_counts(&id)?.unwrap_or_default();
        progress(&experiment, &counts);
        match experiment.status {
            ExperimentStatus::Completed | ExperimentStatus::CompletedWithErrors => {
                return Ok(Waited::Completed(experiment));
            }
            ExperimentStatus::Failed => return Ok(Waited::Failed(experiment, counts)),
            _ if counts.done >= counts.items => {
                // The last worker died between its last result and recording the end.
                ctx.store()?.finish_work(&id)?;
                continue;
            }
            _ => {}
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Ok(Waited::TimedOut(experiment, counts));
        }
        std::thread::sleep(WAIT_POLL);
    }
}
