//! A prompt's Rollout section: each running canary rollout (its step and share, each metric per
//! arm with its interval against the margin and the verdict so far, the decision a look would
//! take now and what comes next) with the advance and stop forms offered to write tokens, and
//! the last few finished rollouts with the evidence of their last look. Renders HTML only: the
//! handlers check the role and the CSRF token, and the decisions are `domain::canary`'s.

use super::{badge, csrf_field, time, version_href};
use crate::canary::{Rollout, Verdict};
use crate::report::{decision_text, verdict_text};
use crate::ui::Viewer;
use crate::ui::html::{Html, url_part};
use crate::workflow::canary::View;

/// Finished rollouts the section lists.
pub const FINISHED_SHOWN: usize = 5;

/// The section, or nothing when the prompt never had a rollout.
pub fn rollouts(
    body: &mut Html,
    viewer: &Viewer,
    name: &str,
    running: &[View],
    finished: &[Rollout],
) {
    if running.is_empty() && finished.is_empty() {
        return;
    }
    body.raw("<section id=\"rollout\"><h2>Rollout</h2>");
    if running.is_empty() {
        body.raw("<p class=\"muted\">no rollout running</p>");
    }
    for view in running {
        active(body, viewer, name, view);
    }
    if !finished.is_empty() {
        finished_list(body, name, finished);
    }
    body.raw("</section>");
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.4}"))
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::NonInferior => "pass",
        Verdict::Inferior => "fail",
        Verdict::Inconclusive => "unchanged",
    }
}

fn active(body: &mut Html, viewer: &Viewer, name: &str, view: &View) {
    let r = &view.rollout;
    body.raw("<div class=\"rollout\"><h3>");
    badge(body, &r.tag, "");
    body.raw(" ")
        .link(&version_href(name, r.baseline), &format!("v{}", r.baseline))
        .raw(" → ")
        .link(
            &version_href(name, r.candidate),
            &format!("v{}", r.candidate),
        )
        .raw(" ");
    badge(body, "running", "running");
    body.raw("</h3><p class=\"step\">Step ")
        .display(r.step + 1)
        .raw(" of ")
        .display(r.steps.len())
        .raw(": ")
        .text(&format!("{}% of lookups get v{}", view.share, r.candidate))
        .raw(" <progress max=\"100\"")
        .attr("value", &view.share.to_string())
        .raw(">")
        .text(&format!("{}%", view.share))
        .raw("</progress></p><p class=\"muted\">")
        .text(&format!(
            "{} s in the step, {} candidate requests ({:.0}% of a step of {}); steps {}; \
             looks {} of {} planned at confidence {}; rollout {} started ",
            view.in_step_ms / 1_000,
            view.candidate_spans,
            (view.progress * 100.0).min(100.0),
            r.step_after.text(),
            r.steps
                .iter()
                .map(|s| format!("{s}%"))
                .collect::<Vec<_>>()
                .join(" → "),
            r.looks,
            r.planned_looks(),
            r.confidence,
            r.id,
        ));
    time(body, &crate::production::time_text(r.created_ms));
    body.raw(" by ").text(&r.actor).raw("</p>");
    if let Some(look) = &view.now {
        body.raw("<div class=\"scroll\"><table class=\"list rollout-metrics cards\"><thead><tr>")
            .raw("<th>Metric</th><th class=\"num\">Baseline</th><th class=\"num\">Candidate</th>")
            .raw("<th class=\"num\">Worse by [interval]</th><th class=\"num\">Margin</th>")
            .raw("<th>Verdict</th></tr></thead><tbody>");
        for m in &look.metrics {
            body.raw("<tr><td>")
                .text(&m.metric)
                .raw("</td><td class=\"num\" data-label=\"Baseline\">")
                .text(&format!(
                    "{} ({} spans)",
                    number(m.baseline),
                    m.baseline_spans
                ))
                .raw("</td><td class=\"num\" data-label=\"Candidate\">")
                .text(&format!(
                    "{} ({} spans)",
                    number(m.candidate),
                    m.candidate_spans
                ))
                .raw("</td><td class=\"num\" data-label=\"Worse by\">")
                .text(&match (m.worse_by, m.interval) {
                    (Some(w), Some([lo, hi])) => format!("{w:+.4} [{lo:+.4}, {hi:+.4}]"),
                    _ => "–".into(),
                })
                .raw("</td><td class=\"num\" data-label=\"Margin\">")
                .text(&format!("{:.4}", m.margin))
                .raw("</td><td data-label=\"Verdict\">");
            badge(body, verdict_text(m.verdict), verdict_class(m.verdict));
            body.raw("</td></tr>");
        }
        body.raw("</tbody></table></div><p class=\"muted\">")
            .text(&format!(
                "intervals at {:.3}% per side (alpha {:.5} per look)",
                look.alpha * 100.0,
                look.alpha
            ))
            .raw("</p><p><strong>Decision so far:</strong> ")
            .text(decision_text(look.decision))
            .raw("</p>");
    }
    body.raw("<p><strong>Next:</strong> ")
        .text(&view.next)
        .raw("</p>");
    if viewer.can_write() {
        actions(body, viewer, name, r);
    }
    body.raw("</div>");
}

/// Advance (or complete, at the last step) and stop, each a form of its own.
fn actions(body: &mut Html, viewer: &Viewer, name: &str, r: &Rollout) {
    let last = r.step + 1 >= r.steps.len();
    body.raw("<div class=\"forms\"><form method=\"post\" class=\"action\"")
        .attr(
            "action",
            &format!("/prompts/{}/rollouts/advance", url_part(name)),
        )
        .raw("><h3>Advance by hand</h3>");
    csrf_field(body, viewer);
    body.raw("<input type=\"hidden\" name=\"tag\"")
        .attr("value", &r.tag)
        .raw("><p class=\"muted\">")
        .text(&if last {
            format!(
                "Completes the rollout now: {} moves to v{} whatever the evidence says.",
                r.tag, r.candidate
            )
        } else {
            format!(
                "Moves to the next step now: {}% of lookups get v{}.",
                r.steps[r.step + 1],
                r.candidate
            )
        })
        .raw("</p><button type=\"submit\">")
        .text(if last { "Complete" } else { "Advance" })
        .raw("</button></form><form method=\"post\" class=\"action\"")
        .attr(
            "action",
            &format!("/prompts/{}/rollouts/stop", url_part(name)),
        )
        .raw("><h3>Stop the rollout</h3>");
    csrf_field(body, viewer);
    body.raw("<input type=\"hidden\" name=\"tag\"")
        .attr("value", &r.tag)
        .raw("><p class=\"muted\">")
        .text(&format!(
            "v{} is no longer served; {} stays on v{}.",
            r.candidate, r.tag, r.baseline
        ))
        .raw("</p><label>Message <input name=\"message\" maxlength=\"500\" placeholder=\"why (kept in the tag history)\"></label>")
        .raw("<button type=\"submit\">Stop</button></form></div>");
}

/// The last few finished rollouts, newest first: how each ended, when, and its last look.
fn finished_list(body: &mut Html, name: &str, finished: &[Rollout]) {
    body.raw(
        "<h3>Finished rollouts</h3><div class=\"scroll\"><table class=\"list cards\"><thead><tr>",
    )
    .raw("<th>Rollout</th><th>Tag</th><th>Versions</th><th>Status</th><th>Ended</th>")
    .raw("<th>Last look</th></tr></thead><tbody>");
    for r in finished.iter().take(FINISHED_SHOWN) {
        body.raw("<tr><td>")
            .text(&r.id)
            .raw("</td><td data-label=\"Tag\">")
            .text(&r.tag)
            .raw("</td><td data-label=\"Versions\">")
            .link(&version_href(name, r.baseline), &format!("v{}", r.baseline))
            .raw(" → ")
            .link(
                &version_href(name, r.candidate),
                &format!("v{}", r.candidate),
            )
            .raw("</td><td data-label=\"Status\">");
        badge(
            body,
            &r.status.as_str().replace('_', " "),
            r.status.as_str(),
        );
        body.raw("</td><td data-label=\"Ended\">");
        time(body, &crate::production::time_text(r.updated_ms));
        body.raw("</td><td data-label=\"Last look\">");
        if let Some(last) = &r.last_look {
            last_look(body, last);
        }
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table></div>");
}

/// A finished rollout's recorded evidence: the decision, where, and each metric's verdict.
fn last_look(body: &mut Html, last: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").replace('_', " ");
    body.raw("<span class=\"verdict\">")
        .text(&text(&last["decision"]))
        .raw("</span> ")
        .text(&format!(
            "at step {} ({}% of lookups)",
            last["step"].as_u64().map_or(0, |s| s + 1),
            last["share"].as_u64().unwrap_or(0)
        ));
    if let Some(message) = last["message"].as_str() {
        body.raw(": ").text(message);
    }
    for m in last["metrics"].as_array().into_iter().flatten() {
        body.raw("<br><span class=\"muted\">")
            .text(&format!(
                "{}: {} vs {} ({} / {} spans), worse by {}",
                m["metric"].as_str().unwrap_or(""),
                number(m["baseline"].as_f64()),
                number(m["candidate"].as_f64()),
                m["baseline_spans"].as_u64().unwrap_or(0),
                m["candidate_spans"].as_u64().unwrap_or(0),
                match (m["worse_by"].as_f64(), m["interval"].as_array()) {
                    (Some(w), Some(i)) if i.len() == 2 => format!(
                        "{w:+.4} [{:+.4}, {:+.4}]",
                        i[0].as_f64().unwrap_or(f64::NAN),
                        i[1].as_f64().unwrap_or(f64::NAN)
                    ),
                    _ => "–".into(),
                }
            ))
            .raw("</span> ");
        badge(
            body,
            &m["verdict"].as_str().unwrap_or("").replace('_', "-"),
            match m["verdict"].as_str() {
                Some("non_inferior") => "pass",
                Some("inferior") => "fail",
                _ => "unchanged",
            },
        );
    }
}
