//! Prompt files: one prompt a person writes and reviews in a repository (`prompts/NAME.yaml`,
//! `.yml`, `.json` or `.toml`), read and checked with the CLI's own rules, and written back from
//! a stored version so that reading it again gives the same content. It reads files and renders
//! text but writes none (`workflow::sync`'s pull does), and it never opens the store: what a sync
//! changes is `workflow::sync`'s to decide.
//!
//! The schema (documented in the README, shipped as `schemas/prompt-file.schema.json`):
//! `template` (a string) or `messages` (a list of `{role, content}`), and optionally `format`,
//! `model`, `params`, `metadata`, `description`, `message` (the commit message of the version
//! the file creates) and `tags` (tags the file's version should carry). The prompt's name is the
//! file's name without its extension.

use crate::input::param_problem;
use crate::model::{
    JsonObject, Message, NameKind, NewVersion, PromptVersion, Template, TemplateFormat, check_name,
    content_hash,
};
use crate::template::CompiledTemplate;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How a prompt file is written, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Syntax {
    Yaml,
    Json,
    Toml,
}

impl Syntax {
    /// The syntax of a file named `path`, if it is a prompt file's name at all.
    pub fn of(path: &Path) -> Option<Syntax> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Syntax::Yaml),
            "json" => Some(Syntax::Json),
            "toml" => Some(Syntax::Toml),
            _ => None,
        }
    }
}

/// One chat message as a file writes it: its content as text, or as a list of parts (text,
/// tool calls and tool results, as Phoenix keeps them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMessage {
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parts: Option<Vec<serde_json::Value>>,
}

/// The fields of a prompt file, as written. The order here is the order `pull` writes them:
/// the short fields first, the template last.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    /// Where an editor finds the JSON Schema; runner ignores it.
    #[serde(rename = "$schema", default, skip_serializing)]
    _schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<TemplateFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<FileMessage>>,
}

/// A prompt file that passed every check: what its version holds, and what sync does with it.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSource {
    /// The prompt's name: the file's name without its extension.
    pub name: String,
    pub path: PathBuf,
    pub syntax: Syntax,
    pub format: TemplateFormat,
    pub template: Template,
    pub model: Option<String>,
    /// The model provider (Phoenix's `model_provider`); None for OpenAI's wire format.
    pub provider: Option<String>,
    pub params: JsonObject,
    pub metadata: JsonObject,
    pub description: Option<String>,
    /// The commit message of the version this file creates.
    pub message: Option<String>,
    /// Tags the file's version should carry.
    pub tags: Vec<String>,
}

impl PromptSource {
    /// sha256 of what the version sends, as the store computes it.
    pub fn content_hash(&self) -> String {
        content_hash(
            self.format,
            &self.template,
            self.model.as_deref(),
            &self.params,
            &self.metadata,
        )
    }

    /// True when `version` holds this file's content: the same content hash, description and
    /// provider.
    pub fn matches(&self, version: &PromptVersion) -> bool {
        version.content_hash == self.content_hash()
            && version.description == self.description
            && version.provider == self.provider
    }

    /// The version this file makes, with the commit message and author the caller decided.
    pub fn new_version(&self, message: Option<String>, author: &str) -> NewVersion {
        NewVersion {
            format: self.format,
            template: self.template.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            params: self.params.clone(),
            metadata: self.metadata.clone(),
            description: self.description.clone(),
            message,
            author: author.to_string(),
        }
    }
}

/// A file that cannot be used, and every reason found in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub reasons: Vec<String>,
}

/// The prompt files directly inside `dir` (sub-folders and other files are not read), by name:
/// each checked, the good ones and every problem found, so that a caller reports all of them
/// before it writes anything. `Err` when `dir` itself cannot be read.
pub fn read_dir(dir: &Path) -> std::io::Result<(Vec<PromptSource>, Vec<Problem>)> {
    let mut paths = prompt_paths(dir)?;
    paths.sort();
    let mut sources: Vec<PromptSource> = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let read = std::fs::read(&path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())
            });
        match read
            .map_err(|reason| vec![reason])
            .and_then(|text| parse(&path, &text))
        {
            Ok(source) => sources.push(source),
            Err(reasons) => problems.push(Problem { path, reasons }),
        }
    }
    // Two files for one prompt (NAME.yaml and NAME.json): neither can say what the prompt is.
    let mut by_name: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for path in prompt_paths(dir)? {
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            by_name.entry(stem.to_string()).or_default().push(path);
        }
    }
    for (name, mut paths) in by_name.into_iter().filter(|(_, p)| p.len() > 1) {
        paths.sort();
        sources.retain(|s| s.name != name);
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        problems.retain(|p| !paths.contains(&p.path));
        problems.push(Problem {
            path: paths[0].clone(),
            reasons: vec![format!(
                "prompt '{name}' has {} files ({}): keep one",
                paths.len(),
                shown.join(", ")
            )],
        });
    }
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((sources, problems))
}

/// The paths of the prompt files directly inside `dir`: regular files (or links to them)
/// whose extension names a syntax, hidden files left out.
pub fn prompt_paths(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if !hidden && path.is_file() && Syntax::of(&path).is_some() {
            paths.push(path);
        }
    }
    Ok(paths)
}

/// Reads one prompt file's text; `Err` holds every reason it cannot be used.
pub fn parse(path: &Path, text: &str) -> Result<PromptSource, Vec<String>> {
    let Some(syntax) = Syntax::of(path) else {
        return Err(vec![
            "a prompt file's name ends in .yaml, .yml, .json or .toml".into(),
        ]);
    };
    let mut reasons = Vec::new();
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    if let Err(reason) = check_name(NameKind::Prompt, &name) {
        reasons.push(format!(
            "the file name makes an invalid prompt name: {reason}"
        ));
    }
    if text.trim().is_empty() {
        reasons.push("the file is empty: a prompt file needs a template (or messages)".into());
        return Err(reasons);
    }
    let fields: Fields = match deserialize(syntax, text) {
        Ok(fields) => fields,
        Err(reason) => {
            reasons.push(reason);
            return Err(reasons);
        }
    };
    let template = match (fields.template, fields.messages) {
        (Some(_), Some(_)) => {
            reasons.push("it has both template and messages: give one".into());
            None
        }
        (None, None) => {
            reasons.push("it needs a template (or messages, for a chat prompt)".into());
            None
        }
        (Some(text), None) => Some(Template::Str(text)),
        (None, Some(messages)) => {
            let mut chat = Vec::with_capacity(messages.len());
            for (i, m) in messages.into_iter().enumerate() {
                match (m.content, m.parts) {
                    (Some(content), None) => chat.push(Message::text(m.role, content)),
                    (None, Some(parts)) => chat.push(Message::with_parts(m.role, parts)),
                    (Some(_), Some(_)) => reasons.push(format!(
                        "message {} has both content and parts: give one",
                        i + 1
                    )),
                    (None, None) => reasons.push(format!("message {} needs a content", i + 1)),
                }
            }
            Some(Template::Chat(chat))
        }
    };
    let format = fields.format.unwrap_or(TemplateFormat::Mustache);
    if let Some(template) = &template
        && reasons.is_empty()
        && let Err(e) = CompiledTemplate::compile(format, template)
    {
        reasons.push(format!("{} template: {e}", format.as_str()));
    }
    let params = fields.params.unwrap_or_default();
    let openai = matches!(
        fields.provider.as_deref(),
        None | Some("openai" | "OPENAI" | "azure_openai" | "AZURE_OPENAI")
    );
    for (key, value) in &params {
        if let Some(problem) = param_problem(key, value) {
            reasons.push(format!("params: {problem}"));
        } else if openai && let Some(warning) = crate::input::unknown_param(key) {
            crate::note!("warning: {}: params.{warning}", path.display());
        }
    }
    let tags = fields.tags.unwrap_or_default();
    for (i, tag) in tags.iter().enumerate() {
        if let Err(reason) = check_name(NameKind::Tag, tag) {
            reasons.push(format!("tags: invalid tag name {tag:?}: {reason}"));
        } else if tags[..i].contains(tag) {
            reasons.push(format!("tags: '{tag}' is listed twice"));
        }
    }
    match template {
        Some(template) if reasons.is_empty() => Ok(PromptSource {
            name,
            path: path.to_path_buf(),
            syntax,
            format,
            template,
            model: fields.model,
            provider: fields.provider,
            params,
            metadata: fields.metadata.unwrap_or_default(),
            description: fields.description,
            message: fields.message,
            tags,
        }),
        _ => Err(reasons),
    }
}

/// The file's fields, or why they cannot be read (one line).
fn deserialize(syntax: Syntax, text: &str) -> Result<Fields, String> {
    match syntax {
        Syntax::Yaml => serde_saphyr::from_str(text).map_err(|e| {
            // A YAML error is an annotated snippet; its first line says what is wrong.
            let first = e
                .to_string()
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid YAML")
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            format!("invalid YAML: {first}")
        }),
        Syntax::Json => crate::json::from_str(text).map_err(|e| format!("invalid JSON: {e}")),
        Syntax::Toml => toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("invalid TOML at line {line}: {message}")
                }
                None => format!("invalid TOML: {message}"),
            }
        }),
    }
}

/// The text of a prompt file holding `version`, with `tags` (the tags a sync of the file sets),
/// in `syntax`. The text is read back before it is returned: `Err` when it would not give the
/// same content (TOML has no `null`, say), so a pulled file always syncs as unchanged.
pub fn render(version: &PromptVersion, tags: &[String], syntax: Syntax) -> Result<String, String> {
    let (template, messages) = match &version.template {
        Template::Str(text) => (Some(text.clone()), None),
        Template::Chat(messages) => (
            None,
            Some(
                messages
                    .iter()
                    .map(|m| FileMessage {
                        role: m.role.clone(),
                        content: m.parts.is_none().then(|| m.content.clone()),
                        parts: m.parts.clone(),
                    })
                    .collect(),
            ),
        ),
    };
    let fields = Fields {
        _schema: None,
        description: version.description.clone(),
        model: version.model.clone(),
        provider: version.provider.clone(),
        format: Some(version.format),
        tags: (!tags.is_empty()).then(|| tags.to_vec()),
        message: None,
        template,
        params: (!version.params.is_empty()).then(|| version.params.clone()),
        metadata: (!version.metadata.is_empty()).then(|| version.metadata.clone()),
        messages,
    };
    let text = match syntax {
        Syntax::Yaml => {
            // Literal blocks (`|`) for text with line breaks; a long line stays one line
            // rather than being folded, so a diff shows the line a person changed.
            let mut options = serde_saphyr::SerializerOptions::default();
            options.folded_wrap_chars = usize::MAX;
            serde_saphyr::to_string_with_options(&fields, options).map_err(|e| e.to_string())?
        }
        Syntax::Json => {
            let mut text = serde_json::to_string_pretty(&fields).map_err(|e| e.to_string())?;
            text.push('\n');
            text
        }
        Syntax::Toml => toml::to_string_pretty(&fields).map_err(|e| e.to_string())?,
    };
    let path = PathBuf::from(format!("{}.{}", version.prompt, extension(syntax)));
    let back = parse(&path, &text).map_err(|reasons| reasons.join("; "))?;
    if !back.matches(version) || back.tags != tags {
        return Err(format!(
            "version {} of '{}' does not read back the same from {} (a value this syntax cannot hold)",
            version.seq,
            version.prompt,
            extension(syntax)
        ));
    }
    Ok(text)
}

/// The extension `pull` gives a new file of this syntax.
pub fn extension(syntax: Syntax) -> &'static str {
    match syntax {
        Syntax::Yaml => "yaml",
        Syntax::Json => "json",
        Syntax::Toml => "toml",
    }
}

#[cfg(test)]
mod tests;
