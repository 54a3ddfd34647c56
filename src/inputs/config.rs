//! The project file `runner.toml`: defaults for the endpoint, model, concurrency, evaluators,
//! gate criteria and protected tags, per project and per prompt. Flags override it. It only reads
//! and checks the file: flags are laid over it where each workflow's settings are built, and it
//! must not parse a flag, open the store or call the endpoint.
//!
//! ```toml
//! base_url = "http://127.0.0.1:8089/v1"
//! model = "gpt-4o-mini"
//! concurrency = 32
//! protected_tags = ["production"]
//! db = "postgres://runner@db.internal:5432/prompts"   # --db and RUNNER_DB override it
//! confidence = 0.95     # of every interval; --confidence overrides it
//!
//! [prompts.support_greeting]
//! dataset = "datasets/queries.csv"
//! evals = ["icontains", "max-latency:2000"]
//!
//! [thresholds]          # `runner experiment` exits 1 below these
//! min_pass_rate = 0.8
//! max_error_rate = 0.05
//!
//! [prices."gpt-4o-mini"]  # dollars per million tokens, over the built-in table
//! input_per_mtok = 0.15
//! output_per_mtok = 0.60
//!
//! [prompts.support_greeting.gate]
//! min_pass_rate = 0.9
//! max_regression = 0.02
//! no_new_failures = true
//!
//! [canary]              # what `runner canary start` uses when its flags do not say
//! steps = [5, 25, 50, 100]
//! step_after = "30m"
//! unit_header = "X-Runner-Unit"
//! metrics = ["error_rate", "latency_p95:+20%"]
//! non_inferior = 0.02
//!
//! [worker]              # what `runner worker` may run of an experiment's evaluators
//! allow_cmd = ["python score.py"]
//! allow_eval = ["judge:rubrics/helpful.md"]
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file looked for in the working directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "runner.toml";

/// Tags protected when no project file says otherwise.
pub const DEFAULT_PROTECTED: &[&str] = &["production"];

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    pub min_pass_rate: Option<f64>,
    pub max_regression: Option<f64>,
    pub no_new_failures: Option<bool>,
    pub max_error_rate: Option<f64>,
    pub max_p95_latency_ms: Option<f64>,
    /// The lower bound of the pass rate's difference must be at least −D.
    pub non_inferior: Option<f64>,
    /// The lower bound of the pass rate's difference must be at least D.
    pub min_improvement: Option<f64>,
    pub max_cost_increase: Option<f64>,
    /// A pairwise judge's criterion: the lower bound of the candidate's win rate (ties half).
    pub min_win_rate: Option<f64>,
    /// The pairwise judge's rubric file [default: runner's rubric].
    pub pairwise_rubric: Option<String>,
}

/// An experiment's own check (`runner experiment` exits 1 when it fails): every evaluator's
/// pass rate at least `min_pass_rate`, the error rate at most `max_error_rate`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub min_pass_rate: Option<f64>,
    pub max_error_rate: Option<f64>,
}

/// Settings that may be given for the whole project and overridden per prompt.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDefaults {
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub concurrency: Option<usize>,
    pub timeout: Option<f64>,
    pub max_retries: Option<u32>,
    pub repetitions: Option<usize>,
    pub dataset: Option<PathBuf>,
    pub evals: Option<Vec<String>>,
    pub judge_model: Option<String>,
    /// How old a cached answer may be and still be used (`90s`, `30m`, `12h`, `7d`).
    pub cache_ttl: Option<String>,
    pub max_rpm: Option<f64>,
    pub max_tpm: Option<f64>,
    pub gate: Option<GateConfig>,
    pub thresholds: Option<Thresholds>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub defaults: RunDefaults,
    pub protected_tags: Option<Vec<String>>,
    pub prompts: BTreeMap<String, RunDefaults>,
    /// `[limits."BASE_URL"]`: an endpoint's own limits, whichever prompt runs against it.
    pub limits: BTreeMap<String, EndpointLimits>,
    /// The store (`db = "runner.db"` or `db = "postgres://…"`) when neither `--db` nor
    /// `RUNNER_DB` names one.
    pub db: Option<PathBuf>,
    /// The confidence level of every interval runner reports, when `--confidence` is not given.
    pub confidence: Option<f64>,
    /// `[prices."MODEL"]`: dollars per million tokens, over the built-in table.
    pub prices: BTreeMap<String, crate::cost::Price>,
    /// `[worker]`: what a worker may run of the evaluators an experiment in the store names.
    pub worker: WorkerConfig,
    /// `[canary]`: a rollout's plan when `runner canary start`'s flags do not give it.
    pub canary: CanaryConfig,
}

/// `[canary]`: defaults of `runner canary start`, each overridden by its flag.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    pub steps: Option<Vec<u32>>,
    pub step_after: Option<String>,
    pub unit_header: Option<String>,
    pub metrics: Option<Vec<String>>,
    pub non_inferior: Option<f64>,
    pub canary_tag: Option<String>,
}

/// `[worker]`: the evaluators that run a program or read a file (`cmd:`, `judge:`,
/// `json-schema:`) a worker runs when an experiment in the store names them, each matched
/// exactly. Anyone who can write the store can name any; this list is the worker machine's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Programs allowed as `cmd:PROGRAM` (the text after `cmd:`).
    #[serde(default)]
    pub allow_cmd: Vec<String>,
    /// Whole evaluator specs allowed (`judge:FILE`, `json-schema:FILE`, `cmd:PROGRAM`).
    #[serde(default)]
    pub allow_eval: Vec<String>,
}

/// The limits of one endpoint (one API key's), per minute.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointLimits {
    pub max_rpm: Option<f64>,
    pub max_tpm: Option<f64>,
}

/// The file as written: the top-level settings spelled out rather than flattened, so that the
/// parser can point at the line of a wrong value (a flattened struct loses the position).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    base_url: Option<String>,
    model: Option<String>,
    concurrency: Option<usize>,
    timeout: Option<f64>,
    max_retries: Option<u32>,
    repetitions: Option<usize>,
    dataset: Option<PathBuf>,
    evals: Option<Vec<String>>,
    judge_model: Option<String>,
    cache_ttl: Option<String>,
    max_rpm: Option<f64>,
    max_tpm: Option<f64>,
    gate: Option<GateConfig>,
    thresholds: Option<Thresholds>,
    #[serde(default)]
    limits: BTreeMap<String, EndpointLimits>,
    protected_tags: Option<Vec<String>>,
    #[serde(default)]
    prompts: BTreeMap<String, RunDefaults>,
    db: Option<PathBuf>,
    confidence: Option<f64>,
    #[serde(default)]
    prices: BTreeMap<String, crate::cost::Price>,
    #[serde(default)]
    worker: WorkerConfig,
    #[serde(default)]
    canary: CanaryConfig,
}

impl From<ConfigFile> for Config {
    fn from(f: ConfigFile) -> Config {
        Config {
            defaults: RunDefaults {
                base_url: f.base_url,
                model: f.model,
                concurrency: f.concurrency,
                timeout: f.timeout,
                max_retries: f.max_retries,
                repetitions: f.repetitions,
                dataset: f.dataset,
                evals: f.evals,
                judge_model: f.judge_model,
                cache_ttl: f.cache_ttl,
                max_rpm: f.max_rpm,
                max_tpm: f.max_tpm,
                gate: f.gate,
                thresholds: f.thresholds,
            },
            protected_tags: f.protected_tags,
            prompts: f.prompts,
            limits: f
                .limits
                .into_iter()
                .map(|(url, l)| (url.trim_end_matches('/').to_string(), l))
                .collect(),
            db: f.db,
            confidence: f.confidence,
            prices: f.prices,
            worker: f.worker,
            canary: f.canary,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Reads `path`, or `runner.toml` in the working directory when it exists, or nothing.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match path {
            Some(path) => path.to_path_buf(),
            None => {
                let default = PathBuf::from(DEFAULT_FILE);
                if !default.exists() {
                    return Ok(Config::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Parse { path, message })
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config = toml::from_str::<ConfigFile>(text)
            .map(Config::from)
            .map_err(|e| {
                // The parser's own text spans several lines around a source excerpt; one line
                // needs the place and the reason (an unknown field, a wrong type) and nothing else.
                let reason = crate::text::one_line(e.message(), 300);
                match e
                    .span()
                    .filter(|span| span.start > 0 || span.end < text.len())
                {
                    Some(span) => {
                        let before = &text[..span.start.min(text.len())];
                        let line = before.matches('\n').count() + 1;
                        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                        format!("line {line}, column {column}: {reason}")
                    }
                    None => reason,
                }
            })?;
        for (model, price) in &config.prices {
            price
                .check()
                .map_err(|reason| format!("[prices.\"{model}\"]: {reason}"))?;
        }
        Ok(config)
    }

    /// The prices in force: `[prices]` over the built-in table.
    pub fn prices(&self) -> crate::cost::Prices {
        crate::cost::Prices::new(self.prices.clone())
    }

    /// The project defaults with the prompt's own settings laid over them.
    pub fn for_prompt(&self, prompt: &str) -> RunDefaults {
        let mut merged = self.defaults.clone();
        if let Some(own) = self.prompts.get(prompt) {
            let own = own.clone();
            merged.base_url = own.base_url.or(merged.base_url);
            merged.model = own.model.or(merged.model);
            merged.concurrency = own.concurrency.or(merged.concurrency);
            merged.timeout = own.timeout.or(merged.timeout);
            merged.max_retries = own.max_retries.or(merged.max_retries);
            merged.repetitions = own.repetitions.or(merged.repetitions);
            merged.dataset = own.dataset.or(merged.dataset);
            merged.evals = own.evals.or(merged.evals);
            merged.judge_model = own.judge_model.or(merged.judge_model);
            merged.cache_ttl = own.cache_ttl.or(merged.cache_ttl);
            merged.max_rpm = own.max_rpm.or(merged.max_rpm);
            merged.max_tpm = own.max_tpm.or(merged.max_tpm);
            merged.gate = match (merged.gate, own.gate) {
                (Some(base), Some(own)) => Some(GateConfig {
                    min_pass_rate: own.min_pass_rate.or(base.min_pass_rate),
                    max_regression: own.max_regression.or(base.max_regression),
                    no_new_failures: own.no_new_failures.or(base.no_new_failures),
                    max_error_rate: own.max_error_rate.or(base.max_error_rate),
                    max_p95_latency_ms: own.max_p95_latency_ms.or(base.max_p95_latency_ms),
                    non_inferior: own.non_inferior.or(base.non_inferior),
                    min_improvement: own.min_improvement.or(base.min_improvement),
                    max_cost_increase: own.max_cost_increase.or(base.max_cost_increase),
                    min_win_rate: own.min_win_rate.or(base.min_win_rate),
                    pairwise_rubric: own.pairwise_rubric.or(base.pairwise_rubric),
                }),
                (base, own) => own.or(base),
            };
            merged.thresholds = match (merged.thresholds, own.thresholds) {
                (Some(base), Some(own)) => Some(Thresholds {
                    min_pass_rate: own.min_pass_rate.or(base.min_pass_rate),
                    max_error_rate: own.max_error_rate.or(base.max_error_rate),
                }),
                (base, own) => own.or(base),
            };
        }
        merged
    }

    /// The tag policy every tag write obeys.
    pub fn tag_policy(&self) -> crate::store::TagPolicy {
        crate::store::TagPolicy::new(self.protected())
    }

    /// The protected tags: the file's list, or `production`.
    pub fn protected(&self) -> Vec<String> {
        match &self.protected_tags {
            Some(tags) => tags.clone(),
            None => DEFAULT_PROTECTED.iter().map(|t| t.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_settings_override_project_defaults() {
        let config = Config::parse(
            r#"
            base_url = "http://a/v1"
            model = "m"
            concurrency = 8
            [gate]
            min_pass_rate = 0.9
            max_error_rate = 0.1
            [prompts.greet]
            model = "m2"
            evals = ["icontains"]
            [prompts.greet.gate]
            min_pass_rate = 0.95
            "#,
        )
        .unwrap();
        let greet = config.for_prompt("greet");
        assert_eq!(greet.base_url.as_deref(), Some("http://a/v1"));
        assert_eq!(greet.model.as_deref(), Some("m2"));
        assert_eq!(greet.concurrency, Some(8));
        assert_eq!(greet.evals, Some(vec!["icontains".to_string()]));
        let gate = greet.gate.unwrap();
        assert_eq!(gate.min_pass_rate, Some(0.95));
        assert_eq!(gate.max_error_rate, Some(0.1));
        assert_eq!(config.for_prompt("other").model.as_deref(), Some("m"));
    }

    #[test]
    fn protected_tags_default_to_production() {
        assert!(Config::default().tag_policy().is_protected("production"));
        assert!(!Config::default().tag_policy().is_protected("staging"));
        let config = Config::parse("protected_tags = [\"prod\", \"live\"]").unwrap();
        assert!(config.tag_policy().is_protected("live"));
        assert!(!config.tag_policy().is_protected("production"));
        let open = Config::parse("protected_tags = []").unwrap();
        assert!(!open.tag_policy().is_protected("production"));
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors_on_one_line() {
        for text in [
            "modle = \"x\"",
            "concurrency = \"many\"",
            "[prompts.p]\nnope = 1",
            "[prices.m]\ninput_per_mtok = 1",
            "[prices.m]\ninput_per_mtok = -1\noutput_per_mtok = 1",
            "[prices.m]\ninput_per_mtok = 1\noutput_per_mtok = 1\ncached = 2",
            "= broken",
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(!err.contains('\n') && !err.is_empty(), "{text}: {err}");
        }
    }
}
