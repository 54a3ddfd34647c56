//! The Production section of a prompt's page: the window and score choosers, the chart of
//! traffic over time with every tag move on its time axis (drawn by `traffic_chart`), and each
//! version's production figures in a table: requests, errors with Wilson's interval, latency,
//! tokens, cost, each annotation's mean and pass share with their intervals, first and last
//! seen, the applications that sent it. Owns `TrafficWindow` (the handler turns it into the
//! window it reads) and the colour each version is drawn in, the same in the table and the
//! chart. Renders HTML only: the figures arrive computed by `domain::production`; no store
//! access, no clock, no I/O.

use super::{badge, ms, percent, prompt_href, query, traffic_chart, version_href};
use crate::production::{Production, ScoreSummary, VersionTraffic};
use crate::stats::{confidence_text, rate_interval};
use crate::ui::UiError;
use crate::ui::html::Html;
use std::collections::{BTreeMap, BTreeSet};

/// How many colours versions are drawn in (`v0`…`v7` in the stylesheet).
pub const PALETTE: usize = 8;

/// How far back the Production section looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficWindow {
    Hour,
    Day,
    Week,
    Month,
}

impl TrafficWindow {
    const ALL: [TrafficWindow; 4] = [
        TrafficWindow::Hour,
        TrafficWindow::Day,
        TrafficWindow::Week,
        TrafficWindow::Month,
    ];

    /// `1h`, `24h`, `7d` or `30d`; none (or empty) is the last 24 hours.
    pub fn parse(text: Option<&str>) -> Result<TrafficWindow, UiError> {
        match text.unwrap_or("") {
            "" => Ok(TrafficWindow::Day),
            text => TrafficWindow::ALL
                .into_iter()
                .find(|w| w.as_str() == text)
                .ok_or_else(|| {
                    UiError::bad(format!(
                        "window: expected 1h, 24h, 7d or 30d, got '{}'",
                        crate::text::one_line(text, 40)
                    ))
                }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrafficWindow::Hour => "1h",
            TrafficWindow::Day => "24h",
            TrafficWindow::Week => "7d",
            TrafficWindow::Month => "30d",
        }
    }

    pub fn millis(self) -> i64 {
        const HOUR: i64 = 3_600_000;
        match self {
            TrafficWindow::Hour => HOUR,
            TrafficWindow::Day => 24 * HOUR,
            TrafficWindow::Week => 7 * 24 * HOUR,
            TrafficWindow::Month => 30 * 24 * HOUR,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            TrafficWindow::Hour => "the last hour",
            TrafficWindow::Day => "the last 24 hours",
            TrafficWindow::Week => "the last 7 days",
            TrafficWindow::Month => "the last 30 days",
        }
    }
}

/// What the section shows: the figures of one window, and the score the chart was asked for.
pub struct ProductionSection<'a> {
    pub production: &'a Production,
    pub window: TrafficWindow,
    /// `?score=NAME`, when given.
    pub score: Option<&'a str>,
    pub confidence: f64,
}

/// Each version's colour: versions in ascending order take the palette's colours in turn, so
/// the versions of one window never share one (up to `PALETTE` of them).
pub fn colours(p: &Production) -> BTreeMap<i64, usize> {
    let numbers: BTreeSet<i64> = p
        .versions
        .iter()
        .map(|v| v.version)
        .chain(p.series.points.iter().map(|pt| pt.version))
        .collect();
    numbers
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i % PALETTE))
        .collect()
}

/// The annotation names that have a mean score somewhere in the window, in name order.
fn scored_names(p: &Production) -> Vec<String> {
    let names: BTreeSet<&str> = p
        .versions
        .iter()
        .flat_map(|v| v.scores.iter())
        .filter(|s| s.mean.is_some())
        .map(|s| s.name.as_str())
        .collect();
    names.into_iter().map(str::to_string).collect()
}

/// The score the chart draws: the one asked for when the window has it, else the first name.
fn chosen_score<'a>(names: &'a [String], asked: Option<&str>) -> Option<&'a str> {
    asked
        .and_then(|a| names.iter().find(|n| *n == a))
        .or_else(|| names.first())
        .map(String::as_str)
}

/// The section: its choosers and summary line, then the chart and the table, or, with no
/// traffic in the window, how to send some.
pub fn production(out: &mut Html, prompt: &str, s: &ProductionSection<'_>) {
    let p = s.production;
    let names = scored_names(p);
    let score = chosen_score(&names, s.score);
    let link = |window: TrafficWindow, score: Option<&str>| {
        format!(
            "{}{}#production",
            prompt_href(prompt),
            query(&[("window", window.as_str()), ("score", score.unwrap_or(""))])
        )
    };
    out.raw("<section id=\"production\"><h2>Production</h2><div class=\"controls\">")
        .raw("<nav class=\"tabs\" aria-label=\"window\"><span class=\"muted\">Window</span>");
    for window in TrafficWindow::ALL {
        out.raw("<a").attr("href", &link(window, s.score));
        if window == s.window {
            out.raw(" aria-current=\"page\"");
        }
        out.raw(">").text(window.as_str()).raw("</a>");
    }
    out.raw("</nav>");
    if !names.is_empty() {
        out.raw("<nav class=\"tabs\" aria-label=\"score\"><span class=\"muted\">Score</span>");
        for name in &names {
            out.raw("<a").attr("href", &link(s.window, Some(name)));
            if Some(name.as_str()) == score {
                out.raw(" aria-current=\"page\"");
            }
            out.raw(">").text(name).raw("</a>");
        }
        out.raw("</nav>");
    }
    out.raw("</div>");
    let requests: u64 = p.versions.iter().map(|v| v.requests).sum();
    let mut summary = format!(
        "{} to {} UTC",
        short_minute(&p.since),
        short_minute(&p.until)
    );
    if !p.versions.is_empty() {
        summary.push_str(&format!(
            " · {} · {}",
            plural(requests, "request", "requests"),
            plural(p.versions.len() as u64, "version", "versions")
        ));
    }
    if !p.versions.is_empty() || p.unlinked_spans > 0 {
        summary.push_str(&format!(
            " · {} unlinked {} (naming no version runner knows)",
            p.unlinked_spans,
            if p.unlinked_spans == 1 {
                "span"
            } else {
                "spans"
            }
        ));
    }
    if !p.versions.is_empty() {
        summary.push_str(&format!(
            " · intervals at {} confidence",
            confidence_text(s.confidence)
        ));
    }
    out.raw("<p class=\"muted summary\">")
        .text(&summary)
        .raw("</p>");
    if let Some(asked) = s.score.filter(|a| !a.is_empty() && score != Some(*a)) {
        out.raw("<p class=\"muted\">")
            .text(&format!(
                "No annotation named '{asked}' has a score in this window{}.",
                score.map_or(String::new(), |s| format!("; the chart shows '{s}'"))
            ))
            .raw("</p>");
    }
    if p.versions.is_empty() {
        out.raw("<p class=\"empty\">")
            .text(&format!(
                "No production traffic for this prompt in {}.",
                s.window.describe()
            ))
            .raw("</p><p class=\"muted\">Send your application's traces over OTLP to ")
            .raw("<code>/v1/traces</code> on this server, each LLM span naming its version; ")
            .raw("see docs/production.md in runner's repository.</p>")
            .raw("</section>");
        return;
    }
    let colours = colours(p);
    traffic_chart::chart(out, p, &colours, score);
    table(out, prompt, p, &colours);
    out.raw("</section>");
}

/// One row per version, newest first; one column per annotation name.
fn table(out: &mut Html, prompt: &str, p: &Production, colours: &BTreeMap<i64, usize>) {
    let names: BTreeSet<&str> = p
        .versions
        .iter()
        .flat_map(|v| v.scores.iter().map(|s| s.name.as_str()))
        .collect();
    out.raw(
        "<div class=\"scroll\"><table class=\"list traffic-table cards\"><thead><tr><th>Version</th>",
    )
    .raw("<th class=\"num\">Requests</th><th class=\"num\">Error rate</th>")
    .raw("<th class=\"num\">p50 / p95</th><th class=\"num\">Tokens in / out · cost</th>");
    for name in &names {
        out.raw("<th class=\"num\">").text(name).raw("</th>");
    }
    out.raw("<th>Seen · sent by</th></tr></thead><tbody>");
    for v in &p.versions {
        row(out, prompt, v, &names, colours);
    }
    out.raw("</tbody></table></div>");
}

fn row(
    out: &mut Html,
    prompt: &str,
    v: &VersionTraffic,
    names: &BTreeSet<&str>,
    colours: &BTreeMap<i64, usize>,
) {
    out.raw("<tr")
        .attr("data-version", &v.version.to_string())
        .raw("><td class=\"version\">");
    swatch(out, colours.get(&v.version).copied().unwrap_or(0));
    out.link(&version_href(prompt, v.version), &format!("v{}", v.version));
    for tag in &v.tags {
        out.raw(" ");
        badge(out, tag, "");
    }
    out.raw("</td><td class=\"num requests\" data-label=\"Requests\">")
        .display(v.requests)
        .raw("<div class=\"muted small errors\">")
        .text(&plural(v.errors, "error", "errors"))
        .raw("</div></td><td class=\"num error-rate\" data-label=\"Error rate\">")
        .text(&percent(v.error_rate))
        .raw("<div class=\"muted small interval\">")
        .text(&rate_interval(v.error_rate_interval))
        .raw("</div></td><td class=\"num latency\" data-label=\"p50 / p95\">")
        .text(&format!(
            "{} / {}",
            ms(v.latency_p50_ms).trim_end_matches(" ms"),
            ms(v.latency_p95_ms)
        ))
        .raw("</td><td class=\"num tokens\" data-label=\"Tokens · cost\">")
        .text(&format!("{} / {}", v.input_tokens, v.output_tokens))
        .raw("<div class=\"muted small cost\">")
        .text(&v.cost_usd.map_or("no price".to_string(), crate::cost::usd))
        .raw("</div></td>");
    for name in names {
        out.raw("<td class=\"num score\"")
            .attr("data-label", name)
            .raw(">");
        match v.scores.iter().find(|s| s.name == *name) {
            Some(s) => score_cell(out, s),
            None => {
                out.raw("–");
            }
        }
        out.raw("</td>");
    }
    out.raw("<td class=\"seen\" data-label=\"Seen · by\">");
    minute(out, &v.first_seen, v.first_seen_ms);
    out.raw(" – ");
    minute(out, &v.last_seen, v.last_seen_ms);
    for app in &v.applications {
        out.raw("<div class=\"app\">")
            .text(app.service.as_deref().unwrap_or("–"))
            .raw(" <span class=\"muted\">")
            .text(&format!(
                "{} · {}",
                app.sender.as_deref().unwrap_or("–"),
                app.requests
            ))
            .raw("</span></div>");
    }
    out.raw("</td></tr>");
}

/// An annotation's mean score and pass share, each with its interval, and how many it counts.
fn score_cell(out: &mut Html, s: &ScoreSummary) {
    if let Some(mean) = s.mean {
        out.raw("<div class=\"mean\"><span class=\"muted small\">mean</span> ")
            .text(&format!("{mean:.2}"));
        if let Some([lo, hi]) = s.mean_interval {
            out.raw(" <span class=\"muted small\">")
                .text(&format!("{lo:.2}–{hi:.2}"))
                .raw("</span>");
        }
        out.raw("</div>");
    }
    if let Some(rate) = s.pass_rate {
        out.raw("<div class=\"pass\"><span class=\"muted small\">pass</span> ")
            .text(&percent(rate));
        if let Some(ci) = s.pass_rate_interval {
            out.raw(" <span class=\"muted small\">")
                .text(&rate_interval(ci))
                .raw("</span>");
        }
        out.raw("</div>");
    }
    out.raw("<div class=\"muted small\">")
        .text(&if s.judged > 0 {
            format!("{} of {} passed", s.passed, s.judged)
        } else {
            plural(s.count, "annotation", "annotations")
        })
        .raw("</div>");
}

/// A time to the minute, `Dec 5 22:01`, the whole of it in the element's `datetime`.
fn minute(out: &mut Html, at: &str, ms: i64) {
    out.raw("<time")
        .attr("datetime", at)
        .raw(">")
        .text(&traffic_chart::minute_text(ms))
        .raw("</time>");
}

/// A version's colour as a small square, for the table and the legend.
pub fn swatch(out: &mut Html, colour: usize) {
    out.raw("<span")
        .attr("class", &format!("swatch v{colour}"))
        .raw(" aria-hidden=\"true\"></span>");
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2026-12-06T06:21:33.123Z` as `2026-12-06 06:21`.
fn short_minute(at: &str) -> String {
    at.get(..16)
        .map(|s| s.replace('T', " "))
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_to_their_lengths_and_refuse_others() {
        assert_eq!(TrafficWindow::parse(None).unwrap(), TrafficWindow::Day);
        assert_eq!(TrafficWindow::parse(Some("")).unwrap(), TrafficWindow::Day);
        for (text, hours) in [("1h", 1), ("24h", 24), ("7d", 168), ("30d", 720)] {
            let window = TrafficWindow::parse(Some(text)).unwrap();
            assert_eq!(window.as_str(), text);
            assert_eq!(window.millis(), hours * 3_600_000);
        }
        for bad in ["2h", "24H", "1d", "<b>"] {
            assert!(TrafficWindow::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_chosen_score_is_the_asked_one_when_present() {
        let names = vec!["correctness".to_string(), "helpfulness".to_string()];
        assert_eq!(chosen_score(&names, None), Some("correctness"));
        assert_eq!(
            chosen_score(&names, Some("helpfulness")),
            Some("helpfulness")
        );
        assert_eq!(chosen_score(&names, Some("tone")), Some("correctness"));
        assert_eq!(chosen_score(&[], Some("tone")), None);
    }
}
