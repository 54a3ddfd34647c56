//! The CLI tests again, each on a fresh database of a real PostgreSQL server (a throwaway
//! cluster this binary starts, see src/store/test_cluster.rs): every command behaves the same
//! on both backends.

#[path = "cli/main.rs"]
mod cli;

pub use cli::*;

/// Read by the shared test modules: their stores are PostgreSQL databases.
pub const POSTGRES: bool = true;

/// Read by the shared test modules: the commands open their store themselves.
pub const REMOTE: bool = false;
