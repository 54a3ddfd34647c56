//! A prompt's own fields and lifecycle: description and metadata updates, archive and restore
//! (each recorded in the prompt's history), and the whole prompt as exported.

use super::{
    EVENT_COLUMNS, EVENT_JOINS, VERSION_COLUMNS, any_prompt, event_from_row, json_object,
    tag_from_row, version_from_row,
};
use crate::model::{PromptArchive, PromptEvent, PromptUpdate, now};
use crate::store::{Allowed, Result, StoreError, TagChange};
use rusqlite::{Connection, Transaction, params};

/// Changes the description and metadata of a prompt in use and records the update.
pub(super) fn update(
    tx: &Transaction<'_>,
    name: &str,
    update: &PromptUpdate,
    actor: &str,
) -> Result<()> {
    let pid = super::require_prompt(tx, name)?;
    if let Some(description) = &update.description {
        tx.execute(
            "UPDATE prompts SET description = ?2 WHERE id = ?1",
            params![pid, description],
        )?;
    }
    if let Some(metadata) = &update.metadata {
        tx.execute(
            "UPDATE prompts SET metadata = ?2 WHERE id = ?1",
            params![pid, serde_json::Value::Object(metadata.clone()).to_string()],
        )?;
    }
    record(tx, pid, "update", actor, Allowed::default())
}

/// Archives a prompt in use, or restores an archived one, and records it.
pub(super) fn set_archived(
    tx: &Transaction<'_>,
    name: &str,
    archived: bool,
    change: &TagChange,
) -> Result<()> {
    let (pid, was) =
        any_prompt(tx, name)?.ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })?;
    match (was, archived) {
        (false, true) => {
            let tags: Vec<String> = tx
                .prepare_cached("SELECT name FROM tags WHERE prompt_id = ?1")?
                .query_map([pid], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let allowed = change.policy.check_archive(
                name,
                tags.iter().map(String::as_str),
                change.force,
                change.role,
            )?;
            tx.execute(
                "UPDATE prompts SET archived_at = ?2 WHERE id = ?1",
                params![pid, now()],
            )?;
            record(tx, pid, "archive", &change.actor, allowed)
        }
        (true, false) => {
            tx.execute(
                "UPDATE prompts SET archived_at = NULL WHERE id = ?1",
                params![pid],
            )?;
            record(tx, pid, "restore", &change.actor, Allowed::default())
        }
        (true, true) => Err(StoreError::UnknownPrompt { name: name.into() }),
        (false, false) => Err(StoreError::NotArchived { name: name.into() }),
    }
}

fn record(
    tx: &Transaction<'_>,
    pid: i64,
    action: &str,
    actor: &str,
    allowed: Allowed,
) -> Result<()> {
    tx.execute(
        "INSERT INTO prompt_events (prompt_id, action, actor, at, forced, deploy) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![pid, action, actor, now(), allowed.forced, allowed.deploy],
    )?;
    Ok(())
}

/// Everything about one prompt, archived or not, for export and copy.
pub(super) fn archive(conn: &Connection, name: &str) -> Result<PromptArchive> {
    let (pid, _) =
        any_prompt(conn, name)?.ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })?;
    let (created_at, description, metadata, archived_at) = conn.query_row(
        "SELECT created_at, description, metadata, archived_at FROM prompts WHERE id = ?1",
        [pid],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                json_object(&r.get::<_, String>(2)?, 2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        },
    )?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id \
         WHERE v.prompt_id = ?1 ORDER BY v.seq"
    ))?;
    let versions = stmt
        .query_map([pid], version_from_row)?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT p.name, t.name, t.version_id, v.seq, t.updated_at, t.updated_by \
         FROM tags t JOIN prompts p ON p.id = t.prompt_id \
         JOIN prompt_versions v ON v.id = t.version_id WHERE t.prompt_id = ?1 ORDER BY t.name",
    )?;
    let tags = stmt
        .query_map([pid], tag_from_row)?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} {EVENT_JOINS} WHERE e.prompt_id = ?1 ORDER BY e.id"
    ))?;
    let history = stmt
        .query_map([pid], event_from_row)?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, action, actor, at, forced, deploy FROM prompt_events WHERE prompt_id = ?1 \
         ORDER BY id",
    )?;
    let events = stmt
        .query_map([pid], |r| {
            Ok(PromptEvent {
                id: r.get(0)?,
                prompt: name.into(),
                action: r.get(1)?,
                actor: r.get(2)?,
                at: r.get(3)?,
                forced: r.get(4)?,
                deploy: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
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
