//! The embedded SQLite store: the only user of SQLite. Schema migrations, every read and write,
//! transactions.
//!
//! One connection writes (behind a mutex, every write an IMMEDIATE transaction); reads take a
//! connection from a small pool, so in WAL mode they never wait for a writer, in this process
//! or another. An in-memory store has one connection for both.

use super::{BuildVersion, PromptStore, Result, Store, StoreError, TagChange, TagOutcome};
use crate::model::{
    JsonObject, Message, NewVersion, Prompt, PromptArchive, PromptUpdate, PromptVersion, Tag,
    TagAction, TagEvent, Template, TemplateFormat, TemplateType, VersionRef, content_hash, now,
};
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

mod experiments;
mod lookups;
mod prompt_fields;
mod work;

/// Numbered migrations; the schema version is `PRAGMA user_version` = number applied.
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

/// Long enough for a burst of concurrent CLI writers to queue behind each other.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle read connections kept for reuse; more are opened under load and closed afterwards.
const MAX_IDLE_READERS: usize = 16;

impl From<rusqlite::Error> for StoreError {
    /// A damaged file can surface in any statement, not only at open: it gets its own kind, and
    /// so its own hint.
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Damaged {
                reason: e.to_string(),
            },
            _ => StoreError::Backend(Box::new(e)),
        }
    }
}

pub struct SqliteStore {
    /// None for an in-memory store.
    path: Option<PathBuf>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Opened for reading only: every connection is read-only, the writer slot's included.
    read_only: bool,
}

const VERSION_COLUMNS: &str = "v.id, p.name, v.seq, v.template_type, v.format, v.template, \
     v.model, v.params, v.metadata, v.description, v.message, v.author, v.content_hash, v.created_at, v.provider";

const EVENT_COLUMNS: &str = "e.id, p.name, e.tag, e.action, e.from_version_id, fv.seq, \
     e.to_version_id, tv.seq, e.actor, e.message, e.at, e.forced, e.evidence, e.deploy";

const EVENT_JOINS: &str = "FROM tag_events e JOIN prompts p ON p.id = e.prompt_id \
     LEFT JOIN prompt_versions fv ON fv.id = e.from_version_id \
     LEFT JOIN prompt_versions tv ON tv.id = e.to_version_id";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema to the newest version.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                reason: format!("directory {} does not exist", parent.display()),
            });
        }
        let mut conn = connect(path)?;
        // The schema version is checked before anything can write to the file, so a store from
        // a newer runner (or a file that is not a store) is refused untouched.
        let found = schema_version(&conn, path)?;
        check_not_newer(found, path)?;
        check_owned(&conn, found, path)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| open_error(path, e))?;
        debug_assert!(mode == "wal");
        if found < Self::latest_schema_version() {
            migrate(&mut conn, path)?;
        }
        Ok(SqliteStore {
            path: Some(path.to_path_buf()),
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            read_only: false,
        })
    }

    /// Opens an existing store read-only: nothing is created, migrated or switched to WAL.
    /// None for an SQLite file that holds nothing yet (it reads as an empty store).
    pub fn open_read_only(path: &Path) -> Result<Option<SqliteStore>> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let found = schema_version(&conn, path)?;
        check_not_newer(found, path)?;
        check_owned(&conn, found, path)?;
        if found == 0 {
            return Ok(None);
        }
        if found < Self::latest_schema_version() {
            return Err(StoreError::OlderSchema {
                path: path.to_path_buf(),
                found,
                supported: Self::latest_schema_version(),
            });
        }
        Ok(Some(SqliteStore {
            path: Some(path.to_path_buf()),
            writer: Mutex::new(conn),
            // The writer slot holds the first read-only connection and is never written;
            // reads that overlap it open more, read-only too.
            readers: Mutex::new(Vec::new()),
            read_only: true,
        }))
    }

    /// An empty store in memory.
    pub fn open_in_memory() -> Result<SqliteStore> {
        let mut conn = Connection::open_in_memory()?;
        configure(&conn)?;
        migrate(&mut conn, Path::new(":memory:"))?;
        Ok(SqliteStore {
            path: None,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            read_only: false,
        })
    }

    /// The newest schema version this build knows.
    pub fn latest_schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    /// Runs `work` on a read connection.
    /// Two reads may run at once (a comparison streams both sides together), so a read never
    /// waits for another: each takes a connection of its own, read-only ones for a store
    /// opened read-only.
    fn read<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(path) = self.path.as_ref() else {
            return work(&lock(&self.writer));
        };
        if self.read_only
            && let Ok(conn) = self.writer.try_lock()
        {
            return work(&conn);
        }
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None if self.read_only => connect_read_only(path)?,
            None => connect(path)?,
        };
        let result = work(&conn);
        let mut idle = lock(&self.readers);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }

    /// Runs `work` in one write transaction, committed when it returns Ok.
    fn write<T>(&self, work: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        // IMMEDIATE takes the write lock up front, so a read-then-write transaction never fails
        // half-way with SQLITE_BUSY: writers queue on the busy timeout instead.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = work(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// Another read-only connection to a store opened read-only (already checked).
fn connect_read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The first statement that reads the file tells a non-database apart.
    schema_version(&conn, path)?;
    configure(&conn)?;
    Ok(conn)
}

/// A database at schema 0 that already holds tables belongs to another program: runner
/// neither adds its tables to it nor switches its journal mode.
fn check_owned(conn: &Connection, found: i64, path: &Path) -> Result<()> {
    if found != 0 {
        return Ok(());
    }
    let objects: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| open_error(path, e))?;
    if objects > 0 {
        return Err(StoreError::NotRunnerStore {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn check_not_newer(found: i64, path: &Path) -> Result<()> {
    if found > SqliteStore::latest_schema_version() {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SqliteStore::latest_schema_version(),
        });
    }
    Ok(())
}

impl Store for SqliteStore {
    fn schema_version(&self) -> Result<i64> {
        self.read(|conn| Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?))
    }

    fn location(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => ":memory:".into(),
        }
    }
}

impl PromptStore for SqliteStore {
    fn create_prompt(
        &self,
        name: &str,
        version: NewVersion,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion> {
        self.write(|tx| {
            if let Some((_, archived)) = any_prompt(tx, name)? {
                return Err(if archived {
                    StoreError::PromptArchived { name: name.into() }
                } else {
                    StoreError::PromptExists { name: name.into() }
                });
            }
            let now = now();
            tx.execute(
                "INSERT INTO prompts (name, created_at, description) VALUES (?1, ?2, ?3)",
                params![name, now, version.description],
            )?;
            let pid = tx.last_insert_rowid();
            let created = insert_version(tx, pid, name, 1, version, &now)?;
            for tag in tags {
                write_tag(tx, pid, name, tag, Some(&created.id), change)?;
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
        self.write(|tx| {
            let pid = require_prompt(tx, name)?;
            let latest = resolve(tx, pid, name, &VersionRef::Latest)?;
            let version = build(&latest)?;
            let created = insert_version(tx, pid, name, latest.seq + 1, version, &now())?;
            for tag in tags {
                write_tag(tx, pid, name, tag, Some(&created.id), change)?;
            }
            Ok(created)
        })
    }

    fn version(&self, name: &str, reference: &VersionRef) -> Result<PromptVersion> {
        self.read(|conn| {
            let pid = require_prompt(conn, name)?;
            resolve(conn, pid, name, reference)
        })
    }

    fn version_by_id(&self, id: &str) -> Result<Option<PromptVersion>> {
        self.read(|conn| lookups::version_by_id(conn, id))
    }

    fn versions(&self, name: &str) -> Result<Vec<PromptVersion>> {
        self.read(|conn| {
            let pid = require_prompt(conn, name)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id \
                 WHERE v.prompt_id = ?1 ORDER BY v.seq DESC"
            ))?;
            let rows = stmt.query_map([pid], version_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn prompts_page(
        &self,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Prompt, PromptVersion)>> {
        self.read(|conn| lookups::prompts_page(conn, from, limit))
    }

    fn tags(&self, name: &str) -> Result<Vec<Tag>> {
        self.read(|conn| {
            let pid = require_prompt(conn, name)?;
            let mut stmt = conn.prepare_cached(
                "SELECT p.name, t.name, t.version_id, v.seq, t.updated_at, t.updated_by \
                 FROM tags t JOIN prompts p ON p.id = t.prompt_id \
                 JOIN prompt_versions v ON v.id = t.version_id \
                 WHERE t.prompt_id = ?1 ORDER BY t.name",
            )?;
            let rows = stmt.query_map([pid], tag_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn tag(&self, name: &str, tag: &str) -> Result<Option<Tag>> {
        self.read(|conn| {
            let pid = require_prompt(conn, name)?;
            current_tag(conn, pid, tag)
        })
    }

    fn tag_target(&self, name: &str, tag: &str) -> Result<(String, String)> {
        self.read(|conn| lookups::tag_target(conn, name, tag))
    }

    fn latest_target(&self, name: &str) -> Result<(String, String)> {
        self.read(|conn| lookups::latest_target(conn, name))
    }

    fn version_tags(&self, version_id: &str) -> Result<Vec<(Tag, Option<String>)>> {
        self.read(|conn| lookups::version_tags(conn, version_id))
    }

    fn prompt_tags(&self, name: &str) -> Result<Vec<(Tag, Option<String>)>> {
        self.read(|conn| lookups::prompt_tags(conn, name))
    }

    fn set_tag(
        &self,
        name: &str,
        tag: &str,
        target: &VersionRef,
        change: &TagChange,
    ) -> Result<TagOutcome> {
        self.write(|tx| {
            let pid = require_prompt(tx, name)?;
            let version = resolve(tx, pid, name, target)?;
            if let Some(current) = current_tag(tx, pid, tag)?
                && current.version_id == version.id
                && change.expect.holds(Some(&current.version_id))
            {
                return Ok(TagOutcome::Unchanged(current));
            }
            let event = write_tag(tx, pid, name, tag, Some(&version.id), change)?;
            Ok(TagOutcome::Changed(event))
        })
    }

    fn delete_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent> {
        self.write(|tx| {
            let pid = require_prompt(tx, name)?;
            if current_tag(tx, pid, tag)?.is_none() {
                return Err(StoreError::UnknownTag {
                    prompt: name.into(),
                    tag: tag.into(),
                });
            }
            let change = TagChange {
                action: Some(TagAction::Delete),
                ..change.clone()
            };
            write_tag(tx, pid, name, tag, None, &change)
        })
    }

    fn rollback_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent> {
        self.write(|tx| {
            let pid = require_prompt(tx, name)?;
            let last: Option<Option<String>> = tx
                .query_row(
                    "SELECT from_version_id FROM tag_events WHERE prompt_id = ?1 AND tag = ?2 \
                     ORDER BY id DESC LIMIT 1",
                    params![pid, tag],
                    |r| r.get(0),
                )
                .optional()?;
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
            write_tag(tx, pid, name, tag, Some(&previous), &change)
        })
    }

    fn history(&self, name: &str, tag: Option<&str>) -> Result<Vec<TagEvent>> {
        self.read(|conn| {
            let pid = require_prompt(conn, name)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} {EVENT_JOINS} \
                 WHERE e.prompt_id = ?1 AND (?2 IS NULL OR e.tag = ?2) ORDER BY e.id"
            ))?;
            let rows = stmt.query_map(params![pid, tag], event_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn archive(&self, name: &str) -> Result<PromptArchive> {
        self.read(|conn| prompt_fields::archive(conn, name))
    }

    fn prompt(&self, name: &str) -> Result<(Prompt, PromptVersion)> {
        self.read(|conn| {
            lookups::prompt(conn, name)?
                .ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
        })
    }

    fn update_prompt(&self, name: &str, update: &PromptUpdate, actor: &str) -> Result<()> {
        self.write(|tx| prompt_fields::update(tx, name, update, actor))
    }

    fn archive_prompt(&self, name: &str, change: &TagChange) -> Result<()> {
        self.write(|tx| prompt_fields::set_archived(tx, name, true, change))
    }

    fn restore_prompt(&self, name: &str, actor: &str) -> Result<()> {
        let change = TagChange::by(actor);
        self.write(|tx| prompt_fields::set_archived(tx, name, false, &change))
    }

    fn archived_prompts(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name FROM prompts WHERE archived_at IS NOT NULL ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn import(&self, archives: &[PromptArchive]) -> Result<()> {
        self.import_archives(archives, false)
    }

    fn restore(&self, archives: &[PromptArchive]) -> Result<()> {
        self.import_archives(archives, true)
    }
}

impl SqliteStore {
    /// Writes whole prompts, all or none; `keep_ids` keeps the tag events' ids.
    fn import_archives(&self, archives: &[PromptArchive], keep_ids: bool) -> Result<()> {
        self.write(|tx| {
            for archive in archives {
                if any_prompt(tx, &archive.name)?.is_some() {
                    return Err(StoreError::PromptExists {
                        name: archive.name.clone(),
                    });
                }
                tx.execute(
                    "INSERT INTO prompts (name, created_at, description, metadata, archived_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        archive.name,
                        archive.created_at,
                        archive.description,
                        serde_json::Value::Object(archive.metadata.clone()).to_string(),
                        archive.archived_at,
                    ],
                )?;
                let pid = tx.last_insert_rowid();
                for e in &archive.events {
                    tx.execute(
                        "INSERT INTO prompt_events (prompt_id, action, actor, at, id, forced, \
                         deploy) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            pid,
                            e.action,
                            e.actor,
                            e.at,
                            keep_ids.then_some(e.id),
                            e.forced,
                            e.deploy
                        ],
                    )?;
                }
                for v in &archive.versions {
                    insert_version_row(tx, pid, v)?;
                }
                // A NULL id is numbered by the table, as in every other write.
                for e in &archive.history {
                    tx.execute(
                        "INSERT INTO tag_events (prompt_id, tag, action, from_version_id, \
                         to_version_id, actor, message, at, forced, evidence, id, deploy) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                        params![
                            pid,
                            e.tag,
                            e.action.as_str(),
                            e.from_version_id,
                            e.to_version_id,
                            e.actor,
                            e.message,
                            e.at,
                            e.forced,
                            e.evidence.as_ref().map(|v| v.to_string()),
                            keep_ids.then_some(e.id),
                            e.deploy,
                        ],
                    )?;
                }
                for t in &archive.tags {
                    tx.execute(
                        "INSERT INTO tags (prompt_id, name, version_id, updated_at, updated_by) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![pid, t.name, t.version_id, t.updated_at, t.updated_by],
                    )?;
                }
            }
            Ok(())
        })
    }
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Damaged {
            reason: e.to_string(),
        },
        _ => StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    }
}

fn schema_version(conn: &Connection, path: &Path) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| open_error(path, e))
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    // Several processes may open a new store at once: the version is read again under the
    // write lock so each migration runs exactly once.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = schema_version(&tx, path)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

/// The id of a prompt in use: an archived prompt is not found by name.
fn prompt_id(conn: &Connection, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM prompts WHERE name = ?1 AND archived_at IS NULL")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

/// The id of a prompt whether archived or not, and whether it is.
fn any_prompt(conn: &Connection, name: &str) -> Result<Option<(i64, bool)>> {
    Ok(conn
        .prepare_cached("SELECT id, archived_at IS NOT NULL FROM prompts WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

fn require_prompt(conn: &Connection, name: &str) -> Result<i64> {
    prompt_id(conn, name)?.ok_or_else(|| StoreError::UnknownPrompt { name: name.into() })
}

fn resolve(
    conn: &Connection,
    pid: i64,
    name: &str,
    reference: &VersionRef,
) -> Result<PromptVersion> {
    let base = format!(
        "SELECT {VERSION_COLUMNS} FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id \
         WHERE v.prompt_id = ?1"
    );
    let found = match reference {
        VersionRef::Latest => conn
            .prepare_cached(&format!("{base} ORDER BY v.seq DESC LIMIT 1"))?
            .query_row(params![pid], version_from_row)
            .optional()?,
        VersionRef::Seq(seq) => conn
            .prepare_cached(&format!("{base} AND v.seq = ?2"))?
            .query_row(params![pid, seq], version_from_row)
            .optional()?,
        VersionRef::Id(id) => conn
            .prepare_cached(&format!("{base} AND v.id = ?2"))?
            .query_row(params![pid, id], version_from_row)
            .optional()?,
        VersionRef::Tag(tag) => {
            let found = conn
                .prepare_cached(&format!(
                    "{base} AND v.id = (SELECT version_id FROM tags WHERE prompt_id = ?1 AND name = ?2)"
                ))?
                .query_row(params![pid, tag], version_from_row)
                .optional()?;
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
                match resolve(conn, pid, name, &attempt) {
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
    tx: &Transaction<'_>,
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
    insert_version_row(tx, pid, &version)?;
    Ok(version)
}

fn insert_version_row(tx: &Transaction<'_>, pid: i64, v: &PromptVersion) -> Result<()> {
    let template = match &v.template {
        Template::Str(text) => text.clone(),
        Template::Chat(messages) => serde_json::to_string(messages)
            .map_err(|e| StoreError::Corrupt(format!("chat template: {e}")))?,
    };
    tx.prepare_cached(
        "INSERT INTO prompt_versions (id, prompt_id, seq, template_type, format, template, model, \
         params, metadata, description, message, author, content_hash, created_at, provider) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        v.id,
        pid,
        v.seq,
        v.template_type.as_str(),
        v.format.as_str(),
        template,
        v.model,
        serde_json::Value::Object(v.params.clone()).to_string(),
        serde_json::Value::Object(v.metadata.clone()).to_string(),
        v.description,
        v.message,
        v.author,
        v.content_hash,
        v.created_at,
        v.provider,
    ])?;
    Ok(())
}

fn current_tag(conn: &Connection, pid: i64, tag: &str) -> Result<Option<Tag>> {
    Ok(conn
        .prepare_cached(
            "SELECT p.name, t.name, t.version_id, v.seq, t.updated_at, t.updated_by \
             FROM tags t JOIN prompts p ON p.id = t.prompt_id \
             JOIN prompt_versions v ON v.id = t.version_id \
             WHERE t.prompt_id = ?1 AND t.name = ?2",
        )?
        .query_row(params![pid, tag], tag_from_row)
        .optional()?)
}

/// The one path every tag change takes: check the expectation and the tag policy, update the
/// tag row and append its history entry, inside the caller's transaction. `to` None deletes
/// the tag. Without an explicit action the change is a `set` (new tag) or a `move`.
fn write_tag(
    tx: &Transaction<'_>,
    pid: i64,
    name: &str,
    tag: &str,
    to: Option<&str>,
    change: &TagChange,
) -> Result<TagEvent> {
    let from: Option<String> = tx
        .query_row(
            "SELECT version_id FROM tags WHERE prompt_id = ?1 AND name = ?2",
            params![pid, tag],
            |r| r.get(0),
        )
        .optional()?;
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
            tx.execute(
                "INSERT INTO tags (prompt_id, name, version_id, updated_at, updated_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (prompt_id, name) DO UPDATE SET version_id = excluded.version_id, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                params![pid, tag, version_id, now, change.actor],
            )?;
        }
        None => {
            tx.execute(
                "DELETE FROM tags WHERE prompt_id = ?1 AND name = ?2",
                params![pid, tag],
            )?;
        }
    }
    tx.execute(
        "INSERT INTO tag_events (prompt_id, tag, action, from_version_id, to_version_id, actor, \
         message, at, forced, evidence, deploy) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            pid,
            tag,
            action.as_str(),
            from,
            to,
            change.actor,
            change.message,
            now,
            allowed.forced,
            change.evidence.as_ref().map(|v| v.to_string()),
            allowed.deploy,
        ],
    )?;
    let id = tx.last_insert_rowid();
    let event = tx.query_row(
        &format!("SELECT {EVENT_COLUMNS} {EVENT_JOINS} WHERE e.id = ?1"),
        [id],
        event_from_row,
    )?;
    debug_assert_eq!(event.prompt, name);
    Ok(event)
}

fn json_object(text: &str, column: usize) -> rusqlite::Result<JsonObject> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn parse_column<T: std::str::FromStr<Err = String>>(
    text: &str,
    column: usize,
) -> rusqlite::Result<T> {
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

fn version_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PromptVersion> {
    let template_type: String = row.get(3)?;
    let template_type = match template_type.as_str() {
        "str" => TemplateType::Str,
        _ => TemplateType::Chat,
    };
    let format: TemplateFormat = parse_column(&row.get::<_, String>(4)?, 4)?;
    let text: String = row.get(5)?;
    let template = match template_type {
        TemplateType::Str => Template::Str(text),
        TemplateType::Chat => {
            let messages: Vec<Message> = serde_json::from_str(&text).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    5,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?;
            Template::Chat(messages)
        }
    };
    Ok(PromptVersion {
        id: row.get(0)?,
        prompt: row.get(1)?,
        seq: row.get(2)?,
        template_type,
        format,
        template,
        model: row.get(6)?,
        provider: row.get(14)?,
        params: json_object(&row.get::<_, String>(7)?, 7)?,
        metadata: json_object(&row.get::<_, String>(8)?, 8)?,
        description: row.get(9)?,
        message: row.get(10)?,
        author: row.get(11)?,
        content_hash: row.get(12)?,
        created_at: row.get(13)?,
    })
}

fn tag_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Tag> {
    Ok(Tag {
        prompt: row.get(0)?,
        name: row.get(1)?,
        version_id: row.get(2)?,
        version_seq: row.get(3)?,
        updated_at: row.get(4)?,
        updated_by: row.get(5)?,
    })
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TagEvent> {
    let evidence: Option<String> = row.get(12)?;
    Ok(TagEvent {
        id: row.get(0)?,
        prompt: row.get(1)?,
        tag: row.get(2)?,
        action: parse_column(&row.get::<_, String>(3)?, 3)?,
        from_version_id: row.get(4)?,
        from_seq: row.get(5)?,
        to_version_id: row.get(6)?,
        to_seq: row.get(7)?,
        actor: row.get(8)?,
        message: row.get(9)?,
        at: row.get(10)?,
        forced: row.get(11)?,
        deploy: row.get(13)?,
        evidence: evidence
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        12,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })
            })
            .transpose()?,
    })
}

#[cfg(test)]
mod tests;
