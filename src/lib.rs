//! runner: a prompt store, experiment runner, comparison and promotion gate in one library.
//!
//! The binary is a thin layer over this crate: an application can open the same store and
//! render the `production` version of a prompt through the code the CLI uses.

/// `eprintln!` that never panics: a closed or full stderr (`runner … 2>&1 | head -1`) loses
/// the line instead of aborting the command.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod access;
pub mod cli;
pub mod client;
pub mod commands;
pub mod compare;
pub mod config;
pub mod cost;
pub mod dataset;
pub mod diff;
pub mod engine;
pub mod error;
pub mod eval;
pub mod gate;
pub mod input;
pub mod json;
pub mod limit;
pub mod logging;
pub mod mock;
pub mod model;
pub mod prompt_file;
pub mod redact;
pub mod report;
pub mod serve;
pub mod stats;
pub mod store;
pub mod template;
pub mod text;
pub mod ui;
pub mod view;
pub mod workflow;
