//! The command line and runner.toml turned into each workflow's settings, in one place (as
//! ripgrep turns its flags into its settings): every flag of `experiment`, `experiment
//! resume`, `compare`, `promote`, `worker` and `experiment plan` is parsed and checked here,
//! laid over runner.toml's defaults, and handed down as a finished value
//! (`workflow::settings`). What needs the store, a dataset or a price (the version's model,
//! whether a column exists, what an evaluator needs) is resolved when a run is prepared, not
//! here. This module must not open the store, read a dataset, call the endpoint or print.

use crate::cli::{CompareArgs, ExperimentResumeArgs, PromoteArgs, RunArgs, RunOptions, WorkerArgs};
use crate::config::{Config, RunDefaults};
use crate::error::{Error, Result};
use crate::gate::Policy;
use crate::input::{check_prompt_name, rate, split_assignment};
use crate::model::{Detached, JsonObject, RunSettings, Shard};
use crate::workflow::settings::{
    Check, DEFAULT_MAX_ERROR_RATE, Evals, ExperimentSettings, ResumeSettings, WorkerSettings,
    check_timeout, endpoint,
};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

impl ExperimentSettings {
    /// The run flags every run command shares (`RunOptions`), for `prompt` over its defaults in
    /// runner.toml; `dataset` is `--dataset`.
    pub fn new(
        config: &Config,
        prompt: &str,
        dataset: Option<&Path>,
        options: &RunOptions,
    ) -> Result<ExperimentSettings> {
        ExperimentSettings::build(config, prompt, dataset, options, None)
    }

    /// `runner experiment`: the shared run flags and its own, `--name`, `--shard`, and
    /// `--detach` with `--key` and the `check` that `experiment wait` applies.
    pub fn for_experiment(
        config: &Config,
        prompt: &str,
        args: &RunArgs,
        check: Check,
    ) -> Result<ExperimentSettings> {
        let mut settings = ExperimentSettings::build(
            config,
            prompt,
            args.dataset.as_deref(),
            &args.options,
            args.shard.as_deref(),
        )?;
        settings.name = args.name.clone();
        if args.detach {
            if settings.run.max_cost.is_some() {
                return Err(Error::invalid(
                    "--max-cost cannot be kept by workers that spend independently",
                )
                .with_hint("run without --detach to keep a budget, or leave --max-cost out"));
            }
            if settings.run.shard.is_some() {
                return Err(Error::invalid(
                    "--shard and --detach are two ways to split a run; pick one",
                )
                .with_hint("workers on one shared store need no shards: runner worker ID"));
            }
            if let Some(key) = &args.key
                && (key.trim().is_empty() || key.len() > 200)
            {
                return Err(Error::invalid("--key must be 1 to 200 characters")
                    .with_hint("e.g. --key \"$CI_PIPELINE_ID-eval\""));
            }
            if settings.run.target.is_some() {
                return Err(Error::invalid(
                    "--target does not work with --detach yet: workers run rows against the endpoint",
                )
                .with_hint("run the experiment in one process (without --detach)"));
            }
            settings.run.detached = Some(Detached {
                key: args.key.clone(),
                min_pass_rate: check.min_pass_rate,
                max_error_rate: Some(check.max_error_rate),
            });
        }
        Ok(settings)
    }

    fn build(
        config: &Config,
        prompt: &str,
        dataset: Option<&Path>,
        options: &RunOptions,
        shard: Option<&str>,
    ) -> Result<ExperimentSettings> {
        check_prompt_name(prompt)?;
        let defaults = config.for_prompt(prompt);
        let dataset = dataset
            .map(Path::to_path_buf)
            .or_else(|| defaults.dataset.clone())
            .ok_or_else(|| {
                Error::invalid("no dataset: pass --dataset FILE")
                    .with_hint("a .csv file with a header row, or a .jsonl file with one object per line (or set `dataset` in runner.toml)")
            })?;
        let mut run = run_settings(options, shard, &defaults)?;
        let evals = if !options.evals.is_empty() {
            Evals::Flags(options.evals.clone())
        } else if let Some(evals) = &defaults.evals {
            Evals::File(evals.clone())
        } else {
            Evals::Implied
        };
        let model = options.model.clone().or_else(|| defaults.model.clone());
        let base_url = endpoint(options.base_url.as_deref(), &defaults)?;
        // Limits written for this endpoint in runner.toml, where no flag or default set one.
        if let Some(limits) = config.limits.get(&base_url) {
            run.max_rpm = run.max_rpm.or(per_minute("max_rpm", limits.max_rpm)?);
            run.max_tpm = run.max_tpm.or(per_minute("max_tpm", limits.max_tpm)?);
        }
        Ok(ExperimentSettings {
            prompt: prompt.to_string(),
            dataset,
            dataset_label: None,
            name: None,
            evals,
            model,
            base_url,
            run,
        })
    }
}

impl Check {
    pub fn new(
        config: &Config,
        prompt: &str,
        min_pass_rate: Option<f64>,
        max_error_rate: Option<f64>,
    ) -> Result<Check> {
        let file = config.for_prompt(prompt).thresholds.unwrap_or_default();
        Ok(Check {
            min_pass_rate: rate("--min-pass-rate", min_pass_rate.or(file.min_pass_rate))?,
            max_error_rate: rate("--max-error-rate", max_error_rate.or(file.max_error_rate))?
                .unwrap_or(DEFAULT_MAX_ERROR_RATE),
        })
    }
}

impl ResumeSettings {
    pub fn new(args: &ExperimentResumeArgs) -> Result<ResumeSettings> {
        Ok(ResumeSettings {
            id: args.id.clone(),
            max_cost: max_cost(args.max_cost)?,
        })
    }
}

impl WorkerSettings {
    pub fn new(config: &Config, args: &WorkerArgs) -> Result<WorkerSettings> {
        if !(args.lease.is_finite() && args.lease >= 1.0 && args.lease <= 86_400.0) {
            return Err(Error::invalid(format!(
                "--lease must be 1 to 86400 seconds, not {}",
                args.lease
            ))
            .with_hint("the default, 30 s, suits most endpoints"));
        }
        let allowed: Vec<String> = args
            .allow_cmd
            .iter()
            .chain(&config.worker.allow_cmd)
            .map(|program| format!("cmd:{program}"))
            .chain(
                args.allow_eval
                    .iter()
                    .chain(&config.worker.allow_eval)
                    .cloned(),
            )
            .collect();
        if let Some(concurrency) = args.concurrency
            && (concurrency == 0 || concurrency > MAX_CONCURRENCY)
        {
            return Err(Error::invalid("--concurrency must be 1 to 10000"));
        }
        Ok(WorkerSettings {
            id: args.id.clone(),
            concurrency: args.concurrency,
            base_url: args.base_url.clone(),
            lease: Duration::from_secs_f64(args.lease),
            allowed,
        })
    }
}

/// `runner compare`'s gate: only the criteria asked for.
pub fn compare_policy(args: &CompareArgs) -> Result<Policy> {
    Ok(Policy {
        max_regression: rate("--max-regression", args.max_regression)?,
        non_inferior: rate("--non-inferior", args.non_inferior)?,
        min_improvement: rate("--min-improvement", args.min_improvement)?,
        max_error_rate: rate("--max-error-rate", args.max_error_rate)?,
        ..Policy::default()
    })
}

/// `runner promote`'s gate: each flag overrides the same criterion from runner.toml; with none
/// from either, "no regression".
pub fn promote_policy(config: &Config, args: &PromoteArgs) -> Result<Policy> {
    let file = config.for_prompt(&args.prompt).gate.unwrap_or_default();
    let policy = Policy {
        min_pass_rate: rate("--min-pass-rate", args.min_pass_rate.or(file.min_pass_rate))?,
        max_regression: rate(
            "--max-regression",
            args.max_regression.or(file.max_regression),
        )?,
        no_new_failures: args.no_new_failures || file.no_new_failures.unwrap_or(false),
        max_error_rate: rate(
            "--max-error-rate",
            args.max_error_rate.or(file.max_error_rate),
        )?,
        max_p95_latency_ms: args.max_p95_latency_ms.or(file.max_p95_latency_ms),
        non_inferior: rate("--non-inferior", args.non_inferior.or(file.non_inferior))?,
        min_improvement: rate(
            "--min-improvement",
            args.min_improvement.or(file.min_improvement),
        )?,
        max_cost_increase: cost_increase(args.max_cost_increase.or(file.max_cost_increase))?,
    };
    // The error allowance alone judges nothing: the default gate stays, with it.
    if policy.has_absolute() || policy.has_relative() {
        Ok(policy)
    } else {
        Ok(Policy {
            max_error_rate: policy.max_error_rate,
            ..Policy::no_regression()
        })
    }
}

/// `--max-cost-increase`: a share, 0 or more (0.1 allows 10 % more per row).
fn cost_increase(value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(Error::invalid(format!(
            "--max-cost-increase must be a share, 0 or more, not {v}"
        ))
        .with_hint("0.1 lets the candidate cost up to 10 % more per row than the baseline")),
        other => Ok(other),
    }
}

/// Bounds that keep a typo from exhausting memory or file handles.
const MAX_CONCURRENCY: usize = 10_000;
const MAX_REPETITIONS: usize = 1_000;

/// Checks the run options, lays them over runner.toml's defaults, and turns them into the
/// settings an experiment is stored with.
fn run_settings(
    options: &RunOptions,
    shard: Option<&str>,
    defaults: &RunDefaults,
) -> Result<RunSettings> {
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
    let timeout = check_timeout(options.timeout.or(defaults.timeout).unwrap_or(60.0))?;
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
        // A target's answers are never reused: its code may have changed since, and a gate
        // must not rest on answers of code that is gone. Every run asks it (and compare and
        // promote run both sides again).
        fresh: options.fresh || options.target.is_some(),
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
        shard: shard.map(parse_shard).transpose()?,
        target: options
            .target
            .as_deref()
            .map(|spec| crate::engine::target::check_spec(spec).map(|()| spec.trim().to_string()))
            .transpose()?,
        target_env: options
            .target_env
            .iter()
            .map(|name| crate::engine::target::check_env_name(name).map(|()| name.clone()))
            .collect::<Result<_>>()?,
        // Found out when the run asks its endpoint, just before it starts.
        mock: false,
    })
}

/// `--shard K/N`: 1 ≤ K ≤ N.
fn parse_shard(text: &str) -> Result<Shard> {
    Shard::parse(text).ok_or_else(|| {
        Error::invalid(format!("--shard '{text}' is not K/N with 1 ≤ K ≤ N")).with_hint(
            "e.g. --shard 2/4 runs the second of four shards (rows split by a hash of their id)",
        )
    })
}

/// A rate limit as given: a positive, finite number per minute.
fn per_minute(flag: &str, value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::invalid(format!(
            "{flag} must be a positive number per minute, not {v}"
        ))
        .with_hint("e.g. --max-rpm 500 --max-tpm 200000, the limits of your API key")),
        other => Ok(other),
    }
}

/// `--max-cost`: dollars, more than 0.
fn max_cost(value: Option<f64>) -> Result<Option<f64>> {
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
    duration_of("--cache-ttl", text)
}

/// A flag's duration in seconds: whole seconds, or a number with a unit (`s`, `m`, `h`, `d`).
pub fn duration_of(flag: &str, text: &str) -> Result<u64> {
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
            Error::invalid(format!("{flag} '{text}' is not a duration"))
                .with_hint("write whole seconds or a number with s, m, h or d: 90s, 30m, 12h, 7d")
        })
}

/// `--since` / `--until` in ms since the epoch: a duration back from `now_ms` (`30m`, `24h`,
/// `7d`, whole seconds) or an RFC 3339 time.
pub fn instant(flag: &str, text: &str, now_ms: i64) -> Result<i64> {
    if let Ok(secs) = duration_of(flag, text) {
        let back = i64::try_from(secs)
            .ok()
            .and_then(|s| s.checked_mul(1_000))
            .unwrap_or(i64::MAX);
        return Ok(now_ms.saturating_sub(back));
    }
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(text.trim(), rfc3339) {
        Ok(at) => Ok((at.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(_) => Err(Error::invalid(format!(
            "{flag} '{text}' is neither a duration nor an RFC 3339 time"
        ))
        .with_hint(
            "a duration back from now (30m, 24h, 7d) or a time such as 2026-05-01T09:00:00Z",
        )),
    }
}

/// Where `--eval pairwise` asks: `--base-url` (else runner.toml, `OPENAI_BASE_URL`), the model
/// `--judge-model` names (else runner.toml's judge model, else the candidate's model), at
/// `--concurrency` calls at once.
pub fn pairwise_judge(
    options: &crate::cli::RunOptions,
    ctx: &crate::workflow::Context,
    prompt: &str,
) -> Result<crate::workflow::pairwise::Judge> {
    let defaults = ctx.config()?.for_prompt(prompt);
    let base_url = crate::workflow::settings::endpoint(options.base_url.as_deref(), &defaults)?;
    let client = crate::workflow::experiment::call_client(
        &base_url,
        options.timeout.or(defaults.timeout).unwrap_or(60.0),
        options.max_retries.or(defaults.max_retries).unwrap_or(3),
    )?;
    Ok(crate::workflow::pairwise::Judge {
        client,
        model: options
            .judge_model
            .clone()
            .or_else(|| defaults.judge_model.clone()),
        concurrency: options.concurrency.or(defaults.concurrency).unwrap_or(16),
        cache: crate::engine::CacheUse {
            read: !options.no_cache && !options.fresh,
            write: !options.no_cache,
            max_age: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::path::PathBuf;

    fn command(argv: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("runner").chain(argv.iter().copied()))
            .unwrap()
            .command
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        match command(&[&["experiment", "--prompt", "p"], argv].concat()) {
            Command::Experiment(args) => args.run,
            other => panic!("{other:?}"),
        }
    }

    const TOML: &str = r#"
concurrency = 8
model = "file-model"
evals = ["exact"]

[prompts.p]
dataset = "rows.csv"

[thresholds]
min_pass_rate = 0.9

[limits."http://x/v1"]
max_rpm = 100
"#;

    #[test]
    fn flags_win_over_runner_toml_which_wins_over_the_defaults() {
        let config = Config::parse(TOML).unwrap();
        let args = run_args(&[
            "--base-url",
            "http://x/v1/",
            "--repetitions",
            "2",
            "--var",
            "a=b",
        ]);
        let check = Check::new(&config, "p", None, None).unwrap();
        let settings = ExperimentSettings::for_experiment(&config, "p", &args, check).unwrap();
        assert_eq!(settings.dataset, PathBuf::from("rows.csv"));
        assert_eq!(settings.base_url, "http://x/v1");
        assert_eq!(settings.model.as_deref(), Some("file-model"));
        assert_eq!(settings.evals, Evals::File(vec!["exact".into()]));
        assert!(settings.evals.flags().is_empty());
        let run = &settings.run;
        assert_eq!(
            (run.concurrency, run.repetitions, run.timeout_secs),
            (8, 2, 60.0)
        );
        assert_eq!(run.vars["a"], "b");
        // The endpoint's own limit, where no flag sets one.
        assert_eq!(run.max_rpm, Some(100.0));
        assert_eq!(run.detached, None);
        assert_eq!(
            check,
            Check {
                min_pass_rate: Some(0.9),
                max_error_rate: DEFAULT_MAX_ERROR_RATE
            }
        );

        let args = run_args(&[
            "--base-url",
            "http://x/v1",
            "--max-rpm",
            "5",
            "--eval",
            "json",
        ]);
        let settings = ExperimentSettings::for_experiment(&config, "p", &args, check).unwrap();
        assert_eq!(settings.run.max_rpm, Some(5.0));
        assert_eq!(settings.evals.flags(), ["json"]);
    }

    #[test]
    fn a_bad_flag_is_refused_naming_it() {
        let config = Config::default();
        let refused = |argv: &[&str]| {
            let check = Check::new(&config, "p", None, None).unwrap();
            let args =
                run_args(&[&["--dataset", "d.csv", "--base-url", "http://x/v1"], argv].concat());
            ExperimentSettings::for_experiment(&config, "p", &args, check)
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&["--concurrency", "0"]).contains("--concurrency must be at least 1"));
        assert!(refused(&["--timeout", "0"]).contains("--timeout must be a positive number"));
        assert!(refused(&["--cache-ttl", "5w"]).contains("--cache-ttl '5w' is not a duration"));
        assert!(refused(&["--shard", "3/2"]).contains("--shard '3/2' is not K/N"));
        assert!(refused(&["--var", "novalue"]).contains("invalid --var 'novalue'"));
        assert!(refused(&["--detach", "--max-cost", "1"]).contains("cannot be kept by workers"));
        assert!(refused(&["--detach", "--key", " "]).contains("--key must be 1 to 200"));
        let dataset = ExperimentSettings::new(&config, "p", None, &RunOptions::default());
        assert!(dataset.unwrap_err().to_string().contains("no dataset"));
    }

    #[test]
    fn detach_stores_its_key_and_the_check_with_the_run() {
        let config = Config::default();
        let args = run_args(&["--dataset", "d.csv", "--detach", "--key", "ci-7"]);
        let check = Check::new(&config, "p", Some(0.8), None).unwrap();
        let settings = ExperimentSettings::for_experiment(&config, "p", &args, check).unwrap();
        assert_eq!(
            settings.run.detached,
            Some(Detached {
                key: Some("ci-7".into()),
                min_pass_rate: Some(0.8),
                max_error_rate: Some(0.0),
            })
        );
    }

    #[test]
    fn a_worker_takes_its_allowances_from_both_the_flags_and_runner_toml() {
        let config = Config::parse("[worker]\nallow_eval = [\"judge:r.md\"]\n").unwrap();
        let worker = |argv: &[&str]| match command(&[&["worker", "exp_1"], argv].concat()) {
            Command::Worker(args) => WorkerSettings::new(&config, &args),
            other => panic!("{other:?}"),
        };
        let settings = worker(&["--allow-cmd", "python3"]).unwrap();
        assert_eq!(settings.allowed, ["cmd:python3", "judge:r.md"]);
        assert_eq!(settings.lease, Duration::from_secs(30));
        let lease = worker(&["--lease", "0.5"]).unwrap_err().to_string();
        assert!(
            lease.contains("--lease must be 1 to 86400 seconds, not 0.5"),
            "{lease}"
        );
        let concurrency = worker(&["--concurrency", "0"]).unwrap_err().to_string();
        assert!(concurrency.contains("--concurrency must be 1 to 10000"));
    }
}
