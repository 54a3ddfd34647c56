//! The latency limit: `max-latency:MS`, which passes an answer that came back in time. It compares
//! the latency the row measured and must not time anything itself.

use super::{EvalInput, Score, binary};

pub(super) fn max_latency(name: &str, max: f64, input: &EvalInput<'_>) -> Score {
    let pass = input.latency_ms <= max;
    let verb = if pass { "within" } else { "exceeds" };
    binary(
        name,
        pass,
        format!(
            "latency {} ms {verb} the {max} ms limit",
            fmt_ms(input.latency_ms)
        ),
    )
}

fn fmt_ms(ms: f64) -> String {
    if ms.fract() == 0.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

#[cfg(test)]
mod tests {
    use crate::eval::tests::run_latency;

    #[test]
    fn max_latency() {
        let cases = [
            ("max-latency:500", 499.9, true),
            ("max-latency:500", 500.0, true),
            ("max-latency:500", 500.1, false),
            ("max-latency:0.5", 0.4, true),
            ("max-latency:500", f64::NAN, false),
        ];
        for (spec, latency, pass) in cases {
            let s = run_latency(spec, "", None, latency);
            assert_eq!(s.pass, pass, "{spec} at {latency}: {s:?}");
            assert_eq!(s.score, if pass { 1.0 } else { 0.0 });
            assert!(!s.error);
        }
        assert!(
            run_latency("max-latency:500", "", None, 812.0)
                .reason
                .contains("812 ms exceeds")
        );
    }
}
