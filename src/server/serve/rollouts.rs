//! Rollout routes, runner's own: start a canary rollout of a tag, list a prompt's rollouts, show
//! one as `runner canary status --json` does, advance or stop it. The plan, the statistics and
//! the decisions are `workflow::canary`'s; these routes read the request, check the caller's
//! role and hand over.
//!
//! Who may do what: any token reads; a write or deploy token starts a rollout, advances it and
//! stops it; on a protected tag (runner.toml's `protected_tags`), starting a rollout and an
//! advance that completes it (which moves the tag) need a deploy token. Force is not offered:
//! a rollout's tag events record who acted, and a deploy token is the recorded way.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{Shared, data, json_body, path, prompt_name, query, tag_name};
use crate::store::TagRole;
use crate::workflow::canary;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

/// The refusal of a rollout step that would move a protected tag without the deploy role.
fn needs_deploy(tag: &str, doing: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!("tag '{tag}' is protected: {doing} needs a deploy token"),
    )
}

/// `POST /v1/prompts/{prompt}/rollouts`: starts a rollout. The body is `workflow::canary`'s
/// `Request` (`candidate` required; `tag`, `steps`, `step_after`, `unit_header`, `metrics`,
/// `non_inferior`, `confidence`, `canary_tag`, `message` optional, else runner.toml's
/// `[canary]`). Answers 201 with the rollout's status.
pub(super) async fn start_rollout(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let prompt = prompt_name(path(name)?)?;
    let request: canary::Request = json_body(body)?;
    let plan = canary::plan(
        &prompt,
        request,
        &shared.config.canary,
        shared.config.confidence,
    )?;
    let policy = shared.config.tag_policy();
    if policy.is_protected(&plan.tag) && caller.role != TagRole::Deploy {
        return Err(needs_deploy(&plan.tag, "starting a rollout of it"));
    }
    let view = shared
        .with_store(move |store| {
            let now = crate::trace::now_ms();
            let (rollout, _) = canary::start(store, &plan, &caller.actor, &policy, now)?;
            tracing::info!(rollout = %rollout.id, "started by {}", caller.actor);
            Ok(canary::view(store, rollout, now)?)
        })
        .await?;
    shared.forget_rollouts();
    let mut response = data(to_value(&view)?);
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only the running ones.
    running: Option<bool>,
}

/// `GET /v1/prompts/{prompt}/rollouts[?running=true]`: the prompt's rollouts, newest first.
pub(super) async fn list_rollouts(
    State(shared): State<Arc<Shared>>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let prompt = prompt_name(path(name)?)?;
    let running = query(params)?.running.unwrap_or(false);
    let rollouts = shared
        .with_store(move |store| {
            store.prompt(&prompt)?;
            Ok(store.rollouts(Some(&prompt), running)?)
        })
        .await?;
    Ok(data(to_value(&rollouts)?))
}

/// `GET /v1/prompts/{prompt}/rollouts/{tag}`: the tag's running rollout, else its latest, as
/// `runner canary status --json` shows it (each arm's figures so far, what comes next).
pub(super) async fn rollout_status(
    State(shared): State<Arc<Shared>>,
    names: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (prompt, tag) = path(names)?;
    let (prompt, tag) = (prompt_name(prompt)?, tag_name(tag)?);
    let view = shared
        .with_store(move |store| {
            let rollout = store
                .rollouts(Some(&prompt), false)?
                .into_iter()
                .find(|r| r.tag == tag)
                .ok_or(crate::store::StoreError::NoRollout { prompt, tag })?;
            Ok(canary::view(store, rollout, crate::trace::now_ms())?)
        })
        .await?;
    Ok(data(to_value(&view)?))
}

/// `POST /v1/prompts/{prompt}/rollouts/{tag}/advance`: the next step now (or, at the last,
/// completes the rollout and moves the tag). Answers the look it recorded.
pub(super) async fn advance_rollout(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    names: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (prompt, tag) = path(names)?;
    let (prompt, tag) = (prompt_name(prompt)?, tag_name(tag)?);
    let policy = shared.config.tag_policy();
    let outcome = shared
        .with_store(move |store| {
            let rollout = canary::running(store, &prompt, &tag)?;
            if canary::hand_completion_needs_deploy(&rollout, &policy, caller.role) {
                return Err(needs_deploy(&tag, "completing its rollout by hand"));
            }
            // On the rollout as checked: if it stepped meanwhile, nothing is written (409).
            let now = crate::trace::now_ms();
            Ok(canary::advance_from(
                store,
                &rollout,
                now,
                &policy,
                &caller.actor,
            )?)
        })
        .await?;
    shared.forget_rollouts();
    Ok(data(to_value(&outcome)?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StopBody {
    message: Option<String>,
}

/// `POST /v1/prompts/{prompt}/rollouts/{tag}/stop` (body `{"message": "…"}`, optional): ends
/// the rollout; the candidate is no longer served and the tag stays. Answers the tag events.
pub(super) async fn stop_rollout(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    names: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (prompt, tag) = path(names)?;
    let (prompt, tag) = (prompt_name(prompt)?, tag_name(tag)?);
    let stop: StopBody = match &body {
        Ok(bytes) if bytes.is_empty() => StopBody::default(),
        _ => json_body(body)?,
    };
    let message = stop
        .message
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty());
    if message.as_ref().is_some_and(|m| m.chars().count() > 2_000) {
        return Err(ApiError::unprocessable("message: at most 2,000 characters"));
    }
    let policy = shared.config.tag_policy();
    let events = shared
        .with_store(move |store| {
            Ok(canary::stop(
                store,
                &prompt,
                &tag,
                message.as_deref(),
                &policy,
                &caller.actor,
            )?)
        })
        .await?;
    shared.forget_rollouts();
    Ok(data(to_value(&events)?))
}

fn to_value<T: serde::Serialize>(value: &T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(format!("cannot encode: {e}")))
}
