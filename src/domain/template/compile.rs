//! Compiling a template: each message's text parsed (by its format's parser) into literal and
//! variable segments, the chat's shape kept, and every variable name interned once in order of
//! first appearance. It owns `CompiledTemplate`'s layout; it must not render values (that is
//! `render`'s) or know either syntax's rules (the parsers' own).

use std::collections::HashMap;

use serde_json::Value;

use super::fstring::parse_fstring;
use super::mustache::parse_mustache;
use super::parse::Piece;
use super::{ALLOWED_ROLES, PLACEHOLDER, TemplateError};
use crate::model::{Template, TemplateFormat};

#[derive(Debug, Clone)]
pub(super) enum Segment {
    Text(String),
    /// Index into `CompiledTemplate::variables`, so each name is looked up once per render.
    Var(usize),
}

/// One message's content, parsed.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) role: String,
    pub(super) segments: Vec<Segment>,
    pub(super) literal_len: usize,
}

/// How a rendered message is put together from parsed texts.
#[derive(Debug, Clone)]
pub(super) enum Shape {
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
    /// Messages from a column (`variables[index]`): a JSON list expanded in place.
    Placeholder(usize),
}

/// A template parsed once and rendered many times (hot path: rendering one row must not re-parse).
#[derive(Debug, Clone)]
pub struct CompiledTemplate {
    pub(super) parts: Vec<Part>,
    pub(super) shapes: Vec<Shape>,
    pub(super) variables: Vec<String>,
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
                    if message.role == PLACEHOLDER {
                        // Its content names the column, bare or as `{{history}}`.
                        let name = message
                            .content
                            .trim()
                            .trim_start_matches("{{")
                            .trim_end_matches("}}")
                            .trim();
                        if !super::names::is_dotted_identifier(name) || message.parts.is_some() {
                            return Err(TemplateError::Placeholder {
                                message_index: index,
                                name: message.content.clone(),
                            });
                        }
                        let unit = builder.intern(name);
                        builder.shapes.push(Shape::Placeholder(unit));
                        continue;
                    }
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

    /// Whether a message of this template expands a column's list of messages.
    pub fn has_placeholder(&self) -> bool {
        self.shapes
            .iter()
            .any(|s| matches!(s, Shape::Placeholder(_)))
    }
}

/// Convenience: compile + variables.
pub fn variables(
    format: TemplateFormat,
    template: &Template,
) -> Result<Vec<String>, TemplateError> {
    Ok(CompiledTemplate::compile(format, template)?.variables)
}

/// Accumulates parts and interns variable names so a name shared by messages is looked up once.
#[derive(Default)]
pub(super) struct Builder {
    parts: Vec<Part>,
    shapes: Vec<Shape>,
    variables: Vec<String>,
    index: HashMap<String, usize>,
}

impl Builder {
    pub(super) fn add_part(
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
                Piece::Var(name) => segments.push(Segment::Var(self.intern(name))),
            }
        }
        self.parts.push(Part {
            role: role.to_owned(),
            segments,
            literal_len,
        });
        Ok(self.parts.len() - 1)
    }

    /// The index of variable `name`, added on first sight.
    pub(super) fn intern(&mut self, name: &str) -> usize {
        let next = self.variables.len();
        let i = *self.index.entry(name.to_owned()).or_insert(next);
        if i == next {
            self.variables.push(name.to_owned());
        }
        i
    }

    pub(super) fn finish(self) -> CompiledTemplate {
        CompiledTemplate {
            parts: self.parts,
            shapes: self.shapes,
            variables: self.variables,
        }
    }
}
