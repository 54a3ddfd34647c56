//! JSON checks: `json` and `json-schema:FILE`, and the code-fence rule that judge and command
//! verdicts are read with too. The schema file is read once, when the evaluator is prepared;
//! scoring reads no file and sends nothing.

use super::{EvalInput, Kind, STDERR_EXCERPT, Score, binary};
use crate::text::one_line;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

pub(super) fn json(name: &str, input: &EvalInput<'_>) -> Score {
    match parse_json_output::<IgnoredAny>(input.output) {
        Ok((_, fenced)) => binary(name, true, format!("valid JSON{}", fenced_note(fenced))),
        Err(e) => binary(name, false, format!("not valid JSON: {e}")),
    }
}

pub(super) fn json_schema(
    name: &str,
    validator: &jsonschema::Validator,
    input: &EvalInput<'_>,
) -> Score {
    match parse_json_output::<Value>(input.output) {
        Err(e) => binary(name, false, format!("not valid JSON: {e}")),
        Ok((value, fenced)) => match validator.validate(&value) {
            Ok(()) => binary(
                name,
                true,
                format!("valid against the schema{}", fenced_note(fenced)),
            ),
            Err(err) => {
                let path = err.instance_path().as_str();
                let at = if path.is_empty() { "the root" } else { path };
                binary(
                    name,
                    false,
                    format!(
                        "schema violation at {at}: {}",
                        one_line(&err.to_string(), STDERR_EXCERPT)
                    ),
                )
            }
        },
    }
}

pub(super) fn prepare_schema(file: &str) -> Result<Kind, String> {
    if file.is_empty() {
        return Err("no schema file given: json-schema:FILE".to_string());
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read schema file '{file}': {e}"))?;
    let schema: Value = crate::json::parse(&text)
        .map_err(|e| format!("schema file '{file}' is not valid JSON: {e}"))?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| {
        format!(
            "schema file '{file}' is not a valid JSON Schema: {}",
            one_line(&e.to_string(), STDERR_EXCERPT)
        )
    })?;
    Ok(Kind::JsonSchema(Box::new(validator)))
}

fn fenced_note(fenced: bool) -> &'static str {
    if fenced { " (inside a code fence)" } else { "" }
}

/// Parses trimmed output as JSON, or the body of a single ```json / ``` fence around it
/// (models often fence JSON even when told not to). Returns whether a fence was removed.
fn parse_json_output<T: DeserializeOwned>(output: &str) -> Result<(T, bool), serde_json::Error> {
    let (body, fenced) = unfence(output);
    serde_json::from_str(body).map(|v| (v, fenced))
}

/// Strips one code fence whose info string is empty or `json`; anything else is returned
/// trimmed but untouched, so it fails to parse as JSON.
pub(super) fn unfence(text: &str) -> (&str, bool) {
    let trimmed = text.trim();
    let Some(body) = trimmed
        .strip_prefix("```")
        .and_then(|rest| rest.strip_suffix("```"))
    else {
        return (trimmed, false);
    };
    let Some((info, inner)) = body.split_once('\n') else {
        return (trimmed, false);
    };
    let info = info.trim();
    if !(info.is_empty() || info.eq_ignore_ascii_case("json")) || inner.contains("```") {
        return (trimmed, false);
    }
    (inner.trim(), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tests::{check_table, prepare_err, run, write};

    #[test]
    fn pure_kinds_table() {
        // (spec, output, expected, pass, score)
        let cases: &[(&str, &str, Option<&str>, bool, f64)] = &[
            ("json", r#"{"a": [1, 2]}"#, None, true, 1.0),
            ("json", "  42  ", None, true, 1.0),
            ("json", "```json\n{\"a\": 1}\n```", None, true, 1.0),
            ("json", "```\n[1, 2]\n```", None, true, 1.0),
            ("json", "```JSON\n{}\n```\n", None, true, 1.0),
            ("json", "```python\n{}\n```", None, false, 0.0),
            (
                "json",
                "```json\n{}\n```\n```json\n{}\n```",
                None,
                false,
                0.0,
            ),
            ("json", "Sure! {\"a\": 1}", None, false, 0.0),
            ("json", r#"{"a": }"#, None, false, 0.0),
            ("json", "[1, 2,]", None, false, 0.0),
            ("json", r#"{"a": 1} {"b": 2}"#, None, false, 0.0),
            ("json", r#""\x""#, None, false, 0.0),
            ("json", "", None, false, 0.0),
        ];
        check_table(cases);
    }

    #[test]
    fn reasons_explain() {
        let fenced = run("json", "```json\n{}\n```", None);
        assert!(fenced.reason.contains("code fence"), "{fenced:?}");
        assert!(!run("json", "{}", None).reason.contains("fence"));
        let bad = run("json", "{\n\"a\": }", None);
        assert!(bad.reason.starts_with("not valid JSON"), "{bad:?}");
    }

    #[test]
    fn json_schema() {
        let dir = tempfile::tempdir().unwrap();
        let schema = write(
            dir.path(),
            "schema.json",
            r#"{"type": "object", "required": ["name", "age"],
                "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}"#,
        );
        let spec = format!("json-schema:{}", schema.display());
        let cases = [
            (r#"{"name": "Ann", "age": 3}"#, true, None),
            ("```json\n{\"name\": \"Ann\", \"age\": 3}\n```", true, None),
            (r#"{"name": "Ann", "age": -1}"#, false, Some("/age")),
            (r#"{"name": 5, "age": 1}"#, false, Some("/name")),
            (r#"{"name": "Ann"}"#, false, Some("the root")),
            ("[1]", false, Some("the root")),
            ("not json", false, Some("not valid JSON")),
        ];
        for (output, pass, needle) in cases {
            let s = run(&spec, output, None);
            assert_eq!((s.pass, s.error), (pass, false), "{output}: {s:?}");
            if let Some(needle) = needle {
                assert!(s.reason.contains(needle), "{output}: {s:?}");
            }
        }
        assert!(
            run(&spec, "```\n{\"name\": \"A\", \"age\": 1}\n```", None)
                .reason
                .contains("fence")
        );

        let missing = dir.path().join("missing.json");
        let msg = prepare_err(&format!("json-schema:{}", missing.display()));
        assert!(
            msg.contains("cannot read schema file") && msg.contains("missing.json"),
            "{msg}"
        );
        let not_json = write(dir.path(), "bad.json", "{ nope");
        let msg = prepare_err(&format!("json-schema:{}", not_json.display()));
        assert!(
            msg.contains("not valid JSON") && msg.contains("bad.json"),
            "{msg}"
        );
        let not_schema = write(dir.path(), "weird.json", r#"{"type": 12}"#);
        let msg = prepare_err(&format!("json-schema:{}", not_schema.display()));
        assert!(
            msg.contains("not a valid JSON Schema") && msg.contains("weird.json"),
            "{msg}"
        );
    }

    #[test]
    fn unfence_rules() {
        assert_eq!(unfence(" {} "), ("{}", false));
        assert_eq!(unfence("```json\n {} \n```"), ("{}", true));
        assert_eq!(unfence("```\n[]\n```"), ("[]", true));
        assert_eq!(unfence("```json {}```"), ("```json {}```", false));
        assert_eq!(unfence("``````"), ("``````", false));
        assert_eq!(unfence("```"), ("```", false));
    }
}
