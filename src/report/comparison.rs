//! Renderers for comparisons and promotion verdicts: text (comfy-table), Markdown, JSON, JUnit.
//! Text and Markdown are built from the same sections, so they always carry the same content. Pure:
//! they must not read the store or print, and they judge nothing: the statistics come from
//! `compare`, the verdict from `gate`, and a change shown is only the difference of the two figures
//! beside it.

use super::excerpt;
use crate::compare::{Comparison, EvalMetric, RowChange, SideMetrics};
use crate::gate::{Verdict, p_value_text, points};
use crate::view::PromotionView;
use serde_json::Value;

/// A titled table, rendered as text or Markdown.
struct Section {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Shown when there are no rows.
    empty: &'static str,
}

fn text_table(headers: &[String], rows: &[Vec<String>]) -> String {
    super::aligned_table(Some(headers.to_vec()), rows.to_vec())
}

fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn markdown_table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n",
        headers
            .iter()
            .map(|h| markdown_cell(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    out.push_str(&format!("|{}\n", "---|".repeat(headers.len())));
    for row in rows {
        out.push_str(&format!(
            "| {} |\n",
            row.iter()
                .map(|c| markdown_cell(c))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    out
}

fn render_text(sections: &[Section]) -> String {
    sections
        .iter()
        .map(|s| {
            if s.rows.is_empty() {
                format!("{}: {}", s.title, s.empty)
            } else if s.headers.is_empty() {
                lines(s, "")
            } else {
                format!(
                    "{}\n{}",
                    super::fit_line(&s.title),
                    text_table(&s.headers, &s.rows)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A section without headers: one line a row, each led by the title (`note: …`).
fn lines(s: &Section, lead: &str) -> String {
    s.rows
        .iter()
        .map(|row| format!("{lead}{}: {}", s.title, row.join(" ")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_markdown(sections: &[Section]) -> String {
    sections
        .iter()
        .map(|s| {
            if s.rows.is_empty() {
                format!("### {}\n\n{}\n", s.title, s.empty)
            } else if s.headers.is_empty() {
                format!("{}\n", lines(s, "> "))
            } else {
                format!("### {}\n\n{}", s.title, markdown_table(&s.headers, &s.rows))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// A change with its direction, where `higher_is_better` says which way is good.
fn delta(base: Option<f64>, cand: Option<f64>, higher_is_better: bool, unit: Unit) -> String {
    let (Some(b), Some(c)) = (base, cand) else {
        return "-".into();
    };
    let d = c - b;
    if d.abs() < 1e-9 {
        return "= same".into();
    }
    let better = (d > 0.0) == higher_is_better;
    let arrow = if d > 0.0 { "▲" } else { "▼" };
    let amount = match unit {
        Unit::Points => format!("{:+.1} pts", d * 100.0),
        Unit::Score => format!("{d:+.3}"),
        Unit::Ms => format!("{d:+.0} ms"),
        Unit::Count => format!("{d:+.0}"),
    };
    // A change that rounds to nothing at the shown precision is no change to a reader.
    if !amount.chars().any(|c| c.is_ascii_digit() && c != '0') {
        return "≈ same".into();
    }
    format!(
        "{arrow} {amount} ({})",
        if better { "better" } else { "worse" }
    )
}

#[derive(Clone, Copy)]
enum Unit {
    Points,
    Score,
    Ms,
    Count,
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

/// A side's evaluator figures by name.
fn side_metric<'a>(side: Option<&'a SideMetrics>, evaluator: &str) -> Option<&'a EvalMetric> {
    side?.evaluators.iter().find(|m| m.evaluator == evaluator)
}

/// A pass rate with its interval, which is not symmetric about it (Wilson's):
/// `74.0% (67.5–79.6%)`.
fn with_interval(value: String, ci: Option<[f64; 2]>) -> String {
    match ci {
        Some(ci) => format!("{value} ({})", super::rate_interval(ci)),
        None => value,
    }
}

/// The half-width of an interval, after a value: `0.840 ±0.057`.
fn with_margin(value: String, ci: Option<[f64; 2]>, scale: f64, decimals: usize) -> String {
    match ci {
        Some([low, high]) => format!("{value} ±{:.*}", decimals, (high - low) / 2.0 * scale),
        None => value,
    }
}

/// The paired differences per evaluator: estimate, interval, error, p-value and its test, and
/// the smallest difference this many rows can detect.
fn differences_section(c: &Comparison) -> Section {
    let level = super::confidence_text(c.confidence);
    let mut rows = Vec::new();
    for e in &c.evaluators {
        for (metric, d, in_points) in [
            ("pass rate", &e.pass_rate_difference, true),
            ("mean score", &e.mean_score_difference, false),
        ] {
            let Some(d) = d else { continue };
            let number = |v: f64| {
                if in_points {
                    points(v)
                } else {
                    format!("{v:+.3}")
                }
            };
            let plain = |v: f64| {
                if in_points {
                    format!("{:.1} pts", v * 100.0)
                } else {
                    format!("{v:.3}")
                }
            };
            rows.push(vec![
                format!("{metric} [{}]", e.evaluator),
                number(d.estimate),
                format!("{} to {}", number(d.ci[0]), number(d.ci[1])),
                match d.unpaired_se {
                    _ if d.se <= 0.0 => "n/a (no variation)".into(),
                    Some(u) => format!("{} (unpaired {})", plain(d.se), plain(u)),
                    None => plain(d.se),
                },
                format!("{} ({})", p_value_text(d.p_value), d.test),
                plain(d.minimum_detectable_effect),
                d.rows.to_string(),
            ]);
        }
    }
    Section {
        title: format!(
            "is the difference real? (candidate − baseline over the rows both have, paired by row id; {level} confidence{})",
            match &c.cluster_column {
                Some(column) => format!(", errors clustered on {column}"),
                None => String::new(),
            }
        ),
        headers: vec![
            "metric".into(),
            "difference".into(),
            format!("{level} CI"),
            "SE".into(),
            "p-value (test)".into(),
            format!("detectable ({:.0}% power)", c.power * 100.0),
            "rows".into(),
        ],
        rows,
        empty: if c.evaluators.is_empty() {
            "no evaluator scored the answers: nothing to test"
        } else {
            "fewer than 2 rows on both sides: no interval"
        },
    }
}

fn sections(c: &Comparison, rows: usize) -> Vec<Section> {
    let base = c.baseline.as_ref();
    let cand = &c.candidate;
    let mut metrics = Vec::new();
    for e in &c.evaluators {
        let (bm, cm) = (
            side_metric(base, &e.evaluator),
            side_metric(Some(cand), &e.evaluator),
        );
        metrics.push(vec![
            format!("pass rate [{}]", e.evaluator),
            e.baseline_pass_rate
                .map(|v| with_interval(pct(v), bm.and_then(|m| m.pass_rate_ci)))
                .unwrap_or_else(|| "-".into()),
            with_interval(pct(e.candidate_pass_rate), cm.and_then(|m| m.pass_rate_ci)),
            delta(
                e.baseline_pass_rate,
                Some(e.candidate_pass_rate),
                true,
                Unit::Points,
            ),
        ]);
        metrics.push(vec![
            format!("mean score [{}]", e.evaluator),
            e.baseline_mean_score
                .map(|v| with_margin(format!("{v:.3}"), bm.and_then(|m| m.mean_score_ci), 1.0, 3))
                .unwrap_or_else(|| "-".into()),
            with_margin(
                format!("{:.3}", e.candidate_mean_score),
                cm.and_then(|m| m.mean_score_ci),
                1.0,
                3,
            ),
            delta(
                e.baseline_mean_score,
                Some(e.candidate_mean_score),
                true,
                Unit::Score,
            ),
        ]);
    }
    metrics.push(vec![
        "error rate".into(),
        base.map(|b| pct(b.error_rate))
            .unwrap_or_else(|| "-".into()),
        pct(cand.error_rate),
        delta(
            base.map(|b| b.error_rate),
            Some(cand.error_rate),
            false,
            Unit::Points,
        ),
    ]);
    metrics.push(vec![
        "latency p50".into(),
        opt_ms(base.and_then(|b| b.latency_p50_ms)),
        opt_ms(cand.latency_p50_ms),
        delta(
            base.and_then(|b| b.latency_p50_ms),
            cand.latency_p50_ms,
            false,
            Unit::Ms,
        ),
    ]);
    metrics.push(vec![
        "latency p95".into(),
        opt_ms(base.and_then(|b| b.latency_p95_ms)),
        opt_ms(cand.latency_p95_ms),
        delta(
            base.and_then(|b| b.latency_p95_ms),
            cand.latency_p95_ms,
            false,
            Unit::Ms,
        ),
    ]);
    metrics.push(vec![
        "tokens in".into(),
        base.map(|b| b.tokens_in.to_string())
            .unwrap_or_else(|| "-".into()),
        cand.tokens_in.to_string(),
        delta(
            base.map(|b| b.tokens_in as f64),
            Some(cand.tokens_in as f64),
            false,
            Unit::Count,
        ),
    ]);
    metrics.push(vec![
        "tokens out".into(),
        base.map(|b| b.tokens_out.to_string())
            .unwrap_or_else(|| "-".into()),
        cand.tokens_out.to_string(),
        delta(
            base.map(|b| b.tokens_out as f64),
            Some(cand.tokens_out as f64),
            false,
            Unit::Count,
        ),
    ]);
    let usd = |value: Option<f64>, side: &SideMetrics| {
        value.map(|usd| crate::cost::run_usd(usd, side.mock))
    };
    let unpriced = |side: &SideMetrics| format!("- (no price for {})", side.model);
    metrics.push(vec![
        "cost".into(),
        base.map(|b| usd(b.cost_usd, b).unwrap_or_else(|| unpriced(b)))
            .unwrap_or_else(|| "-".into()),
        usd(cand.cost_usd, cand).unwrap_or_else(|| unpriced(cand)),
        String::new(),
    ]);
    metrics.push(vec![
        "cost per row".into(),
        base.and_then(|b| usd(b.cost_per_row_usd, b))
            .unwrap_or_else(|| "-".into()),
        usd(cand.cost_per_row_usd, cand).unwrap_or_else(|| "-".into()),
        match (base.and_then(|b| b.cost_per_row_usd), cand.cost_per_row_usd) {
            (Some(b), Some(k)) if b > 0.0 && (k / b - 1.0).abs() >= 0.0005 => format!(
                "{} {:+.1}% ({})",
                if k > b { "▲" } else { "▼" },
                (k / b - 1.0) * 100.0,
                if k > b { "worse" } else { "better" }
            ),
            (Some(_), Some(_)) => "= same".into(),
            _ => "-".into(),
        },
    ]);
    metrics.push(vec![
        "rows (results)".into(),
        base.map(|b| format!("{} ({})", b.rows, b.results))
            .unwrap_or_else(|| "-".into()),
        format!("{} ({})", cand.rows, cand.results),
        String::new(),
    ]);
    let mut out = vec![Section {
        title: format!(
            "{} [{}] vs {} [{}]",
            base.map(|b| b.label.as_str()).unwrap_or("(no baseline)"),
            base.map(|b| b.experiment.as_str()).unwrap_or("-"),
            cand.label,
            cand.experiment
        ),
        headers: vec![
            "metric".into(),
            "baseline".into(),
            "candidate".into(),
            "change".into(),
        ],
        rows: metrics,
        empty: "",
    }];
    if base.is_some() {
        out.push(differences_section(c));
        out.push(Section {
            title: "rows per evaluator".into(),
            headers: vec![
                "evaluator".into(),
                "improved".into(),
                "regressed".into(),
                "unchanged".into(),
            ],
            rows: c
                .evaluators
                .iter()
                .map(|e| {
                    vec![
                        e.evaluator.clone(),
                        e.improved.to_string(),
                        e.regressed.to_string(),
                        e.unchanged.to_string(),
                    ]
                })
                .collect(),
            empty: "none",
        });
        for (title, changes, total) in [
            ("regressed rows", &c.regressed, c.regressed_total),
            ("improved rows", &c.improved, c.improved_total),
        ] {
            let shown = changes.len().min(rows);
            out.push(Section {
                title: if total > shown {
                    format!("{title} (first {shown} of {total})")
                } else {
                    format!("{title} ({total})")
                },
                headers: vec![
                    "row".into(),
                    "evaluator".into(),
                    "input".into(),
                    "baseline output".into(),
                    "score".into(),
                    "candidate output".into(),
                    "score".into(),
                ],
                rows: changes.iter().take(rows).map(change_row).collect(),
                empty: "none",
            });
        }
        let mut one_sided: Vec<Vec<String>> = c
            .only_in_baseline
            .iter()
            .map(|id| vec![id.clone(), "baseline only".into()])
            .collect();
        one_sided.extend(
            c.only_in_candidate
                .iter()
                .map(|id| vec![id.clone(), "candidate only".into()]),
        );
        out.push(Section {
            title: "rows on one side only".into(),
            headers: vec!["row".into(), "where".into()],
            rows: one_sided.into_iter().take(rows.max(1) * 2).collect(),
            empty: "none",
        });
    }
    if !c.flaky.is_empty() {
        out.push(Section {
            title: format!("flaky rows ({}; repetitions disagree)", c.flaky_total),
            headers: vec![
                "row".into(),
                "evaluator".into(),
                "side".into(),
                "agreement".into(),
            ],
            rows: c
                .flaky
                .iter()
                .take(rows)
                .map(|f| {
                    vec![
                        f.row_id.clone(),
                        f.evaluator.clone(),
                        f.side.clone(),
                        pct(f.agreement),
                    ]
                })
                .collect(),
            empty: "none",
        });
    }
    out
}

fn change_row(ch: &RowChange) -> Vec<String> {
    let verdict =
        |passed: bool, score: f64| format!("{} {score:.2}", if passed { "pass" } else { "fail" });
    vec![
        ch.row_id.clone(),
        ch.evaluator.clone(),
        excerpt(&ch.input, 30),
        excerpt(&ch.baseline.output, 30),
        verdict(ch.baseline.passed, ch.baseline.score),
        excerpt(&ch.candidate.output, 30),
        verdict(ch.candidate.passed, ch.candidate.score),
    ]
}

pub fn comparison_text(c: &Comparison, rows: usize) -> String {
    render_text(&sections(c, rows))
}

pub fn comparison_markdown(c: &Comparison, rows: usize) -> String {
    render_markdown(&sections(c, rows))
}

/// The gate's criteria and power warnings first, when `compare` was asked for a gate.
fn gated_sections(c: &Comparison, verdict: Option<&Verdict>, rows: usize) -> Vec<Section> {
    let mut all = Vec::new();
    if let Some(verdict) = verdict {
        all.push(criteria_section(verdict));
        all.extend(notes_section(c, verdict));
        all.extend(warnings_section(verdict));
    }
    all.extend(sections(c, rows));
    all
}

/// What the gate did not check, and rows errored on one side only: said beside the verdict.
fn notes_section(c: &Comparison, verdict: &Verdict) -> Option<Section> {
    let mut notes: Vec<Vec<String>> = verdict.notes.iter().map(|n| vec![n.clone()]).collect();
    let errored = &c.errored_one_side;
    if errored.candidate_only + errored.baseline_only > 0 {
        notes.push(vec![format!(
            "errored rows count as failures of their side: {} errored on the candidate only, \
             {} on the baseline only (--max-error-rate allowed them)",
            errored.candidate_only, errored.baseline_only
        )]);
    }
    (!notes.is_empty()).then(|| Section {
        title: "note".into(),
        headers: Vec::new(),
        rows: notes,
        empty: "none",
    })
}

pub fn comparison_text_gated(c: &Comparison, verdict: Option<&Verdict>, rows: usize) -> String {
    render_text(&gated_sections(c, verdict, rows))
}

pub fn comparison_markdown_gated(c: &Comparison, verdict: Option<&Verdict>, rows: usize) -> String {
    render_markdown(&gated_sections(c, verdict, rows))
}

/// The criteria whose threshold this many rows cannot detect, when there are any.
fn warnings_section(verdict: &Verdict) -> Option<Section> {
    (!verdict.warnings.is_empty()).then(|| Section {
        title: "warning".into(),
        headers: Vec::new(),
        rows: verdict
            .warnings
            .iter()
            .map(|w| vec![w.message.clone()])
            .collect(),
        empty: "none",
    })
}

/// The comparison as JSON, with the same `rows` limit on the listed rows as text and Markdown.
pub fn comparison_json(c: &Comparison, rows: usize) -> Value {
    let mut trimmed = c.clone();
    trimmed.regressed.truncate(rows);
    trimmed.improved.truncate(rows);
    trimmed.flaky.truncate(rows);
    serde_json::to_value(&trimmed).unwrap_or(Value::Null)
}

fn criteria_section(verdict: &Verdict) -> Section {
    Section {
        title: "gate".into(),
        headers: vec![
            "criterion".into(),
            "threshold".into(),
            "actual".into(),
            "result".into(),
        ],
        rows: verdict
            .criteria
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.threshold_text(),
                    c.actual_text(),
                    if c.passed {
                        "pass".into()
                    } else {
                        "FAIL".into()
                    },
                ]
            })
            .collect(),
        empty: "no criterion could be checked",
    }
}

pub fn promotion_text(v: &PromotionView<'_>) -> String {
    let all = gated_sections(v.comparison, Some(v.verdict), 5);
    format!("{}\n\n{}", v.headline(), render_text(&all))
}

pub fn promotion_markdown(v: &PromotionView<'_>) -> String {
    let all = gated_sections(v.comparison, Some(v.verdict), 10);
    format!("## {}\n\n{}", v.headline(), render_markdown(&all))
}

/// The promotion as JSON: the view, with the comparison's listed rows cut to 10.
pub fn promotion_json(v: &PromotionView<'_>) -> Value {
    let mut value = serde_json::to_value(v).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("comparison".into(), comparison_json(v.comparison, 10));
    }
    value
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One JUnit test case per criterion, so CI systems show the gate like a test run.
pub fn verdict_junit(o: &PromotionView<'_>) -> String {
    let verdict = o.verdict;
    let failures = verdict.criteria.iter().filter(|c| !c.passed).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let suite = format!("promote {} {} -> {}", o.prompt, o.from, o.to);
    xml.push_str(&format!(
        "<testsuites name=\"runner\" tests=\"{}\" failures=\"{failures}\">\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
        verdict.criteria.len().max(1),
        xml_escape(&suite),
        verdict.criteria.len().max(1),
    ));
    if verdict.criteria.is_empty() {
        xml.push_str("    <testcase name=\"gate\" classname=\"runner.gate\">\n      <failure message=\"no criterion could be checked\"/>\n    </testcase>\n");
    }
    for c in &verdict.criteria {
        xml.push_str(&format!(
            "    <testcase name=\"{}\" classname=\"runner.gate\">\n",
            xml_escape(&c.name)
        ));
        if !c.passed {
            xml.push_str(&format!(
                "      <failure message=\"{}\">expected {}, got {}</failure>\n",
                xml_escape(&format!(
                    "{} {}: got {}",
                    c.name,
                    c.threshold_text(),
                    c.actual_text()
                )),
                xml_escape(&c.threshold_text()),
                xml_escape(&c.actual_text())
            ));
        }
        // The measured value (with its interval, where the criterion has one) and any power
        // warning, so a CI test view shows them for passing criteria too.
        let mut out = format!("{} {}: {}", c.name, c.threshold_text(), c.actual_text());
        for w in verdict.warnings.iter().filter(|w| w.criterion == c.name) {
            out.push_str(&format!("\nwarning: {}", w.message));
        }
        xml.push_str(&format!(
            "      <system-out>{}</system-out>\n",
            xml_escape(&out)
        ));
        xml.push_str("    </testcase>\n");
    }
    // What the gate did not check, where a CI test view shows the suite's output.
    if !verdict.notes.is_empty() {
        let notes: Vec<String> = verdict.notes.iter().map(|n| format!("note: {n}")).collect();
        xml.push_str(&format!(
            "    <system-out>{}</system-out>\n",
            xml_escape(&notes.join("\n"))
        ));
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Difference, EvalDelta, RowSide, SideMetrics};
    use crate::gate::{Criterion, Policy, Unit};

    fn side(label: &str) -> SideMetrics {
        SideMetrics {
            experiment: format!("exp_{label}"),
            label: format!("greet {label}"),
            dataset_hash: "h".into(),
            rows: 2,
            results: 2,
            error_rate: 0.0,
            latency_p50_ms: Some(100.0),
            latency_p95_ms: Some(120.0),
            tokens_in: 10,
            tokens_out: 20,
            model: "gpt-4o-mini".into(),
            mock: false,
            // 10 in, 20 out at $0.15 / $0.60 per 1M tokens.
            cost_usd: Some(0.0000135),
            cost_per_row_usd: Some(0.00000675),
            evaluators: vec![crate::compare::EvalMetric {
                evaluator: "icontains".into(),
                pass_rate: 1.0,
                mean_score: 1.0,
                pass_rate_se: Some(0.1),
                // Wilson's interval for 2 of 2.
                pass_rate_ci: Some([0.342, 1.0]),
                mean_score_se: Some(0.1),
                mean_score_ci: Some([0.8, 1.2]),
                pass_rate_se_note: None,
                mean_score_se_note: None,
            }],
        }
    }

    fn comparison() -> Comparison {
        let row = |passed: bool, out: &str| RowSide {
            passed,
            score: if passed { 1.0 } else { 0.0 },
            agreement: 1.0,
            output: out.into(),
        };
        Comparison {
            confidence: 0.95,
            power: crate::stats::POWER,
            cluster_column: None,
            baseline: Some(side("v1 (production)")),
            candidate: {
                let mut s = side("v2 (staging)");
                s.latency_p95_ms = Some(90.0);
                // 1 of 2.
                s.evaluators[0].pass_rate = 0.5;
                s.evaluators[0].pass_rate_ci = Some([0.095, 0.905]);
                s
            },
            evaluators: vec![EvalDelta {
                evaluator: "icontains".into(),
                baseline_pass_rate: Some(1.0),
                candidate_pass_rate: 0.5,
                delta: Some(-0.5),
                baseline_mean_score: Some(1.0),
                candidate_mean_score: 0.5,
                improved: 0,
                regressed: 1,
                unchanged: 1,
                pass_rate_difference: Some(Difference {
                    rows: 2,
                    clusters: None,
                    estimate: -0.5,
                    se: 0.2,
                    se_note: None,
                    ci: [-0.9, -0.1],
                    df: 1.0,
                    p_value: 1.0,
                    test: "McNemar's exact test".into(),
                    minimum_detectable_effect: 0.56,
                    unpaired_se: Some(0.3),
                }),
                mean_score_difference: None,
            }],
            regressed: vec![RowChange {
                row_id: "2".into(),
                evaluator: "icontains".into(),
                input: "Acme | Refund | please".into(),
                baseline: row(true, "Refunds take 5 days"),
                candidate: row(false, "I cannot help"),
            }],
            regressed_total: 1,
            improved: vec![],
            improved_total: 0,
            only_in_baseline: vec![],
            only_in_candidate: vec!["9".into()],
            flaky: vec![],
            flaky_total: 0,
            new_failures: vec!["2".into()],
            errored_one_side: Default::default(),
        }
    }

    fn verdict() -> Verdict {
        Verdict {
            passed: false,
            criteria: vec![
                Criterion {
                    name: "min pass rate [icontains]".into(),
                    op: ">=".into(),
                    threshold: 0.9,
                    actual: Some(0.5),
                    unit: Unit::Fraction,
                    passed: false,
                    detail: None,
                },
                Criterion {
                    name: "max error rate".into(),
                    op: "<=".into(),
                    threshold: 0.05,
                    actual: Some(0.0),
                    unit: Unit::Fraction,
                    passed: true,
                    detail: None,
                },
            ],
            policy: Policy::default(),
            warnings: vec![],
            notes: vec![],
        }
    }

    fn outcome<'a>(verdict: &'a Verdict, comparison: &'a Comparison) -> PromotionView<'a> {
        PromotionView {
            prompt: "greet",
            from: "staging",
            to: "production",
            candidate_version: 2,
            baseline_version: Some(1),
            passed: verdict.passed,
            dry_run: false,
            moved: false,
            verdict,
            comparison,
        }
    }

    #[test]
    fn comparison_text_snapshot() {
        insta::assert_snapshot!(comparison_text(&comparison(), 10));
    }

    #[test]
    fn comparison_markdown_snapshot() {
        insta::assert_snapshot!(comparison_markdown(&comparison(), 10));
    }

    #[test]
    fn junit_snapshot() {
        let (verdict, comparison) = (verdict(), comparison());
        insta::assert_snapshot!(verdict_junit(&outcome(&verdict, &comparison)));
    }

    #[test]
    fn text_markdown_and_json_carry_the_same_rows() {
        let c = comparison();
        let text = comparison_text(&c, 10);
        let markdown = comparison_markdown(&c, 10);
        let json = comparison_json(&c, 10);
        for needle in ["I cannot help", "Refunds take 5 days", "candidate only"] {
            assert!(
                text.contains(needle) && markdown.contains(needle),
                "{needle}"
            );
        }
        assert_eq!(json["regressed"][0]["candidate"]["output"], "I cannot help");
        assert_eq!(json["only_in_candidate"][0], "9");
        let verdict = verdict();
        let view = outcome(&verdict, &c);
        let headline = promotion_text(&view);
        assert!(
            headline.starts_with("gate FAILED, nothing moved: greet staging v2 → production (v1)")
        );
        assert!(headline.contains("FAIL"));
        // One view feeds every renderer: the JSON names what the text and JUnit say.
        let promotion = promotion_json(&view);
        assert_eq!(promotion["passed"], false);
        assert_eq!(promotion["candidate_version"], 2);
        assert_eq!(promotion["comparison"]["regressed_total"], 1);
        assert!(promotion_markdown(&view).starts_with("## gate FAILED"));
        assert!(verdict_junit(&view).contains("<failure"));
    }
}
