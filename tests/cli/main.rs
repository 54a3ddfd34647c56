//! End-to-end tests: the real `runner` binary against a fresh temporary store per test: an
//! SQLite file here, a fresh database of a real PostgreSQL server when these same modules run
//! as the `cli_postgres` test binary (which sets `crate::POSTGRES`).

mod browser;
mod conversations;
mod cost;
mod datasets;
mod evidence;
mod experiments;
pub mod fault_server;
mod first_hour;
mod from_traces;
mod judge_agreement;
mod limits;
pub mod otlp;
mod pairwise;
#[path = "../../src/store/test_cluster.rs"]
pub mod postgres;
mod promote;
mod prompt_store;
mod reliability;
mod remote;
mod security;
mod serve;
mod statistics;
mod sync;
mod targets;
mod tool_calls;
mod try_version;
mod turns;
mod ui;
mod workers;

/// Which backend this binary's stores are on (the `cli_postgres` binary says true).
#[allow(dead_code)]
pub const POSTGRES: bool = false;

/// Whether the commands reach their store through `runner serve` (the `cli_remote` binary
/// says true).
#[allow(dead_code)]
pub const REMOTE: bool = false;

mod harness;
pub use harness::*;
