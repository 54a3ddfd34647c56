//! The team store on PostgreSQL: the only user of PostgreSQL. Connections, schema migrations
//! and transactions; the statements themselves and every rule are `store::logic`'s, run
//! through `db.rs`, so the answers are the SQLite store's. Only the work queue's claims and the
//! bulk writes are written here for PostgreSQL alone.
//!
//! Every write is one transaction that first locks the prompt's row (`FOR UPDATE`), so
//! writers on any machine queue per prompt: version numbers follow each other without gaps,
//! and a tag's expected position and the tag policy are checked where nobody can move the tag
//! in between. Triggers keep versions and the tag history append-only and a successful result
//! final, whatever program connects.

use super::sql::Db;
use super::{Result, Store, StoreError};
use db::PgDb;
use pool::{Db as Conn, Pool, block};

pub mod conninfo;
mod db;
pub(crate) mod feed;
pub(crate) mod pool;

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
    include_str!("migrations/0011_production.sql"),
    include_str!("migrations/0012_rollouts.sql"),
    include_str!("migrations/0013_datasets.sql"),
    include_str!("migrations/0014_dataset_examples.sql"),
    include_str!("migrations/0015_task_experiments.sql"),
    include_str!("migrations/0016_result_extra.sql"),
    include_str!("migrations/0017_unlinked_experiments.sql"),
    include_str!("migrations/0018_api_tokens.sql"),
    include_str!("migrations/0019_span_compression.sql"),
    include_str!("migrations/0020_routing_notify.sql"),
    include_str!("migrations/0021_work_items_leased.sql"),
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
    /// Started by the first `routing_feed` call (a server's), never by the CLI.
    feed: std::sync::OnceLock<std::sync::Arc<super::RoutingFeed>>,
    floors: super::logic::ClaimFloors,
}

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
        Ok(PgStore {
            pool,
            feed: std::sync::OnceLock::new(),
            floors: Default::default(),
        })
    }

    /// The newest schema version this build knows.
    pub fn latest_schema_version() -> i64 {
        MIGRATIONS.len() as i64
    }

    /// Reads what the database holds, refusing (untouched) one from a newer runner or one
    /// that belongs to another program.
    fn inspect(&self) -> Result<Found> {
        let display = self.pool.display().to_string();
        self.read_async(async |db| {
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
        self.write_async(async |db| {
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
    fn read_async<T>(&self, work: impl AsyncFnOnce(&Conn) -> Result<T>) -> Result<T> {
        let conn = self.pool.get()?;
        block(work(&conn))
    }

    /// Runs `work` in one transaction, committed when it returns Ok and rolled back otherwise.
    fn write_async<T>(&self, work: impl AsyncFnOnce(&Conn) -> Result<T>) -> Result<T> {
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

async fn schema_version(db: &Conn) -> Result<i64> {
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
        self.read_async(async |db| schema_version(db).await)
    }

    fn location(&self) -> String {
        self.pool.display().to_string()
    }

    fn routing_feed(&self) -> Option<std::sync::Arc<super::RoutingFeed>> {
        let mut started = false;
        let feed = self.feed.get_or_init(|| {
            started = true;
            std::sync::Arc::default()
        });
        if started {
            self.pool.start_feed(std::sync::Arc::clone(feed));
        }
        Some(std::sync::Arc::clone(feed))
    }
}

impl PgStore {
    /// Runs `work` on a pooled connection, outside a transaction, as `store::logic` sees it.
    fn connection<T>(&self, work: impl FnOnce(&PgDb<'_>) -> Result<T>) -> Result<T> {
        let conn = self.pool.get()?;
        work(&PgDb(&conn))
    }

    /// Runs `work` in one transaction, committed when it returns Ok and rolled back otherwise.
    fn transaction<T>(&self, work: impl FnOnce(&PgDb<'_>) -> Result<T>) -> Result<T> {
        let conn = self.pool.get()?;
        block(conn.begin())?;
        match work(&PgDb(&conn)) {
            Ok(value) => {
                block(conn.commit())?;
                Ok(value)
            }
            Err(e) => {
                block(conn.rollback());
                Err(e)
            }
        }
    }
}

impl super::logic::Backend for PgStore {
    fn read<T>(&self, work: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        self.connection(|db| work(db))
    }

    fn write<T>(&self, work: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        self.transaction(|db| work(db))
    }

    fn claim_floors(&self) -> &super::logic::ClaimFloors {
        &self.floors
    }

    fn routing_changed(&self) {
        if let Some(feed) = self.feed.get() {
            feed.changed();
        }
    }
}

#[cfg(test)]
mod tests;
