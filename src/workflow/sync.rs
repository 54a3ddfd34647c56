//! Prompts as code: a folder of prompt files against the store. `check` says what a sync
//! would change and writes nothing; `sync` makes the store match the files (a version only
//! where the content differs, decided inside the write so that concurrent syncs of the same
//! files make one version); `pull` writes the files from the store.

use crate::diff::VersionDiff;
use crate::model::{PromptVersion, Tag, VersionRef, content_hash};
use crate::prompt_file::{self, PromptSource, Syntax};
use crate::store::{Put, Store, StoreError, TagChange, TagOutcome, TagPolicy};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a sync did (or, for a check, would do) to one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The prompt is not in the store: it is created from the file.
    Create,
    /// The file's content differs from the latest version: a version is appended.
    Append,
    /// The latest version holds the file's content.
    Unchanged,
}

/// A tag pointed at the file's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagMove {
    pub tag: String,
    /// Where it pointed before (None: it did not exist).
    pub from_version: Option<i64>,
    pub to_version: i64,
}

/// A protected tag a file names that points at another version: sync leaves it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedTag {
    pub tag: String,
    /// Where it points.
    pub version: i64,
}

/// One prompt file and what happens to its prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub name: String,
    pub file: String,
    pub action: Action,
    /// The latest version before the sync (None: a new prompt).
    pub from_version: Option<i64>,
    /// The version holding the file's content: written, or (for a check) to be written.
    pub version: i64,
    /// Its id; None in a check of a version not written yet.
    pub version_id: Option<String>,
    /// The commit message of a new version.
    pub message: Option<String>,
    /// What differs from the latest version: `template`, `model`, `params.KEY`, ….
    pub changed: Vec<String>,
    /// The difference from the latest version, for a new version.
    pub diff: Option<VersionDiff>,
    /// The prompt was archived: the sync brings it back (with every version it had).
    pub restored: bool,
    /// For a new prompt: its content, as the store will hold it.
    #[serde(skip)]
    pub created: Option<PromptVersion>,
    pub tags: Vec<TagMove>,
    pub protected: Vec<ProtectedTag>,
}

/// Counts of what a sync did or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub files: usize,
    pub created: usize,
    pub appended: usize,
    pub unchanged: usize,
    pub tags_set: usize,
    pub protected_left: usize,
    pub restored: usize,
    pub archived: usize,
}

/// A sync or a check of one folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    pub dir: String,
    /// The store, as shown to a person (never with a password).
    pub store: String,
    /// True for a check: nothing was written.
    pub check: bool,
    /// True when the store matched the files (before a sync, for a sync).
    pub in_sync: bool,
    pub prompts: Vec<Entry>,
    /// Prompts in the store without a file, left alone (without `--prune`).
    pub untracked: Vec<String>,
    /// Prompts in the store without a file, archived (or, for a check, to be) by `--prune`.
    pub archived: Vec<String>,
    pub counts: Counts,
}

impl SyncReport {
    fn new(dir: &Path, store: &dyn Store, check: bool, prompts: Vec<Entry>) -> SyncReport {
        let mut counts = Counts {
            files: prompts.len(),
            ..Counts::default()
        };
        for entry in &prompts {
            match entry.action {
                Action::Create => counts.created += 1,
                Action::Append => counts.appended += 1,
                Action::Unchanged => counts.unchanged += 1,
            }
            counts.tags_set += entry.tags.len();
            counts.protected_left += entry.protected.len();
            counts.restored += usize::from(entry.restored);
        }
        SyncReport {
            dir: dir.display().to_string(),
            store: store.location(),
            check,
            in_sync: counts.created + counts.appended + counts.tags_set + counts.restored == 0,
            prompts,
            untracked: Vec::new(),
            archived: Vec::new(),
            counts,
        }
    }

    /// Records the prompts without a file: left alone, or (with `prune`) archived.
    fn without_files(&mut self, names: Vec<String>, prune: bool) {
        if prune {
            self.counts.archived = names.len();
            self.in_sync &= names.is_empty();
            self.archived = names;
        } else {
            self.untracked = names;
        }
    }
}

/// The file's content as the version it would become (number `seq`, no id yet).
fn as_version(source: &PromptSource, seq: i64, message: Option<String>) -> PromptVersion {
    PromptVersion {
        id: String::new(),
        prompt: source.name.clone(),
        seq,
        template_type: source.template.kind(),
        format: source.format,
        template: source.template.clone(),
        model: source.model.clone(),
        provider: source.provider.clone(),
        params: source.params.clone(),
        metadata: source.metadata.clone(),
        description: source.description.clone(),
        message,
        author: String::new(),
        content_hash: content_hash(
            source.format,
            &source.template,
            source.model.as_deref(),
            &source.params,
            &source.metadata,
        ),
        created_at: String::new(),
    }
}

/// The names of the fields a diff shows as changed.
fn changed_fields(diff: &VersionDiff) -> Vec<String> {
    let mut fields = Vec::new();
    if diff.template_changed {
        fields.push("template".to_string());
    }
    fields.extend(diff.changes.iter().map(|c| c.field.clone()));
    fields
}

/// The prompt's latest version, or None when the prompt is not in the store.
fn latest(store: &dyn Store, name: &str) -> crate::store::Result<Option<PromptVersion>> {
    match store.version(name, &VersionRef::Latest) {
        Ok(version) => Ok(Some(version)),
        Err(StoreError::UnknownPrompt { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where each tag of a prompt points, by name.
fn tag_map(store: &dyn Store, name: &str) -> crate::store::Result<BTreeMap<String, Tag>> {
    match store.tags(name) {
        Ok(tags) => Ok(tags.into_iter().map(|t| (t.name.clone(), t)).collect()),
        Err(StoreError::UnknownPrompt { .. }) => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// What syncing `source` would do, from the store as it is now; `archived` says the prompt
/// is in the archive (found by name only there).
fn plan_one(
    store: &dyn Store,
    source: &PromptSource,
    policy: &TagPolicy,
    message: Option<String>,
    archived: bool,
) -> crate::store::Result<Entry> {
    let (latest, tags) = if archived {
        let archive = store.archive(&source.name)?;
        let tags = archive
            .tags
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        (archive.versions.into_iter().last(), tags)
    } else {
        (latest(store, &source.name)?, tag_map(store, &source.name)?)
    };
    let (action, version, version_id, diff, created) = match &latest {
        None => (
            Action::Create,
            1,
            None,
            None,
            Some(as_version(source, 1, message.clone())),
        ),
        Some(latest) if source.matches(latest) => (
            Action::Unchanged,
            latest.seq,
            Some(latest.id.clone()),
            None,
            None,
        ),
        Some(latest) => {
            let next = as_version(source, latest.seq + 1, message.clone());
            (
                Action::Append,
                next.seq,
                None,
                Some(VersionDiff::between(latest, &next)),
                None,
            )
        }
    };
    let mut entry = Entry {
        name: source.name.clone(),
        file: source.path.display().to_string(),
        action,
        from_version: latest.as_ref().map(|v| v.seq),
        version,
        version_id,
        message: (action != Action::Unchanged).then_some(message).flatten(),
        changed: match (&latest, &diff) {
            (Some(latest), Some(diff)) => {
                let mut fields = changed_fields(diff);
                if latest.provider != source.provider {
                    fields.push("provider".into());
                }
                fields
            }
            _ => Vec::new(),
        },
        diff,
        restored: archived,
        created,
        tags: Vec::new(),
        protected: Vec::new(),
    };
    for tag in &source.tags {
        let at = tags.get(tag).map(|t| t.version_seq);
        let there = action == Action::Unchanged && at == Some(version);
        if there {
            continue;
        }
        // A protected tag that exists moves only through `runner promote`; one that does not
        // exist yet may be created (that displaces nothing, as the tag policy says).
        if policy.is_protected(tag) && at.is_some() {
            entry.protected.push(ProtectedTag {
                tag: tag.clone(),
                version: at.unwrap_or_default(),
            });
        } else {
            entry.tags.push(TagMove {
                tag: tag.clone(),
                from_version: at,
                to_version: version,
            });
        }
    }
    Ok(entry)
}

/// The prompts in the store that no file names, by name.
fn untracked(store: &dyn Store, sources: &[PromptSource]) -> crate::store::Result<Vec<String>> {
    Ok(store
        .prompts()?
        .into_iter()
        .map(|(prompt, _)| prompt.name)
        .filter(|name| !sources.iter().any(|s| &s.name == name))
        .collect())
}

/// How a sync writes: who, under which tag policy, with which message for files that have
/// none of their own.
pub struct Writer<'a> {
    pub author: &'a str,
    pub policy: TagPolicy,
    /// `-m`, else the latest git commit's subject.
    pub message: Option<String>,
    /// Archive the prompts that have no file (`--prune`).
    pub prune: bool,
    /// `--force`: pruning may archive a prompt that holds a protected tag (recorded).
    pub force: bool,
}

impl Writer<'_> {
    fn message_for(&self, source: &PromptSource) -> Option<String> {
        source.message.clone().or_else(|| self.message.clone())
    }
}

/// What a sync of `sources` would change; nothing is written.
pub fn check(
    store: &dyn Store,
    dir: &Path,
    sources: &[PromptSource],
    writer: &Writer<'_>,
) -> crate::store::Result<SyncReport> {
    let archived = store.archived_prompts()?;
    let entries = sources
        .iter()
        .map(|s| {
            let in_archive = archived.contains(&s.name);
            plan_one(store, s, &writer.policy, writer.message_for(s), in_archive)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = SyncReport::new(dir, store, true, entries);
    report.without_files(untracked(store, sources)?, writer.prune);
    Ok(report)
}

/// Makes the store match `sources`, one prompt at a time: a version where the content
/// differs, the declared non-protected tags on the file's version. Protected tags are never
/// written (`runner promote` moves them); prompts without a file are left alone.
pub fn sync(
    store: &dyn Store,
    dir: &Path,
    sources: &[PromptSource],
    writer: &Writer<'_>,
) -> crate::store::Result<SyncReport> {
    // A prune that the tag policy would refuse is refused before anything is written (the
    // store checks again when it archives).
    if writer.prune {
        for name in untracked(store, sources)? {
            // Another sync may have archived it meanwhile: then there is nothing to check.
            let tags = match store.tags(&name) {
                Ok(tags) => tags,
                Err(StoreError::UnknownPrompt { .. }) => continue,
                Err(e) => return Err(e),
            };
            writer.policy.check_archive(
                &name,
                tags.iter().map(|t| t.name.as_str()),
                writer.force,
                crate::store::TagRole::Writer,
            )?;
        }
    }
    let mut entries = Vec::with_capacity(sources.len());
    let mut in_sync = true;
    let archived = store.archived_prompts()?;
    for source in sources {
        let message = writer.message_for(source);
        let in_archive = archived.contains(&source.name);
        let planned = plan_one(store, source, &writer.policy, message.clone(), in_archive)?;
        in_sync &= planned.action == Action::Unchanged && planned.tags.is_empty() && !in_archive;
        if in_archive {
            // A file names it: it is in use again. Another sync may have restored it already.
            match store.restore_prompt(&source.name, writer.author) {
                Ok(()) | Err(StoreError::NotArchived { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let writable: Vec<String> = planned.tags.iter().map(|m| m.tag.clone()).collect();
        let change = TagChange {
            actor: writer.author.to_string(),
            message: message.clone(),
            policy: writer.policy.clone(),
            ..TagChange::default()
        };
        let new = source.new_version(message.clone(), writer.author);
        let mut entry = planned.clone();
        match store.put_version(&source.name, new, &writable, &change)? {
            Put::Created(version) => {
                entry.action = Action::Create;
                entry.from_version = None;
                entry.version = version.seq;
                entry.version_id = Some(version.id.clone());
                entry.tags = writable
                    .iter()
                    .map(|tag| TagMove {
                        tag: tag.clone(),
                        from_version: None,
                        to_version: version.seq,
                    })
                    .collect();
                entry.created = Some(version);
            }
            Put::Appended(version) => {
                // Against the version it was appended to, which another writer may have
                // added since the plan was read.
                let previous = store.version(&source.name, &VersionRef::Seq(version.seq - 1))?;
                let diff = VersionDiff::between(&previous, &version);
                entry.action = Action::Append;
                entry.from_version = Some(previous.seq);
                entry.version = version.seq;
                entry.version_id = Some(version.id.clone());
                entry.changed = changed_fields(&diff);
                if previous.provider != version.provider {
                    entry.changed.push("provider".into());
                }
                entry.diff = Some(diff);
                entry.tags = writable
                    .iter()
                    .map(|tag| TagMove {
                        tag: tag.clone(),
                        from_version: planned
                            .tags
                            .iter()
                            .find(|m| &m.tag == tag)
                            .map_or(planned.from_version, |m| m.from_version),
                        to_version: version.seq,
                    })
                    .collect();
            }
            Put::Unchanged(latest) => {
                // Another sync may have written this content since the plan was read.
                entry.action = Action::Unchanged;
                entry.version = latest.seq;
                entry.version_id = Some(latest.id.clone());
                entry.message = None;
                entry.changed.clear();
                entry.diff = None;
                entry.created = None;
                entry.tags.clear();
                for tag in &writable {
                    let outcome = store.set_tag(
                        &source.name,
                        tag,
                        &VersionRef::Id(latest.id.clone()),
                        &change,
                    )?;
                    if let TagOutcome::Changed(event) = outcome {
                        entry.tags.push(TagMove {
                            tag: tag.clone(),
                            from_version: event.from_seq,
                            to_version: latest.seq,
                        });
                    }
                }
            }
        }
        // Where the protected tags stand once the file's version is written.
        let now = tag_map(store, &source.name)?;
        entry.protected = source
            .tags
            .iter()
            .filter(|t| writer.policy.is_protected(t))
            .filter_map(|tag| {
                let at = now.get(tag)?.version_seq;
                (at != entry.version).then(|| ProtectedTag {
                    tag: tag.clone(),
                    version: at,
                })
            })
            .collect();
        entries.push(entry);
    }
    let without = untracked(store, sources)?;
    if writer.prune {
        for name in &without {
            // Another sync may have archived it already: then it is not found by name.
            let change = TagChange {
                actor: writer.author.to_string(),
                force: writer.force,
                policy: writer.policy.clone(),
                ..TagChange::default()
            };
            match store.archive_prompt(name, &change) {
                Ok(()) | Err(StoreError::UnknownPrompt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut report = SyncReport::new(dir, store, false, entries);
    report.without_files(without, writer.prune);
    report.in_sync = in_sync && report.archived.is_empty();
    Ok(report)
}

/// One prompt file `pull` writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    pub name: String,
    pub path: PathBuf,
    pub version: i64,
    /// The file already held this version and these tags: it was left as it was.
    pub unchanged: bool,
    /// The text to write (empty when unchanged).
    pub text: String,
}

/// Why a prompt cannot be pulled.
#[derive(Debug)]
pub enum PullError {
    Store(StoreError),
    /// A version that the syntax of the existing file cannot hold.
    Render {
        path: PathBuf,
        reason: String,
    },
    /// Two files in the folder for one prompt.
    TwoFiles {
        name: String,
        paths: Vec<PathBuf>,
    },
}

impl From<StoreError> for PullError {
    fn from(e: StoreError) -> PullError {
        PullError::Store(e)
    }
}

/// The files `pull` writes into `dir` for `versions` (each with the tags on it, sorted): into the
/// prompt's existing file when there is one (in its syntax), else NAME.yaml. A file that
/// already holds the version and its tags is left alone, whatever its layout and comments.
pub fn pull_files(
    dir: &Path,
    versions: &[(PromptVersion, Vec<String>)],
) -> Result<Vec<Pulled>, PullError> {
    let existing = if dir.is_dir() {
        prompt_file::prompt_paths(dir).map_err(|e| PullError::Render {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?
    } else {
        Vec::new()
    };
    let mut pulled = Vec::new();
    for (version, tags) in versions {
        let mut paths: Vec<PathBuf> = existing
            .iter()
            .filter(|p| p.file_stem().and_then(|s| s.to_str()) == Some(version.prompt.as_str()))
            .cloned()
            .collect();
        paths.sort();
        if paths.len() > 1 {
            return Err(PullError::TwoFiles {
                name: version.prompt.clone(),
                paths,
            });
        }
        let path = paths.pop().unwrap_or_else(|| {
            dir.join(format!(
                "{}.{}",
                version.prompt,
                prompt_file::extension(Syntax::Yaml)
            ))
        });
        let syntax = Syntax::of(&path).unwrap_or(Syntax::Yaml);
        let current = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| prompt_file::parse(&path, &text).ok());
        let unchanged = current.is_some_and(|c| {
            let mut declared = c.tags.clone();
            declared.sort();
            c.matches(version) && &declared == tags
        });
        let text = if unchanged {
            String::new()
        } else {
            prompt_file::render(version, tags, syntax).map_err(|reason| PullError::Render {
                path: path.clone(),
                reason,
            })?
        };
        pulled.push(Pulled {
            name: version.prompt.clone(),
            path,
            version: version.seq,
            unchanged,
            text,
        });
    }
    Ok(pulled)
}
