//! One row × repetition from start to result: the variables it renders with, the request (or
//! the cached answer standing for it), the scores and judge calls, and the key scrubbed from
//! whatever is kept. It owns what one result says; it must not store results, hold streaks or
//! wait on the concurrency gate: it only flags a stop on `Shared` (the dispatcher, the breaker
//! and the writer do the rest).

use super::breaker::endpoint_gone;
use super::cache::{cache_key, cached_response, entry_age};
use super::state::Shared;
use super::{Plan, Stop};
use crate::client::{Completion, Failure, FailureKind, request_body};
use crate::dataset::Row;
use crate::eval::{EvalInput, Evaluator};
use crate::model::{JsonObject, Message, ResultStatus, RunResult, Score};
use crate::template::lookup;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// The variables a row renders with: its columns, `--column` renames, then `--var` constants.
fn row_vars(row: &Row, plan: &Plan) -> JsonObject {
    vars_of(&row.values, &plan.experiment.settings)
}

/// The variables a row's values render with under `settings`: the columns, `--column`
/// renames, then `--var` constants.
pub fn vars_of(values: &JsonObject, settings: &crate::model::RunSettings) -> JsonObject {
    let mut vars = values.clone();
    for (var, column) in &settings.columns {
        if let Some(value) = lookup(values, column).cloned() {
            vars.insert(var.clone(), value);
        }
    }
    for (key, value) in &settings.vars {
        vars.insert(key.clone(), value.clone());
    }
    vars
}

fn expected_of(row: &Row, plan: &Plan) -> Option<String> {
    let column = plan.experiment.settings.expected_column.as_deref()?;
    match lookup(&row.values, column)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Runs one row × repetition; None when the request was not sent because the budget would not
/// cover it (the run stops; the row is left for a resume). With the result comes, when its
/// call found no endpoint, why (for the breaker).
pub(super) async fn process(
    shared: &Shared,
    row: &Row,
    repetition: usize,
) -> Option<(RunResult, Option<String>)> {
    let plan = &shared.plan;
    let started_at = crate::model::now();
    let vars = row_vars(row, plan);
    let expected = expected_of(row, plan);
    let mut result = RunResult {
        row_index: row.index as i64,
        row_id: row.id.clone(),
        repetition: repetition as i64,
        vars,
        expected,
        messages: Vec::new(),
        output: None,
        finish_reason: None,
        status: ResultStatus::Error,
        error_kind: None,
        error_message: None,
        http_status: None,
        attempts: 0,
        latency_ms: 0.0,
        prompt_tokens: None,
        completion_tokens: None,
        cached: false,
        started_at,
        finished_at: String::new(),
        scores: Vec::new(),
        cache_key: None,
        extra: None,
    };
    let outcome = match plan.template.render(&result.vars) {
        Err(e) => Err(Failure {
            kind: FailureKind::InvalidResponse,
            message: e.to_string(),
            http_status: None,
            attempts: 0,
            latency_ms: 0.0,
        }),
        Ok(messages) if turns_of(&result.vars).is_some() => {
            run_turns(shared, messages, repetition, &mut result).await
        }
        Ok(messages) => {
            let body = request_body(&plan.experiment.model, &messages, &plan.version.params);
            let asked = plan.target.as_ref().map(|_| {
                crate::engine::target::request(
                    &result.row_id,
                    repetition,
                    &result.vars,
                    &messages,
                    &plan.experiment.model,
                    &plan.version.params,
                    &plan.version,
                    plan.experiment.tag.as_deref(),
                )
            });
            result.messages = messages;
            call(shared, &body, asked.as_ref(), repetition, &mut result).await
        }
    };
    let mut gone = None;
    match outcome {
        Ok(completion) => {
            shared.any_ok.store(true, Ordering::Relaxed);
            result.status = ResultStatus::Ok;
            result.output = Some(completion.text);
            result.finish_reason = completion.finish_reason;
            result.http_status = Some(completion.http_status);
            result.attempts = completion.attempts;
            result.latency_ms = completion.latency_ms;
            result.prompt_tokens = completion.prompt_tokens;
            result.completion_tokens = completion.completion_tokens;
            result.extra = completion.extra;
            // The cache keeps an answer's text, not its tool calls: an answer that carries
            // calls is not kept, so a later run never reads it back without them.
            if result.extra.is_some() {
                result.cache_key = None;
            }
            let (scores, per_turn) = score(shared, &result).await;
            result.scores = scores;
            if let (Some(per_turn), Some(Value::Array(turns))) = (
                per_turn,
                result.extra.as_mut().and_then(|e| e.get_mut(TURNS)),
            ) {
                for (turn, scores) in turns.iter_mut().zip(per_turn) {
                    turn["scores"] = json!(
                        scores
                            .iter()
                            .map(|s| json!({"evaluator": s.evaluator, "pass": s.pass,
                                            "score": s.score, "reason": s.reason, "error": s.error}))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        Err(failure) if failure.kind == FailureKind::Budget => {
            shared.halt(Stop::Budget);
            return None;
        }
        Err(failure) => {
            // Before any answer, a refused key or an endpoint that cannot be reached is a
            // setup problem: stop instead of failing every row the same way.
            if !shared.any_ok.load(Ordering::Relaxed) {
                match failure.kind {
                    FailureKind::Auth => shared.halt(Stop::Auth(failure.message.clone())),
                    FailureKind::Unreachable => {
                        shared.halt(Stop::Unreachable(failure.message.clone()))
                    }
                    // The same refusal again and again before any answer (a misspelled model,
                    // a proxy without a key behind it): every row would fail the same way.
                    FailureKind::Http | FailureKind::InvalidResponse => {
                        if shared.same_failure(failure.http_status, &failure.message) {
                            shared.halt(Stop::Rejected(failure.message.clone()));
                        }
                    }
                    FailureKind::Timeout | FailureKind::Connection | FailureKind::Budget => {}
                }
            }
            if endpoint_gone(&failure) {
                gone = Some(failure.message.clone());
            }
            // A template that cannot render this row never reached the endpoint.
            result.error_kind = Some(if result.messages.is_empty() {
                "render".to_string()
            } else {
                failure.kind.as_str().to_string()
            });
            result.error_message = Some(failure.message);
            result.http_status = failure.http_status;
            result.attempts = failure.attempts;
            result.latency_ms = failure.latency_ms;
            result.scores = plan
                .evaluators
                .iter()
                .map(|e| Score::call_failed(e.name()))
                .collect();
        }
    }
    result.finished_at = crate::model::now();
    if let Some(key) = crate::redact::key(plan.client.api_key()) {
        scrub(&mut result, key);
    }
    let counters = &shared.counters;
    counters.done.fetch_add(1, Ordering::Relaxed);
    if result.status == ResultStatus::Error {
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    if result.cached {
        counters.cached.fetch_add(1, Ordering::Relaxed);
    }
    Some((result, gone))
}

/// The last line of defence for the key: an answer, an error or a scorer's reason that repeats
/// it (an echoing endpoint, a scorer that prints its environment) is stored without it.
fn scrub(result: &mut RunResult, key: &str) {
    let clean = |text: &mut String| {
        if text.contains(key) {
            *text = crate::redact::apply(text, key);
        }
    };
    for text in [
        &mut result.output,
        &mut result.error_message,
        &mut result.expected,
    ]
    .into_iter()
    .flatten()
    {
        clean(text);
    }
    fn clean_value(value: &mut Value, clean: &dyn Fn(&mut String)) {
        match value {
            Value::String(text) => clean(text),
            Value::Array(items) => items.iter_mut().for_each(|v| clean_value(v, clean)),
            Value::Object(map) => map.values_mut().for_each(|v| clean_value(v, clean)),
            _ => {}
        }
    }
    for value in result.vars.values_mut() {
        clean_value(value, &clean);
    }
    for score in &mut result.scores {
        clean(&mut score.reason);
    }
    for message in &mut result.messages {
        clean(&mut message.content);
    }
}

/// The answer from the cache when it is there, else from the target (`asked` is its request)
/// or the endpoint.
async fn call(
    shared: &Shared,
    body: &Value,
    asked: Option<&Value>,
    repetition: usize,
    result: &mut RunResult,
) -> Result<Completion, Failure> {
    let plan = &shared.plan;
    if let Some(cache) = &shared.cache {
        // A target's answers are kept apart from the endpoint's, by its spec and request.
        let (answerer, request) = match (&plan.target, asked) {
            (Some(target), Some(asked)) => (target.spec(), asked),
            _ => (plan.client.base_url(), body),
        };
        let bytes = serde_json::to_vec(request).unwrap_or_default();
        let key = cache_key(answerer, &bytes, &result.row_id, repetition);
        let hit = if plan.cache.read {
            cached_response(cache, &key).await
        } else {
            None
        };
        let hit = hit.and_then(|hit| {
            let age = entry_age(&hit.created_at)?;
            plan.cache
                .max_age
                .is_none_or(|max| age <= max)
                .then_some((hit, age))
        });
        if let Some((hit, age)) = hit {
            shared.counters.note_cache_age(age);
            result.cached = true;
            return Ok(Completion {
                text: hit.output,
                finish_reason: hit.finish_reason,
                prompt_tokens: hit.prompt_tokens,
                completion_tokens: hit.completion_tokens,
                http_status: hit.http_status.unwrap_or(200),
                attempts: 0,
                latency_ms: hit.latency_ms,
                extra: None,
            });
        }
        if plan.cache.write {
            result.cache_key = Some(key);
        }
    }
    // A cached answer costs nothing; a call holds its estimated cost until it is answered.
    // Once runner's own mock has answered, nothing is held: it charges nothing.
    let reservation = match &plan.budget {
        Some(budget) if !plan.client.answered_by_mock() => {
            let (prompt, completion) = plan.client.estimate(body);
            match budget.reserve_waiting(prompt, completion).await {
                Some(reservation) => Some((budget, reservation)),
                None => {
                    return Err(Failure {
                        kind: FailureKind::Budget,
                        message: format!(
                            "not sent: it would take the run past --max-cost {}",
                            crate::cost::usd(budget.max_usd)
                        ),
                        http_status: None,
                        attempts: 0,
                        latency_ms: 0.0,
                    });
                }
            }
        }
        _ => None,
    };
    let answer = match (&plan.target, asked) {
        (Some(target), Some(asked)) => {
            // `--max-rpm` / `--max-tpm` pace a target's rows as they pace an endpoint's calls.
            let (prompt, completion) = plan.client.estimate(body);
            plan.client.throttle().pace(prompt + completion).await;
            target.call(asked).await
        }
        _ => plan.client.complete(body).await,
    };
    if let Some((budget, reservation)) = reservation {
        match &answer {
            // runner's own mock charges nothing.
            Ok(_) if plan.client.answered_by_mock() => budget.release(reservation),
            Ok(c) => budget.settle(reservation, c.prompt_tokens.zip(c.completion_tokens)),
            Err(_) => budget.release(reservation),
        }
    }
    answer
}

/// The user messages of a multi-turn row (its `turns` column: a JSON list of texts, or its
/// text in a CSV cell); None for a row of one turn. A malformed list is refused before the run
/// (`workflow::experiment::prepare`); here it reads as an error.
pub fn turns_of(vars: &JsonObject) -> Option<Result<Vec<String>, String>> {
    let value = vars.get(TURNS)?;
    let parsed;
    let list = match value {
        Value::Null => return None,
        Value::String(text) if text.trim().is_empty() => return None,
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => {
                parsed = v;
                &parsed
            }
            Err(e) => return Some(Err(format!("not a JSON list of user messages ({e})"))),
        },
        other => other,
    };
    let Some(items) = list.as_array() else {
        return Some(Err("not a JSON list of user messages".into()));
    };
    if items.is_empty() {
        return Some(Err("an empty list: a row needs at least one turn".into()));
    }
    Some(
        items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("turn {} is not text", i + 1))
            })
            .collect(),
    )
}

/// The column of a multi-turn row's user messages, and of each turn's expected answer.
pub const TURNS: &str = "turns";
pub const EXPECTED_TURNS: &str = "expected_turns";

/// Runs a multi-turn row: each turn's user message is appended to the conversation so far and
/// sent, its answer appended before the next. The row's output is the last answer; each turn's
/// message and answer are kept in `extra.turns` (scored per turn by `score`). A turn that fails
/// fails the row, naming the turn.
async fn run_turns(
    shared: &Shared,
    mut messages: Vec<Message>,
    repetition: usize,
    result: &mut RunResult,
) -> Result<Completion, Failure> {
    let plan = &shared.plan;
    let turns = match turns_of(&result.vars) {
        Some(Ok(turns)) => turns,
        Some(Err(e)) => {
            return Err(Failure {
                kind: FailureKind::InvalidResponse,
                message: format!("{TURNS}: {e}"),
                http_status: None,
                attempts: 0,
                latency_ms: 0.0,
            });
        }
        None => Vec::new(),
    };
    let mut done: Vec<Value> = Vec::with_capacity(turns.len());
    let (mut latency, mut attempts) = (0.0, 0u32);
    let (mut prompt_tokens, mut completion_tokens) = (Some(0i64), Some(0i64));
    let mut last = None;
    for (k, turn) in turns.iter().enumerate() {
        messages.push(Message::text("user", turn.clone()));
        let body = request_body(&plan.experiment.model, &messages, &plan.version.params);
        let asked = plan.target.as_ref().map(|_| {
            crate::engine::target::request(
                &result.row_id,
                repetition,
                &result.vars,
                &messages,
                &plan.experiment.model,
                &plan.version.params,
                &plan.version,
                plan.experiment.tag.as_deref(),
            )
        });
        result.messages = messages.clone();
        let completion = call(shared, &body, asked.as_ref(), repetition, result)
            .await
            .map_err(|mut failure| {
                failure.message = format!("turn {}: {}", k + 1, failure.message);
                failure
            })?;
        latency += completion.latency_ms;
        attempts += completion.attempts;
        prompt_tokens = prompt_tokens
            .zip(completion.prompt_tokens)
            .map(|(a, b)| a + b);
        completion_tokens = completion_tokens
            .zip(completion.completion_tokens)
            .map(|(a, b)| a + b);
        done.push(
            json!({"turn": k + 1, "user": turn, "output": completion.text,
                         "latency_ms": completion.latency_ms}),
        );
        messages.push(Message::text("assistant", completion.text.clone()));
        last = Some(completion);
    }
    result.messages = messages;
    // Only the last turn's answer would be kept under its request; a conversation is asked
    // again as a whole.
    result.cache_key = None;
    let mut last = last.ok_or_else(|| Failure {
        kind: FailureKind::InvalidResponse,
        message: format!("{TURNS}: no turn to run"),
        http_status: None,
        attempts: 0,
        latency_ms: 0.0,
    })?;
    let mut extra = last.extra.take().unwrap_or_default();
    extra.insert(TURNS.into(), Value::Array(done));
    Ok(Completion {
        latency_ms: latency,
        attempts,
        prompt_tokens,
        completion_tokens,
        extra: Some(extra),
        ..last
    })
}

/// The row's scores; for a multi-turn row, also each turn's (kept in `extra.turns`).
async fn score(shared: &Shared, result: &RunResult) -> (Vec<Score>, Option<Vec<Vec<Score>>>) {
    let turns: Vec<(String, Option<String>)> = match result
        .extra
        .as_ref()
        .and_then(|e| e.get(TURNS))
        .and_then(Value::as_array)
    {
        None => {
            let output = result.output.as_deref().unwrap_or("");
            return (
                score_one(shared, result, output, result.expected.as_deref()).await,
                None,
            );
        }
        Some(turns) => {
            let expected: Vec<Option<String>> = match result.vars.get(EXPECTED_TURNS) {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect(),
                Some(Value::String(text)) => serde_json::from_str::<Vec<Value>>(text)
                    .map(|items| {
                        items
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let count = turns.len();
            turns
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    let output = t
                        .get("output")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    // Without expected_turns, the row's expected answer is the last turn's.
                    let want = if expected.is_empty() {
                        (k + 1 == count).then(|| result.expected.clone()).flatten()
                    } else {
                        expected.get(k).cloned().flatten()
                    };
                    (output, want)
                })
                .collect()
        }
    };
    let mut per_turn = Vec::with_capacity(turns.len());
    for (output, expected) in &turns {
        per_turn.push(score_one(shared, result, output, expected.as_deref()).await);
    }
    // The row's verdict per evaluator: every turn passes; its score the mean; a turn the
    // evaluator could not judge makes the row's verdict an error.
    let row = shared
        .plan
        .evaluators
        .iter()
        .enumerate()
        .map(|(e, evaluator)| {
            let scores: Vec<&Score> = per_turn.iter().map(|s| &s[e]).collect();
            let failed = scores.iter().enumerate().find(|(_, s)| !s.pass || s.error);
            Score {
                evaluator: evaluator.name().to_string(),
                score: scores.iter().map(|s| s.score).sum::<f64>() / scores.len().max(1) as f64,
                pass: failed.is_none(),
                reason: match failed {
                    Some((k, s)) => format!("turn {}: {}", k + 1, s.reason),
                    None => format!("all {} turns pass", scores.len()),
                },
                error: scores.iter().any(|s| s.error),
            }
        })
        .collect();
    (row, Some(per_turn))
}

async fn score_one(
    shared: &Shared,
    result: &RunResult,
    output: &str,
    expected: Option<&str>,
) -> Vec<Score> {
    let plan = &shared.plan;
    let tool_calls = crate::tool_calls::of_extra(result.extra.as_ref());
    let input = EvalInput {
        vars: &result.vars,
        output,
        expected,
        latency_ms: result.latency_ms,
        tool_calls: &tool_calls,
        tools: plan.version.params.get("tools"),
    };
    let mut scores = Vec::with_capacity(plan.evaluators.len());
    for evaluator in &plan.evaluators {
        let score = if let Some(messages) = evaluator.judge_messages(&input) {
            judge(shared, evaluator, &messages).await
        } else if evaluator.blocks() {
            // An external program blocks while it runs; keep it off the async workers.
            tokio::task::block_in_place(|| evaluator.score(&input))
        } else {
            evaluator.score(&input)
        };
        scores.push(score);
    }
    scores
}

async fn judge(shared: &Shared, evaluator: &Evaluator, messages: &[Message]) -> Score {
    let mut params = JsonObject::new();
    params.insert("temperature".into(), json!(0));
    let body = request_body(&shared.plan.judge_model, messages, &params);
    match shared.plan.client.complete(&body).await {
        Ok(reply) => evaluator.judge_verdict(&reply.text),
        Err(failure) => Score {
            evaluator: evaluator.name().to_string(),
            score: 0.0,
            pass: false,
            reason: format!("the judge call failed: {}", failure.message),
            error: true,
        },
    }
}
