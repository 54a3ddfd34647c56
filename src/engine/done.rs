//! Resume bookkeeping and where a run's work comes from: `Done` (one bit for each row ×
//! repetition that already has a successful result), `Source` (the dataset's rows, or a
//! detached experiment's work queue) and the `Feed` a worker leases items through. It reads
//! the store only in `Done::load`, before a run starts; it must not send requests or write
//! results.

use crate::model::Experiment;
use crate::store::{ExperimentStore, StoreError, WorkItem};
use std::sync::Arc;

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

impl Source {
    /// How many of the run's results an earlier run already stored.
    pub(super) fn already(&self) -> u64 {
        match self {
            Source::Dataset(done) => done.count(),
            Source::Queue { already, .. } => *already,
        }
    }
}

/// Leases work items for a run that shares its experiment with other workers.
pub trait Feed: Send + Sync {
    /// Up to `max` more items: an empty list when none is free now (others hold the rest;
    /// ask again soon), None when every item is done.
    fn next(&self, max: usize) -> Result<Option<Vec<WorkItem>>, StoreError>;
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
}
