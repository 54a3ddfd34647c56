//! Store reads and guarded tag writes that the HTTP API needs and the CLI does not: versions by
//! id alone, pages of prompts, the tags of one version, and tag changes whose protection check
//! runs inside the write transaction.

use super::{
    Result, Store, StoreError, TagChange, TagOutcome, VERSION_COLUMNS, current_tag, tag_from_row,
    version_from_row, write_tag,
};
use crate::model::{Prompt, PromptVersion, Tag, TagAction, TagEvent};
use rusqlite::{OptionalExtension, params};

impl Store {
    /// One version by its stable id, whichever prompt it belongs to.
    pub fn version_by_id(&self, id: &str) -> Result<Option<PromptVersion>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
                 JOIN prompts p ON p.id = v.prompt_id WHERE v.id = ?1"
            ))?
            .query_row([id], version_from_row)
            .optional()?)
    }

    /// At most `limit` prompts by name, starting at `from` (inclusive), each with its latest
    /// version: one page of `prompts()` without reading the whole table.
    pub fn prompts_page(
        &self,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Prompt, PromptVersion)>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS}, p.created_at, \
               (SELECT COUNT(*) FROM prompt_versions c WHERE c.prompt_id = p.id), \
               (SELECT group_concat(t.name, char(10)) FROM \
                   (SELECT name FROM tags WHERE prompt_id = p.id ORDER BY name) t) \
             FROM prompts p JOIN prompt_versions v ON v.prompt_id = p.id \
             WHERE v.seq = (SELECT MAX(seq) FROM prompt_versions m WHERE m.prompt_id = p.id) \
               AND (?1 IS NULL OR p.name >= ?1) \
             ORDER BY p.name LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![from, limit], |row| {
            let latest = version_from_row(row)?;
            let tags: Option<String> = row.get(16)?;
            let prompt = Prompt {
                name: latest.prompt.clone(),
                created_at: row.get(14)?,
                updated_at: latest.created_at.clone(),
                latest_seq: latest.seq,
                version_count: row.get(15)?,
                description: latest.description.clone(),
                tags: tags
                    .map(|t| t.split('\n').map(String::from).collect())
                    .unwrap_or_default(),
            };
            Ok((prompt, latest))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The tags pointing at one version, by name, each with the message of the change that put
    /// it there (Phoenix calls it the tag's description).
    pub fn version_tags(&self, version_id: &str) -> Result<Vec<(Tag, Option<String>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT p.name, t.name, t.version_id, v.seq, t.updated_at, t.updated_by, \
               (SELECT e.message FROM tag_events e WHERE e.prompt_id = t.prompt_id \
                  AND e.tag = t.name ORDER BY e.id DESC LIMIT 1) \
             FROM tags t JOIN prompts p ON p.id = t.prompt_id \
             JOIN prompt_versions v ON v.id = t.version_id \
             WHERE t.version_id = ?1 ORDER BY t.name",
        )?;
        let rows = stmt.query_map([version_id], |row| Ok((tag_from_row(row)?, row.get(6)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Points `tag` at the version with id `version_id`. `check` sees the version and the tag as
    /// it is inside the write transaction and returns the change to record, or refuses: a
    /// protection rule checked outside the transaction could be raced by another writer.
    /// A tag already at that version is left alone without asking `check`.
    pub fn set_tag_checked<F, E>(
        &mut self,
        version_id: &str,
        tag: &str,
        check: F,
    ) -> Result<TagOutcome, E>
    where
        F: FnOnce(&PromptVersion, Option<&Tag>) -> Result<TagChange, E>,
        E: From<StoreError>,
    {
        let tx = self.immediate()?;
        let version = version_in(&tx, version_id)?;
        let pid = prompt_of(&tx, version_id)?;
        let current = current_tag(&tx, pid, tag)?;
        if let Some(current) = current
            .as_ref()
            .filter(|current| current.version_id == version.id)
        {
            return Ok(TagOutcome::Unchanged(current.clone()));
        }
        let change = check(&version, current.as_ref())?;
        let event = write_tag(
            &tx,
            pid,
            &version.prompt,
            tag,
            Some(&version.id),
            None,
            &change,
        )?;
        tx.commit().map_err(StoreError::from)?;
        Ok(TagOutcome::Changed(event))
    }

    /// Deletes `tag` of the prompt that owns `version_id`, only while the tag points at that
    /// version (a client that saw the tag there must not delete it after it moved elsewhere).
    /// `check` sees the tag inside the write transaction and returns the change to record.
    pub fn delete_tag_checked<F, E>(
        &mut self,
        version_id: &str,
        tag: &str,
        check: F,
    ) -> Result<TagEvent, E>
    where
        F: FnOnce(&Tag) -> Result<TagChange, E>,
        E: From<StoreError>,
    {
        let tx = self.immediate()?;
        let version = version_in(&tx, version_id)?;
        let pid = prompt_of(&tx, version_id)?;
        let current = current_tag(&tx, pid, tag)?
            .filter(|current| current.version_id == version.id)
            .ok_or_else(|| StoreError::UnknownTag {
                prompt: version.prompt.clone(),
                tag: tag.into(),
            })?;
        let change = check(&current)?;
        let event = write_tag(
            &tx,
            pid,
            &version.prompt,
            tag,
            None,
            Some(TagAction::Delete),
            &change,
        )?;
        tx.commit().map_err(StoreError::from)?;
        Ok(event)
    }
}

fn version_in(conn: &rusqlite::Connection, version_id: &str) -> Result<PromptVersion> {
    conn.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
         JOIN prompts p ON p.id = v.prompt_id WHERE v.id = ?1"
    ))?
    .query_row([version_id], version_from_row)
    .optional()?
    .ok_or_else(|| StoreError::UnknownVersion {
        prompt: "any prompt".into(),
        reference: format!("version id {version_id}"),
    })
}

fn prompt_of(conn: &rusqlite::Connection, version_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT prompt_id FROM prompt_versions WHERE id = ?1")?
        .query_row([version_id], |r| r.get(0))?)
}
