//! What both placeholder parsers share: the pieces they cut a text into and a parse failure,
//! which becomes a `TemplateError::Parse` with its line, column and excerpt once the message it
//! belongs to is known. It must not know either syntax (see `mustache` and `fstring`).

use super::TemplateError;

/// Longest excerpt shown in a parse error, in characters.
pub(super) const EXCERPT_CHARS: usize = 30;

pub(super) enum Piece<'a> {
    Text(String),
    Var(&'a str),
}

/// A parse failure before it knows which message it belongs to.
pub(super) struct ParseFail {
    /// Byte offset of the offending placeholder's start.
    offset: usize,
    reason: String,
}

impl ParseFail {
    pub(super) fn new(offset: usize, reason: impl Into<String>) -> Self {
        ParseFail {
            offset,
            reason: reason.into(),
        }
    }

    pub(super) fn into_error(
        self,
        text: &str,
        message_index: Option<usize>,
        role: &str,
    ) -> TemplateError {
        let offset = self.offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        TemplateError::Parse {
            message_index,
            role: message_index.map(|_| role.to_owned()),
            line,
            column,
            reason: self.reason,
            excerpt: excerpt(&text[offset..]),
        }
    }
}

/// The start of the offending text, up to the end of its line, shortened to stay readable.
fn excerpt(from: &str) -> String {
    crate::text::first_line(from, EXCERPT_CHARS)
}
