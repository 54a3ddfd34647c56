//! Store reads and guarded tag writes that the HTTP API needs and the CLI does not: versions by
//! id alone, pages of prompts, the tags of one version, and tag changes whose protection check
//! runs inside the write transaction.

use super::{
    Result, Store, StoreError, TagChange, TagOutcome, VERSION_COLUMNS, current_tag, require_prompt,
    tag_from_row, version_from_row, write_tag,
};
use crate::model::{Prompt, PromptVersion, Tag, TagAction, TagEvent};
use rusqlite::{OptionalExtension, params};

/// A tag row (as `tag_from_row` reads it) plus the message of the latest change of that tag.
const TAG_WITH_MESSAGE: &str = "SELECT p.name, t.name, t.version_id, v.seq, t.updated_at, \
     t.updated_by, (SELECT e.message FROM tag_events e WHERE e.prompt_id = t.prompt_id \
     AND e.tag = t.name ORDER BY e.id DESC LIMIT 1) \
     FROM tags t JOIN prompts p ON p.id = t.prompt_id \
     JOIN prompt_versions v ON v.id = t.version_id";

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

    /// The id and content hash of the version `tag` points at: all a cached or conditional
    /// tag lookup needs, in one indexed query.
    pub fn tag_target(&self, name: &str, tag: &str) -> Result<(String, String)> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT v.id, v.content_hash FROM prompts p \
                 JOIN tags t ON t.prompt_id = p.id AND t.name = ?2 \
                 JOIN prompt_versions v ON v.id = t.version_id WHERE p.name = ?1",
            )?
            .query_row([name, tag], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match found {
            Some(target) => Ok(target),
            None => {
                require_prompt(&self.conn, name)?;
                Err(StoreError::UnknownTag {
                    prompt: name.into(),
                    tag: tag.into(),
                })
            }
        }
    }

    /// The id and content hash of the latest version of a prompt.
    pub fn latest_target(&self, name: &str) -> Result<(String, String)> {
        self.conn
            .prepare_cached(
                "SELECT v.id, v.content_hash FROM prompts p \
                 JOIN prompt_versions v ON v.prompt_id = p.id WHERE p.name = ?1 \
                 ORDER BY v.seq DESC LIMIT 1",
            )?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
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
        let mut stmt = self.conn.prepare_cached(&format!(
            "{TAG_WITH_MESSAGE} WHERE t.version_id = ?1 ORDER BY t.name"
        ))?;
        let rows = stmt.query_map([version_id], |row| Ok((tag_from_row(row)?, row.get(6)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The tags of a prompt, by name, each with the message of the change that put it there.
    pub fn prompt_tags(&self, name: &str) -> Result<Vec<(Tag, Option<String>)>> {
        let pid = require_prompt(&self.conn, name)?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "{TAG_WITH_MESSAGE} WHERE t.prompt_id = ?1 ORDER BY t.name"
        ))?;
        let rows = stmt.query_map([pid], |row| Ok((tag_from_row(row)?, row.get(6)?)))?;
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
            .ok_or_else(|| StoreError::UnknownVersion {
                prompt: version.prompt.clone(),
                reference: format!("tag '{tag}' on version id {version_id}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewVersion, Template, TemplateFormat};

    fn version(text: &str) -> NewVersion {
        NewVersion {
            format: TemplateFormat::Mustache,
            template: Template::Str(text.into()),
            model: None,
            params: Default::default(),
            metadata: Default::default(),
            description: None,
            message: None,
            author: "t".into(),
        }
    }

    fn change(actor: &str) -> TagChange {
        TagChange {
            actor: actor.into(),
            ..TagChange::default()
        }
    }

    #[test]
    fn targets_pages_and_version_tags() {
        let mut store = Store::open_in_memory().unwrap();
        for name in ["b", "a", "c"] {
            store
                .create_prompt(name, version("x"), &[], &TagChange::default())
                .unwrap();
        }
        let v1 = store
            .version_by_id(&store.versions("a").unwrap()[0].id)
            .unwrap()
            .unwrap();
        let v2 = store
            .append_version::<_, StoreError>(
                "a",
                |_| Ok(version("y")),
                &["staging".into()],
                &change("ci"),
            )
            .unwrap();
        assert_eq!(
            store.latest_target("a").unwrap(),
            (v2.id.clone(), v2.content_hash.clone())
        );
        assert_eq!(store.tag_target("a", "staging").unwrap().0, v2.id);
        assert!(matches!(
            store.tag_target("a", "prod"),
            Err(StoreError::UnknownTag { .. })
        ));
        assert!(matches!(
            store.tag_target("z", "prod"),
            Err(StoreError::UnknownPrompt { .. })
        ));
        assert!(matches!(
            store.latest_target("z"),
            Err(StoreError::UnknownPrompt { .. })
        ));
        assert!(store.version_by_id("nope").unwrap().is_none());

        let names = |page: Vec<(Prompt, PromptVersion)>| -> Vec<String> {
            page.into_iter().map(|(p, _)| p.name).collect()
        };
        assert_eq!(names(store.prompts_page(None, 2).unwrap()), ["a", "b"]);
        assert_eq!(names(store.prompts_page(Some("b"), 5).unwrap()), ["b", "c"]);
        let (first, latest) = store.prompts_page(None, 1).unwrap().remove(0);
        assert_eq!(
            (first.version_count, first.tags.clone()),
            (2, vec!["staging".to_string()])
        );
        assert_eq!(latest.id, v2.id);

        assert!(store.version_tags(&v1.id).unwrap().is_empty());
        let tags = store.version_tags(&v2.id).unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(
            (tags[0].0.name.as_str(), tags[0].0.updated_by.as_str()),
            ("staging", "ci")
        );
    }

    #[test]
    fn guarded_tag_writes_ask_the_check_inside_the_transaction() {
        let mut store = Store::open_in_memory().unwrap();
        let v1 = store
            .create_prompt("p", version("x"), &[], &TagChange::default())
            .unwrap();
        let v2 = store
            .append_version::<_, StoreError>("p", |_| Ok(version("y")), &[], &TagChange::default())
            .unwrap();
        let set = store
            .set_tag_checked::<_, StoreError>(&v1.id, "prod", |v, current| {
                assert_eq!(v.id, v1.id);
                assert!(current.is_none());
                Ok(change("a"))
            })
            .unwrap();
        assert!(matches!(set, TagOutcome::Changed(_)));
        // Already there: the check is not asked and nothing is written.
        let again = store
            .set_tag_checked::<_, StoreError>(&v1.id, "prod", |_, _| panic!("check asked"))
            .unwrap();
        assert!(matches!(again, TagOutcome::Unchanged(_)));
        // A refusing check leaves the tag where it was.
        let refused = store.set_tag_checked(&v2.id, "prod", |_, current| {
            assert_eq!(current.map(|t| t.version_id.clone()), Some(v1.id.clone()));
            Err(StoreError::Corrupt("refused".into()))
        });
        assert!(matches!(refused, Err(StoreError::Corrupt(_))));
        assert_eq!(store.tag_target("p", "prod").unwrap().0, v1.id);
        // Deleting through a version the tag does not point at is refused.
        let elsewhere =
            store.delete_tag_checked::<_, StoreError>(&v2.id, "prod", |_| Ok(change("b")));
        assert!(matches!(elsewhere, Err(StoreError::UnknownVersion { .. })));
        let event = store
            .delete_tag_checked::<_, StoreError>(&v1.id, "prod", |_| Ok(change("b")))
            .unwrap();
        assert_eq!(
            (event.action, event.actor.as_str()),
            (TagAction::Delete, "b")
        );
        assert_eq!(store.history("p", Some("prod")).unwrap().len(), 2);
    }
}
