//! The settings each workflow takes: `ExperimentSettings` for a run (`experiment`,
//! `compare --run`, `promote`, `experiment plan`, `--detach`), `Check` for an experiment's own
//! pass and error check, `ResumeSettings` for `experiment resume` and `WorkerSettings` for
//! `worker`, each a finished value: `commands::settings` builds them, once, from the command
//! line laid over runner.toml, and the workflows only read them. Also the endpoint's checks a
//! run and a single call share. This module parses no flag (it knows no clap type) and must
//! not open the store, read a dataset, call the endpoint or print anything.

use crate::client::DEFAULT_BASE_URL;
use crate::config::RunDefaults;
use crate::error::{Error, Result};
use crate::model::RunSettings;
use std::path::PathBuf;
use std::time::Duration;

/// The evaluators a run is asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Evals {
    /// `--eval` (repeatable).
    Flags(Vec<String>),
    /// `evals` in runner.toml, where no `--eval` is given.
    File(Vec<String>),
    /// Neither: the dataset implies them (an expected column implies `icontains`).
    Implied,
}

impl Evals {
    /// The specs given on the command line; none when runner.toml or the dataset supplies them.
    pub fn flags(&self) -> &[String] {
        match self {
            Evals::Flags(specs) => specs,
            _ => &[],
        }
    }
}

/// One run as the command line and runner.toml ask for it, every flag checked: what a run is
/// prepared from (`workflow::experiment::prepare`).
#[derive(Debug, Clone)]
pub struct ExperimentSettings {
    pub prompt: String,
    /// `--dataset`, else the prompt's `dataset` in runner.toml: a file, or `store:NAME[@V]`
    /// until `prepare` materializes it.
    pub dataset: PathBuf,
    /// What the experiment records as its dataset when it is not the file's path: the store's
    /// `store:NAME@V` (set by `prepare`).
    pub dataset_label: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    pub evals: Evals,
    /// `--model`, else runner.toml's; None: the version's.
    pub model: Option<String>,
    /// `--base-url`, else runner.toml's, else `OPENAI_BASE_URL`, else OpenAI's; checked, and
    /// without a trailing slash.
    pub base_url: String,
    /// What the experiment is stored with and runs by (`resume` runs it the same way). Its
    /// `expected_column` is the flag's until `prepare` resolves it against the dataset.
    pub run: RunSettings,
}

/// An experiment's errored rows allowed when neither `--max-error-rate` nor runner.toml says.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.0;

/// An experiment's own check: each flag over `[thresholds]` in runner.toml. Errored rows fail
/// the run unless the user allows some (`DEFAULT_MAX_ERROR_RATE`): a run whose calls failed
/// is not the evidence it looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// `--min-pass-rate`: every evaluator's pass rate at least this.
    pub min_pass_rate: Option<f64>,
    /// `--max-error-rate`: the share of calls that may fail.
    pub max_error_rate: f64,
}

/// `runner experiment resume ID`: which experiment, and a new budget. Built only by `new`
/// (`commands::settings`): the workflow reads its fields unchecked.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeSettings {
    pub(crate) id: String,
    /// `--max-cost`: replaces the budget the experiment was started with (a run stopped by its
    /// budget goes on with a larger one).
    pub(crate) max_cost: Option<f64>,
}

/// `runner worker ID`: how this worker runs the detached experiment's items. Built only by
/// `new` (`commands::settings`): the workflow reads its fields unchecked.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub(crate) id: String,
    /// `--concurrency`: over the experiment's own.
    pub(crate) concurrency: Option<usize>,
    /// `--base-url`: this worker's endpoint, over the experiment's (checked when its client is
    /// made, as the experiment's own is).
    pub(crate) base_url: Option<String>,
    /// `--lease`: how long a lease on items lasts without renewal.
    pub(crate) lease: Duration,
    /// Evaluator specs that run a program or read a file (`cmd:…`, `judge:…`,
    /// `json-schema:…`) this worker may run when the experiment names them (`--allow-cmd`,
    /// `--allow-eval`, `[worker]` in runner.toml), each matched exactly.
    pub(crate) allowed: Vec<String>,
}

/// The longest request timeout accepted (a day): beyond it a timeout bounds nothing.
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// `--timeout`: seconds per request attempt, positive and at most a day.
pub fn check_timeout(secs: f64) -> Result<f64> {
    if secs.is_finite() && secs > 0.0 && secs <= MAX_TIMEOUT_SECS {
        Ok(secs)
    } else {
        Err(Error::invalid(format!(
            "--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_SECS}"
        )))
    }
}

/// The endpoint: the flag, runner.toml, then `OPENAI_BASE_URL`, then OpenAI's; checked, and
/// without a trailing slash. A run's (`ExperimentSettings::base_url`), and that of one call
/// outside an experiment (`runner try`, the web UI's playground).
pub fn endpoint(flag: Option<&str>, defaults: &RunDefaults) -> Result<String> {
    let base_url = flag
        .map(str::to_string)
        .or_else(|| defaults.base_url.clone())
        .or_else(|| {
            std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|u| !u.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    check_endpoint(&base_url)?;
    Ok(base_url.trim_end_matches('/').to_string())
}

/// Checks an endpoint URL as given: well formed, http(s), and free of credentials.
pub fn check_endpoint(base_url: &str) -> Result<()> {
    // The base URL is stored with the experiment and shown; a key written into it would be
    // too. Refused without echoing the URL.
    if let Ok(url) = reqwest::Url::parse(base_url)
        && (!url.username().is_empty() || url.password().is_some())
    {
        return Err(
            Error::invalid("the endpoint URL carries credentials (user:password@)").with_hint(
                "remove them from --base-url / OPENAI_BASE_URL and put the key in OPENAI_API_KEY",
            ),
        );
    }
    crate::client::check_base_url(base_url).map_err(endpoint_error)
}

/// An endpoint the client refuses, with the flag that fixes it.
pub fn endpoint_error(e: crate::client::ConfigError) -> Error {
    Error::invalid(e.to_string())
        .with_hint("pass --base-url http://HOST:PORT/v1 or set OPENAI_BASE_URL")
}
