//! The playground: one version (or an edited template) on one input, the answer streaming in,
//! as `runner try` and the web UI's playground panel both do it. Nothing here records anything
//! (no experiment, no cache entry); `save` alone writes, through the path `runner prompt update`
//! takes.

use crate::client::{Client, Completion, Failure, request_body};
use crate::config::RunDefaults;
use crate::error::{Error, Result};
use crate::model::{JsonObject, Message, NewVersion, PromptVersion, Template};
use crate::store::{PromptStore, TagChange};
use crate::template::CompiledTemplate;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

/// One side of a try: what was sent and what came back.
#[derive(Debug, Clone, Serialize)]
pub struct TryView {
    pub prompt: String,
    pub version: i64,
    pub version_id: String,
    /// The tag the version was chosen by, when it was.
    pub tag: Option<String>,
    /// True when the template tried is not the version's.
    pub edited: bool,
    pub model: String,
    pub output: String,
    pub finish_reason: Option<String>,
    pub latency_ms: f64,
    /// From sending the request to the first piece of the answer.
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub attempts: u32,
    /// The version `--save` stored, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_version: Option<i64>,
}

/// A version ready to send: its template rendered with the variables, the request built.
#[derive(Debug, Clone)]
pub struct Trial {
    pub version: PromptVersion,
    pub tag: Option<String>,
    pub edited: bool,
    pub model: String,
    pub body: Value,
}

impl Trial {
    /// Renders `template` (the version's own when None) with `vars` under the version's format,
    /// and builds the request with the version's parameters. The model is `model` when given,
    /// else runner.toml's, else the version's. A missing variable is an invalid-input error
    /// naming every missing one; nothing is sent.
    pub fn prepare(
        version: PromptVersion,
        tag: Option<String>,
        template: Option<&Template>,
        vars: &JsonObject,
        model: Option<&str>,
        defaults: &RunDefaults,
    ) -> Result<Trial> {
        let edited = template.is_some_and(|t| *t != version.template);
        let compiled =
            CompiledTemplate::compile(version.format, template.unwrap_or(&version.template))?;
        let messages = compiled.render(vars).map_err(|e| {
            let error: Error = e.into();
            error.with_hint(format!(
                "give every variable (the template uses {})",
                compiled.variables().join(", ")
            ))
        })?;
        let model = model
            .map(str::to_string)
            .or_else(|| defaults.model.clone())
            .or_else(|| version.model.clone())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{} v{} names no model",
                    version.prompt, version.seq
                ))
            })?;
        let body = request_body(&model, &messages, &version.params);
        Ok(Trial {
            version,
            tag,
            edited,
            model,
            body,
        })
    }
}

/// The answer of one side, with the time to its first piece.
pub struct Answer {
    pub completion: Completion,
    pub ttft_ms: Option<f64>,
}

/// Sends the trial once, asking for a stream; each piece goes to `show` as it arrives. The
/// client's API key never reaches `show`, the answer or the failure: an endpoint that echoes
/// it is redacted on the text as it accumulates (a piece may end inside the key).
pub async fn call(
    client: &Client,
    trial: &Trial,
    show: &mut (dyn FnMut(&str) + Send),
) -> std::result::Result<Answer, Failure> {
    let started = Instant::now();
    let mut first: Option<f64> = None;
    let key = crate::redact::key(client.api_key());
    let mut stream = key.map(crate::redact::Stream::new);
    let mut pieces = |piece: &str| {
        if first.is_none() && !piece.is_empty() {
            first = Some(started.elapsed().as_secs_f64() * 1000.0);
        }
        match &mut stream {
            Some(stream) => show(&stream.push(piece)),
            None => show(piece),
        }
    };
    let answer = client.complete_streaming(&trial.body, &mut pieces).await;
    if let Some(rest) = stream.as_mut().map(crate::redact::Stream::finish) {
        show(&rest);
    }
    let clean = |text: String| match key {
        Some(key) => crate::redact::apply(&text, key),
        None => text,
    };
    match answer {
        Ok(mut completion) => {
            completion.text = clean(completion.text);
            Ok(Answer {
                completion,
                ttft_ms: first,
            })
        }
        Err(mut failure) => {
            failure.message = clean(failure.message);
            Err(failure)
        }
    }
}

pub fn view(trial: &Trial, answer: Answer) -> TryView {
    let c = answer.completion;
    TryView {
        prompt: trial.version.prompt.clone(),
        version: trial.version.seq,
        version_id: trial.version.id.clone(),
        tag: trial.tag.clone(),
        edited: trial.edited,
        model: trial.model.clone(),
        output: c.text,
        finish_reason: c.finish_reason,
        latency_ms: c.latency_ms,
        ttft_ms: answer.ttft_ms,
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.completion_tokens,
        attempts: c.attempts,
        saved_version: None,
    }
}

/// The variables of one dataset row, found by its id (its `id` column, else its 0-based index).
pub fn dataset_row(path: &Path, id: &str) -> Result<JsonObject> {
    let mut rows =
        crate::dataset::rows(path).map_err(crate::workflow::experiment::dataset_error)?;
    let found = rows
        .by_ref()
        .map(|row| row.map_err(crate::workflow::experiment::dataset_error))
        .find(|row| row.as_ref().is_ok_and(|r| r.id == id) || row.is_err())
        .transpose()?;
    match found {
        Some(row) => Ok(row.values),
        None => Err(Error::invalid(format!(
            "dataset {} has no row with id '{id}'",
            path.display()
        ))
        .with_hint("a row's id is its `id` column, else its 0-based index")),
    }
}

/// Stores a tried template as the prompt's next version, with the tried version's model,
/// parameters, metadata and description: the path and rules of `runner prompt update` (the
/// template is checked, the sequence number taken in the write transaction, the change under
/// the project's tag policy).
pub fn save<S: PromptStore + ?Sized>(
    store: &S,
    tried: &PromptVersion,
    template: Template,
    message: Option<String>,
    author: &str,
    change: &TagChange,
) -> Result<PromptVersion> {
    CompiledTemplate::compile(tried.format, &template)?;
    crate::store::append_version(
        store,
        &tried.prompt,
        |_latest| {
            Ok::<_, Error>(NewVersion {
                format: tried.format,
                template: template.clone(),
                model: tried.model.clone(),
                provider: tried.provider.clone(),
                params: tried.params.clone(),
                metadata: tried.metadata.clone(),
                description: tried.description.clone(),
                message: message.clone(),
                author: author.to_string(),
            })
        },
        &[],
        change,
    )
}

/// A template as a person edits it: a string template's text, a chat template's messages as
/// pretty JSON (`[{"role": …, "content": …}]`).
pub fn template_text(template: &Template) -> String {
    match template {
        Template::Str(text) => text.clone(),
        Template::Chat(messages) => serde_json::to_string_pretty(messages).unwrap_or_default(),
    }
}

/// The inverse of `template_text` for a template of the same kind as `like`: line endings as
/// a browser sends them (CRLF) become `\n`, and a chat template's JSON must parse.
pub fn parse_template_text(like: &Template, text: &str) -> Result<Template> {
    let text = text.replace("\r\n", "\n");
    match like {
        Template::Str(_) => Ok(Template::Str(text)),
        Template::Chat(_) => {
            let messages: Vec<Message> = crate::json::from_str(&text).map_err(|e| {
                Error::invalid(format!("the edited messages are not valid JSON: {e}")).with_hint(
                    r#"a chat template is a list of messages: [{"role": "user", "content": "{{query}}"}]"#,
                )
            })?;
            Ok(Template::Chat(messages))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_text_round_trips_and_normalises_line_endings() {
        let text = Template::Str("Hello {{name}}".into());
        assert_eq!(
            parse_template_text(&text, "a\r\nb").unwrap(),
            Template::Str("a\nb".into())
        );
        let chat = Template::Chat(vec![Message::text("user", "About {{query}}")]);
        let shown = template_text(&chat);
        assert_eq!(parse_template_text(&chat, &shown).unwrap(), chat);
        assert!(parse_template_text(&chat, "not json").is_err());
    }
}
