//! Evaluators: the `Evaluator` type, `--eval` spec parsing and dispatch to each family.
//!
//! Every evaluator is prepared once from its `--eval` spec, so a bad regex, an unreadable
//! schema or rubric, or a missing program is an input error before any request is sent.
//! Scoring never panics on user data: anything an evaluator cannot judge becomes a `Score`
//! with `error: true`, which is never a pass.
//!
//! Each family lives in its own module: string checks in `text`, JSON checks in `json`,
//! edit distance in `similarity`, the latency limit in `latency`, the LLM judge in `judge`
//! and external programs in `command`.

mod command;
mod json;
mod judge;
mod latency;
mod similarity;
mod text;
mod tools;

pub use tools::EXPECTED_COLUMN as EXPECTED_TOOL_CALLS;

use crate::model::JsonObject;
use regex::Regex;

/// One line per kind, for --help and error hints.
pub const KINDS: &str = "exact, contains, icontains, regex:PATTERN, json, json-schema:FILE, similarity:THRESHOLD, max-latency:MS, judge:RUBRIC_FILE, cmd:PROGRAM, tool-call[:subset,any-order], tool-name, tool-args-valid";

/// How much stderr a failing command's reason shows.
const STDERR_EXCERPT: usize = 200;
/// Excerpts of answers and replies inside reasons stay short so reasons stay one line.
const EXCERPT: usize = 80;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("invalid evaluator '{spec}': {reason}")]
    Invalid { spec: String, reason: String },
}

/// `Score` lives in `model` because the store and reports persist it; it is re-exported here
/// so evaluator users need only this module.
pub use crate::model::Score;

fn binary(evaluator: &str, pass: bool, reason: String) -> Score {
    Score {
        evaluator: evaluator.to_string(),
        score: if pass { 1.0 } else { 0.0 },
        pass,
        reason,
        error: false,
    }
}

fn error_score(evaluator: &str, reason: String) -> Score {
    Score {
        evaluator: evaluator.to_string(),
        score: 0.0,
        pass: false,
        reason,
        error: true,
    }
}

/// What an evaluator sees of one answer.
pub struct EvalInput<'a> {
    pub vars: &'a JsonObject,
    pub output: &'a str,
    pub expected: Option<&'a str>,
    pub latency_ms: f64,
    /// The answer's tool calls (none for a text answer), or why they could not be read.
    pub tool_calls: &'a Result<Vec<crate::tool_calls::ToolCall>, String>,
    /// The tools the prompt version declares (its `tools` parameter), if any.
    pub tools: Option<&'a serde_json::Value>,
}

/// No tool calls: what a text answer carries.
pub const NO_CALLS: &Result<Vec<crate::tool_calls::ToolCall>, String> = &Ok(Vec::new());

/// A prepared evaluator: its canonical name (the spec as given), its compiled form, and the
/// sha256 of the file it reads (rubric, schema or program) as it was when prepared.
#[derive(Debug)]
pub struct Evaluator {
    name: String,
    kind: Kind,
    file_digest: Option<String>,
}

#[derive(Debug)]
enum Kind {
    Exact,
    Contains,
    IContains,
    Regex(Regex),
    Json,
    JsonSchema(Box<jsonschema::Validator>),
    Similarity(f64),
    MaxLatency(f64),
    Judge { rubric: String },
    Cmd { program: String, args: Vec<String> },
    ToolCall(crate::tool_calls::Match),
    ToolName,
    ToolArgsValid,
}

/// Whether a spec runs a program or reads a file named in it (`cmd:`, `judge:`,
/// `json-schema:`): what a worker runs of a spec from the store only when allowed. Told from
/// the text alone, before anything is prepared (preparing reads the file).
pub fn reaches_out(spec: &str) -> bool {
    let kind = spec.split_once(':').map_or(spec, |(kind, _)| kind).trim();
    matches!(kind, "cmd" | "judge" | "json-schema")
}

/// A spec as an allowance compares it: the kind and its argument, each trimmed.
pub fn normalized(spec: &str) -> String {
    match spec.split_once(':') {
        Some((kind, arg)) => format!("{}:{}", kind.trim(), arg.trim()),
        None => spec.trim().to_string(),
    }
}

impl Evaluator {
    /// Parses and prepares one `--eval` spec: compiles patterns and schemas, reads rubric
    /// files and checks that programs exist, so that every failure happens before the run.
    ///
    /// `cmd:PROGRAM ARGS...` is split on whitespace: quotes, `$(...)` and other shell syntax
    /// are not interpreted, because the program is run directly, never through a shell.
    pub fn prepare(spec: &str) -> Result<Evaluator, EvalError> {
        let kind = parse_kind(spec).map_err(|reason| EvalError::Invalid {
            spec: spec.to_string(),
            reason,
        })?;
        // What the evaluator reads counts by content: editing a rubric changes what a run
        // means, so experiments made with the old one no longer stand as evidence.
        let file = match (&kind, spec.split_once(':')) {
            (Kind::Judge { .. } | Kind::JsonSchema(_), Some((_, path))) => Some(path.trim()),
            (Kind::Cmd { program, .. }, _) => Some(program.as_str()),
            _ => None,
        };
        let file_digest = file
            .map(|path| crate::dataset::file_hash(std::path::Path::new(path)).unwrap_or_default());
        Ok(Evaluator {
            name: spec.to_string(),
            kind,
            file_digest,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the file this evaluator reads, when it reads one; empty when the file
    /// could not be read as a path (a program found on PATH: its name is its identity).
    pub fn file_digest(&self) -> Option<&str> {
        self.file_digest.as_deref()
    }

    /// Whether this evaluator compares against the row's expected value, so the caller can
    /// refuse a run upfront when the dataset has no expected column.
    pub fn needs_expected(&self) -> bool {
        matches!(
            self.kind,
            Kind::Exact | Kind::Contains | Kind::IContains | Kind::Similarity(_)
        )
    }

    /// Whether this evaluator compares with the row's `expected_tool_calls` column, so the
    /// caller can refuse a run upfront when the dataset has none.
    pub fn needs_expected_tool_calls(&self) -> bool {
        matches!(self.kind, Kind::ToolCall(_) | Kind::ToolName)
    }

    /// Whether this evaluator reads the tools the version declares.
    pub fn needs_tools(&self) -> bool {
        matches!(self.kind, Kind::ToolArgsValid)
    }

    pub fn is_judge(&self) -> bool {
        matches!(self.kind, Kind::Judge { .. })
    }

    /// True for `cmd:`, whose scoring waits on a child process.
    pub fn blocks(&self) -> bool {
        matches!(self.kind, Kind::Cmd { .. })
    }

    /// Scores everything but a judge (a judge here returns an error Score saying it needs the
    /// endpoint). `cmd:` blocks while the child runs.
    pub fn score(&self, input: &EvalInput<'_>) -> Score {
        let name = self.name.as_str();
        match &self.kind {
            Kind::Exact => text::exact(name, input),
            Kind::Contains => text::contains(name, input),
            Kind::IContains => text::icontains(name, input),
            Kind::Regex(re) => text::regex(name, re, input),
            Kind::Json => json::json(name, input),
            Kind::JsonSchema(validator) => json::json_schema(name, validator, input),
            Kind::Similarity(threshold) => similarity::similarity(name, *threshold, input),
            Kind::MaxLatency(max) => latency::max_latency(name, *max, input),
            Kind::Judge { .. } => error_score(
                name,
                "a judge evaluator needs the model endpoint: score it with judge_messages and judge_verdict"
                    .to_string(),
            ),
            Kind::Cmd { program, args } => command::run_cmd(name, program, args, input),
            Kind::ToolCall(how) => tools::tool_call(name, *how, input),
            Kind::ToolName => tools::tool_name(name, input),
            Kind::ToolArgsValid => tools::args_valid(name, input),
        }
    }
}

/// The evaluators used when no --eval is given: `icontains` when the dataset has expected
/// values, none otherwise.
pub fn default_specs(has_expected: bool) -> Vec<String> {
    if has_expected {
        vec!["icontains".to_string()]
    } else {
        Vec::new()
    }
}

fn parse_kind(spec: &str) -> Result<Kind, String> {
    let (kind, arg) = match spec.split_once(':') {
        Some((kind, arg)) => (kind.trim(), Some(arg)),
        None => (spec.trim(), None),
    };
    match (kind, arg) {
        ("", _) => Err(format!("empty evaluator kind; valid kinds: {KINDS}")),
        ("exact" | "contains" | "icontains" | "json", Some(_)) => {
            Err(format!("'{kind}' takes no argument"))
        }
        ("exact", None) => Ok(Kind::Exact),
        ("contains", None) => Ok(Kind::Contains),
        ("icontains", None) => Ok(Kind::IContains),
        ("json", None) => Ok(Kind::Json),
        ("regex", Some(pattern)) => {
            // An empty pattern matches every answer, which is almost surely a typo.
            if pattern.is_empty() {
                return Err("empty pattern (it would match every answer)".to_string());
            }
            Regex::new(pattern).map(Kind::Regex).map_err(|e| {
                format!(
                    "bad regex: {}",
                    crate::text::one_line(&e.to_string(), usize::MAX)
                )
            })
        }
        ("json-schema", Some(file)) => json::prepare_schema(file.trim()),
        ("similarity", Some(t)) => match t.trim().parse::<f64>() {
            Ok(t) if (0.0..=1.0).contains(&t) => Ok(Kind::Similarity(t)),
            _ => Err(format!(
                "threshold '{}' is not a number between 0 and 1",
                t.trim()
            )),
        },
        ("max-latency", Some(ms)) => match ms.trim().parse::<f64>() {
            Ok(ms) if ms.is_finite() && ms > 0.0 => Ok(Kind::MaxLatency(ms)),
            _ => Err(format!(
                "'{}' is not a positive number of milliseconds",
                ms.trim()
            )),
        },
        ("judge", Some(file)) => judge::prepare_judge(file.trim()),
        ("tool-call", options) => tools::prepare_match(options).map(Kind::ToolCall),
        ("tool-name" | "tool-args-valid", Some(_)) => Err(format!("'{kind}' takes no argument")),
        ("tool-name", None) => Ok(Kind::ToolName),
        ("tool-args-valid", None) => Ok(Kind::ToolArgsValid),
        ("cmd", Some(command)) => command::prepare_cmd(command),
        ("regex" | "json-schema" | "similarity" | "max-latency" | "judge" | "cmd", None) => {
            let usage = KINDS
                .split(", ")
                .find(|k| k.split(':').next() == Some(kind))
                .unwrap_or(kind);
            Err(format!("'{kind}' needs an argument: {usage}"))
        }
        _ => Err(format!("unknown kind '{kind}'; valid kinds: {KINDS}")),
    }
}

fn with_expected(name: &str, input: &EvalInput<'_>, f: impl FnOnce(&str) -> Score) -> Score {
    match input.expected {
        Some(expected) => f(expected),
        None => error_score(name, "no expected value for this row".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;
    use std::path::{Path, PathBuf};

    pub(super) fn vars() -> JsonObject {
        let mut v = JsonObject::new();
        v.insert("city".to_string(), json!("Paris"));
        v
    }

    pub(super) fn run(spec: &str, output: &str, expected: Option<&str>) -> Score {
        run_latency(spec, output, expected, 100.0)
    }

    pub(super) fn run_latency(
        spec: &str,
        output: &str,
        expected: Option<&str>,
        latency_ms: f64,
    ) -> Score {
        let ev = Evaluator::prepare(spec).expect("spec prepares");
        let vars = vars();
        let score = ev.score(&EvalInput {
            vars: &vars,
            output,
            expected,
            latency_ms,
            tool_calls: NO_CALLS,
            tools: None,
        });
        check_invariants(&score, spec);
        score
    }

    pub(super) fn check_invariants(score: &Score, spec: &str) {
        assert_eq!(score.evaluator, spec);
        assert!((0.0..=1.0).contains(&score.score), "{score:?}");
        assert!(!score.reason.trim().is_empty(), "{score:?}");
        assert!(!score.reason.contains('\n'), "{score:?}");
        if score.error {
            assert!(!score.pass && score.score == 0.0, "{score:?}");
        }
    }

    pub(super) fn prepare_err(spec: &str) -> String {
        match Evaluator::prepare(spec) {
            Ok(ev) => panic!("{spec} should not prepare: {ev:?}"),
            Err(e) => e.to_string(),
        }
    }

    pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// Scores each `(spec, output, expected, pass, score)` case and checks the outcome.
    pub(super) fn check_table(cases: &[(&str, &str, Option<&str>, bool, f64)]) {
        for &(spec, output, expected, pass, score) in cases {
            let s = run(spec, output, expected);
            assert_eq!(
                (s.pass, s.error),
                (pass, false),
                "{spec} on {output:?}: {s:?}"
            );
            assert!(
                (s.score - score).abs() < 1e-9,
                "{spec} on {output:?}: {s:?}"
            );
        }
    }

    #[test]
    fn evaluator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Evaluator>();
    }

    #[test]
    fn missing_or_empty_expected_is_an_error() {
        for spec in ["exact", "contains", "icontains", "similarity:0.5"] {
            let s = run(spec, "Paris", None);
            assert!(s.error && !s.pass, "{s:?}");
            assert_eq!(s.reason, "no expected value for this row");
            assert!(Evaluator::prepare(spec).unwrap().needs_expected());
        }
        for spec in ["contains", "icontains"] {
            let s = run(spec, "Paris", Some("  "));
            assert!(s.error && !s.pass, "{s:?}");
        }
        for spec in ["regex:x", "json", "max-latency:10"] {
            assert!(
                !Evaluator::prepare(spec).unwrap().needs_expected(),
                "{spec}"
            );
        }
    }

    #[test]
    fn spec_errors() {
        let cases = [
            ("", "empty evaluator kind"),
            ("fuzzy", "unknown kind 'fuzzy'"),
            ("Exact", "unknown kind"),
            ("exact:foo", "takes no argument"),
            ("json:", "takes no argument"),
            ("regex", "needs an argument: regex:PATTERN"),
            ("regex:", "empty pattern"),
            ("regex:(unclosed", "bad regex"),
            ("similarity", "needs an argument"),
            ("similarity:", "not a number between 0 and 1"),
            ("similarity:abc", "not a number"),
            ("similarity:1.01", "between 0 and 1"),
            ("similarity:-0.1", "between 0 and 1"),
            ("similarity:NaN", "between 0 and 1"),
            ("max-latency:0", "positive number"),
            ("max-latency:-5", "positive number"),
            ("max-latency:inf", "positive number"),
            ("max-latency:fast", "positive number"),
            ("json-schema:", "no schema file"),
            ("judge:", "no rubric file"),
            (
                "judge:/nonexistent/rubric.md",
                "cannot read rubric file '/nonexistent/rubric.md'",
            ),
            ("cmd:", "no program"),
            ("cmd:   ", "no program"),
            ("cmd:/nonexistent/prog --x", "does not exist"),
            ("cmd:surely-not-a-real-program-xyz", "not found"),
        ];
        for (spec, needle) in cases {
            let msg = prepare_err(spec);
            assert!(msg.contains(needle), "{spec:?}: {msg}");
            assert!(
                msg.starts_with(&format!("invalid evaluator '{spec}'")),
                "{msg}"
            );
        }
        assert!(prepare_err("bogus").contains(KINDS));
    }

    #[test]
    fn names_are_the_spec_as_given() {
        for spec in [
            "regex:^Hello",
            "similarity:0.8",
            "max-latency:1500",
            "exact",
        ] {
            assert_eq!(Evaluator::prepare(spec).unwrap().name(), spec);
        }
    }

    #[test]
    fn defaults_and_call_failed() {
        assert_eq!(default_specs(true), vec!["icontains".to_string()]);
        assert!(default_specs(false).is_empty());
        for spec in default_specs(true) {
            Evaluator::prepare(&spec).unwrap();
        }
        let s = Score::call_failed("exact");
        check_invariants(&s, "exact");
        assert_eq!((s.pass, s.score, s.error), (false, 0.0, false));
        assert_eq!(s.reason, "the call failed");
    }
}
