//! Production traffic as runner keeps it: a span (one unit of an application's work, most often
//! one LLM call) with the prompt version it names, annotations (feedback and online scores) on a
//! span or a whole trace, and the tag lookups `runner serve` answered, rolled up per minute.
//!
//! This module reads the attribute conventions applications already write (OpenInference's
//! `llm.*`, OTel GenAI's `gen_ai.*`, runner's own `runner.prompt.*`) out of a span's attributes
//! as JSON values. It must not decode a wire format (the server's `otlp` does), open the store
//! or resolve a version name (ingest asks the store which version a claim names).

use serde_json::{Map, Value};

/// Longest text kept from a span (a message, an output, one attribute value), in characters;
/// beyond it the text is cut and ends with `TRUNCATED`.
pub const MAX_TEXT_CHARS: usize = 16_384;
/// Longest JSON kept for a span's attributes, in bytes; beyond it the largest values are cut
/// first.
pub const MAX_ATTRIBUTES_BYTES: usize = 65_536;
/// A span with more attributes than this is refused (the OTLP answer's partial success says
/// how many and why): no instrumentation writes that many, and each costs memory to read.
pub const MAX_ATTRIBUTES: usize = 4_096;
/// What ends a text that was cut.
pub const TRUNCATED: &str = "…[truncated]";
/// The project of spans that name none (Phoenix's default project).
pub const DEFAULT_PROJECT: &str = "default";
/// Phoenix names the project of each experiment `Experiment-<hex>`; the spans its client sends
/// while it runs an experiment go there, and are never production traffic.
pub const EXPERIMENT_PROJECT_PREFIX: &str = "Experiment-";

/// A span's outcome, as OTLP's status code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Unset => "unset",
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<SpanStatus> {
        match text {
            "unset" => Some(SpanStatus::Unset),
            "ok" => Some(SpanStatus::Ok),
            "error" => Some(SpanStatus::Error),
            _ => None,
        }
    }
}

/// One span, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// Lower-case hex, 32 digits.
    pub trace_id: String,
    /// Lower-case hex, 16 digits.
    pub span_id: String,
    pub parent_id: Option<String>,
    pub project: String,
    /// Sent while an experiment ran (see `EXPERIMENT_PROJECT_PREFIX`): never production.
    pub experiment: bool,
    /// The resource's `service.name`.
    pub service: Option<String>,
    /// The name of the token that sent it (`api` for an unnamed one or none).
    pub sender: Option<String>,
    pub name: String,
    /// OpenInference's span kind (`LLM`, `CHAIN`, …), or `LLM` for a GenAI span.
    pub kind: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub status: SpanStatus,
    /// The status message of an errored span.
    pub error: Option<String>,
    /// The version the span is linked to, when it names one that exists.
    pub link: Option<Link>,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    /// The template variables, as a JSON object's text.
    pub variables: Option<String>,
    /// The input messages as a JSON list's text, or the input text.
    pub input: Option<String>,
    pub output: Option<String>,
    /// Every attribute, as a JSON object's text (capped, secrets redacted).
    pub attributes: String,
}

impl Span {
    pub fn latency_ms(&self) -> i64 {
        (self.end_ms - self.start_ms).max(0)
    }

    /// Whether the span counts as an LLM call (the unit production metrics count).
    pub fn is_llm(&self) -> bool {
        self.kind.as_deref() == Some("LLM")
    }
}

/// The version a span is linked to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Link {
    pub prompt: String,
    pub version_id: String,
    pub version_number: i64,
    /// The tag the span named (`NAME@TAG`, `runner.prompt.tag`), if it named one.
    pub tag: Option<String>,
    /// Which convention linked it: `openinference`, `gen_ai` or `runner`.
    pub source: &'static str,
}

/// A link read back (from a remote store): its convention is one of the names runner gives.
impl<'de> serde::Deserialize<'de> for Link {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Link, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wire {
            prompt: String,
            version_id: String,
            version_number: i64,
            tag: Option<String>,
            source: String,
        }
        let wire = Wire::deserialize(d)?;
        let source = ["openinference", "gen_ai", "runner"]
            .into_iter()
            .find(|known| *known == wire.source)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("unknown link convention {:?}", wire.source))
            })?;
        Ok(Link {
            prompt: wire.prompt,
            version_id: wire.version_id,
            version_number: wire.version_number,
            tag: wire.tag,
            source,
        })
    }
}

/// What a span says about the version that produced it, before the store is asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Claim {
    /// A runner version id.
    Id(String),
    Number {
        prompt: String,
        number: i64,
    },
    Tag {
        prompt: String,
        tag: String,
    },
}

/// The version a span's attributes name, in the order the conventions are tried: OpenInference's
/// `llm.prompt_template.version` (a version id, `NAME@vN` or `NAME@TAG`), OTel GenAI's
/// `gen_ai.prompt.name` with `gen_ai.prompt.version` (a number, `vN`, an id or a tag), then
/// runner's `runner.prompt.version_id`, or `runner.prompt.name` with `runner.prompt.tag`.
pub fn claim(attributes: &Map<String, Value>) -> Option<(Claim, &'static str)> {
    let text = |key: &str| {
        attributes
            .get(key)
            .and_then(scalar_text)
            .filter(|t| !t.is_empty())
    };
    if let Some(version) = text("llm.prompt_template.version")
        && let Some(claim) = parse_reference(None, &version)
    {
        return Some((claim, "openinference"));
    }
    if let Some(version) = text("gen_ai.prompt.version")
        && let Some(claim) = parse_reference(text("gen_ai.prompt.name").as_deref(), &version)
    {
        return Some((claim, "gen_ai"));
    }
    if let Some(id) = text("runner.prompt.version_id")
        && uuid::Uuid::parse_str(&id).is_ok()
    {
        return Some((Claim::Id(id), "runner"));
    }
    if let Some(tag) = text("runner.prompt.tag")
        && let Some(claim) =
            parse_reference(text("runner.prompt.name").as_deref(), &tag).or_else(|| {
                let prompt = text("runner.prompt.name")?;
                Some(Claim::Tag { prompt, tag })
            })
    {
        return Some((claim, "runner"));
    }
    None
}

/// A version reference: an id alone, `NAME@vN`, `NAME@TAG`, or (with the prompt's name given
/// apart) `N`, `vN`, or a tag.
pub fn parse_reference(prompt: Option<&str>, text: &str) -> Option<Claim> {
    let text = text.trim();
    if uuid::Uuid::parse_str(text).is_ok() {
        return Some(Claim::Id(text.to_string()));
    }
    let (prompt, reference) = match text.split_once('@') {
        Some((name, reference)) => (name.trim().to_string(), reference.trim()),
        None => (prompt?.trim().to_string(), text),
    };
    if prompt.is_empty() || reference.is_empty() {
        return None;
    }
    let digits = reference.strip_prefix(['v', 'V']).unwrap_or(reference);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let number = digits.parse().ok()?;
        return Some(Claim::Number { prompt, number });
    }
    Some(Claim::Tag {
        prompt,
        tag: reference.to_string(),
    })
}

/// What the attributes say about the call itself.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CallFacts {
    pub kind: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub variables: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
}

/// Model, token counts, template variables and messages, from OpenInference's attributes or
/// else GenAI's.
pub fn call_facts(attributes: &Map<String, Value>) -> CallFacts {
    let text = |key: &str| attributes.get(key).and_then(scalar_text);
    let int = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| attributes.get(*k).and_then(integer))
    };
    let genai = attributes.keys().any(|k| k.starts_with("gen_ai."));
    let kind = text("openinference.span.kind")
        .map(|k| k.to_ascii_uppercase())
        .or_else(|| genai.then(|| "LLM".to_string()));
    let model = text("llm.model_name")
        .or_else(|| text("gen_ai.response.model"))
        .or_else(|| text("gen_ai.request.model"));
    let variables = text("llm.prompt_template.variables")
        .or_else(|| text("runner.prompt.variables"))
        .and_then(|raw| match serde_json::from_str::<Value>(&raw) {
            Ok(Value::Object(map)) => Some(Value::Object(map).to_string()),
            _ => None,
        });
    let input = messages(attributes, "llm.input_messages")
        .or_else(|| text("gen_ai.input.messages"))
        .or_else(|| text("input.value"))
        .map(|t| cap(&t));
    let output = messages(attributes, "llm.output_messages")
        .and_then(|list| last_content(&list).or(Some(list)))
        .or_else(|| text("output.value"))
        .or_else(|| text("gen_ai.output.messages"))
        .map(|t| cap(&t));
    CallFacts {
        kind,
        model,
        input_tokens: int(&[
            "llm.token_count.prompt",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
        ]),
        output_tokens: int(&[
            "llm.token_count.completion",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
        ]),
        variables,
        input,
        output,
    }
}

/// OpenInference's flattened message list (`PREFIX.0.message.role`, `PREFIX.0.message.content`,
/// …) as a JSON list of `{role, content}`.
fn messages(attributes: &Map<String, Value>, prefix: &str) -> Option<String> {
    let mut list: Vec<(usize, Map<String, Value>)> = Vec::new();
    for (key, value) in attributes {
        let Some(rest) = key.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let (Ok(index), Some(field)) = (index.parse::<usize>(), field.strip_prefix("message."))
        else {
            continue;
        };
        if !matches!(field, "role" | "content" | "name") || index > 10_000 {
            continue;
        }
        let slot = match list.iter().position(|(i, _)| *i == index) {
            Some(at) => at,
            None => {
                list.push((index, Map::new()));
                list.len() - 1
            }
        };
        list[slot].1.insert(field.to_string(), value.clone());
    }
    if list.is_empty() {
        return None;
    }
    list.sort_by_key(|(i, _)| *i);
    let list: Vec<Value> = list.into_iter().map(|(_, m)| Value::Object(m)).collect();
    Some(Value::Array(list).to_string())
}

/// The content of the last message of a JSON message list.
fn last_content(list: &str) -> Option<String> {
    let value: Value = serde_json::from_str(list).ok()?;
    value
        .as_array()?
        .last()?
        .get("content")?
        .as_str()
        .map(str::to_string)
}

/// A string, number or boolean attribute as text.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n| *n >= 0)
}

/// `text` cut to `MAX_TEXT_CHARS` characters.
pub fn cap(text: &str) -> String {
    // A text of at most MAX_TEXT_CHARS bytes has at most as many characters: no need to count.
    if text.len() <= MAX_TEXT_CHARS {
        return text.to_string();
    }
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        None => text.to_string(),
        Some((at, _)) => format!("{}{TRUNCATED}", &text[..at]),
    }
}

/// Whether an attribute's key names a secret: its value is stored as `redact::MARK`. Token
/// counts (`llm.token_count.*`, `gen_ai.usage.*_tokens`) are not secrets.
pub fn is_secret_key(key: &str) -> bool {
    // Most keys are lower case already (OpenInference, GenAI): no copy for them.
    let lower;
    let key = if key.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = key.to_ascii_lowercase();
        lower.as_str()
    } else {
        key
    };
    if key.contains("token_count") || key.contains("usage.") || key.ends_with("_tokens") {
        return false;
    }
    [
        "authorization",
        "api_key",
        "api-key",
        "apikey",
        "password",
        "secret",
        "cookie",
    ]
    .iter()
    .any(|word| key.contains(word))
        || key.ends_with(".token")
        || key.ends_with("_token")
}

/// The attributes as stored: secrets redacted, each text capped, and the whole cut to
/// `MAX_ATTRIBUTES_BYTES` by dropping the longest values first (the cut is marked
/// `runner.truncated`).
pub fn stored_attributes(attributes: &Map<String, Value>) -> String {
    // Written straight from the span's attributes (no copy of its texts); only an oversized
    // whole is rebuilt to cut it.
    // Two keys capped alike would be written twice: such keys take the slow path's map.
    if attributes.keys().all(|k| k.len() <= MAX_TEXT_CHARS) {
        let text = serde_json::to_string(&Stored(attributes)).unwrap_or_default();
        if text.len() <= MAX_ATTRIBUTES_BYTES {
            return text;
        }
    }
    let mut kept = Map::new();
    for (key, value) in attributes {
        let value = if is_secret_key(key) {
            Value::String(crate::redact::MARK.to_string())
        } else if let Value::String(text) = value {
            Value::String(cap(text))
        } else {
            value.clone()
        };
        kept.insert(cap(key), value);
    }
    let mut text = serde_json::to_string(&kept).unwrap_or_default();
    if text.len() > MAX_ATTRIBUTES_BYTES {
        let mut sizes: Vec<(usize, String)> = kept
            .iter()
            .map(|(k, v)| (k.len() + v.to_string().len(), k.clone()))
            .collect();
        sizes.sort_by_key(|s| std::cmp::Reverse(s.0));
        let mut total = text.len();
        for (size, key) in sizes {
            if total <= MAX_ATTRIBUTES_BYTES - 64 {
                break;
            }
            kept.remove(&key);
            total = total.saturating_sub(size + 2);
        }
        kept.insert("runner.truncated".into(), Value::Bool(true));
        text = Value::Object(kept).to_string();
    }
    text
}

/// `text` cut to `MAX_TEXT_CHARS` characters, borrowed when it is not cut.
fn capped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_TEXT_CHARS {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(cap(text))
}

/// Attributes serialised as stored: secrets redacted, texts capped.
struct Stored<'a>(&'a Map<String, Value>);

impl serde::Serialize for Stored<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        // Keys are at most MAX_TEXT_CHARS bytes here (the caller checked): none is cut.
        for (key, value) in self.0 {
            if is_secret_key(key) {
                map.serialize_entry(key, crate::redact::MARK)?;
            } else if let Value::String(text) = value {
                map.serialize_entry(key, &capped(text))?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// Where an annotation points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    Span,
    Trace,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Span => "span",
            Target::Trace => "trace",
        }
    }
}

/// Feedback or a score on a span or a trace (Phoenix's span and trace annotations, GenAI's
/// evaluation events). One per target, name and identifier: a later one replaces it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Annotation {
    pub target: Target,
    /// The span's or the trace's id (lower-case hex).
    pub target_id: String,
    pub name: String,
    /// `HUMAN`, `LLM` or `CODE`.
    pub annotator_kind: String,
    pub label: Option<String>,
    pub score: Option<f64>,
    pub explanation: Option<String>,
    /// A JSON object's text.
    pub metadata: String,
    /// Empty for none.
    pub identifier: String,
    /// `api` (the annotation routes) or `otlp` (an evaluation event on a span).
    pub source: String,
    pub time_ms: i64,
}

/// The annotator kinds Phoenix accepts.
pub const ANNOTATOR_KINDS: [&str; 3] = ["HUMAN", "LLM", "CODE"];

/// An annotation read back, with the span it scores (a trace annotation scores every linked
/// span of its trace).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredSpan {
    pub span_id: String,
    pub version_id: Option<String>,
    pub annotation: Annotation,
}

/// Tag lookups one sender made in one minute.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct LookupKey {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub prompt: String,
    /// The tag asked for; `latest` for the latest version, empty for a lookup by id.
    pub tag: String,
    pub version_id: String,
    /// The token's name, or `api`.
    pub sender: String,
    pub user_agent: String,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Which spans a reader wants.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SpanFilter {
    pub prompt: Option<String>,
    /// Only these versions (empty: any).
    pub version_ids: Vec<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Also the spans of experiment runs.
    pub experiments: bool,
    /// Errored spans only.
    pub errors_only: bool,
    /// Newest first, at most this many (None: all, oldest first).
    pub newest: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn the_conventions_are_tried_in_order() {
        let id = "0190d0a8-0000-7000-8000-000000000001";
        let both = attrs(json!({
            "llm.prompt_template.version": "greet@v3",
            "gen_ai.prompt.name": "other", "gen_ai.prompt.version": "7",
            "runner.prompt.version_id": id,
        }));
        assert_eq!(
            claim(&both),
            Some((
                Claim::Number {
                    prompt: "greet".into(),
                    number: 3
                },
                "openinference"
            ))
        );
        let genai = attrs(json!({"gen_ai.prompt.name": "other", "gen_ai.prompt.version": 7}));
        assert_eq!(
            claim(&genai),
            Some((
                Claim::Number {
                    prompt: "other".into(),
                    number: 7
                },
                "gen_ai"
            ))
        );
        let runner = attrs(json!({"runner.prompt.version_id": id}));
        assert_eq!(claim(&runner), Some((Claim::Id(id.into()), "runner")));
        let tag = attrs(json!({"runner.prompt.name": "greet", "runner.prompt.tag": "production"}));
        assert_eq!(
            claim(&tag),
            Some((
                Claim::Tag {
                    prompt: "greet".into(),
                    tag: "production".into()
                },
                "runner"
            ))
        );
        assert_eq!(claim(&attrs(json!({"llm.model_name": "x"}))), None);
        // A version without its prompt's name names nothing.
        assert_eq!(claim(&attrs(json!({"gen_ai.prompt.version": "3"}))), None);
    }

    #[test]
    fn references_take_every_documented_form() {
        let id = "0190d0a8-0000-7000-8000-000000000001";
        assert_eq!(parse_reference(None, id), Some(Claim::Id(id.into())));
        assert_eq!(
            parse_reference(None, "p@production"),
            Some(Claim::Tag {
                prompt: "p".into(),
                tag: "production".into()
            })
        );
        assert_eq!(
            parse_reference(Some("p"), "V12"),
            Some(Claim::Number {
                prompt: "p".into(),
                number: 12
            })
        );
        assert_eq!(parse_reference(None, "v3"), None);
        assert_eq!(parse_reference(None, "@v3"), None);
        assert_eq!(parse_reference(Some("p"), "v99999999999999999999999"), None);
    }

    #[test]
    fn call_facts_read_openinference_then_genai() {
        let oi = attrs(json!({
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 12, "llm.token_count.completion": "5",
            "llm.prompt_template.variables": "{\"city\": \"Paris\"}",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "hi",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "be brief",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "hello",
        }));
        let facts = call_facts(&oi);
        assert_eq!(facts.kind.as_deref(), Some("LLM"));
        assert_eq!(facts.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(
            (facts.input_tokens, facts.output_tokens),
            (Some(12), Some(5))
        );
        assert_eq!(facts.variables.as_deref(), Some(r#"{"city":"Paris"}"#));
        assert_eq!(
            facts.input.as_deref(),
            Some(r#"[{"content":"be brief","role":"system"},{"content":"hi","role":"user"}]"#)
        );
        assert_eq!(facts.output.as_deref(), Some("hello"));

        let genai = attrs(json!({
            "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3,
            "gen_ai.usage.output_tokens": 4,
        }));
        let facts = call_facts(&genai);
        assert_eq!(facts.kind.as_deref(), Some("LLM"));
        assert_eq!(facts.model.as_deref(), Some("m"));
        assert_eq!(
            (facts.input_tokens, facts.output_tokens),
            (Some(3), Some(4))
        );
        // Variables that are not a JSON object are not variables.
        let bad = attrs(json!({"llm.prompt_template.variables": "[1]"}));
        assert_eq!(call_facts(&bad).variables, None);
    }

    #[test]
    fn secrets_are_redacted_and_texts_capped() {
        let long = "x".repeat(MAX_TEXT_CHARS + 10);
        let stored = stored_attributes(&attrs(json!({
            "http.request.header.authorization": "Bearer sk-secret",
            "openai.api_key": "sk-secret",
            "llm.token_count.prompt": 3,
            "input.value": long,
        })));
        assert!(!stored.contains("sk-secret"), "{stored}");
        assert!(stored.contains("\"llm.token_count.prompt\":3"));
        assert!(stored.contains(TRUNCATED));
        let many: Map<String, Value> = (0..200)
            .map(|i| (format!("k{i}"), Value::String("y".repeat(1000))))
            .collect();
        let stored = stored_attributes(&many);
        assert!(stored.len() <= MAX_ATTRIBUTES_BYTES, "{}", stored.len());
        assert!(stored.contains("runner.truncated"));
    }

    #[test]
    fn keys_capped_alike_are_stored_once() {
        let stem = "k".repeat(MAX_TEXT_CHARS);
        let stored = stored_attributes(&attrs(json!({
            format!("{stem}a"): "first",
            format!("{stem}b"): "second",
            "short": "kept",
        })));
        let parsed: Map<String, Value> = serde_json::from_str(&stored).unwrap();
        assert_eq!(parsed.len(), 2, "{}", &stored[stored.len() - 80..]);
        assert_eq!(parsed["short"], "kept");
        assert_eq!(stored.matches(TRUNCATED).count(), 1);
        // The fast path writes the same JSON the slow path does.
        let plain = attrs(json!({"b": 1, "a": "two", "api_key": "sk", "c": [1, "x"]}));
        assert_eq!(
            stored_attributes(&plain),
            r#"{"a":"two","api_key":"[REDACTED]","b":1,"c":[1,"x"]}"#
                .replace("[REDACTED]", crate::redact::MARK)
        );
    }
}
