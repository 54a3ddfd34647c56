//! `runner canary`: start a rollout, show it, take its due looks once, advance or stop it by
//! hand. It reads the flags into a plan and prints; the rollout's rules are
//! `workflow::canary`'s and `domain::canary`'s.

use super::{Context, check_prompt_name, check_tag_name, confidence, out, out_json};
use crate::canary::{Metric, StepAfter};
use crate::cli::{CanaryCommand, CanaryStartArgs, CanaryStopArgs, CanaryTagArgs};
use crate::error::{Error, Result, exit};
use crate::report;
use crate::workflow::canary::{self, Plan};

pub fn run(command: CanaryCommand, ctx: &Context) -> Result<u8> {
    match command {
        CanaryCommand::Start(args) => start(args, ctx),
        CanaryCommand::Status(args) => status(args, ctx),
        CanaryCommand::Evaluate(args) => evaluate(args, ctx),
        CanaryCommand::Advance(args) => advance(args, ctx),
        CanaryCommand::Stop(args) => stop(args, ctx),
    }
}

fn start(args: CanaryStartArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.prompt)?;
    check_tag_name(&args.tag)?;
    // Each flag, else runner.toml's [canary], else the built-in default.
    let defaults = ctx.config()?.canary.clone();
    let canary_tag = args
        .canary_tag
        .clone()
        .or(defaults.canary_tag)
        .unwrap_or_else(|| crate::canary::DEFAULT_CANARY_TAG.to_string());
    check_tag_name(&canary_tag)?;
    let steps = if args.steps.is_empty() {
        defaults
            .steps
            .unwrap_or_else(|| crate::canary::DEFAULT_STEPS.to_vec())
    } else {
        args.steps.clone()
    };
    let step_after_text = args
        .step_after
        .clone()
        .or(defaults.step_after)
        .unwrap_or_else(|| "30m".to_string());
    let non_inferior = args.non_inferior.or(defaults.non_inferior);
    let unit_header = args.unit_header.clone().or(defaults.unit_header);
    let step_after = StepAfter::parse(&step_after_text.replace(' ', "")).map_err(|e| {
        Error::invalid(format!("--step-after {e}"))
            .with_hint("a duration (30m, 2h) or a number of candidate requests (500requests)")
    })?;
    if let Some(d) = non_inferior
        && !(d.is_finite() && d > 0.0 && d < 1.0)
    {
        return Err(
            Error::invalid(format!("--non-inferior must be between 0 and 1, got {d}"))
                .with_hint("for example --non-inferior 0.02 (two points of error rate)"),
        );
    }
    let texts = if args.metrics.is_empty() {
        defaults
            .metrics
            .unwrap_or_else(|| vec!["error_rate".to_string()])
    } else {
        args.metrics.clone()
    };
    let metrics = texts
        .iter()
        .map(|m| {
            Metric::parse(m, non_inferior).map_err(|e| {
                Error::invalid(format!("--metric {e}"))
                    .with_hint("error_rate, latency_p95:+20% or score:NAME")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(header) = &unit_header
        && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err()
    {
        return Err(
            Error::invalid(format!("--unit-header '{header}' is not a header name"))
                .with_hint("for example --unit-header X-Runner-Unit"),
        );
    }
    let plan = Plan {
        prompt: args.prompt.clone(),
        tag: args.tag.clone(),
        candidate: args.candidate.clone(),
        steps,
        step_after,
        unit_header,
        metrics,
        confidence: confidence(args.confidence, ctx)?,
        canary_tag,
        message: args.message.clone(),
    };
    canary::check_steps(&plan.steps)?;
    let store = ctx.store()?;
    let (rollout, event) = canary::start(
        &*store,
        &plan,
        &ctx.author,
        &ctx.config()?.tag_policy(),
        crate::trace::now_ms(),
    )?;
    if args.json {
        out_json(&serde_json::json!({"rollout": rollout, "event": event}))?;
    } else {
        out(&format!(
            "rollout {} started: {} v{} → v{} in steps of {}% (each {}), watching {}; {} points at \
             v{} while it runs\n`runner serve` serves and decides it; `runner canary status {}` \
             shows it",
            rollout.id,
            rollout.tag,
            rollout.baseline,
            rollout.candidate,
            rollout
                .steps
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            rollout.step_after.text(),
            rollout
                .metrics
                .iter()
                .map(Metric::label)
                .collect::<Vec<_>>()
                .join(", "),
            rollout.canary_tag,
            rollout.candidate,
            rollout.prompt
        ));
    }
    Ok(exit::OK)
}

fn status(args: CanaryTagArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.prompt)?;
    check_tag_name(&args.tag)?;
    let store = ctx.store_for_reading()?;
    let rollouts = store.rollouts(Some(&args.prompt), false)?;
    let Some(rollout) = rollouts.into_iter().find(|r| r.tag == args.tag) else {
        return Err(crate::store::StoreError::NoRollout {
            prompt: args.prompt,
            tag: args.tag,
        }
        .into());
    };
    let view = canary::view(&*store, rollout, crate::trace::now_ms())?;
    if args.json {
        out_json(&view)?;
    } else {
        out(&report::canary_text(&view));
    }
    Ok(exit::OK)
}

fn evaluate(args: CanaryTagArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.prompt)?;
    let store = ctx.store()?;
    let outcomes = canary::evaluate_all(
        &*store,
        Some(&args.prompt),
        crate::trace::now_ms(),
        &ctx.config()?.tag_policy(),
        &ctx.author,
    )?;
    let outcomes: Vec<_> = outcomes.into_iter().filter(|o| o.tag == args.tag).collect();
    if args.json {
        out_json(&outcomes)?;
    } else if outcomes.is_empty() {
        out("no look was due");
    } else {
        for outcome in &outcomes {
            out(&report::canary_outcome_text(outcome));
        }
    }
    Ok(exit::OK)
}

fn advance(args: CanaryTagArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.prompt)?;
    check_tag_name(&args.tag)?;
    let store = ctx.store()?;
    let outcome = canary::advance(
        &*store,
        &args.prompt,
        &args.tag,
        crate::trace::now_ms(),
        &ctx.config()?.tag_policy(),
        &ctx.author,
    )?;
    if args.json {
        out_json(&outcome)?;
    } else {
        out(&report::canary_outcome_text(&outcome));
    }
    Ok(exit::OK)
}

fn stop(args: CanaryStopArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.prompt)?;
    check_tag_name(&args.tag)?;
    let store = ctx.store()?;
    let rollout = canary::running(&*store, &args.prompt, &args.tag)?;
    canary::stop(
        &*store,
        &args.prompt,
        &args.tag,
        args.message.as_deref(),
        &ctx.config()?.tag_policy(),
        &ctx.author,
    )?;
    out(&format!(
        "rollout {} stopped: {} stays on v{}, v{} is no longer served",
        rollout.id, rollout.tag, rollout.baseline, rollout.candidate
    ));
    Ok(exit::OK)
}
