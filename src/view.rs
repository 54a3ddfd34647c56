//! Typed views: what runner shows of its data, one struct per thing shown. They are what
//! `--json` prints and what `report` renders as tables, Markdown and JUnit, so every front end
//! (CLI, API, web pages) says the same thing with the same names.

use crate::compare::Comparison;
use crate::gate::{Criterion, Policy, Verdict};
use crate::model::{Experiment, JsonObject, Message, Prompt, PromptVersion, RunStats, Summary};
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
}

impl From<&RunStats> for RunView {
    fn from(run: &RunStats) -> RunView {
        RunView {
            processed: run.processed,
            wall_secs: run.wall_secs,
            rows_per_sec: run.rows_per_sec(),
            oldest_cached_secs: run.oldest_cached_secs,
        }
    }
}

/// An experiment with its aggregates, and the run's figures when a run just ended.
#[derive(Debug, Serialize)]
pub struct ExperimentView<'a> {
    pub experiment: &'a Experiment,
    pub summary: &'a Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunView>,
    /// The experiment's own check (`--min-pass-rate`, `--max-error-rate`), when one was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<&'a [Criterion]>,
}

impl<'a> ExperimentView<'a> {
    pub fn new(
        experiment: &'a Experiment,
        summary: &'a Summary,
        run: Option<&RunStats>,
    ) -> ExperimentView<'a> {
        ExperimentView {
            experiment,
            summary,
            run: run.map(RunView::from),
            check: None,
        }
    }
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
}
