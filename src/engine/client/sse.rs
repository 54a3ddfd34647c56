//! Streamed answers: the server-sent-events parser (`SseParser`), the reader that turns a
//! `text/event-stream` response into a `Completion` while handing each content piece on, and the
//! handling of one `chat.completion.chunk`. It reads the body of a response the client already
//! has; it must not send requests, retry, or decide what a status or transport error means:
//! those stay with the client (`mod.rs`) and `retry`.

use super::{Completion, MAX_BODY};
use serde_json::Value;

pub(super) enum StreamError {
    Transport(reqwest::Error),
    Invalid(String),
}

/// Reads a chat completion sent as server-sent events (`data: {chunk}` lines, `data: [DONE]`
/// at the end), handing each content piece to `delta`; the usage comes in the last chunk when
/// the endpoint honours `stream_options.include_usage`. At most `MAX_BODY` bytes in all.
pub(super) async fn read_stream(
    mut response: reqwest::Response,
    delta: &mut (dyn FnMut(&str) + Send),
) -> Result<Completion, StreamError> {
    let mut events = SseParser::default();
    let mut completion = Completion {
        text: String::new(),
        finish_reason: None,
        prompt_tokens: None,
        completion_tokens: None,
        http_status: 200,
        attempts: 1,
        latency_ms: 0.0,
        extra: None,
    };
    let mut read = 0usize;
    let mut done = false;
    while !done {
        let Some(chunk) = response.chunk().await.map_err(StreamError::Transport)? else {
            break;
        };
        read += chunk.len();
        if read > MAX_BODY {
            return Err(StreamError::Invalid(format!(
                "the stream is larger than {} MiB; runner stopped reading it",
                MAX_BODY >> 20
            )));
        }
        for data in events.push(&chunk) {
            if data == "[DONE]" {
                done = true;
                break;
            }
            apply_chunk(&data, &mut completion, delta).map_err(StreamError::Invalid)?;
        }
    }
    if !done && completion.finish_reason.is_none() {
        return Err(StreamError::Invalid(
            "the stream ended before the answer did (no finish_reason, no [DONE])".into(),
        ));
    }
    Ok(completion)
}

/// Splits a byte stream into the `data` of its server-sent events.
#[derive(Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    data: Vec<String>,
}

impl SseParser {
    /// Adds bytes; returns the data of every event they complete (multi-line data joined).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut complete = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    complete.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                // `[DONE]` stands alone even where a server sends no blank line after it.
                if value == "[DONE]" && self.data.is_empty() {
                    complete.push(value.to_string());
                } else {
                    self.data.push(value.to_string());
                }
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines carry nothing for us.
        }
        complete
    }
}

/// One `chat.completion.chunk`: its content piece, finish reason and usage.
fn apply_chunk(
    data: &str,
    completion: &mut Completion,
    delta: &mut (dyn FnMut(&str) + Send),
) -> Result<(), String> {
    let value: Value = serde_json::from_str(data).map_err(|e| {
        format!(
            "a stream event is not JSON ({e}): {}",
            crate::text::one_line(data, 200)
        )
    })?;
    if let Some(error) = value.get("error") {
        return Err(format!(
            "the endpoint sent an error mid-stream: {}",
            crate::text::one_line(
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or(&error.to_string()),
                200
            )
        ));
    }
    if let Some(first) = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    {
        if let Some(piece) = first
            .get("delta")
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            && !piece.is_empty()
        {
            completion.text.push_str(piece);
            delta(piece);
        }
        if let Some(reason) = first.get("finish_reason").and_then(Value::as_str) {
            completion.finish_reason = Some(reason.to_string());
        }
    }
    if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
        let tokens = |field: &str| usage.get(field).and_then(Value::as_i64);
        completion.prompt_tokens = tokens("prompt_tokens").or(completion.prompt_tokens);
        completion.completion_tokens = tokens("completion_tokens").or(completion.completion_tokens);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_survive_any_split() {
        let stream = b"data: {\"a\":1}\r\n\r\n: a comment\nevent: x\ndata: {\"b\":\ndata: 2}\n\ndata: [DONE]\n";
        // However the bytes arrive, the same events come out.
        for size in [1, 2, 3, 7, stream.len()] {
            let mut parser = SseParser::default();
            let mut events = Vec::new();
            for chunk in stream.chunks(size) {
                events.extend(parser.push(chunk));
            }
            assert_eq!(
                events,
                ["{\"a\":1}", "{\"b\":\n2}", "[DONE]"],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn stream_chunks_build_the_completion() {
        let mut completion = Completion {
            text: String::new(),
            finish_reason: None,
            prompt_tokens: None,
            completion_tokens: None,
            http_status: 200,
            attempts: 1,
            latency_ms: 0.0,
            extra: None,
        };
        let pieces = std::sync::Mutex::new(Vec::new());
        let mut sink = |p: &str| pieces.lock().unwrap().push(p.to_string());
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ] {
            apply_chunk(data, &mut completion, &mut sink).unwrap();
        }
        assert_eq!(*pieces.lock().unwrap(), ["Hel", "lo"]);
        assert_eq!(completion.text, "Hello");
        assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            (completion.prompt_tokens, completion.completion_tokens),
            (Some(3), Some(2))
        );
        let err = apply_chunk(
            r#"{"error":{"message":"overloaded"}}"#,
            &mut completion,
            &mut sink,
        )
        .unwrap_err();
        assert!(err.contains("overloaded"), "{err}");
        assert!(apply_chunk("not json", &mut completion, &mut sink).is_err());
    }
}
