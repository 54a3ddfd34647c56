//! Template parsing and strict rendering: mustache, f-string and plain text.
//!
//! A template is parsed once into literal and variable segments; rendering one row then only
//! looks values up and appends to a single pre-sized buffer. Rendering is strict: a missing
//! variable fails the whole render and names every absent variable, because a half-filled
//! prompt sent to a model silently skews an experiment.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::model::{JsonObject, Message, Template, TemplateFormat};

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

/// Longest excerpt shown in a parse error, in characters.
const EXCERPT_CHARS: usize = 30;

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
}

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

#[derive(Debug, Clone)]
enum Segment {
    Text(String),
    /// Index into `CompiledTemplate::variables`, so each name is looked up once per render.
    Var(usize),
}

/// One message's content, parsed.
#[derive(Debug, Clone)]
struct Part {
    role: String,
    segments: Vec<Segment>,
    literal_len: usize,
}

/// How a rendered message is put together from parsed texts.
#[derive(Debug, Clone)]
enum Shape {
    /// The message's content is one text: `parts[index]`.
    Text(usize),
    /// The message's content is a list of parts, kept as given; the `text` of each text part is
    /// rendered from `parts[unit]` (part index, unit index); other parts (tool calls, tool
    /// results) are sent as written.
    Parts {
        role: String,
        given: Vec<Value>,
        units: Vec<(usize, usize)>,
    },
}

/// A template parsed once and rendered many times (hot path: rendering one row must not re-parse).
#[derive(Debug, Clone)]
pub struct CompiledTemplate {
    parts: Vec<Part>,
    shapes: Vec<Shape>,
    variables: Vec<String>,
}

impl CompiledTemplate {
    pub fn compile(format: TemplateFormat, template: &Template) -> Result<Self, TemplateError> {
        let mut builder = Builder::default();
        match template {
            Template::Str(text) => {
                let unit = builder.add_part(format, "user", text, None)?;
                builder.shapes.push(Shape::Text(unit));
            }
            Template::Chat(messages) => {
                if messages.is_empty() {
                    return Err(TemplateError::EmptyChat);
                }
                for (index, message) in messages.iter().enumerate() {
                    if !ALLOWED_ROLES.contains(&message.role.as_str()) {
                        return Err(TemplateError::InvalidRole {
                            role: message.role.clone(),
                        });
                    }
                    match &message.parts {
                        None => {
                            let unit = builder.add_part(
                                format,
                                &message.role,
                                &message.content,
                                Some(index),
                            )?;
                            builder.shapes.push(Shape::Text(unit));
                        }
                        Some(given) => {
                            let mut units = Vec::new();
                            for (p, part) in given.iter().enumerate() {
                                if part.get("type").and_then(Value::as_str) == Some("text") {
                                    let text =
                                        part.get("text").and_then(Value::as_str).unwrap_or("");
                                    let unit = builder.add_part(
                                        format,
                                        &message.role,
                                        text,
                                        Some(index),
                                    )?;
                                    units.push((p, unit));
                                }
                            }
                            builder.shapes.push(Shape::Parts {
                                role: message.role.clone(),
                                given: given.clone(),
                                units,
                            });
                        }
                    }
                }
            }
        }
        Ok(builder.finish())
    }

    /// Every variable name, deduplicated, in order of first appearance across all messages.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Renders to messages: a Str template becomes exactly one `user` message.
    pub fn render(&self, vars: &JsonObject) -> Result<Vec<Message>, TemplateError> {
        let values = self.resolve(vars)?;
        Ok(self
            .shapes
            .iter()
            .map(|shape| match shape {
                Shape::Text(unit) => {
                    let part = &self.parts[*unit];
                    Message::text(part.role.clone(), render_part(part, &values))
                }
                Shape::Parts { role, given, units } => {
                    let mut parts = given.clone();
                    for (p, unit) in units {
                        parts[*p]["text"] = Value::String(render_part(&self.parts[*unit], &values));
                    }
                    Message::with_parts(role.clone(), parts)
                }
            })
            .collect())
    }

    /// Variables from `variables()` that `vars` cannot supply (same lookup rule as render).
    pub fn missing(&self, vars: &JsonObject) -> Vec<String> {
        self.variables
            .iter()
            .filter(|name| lookup(vars, name).is_none())
            .cloned()
            .collect()
    }

    /// Looks every variable up once; fails listing all absent ones rather than the first.
    fn resolve<'v>(&self, vars: &'v JsonObject) -> Result<Vec<&'v Value>, TemplateError> {
        let mut values = Vec::with_capacity(self.variables.len());
        let mut missing = Vec::new();
        for name in &self.variables {
            match lookup(vars, name) {
                Some(value) => values.push(value),
                None => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(values)
        } else {
            Err(TemplateError::Missing { names: missing })
        }
    }
}

/// Convenience: compile + variables.
pub fn variables(
    format: TemplateFormat,
    template: &Template,
) -> Result<Vec<String>, TemplateError> {
    Ok(CompiledTemplate::compile(format, template)?.variables)
}

/// Renders a single text (not a chat) — used by property tests and callers needing one string.
pub fn render_text(
    format: TemplateFormat,
    text: &str,
    vars: &JsonObject,
) -> Result<String, TemplateError> {
    let mut builder = Builder::default();
    builder.add_part(format, "user", text, None)?;
    let compiled = builder.finish();
    let values = compiled.resolve(vars)?;
    Ok(compiled
        .parts
        .first()
        .map(|part| render_part(part, &values))
        .unwrap_or_default())
}

/// Looks a (possibly dotted) name up in vars by the rule above.
///
/// An exact key wins because flat sources such as CSV columns may literally be named `a.b`;
/// only then is the name walked through nested objects.
pub fn lookup<'a>(vars: &'a JsonObject, name: &str) -> Option<&'a Value> {
    if let Some(value) = vars.get(name) {
        return Some(value);
    }
    let (first, rest) = name.split_once('.')?;
    let mut current = vars.get(first)?;
    for segment in rest.split('.') {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

fn render_part(part: &Part, values: &[&Value]) -> String {
    let extra: usize = part
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Var(i) => values.get(*i).map_or(0, |v| value_len_hint(v)),
            Segment::Text(_) => 0,
        })
        .sum();
    let mut out = String::with_capacity(part.literal_len + extra);
    for segment in &part.segments {
        match segment {
            Segment::Text(text) => out.push_str(text),
            Segment::Var(i) => {
                if let Some(value) = values.get(*i) {
                    push_value(&mut out, value);
                }
            }
        }
    }
    out
}

fn value_len_hint(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Null => 0,
        _ => 8,
    }
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // `Display` for numbers, arrays and objects is compact JSON; writing to a String cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Accumulates parts and interns variable names so a name shared by messages is looked up once.
#[derive(Default)]
struct Builder {
    parts: Vec<Part>,
    shapes: Vec<Shape>,
    variables: Vec<String>,
    index: HashMap<String, usize>,
}

impl Builder {
    fn add_part(
        &mut self,
        format: TemplateFormat,
        role: &str,
        text: &str,
        message_index: Option<usize>,
    ) -> Result<usize, TemplateError> {
        let pieces = match format {
            TemplateFormat::Mustache => parse_mustache(text),
            TemplateFormat::FString => parse_fstring(text),
            TemplateFormat::None => Ok(vec![Piece::Text(text.to_owned())]),
        }
        .map_err(|fail| fail.into_error(text, message_index, role))?;

        let mut segments = Vec::with_capacity(pieces.len());
        let mut literal_len = 0;
        for piece in pieces {
            match piece {
                Piece::Text(t) if t.is_empty() => {}
                Piece::Text(t) => {
                    literal_len += t.len();
                    segments.push(Segment::Text(t));
                }
                Piece::Var(name) => {
                    let next = self.variables.len();
                    let i = *self.index.entry(name.to_owned()).or_insert(next);
                    if i == next {
                        self.variables.push(name.to_owned());
                    }
                    segments.push(Segment::Var(i));
                }
            }
        }
        self.parts.push(Part {
            role: role.to_owned(),
            segments,
            literal_len,
        });
        Ok(self.parts.len() - 1)
    }

    fn finish(self) -> CompiledTemplate {
        CompiledTemplate {
            parts: self.parts,
            shapes: self.shapes,
            variables: self.variables,
        }
    }
}

enum Piece<'a> {
    Text(String),
    Var(&'a str),
}

/// A parse failure before it knows which message it belongs to.
struct ParseFail {
    /// Byte offset of the offending placeholder's start.
    offset: usize,
    reason: String,
}

impl ParseFail {
    fn new(offset: usize, reason: impl Into<String>) -> Self {
        ParseFail {
            offset,
            reason: reason.into(),
        }
    }

    fn into_error(self, text: &str, message_index: Option<usize>, role: &str) -> TemplateError {
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

/// Segments of `[A-Za-z_][A-Za-z0-9_-]*` joined by `.`.
fn is_dotted_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|segment| {
            let mut bytes = segment.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

fn invalid_name(name: &str) -> String {
    format!("invalid variable name {name:?} (expected names like customer.name)")
}

fn parse_mustache(text: &str) -> Result<Vec<Piece<'_>>, ParseFail> {
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

fn parse_fstring(text: &str) -> Result<Vec<Piece<'_>>, ParseFail> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut literal_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                literal.push_str(&text[literal_start..=i]);
                i += 2;
                literal_start = i;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                literal.push_str(&text[literal_start..=i]);
                i += 2;
                literal_start = i;
            }
            b'}' => {
                return Err(ParseFail::new(
                    i,
                    "single '}' encountered (write '}}' for a literal brace)",
                ));
            }
            b'{' => {
                literal.push_str(&text[literal_start..i]);
                let name_start = i + 1;
                let stop = bytes[name_start..]
                    .iter()
                    .position(|b| matches!(b, b'}' | b':' | b'!' | b'{'))
                    .map(|p| name_start + p);
                let Some(stop) = stop else {
                    return Err(ParseFail::new(
                        i,
                        "unclosed '{' (expected '}'; write '{{' for a literal brace)",
                    ));
                };
                let name = &text[name_start..stop];
                match bytes[stop] {
                    b':' => {
                        return Err(ParseFail::new(
                            i,
                            "format specs like {x:>10} are not supported",
                        ));
                    }
                    b'!' => {
                        return Err(ParseFail::new(
                            i,
                            "conversions like {x!r} are not supported",
                        ));
                    }
                    b'{' => return Err(ParseFail::new(i, "unexpected '{' inside a field")),
                    _ => {}
                }
                if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseFail::new(
                        i,
                        "positional fields like {} or {0} are not supported (name the variable)",
                    ));
                }
                if !is_dotted_identifier(name) {
                    return Err(ParseFail::new(i, invalid_name(name)));
                }
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
                pieces.push(Piece::Var(name));
                i = stop + 1;
                literal_start = i;
            }
            _ => i += 1,
        }
    }
    literal.push_str(&text[literal_start..]);
    pieces.push(Piece::Text(literal));
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplateFormat::{FString, Mustache, None as Plain};
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(value: Value) -> JsonObject {
        match value {
            Value::Object(map) => map,
            other => panic!("test vars must be an object, got {other}"),
        }
    }

    fn msg(role: &str, content: &str) -> Message {
        Message::text(role, content)
    }

    #[test]
    fn variables_in_order_deduplicated() {
        let cases: &[(TemplateFormat, &str, &[&str])] = &[
            (
                Mustache,
                "Hi {{name}}, {{ age }} {{name}}",
                &["name", "age"],
            ),
            (
                Mustache,
                "{{customer.name}} {{  customer.id\t}}",
                &["customer.name", "customer.id"],
            ),
            (Mustache, "{{{raw}}} {{! a note }}{{x}}", &["raw", "x"]),
            (
                Mustache,
                "{{& amp}} {{a-b}} {{_x1}}",
                &["amp", "a-b", "_x1"],
            ),
            (Mustache, "a { b } }} c {x}", &[]),
            (Mustache, "\\{{not}} {{yes}}", &["yes"]),
            (Mustache, "{{b}}{{a}}{{b}}{{c}}{{a}}", &["b", "a", "c"]),
            (Mustache, "", &[]),
            (FString, "{a} {b.c} {a} {{lit}} }}", &["a", "b.c"]),
            (Plain, "{{a}} {b} \\{{c}}", &[]),
        ];
        for (format, text, expected) in cases {
            let got = variables(*format, &Template::Str((*text).into()))
                .unwrap_or_else(|e| panic!("{format} {text:?}: {e}"));
            assert_eq!(got, *expected, "{format} {text:?}");
        }
    }

    #[test]
    fn renders_values() {
        let cases: &[(TemplateFormat, &str, Value, &str)] = &[
            (
                Mustache,
                "{{n}} {{f}} {{neg}}",
                json!({"n": 3, "f": 1.5, "neg": -2}),
                "3 1.5 -2",
            ),
            (
                Mustache,
                "{{t}}/{{f}}/{{z}}",
                json!({"t": true, "f": false, "z": null}),
                "true/false/",
            ),
            (
                Mustache,
                "{{c.name}} {{ c.address.city }}",
                json!({"c": {"name": "Ann", "address": {"city": "Oslo"}}}),
                "Ann Oslo",
            ),
            (
                Mustache,
                "{{c}} {{l}}",
                json!({"c": {"a": 1}, "l": [1, "x"]}),
                r#"{"a":1} [1,"x"]"#,
            ),
            (
                Mustache,
                "{{a.b}}",
                json!({"a.b": "exact", "a": {"b": "nested"}}),
                "exact",
            ),
            (Mustache, "{{{x}}} {{&x}}", json!({"x": "<b>"}), "<b> <b>"),
            (Mustache, "\\{{x}} {{x}}", json!({"x": "1"}), "{{x}} 1"),
            (Mustache, "a}} {b} {{x}}}", json!({"x": "1"}), "a}} {b} 1}"),
            (Mustache, "a{{! hi }}b", json!({}), "ab"),
            (Mustache, "{{x}}", json!({"x": "{{y}} {z}"}), "{{y}} {z}"),
            (
                Mustache,
                "héllo {{x}} ✓",
                json!({"x": "wörld"}),
                "héllo wörld ✓",
            ),
            (Mustache, r#"{"k": {{x}}}"#, json!({"x": 5}), r#"{"k": 5}"#),
            (FString, "{{{x}}}", json!({"x": "1"}), "{1}"),
            (
                FString,
                "{a.b}-{n}",
                json!({"a": {"b": "B"}, "n": 7}),
                "B-7",
            ),
            (FString, "{x}", json!({"x": "{y}"}), "{y}"),
            (Plain, "{{x}} {y} \\{{ }", json!({}), "{{x}} {y} \\{{ }"),
        ];
        for (format, text, vars, expected) in cases {
            let got = render_text(*format, text, &obj(vars.clone()))
                .unwrap_or_else(|e| panic!("{format} {text:?}: {e}"));
            assert_eq!(got, *expected, "{format} {text:?}");
        }
    }

    #[test]
    fn malformed_templates_fail_with_position() {
        // (format, text, line, column, substring of the reason)
        let cases: &[(TemplateFormat, &str, usize, usize, &str)] = &[
            (Mustache, "Hello {{name", 1, 7, "unclosed `{{`"),
            (
                Mustache,
                "ok\n  {{#items}}x{{/items}}",
                2,
                3,
                "not supported",
            ),
            (Mustache, "{{^x}}", 1, 1, "not supported"),
            (Mustache, "{{/x}}", 1, 1, "not supported"),
            (Mustache, "{{>partial}}", 1, 1, "not supported"),
            (Mustache, "{{=<% %>=}}", 1, 1, "not supported"),
            (Mustache, "a {{}}", 1, 3, "invalid variable name"),
            (Mustache, "{{a b}}", 1, 1, "invalid variable name"),
            (Mustache, r#"{{"x": 1}}"#, 1, 1, "invalid variable name"),
            (Mustache, "{{1abc}}", 1, 1, "invalid variable name"),
            (Mustache, "{{a..b}}", 1, 1, "invalid variable name"),
            (Mustache, "{{a.}}", 1, 1, "invalid variable name"),
            (Mustache, "{{{x}}", 1, 1, "unclosed `{{{`"),
            (Mustache, "héé {{", 1, 5, "unclosed `{{`"),
            (
                Mustache,
                "{{ok}}\r\nx\n\t{{ bad name }}",
                3,
                2,
                "invalid variable name",
            ),
            (FString, "{x", 1, 1, "unclosed '{'"),
            (FString, "a }", 1, 3, "single '}'"),
            (FString, "x {}", 1, 3, "positional"),
            (FString, "{0}", 1, 1, "positional"),
            (FString, "{x:>10}", 1, 1, "format spec"),
            (FString, "{x!r}", 1, 1, "conversion"),
            (FString, "{ x }", 1, 1, "invalid variable name"),
            (FString, "{a{b}}", 1, 1, "unexpected '{'"),
            (FString, "ab\ncd {x.}", 2, 4, "invalid variable name"),
        ];
        for (format, text, line, column, reason) in cases {
            match CompiledTemplate::compile(*format, &Template::Str((*text).into())) {
                Err(TemplateError::Parse {
                    message_index: None,
                    role: None,
                    line: l,
                    column: c,
                    reason: r,
                    excerpt,
                }) => {
                    assert_eq!((l, c), (*line, *column), "{format} {text:?}");
                    assert!(r.contains(reason), "{format} {text:?}: {r}");
                    assert!(
                        !excerpt.is_empty() && !excerpt.contains('\n'),
                        "{excerpt:?}"
                    );
                }
                other => panic!("{format} {text:?}: expected a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn parse_error_display_and_excerpt() {
        let err = CompiledTemplate::compile(
            Mustache,
            &Template::Str(format!("x\nsay {{{{name {}", "y".repeat(50))),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 2, column 5"), "{text}");
        assert!(text.contains("unclosed `{{`"), "{text}");
        let TemplateError::Parse { excerpt, .. } = err else {
            panic!("expected a parse error");
        };
        assert!(
            excerpt.starts_with("{{name y") && excerpt.ends_with('…'),
            "{excerpt}"
        );
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
    }

    #[test]
    fn missing_names_every_variable_once() {
        let compiled = CompiledTemplate::compile(
            Mustache,
            &Template::Str("{{a}} {{b.c}} {{present}} {{a}} {{d}} {{n}}".into()),
        )
        .expect("valid template");
        let vars = obj(json!({"b": {}, "present": 1, "n": null}));
        let err = compiled.render(&vars).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                names: vec!["a".into(), "b.c".into(), "d".into()]
            }
        );
        assert_eq!(err.to_string(), "missing variables: a, b.c, d");
        assert_eq!(compiled.missing(&vars), ["a", "b.c", "d"]);
        let err = render_text(FString, "{x} {y.z}", &obj(json!({"y": "flat"}))).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                names: vec!["x".into(), "y.z".into()]
            }
        );
    }

    #[test]
    fn lookup_rule() {
        let vars = obj(json!({"a.b": 1, "a": {"b": 2, "c": {"d": 3}}, "s": "x", "n": null}));
        let cases: &[(&str, Option<Value>)] = &[
            ("a.b", Some(json!(1))),
            ("a.c.d", Some(json!(3))),
            ("a.c", Some(json!({"d": 3}))),
            ("n", Some(Value::Null)),
            ("s.len", None),
            ("a.x", None),
            ("zz", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(lookup(&vars, name), expected.as_ref(), "{name}");
        }
    }

    #[test]
    fn str_template_renders_one_user_message() {
        let compiled = CompiledTemplate::compile(Mustache, &Template::Str("Hi {{n}}".into()))
            .expect("valid template");
        let out = compiled.render(&obj(json!({"n": "Ada"}))).expect("renders");
        assert_eq!(out, vec![msg("user", "Hi Ada")]);
    }

    #[test]
    fn chat_templates() {
        let template = Template::Chat(vec![
            msg("system", "You help {{company}}."),
            msg("developer", "Be brief."),
            msg("user", "{{question}} ({{company}})"),
            msg("assistant", "ok"),
            msg("tool", "{{result}}"),
        ]);
        let compiled = CompiledTemplate::compile(Mustache, &template).expect("valid chat");
        assert_eq!(compiled.variables(), ["company", "question", "result"]);
        let out = compiled
            .render(&obj(
                json!({"company": "Acme", "question": "Why?", "result": [1]}),
            ))
            .expect("renders");
        assert_eq!(
            out,
            vec![
                msg("system", "You help Acme."),
                msg("developer", "Be brief."),
                msg("user", "Why? (Acme)"),
                msg("assistant", "ok"),
                msg("tool", "[1]"),
            ]
        );
        assert_eq!(
            compiled.render(&obj(json!({"company": "Acme"}))),
            Err(TemplateError::Missing {
                names: vec!["question".into(), "result".into()]
            })
        );
    }

    #[test]
    fn chat_errors() {
        let bad_role = Template::Chat(vec![msg("user", "hi"), msg("bot", "hi")]);
        let err = CompiledTemplate::compile(Mustache, &bad_role).unwrap_err();
        assert_eq!(err, TemplateError::InvalidRole { role: "bot".into() });
        let text = err.to_string();
        assert!(
            text.contains("'bot'")
                && text.contains("system, developer, user, assistant, ai, model, tool")
        );

        let upper = Template::Chat(vec![msg("User", "hi")]);
        assert!(matches!(
            CompiledTemplate::compile(FString, &upper),
            Err(TemplateError::InvalidRole { .. })
        ));

        let empty = Template::Chat(vec![]);
        assert_eq!(
            CompiledTemplate::compile(Plain, &empty).unwrap_err(),
            TemplateError::EmptyChat
        );

        let second = Template::Chat(vec![msg("system", "fine {x}"), msg("user", "oops {x")]);
        let err = CompiledTemplate::compile(FString, &second).unwrap_err();
        assert!(
            matches!(
                &err,
                TemplateError::Parse { message_index: Some(1), role: Some(role), line: 1, column: 6, .. }
                    if role == "user"
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("message 2 (user)"), "{err}");
    }

    #[test]
    fn none_format_never_fails() {
        for text in ["{{", "}", "{x:>10}", "{{#a}}", "\\{{", "{}"] {
            let out = render_text(Plain, text, &JsonObject::new()).expect("none never fails");
            assert_eq!(out, text);
        }
    }

    /// One placeholder spelling per format, chosen by `style`.
    fn placeholder(format: TemplateFormat, name: &str, style: usize) -> String {
        match (format, style % 3) {
            (FString, _) => format!("{{{name}}}"),
            (_, 0) => format!("{{{{{name}}}}}"),
            (_, 1) => format!("{{{{ {name}  }}}}"),
            _ => format!("{{{{{{{name}}}}}}}"),
        }
    }

    type Chunks = Vec<(String, String, usize, String)>;

    fn chunks() -> impl Strategy<Value = (Chunks, String)> {
        let literal = "[a-zA-Z0-9 .,:;!?#=&^/>\n-]{0,12}";
        let name = "[a-zA-Z_][a-zA-Z0-9_-]{0,4}(\\.[a-z_][a-z0-9_-]{0,3}){0,2}";
        (
            prop::collection::vec((literal, name, 0..3usize, "\\PC{0,8}"), 0..8),
            literal,
        )
    }

    /// Builds the template text, the full variable map, the expected output and the names in order.
    fn build(
        format: TemplateFormat,
        chunks: &Chunks,
        tail: &str,
    ) -> (String, JsonObject, String, Vec<String>) {
        let mut text = String::new();
        let mut expected = String::new();
        let mut vars = JsonObject::new();
        let mut names = Vec::new();
        for (literal, name, style, value) in chunks {
            if !vars.contains_key(name) {
                vars.insert(name.clone(), Value::String(value.clone()));
                names.push(name.clone());
            }
            text.push_str(literal);
            text.push_str(&placeholder(format, name, *style));
            expected.push_str(literal);
            if let Some(Value::String(v)) = vars.get(name) {
                expected.push_str(v);
            }
        }
        text.push_str(tail);
        expected.push_str(tail);
        (text, vars, expected, names)
    }

    proptest! {
        #[test]
        fn compile_never_panics(
            any_text in ".*",
            brace_text in "[{}\\\\ a-z.!#:&>=\n-]{0,30}",
        ) {
            for text in [&any_text, &brace_text] {
                for format in [Mustache, FString, Plain] {
                    let _ = CompiledTemplate::compile(format, &Template::Str(text.clone()));
                    let chat = Template::Chat(vec![msg("system", "x"), msg("user", text)]);
                    let _ = CompiledTemplate::compile(format, &chat);
                    let _ = render_text(format, text, &JsonObject::new());
                }
            }
        }

        /// Whatever compiles renders, given a value for each variable it lists: never a panic,
        /// never a missing variable it did not report.
        #[test]
        fn whatever_compiles_renders(
            any_text in ".*",
            brace_text in "[{}\\\\ a-z.!#:&>=\n-]{0,30}",
            value in ".*",
        ) {
            for text in [&any_text, &brace_text] {
                for format in [Mustache, FString, Plain] {
                    let chat = Template::Chat(vec![msg("system", text), msg("user", text)]);
                    for template in [Template::Str(text.clone()), chat] {
                        let Ok(compiled) = CompiledTemplate::compile(format, &template) else {
                            continue;
                        };
                        let vars: JsonObject = compiled
                            .variables()
                            .iter()
                            .map(|name| (name.clone(), Value::String(value.clone())))
                            .collect();
                        prop_assert!(compiled.render(&vars).is_ok(), "{} {:?}", format, text);
                    }
                }
            }
        }

        #[test]
        fn render_is_literals_plus_values((chunks, tail) in chunks()) {
            for format in [Mustache, FString] {
                let (text, vars, expected, _) = build(format, &chunks, &tail);
                let got = render_text(format, &text, &vars);
                prop_assert_eq!(got, Ok(expected), "{} {:?}", format, text);
            }
        }

        #[test]
        fn variables_are_exactly_what_render_needs((chunks, tail) in chunks()) {
            for format in [Mustache, FString] {
                let (text, vars, _, names) = build(format, &chunks, &tail);
                let compiled = CompiledTemplate::compile(format, &Template::Str(text.clone()));
                prop_assert!(compiled.is_ok(), "{} {:?}", format, text);
                let Ok(compiled) = compiled else { continue };
                prop_assert_eq!(compiled.variables(), names.as_slice());
                prop_assert!(compiled.render(&vars).is_ok());
                prop_assert!(compiled.missing(&vars).is_empty());
                for name in &names {
                    let mut fewer = vars.clone();
                    fewer.remove(name);
                    prop_assert_eq!(
                        compiled.render(&fewer),
                        Err(TemplateError::Missing { names: vec![name.clone()] })
                    );
                }
            }
        }
    }
}
