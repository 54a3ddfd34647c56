//! Phoenix's experiment routes, as the official client's `run_experiment`,
//! `evaluate_experiment` and `get_experiment` call them: create an experiment on a dataset
//! version, post runs and evaluations, read an experiment, its runs and its JSON export, list
//! a dataset's experiments, delete one. What linking and scoring mean is
//! `workflow::task_experiments`'s.
//!
//! Where Phoenix answers 500 or accepts what it should not, runner is stricter and stores
//! nothing: a run for an unknown experiment or example, or for an example outside the
//! experiment's dataset version, is 404; a repetition beyond the experiment's is 422; an
//! evaluation of an unknown run is 404.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{PageQuery, Shared, data, json_body, page, query};
use crate::model::{JsonObject, TaskEvaluation, TaskExperiment, TaskRun};
use crate::workflow::examples::{self, DATASET, Decoded, VERSION, global_id};
use crate::workflow::task_experiments as task;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

const EXPERIMENT: &str = "Experiment";
const RUN: &str = "ExperimentRun";
const EVALUATION: &str = "ExperimentEvaluation";

fn experiment_json(e: &TaskExperiment) -> Value {
    let metadata: Value = serde_json::from_str(&e.metadata).unwrap_or_else(|_| json!({}));
    let planned = e.example_count * e.repetitions;
    json!({
        "id": global_id(EXPERIMENT, &e.id),
        "dataset_id": global_id(DATASET, &e.dataset_id),
        "dataset_version_id": global_id(VERSION, &e.dataset_version_id),
        "name": e.name,
        "description": e.description,
        "repetitions": e.repetitions,
        "metadata": metadata,
        "project_name": Value::Null,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "example_count": e.example_count,
        "successful_run_count": e.successful_runs,
        "failed_run_count": e.failed_runs,
        "missing_run_count": (planned - e.successful_runs - e.failed_runs).max(0),
    })
}

/// A run's or an evaluation's start and end: ISO 8601 times.
fn check_times(start: &str, end: &str) -> ApiResult<()> {
    for (field, time) in [("start_time", start), ("end_time", end)] {
        if task::parse_time(time).is_none() {
            return Err(ApiError::unprocessable(format!(
                "{field}: '{time}' is not an ISO 8601 time"
            )));
        }
    }
    Ok(())
}

fn run_json(run: &TaskRun) -> Value {
    let output: Value = serde_json::from_str(&run.output).unwrap_or(Value::Null);
    json!({
        "id": global_id(RUN, &run.id),
        "experiment_id": global_id(EXPERIMENT, &run.experiment_id),
        "dataset_example_id": global_id(examples::EXAMPLE, &run.example_key),
        "repetition_number": run.repetition,
        "output": output,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "trace_id": run.trace_id,
        "error": run.error,
    })
}

/// An id of `kind` from a path or body: 422 when it is not a global id, 404 (`what` not
/// found) when it names another type.
fn id_of(kind: &str, text: &str, what: &str) -> ApiResult<String> {
    match examples::decode(kind, text) {
        Decoded::Is(raw) => Ok(raw),
        Decoded::Other(_) => Err(ApiError::not_found(format!(
            "{what} with ID {text} does not exist"
        ))),
        Decoded::Malformed => Err(ApiError::unprocessable(format!(
            "Invalid {what} ID format: {text}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    name: Option<String>,
    description: Option<String>,
    metadata: Option<JsonObject>,
    version_id: Option<String>,
    splits: Option<Vec<String>>,
    repetitions: Option<i64>,
}

/// `POST /v1/datasets/{id}/experiments`.
pub(super) async fn create_experiment(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let text = super::path(id)?;
    let dataset_id = id_of(DATASET, &text, "Dataset")?;
    let body: CreateBody = json_body(body)?;
    if body.splits.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unprocessable(
            "dataset splits are not kept by runner: run on the whole version",
        ));
    }
    let version_id = body
        .version_id
        .as_deref()
        .map(|v| id_of(VERSION, v, "DatasetVersion"))
        .transpose()?;
    let created = shared
        .with_store(move |store| {
            let entry = store.dataset_entry(&dataset_id)?.ok_or_else(|| {
                ApiError::not_found(format!("Dataset with ID {text} does not exist"))
            })?;
            let version_id = version_id.unwrap_or(entry.latest_version_id);
            let (version, _) = store
                .dataset_version(&version_id)?
                .filter(|(v, _)| v.dataset_id == dataset_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "DatasetVersion {} of dataset {text} does not exist",
                        global_id(VERSION, &version_id)
                    ))
                })?;
            let name = body
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| {
                    let short: String = entry.name.chars().take(8).collect();
                    format!("{short}-{:08x}", fastrand::u32(..))
                });
            let new = task::NewRun {
                version: &version,
                name,
                description: body.description,
                metadata: body.metadata.unwrap_or_default(),
                repetitions: body.repetitions.unwrap_or(1),
                author: &caller.actor,
            };
            task::create(store, new).map_err(ApiError::from)
        })
        .await?;
    Ok(data(experiment_json(&created)))
}

/// Versions whose examples are kept parsed at most.
const CACHED_VERSIONS: usize = 8;

/// A dataset version's examples, parsed once.
fn version_examples(
    shared: &Shared,
    store: &dyn crate::store::Store,
    version_id: &str,
) -> ApiResult<Arc<Vec<examples::Example>>> {
    let lock = || shared.examples.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = lock().get(version_id) {
        return Ok(Arc::clone(found));
    }
    let (version, content) = store
        .dataset_version(version_id)?
        .ok_or_else(|| ApiError::internal("the experiment's dataset version is missing"))?;
    let parsed = Arc::new(examples::examples_of(&version, &content)?);
    let mut cache = lock();
    if cache.len() >= CACHED_VERSIONS {
        cache.clear();
    }
    cache.insert(version_id.to_string(), Arc::clone(&parsed));
    Ok(parsed)
}

fn experiment_id(id: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let text = super::path(id)?;
    id_of(EXPERIMENT, &text, "Experiment")
}

/// `GET /v1/experiments/{id}`.
pub(super) async fn get_experiment(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = experiment_id(id)?;
    let found = shared
        .with_store(move |store| Ok(store.task_experiment(&id)?))
        .await?
        .ok_or_else(|| ApiError::not_found("Experiment does not exist"))?;
    Ok(data(experiment_json(&found)))
}

/// `DELETE /v1/experiments/{id}`: 204; a linked experiment is kept (409).
pub(super) async fn delete_experiment(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = experiment_id(id)?;
    let deleted = shared
        .with_store(move |store| Ok(store.delete_task_experiment(&id)?))
        .await?;
    if !deleted {
        return Err(ApiError::not_found("Experiment does not exist"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/datasets/{id}/experiments`: newest first; an unknown dataset has none.
pub(super) async fn list_experiments(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let text = super::path(id)?;
    let dataset_id = id_of(DATASET, &text, "Dataset")?;
    let params = query(params)?;
    let limit = if params.limit.is_some() {
        params.limit()?
    } else {
        50
    };
    let from = params
        .cursor
        .as_deref()
        .map(|c| id_of(EXPERIMENT, c, "Experiment"))
        .transpose()
        .map_err(|_| ApiError::unprocessable("Invalid cursor format"))?;
    let mut found = shared
        .with_store(move |store| {
            Ok(store.task_experiments(&dataset_id, from.as_deref(), limit + 1)?)
        })
        .await?;
    let next = (found.len() > limit).then(|| global_id(EXPERIMENT, &found.remove(limit).id));
    Ok(page(found.iter().map(experiment_json).collect(), next))
}

#[derive(Debug, Deserialize)]
pub(super) struct RunBody {
    dataset_example_id: String,
    #[serde(default)]
    output: Value,
    repetition_number: i64,
    start_time: String,
    end_time: String,
    trace_id: Option<String>,
    error: Option<String>,
}

/// `POST /v1/experiments/{id}/runs`.
pub(super) async fn create_run(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let experiment_id = experiment_id(id)?;
    let body: RunBody = json_body(body)?;
    if body.repetition_number < 1 {
        return Err(ApiError::unprocessable(
            "repetition_number must be 1 or more",
        ));
    }
    check_times(&body.start_time, &body.end_time)?;
    let cache = Arc::clone(&shared);
    let id = shared
        .with_store(move |store| {
            let experiment = store.task_experiment(&experiment_id)?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "Experiment with ID {} does not exist",
                    global_id(EXPERIMENT, &experiment_id)
                ))
            })?;
            if body.repetition_number > experiment.repetitions {
                return Err(ApiError::unprocessable(format!(
                    "repetition_number {} is beyond the experiment's {} repetition(s)",
                    body.repetition_number, experiment.repetitions
                )));
            }
            let examples = version_examples(&cache, store, &experiment.dataset_version_id)?;
            let (index, example) = task::example_at(&examples, &body.dataset_example_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "DatasetExample with ID {} is not in the experiment's dataset version",
                        body.dataset_example_id
                    ))
                })?;
            let run = TaskRun {
                id: String::new(),
                experiment_id: experiment.id.clone(),
                example_key: example.key.clone(),
                repetition: body.repetition_number,
                output: body.output.to_string(),
                error: body.error.clone(),
                start_time: body.start_time.clone(),
                end_time: body.end_time.clone(),
                trace_id: body.trace_id.clone(),
            };
            let result = experiment
                .mirrored
                .then(|| task::result_of(&run, index, example, &body.output));
            Ok(store.record_task_run(&run, result.as_ref())?)
        })
        .await?;
    Ok(Json(json!({"data": {"id": global_id(RUN, &id)}})).into_response())
}

/// `GET /v1/experiments/{id}/runs?limit=&cursor=`: newest first; an unknown experiment has
/// none.
pub(super) async fn list_runs(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let experiment_id = experiment_id(id)?;
    let params = query(params)?;
    let limit = params.limit.is_some().then(|| params.limit()).transpose()?;
    let from = params
        .cursor
        .as_deref()
        .map(|c| id_of(RUN, c, "ExperimentRun"))
        .transpose()
        .map_err(|_| ApiError::unprocessable("Invalid cursor format"))?;
    let mut runs = shared
        .with_store(move |store| {
            Ok(store.task_runs(&experiment_id, from.as_deref(), limit.map(|l| l + 1))?)
        })
        .await?;
    let next = match limit {
        Some(limit) if runs.len() > limit => Some(global_id(RUN, &runs.remove(limit).id)),
        _ => None,
    };
    Ok(page(runs.iter().map(run_json).collect(), next))
}

/// `GET /v1/experiments/{id}/json`: each run with its example and evaluations.
pub(super) async fn export_json(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let experiment_id = experiment_id(id)?;
    let cache = Arc::clone(&shared);
    let records = shared
        .with_store(move |store| {
            let experiment = store
                .task_experiment(&experiment_id)?
                .ok_or_else(|| ApiError::not_found("Experiment does not exist"))?;
            let examples = version_examples(&cache, store, &experiment.dataset_version_id)?;
            let by_key: std::collections::HashMap<&str, &examples::Example> =
                examples.iter().map(|e| (e.key.as_str(), e)).collect();
            let mut evaluations: std::collections::HashMap<String, Vec<Value>> =
                std::collections::HashMap::new();
            for a in store.task_evaluations(&experiment_id)? {
                evaluations
                    .entry(a.run_id.clone())
                    .or_default()
                    .push(evaluation_json(&a));
            }
            let mut runs = store.task_runs(&experiment_id, None, None)?;
            runs.reverse();
            let records: Vec<Value> = runs
                .iter()
                .map(|run| {
                    let example = by_key.get(run.example_key.as_str());
                    let latency = match (
                        task::parse_time(&run.start_time),
                        task::parse_time(&run.end_time),
                    ) {
                        (Some(s), Some(e)) => json!((e - s).as_seconds_f64() * 1000.0),
                        _ => Value::Null,
                    };
                    let annotations = evaluations.remove(&run.id).unwrap_or_default();
                    json!({
                        "example_id": global_id(examples::EXAMPLE, &run.example_key),
                        "repetition_number": run.repetition,
                        "input": example.map(|e| Value::Object(e.input.clone())),
                        "reference_output": example.map(|e| Value::Object(e.output.clone())),
                        "output": serde_json::from_str::<Value>(&run.output).unwrap_or(Value::Null),
                        "error": run.error,
                        "latency_ms": latency,
                        "start_time": run.start_time,
                        "end_time": run.end_time,
                        "trace_id": run.trace_id,
                        "prompt_token_count": Value::Null,
                        "completion_token_count": Value::Null,
                        "annotations": annotations,
                    })
                })
                .collect();
            Ok(records)
        })
        .await?;
    Ok(Json(Value::Array(records)).into_response())
}

fn evaluation_json(a: &TaskEvaluation) -> Value {
    let metadata: Value = serde_json::from_str(&a.metadata).unwrap_or_else(|_| json!({}));
    json!({
        "name": a.name,
        "annotator_kind": a.annotator_kind,
        "label": a.label,
        "score": a.score,
        "explanation": a.explanation,
        "trace_id": a.trace_id,
        "error": a.error,
        "metadata": metadata,
        "start_time": a.start_time,
        "end_time": a.end_time,
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct EvaluationResult {
    label: Option<String>,
    score: Option<f64>,
    explanation: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct EvaluationBody {
    experiment_run_id: String,
    name: String,
    annotator_kind: String,
    start_time: String,
    end_time: String,
    result: Option<EvaluationResult>,
    error: Option<String>,
    metadata: Option<JsonObject>,
    trace_id: Option<String>,
}

/// `POST /v1/experiment_evaluations`: one per run and name, replaced when sent again.
pub(super) async fn upsert_evaluation(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: EvaluationBody = json_body(body)?;
    let run_id = id_of(RUN, &body.experiment_run_id, "ExperimentRun")?;
    if !matches!(body.annotator_kind.as_str(), "LLM" | "CODE" | "HUMAN") {
        return Err(ApiError::unprocessable(
            "annotator_kind must be LLM, CODE or HUMAN",
        ));
    }
    if body.name.trim().is_empty() || body.name.contains('\0') {
        return Err(ApiError::unprocessable("an evaluation needs a name"));
    }
    check_times(&body.start_time, &body.end_time)?;
    let result = body.result.unwrap_or(EvaluationResult {
        label: None,
        score: None,
        explanation: None,
    });
    if result.score.is_some_and(|s| !s.is_finite()) {
        return Err(ApiError::unprocessable(
            "result.score must be a finite number",
        ));
    }
    let evaluation = TaskEvaluation {
        id: String::new(),
        run_id: run_id.clone(),
        name: body.name,
        annotator_kind: body.annotator_kind,
        label: result.label,
        score: result.score,
        explanation: result.explanation,
        error: body.error,
        metadata: Value::Object(body.metadata.unwrap_or_default()).to_string(),
        start_time: body.start_time,
        end_time: body.end_time,
        trace_id: body.trace_id,
    };
    let cache = Arc::clone(&shared);
    let id = shared
        .with_store(move |store| {
            let run = store.task_run(&run_id)?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "ExperimentRun with ID {} does not exist",
                    global_id(RUN, &run_id)
                ))
            })?;
            let experiment = store
                .task_experiment(&run.experiment_id)?
                .ok_or_else(|| ApiError::internal("an evaluated run's experiment is missing"))?;
            let at = if experiment.mirrored {
                version_examples(&cache, store, &experiment.dataset_version_id)?
                    .iter()
                    .position(|e| e.key == run.example_key)
                    .map(|i| (i as i64, run.repetition - 1))
            } else {
                None
            };
            let score = evaluation.score();
            Ok(store
                .record_task_evaluation(&evaluation, at.map(|(row, rep)| (row, rep, &score)))?)
        })
        .await?;
    Ok(Json(json!({"data": {"id": global_id(EVALUATION, &id)}})).into_response())
}
