//! Page renderers: pure functions from typed views to HTML text, every value written through
//! `Html`'s escaping. Pages move to their own files; this module holds what they share (the
//! page shell, the CSRF field, links and query strings, the pager, badges, times, figures and
//! folded texts) and re-exports each page's entry points, so callers keep writing
//! `pages::xyz`. Nothing here or below reads the store, the clock or the network, and nothing
//! decides who may do what: a renderer takes the view its handler built and returns text.

mod errors;
mod library;
mod login;

pub use errors::error_page;
pub use library::{LibraryPage, library};
pub use login::login;

use super::html::{Html, Tag, url_part};
use super::{UiError, Viewer, diff};
use crate::compare::Comparison;
use crate::model::{
    Experiment, PromptVersion, ResultStatus, RowText, RunResult, Summary, TagEvent, Template,
};
use crate::view::{DeploymentView, Evidence};
use crate::workflow::playground::TryView;
use std::collections::BTreeMap;

/// A long text shows this many characters before it folds.
const FOLD_CHARS: usize = 240;

fn layout(viewer: Option<&Viewer>, title: &str, body: &Html) -> String {
    let mut page = Html::new();
    page.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<meta name=\"color-scheme\" content=\"light dark\">")
        .raw("<title>")
        .text(title)
        .raw(" · runner</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head><body>")
        .raw("<header class=\"top\"><a class=\"brand\" href=\"/\">runner</a>")
        .raw("<nav><a href=\"/\">Library</a></nav>");
    if let Some(viewer) = viewer {
        page.raw("<span class=\"who\">")
            .text(&viewer.label())
            .raw("</span>");
        if viewer.auth {
            page.raw("<form method=\"post\" action=\"/logout\" class=\"inline\">");
            csrf_field(&mut page, viewer);
            page.raw("<button type=\"submit\">Log out</button></form>");
        }
    }
    page.raw("</header><main>")
        .push(body)
        .raw("</main></body></html>");
    page.into_string()
}

fn csrf_field(out: &mut Html, viewer: &Viewer) {
    out.raw("<input type=\"hidden\" name=\"csrf\"")
        .attr("value", &viewer.csrf)
        .raw(">");
}

/// `?…` of a page link: the given pairs, empty values left out, each value encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_part(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Previous / next links and where this page is; the bar has the same height whether or not a
/// link is there, so paging does not shift the layout.
fn pager(
    out: &mut Html,
    page: usize,
    per_page: usize,
    total: usize,
    link: &dyn Fn(usize) -> String,
) {
    let pages = total.div_ceil(per_page).max(1);
    out.raw("<nav class=\"pager\" aria-label=\"pages\">");
    if page > 1 {
        out.raw("<a rel=\"prev\"")
            .attr("href", &link(page - 1))
            .raw(">← previous</a>");
    } else {
        out.raw("<span class=\"disabled\">← previous</span>");
    }
    out.raw("<span>page ")
        .display(page)
        .raw(" of ")
        .display(pages)
        .raw(" · ")
        .display(total)
        .raw(" in all</span>");
    if page < pages {
        out.raw("<a rel=\"next\"")
            .attr("href", &link(page + 1))
            .raw(">next →</a>");
    } else {
        out.raw("<span class=\"disabled\">next →</span>");
    }
    out.raw("</nav>");
}

fn badge(out: &mut Html, text: &str, class: &str) {
    out.raw("<span")
        .attr("class", &format!("badge {class}"))
        .raw(">")
        .text(text)
        .raw("</span>");
}

fn tag_badges(out: &mut Html, tags: &[String], protected: &[String]) {
    for tag in tags {
        let class = if protected.contains(tag) {
            "protected"
        } else {
            ""
        };
        badge(out, tag, class);
    }
}

fn short_time(at: &str) -> String {
    crate::report::short_time(at)
}

fn time(out: &mut Html, at: &str) {
    out.raw("<time")
        .attr("datetime", at)
        .raw(">")
        .text(&short_time(at))
        .raw("</time>");
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.0} ms"))
}

/// A text that folds when long: the first part shows, the whole opens on demand.
fn folded(out: &mut Html, text: &str) {
    if text.chars().count() <= FOLD_CHARS && text.lines().count() <= 6 {
        out.raw("<pre class=\"cell\">").text(text).raw("</pre>");
        return;
    }
    let head: String = text.chars().take(FOLD_CHARS).collect();
    out.raw("<details class=\"fold\"><summary><pre class=\"cell\">")
        .text(&head)
        .raw("…</pre></summary><pre class=\"cell\">")
        .text(text)
        .raw("</pre></details>");
}

fn prompt_href(name: &str) -> String {
    format!("/prompts/{}", url_part(name))
}

fn version_href(name: &str, seq: i64) -> String {
    format!("/prompts/{}/versions/{seq}", url_part(name))
}

fn experiment_href(id: &str) -> String {
    format!("/experiments/{}", url_part(id))
}

fn compare_href(baseline: &str, candidate: &str) -> String {
    format!(
        "/compare{}",
        query(&[("baseline", baseline), ("candidate", candidate)])
    )
}

fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn version_options(out: &mut Html, versions: &[PromptVersion], selected: Option<i64>) {
    for v in versions {
        out.raw("<option").attr("value", &v.seq.to_string());
        if Some(v.seq) == selected {
            out.raw(" selected");
        }
        out.raw(">").text(&format!("v{}", v.seq)).raw("</option>");
    }
}

/// The evaluators' pass rates of a summary, `name rate` each.
fn pass_rates(out: &mut Html, summary: &Summary) {
    for e in &summary.evaluators {
        out.raw("<div class=\"rate\"><span class=\"muted\">")
            .text(&e.evaluator)
            .raw("</span> ")
            .text(&percent(e.pass_rate))
            .raw("</div>");
    }
}

fn filter_links(out: &mut Html, current: &str, choices: &[&str], link: &dyn Fn(&str) -> String) {
    out.raw("<nav class=\"tabs\" aria-label=\"filter\">");
    for choice in choices {
        out.raw("<a").attr("href", &link(choice));
        if *choice == current {
            out.raw(" aria-current=\"page\"");
        }
        out.raw(">").text(choice).raw("</a>");
    }
    out.raw("</nav>");
}

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
    // Deployments.
    body.raw("<section id=\"deployments\"><h2>Deployments</h2>");
    if p.deployments.is_empty() {
        body.raw("<p class=\"muted\">no tags yet</p>");
    } else {
        body.raw("<div class=\"scroll\"><table class=\"list\"><thead><tr><th>Tag</th><th class=\"num\">Version</th>")
            .raw("<th>Moved</th><th>By</th><th>How</th><th>Why</th></tr></thead><tbody>");
        for d in p.deployments {
            body.raw("<tr><td>");
            badge(
                &mut body,
                &d.tag,
                if d.protected { "protected" } else { "" },
            );
            body.raw("</td><td class=\"num\">")
                .link(
                    &version_href(p.name, d.version_seq),
                    &format!("v{}", d.version_seq),
                )
                .raw("</td><td>");
            time(&mut body, &d.moved_at);
            body.raw("</td><td>").text(&d.moved_by).raw("</td><td>");
            if d.gated {
                badge(&mut body, "gated", "gated");
            } else if let Some(action) = d.action {
                badge(&mut body, action.as_str(), action.as_str());
            }
            if d.forced {
                badge(&mut body, "forced", "forced");
            }
            if d.deploy {
                badge(&mut body, "deploy", "deploy");
            }
            body.raw("</td><td>");
            why(&mut body, d.message.as_deref(), d.evidence.as_ref());
            body.raw("</td></tr>");
        }
        body.raw("</tbody></table></div>");
    }
    if viewer.can_write() {
        actions(&mut body, viewer, p);
    }
    body.raw("</section>");
    // Versions.
    body.raw("<section id=\"versions\"><h2>Versions</h2>");
    if p.versions.len() > 1 {
        body.raw("<form method=\"get\" class=\"filters\"")
            .attr("action", &format!("/prompts/{}/diff", url_part(p.name)))
            .raw("><label>Diff <select name=\"from\">");
        version_options(&mut body, p.versions, p.versions.get(1).map(|v| v.seq));
        body.raw("</select></label><label>to <select name=\"to\">");
        version_options(&mut body, p.versions, p.versions.first().map(|v| v.seq));
        body.raw("</select></label><button type=\"submit\">Show diff</button></form>");
    }
    body.raw("<div class=\"scroll\"><table class=\"list\"><thead><tr><th class=\"num\">Version</th><th>Author</th>")
        .raw("<th>Created</th><th>Message</th><th>Tags</th><th></th></tr></thead><tbody>");
    for v in p.versions {
        body.raw("<tr><td class=\"num\">")
            .link(&version_href(p.name, v.seq), &format!("v{}", v.seq))
            .raw("</td><td>")
            .text(&v.author)
            .raw("</td><td>");
        time(&mut body, &v.created_at);
        body.raw("</td><td>")
            .text(&crate::text::one_line(
                v.message.as_deref().unwrap_or(""),
                100,
            ))
            .raw("</td><td>");
        if let Some(tags) = p.tags_by_version.get(&v.id) {
            tag_badges(&mut body, tags, p.protected);
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
    // Tag history, newest first.
    body.raw("<section id=\"history\"><h2>Tag history</h2><ol class=\"timeline\">");
    if p.history.is_empty() {
        body.raw("<li class=\"muted\">no tag changes yet</li>");
    }
    for e in p.history.iter().rev() {
        body.raw("<li><div class=\"when\">");
        time(&mut body, &e.at);
        body.raw("</div><div>");
        badge(&mut body, e.action.as_str(), e.action.as_str());
        if e.forced {
            badge(&mut body, "forced", "forced");
        }
        if e.deploy {
            badge(&mut body, "deploy", "deploy");
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
            why(&mut body, e.message.as_deref(), evidence.as_ref());
            body.raw("</div>");
        }
        body.raw("</div></li>");
    }
    body.raw("</ol></section>");
    layout(Some(viewer), p.name, &body)
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

/// What the playground panel shows: the form as it was filled, and the answers of a run.
#[derive(Debug, Default)]
pub struct Playground {
    /// One field per variable: the template's, the edited template's, the other version's.
    pub variables: Vec<String>,
    pub values: BTreeMap<String, String>,
    /// Datasets recorded in experiments: the only files a row may be read from.
    pub datasets: Vec<String>,
    pub dataset: String,
    pub row: String,
    /// Another version to run beside this one: (form value, label).
    pub others: Vec<(String, String)>,
    pub other: String,
    /// The template as edited (the version's own, as text, at first).
    pub template: String,
    pub message: String,
    /// Each side of a run: its label and its answer, or the endpoint's message.
    pub results: Vec<(String, Result<TryView, String>)>,
    /// Why the form was refused (a missing variable, an unknown row).
    pub problem: Option<String>,
}

/// The figures of an answer, as `runner try` prints them after it.
pub fn figures(v: &TryView) -> String {
    let tokens = match (v.prompt_tokens, v.completion_tokens) {
        (Some(p), Some(c)) => format!("{p} in / {c} out tokens"),
        _ => "tokens not reported".to_string(),
    };
    format!(
        "{} · {:.0} ms, first token {} · {} · finish: {}",
        v.model,
        v.latency_ms,
        v.ttft_ms
            .map(|t| format!("{t:.0} ms"))
            .unwrap_or_else(|| "-".into()),
        tokens,
        v.finish_reason.as_deref().unwrap_or("-"),
    )
}

/// The script that streams a run's answers in (see `assets/playground.js`); the page carries
/// it inline and the Content-Security-Policy allows exactly this text, by its hash.
pub const PLAYGROUND_SCRIPT: &str = include_str!("../assets/playground.js");

/// The playground: variables (typed, or filled from a dataset row), the template to try,
/// another version to run beside it, Run, the answers, and "save as new version". One form:
/// without JavaScript each button posts it and the page comes back with the result; with
/// JavaScript, Run streams the answers in.
fn playground(out: &mut Html, viewer: &Viewer, v: &PromptVersion, play: &Playground) {
    let base = format!("/prompts/{}/versions/{}", url_part(&v.prompt), v.seq);
    out.raw("<section class=\"playground\" id=\"play\"><h2>Playground</h2>")
        .raw("<p class=\"muted small\">Runs against the server's endpoint with its key; nothing is recorded unless you save.</p>");
    if let Some(problem) = &play.problem {
        out.raw("<p class=\"error\" role=\"alert\" id=\"play-problem\">")
            .text(problem)
            .raw("</p>");
    }
    out.raw("<form method=\"post\" id=\"playground\"")
        .attr("action", &format!("{base}/try#play"))
        .attr("data-stream", &format!("{base}/try/stream"))
        .raw(">");
    csrf_field(out, viewer);
    out.raw("<div class=\"play-grid\"><fieldset><legend>Variables</legend>");
    if play.variables.is_empty() {
        out.raw("<p class=\"muted\">this template uses no variable</p>");
    }
    for name in &play.variables {
        out.raw("<label>")
            .element(Tag::Code, "", name)
            .raw("<textarea rows=\"2\"")
            .attr("name", &format!("var.{name}"))
            .raw(">\n")
            .text(play.values.get(name).map_or("", String::as_str))
            .raw("</textarea></label>");
    }
    out.raw("</fieldset><fieldset><legend>Template</legend><label>Edit and run; save it below")
        .raw("<textarea name=\"template\" rows=\"8\" spellcheck=\"false\">\n")
        .text(&play.template)
        .raw("</textarea></label></fieldset></div><div class=\"filters\"><label>Beside it, run <select name=\"other\"><option value=\"\">nothing else</option>");
    for (value, label) in &play.others {
        out.raw("<option").attr("value", value);
        if *value == play.other {
            out.raw(" selected");
        }
        out.raw(">").text(label).raw("</option>");
    }
    out.raw("</select></label><button type=\"submit\" name=\"action\" value=\"run\" class=\"primary\">Run</button></div>");
    let this_label = format!("{} v{}", v.prompt, v.seq);
    let (this, other) = match play.results.as_slice() {
        [] => (None, None),
        [a] => (Some(a), None),
        [a, b, ..] => (Some(a), Some(b)),
    };
    out.raw("<div class=\"sides\" aria-live=\"polite\">");
    side(out, "this", &this_label, this);
    side(out, "other", "", other);
    out.raw(
        "</div><details class=\"act\"><summary>Fill the variables from a dataset row…</summary>",
    );
    if play.datasets.is_empty() {
        out.raw("<p class=\"muted\">No dataset yet: rows come from datasets recorded in experiments.</p>");
    } else {
        out.raw("<div class=\"filters\"><label>Dataset (recorded in an experiment) <select name=\"dataset\">");
        for path in &play.datasets {
            out.raw("<option").attr("value", path);
            if *path == play.dataset {
                out.raw(" selected");
            }
            out.raw(">").text(path).raw("</option>");
        }
        out.raw("</select></label><label>Row id <input name=\"row\" maxlength=\"200\"")
            .attr("value", &play.row)
            .raw("></label><button type=\"submit\" name=\"action\" value=\"fill\">Fill from row</button></div>");
    }
    out.raw("</details><details class=\"act\"><summary>Save the edited template as a new version…</summary><div class=\"forms\"><div class=\"action\">")
        .raw("<label>Message (required) <input name=\"message\" maxlength=\"500\" placeholder=\"what changed and why\"")
        .attr("value", &play.message)
        .raw("></label><label class=\"check\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\"> I confirm: store this template as the next version</label>")
        .raw("<button type=\"submit\" name=\"action\" value=\"save\"")
        .attr("formaction", &format!("{base}/save"))
        .raw(">Save as new version</button></div></div></details></form><script>")
        .raw(PLAYGROUND_SCRIPT)
        .raw("</script></section>");
}

/// One column of answers: filled when the page shows a run, empty for the script to fill.
fn side(
    out: &mut Html,
    id: &'static str,
    label: &str,
    result: Option<&(String, Result<TryView, String>)>,
) {
    let (open, answer, figures_p, error) = match id {
        "this" => (
            "<section class=\"side\" id=\"side-this\"",
            "<pre class=\"answer\" id=\"answer-this\">",
            "<p class=\"muted small figures\" id=\"figures-this\">",
            "<pre class=\"answer error\" role=\"alert\" id=\"answer-this\">",
        ),
        _ => (
            "<section class=\"side\" id=\"side-other\"",
            "<pre class=\"answer\" id=\"answer-other\">",
            "<p class=\"muted small figures\" id=\"figures-other\">",
            "<pre class=\"answer error\" role=\"alert\" id=\"answer-other\">",
        ),
    };
    out.raw(open);
    if result.is_none() && id == "other" {
        out.raw(" hidden");
    }
    out.raw("><h3 class=\"label\">")
        .text(result.map_or(label, |(l, _)| l.as_str()))
        .raw("</h3>");
    match result.map(|(_, r)| r) {
        None => {
            out.raw(answer).raw("</pre>").raw(figures_p).raw("</p>");
        }
        Some(Ok(view)) => {
            out.raw(answer)
                .text(&view.output)
                .raw("</pre>")
                .raw(figures_p)
                .text(&figures(view))
                .raw("</p>");
        }
        Some(Err(message)) => {
            out.raw(error)
                .text(message)
                .raw("</pre>")
                .raw(figures_p)
                .raw("</p>");
        }
    }
    out.raw("</section>");
}

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

/// Which rows of an experiment a page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFilter {
    All,
    /// An evaluator failed or the call errored.
    Failed,
    Errored,
}

impl ResultFilter {
    pub fn parse(text: Option<&str>) -> Result<ResultFilter, UiError> {
        match text.unwrap_or("all") {
            "" | "all" => Ok(ResultFilter::All),
            "failed" => Ok(ResultFilter::Failed),
            "errored" => Ok(ResultFilter::Errored),
            other => Err(UiError::bad(format!(
                "show: expected all, failed or errored, got '{other}'"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ResultFilter::All => "all",
            ResultFilter::Failed => "failed",
            ResultFilter::Errored => "errored",
        }
    }

    pub fn keeps(self, r: &RunResult) -> bool {
        match self {
            ResultFilter::All => true,
            ResultFilter::Errored => r.status == ResultStatus::Error,
            ResultFilter::Failed => {
                r.status == ResultStatus::Error || r.scores.iter().any(|s| !s.pass)
            }
        }
    }
}

pub struct ExperimentPage<'a> {
    pub experiment: &'a Experiment,
    pub summary: &'a Summary,
    pub rows: &'a [RunResult],
    pub matched: usize,
    pub page: usize,
    pub per_page: usize,
    pub filter: ResultFilter,
    pub text: &'a str,
}

pub fn experiment(viewer: &Viewer, p: &ExperimentPage<'_>) -> String {
    let e = p.experiment;
    let s = p.summary;
    let mut body = Html::new();
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / ")
        .link(&prompt_href(&e.prompt), &e.prompt)
        .raw(" / ")
        .link(
            &format!("/prompts/{}/experiments", url_part(&e.prompt)),
            "experiments",
        )
        .raw(" /</p><h1>")
        .text(e.name.as_deref().unwrap_or("Experiment"))
        .raw(" <code class=\"small\">")
        .text(short_id(&e.id))
        .raw("</code></h1><dl class=\"facts\"><dt>Version</dt><dd>")
        .link(
            &version_href(&e.prompt, e.version_seq),
            &format!("v{}", e.version_seq),
        );
    if let Some(tag) = &e.tag {
        body.raw(" ");
        badge(&mut body, tag, "");
    }
    body.raw("</dd><dt>Dataset</dt><dd>")
        .text(&format!("{} ({} rows)", e.dataset.path, e.dataset.rows))
        .raw("</dd><dt>Model</dt><dd>")
        .text(&e.model)
        .raw("</dd><dt>Status</dt><dd>")
        .text(&e.status.as_str().replace('_', " "))
        .raw("</dd><dt>Pass rate</dt><dd>");
    pass_rates(&mut body, s);
    body.raw("</dd><dt>Errors</dt><dd>")
        .text(&format!(
            "{} of {} ({})",
            s.errored,
            s.results,
            percent(s.error_rate)
        ))
        .raw("</dd><dt>Latency</dt><dd>")
        .text(&format!(
            "p50 {} · p95 {}",
            ms(s.latency_p50_ms),
            ms(s.latency_p95_ms)
        ))
        .raw("</dd><dt>Tokens</dt><dd>")
        .text(&format!(
            "{} in · {} out",
            s.prompt_tokens, s.completion_tokens
        ))
        .raw("</dd><dt>Started</dt><dd>");
    time(&mut body, &e.created_at);
    body.raw("</dd></dl><h2>Rows</h2>");
    let base = experiment_href(&e.id);
    let link_with = |show: &str, text: &str, page: usize| {
        format!(
            "{base}{}",
            query(&[("show", show), ("q", text), ("page", &page.to_string())])
        )
    };
    filter_links(
        &mut body,
        p.filter.as_str(),
        &["all", "failed", "errored"],
        &|c| link_with(c, p.text, 1),
    );
    body.raw("<form method=\"get\" class=\"filters\" role=\"search\"")
        .attr("action", &base)
        .raw("><input type=\"hidden\" name=\"show\"")
        .attr("value", p.filter.as_str())
        .raw("><label>Search rows <input type=\"search\" name=\"q\"")
        .attr("value", p.text)
        .raw("></label><button type=\"submit\">Search</button></form>");
    body.raw("<div class=\"scroll\"><table class=\"rows\"><thead><tr><th>Row</th><th>Input</th><th>Output</th>")
        .raw("<th>Expected</th><th>Scores</th></tr></thead><tbody>");
    if p.rows.is_empty() {
        body.raw("<tr><td colspan=\"5\" class=\"muted\">no rows match</td></tr>");
    }
    for r in p.rows {
        body.raw("<tr><td><code>").text(&r.row_id).raw("</code>");
        if r.repetition > 0 {
            body.raw(" <span class=\"muted\">rep ")
                .display(r.repetition)
                .raw("</span>");
        }
        body.raw("<div class=\"muted small\">")
            .text(&format!("{:.0} ms", r.latency_ms))
            .raw("</div></td><td>");
        folded(&mut body, &crate::report::input_text(e, r));
        body.raw("</td><td>");
        match (&r.output, r.status) {
            (Some(output), ResultStatus::Ok) => folded(&mut body, output),
            _ => {
                body.raw("<div class=\"error\">");
                badge(
                    &mut body,
                    r.error_kind.as_deref().unwrap_or("error"),
                    "error",
                );
                body.raw(" ");
                folded(&mut body, r.error_message.as_deref().unwrap_or(""));
                body.raw("</div>");
            }
        }
        body.raw("</td><td>");
        folded(&mut body, r.expected.as_deref().unwrap_or(""));
        body.raw("</td><td>");
        for score in &r.scores {
            body.raw("<div class=\"score\">");
            badge(
                &mut body,
                &format!(
                    "{} {}",
                    score.evaluator,
                    if score.pass { "pass" } else { "fail" }
                ),
                if score.pass { "pass" } else { "fail" },
            );
            body.raw(" <span class=\"muted small\">")
                .text(&crate::text::one_line(&score.reason, 160))
                .raw("</span></div>");
        }
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table></div>");
    pager(&mut body, p.page, p.per_page, p.matched, &|n| {
        link_with(p.filter.as_str(), p.text, n)
    });
    layout(Some(viewer), "experiment", &body)
}

/// The gate's criteria as recorded: one row each, with what was required, what was measured
/// and the outcome (older promotions recorded them as text).
fn criteria(out: &mut Html, recorded: &[serde_json::Value]) {
    out.raw("<div class=\"scroll\"><table class=\"list\"><thead><tr><th>Criterion</th>")
        .raw("<th class=\"num\">Required</th><th class=\"num\">Measured</th><th>Outcome</th></tr></thead><tbody>");
    for value in recorded {
        match serde_json::from_value::<crate::gate::Criterion>(value.clone()) {
            Ok(c) => {
                out.raw("<tr><td>")
                    .text(&c.name)
                    .raw("</td><td class=\"num\">")
                    .text(&c.threshold_text())
                    .raw("</td><td class=\"num\">")
                    .text(&c.actual_text())
                    .raw("</td><td>");
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
    let c = p.comparison;
    let mut body = Html::new();
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / ")
        .link(&prompt_href(&p.candidate.prompt), &p.candidate.prompt)
        .raw(" / ")
        .link(
            &format!("/prompts/{}/experiments", url_part(&p.candidate.prompt)),
            "experiments",
        )
        .raw(" /</p><h1>Compare</h1>");
    if !c.same_dataset() {
        body.raw("<p class=\"error\" role=\"alert\">The two experiments ran on different datasets: rows are matched by id, and no gate accepts this comparison.</p>");
    }
    if let Some((event, evidence)) = p.verdict {
        body.raw("<section class=\"verdict-box\"><h2>Promotion</h2><p>");
        badge(&mut body, "promote", "promote");
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
        time(&mut body, &event.at);
        body.raw("</p><p class=\"verdict\">")
            .text(&evidence.verdict)
            .raw("</p>");
        // Both sides' error rates are in the criteria (the `max error rate` row).
        criteria(&mut body, &evidence.criteria);
        for note in &evidence.notes {
            body.raw("<p class=\"note\">Note: ").text(note).raw("</p>");
        }
        body.raw("</section>");
    }
    // Metrics side by side.
    body.raw("<div class=\"scroll\"><table class=\"list metrics\"><thead><tr><th>Metric</th><th>Baseline ")
        .link(&experiment_href(&p.baseline.id), &format!("v{} {}", p.baseline.version_seq, short_id(&p.baseline.id)))
        .raw("</th><th>Candidate ")
        .link(&experiment_href(&p.candidate.id), &format!("v{} {}", p.candidate.version_seq, short_id(&p.candidate.id)))
        .raw("</th><th>Change</th></tr></thead><tbody>");
    // Each pass rate with its interval (Wilson's, not symmetric about the rate); the change
    // with the paired difference's interval and p-value, as `runner compare` prints them.
    let margin = |side: Option<&crate::compare::SideMetrics>, name: &str| {
        side.and_then(|m| m.evaluators.iter().find(|e| e.evaluator == name))
            .and_then(|m| m.pass_rate_ci)
            .map(|ci| format!(" ({})", crate::stats::rate_interval(ci)))
            .unwrap_or_default()
    };
    for e in &c.evaluators {
        body.raw("<tr><td>")
            .text(&format!("{} pass rate", e.evaluator))
            .raw("</td><td class=\"num\">")
            .text(&e.baseline_pass_rate.map_or("–".into(), |v| {
                format!(
                    "{}{}",
                    percent(v),
                    margin(c.baseline.as_ref(), &e.evaluator)
                )
            }))
            .raw("</td><td class=\"num\">")
            .text(&format!(
                "{}{}",
                percent(e.candidate_pass_rate),
                margin(Some(&c.candidate), &e.evaluator)
            ))
            .raw("</td><td>");
        delta(&mut body, e.delta, true, Change::Points);
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
    if let Some(b) = &c.baseline {
        let k = &c.candidate;
        let between = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        let tokens = |m: &crate::compare::SideMetrics| (m.tokens_in + m.tokens_out) as f64;
        let cost = |m: &crate::compare::SideMetrics| match m.cost_per_row_usd {
            Some(usd) => crate::cost::usd(usd),
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
                .raw("</td><td class=\"num\">")
                .text(&base)
                .raw("</td><td class=\"num\">")
                .text(&cand)
                .raw("</td><td>");
            delta(&mut body, change, false, unit);
            body.raw("</td></tr>");
        }
        body.raw("<tr><td>rows</td><td class=\"num\">")
            .display(b.rows)
            .raw("</td><td class=\"num\">")
            .display(k.rows)
            .raw("</td><td class=\"muted small\">")
            .text(&format!(
                "{} only in baseline · {} only in candidate · {} new failures",
                c.only_in_baseline.len(),
                c.only_in_candidate.len(),
                c.new_failures.len()
            ))
            .raw("</td></tr>");
    }
    body.raw("</tbody></table></div>");
    // The rows: changed ones (regressed first), or every one.
    body.raw(if p.show == ChangeFilter::All {
        "<h2>Every row</h2>"
    } else {
        "<h2>Rows whose verdict changed</h2>"
    });
    let link = |show: &str, page: usize| {
        compare_href(&p.baseline.id, &p.candidate.id) + &format!("&show={show}&page={page}")
    };
    filter_links(
        &mut body,
        p.show.as_str(),
        &["changed", "regressed", "improved", "all"],
        &|s| link(s, 1),
    );
    body.raw(
        "<div class=\"scroll\"><table class=\"rows compare\"><thead><tr><th>Row</th><th>Input</th>",
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
    // A side's cell: its verdict and output; a side without the row says so.
    let side = |body: &mut Html, side: &Option<(bool, Option<RowText>)>| match side {
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
    };
    for r in p.rows {
        body.raw("<tr><td><code>")
            .text(&r.row_id)
            .raw("</code><div>");
        let kind = r.kind.as_str();
        badge(&mut body, kind, &kind.replace(' ', "-"));
        body.raw("</div>");
        if let Some(evaluator) = &r.evaluator {
            body.raw("<div class=\"muted small\">")
                .text(evaluator)
                .raw("</div>");
        }
        body.raw("</td><td>");
        let input = [&r.candidate, &r.baseline]
            .into_iter()
            .find_map(|s| s.as_ref().and_then(|(_, t)| t.as_ref()));
        if let Some(t) = input {
            folded(&mut body, &t.input);
            if let Some(expected) = &t.expected {
                body.raw("<div class=\"muted small\">expected: ")
                    .text(expected)
                    .raw("</div>");
            }
        }
        body.raw("</td><td>");
        side(&mut body, &r.baseline);
        body.raw("</td><td>");
        side(&mut body, &r.candidate);
        body.raw("</td><td>");
        if r.baseline.is_some() && r.candidate.is_some() {
            diff::render(
                side_output(&r.baseline),
                side_output(&r.candidate),
                &mut body,
            );
        }
        body.raw("</td></tr>");
    }
    body.raw("</tbody></table></div>");
    pager(&mut body, p.page, p.per_page, p.total, &|n| {
        link(p.show.as_str(), n)
    });
    layout(Some(viewer), "compare", &body)
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
