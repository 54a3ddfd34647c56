//! Tool calls as runner keeps them: a model's (or your application's) calls read from the forms
//! they arrive in, and what the tool-call evaluators compare. Pure functions over JSON: nothing
//! here calls a model or reads a file.
//!
//! Stored form, in order: `[{"id": ID or null, "name": NAME, "arguments": JSON}]`. Read from
//! OpenAI's form (`{"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}`)
//! or the plain form (`{"name", "arguments": {…}}`); arguments given as text are parsed, and text
//! that is not JSON is kept as text (the model wrote it; `tool-args-valid` fails it).

use serde_json::{Map, Value, json};

/// One call: its id (when the answer gave one), the tool's name, and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    pub arguments: Value,
}

/// The dataset column that holds a row's expected calls (a JSON list of `{name, arguments}`;
/// `[]`: no call expected).
pub const EXPECTED_COLUMN: &str = "expected_tool_calls";

/// The most calls one answer may carry before it is refused as malformed.
pub const MAX_CALLS: usize = 128;

impl ToolCall {
    pub fn to_value(&self) -> Value {
        json!({"id": self.id, "name": self.name, "arguments": self.arguments})
    }
}

/// The calls in `value` (a JSON list in either form), in order; an error names the first entry
/// that is neither form.
pub fn read(value: &Value) -> Result<Vec<ToolCall>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("tool calls must be a JSON list, got {}", kind(value)))?;
    if items.len() > MAX_CALLS {
        return Err(format!(
            "{} tool calls (at most {MAX_CALLS} are kept)",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| read_one(item).map_err(|e| format!("tool call {}: {e}", i + 1)))
        .collect()
}

fn read_one(item: &Value) -> Result<ToolCall, String> {
    let object = item
        .as_object()
        .ok_or_else(|| format!("expected an object, got {}", kind(item)))?;
    // OpenAI's form nests the name and arguments under `function`.
    let inner = match object.get("function") {
        Some(Value::Object(function)) => function,
        Some(other) => return Err(format!("`function` is {}, not an object", kind(other))),
        None => object,
    };
    let name = match inner.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        Some(Value::String(_)) => return Err("`name` is empty".into()),
        Some(other) => return Err(format!("`name` is {}, not text", kind(other))),
        None => return Err("it has no `name`".into()),
    };
    // Anthropic's `tool_use` blocks carry theirs as `input`.
    let arguments = match inner.get("arguments").or_else(|| inner.get("input")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(text)) if text.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(text)) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
        }
        Some(other) => other.clone(),
    };
    let id = match object.get("id") {
        Some(Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

/// The calls as stored (a JSON list).
pub fn to_value(calls: &[ToolCall]) -> Value {
    Value::Array(calls.iter().map(ToolCall::to_value).collect())
}

/// The calls a stored result's extra holds (`extra.tool_calls`); none when it holds none.
pub fn of_extra(extra: Option<&Map<String, Value>>) -> Result<Vec<ToolCall>, String> {
    match extra.and_then(|e| e.get("tool_calls")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(value) => read(value),
    }
}

/// The calls in a line, as a person reads them: `weather({"city":"Paris"}), time({})`.
pub fn summary(calls: &[ToolCall]) -> String {
    calls
        .iter()
        .map(|c| format!("{}({})", c.name, c.arguments))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A result's answer for a table: its text, then its tool calls (`→ weather({…})`).
pub fn with_answer(text: &str, extra: Option<&Map<String, Value>>) -> String {
    let calls = of_extra(extra).unwrap_or_default();
    match (text.is_empty(), calls.is_empty()) {
        (_, true) => text.to_string(),
        (true, false) => format!("→ {}", summary(&calls)),
        (false, false) => format!("{text} → {}", summary(&calls)),
    }
}

/// How `tool-call` compares: arguments exactly or as a subset, calls in order or in any order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Match {
    /// The expected arguments must be present with their values; others may be there too.
    pub subset: bool,
    /// The calls may come in any order.
    pub any_order: bool,
}

/// None when `actual` matches `expected`; else the first difference, as a person reads it
/// (`city: expected "Paris", got "Lyon"`).
pub fn difference(expected: &[ToolCall], actual: &[ToolCall], how: Match) -> Option<String> {
    if expected.is_empty() {
        return match actual {
            [] => None,
            [first, ..] => Some(format!(
                "no call expected, got {} ({} call{})",
                first.name,
                actual.len(),
                if actual.len() == 1 { "" } else { "s" }
            )),
        };
    }
    if actual.is_empty() {
        return Some(format!(
            "expected a call to {}, got no tool call",
            expected[0].name
        ));
    }
    if expected.len() != actual.len() {
        return Some(format!(
            "expected {} call{} ({}), got {} ({})",
            expected.len(),
            if expected.len() == 1 { "" } else { "s" },
            names(expected),
            actual.len(),
            names(actual)
        ));
    }
    if !how.any_order {
        return expected
            .iter()
            .zip(actual)
            .enumerate()
            .find_map(|(i, (e, a))| call_difference(e, a, how.subset, i, expected.len()));
    }
    // Any order: a one-to-one pairing of expected and actual calls (Kuhn's augmenting paths;
    // a greedy pick can miss a pairing that exists when arguments match as subsets).
    let fits = |e: &ToolCall, a: &ToolCall| call_difference(e, a, how.subset, 0, 1).is_none();
    let mut owner: Vec<Option<usize>> = vec![None; actual.len()];
    fn augment(
        e: usize,
        seen: &mut [bool],
        owner: &mut [Option<usize>],
        fits: &dyn Fn(usize, usize) -> bool,
    ) -> bool {
        for a in 0..owner.len() {
            if seen[a] || !fits(e, a) {
                continue;
            }
            seen[a] = true;
            if owner[a].is_none_or(|other| augment(other, seen, owner, fits)) {
                owner[a] = Some(e);
                return true;
            }
        }
        false
    }
    let fit = |e: usize, a: usize| fits(&expected[e], &actual[a]);
    let mut unmatched = None;
    for e in 0..expected.len() {
        let mut seen = vec![false; actual.len()];
        if !augment(e, &mut seen, &mut owner, &fit) && unmatched.is_none() {
            unmatched = Some(e);
        }
    }
    let i = unmatched?;
    let e = &expected[i];
    // The nearest candidate is an unpaired call of the same name, if any.
    let near = actual
        .iter()
        .enumerate()
        .find(|(j, a)| owner[*j].is_none() && a.name == e.name);
    Some(match near {
        Some((_, a)) => call_difference(e, a, how.subset, i, expected.len())
            .unwrap_or_else(|| format!("no call matches {}", e.name)),
        None => format!("expected a call to {}, got {}", e.name, names(actual)),
    })
}

fn names(calls: &[ToolCall]) -> String {
    calls
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn call_difference(
    expected: &ToolCall,
    actual: &ToolCall,
    subset: bool,
    index: usize,
    count: usize,
) -> Option<String> {
    let at = if count > 1 {
        format!("call {}: ", index + 1)
    } else {
        String::new()
    };
    if expected.name != actual.name {
        return Some(format!(
            "{at}expected {}, got {}",
            expected.name, actual.name
        ));
    }
    value_difference(&expected.arguments, &actual.arguments, subset, "").map(|d| format!("{at}{d}"))
}

/// The first difference between two argument values, with its path (`address.city: …`).
fn value_difference(expected: &Value, actual: &Value, subset: bool, path: &str) -> Option<String> {
    let here = |what: String| {
        Some(if path.is_empty() {
            format!("arguments: {what}")
        } else {
            format!("{path}: {what}")
        })
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, want) in e {
                let inner = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match a.get(key) {
                    None => return Some(format!("{inner}: expected {}, missing", short(want))),
                    Some(got) => {
                        if let Some(d) = value_difference(want, got, subset, &inner) {
                            return Some(d);
                        }
                    }
                }
            }
            if !subset && let Some(extra) = a.keys().find(|k| !e.contains_key(*k)) {
                let inner = if path.is_empty() {
                    extra.clone()
                } else {
                    format!("{path}.{extra}")
                };
                return Some(format!("{inner}: not expected, got {}", short(&a[extra])));
            }
            None
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return here(format!("expected {} items, got {}", e.len(), a.len()));
            }
            e.iter().zip(a).enumerate().find_map(|(i, (want, got))| {
                value_difference(want, got, subset, &format!("{path}[{i}]"))
            })
        }
        // 2 and 2.0 are the same number to a tool.
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => None,
        (e, a) if e == a => None,
        (e, a) => here(format!("expected {}, got {}", short(e), short(a))),
    }
}

fn short(value: &Value) -> String {
    crate::text::one_line(&value.to_string(), 60)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(value: Value) -> Vec<ToolCall> {
        read(&value).unwrap()
    }

    #[test]
    fn both_forms_read_alike_and_text_arguments_are_parsed() {
        let openai = calls(json!([{"id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]));
        let plain = calls(json!([{"name": "weather", "arguments": {"city": "Paris"}}]));
        assert_eq!(openai[0].arguments, plain[0].arguments);
        assert_eq!(openai[0].id.as_deref(), Some("call_1"));
        assert_eq!(plain[0].id, None);
        // Text that is not JSON is kept as text.
        let broken = calls(json!([{"name": "f", "arguments": "{city: Paris"}]));
        assert_eq!(broken[0].arguments, json!("{city: Paris"));
        for (bad, needle) in [
            (json!({"name": "f"}), "must be a JSON list"),
            (json!([{"arguments": {}}]), "tool call 1: it has no `name`"),
            (json!([{"name": 3}]), "`name` is a number"),
            (json!([7]), "expected an object"),
            (json!([{"function": "f"}]), "`function` is text"),
        ] {
            let err = read(&bad).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_first_difference_is_named() {
        let want = calls(json!([{"name": "weather", "arguments": {"city": "Paris", "unit": "C"}}]));
        let diff = |got: Value, how| difference(&want, &calls(got), how);
        let exact = Match::default();
        assert_eq!(
            diff(
                json!([{"name": "weather", "arguments": {"city": "Paris", "unit": "C"}}]),
                exact
            ),
            None
        );
        assert_eq!(
            diff(
                json!([{"name": "weather", "arguments": {"city": "Lyon", "unit": "C"}}]),
                exact
            )
            .unwrap(),
            "city: expected \"Paris\", got \"Lyon\""
        );
        assert_eq!(
            diff(json!([{"name": "time", "arguments": {}}]), exact).unwrap(),
            "expected weather, got time"
        );
        assert_eq!(
            diff(json!([]), exact).unwrap(),
            "expected a call to weather, got no tool call"
        );
        let extra =
            json!([{"name": "weather", "arguments": {"city": "Paris", "unit": "C", "days": 3}}]);
        assert_eq!(
            diff(extra.clone(), exact).unwrap(),
            "days: not expected, got 3"
        );
        let subset = Match {
            subset: true,
            ..Match::default()
        };
        assert_eq!(diff(extra, subset), None);
        assert_eq!(
            diff(
                json!([{"name": "weather", "arguments": {"city": "Paris"}}]),
                subset
            )
            .unwrap(),
            "unit: expected \"C\", missing"
        );
        // No call expected.
        assert_eq!(difference(&[], &[], exact), None);
        assert_eq!(
            difference(&[], &want, exact).unwrap(),
            "no call expected, got weather (1 call)"
        );
    }

    #[test]
    fn order_matters_unless_asked_otherwise() {
        let want =
            calls(json!([{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]));
        let got =
            calls(json!([{"name": "b", "arguments": {}}, {"name": "a", "arguments": {"x": 1.0}}]));
        assert_eq!(
            difference(&want, &got, Match::default()).unwrap(),
            "call 1: expected a, got b"
        );
        let any = Match {
            any_order: true,
            ..Match::default()
        };
        assert_eq!(difference(&want, &got, any), None);
        let wrong =
            calls(json!([{"name": "b", "arguments": {}}, {"name": "a", "arguments": {"x": 2}}]));
        assert_eq!(
            difference(&want, &wrong, any).unwrap(),
            "call 1: x: expected 1, got 2"
        );
        // Subset arguments in any order: a pairing exists even where a greedy one fails.
        let want = calls(
            json!([{"name": "a", "arguments": {"x": 1}}, {"name": "a", "arguments": {"x": 1, "y": 2}}]),
        );
        let got = calls(
            json!([{"name": "a", "arguments": {"x": 1, "y": 2}}, {"name": "a", "arguments": {"x": 1}}]),
        );
        let both = Match {
            subset: true,
            any_order: true,
        };
        assert_eq!(difference(&want, &got, both), None);
        // Anthropic's `input` is read as the arguments.
        let input = calls(json!([{"type": "tool_use", "name": "a", "input": {"x": 1}}]));
        assert_eq!(input[0].arguments, json!({"x": 1}));
        let want =
            calls(json!([{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]));
        let short = calls(json!([{"name": "a", "arguments": {"x": 1}}]));
        assert_eq!(
            difference(&want, &short, Match::default()).unwrap(),
            "expected 2 calls (a, b), got 1 (a)"
        );
    }
}
