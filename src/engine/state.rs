//! The state one run's tasks share: the plan, the stop flag and the first reason given for it,
//! the fail-fast count, the breaker, and the counters progress reports read. It decides nothing
//! about a row and does no I/O: it must not call the endpoint, the store or the writer.

use super::breaker::Breaker;
use super::{FAIL_FAST_AFTER, Plan, Stop, Tally};
use crate::store::ResponseCache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The failure every call so far ended with (status and message), and how many calls did.
type FirstFailures = (Option<(Option<u16>, String)>, usize);

/// Shared state of one run.
pub(super) struct Shared {
    pub(super) plan: Plan,
    pub(super) counters: Arc<Counters>,
    stop: AtomicBool,
    stop_reason: Mutex<Option<Stop>>,
    pub(super) stopped: Notify,
    /// Any call answered: after that, a 401 is a row failure, not a bad key.
    pub(super) any_ok: AtomicBool,
    /// The failure the calls so far all ended with, and how many did (before any answer).
    first_failures: Mutex<FirstFailures>,
    pub(super) cache: Option<Arc<dyn ResponseCache>>,
    pub(super) breaker: Mutex<Breaker>,
}

impl Shared {
    /// The state of a run of `plan`; `cache` is kept only when the plan reads or writes it.
    pub(super) fn new(plan: Plan, cache: Arc<dyn ResponseCache>) -> Arc<Shared> {
        let counters = Arc::new(Counters {
            retries: plan.client.retries(),
            throttle: Some(plan.client.throttle()),
            ..Counters::default()
        });
        let cache = (plan.cache.read || plan.cache.write).then_some(cache);
        Arc::new(Shared {
            plan,
            counters,
            stop: AtomicBool::new(false),
            stop_reason: Mutex::new(None),
            stopped: Notify::new(),
            any_ok: AtomicBool::new(false),
            first_failures: Mutex::new((None, 0)),
            cache,
            breaker: Mutex::new(Breaker::new()),
        })
    }

    pub(super) fn halt(&self, reason: Stop) {
        let mut slot = self.stop_reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }

    /// Counts a failure before any answer; true once `FAIL_FAST_AFTER` in a row were the same.
    pub(super) fn same_failure(&self, status: Option<u16>, message: &str) -> bool {
        let mut seen = self
            .first_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let this = (status, message.to_string());
        if seen.0.as_ref() == Some(&this) {
            seen.1 += 1;
        } else {
            *seen = (Some(this), 1);
        }
        seen.1 >= FAIL_FAST_AFTER
    }

    pub(super) fn halted(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Why the run stopped, if it did: the first reason given.
    pub(super) fn reason(&self) -> Option<Stop> {
        self.stop_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn interrupted(&self) -> bool {
        matches!(
            *self.stop_reason.lock().unwrap_or_else(|p| p.into_inner()),
            Some(Stop::Interrupted)
        )
    }
}

/// Results counted as tasks finish them.
#[derive(Default)]
pub(super) struct Counters {
    /// The client's retry state, read into each tally.
    retries: Arc<crate::client::Retries>,
    /// The client's throttle, read into each tally.
    throttle: Option<Arc<crate::limit::Throttle>>,
    pub(super) done: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) cached: AtomicU64,
    /// Milliseconds: the oldest cached answer used so far.
    oldest_cached_ms: AtomicU64,
}

impl Counters {
    pub(super) fn note_cache_age(&self, age: Duration) {
        let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX).max(1);
        self.oldest_cached_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The age of the oldest cached answer used, if any was.
    pub(super) fn oldest_cached(&self) -> Option<Duration> {
        match self.oldest_cached_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(super) fn tally(&self) -> Tally {
        Tally {
            done: self.done.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            retry: self.retries.state(),
            throttle: self
                .throttle
                .as_ref()
                .map(|t| t.state())
                .unwrap_or_default(),
        }
    }
}
