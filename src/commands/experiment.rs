//! `runner experiment …` and `runner mock-server`.

use super::{Context, check_prompt_name, out, out_json, split_assignment, version_ref};
use crate::cli::{
    ExperimentAction, ExperimentArgs, ExperimentListArgs, ExperimentResumeArgs, ExperimentShowArgs,
    MockServerArgs, RunArgs, RunOptions,
};
use crate::client::{Client, ClientConfig, DEFAULT_BASE_URL};
use crate::config::RunDefaults;
use crate::dataset;
use crate::error::{Error, Result, exit};
use crate::eval::{self, Evaluator};
use crate::experiment::{self, Done, Outcome, Plan, Stop};
use crate::model::NewExperiment;
use crate::model::{
    Counters, DatasetRef, Experiment, ExperimentStatus, JsonObject, PromptVersion, RunSettings,
    VersionRef,
};
use crate::report;
use crate::store::{self, Store};
use crate::template::CompiledTemplate;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn run(args: ExperimentArgs, ctx: &Context) -> Result<u8> {
    match args.action {
        None => start(args.run, ctx),
        Some(ExperimentAction::List(args)) => list(args, ctx).map(|_| exit::OK),
        Some(ExperimentAction::Show(args)) => show(args, ctx).map(|_| exit::OK),
        Some(ExperimentAction::Resume(args)) => resume(args, ctx),
    }
}

fn dataset_error(e: dataset::DatasetError) -> Error {
    Error::invalid(e.to_string()).with_hint("fix the file, or pass another with --dataset")
}

/// Bounds that keep a typo from exhausting memory or file handles.
const MAX_CONCURRENCY: usize = 10_000;
const MAX_REPETITIONS: usize = 1_000;
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// Checks the run options, lays them over runner.toml's defaults, and turns them into settings.
fn settings(options: &RunOptions, defaults: &RunDefaults) -> Result<RunSettings> {
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
        judge_model: options
            .judge_model
            .clone()
            .or_else(|| defaults.judge_model.clone()),
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
fn client(base_url: &str, settings: &RunSettings) -> Result<Client> {
    check_endpoint(base_url)?;
    let mut config = ClientConfig::new(base_url);
    config.api_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config.timeout = Duration::from_secs_f64(settings.timeout_secs);
    config.max_retries = settings.max_retries;
    config.pool_size = settings.concurrency;
    Client::new(config).map_err(endpoint_error)
}

/// Connects once before anything is written, so an endpoint that is not there fails the run
/// at once (exit 3) with the store untouched.
fn probe(runtime: &tokio::runtime::Runtime, base_url: &str) -> Result<()> {
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::operational(format!("cannot start the async runtime: {e}")))
}

/// Prepares the evaluators and checks what they need of the dataset.
fn evaluators(specs: &[String], has_expected: bool) -> Result<Vec<Evaluator>> {
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

/// The fingerprint of a prepared run. Evaluator files (rubrics, schemas, programs) count by
/// content, so editing a rubric makes old experiments stale.
fn fingerprint(
    version_id: &str,
    dataset_hash: &str,
    model: &str,
    base_url: &str,
    specs: &[String],
    settings: &RunSettings,
) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted = specs.to_vec();
    sorted.sort();
    let files: serde_json::Map<String, Value> = sorted
        .iter()
        .filter_map(|spec| {
            let (kind, rest) = spec.split_once(':')?;
            let path = match kind {
                "judge" | "json-schema" => rest.trim(),
                "cmd" => rest.split_whitespace().next()?,
                _ => return None,
            };
            let digest = std::fs::read(path)
                .map(|bytes| crate::model::hex(&Sha256::digest(&bytes)))
                .unwrap_or_default();
            Some((spec.clone(), Value::String(digest)))
        })
        .collect();
    let canonical = serde_json::json!({
        "version_id": version_id,
        "dataset_hash": dataset_hash,
        "model": model,
        "base_url": base_url,
        "evaluators": sorted,
        "evaluator_files": files,
        "repetitions": settings.repetitions,
        "limit": settings.limit,
        "vars": settings.vars,
        "columns": settings.columns,
        "expected_column": settings.expected_column,
        "judge_model": settings.judge_model,
    });
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
    options: &RunOptions,
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
    experiment::preflight(&template, &info, &settings).map_err(|missing| {
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
    let evaluators = evaluators(&specs, settings.expected_column.is_some())?;
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
    let fingerprint = fingerprint(
        &version.id,
        &info.hash,
        &model,
        &base_url,
        &specs,
        &settings,
    );
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

/// Where a run's summary goes: stdout for `experiment`, stderr when another command
/// (compare, promote) owns stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryTo {
    Stdout { json: bool },
    Stderr,
}

/// Creates the experiment and runs it; returns it as stored at the end and the exit code.
pub fn launch(prepared: Prepared, ctx: &Context, to: SummaryTo) -> Result<(Experiment, u8)> {
    let client = client(&prepared.base_url, &prepared.settings)?;
    let runtime = runtime()?;
    probe(&runtime, client.base_url())?;
    let store = ctx.store()?;
    let settings = prepared.settings.clone();
    let rows = settings
        .limit
        .map_or(prepared.info.rows, |l| l.min(prepared.info.rows));
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
        fingerprint: prepared.fingerprint.clone(),
    })?;
    let done = Done::new(prepared.info.rows, settings.repetitions);
    let plan = plan(
        experiment,
        prepared.version,
        prepared.template,
        &prepared.dataset,
        prepared.evaluators,
        client,
    );
    execute(runtime, plan, store, done, to, true)
}

fn start(args: RunArgs, ctx: &Context) -> Result<u8> {
    let prompt = args.prompt.clone().ok_or_else(|| {
        Error::invalid("experiment needs --prompt NAME")
            .with_hint("runner experiment --prompt NAME --tag TAG --dataset FILE")
    })?;
    let reference = version_ref(&args.selector)?;
    let prepared = prepare(
        ctx,
        &prompt,
        &reference,
        args.dataset.as_deref(),
        args.name.clone(),
        &args.options,
    )?;
    launch(prepared, ctx, SummaryTo::Stdout { json: args.json }).map(|(_, code)| code)
}

fn plan(
    experiment: Experiment,
    version: PromptVersion,
    template: CompiledTemplate,
    dataset: &Path,
    evaluators: Vec<Evaluator>,
    client: Client,
) -> Plan {
    let judge_model = experiment
        .settings
        .judge_model
        .clone()
        .unwrap_or_else(|| experiment.model.clone());
    let cache = !experiment.settings.no_cache;
    Plan {
        experiment,
        version,
        template,
        dataset: dataset.to_path_buf(),
        evaluators,
        client,
        judge_model,
        cache,
    }
}

fn resume(args: ExperimentResumeArgs, ctx: &Context) -> Result<u8> {
    let store = ctx.store_for_reading()?;
    let experiment = store.experiment(&args.id)?;
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
    let done = Done::load(&*store, &experiment)?;
    let store = ctx.store()?;
    store.reopen_experiment(&experiment.id)?;
    let plan = plan(experiment, version, template, &path, evaluators, client);
    execute(
        runtime,
        plan,
        store,
        done,
        SummaryTo::Stdout { json: args.json },
        false,
    )
    .map(|(_, code)| code)
}

/// Runs the plan with a progress display, records how it ended and prints the summary.
fn execute(
    runtime: tokio::runtime::Runtime,
    plan: Plan,
    store: Arc<dyn Store>,
    done: Done,
    to: SummaryTo,
    fresh: bool,
) -> Result<(Experiment, u8)> {
    let id = plan.experiment.id.clone();
    let planned = plan.experiment.planned as u64;
    let already = planned.saturating_sub(remaining(&plan, &done));
    let counters = Arc::new(Counters::default());
    let progress = report::Progress::start(&id, planned, already, counters.clone());
    let outcome: std::result::Result<Outcome, experiment::RunError> = runtime.block_on(async {
        experiment::run(
            plan,
            store.clone(),
            store.clone(),
            done,
            counters,
            interrupted(),
        )
        .await
    });
    progress.finish();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(experiment::RunError::Dataset(e)) => {
            let _ = store.finish_experiment(&id, ExperimentStatus::Failed, 0);
            return Err(dataset_error(e));
        }
        Err(experiment::RunError::Writer(message)) => {
            let _ = store.finish_experiment(&id, ExperimentStatus::Failed, 0);
            return Err(Error::operational(format!(
                "experiment {id} stopped: the result writer failed: {message}"
            ))
            .with_hint(format!(
                "the results stored so far are kept; `runner experiment resume {id}` runs the rest"
            )));
        }
        Err(experiment::RunError::Store(e)) => {
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
    let run = report::RunStats {
        processed: outcome.processed,
        wall_secs: outcome.wall.as_secs_f64(),
    };
    match to {
        SummaryTo::Stdout { json: true } => {
            out_json(&report::experiment_json(&experiment, &summary, Some(&run)))?
        }
        SummaryTo::Stdout { json: false } => out(&report::experiment_summary(
            &experiment,
            &summary,
            Some(&run),
        )),
        SummaryTo::Stderr => eprintln!(
            "{}",
            report::experiment_summary(&experiment, &summary, Some(&run))
        ),
    }
    let code = match outcome.status {
        ExperimentStatus::Interrupted => {
            eprintln!(
                "interrupted: finished results are stored; `runner experiment resume {id}` runs the rest"
            );
            exit::INTERRUPTED
        }
        _ => exit::OK,
    };
    Ok((experiment, code))
}

/// How many (row, repetition) pairs the run still has to do.
fn remaining(plan: &Plan, done: &Done) -> u64 {
    let settings = &plan.experiment.settings;
    let rows = (plan.experiment.planned as usize) / settings.repetitions.max(1);
    let mut count = 0;
    for row in 0..rows {
        for rep in 0..settings.repetitions {
            if !done.contains(row, rep) {
                count += 1;
            }
        }
    }
    count
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one (a cancelled CI job).
async fn interrupted() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn list(args: ExperimentListArgs, ctx: &Context) -> Result<()> {
    if let Some(prompt) = &args.prompt {
        check_prompt_name(prompt)?;
    }
    let store = ctx.store_for_reading()?;
    let experiments = store.experiments(args.prompt.as_deref())?;
    if args.json {
        out_json(&experiments)
    } else {
        out(&report::experiments_table(&experiments));
        Ok(())
    }
}

fn show(args: ExperimentShowArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store_for_reading()?;
    let experiment = store.experiment(&args.id)?;
    let summary = store.summary(&experiment)?;
    if let Some(path) = &args.csv {
        write_csv(&*store, &experiment, path)?;
        eprintln!("wrote {} rows to {}", summary.results, path.display());
    }
    let mut stdout = std::io::stdout().lock();
    let write_error = |e: std::io::Error| Error::operational(format!("cannot write output: {e}"));
    if args.json {
        let head = report::experiment_json(&experiment, &summary, None);
        if !args.rows {
            return out_json(&head);
        }
        // Rows stream out one by one: a million-row experiment is never held in memory.
        let text = serde_json::to_string(&head).map_err(|e| Error::operational(e.to_string()))?;
        let open = text.strip_suffix('}').unwrap_or(&text);
        write!(stdout, "{open},\"rows\":[").map_err(write_error)?;
        let mut first = true;
        store::visit_results(&*store, &experiment.id, |result| -> Result<()> {
            let line = serde_json::to_string(&result).unwrap_or_default();
            let sep = if first { "\n" } else { ",\n" };
            first = false;
            let _ = write!(stdout, "{sep}{line}");
            Ok(())
        })?;
        writeln!(stdout, "\n]}}").map_err(write_error)?;
        return Ok(());
    }
    out(&report::experiment_summary(&experiment, &summary, None));
    if args.rows {
        let mut rows = Vec::new();
        store::visit_results(&*store, &experiment.id, |result| -> Result<()> {
            rows.push(report::result_row(&experiment, &result));
            Ok(())
        })?;
        out(&report::results_table(&experiment, rows));
    }
    Ok(())
}

fn write_csv(store: &dyn Store, experiment: &Experiment, path: &Path) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::operational(format!("cannot write {}: {e}", path.display()))
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
    let mut header: Vec<String> = [
        "row_index",
        "row_id",
        "repetition",
        "status",
        "output",
        "expected",
        "error_kind",
        "error_message",
        "http_status",
        "attempts",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "cached",
        "vars",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for name in &experiment.evaluators {
        header.push(format!("{name}.score"));
        header.push(format!("{name}.pass"));
        header.push(format!("{name}.reason"));
    }
    writer.write_record(&header).map_err(|e| fail(&e))?;
    store::visit_results(store, &experiment.id, |r| -> Result<()> {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let mut record = vec![
            r.row_index.to_string(),
            r.row_id.clone(),
            r.repetition.to_string(),
            r.status.as_str().to_string(),
            opt(r.output.clone()),
            opt(r.expected.clone()),
            opt(r.error_kind.clone()),
            opt(r.error_message.clone()),
            opt(r.http_status.map(|s| s.to_string())),
            r.attempts.to_string(),
            format!("{:.1}", r.latency_ms),
            opt(r.prompt_tokens.map(|t| t.to_string())),
            opt(r.completion_tokens.map(|t| t.to_string())),
            r.cached.to_string(),
            Value::Object(r.vars.clone()).to_string(),
        ];
        for name in &experiment.evaluators {
            match r.scores.iter().find(|s| &s.evaluator == name) {
                Some(s) => {
                    record.push(format!("{}", s.score));
                    record.push(s.pass.to_string());
                    record.push(s.reason.clone());
                }
                None => record.extend([String::new(), String::new(), String::new()]),
            }
        }
        writer.write_record(&record).map_err(|e| fail(&e))
    })?;
    writer.flush().map_err(|e| fail(&e))?;
    Ok(())
}

pub fn mock_server(args: MockServerArgs) -> Result<u8> {
    let rules = match &args.responses {
        Some(path) => crate::mock::load_rules(path).map_err(|e| {
            Error::invalid(e.to_string()).with_hint(
                "a rules file is a JSON or YAML list of {\"pattern\": REGEX, \"reply\": TEXT}",
            )
        })?,
        None => Vec::new(),
    };
    let config = crate::mock::MockConfig {
        latency: Duration::from_millis(args.latency_ms),
        rules,
    };
    let runtime = runtime()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| {
                Error::operational(format!("cannot listen on 127.0.0.1:{}: {e}", args.port))
                    .with_hint("pick another --port (0 picks a free one)")
            })?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::operational(e.to_string()))?;
        out(&format!(
            "mock endpoint listening on http://{address}/v1 (latency {} ms); Ctrl-C stops it",
            args.latency_ms
        ));
        crate::mock::serve(listener, config, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Error::operational(format!("mock endpoint failed: {e}")))
    })?;
    Ok(exit::OK)
}
