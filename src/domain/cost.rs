//! What a run costs: a price table (built in for common OpenAI models, overridable in
//! runner.toml as `[prices."MODEL"]`) that turns recorded tokens into dollars, and the budget
//! that stops a run before it would spend more than `--max-cost`.
//!
//! Costs are derived, not stored: an experiment's cost is its recorded tokens at the prices in
//! force when it is shown, so a corrected price corrects every figure at once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    pub fn cost(&self, prompt_tokens: f64, completion_tokens: f64) -> f64 {
        (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok)
            / 1_000_000.0
    }

    /// A price as written: both figures finite and not negative.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("input_per_mtok", self.input_per_mtok),
            ("output_per_mtok", self.output_per_mtok),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "{name} must be a number of dollars per million tokens, 0 or more, not {value}"
                ));
            }
        }
        Ok(())
    }
}

/// OpenAI's list prices for standard (not batch, not cached-input) requests, in dollars per
/// million tokens, as published on openai.com/api/pricing in 2025. A table cannot follow every
/// change: `[prices."MODEL"]` in runner.toml overrides any of them and adds others.
pub const BUILT_IN: &[(&str, f64, f64)] = &[
    ("gpt-5", 1.25, 10.0),
    ("gpt-5-mini", 0.25, 2.0),
    ("gpt-5-nano", 0.05, 0.40),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4o", 2.50, 10.0),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4-turbo", 10.0, 30.0),
    ("gpt-4", 30.0, 60.0),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("o1", 15.0, 60.0),
    ("o1-mini", 1.10, 4.40),
    ("o3", 2.0, 8.0),
    ("o3-mini", 1.10, 4.40),
    ("o4-mini", 1.10, 4.40),
];

/// Where a price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    BuiltIn,
    RunnerToml,
    /// runner's own mock answered: nothing was spent, whatever the model's list price.
    Mock,
}

/// The prices in force: runner.toml's over the built-in table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    overrides: BTreeMap<String, Price>,
}

impl Prices {
    pub fn new(overrides: BTreeMap<String, Price>) -> Prices {
        Prices { overrides }
    }

    /// The price of `model`: an exact entry (runner.toml first), else the longest table name
    /// the model extends with `-…` (a dated snapshot such as `gpt-4o-mini-2024-07-18`, or a
    /// provider prefix such as `openai/gpt-4o`). None when nothing names it: runner does not
    /// guess a price.
    pub fn lookup(&self, model: &str) -> Option<(Price, Source)> {
        let model = model.rsplit('/').next().unwrap_or(model);
        if let Some(price) = self.overrides.get(model) {
            return Some((*price, Source::RunnerToml));
        }
        if let Some(&(_, input, output)) = BUILT_IN.iter().find(|(name, _, _)| *name == model) {
            return Some((
                Price {
                    input_per_mtok: input,
                    output_per_mtok: output,
                },
                Source::BuiltIn,
            ));
        }
        let extends = |name: &str| {
            model
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('-'))
        };
        let own = self
            .overrides
            .iter()
            .filter(|(name, _)| extends(name))
            .max_by_key(|(name, _)| name.len())
            .map(|(name, price)| (name.len(), *price, Source::RunnerToml));
        let built_in = BUILT_IN
            .iter()
            .filter(|(name, _, _)| extends(name))
            .max_by_key(|(name, _, _)| name.len())
            .map(|&(name, input, output)| {
                (
                    name.len(),
                    Price {
                        input_per_mtok: input,
                        output_per_mtok: output,
                    },
                    Source::BuiltIn,
                )
            });
        // The longer (more specific) name wins; on a tie runner.toml's.
        match (own, built_in) {
            (Some(a), Some(b)) if b.0 > a.0 => Some((b.1, b.2)),
            (Some(a), _) => Some((a.1, a.2)),
            (None, b) => b.map(|b| (b.1, b.2)),
        }
    }

    /// The price of a run of `model`: nothing when the run's endpoint was runner's mock
    /// (`mock`, recorded with the run), else `lookup`'s.
    pub fn of_run(&self, model: &str, mock: bool) -> Option<(Price, Source)> {
        if mock {
            return Some((
                Price {
                    input_per_mtok: 0.0,
                    output_per_mtok: 0.0,
                },
                Source::Mock,
            ));
        }
        self.lookup(model)
    }

    /// What a run's tokens cost (see `of_run`).
    pub fn run_cost(
        &self,
        model: &str,
        mock: bool,
        prompt_tokens: i64,
        completion_tokens: i64,
    ) -> Option<Cost> {
        let (price, source) = self.of_run(model, mock)?;
        Some(Cost {
            usd: price.cost(prompt_tokens as f64, completion_tokens as f64),
            input_per_mtok: price.input_per_mtok,
            output_per_mtok: price.output_per_mtok,
            price_source: source,
        })
    }

    /// The cost of `prompt_tokens` in and `completion_tokens` out on `model`.
    pub fn cost(&self, model: &str, prompt_tokens: i64, completion_tokens: i64) -> Option<Cost> {
        self.run_cost(model, false, prompt_tokens, completion_tokens)
    }
}

/// Tokens turned into dollars, with the price used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub usd: f64,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub price_source: Source,
}

/// Dollars as people read them: cents for larger sums, more digits for small ones.
pub fn usd(value: f64) -> String {
    if value == 0.0 {
        "$0".into()
    } else if value >= 1.0 {
        format!("${value:.2}")
    } else if value >= 0.01 {
        format!("${value:.4}")
    } else {
        format!("${value:.6}")
    }
}

/// A run's cost as shown: `$0 (mock)` when runner's mock answered it.
pub fn run_usd(value: f64, mock: bool) -> String {
    if mock { "$0 (mock)".into() } else { usd(value) }
}

/// `--max-cost`: a run's spending limit. Every request reserves its estimated cost before it is
/// sent and settles to what its usage says when answered. A request whose estimate would take
/// the spent and reserved total past the limit waits while others are in flight (their
/// answers usually cost less than estimated); when none is and it still does not fit, it is
/// not sent, and the run stops.
#[derive(Debug)]
pub struct Budget {
    pub max_usd: f64,
    pub price: Price,
    state: Mutex<Spending>,
    settled: tokio::sync::Notify,
}

#[derive(Debug, Default, Clone, Copy)]
struct Spending {
    /// Settled: earlier runs of the experiment and the answers of this one.
    spent: f64,
    /// Estimates of requests in flight.
    reserved: f64,
    in_flight: usize,
}

/// A request's estimated cost, held until it is settled or released.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reservation(f64);

impl Budget {
    /// `already`: what the experiment's stored results cost (a resumed run counts them).
    pub fn new(max_usd: f64, price: Price, already: f64) -> Budget {
        Budget {
            max_usd,
            price,
            state: Mutex::new(Spending {
                spent: already,
                ..Spending::default()
            }),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// Holds the estimated cost of a request, or refuses when it would exceed the limit:
    /// `Err(true)` while other requests are in flight (their answers may leave room).
    pub fn reserve(&self, prompt_tokens: f64, completion_tokens: f64) -> Result<Reservation, bool> {
        let estimate = self.price.cost(prompt_tokens, completion_tokens);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.spent + state.reserved + estimate > self.max_usd {
            return Err(state.in_flight > 0);
        }
        state.reserved += estimate;
        state.in_flight += 1;
        Ok(Reservation(estimate))
    }

    /// `reserve`, waiting for requests in flight to settle while they might leave room. None:
    /// the request does not fit even with nothing else in flight.
    pub async fn reserve_waiting(
        &self,
        prompt_tokens: f64,
        completion_tokens: f64,
    ) -> Option<Reservation> {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            // Registered before the check, so a settlement in between is not missed.
            settled.as_mut().enable();
            match self.reserve(prompt_tokens, completion_tokens) {
                Ok(reservation) => return Some(reservation),
                Err(false) => return None,
                Err(true) => settled.await,
            }
        }
    }

    /// The request was answered: its reservation becomes what it really cost (the estimate
    /// when the answer carried no usage).
    pub fn settle(&self, reservation: Reservation, tokens: Option<(i64, i64)>) {
        let actual = match tokens {
            Some((p, c)) => self.price.cost(p.max(0) as f64, c.max(0) as f64),
            None => reservation.0,
        };
        self.finish(reservation, actual);
    }

    /// The request failed without an answer: a failed call is not billed.
    pub fn release(&self, reservation: Reservation) {
        self.finish(reservation, 0.0);
    }

    fn finish(&self, reservation: Reservation, cost: f64) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.reserved = (state.reserved - reservation.0).max(0.0);
            state.in_flight = state.in_flight.saturating_sub(1);
            state.spent += cost;
        }
        self.settled.notify_waiters();
    }

    pub fn spent(&self) -> f64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: f64, output: f64) -> Price {
        Price {
            input_per_mtok: input,
            output_per_mtok: output,
        }
    }

    #[test]
    fn models_find_their_price() {
        let prices = Prices::new(BTreeMap::from([
            ("gpt-4o".to_string(), price(1.0, 2.0)),
            ("llama-3".to_string(), price(0.1, 0.2)),
        ]));
        let table = [
            // (model, expected price, source)
            ("gpt-4o", Some((1.0, 2.0)), Some(Source::RunnerToml)),
            ("gpt-4o-mini", Some((0.15, 0.60)), Some(Source::BuiltIn)),
            (
                "gpt-4o-mini-2024-07-18",
                Some((0.15, 0.60)),
                Some(Source::BuiltIn),
            ),
            (
                "gpt-4o-2024-08-06",
                Some((1.0, 2.0)),
                Some(Source::RunnerToml),
            ),
            (
                "openai/gpt-4.1-nano",
                Some((0.10, 0.40)),
                Some(Source::BuiltIn),
            ),
            ("llama-3-70b", Some((0.1, 0.2)), Some(Source::RunnerToml)),
            ("o3-mini", Some((1.10, 4.40)), Some(Source::BuiltIn)),
            ("gpt-4o1", None, None),
            ("mock", None, None),
        ];
        for (model, expected, source) in table {
            let found = prices.lookup(model);
            assert_eq!(
                found.map(|(p, _)| (p.input_per_mtok, p.output_per_mtok)),
                expected,
                "{model}"
            );
            assert_eq!(found.map(|(_, s)| s), source, "{model}");
        }
    }

    #[test]
    fn tokens_become_dollars() {
        let p = price(0.15, 0.60);
        // 1M in and 1M out: the two prices.
        assert!((p.cost(1e6, 1e6) - 0.75).abs() < 1e-12);
        let cost = Prices::default().cost("gpt-4o-mini", 2_000, 500).unwrap();
        assert!((cost.usd - (2_000.0 * 0.15 + 500.0 * 0.60) / 1e6).abs() < 1e-15);
        assert_eq!(usd(0.0), "$0");
        assert_eq!(usd(12.345), "$12.35");
        assert_eq!(usd(0.0123), "$0.0123");
        assert_eq!(usd(0.000_12), "$0.000120");
    }

    #[test]
    fn bad_prices_are_refused() {
        assert!(price(1.0, 2.0).check().is_ok());
        assert!(price(-1.0, 2.0).check().is_err());
        assert!(price(1.0, f64::NAN).check().is_err());
        assert!(price(f64::INFINITY, 0.0).check().is_err());
    }

    #[test]
    fn a_budget_refuses_what_would_exceed_it() {
        // $1 per million either way: 1,000 tokens cost $0.001.
        let budget = Budget::new(0.0035, price(1.0, 1.0), 0.001);
        let a = budget.reserve(500.0, 500.0).expect("0.001 + 0.001 fits");
        let b = budget.reserve(500.0, 500.0).expect("0.003 fits");
        assert_eq!(
            budget.reserve(500.0, 500.0),
            Err(true),
            "0.004 would not, for now: two are in flight"
        );
        // A failed call is not billed: its estimate comes back.
        budget.release(b);
        // The answer cost less than estimated.
        budget.settle(a, Some((100, 100)));
        assert!((budget.spent() - 0.0012).abs() < 1e-12);
        let c = budget.reserve(500.0, 500.0).expect("0.0022 fits");
        budget.settle(c, None);
        assert!((budget.spent() - 0.0022).abs() < 1e-12);
        assert_eq!(
            budget.reserve(700.0, 700.0),
            Err(false),
            "0.0036 would not, with nothing in flight"
        );
    }

    #[tokio::test]
    async fn a_request_waits_for_those_in_flight_to_leave_room() {
        let budget = std::sync::Arc::new(Budget::new(0.002, price(1.0, 1.0), 0.0));
        let first = budget.reserve(500.0, 500.0).unwrap();
        let second = budget.reserve(500.0, 500.0).unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve_waiting(500.0, 500.0).await })
        };
        tokio::task::yield_now().await;
        // Each answer cost a tenth of its estimate: room for the third.
        budget.settle(first, Some((50, 50)));
        budget.settle(second, Some((50, 50)));
        let third = waiting.await.unwrap().expect("room after the answers");
        budget.settle(third, Some((500, 500)));
        assert!((budget.spent() - 0.0012).abs() < 1e-12);
        // Nothing in flight and no room: refused at once.
        assert_eq!(budget.reserve_waiting(500.0, 500.0).await, None);
    }
}
