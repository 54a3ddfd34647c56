//! Plain data types shared by every layer: prompts, versions, templates, tags and tag events.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// A JSON object, the shape of invocation parameters, metadata and row variables.
pub type JsonObject = Map<String, Value>;

/// How placeholders are written inside a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateFormat {
    /// `{{ name }}`, dotted names reach into JSON values, `\{{` is a literal `{{`.
    Mustache,
    /// `{name}`, `{{` and `}}` are literal braces.
    #[serde(rename = "fstring")]
    FString,
    /// No placeholders: the text is sent as written.
    None,
}

impl TemplateFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateFormat::Mustache => "mustache",
            TemplateFormat::FString => "fstring",
            TemplateFormat::None => "none",
        }
    }
}

impl fmt::Display for TemplateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TemplateFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mustache" => Ok(TemplateFormat::Mustache),
            "fstring" | "f-string" => Ok(TemplateFormat::FString),
            "none" => Ok(TemplateFormat::None),
            other => Err(format!(
                "unknown template format '{other}' (expected mustache, fstring or none)"
            )),
        }
    }
}

/// Whether a template is one user message (`str`) or a list of role/content messages (`chat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateType {
    Str,
    Chat,
}

impl TemplateType {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateType::Str => "str",
            TemplateType::Chat => "chat",
        }
    }
}

impl fmt::Display for TemplateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat message: a role (`system`, `user`, `assistant`, …) and its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// The body of a version: a single string or a list of chat messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Template {
    Str(String),
    Chat(Vec<Message>),
}

impl Template {
    pub fn kind(&self) -> TemplateType {
        match self {
            Template::Str(_) => TemplateType::Str,
            Template::Chat(_) => TemplateType::Chat,
        }
    }
}

/// A named prompt, summarised from its versions and tags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prompt {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub latest_seq: i64,
    pub version_count: i64,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

/// One immutable version of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptVersion {
    /// Stable unique id, never reused.
    pub id: String,
    pub prompt: String,
    /// 1, 2, 3 … per prompt, no gaps.
    pub seq: i64,
    pub template_type: TemplateType,
    pub format: TemplateFormat,
    pub template: Template,
    pub model: Option<String>,
    pub params: JsonObject,
    pub metadata: JsonObject,
    pub description: Option<String>,
    pub message: Option<String>,
    pub author: String,
    /// sha256 of the content fields (type, format, template, model, params, metadata).
    pub content_hash: String,
    pub created_at: String,
}

/// What a new version is made of; the store adds id, seq, hash and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    pub format: TemplateFormat,
    pub template: Template,
    pub model: Option<String>,
    pub params: JsonObject,
    pub metadata: JsonObject,
    pub description: Option<String>,
    pub message: Option<String>,
    pub author: String,
}

/// A movable label pointing at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub prompt: String,
    pub name: String,
    pub version_id: String,
    pub version_seq: i64,
    pub updated_at: String,
    pub updated_by: String,
}

/// Why a tag changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagAction {
    /// The tag did not exist and now points at a version.
    Set,
    /// The tag pointed at one version and now points at another (or the same, re-affirmed).
    Move,
    Delete,
    Rollback,
    Promote,
}

impl TagAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TagAction::Set => "set",
            TagAction::Move => "move",
            TagAction::Delete => "delete",
            TagAction::Rollback => "rollback",
            TagAction::Promote => "promote",
        }
    }
}

impl fmt::Display for TagAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TagAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "set" => TagAction::Set,
            "move" => TagAction::Move,
            "delete" => TagAction::Delete,
            "rollback" => TagAction::Rollback,
            "promote" => TagAction::Promote,
            other => return Err(format!("unknown tag action '{other}'")),
        })
    }
}

/// One entry of the append-only tag history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagEvent {
    pub id: i64,
    pub prompt: String,
    pub tag: String,
    pub action: TagAction,
    pub from_version_id: Option<String>,
    pub from_seq: Option<i64>,
    pub to_version_id: Option<String>,
    pub to_seq: Option<i64>,
    pub actor: String,
    pub message: Option<String>,
    pub at: String,
    /// True when the move needed `--force` (a protected tag).
    pub forced: bool,
    /// For a promotion: the verdict, thresholds and experiment ids behind it.
    pub evidence: Option<Value>,
}
