//! Two experiments compared: the promotion that cited them (its verdict and criteria), their
//! metrics side by side with each change, and the rows whose verdict changed, with a diff of
//! their outputs. Owns `ChangeFilter` and the `CompareRow` view its handler builds. Renders
//! HTML only: the comparison is computed by `crate::compare` and the rows are read by the
//! handler; no store access, no I/O.

use super::{
    badge, compare_href, experiment_href, filter_links, folded, layout, ms, pager, percent,
    short_id, time,
};
use crate::compare::{Comparison, SideMetrics};
use crate::model::{Experiment, RowText, TagEvent};
use crate::ui::html::Html;
use crate::ui::{UiError, Viewer, diff};
use crate::view::Evidence;

/// The gate's criteria as recorded: one row each, with what was required, what was measured
/// and the outcome (older promotions recorded them as text).
fn criteria(out: &mut Html, recorded: &[serde_json::Value]) {
    out.raw("<div class=\"scroll\"><table class=\"list cards\"><thead><tr><th>Criterion</th>")
        .raw("<th class=\"num\">Required</th><th class=\"num\">Measured</th><th>Outcome</th></tr></thead><tbody>");
    for value in recorded {
        match serde_json::from_value::<crate::gate::Criterion>(value.clone()) {
            Ok(c) => {
                out.raw("<tr><td>")
                    .text(&c.name)
                    .raw("</td><td class=\"num\" data-label=\"Required\">")
                    .text(&c.threshold_text())
                    .raw("</td><td class=\"num\" data-label=\"Measured\">")
                    .text(&c.actual_text())
                    .raw("</td><td data-label=\"Outcome\">");
                let outcome = if c.passed { "pass" } else { "fail" };
                badge(out, outcome, outcome);
                out.raw("</td></tr>");
            }
            Err(_) => {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.raw("<tr><td colspan=\"4\">")
                    .text(&text)
                    .raw("</td></tr>");
            }
        }
    }
    out.raw("</tbody></table></div>");
}

/// Which rows a comparison page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeFilter {
    /// Regressed rows, then improved ones.
    Changed,
    Regressed,
    Improved,
    /// Every row, in row-id order.
    All,
}

impl ChangeFilter {
    pub fn parse(text: Option<&str>) -> Result<ChangeFilter, UiError> {
        match text.unwrap_or("changed") {
            "" | "changed" => Ok(ChangeFilter::Changed),
            "regressed" => Ok(ChangeFilter::Regressed),
            "improved" => Ok(ChangeFilter::Improved),
            "all" => Ok(ChangeFilter::All),
            other => Err(UiError::bad(format!(
                "show: expected changed, regressed, improved or all, got '{other}'"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ChangeFilter::Changed => "changed",
            ChangeFilter::Regressed => "regressed",
            ChangeFilter::Improved => "improved",
            ChangeFilter::All => "all",
        }
    }
}

/// One row of a comparison page: how it changed, the evaluator whose verdict changed (None
/// when the row is shown whole), and on each side that has the row, whether it passed and
/// its texts.
pub struct CompareRow {
    pub kind: crate::compare::RowKind,
    pub row_id: String,
    pub evaluator: Option<String>,
    pub baseline: Option<(bool, Option<RowText>)>,
    pub candidate: Option<(bool, Option<RowText>)>,
}

pub struct ComparePage<'a> {
    pub baseline: &'a Experiment,
    pub candidate: &'a Experiment,
    pub comparison: &'a Comparison,
    pub verdict: Option<&'a (TagEvent, Evidence)>,
    pub show: ChangeFilter,
    pub page: usize,
    pub per_page: usize,
    /// This page's rows, and how many the filter keeps in all.
    pub rows: &'a [CompareRow],
    pub total: usize,
}

/// How a change between two figures is written.
#[derive(Clone, Copy)]
enum Change {
    /// A share, as percentage points.
    Points,
    Ms,
    Count,
    /// A relative change of a cost, in percent.
    Percent,
}

/// A change, green when it is for the better, red when for the worse.
fn delta(out: &mut Html, change: Option<f64>, higher_is_better: bool, unit: Change) {
    let Some(d) = change else {
        return;
    };
    let better = (d > 0.0) == higher_is_better;
    let sign = if d > 0.0 { "+" } else { "−" };
    let (magnitude, suffix) = match unit {
        Change::Points => (format!("{:.1}", d.abs() * 100.0), " pt"),
        Change::Ms => (format!("{:.0}", d.abs()), " ms"),
        Change::Count => (format!("{:.0}", d.abs()), ""),
        Change::Percent => (format!("{:.1}", d.abs() * 100.0), "%"),
    };
    // A change that rounds to nothing is no change, neither better nor worse.
    if magnitude.parse::<f64>().is_ok_and(|m| m == 0.0) {
        out.raw("<span class=\"delta muted\">±0</span>");
        return;
    }
    out.raw("<span")
        .attr("class", if better { "delta up" } else { "delta down" })
        .raw(">")
        .text(&format!("{sign}{magnitude}{suffix}"))
        .raw("</span>");
}

/// The output one side of a comparison row shows ("" when its texts were not read).
fn side_output(side: &Option<(bool, Option<RowText>)>) -> &str {
    side.as_ref()
        .and_then(|(_, t)| t.as_ref())
        .map_or("", |t| t.output.as_str())
}

pub fn compare(viewer: &Viewer, p: &ComparePage<'_>) -> String {
    let mut body = Html::new();
    heading(&mut body, p);
    if let Some((event, evidence)) = p.verdict {
        promotion(&mut body, event, evidence);
    }
    metrics(&mut body, p);
    rows(&mut body, p);
    layout(Some(viewer), "compare", &body)
}

/// The crumbs and the title, and a warning when the two experiments ran on different datasets.
fn heading(body: &mut Html, p: &ComparePage<'_>) {
    super::experiment::crumbs(body, p.candidate.prompt.as_deref());
    body.raw("<h1>Compare</h1>");
    if !p.comparison.same_dataset() {
        body.raw("<p class=\"error\" role=\"alert\">The two experiments ran on different datasets: rows are matched by id, and no gate accepts this comparison.</p>");
    }
}

/// The promotion that cited this comparison: the tag move, the verdict, the criteria and notes.
fn promotion(body: &mut Html, event: &TagEvent, evidence: &Evidence) {
    body.raw("<section class=\"verdict-box\"><h2>Promotion</h2><p>");
    badge(body, "promote", "promote");
    body.raw(" <strong>")
        .text(&event.tag)
        .raw("</strong> ")
        .text(&format!(
            "v{} → v{}",
            event.from_seq.map_or("–".into(), |n| n.to_string()),
            event.to_seq.map_or("–".into(), |n| n.to_string())
        ))
        .raw(" by ")
        .text(&event.actor)
        .raw(" ");
    time(body, &event.at);
    body.raw("</p><p class=\"verdict\">")
        .text(&evidence.verdict)
        .raw("</p>");
    // Both sides' error rates are in the criteria (the `max error rate` row).
    criteria(body, &evidence.criteria);
    for note in &evidence.notes {
        body.raw("<p class=\"note\">Note: ").text(note).raw("</p>");
    }
    body.raw("</section>");
}

/// A side's header: its version and short id, or its name when it names no version.
fn side_label(e: &Experiment) -> String {
    match e.version_seq {
        Some(seq) => format!("v{seq} {}", short_id(&e.id)),
        None => format!(
            "{} {}",
            e.name.as_deref().unwrap_or("experiment"),
            short_id(&e.id)
        ),
    }
}

/// The metrics side by side: each evaluator's pass rate, then (when there is a baseline) the
/// error rate, latency, tokens, cost and rows.
fn metrics(body: &mut Html, p: &ComparePage<'_>) {
    let c = p.comparison;
    // A phone reads the table as cards without its header, so the two sides' links are here.
    body.raw("<p class=\"phone-only\">Baseline ")
        .link(&experiment_href(&p.baseline.id), &side_label(p.baseline))
        .raw(" · Candidate ")
        .link(&experiment_href(&p.candidate.id), &side_label(p.candidate))
        .raw("</p>");
    body.raw("<div class=\"scroll\"><table class=\"list metrics cards\"><thead><tr><th>Metric</th><th>Baseline ")
        .link(&experiment_href(&p.baseline.id), &side_label(p.baseline))
        .raw("</th><th>Candidate ")
        .link(&experiment_href(&p.candidate.id), &side_label(p.candidate))
        .raw("</th><th>Change</th></tr></thead><tbody>");
    pass_rate_rows(body, c);
    if let Some(b) = &c.baseline {
        side_metric_rows(body, c, b);
    }
    body.raw("</tbody></table></div>");
}

/// The interval of one side's pass rate for an evaluator, ` (…)`, or "" when it has none.
fn margin(side: Option<&SideMetrics>, name: &str) -> String {
    side.and_then(|m| m.evaluators.iter().find(|e| e.evaluator == name))
        .and_then(|m| m.pass_rate_ci)
        .map(|ci| format!(" ({})", crate::stats::rate_interval(ci)))
        .unwrap_or_default()
}

/// Each pass rate with its interval (Wilson's, not symmetric about the rate); the change with
/// the paired difference's interval and p-value, as `runner compare` prints them.
fn pass_rate_rows(body: &mut Html, c: &Comparison) {
    for e in &c.evaluators {
        body.raw("<tr><td>")
            .text(&format!("{} pass rate", e.evaluator))
            .raw("</td><td class=\"num\" data-label=\"Baseline\">")
            .text(&e.baseline_pass_rate.map_or("–".into(), |v| {
                format!(
                    "{}{}",
                    percent(v),
                    margin(c.baseline.as_ref(), &e.evaluator)
                )
            }))
            .raw("</td><td class=\"num\" data-label=\"Candidate\">")
            .text(&format!(
                "{}{}",
                percent(e.candidate_pass_rate),
                margin(Some(&c.candidate), &e.evaluator)
            ))
            .raw("</td><td data-label=\"Change\">");
        delta(body, e.delta, true, Change::Points);
        body.raw(" <span class=\"muted small\">")
            .text(&format!(
                "{} regressed · {} improved",
                e.regressed, e.improved
            ))
            .raw("</span>");
        if let Some(d) = &e.pass_rate_difference {
            body.raw("<br><span class=\"muted small\">")
                .text(&crate::gate::difference_text(d, c.confidence))
                .raw("</span>");
        }
        body.raw("</td></tr>");
    }
}

/// The figures both sides have, baseline `b` against the candidate: error rate, latency,
/// tokens and cost, where lower is better for every one, then the rows each side has.
fn side_metric_rows(body: &mut Html, c: &Comparison, b: &SideMetrics) {
    let k = &c.candidate;
    let between = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    let tokens = |m: &SideMetrics| (m.tokens_in + m.tokens_out) as f64;
    let cost = |m: &SideMetrics| match m.cost_per_row_usd {
        Some(usd) => crate::cost::run_usd(usd, m.mock),
        None => "no price".to_string(),
    };
    let rows = [
        (
            "error rate",
            percent(b.error_rate),
            percent(k.error_rate),
            Some(k.error_rate - b.error_rate),
            Change::Points,
        ),
        (
            "p50 latency",
            ms(b.latency_p50_ms),
            ms(k.latency_p50_ms),
            between(b.latency_p50_ms, k.latency_p50_ms),
            Change::Ms,
        ),
        (
            "p95 latency",
            ms(b.latency_p95_ms),
            ms(k.latency_p95_ms),
            between(b.latency_p95_ms, k.latency_p95_ms),
            Change::Ms,
        ),
        (
            "tokens",
            tokens(b).to_string(),
            tokens(k).to_string(),
            Some(tokens(k) - tokens(b)),
            Change::Count,
        ),
        (
            "cost per row",
            cost(b),
            cost(k),
            b.cost_per_row_usd
                .zip(k.cost_per_row_usd)
                .filter(|(b, _)| *b > 0.0)
                .map(|(b, k)| k / b - 1.0),
            Change::Percent,
        ),
    ];
    // Lower is better for every one of these.
    for (name, base, cand, change, unit) in rows {
        body.raw("<tr><td>")
            .text(name)
            .raw("</td><td class=\"num\" data-label=\"Baseline\">")
            .text(&base)
            .raw("</td><td class=\"num\" data-label=\"Candidate\">")
            .text(&cand)
            .raw("</td><td data-label=\"Change\">");
        delta(body, change, false, unit);
        body.raw("</td></tr>");
    }
    body.raw("<tr><td>rows</td><td class=\"num\" data-label=\"Baseline\">")
        .display(b.rows)
        .raw("</td><td class=\"num\" data-label=\"Candidate\">")
        .display(k.rows)
        .raw("</td><td class=\"muted small\" data-label=\"Change\">")
        .text(&format!(
            "{} only in baseline · {} only in candidate · {} new failures",
            c.only_in_baseline.len(),
            c.only_in_candidate.len(),
            c.new_failures.len()
        ))
        .raw("</td></tr>");
}

/// The link to this comparison showing `show`, at `page`.
fn rows_href(p: &ComparePage<'_>, show: &str, page: usize) -> String {
    compare_href(&p.baseline.id, &p.candidate.id) + &format!("&show={show}&page={page}")
}

/// The rows: changed ones (regressed first), or every one, with the filter and the pager.
fn rows(body: &mut Html, p: &ComparePage<'_>) {
    body.raw(if p.show == ChangeFilter::All {
        "<h2>Every row</h2>"
    } else {
        "<h2>Rows whose verdict changed</h2>"
    });
    filter_links(
        body,
        p.show.as_str(),
        &["changed", "regressed", "improved", "all"],
        &|s| rows_href(p, s, 1),
    );
    body.raw(
        "<div class=\"scroll\"><table class=\"rows compare cards stacked pair\"><thead><tr><th>Row</th><th>Input</th>",
    )
    .raw("<th>Baseline output</th><th>Candidate output</th><th>Diff</th></tr></thead><tbody>");
    if p.rows.is_empty() {
        body.raw("<tr><td colspan=\"5\" class=\"muted\">")
            .text(if p.show == ChangeFilter::All {
                "no rows"
            } else {
                "no rows changed verdict"
            })
            .raw("</td></tr>");
    }
    for r in p.rows {
        row(body, r);
    }
    body.raw("</tbody></table></div>");
    pager(body, p.page, p.per_page, p.total, &|n| {
        rows_href(p, p.show.as_str(), n)
    });
}

/// One row of the table: its id, how it changed and on which evaluator, its input (and
/// expectation), each side's cell, and the diff of the two outputs when both sides have it.
fn row(body: &mut Html, r: &CompareRow) {
    body.raw("<tr><td><code>")
        .text(&r.row_id)
        .raw("</code><div>");
    let kind = r.kind.as_str();
    badge(body, kind, &kind.replace(' ', "-"));
    body.raw("</div>");
    if let Some(evaluator) = &r.evaluator {
        body.raw("<div class=\"muted small\">")
            .text(evaluator)
            .raw("</div>");
    }
    body.raw("</td><td class=\"wide\" data-label=\"Input\">");
    let input = [&r.candidate, &r.baseline]
        .into_iter()
        .find_map(|s| s.as_ref().and_then(|(_, t)| t.as_ref()));
    if let Some(t) = input {
        folded(body, &t.input);
        if let Some(expected) = &t.expected {
            body.raw("<div class=\"muted small\">expected: ")
                .text(expected)
                .raw("</div>");
        }
    }
    body.raw("</td><td data-label=\"Baseline\">");
    side_cell(body, &r.baseline);
    body.raw("</td><td data-label=\"Candidate\">");
    side_cell(body, &r.candidate);
    body.raw("</td><td class=\"wide\" data-label=\"Diff\">");
    if r.baseline.is_some() && r.candidate.is_some() {
        diff::render(side_output(&r.baseline), side_output(&r.candidate), body);
    }
    body.raw("</td></tr>");
}

/// A side's cell: its verdict and output; a side without the row says so.
fn side_cell(body: &mut Html, side: &Option<(bool, Option<RowText>)>) {
    match side {
        Some((passed, text)) => {
            let verdict = if *passed { "pass" } else { "fail" };
            badge(body, verdict, verdict);
            if let Some(t) = text {
                if t.error {
                    badge(body, "error", "error");
                }
                folded(body, &t.output);
            }
        }
        None => {
            body.raw("<span class=\"muted\">not in this experiment</span>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(change: Option<f64>, higher_is_better: bool, unit: Change) -> String {
        let mut out = Html::new();
        delta(&mut out, change, higher_is_better, unit);
        out.into_string()
    }

    #[test]
    fn a_change_that_rounds_to_nothing_is_neither_better_nor_worse() {
        assert_eq!(
            shown(Some(0.4), false, Change::Ms),
            "<span class=\"delta muted\">±0</span>"
        );
        assert_eq!(
            shown(Some(0.0004), true, Change::Points),
            "<span class=\"delta muted\">±0</span>"
        );
        assert_eq!(
            shown(Some(0.6), false, Change::Ms),
            "<span class=\"delta down\">+1 ms</span>"
        );
        assert_eq!(
            shown(Some(-0.05), true, Change::Points),
            "<span class=\"delta down\">−5.0 pt</span>"
        );
        assert_eq!(shown(None, true, Change::Count), "");
    }
}
