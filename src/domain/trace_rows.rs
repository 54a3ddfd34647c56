//! Production spans as dataset rows: the conditions a selection puts on the annotations that
//! score a span (`score.NAME < 0.5`, a label), the expected answer a reviewer's correction
//! gives, and the JSON Lines row a span becomes (its template variables as columns, beside
//! runner's own `id`, `expected`, `span_id` and `trace_id`).
//!
//! Functions of spans and annotations only: it must not open the store, read or write a file,
//! or know the command line (the `dataset` command turns flags into a `Selection` and writes
//! the lines).

use crate::trace::{Annotation, Span, Target};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

/// The row's identity (the dataset reader's id column): the span id.
pub const ID: &str = "id";
/// The expected answer (the column experiments compare with by default).
pub const EXPECTED: &str = "expected";
pub const SPAN_ID: &str = "span_id";
pub const TRACE_ID: &str = "trace_id";
/// The columns runner writes beside a span's variables; a variable of one of these names is
/// written under another (see `Row::renamed`).
pub const RESERVED: [&str; 4] = [ID, EXPECTED, SPAN_ID, TRACE_ID];
/// An annotation of this name corrects its span: its explanation (else its label) is the
/// answer the call should have given.
pub const CORRECTION: &str = "correction";
/// The metadata key by which any annotation gives the answer the call should have given.
pub const EXPECTED_KEY: &str = "expected";
/// What a renamed variable's name starts with (`id` → `var_id`).
pub const RENAMED_PREFIX: &str = "var_";

/// A comparison of a score with a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    /// The operators as written, longest first so that `<=` is not read as `<`.
    const WRITTEN: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds(self, score: f64, value: f64) -> bool {
        match self {
            Op::Lt => score < value,
            Op::Le => score <= value,
            Op::Gt => score > value,
            Op::Ge => score >= value,
            Op::Eq => score == value,
            Op::Ne => score != value,
        }
    }
}

/// One condition on the annotations that score a span.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// An annotation named `name` whose score compares so with `value`.
    Score { name: String, op: Op, value: f64 },
    /// An annotation named `name` with exactly this label.
    Label { name: String, label: String },
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Score { name, op, value } => {
                write!(f, "score.{name} {} {value}", op.as_str())
            }
            Condition::Label { name, label } => write!(f, "{name}={label}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    #[error("'{text}' is not score.NAME OP NUMBER: {reason}")]
    Score { text: String, reason: &'static str },
    #[error("'{text}' is not NAME=VALUE: {reason}")]
    Label { text: String, reason: &'static str },
}

impl Condition {
    /// `score.NAME OP NUMBER`, OP one of `<`, `<=`, `>`, `>=`, `==`, `!=`, spaces around it
    /// optional. NAME is everything between `score.` and the operator, trimmed.
    pub fn parse_score(text: &str) -> Result<Condition, ConditionError> {
        let bad = |reason| ConditionError::Score {
            text: text.to_string(),
            reason,
        };
        let rest = text
            .trim()
            .strip_prefix("score.")
            .ok_or_else(|| bad("it must start with score."))?;
        let at = rest
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| bad("no operator (<, <=, >, >=, ==, !=)"))?;
        let (name, tail) = rest.split_at(at);
        let (op, number) = Op::WRITTEN
            .iter()
            .find_map(|(written, op)| tail.strip_prefix(written).map(|n| (*op, n)))
            .ok_or_else(|| bad("the operator is one of <, <=, >, >=, ==, !="))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("no annotation name after score."));
        }
        let value = number
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad("the right side must be a number"))?;
        Ok(Condition::Score {
            name: name.to_string(),
            op,
            value,
        })
    }

    /// `NAME=VALUE`: split at the first `=`; the name is trimmed, the label taken as written.
    pub fn parse_label(text: &str) -> Result<Condition, ConditionError> {
        let bad = |reason| ConditionError::Label {
            text: text.to_string(),
            reason,
        };
        let (name, label) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("no annotation name before '='"));
        }
        Ok(Condition::Label {
            name: name.to_string(),
            label: label.to_string(),
        })
    }

    /// Whether any of the annotations scoring a span satisfies the condition.
    pub fn holds(&self, annotations: &[Annotation]) -> bool {
        annotations.iter().any(|a| match self {
            Condition::Score { name, op, value } => {
                a.name == *name && a.score.is_some_and(|s| op.holds(s, *value))
            }
            Condition::Label { name, label } => {
                a.name == *name && a.label.as_deref() == Some(label.as_str())
            }
        })
    }
}

/// The conditions a span's annotations must all meet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub conditions: Vec<Condition>,
}

impl Selection {
    pub fn keeps(&self, annotations: &[Annotation]) -> bool {
        self.conditions.iter().all(|c| c.holds(annotations))
    }
}

/// The answer the call should have given, from the annotations scoring its span: the value
/// of an annotation's metadata key `expected` (any JSON value but null), else, for an
/// annotation named `correction`, its explanation, else its label (when not blank). When
/// several annotations give one, the most recently written wins (a span's own annotation
/// over its trace's when written in the same millisecond).
pub fn expected(annotations: &[Annotation]) -> Option<Value> {
    annotations
        .iter()
        .filter_map(|a| correction(a).map(|value| (a, value)))
        .max_by_key(|(a, _)| (a.time_ms, a.target == Target::Span))
        .map(|(_, value)| value)
}

fn correction(annotation: &Annotation) -> Option<Value> {
    if let Ok(Value::Object(metadata)) = serde_json::from_str::<Value>(&annotation.metadata)
        && let Some(value) = metadata.get(EXPECTED_KEY).filter(|v| !v.is_null())
    {
        return Some(value.clone());
    }
    if annotation.name != CORRECTION {
        return None;
    }
    [&annotation.explanation, &annotation.label]
        .into_iter()
        .flatten()
        .find(|text| !text.trim().is_empty())
        .map(|text| Value::String(text.clone()))
}

/// One dataset row made from a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    /// The row as one line of JSON, without its newline.
    pub line: String,
    /// Variables written under another name because runner's columns use theirs: (the
    /// variable's name, the column it was written as).
    pub renamed: Vec<(String, String)>,
}

/// Makes rows of spans one after the other, keeping their ids unique within one file.
#[derive(Debug, Default)]
pub struct Rows {
    ids: HashSet<String>,
}

impl Rows {
    /// The row of a span scored by `annotations`, or None when the span recorded no template
    /// variables (none, or text that is not a JSON object).
    ///
    /// Columns, in this order: `id` (the span id; `TRACE_ID:SPAN_ID` for a span id already
    /// given to an earlier row, which only two traces reusing one span id can cause), the
    /// variables (by name), `expected` (when a correction gives one), `span_id`, `trace_id`.
    pub fn row(&mut self, span: &Span, annotations: &[Annotation]) -> Option<Row> {
        let Ok(Value::Object(variables)) =
            serde_json::from_str::<Value>(span.variables.as_deref()?)
        else {
            return None;
        };
        let mut id = span.span_id.clone();
        if self.ids.contains(&id) {
            id = format!("{}:{}", span.trace_id, span.span_id);
        }
        self.ids.insert(id.clone());
        let (variables, renamed) = set_aside_reserved(variables);
        let mut line = String::from("{");
        let mut put = |key: &str, value: &Value| {
            if line.len() > 1 {
                line.push(',');
            }
            line.push_str(&Value::String(key.to_string()).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        };
        put(ID, &Value::String(id.clone()));
        for (key, value) in &variables {
            put(key, value);
        }
        if let Some(value) = expected(annotations) {
            put(EXPECTED, &value);
        }
        put(SPAN_ID, &Value::String(span.span_id.clone()));
        put(TRACE_ID, &Value::String(span.trace_id.clone()));
        line.push('}');
        Some(Row { id, line, renamed })
    }
}

/// The variables with each one named like a runner column moved to `var_NAME` (or
/// `var_var_NAME`, … when that name is taken too).
fn set_aside_reserved(
    mut variables: Map<String, Value>,
) -> (Map<String, Value>, Vec<(String, String)>) {
    let mut renamed = Vec::new();
    for name in RESERVED {
        let Some(value) = variables.remove(name) else {
            continue;
        };
        let mut column = format!("{RENAMED_PREFIX}{name}");
        while variables.contains_key(&column) || RESERVED.contains(&column.as_str()) {
            column = format!("{RENAMED_PREFIX}{column}");
        }
        variables.insert(column.clone(), value);
        renamed.push((name.to_string(), column));
    }
    (variables, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::SpanStatus;
    use serde_json::json;

    fn annotation(name: &str, score: Option<f64>, label: Option<&str>) -> Annotation {
        Annotation {
            target: Target::Span,
            target_id: "00000000000000a1".into(),
            name: name.into(),
            annotator_kind: "HUMAN".into(),
            label: label.map(str::to_string),
            score,
            explanation: None,
            metadata: "{}".into(),
            identifier: String::new(),
            source: "api".into(),
            time_ms: 1_000,
        }
    }

    fn span(span_id: &str, trace_id: &str, variables: Option<&str>) -> Span {
        Span {
            trace_id: trace_id.into(),
            span_id: span_id.into(),
            parent_id: None,
            project: "default".into(),
            experiment: false,
            service: None,
            sender: None,
            name: "ChatCompletion".into(),
            kind: Some("LLM".into()),
            start_ms: 0,
            end_ms: 10,
            status: SpanStatus::Ok,
            error: None,
            link: None,
            model: None,
            input_tokens: None,
            output_tokens: None,
            variables: variables.map(str::to_string),
            input: None,
            output: None,
            attributes: "{}".into(),
        }
    }

    fn score(name: &str, op: Op, value: f64) -> Condition {
        Condition::Score {
            name: name.into(),
            op,
            value,
        }
    }

    #[test]
    fn score_conditions_parse_with_every_operator_and_spacing() {
        let cases = [
            ("score.correctness < 0.5", score("correctness", Op::Lt, 0.5)),
            ("score.correctness<0.5", score("correctness", Op::Lt, 0.5)),
            (
                "score.correctness <= 0.5",
                score("correctness", Op::Le, 0.5),
            ),
            ("  score.helpful >1", score("helpful", Op::Gt, 1.0)),
            ("score.helpful >= -2e-1", score("helpful", Op::Ge, -0.2)),
            ("score.exact == 1", score("exact", Op::Eq, 1.0)),
            ("score.exact != 0", score("exact", Op::Ne, 0.0)),
            (
                "score.tone of voice < 3",
                score("tone of voice", Op::Lt, 3.0),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Condition::parse_score(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_score_conditions_say_what_is_wrong() {
        let cases = [
            ("correctness < 0.5", "must start with score."),
            ("score.correctness", "no operator"),
            ("score.correctness = 0.5", "one of"),
            ("score.correctness =< 0.5", "one of"),
            ("score. < 0.5", "no annotation name"),
            ("score.correctness < high", "must be a number"),
            ("score.correctness < ", "must be a number"),
            ("score.correctness < NaN", "must be a number"),
            ("score.correctness < inf", "must be a number"),
            ("score.correctness << 1", "must be a number"),
        ];
        for (text, says) in cases {
            let error = Condition::parse_score(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
            assert!(error.contains(text), "{text}: {error}");
        }
    }

    #[test]
    fn labels_split_at_the_first_equals_sign() {
        assert_eq!(
            Condition::parse_label("thumbs=down"),
            Ok(Condition::Label {
                name: "thumbs".into(),
                label: "down".into()
            })
        );
        assert_eq!(
            Condition::parse_label("verdict=a=b"),
            Ok(Condition::Label {
                name: "verdict".into(),
                label: "a=b".into()
            })
        );
        assert!(Condition::parse_label("thumbs").is_err());
        assert!(Condition::parse_label(" =down").is_err());
    }

    #[test]
    fn a_condition_holds_when_any_annotation_of_its_name_meets_it() {
        let annotations = [
            annotation("correctness", Some(0.2), None),
            annotation("correctness", Some(0.9), Some("good")),
            annotation("thumbs", None, Some("down")),
        ];
        let cases = [
            (score("correctness", Op::Lt, 0.5), true),
            (score("correctness", Op::Gt, 0.95), false),
            (score("correctness", Op::Eq, 0.9), true),
            (score("correctness", Op::Ne, 0.2), true),
            (score("helpfulness", Op::Lt, 1.0), false),
            // A label without a score never meets a score condition.
            (score("thumbs", Op::Ne, 0.0), false),
            (Condition::parse_label("thumbs=down").unwrap(), true),
            (Condition::parse_label("thumbs=up").unwrap(), false),
            (Condition::parse_label("correctness=good").unwrap(), true),
            (Condition::parse_label("Thumbs=down").unwrap(), false),
        ];
        for (condition, want) in cases {
            assert_eq!(condition.holds(&annotations), want, "{condition}");
        }
        let both = Selection {
            conditions: vec![
                score("correctness", Op::Lt, 0.5),
                Condition::parse_label("thumbs=down").unwrap(),
            ],
        };
        assert!(both.keeps(&annotations));
        assert!(!both.keeps(&annotations[..2]));
        assert!(Selection::default().keeps(&[]));
    }

    #[test]
    fn the_expected_answer_comes_from_metadata_or_a_correction_the_newest_winning() {
        let mut by_metadata = annotation("review", Some(0.0), None);
        by_metadata.metadata = r#"{"expected": "Paris", "by": "ada"}"#.into();
        assert_eq!(expected(&[by_metadata.clone()]), Some(json!("Paris")));

        let mut correction = annotation(CORRECTION, None, Some("refund"));
        correction.explanation = Some("Your refund is on its way.".into());
        assert_eq!(
            expected(&[correction.clone()]),
            Some(json!("Your refund is on its way."))
        );
        correction.explanation = Some("  ".into());
        assert_eq!(expected(&[correction.clone()]), Some(json!("refund")));
        correction.label = None;
        assert_eq!(expected(&[correction.clone()]), None);

        // Only `correction` gives its explanation; any annotation may carry the metadata key.
        let mut explained = annotation("review", Some(0.0), Some("bad"));
        explained.explanation = Some("wrong city".into());
        assert_eq!(expected(&[explained]), None);
        let mut null = annotation("review", None, None);
        null.metadata = r#"{"expected": null}"#.into();
        let mut broken = annotation("review", None, None);
        broken.metadata = "not json".into();
        assert_eq!(expected(&[null, broken]), None);

        let mut older = by_metadata.clone();
        older.time_ms = 10;
        older.metadata = r#"{"expected": {"city": "Lyon"}}"#.into();
        let mut newer = annotation(CORRECTION, None, Some("Marseille"));
        newer.time_ms = 20;
        newer.target = Target::Trace;
        assert_eq!(
            expected(&[newer.clone(), older.clone()]),
            Some(json!("Marseille"))
        );
        // In the same millisecond the span's own annotation wins over its trace's.
        older.time_ms = 20;
        assert_eq!(expected(&[newer, older]), Some(json!({"city": "Lyon"})));
    }

    #[test]
    fn a_row_holds_the_variables_the_correction_and_the_ids_in_a_fixed_order() {
        let mut rows = Rows::default();
        let s = span(
            "00000000000000a1",
            "0000000000000001000000000000000b",
            Some(r#"{"query":"Où est \"ma\" commande?\n</script>","n":3,"nested":{"b":[1,2]}}"#),
        );
        let mut fix = annotation(CORRECTION, None, None);
        fix.explanation = Some("Elle arrive.".into());
        let row = rows.row(&s, &[fix]).unwrap();
        assert_eq!(row.id, "00000000000000a1");
        assert_eq!(
            row.line,
            r#"{"id":"00000000000000a1","n":3,"nested":{"b":[1,2]},"query":"Où est \"ma\" commande?\n</script>","expected":"Elle arrive.","span_id":"00000000000000a1","trace_id":"0000000000000001000000000000000b"}"#
        );
        assert!(!row.line.contains('\n'), "one row, one line");
        assert!(row.renamed.is_empty());
        let parsed: Value = serde_json::from_str(&row.line).unwrap();
        assert_eq!(parsed["query"], "Où est \"ma\" commande?\n</script>");

        // Without a correction there is no expected column.
        let plain = rows
            .row(&span("00000000000000a2", "t2", Some("{}")), &[])
            .unwrap();
        assert_eq!(
            plain.line,
            r#"{"id":"00000000000000a2","span_id":"00000000000000a2","trace_id":"t2"}"#
        );
    }

    #[test]
    fn spans_without_variables_make_no_row() {
        let mut rows = Rows::default();
        for variables in [None, Some("[1,2]"), Some("\"text\""), Some("{broken")] {
            assert_eq!(
                rows.row(&span("a", "t", variables), &[]),
                None,
                "{variables:?}"
            );
        }
    }

    #[test]
    fn variables_named_like_runner_columns_are_set_aside_and_ids_stay_unique() {
        let mut rows = Rows::default();
        let s = span(
            "00000000000000a1",
            "t1",
            Some(r#"{"id":42,"expected":"x","var_id":"taken","trace_id":"mine"}"#),
        );
        let row = rows.row(&s, &[]).unwrap();
        assert_eq!(
            row.line,
            r#"{"id":"00000000000000a1","var_expected":"x","var_id":"taken","var_trace_id":"mine","var_var_id":42,"span_id":"00000000000000a1","trace_id":"t1"}"#
        );
        assert_eq!(
            row.renamed,
            [
                ("id".to_string(), "var_var_id".to_string()),
                ("expected".to_string(), "var_expected".to_string()),
                ("trace_id".to_string(), "var_trace_id".to_string()),
            ]
        );
        // A span id another trace already used gets its trace id in front.
        let again = rows
            .row(&span("00000000000000a1", "t2", Some("{}")), &[])
            .unwrap();
        assert_eq!(again.id, "t2:00000000000000a1");
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,40}") {
            let _ = Condition::parse_score(&text);
            let _ = Condition::parse_label(&text);
        }

        #[test]
        fn a_written_score_condition_reads_back(
            name in "[a-z][a-z_ ]{0,12}[a-z]",
            op in proptest::sample::select(Op::WRITTEN.map(|(_, op)| op).to_vec()),
            value in -1.0e6f64..1.0e6,
        ) {
            let condition = score(&name, op, value);
            proptest::prop_assert_eq!(Condition::parse_score(&condition.to_string()), Ok(condition));
        }
    }
}
