//! Validating what a person typed or wrote: names, `KEY=VALUE` assignments, text and
//! JSON / YAML files. Every failure is an input error (exit 2) that names the flag or file. It
//! checks values, not the command line: clap's types take the flags apart, and nothing here opens
//! the store, sends a request or prints.

use crate::error::{Error, Result};
use crate::model::{JsonObject, NameKind, check_name};
use serde_json::Value;

/// A name as an error message shows it: quoted with escapes (a newline stays on one line) and
/// cut short.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(60).collect();
    if cut.len() < name.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

pub fn check_prompt_name(name: &str) -> Result<()> {
    check_name(NameKind::Prompt, name).map_err(|reason| {
        Error::invalid(format!("invalid prompt name {}: {reason}", shown(name)))
            .with_hint("names use letters, digits, '_', '-' and '.', 1 to 128 characters")
    })
}

pub fn check_tag_name(tag: &str) -> Result<()> {
    check_name(NameKind::Tag, tag).map_err(|reason| {
        Error::invalid(format!("invalid tag name {}: {reason}", shown(tag)))
            .with_hint("tags use letters, digits, '_', '-' and '.', and are not only digits")
    })
}

/// Splits `KEY=VALUE` for the named flag.
pub fn split_assignment<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str)> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value)),
        _ => Err(
            Error::invalid(format!("invalid {flag} '{text}': expected KEY=VALUE"))
                .with_hint(format!("for example {flag} temperature=0.7")),
        ),
    }
}

/// Reads a `--param` / `--meta` value: JSON where it is valid JSON (numbers, booleans, null,
/// objects, lists, quoted strings), otherwise the text itself. Text that opens like a JSON
/// object, list or string but does not parse is refused rather than silently kept as text.
pub fn parse_value(flag: &str, key: &str, raw: &str) -> Result<Value> {
    match crate::json::parse(raw) {
        Ok(value) => Ok(value),
        Err(e) if raw.trim_start().starts_with(['{', '[', '"']) => Err(Error::invalid(format!(
            "invalid JSON in {flag} {key}: {e}"
        ))
        .with_hint(format!(
            "quote the whole assignment for the shell, e.g. {flag} '{key}={{\"type\": \"json_object\"}}'"
        ))),
        Err(_) => Ok(Value::String(raw.to_string())),
    }
}

/// Applies `KEY=VALUE` assignments to an object; a JSON `null` removes the key.
pub fn apply_assignments(flag: &str, base: &mut JsonObject, assignments: &[String]) -> Result<()> {
    for text in assignments {
        let (key, raw) = split_assignment(flag, text)?;
        match parse_value(flag, key, raw)? {
            Value::Null => {
                base.remove(key);
            }
            value => {
                if flag == "--param" {
                    check_param(key, &value)?;
                    if let Some(warning) = unknown_param(key) {
                        // Said once, however often the flags are read.
                        static SAID: std::sync::Mutex<Vec<String>> =
                            std::sync::Mutex::new(Vec::new());
                        let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
                        if !said.contains(&warning) {
                            crate::note!("warning: --param {warning}");
                            said.push(warning);
                        }
                    }
                }
                base.insert(key.to_string(), value);
            }
        }
    }
    Ok(())
}

/// What OpenAI's chat completions take for the parameters runner knows; others pass through
/// unchecked (providers add their own).
/// What a parameter must be, in words, and the check.
type Expected = (&'static str, fn(&Value) -> bool);

fn expected_type(key: &str) -> Option<Expected> {
    fn within(v: &Value, lo: f64, hi: f64) -> bool {
        v.as_f64().is_some_and(|x| (lo..=hi).contains(&x))
    }
    Some(match key {
        "temperature" => ("a number from 0 to 2", |v| within(v, 0.0, 2.0)),
        "top_p" => ("a number from 0 to 1", |v| within(v, 0.0, 1.0)),
        "presence_penalty" | "frequency_penalty" => {
            ("a number from -2 to 2", |v| within(v, -2.0, 2.0))
        }
        "max_tokens" | "max_completion_tokens" | "n" => ("a whole number of at least 1", |v| {
            v.as_u64().is_some_and(|n| n >= 1)
        }),
        "seed" => ("a whole number", |v| v.is_i64() || v.is_u64()),
        "top_logprobs" => ("a whole number from 0 to 20", |v| {
            v.as_u64().is_some_and(|n| n <= 20)
        }),
        "logprobs" | "parallel_tool_calls" | "stream" => ("true or false", Value::is_boolean),
        "stop" => ("a string or a list of strings", |v| {
            v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        }),
        "response_format" | "logit_bias" => ("a JSON object", Value::is_object),
        "tools" => ("a JSON list", Value::is_array),
        "tool_choice" => ("a string or a JSON object", |v| {
            v.is_string() || v.is_object()
        }),
        "user" => ("a string", Value::is_string),
        _ => return None,
    })
}

/// Refuses a known invocation parameter of the wrong type (`temperature=0.7.1` would be
/// stored as text and rejected by every endpoint at run time).
pub fn check_param(key: &str, value: &Value) -> Result<()> {
    match param_problem(key, value) {
        Some(problem) => Err(Error::invalid(format!("--param {key}={value}: {problem}"))
            .with_hint(format!("for example --param {key}={}", example_of(key)))),
        None => Ok(()),
    }
}

/// The parameters of OpenAI's chat completions runner knows (and checks the type of).
const KNOWN_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "top_logprobs",
    "logprobs",
    "parallel_tool_calls",
    "stream",
    "stop",
    "response_format",
    "logit_bias",
    "tools",
    "tool_choice",
    "user",
    "reasoning_effort",
    "modalities",
    "metadata",
    "store",
    "service_tier",
    "prediction",
    "audio",
    "stream_options",
    "verbosity",
    "web_search_options",
];

/// A warning for a parameter OpenAI's chat completions do not take (a typo such as
/// `temprature`, which an endpoint would refuse or ignore), naming the nearest one it takes;
/// None for a parameter it knows.
pub fn unknown_param(key: &str) -> Option<String> {
    if KNOWN_PARAMS.contains(&key) {
        return None;
    }
    let nearest = KNOWN_PARAMS
        .iter()
        .map(|known| (strsim::damerau_levenshtein(key, known), *known))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    Some(match nearest {
        Some((_, known)) => format!(
            "{key}: not a parameter of OpenAI's chat completions (did you mean {known}?); kept as written"
        ),
        None => format!(
            "{key}: not a parameter of OpenAI's chat completions; kept as written (another provider's, say)"
        ),
    })
}

/// What is wrong with a known invocation parameter's value (`temperature must be a number
/// from 0 to 2`), or None when it is fine or the parameter is not one runner knows.
pub fn param_problem(key: &str, value: &Value) -> Option<String> {
    match expected_type(key) {
        Some((expected, ok)) if !ok(value) => Some(format!("{key} must be {expected}")),
        _ => None,
    }
}

fn example_of(key: &str) -> &'static str {
    match key {
        "temperature" => "0.7",
        "top_p" => "0.9",
        "presence_penalty" | "frequency_penalty" => "0.5",
        "max_tokens" | "max_completion_tokens" => "500",
        "n" | "seed" | "top_logprobs" => "1",
        "logprobs" | "parallel_tool_calls" | "stream" => "true",
        "stop" => "'[\"\\n\"]'",
        "response_format" => "'{\"type\": \"json_object\"}'",
        "logit_bias" => "'{}'",
        "tools" => "'[]'",
        "tool_choice" => "auto",
        _ => "VALUE",
    }
}

/// Reads a whole text file, naming it in the error.
pub fn read_text(path: &std::path::Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!("cannot read {what} {}: {e}", path.display()))
            .with_hint("check the path and that the file is UTF-8 text")
    })
}

/// Reads a JSON file, or a YAML one when its name ends in `.yaml` / `.yml`, into `T`.
pub fn read_structured<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
) -> Result<T> {
    let text = read_text(path, what)?;
    let parsed = parse_structured(path, &text);
    parsed.map_err(|cause| Error::invalid(format!("invalid {what} {}: {cause}", path.display())))
}

/// Parses `text` as YAML when `path` ends in `.yaml` / `.yml`, else as JSON; the error is the
/// cause in one line (a YAML error is a multi-line annotated snippet whose first line says it).
pub fn parse_structured<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    text: &str,
) -> std::result::Result<T, String> {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    if yaml {
        serde_saphyr::from_str(text).map_err(|e| {
            e.to_string()
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid YAML")
                .trim()
                .trim_start_matches("error: ")
                .to_string()
        })
    } else {
        crate::json::from_str(text).map_err(|e| e.to_string())
    }
}

/// A fraction flag (0 to 1), checked.
pub fn rate(flag: &str, value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(Error::invalid(format!(
            "{flag} {v} is out of range: give a fraction between 0 and 1"
        ))
        .with_hint(format!("{flag} 0.9 means 90%"))),
        other => Ok(other),
    }
}

/// The confidence level of intervals: `--confidence`, else runner.toml's `confidence`, else
/// 0.95; strictly between 0 and 1.
pub fn confidence(flag: Option<f64>, file: Option<f64>) -> Result<f64> {
    let (value, source) = match (flag, file) {
        (Some(v), _) => (v, "--confidence"),
        (None, Some(v)) => (v, "confidence in runner.toml"),
        (None, None) => return Ok(crate::stats::DEFAULT_CONFIDENCE),
    };
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(Error::invalid(format!(
            "{source} {value} is out of range: give a level between 0 and 1, such as 0.95"
        ))
        .with_hint("--confidence 0.99 asks for 99% intervals"))
    }
}
