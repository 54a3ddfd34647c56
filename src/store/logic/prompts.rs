//! Prompts, versions, tags and their history, once for both backends. It names no driver and holds
//! no dialect's own SQL (the row lock's text is asked of `sql::Dialect`), and it must not read the
//! project's tag policy: each `TagChange` carries it.
//!
//! Every write first takes the prompt's row (`lock_prompt`: `FOR UPDATE` on PostgreSQL; the
//! IMMEDIATE transaction already holds SQLite's file), so writers queue per prompt: version
//! numbers follow each other without gaps, and a tag's expected position and the tag policy
//! are checked where nobody can move the tag in between.

use super::Backend;
use super::lifecycle::{archive, import_archives, record_prompt_event, set_archived};
use crate::model::{
    Message, NewVersion, Prompt, PromptArchive, PromptUpdate, PromptVersion, Tag, TagAction,
    TagEvent, Template, TemplateFormat, TemplateType, VersionRef, content_hash, now,
};
use crate::store::sql::{Db, Row, all, args, corrupt, first, json, one};
use crate::store::{Allowed, BuildVersion, PromptStore, Result, StoreError, TagChange, TagOutcome};

pub(super) const VERSION_COLUMNS: &str = "v.id, p.name, v.seq, v.template_type, v.format, v.template, \
     v.model, v.params, v.metadata, v.description, v.message, v.author, v.content_hash, \
     v.created_at, v.provider";

pub(super) const TAG_COLUMNS: &str =
    "p.name, t.name, t.version_id, v.seq, t.updated_at, t.updated_by";

pub(super) const TAG_JOINS: &str = "FROM tags t JOIN prompts p ON p.id = t.prompt_id \
     JOIN prompt_versions v ON v.id = t.version_id";

pub(super) const EVENT_COLUMNS: &str = "e.id, p.name, e.tag, e.action, e.from_version_id, fv.seq, \
     e.to_version_id, tv.seq, e.actor, e.message, e.at, e.forced, e.evidence, e.deploy";

pub(super) const EVENT_JOINS: &str = "FROM tag_events e JOIN prompts p ON p.id = e.prompt_id \
     LEFT JOIN prompt_versions fv ON fv.id = e.from_version_id \
     LEFT JOIN prompt_versions tv ON tv.id = e.to_version_id";

/// A tag row plus the message of the latest change of that tag.
const TAG_WITH_MESSAGE: &str = "SELECT p.name, t.name, t.version_id, v.seq, t.updated_at, \
     t.updated_by, (SELECT e.message FROM tag_events e WHERE e.prompt_id = t.prompt_id \
     AND e.tag = t.name ORDER BY e.id DESC LIMIT 1) \
     FROM tags t JOIN prompts p ON p.id = t.prompt_id \
     JOIN prompt_versions v ON v.id = t.version_id";

/// When a tag was created: its newest event that brought it into being (a set, or a rollback
/// of a deletion), so a tag deleted and set again counts as new.
const TAG_CREATED: &str = "(SELECT MAX(c.id) FROM tag_events c \
     WHERE c.prompt_id = t.prompt_id AND c.tag = t.name AND c.from_version_id IS NULL)";

/// The latest version of each prompt in use, with what a prompt row adds after its columns.
fn prompt_select(db: &dyn Db) -> String {
    let tags = db.dialect().tag_names();
    format!(
        "SELECT {VERSION_COLUMNS}, p.created_at, \
         (SELECT COUNT(*) FROM prompt_versions c WHERE c.prompt_id = p.id), \
         {tags}, p.description, p.metadata \
         FROM prompts p JOIN prompt_versions v ON v.prompt_id = p.id \
         WHERE v.seq = (SELECT MAX(seq) FROM prompt_versions m WHERE m.prompt_id = p.id) \
         AND p.archived_at IS NULL"
    )
}

impl<B: Backend> PromptStore for B {
    fn create_prompt(
        &self,
        name: &str,
        version: NewVersion,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion> {
        self.write_routing(|db| {
            let now = now();
            // A concurrent creator of the same name makes this wait for its commit, then
            // insert nothing.
            let pid = first(
                db,
                "INSERT INTO prompts (name, created_at, description) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING RETURNING id",
                args![name, now.as_str(), &version.description],
                |r| r.int(0),
            )?;
            let Some(pid) = pid else {
                return Err(match any_prompt(db, name)? {
                    Some((_, true)) => StoreError::PromptArchived { name: name.into() },
                    _ => StoreError::PromptExists { name: name.into() },
                });
            };
            let created = insert_version(db, pid, name, 1, version, &now)?;
            for tag in tags {
                write_tag(db, pid, name, tag, Some(&created.id), change)?;
            }
            Ok(created)
        })
    }

    fn append_version_with(
        &self,
        name: &str,
        build: &mut BuildVersion<'_>,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion> {
        self.write_routing(|db| {
            let pid = lock_prompt(db, name)?;
            let latest = resolve(db, pid, name, &VersionRef::Latest)?;
            let version = build(&latest)?;
            let created = insert_version(db, pid, name, latest.seq + 1, version, &now())?;
            for tag in tags {
                write_tag(db, pid, name, tag, Some(&created.id), change)?;
            }
            Ok(created)
        })
    }

    fn version(&self, name: &str, reference: &VersionRef) -> Result<PromptVersion> {
        self.read(|db| {
            let pid = require_prompt(db, name)?;
            resolve(db, pid, name, reference)
        })
    }

    fn version_by_id(&self, id: &str) -> Result<Option<PromptVersion>> {
        self.read(|db| {
            first(
                db,
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
                     JOIN prompts p ON p.id = v.prompt_id \
                     WHERE v.id = $1 AND p.archived_at IS NULL"
                ),
                args![id],
                version_from_row,
            )
        })
    }

    fn versions(&self, name: &str) -> Result<Vec<PromptVersion>> {
        self.read(|db| {
            let pid = require_prompt(db, name)?;
            all(
                db,
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
                     JOIN prompts p ON p.id = v.prompt_id WHERE v.prompt_id = $1 \
                     ORDER BY v.seq DESC"
                ),
                args![pid],
                version_from_row,
            )
        })
    }

    fn prompts_page(
        &self,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Prompt, PromptVersion)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|db| {
            let select = prompt_select(db);
            all(
                db,
                &format!(
                    "{select} AND (CAST($1 AS TEXT) IS NULL \
                     OR p.id <= (SELECT id FROM prompts WHERE name = CAST($1 AS TEXT))) \
                     ORDER BY p.id DESC LIMIT $2"
                ),
                args![from, limit],
                prompt_from_row,
            )
        })
    }

    fn tags(&self, name: &str) -> Result<Vec<Tag>> {
        self.read(|db| {
            let pid = require_prompt(db, name)?;
            all(
                db,
                &format!("SELECT {TAG_COLUMNS} {TAG_JOINS} WHERE t.prompt_id = $1 ORDER BY t.name"),
                args![pid],
                tag_from_row,
            )
        })
    }

    fn tag(&self, name: &str, tag: &str) -> Result<Option<Tag>> {
        self.read(|db| {
            let pid = require_prompt(db, name)?;
            current_tag(db, pid, tag)
        })
    }

    fn tag_target(&self, name: &str, tag: &str) -> Result<(String, String)> {
        self.read(|db| {
            let found = first(
                db,
                "SELECT v.id, v.content_hash FROM prompts p \
                 JOIN tags t ON t.prompt_id = p.id AND t.name = $2 \
                 JOIN prompt_versions v ON v.id = t.version_id \
                 WHERE p.name = $1 AND p.archived_at IS NULL",
                args![name, tag],
                |r| Ok((r.text(0)?, r.text(1)?)),
            )?;
            match found {
                Some(target) => Ok(target),
                None => {
                    require_prompt(db, name)?;
                    Err(StoreError::UnknownTag {
                        prompt: name.into(),
                        tag: tag.into(),
                    })
                }
            }
        })
    }

    fn latest_target(&self, name: &str) -> Result<(String, String)> {
        self.read(|db| {
            first(
                db,
                "SELECT v.id, v.content_hash FROM prompts p \
                 JOIN prompt_versions v ON v.prompt_id = p.id \
                 WHERE p.name = $1 AND p.archived_at IS NULL \
                 ORDER BY v.seq DESC LIMIT 1",
                args![name],
                |r| Ok((r.text(0)?, r.text(1)?)),
            )?
            .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
        })
    }

    fn version_tags(&self, version_id: &str) -> Result<Vec<(Tag, Option<String>)>> {
        self.read(|db| {
            all(
                db,
                &format!(
                    "{TAG_WITH_MESSAGE} WHERE t.version_id = $1 \
                     ORDER BY {TAG_CREATED} DESC NULLS LAST, t.name"
                ),
                args![version_id],
                |row| Ok((tag_from_row(row)?, row.opt_text(6)?)),
            )
        })
    }

    fn prompt_tags(&self, name: &str) -> Result<Vec<(Tag, Option<String>)>> {
        self.read(|db| {
            let pid = require_prompt(db, name)?;
            all(
                db,
                &format!("{TAG_WITH_MESSAGE} WHERE t.prompt_id = $1 ORDER BY t.name"),
                args![pid],
                |row| Ok((tag_from_row(row)?, row.opt_text(6)?)),
            )
        })
    }

    fn set_tag(
        &self,
        name: &str,
        tag: &str,
        target: &VersionRef,
        change: &TagChange,
    ) -> Result<TagOutcome> {
        self.write_routing(|db| {
            let pid = lock_prompt(db, name)?;
            let version = resolve(db, pid, name, target)?;
            if let Some(current) = current_tag(db, pid, tag)?
                && current.version_id == version.id
                && change.expect.holds(Some(&current.version_id))
            {
                return Ok(TagOutcome::Unchanged(current));
            }
            let event = write_tag(db, pid, name, tag, Some(&version.id), change)?;
            Ok(TagOutcome::Changed(event))
        })
    }

    fn delete_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent> {
        self.write_routing(|db| {
            let pid = lock_prompt(db, name)?;
            if current_tag(db, pid, tag)?.is_none() {
                return Err(StoreError::UnknownTag {
                    prompt: name.into(),
                    tag: tag.into(),
                });
            }
            let change = TagChange {
                action: Some(TagAction::Delete),
                ..change.clone()
            };
            write_tag(db, pid, name, tag, None, &change)
        })
    }

    fn rollback_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent> {
        self.write_routing(|db| {
            let pid = lock_prompt(db, name)?;
            let last = first(
                db,
                "SELECT from_version_id FROM tag_events WHERE prompt_id = $1 AND tag = $2 \
                 ORDER BY id DESC LIMIT 1",
                args![pid, tag],
                |r| r.opt_text(0),
            )?;
            let previous = match last {
                None => {
                    return Err(StoreError::UnknownTag {
                        prompt: name.into(),
                        tag: tag.into(),
                    });
                }
                Some(None) => {
                    return Err(StoreError::NothingToRollBack {
                        prompt: name.into(),
                        tag: tag.into(),
                    });
                }
                Some(Some(id)) => id,
            };
            let change = TagChange {
                action: Some(TagAction::Rollback),
                ..change.clone()
            };
            let event = write_tag(db, pid, name, tag, Some(&previous), &change)?;
            // A rollout of this tag ends with the rollback: its candidate is withdrawn.
            super::rollouts::stop_on_rollback(db, pid, name, tag, &change)?;
            Ok(event)
        })
    }

    fn history(&self, name: &str, tag: Option<&str>) -> Result<Vec<TagEvent>> {
        self.read(|db| {
            let pid = require_prompt(db, name)?;
            all(
                db,
                &format!(
                    "SELECT {EVENT_COLUMNS} {EVENT_JOINS} WHERE e.prompt_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR e.tag = CAST($2 AS TEXT)) ORDER BY e.id"
                ),
                args![pid, tag],
                event_from_row,
            )
        })
    }

    fn archive(&self, name: &str) -> Result<PromptArchive> {
        self.read(|db| archive(db, name))
    }

    fn import(&self, archives: &[PromptArchive]) -> Result<()> {
        self.write_routing(|db| import_archives(db, archives, false))
    }

    fn restore(&self, archives: &[PromptArchive]) -> Result<()> {
        self.write_routing(|db| import_archives(db, archives, true))
    }

    fn prompt(&self, name: &str) -> Result<(Prompt, PromptVersion)> {
        self.read(|db| {
            let select = prompt_select(db);
            first(
                db,
                &format!("{select} AND p.name = $1"),
                args![name],
                prompt_from_row,
            )?
            .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
        })
    }

    fn update_prompt(&self, name: &str, update: &PromptUpdate, actor: &str) -> Result<()> {
        self.write_routing(|db| {
            let pid = lock_prompt(db, name)?;
            if let Some(description) = &update.description {
                db.exec(
                    "UPDATE prompts SET description = $2 WHERE id = $1",
                    args![pid, description],
                )?;
            }
            if let Some(metadata) = &update.metadata {
                let text = serde_json::Value::Object(metadata.clone()).to_string();
                db.exec(
                    "UPDATE prompts SET metadata = $2 WHERE id = $1",
                    args![pid, &text],
                )?;
            }
            record_prompt_event(db, pid, "update", actor, Allowed::default())
        })
    }

    fn archive_prompt(&self, name: &str, change: &TagChange) -> Result<()> {
        self.write_routing(|db| set_archived(db, name, true, change))
    }

    fn restore_prompt(&self, name: &str, actor: &str) -> Result<()> {
        let change = TagChange::by(actor);
        self.write_routing(|db| set_archived(db, name, false, &change))
    }

    fn archived_prompts(&self) -> Result<Vec<String>> {
        self.read(|db| {
            all(
                db,
                "SELECT name FROM prompts WHERE archived_at IS NOT NULL ORDER BY name",
                &[],
                |r| r.text(0),
            )
        })
    }
}

/// The id of a prompt in use: an archived prompt is not found by name.
pub(crate) fn prompt_id(db: &dyn Db, name: &str) -> Result<Option<i64>> {
    first(
        db,
        "SELECT id FROM prompts WHERE name = $1 AND archived_at IS NULL",
        args![name],
        |r| r.int(0),
    )
}

pub(crate) fn require_prompt(db: &dyn Db, name: &str) -> Result<i64> {
    prompt_id(db, name)?.ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
}

/// The id of a prompt whether archived or not, and whether it is.
pub(super) fn any_prompt(db: &dyn Db, name: &str) -> Result<Option<(i64, bool)>> {
    first(
        db,
        "SELECT id, archived_at IS NOT NULL FROM prompts WHERE name = $1",
        args![name],
        |r| Ok((r.int(0)?, r.flag(1)?)),
    )
}

/// The prompt's id, its row locked until the transaction ends: every write to one prompt's
/// versions and tags queues here, on every machine.
pub(super) fn lock_prompt(db: &dyn Db, name: &str) -> Result<i64> {
    let lock = db.dialect().for_update();
    first(
        db,
        &format!("SELECT id FROM prompts WHERE name = $1 AND archived_at IS NULL{lock}"),
        args![name],
        |r| r.int(0),
    )?
    .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
}

pub(super) fn resolve(
    db: &dyn Db,
    pid: i64,
    name: &str,
    reference: &VersionRef,
) -> Result<PromptVersion> {
    let base = format!(
        "SELECT {VERSION_COLUMNS} FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id \
         WHERE v.prompt_id = $1"
    );
    let found = match reference {
        VersionRef::Latest => first(
            db,
            &format!("{base} ORDER BY v.seq DESC LIMIT 1"),
            args![pid],
            version_from_row,
        )?,
        VersionRef::Seq(seq) => first(
            db,
            &format!("{base} AND v.seq = $2"),
            args![pid, *seq],
            version_from_row,
        )?,
        VersionRef::Id(id) => first(
            db,
            &format!("{base} AND v.id = $2"),
            args![pid, id],
            version_from_row,
        )?,
        VersionRef::Tag(tag) => {
            let found = first(
                db,
                &format!(
                    "{base} AND v.id = (SELECT version_id FROM tags \
                     WHERE prompt_id = $1 AND name = $2)"
                ),
                args![pid, tag],
                version_from_row,
            )?;
            if found.is_none() {
                return Err(StoreError::UnknownTag {
                    prompt: name.into(),
                    tag: tag.clone(),
                });
            }
            found
        }
        VersionRef::Any(text) => {
            let attempts = if let Ok(seq) = text.parse::<i64>() {
                vec![VersionRef::Seq(seq)]
            } else {
                vec![VersionRef::Tag(text.clone()), VersionRef::Id(text.clone())]
            };
            for attempt in attempts {
                match resolve(db, pid, name, &attempt) {
                    Ok(v) => return Ok(v),
                    Err(StoreError::UnknownTag { .. } | StoreError::UnknownVersion { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            None
        }
    };
    found.ok_or_else(|| StoreError::UnknownVersion {
        prompt: name.into(),
        reference: match reference {
            VersionRef::Any(text) => format!("version, tag or version id '{text}'"),
            other => other.to_string(),
        },
    })
}

fn insert_version(
    db: &dyn Db,
    pid: i64,
    name: &str,
    seq: i64,
    new: NewVersion,
    now: &str,
) -> Result<PromptVersion> {
    let hash = content_hash(
        new.format,
        &new.template,
        new.model.as_deref(),
        &new.params,
        &new.metadata,
    );
    let version = PromptVersion {
        id: uuid::Uuid::now_v7().to_string(),
        prompt: name.into(),
        seq,
        template_type: new.template.kind(),
        format: new.format,
        template: new.template,
        model: new.model,
        provider: new.provider,
        params: new.params,
        metadata: new.metadata,
        description: new.description,
        message: new.message,
        author: new.author,
        content_hash: hash,
        created_at: now.into(),
    };
    insert_version_row(db, pid, &version)?;
    Ok(version)
}

pub(super) fn insert_version_row(db: &dyn Db, pid: i64, v: &PromptVersion) -> Result<()> {
    let template = match &v.template {
        Template::Str(text) => text.clone(),
        Template::Chat(messages) => serde_json::to_string(messages)
            .map_err(|e| StoreError::Corrupt(format!("chat template: {e}")))?,
    };
    let params = serde_json::Value::Object(v.params.clone()).to_string();
    let metadata = serde_json::Value::Object(v.metadata.clone()).to_string();
    db.exec(
        "INSERT INTO prompt_versions (id, prompt_id, seq, template_type, format, template, model, \
         params, metadata, description, message, author, content_hash, created_at, provider) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        args![
            &v.id,
            pid,
            v.seq,
            v.template_type.as_str(),
            v.format.as_str(),
            &template,
            &v.model,
            &params,
            &metadata,
            &v.description,
            &v.message,
            &v.author,
            &v.content_hash,
            &v.created_at,
            &v.provider,
        ],
    )?;
    Ok(())
}

pub(super) fn current_tag(db: &dyn Db, pid: i64, tag: &str) -> Result<Option<Tag>> {
    first(
        db,
        &format!("SELECT {TAG_COLUMNS} {TAG_JOINS} WHERE t.prompt_id = $1 AND t.name = $2"),
        args![pid, tag],
        tag_from_row,
    )
}

/// The one path every tag change takes: check the expectation and the tag policy, update the
/// tag row and append its history entry, inside the caller's transaction, which holds the
/// prompt's row. `to` None deletes the tag. Without an explicit action the change is a `set`
/// (new tag) or a `move`.
pub(super) fn write_tag(
    db: &dyn Db,
    pid: i64,
    name: &str,
    tag: &str,
    to: Option<&str>,
    change: &TagChange,
) -> Result<TagEvent> {
    let from = first(
        db,
        "SELECT version_id FROM tags WHERE prompt_id = $1 AND name = $2",
        args![pid, tag],
        |r| r.text(0),
    )?;
    if !change.expect.holds(from.as_deref()) {
        return Err(StoreError::TagMoved {
            prompt: name.into(),
            tag: tag.into(),
        });
    }
    let action = change.action.unwrap_or(if from.is_some() {
        TagAction::Move
    } else {
        TagAction::Set
    });
    let allowed = change.policy.check(
        name,
        tag,
        from.as_deref(),
        action,
        change.force,
        change.role,
    )?;
    let now = now();
    match to {
        Some(version_id) => {
            db.exec(
                "INSERT INTO tags (prompt_id, name, version_id, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (prompt_id, name) DO UPDATE SET version_id = excluded.version_id, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                args![pid, tag, version_id, now.as_str(), &change.actor],
            )?;
        }
        None => {
            db.exec(
                "DELETE FROM tags WHERE prompt_id = $1 AND name = $2",
                args![pid, tag],
            )?;
        }
    }
    let evidence = change.evidence.as_ref().map(|v| v.to_string());
    let id = one(
        db,
        "INSERT INTO tag_events (prompt_id, tag, action, from_version_id, to_version_id, actor, \
         message, at, forced, evidence, deploy) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        args![
            pid,
            tag,
            action.as_str(),
            &from,
            to,
            &change.actor,
            &change.message,
            now.as_str(),
            allowed.forced,
            &evidence,
            allowed.deploy,
        ],
        |r| r.int(0),
    )?;
    one(
        db,
        &format!("SELECT {EVENT_COLUMNS} {EVENT_JOINS} WHERE e.id = $1"),
        args![id],
        event_from_row,
    )
}

fn prompt_from_row(row: &dyn Row) -> Result<(Prompt, PromptVersion)> {
    let latest = version_from_row(row)?;
    let tags = row.opt_text(17)?;
    let prompt = Prompt {
        name: latest.prompt.clone(),
        created_at: row.text(15)?,
        updated_at: latest.created_at.clone(),
        latest_seq: latest.seq,
        version_count: row.int(16)?,
        description: row.opt_text(18)?,
        metadata: json(&row.text(19)?, "metadata")?,
        tags: tags
            .map(|t| t.split('\n').map(String::from).collect())
            .unwrap_or_default(),
    };
    Ok((prompt, latest))
}

pub(super) fn version_from_row(row: &dyn Row) -> Result<PromptVersion> {
    let template_type = match row.text(3)?.as_str() {
        "str" => TemplateType::Str,
        _ => TemplateType::Chat,
    };
    let format: TemplateFormat = row
        .text(4)?
        .parse()
        .map_err(|e: String| corrupt("format", e))?;
    let text = row.text(5)?;
    let template = match template_type {
        TemplateType::Str => Template::Str(text),
        TemplateType::Chat => Template::Chat(json::<Vec<Message>>(&text, "template")?),
    };
    Ok(PromptVersion {
        id: row.text(0)?,
        prompt: row.text(1)?,
        seq: row.int(2)?,
        template_type,
        format,
        template,
        model: row.opt_text(6)?,
        provider: row.opt_text(14)?,
        params: json(&row.text(7)?, "params")?,
        metadata: json(&row.text(8)?, "metadata")?,
        description: row.opt_text(9)?,
        message: row.opt_text(10)?,
        author: row.text(11)?,
        content_hash: row.text(12)?,
        created_at: row.text(13)?,
    })
}

pub(super) fn tag_from_row(row: &dyn Row) -> Result<Tag> {
    Ok(Tag {
        prompt: row.text(0)?,
        name: row.text(1)?,
        version_id: row.text(2)?,
        version_seq: row.int(3)?,
        updated_at: row.text(4)?,
        updated_by: row.text(5)?,
    })
}

pub(super) fn event_from_row(row: &dyn Row) -> Result<TagEvent> {
    Ok(TagEvent {
        id: row.int(0)?,
        prompt: row.text(1)?,
        tag: row.text(2)?,
        action: row
            .text(3)?
            .parse()
            .map_err(|e: String| corrupt("action", e))?,
        from_version_id: row.opt_text(4)?,
        from_seq: row.opt_int(5)?,
        to_version_id: row.opt_text(6)?,
        to_seq: row.opt_int(7)?,
        actor: row.text(8)?,
        message: row.opt_text(9)?,
        at: row.text(10)?,
        forced: row.flag(11)?,
        deploy: row.flag(13)?,
        evidence: row
            .opt_text(12)?
            .map(|text| json(&text, "evidence"))
            .transpose()?,
    })
}
