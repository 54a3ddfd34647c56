//! Experiments run by your own code through the Phoenix client, once for both backends: the
//! experiment on a dataset version, its runs and their evaluations. Each experiment is
//! runner's own experiment of the same id too (of a prompt version or of none), written in the
//! same transaction: each run its result, each evaluation its score, an errored run a failing
//! score for every evaluator, so the summaries, compare and (for one of a version) the gate
//! read it as any experiment. Those made before schema 17 that named no version are only
//! Phoenix's. It names no driver.

use super::Backend;
use super::experiments::{SCORES_UPSERT, insert_experiment};
use crate::model::{NewExperiment, RunResult, Score, TaskEvaluation, TaskExperiment, TaskRun};
use crate::store::sql::{Db, Row, all, args, first, json, one, to_json};
use crate::store::{NewTaskExperiment, Result, StoreError, TaskStore};

/// An experiment with its example count and run counts; `WHERE` follows.
const TASK_EXPERIMENT_SELECT: &str = "SELECT e.id, e.dataset_id, e.dataset_version_id, e.name, \
     e.description, e.metadata, e.repetitions, e.linked, e.created_at, \
     COALESCE((SELECT MAX(end_time) FROM task_runs WHERE experiment_id = e.id), e.created_at), \
     v.rows, \
     (SELECT COUNT(*) FROM task_runs WHERE experiment_id = e.id AND error IS NULL), \
     (SELECT COUNT(*) FROM task_runs WHERE experiment_id = e.id AND error IS NOT NULL), \
     e.created_by \
     FROM task_experiments e JOIN dataset_versions v ON v.id = e.dataset_version_id";

const TASK_RUN_COLUMNS: &str =
    "id, experiment_id, example_key, repetition, output, error, start_time, end_time, trace_id";

const TASK_EVALUATION_COLUMNS: &str = "a.id, a.run_id, a.name, a.annotator_kind, a.label, \
     a.score, a.explanation, a.error, a.metadata, a.start_time, a.end_time, a.trace_id";

fn experiment_of(row: &dyn Row) -> Result<TaskExperiment> {
    Ok(TaskExperiment {
        id: row.text(0)?,
        dataset_id: row.text(1)?,
        dataset_version_id: row.text(2)?,
        name: row.text(3)?,
        description: row.opt_text(4)?,
        metadata: row.text(5)?,
        repetitions: row.int(6)?,
        mirrored: row.int(7)? != 0,
        created_at: row.text(8)?,
        updated_at: row.text(9)?,
        example_count: row.int(10)?,
        successful_runs: row.int(11)?,
        failed_runs: row.int(12)?,
        created_by: row.text(13)?,
    })
}

fn run_of(row: &dyn Row) -> Result<TaskRun> {
    Ok(TaskRun {
        id: row.text(0)?,
        experiment_id: row.text(1)?,
        example_key: row.text(2)?,
        repetition: row.int(3)?,
        output: row.text(4)?,
        error: row.opt_text(5)?,
        start_time: row.text(6)?,
        end_time: row.text(7)?,
        trace_id: row.opt_text(8)?,
    })
}

fn evaluation_of(row: &dyn Row) -> Result<TaskEvaluation> {
    Ok(TaskEvaluation {
        id: row.text(0)?,
        run_id: row.text(1)?,
        name: row.text(2)?,
        annotator_kind: row.text(3)?,
        label: row.opt_text(4)?,
        score: row.opt_real(5)?,
        explanation: row.opt_text(6)?,
        error: row.opt_text(7)?,
        metadata: row.text(8)?,
        start_time: row.text(9)?,
        end_time: row.text(10)?,
        trace_id: row.opt_text(11)?,
    })
}

fn experiment_by_id(db: &dyn Db, id: &str) -> Result<Option<TaskExperiment>> {
    first(
        db,
        &format!("{TASK_EXPERIMENT_SELECT} WHERE e.id = $1"),
        args![id],
        experiment_of,
    )
}

/// Locks runner's experiment record (PostgreSQL; SQLite's writers are serial already), so
/// two writers of its evaluators or of a row's scores never interleave.
fn lock_experiment(db: &dyn Db, experiment_id: &str) -> Result<()> {
    let lock = db.dialect().for_update();
    first(
        db,
        &format!("SELECT id FROM experiments WHERE id = $1{lock}"),
        args![experiment_id],
        |r| r.text(0),
    )?;
    Ok(())
}

/// Writes the scores a result's kept evaluations give (a person's judgement survives a run's
/// replacement); an errored result fails each of them instead.
fn rescore(
    db: &dyn Db,
    experiment_id: &str,
    run_id: &str,
    at: (i64, i64),
    errored: bool,
) -> Result<()> {
    let kept = all(
        db,
        &format!("SELECT {TASK_EVALUATION_COLUMNS} FROM task_evaluations a WHERE a.run_id = $1"),
        args![run_id],
        evaluation_of,
    )?;
    for evaluation in kept {
        let score = if errored {
            Score::call_failed(&evaluation.name)
        } else {
            evaluation.score()
        };
        insert_score(db, experiment_id, at, &score)?;
    }
    Ok(())
}

/// The experiment's evaluators, as runner's experiment records them.
fn evaluators(db: &dyn Db, experiment_id: &str) -> Result<Vec<String>> {
    let text = first(
        db,
        "SELECT evaluators FROM experiments WHERE id = $1",
        args![experiment_id],
        |r| r.text(0),
    )?
    .ok_or_else(|| StoreError::Corrupt(format!("experiment {experiment_id} is missing")))?;
    json(&text, "experiments.evaluators")
}

/// Marks runner's experiment completed once every planned result is in.
fn complete_when_full(db: &dyn Db, experiment_id: &str) -> Result<()> {
    db.exec(
        "UPDATE experiments SET status = 'completed', finished_at = $2 \
         WHERE id = $1 AND status = 'running' \
         AND (SELECT COUNT(*) FROM results WHERE experiment_id = $1) >= planned",
        args![experiment_id, crate::model::now().as_str()],
    )?;
    Ok(())
}

fn insert_score(db: &dyn Db, experiment_id: &str, at: (i64, i64), score: &Score) -> Result<()> {
    db.exec(
        &format!(
            "INSERT INTO scores (experiment_id, row_index, repetition, evaluator, score, pass, \
             error, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) {SCORES_UPSERT}"
        ),
        args![
            experiment_id,
            at.0,
            at.1,
            &score.evaluator,
            score.score,
            score.pass,
            score.error,
            &score.reason
        ],
    )?;
    Ok(())
}

impl<B: Backend> TaskStore for B {
    fn create_task_experiment(
        &self,
        new: &NewTaskExperiment,
        mirror: &NewExperiment,
    ) -> Result<TaskExperiment> {
        let id = super::experiments::experiment_id();
        self.write(|db| {
            insert_experiment(db, &id, mirror, None)?;
            db.exec(
                "INSERT INTO task_experiments (id, dataset_id, dataset_version_id, name, \
                 description, metadata, repetitions, linked, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                args![
                    &id,
                    &new.dataset_id,
                    &new.dataset_version_id,
                    &new.name,
                    &new.description,
                    &new.metadata,
                    new.repetitions,
                    1i64,
                    crate::model::now().as_str(),
                    &new.author
                ],
            )?;
            experiment_by_id(db, &id)?
                .ok_or_else(|| StoreError::Corrupt("a created experiment is missing".into()))
        })
    }

    fn task_experiment(&self, id: &str) -> Result<Option<TaskExperiment>> {
        self.read(|db| experiment_by_id(db, id))
    }

    fn task_experiments(
        &self,
        dataset_id: &str,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskExperiment>> {
        self.read(|db| {
            all(
                db,
                &format!(
                    "{TASK_EXPERIMENT_SELECT} WHERE e.dataset_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR e.created_at || e.id <= \
                     (SELECT created_at || id FROM task_experiments WHERE id = $2)) \
                     ORDER BY e.created_at DESC, e.id DESC LIMIT $3"
                ),
                args![dataset_id, from, limit as i64],
                experiment_of,
            )
        })
    }

    fn record_task_run(&self, run: &TaskRun, result: Option<&RunResult>) -> Result<String> {
        self.write(|db| {
            let lock = db.dialect().for_update();
            let existing = first(
                db,
                &format!(
                    "SELECT id, error FROM task_runs WHERE experiment_id = $1 \
                     AND example_key = $2 AND repetition = $3{lock}"
                ),
                args![&run.experiment_id, &run.example_key, run.repetition],
                |r| Ok((r.text(0)?, r.opt_text(1)?)),
            )?;
            let id = match existing {
                Some((id, None)) => return Err(StoreError::RunExists { id }),
                Some((id, Some(_))) => {
                    // The errored run is replaced in place; what was judged of it no longer
                    // describes it (a person's judgement stays).
                    db.exec(
                        "UPDATE task_runs SET output = $2, error = $3, start_time = $4, \
                         end_time = $5, trace_id = $6 WHERE id = $1",
                        args![
                            &id,
                            &run.output,
                            &run.error,
                            &run.start_time,
                            &run.end_time,
                            &run.trace_id
                        ],
                    )?;
                    db.exec(
                        "DELETE FROM task_evaluations WHERE run_id = $1 \
                         AND annotator_kind <> 'HUMAN'",
                        args![&id],
                    )?;
                    id
                }
                None => {
                    let id = uuid::Uuid::now_v7().to_string();
                    db.exec(
                        &format!(
                            "INSERT INTO task_runs ({TASK_RUN_COLUMNS}) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                        ),
                        args![
                            &id,
                            &run.experiment_id,
                            &run.example_key,
                            run.repetition,
                            &run.output,
                            &run.error,
                            &run.start_time,
                            &run.end_time,
                            &run.trace_id
                        ],
                    )?;
                    id
                }
            };
            // The caller gives a result only when runner keeps the experiment too.
            if let Some(result) = result {
                lock_experiment(db, &run.experiment_id)?;
                let mut result = result.clone();
                db.exec(
                    "DELETE FROM scores WHERE experiment_id = $1 AND row_index = $2 \
                     AND repetition = $3",
                    args![&run.experiment_id, result.row_index, result.repetition],
                )?;
                // A failed run fails every evaluator the experiment has, so no denominator
                // drops it.
                if result.status == crate::model::ResultStatus::Error {
                    result.scores = evaluators(db, &run.experiment_id)?
                        .iter()
                        .map(|e| Score::call_failed(e))
                        .collect();
                }
                db.write_results(&run.experiment_id, &[&result])?;
                let errored = result.status == crate::model::ResultStatus::Error;
                rescore(
                    db,
                    &run.experiment_id,
                    &id,
                    (result.row_index, result.repetition),
                    errored,
                )?;
                complete_when_full(db, &run.experiment_id)?;
            }
            Ok(id)
        })
    }

    fn task_runs(
        &self,
        experiment_id: &str,
        from: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<TaskRun>> {
        self.read(|db| {
            all(
                db,
                &format!(
                    "SELECT {TASK_RUN_COLUMNS} FROM task_runs WHERE experiment_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR id <= $2) ORDER BY id DESC LIMIT $3"
                ),
                args![experiment_id, from, limit.map_or(i64::MAX, |l| l as i64)],
                run_of,
            )
        })
    }

    fn task_run(&self, id: &str) -> Result<Option<TaskRun>> {
        self.read(|db| {
            first(
                db,
                &format!("SELECT {TASK_RUN_COLUMNS} FROM task_runs WHERE id = $1"),
                args![id],
                run_of,
            )
        })
    }

    fn record_task_evaluation(
        &self,
        evaluation: &TaskEvaluation,
        score: Option<(i64, i64, &Score)>,
    ) -> Result<String> {
        self.write(|db| {
            let existing = first(
                db,
                "SELECT id FROM task_evaluations WHERE run_id = $1 AND name = $2",
                args![&evaluation.run_id, &evaluation.name],
                |r| r.text(0),
            )?;
            let id = existing.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            db.exec(
                "INSERT INTO task_evaluations (id, run_id, name, annotator_kind, label, score, \
                 explanation, error, metadata, start_time, end_time, trace_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (run_id, name) DO UPDATE SET annotator_kind = excluded.annotator_kind, \
                 label = excluded.label, score = excluded.score, \
                 explanation = excluded.explanation, error = excluded.error, \
                 metadata = excluded.metadata, start_time = excluded.start_time, \
                 end_time = excluded.end_time, trace_id = excluded.trace_id",
                args![
                    &id,
                    &evaluation.run_id,
                    &evaluation.name,
                    &evaluation.annotator_kind,
                    &evaluation.label,
                    evaluation.score,
                    &evaluation.explanation,
                    &evaluation.error,
                    &evaluation.metadata,
                    &evaluation.start_time,
                    &evaluation.end_time,
                    &evaluation.trace_id
                ],
            )?;
            let experiment_id = first(
                db,
                "SELECT experiment_id FROM task_runs WHERE id = $1",
                args![&evaluation.run_id],
                |r| r.text(0),
            )?
            .ok_or_else(|| StoreError::Corrupt("an evaluated run is missing".into()))?;
            // The caller gives a score only when runner keeps the experiment too.
            if let Some((row_index, repetition, score)) = score {
                lock_experiment(db, &experiment_id)?;
                // An errored result fails every evaluator, whatever an evaluation of its
                // missing output says: the gate never counts a failed call as a pass.
                let errored = first(
                    db,
                    "SELECT status FROM results WHERE experiment_id = $1 AND row_index = $2 \
                     AND repetition = $3",
                    args![&experiment_id, row_index, repetition],
                    |r| r.text(0),
                )?
                .is_none_or(|status| status != "ok");
                let failed = Score::call_failed(&score.evaluator);
                let score = if errored { &failed } else { score };
                let mut known = evaluators(db, &experiment_id)?;
                if !known.contains(&score.evaluator) {
                    // A new evaluator: every failed run fails it too.
                    known.push(score.evaluator.clone());
                    db.exec(
                        "UPDATE experiments SET evaluators = $2 WHERE id = $1",
                        args![&experiment_id, &to_json(&known)?],
                    )?;
                    let errored = all(
                        db,
                        "SELECT row_index, repetition FROM results \
                         WHERE experiment_id = $1 AND status = 'error'",
                        args![&experiment_id],
                        |r| Ok((r.int(0)?, r.int(1)?)),
                    )?;
                    for at in errored {
                        insert_score(db, &experiment_id, at, &Score::call_failed(&score.evaluator))?;
                    }
                }
                insert_score(db, &experiment_id, (row_index, repetition), score)?;
            }
            Ok(id)
        })
    }

    fn task_evaluations(&self, experiment_id: &str) -> Result<Vec<TaskEvaluation>> {
        self.read(|db| {
            all(
                db,
                &format!(
                    "SELECT {TASK_EVALUATION_COLUMNS} FROM task_evaluations a \
                     JOIN task_runs r ON r.id = a.run_id WHERE r.experiment_id = $1 \
                     ORDER BY a.run_id, a.name"
                ),
                args![experiment_id],
                evaluation_of,
            )
        })
    }

    fn restore_task_experiment(&self, e: &TaskExperiment) -> Result<()> {
        self.write(|db| {
            db.exec(
                "INSERT INTO task_experiments (id, dataset_id, dataset_version_id, name, \
                 description, metadata, repetitions, linked, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                args![
                    &e.id,
                    &e.dataset_id,
                    &e.dataset_version_id,
                    &e.name,
                    &e.description,
                    &e.metadata,
                    e.repetitions,
                    i64::from(e.mirrored),
                    &e.created_at,
                    &e.created_by
                ],
            )?;
            Ok(())
        })
    }

    fn restore_task_runs(&self, runs: &[TaskRun], evaluations: &[TaskEvaluation]) -> Result<()> {
        self.write(|db| {
            for run in runs {
                db.exec(
                    &format!(
                        "INSERT INTO task_runs ({TASK_RUN_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    ),
                    args![
                        &run.id,
                        &run.experiment_id,
                        &run.example_key,
                        run.repetition,
                        &run.output,
                        &run.error,
                        &run.start_time,
                        &run.end_time,
                        &run.trace_id
                    ],
                )?;
            }
            for a in evaluations {
                db.exec(
                    "INSERT INTO task_evaluations (id, run_id, name, annotator_kind, label, \
                     score, explanation, error, metadata, start_time, end_time, trace_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    args![
                        &a.id,
                        &a.run_id,
                        &a.name,
                        &a.annotator_kind,
                        &a.label,
                        a.score,
                        &a.explanation,
                        &a.error,
                        &a.metadata,
                        &a.start_time,
                        &a.end_time,
                        &a.trace_id
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn delete_task_experiment(&self, id: &str) -> Result<bool> {
        self.write(|db| {
            let Some(mirrored) = first(
                db,
                "SELECT linked FROM task_experiments WHERE id = $1",
                args![id],
                |r| r.int(0),
            )?
            else {
                return Ok(false);
            };
            if mirrored != 0 {
                // runner's experiment of the same id: kept while it is of a prompt version
                // (evidence a gate may cite), deleted with it otherwise.
                let versioned = one(
                    db,
                    "SELECT COUNT(*) FROM experiments WHERE id = $1 AND version_id IS NOT NULL",
                    args![id],
                    |r| r.int(0),
                )?;
                if versioned > 0 {
                    return Err(StoreError::LinkedExperiment { id: id.into() });
                }
                db.exec("DELETE FROM scores WHERE experiment_id = $1", args![id])?;
                db.exec("DELETE FROM results WHERE experiment_id = $1", args![id])?;
            }
            db.exec(
                "DELETE FROM task_evaluations WHERE run_id IN \
                 (SELECT id FROM task_runs WHERE experiment_id = $1)",
                args![id],
            )?;
            db.exec("DELETE FROM task_runs WHERE experiment_id = $1", args![id])?;
            db.exec("DELETE FROM task_experiments WHERE id = $1", args![id])?;
            db.exec("DELETE FROM experiments WHERE id = $1", args![id])?;
            Ok(true)
        })
    }
}
