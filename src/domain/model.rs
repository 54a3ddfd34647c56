//! Plain data types shared by every layer: prompts, versions, templates, tags and tag events. It
//! must not open the store, read a file, call the network or print; the one thing it reads from
//! outside is the clock (`now`).

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

/// One chat message: a role (`system`, `user`, `assistant`, `ai`, `model`, …) and its content.
///
/// A content given as a list of parts (Phoenix's `text`, `tool_call` and `tool_result` parts)
/// is kept as that list in `parts`, unchanged; `content` is then the text of its text parts,
/// joined, which is what listings and diffs show.
///
/// Read also in Langfuse's placeholder form, `{"type": "placeholder", "name": "history"}`, as
/// runner's `{"role": "placeholder", "content": "history"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MessageIn")]
pub struct Message {
    pub role: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<Value>>,
}

/// A message as files and requests give it (see `Message`).
#[derive(Deserialize)]
struct MessageIn {
    role: Option<String>,
    content: Option<String>,
    #[serde(default)]
    parts: Option<Vec<Value>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
}

impl TryFrom<MessageIn> for Message {
    type Error = String;

    fn try_from(m: MessageIn) -> Result<Message, String> {
        if m.role.is_none() && m.kind.as_deref() == Some("placeholder") {
            let name = m
                .name
                .ok_or("a placeholder message needs the `name` of its column")?;
            return Ok(Message::text("placeholder", name));
        }
        Ok(Message {
            role: m.role.ok_or("missing field `role`")?,
            content: m.content.ok_or("missing field `content`")?,
            parts: m.parts,
        })
    }
}

impl Message {
    pub fn text(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            parts: None,
        }
    }

    /// A message whose content is a list of parts; `content` becomes the text of its text parts.
    pub fn with_parts(role: impl Into<String>, parts: Vec<Value>) -> Message {
        Message {
            role: role.into(),
            content: text_of_parts(&parts),
            parts: Some(parts),
        }
    }
}

/// The text of the `text` parts of a content part list, joined.
pub fn text_of_parts(parts: &[Value]) -> String {
    parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect()
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub latest_seq: i64,
    pub version_count: i64,
    /// The prompt's own description and metadata (set at creation, changed by an update).
    pub description: Option<String>,
    pub metadata: JsonObject,
    pub tags: Vec<String>,
}

/// A change to a prompt's own fields; None leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptUpdate {
    /// Some(None) clears the description.
    pub description: Option<Option<String>>,
    pub metadata: Option<JsonObject>,
}

/// One entry of a prompt's own history: an update, an archive or a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptEvent {
    pub id: i64,
    pub prompt: String,
    pub action: String,
    pub actor: String,
    pub at: String,
    /// An archive that took a protected tag offline with force.
    pub forced: bool,
    /// An archive that took a protected tag offline by a caller with the deploy role.
    pub deploy: bool,
}

/// One immutable version of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The model provider the version was written for (Phoenix's `model_provider`); None for
    /// the default, OpenAI's wire format.
    pub provider: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewVersion {
    pub format: TemplateFormat,
    pub template: Template,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub params: JsonObject,
    pub metadata: JsonObject,
    pub description: Option<String>,
    pub message: Option<String>,
    pub author: String,
}

/// A movable label pointing at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// True when a caller with the deploy role (a deploy token) moved a protected tag, which
    /// needs no force.
    pub deploy: bool,
    /// For a promotion: the verdict, thresholds and experiment ids behind it.
    pub evidence: Option<Value>,
}

/// sha256 over the fields that make up what a version sends: type, format, template, model,
/// parameters and metadata. Serialised through `serde_json::Value`, whose maps are sorted, so
/// equal content always hashes equally.
pub fn content_hash(
    format: TemplateFormat,
    template: &Template,
    model: Option<&str>,
    params: &JsonObject,
    metadata: &JsonObject,
) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::json!({
        "template_type": template.kind(),
        "format": format,
        "template": template,
        "model": model,
        "params": params,
        "metadata": metadata,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    hex(&digest)
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Which kind of name is being checked, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Prompt,
    Tag,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Prompt => "prompt",
            NameKind::Tag => "tag",
        })
    }
}

/// Checks a prompt or tag name: letters, digits, `_`, `-`, `.`, 1 to 128 characters; a tag made
/// only of digits is refused because it would read as a version number.
pub fn check_name(kind: NameKind, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name needs at least one character".into());
    }
    if name.chars().count() > 128 {
        return Err("a name has at most 128 characters".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "{bad:?} is not allowed (use letters, digits, '_', '-' and '.')"
        ));
    }
    if kind == NameKind::Tag && name.chars().all(|c| c.is_ascii_digit()) {
        return Err("a tag made only of digits would read as a version number".into());
    }
    // `.` and `..` name folders on disk (an export writes one folder per prompt), and any
    // name of dots alone reads as one: refused everywhere.
    if name.chars().all(|c| c == '.') {
        return Err("a name made only of dots would name a folder outside the export".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases: &[(NameKind, &str, bool)] = &[
            (NameKind::Prompt, "customer_support_greeting", true),
            (NameKind::Prompt, "a.b-c_1", true),
            (NameKind::Prompt, "123", true),
            (NameKind::Tag, "123", false),
            (NameKind::Tag, "v1.0", true),
            (NameKind::Prompt, "", false),
            (NameKind::Prompt, "has space", false),
            (NameKind::Prompt, "slash/name", false),
            (NameKind::Prompt, "é", false),
            (NameKind::Prompt, &"x".repeat(128), true),
            (NameKind::Prompt, &"x".repeat(129), false),
            (NameKind::Prompt, ".", false),
            (NameKind::Prompt, "..", false),
            (NameKind::Prompt, "...", false),
            (NameKind::Tag, "..", false),
            (NameKind::Prompt, ".hidden", true),
            (NameKind::Prompt, "a..b", true),
        ];
        for (kind, name, ok) in cases {
            assert_eq!(check_name(*kind, name).is_ok(), *ok, "{kind} {name:?}");
        }
    }

    #[test]
    fn hash_ignores_map_order_and_sees_every_content_field() {
        let mut a = JsonObject::new();
        a.insert("x".into(), 1.into());
        a.insert("y".into(), 2.into());
        let mut b = JsonObject::new();
        b.insert("y".into(), 2.into());
        b.insert("x".into(), 1.into());
        let t = Template::Str("hi {{x}}".into());
        let f = TemplateFormat::Mustache;
        let empty = JsonObject::new();
        let base = content_hash(f, &t, Some("m"), &a, &empty);
        assert_eq!(base, content_hash(f, &t, Some("m"), &b, &empty));
        assert_eq!(base.len(), 64);
        assert_ne!(
            base,
            content_hash(TemplateFormat::FString, &t, Some("m"), &a, &empty)
        );
        assert_ne!(base, content_hash(f, &t, None, &a, &empty));
        assert_ne!(base, content_hash(f, &t, Some("m"), &a, &a));
        assert_ne!(
            base,
            content_hash(f, &Template::Str("hi".into()), Some("m"), &a, &empty)
        );
    }
}

/// Everything the store knows about one prompt: the unit of export and import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptArchive {
    pub name: String,
    pub created_at: String,
    pub description: Option<String>,
    pub metadata: JsonObject,
    /// When the prompt was archived; None while it is in use.
    pub archived_at: Option<String>,
    /// Its own history (updates, archive, restore), oldest first.
    pub events: Vec<PromptEvent>,
    /// Oldest first.
    pub versions: Vec<PromptVersion>,
    pub tags: Vec<Tag>,
    /// Oldest first.
    pub history: Vec<TagEvent>,
}

/// How a command names one version of a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionRef {
    Latest,
    Seq(i64),
    Id(String),
    Tag(String),
    /// A version number, a tag name or a version id, tried in that order.
    Any(String),
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionRef::Latest => f.write_str("latest"),
            VersionRef::Seq(n) => write!(f, "version {n}"),
            VersionRef::Id(id) => write!(f, "version id {id}"),
            VersionRef::Tag(t) => write!(f, "tag {t}"),
            VersionRef::Any(s) => write!(f, "'{s}'"),
        }
    }
}

/// One evaluator's judgement of one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub evaluator: String,
    /// In [0, 1].
    pub score: f64,
    pub pass: bool,
    pub reason: String,
    /// True when the evaluator itself could not judge (bad verdict, failing command).
    pub error: bool,
}

impl Score {
    /// A row whose call failed fails every evaluator: it is never dropped from a denominator.
    pub fn call_failed(evaluator: &str) -> Score {
        Score {
            evaluator: evaluator.to_string(),
            score: 0.0,
            pass: false,
            reason: "the call failed".into(),
            error: false,
        }
    }
}

/// Whether a call produced an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    Ok,
    Error,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Ok => "ok",
            ResultStatus::Error => "error",
        }
    }
}

/// Everything recorded about one row and repetition of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub row_index: i64,
    pub row_id: String,
    pub repetition: i64,
    /// The row's input values, so a result never needs the dataset file again.
    pub vars: JsonObject,
    pub expected: Option<String>,
    /// The rendered messages, exactly as sent.
    pub messages: Vec<Message>,
    pub output: Option<String>,
    pub finish_reason: Option<String>,
    pub status: ResultStatus,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub latency_ms: f64,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached: bool,
    pub started_at: String,
    pub finished_at: String,
    pub scores: Vec<Score>,
    /// Set when this answer should be stored in the response cache under this key.
    #[serde(skip)]
    pub cache_key: Option<String>,
    /// What the answer carried beside its text: `tool_calls` (from the endpoint or a target,
    /// `[{id, name, arguments}]` in order), a target's `metadata`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<JsonObject>,
}

#[cfg(test)]
impl RunResult {
    /// Row `row_index` answered "ok" at once on the first attempt, with nothing else recorded:
    /// for tests to change what they look at.
    pub fn answered(row_index: i64) -> RunResult {
        RunResult {
            row_index,
            row_id: row_index.to_string(),
            repetition: 0,
            vars: JsonObject::new(),
            expected: None,
            messages: Vec::new(),
            output: Some("ok".into()),
            finish_reason: None,
            status: ResultStatus::Ok,
            error_kind: None,
            error_message: None,
            http_status: Some(200),
            attempts: 1,
            latency_ms: 0.0,
            prompt_tokens: None,
            completion_tokens: None,
            cached: false,
            started_at: String::new(),
            finished_at: String::new(),
            scores: Vec::new(),
            cache_key: None,
            extra: None,
        }
    }
}

/// Where an experiment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Running,
    /// Every planned result is stored, and every call answered.
    Completed,
    /// Every planned result is stored, and some of them are errors (calls that failed, rows
    /// that did not render): not evidence a gate takes unless its `--max-error-rate` allows
    /// that many.
    CompletedWithErrors,
    Interrupted,
    Failed,
}

impl ExperimentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Running => "running",
            ExperimentStatus::Completed => "completed",
            ExperimentStatus::CompletedWithErrors => "completed_with_errors",
            ExperimentStatus::Interrupted => "interrupted",
            ExperimentStatus::Failed => "failed",
        }
    }

    /// The status as people read it, from the stored one and the errored results: the store
    /// records a run's end as `completed` and keeps every result, so an errored result turns
    /// it into `completed_with_errors` on every read, in stores written before this status
    /// existed too.
    pub fn seen(stored: ExperimentStatus, errors: i64) -> ExperimentStatus {
        match stored {
            ExperimentStatus::Completed if errors > 0 => ExperimentStatus::CompletedWithErrors,
            other => other,
        }
    }

    /// Every planned result is stored (with or without errors).
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            ExperimentStatus::Completed | ExperimentStatus::CompletedWithErrors
        )
    }
}

impl FromStr for ExperimentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => ExperimentStatus::Running,
            "completed" => ExperimentStatus::Completed,
            "completed_with_errors" => ExperimentStatus::CompletedWithErrors,
            "interrupted" => ExperimentStatus::Interrupted,
            "failed" => ExperimentStatus::Failed,
            other => return Err(format!("unknown experiment status '{other}'")),
        })
    }
}

/// The dataset an experiment ran over, as it was then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub path: String,
    pub hash: String,
    pub rows: i64,
    pub columns: Vec<String>,
}

/// How an experiment runs; stored with it so `resume` runs the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub concurrency: usize,
    pub repetitions: usize,
    pub limit: Option<usize>,
    pub timeout_secs: f64,
    pub max_retries: u32,
    /// `--var` constants.
    pub vars: JsonObject,
    /// `--column VAR=COLUMN` renames.
    pub columns: Vec<(String, String)>,
    pub expected_column: Option<String>,
    pub no_cache: bool,
    pub judge_model: Option<String>,
    /// `--fresh`: every row goes to the endpoint; no cached answer is used (fresh ones are
    /// still written, so the next run can use them).
    #[serde(default)]
    pub fresh: bool,
    /// `--cache-ttl`: a cached answer older than this many seconds is not used.
    #[serde(default)]
    pub cache_ttl_secs: Option<u64>,
    /// `--max-rpm` / `--max-tpm` (or runner.toml): requests and tokens per minute at most.
    #[serde(default)]
    pub max_rpm: Option<f64>,
    #[serde(default)]
    pub max_tpm: Option<f64>,
    /// `--max-cost`: dollars the experiment may spend in all (earlier runs count).
    #[serde(default)]
    pub max_cost: Option<f64>,
    /// `--detach`: planned as work items that `runner worker` processes share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached: Option<Detached>,
    /// `--shard K/N`: only the rows whose id hashes to shard K of N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// `--target`: what answers each row instead of one chat call to the endpoint: a program
    /// (`cmd:python app.py`) or an HTTP route (`http://127.0.0.1:8000/run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `--target-env NAME`: environment variables a `cmd:` target gets besides the few every
    /// program needs (PATH, HOME, locale, temporary folder); none other reaches it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_env: Vec<String>,
    /// The endpoint said it is runner's own mock (`runner mock-server`, the demo): nothing
    /// was spent, so the run costs `$0 (mock)` whatever the model's list price.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mock: bool,
}

/// How a detached experiment was planned: its key, and the check `experiment wait` applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detached {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pass_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
}

/// One of N static shards of a dataset (`--shard K/N`, K from 1): a row belongs to the shard
/// its id hashes to, so adding rows never moves the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Reads `K/N` (1 ≤ K ≤ N).
    pub fn parse(text: &str) -> Option<Shard> {
        let (k, n) = text.trim().split_once('/')?;
        let (index, count) = (k.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?);
        (index >= 1 && index <= count).then_some(Shard { index, count })
    }

    /// Whether the row with this id is in the shard: the first 8 bytes of the id's sha256,
    /// modulo N, stable across machines, versions and row orders.
    pub fn contains(&self, row_id: &str) -> bool {
        Shard::of(row_id, self.count) == self.index
    }

    /// The shard (from 1) a row id falls in, of `count`.
    pub fn of(row_id: &str, count: u32) -> u32 {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(row_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32 + 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One run of a prompt version over a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: String,
    pub name: Option<String>,
    /// The prompt version it judged; None for an experiment your own code ran (through the
    /// Phoenix client) whose metadata names no version: it can be listed, shown and compared,
    /// never taken as a gate's evidence.
    pub prompt: Option<String>,
    pub version_id: Option<String>,
    pub version_seq: Option<i64>,
    /// The tag the version was chosen by, if any.
    pub tag: Option<String>,
    pub dataset: DatasetRef,
    pub model: String,
    pub base_url: String,
    pub evaluators: Vec<String>,
    pub settings: RunSettings,
    /// rows × repetitions.
    pub planned: i64,
    pub status: ExperimentStatus,
    pub author: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// Wall time spent running, summed over the first run and every resume.
    pub wall_ms: i64,
    /// Who runs it now and until when (a lease the run renews); None when no run holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Stored results that are errors (failed calls, rows that did not render).
    pub error_count: i64,
    /// `error_count` over the planned results (0 when none was planned).
    pub error_rate: f64,
}

impl Experiment {
    /// The prompt version it judged: (prompt, version id, version number); None for an
    /// experiment of your own code whose metadata names no version.
    pub fn judged(&self) -> Option<(&str, &str, i64)> {
        match (&self.prompt, &self.version_id, self.version_seq) {
            (Some(prompt), Some(id), Some(seq)) => Some((prompt, id, seq)),
            _ => None,
        }
    }

    /// What it judged, for people: `NAME vN (TAG)`, or, naming no version, its own name.
    pub fn label(&self) -> String {
        match (self.judged(), &self.tag) {
            (Some((prompt, _, seq)), Some(tag)) => format!("{prompt} v{seq} ({tag})"),
            (Some((prompt, _, seq)), None) => format!("{prompt} v{seq}"),
            (None, _) => format!(
                "{} (no prompt version)",
                self.name.as_deref().unwrap_or(&self.id)
            ),
        }
    }

    /// Sets the error figures, and the status they make (see `ExperimentStatus::seen`).
    pub fn with_errors(mut self, errors: i64) -> Experiment {
        self.error_count = errors;
        self.error_rate = if self.planned > 0 {
            errors as f64 / self.planned as f64
        } else {
            0.0
        };
        self.status = ExperimentStatus::seen(self.status, errors);
        self
    }
}

/// A run's claim on its experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub until: String,
}

/// One result reduced to what a comparison needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowOutcome {
    pub row_id: String,
    pub repetition: i64,
    pub ok: bool,
    pub latency_ms: f64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The start of the output, or of the error message.
    pub output: String,
    /// The row's input values in a few words.
    pub input: String,
    /// (evaluator, pass, score).
    pub scores: Vec<(String, bool, f64)>,
    /// The row's value of the column a comparison clusters on (as text; None without one).
    pub cluster: Option<String>,
}

/// What a page shows of one row of an experiment: its first repetition's inputs in a few
/// words, expected answer, and the start of its output (or of its error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowText {
    pub row_id: String,
    pub input: String,
    pub expected: Option<String>,
    pub output: String,
    /// The call failed: `output` is the error message.
    pub error: bool,
}

/// A row's value of `column` as a cluster key: text as it is, any other value as JSON; None
/// when the row has no such column.
pub fn cluster_key(vars: &JsonObject, column: Option<&str>) -> Option<String> {
    let value = vars.get(column?)?;
    Some(match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// A row's inputs in a few words: its values joined by ` | `, without the `id` and the expected
/// answer, which are not inputs.
pub fn input_summary(vars: &JsonObject, expected_column: Option<&str>) -> String {
    vars.iter()
        .filter(|(k, _)| {
            // What the row expects is no input: its expected answer, its expected tool calls.
            k.as_str() != "id"
                && Some(k.as_str()) != expected_column
                && k.as_str() != crate::tool_calls::EXPECTED_COLUMN
                && k.as_str() != "expected_turns"
        })
        .map(|(_, v)| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// What a new experiment is, before it has an id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewExperiment {
    pub name: Option<String>,
    /// The prompt and version it judges (None: an experiment of your own code that names none).
    pub prompt: Option<String>,
    pub version_id: Option<String>,
    pub tag: Option<String>,
    pub dataset: DatasetRef,
    pub model: String,
    pub base_url: String,
    pub evaluators: Vec<String>,
    pub settings: RunSettings,
    pub planned: i64,
    pub author: String,
    /// Everything that decides what was sent and how it was scored, hashed (see migration 3).
    pub fingerprint: String,
}

/// A response kept in the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResponse {
    pub output: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub http_status: Option<u16>,
    pub latency_ms: f64,
    /// When the answer was received (RFC 3339), so a run can tell its age.
    pub created_at: String,
}

/// Per evaluator aggregates. Errored calls count as failures: the denominator is every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatorSummary {
    pub evaluator: String,
    pub passed: i64,
    pub total: i64,
    pub pass_rate: f64,
    pub mean_score: f64,
    /// Rows where the evaluator itself failed to judge.
    pub errors: i64,
    /// Results that have this evaluator's score at all (the rest count as failures in
    /// `total`); fewer than the results while an experiment's evaluations still arrive.
    #[serde(skip)]
    pub judged: i64,
    /// The per-row figures the standard errors come from (`view::EvaluatorStatistics`).
    #[serde(skip)]
    pub spread: RowSpread,
}

/// One evaluator's results folded per row (a row's pass and score are the means over its
/// repetitions, an errored call counting as a fail with score 0), as sums the store computes:
/// what standard errors and the effect of repetitions are estimated from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RowSpread {
    /// Rows with at least one result.
    pub rows: i64,
    /// Results over those rows (rows × repetitions when every result is there).
    pub answers: i64,
    pub pass: SpreadSums,
    pub score: SpreadSums,
}

/// Σ of the row means, Σ of their squares, and Σ of the rows' own sample variances over their
/// repetitions (0 for a row answered once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SpreadSums {
    pub sum: f64,
    pub sum_sq: f64,
    pub within: f64,
}

/// Aggregates over one experiment's stored results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub results: i64,
    pub ok: i64,
    pub errored: i64,
    pub cached: i64,
    pub missing: i64,
    pub error_rate: f64,
    pub evaluators: Vec<EvaluatorSummary>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Of those, the tokens of answers taken from the response cache: nothing was spent on
    /// them in this experiment.
    #[serde(default)]
    pub cached_prompt_tokens: i64,
    #[serde(default)]
    pub cached_completion_tokens: i64,
    /// Error kinds and how often each occurred.
    pub error_kinds: Vec<(String, i64)>,
}

/// A version of a dataset kept in the store (`runner dataset push`): the file as pushed, which
/// never changes once stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVersion {
    pub id: String,
    /// The dataset's name.
    pub dataset: String,
    pub dataset_id: String,
    pub seq: i64,
    /// `csv` or `jsonl`.
    pub format: String,
    /// `rows` (a file as pushed) or `examples` (JSONL written through the Phoenix dataset API:
    /// one example a line, {"id", "input", "output", "metadata"}).
    pub shape: String,
    /// sha256 of the bytes: what an experiment over the same file records.
    pub hash: String,
    pub rows: i64,
    pub columns: Vec<String>,
    pub message: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

/// A dataset as the Phoenix dataset API lists it: its own fields and its latest version's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetEntry {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// A JSON object, as given when the dataset was created.
    pub metadata: String,
    pub created_at: String,
    /// When its latest version was written.
    pub updated_at: String,
    /// The latest version's rows (examples).
    pub example_count: i64,
    pub latest_version_id: String,
}

/// An experiment your own code ran through the Phoenix client (`POST
/// /v1/datasets/{id}/experiments`), with its run counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskExperiment {
    pub id: String,
    pub dataset_id: String,
    pub dataset_version_id: String,
    pub name: String,
    pub description: Option<String>,
    /// A JSON object, as given.
    pub metadata: String,
    pub repetitions: i64,
    /// Also an experiment of runner's own, with the same id (every one created since schema
    /// 17; of a prompt version when its metadata named one). Older ones that named no version
    /// are only Phoenix's.
    pub mirrored: bool,
    pub created_at: String,
    pub created_by: String,
    /// When its latest run arrived (its creation without one).
    pub updated_at: String,
    /// The examples of its dataset version.
    pub example_count: i64,
    pub successful_runs: i64,
    pub failed_runs: i64,
}

/// One run of a task on one example and repetition (from 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRun {
    pub id: String,
    pub experiment_id: String,
    /// The example's key (see `workflow::examples`).
    pub example_key: String,
    pub repetition: i64,
    /// JSON, as the task returned it.
    pub output: String,
    pub error: Option<String>,
    pub start_time: String,
    pub end_time: String,
    pub trace_id: Option<String>,
}

/// An evaluation of a run, one per name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvaluation {
    pub id: String,
    pub run_id: String,
    pub name: String,
    pub annotator_kind: String,
    pub label: Option<String>,
    pub score: Option<f64>,
    pub explanation: Option<String>,
    pub error: Option<String>,
    /// A JSON object.
    pub metadata: String,
    pub start_time: String,
    pub end_time: String,
    pub trace_id: Option<String>,
}

impl TaskEvaluation {
    /// As runner's score: its score when it gives one (0.5 or more passes), else its label
    /// (`true`, `pass`, `passed`, `correct`, `yes` pass); an evaluation that errored fails,
    /// marked as the evaluator's error.
    pub fn score(&self) -> Score {
        let evaluation = self;
        if let Some(error) = &evaluation.error {
            return Score {
                evaluator: evaluation.name.clone(),
                score: 0.0,
                pass: false,
                reason: error.clone(),
                error: true,
            };
        }
        let by_label = evaluation.label.as_deref().map(|label| {
            matches!(
                label.trim().to_ascii_lowercase().as_str(),
                "true" | "pass" | "passed" | "correct" | "yes"
            )
        });
        let (score, pass) = match (evaluation.score.filter(|s| s.is_finite()), by_label) {
            (Some(score), _) => (score, score >= 0.5),
            (None, Some(pass)) => (if pass { 1.0 } else { 0.0 }, pass),
            (None, None) => (0.0, false),
        };
        let reason = evaluation
            .explanation
            .clone()
            .or_else(|| evaluation.label.clone())
            .unwrap_or_default();
        Score {
            evaluator: evaluation.name.clone(),
            score,
            pass,
            reason,
            error: false,
        }
    }
}

/// The time as stored: RFC 3339, UTC, milliseconds.
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// Milliseconds from `first` to `last` (stored times); 0 when either is missing or unreadable.
pub fn span_ms(first: Option<&str>, last: Option<&str>) -> i64 {
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    match (first.and_then(parse), last.and_then(parse)) {
        (Some(a), Some(b)) => ((b - a).whole_milliseconds() as i64).max(0),
        _ => 0,
    }
}

/// A time as stored: RFC 3339, UTC, milliseconds (so stored times sort as text).
pub fn format_time(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Figures of one run (not of a stored experiment as a whole).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStats {
    /// Results this run produced.
    pub processed: u64,
    pub wall_secs: f64,
    /// The age in seconds of the oldest cached answer this run used, if it used any.
    pub oldest_cached_secs: Option<f64>,
    /// Answers with status 429 (each retried one counts).
    pub rate_limited: u64,
    /// Wall time during which requests were held back by a rate limit or a 429's wait.
    pub throttled_secs: f64,
    /// Requests allowed in flight when the run ended (the adaptive concurrency), and at most.
    pub concurrency: usize,
    pub max_concurrency: usize,
}

impl RunStats {
    pub fn rows_per_sec(&self) -> f64 {
        if self.wall_secs > 0.0 {
            self.processed as f64 / self.wall_secs
        } else {
            0.0
        }
    }
}
