//! A prompt's lifecycle beyond its versions and tags, once for both backends: archive and
//! restore (each checked against the tag policy and recorded in the prompt's own history), the
//! whole prompt as exported, and imports of whole prompts, all or none. It names no driver and
//! opens no transaction (each function runs inside its caller's), asks `sql::Dialect` for the few
//! texts that differ, and must not read or write the archive's files: that is
//! `workflow::archive`'s.

use super::prompts::{
    EVENT_COLUMNS, EVENT_JOINS, TAG_COLUMNS, TAG_JOINS, VERSION_COLUMNS, any_prompt,
    event_from_row, insert_version_row, tag_from_row, version_from_row,
};
use crate::model::{PromptArchive, PromptEvent, now};
use crate::store::sql::{Db, all, args, first, json, one};
use crate::store::{Allowed, Result, StoreError, TagChange};

/// Archives a prompt in use, or restores an archived one, and records it.
pub(super) fn set_archived(
    db: &dyn Db,
    name: &str,
    archived: bool,
    change: &TagChange,
) -> Result<()> {
    let (pid, _) =
        any_prompt(db, name)?.ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })?;
    // Queue behind any other write to this prompt, then read its state as that write left
    // it: read before the lock, two archives at once would both see it live.
    let lock = db.dialect().for_update();
    let was = one(
        db,
        &format!("SELECT archived_at IS NOT NULL FROM prompts WHERE id = $1{lock}"),
        args![pid],
        |r| r.flag(0),
    )?;
    match (was, archived) {
        (false, true) => {
            let tags = all(
                db,
                "SELECT name FROM tags WHERE prompt_id = $1",
                args![pid],
                |r| r.text(0),
            )?;
            let allowed = change.policy.check_archive(
                name,
                tags.iter().map(String::as_str),
                change.force,
                change.role,
            )?;
            db.exec(
                "UPDATE prompts SET archived_at = $2 WHERE id = $1",
                args![pid, now().as_str()],
            )?;
            record_prompt_event(db, pid, "archive", &change.actor, allowed)
        }
        (true, false) => {
            db.exec(
                "UPDATE prompts SET archived_at = NULL WHERE id = $1",
                args![pid],
            )?;
            record_prompt_event(db, pid, "restore", &change.actor, Allowed::default())
        }
        (true, true) => Err(StoreError::UnknownPrompt { name: name.into() }),
        (false, false) => Err(StoreError::NotArchived { name: name.into() }),
    }
}

pub(super) fn record_prompt_event(
    db: &dyn Db,
    pid: i64,
    action: &str,
    actor: &str,
    allowed: Allowed,
) -> Result<()> {
    db.exec(
        "INSERT INTO prompt_events (prompt_id, action, actor, at, forced, deploy) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        args![
            pid,
            action,
            actor,
            now().as_str(),
            allowed.forced,
            allowed.deploy
        ],
    )?;
    Ok(())
}

/// Everything about one prompt, archived or not, for export and copy.
pub(super) fn archive(db: &dyn Db, name: &str) -> Result<PromptArchive> {
    let (pid, _) =
        any_prompt(db, name)?.ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })?;
    let (created_at, description, metadata, archived_at) = one(
        db,
        "SELECT created_at, description, metadata, archived_at FROM prompts WHERE id = $1",
        args![pid],
        |r| {
            Ok((
                r.text(0)?,
                r.opt_text(1)?,
                json(&r.text(2)?, "metadata")?,
                r.opt_text(3)?,
            ))
        },
    )?;
    let versions = all(
        db,
        &format!(
            "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
             JOIN prompts p ON p.id = v.prompt_id WHERE v.prompt_id = $1 ORDER BY v.seq"
        ),
        args![pid],
        version_from_row,
    )?;
    let tags = all(
        db,
        &format!("SELECT {TAG_COLUMNS} {TAG_JOINS} WHERE t.prompt_id = $1 ORDER BY t.name"),
        args![pid],
        tag_from_row,
    )?;
    let history = all(
        db,
        &format!("SELECT {EVENT_COLUMNS} {EVENT_JOINS} WHERE e.prompt_id = $1 ORDER BY e.id"),
        args![pid],
        event_from_row,
    )?;
    let events = all(
        db,
        "SELECT id, action, actor, at, forced, deploy FROM prompt_events \
         WHERE prompt_id = $1 ORDER BY id",
        args![pid],
        |r| {
            Ok(PromptEvent {
                id: r.int(0)?,
                prompt: name.into(),
                action: r.text(1)?,
                actor: r.text(2)?,
                at: r.text(3)?,
                forced: r.flag(4)?,
                deploy: r.flag(5)?,
            })
        },
    )?;
    Ok(PromptArchive {
        name: name.into(),
        created_at,
        description,
        metadata,
        archived_at,
        events,
        versions,
        tags,
        history,
    })
}

/// Writes whole prompts, all or none; `keep_ids` keeps the events' ids.
pub(super) fn import_archives(
    db: &dyn Db,
    archives: &[PromptArchive],
    keep_ids: bool,
) -> Result<()> {
    let dialect = db.dialect();
    let overriding = dialect.overriding();
    for archive in archives {
        let metadata = serde_json::Value::Object(archive.metadata.clone()).to_string();
        let pid = first(
            db,
            "INSERT INTO prompts (name, created_at, description, metadata, archived_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING id",
            args![
                &archive.name,
                &archive.created_at,
                &archive.description,
                &metadata,
                &archive.archived_at,
            ],
            |r| r.int(0),
        )?;
        let Some(pid) = pid else {
            return Err(StoreError::PromptExists {
                name: archive.name.clone(),
            });
        };
        for v in &archive.versions {
            insert_version_row(db, pid, v)?;
        }
        let kept_id = dialect.kept_prompt_event_id();
        for e in &archive.events {
            db.exec(
                &format!(
                    "INSERT INTO prompt_events (prompt_id, action, actor, at, id, forced, \
                     deploy) {overriding} VALUES ($1, $2, $3, $4, {kept_id}, $6, $7)"
                ),
                args![
                    pid,
                    &e.action,
                    &e.actor,
                    &e.at,
                    keep_ids.then_some(e.id),
                    e.forced,
                    e.deploy,
                ],
            )?;
        }
        // A NULL id is numbered by the table, as in every other write.
        let kept_id = dialect.kept_tag_event_id();
        for e in &archive.history {
            let evidence = e.evidence.as_ref().map(|v| v.to_string());
            db.exec(
                &format!(
                    "INSERT INTO tag_events (prompt_id, tag, action, from_version_id, \
                     to_version_id, actor, message, at, forced, evidence, deploy, id) \
                     {overriding} \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {kept_id})"
                ),
                args![
                    pid,
                    &e.tag,
                    e.action.as_str(),
                    &e.from_version_id,
                    &e.to_version_id,
                    &e.actor,
                    &e.message,
                    &e.at,
                    e.forced,
                    &evidence,
                    e.deploy,
                    keep_ids.then_some(e.id),
                ],
            )?;
        }
        for t in &archive.tags {
            db.exec(
                "INSERT INTO tags (prompt_id, name, version_id, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4, $5)",
                args![pid, &t.name, &t.version_id, &t.updated_at, &t.updated_by],
            )?;
        }
    }
    if keep_ids {
        // Later events are numbered after the ones kept.
        for sql in dialect.renumber_events() {
            db.exec(sql, &[])?;
        }
    }
    Ok(())
}
