//! `runner compare` and `runner promote`: evidence side by side, and the gate that moves a tag.

use super::experiment::{Prepared, SummaryTo, launch, prepare};
use super::{Context, check_prompt_name, check_tag_name, out, out_json};
use crate::cli::{CompareArgs, PromoteArgs, RunOptions};
use crate::compare::{Comparison, compare as compare_outcomes};
use crate::error::{Error, Result, exit};
use crate::gate::{self, Policy, Verdict};
use crate::model::{Experiment, TagAction, VersionRef};
use crate::report;
use crate::store::{Expect, TagChange, TagOutcome};
use serde_json::json;
use std::path::Path;

/// The experiment that stands as evidence for a prepared run: the newest matching completed
/// one, or (when running is allowed) a new one. When it is not, a missing one is an input error
/// whose hint is the command that would make it.
fn evidence(
    prepared: Prepared,
    ctx: &Context,
    reuse: Reuse,
    options: &RunOptions,
) -> Result<Experiment> {
    let run = reuse != Reuse::Only;
    let store = ctx.store_for_reading()?;
    let found = store.latest_matching(&prepared.fingerprint)?;
    drop(store);
    if let Some(experiment) = found.filter(|_| reuse != Reuse::Never) {
        eprintln!(
            "using experiment {} for {} v{}",
            experiment.id, prepared.prompt, prepared.version.seq
        );
        return Ok(experiment);
    }
    if !run {
        let mut command = format!(
            "runner experiment --prompt {} --version-id {} --dataset {}",
            prepared.prompt,
            prepared.version.id,
            prepared.dataset.display()
        );
        for spec in &options.evals {
            command.push_str(&format!(" --eval '{spec}'"));
        }
        return Err(Error::invalid(format!(
            "no completed experiment of {} v{}{} on this dataset with these evaluators and model",
            prepared.prompt,
            prepared.version.seq,
            prepared
                .tag
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        ))
        .with_hint(format!("add --run, or run it first: {command}")));
    }
    eprintln!(
        "running {} v{} over {}",
        prepared.prompt,
        prepared.version.seq,
        prepared.dataset.display()
    );
    let (experiment, code) = launch(prepared, ctx, SummaryTo::Stderr)?;
    if code == exit::INTERRUPTED {
        return Err(Error::interrupted(format!(
            "interrupted while running experiment {}",
            experiment.id
        ))
        .with_hint(format!(
            "`runner experiment resume {}` finishes it",
            experiment.id
        )));
    }
    Ok(experiment)
}

/// Whether stored experiments may stand as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reuse {
    /// Use a matching one; never run.
    Only,
    /// Use a matching one, or run.
    OrRun,
    /// Always run a new one.
    Never,
}

impl Reuse {
    fn from_flags(run: bool, fresh: bool) -> Reuse {
        match (run, fresh) {
            (_, true) => Reuse::Never,
            (true, false) => Reuse::OrRun,
            (false, false) => Reuse::Only,
        }
    }
}

fn comparison(
    ctx: &Context,
    baseline: Option<&Experiment>,
    candidate: &Experiment,
) -> Result<Comparison> {
    let store = ctx.store_for_reading()?;
    let outcomes = |e: &Experiment| -> Result<Vec<crate::model::RowOutcome>> {
        let mut all = Vec::new();
        store.visit_outcomes(e, &mut |o| {
            all.push(o);
            Ok(())
        })?;
        Ok(all)
    };
    let base = baseline.map(outcomes).transpose()?;
    let cand = outcomes(candidate)?;
    Ok(compare_outcomes(
        baseline.zip(base.as_deref()),
        (candidate, &cand),
    ))
}

pub fn compare(args: CompareArgs, ctx: &Context) -> Result<u8> {
    let (baseline, candidate) = match args.experiments.as_slice() {
        [a, b] => {
            if args.prompt.is_some() || !args.tags.is_empty() {
                return Err(Error::invalid(
                    "compare takes two experiment ids, or --prompt with --tags, not both",
                ));
            }
            let store = ctx.store_for_reading()?;
            (store.experiment(a)?, store.experiment(b)?)
        }
        [_] => {
            return Err(Error::invalid("compare needs two experiment ids")
                .with_hint("runner compare BASELINE_ID CANDIDATE_ID"));
        }
        _ => {
            let prompt = args.prompt.clone().ok_or_else(|| {
                Error::invalid(
                    "compare needs --prompt NAME --tags BASE,CANDIDATE, or two experiment ids",
                )
                .with_hint("runner compare --prompt NAME --tags production,staging --dataset FILE")
            })?;
            check_prompt_name(&prompt)?;
            let [base_tag, cand_tag] = args.tags.as_slice() else {
                return Err(Error::invalid("--tags takes two tags: BASELINE,CANDIDATE")
                    .with_hint("for example --tags production,staging"));
            };
            check_tag_name(base_tag)?;
            check_tag_name(cand_tag)?;
            let side = |tag: &String| {
                prepare(
                    ctx,
                    &prompt,
                    &VersionRef::Tag(tag.clone()),
                    args.dataset.as_deref(),
                    None,
                    &args.options,
                )
            };
            // Both sides are checked before either runs.
            let (base, cand) = (side(base_tag)?, side(cand_tag)?);
            let reuse = Reuse::from_flags(args.run, args.fresh);
            (
                evidence(base, ctx, reuse, &args.options)?,
                evidence(cand, ctx, reuse, &args.options)?,
            )
        }
    };
    let result = comparison(ctx, Some(&baseline), &candidate)?;
    if args.json {
        out_json(&report::comparison_json(&result, args.rows))?;
    } else if args.markdown {
        out(&report::comparison_markdown(&result, args.rows));
    } else {
        out(&report::comparison_text(&result, args.rows));
    }
    Ok(exit::OK)
}

fn rate(flag: &str, value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(Error::invalid(format!(
            "{flag} {v} is out of range: give a fraction between 0 and 1"
        ))
        .with_hint(format!("{flag} 0.9 means 90%"))),
        other => Ok(other),
    }
}

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
    };
    if policy.has_absolute() || policy.has_relative() {
        Ok(policy)
    } else {
        Ok(Policy::no_regression())
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
            Err(e) if moved => eprintln!("warning: {e} (the tag did move)"),
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
        .with_hint("give --min-pass-rate R, --max-error-rate E or --max-p95-latency-ms MS"));
    }

    // Both sides are checked before either runs, so bad input fails before any request.
    let candidate = prepare(
        ctx,
        &args.prompt,
        &VersionRef::Tag(args.from.clone()),
        args.dataset.as_deref(),
        None,
        &args.options,
    )?;
    let baseline = baseline_version
        .as_ref()
        .map(|_| {
            prepare(
                ctx,
                &args.prompt,
                &VersionRef::Tag(args.to.clone()),
                args.dataset.as_deref(),
                None,
                &args.options,
            )
        })
        .transpose()?;
    if candidate.evaluators.is_empty() {
        return Err(Error::invalid(
            "the gate needs at least one evaluator, and none was given or implied",
        )
        .with_hint(
            "pass --eval SPEC (or name an expected column with --expected-column, which implies icontains)",
        ));
    }
    let reuse = Reuse::from_flags(true, args.fresh);
    let candidate = evidence(candidate, ctx, reuse, &args.options)?;
    let baseline = baseline
        .map(|b| evidence(b, ctx, reuse, &args.options))
        .transpose()?;
    let comparison = comparison(ctx, baseline.as_ref(), &candidate)?;
    let verdict = gate::evaluate(&comparison, &policy);

    let moved = if verdict.passed && !args.dry_run {
        let evidence = json!({
            "verdict": "pass",
            "policy": policy,
            "criteria": verdict.criteria,
            "candidate_experiment": candidate.id,
            "baseline_experiment": baseline.as_ref().map(|b| b.id.clone()),
            "dataset_hash": candidate.dataset.hash,
            "from_tag": args.from,
        });
        // A promotion that passed its gate is the sanctioned way to move a protected tag; it
        // goes ahead only while `--to` still points at the baseline the evidence is about.
        let change = TagChange {
            evidence: Some(evidence),
            action: Some(TagAction::Promote),
            expect: Expect::seen(baseline_version.as_ref().map(|t| t.version_id.as_str())),
            ..ctx.guarded_change(false, args.message.clone())?
        };
        let store = ctx.store()?;
        match store.set_tag(
            &args.prompt,
            &args.to,
            // The version the evidence is about, whatever `--from` points at by now.
            &VersionRef::Id(candidate.version_id.clone()),
            &change,
        )? {
            TagOutcome::Changed(event) => Some(event),
            TagOutcome::Unchanged(_) => None,
        }
    } else {
        None
    };

    let outcome = report::PromotionOutcome {
        prompt: &args.prompt,
        from: &args.from,
        to: &args.to,
        candidate_seq: candidate_version.seq,
        baseline_seq: baseline_version.as_ref().map(|t| t.version_seq),
        dry_run: args.dry_run,
        moved: moved.is_some(),
    };
    let mut reports = Vec::new();
    if let Some(path) = &args.markdown {
        let text = report::promotion_markdown(&outcome, &verdict, &comparison);
        reports.push((path.as_path(), text));
    }
    if let Some(path) = &args.junit {
        reports.push((path.as_path(), report::verdict_junit(&outcome, &verdict)));
    }
    write_reports(&reports, outcome.moved)?;
    if args.json {
        out_json(&report::promotion_json(&outcome, &verdict, &comparison))?;
    } else {
        out(&report::promotion_text(&outcome, &verdict, &comparison));
    }
    Ok(verdict_code(&verdict))
}

fn verdict_code(verdict: &Verdict) -> u8 {
    if verdict.passed {
        exit::OK
    } else {
        exit::CHECK_FAILED
    }
}
