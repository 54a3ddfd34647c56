//! One version's page: its facts, template, parameters and metadata, below them, for write
//! tokens, the playground panel (drawn by `playground.rs`), and last its recent production
//! spans, each linked to its page. Renders HTML only: no store access, no I/O; runs and saves
//! happen in the handlers.

use super::playground::{Playground, playground};
use super::span::{span_href, status_badge, tokens};
use super::{layout, prompt_href, query, short_time, tag_badges, time};
use crate::model::{PromptVersion, Template};
use crate::trace::{Span, SpanStatus};
use crate::ui::Viewer;
use crate::ui::html::{Html, Tag, url_part};

fn json_block(out: &mut Html, value: &crate::model::JsonObject) {
    if value.is_empty() {
        out.raw("<p class=\"muted\">none</p>");
    } else {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        out.raw("<pre class=\"block\">").text(&text).raw("</pre>");
    }
}

fn template_block(out: &mut Html, template: &Template) {
    match template {
        Template::Str(text) => {
            out.raw("<pre class=\"block template\">")
                .text(text)
                .raw("</pre>");
        }
        Template::Chat(messages) => {
            out.raw("<ol class=\"messages\">");
            for m in messages {
                out.raw("<li")
                    .attr("class", &format!("message role-{}", url_part(&m.role)))
                    .raw("><div class=\"role\">")
                    .text(&m.role)
                    .raw("</div><pre>")
                    .text(&m.content)
                    .raw("</pre></li>");
            }
            out.raw("</ol>");
        }
    }
}

pub fn version(
    viewer: &Viewer,
    v: &PromptVersion,
    tags: &[String],
    variables: &[String],
    play: Option<&Playground>,
) -> String {
    let mut body = Html::new();
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / ")
        .link(&prompt_href(&v.prompt), &v.prompt)
        .raw(" /</p><h1>")
        .text(&format!("{} v{}", v.prompt, v.seq))
        .raw("</h1><p>");
    tag_badges(&mut body, tags, &[]);
    body.raw("</p><dl class=\"facts\"><dt>Author</dt><dd>")
        .text(&v.author)
        .raw("</dd><dt>Created</dt><dd>");
    time(&mut body, &v.created_at);
    body.raw("</dd><dt>Message</dt><dd>")
        .text(v.message.as_deref().unwrap_or("–"))
        .raw("</dd><dt>Model</dt><dd>")
        .text(v.model.as_deref().unwrap_or("–"))
        .raw("</dd><dt>Template</dt><dd>")
        .text(&format!("{} · {}", v.template_type, v.format))
        .raw("</dd><dt>Variables</dt><dd>");
    if variables.is_empty() {
        body.raw("–");
    }
    for name in variables {
        body.element(Tag::Code, "var", name).raw(" ");
    }
    body.raw("</dd><dt>Id</dt><dd><code>")
        .text(&v.id)
        .raw("</code></dd></dl>");
    if v.seq > 1 {
        body.raw("<p>")
            .link(
                &format!(
                    "/prompts/{}/diff{}",
                    url_part(&v.prompt),
                    query(&[
                        ("from", &(v.seq - 1).to_string()),
                        ("to", &v.seq.to_string())
                    ])
                ),
                &format!("diff with v{}", v.seq - 1),
            )
            .raw("</p>");
    }
    body.raw("<h2>Template</h2>");
    template_block(&mut body, &v.template);
    body.raw("<h2>Parameters</h2>");
    json_block(&mut body, &v.params);
    body.raw("<h2>Metadata</h2>");
    json_block(&mut body, &v.metadata);
    // Offered to write tokens only: a run spends the server's key, a save writes.
    if let Some(play) = play.filter(|_| viewer.can_write()) {
        playground(&mut body, viewer, v, play);
    }
    layout(Some(viewer), &format!("{} v{}", v.prompt, v.seq), &body)
}

/// A version's page (as `version` drew it) with its newest production spans after everything
/// else on it. The page is drawn where the playground is run, which owns what its panel shows;
/// the spans come after it, so the two are drawn apart.
pub fn with_recent_spans(page: String, spans: &[Span], shown: usize) -> String {
    let mut section = Html::new();
    recent_spans(&mut section, spans, shown);
    super::append_to_main(page, &section)
}

/// The newest spans linked to the version: when, status, latency, tokens and the start of the
/// output (or of the error), each opening the span's page.
fn recent_spans(out: &mut Html, spans: &[Span], shown: usize) {
    out.raw("<section id=\"spans\"><h2>Recent production spans</h2>");
    if spans.is_empty() {
        out.raw("<p class=\"muted\">No production span names this version yet.</p></section>");
        return;
    }
    let count = if spans.len() >= shown {
        format!("The newest {shown} spans linked to this version")
    } else if spans.len() == 1 {
        "The one span linked to this version".to_string()
    } else {
        format!("The {} spans linked to this version", spans.len())
    };
    out.raw("<p class=\"muted\">")
        .text(&format!("{count}, newest first; times in UTC."))
        .raw("</p><div class=\"scroll\"><table class=\"list spans cards\"><thead><tr><th>Time</th><th>Status</th>")
        .raw("<th class=\"num\">Latency</th><th class=\"num\">Tokens</th><th>Output</th></tr></thead><tbody>");
    for s in spans {
        out.raw("<tr><td><a")
            .attr("href", &span_href(&s.span_id))
            .raw(">")
            .text(&short_time(&crate::production::time_text(s.start_ms)))
            .raw("</a></td><td data-label=\"Status\">");
        status_badge(out, s.status);
        out.raw("</td><td class=\"num\" data-label=\"Latency\">")
            .text(&format!("{} ms", s.latency_ms()))
            .raw("</td><td class=\"num\" data-label=\"Tokens\">")
            .text(&tokens(s))
            .raw("</td><td class=\"preview\" data-label=\"Output\">");
        match (&s.error, &s.output) {
            (Some(error), _) if s.status == SpanStatus::Error => {
                out.raw("<span class=\"error\">")
                    .text(&crate::text::one_line(error, 120))
                    .raw("</span>");
            }
            (_, Some(output)) => {
                out.text(&crate::text::one_line(output, 120));
            }
            _ => {
                out.raw("<span class=\"muted\">–</span>");
            }
        }
        out.raw("</td></tr>");
    }
    out.raw("</tbody></table></div></section>");
}
