//! Two versions of a prompt compared: the version pickers, the template's line diff (drawn by
//! `ui::diff`), and the model, parameters and metadata fields that changed. Renders HTML only:
//! no store access, no I/O.

use super::{layout, prompt_href, version_options};
use crate::model::PromptVersion;
use crate::ui::html::{Html, url_part};
use crate::ui::{Viewer, diff};

pub fn diff(
    viewer: &Viewer,
    old: &PromptVersion,
    new: &PromptVersion,
    versions: &[PromptVersion],
) -> String {
    let d = crate::report::VersionDiff::between(old, new);
    let mut body = Html::new();
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / ")
        .link(&prompt_href(&old.prompt), &old.prompt)
        .raw(" /</p><h1>")
        .text(&format!("{} v{} → v{}", old.prompt, old.seq, new.seq))
        .raw("</h1>")
        .raw("<form method=\"get\" class=\"filters\"")
        .attr(
            "action",
            &format!("/prompts/{}/diff", url_part(&old.prompt)),
        )
        .raw("><label>From <select name=\"from\">");
    version_options(&mut body, versions, Some(old.seq));
    body.raw("</select></label><label>to <select name=\"to\">");
    version_options(&mut body, versions, Some(new.seq));
    body.raw("</select></label><button type=\"submit\">Show diff</button></form><h2>Template</h2>");
    diff::render(
        &crate::report::template_text(&old.template),
        &crate::report::template_text(&new.template),
        &mut body,
    );
    body.raw("<h2>Model, parameters and metadata</h2>");
    if d.changes.is_empty() {
        body.raw("<p class=\"muted\">no differences</p>");
    } else {
        body.raw("<div class=\"scroll\"><table class=\"list\"><thead><tr><th>Field</th><th>")
            .text(&format!("v{}", old.seq))
            .raw("</th><th>")
            .text(&format!("v{}", new.seq))
            .raw("</th></tr></thead><tbody>");
        let show = |v: &Option<serde_json::Value>| match v {
            None => "(none)".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        for change in &d.changes {
            body.raw("<tr><td><code>")
                .text(&change.field)
                .raw("</code></td><td class=\"old\">")
                .text(&show(&change.from))
                .raw("</td><td class=\"new\">")
                .text(&show(&change.to))
                .raw("</td></tr>");
        }
        body.raw("</tbody></table></div>");
    }
    layout(Some(viewer), &format!("{} diff", old.prompt), &body)
}
