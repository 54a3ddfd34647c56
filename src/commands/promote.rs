//! `runner promote`: the gate that moves a tag, with its reports (text, JSON, Markdown, JUnit).

use super::{
    Context, check_prompt_name, check_tag_name, confidence, interrupted, notes_on_stderr, out,
    out_json, rate, run_request, verdict_code,
};
use crate::cli::PromoteArgs;
use crate::compare::Inference;
use crate::error::{Error, Result, exit};
use crate::gate::Policy;
use crate::model::VersionRef;
use crate::report;
use crate::view::PromotionView;
use crate::workflow::promotion::{self, Acceptance, PromotionRequest};
use std::path::Path;

/// The gate's criteria: each flag overrides the same criterion from runner.toml; with none
/// from either, "no regression".
fn policy(args: &PromoteArgs, ctx: &Context) -> Result<Policy> {
    let file = ctx
        .config()?
        .for_prompt(&args.prompt)
        .gate
        .unwrap_or_default();
    let policy = Policy {
        min_pass_rate: rate("--min-pass-rate", args.min_pass_rate.or(file.min_pass_rate))?,
        max_regression: rate(
            "--max-regression",
            args.max_regression.or(file.max_regression),
        )?,
        no_new_failures: args.no_new_failures || file.no_new_failures.unwrap_or(false),
        max_error_rate: rate(
            "--max-error-rate",
            args.max_error_rate.or(file.max_error_rate),
        )?,
        max_p95_latency_ms: args.max_p95_latency_ms.or(file.max_p95_latency_ms),
        non_inferior: rate("--non-inferior", args.non_inferior.or(file.non_inferior))?,
        min_improvement: rate(
            "--min-improvement",
            args.min_improvement.or(file.min_improvement),
        )?,
        max_cost_increase: cost_increase(args.max_cost_increase.or(file.max_cost_increase))?,
    };
    // The error allowance alone judges nothing: the default gate stays, with it.
    if policy.has_absolute() || policy.has_relative() {
        Ok(policy)
    } else {
        Ok(Policy {
            max_error_rate: policy.max_error_rate,
            ..Policy::no_regression()
        })
    }
}

/// `--max-cost-increase`: a share, 0 or more (0.1 allows 10 % more per row).
fn cost_increase(value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(Error::invalid(format!(
            "--max-cost-increase must be a share, 0 or more, not {v}"
        ))
        .with_hint("0.1 lets the candidate cost up to 10 % more per row than the baseline")),
        other => Ok(other),
    }
}

fn write_report(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| {
        Error::operational(format!("cannot write {}: {e}", path.display()))
            .with_hint("check that the folder exists and is writable")
    })
}

/// Writes the reports; after the tag has moved, a report that cannot be written must not turn a
/// done promotion into a failure code, so it is a warning then.
fn write_reports(reports: &[(&Path, String)], moved: bool) -> Result<()> {
    for (path, text) in reports {
        match write_report(path, text) {
            Err(e) if moved => crate::note!("warning: {e} (the tag did move)"),
            other => other?,
        }
    }
    Ok(())
}

pub fn promote(args: PromoteArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.prompt)?;
    check_tag_name(&args.from)?;
    check_tag_name(&args.to)?;
    if args.from == args.to {
        return Err(Error::invalid("--from and --to name the same tag"));
    }
    let policy = policy(&args, ctx)?;
    let inference = Inference {
        confidence: confidence(args.confidence, ctx)?,
        cluster_column: args.cluster_column.clone(),
    };
    // Report files are checked before anything runs: an unwritable path is found early.
    for path in args.markdown.iter().chain(&args.junit) {
        write_report(path, "")?;
    }
    let (candidate_version, baseline_version) = {
        let store = ctx.store_for_reading()?;
        let candidate = store.version(&args.prompt, &VersionRef::Tag(args.from.clone()))?;
        let baseline = store.tag(&args.prompt, &args.to)?;
        (candidate, baseline)
    };
    if baseline_version.as_ref().map(|t| &t.version_id) == Some(&candidate_version.id) {
        out(&format!(
            "{} {} already points at v{} ({}): nothing to promote",
            args.prompt, args.to, candidate_version.seq, args.from
        ));
        return Ok(exit::OK);
    }
    if baseline_version.is_none() && !policy.has_absolute() {
        return Err(Error::invalid(format!(
            "{} has no tag '{}' yet, so there is no baseline to compare with, and no absolute criterion was given",
            args.prompt, args.to
        ))
        .with_hint("give --min-pass-rate R or --max-p95-latency-ms MS"));
    }

    let chosen = args
        .candidate_experiment
        .clone()
        .map(|candidate| promotion::Chosen {
            candidate,
            baseline: args.baseline_experiment.clone(),
        });
    let acceptance = Acceptance {
        max_error_rate: policy.error_allowance(),
        same_endpoint: args.same_endpoint,
    };
    let request = PromotionRequest {
        chosen,
        prompt: &args.prompt,
        from: &args.from,
        to: &args.to,
        dataset: args.dataset.as_deref(),
        run: run_request(&args.options),
        policy,
        inference: inference.clone(),
        fresh: args.options.fresh,
        dry_run: args.dry_run,
        message: args.message.clone(),
        acceptance,
    };
    let decided = promotion::promote(
        ctx,
        &request,
        candidate_version,
        baseline_version,
        &report::Terminal::new(inference.confidence),
        interrupted,
    )?;
    if args.json {
        notes_on_stderr(&decided.verdict);
    }
    let view = PromotionView {
        prompt: &args.prompt,
        from: &args.from,
        to: &args.to,
        candidate_version: decided.candidate_seq,
        baseline_version: decided.baseline_seq,
        passed: decided.verdict.passed,
        dry_run: args.dry_run,
        moved: decided.moved.is_some(),
        verdict: &decided.verdict,
        comparison: &decided.comparison,
    };
    let mut reports = Vec::new();
    if let Some(path) = &args.markdown {
        reports.push((path.as_path(), report::promotion_markdown(&view)));
    }
    if let Some(path) = &args.junit {
        reports.push((path.as_path(), report::verdict_junit(&view)));
    }
    write_reports(&reports, view.moved)?;
    if args.json {
        out_json(&report::promotion_json(&view))?;
    } else {
        out(&report::promotion_text(&view));
    }
    Ok(verdict_code(&decided.verdict))
}
