//! Experiments in the SQLite store: records, batched result writes, aggregates and the
//! response cache.

use super::{SqliteStore, require_prompt};
use crate::model::{
    CachedResponse, DatasetRef, EvaluatorSummary, Experiment, ExperimentStatus, Message,
    NewExperiment, ResultStatus, RowOutcome, RowText, RunResult, Score, Summary, now,
};
use crate::store::{ExperimentStore, ResponseCache, Result, ResultSink, StoreError, VisitResult};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

const EXPERIMENT_COLUMNS: &str = "e.id, e.name, p.name, e.version_id, v.seq, e.tag, e.dataset_path, \
     e.dataset_hash, e.dataset_rows, e.dataset_columns, e.model, e.base_url, e.evaluators, \
     e.settings, e.planned, e.status, e.author, e.created_at, e.finished_at, e.wall_ms, \
     e.lease_owner, e.lease_until, \
     (SELECT COUNT(*) FROM results er WHERE er.experiment_id = e.id AND er.status = 'error')";

const EXPERIMENT_JOINS: &str = "FROM experiments e JOIN prompts p ON p.id = e.prompt_id \
     JOIN prompt_versions v ON v.id = e.version_id";

const RESULT_COLUMNS: &str = "row_index, row_id, repetition, vars, expected, messages, output, \
     finish_reason, status, error_kind, error_message, http_status, attempts, latency_ms, \
     prompt_tokens, completion_tokens, cached, started_at, finished_at";

fn json_column<T: serde::de::DeserializeOwned>(text: &str, column: usize) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn experiment_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Experiment> {
    let status: String = row.get(15)?;
    Ok(Experiment {
        id: row.get(0)?,
        name: row.get(1)?,
        prompt: row.get(2)?,
        version_id: row.get(3)?,
        version_seq: row.get(4)?,
        tag: row.get(5)?,
        dataset: DatasetRef {
            path: row.get(6)?,
            hash: row.get(7)?,
            rows: row.get(8)?,
            columns: json_column(&row.get::<_, String>(9)?, 9)?,
        },
        model: row.get(10)?,
        base_url: row.get(11)?,
        evaluators: json_column(&row.get::<_, String>(12)?, 12)?,
        settings: json_column(&row.get::<_, String>(13)?, 13)?,
        planned: row.get(14)?,
        status: status.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(15, rusqlite::types::Type::Text, e.into())
        })?,
        author: row.get(16)?,
        created_at: row.get(17)?,
        finished_at: row.get(18)?,
        wall_ms: row.get(19)?,
        lease: match (
            row.get::<_, Option<String>>(20)?,
            row.get::<_, Option<String>>(21)?,
        ) {
            (Some(owner), Some(until)) => Some(crate::model::Lease { owner, until }),
            _ => None,
        },
        error_count: 0,
        error_rate: 0.0,
    }
    .with_errors(row.get(22)?))
}

fn result_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunResult> {
    let status: String = row.get(8)?;
    Ok(RunResult {
        row_index: row.get(0)?,
        row_id: row.get(1)?,
        repetition: row.get(2)?,
        vars: json_column(&row.get::<_, String>(3)?, 3)?,
        expected: row.get(4)?,
        messages: json_column::<Vec<Message>>(&row.get::<_, String>(5)?, 5)?,
        output: row.get(6)?,
        finish_reason: row.get(7)?,
        status: if status == "ok" {
            ResultStatus::Ok
        } else {
            ResultStatus::Error
        },
        error_kind: row.get(9)?,
        error_message: row.get(10)?,
        http_status: row.get(11)?,
        attempts: row.get(12)?,
        latency_ms: row.get(13)?,
        prompt_tokens: row.get(14)?,
        completion_tokens: row.get(15)?,
        cached: row.get(16)?,
        started_at: row.get(17)?,
        finished_at: row.get(18)?,
        scores: Vec::new(),
        cache_key: None,
    })
}

/// A short id that is easy to type and, at 10 characters of base 36, practically unique;
/// the primary key still guards against the improbable clash.
pub(super) fn experiment_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let suffix: String = (0..10)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    format!("exp_{suffix}")
}

/// Writes a new experiment's record (running), with its planning key when workers run it.
pub(super) fn insert_experiment(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    new: &NewExperiment,
    detach_key: Option<&str>,
) -> Result<()> {
    let pid = require_prompt(tx, &new.prompt)?;
    tx.execute(
        "INSERT INTO experiments (id, name, prompt_id, version_id, tag, dataset_path, \
         dataset_hash, dataset_rows, dataset_columns, model, base_url, evaluators, settings, \
         planned, status, author, created_at, fingerprint, detach_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'running', ?15, ?16, ?17, ?18)",
        params![
            id,
            new.name,
            pid,
            new.version_id,
            new.tag,
            new.dataset.path,
            new.dataset.hash,
            new.dataset.rows,
            to_json(&new.dataset.columns)?,
            new.model,
            new.base_url,
            to_json(&new.evaluators)?,
            to_json(&new.settings)?,
            new.planned,
            new.author,
            now(),
            new.fingerprint,
            detach_key,
        ],
    )?;
    Ok(())
}

impl ExperimentStore for SqliteStore {
    fn create_experiment(&self, new: &NewExperiment) -> Result<Experiment> {
        let id = experiment_id();
        self.write(|tx| {
            insert_experiment(tx, &id, new, None)?;
            Ok(())
        })?;
        self.experiment(&id)
    }

    fn experiment(&self, id: &str) -> Result<Experiment> {
        let found: Vec<Experiment> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EXPERIMENT_COLUMNS} {EXPERIMENT_JOINS} WHERE e.id = ?1 OR e.id LIKE ?2 ESCAPE '\\' \
                 ORDER BY e.id = ?1 DESC LIMIT 2"
            ))?;
            let pattern = format!(
                "{}%",
                id.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            let rows = stmt.query_map(params![id, pattern], experiment_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        match found.as_slice() {
            [exact, ..] if exact.id == id => Ok(exact.clone()),
            [only] => Ok(only.clone()),
            [] => Err(StoreError::UnknownExperiment { id: id.into() }),
            _ => Err(StoreError::AmbiguousExperiment { id: id.into() }),
        }
    }

    fn experiments(&self, prompt: Option<&str>) -> Result<Vec<Experiment>> {
        self.read(|conn| {
            let pid = prompt.map(|name| require_prompt(conn, name)).transpose()?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EXPERIMENT_COLUMNS} {EXPERIMENT_JOINS} WHERE (?1 IS NULL OR e.prompt_id = ?1) \
                 ORDER BY e.created_at DESC, e.rowid DESC"
            ))?;
            let rows = stmt.query_map(params![pid], experiment_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn matching(&self, fingerprint: &str) -> Result<Vec<(Experiment, i64)>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EXPERIMENT_COLUMNS}, \
                 (SELECT COUNT(*) FROM results r WHERE r.experiment_id = e.id) \
                 {EXPERIMENT_JOINS} WHERE e.fingerprint = ?1 \
                 ORDER BY e.created_at DESC, e.rowid DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![fingerprint, crate::store::MATCHING], |row| {
                Ok((experiment_from_row(row)?, row.get(23)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn visit_outcomes(
        &self,
        experiment: &Experiment,
        cluster_column: Option<&str>,
        visit: &mut dyn FnMut(RowOutcome) -> Result<()>,
    ) -> Result<()> {
        let expected = experiment.settings.expected_column.as_deref();
        self.read(|conn| {
            // Ordered by row id through its index, so two experiments can be merged row by row
            // without holding either in memory.
            let mut stmt = conn.prepare_cached(
                "SELECT r.row_index, r.repetition, r.row_id, r.status, r.latency_ms, \
                 COALESCE(r.prompt_tokens, 0), COALESCE(r.completion_tokens, 0), \
                 substr(COALESCE(r.output, r.error_message, ''), 1, 200), r.vars, \
                 s.evaluator, s.pass, s.score \
                 FROM results r LEFT JOIN scores s ON s.experiment_id = r.experiment_id \
                 AND s.row_index = r.row_index AND s.repetition = r.repetition \
                 WHERE r.experiment_id = ?1 ORDER BY r.row_id, r.repetition, r.row_index",
            )?;
            let mut rows = stmt.query(params![experiment.id])?;
            let mut pending: Option<RowOutcome> = None;
            let mut current: Option<(i64, i64)> = None;
            while let Some(row) = rows.next()? {
                let key: (i64, i64) = (row.get(0)?, row.get(1)?);
                if current != Some(key) {
                    current = Some(key);
                    if let Some(done) = pending.take() {
                        visit(done)?;
                    }
                    let vars: crate::model::JsonObject = json_column(&row.get::<_, String>(8)?, 8)?;
                    let status: String = row.get(3)?;
                    pending = Some(RowOutcome {
                        row_id: row.get(2)?,
                        repetition: key.1,
                        ok: status == "ok",
                        latency_ms: row.get(4)?,
                        prompt_tokens: row.get(5)?,
                        completion_tokens: row.get(6)?,
                        output: row.get(7)?,
                        input: crate::model::input_summary(&vars, expected),
                        scores: Vec::new(),
                        cluster: crate::model::cluster_key(&vars, cluster_column),
                    });
                }
                if let (Some(evaluator), Some(last)) =
                    (row.get::<_, Option<String>>(9)?, pending.as_mut())
                {
                    last.scores.push((evaluator, row.get(10)?, row.get(11)?));
                }
            }
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
        self.read(|conn| {
            // Two scans in primary-key order, merged: no per-row index lookup.
            // The variables (for the cluster key) are read only when clusters are asked for.
            let mut stmt = conn.prepare_cached(
                "SELECT row_index, repetition, row_id, status = 'ok', latency_ms, \
                 COALESCE(prompt_tokens, 0), COALESCE(completion_tokens, 0), \
                 CASE WHEN ?2 THEN vars END \
                 FROM results WHERE experiment_id = ?1 ORDER BY row_index, repetition",
            )?;
            let mut rows = stmt.query(params![experiment.id, cluster_column.is_some()])?;
            let mut keyed = Vec::with_capacity(experiment.planned.clamp(0, 1 << 20) as usize);
            while let Some(row) = rows.next()? {
                let cluster = match row.get::<_, Option<String>>(7)? {
                    Some(text) => {
                        crate::model::cluster_key(&json_column(&text, 7)?, cluster_column)
                    }
                    None => None,
                };
                keyed.push((
                    (row.get(0)?, row.get(1)?),
                    RowOutcome {
                        row_id: row.get(2)?,
                        repetition: row.get(1)?,
                        ok: row.get(3)?,
                        latency_ms: row.get(4)?,
                        prompt_tokens: row.get(5)?,
                        completion_tokens: row.get(6)?,
                        output: String::new(),
                        input: String::new(),
                        scores: Vec::new(),
                        cluster,
                    },
                ));
            }
            let mut stmt = conn.prepare_cached(
                "SELECT row_index, repetition, evaluator, pass, score FROM scores \
                 WHERE experiment_id = ?1 ORDER BY row_index, repetition, evaluator",
            )?;
            let scores = stmt
                .query_map(params![experiment.id], |r| {
                    Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?)))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(crate::store::in_row_id_order(keyed, scores))
        })
    }

    fn row_texts(&self, experiment: &Experiment, row_ids: &[String]) -> Result<Vec<RowText>> {
        let expected = experiment.settings.expected_column.as_deref();
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT vars, expected, substr(COALESCE(output, error_message, ''), 1, ?3), \
                 status <> 'ok' FROM results WHERE experiment_id = ?1 AND row_id = ?2 \
                 ORDER BY repetition, row_index LIMIT 1",
            )?;
            let mut texts = Vec::new();
            for id in row_ids {
                let found = stmt
                    .query_row(
                        params![experiment.id, id, crate::store::ROW_TEXT_CHARS],
                        |r| {
                            let vars: crate::model::JsonObject =
                                json_column(&r.get::<_, String>(0)?, 0)?;
                            Ok(RowText {
                                row_id: id.clone(),
                                input: crate::model::input_summary(&vars, expected),
                                expected: r.get(1)?,
                                output: r.get(2)?,
                                error: r.get(3)?,
                            })
                        },
                    )
                    .optional()?;
                texts.extend(found);
            }
            Ok(texts)
        })
    }

    fn finish_experiment(&self, id: &str, status: ExperimentStatus, wall_ms: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE experiments SET status = ?2, finished_at = ?3, wall_ms = wall_ms + ?4 WHERE id = ?1",
                params![id, status.as_str(), now(), wall_ms],
            )?;
            Ok(())
        })
    }

    fn discard_experiment(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM work_items WHERE experiment_id = ?1",
                params![id],
            )?;
            tx.execute("DELETE FROM scores WHERE experiment_id = ?1", params![id])?;
            tx.execute("DELETE FROM results WHERE experiment_id = ?1", params![id])?;
            tx.execute("DELETE FROM experiments WHERE id = ?1", params![id])?;
            Ok(())
        })
    }

    fn reopen_experiment(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE experiments SET status = 'running', finished_at = NULL WHERE id = ?1",
                params![id],
            )?;
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
        self.write(|tx| {
            let held: Option<(Option<String>, Option<String>)> = tx
                .query_row(
                    "SELECT lease_owner, lease_until FROM experiments WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((holder, holder_until)) = held else {
                return Err(StoreError::UnknownExperiment { id: id.into() });
            };
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
            tx.execute(
                "UPDATE experiments SET lease_owner = ?2, lease_until = ?3 WHERE id = ?1",
                params![id, owner, until],
            )?;
            Ok(())
        })
    }

    fn renew_lease(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<bool> {
        let until = later(ttl);
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE experiments SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2",
                params![id, owner, until],
            )?;
            Ok(changed == 1)
        })
    }

    fn release_lease(&self, id: &str, owner: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE experiments SET lease_owner = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_owner = ?2",
                params![id, owner],
            )?;
            Ok(())
        })
    }

    fn visit_successes(&self, id: &str, visit: &mut dyn FnMut(i64, i64)) -> Result<()> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT row_index, repetition FROM results WHERE experiment_id = ?1 AND status = 'ok'",
            )?;
            let mut rows = stmt.query(params![id])?;
            while let Some(row) = rows.next()? {
                visit(row.get(0)?, row.get(1)?);
            }
            Ok(())
        })
    }

    fn summary(&self, experiment: &Experiment) -> Result<Summary> {
        self.read(|conn| summary(conn, experiment))
    }

    fn tokens(&self, id: &str) -> Result<(i64, i64)> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) \
                 FROM results WHERE experiment_id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
    }

    fn visit_results(&self, id: &str, visit: &mut VisitResult<'_>) -> Result<()> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RESULT_COLUMNS} FROM results WHERE experiment_id = ?1 ORDER BY row_index, repetition"
            ))?;
            let mut scores = conn.prepare_cached(
                "SELECT evaluator, score, pass, reason, error FROM scores \
                 WHERE experiment_id = ?1 AND row_index = ?2 AND repetition = ?3 ORDER BY evaluator",
            )?;
            let mut rows = stmt.query(params![id])?;
            while let Some(row) = rows.next()? {
                let mut result = result_from_row(row)?;
                result.scores = scores
                    .query_map(params![id, result.row_index, result.repetition], |r| {
                        Ok(Score {
                            evaluator: r.get(0)?,
                            score: r.get(1)?,
                            pass: r.get(2)?,
                            reason: r.get(3)?,
                            error: r.get(4)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                visit(result)?;
            }
            Ok(())
        })
    }

    fn fingerprint(&self, id: &str) -> Result<Option<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT fingerprint FROM experiments WHERE id = ?1")?
                .query_row(params![id], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
    }

    fn restore_experiment(&self, e: &Experiment, fingerprint: Option<&str>) -> Result<()> {
        self.write(|tx| {
            let pid = require_prompt(tx, &e.prompt)?;
            let (lease_owner, lease_until) = match &e.lease {
                Some(lease) => (Some(lease.owner.as_str()), Some(lease.until.as_str())),
                None => (None, None),
            };
            tx.execute(
                "INSERT INTO experiments (id, name, prompt_id, version_id, tag, dataset_path, \
                 dataset_hash, dataset_rows, dataset_columns, model, base_url, evaluators, settings, \
                 planned, status, author, created_at, finished_at, wall_ms, fingerprint, \
                 lease_owner, lease_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
                 ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                params![
                    e.id,
                    e.name,
                    pid,
                    e.version_id,
                    e.tag,
                    e.dataset.path,
                    e.dataset.hash,
                    e.dataset.rows,
                    to_json(&e.dataset.columns)?,
                    e.model,
                    e.base_url,
                    to_json(&e.evaluators)?,
                    to_json(&e.settings)?,
                    e.planned,
                    e.status.as_str(),
                    e.author,
                    e.created_at,
                    e.finished_at,
                    e.wall_ms,
                    fingerprint,
                    lease_owner,
                    lease_until,
                ],
            )?;
            Ok(())
        })
    }

    fn visit_cache(
        &self,
        visit: &mut dyn FnMut(&str, CachedResponse, &str) -> Result<()>,
    ) -> Result<()> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, output, finish_reason, prompt_tokens, completion_tokens, http_status, \
                 latency_ms, created_at FROM response_cache ORDER BY key",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let key: String = r.get(0)?;
                let created_at: String = r.get(7)?;
                let response = CachedResponse {
                    output: r.get(1)?,
                    finish_reason: r.get(2)?,
                    prompt_tokens: r.get(3)?,
                    completion_tokens: r.get(4)?,
                    http_status: r.get(5)?,
                    latency_ms: r.get(6)?,
                    created_at: created_at.clone(),
                };
                visit(&key, response, &created_at)?;
            }
            Ok(())
        })
    }

    fn restore_cache(&self, entries: &[(String, CachedResponse, String)]) -> Result<()> {
        self.write(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO response_cache (key, output, finish_reason, prompt_tokens, \
                 completion_tokens, http_status, latency_ms, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (key, r, created_at) in entries {
                insert.execute(params![
                    key,
                    r.output,
                    r.finish_reason,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.http_status,
                    r.latency_ms,
                    created_at,
                ])?;
            }
            Ok(())
        })
    }
}

impl ResultSink for SqliteStore {
    fn write_results(&self, experiment_id: &str, batch: &[RunResult]) -> Result<()> {
        self.write(|tx| write_batch(tx, experiment_id, batch.iter()))
    }
}

/// Writes results, their scores and new cache entries inside the caller's transaction. An
/// errored result may be replaced by a later attempt; a successful one never is.
pub(super) fn write_batch<'a>(
    tx: &rusqlite::Transaction<'_>,
    experiment_id: &str,
    batch: impl Iterator<Item = &'a RunResult>,
) -> Result<()> {
    {
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO results (experiment_id, row_index, repetition, row_id, vars, expected, \
                 messages, output, finish_reason, status, error_kind, error_message, http_status, \
                 attempts, latency_ms, prompt_tokens, completion_tokens, cached, started_at, finished_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) \
                 ON CONFLICT (experiment_id, row_index, repetition) DO UPDATE SET \
                 row_id = excluded.row_id, vars = excluded.vars, expected = excluded.expected, \
                 messages = excluded.messages, output = excluded.output, \
                 finish_reason = excluded.finish_reason, status = excluded.status, \
                 error_kind = excluded.error_kind, error_message = excluded.error_message, \
                 http_status = excluded.http_status, attempts = excluded.attempts, \
                 latency_ms = excluded.latency_ms, prompt_tokens = excluded.prompt_tokens, \
                 completion_tokens = excluded.completion_tokens, cached = excluded.cached, \
                 started_at = excluded.started_at, finished_at = excluded.finished_at \
                 WHERE results.status <> 'ok'",
            )?;
            let mut score = tx.prepare_cached(
                "INSERT OR REPLACE INTO scores (experiment_id, row_index, repetition, evaluator, \
                 score, pass, error, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            // A key already present was too old for the run (or not read, with --fresh):
            // the new answer replaces it.
            let mut cache = tx.prepare_cached(
                "INSERT INTO response_cache (key, output, finish_reason, prompt_tokens, \
                 completion_tokens, http_status, latency_ms, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (key) DO UPDATE SET output = excluded.output, \
                 finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens, \
                 completion_tokens = excluded.completion_tokens, http_status = excluded.http_status, \
                 latency_ms = excluded.latency_ms, created_at = excluded.created_at",
            )?;
            let mut vars_text = String::new();
            for r in batch {
                vars_text.clear();
                vars_text.push_str(&to_json(&r.vars)?);
                let changed = insert.execute(params![
                    experiment_id,
                    r.row_index,
                    r.repetition,
                    r.row_id,
                    vars_text,
                    r.expected,
                    to_json(&r.messages)?,
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
                ])?;
                // Zero rows changed: a successful result was already there; keep its scores too.
                if changed == 0 {
                    continue;
                }
                for s in &r.scores {
                    score.execute(params![
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
                if let (Some(key), ResultStatus::Ok, Some(output)) =
                    (&r.cache_key, r.status, &r.output)
                {
                    cache.execute(params![
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
    }
}

impl ResponseCache for SqliteStore {
    fn cached_response(&self, key: &str) -> Result<Option<CachedResponse>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT output, finish_reason, prompt_tokens, completion_tokens, http_status, latency_ms, \
                     created_at FROM response_cache WHERE key = ?1",
                )?
                .query_row(params![key], |r| {
                    Ok(CachedResponse {
                        output: r.get(0)?,
                        finish_reason: r.get(1)?,
                        prompt_tokens: r.get(2)?,
                        completion_tokens: r.get(3)?,
                        http_status: r.get(4)?,
                        latency_ms: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                })
                .optional()?)
        })
    }
}

fn summary(conn: &rusqlite::Connection, experiment: &Experiment) -> Result<Summary> {
    let id = experiment.id.as_str();
    let (results, ok, cached, prompt_tokens, completion_tokens, max): (
        i64,
        i64,
        i64,
        i64,
        i64,
        Option<f64>,
    ) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(cached), 0), \
             COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), \
             MAX(CASE WHEN status = 'ok' THEN latency_ms END) \
             FROM results WHERE experiment_id = ?1",
        params![id],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )?;
    let percentile = |p: f64| -> Result<Option<f64>> {
        if ok == 0 {
            return Ok(None);
        }
        // Nearest-rank percentile over the successful calls, computed by the database so
        // no latency list is held in memory.
        let rank = crate::store::nearest_rank(ok, p);
        Ok(conn
            .prepare_cached(
                "SELECT latency_ms FROM results WHERE experiment_id = ?1 AND status = 'ok' \
                 ORDER BY latency_ms LIMIT 1 OFFSET ?2",
            )?
            .query_row(params![id, rank], |r| r.get(0))
            .optional()?)
    };
    let mut evaluators = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT evaluator, COALESCE(SUM(pass), 0), COUNT(*), COALESCE(AVG(score), 0), \
             COALESCE(SUM(error), 0), COALESCE(SUM(score * score), 0.0) FROM scores \
             WHERE experiment_id = ?1 GROUP BY evaluator",
        )?;
        let rows = stmt.query_map(params![id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, f64>(5)?,
            ))
        })?;
        let mut by_name = std::collections::HashMap::new();
        for row in rows {
            let (name, passed, total, mean, errors, sum_sq) = row?;
            by_name.insert(name, (passed, total, mean, errors, sum_sq));
        }
        // In the order the evaluators were given; each over every result.
        for name in &experiment.evaluators {
            let (passed, total, mean, errors, sum_sq) =
                by_name.get(name).copied().unwrap_or((0, 0, 0.0, 0, 0.0));
            // One answer a row: the rows are the results, and the aggregates above are the
            // per-row sums already; only repetitions need the grouped pass over the rows.
            let spread = if experiment.settings.repetitions <= 1 {
                crate::store::single_answer_spread(results, passed, mean * total as f64, sum_sq)
            } else {
                row_spread(conn, id, name)?
            };
            evaluators.push(EvaluatorSummary {
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
            });
        }
    }
    let mut error_kinds = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT COALESCE(error_kind, 'unknown'), COUNT(*) FROM results \
             WHERE experiment_id = ?1 AND status = 'error' GROUP BY 1 ORDER BY 2 DESC, 1",
        )?;
        for row in stmt.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))? {
            error_kinds.push(row?);
        }
    }
    Ok(Summary {
        results,
        ok,
        errored: results - ok,
        cached,
        missing: (experiment.planned - results).max(0),
        error_rate: ratio(results - ok, results),
        evaluators,
        latency_p50_ms: percentile(0.50)?,
        latency_p95_ms: percentile(0.95)?,
        latency_max_ms: max,
        prompt_tokens,
        completion_tokens,
        error_kinds,
    })
}

/// One evaluator's results folded per row (repetitions to their mean; an errored call, which
/// has no score, counts as a fail scoring 0), summed over rows by the database: the store never
/// holds a row in memory.
fn row_spread(
    conn: &rusqlite::Connection,
    id: &str,
    evaluator: &str,
) -> Result<crate::model::RowSpread> {
    use crate::model::{RowSpread, SpreadSums};
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(k), 0), \
             COALESCE(SUM(pm), 0.0), COALESCE(SUM(pm * pm), 0.0), COALESCE(SUM(pv), 0.0), \
             COALESCE(SUM(sm), 0.0), COALESCE(SUM(sm * sm), 0.0), COALESCE(SUM(sv), 0.0) \
             FROM (SELECT COUNT(*) AS k, AVG(p) AS pm, AVG(s) AS sm, \
               CASE WHEN COUNT(*) > 1 THEN (SUM(p * p) - SUM(p) * SUM(p) / COUNT(*)) / (COUNT(*) - 1) \
                 ELSE 0.0 END AS pv, \
               CASE WHEN COUNT(*) > 1 THEN (SUM(s * s) - SUM(s) * SUM(s) / COUNT(*)) / (COUNT(*) - 1) \
                 ELSE 0.0 END AS sv \
               FROM (SELECT r.row_index, COALESCE(sc.pass, 0) * 1.0 AS p, COALESCE(sc.score, 0.0) AS s \
                 FROM results r LEFT JOIN scores sc ON sc.experiment_id = r.experiment_id \
                 AND sc.row_index = r.row_index AND sc.repetition = r.repetition AND sc.evaluator = ?2 \
                 WHERE r.experiment_id = ?1) \
               GROUP BY row_index)",
        )?
        .query_row(params![id, evaluator], |r| {
            Ok(RowSpread {
                rows: r.get(0)?,
                answers: r.get(1)?,
                pass: SpreadSums {
                    sum: r.get(2)?,
                    sum_sq: r.get(3)?,
                    within: r.get(4)?,
                },
                score: SpreadSums {
                    sum: r.get(5)?,
                    sum_sq: r.get(6)?,
                    within: r.get(7)?,
                },
            })
        })?)
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
