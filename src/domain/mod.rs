//! The pure domain: runner's data (prompts, versions, tags, experiments, results), templates,
//! what changed between versions, statistics, the comparison and the gate, costs, redaction
//! and the typed views every front end prints.
//!
//! Nothing here reads a file, opens the store or calls the network, and nothing here imports
//! from a layer above (`store`, `inputs`, `engine`, …): these are functions of their arguments,
//! which is what lets the statistics be checked against scipy and the gate be tested alone.

pub mod canary;
pub mod compare;
pub mod cost;
pub mod diff;
pub mod gate;
pub mod json;
pub mod model;
pub mod pairwise;
pub mod production;
pub mod redact;
pub mod stats;
pub mod template;
pub mod text;
pub mod tool_calls;
pub mod trace;
pub mod trace_rows;
pub mod view;
