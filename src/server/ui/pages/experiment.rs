//! One experiment's page: its facts and summary, the row filter and search, and its rows with
//! their inputs, outputs, expectations and scores. Owns `ResultFilter`, which the handler also
//! uses to choose the rows. Renders HTML only: the rows arrive filtered and paged; no store
//! access, no I/O.

use super::{
    badge, experiment_href, filter_links, folded, layout, ms, pager, pass_rates, percent,
    prompt_href, query, short_id, time, version_href,
};
use crate::model::{Experiment, ResultStatus, RunResult, Summary};
use crate::ui::html::{Html, url_part};
use crate::ui::{UiError, Viewer};

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
    let mut body = Html::new();
    facts(&mut body, p.experiment, p.summary);
    rows(&mut body, p);
    layout(Some(viewer), "experiment", &body)
}

/// Library / PROMPT / experiments, or Library / experiments for an experiment of no prompt.
pub(super) fn crumbs(body: &mut Html, prompt: Option<&str>) {
    body.raw("<p class=\"crumbs\"><a href=\"/\">Library</a> / ");
    match prompt {
        Some(prompt) => {
            body.link(&prompt_href(prompt), prompt).raw(" / ").link(
                &format!("/prompts/{}/experiments", url_part(prompt)),
                "experiments",
            );
        }
        None => {
            body.link("/experiments", "experiments");
        }
    }
    body.raw(" /</p>");
}

/// The crumbs, the title, and what the experiment ran and how it did: version, dataset, model,
/// status, pass rates, errors, latency, tokens and when it started.
fn facts(body: &mut Html, e: &Experiment, s: &Summary) {
    crumbs(body, e.prompt.as_deref());
    body.raw("<h1>")
        .text(e.name.as_deref().unwrap_or("Experiment"))
        .raw(" <code class=\"small\">")
        .text(short_id(&e.id))
        .raw("</code></h1><dl class=\"facts\"><dt>Version</dt><dd>");
    match e.judged() {
        Some((prompt, _, seq)) => {
            body.link(&version_href(prompt, seq), &format!("v{seq}"));
        }
        None => {
            body.raw("<span class=\"muted\">none: your own code ran it and named no prompt version, so it can be compared but never promoted on</span>");
        }
    }
    if let Some(tag) = &e.tag {
        body.raw(" ");
        badge(body, tag, "");
    }
    body.raw("</dd><dt>Dataset</dt><dd>")
        .text(&format!("{} ({} rows)", e.dataset.path, e.dataset.rows))
        .raw("</dd><dt>Model</dt><dd>")
        .text(&e.model)
        .raw("</dd><dt>Status</dt><dd>")
        .text(&e.status.as_str().replace('_', " "))
        .raw("</dd><dt>Pass rate</dt><dd>");
    pass_rates(body, s);
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
    time(body, &e.created_at);
    body.raw("</dd></dl>");
}

/// The rows' heading, the filter tabs, the search form, this page of rows and the pager.
fn rows(body: &mut Html, p: &ExperimentPage<'_>) {
    let e = p.experiment;
    body.raw("<h2>Rows</h2>");
    let base = experiment_href(&e.id);
    let link_with = |show: &str, text: &str, page: usize| {
        format!(
            "{base}{}",
            query(&[("show", show), ("q", text), ("page", &page.to_string())])
        )
    };
    filter_links(
        body,
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
    body.raw("<div class=\"scroll\"><table class=\"rows cards stacked\"><thead><tr><th>Row</th><th>Input</th><th>Output</th>")
        .raw("<th>Expected</th><th>Scores</th></tr></thead><tbody>");
    if p.rows.is_empty() {
        body.raw("<tr><td colspan=\"5\" class=\"muted\">no rows match</td></tr>");
    }
    for r in p.rows {
        row(body, e, r);
    }
    body.raw("</tbody></table></div>");
    pager(body, p.page, p.per_page, p.matched, &|n| {
        link_with(p.filter.as_str(), p.text, n)
    });
}

/// One result: its row id (and repetition) and latency, input, output or error, expected text,
/// and each evaluator's verdict with its reason.
fn row(body: &mut Html, e: &Experiment, r: &RunResult) {
    body.raw("<tr><td><code>").text(&r.row_id).raw("</code>");
    if r.repetition > 0 {
        body.raw(" <span class=\"muted\">rep ")
            .display(r.repetition)
            .raw("</span>");
    }
    body.raw("<div class=\"muted small\">")
        .text(&format!("{:.0} ms", r.latency_ms))
        .raw("</div></td><td data-label=\"Input\">");
    folded(body, &crate::report::input_text(e, r));
    body.raw("</td><td data-label=\"Output\">");
    match (&r.output, r.status) {
        (Some(output), ResultStatus::Ok) => folded(
            body,
            &crate::tool_calls::with_answer(output, r.extra.as_ref()),
        ),
        _ => {
            body.raw("<div class=\"error\">");
            badge(body, r.error_kind.as_deref().unwrap_or("error"), "error");
            body.raw(" ");
            folded(body, r.error_message.as_deref().unwrap_or(""));
            body.raw("</div>");
        }
    }
    body.raw("</td><td data-label=\"Expected\">");
    // No expectation leaves the cell empty, which a phone's card leaves out.
    if let Some(expected) = r.expected.as_deref().filter(|x| !x.is_empty()) {
        folded(body, expected);
    }
    body.raw("</td><td data-label=\"Scores\">");
    for score in &r.scores {
        body.raw("<div class=\"score\">");
        badge(
            body,
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
