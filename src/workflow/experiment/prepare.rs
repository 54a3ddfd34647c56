//! Preparing a run: the version, the dataset, every variable's source, the evaluators, the
//! model and the endpoint resolved and checked before anything is sent or written, and the
//! fingerprint that says which stored runs are the same run. It must not write to the store
//! or call the endpoint.

use super::super::Context;
use super::super::settings::{RunRequest, per_minute, settings};
use super::dataset_error;
use super::endpoint::check_endpoint;
use super::run::priced;
use crate::client::DEFAULT_BASE_URL;
use crate::dataset;
use crate::error::{Error, Result};
use crate::eval::{self, Evaluator};
use crate::experiment;
use crate::input::check_prompt_name;
use crate::model::{PromptVersion, RunSettings, VersionRef};
use crate::template::CompiledTemplate;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Prepares the evaluators and checks what they need of the dataset.
pub(in crate::workflow) fn evaluators(
    specs: &[String],
    has_expected: bool,
) -> Result<Vec<Evaluator>> {
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
pub(in crate::workflow) fn fingerprint(
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
pub(in crate::workflow) fn legacy_fingerprint(
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
        let settings = settings(&request, &crate::config::RunDefaults::default()).unwrap();
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
