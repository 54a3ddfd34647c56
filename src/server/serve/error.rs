//! Error replies: `ApiError`, Phoenix's status and plain-text message, and how store errors
//! map onto it. It only translates errors already raised: it never calls the store, and must not
//! name a backend or a driver's error type (a locked store is recognised by the database's own
//! words).

use crate::model::TagAction;
use crate::store::StoreError;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error as Phoenix sends it: a status and a plain-text message.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(super) fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub(super) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

/// The refusal of an unforced change of a protected tag by a caller without the deploy role.
pub(super) fn protected_message(tag: &str, action: TagAction) -> String {
    let doing = match action {
        TagAction::Delete => "deleting",
        TagAction::Rollback => "rolling back",
        _ => "moving",
    };
    format!(
        "tag '{tag}' is protected: {doing} it needs a deploy token, or force (?force=true or \
         X-Runner-Force: true, recorded as forced in the tag history)"
    )
}

/// The status a store error is answered with, on every route (the store route's too).
pub(super) fn status_of(e: &StoreError) -> StatusCode {
    if is_locked(e) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match e {
        // The caller lacks the role: forbidden, and the answer says what allows it.
        StoreError::ProtectedTag { .. }
        | StoreError::ProtectedArchive { .. }
        | StoreError::Forbidden { .. } => StatusCode::FORBIDDEN,
        StoreError::UnknownPrompt { .. }
        | StoreError::UnknownVersion { .. }
        | StoreError::UnknownTag { .. }
        | StoreError::UnknownDataset { .. }
        | StoreError::NoRollout { .. } => StatusCode::NOT_FOUND,
        StoreError::PromptExists { .. }
        | StoreError::DatasetExists { .. }
        | StoreError::DatasetInUse { .. }
        | StoreError::RunExists { .. }
        | StoreError::LinkedExperiment { .. }
        | StoreError::PromptArchived { .. }
        | StoreError::RolloutRunning { .. }
        | StoreError::TagMoved { .. } => StatusCode::CONFLICT,
        e if e.is_invalid_input() => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::Open { .. }
        | StoreError::NotADatabase { .. }
        | StoreError::NewerSchema { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = status_of(&e);
        if is_locked(&e) {
            return ApiError::new(
                status,
                "the store is locked by another writer (the wait for it timed out); \
                 nothing was written, retry the request",
            );
        }
        let message = match &e {
            StoreError::ProtectedTag { tag, action, .. } => protected_message(tag, *action),
            StoreError::ProtectedArchive { .. } => {
                format!("{e}: a deploy token, or ?force=true (recorded in the prompt's history)")
            }
            _ => e.to_string(),
        };
        ApiError::new(status, message)
    }
}

/// runner's own failures, for routes that run a workflow: a wrong request is 422, a state
/// that forbids it now (a rollout changed meanwhile) 409. An invalid request's hint (what to
/// send instead) follows its message; other hints name CLI commands and are left out.
impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> ApiError {
        use crate::error::Error;
        let hint = matches!(e, Error::Invalid(_)).then(|| e.hint()).flatten();
        let mut error = match e {
            Error::Store(store, _) => ApiError::from(*store),
            Error::Invalid(_) | Error::Template(..) => ApiError::unprocessable(e.to_string()),
            Error::Operational(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            Error::Interrupted(_) | Error::Budget(_) => ApiError::internal(e.to_string()),
        };
        if let Some(hint) = hint {
            error.message = format!("{} (hint: {hint})", error.message);
        }
        error
    }
}

/// Whether the store gave up waiting for another writer's lock. The store reports that as a
/// generic backend error, and this layer does not name the database, so the check reads the
/// error's causes for the database's own words: SQLite says "database is locked" for
/// SQLITE_BUSY (and its code's description, "The database file is locked").
fn is_locked(e: &StoreError) -> bool {
    if !matches!(e, StoreError::Backend(_)) {
        return false;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(error) = cause {
        let text = error.to_string();
        if text.contains("database is locked") || text.contains("database file is locked") {
            return true;
        }
        cause = error.source();
    }
    false
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), "{}", self.message);
        }
        let mut response = (
            self.status,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"runner\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub(super) type ApiResult<T = Response> = Result<T, ApiError>;

pub(super) fn unknown_version(id: &str) -> ApiError {
    ApiError::not_found(format!("unknown prompt version '{id}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_phoenix_statuses() {
        let cases = [
            (
                StoreError::UnknownPrompt { name: "p".into() },
                StatusCode::NOT_FOUND,
            ),
            (
                StoreError::UnknownTag {
                    prompt: "p".into(),
                    tag: "t".into(),
                },
                StatusCode::NOT_FOUND,
            ),
            (
                StoreError::PromptExists { name: "p".into() },
                StatusCode::CONFLICT,
            ),
            (
                StoreError::Corrupt("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                StoreError::ProtectedTag {
                    prompt: "p".into(),
                    tag: "production".into(),
                    action: TagAction::Move,
                },
                StatusCode::FORBIDDEN,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status, status);
        }
    }

    #[test]
    fn a_locked_store_is_503_and_other_backend_failures_500() {
        let locked = StoreError::Backend("database is locked".into());
        let error = ApiError::from(locked);
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        let response = error.into_response();
        assert!(response.headers().contains_key(RETRY_AFTER));
        let other = StoreError::Backend("disk I/O error".into());
        assert_eq!(
            ApiError::from(other).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Only the store's own failure counts, not a message that happens to say the words.
        let named = StoreError::UnknownPrompt {
            name: "database is locked".into(),
        };
        assert_eq!(ApiError::from(named).status, StatusCode::NOT_FOUND);
    }
}
