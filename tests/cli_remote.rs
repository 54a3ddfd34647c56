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

/// A port is handed out again once its server stopped: a test whose server gets the port of a
/// finished test's server reads its own store, never the finished test's, when it looks at the
/// database directly.
#[test]
fn a_server_on_a_port_given_up_reads_as_its_own_store() {
    let first = Env::new();
    echo_prompt(&first);
    let url = first.db.to_string_lossy().to_string();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(sql_value(&first.db, "SELECT COUNT(*) FROM prompts"), "1");
    drop(first);
    let second = Env::behind_port(port);
    assert_eq!(second.db.to_string_lossy(), url);
    assert_eq!(sql_value(&second.db, "SELECT COUNT(*) FROM prompts"), "0");
    echo_prompt(&second);
    assert_eq!(sql_value(&second.db, "SELECT COUNT(*) FROM prompts"), "1");
}
