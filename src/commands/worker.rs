//! `runner worker`, `runner experiment --detach` and `runner experiment wait`: one experiment
//! across many machines. It holds no rule of its own: planning, leases and waiting are
//! `workflow::worker`'s and joining shards `workflow::shards`'s; this file picks the progress
//! display and says how the work ended.

use super::{Context, out, out_json};
use super::{confidence, interrupted};
use crate::cli::{ExperimentMergeArgs, ExperimentWaitArgs, WorkerArgs};
use crate::error::{Error, Result, exit};
use crate::model::ExperimentStatus;
use crate::report;
use crate::view::CostView;
use crate::workflow::experiment::Prepared;
use crate::workflow::settings::{DEFAULT_MAX_ERROR_RATE, WorkerSettings};
use crate::workflow::worker::{self, Waited};
use serde_json::json;
use std::time::{Duration, Instant};

/// `runner experiment ... --detach`: plans, prints the id, sends nothing.
pub fn detach(prepared: Prepared, ctx: &Context, json: bool) -> Result<u8> {
    let planned = worker::detach(prepared, ctx)?;
    let id = &planned.experiment.id;
    if json {
        out_json(&json!({
            "id": id,
            "created": planned.created,
            "items": planned.counts.items,
            "done": planned.counts.done,
        }))?;
    } else {
        out(id);
    }
    if planned.created {
        crate::note!(
            "planned experiment {id}: {} items (rows × repetitions), nothing sent; \
             run `runner worker {id}` on each machine, then `runner experiment wait {id}`",
            planned.counts.items
        );
    } else {
        crate::note!(
            "experiment {id} was already planned with this key: {} of {} items done",
            planned.counts.done,
            planned.counts.items
        );
    }
    Ok(exit::OK)
}

/// `runner worker ID`.
pub fn run(args: WorkerArgs, ctx: &Context) -> Result<u8> {
    let settings = WorkerSettings::new(ctx.config()?, &args)?;
    let confidence = confidence(None, ctx)?;
    let format: crate::logging::LogFormat = args.log_format.parse().map_err(Error::invalid)?;
    let _log = crate::logging::init(format);
    // A person at a terminal gets the progress bar; a log collector gets log lines.
    let reporter: Box<dyn crate::engine::Reporter> = match format {
        crate::logging::LogFormat::Text => Box::new(report::Terminal::new(confidence)),
        crate::logging::LogFormat::Json => Box::new(report::Logged::default()),
    };
    let outcome = worker::work(ctx, &settings, &*reporter, interrupted())?;
    let secs = outcome.wall.as_secs_f64();
    let rate = if secs > 0.0 {
        outcome.written as f64 / secs
    } else {
        0.0
    };
    if args.json {
        out_json(&json!({
            "experiment": outcome.experiment.id,
            "worker": outcome.owner,
            "written": outcome.written,
            "errored": outcome.errored,
            "dropped": outcome.dropped,
            "wall_secs": secs,
            "rows_per_sec": rate,
            "status": outcome.status.as_str(),
            "items": outcome.counts,
        }))?;
    } else {
        out(&format!(
            "{}: {} results written ({} errored, {} dropped: lease taken over) in {:.1} s, {:.1} rows/s; \
             experiment {}: {}/{} items done ({})",
            outcome.owner,
            outcome.written,
            outcome.errored,
            outcome.dropped,
            secs,
            rate,
            outcome.experiment.id,
            outcome.counts.done,
            outcome.counts.items,
            outcome.status.as_str()
        ));
    }
    tracing::info!(
        experiment = %outcome.experiment.id,
        worker = %outcome.owner,
        written = outcome.written,
        errored = outcome.errored,
        dropped = outcome.dropped,
        rows_per_sec = rate,
        status = outcome.status.as_str(),
        "worker finished"
    );
    if outcome.status == ExperimentStatus::Interrupted {
        tracing::warn!(
            "interrupted: this worker's unfinished items went back to the queue; other workers (or `runner worker {}`) run them",
            outcome.experiment.id
        );
        return Ok(exit::INTERRUPTED);
    }
    Ok(exit::OK)
}

/// How often `wait` writes a progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// `runner experiment wait ID`.
pub fn wait(args: ExperimentWaitArgs, ctx: &Context) -> Result<u8> {
    let confidence = confidence(args.confidence, ctx)?;
    let timeout = match args.timeout {
        Some(t) if !(t.is_finite() && t >= 0.0) => {
            return Err(
                Error::invalid(format!("--timeout must be a number of seconds, not {t}"))
                    .with_hint("e.g. --timeout 3600"),
            );
        }
        other => other.map(Duration::from_secs_f64),
    };
    let started = Instant::now();
    let mut last: Option<Instant> = None;
    let mut first_done: Option<i64> = None;
    let mut ended = false;
    let waited = worker::wait(ctx, &args.id, timeout, &mut |experiment, counts| {
        let base = *first_done.get_or_insert(counts.done);
        let end = counts.done >= counts.items;
        if (last.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) || end) && !(end && ended) {
            ended |= end;
            last = Some(Instant::now());
            let secs = started.elapsed().as_secs_f64();
            let rate = if secs > 0.0 {
                (counts.done - base) as f64 / secs
            } else {
                0.0
            };
            crate::note!(
                "{}: {}/{} items done, {} workers, {} leased, {} reclaimed, {:.1} items/s",
                experiment.id,
                counts.done,
                counts.items,
                counts.workers,
                counts.leased,
                counts.reclaimed,
                rate
            );
        }
    })?;
    let experiment = match waited {
        Waited::Completed(experiment) => experiment,
        Waited::Failed(experiment, counts) => {
            return Err(Error::operational(format!(
                "experiment {} failed: a worker stopped it ({} of {} items done)",
                experiment.id, counts.done, counts.items
            ))
            .with_hint("the failing worker's log says why; the stored results are kept"));
        }
        Waited::TimedOut(experiment, counts) => {
            return Err(Error::operational(format!(
                "experiment {} is not finished after {:.0} s: {} of {} items done",
                experiment.id,
                started.elapsed().as_secs_f64(),
                counts.done,
                counts.items
            ))
            .with_hint(format!(
                "the workers go on; `runner experiment wait {}` again, or start more workers",
                experiment.id
            )));
        }
    };
    let store = ctx.store_for_reading()?;
    let summary = store.summary(&experiment)?;
    let cost = CostView::of(&ctx.config()?.prices(), &experiment, &summary);
    let detached = experiment.settings.detached.clone().unwrap_or_default();
    let check = crate::gate::check_experiment(
        &summary,
        detached.min_pass_rate,
        detached.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE),
    );
    if args.json {
        let mut view = report::experiment_json(&experiment, &summary, None, cost, confidence);
        view.check = (!check.is_empty()).then_some(&check);
        out_json(&view)?;
    } else {
        out(&report::experiment_summary(
            &experiment,
            &summary,
            None,
            cost.as_ref(),
            confidence,
        ));
    }
    Ok(super::checked(exit::OK, &check, &experiment))
}

/// `runner experiment merge STORE... --into STORE`.
pub fn merge(args: ExperimentMergeArgs, ctx: &Context) -> Result<u8> {
    let merged = crate::workflow::shards::merge(&args.stores, &args.into, &ctx.author)?;
    if args.json {
        out_json(&json!({
            "id": merged.experiment.id,
            "shards": merged.shards,
            "results": merged.results,
            "store": merged.location,
        }))?;
    } else {
        out(&format!(
            "merged {} shards ({} results) into experiment {} in {}",
            merged.shards, merged.results, merged.experiment.id, merged.location
        ));
    }
    Ok(exit::OK)
}
