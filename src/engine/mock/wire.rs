//! The mock's chat-completions wire format: the request body as the handler reads it (borrowed,
//! content as a string or a list of parts, only text parts counting), the completion body it
//! writes, and OpenAI-shaped error bodies with the `type` and `code` OpenAI uses per status.
//! Shapes and their encoding only: it must not choose replies, sleep, count requests or apply
//! rate limits; the server and the rules do that.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct ChatRequest<'a> {
    #[serde(borrow, default)]
    pub(super) model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) messages: Vec<ChatMessage<'a>>,
    /// Counted against the token limit as OpenAI counts it: what the answer may take.
    #[serde(default)]
    pub(super) max_tokens: Option<f64>,
    #[serde(default)]
    pub(super) max_completion_tokens: Option<f64>,
    #[serde(default)]
    pub(super) stream: bool,
    #[serde(default)]
    pub(super) stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
pub(super) struct StreamOptions {
    #[serde(default)]
    pub(super) include_usage: bool,
}

#[derive(Deserialize)]
pub(super) struct ChatMessage<'a> {
    #[serde(borrow)]
    pub(super) role: Cow<'a, str>,
    // Assistant messages that carry tool calls have `"content": null`, or no content at all.
    #[serde(borrow, default)]
    pub(super) content: Content<'a>,
}

/// A message's `content`: a string, or a list of parts of which only the text parts count.
#[derive(Default)]
pub(super) enum Content<'a> {
    #[default]
    Empty,
    Text(Cow<'a, str>),
    Parts(Vec<Cow<'a, str>>),
}

impl Content<'_> {
    pub(super) fn words(&self) -> u64 {
        let count = |s: &str| s.split_whitespace().count() as u64;
        match self {
            Content::Empty => 0,
            Content::Text(t) => count(t),
            Content::Parts(parts) => parts.iter().map(|p| count(p)).sum(),
        }
    }

    /// Text parts are joined with a newline (as vLLM does), so words never fuse across parts and
    /// the word count of the joined text equals the sum over the parts.
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Empty => Cow::Borrowed(""),
            Content::Text(t) => Cow::Borrowed(t),
            Content::Parts(parts) if parts.len() == 1 => Cow::Borrowed(&parts[0]),
            Content::Parts(parts) => Cow::Owned(parts.join("\n")),
        }
    }
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

// Hand-written rather than `#[serde(untagged)]`: untagged buffers every value into an
// intermediate tree and reports any mismatch as "did not match any variant".
impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor<'a>(std::marker::PhantomData<Content<'a>>);

        impl<'de: 'a, 'a> Visitor<'de> for ContentVisitor<'a> {
            type Value = Content<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a list of content parts, or null")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v.to_string())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(v)))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::Empty)
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::Empty)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut texts = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(part) = seq.next_element::<Part<'a>>()? {
                    // Image and audio parts carry no words for the mock to match or count.
                    if part.kind == "text" {
                        texts.push(part.text.unwrap_or(Cow::Borrowed("")));
                    }
                }
                Ok(Content::Parts(texts))
            }
        }

        deserializer.deserialize_any(ContentVisitor(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
pub(super) struct Completion<'a> {
    pub(super) id: CompletionId,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: [Choice<'a>; 1],
    pub(super) usage: Usage,
}

/// Serializes as `chatcmpl-mock-<n>` straight into the output, without an intermediate String.
pub(super) struct CompletionId(pub(super) u64);

impl Serialize for CompletionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("chatcmpl-mock-{}", self.0))
    }
}

#[derive(Serialize)]
pub(super) struct Choice<'a> {
    pub(super) index: u32,
    pub(super) message: AssistantMessage<'a>,
    pub(super) finish_reason: &'static str,
}

#[derive(Serialize)]
pub(super) struct AssistantMessage<'a> {
    pub(super) role: &'static str,
    pub(super) content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_calls: Option<&'a [serde_json::Value]>,
}

#[derive(Serialize)]
pub(super) struct Usage {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) total_tokens: u64,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

pub(super) fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        // Only reachable if a Serialize impl above fails, which plain structs of strings cannot.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// An error in OpenAI's shape, with the `type` (and for 429 the `code`) OpenAI uses for that
/// status, so clients that branch on them see what they would see from the real API.
pub(super) fn error_response(status: StatusCode, message: &str) -> Response {
    let (kind, code) = match status.as_u16() {
        401 => ("authentication_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("not_found")),
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error")
    } else {
        message
    };
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param: None,
            code,
        },
    };
    json_response(status, &body)
}
