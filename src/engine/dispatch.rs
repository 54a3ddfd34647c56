//! Sending the work out: the dataset's rows (read on a thread of their own) or items leased
//! from a work queue, each started as a task once the concurrency gate lets it through, and the
//! wait for the tasks in flight. It owns the order and the bound of the requests; what happens
//! to one row is `row`'s, keeping results is the writer's, and it must not touch the store
//! except through a `Feed`, on the blocking pool.

use super::Stop;
use super::breaker::Verdict;
use super::done::{Done, Feed, Source};
use super::row::process;
use super::state::Shared;
use super::writer::forward;
use crate::dataset::{self, DatasetError, Row};
use crate::model::RunResult;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

/// How long a worker waits before asking again when every remaining item is leased by others:
/// at first `FEED_POLL_FIRST`, that much longer each time the queue is still empty, up to
/// `FEED_POLL`. At the end of an experiment the others' last items are done within a round trip
/// or two, and a worker that looked again only every half second held the whole run up that
/// long (4 workers on PostgreSQL: 84 % of a plain experiment at the same total concurrency
/// before, 93 % after, `benches/workers.sh`).
const FEED_POLL: Duration = Duration::from_millis(500);
const FEED_POLL_FIRST: Duration = Duration::from_millis(20);

/// Rows the reader thread sends at once, and how many such batches may wait: at most
/// `ROW_BATCH × (ROW_BATCHES + 2)` rows read ahead of the requests (the batches waiting, the one
/// the reader holds and the one being sent), as many as one row at a time through a channel of
/// 256 held before.
const ROW_BATCH: usize = 64;
const ROW_BATCHES: usize = 2;

/// The thread that reads the dataset's rows; it ends with the hash of the bytes it read.
pub(super) type RowReader = std::thread::JoinHandle<Result<String, DatasetError>>;

/// What sending the work out leaves for the end of the run.
#[derive(Default)]
pub(super) struct Dispatched {
    /// Row × repetitions started.
    pub(super) processed: u64,
    /// The reader of the dataset's rows, when the work came from the dataset.
    pub(super) reader: Option<RowReader>,
    /// The dataset could not be read, or one of its rows could not.
    pub(super) dataset_error: Option<DatasetError>,
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

/// Starts requests, never more than the gate allows at once. It owns what it needs, so it runs
/// as a task of its own on the runtime's workers: a request that finishes frees a slot and
/// wakes it there, without waking another thread (as the thread blocked on the run would be).
pub(super) struct Dispatcher {
    shared: Arc<Shared>,
    /// At most --concurrency in flight; fewer while the endpoint answers 429 (see limit::Gate).
    gate: Arc<crate::limit::Gate>,
    tasks: JoinSet<()>,
    results: mpsc::Sender<RunResult>,
    dispatched: Dispatched,
}

impl Dispatcher {
    /// Starts tasks into `tasks`; their results go to `results`.
    pub(super) fn new(
        shared: Arc<Shared>,
        tasks: JoinSet<()>,
        results: mpsc::Sender<RunResult>,
    ) -> Dispatcher {
        Dispatcher {
            gate: shared.plan.client.throttle().gate.clone(),
            shared,
            tasks,
            results,
            dispatched: Dispatched::default(),
        }
    }

    /// What was sent, and what the dataset's reader left, with the tasks still in flight (not
    /// waited for).
    pub(super) fn finish(self) -> (Dispatched, JoinSet<()>) {
        (self.dispatched, self.tasks)
    }

    /// Sends out every piece of work `source` holds, until it runs out or the run stops.
    pub(super) async fn dispatch(&mut self, source: Source) {
        match source {
            Source::Dataset(done) => self.rows(done).await,
            Source::Queue { feed, .. } => self.leased(feed).await,
        }
    }

    /// The dataset's rows (the first `--limit`, those of the shard), each repetition not done.
    async fn rows(&mut self, done: Done) {
        let shared = self.shared.clone();
        let settings = &shared.plan.experiment.settings;
        // Rows stream from a reader thread in batches (so it is woken once a batch, not once a
        // row); the bounded channel keeps only a few batches in memory.
        let limit = settings.limit.unwrap_or(usize::MAX);
        let (rows_tx, mut rows_rx) = mpsc::channel::<Vec<Result<Row, DatasetError>>>(ROW_BATCHES);
        let mut rows = match dataset::rows(&shared.plan.dataset) {
            Ok(rows) => rows,
            Err(e) => {
                self.dispatched.dataset_error = Some(e);
                return;
            }
        };
        self.dispatched.reader = Some(std::thread::spawn(move || {
            let mut left = limit;
            while left > 0 {
                let batch: Vec<_> = rows.by_ref().take(ROW_BATCH.min(left)).collect();
                if batch.is_empty() {
                    break;
                }
                left -= batch.len();
                // A row that could not be read ends the rows: the dispatcher stops at it.
                let failed = batch.iter().any(Result::is_err);
                if rows_tx.blocking_send(batch).is_err() || failed {
                    break;
                }
            }
            rows.content_hash()
        }));
        'rows: while let Some(batch) = rows_rx.recv().await {
            for row in batch {
                let row = match row {
                    Ok(row) => Arc::new(row),
                    Err(e) => {
                        self.dispatched.dataset_error = Some(e);
                        break 'rows;
                    }
                };
                if settings.shard.is_some_and(|shard| !shard.contains(&row.id)) {
                    continue;
                }
                for repetition in 0..settings.repetitions {
                    if done.contains(row.index, repetition) {
                        continue;
                    }
                    if !self.send(row.clone(), repetition, None).await {
                        break 'rows;
                    }
                }
            }
        }
    }

    /// Items leased from the work queue until none is left. Leases at most twice the
    /// concurrency at once: what a worker that dies takes with it until its leases run out.
    async fn leased(&mut self, feed: Arc<dyn Feed>) {
        let shared = self.shared.clone();
        let cap = shared.plan.experiment.settings.concurrency.max(1);
        let outstanding = Arc::new(Outstanding::default());
        let mut idle = FEED_POLL_FIRST;
        'feed: loop {
            // Created before the look: a `Notified` hears a halt from its creation on.
            let stopped = shared.stopped.notified();
            tokio::pin!(stopped);
            if shared.halted() {
                break;
            }
            while outstanding.count() > cap {
                tokio::select! {
                    _ = outstanding.freed.notified() => {}
                    _ = tokio::time::sleep(FEED_POLL) => {}
                    _ = stopped.as_mut() => break 'feed,
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
                    _ = tokio::time::sleep(idle) => {}
                    _ = stopped.as_mut() => break,
                }
                idle = (idle + FEED_POLL_FIRST).min(FEED_POLL);
                continue;
            }
            idle = FEED_POLL_FIRST;
            for item in items {
                outstanding.take();
                let row = Arc::new(Row {
                    index: item.row_index as usize,
                    id: item.row_id,
                    values: item.values,
                });
                let repetition = item.repetition as usize;
                if !self.send(row, repetition, Some(outstanding.clone())).await {
                    break 'feed;
                }
            }
        }
    }

    /// Starts one row × repetition once a slot is free; false when the run stops instead.
    async fn send(
        &mut self,
        row: Arc<Row>,
        repetition: usize,
        outstanding: Option<Arc<Outstanding>>,
    ) -> bool {
        let shared = &self.shared;
        // Listening before looking: a `Notified` hears a halt from its creation on, so one
        // between the look and the wait is not missed.
        let stopped = shared.stopped.notified();
        tokio::pin!(stopped);
        if shared.halted() {
            return false;
        }
        let permit = tokio::select! {
            permit = self.gate.acquire() => match permit {
                Some(permit) => permit,
                None => return false,
            },
            _ = stopped.as_mut() => return false,
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
        self.dispatched.processed += 1;
        // The first answer decides whether the endpoint takes the run at all (a wrong key is
        // refused on every row, a misspelled model too): the other rows wait for it rather than
        // all being sent into the same refusal, one per slot. The endpoint's model list can
        // decide sooner: a list given for the run's key (and refused to a wrong one) that names
        // its model says both are good, a round trip without a generation. A row sent to a
        // target (the application) waits for its answer, as a run of one slot does.
        // A halt (Ctrl-C) ends this wait too: the row in flight is the run's to wait for.
        if self.dispatched.processed == 1 {
            let listed = async {
                shared.plan.target.is_none()
                    && shared.plan.experiment.settings.concurrency > 1
                    && shared
                        .plan
                        .client
                        .lists_model(&shared.plan.experiment.model)
                        .await
            };
            tokio::select! {
                true = listed => {}
                joined = self.tasks.join_next() => {
                    if let Some(Err(e)) = joined
                        && e.is_panic()
                    {
                        shared.halt(Stop::Broken("a request task failed unexpectedly".into()));
                    }
                }
                _ = stopped.as_mut() => return false,
            }
        }
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

/// Waits for every task. A task that panicked lost its row: that makes the run broken (never
/// "completed"), so it is neither reused as evidence nor mistaken for a full run.
pub(super) async fn join_all(tasks: &mut JoinSet<()>, shared: &Shared) {
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            shared.halt(Stop::Broken("a request task failed unexpectedly".into()));
        }
    }
}
