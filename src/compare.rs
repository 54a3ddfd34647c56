//! Comparison: a pure function from two experiments' row outcomes to metrics side by side,
//! per-evaluator deltas, and the rows that regressed, improved, or exist on one side only.

use crate::model::{Experiment, RowOutcome};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One evaluator's figures on one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalMetric {
    pub evaluator: String,
    /// Share of rows that pass (a row passes when it passes in a majority of its repetitions;
    /// an errored call is a failure).
    pub pass_rate: f64,
    pub mean_score: f64,
}

/// The figures of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideMetrics {
    pub experiment: String,
    pub label: String,
    pub rows: usize,
    pub results: usize,
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub evaluators: Vec<EvalMetric>,
}

/// What one evaluator made of one row on one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowSide {
    pub passed: bool,
    pub score: f64,
    /// Share of repetitions agreeing with the majority (1.0 without repetitions).
    pub agreement: f64,
    pub output: String,
}

/// A row whose verdict changed between the sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowChange {
    pub row_id: String,
    pub evaluator: String,
    pub input: String,
    pub baseline: RowSide,
    pub candidate: RowSide,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalDelta {
    pub evaluator: String,
    pub baseline_pass_rate: Option<f64>,
    pub candidate_pass_rate: f64,
    /// candidate − baseline.
    pub delta: Option<f64>,
    pub baseline_mean_score: Option<f64>,
    pub candidate_mean_score: f64,
    pub improved: usize,
    pub regressed: usize,
    pub unchanged: usize,
}

/// A row whose repetitions disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlakyRow {
    pub row_id: String,
    pub evaluator: String,
    pub side: String,
    pub agreement: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub baseline: Option<SideMetrics>,
    pub candidate: SideMetrics,
    pub evaluators: Vec<EvalDelta>,
    /// Every regressed (row, evaluator), in row order.
    pub regressed: Vec<RowChange>,
    pub improved: Vec<RowChange>,
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
    pub flaky: Vec<FlakyRow>,
    /// Rows that pass every evaluator on the baseline but fail one on the candidate, or are
    /// missing from it.
    pub new_failures: Vec<String>,
}

/// One row of one side, repetitions folded.
struct RowVerdicts {
    input: String,
    /// The call answered in a majority of the repetitions.
    ok: bool,
    /// Per evaluator, in experiment order.
    verdicts: Vec<RowSide>,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[rank])
}

fn label(e: &Experiment) -> String {
    match &e.tag {
        Some(tag) => format!("{} v{} ({tag})", e.prompt, e.version_seq),
        None => format!("{} v{}", e.prompt, e.version_seq),
    }
}

/// Folds repetitions into one verdict per row and evaluator, and computes the side's figures.
fn fold(e: &Experiment, outcomes: &[RowOutcome]) -> (SideMetrics, BTreeMap<String, RowVerdicts>) {
    let evaluators = &e.evaluators;
    let index: HashMap<&str, usize> = evaluators
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    // row id → (input, output, per evaluator: passes, total, score sum, (answered, repetitions))
    type Tally = (String, String, Vec<(usize, usize, f64)>, (usize, usize));
    let mut rows: BTreeMap<String, Tally> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(outcomes.len());
    let (mut errors, mut tokens_in, mut tokens_out) = (0usize, 0i64, 0i64);
    for o in outcomes {
        if o.ok {
            latencies.push(o.latency_ms);
        } else {
            errors += 1;
        }
        tokens_in += o.prompt_tokens;
        tokens_out += o.completion_tokens;
        let entry = rows.entry(o.row_id.clone()).or_insert_with(|| {
            (
                o.input.clone(),
                o.output.clone(),
                vec![(0, 0, 0.0); evaluators.len()],
                (0, 0),
            )
        });
        entry.3.0 += usize::from(o.ok);
        entry.3.1 += 1;
        for (name, pass, score) in &o.scores {
            if let Some(&i) = index.get(name.as_str()) {
                let slot = &mut entry.2[i];
                slot.0 += usize::from(*pass);
                slot.1 += 1;
                slot.2 += score;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let folded: BTreeMap<String, RowVerdicts> = rows
        .into_iter()
        .map(|(id, (input, output, counts, (answered, repetitions)))| {
            let verdicts = counts
                .into_iter()
                .map(|(passes, total, sum)| {
                    let total = total.max(1);
                    let passed = passes * 2 > total;
                    let majority = if passed { passes } else { total - passes };
                    RowSide {
                        passed,
                        score: sum / total as f64,
                        agreement: majority as f64 / total as f64,
                        output: output.clone(),
                    }
                })
                .collect();
            let ok = answered * 2 > repetitions;
            (
                id,
                RowVerdicts {
                    input,
                    ok,
                    verdicts,
                },
            )
        })
        .collect();
    let n = folded.len().max(1) as f64;
    let metrics = SideMetrics {
        experiment: e.id.clone(),
        label: label(e),
        rows: folded.len(),
        results: outcomes.len(),
        error_rate: if outcomes.is_empty() {
            0.0
        } else {
            errors as f64 / outcomes.len() as f64
        },
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p95_ms: percentile(&latencies, 0.95),
        tokens_in,
        tokens_out,
        evaluators: evaluators
            .iter()
            .enumerate()
            .map(|(i, name)| EvalMetric {
                evaluator: name.clone(),
                pass_rate: folded.values().filter(|r| r.verdicts[i].passed).count() as f64 / n,
                mean_score: folded.values().map(|r| r.verdicts[i].score).sum::<f64>() / n,
            })
            .collect(),
    };
    (metrics, folded)
}

fn flaky_rows(side: &str, e: &Experiment, rows: &BTreeMap<String, RowVerdicts>) -> Vec<FlakyRow> {
    let mut flaky = Vec::new();
    for (id, row) in rows {
        for (name, verdict) in e.evaluators.iter().zip(&row.verdicts) {
            if verdict.agreement < 1.0 {
                flaky.push(FlakyRow {
                    row_id: id.clone(),
                    evaluator: name.clone(),
                    side: side.to_string(),
                    agreement: verdict.agreement,
                });
            }
        }
    }
    flaky
}

/// Compares a candidate with a baseline (or describes the candidate alone when there is none).
/// Rows are matched by row id; evaluators by name, over those the candidate ran.
pub fn compare(
    baseline: Option<(&Experiment, &[RowOutcome])>,
    candidate: (&Experiment, &[RowOutcome]),
) -> Comparison {
    let (cand_exp, cand_outcomes) = candidate;
    let (cand_metrics, cand_rows) = fold(cand_exp, cand_outcomes);
    let mut flaky = flaky_rows("candidate", cand_exp, &cand_rows);
    let Some((base_exp, base_outcomes)) = baseline else {
        return Comparison {
            baseline: None,
            evaluators: cand_metrics
                .evaluators
                .iter()
                .map(|m| EvalDelta {
                    evaluator: m.evaluator.clone(),
                    baseline_pass_rate: None,
                    candidate_pass_rate: m.pass_rate,
                    delta: None,
                    baseline_mean_score: None,
                    candidate_mean_score: m.mean_score,
                    improved: 0,
                    regressed: 0,
                    unchanged: 0,
                })
                .collect(),
            candidate: cand_metrics,
            regressed: Vec::new(),
            improved: Vec::new(),
            only_in_baseline: Vec::new(),
            only_in_candidate: Vec::new(),
            flaky,
            new_failures: Vec::new(),
        };
    };
    let (base_metrics, base_rows) = fold(base_exp, base_outcomes);
    flaky.extend(flaky_rows("baseline", base_exp, &base_rows));

    let mut evaluators = Vec::new();
    let mut regressed = Vec::new();
    let mut improved = Vec::new();
    let mut new_failures = std::collections::BTreeSet::new();
    for (ci, name) in cand_exp.evaluators.iter().enumerate() {
        let bi = base_exp.evaluators.iter().position(|b| b == name);
        let (mut up, mut down, mut same) = (0, 0, 0);
        if let Some(bi) = bi {
            for (id, cand) in &cand_rows {
                let Some(base) = base_rows.get(id) else {
                    continue;
                };
                let (b, c) = (&base.verdicts[bi], &cand.verdicts[ci]);
                let change = || RowChange {
                    row_id: id.clone(),
                    evaluator: name.clone(),
                    input: cand.input.clone(),
                    baseline: b.clone(),
                    candidate: c.clone(),
                };
                match (b.passed, c.passed) {
                    (true, false) => {
                        down += 1;
                        regressed.push(change());
                    }
                    (false, true) => {
                        up += 1;
                        improved.push(change());
                    }
                    _ => same += 1,
                }
            }
        }
        let cand_metric = &cand_metrics.evaluators[ci];
        let base_metric = bi.map(|bi| &base_metrics.evaluators[bi]);
        evaluators.push(EvalDelta {
            evaluator: name.clone(),
            baseline_pass_rate: base_metric.map(|m| m.pass_rate),
            candidate_pass_rate: cand_metric.pass_rate,
            delta: base_metric.map(|m| cand_metric.pass_rate - m.pass_rate),
            baseline_mean_score: base_metric.map(|m| m.mean_score),
            candidate_mean_score: cand_metric.mean_score,
            improved: up,
            regressed: down,
            unchanged: same,
        });
    }
    // A new failure: the row passed everything on the baseline (its call answered and every
    // evaluator passed) and does not on the candidate. Comparing the call too means an errored
    // candidate row fails even when no evaluator ran.
    let passes_all = |row: &RowVerdicts| row.ok && row.verdicts.iter().all(|v| v.passed);
    for (id, cand) in &cand_rows {
        if let Some(base) = base_rows.get(id)
            && passes_all(base)
            && !passes_all(cand)
        {
            new_failures.insert(id.clone());
        }
    }
    let only_in_baseline: Vec<String> = base_rows
        .keys()
        .filter(|id| !cand_rows.contains_key(*id))
        .cloned()
        .collect();
    // A row that passed everything on the baseline and has no result on the candidate is a
    // failure too: missing evidence never counts in the candidate's favour.
    for id in &only_in_baseline {
        if passes_all(&base_rows[id]) {
            new_failures.insert(id.clone());
        }
    }
    let only_in_candidate = cand_rows
        .keys()
        .filter(|id| !base_rows.contains_key(*id))
        .cloned()
        .collect();
    Comparison {
        baseline: Some(base_metrics),
        candidate: cand_metrics,
        evaluators,
        regressed,
        improved,
        only_in_baseline,
        only_in_candidate,
        flaky,
        new_failures: new_failures.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DatasetRef, ExperimentStatus, JsonObject, RunSettings};

    fn experiment(id: &str, evaluators: &[&str]) -> Experiment {
        Experiment {
            id: id.into(),
            name: None,
            prompt: "p".into(),
            version_id: format!("v-{id}"),
            version_seq: 1,
            tag: None,
            dataset: DatasetRef {
                path: "d.csv".into(),
                hash: "h".into(),
                rows: 3,
                columns: vec![],
            },
            model: "m".into(),
            base_url: "http://x".into(),
            evaluators: evaluators.iter().map(|s| s.to_string()).collect(),
            settings: RunSettings {
                concurrency: 1,
                repetitions: 1,
                limit: None,
                timeout_secs: 1.0,
                max_retries: 0,
                vars: JsonObject::new(),
                columns: vec![],
                expected_column: None,
                no_cache: false,
                judge_model: None,
            },
            planned: 3,
            status: ExperimentStatus::Completed,
            author: "a".into(),
            created_at: "t".into(),
            finished_at: None,
            wall_ms: 0,
        }
    }

    fn outcome(row: &str, rep: i64, ok: bool, latency: f64, pass: bool) -> RowOutcome {
        RowOutcome {
            row_id: row.into(),
            repetition: rep,
            ok,
            latency_ms: latency,
            prompt_tokens: 2,
            completion_tokens: 3,
            output: format!("out {row}"),
            input: format!("in {row}"),
            scores: vec![("e".into(), pass && ok, if pass && ok { 1.0 } else { 0.0 })],
        }
    }

    #[test]
    fn regressions_improvements_and_one_sided_rows() {
        let base = experiment("b", &["e"]);
        let cand = experiment("c", &["e"]);
        let base_rows = vec![
            outcome("1", 0, true, 10.0, true),
            outcome("2", 0, true, 20.0, false),
            outcome("3", 0, true, 30.0, true),
            outcome("4", 0, true, 40.0, true),
        ];
        let cand_rows = vec![
            outcome("1", 0, true, 10.0, false),
            outcome("2", 0, true, 20.0, true),
            outcome("3", 0, false, 0.0, true),
            outcome("5", 0, true, 50.0, true),
        ];
        let c = compare(Some((&base, &base_rows)), (&cand, &cand_rows));
        assert_eq!(
            c.regressed
                .iter()
                .map(|r| r.row_id.as_str())
                .collect::<Vec<_>>(),
            vec!["1", "3"]
        );
        assert_eq!(c.improved.len(), 1);
        assert_eq!(c.improved[0].row_id, "2");
        assert_eq!(c.only_in_baseline, vec!["4"]);
        assert_eq!(c.only_in_candidate, vec!["5"]);
        // Row 3 errored: a failure. Row 4 is missing: a failure too.
        assert_eq!(c.new_failures, vec!["1", "3", "4"]);
        let d = &c.evaluators[0];
        assert_eq!((d.improved, d.regressed, d.unchanged), (1, 2, 0));
        assert_eq!(d.baseline_pass_rate, Some(0.75));
        assert_eq!(d.candidate_pass_rate, 0.5);
        assert_eq!(d.delta, Some(-0.25));
        assert_eq!(c.candidate.error_rate, 0.25);
        assert_eq!(c.candidate.latency_p50_ms, Some(20.0));
        assert_eq!(c.baseline.as_ref().unwrap().latency_p95_ms, Some(40.0));
        assert_eq!(c.candidate.tokens_in, 8);
    }

    #[test]
    fn repetitions_fold_by_majority_and_report_flaky_rows() {
        let mut cand = experiment("c", &["e"]);
        cand.settings.repetitions = 3;
        let rows = vec![
            outcome("1", 0, true, 1.0, true),
            outcome("1", 1, true, 1.0, true),
            outcome("1", 2, true, 1.0, false),
            outcome("2", 0, true, 1.0, false),
            outcome("2", 1, true, 1.0, false),
            outcome("2", 2, true, 1.0, false),
        ];
        let c = compare(None, (&cand, &rows));
        assert_eq!(c.candidate.rows, 2);
        assert_eq!(c.candidate.results, 6);
        assert_eq!(c.candidate.evaluators[0].pass_rate, 0.5);
        assert_eq!(c.flaky.len(), 1);
        assert_eq!(c.flaky[0].row_id, "1");
        assert!((c.flaky[0].agreement - 2.0 / 3.0).abs() < 1e-9);
        assert!(c.baseline.is_none());
        assert!(c.new_failures.is_empty());
    }

    #[test]
    fn an_errored_row_is_a_new_failure_even_without_evaluators() {
        let base = experiment("b", &[]);
        let cand = experiment("c", &[]);
        let base_rows = vec![
            outcome("1", 0, true, 1.0, true),
            outcome("2", 0, false, 1.0, true),
        ];
        let cand_rows = vec![
            outcome("1", 0, false, 1.0, true),
            outcome("2", 0, false, 1.0, true),
        ];
        let c = compare(Some((&base, &base_rows)), (&cand, &cand_rows));
        assert_eq!(c.new_failures, vec!["1"]);
    }

    #[test]
    fn an_even_split_is_not_a_majority() {
        let mut cand = experiment("c", &["e"]);
        cand.settings.repetitions = 2;
        let rows = vec![
            outcome("1", 0, true, 1.0, true),
            outcome("1", 1, true, 1.0, false),
        ];
        let c = compare(None, (&cand, &rows));
        assert_eq!(c.candidate.evaluators[0].pass_rate, 0.0);
    }
}
