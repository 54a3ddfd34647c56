//! `runner experiment plan`: how many rows (and repetitions) an experiment needs to detect a
//! difference with 80% power, from an earlier experiment's variance or the worst case. Sends
//! nothing.

use super::confidence;
use super::{Context, out, out_json, version_ref};
use crate::cli::ExperimentPlanArgs;
use crate::compare::Inference;
use crate::error::{Error, Result};
use crate::report::{self, confidence_text};
use crate::stats::{self, PlanLine};
use crate::workflow::experiment::prepare;
use crate::workflow::promotion::comparison;
use crate::workflow::settings::ExperimentSettings;
use serde::Serialize;

/// Where the variance came from.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
enum Source {
    /// No experiment: pass rates of 50% on both sides, rows uncorrelated (variance 0.5 a row).
    WorstCase,
    /// One experiment's rows, the two versions' rows taken as uncorrelated.
    Experiment { id: String, label: String },
    /// Two experiments' paired per-row differences.
    Paired { baseline: String, candidate: String },
}

/// One evaluator's plan: its variance and the rows needed at several repetitions.
#[derive(Debug, Serialize)]
struct EvaluatorPlan {
    evaluator: String,
    /// Between-row and within-row variance of one version's row pass share (one experiment).
    between_variance: Option<f64>,
    within_variance: Option<f64>,
    lines: Vec<PlanLine>,
}

#[derive(Debug, Serialize)]
struct Plan {
    prompt: String,
    version: i64,
    tag: Option<String>,
    dataset: String,
    dataset_rows: usize,
    detect: f64,
    confidence: f64,
    power: f64,
    source: Source,
    evaluators: Vec<EvaluatorPlan>,
}

/// Answers a row the plan is worked out for when repetitions are known to help.
const REPETITIONS: [u32; 5] = [1, 2, 3, 5, 10];

pub fn plan(args: ExperimentPlanArgs, ctx: &Context) -> Result<()> {
    if !(args.detect > 0.0 && args.detect <= 1.0) {
        return Err(Error::invalid(format!(
            "--detect {} is out of range: give the difference to detect as a fraction above 0 and at most 1",
            args.detect
        ))
        .with_hint("--detect 0.05 means 5 points of pass rate"));
    }
    if args.experiments.len() > 2 {
        return Err(Error::invalid(
            "plan takes at most two --experiment: one experiment, or a baseline and a candidate",
        ));
    }
    let confidence = confidence(args.confidence, ctx)?;
    let reference = version_ref(&args.selector)?;
    // Everything an experiment would check (version, dataset, variables, evaluators) is checked
    // here too, so a plan never promises a run that would be refused.
    let settings = ExperimentSettings::new(
        ctx.config()?,
        &args.prompt,
        args.dataset.as_deref(),
        &args.options,
    )?;
    let prepared = prepare(ctx, &settings, &reference)?;
    let rows = match prepared.settings.run.limit {
        Some(limit) => prepared.info.rows.min(limit),
        None => prepared.info.rows,
    };
    let line = |variance: f64, k: u32| stats::plan_line(variance, k, rows, args.detect, confidence);
    let store = ctx.store_for_reading()?;
    let (source, evaluators) = match args.experiments.as_slice() {
        [] => {
            let names = if prepared.specs.is_empty() {
                vec!["pass rate".to_string()]
            } else {
                prepared.specs.clone()
            };
            let evaluators = names
                .into_iter()
                .map(|evaluator| EvaluatorPlan {
                    evaluator,
                    between_variance: None,
                    within_variance: None,
                    lines: vec![line(0.5, 1)],
                })
                .collect();
            (Source::WorstCase, evaluators)
        }
        [id] => {
            let experiment = store.experiment(id)?;
            let summary = store.summary(&experiment)?;
            let mut evaluators = Vec::new();
            for e in &summary.evaluators {
                let spread = &e.spread;
                let n = spread.rows.max(0) as u64;
                let Some(observed) =
                    stats::Moments::from_sums(n, spread.pass.sum, spread.pass.sum_sq).variance()
                else {
                    return Err(Error::invalid(format!(
                        "experiment {} has {n} row(s) for {}: a variance needs at least 2",
                        experiment.id, e.evaluator
                    )));
                };
                let k = if n > 0 {
                    spread.answers as f64 / n as f64
                } else {
                    1.0
                };
                let within = spread.pass.within / n as f64;
                // The row means' variance holds a within-row part shrunk by the repetitions.
                let between = (observed - within / k).max(0.0);
                let ks: Vec<u32> = if within > 0.0 {
                    REPETITIONS.to_vec()
                } else {
                    vec![1]
                };
                evaluators.push(EvaluatorPlan {
                    evaluator: e.evaluator.clone(),
                    between_variance: Some(between),
                    within_variance: Some(within),
                    lines: ks
                        .into_iter()
                        .map(|k| line(stats::paired_variance_from_one(between, within, k), k))
                        .collect(),
                });
            }
            let label = experiment.label();
            (
                Source::Experiment {
                    id: experiment.id,
                    label,
                },
                evaluators,
            )
        }
        [a, b] => {
            let (baseline, candidate) = (store.experiment(a)?, store.experiment(b)?);
            drop(store);
            let inference = Inference {
                confidence,
                cluster_column: None,
            };
            let c = comparison(ctx, Some(&baseline), &candidate, 0, &inference)?;
            let k = candidate.settings.repetitions.max(1) as u32;
            let mut evaluators = Vec::new();
            for e in &c.evaluators {
                let Some(d) = &e.pass_rate_difference else {
                    continue;
                };
                let variance = d.se * d.se * d.rows as f64;
                evaluators.push(EvaluatorPlan {
                    evaluator: e.evaluator.clone(),
                    between_variance: None,
                    within_variance: None,
                    lines: vec![line(variance, k)],
                });
            }
            if evaluators.is_empty() {
                return Err(Error::invalid(format!(
                    "experiments {} and {} share no evaluator with at least 2 rows on both sides",
                    baseline.id, candidate.id
                )));
            }
            (
                Source::Paired {
                    baseline: baseline.id,
                    candidate: candidate.id,
                },
                evaluators,
            )
        }
        _ => unreachable!("at most two experiments, checked above"),
    };
    let plan = Plan {
        prompt: prepared.settings.prompt.clone(),
        version: prepared.version.seq,
        tag: prepared.tag.clone(),
        dataset: prepared.settings.dataset.display().to_string(),
        dataset_rows: rows,
        detect: args.detect,
        confidence,
        power: stats::POWER,
        source,
        evaluators,
    };
    if args.json {
        out_json(&plan)
    } else {
        out(&plan_text(&plan));
        crate::note!("nothing was sent: a plan only reads the dataset and the store");
        Ok(())
    }
}

fn plan_text(plan: &Plan) -> String {
    let level = confidence_text(plan.confidence);
    let mut text = format!(
        "plan: {} v{}{} over {} ({} rows): detect {:.1} pts of pass rate with {:.0}% power at {level} confidence\n",
        plan.prompt,
        plan.version,
        plan.tag
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default(),
        plan.dataset,
        plan.dataset_rows,
        plan.detect * 100.0,
        plan.power * 100.0,
    );
    text.push_str(&match &plan.source {
        Source::WorstCase => "variance: the worst case (pass rates of 50%, the two versions' rows uncorrelated); --experiment ID gives a closer figure\n".to_string(),
        Source::Experiment { id, label } => format!(
            "variance: experiment {id} ({label}), the two versions' rows taken as uncorrelated (paired rows that agree need fewer)\n"
        ),
        Source::Paired { baseline, candidate } => format!(
            "variance: the paired differences of experiments {baseline} and {candidate}\n"
        ),
    });
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for e in &plan.evaluators {
        for l in &e.lines {
            rows.push(vec![
                e.evaluator.clone(),
                l.repetitions.to_string(),
                l.rows_needed
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                format!("{:.1} pts", l.detectable_with_dataset * 100.0),
            ]);
        }
        let enough = e.lines.iter().find(|l| {
            l.rows_needed
                .is_some_and(|n| n as usize <= plan.dataset_rows)
        });
        verdicts.push(match (enough, e.lines.last()) {
            (Some(l), _) => format!(
                "{}: the dataset's {} rows are enough with {} answer(s) a row",
                e.evaluator, plan.dataset_rows, l.repetitions
            ),
            (None, Some(best)) => format!(
                "{}: the dataset's {} rows are too few; at least {} rows{} are needed",
                e.evaluator,
                plan.dataset_rows,
                best.rows_needed.unwrap_or(0),
                if best.repetitions > 1 {
                    format!(" with {} answers a row", best.repetitions)
                } else {
                    String::new()
                }
            ),
            (None, None) => format!("{}: no plan", e.evaluator),
        });
    }
    text.push_str(&report::aligned_table(
        Some(vec![
            "evaluator".into(),
            "answers a row".into(),
            "rows needed".into(),
            format!("this dataset's {} rows detect", plan.dataset_rows),
        ]),
        rows,
    ));
    text.push('\n');
    text.push_str(&verdicts.join("\n"));
    text
}
