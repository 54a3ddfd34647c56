//! A versus B on two stored experiments: for each row both ran, the two answers go to a judge
//! model in both orders, through the response cache (a judgment already made is read back, so
//! an interrupted comparison resumes and a repeated one costs nothing), and the outcomes are
//! tallied (`domain::pairwise`). It must not print.

use super::Context;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::model::{CachedResponse, Experiment, JsonObject, ResultStatus};
use crate::pairwise::{self, Outcome, Pick, Tally};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One `--eval pairwise[:RUBRIC_FILE]`.
#[derive(Debug, Clone)]
pub struct Spec {
    /// As given: `pairwise` or `pairwise:FILE`.
    pub name: String,
    pub rubric: String,
}

/// Takes the pairwise specs out of `evals` (the rest stay for the experiments), each rubric
/// read now: an unreadable or empty file is an input error before anything runs.
pub fn take_specs(evals: &mut Vec<String>) -> Result<Vec<Spec>> {
    let mut specs = Vec::new();
    let mut rest = Vec::new();
    for spec in evals.drain(..) {
        let (kind, file) = match spec.split_once(':') {
            Some((kind, file)) => (kind.trim(), Some(file.trim())),
            None => (spec.trim(), None),
        };
        if kind != "pairwise" {
            rest.push(spec);
            continue;
        }
        let rubric = match file {
            None => pairwise::DEFAULT_RUBRIC.to_string(),
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    Error::invalid(format!(
                        "evaluator '{spec}': cannot read rubric file '{file}': {e}"
                    ))
                    .with_hint(
                        "pairwise:FILE names a text file; plain `pairwise` uses runner's rubric",
                    )
                })?;
                if text.trim().is_empty() {
                    return Err(Error::invalid(format!(
                        "evaluator '{spec}': rubric file '{file}' is empty"
                    )));
                }
                text
            }
        };
        specs.push(Spec { name: spec, rubric });
    }
    *evals = rest;
    Ok(specs)
}

/// Where the judge is asked.
pub struct Judge {
    pub client: Client,
    /// None: the candidate experiment's model.
    pub model: Option<String>,
    pub concurrency: usize,
}

/// A promotion's pairwise criterion: the judges, where they ask, and the lowest win rate the
/// interval's lower bound may have.
pub struct Gate {
    pub specs: Vec<Spec>,
    pub judge: Judge,
    pub min_win_rate: f64,
}

/// One row both sides answered, as the judge decided it.
#[derive(Debug, Clone, Serialize)]
pub struct JudgedRow {
    pub row_id: String,
    pub input: String,
    pub baseline_output: String,
    pub candidate_output: String,
    /// The pick with the candidate shown first (as A), and its reason.
    pub candidate_first: Pick,
    pub candidate_first_reason: String,
    /// The pick with the baseline shown first.
    pub baseline_first: Pick,
    pub baseline_first_reason: String,
    pub outcome: Outcome,
}

/// What one pairwise evaluator found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub evaluator: String,
    pub judge_model: String,
    #[serde(flatten)]
    pub tally: Tally,
    /// Rows whose judge call failed or answered no verdict: not counted.
    pub errors: u64,
    /// The first error, to say why.
    pub first_error: Option<String>,
    /// Rows only one side answered (or errored on either side): not judged.
    pub unpaired: u64,
    pub judged: Vec<JudgedRow>,
}

/// Judges every row both experiments answered (their first repetition), with each spec.
pub fn judge(
    ctx: &Context,
    specs: &[Spec],
    baseline: &Experiment,
    candidate: &Experiment,
    judge: &Judge,
    confidence: f64,
) -> Result<Vec<Report>> {
    let store = ctx.store()?;
    let answers = |e: &Experiment| -> Result<BTreeMap<String, (String, String)>> {
        let mut out = BTreeMap::new();
        crate::store::visit_results(&*store, &e.id, |r| -> Result<()> {
            if r.repetition == 0 && r.status == ResultStatus::Ok {
                let text = crate::tool_calls::with_answer(
                    r.output.as_deref().unwrap_or(""),
                    r.extra.as_ref(),
                );
                let input = serde_json::to_string(&r.vars).unwrap_or_default();
                out.insert(r.row_id.clone(), (input, text));
            }
            Ok(())
        })?;
        Ok(out)
    };
    let (base, cand) = (answers(baseline)?, answers(candidate)?);
    let rows: Vec<(String, String, String, String)> = cand
        .iter()
        .filter_map(|(id, (input, c))| {
            base.get(id)
                .map(|(_, b)| (id.clone(), input.clone(), b.clone(), c.clone()))
        })
        .collect();
    let unpaired = (base.len().max(cand.len()) - rows.len()) as u64;
    if rows.is_empty() {
        return Err(Error::invalid(format!(
            "experiments {} and {} have no row both answered: there is nothing to judge side by side",
            baseline.id, candidate.id
        )));
    }
    let model = judge
        .model
        .clone()
        .unwrap_or_else(|| candidate.model.clone());
    let runtime = super::experiment::runtime()?;
    let mut reports = Vec::new();
    for spec in specs {
        let calls: Vec<_> = rows
            .iter()
            .flat_map(|(_, input, b, c)| {
                [
                    pairwise::messages(&spec.rubric, input, c, b),
                    pairwise::messages(&spec.rubric, input, b, c),
                ]
            })
            .collect();
        let replies = runtime.block_on(ask_all(&store, judge, &model, calls));
        let mut judged = Vec::new();
        let (mut errors, mut first_error) = (0u64, None);
        for ((id, input, b, c), pair) in rows.iter().zip(replies.chunks(2)) {
            let read = |reply: &std::result::Result<String, String>| {
                reply.as_ref().map_err(Clone::clone).and_then(|text| {
                    pairwise::parse(text).map_err(|e| {
                        format!(
                            "unreadable verdict: {e}; reply was \"{}\"",
                            crate::text::one_line(text, 80)
                        )
                    })
                })
            };
            match (read(&pair[0]), read(&pair[1])) {
                (Ok((cf, cf_reason)), Ok((bf, bf_reason))) => judged.push(JudgedRow {
                    row_id: id.clone(),
                    input: input.clone(),
                    baseline_output: b.clone(),
                    candidate_output: c.clone(),
                    candidate_first: cf,
                    candidate_first_reason: cf_reason,
                    baseline_first: bf,
                    baseline_first_reason: bf_reason,
                    outcome: pairwise::outcome(cf, bf),
                }),
                (Err(e), _) | (_, Err(e)) => {
                    errors += 1;
                    first_error.get_or_insert(format!("row {id}: {e}"));
                }
            }
        }
        let outcomes: Vec<Outcome> = judged.iter().map(|j| j.outcome).collect();
        reports.push(Report {
            evaluator: spec.name.clone(),
            judge_model: model.clone(),
            tally: pairwise::tally(&outcomes, confidence),
            errors,
            first_error,
            unpaired,
            judged,
        });
    }
    Ok(reports)
}

/// Every request, at most `concurrency` at once, each answered from the cache when it holds
/// the same request already; new answers are kept for next time. In the order given.
pub(super) async fn ask_all(
    store: &Arc<dyn crate::store::Store>,
    judge: &Judge,
    model: &str,
    calls: Vec<Vec<crate::model::Message>>,
) -> Vec<std::result::Result<String, String>> {
    use futures::StreamExt;
    let mut params = JsonObject::new();
    params.insert("temperature".into(), json!(0));
    futures::stream::iter(calls.into_iter().map(|messages| {
        let body = crate::client::request_body(model, &messages, &params);
        let store = Arc::clone(store);
        async move {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let key = crate::engine::cache_key(judge.client.base_url(), &bytes, "pairwise", 0);
            let cached = {
                let (store, key) = (Arc::clone(&store), key.clone());
                tokio::task::spawn_blocking(move || store.cached_response(&key))
                    .await
                    .ok()
                    .and_then(|found| found.ok().flatten())
            };
            if let Some(hit) = cached {
                return Ok(hit.output);
            }
            match judge.client.complete(&body).await {
                Ok(reply) => {
                    let entry = CachedResponse {
                        output: reply.text.clone(),
                        finish_reason: reply.finish_reason.clone(),
                        prompt_tokens: reply.prompt_tokens,
                        completion_tokens: reply.completion_tokens,
                        http_status: Some(reply.http_status),
                        latency_ms: reply.latency_ms,
                        created_at: crate::model::now(),
                    };
                    let at = entry.created_at.clone();
                    // A judgment that cannot be kept is asked again next time; this one stands.
                    let _ = tokio::task::spawn_blocking(move || {
                        store.restore_cache(&[(key, entry, at)])
                    })
                    .await;
                    Ok(reply.text)
                }
                Err(failure) => Err(format!("the judge call failed: {}", failure.message)),
            }
        }
    }))
    .buffered(judge.concurrency.max(1))
    .collect()
    .await
}
