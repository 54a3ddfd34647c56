//! Renderers: pure functions from results to text tables or JSON values.

use crate::model::{
    Experiment, Message, Prompt, PromptVersion, ResultStatus, RunResult, Tag, TagAction, TagEvent,
    Template,
};
use crate::model::{RunStats, Summary};
use crate::view::{CostView, ExperimentView, PromptItem, RenderedView, VersionView};
use comfy_table::{Table, presets};

mod comparison;
mod sync;
pub use comparison::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
pub use sync::*;

/// A plain table: a header row and aligned columns, no borders, easy to read and to grep.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    table_within(headers, rows, WIDTH.get().copied().flatten())
}

/// The width tables are fitted to, set once per process by the command dispatcher; unset (as
/// in tests), tables take the room they need.
static WIDTH: std::sync::OnceLock<Option<u16>> = std::sync::OnceLock::new();

/// Lines a row's cell may take when the table is fitted to a width; the rest is cut, marked.
const MAX_CELL_LINES: usize = 3;

/// Fits every table this process prints to `width` columns.
pub fn fit_tables_to(width: Option<u16>) {
    let _ = WIDTH.set(width);
}

/// The width of the terminal stdout goes to: `COLUMNS` when set (so a pipe can ask for a
/// width), else the terminal's own; None when stdout is not a terminal.
pub fn terminal_width() -> Option<u16> {
    use std::io::IsTerminal;
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c >= 20)
    {
        return Some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    Table::new().width().filter(|w| *w >= 20)
}

/// A table in `width` columns at most: comfy-table's dynamic arrangement wraps long cells, a
/// cell longer than `MAX_CELL_LINES` lines is cut with `…`. The full text stays in `--json`
/// and `--csv`.
pub fn table_within(headers: &[&str], rows: Vec<Vec<String>>, width: Option<u16>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(headers.iter().map(|h| h.to_string()));
    if let Some(width) = width {
        // One more than asked: the leading padding column is stripped below.
        table
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(width.saturating_add(1))
            .set_truncation_indicator("…");
    }
    for row in rows {
        let mut row = comfy_table::Row::from(row);
        if width.is_some() {
            row.max_height(MAX_CELL_LINES);
        }
        table.add_row(row);
    }
    // comfy-table pads every cell by one space on each side; the outer padding and trailing
    // blanks only get in the way of reading and grepping.
    table
        .lines()
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An age as a person says it: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn age_text(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 90.0 * 60.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 36.0 * 3600.0 {
        format!("{:.0} h", secs / 3600.0)
    } else {
        format!("{:.0} d", secs / 86400.0)
    }
}

/// `2026-11-24T07:30:00.123Z` → `2026-11-24 07:30:00`: tables show seconds, JSON keeps everything.
pub fn short_time(at: &str) -> String {
    at.get(..19)
        .map(|s| s.replace('T', " "))
        .unwrap_or_else(|| at.to_string())
}

fn or_dash(text: Option<&str>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or("-").to_string()
}

/// First line of a free text, cut to `width` characters.
pub fn excerpt(text: &str, width: usize) -> String {
    crate::text::first_line(text, width)
}

pub fn version_created(verb: &str, v: &PromptVersion, tags: &[String]) -> String {
    let mut line = format!("{verb} {} v{} (id {})", v.prompt, v.seq, v.id);
    if !tags.is_empty() {
        line.push_str(&format!(", tagged {}", tags.join(", ")));
    }
    line
}

pub fn version_json<'a>(
    v: &'a PromptVersion,
    tags: &'a [String],
    variables: &'a [String],
) -> VersionView<'a> {
    VersionView {
        version: v,
        tags,
        variables,
    }
}

pub fn version_text(v: &PromptVersion, tags: &[String], variables: &[String]) -> String {
    let json_or_dash = |map: &crate::model::JsonObject| {
        if map.is_empty() {
            "-".to_string()
        } else {
            Value::Object(map.clone()).to_string()
        }
    };
    let rows = [
        ("prompt", format!("{} v{}", v.prompt, v.seq)),
        ("id", v.id.clone()),
        ("tags", or_dash(Some(&tags.join(", ")))),
        (
            "created",
            format!("{} by {}", short_time(&v.created_at), v.author),
        ),
        ("message", or_dash(v.message.as_deref())),
        ("description", or_dash(v.description.as_deref())),
        ("model", or_dash(v.model.as_deref())),
        ("params", json_or_dash(&v.params)),
        ("metadata", json_or_dash(&v.metadata)),
        ("format", format!("{} ({})", v.format, v.template_type)),
        ("variables", or_dash(Some(&variables.join(", ")))),
        ("hash", v.content_hash.clone()),
    ];
    let mut text = String::new();
    for (label, value) in rows {
        text.push_str(&format!("{label:<12} {value}\n"));
    }
    text.push('\n');
    text.push_str(&template_text(&v.template));
    text
}

pub fn prompts_json(prompts: &[(Prompt, PromptVersion)]) -> Vec<PromptItem<'_>> {
    prompts
        .iter()
        .map(|(p, latest)| PromptItem::new(p, latest))
        .collect()
}

pub fn prompts_table(prompts: &[(Prompt, PromptVersion)]) -> String {
    if prompts.is_empty() {
        return "no prompts".into();
    }
    table(
        &[
            "NAME",
            "LATEST",
            "VERSIONS",
            "TAGS",
            "UPDATED",
            "DESCRIPTION",
        ],
        prompts
            .iter()
            .map(|(p, _)| {
                vec![
                    p.name.clone(),
                    format!("v{}", p.latest_seq),
                    p.version_count.to_string(),
                    or_dash(Some(&p.tags.join(", "))),
                    short_time(&p.updated_at),
                    excerpt(p.description.as_deref().unwrap_or("-"), 50),
                ]
            })
            .collect(),
    )
}

pub fn versions_json(versions: &[PromptVersion], tags: &BTreeMap<String, Vec<String>>) -> Value {
    Value::Array(
        versions
            .iter()
            .map(|v| {
                let mut value = serde_json::to_value(v).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut value {
                    map.insert(
                        "tags".into(),
                        json!(tags.get(&v.id).cloned().unwrap_or_default()),
                    );
                }
                value
            })
            .collect(),
    )
}

pub fn versions_table(versions: &[PromptVersion], tags: &BTreeMap<String, Vec<String>>) -> String {
    table(
        &["VERSION", "ID", "CREATED", "AUTHOR", "MESSAGE", "TAGS"],
        versions
            .iter()
            .map(|v| {
                vec![
                    format!("v{}", v.seq),
                    v.id.clone(),
                    short_time(&v.created_at),
                    v.author.clone(),
                    excerpt(v.message.as_deref().unwrap_or("-"), 50),
                    or_dash(tags.get(&v.id).map(|t| t.join(", ")).as_deref()),
                ]
            })
            .collect(),
    )
}

pub fn tags_table(tags: &[Tag]) -> String {
    if tags.is_empty() {
        return "no tags".into();
    }
    table(
        &["TAG", "VERSION", "VERSION ID", "MOVED AT", "BY"],
        tags.iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    format!("v{}", t.version_seq),
                    t.version_id.clone(),
                    short_time(&t.updated_at),
                    t.updated_by.clone(),
                ]
            })
            .collect(),
    )
}

fn seq_label(seq: Option<i64>) -> String {
    seq.map(|s| format!("v{s}")).unwrap_or_else(|| "-".into())
}

pub fn tag_event_line(e: &TagEvent) -> String {
    let what = match e.action {
        TagAction::Set => format!("set to {}", seq_label(e.to_seq)),
        TagAction::Delete => format!("deleted (was {})", seq_label(e.from_seq)),
        action => format!(
            "{} {} → {}",
            match action {
                TagAction::Move => "moved",
                TagAction::Rollback => "rolled back",
                _ => "promoted",
            },
            seq_label(e.from_seq),
            seq_label(e.to_seq)
        ),
    };
    format!("{} {} {what}", e.prompt, e.tag)
}

pub fn history_table(events: &[TagEvent]) -> String {
    if events.is_empty() {
        return "no tag history".into();
    }
    table(
        &["AT", "TAG", "ACTION", "FROM", "TO", "BY", "MESSAGE"],
        events
            .iter()
            .map(|e| {
                vec![
                    short_time(&e.at),
                    e.tag.clone(),
                    if e.forced {
                        format!("{} (forced)", e.action)
                    } else if e.deploy {
                        format!("{} (deploy)", e.action)
                    } else {
                        e.action.to_string()
                    },
                    seq_label(e.from_seq),
                    seq_label(e.to_seq),
                    e.actor.clone(),
                    excerpt(e.message.as_deref().unwrap_or("-"), 60),
                ]
            })
            .collect(),
    )
}

pub fn rendered_json<'a>(v: &'a PromptVersion, messages: &'a [Message]) -> RenderedView<'a> {
    RenderedView {
        prompt: &v.prompt,
        version: v.seq,
        version_id: &v.id,
        model: v.model.as_deref(),
        params: &v.params,
        messages,
    }
}

/// A string template renders to its text alone, ready to pipe; a chat to `[role]` blocks.
pub fn rendered_text(v: &PromptVersion, messages: &[Message]) -> String {
    match (&v.template, messages) {
        (Template::Str(_), [only]) => only.content.clone(),
        _ => messages_text(messages),
    }
}

fn version_label(e: &Experiment) -> String {
    match &e.tag {
        Some(tag) => format!("{} v{} ({tag})", e.prompt, e.version_seq),
        None => format!("{} v{}", e.prompt, e.version_seq),
    }
}

fn ms(value: Option<f64>) -> String {
    value
        .map(|v| format!("{v:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

pub fn experiment_json<'a>(
    e: &'a Experiment,
    summary: &'a Summary,
    run: Option<&RunStats>,
    cost: Option<CostView>,
    confidence: f64,
) -> ExperimentView<'a> {
    ExperimentView::new(e, summary, run, cost, confidence)
}

pub use crate::diff::{FieldChange, VersionDiff, messages_text, template_text};
pub use crate::stats::{confidence_text, rate_interval};

/// A number without a needless fraction: 3, 2.5.
fn trim_number(v: f64) -> String {
    let text = format!("{v:.1}");
    text.strip_suffix(".0").unwrap_or(&text).to_string()
}

/// A standard error as people read it: `n/a (no variation)` where every row agrees.
fn se_text(se: f64, number: impl Fn(f64) -> String) -> String {
    if se > 0.0 {
        number(se)
    } else {
        "n/a, no variation".into()
    }
}

/// The error-bar lines of one evaluator in a summary: the pass rate's and the mean score's
/// intervals and standard errors, then what repetitions did to them.
fn statistics_lines(st: &crate::view::EvaluatorStatistics, confidence: f64) -> Vec<String> {
    let level = confidence_text(confidence);
    let mut lines = Vec::new();
    match (&st.pass_rate, &st.mean_score) {
        (Some(pass), Some(score)) => lines.push(format!(
            "pass rate {level} CI {} (SE {}), mean score {level} CI {:.3}–{:.3} (SE {}), over {} rows",
            rate_interval(pass.ci),
            se_text(pass.se, |se| format!("{:.1} pts", se * 100.0)),
            score.ci[0],
            score.ci[1],
            se_text(score.se, |se| format!("{se:.3}")),
            st.rows
        )),
        _ => lines.push(format!(
            "no error bars: {} row(s); a standard error needs at least 2",
            st.rows
        )),
    }
    if let (Some(pass), Some(one)) = (&st.pass_rate, st.pass_rate_se_one_repetition) {
        lines.push(if one > pass.se * 1.0005 {
            format!(
                "{} answers a row shrank the pass rate's SE from {:.1} pts (one answer a row) to {:.1} pts",
                trim_number(st.repetitions),
                one * 100.0,
                pass.se * 100.0,
            )
        } else {
            format!(
                "{} answers a row: every row's answers agreed, so repetitions left the SE as it was",
                trim_number(st.repetitions)
            )
        });
    }
    lines
}

/// The end-of-run table: what ran, how it went, per evaluator results, latency, tokens, cost,
/// speed.
pub fn experiment_summary(
    e: &Experiment,
    s: &Summary,
    run: Option<&RunStats>,
    cost: Option<&CostView>,
    confidence: f64,
) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        vec![
            "experiment".into(),
            format!("{} ({})", e.id, e.status.as_str()),
        ],
        vec!["prompt".into(), version_label(e)],
        vec![
            "dataset".into(),
            format!(
                "{} ({} rows, sha256 {})",
                e.dataset.path,
                e.dataset.rows,
                &e.dataset.hash[..e.dataset.hash.len().min(12)]
            ),
        ],
        vec!["model".into(), format!("{} at {}", e.model, e.base_url)],
        vec![
            "rows".into(),
            format!(
                "{} ok, {} errored, {} cached{}{}",
                s.ok,
                s.errored,
                s.cached,
                match run.and_then(|r| r.oldest_cached_secs) {
                    Some(age) => format!(
                        " (answers from earlier runs, up to {} old; --fresh calls again)",
                        age_text(age)
                    ),
                    None => String::new(),
                },
                if s.missing > 0 {
                    format!(", {} not run", s.missing)
                } else {
                    String::new()
                }
            ),
        ],
    ];
    if let Some(name) = &e.name {
        rows.insert(1, vec!["name".into(), name.clone()]);
    }
    if !s.error_kinds.is_empty() {
        let kinds: Vec<String> = s
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        rows.push(vec!["errors".into(), kinds.join(", ")]);
    }
    let statistics = crate::view::evaluator_statistics(s, confidence);
    for ev in &s.evaluators {
        rows.push(vec![
            format!("eval {}", ev.evaluator),
            format!(
                "{} pass ({}/{}), mean score {:.3}{}",
                percent(ev.pass_rate),
                ev.passed,
                ev.total,
                ev.mean_score,
                if ev.errors > 0 {
                    format!(", {} evaluator errors", ev.errors)
                } else {
                    String::new()
                }
            ),
        ]);
        if let Some(st) = statistics.iter().find(|st| st.evaluator == ev.evaluator) {
            for line in statistics_lines(st, confidence) {
                rows.push(vec![String::new(), line]);
            }
        }
    }
    rows.push(vec![
        "latency".into(),
        format!(
            "p50 {}, p95 {}, max {}",
            ms(s.latency_p50_ms),
            ms(s.latency_p95_ms),
            ms(s.latency_max_ms)
        ),
    ]);
    rows.push(vec![
        "tokens".into(),
        format!("{} in, {} out", s.prompt_tokens, s.completion_tokens),
    ]);
    rows.push(vec![
        "cost".into(),
        match cost {
            Some(c) => format!(
                "{} ({} per row) at ${}/${} per 1M tokens in/out ({})",
                crate::cost::usd(c.usd),
                crate::cost::usd(c.per_row_usd),
                c.input_per_mtok,
                c.output_per_mtok,
                match c.price_source {
                    crate::cost::Source::BuiltIn => "built-in price",
                    crate::cost::Source::RunnerToml => "runner.toml",
                }
            ),
            None => format!(
                "unknown: no price for model {} (add [prices.\"{}\"] to runner.toml)",
                e.model, e.model
            ),
        },
    ]);
    match run {
        Some(run) => {
            rows.push(vec![
                "wall time".into(),
                format!(
                    "{:.2} s, {:.1} rows/s ({} rows this run)",
                    run.wall_secs,
                    run.rows_per_sec(),
                    run.processed
                ),
            ]);
            if run.rate_limited > 0 || run.throttled_secs > 0.0 {
                rows.push(vec![
                    "rate limits".into(),
                    format!(
                        "{} × 429, held back {:.1} s, concurrency ended at {} of {}",
                        run.rate_limited, run.throttled_secs, run.concurrency, run.max_concurrency
                    ),
                ]);
            }
        }
        None => rows.push(vec![
            "wall time".into(),
            format!("{:.2} s", e.wall_ms as f64 / 1000.0),
        ]),
    }
    boxed_table(None, rows)
}

/// A table with borders (summaries, comparisons), fitted to the width like `table`.
pub fn boxed_table(headers: Option<Vec<String>>, rows: Vec<Vec<String>>) -> String {
    let width = WIDTH.get().copied().flatten();
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    if let Some(width) = width {
        table
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(width)
            .set_truncation_indicator("…");
    }
    if let Some(headers) = headers {
        table.set_header(headers);
    }
    for row in rows {
        let mut row = comfy_table::Row::from(row);
        if width.is_some() {
            row.max_height(MAX_CELL_LINES);
        }
        table.add_row(row);
    }
    table.to_string()
}

pub fn experiments_table(items: &[crate::view::ExperimentItem]) -> String {
    if items.is_empty() {
        return "no experiments".into();
    }
    table(
        &[
            "ID", "CREATED", "PROMPT", "DATASET", "MODEL", "ROWS", "STATUS", "ERRORS", "COST",
            "NAME",
        ],
        items
            .iter()
            .map(|item| {
                let e = &item.experiment;
                vec![
                    e.id.clone(),
                    short_time(&e.created_at),
                    version_label(e),
                    e.dataset.path.clone(),
                    e.model.clone(),
                    e.planned.to_string(),
                    e.status.as_str().to_string(),
                    if e.error_count == 0 {
                        "0".into()
                    } else {
                        format!("{} ({})", e.error_count, percent(e.error_rate))
                    },
                    item.cost_usd
                        .map(crate::cost::usd)
                        .unwrap_or_else(|| "-".into()),
                    e.name.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    )
}

/// A row's inputs in a few words.
pub fn input_text(e: &Experiment, r: &RunResult) -> String {
    crate::model::input_summary(&r.vars, e.settings.expected_column.as_deref())
}

/// One line of `experiment show --rows`.
pub fn result_row(e: &Experiment, r: &RunResult) -> Vec<String> {
    let mut row = vec![
        r.row_id.clone(),
        r.repetition.to_string(),
        match r.status {
            ResultStatus::Ok if r.cached => "ok (cached)".into(),
            ResultStatus::Ok => "ok".into(),
            ResultStatus::Error => format!("error: {}", r.error_kind.as_deref().unwrap_or("?")),
        },
        excerpt(&input_text(e, r), 40),
        excerpt(r.expected.as_deref().unwrap_or("-"), 30),
        match (&r.output, &r.error_message) {
            (Some(output), _) => excerpt(output, 50),
            (None, Some(message)) => excerpt(message, 50),
            (None, None) => "-".into(),
        },
        format!("{:.0}", r.latency_ms),
    ];
    for name in &e.evaluators {
        row.push(match r.scores.iter().find(|s| &s.evaluator == name) {
            Some(s) if s.error => "error".into(),
            Some(s) => format!("{} {:.2}", if s.pass { "pass" } else { "fail" }, s.score),
            None => "-".into(),
        });
    }
    row
}

/// The CSV columns of `experiment show --csv`: every stored field, then score, pass and reason
/// per evaluator.
pub fn csv_header(e: &Experiment) -> Vec<String> {
    let mut header: Vec<String> = [
        "row_index",
        "row_id",
        "repetition",
        "status",
        "output",
        "expected",
        "error_kind",
        "error_message",
        "http_status",
        "attempts",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "cached",
        "vars",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for name in &e.evaluators {
        header.push(format!("{name}.score"));
        header.push(format!("{name}.pass"));
        header.push(format!("{name}.reason"));
    }
    header
}

/// One result as a CSV record under `csv_header`, full text (no cutting).
pub fn csv_record(e: &Experiment, r: &RunResult) -> Vec<String> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let mut record = vec![
        r.row_index.to_string(),
        r.row_id.clone(),
        r.repetition.to_string(),
        r.status.as_str().to_string(),
        opt(r.output.clone()),
        opt(r.expected.clone()),
        opt(r.error_kind.clone()),
        opt(r.error_message.clone()),
        opt(r.http_status.map(|s| s.to_string())),
        r.attempts.to_string(),
        format!("{:.1}", r.latency_ms),
        opt(r.prompt_tokens.map(|t| t.to_string())),
        opt(r.completion_tokens.map(|t| t.to_string())),
        r.cached.to_string(),
        Value::Object(r.vars.clone()).to_string(),
    ];
    for name in &e.evaluators {
        match r.scores.iter().find(|s| &s.evaluator == name) {
            Some(s) => {
                record.push(format!("{}", s.score));
                record.push(s.pass.to_string());
                record.push(s.reason.clone());
            }
            None => record.extend([String::new(), String::new(), String::new()]),
        }
    }
    record
}

pub fn results_table(e: &Experiment, rows: Vec<Vec<String>>) -> String {
    let mut headers = vec!["ROW", "REP", "STATUS", "INPUT", "EXPECTED", "OUTPUT", "MS"];
    let names: Vec<String> = e.evaluators.iter().map(|n| n.to_uppercase()).collect();
    headers.extend(names.iter().map(String::as_str));
    table(&headers, rows)
}

/// The progress line's account of retries: how many requests wait, why, and for how long, so
/// that a run held back by an endpoint's rate limit says so instead of looking frozen.
fn retry_text(retry: &crate::client::RetryState) -> String {
    let cause = retry
        .last_cause
        .map(|c| c.to_string())
        .unwrap_or_else(|| "retry".into());
    match (retry.waiting, retry.total) {
        (0, 0) => String::new(),
        (0, total) => format!(", {total} retried"),
        (waiting, total) => format!(
            ", {waiting} waiting to retry after {cause} (up to {:.1} s more; {total} retried)",
            retry.longest_wait.as_secs_f64()
        ),
    }
}

/// The progress line's account of rate limits: 429s, time held back, and the concurrency
/// the run has adapted to; nothing while no limit was met.
fn throttle_text(t: &crate::limit::ThrottleState) -> String {
    if t.rate_limited == 0 && t.throttled.is_zero() {
        return String::new();
    }
    format!(
        "; rate limits: {} × 429, throttled {:.1} s, concurrency {}/{}",
        t.rate_limited,
        t.throttled.as_secs_f64(),
        t.concurrency,
        t.max_concurrency
    )
}

/// What the terminal shows of one run: a bar on a terminal, else a line every few seconds.
struct Progress {
    id: String,
    total: u64,
    already: u64,
    started: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
    last_line: Option<std::time::Instant>,
    last: crate::engine::Tally,
}

/// How often the plain-line reporter writes a line when stderr is not a terminal.
const LINE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Progress {
    fn start(id: &str, total: u64, already: u64) -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(id.to_string());
            bar.set_position(already);
            bar
        });
        Progress {
            id: id.to_string(),
            total,
            already,
            started: std::time::Instant::now(),
            bar,
            last_line: None,
            last: crate::engine::Tally::default(),
        }
    }

    fn update(&mut self, tally: crate::engine::Tally) {
        self.last = tally;
        let rate = tally.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.already + tally.done);
                bar.set_message(format!(
                    "{rate:.1} rows/s, errors {}, cached {}{}{}",
                    tally.errors,
                    tally.cached,
                    retry_text(&tally.retry),
                    throttle_text(&tally.throttle)
                ));
            }
            None => {
                let due = self.last_line.is_none_or(|at| at.elapsed() >= LINE_EVERY);
                if due && self.started.elapsed() >= LINE_EVERY {
                    self.line(rate);
                }
            }
        }
    }

    fn line(&mut self, rate: f64) {
        let t = self.last;
        crate::note!(
            "{}: {}/{} rows, {rate:.1} rows/s, {} errors, {} cached{}{}",
            self.id,
            self.already + t.done,
            self.total,
            t.errors,
            t.cached,
            retry_text(&t.retry),
            throttle_text(&t.throttle)
        );
        self.last_line = Some(std::time::Instant::now());
    }

    fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None if self.last.done > 0 => {
                let rate = self.last.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                self.line(rate);
            }
            None => {}
        }
    }
}

/// The terminal's reporter: a progress bar (or a line every few seconds when stderr is not a
/// terminal) while requests go out, notices as plain lines on stderr.
pub struct Terminal {
    progress: std::cell::RefCell<Option<Progress>>,
    /// The confidence level of the summaries' intervals.
    confidence: f64,
}

impl Default for Terminal {
    fn default() -> Terminal {
        Terminal::new(crate::stats::DEFAULT_CONFIDENCE)
    }
}

impl Terminal {
    pub fn new(confidence: f64) -> Terminal {
        Terminal {
            progress: std::cell::RefCell::new(None),
            confidence,
        }
    }
}

impl crate::engine::Reporter for Terminal {
    fn report(&self, event: crate::engine::RunEvent<'_>) {
        use crate::engine::RunEvent;
        match event {
            RunEvent::Started {
                experiment,
                planned,
                already,
            } => {
                let started = Progress::start(&experiment.id, planned, already);
                if let Some(previous) = self.progress.replace(Some(started)) {
                    previous.finish();
                }
            }
            RunEvent::Progress(tally) => {
                if let Some(progress) = self.progress.borrow_mut().as_mut() {
                    progress.update(tally);
                }
            }
            RunEvent::Interrupted { grace } => crate::note!(
                "interrupted: waiting up to {} s for the requests in flight",
                grace.as_secs()
            ),
            RunEvent::Stopped => {
                if let Some(progress) = self.progress.take() {
                    progress.finish();
                }
            }
            RunEvent::Notice(text) => crate::note!("{text}"),
            RunEvent::Ended {
                experiment,
                summary,
                stats,
                cost,
            } => crate::note!(
                "{}",
                experiment_summary(experiment, summary, Some(stats), cost, self.confidence)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JsonObject, TemplateFormat, TemplateType};

    fn version(seq: i64, text: &str, temperature: f64) -> PromptVersion {
        let mut params = JsonObject::new();
        params.insert("temperature".into(), json!(temperature));
        PromptVersion {
            id: format!("id-{seq}"),
            prompt: "greeting".into(),
            seq,
            template_type: TemplateType::Str,
            format: TemplateFormat::Mustache,
            template: Template::Str(text.into()),
            model: Some("gpt-4".into()),
            provider: None,
            params,
            metadata: JsonObject::new(),
            description: None,
            message: Some(format!("message {seq}")),
            author: "ada".into(),
            content_hash: format!("hash-{seq}"),
            created_at: format!("2026-11-24T07:3{seq}:00.000Z"),
        }
    }

    #[test]
    fn versions_table_snapshot() {
        let versions = vec![version(2, "b", 0.2), version(1, "a", 0.7)];
        let mut tags = BTreeMap::new();
        tags.insert("id-1".to_string(), vec!["production".to_string()]);
        tags.insert(
            "id-2".to_string(),
            vec!["staging".to_string(), "x".to_string()],
        );
        insta::assert_snapshot!(versions_table(&versions, &tags));
    }

    #[test]
    fn diff_snapshot() {
        let a = version(1, "Hello {{name}}.\nBe brief.\n", 0.7);
        let b = version(2, "Hello {{name}}!\nBe brief.\n", 0.2);
        insta::assert_snapshot!(VersionDiff::between(&a, &b).text());
        assert!(
            VersionDiff::between(&a, &a)
                .text()
                .contains("no differences")
        );
    }

    #[test]
    fn history_table_snapshot() {
        let event = |id, action, from: Option<i64>, to: Option<i64>| TagEvent {
            id,
            prompt: "greeting".into(),
            tag: "production".into(),
            action,
            from_version_id: from.map(|s| format!("id-{s}")),
            from_seq: from,
            to_version_id: to.map(|s| format!("id-{s}")),
            to_seq: to,
            actor: "ada".into(),
            message: Some("why".into()),
            at: format!("2026-11-24T08:0{id}:00.000Z"),
            forced: false,
            deploy: false,
            evidence: None,
        };
        let events = vec![
            event(1, TagAction::Set, None, Some(1)),
            event(2, TagAction::Move, Some(1), Some(2)),
            event(3, TagAction::Rollback, Some(2), Some(1)),
            event(4, TagAction::Delete, Some(1), None),
        ];
        insta::assert_snapshot!(history_table(&events));
        let lines: Vec<String> = events.iter().map(tag_event_line).collect();
        assert_eq!(
            lines,
            vec![
                "greeting production set to v1",
                "greeting production moved v1 → v2",
                "greeting production rolled back v2 → v1",
                "greeting production deleted (was v1)",
            ]
        );
    }
}
