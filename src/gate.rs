//! The promotion gate: a pure function from a comparison and a policy to a verdict, each
//! criterion with its numbers.

use crate::compare::Comparison;
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
}

impl Policy {
    pub fn has_absolute(&self) -> bool {
        self.min_pass_rate.is_some()
            || self.max_error_rate.is_some()
            || self.max_p95_latency_ms.is_some()
    }

    pub fn has_relative(&self) -> bool {
        self.max_regression.is_some() || self.no_new_failures
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

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Criterion {
    pub name: String,
    pub threshold: String,
    pub actual: String,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub criteria: Vec<Criterion>,
    pub policy: Policy,
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// An experiment's own check: every evaluator's pass rate at least `min_pass_rate`, the share
/// of failed calls at most `max_error_rate`. Empty when neither is set.
pub fn check_experiment(
    summary: &crate::model::Summary,
    min_pass_rate: Option<f64>,
    max_error_rate: Option<f64>,
) -> Vec<Criterion> {
    let mut criteria = Vec::new();
    if let Some(min) = min_pass_rate {
        if summary.evaluators.is_empty() {
            criteria.push(Criterion {
                name: "min pass rate".into(),
                threshold: format!(">= {}", pct(min)),
                actual: "no evaluator ran".into(),
                passed: false,
            });
        }
        for e in &summary.evaluators {
            criteria.push(Criterion {
                name: format!("min pass rate ({})", e.evaluator),
                threshold: format!(">= {}", pct(min)),
                actual: pct(e.pass_rate),
                passed: e.pass_rate >= min,
            });
        }
    }
    if let Some(max) = max_error_rate {
        criteria.push(Criterion {
            name: "max error rate".into(),
            threshold: format!("<= {}", pct(max)),
            actual: pct(summary.error_rate),
            passed: summary.error_rate <= max,
        });
    }
    criteria
}

/// Judges the candidate. Errored rows already count as failed in the comparison.
pub fn evaluate(c: &Comparison, policy: &Policy) -> Verdict {
    let mut criteria = Vec::new();
    // Figures over different rows say nothing about a regression: such a comparison never
    // passes a gate.
    if !c.same_dataset() {
        criteria.push(Criterion {
            name: "same dataset".into(),
            threshold: "both sides on one dataset".into(),
            actual: "the experiments ran on different datasets".into(),
            passed: false,
        });
    }
    if let Some(min) = policy.min_pass_rate {
        // A pass rate cannot be checked without an evaluator; that is a failure, not a skip.
        if c.evaluators.is_empty() {
            criteria.push(Criterion {
                name: "min pass rate".into(),
                threshold: format!(">= {}", pct(min)),
                actual: "no evaluator ran".into(),
                passed: false,
            });
        }
        for e in &c.evaluators {
            criteria.push(Criterion {
                name: format!("min pass rate [{}]", e.evaluator),
                threshold: format!(">= {}", pct(min)),
                actual: pct(e.candidate_pass_rate),
                passed: e.candidate_pass_rate + 1e-12 >= min,
            });
        }
    }
    if c.baseline.is_some() {
        if let Some(max) = policy.max_regression {
            for e in &c.evaluators {
                let drop = e.delta.map(|d| -d).unwrap_or(0.0);
                criteria.push(Criterion {
                    name: format!("max regression [{}]", e.evaluator),
                    threshold: format!("<= {}", pct(max)),
                    actual: match e.baseline_pass_rate {
                        Some(base) => format!(
                            "{} → {} ({:+.1} pts)",
                            pct(base),
                            pct(e.candidate_pass_rate),
                            (e.candidate_pass_rate - base) * 100.0
                        ),
                        None => "evaluator not run on the baseline".into(),
                    },
                    passed: drop <= max + 1e-12,
                });
            }
        }
        if policy.no_new_failures {
            let n = c.new_failures.len();
            let shown: Vec<&str> = c.new_failures.iter().take(5).map(String::as_str).collect();
            criteria.push(Criterion {
                name: "no new failures".into(),
                threshold: "0 rows".into(),
                actual: if n == 0 {
                    "0 rows".into()
                } else {
                    format!(
                        "{n} row(s): {}{}",
                        shown.join(", "),
                        if n > shown.len() { ", …" } else { "" }
                    )
                },
                passed: n == 0,
            });
        }
    }
    if let Some(max) = policy.max_error_rate {
        criteria.push(Criterion {
            name: "max error rate".into(),
            threshold: format!("<= {}", pct(max)),
            actual: pct(c.candidate.error_rate),
            passed: c.candidate.error_rate <= max + 1e-12,
        });
    }
    if let Some(max) = policy.max_p95_latency_ms {
        let p95 = c.candidate.latency_p95_ms;
        criteria.push(Criterion {
            name: "max p95 latency".into(),
            threshold: format!("<= {max:.0} ms"),
            actual: p95
                .map(|v| format!("{v:.0} ms"))
                .unwrap_or_else(|| "no successful call".into()),
            passed: p95.is_some_and(|v| v <= max),
        });
    }
    // A verdict with nothing checked must not read as a pass.
    let passed = !criteria.is_empty() && criteria.iter().all(|c| c.passed);
    Verdict {
        passed,
        criteria,
        policy: policy.clone(),
    }
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
            evaluators: vec![],
        }
    }

    fn comparison(base: Option<f64>, cand: f64, new_failures: usize) -> Comparison {
        Comparison {
            baseline: base.map(|_| side(0.0, Some(100.0))),
            candidate: side(0.1, Some(250.0)),
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
        }
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
                    max_error_rate: Some(0.1),
                    ..Policy::default()
                },
                comparison(None, 1.0, 0),
                true,
            ),
            (
                Policy {
                    max_error_rate: Some(0.05),
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
                    .all(|c| !c.actual.is_empty() && !c.threshold.is_empty())
            );
        }
    }
}
