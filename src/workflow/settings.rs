//! How a run is asked for: the run flags (`RunRequest`) checked and laid over runner.toml's
//! defaults into the settings an experiment is stored with. It reads no store, dataset or
//! endpoint; what needs those is resolved when a run is prepared.

use crate::config::RunDefaults;
use crate::error::{Error, Result};
use crate::input::split_assignment;
use crate::model::{JsonObject, RunSettings};
use serde_json::Value;

/// How a run should go, as the caller asks for it; each unset field falls back to runner.toml,
/// then to the version, then to runner's default.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub evals: Vec<String>,
    pub concurrency: Option<usize>,
    pub repetitions: Option<usize>,
    pub limit: Option<usize>,
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub timeout: Option<f64>,
    pub max_retries: Option<u32>,
    pub vars: Vec<String>,
    pub columns: Vec<String>,
    pub expected_column: Option<String>,
    pub judge_model: Option<String>,
    pub no_cache: bool,
    /// Call the endpoint for every row: no cached answer stands for a call.
    pub fresh: bool,
    /// How old a cached answer may be (`90s`, `30m`, `12h`, `7d`); default: any age.
    pub cache_ttl: Option<String>,
    /// Requests and tokens per minute at most.
    pub max_rpm: Option<f64>,
    pub max_tpm: Option<f64>,
    /// Dollars the experiment may spend at most.
    pub max_cost: Option<f64>,
    /// `--shard K/N`: only the rows whose id hashes to shard K of N.
    pub shard: Option<String>,
}

/// Bounds that keep a typo from exhausting memory or file handles.
const MAX_CONCURRENCY: usize = 10_000;
const MAX_REPETITIONS: usize = 1_000;
pub(super) const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// Checks the run options, lays them over runner.toml's defaults, and turns them into settings.
pub(super) fn settings(options: &RunRequest, defaults: &RunDefaults) -> Result<RunSettings> {
    let positive = |flag: &str, value: usize| {
        if value == 0 {
            Err(Error::invalid(format!("{flag} must be at least 1")))
        } else {
            Ok(value)
        }
    };
    let concurrency = positive(
        "--concurrency",
        options.concurrency.or(defaults.concurrency).unwrap_or(16),
    )?;
    let repetitions = positive(
        "--repetitions",
        options.repetitions.or(defaults.repetitions).unwrap_or(1),
    )?;
    if let Some(limit) = options.limit {
        positive("--limit", limit)?;
    }
    let timeout = options.timeout.or(defaults.timeout).unwrap_or(60.0);
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= MAX_TIMEOUT_SECS) {
        return Err(Error::invalid(format!(
            "--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_SECS}"
        )));
    }
    if concurrency > MAX_CONCURRENCY {
        return Err(Error::invalid(format!(
            "--concurrency {concurrency} is more than runner allows ({MAX_CONCURRENCY})"
        )));
    }
    if repetitions > MAX_REPETITIONS {
        return Err(Error::invalid(format!(
            "--repetitions {repetitions} is more than runner allows ({MAX_REPETITIONS})"
        )));
    }
    let mut vars = JsonObject::new();
    for text in &options.vars {
        let (key, value) = split_assignment("--var", text)?;
        vars.insert(key.to_string(), Value::String(value.to_string()));
    }
    let mut columns = Vec::new();
    for text in &options.columns {
        let (var, column) = split_assignment("--column", text)?;
        columns.push((var.to_string(), column.to_string()));
    }
    Ok(RunSettings {
        concurrency,
        repetitions,
        limit: options.limit,
        timeout_secs: timeout,
        max_retries: options.max_retries.or(defaults.max_retries).unwrap_or(3),
        vars,
        columns,
        expected_column: options.expected_column.clone(),
        no_cache: options.no_cache,
        fresh: options.fresh,
        cache_ttl_secs: options
            .cache_ttl
            .as_deref()
            .or(defaults.cache_ttl.as_deref())
            .map(parse_duration)
            .transpose()?,
        max_rpm: per_minute("--max-rpm", options.max_rpm.or(defaults.max_rpm))?,
        max_tpm: per_minute("--max-tpm", options.max_tpm.or(defaults.max_tpm))?,
        max_cost: max_cost(options.max_cost)?,
        judge_model: options
            .judge_model
            .clone()
            .or_else(|| defaults.judge_model.clone()),
        detached: None,
        shard: options.shard.as_deref().map(parse_shard).transpose()?,
    })
}

/// `--shard K/N`: 1 ≤ K ≤ N.
fn parse_shard(text: &str) -> Result<crate::model::Shard> {
    crate::model::Shard::parse(text).ok_or_else(|| {
        Error::invalid(format!("--shard '{text}' is not K/N with 1 ≤ K ≤ N")).with_hint(
            "e.g. --shard 2/4 runs the second of four shards (rows split by a hash of their id)",
        )
    })
}

/// A rate limit as given: a positive, finite number per minute.
pub(super) fn per_minute(flag: &str, value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::invalid(format!(
            "{flag} must be a positive number per minute, not {v}"
        ))
        .with_hint("e.g. --max-rpm 500 --max-tpm 200000, the limits of your API key")),
        other => Ok(other),
    }
}

/// `--max-cost`: dollars, more than 0.
pub fn max_cost(value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::invalid(format!(
            "--max-cost must be a positive number of dollars, not {v}"
        ))
        .with_hint("e.g. --max-cost 2.50 stops the run before it spends more than $2.50")),
        other => Ok(other),
    }
}

/// `--cache-ttl` / `cache_ttl`: whole seconds, or a number with a unit (`s`, `m`, `h`, `d`).
pub fn parse_duration(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            Error::invalid(format!("--cache-ttl '{text}' is not a duration"))
                .with_hint("write whole seconds or a number with s, m, h or d: 90s, 30m, 12h, 7d")
        })
}
