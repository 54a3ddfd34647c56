//! `compare --eval pairwise`: the judge's tally (wins, ties, losses, the win rate with its
//! interval, the sign test) and the rows it decided, with its reasons in both orders.

use super::{excerpt, table};
use crate::pairwise::{Outcome, Pick};
use crate::workflow::pairwise::Report;

fn pick(p: Pick, candidate_is_a: bool) -> &'static str {
    match (p, candidate_is_a) {
        (Pick::Tie, _) => "tie",
        (Pick::A, true) | (Pick::B, false) => "candidate",
        _ => "baseline",
    }
}

/// The rows the judge did not decide, and why.
fn not_judged(report: &Report) -> String {
    let mut out = String::new();
    if report.errors > 0 {
        out.push_str(&format!(
            "not judged: {} row(s) whose judge call failed or gave no verdict ({})\n",
            report.errors,
            report.first_error.as_deref().unwrap_or("")
        ));
    }
    if report.unpaired > 0 {
        out.push_str(&format!(
            "not judged: {} row(s) only one side answered\n",
            report.unpaired
        ));
    }
    out
}

/// The tally in a few lines, then up to `rows` decided rows (losses first, then wins), each
/// with the two orders' picks and reasons.
pub fn pairwise_text(report: &Report, rows: usize) -> String {
    let t = &report.tally;
    if t.rows == 0 {
        // No row judged: no rate, rather than a rate of 0% over nothing.
        let mut out = format!(
            "A versus B, {} (judge model {}): no row was judged, so there is no win rate\n",
            report.evaluator, report.judge_model
        );
        out.push_str(&not_judged(report));
        return out;
    }
    let mut out = format!(
        "A versus B, {} (judge model {}): the candidate wins {}, ties {}, loses {} of {} rows\n\
         win rate {:.1}% (ties count half), {} CI {:.1}–{:.1}%; sign test (wins against losses) p = {:.4}\n",
        report.evaluator,
        report.judge_model,
        t.wins,
        t.ties,
        t.losses,
        t.rows,
        t.win_rate * 100.0,
        crate::stats::confidence_text(t.confidence),
        t.ci[0] * 100.0,
        t.ci[1] * 100.0,
        t.sign_test_p
    );
    out.push_str(&not_judged(report));
    let mut decided: Vec<_> = report
        .judged
        .iter()
        .filter(|j| j.outcome != Outcome::Tie)
        .collect();
    decided.sort_by_key(|j| (j.outcome != Outcome::Loss, j.row_id.clone()));
    if !decided.is_empty() && rows > 0 {
        let lines = decided
            .iter()
            .take(rows)
            .map(|j| {
                vec![
                    j.row_id.clone(),
                    match j.outcome {
                        Outcome::Win => "win".into(),
                        Outcome::Loss => "loss".into(),
                        Outcome::Tie => "tie".into(),
                    },
                    excerpt(&j.baseline_output, 30),
                    excerpt(&j.candidate_output, 30),
                    format!(
                        "{}: {}",
                        pick(j.candidate_first, true),
                        excerpt(&j.candidate_first_reason, 40)
                    ),
                    format!(
                        "{}: {}",
                        pick(j.baseline_first, false),
                        excerpt(&j.baseline_first_reason, 40)
                    ),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "ROW",
                "CANDIDATE",
                "BASELINE OUTPUT",
                "CANDIDATE OUTPUT",
                "CANDIDATE SHOWN FIRST",
                "BASELINE SHOWN FIRST",
            ],
            lines,
        ));
    }
    out
}
