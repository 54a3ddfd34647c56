//! A prompt's page: its deployments (each with why its tag moved), the tag and rollback forms
//! offered to write tokens, its canary rollouts (drawn by `rollout`), its production traffic
//! (drawn by `production`), its versions with their diff links, and the tag history. Renders HTML only: the forms post to handlers that
//! check the role, the CSRF token and the tag policy, and this file must neither enforce nor
//! decide any of them; no store access, no I/O.

use super::production::{ProductionSection, production};
use super::{
    badge, compare_href, csrf_field, experiment_href, layout, query, short_id, tag_badges, time,
    version_href, version_options,
};
use crate::model::{PromptVersion, TagEvent};
use crate::ui::Viewer;
use crate::ui::html::{Html, url_part};
use crate::view::{DeploymentView, Evidence};
use std::collections::BTreeMap;

pub struct PromptPage<'a> {
    pub name: &'a str,
    /// Newest first.
    pub versions: &'a [PromptVersion],
    pub tags_by_version: &'a BTreeMap<String, Vec<String>>,
    pub deployments: &'a [DeploymentView],
    /// Oldest first.
    pub history: &'a [TagEvent],
    pub experiments: usize,
    pub protected: &'a [String],
    pub production: &'a ProductionSection<'a>,
    /// Running rollouts, one per tag, as a look would judge them now.
    pub rollouts: &'a [crate::workflow::canary::View],
    /// Finished rollouts, newest first.
    pub finished_rollouts: &'a [crate::canary::Rollout],
}

pub fn prompt(viewer: &Viewer, p: &PromptPage<'_>) -> String {
    let mut body = Html::new();
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / </p><h1>")
        .text(p.name)
        .raw("</h1><p class=\"actions\">")
        .link(
            &format!("/prompts/{}/experiments", url_part(p.name)),
            &format!("Experiments ({})", p.experiments),
        )
        .raw("</p>");
    deployments(&mut body, viewer, p);
    super::rollout::rollouts(&mut body, viewer, p.name, p.rollouts, p.finished_rollouts);
    production(&mut body, p.name, p.production);
    versions(&mut body, p);
    history(&mut body, p);
    layout(Some(viewer), p.name, &body)
}

/// Each tag with the version it points at, when, by whom, how and why it moved; below them,
/// for a write token, the forms that move one.
fn deployments(body: &mut Html, viewer: &Viewer, p: &PromptPage<'_>) {
    body.raw("<section id=\"deployments\"><h2>Deployments</h2>");
    if p.deployments.is_empty() {
        body.raw("<p class=\"muted\">no tags yet</p>");
    } else {
        body.raw("<div class=\"scroll\"><table class=\"list cards\"><thead><tr><th>Tag</th><th class=\"num\">Version</th>")
            .raw("<th>Moved</th><th>By</th><th>How</th><th>Why</th></tr></thead><tbody>");
        for d in p.deployments {
            body.raw("<tr><td>");
            badge(body, &d.tag, if d.protected { "protected" } else { "" });
            body.raw("</td><td class=\"num\" data-label=\"Version\">")
                .link(
                    &version_href(p.name, d.version_seq),
                    &format!("v{}", d.version_seq),
                )
                .raw("</td><td data-label=\"Moved\">");
            time(body, &d.moved_at);
            body.raw("</td><td data-label=\"By\">")
                .text(&d.moved_by)
                .raw("</td><td data-label=\"How\">");
            if d.gated {
                badge(body, "gated", "gated");
            } else if let Some(action) = d.action {
                badge(body, action.as_str(), action.as_str());
            }
            if d.forced {
                badge(body, "forced", "forced");
            }
            if d.deploy {
                badge(body, "deploy", "deploy");
            }
            body.raw("</td><td data-label=\"Why\">");
            why(body, d.message.as_deref(), d.evidence.as_ref());
            body.raw("</td></tr>");
        }
        body.raw("</tbody></table></div>");
    }
    if viewer.can_write() {
        actions(body, viewer, p);
    }
    body.raw("</section>");
}

/// The versions, newest first, with a form to diff any two and a link to each one's diff with
/// the version before it.
fn versions(body: &mut Html, p: &PromptPage<'_>) {
    body.raw("<section id=\"versions\"><h2>Versions</h2>");
    if p.versions.len() > 1 {
        body.raw("<form method=\"get\" class=\"filters\"")
            .attr("action", &format!("/prompts/{}/diff", url_part(p.name)))
            .raw("><label>Diff <select name=\"from\">");
        version_options(body, p.versions, p.versions.get(1).map(|v| v.seq));
        body.raw("</select></label><label>to <select name=\"to\">");
        version_options(body, p.versions, p.versions.first().map(|v| v.seq));
        body.raw("</select></label><button type=\"submit\">Show diff</button></form>");
    }
    body.raw("<div class=\"scroll\"><table class=\"list cards\"><thead><tr><th class=\"num\">Version</th><th>Author</th>")
        .raw("<th>Created</th><th>Message</th><th>Tags</th><th></th></tr></thead><tbody>");
    for v in p.versions {
        body.raw("<tr><td class=\"num\">")
            .link(&version_href(p.name, v.seq), &format!("v{}", v.seq))
            .raw("</td><td data-label=\"Author\">")
            .text(&v.author)
            .raw("</td><td data-label=\"Created\">");
        time(body, &v.created_at);
        body.raw("</td><td data-label=\"Message\">")
            .text(&crate::text::one_line(
                v.message.as_deref().unwrap_or(""),
                100,
            ))
            .raw("</td><td data-label=\"Tags\">");
        if let Some(tags) = p.tags_by_version.get(&v.id) {
            tag_badges(body, tags, p.protected);
        }
        body.raw("</td><td>");
        if v.seq > 1 {
            body.link(
                &format!(
                    "/prompts/{}/diff{}",
                    url_part(p.name),
                    query(&[
                        ("from", &(v.seq - 1).to_string()),
                        ("to", &v.seq.to_string())
                    ])
                ),
                "diff",
            );
        }
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table></div></section>");
}

/// The tag history, newest first: each move with its action, who made it and why.
fn history(body: &mut Html, p: &PromptPage<'_>) {
    body.raw("<section id=\"history\"><h2>Tag history</h2><ol class=\"timeline\">");
    if p.history.is_empty() {
        body.raw("<li class=\"muted\">no tag changes yet</li>");
    }
    for e in p.history.iter().rev() {
        body.raw("<li><div class=\"when\">");
        time(body, &e.at);
        body.raw("</div><div>");
        badge(body, e.action.as_str(), e.action.as_str());
        if e.forced {
            badge(body, "forced", "forced");
        }
        if e.deploy {
            badge(body, "deploy", "deploy");
        }
        body.raw(" <strong>").text(&e.tag).raw("</strong> ");
        let seq = |s: Option<i64>| s.map_or("–".to_string(), |n| format!("v{n}"));
        body.text(&format!("{} → {}", seq(e.from_seq), seq(e.to_seq)))
            .raw(" <span class=\"muted\">by ")
            .text(&e.actor)
            .raw("</span>");
        let evidence = Evidence::of(e);
        if e.message.is_some() || evidence.is_some() {
            body.raw("<div class=\"why\">");
            why(body, e.message.as_deref(), evidence.as_ref());
            body.raw("</div>");
        }
        body.raw("</div></li>");
    }
    body.raw("</ol></section>");
}

/// Why a tag moved: the message, and for a promotion the verdict with links to its evidence.
fn why(out: &mut Html, message: Option<&str>, evidence: Option<&Evidence>) {
    if let Some(message) = message {
        out.raw("<span>").text(message).raw("</span> ");
    }
    if let Some(evidence) = evidence {
        out.raw("<span class=\"verdict\">")
            .text(&evidence.verdict)
            .raw("</span> ");
        if let Some(baseline) = &evidence.baseline_experiment {
            out.link(
                &compare_href(baseline, &evidence.candidate_experiment),
                "comparison",
            )
            .raw(" · baseline ")
            .link(&experiment_href(baseline), short_id(baseline));
        }
        out.raw(" · candidate ").link(
            &experiment_href(&evidence.candidate_experiment),
            short_id(&evidence.candidate_experiment),
        );
    }
}

/// The two actions a write token may take, each confirmed; a protected tag also needs force
/// with a typed reason (the store refuses it otherwise), unless the token is a deploy token.
fn actions(out: &mut Html, viewer: &Viewer, p: &PromptPage<'_>) {
    let deploy = viewer.tag_role() == crate::store::TagRole::Deploy;
    let force_fields = |out: &mut Html| {
        if deploy {
            out.raw("<p class=\"muted\">Your deploy token moves protected tags without force; the history records it as a deploy.</p>")
                .raw("<label>Reason <input name=\"reason\" maxlength=\"500\" placeholder=\"why (kept in the tag history)\"></label>");
        } else {
            out.raw("<label class=\"check\"><input type=\"checkbox\" name=\"force\" value=\"yes\"> force a protected tag</label>")
                .raw("<label>Reason <input name=\"reason\" maxlength=\"500\" placeholder=\"why (kept in the tag history; required with force)\"></label>");
        }
    };
    out.raw("<details class=\"act\"><summary>Change a tag…</summary>")
        .raw("<div class=\"forms\"><form method=\"post\" class=\"action\"")
        .attr("action", &format!("/prompts/{}/tags", url_part(p.name)))
        .raw("><h3>Set or move a tag</h3>");
    csrf_field(out, viewer);
    out.raw("<label>Tag <input name=\"tag\" required pattern=\"[A-Za-z0-9_.\\-]+\" list=\"known-tags\"></label>")
        .raw("<datalist id=\"known-tags\">");
    for d in p.deployments {
        out.raw("<option").attr("value", &d.tag).raw(">");
    }
    out.raw("</datalist><label>Version <select name=\"version\">");
    version_options(out, p.versions, p.versions.first().map(|v| v.seq));
    out.raw("</select></label>");
    force_fields(out);
    out.raw("<label class=\"check\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> I confirm this tag change</label>")
        .raw("<button type=\"submit\">Move tag</button></form>");
    if !p.deployments.is_empty() {
        out.raw("<form method=\"post\" class=\"action\"")
            .attr("action", &format!("/prompts/{}/rollback", url_part(p.name)))
            .raw("><h3>Roll back a tag</h3>");
        csrf_field(out, viewer);
        out.raw("<label>Tag <select name=\"tag\">");
        for d in p.deployments {
            out.raw("<option")
                .attr("value", &d.tag)
                .raw(">")
                .text(&d.tag)
                .raw("</option>");
        }
        out.raw("</select></label>");
        force_fields(out);
        out.raw("<label class=\"check\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> I confirm this rollback</label>")
            .raw("<button type=\"submit\">Roll back</button></form>");
    }
    out.raw("</div></details>");
}
