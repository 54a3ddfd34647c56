//! The playground panel of a version's page: the one form (variables, the edited template,
//! another version to run beside it, a dataset row to fill from, save as a new version), the two
//! answer columns, the figures line of an answer, the line naming the production span whose
//! variables filled the form, and the inline script that streams answers in. Renders HTML
//! only: calling the endpoint, reading a dataset row or a span and writing a version belong
//! to `ui::playground`, which hands over a `Playground` view. The script's text is hashed into
//! the Content-Security-Policy, so any change to it changes that header.

use super::csrf_field;
use crate::model::PromptVersion;
use crate::ui::Viewer;
use crate::ui::html::{Html, Tag, url_part};
use crate::workflow::playground::TryView;
use std::collections::BTreeMap;

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
    /// Why the form was refused (a missing variable, an unknown row, an unknown span).
    pub problem: Option<String>,
    /// The stored span whose template variables filled the form (`?span=SPAN_ID`).
    pub replay: Option<Replay>,
}

/// Where the variables of a replayed production call came from.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replay {
    pub span_id: String,
    pub trace_id: String,
    /// When the span started, as stored times are shown.
    pub started: String,
    /// The version the span is linked to (`greet v3`), if any.
    pub ran: Option<String>,
    /// The span's variables this template does not use, left out.
    pub unused: Vec<String>,
    /// The span recorded no template variables: nothing was filled.
    pub empty: bool,
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

/// The script that streams a run's answers in (see `ui/assets/playground.js`); the page carries
/// it inline and the Content-Security-Policy allows exactly this text, by its hash.
pub const PLAYGROUND_SCRIPT: &str = include_str!("../assets/playground.js");

/// The playground: variables (typed, or filled from a dataset row), the template to try,
/// another version to run beside it, Run, the answers, and "save as new version". One form:
/// without JavaScript each button posts it and the page comes back with the result; with
/// JavaScript, Run streams the answers in.
pub(super) fn playground(out: &mut Html, viewer: &Viewer, v: &PromptVersion, play: &Playground) {
    let base = format!("/prompts/{}/versions/{}", url_part(&v.prompt), v.seq);
    out.raw("<section class=\"playground\" id=\"play\"><h2>Playground</h2>")
        .raw("<p class=\"muted small\">Runs against the server's endpoint with its key; nothing is recorded unless you save.</p>");
    if let Some(problem) = &play.problem {
        out.raw("<p class=\"error\" role=\"alert\" id=\"play-problem\">")
            .text(problem)
            .raw("</p>");
    }
    if let Some(replay) = &play.replay {
        replayed(out, replay);
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

/// The line that says which production call the variables came from, and when.
fn replayed(out: &mut Html, replay: &Replay) {
    out.raw("<p class=\"muted small\" id=\"play-replay\">Variables from span ")
        .element(Tag::Code, "", &replay.span_id)
        .raw(" of trace ")
        .element(Tag::Code, "", &replay.trace_id)
        .raw(", started ")
        .text(&replay.started);
    if let Some(ran) = &replay.ran {
        out.raw(" on ").text(ran);
    }
    out.raw(".");
    if replay.empty {
        out.raw(" It recorded no template variables: nothing was filled.");
    }
    if !replay.unused.is_empty() {
        out.raw(" Not used by this template, so left out: ")
            .text(&replay.unused.join(", "))
            .raw(".");
    }
    out.raw("</p>");
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
