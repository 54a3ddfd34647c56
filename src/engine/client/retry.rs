//! Retries: which statuses are worth another attempt, how long to back off (exponential with
//! jitter, at least what `Retry-After` asks, never past `MAX_RETRY_AFTER`), why a request is
//! waiting, and the `Retries` counters a progress display reads while requests sit in back-off.
//! Policy and bookkeeping only: it must not send requests, read bodies or pace by rate limits;
//! the client (`mod.rs`) does those and asks this module what to do with an attempt's outcome.

use super::{Completion, Failure, FailureKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Statuses worth another attempt: the server or a proxy said "not now".
pub(super) const RETRYABLE: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// A `Retry-After` longer than this fails the row instead of stalling the whole run.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Why a request is waiting to be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    Status(u16),
    Timeout,
    Connection,
    Other,
}

impl std::fmt::Display for RetryCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryCause::Status(status) => write!(f, "HTTP {status}"),
            RetryCause::Timeout => f.write_str("timeout"),
            RetryCause::Connection => f.write_str("connection error"),
            RetryCause::Other => f.write_str("bad answer"),
        }
    }
}

/// What the client's retries are doing now, so that a progress display does not freeze while
/// requests sit in back-off.
#[derive(Debug, Default)]
pub struct Retries {
    /// Requests sleeping before their next attempt.
    waiting: AtomicU64,
    /// Retries started so far.
    total: AtomicU64,
    /// The cause of the latest retry, encoded by `encode_cause`.
    last_cause: AtomicU64,
    /// When the longest current wait ends, in ms since `epoch`.
    until_ms: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

/// A snapshot of `Retries`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryState {
    pub waiting: u64,
    pub total: u64,
    pub last_cause: Option<RetryCause>,
    /// How long until the longest current wait ends.
    pub longest_wait: Duration,
}

fn encode_cause(cause: RetryCause) -> u64 {
    match cause {
        RetryCause::Status(status) => 1000 + u64::from(status),
        RetryCause::Timeout => 1,
        RetryCause::Connection => 2,
        RetryCause::Other => 3,
    }
}

fn decode_cause(code: u64) -> Option<RetryCause> {
    match code {
        0 => None,
        1 => Some(RetryCause::Timeout),
        2 => Some(RetryCause::Connection),
        n if n >= 1000 => u16::try_from(n - 1000).ok().map(RetryCause::Status),
        _ => Some(RetryCause::Other),
    }
}

impl Retries {
    fn now_ms(&self) -> u64 {
        let epoch = self.epoch.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn state(&self) -> RetryState {
        let waiting = self.waiting.load(Ordering::Relaxed);
        let until = self.until_ms.load(Ordering::Relaxed);
        RetryState {
            waiting,
            total: self.total.load(Ordering::Relaxed),
            last_cause: decode_cause(self.last_cause.load(Ordering::Relaxed)),
            longest_wait: if waiting > 0 {
                Duration::from_millis(until.saturating_sub(self.now_ms()))
            } else {
                Duration::ZERO
            },
        }
    }

    /// Counts a request as waiting until the returned guard is dropped (also when the wait is
    /// cancelled, as on Ctrl-C).
    pub(super) fn wait(&self, cause: RetryCause, wait: Duration) -> WaitGuard<'_> {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.last_cause
            .store(encode_cause(cause), Ordering::Relaxed);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        self.until_ms.fetch_max(until, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        WaitGuard(self)
    }
}

pub(super) struct WaitGuard<'a>(&'a Retries);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.until_ms.store(0, Ordering::Relaxed);
        }
    }
}

pub(super) fn retry_cause(failure: &Failure) -> RetryCause {
    match (failure.http_status, failure.kind) {
        (Some(status), _) => RetryCause::Status(status),
        (None, FailureKind::Timeout) => RetryCause::Timeout,
        (None, FailureKind::Connection | FailureKind::Unreachable) => RetryCause::Connection,
        _ => RetryCause::Other,
    }
}

/// One attempt's outcome, before the retry decision.
pub(super) enum Attempt {
    Done(Completion),
    Retry {
        failure: Failure,
        wait_at_least: Duration,
    },
    Fail(Failure),
}

/// Exponential backoff with "equal jitter": half the step fixed, half random, so a burst of
/// rate-limited rows does not come back at the same instant. The step starts at `base`, doubles
/// each retry and is capped at `cap`.
pub(super) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let step = base.saturating_mul(1u32 << (attempt - 1).min(16)).min(cap);
    let half = step / 2;
    half + half.mul_f64(fastrand::f64())
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        // An absurd value (1e20) waits "forever", which the caller turns into a failed row.
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    // A date in the past means "now"; HTTP dates have whole seconds, so round the wait up to
    // never come back before the moment the server named.
    Some(
        at.duration_since(SystemTime::now())
            .map(|d| d + Duration::from_secs(1))
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = parse_retry_after(&future).unwrap();
        assert!(
            wait >= Duration::from_secs(29) && wait <= Duration::from_secs(32),
            "{wait:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_millis(400));
        for _ in 0..20 {
            let first = backoff(base, cap, 1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let capped = backoff(base, cap, 10);
            assert!(capped >= Duration::from_millis(200) && capped <= Duration::from_millis(400));
        }
    }
}
