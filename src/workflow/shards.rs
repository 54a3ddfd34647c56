//! Static shards joined back: each job ran `experiment --shard K/N` into its own store; merge
//! checks that the shards are one plan, complete, each once and none missing, then writes one
//! experiment with every result, as an unsharded run would have. It sends nothing and runs no row:
//! every result is copied as its shard recorded it, the shards' stores are only read, and it parses
//! no flag and prints nothing.

use crate::error::{Error, Result};
use crate::model::{
    CachedResponse, Experiment, ExperimentStatus, NewExperiment, ResultStatus, RunResult, Shard,
};
use crate::store::{self, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a merge wrote.
pub struct Merged {
    pub experiment: Experiment,
    pub shards: usize,
    pub results: i64,
    pub location: String,
}

/// One shard found in a store.
struct Found {
    store: Arc<dyn Store>,
    location: PathBuf,
    experiment: Experiment,
    shard: Shard,
    plan: String,
}

/// The plan's fingerprint of a shard's experiment (stored as `PLAN shard K/N`).
fn plan_of(stored: &str, shard: Shard) -> Option<String> {
    stored
        .strip_suffix(&format!(" shard {shard}"))
        .map(str::to_string)
}

fn shards_in(location: &Path) -> Result<Vec<Found>> {
    let shown = store::display_location(location);
    if store::postgres_url_of(location).is_none() && !location.exists() {
        return Err(Error::invalid(format!("there is no store at {shown}"))
            .with_hint("name each shard's store (the --db its job wrote)"));
    }
    let store = store::open_for_reading(location)?;
    let mut found = Vec::new();
    for experiment in store.experiments(None)? {
        let Some(shard) = experiment.settings.shard else {
            continue;
        };
        let stored = store.fingerprint(&experiment.id)?.unwrap_or_default();
        let plan = plan_of(&stored, shard).ok_or_else(|| {
            Error::invalid(format!(
                "experiment {} in {shown} does not read as shard {shard}",
                experiment.id
            ))
        })?;
        found.push(Found {
            store: store.clone(),
            location: location.to_path_buf(),
            experiment,
            shard,
            plan,
        });
    }
    if found.is_empty() {
        return Err(
            Error::invalid(format!("{shown} holds no shard of an experiment"))
                .with_hint("each job runs `runner --db STORE experiment ... --shard K/N`"),
        );
    }
    Ok(found)
}

/// Checks the shards in `sources` and writes them into `into` as one experiment.
pub fn merge(sources: &[PathBuf], into: &Path, author: &str) -> Result<Merged> {
    if sources.iter().any(|s| s == into) {
        return Err(Error::invalid("--into names one of the shards' stores")
            .with_hint("merge into another store, e.g. --into runner.db"));
    }
    let mut found = Vec::new();
    for source in sources {
        found.extend(shards_in(source)?);
    }
    let first = &found[0];
    let count = first.shard.count;
    for f in &found {
        if f.plan != first.plan || f.shard.count != count {
            return Err(Error::invalid(format!(
                "shard {} (experiment {} in {}) is of another plan than shard {} (experiment {} in {})",
                f.shard,
                f.experiment.id,
                store::display_location(&f.location),
                first.shard,
                first.experiment.id,
                store::display_location(&first.location)
            ))
            .with_hint(
                "merge only shards of one command: the same version, dataset, model, endpoint, \
                 evaluators, settings and N",
            ));
        }
    }
    let mut by_index: BTreeMap<u32, &Found> = BTreeMap::new();
    for f in &found {
        if let Some(other) = by_index.insert(f.shard.index, f) {
            return Err(Error::invalid(format!(
                "shard {} is there twice: experiment {} in {} and experiment {} in {}",
                f.shard,
                other.experiment.id,
                store::display_location(&other.location),
                f.experiment.id,
                store::display_location(&f.location)
            ))
            .with_hint(
                "name each shard's store once, and each store holding one run of its shard",
            ));
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|k| !by_index.contains_key(k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(
            Error::invalid(format!("shard(s) {} missing", missing.join(", ")))
                .with_hint("run every shard 1..N (`--shard K/N`) and name all their stores"),
        );
    }
    for f in by_index.values() {
        let summary = f.store.summary(&f.experiment)?;
        if !f.experiment.status.is_completed() || summary.results < f.experiment.planned {
            return Err(Error::invalid(format!(
                "shard {} (experiment {} in {}) is not complete: {} of {} results, {}",
                f.shard,
                f.experiment.id,
                store::display_location(&f.location),
                summary.results,
                f.experiment.planned,
                f.experiment.status.as_str()
            ))
            .with_hint(format!(
                "finish it first: runner --db {} experiment resume {}",
                store::display_location(&f.location),
                f.experiment.id
            )));
        }
    }
    // The shards together plan exactly the plan's results: every row of the dataset (up to
    // its --limit) once per repetition. A shard that planned more or fewer is not one of it.
    let base = &first.experiment;
    let rows = base.settings.limit.map_or(base.dataset.rows, |limit| {
        (limit as i64).min(base.dataset.rows)
    });
    let expected = rows * base.settings.repetitions as i64;
    let planned: i64 = by_index.values().map(|f| f.experiment.planned).sum();
    if planned != expected {
        return Err(Error::invalid(format!(
            "the shards plan {planned} results in all, and their plan has {expected} \
             ({rows} rows × {} repetitions)",
            base.settings.repetitions
        ))
        .with_hint("merge the stores the shard jobs of one command wrote, unchanged"));
    }
    // Everything is checked: only now is the destination opened (and created).
    let (prompt, version_id, _) = super::runnable(base)?;
    let to = store::open(into)?;
    if to.version_by_id(version_id)?.is_none() {
        let archive = first.store.archive(prompt)?;
        to.import(&[archive]).map_err(|e| {
            Error::from(e).with_hint(format!(
                "the destination has prompt {prompt} without the version the shards ran; merge into a store that has it, or a new one"
            ))
        })?;
    }
    let mut settings = base.settings.clone();
    settings.shard = None;
    // Free only if no shard was billed.
    settings.mock = by_index.values().all(|f| f.experiment.settings.mock);
    let merged = to.create_experiment(&NewExperiment {
        name: base.name.clone(),
        prompt: base.prompt.clone(),
        version_id: base.version_id.clone(),
        tag: base.tag.clone(),
        dataset: base.dataset.clone(),
        model: base.model.clone(),
        base_url: base.base_url.clone(),
        evaluators: base.evaluators.clone(),
        settings,
        planned,
        author: author.to_string(),
        fingerprint: first.plan.clone(),
    })?;
    let copied = copy_results(&by_index, &to, &merged.id);
    let results = match copied {
        Ok(results) => results,
        Err(e) => {
            let _ = to.discard_experiment(&merged.id);
            return Err(e);
        }
    };
    let wall_ms = by_index
        .values()
        .map(|f| f.experiment.wall_ms)
        .max()
        .unwrap_or(0);
    to.finish_experiment(&merged.id, ExperimentStatus::Completed, wall_ms)?;
    Ok(Merged {
        experiment: to.experiment(&merged.id)?,
        shards: by_index.len(),
        results,
        location: to.location(),
    })
}

/// Every shard's results (with scores) into the merged experiment, each checked to be a row
/// of its own shard and of the dataset, and a cache entry for each answer merged. The shard
/// stores' caches are not read: an entry there may be for anything (another version, a
/// future date) and would answer later experiments; the entries written here are the merged
/// answers themselves, under the keys a run of the plan looks them up by.
fn copy_results(shards: &BTreeMap<u32, &Found>, to: &Arc<dyn Store>, id: &str) -> Result<i64> {
    const BATCH: usize = 512;
    let base = &shards.values().next().expect("a shard").experiment;
    let version = to
        .version_by_id(super::runnable(base)?.1)?
        .ok_or_else(|| Error::operational("the merged experiment's version is gone"))?;
    let cache = !base.settings.no_cache;
    let rows = base.dataset.rows;
    let mut results = 0i64;
    for f in shards.values() {
        let mut batch: Vec<RunResult> = Vec::with_capacity(BATCH);
        let mut entries = Vec::new();
        let mut stray = None;
        store::visit_results(&*f.store, &f.experiment.id, |result| -> Result<()> {
            if !f.shard.contains(&result.row_id) || !(0..rows).contains(&result.row_index) {
                stray = Some(result.row_id.clone());
                return Err(store::StoreError::Abandoned.into());
            }
            if cache && result.status == ResultStatus::Ok {
                entries.extend(cache_entry(base, &version.params, &result));
            }
            batch.push(result);
            if batch.len() == BATCH {
                to.write_results(id, &batch)?;
                to.restore_cache(&entries)?;
                results += batch.len() as i64;
                batch.clear();
                entries.clear();
            }
            Ok(())
        })
        .map_err(|e| match &stray {
            Some(row) => Error::invalid(format!(
                "shard {} (experiment {} in {}) holds row '{row}', which is not a row of its \
                 shard of the dataset",
                f.shard,
                f.experiment.id,
                store::display_location(&f.location)
            ))
            .with_hint("merge the stores the shard jobs wrote, unchanged"),
            None => e,
        })?;
        to.write_results(id, &batch)?;
        to.restore_cache(&entries)?;
        results += batch.len() as i64;
    }
    Ok(results)
}

/// The cache entry a run of the merged plan would have written for this answer.
fn cache_entry(
    experiment: &Experiment,
    params: &crate::model::JsonObject,
    result: &RunResult,
) -> Option<(String, CachedResponse, String)> {
    let body = crate::client::request_body(&experiment.model, &result.messages, params);
    let bytes = serde_json::to_vec(&body).ok()?;
    let key = crate::engine::cache_key(
        &experiment.base_url,
        &bytes,
        &result.row_id,
        usize::try_from(result.repetition).ok()?,
    );
    let response = CachedResponse {
        output: result.output.clone()?,
        finish_reason: result.finish_reason.clone(),
        prompt_tokens: result.prompt_tokens,
        completion_tokens: result.completion_tokens,
        http_status: result.http_status,
        latency_ms: result.latency_ms,
        created_at: result.finished_at.clone(),
    };
    Some((key, response, result.finished_at.clone()))
}
