//! Phoenix's prompt JSON ↔ runner's model: the mapping `runner serve` speaks on the wire.
//!
//! runner keeps a version as template, format, model, invocation parameters and metadata.
//! Phoenix spreads the same facts over more fields, so the mapping is:
//!
//! | Phoenix field | runner |
//! |---|---|
//! | `prompt.description` | the prompt's description (set when it is created, changed by PATCH) |
//! | `prompt.metadata` | the prompt's metadata (likewise) |
//! | `version.description` | the version's commit message (`""` when absent, as Phoenix gives) |
//! | `version.metadata` | the version's metadata, as sent |
//! | `model_name` | model |
//! | `model_provider` | provider, absent for `OPENAI` |
//! | message `content` part lists | kept as the list (text, tool_call, tool_result parts) |
//! | `invocation_parameters.<type>` | params, as they are |
//! | `tools` | params `tools`, `tool_choice`, `parallel_tool_calls` in OpenAI's wire form |
//! | `response_format` | params `response_format` (OpenAI's wire form is the same) |
//!
//! Tools and response format are stored in OpenAI's wire form because that is what the
//! experiment runner sends: a version created over HTTP runs unchanged in `runner experiment`.
//! A `str` version is served as a chat template of one user message, which is what runner sends
//! for it and the only template type the Phoenix clients load.

use crate::model::{JsonObject, Message, NewVersion, Prompt, PromptVersion, Tag, TagEvent};
use crate::model::{Template, TemplateFormat, TemplateType};
use crate::template::CompiledTemplate;
use serde::Deserialize;
use serde_json::{Value, json};

/// Phoenix's model providers and the `invocation_parameters.type` each one uses. The reference
/// schema's fourteen, plus the three the pinned Phoenix client also sends.
pub const PROVIDERS: &[(&str, &str)] = &[
    ("OPENAI", "openai"),
    ("AZURE_OPENAI", "azure_openai"),
    ("ANTHROPIC", "anthropic"),
    ("GOOGLE", "google"),
    ("DEEPSEEK", "deepseek"),
    ("XAI", "xai"),
    ("OLLAMA", "ollama"),
    ("AWS", "aws"),
    ("CEREBRAS", "cerebras"),
    ("FIREWORKS", "fireworks"),
    ("GROQ", "groq"),
    ("MOONSHOT", "moonshot"),
    ("PERPLEXITY", "perplexity"),
    ("TOGETHER", "together"),
    ("ZAI", "zai"),
    ("META", "meta"),
    ("MINIMAX", "openai"),
];

/// The provider every version has unless its metadata names another: runner's experiment runner
/// speaks the OpenAI wire format.
pub const DEFAULT_PROVIDER: &str = "OPENAI";

/// The metadata key that keeps a provider other than the default.
pub const PROVIDER_KEY: &str = "model_provider";

const TOOLS: &str = "tools";
const TOOL_CHOICE: &str = "tool_choice";
const PARALLEL_TOOL_CALLS: &str = "parallel_tool_calls";
const RESPONSE_FORMAT: &str = "response_format";

/// Keys a function definition may have (the schema forbids others).
const FUNCTION_KEYS: &[&str] = &["name", "description", "parameters", "strict"];

/// The body of `POST /v1/prompts`.
#[derive(Debug, Deserialize)]
pub struct CreatePromptBody {
    pub prompt: PromptData,
    pub version: VersionData,
}

#[derive(Debug, Deserialize)]
pub struct PromptData {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<JsonObject>,
}

/// Phoenix's `PromptVersionData`. Enumerations are read as strings and checked by hand so that
/// a wrong value gets a message naming the field and the allowed values.
#[derive(Debug, Deserialize)]
pub struct VersionData {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<JsonObject>,
    pub model_provider: String,
    pub model_name: String,
    pub template: Value,
    pub template_type: String,
    pub template_format: String,
    pub invocation_parameters: Value,
    #[serde(default)]
    pub tools: Option<Value>,
    #[serde(default)]
    pub response_format: Option<Value>,
}

/// The body of `POST /v1/prompt_versions/{id}/tags`.
#[derive(Debug, Deserialize)]
pub struct TagData {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A version as Phoenix's `PromptVersion`, plus runner's own fields (`prompt_name`,
/// `sequence_number`, `created_at`, `author`, `content_hash`), which Phoenix clients ignore.
pub fn version_json(version: &PromptVersion) -> Value {
    let provider = provider_of(version);
    let invocation_type = invocation_type(provider).unwrap_or("openai");
    let mut metadata = version.metadata.clone();
    if version.provider.is_none() {
        // Versions written before the provider had its own field kept it in their metadata.
        metadata.remove(PROVIDER_KEY);
    }
    let mut params = version.params.clone();
    let tools = lift_tools(&mut params);
    let response_format = lift_response_format(&mut params);
    let messages: Vec<Value> = match &version.template {
        Template::Str(text) => vec![json!({"role": "user", "content": text})],
        Template::Chat(messages) => messages
            .iter()
            .map(|m| match &m.parts {
                Some(parts) => json!({"role": m.role, "content": parts}),
                None => json!({"role": m.role, "content": m.content}),
            })
            .collect(),
    };
    let mut out = json!({
        "id": version.id,
        "description": version.message.as_deref().unwrap_or(""),
        "model_provider": provider,
        "model_name": version.model.as_deref().unwrap_or(""),
        "template": {"type": "chat", "messages": messages},
        "template_type": "CHAT",
        "template_format": format_name(version.format),
        "invocation_parameters": {"type": invocation_type, invocation_type: params},
        "prompt_name": version.prompt,
        "sequence_number": version.seq,
        "created_at": version.created_at,
        "author": version.author,
        "content_hash": version.content_hash,
    });
    // Absent rather than null: the Python client reads `response_format["type"]` whenever the
    // key is present.
    if let Some(tools) = tools {
        out["tools"] = tools;
    }
    if let Some(response_format) = response_format {
        out["response_format"] = response_format;
    }
    // Absent when empty, as Phoenix leaves out a field at its default.
    if !metadata.is_empty() {
        out["metadata"] = Value::Object(metadata);
    }
    out
}

/// A prompt as Phoenix's `Prompt` (its id is its name: names never change in runner), plus
/// `created_at`, `updated_at`, `version_count`, `latest_version_id` and `tags`.
pub fn prompt_json(prompt: &Prompt, latest: &PromptVersion) -> Value {
    json!({
        "id": prompt.name,
        "name": prompt.name,
        "description": prompt.description,
        "source_prompt_id": null,
        "metadata": prompt.metadata,
        "created_at": prompt.created_at,
        "updated_at": prompt.updated_at,
        "version_count": prompt.version_count,
        "latest_version_id": latest.id,
        "tags": prompt.tags,
    })
}

/// A prompt as PATCH answers it: Phoenix leaves out the fields at their default there (a null
/// description, the source prompt).
pub fn patched_prompt_json(prompt: &Prompt, latest: &PromptVersion) -> Value {
    let mut out = prompt_json(prompt, latest);
    if let Some(object) = out.as_object_mut() {
        object.remove("source_prompt_id");
        if prompt.description.is_none() {
            object.remove("description");
        }
    }
    out
}

/// A tag as Phoenix's `PromptVersionTag` (its description is the message of the change that put
/// it where it is), plus where it points and who moved it last.
pub fn tag_json(tag: &Tag, description: Option<&str>) -> Value {
    json!({
        "id": format!("{}:{}", tag.prompt, tag.name),
        "name": tag.name,
        "description": description,
        "prompt_name": tag.prompt,
        "version_id": tag.version_id,
        "sequence_number": tag.version_seq,
        "updated_at": tag.updated_at,
        "updated_by": tag.updated_by,
    })
}

/// One tag history entry, as `runner tag history --json` shows it.
pub fn event_json(event: &TagEvent) -> Value {
    serde_json::to_value(event).unwrap_or(Value::Null)
}

/// Builds the version a `POST /v1/prompts` body asks for, on top of the latest version when
/// the prompt exists. Errors are messages for a 422.
pub fn new_version(
    body: &CreatePromptBody,
    latest: Option<&PromptVersion>,
    author: &str,
) -> Result<NewVersion, String> {
    let data = &body.version;
    let expected_type = invocation_type(&data.model_provider).ok_or_else(|| {
        format!(
            "version.model_provider: unknown provider '{}' (expected one of {})",
            data.model_provider,
            PROVIDERS
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let format = parse_format(&data.template_format)?;
    let template = parse_template(&data.template, &data.template_type)?;
    CompiledTemplate::compile(format, &template).map_err(|e| format!("version.template: {e}"))?;

    let mut params = invocation_content(&data.invocation_parameters, expected_type)?;
    if let Some(tools) = data.tools.as_ref().filter(|t| !t.is_null()) {
        for key in [TOOLS, TOOL_CHOICE, PARALLEL_TOOL_CALLS] {
            if params.contains_key(key) {
                return Err(format!(
                    "version.invocation_parameters.{expected_type}.{key} conflicts with version.tools"
                ));
            }
        }
        tools_into_params(tools, &mut params)?;
    }
    if let Some(format) = data.response_format.as_ref().filter(|f| !f.is_null()) {
        if params.contains_key(RESPONSE_FORMAT) {
            return Err(format!(
                "version.invocation_parameters.{expected_type}.response_format conflicts with \
                 version.response_format"
            ));
        }
        check_response_format(format)?;
        params.insert(RESPONSE_FORMAT.into(), format.clone());
    }

    Ok(NewVersion {
        format,
        template,
        model: Some(data.model_name.clone()).filter(|m| !m.is_empty()),
        provider: Some(data.model_provider.clone()).filter(|p| p != DEFAULT_PROVIDER),
        params,
        metadata: data.metadata.clone().unwrap_or_default(),
        description: body
            .prompt
            .description
            .clone()
            .or_else(|| latest.and_then(|l| l.description.clone())),
        message: data.description.clone(),
        author: author.to_string(),
    })
}

/// The provider a version is served with: its own, or for a version written before the
/// provider had its field, its metadata's; either only when it names a known provider.
pub fn provider_of(version: &PromptVersion) -> &str {
    version
        .provider
        .as_deref()
        .or_else(|| version.metadata.get(PROVIDER_KEY).and_then(Value::as_str))
        .and_then(|p| PROVIDERS.iter().find(|(name, _)| *name == p))
        .map_or(DEFAULT_PROVIDER, |(name, _)| name)
}

fn invocation_type(provider: &str) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .find(|(name, _)| *name == provider)
        .map(|(_, kind)| *kind)
}

fn format_name(format: TemplateFormat) -> &'static str {
    match format {
        TemplateFormat::Mustache => "MUSTACHE",
        TemplateFormat::FString => "F_STRING",
        TemplateFormat::None => "NONE",
    }
}

fn parse_format(text: &str) -> Result<TemplateFormat, String> {
    match text {
        "MUSTACHE" => Ok(TemplateFormat::Mustache),
        "F_STRING" => Ok(TemplateFormat::FString),
        "NONE" => Ok(TemplateFormat::None),
        other => Err(format!(
            "version.template_format: unknown format '{other}' (expected MUSTACHE, F_STRING or NONE)"
        )),
    }
}

fn parse_template(template: &Value, template_type: &str) -> Result<Template, String> {
    let kind = template.get("type").and_then(Value::as_str);
    let parsed = match kind {
        Some("string") => {
            let text = template
                .get("template")
                .and_then(Value::as_str)
                .ok_or("version.template.template: expected a string")?;
            Template::Str(text.to_string())
        }
        Some("chat") => {
            let messages = template
                .get("messages")
                .and_then(Value::as_array)
                .ok_or("version.template.messages: expected a list of messages")?;
            let messages = messages
                .iter()
                .enumerate()
                .map(|(i, m)| parse_message(i, m))
                .collect::<Result<Vec<_>, _>>()?;
            Template::Chat(messages)
        }
        _ => return Err("version.template.type: expected \"chat\" or \"string\"".into()),
    };
    let expected = match template_type {
        "CHAT" => TemplateType::Chat,
        "STR" => TemplateType::Str,
        other => {
            return Err(format!(
                "version.template_type: unknown type '{other}' (expected CHAT or STR)"
            ));
        }
    };
    if parsed.kind() != expected {
        return Err(format!(
            "version.template_type is {template_type} but version.template.type is {}",
            kind.unwrap_or_default()
        ));
    }
    Ok(parsed)
}

/// One chat message, kept as sent: its role as written (Phoenix's `ai` and `model` too), and a
/// content given as a list of parts kept as that list.
fn parse_message(index: usize, message: &Value) -> Result<Message, String> {
    let at = format!("version.template.messages[{index}]");
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}.role: expected a string"))?;
    if ![
        "user",
        "assistant",
        "model",
        "ai",
        "tool",
        "system",
        "developer",
    ]
    .contains(&role)
    {
        return Err(format!(
            "{at}.role: unknown role '{role}' \
             (expected user, assistant, model, ai, tool, system or developer)"
        ));
    }
    if let Some(key) = message
        .as_object()
        .and_then(|m| m.keys().find(|k| *k != "role" && *k != "content"))
    {
        return Err(format!("{at}.{key}: unknown field"));
    }
    match message.get("content") {
        Some(Value::String(text)) => Ok(Message::text(role, text.clone())),
        Some(Value::Array(parts)) if !parts.is_empty() => {
            for (p, part) in parts.iter().enumerate() {
                check_part(part).map_err(|e| format!("{at}.content[{p}]{e}"))?;
            }
            Ok(Message::with_parts(role, parts.clone()))
        }
        _ => Err(format!(
            "{at}.content: expected a string or a non-empty list of parts"
        )),
    }
}

/// A content part as Phoenix's schema has it: text, tool_call or tool_result.
fn check_part(part: &Value) -> Result<(), String> {
    let object = part.as_object().ok_or(": expected an object")?;
    let string = |key: &str| object.get(key).is_some_and(Value::is_string);
    let only = |keys: &[&str]| match object.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(key) => Err(format!(".{key}: unknown field")),
        None => Ok(()),
    };
    match object.get("type").and_then(Value::as_str) {
        Some("text") if string("text") => only(&["type", "text"]),
        Some("text") => Err(".text: expected a string".into()),
        Some("tool_call") => {
            let call = object.get("tool_call").and_then(Value::as_object);
            let ok = string("tool_call_id")
                && call.is_some_and(|c| {
                    c.get("type").and_then(Value::as_str) == Some("function")
                        && c.get("name").is_some_and(Value::is_string)
                        && c.get("arguments").is_some_and(Value::is_string)
                });
            if !ok {
                return Err(": expected {\"type\": \"tool_call\", \"tool_call_id\": ..., \
                            \"tool_call\": {\"type\": \"function\", \"name\": ..., \"arguments\": ...}}"
                    .into());
            }
            only(&["type", "tool_call_id", "tool_call"])
        }
        Some("tool_result") => {
            if !string("tool_call_id") || !object.contains_key("tool_result") {
                return Err(
                    ": expected {\"type\": \"tool_result\", \"tool_call_id\": ..., \
                            \"tool_result\": ...}"
                        .into(),
                );
            }
            only(&["type", "tool_call_id", "tool_result"])
        }
        _ => Err(".type: expected \"text\", \"tool_call\" or \"tool_result\"".into()),
    }
}

fn invocation_content(invocation: &Value, expected_type: &str) -> Result<JsonObject, String> {
    let kind = invocation
        .get("type")
        .and_then(Value::as_str)
        .ok_or("version.invocation_parameters.type: expected a string")?;
    if kind != expected_type {
        return Err(format!(
            "version.invocation_parameters.type is '{kind}' but the model provider needs \
             '{expected_type}'"
        ));
    }
    match invocation.get(kind) {
        Some(Value::Object(content)) => {
            check_invocation_parameters(kind, content)?;
            Ok(content.clone())
        }
        _ => Err(format!(
            "version.invocation_parameters.{kind}: expected an object of parameters"
        )),
    }
}

/// What a parameter's value must be.
#[derive(Clone, Copy)]
enum Param {
    Number,
    Integer,
    Strings,
    Object,
    Effort,
}

/// The invocation parameters Phoenix 20.x accepts for each kind (its schemas forbid others),
/// with the one required key: Anthropic's `max_tokens`.
fn parameter_schema(kind: &str) -> (&'static [(&'static str, Param)], Option<&'static str>) {
    use Param::*;
    const OPENAI: &[(&str, Param)] = &[
        ("temperature", Number),
        ("max_tokens", Integer),
        ("max_completion_tokens", Integer),
        ("frequency_penalty", Number),
        ("presence_penalty", Number),
        ("top_p", Number),
        ("seed", Integer),
        ("stop", Strings),
        ("reasoning_effort", Effort),
        ("extra_body", Object),
    ];
    const ANTHROPIC: &[(&str, Param)] = &[
        ("max_tokens", Integer),
        ("temperature", Number),
        ("top_p", Number),
        ("stop_sequences", Strings),
        ("output_config", Object),
        ("thinking", Object),
        ("extra_body", Object),
    ];
    const AWS: &[(&str, Param)] = &[
        ("max_tokens", Integer),
        ("temperature", Number),
        ("top_p", Number),
        ("stop_sequences", Strings),
    ];
    const GOOGLE: &[(&str, Param)] = &[
        ("temperature", Number),
        ("max_output_tokens", Integer),
        ("stop_sequences", Strings),
        ("presence_penalty", Number),
        ("frequency_penalty", Number),
        ("top_p", Number),
        ("top_k", Integer),
        ("thinking_config", Object),
    ];
    match kind {
        "anthropic" => (ANTHROPIC, Some("max_tokens")),
        "aws" => (AWS, None),
        "google" => (GOOGLE, None),
        _ => (OPENAI, None),
    }
}

/// Refuses unknown parameters, values of the wrong type and a missing required one, naming the
/// field, as Phoenix's schema does (422).
fn check_invocation_parameters(kind: &str, content: &JsonObject) -> Result<(), String> {
    let (schema, required) = parameter_schema(kind);
    let at = format!("version.invocation_parameters.{kind}");
    if let Some(key) = required.filter(|k| !content.contains_key(*k)) {
        return Err(format!("{at}.{key}: required"));
    }
    for (key, value) in content {
        let Some((_, expected)) = schema.iter().find(|(name, _)| name == key) else {
            return Err(format!(
                "{at}.{key}: unknown parameter (expected one of {})",
                schema
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let ok = match expected {
            Param::Number => value.is_number(),
            Param::Integer => {
                value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            Param::Strings => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Param::Object => value.is_object(),
            Param::Effort => value.as_str().is_some_and(|e| {
                ["none", "minimal", "low", "medium", "high", "xhigh"].contains(&e)
            }),
        };
        if !ok {
            let wanted = match expected {
                Param::Number => "a number",
                Param::Integer => "a whole number",
                Param::Strings => "a list of strings",
                Param::Object => "an object",
                Param::Effort => "one of none, minimal, low, medium, high, xhigh",
            };
            return Err(format!("{at}.{key}: expected {wanted}, got {value}"));
        }
    }
    Ok(())
}

/// Phoenix's `PromptTools` into OpenAI's `tools`, `tool_choice` and `parallel_tool_calls`.
fn tools_into_params(tools: &Value, params: &mut JsonObject) -> Result<(), String> {
    if tools.get("type").and_then(Value::as_str) != Some("tools") {
        return Err("version.tools.type: expected \"tools\"".into());
    }
    let list = tools
        .get("tools")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or("version.tools.tools: expected a non-empty list")?;
    let mut wire = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let at = format!("version.tools.tools[{i}]");
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let function = tool
                    .get("function")
                    .and_then(Value::as_object)
                    .filter(|f| is_function_definition(f))
                    .ok_or_else(|| {
                        format!(
                            "{at}.function: expected {{\"name\": ...}} with optional \
                             description, parameters and strict"
                        )
                    })?;
                wire.push(json!({"type": "function", "function": function}));
            }
            Some("raw") => match tool.get("raw") {
                Some(raw @ Value::Object(_)) => wire.push(raw.clone()),
                _ => return Err(format!("{at}.raw: expected an object")),
            },
            _ => return Err(format!("{at}.type: expected \"function\" or \"raw\"")),
        }
    }
    params.insert(TOOLS.into(), Value::Array(wire));
    if let Some(choice) = tools.get("tool_choice").filter(|c| !c.is_null()) {
        let wire = match (
            choice.get("type").and_then(Value::as_str),
            choice.get("function_name").and_then(Value::as_str),
        ) {
            (Some("none"), _) => json!("none"),
            (Some("zero_or_more"), _) => json!("auto"),
            (Some("one_or_more"), _) => json!("required"),
            (Some("specific_function"), Some(name)) => {
                json!({"type": "function", "function": {"name": name}})
            }
            _ => {
                return Err(
                    "version.tools.tool_choice: expected a type of none, zero_or_more, \
                            one_or_more or specific_function (with function_name)"
                        .into(),
                );
            }
        };
        params.insert(TOOL_CHOICE.into(), wire);
    }
    match tools.get("disable_parallel_tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(disable)) => {
            params.insert(PARALLEL_TOOL_CALLS.into(), Value::Bool(!disable));
        }
        Some(_) => {
            return Err("version.tools.disable_parallel_tool_calls: expected a boolean".into());
        }
    }
    Ok(())
}

fn is_function_definition(function: &JsonObject) -> bool {
    function.get("name").is_some_and(Value::is_string)
        && function.keys().all(|k| FUNCTION_KEYS.contains(&k.as_str()))
        && function.get("description").is_none_or(Value::is_string)
        && function.get("parameters").is_none_or(Value::is_object)
        && function.get("strict").is_none_or(Value::is_boolean)
}

/// OpenAI's `tools` (with `tool_choice` and `parallel_tool_calls`) out of the parameters as
/// Phoenix's `PromptTools`. Whatever has no Phoenix form stays an invocation parameter.
fn lift_tools(params: &mut JsonObject) -> Option<Value> {
    let list = params.get(TOOLS)?.as_array()?;
    if list.is_empty() {
        return None;
    }
    let tools = list
        .iter()
        .map(|tool| {
            let object = tool.as_object()?;
            let function = object
                .get("function")
                .and_then(Value::as_object)
                .filter(|f| is_function_definition(f));
            Some(match function {
                Some(function)
                    if object.len() == 2
                        && object.get("type").and_then(Value::as_str) == Some("function") =>
                {
                    json!({"type": "function", "function": function})
                }
                _ => json!({"type": "raw", "raw": tool}),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    params.remove(TOOLS);
    let mut out = json!({"type": "tools", "tools": tools});
    let choice = match params.get(TOOL_CHOICE) {
        Some(Value::String(s)) => match s.as_str() {
            "none" => Some(json!({"type": "none"})),
            "auto" => Some(json!({"type": "zero_or_more"})),
            "required" => Some(json!({"type": "one_or_more"})),
            _ => None,
        },
        Some(Value::Object(o)) if o.len() == 2 && o.get("type") == Some(&json!("function")) => o
            .get("function")
            .and_then(Value::as_object)
            .filter(|f| f.len() == 1)
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|name| json!({"type": "specific_function", "function_name": name})),
        _ => None,
    };
    if let Some(choice) = choice {
        params.remove(TOOL_CHOICE);
        out["tool_choice"] = choice;
    }
    if let Some(parallel) = params.get(PARALLEL_TOOL_CALLS).and_then(Value::as_bool) {
        params.remove(PARALLEL_TOOL_CALLS);
        out["disable_parallel_tool_calls"] = Value::Bool(!parallel);
    }
    Some(out)
}

fn check_response_format(format: &Value) -> Result<(), String> {
    let ok = format.get("type").and_then(Value::as_str) == Some("json_schema")
        && format
            .get("json_schema")
            .and_then(|s| s.get("name"))
            .is_some_and(Value::is_string);
    if ok {
        Ok(())
    } else {
        Err(
            "version.response_format: expected {\"type\": \"json_schema\", \
             \"json_schema\": {\"name\": ...}}"
                .into(),
        )
    }
}

/// OpenAI's `response_format` out of the parameters when it has Phoenix's form (a JSON schema);
/// other forms (`json_object`) stay invocation parameters.
fn lift_response_format(params: &mut JsonObject) -> Option<Value> {
    let format = params.get(RESPONSE_FORMAT)?;
    check_response_format(format).ok()?;
    params.remove(RESPONSE_FORMAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(version: Value, prompt: Value) -> CreatePromptBody {
        serde_json::from_value(json!({"prompt": prompt, "version": version})).unwrap()
    }

    fn chat_version() -> Value {
        json!({
            "description": "first cut",
            "model_provider": "OPENAI",
            "model_name": "gpt-4o-mini",
            "template": {"type": "chat", "messages": [
                {"role": "system", "content": "You help {{company}}."},
                {"role": "user", "content": [{"type": "text", "text": "Q: {{query}}"}]}
            ]},
            "template_type": "CHAT",
            "template_format": "MUSTACHE",
            "invocation_parameters": {"type": "openai", "openai": {"temperature": 0.2}},
        })
    }

    fn stored(new: NewVersion) -> PromptVersion {
        PromptVersion {
            id: "0190-id".into(),
            prompt: "greet".into(),
            seq: 1,
            template_type: new.template.kind(),
            format: new.format,
            content_hash: crate::model::content_hash(
                new.format,
                &new.template,
                new.model.as_deref(),
                &new.params,
                &new.metadata,
            ),
            template: new.template,
            model: new.model,
            provider: new.provider,
            params: new.params,
            metadata: new.metadata,
            description: new.description,
            message: new.message,
            author: new.author,
            created_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_chat_version_maps_onto_the_model_and_back() {
        let b = body(
            chat_version(),
            json!({"name": "greet", "description": "Greets"}),
        );
        let new = new_version(&b, None, "api").unwrap();
        assert_eq!(new.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(new.message.as_deref(), Some("first cut"));
        assert_eq!(new.description.as_deref(), Some("Greets"));
        assert_eq!(
            new.params,
            json!({"temperature": 0.2}).as_object().unwrap().clone()
        );
        assert!(new.metadata.is_empty(), "OPENAI is not written to metadata");
        let Template::Chat(messages) = &new.template else {
            panic!("chat expected")
        };
        assert_eq!(messages[1].content, "Q: {{query}}");
        let out = version_json(&stored(new));
        assert_eq!(out["template_type"], "CHAT");
        assert_eq!(out["template_format"], "MUSTACHE");
        assert_eq!(out["model_provider"], "OPENAI");
        assert_eq!(
            out["invocation_parameters"],
            json!({"type": "openai", "openai": {"temperature": 0.2}})
        );
        assert_eq!(out["description"], "first cut");
        assert_eq!(out["sequence_number"], 1);
        assert!(out.get("tools").is_none() && out.get("response_format").is_none());
    }

    #[test]
    fn tools_and_response_format_round_trip_through_openai_params() {
        let mut version = chat_version();
        let tools = json!({
            "type": "tools",
            "tools": [
                {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
                {"type": "raw", "raw": {"type": "web_search_preview"}}
            ],
            "tool_choice": {"type": "specific_function", "function_name": "lookup"},
            "disable_parallel_tool_calls": true
        });
        let format = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}});
        version["tools"] = tools.clone();
        version["response_format"] = format.clone();
        let new = new_version(&body(version, json!({"name": "greet"})), None, "api").unwrap();
        assert_eq!(
            new.params["tools"],
            json!([
                {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
                {"type": "web_search_preview"}
            ])
        );
        assert_eq!(
            new.params["tool_choice"],
            json!({"type": "function", "function": {"name": "lookup"}})
        );
        assert_eq!(new.params["parallel_tool_calls"], json!(false));
        assert_eq!(new.params["response_format"], format);
        let out = version_json(&stored(new));
        assert_eq!(out["tools"], tools);
        assert_eq!(out["response_format"], format);
        assert_eq!(
            out["invocation_parameters"]["openai"],
            json!({"temperature": 0.2})
        );
    }

    #[test]
    fn tool_choices_map_both_ways() {
        for (phoenix, openai) in [
            (json!({"type": "none"}), json!("none")),
            (json!({"type": "zero_or_more"}), json!("auto")),
            (json!({"type": "one_or_more"}), json!("required")),
        ] {
            let mut params = JsonObject::new();
            let tools = json!({"type": "tools", "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": phoenix});
            tools_into_params(&tools, &mut params).unwrap();
            assert_eq!(params["tool_choice"], openai);
            assert_eq!(lift_tools(&mut params).unwrap(), tools);
            assert!(params.is_empty());
        }
    }

    #[test]
    fn params_without_a_phoenix_form_stay_invocation_parameters() {
        let mut params = json!({
            "response_format": {"type": "json_object"},
            "tool_choice": "auto",
            "user": "alice"
        })
        .as_object()
        .unwrap()
        .clone();
        let before = params.clone();
        assert!(lift_tools(&mut params).is_none());
        assert!(lift_response_format(&mut params).is_none());
        assert_eq!(params, before);
    }

    #[test]
    fn a_str_version_is_served_as_one_user_message() {
        let mut version = chat_version();
        version["template"] = json!({"type": "string", "template": "Hi {name}"});
        version["template_type"] = json!("STR");
        version["template_format"] = json!("F_STRING");
        let new = new_version(&body(version, json!({"name": "greet"})), None, "api").unwrap();
        assert_eq!(new.template, Template::Str("Hi {name}".into()));
        let out = version_json(&stored(new));
        assert_eq!(
            out["template"],
            json!({"type": "chat", "messages": [{"role": "user", "content": "Hi {name}"}]})
        );
        assert_eq!(out["template_format"], "F_STRING");
    }

    #[test]
    fn the_provider_and_the_version_metadata_are_kept_apart() {
        let mut version = chat_version();
        version["model_provider"] = json!("ANTHROPIC");
        version["invocation_parameters"] =
            json!({"type": "anthropic", "anthropic": {"max_tokens": 1000}});
        version["metadata"] = json!({"ticket": "PR-12"});
        let prompt = json!({"name": "greet", "metadata": {"owner": "support"}});
        let new = new_version(&body(version, prompt), None, "api").unwrap();
        assert_eq!(new.provider.as_deref(), Some("ANTHROPIC"));
        assert_eq!(
            new.metadata,
            json!({"ticket": "PR-12"}).as_object().unwrap().clone()
        );
        let out = version_json(&stored(new));
        assert_eq!(out["model_provider"], "ANTHROPIC");
        assert_eq!(out["invocation_parameters"]["type"], "anthropic");
        assert_eq!(out["metadata"], json!({"ticket": "PR-12"}));
        // A version written before the provider had its field: read from the metadata, and
        // that key is not served as metadata.
        let mut legacy =
            stored(new_version(&body(chat_version(), json!({"name": "g"})), None, "api").unwrap());
        legacy.metadata.insert(PROVIDER_KEY.into(), json!("GOOGLE"));
        let out = version_json(&legacy);
        assert_eq!(out["model_provider"], "GOOGLE");
        assert!(out.get("metadata").is_none(), "{out}");
        assert_eq!(out["description"], "first cut");
    }

    #[test]
    fn roles_and_part_lists_are_kept_as_sent() {
        let mut version = chat_version();
        version["template"]["messages"][0]["role"] = json!("ai");
        version["template"]["messages"][1]["role"] = json!("model");
        version["template"]["messages"][1]["content"] = json!([
            {"type": "text", "text": "Q: {{query}}"},
            {"type": "tool_call", "tool_call_id": "c1", "tool_call": {"type": "function", "name": "f", "arguments": "{}"}}
        ]);
        let sent = version["template"].clone();
        let new = new_version(&body(version, json!({"name": "greet"})), None, "api").unwrap();
        let Template::Chat(messages) = &new.template else {
            panic!("chat expected")
        };
        assert_eq!(messages[1].content, "Q: {{query}}");
        assert_eq!(version_json(&stored(new))["template"], sent);
    }

    #[test]
    fn invocation_parameters_are_checked_as_phoenix_does() {
        for (kind, params, expected) in [
            (
                "openai",
                json!({"temperature": "hot"}),
                "temperature: expected a number",
            ),
            (
                "openai",
                json!({"colour": "blue"}),
                "colour: unknown parameter",
            ),
            (
                "openai",
                json!({"max_tokens": 1.5}),
                "max_tokens: expected a whole number",
            ),
            (
                "openai",
                json!({"stop": [1]}),
                "stop: expected a list of strings",
            ),
            (
                "anthropic",
                json!({"temperature": 0.1}),
                "max_tokens: required",
            ),
            (
                "google",
                json!({"max_tokens": 5}),
                "max_tokens: unknown parameter",
            ),
        ] {
            let err = check_invocation_parameters(kind, params.as_object().unwrap()).unwrap_err();
            assert!(err.contains(expected), "{kind} {params}: {err}");
        }
        for (kind, params) in [
            (
                "openai",
                json!({"temperature": 1, "seed": 7, "reasoning_effort": "low"}),
            ),
            (
                "anthropic",
                json!({"max_tokens": 10, "thinking": {"type": "enabled"}}),
            ),
            ("groq", json!({"top_p": 0.5})),
        ] {
            check_invocation_parameters(kind, params.as_object().unwrap()).unwrap();
        }
    }

    #[test]
    fn invalid_versions_are_refused_with_the_field_named() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("model_provider", json!("ACME"), "version.model_provider"),
            ("template_format", json!("JINJA"), "version.template_format"),
            ("template_type", json!("STR"), "version.template_type"),
            (
                "invocation_parameters",
                json!({"type": "anthropic", "anthropic": {}}),
                "needs 'openai'",
            ),
            (
                "invocation_parameters",
                json!({"type": "openai"}),
                "expected an object",
            ),
            (
                "template",
                json!({"type": "chat", "messages": [{"role": "user", "content": "{{#s}}x{{/s}}"}]}),
                "version.template:",
            ),
            (
                "template",
                json!({"type": "chat", "messages": [{"role": "bot", "content": "x"}]}),
                "unknown role 'bot'",
            ),
            (
                "template",
                json!({"type": "chat", "messages": [{"role": "assistant", "content": [
                    {"type": "image", "url": "x"}
                ]}]}),
                "content[0].type",
            ),
            (
                "tools",
                json!({"type": "tools", "tools": []}),
                "non-empty list",
            ),
            (
                "tools",
                json!({"type": "tools", "tools": [{"type": "function", "function": {"name": "f", "extra": 1}}]}),
                "version.tools.tools[0].function",
            ),
            (
                "response_format",
                json!({"type": "json_object"}),
                "version.response_format",
            ),
        ];
        for (field, value, expected) in cases {
            let mut version = chat_version();
            version[field] = value;
            let err = new_version(&body(version, json!({"name": "greet"})), None, "api")
                .expect_err(field);
            assert!(err.contains(expected), "{field}: {err}");
        }
        let mut version = chat_version();
        version["tools"] =
            json!({"type": "tools", "tools": [{"type": "function", "function": {"name": "f"}}]});
        version["invocation_parameters"]["openai"]["tools"] = json!([]);
        let err = new_version(&body(version, json!({"name": "greet"})), None, "api").unwrap_err();
        // Tools go in version.tools: Phoenix refuses them among the invocation parameters.
        assert!(err.contains("tools: unknown parameter"), "{err}");
    }
}
