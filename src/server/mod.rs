//! `runner serve`: the HTTP API (Phoenix-compatible prompt routes and runner's own) in
//! `serve`, the web UI in `ui`, the token files and the access they give in `access`, and the
//! server's log in `logging`.
//!
//! The server is a front end like the CLI: every rule it applies is a workflow's or the store's
//! (the tag policy, promotion, archive), and nothing below this layer imports from it.

pub mod access;
pub mod ingest;
pub mod logging;
pub mod serve;
pub mod ui;
