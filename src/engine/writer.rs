//! Batched result writing: one thread, with the sink's own store connection, takes results off
//! a channel and commits whatever has arrived (up to `BATCH`) in one transaction. It owns the
//! run's `ResultSink`; it must not decide which results are kept (the row tasks and the breaker
//! do) nor read anything back from the store.

use super::state::Shared;
use super::{RunError, Stop};
use crate::model::RunResult;
use crate::store::{ResultSink, StoreError};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Results per write transaction at most; a batch is whatever has arrived, up to this.
const BATCH: usize = 512;

/// When fewer than `FEW` results have arrived with the first of a batch, the writer waits this
/// long once for more before it commits. At thousands of answers a second a transaction per
/// handful of results writes the same table and index pages to the log again and again (the
/// kernel's copies of them were most of a run's system time); a run that answers slowly loses
/// two milliseconds per commit, which nothing waits on.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
const FEW: usize = 64;

/// The thread that writes a run's results.
pub(super) struct Writer {
    thread: std::thread::JoinHandle<Result<(), StoreError>>,
}

impl Writer {
    /// Starts the writer of `experiment_id`'s results: whatever is sent on the channel it
    /// returns is stored, in arrival order.
    pub(super) fn start(
        sink: Arc<dyn ResultSink>,
        experiment_id: String,
    ) -> (mpsc::Sender<RunResult>, Writer) {
        let (results_tx, results_rx) = mpsc::channel::<RunResult>(BATCH * 4);
        let thread = std::thread::spawn(move || write_all(&*sink, &experiment_id, results_rx));
        (results_tx, Writer { thread })
    }

    /// Waits, off the runtime's workers, until every result sent is committed. Every sender
    /// must be dropped first, or this waits for ever.
    pub(super) async fn finish(self) -> Result<(), RunError> {
        let thread = self.thread;
        let written = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| RunError::Writer(e.to_string()))?
            .map_err(|_| RunError::Writer("it stopped unexpectedly".into()))?;
        written?;
        Ok(())
    }
}

/// Hands results to the writer. The writer only goes away when the store failed: then the run
/// stops rather than send requests whose answers could not be kept.
pub(super) async fn forward(
    shared: &Shared,
    results: &mpsc::Sender<RunResult>,
    ready: Vec<RunResult>,
) {
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
        let open = take_arrived(&mut results, &mut batch);
        if open && batch.len() < FEW {
            std::thread::sleep(LINGER);
            take_arrived(&mut results, &mut batch);
        }
        sink.write_results(experiment_id, &batch)?;
        batch.clear();
    }
    Ok(())
}

/// Moves what has arrived into `batch`, up to a batch; false once every sender is gone.
fn take_arrived(results: &mut mpsc::Receiver<RunResult>, batch: &mut Vec<RunResult>) -> bool {
    while batch.len() < BATCH {
        match results.try_recv() {
            Ok(result) => batch.push(result),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
    true
}
