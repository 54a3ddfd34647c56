//! How each version behaves in production, from its spans and their annotations: requests,
//! errors with Wilson's interval, latency percentiles, tokens and cost, each annotation name's
//! mean score and pass share with intervals, first and last seen, the applications that sent
//! it; a series over time with the tag moves beside it; and the unpaired comparison of two
//! versions' traffic (two-proportion z-test for rates, Welch's t-test for means).
//!
//! Pure: functions of the spans, annotations, tags and history they are handed. It must not
//! open the store or read a clock; the caller says what the window is.

use crate::cost::Prices;
use crate::model::{TagEvent, format_time};
use crate::stats::{self, Moments, Unpaired};
use crate::trace::{Annotation, LookupKey, ScoredSpan, Span, SpanStatus};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Labels that count as a pass when an annotation has no score (compared without case).
pub const PASS_LABELS: [&str; 10] = [
    "pass",
    "passed",
    "correct",
    "good",
    "yes",
    "true",
    "up",
    "thumbs_up",
    "positive",
    "helpful",
];
/// Labels that count as a fail when an annotation has no score.
pub const FAIL_LABELS: [&str; 10] = [
    "fail",
    "failed",
    "incorrect",
    "bad",
    "no",
    "false",
    "down",
    "thumbs_down",
    "negative",
    "unhelpful",
];

/// Whether an annotation passes: a score of at least 0.5, or else a pass or fail label; None
/// when it says neither (it then counts in the mean only).
pub fn passes(annotation: &Annotation) -> Option<bool> {
    if let Some(score) = annotation.score {
        return Some(score >= 0.5);
    }
    let label = annotation.label.as_deref()?.trim().to_ascii_lowercase();
    if PASS_LABELS.contains(&label.as_str()) {
        Some(true)
    } else if FAIL_LABELS.contains(&label.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// One annotation name's figures for one version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreSummary {
    pub name: String,
    /// Annotations of this name on the version's spans.
    pub count: u64,
    /// Mean of the scores given (None when none has a score).
    pub mean: Option<f64>,
    pub mean_interval: Option<[f64; 2]>,
    /// Annotations that pass (see `passes`) out of those that say pass or fail.
    pub passed: u64,
    pub judged: u64,
    pub pass_rate: Option<f64>,
    pub pass_rate_interval: Option<[f64; 2]>,
    /// How often each label was given.
    pub labels: BTreeMap<String, u64>,
}

/// Requests from one application (service name and token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Application {
    pub service: Option<String>,
    pub sender: Option<String>,
    pub requests: u64,
}

/// One version's production traffic in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionTraffic {
    pub version: i64,
    pub version_id: String,
    /// The tags on the version now.
    pub tags: Vec<String>,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub error_rate_interval: [f64; 2],
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// None when no span's model has a price.
    pub cost_usd: Option<f64>,
    pub scores: Vec<ScoreSummary>,
    pub first_seen: String,
    pub last_seen: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub applications: Vec<Application>,
}

/// One bucket of one version in the series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub start: String,
    pub start_ms: i64,
    pub version: i64,
    pub requests: u64,
    pub errors: u64,
    /// Mean score per annotation name in the bucket.
    pub scores: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub bucket_ms: i64,
    pub points: Vec<Point>,
}

/// A tag move in the window, for the time axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagMove {
    pub tag: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub at: String,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
}

/// Which version one application fetched through one tag, and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fetches {
    pub sender: String,
    pub user_agent: String,
    pub tag: String,
    pub version: Option<i64>,
    pub version_id: String,
    pub first: String,
    pub last: String,
    pub count: i64,
}

/// Everything `runner production` shows for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Production {
    pub prompt: String,
    pub since: String,
    pub until: String,
    pub since_ms: i64,
    pub until_ms: i64,
    /// LLM spans in the window that named no version runner knows.
    pub unlinked_spans: i64,
    pub versions: Vec<VersionTraffic>,
    pub series: Series,
    pub tag_moves: Vec<TagMove>,
    pub lookups: Vec<Fetches>,
}

/// Accumulates spans and annotations, then sums them up.
#[derive(Default)]
pub struct Tally {
    versions: BTreeMap<String, Acc>,
    /// span id → (version id, bucket start) for placing annotations.
    spans: HashMap<String, (String, i64)>,
    buckets: BTreeMap<(i64, String), Bucket>,
    bucket_ms: i64,
}

#[derive(Default)]
struct Acc {
    number: i64,
    requests: u64,
    errors: u64,
    latencies: Vec<f64>,
    input_tokens: i64,
    output_tokens: i64,
    by_model: BTreeMap<String, (i64, i64)>,
    first_ms: i64,
    last_ms: i64,
    apps: BTreeMap<(Option<String>, Option<String>), u64>,
    scores: BTreeMap<String, ScoreAcc>,
}

#[derive(Default)]
struct ScoreAcc {
    count: u64,
    moments: Moments,
    passed: u64,
    judged: u64,
    labels: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Bucket {
    requests: u64,
    errors: u64,
    scores: BTreeMap<String, Moments>,
}

/// The series' bucket for a window: the smallest of 1 min, 5 min, 15 min, 1 h, 6 h, 1 day
/// that keeps the series at 120 buckets or fewer.
pub fn bucket_for(since_ms: i64, until_ms: i64) -> i64 {
    const MINUTE: i64 = 60_000;
    let span = (until_ms - since_ms).max(MINUTE);
    [1, 5, 15, 60, 360, 1_440]
        .into_iter()
        .map(|m| m * MINUTE)
        .find(|b| span / b <= 120)
        .unwrap_or(1_440 * MINUTE)
}

impl Tally {
    pub fn new(since_ms: i64, until_ms: i64) -> Tally {
        Tally {
            bucket_ms: bucket_for(since_ms, until_ms),
            ..Tally::default()
        }
    }

    /// Counts one span; spans that are not linked LLM calls are left out.
    pub fn span(&mut self, span: &Span) {
        let Some(link) = &span.link else { return };
        if !span.is_llm() {
            return;
        }
        let acc = self.versions.entry(link.version_id.clone()).or_default();
        acc.number = link.version_number;
        acc.requests += 1;
        let error = span.status == SpanStatus::Error;
        acc.errors += u64::from(error);
        acc.latencies.push(span.latency_ms() as f64);
        acc.input_tokens += span.input_tokens.unwrap_or(0);
        acc.output_tokens += span.output_tokens.unwrap_or(0);
        if let Some(model) = &span.model {
            let entry = acc.by_model.entry(model.clone()).or_default();
            entry.0 += span.input_tokens.unwrap_or(0);
            entry.1 += span.output_tokens.unwrap_or(0);
        }
        if acc.requests == 1 || span.start_ms < acc.first_ms {
            acc.first_ms = span.start_ms;
        }
        acc.last_ms = acc.last_ms.max(span.start_ms);
        *acc.apps
            .entry((span.service.clone(), span.sender.clone()))
            .or_insert(0) += 1;
        let start = span.start_ms.div_euclid(self.bucket_ms) * self.bucket_ms;
        let bucket = self
            .buckets
            .entry((start, link.version_id.clone()))
            .or_default();
        bucket.requests += 1;
        bucket.errors += u64::from(error);
        self.spans
            .insert(span.span_id.clone(), (link.version_id.clone(), start));
    }

    /// Counts one annotation on a span already counted (others are left out: they score a
    /// span outside the window or not an LLM call).
    pub fn annotation(&mut self, scored: &ScoredSpan) {
        let Some((version, start)) = self.spans.get(&scored.span_id).cloned() else {
            return;
        };
        let a = &scored.annotation;
        let Some(acc) = self.versions.get_mut(&version) else {
            return;
        };
        let score = acc.scores.entry(a.name.clone()).or_default();
        score.count += 1;
        if let Some(value) = a.score {
            score.moments.push(value);
            if let Some(bucket) = self.buckets.get_mut(&(start, version.clone())) {
                bucket.scores.entry(a.name.clone()).or_default().push(value);
            }
        }
        if let Some(pass) = passes(a) {
            score.judged += 1;
            score.passed += u64::from(pass);
        }
        if let Some(label) = &a.label {
            *score.labels.entry(label.clone()).or_insert(0) += 1;
        }
    }

    /// The sums, newest version first.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        self,
        prompt: &str,
        window: (i64, i64),
        unlinked: i64,
        tags: &BTreeMap<String, Vec<String>>,
        history: &[TagEvent],
        lookups: &[(LookupKey, i64)],
        numbers: &HashMap<String, i64>,
        prices: &Prices,
        confidence: f64,
    ) -> Production {
        let mut versions: Vec<VersionTraffic> = self
            .versions
            .into_iter()
            .map(|(id, mut acc)| {
                acc.latencies.sort_by(f64::total_cmp);
                let percentile = |p: f64| {
                    let n = acc.latencies.len() as i64;
                    // Nearest rank, as experiments' percentiles are.
                    (n > 0).then(|| {
                        acc.latencies[(((p * n as f64).ceil() as i64).clamp(1, n) - 1) as usize]
                    })
                };
                let costs: Vec<Option<f64>> = acc
                    .by_model
                    .iter()
                    .map(|(model, (i, o))| prices.cost(model, *i, *o).map(|c| c.usd))
                    .collect();
                let cost_usd = if costs.is_empty() || costs.iter().all(Option::is_none) {
                    None
                } else {
                    Some(costs.into_iter().flatten().sum())
                };
                let requests = acc.requests as f64;
                VersionTraffic {
                    version: acc.number,
                    tags: tags.get(&id).cloned().unwrap_or_default(),
                    version_id: id,
                    requests: acc.requests,
                    errors: acc.errors,
                    error_rate: acc.errors as f64 / requests,
                    error_rate_interval: stats::wilson_interval(
                        acc.errors as f64,
                        requests,
                        confidence,
                    ),
                    latency_p50_ms: percentile(0.5),
                    latency_p95_ms: percentile(0.95),
                    input_tokens: acc.input_tokens,
                    output_tokens: acc.output_tokens,
                    cost_usd,
                    scores: acc
                        .scores
                        .into_iter()
                        .map(|(name, s)| summary(name, s, confidence))
                        .collect(),
                    first_seen: time_text(acc.first_ms),
                    last_seen: time_text(acc.last_ms),
                    first_seen_ms: acc.first_ms,
                    last_seen_ms: acc.last_ms,
                    applications: acc
                        .apps
                        .into_iter()
                        .map(|((service, sender), requests)| Application {
                            service,
                            sender,
                            requests,
                        })
                        .collect(),
                }
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        let number_of = |id: &str| {
            numbers.get(id).copied().or_else(|| {
                versions
                    .iter()
                    .find(|v| v.version_id == id)
                    .map(|v| v.version)
            })
        };
        let points = self
            .buckets
            .into_iter()
            .map(|((start, id), b)| Point {
                start: time_text(start),
                start_ms: start,
                version: number_of(&id).unwrap_or(0),
                requests: b.requests,
                errors: b.errors,
                scores: b
                    .scores
                    .into_iter()
                    .map(|(name, m)| (name, m.mean()))
                    .collect(),
            })
            .collect();
        let tag_moves = history
            .iter()
            .filter_map(|e| {
                let at_ms = parse_ms(&e.at)?;
                (at_ms >= window.0 && at_ms < window.1).then(|| TagMove {
                    tag: e.tag.clone(),
                    from_version: e.from_seq,
                    to_version: e.to_seq,
                    at: e.at.clone(),
                    at_ms,
                    actor: e.actor.clone(),
                    action: format!("{:?}", e.action).to_ascii_lowercase(),
                })
            })
            .collect();
        // (sender, user agent, tag, version id) → (first minute, last minute, count)
        type Key = (String, String, String, String);
        let mut fetches: BTreeMap<Key, (i64, i64, i64)> = BTreeMap::new();
        for (key, count) in lookups {
            let at = key.minute * 60_000;
            let entry = fetches
                .entry((
                    key.sender.clone(),
                    key.user_agent.clone(),
                    key.tag.clone(),
                    key.version_id.clone(),
                ))
                .or_insert((at, at, 0));
            entry.0 = entry.0.min(at);
            entry.1 = entry.1.max(at);
            entry.2 += count;
        }
        let mut lookups: Vec<Fetches> = fetches
            .into_iter()
            .map(
                |((sender, user_agent, tag, version_id), (first, last, count))| Fetches {
                    version: number_of(&version_id),
                    sender,
                    user_agent,
                    tag,
                    version_id,
                    first: time_text(first),
                    last: time_text(last + 59_999),
                    count,
                },
            )
            .collect();
        lookups.sort_by(|a, b| (&a.sender, &a.first).cmp(&(&b.sender, &b.first)));
        Production {
            prompt: prompt.to_string(),
            since: time_text(window.0),
            until: time_text(window.1),
            since_ms: window.0,
            until_ms: window.1,
            unlinked_spans: unlinked,
            versions,
            series: Series {
                bucket_ms: self.bucket_ms,
                points,
            },
            tag_moves,
            lookups,
        }
    }
}

fn summary(name: String, s: ScoreAcc, confidence: f64) -> ScoreSummary {
    let n = s.moments.count();
    let mean = (n > 0).then(|| s.moments.mean());
    let mean_interval = s.moments.variance().filter(|_| n > 1).map(|v| {
        let se = (v / n as f64).sqrt();
        let t = stats::t_critical(confidence, n as f64 - 1.0);
        let m = s.moments.mean();
        [m - t * se, m + t * se]
    });
    ScoreSummary {
        name,
        count: s.count,
        mean,
        mean_interval,
        passed: s.passed,
        judged: s.judged,
        pass_rate: (s.judged > 0).then(|| s.passed as f64 / s.judged as f64),
        pass_rate_interval: (s.judged > 0)
            .then(|| stats::wilson_interval(s.passed as f64, s.judged as f64, confidence)),
        labels: s.labels,
    }
}

/// Milliseconds since the epoch as stored times are written.
pub fn time_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(format_time)
        .unwrap_or_default()
}

/// A stored time (RFC 3339) as milliseconds since the epoch.
pub fn parse_ms(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Two versions' production traffic set beside their experiments (`runner compare
/// --production`): None for a side with no traffic in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Beside {
    pub since: String,
    pub until: String,
    pub baseline: Option<VersionTraffic>,
    pub candidate: Option<VersionTraffic>,
}

/// Two versions' production traffic compared, unpaired: error rate and each annotation's pass
/// share by the two-proportion z-test, latency and each annotation's mean score by Welch's
/// t-test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficComparison {
    pub prompt: String,
    pub baseline: i64,
    pub candidate: i64,
    pub baseline_requests: u64,
    pub candidate_requests: u64,
    pub error_rate: Option<Unpaired>,
    pub latency_ms: Option<Unpaired>,
    pub scores: Vec<ScoreComparison>,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreComparison {
    pub name: String,
    pub mean: Option<Unpaired>,
    pub pass_rate: Option<Unpaired>,
}

/// What two versions' samples hold, for `compare_traffic`.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    pub requests: u64,
    pub errors: u64,
    pub latency: Moments,
    /// Per annotation name: the scores' moments, passes and judged.
    pub scores: BTreeMap<String, (Moments, u64, u64)>,
    spans: HashMap<String, ()>,
}

impl Sample {
    pub fn span(&mut self, span: &Span) {
        if span.link.is_none() || !span.is_llm() {
            return;
        }
        self.requests += 1;
        self.errors += u64::from(span.status == SpanStatus::Error);
        self.latency.push(span.latency_ms() as f64);
        self.spans.insert(span.span_id.clone(), ());
    }

    pub fn annotation(&mut self, scored: &ScoredSpan) {
        if !self.spans.contains_key(&scored.span_id) {
            return;
        }
        let a = &scored.annotation;
        let entry = self.scores.entry(a.name.clone()).or_default();
        if let Some(score) = a.score {
            entry.0.push(score);
        }
        if let Some(pass) = passes(a) {
            entry.1 += u64::from(pass);
            entry.2 += 1;
        }
    }
}

pub fn compare_traffic(
    prompt: &str,
    (baseline_number, baseline): (i64, &Sample),
    (candidate_number, candidate): (i64, &Sample),
    confidence: f64,
) -> TrafficComparison {
    let names: std::collections::BTreeSet<&String> = baseline
        .scores
        .keys()
        .chain(candidate.scores.keys())
        .collect();
    let scores = names
        .into_iter()
        .map(|name| {
            let empty = (Moments::default(), 0, 0);
            let b = baseline.scores.get(name).unwrap_or(&empty);
            let c = candidate.scores.get(name).unwrap_or(&empty);
            ScoreComparison {
                name: name.clone(),
                mean: stats::welch(&b.0, &c.0, confidence),
                pass_rate: stats::two_proportion(
                    b.1 as f64, b.2 as f64, c.1 as f64, c.2 as f64, confidence,
                ),
            }
        })
        .collect();
    TrafficComparison {
        prompt: prompt.to_string(),
        baseline: baseline_number,
        candidate: candidate_number,
        baseline_requests: baseline.requests,
        candidate_requests: candidate.requests,
        error_rate: stats::two_proportion(
            baseline.errors as f64,
            baseline.requests as f64,
            candidate.errors as f64,
            candidate.requests as f64,
            confidence,
        ),
        latency_ms: stats::welch(&baseline.latency, &candidate.latency, confidence),
        scores,
        confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Link, Target};

    fn span(id: u32, version: i64, start_ms: i64, error: bool, latency: i64) -> Span {
        Span {
            trace_id: format!("{id:032x}"),
            span_id: format!("{id:016x}"),
            parent_id: None,
            project: "default".into(),
            experiment: false,
            service: Some("app".into()),
            sender: Some("api:app".into()),
            name: "llm".into(),
            kind: Some("LLM".into()),
            start_ms,
            end_ms: start_ms + latency,
            status: if error {
                SpanStatus::Error
            } else {
                SpanStatus::Ok
            },
            error: None,
            link: Some(Link {
                prompt: "p".into(),
                version_id: format!("v{version}"),
                version_number: version,
                tag: None,
                source: "runner",
            }),
            model: Some("gpt-4o-mini".into()),
            input_tokens: Some(100),
            output_tokens: Some(10),
            variables: None,
            input: None,
            output: None,
            attributes: "{}".into(),
        }
    }

    fn scored(id: u32, name: &str, score: Option<f64>, label: Option<&str>) -> ScoredSpan {
        ScoredSpan {
            span_id: format!("{id:016x}"),
            version_id: None,
            annotation: Annotation {
                target: Target::Span,
                target_id: format!("{id:016x}"),
                name: name.into(),
                annotator_kind: "HUMAN".into(),
                label: label.map(str::to_string),
                score,
                explanation: None,
                metadata: "{}".into(),
                identifier: String::new(),
                source: "api".into(),
                time_ms: 0,
            },
        }
    }

    #[test]
    fn versions_sum_their_traffic_with_intervals() {
        let mut tally = Tally::new(0, 3_600_000);
        for i in 0..20 {
            tally.span(&span(
                i,
                1,
                i64::from(i) * 60_000,
                i < 2,
                100 + i64::from(i),
            ));
        }
        for i in 20..30 {
            tally.span(&span(i, 2, 1_800_000 + i64::from(i), i < 25, 300));
        }
        let mut unlinked = span(99, 1, 0, false, 1);
        unlinked.link = None;
        tally.span(&unlinked);
        tally.annotation(&scored(0, "helpful", Some(1.0), Some("good")));
        tally.annotation(&scored(1, "helpful", Some(0.0), Some("bad")));
        tally.annotation(&scored(2, "thumbs", None, Some("down")));
        tally.annotation(&scored(99, "helpful", Some(1.0), None));
        let tags = BTreeMap::from([("v2".to_string(), vec!["production".to_string()])]);
        let out = tally.finish(
            "p",
            (0, 3_600_000),
            1,
            &tags,
            &[],
            &[],
            &HashMap::new(),
            &Prices::default(),
            0.95,
        );
        assert_eq!(out.versions.len(), 2);
        let (v2, v1) = (&out.versions[0], &out.versions[1]);
        assert_eq!((v2.version, v2.requests, v2.errors), (2, 10, 5));
        assert_eq!(v2.tags, ["production"]);
        assert_eq!((v1.version, v1.requests, v1.errors), (1, 20, 2));
        assert_eq!(v1.error_rate, 0.1);
        let [lo, hi] = v1.error_rate_interval;
        assert!(lo > 0.0 && lo < 0.1 && hi > 0.1 && hi < 0.4, "{lo} {hi}");
        assert_eq!(v1.latency_p50_ms, Some(109.0));
        assert_eq!(v1.latency_p95_ms, Some(118.0));
        assert_eq!((v1.input_tokens, v1.output_tokens), (2_000, 200));
        assert!(v1.cost_usd.is_some_and(|c| c > 0.0));
        assert_eq!(v1.first_seen_ms, 0);
        assert_eq!(v1.last_seen_ms, 19 * 60_000);
        let helpful = &v1.scores[0];
        assert_eq!(helpful.name, "helpful");
        assert_eq!((helpful.count, helpful.mean), (2, Some(0.5)));
        assert_eq!((helpful.passed, helpful.judged), (1, 2));
        let thumbs = &v1.scores[1];
        assert_eq!(
            (thumbs.count, thumbs.mean, thumbs.passed, thumbs.judged),
            (1, None, 0, 1)
        );
        assert_eq!(out.series.bucket_ms, 60_000);
        assert_eq!(out.series.points.len(), 21);
        assert_eq!(out.series.points[0].scores["helpful"], 1.0);
        assert_eq!(out.unlinked_spans, 1);
    }

    #[test]
    fn buckets_keep_the_series_short() {
        assert_eq!(bucket_for(0, 3_600_000), 60_000);
        assert_eq!(bucket_for(0, 24 * 3_600_000), 15 * 60_000);
        assert_eq!(bucket_for(0, 30 * 24 * 3_600_000), 360 * 60_000);
    }

    #[test]
    fn labels_without_scores_pass_or_fail_by_name() {
        let a = |score: Option<f64>, label: Option<&str>| scored(1, "x", score, label).annotation;
        assert_eq!(passes(&a(Some(0.5), Some("bad"))), Some(true));
        assert_eq!(passes(&a(Some(0.49), None)), Some(false));
        assert_eq!(passes(&a(None, Some("Thumbs_Up"))), Some(true));
        assert_eq!(passes(&a(None, Some("incorrect"))), Some(false));
        assert_eq!(passes(&a(None, Some("neutral"))), None);
    }

    #[test]
    fn two_versions_compare_unpaired_with_the_test_named() {
        let (mut b, mut c) = (Sample::default(), Sample::default());
        for i in 0..200 {
            b.span(&span(i, 1, 0, i % 10 == 0, 100 + i64::from(i % 7)));
        }
        for i in 200..400 {
            c.span(&span(i, 2, 0, i % 4 == 0, 150 + i64::from(i % 7)));
        }
        let out = compare_traffic("p", (1, &b), (2, &c), 0.95);
        let errors = out.error_rate.unwrap();
        assert_eq!(errors.test, "two-proportion z-test");
        assert!((errors.difference - 0.15).abs() < 1e-9);
        assert!(errors.p_value < 0.001 && errors.ci[0] > 0.0);
        let latency = out.latency_ms.unwrap();
        assert_eq!(latency.test, "Welch's t-test");
        assert!((latency.difference - 50.0).abs() < 1.0 && latency.p_value < 1e-6);
    }
}
