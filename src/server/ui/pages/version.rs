//! One version's page: its facts, template, parameters and metadata, and below them, for
//! write tokens, the playground panel (drawn by `playground.rs`). Renders HTML only: no store
//! access, no I/O; runs and saves happen in the handlers.

use super::playground::{Playground, playground};
use super::{layout, prompt_href, query, tag_badges, time};
use crate::model::{PromptVersion, Template};
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
