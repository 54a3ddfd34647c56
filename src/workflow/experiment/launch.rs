//! Launching a run: the prepared experiment created in the store (its rows counted, a shard's
//! among them), leased and handed to `run::execute`. It must not check flags or resolve what
//! `prepare` resolved.

use super::super::Context;
use super::Finished;
use super::dataset_error;
use super::endpoint::{client, probe, probe_target, runtime, target};
use super::lease::Lease;
use super::prepare::Prepared;
use super::run::{Ready, budget, execute, plan};
use crate::dataset;
use crate::engine::{Done, Reporter};
use crate::error::Result;
use crate::model::{DatasetRef, NewExperiment};
use std::future::Future;
use std::path::Path;

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

/// Creates the experiment and runs it to its end (or an interruption); returns how it ended.
pub fn launch(
    prepared: Prepared,
    ctx: &Context,
    reporter: &dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> Result<Finished> {
    let asked = &prepared.settings;
    let client = client(&asked.base_url, &asked.run)?;
    let target = target(&asked.run)?;
    let runtime = runtime()?;
    // What answers the rows must be there: the endpoint, or an HTTP target (a program target
    // that cannot start fails its first row, and the run stops).
    match &target {
        None => probe(&runtime, client.base_url())?,
        Some(target) => {
            if let Some(url) = target.url() {
                probe_target(&runtime, url)?;
            }
        }
    }
    let store = ctx.store()?;
    let settings = asked.run.clone();
    let rows = settings
        .limit
        .map_or(prepared.info.rows, |l| l.min(prepared.info.rows));
    let rows = match settings.shard {
        Some(shard) => shard_rows(&asked.dataset, rows, shard)?,
        None => rows,
    };
    let experiment = store.create_experiment(&NewExperiment {
        name: asked.name.clone(),
        prompt: Some(asked.prompt.clone()),
        version_id: Some(prepared.version.id.clone()),
        tag: prepared.tag.clone(),
        dataset: DatasetRef {
            // Absolute, so `resume` finds the file from any working directory.
            path: asked.dataset_label.clone().unwrap_or_else(|| {
                std::fs::canonicalize(&asked.dataset)
                    .unwrap_or_else(|_| asked.dataset.clone())
                    .display()
                    .to_string()
            }),
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
    let mut plan = plan(
        experiment,
        prepared.version,
        prepared.template,
        &asked.dataset,
        prepared.evaluators,
        client,
        budget,
    );
    plan.target = target;
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
