//! Edit distance: `similarity:THRESHOLD`, the normalised Levenshtein similarity of output and
//! expected value. A pure function of the answer and the expected value: it reads no file and sends
//! nothing.

use super::{EvalInput, Score, with_expected};

pub(super) fn similarity(name: &str, threshold: f64, input: &EvalInput<'_>) -> Score {
    with_expected(name, input, |expected| {
        let sim =
            strsim::normalized_levenshtein(input.output.trim(), expected.trim()).clamp(0.0, 1.0);
        let pass = sim >= threshold;
        let cmp = if pass { ">=" } else { "<" };
        Score {
            evaluator: name.to_string(),
            score: sim,
            pass,
            reason: format!("similarity {sim:.3} {cmp} threshold {threshold}"),
            error: false,
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::eval::tests::{check_table, run};

    #[test]
    fn pure_kinds_table() {
        // (spec, output, expected, pass, score)
        let cases: &[(&str, &str, Option<&str>, bool, f64)] = &[
            ("similarity:0.8", "kitten", Some("kitten"), true, 1.0),
            ("similarity:1", "kitten", Some(" kitten "), true, 1.0),
            (
                "similarity:1.0",
                "kitten",
                Some("kittens"),
                false,
                6.0 / 7.0,
            ),
            ("similarity:0.5", "abcd", Some("abxy"), true, 0.5),
            ("similarity:0.51", "abcd", Some("abxy"), false, 0.5),
            ("similarity:0", "abc", Some("xyz"), true, 0.0),
            ("similarity:0.9", "", Some(""), true, 1.0),
        ];
        check_table(cases);
    }

    #[test]
    fn reasons_explain() {
        assert!(
            run("similarity:0.9", "ab", Some("ab"))
                .reason
                .contains("threshold 0.9")
        );
    }
}
