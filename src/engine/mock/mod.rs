//! The mock endpoint: a deterministic OpenAI-compatible chat server for demos, CI dry runs and benchmarks.
//!
//! It speaks real HTTP and the chat-completions wire format, so a client cannot tell it from a
//! provider except by its answers: the first rule whose regex matches the last user message
//! decides the reply, and without a match the last user message is echoed back.
//!
//! `usage` holds word counts (whitespace-separated words), not tokens from a real tokenizer: they
//! only have to be deterministic and roughly proportional to the text.
//!
//! The handler is on the benchmark hot path (10,000+ requests/s from one client), so it borrows
//! from the request body instead of copying it, serializes straight into the response buffer and
//! keeps its counters in atomics rather than behind a lock.
//!
//! This file holds `MockConfig` and the re-exports, nothing else: the router, the accept loop and
//! the handlers are in `server`, request and response bodies in `wire`, streamed answers in
//! `sse`, reply rules in `rules` and the mock's own rate limits in `limits`.

mod limits;
mod rules;
mod server;
mod sse;
mod wire;

pub use rules::{MockError, Rule, load_rules};
pub use server::{router, serve};

use std::time::Duration;

/// How the mock answers: a latency applied to every chat request, and the reply rules in order.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// Zero means no sleep at all, not a zero-length timer.
    pub latency: Duration,
    pub rules: Vec<Rule>,
    /// Requests and tokens per minute, enforced like a hosted API: over them the answer is
    /// 429 with `Retry-After`, and every answer carries `x-ratelimit-*` headers.
    pub rpm: Option<f64>,
    pub tpm: Option<f64>,
    /// How much of those limits is let through at once (a hosted API's burst); None: a
    /// second's worth.
    pub burst: Option<Duration>,
    /// A request with `"stream": true` is answered as server-sent events, one word a chunk,
    /// this long apart.
    pub chunk: Duration,
    /// Answer as a billed endpoint would, without saying it is the mock: runs against it are
    /// then priced at the model's list price (to rehearse costs and budgets offline). Without
    /// it a run the mock answered costs `$0 (mock)`.
    pub priced: bool,
}

/// The header every chat answer of the mock carries (unless `priced`): a run that gets it
/// records that nothing was spent.
pub const MOCK_HEADER: &str = "x-runner-mock";
