//! The mustache parser: `{{name}}`, `{{{name}}}`, `{{& name}}`, `{{! comment}}` and `\{{` for a
//! literal, dotted names allowed; sections, partials and delimiter changes are refused. It only
//! cuts text into pieces: it must not look values up or render.

use super::names::{invalid_name, is_dotted_identifier};
use super::parse::{ParseFail, Piece};

pub(super) fn parse_mustache(text: &str) -> Result<Vec<Piece<'_>>, ParseFail> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut literal_start = 0;
    let mut i = 0;
    // Every delimiter is ASCII, so byte offsets found here are always char boundaries.
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes[i + 1..].starts_with(b"{{") {
            literal.push_str(&text[literal_start..i]);
            literal.push_str("{{");
            i += 3;
            literal_start = i;
            continue;
        }
        if !bytes[i..].starts_with(b"{{") {
            i += 1;
            continue;
        }
        literal.push_str(&text[literal_start..i]);
        let (name, end) = mustache_tag(text, i)?;
        if let Some(name) = name {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
            pieces.push(Piece::Var(name));
        }
        i = end;
        literal_start = i;
    }
    literal.push_str(&text[literal_start..]);
    pieces.push(Piece::Text(literal));
    Ok(pieces)
}

/// Parses the tag opening at `start`; returns the variable (None for a comment) and the end offset.
fn mustache_tag(text: &str, start: usize) -> Result<(Option<&str>, usize), ParseFail> {
    if text[start..].starts_with("{{{") {
        let inner_start = start + 3;
        let close = text[inner_start..]
            .find("}}}")
            .ok_or_else(|| ParseFail::new(start, "unclosed `{{{` (expected `}}}`)"))?;
        let name = text[inner_start..inner_start + close].trim();
        if !is_dotted_identifier(name) {
            return Err(ParseFail::new(start, invalid_name(name)));
        }
        return Ok((Some(name), inner_start + close + 3));
    }
    let inner_start = start + 2;
    let close = text[inner_start..]
        .find("}}")
        .ok_or_else(|| ParseFail::new(start, "unclosed `{{` (expected `}}`)"))?;
    let end = inner_start + close + 2;
    let inner = text[inner_start..inner_start + close].trim();
    let name = match inner.chars().next() {
        Some('!') => return Ok((None, end)),
        Some('#' | '^' | '/' | '>' | '<' | '=' | '$') => {
            return Err(ParseFail::new(
                start,
                "mustache sections, partials and delimiter changes are not supported \
                 (only {{name}} variables)",
            ));
        }
        // `{{& name}}` is mustache's other spelling of an unescaped variable, the same as ours.
        Some('&') => inner[1..].trim_start(),
        _ => inner,
    };
    if !is_dotted_identifier(name) {
        return Err(ParseFail::new(start, invalid_name(name)));
    }
    Ok((Some(name), end))
}
