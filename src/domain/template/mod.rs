//! Template parsing and strict rendering: mustache, f-string and plain text. A template is
//! parsed once into literal and variable segments; rendering one row then only looks values up
//! and appends to a single pre-sized buffer. Rendering is strict: a missing variable fails the
//! whole render and names every absent variable, because a half-filled prompt sent to a model
//! silently skews an experiment. This file owns the errors and the allowed roles; `compile`
//! builds a `CompiledTemplate`, `render` fills one in, `mustache` and `fstring` parse the two
//! syntaxes, `parse` holds what both parsers share and `names` the variable-name rules. Nothing
//! here reads files, the store or the network.

mod compile;
mod conversation;
mod fstring;
mod mustache;
mod names;
mod parse;
mod render;
#[cfg(test)]
mod tests;

pub use compile::{CompiledTemplate, variables};
pub use names::lookup;
pub use render::render_text;

/// Roles every supported provider understands; anything else would be rejected late, mid-run.
/// `ai` and `model` are Phoenix's names for the assistant; they are kept as written and sent as
/// `assistant`.
const ALLOWED_ROLES: [&str; 7] = [
    "system",
    "developer",
    "user",
    "assistant",
    "ai",
    "model",
    "tool",
];

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is malformed. `message_index` is 0-based; the message shows it 1-based.
    #[error(
        "{}",
        parse_message(.message_index, .role, .line, .column, .reason, .excerpt)
    )]
    Parse {
        message_index: Option<usize>,
        role: Option<String>,
        line: usize,
        column: usize,
        reason: String,
        excerpt: String,
    },
    /// Every variable the values could not supply, in order of first appearance.
    #[error("missing variables: {}", list_names(.names))]
    Missing { names: Vec<String> },
    #[error("invalid role '{role}' (allowed: {})", ALLOWED_ROLES.join(", "))]
    InvalidRole { role: String },
    #[error("a chat template needs at least one message")]
    EmptyChat,
    /// A placeholder message names no column: its content must be one variable name.
    #[error("placeholder message {}: its content must name the column that holds the messages (for example \"history\"), got {name:?}", .message_index + 1)]
    Placeholder { message_index: usize, name: String },
    /// A row's value for a placeholder is not a list of messages.
    #[error("{name}: {reason}")]
    Conversation { name: String, reason: String },
}

/// The role of a message that stands for a list of messages from a column (a conversation so
/// far), expanded in place when a row is rendered.
pub const PLACEHOLDER: &str = "placeholder";

/// The most messages one placeholder may expand into.
pub const MAX_CONVERSATION: usize = 1_000;

/// The first names of a long list, then how many more: an error stays one readable line even
/// when a template has thousands of variables.
pub fn list_names(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

fn parse_message(
    message_index: &Option<usize>,
    role: &Option<String>,
    line: &usize,
    column: &usize,
    reason: &str,
    excerpt: &str,
) -> String {
    let place = match (message_index, role) {
        (Some(i), Some(role)) => format!(" in message {} ({role})", i + 1),
        (Some(i), None) => format!(" in message {}", i + 1),
        _ => String::new(),
    };
    format!("template error{place} at line {line}, column {column}: {reason} (near {excerpt:?})")
}
