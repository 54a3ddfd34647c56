//! Reading one prompt's production evidence out of the store for a window: its linked spans,
//! the annotations that score them, its tags and tag history, and the lookup roll-up, summed
//! by `domain::production`. The CLI (`runner production`), the web UI's Production section and
//! the remote API all read it through here, so they show the same numbers.
//!
//! It reads only; it must not print, and it must not decide what a span is linked to (ingest
//! did).

use crate::cost::Prices;
use crate::error::Result;
use crate::production::{Production, Sample, Tally, TrafficComparison, compare_traffic};
use crate::store::Store;
use crate::trace::SpanFilter;
use std::collections::{BTreeMap, HashMap};

/// What to read.
#[derive(Debug, Clone)]
pub struct Window {
    pub since_ms: i64,
    pub until_ms: i64,
    /// Only the versions this tag pointed at during the window (None: every version).
    pub tag: Option<String>,
    /// Also the spans of experiment runs (never production by default).
    pub experiments: bool,
}

/// One prompt's production evidence in the window.
pub fn gather(
    store: &dyn Store,
    prompt: &str,
    window: &Window,
    prices: &Prices,
    confidence: f64,
) -> Result<Production> {
    // The prompt must exist: an unknown name is an input error, not an empty report.
    let versions = store.versions(prompt)?;
    let numbers: HashMap<String, i64> = versions.iter().map(|v| (v.id.clone(), v.seq)).collect();
    let tags = store.tags_by_version(prompt)?;
    let history = store.history(prompt, window.tag.as_deref())?;
    let only = match &window.tag {
        None => Vec::new(),
        Some(tag) => tagged_during(store, prompt, tag, &history, window)?,
    };
    let filter = SpanFilter {
        prompt: Some(prompt.to_string()),
        version_ids: only.clone(),
        since_ms: Some(window.since_ms),
        until_ms: Some(window.until_ms),
        experiments: window.experiments,
        ..SpanFilter::default()
    };
    let mut tally = Tally::new(window.since_ms, window.until_ms);
    if window.tag.is_none() || !only.is_empty() {
        store.visit_spans(&filter, &mut |span| {
            tally.span(&span);
            Ok(())
        })?;
        for scored in store.scored_spans(&filter)? {
            tally.annotation(&scored);
        }
    }
    let unlinked = store.count_unlinked(&filter)?;
    let lookups = store.lookups(prompt, Some(window.since_ms), Some(window.until_ms))?;
    let lookups: Vec<_> = match &window.tag {
        None => lookups,
        Some(tag) => lookups.into_iter().filter(|(k, _)| &k.tag == tag).collect(),
    };
    Ok(tally.finish(
        prompt,
        (window.since_ms, window.until_ms),
        unlinked,
        &tags,
        &history,
        &lookups,
        &numbers,
        prices,
        confidence,
    ))
}

/// The versions `tag` pointed at at some time in the window: where it pointed when the window
/// opened, and every version it was moved to inside it.
fn tagged_during(
    store: &dyn Store,
    prompt: &str,
    tag: &str,
    history: &[crate::model::TagEvent],
    window: &Window,
) -> Result<Vec<String>> {
    let mut ids: Vec<String> = Vec::new();
    let mut at_open: Option<String> = None;
    for event in history {
        let Some(at) = crate::production::parse_ms(&event.at) else {
            continue;
        };
        if at <= window.since_ms {
            at_open = event.to_version_id.clone();
        } else if at < window.until_ms
            && let Some(id) = &event.to_version_id
        {
            ids.push(id.clone());
        }
    }
    if history.is_empty()
        && let Some(current) = store.tag(prompt, tag)?
    {
        at_open = Some(current.version_id);
    }
    ids.extend(at_open);
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Two versions' production traffic in the window, compared unpaired.
pub fn compare(
    store: &dyn Store,
    prompt: &str,
    (baseline, candidate): (&str, &str),
    window: &Window,
    confidence: f64,
) -> Result<TrafficComparison> {
    let mut samples: BTreeMap<&str, (i64, Sample)> = BTreeMap::new();
    for reference in [baseline, candidate] {
        let version = store.version(prompt, &crate::model::VersionRef::Any(reference.into()))?;
        let filter = SpanFilter {
            prompt: Some(prompt.to_string()),
            version_ids: vec![version.id.clone()],
            since_ms: Some(window.since_ms),
            until_ms: Some(window.until_ms),
            experiments: window.experiments,
            ..SpanFilter::default()
        };
        let mut sample = Sample::default();
        store.visit_spans(&filter, &mut |span| {
            sample.span(&span);
            Ok(())
        })?;
        for scored in store.scored_spans(&filter)? {
            sample.annotation(&scored);
        }
        samples.insert(reference, (version.seq, sample));
    }
    let (b_number, b) = &samples[baseline];
    let (c_number, c) = &samples[candidate];
    Ok(compare_traffic(
        prompt,
        (*b_number, b),
        (*c_number, c),
        confidence,
    ))
}
