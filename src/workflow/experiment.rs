//! The experiment lifecycle: check and resolve everything a run needs (prepare), create and
//! run it to its end (launch), or run what a stored one still lacks (resume), then record how
//! it ended. The CLI, the API and the promotion workflow all go through here.

use super::Context;
use crate::client::{Client, ClientConfig, DEFAULT_BASE_URL};
use crate::config::RunDefaults;
use crate::dataset;
use crate::engine::{self, Done, Outcome, Plan, Reporter, Stop};
use crate::error::{Error, Result};
use crate::eval::{self, Evaluator};
use crate::input::{check_prompt_name, split_assignment};
use crate::model::{
    DatasetRef, Experiment, ExperimentStatus, JsonObject, NewExperiment, PromptVersion,
    RunSettings, RunStats, Summary, VersionRef,
};
use crate::store::Store;
use crate::template::CompiledTemplate;
use serde_json::{Value, json};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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

/// Bounds that keep a typo from exhausting memory or file handles.
const MAX_CONCURRENCY: usize = 10_000;
const MAX_REPETITIONS: usize = 1_000;
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// Checks the run options, lays them over runner.toml's defaults, and turns them into settings.
fn settings(options: &RunRequest, defaults: &RunDefaults) -> Result<RunSettings> {
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

/// The fingerprint a shard's experiment is stored with: its plan's, then which shard.
pub fn shard_fingerprint(plan: &str, shard: crate::model::Shard) -> String {
    format!("{plan} shard {shard}")
}

/// How many of the first `rows` rows of a dataset fall in `shard`.
fn shard_rows(path: &Path, rows: usize, shard: crate::model::Shard) -> Result<usize> {
    let mut count = 0;
    for row in dataset::rows(path).map_err(dataset_error)?.take(rows) {
        if shard.contains(&row.map_err(dataset_error)?.id) {
            count += 1;
        }
    }
    Ok(count)
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
pub fn max_cost(value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::invalid(format!(
            "--max-cost must be a positive number of dollars, not {v}"
        ))
        .with_hint("e.g. --max-cost 2.50 stops the run before it spends more than $2.50")),
        other => Ok(other),
    }
}

/// The budget of a run: `--max-cost` at the price of the experiment's model, less what its
/// stored results already cost. A budget without a price could not be kept: refused.
fn budget(
    ctx: &Context,
    experiment: &Experiment,
    already: (i64, i64),
) -> Result<Option<Arc<crate::cost::Budget>>> {
    let Some(max) = experiment.settings.max_cost else {
        return Ok(None);
    };
    let price = priced(ctx, &experiment.model)?;
    let spent = price.cost(already.0 as f64, already.1 as f64);
    Ok(Some(Arc::new(crate::cost::Budget::new(max, price, spent))))
}

/// The price of `model` for a budget, or why there is none.
fn priced(ctx: &Context, model: &str) -> Result<crate::cost::Price> {
    match ctx.config()?.prices().lookup(model) {
        Some((price, _)) => Ok(price),
        None => Err(Error::invalid(format!(
            "--max-cost needs the price of model {model}, and runner has none"
        ))
        .with_hint(format!(
            "add [prices.\"{model}\"] with input_per_mtok and output_per_mtok (dollars per million tokens) to runner.toml"
        ))),
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

/// Checks an endpoint URL as given: well formed, http(s), and free of credentials.
fn check_endpoint(base_url: &str) -> Result<()> {
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

fn endpoint_error(e: crate::client::ConfigError) -> Error {
    Error::invalid(e.to_string())
        .with_hint("pass --base-url http://HOST:PORT/v1 or set OPENAI_BASE_URL")
}

/// The endpoint from the flag, the environment, or OpenAI's; the key only from the environment.
pub(super) fn client(base_url: &str, settings: &RunSettings) -> Result<Client> {
    check_endpoint(base_url)?;
    let mut config = ClientConfig::new(base_url);
    config.api_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config.timeout = Duration::from_secs_f64(settings.timeout_secs);
    config.max_retries = settings.max_retries;
    config.pool_size = settings.concurrency;
    config.max_rpm = settings.max_rpm;
    config.max_tpm = settings.max_tpm;
    Client::new(config).map_err(endpoint_error)
}

/// The endpoint of one call outside an experiment (`runner try`): the flag, runner.toml, then
/// `OPENAI_BASE_URL`, then OpenAI's; checked as an experiment's is.
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

/// A client for single calls with an experiment's key handling, timeout and retries.
pub fn call_client(base_url: &str, timeout_secs: f64, max_retries: u32) -> Result<Client> {
    if !(timeout_secs.is_finite() && timeout_secs > 0.0 && timeout_secs <= MAX_TIMEOUT_SECS) {
        return Err(Error::invalid(format!(
            "--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_SECS}"
        )));
    }
    let mut config = ClientConfig::new(base_url);
    config.api_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config.timeout = Duration::from_secs_f64(timeout_secs);
    config.max_retries = max_retries;
    config.pool_size = 2;
    Client::new(config).map_err(endpoint_error)
}

/// Connects once before anything is written, so an endpoint that is not there fails the run
/// at once (exit 3) with the store untouched.
pub(super) fn probe(runtime: &tokio::runtime::Runtime, base_url: &str) -> Result<()> {
    let url = reqwest::Url::parse(base_url).map_err(|e| Error::invalid(e.to_string()))?;
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((host.clone(), port));
    let reached =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), connect).await });
    match reached {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(base_url, &e.to_string())),
        Err(_) => Err(unreachable(base_url, "no answer within 10 s")),
    }
}

fn unreachable(base_url: &str, cause: &str) -> Error {
    Error::operational(format!("cannot reach the endpoint {base_url}: {cause}")).with_hint(
        "start the server, or fix --base-url / OPENAI_BASE_URL; `runner mock-server` serves a local endpoint",
    )
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::operational(format!("cannot start the async runtime: {e}")))
}

/// Prepares the evaluators and checks what they need of the dataset.
pub(super) fn evaluators(specs: &[String], has_expected: bool) -> Result<Vec<Evaluator>> {
    let mut prepared = Vec::new();
    for spec in specs {
        let evaluator = Evaluator::prepare(spec).map_err(|e| {
            Error::invalid(e.to_string()).with_hint(format!("evaluators: {}", eval::KINDS))
        })?;
        if evaluator.needs_expected() && !has_expected {
            return Err(Error::invalid(format!(
                "evaluator '{spec}' compares with an expected answer, and the dataset has no expected column"
            ))
            .with_hint("name the column with --expected-column COLUMN, or add an `expected` column"));
        }
        prepared.push(evaluator);
    }
    Ok(prepared)
}

/// The expected column: the flag (which must exist) or `expected` when the dataset has one.
fn expected_column(flag: Option<&str>, info: &dataset::DatasetInfo) -> Result<Option<String>> {
    let has = |name: &str| info.columns.iter().chain(&info.fields).any(|c| c == name);
    match flag {
        Some(column) if has(column) => Ok(Some(column.to_string())),
        Some(column) => Err(Error::invalid(format!(
            "--expected-column {column}: the dataset has no such column"
        ))
        .with_hint(format!("columns: {}", info.columns.join(", ")))),
        None => Ok(has("expected").then(|| "expected".to_string())),
    }
}

/// An experiment checked and resolved, ready to run (or to be matched with a stored one).
pub struct Prepared {
    pub prompt: String,
    pub version: PromptVersion,
    pub tag: Option<String>,
    pub template: CompiledTemplate,
    pub dataset: PathBuf,
    pub info: dataset::DatasetInfo,
    pub settings: RunSettings,
    pub specs: Vec<String>,
    pub evaluators: Vec<Evaluator>,
    pub model: String,
    pub base_url: String,
    pub name: Option<String>,
    /// What decides the requests and the scores, hashed: two runs with equal fingerprints are
    /// interchangeable as evidence.
    pub fingerprint: String,
}

/// The fingerprint of a prepared run: what decides the requests and the scores. Evaluator
/// files (rubrics, schemas, programs) count by content, so editing a rubric makes old
/// experiments stale. The endpoint's base URL does not count: the same model behind another
/// address (a proxy, a gateway, a mock on another port) answers the same requests, and
/// `--same-endpoint` asks for the address as well where it matters. Stores written before
/// carry fingerprints that held it (`legacy_fingerprint`).
pub(super) fn fingerprint(
    version_id: &str,
    dataset_hash: &str,
    model: &str,
    evaluators: &[Evaluator],
    settings: &RunSettings,
) -> String {
    fingerprint_of(version_id, dataset_hash, model, None, evaluators, settings)
}

/// The fingerprint as runner computed it before the endpoint left it: a detached experiment
/// planned then still matches its worker.
pub(super) fn legacy_fingerprint(
    version_id: &str,
    dataset_hash: &str,
    model: &str,
    base_url: &str,
    evaluators: &[Evaluator],
    settings: &RunSettings,
) -> String {
    fingerprint_of(
        version_id,
        dataset_hash,
        model,
        Some(base_url),
        evaluators,
        settings,
    )
}

fn fingerprint_of(
    version_id: &str,
    dataset_hash: &str,
    model: &str,
    base_url: Option<&str>,
    evaluators: &[Evaluator],
    settings: &RunSettings,
) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&str> = evaluators.iter().map(Evaluator::name).collect();
    sorted.sort();
    let files: serde_json::Map<String, Value> = evaluators
        .iter()
        .filter_map(|e| Some((e.name().to_string(), Value::String(e.file_digest()?.into()))))
        .collect();
    // Keys in the order earlier stores hashed them, so the legacy form (with the base URL
    // after the model) is byte for byte what they hold, however serde_json orders maps.
    let mut canonical = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        canonical.insert(key.to_string(), value);
    };
    put("version_id", json!(version_id));
    put("dataset_hash", json!(dataset_hash));
    put("model", json!(model));
    if let Some(base_url) = base_url {
        put("base_url", json!(base_url));
    }
    put("evaluators", json!(sorted));
    put("evaluator_files", Value::Object(files));
    put("repetitions", json!(settings.repetitions));
    put("limit", json!(settings.limit));
    put("vars", json!(settings.vars));
    put("columns", json!(settings.columns));
    put("expected_column", json!(settings.expected_column));
    put("judge_model", json!(settings.judge_model));
    let canonical = Value::Object(canonical);
    crate::model::hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

/// Resolves and checks everything a run needs, before anything is sent or written: the
/// version, the dataset, every variable's source, the evaluators, the model and the endpoint.
pub fn prepare(
    ctx: &Context,
    prompt: &str,
    reference: &VersionRef,
    dataset_path: Option<&Path>,
    name: Option<String>,
    options: &RunRequest,
) -> Result<Prepared> {
    check_prompt_name(prompt)?;
    let defaults = ctx.config()?.for_prompt(prompt);
    let dataset_path = dataset_path
        .map(Path::to_path_buf)
        .or_else(|| defaults.dataset.clone())
        .ok_or_else(|| {
            Error::invalid("no dataset: pass --dataset FILE")
                .with_hint("a .csv file with a header row, or a .jsonl file with one object per line (or set `dataset` in runner.toml)")
        })?;
    let mut settings = settings(options, &defaults)?;
    let store = ctx.store_for_reading()?;
    let version = store.version(prompt, reference)?;
    let template = CompiledTemplate::compile(version.format, &version.template)?;
    let info = ctx.scan(&dataset_path).map_err(dataset_error)?;
    engine::preflight(&template, &info, &settings).map_err(|missing| {
        Error::invalid(format!(
            "no column or --var supplies template variable(s): {}",
            crate::template::list_names(&missing.variables)
        ))
        .with_hint(format!(
            "the dataset's columns are {}; map one with --column VAR=COLUMN or pass --var VAR=VALUE",
            missing.available.join(", ")
        ))
    })?;
    settings.expected_column = expected_column(options.expected_column.as_deref(), &info)?;
    let specs = if !options.evals.is_empty() {
        options.evals.clone()
    } else if let Some(evals) = &defaults.evals {
        evals.clone()
    } else {
        eval::default_specs(settings.expected_column.is_some())
    };
    let from_file = options.evals.is_empty() && defaults.evals.is_some();
    let evaluators = evaluators(&specs, settings.expected_column.is_some()).map_err(|e| {
        if from_file {
            // Say where the spec came from: no flag on the command line names it.
            Error::invalid(format!("{e} (from `evals` in runner.toml)"))
                .with_hint(e.hint().unwrap_or_default())
        } else {
            e
        }
    })?;
    let model = options
        .model
        .clone()
        .or_else(|| defaults.model.clone())
        .or_else(|| version.model.clone())
        .ok_or_else(|| {
            Error::invalid(format!("{prompt} v{} names no model", version.seq)).with_hint(
                "pass --model MODEL, or set one with `runner prompt update NAME --model MODEL`",
            )
        })?;
    let base_url = options
        .base_url
        .clone()
        .or_else(|| defaults.base_url.clone())
        .or_else(|| {
            std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|u| !u.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    check_endpoint(&base_url)?;
    let tag = match reference {
        VersionRef::Tag(tag) => Some(tag.clone()),
        _ => None,
    };
    let base_url = base_url.trim_end_matches('/').to_string();
    // Limits written for this endpoint in runner.toml, where no flag or default set one.
    if let Some(limits) = ctx.config()?.limits.get(&base_url) {
        settings.max_rpm = settings.max_rpm.or(per_minute("max_rpm", limits.max_rpm)?);
        settings.max_tpm = settings.max_tpm.or(per_minute("max_tpm", limits.max_tpm)?);
    }
    if settings.max_cost.is_some() {
        priced(ctx, &model)?;
    }
    let fingerprint = fingerprint(&version.id, &info.hash, &model, &evaluators, &settings);
    Ok(Prepared {
        fingerprint,
        prompt: prompt.to_string(),
        version,
        tag,
        template,
        dataset: dataset_path,
        info,
        settings,
        specs,
        evaluators,
        model,
        base_url,
        name,
    })
}

/// Creates the experiment and runs it to its end (or an interruption); returns how it ended.
pub fn launch(
    prepared: Prepared,
    ctx: &Context,
    reporter: &dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> Result<Finished> {
    let client = client(&prepared.base_url, &prepared.settings)?;
    let runtime = runtime()?;
    probe(&runtime, client.base_url())?;
    let store = ctx.store()?;
    let settings = prepared.settings.clone();
    let rows = settings
        .limit
        .map_or(prepared.info.rows, |l| l.min(prepared.info.rows));
    let rows = match settings.shard {
        Some(shard) => shard_rows(&prepared.dataset, rows, shard)?,
        None => rows,
    };
    let experiment = store.create_experiment(&NewExperiment {
        name: prepared.name.clone(),
        prompt: prepared.prompt.clone(),
        version_id: prepared.version.id.clone(),
        tag: prepared.tag.clone(),
        dataset: DatasetRef {
            // Absolute, so `resume` finds the file from any working directory.
            path: std::fs::canonicalize(&prepared.dataset)
                .unwrap_or_else(|_| prepared.dataset.clone())
                .display()
                .to_string(),
            hash: prepared.info.hash.clone(),
            rows: prepared.info.rows as i64,
            columns: prepared.info.columns.clone(),
        },
        model: prepared.model.clone(),
        base_url: client.base_url().to_string(),
        evaluators: prepared.specs.clone(),
        planned: (rows * settings.repetitions) as i64,
        settings: settings.clone(),
        author: ctx.author.clone(),
        // A shard is not evidence for the whole plan; `experiment merge` reads the plan's
        // fingerprint back from before the suffix.
        fingerprint: match settings.shard {
            Some(shard) => shard_fingerprint(&prepared.fingerprint, shard),
            None => prepared.fingerprint.clone(),
        },
    })?;
    let lease = Lease::take(&store, &experiment.id)?;
    let done = Done::new(prepared.info.rows, settings.repetitions);
    let budget = budget(ctx, &experiment, (0, 0))?;
    let plan = plan(
        experiment,
        prepared.version,
        prepared.template,
        &prepared.dataset,
        prepared.evaluators,
        client,
        budget,
    );
    let ready = Ready {
        runtime,
        plan,
        store,
        done,
        fresh: true,
        lease,
    };
    execute(ready, reporter, interrupt)
}

pub(super) fn plan(
    experiment: Experiment,
    version: PromptVersion,
    template: CompiledTemplate,
    dataset: &Path,
    evaluators: Vec<Evaluator>,
    client: Client,
    budget: Option<Arc<crate::cost::Budget>>,
) -> Plan {
    let judge_model = experiment
        .settings
        .judge_model
        .clone()
        .unwrap_or_else(|| experiment.model.clone());
    let cache = engine::CacheUse::of(&experiment.settings);
    Plan {
        experiment,
        version,
        template,
        dataset: dataset.to_path_buf(),
        evaluators,
        client,
        judge_model,
        cache,
        budget,
    }
}

/// Runs what an experiment still lacks: its dataset must be unchanged; only rows without a
/// successful result are sent.
///
/// `max_cost` replaces the budget the experiment was started with (a run stopped by its
/// budget goes on with a larger one).
pub fn resume(
    ctx: &Context,
    id: &str,
    max_cost: Option<f64>,
    reporter: &dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> Result<Finished> {
    let max_cost = self::max_cost(max_cost)?;
    let store = ctx.store_for_reading()?;
    let mut experiment = store.experiment(id)?;
    if experiment.settings.detached.is_some() {
        return Err(Error::invalid(format!(
            "experiment {} is run by workers, not resumed",
            experiment.id
        ))
        .with_hint(format!("start one: runner worker {}", experiment.id)));
    }
    if max_cost.is_some() {
        experiment.settings.max_cost = max_cost;
    }
    if experiment.settings.max_cost.is_some() {
        priced(ctx, &experiment.model)?;
    }
    let version = store.version(
        &experiment.prompt,
        &VersionRef::Id(experiment.version_id.clone()),
    )?;
    let template = CompiledTemplate::compile(version.format, &version.template)?;
    let path = Path::new(&experiment.dataset.path).to_path_buf();
    let info = dataset::scan(&path).map_err(|e| {
        Error::invalid(e.to_string())
            .with_hint("resume needs the experiment's dataset at the same path")
    })?;
    if info.hash != experiment.dataset.hash {
        return Err(Error::invalid(format!(
            "dataset {} changed since experiment {} started",
            path.display(),
            experiment.id
        ))
        .with_hint("restore the file as it was, or start a new experiment"));
    }
    let evaluators = evaluators(
        &experiment.evaluators,
        experiment.settings.expected_column.is_some(),
    )?;
    let client = client(&experiment.base_url, &experiment.settings)?;
    let runtime = runtime()?;
    probe(&runtime, client.base_url())?;
    let store = ctx.store()?;
    // Taken before the missing rows are counted: a second resume of the same experiment is
    // refused instead of sending every missing row twice.
    let lease = Lease::take(&store, &experiment.id)?;
    let done = Done::load(&*store, &experiment)?;
    let budget = budget(ctx, &experiment, store.tokens(&experiment.id)?)?;
    store.reopen_experiment(&experiment.id)?;
    let plan = plan(
        experiment, version, template, &path, evaluators, client, budget,
    );
    let ready = Ready {
        runtime,
        plan,
        store,
        done,
        fresh: false,
        lease,
    };
    execute(ready, reporter, interrupt)
}

/// How long a run's claim on its experiment lasts without renewal; it is renewed every third
/// of that while the run goes on, so a run that dies frees its experiment within this time
/// (at once when it ran on this machine: a dead process's lease is not honoured).
pub const LEASE: Duration = Duration::from_secs(30);

/// A run's claim on its experiment, renewed by a thread while held, given up when dropped.
struct Lease {
    store: Arc<dyn Store>,
    id: String,
    owner: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Lease {
    fn take(store: &Arc<dyn Store>, id: &str) -> Result<Lease> {
        let owner = lease_owner();
        store.take_lease(id, &owner, LEASE, &holder_alive)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let renewer = {
            let (store, id, owner) = (store.clone(), id.to_string(), owner.clone());
            std::thread::spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(LEASE / 3)
                {
                    let _ = store.renew_lease(&id, &owner, LEASE);
                }
            })
        };
        Ok(Lease {
            store: store.clone(),
            id: id.to_string(),
            owner,
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        let _ = self.store.release_lease(&self.id, &self.owner);
    }
}

/// An experiment as a person should read it: one stored as running whose run is gone (its
/// lease expired, or its process on this machine ended, or it never had one) is interrupted,
/// and `runner experiment resume ID` runs the rest.
pub fn as_seen(mut experiment: Experiment) -> Experiment {
    // A detached experiment runs while it has items left, whichever workers come and go.
    if experiment.status == ExperimentStatus::Running && experiment.settings.detached.is_none() {
        let running = experiment
            .lease
            .as_ref()
            .is_some_and(|lease| lease.until > crate::model::now() && holder_alive(&lease.owner));
        if !running {
            experiment.status = ExperimentStatus::Interrupted;
        }
    }
    experiment
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

/// Who holds a lease, as a person reads it: `pid 4242 on build-7`.
fn lease_owner() -> String {
    format!("pid {} on {}", std::process::id(), hostname())
}

/// Whether a lease's holder may still be running: a process on this machine that is gone
/// holds nothing; for another machine only the lease's expiry can tell.
fn holder_alive(holder: &str) -> bool {
    let parsed = holder
        .strip_prefix("pid ")
        .and_then(|rest| rest.split_once(" on "))
        .and_then(|(pid, host)| Some((pid.parse::<u32>().ok()?, host)));
    match parsed {
        Some((pid, host)) if host == hostname() && Path::new("/proc/self").exists() => {
            Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => true,
    }
}

/// A run about to start: everything checked, the experiment stored and leased.
struct Ready {
    runtime: tokio::runtime::Runtime,
    plan: Plan,
    store: Arc<dyn Store>,
    done: Done,
    /// Made by this command: a setup failure removes it again.
    fresh: bool,
    lease: Lease,
}

/// Runs the plan, telling `reporter` as it goes, and records how it ended.
fn execute(
    ready: Ready,
    reporter: &dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> Result<Finished> {
    // The lease is held (and renewed) until this function returns.
    let Ready {
        runtime,
        plan,
        store,
        done,
        fresh,
        lease: _lease,
    } = ready;
    let id = plan.experiment.id.clone();
    let budget = plan.budget.clone();
    let planned = plan.experiment.planned;
    let outcome: std::result::Result<Outcome, engine::RunError> = runtime.block_on(engine::run(
        plan,
        store.clone(),
        store.clone(),
        engine::Source::Dataset(done),
        reporter,
        interrupt,
    ));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(engine::RunError::Dataset(e)) => {
            let _ = store.finish_experiment(&id, ExperimentStatus::Failed, 0);
            return Err(dataset_error(e));
        }
        Err(engine::RunError::Writer(message)) => {
            let _ = store.finish_experiment(&id, ExperimentStatus::Failed, 0);
            return Err(Error::operational(format!(
                "experiment {id} stopped: the result writer failed: {message}"
            ))
            .with_hint(format!(
                "the results stored so far are kept; `runner experiment resume {id}` runs the rest"
            )));
        }
        Err(engine::RunError::Store(e)) => {
            let _ = store.finish_experiment(&id, ExperimentStatus::Failed, 0);
            let error: Error = e.into();
            return Err(error.with_hint(format!(
                "the results stored so far are kept; once the store is writable, \
                 `runner experiment resume {id}` runs the rest"
            )));
        }
    };
    let wall_ms = outcome.wall.as_millis() as i64;
    match &outcome.stop {
        Some(Stop::Auth(message)) | Some(Stop::Unreachable(message)) => {
            // Not one call answered: a setup problem. A new experiment leaves no trace.
            if fresh {
                store.discard_experiment(&id)?;
            } else {
                store.finish_experiment(&id, ExperimentStatus::Failed, wall_ms)?;
            }
            let auth = matches!(outcome.stop, Some(Stop::Auth(_)));
            let error = Error::operational(format!(
                "the endpoint {} before any call succeeded: {message}",
                if auth {
                    "refused the credentials"
                } else {
                    "could not be reached"
                }
            ));
            return Err(if auth {
                error.with_hint("set OPENAI_API_KEY to a key this endpoint accepts")
            } else {
                error.with_hint(
                    "check that the server is up and --base-url / OPENAI_BASE_URL is right",
                )
            });
        }
        Some(Stop::Rejected(message)) => {
            if fresh {
                store.discard_experiment(&id)?;
            } else {
                store.finish_experiment(&id, ExperimentStatus::Failed, wall_ms)?;
            }
            return Err(Error::operational(format!(
                "the endpoint refused the first {} calls the same way, before any succeeded: {message}",
                engine::FAIL_FAST_AFTER
            ))
            .with_hint(
                "check the model name (--model or the version's model) and that the endpoint \
                 has a key for it; a new experiment stopped this way leaves no trace",
            ));
        }
        Some(Stop::Budget) => {
            store.finish_experiment(&id, ExperimentStatus::Interrupted, wall_ms)?;
            let (spent, max) = budget
                .as_ref()
                .map(|b| (b.spent(), b.max_usd))
                .unwrap_or_default();
            let stored = store.summary(&store.experiment(&id)?)?.results;
            return Err(Error::budget(format!(
                "experiment {id} stopped at its budget: {} spent of --max-cost {}, \
                 {stored} of {planned} results stored; no request was sent beyond it",
                crate::cost::usd(spent),
                crate::cost::usd(max)
            ))
            .with_hint(format!(
                "`runner experiment resume {id} --max-cost MORE` runs the rest with a larger budget"
            )));
        }
        Some(Stop::EndpointDown(reason)) => {
            store.finish_experiment(&id, ExperimentStatus::Interrupted, wall_ms)?;
            let stored = store.summary(&store.experiment(&id)?)?;
            return Err(Error::operational(format!(
                "experiment {id} stopped, interrupted: the endpoint stopped answering \
                 ({reason}); {} of {planned} results are stored ({} ok, {} errored)",
                stored.results, stored.ok, stored.errored
            ))
            .with_hint(format!(
                "once the endpoint answers again, `runner experiment resume {id}` sends only the rows \
                 without an answer"
            )));
        }
        Some(Stop::Broken(message)) => {
            store.finish_experiment(&id, ExperimentStatus::Failed, wall_ms)?;
            return Err(Error::operational(format!(
                "experiment {id} stopped: {message}"
            ))
            .with_hint(format!(
                "the results stored so far are kept; `runner experiment resume {id}` runs the rest"
            )));
        }
        _ => {}
    }
    store.finish_experiment(&id, outcome.status, wall_ms)?;
    let experiment = store.experiment(&id)?;
    let summary = store.summary(&experiment)?;
    Ok(Finished {
        status: experiment.status,
        experiment,
        summary,
        stats: RunStats {
            processed: outcome.processed,
            wall_secs: outcome.wall.as_secs_f64(),
            oldest_cached_secs: outcome.oldest_cached.map(|age| age.as_secs_f64()),
            rate_limited: outcome.throttle.rate_limited,
            throttled_secs: outcome.throttle.throttled.as_secs_f64(),
            concurrency: outcome.throttle.concurrency,
            max_concurrency: outcome.throttle.max_concurrency,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_fingerprint_is_the_one_earlier_stores_hold_and_the_endpoint_left_the_new_one() {
        let evaluators = vec![Evaluator::prepare("icontains").unwrap()];
        let request = RunRequest {
            repetitions: Some(3),
            ..RunRequest::default()
        };
        let settings = super::settings(&request, &RunDefaults::default()).unwrap();
        // The canonical form as runner wrote it before the base URL left the fingerprint.
        let before = json!({
            "version_id": "v-1",
            "dataset_hash": "h",
            "model": "m",
            "base_url": "http://a/v1",
            "evaluators": ["icontains"],
            "evaluator_files": {},
            "repetitions": 3,
            "limit": null,
            "vars": {},
            "columns": [],
            "expected_column": null,
            "judge_model": null,
        });
        use sha2::{Digest, Sha256};
        let expected = crate::model::hex(&Sha256::digest(before.to_string().as_bytes()));
        let legacy = legacy_fingerprint("v-1", "h", "m", "http://a/v1", &evaluators, &settings);
        assert_eq!(legacy, expected);
        let new = fingerprint("v-1", "h", "m", &evaluators, &settings);
        assert_ne!(new, legacy);
        assert_ne!(
            legacy_fingerprint("v-1", "h", "m", "http://b/v1", &evaluators, &settings),
            legacy
        );
    }
}
