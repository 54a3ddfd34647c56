//! Renderers for prompts and their versions: lists, a version's card, tags and their history,
//! rendered messages, as text tables or JSON views. Pure: it must not read the store or print.

use super::{excerpt, messages_text, or_dash, short_time, table, template_text};
use crate::model::{Message, Prompt, PromptVersion, Tag, TagAction, TagEvent, Template};
use crate::view::{PromptItem, RenderedView, VersionView};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn version_created(verb: &str, v: &PromptVersion, tags: &[String]) -> String {
    let mut line = format!("{verb} {} v{} (id {})", v.prompt, v.seq, v.id);
    if !tags.is_empty() {
        line.push_str(&format!(", tagged {}", tags.join(", ")));
    }
    line
}

pub fn version_json<'a>(
    v: &'a PromptVersion,
    tags: &'a [String],
    variables: &'a [String],
) -> VersionView<'a> {
    VersionView {
        version: v,
        tags,
        variables,
    }
}

pub fn version_text(v: &PromptVersion, tags: &[String], variables: &[String]) -> String {
    let json_or_dash = |map: &crate::model::JsonObject| {
        if map.is_empty() {
            "-".to_string()
        } else {
            Value::Object(map.clone()).to_string()
        }
    };
    let rows = [
        ("prompt", format!("{} v{}", v.prompt, v.seq)),
        ("id", v.id.clone()),
        ("tags", or_dash(Some(&tags.join(", ")))),
        (
            "created",
            format!("{} by {}", short_time(&v.created_at), v.author),
        ),
        ("message", or_dash(v.message.as_deref())),
        ("description", or_dash(v.description.as_deref())),
        ("model", or_dash(v.model.as_deref())),
        ("params", json_or_dash(&v.params)),
        ("metadata", json_or_dash(&v.metadata)),
        ("format", format!("{} ({})", v.format, v.template_type)),
        ("variables", or_dash(Some(&variables.join(", ")))),
        ("hash", v.content_hash.clone()),
    ];
    let mut text = String::new();
    for (label, value) in rows {
        text.push_str(&format!("{label:<12} {value}\n"));
    }
    text.push('\n');
    text.push_str(&template_text(&v.template));
    text
}

pub fn prompts_json(prompts: &[(Prompt, PromptVersion)]) -> Vec<PromptItem<'_>> {
    prompts
        .iter()
        .map(|(p, latest)| PromptItem::new(p, latest))
        .collect()
}

pub fn prompts_table(prompts: &[(Prompt, PromptVersion)]) -> String {
    if prompts.is_empty() {
        return "no prompts".into();
    }
    table(
        &[
            "NAME",
            "LATEST",
            "VERSIONS",
            "TAGS",
            "UPDATED",
            "DESCRIPTION",
        ],
        prompts
            .iter()
            .map(|(p, _)| {
                vec![
                    p.name.clone(),
                    format!("v{}", p.latest_seq),
                    p.version_count.to_string(),
                    or_dash(Some(&p.tags.join(", "))),
                    short_time(&p.updated_at),
                    excerpt(p.description.as_deref().unwrap_or("-"), 50),
                ]
            })
            .collect(),
    )
}

pub fn versions_json(versions: &[PromptVersion], tags: &BTreeMap<String, Vec<String>>) -> Value {
    Value::Array(
        versions
            .iter()
            .map(|v| {
                let mut value = serde_json::to_value(v).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut value {
                    map.insert(
                        "tags".into(),
                        json!(tags.get(&v.id).cloned().unwrap_or_default()),
                    );
                }
                value
            })
            .collect(),
    )
}

pub fn versions_table(versions: &[PromptVersion], tags: &BTreeMap<String, Vec<String>>) -> String {
    table(
        &["VERSION", "ID", "CREATED", "AUTHOR", "MESSAGE", "TAGS"],
        versions
            .iter()
            .map(|v| {
                vec![
                    format!("v{}", v.seq),
                    v.id.clone(),
                    short_time(&v.created_at),
                    v.author.clone(),
                    excerpt(v.message.as_deref().unwrap_or("-"), 50),
                    or_dash(tags.get(&v.id).map(|t| t.join(", ")).as_deref()),
                ]
            })
            .collect(),
    )
}

pub fn tags_table(tags: &[Tag]) -> String {
    if tags.is_empty() {
        return "no tags".into();
    }
    table(
        &["TAG", "VERSION", "VERSION ID", "MOVED AT", "BY"],
        tags.iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    format!("v{}", t.version_seq),
                    t.version_id.clone(),
                    short_time(&t.updated_at),
                    t.updated_by.clone(),
                ]
            })
            .collect(),
    )
}

fn seq_label(seq: Option<i64>) -> String {
    seq.map(|s| format!("v{s}")).unwrap_or_else(|| "-".into())
}

pub fn tag_event_line(e: &TagEvent) -> String {
    let what = match e.action {
        TagAction::Set => format!("set to {}", seq_label(e.to_seq)),
        TagAction::Delete => format!("deleted (was {})", seq_label(e.from_seq)),
        action => format!(
            "{} {} → {}",
            match action {
                TagAction::Move => "moved",
                TagAction::Rollback => "rolled back",
                _ => "promoted",
            },
            seq_label(e.from_seq),
            seq_label(e.to_seq)
        ),
    };
    format!("{} {} {what}", e.prompt, e.tag)
}

pub fn history_table(events: &[TagEvent]) -> String {
    if events.is_empty() {
        return "no tag history".into();
    }
    table(
        &["AT", "TAG", "ACTION", "FROM", "TO", "BY", "MESSAGE"],
        events
            .iter()
            .map(|e| {
                vec![
                    short_time(&e.at),
                    e.tag.clone(),
                    if e.forced {
                        format!("{} (forced)", e.action)
                    } else if e.deploy {
                        format!("{} (deploy)", e.action)
                    } else {
                        e.action.to_string()
                    },
                    seq_label(e.from_seq),
                    seq_label(e.to_seq),
                    e.actor.clone(),
                    excerpt(e.message.as_deref().unwrap_or("-"), 60),
                ]
            })
            .collect(),
    )
}

pub fn rendered_json<'a>(v: &'a PromptVersion, messages: &'a [Message]) -> RenderedView<'a> {
    RenderedView {
        prompt: &v.prompt,
        version: v.seq,
        version_id: &v.id,
        model: v.model.as_deref(),
        params: &v.params,
        messages,
    }
}

/// A string template renders to its text alone, ready to pipe; a chat to `[role]` blocks.
pub fn rendered_text(v: &PromptVersion, messages: &[Message]) -> String {
    match (&v.template, messages) {
        (Template::Str(_), [only]) => only.content.clone(),
        _ => messages_text(messages),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JsonObject, TemplateFormat, TemplateType};
    use crate::report::VersionDiff;

    fn version(seq: i64, text: &str, temperature: f64) -> PromptVersion {
        let mut params = JsonObject::new();
        params.insert("temperature".into(), json!(temperature));
        PromptVersion {
            id: format!("id-{seq}"),
            prompt: "greeting".into(),
            seq,
            template_type: TemplateType::Str,
            format: TemplateFormat::Mustache,
            template: Template::Str(text.into()),
            model: Some("gpt-4".into()),
            provider: None,
            params,
            metadata: JsonObject::new(),
            description: None,
            message: Some(format!("message {seq}")),
            author: "ada".into(),
            content_hash: format!("hash-{seq}"),
            created_at: format!("2026-11-24T07:3{seq}:00.000Z"),
        }
    }

    #[test]
    fn versions_table_snapshot() {
        let versions = vec![version(2, "b", 0.2), version(1, "a", 0.7)];
        let mut tags = BTreeMap::new();
        tags.insert("id-1".to_string(), vec!["production".to_string()]);
        tags.insert(
            "id-2".to_string(),
            vec!["staging".to_string(), "x".to_string()],
        );
        insta::assert_snapshot!(versions_table(&versions, &tags));
    }

    #[test]
    fn diff_snapshot() {
        let a = version(1, "Hello {{name}}.\nBe brief.\n", 0.7);
        let b = version(2, "Hello {{name}}!\nBe brief.\n", 0.2);
        insta::assert_snapshot!(VersionDiff::between(&a, &b).text());
        assert!(
            VersionDiff::between(&a, &a)
                .text()
                .contains("no differences")
        );
    }

    #[test]
    fn history_table_snapshot() {
        let event = |id, action, from: Option<i64>, to: Option<i64>| TagEvent {
            id,
            prompt: "greeting".into(),
            tag: "production".into(),
            action,
            from_version_id: from.map(|s| format!("id-{s}")),
            from_seq: from,
            to_version_id: to.map(|s| format!("id-{s}")),
            to_seq: to,
            actor: "ada".into(),
            message: Some("why".into()),
            at: format!("2026-11-24T08:0{id}:00.000Z"),
            forced: false,
            deploy: false,
            evidence: None,
        };
        let events = vec![
            event(1, TagAction::Set, None, Some(1)),
            event(2, TagAction::Move, Some(1), Some(2)),
            event(3, TagAction::Rollback, Some(2), Some(1)),
            event(4, TagAction::Delete, Some(1), None),
        ];
        insta::assert_snapshot!(history_table(&events));
        let lines: Vec<String> = events.iter().map(tag_event_line).collect();
        assert_eq!(
            lines,
            vec![
                "greeting production set to v1",
                "greeting production moved v1 → v2",
                "greeting production rolled back v2 → v1",
                "greeting production deleted (was v1)",
            ]
        );
    }
}
