//! Colour where it carries meaning, on a terminal only: a gate's verdict, pass and fail, better
//! and worse, the rows that regressed and improved, and `error:`, `warning:` and `hint:` on
//! stderr. It paints text already laid out (tables included: the codes take no columns on a
//! terminal), so nothing about a report's layout depends on it, and JSON is never painted.
//!
//! Whether to paint: `--color always|never`, else `NO_COLOR` (set and not empty: never), else
//! `CLICOLOR_FORCE` (set and not `0`: always), else only when the stream is a terminal (and
//! `TERM` is not `dumb`).

use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// What `--color` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Always,
    Never,
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(text: &str) -> Result<Choice, String> {
        match text {
            "auto" => Ok(Choice::Auto),
            "always" => Ok(Choice::Always),
            "never" => Ok(Choice::Never),
            other => Err(format!("{other}: expected auto, always or never")),
        }
    }
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

/// Records `--color` for the rest of the process.
pub fn choose(choice: Choice) {
    let _ = CHOICE.set(choice);
}

/// Which stream is painted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Whether `stream` is painted, by the rules above.
pub fn enabled(stream: Stream) -> bool {
    decide(
        CHOICE.get().copied().unwrap_or(Choice::Auto),
        |name| std::env::var(name).ok(),
        || match stream {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        },
    )
}

fn decide(
    choice: Choice,
    var: impl Fn(&str) -> Option<String>,
    terminal: impl Fn() -> bool,
) -> bool {
    match choice {
        Choice::Always => true,
        Choice::Never => false,
        Choice::Auto => {
            if var("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                return false;
            }
            if var("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
                return true;
            }
            terminal() && var("TERM").as_deref() != Some("dumb")
        }
    }
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const BOLD_RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

fn paint(colour: &str, text: &str) -> String {
    format!("{colour}{text}{RESET}")
}

/// A report for stdout, painted where its words carry a verdict.
pub fn stdout_text(text: &str) -> Cow<'_, str> {
    if !enabled(Stream::Stdout) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.lines().map(paint_line).collect::<Vec<_>>().join("\n"))
}

fn paint_line(line: &str) -> String {
    // A gate's verdict line.
    for (word, colour) in [("PASSED", GREEN), ("FAILED", BOLD_RED)] {
        if line.starts_with("gate ") && line.contains(word) {
            return line.replacen(word, &paint(colour, word), 1);
        }
    }
    for (start, colour) in [("regressed rows", RED), ("improved rows", GREEN)] {
        if line.starts_with(start) {
            return paint(colour, line);
        }
    }
    // Table cells (set apart by two spaces or more) that are a verdict or a change.
    let mut out = String::with_capacity(line.len() + 16);
    let mut rest = line;
    while !rest.is_empty() {
        let blank = rest.len() - rest.trim_start_matches(' ').len();
        out.push_str(&rest[..blank]);
        rest = &rest[blank..];
        let end = rest.find("  ").unwrap_or(rest.len());
        let cell = rest[..end].trim_end();
        let colour = match cell {
            "pass" | "passed" | "improved" => Some(GREEN),
            "fail" | "failed" | "regressed" | "error" => Some(RED),
            w if w.ends_with("(better)") => Some(GREEN),
            w if w.ends_with("(worse)") => Some(RED),
            _ => None,
        };
        match colour {
            Some(colour) => out.push_str(&paint(colour, cell)),
            None => out.push_str(cell),
        }
        rest = &rest[cell.len()..];
    }
    out
}

/// A line for stderr, its `error:`, `warning:` or `hint:` painted.
pub fn stderr_line(line: &str) -> Cow<'_, str> {
    let prefixes = [("error:", BOLD_RED), ("warning:", YELLOW), ("hint:", CYAN)];
    match prefixes.iter().find(|(p, _)| line.starts_with(p)) {
        Some((prefix, colour)) if enabled(Stream::Stderr) => Cow::Owned(format!(
            "{}{}",
            paint(colour, prefix),
            &line[prefix.len()..]
        )),
        _ => Cow::Borrowed(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_then_no_color_then_clicolor_force_then_the_terminal_decide() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(decide(Choice::Always, env(&[("NO_COLOR", "1")]), || false));
        assert!(!decide(
            Choice::Never,
            env(&[("CLICOLOR_FORCE", "1")]),
            || true
        ));
        assert!(!decide(
            Choice::Auto,
            env(&[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]),
            || true
        ));
        assert!(decide(
            Choice::Auto,
            env(&[("CLICOLOR_FORCE", "1")]),
            || false
        ));
        assert!(!decide(
            Choice::Auto,
            env(&[("CLICOLOR_FORCE", "0")]),
            || false
        ));
        assert!(decide(Choice::Auto, env(&[("NO_COLOR", "")]), || true));
        assert!(!decide(Choice::Auto, env(&[("TERM", "dumb")]), || true));
        assert!(!decide(Choice::Auto, env(&[]), || false));
    }

    #[test]
    fn verdict_cells_are_painted_and_the_layout_is_kept() {
        let line = "no new failures  <= 0 rows  0 rows  pass";
        let painted = paint_line(line);
        assert_eq!(painted.replace(GREEN, "").replace(RESET, ""), line);
        assert!(
            painted.ends_with(&format!("  {GREEN}pass{RESET}")),
            "{painted:?}"
        );
        let change = "pass rate  0.0%  100.0%  ▲ +100.0 pts (better)";
        assert!(paint_line(change).contains(&format!("{GREEN}▲ +100.0 pts (better){RESET}")));
        assert!(paint_line("gate FAILED: p staging").contains(&format!("{BOLD_RED}FAILED{RESET}")));
        assert_eq!(paint_line("the pass rate  3"), "the pass rate  3");
        assert_eq!(paint_line("it did not pass"), "it did not pass");
    }
}
