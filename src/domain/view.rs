//! Typed views: what runner shows of its data, one struct per thing shown. They are what
//! `--json` prints and what `report` renders as tables, Markdown and JUnit, so every front end
//! (CLI, API, web pages) says the same thing with the same names. They are data, built from what
//! was already read: nothing here reads the store or prints, and the tables, Markdown and HTML are
//! `report`'s and the pages'.

use crate::compare::Comparison;
use crate::gate::{Criterion, Policy, Verdict};
use crate::model::{
    Experiment, JsonObject, Message, Prompt, PromptVersion, RunStats, Summary, Tag, TagAction,
    TagEvent,
};
use crate::stats::{self, Estimate};
use serde::{Deserialize, Serialize};

/// One version with its tags and template variables (`prompt show --json`).
#[derive(Debug, Serialize)]
pub struct VersionView<'a> {
    #[serde(flatten)]
    pub version: &'a PromptVersion,
    pub tags: &'a [String],
    pub variables: &'a [String],
}

/// One prompt in a listing (`prompt list --json`).
#[derive(Debug, Serialize)]
pub struct PromptItem<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub latest_version: i64,
    pub latest_version_id: &'a str,
    pub version_count: i64,
    pub tags: &'a [String],
    pub model: Option<&'a str>,
    pub metadata: &'a JsonObject,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

impl<'a> PromptItem<'a> {
    pub fn new(prompt: &'a Prompt, latest: &'a PromptVersion) -> PromptItem<'a> {
        PromptItem {
            name: &prompt.name,
            description: prompt.description.as_deref(),
            latest_version: prompt.latest_seq,
            latest_version_id: &latest.id,
            version_count: prompt.version_count,
            tags: &prompt.tags,
            model: latest.model.as_deref(),
            metadata: &latest.metadata,
            created_at: &prompt.created_at,
            updated_at: &prompt.updated_at,
        }
    }
}

/// What a version renders to for one set of variables (`prompt render --json`).
#[derive(Debug, Serialize)]
pub struct RenderedView<'a> {
    pub prompt: &'a str,
    pub version: i64,
    pub version_id: &'a str,
    pub model: Option<&'a str>,
    pub params: &'a JsonObject,
    pub messages: &'a [Message],
}

/// Figures of one run, with its speed.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub processed: u64,
    pub wall_secs: f64,
    pub rows_per_sec: f64,
    /// Age in seconds of the oldest cached answer the run used; null when it used none.
    pub oldest_cached_secs: Option<f64>,
    /// Answers with status 429.
    pub rate_limited: u64,
    /// Wall seconds during which requests were held back by a limit or a 429's wait.
    pub throttled_secs: f64,
    /// Requests allowed in flight at the end (adaptive), and the configured most.
    pub concurrency: usize,
    pub max_concurrency: usize,
}

impl From<&RunStats> for RunView {
    fn from(run: &RunStats) -> RunView {
        RunView {
            processed: run.processed,
            wall_secs: run.wall_secs,
            rows_per_sec: run.rows_per_sec(),
            oldest_cached_secs: run.oldest_cached_secs,
            rate_limited: run.rate_limited,
            throttled_secs: run.throttled_secs,
            concurrency: run.concurrency,
            max_concurrency: run.max_concurrency,
        }
    }
}

/// An experiment with its aggregates, and the run's figures when a run just ended.
#[derive(Debug, Serialize)]
pub struct ExperimentView<'a> {
    pub experiment: &'a Experiment,
    pub summary: &'a Summary,
    /// The confidence level of every interval below.
    pub confidence: f64,
    /// Per evaluator: the pass rate and mean score with their standard errors and intervals.
    pub statistics: Vec<EvaluatorStatistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunView>,
    /// The experiment's own check (`--min-pass-rate`, `--max-error-rate`), when one was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<&'a [Criterion]>,
    /// What the recorded tokens cost at the prices in force; null when no price names the
    /// model (add `[prices."MODEL"]` to runner.toml).
    pub cost: Option<CostView>,
}

/// One line of `experiment list`: the experiment with its tokens and what they cost.
#[derive(Debug, Serialize)]
pub struct ExperimentItem {
    #[serde(flatten)]
    pub experiment: Experiment,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Null when no price names the model.
    pub cost_usd: Option<f64>,
}

/// An experiment's tokens in dollars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostView {
    /// What the answers cost at the price: every result's tokens, cached ones too (what the
    /// experiment costs to run, the figure a gate compares).
    pub usd: f64,
    /// Per result (row × repetition).
    pub per_row_usd: f64,
    /// What was spent: the answers that came from the endpoint, not from the cache.
    pub spent_usd: f64,
    /// What the cached answers would have cost (nothing was spent on them here).
    pub cached_usd: f64,
    pub model: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// `built-in`, `runner-toml`, or `mock` (runner's mock answered: everything is 0).
    pub price_source: crate::cost::Source,
}

impl CostView {
    pub fn of(
        prices: &crate::cost::Prices,
        experiment: &Experiment,
        summary: &Summary,
    ) -> Option<CostView> {
        let mock = experiment.settings.mock;
        let cost = prices.run_cost(
            &experiment.model,
            mock,
            summary.prompt_tokens,
            summary.completion_tokens,
        )?;
        let cached = prices
            .run_cost(
                &experiment.model,
                mock,
                summary.cached_prompt_tokens,
                summary.cached_completion_tokens,
            )
            .map_or(0.0, |c| c.usd);
        Some(CostView {
            usd: cost.usd,
            spent_usd: (cost.usd - cached).max(0.0),
            cached_usd: cached,
            per_row_usd: if summary.results > 0 {
                cost.usd / summary.results as f64
            } else {
                0.0
            },
            model: experiment.model.clone(),
            input_per_mtok: cost.input_per_mtok,
            output_per_mtok: cost.output_per_mtok,
            price_source: cost.price_source,
        })
    }
}

impl<'a> ExperimentView<'a> {
    pub fn new(
        experiment: &'a Experiment,
        summary: &'a Summary,
        run: Option<&RunStats>,
        cost: Option<CostView>,
        confidence: f64,
    ) -> ExperimentView<'a> {
        ExperimentView {
            experiment,
            summary,
            confidence,
            statistics: evaluator_statistics(summary, confidence),
            run: run.map(RunView::from),
            check: None,
            cost,
        }
    }
}

/// One evaluator's pass rate and mean score with their error bars. A row counts once: with
/// repetitions its pass and score are the means over its repetitions (Miller's resampling),
/// and the standard error is the spread of those row means over √rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluatorStatistics {
    pub evaluator: String,
    pub rows: i64,
    /// Answers a row, on average.
    pub repetitions: f64,
    /// None below two rows.
    pub pass_rate: Option<Estimate>,
    pub mean_score: Option<Estimate>,
    /// With repetitions: the standard error one answer a row would have had, so the
    /// repetitions' effect reads as `pass_rate_se_one_repetition` → `pass_rate.se`.
    pub pass_rate_se_one_repetition: Option<f64>,
    pub mean_score_se_one_repetition: Option<f64>,
}

/// The error bars of every evaluator of a summary at `confidence`.
pub fn evaluator_statistics(summary: &Summary, confidence: f64) -> Vec<EvaluatorStatistics> {
    summary
        .evaluators
        .iter()
        .map(|e| {
            let spread = &e.spread;
            let rows = spread.rows.max(0) as u64;
            let repetitions = if spread.rows > 0 {
                spread.answers as f64 / spread.rows as f64
            } else {
                0.0
            };
            let of = |sums: &crate::model::SpreadSums, rate: bool| {
                let moments = stats::Moments::from_sums(rows, sums.sum, sums.sum_sq);
                let estimate = moments.variance().map(|variance| {
                    let se = (variance / rows as f64).sqrt();
                    match (rate, repetitions > 1.0) {
                        // One answer a row: each row passed or failed.
                        (true, false) => {
                            Estimate::proportion(sums.sum, rows as f64, se, confidence)
                        }
                        // A row's pass is the share of its answers that passed.
                        (true, true) => Estimate::normal_rate(moments.mean(), se, confidence),
                        (false, _) => Estimate::normal(moments.mean(), se, confidence),
                    }
                });
                let one = (repetitions > 1.0)
                    .then(|| {
                        stats::repetition_gain(&moments, sums.within / rows as f64, repetitions)
                    })
                    .flatten()
                    .map(|gain| gain.se_one);
                (estimate, one)
            };
            let (pass_rate, pass_one) = of(&spread.pass, true);
            let (mean_score, score_one) = of(&spread.score, false);
            EvaluatorStatistics {
                evaluator: e.evaluator.clone(),
                rows: spread.rows,
                repetitions,
                pass_rate,
                mean_score,
                pass_rate_se_one_repetition: pass_one,
                mean_score_se_one_repetition: score_one,
            }
        })
        .collect()
}

/// What a promotion decided and did: the JSON of `promote --json`, and what its text, Markdown
/// and JUnit reports are rendered from.
#[derive(Debug, Serialize)]
pub struct PromotionView<'a> {
    pub prompt: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub candidate_version: i64,
    pub baseline_version: Option<i64>,
    pub passed: bool,
    pub dry_run: bool,
    pub moved: bool,
    pub verdict: &'a Verdict,
    pub comparison: &'a Comparison,
}

impl PromotionView<'_> {
    /// The one line that says what happened.
    pub fn headline(&self) -> String {
        let target = match self.baseline_version {
            Some(seq) => format!("{} (v{seq})", self.to),
            None => format!("{} (new tag)", self.to),
        };
        let what = format!(
            "{} {} v{} → {target}",
            self.prompt, self.from, self.candidate_version
        );
        match (self.passed, self.dry_run, self.moved) {
            (true, true, _) => format!("gate PASSED (dry run, nothing moved): {what}"),
            (true, false, true) => format!("gate PASSED, tag moved: {what}"),
            (true, false, false) => format!("gate PASSED, tag not moved: {what}"),
            (false, _, _) => format!("gate FAILED, nothing moved: {what}"),
        }
    }
}

/// The evidence a promotion records on its tag event: why the tag moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub verdict: String,
    pub policy: Policy,
    /// As recorded (older promotions recorded them as text).
    pub criteria: Vec<serde_json::Value>,
    pub candidate_experiment: String,
    pub baseline_experiment: Option<String>,
    pub dataset_hash: String,
    pub from_tag: String,
    /// Each side's share of errored results (recorded since the gate refuses broken
    /// evidence; absent from older promotions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_error_rate: Option<f64>,
    /// The names of the checks that ran, and what they did not check (`notes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Evidence {
    /// The evidence a promotion recorded on its tag event, when it is readable.
    pub fn of(event: &crate::model::TagEvent) -> Option<Evidence> {
        event
            .evidence
            .as_ref()
            .and_then(|value| serde_json::from_value(value.clone()).ok())
    }
}

/// One tag as a deployment panel shows it: where it points, and the change that put it there.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    pub tag: String,
    pub version_seq: i64,
    pub version_id: String,
    pub moved_at: String,
    pub moved_by: String,
    /// How it got there: set, move, rollback or promote.
    pub action: Option<TagAction>,
    /// The change needed force (a protected tag moved by hand).
    pub forced: bool,
    /// A deploy token moved the protected tag (no force needed).
    pub deploy: bool,
    /// The change was a promotion whose gate passed.
    pub gated: bool,
    pub message: Option<String>,
    pub protected: bool,
    pub evidence: Option<Evidence>,
}

impl DeploymentView {
    /// `tag` with its last change among `history` (a prompt's, oldest first); `protected` when
    /// the tag policy protects it.
    pub fn new(tag: &Tag, history: &[TagEvent], protected: bool) -> DeploymentView {
        let last = history.iter().rev().find(|e| e.tag == tag.name);
        DeploymentView {
            tag: tag.name.clone(),
            version_seq: tag.version_seq,
            version_id: tag.version_id.clone(),
            moved_at: tag.updated_at.clone(),
            moved_by: tag.updated_by.clone(),
            action: last.map(|e| e.action),
            forced: last.is_some_and(|e| e.forced),
            deploy: last.is_some_and(|e| e.deploy),
            gated: last.is_some_and(|e| e.action == TagAction::Promote),
            message: last.and_then(|e| e.message.clone()),
            protected,
            evidence: last.and_then(Evidence::of),
        }
    }
}

/// One prompt in the library: its listing item, its tags as deployed, and the last deployment.
#[derive(Debug, Serialize)]
pub struct LibraryEntry<'a> {
    #[serde(flatten)]
    pub item: PromptItem<'a>,
    /// The newest tag change of the prompt: (tag, when).
    pub last_deployment: Option<(String, String)>,
}

impl<'a> LibraryEntry<'a> {
    pub fn new(prompt: &'a Prompt, latest: &'a PromptVersion, tags: &[Tag]) -> LibraryEntry<'a> {
        let last = tags.iter().max_by(|a, b| a.updated_at.cmp(&b.updated_at));
        LibraryEntry {
            item: PromptItem::new(prompt, latest),
            last_deployment: last.map(|t| (t.name.clone(), t.updated_at.clone())),
        }
    }

    /// Whether the entry matches a library search: `text` in the name or description (any
    /// case), carrying `tag`, and with metadata `key` equal to `value` (a string's text, or
    /// any other JSON value as written).
    pub fn matches(&self, text: &str, tag: Option<&str>, meta: Option<(&str, &str)>) -> bool {
        let needle = text.to_lowercase();
        let text_ok = needle.is_empty()
            || self.item.name.to_lowercase().contains(&needle)
            || self
                .item
                .description
                .is_some_and(|d| d.to_lowercase().contains(&needle));
        let tag_ok = tag.is_none_or(|t| self.item.tags.iter().any(|x| x == t));
        let meta_ok = meta.is_none_or(|(key, value)| {
            self.item.metadata.get(key).is_some_and(|v| match v {
                serde_json::Value::String(s) => s == value,
                // A number, boolean or null matches its JSON text (`retries=3`).
                other => {
                    serde_json::from_str::<serde_json::Value>(value).is_ok_and(|v| v == *other)
                }
            })
        });
        text_ok && tag_ok && meta_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TemplateFormat, TemplateType};

    fn version(metadata: serde_json::Value) -> PromptVersion {
        PromptVersion {
            id: "v-1".into(),
            prompt: "greet".into(),
            seq: 1,
            template_type: TemplateType::Str,
            format: TemplateFormat::Mustache,
            template: crate::model::Template::Str("hi".into()),
            model: None,
            provider: None,
            params: JsonObject::new(),
            metadata: metadata.as_object().unwrap().clone(),
            description: None,
            message: None,
            author: "a".into(),
            content_hash: String::new(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn tag(name: &str, at: &str) -> Tag {
        Tag {
            prompt: "greet".into(),
            name: name.into(),
            version_id: "v-1".into(),
            version_seq: 1,
            updated_at: at.into(),
            updated_by: "a".into(),
        }
    }

    #[test]
    fn library_entries_match_text_tag_and_metadata() {
        let prompt = Prompt {
            name: "Greet".into(),
            created_at: String::new(),
            updated_at: String::new(),
            latest_seq: 1,
            version_count: 1,
            description: Some("Says hello".into()),
            metadata: JsonObject::new(),
            tags: vec!["production".into()],
        };
        let latest = version(serde_json::json!({"team": "care", "retries": 3}));
        let tags = [
            tag("production", "2026-01-02"),
            tag("staging", "2026-01-03"),
        ];
        let entry = LibraryEntry::new(&prompt, &latest, &tags);
        assert_eq!(
            entry.last_deployment,
            Some(("staging".into(), "2026-01-03".into()))
        );
        type Case<'a> = (&'a str, Option<&'a str>, Option<(&'a str, &'a str)>, bool);
        let cases: &[Case] = &[
            ("", None, None, true),
            ("gre", None, None, true),
            ("HELLO", None, None, true),
            ("bye", None, None, false),
            ("", Some("production"), None, true),
            ("", Some("staging"), None, false),
            ("", None, Some(("team", "care")), true),
            ("", None, Some(("team", "sales")), false),
            ("", None, Some(("retries", "3")), true),
            ("", None, Some(("retries", "4")), false),
            ("", None, Some(("missing", "x")), false),
        ];
        for (text, tag, meta, expected) in cases {
            assert_eq!(
                entry.matches(text, *tag, *meta),
                *expected,
                "{text:?} {tag:?} {meta:?}"
            );
        }
    }

    #[test]
    fn a_deployment_says_how_its_tag_got_there() {
        let event =
            |action: TagAction, forced: bool, evidence: Option<serde_json::Value>| TagEvent {
                id: 1,
                prompt: "greet".into(),
                tag: "production".into(),
                action,
                from_version_id: None,
                from_seq: None,
                to_version_id: Some("v-1".into()),
                to_seq: Some(1),
                actor: "a".into(),
                message: Some("why".into()),
                at: "2026-01-02".into(),
                forced,
                deploy: false,
                evidence,
            };
        let production = tag("production", "2026-01-02");
        let forced = DeploymentView::new(&production, &[event(TagAction::Move, true, None)], true);
        assert!(forced.forced && !forced.gated && forced.protected);
        assert_eq!(forced.message.as_deref(), Some("why"));
        let evidence = serde_json::json!({
            "verdict": "PASSED", "policy": Policy::no_regression(), "criteria": [],
            "candidate_experiment": "c", "baseline_experiment": "b",
            "dataset_hash": "h", "from_tag": "staging"
        });
        let history = [
            event(TagAction::Move, true, None),
            event(TagAction::Promote, false, Some(evidence)),
        ];
        let gated = DeploymentView::new(&production, &history, true);
        assert!(gated.gated && !gated.forced && !gated.deploy);
        let deploy = TagEvent {
            deploy: true,
            ..event(TagAction::Move, false, None)
        };
        let deployed = DeploymentView::new(&production, &[deploy], true);
        assert!(deployed.deploy && !deployed.forced && !deployed.gated);
        let evidence = gated.evidence.expect("evidence");
        assert_eq!(evidence.candidate_experiment, "c");
        assert_eq!(evidence.baseline_experiment.as_deref(), Some("b"));
    }
}
