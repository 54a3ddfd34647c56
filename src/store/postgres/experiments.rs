//! Experiments in the PostgreSQL store: records, result batches written with one statement
//! each (arrays unnested server-side), aggregates and the response cache.

use super::{PgStore, corrupt, require_prompt};
use crate::model::{
    CachedResponse, DatasetRef, EvaluatorSummary, Experiment, ExperimentStatus, Lease, Message,
    NewExperiment, ResultStatus, RowOutcome, RowText, RunResult, Score, Summary, now,
};
use crate::store::{ExperimentStore, ResponseCache, Result, ResultSink, StoreError, VisitResult};
use serde::Serialize;
use tokio_postgres::Row;

const EXPERIMENT_COLUMNS: &str = "e.id, e.name, p.name, e.version_id, v.seq, e.tag, e.dataset_path, \
     e.dataset_hash, e.dataset_rows, e.dataset_columns, e.model, e.base_url, e.evaluators, \
     e.settings, e.planned, e.status, e.author, e.created_at, e.finished_at, e.wall_ms, \
     e.lease_owner, e.lease_until, \
     (SELECT COUNT(*) FROM results er WHERE er.experiment_id = e.id AND er.status = 'error')";

const EXPERIMENT_JOINS: &str = "FROM experiments e JOIN prompts p ON p.id = e.prompt_id \
     JOIN prompt_versions v ON v.id = e.version_id";

fn json_column<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(column, e))
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn experiment_from_row(row: &Row) -> Result<Experiment> {
    Ok(Experiment {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        prompt: row.try_get(2)?,
        version_id: row.try_get(3)?,
        version_seq: row.try_get(4)?,
        tag: row.try_get(5)?,
        dataset: DatasetRef {
            path: row.try_get(6)?,
            hash: row.try_get(7)?,
            rows: row.try_get(8)?,
            columns: json_column(row.try_get(9)?, "dataset_columns")?,
        },
        model: row.try_get(10)?,
        base_url: row.try_get(11)?,
        evaluators: json_column(row.try_get(12)?, "evaluators")?,
        settings: json_column(row.try_get(13)?, "settings")?,
        planned: row.try_get(14)?,
        status: row
            .try_get::<_, &str>(15)?
            .parse()
            .map_err(|e: String| corrupt("status", e))?,
        author: row.try_get(16)?,
        created_at: row.try_get(17)?,
        finished_at: row.try_get(18)?,
        wall_ms: row.try_get(19)?,
        lease: match (
            row.try_get::<_, Option<String>>(20)?,
            row.try_get::<_, Option<String>>(21)?,
        ) {
            (Some(owner), Some(until)) => Some(Lease { owner, until }),
            _ => None,
        },
        error_count: 0,
        error_rate: 0.0,
    }
    .with_errors(row.try_get(22)?))
}

const RESULT_COLUMNS: &str = "r.row_index, r.row_id, r.repetition, r.vars, r.expected, r.messages, \
     r.output, r.finish_reason, r.status, r.error_kind, r.error_message, r.http_status, \
     r.attempts, r.latency_ms, r.prompt_tokens, r.completion_tokens, r.cached, r.started_at, \
     r.finished_at";

fn result_from_row(row: &Row) -> Result<RunResult> {
    let http_status: Option<i32> = row.try_get(11)?;
    let attempts: i64 = row.try_get(12)?;
    Ok(RunResult {
        row_index: row.try_get(0)?,
        row_id: row.try_get(1)?,
        repetition: row.try_get(2)?,
        vars: json_column(row.try_get(3)?, "vars")?,
        expected: row.try_get(4)?,
        messages: json_column::<Vec<Message>>(row.try_get(5)?, "messages")?,
        output: row.try_get(6)?,
        finish_reason: row.try_get(7)?,
        status: if row.try_get::<_, &str>(8)? == "ok" {
            ResultStatus::Ok
        } else {
            ResultStatus::Error
        },
        error_kind: row.try_get(9)?,
        error_message: row.try_get(10)?,
        http_status: http_status
            .map(|s| u16::try_from(s).map_err(|e| corrupt("http_status", e)))
            .transpose()?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt("attempts", e))?,
        latency_ms: row.try_get(13)?,
        prompt_tokens: row.try_get(14)?,
        completion_tokens: row.try_get(15)?,
        cached: row.try_get(16)?,
        started_at: row.try_get(17)?,
        finished_at: row.try_get(18)?,
        scores: Vec::new(),
        cache_key: None,
    })
}

/// A short id that is easy to type; the primary key guards against the improbable clash.
pub(super) fn experiment_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let suffix: String = (0..10)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    format!("exp_{suffix}")
}

/// Writes a new experiment's record (running), with its planning key when workers run it.
pub(super) async fn insert_experiment(
    db: &super::Db,
    id: &str,
    new: &NewExperiment,
    detach_key: Option<&str>,
) -> Result<()> {
    let pid = require_prompt(db, &new.prompt).await?;
    db.exec(
        "INSERT INTO experiments (id, name, prompt_id, version_id, tag, dataset_path, \
         dataset_hash, dataset_rows, dataset_columns, model, base_url, evaluators, settings, \
         planned, status, author, created_at, fingerprint, detach_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'running', $15, $16, $17, $18)",
        &[
            &id,
            &new.name,
            &pid,
            &new.version_id,
            &new.tag,
            &new.dataset.path,
            &new.dataset.hash,
            &new.dataset.rows,
            &to_json(&new.dataset.columns)?,
            &new.model,
            &new.base_url,
            &to_json(&new.evaluators)?,
            &to_json(&new.settings)?,
            &new.planned,
            &new.author,
            &now(),
            &new.fingerprint,
            &detach_key,
        ],
    )
    .await?;
    Ok(())
}

impl ExperimentStore for PgStore {
    fn create_experiment(&self, new: &NewExperiment) -> Result<Experiment> {
        let id = experiment_id();
        self.write(async |db| {
            insert_experiment(db, &id, new, None).await?;
            Ok(())
        })?;
        self.experiment(&id)
    }

    fn experiment(&self, id: &str) -> Result<Experiment> {
        let pattern = format!(
            "{}%",
            id.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let found: Vec<Experiment> = self.read(async |db| {
            db.query(
                &format!(
                    "SELECT {EXPERIMENT_COLUMNS} {EXPERIMENT_JOINS} \
                     WHERE e.id = $1 OR e.id LIKE $2 ESCAPE '\\' \
                     ORDER BY e.id = $1 DESC LIMIT 2"
                ),
                &[&id, &pattern],
            )
            .await?
            .iter()
            .map(experiment_from_row)
            .collect()
        })?;
        match found.as_slice() {
            [exact, ..] if exact.id == id => Ok(exact.clone()),
            [only] => Ok(only.clone()),
            [] => Err(StoreError::UnknownExperiment { id: id.into() }),
            _ => Err(StoreError::AmbiguousExperiment { id: id.into() }),
        }
    }

    fn experiments(&self, prompt: Option<&str>) -> Result<Vec<Experiment>> {
        self.read(async |db| {
            let pid = match prompt {
                Some(name) => Some(require_prompt(db, name).await?),
                None => None,
            };
            db.query(
                &format!(
                    "SELECT {EXPERIMENT_COLUMNS} {EXPERIMENT_JOINS} \
                     WHERE ($1::bigint IS NULL OR e.prompt_id = $1::bigint) \
                     ORDER BY e.created_at DESC, e.ord DESC"
                ),
                &[&pid],
            )
            .await?
            .iter()
            .map(experiment_from_row)
            .collect()
        })
    }

    fn matching(&self, fingerprint: &str) -> Result<Vec<(Experiment, i64)>> {
        self.read(async |db| {
            db.query(
                &format!(
                    "SELECT {EXPERIMENT_COLUMNS}, \
                     (SELECT COUNT(*) FROM results r WHERE r.experiment_id = e.id) \
                     {EXPERIMENT_JOINS} WHERE e.fingerprint = $1 \
                     ORDER BY e.created_at DESC, e.ord DESC LIMIT $2"
                ),
                &[&fingerprint, &crate::store::MATCHING],
            )
            .await?
            .iter()
            .map(|row| Ok((experiment_from_row(row)?, row.try_get::<_, i64>(23)?)))
            .collect()
        })
    }

    fn visit_outcomes(
        &self,
        experiment: &Experiment,
        cluster_column: Option<&str>,
        visit: &mut dyn FnMut(RowOutcome) -> Result<()>,
    ) -> Result<()> {
        let expected = experiment.settings.expected_column.as_deref();
        self.read(async |db| {
            let mut pending: Option<RowOutcome> = None;
            let mut current: Option<(i64, i64)> = None;
            // Ordered by row id through its index (byte order, as on SQLite), so two
            // experiments can be merged row by row without holding either in memory; the
            // index is partial (see migration 0009), so the query names its predicate.
            db.stream(
                "SELECT r.row_index, r.repetition, r.row_id, r.status, r.latency_ms, \
                 COALESCE(r.prompt_tokens, 0), COALESCE(r.completion_tokens, 0), \
                 substr(COALESCE(r.output, r.error_message, ''), 1, 200), r.vars, \
                 s.evaluator, s.pass, s.score \
                 FROM results r LEFT JOIN scores s ON s.experiment_id = r.experiment_id \
                 AND s.row_index = r.row_index AND s.repetition = r.repetition \
                 WHERE r.experiment_id = $1 AND r.row_id IS NOT NULL \
                 ORDER BY r.row_id, r.repetition, r.row_index, s.evaluator",
                &[&experiment.id],
                |row| {
                    let key: (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                    if current != Some(key) {
                        current = Some(key);
                        if let Some(done) = pending.take() {
                            visit(done)?;
                        }
                        let vars: crate::model::JsonObject = json_column(row.try_get(8)?, "vars")?;
                        pending = Some(RowOutcome {
                            row_id: row.try_get(2)?,
                            repetition: key.1,
                            ok: row.try_get::<_, &str>(3)? == "ok",
                            latency_ms: row.try_get(4)?,
                            prompt_tokens: row.try_get(5)?,
                            completion_tokens: row.try_get(6)?,
                            output: row.try_get(7)?,
                            input: crate::model::input_summary(&vars, expected),
                            scores: Vec::new(),
                            cluster: crate::model::cluster_key(&vars, cluster_column),
                        });
                    }
                    if let (Some(evaluator), Some(last)) =
                        (row.try_get::<_, Option<String>>(9)?, pending.as_mut())
                    {
                        last.scores
                            .push((evaluator, row.try_get(10)?, row.try_get(11)?));
                    }
                    Ok(())
                },
            )
            .await?;
            if let Some(done) = pending {
                visit(done)?;
            }
            Ok(())
        })
    }

    fn verdicts(
        &self,
        experiment: &Experiment,
        cluster_column: Option<&str>,
    ) -> Result<Vec<RowOutcome>> {
        self.read(async |db| {
            // Two scans in primary-key order, merged: no join and no sort by the server.
            // The variables (for the cluster key) are read only when clusters are asked for.
            let clustered = cluster_column.is_some();
            let mut keyed = Vec::with_capacity(experiment.planned.clamp(0, 1 << 20) as usize);
            db.stream(
                "SELECT row_index, repetition, row_id, status = 'ok', latency_ms, \
                 COALESCE(prompt_tokens, 0), COALESCE(completion_tokens, 0), \
                 CASE WHEN $2::boolean THEN vars END \
                 FROM results WHERE experiment_id = $1 ORDER BY row_index, repetition",
                &[&experiment.id, &clustered],
                |row| {
                    let cluster = match row.try_get::<_, Option<&str>>(7)? {
                        Some(text) => {
                            crate::model::cluster_key(&json_column(text, "vars")?, cluster_column)
                        }
                        None => None,
                    };
                    keyed.push((
                        (row.try_get(0)?, row.try_get(1)?),
                        RowOutcome {
                            row_id: row.try_get(2)?,
                            repetition: row.try_get(1)?,
                            ok: row.try_get(3)?,
                            latency_ms: row.try_get(4)?,
                            prompt_tokens: row.try_get(5)?,
                            completion_tokens: row.try_get(6)?,
                            output: String::new(),
                            input: String::new(),
                            scores: Vec::new(),
                            cluster,
                        },
                    ));
                    Ok(())
                },
            )
            .await?;
            let mut scores = Vec::new();
            db.stream(
                "SELECT row_index, repetition, evaluator, pass, score FROM scores \
                 WHERE experiment_id = $1 ORDER BY row_index, repetition, evaluator",
                &[&experiment.id],
                |row| {
                    scores.push((
                        (row.try_get(0)?, row.try_get(1)?),
                        (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?),
                    ));
                    Ok(())
                },
            )
            .await?;
            Ok(crate::store::in_row_id_order(keyed, scores))
        })
    }

    fn row_texts(&self, experiment: &Experiment, row_ids: &[String]) -> Result<Vec<RowText>> {
        let expected = experiment.settings.expected_column.as_deref();
        let rows = self.read(async |db| {
            // The first repetition of each row: DISTINCT ON keeps the first of each row id in
            // the order given.
            db.query(
                "SELECT DISTINCT ON (row_id) row_id, vars, expected, \
                 substr(COALESCE(output, error_message, ''), 1, $3), status <> 'ok' \
                 FROM results WHERE experiment_id = $1 AND row_id = ANY($2) \
                 AND row_id IS NOT NULL ORDER BY row_id, repetition, row_index",
                &[
                    &experiment.id,
                    &row_ids,
                    &(crate::store::ROW_TEXT_CHARS as i32),
                ],
            )
            .await
        })?;
        let mut found = std::collections::HashMap::new();
        for row in rows {
            let id: String = row.try_get(0)?;
            let vars: crate::model::JsonObject = json_column(row.try_get(1)?, "vars")?;
            found.insert(
                id.clone(),
                RowText {
                    row_id: id,
                    input: crate::model::input_summary(&vars, expected),
                    expected: row.try_get(2)?,
                    output: row.try_get(3)?,
                    error: row.try_get(4)?,
                },
            );
        }
        Ok(row_ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    fn finish_experiment(&self, id: &str, status: ExperimentStatus, wall_ms: i64) -> Result<()> {
        self.write(async |db| {
            db.exec(
                "UPDATE experiments SET status = $2, finished_at = $3, wall_ms = wall_ms + $4 \
                 WHERE id = $1",
                &[&id, &status.as_str(), &now(), &wall_ms],
            )
            .await?;
            Ok(())
        })
    }

    fn discard_experiment(&self, id: &str) -> Result<()> {
        self.write(async |db| {
            db.exec("DELETE FROM work_items WHERE experiment_id = $1", &[&id])
                .await?;
            db.exec("DELETE FROM scores WHERE experiment_id = $1", &[&id])
                .await?;
            db.exec("DELETE FROM results WHERE experiment_id = $1", &[&id])
                .await?;
            db.exec("DELETE FROM experiments WHERE id = $1", &[&id])
                .await?;
            Ok(())
        })
    }

    fn reopen_experiment(&self, id: &str) -> Result<()> {
        self.write(async |db| {
            db.exec(
                "UPDATE experiments SET status = 'running', finished_at = NULL WHERE id = $1",
                &[&id],
            )
            .await?;
            Ok(())
        })
    }

    fn take_lease(
        &self,
        id: &str,
        owner: &str,
        ttl: std::time::Duration,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<()> {
        let now = now();
        let until = later(ttl);
        self.write(async |db| {
            // The row lock makes two takers on different machines decide one after the other.
            let held = db
                .opt(
                    "SELECT lease_owner, lease_until FROM experiments WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?;
            let Some(held) = held else {
                return Err(StoreError::UnknownExperiment { id: id.into() });
            };
            let holder: Option<String> = held.try_get(0)?;
            let holder_until: Option<String> = held.try_get(1)?;
            if let (Some(holder), Some(holder_until)) = (holder, holder_until)
                && holder != owner
                && holder_until > now
                && alive(&holder)
            {
                return Err(StoreError::ExperimentBusy {
                    id: id.into(),
                    holder,
                    until: holder_until,
                });
            }
            db.exec(
                "UPDATE experiments SET lease_owner = $2, lease_until = $3 WHERE id = $1",
                &[&id, &owner, &until],
            )
            .await?;
            Ok(())
        })
    }

    fn renew_lease(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<bool> {
        let until = later(ttl);
        self.write(async |db| {
            let changed = db
                .exec(
                    "UPDATE experiments SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
                    &[&id, &owner, &until],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn release_lease(&self, id: &str, owner: &str) -> Result<()> {
        self.write(async |db| {
            db.exec(
                "UPDATE experiments SET lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2",
                &[&id, &owner],
            )
            .await?;
            Ok(())
        })
    }

    fn visit_successes(&self, id: &str, visit: &mut dyn FnMut(i64, i64)) -> Result<()> {
        self.read(async |db| {
            db.stream(
                "SELECT row_index, repetition FROM results WHERE experiment_id = $1 AND status = 'ok'",
                &[&id],
                |row| {
                    visit(row.try_get(0)?, row.try_get(1)?);
                    Ok(())
                },
            )
            .await
        })
    }

    fn summary(&self, experiment: &Experiment) -> Result<Summary> {
        self.read(async |db| summary(db, experiment).await)
    }

    fn tokens(&self, id: &str) -> Result<(i64, i64)> {
        self.read(async |db| {
            let row = db
                .one(
                    "SELECT COALESCE(SUM(prompt_tokens), 0)::bigint, \
                     COALESCE(SUM(completion_tokens), 0)::bigint \
                     FROM results WHERE experiment_id = $1",
                    &[&id],
                )
                .await?;
            Ok((row.try_get(0)?, row.try_get(1)?))
        })
    }

    fn visit_results(&self, id: &str, visit: &mut VisitResult<'_>) -> Result<()> {
        self.read(async |db| {
            // Each result with its scores in one row, so one streamed query serves any size.
            db.stream(
                &format!(
                    "SELECT {RESULT_COLUMNS}, (SELECT json_agg(json_build_array(s.evaluator, \
                     s.score, s.pass, s.reason, s.error) ORDER BY s.evaluator)::text \
                     FROM scores s WHERE s.experiment_id = r.experiment_id \
                     AND s.row_index = r.row_index AND s.repetition = r.repetition) \
                     FROM results r WHERE r.experiment_id = $1 ORDER BY r.row_index, r.repetition"
                ),
                &[&id],
                |row| {
                    let mut result = result_from_row(&row)?;
                    if let Some(scores) = row.try_get::<_, Option<&str>>(19)? {
                        let scores: Vec<(String, f64, bool, String, bool)> =
                            json_column(scores, "scores")?;
                        result.scores = scores
                            .into_iter()
                            .map(|(evaluator, score, pass, reason, error)| Score {
                                evaluator,
                                score,
                                pass,
                                reason,
                                error,
                            })
                            .collect();
                    }
                    visit(result)
                },
            )
            .await
        })
    }

    fn fingerprint(&self, id: &str) -> Result<Option<String>> {
        self.read(async |db| {
            Ok(db
                .opt("SELECT fingerprint FROM experiments WHERE id = $1", &[&id])
                .await?
                .map(|r| r.try_get::<_, Option<String>>(0))
                .transpose()?
                .flatten())
        })
    }

    fn restore_experiment(&self, e: &Experiment, fingerprint: Option<&str>) -> Result<()> {
        let (lease_owner, lease_until) = match &e.lease {
            Some(lease) => (Some(lease.owner.as_str()), Some(lease.until.as_str())),
            None => (None, None),
        };
        let columns = to_json(&e.dataset.columns)?;
        let evaluators = to_json(&e.evaluators)?;
        let settings = to_json(&e.settings)?;
        self.write(async |db| {
            let pid = require_prompt(db, &e.prompt).await?;
            db.exec(
                "INSERT INTO experiments (id, name, prompt_id, version_id, tag, dataset_path, \
                 dataset_hash, dataset_rows, dataset_columns, model, base_url, evaluators, settings, \
                 planned, status, author, created_at, finished_at, wall_ms, fingerprint, \
                 lease_owner, lease_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                 $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
                &[
                    &e.id,
                    &e.name,
                    &pid,
                    &e.version_id,
                    &e.tag,
                    &e.dataset.path,
                    &e.dataset.hash,
                    &e.dataset.rows,
                    &columns,
                    &e.model,
                    &e.base_url,
                    &evaluators,
                    &settings,
                    &e.planned,
                    &e.status.as_str(),
                    &e.author,
                    &e.created_at,
                    &e.finished_at,
                    &e.wall_ms,
                    &fingerprint,
                    &lease_owner,
                    &lease_until,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn visit_cache(
        &self,
        visit: &mut dyn FnMut(&str, CachedResponse, &str) -> Result<()>,
    ) -> Result<()> {
        self.read(async |db| {
            db.stream(
                "SELECT key, output, finish_reason, prompt_tokens, completion_tokens, http_status, \
                 latency_ms, created_at FROM response_cache ORDER BY key",
                &[],
                |r| {
                    let http_status: Option<i32> = r.try_get(5)?;
                    let response = CachedResponse {
                        output: r.try_get(1)?,
                        finish_reason: r.try_get(2)?,
                        prompt_tokens: r.try_get(3)?,
                        completion_tokens: r.try_get(4)?,
                        http_status: http_status
                            .map(|s| u16::try_from(s).map_err(|e| corrupt("http_status", e)))
                            .transpose()?,
                        latency_ms: r.try_get(6)?,
                        created_at: r.try_get(7)?,
                    };
                    visit(r.try_get(0)?, response, r.try_get(7)?)
                },
            )
            .await
        })
    }

    fn restore_cache(&self, entries: &[(String, CachedResponse, String)]) -> Result<()> {
        let mut k = CacheColumns::default();
        for (key, r, created_at) in entries {
            k.key.push(key.as_str());
            k.output.push(r.output.as_str());
            k.finish_reason.push(r.finish_reason.as_deref());
            k.prompt_tokens.push(r.prompt_tokens);
            k.completion_tokens.push(r.completion_tokens);
            k.http_status.push(r.http_status.map(i32::from));
            k.latency_ms.push(r.latency_ms);
            k.created_at.push(created_at.as_str());
        }
        self.write(async |db| insert_cache(db, &k, false).await)
    }
}

impl ResultSink for PgStore {
    /// One transaction of three statements whatever the batch size: the results, their
    /// scores and the new cache entries each go in as parallel arrays unnested by the server.
    fn write_results(&self, experiment_id: &str, batch: &[RunResult]) -> Result<()> {
        let batch: Vec<&RunResult> = batch.iter().collect();
        self.write(async |db| write_batch(db, experiment_id, &batch).await)
    }
}

/// Writes results, their scores and new cache entries inside the caller's transaction: three
/// statements whatever the batch size. An errored result may be replaced by a later attempt;
/// a successful one never is.
pub(super) async fn write_batch(
    db: &super::Db,
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
        }
        {
            // RETURNING names the rows written: none for a successful result already there,
            // whose scores stay as they are too.
            let written = db
                .query(
                    "INSERT INTO results (experiment_id, row_index, repetition, row_id, vars, \
                     expected, messages, output, finish_reason, status, error_kind, error_message, \
                     http_status, attempts, latency_ms, prompt_tokens, completion_tokens, cached, \
                     started_at, finished_at) \
                     SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
                     $12::text[], $13::int[], $14::bigint[], $15::float8[], $16::bigint[], \
                     $17::bigint[], $18::bool[], $19::text[], $20::text[]) \
                     ON CONFLICT (experiment_id, row_index, repetition) DO UPDATE SET \
                     row_id = excluded.row_id, vars = excluded.vars, expected = excluded.expected, \
                     messages = excluded.messages, output = excluded.output, \
                     finish_reason = excluded.finish_reason, status = excluded.status, \
                     error_kind = excluded.error_kind, error_message = excluded.error_message, \
                     http_status = excluded.http_status, attempts = excluded.attempts, \
                     latency_ms = excluded.latency_ms, prompt_tokens = excluded.prompt_tokens, \
                     completion_tokens = excluded.completion_tokens, cached = excluded.cached, \
                     started_at = excluded.started_at, finished_at = excluded.finished_at \
                     WHERE results.status <> 'ok' \
                     RETURNING row_index, repetition",
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
                    "INSERT INTO scores (experiment_id, row_index, repetition, evaluator, score, \
                     pass, error, reason) \
                     SELECT DISTINCT ON (2, 3, 4) $1, * FROM unnest($2::bigint[], $3::bigint[], \
                     $4::text[], $5::float8[], $6::bool[], $7::bool[], $8::text[]) \
                     ON CONFLICT (experiment_id, row_index, repetition, evaluator) DO UPDATE SET \
                     score = excluded.score, pass = excluded.pass, error = excluded.error, \
                     reason = excluded.reason",
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
            insert_cache(db, &k, true).await?;
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

/// Cache entries in one statement: `replace` puts a new answer in place of a key already
/// there, else that key keeps its answer.
async fn insert_cache(db: &super::Db, k: &CacheColumns<'_>, replace: bool) -> Result<()> {
    if k.key.is_empty() {
        return Ok(());
    }
    let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[
        &k.key,
        &k.output,
        &k.finish_reason,
        &k.prompt_tokens,
        &k.completion_tokens,
        &k.http_status,
        &k.latency_ms,
        &k.created_at,
    ];
    if replace {
        db.exec(
            "INSERT INTO response_cache (key, output, finish_reason, prompt_tokens, \
             completion_tokens, http_status, latency_ms, created_at) \
             SELECT DISTINCT ON (1) * FROM unnest($1::text[], $2::text[], $3::text[], \
             $4::bigint[], $5::bigint[], $6::int[], $7::float8[], $8::text[]) \
             ON CONFLICT (key) DO UPDATE SET output = excluded.output, \
             finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens, \
             completion_tokens = excluded.completion_tokens, http_status = excluded.http_status, \
             latency_ms = excluded.latency_ms, created_at = excluded.created_at",
            params,
        )
        .await?;
    } else {
        db.exec(
            "INSERT INTO response_cache (key, output, finish_reason, prompt_tokens, \
             completion_tokens, http_status, latency_ms, created_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], \
             $5::bigint[], $6::int[], $7::float8[], $8::text[]) \
             ON CONFLICT (key) DO NOTHING",
            params,
        )
        .await?;
    }
    Ok(())
}

impl ResponseCache for PgStore {
    fn cached_response(&self, key: &str) -> Result<Option<CachedResponse>> {
        self.read(async |db| {
            let Some(r) = db
                .opt(
                    "SELECT output, finish_reason, prompt_tokens, completion_tokens, http_status, \
                     latency_ms, created_at FROM response_cache WHERE key = $1",
                    &[&key],
                )
                .await?
            else {
                return Ok(None);
            };
            let http_status: Option<i32> = r.try_get(4)?;
            Ok(Some(CachedResponse {
                output: r.try_get(0)?,
                finish_reason: r.try_get(1)?,
                prompt_tokens: r.try_get(2)?,
                completion_tokens: r.try_get(3)?,
                http_status: http_status
                    .map(|s| u16::try_from(s).map_err(|e| corrupt("http_status", e)))
                    .transpose()?,
                latency_ms: r.try_get(5)?,
                created_at: r.try_get(6)?,
            }))
        })
    }
}

async fn summary(db: &super::Db, experiment: &Experiment) -> Result<Summary> {
    let id = experiment.id.as_str();
    let row = db
        .one(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'ok'), \
             COUNT(*) FILTER (WHERE cached), COALESCE(SUM(prompt_tokens), 0)::bigint, \
             COALESCE(SUM(completion_tokens), 0)::bigint, \
             MAX(CASE WHEN status = 'ok' THEN latency_ms END) \
             FROM results WHERE experiment_id = $1",
            &[&id],
        )
        .await?;
    let results: i64 = row.try_get(0)?;
    let ok: i64 = row.try_get(1)?;
    let cached: i64 = row.try_get(2)?;
    let prompt_tokens: i64 = row.try_get(3)?;
    let completion_tokens: i64 = row.try_get(4)?;
    let max: Option<f64> = row.try_get(5)?;
    // Nearest-rank percentile over the successful calls, computed by the database so no
    // latency list is held in memory.
    let mut percentiles = [None, None];
    for (slot, p) in percentiles.iter_mut().zip([0.50_f64, 0.95]) {
        if ok == 0 {
            break;
        }
        let rank = crate::store::nearest_rank(ok, p);
        *slot = db
            .opt(
                "SELECT latency_ms FROM results WHERE experiment_id = $1 AND status = 'ok' \
                 ORDER BY latency_ms LIMIT 1 OFFSET $2",
                &[&id, &rank],
            )
            .await?
            .map(|r| r.try_get::<_, f64>(0))
            .transpose()?;
    }
    let mut by_name = std::collections::HashMap::new();
    for r in db
        .query(
            "SELECT evaluator, COUNT(*) FILTER (WHERE pass), COUNT(*), COALESCE(AVG(score), 0), \
             COUNT(*) FILTER (WHERE error), COALESCE(SUM(score * score), 0.0)::float8 \
             FROM scores WHERE experiment_id = $1 GROUP BY evaluator",
            &[&id],
        )
        .await?
    {
        let name: String = r.try_get(0)?;
        let values: (i64, i64, f64, i64) =
            (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
        let sum_sq: f64 = r.try_get(5)?;
        by_name.insert(name, (values, sum_sq));
    }
    // In the order the evaluators were given; each over every result. One answer a row: the
    // rows are the results, and the aggregates above are the per-row sums already; only
    // repetitions need the grouped pass over the rows.
    let mut spreads = Vec::new();
    for name in &experiment.evaluators {
        spreads.push(if experiment.settings.repetitions <= 1 {
            let ((passed, total, mean, _), sum_sq) =
                by_name.get(name).copied().unwrap_or(((0, 0, 0.0, 0), 0.0));
            crate::store::single_answer_spread(results, passed, mean * total as f64, sum_sq)
        } else {
            row_spread(db, id, name).await?
        });
    }
    let evaluators = experiment
        .evaluators
        .iter()
        .zip(spreads)
        .map(|(name, spread)| {
            let ((passed, total, mean, errors), _) =
                by_name.get(name).copied().unwrap_or(((0, 0, 0.0, 0), 0.0));
            EvaluatorSummary {
                evaluator: name.clone(),
                passed,
                total: results,
                pass_rate: ratio(passed, results),
                mean_score: if results == 0 {
                    0.0
                } else {
                    mean * total as f64 / results as f64
                },
                errors,
                spread,
            }
        })
        .collect();
    let mut error_kinds = Vec::new();
    for r in db
        .query(
            "SELECT COALESCE(error_kind, 'unknown'), COUNT(*) FROM results \
             WHERE experiment_id = $1 AND status = 'error' GROUP BY 1 ORDER BY 2 DESC, 1",
            &[&id],
        )
        .await?
    {
        error_kinds.push((r.try_get(0)?, r.try_get(1)?));
    }
    Ok(Summary {
        results,
        ok,
        errored: results - ok,
        cached,
        missing: (experiment.planned - results).max(0),
        error_rate: ratio(results - ok, results),
        evaluators,
        latency_p50_ms: percentiles[0],
        latency_p95_ms: percentiles[1],
        latency_max_ms: max,
        prompt_tokens,
        completion_tokens,
        error_kinds,
    })
}

/// One evaluator's results folded per row (repetitions to their mean; an errored call, which
/// has no score, counts as a fail scoring 0), summed over rows by the database: the store never
/// holds a row in memory.
async fn row_spread(db: &super::Db, id: &str, evaluator: &str) -> Result<crate::model::RowSpread> {
    use crate::model::{RowSpread, SpreadSums};
    let r = db
        .one(
            "SELECT COUNT(*), COALESCE(SUM(k), 0)::bigint, \
             COALESCE(SUM(pm), 0.0)::float8, COALESCE(SUM(pm * pm), 0.0)::float8, \
             COALESCE(SUM(pv), 0.0)::float8, COALESCE(SUM(sm), 0.0)::float8, \
             COALESCE(SUM(sm * sm), 0.0)::float8, COALESCE(SUM(sv), 0.0)::float8 \
             FROM (SELECT COUNT(*) AS k, AVG(p) AS pm, AVG(s) AS sm, \
               CASE WHEN COUNT(*) > 1 THEN (SUM(p * p) - SUM(p) * SUM(p) / COUNT(*)) / (COUNT(*) - 1) \
                 ELSE 0.0 END AS pv, \
               CASE WHEN COUNT(*) > 1 THEN (SUM(s * s) - SUM(s) * SUM(s) / COUNT(*)) / (COUNT(*) - 1) \
                 ELSE 0.0 END AS sv \
               FROM (SELECT r.row_index, \
                 CASE WHEN sc.pass THEN 1.0::float8 ELSE 0.0::float8 END AS p, \
                 COALESCE(sc.score, 0.0)::float8 AS s \
                 FROM results r LEFT JOIN scores sc ON sc.experiment_id = r.experiment_id \
                 AND sc.row_index = r.row_index AND sc.repetition = r.repetition AND sc.evaluator = $2 \
                 WHERE r.experiment_id = $1) per_answer \
               GROUP BY row_index) per_row",
            &[&id, &evaluator],
        )
        .await?;
    Ok(RowSpread {
        rows: r.try_get(0)?,
        answers: r.try_get(1)?,
        pass: SpreadSums {
            sum: r.try_get(2)?,
            sum_sq: r.try_get(3)?,
            within: r.try_get(4)?,
        },
        score: SpreadSums {
            sum: r.try_get(5)?,
            sum_sq: r.try_get(6)?,
            within: r.try_get(7)?,
        },
    })
}

/// The stored time `ttl` from now.
fn later(ttl: std::time::Duration) -> String {
    let at = time::OffsetDateTime::now_utc() + ttl;
    crate::model::format_time(at)
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
