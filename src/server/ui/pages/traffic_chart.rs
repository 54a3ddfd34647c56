//! The traffic chart of a prompt's Production section: requests per time bucket stacked by
//! version, each version's error rate per bucket, and its mean score of one annotation name per
//! bucket, on one time axis across which every tag move of the window is drawn and labelled
//! (`production → v7`). Inline SVG written through `Html`, so a tag's name is escaped like any
//! text; colours come from the stylesheet by class (`v0`…`v7`), so light and dark both read
//! and no inline style is needed (the Content-Security-Policy allows none). It is drawn twice,
//! wide for a page and narrow for a phone (the stylesheet shows one), so that at phone width the
//! panels' titles and value labels stay in view at a legible size instead of being scaled down or
//! scrolled away. Geometry only: no store, no clock, no I/O.

use super::production::swatch;
use crate::production::{Point, Production, TagMove};
use crate::ui::html::Html;
use std::collections::BTreeMap;

/// One drawing of the chart: its width in its own units (it scales to its box's width), the
/// room for the value axis' labels, and the most time ticks that fit.
struct Layout {
    width: f64,
    left: f64,
    ticks: i64,
    /// Which the stylesheet shows: `wide` on a page, `narrow` at phone width.
    class: &'static str,
}

/// About 1 unit a pixel on a page 1,000 pixels wide.
const WIDE: Layout = Layout {
    width: 1000.0,
    left: 58.0,
    ticks: 8,
    class: "wide",
};

/// About 1 unit a pixel on a phone 390 pixels wide. Its value labels have room for six
/// characters ("999.5k", "100%").
const NARROW: Layout = Layout {
    width: 370.0,
    left: 46.0,
    ticks: 4,
    class: "narrow",
};

const RIGHT: f64 = 18.0;
/// Above the first panel: one row per line of tag-move labels.
const TOP: f64 = 4.0;
const LABEL_ROW: f64 = 15.0;
const MAX_LABEL_ROWS: usize = 4;
/// A panel's title, above its plot.
const TITLE: f64 = 20.0;
const GAP: f64 = 10.0;
const REQUESTS_HEIGHT: f64 = 110.0;
const RATE_HEIGHT: f64 = 76.0;
/// The time axis' labels, below the last panel.
const AXIS: f64 = 22.0;
/// The average width of a character of an 11-unit label.
const CHAR_WIDTH: f64 = 6.4;

/// Where a time falls across the drawing.
struct Frame {
    since: i64,
    until: i64,
    width: f64,
    left: f64,
}

impl Frame {
    fn x(&self, ms: i64) -> f64 {
        let span = (self.until - self.since).max(1) as f64;
        let at = ((ms - self.since) as f64 / span).clamp(0.0, 1.0);
        self.left + (self.width - self.left - RIGHT) * at
    }
}

/// One plot: its place and the range of its values.
struct Panel {
    top: f64,
    height: f64,
    low: f64,
    high: f64,
}

impl Panel {
    fn y(&self, value: f64) -> f64 {
        let span = (self.high - self.low).max(f64::EPSILON);
        let at = ((value - self.low) / span).clamp(0.0, 1.0);
        self.top + self.height * (1.0 - at)
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// How a panel's values read on its axis.
#[derive(Clone, Copy)]
enum Scale {
    Count,
    Rate,
    Score,
}

impl Scale {
    fn text(self, value: f64) -> String {
        match self {
            Scale::Count => count_text(value),
            Scale::Rate => format!("{}%", trimmed(value * 100.0, 1)),
            Scale::Score => trimmed(value, 2),
        }
    }
}

pub fn chart(out: &mut Html, p: &Production, colours: &BTreeMap<i64, usize>, score: Option<&str>) {
    let bucket = p.series.bucket_ms.max(1);
    // Buckets in time order, each with its versions in ascending order (stacked bottom up).
    let mut buckets: BTreeMap<i64, Vec<&Point>> = BTreeMap::new();
    for point in &p.series.points {
        buckets.entry(point.start_ms).or_default().push(point);
    }
    for points in buckets.values_mut() {
        points.sort_by_key(|pt| pt.version);
    }
    out.raw("<figure class=\"traffic\">");
    for layout in [&WIDE, &NARROW] {
        drawing(out, p, &buckets, colours, score, layout);
    }
    out.raw("<figcaption>");
    for (version, c) in colours.iter().rev() {
        out.raw("<span class=\"key\">");
        swatch(out, *c);
        out.text(&format!("v{version}"));
        if let Some(v) = p.versions.iter().find(|v| v.version == *version)
            && !v.tags.is_empty()
        {
            out.raw(" <span class=\"muted\">")
                .text(&v.tags.join(", "))
                .raw("</span>");
        }
        out.raw("</span>");
    }
    out.raw(
        "<span class=\"key\"><span class=\"move-key\" aria-hidden=\"true\"></span>tag move</span>",
    )
    .raw("<span class=\"muted\">")
    .text(&format!(
        "per {}, times in UTC; hover a bar or point for its figures",
        bucket_name(bucket)
    ))
    .raw("</span></figcaption></figure>");
}

/// One drawing of the chart at `layout`'s width: the tag-move labels, the panels, the time
/// axis, the bars, the lines and the tag moves.
fn drawing(
    out: &mut Html,
    p: &Production,
    buckets: &BTreeMap<i64, Vec<&Point>>,
    colours: &BTreeMap<i64, usize>,
    score: Option<&str>,
    layout: &Layout,
) {
    let frame = Frame {
        since: p.since_ms,
        until: p.until_ms,
        width: layout.width,
        left: layout.left,
    };
    let bucket = p.series.bucket_ms.max(1);
    let colour = |version: i64| colours.get(&version).copied().unwrap_or(0);

    let labels: Vec<String> = p.tag_moves.iter().map(move_label).collect();
    let spots: Vec<(f64, f64)> = p
        .tag_moves
        .iter()
        .zip(&labels)
        .map(|(m, label)| (frame.x(m.at_ms), label.chars().count() as f64 * CHAR_WIDTH))
        .collect();
    let placed = place_labels(&spots, layout.width - 2.0, MAX_LABEL_ROWS);
    let rows = placed.iter().map(|(row, _)| row + 1).max().unwrap_or(0);

    let most = buckets
        .values()
        .map(|pts| pts.iter().map(|pt| pt.requests).sum::<u64>())
        .max()
        .unwrap_or(0);
    let mut top = TOP + rows as f64 * LABEL_ROW;
    let requests = Panel {
        top: top + TITLE,
        height: REQUESTS_HEIGHT,
        low: 0.0,
        high: nice_ceiling(most as f64).max(2.0),
    };
    top = requests.bottom() + GAP;
    let worst = p
        .series
        .points
        .iter()
        .filter(|pt| pt.requests > 0)
        .map(|pt| pt.errors as f64 / pt.requests as f64)
        .fold(0.0, f64::max);
    let errors = Panel {
        top: top + TITLE,
        height: RATE_HEIGHT,
        low: 0.0,
        high: if worst <= 0.05 {
            0.05
        } else {
            nice_ceiling(worst).min(1.0)
        },
    };
    top = errors.bottom() + GAP;
    let scores = score.map(|name| {
        let values: Vec<f64> = p
            .series
            .points
            .iter()
            .filter_map(|pt| pt.scores.get(name).copied())
            .collect();
        let (low, high) = score_range(&values);
        (
            name,
            Panel {
                top: top + TITLE,
                height: RATE_HEIGHT,
                low,
                high,
            },
        )
    });
    let bottom = scores
        .as_ref()
        .map_or(errors.bottom(), |(_, panel)| panel.bottom());
    let height = bottom + AXIS;

    out.raw("<svg")
        .attr("class", layout.class)
        .attr("viewBox", &format!("0 0 {} {height:.0}", layout.width))
        .raw(" role=\"img\"")
        .attr(
            "aria-label",
            &format!(
                "Requests, error rate{} per {} by version, with {} tag {}",
                score.map_or(String::new(), |s| format!(" and mean {s} score")),
                bucket_name(bucket),
                p.tag_moves.len(),
                if p.tag_moves.len() == 1 {
                    "move"
                } else {
                    "moves"
                }
            ),
        )
        .raw(">");

    let ticks = time_ticks(p.since_ms, p.until_ms, layout.ticks);
    let mut panels: Vec<(&Panel, Scale, String)> = vec![
        (
            &requests,
            Scale::Count,
            format!("Requests per {}", bucket_name(bucket)),
        ),
        (&errors, Scale::Rate, "Error rate".to_string()),
    ];
    if let Some((name, panel)) = &scores {
        panels.push((panel, Scale::Score, format!("Mean score · {name}")));
    }
    for (panel, scale, title) in &panels {
        grid(out, &frame, panel, *scale, &ticks.1);
        out.raw("<text class=\"title\"")
            .attr("x", &frame.left.to_string())
            .attr("y", &format!("{:.1}", panel.top - 7.0))
            .raw(">")
            .text(title)
            .raw("</text>");
    }
    for tick in &ticks.1 {
        out.raw("<text class=\"axis\" text-anchor=\"middle\"")
            .attr("x", &format!("{:.1}", frame.x(*tick)))
            .attr("y", &format!("{:.1}", bottom + 15.0))
            .raw(">")
            .text(&tick_label(*tick, ticks.0))
            .raw("</text>");
    }

    // Requests: one column per bucket, each version's share stacked in its colour.
    for (start, points) in buckets {
        let x0 = frame.x((*start).max(p.since_ms));
        let x1 = frame.x((start + bucket).min(p.until_ms));
        let width = (x1 - x0 - 1.0).max(0.8);
        let mut below = 0u64;
        for pt in points {
            if pt.requests == 0 {
                continue;
            }
            let y_top = requests.y((below + pt.requests) as f64);
            let y_bottom = requests.y(below as f64);
            out.raw("<rect")
                .attr("class", &format!("v{}", colour(pt.version)))
                .attr("x", &format!("{:.1}", x0 + 0.5))
                .attr("y", &format!("{y_top:.1}"))
                .attr("width", &format!("{width:.1}"))
                .attr("height", &format!("{:.1}", (y_bottom - y_top).max(0.5)))
                .raw("><title>")
                .text(&format!(
                    "v{} · {} · {} · {}",
                    pt.version,
                    bucket_text(*start, bucket),
                    plural(pt.requests, "request", "requests"),
                    plural(pt.errors, "error", "errors")
                ))
                .raw("</title></rect>");
            below += pt.requests;
        }
    }

    // Error rate and the chosen score: one line per version through the buckets it had
    // traffic in, broken where it had none.
    let versions: Vec<i64> = colours.keys().copied().collect();
    for version in &versions {
        let own: Vec<&Point> = p
            .series
            .points
            .iter()
            .filter(|pt| pt.version == *version && pt.requests > 0)
            .collect();
        let rates: Vec<(i64, f64, String)> = own
            .iter()
            .map(|pt| {
                let rate = pt.errors as f64 / pt.requests as f64;
                let what = format!(
                    "error rate {} ({} of {})",
                    Scale::Rate.text(rate),
                    pt.errors,
                    pt.requests
                );
                (pt.start_ms, rate, what)
            })
            .collect();
        line(
            out,
            &frame,
            &errors,
            bucket,
            *version,
            colour(*version),
            &rates,
        );
        if let Some((name, panel)) = &scores {
            let means: Vec<(i64, f64, String)> = own
                .iter()
                .filter_map(|pt| {
                    let mean = *pt.scores.get(*name)?;
                    Some((pt.start_ms, mean, format!("mean {name} {mean:.2}")))
                })
                .collect();
            line(
                out,
                &frame,
                panel,
                bucket,
                *version,
                colour(*version),
                &means,
            );
        }
    }

    // Tag moves last, over everything else.
    for ((m, label), (row, end)) in p.tag_moves.iter().zip(&labels).zip(&placed) {
        let x = frame.x(m.at_ms);
        let row_top = TOP + *row as f64 * LABEL_ROW;
        out.raw("<g class=\"tag-move\"><title>")
            .text(&move_title(m))
            .raw("</title><line class=\"move\"")
            .attr("x1", &format!("{x:.1}"))
            .attr("x2", &format!("{x:.1}"))
            .attr("y1", &format!("{:.1}", row_top + 2.0))
            .attr("y2", &format!("{bottom:.1}"))
            .raw("/><text class=\"move-label\"")
            .attr("x", &format!("{:.1}", if *end { x - 4.0 } else { x + 4.0 }))
            .attr("y", &format!("{:.1}", row_top + LABEL_ROW - 4.0))
            .attr("text-anchor", if *end { "end" } else { "start" })
            .raw(">")
            .text(label)
            .raw("</text></g>");
    }
    out.raw("</svg>");
}

/// A panel's horizontal grid and value labels (low, middle, high), and the time grid.
fn grid(out: &mut Html, frame: &Frame, panel: &Panel, scale: Scale, ticks: &[i64]) {
    let middle = (panel.low + panel.high) / 2.0;
    for value in [panel.low, middle, panel.high] {
        // A count axis labels whole numbers only.
        let label = !matches!(scale, Scale::Count) || value.fract() == 0.0;
        let y = panel.y(value);
        out.raw("<line class=\"grid\"")
            .attr("x1", &frame.left.to_string())
            .attr("x2", &(frame.width - RIGHT).to_string())
            .attr("y1", &format!("{y:.1}"))
            .attr("y2", &format!("{y:.1}"))
            .raw("/>");
        if label {
            out.raw("<text class=\"axis\" text-anchor=\"end\"")
                .attr("x", &(frame.left - 6.0).to_string())
                .attr("y", &format!("{:.1}", y + 4.0))
                .raw(">")
                .text(&scale.text(value))
                .raw("</text>");
        }
    }
    for tick in ticks {
        let x = frame.x(*tick);
        out.raw("<line class=\"grid time\"")
            .attr("x1", &format!("{x:.1}"))
            .attr("x2", &format!("{x:.1}"))
            .attr("y1", &format!("{:.1}", panel.top))
            .attr("y2", &format!("{:.1}", panel.bottom()))
            .raw("/>");
    }
}

/// One version's values through the buckets: a path broken where a bucket is missing, and a
/// point per bucket with its figures on hover.
fn line(
    out: &mut Html,
    frame: &Frame,
    panel: &Panel,
    bucket: i64,
    version: i64,
    colour: usize,
    values: &[(i64, f64, String)],
) {
    if values.is_empty() {
        return;
    }
    let centre = |start: i64| frame.x((start + bucket / 2).clamp(frame.since, frame.until));
    let class = format!("v{colour}");
    let mut d = String::new();
    let mut previous: Option<i64> = None;
    for (start, value, _) in values {
        let step = if previous == Some(start - bucket) {
            'L'
        } else {
            'M'
        };
        d.push_str(&format!(
            "{step}{:.1} {:.1} ",
            centre(*start),
            panel.y(*value)
        ));
        previous = Some(*start);
    }
    out.raw("<path")
        .attr("class", &class)
        .attr("d", d.trim_end())
        .raw("/>");
    for (start, value, what) in values {
        out.raw("<circle")
            .attr("class", &class)
            .attr("cx", &format!("{:.1}", centre(*start)))
            .attr("cy", &format!("{:.1}", panel.y(*value)))
            .raw(" r=\"2.6\"><title>")
            .text(&format!(
                "v{version} · {} · {what}",
                bucket_text(*start, bucket)
            ))
            .raw("</title></circle>");
    }
}

/// `production → v7`; a deleted tag reads `production removed`.
fn move_label(m: &TagMove) -> String {
    match m.to_version {
        Some(to) => format!("{} → v{to}", m.tag),
        None => format!("{} removed", m.tag),
    }
}

fn move_title(m: &TagMove) -> String {
    let seq = |s: Option<i64>| s.map_or("–".to_string(), |n| format!("v{n}"));
    format!(
        "{}: {} → {} ({}) by {} at {} UTC",
        m.tag,
        seq(m.from_version),
        seq(m.to_version),
        m.action,
        m.actor,
        super::short_time(&m.at)
    )
}

/// A row for each label so that none overlaps another in its row: labels sit right of their
/// line, or left of it where they would run past `right`. Labels are taken left to right;
/// beyond `max_rows` rows a label shares the row that frees up first. Returns (row, whether the
/// label ends at its line) per label, in the order given.
fn place_labels(spots: &[(f64, f64)], right: f64, max_rows: usize) -> Vec<(usize, bool)> {
    let mut order: Vec<usize> = (0..spots.len()).collect();
    order.sort_by(|a, b| spots[*a].0.total_cmp(&spots[*b].0));
    let mut ends: Vec<f64> = Vec::new();
    let mut placed = vec![(0, false); spots.len()];
    for i in order {
        let (x, width) = spots[i];
        // Left of its line where it would run past the right edge, unless it would run past
        // the left edge further (a long label in a narrow drawing).
        let past_right = x + 4.0 + width - right;
        let past_left = width + 4.0 - x;
        let end_anchor = past_right > 0.0 && past_right > past_left;
        let (start, end) = if end_anchor {
            (x - 4.0 - width, x - 4.0)
        } else {
            (x + 4.0, x + 4.0 + width)
        };
        let row = match ends.iter().position(|e| *e + 8.0 <= start) {
            Some(row) => row,
            None if ends.len() < max_rows.max(1) => {
                ends.push(f64::MIN);
                ends.len() - 1
            }
            None => (0..ends.len())
                .min_by(|a, b| ends[*a].total_cmp(&ends[*b]))
                .unwrap_or(0),
        };
        ends[row] = ends[row].max(end);
        placed[i] = (row, end_anchor);
    }
    placed
}

/// The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least `value` (1 for
/// nothing).
fn nice_ceiling(value: f64) -> f64 {
    if value.is_nan() || value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|nice| *nice >= value * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// A score axis: 0 to 1 when every mean lies there (most scores do), else from 0 (or below,
/// for negative means) to a round ceiling.
fn score_range(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(0.0, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    if low >= 0.0 && high <= 1.0 {
        (0.0, 1.0)
    } else {
        let low = if low < 0.0 { -nice_ceiling(-low) } else { 0.0 };
        (low, nice_ceiling(high.max(f64::EPSILON)))
    }
}

/// The time axis' step and its ticks: the smallest round step that leaves at most `most` ticks
/// in the window, the ticks at its multiples (in UTC).
fn time_ticks(since: i64, until: i64, most: i64) -> (i64, Vec<i64>) {
    const MINUTE: i64 = 60_000;
    // The first multiple of `step` at or after `since`, and how many fit up to `until`.
    let first =
        |step: i64| since.div_euclid(step) * step + if since % step == 0 { 0 } else { step };
    let count = |step: i64| (until - first(step)).div_euclid(step) + 1;
    let step = [
        5, 10, 15, 30, 60, 120, 180, 360, 720, 1_440, 2_880, 7_200, 10_080, 20_160, 40_320,
    ]
    .into_iter()
    .map(|m| m * MINUTE)
    .find(|step| count(*step) <= most.max(1))
    .unwrap_or(40_320 * MINUTE);
    let ticks = (0..count(step).max(0))
        .map(|i| first(step) + i * step)
        .collect();
    (step, ticks)
}

/// A tick's label: the time of day, or the date at midnight and for steps of a day or more.
fn tick_label(at: i64, step: i64) -> String {
    let t = utc(at);
    if step >= 86_400_000 || (t.hour() == 0 && t.minute() == 0) {
        day_text(at)
    } else {
        format!("{:02}:{:02}", t.hour(), t.minute())
    }
}

/// A bucket as people read it: `Dec 6 14:15–14:30 UTC`.
fn bucket_text(start: i64, bucket: i64) -> String {
    let (a, b) = (utc(start), utc(start + bucket));
    format!(
        "{} {:02}:{:02}–{:02}:{:02} UTC",
        day_text(start),
        a.hour(),
        a.minute(),
        b.hour(),
        b.minute()
    )
}

fn bucket_name(bucket: i64) -> String {
    const MINUTE: i64 = 60_000;
    match bucket / MINUTE {
        1 => "minute".to_string(),
        60 => "hour".to_string(),
        1_440 => "day".to_string(),
        m if m % 60 == 0 => format!("{} hours", m / 60),
        m => format!("{m} minutes"),
    }
}

/// `Dec 5 22:01` (UTC).
pub fn minute_text(at: i64) -> String {
    let t = utc(at);
    format!("{} {:02}:{:02}", day_text(at), t.hour(), t.minute())
}

fn day_text(at: i64) -> String {
    let t = utc(at);
    let month = t.month().to_string();
    format!("{} {}", month.get(..3).unwrap_or(&month), t.day())
}

fn utc(at: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A count on its axis: as it is below 10,000, in thousands or millions above ("12.5k",
/// "100k", "2.4M"), so it fits the narrow drawing's labels.
fn count_text(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", trimmed(value / 1e6, 1))
    } else if value >= 1e4 {
        format!("{}k", trimmed(value / 1e3, 1))
    } else {
        trimmed(value, 1)
    }
}

/// A number with at most `digits` decimals and no trailing zeros.
fn trimmed(value: f64, digits: usize) -> String {
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        for (value, nice) in [
            (0.0, 1.0),
            (1.0, 1.0),
            (3.0, 5.0),
            (7.0, 10.0),
            (11.0, 20.0),
            (21.0, 25.0),
            (0.07, 0.1),
            (0.12, 0.2),
            (180.0, 200.0),
            (250.0, 250.0),
        ] {
            assert_eq!(nice_ceiling(value), nice, "{value}");
        }
    }

    #[test]
    fn score_axes_keep_zero_to_one_when_they_can() {
        assert_eq!(score_range(&[]), (0.0, 1.0));
        assert_eq!(score_range(&[0.2, 0.9]), (0.0, 1.0));
        assert_eq!(score_range(&[1.0, 4.2]), (0.0, 5.0));
        assert_eq!(score_range(&[-0.3, 0.5]), (-0.5, 0.5));
    }

    #[test]
    fn time_ticks_are_round_and_at_most_eight() {
        const HOUR: i64 = 3_600_000;
        let since = 1_780_000_000_000; // 2026-05-28 20:26:40 UTC
        for (window, step) in [
            (HOUR, 600_000),
            (24 * HOUR, 3 * HOUR),
            (720 * HOUR, 7_200 * 60_000),
        ] {
            let (got, ticks) = time_ticks(since, since + window, 8);
            assert_eq!(got, step, "{window}");
            assert!(!ticks.is_empty() && ticks.len() <= 8, "{ticks:?}");
            assert!(ticks.iter().all(|t| t % step == 0 && *t >= since));
        }
        // The phone's drawing has room for four, the page's for eight, wherever the window
        // starts (a start on a step's boundary has a tick at each end).
        for most in [4, 8] {
            for window in [HOUR, 24 * HOUR, 168 * HOUR, 720 * HOUR] {
                for start in (0..14 * 24).map(|h| 1_780_012_800_000 + h * HOUR) {
                    let (_, ticks) = time_ticks(start, start + window, most);
                    assert!(
                        !ticks.is_empty() && ticks.len() <= most as usize,
                        "{window} from {start}: {ticks:?}"
                    );
                }
            }
        }
        assert_eq!(count_text(5.0), "5");
        assert_eq!(count_text(2500.0), "2500");
        assert_eq!(count_text(12_500.0), "12.5k");
        assert_eq!(count_text(100_000.0), "100k");
        assert_eq!(count_text(2_400_000.0), "2.4M");
        assert_eq!(tick_label(since - since % HOUR, HOUR), "20:00");
        let midnight = 1_780_012_800_000; // 2026-05-29 00:00 UTC
        assert_eq!(tick_label(midnight, 3 * HOUR), "May 29");
        assert_eq!(
            bucket_text(midnight + 15 * 60_000, 15 * 60_000),
            "May 29 00:15–00:30 UTC"
        );
        assert_eq!(bucket_name(15 * 60_000), "15 minutes");
        assert_eq!(minute_text(midnight + 61_000), "May 29 00:01");
        assert_eq!(bucket_name(360 * 60_000), "6 hours");
    }

    #[test]
    fn labels_never_overlap_within_a_row() {
        // Three moves close together, one far away, one at the right edge.
        let spots = [
            (100.0, 90.0),
            (120.0, 90.0),
            (150.0, 90.0),
            (600.0, 90.0),
            (990.0, 90.0),
        ];
        let placed = place_labels(&spots, 998.0, 4);
        assert_eq!(placed[0], (0, false));
        assert_eq!(placed[1], (1, false));
        assert_eq!(placed[2], (2, false));
        assert_eq!(placed[3], (0, false));
        assert_eq!(placed[4], (0, true), "ends at its line, left of the edge");
        // Beyond the rows allowed, a label shares the row that frees up first.
        let crowded: Vec<(f64, f64)> = (0..6).map(|i| (100.0 + i as f64, 80.0)).collect();
        let placed = place_labels(&crowded, 998.0, 2);
        assert!(placed.iter().all(|(row, _)| *row < 2), "{placed:?}");
        // Too long for either side of its line in a narrow drawing: the side it overflows less.
        assert_eq!(place_labels(&[(150.0, 250.0)], 368.0, 4), vec![(0, false)]);
        assert_eq!(place_labels(&[(250.0, 250.0)], 368.0, 4), vec![(0, true)]);
    }

    #[test]
    fn labels_of_moves() {
        let m = TagMove {
            tag: "production".into(),
            from_version: Some(6),
            to_version: Some(7),
            at: "2026-12-06T06:21:33.123Z".into(),
            at_ms: 0,
            actor: "ui:ci".into(),
            action: "move".into(),
        };
        assert_eq!(move_label(&m), "production → v7");
        assert_eq!(
            move_title(&m),
            "production: v6 → v7 (move) by ui:ci at 2026-12-06 06:21:33 UTC"
        );
        let gone = TagMove {
            to_version: None,
            ..m
        };
        assert_eq!(move_label(&gone), "production removed");
    }
}
