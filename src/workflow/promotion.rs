//! The promotion workflow: find or make the evidence for each side (a completed experiment
//! with the same fingerprint, or a new run), compare, evaluate the gate, and move the tag only
//! while it still points at the baseline the evidence is about, recording the evidence.

use super::Context;
use super::experiment::{Prepared, launch, prepare};
use super::settings::ExperimentSettings;
use crate::compare::{Comparison, Inference, Side, compare as compare_outcomes};
use crate::engine::{Reporter, RunEvent};
use crate::error::{Error, Result};
use crate::gate::{self, Policy, Verdict};
use crate::model::RowOutcome;
use crate::model::{
    Experiment, ExperimentStatus, PromptVersion, Tag, TagAction, TagEvent, VersionRef,
};
use crate::store::{Expect, StoreError, TagChange, TagOutcome};
use crate::view::Evidence;
use std::future::Future;

/// What evidence a gate (or a comparison) takes; by default, no errored result and any
/// endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Acceptance {
    /// The share of errored results an experiment may have (`--max-error-rate`, default 0).
    pub max_error_rate: f64,
    /// Only experiments run against the same endpoint (base URL) count (`--same-endpoint`).
    pub same_endpoint: bool,
}

/// Why an experiment cannot stand as evidence, and what would fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: String,
    pub hint: String,
}

/// Why `experiment` (as people see it: see `as_seen`) cannot stand as evidence, with `stored`
/// results of its planned ones; None when it can. Broken evidence is refused, not discounted:
/// a run that stopped, failed, or whose calls errored beyond the allowance says nothing
/// reliable about the prompt.
pub fn refusal(experiment: &Experiment, stored: Option<i64>, allowed: f64) -> Option<Refusal> {
    use crate::model::ExperimentStatus as S;
    let id = &experiment.id;
    let counted = match stored {
        Some(n) => format!("{n} of {} results stored", experiment.planned),
        None => format!("{} results planned", experiment.planned),
    };
    let (reason, hint) = match experiment.status {
        S::Running => (
            format!("it is still running ({counted})"),
            format!("wait for it: runner experiment wait {id}"),
        ),
        S::Interrupted => (
            format!("it was interrupted ({counted})"),
            format!("finish it: runner experiment resume {id}"),
        ),
        S::Failed => (
            format!("it failed ({counted})"),
            "run a new one (--run on compare, or promote without --candidate-experiment)".into(),
        ),
        S::Completed | S::CompletedWithErrors if experiment.error_rate > allowed + 1e-12 => (
            format!(
                "{} of its {} results errored ({:.1}%), beyond --max-error-rate {:.1}%",
                experiment.error_count,
                experiment.planned,
                experiment.error_rate * 100.0,
                allowed * 100.0
            ),
            if super::task_experiments::run_by_your_code(experiment) {
                // runner cannot run your code's task: only your code can run the rows again.
                format!(
                    "see them: runner experiment show {id} --errored; run the experiment again \
                     from your code (run_experiment); --max-error-rate R allows a share"
                )
            } else {
                format!(
                    "see them: runner experiment show {id} --errored; once the endpoint answers, \
                     `runner experiment resume {id}` runs them again; --max-error-rate R allows a share"
                )
            },
        ),
        S::Completed | S::CompletedWithErrors => match stored {
            Some(n) if n < experiment.planned => (
                format!("it is incomplete ({counted})"),
                format!("finish it: runner experiment resume {id}"),
            ),
            _ => return None,
        },
    };
    Some(Refusal { reason, hint })
}

/// Refuses an experiment named as evidence (`--candidate-experiment`, two ids on `compare`)
/// that `refusal` would pass over: exit 2 naming it, why, and the fix.
pub fn check_named(flag: &str, experiment: &Experiment, allowed: f64) -> Result<()> {
    match refusal(experiment, None, allowed) {
        None => Ok(()),
        Some(r) => Err(Error::invalid(format!(
            "{flag} {}: not evidence a gate takes: {}",
            experiment.id, r.reason
        ))
        .with_hint(r.hint)),
    }
}

/// Refuses a named experiment whose evaluators did not judge every result: an experiment from
/// the Phoenix client gets its evaluations after its runs, and a gate taken in between would
/// rest on part of them.
pub fn check_judged(
    store: &dyn crate::store::Store,
    flag: &str,
    experiment: &Experiment,
) -> Result<()> {
    let summary = store.summary(experiment)?;
    if let Some(short) = summary
        .evaluators
        .iter()
        .find(|e| e.judged < summary.results)
    {
        return Err(Error::invalid(format!(
            "{flag} {}: not evidence a gate takes: evaluator '{}' judged {} of its {} results",
            experiment.id, short.evaluator, short.judged, summary.results
        ))
        .with_hint(
            "its evaluations are still arriving (evaluate_experiment runs after the task runs): \
             run this again once they are in",
        ));
    }
    Ok(())
}

/// The experiment that stands as evidence for a prepared run: the newest matching one that
/// `refusal` accepts, or (when running is allowed) a new one. Those passed over are named with
/// why. When running is not allowed, a missing one is an input error that says what differs
/// from the nearest stored experiment and whose hint is the command that would make one.
pub fn evidence<F: Future<Output = ()>>(
    prepared: Prepared,
    ctx: &Context,
    reuse: Reuse,
    acceptance: Acceptance,
    reporter: &dyn Reporter,
    interrupt: impl Fn() -> F,
) -> Result<Experiment> {
    let run = reuse != Reuse::Only;
    let store = ctx.store_for_reading()?;
    let mut passed_over = Vec::new();
    let mut found = None;
    if reuse != Reuse::Never {
        for (experiment, stored) in store.matching(&prepared.fingerprint)? {
            let experiment = super::experiment::as_seen(experiment);
            if acceptance.same_endpoint && experiment.base_url != prepared.settings.base_url {
                continue;
            }
            match refusal(&experiment, Some(stored), acceptance.max_error_rate) {
                None => {
                    found = Some(experiment);
                    break;
                }
                Some(why) => passed_over.push((experiment, why)),
            }
        }
    }
    let nearest = if found.is_none() && !run && passed_over.is_empty() {
        nearest_difference(&*store, &prepared, acceptance)?
    } else {
        None
    };
    drop(store);
    let label = format!(
        "{} v{}{}",
        prepared.settings.prompt,
        prepared.version.seq,
        prepared
            .tag
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default()
    );
    // Only the newest few are named (an old pile of interrupted runs is not news), and only
    // when the command goes on: a refusal below names the newest itself.
    let going_on = found.is_some() || run;
    for (experiment, why) in passed_over.iter().take(3).filter(|_| going_on) {
        reporter.report(RunEvent::Notice(format!(
            "passed over experiment {} of {label}: {}",
            experiment.id, why.reason
        )));
    }
    if let Some(mut experiment) = found {
        let elsewhere = if experiment.base_url != prepared.settings.base_url {
            format!(
                " (run against {}; --same-endpoint takes only runs against {})",
                experiment.base_url, prepared.settings.base_url
            )
        } else {
            String::new()
        };
        reporter.report(RunEvent::Notice(format!(
            "using experiment {} for {} v{}{elsewhere}",
            experiment.id, prepared.settings.prompt, prepared.version.seq
        )));
        // It stands for the tag asked about now, whichever tag it was run under: the
        // comparison's headers name that tag.
        experiment.tag = prepared.tag.clone();
        return Ok(experiment);
    }
    if !run {
        let mut command = format!(
            "runner experiment --prompt {} --version-id {} --dataset {}",
            prepared.settings.prompt,
            prepared.version.id,
            prepared.settings.dataset.display()
        );
        for spec in prepared.settings.evals.flags() {
            command.push_str(&format!(" --eval '{spec}'"));
        }
        if let Some((experiment, why)) = passed_over.first() {
            return Err(Error::invalid(format!(
                "no experiment of {label} on this dataset can stand as evidence: \
                 the newest, {}, was passed over: {}",
                experiment.id, why.reason
            ))
            .with_hint(format!("{}; or add --run to run a fresh one", why.hint)));
        }
        let mut message = format!(
            "no completed experiment of {label} on this dataset with these evaluators and model"
        );
        let mut hint = format!("add --run, or run it first: {command}");
        if let Some(nearest) = nearest {
            message.push_str(&format!("; {}", nearest.0));
            if let Some(fix) = nearest.1 {
                hint = format!("{fix}, or add --run");
            }
        }
        return Err(Error::invalid(message).with_hint(hint));
    }
    reporter.report(RunEvent::Notice(format!(
        "running {} v{} over {}",
        prepared.settings.prompt,
        prepared.version.seq,
        // A dataset from the store by its name (store:NAME@V), not the file it was read into.
        prepared
            .settings
            .dataset_label
            .clone()
            .unwrap_or_else(|| prepared.settings.dataset.display().to_string())
    )));
    let finished = launch(prepared, ctx, reporter, interrupt())?;
    let experiment = finished.experiment;
    let cost = crate::view::CostView::of(&ctx.config()?.prices(), &experiment, &finished.summary);
    reporter.report(RunEvent::Ended {
        experiment: &experiment,
        summary: &finished.summary,
        stats: &finished.stats,
        cost: cost.as_ref(),
    });
    if finished.status == ExperimentStatus::Interrupted {
        return Err(Error::interrupted(format!(
            "interrupted while running experiment {}",
            experiment.id
        ))
        .with_hint(format!(
            "`runner experiment resume {}` finishes it",
            experiment.id
        )));
    }
    // A fresh run is held to the same rule as a stored one.
    if let Some(why) = refusal(&experiment, None, acceptance.max_error_rate) {
        return Err(Error::invalid(format!(
            "experiment {} of {label} cannot stand as evidence: {}",
            experiment.id, why.reason
        ))
        .with_hint(why.hint));
    }
    Ok(experiment)
}

/// What separates the prepared run from the newest stored experiment of the same version on
/// the same dataset, as a person reads it, with a fix where one flag is the fix; None when
/// there is none to compare with.
fn nearest_difference(
    store: &dyn crate::store::Store,
    prepared: &Prepared,
    acceptance: Acceptance,
) -> Result<Option<(String, Option<String>)>> {
    let same_rows = |e: &Experiment| {
        e.version_id.as_deref() == Some(prepared.version.id.as_str())
            && e.dataset.hash == prepared.info.hash
    };
    let Some(nearest) = store
        .experiments(Some(&prepared.settings.prompt))?
        .into_iter()
        .find(same_rows)
    else {
        return Ok(Some((
            format!(
                "no experiment of v{} ran on this dataset (sha256 {})",
                prepared.version.seq,
                &prepared.info.hash[..prepared.info.hash.len().min(12)]
            ),
            None,
        )));
    };
    let mut differences: Vec<String> = Vec::new();
    let mut fix = None;
    let id = &nearest.id;
    if acceptance.same_endpoint && nearest.base_url != prepared.settings.base_url {
        differences.push(format!(
            "it ran against {} (this run: {}; --same-endpoint asks for the same)",
            nearest.base_url, prepared.settings.base_url
        ));
        fix = Some(format!(
            "pass --base-url {} or drop --same-endpoint",
            nearest.base_url
        ));
    }
    if nearest.model != prepared.model {
        differences.push(format!(
            "its model is {} (this run: {})",
            nearest.model, prepared.model
        ));
        fix = Some(format!("pass --model {}", nearest.model));
    }
    let mut theirs = nearest.evaluators.clone();
    let mut ours = prepared.specs.clone();
    theirs.sort();
    ours.sort();
    if theirs != ours {
        differences.push(format!(
            "its evaluators are {} (this run: {})",
            theirs.join(", "),
            ours.join(", ")
        ));
        let flags: Vec<String> = theirs.iter().map(|e| format!("--eval '{e}'")).collect();
        fix = Some(format!("pass {}", flags.join(" ")));
    }
    let (a, b) = (&nearest.settings, &prepared.settings.run);
    let settings = [
        ("repetitions", a.repetitions != b.repetitions),
        ("--limit", a.limit != b.limit),
        ("--var", a.vars != b.vars),
        ("--column", a.columns != b.columns),
        ("--expected-column", a.expected_column != b.expected_column),
        ("--judge-model", a.judge_model != b.judge_model),
    ];
    for (name, differs) in settings {
        if differs {
            differences.push(format!("its {name} differs"));
        }
    }
    if differences.is_empty() {
        differences.push(
            "its evaluator files (rubrics, schemas, programs) changed since, or it ran under \
             another --shard"
                .into(),
        );
    }
    if differences.len() > 1 {
        fix = None;
    }
    Ok(Some((
        format!(
            "the newest stored experiment of v{} on this dataset, {id}, differs: {}",
            prepared.version.seq,
            differences.join("; ")
        ),
        fix,
    )))
}

/// Whether stored experiments may stand as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Use a matching one; never run.
    Only,
    /// Use a matching one, or run.
    OrRun,
    /// Always run a new one.
    Never,
}

impl Reuse {
    pub fn from_flags(run: bool, fresh: bool) -> Reuse {
        match (run, fresh) {
            (_, true) => Reuse::Never,
            (true, false) => Reuse::OrRun,
            (false, false) => Reuse::Only,
        }
    }
}

/// Rows of a comparison kept with their details for a promotion's reports.
pub const PROMOTION_ROWS: usize = 10;

/// Compares two experiments' stored results, streaming both from the store in row-id order at
/// once (each on its own thread, a bounded channel between): memory stays flat however many
/// rows there are. `keep` regressed / improved / flaky rows are kept with their details.
pub fn comparison(
    ctx: &Context,
    baseline: Option<&Experiment>,
    candidate: &Experiment,
    keep: usize,
    inference: &Inference,
) -> Result<Comparison> {
    check_experiments_cluster_column(inference, baseline.into_iter().chain([candidate]))?;
    let store = ctx.store_for_reading()?;
    let summary = |e: &Experiment| store.summary(e);
    let base_summary = baseline.map(summary).transpose()?;
    let cand_summary = summary(candidate)?;
    std::thread::scope(|scope| {
        let stream = |experiment: &Experiment| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<RowOutcome>(1024);
            let store = store.clone();
            let experiment = experiment.clone();
            let column = inference.cluster_column.as_deref();
            let reader = scope.spawn(move || {
                store.visit_outcomes(&experiment, column, &mut |outcome| {
                    // The comparison stopped reading (it never does before the end): stop too.
                    tx.send(outcome).map_err(|_| StoreError::Abandoned)
                })
            });
            (rx, reader)
        };
        let (cand_rx, cand_reader) = stream(candidate);
        let base = baseline.map(stream);
        let (base_rx, base_reader) = match base {
            Some((rx, reader)) => (Some(rx), Some(reader)),
            None => (None, None),
        };
        let mut result = compare_outcomes(
            baseline
                .zip(base_rx)
                .zip(base_summary.as_ref())
                .map(|((experiment, rx), summary)| Side {
                    experiment,
                    latency_p50_ms: summary.latency_p50_ms,
                    latency_p95_ms: summary.latency_p95_ms,
                    outcomes: rx.into_iter(),
                }),
            Side {
                experiment: candidate,
                latency_p50_ms: cand_summary.latency_p50_ms,
                latency_p95_ms: cand_summary.latency_p95_ms,
                outcomes: cand_rx.into_iter(),
            },
            keep,
            inference,
        );
        // A reader that failed ended its stream early: the comparison would be of part of
        // the rows, so its error wins.
        for reader in base_reader.into_iter().chain([cand_reader]) {
            reader
                .join()
                .map_err(|_| Error::operational("reading the results failed unexpectedly"))??;
        }
        result.price(&ctx.config()?.prices());
        Ok(result)
    })
}

/// The comparison of two experiments computed in memory from both sides' verdicts (see
/// `ExperimentStore::verdicts`), with every row listed: the same figures as `comparison`,
/// several times faster on large experiments, for a page that keeps the comparison and pages
/// through its rows. Rows hold no texts: a page reads those of the rows it shows
/// (`ExperimentStore::row_texts`).
pub fn comparison_in_memory(
    ctx: &Context,
    baseline: &Experiment,
    candidate: &Experiment,
    inference: &Inference,
) -> Result<(Comparison, Vec<crate::compare::RowPair>)> {
    check_experiments_cluster_column(inference, [baseline, candidate])?;
    let store = ctx.store_for_reading()?;
    let column = inference.cluster_column.as_deref();
    let (base, cand) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| store.verdicts(baseline, column));
        let cand = store.verdicts(candidate, column);
        let base = reader
            .join()
            .map_err(|_| Error::operational("reading the results failed unexpectedly"))?;
        Ok::<_, Error>((base?, cand?))
    })?;
    let side = |experiment, outcomes: Vec<RowOutcome>| {
        let [p50, p95] = crate::store::latency_percentiles(&outcomes, [0.50, 0.95]);
        Side {
            experiment,
            latency_p50_ms: p50,
            latency_p95_ms: p95,
            outcomes: outcomes.into_iter(),
        }
    };
    let (mut result, rows) = crate::compare::compare_with_rows(
        Some(side(baseline, base)),
        side(candidate, cand),
        usize::MAX,
        inference,
    );
    result.price(&ctx.config()?.prices());
    Ok((result, rows))
}

/// [`check_cluster_column`] on the dataset of each experiment.
fn check_experiments_cluster_column<'a>(
    inference: &Inference,
    experiments: impl IntoIterator<Item = &'a Experiment>,
) -> Result<()> {
    for e in experiments {
        check_cluster_column(
            inference,
            &e.dataset.columns,
            &format!("the dataset of experiment {}", e.id),
        )?;
    }
    Ok(())
}

/// Clusters come from a dataset column: a column the dataset lacks is a mistake (exit 2), not
/// a comparison in which every row is its own cluster.
pub fn check_cluster_column(inference: &Inference, columns: &[String], what: &str) -> Result<()> {
    match &inference.cluster_column {
        Some(column) if !columns.iter().any(|c| c == column) => Err(Error::invalid(format!(
            "--cluster-column {column}: {what} has no such column"
        ))
        .with_hint(format!("its columns: {}", columns.join(", ")))),
        _ => Ok(()),
    }
}

/// Experiments named as the evidence (`--candidate-experiment`, `--baseline-experiment`),
/// instead of found by fingerprint or run.
pub struct Chosen {
    pub candidate: String,
    pub baseline: Option<String>,
}

/// Where a promotion's evidence comes from.
pub enum EvidenceFrom {
    /// Named by id; nothing runs.
    Chosen(Chosen),
    /// Found by the fingerprint of a run with these settings, or run with them (`--fresh`
    /// runs new experiments even when matching ones exist).
    Found(Box<ExperimentSettings>),
}

/// What a promotion is asked to do, checked by the caller.
pub struct PromotionRequest<'a> {
    pub evidence: EvidenceFrom,
    pub prompt: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub policy: Policy,
    /// The confidence level and clustering of the comparison's statistics.
    pub inference: Inference,
    /// Evaluate the gate, move nothing.
    pub dry_run: bool,
    pub message: Option<String>,
    /// What may stand as evidence.
    pub acceptance: Acceptance,
    /// `--eval pairwise --min-win-rate R`: a judge compares the two sides' answers too.
    pub pairwise: Option<super::pairwise::Gate>,
}

/// What a promotion decided.
pub struct Decided {
    pub comparison: Comparison,
    pub verdict: Verdict,
    /// What each pairwise judge found (none without `--eval pairwise`).
    pub pairwise: Vec<super::pairwise::Report>,
    pub candidate_seq: i64,
    pub baseline_seq: Option<i64>,
    /// The recorded tag move; None when the gate failed or on a dry run.
    pub moved: Option<TagEvent>,
}

/// The evidence found by fingerprint, or run when none is stored (or `--fresh`).
fn found_evidence<F: Future<Output = ()>>(
    ctx: &Context,
    request: &PromotionRequest<'_>,
    settings: &ExperimentSettings,
    has_baseline: bool,
    reporter: &dyn Reporter,
    interrupt: impl Fn() -> F,
) -> Result<(Experiment, Option<Experiment>)> {
    // Both sides are checked before either runs, so bad input fails before any request.
    let candidate = prepare(ctx, settings, &VersionRef::Tag(request.from.to_string()))?;
    let baseline = has_baseline
        .then(|| prepare(ctx, settings, &VersionRef::Tag(request.to.to_string())))
        .transpose()?;
    check_cluster_column(
        &request.inference,
        &candidate.info.columns,
        &candidate.settings.dataset.display().to_string(),
    )?;
    // A pairwise judge is an evaluator of the two sides together.
    if candidate.evaluators.is_empty() && request.pairwise.is_none() {
        return Err(Error::invalid(
            "the gate needs at least one evaluator, and none was given or implied",
        )
        .with_hint(
            "pass --eval SPEC (or name an expected column with --expected-column, which implies icontains)",
        ));
    }
    let reuse = Reuse::from_flags(true, settings.run.fresh);
    let acceptance = request.acceptance;
    let candidate = evidence(candidate, ctx, reuse, acceptance, reporter, &interrupt)?;
    let baseline = baseline
        .map(|b| evidence(b, ctx, reuse, acceptance, reporter, &interrupt))
        .transpose()?;
    Ok((candidate, baseline))
}

/// The evidence named by id, checked to be what the gate is about: the candidate of the
/// version `--from` points at, the baseline of the one `--to` points at, both completed, on
/// the same rows. Nothing runs.
fn chosen_evidence(
    ctx: &Context,
    request: &PromotionRequest<'_>,
    chosen: &Chosen,
    candidate_version: &PromptVersion,
    baseline_version: Option<&Tag>,
) -> Result<(Experiment, Option<Experiment>)> {
    let store = ctx.store_for_reading()?;
    let list = format!("runner experiment list --prompt {}", request.prompt);
    let baseline = match (baseline_version, &chosen.baseline) {
        (Some(tag), None) => {
            return Err(Error::invalid(format!(
                "--candidate-experiment needs --baseline-experiment: {} {} points at v{}",
                request.prompt, request.to, tag.version_seq
            ))
            .with_hint(format!(
                "name an experiment of v{} too (see `{list}`), or neither to find both by fingerprint",
                tag.version_seq
            )));
        }
        (None, Some(id)) => {
            return Err(Error::invalid(format!(
                "--baseline-experiment {id}: {} has no tag '{}', so there is no baseline",
                request.prompt, request.to
            ))
            .with_hint("drop --baseline-experiment; the gate's absolute criteria decide alone"));
        }
        (Some(tag), Some(id)) => {
            let experiment = super::experiment::as_seen(store.experiment(id)?);
            check_chosen(
                &experiment,
                request.prompt,
                "--baseline-experiment",
                &format!("--baseline {}", request.to),
                &tag.version_id,
                tag.version_seq,
                &list,
            )?;
            check_named(
                "--baseline-experiment",
                &experiment,
                request.acceptance.max_error_rate,
            )?;
            check_judged(&*store, "--baseline-experiment", &experiment)?;
            Some(experiment)
        }
        (None, None) => None,
    };
    let mut candidate = super::experiment::as_seen(store.experiment(&chosen.candidate)?);
    check_chosen(
        &candidate,
        request.prompt,
        "--candidate-experiment",
        &format!("--candidate {}", request.from),
        &candidate_version.id,
        candidate_version.seq,
        &list,
    )?;
    check_named(
        "--candidate-experiment",
        &candidate,
        request.acceptance.max_error_rate,
    )?;
    check_judged(&*store, "--candidate-experiment", &candidate)?;
    if let Some(baseline) = &baseline
        && baseline.dataset.hash != candidate.dataset.hash
    {
        return Err(Error::invalid(format!(
            "experiments {} and {} ran on different datasets ({} and {}): a gate compares the same rows",
            baseline.id, candidate.id, baseline.dataset.path, candidate.dataset.path
        ))
        .with_hint("name two experiments of the same dataset (`runner experiment show ID` shows it)"));
    }
    if candidate.evaluators.is_empty() && request.pairwise.is_none() {
        return Err(Error::invalid(format!(
            "experiment {} ran without evaluators, and the gate needs at least one",
            candidate.id
        ))
        .with_hint("plan it with --eval SPEC"));
    }
    // Each stands for the tag asked about now: the comparison's headers name it.
    candidate.tag = Some(request.from.to_string());
    let baseline = baseline.map(|mut b| {
        b.tag = Some(request.to.to_string());
        b
    });
    Ok((candidate, baseline))
}

/// An experiment named as evidence: of this prompt's version `version_id`.
fn check_chosen(
    experiment: &Experiment,
    prompt: &str,
    flag: &str,
    tag: &str,
    version_id: &str,
    version_seq: i64,
    list: &str,
) -> Result<()> {
    let (judged_prompt, judged_id, judged_seq) =
        super::judged(experiment, &format!("a gate's evidence ({flag})"))?;
    if judged_prompt != prompt || judged_id != version_id {
        return Err(Error::invalid(format!(
            "{flag} {}: it is an experiment of {judged_prompt} v{judged_seq}, but {tag} points at {prompt} v{version_seq}",
            experiment.id
        ))
        .with_hint(format!(
            "name an experiment of v{version_seq} (see `{list}`)"
        )));
    }
    Ok(())
}

/// Promotes the version `from` points at (`candidate_version`) to `to` (now at `baseline`, or
/// absent) when the gate passes on the evidence.
pub fn promote<F: Future<Output = ()>>(
    ctx: &Context,
    request: &PromotionRequest<'_>,
    candidate_version: PromptVersion,
    baseline_version: Option<Tag>,
    reporter: &dyn Reporter,
    interrupt: impl Fn() -> F,
) -> Result<Decided> {
    let (candidate, baseline) = match &request.evidence {
        EvidenceFrom::Chosen(chosen) => chosen_evidence(
            ctx,
            request,
            chosen,
            &candidate_version,
            baseline_version.as_ref(),
        )?,
        EvidenceFrom::Found(settings) => found_evidence(
            ctx,
            request,
            settings,
            baseline_version.is_some(),
            reporter,
            interrupt,
        )?,
    };
    let comparison = comparison(
        ctx,
        baseline.as_ref(),
        &candidate,
        PROMOTION_ROWS,
        &request.inference,
    )?;
    let mut verdict = gate::evaluate(&comparison, &request.policy);
    let pairwise = match (&request.pairwise, &baseline) {
        (None, _) => Vec::new(),
        (Some(_), None) => {
            return Err(Error::invalid(format!(
                "--min-win-rate compares the candidate with the baseline, and {} has no tag '{}' yet",
                request.prompt, request.to
            ))
            .with_hint("drop --eval pairwise and --min-win-rate for a first promotion"));
        }
        (Some(gate), Some(baseline)) => {
            let reports = super::pairwise::judge(
                ctx,
                &gate.specs,
                baseline,
                &candidate,
                &gate.judge,
                request.inference.confidence,
            )?;
            for report in &reports {
                verdict.add(gate::win_rate_criterion(
                    &report.evaluator,
                    &report.tally,
                    report.errors,
                    gate.min_win_rate,
                ));
            }
            reports
        }
    };

    let moved = if verdict.passed && !request.dry_run {
        let evidence = Evidence {
            verdict: "pass".into(),
            policy: request.policy.clone(),
            criteria: verdict
                .criteria
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
            candidate_experiment: candidate.id.clone(),
            baseline_experiment: baseline.as_ref().map(|b| b.id.clone()),
            dataset_hash: candidate.dataset.hash.clone(),
            from_tag: request.from.to_string(),
            candidate_error_rate: Some(comparison.candidate.error_rate),
            baseline_error_rate: comparison.baseline.as_ref().map(|b| b.error_rate),
            checks: verdict.criteria.iter().map(|c| c.name.clone()).collect(),
            notes: verdict.notes.clone(),
        };
        // A promotion that passed its gate is the sanctioned way to move a protected tag; it
        // goes ahead only while `--to` still points at the baseline the evidence is about.
        let change = TagChange {
            evidence: Some(
                serde_json::to_value(&evidence)
                    .map_err(|e| Error::operational(format!("cannot encode the evidence: {e}")))?,
            ),
            action: Some(TagAction::Promote),
            expect: Expect::seen(baseline_version.as_ref().map(|t| t.version_id.as_str())),
            ..ctx.guarded_change(false, request.message.clone())?
        };
        let store = ctx.store()?;
        if let Some(remote) = store.remote() {
            // Behind a runner server the server runs this gate again on the same stored
            // experiments and moves the tag only if it passes there: a client sends no verdict.
            let call = crate::store::remote::PromotionCall {
                prompt: request.prompt.to_string(),
                from: request.from.to_string(),
                to: request.to.to_string(),
                candidate_experiment: candidate.id.clone(),
                baseline_experiment: baseline.as_ref().map(|b| b.id.clone()),
                policy: request.policy.clone(),
                confidence: request.inference.confidence,
                cluster_column: request.inference.cluster_column.clone(),
                same_endpoint: request.acceptance.same_endpoint,
                message: request.message.clone(),
                dry_run: false,
            };
            let moved = match remote.promote(&call)? {
                Ok(answer) if answer.passed => answer.moved,
                Ok(answer) => {
                    verdict.passed = false;
                    let failed: Vec<String> = answer
                        .criteria
                        .iter()
                        .filter(|c| c["passed"] == false)
                        .filter_map(|c| c["name"].as_str().map(str::to_string))
                        .collect();
                    verdict.notes.push(format!(
                        "the server's gate at {} did not pass ({}); nothing moved",
                        remote.base(),
                        if failed.is_empty() {
                            "see its criteria".to_string()
                        } else {
                            failed.join(", ")
                        }
                    ));
                    None
                }
                Err((status, text)) => {
                    return Err(Error::invalid(format!(
                        "the server at {} refused the promotion ({status}): {text}",
                        remote.base()
                    ))
                    .with_hint("`runner experiment show ID` shows what each experiment recorded"));
                }
            };
            return Ok(Decided {
                comparison,
                verdict,
                pairwise,
                candidate_seq: candidate_version.seq,
                baseline_seq: baseline_version.as_ref().map(|t| t.version_seq),
                moved,
            });
        }
        match store.set_tag(
            request.prompt,
            request.to,
            // The version the evidence is about, whatever `--from` points at by now.
            &VersionRef::Id(
                super::judged(&candidate, "a gate's evidence")?
                    .1
                    .to_string(),
            ),
            &change,
        )? {
            TagOutcome::Changed(event) => Some(event),
            TagOutcome::Unchanged(_) => None,
        }
    } else {
        None
    };

    Ok(Decided {
        comparison,
        verdict,
        pairwise,
        candidate_seq: candidate_version.seq,
        baseline_seq: baseline_version.as_ref().map(|t| t.version_seq),
        moved,
    })
}
