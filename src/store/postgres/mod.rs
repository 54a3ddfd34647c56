//! The team store on PostgreSQL: the only user of PostgreSQL. Schema migrations, every read and
//! write, transactions; the same tables, rules and answers as the SQLite store.
//!
//! Every write is one transaction that first locks the prompt's row (`FOR UPDATE`), so
//! writers on any machine queue per prompt: version numbers follow each other without gaps,
//! and a tag's expected position and the tag policy are checked where nobody can move the tag
//! in between. Triggers keep versions and the tag history append-only and a successful result
//! final, whatever program connects.

use super::{Allowed, BuildVersion, PromptStore, Result, Store, StoreError, TagChange, TagOutcome};
use crate::model::{
    JsonObject, Message, NewVersion, Prompt, PromptArchive, PromptEvent, PromptUpdate,
    PromptVersion, Tag, TagAction, TagEvent, Template, TemplateFormat, TemplateType, VersionRef,
    content_hash, now,
};
use pool::{Db, Pool, block};
use tokio_postgres::Row;

pub mod conninfo;
mod experiments;
mod pool;
mod work;

/// Numbered migrations; the schema version is the row of `runner_schema`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_prompt_store.sql"),
    include_str!("migrations/0002_experiments.sql"),
    include_str!("migrations/0003_experiment_fingerprint.sql"),
    include_str!("migrations/0004_latency_index.sql"),
    include_str!("migrations/0005_experiment_lease.sql"),
    include_str!("migrations/0006_prompt_fields.sql"),
    include_str!("migrations/0007_work_items.sql"),
    include_str!("migrations/0008_tag_event_deploy.sql"),
    include_str!("migrations/0009_fk_lookup_indexes.sql"),
    include_str!("migrations/0010_prompt_event_override.sql"),
];

/// The advisory lock every migrating connection takes, so concurrent first connections
/// migrate once (the number is arbitrary and only has to be runner's own).
const MIGRATION_LOCK: i64 = 0x72756e6e6572;

impl From<tokio_postgres::Error> for StoreError {
    /// The cause shown below "the store failed" is the server's own sentence (`relation
    /// "tag_events" does not exist`), not the driver's bare "db error".
    fn from(e: tokio_postgres::Error) -> StoreError {
        StoreError::Backend(Box::new(std::io::Error::other(describe(&e))))
    }
}

/// A driver error in one line: the server's own message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = e.to_string();
            let mut next = std::error::Error::source(e);
            while let Some(cause) = next {
                text = format!("{text}: {cause}");
                next = cause.source();
            }
            text
        }
    }
}

pub struct PgStore {
    pool: Pool,
}

const VERSION_COLUMNS: &str = "v.id, p.name, v.seq, v.template_type, v.format, v.template, \
     v.model, v.params, v.metadata, v.description, v.message, v.author, v.content_hash, v.created_at, v.provider";

const EVENT_COLUMNS: &str = "e.id, p.name, e.tag, e.action, e.from_version_id, fv.seq, \
     e.to_version_id, tv.seq, e.actor, e.message, e.at, e.forced, e.evidence, e.deploy";

const EVENT_JOINS: &str = "FROM tag_events e JOIN prompts p ON p.id = e.prompt_id \
     LEFT JOIN prompt_versions fv ON fv.id = e.from_version_id \
     LEFT JOIN prompt_versions tv ON tv.id = e.to_version_id";

const TAG_COLUMNS: &str = "p.name, t.name, t.version_id, v.seq, t.updated_at, t.updated_by";

/// A tag row plus the message of the latest change of that tag.
const TAG_WITH_MESSAGE: &str = "SELECT p.name, t.name, t.version_id, v.seq, t.updated_at, \
     t.updated_by, (SELECT e.message FROM tag_events e WHERE e.prompt_id = t.prompt_id \
     AND e.tag = t.name ORDER BY e.id DESC LIMIT 1) \
     FROM tags t JOIN prompts p ON p.id = t.prompt_id \
     JOIN prompt_versions v ON v.id = t.version_id";

/// How an opened database stands.
enum Found {
    /// Nothing in it yet.
    Empty,
    /// A runner store at this schema version.
    Runner(i64),
}

impl PgStore {
    /// Connects to the database `url` names and brings its schema to the newest version.
    pub fn open(url: &str) -> Result<PgStore> {
        let store = PgStore::connect(url)?;
        let found = store.inspect()?;
        let at = match found {
            Found::Empty => 0,
            Found::Runner(version) => version,
        };
        if at < Self::latest_schema_version() {
            store.migrate()?;
        }
        Ok(store)
    }

    /// Connects without creating or migrating anything: None for a database that holds
    /// nothing yet (it reads as an empty store).
    pub fn open_read_only(url: &str) -> Result<Option<PgStore>> {
        let store = PgStore::connect(url)?;
        match store.inspect()? {
            Found::Empty => Ok(None),
            Found::Runner(found) if found < Self::latest_schema_version() => {
                Err(StoreError::OlderSchema {
                    path: store.pool.display().into(),
                    found,
                    supported: Self::latest_schema_version(),
                })
            }
            Found::Runner(_) => Ok(Some(store)),
        }
    }

    fn connect(url: &str) -> Result<PgStore> {
        let target = conninfo::parse(url).map_err(|reason| StoreError::Open {
            path: conninfo::redact(url).into(),
            reason,
        })?;
        let pool = Pool::new(target)?;
        // Connecting once up front turns an unreachable server or a refused password into
        // an open error that names the store.
        drop(pool.get()?);
        Ok(PgStore { pool })
    }

    /// The newest schema version this build knows.
    pub fn latest_schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    /// Reads what the database holds, refusing (untouched) one from a newer runner or one
    /// that belongs to another program.
    fn inspect(&self) -> Result<Found> {
        let display = self.pool.display().to_string();
        self.read(async |db| {
            let found = schema_version(db).await?;
            if found > Self::latest_schema_version() {
                return Err(StoreError::NewerSchema {
                    path: display.clone().into(),
                    found,
                    supported: Self::latest_schema_version(),
                });
            }
            if found > 0 {
                return Ok(Found::Runner(found));
            }
            let objects: i64 = db
                .one(
                    "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
                     AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')",
                    &[],
                )
                .await?
                .try_get(0)?;
            if objects > 0 {
                // Another runner's migration may have committed between the two reads (its
                // tables and its schema row appear together): look at the schema row again.
                let found = schema_version(db).await?;
                if found > 0 {
                    return Ok(Found::Runner(found));
                }
                return Err(StoreError::ForeignDatabase { location: display });
            }
            Ok(Found::Empty)
        })
    }

    /// Applies the missing migrations in one transaction under an advisory lock: a second
    /// runner connecting at the same moment waits, then finds the schema current.
    fn migrate(&self) -> Result<()> {
        let display = self.pool.display().to_string();
        self.write(async |db| {
            db.exec("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            let found = schema_version(db).await?;
            if found > Self::latest_schema_version() {
                return Err(StoreError::NewerSchema {
                    path: display.into(),
                    found,
                    supported: Self::latest_schema_version(),
                });
            }
            if found == 0 {
                db.batch(
                    "CREATE TABLE runner_schema (
                         only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
                         version  BIGINT NOT NULL
                     );
                     INSERT INTO runner_schema (version) VALUES (0);",
                )
                .await?;
            }
            for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
                db.batch(sql).await?;
                db.exec(
                    "UPDATE runner_schema SET version = $1",
                    &[&(index as i64 + 1)],
                )
                .await?;
            }
            Ok(())
        })
    }

    /// Runs `work` on a pooled connection, outside a transaction.
    fn read<T>(&self, work: impl AsyncFnOnce(&Db) -> Result<T>) -> Result<T> {
        let conn = self.pool.get()?;
        block(work(&conn))
    }

    /// Runs `work` in one transaction, committed when it returns Ok and rolled back otherwise.
    fn write<T>(&self, work: impl AsyncFnOnce(&Db) -> Result<T>) -> Result<T> {
        let conn = self.pool.get()?;
        block(async {
            conn.begin().await?;
            match work(&conn).await {
                Ok(value) => {
                    conn.commit().await?;
                    Ok(value)
                }
                Err(e) => {
                    conn.rollback().await;
                    Err(e)
                }
            }
        })
    }
}

async fn schema_version(db: &Db) -> Result<i64> {
    // A plain query of the catalog, not to_regclass: that reads a cache which may not yet
    // know of a table another connection created while this one waited for the lock.
    let exists: bool = db
        .one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename = 'runner_schema')",
            &[],
        )
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    Ok(db
        .one("SELECT version FROM runner_schema", &[])
        .await?
        .try_get(0)?)
}

impl Store for PgStore {
    fn schema_version(&self) -> Result<i64> {
        self.read(async |db| schema_version(db).await)
    }

    fn location(&self) -> String {
        self.pool.display().to_string()
    }
}

impl PromptStore for PgStore {
    fn create_prompt(
        &self,
        name: &str,
        version: NewVersion,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion> {
        self.write(async |db| {
            let now = now();
            // A concurrent creator of the same name makes this wait for its commit, then
            // insert nothing.
            let pid: Option<i64> = db
                .opt(
                    "INSERT INTO prompts (name, created_at, description) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING RETURNING id",
                    &[&name, &now, &version.description],
                )
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            let Some(pid) = pid else {
                return Err(match any_prompt(db, name).await? {
                    Some((_, true)) => StoreError::PromptArchived { name: name.into() },
                    _ => StoreError::PromptExists { name: name.into() },
                });
            };
            let created = insert_version(db, pid, name, 1, version, &now).await?;
            for tag in tags {
                write_tag(db, pid, name, tag, Some(&created.id), change).await?;
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
        self.write(async |db| {
            let pid = lock_prompt(db, name).await?;
            let latest = resolve(db, pid, name, &VersionRef::Latest).await?;
            let version = build(&latest)?;
            let created = insert_version(db, pid, name, latest.seq + 1, version, &now()).await?;
            for tag in tags {
                write_tag(db, pid, name, tag, Some(&created.id), change).await?;
            }
            Ok(created)
        })
    }

    fn version(&self, name: &str, reference: &VersionRef) -> Result<PromptVersion> {
        self.read(async |db| {
            let pid = require_prompt(db, name).await?;
            resolve(db, pid, name, reference).await
        })
    }

    fn version_by_id(&self, id: &str) -> Result<Option<PromptVersion>> {
        self.read(async |db| {
            db.opt(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
                     JOIN prompts p ON p.id = v.prompt_id \
                     WHERE v.id = $1 AND p.archived_at IS NULL"
                ),
                &[&id],
            )
            .await?
            .map(|row| version_from_row(&row))
            .transpose()
        })
    }

    fn versions(&self, name: &str) -> Result<Vec<PromptVersion>> {
        self.read(async |db| {
            let pid = require_prompt(db, name).await?;
            db.query(
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
                     JOIN prompts p ON p.id = v.prompt_id WHERE v.prompt_id = $1 ORDER BY v.seq DESC"
                ),
                &[&pid],
            )
            .await?
            .iter()
            .map(version_from_row)
            .collect()
        })
    }

    fn prompts_page(
        &self,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Prompt, PromptVersion)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(async |db| {
            db.query(
                &format!(
                    "SELECT {VERSION_COLUMNS}, {PROMPT_FIELDS} \
                     FROM prompts p JOIN prompt_versions v ON v.prompt_id = p.id \
                     WHERE v.seq = (SELECT MAX(seq) FROM prompt_versions m WHERE m.prompt_id = p.id) \
                     AND p.archived_at IS NULL \
                     AND ($1::text IS NULL OR p.id <= (SELECT id FROM prompts WHERE name = $1::text)) \
                     ORDER BY p.id DESC LIMIT $2"
                ),
                &[&from, &limit],
            )
            .await?
            .iter()
            .map(prompt_from_row)
            .collect()
        })
    }

    fn prompt(&self, name: &str) -> Result<(Prompt, PromptVersion)> {
        self.read(async |db| {
            db.opt(
                &format!(
                    "SELECT {VERSION_COLUMNS}, {PROMPT_FIELDS} \
                     FROM prompts p JOIN prompt_versions v ON v.prompt_id = p.id \
                     WHERE v.seq = (SELECT MAX(seq) FROM prompt_versions m WHERE m.prompt_id = p.id) \
                     AND p.archived_at IS NULL AND p.name = $1"
                ),
                &[&name],
            )
            .await?
            .map(|row| prompt_from_row(&row))
            .transpose()?
            .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
        })
    }

    fn update_prompt(&self, name: &str, update: &PromptUpdate, actor: &str) -> Result<()> {
        self.write(async |db| {
            let pid = lock_prompt(db, name).await?;
            if let Some(description) = &update.description {
                db.exec(
                    "UPDATE prompts SET description = $2 WHERE id = $1",
                    &[&pid, description],
                )
                .await?;
            }
            if let Some(metadata) = &update.metadata {
                let text = serde_json::Value::Object(metadata.clone()).to_string();
                db.exec(
                    "UPDATE prompts SET metadata = $2 WHERE id = $1",
                    &[&pid, &text],
                )
                .await?;
            }
            record_prompt_event(db, pid, "update", actor, Allowed::default()).await
        })
    }

    fn archive_prompt(&self, name: &str, change: &TagChange) -> Result<()> {
        self.write(async |db| set_archived(db, name, true, change).await)
    }

    fn restore_prompt(&self, name: &str, actor: &str) -> Result<()> {
        let change = TagChange::by(actor);
        self.write(async |db| set_archived(db, name, false, &change).await)
    }

    fn archived_prompts(&self) -> Result<Vec<String>> {
        self.read(async |db| {
            db.query(
                "SELECT name FROM prompts WHERE archived_at IS NOT NULL ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
        })
    }

    fn tags(&self, name: &str) -> Result<Vec<Tag>> {
        self.read(async |db| {
            let pid = require_prompt(db, name).await?;
            db.query(
                &format!(
                    "SELECT {TAG_COLUMNS} FROM tags t JOIN prompts p ON p.id = t.prompt_id \
                     JOIN prompt_versions v ON v.id = t.version_id \
                     WHERE t.prompt_id = $1 ORDER BY t.name"
                ),
                &[&pid],
            )
            .await?
            .iter()
            .map(tag_from_row)
            .collect()
        })
    }

    fn tag(&self, name: &str, tag: &str) -> Result<Option<Tag>> {
        self.read(async |db| {
            let pid = require_prompt(db, name).await?;
            current_tag(db, pid, tag).await
        })
    }

    fn tag_target(&self, name: &str, tag: &str) -> Result<(String, String)> {
        self.read(async |db| {
            let found = db
                .opt(
                    "SELECT v.id, v.content_hash FROM prompts p \
                     JOIN tags t ON t.prompt_id = p.id AND t.name = $2 \
                     JOIN prompt_versions v ON v.id = t.version_id \
                     WHERE p.name = $1 AND p.archived_at IS NULL",
                    &[&name, &tag],
                )
                .await?;
            match found {
                Some(row) => Ok((row.try_get(0)?, row.try_get(1)?)),
                None => {
                    require_prompt(db, name).await?;
                    Err(StoreError::UnknownTag {
                        prompt: name.into(),
                        tag: tag.into(),
                    })
                }
            }
        })
    }

    fn latest_target(&self, name: &str) -> Result<(String, String)> {
        self.read(async |db| {
            let row = db
                .opt(
                    "SELECT v.id, v.content_hash FROM prompts p \
                     JOIN prompt_versions v ON v.prompt_id = p.id \
                     WHERE p.name = $1 AND p.archived_at IS NULL \
                     ORDER BY v.seq DESC LIMIT 1",
                    &[&name],
                )
                .await?
                .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })?;
            Ok((row.try_get(0)?, row.try_get(1)?))
        })
    }

    fn version_tags(&self, version_id: &str) -> Result<Vec<(Tag, Option<String>)>> {
        self.read(async |db| {
            db.query(
                &format!(
                    "{TAG_WITH_MESSAGE} WHERE t.version_id = $1 \
                     ORDER BY {TAG_CREATED} DESC NULLS LAST, t.name"
                ),
                &[&version_id],
            )
            .await?
            .iter()
            .map(|row| Ok((tag_from_row(row)?, row.try_get(6)?)))
            .collect()
        })
    }

    fn prompt_tags(&self, name: &str) -> Result<Vec<(Tag, Option<String>)>> {
        self.read(async |db| {
            let pid = require_prompt(db, name).await?;
            db.query(
                &format!("{TAG_WITH_MESSAGE} WHERE t.prompt_id = $1 ORDER BY t.name"),
                &[&pid],
            )
            .await?
            .iter()
            .map(|row| Ok((tag_from_row(row)?, row.try_get(6)?)))
            .collect()
        })
    }

    fn set_tag(
        &self,
        name: &str,
        tag: &str,
        target: &VersionRef,
        change: &TagChange,
    ) -> Result<TagOutcome> {
        self.write(async |db| {
            let pid = lock_prompt(db, name).await?;
            let version = resolve(db, pid, name, target).await?;
            if let Some(current) = current_tag(db, pid, tag).await?
                && current.version_id == version.id
                && change.expect.holds(Some(&current.version_id))
            {
                return Ok(TagOutcome::Unchanged(current));
            }
            let event = write_tag(db, pid, name, tag, Some(&version.id), change).await?;
            Ok(TagOutcome::Changed(event))
        })
    }

    fn delete_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent> {
        self.write(async |db| {
            let pid = lock_prompt(db, name).await?;
            if current_tag(db, pid, tag).await?.is_none() {
                return Err(StoreError::UnknownTag {
                    prompt: name.into(),
                    tag: tag.into(),
                });
            }
            let change = TagChange {
                action: Some(TagAction::Delete),
                ..change.clone()
            };
            write_tag(db, pid, name, tag, None, &change).await
        })
    }

    fn rollback_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent> {
        self.write(async |db| {
            let pid = lock_prompt(db, name).await?;
            let last = db
                .opt(
                    "SELECT from_version_id FROM tag_events WHERE prompt_id = $1 AND tag = $2 \
                     ORDER BY id DESC LIMIT 1",
                    &[&pid, &tag],
                )
                .await?;
            let previous: String = match last {
                None => {
                    return Err(StoreError::UnknownTag {
                        prompt: name.into(),
                        tag: tag.into(),
                    });
                }
                Some(row) => match row.try_get::<_, Option<String>>(0)? {
                    None => {
                        return Err(StoreError::NothingToRollBack {
                            prompt: name.into(),
                            tag: tag.into(),
                        });
                    }
                    Some(id) => id,
                },
            };
            let change = TagChange {
                action: Some(TagAction::Rollback),
                ..change.clone()
            };
            write_tag(db, pid, name, tag, Some(&previous), &change).await
        })
    }

    fn history(&self, name: &str, tag: Option<&str>) -> Result<Vec<TagEvent>> {
        self.read(async |db| {
            let pid = require_prompt(db, name).await?;
            db.query(
                &format!(
                    "SELECT {EVENT_COLUMNS} {EVENT_JOINS} \
                     WHERE e.prompt_id = $1 AND ($2::text IS NULL OR e.tag = $2::text) ORDER BY e.id"
                ),
                &[&pid, &tag],
            )
            .await?
            .iter()
            .map(event_from_row)
            .collect()
        })
    }

    fn archive(&self, name: &str) -> Result<PromptArchive> {
        self.read(async |db| {
            let (pid, _) = any_prompt(db, name)
                .await?
                .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })?;
            let row = db
                .one(
                    "SELECT created_at, description, metadata, archived_at FROM prompts \
                     WHERE id = $1",
                    &[&pid],
                )
                .await?;
            let versions = db
                .query(
                    &format!(
                        "SELECT {VERSION_COLUMNS} FROM prompt_versions v \
                         JOIN prompts p ON p.id = v.prompt_id WHERE v.prompt_id = $1 ORDER BY v.seq"
                    ),
                    &[&pid],
                )
                .await?
                .iter()
                .map(version_from_row)
                .collect::<Result<_>>()?;
            let tags = db
                .query(
                    &format!(
                        "SELECT {TAG_COLUMNS} FROM tags t JOIN prompts p ON p.id = t.prompt_id \
                         JOIN prompt_versions v ON v.id = t.version_id \
                         WHERE t.prompt_id = $1 ORDER BY t.name"
                    ),
                    &[&pid],
                )
                .await?
                .iter()
                .map(tag_from_row)
                .collect::<Result<_>>()?;
            let history = db
                .query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} {EVENT_JOINS} WHERE e.prompt_id = $1 ORDER BY e.id"
                    ),
                    &[&pid],
                )
                .await?
                .iter()
                .map(event_from_row)
                .collect::<Result<_>>()?;
            let events = db
                .query(
                    "SELECT id, action, actor, at, forced, deploy FROM prompt_events \
                     WHERE prompt_id = $1 ORDER BY id",
                    &[&pid],
                )
                .await?
                .iter()
                .map(|r| {
                    Ok(PromptEvent {
                        id: r.try_get(0)?,
                        prompt: name.into(),
                        action: r.try_get(1)?,
                        actor: r.try_get(2)?,
                        at: r.try_get(3)?,
                        forced: r.try_get(4)?,
                        deploy: r.try_get(5)?,
                    })
                })
                .collect::<Result<_>>()?;
            Ok(PromptArchive {
                name: name.into(),
                created_at: row.try_get(0)?,
                description: row.try_get(1)?,
                metadata: json_object(row.try_get(2)?, "metadata")?,
                archived_at: row.try_get(3)?,
                events,
                versions,
                tags,
                history,
            })
        })
    }

    fn import(&self, archives: &[PromptArchive]) -> Result<()> {
        self.import_archives(archives, false)
    }

    fn restore(&self, archives: &[PromptArchive]) -> Result<()> {
        self.import_archives(archives, true)
    }
}

impl PgStore {
    /// Writes whole prompts, all or none; `keep_ids` keeps the tag events' ids.
    fn import_archives(&self, archives: &[PromptArchive], keep_ids: bool) -> Result<()> {
        self.write(async |db| {
            for archive in archives {
                let metadata = serde_json::Value::Object(archive.metadata.clone()).to_string();
                let pid: Option<i64> = db
                    .opt(
                        "INSERT INTO prompts (name, created_at, description, metadata, archived_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING id",
                        &[
                            &archive.name,
                            &archive.created_at,
                            &archive.description,
                            &metadata,
                            &archive.archived_at,
                        ],
                    )
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                let Some(pid) = pid else {
                    return Err(StoreError::PromptExists {
                        name: archive.name.clone(),
                    });
                };
                for v in &archive.versions {
                    insert_version_row(db, pid, v).await?;
                }
                for e in &archive.events {
                    let id = keep_ids.then_some(e.id);
                    db.exec(
                        "INSERT INTO prompt_events (prompt_id, action, actor, at, id, forced, \
                         deploy) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, \
                         COALESCE($5, nextval(pg_get_serial_sequence('prompt_events', 'id'))), \
                         $6, $7)",
                        &[
                            &pid,
                            &e.action,
                            &e.actor,
                            &e.at,
                            &id,
                            &e.forced,
                            &e.deploy,
                        ],
                    )
                    .await?;
                }
                // A NULL id is numbered by the table, as in every other write.
                for e in &archive.history {
                    let id = keep_ids.then_some(e.id);
                    db.exec(
                        "INSERT INTO tag_events (prompt_id, tag, action, from_version_id, \
                         to_version_id, actor, message, at, forced, evidence, deploy, id) \
                         OVERRIDING SYSTEM VALUE \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                         COALESCE($12, nextval(pg_get_serial_sequence('tag_events', 'id'))))",
                        &[
                            &pid,
                            &e.tag,
                            &e.action.as_str(),
                            &e.from_version_id,
                            &e.to_version_id,
                            &e.actor,
                            &e.message,
                            &e.at,
                            &e.forced,
                            &e.evidence.as_ref().map(|v| v.to_string()),
                            &e.deploy,
                            &id,
                        ],
                    )
                    .await?;
                }
                for t in &archive.tags {
                    db.exec(
                        "INSERT INTO tags (prompt_id, name, version_id, updated_at, updated_by) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&pid, &t.name, &t.version_id, &t.updated_at, &t.updated_by],
                    )
                    .await?;
                }
            }
            if keep_ids {
                // Later events are numbered after the ones kept.
                db.batch(
                    "SELECT setval(pg_get_serial_sequence('tag_events', 'id'), \
                     (SELECT COALESCE(MAX(id), 0) + 1 FROM tag_events), false); \
                     SELECT setval(pg_get_serial_sequence('prompt_events', 'id'), \
                     (SELECT COALESCE(MAX(id), 0) + 1 FROM prompt_events), false)",
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// The id of a prompt in use: an archived prompt is not found by name.
async fn prompt_id(db: &Db, name: &str) -> Result<Option<i64>> {
    Ok(db
        .opt(
            "SELECT id FROM prompts WHERE name = $1 AND archived_at IS NULL",
            &[&name],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
}

/// The id of a prompt whether archived or not, and whether it is.
async fn any_prompt(db: &Db, name: &str) -> Result<Option<(i64, bool)>> {
    db.opt(
        "SELECT id, archived_at IS NOT NULL FROM prompts WHERE name = $1",
        &[&name],
    )
    .await?
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .transpose()
}

/// When a tag was created: its newest event that brought it into being (a set, or a rollback
/// of a deletion), so a tag deleted and set again counts as new.
const TAG_CREATED: &str = "(SELECT MAX(c.id) FROM tag_events c \
     WHERE c.prompt_id = t.prompt_id AND c.tag = t.name AND c.from_version_id IS NULL)";

/// What a prompt row adds after its latest version's columns.
const PROMPT_FIELDS: &str = "p.created_at, \
     (SELECT COUNT(*) FROM prompt_versions c WHERE c.prompt_id = p.id), \
     (SELECT string_agg(t.name, E'\\n' ORDER BY t.name) FROM tags t WHERE t.prompt_id = p.id), \
     p.description, p.metadata";

fn prompt_from_row(row: &Row) -> Result<(Prompt, PromptVersion)> {
    let latest = version_from_row(row)?;
    let tags: Option<String> = row.try_get(17)?;
    let prompt = Prompt {
        name: latest.prompt.clone(),
        created_at: row.try_get(15)?,
        updated_at: latest.created_at.clone(),
        latest_seq: latest.seq,
        version_count: row.try_get(16)?,
        description: row.try_get(18)?,
        metadata: json_object(row.try_get(19)?, "metadata")?,
        tags: tags
            .map(|t| t.split('\n').map(String::from).collect())
            .unwrap_or_default(),
    };
    Ok((prompt, latest))
}

/// Archives a prompt in use, or restores an archived one, and records it.
async fn set_archived(db: &Db, name: &str, archived: bool, change: &TagChange) -> Result<()> {
    let (pid, _) = any_prompt(db, name)
        .await?
        .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })?;
    // Queue behind any other write to this prompt, then read its state as that write left
    // it: read before the lock, two archives at once would both see it live.
    let was: bool = db
        .one(
            "SELECT archived_at IS NOT NULL FROM prompts WHERE id = $1 FOR UPDATE",
            &[&pid],
        )
        .await?
        .try_get(0)?;
    match (was, archived) {
        (false, true) => {
            let tags: Vec<String> = db
                .query("SELECT name FROM tags WHERE prompt_id = $1", &[&pid])
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
            let allowed = change.policy.check_archive(
                name,
                tags.iter().map(String::as_str),
                change.force,
                change.role,
            )?;
            db.exec(
                "UPDATE prompts SET archived_at = $2 WHERE id = $1",
                &[&pid, &now()],
            )
            .await?;
            record_prompt_event(db, pid, "archive", &change.actor, allowed).await
        }
        (true, false) => {
            db.exec(
                "UPDATE prompts SET archived_at = NULL WHERE id = $1",
                &[&pid],
            )
            .await?;
            record_prompt_event(db, pid, "restore", &change.actor, Allowed::default()).await
        }
        (true, true) => Err(StoreError::UnknownPrompt { name: name.into() }),
        (false, false) => Err(StoreError::NotArchived { name: name.into() }),
    }
}

async fn record_prompt_event(
    db: &Db,
    pid: i64,
    action: &str,
    actor: &str,
    allowed: Allowed,
) -> Result<()> {
    db.exec(
        "INSERT INTO prompt_events (prompt_id, action, actor, at, forced, deploy) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &pid,
            &action,
            &actor,
            &now(),
            &allowed.forced,
            &allowed.deploy,
        ],
    )
    .await?;
    Ok(())
}

async fn require_prompt(db: &Db, name: &str) -> Result<i64> {
    prompt_id(db, name)
        .await?
        .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
}

/// The prompt's id, its row locked until the transaction ends: every write to one prompt's
/// versions and tags queues here, on every machine.
async fn lock_prompt(db: &Db, name: &str) -> Result<i64> {
    db.opt(
        "SELECT id FROM prompts WHERE name = $1 AND archived_at IS NULL FOR UPDATE",
        &[&name],
    )
    .await?
    .map(|r| r.try_get::<_, i64>(0))
    .transpose()?
    .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
}

async fn resolve(db: &Db, pid: i64, name: &str, reference: &VersionRef) -> Result<PromptVersion> {
    let base = format!(
        "SELECT {VERSION_COLUMNS} FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id \
         WHERE v.prompt_id = $1"
    );
    let found = match reference {
        VersionRef::Latest => {
            db.opt(&format!("{base} ORDER BY v.seq DESC LIMIT 1"), &[&pid])
                .await?
        }
        VersionRef::Seq(seq) => {
            db.opt(&format!("{base} AND v.seq = $2"), &[&pid, seq])
                .await?
        }
        VersionRef::Id(id) => {
            db.opt(&format!("{base} AND v.id = $2"), &[&pid, id])
                .await?
        }
        VersionRef::Tag(tag) => {
            let found = db
                .opt(
                    &format!(
                        "{base} AND v.id = (SELECT version_id FROM tags WHERE prompt_id = $1 AND name = $2)"
                    ),
                    &[&pid, tag],
                )
                .await?;
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
                match Box::pin(resolve(db, pid, name, &attempt)).await {
                    Ok(v) => return Ok(v),
                    Err(StoreError::UnknownTag { .. } | StoreError::UnknownVersion { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            None
        }
    };
    match found {
        Some(row) => version_from_row(&row),
        None => Err(StoreError::UnknownVersion {
            prompt: name.into(),
            reference: match reference {
                VersionRef::Any(text) => format!("version, tag or version id '{text}'"),
                other => other.to_string(),
            },
        }),
    }
}

async fn insert_version(
    db: &Db,
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
    insert_version_row(db, pid, &version).await?;
    Ok(version)
}

async fn insert_version_row(db: &Db, pid: i64, v: &PromptVersion) -> Result<()> {
    let template = match &v.template {
        Template::Str(text) => text.clone(),
        Template::Chat(messages) => serde_json::to_string(messages)
            .map_err(|e| StoreError::Corrupt(format!("chat template: {e}")))?,
    };
    db.exec(
        "INSERT INTO prompt_versions (id, prompt_id, seq, template_type, format, template, model, \
         params, metadata, description, message, author, content_hash, created_at, provider) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            &v.id,
            &pid,
            &v.seq,
            &v.template_type.as_str(),
            &v.format.as_str(),
            &template,
            &v.model,
            &serde_json::Value::Object(v.params.clone()).to_string(),
            &serde_json::Value::Object(v.metadata.clone()).to_string(),
            &v.description,
            &v.message,
            &v.author,
            &v.content_hash,
            &v.created_at,
            &v.provider,
        ],
    )
    .await?;
    Ok(())
}

async fn current_tag(db: &Db, pid: i64, tag: &str) -> Result<Option<Tag>> {
    db.opt(
        &format!(
            "SELECT {TAG_COLUMNS} FROM tags t JOIN prompts p ON p.id = t.prompt_id \
             JOIN prompt_versions v ON v.id = t.version_id WHERE t.prompt_id = $1 AND t.name = $2"
        ),
        &[&pid, &tag],
    )
    .await?
    .map(|row| tag_from_row(&row))
    .transpose()
}

/// The one path every tag change takes: check the expectation and the tag policy, update the
/// tag row and append its history entry, inside the caller's transaction, which holds the
/// prompt's row lock. `to` None deletes the tag.
async fn write_tag(
    db: &Db,
    pid: i64,
    name: &str,
    tag: &str,
    to: Option<&str>,
    change: &TagChange,
) -> Result<TagEvent> {
    let from: Option<String> = db
        .opt(
            "SELECT version_id FROM tags WHERE prompt_id = $1 AND name = $2",
            &[&pid, &tag],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
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
                &[&pid, &tag, &version_id, &now, &change.actor],
            )
            .await?;
        }
        None => {
            db.exec(
                "DELETE FROM tags WHERE prompt_id = $1 AND name = $2",
                &[&pid, &tag],
            )
            .await?;
        }
    }
    let id: i64 = db
        .one(
            "INSERT INTO tag_events (prompt_id, tag, action, from_version_id, to_version_id, actor, \
             message, at, forced, evidence, deploy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &pid,
                &tag,
                &action.as_str(),
                &from,
                &to,
                &change.actor,
                &change.message,
                &now,
                &allowed.forced,
                &change.evidence.as_ref().map(|v| v.to_string()),
                &allowed.deploy,
            ],
        )
        .await?
        .try_get(0)?;
    let row = db
        .one(
            &format!("SELECT {EVENT_COLUMNS} {EVENT_JOINS} WHERE e.id = $1"),
            &[&id],
        )
        .await?;
    event_from_row(&row)
}

fn corrupt(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {e}"))
}

fn json_object(text: &str, column: &str) -> Result<JsonObject> {
    serde_json::from_str(text).map_err(|e| corrupt(column, e))
}

fn version_from_row(row: &Row) -> Result<PromptVersion> {
    let template_type = match row.try_get::<_, &str>(3)? {
        "str" => TemplateType::Str,
        _ => TemplateType::Chat,
    };
    let format: TemplateFormat = row
        .try_get::<_, &str>(4)?
        .parse()
        .map_err(|e: String| corrupt("format", e))?;
    let text: String = row.try_get(5)?;
    let template = match template_type {
        TemplateType::Str => Template::Str(text),
        TemplateType::Chat => {
            let messages: Vec<Message> =
                serde_json::from_str(&text).map_err(|e| corrupt("template", e))?;
            Template::Chat(messages)
        }
    };
    Ok(PromptVersion {
        id: row.try_get(0)?,
        prompt: row.try_get(1)?,
        seq: row.try_get(2)?,
        template_type,
        format,
        template,
        model: row.try_get(6)?,
        provider: row.try_get(14)?,
        params: json_object(row.try_get(7)?, "params")?,
        metadata: json_object(row.try_get(8)?, "metadata")?,
        description: row.try_get(9)?,
        message: row.try_get(10)?,
        author: row.try_get(11)?,
        content_hash: row.try_get(12)?,
        created_at: row.try_get(13)?,
    })
}

fn tag_from_row(row: &Row) -> Result<Tag> {
    Ok(Tag {
        prompt: row.try_get(0)?,
        name: row.try_get(1)?,
        version_id: row.try_get(2)?,
        version_seq: row.try_get(3)?,
        updated_at: row.try_get(4)?,
        updated_by: row.try_get(5)?,
    })
}

fn event_from_row(row: &Row) -> Result<TagEvent> {
    let evidence: Option<&str> = row.try_get(12)?;
    Ok(TagEvent {
        id: row.try_get(0)?,
        prompt: row.try_get(1)?,
        tag: row.try_get(2)?,
        action: row
            .try_get::<_, &str>(3)?
            .parse()
            .map_err(|e: String| corrupt("action", e))?,
        from_version_id: row.try_get(4)?,
        from_seq: row.try_get(5)?,
        to_version_id: row.try_get(6)?,
        to_seq: row.try_get(7)?,
        actor: row.try_get(8)?,
        message: row.try_get(9)?,
        at: row.try_get(10)?,
        forced: row.try_get(11)?,
        deploy: row.try_get(13)?,
        evidence: evidence
            .map(|text| serde_json::from_str(text).map_err(|e| corrupt("evidence", e)))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests;
