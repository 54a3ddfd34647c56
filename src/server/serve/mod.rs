//! The HTTP API behind `runner serve`: Phoenix's prompt routes (and a few of runner's own) over
//! the store, with bearer-token auth, ETags on versions, short cache lifetimes on tag lookups and
//! Phoenix's plain-text error bodies. It holds no rule of its own and never opens the store: the
//! tag policy and version numbering are decided inside the store's writes, and the web pages are
//! `ui`'s.
//!
//! The store is opened once by the command and shared by every request; a write may wait on
//! the store's lock, so writes run on a blocking thread.
//!
//! This module holds the router and the state every request shares. The accept loop and the
//! limits on connections (`serve`, `Limits`) are in `conn`, bearer tokens in `auth`, the Host,
//! Origin and Content-Type checks that stop cross-site requests in `guard`, error replies in
//! `error`, and the routes in `prompts`, `tags` and `rollouts`.

pub mod wire;

mod annotations;
mod auth;
mod conn;
mod datasets;
mod error;
mod experiments;
mod guard;
mod otlp;
mod promotions;
mod prompts;
mod rollouts;
mod store_rpc;
mod tags;
mod trace;

pub use crate::access::{Access, MIN_TOKEN_CHARS, TokenError, Tokens};
pub use auth::ACTOR_HEADER;
pub use conn::{
    DEFAULT_HEADER_TIMEOUT_SECS, DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_CONNECTIONS, Limits, serve,
};
pub use error::ApiError;
pub use otlp::DEFAULT_TRACE_BODY_LIMIT;
pub use prompts::{ROLLOUT_HEADER, TAG_MAX_AGE_SECS};
pub use tags::FORCE_HEADER;

use crate::config::Config;
use crate::store::Store;
use auth::authenticate;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use error::{ApiResult, unknown_version};
use prompts::{
    archive_prompt, create_prompt, create_version, latest_version, list_prompts, list_versions,
    patch_prompt, tagged_version, version_by_id,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tags::{add_version_tag, delete_version_tag, list_prompt_tags, list_version_tags, tag_history};

/// Largest request body accepted; a prompt version is text, so 1 MiB is generous and bounds
/// what one request can make the server hold in memory.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Version bodies kept in memory (a few KiB each).
const MAX_CACHED_BODIES: usize = 4096;

const CACHE_NONE: &str = "no-cache";

/// The Phoenix release whose prompt API `runner serve` answers as (tests/compat checks it).
pub const PHOENIX_API_VERSION: &str = "20.26.1";

/// Everything the server needs, validated by the command layer.
pub struct Settings {
    pub store: Arc<dyn Store>,
    /// None: no authentication (the command layer allows that on loopback only).
    pub tokens: Option<Tokens>,
    /// Which tags are protected.
    pub config: Config,
    pub body_limit: usize,
    /// Where spans and annotations go; None starts one with the default settings.
    pub ingest: Option<Arc<crate::ingest::Ingest>>,
    /// Largest OTLP body (`POST /v1/traces`), compressed or not.
    pub trace_body_limit: usize,
}

/// State shared by every request.
struct Shared {
    store: Arc<dyn Store>,
    tokens: Option<Arc<Tokens>>,
    config: Config,
    /// Response bodies of versions by version id. Versions are immutable, so a body never goes
    /// stale; it spares the hot tag lookup from reading the whole version and building its JSON.
    /// Whether its prompt is still live (not archived) can change: see `CachedBody`.
    bodies: Mutex<HashMap<String, CachedBody>>,
    ingest: Arc<crate::ingest::Ingest>,
    trace_body_limit: usize,
    /// Running rollouts by (prompt, tag): which lookups may be under a rollout (each such
    /// lookup then reads its rollout afresh). Read again when the routing feed moves, or at
    /// most once a second without one.
    rollouts: Mutex<RolloutCache>,
    /// The store's word of changes to prompts, versions, tags and rollouts (PostgreSQL), which
    /// lets `targets` keep answers; None on a store without it (SQLite reads are local).
    feed: Option<Arc<crate::store::RoutingFeed>>,
    /// Which version id each tag (and each prompt's latest) named, valid while the feed
    /// stands where it stood when they were read.
    targets: Mutex<TargetCache>,
    /// The examples of dataset versions runs were posted for, by version id (versions never
    /// change): a run names its example, and parsing the version for each would cost the
    /// whole version per run. A few versions are kept.
    examples: Mutex<HashMap<String, Arc<Vec<crate::workflow::examples::Example>>>>,
    /// Tokens of the store by the sha256 of their secret, as last read (None: no such valid
    /// token), each trusted for `STORED_TOKEN_TTL`: a revoked token stops working within it.
    stored_tokens: Mutex<HashMap<[u8; 32], StoredToken>>,
}

/// A store token as last read: its name and access (None: no such valid token), and when.
type StoredToken = (Option<(String, crate::access::Access)>, std::time::Instant);

/// How long a token read from the store is trusted before it is read again.
const STORED_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Default)]
struct RolloutCache {
    read_at: Option<std::time::Instant>,
    /// Where the routing feed stood before the read, if it was trusted then and still stood
    /// there after: the read stays good until the feed moves.
    feed_at: Option<u64>,
    running: HashMap<(String, String), Arc<crate::canary::Rollout>>,
}

/// Version ids by (prompt, tag; None for the prompt's latest), all read while the routing feed
/// stood at `feed_at`.
#[derive(Default)]
struct TargetCache {
    feed_at: u64,
    ids: HashMap<(String, Option<String>), String>,
}

/// The most tag targets kept; past it the map is emptied and filled again by the next lookups.
const MAX_CACHED_TARGETS: usize = 4096;

/// How long the running rollouts read from the store are trusted without a routing feed.
const ROLLOUT_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// With a routing feed, the shortest time between two reads of the running rollouts.
const ROLLOUT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// A version's `{"data": …}` body, serialised once, with its ETag: the sha256 of the body
/// itself, so any change to any byte of the answer (another version id or number behind a tag,
/// even with the same content hash) is a new validator.
#[derive(Clone)]
struct VersionBody {
    /// The opaque part of the ETag (lower-case hex), which `If-None-Match` is compared with.
    digest: Arc<str>,
    /// `"<digest>"`, ready to send.
    etag: HeaderValue,
    body: Bytes,
    /// The version's id and its prompt's name, for the lookup roll-up.
    id: Arc<str>,
    prompt: Arc<str>,
}

impl VersionBody {
    fn new(body: Vec<u8>, id: &str, prompt: &str) -> VersionBody {
        use sha2::{Digest, Sha256};
        let digest = crate::model::hex(&Sha256::digest(&body));
        let etag = HeaderValue::from_str(&format!("\"{digest}\""))
            .expect("hex digits are a valid header value");
        VersionBody {
            digest: digest.into(),
            etag,
            body: Bytes::from(body),
            id: id.into(),
            prompt: prompt.into(),
        }
    }
}

/// A version body kept in memory, with where the routing feed stood when its prompt was last
/// seen live. A lookup by id serves it without reading the store only while the feed still
/// stands there (an archive by any program moves it); otherwise, and always without a feed, it
/// reads the version again (one indexed read that also says whether the prompt is archived)
/// and only the encoding is spared.
#[derive(Clone)]
struct CachedBody {
    body: VersionBody,
    live_at: Option<u64>,
}

/// Which version a GET names.
enum Lookup {
    Latest(String),
    Tag(String, String),
    Id(String),
    /// A version its caller has just seen live (a running rollout's arm: its rollout was read
    /// now, and a rollout of an archived prompt is not running).
    LiveId(String),
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
        // The request's span follows the work, so its log lines carry the request id.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| shared.read_now(work)))
            .await
            .map_err(|e| ApiError::internal(format!("request worker failed: {e}")))?
    }

    /// Runs `work` right here. Async handlers call it only for short indexed reads: in WAL mode
    /// a reader does not wait for writers, so such a read takes microseconds, and a blocking
    /// thread would cost two thread switches on the hottest route.
    fn read_now<T>(&self, work: impl FnOnce(&dyn Store) -> ApiResult<T>) -> ApiResult<T> {
        work(&*self.store)
    }

    /// The name and access of a token kept in the store, if `presented` is one that is valid
    /// now (not revoked, not expired).
    async fn stored_token(
        self: &Arc<Self>,
        presented: &[u8],
    ) -> Option<(String, crate::access::Access)> {
        let digest: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            presented,
        ))
        .into();
        {
            let cache = self.stored_tokens.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((found, at)) = cache.get(&digest)
                && at.elapsed() < STORED_TOKEN_TTL
            {
                return found.clone();
            }
        }
        let hex = crate::model::hex(&digest);
        let found = self
            .with_store(move |store| Ok(store.token_by_digest(&hex)?))
            .await
            .ok()
            .flatten()
            .filter(|t| t.valid_at(time::OffsetDateTime::now_utc()))
            .and_then(|t| {
                crate::access::Access::from_role_name(&t.role).map(|access| (t.name, access))
            });
        let mut cache = self.stored_tokens.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(digest, (found.clone(), std::time::Instant::now()));
        found
    }

    /// Drops what is known of the running rollouts, after this server started, advanced or
    /// stopped one: the next lookup reads them afresh.
    fn forget_rollouts(&self) {
        let mut cache = self.rollouts.lock().unwrap_or_else(|e| e.into_inner());
        cache.read_at = None;
        cache.feed_at = None;
    }

    /// Where the routing feed stands, if there is one and it can be trusted now.
    fn feed_at(&self) -> Option<u64> {
        self.feed.as_ref().and_then(|feed| feed.current())
    }

    /// Whether a read that began with the feed trusted at `before` may be kept: the feed has
    /// not moved since, so no change committed meanwhile may or may not be in what was read.
    fn feed_stood_still(&self, before: Option<u64>) -> bool {
        before.is_some() && self.feed_at() == before
    }

    /// The version id `key` names (a prompt's tag, or with None its latest): kept from an
    /// earlier read while the routing feed has not moved since, read by `read` otherwise.
    fn target(
        &self,
        key: (String, Option<String>),
        read: impl FnOnce(&str, Option<&str>) -> crate::store::Result<(String, String)>,
    ) -> ApiResult<String> {
        let feed_at = self.feed_at();
        if let Some(at) = feed_at {
            let cache = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            if cache.feed_at == at
                && let Some(id) = cache.ids.get(&key)
            {
                return Ok(id.clone());
            }
        }
        let id = read(&key.0, key.1.as_deref())?.0;
        if let Some(at) = feed_at {
            let mut cache = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            if self.feed_stood_still(feed_at) {
                if cache.feed_at != at || cache.ids.len() >= MAX_CACHED_TARGETS {
                    cache.ids.clear();
                    cache.feed_at = at;
                }
                cache.ids.insert(key, id.clone());
            }
        }
        Ok(id)
    }

    /// The running rollout of `prompt`'s `tag`, if one runs and the tag still points at its
    /// baseline (a tag moved by hand is served as it now points).
    fn rollout(&self, prompt: &str, tag: &str) -> ApiResult<Option<Arc<crate::canary::Rollout>>> {
        let found = {
            let mut cache = self.rollouts.lock().unwrap_or_else(|e| e.into_inner());
            let feed_at = self.feed_at();
            // With the feed, read again once it moved, but not more often than every
            // ROLLOUT_RETRY: a read that failed, or that a change overtook, is not repeated by
            // every lookup while the store is down or busy with routing writes.
            let stale = match feed_at {
                Some(at) => {
                    cache.feed_at != Some(at)
                        && cache
                            .read_at
                            .is_none_or(|read| read.elapsed() >= ROLLOUT_RETRY)
                }
                None => cache
                    .read_at
                    .is_none_or(|read| read.elapsed() >= ROLLOUT_REFRESH),
            };
            if stale {
                // A failed read keeps what was known: lookups go on.
                let read = self.read_now(|store| Ok(store.rollouts(None, true)?));
                cache.feed_at = None;
                match read {
                    Ok(running) => {
                        cache.running = running
                            .into_iter()
                            .map(|r| ((r.prompt.clone(), r.tag.clone()), Arc::new(r)))
                            .collect();
                        if self.feed_stood_still(feed_at) {
                            cache.feed_at = feed_at;
                        }
                    }
                    Err(e) => tracing::warn!("cannot read the running rollouts: {}", e.message),
                }
                cache.read_at = Some(std::time::Instant::now());
            }
            cache
                .running
                .get(&(prompt.to_string(), tag.to_string()))
                .cloned()
        };
        // The cache says whether a rollout may run (a new one is served within a second, or 0.1 s with a routing feed); what
        // changes while it runs (status, step, the tag's target) is read now, in one indexed
        // read, so one that ended or stepped up is followed at once.
        let Some(rollout) = found else {
            return Ok(None);
        };
        let now = self.read_now(|store| Ok(store.rollout_now(&rollout.id)?))?;
        match now {
            Some(now) if now.status == crate::canary::Status::Running && now.on_baseline => {
                if now.step == rollout.step {
                    return Ok(Some(rollout));
                }
                // Stepped since the cache was read: serve the new step, and read the rollouts
                // again at the next lookup.
                self.forget_rollouts();
                let mut stepped = (*rollout).clone();
                stepped.step = now.step;
                Ok(Some(Arc::new(stepped)))
            }
            Some(now) if now.status == crate::canary::Status::Running => Ok(None),
            _ => {
                self.forget_rollouts();
                Ok(None)
            }
        }
    }

    /// Drops every cached body: an archived prompt's versions must not be served by id.
    fn forget_bodies(&self) {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn cached_body(&self, id: &str) -> Option<CachedBody> {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The body of the version `lookup` names: a tag or latest lookup is one small query (none
    /// while the routing feed stands still), and the version itself is read and serialised
    /// only the first time it is served. A lookup by id is answered from memory only while the
    /// feed stands where it stood when the version's prompt was last seen live: a prompt
    /// archived by another program is not served by id.
    fn version_body(&self, lookup: Lookup) -> ApiResult<VersionBody> {
        if let Lookup::Id(id) = &lookup
            && let Some(at) = self.feed_at()
            && let Some(cached) = self.cached_body(id)
            && cached.live_at == Some(at)
        {
            return Ok(cached.body);
        }
        self.read_now(|store| {
            let feed_at = self.feed_at();
            // A tag or latest target was read (or kept while the feed stood still) with its
            // prompt live; an id names a version of any prompt, archived or not.
            let (id, live) = match lookup {
                Lookup::Latest(prompt) => (
                    self.target((prompt, None), |prompt, _| store.latest_target(prompt))?,
                    true,
                ),
                Lookup::Tag(prompt, tag) => (
                    self.target((prompt, Some(tag)), |prompt, tag| {
                        store.tag_target(prompt, tag.unwrap_or_default())
                    })?,
                    true,
                ),
                Lookup::Id(id) => (id, false),
                Lookup::LiveId(id) => (id, true),
            };
            let cached = self.cached_body(&id);
            if live && let Some(cached) = &cached {
                return Ok(cached.body.clone());
            }
            let Some(version) = store.version_by_id(&id)? else {
                self.bodies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                return Err(unknown_version(&id));
            };
            let body = match cached {
                Some(cached) => cached.body,
                None => {
                    let body = serde_json::to_vec(&json!({"data": wire::version_json(&version)}))
                        .map_err(|e| {
                        ApiError::internal(format!("cannot encode version {id}: {e}"))
                    })?;
                    VersionBody::new(body, &version.id, &version.prompt)
                }
            };
            let live_at = feed_at.filter(|_| self.feed_stood_still(feed_at));
            let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
            match bodies.get_mut(&id) {
                Some(kept) => kept.live_at = live_at,
                None => {
                    // A crude bound: past it, versions are read from the store again once
                    // each, which costs a query, not correctness.
                    if bodies.len() >= MAX_CACHED_BODIES {
                        bodies.clear();
                    }
                    bodies.insert(
                        id,
                        CachedBody {
                            body: body.clone(),
                            live_at,
                        },
                    );
                }
            }
            Ok(body)
        })
    }
}

/// The application: every route, the auth layer and the body limit, over the store the caller
/// opened (so a store that cannot be opened fails before the server binds), with the web UI
/// (`crate::ui`) beside the API on the same port and behind the same Host and Origin checks.
pub fn router(settings: Settings) -> Result<Router, String> {
    let tokens = settings.tokens.map(Arc::new);
    let pages = crate::ui::router(crate::ui::Settings {
        store: settings.store.clone(),
        tokens: tokens.clone(),
        config: settings.config.clone(),
    })?;
    let ingest = settings.ingest.unwrap_or_else(|| {
        crate::ingest::Ingest::start(settings.store.clone(), crate::ingest::Settings::default())
    });
    let feed = settings.store.routing_feed();
    let shared = Arc::new(Shared {
        store: settings.store,
        tokens,
        config: settings.config,
        bodies: Mutex::new(HashMap::new()),
        ingest,
        trace_body_limit: settings.trace_body_limit,
        rollouts: Mutex::new(RolloutCache::default()),
        feed,
        targets: Mutex::new(TargetCache::default()),
        examples: Mutex::new(HashMap::new()),
        stored_tokens: Mutex::new(HashMap::new()),
    });
    let api = Router::new()
        .route("/v1/prompts", get(list_prompts).post(create_prompt))
        .route(
            "/v1/prompts/{prompt}",
            axum::routing::patch(patch_prompt).delete(archive_prompt),
        )
        .route(
            "/v1/prompts/{prompt}/versions",
            get(list_versions).post(create_version),
        )
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
        .route(
            "/v1/prompts/{prompt}/rollouts",
            get(rollouts::list_rollouts).post(rollouts::start_rollout),
        )
        .route(
            "/v1/prompts/{prompt}/rollouts/{tag}",
            get(rollouts::rollout_status),
        )
        .route(
            "/v1/prompts/{prompt}/rollouts/{tag}/advance",
            post(rollouts::advance_rollout),
        )
        .route(
            "/v1/prompts/{prompt}/rollouts/{tag}/stop",
            post(rollouts::stop_rollout),
        )
        .route("/v1/datasets", get(datasets::list_datasets))
        .route(
            "/v1/datasets/{id}",
            get(datasets::get_dataset).delete(datasets::delete_dataset),
        )
        .route("/v1/datasets/{id}/versions", get(datasets::list_versions))
        .route("/v1/datasets/{id}/examples", get(datasets::list_examples))
        .route(
            "/v1/datasets/{id}/experiments",
            get(experiments::list_experiments).post(experiments::create_experiment),
        )
        .route(
            "/v1/experiments/{id}",
            get(experiments::get_experiment).delete(experiments::delete_experiment),
        )
        .route(
            "/v1/experiments/{id}/runs",
            get(experiments::list_runs).post(experiments::create_run),
        )
        .route("/v1/experiments/{id}/json", get(experiments::export_json))
        .route(
            "/v1/experiment_evaluations",
            post(experiments::upsert_evaluation),
        )
        .route("/v1/promotions", post(promotions::promote))
        .route("/v1/span_annotations", post(annotations::span_annotations))
        .route(
            "/v1/trace_annotations",
            post(annotations::trace_annotations),
        )
        // Layers run from the last added: authentication first, then the body's media type.
        .route_layer(middleware::from_fn(guard::check_content_type))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ));
    // OTLP has its own media types (protobuf or JSON) and its own size limit; a page cannot
    // send either media type cross-site without a preflight the server never answers.
    // Uploads come as JSON or as a multipart form with a file (the clients' CSV and DataFrame
    // uploads), so the JSON-only check is the handler's; a page cannot send either across
    // origins past `guard::check_origin`.
    let uploads = Router::new()
        .route("/v1/datasets/upload", post(datasets::upload))
        .layer(DefaultBodyLimit::max(datasets::UPLOAD_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ));
    // The store behind a remote store (`runner --db https://…`): each call checked against
    // the token's role (`store_rpc`).
    let store_route = Router::new()
        .route("/v1/store", get(store_rpc::hello))
        .route("/v1/store/{op}", post(store_rpc::call))
        .layer(DefaultBodyLimit::max(store_rpc::STORE_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ));
    let traces = Router::new()
        .route("/v1/traces", post(otlp::export))
        .layer(DefaultBodyLimit::max(shared.trace_body_limit))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ));
    Ok(Router::new()
        // Open to liveness probes, which carry no token; it tells nothing about the prompts.
        .route("/healthz", get(healthz))
        // The Phoenix clients ask for the server's version before some calls (update, delete)
        // and refuse to go on without one; runner answers the Phoenix version whose API it
        // speaks.
        .route(
            "/arize_phoenix_version",
            get(|| async { PHOENIX_API_VERSION }),
        )
        .merge(api)
        .merge(store_route)
        .merge(traces)
        .merge(uploads)
        .with_state(Arc::clone(&shared))
        .merge(pages)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(settings.body_limit))
        // Before anything else, on every route: Host and Origin (see `guard`).
        .layer(middleware::from_fn_with_state(shared, guard::check_origin))
        // Outermost: every request, even a refused one, gets its id and its log line.
        .layer(middleware::from_fn(trace::request)))
}

async fn healthz(State(shared): State<Arc<Shared>>) -> ApiResult {
    let schema = shared
        .with_store(|store| Ok(store.schema_version()?))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.message))?;
    Ok(Json(json!({"status": "ok", "schema_version": schema})).into_response())
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

/// A prompt name from a path: an invalid one is 422, as in Phoenix.
fn prompt_name(name: String) -> ApiResult<String> {
    crate::model::check_name(crate::model::NameKind::Prompt, &name).map_err(|reason| {
        ApiError::unprocessable(format!("invalid prompt name '{name}': {reason}"))
    })?;
    Ok(name)
}

/// A tag name from a path: an invalid one is 422, as in Phoenix.
fn tag_name(name: String) -> ApiResult<String> {
    crate::model::check_name(crate::model::NameKind::Tag, &name).map_err(|reason| {
        ApiError::unprocessable(format!("invalid tag name '{name}': {reason}"))
    })?;
    Ok(name)
}

/// A version id from a path: one that is not a version id at all is 422, as in Phoenix; an
/// id of a version's form that names no version is 404: runner's own form (a UUID) and
/// Phoenix's (base64 of `PromptVersion:…`, which a client that moved from Phoenix may hold).
fn version_id(id: String) -> ApiResult<String> {
    let phoenix_form = matches!(
        crate::workflow::examples::decode("PromptVersion", &id),
        crate::workflow::examples::Decoded::Is(_)
    );
    if uuid::Uuid::parse_str(&id).is_ok() || phoenix_form {
        return Ok(id);
    }
    Err(ApiError::unprocessable(format!(
        "invalid prompt version id '{id}'"
    )))
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

/// Reads a JSON body (its `Content-Type: application/json` was checked by `guard`), with 413
/// for a body over the limit and 422 naming what is wrong otherwise.
fn json_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is over the size limit",
            )
        } else if let Some(late) = timed_out(&e) {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, late.to_string())
        } else {
            ApiError::new(e.status(), e.body_text())
        }
    })?;
    crate::json::from_slice(&bytes)
        .map_err(|e| ApiError::unprocessable(format!("invalid JSON body: {e}")))
}

/// The body deadline (`conn`) among the causes of a body that could not be read.
fn timed_out(rejection: &BytesRejection) -> Option<&conn::BodyTimedOut> {
    let mut cause = std::error::Error::source(rejection);
    while let Some(error) = cause {
        if let Some(late) = error.downcast_ref::<conn::BodyTimedOut>() {
            return Some(late);
        }
        cause = error.source();
    }
    None
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
