//! A prompt's experiments: the pass-rate chart (inline SVG, drawn on the server), the compare
//! form with the pair it starts with, and one row per experiment with its summary. Renders HTML
//! only from the experiments and summaries its handler read: no store access, no I/O, no figure
//! computed beyond placing and formatting those the summaries carry.

use super::{
    badge, experiment_href, layout, ms, pass_rates, percent, prompt_href, short_id, short_time,
    time, version_href,
};
use crate::model::{Experiment, Summary};
use crate::ui::Viewer;
use crate::ui::html::Html;

pub fn experiments(viewer: &Viewer, name: &str, items: &[(Experiment, Summary)]) -> String {
    let mut body = Html::new();
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / ")
        .link(&prompt_href(name), name)
        .raw(" /</p><h1>Experiments</h1>");
    if items.is_empty() {
        body.raw("<p class=\"muted\">no experiments yet: <code>runner experiment --prompt ")
            .text(name)
            .raw(" --dataset FILE</code></p>");
        return layout(Some(viewer), "experiments", &body);
    }
    chart(&mut body, items);
    if items.len() > 1 {
        body.raw("<form method=\"get\" action=\"/compare\" class=\"filters\"><label>Baseline <select name=\"baseline\">");
        let (baseline, candidate) = default_pair(items);
        experiment_options(&mut body, items, Some(baseline));
        body.raw("</select></label><label>Candidate <select name=\"candidate\">");
        experiment_options(&mut body, items, Some(candidate));
        body.raw("</select></label><button type=\"submit\">Compare</button></form>");
    }
    body.raw("<div class=\"scroll\"><table class=\"list\"><thead><tr><th>Experiment</th><th class=\"num\">Version</th><th>Tag</th>")
        .raw("<th>Dataset</th><th>Model</th><th>Pass rate</th><th class=\"num\">Errors</th><th class=\"num\">p50</th>")
        .raw("<th class=\"num\">p95</th><th class=\"num\">Tokens</th><th>Date</th><th>Status</th></tr></thead><tbody>");
    for (e, s) in items {
        body.raw("<tr><td>")
            .link(
                &experiment_href(&e.id),
                e.name.as_deref().unwrap_or(short_id(&e.id)),
            )
            .raw("</td><td class=\"num\">")
            .link(
                &version_href(&e.prompt, e.version_seq),
                &format!("v{}", e.version_seq),
            )
            .raw("</td><td>");
        if let Some(tag) = &e.tag {
            badge(&mut body, tag, "");
        }
        body.raw("</td><td>")
            .text(&dataset_name(&e.dataset.path))
            .raw(" <span class=\"muted\">")
            .text(&format!("{} rows", e.dataset.rows))
            .raw("</span></td><td>")
            .text(&e.model)
            .raw("</td><td>");
        pass_rates(&mut body, s);
        body.raw("</td><td class=\"num\">")
            .text(&percent(s.error_rate))
            .raw("</td><td class=\"num\">")
            .text(&ms(s.latency_p50_ms))
            .raw("</td><td class=\"num\">")
            .text(&ms(s.latency_p95_ms))
            .raw("</td><td class=\"num\">")
            .display(s.prompt_tokens + s.completion_tokens)
            .raw("</td><td>");
        time(&mut body, &e.created_at);
        body.raw("</td><td>");
        badge(
            &mut body,
            &e.status.as_str().replace('_', " "),
            e.status.as_str(),
        );
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table></div>");
    layout(Some(viewer), &format!("{name} experiments"), &body)
}

/// The pair the compare form starts with: the newest experiment and the newest one of another
/// version before it, the older version as the baseline (as a promotion compares them).
fn default_pair(items: &[(Experiment, Summary)]) -> (&str, &str) {
    let newest = &items[0].0;
    let other = items
        .iter()
        .map(|(e, _)| e)
        .find(|e| e.version_id != newest.version_id)
        .unwrap_or(&items[items.len().min(2) - 1].0);
    if other.version_seq <= newest.version_seq {
        (&other.id, &newest.id)
    } else {
        (&newest.id, &other.id)
    }
}

fn dataset_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

fn experiment_options(out: &mut Html, items: &[(Experiment, Summary)], selected: Option<&str>) {
    for (e, _) in items {
        out.raw("<option").attr("value", &e.id);
        if Some(e.id.as_str()) == selected {
            out.raw(" selected");
        }
        out.raw(">")
            .text(&format!(
                "v{} {} {} ({})",
                e.version_seq,
                e.tag.as_deref().unwrap_or(""),
                short_id(&e.id),
                short_time(&e.created_at)
            ))
            .raw("</option>");
    }
}

/// Pass rate per experiment over time, one line per evaluator, each point labelled with its
/// version: inline SVG, drawn on the server.
fn chart(out: &mut Html, items: &[(Experiment, Summary)]) {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    const PAD: f64 = 32.0;
    // Oldest first, left to right.
    let points: Vec<&(Experiment, Summary)> = items.iter().rev().collect();
    let mut evaluators: Vec<&str> = Vec::new();
    for (_, s) in &points {
        for e in &s.evaluators {
            if !evaluators.contains(&e.evaluator.as_str()) {
                evaluators.push(&e.evaluator);
            }
        }
    }
    let x = |i: usize| {
        if points.len() == 1 {
            W / 2.0
        } else {
            PAD + (W - 2.0 * PAD) * i as f64 / (points.len() - 1) as f64
        }
    };
    let y = |rate: f64| H - PAD - (H - 2.0 * PAD) * rate;
    out.raw("<figure class=\"chart\"><svg viewBox=\"0 0 640 200\" role=\"img\" aria-label=\"pass rate per version over time\">");
    for rate in [0.0, 0.5, 1.0] {
        out.raw("<line class=\"grid\" x1=\"32\"")
            .attr("y1", &format!("{:.1}", y(rate)))
            .raw(" x2=\"608\"")
            .attr("y2", &format!("{:.1}", y(rate)))
            .raw("/><text class=\"axis\" x=\"4\"")
            .attr("y", &format!("{:.1}", y(rate) + 4.0))
            .raw(">")
            .text(&format!("{:.0}%", rate * 100.0))
            .raw("</text>");
    }
    for (k, evaluator) in evaluators.iter().enumerate() {
        let series: Vec<(usize, f64)> = points
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| {
                s.evaluators
                    .iter()
                    .find(|e| e.evaluator == *evaluator)
                    .map(|e| (i, e.pass_rate))
            })
            .collect();
        let line: Vec<String> = series
            .iter()
            .map(|(i, r)| format!("{:.1},{:.1}", x(*i), y(*r)))
            .collect();
        let class = format!("series s{}", k % 4);
        out.raw("<polyline")
            .attr("class", &class)
            .attr("points", &line.join(" "))
            .raw("/>");
        for (i, rate) in series {
            let (e, _) = points[i];
            out.raw("<circle")
                .attr("class", &class)
                .attr("cx", &format!("{:.1}", x(i)))
                .attr("cy", &format!("{:.1}", y(rate)))
                .raw(" r=\"4\"><title>")
                .text(&format!(
                    "v{} {} {}: {}",
                    e.version_seq,
                    short_time(&e.created_at),
                    evaluator,
                    percent(rate)
                ))
                .raw("</title></circle>");
        }
    }
    for (i, (e, _)) in points.iter().enumerate() {
        out.raw("<text class=\"axis\" text-anchor=\"middle\"")
            .attr("x", &format!("{:.1}", x(i)))
            .raw(" y=\"194\">")
            .text(&format!("v{}", e.version_seq))
            .raw("</text>");
    }
    out.raw("</svg><figcaption>Pass rate per experiment, oldest to newest, by version:");
    for (k, evaluator) in evaluators.iter().enumerate() {
        out.raw(" <span")
            .attr("class", &format!("key s{}", k % 4))
            .raw(">")
            .text(evaluator)
            .raw("</span>");
    }
    out.raw("</figcaption></figure>");
}
