//! Renderers for `runner sync`: the text a person reads in a terminal or a CI log, and the
//! Markdown a pull request shows as a comment. Both list the same changes. Pure: they must not read
//! the store or the prompt files, print or write files, or decide what a sync changes (that is
//! `workflow::sync`'s).

use super::template_text;
use crate::workflow::sync::{Action, Entry, ProtectedTag, SyncReport, TagMove};
use serde_json::Value;

fn seq(version: Option<i64>) -> String {
    version.map_or_else(|| "(none)".into(), |v| format!("v{v}"))
}

fn tag_line(m: &TagMove) -> String {
    match m.from_version {
        Some(from) => format!("tag {}: v{from} → v{}", m.tag, m.to_version),
        None => format!("tag {}: set on v{}", m.tag, m.to_version),
    }
}

fn protected_line(p: &ProtectedTag, version: i64) -> String {
    format!(
        "{} stays at v{} (the file is v{version}): a protected tag moves through `runner promote`, never by sync",
        p.tag, p.version
    )
}

fn shown(value: &Option<Value>) -> String {
    match value {
        None => "(none)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// What happens to one prompt, in a few words.
fn headline(e: &Entry, check: bool) -> String {
    let line = action_words(e, check);
    match (e.restored, check) {
        (false, _) => line,
        (true, true) => format!("{line}; archived: to be restored"),
        (true, false) => format!("{line}; restored from the archive"),
    }
}

fn action_words(e: &Entry, check: bool) -> String {
    let fields = if e.changed.is_empty() {
        String::new()
    } else {
        format!(": {}", e.changed.join(", "))
    };
    match (e.action, check) {
        (Action::Create, true) => format!("new prompt {} (v1)", e.name),
        (Action::Create, false) => format!("created {} v{}", e.name, e.version),
        (Action::Append, true) => format!(
            "new version of {} ({} → v{}){fields}",
            e.name,
            seq(e.from_version),
            e.version
        ),
        (Action::Append, false) => format!(
            "appended {} v{} (was {}){fields}",
            e.name,
            e.version,
            seq(e.from_version)
        ),
        (Action::Unchanged, _) => format!("{} in sync (v{})", e.name, e.version),
    }
}

/// The summary line.
fn totals(r: &SyncReport) -> String {
    let c = &r.counts;
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if r.check {
        if r.in_sync {
            return format!(
                "in sync: {} {} the store",
                plural(c.files, "prompt file", "prompt files"),
                if c.files == 1 { "matches" } else { "match" }
            );
        }
        let mut parts = Vec::new();
        if c.created > 0 {
            parts.push(plural(c.created, "new prompt", "new prompts"));
        }
        if c.appended > 0 {
            parts.push(plural(c.appended, "new version", "new versions"));
        }
        if c.tags_set > 0 {
            parts.push(plural(c.tags_set, "tag to set", "tags to set"));
        }
        if c.restored > 0 {
            parts.push(plural(
                c.restored,
                "prompt to restore",
                "prompts to restore",
            ));
        }
        if c.archived > 0 {
            parts.push(plural(
                c.archived,
                "prompt to archive",
                "prompts to archive",
            ));
        }
        format!(
            "the store differs from {}: {} (`runner sync {}` writes them)",
            r.dir,
            parts.join(", "),
            r.dir
        )
    } else {
        let mut line = format!(
            "synced {}: {} created, {} appended, {} unchanged; {} set",
            plural(c.files, "prompt file", "prompt files"),
            c.created,
            c.appended,
            c.unchanged,
            plural(c.tags_set, "tag", "tags")
        );
        if c.restored > 0 {
            line.push_str(&format!("; {} restored", c.restored));
        }
        if c.archived > 0 {
            line.push_str(&format!("; {} archived", c.archived));
        }
        line
    }
}

/// The report as text: one line per file, then its diff (for a check), tags and notes.
pub fn sync_text(r: &SyncReport) -> String {
    let mut out = String::new();
    if r.prompts.is_empty() {
        out.push_str(&format!("no prompt files in {}\n", r.dir));
    }
    for e in &r.prompts {
        out.push_str(&format!("{}: {}\n", e.file, headline(e, r.check)));
        if r.check
            && let Some(diff) = &e.diff
        {
            if diff.template_changed {
                for line in diff.template_diff.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
            for change in &diff.changes {
                out.push_str(&format!(
                    "  {}: {} → {}\n",
                    change.field,
                    shown(&change.from),
                    shown(&change.to)
                ));
            }
        }
        for m in &e.tags {
            out.push_str(&format!("  {}\n", tag_line(m)));
        }
        for p in &e.protected {
            out.push_str(&format!("  {}\n", protected_line(p, e.version)));
        }
    }
    if !r.untracked.is_empty() {
        out.push_str(&format!(
            "in the store without a file, left alone: {}\n",
            crate::template::list_names(&r.untracked)
        ));
    }
    if !r.archived.is_empty() {
        out.push_str(&format!(
            "{} (no file): {}\n",
            if r.check { "to archive" } else { "archived" },
            crate::template::list_names(&r.archived)
        ));
    }
    out.push_str(&totals(r));
    out.push('\n');
    out
}

/// Inline code that holds any text: a backtick run in the text gets a longer fence.
fn code(text: &str) -> String {
    let text = text.replace('\n', "⏎");
    let longest = longest_run(&text, '`');
    let fence = "`".repeat(longest + 1);
    if longest > 0 || text.starts_with(' ') || text.ends_with(' ') {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
    .replace('|', "\\|")
}

fn longest_run(text: &str, c: char) -> usize {
    let (mut longest, mut run) = (0, 0);
    for ch in text.chars() {
        run = if ch == c { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// A fenced block that no line of `text` can close early.
fn block(lang: &str, text: &str) -> String {
    let fence = "`".repeat(longest_run(text, '`').max(2) + 1);
    let mut out = format!("{fence}{lang}\n{text}");
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

fn markdown_change(e: &Entry) -> String {
    let change = match e.action {
        Action::Create => "new prompt (v1)".into(),
        Action::Append => format!(
            "new version v{} (latest is {})",
            e.version,
            seq(e.from_version)
        ),
        Action::Unchanged => format!("in sync (v{})", e.version),
    };
    if e.restored {
        format!("{change}; restored from the archive")
    } else {
        change
    }
}

fn markdown_tags(e: &Entry) -> String {
    if e.tags.is_empty() {
        return "–".into();
    }
    e.tags
        .iter()
        .map(|m| match m.from_version {
            Some(from) => format!("{} v{from} → v{}", code(&m.tag), m.to_version),
            None => format!("{} → v{}", code(&m.tag), m.to_version),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as a pull-request comment: a table of the changes, then each one's diff.
pub fn sync_markdown(r: &SyncReport) -> String {
    let mut out = String::new();
    if r.in_sync {
        out.push_str(&format!(
            "### Prompts: {} in sync with the store\n\n",
            code(&r.dir)
        ));
    } else {
        out.push_str(&format!(
            "### Prompts: {} differs from the store\n\n",
            code(&r.dir)
        ));
    }
    let summary = totals(r);
    let mut chars = summary.chars();
    let first = chars.next().map(|c| c.to_uppercase().to_string());
    out.push_str(&format!(
        "{}{}.\n\n",
        first.unwrap_or_default(),
        chars.as_str()
    ));
    let changed: Vec<&Entry> = r
        .prompts
        .iter()
        .filter(|e| e.action != Action::Unchanged || !e.tags.is_empty() || e.restored)
        .collect();
    if !changed.is_empty() {
        out.push_str("| prompt | file | change | tags to set |\n|---|---|---|---|\n");
        for e in &changed {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                code(&e.name),
                code(&e.file),
                markdown_change(e),
                markdown_tags(e)
            ));
        }
        out.push('\n');
    }
    for e in &changed {
        match e.action {
            Action::Create => {
                out.push_str(&format!("#### {}: new prompt\n\n", code(&e.name)));
                if let Some(v) = &e.created {
                    let mut facts = vec![format!("format {}", code(v.format.as_str()))];
                    if let Some(model) = &v.model {
                        facts.push(format!("model {}", code(model)));
                    }
                    if !v.params.is_empty() {
                        facts.push(format!(
                            "params {}",
                            code(&Value::Object(v.params.clone()).to_string())
                        ));
                    }
                    if !v.metadata.is_empty() {
                        facts.push(format!(
                            "metadata {}",
                            code(&Value::Object(v.metadata.clone()).to_string())
                        ));
                    }
                    out.push_str(&format!("{}\n\n", facts.join(", ")));
                    out.push_str(&block("text", &template_text(&v.template)));
                    out.push('\n');
                }
            }
            Action::Append => {
                out.push_str(&format!(
                    "#### {}: {} → v{}\n\n",
                    code(&e.name),
                    seq(e.from_version),
                    e.version
                ));
                if let Some(diff) = &e.diff {
                    if diff.template_changed {
                        out.push_str(&block("diff", &diff.template_diff));
                        out.push('\n');
                    }
                    if !diff.changes.is_empty() {
                        out.push_str(&format!(
                            "| field | {} (store) | v{} (file) |\n|---|---|---|\n",
                            seq(e.from_version),
                            e.version
                        ));
                        for c in &diff.changes {
                            let cell = |v: &Option<Value>| match v {
                                None => "–".to_string(),
                                Some(Value::String(s)) => code(s),
                                Some(other) => code(&other.to_string()),
                            };
                            out.push_str(&format!(
                                "| {} | {} | {} |\n",
                                code(&c.field),
                                cell(&c.from),
                                cell(&c.to)
                            ));
                        }
                        out.push('\n');
                    }
                }
            }
            Action::Unchanged => {}
        }
    }
    let notes: Vec<String> = r
        .prompts
        .iter()
        .flat_map(|e| {
            e.protected.iter().map(move |p| {
                format!(
                    "- {} of {} stays at v{} (the file is v{}): a protected tag moves through \
                     `runner promote`, never by sync.",
                    code(&p.tag),
                    code(&e.name),
                    p.version,
                    e.version
                )
            })
        })
        .collect();
    if !notes.is_empty() {
        out.push_str(&notes.join("\n"));
        out.push_str("\n\n");
    }
    if !r.untracked.is_empty() {
        let names: Vec<String> = r.untracked.iter().map(|n| code(n)).collect();
        out.push_str(&format!(
            "In the store without a file, left alone: {}.\n\n",
            names.join(", ")
        ));
    }
    if !r.archived.is_empty() {
        let names: Vec<String> = r.archived.iter().map(|n| code(n)).collect();
        out.push_str(&format!(
            "{} (no file): {}.\n\n",
            if r.check { "To archive" } else { "Archived" },
            names.join(", ")
        ));
    }
    out.push_str(&format!("<sub>Store: {}</sub>\n", code(&r.store)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JsonObject, PromptVersion, Template, TemplateFormat};
    use crate::report::VersionDiff;
    use crate::workflow::sync::Counts;
    use serde_json::json;

    fn version(seq: i64, text: &str, temperature: f64) -> PromptVersion {
        let mut params = JsonObject::new();
        params.insert("temperature".into(), json!(temperature));
        PromptVersion {
            id: format!("id-{seq}"),
            prompt: "support_greeting".into(),
            seq,
            template_type: crate::model::TemplateType::Str,
            format: TemplateFormat::Mustache,
            template: Template::Str(text.into()),
            model: Some("gpt-4o-mini".into()),
            provider: None,
            params,
            metadata: JsonObject::new(),
            description: None,
            message: None,
            author: "tester".into(),
            content_hash: String::new(),
            created_at: String::new(),
        }
    }

    fn report(check: bool) -> SyncReport {
        let old = version(2, "Hello {{name}}.\nHow can I help?\n", 0.7);
        let new = version(3, "Hello {{name}}!\nHow can I help? ```\n", 0.2);
        let diff = VersionDiff::between(&old, &new);
        let appended = Entry {
            name: "support_greeting".into(),
            file: "prompts/support_greeting.yaml".into(),
            action: Action::Append,
            from_version: Some(2),
            version: 3,
            version_id: None,
            message: Some("Friendlier".into()),
            changed: vec!["template".into(), "params.temperature".into()],
            diff: Some(diff),
            restored: false,
            created: None,
            tags: vec![TagMove {
                tag: "staging".into(),
                from_version: Some(2),
                to_version: 3,
            }],
            protected: vec![ProtectedTag {
                tag: "production".into(),
                version: 2,
            }],
        };
        let created = Entry {
            name: "triage".into(),
            file: "prompts/triage.json".into(),
            action: Action::Create,
            from_version: None,
            version: 1,
            version_id: None,
            message: None,
            changed: vec![],
            diff: None,
            restored: false,
            created: Some(version(1, "Sort {{ticket}} | urgent or not", 0.0)),
            tags: vec![TagMove {
                tag: "staging".into(),
                from_version: None,
                to_version: 1,
            }],
            protected: vec![],
        };
        let same = Entry {
            name: "billing".into(),
            file: "prompts/billing.toml".into(),
            action: Action::Unchanged,
            from_version: Some(4),
            version: 4,
            version_id: Some("id-4".into()),
            message: None,
            changed: vec![],
            diff: None,
            restored: false,
            created: None,
            tags: vec![],
            protected: vec![],
        };
        SyncReport {
            dir: "prompts/".into(),
            store: "postgres://runner@db.internal:5432/prompts".into(),
            check,
            in_sync: false,
            prompts: vec![same, appended, created],
            untracked: vec!["legacy".into()],
            archived: vec![],
            counts: Counts {
                files: 3,
                created: 1,
                appended: 1,
                unchanged: 1,
                tags_set: 2,
                protected_left: 1,
                ..Counts::default()
            },
        }
    }

    #[test]
    fn sync_check_text_snapshot() {
        insta::assert_snapshot!(sync_text(&report(true)));
    }

    #[test]
    fn sync_text_snapshot() {
        insta::assert_snapshot!(sync_text(&report(false)));
    }

    #[test]
    fn sync_markdown_snapshot() {
        insta::assert_snapshot!(sync_markdown(&report(true)));
    }

    #[test]
    fn in_sync_markdown_says_so() {
        let mut r = report(true);
        r.prompts.retain(|e| e.action == Action::Unchanged);
        r.prompts[0].protected.clear();
        r.in_sync = true;
        r.counts = Counts {
            files: 1,
            unchanged: 1,
            ..Counts::default()
        };
        r.untracked.clear();
        let md = sync_markdown(&r);
        assert!(
            md.starts_with("### Prompts: `prompts/` in sync with the store"),
            "{md}"
        );
        assert!(
            md.contains("In sync: 1 prompt file matches the store."),
            "{md}"
        );
        assert!(!md.contains("| prompt |"), "{md}");
    }

    #[test]
    fn code_spans_hold_backticks_and_pipes() {
        assert_eq!(code("a"), "`a`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(block("diff", "```\nx"), "````diff\n```\nx\n````\n");
    }
}
