//! Prompt and version routes: listing and creating prompts, listing versions, and serving one
//! version (latest, by tag or by id) with its ETag and cache lifetime.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{Lookup, PageQuery, Shared, VersionBody, json_body, page, path, query, wire};
use crate::model::{NameKind, PromptVersion, check_name};
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
        .with_store(move |store| create_or_append(store, &body, &caller.actor))
        .await?;
    Ok(Json(json!({"data": wire::version_json(&created)})).into_response())
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
    let prompt = path(prompt)?;
    let params = query(params)?;
    let limit = params.limit()?;
    let versions = shared
        .with_store(move |store| Ok(store.versions(&prompt)?))
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
    prompt: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let version = shared.version_body(Lookup::Latest(path(prompt)?))?;
    Ok(version_response(version, &headers, &short_cache()))
}

pub(super) async fn tagged_version(
    State(shared): State<Arc<Shared>>,
    names: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (prompt, tag) = path(names)?;
    let version = shared.version_body(Lookup::Tag(prompt, tag))?;
    Ok(version_response(version, &headers, &short_cache()))
}

pub(super) async fn version_by_id(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let version = shared.version_body(Lookup::Id(path(id)?))?;
    Ok(version_response(version, &headers, CACHE_VERSION_BY_ID))
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
