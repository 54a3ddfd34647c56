//! The terminal's progress reporter: a bar on a terminal (a line every few seconds when stderr
//! is not one) while a run's requests go out, retries and rate limits included, and notices as
//! plain lines on stderr. It only shows the engine's events: it must not change a run, and
//! writes nothing to stdout.

use super::experiment_summary;
use crate::engine::{Reporter, RunEvent, Tally};

/// The progress line's account of retries: how many requests wait, why, and for how long, so
/// that a run held back by an endpoint's rate limit says so instead of looking frozen.
fn retry_text(retry: &crate::client::RetryState) -> String {
    let cause = retry
        .last_cause
        .map(|c| c.to_string())
        .unwrap_or_else(|| "retry".into());
    match (retry.waiting, retry.total) {
        (0, 0) => String::new(),
        (0, total) => format!(", {total} retried"),
        (waiting, total) => format!(
            ", {waiting} waiting to retry after {cause} (up to {:.1} s more; {total} retried)",
            retry.longest_wait.as_secs_f64()
        ),
    }
}

/// The progress line's account of rate limits: 429s, time held back, and the concurrency
/// the run has adapted to; nothing while no limit was met.
fn throttle_text(t: &crate::limit::ThrottleState) -> String {
    if t.rate_limited == 0 && t.throttled.is_zero() {
        return String::new();
    }
    format!(
        "; rate limits: {} × 429, throttled {:.1} s, concurrency {}/{}",
        t.rate_limited,
        t.throttled.as_secs_f64(),
        t.concurrency,
        t.max_concurrency
    )
}

/// The time the rows still to do will take at this run's own rate: rows stored before a
/// resume count neither in the rate nor as work left.
fn eta_text(total: u64, already: u64, done: u64, rate: f64) -> String {
    let left = total.saturating_sub(already + done);
    if left == 0 {
        return "0s".into();
    }
    if rate.is_nan() || rate <= 0.0 {
        return "-".into();
    }
    let secs = (left as f64 / rate).ceil() as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// What the terminal shows of one run: a bar on a terminal, else a line every few seconds.
struct Progress {
    id: String,
    total: u64,
    already: u64,
    started: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
    last_line: Option<std::time::Instant>,
    last: Tally,
}

/// How often the plain-line reporter writes a line when stderr is not a terminal.
const LINE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Progress {
    fn start(id: &str, total: u64, already: u64) -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(id.to_string());
            bar.set_position(already);
            bar
        });
        Progress {
            id: id.to_string(),
            total,
            already,
            started: std::time::Instant::now(),
            bar,
            last_line: None,
            last: Tally::default(),
        }
    }

    fn update(&mut self, tally: Tally) {
        self.last = tally;
        let rate = tally.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.already + tally.done);
                bar.set_message(format!(
                    "{rate:.1} rows/s, ETA {}, errors {}, cached {}{}{}",
                    eta_text(self.total, self.already, tally.done, rate),
                    tally.errors,
                    tally.cached,
                    retry_text(&tally.retry),
                    throttle_text(&tally.throttle)
                ));
            }
            None => {
                let due = self.last_line.is_none_or(|at| at.elapsed() >= LINE_EVERY);
                if due && self.started.elapsed() >= LINE_EVERY {
                    self.line(rate);
                }
            }
        }
    }

    fn line(&mut self, rate: f64) {
        let t = self.last;
        crate::note!(
            "{}: {}/{} rows, {rate:.1} rows/s, ETA {}, {} errors, {} cached{}{}",
            self.id,
            self.already + t.done,
            self.total,
            eta_text(self.total, self.already, t.done, rate),
            t.errors,
            t.cached,
            retry_text(&t.retry),
            throttle_text(&t.throttle)
        );
        self.last_line = Some(std::time::Instant::now());
    }

    fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None if self.last.done > 0 => {
                let rate = self.last.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                self.line(rate);
            }
            None => {}
        }
    }
}

/// The terminal's reporter: a progress bar (or a line every few seconds when stderr is not a
/// terminal) while requests go out, notices as plain lines on stderr.
pub struct Terminal {
    progress: std::cell::RefCell<Option<Progress>>,
    /// The confidence level of the summaries' intervals.
    confidence: f64,
}

impl Default for Terminal {
    fn default() -> Terminal {
        Terminal::new(crate::stats::DEFAULT_CONFIDENCE)
    }
}

impl Terminal {
    pub fn new(confidence: f64) -> Terminal {
        Terminal {
            progress: std::cell::RefCell::new(None),
            confidence,
        }
    }
}

impl Reporter for Terminal {
    fn report(&self, event: RunEvent<'_>) {
        match event {
            RunEvent::Started {
                experiment,
                planned,
                already,
            } => {
                let started = Progress::start(&experiment.id, planned, already);
                if let Some(previous) = self.progress.replace(Some(started)) {
                    previous.finish();
                }
            }
            RunEvent::Progress(tally) => {
                if let Some(progress) = self.progress.borrow_mut().as_mut() {
                    progress.update(tally);
                }
            }
            RunEvent::Interrupted { grace } => crate::note!(
                "interrupted: waiting up to {} s for the requests in flight",
                grace.as_secs()
            ),
            RunEvent::Stopped => {
                if let Some(progress) = self.progress.take() {
                    progress.finish();
                }
            }
            RunEvent::Notice(text) => crate::note!("{text}"),
            RunEvent::Ended {
                experiment,
                summary,
                stats,
                cost,
            } => crate::note!(
                "{}",
                experiment_summary(experiment, summary, Some(stats), cost, self.confidence)
            ),
        }
    }
}

/// How often `Logged` writes a progress line while a run goes on.
const LOG_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A run's events as log lines (`runner worker --log-format json`): its start, its progress
/// every ten seconds, an interrupt, notices and its end, each with its figures as fields, for
/// a log collector rather than a person at a terminal.
#[derive(Default)]
pub struct Logged {
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Reporter for Logged {
    fn report(&self, event: RunEvent<'_>) {
        match event {
            RunEvent::Started {
                experiment,
                planned,
                already,
            } => tracing::info!(
                experiment = %experiment.id,
                prompt = experiment.prompt.as_deref().unwrap_or(""),
                planned,
                already,
                "started"
            ),
            RunEvent::Progress(tally) => {
                let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_some_and(|at| at.elapsed() < LOG_PROGRESS_EVERY) {
                    return;
                }
                *last = Some(std::time::Instant::now());
                tracing::info!(
                    done = tally.done,
                    errors = tally.errors,
                    cached = tally.cached,
                    retries = tally.retry.total,
                    "progress"
                );
            }
            RunEvent::Interrupted { grace } => tracing::warn!(
                grace_secs = grace.as_secs_f64(),
                "interrupted: requests in flight get the grace period to finish"
            ),
            RunEvent::Stopped => tracing::info!("no more requests go out"),
            RunEvent::Ended {
                experiment,
                summary,
                ..
            } => tracing::info!(
                experiment = %experiment.id,
                results = summary.results,
                errored = summary.errored,
                "ended"
            ),
            RunEvent::Notice(text) => tracing::info!("{text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::eta_text;

    #[test]
    fn the_eta_counts_only_this_run_s_rows_at_this_run_s_rate() {
        // 10,000 rows, 9,000 stored before a resume, 100 done now at 10 rows/s: 900 left.
        assert_eq!(eta_text(10_000, 9_000, 100, 10.0), "1m 30s");
        assert_eq!(eta_text(10_000, 0, 0, 0.0), "-");
        assert_eq!(eta_text(100, 60, 40, 5.0), "0s");
        assert_eq!(eta_text(100_000, 0, 1, 10.0), "2h 46m");
        assert_eq!(eta_text(50, 0, 10, 4.0), "10s");
    }
}
