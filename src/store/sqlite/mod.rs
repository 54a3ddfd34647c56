//! The embedded SQLite store: the only user of SQLite. Connections, schema migrations and
//! transactions; the statements themselves and every rule are `store::logic`'s, run through
//! `db.rs`, and only the work queue's claims are written here for SQLite alone.
//!
//! One connection writes (behind a mutex, every write an IMMEDIATE transaction); reads take a
//! connection from a small pool, so in WAL mode they never wait for a writer, in this process
//! or another. An in-memory store has one connection for both.

use super::sql::Db;
use super::{Result, Store, StoreError};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

mod db;

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
    include_str!("migrations/0011_production.sql"),
    include_str!("migrations/0012_rollouts.sql"),
    include_str!("migrations/0013_datasets.sql"),
    include_str!("migrations/0014_dataset_examples.sql"),
    include_str!("migrations/0015_task_experiments.sql"),
    include_str!("migrations/0016_result_extra.sql"),
    include_str!("migrations/0017_unlinked_experiments.sql"),
    include_str!("migrations/0018_api_tokens.sql"),
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
    floors: super::logic::ClaimFloors,
}

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
        if found == 0 {
            // Only a file with nothing in it yet takes a page size (see `PAGE_SIZE`).
            conn.pragma_update(None, "page_size", PAGE_SIZE)
                .map_err(|e| open_error(path, e))?;
        }
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
            floors: Default::default(),
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
        plan_once(&conn)?;
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
            floors: Default::default(),
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
            floors: Default::default(),
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

/// The page size of a new store file: 16 KiB, not SQLite's 4 KiB. A production span is about
/// 5 KB (attributes, messages, variables), more than a 4 KiB page holds: each one spilled into
/// an overflow page, so ingest wrote 1.25 pages a span against 0.33, and SQLite's work goes by
/// the page (a WAL frame, a cache slot, a checksum each). With 16 KiB pages span ingest runs
/// about a third faster (README, Performance); experiments write no more than before, since
/// results are written without a statement journal (`db::write_batch`). A store created
/// before keeps its page size.
const PAGE_SIZE: i64 = 16384;

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    plan_once(conn)?;
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
    plan_once(&conn)?;
    Ok(conn)
}

/// A statement's plan is made once, when it is prepared, not again for each new value bound
/// to it. Without this, SQLite (built with STAT4) marks a join's parameters as able to change
/// the plan, and every execution of a cached statement with a new value is compiled afresh:
/// a third of the server's time on a tag lookup went to parsing the same SQL again. The store
/// keeps no statistics tables, so the plans are the ones SQLite would pick anyway.
fn plan_once(conn: &Connection) -> Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
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
    // A migration may rebuild a table others refer to (SQLite's documented way to change a
    // column's constraints): foreign keys are off while migrations run (the pragma is a no-op
    // inside a transaction, so it is set around it) and every reference is checked before the
    // transaction commits.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = migrate_in_transaction(conn, path);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

fn migrate_in_transaction(conn: &mut Connection, path: &Path) -> Result<()> {
    // Several processes may open a new store at once: the version is read again under the
    // write lock so each migration runs exactly once.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = schema_version(&tx, path)?;
    if found >= MIGRATIONS.len() as i64 {
        return Ok(());
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    let dangling: i64 = tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    if dangling > 0 {
        return Err(StoreError::Corrupt(format!(
            "{dangling} rows refer to rows that do not exist after the schema update; nothing was changed"
        )));
    }
    tx.commit()?;
    Ok(())
}

impl super::logic::Backend for SqliteStore {
    fn read<T>(&self, work: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        SqliteStore::read(self, |conn| work(conn))
    }

    fn write<T>(&self, work: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        SqliteStore::write(self, |tx| work(&**tx))
    }

    fn claim_floors(&self) -> &super::logic::ClaimFloors {
        &self.floors
    }

    fn reads_locally(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
