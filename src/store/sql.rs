//! The narrow layer between the store's algorithms and a database: a statement with its
//! arguments in, rows out, inside whatever transaction the backend opened. This is the whole
//! of what a backend must provide for the algorithms in `store::logic`; everything else a
//! backend file holds is what really differs (connections, migrations, bulk writes, the
//! work queue's locking).
//!
//! Statements are written once with PostgreSQL's `$1` placeholders; the SQLite side rewrites
//! them to `?1`. The few texts that differ by dialect are asked of `Dialect`. This module knows
//! no table and no model type, and it must not: it moves values, never meaning.

use super::{Result, StoreError};

/// The two SQL dialects runner speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// What a `SELECT` that is about to write to the rows it reads ends with: PostgreSQL locks
    /// the rows; SQLite's IMMEDIATE transaction already holds the whole file.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// A column that orders a table's rows by insertion.
    pub fn insert_order(self) -> &'static str {
        match self {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "ord",
        }
    }

    /// The names of a prompt's tags (`p` in the outer query), sorted, one a line.
    pub fn tag_names(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "(SELECT group_concat(t.name, char(10)) FROM \
                 (SELECT name FROM tags WHERE prompt_id = p.id ORDER BY name) t)"
            }
            Dialect::Postgres => {
                "(SELECT string_agg(t.name, E'\\n' ORDER BY t.name) FROM tags t \
                 WHERE t.prompt_id = p.id)"
            }
        }
    }

    /// A result's scores as one JSON list of `[evaluator, score, pass, reason, error]`, ordered
    /// by evaluator: each result and its scores in one row, so one streamed query serves any size.
    pub fn scores_of_result(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "(SELECT json_group_array(json_array(s.evaluator, s.score, \
                 json(CASE WHEN s.pass THEN 'true' ELSE 'false' END), s.reason, \
                 json(CASE WHEN s.error THEN 'true' ELSE 'false' END)) ORDER BY s.evaluator) \
                 FROM scores s WHERE s.experiment_id = r.experiment_id \
                 AND s.row_index = r.row_index AND s.repetition = r.repetition)"
            }
            Dialect::Postgres => {
                "(SELECT json_agg(json_build_array(s.evaluator, s.score, s.pass, s.reason, \
                 s.error) ORDER BY s.evaluator)::text \
                 FROM scores s WHERE s.experiment_id = r.experiment_id \
                 AND s.row_index = r.row_index AND s.repetition = r.repetition)"
            }
        }
    }

    /// What follows the column list of an insert that may keep a row's `id`: PostgreSQL's
    /// identity columns must be told.
    pub fn overriding(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => "OVERRIDING SYSTEM VALUE",
        }
    }

    /// The `id` of a prompt event kept at `$5`, or numbered by the table when NULL.
    pub fn kept_prompt_event_id(self) -> &'static str {
        match self {
            Dialect::Sqlite => "$5",
            Dialect::Postgres => {
                "COALESCE($5, nextval(pg_get_serial_sequence('prompt_events', 'id')))"
            }
        }
    }

    /// The `id` of a tag event kept at `$12`, or numbered by the table when NULL.
    pub fn kept_tag_event_id(self) -> &'static str {
        match self {
            Dialect::Sqlite => "$12",
            Dialect::Postgres => {
                "COALESCE($12, nextval(pg_get_serial_sequence('tag_events', 'id')))"
            }
        }
    }

    /// After events were inserted with kept ids: what numbers later ones after them.
    pub fn renumber_events(self) -> &'static [&'static str] {
        match self {
            Dialect::Sqlite => &[],
            Dialect::Postgres => &[
                "SELECT setval(pg_get_serial_sequence('tag_events', 'id'), \
                 (SELECT COALESCE(MAX(id), 0) + 1 FROM tag_events), false)",
                "SELECT setval(pg_get_serial_sequence('prompt_events', 'id'), \
                 (SELECT COALESCE(MAX(id), 0) + 1 FROM prompt_events), false)",
            ],
        }
    }

    /// Milliseconds since the epoch, by the database's clock: leases of work items run on
    /// it, so the machines' clocks need not agree.
    pub fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Dialect::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
        }
    }

    /// What the span writer runs before a batch. On SQLite, a 64 MiB page cache: a batch of
    /// spans dirties tens of MB of pages (the rows, and index pages at random places for the
    /// random span and trace ids); beyond the default 2 MB cache they spill to the WAL
    /// mid-transaction and are written again each time they are touched (measured: twice the
    /// bytes written per span). And a checkpoint every 32 MiB of WAL rather than 4 MiB: a
    /// checkpoint copies each page the WAL holds into the database file once, so pages that
    /// several batches touch (the indexes' upper levels, the table's last pages) are copied
    /// once instead of once a batch. The settings stay with the writer connection.
    pub fn span_writer_setup(self) -> &'static [&'static str] {
        match self {
            Dialect::Sqlite => &[
                "PRAGMA cache_size = -65536",
                "PRAGMA wal_autocheckpoint = 8192",
            ],
            Dialect::Postgres => &[],
        }
    }

    /// Span rows one INSERT carries at most. PostgreSQL: 256 (6,656 parameters, far below its
    /// limit of 65,535), one round trip each instead of one a span (measured: 1.7 times the
    /// spans per second and half the server's CPU). SQLite: one prepared row a statement, as a
    /// statement of many rows keeps a journal to undo itself half-way, which wrote 1.6 times
    /// the bytes (measured), and a prepared row costs no round trip.
    pub fn span_rows_per_insert(self) -> usize {
        match self {
            Dialect::Sqlite => 1,
            Dialect::Postgres => 256,
        }
    }

    /// The statement that makes planners with one key (bound at `$1`, a number) decide one
    /// after the other; SQLite's IMMEDIATE transaction already does.
    pub fn key_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock($1)"),
        }
    }

    /// Run in a claim's transaction before `claim_items`: PostgreSQL walks the index of items
    /// not done (`work_items_open`) in row order from the floor and stops at the limit. Left to
    /// itself, with no statistics on items planned a moment before, it read every pending entry
    /// of an index by state (those of items claimed since, too, until a vacuum) and sorted
    /// them: 32 ms a claim mid-run, where the walk from the floor takes 0.3 ms.
    pub fn claim_plan(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(
                "SELECT set_config('enable_sort', 'off', true), \
                 set_config('enable_bitmapscan', 'off', true)",
            ),
        }
    }

    /// Leases up to `$4` claimable items of experiment `$1` at rows from `$5` up to (not
    /// including) `$6` to owner `$2` for `$3` ms and answers them. PostgreSQL skips rows another claimer holds, so workers on any
    /// number of machines never wait for each other's rows; on SQLite the file's write lock is
    /// the queue's lock. Leases run on the database's clock (`now_ms`).
    pub fn claim_items(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "UPDATE work_items SET state = 'leased', lease_owner = $2, \
                 lease_until = CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) + $3, \
                 claims = claims + 1 \
                 WHERE experiment_id = $1 AND (row_index, repetition) IN ( \
                   SELECT row_index, repetition FROM work_items WHERE experiment_id = $1 \
                   AND row_index >= $5 AND row_index < $6 AND state <> 'done' \
                   AND (state = 'pending' OR (state = 'leased' AND lease_until < \
                     CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))) \
                   ORDER BY row_index, repetition LIMIT $4) \
                 RETURNING row_index, repetition, row_id, row_values"
            }
            Dialect::Postgres => {
                "UPDATE work_items w SET state = 'leased', lease_owner = $2, \
                 lease_until = (extract(epoch from clock_timestamp()) * 1000)::bigint + $3, \
                 claims = w.claims + 1 \
                 FROM (SELECT row_index, repetition FROM work_items \
                   WHERE experiment_id = $1 AND row_index >= $5 AND row_index < $6 \
                   AND state <> 'done' AND (state = 'pending' OR (state = 'leased' AND lease_until < \
                     (extract(epoch from clock_timestamp()) * 1000)::bigint)) \
                   ORDER BY row_index, repetition LIMIT $4 FOR UPDATE SKIP LOCKED) c \
                 WHERE w.experiment_id = $1 AND w.row_index = c.row_index \
                 AND w.repetition = c.repetition \
                 RETURNING w.row_index, w.repetition, w.row_id, w.row_values"
            }
        }
    }

    /// Extends owner `$2`'s leases of experiment `$1` by `$3` ms. PostgreSQL skips rows being
    /// completed right now: they are about to be done, and waiting could deadlock with the
    /// transaction that completes them.
    pub fn renew_items(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "UPDATE work_items \
                 SET lease_until = CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) + $3 \
                 WHERE experiment_id = $1 AND state = 'leased' AND lease_owner = $2"
            }
            Dialect::Postgres => {
                "UPDATE work_items w \
                 SET lease_until = (extract(epoch from clock_timestamp()) * 1000)::bigint + $3 \
                 FROM (SELECT row_index, repetition FROM work_items \
                   WHERE experiment_id = $1 AND state = 'leased' AND lease_owner = $2 \
                   FOR UPDATE SKIP LOCKED) c \
                 WHERE w.experiment_id = $1 AND w.row_index = c.row_index \
                 AND w.repetition = c.repetition"
            }
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Bool(bool),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl From<u16> for Arg<'_> {
    fn from(v: u16) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().into()
    }
}

/// The arguments of a statement, each converted to an `Arg`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::Arg::from($value)),*]
    };
}
pub(crate) use args;

/// One row of an answer, read by column position.
pub trait Row {
    fn int(&self, column: usize) -> Result<i64>;
    fn opt_int(&self, column: usize) -> Result<Option<i64>>;
    fn real(&self, column: usize) -> Result<f64>;
    fn opt_real(&self, column: usize) -> Result<Option<f64>>;
    fn text(&self, column: usize) -> Result<String>;
    fn opt_text(&self, column: usize) -> Result<Option<String>>;
    fn flag(&self, column: usize) -> Result<bool>;
}

/// A connection, inside the transaction the backend opened for a write or outside any for a
/// read.
pub trait Db {
    fn dialect(&self) -> Dialect;

    /// Runs a statement and returns how many rows it changed.
    fn exec(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64>;

    /// Calls `visit` with each row of the answer as it arrives.
    fn each(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        visit: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()>;

    /// Writes results, their scores and new cache entries in the backend's fastest form,
    /// inside the caller's transaction. An errored result may be replaced by a later attempt;
    /// a successful one never is, and keeps its scores.
    fn write_results(&self, experiment_id: &str, batch: &[&crate::model::RunResult]) -> Result<()>;

    /// Adds work items `(row_index, repetition, row_id, row values as JSON)` to experiment
    /// `experiment_id`'s queue, in the backend's fastest form.
    fn insert_work_items(&self, experiment_id: &str, items: &[WorkRow]) -> Result<()>;

    /// Marks done those items of `batch` that `owner` still leases, and answers them: a
    /// result whose lease was taken over is not the owner's to write.
    fn complete_work_items<'b>(
        &self,
        experiment_id: &str,
        owner: &str,
        batch: &'b [crate::model::RunResult],
    ) -> Result<Vec<&'b crate::model::RunResult>>;
}

/// One planned work item: row index, repetition, row id and the row's values as JSON.
pub type WorkRow = (i64, i64, String, String);

/// Every row of the answer, each mapped by `map`.
pub fn all<T>(
    db: &dyn Db,
    sql: &str,
    args: &[Arg<'_>],
    mut map: impl FnMut(&dyn Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    db.each(sql, args, &mut |row| {
        out.push(map(row)?);
        Ok(())
    })?;
    Ok(out)
}

/// The first row of the answer, if any, mapped by `map`.
pub fn first<T>(
    db: &dyn Db,
    sql: &str,
    args: &[Arg<'_>],
    map: impl FnOnce(&dyn Row) -> Result<T>,
) -> Result<Option<T>> {
    let mut map = Some(map);
    let mut out = None;
    db.each(sql, args, &mut |row| {
        if let Some(map) = map.take() {
            out = Some(map(row)?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The one row the statement always answers (an aggregate, an `INSERT … RETURNING`).
pub fn one<T>(
    db: &dyn Db,
    sql: &str,
    args: &[Arg<'_>],
    map: impl FnOnce(&dyn Row) -> Result<T>,
) -> Result<T> {
    first(db, sql, args, map)?.ok_or_else(|| StoreError::Corrupt(format!("no row answered: {sql}")))
}

/// A stored value that does not parse: the store holds data this runner cannot read.
pub fn corrupt(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {e}"))
}

/// A JSON column, parsed.
pub fn json<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(column, e))
}

/// A value as the JSON text stored for it.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A statement in SQLite's placeholder form: `$7` becomes `?7`, outside quoted text.
pub fn sqlite_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '$' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(
            sqlite_placeholders("SELECT $1, '$2', $10 WHERE a = $2"),
            "SELECT ?1, '$2', ?10 WHERE a = ?2"
        );
        assert_eq!(sqlite_placeholders("SELECT 1"), "SELECT 1");
        assert_eq!(sqlite_placeholders("SELECT '$' || $1"), "SELECT '$' || ?1");
    }
}
