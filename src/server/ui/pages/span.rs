//! One production span's page: its trace and span ids, the version it is linked to, who sent
//! it and from where, its status, latency and tokens, the template variables, the input
//! messages, the output, the annotations on it and on its trace, every attribute as stored, and
//! a link that replays it in the version's playground. Every byte of a span came from an
//! application and is hostile: all of it is written through `Html`'s escaping. Renders HTML
//! only: no store access, no I/O.

use super::{badge, folded, layout, prompt_href, time, version_href};
use crate::trace::{Annotation, Span, SpanStatus};
use crate::ui::Viewer;
use crate::ui::html::{Html, Tag, url_part};
use serde_json::Value;

pub fn span_href(span_id: &str) -> String {
    format!("/spans/{}", url_part(span_id))
}

/// The playground of the span's version, to be filled from the span.
fn replay_href(prompt: &str, seq: i64, span_id: &str) -> String {
    format!(
        "{}{}",
        version_href(prompt, seq),
        super::query(&[("span", span_id)])
    )
}

fn at(ms: i64) -> String {
    crate::production::time_text(ms)
}

pub fn span(viewer: &Viewer, s: &Span, annotations: &[Annotation]) -> String {
    let mut body = Html::new();
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / ");
    if let Some(link) = &s.link {
        body.link(&prompt_href(&link.prompt), &link.prompt)
            .raw(" / ")
            .link(
                &version_href(&link.prompt, link.version_number),
                &format!("v{}", link.version_number),
            )
            .raw(" / ");
    }
    body.raw("span</p><h1>")
        .text(&s.name)
        .raw(" <code class=\"small\">")
        .text(&s.span_id)
        .raw("</code></h1>");
    if let Some(link) = s.link.as_ref().filter(|_| viewer.can_write()) {
        body.raw("<p class=\"actions\"><a class=\"replay\"")
            .attr(
                "href",
                &replay_href(&link.prompt, link.version_number, &s.span_id),
            )
            .raw(">Replay in the playground</a></p>");
    }
    facts(&mut body, s);
    body.raw("<h2>Input variables</h2>");
    variables(&mut body, s.variables.as_deref());
    body.raw("<h2>Input</h2>");
    input(&mut body, s.input.as_deref());
    body.raw("<h2>Output</h2>");
    match s.output.as_deref() {
        Some(output) => {
            body.raw("<pre class=\"block output\">")
                .text(output)
                .raw("</pre>");
        }
        None => {
            body.raw("<p class=\"muted\">none recorded</p>");
        }
    }
    body.raw("<h2>Annotations</h2>");
    annotation_table(&mut body, annotations);
    let attributes = match serde_json::from_str::<Value>(&s.attributes) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
        Err(_) => s.attributes.clone(),
    };
    let count = serde_json::from_str::<serde_json::Map<String, Value>>(&s.attributes)
        .map_or(0, |m| m.len());
    body.raw("<details class=\"raw\"><summary>")
        .text(&format!("Raw attributes ({count})"))
        .raw("</summary><pre class=\"block\">")
        .text(&attributes)
        .raw("</pre></details>");
    layout(Some(viewer), &format!("span {}", s.span_id), &body)
}

/// Where the span comes from and how the call went.
fn facts(body: &mut Html, s: &Span) {
    let or_dash = |text: Option<&str>| text.filter(|t| !t.is_empty()).unwrap_or("–").to_string();
    body.raw("<dl class=\"facts\"><dt>Trace</dt><dd><code>")
        .text(&s.trace_id)
        .raw("</code></dd><dt>Span</dt><dd><code>")
        .text(&s.span_id)
        .raw("</code>");
    if let Some(parent) = &s.parent_id {
        body.raw(" <span class=\"muted\">parent</span> <code>")
            .text(parent)
            .raw("</code>");
    }
    body.raw("</dd><dt>Version</dt><dd>");
    match &s.link {
        Some(link) => {
            body.link(
                &version_href(&link.prompt, link.version_number),
                &format!("{} v{}", link.prompt, link.version_number),
            );
            if let Some(tag) = &link.tag {
                body.raw(" ");
                badge(body, tag, "");
            }
            body.raw(" <span class=\"muted\">")
                .text(&format!("linked by {} attributes", link.source))
                .raw("</span>");
        }
        None => {
            body.raw("<span class=\"muted\">not linked to a version</span>");
        }
    }
    body.raw("</dd><dt>Project</dt><dd>").text(&s.project);
    if s.experiment {
        body.raw(" ");
        badge(body, "experiment run", "");
    }
    body.raw("</dd><dt>Service</dt><dd>")
        .text(&or_dash(s.service.as_deref()))
        .raw("</dd><dt>Sender</dt><dd>")
        .text(&or_dash(s.sender.as_deref()))
        .raw("</dd><dt>Kind</dt><dd>")
        .text(&or_dash(s.kind.as_deref()))
        .raw("</dd><dt>Model</dt><dd>")
        .text(&or_dash(s.model.as_deref()))
        .raw("</dd><dt>Status</dt><dd>");
    status_badge(body, s.status);
    if let Some(error) = &s.error {
        body.raw(" <span class=\"error\">")
            .text(error)
            .raw("</span>");
    }
    body.raw("</dd><dt>Started</dt><dd>");
    time(body, &at(s.start_ms));
    body.raw("</dd><dt>Latency</dt><dd>")
        .text(&format!("{} ms", s.latency_ms()))
        .raw("</dd><dt>Tokens</dt><dd>")
        .text(&tokens(s))
        .raw("</dd></dl>");
}

/// `12 in · 5 out`, or `–` when the span reported no count.
pub(super) fn tokens(s: &Span) -> String {
    if s.input_tokens.is_none() && s.output_tokens.is_none() {
        return "–".to_string();
    }
    let count = |n: Option<i64>| n.map_or("–".to_string(), |n| n.to_string());
    format!(
        "{} in · {} out",
        count(s.input_tokens),
        count(s.output_tokens)
    )
}

pub(super) fn status_badge(out: &mut Html, status: SpanStatus) {
    let class = match status {
        SpanStatus::Error => "error",
        SpanStatus::Ok => "pass",
        SpanStatus::Unset => "",
    };
    badge(out, status.as_str(), class);
}

/// A JSON value as a cell shows it: a string as itself, anything else as JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The template variables (a JSON object's text) as a name / value table.
fn variables(out: &mut Html, text: Option<&str>) {
    let parsed = text.and_then(|t| serde_json::from_str::<serde_json::Map<String, Value>>(t).ok());
    match parsed {
        Some(map) if !map.is_empty() => {
            out.raw("<div class=\"scroll\"><table class=\"list variables\"><thead><tr><th>Name</th><th>Value</th></tr></thead><tbody>");
            for (name, value) in &map {
                out.raw("<tr><td>");
                out.element(Tag::Code, "var", name).raw("</td><td>");
                folded(out, &value_text(value));
                out.raw("</td></tr>");
            }
            out.raw("</tbody></table></div>");
        }
        _ => {
            out.raw("<p class=\"muted\">none recorded</p>");
        }
    }
}

/// The input: a JSON list of `{role, content}` as messages, any other text as it is.
fn input(out: &mut Html, text: Option<&str>) {
    let Some(text) = text else {
        out.raw("<p class=\"muted\">none recorded</p>");
        return;
    };
    let messages = serde_json::from_str::<Vec<serde_json::Map<String, Value>>>(text)
        .ok()
        .filter(|list| !list.is_empty() && list.iter().all(|m| m.contains_key("role")));
    let Some(messages) = messages else {
        out.raw("<pre class=\"block input\">")
            .text(text)
            .raw("</pre>");
        return;
    };
    out.raw("<ol class=\"messages\">");
    for m in &messages {
        let role = m.get("role").map(value_text).unwrap_or_default();
        out.raw("<li")
            .attr("class", &format!("message role-{}", url_part(&role)))
            .raw("><div class=\"role\">")
            .text(&role);
        if let Some(name) = m.get("name") {
            out.raw(" <span class=\"muted\">")
                .text(&value_text(name))
                .raw("</span>");
        }
        out.raw("</div><pre>")
            .text(&m.get("content").map(value_text).unwrap_or_default())
            .raw("</pre></li>");
    }
    out.raw("</ol>");
}

fn annotation_table(out: &mut Html, annotations: &[Annotation]) {
    if annotations.is_empty() {
        out.raw("<p class=\"muted\">none yet</p>");
        return;
    }
    out.raw("<div class=\"scroll\"><table class=\"list annotations cards\"><thead><tr><th>Name</th><th>On</th>")
        .raw("<th>Kind</th><th>Label</th><th class=\"num\">Score</th><th>Explanation</th><th>When</th></tr></thead><tbody>");
    for a in annotations {
        out.raw("<tr><td>")
            .text(&a.name)
            .raw("</td><td data-label=\"On\">")
            .text(a.target.as_str())
            .raw("</td><td data-label=\"Kind\">")
            .text(&a.annotator_kind)
            .raw("</td><td data-label=\"Label\">")
            .text(a.label.as_deref().unwrap_or("–"))
            .raw("</td><td class=\"num\" data-label=\"Score\">")
            .text(&a.score.map_or("–".to_string(), |s| format!("{s}")))
            .raw("</td><td data-label=\"Explanation\">");
        if let Some(explanation) = a.explanation.as_deref().filter(|x| !x.is_empty()) {
            folded(out, explanation);
        }
        out.raw("</td><td data-label=\"When\">");
        time(out, &at(a.time_ms));
        out.raw("</td></tr>");
    }
    out.raw("</tbody></table></div>");
}
