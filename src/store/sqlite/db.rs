//! How the SQLite store runs one statement for `store::logic`: `$n` placeholders rewritten to
//! `?n`, every statement prepared once per connection, rows read in place; and its own forms of
//! the bulk writes (prepared statements run row by row in the caller's transaction, which is
//! what SQLite does fastest). It holds no rule: which statements run, and the upserts the bulk
//! writes end with, are `store::logic`'s, and it must not open a connection or a transaction
//! (`mod.rs` does).

use crate::model::{ResultStatus, RunResult};
use crate::store::Result;
use crate::store::logic::{
    CACHE_INSERT, CACHE_UPSERT, RESULTS_INSERT, RESULTS_UPSERT, SCORES_UPSERT,
};
use crate::store::sql::{Arg, Db, Dialect, Row, WorkRow, sqlite_placeholders, to_json};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, params, params_from_iter};

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Null => ToSqlOutput::Owned(Value::Null),
            Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
            Arg::Real(v) => ToSqlOutput::Owned(Value::Real(v)),
            Arg::Bool(v) => ToSqlOutput::Owned(Value::Integer(i64::from(v))),
            Arg::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

impl Row for rusqlite::Row<'_> {
    fn int(&self, column: usize) -> Result<i64> {
        Ok(self.get(column)?)
    }
    fn opt_int(&self, column: usize) -> Result<Option<i64>> {
        Ok(self.get(column)?)
    }
    fn real(&self, column: usize) -> Result<f64> {
        Ok(self.get(column)?)
    }
    fn opt_real(&self, column: usize) -> Result<Option<f64>> {
        Ok(self.get(column)?)
    }
    fn text(&self, column: usize) -> Result<String> {
        Ok(self.get(column)?)
    }
    fn opt_text(&self, column: usize) -> Result<Option<String>> {
        Ok(self.get(column)?)
    }
    fn flag(&self, column: usize) -> Result<bool> {
        Ok(self.get(column)?)
    }
}

thread_local! {
    /// Statements already put in SQLite's placeholder form, by their text: the span writer
    /// runs one statement per row, and rewriting it each time was 3 % of the writer's time.
    static SQLITE_FORM: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<str>>> =
        std::cell::RefCell::default();
}

/// `sql` with `$n` placeholders as `?n` (`sqlite_placeholders`), remembered per thread.
fn in_sqlite_form(sql: &str) -> std::rc::Rc<str> {
    SQLITE_FORM.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(converted) = cache.get(sql) {
            return std::rc::Rc::clone(converted);
        }
        // Statements built with format! (a list of n placeholders) are many but few recur.
        if cache.len() >= 1_024 {
            cache.clear();
        }
        let converted: std::rc::Rc<str> = sqlite_placeholders(sql).into();
        cache.insert(sql.to_string(), std::rc::Rc::clone(&converted));
        converted
    })
}

impl Db for Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn exec(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let sql = in_sqlite_form(sql);
        let mut stmt = self.prepare_cached(&sql)?;
        Ok(stmt.execute(params_from_iter(args.iter()))? as u64)
    }

    fn each(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        visit: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()> {
        let sql = in_sqlite_form(sql);
        let mut stmt = self.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args.iter()))?;
        while let Some(row) = rows.next()? {
            visit(row)?;
        }
        Ok(())
    }

    fn write_results(&self, experiment_id: &str, batch: &[&RunResult]) -> Result<()> {
        write_batch(self, experiment_id, batch)
    }

    fn insert_work_items(&self, experiment_id: &str, items: &[WorkRow]) -> Result<()> {
        let mut insert = self.prepare_cached(
            "INSERT INTO work_items (experiment_id, row_index, repetition, row_id, row_values) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (index, repetition, row_id, values) in items {
            insert.execute(params![experiment_id, index, repetition, row_id, values])?;
        }
        Ok(())
    }

    fn complete_work_items<'b>(
        &self,
        experiment_id: &str,
        owner: &str,
        batch: &'b [RunResult],
    ) -> Result<Vec<&'b RunResult>> {
        let mut complete = self.prepare_cached(
            "UPDATE work_items SET state = 'done', lease_owner = NULL, lease_until = NULL \
             WHERE experiment_id = ?1 AND row_index = ?2 AND repetition = ?3 \
             AND state = 'leased' AND lease_owner = ?4",
        )?;
        let mut kept = Vec::with_capacity(batch.len());
        for result in batch {
            let changed = complete.execute(params![
                experiment_id,
                result.row_index,
                result.repetition,
                owner
            ])?;
            if changed == 1 {
                kept.push(result);
            }
        }
        Ok(kept)
    }
}

/// Writes results, their scores and new cache entries inside the caller's transaction. An
/// errored result may be replaced by a later attempt; a successful one never is.
///
/// Each row is a plain INSERT first, and the upsert only when its key is already there (a
/// retried row, an old cache entry): SQLite gives an upsert, which may update a row and fire
/// `results_ok_is_final`, a statement journal, a copy of every page the statement touches
/// that spilled to a temporary file past 64 KiB (28 MB of writes for 10,000 results), while a
/// single-row INSERT checks its constraints before it writes anything and needs none.
fn write_batch(conn: &Connection, experiment_id: &str, batch: &[&RunResult]) -> Result<()> {
    const RESULT_VALUES: &str = "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
         ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)";
    const SCORE_INSERT: &str = "INSERT INTO scores (experiment_id, row_index, repetition, \
         evaluator, score, pass, error, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    const CACHE_VALUES: &str = "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    let mut result = Upsert {
        insert: conn.prepare_cached(&format!("{RESULTS_INSERT} {RESULT_VALUES}"))?,
        upsert: conn.prepare_cached(&format!(
            "{RESULTS_INSERT} {RESULT_VALUES} {RESULTS_UPSERT}"
        ))?,
    };
    let mut score = Upsert {
        insert: conn.prepare_cached(SCORE_INSERT)?,
        upsert: conn.prepare_cached(&format!("{SCORE_INSERT} {SCORES_UPSERT}"))?,
    };
    // A key already present was too old for the run (or not read, with --fresh): the new
    // answer replaces it.
    let mut cache = Upsert {
        insert: conn.prepare_cached(&format!("{CACHE_INSERT} {CACHE_VALUES}"))?,
        upsert: conn.prepare_cached(&format!("{CACHE_INSERT} {CACHE_VALUES} {CACHE_UPSERT}"))?,
    };
    for r in batch {
        let vars = to_json(&r.vars)?;
        let messages = to_json(&r.messages)?;
        let extra = r.extra.as_ref().map(to_json).transpose()?;
        let changed = result.run(params![
            experiment_id,
            r.row_index,
            r.repetition,
            r.row_id,
            vars,
            r.expected,
            messages,
            r.output,
            r.finish_reason,
            r.status.as_str(),
            r.error_kind,
            r.error_message,
            r.http_status,
            r.attempts,
            r.latency_ms,
            r.prompt_tokens,
            r.completion_tokens,
            r.cached,
            r.started_at,
            r.finished_at,
            extra,
        ])?;
        // Zero rows changed: a successful result was already there; keep its scores too.
        if changed == 0 {
            continue;
        }
        for s in &r.scores {
            score.run(params![
                experiment_id,
                r.row_index,
                r.repetition,
                s.evaluator,
                s.score,
                s.pass,
                s.error,
                s.reason,
            ])?;
        }
        if let (Some(key), ResultStatus::Ok, Some(output)) = (&r.cache_key, r.status, &r.output) {
            cache.run(params![
                key,
                output,
                r.finish_reason,
                r.prompt_tokens,
                r.completion_tokens,
                r.http_status,
                r.latency_ms,
                r.finished_at,
            ])?;
        }
    }
    Ok(())
}

/// A row written by a plain INSERT, or by its upsert when the INSERT finds the key taken.
struct Upsert<'c> {
    insert: rusqlite::CachedStatement<'c>,
    upsert: rusqlite::CachedStatement<'c>,
}

impl Upsert<'_> {
    /// Rows changed: 1, or 0 when the upsert's WHERE kept the row there.
    fn run(&mut self, values: &[&dyn rusqlite::ToSql]) -> Result<usize> {
        match self.insert.execute(params_from_iter(values)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                Ok(self.upsert.execute(params_from_iter(values))?)
            }
            other => Ok(other?),
        }
    }
}
