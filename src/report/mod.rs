//! Renderers: pure functions from prompts, experiments, comparisons and sync reports to text
//! tables, Markdown or JSON values, plus the terminal's progress reporter. This file holds the
//! small cell helpers every renderer shares and re-exports the rest: `table` (widths and
//! borders), `prompts`, `experiments`, `comparison`, `sync` and `progress`. Nothing here reads
//! the store or decides anything; only `progress` writes, and only to stderr.

mod canary;
pub mod colour;
mod comparison;
mod experiments;
mod pairwise;
mod production;
mod progress;
mod prompts;
mod sync;
mod table;

pub use canary::*;
pub use comparison::*;
pub use experiments::*;
pub use pairwise::*;
pub use production::*;
pub use progress::*;
pub use prompts::*;
pub use sync::*;
pub use table::*;

pub use crate::diff::{FieldChange, VersionDiff, messages_text, template_text};
pub use crate::stats::{confidence_text, rate_interval};

/// An age as a person says it: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn age_text(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 90.0 * 60.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 36.0 * 3600.0 {
        format!("{:.0} h", secs / 3600.0)
    } else {
        format!("{:.0} d", secs / 86400.0)
    }
}

/// `2026-11-24T07:30:00.123Z` → `2026-11-24 07:30:00`: tables show seconds, JSON keeps everything.
pub fn short_time(at: &str) -> String {
    at.get(..19)
        .map(|s| s.replace('T', " "))
        .unwrap_or_else(|| at.to_string())
}

fn or_dash(text: Option<&str>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or("-").to_string()
}

/// First line of a free text, cut to `width` characters.
pub fn excerpt(text: &str, width: usize) -> String {
    crate::text::first_line(text, width)
}
