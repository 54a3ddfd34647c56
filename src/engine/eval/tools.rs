//! The tool-call evaluators: `tool-call` (the calls against the row's `expected_tool_calls`,
//! exactly, or with `subset` arguments, in `any-order`), `tool-name` (the set of tools called)
//! and `tool-args-valid` (each call names a tool the version declares, with arguments its
//! `parameters` schema accepts).

use super::{EvalInput, binary, error_score};
use crate::tool_calls::{self, Match, ToolCall};
use serde_json::Value;

pub use crate::tool_calls::EXPECTED_COLUMN;

pub(super) fn prepare_match(options: Option<&str>) -> Result<Match, String> {
    let mut how = Match::default();
    let Some(options) = options else {
        return Ok(how);
    };
    for option in options.split(',').map(str::trim) {
        match option {
            "subset" => how.subset = true,
            "any-order" => how.any_order = true,
            "" => return Err("an empty option; options: subset, any-order".into()),
            other => {
                return Err(format!(
                    "unknown option '{other}'; options: subset, any-order (comma-separated)"
                ));
            }
        }
    }
    Ok(how)
}

/// The row's expected calls, or why there are none to compare with.
fn expected(input: &EvalInput<'_>) -> Result<Vec<ToolCall>, String> {
    let value = match input.vars.get(EXPECTED_COLUMN) {
        None | Some(Value::Null) => {
            return Err(format!("the row has no {EXPECTED_COLUMN} value"));
        }
        Some(Value::String(text)) if text.trim().is_empty() => {
            return Err(format!(
                "the row's {EXPECTED_COLUMN} is empty (write [] when no call is expected)"
            ));
        }
        Some(Value::String(text)) => serde_json::from_str(text)
            .map_err(|e| format!("the row's {EXPECTED_COLUMN} is not JSON: {e}"))?,
        Some(other) => other.clone(),
    };
    tool_calls::read(&value).map_err(|e| format!("the row's {EXPECTED_COLUMN}: {e}"))
}

fn actual<'a>(name: &str, input: &'a EvalInput<'_>) -> Result<&'a [ToolCall], super::Score> {
    match input.tool_calls {
        Ok(calls) => Ok(calls),
        Err(e) => Err(error_score(name, format!("the answer's tool calls: {e}"))),
    }
}

pub(super) fn tool_call(name: &str, how: Match, input: &EvalInput<'_>) -> super::Score {
    let actual = match actual(name, input) {
        Ok(calls) => calls,
        Err(score) => return score,
    };
    let expected = match expected(input) {
        Ok(calls) => calls,
        Err(reason) => return error_score(name, reason),
    };
    match tool_calls::difference(&expected, actual, how) {
        None => binary(
            name,
            true,
            match expected.len() {
                0 => "no tool call, as expected".to_string(),
                n => format!(
                    "the {n} expected call{} matched",
                    if n == 1 { "" } else { "s" }
                ),
            },
        ),
        Some(difference) => binary(name, false, difference),
    }
}

pub(super) fn tool_name(name: &str, input: &EvalInput<'_>) -> super::Score {
    let actual = match actual(name, input) {
        Ok(calls) => calls,
        Err(score) => return score,
    };
    let expected = match expected(input) {
        Ok(calls) => calls,
        Err(reason) => return error_score(name, reason),
    };
    let set = |calls: &[ToolCall]| {
        calls
            .iter()
            .map(|c| c.name.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (want, got) = (set(&expected), set(actual));
    if want == got {
        return binary(name, true, format!("called {}", listed(&got)));
    }
    let join = |names: Vec<&String>| {
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing: Vec<&String> = want.difference(&got).collect();
    let extra: Vec<&String> = got.difference(&want).collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("not called: {}", join(missing)));
    }
    if !extra.is_empty() {
        parts.push(format!("not expected: {}", join(extra)));
    }
    binary(name, false, parts.join("; "))
}

fn listed(names: &std::collections::BTreeSet<String>) -> String {
    if names.is_empty() {
        "no tool".into()
    } else {
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

pub(super) fn args_valid(name: &str, input: &EvalInput<'_>) -> super::Score {
    let actual = match actual(name, input) {
        Ok(calls) => calls,
        Err(score) => return score,
    };
    let declared: Vec<&Value> = match input.tools {
        Some(Value::Array(tools)) => tools.iter().collect(),
        _ => {
            return error_score(
                name,
                "the prompt version declares no tools (its `tools` parameter)".into(),
            );
        }
    };
    if actual.is_empty() {
        return binary(name, true, "no tool call to check".into());
    }
    for (i, call) in actual.iter().enumerate() {
        let at = if actual.len() > 1 {
            format!("call {} ({}): ", i + 1, call.name)
        } else {
            format!("{}: ", call.name)
        };
        let Some(tool) = declared.iter().find(|t| {
            let function = t.get("function").unwrap_or(t);
            function.get("name").and_then(Value::as_str) == Some(call.name.as_str())
        }) else {
            return binary(
                name,
                false,
                format!("{at}the version declares no such tool"),
            );
        };
        if !call.arguments.is_object() {
            return binary(
                name,
                false,
                format!(
                    "{at}the arguments are not a JSON object: {}",
                    crate::text::one_line(&call.arguments.to_string(), 60)
                ),
            );
        }
        let function = tool.get("function").unwrap_or(tool);
        let Some(schema) = function.get("parameters") else {
            continue;
        };
        let validator = match jsonschema::validator_for(schema) {
            Ok(v) => v,
            Err(e) => {
                return error_score(
                    name,
                    format!(
                        "{at}the tool's parameters are not a valid JSON schema: {}",
                        crate::text::one_line(&e.to_string(), 120)
                    ),
                );
            }
        };
        if let Err(error) = validator.validate(&call.arguments) {
            let path = error.instance_path().as_str();
            let place = if path.is_empty() {
                String::new()
            } else {
                format!("at {path}: ")
            };
            return binary(
                name,
                false,
                format!(
                    "{at}{place}{}",
                    crate::text::one_line(&error.to_string(), 120)
                ),
            );
        }
    }
    binary(
        name,
        true,
        format!(
            "{} call{} valid",
            actual.len(),
            if actual.len() == 1 { "" } else { "s" }
        ),
    )
}
