//! The run's circuit breaker: which failed calls say the endpoint is gone, how a streak of such
//! rows is held back, and when the streak stops the run. It owns only that judgement: it sends
//! no request, stores no result and never touches the writer or the store; the row tasks act
//! on its `Verdict`.

use crate::client::{Failure, FailureKind};
use crate::model::{ResultStatus, RunResult};
use std::time::{Duration, Instant};

/// The breaker: this many rows in a row whose calls found no endpoint (refused or reset
/// connections, timeouts, 5xx or 429 after every retry) stop the run.
pub const BREAKER_ROWS: usize = 20;

/// The breaker's other window: no call answered for this long while at least
/// `BREAKER_MIN_ROWS` rows in a row failed that way also stops the run (a slow, dying endpoint
/// that fails fewer rows than `BREAKER_ROWS` a minute).
pub const BREAKER_SILENCE: Duration = Duration::from_secs(10);

/// Failed rows in a row the silence window needs before it trips.
pub const BREAKER_MIN_ROWS: usize = 3;

/// Whether a failure says the endpoint is gone rather than that it refused this one row: no
/// connection, a dropped one, no answer in time, or a server error (or 429) after every retry.
pub(super) fn endpoint_gone(failure: &Failure) -> bool {
    match failure.kind {
        FailureKind::Unreachable | FailureKind::Connection | FailureKind::Timeout => true,
        FailureKind::Http => failure
            .http_status
            .is_some_and(|status| status >= 500 || status == 429),
        FailureKind::Auth | FailureKind::InvalidResponse | FailureKind::Budget => false,
    }
}

/// The run's circuit breaker. Rows whose calls found no endpoint are held back instead of
/// stored while they are a streak: an answer (any answer) ends the streak and they are stored
/// as the row failures they were; a streak of `BREAKER_ROWS`, or of `BREAKER_MIN_ROWS` with
/// nothing answered for `BREAKER_SILENCE`, trips the breaker: the run stops sending, and the
/// held rows are dropped, never stored, so a resume (or another worker) sends them again once
/// the endpoint is back. Rows that failed while the endpoint was gone are not evidence about
/// the prompt.
pub(super) struct Breaker {
    /// Failed rows of the current streak, not stored yet.
    held: Vec<RunResult>,
    /// When a call last answered (or the run began).
    last_answer: Instant,
    tripped: bool,
}

/// What the breaker makes of one row's result.
pub(super) enum Verdict {
    /// Store these now (the row, and a streak it ended).
    Store(Vec<RunResult>),
    /// Held in a streak (or dropped after a trip): nothing to store yet.
    Hold,
    /// This row tripped the breaker: stop the run, with this reason.
    Trip(String),
}

impl Breaker {
    pub(super) fn new() -> Breaker {
        Breaker {
            held: Vec::new(),
            last_answer: Instant::now(),
            tripped: false,
        }
    }

    /// Takes a finished row: `gone` when its call found no endpoint.
    pub(super) fn take(&mut self, result: RunResult, gone: Option<&str>) -> Verdict {
        let Some(reason) = gone else {
            // A cached answer or a template that did not render says nothing of the endpoint.
            let answered = if result.status == ResultStatus::Ok {
                !result.cached
            } else {
                !result.messages.is_empty()
            };
            if !answered {
                return Verdict::Store(vec![result]);
            }
            self.last_answer = Instant::now();
            let mut store = std::mem::take(&mut self.held);
            store.push(result);
            return Verdict::Store(store);
        };
        if self.tripped {
            return Verdict::Hold;
        }
        self.held.push(result);
        let streak = self.held.len();
        let silent = self.last_answer.elapsed();
        if streak >= BREAKER_ROWS || (streak >= BREAKER_MIN_ROWS && silent >= BREAKER_SILENCE) {
            self.tripped = true;
            self.held.clear();
            return Verdict::Trip(format!(
                "{streak} rows in a row failed, none answered for {:.0} s; the last: {reason}",
                silent.as_secs_f64(),
            ));
        }
        Verdict::Hold
    }

    /// The held rows, to store when the run ends without a trip (they were row failures of an
    /// endpoint that never stopped for long enough to count as gone).
    pub(super) fn drain(&mut self) -> Vec<RunResult> {
        if self.tripped {
            Vec::new()
        } else {
            std::mem::take(&mut self.held)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;

    fn result(status: ResultStatus, called: bool, cached: bool) -> RunResult {
        RunResult {
            messages: if called {
                vec![Message::text("user", "hi")]
            } else {
                Vec::new()
            },
            output: None,
            status,
            http_status: None,
            cached,
            ..RunResult::answered(0)
        }
    }

    fn stored(verdict: Verdict) -> usize {
        match verdict {
            Verdict::Store(results) => results.len(),
            Verdict::Hold => 0,
            Verdict::Trip(_) => usize::MAX,
        }
    }

    #[test]
    fn the_breaker_holds_a_streak_and_trips_at_its_length() {
        let mut breaker = Breaker::new();
        let gone = Some("connection refused");
        for _ in 0..BREAKER_ROWS - 1 {
            assert_eq!(
                stored(breaker.take(result(ResultStatus::Error, true, false), gone)),
                0
            );
        }
        // A cached answer and a row that never rendered say nothing of the endpoint.
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Ok, true, true), None)),
            1
        );
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Error, false, false), None)),
            1
        );
        match breaker.take(result(ResultStatus::Error, true, false), gone) {
            Verdict::Trip(reason) => assert!(reason.contains("20 rows in a row"), "{reason}"),
            _ => panic!("the 20th failed row in a row trips the breaker"),
        }
        // After a trip, failed rows are dropped (a resume sends them again), never stored.
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Error, true, false), gone)),
            0
        );
        assert!(breaker.drain().is_empty());
    }

    #[test]
    fn an_answer_ends_a_streak_and_its_rows_are_stored_as_failures() {
        let mut breaker = Breaker::new();
        let gone = Some("HTTP 503");
        for _ in 0..5 {
            breaker.take(result(ResultStatus::Error, true, false), gone);
        }
        // A 400 is an answer: the endpoint is there, so the streak's rows failed as rows.
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Error, true, false), None)),
            6
        );
        breaker.take(result(ResultStatus::Error, true, false), gone);
        assert_eq!(
            stored(breaker.take(result(ResultStatus::Ok, true, false), None)),
            2
        );
        breaker.take(result(ResultStatus::Error, true, false), gone);
        assert_eq!(
            breaker.drain().len(),
            1,
            "a run that ends in a short streak stores it"
        );
    }

    #[test]
    fn silence_trips_the_breaker_with_fewer_rows() {
        let mut breaker = Breaker::new();
        breaker.last_answer = Instant::now() - BREAKER_SILENCE;
        let gone = Some("timed out");
        for _ in 0..BREAKER_MIN_ROWS - 1 {
            assert_eq!(
                stored(breaker.take(result(ResultStatus::Error, true, false), gone)),
                0
            );
        }
        assert!(matches!(
            breaker.take(result(ResultStatus::Error, true, false), gone),
            Verdict::Trip(_)
        ));
    }

    #[test]
    fn what_counts_as_an_endpoint_gone() {
        let failure = |kind, status| Failure {
            kind,
            message: String::new(),
            http_status: status,
            attempts: 1,
            latency_ms: 0.0,
        };
        assert!(endpoint_gone(&failure(FailureKind::Connection, None)));
        assert!(endpoint_gone(&failure(FailureKind::Unreachable, None)));
        assert!(endpoint_gone(&failure(FailureKind::Timeout, None)));
        assert!(endpoint_gone(&failure(FailureKind::Http, Some(502))));
        assert!(endpoint_gone(&failure(FailureKind::Http, Some(429))));
        assert!(!endpoint_gone(&failure(FailureKind::Http, Some(400))));
        assert!(!endpoint_gone(&failure(
            FailureKind::InvalidResponse,
            Some(200)
        )));
        assert!(!endpoint_gone(&failure(FailureKind::Auth, Some(401))));
    }
}
