//! runner: a prompt store, experiment runner, comparison and promotion gate in one library. This
//! file only names the layers and re-exports their modules; it must hold no logic of its own, the
//! `note!` macro (stderr lines that never panic) aside.
//!
//! The binary is a thin layer over this crate: an application can open the same store and
//! render the `production` version of a prompt through the code the CLI uses.

/// `eprintln!` that never panics: a closed or full stderr (`runner … 2>&1 | head -1`) loses
/// the line instead of aborting the command.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stderr(), "{}", $crate::report::colour::stderr_line(&line));
    }};
}

// The folders are the layers, bottom to top; a module imports only from its own layer and the
// layers below it (docs/architecture.md).

/// The command line: clap's types and one file per command group, glue only.
pub mod commands;
/// Pure data and rules: no I/O, no store, no network.
pub mod domain;
/// What calls out: the HTTP client and its limits, evaluators, the mock endpoint, and the row
/// engine that drives them.
pub mod engine;
/// The closed set of ways a command fails, and their exit codes.
pub mod error;
/// What people write: flags' values, runner.toml, prompt files, datasets.
pub mod inputs;
/// Renderers (tables, JSON, Markdown, JUnit) and the terminal's progress.
pub mod report;
/// `runner serve`: the HTTP API, the web UI, tokens and the server's log.
pub mod server;
/// The only user of SQL: the store traits, their rules once, and the two backends.
pub mod store;
/// The lifecycles every front end shares: experiments, promotion, sync, archive, workers.
pub mod workflow;

// Each module also answers at the crate's root (`runner::store`, `runner::model`), so the
// library's paths are the same whatever layer a module sits in.
pub use commands::cli;
pub use domain::{
    canary, compare, cost, diff, gate, json, model, pairwise, production, redact, stats, template,
    text, tool_calls, trace, trace_rows, view,
};
pub use engine::{client, eval, limit, mock};
pub use inputs::{config, dataset, input, prompt_file};
pub use server::{access, ingest, logging, serve, ui};
