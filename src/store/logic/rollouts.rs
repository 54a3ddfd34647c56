//! Canary rollouts, once for both backends: the start (baseline check, one rollout per tag, the
//! canary tag set), the compare-and-set each look records, and the end (a promotion of the tag
//! to the candidate, or the candidate withdrawn), each tag move through the one tag path with
//! its evidence. It names no driver and must not decide anything: the looks' decisions are
//! `domain::canary`'s.

use super::Backend;
use super::prompts::{current_tag, lock_prompt, write_tag};
use crate::canary::{Rollout, RolloutNow, Status, StepAfter};
use crate::model::{TagAction, TagEvent};
use crate::store::sql::{Db, Row, all, args, corrupt, first, json, to_json};
use crate::store::{Expect, Result, RolloutStore, StoreError, TagChange};
use serde_json::{Value, json as value};

const ROLLOUT_COLUMNS: &str = "r.id, r.prompt, r.tag, r.canary_tag, r.baseline_id, vb.seq, \
     r.candidate_id, vc.seq, r.plan, r.step, r.step_started_ms, r.step_looks, r.looks, r.status, \
     r.created_ms, r.updated_ms, r.actor, r.message, r.last_look";

const ROLLOUT_JOINS: &str = "FROM rollouts r JOIN prompt_versions vb ON vb.id = r.baseline_id \
     JOIN prompt_versions vc ON vc.id = r.candidate_id";

impl<B: Backend> RolloutStore for B {
    fn start_rollout(&self, rollout: &Rollout, change: &TagChange) -> Result<TagEvent> {
        self.write_routing(|db| {
            let pid = lock_prompt(db, &rollout.prompt)?;
            match current_tag(db, pid, &rollout.tag)? {
                None => {
                    return Err(StoreError::UnknownTag {
                        prompt: rollout.prompt.clone(),
                        tag: rollout.tag.clone(),
                    });
                }
                Some(tag) if tag.version_id != rollout.baseline_id => {
                    return Err(StoreError::TagMoved {
                        prompt: rollout.prompt.clone(),
                        tag: rollout.tag.clone(),
                    });
                }
                Some(_) => {}
            }
            if let Some(id) = first(
                db,
                "SELECT id FROM rollouts WHERE prompt = $1 AND tag = $2 AND status = 'running'",
                args![&rollout.prompt, &rollout.tag],
                |r| r.text(0),
            )? {
                return Err(StoreError::RolloutRunning {
                    prompt: rollout.prompt.clone(),
                    tag: rollout.tag.clone(),
                    id,
                });
            }
            let plan = to_json(&value!({
                "steps": rollout.steps,
                "step_after": rollout.step_after,
                "unit_header": rollout.unit_header,
                "metrics": rollout.metrics,
                "confidence": rollout.confidence,
            }))?;
            db.exec(
                "INSERT INTO rollouts (id, prompt, tag, canary_tag, baseline_id, candidate_id, \
                 plan, step, step_started_ms, step_looks, looks, status, created_ms, updated_ms, \
                 actor, message) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, 0, 'running', $10, $10, $11, $12)",
                args![
                    &rollout.id,
                    &rollout.prompt,
                    &rollout.tag,
                    &rollout.canary_tag,
                    &rollout.baseline_id,
                    &rollout.candidate_id,
                    &plan,
                    rollout.step as i64,
                    rollout.step_started_ms,
                    rollout.created_ms,
                    &rollout.actor,
                    &rollout.message
                ],
            )?;
            let evidence = value!({
                "rollout": rollout.id,
                "started": true,
                "tag": rollout.tag,
                "baseline": rollout.baseline,
                "candidate": rollout.candidate,
                "steps": rollout.steps,
                "step_after": rollout.step_after.text(),
                "metrics": rollout.metrics.iter().map(|m| m.label()).collect::<Vec<_>>(),
                "confidence": rollout.confidence,
            });
            let change = TagChange {
                evidence: Some(evidence),
                message: Some(rollout.message.clone().unwrap_or_else(|| {
                    format!(
                        "rollout {} of v{} on {} started",
                        rollout.id, rollout.candidate, rollout.tag
                    )
                })),
                ..change.clone()
            };
            write_tag(
                db,
                pid,
                &rollout.prompt,
                &rollout.canary_tag,
                Some(&rollout.candidate_id),
                &change,
            )
        })
    }

    fn rollout_now(&self, id: &str) -> Result<Option<RolloutNow>> {
        // An archived prompt's rollout is none: its lookups fall to the archived answer.
        self.read(|db| {
            first(
                db,
                "SELECT r.status, r.step, \
                 CASE WHEN t.version_id = r.baseline_id THEN 1 ELSE 0 END \
                 FROM rollouts r JOIN prompts p ON p.name = r.prompt \
                 LEFT JOIN tags t ON t.prompt_id = p.id AND t.name = r.tag \
                 WHERE r.id = $1 AND p.archived_at IS NULL",
                args![id],
                |row| {
                    let status = row.text(0)?;
                    Ok(RolloutNow {
                        status: Status::parse(&status)
                            .ok_or_else(|| corrupt("rollouts.status", &status))?,
                        step: usize::try_from(row.int(1)?)
                            .map_err(|_| corrupt("rollouts.step", "negative"))?,
                        on_baseline: row.int(2)? == 1,
                    })
                },
            )
        })
    }

    fn rollouts(&self, prompt: Option<&str>, running: bool) -> Result<Vec<Rollout>> {
        self.read(|db| match (prompt, running) {
            (Some(prompt), false) => all(
                db,
                &format!(
                    "SELECT {ROLLOUT_COLUMNS} {ROLLOUT_JOINS} WHERE r.prompt = $1 \
                     ORDER BY r.created_ms DESC, r.id DESC"
                ),
                args![prompt],
                rollout_of,
            ),
            (Some(prompt), true) => all(
                db,
                &format!(
                    "SELECT {ROLLOUT_COLUMNS} {ROLLOUT_JOINS} WHERE r.prompt = $1 \
                     AND r.status = 'running' ORDER BY r.created_ms DESC, r.id DESC"
                ),
                args![prompt],
                rollout_of,
            ),
            (None, false) => all(
                db,
                &format!(
                    "SELECT {ROLLOUT_COLUMNS} {ROLLOUT_JOINS} \
                     ORDER BY r.created_ms DESC, r.id DESC"
                ),
                &[],
                rollout_of,
            ),
            (None, true) => all(
                db,
                &format!(
                    "SELECT {ROLLOUT_COLUMNS} {ROLLOUT_JOINS} WHERE r.status = 'running' \
                     ORDER BY r.created_ms DESC, r.id DESC"
                ),
                &[],
                rollout_of,
            ),
        })
    }

    fn record_look(&self, seen: &Rollout, next: &Rollout) -> Result<bool> {
        let last = next.last_look.as_ref().map(Value::to_string);
        self.write_routing(|db| {
            let changed = db.exec(
                "UPDATE rollouts SET step = $1, step_started_ms = $2, step_looks = $3, looks = $4, \
                 last_look = $5, updated_ms = $6 \
                 WHERE id = $7 AND status = 'running' AND step = $8 AND looks = $9",
                args![
                    next.step as i64,
                    next.step_started_ms,
                    i64::from(next.step_looks),
                    i64::from(next.looks),
                    &last,
                    next.updated_ms,
                    &seen.id,
                    seen.step as i64,
                    i64::from(seen.looks)
                ],
            )?;
            Ok(changed == 1)
        })
    }

    fn finish_rollout(
        &self,
        seen: &Rollout,
        status: Status,
        evidence: Value,
        change: &TagChange,
    ) -> Result<Option<Vec<TagEvent>>> {
        self.write_routing(|db| {
            let pid = lock_prompt(db, &seen.prompt)?;
            let now = crate::trace::now_ms();
            let last = evidence.to_string();
            let changed = db.exec(
                "UPDATE rollouts SET status = $1, last_look = $2, updated_ms = $3, \
                 looks = looks + 1 \
                 WHERE id = $4 AND status = 'running' AND step = $5 AND looks = $6",
                args![
                    status.as_str(),
                    &last,
                    now,
                    &seen.id,
                    seen.step as i64,
                    i64::from(seen.looks)
                ],
            )?;
            if changed != 1 {
                return Ok(None);
            }
            let mut events = Vec::new();
            if status == Status::Completed {
                let promote = TagChange {
                    action: Some(TagAction::Promote),
                    expect: Expect::At(seen.baseline_id.clone()),
                    evidence: Some(evidence.clone()),
                    message: Some(format!(
                        "rollout {} completed: v{} served to 100% and every metric non-inferior",
                        seen.id, seen.candidate
                    )),
                    ..change.clone()
                };
                events.push(write_tag(
                    db,
                    pid,
                    &seen.prompt,
                    &seen.tag,
                    Some(&seen.candidate_id),
                    &promote,
                )?);
            }
            events.extend(withdraw(db, pid, seen, status, &evidence, change)?);
            Ok(Some(events))
        })
    }
}

/// Deletes the canary tag at a rollout's end, if it still points at the candidate.
fn withdraw(
    db: &dyn Db,
    pid: i64,
    seen: &Rollout,
    status: Status,
    evidence: &Value,
    change: &TagChange,
) -> Result<Option<TagEvent>> {
    let canary = current_tag(db, pid, &seen.canary_tag)?;
    if canary.is_none_or(|t| t.version_id != seen.candidate_id) {
        return Ok(None);
    }
    let why = match status {
        Status::Completed => "completed",
        Status::RolledBack => "rolled back: a metric was inferior",
        Status::Stopped => "stopped",
        Status::Running => "running",
    };
    let end = TagChange {
        action: Some(TagAction::Delete),
        expect: Expect::At(seen.candidate_id.clone()),
        evidence: Some(evidence.clone()),
        message: Some(format!("rollout {} {why}", seen.id)),
        ..change.clone()
    };
    write_tag(db, pid, &seen.prompt, &seen.canary_tag, None, &end).map(Some)
}

/// Stops the running rollout of `tag`, if any, when the tag is rolled back by hand: the
/// candidate is withdrawn with the rollback.
pub(super) fn stop_on_rollback(
    db: &dyn Db,
    pid: i64,
    prompt: &str,
    tag: &str,
    change: &TagChange,
) -> Result<()> {
    let running = first(
        db,
        &format!(
            "SELECT {ROLLOUT_COLUMNS} {ROLLOUT_JOINS} WHERE r.prompt = $1 AND r.tag = $2 AND r.status = 'running'"
        ),
        args![prompt, tag],
        rollout_of,
    )?;
    let Some(rollout) = running else {
        return Ok(());
    };
    let evidence = value!({"rollout": rollout.id, "stopped_by": "rollback", "step": rollout.step});
    db.exec(
        "UPDATE rollouts SET status = 'stopped', last_look = $1, updated_ms = $2 WHERE id = $3",
        args![&evidence.to_string(), crate::trace::now_ms(), &rollout.id],
    )?;
    let change = TagChange {
        policy: Default::default(),
        ..change.clone()
    };
    withdraw(db, pid, &rollout, Status::Stopped, &evidence, &change)?;
    Ok(())
}

fn rollout_of(row: &dyn Row) -> Result<Rollout> {
    let plan: Value = json(&row.text(8)?, "rollouts.plan")?;
    let field = |name: &str| plan.get(name).cloned().unwrap_or(Value::Null);
    let steps: Vec<u32> =
        serde_json::from_value(field("steps")).map_err(|e| corrupt("rollouts.plan", e))?;
    let step_after: StepAfter =
        serde_json::from_value(field("step_after")).map_err(|e| corrupt("rollouts.plan", e))?;
    let metrics =
        serde_json::from_value(field("metrics")).map_err(|e| corrupt("rollouts.plan", e))?;
    let status = row.text(13)?;
    Ok(Rollout {
        id: row.text(0)?,
        prompt: row.text(1)?,
        tag: row.text(2)?,
        canary_tag: row.text(3)?,
        baseline_id: row.text(4)?,
        baseline: row.int(5)?,
        candidate_id: row.text(6)?,
        candidate: row.int(7)?,
        steps,
        step: row.int(9)? as usize,
        step_started_ms: row.int(10)?,
        step_after,
        unit_header: field("unit_header").as_str().map(str::to_string),
        metrics,
        confidence: field("confidence").as_f64().unwrap_or(0.95),
        step_looks: row.int(11)? as u32,
        looks: row.int(12)? as u32,
        status: crate::canary::Status::parse(&status)
            .ok_or_else(|| corrupt("rollouts.status", &status))?,
        created_ms: row.int(14)?,
        updated_ms: row.int(15)?,
        actor: row.text(16)?,
        message: row.opt_text(17)?,
        last_look: row
            .opt_text(18)?
            .map(|t| json::<Value>(&t, "rollouts.last_look"))
            .transpose()?,
    })
}
