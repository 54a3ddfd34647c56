//! The prompt library, the start page: the search and filter form, one row per prompt with
//! its tags, latest version, last change and last deployment, and the pager. Renders HTML only
//! from the `LibraryPage` view its handler built: no store access, no I/O, and no filtering or
//! paging of its own.

use super::{badge, layout, pager, prompt_href, query, tag_badges, time, version_href};
use crate::ui::Viewer;
use crate::ui::html::Html;
use crate::view::LibraryEntry;

pub struct LibraryPage<'a> {
    pub entries: &'a [LibraryEntry<'a>],
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub text: &'a str,
    pub tag: Option<&'a str>,
    pub meta: &'a str,
    pub all_tags: &'a [String],
}

pub fn library(viewer: &Viewer, p: &LibraryPage<'_>) -> String {
    let mut body = Html::new();
    body.raw("<h1>Prompt library</h1>")
        .raw("<form method=\"get\" action=\"/\" class=\"filters\" role=\"search\">")
        .raw("<label>Search <input type=\"search\" name=\"q\" placeholder=\"name or description\"")
        .attr("value", p.text)
        .raw("></label><label>Tag <select name=\"tag\"><option value=\"\">any</option>");
    for tag in p.all_tags {
        body.raw("<option").attr("value", tag);
        if p.tag == Some(tag.as_str()) {
            body.raw(" selected");
        }
        body.raw(">").text(tag).raw("</option>");
    }
    body.raw("</select></label><label>Metadata <input name=\"meta\" placeholder=\"key=value\"")
        .attr("value", p.meta)
        .raw("></label><button type=\"submit\">Filter</button></form>");
    body.raw("<div class=\"scroll\"><table class=\"list library cards\"><thead><tr><th>Prompt</th><th>Tags</th>")
        .raw("<th class=\"num\">Latest</th><th>Last change</th><th>Last deployment</th></tr></thead><tbody>");
    if p.entries.is_empty() {
        body.raw("<tr><td colspan=\"5\" class=\"muted\">no prompt matches</td></tr>");
    }
    for entry in p.entries {
        let item = &entry.item;
        body.raw("<tr><td>")
            .link(&prompt_href(item.name), item.name);
        if let Some(description) = item.description {
            body.raw("<div class=\"muted small\">")
                .text(&crate::text::one_line(description, 120))
                .raw("</div>");
        }
        body.raw("</td><td data-label=\"Tags\">");
        tag_badges(&mut body, item.tags, &[]);
        body.raw("</td><td class=\"num\" data-label=\"Latest\">")
            .link(
                &version_href(item.name, item.latest_version),
                &format!("v{}", item.latest_version),
            )
            .raw("</td><td data-label=\"Last change\">");
        time(&mut body, item.updated_at);
        body.raw("</td><td data-label=\"Last deployment\">");
        match &entry.last_deployment {
            Some((tag, at)) => {
                badge(&mut body, tag, "");
                body.raw(" ");
                time(&mut body, at);
            }
            None => {
                body.raw("<span class=\"muted\">never</span>");
            }
        }
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table></div>");
    let link = |n: usize| {
        format!(
            "/{}",
            query(&[
                ("q", p.text),
                ("tag", p.tag.unwrap_or("")),
                ("meta", p.meta),
                ("page", &n.to_string())
            ])
        )
    };
    pager(&mut body, p.page, p.per_page, p.total, &link);
    layout(Some(viewer), "library", &body)
}
