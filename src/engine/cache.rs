//! The response cache as the engine sees it: the key an answer is kept under, how old a cached
//! entry is, and the lookup a call makes before it goes to the endpoint, run on tokio's blocking
//! pool so a slow store read never holds up a runtime worker (a local SQLite file's is quick
//! enough to make in place). It only reads the cache: new entries
//! are written by the result writer along with their results.

use crate::model::{CachedResponse, hex};
use crate::store::ResponseCache;
use std::sync::Arc;
use std::time::Duration;

/// Cache key: endpoint, the exact request body, the row and the repetition. Keyed by row, a
/// cached answer is always this row's own answer from an earlier run: two rows that render the
/// same request are two samples, and a first run never reports an answer as cached.
pub(crate) fn cache_key(base_url: &str, body: &[u8], row_id: &str, repetition: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(base_url.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher.update(b"\n");
    hasher.update(row_id.len().to_string().as_bytes());
    hasher.update(b":");
    hasher.update(row_id.as_bytes());
    hasher.update(b"\n");
    hasher.update(repetition.to_string().as_bytes());
    hex(&hasher.finalize())
}

/// The entry kept under `key`, if the cache holds one; a lookup that fails counts as none. A
/// store that answers in microseconds without waiting (a local SQLite file) is read right here:
/// handing each row's lookup to a blocking thread cost two thread switches a row, more than the
/// read. Any other store is read on the blocking pool, never on the runtime worker.
pub(super) async fn cached_response(
    cache: &Arc<dyn ResponseCache>,
    key: &str,
) -> Option<CachedResponse> {
    if cache.quick_lookups() {
        return cache.cached_response(key).ok().flatten();
    }
    let cache = Arc::clone(cache);
    let key = key.to_owned();
    match tokio::task::spawn_blocking(move || cache.cached_response(&key)).await {
        Ok(found) => found.ok().flatten(),
        // A lookup that panicked fails the row's task, as it did when it ran on the worker.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// Clocks of machines that share a store differ by this much at most; an entry dated further
/// ahead claims a time no machine has seen.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How old a cache entry written at `created_at` is now; None when the time cannot be read or
/// lies in the future beyond clock skew (such an entry is treated as too old to trust: a date
/// ahead of now would otherwise make it fresh under any `--cache-ttl`, for ever).
pub(super) fn entry_age(created_at: &str) -> Option<Duration> {
    let at =
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .ok()?;
    let age = (time::OffsetDateTime::now_utc() - at).as_seconds_f64();
    if age < -CLOCK_SKEW.as_secs_f64() {
        return None;
    }
    Some(Duration::from_secs_f64(age.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_entry_dated_in_the_future_is_never_fresh() {
        let at = |offset: time::Duration| {
            crate::model::format_time(time::OffsetDateTime::now_utc() + offset)
        };
        assert!(entry_age(&at(time::Duration::days(365))).is_none());
        assert!(entry_age(&at(time::Duration::minutes(5))).is_none());
        // Within clock skew it is just new; in the past it has its age.
        assert_eq!(
            entry_age(&at(time::Duration::seconds(10))),
            Some(Duration::ZERO)
        );
        let hour = entry_age(&at(time::Duration::hours(-1))).unwrap();
        assert!(hour >= Duration::from_secs(3599), "{hour:?}");
        assert!(entry_age("yesterday").is_none());
    }

    #[test]
    fn cache_keys_differ_by_endpoint_body_row_and_repetition() {
        let a = cache_key("http://a", b"{}", "1", 0);
        assert_eq!(a, cache_key("http://a", b"{}", "1", 0));
        assert_ne!(a, cache_key("http://b", b"{}", "1", 0));
        assert_ne!(a, cache_key("http://a", b"{ }", "1", 0));
        assert_ne!(a, cache_key("http://a", b"{}", "2", 0));
        assert_ne!(a, cache_key("http://a", b"{}", "1", 1));
        // The row id is length-prefixed: no id and body split can collide with another.
        assert_ne!(cache_key("u", b"x", "12", 0), cache_key("u", b"x", "1", 20));
    }
}
