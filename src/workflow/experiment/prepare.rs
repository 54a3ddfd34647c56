//! Preparing a run: its settings (`workflow::settings::ExperimentSettings`, every flag already
//! checked) resolved against the store and the dataset (the version, every variable's source,
//! the expected column, the evaluators, the model) before anything is sent or written, and the
//! fingerprint that says which stored runs are the same run. It must not parse flags, write to
//! the store or call the endpoint.

use super::super::Context;
use super::super::settings::{Evals, ExperimentSettings};
use super::dataset_error;
use super::run::priced;
use crate::dataset;
use crate::engine;
use crate::error::{Error, Result};
use crate::eval::{self, Evaluator};
use crate::model::{PromptVersion, RunSettings, VersionRef};
use crate::template::CompiledTemplate;
use serde_json::{Value, json};

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

/// A template with a placeholder message expands a column's list of messages in every row: a
/// row whose list is malformed is refused here, naming the row, before any call.
fn check_conversations(
    template: &CompiledTemplate,
    path: &std::path::Path,
    run: &RunSettings,
) -> Result<()> {
    if !template.has_placeholder() {
        return Ok(());
    }
    let rows = dataset::rows(path).map_err(dataset_error)?;
    for row in rows {
        let row = row.map_err(dataset_error)?;
        let vars = engine::vars_of(&row.values, run);
        if let Err(e @ crate::template::TemplateError::Conversation { .. }) = template.render(&vars)
        {
            return Err(Error::invalid(format!("row {}: {e}", row.id)).with_hint(
                "a placeholder's column holds a JSON list of {\"role\", \"content\"} messages \
                 (roles user, assistant, system, developer, tool); write [] for none",
            ));
        }
    }
    Ok(())
}

/// A dataset with a `turns` column runs its rows turn by turn: every row's list (and its
/// `expected_turns`, when the dataset has them, one per turn) is read here, before any call.
fn check_turns(info: &dataset::DatasetInfo, path: &std::path::Path) -> Result<()> {
    let has = |name: &str| info.columns.iter().chain(&info.fields).any(|c| c == name);
    if !has(engine::TURNS) {
        return Ok(());
    }
    let hint = "turns: a JSON list of the user's messages, e.g. [\"Hi\", \"And a refund?\"]; \
                expected_turns: one expected answer per turn";
    for row in dataset::rows(path).map_err(dataset_error)? {
        let row = row.map_err(dataset_error)?;
        let count = match engine::turns_of(&row.values) {
            None => continue,
            Some(Err(e)) => {
                return Err(Error::invalid(format!("row {}: turns: {e}", row.id)).with_hint(hint));
            }
            Some(Ok(turns)) => turns.len(),
        };
        let expected = match row.values.get(engine::EXPECTED_TURNS) {
            None | Some(Value::Null) => continue,
            Some(Value::String(text)) if text.trim().is_empty() => continue,
            Some(Value::String(text)) => serde_json::from_str::<Value>(text).ok(),
            Some(other) => Some(other.clone()),
        };
        match expected.as_ref().and_then(Value::as_array) {
            Some(items) if items.len() == count && items.iter().all(Value::is_string) => {}
            Some(items) if items.len() != count => {
                return Err(Error::invalid(format!(
                    "row {}: expected_turns has {} answers for {count} turns",
                    row.id,
                    items.len()
                ))
                .with_hint(hint));
            }
            _ => {
                return Err(Error::invalid(format!(
                    "row {}: expected_turns is not a JSON list of texts",
                    row.id
                ))
                .with_hint(hint));
            }
        }
    }
    Ok(())
}

/// Tool-call evaluators need what they compare with: the dataset's `expected_tool_calls`
/// column, the version's declared tools.
fn check_tool_evaluators(
    evaluators: &[Evaluator],
    info: &dataset::DatasetInfo,
    version: &PromptVersion,
) -> Result<()> {
    let column = eval::EXPECTED_TOOL_CALLS;
    let has = info.columns.iter().chain(&info.fields).any(|c| c == column);
    if let Some(e) = evaluators
        .iter()
        .find(|e| e.needs_expected_tool_calls() && !has)
    {
        return Err(Error::invalid(format!(
            "evaluator '{}' compares with the row's expected tool calls, and the dataset has no {column} column",
            e.name()
        ))
        .with_hint(format!(
            "add an {column} column: a JSON list of {{\"name\", \"arguments\"}} per row ([] when no call is expected)"
        )));
    }
    let declared = version.params.get("tools").is_some_and(Value::is_array);
    if let Some(e) = evaluators.iter().find(|e| e.needs_tools() && !declared) {
        return Err(Error::invalid(format!(
            "evaluator '{}' checks calls against the tools the version declares, and {} v{} declares none",
            e.name(),
            version.prompt,
            version.seq
        ))
        .with_hint("declare them in the version's `tools` parameter (a list of OpenAI function tools)"));
    }
    Ok(())
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

/// An experiment checked and resolved against the store and its dataset, ready to run (or to
/// be matched with a stored one).
pub struct Prepared {
    /// What it was asked to be, its expected column resolved against the dataset.
    pub settings: ExperimentSettings,
    pub version: PromptVersion,
    /// The tag the version was chosen by, if any.
    pub tag: Option<String>,
    pub template: CompiledTemplate,
    pub info: dataset::DatasetInfo,
    /// The evaluator specs: the settings', else those the dataset implies.
    pub specs: Vec<String>,
    pub evaluators: Vec<Evaluator>,
    /// The settings' model, else the version's.
    pub model: String,
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
    // Only when set: experiments without a target keep the fingerprint they always had.
    if let Some(target) = &settings.target {
        put("target", json!(target));
    }
    let canonical = Value::Object(canonical);
    crate::model::hex(&Sha256::digest(canonical.to_string().as_bytes()))
}

/// Resolves and checks what a run needs of the store and the dataset, before anything is sent
/// or written: the version, every variable's source, the expected column, the evaluators, the
/// model and its price when there is a budget.
pub fn prepare(
    ctx: &Context,
    settings: &ExperimentSettings,
    reference: &VersionRef,
) -> Result<Prepared> {
    let mut settings = settings.clone();
    let store = ctx.store_for_reading()?;
    // A dataset in the store is read from its file in the cache, and recorded by its name.
    if let Some(parsed) = settings
        .dataset
        .to_str()
        .and_then(crate::workflow::datasets::reference)
    {
        let (name, seq) = parsed?;
        let (_, path, label) = crate::workflow::datasets::materialize(&*store, &name, seq)?;
        settings.dataset = path;
        settings.dataset_label = Some(label);
    }
    let version = store.version(&settings.prompt, reference)?;
    let template = CompiledTemplate::compile(version.format, &version.template)?;
    let info = ctx.scan(&settings.dataset).map_err(dataset_error)?;
    engine::preflight(&template, &info, &settings.run).map_err(|missing| {
        Error::invalid(format!(
            "no column or --var supplies template variable(s): {}",
            crate::template::list_names(&missing.variables)
        ))
        .with_hint(format!(
            "the dataset's columns are {}; map one with --column VAR=COLUMN or pass --var VAR=VALUE",
            missing.available.join(", ")
        ))
    })?;
    for empty in engine::empty_inputs(&template, &info, &settings.run) {
        let renamed = if empty.variable == empty.column {
            String::new()
        } else {
            format!(" (variable {})", empty.variable)
        };
        crate::note!(
            "warning: column {}{renamed} is empty in {} of {} rows of {}; the template renders it as nothing there",
            empty.column,
            empty.rows,
            info.rows,
            settings.dataset.display(),
        );
    }
    check_conversations(&template, &settings.dataset, &settings.run)?;
    check_turns(&info, &settings.dataset)?;
    settings.run.expected_column = expected_column(settings.run.expected_column.as_deref(), &info)?;
    // A multi-turn dataset's `expected_turns` are expected answers too.
    let has_expected = settings.run.expected_column.is_some()
        || info
            .columns
            .iter()
            .chain(&info.fields)
            .any(|c| c == engine::EXPECTED_TURNS);
    let specs = match &settings.evals {
        Evals::Flags(specs) | Evals::File(specs) => specs.clone(),
        Evals::Implied => eval::default_specs(has_expected),
    };
    let evaluators = evaluators(&specs, has_expected).map_err(|e| {
        if let Evals::File(_) = settings.evals {
            // Say where the spec came from: no flag on the command line names it.
            Error::invalid(format!("{e} (from `evals` in runner.toml)"))
                .with_hint(e.hint().unwrap_or_default())
        } else {
            e
        }
    })?;
    check_tool_evaluators(&evaluators, &info, &version)?;
    let model = settings
        .model
        .clone()
        .or_else(|| version.model.clone())
        .ok_or_else(|| {
            Error::invalid(format!(
                "{} v{} names no model",
                settings.prompt, version.seq
            ))
            .with_hint(
                "pass --model MODEL, or set one with `runner prompt update NAME --model MODEL`",
            )
        })?;
    let tag = match reference {
        VersionRef::Tag(tag) => Some(tag.clone()),
        _ => None,
    };
    if settings.run.max_cost.is_some() {
        priced(ctx, &model)?;
    }
    let fingerprint = fingerprint(&version.id, &info.hash, &model, &evaluators, &settings.run);
    Ok(Prepared {
        fingerprint,
        settings,
        version,
        tag,
        template,
        info,
        specs,
        evaluators,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_fingerprint_is_the_one_earlier_stores_hold_and_the_endpoint_left_the_new_one() {
        let evaluators = vec![Evaluator::prepare("icontains").unwrap()];
        let options = crate::cli::RunOptions {
            repetitions: Some(3),
            base_url: Some("http://a/v1".into()),
            ..Default::default()
        };
        let config = crate::config::Config::default();
        let settings =
            ExperimentSettings::new(&config, "p", Some(std::path::Path::new("d.csv")), &options)
                .unwrap()
                .run;
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
