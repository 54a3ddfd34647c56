//! What changed between two versions of a prompt: the template's unified diff and every other
//! field that differs, as data (`--json`, the web UI) and as text. Below the renderers and the
//! workflows that both use it; it touches no store and no output.

use crate::model::{Message, PromptVersion, Template};
use serde::Serialize;
use serde_json::{Value, json};

/// The template as reviewable text: a string as is, a chat as `[role]` blocks.
pub fn template_text(template: &Template) -> String {
    match template {
        Template::Str(text) => text.clone(),
        Template::Chat(messages) => messages_text(messages),
    }
}

/// A chat template as reviewable text: each message as a `[role]` block.
pub fn messages_text(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| format!("[{}]\n{}", m.role, m.content))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One field that differs between two versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

/// What changed between two versions of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionDiff {
    pub prompt: String,
    pub from_version: i64,
    pub from_id: String,
    pub to_version: i64,
    pub to_id: String,
    pub template_changed: bool,
    /// Unified diff of the template text; empty when the template did not change.
    pub template_diff: String,
    pub changes: Vec<FieldChange>,
}

impl VersionDiff {
    pub fn between(from: &PromptVersion, to: &PromptVersion) -> VersionDiff {
        let old = template_text(&from.template);
        let new = template_text(&to.template);
        let template_diff = if old == new {
            String::new()
        } else {
            similar::TextDiff::from_lines(&old, &new)
                .unified_diff()
                .context_radius(3)
                .missing_newline_hint(true)
                .header(&format!("v{}", from.seq), &format!("v{}", to.seq))
                .to_string()
        };
        let mut changes = Vec::new();
        let mut field = |name: String, a: Option<Value>, b: Option<Value>| {
            if a != b {
                changes.push(FieldChange {
                    field: name,
                    from: a,
                    to: b,
                });
            }
        };
        field(
            "template_type".into(),
            Some(json!(from.template_type)),
            Some(json!(to.template_type)),
        );
        field(
            "format".into(),
            Some(json!(from.format)),
            Some(json!(to.format)),
        );
        field(
            "model".into(),
            from.model.as_ref().map(|m| json!(m)),
            to.model.as_ref().map(|m| json!(m)),
        );
        for (prefix, a, b) in [
            ("params", &from.params, &to.params),
            ("metadata", &from.metadata, &to.metadata),
        ] {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                field(
                    format!("{prefix}.{key}"),
                    a.get(key).cloned(),
                    b.get(key).cloned(),
                );
            }
        }
        field(
            "description".into(),
            from.description.as_ref().map(|d| json!(d)),
            to.description.as_ref().map(|d| json!(d)),
        );
        VersionDiff {
            prompt: from.prompt.clone(),
            from_version: from.seq,
            from_id: from.id.clone(),
            to_version: to.seq,
            to_id: to.id.clone(),
            template_changed: !template_diff.is_empty(),
            template_diff,
            changes,
        }
    }

    pub fn text(&self) -> String {
        let mut text = format!(
            "{} v{} → v{}\n",
            self.prompt, self.from_version, self.to_version
        );
        if !self.template_changed && self.changes.is_empty() {
            text.push_str("no differences\n");
            return text;
        }
        if self.template_changed {
            text.push('\n');
            text.push_str(&self.template_diff);
            if !self.template_diff.ends_with('\n') {
                text.push('\n');
            }
        } else {
            text.push_str("template unchanged\n");
        }
        if !self.changes.is_empty() {
            text.push('\n');
            let show = |v: &Option<Value>| match v {
                None => "(none)".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            for change in &self.changes {
                text.push_str(&format!(
                    "{}: {} → {}\n",
                    change.field,
                    show(&change.from),
                    show(&change.to)
                ));
            }
        }
        text
    }
}
