//! Experiments, results, aggregates, leases and the response cache, once for both backends. It
//! names no driver and holds no SQL that only one dialect understands, and it must not judge
//! results: their statuses and scores arrive decided by the engine.
//!
//! Aggregates are computed by the database (counts, sums, nearest-rank percentiles), so no
//! result list is held in memory; comparisons stream outcomes in row-id order. Bulk result
//! writes are the one place each backend keeps its own form (`sql::Db::write_results`).

use super::Backend;
use super::prompts::require_prompt;
use crate::model::{
    CachedResponse, DatasetRef, EvaluatorSummary, Experiment, ExperimentStatus, JsonObject, Lease,
    Message, NewExperiment, ResultStatus, RowOutcome, RowSpread, RowText, RunResult, RunSettings,
    Score, SpreadSums, Summary, cluster_key, input_summary, now,
};
use crate::store::sql::{Db, Row, all, args, corrupt, first, json, one, to_json};
use crate::store::{
    ExperimentStore, MATCHING, ROW_TEXT_CHARS, ResponseCache, Result, ResultSink, StoreError,
    VisitResult, in_row_id_order, nearest_rank, single_answer_spread,
};

const EXPERIMENT_COLUMNS: &str = "e.id, e.name, p.name, e.version_id, v.seq, e.tag, \
     e.dataset_path, e.dataset_hash, e.dataset_rows, e.dataset_columns, e.model, e.base_url, \
     e.evaluators, e.settings, e.planned, e.status, e.author, e.created_at, e.finished_at, \
     e.wall_ms, e.lease_owner, e.lease_until, \
     (SELECT COUNT(*) FROM results er WHERE er.experiment_id = e.id AND er.status = 'error')";

/// Left joins: an experiment of your own code may name no prompt version.
const EXPERIMENT_JOINS: &str = "FROM experiments e LEFT JOIN prompts p ON p.id = e.prompt_id \
     LEFT JOIN prompt_versions v ON v.id = e.version_id";

const RESULT_COLUMNS: &str = "r.row_index, r.row_id, r.repetition, r.vars, r.expected, \
     r.messages, r.output, r.finish_reason, r.status, r.error_kind, r.error_message, \
     r.http_status, r.attempts, r.latency_ms, r.prompt_tokens, r.completion_tokens, r.cached, \
     r.started_at, r.finished_at, r.extra";

/// The statements both backends' bulk result writes share: an errored result may be
/// replaced by a later attempt, a successful one never is; a score or cache entry is replaced
/// (a cache key already present was too old for the run, or not read with --fresh).
pub(crate) const RESULTS_INSERT: &str = "INSERT INTO results (experiment_id, row_index, repetition, row_id, vars, \
     expected, messages, output, finish_reason, status, error_kind, error_message, http_status, \
     attempts, latency_ms, prompt_tokens, completion_tokens, cached, started_at, finished_at, \
     extra)";
pub(crate) const RESULTS_UPSERT: &str = "ON CONFLICT (experiment_id, row_index, repetition) DO UPDATE SET \
     row_id = excluded.row_id, vars = excluded.vars, expected = excluded.expected, \
     messages = excluded.messages, output = excluded.output, \
     finish_reason = excluded.finish_reason, status = excluded.status, \
     error_kind = excluded.error_kind, error_message = excluded.error_message, \
     http_status = excluded.http_status, attempts = excluded.attempts, \
     latency_ms = excluded.latency_ms, prompt_tokens = excluded.prompt_tokens, \
     completion_tokens = excluded.completion_tokens, cached = excluded.cached, \
     started_at = excluded.started_at, finished_at = excluded.finished_at, \
     extra = excluded.extra WHERE results.status <> 'ok'";
pub(crate) const SCORES_UPSERT: &str = "ON CONFLICT (experiment_id, row_index, repetition, evaluator) DO UPDATE SET \
     score = excluded.score, pass = excluded.pass, error = excluded.error, \
     reason = excluded.reason";
pub(crate) const CACHE_INSERT: &str = "INSERT INTO response_cache (key, output, finish_reason, prompt_tokens, \
     completion_tokens, http_status, latency_ms, created_at)";
pub(crate) const CACHE_UPSERT: &str = "ON CONFLICT (key) DO UPDATE SET output = excluded.output, \
     finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens, \
     completion_tokens = excluded.completion_tokens, http_status = excluded.http_status, \
     latency_ms = excluded.latency_ms, created_at = excluded.created_at";

/// A short id that is easy to type and, at 10 characters of base 36, practically unique;
/// the primary key still guards against the improbable clash.
pub(crate) fn experiment_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let suffix: String = (0..10)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    format!("exp_{suffix}")
}

/// Writes a new experiment's record (running), with its planning key when workers run it.
pub(crate) fn insert_experiment(
    db: &dyn Db,
    id: &str,
    new: &NewExperiment,
    detach_key: Option<&str>,
) -> Result<()> {
    let pid = new
        .prompt
        .as_deref()
        .map(|name| require_prompt(db, name))
        .transpose()?;
    db.exec(
        "INSERT INTO experiments (id, name, prompt_id, version_id, tag, dataset_path, \
         dataset_hash, dataset_rows, dataset_columns, model, base_url, evaluators, settings, \
         planned, status, author, created_at, fingerprint, detach_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'running', $15, \
         $16, $17, $18)",
        args![
            id,
            &new.name,
            pid,
            &new.version_id,
            &new.tag,
            &new.dataset.path,
            &new.dataset.hash,
            new.dataset.rows,
            &to_json(&new.dataset.columns)?,
            &new.model,
            &new.base_url,
            &to_json(&new.evaluators)?,
            &to_json(&new.settings)?,
            new.planned,
            &new.author,
            now().as_str(),
            &new.fingerprint,
            detach_key,
        ],
    )?;
    Ok(())
}

impl<B: Backend> ExperimentStore for B {
    fn create_experiment(&self, new: &NewExperiment) -> Result<Experiment> {
        let id = experiment_id();
        self.write(|db| insert_experiment(db, &id, new, None))?;
        self.experiment(&id)
    }

    fn experiment(&self, id: &str) -> Result<Experiment> {
        // An exact id, then an exact name (experiments from the Phoenix client are named),
        // then the start of an id; a name or a start that several share is ambiguous.
        let pattern = format!(
            "{}%",
            id.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let found = self.read(|db| {
            let exact = first(
                db,
                &format!("SELECT {EXPERIMENT_COLUMNS} {EXPERIMENT_JOINS} WHERE e.id = $1"),
                args![id],
                experiment_from_row,
            )?;
            if let Some(exact) = exact {
                return Ok(vec![exact]);
            }
            let named = all(
                db,
                &format!(
                    "SELECT {EXPERIMENT_COLUMNS} {EXPERIMENT_JOINS} WHERE e.name = $1 \
                     ORDER BY e.created_at DESC LIMIT 2"
                ),
                args![id],
                experiment_from_row,
            )?;
            if !named.is_empty() {
                return Ok(named);
            }
            all(
                db,
                &format!(
                    "SELECT {EXPERIMENT_COLUMNS} {EXPERIMENT_JOINS} \
                     WHERE e.id LIKE $1 ESCAPE '\\' LIMIT 2"
                ),
                args![pattern.as_str()],
                experiment_from_row,
            )
        })?;
        match found.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(StoreError::UnknownExperiment { id: id.into() }),
            _ => Err(StoreError::AmbiguousExperiment { id: id.into() }),
        }
    }

    fn experiments(&self, prompt: Option<&str>) -> Result<Vec<Experiment>> {
        self.read(|db| {
            let pid = prompt.map(|name| require_prompt(db, name)).transpose()?;
            let order = db.dialect().insert_order();
            all(
                db,
                &format!(
                    "SELECT {EXPERIMENT_COLUMNS} {EXPERIMENT_JOINS} \
                     WHERE (CAST($1 AS BIGINT) IS NULL OR e.prompt_id = CAST($1 AS BIGINT)) \
                     ORDER BY e.created_at DESC, e.{order} DESC"
                ),
                args![pid],
                experiment_from_row,
            )
        })
    }

    fn matching(&self, fingerprint: &str) -> Result<Vec<(Experiment, i64)>> {
        self.read(|db| {
            let order = db.dialect().insert_order();
            all(
                db,
                &format!(
                    "SELECT {EXPERIMENT_COLUMNS}, \
                     (SELECT COUNT(*) FROM results r WHERE r.experiment_id = e.id) \
                     {EXPERIMENT_JOINS} WHERE e.fingerprint = $1 \
                     ORDER BY e.created_at DESC, e.{order} DESC LIMIT $2"
                ),
                args![fingerprint, MATCHING],
                |row| Ok((experiment_from_row(row)?, row.int(23)?)),
            )
        })
    }

    fn visit_outcomes(
        &self,
        experiment: &Experiment,
        cluster_column: Option<&str>,
        visit: &mut dyn FnMut(RowOutcome) -> Result<()>,
    ) -> Result<()> {
        let expected = experiment.settings.expected_column.as_deref();
        self.read(|db| {
            let mut pending: Option<RowOutcome> = None;
            let mut current: Option<(i64, i64)> = None;
            // Ordered by row id through its index (byte order on both backends), so two
            // experiments can be merged row by row without holding either in memory; the
            // index is partial on PostgreSQL (see migration 0009), so the query names its
            // predicate.
            db.each(
                "SELECT r.row_index, r.repetition, r.row_id, r.status, r.latency_ms, \
                 COALESCE(r.prompt_tokens, 0), COALESCE(r.completion_tokens, 0), \
                 substr(COALESCE(r.output, r.error_message, ''), 1, 200), r.vars, \
                 s.evaluator, s.pass, s.score, r.extra \
                 FROM results r LEFT JOIN scores s ON s.experiment_id = r.experiment_id \
                 AND s.row_index = r.row_index AND s.repetition = r.repetition \
                 WHERE r.experiment_id = $1 AND r.row_id IS NOT NULL \
                 ORDER BY r.row_id, r.repetition, r.row_index, s.evaluator",
                args![&experiment.id],
                &mut |row| {
                    let key = (row.int(0)?, row.int(1)?);
                    if current != Some(key) {
                        current = Some(key);
                        if let Some(done) = pending.take() {
                            visit(done)?;
                        }
                        let vars: JsonObject = json(&row.text(8)?, "vars")?;
                        let extra: Option<JsonObject> = row
                            .opt_text(12)?
                            .map(|text| json(&text, "results.extra"))
                            .transpose()?;
                        pending = Some(RowOutcome {
                            row_id: row.text(2)?,
                            repetition: key.1,
                            ok: row.text(3)? == "ok",
                            latency_ms: row.real(4)?,
                            prompt_tokens: row.int(5)?,
                            completion_tokens: row.int(6)?,
                            // A tool call is part of what the row answered.
                            output: crate::tool_calls::with_answer(&row.text(7)?, extra.as_ref()),
                            input: input_summary(&vars, expected),
                            scores: Vec::new(),
                            cluster: cluster_key(&vars, cluster_column),
                        });
                    }
                    if let (Some(evaluator), Some(last)) = (row.opt_text(9)?, pending.as_mut()) {
                        last.scores.push((evaluator, row.flag(10)?, row.real(11)?));
                    }
                    Ok(())
                },
            )?;
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
        self.read(|db| {
            // Two scans in primary-key order, merged: no per-row lookup, no sort by the
            // database. The variables (for the cluster key) are read only when clusters are
            // asked for.
            let mut keyed = Vec::with_capacity(experiment.planned.clamp(0, 1 << 20) as usize);
            db.each(
                "SELECT row_index, repetition, row_id, status = 'ok', latency_ms, \
                 COALESCE(prompt_tokens, 0), COALESCE(completion_tokens, 0), \
                 CASE WHEN CAST($2 AS BOOLEAN) THEN vars END \
                 FROM results WHERE experiment_id = $1 ORDER BY row_index, repetition",
                args![&experiment.id, cluster_column.is_some()],
                &mut |row| {
                    let cluster = match row.opt_text(7)? {
                        Some(text) => cluster_key(&json(&text, "vars")?, cluster_column),
                        None => None,
                    };
                    keyed.push((
                        (row.int(0)?, row.int(1)?),
                        RowOutcome {
                            row_id: row.text(2)?,
                            repetition: row.int(1)?,
                            ok: row.flag(3)?,
                            latency_ms: row.real(4)?,
                            prompt_tokens: row.int(5)?,
                            completion_tokens: row.int(6)?,
                            output: String::new(),
                            input: String::new(),
                            scores: Vec::new(),
                            cluster,
                        },
                    ));
                    Ok(())
                },
            )?;
            let scores = all(
                db,
                "SELECT row_index, repetition, evaluator, pass, score FROM scores \
                 WHERE experiment_id = $1 ORDER BY row_index, repetition, evaluator",
                args![&experiment.id],
                |r| Ok(((r.int(0)?, r.int(1)?), (r.text(2)?, r.flag(3)?, r.real(4)?))),
            )?;
            Ok(in_row_id_order(keyed, scores))
        })
    }

    fn row_texts(&self, experiment: &Experiment, row_ids: &[String]) -> Result<Vec<RowText>> {
        let expected = experiment.settings.expected_column.as_deref();
        self.read(|db| {
            let mut texts = Vec::new();
            for id in row_ids {
                // The first repetition of the row.
                let found = first(
                    db,
                    "SELECT vars, expected, substr(COALESCE(output, error_message, ''), 1, $3), \
                     status <> 'ok', extra FROM results \
                     WHERE experiment_id = $1 AND row_id = $2 AND row_id IS NOT NULL \
                     ORDER BY repetition, row_index LIMIT 1",
                    args![&experiment.id, id, ROW_TEXT_CHARS],
                    |r| {
                        let vars: JsonObject = json(&r.text(0)?, "vars")?;
                        let extra: Option<JsonObject> = r
                            .opt_text(4)?
                            .map(|text| json(&text, "results.extra"))
                            .transpose()?;
                        Ok(RowText {
                            row_id: id.clone(),
                            input: input_summary(&vars, expected),
                            expected: r.opt_text(1)?,
                            // A tool call is part of what the row answered.
                            output: crate::tool_calls::with_answer(&r.text(2)?, extra.as_ref()),
                            error: r.flag(3)?,
                        })
                    },
                )?;
                texts.extend(found);
            }
            Ok(texts)
        })
    }

    fn finish_experiment(&self, id: &str, status: ExperimentStatus, wall_ms: i64) -> Result<()> {
        self.write(|db| {
            db.exec(
                "UPDATE experiments SET status = $2, finished_at = $3, wall_ms = wall_ms + $4 \
                 WHERE id = $1",
                args![id, status.as_str(), now().as_str(), wall_ms],
            )?;
            Ok(())
        })
    }

    fn mark_mock(&self, id: &str) -> Result<()> {
        self.write(|db| {
            let lock = db.dialect().for_update();
            let stored = first(
                db,
                &format!("SELECT settings FROM experiments WHERE id = $1{lock}"),
                args![id],
                |r| r.text(0),
            )?;
            let Some(stored) = stored else {
                return Err(StoreError::UnknownExperiment { id: id.into() });
            };
            let mut settings: RunSettings = json(&stored, "settings")?;
            if !settings.mock {
                settings.mock = true;
                db.exec(
                    "UPDATE experiments SET settings = $2 WHERE id = $1",
                    args![id, &to_json(&settings)?],
                )?;
            }
            Ok(())
        })
    }

    fn discard_experiment(&self, id: &str) -> Result<()> {
        self.write(|db| {
            db.exec("DELETE FROM work_items WHERE experiment_id = $1", args![id])?;
            db.exec("DELETE FROM scores WHERE experiment_id = $1", args![id])?;
            db.exec("DELETE FROM results WHERE experiment_id = $1", args![id])?;
            db.exec("DELETE FROM experiments WHERE id = $1", args![id])?;
            Ok(())
        })
    }

    fn reopen_experiment(&self, id: &str) -> Result<()> {
        self.write(|db| {
            db.exec(
                "UPDATE experiments SET status = 'running', finished_at = NULL WHERE id = $1",
                args![id],
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
        self.write(|db| {
            let lock = db.dialect().for_update();
            let held = first(
                db,
                &format!("SELECT lease_owner, lease_until FROM experiments WHERE id = $1{lock}"),
                args![id],
                |r| Ok((r.opt_text(0)?, r.opt_text(1)?)),
            )?;
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
            db.exec(
                "UPDATE experiments SET lease_owner = $2, lease_until = $3 WHERE id = $1",
                args![id, owner, until.as_str()],
            )?;
            Ok(())
        })
    }

    fn renew_lease(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<bool> {
        let until = later(ttl);
        self.write(|db| {
            let changed = db.exec(
                "UPDATE experiments SET lease_until = $3 WHERE id = $1 AND lease_owner = $2",
                args![id, owner, until.as_str()],
            )?;
            Ok(changed == 1)
        })
    }

    fn release_lease(&self, id: &str, owner: &str) -> Result<()> {
        self.write(|db| {
            db.exec(
                "UPDATE experiments SET lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2",
                args![id, owner],
            )?;
            Ok(())
        })
    }

    fn visit_successes(&self, id: &str, visit: &mut dyn FnMut(i64, i64)) -> Result<()> {
        self.read(|db| {
            db.each(
                "SELECT row_index, repetition FROM results \
                 WHERE experiment_id = $1 AND status = 'ok'",
                args![id],
                &mut |row| {
                    visit(row.int(0)?, row.int(1)?);
                    Ok(())
                },
            )
        })
    }

    fn summary(&self, experiment: &Experiment) -> Result<Summary> {
        self.read(|db| summary(db, experiment))
    }

    fn tokens(&self, id: &str) -> Result<(i64, i64)> {
        self.read(|db| {
            one(
                db,
                "SELECT CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) \
                 FROM results WHERE experiment_id = $1",
                args![id],
                |r| Ok((r.int(0)?, r.int(1)?)),
            )
        })
    }

    fn visit_results(&self, id: &str, visit: &mut VisitResult<'_>) -> Result<()> {
        self.read(|db| {
            let scores = db.dialect().scores_of_result();
            db.each(
                &format!(
                    "SELECT {RESULT_COLUMNS}, {scores} FROM results r WHERE r.experiment_id = $1 \
                     ORDER BY r.row_index, r.repetition"
                ),
                args![id],
                &mut |row| {
                    let mut result = result_from_row(row)?;
                    if let Some(scores) = row.opt_text(20)? {
                        let scores: Vec<(String, f64, bool, String, bool)> =
                            json(&scores, "scores")?;
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
        })
    }

    fn fingerprint(&self, id: &str) -> Result<Option<String>> {
        self.read(|db| {
            Ok(first(
                db,
                "SELECT fingerprint FROM experiments WHERE id = $1",
                args![id],
                |r| r.opt_text(0),
            )?
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
        self.write(|db| {
            let pid = e
                .prompt
                .as_deref()
                .map(|name| require_prompt(db, name))
                .transpose()?;
            db.exec(
                "INSERT INTO experiments (id, name, prompt_id, version_id, tag, dataset_path, \
                 dataset_hash, dataset_rows, dataset_columns, model, base_url, evaluators, \
                 settings, planned, status, author, created_at, finished_at, wall_ms, \
                 fingerprint, lease_owner, lease_until) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
                args![
                    &e.id,
                    &e.name,
                    pid,
                    &e.version_id,
                    &e.tag,
                    &e.dataset.path,
                    &e.dataset.hash,
                    e.dataset.rows,
                    &columns,
                    &e.model,
                    &e.base_url,
                    &evaluators,
                    &settings,
                    e.planned,
                    e.status.as_str(),
                    &e.author,
                    &e.created_at,
                    &e.finished_at,
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
        self.read(|db| {
            db.each(
                "SELECT key, output, finish_reason, prompt_tokens, completion_tokens, \
                 http_status, latency_ms, created_at FROM response_cache ORDER BY key",
                &[],
                &mut |r| {
                    let response = cached_from_row(r, 1)?;
                    let created_at = response.created_at.clone();
                    visit(&r.text(0)?, response, &created_at)
                },
            )
        })
    }

    fn restore_cache(&self, entries: &[(String, CachedResponse, String)]) -> Result<()> {
        self.write(|db| {
            for (key, r, created_at) in entries {
                db.exec(
                    &format!("{CACHE_INSERT} VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING"),
                    args![
                        key,
                        &r.output,
                        &r.finish_reason,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.http_status,
                        r.latency_ms,
                        created_at,
                    ],
                )?;
            }
            Ok(())
        })
    }
}

impl<B: Backend> ResultSink for B {
    fn write_results(&self, experiment_id: &str, batch: &[RunResult]) -> Result<()> {
        let batch: Vec<&RunResult> = batch.iter().collect();
        self.write(|db| db.write_results(experiment_id, &batch))
    }
}

impl<B: Backend> ResponseCache for B {
    fn quick_lookups(&self) -> bool {
        self.reads_locally()
    }

    fn cached_response(&self, key: &str) -> Result<Option<CachedResponse>> {
        self.read(|db| {
            first(
                db,
                "SELECT output, finish_reason, prompt_tokens, completion_tokens, http_status, \
                 latency_ms, created_at FROM response_cache WHERE key = $1",
                args![key],
                |r| cached_from_row(r, 0),
            )
        })
    }
}

/// A cache entry whose columns start at `at`.
fn cached_from_row(r: &dyn Row, at: usize) -> Result<CachedResponse> {
    Ok(CachedResponse {
        output: r.text(at)?,
        finish_reason: r.opt_text(at + 1)?,
        prompt_tokens: r.opt_int(at + 2)?,
        completion_tokens: r.opt_int(at + 3)?,
        http_status: http_status(r.opt_int(at + 4)?)?,
        latency_ms: r.real(at + 5)?,
        created_at: r.text(at + 6)?,
    })
}

fn http_status(stored: Option<i64>) -> Result<Option<u16>> {
    stored
        .map(|s| u16::try_from(s).map_err(|e| corrupt("http_status", e)))
        .transpose()
}

fn experiment_from_row(row: &dyn Row) -> Result<Experiment> {
    Ok(Experiment {
        id: row.text(0)?,
        name: row.opt_text(1)?,
        prompt: row.opt_text(2)?,
        version_id: row.opt_text(3)?,
        version_seq: row.opt_int(4)?,
        tag: row.opt_text(5)?,
        dataset: DatasetRef {
            path: row.text(6)?,
            hash: row.text(7)?,
            rows: row.int(8)?,
            columns: json(&row.text(9)?, "dataset_columns")?,
        },
        model: row.text(10)?,
        base_url: row.text(11)?,
        evaluators: json(&row.text(12)?, "evaluators")?,
        settings: json(&row.text(13)?, "settings")?,
        planned: row.int(14)?,
        status: row.text(15)?.parse().map_err(StoreError::Corrupt)?,
        author: row.text(16)?,
        created_at: row.text(17)?,
        finished_at: row.opt_text(18)?,
        wall_ms: row.int(19)?,
        lease: match (row.opt_text(20)?, row.opt_text(21)?) {
            (Some(owner), Some(until)) => Some(Lease { owner, until }),
            _ => None,
        },
        error_count: 0,
        error_rate: 0.0,
    }
    .with_errors(row.int(22)?))
}

fn result_from_row(row: &dyn Row) -> Result<RunResult> {
    Ok(RunResult {
        row_index: row.int(0)?,
        row_id: row.text(1)?,
        repetition: row.int(2)?,
        vars: json(&row.text(3)?, "vars")?,
        expected: row.opt_text(4)?,
        messages: json::<Vec<Message>>(&row.text(5)?, "messages")?,
        output: row.opt_text(6)?,
        finish_reason: row.opt_text(7)?,
        status: if row.text(8)? == "ok" {
            ResultStatus::Ok
        } else {
            ResultStatus::Error
        },
        error_kind: row.opt_text(9)?,
        error_message: row.opt_text(10)?,
        http_status: http_status(row.opt_int(11)?)?,
        attempts: u32::try_from(row.int(12)?).map_err(|e| corrupt("attempts", e))?,
        latency_ms: row.real(13)?,
        prompt_tokens: row.opt_int(14)?,
        completion_tokens: row.opt_int(15)?,
        cached: row.flag(16)?,
        started_at: row.text(17)?,
        finished_at: row.text(18)?,
        scores: Vec::new(),
        cache_key: None,
        extra: row
            .opt_text(19)?
            .map(|text| json(&text, "results.extra"))
            .transpose()?,
    })
}

fn summary(db: &dyn Db, experiment: &Experiment) -> Result<Summary> {
    let id = experiment.id.as_str();
    let (results, ok, cached, prompt_tokens, completion_tokens, max, cached_tokens) = one(
        db,
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'ok'), \
         COUNT(*) FILTER (WHERE cached), CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), \
         CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT), \
         MAX(CASE WHEN status = 'ok' THEN latency_ms END), \
         CAST(COALESCE(SUM(CASE WHEN cached THEN prompt_tokens END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN cached THEN completion_tokens END), 0) AS BIGINT) \
         FROM results WHERE experiment_id = $1",
        args![id],
        |r| {
            Ok((
                r.int(0)?,
                r.int(1)?,
                r.int(2)?,
                r.int(3)?,
                r.int(4)?,
                r.opt_real(5)?,
                (r.int(6)?, r.int(7)?),
            ))
        },
    )?;
    // Nearest-rank percentile over the successful calls, computed by the database so no
    // latency list is held in memory.
    let percentile = |p: f64| -> Result<Option<f64>> {
        if ok == 0 {
            return Ok(None);
        }
        first(
            db,
            "SELECT latency_ms FROM results WHERE experiment_id = $1 AND status = 'ok' \
             ORDER BY latency_ms LIMIT 1 OFFSET $2",
            args![id, nearest_rank(ok, p)],
            |r| r.real(0),
        )
    };
    let mut by_name = std::collections::HashMap::new();
    db.each(
        "SELECT evaluator, COUNT(*) FILTER (WHERE pass), COUNT(*), \
         CAST(COALESCE(AVG(score), 0) AS DOUBLE PRECISION), COUNT(*) FILTER (WHERE error), \
         CAST(COALESCE(SUM(score * score), 0.0) AS DOUBLE PRECISION) \
         FROM scores WHERE experiment_id = $1 GROUP BY evaluator",
        args![id],
        &mut |r| {
            let values = (r.int(1)?, r.int(2)?, r.real(3)?, r.int(4)?, r.real(5)?);
            by_name.insert(r.text(0)?, values);
            Ok(())
        },
    )?;
    // In the order the evaluators were given; each over every result.
    let mut evaluators = Vec::new();
    for name in &experiment.evaluators {
        let (passed, total, mean, errors, sum_sq) =
            by_name.get(name).copied().unwrap_or((0, 0, 0.0, 0, 0.0));
        // One answer a row: the rows are the results, and the aggregates above are the
        // per-row sums already; only repetitions need the grouped pass over the rows.
        let spread = if experiment.settings.repetitions <= 1 {
            single_answer_spread(results, passed, mean * total as f64, sum_sq)
        } else {
            row_spread(db, id, name)?
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
            judged: total,
            spread,
        });
    }
    let error_kinds = all(
        db,
        "SELECT COALESCE(error_kind, 'unknown'), COUNT(*) FROM results \
         WHERE experiment_id = $1 AND status = 'error' GROUP BY 1 ORDER BY 2 DESC, 1",
        args![id],
        |r| Ok((r.text(0)?, r.int(1)?)),
    )?;
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
        cached_prompt_tokens: cached_tokens.0,
        cached_completion_tokens: cached_tokens.1,
        error_kinds,
    })
}

/// One evaluator's results folded per row (repetitions to their mean; an errored call, which
/// has no score, counts as a fail scoring 0), summed over rows by the database: the store never
/// holds a row in memory.
fn row_spread(db: &dyn Db, id: &str, evaluator: &str) -> Result<RowSpread> {
    one(
        db,
        "SELECT COUNT(*), CAST(COALESCE(SUM(k), 0) AS BIGINT), \
         CAST(COALESCE(SUM(pm), 0.0) AS DOUBLE PRECISION), \
         CAST(COALESCE(SUM(pm * pm), 0.0) AS DOUBLE PRECISION), \
         CAST(COALESCE(SUM(pv), 0.0) AS DOUBLE PRECISION), \
         CAST(COALESCE(SUM(sm), 0.0) AS DOUBLE PRECISION), \
         CAST(COALESCE(SUM(sm * sm), 0.0) AS DOUBLE PRECISION), \
         CAST(COALESCE(SUM(sv), 0.0) AS DOUBLE PRECISION) \
         FROM (SELECT COUNT(*) AS k, AVG(p) AS pm, AVG(s) AS sm, \
           CASE WHEN COUNT(*) > 1 THEN (SUM(p * p) - SUM(p) * SUM(p) / COUNT(*)) / (COUNT(*) - 1) \
             ELSE 0.0 END AS pv, \
           CASE WHEN COUNT(*) > 1 THEN (SUM(s * s) - SUM(s) * SUM(s) / COUNT(*)) / (COUNT(*) - 1) \
             ELSE 0.0 END AS sv \
           FROM (SELECT r.row_index, \
             CAST(CASE WHEN sc.pass THEN 1.0 ELSE 0.0 END AS DOUBLE PRECISION) AS p, \
             CAST(COALESCE(sc.score, 0.0) AS DOUBLE PRECISION) AS s \
             FROM results r LEFT JOIN scores sc ON sc.experiment_id = r.experiment_id \
             AND sc.row_index = r.row_index AND sc.repetition = r.repetition \
             AND sc.evaluator = $2 \
             WHERE r.experiment_id = $1) per_answer \
           GROUP BY row_index) per_row",
        args![id, evaluator],
        |r| {
            Ok(RowSpread {
                rows: r.int(0)?,
                answers: r.int(1)?,
                pass: SpreadSums {
                    sum: r.real(2)?,
                    sum_sq: r.real(3)?,
                    within: r.real(4)?,
                },
                score: SpreadSums {
                    sum: r.real(5)?,
                    sum_sq: r.real(6)?,
                    within: r.real(7)?,
                },
            })
        },
    )
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
