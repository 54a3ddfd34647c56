//! `runner compare`: two experiments side by side, row by row, with the statistics, and the
//! gate's relative criteria when asked for. It computes nothing itself: the evidence and the
//! comparison are `workflow::promotion`'s, the verdict `gate`'s and the tables `report`'s.

use super::settings::compare_policy;
use super::{
    Context, check_prompt_name, check_tag_name, confidence, interrupted, notes_on_stderr, out,
    out_json, verdict_code,
};
use crate::cli::CompareArgs;
use crate::compare::Inference;
use crate::error::{Error, Result, exit};
use crate::model::VersionRef;
use crate::report;
use crate::workflow::experiment::{as_seen, prepare};
use crate::workflow::promotion::{
    Acceptance, Reuse, check_cluster_column, check_judged, check_named, comparison, evidence,
};
use crate::workflow::settings::ExperimentSettings;

pub fn compare(mut args: CompareArgs, ctx: &Context) -> Result<u8> {
    // `--eval pairwise[:FILE]` judges the two sides against each other; the rest are the
    // experiments' own evaluators.
    let pairwise_specs = crate::workflow::pairwise::take_specs(&mut args.options.evals)?;
    if args.min_win_rate.is_some() && pairwise_specs.is_empty() {
        return Err(Error::invalid("--min-win-rate needs a pairwise judge")
            .with_hint("add --eval pairwise (runner's rubric) or --eval pairwise:RUBRIC_FILE"));
    }
    if let Some(rate) = args.min_win_rate
        && !(0.0..=1.0).contains(&rate)
    {
        return Err(Error::invalid(format!(
            "--min-win-rate must be between 0 and 1, got {rate}"
        )));
    }
    let inference = Inference {
        confidence: confidence(args.confidence, ctx)?,
        cluster_column: args.cluster_column.clone(),
    };
    // The gate's criteria on compare: only those asked for, checked before anything runs.
    let policy = compare_policy(&args)?;
    let gated = policy.has_relative();
    let acceptance = Acceptance {
        max_error_rate: policy.error_allowance(),
        same_endpoint: args.same_endpoint,
    };
    // The named form of the two ids, as a pipeline script spells them.
    let named: Vec<String> = args
        .baseline_experiment
        .iter()
        .chain(&args.candidate_experiment)
        .cloned()
        .collect();
    let ids = if named.is_empty() {
        args.experiments.as_slice()
    } else {
        named.as_slice()
    };
    let (baseline, candidate) = match ids {
        [a, b] => {
            if args.prompt.is_some() || !args.tags.is_empty() || args.baseline.is_some() {
                return Err(Error::invalid(
                    "compare takes two experiment ids, or --prompt with --baseline and --candidate, not both",
                ));
            }
            let store = ctx.store_for_reading()?;
            let (baseline, candidate) =
                (as_seen(store.experiment(a)?), as_seen(store.experiment(b)?));
            check_named("baseline", &baseline, acceptance.max_error_rate)?;
            check_named("candidate", &candidate, acceptance.max_error_rate)?;
            check_judged(&*store, "baseline", &baseline)?;
            check_judged(&*store, "candidate", &candidate)?;
            (baseline, candidate)
        }
        [_] => {
            return Err(Error::invalid("compare needs two experiment ids")
                .with_hint("runner compare BASELINE_ID CANDIDATE_ID"));
        }
        _ => {
            let prompt = args.prompt.clone().ok_or_else(|| {
                Error::invalid(
                    "compare needs --prompt NAME --baseline TAG --candidate TAG, or two experiment ids",
                )
                .with_hint(
                    "runner compare --prompt NAME --baseline production --candidate staging --dataset FILE",
                )
            })?;
            check_prompt_name(&prompt)?;
            let sides: Vec<String> = match (&args.baseline, &args.candidate) {
                (Some(baseline), Some(candidate)) => vec![baseline.clone(), candidate.clone()],
                _ => args.tags.clone(),
            };
            let [base_tag, cand_tag] = sides.as_slice() else {
                return Err(Error::invalid(
                    "compare needs two tags: --baseline TAG --candidate TAG",
                )
                .with_hint("for example --baseline production --candidate staging"));
            };
            check_tag_name(base_tag)?;
            check_tag_name(cand_tag)?;
            let settings = ExperimentSettings::new(
                ctx.config()?,
                &prompt,
                args.dataset.as_deref(),
                &args.options,
            )?;
            let side = |tag: &String| prepare(ctx, &settings, &VersionRef::Tag(tag.clone()));
            // Both sides are checked before either runs.
            let (base, cand) = (side(base_tag)?, side(cand_tag)?);
            for prepared in [&base, &cand] {
                check_cluster_column(
                    &inference,
                    &prepared.info.columns,
                    &prepared.settings.dataset.display().to_string(),
                )?;
            }
            let reuse = Reuse::from_flags(args.run, settings.run.fresh);
            let terminal = report::Terminal::new(inference.confidence);
            let find =
                |prepared| evidence(prepared, ctx, reuse, acceptance, &terminal, interrupted);
            (find(base)?, find(cand)?)
        }
    };
    let result = comparison(ctx, Some(&baseline), &candidate, args.rows, &inference)?;
    if !result.same_dataset() {
        crate::note!(
            "warning: {} and {} ran on different datasets ({} vs {}): rows are matched by id, \
             and no gate accepts such a comparison",
            baseline.id,
            candidate.id,
            baseline.dataset.path,
            candidate.dataset.path
        );
    }
    let pairwise = if pairwise_specs.is_empty() {
        Vec::new()
    } else {
        let judge = super::settings::pairwise_judge(
            &args.options,
            ctx,
            candidate.prompt.as_deref().unwrap_or_default(),
        )?;
        crate::workflow::pairwise::judge(
            ctx,
            &pairwise_specs,
            &baseline,
            &candidate,
            &judge,
            inference.confidence,
        )?
    };
    let mut verdict =
        (gated || args.min_win_rate.is_some()).then(|| crate::gate::evaluate(&result, &policy));
    if let (Some(verdict), Some(rate)) = (verdict.as_mut(), args.min_win_rate) {
        for report in &pairwise {
            verdict.add(crate::gate::win_rate_criterion(
                &report.evaluator,
                &report.tally,
                report.errors,
                rate,
            ));
        }
    }
    if let Some(verdict) = verdict.as_ref().filter(|_| args.json) {
        notes_on_stderr(verdict);
    }
    let production = match &args.production {
        None => None,
        Some(since) => {
            let doing = "compared with production traffic (--production)";
            let (prompt, candidate_id, _) = crate::workflow::judged(&candidate, doing)?;
            let (_, baseline_id, _) = crate::workflow::judged(&baseline, doing)?;
            Some(super::production::beside(
                ctx,
                prompt,
                [&baseline_id.to_string(), &candidate_id.to_string()],
                since,
                inference.confidence,
            )?)
        }
    };
    if args.json {
        let mut json = report::comparison_json(&result, args.rows);
        if let (Some(verdict), serde_json::Value::Object(map)) = (&verdict, &mut json) {
            map.insert(
                "gate".into(),
                serde_json::to_value(verdict).map_err(|e| Error::operational(e.to_string()))?,
            );
        }
        if let (false, serde_json::Value::Object(map)) = (pairwise.is_empty(), &mut json) {
            map.insert(
                "pairwise".into(),
                serde_json::to_value(&pairwise).map_err(|e| Error::operational(e.to_string()))?,
            );
        }
        if let (Some(production), serde_json::Value::Object(map)) = (&production, &mut json) {
            map.insert(
                "production".into(),
                serde_json::to_value(production).map_err(|e| Error::operational(e.to_string()))?,
            );
        }
        out_json(&json)?;
    } else if args.markdown {
        out(&report::comparison_markdown_gated(
            &result,
            verdict.as_ref(),
            args.rows,
        ));
    } else {
        out(&report::comparison_text_gated(
            &result,
            verdict.as_ref(),
            args.rows,
        ));
    }
    if !args.json {
        for report in &pairwise {
            out(&report::pairwise_text(report, args.rows));
        }
    }
    if let Some(production) = production.as_ref().filter(|_| !args.json) {
        out(&report::beside_text(production));
    }
    Ok(verdict.as_ref().map_or(exit::OK, verdict_code))
}
