//! `runner production` as text: one row per version (requests, error rate with its interval,
//! latency, tokens, cost, first and last seen), each annotation's mean and pass share, the
//! applications, the tag moves and fetches in the window; and two versions' traffic compared
//! with the test named. Pure: it must not read the store or print.

use super::{aligned_table, confidence_text, rate_interval, short_time, table};
use crate::cost::usd;
use crate::production::{Beside, Production, TrafficComparison, VersionTraffic};
use crate::stats::Unpaired;

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"))
}

/// A time to the minute: `2026-12-06 06:27`.
fn minute(at: &str) -> String {
    short_time(at).chars().take(16).collect()
}

fn percent(value: f64) -> String {
    format!("{:.1}%", value * 100.0)
}

/// The report of one prompt's production traffic.
pub fn production_text(p: &Production, confidence: f64) -> String {
    let mut out = format!(
        "{}: production traffic {} → {} ({} intervals)\n",
        p.prompt,
        short_time(&p.since),
        short_time(&p.until),
        confidence_text(confidence)
    );
    if p.versions.is_empty() {
        out.push_str(
            "\nno linked spans in this window: send traces to `runner serve` at /v1/traces with \
             llm.prompt_template.version set (see docs/production.md)",
        );
    } else {
        let rows = p
            .versions
            .iter()
            .map(|v| {
                let label = if v.tags.is_empty() {
                    format!("v{}", v.version)
                } else {
                    format!("v{} ({})", v.version, v.tags.join(", "))
                };
                vec![
                    label,
                    v.requests.to_string(),
                    format!(
                        "{} [{}]",
                        percent(v.error_rate),
                        rate_interval(v.error_rate_interval)
                    ),
                    format!("{} / {}", ms(v.latency_p50_ms), ms(v.latency_p95_ms)),
                    format!("{} / {}", v.input_tokens, v.output_tokens),
                    v.cost_usd.map_or_else(|| "-".into(), usd),
                    minute(&v.first_seen),
                    minute(&v.last_seen),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&aligned_table(
            Some(
                [
                    "version",
                    "requests",
                    "error rate",
                    "p50 / p95",
                    "tokens in / out",
                    "cost",
                    "first seen",
                    "last seen",
                ]
                .map(String::from)
                .to_vec(),
            ),
            rows,
        ));
        let scores: Vec<Vec<String>> = p
            .versions
            .iter()
            .flat_map(|v| {
                v.scores.iter().map(move |s| {
                    vec![
                        format!("v{}", v.version),
                        s.name.clone(),
                        s.count.to_string(),
                        match (s.mean, s.mean_interval) {
                            (Some(m), Some([lo, hi])) => format!("{m:.3} [{lo:.3}, {hi:.3}]"),
                            (Some(m), None) => format!("{m:.3}"),
                            _ => "-".into(),
                        },
                        match (s.pass_rate, s.pass_rate_interval) {
                            (Some(r), Some(ci)) => {
                                format!("{} [{}] of {}", percent(r), rate_interval(ci), s.judged)
                            }
                            _ => "-".into(),
                        },
                    ]
                })
            })
            .collect();
        if !scores.is_empty() {
            out.push_str("\n\nfeedback and online scores\n");
            out.push_str(&table(
                &["version", "annotation", "count", "mean score", "pass share"],
                scores,
            ));
        }
        let apps: Vec<Vec<String>> = p
            .versions
            .iter()
            .flat_map(|v| {
                v.applications.iter().map(move |a| {
                    vec![
                        format!("v{}", v.version),
                        a.service.clone().unwrap_or_else(|| "-".into()),
                        a.sender.clone().unwrap_or_else(|| "-".into()),
                        a.requests.to_string(),
                    ]
                })
            })
            .collect();
        out.push_str("\n\napplications\n");
        out.push_str(&table(&["version", "service", "token", "requests"], apps));
    }
    if !p.tag_moves.is_empty() {
        out.push_str("\n\ntag moves\n");
        let rows = p
            .tag_moves
            .iter()
            .map(|m| {
                let version = |v: Option<i64>| v.map_or_else(|| "-".into(), |n| format!("v{n}"));
                vec![
                    short_time(&m.at),
                    m.tag.clone(),
                    format!("{} → {}", version(m.from_version), version(m.to_version)),
                    m.actor.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&["at", "tag", "move", "by"], rows));
    }
    if !p.lookups.is_empty() {
        out.push_str("\n\nfetched through runner serve\n");
        let rows = p
            .lookups
            .iter()
            .map(|l| {
                vec![
                    l.sender.clone(),
                    if l.user_agent.is_empty() {
                        "-".into()
                    } else {
                        l.user_agent.clone()
                    },
                    if l.tag.is_empty() {
                        "(by id)".into()
                    } else {
                        l.tag.clone()
                    },
                    l.version.map_or_else(|| "?".into(), |n| format!("v{n}")),
                    short_time(&l.first),
                    short_time(&l.last),
                    l.count.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "token",
                "user agent",
                "tag",
                "version",
                "first",
                "last",
                "lookups",
            ],
            rows,
        ));
    }
    if p.unlinked_spans > 0 {
        out.push_str(&format!(
            "\n\n{} LLM span(s) in this window named no version runner knows (kept, unlinked)\n",
            p.unlinked_spans
        ));
    }
    out
}

fn difference_row(label: &str, u: &Unpaired, value: impl Fn(f64) -> String) -> Vec<String> {
    vec![
        label.to_string(),
        value(u.baseline),
        value(u.candidate),
        format!(
            "{} [{}, {}]",
            signed(u.difference, &value),
            signed(u.ci[0], &value),
            signed(u.ci[1], &value)
        ),
        if u.p_value < 0.001 {
            "<0.001".into()
        } else {
            format!("{:.3}", u.p_value)
        },
        u.test.to_string(),
    ]
}

fn signed(v: f64, value: &impl Fn(f64) -> String) -> String {
    if v >= 0.0 {
        format!("+{}", value(v))
    } else {
        format!("-{}", value(-v))
    }
}

/// Two versions' production traffic compared.
pub fn traffic_comparison_text(c: &TrafficComparison) -> String {
    let mut out = format!(
        "{}: v{} (baseline, {} requests) against v{} (candidate, {} requests), unpaired, {} \
         intervals\n\n",
        c.prompt,
        c.baseline,
        c.baseline_requests,
        c.candidate,
        c.candidate_requests,
        confidence_text(c.confidence)
    );
    let mut rows = Vec::new();
    if let Some(u) = &c.error_rate {
        rows.push(difference_row("error rate", u, percent));
    }
    if let Some(u) = &c.latency_ms {
        rows.push(difference_row("latency (mean)", u, |v| {
            format!("{v:.0} ms")
        }));
    }
    for s in &c.scores {
        if let Some(u) = &s.mean {
            rows.push(difference_row(&format!("{} (mean)", s.name), u, |v| {
                format!("{v:.3}")
            }));
        }
        if let Some(u) = &s.pass_rate {
            rows.push(difference_row(
                &format!("{} (pass share)", s.name),
                u,
                percent,
            ));
        }
    }
    if rows.is_empty() {
        out.push_str("not enough traffic on both versions to compare\n");
        return out;
    }
    out.push_str(&aligned_table(
        Some(
            ["metric", "baseline", "candidate", "difference", "p", "test"]
                .map(String::from)
                .to_vec(),
        ),
        rows,
    ));
    out
}

/// Each side's production traffic under a comparison of their experiments.
pub fn beside_text(b: &Beside) -> String {
    let mut out = format!(
        "\nin production, {} → {}\n",
        short_time(&b.since),
        short_time(&b.until)
    );
    let row = |side: &str, v: &Option<VersionTraffic>| match v {
        None => vec![
            side.to_string(),
            "-".into(),
            "0".into(),
            "no traffic".into(),
            "-".into(),
            "-".into(),
        ],
        Some(v) => vec![
            side.to_string(),
            format!("v{}", v.version),
            v.requests.to_string(),
            format!(
                "{} [{}]",
                percent(v.error_rate),
                rate_interval(v.error_rate_interval)
            ),
            format!("{} / {}", ms(v.latency_p50_ms), ms(v.latency_p95_ms)),
            if v.scores.is_empty() {
                "-".into()
            } else {
                v.scores
                    .iter()
                    .map(|s| match s.mean {
                        Some(m) => format!("{} {m:.3} (n={})", s.name, s.count),
                        None => format!("{} (n={})", s.name, s.count),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ],
    };
    out.push_str(&table(
        &[
            "side",
            "version",
            "requests",
            "error rate",
            "p50 / p95",
            "feedback",
        ],
        vec![row("baseline", &b.baseline), row("candidate", &b.candidate)],
    ));
    out
}
