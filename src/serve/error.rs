//! Error replies: `ApiError`, Phoenix's status and plain-text message, and how store errors
//! map onto it.

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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::UnknownPrompt { .. }
            | StoreError::UnknownVersion { .. }
            | StoreError::UnknownTag { .. } => StatusCode::NOT_FOUND,
            StoreError::PromptExists { .. } => StatusCode::CONFLICT,
            e if e.is_invalid_input() => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Open { .. }
            | StoreError::NotADatabase { .. }
            | StoreError::NewerSchema { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            eprintln!("runner serve: {}: {}", self.status, self.message);
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
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status, status);
        }
    }
}
