//! Indexed lookups the HTTP API leans on: versions by id alone, tag and latest targets, pages
//! of prompts, and tags with the message of their last change.

use super::{VERSION_COLUMNS, json_object, require_prompt, tag_from_row, version_from_row};
use crate::model::{Prompt, PromptVersion, Tag};
use crate::store::{Result, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

/// A tag row (as `tag_from_row` reads it) plus the message of the latest change of that tag.
const TAG_WITH_MESSAGE: &str = "SELECT p.name, t.name, t.version_id, v.seq, t.updated_at, \
     t.updated_by, (SELECT e.message FROM tag_events e WHERE e.prompt_id = t.prompt_id \
     AND e.tag = t.name ORDER BY e.id DESC LIMIT 1) \
     FROM tags t JOIN prompts p ON p.id = t.prompt_id \
     JOIN prompt_versions v ON v.id = t.version_id";

/// When a tag was created: its newest event that brought it into being (a set, or a rollback
/// of a deletion), so a tag deleted and set again counts as new.
pub(super) const TAG_CREATED: &str = "(SELECT MAX(c.id) FROM tag_events c \
     WHERE c.prompt_id = t.prompt_id AND c.tag = t.name AND c.from_version_id IS NULL)";

/// One version by its stable id, whichever prompt it belongs to.
pub(super) fn version_by_id(conn: &Connection, id: &str) -> Result<Option<PromptVersion>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
                 JOIN prompts p ON p.id = v.prompt_id WHERE v.id = ?1 AND p.archived_at IS NULL"
        ))?
        .query_row([id], version_from_row)
        .optional()?)
}

/// The id and content hash of the version `tag` points at: all a cached or conditional
/// tag lookup needs, in one indexed query.
pub(super) fn tag_target(conn: &Connection, name: &str, tag: &str) -> Result<(String, String)> {
    let found = conn
        .prepare_cached(
            "SELECT v.id, v.content_hash FROM prompts p \
                 JOIN tags t ON t.prompt_id = p.id AND t.name = ?2 \
                 JOIN prompt_versions v ON v.id = t.version_id \
                 WHERE p.name = ?1 AND p.archived_at IS NULL",
        )?
        .query_row([name, tag], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match found {
        Some(target) => Ok(target),
        None => {
            require_prompt(conn, name)?;
            Err(StoreError::UnknownTag {
                prompt: name.into(),
                tag: tag.into(),
            })
        }
    }
}

/// The id and content hash of the latest version of a prompt.
pub(super) fn latest_target(conn: &Connection, name: &str) -> Result<(String, String)> {
    conn.prepare_cached(
        "SELECT v.id, v.content_hash FROM prompts p \
                 JOIN prompt_versions v ON v.prompt_id = p.id \
                 WHERE p.name = ?1 AND p.archived_at IS NULL \
                 ORDER BY v.seq DESC LIMIT 1",
    )?
    .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?
    .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
}

/// At most `limit` prompts in use, newest first, starting at the one named `from` (inclusive),
/// each with its latest version: one page of the prompt list without reading the whole table.
pub(super) fn prompts_page(
    conn: &Connection,
    from: Option<&str>,
    limit: usize,
) -> Result<Vec<(Prompt, PromptVersion)>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS}, {PROMPT_FIELDS} \
             FROM prompts p JOIN prompt_versions v ON v.prompt_id = p.id \
             WHERE v.seq = (SELECT MAX(seq) FROM prompt_versions m WHERE m.prompt_id = p.id) \
               AND p.archived_at IS NULL \
               AND (?1 IS NULL OR p.id <= (SELECT id FROM prompts WHERE name = ?1)) \
             ORDER BY p.id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![from, limit], prompt_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One prompt in use, with its latest version.
pub(super) fn prompt(conn: &Connection, name: &str) -> Result<Option<(Prompt, PromptVersion)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS}, {PROMPT_FIELDS} \
             FROM prompts p JOIN prompt_versions v ON v.prompt_id = p.id \
             WHERE v.seq = (SELECT MAX(seq) FROM prompt_versions m WHERE m.prompt_id = p.id) \
               AND p.archived_at IS NULL AND p.name = ?1"
    ))?;
    Ok(stmt.query_row([name], prompt_from_row).optional()?)
}

/// What a prompt row adds after its latest version's columns.
const PROMPT_FIELDS: &str = "p.created_at, \
     (SELECT COUNT(*) FROM prompt_versions c WHERE c.prompt_id = p.id), \
     (SELECT group_concat(t.name, char(10)) FROM \
         (SELECT name FROM tags WHERE prompt_id = p.id ORDER BY name) t), \
     p.description, p.metadata";

fn prompt_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Prompt, PromptVersion)> {
    let latest = version_from_row(row)?;
    let tags: Option<String> = row.get(17)?;
    let prompt = Prompt {
        name: latest.prompt.clone(),
        created_at: row.get(15)?,
        updated_at: latest.created_at.clone(),
        latest_seq: latest.seq,
        version_count: row.get(16)?,
        description: row.get(18)?,
        metadata: json_object(&row.get::<_, String>(19)?, 19)?,
        tags: tags
            .map(|t| t.split('\n').map(String::from).collect())
            .unwrap_or_default(),
    };
    Ok((prompt, latest))
}

/// The tags pointing at one version, newest first (by when each was created, as Phoenix lists
/// them), each with the message of the change that put it there (Phoenix calls it the tag's
/// description).
pub(super) fn version_tags(
    conn: &Connection,
    version_id: &str,
) -> Result<Vec<(Tag, Option<String>)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{TAG_WITH_MESSAGE} WHERE t.version_id = ?1 ORDER BY {TAG_CREATED} DESC, t.name"
    ))?;
    let rows = stmt.query_map([version_id], |row| Ok((tag_from_row(row)?, row.get(6)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The tags of a prompt, by name, each with the message of the change that put it there.
pub(super) fn prompt_tags(conn: &Connection, name: &str) -> Result<Vec<(Tag, Option<String>)>> {
    let pid = require_prompt(conn, name)?;
    let mut stmt = conn.prepare_cached(&format!(
        "{TAG_WITH_MESSAGE} WHERE t.prompt_id = ?1 ORDER BY t.name"
    ))?;
    let rows = stmt.query_map([pid], |row| Ok((tag_from_row(row)?, row.get(6)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
