//! A prompt's experiments: the pass-rate chart (inline SVG, drawn on the server), the compare
//! form with the pair it starts with, and one row per experiment with its summary. Renders HTML
//! only from the experiments and summaries its handler read: no store access, no I/O, no figure
//! computed beyond placing and formatting those the summaries carry.

use super::{
    badge, experiment_href, layout, ms, pager, pass_rates, percent, prompt_href, short_id,
    short_time, time, version_href,
};
use crate::model::{Experiment, Summary};
use crate::ui::Viewer;
use crate::ui::html::Html;

/// A prompt's experiments (`name`), or every experiment, newest first, with the experiments
/// of your own code that name no prompt version (`name` None; `items` is then `page` of
/// `per_page` out of `total`).
pub fn experiments(
    viewer: &Viewer,
    name: Option<&str>,
    items: &[(Experiment, Summary)],
    (page, per_page, total): (usize, usize, usize),
) -> String {
    let mut body = Html::new();
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / ");
    if let Some(name) = name {
        body.link(&prompt_href(name), name).raw(" /");
    }
    body.raw("</p><h1>Experiments</h1>");
    if items.is_empty() {
        body.raw("<p class=\"muted\">no experiments yet: <code>runner experiment --prompt ")
            .text(name.unwrap_or("NAME"))
            .raw(" --dataset FILE</code></p>");
        return layout(Some(viewer), "experiments", &body);
    }
    if name.is_some() {
        chart(&mut body, items);
    } else {
        body.raw("<p class=\"muted\">Every experiment, newest first. Those your own code ran through the Phoenix client without naming a prompt version show no prompt: they can be compared, never promoted on.</p>");
    }
    if items.len() > 1 {
        body.raw("<form method=\"get\" action=\"/compare\" class=\"filters\"><label>Baseline <select name=\"baseline\">");
        let (baseline, candidate) = default_pair(items);
        experiment_options(&mut body, items, Some(baseline));
        body.raw("</select></label><label>Candidate <select name=\"candidate\">");
        experiment_options(&mut body, items, Some(candidate));
        body.raw("</select></label><button type=\"submit\">Compare</button></form>");
    }
    body.raw("<div class=\"scroll\"><table class=\"list cards\"><thead><tr><th>Experiment</th>");
    if name.is_none() {
        body.raw("<th>Prompt</th>");
    }
    body.raw("<th class=\"num\">Version</th><th>Tag</th>")
        .raw("<th>Dataset</th><th>Model</th><th>Pass rate</th><th class=\"num\">Errors</th><th class=\"num\">p50</th>")
        .raw("<th class=\"num\">p95</th><th class=\"num\">Tokens</th><th>Date</th><th>Status</th></tr></thead><tbody>");
    for (e, s) in items {
        body.raw("<tr><td>")
            .link(
                &experiment_href(&e.id),
                e.name.as_deref().unwrap_or(short_id(&e.id)),
            )
            .raw("</td>");
        if name.is_none() {
            body.raw("<td data-label=\"Prompt\">");
            match &e.prompt {
                Some(prompt) => {
                    body.link(&prompt_href(prompt), prompt);
                }
                None => {
                    body.raw("<span class=\"muted\">your code</span>");
                }
            }
            body.raw("</td>");
        }
        body.raw("<td class=\"num\" data-label=\"Version\">");
        version_link(&mut body, e);
        body.raw("</td><td data-label=\"Tag\">");
        if let Some(tag) = &e.tag {
            badge(&mut body, tag, "");
        }
        body.raw("</td><td data-label=\"Dataset\">")
            .text(&dataset_name(&e.dataset.path))
            .raw(" <span class=\"muted\">")
            .text(&format!("{} rows", e.dataset.rows))
            .raw("</span></td><td data-label=\"Model\">")
            .text(&e.model)
            .raw("</td><td data-label=\"Pass rate\">");
        pass_rates(&mut body, s);
        body.raw("</td><td class=\"num\" data-label=\"Errors\">")
            .text(&percent(s.error_rate))
            .raw("</td><td class=\"num\" data-label=\"p50\">")
            .text(&ms(s.latency_p50_ms))
            .raw("</td><td class=\"num\" data-label=\"p95\">")
            .text(&ms(s.latency_p95_ms))
            .raw("</td><td class=\"num\" data-label=\"Tokens\">")
            .display(s.prompt_tokens + s.completion_tokens)
            .raw("</td><td data-label=\"Date\">");
        time(&mut body, &e.created_at);
        body.raw("</td><td data-label=\"Status\">");
        badge(
            &mut body,
            &e.status.as_str().replace('_', " "),
            e.status.as_str(),
        );
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table></div>");
    if name.is_none() {
        pager(&mut body, page, per_page, total, &|n| {
            format!("/experiments?page={n}")
        });
    }
    let title = match name {
        Some(name) => format!("{name} experiments"),
        None => "experiments".into(),
    };
    layout(Some(viewer), &title, &body)
}

/// The version an experiment judged, linked; a dash for one that names none.
pub(super) fn version_link(body: &mut Html, e: &Experiment) {
    match e.judged() {
        Some((prompt, _, seq)) => {
            body.link(&version_href(prompt, seq), &format!("v{seq}"));
        }
        None => {
            body.raw("<span class=\"muted\" title=\"names no prompt version\">–</span>");
        }
    }
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
    // Oldest version first; an experiment naming no version orders before any.
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
                "{} {} {} ({})",
                e.version_seq
                    .map_or_else(|| e.name.clone().unwrap_or_default(), |n| format!("v{n}")),
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
                    e.version_seq.unwrap_or(0),
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
            .text(
                &e.version_seq
                    .map_or_else(|| "–".into(), |n| format!("v{n}")),
            )
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
