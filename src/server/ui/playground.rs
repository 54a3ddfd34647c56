//! The playground panel's three routes, for write tokens only and each CSRF-checked as the tag
//! actions are: run (the form posted without JavaScript: the page comes back with the whole
//! answers), stream (one column's answer relayed as server-sent events while the model writes
//! it), and save (the edited template as the prompt's next version, through the workflow
//! `runner try --save` uses, the author the token's name). Runs use the server's endpoint
//! settings and key, never the browser's, and record nothing.
//!
//! It also fills the panel a version's page first shows: empty, or, for
//! `?span=SPAN_ID`, with the template variables a stored production span recorded (replaying
//! a real call). Reading a span writes nothing.

use super::pages::{self, Playground, Replay};
use super::{Ui, UiError, Viewer, page_response, redirect, secure_headers};
use crate::error::Error;
use crate::model::{JsonObject, PromptVersion, Template, VersionRef};
use crate::store::TagChange;
use crate::workflow::playground::{self, Trial, TryView};
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The longest message a saved version may carry, as a tag action's reason.
const MAX_MESSAGE: usize = 500;
/// A span id is 8 bytes, written as lower-case hex.
const SPAN_ID_DIGITS: usize = 16;

/// The query of a version's page.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct PageQuery {
    /// A stored span whose template variables fill the playground's fields.
    pub(super) span: Option<String>,
}

/// At most 40 characters of what a request sent, for a message that repeats it.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The playground form, as posted: the fixed fields and one `var.NAME` per variable.
#[derive(Debug, Default)]
pub(super) struct PlayForm {
    csrf: String,
    vars: BTreeMap<String, String>,
    dataset: String,
    row: String,
    other: String,
    template: Option<String>,
    message: String,
    confirm: bool,
    action: String,
    side: String,
}

impl PlayForm {
    fn parse(fields: Vec<(String, String)>) -> PlayForm {
        let mut form = PlayForm::default();
        for (key, value) in fields {
            match key.as_str() {
                "csrf" => form.csrf = value,
                "dataset" => form.dataset = value,
                "row" => form.row = value.trim().to_string(),
                "other" => form.other = value,
                "template" => form.template = Some(value),
                "message" => form.message = value.trim().to_string(),
                "confirm" => form.confirm = value == "yes",
                "action" => form.action = value,
                "side" => form.side = value,
                _ => {
                    if let Some(name) = key.strip_prefix("var.") {
                        form.vars.insert(name.to_string(), value);
                    }
                }
            }
        }
        form
    }

    /// The variables to render with: an empty field counts as not given, so that a field
    /// left blank is named as missing rather than sent as nothing.
    fn variables(&self) -> JsonObject {
        self.vars
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), Value::String(v.replace("\r\n", "\n"))))
            .collect()
    }
}

/// Checks what every playground route checks first, in the order the tag actions do.
fn admit(viewer: &Viewer, form: &PlayForm) -> Result<(), UiError> {
    super::handlers::check_csrf(viewer, &form.csrf)?;
    if !viewer.can_write() {
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            "this token is read-only: the playground is for write tokens (a run spends the server's key)",
        ));
    }
    Ok(())
}

fn version_seq(seq: &str) -> Result<i64, UiError> {
    seq.parse()
        .map_err(|_| UiError::new(StatusCode::NOT_FOUND, format!("no version '{seq}'")))
}

/// An error of the workflow as the page shows it: the store's as every page maps them (an
/// unknown version is 404), other bad input 422, the rest 503.
fn refused(e: Error) -> UiError {
    let words = match e.hint() {
        Some(hint) => format!("{e}; {hint}"),
        None => e.to_string(),
    };
    match e {
        Error::Store(store, _) => UiError::from(*store),
        e if e.exit_code() == crate::error::exit::INVALID => UiError::bad(words),
        _ => UiError::new(StatusCode::SERVICE_UNAVAILABLE, words),
    }
}

/// Everything the version page and its playground read from the store.
pub(super) struct Loaded {
    version: PromptVersion,
    tags: Vec<String>,
    variables: Vec<String>,
    datasets: Vec<String>,
    others: Vec<(String, String)>,
}

pub(super) fn load(ui: &Ui, name: &str, seq: i64) -> Result<Loaded, UiError> {
    let version = ui.store.version(name, &VersionRef::Seq(seq))?;
    let tags: Vec<String> = ui
        .store
        .version_tags(&version.id)?
        .into_iter()
        .map(|(t, _)| t.name)
        .collect();
    let variables =
        crate::template::variables(version.format, &version.template).unwrap_or_default();
    let mut datasets: Vec<String> = ui
        .store
        .experiments(None)?
        .into_iter()
        .map(|e| e.dataset.path)
        .collect();
    datasets.sort();
    datasets.dedup();
    let mut others: Vec<(String, String)> = ui
        .store
        .tags(name)?
        .into_iter()
        .map(|t| {
            (
                format!("tag:{}", t.name),
                format!("{} (v{})", t.name, t.version_seq),
            )
        })
        .collect();
    others.extend(
        ui.store
            .versions(name)?
            .into_iter()
            .filter(|v| v.seq != seq)
            .map(|v| (format!("v{}", v.seq), format!("v{}", v.seq))),
    );
    Ok(Loaded {
        version,
        tags,
        variables,
        datasets,
        others,
    })
}

impl Loaded {
    /// The panel as a first visit shows it: empty fields, the version's own template.
    pub(super) fn fresh_panel(&self) -> Playground {
        Playground {
            variables: self.variables.clone(),
            datasets: self.datasets.clone(),
            others: self.others.clone(),
            template: playground::template_text(&self.version.template),
            ..Playground::default()
        }
    }

    /// The panel as the form left it.
    fn panel_from(&self, form: &PlayForm) -> Playground {
        Playground {
            variables: self.variables.clone(),
            values: form.vars.clone(),
            datasets: self.datasets.clone(),
            dataset: form.dataset.clone(),
            row: form.row.clone(),
            others: self.others.clone(),
            other: form.other.clone(),
            template: form
                .template
                .as_deref()
                .map(|t| t.replace("\r\n", "\n"))
                .unwrap_or_else(|| playground::template_text(&self.version.template)),
            message: form.message.clone(),
            results: Vec::new(),
            problem: None,
            replay: None,
        }
    }

    /// The panel a version's page first shows: `fresh_panel`, its variables filled from the
    /// stored span `span_id` names when there is one. A span id that is malformed or names no
    /// stored span leaves the fields empty and says so on the panel; it is never an error page.
    pub(super) fn replay_panel(
        &self,
        ui: &Ui,
        span_id: Option<&str>,
    ) -> Result<Playground, UiError> {
        let mut panel = self.fresh_panel();
        let Some(asked) = span_id.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(panel);
        };
        let id = asked.to_ascii_lowercase();
        if id.len() != SPAN_ID_DIGITS || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            panel.problem = Some(format!(
                "span '{}': a span id is {SPAN_ID_DIGITS} hexadecimal digits; the variables \
                 were not filled",
                shortened(asked)
            ));
            return Ok(panel);
        }
        let Some(span) = ui.store.span(&id)? else {
            panel.problem = Some(format!(
                "no span {id} is stored (it may be past the server's --trace-retention); the \
                 variables were not filled"
            ));
            return Ok(panel);
        };
        let variables = match span.variables.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Object(variables))) => variables,
            _ => JsonObject::new(),
        };
        let mut unused = Vec::new();
        for (name, value) in &variables {
            if !self.variables.contains(name) {
                unused.push(name.clone());
                continue;
            }
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            panel.values.insert(name.clone(), text);
        }
        let started =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(span.start_ms) * 1_000_000)
                .map(crate::model::format_time)
                .unwrap_or_else(|_| span.start_ms.to_string());
        panel.replay = Some(Replay {
            span_id: span.span_id,
            trace_id: span.trace_id,
            started,
            ran: span
                .link
                .map(|l| format!("{} v{}", l.prompt, l.version_number)),
            unused,
            empty: variables.is_empty(),
        });
        Ok(panel)
    }

    pub(super) fn page(&self, viewer: &Viewer, panel: Option<&Playground>) -> String {
        pages::version(viewer, &self.version, &self.tags, &self.variables, panel)
    }
}

/// `tag:NAME` or `vN`, as the "beside it" list offers them.
fn other_ref(text: &str) -> Result<(VersionRef, Option<String>), UiError> {
    if let Some(tag) = text.strip_prefix("tag:") {
        return Ok((VersionRef::Tag(tag.to_string()), Some(tag.to_string())));
    }
    text.trim_start_matches('v')
        .parse::<i64>()
        .map(|seq| (VersionRef::Seq(seq), None))
        .map_err(|_| UiError::bad(format!("beside it: expected tag:NAME or vN, got '{text}'")))
}

/// The template the form carries, or the version's own.
fn edited(version: &PromptVersion, form: &PlayForm) -> Result<Option<Template>, UiError> {
    form.template
        .as_deref()
        .map(|text| playground::parse_template_text(&version.template, text))
        .transpose()
        .map_err(refused)
}

/// The trials a run sends: this version with the form's template, and the other version with
/// its own when one is chosen (`only`: just one of them, for a streamed column).
fn trials(
    ui: &Ui,
    loaded: &Loaded,
    form: &PlayForm,
    only: Option<&str>,
) -> Result<Vec<Trial>, UiError> {
    let vars = form.variables();
    let defaults = ui.config.for_prompt(&loaded.version.prompt);
    let mut trials = Vec::new();
    if only != Some("other") {
        let template = edited(&loaded.version, form)?;
        trials.push(
            Trial::prepare(
                loaded.version.clone(),
                None,
                template.as_ref(),
                &vars,
                None,
                &defaults,
            )
            .map_err(refused)?,
        );
    }
    if only != Some("this") && !form.other.is_empty() {
        let (reference, tag) = other_ref(&form.other)?;
        let version = ui.store.version(&loaded.version.prompt, &reference)?;
        trials.push(Trial::prepare(version, tag, None, &vars, None, &defaults).map_err(refused)?);
    } else if only == Some("other") {
        return Err(UiError::bad("beside it: no other version chosen"));
    }
    Ok(trials)
}

/// The server's endpoint (runner.toml's `base_url`, else `OPENAI_BASE_URL`, else OpenAI's)
/// and a client with its key from the server's environment.
fn client(ui: &Ui, prompt: &str) -> Result<(String, crate::client::Client), UiError> {
    let defaults = ui.config.for_prompt(prompt);
    let base_url = crate::workflow::experiment::endpoint(None, &defaults).map_err(refused)?;
    let client = crate::workflow::experiment::call_client(
        &base_url,
        defaults.timeout.unwrap_or(60.0),
        defaults.max_retries.unwrap_or(3),
    )
    .map_err(refused)?;
    Ok((base_url, client))
}

fn label(trial: &Trial) -> String {
    let mut label = format!("{} v{}", trial.version.prompt, trial.version.seq);
    if let Some(tag) = &trial.tag {
        label.push_str(&format!(" ({tag})"));
    }
    if trial.edited {
        label.push_str(", edited template");
    }
    label
}

fn failed(base_url: &str, failure: crate::client::Failure) -> String {
    format!(
        "the call to {} failed: {}",
        crate::client::shown_url(base_url),
        failure.message
    )
}

/// The form posted without JavaScript: "Fill from row" fills the variables from a dataset row;
/// "Run" sends this version (and the other, at once) and shows the whole answers.
pub(super) async fn run(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((name, seq)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    super::handlers::prompt_name(&name)?;
    let seq = version_seq(&seq)?;
    let form = PlayForm::parse(fields);
    admit(&viewer, &form)?;
    let (loaded, mut panel, prepared) = ui
        .blocking(move |ui| {
            let loaded = load(ui, &name, seq)?;
            let mut panel = loaded.panel_from(&form);
            if form.action == "fill" {
                fill(ui, &loaded, &form, &mut panel)?;
                return Ok((loaded, panel, None));
            }
            // The edited template's and the other version's variables get fields too.
            let prepared = trials(ui, &loaded, &form, None);
            if let Ok(trials) = &prepared {
                for trial in trials {
                    let template = if trial.version.id == loaded.version.id {
                        edited(&loaded.version, &form)?.unwrap_or(trial.version.template.clone())
                    } else {
                        trial.version.template.clone()
                    };
                    for variable in crate::template::variables(trial.version.format, &template)
                        .unwrap_or_default()
                    {
                        if !panel.variables.contains(&variable) {
                            panel.variables.push(variable);
                        }
                    }
                }
            }
            Ok((loaded, panel, Some(prepared)))
        })
        .await?;
    let trials = match prepared {
        None => {
            return Ok(page_response(
                StatusCode::OK,
                loaded.page(&viewer, Some(&panel)),
            ));
        }
        Some(Err(refusal)) => {
            panel.problem = Some(refusal.message.clone());
            return Ok(page_response(
                refusal.status,
                loaded.page(&viewer, Some(&panel)),
            ));
        }
        Some(Ok(trials)) => trials,
    };
    let (base_url, client) = client(&ui, &loaded.version.prompt)?;
    let calls = trials.iter().map(|trial| {
        let client = &client;
        async move {
            let mut quiet = |_: &str| {};
            playground::call(client, trial, &mut quiet).await
        }
    });
    let answers = futures::future::join_all(calls).await;
    let views: Vec<(String, Result<TryView, String>)> = trials
        .iter()
        .zip(answers)
        .map(|(trial, answer)| {
            (
                label(trial),
                answer
                    .map(|a| playground::view(trial, a))
                    .map_err(|f| failed(&base_url, f)),
            )
        })
        .collect();
    let status = if views.iter().any(|(_, v)| v.is_err()) {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    panel.results = views;
    Ok(page_response(status, loaded.page(&viewer, Some(&panel))))
}

/// Fills the variables from a row of a dataset recorded in an experiment, as that experiment
/// stored the row's values with its result. No file is read: a dataset path in the store is
/// whatever any writer of the store recorded (a merged shard, say), and must never make the
/// server read a file of its own disk.
fn fill(ui: &Ui, loaded: &Loaded, form: &PlayForm, panel: &mut Playground) -> Result<(), UiError> {
    if !loaded.datasets.contains(&form.dataset) {
        return Err(UiError::bad(format!(
            "dataset '{}': only datasets recorded in experiments can fill the variables",
            form.dataset
        )));
    }
    if form.row.is_empty() {
        return Err(UiError::bad("row id: give the id of a row of the dataset"));
    }
    let mut row = None;
    for experiment in ui.store.experiments(None)? {
        if experiment.dataset.path != form.dataset {
            continue;
        }
        let found = crate::store::visit_results(&*ui.store, &experiment.id, |result| {
            if result.row_id == form.row {
                row = Some(result.vars);
                // Found: stop reading the rest.
                return Err(crate::store::StoreError::Abandoned);
            }
            Ok(())
        });
        match found {
            Ok(()) | Err(crate::store::StoreError::Abandoned) => {}
            Err(e) => return Err(e.into()),
        }
        if row.is_some() {
            break;
        }
    }
    let row = row.ok_or_else(|| {
        UiError::bad(format!(
            "dataset '{}' has no row with id '{}' in the experiments that ran it",
            form.dataset, form.row
        ))
    })?;
    for (key, value) in row {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        panel.values.insert(key, text);
    }
    Ok(())
}

/// What a streamed column ends with: the answer's view, its label and its figures.
#[derive(Serialize)]
struct Done<'a> {
    #[serde(flatten)]
    view: &'a TryView,
    label: String,
    figures: String,
}

enum Event {
    Piece(String),
    Done(Box<TryView>, String),
    Failed(String),
}

fn sse(event: &Event) -> String {
    let (name, data) = match event {
        Event::Piece(piece) => ("piece", Value::String(piece.clone()).to_string()),
        Event::Done(view, label) => (
            "done",
            serde_json::to_string(&Done {
                view,
                label: label.clone(),
                figures: pages::figures(view),
            })
            .unwrap_or_default(),
        ),
        Event::Failed(message) => ("error", Value::String(message.clone()).to_string()),
    };
    format!("event: {name}\ndata: {data}\n\n")
}

/// A refusal as the script reads it: the status and the message as plain text.
fn plain(status: StatusCode, message: &str) -> Response {
    let mut response = (status, message.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(headers);
    response
}

/// One column's answer as the model writes it (`side` = `this` or `other`), as server-sent
/// events: `piece` (a JSON string) as each arrives, then `done` (the figures) or `error`. A
/// call that fails before its first piece is a 502 with the endpoint's message; bad input a
/// 422; after the first piece a failure can only be an `error` event.
pub(super) async fn stream(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((name, seq)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    match relay(ui, viewer, name, seq, fields).await {
        Ok(response) => response,
        Err(refusal) => plain(refusal.status, &refusal.message),
    }
}

async fn relay(
    ui: Arc<Ui>,
    viewer: Viewer,
    name: String,
    seq: String,
    fields: Vec<(String, String)>,
) -> Result<Response, UiError> {
    super::handlers::prompt_name(&name)?;
    let seq = version_seq(&seq)?;
    let form = PlayForm::parse(fields);
    admit(&viewer, &form)?;
    let side = match form.side.as_str() {
        "this" | "" => "this",
        "other" => "other",
        other => return Err(UiError::bad(format!("side: this or other, got '{other}'"))),
    };
    let mut trials = ui
        .blocking(move |ui| {
            let loaded = load(ui, &name, seq)?;
            trials(ui, &loaded, &form, Some(side))
        })
        .await?;
    let trial = trials.remove(0);
    let (base_url, client) = client(&ui, &trial.version.prompt)?;
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel::<Event>();
    tokio::spawn(async move {
        let pieces = sender.clone();
        // A closed page drops the receiver; the call then finishes unheard (bounded by the
        // timeout), and nothing is kept.
        let mut show = move |piece: &str| {
            if !piece.is_empty() {
                let _ = pieces.send(Event::Piece(piece.to_string()));
            }
        };
        let outcome = playground::call(&client, &trial, &mut show).await;
        let last = match outcome {
            Ok(answer) => Event::Done(Box::new(playground::view(&trial, answer)), label(&trial)),
            Err(failure) => Event::Failed(failed(&base_url, failure)),
        };
        let _ = sender.send(last);
    });
    let first = events.recv().await;
    let first = match first {
        Some(Event::Failed(message)) => {
            return Err(UiError::new(StatusCode::BAD_GATEWAY, message));
        }
        Some(event) => event,
        None => {
            return Err(UiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the call ended without an answer",
            ));
        }
    };
    let rest = futures::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|event| (event, events))
    });
    let body = futures::stream::iter([first])
        .chain(rest)
        .map(|event| Ok::<_, std::convert::Infallible>(sse(&event)));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(headers);
    Ok(response)
}

/// "Save as new version": the edited template appended as the prompt's next version with the
/// tried version's model and parameters, through the workflow `runner try --save` uses; the
/// author is the token's name (`ui:NAME`), as tag moves record it; a message is required and
/// the box must be ticked.
pub(super) async fn save(
    State(ui): State<Arc<Ui>>,
    viewer: Viewer,
    Path((name, seq)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    super::handlers::prompt_name(&name)?;
    let seq = version_seq(&seq)?;
    let form = PlayForm::parse(fields);
    admit(&viewer, &form)?;
    if form.message.is_empty() {
        return Err(UiError::bad(
            "saving needs a message: say what changed, it is kept with the version",
        ));
    }
    if form.message.chars().count() > MAX_MESSAGE {
        return Err(UiError::bad(format!(
            "the message has at most {MAX_MESSAGE} characters"
        )));
    }
    if !form.confirm {
        return Err(UiError::bad(
            "not confirmed: tick the confirmation box to store the template as a new version",
        ));
    }
    let Some(text) = form.template.clone() else {
        return Err(UiError::bad("no template to save"));
    };
    let actor = viewer.actor();
    let role = viewer.tag_role();
    let created = ui
        .blocking(move |ui| {
            let tried = ui.store.version(&name, &VersionRef::Seq(seq))?;
            let template =
                playground::parse_template_text(&tried.template, &text).map_err(refused)?;
            let change = TagChange {
                actor: actor.clone(),
                message: Some(form.message.clone()),
                role,
                policy: ui.config.tag_policy(),
                ..TagChange::default()
            };
            let created = playground::save(
                &*ui.store,
                &tried,
                template,
                Some(form.message.clone()),
                &actor,
                &change,
            )
            .map_err(refused)?;
            tracing::info!(
                "{actor} saved {} v{} from the playground (tried on v{})",
                created.prompt,
                created.seq,
                tried.seq
            );
            Ok(created)
        })
        .await?;
    Ok(redirect(&format!(
        "/prompts/{}/versions/{}",
        super::html::url_part(&created.prompt),
        created.seq
    )))
}
