//! Renderers for experiments and their results: the end-of-run summary with its error bars,
//! the list of experiments, result rows and CSV records. Pure: it must not read the store,
//! print, or know how a run is carried out.

use super::{age_text, aligned_table, confidence_text, excerpt, rate_interval, short_time, table};
use crate::model::{Experiment, ResultStatus, RunResult, RunStats, Summary};
use crate::view::{CostView, ExperimentView};
use serde_json::Value;

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
        vec!["prompt".into(), e.label()],
        vec![
            "dataset".into(),
            format!(
                "{} ({} rows, sha256 {})",
                e.dataset.path,
                e.dataset.rows,
                &e.dataset.hash[..e.dataset.hash.len().min(12)]
            ),
        ],
        match &e.settings.target {
            // The application answered; the endpoint served only judges, if any.
            Some(target) => vec!["target".into(), format!("{target} (model {})", e.model)],
            None => vec!["model".into(), format!("{} at {}", e.model, e.base_url)],
        },
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
            // runner's mock answered: whatever the model costs elsewhere, nothing was spent.
            Some(c) if c.price_source == crate::cost::Source::Mock => {
                crate::cost::run_usd(0.0, true)
            }
            Some(c) => format!(
                "{} ({} per row) at ${}/${} per 1M tokens in/out ({}){}",
                crate::cost::usd(c.usd),
                crate::cost::usd(c.per_row_usd),
                c.input_per_mtok,
                c.output_per_mtok,
                match c.price_source {
                    crate::cost::Source::BuiltIn => "built-in price",
                    crate::cost::Source::RunnerToml => "runner.toml",
                    crate::cost::Source::Mock => "mock",
                },
                if s.cached > 0 {
                    format!(
                        "; spent {}: {} cached row(s) cost nothing here (they would have cost {})",
                        crate::cost::usd(c.spent_usd),
                        s.cached,
                        crate::cost::usd(c.cached_usd)
                    )
                } else {
                    String::new()
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
    aligned_table(None, rows)
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
                    e.label(),
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
                        .map(|usd| crate::cost::run_usd(usd, e.settings.mock))
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
        excerpt(
            r.expected.as_deref().unwrap_or_else(|| {
                // Without an expected answer, the expected tool calls are what the row expects.
                r.vars
                    .get(crate::tool_calls::EXPECTED_COLUMN)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
            }),
            30,
        ),
        match (&r.output, &r.error_message) {
            (Some(output), _) => excerpt(
                &crate::tool_calls::with_answer(output, r.extra.as_ref()),
                50,
            ),
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
        "tool_calls",
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
        r.extra
            .as_ref()
            .and_then(|e| e.get("tool_calls"))
            .map(Value::to_string)
            .unwrap_or_default(),
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
