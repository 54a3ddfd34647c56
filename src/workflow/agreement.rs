//! `runner judge agreement`: an evaluator (an LLM judge, a program, any `--eval` spec) run on an
//! experiment's stored answers and set against people's pass / fail labels of the same rows,
//! so a team knows whether to gate on it: the agreement, the two-by-two table and Cohen's kappa
//! with its interval (`stats::cohens_kappa`). Judge calls go through the response cache. It must
//! not print.

use super::Context;
use super::pairwise::{Judge, ask_all};
use crate::error::{Error, Result};
use crate::eval::{EvalInput, Evaluator};
use crate::model::{ResultStatus, Score, VersionRef};
use crate::stats::Kappa;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// People's verdict on each row id, from a CSV or JSONL file with `id` and `label` (pass / fail,
/// true / false, yes / no, 1 / 0) or `score` (0 to 1; at least 0.5 passes).
pub fn read_labels(path: &Path) -> Result<BTreeMap<String, bool>> {
    let shown = path.display();
    let rows = crate::dataset::rows(path).map_err(|e| {
        Error::invalid(format!("--labels {shown}: {e}")).with_hint(
            "a CSV or JSONL file with an id column and a label (pass/fail) or score (0..1) column",
        )
    })?;
    let mut labels = BTreeMap::new();
    for row in rows {
        let row = row.map_err(|e| Error::invalid(format!("--labels {shown}: {e}")))?;
        if !row.values.contains_key("id") {
            return Err(Error::invalid(format!(
                "--labels {shown}: there is no id column naming each row"
            ))
            .with_hint(
                "the ids are the experiment's row ids (`runner experiment show ID --rows`)",
            ));
        }
        let verdict = match (row.values.get("label"), row.values.get("score")) {
            (Some(label), _) => label_of(label),
            (None, Some(score)) => score_of(score),
            (None, None) => {
                return Err(Error::invalid(format!(
                    "--labels {shown}: there is no label or score column"
                ))
                .with_hint("label: pass/fail (or true/false, yes/no, 1/0); score: 0 to 1"));
            }
        }
        .ok_or_else(|| {
            Error::invalid(format!(
                "--labels {shown}, row {}: cannot read {} as pass or fail",
                row.id,
                row.values
                    .get("label")
                    .or_else(|| row.values.get("score"))
                    .map(Value::to_string)
                    .unwrap_or_default()
            ))
            .with_hint("label: pass/fail, true/false, yes/no or 1/0; score: a number from 0 to 1")
        })?;
        if labels.insert(row.id.clone(), verdict).is_some() {
            return Err(Error::invalid(format!(
                "--labels {shown}: row {} is labelled twice",
                row.id
            )));
        }
    }
    Ok(labels)
}

fn label_of(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "pass" | "passed" | "true" | "yes" | "1" | "good" => Some(true),
            "fail" | "failed" | "false" | "no" | "0" | "bad" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn score_of(value: &Value) -> Option<bool> {
    let x = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (0.0..=1.0).contains(&x).then_some(x >= 0.5)
}

/// A row where the evaluator and people disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    pub row_id: String,
    pub people: bool,
    pub evaluator: bool,
    pub reason: String,
}

/// The two-by-two table: the evaluator's verdict first, people's second.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub both_pass: u64,
    pub evaluator_pass_people_fail: u64,
    pub evaluator_fail_people_pass: u64,
    pub both_fail: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub evaluator: String,
    pub experiment: String,
    /// Rows with a label and a verdict.
    pub rows: u64,
    pub table: Table,
    /// None when kappa is undefined (both put every row in one category).
    pub kappa: Option<Kappa>,
    pub confidence: f64,
    /// Labelled rows the evaluator could not judge (its call failed, the answer errored).
    pub unjudged: u64,
    /// Labels naming a row the experiment does not have.
    pub unmatched_labels: u64,
    pub disagreements: Vec<Disagreement>,
}

/// Runs `spec` on the experiment's answers (first repetition) of the labelled rows.
pub fn agreement(
    ctx: &Context,
    experiment: &str,
    spec: &str,
    labels: &BTreeMap<String, bool>,
    judge: &Judge,
    confidence: f64,
) -> Result<Agreement> {
    if spec.trim_start().starts_with("pairwise") {
        return Err(Error::invalid(
            "judge agreement checks an evaluator of one answer; a pairwise judge compares two",
        )
        .with_hint("use --eval judge:RUBRIC_FILE (or any --eval spec but pairwise)"));
    }
    let evaluator = Evaluator::prepare(spec).map_err(|e| {
        Error::invalid(e.to_string()).with_hint(format!("evaluators: {}", crate::eval::KINDS))
    })?;
    let store = ctx.store()?;
    let experiment = store.experiment(experiment)?;
    let tools = match experiment.judged() {
        Some((prompt, id, _)) => store
            .version(prompt, &VersionRef::Id(id.to_string()))
            .ok()
            .and_then(|v| v.params.get("tools").cloned()),
        None => None,
    };
    let mut answered = Vec::new();
    let mut unjudged = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    crate::store::visit_results(&*store, &experiment.id, |r| -> Result<()> {
        if r.repetition != 0 || !labels.contains_key(&r.row_id) {
            return Ok(());
        }
        seen.insert(r.row_id.clone());
        if r.status == ResultStatus::Ok {
            answered.push(r);
        } else {
            unjudged += 1;
        }
        Ok(())
    })?;
    let unmatched_labels = labels.keys().filter(|id| !seen.contains(*id)).count() as u64;
    if answered.is_empty() {
        return Err(Error::invalid(format!(
            "none of the {} labelled rows has an answer in experiment {}",
            labels.len(),
            experiment.id
        ))
        .with_hint(
            "the labels' ids are the experiment's row ids (`runner experiment show ID --rows`)",
        ));
    }
    // What the evaluator compares with must be there, as `runner experiment` checks before a
    // run: else every row would be an error and nothing would be measured.
    if evaluator.needs_expected() && answered.iter().all(|r| r.expected.is_none()) {
        return Err(Error::invalid(format!(
            "evaluator '{spec}' compares with an expected answer, and experiment {} recorded none",
            experiment.id
        ))
        .with_hint("use an evaluator that reads the answer alone (a judge, regex, json, cmd:)"));
    }
    if evaluator.needs_expected_tool_calls()
        && answered
            .iter()
            .all(|r| !r.vars.contains_key("expected_tool_calls"))
    {
        return Err(Error::invalid(format!(
            "evaluator '{spec}' compares with an expected_tool_calls column, and experiment {}'s rows have none",
            experiment.id
        ))
        .with_hint("use an evaluator that reads the answer alone (a judge, regex, json, cmd:)"));
    }
    let calls: Vec<_> = answered
        .iter()
        .map(|r| crate::tool_calls::of_extra(r.extra.as_ref()))
        .collect();
    let input_of = |i: usize| EvalInput {
        vars: &answered[i].vars,
        output: answered[i].output.as_deref().unwrap_or(""),
        expected: answered[i].expected.as_deref(),
        latency_ms: answered[i].latency_ms,
        tool_calls: &calls[i],
        tools: tools.as_ref(),
    };
    let messages: Vec<Option<Vec<crate::model::Message>>> = (0..answered.len())
        .map(|i| evaluator.judge_messages(&input_of(i)))
        .collect();
    let model = judge
        .model
        .clone()
        .unwrap_or_else(|| experiment.model.clone());
    let judge_calls: Vec<Vec<crate::model::Message>> =
        messages.iter().filter_map(Clone::clone).collect();
    let replies = if judge_calls.is_empty() {
        Vec::new()
    } else {
        let valid = |text: &str| !evaluator.judge_verdict(text).error;
        super::experiment::runtime()?.block_on(ask_all(&store, judge, &model, judge_calls, &valid))
    };
    let mut replies = replies.into_iter();
    let mut table = Table {
        both_pass: 0,
        evaluator_pass_people_fail: 0,
        evaluator_fail_people_pass: 0,
        both_fail: 0,
    };
    let mut disagreements = Vec::new();
    // The first row the evaluator could not judge: whether a judge call failed, the row, why.
    let mut first_error: Option<(bool, String, String)> = None;
    for (i, r) in answered.iter().enumerate() {
        let failed = |reason: String| Score {
            evaluator: evaluator.name().to_string(),
            score: 0.0,
            pass: false,
            reason,
            error: true,
        };
        let score: Score = match &messages[i] {
            Some(_) => match replies.next() {
                Some(Ok(text)) => evaluator.judge_verdict(&text),
                Some(Err(e)) => failed(e),
                None => failed("no reply".into()),
            },
            None => evaluator.score(&input_of(i)),
        };
        if score.error {
            unjudged += 1;
            first_error.get_or_insert((messages[i].is_some(), r.row_id.clone(), score.reason));
            continue;
        }
        let people = labels[&r.row_id];
        match (score.pass, people) {
            (true, true) => table.both_pass += 1,
            (true, false) => table.evaluator_pass_people_fail += 1,
            (false, true) => table.evaluator_fail_people_pass += 1,
            (false, false) => table.both_fail += 1,
        }
        if score.pass != people {
            disagreements.push(Disagreement {
                row_id: r.row_id.clone(),
                people,
                evaluator: score.pass,
                reason: score.reason.clone(),
            });
        }
    }
    let judged = table.both_pass
        + table.evaluator_pass_people_fail
        + table.evaluator_fail_people_pass
        + table.both_fail;
    if judged == 0
        && let Some((called, row, reason)) = first_error
    {
        // Nothing was measured: an agreement of no rows would read as an answer.
        let message = format!(
            "the evaluator judged none of the {} labelled rows with an answer (row {row}: {reason})",
            answered.len()
        );
        return Err(if called {
            Error::operational(message)
                .with_hint("check the judge's endpoint and model, then run the command again")
        } else {
            Error::invalid(message).with_hint("use an evaluator these rows can be judged by")
        });
    }
    let kappa = crate::stats::cohens_kappa(
        &[
            [table.both_pass, table.evaluator_pass_people_fail],
            [table.evaluator_fail_people_pass, table.both_fail],
        ],
        confidence,
    );
    Ok(Agreement {
        evaluator: spec.to_string(),
        experiment: experiment.id.clone(),
        rows: judged,
        table,
        kappa,
        confidence,
        unjudged,
        unmatched_labels,
        disagreements,
    })
}
