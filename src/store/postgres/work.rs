//! The work queue of detached experiments on PostgreSQL: a claim is one `UPDATE` over a
//! `SELECT … FOR UPDATE SKIP LOCKED`, so workers on any number of machines never wait for each
//! other's rows; leases run on the database server's clock, so the machines' clocks need not
//! agree.

use super::PgStore;
use super::experiments::{experiment_id, to_json, write_batch};
use crate::model::{Experiment, ExperimentStatus, NewExperiment, RunResult, now};
use crate::store::{ExperimentStore, PlanRow, Result, StoreError, WorkCounts, WorkItem, WorkQueue};

/// Milliseconds since the epoch, by the server's clock.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Rows per statement when planning.
const PLAN_CHUNK: usize = 2_000;

/// The advisory lock that makes planners with one key decide one after the other.
fn key_lock(key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("runner detach key\n{key}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

#[derive(Default)]
struct ItemColumns {
    row_index: Vec<i64>,
    repetition: Vec<i64>,
    row_id: Vec<String>,
    values: Vec<String>,
}

async fn insert_items(db: &super::Db, id: &str, c: &mut ItemColumns) -> Result<()> {
    if c.row_index.is_empty() {
        return Ok(());
    }
    db.exec(
        "INSERT INTO work_items (experiment_id, row_index, repetition, row_id, row_values) \
         SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[])",
        &[&id, &c.row_index, &c.repetition, &c.row_id, &c.values],
    )
    .await?;
    *c = ItemColumns::default();
    Ok(())
}

impl WorkQueue for PgStore {
    fn plan_experiment(
        &self,
        new: &NewExperiment,
        key: Option<&str>,
        repetitions: i64,
        next_row: &mut dyn FnMut() -> Result<Option<PlanRow>>,
    ) -> Result<(Experiment, bool)> {
        let id = experiment_id();
        let (id, created) = self.write(async |db| {
            if let Some(key) = key {
                db.exec("SELECT pg_advisory_xact_lock($1)", &[&key_lock(key)])
                    .await?;
                let found = db
                    .opt("SELECT id FROM experiments WHERE detach_key = $1", &[&key])
                    .await?;
                if let Some(found) = found {
                    return Ok((found.try_get::<_, String>(0)?, false));
                }
            }
            super::experiments::insert_experiment(db, &id, new, key).await?;
            let mut c = ItemColumns::default();
            while let Some((index, row_id, values)) = next_row()? {
                let values = to_json(&values)?;
                for repetition in 0..repetitions {
                    c.row_index.push(index);
                    c.repetition.push(repetition);
                    c.row_id.push(row_id.clone());
                    c.values.push(values.clone());
                }
                if c.row_index.len() >= PLAN_CHUNK {
                    insert_items(db, &id, &mut c).await?;
                }
            }
            insert_items(db, &id, &mut c).await?;
            Ok((id.clone(), true))
        })?;
        Ok((self.experiment(&id)?, created))
    }

    fn claim_items(
        &self,
        id: &str,
        owner: &str,
        ttl: std::time::Duration,
        max: usize,
    ) -> Result<Vec<WorkItem>> {
        let ttl_ms = ttl.as_millis() as i64;
        let max = max as i64;
        let rows = self.write(async |db| {
            db.query(
                &format!(
                    "UPDATE work_items w SET state = 'leased', lease_owner = $2, \
                     lease_until = {NOW_MS} + $3, claims = w.claims + 1 \
                     FROM (SELECT row_index, repetition FROM work_items \
                       WHERE experiment_id = $1 \
                       AND (state = 'pending' OR (state = 'leased' AND lease_until < {NOW_MS})) \
                       ORDER BY row_index, repetition LIMIT $4 FOR UPDATE SKIP LOCKED) c \
                     WHERE w.experiment_id = $1 AND w.row_index = c.row_index \
                     AND w.repetition = c.repetition \
                     RETURNING w.row_index, w.repetition, w.row_id, w.row_values"
                ),
                &[&id, &owner, &ttl_ms, &max],
            )
            .await
        })?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(WorkItem {
                row_index: row.try_get(0)?,
                repetition: row.try_get(1)?,
                row_id: row.try_get(2)?,
                values: serde_json::from_str(row.try_get(3)?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
        }
        items.sort_by_key(|item| (item.row_index, item.repetition));
        Ok(items)
    }

    fn renew_items(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<u64> {
        let ttl_ms = ttl.as_millis() as i64;
        // Rows being completed right now are skipped, not waited for: they are about to be
        // done, and waiting could deadlock with the transaction that completes them.
        self.write(async |db| {
            db.exec(
                &format!(
                    "UPDATE work_items w SET lease_until = {NOW_MS} + $3 \
                     FROM (SELECT row_index, repetition FROM work_items \
                       WHERE experiment_id = $1 AND state = 'leased' AND lease_owner = $2 \
                       FOR UPDATE SKIP LOCKED) c \
                     WHERE w.experiment_id = $1 AND w.row_index = c.row_index \
                     AND w.repetition = c.repetition"
                ),
                &[&id, &owner, &ttl_ms],
            )
            .await
        })
    }

    fn lease_owners(&self, id: &str) -> Result<Vec<String>> {
        self.read(async |db| {
            let rows = db
                .query(
                    &format!(
                        "SELECT DISTINCT lease_owner FROM work_items \
                         WHERE experiment_id = $1 AND state = 'leased' AND lease_until >= {NOW_MS}"
                    ),
                    &[&id],
                )
                .await?;
            rows.iter()
                .map(|r| r.try_get::<_, String>(0).map_err(Into::into))
                .collect()
        })
    }

    fn release_items(&self, id: &str, owner: &str) -> Result<u64> {
        self.write(async |db| {
            db.exec(
                "UPDATE work_items SET state = 'pending', lease_owner = NULL, lease_until = NULL \
                 WHERE experiment_id = $1 AND state = 'leased' AND lease_owner = $2",
                &[&id, &owner],
            )
            .await
        })
    }

    fn complete_items(&self, id: &str, owner: &str, batch: &[RunResult]) -> Result<usize> {
        let rows: Vec<i64> = batch.iter().map(|r| r.row_index).collect();
        let reps: Vec<i64> = batch.iter().map(|r| r.repetition).collect();
        self.write(async |db| {
            let completed = db
                .query(
                    "UPDATE work_items w SET state = 'done', lease_owner = NULL, lease_until = NULL \
                     FROM unnest($2::bigint[], $3::bigint[]) AS u(r, p) \
                     WHERE w.experiment_id = $1 AND w.row_index = u.r AND w.repetition = u.p \
                     AND w.state = 'leased' AND w.lease_owner = $4 \
                     RETURNING w.row_index, w.repetition",
                    &[&id, &rows, &reps, &owner],
                )
                .await?;
            let mut mine = std::collections::HashSet::new();
            for row in &completed {
                mine.insert((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?));
            }
            let kept: Vec<&RunResult> = batch
                .iter()
                .filter(|r| mine.contains(&(r.row_index, r.repetition)))
                .collect();
            write_batch(db, id, &kept).await?;
            Ok(kept.len())
        })
    }

    fn work_counts(&self, id: &str) -> Result<Option<WorkCounts>> {
        self.read(async |db| {
            let r = db
                .one(
                    &format!(
                        "SELECT COUNT(*), COUNT(*) FILTER (WHERE state = 'pending'), \
                         COUNT(*) FILTER (WHERE state = 'leased'), \
                         COUNT(*) FILTER (WHERE state = 'done'), \
                         COALESCE(SUM(GREATEST(claims - 1, 0)), 0)::bigint, \
                         COUNT(DISTINCT lease_owner) FILTER (WHERE state = 'leased' \
                           AND lease_until >= {NOW_MS}) \
                         FROM work_items WHERE experiment_id = $1"
                    ),
                    &[&id],
                )
                .await?;
            let counts = WorkCounts {
                items: r.try_get(0)?,
                pending: r.try_get(1)?,
                leased: r.try_get(2)?,
                done: r.try_get(3)?,
                reclaimed: r.try_get(4)?,
                workers: r.try_get(5)?,
            };
            Ok((counts.items > 0).then_some(counts))
        })
    }

    fn finish_work(&self, id: &str) -> Result<ExperimentStatus> {
        self.write(async |db| {
            let row = db
                .opt(
                    "SELECT e.status, (SELECT COUNT(*) FROM work_items w \
                     WHERE w.experiment_id = e.id AND w.state <> 'done') \
                     FROM experiments e WHERE e.id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?
                .ok_or_else(|| StoreError::UnknownExperiment { id: id.into() })?;
            let status: ExperimentStatus = row
                .try_get::<_, &str>(0)?
                .parse()
                .map_err(StoreError::Corrupt)?;
            let open: i64 = row.try_get(1)?;
            if status != ExperimentStatus::Running || open > 0 {
                return Ok(status);
            }
            let span = db
                .one(
                    "SELECT MIN(started_at), MAX(finished_at) FROM results WHERE experiment_id = $1",
                    &[&id],
                )
                .await?;
            let first: Option<String> = span.try_get(0)?;
            let last: Option<String> = span.try_get(1)?;
            let wall_ms = crate::model::span_ms(first.as_deref(), last.as_deref());
            db.exec(
                "UPDATE experiments SET status = 'completed', finished_at = $2, wall_ms = $3 \
                 WHERE id = $1",
                &[&id, &now(), &wall_ms],
            )
            .await?;
            Ok(ExperimentStatus::Completed)
        })
    }
}
