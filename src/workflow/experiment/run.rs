//! Running a ready experiment: the engine's plan assembled (client, evaluators, cache use,
//! budget), run on the runtime, and how it ended recorded in the store with the error that
//! says what to do next. It must not resolve settings or create experiments.

use super::super::Context;
use super::lease::Lease;
use super::{Finished, dataset_error};
use crate::client::Client;
use crate::engine::{self, Done, Outcome, Plan, Reporter, Stop};
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::model::{Experiment, ExperimentStatus, PromptVersion, RunStats};
use crate::store::Store;
use crate::template::CompiledTemplate;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// The budget of a run: `--max-cost` at the price of the experiment's model, less what its
/// stored results already cost. A budget without a price could not be kept: refused.
pub(super) fn budget(
    ctx: &Context,
    experiment: &Experiment,
    already: (i64, i64),
) -> Result<Option<Arc<crate::cost::Budget>>> {
    let Some(max) = experiment.settings.max_cost else {
        return Ok(None);
    };
    // Against runner's mock nothing is spent, so nothing counts against the budget.
    let price = match ctx
        .config()?
        .prices()
        .of_run(&experiment.model, experiment.settings.mock)
    {
        Some((price, crate::cost::Source::Mock)) => price,
        _ => priced(ctx, &experiment.model)?,
    };
    let spent = price.cost(already.0 as f64, already.1 as f64);
    Ok(Some(Arc::new(crate::cost::Budget::new(max, price, spent))))
}

/// The price of `model` for a budget, or why there is none.
pub(super) fn priced(ctx: &Context, model: &str) -> Result<crate::cost::Price> {
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

pub(in crate::workflow) fn plan(
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
        target: None,
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

/// A run about to start: everything checked, the experiment stored and leased.
pub(super) struct Ready {
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) plan: Plan,
    pub(super) store: Arc<dyn Store>,
    pub(super) done: Done,
    /// Made by this command: a setup failure removes it again.
    pub(super) fresh: bool,
    pub(super) lease: Lease,
}

/// Runs the plan, telling `reporter` as it goes, and records how it ended.
pub(super) fn execute(
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
    let target = plan.target.as_ref().map(|t| t.spec().to_string());
    let mock = plan.client.mock();
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
    // Whatever stopped the run, what was answered so far came from the mock.
    if mock.load(std::sync::atomic::Ordering::Relaxed) {
        store.mark_mock(&id)?;
    }
    match &outcome.stop {
        Some(Stop::Auth(message)) | Some(Stop::Unreachable(message)) => {
            // Not one call answered: a setup problem. A new experiment leaves no trace.
            if fresh {
                store.discard_experiment(&id)?;
            } else {
                store.finish_experiment(&id, ExperimentStatus::Failed, wall_ms)?;
            }
            let auth = matches!(outcome.stop, Some(Stop::Auth(_)));
            if let Some(target) = &target {
                return Err(Error::operational(format!(
                    "the target {target} answered no row: {message}"
                ))
                .with_hint(
                    "run the target by hand with one request line to see why; a new \
                     experiment stopped this way leaves no trace",
                ));
            }
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
