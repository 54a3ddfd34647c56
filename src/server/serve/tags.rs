//! Tag routes: listing a prompt's or a version's tags, a tag's history, and moving or deleting
//! a tag under the protected-tag policy. The policy itself is the store's, checked inside its tag
//! write: these routes must not check it again, only pass the caller's role and force along.

use super::auth::Caller;
use super::error::{ApiError, ApiResult, unknown_version};
use super::{
    PageQuery, Shared, data, json_body, page, path, prompt_name, query, tag_name, version_id, wire,
};
use crate::model::{NameKind, VersionRef, check_name};
use crate::store::{Expect, StoreError, TagChange};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use std::sync::Arc;

/// Asks to move or delete a protected tag, for clients that cannot add `?force=true` to a URL
/// (the Phoenix clients take extra headers only when they are built).
pub const FORCE_HEADER: &str = "x-runner-force";

#[derive(Debug, Deserialize)]
pub(super) struct ForceQuery {
    force: Option<String>,
}

/// Whether the request asks to move or delete a protected tag (`?force=true` or
/// `X-Runner-Force: true`).
/// Force, unless the token is a promote token: it moves a protected tag only through a
/// promotion the server evaluates (`POST /v1/promotions`), never by hand.
pub(super) fn force_allowed(caller: &Caller, force: bool) -> ApiResult<bool> {
    if force && caller.access == crate::access::Access::Promote {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a promote token moves a protected tag only through a promotion the server \
             evaluates (POST /v1/promotions, `runner promote`); force needs the deploy role",
        ));
    }
    Ok(force)
}

pub(super) fn force_requested(query: &ForceQuery, headers: &HeaderMap) -> ApiResult<bool> {
    let header = headers.get(FORCE_HEADER).map(|v| v.to_str().unwrap_or("?"));
    let mut force = false;
    for (source, value) in [
        ("force", query.force.as_deref()),
        ("X-Runner-Force", header),
    ] {
        match value {
            None | Some("false" | "0") => {}
            Some("true" | "1" | "") => force = true,
            Some(other) => {
                return Err(ApiError::unprocessable(format!(
                    "{source}: expected true or false, got '{other}'"
                )));
            }
        }
    }
    Ok(force)
}

pub(super) async fn list_prompt_tags(
    State(shared): State<Arc<Shared>>,
    prompt: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let prompt = prompt_name(path(prompt)?)?;
    let tags = shared
        .with_store(move |store| Ok(store.prompt_tags(&prompt)?))
        .await?;
    Ok(data(
        tags.iter()
            .map(|(tag, message)| wire::tag_json(tag, message.as_deref()))
            .collect(),
    ))
}

pub(super) async fn tag_history(
    State(shared): State<Arc<Shared>>,
    names: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (prompt, tag) = path(names)?;
    let (prompt, tag) = (prompt_name(prompt)?, tag_name(tag)?);
    let events = shared
        .with_store(move |store| {
            let events = store.history(&prompt, Some(&tag))?;
            if events.is_empty() {
                return Err(StoreError::UnknownTag { prompt, tag }.into());
            }
            Ok(events)
        })
        .await?;
    Ok(data(events.iter().map(wire::event_json).collect()))
}

pub(super) async fn list_version_tags(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let id = version_id(path(id)?)?;
    let params = query(params)?;
    let limit = params.limit()?;
    let tags = shared
        .with_store(move |store| {
            store
                .version_by_id(&id)?
                .ok_or_else(|| unknown_version(&id))?;
            Ok(store.version_tags(&id)?)
        })
        .await?;
    let start = match &params.cursor {
        None => 0,
        Some(cursor) => tags
            .iter()
            .position(|(t, _)| &t.name == cursor)
            .ok_or_else(|| ApiError::unprocessable(format!("invalid cursor '{cursor}'")))?,
    };
    let end = (start + limit).min(tags.len());
    let next = tags.get(end).map(|(t, _)| t.name.clone());
    let items = tags[start..end]
        .iter()
        .map(|(tag, message)| wire::tag_json(tag, message.as_deref()))
        .collect();
    Ok(page(items, next))
}

pub(super) async fn add_version_tag(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<ForceQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = version_id(path(id)?)?;
    let force = force_allowed(&caller, force_requested(&query(params)?, &headers)?)?;
    let tag: wire::TagData = json_body(body)?;
    check_name(NameKind::Tag, &tag.name).map_err(|reason| {
        ApiError::unprocessable(format!("name: invalid tag name '{}': {reason}", tag.name))
    })?;
    let policy = shared.config.tag_policy();
    shared
        .with_store(move |store| {
            let version = store
                .version_by_id(&id)?
                .ok_or_else(|| unknown_version(&id))?;
            // The one tag policy, checked inside the write: creating a protected tag displaces
            // nothing; moving one needs the deploy role or force. A tag already at this version
            // is left alone.
            let change = TagChange {
                actor: caller.actor,
                message: tag.description.clone(),
                force,
                role: caller.role,
                policy,
                ..TagChange::default()
            };
            store.set_tag(&version.prompt, &tag.name, &VersionRef::Id(id), &change)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn delete_version_tag(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    names: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<ForceQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (id, tag) = path(names)?;
    let (id, tag) = (version_id(id)?, tag_name(tag)?);
    let force = force_allowed(&caller, force_requested(&query(params)?, &headers)?)?;
    let policy = shared.config.tag_policy();
    shared
        .with_store(move |store| {
            let version = store
                .version_by_id(&id)?
                .ok_or_else(|| unknown_version(&id))?;
            // Only while the tag points at this version: a client that saw it here must not
            // delete it after it moved elsewhere.
            let change = TagChange {
                actor: caller.actor,
                force,
                role: caller.role,
                policy,
                expect: Expect::At(id.clone()),
                ..TagChange::default()
            };
            match store.delete_tag(&version.prompt, &tag, &change) {
                Ok(_) => Ok(()),
                Err(StoreError::UnknownTag { .. } | StoreError::TagMoved { .. }) => {
                    Err(ApiError::not_found(format!(
                        "prompt '{}' has no tag '{tag}' on version id {id}",
                        version.prompt
                    )))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn force_comes_from_the_query_or_the_header() {
        let none = ForceQuery { force: None };
        let yes = ForceQuery {
            force: Some("true".into()),
        };
        let mut header = HeaderMap::new();
        header.insert(FORCE_HEADER, HeaderValue::from_static("1"));
        assert!(!force_requested(&none, &HeaderMap::new()).unwrap());
        assert!(force_requested(&yes, &HeaderMap::new()).unwrap());
        assert!(force_requested(&none, &header).unwrap());
        let bad = ForceQuery {
            force: Some("maybe".into()),
        };
        let err = force_requested(&bad, &HeaderMap::new()).unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
