//! Rendering a compiled template with one row's values: every variable looked up once (all the
//! absent ones reported together), then each message written into a buffer sized up front. It
//! must not parse template text: that happened once, in `compile`.

use std::fmt::Write as _;

use serde_json::Value;

use super::TemplateError;
use super::compile::{Builder, CompiledTemplate, Part, Segment, Shape};
use super::names::lookup;
use crate::model::{JsonObject, Message, TemplateFormat};

impl CompiledTemplate {
    /// Renders to messages: a Str template becomes exactly one `user` message.
    pub fn render(&self, vars: &JsonObject) -> Result<Vec<Message>, TemplateError> {
        let values = self.resolve(vars)?;
        let mut out = Vec::with_capacity(self.shapes.len());
        for shape in &self.shapes {
            match shape {
                Shape::Text(unit) => {
                    let part = &self.parts[*unit];
                    out.push(Message::text(part.role.clone(), render_part(part, &values)));
                }
                Shape::Parts { role, given, units } => {
                    let mut parts = given.clone();
                    for (p, unit) in units {
                        parts[*p]["text"] = Value::String(render_part(&self.parts[*unit], &values));
                    }
                    out.push(Message::with_parts(role.clone(), parts));
                }
                Shape::Placeholder(i) => {
                    let name = &self.variables[*i];
                    let expanded = super::conversation::expand(values[*i]).map_err(|reason| {
                        TemplateError::Conversation {
                            name: name.clone(),
                            reason,
                        }
                    })?;
                    out.extend(expanded);
                }
            }
        }
        Ok(out)
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
