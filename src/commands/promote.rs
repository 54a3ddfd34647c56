//! `runner promote`: the gate that moves a tag, with its reports (text, JSON, Markdown, JUnit). It
//! decides nothing itself: the evidence, the gate's verdict and the guarded tag move are
//! `workflow::promotion`'s, and the reports are `report`'s; this file checks the names, writes the
//! report files and prints.

use super::settings::promote_policy;
use super::{
    Context, check_prompt_name, check_tag_name, confidence, interrupted, notes_on_stderr, out,
    out_json, verdict_code,
};
use crate::cli::PromoteArgs;
use crate::compare::Inference;
use crate::error::{Error, Result, exit};
use crate::model::VersionRef;
use crate::report;
use crate::view::PromotionView;
use crate::workflow::promotion::{self, Acceptance, EvidenceFrom, PromotionRequest};
use crate::workflow::settings::ExperimentSettings;
use std::path::Path;

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

pub fn promote(mut args: PromoteArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.prompt)?;
    check_tag_name(&args.from)?;
    check_tag_name(&args.to)?;
    if args.from == args.to {
        return Err(Error::invalid(
            "--candidate and --baseline (--from and --to) name the same tag",
        ));
    }
    // `--eval pairwise[:FILE]` with `--min-win-rate`: a judge compares the two sides' answers;
    // runner.toml's [gate] may ask for it (`min_win_rate`, `pairwise_rubric`).
    let mut pairwise_specs = crate::workflow::pairwise::take_specs(&mut args.options.evals)?;
    let file = ctx
        .config()?
        .for_prompt(&args.prompt)
        .gate
        .unwrap_or_default();
    if args.min_win_rate.is_none()
        && let Some(rate) = file.min_win_rate
    {
        args.min_win_rate = Some(rate);
        if pairwise_specs.is_empty() {
            let mut spec = vec![match &file.pairwise_rubric {
                Some(path) => format!("pairwise:{path}"),
                None => "pairwise".to_string(),
            }];
            pairwise_specs = crate::workflow::pairwise::take_specs(&mut spec).map_err(|e| {
                let hint = e.hint().unwrap_or_default();
                Error::invalid(format!("{e} (from [gate] in runner.toml)")).with_hint(hint)
            })?;
        }
    }
    match (args.min_win_rate, pairwise_specs.is_empty()) {
        (Some(_), true) => {
            return Err(
                Error::invalid("--min-win-rate needs a pairwise judge").with_hint(
                    "add --eval pairwise (runner's rubric) or --eval pairwise:RUBRIC_FILE",
                ),
            );
        }
        (None, false) => {
            return Err(Error::invalid(
                "--eval pairwise in promote needs --min-win-rate R: the gate's criterion on it",
            )
            .with_hint("for example --min-win-rate 0.5 (the candidate at least as good)"));
        }
        (Some(rate), _) if !(0.0..=1.0).contains(&rate) => {
            return Err(Error::invalid(format!(
                "--min-win-rate must be between 0 and 1, got {rate}"
            )));
        }
        _ => {}
    }
    // Named experiments bring their own evaluators: only a pairwise judge (and where it is
    // asked) may be added to them.
    if args.candidate_experiment.is_some() {
        if let Some(spec) = args.options.evals.first() {
            return Err(Error::invalid(format!(
                "--eval {spec}: the named experiments were scored by their own evaluators"
            ))
            .with_hint("only --eval pairwise[:RUBRIC_FILE] (with --min-win-rate) adds to them"));
        }
        if args.options.base_url.is_some() && pairwise_specs.is_empty() {
            return Err(Error::invalid(
                "--base-url with --candidate-experiment: nothing is run but a pairwise judge",
            )
            .with_hint("drop --base-url, or add --eval pairwise with --min-win-rate"));
        }
    }
    if args.min_win_rate.is_some() && ctx.store_for_reading()?.remote().is_some() {
        return Err(Error::invalid(
            "a runner server's gate does not take a pairwise judge: it evaluates stored results only",
        )
        .with_hint(
            "compare the two with `runner compare … --eval pairwise`, and gate on the evaluators' criteria",
        ));
    }
    let policy = promote_policy(ctx.config()?, &args)?;
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

    // The run's flags are checked only where evidence is found or run, after the tags: a
    // promotion with nothing to do needs none of them.
    let evidence = match &args.candidate_experiment {
        Some(candidate) => EvidenceFrom::Chosen(promotion::Chosen {
            candidate: candidate.clone(),
            baseline: args.baseline_experiment.clone(),
        }),
        None => EvidenceFrom::Found(Box::new(ExperimentSettings::new(
            ctx.config()?,
            &args.prompt,
            args.dataset.as_deref(),
            &args.options,
        )?)),
    };
    let acceptance = Acceptance {
        max_error_rate: policy.error_allowance(),
        same_endpoint: args.same_endpoint,
    };
    let pairwise = match args.min_win_rate {
        None => None,
        Some(rate) => Some(crate::workflow::pairwise::Gate {
            specs: pairwise_specs,
            judge: super::settings::pairwise_judge(&args.options, ctx, &args.prompt)?,
            min_win_rate: rate,
        }),
    };
    let request = PromotionRequest {
        pairwise,
        evidence,
        prompt: &args.prompt,
        from: &args.from,
        to: &args.to,
        policy,
        inference: inference.clone(),
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
        let mut json = report::promotion_json(&view);
        if let (false, serde_json::Value::Object(map)) = (decided.pairwise.is_empty(), &mut json) {
            map.insert(
                "pairwise".into(),
                serde_json::to_value(&decided.pairwise)
                    .map_err(|e| Error::operational(e.to_string()))?,
            );
        }
        out_json(&json)?;
    } else {
        out(&report::promotion_text(&view));
        for pairwise in &decided.pairwise {
            out(&report::pairwise_text(pairwise, 10));
        }
    }
    Ok(verdict_code(&decided.verdict))
}
