//! The page handlers: read the request, gather typed views from the store on a blocking thread,
//! hand them to a page renderer; and the two actions, which call the store's tag writes under
//! the one tag policy, exactly as `runner tag set` and `runner rollback` do. They write no markup
//! (the pages do) and hold no rule of their own: whether a tag may move is decided inside the
//! store's tag write, and the comparison of two experiments is the promotion workflow's.

use super::pages::{
    self, ComparePage, ExperimentPage, LibraryPage, ProductionSection, PromptPage, ResultFilter,
};
use super::session::{self, Keys};
use super::{KeptComparison, Ui, UiError, Viewer, page_response, redirect};
use crate::model::{NameKind, RunResult, VersionRef, check_name};
use crate::store::{TagChange, TagOutcome};
use crate::trace::{Span, SpanFilter};
use crate::view::{DeploymentView, Evidence, LibraryEntry};
use crate::workflow::Context;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

/// Prompts a library page lists.
pub const LIBRARY_PAGE: usize = 25;
/// Result rows an experiment or comparison page shows.
pub const ROWS_PAGE: usize = 50;
/// Production spans a version's page lists.
pub const RECENT_SPANS: usize = 50;
/// The longest search text accepted.
const MAX_SEARCH: usize = 200;

type Page = Result<Response, UiError>;

fn ok(body: String) -> Page {
    Ok(page_response(StatusCode::OK, body))
}

fn page_number(text: Option<&str>) -> Result<usize, UiError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(1),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => Err(UiError::bad(format!(
                "page: expected a whole number from 1, got '{text}'"
            ))),
        },
    }
}

fn search_text(text: Option<String>) -> Result<String, UiError> {
    let text = text.unwrap_or_default().trim().to_string();
    if text.chars().count() > MAX_SEARCH {
        return Err(UiError::bad(format!(
            "search text: at most {MAX_SEARCH} characters"
        )));
    }
    Ok(text)
}

pub(super) fn prompt_name(name: &str) -> Result<(), UiError> {
    check_name(NameKind::Prompt, name)
        .map_err(|e| UiError::new(StatusCode::NOT_FOUND, format!("no prompt '{name}': {e}")))
}

pub(super) async fn stylesheet() -> Response {
    let mut response = include_str!("assets/style.css").into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

#[derive(Debug, Deserialize)]
pub(super) struct LibraryQuery {
    q: Option<String>,
    tag: Option<String>,
    meta: Option<String>,
    page: Option<String>,
}

pub(super) async fn library(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<LibraryQuery>,
) -> Page {
    let text = search_text(query.q)?;
    let tag = query.tag.filter(|t| !t.trim().is_empty());
    let meta = search_text(query.meta)?;
    let meta_pair = if meta.is_empty() {
        None
    } else {
        let (key, value) = meta
            .split_once('=')
            .ok_or_else(|| UiError::bad(format!("metadata filter '{meta}': expected key=value")))?;
        Some((key.trim().to_string(), value.trim().to_string()))
    };
    let page = page_number(query.page.as_deref())?;
    let body = ui
        .blocking(move |ui| {
            let prompts = ui.store.prompts()?;
            let mut all_tags = std::collections::BTreeSet::new();
            let mut matched = Vec::new();
            for (prompt, latest) in &prompts {
                let tags = ui.store.tags(&prompt.name)?;
                all_tags.extend(tags.iter().map(|t| t.name.clone()));
                let entry = LibraryEntry::new(prompt, latest, &tags);
                let pair = meta_pair.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
                if entry.matches(&text, tag.as_deref(), pair) {
                    matched.push(entry);
                }
            }
            let total = matched.len();
            let shown: Vec<_> = matched
                .into_iter()
                .skip((page - 1) * LIBRARY_PAGE)
                .take(LIBRARY_PAGE)
                .collect();
            Ok(pages::library(
                &viewer,
                &LibraryPage {
                    entries: &shown,
                    total,
                    page,
                    per_page: LIBRARY_PAGE,
                    text: &text,
                    tag: tag.as_deref(),
                    meta: &meta,
                    all_tags: &all_tags.into_iter().collect::<Vec<_>>(),
                },
            ))
        })
        .await?;
    ok(body)
}

#[derive(Debug, Deserialize)]
pub(super) struct PromptQuery {
    window: Option<String>,
    score: Option<String>,
}

pub(super) async fn prompt(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(query): Query<PromptQuery>,
) -> Page {
    prompt_name(&name)?;
    let window = pages::TrafficWindow::parse(query.window.as_deref())?;
    let score = query.score.unwrap_or_default().trim().to_string();
    if score.chars().count() > MAX_SEARCH {
        return Err(UiError::bad(format!(
            "score: an annotation name of at most {MAX_SEARCH} characters"
        )));
    }
    let body = ui
        .blocking(move |ui| {
            let versions = ui.store.versions(&name)?;
            let by_version = ui.store.tags_by_version(&name)?;
            let history = ui.store.history(&name, None)?;
            let policy = ui.config.tag_policy();
            let deployments: Vec<DeploymentView> = ui
                .store
                .tags(&name)?
                .iter()
                .map(|tag| DeploymentView::new(tag, &history, policy.is_protected(&tag.name)))
                .collect();
            let experiments = ui.store.experiments(Some(&name))?.len();
            let confidence = confidence(ui);
            let until_ms = crate::trace::now_ms();
            let (running, finished): (Vec<_>, Vec<_>) = ui
                .store
                .rollouts(Some(&name), false)?
                .into_iter()
                .partition(|r| r.status == crate::canary::Status::Running);
            let rollouts = running
                .into_iter()
                .map(|r| crate::workflow::canary::view(ui.store.as_ref(), r, until_ms))
                .collect::<crate::error::Result<Vec<_>>>()?;
            let production = crate::workflow::production::gather(
                ui.store.as_ref(),
                &name,
                &crate::workflow::production::Window {
                    since_ms: until_ms - window.millis(),
                    until_ms,
                    tag: None,
                    experiments: false,
                },
                &ui.config.prices(),
                confidence,
            )?;
            Ok(pages::prompt(
                &viewer,
                &PromptPage {
                    name: &name,
                    versions: &versions,
                    tags_by_version: &by_version,
                    deployments: &deployments,
                    history: &history,
                    experiments,
                    protected: &policy.protected,
                    production: &ProductionSection {
                        production: &production,
                        window,
                        score: Some(score.as_str()).filter(|s| !s.is_empty()),
                        confidence,
                    },
                    rollouts: &rollouts,
                    finished_rollouts: &finished,
                },
            ))
        })
        .await?;
    ok(body)
}

/// The confidence of every interval a page shows: runner.toml's, else the default.
fn confidence(ui: &Ui) -> f64 {
    crate::input::confidence(None, ui.config.confidence).unwrap_or(crate::stats::DEFAULT_CONFIDENCE)
}

pub(super) async fn version(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((name, seq)): Path<(String, String)>,
    Query(query): Query<super::playground::PageQuery>,
) -> Page {
    prompt_name(&name)?;
    let seq: i64 = seq
        .parse()
        .map_err(|_| UiError::new(StatusCode::NOT_FOUND, format!("no version '{seq}'")))?;
    let body = ui
        .blocking(move |ui| {
            let loaded = super::playground::load(ui, &name, seq)?;
            let panel = if viewer.can_write() {
                Some(loaded.replay_panel(ui, query.span.as_deref())?)
            } else {
                None
            };
            let spans = recent_spans(ui, &name, seq)?;
            Ok(pages::with_recent_spans(
                loaded.page(&viewer, panel.as_ref()),
                &spans,
                RECENT_SPANS,
            ))
        })
        .await?;
    ok(body)
}

/// The newest production spans linked to version `seq` of `name`, newest first.
fn recent_spans(ui: &Ui, name: &str, seq: i64) -> Result<Vec<Span>, UiError> {
    let version = ui.store.version(name, &VersionRef::Seq(seq))?;
    let mut spans = Vec::with_capacity(RECENT_SPANS);
    ui.store.visit_spans(
        &SpanFilter {
            prompt: Some(name.to_string()),
            version_ids: vec![version.id],
            newest: Some(RECENT_SPANS),
            ..SpanFilter::default()
        },
        &mut |span| {
            spans.push(span);
            Ok(())
        },
    )?;
    Ok(spans)
}

/// A span's ids are lower-case hex (16 digits); anything else names no span.
fn span_id(text: &str) -> Option<&str> {
    (text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(text)
}

pub(super) async fn span(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Page {
    let unknown = || UiError::new(StatusCode::NOT_FOUND, format!("no span '{id}'"));
    let Some(known) = span_id(&id).map(str::to_string) else {
        return Err(unknown());
    };
    let body = ui
        .blocking(move |ui| {
            let Some(span) = ui.store.span(&known)? else {
                return Ok(None);
            };
            let annotations = ui.store.span_annotations(&span)?;
            Ok(Some(pages::span(&viewer, &span, &annotations)))
        })
        .await?;
    ok(body.ok_or_else(unknown)?)
}

#[derive(Debug, Deserialize)]
pub(super) struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

pub(super) async fn diff(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(query): Query<DiffQuery>,
) -> Page {
    prompt_name(&name)?;
    let number = |text: Option<&str>, which: &str| -> Result<Option<i64>, UiError> {
        match text.filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => t
                .trim_start_matches('v')
                .parse::<i64>()
                .map(Some)
                .map_err(|_| {
                    UiError::bad(format!("{which}: expected a version number, got '{t}'"))
                }),
        }
    };
    let from = number(query.from.as_deref(), "from")?;
    let to = number(query.to.as_deref(), "to")?;
    let body = ui
        .blocking(move |ui| {
            let versions = ui.store.versions(&name)?;
            let latest = versions.first().map_or(1, |v| v.seq);
            let to = to.unwrap_or(latest);
            let from = from.unwrap_or((to - 1).max(1));
            let old = ui.store.version(&name, &VersionRef::Seq(from))?;
            let new = ui.store.version(&name, &VersionRef::Seq(to))?;
            Ok(pages::diff(&viewer, &old, &new, &versions))
        })
        .await?;
    ok(body)
}

pub(super) async fn experiments(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Page {
    prompt_name(&name)?;
    let body = ui
        .blocking(move |ui| {
            // An unknown prompt is a 404, not an empty list.
            ui.store.latest_target(&name)?;
            let experiments = ui.store.experiments(Some(&name))?;
            let mut items = Vec::with_capacity(experiments.len());
            for experiment in experiments {
                let summary = ui.store.summary(&experiment)?;
                items.push((experiment, summary));
            }
            let total = items.len();
            Ok(pages::experiments(
                &viewer,
                Some(&name),
                &items,
                (1, total.max(1), total),
            ))
        })
        .await?;
    ok(body)
}

/// Experiments the all-experiments page shows at a time.
const EXPERIMENTS_PAGE: usize = 50;

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    page: Option<String>,
}

/// Every experiment, newest first, those of your own code that name no prompt version among
/// them.
pub(super) async fn all_experiments(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<PageQuery>,
) -> Page {
    let page = page_number(query.page.as_deref())?;
    let body = ui
        .blocking(move |ui| {
            let experiments = ui.store.experiments(None)?;
            let total = experiments.len();
            let mut items = Vec::with_capacity(EXPERIMENTS_PAGE);
            for experiment in experiments
                .into_iter()
                .skip((page - 1) * EXPERIMENTS_PAGE)
                .take(EXPERIMENTS_PAGE)
            {
                let summary = ui.store.summary(&experiment)?;
                items.push((experiment, summary));
            }
            Ok(pages::experiments(
                &viewer,
                None,
                &items,
                (page, EXPERIMENTS_PAGE, total),
            ))
        })
        .await?;
    ok(body)
}

#[derive(Debug, Deserialize)]
pub(super) struct RowsQuery {
    show: Option<String>,
    q: Option<String>,
    page: Option<String>,
}

pub(super) async fn experiment(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<RowsQuery>,
) -> Page {
    let filter = ResultFilter::parse(query.show.as_deref())?;
    let text = search_text(query.q)?;
    let page = page_number(query.page.as_deref())?;
    let body = ui
        .blocking(move |ui| {
            let experiment = ui.store.experiment(&id)?;
            let summary = ui.store.summary(&experiment)?;
            let needle = text.to_lowercase();
            let skip = (page - 1) * ROWS_PAGE;
            let mut matched = 0usize;
            let mut rows: Vec<RunResult> = Vec::new();
            // Streamed: only the page shown is held, however many rows the experiment has.
            ui.store.visit_results(&experiment.id, &mut |result| {
                if filter.keeps(&result) && (needle.is_empty() || mentions(&result, &needle)) {
                    if matched >= skip && rows.len() < ROWS_PAGE {
                        rows.push(result);
                    }
                    matched += 1;
                }
                Ok(())
            })?;
            Ok(pages::experiment(
                &viewer,
                &ExperimentPage {
                    experiment: &experiment,
                    summary: &summary,
                    rows: &rows,
                    matched,
                    page,
                    per_page: ROWS_PAGE,
                    filter,
                    text: &text,
                },
            ))
        })
        .await?;
    ok(body)
}

/// Whether a result's input, output, expected answer or error mentions `needle` (lower case).
fn mentions(result: &RunResult, needle: &str) -> bool {
    let has = |text: &str| text.to_lowercase().contains(needle);
    result.row_id.to_lowercase().contains(needle)
        || result.vars.values().any(|v| match v {
            serde_json::Value::String(s) => has(s),
            other => has(&other.to_string()),
        })
        || result.output.as_deref().is_some_and(has)
        || result.expected.as_deref().is_some_and(has)
        || result.error_message.as_deref().is_some_and(has)
}

#[derive(Debug, Deserialize)]
pub(super) struct CompareQuery {
    baseline: Option<String>,
    candidate: Option<String>,
    show: Option<String>,
    page: Option<String>,
}

pub(super) async fn compare(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Query(query): Query<CompareQuery>,
) -> Page {
    let (Some(baseline), Some(candidate)) = (
        query.baseline.filter(|s| !s.is_empty()),
        query.candidate.filter(|s| !s.is_empty()),
    ) else {
        return Err(UiError::bad(
            "compare needs two experiments: ?baseline=ID&candidate=ID",
        ));
    };
    let show = pages::ChangeFilter::parse(query.show.as_deref())?;
    let page = page_number(query.page.as_deref())?;
    let body = ui
        .blocking(move |ui| {
            let base = ui.store.experiment(&baseline)?;
            let cand = ui.store.experiment(&candidate)?;
            let kept = comparison_of(ui, &base, &cand)?;
            let verdict = promotion_of(ui, &base.id, &cand.id)?;
            let (listed, total) = compare_rows(&kept, show, page, ROWS_PAGE);
            // The texts of this page's rows only: two small reads whatever the size.
            // A row that changed on two evaluators is listed twice: its texts are read once.
            let mut ids: Vec<String> = listed.iter().map(|r| r.row_id.clone()).collect();
            ids.sort_unstable();
            ids.dedup();
            let texts = |e: &crate::model::Experiment| -> Result<_, UiError> {
                Ok(ui
                    .store
                    .row_texts(e, &ids)?
                    .into_iter()
                    .map(|t| (t.row_id.clone(), t))
                    .collect::<std::collections::HashMap<_, _>>())
            };
            let (base_texts, cand_texts) = (texts(&base)?, texts(&cand)?);
            let rows: Vec<pages::CompareRow> = listed
                .into_iter()
                .map(|r| pages::CompareRow {
                    baseline: r
                        .baseline
                        .map(|pass| (pass, base_texts.get(&r.row_id).cloned())),
                    candidate: r
                        .candidate
                        .map(|pass| (pass, cand_texts.get(&r.row_id).cloned())),
                    kind: r.kind,
                    evaluator: r.evaluator,
                    row_id: r.row_id,
                })
                .collect();
            Ok(pages::compare(
                &viewer,
                &ComparePage {
                    baseline: &base,
                    candidate: &cand,
                    comparison: &kept.comparison,
                    verdict: verdict.as_ref(),
                    show,
                    page,
                    per_page: ROWS_PAGE,
                    rows: &rows,
                    total,
                },
            ))
        })
        .await?;
    ok(body)
}

/// One row of a comparison page before its texts are read.
struct Listed {
    kind: crate::compare::RowKind,
    row_id: String,
    evaluator: Option<String>,
    baseline: Option<bool>,
    candidate: Option<bool>,
}

/// The rows of one page of a comparison under a filter, and how many the filter keeps.
fn compare_rows(
    kept: &KeptComparison,
    show: pages::ChangeFilter,
    page: usize,
    per_page: usize,
) -> (Vec<Listed>, usize) {
    use crate::compare::RowKind;
    use pages::ChangeFilter;
    let c = &kept.comparison;
    let skip = (page - 1) * per_page;
    let changed = |kind, r: &crate::compare::RowChange| Listed {
        kind,
        row_id: r.row_id.clone(),
        evaluator: Some(r.evaluator.clone()),
        baseline: Some(r.baseline.passed),
        candidate: Some(r.candidate.passed),
    };
    let mut regressed = c.regressed.iter().map(|r| changed(RowKind::Regressed, r));
    let mut improved = c.improved.iter().map(|r| changed(RowKind::Improved, r));
    let take = |rows: &mut dyn Iterator<Item = Listed>| -> Vec<Listed> {
        rows.skip(skip).take(per_page).collect()
    };
    match show {
        ChangeFilter::Regressed => (take(&mut regressed), c.regressed.len()),
        ChangeFilter::Improved => (take(&mut improved), c.improved.len()),
        ChangeFilter::Changed => (
            take(&mut regressed.chain(improved)),
            c.regressed.len() + c.improved.len(),
        ),
        ChangeFilter::All => {
            let mut rows = kept.rows.iter().map(|r| Listed {
                kind: r.kind,
                row_id: r.row_id.clone(),
                evaluator: None,
                baseline: r.baseline,
                candidate: r.candidate,
            });
            (take(&mut rows), kept.rows.len())
        }
    }
}

/// The comparison of two experiments, every row listed, computed in memory from both sides'
/// verdicts (the figures `runner compare` gives, without reading any output); remembered when
/// both experiments have finished (their results no longer change), so paging does not read
/// them again.
fn comparison_of(
    ui: &Ui,
    base: &crate::model::Experiment,
    cand: &crate::model::Experiment,
) -> Result<Arc<KeptComparison>, UiError> {
    use crate::model::ExperimentStatus;
    let key = (base.id.clone(), cand.id.clone());
    if let Some(cached) = ui.cached_comparison(&key) {
        return Ok(cached);
    }
    let ctx = Context::with_store(ui.store.clone(), "ui", ui.config.clone());
    let (comparison, rows) = crate::workflow::promotion::comparison_in_memory(
        &ctx,
        base,
        cand,
        &crate::compare::Inference {
            confidence: confidence(ui),
            cluster_column: None,
        },
    )?;
    let kept = Arc::new(KeptComparison { comparison, rows });
    let finished = |e: &crate::model::Experiment| e.status != ExperimentStatus::Running;
    if finished(base) && finished(cand) {
        ui.keep_comparison(key, kept.clone());
    }
    Ok(kept)
}

/// The promotion whose evidence is these two experiments, if one was recorded.
fn promotion_of(
    ui: &Ui,
    baseline: &str,
    candidate: &str,
) -> Result<Option<(crate::model::TagEvent, Evidence)>, UiError> {
    let cand = ui.store.experiment(candidate)?;
    // Only an experiment of a prompt version can have been a promotion's evidence.
    let Some(prompt) = &cand.prompt else {
        return Ok(None);
    };
    for event in ui.store.history(prompt, None)?.into_iter().rev() {
        if let Some(evidence) = Evidence::of(&event)
            && evidence.candidate_experiment == candidate
            && evidence.baseline_experiment.as_deref() == Some(baseline)
        {
            return Ok(Some((event, evidence)));
        }
    }
    Ok(None)
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

/// Where to go after logging in: a plain path of this server only, never another site. Only
/// the characters a path may hold as written (no space, control character, backslash or
/// non-ASCII, which browsers drop or rewrite: `/\t/evil.example` becomes `//evil.example`), and
/// never a second `/` or a backslash right after the first.
fn local_path(next: Option<&str>) -> String {
    let plain = |path: &str| {
        let mut chars = path.chars();
        chars.next() == Some('/')
            && !matches!(chars.next(), Some('/' | '\\'))
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%#".contains(c))
    };
    match next {
        Some(path) if plain(path) => path.to_string(),
        _ => "/".to_string(),
    }
}

pub(super) async fn login_form(
    State(ui): State<Arc<Ui>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    if ui.tokens.is_none() {
        return redirect("/");
    }
    let next = local_path(query.next.as_deref());
    page_response(
        StatusCode::OK,
        pages::login(&ui.keys.login_csrf(), &next, None),
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
    csrf: String,
    next: Option<String>,
}

pub(super) async fn login(State(ui): State<Arc<Ui>>, Form(form): Form<LoginForm>) -> Response {
    let Some(tokens) = &ui.tokens else {
        return redirect("/");
    };
    let next = local_path(form.next.as_deref());
    if !Keys::same(&ui.keys.login_csrf(), &form.csrf) {
        return UiError::new(StatusCode::FORBIDDEN, "the form expired: reload the page")
            .into_response();
    }
    let presented = form.token.trim().to_string();
    let found = match tokens.identify(presented.as_bytes()) {
        Some(found) => Some(found),
        None => stored_token(&ui, &presented).await,
    };
    let Some((name, access)) = found else {
        tracing::warn!(status = 401, "login refused: unknown token");
        return page_response(
            StatusCode::UNAUTHORIZED,
            pages::login(&ui.keys.login_csrf(), &next, Some("unknown token")),
        );
    };
    let value = ui.keys.issue(access, name.as_deref(), session::unix_now());
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        session::COOKIE,
        session::SESSION_SECS
    );
    let mut response = redirect(&next);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// A token kept in the store (`runner token create`) that is valid now: its name and access.
async fn stored_token(
    ui: &Arc<Ui>,
    presented: &str,
) -> Option<(Option<String>, crate::access::Access)> {
    let digest = crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(
        presented.as_bytes(),
    ));
    let store = Arc::clone(&ui.store);
    let token = tokio::task::spawn_blocking(move || store.token_by_digest(&digest))
        .await
        .ok()?
        .ok()??;
    if !token.valid_at(time::OffsetDateTime::now_utc()) {
        return None;
    }
    crate::access::Access::from_role_name(&token.role).map(|access| (Some(token.name), access))
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

pub(super) async fn logout(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&viewer, &form.csrf)?;
    // Ended on the server too: a copy of the cookie (another tab, a stolen one) stops working.
    if let Some(session) = &viewer.session {
        ui.keys.revoke(session, session::unix_now());
    }
    let mut response = redirect(if viewer.auth { "/login" } else { "/" });
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            session::COOKIE
        ))
        .expect("a fixed cookie"),
    );
    Ok(response)
}

pub(super) fn check_csrf(viewer: &Viewer, presented: &str) -> Result<(), UiError> {
    if Keys::same(&viewer.csrf, presented) {
        Ok(())
    } else {
        Err(UiError::new(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        ))
    }
}

/// What every action form carries: its CSRF token, the confirmation box, and for a protected
/// tag, force with a typed reason.
#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    csrf: String,
    tag: String,
    version: Option<String>,
    confirm: Option<String>,
    force: Option<String>,
    reason: Option<String>,
}

/// What every writing form checks first: its CSRF token, that the session may write, and the
/// tag it names.
fn check_writer(viewer: &Viewer, csrf: &str, tag: &str) -> Result<(), UiError> {
    check_csrf(viewer, csrf)?;
    if !viewer.can_write() {
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            "this token is read-only: it may look at everything and change nothing",
        ));
    }
    check_name(NameKind::Tag, tag).map_err(|e| UiError::bad(format!("invalid tag '{tag}': {e}")))
}

/// Checks an action's form and builds its tag change the way `Context::guarded_change` does
/// for the CLI: the actor, the reason as the message, force, the session's role (a deploy
/// token's moves protected tags without force) and the project's tag policy.
fn action_change(ui: &Ui, viewer: &Viewer, form: &ActionForm) -> Result<TagChange, UiError> {
    check_writer(viewer, &form.csrf, &form.tag)?;
    if form.confirm.as_deref() != Some("yes") {
        return Err(UiError::bad(
            "not confirmed: tick the confirmation box to make this change",
        ));
    }
    let force = form.force.as_deref() == Some("yes");
    let reason = form
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    if force && reason.is_none() {
        return Err(UiError::bad(
            "forcing a protected tag needs a reason: type why, it is kept in the tag history",
        ));
    }
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(UiError::bad("the reason has at most 500 characters"));
    }
    Ok(TagChange {
        actor: viewer.actor(),
        message: reason,
        force,
        role: viewer.tag_role(),
        policy: ui.config.tag_policy(),
        ..TagChange::default()
    })
}

pub(super) async fn set_tag(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Page {
    prompt_name(&name)?;
    let change = action_change(&ui, &viewer, &form)?;
    let seq: i64 = form
        .version
        .as_deref()
        .unwrap_or("")
        .trim_start_matches('v')
        .parse()
        .map_err(|_| UiError::bad("version: expected a version number"))?;
    let target = name.clone();
    ui.blocking(move |ui| {
        match ui
            .store
            .set_tag(&target, &form.tag, &VersionRef::Seq(seq), &change)?
        {
            TagOutcome::Changed(event) => {
                tracing::info!("{}", crate::report::tag_event_line(&event))
            }
            TagOutcome::Unchanged(_) => {}
        }
        Ok(())
    })
    .await?;
    Ok(redirect(&format!(
        "/prompts/{}#deployments",
        super::html::url_part(&name)
    )))
}

pub(super) async fn rollback(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Page {
    prompt_name(&name)?;
    let change = action_change(&ui, &viewer, &form)?;
    let target = name.clone();
    ui.blocking(move |ui| {
        let event = ui.store.rollback_tag(&target, &form.tag, &change)?;
        tracing::info!("{}", crate::report::tag_event_line(&event));
        Ok(())
    })
    .await?;
    Ok(redirect(&format!(
        "/prompts/{}#deployments",
        super::html::url_part(&name)
    )))
}

/// What the rollout forms carry: the CSRF token, the rolled-out tag, and for stop a message.
#[derive(Debug, Deserialize)]
pub(super) struct RolloutForm {
    csrf: String,
    tag: String,
    message: Option<String>,
}

/// Checks a rollout form (CSRF token, write role, tag name, message) and finds the tag's
/// running rollout: an action on one that has just ended says so rather than acting.
fn rollout_action(
    ui: &Ui,
    viewer: &Viewer,
    name: &str,
    form: &RolloutForm,
) -> Result<Option<String>, UiError> {
    check_writer(viewer, &form.csrf, &form.tag)?;
    let message = form
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    if message.as_ref().is_some_and(|m| m.chars().count() > 500) {
        return Err(UiError::bad("the message has at most 500 characters"));
    }
    if !ui
        .store
        .rollouts(Some(name), true)?
        .iter()
        .any(|r| r.tag == form.tag)
    {
        return Err(UiError::new(
            StatusCode::CONFLICT,
            format!(
                "{name} {} has no running rollout (it may have just ended): reload the page",
                form.tag
            ),
        ));
    }
    Ok(message)
}

fn rollout_redirect(name: &str) -> Response {
    redirect(&format!("/prompts/{}#rollout", super::html::url_part(name)))
}

pub(super) async fn advance_rollout(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(form): Form<RolloutForm>,
) -> Page {
    prompt_name(&name)?;
    let target = name.clone();
    ui.blocking(move |ui| {
        rollout_action(ui, &viewer, &target, &form)?;
        // The last step completes the rollout and moves the tag: on a protected tag, by hand,
        // that is a deploy token's move (the evidence moves it without one).
        let rollout = crate::workflow::canary::running(ui.store.as_ref(), &target, &form.tag)?;
        if crate::workflow::canary::hand_completion_needs_deploy(
            &rollout,
            &ui.config.tag_policy(),
            viewer.tag_role(),
        ) {
            return Err(UiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is protected: completing its rollout by hand needs a deploy token; \
                     the rollout completes by itself when the evidence passes",
                    form.tag
                ),
            ));
        }
        // On the rollout as checked: if it stepped meanwhile, nothing is written.
        let outcome = crate::workflow::canary::advance_from(
            ui.store.as_ref(),
            &rollout,
            crate::trace::now_ms(),
            &ui.config.tag_policy(),
            &viewer.actor(),
        )?;
        tracing::info!(
            rollout = %outcome.rollout,
            "advanced by hand to {}%",
            outcome.look.share
        );
        Ok(())
    })
    .await?;
    Ok(rollout_redirect(&name))
}

pub(super) async fn stop_rollout(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path(name): Path<String>,
    Form(form): Form<RolloutForm>,
) -> Page {
    prompt_name(&name)?;
    let target = name.clone();
    ui.blocking(move |ui| {
        let message = rollout_action(ui, &viewer, &target, &form)?;
        for event in crate::workflow::canary::stop(
            ui.store.as_ref(),
            &target,
            &form.tag,
            message.as_deref(),
            &ui.config.tag_policy(),
            &viewer.actor(),
        )? {
            tracing::info!("{}", crate::report::tag_event_line(&event));
        }
        Ok(())
    })
    .await?;
    Ok(rollout_redirect(&name))
}
