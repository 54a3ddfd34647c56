//! Canary rollouts: a tag served to a share of lookups, stepped up, completed or rolled back by
//! production evidence. This module holds the rollout's plan and state, which arm a lookup gets,
//! and the decision at each look: every metric a non-inferiority check with an interval,
//! corrected for looking repeatedly by alpha spending over the planned looks (Bonferroni: each
//! of the K planned looks spends (1 − C) / K, so the chance of any wrong rollback over the whole
//! rollout stays within 1 − C whatever the looks' correlation).
//!
//! Pure: functions of the rollout and the two arms' figures. It must not open the store, read
//! a clock or draw at random (the caller hands in the time and the draw).

use crate::stats::{self, Moments};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Steps when none are given, in percent of lookups served the candidate.
pub const DEFAULT_STEPS: [u32; 4] = [5, 25, 50, 100];
/// Looks planned in each step: every fifth of the step, the last at its end.
pub const LOOKS_PER_STEP: u32 = 5;
/// Looks beyond the plan a rollout may take while a step's evidence stays inconclusive; once
/// they are spent too, the rollout stops (the candidate is no longer served).
pub const EXTRA_LOOKS: u32 = 10;
/// The tag that points at the candidate while a rollout runs.
pub const DEFAULT_CANARY_TAG: &str = "canary";
/// Default margins: error rate (absolute), mean score (absolute), p95 latency (relative).
pub const DEFAULT_ERROR_MARGIN: f64 = 0.01;
pub const DEFAULT_SCORE_MARGIN: f64 = 0.05;
pub const DEFAULT_LATENCY_MARGIN: f64 = 0.20;
/// Spans each arm needs in a look before a metric can pass.
pub const MIN_SPANS: u64 = 30;

/// What ends a step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAfter {
    /// Milliseconds in the step.
    Millis(i64),
    /// Spans on the candidate's arm in the step.
    Requests(u64),
}

impl StepAfter {
    /// `30m`, `2h`, `500 requests`.
    pub fn parse(text: &str) -> Result<StepAfter, String> {
        let text = text.trim();
        if let Some(n) = text
            .strip_suffix("requests")
            .or_else(|| text.strip_suffix("request"))
        {
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| format!("'{text}' is not a number of requests"))?;
            if n == 0 {
                return Err("a step needs at least 1 request".into());
            }
            return Ok(StepAfter::Requests(n));
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let scale: i64 = match unit.trim() {
            "s" | "" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("'{text}' is neither a duration nor N requests")),
        };
        let n: i64 = number
            .parse()
            .map_err(|_| format!("'{text}' is neither a duration nor N requests"))?;
        if n <= 0 {
            return Err("a step must last more than 0".into());
        }
        Ok(StepAfter::Millis(n.saturating_mul(scale)))
    }

    pub fn text(self) -> String {
        match self {
            StepAfter::Millis(ms) if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
            StepAfter::Millis(ms) if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            StepAfter::Millis(ms) => format!("{}s", ms / 1_000),
            StepAfter::Requests(n) => format!("{n} requests"),
        }
    }
}

/// What a rollout watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum Metric {
    /// Candidate error rate − baseline error rate must stay under `margin`.
    ErrorRate { margin: f64 },
    /// The share of candidate calls slower than (1 + `relative`) × the baseline's p95 must not
    /// exceed the baseline's share over the same threshold by more than the 5 % a p95 allows.
    LatencyP95 { relative: f64 },
    /// Baseline mean score − candidate mean score of annotation `name` must stay under
    /// `margin`.
    Score { name: String, margin: f64 },
}

impl Metric {
    /// `error_rate`, `latency_p95:+20%`, `score:NAME`; `margin` is `--non-inferior`, if given.
    pub fn parse(text: &str, margin: Option<f64>) -> Result<Metric, String> {
        let text = text.trim();
        if text == "error_rate" {
            return Ok(Metric::ErrorRate {
                margin: margin.unwrap_or(DEFAULT_ERROR_MARGIN),
            });
        }
        if let Some(rest) = text.strip_prefix("latency_p95") {
            let relative = match rest.strip_prefix(':') {
                None if rest.is_empty() => DEFAULT_LATENCY_MARGIN,
                Some(r) => {
                    let r = r.trim().trim_start_matches('+');
                    let r = r
                        .strip_suffix('%')
                        .ok_or_else(|| format!("'{text}': write the allowance as +20%"))?;
                    r.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .ok_or_else(|| format!("'{text}': write the allowance as +20%"))?
                        / 100.0
                }
                None => return Err(format!("unknown metric '{text}'")),
            };
            return Ok(Metric::LatencyP95 { relative });
        }
        if let Some(name) = text.strip_prefix("score:") {
            let name = name.trim();
            if name.is_empty() {
                return Err("score: needs an annotation name, as in score:helpfulness".into());
            }
            return Ok(Metric::Score {
                name: name.to_string(),
                margin: margin.unwrap_or(DEFAULT_SCORE_MARGIN),
            });
        }
        Err(format!(
            "unknown metric '{text}': use error_rate, latency_p95:+20% or score:NAME"
        ))
    }

    pub fn label(&self) -> String {
        match self {
            Metric::ErrorRate { .. } => "error_rate".into(),
            Metric::LatencyP95 { relative } => format!("latency_p95:+{:.0}%", relative * 100.0),
            Metric::Score { name, .. } => format!("score:{name}"),
        }
    }
}

/// How a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    /// Reached 100 % and moved the tag to the candidate.
    Completed,
    /// A metric was inferior: the candidate is no longer served.
    RolledBack,
    /// Stopped by hand, by `runner rollback`, or because its looks ran out inconclusive.
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::RolledBack => "rolled_back",
            Status::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "running" => Status::Running,
            "completed" => Status::Completed,
            "rolled_back" => Status::RolledBack,
            "stopped" => Status::Stopped,
            _ => return None,
        })
    }
}

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub prompt: String,
    pub tag: String,
    pub canary_tag: String,
    pub baseline_id: String,
    pub baseline: i64,
    pub candidate_id: String,
    pub candidate: i64,
    /// Percent of lookups served the candidate at each step.
    pub steps: Vec<u32>,
    /// Index into `steps`.
    pub step: usize,
    pub step_started_ms: i64,
    pub step_after: StepAfter,
    pub unit_header: Option<String>,
    pub metrics: Vec<Metric>,
    pub confidence: f64,
    /// Looks taken in the current step, and in the whole rollout.
    pub step_looks: u32,
    pub looks: u32,
    pub status: Status,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub actor: String,
    pub message: Option<String>,
    /// The last look's figures (JSON), for status and the web UI.
    pub last_look: Option<serde_json::Value>,
}

/// What a lookup under a rollout reads afresh: the parts of a rollout that change while it
/// runs and decide an arm (its status and step), and whether its tag still points at its
/// baseline (a tag moved by hand is served as it points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutNow {
    pub status: Status,
    pub step: usize,
    pub on_baseline: bool,
}

/// Which version a lookup gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    Baseline,
    Candidate,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Baseline => "baseline",
            Arm::Candidate => "candidate",
        }
    }
}

/// Buckets a share is counted in: a share of 5 % is 500 buckets of 10,000.
const BUCKETS: u64 = 10_000;

impl Rollout {
    /// The share of lookups the candidate gets now, in percent.
    pub fn share(&self) -> u32 {
        self.steps.get(self.step).copied().unwrap_or(0)
    }

    /// The looks planned over the whole rollout, and the confidence each spends: (1 − C) / K.
    pub fn planned_looks(&self) -> u32 {
        self.steps.len() as u32 * LOOKS_PER_STEP + EXTRA_LOOKS
    }

    pub fn alpha_per_look(&self) -> f64 {
        (1.0 - self.confidence) / f64::from(self.planned_looks())
    }

    /// The arm of a lookup: with a unit, the unit's fixed bucket (salted by the rollout's id,
    /// so raising the share only adds units); without one, `draw` (uniform in 0..10,000).
    pub fn arm(&self, unit: Option<&str>, draw: u64) -> Arm {
        let bucket = match unit {
            Some(unit) => bucket(&self.id, unit),
            None => draw % BUCKETS,
        };
        if bucket < u64::from(self.share()) * BUCKETS / 100 {
            Arm::Candidate
        } else {
            Arm::Baseline
        }
    }

    /// Whether the current step is the last: its end completes the rollout (moves the tag).
    pub fn at_last_step(&self) -> bool {
        self.step + 1 >= self.steps.len()
    }

    /// The version id an arm is served.
    pub fn version_of(&self, arm: Arm) -> &str {
        match arm {
            Arm::Candidate => &self.candidate_id,
            Arm::Baseline => &self.baseline_id,
        }
    }

    /// How far the current step has gone, from 0 to 1 (and past it), by time or by the
    /// candidate's spans in the step.
    pub fn progress(&self, now_ms: i64, candidate_spans: u64) -> f64 {
        match self.step_after {
            StepAfter::Millis(ms) => (now_ms - self.step_started_ms) as f64 / ms as f64,
            StepAfter::Requests(n) => candidate_spans as f64 / n as f64,
        }
    }

    /// Whether a look is due: one at every fifth of the step, and while a finished step stays
    /// inconclusive, one each further fifth.
    pub fn look_due(&self, progress: f64) -> bool {
        let reached = (progress * f64::from(LOOKS_PER_STEP)).floor();
        reached >= f64::from(self.step_looks + 1)
    }
}

/// A unit's bucket in a rollout: the first 8 bytes of sha256(rollout id, unit), mod 10,000.
pub fn bucket(salt: &str, unit: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update([0u8])
        .chain_update(unit.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// One arm's figures in a look.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmFigures {
    pub spans: u64,
    pub errors: u64,
    /// Latencies in milliseconds, any order.
    pub latencies: Vec<f64>,
    /// Per annotation name: the scores' moments.
    pub scores: std::collections::BTreeMap<String, Moments>,
}

/// What a look says of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The candidate is within the margin with the look's confidence.
    NonInferior,
    /// The candidate is beyond the margin with the look's confidence.
    Inferior,
    /// Neither yet (too few spans, or an interval across the margin).
    Inconclusive,
}

/// One metric at one look: candidate − baseline (worse is positive), its interval at the
/// look's level, the margin, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricLook {
    pub metric: String,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    /// How much worse the candidate is (positive: worse).
    pub worse_by: Option<f64>,
    pub interval: Option<[f64; 2]>,
    pub margin: f64,
    pub baseline_spans: u64,
    pub candidate_spans: u64,
    pub verdict: Verdict,
    pub method: &'static str,
}

/// What a look decides for the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Keep serving this step.
    Hold,
    /// Every metric non-inferior at the step's end: go to the next step.
    Advance,
    /// The last step passed: move the tag to the candidate.
    Complete,
    /// A metric is inferior: stop serving the candidate.
    RollBack,
    /// The looks ran out with the evidence still inconclusive: stop serving the candidate.
    Exhausted,
}

/// A look: every metric's check and the decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Look {
    pub step: usize,
    pub share: u32,
    pub look: u32,
    pub alpha: f64,
    pub metrics: Vec<MetricLook>,
    pub decision: Decision,
}

/// Takes a look: each metric checked at level 1 − 2α (α = the rollout's alpha per look, each
/// side of the interval), then the decision: roll back as soon as any metric is inferior;
/// advance (or complete) at the step's end when every metric is non-inferior; stop when the
/// planned looks are spent.
pub fn look(
    rollout: &Rollout,
    baseline: &ArmFigures,
    candidate: &ArmFigures,
    progress: f64,
) -> Look {
    let alpha = rollout.alpha_per_look();
    let confidence = 1.0 - 2.0 * alpha;
    let metrics: Vec<MetricLook> = rollout
        .metrics
        .iter()
        .map(|m| check(m, baseline, candidate, confidence))
        .collect();
    let step_done = progress >= 1.0;
    let decision = if metrics.iter().any(|m| m.verdict == Verdict::Inferior) {
        Decision::RollBack
    } else if step_done && metrics.iter().all(|m| m.verdict == Verdict::NonInferior) {
        if rollout.at_last_step() {
            Decision::Complete
        } else {
            Decision::Advance
        }
    } else if rollout.looks + 1 >= rollout.planned_looks() {
        Decision::Exhausted
    } else {
        Decision::Hold
    };
    Look {
        step: rollout.step,
        share: rollout.share(),
        look: rollout.looks + 1,
        alpha,
        metrics,
        decision,
    }
}

fn verdict(interval: [f64; 2], margin: f64) -> Verdict {
    if interval[1] <= margin {
        Verdict::NonInferior
    } else if interval[0] > margin {
        Verdict::Inferior
    } else {
        Verdict::Inconclusive
    }
}

fn check(metric: &Metric, b: &ArmFigures, c: &ArmFigures, confidence: f64) -> MetricLook {
    let enough = b.spans >= MIN_SPANS && c.spans >= MIN_SPANS;
    let mut out = MetricLook {
        metric: metric.label(),
        baseline: None,
        candidate: None,
        worse_by: None,
        interval: None,
        margin: 0.0,
        baseline_spans: b.spans,
        candidate_spans: c.spans,
        verdict: Verdict::Inconclusive,
        method: "",
    };
    match metric {
        Metric::ErrorRate { margin } => {
            out.margin = *margin;
            out.method = "difference of error rates, Newcombe's interval";
            if let Some(u) = stats::two_proportion(
                b.errors as f64,
                b.spans as f64,
                c.errors as f64,
                c.spans as f64,
                confidence,
            ) {
                out.baseline = Some(u.baseline);
                out.candidate = Some(u.candidate);
                out.worse_by = Some(u.difference);
                out.interval = Some(u.ci);
            }
        }
        Metric::LatencyP95 { relative } => {
            out.margin = 0.05;
            out.method = "share over (1 + allowance) × the baseline's p95, Newcombe's interval";
            if !b.latencies.is_empty() && !c.latencies.is_empty() {
                let mut sorted = b.latencies.clone();
                sorted.sort_by(f64::total_cmp);
                let n = sorted.len();
                let p95 = sorted[((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1];
                let threshold = p95 * (1.0 + relative);
                let over = |l: &[f64]| l.iter().filter(|x| **x > threshold).count() as f64;
                if let Some(u) = stats::two_proportion(
                    over(&b.latencies),
                    b.latencies.len() as f64,
                    over(&c.latencies),
                    c.latencies.len() as f64,
                    confidence,
                ) {
                    out.baseline = Some(u.baseline);
                    out.candidate = Some(u.candidate);
                    out.worse_by = Some(u.difference);
                    out.interval = Some(u.ci);
                }
            }
        }
        Metric::Score { name, margin } => {
            out.margin = *margin;
            out.method = "difference of mean scores, Welch's interval";
            let empty = Moments::default();
            let bs = b.scores.get(name).unwrap_or(&empty);
            let cs = c.scores.get(name).unwrap_or(&empty);
            if let Some(u) = stats::welch(bs, cs, confidence) {
                // Worse is lower for a score.
                out.baseline = Some(u.baseline);
                out.candidate = Some(u.candidate);
                out.worse_by = Some(-u.difference);
                out.interval = Some([-u.ci[1], -u.ci[0]]);
            }
            let scored = bs.count() >= MIN_SPANS && cs.count() >= MIN_SPANS;
            if !scored {
                return out;
            }
        }
    }
    if let Some(interval) = out.interval {
        out.verdict = verdict(interval, out.margin);
        // Too few spans may roll back a clearly worse candidate, never pass one.
        if !enough && out.verdict == Verdict::NonInferior {
            out.verdict = Verdict::Inconclusive;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(metrics: Vec<Metric>) -> Rollout {
        Rollout {
            id: "ro_test".into(),
            prompt: "p".into(),
            tag: "production".into(),
            canary_tag: "canary".into(),
            baseline_id: "b".into(),
            baseline: 1,
            candidate_id: "c".into(),
            candidate: 2,
            steps: DEFAULT_STEPS.to_vec(),
            step: 0,
            step_started_ms: 0,
            step_after: StepAfter::Requests(500),
            unit_header: Some("X-Runner-Unit".into()),
            metrics,
            confidence: 0.95,
            step_looks: 0,
            looks: 0,
            status: Status::Running,
            created_ms: 0,
            updated_ms: 0,
            actor: "t".into(),
            message: None,
            last_look: None,
        }
    }

    #[test]
    fn flags_parse_and_bad_ones_say_why() {
        assert_eq!(StepAfter::parse("30m"), Ok(StepAfter::Millis(1_800_000)));
        assert_eq!(
            StepAfter::parse("500 requests"),
            Ok(StepAfter::Requests(500))
        );
        assert!(StepAfter::parse("soon").is_err());
        assert!(StepAfter::parse("0 requests").is_err());
        assert_eq!(
            Metric::parse("latency_p95:+20%", None),
            Ok(Metric::LatencyP95 { relative: 0.2 })
        );
        assert_eq!(
            Metric::parse("error_rate", Some(0.02)),
            Ok(Metric::ErrorRate { margin: 0.02 })
        );
        assert_eq!(
            Metric::parse("score:helpful", None),
            Ok(Metric::Score {
                name: "helpful".into(),
                margin: DEFAULT_SCORE_MARGIN
            })
        );
        assert!(Metric::parse("latency_p95:20", None).is_err());
        assert!(Metric::parse("cost", None).is_err());
    }

    #[test]
    fn units_keep_their_arm_as_the_share_grows() {
        let mut r = rollout(vec![]);
        let units: Vec<String> = (0..2_000).map(|i| format!("user-{i}")).collect();
        let mut previous: Vec<Arm> = units.iter().map(|u| r.arm(Some(u), 0)).collect();
        let share = |arms: &[Arm]| arms.iter().filter(|a| **a == Arm::Candidate).count();
        assert!(
            (60..=140).contains(&share(&previous)),
            "{}",
            share(&previous)
        );
        for step in 1..r.steps.len() {
            r.step = step;
            let now: Vec<Arm> = units.iter().map(|u| r.arm(Some(u), 0)).collect();
            for (before, after) in previous.iter().zip(&now) {
                assert!(
                    !(*before == Arm::Candidate && *after == Arm::Baseline),
                    "a unit never moves back"
                );
            }
            previous = now;
        }
        assert_eq!(
            share(&previous),
            2_000,
            "at 100 % every unit has the candidate"
        );
        // Another rollout salts the buckets differently.
        let other = Rollout {
            id: "ro_other".into(),
            step: 0,
            ..r.clone()
        };
        let mine = Rollout { step: 0, ..r };
        let differ = units
            .iter()
            .filter(|u| mine.arm(Some(u), 0) != other.arm(Some(u), 0))
            .count();
        assert!(differ > 50, "{differ}");
        // Without a unit, the draw decides.
        assert_eq!(mine.arm(None, 499), Arm::Candidate);
        assert_eq!(mine.arm(None, 500), Arm::Baseline);
    }

    /// One arm's figures: `n` spans at error rate `p`, latency around `ms`.
    fn arm(n: u64, p: f64, ms: f64, rng: &mut fastrand::Rng) -> ArmFigures {
        let mut f = ArmFigures {
            spans: n,
            ..ArmFigures::default()
        };
        for _ in 0..n {
            f.errors += u64::from(rng.f64() < p);
            f.latencies.push(ms * (0.5 + rng.f64()));
        }
        f
    }

    /// Runs a whole rollout of `looks_per_step` looks per step, `per_look` spans per arm per
    /// look; returns whether it rolled back.
    fn simulate(
        metrics: &[Metric],
        (p_base, p_cand): (f64, f64),
        (ms_base, ms_cand): (f64, f64),
        per_look: u64,
        rng: &mut fastrand::Rng,
    ) -> bool {
        let mut r = rollout(metrics.to_vec());
        let (mut b, mut c) = (ArmFigures::default(), ArmFigures::default());
        while r.status == Status::Running {
            let more_b = arm(per_look, p_base, ms_base, rng);
            let more_c = arm(per_look, p_cand, ms_cand, rng);
            for (into, from) in [(&mut b, more_b), (&mut c, more_c)] {
                into.spans += from.spans;
                into.errors += from.errors;
                into.latencies.extend(from.latencies);
            }
            let progress = f64::from(r.step_looks + 1) / f64::from(LOOKS_PER_STEP);
            let decision = look(&r, &b, &c, progress).decision;
            r.looks += 1;
            r.step_looks += 1;
            match decision {
                Decision::RollBack => return true,
                Decision::Complete => r.status = Status::Completed,
                Decision::Exhausted => r.status = Status::Stopped,
                Decision::Advance => {
                    r.step += 1;
                    r.step_looks = 0;
                    b = ArmFigures::default();
                    c = ArmFigures::default();
                }
                Decision::Hold => {}
            }
        }
        false
    }

    #[test]
    fn under_no_difference_wrong_rollbacks_stay_within_one_minus_the_confidence() {
        let mut rng = fastrand::Rng::with_seed(7);
        let errors = [Metric::ErrorRate {
            margin: DEFAULT_ERROR_MARGIN,
        }];
        let runs = 400;
        let rate = |wrong: usize| wrong as f64 / runs as f64;
        // At the margin's edge (the candidate worse by exactly the margin), the hardest case,
        // and with no difference at all: each over a whole rollout of up to 30 looks.
        let at_edge = (0..runs)
            .filter(|_| simulate(&errors, (0.05, 0.06), (400.0, 400.0), 400, &mut rng))
            .count();
        assert!(
            rate(at_edge) <= 0.05,
            "false rollbacks at the margin: {at_edge}"
        );
        let equal = (0..runs)
            .filter(|_| simulate(&errors, (0.05, 0.05), (400.0, 400.0), 400, &mut rng))
            .count();
        assert!(rate(equal) <= 0.05, "false rollbacks: {equal}");
        // The latency check under no difference, on fewer runs (it sorts every look).
        let latency = [Metric::LatencyP95 {
            relative: DEFAULT_LATENCY_MARGIN,
        }];
        let wrong = (0..100)
            .filter(|_| simulate(&latency, (0.0, 0.0), (400.0, 400.0), 100, &mut rng))
            .count();
        assert!(wrong <= 5, "false latency rollbacks: {wrong} of 100");
        // And a clearly worse candidate is caught.
        let caught = (0..100)
            .filter(|_| simulate(&errors, (0.02, 0.12), (400.0, 400.0), 200, &mut rng))
            .count();
        assert!(caught >= 95, "caught {caught} of 100");
        let slow = (0..50)
            .filter(|_| simulate(&latency, (0.0, 0.0), (400.0, 800.0), 100, &mut rng))
            .count();
        assert!(slow >= 48, "caught {slow} of 50 twice-as-slow candidates");
        eprintln!(
            "wrong rollbacks: {at_edge}/{runs} at the margin, {equal}/{runs} with no difference, \
             {wrong}/100 on latency; caught {caught}/100 worse and {slow}/50 slower candidates"
        );
    }

    #[test]
    fn a_step_advances_only_when_every_metric_passes_at_its_end() {
        let mut rng = fastrand::Rng::with_seed(3);
        let r = rollout(vec![Metric::ErrorRate { margin: 0.05 }]);
        let b = arm(3_000, 0.02, 300.0, &mut rng);
        let c = arm(3_000, 0.02, 300.0, &mut rng);
        assert_eq!(look(&r, &b, &c, 0.4).decision, Decision::Hold);
        assert_eq!(look(&r, &b, &c, 1.0).decision, Decision::Advance);
        let last = Rollout {
            step: 3,
            ..r.clone()
        };
        assert_eq!(look(&last, &b, &c, 1.0).decision, Decision::Complete);
        // Too few spans never pass a metric.
        let few_b = arm(10, 0.0, 300.0, &mut rng);
        let few_c = arm(10, 0.0, 300.0, &mut rng);
        let l = look(&r, &few_b, &few_c, 1.0);
        assert_eq!(l.metrics[0].verdict, Verdict::Inconclusive);
        assert_eq!(l.decision, Decision::Hold);
        // A score metric reads the annotations' means; lower is worse.
        let s = rollout(vec![Metric::Score {
            name: "helpful".into(),
            margin: 0.05,
        }]);
        let (mut b, mut c) = (b.clone(), c.clone());
        for i in 0..400 {
            b.scores
                .entry("helpful".into())
                .or_default()
                .push(f64::from(i % 2));
            c.scores
                .entry("helpful".into())
                .or_default()
                .push(f64::from(u8::from(i % 5 == 0)));
        }
        let l = look(&s, &b, &c, 0.2);
        assert_eq!(l.metrics[0].verdict, Verdict::Inferior, "{l:?}");
        assert_eq!(l.decision, Decision::RollBack);
        assert!(l.metrics[0].worse_by.unwrap() > 0.25);
    }
}
