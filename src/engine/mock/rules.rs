//! Reply rules: the `Rule` a rules file or the code gives, loading and checking a rules file
//! (JSON or YAML), compiling the patterns once, choosing the rule (and reply) for a message, and
//! `MockError` for what can be wrong with them. It does not answer requests: the server turns
//! the chosen reply into an answer, an error status or a delay, and this module must not build
//! responses, read request bodies or keep counters.

use axum::http::StatusCode;
use regex::Regex;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One entry of a rules file: when `pattern` matches the last user message, answer `reply`.
///
/// `reply` may refer to capture groups as `$1` or `${name}` (`$$` is a literal `$`). With
/// `status`, the server answers that HTTP error status (400–599) with an OpenAI error body whose
/// message is the reply; `latency_ms` replaces the global latency for requests this rule answers.
#[derive(Debug, Clone, serde::Deserialize)]
// A misspelt key ("latency", "respone") would otherwise be dropped silently and the rule would
// behave differently from what the file says.
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub pattern: String,
    /// The answer's text; a rule with `tool_calls` may leave it out (the answer is only calls).
    #[serde(default)]
    pub reply: Option<String>,
    /// Tool calls to answer with, each `{"name": NAME, "arguments": {…}}`; text in the arguments
    /// may refer to capture groups as `reply` does.
    #[serde(default)]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

impl Rule {
    /// A rule that answers `reply` (with `$1`-style captures) to a last user message matching
    /// `pattern`, with the usual status and the mock's latency.
    pub fn new(pattern: &str, reply: &str) -> Rule {
        Rule {
            pattern: pattern.into(),
            reply: Some(reply.into()),
            tool_calls: None,
            status: None,
            latency_ms: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("cannot read mock rules file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid mock rules file {}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    /// `index` is the rule's 0-based position in the list; `path` is `None` for rules that were
    /// built in code rather than read from a file.
    #[error("invalid mock rule rules[{index}] in {}: {message}", origin(.path))]
    Rule {
        path: Option<PathBuf>,
        index: usize,
        message: String,
    },
}

fn origin(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "the mock configuration".to_string(),
    }
}

/// Reads a rules file (JSON, or YAML for .yaml/.yml) and checks every pattern compiles.
pub fn load_rules(path: &Path) -> Result<Vec<Rule>, MockError> {
    let text = std::fs::read_to_string(path).map_err(|source| MockError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed: Result<Vec<Rule>, String> = crate::input::parse_structured(path, &text);
    let rules = parsed.map_err(|message| MockError::Parse {
        path: path.to_path_buf(),
        message,
    })?;
    compile(&rules, Some(path))?;
    Ok(rules)
}

pub(super) struct CompiledRule {
    regex: Regex,
    reply: String,
    /// (name, arguments) of each call the rule answers with.
    tool_calls: Option<Vec<(String, serde_json::Value)>>,
    // Most replies are fixed text; skipping capture extraction for them keeps matching cheap.
    expands: bool,
    pub(super) status: Option<StatusCode>,
    pub(super) latency: Option<Duration>,
}

pub(super) fn compile(rules: &[Rule], path: Option<&Path>) -> Result<Vec<CompiledRule>, MockError> {
    let fail = |index: usize, message: String| MockError::Rule {
        path: path.map(Path::to_path_buf),
        index,
        message,
    };
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let regex = Regex::new(&rule.pattern).map_err(|e| {
                fail(
                    index,
                    format!(
                        "pattern {:?} does not compile: {}",
                        rule.pattern,
                        regex_cause(&e)
                    ),
                )
            })?;
            let status = match rule.status {
                None => None,
                // Only errors: a 2xx or 3xx with an error body is not something a real provider
                // sends, so a client's handling of it proves nothing.
                Some(code @ 400..=599) => StatusCode::from_u16(code).ok(),
                Some(code) => {
                    return Err(fail(
                        index,
                        format!("status {code} is not an HTTP error status (400-599)"),
                    ));
                }
            };
            let tool_calls = match &rule.tool_calls {
                None => None,
                Some(calls) => Some(
                    calls
                        .iter()
                        .enumerate()
                        .map(|(i, call)| {
                            tool_call(call)
                                .map_err(|e| fail(index, format!("tool_calls[{i}]: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let reply = match (&rule.reply, &tool_calls) {
                (Some(reply), _) => reply.clone(),
                (None, Some(_)) => String::new(),
                (None, None) => {
                    return Err(fail(
                        index,
                        "a rule needs a reply, tool_calls, or both".into(),
                    ));
                }
            };
            Ok(CompiledRule {
                regex,
                expands: reply.contains('$'),
                reply,
                tool_calls,
                status,
                latency: rule.latency_ms.map(Duration::from_millis),
            })
        })
        .collect()
}

/// A rule's tool call as the file gives it: `{"name": NAME, "arguments": {…}}`.
fn tool_call(call: &serde_json::Value) -> Result<(String, serde_json::Value), String> {
    let object = call
        .as_object()
        .ok_or("expected {\"name\": NAME, \"arguments\": {…}}")?;
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "arguments"))
    {
        return Err(format!(
            "unknown key '{key}' (a call has name and arguments)"
        ));
    }
    let name = match object.get("name") {
        Some(serde_json::Value::String(name)) if !name.trim().is_empty() => name.clone(),
        _ => return Err("`name` must be a tool's name (text)".into()),
    };
    let arguments = match object.get("arguments") {
        None => serde_json::Value::Object(serde_json::Map::new()),
        Some(arguments @ serde_json::Value::Object(_)) => arguments.clone(),
        Some(_) => return Err("`arguments` must be an object".into()),
    };
    Ok((name, arguments))
}

impl CompiledRule {
    /// The tool calls this rule answers `text` with (captures expanded in their text), in
    /// OpenAI's form; None for a rule that answers text only.
    pub(super) fn tool_calls(&self, text: &str, seq: u64) -> Option<Vec<serde_json::Value>> {
        let calls = self.tool_calls.as_ref()?;
        let caps = self.regex.captures(text);
        let expand = |value: &serde_json::Value| -> serde_json::Value {
            fn walk(
                value: &serde_json::Value,
                caps: Option<&regex::Captures<'_>>,
            ) -> serde_json::Value {
                match value {
                    serde_json::Value::String(s) if s.contains('$') => match caps {
                        Some(caps) => {
                            let mut out = String::with_capacity(s.len() + 16);
                            caps.expand(s, &mut out);
                            serde_json::Value::String(out)
                        }
                        None => value.clone(),
                    },
                    serde_json::Value::Array(items) => {
                        serde_json::Value::Array(items.iter().map(|v| walk(v, caps)).collect())
                    }
                    serde_json::Value::Object(map) => serde_json::Value::Object(
                        map.iter()
                            .map(|(k, v)| (k.clone(), walk(v, caps)))
                            .collect(),
                    ),
                    other => other.clone(),
                }
            }
            walk(value, caps.as_ref())
        };
        Some(
            calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    serde_json::json!({
                        "id": format!("call_mock_{seq}_{i}"),
                        "type": "function",
                        "function": {"name": name, "arguments": expand(arguments).to_string()},
                    })
                })
                .collect(),
        )
    }
}

/// The first rule whose pattern matches `text`, with its reply (captures expanded); without a
/// match, no rule and `text` itself, to be echoed.
pub(super) fn choose<'a>(
    rules: &'a [CompiledRule],
    text: &'a str,
) -> (Option<&'a CompiledRule>, Cow<'a, str>) {
    for rule in rules {
        if rule.expands {
            if let Some(caps) = rule.regex.captures(text) {
                let mut expanded = String::with_capacity(rule.reply.len() + 16);
                caps.expand(&rule.reply, &mut expanded);
                return (Some(rule), Cow::Owned(expanded));
            }
        } else if rule.regex.is_match(text) {
            return (Some(rule), Cow::Borrowed(&rule.reply));
        }
    }
    (None, Cow::Borrowed(text))
}

/// The regex crate's syntax errors span several lines (pattern, caret, cause); error messages
/// here are one line, and the pattern is already quoted by the caller.
fn regex_cause(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_regex_names_the_file_and_rule_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broken.json");
        std::fs::write(
            &path,
            r#"[{"pattern": "fine", "reply": "ok"}, {"pattern": "(unclosed", "reply": "x"}]"#,
        )
        .expect("write rules");
        let err = load_rules(&path).expect_err("invalid regex must fail");
        assert!(
            matches!(&err, MockError::Rule { index: 1, path: Some(p), .. } if p == &path),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("broken.json"), "{message}");
        assert!(message.contains("rules[1]"), "{message}");
        assert!(message.contains("(unclosed"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn bad_rules_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().expect("tempdir");

        let missing = dir.path().join("missing.yaml");
        let err = load_rules(&missing).expect_err("missing file");
        assert!(matches!(err, MockError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.yaml"));

        let cases = [
            ("not-a-list.json", r#"{"pattern": "a", "reply": "b"}"#),
            ("typo.yml", "- pattern: a\n  respone: b\n"),
            ("bad.yaml", "- pattern: [unterminated\n"),
        ];
        for (name, text) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            let err = load_rules(&path).expect_err(name);
            assert!(matches!(err, MockError::Parse { .. }), "{name}: {err:?}");
            let message = err.to_string();
            assert!(message.contains(name), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }

        let path = dir.path().join("status.json");
        std::fs::write(&path, r#"[{"pattern": "a", "reply": "b", "status": 200}]"#).expect("write");
        let err = load_rules(&path).expect_err("2xx status");
        assert!(matches!(err, MockError::Rule { index: 0, .. }), "{err:?}");
    }
}
