//! A placeholder's value as messages: a row's column holding a conversation so far (a JSON
//! list, or its text) turned into the messages sent in the placeholder's place. Roles `user`,
//! `assistant` (`ai`, `model`), `system`, `developer` and `tool`; an assistant message may carry
//! tool calls (OpenAI's form or `{name, arguments}`), a tool message a `tool_call_id`. The forms
//! accepted beside OpenAI's: Langfuse's (the same shape) and Phoenix's content part lists (kept
//! as parts; its `tool_call` parts are calls a later tool message may answer, and a tool
//! message's `tool_result` part names the call it answers). It must not render template text: a conversation's text is sent as written.

use serde_json::{Value, json};

use super::MAX_CONVERSATION;
use crate::model::Message;

/// The messages `value` holds, or the first thing wrong with it (`message 2: …`).
pub(super) fn expand(value: &Value) -> Result<Vec<Message>, String> {
    let parsed;
    let list = match value {
        Value::Array(items) => items,
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| format!("not a JSON list of messages ({e})"))?;
            parsed
                .as_array()
                .ok_or("not a JSON list of messages (the text is JSON, not a list)")?
        }
        Value::Null => return Err("empty: write [] for no messages".into()),
        _ => return Err("not a JSON list of messages".into()),
    };
    if list.len() > MAX_CONVERSATION {
        return Err(format!(
            "{} messages (at most {MAX_CONVERSATION})",
            list.len()
        ));
    }
    // The ids of the calls made so far: a tool message answers one of them.
    let mut calls = Vec::new();
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            message(item, i, &mut calls).map_err(|e| format!("message {}: {e}", i + 1))
        })
        .collect()
}

fn message(item: &Value, index: usize, made: &mut Vec<String>) -> Result<Message, String> {
    let object = item.as_object().ok_or("not an object with a role")?;
    let role = match object.get("role") {
        Some(Value::String(role)) => role.as_str(),
        Some(_) => return Err("`role` is not text".into()),
        None => return Err("it has no `role`".into()),
    };
    let role = match role {
        "user" | "assistant" | "system" | "developer" | "tool" => role,
        "ai" | "model" => "assistant",
        other => {
            return Err(format!(
                "role '{other}' (allowed: user, assistant, system, developer, tool)"
            ));
        }
    };
    let content = object.get("content").unwrap_or(&Value::Null);
    let calls = match object.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) if role != "assistant" => {
            return Err(format!(
                "a {role} message carries tool calls (only an assistant's may)"
            ));
        }
        Some(value) => {
            let mut calls = crate::tool_calls::read(value)?;
            // A call written without an id gets one, so the request names each call and a
            // tool message can answer it.
            for (k, call) in calls.iter_mut().enumerate() {
                let id = call
                    .id
                    .get_or_insert_with(|| format!("call_{}_{}", index + 1, k + 1));
                made.push(id.clone());
            }
            calls
        }
    };
    if role == "tool" {
        // OpenAI's form names the call beside the content; Phoenix's puts a `tool_result`
        // part in the content, naming the call inside it.
        let result_part = match content {
            Value::Array(parts) => parts
                .iter()
                .find(|p| p.get("type").and_then(Value::as_str) == Some("tool_result")),
            _ => None,
        };
        let id = object
            .get("tool_call_id")
            .or_else(|| result_part.and_then(|p| p.get("tool_call_id")))
            .and_then(Value::as_str)
            .ok_or("a tool message needs the `tool_call_id` it answers")?;
        if !made.iter().any(|made| made == id) {
            return Err(format!(
                "tool_call_id '{id}' answers no call an earlier assistant message made"
            ));
        }
        let result = match result_part {
            Some(part) => part.get("tool_result").unwrap_or(&Value::Null),
            None => content,
        };
        let text = match result {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        return Ok(Message::with_parts(
            "tool",
            vec![json!({"type": "tool_result", "tool_call_id": id, "tool_result": text})],
        ));
    }
    match content {
        // Phoenix's part lists are kept as they are.
        Value::Array(parts) if calls.is_empty() => {
            if parts.iter().any(|p| !p.is_object()) {
                return Err("`content` is a list whose items are not parts".into());
            }
            // Phoenix's `tool_call` parts are the calls an assistant message makes.
            for part in parts {
                if part.get("type").and_then(Value::as_str) != Some("tool_call") {
                    continue;
                }
                if role != "assistant" {
                    return Err(format!(
                        "a {role} message carries tool calls (only an assistant's may)"
                    ));
                }
                let id = part
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or("a `tool_call` part needs its `tool_call_id`")?;
                made.push(id.to_string());
            }
            Ok(Message::with_parts(role, parts.clone()))
        }
        Value::String(_) | Value::Null if !calls.is_empty() => {
            let mut parts = Vec::new();
            if let Value::String(text) = content
                && !text.is_empty()
            {
                parts.push(json!({"type": "text", "text": text}));
            }
            for call in &calls {
                parts.push(json!({
                    "type": "tool_call",
                    "tool_call_id": call.id,
                    "tool_call": {"name": call.name, "arguments": call.arguments.to_string()},
                }));
            }
            Ok(Message::with_parts(role, parts))
        }
        Value::String(text) => Ok(Message::text(role, text.clone())),
        Value::Null => Err("it has no `content`".into()),
        _ => Err("`content` is not text".into()),
    }
}
