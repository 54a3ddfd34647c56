//! How the PostgreSQL store runs one statement for `store::logic`: arguments typed to the
//! parameter the server inferred, each statement prepared once per connection, rows streamed;
//! and its own forms of the bulk writes (one statement whatever the batch size, the rows sent
//! as parallel arrays the server unnests). It holds no rule: which statements run, and the upserts
//! the bulk writes end with, are `store::logic`'s, and it must not open a connection or a
//! transaction (`pool.rs` and `mod.rs` do).

use super::pool::{Db as Conn, block};
use crate::model::{ResultStatus, RunResult};
use crate::store::Result;
use crate::store::logic::{
    CACHE_INSERT, CACHE_UPSERT, RESULTS_INSERT, RESULTS_UPSERT, SCORES_UPSERT,
};
use crate::store::sql::{Arg, Db, Dialect, Row, WorkRow, corrupt, to_json};
use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A pooled connection as `store::logic` sees it.
pub struct PgDb<'a>(pub &'a Conn);

impl ToSql for Arg<'_> {
    /// An integer goes out in the width of the column it meets (`http_status` is an INT), a
    /// number as the float the server expects.
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::FLOAT8 => (v as f64).to_sql(ty, out),
            Arg::Int(v) => v.to_sql(ty, out),
            Arg::Real(v) if *ty == Type::FLOAT4 => (v as f32).to_sql(ty, out),
            Arg::Real(v) => v.to_sql(ty, out),
            Arg::Text(v) => v.to_sql(ty, out),
            Arg::Bool(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Reads an integer column whatever its width.
fn integer(row: &tokio_postgres::Row, column: usize) -> Result<Option<i64>> {
    let ty = row
        .columns()
        .get(column)
        .map(|c| c.type_().clone())
        .ok_or_else(|| corrupt("column", format!("no column {column}")))?;
    Ok(if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(column)?.map(i64::from)
    } else if ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(column)?.map(i64::from)
    } else {
        row.try_get::<_, Option<i64>>(column)?
    })
}

/// Reads a number column whatever its width.
fn number(row: &tokio_postgres::Row, column: usize) -> Result<Option<f64>> {
    let ty = row
        .columns()
        .get(column)
        .map(|c| c.type_().clone())
        .ok_or_else(|| corrupt("column", format!("no column {column}")))?;
    Ok(if ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(column)?.map(f64::from)
    } else if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(column)?.map(|v| v as f64)
    } else {
        row.try_get::<_, Option<f64>>(column)?
    })
}

fn required<T>(value: Option<T>, column: usize) -> Result<T> {
    value.ok_or_else(|| corrupt("column", format!("column {column} is NULL")))
}

impl Row for tokio_postgres::Row {
    fn int(&self, column: usize) -> Result<i64> {
        required(integer(self, column)?, column)
    }
    fn opt_int(&self, column: usize) -> Result<Option<i64>> {
        integer(self, column)
    }
    fn real(&self, column: usize) -> Result<f64> {
        required(number(self, column)?, column)
    }
    fn opt_real(&self, column: usize) -> Result<Option<f64>> {
        number(self, column)
    }
    fn text(&self, column: usize) -> Result<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: usize) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: usize) -> Result<bool> {
        Ok(self.try_get(column)?)
    }
}

fn params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

impl Db for PgDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn exec(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        block(self.0.exec(sql, &params(args)))
    }

    fn each(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        visit: &mut dyn FnMut(&dyn Row) -> Result<()>,
    ) -> Result<()> {
        block(self.0.stream(sql, &params(args), |row| visit(&row)))
    }

    fn write_results(&self, experiment_id: &str, batch: &[&RunResult]) -> Result<()> {
        block(write_batch(self.0, experiment_id, batch))
    }

    fn insert_work_items(&self, experiment_id: &str, items: &[WorkRow]) -> Result<()> {
        let row_index: Vec<i64> = items.iter().map(|i| i.0).collect();
        let repetition: Vec<i64> = items.iter().map(|i| i.1).collect();
        let row_id: Vec<&str> = items.iter().map(|i| i.2.as_str()).collect();
        let values: Vec<&str> = items.iter().map(|i| i.3.as_str()).collect();
        block(self.0.exec(
            "INSERT INTO work_items (experiment_id, row_index, repetition, row_id, row_values) \
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[])",
            &[&experiment_id, &row_index, &repetition, &row_id, &values],
        ))?;
        Ok(())
    }

    fn complete_work_items<'b>(
        &self,
        experiment_id: &str,
        owner: &str,
        batch: &'b [RunResult],
    ) -> Result<Vec<&'b RunResult>> {
        let rows: Vec<i64> = batch.iter().map(|r| r.row_index).collect();
        let reps: Vec<i64> = batch.iter().map(|r| r.repetition).collect();
        let completed = block(
            self.0
                .query(COMPLETE_ITEMS, &[&experiment_id, &rows, &reps, &owner]),
        )?;
        let mut mine = std::collections::HashSet::new();
        for row in &completed {
            mine.insert((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?));
        }
        Ok(batch
            .iter()
            .filter(|r| mine.contains(&(r.row_index, r.repetition)))
            .collect())
    }
}

/// Marks done the items of experiment `$1` at rows `$2` and repetitions `$3` that owner `$4`
/// still holds, and answers them. Whatever the join order the planner picks, the scan of
/// `work_items` reads the batch's rows only (`row_index = ANY($2)` on the primary key). An
/// owner is set only while its item is leased (a CHECK, migration 0021), so the owner alone is
/// asked: asked the state too, PostgreSQL walked every lease of the run (4–10 ms a batch).
pub(super) const COMPLETE_ITEMS: &str = "UPDATE work_items w SET state = 'done', lease_owner = NULL, lease_until = NULL \
     FROM unnest($2::bigint[], $3::bigint[]) AS u(r, p) \
     WHERE w.experiment_id = $1 AND w.row_index = ANY($2) \
     AND w.row_index = u.r AND w.repetition = u.p AND w.lease_owner = $4 \
     RETURNING w.row_index, w.repetition";

/// Writes results, their scores and new cache entries inside the caller's transaction: three
/// statements whatever the batch size. An errored result may be replaced by a later attempt;
/// a successful one never is.
pub(super) async fn write_batch(
    db: &Conn,
    experiment_id: &str,
    batch: &[&RunResult],
) -> Result<()> {
    {
        // A key appears once per statement (ON CONFLICT may not touch a row twice): the last
        // result for a row and repetition wins, as it would written one by one.
        let mut seen = std::collections::HashSet::new();
        let mut kept: Vec<&RunResult> = batch
            .iter()
            .copied()
            .rev()
            .filter(|r| seen.insert((r.row_index, r.repetition)))
            .collect();
        kept.reverse();
        let mut c = Columns::default();
        for r in &kept {
            c.row_index.push(r.row_index);
            c.repetition.push(r.repetition);
            c.row_id.push(r.row_id.as_str());
            c.vars.push(to_json(&r.vars)?);
            c.expected.push(r.expected.as_deref());
            c.messages.push(to_json(&r.messages)?);
            c.output.push(r.output.as_deref());
            c.finish_reason.push(r.finish_reason.as_deref());
            c.status.push(r.status.as_str());
            c.error_kind.push(r.error_kind.as_deref());
            c.error_message.push(r.error_message.as_deref());
            c.http_status.push(r.http_status.map(i32::from));
            c.attempts.push(i64::from(r.attempts));
            c.latency_ms.push(r.latency_ms);
            c.prompt_tokens.push(r.prompt_tokens);
            c.completion_tokens.push(r.completion_tokens);
            c.cached.push(r.cached);
            c.started_at.push(r.started_at.as_str());
            c.finished_at.push(r.finished_at.as_str());
            c.extra.push(r.extra.as_ref().map(to_json).transpose()?);
        }
        {
            // RETURNING names the rows written: none for a successful result already there,
            // whose scores stay as they are too.
            let written = db
                .query(
                    &format!(
                        "{RESULTS_INSERT} \
                     SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
                     $12::text[], $13::int[], $14::bigint[], $15::float8[], $16::bigint[], \
                     $17::bigint[], $18::bool[], $19::text[], $20::text[], $21::text[]) \
                     {RESULTS_UPSERT} \
                     RETURNING row_index, repetition"
                    ),
                    &[
                        &experiment_id,
                        &c.row_index,
                        &c.repetition,
                        &c.row_id,
                        &c.vars,
                        &c.expected,
                        &c.messages,
                        &c.output,
                        &c.finish_reason,
                        &c.status,
                        &c.error_kind,
                        &c.error_message,
                        &c.http_status,
                        &c.attempts,
                        &c.latency_ms,
                        &c.prompt_tokens,
                        &c.completion_tokens,
                        &c.cached,
                        &c.started_at,
                        &c.finished_at,
                        &c.extra,
                    ],
                )
                .await?;
            let mut written_keys = std::collections::HashSet::new();
            for row in &written {
                written_keys.insert((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?));
            }
            let mut s = ScoreColumns::default();
            let mut k = CacheColumns::default();
            let mut cache_seen = std::collections::HashSet::new();
            for r in kept
                .iter()
                .filter(|r| written_keys.contains(&(r.row_index, r.repetition)))
            {
                for score in &r.scores {
                    s.row_index.push(r.row_index);
                    s.repetition.push(r.repetition);
                    s.evaluator.push(score.evaluator.as_str());
                    s.score.push(score.score);
                    s.pass.push(score.pass);
                    s.error.push(score.error);
                    s.reason.push(score.reason.as_str());
                }
                if let (Some(key), ResultStatus::Ok, Some(output)) =
                    (&r.cache_key, r.status, &r.output)
                    && cache_seen.insert(key.as_str())
                {
                    k.key.push(key.as_str());
                    k.output.push(output.as_str());
                    k.finish_reason.push(r.finish_reason.as_deref());
                    k.prompt_tokens.push(r.prompt_tokens);
                    k.completion_tokens.push(r.completion_tokens);
                    k.http_status.push(r.http_status.map(i32::from));
                    k.latency_ms.push(r.latency_ms);
                    k.created_at.push(r.finished_at.as_str());
                }
            }
            if !s.row_index.is_empty() {
                db.exec(
                    &format!(
                        "INSERT INTO scores (experiment_id, row_index, repetition, evaluator, \
                     score, pass, error, reason) \
                     SELECT DISTINCT ON (2, 3, 4) $1, * FROM unnest($2::bigint[], $3::bigint[], \
                     $4::text[], $5::float8[], $6::bool[], $7::bool[], $8::text[]) {SCORES_UPSERT}"
                    ),
                    &[
                        &experiment_id,
                        &s.row_index,
                        &s.repetition,
                        &s.evaluator,
                        &s.score,
                        &s.pass,
                        &s.error,
                        &s.reason,
                    ],
                )
                .await?;
            }
            // A key already there was too old for the run (or not read, with --fresh): the
            // new answer replaces it.
            insert_cache(db, &k).await?;
            Ok(())
        }
    }
}

#[derive(Default)]
struct Columns<'a> {
    row_index: Vec<i64>,
    repetition: Vec<i64>,
    row_id: Vec<&'a str>,
    vars: Vec<String>,
    expected: Vec<Option<&'a str>>,
    messages: Vec<String>,
    output: Vec<Option<&'a str>>,
    finish_reason: Vec<Option<&'a str>>,
    status: Vec<&'static str>,
    error_kind: Vec<Option<&'a str>>,
    error_message: Vec<Option<&'a str>>,
    http_status: Vec<Option<i32>>,
    attempts: Vec<i64>,
    latency_ms: Vec<f64>,
    prompt_tokens: Vec<Option<i64>>,
    completion_tokens: Vec<Option<i64>>,
    cached: Vec<bool>,
    started_at: Vec<&'a str>,
    finished_at: Vec<&'a str>,
    extra: Vec<Option<String>>,
}

#[derive(Default)]
struct ScoreColumns<'a> {
    row_index: Vec<i64>,
    repetition: Vec<i64>,
    evaluator: Vec<&'a str>,
    score: Vec<f64>,
    pass: Vec<bool>,
    error: Vec<bool>,
    reason: Vec<&'a str>,
}

#[derive(Default)]
struct CacheColumns<'a> {
    key: Vec<&'a str>,
    output: Vec<&'a str>,
    finish_reason: Vec<Option<&'a str>>,
    prompt_tokens: Vec<Option<i64>>,
    completion_tokens: Vec<Option<i64>>,
    http_status: Vec<Option<i32>>,
    latency_ms: Vec<f64>,
    created_at: Vec<&'a str>,
}

/// New cache entries in one statement; a key already there gets the new answer.
async fn insert_cache(db: &Conn, k: &CacheColumns<'_>) -> Result<()> {
    if k.key.is_empty() {
        return Ok(());
    }
    db.exec(
        &format!(
            "{CACHE_INSERT} SELECT DISTINCT ON (1) * FROM unnest($1::text[], $2::text[], \
             $3::text[], $4::bigint[], $5::bigint[], $6::int[], $7::float8[], $8::text[]) \
             {CACHE_UPSERT}"
        ),
        &[
            &k.key,
            &k.output,
            &k.finish_reason,
            &k.prompt_tokens,
            &k.completion_tokens,
            &k.http_status,
            &k.latency_ms,
            &k.created_at,
        ],
    )
    .await?;
    Ok(())
}
