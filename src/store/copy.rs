//! A whole store into an empty one through the traits alone, so any backend copies to any other:
//! prompts (archived ones too) with their versions, tags and history (event ids kept), experiments
//! as recorded (ids, times, status, fingerprint), every result with its scores, the cache, and
//! production traffic (spans, their annotations, the lookup roll-up). It
//! names no backend and holds no SQL, and it must not open either store: the caller opens both and
//! hands them in.

use super::{Result, Store, StoreError, check_stored};
use crate::model::{NameKind, RunResult};

/// Results written per transaction.
const BATCH: usize = 1000;

/// What a copy wrote.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Copied {
    pub prompts: usize,
    pub versions: usize,
    pub events: usize,
    pub experiments: usize,
    pub results: usize,
    pub cached: usize,
    pub spans: usize,
    pub annotations: usize,
    pub lookups: usize,
    pub dataset_versions: usize,
    pub task_experiments: usize,
}

/// Copies everything in `from` into `to`, which must hold nothing yet.
pub fn copy(from: &dyn Store, to: &dyn Store) -> Result<Copied> {
    let mut has_spans = false;
    let newest = crate::trace::SpanFilter {
        experiments: true,
        newest: Some(1),
        ..Default::default()
    };
    to.visit_spans(&newest, &mut |_| {
        has_spans = true;
        Ok(())
    })?;
    if !to.prompts()?.is_empty()
        || !to.experiments(None)?.is_empty()
        || has_spans
        || !to.datasets()?.is_empty()
    {
        return Err(StoreError::NotEmpty {
            location: to.location(),
        });
    }
    let mut copied = Copied::default();
    let mut names: Vec<String> = from.prompts()?.into_iter().map(|(p, _)| p.name).collect();
    names.extend(from.archived_prompts()?);
    let mut archives = names
        .iter()
        .map(|name| from.archive(name))
        .collect::<Result<Vec<_>>>()?;
    // A store is written by whoever can reach it: a name no command accepts (`../escaped`) is
    // refused here too rather than carried into another store.
    for archive in &archives {
        check_stored(NameKind::Prompt, &archive.name)?;
        for tag in &archive.tags {
            check_stored(NameKind::Tag, &tag.name)?;
        }
    }
    // Oldest first, so the copy lists prompts newest first as the original does.
    archives.sort_by(|a, b| (&a.created_at, &a.name).cmp(&(&b.created_at, &b.name)));
    copied.prompts = archives.len();
    copied.versions = archives.iter().map(|a| a.versions.len()).sum();
    copied.events = archives.iter().map(|a| a.history.len()).sum();
    to.restore(&archives)?;
    // Oldest first, so experiments created in the same instant list in the same order.
    let mut experiments = from.experiments(None)?;
    experiments.reverse();
    for experiment in &experiments {
        to.restore_experiment(experiment, from.fingerprint(&experiment.id)?.as_deref())?;
        let mut batch: Vec<RunResult> = Vec::with_capacity(BATCH);
        from.visit_results(&experiment.id, &mut |result| {
            batch.push(result);
            if batch.len() == BATCH {
                to.write_results(&experiment.id, &batch)?;
                copied.results += batch.len();
                batch.clear();
            }
            Ok(())
        })?;
        to.write_results(&experiment.id, &batch)?;
        copied.results += batch.len();
        copied.experiments += 1;
    }
    let mut entries = Vec::new();
    from.visit_cache(&mut |key, response, created_at| {
        entries.push((key.to_string(), response, created_at.to_string()));
        if entries.len() == BATCH {
            to.restore_cache(&entries)?;
            copied.cached += entries.len();
            entries.clear();
        }
        Ok(())
    })?;
    to.restore_cache(&entries)?;
    copied.cached += entries.len();
    copy_traffic(from, to, &names, &mut copied)?;
    // Datasets: each version in order, with its bytes, author and time.
    for latest in from.datasets()? {
        check_stored(NameKind::Prompt, &latest.dataset)?;
        let mut versions = from.dataset_versions(&latest.dataset)?;
        let entry = from.dataset_entry(&latest.dataset_id)?.ok_or_else(|| {
            StoreError::Corrupt(format!("dataset {} vanished while copied", latest.dataset))
        })?;
        versions.reverse();
        for version in versions {
            let (version, content) = from.dataset_content(&version.dataset, Some(version.seq))?;
            let (name, seq) = (version.dataset.clone(), version.seq);
            let (copied_as, _) = to.push_dataset(
                &version.dataset,
                &crate::store::NewDatasetVersion {
                    format: version.format,
                    content,
                    hash: version.hash,
                    rows: version.rows,
                    columns: version.columns,
                    message: version.message,
                    author: version.created_by,
                    created_at: Some(version.created_at),
                    shape: version.shape,
                    description: entry.description.clone(),
                    metadata: Some(entry.metadata.clone()),
                    id: Some(version.id),
                    dataset_id: Some(version.dataset_id),
                },
            )?;
            // Experiments record `store:NAME@V`: a copy must keep every number.
            if copied_as.seq != seq {
                return Err(StoreError::Corrupt(format!(
                    "dataset {name}'s versions are not numbered 1, 2, … with distinct bytes in \
                     the source; version {seq} would be {} in the copy",
                    copied_as.seq
                )));
            }
            copied.dataset_versions += 1;
        }
        // Experiments the Phoenix client ran on it, with their runs and evaluations, under
        // the same ids (runner's experiment of each was copied above).
        for experiment in from.task_experiments(&latest.dataset_id, None, usize::MAX >> 1)? {
            to.restore_task_experiment(&experiment)?;
            let runs = from.task_runs(&experiment.id, None, None)?;
            let evaluations = from.task_evaluations(&experiment.id)?;
            to.restore_task_runs(&runs, &evaluations)?;
            copied.task_experiments += 1;
        }
    }
    Ok(copied)
}

/// Spans (experiment traffic too), then their annotations, then the lookup roll-up.
fn copy_traffic(
    from: &dyn Store,
    to: &dyn Store,
    prompts: &[String],
    copied: &mut Copied,
) -> Result<()> {
    let every = crate::trace::SpanFilter {
        experiments: true,
        ..Default::default()
    };
    let mut spans = Vec::with_capacity(BATCH);
    from.visit_spans(&every, &mut |span| {
        spans.push(span);
        if spans.len() == BATCH {
            to.write_spans(&spans, &[])?;
            copied.spans += spans.len();
            spans.clear();
        }
        Ok(())
    })?;
    to.write_spans(&spans, &[])?;
    copied.spans += spans.len();
    let mut annotations = Vec::with_capacity(BATCH);
    from.visit_annotations(&mut |annotation| {
        annotations.push(annotation);
        if annotations.len() == BATCH {
            to.write_spans(&[], &annotations)?;
            copied.annotations += annotations.len();
            annotations.clear();
        }
        Ok(())
    })?;
    to.write_spans(&[], &annotations)?;
    copied.annotations += annotations.len();
    for prompt in prompts {
        let counts = from.lookups(prompt, None, None)?;
        to.record_lookups(&counts)?;
        copied.lookups += counts.len();
    }
    Ok(())
}
