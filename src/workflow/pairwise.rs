//! A versus B on two stored experiments: for each row both ran, the two answers go to a judge
//! model in both orders, through the response cache (a readable judgment already made is read
//! back, so an interrupted comparison resumes and a repeated one costs nothing), and the
//! outcomes are tallied (`domain::pairwise`). It must not print.

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
    /// `--no-cache` neither reads nor keeps judgments; `--fresh` keeps but never reads them.
    pub cache: crate::engine::CacheUse,
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

/// Judges every row both experiments have (their first repetition), with each spec. A row one
/// side answered and the other errored is decided without the judge (the side that errored
/// loses; both errored: a tie), so errors never drop out of the win rate.
pub fn judge(
    ctx: &Context,
    specs: &[Spec],
    baseline: &Experiment,
    candidate: &Experiment,
    judge: &Judge,
    confidence: f64,
) -> Result<Vec<Report>> {
    let store = ctx.store()?;
    // Row id → (input, Some(answer) or None when it errored).
    type Answers = BTreeMap<String, (String, Option<String>)>;
    let answers = |e: &Experiment| -> Result<Answers> {
        let mut out = BTreeMap::new();
        crate::store::visit_results(&*store, &e.id, |r| -> Result<()> {
            if r.repetition == 0 {
                let text = (r.status == ResultStatus::Ok).then(|| {
                    crate::tool_calls::with_answer(
                        r.output.as_deref().unwrap_or(""),
                        r.extra.as_ref(),
                    )
                });
                let input = serde_json::to_string(&r.vars).unwrap_or_default();
                out.insert(r.row_id.clone(), (input, text));
            }
            Ok(())
        })?;
        Ok(out)
    };
    let (base, cand) = (answers(baseline)?, answers(candidate)?);
    let unpaired = base.keys().filter(|id| !cand.contains_key(*id)).count()
        + cand.keys().filter(|id| !base.contains_key(*id)).count();
    let mut rows = Vec::new();
    let mut errored = Vec::new();
    for (id, (input, c)) in &cand {
        let Some((_, b)) = base.get(id) else {
            continue;
        };
        match (b, c) {
            (Some(b), Some(c)) => rows.push((id.clone(), input.clone(), b.clone(), c.clone())),
            (b, c) => errored.push((id.clone(), input.clone(), b.clone(), c.clone())),
        }
    }
    if rows.is_empty() && errored.is_empty() {
        return Err(Error::invalid(format!(
            "experiments {} and {} have no row in common: there is nothing to judge side by side",
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
        let valid = |text: &str| pairwise::parse(text).is_ok();
        let replies = runtime.block_on(ask_all(&store, judge, &model, calls, &valid));
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
        // An errored answer loses to any answer; two errored answers tie.
        for (id, input, b, c) in &errored {
            let (pick, why) = match (b, c) {
                (Some(_), None) => (Pick::B, "the candidate's call errored"),
                (None, Some(_)) => (Pick::A, "the baseline's call errored"),
                _ => (Pick::Tie, "both calls errored"),
            };
            let (cf, bf) = match pick {
                Pick::A => (Pick::A, Pick::B),
                Pick::B => (Pick::B, Pick::A),
                Pick::Tie => (Pick::Tie, Pick::Tie),
            };
            judged.push(JudgedRow {
                row_id: id.clone(),
                input: input.clone(),
                baseline_output: b.clone().unwrap_or_else(|| "(error)".into()),
                candidate_output: c.clone().unwrap_or_else(|| "(error)".into()),
                candidate_first: cf,
                candidate_first_reason: why.into(),
                baseline_first: bf,
                baseline_first_reason: why.into(),
                outcome: pairwise::outcome(cf, bf),
            });
        }
        let outcomes: Vec<Outcome> = judged.iter().map(|j| j.outcome).collect();
        reports.push(Report {
            evaluator: spec.name.clone(),
            judge_model: model.clone(),
            tally: pairwise::tally(&outcomes, confidence),
            errors,
            first_error,
            unpaired: unpaired as u64,
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
    valid: &(dyn Fn(&str) -> bool + Sync),
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
            let cached = if judge.cache.read {
                let (store, key) = (Arc::clone(&store), key.clone());
                tokio::task::spawn_blocking(move || store.cached_response(&key))
                    .await
                    .ok()
                    .and_then(|found| found.ok().flatten())
            } else {
                None
            };
            // Only a reply that reads as a verdict was kept; an older unreadable one is asked
            // again.
            if let Some(hit) = cached.filter(|hit| valid(&hit.output)) {
                return Ok(hit.output);
            }
            match judge.client.complete(&body).await {
                Ok(reply) if !judge.cache.write || !valid(&reply.text) => Ok(reply.text),
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
