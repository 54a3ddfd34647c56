//! Resuming a stored experiment: its dataset checked unchanged, its settings as stored (a new
//! budget aside), and only the rows without a successful result sent. It must not touch an
//! experiment that workers run, nor create one.

use super::super::Context;
use super::super::settings::ResumeSettings;
use super::Finished;
use super::endpoint::{client, probe, probe_target, runtime, target};
use super::lease::Lease;
use super::prepare::evaluators;
use super::run::{Ready, budget, execute, plan, priced};
use crate::dataset;
use crate::engine::{Done, Reporter};
use crate::error::{Error, Result};
use crate::model::VersionRef;
use crate::template::CompiledTemplate;
use std::future::Future;

/// Runs what an experiment still lacks: its dataset must be unchanged; only rows without a
/// successful result are sent.
/// A new budget (`ResumeSettings::max_cost`) replaces the one it was started with.
pub fn resume(
    ctx: &Context,
    settings: &ResumeSettings,
    reporter: &dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> Result<Finished> {
    let max_cost = settings.max_cost;
    let store = ctx.store_for_reading()?;
    let mut experiment = store.experiment(&settings.id)?;
    if experiment.settings.detached.is_some() {
        return Err(Error::invalid(format!(
            "experiment {} is run by workers, not resumed",
            experiment.id
        ))
        .with_hint(format!("start one: runner worker {}", experiment.id)));
    }
    let (prompt, version_id, _) = crate::workflow::runnable(&experiment)?;
    let (prompt, version_id) = (prompt.to_string(), version_id.to_string());
    if max_cost.is_some() {
        experiment.settings.max_cost = max_cost;
    }
    if experiment.settings.max_cost.is_some() {
        priced(ctx, &experiment.model)?;
    }
    let version = store.version(&prompt, &VersionRef::Id(version_id))?;
    let template = CompiledTemplate::compile(version.format, &version.template)?;
    // A dataset in the store (or a file since deleted whose bytes were pushed) comes from it.
    let path = crate::workflow::datasets::recorded(
        &*store,
        &experiment.dataset.path,
        &experiment.dataset.hash,
    )?;
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
    let target = target(&experiment.settings)?;
    let runtime = runtime()?;
    match &target {
        None => probe(&runtime, client.base_url())?,
        Some(target) => {
            if let Some(url) = target.url() {
                probe_target(&runtime, url)?;
            }
        }
    }
    let store = ctx.store()?;
    // Taken before the missing rows are counted: a second resume of the same experiment is
    // refused instead of sending every missing row twice.
    let lease = Lease::take(&store, &experiment.id)?;
    let done = Done::load(&*store, &experiment)?;
    let budget = budget(ctx, &experiment, store.tokens(&experiment.id)?)?;
    store.reopen_experiment(&experiment.id)?;
    let mut plan = plan(
        experiment, version, template, &path, evaluators, client, budget,
    );
    plan.target = target;
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
