//! Canary rollouts over the store: start one (the baseline is what the tag points at now), read
//! each arm's production figures since its step began, take the looks that are due and record
//! their decisions (hold, advance, complete, roll back, stop), and steer by hand (advance,
//! stop). `runner serve` runs `evaluate_all` in the background; `runner canary evaluate` runs it
//! once for setups without a long-running server. Several processes on one store agree: every
//! decision is a compare-and-set on the rollout's state, so only one of them records it.
//!
//! The statistics and the decision are `domain::canary`'s; this module must not print, and
//! must not move a tag except through the store's rollout writes.

use crate::canary::{self, ArmFigures, Decision, Look, Metric, Rollout, Status, StepAfter};
use crate::config::CanaryConfig;
use crate::error::{Error, Result};
use crate::model::{NameKind, PromptVersion, TagEvent, VersionRef, check_name};
use crate::store::{Store, TagChange, TagPolicy, TagRole};
use crate::trace::SpanFilter;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What `runner canary start` asks for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub prompt: String,
    pub tag: String,
    /// A tag, version number or version id.
    pub candidate: String,
    pub steps: Vec<u32>,
    pub step_after: StepAfter,
    pub unit_header: Option<String>,
    pub metrics: Vec<Metric>,
    pub confidence: f64,
    pub canary_tag: String,
    pub message: Option<String>,
}

/// A rollout as asked for, each part optional: the flags of `runner canary start`, or the
/// body of `POST /v1/prompts/{name}/rollouts`. What is missing comes from runner.toml's
/// `[canary]`, else the built-in defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default)]
    pub tag: Option<String>,
    pub candidate: String,
    #[serde(default)]
    pub steps: Option<Vec<u32>>,
    #[serde(default)]
    pub step_after: Option<String>,
    #[serde(default)]
    pub unit_header: Option<String>,
    #[serde(default)]
    pub metrics: Option<Vec<String>>,
    #[serde(default)]
    pub non_inferior: Option<f64>,
    #[serde(default)]
    pub confidence: Option<f64>,
    #[serde(default)]
    pub canary_tag: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Builds and checks the plan of a request: each part from the request, else `defaults`
/// (runner.toml's `[canary]`), else the built-in default; `confidence` falls back on
/// runner.toml's `confidence`. Errors name the flag (`--steps`), which is also the field.
pub fn plan(
    prompt: &str,
    request: Request,
    defaults: &CanaryConfig,
    file_confidence: Option<f64>,
) -> Result<Plan> {
    let named = |kind: NameKind, what: &str, name: &str| {
        check_name(kind, name).map_err(|reason| {
            Error::invalid(format!("invalid {what} '{name}': {reason}"))
                .with_hint("names are letters, digits, '_', '-' and '.'")
        })
    };
    named(NameKind::Prompt, "prompt name", prompt)?;
    let tag = request.tag.unwrap_or_else(|| "production".to_string());
    named(NameKind::Tag, "tag name", &tag)?;
    let canary_tag = request
        .canary_tag
        .or_else(|| defaults.canary_tag.clone())
        .unwrap_or_else(|| canary::DEFAULT_CANARY_TAG.to_string());
    named(NameKind::Tag, "canary tag", &canary_tag)?;
    if request.candidate.trim().is_empty() {
        return Err(Error::invalid("the candidate is empty")
            .with_hint("name the version to roll out: a tag, a version number or an id"));
    }
    let steps = request
        .steps
        .or_else(|| defaults.steps.clone())
        .unwrap_or_else(|| canary::DEFAULT_STEPS.to_vec());
    check_steps(&steps)?;
    let step_after_text = request
        .step_after
        .or_else(|| defaults.step_after.clone())
        .unwrap_or_else(|| "30m".to_string());
    let step_after = StepAfter::parse(&step_after_text.replace(' ', "")).map_err(|e| {
        Error::invalid(format!("--step-after {e}"))
            .with_hint("a duration (30m, 2h) or a number of candidate requests (500requests)")
    })?;
    let non_inferior = request.non_inferior.or(defaults.non_inferior);
    if let Some(d) = non_inferior
        && !(d.is_finite() && d > 0.0 && d < 1.0)
    {
        return Err(
            Error::invalid(format!("--non-inferior must be between 0 and 1, got {d}"))
                .with_hint("for example --non-inferior 0.02 (two points of error rate)"),
        );
    }
    let texts = request
        .metrics
        .filter(|m| !m.is_empty())
        .or_else(|| defaults.metrics.clone())
        .unwrap_or_else(|| vec!["error_rate".to_string()]);
    let metrics = texts
        .iter()
        .map(|m| {
            Metric::parse(m, non_inferior).map_err(|e| {
                Error::invalid(format!("--metric {e}"))
                    .with_hint("error_rate, latency_p95:+20% or score:NAME")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let unit_header = request.unit_header.or_else(|| defaults.unit_header.clone());
    if let Some(header) = &unit_header
        && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err()
    {
        return Err(
            Error::invalid(format!("--unit-header '{header}' is not a header name"))
                .with_hint("for example --unit-header X-Runner-Unit"),
        );
    }
    let message = request
        .message
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty());
    if message.as_ref().is_some_and(|m| m.chars().count() > 2_000) {
        return Err(Error::invalid("the message has at most 2,000 characters")
            .with_hint("say why in a sentence; the evidence is recorded on its own"));
    }
    Ok(Plan {
        prompt: prompt.to_string(),
        tag,
        candidate: request.candidate,
        steps,
        step_after,
        unit_header,
        metrics,
        confidence: crate::input::confidence(request.confidence, file_confidence)?,
        canary_tag,
        message,
    })
}

/// Checks a plan's steps: rising percentages from 1 to 100, ending at 100.
pub fn check_steps(steps: &[u32]) -> Result<()> {
    let rising = steps.windows(2).all(|w| w[0] < w[1]);
    if steps.is_empty() || !rising || steps[0] == 0 || steps.last() != Some(&100) {
        return Err(Error::invalid(format!(
            "--steps must rise from 1 to 100 and end at 100, got {}",
            steps
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ))
        .with_hint("for example --steps 5,25,50,100"));
    }
    Ok(())
}

/// Starts a rollout: the candidate is served to the first step's share from now on.
pub fn start(
    store: &dyn Store,
    plan: &Plan,
    actor: &str,
    policy: &TagPolicy,
    now_ms: i64,
) -> Result<(Rollout, TagEvent)> {
    check_steps(&plan.steps)?;
    // The rollout sets and withdraws the canary tag on its own; a protected one could be set
    // but never withdrawn, and the rollout could not end.
    if policy.is_protected(&plan.canary_tag) {
        return Err(Error::invalid(format!(
            "the canary tag '{}' is protected; a rollout moves its canary tag by itself",
            plan.canary_tag
        ))
        .with_hint("name an unprotected canary tag (the default is 'canary')"));
    }
    let baseline = store.version(&plan.prompt, &VersionRef::Tag(plan.tag.clone()))?;
    let candidate = store.version(&plan.prompt, &VersionRef::Any(plan.candidate.clone()))?;
    if baseline.id == candidate.id {
        return Err(Error::invalid(format!(
            "{} and the candidate {} are the same version (v{}): there is nothing to roll out",
            plan.tag, plan.candidate, baseline.seq
        ))
        .with_hint("name another version with --candidate (a tag, a number or an id)"));
    }
    if plan.canary_tag == plan.tag {
        return Err(Error::invalid(
            "the canary tag must differ from the tag being rolled out",
        ));
    }
    let rollout = Rollout {
        id: format!("ro_{}", short_id()),
        prompt: plan.prompt.clone(),
        tag: plan.tag.clone(),
        canary_tag: plan.canary_tag.clone(),
        baseline_id: baseline.id.clone(),
        baseline: baseline.seq,
        candidate_id: candidate.id.clone(),
        candidate: candidate.seq,
        steps: plan.steps.clone(),
        step: 0,
        step_started_ms: now_ms,
        step_after: plan.step_after,
        unit_header: plan.unit_header.clone(),
        metrics: plan.metrics.clone(),
        confidence: plan.confidence,
        step_looks: 0,
        looks: 0,
        status: Status::Running,
        created_ms: now_ms,
        updated_ms: now_ms,
        actor: actor.to_string(),
        message: plan.message.clone(),
        last_look: None,
    };
    let change = TagChange {
        actor: actor.to_string(),
        policy: policy.clone(),
        ..TagChange::default()
    };
    let event = store.start_rollout(&rollout, &change)?;
    Ok((rollout, event))
}

fn short_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..10)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// What a lookup of a tag was served: the version, and under a rollout its id and the arm.
#[derive(Debug, Clone)]
pub struct Served {
    pub version: PromptVersion,
    pub rollout: Option<(String, canary::Arm)>,
}

/// Looks a tag up as `runner serve` answers it, for applications that embed the library: under
/// a running rollout whose baseline the tag still points at, the arm of `unit` (a user, a
/// session: sticky, the same bucket the server gives that unit's unit header) when the rollout
/// was planned with a unit header, else a fresh draw; otherwise the version the tag points at.
/// Reads the rollout afresh on every call.
pub fn lookup(store: &dyn Store, prompt: &str, tag: &str, unit: Option<&str>) -> Result<Served> {
    let rollout = store
        .rollouts(Some(prompt), true)?
        .into_iter()
        .find(|r| r.tag == tag);
    if let Some(rollout) = rollout {
        let (current, _) = store.tag_target(prompt, tag)?;
        if current == rollout.baseline_id {
            // As the server: a unit is sticky only in a rollout planned with a unit header.
            let unit = unit.filter(|u| !u.is_empty() && rollout.unit_header.is_some());
            let arm = rollout.arm(unit, fastrand::u64(..10_000));
            let version = store.version(prompt, &VersionRef::Id(rollout.version_of(arm).into()))?;
            return Ok(Served {
                version,
                rollout: Some((rollout.id, arm)),
            });
        }
    }
    Ok(Served {
        version: store.version(prompt, &VersionRef::Tag(tag.to_string()))?,
        rollout: None,
    })
}

/// Each arm's production figures: the candidate's since its current step began, the
/// baseline's since the rollout began (at the last step the baseline gets no traffic, and its
/// earlier traffic is still the evidence of how it behaves).
pub fn figures(store: &dyn Store, rollout: &Rollout) -> Result<(ArmFigures, ArmFigures)> {
    let mut arms = Vec::new();
    for (version, since) in [
        (&rollout.baseline_id, rollout.created_ms),
        (&rollout.candidate_id, rollout.step_started_ms),
    ] {
        let filter = arm_filter(rollout, version, since);
        let mut arm = ArmFigures::default();
        let mut ids = std::collections::HashSet::new();
        store.visit_spans(&filter, &mut |span| {
            if span.is_llm() {
                arm.spans += 1;
                arm.errors += u64::from(span.status == crate::trace::SpanStatus::Error);
                arm.latencies.push(span.latency_ms() as f64);
                ids.insert(span.span_id);
            }
            Ok(())
        })?;
        for scored in store.scored_spans(&filter)? {
            if let (true, Some(score)) = (ids.contains(&scored.span_id), scored.annotation.score) {
                arm.scores
                    .entry(scored.annotation.name.clone())
                    .or_default()
                    .push(score);
            }
        }
        arms.push(arm);
    }
    let candidate = arms.pop().unwrap_or_default();
    let baseline = arms.pop().unwrap_or_default();
    Ok((baseline, candidate))
}

/// The production spans of one arm's version since `since_ms`.
fn arm_filter(rollout: &Rollout, version_id: &str, since_ms: i64) -> SpanFilter {
    SpanFilter {
        prompt: Some(rollout.prompt.clone()),
        version_ids: vec![version_id.to_string()],
        since_ms: Some(since_ms),
        ..SpanFilter::default()
    }
}

/// What a look did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub rollout: String,
    pub prompt: String,
    pub tag: String,
    pub look: Look,
    /// False when another process recorded a decision first (this look was dropped).
    pub recorded: bool,
    pub events: Vec<TagEvent>,
}

/// Takes the look that is due on one rollout, if one is, and records its decision.
pub fn evaluate(
    store: &dyn Store,
    rollout: &Rollout,
    now_ms: i64,
    policy: &TagPolicy,
    actor: &str,
) -> Result<Option<Outcome>> {
    if rollout.status != Status::Running {
        return Ok(None);
    }
    // Whether a look is due needs at most a count: the server asks every few seconds, and the
    // arms' spans are read only when a look is taken.
    let candidate_spans = match rollout.step_after {
        StepAfter::Millis(_) => 0,
        StepAfter::Requests(_) => store.count_spans(&arm_filter(
            rollout,
            &rollout.candidate_id,
            rollout.step_started_ms,
        ))? as u64,
    };
    if !rollout.look_due(rollout.progress(now_ms, candidate_spans)) {
        return Ok(None);
    }
    let (baseline, candidate) = figures(store, rollout)?;
    let progress = rollout.progress(now_ms, candidate.spans);
    let look = canary::look(rollout, &baseline, &candidate, progress);
    record(store, rollout, look, now_ms, policy, actor).map(Some)
}

fn record(
    store: &dyn Store,
    rollout: &Rollout,
    look: Look,
    now_ms: i64,
    policy: &TagPolicy,
    actor: &str,
) -> Result<Outcome> {
    let evidence = json!({
        "rollout": rollout.id,
        "decision": look.decision,
        "step": look.step,
        "share": look.share,
        "look": look.look,
        "alpha": look.alpha,
        "metrics": look.metrics,
        "baseline": rollout.baseline,
        "candidate": rollout.candidate,
    });
    let change = TagChange {
        actor: actor.to_string(),
        policy: policy.clone(),
        ..TagChange::default()
    };
    let mut events = Vec::new();
    let recorded = match look.decision {
        Decision::Hold | Decision::Advance => {
            let mut next = rollout.clone();
            next.looks += 1;
            next.updated_ms = now_ms;
            next.last_look = Some(evidence);
            if look.decision == Decision::Advance {
                next.step += 1;
                next.step_started_ms = now_ms;
                next.step_looks = 0;
            } else {
                next.step_looks += 1;
            }
            store.record_look(rollout, &next)?
        }
        Decision::Complete | Decision::RollBack | Decision::Exhausted => {
            let status = match look.decision {
                Decision::Complete => Status::Completed,
                Decision::RollBack => Status::RolledBack,
                _ => Status::Stopped,
            };
            match store.finish_rollout(rollout, status, evidence, &change)? {
                Some(moved) => {
                    events = moved;
                    true
                }
                None => false,
            }
        }
    };
    Ok(Outcome {
        rollout: rollout.id.clone(),
        prompt: rollout.prompt.clone(),
        tag: rollout.tag.clone(),
        look,
        recorded,
        events,
    })
}

/// Takes every due look on every running rollout (of one prompt, or all).
pub fn evaluate_all(
    store: &dyn Store,
    prompt: Option<&str>,
    now_ms: i64,
    policy: &TagPolicy,
    actor: &str,
) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for rollout in store.rollouts(prompt, true)? {
        if let Some(outcome) = evaluate(store, &rollout, now_ms, policy, actor)? {
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

/// The running rollout of `prompt`'s `tag`.
pub fn running(store: &dyn Store, prompt: &str, tag: &str) -> Result<Rollout> {
    store
        .rollouts(Some(prompt), true)?
        .into_iter()
        .find(|r| r.tag == tag)
        .ok_or_else(|| {
            crate::store::StoreError::NoRollout {
                prompt: prompt.into(),
                tag: tag.into(),
            }
            .into()
        })
}

/// A rollout as `runner canary status` and the web UI show it: the state, each arm's figures
/// so far in the step as a look would judge them now (not recorded), and what comes next.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub rollout: Rollout,
    pub share: u32,
    pub progress: f64,
    pub in_step_ms: i64,
    pub baseline_spans: u64,
    pub candidate_spans: u64,
    pub now: Option<Look>,
    pub next: String,
}

pub fn view(store: &dyn Store, rollout: Rollout, now_ms: i64) -> Result<View> {
    let running = rollout.status == Status::Running;
    let (baseline, candidate) = if running {
        figures(store, &rollout)?
    } else {
        Default::default()
    };
    let progress = rollout.progress(now_ms, candidate.spans);
    let now = running.then(|| canary::look(&rollout, &baseline, &candidate, progress));
    let next = match (&rollout.status, &now) {
        (Status::Running, Some(look)) => next_text(&rollout, look, progress, now_ms),
        (Status::Completed, _) => format!("done: {} moved to v{}", rollout.tag, rollout.candidate),
        (Status::RolledBack, _) => format!(
            "done: rolled back, {} stays on v{}",
            rollout.tag, rollout.baseline
        ),
        (_, _) => format!(
            "done: stopped, {} stays on v{}",
            rollout.tag, rollout.baseline
        ),
    };
    Ok(View {
        share: if running { rollout.share() } else { 0 },
        progress,
        in_step_ms: now_ms - rollout.step_started_ms,
        baseline_spans: baseline.spans,
        candidate_spans: candidate.spans,
        now,
        next,
        rollout,
    })
}

fn next_text(rollout: &Rollout, look: &Look, progress: f64, now_ms: i64) -> String {
    let step_end = match rollout.step_after {
        StepAfter::Millis(ms) => {
            let left = (rollout.step_started_ms + ms - now_ms).max(0) / 1_000;
            match left {
                0..120 => format!("in {left} s"),
                120..7_200 => format!("in {} min", left / 60),
                _ => format!("in {} h {} min", left / 3_600, left % 3_600 / 60),
            }
        }
        StepAfter::Requests(n) => format!(
            "after {} more candidate requests",
            (n as f64 * (1.0 - progress)).max(0.0).ceil() as u64
        ),
    };
    match look.decision {
        Decision::RollBack => "the next look rolls back: a metric is inferior".into(),
        _ if rollout.at_last_step() => format!(
            "completes {step_end} if every metric is then non-inferior (moves {} to v{})",
            rollout.tag, rollout.candidate
        ),
        _ => format!(
            "steps to {}% {step_end} if every metric is then non-inferior",
            rollout.steps[rollout.step + 1]
        ),
    }
}

/// Moves a running rollout to its next step by hand (or completes it at the last).
pub fn advance(
    store: &dyn Store,
    prompt: &str,
    tag: &str,
    now_ms: i64,
    policy: &TagPolicy,
    actor: &str,
) -> Result<Outcome> {
    let rollout = running(store, prompt, tag)?;
    advance_from(store, &rollout, now_ms, policy, actor)
}

/// Whether advancing `rollout` by hand would complete it and so move a protected tag, which
/// only a caller with the deploy role may do by hand (the evidence completes it without one).
pub fn hand_completion_needs_deploy(rollout: &Rollout, policy: &TagPolicy, role: TagRole) -> bool {
    rollout.at_last_step() && policy.is_protected(&rollout.tag) && role != TagRole::Deploy
}

/// Advances `rollout` as the caller saw it: when it has changed since (another process took
/// a look, stepped or ended it), nothing is written and the answer says so. A caller that
/// checked something about the rollout (whether this advance completes it) acts on what it
/// checked.
pub fn advance_from(
    store: &dyn Store,
    rollout: &Rollout,
    now_ms: i64,
    policy: &TagPolicy,
    actor: &str,
) -> Result<Outcome> {
    let rollout = rollout.clone();
    let (baseline, candidate) = figures(store, &rollout)?;
    let mut look = canary::look(&rollout, &baseline, &candidate, 1.0);
    look.decision = if rollout.at_last_step() {
        Decision::Complete
    } else {
        Decision::Advance
    };
    let outcome = record(store, &rollout, look, now_ms, policy, actor)?;
    if !outcome.recorded {
        return Err(Error::operational(
            "the rollout changed while advancing it; nothing was written",
        )
        .with_hint("`runner canary status` shows where it is now"));
    }
    Ok(outcome)
}

/// Ends a running rollout by hand: the candidate is no longer served and the tag stays.
pub fn stop(
    store: &dyn Store,
    prompt: &str,
    tag: &str,
    message: Option<&str>,
    policy: &TagPolicy,
    actor: &str,
) -> Result<Vec<TagEvent>> {
    let rollout = running(store, prompt, tag)?;
    let evidence = json!({
        "rollout": rollout.id,
        "decision": "stopped",
        "step": rollout.step,
        "share": rollout.share(),
        "message": message,
    });
    let change = TagChange {
        actor: actor.to_string(),
        policy: policy.clone(),
        message: message.map(str::to_string),
        ..TagChange::default()
    };
    store
        .finish_rollout(&rollout, Status::Stopped, evidence, &change)?
        .ok_or_else(|| {
            Error::operational("the rollout changed while stopping it; nothing was written")
                .with_hint("`runner canary status` shows where it is now")
        })
}
