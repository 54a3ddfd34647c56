//! String checks: `exact`, `contains`, `icontains` and `regex:PATTERN`. Pure functions of the
//! answer and the expected value: they read no file and send nothing.

use super::{EXCERPT, EvalInput, Score, binary, error_score, with_expected};
use crate::text::one_line;
use regex::Regex;

pub(super) fn exact(name: &str, input: &EvalInput<'_>) -> Score {
    with_expected(name, input, |expected| {
        let (out, exp) = (input.output.trim(), expected.trim());
        if out == exp {
            binary(name, true, "output equals expected".to_string())
        } else {
            binary(
                name,
                false,
                format!(
                    "output \"{}\" differs from expected \"{}\"",
                    one_line(out, EXCERPT),
                    one_line(exp, EXCERPT)
                ),
            )
        }
    })
}

pub(super) fn contains(name: &str, input: &EvalInput<'_>) -> Score {
    with_expected(name, input, |expected| {
        let needle = expected.trim();
        contains_score(name, needle, input.output.contains(needle), "")
    })
}

pub(super) fn icontains(name: &str, input: &EvalInput<'_>) -> Score {
    with_expected(name, input, |expected| {
        let needle = expected.trim();
        let found = input
            .output
            .to_lowercase()
            .contains(needle.to_lowercase().as_str());
        contains_score(name, needle, found, " (ignoring case)")
    })
}

pub(super) fn regex(name: &str, re: &Regex, input: &EvalInput<'_>) -> Score {
    let matched = re.is_match(input.output);
    let verb = if matched { "matches" } else { "does not match" };
    binary(
        name,
        matched,
        format!("output {verb} /{}/", one_line(re.as_str(), EXCERPT)),
    )
}

fn contains_score(name: &str, needle: &str, found: bool, how: &str) -> Score {
    // Every string contains "", so an empty expected value would pass vacuously.
    if needle.is_empty() {
        return error_score(name, "the expected value is empty".to_string());
    }
    let verb = if found {
        "contains"
    } else {
        "does not contain"
    };
    binary(
        name,
        found,
        format!("output {verb} \"{}\"{how}", one_line(needle, EXCERPT)),
    )
}

#[cfg(test)]
mod tests {
    use crate::eval::tests::{check_table, run};

    #[test]
    fn pure_kinds_table() {
        // (spec, output, expected, pass, score)
        let cases: &[(&str, &str, Option<&str>, bool, f64)] = &[
            ("exact", "  Paris \n", Some("Paris"), true, 1.0),
            ("exact", "paris", Some("Paris"), false, 0.0),
            ("exact", "Paris, France", Some("Paris"), false, 0.0),
            (
                "contains",
                "The capital is Paris.",
                Some("Paris"),
                true,
                1.0,
            ),
            (
                "contains",
                "The capital is Paris.",
                Some(" Paris\n"),
                true,
                1.0,
            ),
            (
                "contains",
                "The capital is paris.",
                Some("Paris"),
                false,
                0.0,
            ),
            (
                "icontains",
                "THE CAPITAL IS PARIS",
                Some("paris"),
                true,
                1.0,
            ),
            ("icontains", "Straße ÉTÉ", Some("été"), true, 1.0),
            ("icontains", "London", Some("paris"), false, 0.0),
            ("regex:^Hello", "Hello world", None, true, 1.0),
            ("regex:^Hello", "Oh, Hello", None, false, 0.0),
            (r"regex:\d{3}-\d{4}", "call 555-1234", None, true, 1.0),
            ("regex:a:b", "xa:by", None, true, 1.0),
        ];
        check_table(cases);
    }

    #[test]
    fn reasons_explain() {
        assert!(
            run("exact", "London", Some("Paris"))
                .reason
                .contains("\"London\"")
        );
        assert!(
            run("contains", "x", Some("Paris"))
                .reason
                .contains("does not contain \"Paris\"")
        );
        assert!(run("regex:^Hi", "x", None).reason.contains("/^Hi/"));
        let long = run("exact", &"x".repeat(1000), Some("y"));
        assert!(
            long.reason.len() < 300 && long.reason.contains('…'),
            "{long:?}"
        );
    }
}
