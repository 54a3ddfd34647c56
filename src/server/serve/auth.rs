//! Bearer-token authentication over HTTP: the middleware that checks every API request against
//! the token files (`crate::access`), and the `Caller` it records. It reads no token file (that is
//! `access`'s) and never touches the store: what a caller's role allows on a protected tag is
//! decided inside the store's tag write.

use super::Shared;
use super::error::ApiError;
use crate::access::Access;
use crate::store::TagRole;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Narrows the caller recorded on tag moves and versions (see `Caller`).
pub const ACTOR_HEADER: &str = "x-runner-actor";

const MAX_ACTOR_CHARS: usize = 64;

/// The routes an ingest token may POST to.
const INGEST_PATHS: [&str; 3] = [
    "/v1/traces",
    "/v1/span_annotations",
    "/v1/trace_annotations",
];

/// Who is calling, as recorded in the tag history and on versions: `api`, or `api:NAME` for a
/// named token, followed by ` (ACTOR)` when the request names a person or job in the
/// `X-Runner-Actor` header. The token decides the prefix, so a header cannot pass for another
/// token's name.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub(super) actor: String,
    /// What the token may do to a protected tag.
    pub(super) role: TagRole,
    /// The token's access, for the routes that decide per call (the store route).
    pub(super) access: Access,
}

pub(super) async fn authenticate(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let (base, access) = match &shared.tokens {
        None => ("api".to_string(), Access::ReadWrite),
        Some(tokens) => {
            let presented = request
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| bearer_token(v.as_bytes()));
            match presented {
                None => {
                    tracing::warn!(status = 401, "no bearer token");
                    return ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "missing bearer token: send Authorization: Bearer TOKEN",
                    )
                    .into_response();
                }
                Some(token) => match tokens.identify(token) {
                    Some((name, access)) => (
                        name.map_or_else(|| "api".to_string(), |n| format!("api:{n}")),
                        access,
                    ),
                    None => match shared.stored_token(token).await {
                        Some((name, access)) => (format!("api:{name}"), access),
                        None => {
                            tracing::warn!(
                                status = 401,
                                token_sha256 = %format!("{}…", crate::access::fingerprint(token)),
                                "unknown token"
                            );
                            return ApiError::new(
                                StatusCode::UNAUTHORIZED,
                                "invalid bearer token (unknown, revoked or expired)",
                            )
                            .into_response();
                        }
                    },
                },
            }
        }
    };
    let reads_only = matches!(*request.method(), Method::GET | Method::HEAD)
        // The store route checks each call against the token's role itself.
        || request.uri().path().starts_with("/v1/store/");
    let ingest_route =
        *request.method() == Method::POST && INGEST_PATHS.contains(&request.uri().path());
    if access == Access::ReadOnly && !reads_only {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "this token is read-only: it allows GET requests only",
        )
        .into_response();
    }
    if access == Access::Ingest && !reads_only && !ingest_route {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "this is an ingest token: it reads prompts and sends traces and annotations \
             (POST /v1/traces, /v1/span_annotations, /v1/trace_annotations), nothing else",
        )
        .into_response();
    }
    let actor = match request.headers().get(ACTOR_HEADER) {
        None => base,
        Some(value) => match actor_label(value) {
            Some(label) => format!("{base} ({label})"),
            None => {
                return ApiError::unprocessable(format!(
                    "X-Runner-Actor: expected 1 to {MAX_ACTOR_CHARS} printable ASCII characters"
                ))
                .into_response();
            }
        },
    };
    request.extensions_mut().insert(Caller {
        actor,
        role: access.tag_role(),
        access,
    });
    next.run(request).await
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme is case-insensitive
/// (RFC 7235: `bearer`, `BEARER` and `Bearer` are one scheme) and one or more spaces separate
/// it from the token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let token = rest.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

fn actor_label(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?.trim();
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    (printable && !text.is_empty() && text.len() <= MAX_ACTOR_CHARS).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR   abc "] {
            assert_eq!(
                bearer_token(value.as_bytes()),
                Some(&b"abc"[..]),
                "{value:?}"
            );
        }
        for value in [
            "",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Basic abc",
            "Bearers abc",
            "abc",
        ] {
            assert_eq!(bearer_token(value.as_bytes()), None, "{value:?}");
        }
    }

    #[test]
    fn actor_labels_are_short_printable_text() {
        let ok = HeaderValue::from_static(" alice ");
        assert_eq!(actor_label(&ok), Some("alice"));
        for bad in ["", "   ", &"x".repeat(MAX_ACTOR_CHARS + 1)] {
            assert_eq!(
                actor_label(&HeaderValue::from_str(bad).unwrap()),
                None,
                "{bad:?}"
            );
        }
        let tab = HeaderValue::from_bytes(b"a\tb").unwrap();
        assert_eq!(actor_label(&tab), None);
    }
}
