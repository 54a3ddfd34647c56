//! Batched result writing: one thread, with the sink's own store connection, takes results off
//! a channel and commits whatever has arrived (up to `BATCH`) in one transaction. It owns the
//! run's `ResultSink`; it must not decide which results are kept (the row tasks and the breaker
//! do) nor read anything back from the store.

use super::state::Shared;
use super::{RunError, Stop};
use crate::model::RunResult;
use crate::store::{ResultSink, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Results per write transaction at most; a batch is whatever has arrived, up to this.
const BATCH: usize = 512;

/// When fewer than `FEW` results have arrived with the first of a batch, the writer waits up to
/// `LINGER` for more before it commits, looking every `STEP`, and no longer once `FEW` are in or
/// every sender is gone. At thousands of answers a second a transaction per handful of results
/// writes the same table and index pages to the log again and again (the kernel's copies of them
/// were most of a run's system time); a run that answers slowly delays each commit by at most
/// `LINGER`, which nothing waits on, and its last results by at most `STEP`.
const LINGER: Duration = Duration::from_millis(5);
const STEP: Duration = Duration::from_millis(1);
const FEW: usize = 256;

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
        let mut open = take_arrived(&mut results, &mut batch);
        let until = Instant::now() + LINGER;
        while open && batch.len() < FEW && Instant::now() < until {
            std::thread::sleep(STEP);
            open = take_arrived(&mut results, &mut batch);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sink that keeps each batch's row indexes, as the writer handed them over.
    #[derive(Default)]
    struct Batches(Mutex<Vec<Vec<i64>>>);

    impl ResultSink for Batches {
        fn write_results(&self, _: &str, batch: &[RunResult]) -> crate::store::Result<()> {
            let rows = batch.iter().map(|r| r.row_index).collect();
            self.0.lock().unwrap().push(rows);
            Ok(())
        }
    }

    /// What is already waiting goes out in full batches, in arrival order, and the end of
    /// the senders ends the writer without a batch lost or split further.
    #[test]
    fn waiting_results_go_in_full_batches_in_order() {
        let (tx, rx) = mpsc::channel(BATCH * 4);
        for row in 0..(BATCH as i64 + 88) {
            tx.try_send(RunResult::answered(row)).unwrap();
        }
        drop(tx);
        let sink = Batches::default();
        write_all(&sink, "exp", rx).unwrap();
        let batches = sink.0.into_inner().unwrap();
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [BATCH, 88]
        );
        let rows: Vec<i64> = batches.concat();
        assert_eq!(rows, (0..(BATCH as i64 + 88)).collect::<Vec<_>>());
    }

    /// A few results and no sender left: one batch of them, without waiting for more.
    #[test]
    fn the_last_few_results_go_out_together_once_the_senders_are_gone() {
        let (tx, rx) = mpsc::channel(BATCH * 4);
        for row in 0..3 {
            tx.try_send(RunResult::answered(row)).unwrap();
        }
        drop(tx);
        let sink = Batches::default();
        write_all(&sink, "exp", rx).unwrap();
        assert_eq!(sink.0.into_inner().unwrap(), [vec![0, 1, 2]]);
    }
}
