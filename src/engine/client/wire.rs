//! The chat-completions wire format, as the client writes and reads it: the request body built
//! from stored messages (roles, content parts, tool calls and results in OpenAI's shape), the
//! answer parsed out of a chat-completion body, and the message of an error body. Pure
//! functions over bytes and JSON: nothing here sends a request, reads a stream, retries or
//! decides what a status means; that is the client's (`mod.rs`), `sse`'s and `retry`'s.

use super::Completion;
use crate::model::{JsonObject, Message};
use serde_json::{Value, json};

/// The chat-completion body: model and messages, then the version's invocation parameters as
/// they are (temperature, max_tokens, top_p, stop, seed, response_format, tools …).
pub fn request_body(model: &str, messages: &[Message], params: &JsonObject) -> Value {
    let mut body = params.clone();
    body.insert("model".into(), json!(model));
    let messages: Vec<Value> = messages.iter().flat_map(openai_messages).collect();
    body.insert("messages".into(), Value::Array(messages));
    Value::Object(body)
}

/// One stored message in OpenAI's chat format: `ai` and `model` are sent as `assistant`; a
/// content part list is sent as OpenAI takes it (as Phoenix's client formats it): its text parts
/// as the content, its tool calls as `tool_calls`, and each tool result as a `tool` message.
fn openai_messages(message: &Message) -> Vec<Value> {
    let role = match message.role.as_str() {
        "ai" | "model" => "assistant",
        other => other,
    };
    let Some(parts) = &message.parts else {
        return vec![json!({"role": role, "content": message.content})];
    };
    let of_type = |kind: &'static str| {
        parts
            .iter()
            .filter(move |p| p.get("type").and_then(Value::as_str) == Some(kind))
    };
    let results: Vec<Value> = of_type("tool_result")
        .map(|part| {
            let content = match part.get("tool_result") {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            json!({"role": "tool", "tool_call_id": part.get("tool_call_id"), "content": content})
        })
        .collect();
    if !results.is_empty() {
        return results;
    }
    let mut out = json!({"role": role, "content": message.content});
    let calls: Vec<Value> = of_type("tool_call")
        .map(|part| {
            let call = part.get("tool_call").cloned().unwrap_or(Value::Null);
            json!({
                "id": part.get("tool_call_id"),
                "type": "function",
                "function": {"name": call.get("name"), "arguments": call.get("arguments")},
            })
        })
        .collect();
    if !calls.is_empty() {
        out["tool_calls"] = Value::Array(calls);
    }
    vec![out]
}

/// The message of an OpenAI-style error body, or the start of whatever the body was.
pub(super) fn error_message(bytes: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes)
        && let Some(message) = value
            .pointer("/error/message")
            .or_else(|| value.get("error"))
            .or_else(|| value.get("message"))
            .and_then(Value::as_str)
    {
        return crate::text::one_line(message, 200);
    }
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        "empty body".into()
    } else {
        crate::text::one_line(&text, 200)
    }
}

/// The answer in a chat-completion body: `choices[0].message.content`, finish reason, usage.
pub(super) fn parse_completion(bytes: &[u8]) -> Result<Completion, String> {
    match plain_completion(bytes) {
        Some(completion) => Ok(completion),
        None => tree_completion(bytes),
    }
}

/// The common answer (its first choice's content a string, no tool calls) read straight into
/// its fields, skipping the rest, without building the body's JSON tree; None for any other
/// body, which `tree_completion` reads (and explains when it is not an answer). Whatever it
/// returns, `tree_completion` returns too.
fn plain_completion(bytes: &[u8]) -> Option<Completion> {
    #[derive(serde::Deserialize)]
    struct Body {
        choices: Vec<Choice>,
        #[serde(default)]
        usage: Option<Usage>,
    }
    #[derive(serde::Deserialize)]
    struct Choice {
        #[serde(default)]
        message: Option<PlainMessage>,
        #[serde(default)]
        finish_reason: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct PlainMessage {
        #[serde(default)]
        content: Option<String>,
        /// Present and not null: the tree's reading.
        #[serde(default)]
        tool_calls: Option<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Usage {
        #[serde(default)]
        prompt_tokens: Option<i64>,
        #[serde(default)]
        completion_tokens: Option<i64>,
    }
    let body: Body = serde_json::from_slice(bytes).ok()?;
    let usage = body.usage;
    let first = body.choices.into_iter().next()?;
    let message = first.message?;
    if message.tool_calls.is_some() {
        return None;
    }
    Some(Completion {
        text: message.content?,
        finish_reason: first.finish_reason,
        prompt_tokens: usage.as_ref().and_then(|u| u.prompt_tokens),
        completion_tokens: usage.as_ref().and_then(|u| u.completion_tokens),
        http_status: 200,
        attempts: 1,
        latency_ms: 0.0,
        extra: None,
    })
}

/// Any body, read as a JSON tree: every shape an answer comes in, and why one is not.
fn tree_completion(bytes: &[u8]) -> Result<Completion, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "the body is not JSON ({e}): {}",
            crate::text::one_line(&String::from_utf8_lossy(bytes), 200)
        )
    })?;
    let choices = value
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("the body has no `choices` list")?;
    let first = choices.first().ok_or("`choices` is empty")?;
    let message = first
        .get("message")
        .ok_or("`choices[0]` has no `message`")?;
    // Tool calls, in the form runner keeps them; an answer that is only calls has no text.
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => crate::tool_calls::read(value).map_err(|e| format!("`tool_calls`: {e}"))?,
    };
    let text = match message.get("content") {
        Some(Value::Null) | None if !calls.is_empty() => String::new(),
        Some(Value::String(text)) => text.clone(),
        // Content may come as a list of parts.
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(Value::Null) | None => {
            return Err(match message.get("refusal").and_then(Value::as_str) {
                Some(refusal) => {
                    format!("the model refused: {}", crate::text::one_line(refusal, 200))
                }
                None => "`choices[0].message.content` is null".into(),
            });
        }
        Some(other) => {
            return Err(format!(
                "`content` is not text: {}",
                crate::text::one_line(&other.to_string(), 200)
            ));
        }
    };
    let usage = value.get("usage");
    let tokens = |field: &str| usage.and_then(|u| u.get(field)).and_then(Value::as_i64);
    Ok(Completion {
        text,
        finish_reason: first
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(String::from),
        prompt_tokens: tokens("prompt_tokens"),
        completion_tokens: tokens("completion_tokens"),
        http_status: 200,
        attempts: 1,
        latency_ms: 0.0,
        extra: (!calls.is_empty()).then(|| {
            let mut extra = JsonObject::new();
            extra.insert("tool_calls".into(), crate::tool_calls::to_value(&calls));
            extra
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_shapes() {
        let ok = parse_completion(
            br#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        )
        .unwrap();
        assert_eq!(ok.text, "hi");
        assert_eq!(ok.finish_reason.as_deref(), Some("stop"));
        assert_eq!((ok.prompt_tokens, ok.completion_tokens), (Some(3), Some(1)));
        let calls = parse_completion(
            br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}]}"#,
        )
        .unwrap();
        assert_eq!(calls.text, "");
        assert_eq!(
            calls.extra.unwrap()["tool_calls"],
            json!([{"id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}])
        );
        let parts = parse_completion(
            br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#,
        )
        .unwrap();
        assert_eq!(parts.text, "ab");
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not JSON"),
            (br#"{"id":"x"}"#, "no `choices`"),
            (br#"{"choices":[]}"#, "empty"),
            (br#"{"choices":[{"message":{"content":null}}]}"#, "null"),
            (
                br#"{"choices":[{"message":{"content":null,"refusal":"no"}}]}"#,
                "refused",
            ),
            (br#"{"choices":[{"finish_reason":"stop"}]}"#, "no `message`"),
            (
                br#"{"choices":[{"message":{"content":null,"tool_calls":[{"function":{}}]}}]}"#,
                "`tool_calls`: tool call 1: it has no `name`",
            ),
        ];
        for (body, needle) in cases {
            let err = parse_completion(body).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    /// The direct reading gives what the tree gives, or leaves the body to it.
    #[test]
    fn the_plain_reading_agrees_with_the_tree() {
        let bodies: &[&[u8]] = &[
            br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi \"there\"\n\u00e9"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
            br#"{"choices":[{"message":{"content":"a"}}]}"#,
            br#"{"id":"chatcmpl-1","object":"chat.completion","created":1733580000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Your order ships today.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":6,"total_tokens":25,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}"#,
            br#"{"choices":[{"message":{"content":"a"},"finish_reason":null}],"usage":null}"#,
            br#"{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":3.0,"completion_tokens":1}}"#,
            br#"{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":18446744073709551615}}"#,
            br#"{"choices":[{"message":{"content":"a"}}],"usage":"none"}"#,
            br#"{"choices":[{"message":{"content":"a"},"finish_reason":7}]}"#,
            br#"{"choices":[{"message":{"content":"a","tool_calls":[]}}]}"#,
            br#"{"choices":[{"message":{"content":"a","tool_calls":null}}]}"#,
            br#"{"choices":[{"message":{"content":"first"}},{"message":{"content":["odd"]}}]}"#,
            br#"{"choices":[{"message":{"content":"a","content":"b"}}]}"#,
            br#"{"choices":[{"message":{"content":"a"}}],"choices":[{"message":{"content":"b"}}]}"#,
            br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"}]}}]}"#,
            br#"{"choices":[{"message":{"content":null}}]}"#,
            br#"{"choices":[{"message":null}]}"#,
            br#"{"choices":[]}"#,
            br#"{"choices":{}}"#,
            br#"[]"#,
            br#"{"choices":[{"message":{"content":"a"}}]} trailing"#,
        ];
        let mut plain = 0;
        for body in bodies {
            let tree = tree_completion(body);
            let direct = plain_completion(body);
            if let Some(direct) = direct {
                plain += 1;
                assert_eq!(Ok(direct), tree, "{}", String::from_utf8_lossy(body));
            }
            assert_eq!(parse_completion(body), tree);
        }
        // The common shapes take the direct reading: the five whose first choice has text and
        // no tool calls, with well-formed figures.
        assert_eq!(plain, 5);
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(br#"{"error":{"message":"Invalid key","type":"auth"}}"#),
            "Invalid key"
        );
        assert_eq!(error_message(b""), "empty body");
        assert_eq!(
            error_message(b"<html>\n bad gateway </html>"),
            "<html> bad gateway </html>"
        );
    }

    #[test]
    fn body_keeps_params_and_sets_model_and_messages() {
        let mut params = JsonObject::new();
        params.insert("temperature".into(), json!(0.2));
        params.insert("model".into(), json!("ignored"));
        let body = request_body("gpt-4", &[Message::text("user", "hi")], &params);
        assert_eq!(
            body,
            json!({"model": "gpt-4", "temperature": 0.2, "messages": [{"role": "user", "content": "hi"}]})
        );
    }
}
