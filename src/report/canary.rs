//! `runner canary` as text: a rollout's state, each metric per arm with its interval and
//! verdict so far, what happens next; and what a look decided. Pure: it must not read the
//! store or print.

use super::{short_time, table};
use crate::canary::{Decision, Look, Verdict};
use crate::workflow::canary::{Outcome, View};

/// A metric's verdict as the CLI and the web UI word it.
pub fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::NonInferior => "non-inferior",
        Verdict::Inferior => "INFERIOR",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// A look's decision as the CLI and the web UI word it.
pub fn decision_text(d: Decision) -> &'static str {
    match d {
        Decision::Hold => "hold",
        Decision::Advance => "advance",
        Decision::Complete => "complete",
        Decision::RollBack => "roll back",
        Decision::Exhausted => "stop (looks spent, still inconclusive)",
    }
}

fn metrics_table(look: &Look) -> String {
    let number = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.4}"));
    let rows = look
        .metrics
        .iter()
        .map(|m| {
            vec![
                m.metric.clone(),
                format!("{} ({} spans)", number(m.baseline), m.baseline_spans),
                format!("{} ({} spans)", number(m.candidate), m.candidate_spans),
                match (m.worse_by, m.interval) {
                    (Some(w), Some([lo, hi])) => format!("{w:+.4} [{lo:+.4}, {hi:+.4}]"),
                    _ => "-".into(),
                },
                format!("{:.4}", m.margin),
                verdict_text(m.verdict).to_string(),
            ]
        })
        .collect();
    table(
        &[
            "metric",
            "baseline",
            "candidate",
            "worse by",
            "margin",
            "verdict",
        ],
        rows,
    )
}

/// A rollout for `runner canary status`.
pub fn canary_text(view: &View) -> String {
    let r = &view.rollout;
    let mut out = format!(
        "rollout {} of {} {}: v{} (baseline) → v{} (candidate), {}\n",
        r.id,
        r.prompt,
        r.tag,
        r.baseline,
        r.candidate,
        r.status.as_str().replace('_', " ")
    );
    out.push_str(&format!(
        "started {} by {}; steps {} (each {}); looks {} of {} planned, confidence {}\n",
        short_time(&crate::production::time_text(r.created_ms)),
        r.actor,
        r.steps
            .iter()
            .map(|s| format!("{s}%"))
            .collect::<Vec<_>>()
            .join(" → "),
        r.step_after.text(),
        r.looks,
        r.planned_looks(),
        r.confidence
    ));
    if let Some(look) = &view.now {
        out.push_str(&format!(
            "step {} of {}: {}% of lookups get v{}, {} s in the step ({:.0}% done)\n\n",
            r.step + 1,
            r.steps.len(),
            view.share,
            r.candidate,
            view.in_step_ms / 1_000,
            (view.progress * 100.0).min(100.0)
        ));
        out.push_str(&metrics_table(look));
        out.push_str(&format!(
            "\n\nintervals at {:.3}% per side (alpha {:.5} per look)\n",
            look.alpha * 100.0,
            look.alpha
        ));
    } else if let Some(last) = &r.last_look {
        out.push_str(&last_look_text(last));
    }
    out.push_str(&format!("next: {}\n", view.next));
    out
}

/// The decision that ended a rollout, from its recorded evidence.
fn last_look_text(last: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let number =
        |v: &serde_json::Value| v.as_f64().map_or_else(|| "-".into(), |v| format!("{v:.4}"));
    let mut out = format!(
        "\nlast look: {} at step {} ({}% of lookups){}\n",
        text(&last["decision"])
            .unwrap_or_else(|| "-".into())
            .replace('_', " "),
        last["step"].as_u64().map_or(0, |s| s + 1),
        last["share"].as_u64().unwrap_or(0),
        text(&last["message"]).map_or_else(String::new, |m| format!(": {m}"))
    );
    let rows: Vec<Vec<String>> = last["metrics"]
        .as_array()
        .map(|metrics| {
            metrics
                .iter()
                .map(|m| {
                    vec![
                        text(&m["metric"]).unwrap_or_default(),
                        format!("{} ({} spans)", number(&m["baseline"]), m["baseline_spans"]),
                        format!(
                            "{} ({} spans)",
                            number(&m["candidate"]),
                            m["candidate_spans"]
                        ),
                        match (m["worse_by"].as_f64(), m["interval"].as_array()) {
                            (Some(w), Some(i)) if i.len() == 2 => format!(
                                "{w:+.4} [{:+.4}, {:+.4}]",
                                i[0].as_f64().unwrap_or(f64::NAN),
                                i[1].as_f64().unwrap_or(f64::NAN)
                            ),
                            _ => "-".into(),
                        },
                        number(&m["margin"]),
                        text(&m["verdict"]).unwrap_or_default().replace('_', "-"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !rows.is_empty() {
        out.push_str(&table(
            &[
                "metric",
                "baseline",
                "candidate",
                "worse by",
                "margin",
                "verdict",
            ],
            rows,
        ));
        out.push('\n');
    }
    out
}

/// What a look decided, for `runner canary evaluate` and `advance`.
pub fn canary_outcome_text(o: &Outcome) -> String {
    let mut out = format!(
        "rollout {} of {} {}: look {} at {}% decided {}{}\n",
        o.rollout,
        o.prompt,
        o.tag,
        o.look.look,
        o.look.share,
        decision_text(o.look.decision),
        if o.recorded {
            ""
        } else {
            " (another process decided first; not recorded)"
        }
    );
    out.push_str(&metrics_table(&o.look));
    for event in &o.events {
        out.push_str(&format!(
            "\n{} {}: v{} → v{}",
            event.tag,
            event.action,
            event.from_seq.map_or_else(|| "-".into(), |n| n.to_string()),
            event.to_seq.map_or_else(|| "-".into(), |n| n.to_string())
        ));
    }
    out
}
