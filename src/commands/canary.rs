//! `runner canary`: start a rollout, show it, take its due looks once, advance or stop it by
//! hand. It reads the flags into a plan and prints; the rollout's rules are
//! `workflow::canary`'s and `domain::canary`'s.

use super::{Context, check_prompt_name, check_tag_name, out, out_json};
use crate::canary::Metric;
use crate::cli::{CanaryCommand, CanaryStartArgs, CanaryStopArgs, CanaryTagArgs};
use crate::error::{Result, exit};
use crate::report;
use crate::workflow::canary;

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
    let config = ctx.config()?;
    let request = canary::Request {
        tag: Some(args.tag.clone()),
        candidate: args.candidate.clone(),
        steps: (!args.steps.is_empty()).then(|| args.steps.clone()),
        step_after: args.step_after.clone(),
        unit_header: args.unit_header.clone(),
        metrics: (!args.metrics.is_empty()).then(|| args.metrics.clone()),
        non_inferior: args.non_inferior,
        confidence: args.confidence,
        canary_tag: args.canary_tag.clone(),
        message: args.message.clone(),
    };
    let plan = canary::plan(&args.prompt, request, &config.canary, config.confidence)?;
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
