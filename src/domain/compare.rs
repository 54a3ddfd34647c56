//! Comparison: a pure function from two experiments' row outcomes to metrics side by side,
//! per-evaluator deltas, and the rows that regressed, improved, or exist on one side only.

use crate::model::{Experiment, RowOutcome};
use crate::stats::{self, Estimate, PairedTest, Sample};
use serde::Serialize;
use std::collections::HashMap;

/// How a comparison's statistics are computed: the confidence level of its intervals, and the
/// dataset column whose shared values make rows dependent (clustered standard errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    pub confidence: f64,
    pub cluster_column: Option<String>,
}

impl Default for Inference {
    fn default() -> Inference {
        Inference {
            confidence: stats::DEFAULT_CONFIDENCE,
            cluster_column: None,
        }
    }
}

/// One evaluator's figures on one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalMetric {
    pub evaluator: String,
    /// Share of rows that pass (a row passes when it passes in a majority of its repetitions;
    /// an errored call is a failure).
    pub pass_rate: f64,
    pub mean_score: f64,
    /// The pass rate's standard error over rows (clustered with a cluster column), and its
    /// interval at the comparison's confidence; None below two rows, and for the error when
    /// every row agrees (`pass_rate_se_note` says so; the interval is still there).
    pub pass_rate_se: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_rate_se_note: Option<&'static str>,
    pub pass_rate_ci: Option<[f64; 2]>,
    /// The same for the mean score (a row's score is the mean over its repetitions).
    pub mean_score_se: Option<f64>,
    pub mean_score_ci: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_score_se_note: Option<&'static str>,
}

/// A paired difference candidate − baseline over the rows both sides have (matched by id):
/// the mean of the per-row differences, its standard error, interval and p-value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Rows on both sides.
    pub rows: u64,
    /// Clusters, when the errors are clustered.
    pub clusters: Option<usize>,
    pub estimate: f64,
    /// 0 when every row agrees: serialized as null, with `se_note` saying why.
    #[serde(serialize_with = "stats::se_or_null")]
    pub se: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_note: Option<&'static str>,
    /// The interval at the comparison's confidence: for a pass-rate difference of rows taken
    /// as independent, Agresti and Min's; otherwise Student's t with `df` degrees of freedom.
    pub ci: [f64; 2],
    pub df: f64,
    pub p_value: f64,
    /// The test behind `p_value`: McNemar's exact test, a paired t-test, or a t-test on
    /// clustered errors.
    pub test: String,
    /// The smallest true difference this many rows detect with 80% power at this confidence.
    pub minimum_detectable_effect: f64,
    /// The standard error the same figures would have if the rows were not paired (from each
    /// side's own error): how much pairing helped.
    pub unpaired_se: Option<f64>,
}

impl Difference {
    fn of(paired: stats::Paired, unpaired_se: Option<f64>) -> Difference {
        Difference {
            rows: paired.rows,
            clusters: paired.se.clusters,
            estimate: paired.estimate,
            se: paired.se.se,
            se_note: stats::se_note(paired.se.se),
            ci: paired.ci,
            df: paired.se.df,
            p_value: paired.p_value,
            test: paired.test,
            minimum_detectable_effect: paired.mde,
            unpaired_se: unpaired_se.filter(|se| *se > 0.0),
        }
    }

    /// Rows needed for the minimum detectable effect to come down to `detect`.
    pub fn rows_needed(&self, detect: f64) -> Option<u64> {
        stats::rows_needed(self.rows as usize, self.minimum_detectable_effect, detect)
    }
}

/// The figures of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideMetrics {
    pub experiment: String,
    pub label: String,
    /// The sha256 of the dataset content the experiment ran on.
    pub dataset_hash: String,
    pub rows: usize,
    pub results: usize,
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// The model the experiment called, whose price turns its tokens into dollars.
    pub model: String,
    /// runner's mock answered it: its cost is 0 whatever the model's price.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mock: bool,
    /// What its tokens cost at the prices in force (see `Comparison::price`); null when no
    /// price names the model.
    pub cost_usd: Option<f64>,
    /// The same per result (row × repetition): the figure sides of different sizes share.
    pub cost_per_row_usd: Option<f64>,
    pub evaluators: Vec<EvalMetric>,
}

/// What one evaluator made of one row on one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowSide {
    pub passed: bool,
    pub score: f64,
    /// Share of repetitions agreeing with the majority (1.0 without repetitions).
    pub agreement: f64,
    pub output: String,
}

/// A row whose verdict changed between the sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowChange {
    pub row_id: String,
    pub evaluator: String,
    pub input: String,
    pub baseline: RowSide,
    pub candidate: RowSide,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalDelta {
    pub evaluator: String,
    pub baseline_pass_rate: Option<f64>,
    pub candidate_pass_rate: f64,
    /// candidate − baseline.
    pub delta: Option<f64>,
    pub baseline_mean_score: Option<f64>,
    pub candidate_mean_score: f64,
    pub improved: usize,
    pub regressed: usize,
    pub unchanged: usize,
    /// The paired difference of the pass rates (a row's verdict is its majority over
    /// repetitions); None without a baseline or below two shared rows.
    pub pass_rate_difference: Option<Difference>,
    /// The paired difference of the mean scores (a row's score is its mean over repetitions).
    pub mean_score_difference: Option<Difference>,
}

/// A row whose repetitions disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlakyRow {
    pub row_id: String,
    pub evaluator: String,
    pub side: String,
    pub agreement: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The confidence level of every interval in the comparison.
    pub confidence: f64,
    /// The power the minimum detectable effects are computed for.
    pub power: f64,
    /// The dataset column the standard errors are clustered on.
    pub cluster_column: Option<String>,
    pub baseline: Option<SideMetrics>,
    pub candidate: SideMetrics,
    pub evaluators: Vec<EvalDelta>,
    /// Regressed (row, evaluator) pairs, in row order: the first ones, with their details.
    pub regressed: Vec<RowChange>,
    /// Every regressed pair, counted.
    pub regressed_total: usize,
    pub improved: Vec<RowChange>,
    pub improved_total: usize,
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
    pub flaky: Vec<FlakyRow>,
    pub flaky_total: usize,
    /// Rows that pass every evaluator on the baseline but fail one on the candidate, or are
    /// missing from it.
    pub new_failures: Vec<String>,
    /// Rows on both sides whose call errored on one side only. They count as that side's
    /// failures (a prompt that makes calls fail is worse), and reports say so: an errored row
    /// is never scored as a plain failure without a word.
    pub errored_one_side: ErroredRows,
}

/// Rows errored on one side of a comparison only.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErroredRows {
    pub baseline_only: usize,
    pub candidate_only: usize,
}

impl SideMetrics {
    fn price(&mut self, prices: &crate::cost::Prices) {
        self.cost_usd = prices
            .run_cost(&self.model, self.mock, self.tokens_in, self.tokens_out)
            .map(|c| c.usd);
        self.cost_per_row_usd = self.cost_usd.map(|usd| {
            if self.results > 0 {
                usd / self.results as f64
            } else {
                0.0
            }
        });
    }
}

impl Comparison {
    /// Turns both sides' tokens into dollars at `prices`.
    pub fn price(&mut self, prices: &crate::cost::Prices) {
        if let Some(baseline) = &mut self.baseline {
            baseline.price(prices);
        }
        self.candidate.price(prices);
    }

    /// Whether both sides ran on the same dataset content (true without a baseline).
    pub fn same_dataset(&self) -> bool {
        self.baseline
            .as_ref()
            .is_none_or(|b| b.dataset_hash == self.candidate.dataset_hash)
    }
}

/// One row of one side, repetitions folded.
struct RowVerdicts {
    id: String,
    input: String,
    /// The row's value of the cluster column.
    cluster: Option<String>,
    /// The call answered in a majority of the repetitions.
    ok: bool,
    /// Per evaluator, in experiment order.
    verdicts: Vec<RowSide>,
}

impl RowVerdicts {
    /// The row passed everything: its call answered and every evaluator passed.
    fn passes_all(&self) -> bool {
        self.ok && self.verdicts.iter().all(|v| v.passed)
    }
}

/// One side of a comparison: the experiment, its latency percentiles (the store computes them,
/// the one definition of p50 / p95), and its outcomes in row-id order, repetitions of a row
/// together. Outcomes are consumed one at a time: neither side is held in memory.
pub struct Side<'a, I> {
    pub experiment: &'a Experiment,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub outcomes: I,
}

/// Folds one side's outcome stream into rows (repetitions by majority) while tallying the
/// side's figures.
struct Folder<'a, I: Iterator<Item = RowOutcome>> {
    experiment: &'a Experiment,
    index: HashMap<&'a str, usize>,
    outcomes: std::iter::Peekable<I>,
    rows: usize,
    results: usize,
    errors: usize,
    tokens_in: i64,
    tokens_out: i64,
    /// Per evaluator: rows passed, score sum.
    tallies: Vec<(usize, f64)>,
    /// Per evaluator: the rows' verdicts (1 or 0) and scores, for standard errors.
    samples: Vec<(Sample, Sample)>,
    confidence: f64,
    /// Rows folded ahead of the comparison (see `fold_ahead`), handed out first.
    ahead: Option<std::vec::IntoIter<RowVerdicts>>,
}

impl<'a, I: Iterator<Item = RowOutcome>> Folder<'a, I> {
    fn new(experiment: &'a Experiment, outcomes: I, inference: &Inference) -> Self {
        let clustered = inference.cluster_column.is_some();
        Folder {
            experiment,
            index: experiment
                .evaluators
                .iter()
                .enumerate()
                .map(|(i, name)| (name.as_str(), i))
                .collect(),
            outcomes: outcomes.peekable(),
            rows: 0,
            results: 0,
            errors: 0,
            tokens_in: 0,
            tokens_out: 0,
            tallies: vec![(0, 0.0); experiment.evaluators.len()],
            samples: vec![
                (Sample::new(clustered), Sample::new(clustered));
                experiment.evaluators.len()
            ],
            confidence: inference.confidence,
            ahead: None,
        }
    }

    /// Folds every row now (tallying the side's figures), to be handed out by `next_row`:
    /// done on both sides at once, on two threads, when the outcomes are in memory already.
    fn fold_ahead(&mut self) {
        let mut rows = Vec::new();
        while let Some(row) = self.next_row() {
            rows.push(row);
        }
        self.ahead = Some(rows.into_iter());
    }

    /// The next row, all its repetitions folded.
    fn next_row(&mut self) -> Option<RowVerdicts> {
        if let Some(ahead) = &mut self.ahead {
            return ahead.next();
        }
        let mut first = self.outcomes.next()?;
        let evaluators = self.experiment.evaluators.len();
        // Per evaluator: passes, total, score sum.
        let mut counts = vec![(0usize, 0usize, 0.0f64); evaluators];
        let (mut answered, mut repetitions) = (0usize, 0usize);
        // The row's texts are its first repetition's, taken rather than copied.
        let id = std::mem::take(&mut first.row_id);
        let (input, output) = (
            std::mem::take(&mut first.input),
            std::mem::take(&mut first.output),
        );
        let cluster = first.cluster.take();
        let mut current = Some(first);
        while let Some(o) = current {
            self.results += 1;
            if !o.ok {
                self.errors += 1;
            }
            self.tokens_in += o.prompt_tokens;
            self.tokens_out += o.completion_tokens;
            answered += usize::from(o.ok);
            repetitions += 1;
            for (name, pass, score) in &o.scores {
                if let Some(&i) = self.index.get(name.as_str()) {
                    let slot = &mut counts[i];
                    slot.0 += usize::from(*pass);
                    slot.1 += 1;
                    slot.2 += score;
                }
            }
            current = self.outcomes.next_if(|next| next.row_id == id);
        }
        let verdicts: Vec<RowSide> = counts
            .into_iter()
            .map(|(passes, total, sum)| {
                let total = total.max(1);
                let passed = passes * 2 > total;
                let majority = if passed { passes } else { total - passes };
                RowSide {
                    passed,
                    score: sum / total as f64,
                    agreement: majority as f64 / total as f64,
                    output: output.clone(),
                }
            })
            .collect();
        self.rows += 1;
        for ((tally, sample), verdict) in self
            .tallies
            .iter_mut()
            .zip(&mut self.samples)
            .zip(&verdicts)
        {
            tally.0 += usize::from(verdict.passed);
            tally.1 += verdict.score;
            sample
                .0
                .push(f64::from(u8::from(verdict.passed)), cluster.as_deref());
            sample.1.push(verdict.score, cluster.as_deref());
        }
        Some(RowVerdicts {
            id,
            input,
            cluster,
            ok: answered * 2 > repetitions,
            verdicts,
        })
    }

    fn metrics(&self, p50: Option<f64>, p95: Option<f64>) -> SideMetrics {
        let e = self.experiment;
        let n = self.rows.max(1) as f64;
        SideMetrics {
            experiment: e.id.clone(),
            label: e.label(),
            dataset_hash: e.dataset.hash.clone(),
            rows: self.rows,
            results: self.results,
            error_rate: if self.results == 0 {
                0.0
            } else {
                self.errors as f64 / self.results as f64
            },
            latency_p50_ms: p50,
            latency_p95_ms: p95,
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            model: e.model.clone(),
            mock: e.settings.mock,
            cost_usd: None,
            cost_per_row_usd: None,
            evaluators: e
                .evaluators
                .iter()
                .zip(&self.tallies)
                .zip(&self.samples)
                .map(|((name, (passed, sum)), (pass, score))| {
                    let estimate = |sample: &Sample, value: f64| {
                        sample
                            .standard_error()
                            .map(|se| Estimate::normal(value, se.se, self.confidence))
                    };
                    let pass_rate = *passed as f64 / n;
                    let mean_score = sum / n;
                    // A row's verdict is pass or fail: Wilson's interval, unless clusters
                    // make the rows dependent.
                    let p = pass.standard_error().map(|se| match se.clusters {
                        None => Estimate::proportion(*passed as f64, n, se.se, self.confidence),
                        Some(_) => Estimate::normal_rate(pass_rate, se.se, self.confidence),
                    });
                    let s = estimate(score, mean_score);
                    EvalMetric {
                        evaluator: name.clone(),
                        pass_rate,
                        mean_score,
                        pass_rate_se: p.map(|e| e.se).filter(|se| *se > 0.0),
                        pass_rate_se_note: p.and_then(|e| e.se_note),
                        pass_rate_ci: p.map(|e| e.ci),
                        mean_score_se: s.map(|e| e.se).filter(|se| *se > 0.0),
                        mean_score_se_note: s.and_then(|e| e.se_note),
                        mean_score_ci: s.map(|e| e.ci),
                    }
                })
                .collect(),
        }
    }
}

/// Row lists that keep the first `keep` entries and count them all.
struct Kept<T> {
    items: Vec<T>,
    total: usize,
    keep: usize,
}

impl<T> Kept<T> {
    fn new(keep: usize) -> Self {
        Kept {
            items: Vec::new(),
            total: 0,
            keep,
        }
    }

    fn push(&mut self, make: impl FnOnce() -> T) {
        self.total += 1;
        if self.items.len() < self.keep {
            self.items.push(make());
        }
    }
}

fn note_flaky(side: &str, e: &Experiment, row: &RowVerdicts, flaky: &mut Kept<FlakyRow>) {
    for (name, verdict) in e.evaluators.iter().zip(&row.verdicts) {
        if verdict.agreement < 1.0 {
            flaky.push(|| FlakyRow {
                row_id: row.id.clone(),
                evaluator: name.clone(),
                side: side.to_string(),
                agreement: verdict.agreement,
            });
        }
    }
}

/// Every row of a comparison, in row-id order, with whether it passed everything (its call
/// answered and every evaluator passed) on each side; None on a side that lacks the row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowPair {
    pub row_id: String,
    pub baseline: Option<bool>,
    pub candidate: Option<bool>,
    /// How its verdicts moved, judged as the regressed and improved lists judge them.
    pub kind: RowKind,
}

/// How one row's verdicts moved between the two sides, over the evaluators both ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// Some evaluator went pass → fail and none fail → pass.
    Regressed,
    /// Some evaluator went fail → pass and none pass → fail.
    Improved,
    /// One evaluator regressed and another improved.
    Mixed,
    /// No evaluator both sides ran changed its verdict.
    Unchanged,
    BaselineOnly,
    CandidateOnly,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Regressed => "regressed",
            RowKind::Improved => "improved",
            RowKind::Mixed => "mixed",
            RowKind::Unchanged => "unchanged",
            RowKind::BaselineOnly => "baseline only",
            RowKind::CandidateOnly => "candidate only",
        }
    }
}

/// Compares a candidate with a baseline (or describes the candidate alone when there is none).
/// Rows are matched by row id, walking both sides in row-id order at once; evaluators by name,
/// over those the candidate ran. Of the regressed, improved and flaky rows the first `keep` are
/// kept with their details and all are counted; row ids of new failures and one-sided rows are
/// all kept.
pub fn compare<B, C>(
    baseline: Option<Side<'_, B>>,
    candidate: Side<'_, C>,
    keep: usize,
    inference: &Inference,
) -> Comparison
where
    B: Iterator<Item = RowOutcome>,
    C: Iterator<Item = RowOutcome>,
{
    compare_into(baseline, candidate, keep, inference, None, |_, _| {})
}

/// `compare`, also listing every row (see `RowPair`): for a comparison kept in memory and
/// paged through all its rows. The outcomes are in memory already, so each side is folded
/// into rows on a thread of its own before the two are matched.
pub fn compare_with_rows<B, C>(
    baseline: Option<Side<'_, B>>,
    candidate: Side<'_, C>,
    keep: usize,
    inference: &Inference,
) -> (Comparison, Vec<RowPair>)
where
    B: Iterator<Item = RowOutcome> + Send,
    C: Iterator<Item = RowOutcome> + Send,
{
    let mut rows = Vec::new();
    let comparison = compare_into(
        baseline,
        candidate,
        keep,
        inference,
        Some(&mut rows),
        |base, cand| {
            std::thread::scope(|scope| {
                if let Some(base) = base {
                    scope.spawn(|| base.fold_ahead());
                }
                cand.fold_ahead();
            })
        },
    );
    (comparison, rows)
}

/// `compare`, with every row listed into `pairs` when given, and `prepare` called with both
/// sides' folders before their rows are matched.
fn compare_into<'s, B, C, P>(
    baseline: Option<Side<'s, B>>,
    candidate: Side<'s, C>,
    keep: usize,
    inference: &Inference,
    mut pairs: Option<&mut Vec<RowPair>>,
    prepare: P,
) -> Comparison
where
    B: Iterator<Item = RowOutcome>,
    C: Iterator<Item = RowOutcome>,
    P: FnOnce(Option<&mut Folder<'s, B>>, &mut Folder<'s, C>),
{
    let mut pair = |row_id: &str, baseline: Option<bool>, candidate: Option<bool>, kind| {
        if let Some(pairs) = pairs.as_deref_mut() {
            pairs.push(RowPair {
                row_id: row_id.to_string(),
                baseline,
                candidate,
                kind,
            });
        }
    };
    let cand_exp = candidate.experiment;
    let mut cand = Folder::new(cand_exp, candidate.outcomes, inference);
    let mut flaky = Kept::new(keep);
    let mut regressed = Kept::new(keep);
    let mut improved = Kept::new(keep);
    let Some(baseline) = baseline else {
        prepare(None, &mut cand);
        while let Some(row) = cand.next_row() {
            note_flaky("candidate", cand_exp, &row, &mut flaky);
            pair(
                &row.id,
                None,
                Some(row.passes_all()),
                RowKind::CandidateOnly,
            );
        }
        let metrics = cand.metrics(candidate.latency_p50_ms, candidate.latency_p95_ms);
        return Comparison {
            baseline: None,
            evaluators: metrics
                .evaluators
                .iter()
                .map(|m| EvalDelta {
                    evaluator: m.evaluator.clone(),
                    baseline_pass_rate: None,
                    candidate_pass_rate: m.pass_rate,
                    delta: None,
                    baseline_mean_score: None,
                    candidate_mean_score: m.mean_score,
                    improved: 0,
                    regressed: 0,
                    unchanged: 0,
                    pass_rate_difference: None,
                    mean_score_difference: None,
                })
                .collect(),
            confidence: inference.confidence,
            power: stats::POWER,
            cluster_column: inference.cluster_column.clone(),
            candidate: metrics,
            regressed: Vec::new(),
            regressed_total: 0,
            improved: Vec::new(),
            improved_total: 0,
            only_in_baseline: Vec::new(),
            only_in_candidate: Vec::new(),
            flaky_total: flaky.total,
            flaky: flaky.items,
            new_failures: Vec::new(),
            errored_one_side: ErroredRows::default(),
        };
    };
    let base_exp = baseline.experiment;
    let mut base = Folder::new(base_exp, baseline.outcomes, inference);
    prepare(Some(&mut base), &mut cand);
    let clustered = inference.cluster_column.is_some();
    // Per candidate evaluator: the per-row differences of verdicts and of scores.
    let mut differences =
        vec![(Sample::new(clustered), Sample::new(clustered)); cand_exp.evaluators.len()];
    // For each candidate evaluator, its baseline position (matched by name).
    let matched: Vec<Option<usize>> = cand_exp
        .evaluators
        .iter()
        .map(|name| base_exp.evaluators.iter().position(|b| b == name))
        .collect();
    // Per candidate evaluator: improved, regressed, unchanged.
    let mut moves = vec![(0usize, 0usize, 0usize); cand_exp.evaluators.len()];
    let mut new_failures = Vec::new();
    let mut only_in_baseline = Vec::new();
    let mut only_in_candidate = Vec::new();
    let mut errored_one_side = ErroredRows::default();
    let (mut b, mut c) = (base.next_row(), cand.next_row());
    loop {
        let order = match (&b, &c) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(b), Some(c)) => b.id.cmp(&c.id),
        };
        match order {
            std::cmp::Ordering::Less => {
                let row = b.take().expect("a baseline row");
                note_flaky("baseline", base_exp, &row, &mut flaky);
                pair(&row.id, Some(row.passes_all()), None, RowKind::BaselineOnly);
                // Missing evidence never counts in the candidate's favour.
                if row.passes_all() {
                    new_failures.push(row.id.clone());
                }
                only_in_baseline.push(row.id);
                b = base.next_row();
            }
            std::cmp::Ordering::Greater => {
                let row = c.take().expect("a candidate row");
                note_flaky("candidate", cand_exp, &row, &mut flaky);
                pair(
                    &row.id,
                    None,
                    Some(row.passes_all()),
                    RowKind::CandidateOnly,
                );
                only_in_candidate.push(row.id);
                c = cand.next_row();
            }
            std::cmp::Ordering::Equal => {
                let (base_row, cand_row) = (b.take().expect("rows"), c.take().expect("rows"));
                match (base_row.ok, cand_row.ok) {
                    (true, false) => errored_one_side.candidate_only += 1,
                    (false, true) => errored_one_side.baseline_only += 1,
                    _ => {}
                }
                note_flaky("candidate", cand_exp, &cand_row, &mut flaky);
                note_flaky("baseline", base_exp, &base_row, &mut flaky);
                let (mut went_down, mut went_up) = (false, false);
                for (ci, name) in cand_exp.evaluators.iter().enumerate() {
                    let Some(bi) = matched[ci] else { continue };
                    let (bv, cv) = (&base_row.verdicts[bi], &cand_row.verdicts[ci]);
                    let cluster = cand_row.cluster.as_deref();
                    let verdict = |v: &RowSide| f64::from(u8::from(v.passed));
                    differences[ci].0.push(verdict(cv) - verdict(bv), cluster);
                    differences[ci].1.push(cv.score - bv.score, cluster);
                    let change = || RowChange {
                        row_id: cand_row.id.clone(),
                        evaluator: name.clone(),
                        input: cand_row.input.clone(),
                        baseline: bv.clone(),
                        candidate: cv.clone(),
                    };
                    match (bv.passed, cv.passed) {
                        (true, false) => {
                            moves[ci].1 += 1;
                            went_down = true;
                            regressed.push(change);
                        }
                        (false, true) => {
                            moves[ci].0 += 1;
                            went_up = true;
                            improved.push(change);
                        }
                        _ => moves[ci].2 += 1,
                    }
                }
                pair(
                    &cand_row.id,
                    Some(base_row.passes_all()),
                    Some(cand_row.passes_all()),
                    match (went_down, went_up) {
                        (true, true) => RowKind::Mixed,
                        (true, false) => RowKind::Regressed,
                        (false, true) => RowKind::Improved,
                        (false, false) => RowKind::Unchanged,
                    },
                );
                // Comparing the call too means an errored candidate row fails even when no
                // evaluator ran.
                if base_row.passes_all() && !cand_row.passes_all() {
                    new_failures.push(cand_row.id);
                }
                b = base.next_row();
                c = cand.next_row();
            }
        }
    }
    let base_metrics = base.metrics(baseline.latency_p50_ms, baseline.latency_p95_ms);
    let cand_metrics = cand.metrics(candidate.latency_p50_ms, candidate.latency_p95_ms);
    let evaluators = cand_exp
        .evaluators
        .iter()
        .enumerate()
        .map(|(ci, name)| {
            let cand_metric = &cand_metrics.evaluators[ci];
            let base_metric = matched[ci].map(|bi| &base_metrics.evaluators[bi]);
            let (up, down, same) = moves[ci];
            let unpaired = |b: Option<f64>, c: Option<f64>| Some(b?.hypot(c?));
            let pass_rate_difference = base_metric.and_then(|m| {
                let test = PairedTest::McNemarExact {
                    regressed: down as u64,
                    improved: up as u64,
                };
                stats::paired(&differences[ci].0, test, inference.confidence)
                    .map(|p| Difference::of(p, unpaired(m.pass_rate_se, cand_metric.pass_rate_se)))
            });
            let mean_score_difference = base_metric.and_then(|m| {
                stats::paired(
                    &differences[ci].1,
                    PairedTest::PairedT,
                    inference.confidence,
                )
                .map(|p| Difference::of(p, unpaired(m.mean_score_se, cand_metric.mean_score_se)))
            });
            EvalDelta {
                evaluator: name.clone(),
                baseline_pass_rate: base_metric.map(|m| m.pass_rate),
                candidate_pass_rate: cand_metric.pass_rate,
                delta: base_metric.map(|m| cand_metric.pass_rate - m.pass_rate),
                baseline_mean_score: base_metric.map(|m| m.mean_score),
                candidate_mean_score: cand_metric.mean_score,
                improved: up,
                regressed: down,
                unchanged: same,
                pass_rate_difference,
                mean_score_difference,
            }
        })
        .collect();
    // Regressions are listed evaluator by evaluator in row order, as before the walk merged
    // them; new failures are already in row-id order.
    let by_evaluator = |items: &mut Vec<RowChange>| {
        let position = |name: &str| cand_exp.evaluators.iter().position(|e| e == name);
        items.sort_by_key(|r| position(&r.evaluator));
    };
    let (mut regressed_rows, mut improved_rows) = (regressed.items, improved.items);
    by_evaluator(&mut regressed_rows);
    by_evaluator(&mut improved_rows);
    Comparison {
        confidence: inference.confidence,
        power: stats::POWER,
        cluster_column: inference.cluster_column.clone(),
        baseline: Some(base_metrics),
        candidate: cand_metrics,
        evaluators,
        regressed: regressed_rows,
        regressed_total: regressed.total,
        improved: improved_rows,
        improved_total: improved.total,
        only_in_baseline,
        only_in_candidate,
        flaky: flaky.items,
        flaky_total: flaky.total,
        new_failures,
        errored_one_side,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DatasetRef, ExperimentStatus, JsonObject, RunSettings};

    fn experiment(id: &str, evaluators: &[&str]) -> Experiment {
        Experiment {
            id: id.into(),
            name: None,
            prompt: Some("p".into()),
            version_id: Some(format!("v-{id}")),
            version_seq: Some(1),
            tag: None,
            dataset: DatasetRef {
                path: "d.csv".into(),
                hash: "h".into(),
                rows: 3,
                columns: vec![],
            },
            model: "m".into(),
            base_url: "http://x".into(),
            evaluators: evaluators.iter().map(|s| s.to_string()).collect(),
            settings: RunSettings {
                concurrency: 1,
                repetitions: 1,
                limit: None,
                timeout_secs: 1.0,
                max_retries: 0,
                vars: JsonObject::new(),
                columns: vec![],
                expected_column: None,
                no_cache: false,
                fresh: false,
                cache_ttl_secs: None,
                max_rpm: None,
                max_tpm: None,
                max_cost: None,
                judge_model: None,
                detached: None,
                shard: None,
                target: None,
                target_env: Vec::new(),
                mock: false,
            },
            planned: 3,
            status: ExperimentStatus::Completed,
            author: "a".into(),
            created_at: "t".into(),
            finished_at: None,
            wall_ms: 0,
            error_count: 0,
            error_rate: 0.0,
            lease: None,
        }
    }

    fn side<'a>(
        e: &'a Experiment,
        rows: &[RowOutcome],
    ) -> Side<'a, std::vec::IntoIter<RowOutcome>> {
        let mut rows = rows.to_vec();
        rows.sort_by(|a, b| (&a.row_id, a.repetition).cmp(&(&b.row_id, b.repetition)));
        Side {
            experiment: e,
            latency_p50_ms: Some(1.0),
            latency_p95_ms: Some(2.0),
            outcomes: rows.into_iter(),
        }
    }

    fn outcome(row: &str, rep: i64, ok: bool, latency: f64, pass: bool) -> RowOutcome {
        RowOutcome {
            row_id: row.into(),
            repetition: rep,
            ok,
            latency_ms: latency,
            prompt_tokens: 2,
            completion_tokens: 3,
            output: format!("out {row}"),
            input: format!("in {row}"),
            scores: vec![("e".into(), pass && ok, if pass && ok { 1.0 } else { 0.0 })],
            cluster: None,
        }
    }

    #[test]
    fn regressions_improvements_and_one_sided_rows() {
        let base = experiment("b", &["e"]);
        let cand = experiment("c", &["e"]);
        let base_rows = vec![
            outcome("1", 0, true, 10.0, true),
            outcome("2", 0, true, 20.0, false),
            outcome("3", 0, true, 30.0, true),
            outcome("4", 0, true, 40.0, true),
        ];
        let cand_rows = vec![
            outcome("1", 0, true, 10.0, false),
            outcome("2", 0, true, 20.0, true),
            outcome("3", 0, false, 0.0, true),
            outcome("5", 0, true, 50.0, true),
        ];
        let c = compare(
            Some(side(&base, &base_rows)),
            side(&cand, &cand_rows),
            100,
            &Inference::default(),
        );
        assert_eq!(
            c.regressed
                .iter()
                .map(|r| r.row_id.as_str())
                .collect::<Vec<_>>(),
            vec!["1", "3"]
        );
        assert_eq!(c.improved.len(), 1);
        assert_eq!(c.improved[0].row_id, "2");
        assert_eq!(c.only_in_baseline, vec!["4"]);
        assert_eq!(c.only_in_candidate, vec!["5"]);
        // Row 3 errored: a failure. Row 4 is missing: a failure too.
        assert_eq!(c.new_failures, vec!["1", "3", "4"]);
        let d = &c.evaluators[0];
        assert_eq!((d.improved, d.regressed, d.unchanged), (1, 2, 0));
        assert_eq!(d.baseline_pass_rate, Some(0.75));
        assert_eq!(d.candidate_pass_rate, 0.5);
        assert_eq!(d.delta, Some(-0.25));
        assert_eq!(c.candidate.error_rate, 0.25);
        // Percentiles are the store's, passed through.
        assert_eq!(c.candidate.latency_p50_ms, Some(1.0));
        assert_eq!(c.baseline.as_ref().unwrap().latency_p95_ms, Some(2.0));
        assert_eq!(c.candidate.tokens_in, 8);
    }

    #[test]
    fn every_row_is_listed_with_how_its_verdicts_moved_per_evaluator() {
        // Two evaluators on both sides; the candidate adds a third.
        let base = experiment("b", &["a", "b"]);
        let cand = experiment("c", &["a", "b", "new"]);
        let row = |id: &str, verdicts: &[(&str, bool)]| RowOutcome {
            scores: verdicts
                .iter()
                .map(|(e, pass)| (e.to_string(), *pass, f64::from(u8::from(*pass))))
                .collect(),
            ..outcome(id, 0, true, 1.0, true)
        };
        let base_rows = vec![
            row("1", &[("a", true), ("b", false)]),
            row("2", &[("a", true), ("b", true)]),
            row("3", &[("a", false), ("b", false)]),
            row("4", &[("a", true), ("b", true)]),
            row("5", &[("a", true), ("b", true)]),
        ];
        let cand_rows = vec![
            // Regressed on a, improved on b: fails something on both sides all the same.
            row("1", &[("a", false), ("b", true), ("new", true)]),
            // Only the evaluator the baseline never ran fails: nothing changed.
            row("2", &[("a", true), ("b", true), ("new", false)]),
            row("3", &[("a", true), ("b", false), ("new", true)]),
            row("4", &[("a", true), ("b", false), ("new", true)]),
            row("6", &[("a", true), ("b", true), ("new", true)]),
        ];
        let (c, rows) = compare_with_rows(
            Some(side(&base, &base_rows)),
            side(&cand, &cand_rows),
            100,
            &Inference::default(),
        );
        let kinds: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.row_id.as_str(), r.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("1", "mixed"),
                ("2", "unchanged"),
                ("3", "improved"),
                ("4", "regressed"),
                ("5", "baseline only"),
                ("6", "candidate only"),
            ]
        );
        // The kinds agree with the lists: row 1 is in both, row 2 in neither.
        let ids = |v: &[RowChange]| v.iter().map(|r| r.row_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&c.regressed), vec!["1", "4"]);
        // (The lists go evaluator by evaluator: row 3 improved on a, row 1 on b.)
        assert_eq!(ids(&c.improved), vec!["3", "1"]);
        assert_eq!(rows[0].baseline, Some(false));
        assert_eq!(rows[0].candidate, Some(false));
        assert_eq!(rows[4].candidate, None);
        assert_eq!(rows[5].baseline, None);
    }

    #[test]
    fn repetitions_fold_by_majority_and_report_flaky_rows() {
        let mut cand = experiment("c", &["e"]);
        cand.settings.repetitions = 3;
        let rows = vec![
            outcome("1", 0, true, 1.0, true),
            outcome("1", 1, true, 1.0, true),
            outcome("1", 2, true, 1.0, false),
            outcome("2", 0, true, 1.0, false),
            outcome("2", 1, true, 1.0, false),
            outcome("2", 2, true, 1.0, false),
        ];
        let c = compare(
            None::<Side<std::vec::IntoIter<RowOutcome>>>,
            side(&cand, &rows),
            100,
            &Inference::default(),
        );
        assert_eq!(c.candidate.rows, 2);
        assert_eq!(c.candidate.results, 6);
        assert_eq!(c.candidate.evaluators[0].pass_rate, 0.5);
        assert_eq!((c.flaky.len(), c.flaky_total), (1, 1));
        assert_eq!(c.flaky[0].row_id, "1");
        assert!((c.flaky[0].agreement - 2.0 / 3.0).abs() < 1e-9);
        assert!(c.baseline.is_none());
        assert!(c.new_failures.is_empty());
    }

    #[test]
    fn an_errored_row_is_a_new_failure_even_without_evaluators() {
        let base = experiment("b", &[]);
        let cand = experiment("c", &[]);
        let base_rows = vec![
            outcome("1", 0, true, 1.0, true),
            outcome("2", 0, false, 1.0, true),
        ];
        let cand_rows = vec![
            outcome("1", 0, false, 1.0, true),
            outcome("2", 0, false, 1.0, true),
        ];
        let c = compare(
            Some(side(&base, &base_rows)),
            side(&cand, &cand_rows),
            100,
            &Inference::default(),
        );
        assert_eq!(c.new_failures, vec!["1"]);
    }

    #[test]
    fn an_even_split_is_not_a_majority() {
        let mut cand = experiment("c", &["e"]);
        cand.settings.repetitions = 2;
        let rows = vec![
            outcome("1", 0, true, 1.0, true),
            outcome("1", 1, true, 1.0, false),
        ];
        let c = compare(
            None::<Side<std::vec::IntoIter<RowOutcome>>>,
            side(&cand, &rows),
            100,
            &Inference::default(),
        );
        assert_eq!(c.candidate.evaluators[0].pass_rate, 0.0);
    }

    #[test]
    fn only_the_first_rows_are_kept_and_all_are_counted() {
        let base = experiment("b", &["e"]);
        let cand = experiment("c", &["e"]);
        let ids: Vec<String> = (0..50).map(|i| format!("{i:03}")).collect();
        let base_rows: Vec<RowOutcome> = ids
            .iter()
            .map(|id| outcome(id, 0, true, 1.0, true))
            .collect();
        let cand_rows: Vec<RowOutcome> = ids
            .iter()
            .map(|id| outcome(id, 0, true, 1.0, false))
            .collect();
        let c = compare(
            Some(side(&base, &base_rows)),
            side(&cand, &cand_rows),
            5,
            &Inference::default(),
        );
        assert_eq!((c.regressed.len(), c.regressed_total), (5, 50));
        assert_eq!(c.regressed[0].row_id, "000");
        assert_eq!(c.new_failures.len(), 50);
        assert_eq!(c.evaluators[0].regressed, 50);
    }
}
