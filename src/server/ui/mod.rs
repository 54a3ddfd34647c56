//! The web UI of `runner serve`: server-rendered pages over the same store, views and tag policy
//! the CLI uses (the prompt library, a prompt's versions, deployments, production traffic and
//! tag history, a version with its recent spans and a diff of two, one production span,
//! experiments and their rows, two experiments compared), a login that turns a bearer token
//! into a session cookie, the actions a write token may take (set or move a tag, roll one
//! back, advance or stop a canary rollout), and the playground on a version's page (write
//! tokens only).
//!
//! Pages are plain functions over typed views that write through `html::Html`, which escapes
//! every piece of text: no template engine to learn, nothing compiled at build time, and no way
//! for a prompt's text to become markup. The stylesheet is embedded in the binary; the one script
//! is the playground's, inline, and the Content-Security-Policy allows it by its hash alone.

mod diff;
mod handlers;
pub mod html;
mod pages;
mod playground;
pub mod session;

use crate::access::Tokens;
use crate::compare::{Comparison, RowPair};
use crate::config::Config;
use crate::store::{Store, StoreError};
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use session::{Keys, Session};
use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};

/// Nothing from another origin, no plugin; the one script is the playground's, allowed by
/// its hash (any other inline or injected script is refused), and it may fetch only from here;
/// forms post only here; never framed.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(pages::PLAYGROUND_SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; \
         script-src 'sha256-{hash}'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
});

/// Comparisons kept computed, newest first: a comparison of two large finished experiments is
/// read once and then paged from memory.
const CACHED_COMPARISONS: usize = 8;

/// What the pages need, from the command that serves them.
pub struct Settings {
    pub store: Arc<dyn Store>,
    /// None: no authentication (the server is then bound to loopback).
    pub tokens: Option<Arc<Tokens>>,
    pub config: Config,
}

/// A comparison as a page keeps it: its figures and changed rows, and every row with its
/// pass on each side (for "all"); no row's texts, which each page reads for its own rows.
pub(crate) struct KeptComparison {
    pub comparison: Comparison,
    pub rows: Vec<RowPair>,
}

/// Comparisons by (baseline id, candidate id), newest first.
type ComparisonCache = VecDeque<((String, String), Arc<KeptComparison>)>;

/// State shared by every page.
pub(crate) struct Ui {
    store: Arc<dyn Store>,
    tokens: Option<Arc<Tokens>>,
    config: Config,
    keys: Keys,
    /// (baseline id, candidate id) → comparison of finished experiments.
    comparisons: Mutex<ComparisonCache>,
}

/// The pages and their assets, to be merged beside the API (same port, same guards).
pub fn router(settings: Settings) -> Result<Router, String> {
    let ui = Arc::new(Ui {
        store: settings.store,
        tokens: settings.tokens,
        config: settings.config,
        keys: Keys::generate()?,
        comparisons: Mutex::new(VecDeque::new()),
    });
    Ok(Router::new()
        .route("/", get(handlers::library))
        .route("/assets/style.css", get(handlers::stylesheet))
        .route("/login", get(handlers::login_form).post(handlers::login))
        .route("/logout", post(handlers::logout))
        .route("/prompts/{name}", get(handlers::prompt))
        .route("/prompts/{name}/versions/{seq}", get(handlers::version))
        .route("/prompts/{name}/versions/{seq}/try", post(playground::run))
        .route(
            "/prompts/{name}/versions/{seq}/try/stream",
            post(playground::stream),
        )
        .route(
            "/prompts/{name}/versions/{seq}/save",
            post(playground::save),
        )
        .route("/prompts/{name}/diff", get(handlers::diff))
        .route("/prompts/{name}/experiments", get(handlers::experiments))
        .route("/prompts/{name}/tags", post(handlers::set_tag))
        .route("/prompts/{name}/rollback", post(handlers::rollback))
        .route(
            "/prompts/{name}/rollouts/advance",
            post(handlers::advance_rollout),
        )
        .route(
            "/prompts/{name}/rollouts/stop",
            post(handlers::stop_rollout),
        )
        .route("/experiments", get(handlers::all_experiments))
        .route("/experiments/{id}", get(handlers::experiment))
        .route("/spans/{span_id}", get(handlers::span))
        .route("/compare", get(handlers::compare))
        .with_state(ui))
}

impl Ui {
    /// Runs store work on a blocking thread: a large experiment takes a while to read.
    async fn blocking<T, F>(self: &Arc<Self>, work: F) -> Result<T, UiError>
    where
        F: FnOnce(&Ui) -> Result<T, UiError> + Send + 'static,
        T: Send + 'static,
    {
        let ui = Arc::clone(self);
        // The request's span follows the work, so its log lines carry the request id.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| work(&ui)))
            .await
            .map_err(|e| UiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    }

    fn cached_comparison(&self, key: &(String, String)) -> Option<Arc<KeptComparison>> {
        let cache = self.comparisons.lock().unwrap_or_else(|e| e.into_inner());
        cache.iter().find(|(k, _)| k == key).map(|(_, c)| c.clone())
    }

    fn keep_comparison(&self, key: (String, String), comparison: Arc<KeptComparison>) {
        let mut cache = self.comparisons.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(k, _)| *k != key);
        cache.push_front((key, comparison));
        cache.truncate(CACHED_COMPARISONS);
    }
}

/// Who is looking at a page, and what they may do.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    session: Option<Session>,
    /// The server has token files (so there is a login and a logout).
    auth: bool,
    csrf: String,
}

impl Viewer {
    fn can_write(&self) -> bool {
        match &self.session {
            None => !self.auth,
            Some(session) => session.access.writes(),
        }
    }

    /// What the viewer may do to a protected tag: the deploy role comes with a deploy token's
    /// session only.
    fn tag_role(&self) -> crate::store::TagRole {
        self.session
            .as_ref()
            .map_or(crate::store::TagRole::Writer, |s| s.access.tag_role())
    }

    /// Who a change made from the pages is recorded as: `ui`, or `ui:NAME` for a named token
    /// (as the API records `api:NAME`).
    fn actor(&self) -> String {
        match self.session.as_ref().and_then(|s| s.name.as_deref()) {
            Some(name) => format!("ui:{name}"),
            None => "ui".to_string(),
        }
    }

    fn label(&self) -> String {
        let who = self.actor();
        if !self.can_write() {
            format!("{who} (read-only)")
        } else if self.tag_role() == crate::store::TagRole::Deploy {
            format!("{who} (deploy)")
        } else {
            who
        }
    }
}

impl FromRequestParts<Arc<Ui>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Arc<Ui>) -> Result<Viewer, Response> {
        if ui.tokens.is_none() {
            return Ok(Viewer {
                session: None,
                auth: false,
                csrf: ui.keys.csrf(None),
            });
        }
        let session = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|header| session::cookie(header, session::COOKIE))
            .and_then(|value| ui.keys.verify(value, session::unix_now()));
        match session {
            Some(session) => Ok(Viewer {
                csrf: ui.keys.csrf(Some(&session)),
                session: Some(session),
                auth: true,
            }),
            None if parts.method == axum::http::Method::GET => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                Err(redirect(&format!("/login?next={}", html::url_part(next))))
            }
            None => Err(UiError::new(
                StatusCode::UNAUTHORIZED,
                "not logged in (or the session expired): log in and try again",
            )
            .into_response()),
        }
    }
}

/// An error page's status and message.
#[derive(Debug)]
pub(crate) struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> UiError {
        let status = match &e {
            StoreError::UnknownPrompt { .. }
            | StoreError::UnknownVersion { .. }
            | StoreError::UnknownTag { .. }
            | StoreError::UnknownExperiment { .. } => StatusCode::NOT_FOUND,
            StoreError::ProtectedTag { tag, action, .. } => {
                // As the API answers: the viewer lacks the deploy role.
                let doing = match action {
                    crate::model::TagAction::Delete => "deleting",
                    crate::model::TagAction::Rollback => "rolling back",
                    _ => "moving",
                };
                return UiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "tag '{tag}' is protected: {doing} it needs a deploy token, or force \
                         (tick \"force a protected tag\" and type a reason)"
                    ),
                );
            }
            StoreError::TagMoved { .. } => StatusCode::CONFLICT,
            e if e.is_invalid_input() => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(inner) = cause {
            message.push_str(&format!(": {inner}"));
            cause = inner.source();
        }
        UiError::new(status, message)
    }
}

impl From<crate::error::Error> for UiError {
    fn from(e: crate::error::Error) -> UiError {
        UiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = pages::error_page(self.status, &self.message);
        page_response(self.status, page)
    }
}

/// An HTML page with the headers every page carries.
fn page_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn secure_headers(headers: &mut axum::http::HeaderMap) {
    if let Ok(csp) = HeaderValue::from_str(&CSP) {
        headers.insert(CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// 303 See Other to a path of this server.
fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    // Only paths built here reach this; a value that is not a valid header falls back to `/`.
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/"));
    response.headers_mut().insert(LOCATION, location);
    secure_headers(response.headers_mut());
    response
}
