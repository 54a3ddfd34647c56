//! Every store algorithm, written once for both backends: the tag change (expectation →
//! policy → upsert → event), the version build, archive and restore, imports, experiment
//! records, leases, aggregates and the cache, each over the narrow `sql::Db` layer.
//!
//! A backend implements `Backend` (how it opens a read and a write transaction) and `sql::Db`
//! (how it runs one statement); the store traits then hold for it through the blanket
//! implementations here. This module must not name a driver, open a connection or hold
//! SQL that only one dialect understands: such text is asked of `sql::Dialect`.

use super::Result;
use super::sql::Db;

mod datasets;
mod experiments;
mod lifecycle;
mod prompts;
mod rollouts;
mod task_experiments;
mod tokens;
mod traces;
mod work;

pub use work::ClaimFloors;

pub(crate) use experiments::{
    CACHE_INSERT, CACHE_UPSERT, RESULTS_INSERT, RESULTS_UPSERT, SCORES_UPSERT,
};

/// How a backend runs the algorithms: each read on a connection of its own, each write in one
/// transaction that commits when the work returns Ok and rolls back otherwise.
pub trait Backend: Send + Sync {
    fn read<T>(&self, work: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T>;
    fn write<T>(&self, work: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T>;
    /// Where this store's claims of each detached experiment look first (`WorkQueue::claim_items`).
    fn claim_floors(&self) -> &ClaimFloors;
    /// Whether a short indexed read is a local file read of microseconds that never waits on a
    /// writer (SQLite in WAL mode), rather than a round trip to a server.
    fn reads_locally(&self) -> bool {
        false
    }
    /// Called after a write to what a tag lookup reads (prompts, versions, tags, rollouts) has
    /// committed, so this process's own readers see it at once, before the database's word of
    /// it arrives.
    fn routing_changed(&self) {}
    /// `write`, for work that changes what a tag lookup reads.
    fn write_routing<T>(&self, work: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        let written = self.write(work)?;
        self.routing_changed();
        Ok(written)
    }
}
