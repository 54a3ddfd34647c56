//! Connections to PostgreSQL for a synchronous store: a small pool of `tokio_postgres` clients
//! whose socket tasks run on the store's own runtime thread, each with its prepared statements. It
//! knows no table and runs no statement of its own beyond `BEGIN`, `COMMIT` and `ROLLBACK`: what
//! runs on a connection is `db.rs`'s and `store::logic`'s, and how to reach the server is
//! `conninfo`'s.
//!
//! The store's traits are synchronous: the CLI's commands call them from plain threads, and
//! the SQLite backend blocks on its file whatever the caller. Rather than make every trait
//! async for one backend, the PostgreSQL backend keeps its own runtime thread, which runs the
//! sockets; a call waits for its answer on the calling thread (`block`). Async callers (the
//! API, the web UI, the row engine's cache lookups) hand store calls to
//! `tokio::task::spawn_blocking`; and should a call ever arrive on a runtime worker thread,
//! `block` says so to tokio (`block_in_place`), which moves that worker's other tasks to
//! another thread instead of stalling them.

use super::conninfo::Target;
use crate::store::{Result, StoreError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

/// How long a caller waits for a free connection when all of them are in use.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(60);

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One connection and the statements prepared on it.
pub struct Db {
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
    /// False while a transaction is open: such a connection is closed, never reused, if the
    /// work in it panicked.
    clean: std::cell::Cell<bool>,
}

impl Db {
    async fn statement(&self, sql: &str) -> Result<Statement> {
        if let Some(found) = self.statements.borrow().get(sql) {
            return Ok(found.clone());
        }
        let prepared = self.client.prepare(sql).await?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }

    pub async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query(&statement, params).await?)
    }

    pub async fn one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        let statement = self.statement(sql).await?;
        Ok(self.client.query_one(&statement, params).await?)
    }

    pub async fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        let statement = self.statement(sql).await?;
        Ok(self.client.execute(&statement, params).await?)
    }

    /// Statements without parameters, sent as they are (BEGIN, COMMIT, a migration).
    pub async fn batch(&self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql).await?)
    }

    /// Calls `visit` with each row as it arrives, without holding the result in memory.
    pub async fn stream(
        &self,
        sql: &str,
        params: Params<'_>,
        mut visit: impl FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        use futures::TryStreamExt;
        let statement = self.statement(sql).await?;
        let rows = self
            .client
            .query_raw(&statement, params.iter().copied())
            .await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.try_next().await? {
            visit(row)?;
        }
        Ok(())
    }

    pub async fn begin(&self) -> Result<()> {
        self.clean.set(false);
        self.batch("BEGIN").await
    }

    pub async fn commit(&self) -> Result<()> {
        self.batch("COMMIT").await?;
        self.clean.set(true);
        Ok(())
    }

    pub async fn rollback(&self) {
        if self.batch("ROLLBACK").await.is_ok() {
            self.clean.set(true);
        }
    }
}

struct State {
    idle: Vec<Db>,
    /// Connections open (idle or checked out).
    open: usize,
}

pub struct Pool {
    /// Runs every connection's socket task; None once dropped.
    runtime: Option<tokio::runtime::Runtime>,
    target: Target,
    state: Mutex<State>,
    freed: Condvar,
}

/// A checked-out connection, back in the pool when dropped.
pub struct Conn<'a> {
    pool: &'a Pool,
    db: Option<Db>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db.as_ref().expect("a checked-out connection")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let db = self.db.take().expect("a checked-out connection");
        let mut state = self.pool.lock();
        if db.clean.get() && !db.client.is_closed() {
            state.idle.push(db);
        } else {
            state.open -= 1;
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is refused inside an async task; shutting it down
        // in the background never is.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Pool {
    pub fn new(target: Target) -> Result<Pool> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("runner-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Open {
                path: target.display.clone().into(),
                reason: format!("cannot start the connection thread: {e}"),
            })?;
        Ok(Pool {
            runtime: Some(runtime),
            target,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        })
    }

    pub fn display(&self) -> &str {
        &self.target.display
    }

    /// Starts the routing feed's listener beside the pool's sockets.
    pub fn start_feed(&self, feed: Arc<crate::store::RoutingFeed>) {
        super::feed::start(
            self.runtime.as_ref().expect("a live pool").handle(),
            self.target.config.clone(),
            feed,
        );
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection: an idle one, a new one while fewer than the pool size are open, or the
    /// next one given back.
    pub fn get(&self) -> Result<Conn<'_>> {
        let deadline = std::time::Instant::now() + CHECKOUT_TIMEOUT;
        let mut state = self.lock();
        loop {
            if let Some(db) = state.idle.pop() {
                if db.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    db: Some(db),
                });
            }
            if state.open < self.target.pool_size {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(db) => Ok(Conn {
                        pool: self,
                        db: Some(db),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(StoreError::Open {
                    path: self.target.display.clone().into(),
                    reason: format!(
                        "all {} connections stayed busy for {} s",
                        self.target.pool_size,
                        CHECKOUT_TIMEOUT.as_secs()
                    ),
                });
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Opens a connection on the runtime thread (a socket needs the runtime's reactor) and
    /// leaves its socket task running there.
    pub fn connect(&self) -> Result<Db> {
        let config = self.target.config.clone();
        let (sent, received) = std::sync::mpsc::sync_channel(1);
        self.runtime
            .as_ref()
            .expect("a live pool")
            .spawn(async move {
                let connected = config.connect(NoTls).await.map(|(client, connection)| {
                    tokio::spawn(async move {
                        // The socket task ends when the client is dropped or the server
                        // goes away; the client sees the latter as `is_closed`.
                        let _ = connection.await;
                    });
                    client
                });
                let _ = sent.send(connected);
            });
        let client = received
            .recv()
            .map_err(|_| StoreError::Open {
                path: self.target.display.clone().into(),
                reason: "the connection thread stopped".into(),
            })?
            .map_err(|e| StoreError::Open {
                path: self.target.display.clone().into(),
                reason: super::describe(&e),
            })?;
        Ok(Db {
            client,
            statements: RefCell::default(),
            clean: std::cell::Cell::new(true),
        })
    }
}

/// Waits for a client future on this thread (see the module comment): the future only talks
/// to its socket task, which runs on the pool's runtime.
pub fn block<T>(work: impl std::future::Future<Output = T>) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => {
            tokio::task::block_in_place(|| futures::executor::block_on(work))
        }
        _ => futures::executor::block_on(work),
    }
}
