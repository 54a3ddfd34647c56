//! The CLI tests a third time, for the commands a team runs against its server: each test's
//! commands get only the URL of a `runner serve` (over a fresh database of a real PostgreSQL
//! server) and a token, never the database. The modules are the ones `cli` and
//! `cli_postgres` run: prompts, tags, history, rollback, diff, render, sync / pull, export,
//! datasets, experiments, resume, compare, promote (through the server's gate), workers, try.

#[path = "cli/fault_server.rs"]
pub mod fault_server;
#[path = "cli/harness.rs"]
mod harness;
#[path = "../src/store/test_cluster.rs"]
pub mod postgres;

#[path = "cli/datasets.rs"]
mod datasets;
#[path = "cli/evidence.rs"]
mod evidence;
#[path = "cli/experiments.rs"]
mod experiments;
#[path = "cli/promote.rs"]
mod promote;
#[path = "cli/prompt_store.rs"]
mod prompt_store;
#[path = "cli/sync.rs"]
mod sync;
#[path = "cli/try_version.rs"]
mod try_version;
#[path = "cli/workers.rs"]
mod workers;

pub use harness::*;

/// The server's store is a PostgreSQL database.
pub const POSTGRES: bool = true;

/// The commands reach their store through `runner serve`.
pub const REMOTE: bool = true;
