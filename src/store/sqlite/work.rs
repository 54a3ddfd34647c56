//! The work queue of detached experiments in the SQLite store: several local processes share
//! one file, so a claim is one `UPDATE … RETURNING` inside an IMMEDIATE transaction (the file's
//! write lock is the queue's lock), and a lease runs on the machine's clock.

use super::SqliteStore;
use super::experiments::{experiment_id, to_json, write_batch};
use crate::model::{Experiment, ExperimentStatus, NewExperiment, RunResult, now};
use crate::store::{ExperimentStore, PlanRow, Result, StoreError, WorkCounts, WorkItem, WorkQueue};
use rusqlite::{OptionalExtension, params};

/// Milliseconds since the epoch, by the database's clock.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

impl WorkQueue for SqliteStore {
    fn plan_experiment(
        &self,
        new: &NewExperiment,
        key: Option<&str>,
        repetitions: i64,
        next_row: &mut dyn FnMut() -> Result<Option<PlanRow>>,
    ) -> Result<(Experiment, bool)> {
        let id = experiment_id();
        let (id, created) = self.write(|tx| {
            if let Some(key) = key {
                let found: Option<String> = tx
                    .query_row(
                        "SELECT id FROM experiments WHERE detach_key = ?1",
                        params![key],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(found) = found {
                    return Ok((found, false));
                }
            }
            super::experiments::insert_experiment(tx, &id, new, key)?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO work_items (experiment_id, row_index, repetition, row_id, row_values) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            while let Some((index, row_id, values)) = next_row()? {
                let values = to_json(&values)?;
                for repetition in 0..repetitions {
                    insert.execute(params![id, index, repetition, row_id, values])?;
                }
            }
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
        self.write(|tx| {
            let mut claim = tx.prepare_cached(&format!(
                "UPDATE work_items SET state = 'leased', lease_owner = ?2, \
                 lease_until = {NOW_MS} + ?3, claims = claims + 1 \
                 WHERE experiment_id = ?1 AND (row_index, repetition) IN ( \
                   SELECT row_index, repetition FROM work_items WHERE experiment_id = ?1 \
                   AND (state = 'pending' OR (state = 'leased' AND lease_until < {NOW_MS})) \
                   ORDER BY row_index, repetition LIMIT ?4) \
                 RETURNING row_index, repetition, row_id, row_values"
            ))?;
            let rows = claim.query_map(params![id, owner, ttl_ms, max as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut items = Vec::new();
            for row in rows {
                let (row_index, repetition, row_id, values) = row?;
                items.push(WorkItem {
                    row_index,
                    repetition,
                    row_id,
                    values: serde_json::from_str(&values)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                });
            }
            items.sort_by_key(|item| (item.row_index, item.repetition));
            Ok(items)
        })
    }

    fn renew_items(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<u64> {
        let ttl_ms = ttl.as_millis() as i64;
        self.write(|tx| {
            Ok(tx.execute(
                &format!(
                    "UPDATE work_items SET lease_until = {NOW_MS} + ?3 \
                     WHERE experiment_id = ?1 AND state = 'leased' AND lease_owner = ?2"
                ),
                params![id, owner, ttl_ms],
            )? as u64)
        })
    }

    fn lease_owners(&self, id: &str) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut query = conn.prepare_cached(&format!(
                "SELECT DISTINCT lease_owner FROM work_items \
                 WHERE experiment_id = ?1 AND state = 'leased' AND lease_until >= {NOW_MS}"
            ))?;
            let owners = query
                .query_map(params![id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(owners)
        })
    }

    fn release_items(&self, id: &str, owner: &str) -> Result<u64> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE work_items SET state = 'pending', lease_owner = NULL, lease_until = NULL \
                 WHERE experiment_id = ?1 AND state = 'leased' AND lease_owner = ?2",
                params![id, owner],
            )? as u64)
        })
    }

    fn complete_items(&self, id: &str, owner: &str, batch: &[RunResult]) -> Result<usize> {
        self.write(|tx| {
            let mut complete = tx.prepare_cached(
                "UPDATE work_items SET state = 'done', lease_owner = NULL, lease_until = NULL \
                 WHERE experiment_id = ?1 AND row_index = ?2 AND repetition = ?3 \
                 AND state = 'leased' AND lease_owner = ?4",
            )?;
            let mut kept = Vec::with_capacity(batch.len());
            for result in batch {
                if complete.execute(params![id, result.row_index, result.repetition, owner])? == 1 {
                    kept.push(result);
                }
            }
            write_batch(tx, id, kept.iter().copied())?;
            Ok(kept.len())
        })
    }

    fn work_counts(&self, id: &str) -> Result<Option<WorkCounts>> {
        self.read(|conn| {
            let counts = conn
                .prepare_cached(&format!(
                    "SELECT COUNT(*), COALESCE(SUM(state = 'pending'), 0), \
                     COALESCE(SUM(state = 'leased'), 0), COALESCE(SUM(state = 'done'), 0), \
                     COALESCE(SUM(MAX(claims - 1, 0)), 0), \
                     COUNT(DISTINCT CASE WHEN state = 'leased' AND lease_until >= {NOW_MS} \
                       THEN lease_owner END) \
                     FROM work_items WHERE experiment_id = ?1"
                ))?
                .query_row(params![id], |r| {
                    Ok(WorkCounts {
                        items: r.get(0)?,
                        pending: r.get(1)?,
                        leased: r.get(2)?,
                        done: r.get(3)?,
                        reclaimed: r.get(4)?,
                        workers: r.get(5)?,
                    })
                })?;
            Ok((counts.items > 0).then_some(counts))
        })
    }

    fn finish_work(&self, id: &str) -> Result<ExperimentStatus> {
        self.write(|tx| {
            let (status, open): (String, i64) = tx
                .query_row(
                    "SELECT e.status, (SELECT COUNT(*) FROM work_items w \
                     WHERE w.experiment_id = e.id AND w.state <> 'done') \
                     FROM experiments e WHERE e.id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or_else(|| StoreError::UnknownExperiment { id: id.into() })?;
            let status: ExperimentStatus = status.parse().map_err(StoreError::Corrupt)?;
            if status != ExperimentStatus::Running || open > 0 {
                return Ok(status);
            }
            let (first, last): (Option<String>, Option<String>) = tx.query_row(
                "SELECT MIN(started_at), MAX(finished_at) FROM results WHERE experiment_id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            tx.execute(
                "UPDATE experiments SET status = 'completed', finished_at = ?2, wall_ms = ?3 \
                 WHERE id = ?1",
                params![
                    id,
                    now(),
                    crate::model::span_ms(first.as_deref(), last.as_deref())
                ],
            )?;
            Ok(ExperimentStatus::Completed)
        })
    }
}
