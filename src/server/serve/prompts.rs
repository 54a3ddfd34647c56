//! Prompt and version routes: listing and creating prompts, listing versions, and serving one
//! version (latest, by tag or by id) with its ETag and cache lifetime. They hold no rule of their
//! own and must not grow one: version numbers and the tag policy are decided inside the store's
//! writes, and error replies are `error`'s.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{
    Lookup, PageQuery, Shared, VersionBody, data, json_body, page, path, prompt_name, query,
    tag_name, version_id, wire,
};
use crate::model::{NameKind, PromptUpdate, PromptVersion, check_name};
use crate::store::{Store, StoreError, TagChange};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// How long a client may reuse a tag or latest lookup: a tag move is seen within this many
/// seconds while an application polling every request still mostly hits its cache.
pub const TAG_MAX_AGE_SECS: u32 = 5;

const CACHE_VERSION_BY_ID: &str = "max-age=31536000, immutable";

/// A version with its validator, the sha256 of the body (see `VersionBody`). It is strong: two
/// answers share it only when they are the same bytes. A content hash would not do: two versions
/// with the same content differ in id and number, and a client revalidating a tag lookup after
/// the tag moved between them would keep the old id.
fn version_response(version: VersionBody, headers: &HeaderMap, cache: &str) -> Response {
    let mut response = if etag_matches(headers, &version.digest) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(CONTENT_TYPE, "application/json")], version.body).into_response()
    };
    let out = response.headers_mut();
    out.insert(ETAG, version.etag);
    if let Ok(cache) = HeaderValue::from_str(cache) {
        out.insert(CACHE_CONTROL, cache);
    }
    response
}

/// `If-None-Match` under the weak comparison RFC 9110 prescribes for it: `W/` is ignored.
fn etag_matches(headers: &HeaderMap, digest: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| {
            tag == "*"
                || tag
                    .trim_start_matches("W/")
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    == Some(digest)
        })
}

/// Says which rollout and arm answered a tag lookup.
pub const ROLLOUT_HEADER: &str = "x-runner-rollout";

fn short_cache() -> String {
    format!("max-age={TAG_MAX_AGE_SECS}")
}

pub(super) async fn list_prompts(
    State(shared): State<Arc<Shared>>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let params = query(params)?;
    let limit = params.limit()?;
    let cursor = params.cursor.clone();
    if let Some(cursor) = &cursor {
        check_name(NameKind::Prompt, cursor)
            .map_err(|_| ApiError::unprocessable(format!("invalid cursor '{cursor}'")))?;
    }
    let mut prompts = shared
        .with_store(move |store| Ok(store.prompts_page(cursor.as_deref(), limit + 1)?))
        .await?;
    let next = (prompts.len() > limit).then(|| prompts.remove(limit).0.name);
    let items = prompts
        .iter()
        .map(|(prompt, latest)| wire::prompt_json(prompt, latest))
        .collect();
    Ok(page(items, next))
}

pub(super) async fn create_prompt(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: wire::CreatePromptBody = json_body(body)?;
    let name = body.prompt.name.clone();
    check_name(NameKind::Prompt, &name).map_err(|reason| {
        ApiError::unprocessable(format!("prompt.name: invalid name '{name}': {reason}"))
    })?;
    // Validate before taking the write lock, so a bad body never waits behind a writer.
    wire::new_version(&body, None, &caller.actor).map_err(ApiError::unprocessable)?;
    let created = shared
        .with_store(move |store| {
            let created = create_or_append(store, &body, &caller.actor)?;
            // A new prompt takes the metadata the body gives it (Phoenix ignores the prompt's
            // fields when the prompt exists).
            if created.seq == 1
                && let Some(metadata) = body.prompt.metadata.clone().filter(|m| !m.is_empty())
            {
                let update = PromptUpdate {
                    metadata: Some(metadata),
                    ..PromptUpdate::default()
                };
                store.update_prompt(&body.prompt.name, &update, &caller.actor)?;
            }
            Ok(created)
        })
        .await?;
    Ok(Json(json!({"data": wire::version_json(&created)})).into_response())
}

/// The body of `POST /v1/prompts/{prompt}/versions`.
#[derive(serde::Deserialize)]
pub(super) struct CreateVersionBody {
    version: wire::VersionData,
    #[serde(default)]
    tags: Option<Vec<wire::TagData>>,
}

/// Phoenix's `POST /v1/prompts/{prompt}/versions`: a version appended to an existing prompt,
/// with tags set on it in the same transaction (under the tag policy), 201.
pub(super) async fn create_version(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    prompt: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let name = prompt_name(path(prompt)?)?;
    let body: CreateVersionBody = json_body(body)?;
    let tags = body.tags.unwrap_or_default();
    for tag in &tags {
        check_name(NameKind::Tag, &tag.name).map_err(|reason| {
            ApiError::unprocessable(format!("tags: invalid tag name '{}': {reason}", tag.name))
        })?;
    }
    let full = wire::CreatePromptBody {
        prompt: wire::PromptData {
            name: name.clone(),
            description: None,
            metadata: None,
        },
        version: body.version,
    };
    wire::new_version(&full, None, &caller.actor).map_err(ApiError::unprocessable)?;
    let policy = shared.config.tag_policy();
    let created = shared
        .with_store(move |store| {
            let change = TagChange {
                actor: caller.actor.clone(),
                role: caller.role,
                policy,
                ..TagChange::default()
            };
            // The tags' descriptions are the messages of their changes; one transaction for
            // the version and every tag.
            let names: Vec<String> = tags.iter().map(|t| t.name.clone()).collect();
            let message = tags.iter().find_map(|t| t.description.clone());
            let change = TagChange { message, ..change };
            crate::store::append_version(
                store,
                &name,
                |latest| {
                    wire::new_version(&full, Some(latest), &caller.actor)
                        .map_err(AppendError::Invalid)
                },
                &names,
                &change,
            )
            .map_err(|e| match e {
                AppendError::Invalid(message) => ApiError::unprocessable(message),
                AppendError::Store(e) => e.into(),
            })
        })
        .await?;
    let mut response = Json(json!({"data": wire::version_json(&created)})).into_response();
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// The body of `PATCH /v1/prompts/{prompt}`: a field left out is left as it is; a null
/// description clears it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchPromptBody {
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default)]
    metadata: Option<crate::model::JsonObject>,
}

/// Some(value) for a field that is present, null included.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Phoenix's `PATCH /v1/prompts/{prompt}`: the prompt's own description and metadata.
pub(super) async fn patch_prompt(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    prompt: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let name = prompt_name(path(prompt)?)?;
    let body: PatchPromptBody = json_body(body)?;
    if body.description.is_none() && body.metadata.is_none() {
        return Err(ApiError::unprocessable(
            "at least one of description and metadata must be given",
        ));
    }
    let update = PromptUpdate {
        // Phoenix trims the description.
        description: body
            .description
            .map(|d| d.map(|text| text.trim().to_string())),
        metadata: body.metadata,
    };
    let (prompt, latest) = shared
        .with_store(move |store| {
            store.update_prompt(&name, &update, &caller.actor)?;
            Ok(store.prompt(&name)?)
        })
        .await?;
    Ok(data(wire::patched_prompt_json(&prompt, &latest)))
}

/// Phoenix's `DELETE /v1/prompts/{prompt}`, as an archive: the prompt disappears from lists
/// and lookups but keeps its versions, tags and history; `runner prompt restore` brings it
/// back. Recorded in the prompt's history with the caller. A prompt holding a protected tag
/// (which archiving would take offline) needs a deploy token or force, as deleting that tag
/// does, checked inside the write.
pub(super) async fn archive_prompt(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    prompt: Result<Path<String>, PathRejection>,
    params: Result<Query<super::tags::ForceQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let name = prompt_name(path(prompt)?)?;
    let force = super::tags::force_allowed(
        &caller,
        super::tags::force_requested(&query(params)?, &headers)?,
    )?;
    let policy = shared.config.tag_policy();
    shared
        .with_store(move |store| {
            let change = TagChange {
                actor: caller.actor,
                force,
                role: caller.role,
                policy,
                ..TagChange::default()
            };
            Ok(store.archive_prompt(&name, &change)?)
        })
        .await?;
    shared.forget_bodies();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Why appending failed: the store's reason, or the body's.
enum AppendError {
    Store(StoreError),
    Invalid(String),
}

impl From<StoreError> for AppendError {
    fn from(e: StoreError) -> AppendError {
        AppendError::Store(e)
    }
}

/// Phoenix's POST /v1/prompts appends a version to an existing prompt and creates a missing one.
fn create_or_append(
    store: &dyn Store,
    body: &wire::CreatePromptBody,
    author: &str,
) -> ApiResult<PromptVersion> {
    let name = &body.prompt.name;
    let no_tags = TagChange::default();
    // Prompts are never deleted, so when a concurrent writer creates the prompt between the
    // two attempts below, the second append succeeds.
    for _ in 0..2 {
        let appended = crate::store::append_version(
            store,
            name,
            |latest| wire::new_version(body, Some(latest), author).map_err(AppendError::Invalid),
            &[],
            &no_tags,
        );
        match appended {
            Ok(version) => return Ok(version),
            Err(AppendError::Invalid(message)) => return Err(ApiError::unprocessable(message)),
            Err(AppendError::Store(StoreError::UnknownPrompt { .. })) => {}
            Err(AppendError::Store(e)) => return Err(e.into()),
        }
        let first = wire::new_version(body, None, author).map_err(ApiError::unprocessable)?;
        match store.create_prompt(name, first, &[], &no_tags) {
            Ok(version) => return Ok(version),
            Err(StoreError::PromptExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!("prompt '{name}' changed during the request; retry it"),
    ))
}

pub(super) async fn list_versions(
    State(shared): State<Arc<Shared>>,
    prompt: Result<Path<String>, PathRejection>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let prompt = prompt_name(path(prompt)?)?;
    let params = query(params)?;
    let limit = params.limit()?;
    // An unknown prompt has no versions: Phoenix answers an empty list, not 404.
    let versions = shared
        .with_store(move |store| match store.versions(&prompt) {
            Err(StoreError::UnknownPrompt { .. }) => Ok(Vec::new()),
            other => Ok(other?),
        })
        .await?;
    let start = match &params.cursor {
        None => 0,
        Some(cursor) => versions
            .iter()
            .position(|v| &v.id == cursor)
            .ok_or_else(|| ApiError::unprocessable(format!("invalid cursor '{cursor}'")))?,
    };
    let end = (start + limit).min(versions.len());
    let next = versions.get(end).map(|v| v.id.clone());
    let items = versions[start..end]
        .iter()
        .map(wire::version_json)
        .collect();
    Ok(page(items, next))
}

pub(super) async fn latest_version(
    State(shared): State<Arc<Shared>>,
    caller: Option<Extension<Caller>>,
    prompt: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let version = shared.version_body(Lookup::Latest(prompt_name(path(prompt)?)?))?;
    count_lookup(&shared, &version, "latest", caller, &headers);
    Ok(version_response(version, &headers, &short_cache()))
}

pub(super) async fn tagged_version(
    State(shared): State<Arc<Shared>>,
    caller: Option<Extension<Caller>>,
    names: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (prompt, tag) = path(names)?;
    let tag = tag_name(tag)?;
    let prompt = prompt_name(prompt)?;
    if let Some(rollout) = shared.rollout(&prompt, &tag)? {
        return rollout_lookup(&shared, &rollout, &tag, caller, &headers);
    }
    let version = shared.version_body(Lookup::Tag(prompt, tag.clone()))?;
    count_lookup(&shared, &version, &tag, caller, &headers);
    Ok(version_response(version, &headers, &short_cache()))
}

/// A lookup of a tag under a rollout: the unit's arm (or a fresh draw without a unit header),
/// said in `X-Runner-Rollout`, and never cached by anyone but this caller (a shared cache would
/// pin a fleet to one arm).
fn rollout_lookup(
    shared: &Shared,
    rollout: &crate::canary::Rollout,
    tag: &str,
    caller: Option<Extension<Caller>>,
    headers: &HeaderMap,
) -> ApiResult {
    let unit = rollout
        .unit_header
        .as_deref()
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let arm = rollout.arm(unit, fastrand::u64(..10_000));
    let version = shared.version_body(Lookup::LiveId(rollout.version_of(arm).to_string()))?;
    count_lookup(shared, &version, tag, caller, headers);
    let mut response = version_response(version, headers, "private, no-store");
    if let Ok(value) = HeaderValue::from_str(&format!("{}; arm={}", rollout.id, arm.as_str())) {
        response.headers_mut().insert(ROLLOUT_HEADER, value);
    }
    Ok(response)
}

pub(super) async fn version_by_id(
    State(shared): State<Arc<Shared>>,
    caller: Option<Extension<Caller>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let version = shared.version_body(Lookup::Id(version_id(path(id)?)?))?;
    count_lookup(&shared, &version, "", caller, &headers);
    Ok(version_response(version, &headers, CACHE_VERSION_BY_ID))
}

/// Counts the lookup in the per-minute roll-up (which version each application fetched, and
/// when it switched): a counter behind a short lock, never a store write.
fn count_lookup(
    shared: &Shared,
    version: &VersionBody,
    tag: &str,
    caller: Option<Extension<Caller>>,
    headers: &HeaderMap,
) {
    let sender = caller.map_or_else(|| "api".to_string(), |Extension(c)| c.actor);
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    shared
        .ingest
        .lookup(&version.prompt, tag, &version.id, &sender, agent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let hash = "ab12";
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&["\"ab12\""], true),
            (&["W/\"ab12\""], true),
            (&["\"zz\", W/\"ab12\""], true),
            (&["\"zz\"", "\"ab12\""], true),
            (&["*"], true),
            (&["ab12"], false),
            (&["\"ab1\""], false),
        ];
        for (values, expected) in cases {
            let mut headers = HeaderMap::new();
            for v in *values {
                headers.append(IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            }
            assert_eq!(etag_matches(&headers, hash), *expected, "{values:?}");
        }
    }
}
