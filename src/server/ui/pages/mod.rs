//! Page renderers: pure functions from typed views to HTML text, every value written through
//! `Html`'s escaping. Each page lives in its own file; this module holds what they share (the
//! page shell, the CSRF field, links and query strings, the pager, badges, times, figures and
//! folded texts) and re-exports each page's entry points, so callers keep writing
//! `pages::xyz`. Nothing here or below reads the store, the clock or the network, and nothing
//! enforces who may do what (a page leaves out a form its viewer may not use; the handler
//! behind the form still refuses): a renderer takes the view its handler built and returns text.

mod compare;
mod errors;
mod experiment;
mod experiments;
mod library;
mod login;
mod playground;
mod production;
mod prompt;
mod rollout;
mod span;
mod traffic_chart;
mod version;
mod version_diff;

pub use compare::{ChangeFilter, ComparePage, CompareRow, compare};
pub use errors::error_page;
pub use experiment::{ExperimentPage, ResultFilter, experiment};
pub use experiments::experiments;
pub use library::{LibraryPage, library};
pub use login::login;
pub use playground::{PLAYGROUND_SCRIPT, Playground, Replay, figures};
pub use production::{ProductionSection, TrafficWindow};
pub use prompt::{PromptPage, prompt};
pub use span::span;
pub use version::{version, with_recent_spans};
pub use version_diff::diff;

use super::Viewer;
use super::html::{Html, url_part};
use crate::model::{PromptVersion, Summary};

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
        .raw("<nav><a href=\"/\">Library</a> <a href=\"/experiments\">Experiments</a></nav>");
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

/// A finished page with `section` added at the end of its main content.
fn append_to_main(page: String, section: &Html) -> String {
    // Every text in a page is escaped, so the last `</main>` is the one `layout` wrote.
    match page.rfind("</main>") {
        Some(at) => {
            let mut out = String::with_capacity(page.len() + section.as_str().len());
            out.push_str(&page[..at]);
            out.push_str(section.as_str());
            out.push_str(&page[at..]);
            out
        }
        None => page,
    }
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
