//! Rate limits: token buckets (requests and tokens per minute), what an endpoint's
//! `x-ratelimit-*` headers say, and the adaptive concurrency that backs off on a 429. The
//! client paces itself with these; `runner mock-server` enforces the same buckets. It only counts
//! and waits: it must not send requests or read responses (the client hands it the headers by
//! name), nor decide whether an attempt is retried (that is `client::retry`'s).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A bucket that refills continuously at `per_minute / 60` a second up to `capacity`, the way
/// hosted APIs describe their limits. Its level may go below zero: a request whose real cost
/// turned out higher than its estimate leaves a debt the next requests wait out.
#[derive(Debug, Clone)]
pub struct Bucket {
    per_minute: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    /// A bucket for `per_minute`, holding at most `burst` seconds' worth (never less than one
    /// unit), starting full.
    pub fn new(per_minute: f64, burst: Duration, now: Instant) -> Bucket {
        let capacity = (per_minute / 60.0 * burst.as_secs_f64()).max(1.0);
        Bucket {
            per_minute,
            capacity,
            level: capacity,
            at: now,
        }
    }

    pub fn per_minute(&self) -> f64 {
        self.per_minute
    }

    fn rate_per_sec(&self) -> f64 {
        self.per_minute / 60.0
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.rate_per_sec()).min(self.capacity);
        self.at = now;
    }

    /// Takes `amount` when the bucket holds it; else says how long until it will. An amount
    /// larger than the whole bucket is taken once the bucket is full (it could never fit).
    pub fn try_take(&mut self, amount: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let needed = amount.min(self.capacity);
        if self.level >= needed {
            self.level -= amount;
            Ok(())
        } else {
            let missing = needed - self.level;
            Err(Duration::from_secs_f64(missing / self.rate_per_sec()))
        }
    }

    /// Adds `delta` (negative: takes), without waiting: corrects an estimate after the fact.
    pub fn adjust(&mut self, delta: f64, now: Instant) {
        self.refill(now);
        self.level = (self.level + delta).min(self.capacity);
    }

    /// What is left now, rounded down.
    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.level.max(0.0).floor() as u64
    }

    /// How long until the bucket is full again.
    pub fn reset_in(&mut self, now: Instant) -> Duration {
        self.refill(now);
        Duration::from_secs_f64(((self.capacity - self.level) / self.rate_per_sec()).max(0.0))
    }

    /// Lowers the rate (never raises it), keeping the level within the new capacity.
    pub fn tighten(&mut self, per_minute: f64, burst: Duration, now: Instant) {
        if per_minute >= self.per_minute || per_minute <= 0.0 {
            return;
        }
        self.refill(now);
        self.per_minute = per_minute;
        self.capacity = (per_minute / 60.0 * burst.as_secs_f64()).max(1.0);
        self.level = self.level.min(self.capacity);
    }

    /// Sets the rate, up or down, keeping the level within the new capacity.
    pub fn set_rate(&mut self, per_minute: f64, burst: Duration, now: Instant) {
        if per_minute <= 0.0 || per_minute == self.per_minute {
            return;
        }
        self.refill(now);
        self.per_minute = per_minute;
        self.capacity = (per_minute / 60.0 * burst.as_secs_f64()).max(1.0);
        self.level = self.level.min(self.capacity);
    }

    /// Takes the endpoint's own bucket size (`capacity`, when larger than this one's) and
    /// level: the burst it allows is used from then on, not only its rate.
    pub fn adopt(&mut self, capacity: f64, level: f64, now: Instant) {
        self.refill(now);
        self.capacity = self.capacity.max(capacity);
        self.level = level.min(self.capacity);
    }

    /// Lowers the level to what the server says is left, when that is less.
    pub fn sync_remaining(&mut self, remaining: f64, now: Instant) {
        self.refill(now);
        self.level = self.level.min(remaining);
    }
}

/// `x-ratelimit-reset-*` as OpenAI writes it (`1s`, `6m0s`, `20ms`, `1h2m3.5s`), or plain
/// seconds.
pub fn parse_reset(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (scale, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return None;
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite()).then(|| Duration::from_secs_f64(total))
}

/// `x-ratelimit-reset-*` as runner's mock writes it: OpenAI's form.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        let secs = d.as_secs_f64();
        let minutes = (secs / 60.0).floor();
        let rest = secs - minutes * 60.0;
        if minutes >= 1.0 {
            format!("{}m{:.3}s", minutes as u64, rest)
        } else {
            format!("{rest:.3}s")
        }
    }
}

/// What one response's `x-ratelimit-*` headers say.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reported {
    pub limit_requests: Option<f64>,
    pub remaining_requests: Option<f64>,
    pub reset_requests: Option<Duration>,
    pub limit_tokens: Option<f64>,
    pub remaining_tokens: Option<f64>,
    pub reset_tokens: Option<Duration>,
}

impl Reported {
    /// Reads the six headers by name; a value that does not parse is ignored, not trusted.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Reported {
        let number = |name: &str| {
            get(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        Reported {
            limit_requests: number("x-ratelimit-limit-requests").filter(|v| *v > 0.0),
            remaining_requests: number("x-ratelimit-remaining-requests"),
            reset_requests: get("x-ratelimit-reset-requests").and_then(parse_reset),
            limit_tokens: number("x-ratelimit-limit-tokens").filter(|v| *v > 0.0),
            remaining_tokens: number("x-ratelimit-remaining-tokens"),
            reset_tokens: get("x-ratelimit-reset-tokens").and_then(parse_reset),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Reported::default()
    }
}

/// How much of a limit the client allows itself at once: a short burst keeps the server's own
/// bucket from emptying when the client starts or catches up.
const CLIENT_BURST: Duration = Duration::from_millis(250);

/// The client's limits: the buckets it was given (`--max-rpm`, `--max-tpm`) or learnt from the
/// endpoint's headers, tightened by whatever the endpoint reports.
#[derive(Debug, Default)]
pub struct Limits {
    requests: Mutex<Option<Bucket>>,
    tokens: Mutex<Option<Bucket>>,
    /// Whether each bucket (requests, tokens) took the endpoint's burst yet.
    adopted: [std::sync::atomic::AtomicBool; 2],
}

impl Limits {
    pub fn new(max_rpm: Option<f64>, max_tpm: Option<f64>) -> Limits {
        let now = Instant::now();
        Limits {
            requests: Mutex::new(max_rpm.map(|r| Bucket::new(r, CLIENT_BURST, now))),
            tokens: Mutex::new(max_tpm.map(|t| Bucket::new(t, CLIENT_BURST, now))),
            adopted: Default::default(),
        }
    }

    /// No bucket at all: nothing to wait for.
    pub fn is_unlimited(&self) -> bool {
        lock(&self.requests).is_none() && lock(&self.tokens).is_none()
    }

    /// Waits until both buckets allow a request estimated at `tokens`, then takes it. Returns
    /// how long it waited.
    pub async fn acquire(&self, tokens: f64) -> Duration {
        let started = Instant::now();
        loop {
            let wait = {
                let now = Instant::now();
                let mut requests = lock(&self.requests);
                let mut token_bucket = lock(&self.tokens);
                // Both must allow it before either is taken from.
                let r = requests.as_mut().map(|b| b.clone().try_take(1.0, now));
                let t = token_bucket
                    .as_mut()
                    .map(|b| b.clone().try_take(tokens, now));
                match (r, t) {
                    (Some(Err(a)), Some(Err(b))) => Some(a.max(b)),
                    (Some(Err(a)), _) | (_, Some(Err(a))) => Some(a),
                    _ => {
                        if let Some(b) = requests.as_mut() {
                            let _ = b.try_take(1.0, now);
                        }
                        if let Some(b) = token_bucket.as_mut() {
                            let _ = b.try_take(tokens, now);
                        }
                        None
                    }
                }
            };
            match wait {
                None => return started.elapsed(),
                // At least a millisecond, so that rounding never spins.
                Some(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// Corrects the token bucket once the real usage is known.
    pub fn settle(&self, estimated: f64, actual: f64) {
        if let Some(bucket) = lock(&self.tokens).as_mut() {
            bucket.adjust(estimated - actual, Instant::now());
        }
    }

    /// Sets or tightens the buckets from what the endpoint reports. The first time a bucket
    /// paces at the endpoint's own rate, it also takes the endpoint's burst: its size is what
    /// is left plus what refills before it is full (`remaining` + `reset` × rate), and its level
    /// what is left less the `in_flight` requests the endpoint has not counted yet. A run's
    /// first request goes out alone, so from its answer on the whole burst is used.
    pub fn observe(&self, reported: &Reported, in_flight: usize) {
        let now = Instant::now();
        let apply = |slot: &Mutex<Option<Bucket>>,
                     adopted: &std::sync::atomic::AtomicBool,
                     limit: Option<f64>,
                     remaining: Option<f64>,
                     reset: Option<Duration>,
                     unit: f64| {
            let mut slot = lock(slot);
            if let Some(limit) = limit {
                match slot.as_mut() {
                    Some(bucket) => bucket.tighten(limit, CLIENT_BURST, now),
                    None => {
                        let mut bucket = Bucket::new(limit, CLIENT_BURST, now);
                        // Learnt mid-run: start empty, the server's bucket is being used.
                        bucket.sync_remaining(0.0, now);
                        *slot = Some(bucket);
                    }
                }
                if let (Some(bucket), Some(remaining), Some(reset)) =
                    (slot.as_mut(), remaining, reset)
                {
                    // Only a bucket at the endpoint's rate: a lower --max-rpm keeps its own.
                    let same_rate = (bucket.per_minute() - limit).abs() <= limit * 1e-9;
                    if same_rate && !adopted.swap(true, Ordering::Relaxed) {
                        let capacity = remaining + reset.as_secs_f64() * limit / 60.0;
                        let level = remaining - in_flight as f64 * unit;
                        bucket.adopt(capacity.floor(), level, now);
                    }
                }
            }
            if let (Some(bucket), Some(remaining)) = (slot.as_mut(), remaining) {
                bucket.sync_remaining(remaining, now);
            }
        };
        apply(
            &self.requests,
            &self.adopted[0],
            reported.limit_requests,
            reported.remaining_requests,
            reported.reset_requests,
            1.0,
        );
        // A request in flight holds an unknown number of tokens: the tokens' level is what
        // the endpoint says is left, less nothing (it corrects itself as answers arrive).
        apply(
            &self.tokens,
            &self.adopted[1],
            reported.limit_tokens,
            reported.remaining_tokens,
            reported.reset_tokens,
            0.0,
        );
    }

    /// This process's share of limits that `parts` processes keep together: each bucket paces
    /// at its limit ÷ `parts` (raised again when fewer share it). Processes that share a limit
    /// never take the endpoint's whole burst: each would spend it.
    pub fn share(&self, max_rpm: Option<f64>, max_tpm: Option<f64>, parts: usize) {
        for adopted in &self.adopted {
            adopted.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        let parts = parts.max(1) as f64;
        for (slot, limit) in [(&self.requests, max_rpm), (&self.tokens, max_tpm)] {
            if let Some(limit) = limit {
                let mut slot = lock(slot);
                match slot.as_mut() {
                    Some(bucket) => bucket.set_rate(limit / parts, CLIENT_BURST, now),
                    None => *slot = Some(Bucket::new(limit / parts, CLIENT_BURST, now)),
                }
            }
        }
    }

    /// Requests the bucket would let through now (None without a request limit).
    #[cfg(test)]
    fn requests_left(&self) -> Option<u64> {
        lock(&self.requests)
            .as_mut()
            .map(|b| b.remaining(Instant::now()))
    }

    /// The limits in force, per minute: (requests, tokens).
    pub fn in_force(&self) -> (Option<f64>, Option<f64>) {
        (
            lock(&self.requests).as_ref().map(Bucket::per_minute),
            lock(&self.tokens).as_ref().map(Bucket::per_minute),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Additive increase, multiplicative decrease of the requests allowed in flight: halved on a
/// 429 (at most once per `COOL_DOWN`, so one burst of 429s counts once), one more after as
/// many successes as the current limit (about one per round trip), between 1 and `max`.
#[derive(Debug)]
pub struct Aimd {
    max: usize,
    state: Mutex<AimdState>,
}

#[derive(Debug)]
struct AimdState {
    limit: usize,
    successes: usize,
    last_cut: Option<Instant>,
}

const COOL_DOWN: Duration = Duration::from_secs(1);

impl Aimd {
    pub fn new(max: usize) -> Aimd {
        let max = max.max(1);
        Aimd {
            max,
            state: Mutex::new(AimdState {
                limit: max,
                successes: 0,
                last_cut: None,
            }),
        }
    }

    pub fn limit(&self) -> usize {
        lock(&self.state).limit
    }

    /// A 429: returns the new limit when it changed.
    pub fn throttled(&self) -> Option<usize> {
        let mut s = lock(&self.state);
        let now = Instant::now();
        if s.last_cut
            .is_some_and(|at| now.duration_since(at) < COOL_DOWN)
        {
            return None;
        }
        s.last_cut = Some(now);
        s.successes = 0;
        let next = (s.limit / 2).max(1);
        (next != s.limit).then(|| {
            s.limit = next;
            next
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A success: returns the new limit when it grew.
    pub fn succeeded(&self) -> Option<usize> {
        let mut s = lock(&self.state);
        if s.limit >= self.max {
            return None;
        }
        s.successes += 1;
        if s.successes >= s.limit {
            s.successes = 0;
            s.limit += 1;
            Some(s.limit)
        } else {
            None
        }
    }
}

/// The requests a run may have in flight: a semaphore whose size follows `Aimd`. Shrinking
/// cannot take permits back from requests in flight, so it is a debt: permits coming back are
/// forgotten until it is paid.
#[derive(Debug)]
pub struct Gate {
    semaphore: std::sync::Arc<tokio::sync::Semaphore>,
    aimd: Aimd,
    debt: AtomicUsize,
}

/// A place in the gate, given back (or forgotten, to pay a shrink) when dropped.
pub struct Permit {
    gate: std::sync::Arc<Gate>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let paid = self
                .gate
                .debt
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
                .is_ok();
            if paid {
                permit.forget();
            }
        }
    }
}

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate {
            semaphore: std::sync::Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            aimd: Aimd::new(max),
            debt: AtomicUsize::new(0),
        }
    }

    /// Waits for a place; None once the gate is closed.
    pub async fn acquire(self: &std::sync::Arc<Self>) -> Option<Permit> {
        let permit = self.semaphore.clone().acquire_owned().await.ok()?;
        Some(Permit {
            gate: self.clone(),
            permit: Some(permit),
        })
    }

    pub fn limit(&self) -> usize {
        self.aimd.limit()
    }

    /// Places taken now.
    pub fn in_flight(&self) -> usize {
        (self.aimd.limit() + self.debt.load(Ordering::Relaxed))
            .saturating_sub(self.semaphore.available_permits())
    }

    fn throttled(&self) {
        let before = self.aimd.limit();
        if let Some(after) = self.aimd.throttled() {
            self.debt.fetch_add(before - after, Ordering::Relaxed);
        }
    }

    fn succeeded(&self) {
        if self.aimd.succeeded().is_some() {
            let paid = self
                .debt
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1))
                .is_ok();
            if !paid {
                self.semaphore.add_permits(1);
            }
        }
    }
}

/// Everything that holds a run back to an endpoint's limits, shared by the client (which
/// paces each attempt and reads the answers) and the runner (which takes places in the gate),
/// with the figures a person watching wants: 429s seen and time spent held back.
#[derive(Debug)]
pub struct Throttle {
    pub limits: Limits,
    pub gate: std::sync::Arc<Gate>,
    rate_limited: AtomicU64,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    waiting: usize,
    since: Option<Instant>,
    total: Duration,
}

/// What a throttle has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThrottleState {
    /// Answers with status 429.
    pub rate_limited: u64,
    /// Wall time during which at least one request was held back (by a bucket or a 429's wait).
    pub throttled: Duration,
    /// Requests allowed in flight now, and at most.
    pub concurrency: usize,
    pub max_concurrency: usize,
}

/// Held back while alive.
pub struct Hold<'a>(&'a Throttle);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.0.held);
        held.waiting -= 1;
        if held.waiting == 0
            && let Some(since) = held.since.take()
        {
            held.total += since.elapsed();
        }
    }
}

impl Throttle {
    pub fn new(max_rpm: Option<f64>, max_tpm: Option<f64>, concurrency: usize) -> Throttle {
        Throttle {
            limits: Limits::new(max_rpm, max_tpm),
            gate: std::sync::Arc::new(Gate::new(concurrency)),
            rate_limited: AtomicU64::new(0),
            held: Mutex::new(Held::default()),
        }
    }

    /// Counts the time until the returned guard drops as time held back.
    pub fn hold(&self) -> Hold<'_> {
        let mut held = lock(&self.held);
        if held.waiting == 0 {
            held.since = Some(Instant::now());
        }
        held.waiting += 1;
        Hold(self)
    }

    /// Waits for the buckets, counting the wait as held back only when there was one.
    pub async fn pace(&self, tokens: f64) {
        if self.limits.is_unlimited() {
            return;
        }
        let _hold = self.hold();
        self.limits.acquire(tokens).await;
    }

    /// An answer arrived: what its headers say, and whether it was a 429.
    pub fn answered(&self, status: u16, reported: &Reported) {
        if !reported.is_empty() {
            // Requests holding a place, this one aside.
            let in_flight = self.gate.in_flight().saturating_sub(1);
            self.limits.observe(reported, in_flight);
        }
        if status == 429 {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            self.gate.throttled();
        } else if (200..300).contains(&status) {
            self.gate.succeeded();
        }
    }

    pub fn state(&self) -> ThrottleState {
        let held = lock(&self.held);
        let current = held.since.map(|s| s.elapsed()).unwrap_or_default();
        ThrottleState {
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            throttled: held.total + current,
            concurrency: self.gate.limit(),
            max_concurrency: self.gate.aimd.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(limit: f64, remaining: f64, reset_ms: u64) -> Reported {
        Reported {
            limit_requests: Some(limit),
            remaining_requests: Some(remaining),
            reset_requests: Some(Duration::from_millis(reset_ms)),
            ..Reported::default()
        }
    }

    #[test]
    fn the_endpoints_burst_is_taken_from_its_first_answer_and_only_at_its_own_rate() {
        // 600 a minute, 99 left, full again in 100 ms: a bucket of 100, 99 of them usable now.
        let limits = Limits::new(None, None);
        limits.observe(&reported(600.0, 99.0, 100), 0);
        assert_eq!(limits.requests_left(), Some(99));
        // Later answers only lower the level; the burst is taken once.
        limits.observe(&reported(600.0, 40.0, 6_000), 0);
        assert_eq!(limits.requests_left(), Some(40));
        limits.observe(&reported(600.0, 99.0, 100), 0);
        assert_eq!(limits.requests_left(), Some(40));

        // Requests in flight that the endpoint has not counted yet come off the level.
        let limits = Limits::new(None, None);
        limits.observe(&reported(600.0, 99.0, 100), 10);
        assert_eq!(limits.requests_left(), Some(89));

        // --max-rpm at the endpoint's rate takes its burst too; a lower one keeps its own
        // short burst (a quarter of a second: 1 request at 300 a minute).
        let limits = Limits::new(Some(600.0), None);
        limits.observe(&reported(600.0, 99.0, 100), 0);
        assert_eq!(limits.requests_left(), Some(99));
        let limits = Limits::new(Some(300.0), None);
        limits.observe(&reported(600.0, 99.0, 100), 0);
        assert_eq!(limits.requests_left(), Some(1));
        assert_eq!(limits.in_force().0, Some(300.0));
    }

    #[test]
    fn a_bucket_refills_continuously_and_says_how_long_to_wait() {
        let t0 = Instant::now();
        // 60 a minute: one a second; a burst of 2 s holds 2.
        let mut b = Bucket::new(60.0, Duration::from_secs(2), t0);
        assert!(b.try_take(1.0, t0).is_ok());
        assert!(b.try_take(1.0, t0).is_ok());
        let wait = b.try_take(1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        assert!(b.try_take(1.0, t0 + Duration::from_millis(1000)).is_ok());
        assert_eq!(b.remaining(t0 + Duration::from_millis(1500)), 0);
        assert_eq!(b.remaining(t0 + Duration::from_secs(10)), 2, "capped");
    }

    #[test]
    fn an_estimate_corrected_upwards_leaves_a_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(600.0, Duration::from_secs(1), t0); // 10 a second, holds 10
        assert!(b.try_take(10.0, t0).is_ok());
        b.adjust(-5.0, t0); // it cost 15
        let wait = b.try_take(1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.6).abs() < 1e-6, "{wait:?}");
        // More than the bucket can ever hold is taken once it is full.
        let mut small = Bucket::new(60.0, Duration::from_secs(1), t0);
        assert!(small.try_take(5.0, t0).is_ok());
    }

    #[test]
    fn tightening_only_lowers() {
        let t0 = Instant::now();
        let mut b = Bucket::new(600.0, Duration::from_secs(1), t0);
        b.tighten(1200.0, Duration::from_secs(1), t0);
        assert_eq!(b.per_minute(), 600.0);
        b.tighten(60.0, Duration::from_secs(1), t0);
        assert_eq!(b.per_minute(), 60.0);
        assert_eq!(b.remaining(t0), 1);
    }

    #[test]
    fn reset_durations_in_openai_form() {
        for (text, secs) in [
            ("1s", 1.0),
            ("6m0s", 360.0),
            ("20ms", 0.02),
            ("1h2m3.5s", 3723.5),
            ("0.5", 0.5),
            ("17", 17.0),
        ] {
            assert_eq!(
                parse_reset(text),
                Some(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in ["", "soon", "5x", "-1", "m"] {
            assert_eq!(parse_reset(bad), None, "{bad}");
        }
        for d in [
            Duration::from_millis(20),
            Duration::from_millis(1500),
            Duration::from_secs(361),
        ] {
            let back = parse_reset(&format_reset(d)).unwrap();
            assert!(
                (back.as_secs_f64() - d.as_secs_f64()).abs() < 0.001,
                "{d:?}"
            );
        }
    }

    #[test]
    fn headers_that_do_not_parse_are_ignored() {
        let headers = [
            ("x-ratelimit-limit-requests", "1200"),
            ("x-ratelimit-remaining-requests", "nan"),
            ("x-ratelimit-reset-requests", "2s"),
            ("x-ratelimit-limit-tokens", "-5"),
        ];
        let r = Reported::from_headers(|name| {
            headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        });
        assert_eq!(r.limit_requests, Some(1200.0));
        assert_eq!(r.remaining_requests, None);
        assert_eq!(r.reset_requests, Some(Duration::from_secs(2)));
        assert_eq!(r.limit_tokens, None);
        assert!(Reported::default().is_empty());
    }

    #[test]
    fn concurrency_halves_on_a_429_once_per_burst_and_grows_back_by_one() {
        let aimd = Aimd::new(64);
        assert_eq!(aimd.throttled(), Some(32));
        assert_eq!(aimd.throttled(), None, "the same burst counts once");
        for _ in 0..31 {
            assert_eq!(aimd.succeeded(), None);
        }
        assert_eq!(aimd.succeeded(), Some(33));
        let one = Aimd::new(1);
        assert_eq!(one.throttled(), None, "never below 1");
        assert_eq!(one.succeeded(), None, "never above the maximum");
    }

    #[tokio::test]
    async fn the_gate_shrinks_on_a_429_by_forgetting_returned_permits_and_grows_back() {
        let throttle = Throttle::new(None, None, 4);
        let gate = throttle.gate.clone();
        let held: Vec<Permit> = [(); 4]
            .iter()
            .map(|_| gate.semaphore.clone().try_acquire_owned().unwrap())
            .map(|p| Permit {
                gate: gate.clone(),
                permit: Some(p),
            })
            .collect();
        throttle.answered(429, &Reported::default());
        assert_eq!(gate.limit(), 2);
        drop(held);
        // Two of the four came back; two were forgotten to pay the shrink.
        assert_eq!(gate.semaphore.available_permits(), 2);
        assert_eq!(throttle.state().rate_limited, 1);
        for _ in 0..2 {
            throttle.answered(200, &Reported::default());
        }
        assert_eq!(gate.limit(), 3);
        assert_eq!(gate.semaphore.available_permits(), 3);
        assert!(gate.acquire().await.is_some());
    }

    #[tokio::test]
    async fn acquire_paces_requests_to_the_rate() {
        let limits = Limits::new(Some(1200.0), None); // 20 a second, a burst of 5
        let started = Instant::now();
        for _ in 0..15 {
            limits.acquire(0.0).await;
        }
        // 5 at once, then 10 more at 50 ms apart.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert_eq!(limits.in_force(), (Some(1200.0), None));
    }

    #[test]
    fn a_share_paces_at_the_limit_divided_and_grows_back_when_fewer_share() {
        let limits = Limits::new(Some(600.0), None);
        // (sharing workers, requests per minute here, tokens per minute here)
        for (parts, rpm, tpm) in [
            (1, 600.0, 9000.0),
            (4, 150.0, 2250.0),
            (3, 200.0, 3000.0),
            (0, 600.0, 9000.0),
        ] {
            limits.share(Some(600.0), Some(9000.0), parts);
            assert_eq!(limits.in_force(), (Some(rpm), Some(tpm)), "{parts} workers");
        }
        // A lowered rate lowers what the bucket holds with it.
        let t0 = Instant::now();
        let mut b = Bucket::new(600.0, Duration::from_secs(1), t0);
        b.set_rate(60.0, Duration::from_secs(1), t0);
        assert_eq!(b.remaining(t0), 1);
        assert!(b.try_take(1.0, t0).is_ok());
        assert!(b.try_take(1.0, t0).is_err());
    }
}
