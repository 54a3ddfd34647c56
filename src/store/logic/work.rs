//! The work queue of detached experiments, once for both backends: planning (idempotent per
//! key), claims and leases on the database's clock, counts, and the finish that marks an
//! experiment completed when its last item is done. It names no driver and runs no item: workers
//! run them (`workflow::worker`), and this module only hands items out and records them.
//!
//! What differs is SQL text (`Dialect::claim_items`, `claim_plan`, `renew_items`, `now_ms`,
//! `key_lock`) and two bulk forms (`Db::insert_work_items`, `Db::complete_work_items`); the
//! rules are here.

use super::Backend;
use super::experiments::{experiment_id, insert_experiment};
use crate::model::{Experiment, ExperimentStatus, NewExperiment, RunResult, now, span_ms};
use crate::store::sql::{Db, WorkRow, all, args, first, json, one, to_json};
use crate::store::{ExperimentStore, PlanRow, Result, StoreError, WorkCounts, WorkItem, WorkQueue};

/// Items per bulk insert when planning.
const PLAN_CHUNK: usize = 2_000;

/// The number that names a planning key's lock.
fn key_lock(key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("runner detach key\n{key}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Where each experiment's unclaimed items begin, as far as this store has seen: the last row
/// it leased. A claim looks from there on first, and below it only when that finds too few, so
/// items handed back or whose lease ran out below the floor wait until the items above it are
/// out. Without a floor every claim read past the entries of every item claimed before it
/// (PostgreSQL keeps an item's old index entries until a vacuum), and four workers spent a large
/// share of the machine on claims. Only a hint: a store without one (a new worker's process)
/// looks from the first row.
#[derive(Default)]
pub struct ClaimFloors(std::sync::Mutex<std::collections::HashMap<String, i64>>);

impl ClaimFloors {
    fn get(&self, id: &str) -> i64 {
        self.lock().get(id).copied().unwrap_or(0)
    }

    /// Raises the floor to the last row of a claim (its items in row order); an empty claim
    /// forgets it.
    fn record(&self, id: &str, items: &[WorkItem]) {
        let mut floors = self.lock();
        match items.last().map(|item| item.row_index) {
            Some(last) => {
                let floor = floors.entry(id.to_string()).or_insert(0);
                *floor = (*floor).max(last);
            }
            None => {
                floors.remove(id);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Leases up to `max` claimable items at `rows` (`Dialect::claim_items`).
fn claim(
    db: &dyn Db,
    id: &str,
    owner: &str,
    ttl_ms: i64,
    max: usize,
    rows: std::ops::Range<i64>,
) -> Result<Vec<WorkItem>> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    all(
        db,
        db.dialect().claim_items(),
        args![id, owner, ttl_ms, max, rows.start, rows.end],
        |r| {
            Ok(WorkItem {
                row_index: r.int(0)?,
                repetition: r.int(1)?,
                row_id: r.text(2)?,
                values: json(&r.text(3)?, "row_values")?,
            })
        },
    )
}

impl<B: Backend> WorkQueue for B {
    fn plan_experiment(
        &self,
        new: &NewExperiment,
        key: Option<&str>,
        repetitions: i64,
        next_row: &mut dyn FnMut() -> Result<Option<PlanRow>>,
    ) -> Result<(Experiment, bool)> {
        let id = experiment_id();
        let (id, created) = self.write(|db| {
            if let Some(key) = key {
                if let Some(lock) = db.dialect().key_lock() {
                    db.exec(lock, args![key_lock(key)])?;
                }
                let found = first(
                    db,
                    "SELECT id FROM experiments WHERE detach_key = $1",
                    args![key],
                    |r| r.text(0),
                )?;
                if let Some(found) = found {
                    return Ok((found, false));
                }
            }
            insert_experiment(db, &id, new, key)?;
            let mut items: Vec<WorkRow> = Vec::new();
            while let Some((index, row_id, values)) = next_row()? {
                let values = to_json(&values)?;
                for repetition in 0..repetitions {
                    items.push((index, repetition, row_id.clone(), values.clone()));
                }
                if items.len() >= PLAN_CHUNK {
                    db.insert_work_items(&id, &items)?;
                    items.clear();
                }
            }
            if !items.is_empty() {
                db.insert_work_items(&id, &items)?;
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
        let floor = self.claim_floors().get(id);
        let mut items = self.write(|db| {
            if let Some(sql) = db.dialect().claim_plan() {
                db.exec(sql, args![])?;
            }
            let mut items = claim(db, id, owner, ttl_ms, max, floor..i64::MAX)?;
            if items.len() < max && floor > 0 {
                items.extend(claim(db, id, owner, ttl_ms, max - items.len(), 0..floor)?);
            }
            Ok(items)
        })?;
        items.sort_by_key(|item| (item.row_index, item.repetition));
        self.claim_floors().record(id, &items);
        Ok(items)
    }

    fn renew_items(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<u64> {
        let ttl_ms = ttl.as_millis() as i64;
        self.write(|db| {
            let sql = db.dialect().renew_items();
            db.exec(sql, args![id, owner, ttl_ms])
        })
    }

    fn lease_owners(&self, id: &str) -> Result<Vec<String>> {
        self.read(|db| {
            let now = db.dialect().now_ms();
            all(
                db,
                &format!(
                    "SELECT DISTINCT lease_owner FROM work_items \
                     WHERE experiment_id = $1 AND state = 'leased' AND lease_until >= {now}"
                ),
                args![id],
                |r| r.text(0),
            )
        })
    }

    fn release_items(&self, id: &str, owner: &str) -> Result<u64> {
        self.write(|db| {
            db.exec(
                "UPDATE work_items SET state = 'pending', lease_owner = NULL, lease_until = NULL \
                 WHERE experiment_id = $1 AND state = 'leased' AND lease_owner = $2",
                args![id, owner],
            )
        })
    }

    fn complete_items(&self, id: &str, owner: &str, batch: &[RunResult]) -> Result<usize> {
        self.write(|db| {
            let kept = db.complete_work_items(id, owner, batch)?;
            db.write_results(id, &kept)?;
            Ok(kept.len())
        })
    }

    fn work_counts(&self, id: &str) -> Result<Option<WorkCounts>> {
        self.read(|db| {
            let now = db.dialect().now_ms();
            let counts = one(
                db,
                &format!(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE state = 'pending'), \
                     COUNT(*) FILTER (WHERE state = 'leased'), \
                     COUNT(*) FILTER (WHERE state = 'done'), \
                     CAST(COALESCE(SUM(CASE WHEN claims > 1 THEN claims - 1 ELSE 0 END), 0) \
                       AS BIGINT), \
                     COUNT(DISTINCT CASE WHEN state = 'leased' AND lease_until >= {now} \
                       THEN lease_owner END) \
                     FROM work_items WHERE experiment_id = $1"
                ),
                args![id],
                |r| {
                    Ok(WorkCounts {
                        items: r.int(0)?,
                        pending: r.int(1)?,
                        leased: r.int(2)?,
                        done: r.int(3)?,
                        reclaimed: r.int(4)?,
                        workers: r.int(5)?,
                    })
                },
            )?;
            Ok((counts.items > 0).then_some(counts))
        })
    }

    fn finish_work(&self, id: &str) -> Result<ExperimentStatus> {
        self.write(|db| {
            let lock = db.dialect().for_update();
            let (status, open) = first(
                db,
                &format!(
                    "SELECT e.status, (SELECT COUNT(*) FROM work_items w \
                     WHERE w.experiment_id = e.id AND w.state <> 'done') \
                     FROM experiments e WHERE e.id = $1{lock}"
                ),
                args![id],
                |r| Ok((r.text(0)?, r.int(1)?)),
            )?
            .ok_or_else(|| StoreError::UnknownExperiment { id: id.into() })?;
            let status: ExperimentStatus = status.parse().map_err(StoreError::Corrupt)?;
            if status != ExperimentStatus::Running || open > 0 {
                return Ok(status);
            }
            let (started, finished) = one(
                db,
                "SELECT MIN(started_at), MAX(finished_at) FROM results WHERE experiment_id = $1",
                args![id],
                |r| Ok((r.opt_text(0)?, r.opt_text(1)?)),
            )?;
            db.exec(
                "UPDATE experiments SET status = 'completed', finished_at = $2, wall_ms = $3 \
                 WHERE id = $1",
                args![
                    id,
                    now().as_str(),
                    span_ms(started.as_deref(), finished.as_deref())
                ],
            )?;
            Ok(ExperimentStatus::Completed)
        })
    }
}
