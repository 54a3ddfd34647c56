//! The promotion gate: a pure function from a comparison and a policy to a verdict, each
//! criterion with its numbers. It must not read the store, compute the comparison (that is
//! `compare`'s) or move a tag: what a verdict leads to is the promotion workflow's.

use crate::compare::{Comparison, SideMetrics};
use serde::{Deserialize, Serialize};

/// What the candidate must show. Relative criteria need a baseline; without one (the target
/// tag does not exist yet) the absolute criteria alone decide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub min_pass_rate: Option<f64>,
    pub max_regression: Option<f64>,
    pub no_new_failures: bool,
    pub max_error_rate: Option<f64>,
    pub max_p95_latency_ms: Option<f64>,
    /// The lower bound of the pass rate's paired difference must be at least −D.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_inferior: Option<f64>,
    /// The lower bound of the pass rate's paired difference must be at least D.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_improvement: Option<f64>,
    /// The candidate's cost per row may exceed the baseline's by at most this share
    /// (0.1: 10 % more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_increase: Option<f64>,
}

impl Policy {
    /// Criteria that judge the candidate alone. `max_error_rate` is not one: it is the
    /// allowance of errored results both sides' evidence must keep within, on every gate.
    pub fn has_absolute(&self) -> bool {
        self.min_pass_rate.is_some() || self.max_p95_latency_ms.is_some()
    }

    pub fn has_relative(&self) -> bool {
        self.max_regression.is_some()
            || self.no_new_failures
            || self.non_inferior.is_some()
            || self.min_improvement.is_some()
            || self.max_cost_increase.is_some()
    }

    /// The share of errored results evidence may have, on either side (`--max-error-rate`,
    /// default none): beyond it an experiment is refused as evidence, not scored.
    pub fn error_allowance(&self) -> f64 {
        self.max_error_rate.unwrap_or(0.0)
    }

    /// Whether the policy checks regressions against the baseline at all.
    pub fn checks_regressions(&self) -> bool {
        self.max_regression.is_some()
            || self.no_new_failures
            || self.non_inferior.is_some()
            || self.min_improvement.is_some()
    }

    /// The flags of the criteria given, as the user spelled them.
    pub fn flags(&self) -> Vec<&'static str> {
        [
            (self.min_pass_rate.is_some(), "--min-pass-rate"),
            (self.max_regression.is_some(), "--max-regression"),
            (self.no_new_failures, "--no-new-failures"),
            (self.max_p95_latency_ms.is_some(), "--max-p95-latency-ms"),
            (self.non_inferior.is_some(), "--non-inferior"),
            (self.min_improvement.is_some(), "--min-improvement"),
            (self.max_cost_increase.is_some(), "--max-cost-increase"),
        ]
        .into_iter()
        .filter_map(|(set, flag)| set.then_some(flag))
        .collect()
    }

    /// The policy used when no criterion is given: nothing may get worse than the baseline.
    pub fn no_regression() -> Policy {
        Policy {
            max_regression: Some(0.0),
            no_new_failures: true,
            ..Policy::default()
        }
    }
}

/// One check of a gate or of an experiment: numbers, so that `--json` can be read by a program;
/// `threshold_text` and `actual_text` are how people read them.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Criterion {
    pub name: String,
    /// How `actual` must compare with `threshold`: `>=` or `<=`.
    pub op: String,
    pub threshold: f64,
    /// None when it could not be measured (no evaluator ran, no call succeeded).
    pub actual: Option<f64>,
    pub unit: Unit,
    pub passed: bool,
    /// What the number alone does not say: the rows behind a count, a before → after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a criterion's numbers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A share from 0 to 1, shown as a percentage.
    Fraction,
    /// A relative change (0.1: 10 % more), shown as a signed percentage.
    Change,
    Ms,
    Rows,
    Datasets,
    /// A difference of fractions, shown in percentage points.
    Points,
}

impl Criterion {
    fn new(name: impl Into<String>, op: &str, threshold: f64, unit: Unit) -> Criterion {
        Criterion {
            name: name.into(),
            op: op.into(),
            threshold,
            actual: None,
            unit,
            passed: false,
            detail: None,
        }
    }

    fn measured(mut self, actual: Option<f64>, passed: bool) -> Criterion {
        self.actual = actual;
        self.passed = passed;
        self
    }

    fn detail(mut self, detail: impl Into<String>) -> Criterion {
        self.detail = Some(detail.into());
        self
    }

    fn format(&self, value: f64) -> String {
        match self.unit {
            Unit::Fraction => pct(value),
            Unit::Change => format!("{:+.1}%", value * 100.0),
            Unit::Ms => format!("{value:.0} ms"),
            Unit::Rows => format!("{value:.0} rows"),
            Unit::Datasets => format!("{value:.0} dataset(s)"),
            Unit::Points => points(value),
        }
    }

    pub fn threshold_text(&self) -> String {
        format!("{} {}", self.op, self.format(self.threshold))
    }

    pub fn actual_text(&self) -> String {
        match (&self.detail, self.actual) {
            (Some(detail), _) => detail.clone(),
            (None, Some(value)) => self.format(value),
            (None, None) => "-".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub criteria: Vec<Criterion>,
    pub policy: Policy,
    /// Criteria whose threshold D is below what this many rows can detect.
    pub warnings: Vec<PowerWarning>,
    /// What the gate did not check that a reader would expect it to (regressions, when the
    /// criteria given replaced the default): one line each.
    pub notes: Vec<String>,
}

impl Verdict {
    /// Adds a criterion checked beside the comparison (a pairwise judge's win rate): the
    /// verdict passes only if it passes too.
    pub fn add(&mut self, criterion: Criterion) {
        self.criteria.push(criterion);
        // As `evaluate` decides: something beyond the error rate checked, and all of it passed.
        self.passed = self.criteria.iter().any(|c| c.name != MAX_ERROR_RATE)
            && self.criteria.iter().all(|c| c.passed);
    }
}

/// `--min-win-rate R`: the lower bound of the candidate's win rate (ties half) at least R. A
/// judge that failed on any row leaves the rate unmeasured: broken evidence never passes.
pub fn win_rate_criterion(
    evaluator: &str,
    tally: &crate::pairwise::Tally,
    errors: u64,
    threshold: f64,
) -> Criterion {
    let mut c = Criterion::new(
        format!("min win rate [{evaluator}]"),
        ">=",
        threshold,
        Unit::Fraction,
    );
    // The lower bound is what is compared: a bound just under the threshold is shown with the
    // digits that tell it apart, never rounded up to read as equal.
    let mut lower = format!("{:.1}", tally.ci[0] * 100.0);
    if lower == format!("{:.1}", threshold * 100.0) && tally.ci[0] < threshold {
        lower = format!("{:.3}", tally.ci[0] * 100.0);
    }
    let interval = format!(
        "{} wins, {} ties, {} losses; {:.1}% ({} CI {lower}–{:.1}%), lower bound compared",
        tally.wins,
        tally.ties,
        tally.losses,
        tally.win_rate * 100.0,
        crate::stats::confidence_text(tally.confidence),
        tally.ci[1] * 100.0
    );
    if errors > 0 || tally.rows == 0 {
        c.detail = Some(format!(
            "the judge failed on {errors} row(s): no win rate stands on part of the rows"
        ));
        return c;
    }
    c.actual = Some(tally.ci[0]);
    c.passed = tally.ci[0] >= threshold;
    c.detail = Some(interval);
    c
}

/// A criterion with a threshold D that the dataset is too small to tell from noise: its
/// minimum detectable effect (80% power at the comparison's confidence) is larger than D.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerWarning {
    /// The criterion's name, as in `criteria`.
    pub criterion: String,
    pub threshold: f64,
    pub minimum_detectable_effect: f64,
    pub rows: u64,
    /// Rows that would bring the minimum detectable effect down to the threshold (None for a
    /// threshold of 0, which no number of rows reaches).
    pub rows_needed: Option<u64>,
    pub message: String,
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// A difference of fractions in points: `+1.5 pts`.
pub fn points(v: f64) -> String {
    format!("{:+.1} pts", v * 100.0)
}

/// A paired difference as people read it: `+1.5 pts (95% CI -3.0 to +6.0 pts; McNemar's exact
/// test p = 0.62)`.
pub fn difference_text(d: &crate::compare::Difference, confidence: f64) -> String {
    format!(
        "{} ({} CI {} to {}; {} p = {})",
        points(d.estimate),
        crate::stats::confidence_text(confidence),
        points(d.ci[0]),
        points(d.ci[1]),
        d.test,
        p_value_text(d.p_value)
    )
}

/// A p-value with the digits that matter: 0.62, 0.031, 0.0042, < 0.0001.
pub fn p_value_text(p: f64) -> String {
    if p < 0.0001 {
        "< 0.0001".into()
    } else if p >= 0.1 {
        format!("{p:.2}")
    } else if p >= 0.01 {
        format!("{p:.3}")
    } else {
        format!("{p:.4}")
    }
}

fn power_warning(
    criterion: &str,
    threshold: f64,
    d: &crate::compare::Difference,
    confidence: f64,
) -> Option<PowerWarning> {
    if d.minimum_detectable_effect <= threshold + 1e-12 {
        return None;
    }
    let rows_needed = d.rows_needed(threshold);
    let level = crate::stats::confidence_text(confidence);
    let need = match rows_needed {
        Some(n) => format!(
            "detecting {:.1} pts needs about {n} rows",
            threshold * 100.0
        ),
        None => "no number of rows detects a difference of 0; --non-inferior D states how much worse is acceptable".into(),
    };
    Some(PowerWarning {
        criterion: criterion.to_string(),
        threshold,
        minimum_detectable_effect: d.minimum_detectable_effect,
        rows: d.rows,
        rows_needed,
        message: format!(
            "{criterion} {:.1} pts is below what {} rows can detect ({:.1} pts at 80% power, {level} confidence): {need}",
            threshold * 100.0,
            d.rows,
            d.minimum_detectable_effect * 100.0,
        ),
    })
}

/// An experiment's own check: every evaluator's pass rate at least `min_pass_rate` (when
/// set), the share of errored results at most `max_error_rate` (always checked).
pub fn check_experiment(
    summary: &crate::model::Summary,
    min_pass_rate: Option<f64>,
    max_error_rate: f64,
) -> Vec<Criterion> {
    let mut criteria = Vec::new();
    if let Some(min) = min_pass_rate {
        if summary.evaluators.is_empty() {
            criteria.push(
                Criterion::new("min pass rate", ">=", min, Unit::Fraction)
                    .measured(None, false)
                    .detail("no evaluator ran"),
            );
        }
        for e in &summary.evaluators {
            criteria.push(
                Criterion::new(
                    format!("min pass rate ({})", e.evaluator),
                    ">=",
                    min,
                    Unit::Fraction,
                )
                .measured(Some(e.pass_rate), e.pass_rate >= min),
            );
        }
    }
    criteria.push(
        Criterion::new(MAX_ERROR_RATE, "<=", max_error_rate, Unit::Fraction)
            .measured(
                Some(summary.error_rate),
                summary.error_rate <= max_error_rate + 1e-12,
            )
            .detail(format!(
                "{} ({} of {} results errored)",
                pct(summary.error_rate),
                summary.errored,
                summary.results
            )),
    );
    criteria
}

/// The name of the error-rate check, in an experiment's check and in a gate.
pub const MAX_ERROR_RATE: &str = "max error rate";

/// Judges the candidate. Errored rows already count as failed in the comparison.
pub fn evaluate(c: &Comparison, policy: &Policy) -> Verdict {
    let mut criteria = Vec::new();
    let mut warnings = Vec::new();
    // Figures over different rows say nothing about a regression: such a comparison never
    // passes a gate.
    if !c.same_dataset() {
        criteria.push(
            Criterion::new("same dataset", "<=", 1.0, Unit::Datasets)
                .measured(Some(2.0), false)
                .detail("the experiments ran on different datasets"),
        );
    }
    if let Some(min) = policy.min_pass_rate {
        // A pass rate cannot be checked without an evaluator; that is a failure, not a skip.
        if c.evaluators.is_empty() {
            criteria.push(
                Criterion::new("min pass rate", ">=", min, Unit::Fraction)
                    .measured(None, false)
                    .detail("no evaluator ran"),
            );
        }
        for e in &c.evaluators {
            criteria.push(
                Criterion::new(
                    format!("min pass rate [{}]", e.evaluator),
                    ">=",
                    min,
                    Unit::Fraction,
                )
                .measured(
                    Some(e.candidate_pass_rate),
                    e.candidate_pass_rate + 1e-12 >= min,
                ),
            );
            // The rate with its interval, where the candidate has one.
            let ci = c
                .candidate
                .evaluators
                .iter()
                .find(|m| m.evaluator == e.evaluator)
                .and_then(|m| m.pass_rate_ci);
            if let (Some(ci), Some(last)) = (ci, criteria.last_mut()) {
                last.detail = Some(format!(
                    "{} ({} CI {})",
                    pct(e.candidate_pass_rate),
                    crate::stats::confidence_text(c.confidence),
                    crate::stats::rate_interval(ci)
                ));
            }
        }
    }
    if c.baseline.is_some() {
        if let Some(max) = policy.max_regression {
            for e in &c.evaluators {
                let name = format!("max regression [{}]", e.evaluator);
                let criterion = Criterion::new(name.clone(), "<=", max, Unit::Fraction);
                criteria.push(match e.baseline_pass_rate {
                    Some(base) => {
                        let drop = base - e.candidate_pass_rate;
                        let interval = match &e.pass_rate_difference {
                            Some(d) => {
                                warnings.extend(power_warning(&name, max, d, c.confidence));
                                format!(
                                    "; {} CI {} to {}",
                                    crate::stats::confidence_text(c.confidence),
                                    points(d.ci[0]),
                                    points(d.ci[1])
                                )
                            }
                            None => String::new(),
                        };
                        criterion
                            .measured(Some(drop), drop <= max + 1e-12)
                            .detail(format!(
                                "{} → {} ({:+.1} pts{interval})",
                                pct(base),
                                pct(e.candidate_pass_rate),
                                (e.candidate_pass_rate - base) * 100.0
                            ))
                    }
                    // Nothing to regress from: the evaluator is new.
                    None => criterion
                        .measured(None, true)
                        .detail("evaluator not run on the baseline"),
                });
            }
        }
        // Inference on the paired difference: its interval's lower bound against a margin.
        for (label, bound, margin) in [
            (
                "non-inferior",
                policy.non_inferior.map(|d| -d),
                policy.non_inferior,
            ),
            (
                "min improvement",
                policy.min_improvement,
                policy.min_improvement,
            ),
        ] {
            let (Some(bound), Some(margin)) = (bound, margin) else {
                continue;
            };
            if c.evaluators.is_empty() {
                criteria.push(
                    Criterion::new(label, ">=", bound, Unit::Points)
                        .measured(None, false)
                        .detail("no evaluator ran"),
                );
            }
            for e in &c.evaluators {
                let name = format!("{label} [{}]", e.evaluator);
                let criterion = Criterion::new(name.clone(), ">=", bound, Unit::Points);
                criteria.push(match &e.pass_rate_difference {
                    Some(d) => {
                        warnings.extend(power_warning(&name, margin, d, c.confidence));
                        criterion
                            .measured(Some(d.ci[0]), d.ci[0] >= bound - 1e-12)
                            .detail(format!(
                                "lower bound {}: {}",
                                points(d.ci[0]),
                                difference_text(d, c.confidence)
                            ))
                    }
                    // No interval, no evidence: an evaluator new on the candidate, or fewer
                    // than two shared rows.
                    None => {
                        criterion
                            .measured(None, false)
                            .detail(if e.baseline_pass_rate.is_none() {
                                "evaluator not run on the baseline"
                            } else {
                                "fewer than 2 rows on both sides: no interval"
                            })
                    }
                });
            }
        }
        if policy.no_new_failures {
            let n = c.new_failures.len();
            let shown: Vec<&str> = c.new_failures.iter().take(5).map(String::as_str).collect();
            let criterion = Criterion::new("no new failures", "<=", 0.0, Unit::Rows)
                .measured(Some(n as f64), n == 0);
            criteria.push(if n == 0 {
                criterion
            } else {
                criterion.detail(format!(
                    "{n} row(s): {}{}",
                    shown.join(", "),
                    if n > shown.len() { ", …" } else { "" }
                ))
            });
        }
    }
    if let (Some(max), Some(base)) = (policy.max_cost_increase, &c.baseline) {
        criteria.push(cost_increase(max, base, &c.candidate));
    }
    // Every gate shows both sides' error rates: evidence beyond the allowance is refused
    // before it gets here, and would fail here if it ever did.
    {
        let max = policy.error_allowance();
        let worst = c
            .baseline
            .iter()
            .map(|b| b.error_rate)
            .fold(c.candidate.error_rate, f64::max);
        let detail = match &c.baseline {
            Some(b) => format!(
                "baseline {} · candidate {}",
                pct(b.error_rate),
                pct(c.candidate.error_rate)
            ),
            None => format!("candidate {}", pct(c.candidate.error_rate)),
        };
        criteria.push(
            Criterion::new(MAX_ERROR_RATE, "<=", max, Unit::Fraction)
                .measured(Some(worst), worst <= max + 1e-12)
                .detail(detail),
        );
    }
    if let Some(max) = policy.max_p95_latency_ms {
        let p95 = c.candidate.latency_p95_ms;
        let criterion = Criterion::new("max p95 latency", "<=", max, Unit::Ms)
            .measured(p95, p95.is_some_and(|v| v <= max));
        criteria.push(if p95.is_none() {
            criterion.detail("no successful call")
        } else {
            criterion
        });
    }
    // The default gate's threshold is 0, which no dataset detects: one line says what it can
    // tell apart instead of a warning per evaluator about the default itself.
    let default = Policy {
        max_error_rate: None,
        ..policy.clone()
    } == Policy::no_regression();
    if default && !warnings.is_empty() {
        let worst = warnings
            .iter()
            .max_by(|a, b| {
                a.minimum_detectable_effect
                    .total_cmp(&b.minimum_detectable_effect)
            })
            .cloned();
        if let Some(worst) = worst {
            warnings = vec![PowerWarning {
                criterion: "max regression".into(),
                message: format!(
                    "the default gate fails on any regressed row; a drop in pass rate smaller \
                     than {:.1} pts is beyond what {} rows can tell from noise ({} confidence, \
                     80% power); --non-inferior D states how much worse is acceptable",
                    worst.minimum_detectable_effect * 100.0,
                    worst.rows,
                    crate::stats::confidence_text(c.confidence)
                ),
                ..worst
            }];
        }
    }
    let mut notes = Vec::new();
    if c.baseline.is_some() && !policy.checks_regressions() {
        let flags = policy.flags();
        let given = if flags.is_empty() {
            "the criteria given replace".to_string()
        } else {
            format!(
                "{} {} the default",
                flags.join(", "),
                if flags.len() == 1 {
                    "replaces"
                } else {
                    "replace"
                }
            )
        };
        notes.push(format!(
            "regressions not checked: {given}; add --no-new-failures to keep it"
        ));
    }
    // A verdict with nothing checked must not read as a pass; the error rate alone is not a
    // check of the candidate's answers.
    let judged = criteria.iter().any(|c| c.name != MAX_ERROR_RATE);
    let passed = judged && criteria.iter().all(|c| c.passed);
    Verdict {
        passed,
        criteria,
        policy: policy.clone(),
        warnings,
        notes,
    }
}

/// `--max-cost-increase`: the candidate's cost per row against the baseline's. A cost that
/// cannot be known (no price for a model) fails the criterion rather than skip it.
fn cost_increase(max: f64, base: &SideMetrics, cand: &SideMetrics) -> Criterion {
    let criterion = Criterion::new("max cost increase", "<=", max, Unit::Change);
    let unpriced = [base, cand]
        .into_iter()
        .find(|side| side.cost_per_row_usd.is_none());
    if let Some(side) = unpriced {
        return criterion.measured(None, false).detail(format!(
            "no price for model {} (add [prices.\"{}\"] to runner.toml)",
            side.model, side.model
        ));
    }
    let (b, k) = (
        base.cost_per_row_usd.unwrap_or(0.0),
        cand.cost_per_row_usd.unwrap_or(0.0),
    );
    let increase = if b > 0.0 {
        k / b - 1.0
    } else if k > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    let passed = increase <= max + 1e-12;
    let actual = increase.is_finite().then_some(increase);
    criterion.measured(actual, passed).detail(format!(
        "{} → {} per row ({})",
        crate::cost::usd(b),
        crate::cost::usd(k),
        if increase.is_finite() {
            format!("{:+.1}%", increase * 100.0)
        } else {
            "from nothing".into()
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Comparison, EvalDelta, SideMetrics};

    fn side(error_rate: f64, p95: Option<f64>) -> SideMetrics {
        SideMetrics {
            experiment: "e".into(),
            label: "p v1".into(),
            dataset_hash: "h".into(),
            rows: 10,
            results: 10,
            error_rate,
            latency_p50_ms: p95,
            latency_p95_ms: p95,
            tokens_in: 0,
            tokens_out: 0,
            model: "gpt-4o-mini".into(),
            mock: false,
            cost_usd: None,
            cost_per_row_usd: None,
            evaluators: vec![],
        }
    }

    fn comparison(base: Option<f64>, cand: f64, new_failures: usize) -> Comparison {
        Comparison {
            confidence: 0.95,
            power: crate::stats::POWER,
            cluster_column: None,
            baseline: base.map(|_| side(0.0, Some(100.0))),
            candidate: side(0.0, Some(250.0)),
            evaluators: vec![EvalDelta {
                evaluator: "icontains".into(),
                baseline_pass_rate: base,
                candidate_pass_rate: cand,
                delta: base.map(|b| cand - b),
                baseline_mean_score: base,
                candidate_mean_score: cand,
                improved: 0,
                regressed: new_failures,
                unchanged: 0,
                pass_rate_difference: None,
                mean_score_difference: None,
            }],
            regressed: vec![],
            regressed_total: 0,
            improved: vec![],
            improved_total: 0,
            only_in_baseline: vec![],
            only_in_candidate: vec![],
            flaky: vec![],
            flaky_total: 0,
            new_failures: (0..new_failures).map(|i| format!("r{i}")).collect(),
            errored_one_side: Default::default(),
        }
    }

    fn errored(rate: f64) -> Comparison {
        let mut c = comparison(None, 1.0, 0);
        c.candidate.error_rate = rate;
        c
    }

    #[test]
    fn an_errored_baseline_fails_the_gate_too_and_both_rates_are_shown() {
        let mut c = comparison(Some(0.9), 0.9, 0);
        c.baseline.as_mut().unwrap().error_rate = 0.2;
        let verdict = evaluate(&c, &Policy::no_regression());
        assert!(!verdict.passed);
        let errors = verdict
            .criteria
            .iter()
            .find(|c| c.name == MAX_ERROR_RATE)
            .unwrap();
        assert_eq!(errors.actual, Some(0.2));
        assert_eq!(errors.actual_text(), "baseline 20.0% · candidate 0.0%");
    }

    #[test]
    fn a_criterion_that_replaces_the_default_says_so() {
        let c = comparison(Some(0.9), 0.95, 2);
        let verdict = evaluate(
            &c,
            &Policy {
                min_pass_rate: Some(0.5),
                ..Policy::default()
            },
        );
        assert!(verdict.passed, "{verdict:?}");
        assert_eq!(
            verdict.notes,
            [
                "regressions not checked: --min-pass-rate replaces the default; add --no-new-failures to keep it"
            ]
        );
        assert!(evaluate(&c, &Policy::no_regression()).notes.is_empty());
        // Without a baseline there is nothing to regress from, and nothing to say.
        let alone = evaluate(
            &comparison(None, 0.95, 0),
            &Policy {
                min_pass_rate: Some(0.5),
                ..Policy::default()
            },
        );
        assert!(alone.notes.is_empty());
    }

    fn without_evaluators() -> Comparison {
        let mut c = comparison(None, 1.0, 0);
        c.evaluators.clear();
        c
    }

    #[test]
    fn different_datasets_never_pass() {
        let mut c = comparison(Some(0.5), 0.9, 0);
        assert!(evaluate(&c, &Policy::no_regression()).passed);
        c.candidate.dataset_hash = "other".into();
        let verdict = evaluate(&c, &Policy::no_regression());
        assert!(!verdict.passed);
        assert_eq!(verdict.criteria[0].name, "same dataset");
    }

    #[test]
    fn criteria_table() {
        let cases: Vec<(Policy, Comparison, bool)> = vec![
            (
                Policy {
                    min_pass_rate: Some(0.9),
                    ..Policy::default()
                },
                comparison(None, 0.9, 0),
                true,
            ),
            (
                Policy {
                    min_pass_rate: Some(0.9),
                    ..Policy::default()
                },
                comparison(None, 0.89, 0),
                false,
            ),
            (
                Policy {
                    max_regression: Some(0.02),
                    ..Policy::default()
                },
                comparison(Some(0.9), 0.885, 0),
                true,
            ),
            (
                Policy {
                    max_regression: Some(0.02),
                    ..Policy::default()
                },
                comparison(Some(0.9), 0.85, 0),
                false,
            ),
            (
                Policy {
                    no_new_failures: true,
                    ..Policy::default()
                },
                comparison(Some(0.9), 0.95, 1),
                false,
            ),
            (
                Policy {
                    no_new_failures: true,
                    ..Policy::default()
                },
                comparison(Some(0.9), 0.95, 0),
                true,
            ),
            (
                Policy {
                    min_pass_rate: Some(0.5),
                    max_error_rate: Some(0.1),
                    ..Policy::default()
                },
                errored(0.1),
                true,
            ),
            (
                Policy {
                    min_pass_rate: Some(0.5),
                    max_error_rate: Some(0.05),
                    ..Policy::default()
                },
                errored(0.1),
                false,
            ),
            // Errored results beyond the default allowance (none) fail any gate, on either
            // side, and the error rate alone is no check of the answers.
            (
                Policy {
                    min_pass_rate: Some(0.5),
                    ..Policy::default()
                },
                errored(0.01),
                false,
            ),
            (
                Policy {
                    max_error_rate: Some(0.5),
                    ..Policy::default()
                },
                comparison(None, 1.0, 0),
                false,
            ),
            (
                Policy {
                    max_p95_latency_ms: Some(300.0),
                    ..Policy::default()
                },
                comparison(None, 1.0, 0),
                true,
            ),
            (
                Policy {
                    max_p95_latency_ms: Some(200.0),
                    ..Policy::default()
                },
                comparison(None, 1.0, 0),
                false,
            ),
            (
                Policy {
                    min_pass_rate: Some(0.5),
                    ..Policy::default()
                },
                without_evaluators(),
                false,
            ),
            // No baseline: relative criteria are not checked, and nothing checked is no pass.
            (Policy::no_regression(), comparison(None, 1.0, 0), false),
            (Policy::no_regression(), comparison(Some(0.5), 0.5, 0), true),
        ];
        for (i, (policy, c, expected)) in cases.into_iter().enumerate() {
            let verdict = evaluate(&c, &policy);
            assert_eq!(verdict.passed, expected, "case {i}: {verdict:?}");
            assert!(
                verdict
                    .criteria
                    .iter()
                    .all(|c| !c.actual_text().is_empty() && c.threshold.is_finite())
            );
        }
    }

    #[test]
    fn criteria_are_numbers_in_json_and_text_for_people() {
        let verdict = evaluate(
            &comparison(Some(0.8), 0.6, 2),
            &Policy {
                min_pass_rate: Some(0.9),
                max_regression: Some(0.0),
                no_new_failures: true,
                max_error_rate: Some(0.05),
                max_p95_latency_ms: Some(200.0),
                ..Policy::default()
            },
        );
        let json = serde_json::to_value(&verdict).unwrap();
        let first = &json["criteria"][0];
        assert_eq!(first["threshold"], 0.9);
        assert_eq!(first["actual"], 0.6);
        assert_eq!(first["unit"], "fraction");
        let texts: Vec<(String, String)> = verdict
            .criteria
            .iter()
            .map(|c| (c.threshold_text(), c.actual_text()))
            .collect();
        assert_eq!(texts[0], (">= 90.0%".into(), "60.0%".into()));
        assert_eq!(texts[1].1, "80.0% → 60.0% (-20.0 pts)");
        assert_eq!(texts[2], ("<= 0 rows".into(), "2 row(s): r0, r1".into()));
        assert_eq!(texts[4], ("<= 200 ms".into(), "250 ms".into()));
    }

    /// A lower bound just under the threshold reads as under it, not rounded up to equal it.
    #[test]
    fn a_win_rate_bound_just_under_the_threshold_shows_its_digits() {
        use crate::pairwise::{Outcome::*, tally};
        // 4 wins and 2 losses: the Wilson interval's lower bound is 0.29999.
        let t = tally(&[Win, Win, Win, Win, Loss, Loss], 0.95);
        assert!(t.ci[0] < 0.3 && t.ci[0] > 0.2999, "{:?}", t.ci);
        let c = win_rate_criterion("pairwise", &t, 0, 0.3);
        assert!(!c.passed);
        let shown = c.actual_text();
        assert!(shown.contains("CI 29.999–90.3%"), "{shown}");
        // Away from the threshold, one decimal.
        let c = win_rate_criterion("pairwise", &t, 0, 0.5);
        assert!(
            c.actual_text().contains("CI 30.0–90.3%"),
            "{}",
            c.actual_text()
        );
    }
}
