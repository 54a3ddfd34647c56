//! The HTTP API behind `runner serve`: Phoenix's prompt routes (and a few of runner's own) over
//! the store, with bearer-token auth, ETags on versions, short cache lifetimes on tag lookups and
//! Phoenix's plain-text error bodies.
//!
//! The store is opened once by the command and shared by every request; a write may wait on
//! the store's lock, so writes run on a blocking thread.

pub mod wire;

use crate::config::Config;
use crate::model::{NameKind, PromptVersion, VersionRef, check_name};
use crate::store::{Expect, Store, StoreError, TagChange};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Largest request body accepted; a prompt version is text, so 1 MiB is generous and bounds
/// what one request can make the server hold in memory.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How long a client may reuse a tag or latest lookup: a tag move is seen within this many
/// seconds while an application polling every request still mostly hits its cache.
pub const TAG_MAX_AGE_SECS: u32 = 5;

/// Tokens shorter than this are refused when the token file is read: a guessable token is no
/// authentication.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Narrows the caller recorded on tag moves and versions (see `Caller`).
pub const ACTOR_HEADER: &str = "x-runner-actor";

/// Asks to move or delete a protected tag, for clients that cannot add `?force=true` to a URL
/// (the Phoenix clients take extra headers only when they are built).
pub const FORCE_HEADER: &str = "x-runner-force";

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
const MAX_ACTOR_CHARS: usize = 64;
/// Version bodies kept in memory (a few KiB each).
const MAX_CACHED_BODIES: usize = 4096;

const CACHE_VERSION_BY_ID: &str = "max-age=31536000, immutable";
const CACHE_NONE: &str = "no-cache";

/// Everything the server needs, validated by the command layer.
pub struct Settings {
    pub store: Arc<dyn Store>,
    /// None: no authentication (the command layer allows that on loopback only).
    pub tokens: Option<Tokens>,
    /// Which tags are protected.
    pub config: Config,
    pub body_limit: usize,
}

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// GET (and HEAD) only.
    ReadOnly,
    ReadWrite,
}

/// The accepted bearer tokens, kept only as sha256 digests so that comparing them takes the
/// same time whatever the presented token's length or content.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

struct TokenEntry {
    name: Option<String>,
    digest: [u8; 32],
    access: Access,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("line {line}: a token needs at least {MIN_TOKEN_CHARS} characters")]
    Short { line: usize },
    #[error("line {line}: a token may not contain spaces")]
    Whitespace { line: usize },
    #[error("line {line}: this token is already listed (a token has one name and one access)")]
    Duplicate { line: usize },
    #[error("no tokens (every line is blank or a # comment)")]
    Empty,
}

impl Tokens {
    /// Adds the tokens of one file: one per line, `TOKEN` or `NAME:TOKEN` (NAME made of letters,
    /// digits, `_`, `-`, `.`), blank lines and `#` comments ignored. Returns how many were read.
    pub fn add_file(&mut self, text: &str, access: Access) -> Result<usize, TokenError> {
        let mut added = 0;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (name, token) = match entry.split_once(':') {
                Some((name, token)) if check_name(NameKind::Prompt, name).is_ok() => {
                    (Some(name.to_string()), token)
                }
                _ => (None, entry),
            };
            if token.chars().any(char::is_whitespace) {
                return Err(TokenError::Whitespace { line });
            }
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(TokenError::Short { line });
            }
            let digest = digest(token.as_bytes());
            if self.entries.iter().any(|e| e.digest == digest) {
                return Err(TokenError::Duplicate { line });
            }
            self.entries.push(TokenEntry {
                name,
                digest,
                access,
            });
            added += 1;
        }
        if added == 0 {
            return Err(TokenError::Empty);
        }
        Ok(added)
    }

    /// How many tokens allow this access.
    pub fn count(&self, access: Access) -> usize {
        self.entries.iter().filter(|e| e.access == access).count()
    }

    /// The entry whose token is `presented`. Every entry is compared in full, without an early
    /// exit, so the time taken tells nothing about how close a guess was.
    fn find(&self, presented: &[u8]) -> Option<&TokenEntry> {
        let presented = digest(presented);
        let mut found = None;
        for entry in &self.entries {
            let difference = entry
                .digest
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if std::hint::black_box(difference) == 0 {
                found = Some(entry);
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A short fingerprint of a presented token for the log: a wrong token is never written out,
/// not even in part, yet repeated attempts with the same one can be told apart.
fn fingerprint(token: &[u8]) -> String {
    crate::model::hex(&digest(token)[..4])
}

/// Who is calling, as recorded in the tag history and on versions: `api`, or `api:NAME` for a
/// named token, followed by ` (ACTOR)` when the request names a person or job in the
/// `X-Runner-Actor` header. The token decides the prefix, so a header cannot pass for another
/// token's name.
#[derive(Debug, Clone)]
struct Caller {
    actor: String,
}

/// An error as Phoenix sends it: a status and a plain-text message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    fn internal(message: impl Into<String>) -> ApiError {
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

type ApiResult<T = Response> = Result<T, ApiError>;

/// State shared by every request.
struct Shared {
    store: Arc<dyn Store>,
    tokens: Option<Tokens>,
    config: Config,
    /// Response bodies of versions by version id. Versions are immutable, so an entry never goes
    /// stale; it spares the hot tag lookup from reading the whole version and building its JSON.
    bodies: Mutex<HashMap<String, VersionBody>>,
}

/// A version's `{"data": …}` body, serialised once, with its content hash for the ETag.
#[derive(Clone)]
struct VersionBody {
    hash: String,
    body: Bytes,
}

/// Which version a GET names.
enum Lookup {
    Latest(String),
    Tag(String, String),
    Id(String),
}

impl Shared {
    /// Runs `work` on a blocking thread: store calls block, and a write may wait on the busy
    /// timeout while the CLI holds the write lock.
    async fn with_store<T, F>(self: &Arc<Self>, work: F) -> ApiResult<T>
    where
        F: FnOnce(&dyn Store) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || shared.read_now(work))
            .await
            .map_err(|e| ApiError::internal(format!("request worker failed: {e}")))?
    }

    /// Runs `work` right here. Async handlers call it only for short indexed reads: in WAL mode
    /// a reader does not wait for writers, so such a read takes microseconds, and a blocking
    /// thread would cost two thread switches on the hottest route.
    fn read_now<T>(&self, work: impl FnOnce(&dyn Store) -> ApiResult<T>) -> ApiResult<T> {
        work(&*self.store)
    }

    fn cached_body(&self, id: &str) -> Option<VersionBody> {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The body of the version `lookup` names: a tag or latest lookup is one small query, and
    /// the version itself is read and serialised only the first time it is served.
    fn version_body(&self, lookup: Lookup) -> ApiResult<VersionBody> {
        if let Lookup::Id(id) = &lookup
            && let Some(cached) = self.cached_body(id)
        {
            return Ok(cached);
        }
        self.read_now(|store| {
            let id = match lookup {
                Lookup::Latest(prompt) => store.latest_target(&prompt)?.0,
                Lookup::Tag(prompt, tag) => store.tag_target(&prompt, &tag)?.0,
                Lookup::Id(id) => id,
            };
            if let Some(cached) = self.cached_body(&id) {
                return Ok(cached);
            }
            let version = store
                .version_by_id(&id)?
                .ok_or_else(|| unknown_version(&id))?;
            let body = serde_json::to_vec(&json!({"data": wire::version_json(&version)}))
                .map_err(|e| ApiError::internal(format!("cannot encode version {id}: {e}")))?;
            let entry = VersionBody {
                hash: version.content_hash,
                body: Bytes::from(body),
            };
            let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
            // A crude bound: past it, versions are read from the store again once each, which
            // costs a query, not correctness.
            if bodies.len() >= MAX_CACHED_BODIES {
                bodies.clear();
            }
            bodies.insert(id, entry.clone());
            Ok(entry)
        })
    }
}

/// The application: every route, the auth layer and the body limit, over the store the caller
/// opened (so a store that cannot be opened fails before the server binds).
pub fn router(settings: Settings) -> Router {
    let shared = Arc::new(Shared {
        store: settings.store,
        tokens: settings.tokens,
        config: settings.config,
        bodies: Mutex::new(HashMap::new()),
    });
    let api = Router::new()
        .route("/v1/prompts", get(list_prompts).post(create_prompt))
        .route("/v1/prompts/{prompt}/versions", get(list_versions))
        .route("/v1/prompts/{prompt}/latest", get(latest_version))
        .route("/v1/prompts/{prompt}/tags", get(list_prompt_tags))
        .route("/v1/prompts/{prompt}/tags/{tag}", get(tagged_version))
        .route("/v1/prompts/{prompt}/tags/{tag}/history", get(tag_history))
        .route("/v1/prompt_versions/{id}", get(version_by_id))
        .route(
            "/v1/prompt_versions/{id}/tags",
            get(list_version_tags).post(add_version_tag),
        )
        .route(
            "/v1/prompt_versions/{id}/tags/{tag}",
            delete(delete_version_tag),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ));
    Router::new()
        // Open to liveness probes, which carry no token; it tells nothing about the prompts.
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .with_state(shared)
}

/// Serves on an already-bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Replies are small single writes; Nagle's algorithm would hold each one back waiting for
    // the ACK of the previous one on a keep-alive connection.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn authenticate(
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
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                .map(|t| t.trim_ascii());
            match presented {
                None => {
                    eprintln!(
                        "runner serve: 401 {} {}: no bearer token",
                        request.method(),
                        request.uri().path()
                    );
                    return ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "missing bearer token: send Authorization: Bearer TOKEN",
                    )
                    .into_response();
                }
                Some(token) => match tokens.find(token) {
                    Some(entry) => (
                        entry
                            .name
                            .as_ref()
                            .map_or_else(|| "api".to_string(), |n| format!("api:{n}")),
                        entry.access,
                    ),
                    None => {
                        eprintln!(
                            "runner serve: 401 {} {}: unknown token (sha256 {}…)",
                            request.method(),
                            request.uri().path(),
                            fingerprint(token)
                        );
                        return ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token")
                            .into_response();
                    }
                },
            }
        }
    };
    let reads_only = matches!(*request.method(), Method::GET | Method::HEAD);
    if access == Access::ReadOnly && !reads_only {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "this token is read-only: it allows GET requests only",
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
    request.extensions_mut().insert(Caller { actor });
    next.run(request).await
}

fn actor_label(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?.trim();
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    (printable && !text.is_empty() && text.len() <= MAX_ACTOR_CHARS).then_some(text)
}

/// `?cursor=…&limit=…` as Phoenix pages lists.
#[derive(Debug, Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

impl PageQuery {
    fn limit(&self) -> ApiResult<usize> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_PAGE),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
                _ => Err(ApiError::unprocessable(format!(
                    "limit: expected a whole number from 1 to {MAX_PAGE}, got '{text}'"
                ))),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct ForceQuery {
    force: Option<String>,
}

/// Whether the request asks to move or delete a protected tag (`?force=true` or
/// `X-Runner-Force: true`).
fn force_requested(query: &ForceQuery, headers: &HeaderMap) -> ApiResult<bool> {
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

fn path<T>(extracted: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    extracted
        .map(|Path(value)| value)
        .map_err(|e| ApiError::unprocessable(e.body_text()))
}

fn query<T>(extracted: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    extracted
        .map(|Query(value)| value)
        .map_err(|e| ApiError::unprocessable(e.body_text()))
}

/// Reads a JSON body whatever its content type (curl users forget the header), with 413 for a
/// body over the limit and 422 naming what is wrong otherwise.
fn json_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is over the size limit",
            )
        } else {
            ApiError::new(e.status(), e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::unprocessable(format!("invalid JSON body: {e}")))
}

fn data(value: Value) -> Response {
    let mut response = Json(json!({"data": value})).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_NONE));
    response
}

fn page(items: Vec<Value>, next_cursor: Option<String>) -> Response {
    let mut response = Json(json!({"data": items, "next_cursor": next_cursor})).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_NONE));
    response
}

/// A version with its validator: the ETag is the version's content hash, weak because two
/// versions with equal content (same hash) differ in id and number yet send the same prompt.
fn version_response(version: VersionBody, headers: &HeaderMap, cache: &str) -> Response {
    let mut response = if etag_matches(headers, &version.hash) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(CONTENT_TYPE, "application/json")], version.body).into_response()
    };
    let out = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", version.hash)) {
        out.insert(ETAG, etag);
    }
    if let Ok(cache) = HeaderValue::from_str(cache) {
        out.insert(CACHE_CONTROL, cache);
    }
    response
}

/// `If-None-Match` under the weak comparison RFC 9110 prescribes for it: `W/` is ignored.
fn etag_matches(headers: &HeaderMap, hash: &str) -> bool {
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
                    == Some(hash)
        })
}

fn short_cache() -> String {
    format!("max-age={TAG_MAX_AGE_SECS}")
}

async fn healthz(State(shared): State<Arc<Shared>>) -> ApiResult {
    let schema = shared
        .with_store(|store| Ok(store.schema_version()?))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.message))?;
    Ok(Json(json!({"status": "ok", "schema_version": schema})).into_response())
}

async fn list_prompts(
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

async fn create_prompt(
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

async fn list_versions(
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

async fn latest_version(
    State(shared): State<Arc<Shared>>,
    prompt: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let version = shared.version_body(Lookup::Latest(path(prompt)?))?;
    Ok(version_response(version, &headers, &short_cache()))
}

async fn tagged_version(
    State(shared): State<Arc<Shared>>,
    names: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (prompt, tag) = path(names)?;
    let version = shared.version_body(Lookup::Tag(prompt, tag))?;
    Ok(version_response(version, &headers, &short_cache()))
}

async fn version_by_id(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let version = shared.version_body(Lookup::Id(path(id)?))?;
    Ok(version_response(version, &headers, CACHE_VERSION_BY_ID))
}

fn unknown_version(id: &str) -> ApiError {
    ApiError::not_found(format!("unknown prompt version '{id}'"))
}

async fn list_prompt_tags(
    State(shared): State<Arc<Shared>>,
    prompt: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let prompt = path(prompt)?;
    let tags = shared
        .with_store(move |store| Ok(store.prompt_tags(&prompt)?))
        .await?;
    Ok(data(
        tags.iter()
            .map(|(tag, message)| wire::tag_json(tag, message.as_deref()))
            .collect(),
    ))
}

async fn tag_history(
    State(shared): State<Arc<Shared>>,
    names: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (prompt, tag) = path(names)?;
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

async fn list_version_tags(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let id = path(id)?;
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

/// A store error as the API answers it; the refusal of a protected tag changed without force
/// says how to force it over HTTP.
fn protected_or(e: StoreError, tag: &str, action: &str) -> ApiError {
    match e {
        StoreError::ProtectedTag { .. } => ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "tag '{tag}' is protected: {action} it with ?force=true (or X-Runner-Force: true); \
                 a forced change is recorded in the tag history"
            ),
        ),
        other => other.into(),
    }
}

async fn add_version_tag(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<ForceQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = path(id)?;
    let force = force_requested(&query(params)?, &headers)?;
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
            // nothing; moving one needs force. A tag already at this version is left alone.
            let change = TagChange {
                actor: caller.actor,
                message: tag.description.clone(),
                force,
                policy,
                ..TagChange::default()
            };
            store
                .set_tag(&version.prompt, &tag.name, &VersionRef::Id(id), &change)
                .map_err(|e| protected_or(e, &tag.name, "move"))?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_version_tag(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    names: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<ForceQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let (id, tag) = path(names)?;
    let force = force_requested(&query(params)?, &headers)?;
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
                Err(e) => Err(protected_or(e, &tag, "delete")),
            }
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: &str = "0123456789abcdef0123";
    const RO: &str = "fedcba9876543210fedc";

    #[test]
    fn token_files_read_named_and_bare_tokens() {
        let mut tokens = Tokens::default();
        let text = format!("# deploy tokens\n\nci:{RW}\n  {RO}  \n");
        assert_eq!(tokens.add_file(&text, Access::ReadWrite), Ok(2));
        let named = tokens.find(RW.as_bytes()).expect("named token");
        assert_eq!(named.name.as_deref(), Some("ci"));
        assert_eq!(named.access, Access::ReadWrite);
        assert!(tokens.find(RO.as_bytes()).unwrap().name.is_none());
        assert!(tokens.find(b"ci").is_none());
        assert!(tokens.find(format!("ci:{RW}").as_bytes()).is_none());
        assert!(tokens.find(&RW.as_bytes()[..RW.len() - 1]).is_none());
        assert!(tokens.find(b"").is_none());
    }

    #[test]
    fn token_files_refuse_weak_duplicate_or_empty_content() {
        let cases = [
            ("short", TokenError::Short { line: 1 }),
            (
                &format!("# c\n{RW} {RW}") as &str,
                TokenError::Whitespace { line: 2 },
            ),
            (&format!("{RW}\na:{RW}"), TokenError::Duplicate { line: 2 }),
            ("\n# only comments\n", TokenError::Empty),
        ];
        for (text, expected) in cases {
            let mut tokens = Tokens::default();
            assert_eq!(tokens.add_file(text, Access::ReadWrite), Err(expected));
        }
        // The same token cannot be read-write and read-only at once.
        let mut tokens = Tokens::default();
        tokens.add_file(RW, Access::ReadWrite).unwrap();
        assert_eq!(
            tokens.add_file(RW, Access::ReadOnly),
            Err(TokenError::Duplicate { line: 1 })
        );
        assert_eq!(tokens.count(Access::ReadWrite), 1);
        assert_eq!(tokens.count(Access::ReadOnly), 0);
    }

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
