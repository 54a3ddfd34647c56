//! Experiments your own code runs through the Phoenix client: creating one on a dataset
//! version (linked to a prompt version when its metadata names one), recording each run and
//! each evaluation, and what its runs and evaluations are as runner's own results and scores
//! (every one is runner's experiment too; only one linked to a version can be a gate's
//! evidence). It must not print.
//!
//! The metadata that links an experiment (either form):
//!
//! - `{"prompt": NAME, "tag": TAG}` (or `"version": N`): the version the tag points at when
//!   the experiment is created;
//! - `{"prompt_version_id": ID}`: that version.
//!
//! A name that does not resolve is refused, never stored unlinked: evidence about the wrong
//! version, or about none, must not pass for evidence about the right one.
//!
//! An evaluation scores a result (`TaskEvaluation::score`): its score when it gives one (a score of at least 0.5 passes),
//! else its label (`true`, `pass`, `passed`, `correct`, `yes` pass; anything else fails);
//! an evaluation that errored fails, marked as the evaluator's error.

use super::examples::{self, Example};
use crate::error::{Error, Result};
use crate::model::{
    DatasetRef, DatasetVersion, JsonObject, NewExperiment, PromptVersion, ResultStatus, RunResult,
    RunSettings, TaskExperiment, TaskRun, VersionRef,
};
use crate::store::{NewTaskExperiment, Store};
use serde_json::Value;

/// What a linked experiment records as its model and endpoint: your code answered.
pub const TASK_ENDPOINT: &str = "task";

/// Whether `experiment` was run by your own code through the Phoenix client (runner cannot
/// run its task: not resumed, not run by a worker, its errored rows go back to your code).
pub fn run_by_your_code(experiment: &crate::model::Experiment) -> bool {
    experiment.base_url == TASK_ENDPOINT
}

/// The prompt version an experiment's metadata names, and the tag it was named by.
pub fn link_of(
    store: &dyn Store,
    metadata: &JsonObject,
) -> Result<Option<(PromptVersion, Option<String>)>> {
    if let Some(id) = metadata.get("prompt_version_id") {
        let id = id.as_str().ok_or_else(|| {
            Error::invalid("metadata.prompt_version_id must be a prompt version id (text)")
        })?;
        let version = store.version_by_id(id)?.ok_or_else(|| {
            Error::invalid(format!(
                "metadata.prompt_version_id: no prompt version '{id}'"
            ))
        })?;
        return Ok(Some((version, None)));
    }
    let Some(prompt) = metadata.get("prompt") else {
        return Ok(None);
    };
    let prompt = prompt
        .as_str()
        .ok_or_else(|| Error::invalid("metadata.prompt must be a prompt's name (text)"))?;
    let (reference, tag) = match (metadata.get("tag"), metadata.get("version")) {
        (Some(Value::String(tag)), None) => (VersionRef::Tag(tag.clone()), Some(tag.clone())),
        (None, Some(Value::Number(n))) if n.as_i64().is_some_and(|n| n >= 1) => {
            (VersionRef::Seq(n.as_i64().unwrap_or(1)), None)
        }
        (None, None) => (VersionRef::Latest, None),
        _ => {
            return Err(Error::invalid(
                "metadata names a prompt with \"tag\" (text) or \"version\" (a number from 1), not both",
            ));
        }
    };
    let version = store.version(prompt, &reference).map_err(|e| {
        Error::invalid(format!(
            "metadata names prompt '{prompt}' ({reference}): {e}"
        ))
    })?;
    Ok(Some((version, tag)))
}

/// What `create` needs.
pub struct NewRun<'a> {
    pub version: &'a DatasetVersion,
    pub name: String,
    pub description: Option<String>,
    pub metadata: JsonObject,
    pub repetitions: i64,
    pub author: &'a str,
}

/// Creates an experiment on a dataset version, linked when its metadata names a version.
pub fn create(store: &dyn Store, new: NewRun<'_>) -> Result<TaskExperiment> {
    if !(1..=1000).contains(&new.repetitions) {
        return Err(Error::invalid(
            "repetitions must be a whole number from 1 to 1000",
        ));
    }
    let link = link_of(store, &new.metadata)?;
    let model = new
        .metadata
        .get("model")
        .and_then(Value::as_str)
        .map_or_else(|| TASK_ENDPOINT.to_string(), str::to_string);
    let (prompt, version_id, tag) = match link {
        Some((version, tag)) => (Some(version.prompt), Some(version.id), tag),
        None => (None, None, None),
    };
    // runner's own experiment of the same id: what list, show, compare and the web UI read.
    let mirror = NewExperiment {
        name: Some(new.name.clone()),
        prompt,
        version_id,
        tag,
        dataset: DatasetRef {
            path: format!(
                "{}{}@{}",
                super::datasets::PREFIX,
                new.version.dataset,
                new.version.seq
            ),
            hash: new.version.hash.clone(),
            rows: new.version.rows,
            columns: new.version.columns.clone(),
        },
        model,
        base_url: TASK_ENDPOINT.to_string(),
        evaluators: Vec::new(),
        settings: settings(new.repetitions),
        planned: new.version.rows * new.repetitions,
        author: new.author.to_string(),
        fingerprint: String::new(),
    };
    let record = NewTaskExperiment {
        dataset_id: new.version.dataset_id.clone(),
        dataset_version_id: new.version.id.clone(),
        name: new.name,
        description: new.description,
        metadata: Value::Object(new.metadata).to_string(),
        repetitions: new.repetitions,
        author: new.author.to_string(),
    };
    Ok(store.create_task_experiment(&record, &mirror)?)
}

fn settings(repetitions: i64) -> RunSettings {
    RunSettings {
        concurrency: 1,
        repetitions: repetitions as usize,
        limit: None,
        timeout_secs: 0.0,
        max_retries: 0,
        vars: JsonObject::new(),
        columns: Vec::new(),
        expected_column: None,
        no_cache: true,
        judge_model: None,
        fresh: true,
        cache_ttl_secs: None,
        max_rpm: None,
        max_tpm: None,
        max_cost: None,
        detached: None,
        shard: None,
        target: Some("phoenix-client".into()),
        target_env: Vec::new(),
        mock: false,
    }
}

/// The example a run names, with its position in the experiment's version: refused (not
/// found) when the version does not hold it.
pub fn example_at<'a>(examples: &'a [Example], node_id: &str) -> Option<(usize, &'a Example)> {
    let key = match examples::decode(examples::EXAMPLE, node_id) {
        examples::Decoded::Is(key) => key,
        _ => return None,
    };
    examples.iter().enumerate().find(|(_, e)| e.key == key)
}

/// A run as runner's own result: the example's row as its values, its output as the answer
/// (text as it is, anything else as JSON), its error as an errored call.
pub fn result_of(run: &TaskRun, index: usize, example: &Example, output: &Value) -> RunResult {
    let mut vars = JsonObject::new();
    vars.insert("id".into(), Value::String(example.key.clone()));
    vars.insert("input".into(), Value::Object(example.input.clone()));
    vars.insert("output".into(), Value::Object(example.output.clone()));
    vars.insert("metadata".into(), Value::Object(example.metadata.clone()));
    let latency_ms = match (parse_time(&run.start_time), parse_time(&run.end_time)) {
        (Some(start), Some(end)) => ((end - start).as_seconds_f64() * 1000.0).max(0.0),
        _ => 0.0,
    };
    let text = match output {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    RunResult {
        row_index: index as i64,
        row_id: example.key.clone(),
        repetition: run.repetition - 1,
        vars,
        expected: (!example.output.is_empty())
            .then(|| Value::Object(example.output.clone()).to_string()),
        messages: Vec::new(),
        output: if run.error.is_some() { None } else { text },
        finish_reason: None,
        status: if run.error.is_some() {
            ResultStatus::Error
        } else {
            ResultStatus::Ok
        },
        error_kind: run.error.as_ref().map(|_| "task".to_string()),
        error_message: run.error.clone(),
        http_status: None,
        attempts: 1,
        latency_ms,
        prompt_tokens: None,
        completion_tokens: None,
        cached: false,
        started_at: run.start_time.clone(),
        finished_at: run.end_time.clone(),
        scores: Vec::new(),
        cache_key: None,
        extra: None,
    }
}

/// An ISO 8601 / RFC 3339 time (Phoenix's clients send `2026-12-06T13:10:12.890123+00:00`);
/// one without an offset is UTC, as Phoenix reads it.
pub fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339))
        .ok()
}

#[cfg(test)]
mod tests {
    use crate::model::TaskEvaluation;

    fn evaluation(label: Option<&str>, score: Option<f64>, error: Option<&str>) -> TaskEvaluation {
        TaskEvaluation {
            id: String::new(),
            run_id: String::new(),
            name: "correct".into(),
            annotator_kind: "CODE".into(),
            label: label.map(str::to_string),
            score,
            explanation: None,
            error: error.map(str::to_string),
            metadata: "{}".into(),
            start_time: String::new(),
            end_time: String::new(),
            trace_id: None,
        }
    }

    #[test]
    fn evaluations_score_by_score_then_label_and_errors_fail() {
        let s = evaluation(Some("False"), Some(0.75), None).score();
        assert!((s.score, s.pass) == (0.75, true));
        let s = evaluation(Some("True"), None, None).score();
        assert!((s.score, s.pass) == (1.0, true));
        let s = evaluation(Some("hallucinated"), None, None).score();
        assert!((s.score, s.pass) == (0.0, false));
        let s = evaluation(None, Some(0.2), Some("ValueError('x')")).score();
        assert!(s.error && !s.pass);
    }
}
