//! `runner experiment` and the subcommands that list, show and resume experiments (`wait` and
//! `merge` sit with the workers, in `worker.rs`). It holds no rule of its own: the run is
//! `workflow::experiment`'s, the experiment's own check `gate`'s, and the summaries, tables and CSV
//! records `report`'s.

use super::{
    Context, check_prompt_name, checked, confidence, fail_unless_written, interrupted, out,
    out_json, version_ref,
};
use crate::cli::{
    ExperimentAction, ExperimentArgs, ExperimentListArgs, ExperimentResumeArgs, ExperimentShowArgs,
    RunArgs,
};
use crate::error::{Error, Result, exit};
use crate::model::{Experiment, ExperimentStatus, ResultStatus, RunResult};
use crate::report;
use crate::store::{self, Store};
use crate::view::{CostView, ExperimentItem};
use crate::workflow::experiment::{Finished, as_seen, launch, prepare, resume as resume_run};
use crate::workflow::settings::{Check, ExperimentSettings, ResumeSettings};
use std::io::Write;
use std::path::Path;

pub fn run(args: ExperimentArgs, ctx: &Context) -> Result<u8> {
    match args.action {
        None => start(args.run, ctx),
        Some(ExperimentAction::List(args)) => list(args, ctx).map(|_| exit::OK),
        Some(ExperimentAction::Show(args)) => show(args, ctx).map(|_| exit::OK),
        Some(ExperimentAction::Resume(args)) => resume(args, ctx),
        Some(ExperimentAction::Plan(args)) => super::plan::plan(*args, ctx).map(|_| exit::OK),
        Some(ExperimentAction::Wait(args)) => super::worker::wait(args, ctx),
        Some(ExperimentAction::Merge(args)) => super::worker::merge(args, ctx),
    }
}

fn start(args: RunArgs, ctx: &Context) -> Result<u8> {
    let prompt = args.prompt.clone().ok_or_else(|| {
        Error::invalid("experiment needs --prompt NAME")
            .with_hint("runner experiment --prompt NAME --tag TAG --dataset FILE")
    })?;
    let reference = version_ref(&args.selector)?;
    // The check is read before anything runs: a bad threshold writes nothing.
    let check = Check::new(
        ctx.config()?,
        &prompt,
        args.min_pass_rate,
        args.max_error_rate,
    )?;
    let confidence = confidence(args.confidence, ctx)?;
    let settings = ExperimentSettings::for_experiment(ctx.config()?, &prompt, &args, check)?;
    let prepared = prepare(ctx, &settings, &reference)?;
    if args.detach {
        return super::worker::detach(prepared, ctx, args.json);
    }
    let finished = launch(
        prepared,
        ctx,
        &report::Terminal::new(confidence),
        interrupted(),
    )?;
    let check =
        crate::gate::check_experiment(&finished.summary, check.min_pass_rate, check.max_error_rate);
    let code = print_finished(ctx, &finished, args.json, &check, confidence)?;
    Ok(checked(code, &check, &finished.experiment))
}

fn resume(args: ExperimentResumeArgs, ctx: &Context) -> Result<u8> {
    let confidence = confidence(args.confidence, ctx)?;
    let settings = ResumeSettings::new(&args)?;
    let finished = resume_run(
        ctx,
        &settings,
        &report::Terminal::new(confidence),
        interrupted(),
    )?;
    // The same check as the first run: runner.toml's thresholds, and no errored row by default.
    let prompt = crate::workflow::runnable(&finished.experiment)?.0;
    let own = Check::new(ctx.config()?, prompt, None, None)?;
    let check =
        crate::gate::check_experiment(&finished.summary, own.min_pass_rate, own.max_error_rate);
    let code = print_finished(ctx, &finished, args.json, &check, confidence)?;
    Ok(checked(code, &check, &finished.experiment))
}

/// Prints how a run ended and returns its exit code.
fn print_finished(
    ctx: &Context,
    finished: &Finished,
    json: bool,
    check: &[crate::gate::Criterion],
    confidence: f64,
) -> Result<u8> {
    let Finished {
        experiment,
        summary,
        stats,
        status,
        ..
    } = finished;
    let cost = CostView::of(&ctx.config()?.prices(), experiment, summary);
    if json {
        let mut view = report::experiment_json(experiment, summary, Some(stats), cost, confidence);
        view.check = (!check.is_empty()).then_some(check);
        out_json(&view)?
    } else {
        out(&report::experiment_summary(
            experiment,
            summary,
            Some(stats),
            cost.as_ref(),
            confidence,
        ))
    }
    if *status == ExperimentStatus::Interrupted {
        crate::note!(
            "interrupted: finished results are stored; `runner experiment resume {}` runs the rest",
            experiment.id
        );
        return Ok(exit::INTERRUPTED);
    }
    Ok(exit::OK)
}

fn list(args: ExperimentListArgs, ctx: &Context) -> Result<()> {
    if let Some(prompt) = &args.prompt {
        check_prompt_name(prompt)?;
    }
    let store = ctx.store_for_reading()?;
    let experiments: Vec<Experiment> = store
        .experiments(args.prompt.as_deref())?
        .into_iter()
        .map(as_seen)
        .collect();
    let prices = ctx.config()?.prices();
    let items = experiments
        .into_iter()
        .map(|experiment| {
            let (prompt_tokens, completion_tokens) = store.tokens(&experiment.id)?;
            Ok(ExperimentItem {
                cost_usd: prices
                    .run_cost(
                        &experiment.model,
                        experiment.settings.mock,
                        prompt_tokens,
                        completion_tokens,
                    )
                    .map(|c| c.usd),
                experiment,
                prompt_tokens,
                completion_tokens,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if args.json {
        out_json(&items)
    } else {
        out(&report::experiments_table(&items));
        if let Some(stopped) = items
            .iter()
            .map(|item| &item.experiment)
            .find(|e| e.status == ExperimentStatus::Interrupted)
        {
            crate::note!(
                "interrupted experiments keep their results: `runner experiment resume {}` runs the rest",
                stopped.id
            );
        }
        Ok(())
    }
}

fn show(args: ExperimentShowArgs, ctx: &Context) -> Result<()> {
    let confidence = confidence(args.confidence, ctx)?;
    let store = ctx.store_for_reading()?;
    let id = super::experiment_named(&*store, &args.id)?;
    let experiment = as_seen(store.experiment(&id)?);
    let summary = store.summary(&experiment)?;
    let cost = CostView::of(&ctx.config()?.prices(), &experiment, &summary);
    let keep = |r: &RunResult| {
        let errored = r.status == ResultStatus::Error;
        if args.errored {
            errored
        } else if args.failed {
            errored || r.scores.iter().any(|s| !s.pass)
        } else {
            true
        }
    };
    if let Some(path) = &args.csv {
        let written = write_csv(&*store, &experiment, path, &keep)?;
        crate::note!("wrote {written} rows to {}", path.display());
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let head = report::experiment_json(&experiment, &summary, None, cost, confidence);
        if !args.rows {
            return out_json(&head);
        }
        // Rows stream out one by one: a million-row experiment is never held in memory.
        let text = serde_json::to_string(&head).map_err(|e| Error::operational(e.to_string()))?;
        let open = text.strip_suffix('}').unwrap_or(&text);
        fail_unless_written(write!(stdout, "{open},\"rows\":["));
        let mut first = true;
        store::visit_results(&*store, &experiment.id, |result| -> Result<()> {
            if !keep(&result) {
                return Ok(());
            }
            let line = serde_json::to_string(&result).unwrap_or_default();
            let sep = if first { "\n" } else { ",\n" };
            first = false;
            fail_unless_written(write!(stdout, "{sep}{line}"));
            Ok(())
        })?;
        fail_unless_written(writeln!(stdout, "\n]}}").and_then(|()| stdout.flush()));
        return Ok(());
    }
    out(&report::experiment_summary(
        &experiment,
        &summary,
        None,
        cost.as_ref(),
        confidence,
    ));
    if args.rows {
        let mut rows = Vec::new();
        store::visit_results(&*store, &experiment.id, |result| -> Result<()> {
            if keep(&result) {
                rows.push(report::result_row(&experiment, &result));
            }
            Ok(())
        })?;
        out(&report::results_table(&experiment, rows));
    }
    Ok(())
}

/// Writes the results `keep` accepts as CSV (`report::csv_header`, `report::csv_record`);
/// returns how many.
fn write_csv(
    store: &dyn Store,
    experiment: &Experiment,
    path: &Path,
    keep: &dyn Fn(&RunResult) -> bool,
) -> Result<u64> {
    let mut written = 0u64;
    let fail = |e: &dyn std::fmt::Display| {
        Error::operational(format!("cannot write {}: {e}", path.display()))
    };
    let mut writer = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
    writer
        .write_record(report::csv_header(experiment))
        .map_err(|e| fail(&e))?;
    store::visit_results(store, &experiment.id, |r| -> Result<()> {
        if !keep(&r) {
            return Ok(());
        }
        written += 1;
        writer
            .write_record(report::csv_record(experiment, &r))
            .map_err(|e| fail(&e))
    })?;
    writer.flush().map_err(|e| fail(&e))?;
    Ok(written)
}
