//! The experiment lifecycle: check and resolve everything a run needs (prepare), create and
//! run it to its end (launch), or run what a stored one still lacks (resume), then record how
//! it ended. The CLI, the API and the promotion workflow all go through here. This module
//! holds what the stages share (how a run ended, how a dataset error reads) and names the
//! parts; it parses no flag and prints nothing.

mod endpoint;
mod launch;
mod lease;
mod prepare;
mod resume;
mod run;

/// Where the web UI's playground finds the endpoint of one call.
pub use super::settings::endpoint;
pub use endpoint::{call_client, runtime};
pub(in crate::workflow) use endpoint::{client, probe};
pub use launch::{launch, shard_fingerprint};
pub(in crate::workflow) use lease::hostname;
pub use lease::{LEASE, as_seen};
pub use prepare::{Prepared, prepare};
pub(in crate::workflow) use prepare::{evaluators, fingerprint, legacy_fingerprint};
pub use resume::resume;
pub(in crate::workflow) use run::plan;

use crate::dataset;
use crate::error::Error;
use crate::model::{Experiment, ExperimentStatus, RunStats, Summary};

/// How a launched or resumed run ended, as stored.
#[derive(Debug, Clone)]
pub struct Finished {
    pub experiment: Experiment,
    pub summary: Summary,
    pub stats: RunStats,
    pub status: ExperimentStatus,
}

pub fn dataset_error(e: dataset::DatasetError) -> Error {
    Error::invalid(e.to_string()).with_hint("fix the file, or pass another with --dataset")
}
