//! The store interface: what runner keeps (prompts, versions, tags and their history;
//! experiments, results and the response cache) as traits, and `open`, which picks a backend
//! from the form of `--db`. Nothing above this module names a backend.
//!
//! Every guarantee lives in the backend's own transactions and constraints: versions numbered
//! without gaps under concurrent writers, the tag policy checked inside the tag write, a
//! successful result never overwritten.

use crate::model::{
    CachedResponse, Experiment, ExperimentStatus, NewExperiment, NewVersion, Prompt, PromptArchive,
    PromptUpdate, PromptVersion, RowOutcome, RowText, RunResult, Summary, Tag, TagAction, TagEvent,
    VersionRef,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod copy;
mod logic;
pub mod postgres;
pub mod remote;
pub(crate) mod sql;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A failure inside the backend (a driver error), kept as the cause of a `StoreError`.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Serialisable so that a remote store (`runner serve`, see `remote`) gives back the very error
/// its store raised, and the CLI says and exits on it as it would on a local store.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    #[error("cannot open store {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("{} is not a runner store (the file is not an SQLite database)", path.display())]
    NotADatabase { path: PathBuf },
    #[error(
        "{} is an SQLite database that runner did not create (it holds tables of its own); it was left untouched",
        path.display()
    )]
    NotRunnerStore { path: PathBuf },
    #[error(
        "{location} is a PostgreSQL database that runner did not create (it holds tables of its own); it was left untouched"
    )]
    ForeignDatabase { location: String },
    #[error(
        "store {} has schema version {found}, older than this runner's ({supported}); reading does not change it",
        path.display()
    )]
    OlderSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the store file is damaged: {reason}")]
    Damaged { reason: String },
    #[error(
        "store {} has schema version {found}, newer than this runner understands ({supported})",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("unknown prompt '{name}'")]
    UnknownPrompt { name: String },
    #[error("prompt '{name}' already exists")]
    PromptExists { name: String },
    #[error("prompt '{name}' is archived")]
    PromptArchived { name: String },
    #[error("prompt '{name}' is not archived")]
    NotArchived { name: String },
    #[error("prompt '{prompt}' has no {reference}")]
    UnknownVersion { prompt: String, reference: String },
    #[error("prompt '{prompt}' has no tag '{tag}'")]
    UnknownTag { prompt: String, tag: String },
    #[error("no dataset named '{name}' in the store")]
    UnknownDataset { name: String },
    #[error("dataset '{name}' has no version {seq}")]
    UnknownDatasetVersion { name: String, seq: i64 },
    #[error("run {id} already exists with a successful result and cannot be updated")]
    RunExists { id: String },
    #[error(
        "experiment {id} is linked to a prompt version: it is evidence runner keeps (compare, promote, the tag history)"
    )]
    LinkedExperiment { id: String },
    #[error("a token named '{name}' already exists (or its secret is taken)")]
    TokenExists { name: String },
    #[error("a dataset named \"{name}\" already exists")]
    DatasetExists { name: String },
    #[error(
        "dataset '{name}' is the evidence of {experiments} recorded experiment(s); deleting it would lose the rows they saw"
    )]
    DatasetInUse { name: String, experiments: i64 },
    #[error("tag '{tag}' of prompt '{prompt}' has no earlier version to roll back to")]
    NothingToRollBack { prompt: String, tag: String },
    #[error(
        "tag '{tag}' of prompt '{prompt}' moved while the gate was being evaluated; nothing was changed"
    )]
    TagMoved { prompt: String, tag: String },
    #[error("tag '{tag}' is protected: it moves through `runner promote`, or with force")]
    ProtectedTag {
        prompt: String,
        tag: String,
        /// The refused change (move, delete or rollback).
        action: TagAction,
    },
    #[error(
        "prompt '{prompt}' holds protected tag '{tag}': archiving it takes '{tag}' offline for every consumer, so it needs the deploy role or force"
    )]
    ProtectedArchive { prompt: String, tag: String },
    #[error("experiment {id} is being run by {holder} (its lease runs until {until})")]
    ExperimentBusy {
        id: String,
        holder: String,
        until: String,
    },
    #[error("unknown experiment '{id}'")]
    UnknownExperiment { id: String },
    #[error(
        "experiment '{id}' is ambiguous: more than one experiment's id starts with it, or more than one is named so"
    )]
    AmbiguousExperiment { id: String },
    #[error("tag '{tag}' of prompt '{prompt}' already has a rollout running ({id})")]
    RolloutRunning {
        prompt: String,
        tag: String,
        id: String,
    },
    #[error("tag '{tag}' of prompt '{prompt}' has no rollout running")]
    NoRollout { prompt: String, tag: String },
    #[error("{location} is not empty; a store is copied only into an empty one")]
    NotEmpty { location: String },
    #[error("the store holds data this runner cannot read: {0}")]
    Corrupt(String),
    /// The caller's callback (a version builder, a result visitor) stopped the operation; the
    /// caller holds the reason. Nothing was written.
    #[error("the operation was abandoned by its caller")]
    Abandoned,
    #[error("the store failed")]
    Backend(
        #[source]
        #[serde(with = "backend_text")]
        BackendError,
    ),
    #[error("cannot reach the runner server at {location}: {reason}")]
    Unreachable { location: String, reason: String },
    #[error("the runner server at {location} refused the token: {reason}")]
    Unauthorized { location: String, reason: String },
    #[error("{reason}")]
    Forbidden {
        reason: String,
        /// The role the request needs.
        needs: String,
    },
    #[error("the runner server at {location} answered what this runner cannot read: {reason}")]
    Protocol { location: String, reason: String },
    #[error(
        "prompt '{name}' got a new version from another writer while this one was being made; nothing was written"
    )]
    Raced { name: String },
}

/// A backend's failure crosses the wire as its message (with its causes), and comes back as an
/// error of that text.
mod backend_text {
    use super::BackendError;

    pub fn serialize<S: serde::Serializer>(e: &BackendError, s: S) -> Result<S::Ok, S::Error> {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BackendError, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        Ok(Box::new(std::io::Error::other(text)))
    }
}

impl StoreError {
    /// True when the caller named something that is not there or asked for something the rules
    /// refuse (exit 2), false when the store itself failed (exit 3).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            StoreError::UnknownPrompt { .. }
                | StoreError::PromptExists { .. }
                | StoreError::PromptArchived { .. }
                | StoreError::NotArchived { .. }
                | StoreError::UnknownVersion { .. }
                | StoreError::UnknownTag { .. }
                | StoreError::UnknownDataset { .. }
                | StoreError::UnknownDatasetVersion { .. }
                | StoreError::DatasetExists { .. }
                | StoreError::DatasetInUse { .. }
                | StoreError::RunExists { .. }
                | StoreError::LinkedExperiment { .. }
                | StoreError::NothingToRollBack { .. }
                | StoreError::ProtectedTag { .. }
                | StoreError::ProtectedArchive { .. }
                | StoreError::UnknownExperiment { .. }
                | StoreError::AmbiguousExperiment { .. }
                | StoreError::NotEmpty { .. }
                | StoreError::RolloutRunning { .. }
                | StoreError::NoRollout { .. }
                | StoreError::Forbidden { .. }
                | StoreError::TokenExists { .. }
                | StoreError::Raced { .. }
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The rule every tag write obeys, whoever asks (CLI, HTTP, UI): a protected tag may be created
/// (that displaces nothing) but is moved, rolled back or deleted only by a promotion that passed
/// its gate, by a caller with the deploy role (a deploy token of `runner serve`), or by a forced
/// change; the history records which.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TagPolicy {
    pub protected: Vec<String>,
}

/// What the caller of a tag write may do to a protected tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TagRole {
    /// Create it; displace it only with force (the CLI, write tokens, the pages' writers).
    #[default]
    Writer,
    /// Also move, roll back or delete it without force (deploy tokens), as Langfuse lets only
    /// admins change protected labels.
    Deploy,
}

/// How a change of a tag was allowed, as the history records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allowed {
    /// A protected tag was displaced with force.
    pub forced: bool,
    /// A protected tag was displaced by a caller with the deploy role.
    pub deploy: bool,
}

impl TagPolicy {
    pub fn new(protected: Vec<String>) -> TagPolicy {
        TagPolicy { protected }
    }

    pub fn is_protected(&self, tag: &str) -> bool {
        self.protected.iter().any(|t| t == tag)
    }

    /// Decides a change of `tag`, which points at `current` (a version id) or does not exist.
    /// Returns how the change is recorded, or the refusal. The deploy role needs no force, so
    /// a deploy change that also asks for force is recorded as a deploy change only.
    pub fn check(
        &self,
        prompt: &str,
        tag: &str,
        current: Option<&str>,
        action: TagAction,
        force: bool,
        role: TagRole,
    ) -> Result<Allowed> {
        let displaces = current.is_some() && self.is_protected(tag);
        if !displaces || action == TagAction::Promote {
            return Ok(Allowed::default());
        }
        match (role, force) {
            (TagRole::Deploy, _) => Ok(Allowed {
                forced: false,
                deploy: true,
            }),
            (TagRole::Writer, true) => Ok(Allowed {
                forced: true,
                deploy: false,
            }),
            (TagRole::Writer, false) => Err(StoreError::ProtectedTag {
                prompt: prompt.into(),
                tag: tag.into(),
                action,
            }),
        }
    }
}

impl TagPolicy {
    /// Decides archiving `prompt`, which holds `tags`: a protected one among them goes
    /// offline with it, which the deploy role may do, and a writer only with force (the same
    /// rule as deleting that tag). Returns how the archive is recorded, or the refusal.
    pub fn check_archive<'a>(
        &self,
        prompt: &str,
        tags: impl IntoIterator<Item = &'a str>,
        force: bool,
        role: TagRole,
    ) -> Result<Allowed> {
        let mut allowed = Allowed::default();
        for tag in tags {
            let this = self
                .check(prompt, tag, Some(""), TagAction::Delete, force, role)
                .map_err(|_| StoreError::ProtectedArchive {
                    prompt: prompt.into(),
                    tag: tag.into(),
                })?;
            allowed.forced |= this.forced;
            allowed.deploy |= this.deploy;
        }
        Ok(allowed)
    }
}

/// Where the tag must point for a change to go ahead, checked inside the write transaction.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Expect {
    /// Wherever it points.
    #[default]
    Any,
    /// The tag does not exist.
    Absent,
    /// The tag points at this version id.
    At(String),
}

impl Expect {
    /// The expectation that the tag is still where it was seen (`None`: nowhere).
    pub fn seen(version_id: Option<&str>) -> Expect {
        match version_id {
            Some(id) => Expect::At(id.to_string()),
            None => Expect::Absent,
        }
    }

    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::At(id) => current == Some(id.as_str()),
        }
    }
}

/// Who changes a tag, why, and under which rule.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct TagChange {
    pub actor: String,
    pub message: Option<String>,
    /// The caller asks to override the tag policy.
    pub force: bool,
    /// What the caller may do to a protected tag without force.
    pub role: TagRole,
    pub evidence: Option<serde_json::Value>,
    pub policy: TagPolicy,
    /// What the history records (a promotion); None: set, move, delete or rollback by its kind.
    pub action: Option<TagAction>,
    pub expect: Expect,
}

impl TagChange {
    /// A change by `actor` under no tag policy (restoring a prompt, say).
    pub fn by(actor: &str) -> TagChange {
        TagChange {
            actor: actor.to_string(),
            ..TagChange::default()
        }
    }
}

/// What a tag write did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TagOutcome {
    /// The tag already pointed at that version; nothing was written.
    Unchanged(Tag),
    Changed(TagEvent),
}

/// A version builder: sees the latest version inside the write transaction.
pub type BuildVersion<'a> = dyn FnMut(&PromptVersion) -> Result<NewVersion> + 'a;

/// What `put_version` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Put {
    /// The prompt did not exist: it was created with this version 1.
    Created(PromptVersion),
    /// The latest version held other content: this version was appended.
    Appended(PromptVersion),
    /// The latest version (this one) already held the content; nothing was written.
    Unchanged(PromptVersion),
}

/// Prompts, their immutable versions, movable tags and the append-only history of tag moves.
pub trait PromptStore: Send + Sync {
    /// Creates a prompt with its first version and the given tags, in one transaction.
    fn create_prompt(
        &self,
        name: &str,
        version: NewVersion,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion>;

    /// Appends the version `build` makes from the latest one, numbered next inside one write
    /// transaction. See `append_version` for a builder with its own error type.
    fn append_version_with(
        &self,
        name: &str,
        build: &mut BuildVersion<'_>,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion>;

    /// One version, by number, id, tag or as the latest.
    fn version(&self, name: &str, reference: &VersionRef) -> Result<PromptVersion>;

    /// One version by its stable id, whichever prompt it belongs to.
    fn version_by_id(&self, id: &str) -> Result<Option<PromptVersion>>;

    /// Every version of a prompt, newest first.
    fn versions(&self, name: &str) -> Result<Vec<PromptVersion>>;

    /// At most `limit` prompts in use, newest first, from the one named `from` (inclusive),
    /// each with its latest version.
    fn prompts_page(
        &self,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Prompt, PromptVersion)>>;

    /// The tags of a prompt, by name.
    fn tags(&self, name: &str) -> Result<Vec<Tag>>;

    /// The tag as it is now, if it exists.
    fn tag(&self, name: &str, tag: &str) -> Result<Option<Tag>>;

    /// The id and content hash of the version `tag` points at, in one indexed read.
    fn tag_target(&self, name: &str, tag: &str) -> Result<(String, String)>;

    /// The id and content hash of the latest version of a prompt.
    fn latest_target(&self, name: &str) -> Result<(String, String)>;

    /// The tags pointing at one version, each with the message of the change that put it there.
    fn version_tags(&self, version_id: &str) -> Result<Vec<(Tag, Option<String>)>>;

    /// The tags of a prompt, each with the message of the change that put it there.
    fn prompt_tags(&self, name: &str) -> Result<Vec<(Tag, Option<String>)>>;

    /// Points `tag` at a version (creating or moving it) under `change`'s policy and
    /// expectation, and records the change. A tag already there is left alone.
    fn set_tag(
        &self,
        name: &str,
        tag: &str,
        target: &VersionRef,
        change: &TagChange,
    ) -> Result<TagOutcome>;

    /// Removes a tag and records the deletion.
    fn delete_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent>;

    /// Points `tag` back at the version it pointed at before its last change (which undoes a
    /// delete too), and records the rollback.
    fn rollback_tag(&self, name: &str, tag: &str, change: &TagChange) -> Result<TagEvent>;

    /// The tag history of a prompt (of one tag when given), oldest first.
    fn history(&self, name: &str, tag: Option<&str>) -> Result<Vec<TagEvent>>;

    /// Everything about one prompt, archived or not, for export.
    fn archive(&self, name: &str) -> Result<PromptArchive>;

    /// Writes whole prompts back exactly as archived, all or none.
    fn import(&self, archives: &[PromptArchive]) -> Result<()>;

    /// `import` that keeps the tag events' own ids (a whole-store copy, so that `tag history
    /// --json` reads the same on both ends); the ids must not be taken yet.
    fn restore(&self, archives: &[PromptArchive]) -> Result<()>;

    /// One prompt in use, with its latest version.
    fn prompt(&self, name: &str) -> Result<(Prompt, PromptVersion)>;

    /// Changes a prompt's own description and metadata, and records the update.
    fn update_prompt(&self, name: &str, update: &PromptUpdate, actor: &str) -> Result<()>;

    /// Archives a prompt: it keeps every version, tag and event, but lists and lookups by name
    /// or version id no longer find it. Recorded in the prompt's history, by `change.actor`.
    /// A prompt that holds a protected tag (which archiving takes offline for every consumer)
    /// is archived only as `TagPolicy::check_archive` allows, checked inside the write.
    fn archive_prompt(&self, name: &str, change: &TagChange) -> Result<()>;

    /// Brings an archived prompt back, as it was. Recorded in the prompt's history.
    fn restore_prompt(&self, name: &str, actor: &str) -> Result<()>;

    /// The names of the archived prompts, by name.
    fn archived_prompts(&self) -> Result<Vec<String>>;

    /// Every prompt in use, by name, with its latest version.
    fn prompts(&self) -> Result<Vec<(Prompt, PromptVersion)>> {
        let mut prompts = self.prompts_page(None, usize::MAX)?;
        prompts.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(prompts)
    }

    /// `append_version_with` for a builder with its own error type (see `append_version`).
    fn append_version<F, E>(
        &self,
        name: &str,
        build: F,
        tags: &[String],
        change: &TagChange,
    ) -> Result<PromptVersion, E>
    where
        Self: Sized,
        F: FnMut(&PromptVersion) -> Result<NewVersion, E>,
        E: From<StoreError>,
    {
        append_version(self, name, build, tags, change)
    }

    /// Makes `version`'s content the prompt's latest: creates the prompt, or appends the
    /// version unless the latest one already holds the same content (content hash,
    /// description and provider). The comparison runs inside the append's write transaction (the builder
    /// of `append_version_with` sees the latest version under the write lock), so writers
    /// putting the same content at once create one version between them, never two. `tags`
    /// go on a new version in its transaction; an unchanged prompt's tags are not touched.
    fn put_version(
        &self,
        name: &str,
        version: NewVersion,
        tags: &[String],
        change: &TagChange,
    ) -> Result<Put> {
        let hash = crate::model::content_hash(
            version.format,
            &version.template,
            version.model.as_deref(),
            &version.params,
            &version.metadata,
        );
        let mut unchanged = None;
        let mut append = || {
            self.append_version_with(
                name,
                &mut |latest| {
                    if latest.content_hash == hash
                        && latest.description == version.description
                        && latest.provider == version.provider
                    {
                        unchanged = Some(latest.clone());
                        Err(StoreError::Abandoned)
                    } else {
                        Ok(version.clone())
                    }
                },
                tags,
                change,
            )
        };
        let appended = match append() {
            // Not there yet: create it, unless another writer just did (then append to theirs).
            Err(StoreError::UnknownPrompt { .. }) => {
                match self.create_prompt(name, version.clone(), tags, change) {
                    Err(StoreError::PromptExists { .. }) => append(),
                    created => return created.map(Put::Created),
                }
            }
            other => other,
        };
        match (appended, unchanged) {
            (Ok(appended), _) => Ok(Put::Appended(appended)),
            (Err(StoreError::Abandoned), Some(latest)) => Ok(Put::Unchanged(latest)),
            (Err(e), _) => Err(e),
        }
    }

    /// Tag names by version id, for listings.
    fn tags_by_version(&self, name: &str) -> Result<BTreeMap<String, Vec<String>>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for tag in self.tags(name)? {
            map.entry(tag.version_id).or_default().push(tag.name);
        }
        Ok(map)
    }
}

/// A result visitor; see `visit_results`.
pub type VisitResult<'a> = dyn FnMut(RunResult) -> Result<()> + 'a;

/// A name read from a store, held to the rule every command applies to the names it takes:
/// a store is written by whoever can reach it, and a name such as `../escaped` must not become
/// a path or travel into another store.
pub fn check_stored(kind: crate::model::NameKind, name: &str) -> Result<()> {
    crate::model::check_name(kind, name).map_err(|reason| {
        StoreError::Corrupt(format!(
            "a {kind} named {name:?}, a name no command accepts ({reason})"
        ))
    })
}

/// How many experiments `ExperimentStore::matching` returns at most.
pub const MATCHING: i64 = 20;

/// Experiments: their records, results read back and aggregated.
pub trait ExperimentStore: Send + Sync {
    fn create_experiment(&self, new: &NewExperiment) -> Result<Experiment>;

    /// One experiment by id, or by a unique prefix of its id.
    fn experiment(&self, id: &str) -> Result<Experiment>;

    /// Experiments, newest first, of one prompt when given.
    fn experiments(&self, prompt: Option<&str>) -> Result<Vec<Experiment>>;

    /// The newest experiments with this fingerprint (at most `MATCHING`), whatever their
    /// status, each with its count of stored results: the caller decides which may stand as
    /// evidence for another run of the same kind, and says why it passed over the others.
    fn matching(&self, fingerprint: &str) -> Result<Vec<(Experiment, i64)>>;

    /// Calls `visit` with every result reduced to what a comparison needs, in row-id order
    /// (byte order; then repetition, then row index), one at a time; each carries its row's
    /// value of `cluster_column` when one is named.
    fn visit_outcomes(
        &self,
        experiment: &Experiment,
        cluster_column: Option<&str>,
        visit: &mut dyn FnMut(RowOutcome) -> Result<()>,
    ) -> Result<()>;

    /// The outcomes `visit_outcomes` gives, in its order, without their texts (`input` and
    /// `output` are empty), all at once: read in storage order, several times faster on a
    /// large experiment, then sorted in memory. For a comparison that is kept in memory
    /// anyway (the web UI's); `runner compare` streams.
    fn verdicts(
        &self,
        experiment: &Experiment,
        cluster_column: Option<&str>,
    ) -> Result<Vec<RowOutcome>>;

    /// The texts of the named rows (see `RowText`), in the order asked; a row the experiment
    /// lacks is left out.
    fn row_texts(&self, experiment: &Experiment, row_ids: &[String]) -> Result<Vec<RowText>>;

    /// Records where a run ended and adds its wall time.
    fn finish_experiment(&self, id: &str, status: ExperimentStatus, wall_ms: i64) -> Result<()>;

    /// Records that runner's own mock answered the experiment's calls (see
    /// `RunSettings::mock`): nothing was spent on it.
    fn mark_mock(&self, id: &str) -> Result<()>;

    /// Removes an experiment that never got a usable answer, with its results.
    fn discard_experiment(&self, id: &str) -> Result<()>;

    /// Marks an experiment as running again (resume).
    fn reopen_experiment(&self, id: &str) -> Result<()>;

    /// Takes the lease on running an experiment for `owner` until `ttl` from now, unless
    /// another owner holds one that has not expired and is still alive (`alive` decides for
    /// owners on this machine); then that holder is the error.
    fn take_lease(
        &self,
        id: &str,
        owner: &str,
        ttl: std::time::Duration,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<()>;

    /// Extends `owner`'s lease; false when the lease is no longer theirs.
    fn renew_lease(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<bool>;

    /// Gives up `owner`'s lease.
    fn release_lease(&self, id: &str, owner: &str) -> Result<()>;

    /// Calls `visit(row_index, repetition)` for every successful result.
    fn visit_successes(&self, id: &str, visit: &mut dyn FnMut(i64, i64)) -> Result<()>;

    /// Aggregates over the stored results of one experiment.
    fn summary(&self, experiment: &Experiment) -> Result<Summary>;

    /// The tokens an experiment's results used so far: (prompt, completion). What its cost is
    /// computed from, cheaper than a whole summary (`experiment list`, a run's budget).
    fn tokens(&self, id: &str) -> Result<(i64, i64)>;

    /// Streams the results of an experiment in row order, each with its scores.
    fn visit_results(&self, id: &str, visit: &mut VisitResult<'_>) -> Result<()>;

    /// The fingerprint an experiment was recorded with (None for one from before fingerprints).
    fn fingerprint(&self, id: &str) -> Result<Option<String>>;

    /// Writes an experiment record exactly as given (id, times, status, lease): a whole-store
    /// copy. Its prompt and version must be there already.
    fn restore_experiment(&self, experiment: &Experiment, fingerprint: Option<&str>) -> Result<()>;

    /// Calls `visit` with every response cache entry (key, response, when it was stored), by key.
    fn visit_cache(
        &self,
        visit: &mut dyn FnMut(&str, CachedResponse, &str) -> Result<()>,
    ) -> Result<()>;

    /// Adds cache entries (key, response, when it was stored); a key already there is kept.
    fn restore_cache(&self, entries: &[(String, CachedResponse, String)]) -> Result<()>;
}

/// One row × repetition of a detached experiment, as a worker gets it: the row's values are
/// stored with the item, so a worker needs the store and the endpoint, not the dataset file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkItem {
    pub row_index: i64,
    pub repetition: i64,
    pub row_id: String,
    pub values: crate::model::JsonObject,
}

/// Where the work items of a detached experiment stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkCounts {
    pub items: i64,
    pub pending: i64,
    pub leased: i64,
    pub done: i64,
    /// Leases taken again after they ran out (a worker died or stalled).
    pub reclaimed: i64,
    /// Distinct workers holding a lease that has not run out.
    pub workers: i64,
}

/// A row of the dataset for planning: index, id and values.
pub type PlanRow = (i64, String, crate::model::JsonObject);

/// The work queue of detached experiments: items planned once, leased by workers, completed
/// in the transaction that writes their results.
pub trait WorkQueue: Send + Sync {
    /// Creates a detached experiment and a work item for each row × repetition `next_row`
    /// yields, all in one transaction; with a `key` already used, creates nothing and returns
    /// that key's experiment. The bool says whether it was created now.
    fn plan_experiment(
        &self,
        new: &NewExperiment,
        key: Option<&str>,
        repetitions: i64,
        next_row: &mut dyn FnMut() -> Result<Option<PlanRow>>,
    ) -> Result<(Experiment, bool)>;

    /// Leases up to `max` items to `owner` for `ttl`: pending ones, and leased ones whose lease
    /// ran out, by row order. Others' live leases are skipped without waiting.
    fn claim_items(
        &self,
        id: &str,
        owner: &str,
        ttl: std::time::Duration,
        max: usize,
    ) -> Result<Vec<WorkItem>>;

    /// Extends every lease `owner` holds on the experiment; returns how many.
    fn renew_items(&self, id: &str, owner: &str, ttl: std::time::Duration) -> Result<u64>;

    /// The workers holding a lease on the experiment that has not run out: those that share its
    /// rate limits now.
    fn lease_owners(&self, id: &str) -> Result<Vec<String>>;

    /// Gives back what `owner` still holds (pending again, for another worker at once).
    fn release_items(&self, id: &str, owner: &str) -> Result<u64>;

    /// In one transaction: completes each result's item if `owner` still holds its lease and
    /// writes those results (as `write_results` does); a result whose item was taken over is
    /// dropped. Returns how many were written.
    fn complete_items(&self, id: &str, owner: &str, batch: &[RunResult]) -> Result<usize>;

    /// Where the items stand; None for an experiment without items (not detached).
    fn work_counts(&self, id: &str) -> Result<Option<WorkCounts>>;

    /// When every item is done and the experiment is still running: records it completed,
    /// its wall time from its first start to its last finish. Returns its status.
    fn finish_work(&self, id: &str) -> Result<ExperimentStatus>;
}

/// Where a run's results go as they arrive.
pub trait ResultSink: Send + Sync {
    /// Writes a batch of results, their scores and new cache entries in one transaction. An
    /// errored result may be replaced by a later attempt; a successful one never is.
    fn write_results(&self, experiment_id: &str, batch: &[RunResult]) -> Result<()>;
}

/// Answers already received, by request key.
pub trait ResponseCache: Send + Sync {
    fn cached_response(&self, key: &str) -> Result<Option<CachedResponse>>;
    /// Whether a lookup takes microseconds and never waits (a local SQLite file), so the
    /// caller may make it on its own thread instead of handing it to a blocking one.
    fn quick_lookups(&self) -> bool {
        false
    }
}

/// A whole store: what the dispatcher opens once and hands to every workflow.
/// Production traffic: spans linked to the versions that produced them, their annotations,
/// and the tag lookups `runner serve` answered.
pub trait TraceStore: Send + Sync {
    /// Writes a batch of spans (one already stored is kept as it was) and annotations that
    /// need no check (evaluation events on the spans of the same batch), in one transaction;
    /// returns how many spans were new.
    fn write_spans(
        &self,
        spans: &[crate::trace::Span],
        annotations: &[crate::trace::Annotation],
    ) -> Result<u64>;

    /// Writes annotations whose targets all exist and returns their ids; when a target is
    /// unknown, writes nothing and returns the unknown ids.
    fn annotate(
        &self,
        annotations: &[crate::trace::Annotation],
    ) -> Result<std::result::Result<Vec<i64>, Vec<String>>>;

    /// Adds lookup counts to the per-minute roll-up.
    fn record_lookups(&self, counts: &[(crate::trace::LookupKey, i64)]) -> Result<()>;

    /// Calls `visit` with each span the filter selects.
    fn visit_spans(
        &self,
        filter: &crate::trace::SpanFilter,
        visit: &mut dyn FnMut(crate::trace::Span) -> Result<()>,
    ) -> Result<()>;

    /// One span by its id.
    fn span(&self, span_id: &str) -> Result<Option<crate::trace::Span>>;

    /// The annotations that score the linked spans the filter selects, each with its span.
    fn scored_spans(
        &self,
        filter: &crate::trace::SpanFilter,
    ) -> Result<Vec<crate::trace::ScoredSpan>>;

    /// Every annotation, oldest first (a whole-store copy).
    fn visit_annotations(
        &self,
        visit: &mut dyn FnMut(crate::trace::Annotation) -> Result<()>,
    ) -> Result<()>;

    /// The annotations on a span and on its trace.
    fn span_annotations(&self, span: &crate::trace::Span) -> Result<Vec<crate::trace::Annotation>>;

    /// LLM spans the filter selects.
    fn count_spans(&self, filter: &crate::trace::SpanFilter) -> Result<i64>;

    /// LLM spans in the filter's time range (and traffic) that name no version.
    fn count_unlinked(&self, filter: &crate::trace::SpanFilter) -> Result<i64>;

    /// The lookup roll-up of one prompt between two times.
    fn lookups(
        &self,
        prompt: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<(crate::trace::LookupKey, i64)>>;

    /// Deletes spans that started, annotations last written and lookups made before
    /// `before_ms`; returns how many spans went.
    fn prune_traces(&self, before_ms: i64) -> Result<u64>;
}

/// Datasets kept in the store: named, with numbered versions that never change.
pub trait DatasetStore: Send + Sync {
    /// Stores `content` as the dataset's next version (creating the dataset). When its latest
    /// version holds the same bytes, that version is returned and nothing is written; the
    /// bool says whether a version was added.
    fn push_dataset(
        &self,
        name: &str,
        version: &NewDatasetVersion,
    ) -> Result<(crate::model::DatasetVersion, bool)> {
        self.push_dataset_with(name, false, &mut |_| Ok(Some(version.clone())))
    }

    /// Stores the version `make` builds from the dataset's latest version and its content
    /// (None for a new dataset), read under the dataset's lock so that two writers never
    /// build on the same version. `make` returning None, or a version with the latest's bytes,
    /// writes nothing and returns the latest. With `must_be_new`, an existing dataset is
    /// refused (`DatasetExists`).
    fn push_dataset_with(
        &self,
        name: &str,
        must_be_new: bool,
        make: &mut VersionBuilder<'_>,
    ) -> Result<(crate::model::DatasetVersion, bool)>;

    /// Datasets newest first, from the one whose id is `from` (inclusive), with `name` only
    /// when given, at most `limit`.
    fn dataset_entries(
        &self,
        name: Option<&str>,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::model::DatasetEntry>>;

    /// A dataset by id.
    fn dataset_entry(&self, id: &str) -> Result<Option<crate::model::DatasetEntry>>;

    /// A dataset's versions by the dataset's id, newest first, from version `from_seq`
    /// (inclusive), at most `limit`.
    fn dataset_versions_of(
        &self,
        dataset_id: &str,
        from_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<crate::model::DatasetVersion>>;

    /// A version by its id, with its content.
    fn dataset_version(&self, id: &str) -> Result<Option<(crate::model::DatasetVersion, String)>>;

    /// Deletes a dataset and its versions; refused (`DatasetInUse`) while an experiment
    /// recorded one of its versions. False when there is no such dataset.
    fn delete_dataset(&self, id: &str) -> Result<bool>;

    /// Every dataset's latest version, by name.
    fn datasets(&self) -> Result<Vec<crate::model::DatasetVersion>>;

    /// A dataset's versions, newest first.
    fn dataset_versions(&self, name: &str) -> Result<Vec<crate::model::DatasetVersion>>;

    /// A version (None: the latest) with its content.
    fn dataset_content(
        &self,
        name: &str,
        seq: Option<i64>,
    ) -> Result<(crate::model::DatasetVersion, String)>;

    /// The oldest version whose bytes hash to `hash`, of any dataset, with its content.
    fn dataset_by_hash(&self, hash: &str)
    -> Result<Option<(crate::model::DatasetVersion, String)>>;
}

/// Experiments your own code runs through the Phoenix client, and their runs and evaluations;
/// each is kept as an experiment of runner's own too (`mirror`, of a prompt version or of
/// none), in the same transaction.
pub trait TaskStore: Send + Sync {
    /// Creates an experiment on a dataset version, and runner's experiment of the same id.
    fn create_task_experiment(
        &self,
        new: &NewTaskExperiment,
        mirror: &crate::model::NewExperiment,
    ) -> Result<crate::model::TaskExperiment>;

    fn task_experiment(&self, id: &str) -> Result<Option<crate::model::TaskExperiment>>;

    /// A dataset's experiments, newest first, from `from` (inclusive), at most `limit`.
    fn task_experiments(
        &self,
        dataset_id: &str,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::model::TaskExperiment>>;

    /// Records a run, or replaces an errored one in place (same id, its automatic evaluations
    /// dropped); a successful one is final (`RunExists`). With the linked experiment's
    /// `result`, writes it too.
    fn record_task_run(
        &self,
        run: &crate::model::TaskRun,
        result: Option<&crate::model::RunResult>,
    ) -> Result<String>;

    /// An experiment's runs, newest first, from run `from` (inclusive), at most `limit`.
    fn task_runs(
        &self,
        experiment_id: &str,
        from: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<crate::model::TaskRun>>;

    fn task_run(&self, id: &str) -> Result<Option<crate::model::TaskRun>>;

    /// Records an evaluation, replacing the run's evaluation of the same name (same id); with
    /// the linked experiment's score for the run's result `(row_index, repetition)`, writes it
    /// too.
    fn record_task_evaluation(
        &self,
        evaluation: &crate::model::TaskEvaluation,
        score: Option<(i64, i64, &crate::model::Score)>,
    ) -> Result<String>;

    /// Every evaluation of an experiment's runs.
    fn task_evaluations(&self, experiment_id: &str) -> Result<Vec<crate::model::TaskEvaluation>>;

    /// Deletes an experiment with its runs and evaluations, and runner's experiment of the same
    /// id; false when there is none. One of a prompt version is refused (`LinkedExperiment`):
    /// a gate may cite it.
    fn delete_task_experiment(&self, id: &str) -> Result<bool>;

    /// Writes an experiment of another store as it is (`store copy`).
    fn restore_task_experiment(&self, experiment: &crate::model::TaskExperiment) -> Result<()>;

    /// Writes runs and evaluations of another store as they are (`store copy`).
    fn restore_task_runs(
        &self,
        runs: &[crate::model::TaskRun],
        evaluations: &[crate::model::TaskEvaluation],
    ) -> Result<()>;
}

/// What `create_task_experiment` writes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewTaskExperiment {
    pub dataset_id: String,
    pub dataset_version_id: String,
    pub name: String,
    pub description: Option<String>,
    pub metadata: String,
    pub repetitions: i64,
    pub author: String,
}

/// What `push_dataset_with` calls to build a dataset's next version from its latest one.
pub type VersionBuilder<'a> = dyn FnMut(Option<(&crate::model::DatasetVersion, &str)>) -> Result<Option<NewDatasetVersion>>
    + 'a;

/// What `push_dataset` stores: the file's bytes (checked as a dataset before), and what a scan
/// of it found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewDatasetVersion {
    pub format: String,
    pub content: String,
    pub hash: String,
    pub rows: i64,
    pub columns: Vec<String>,
    pub message: Option<String>,
    pub author: String,
    /// When it was pushed, for a copy of another store's version; None: now.
    pub created_at: Option<String>,
    /// `rows` or `examples` (see `model::DatasetVersion::shape`).
    pub shape: String,
    /// The dataset's description and metadata (a JSON object), kept when this version
    /// creates the dataset.
    pub description: Option<String>,
    pub metadata: Option<String>,
    /// The version's id and, when it creates the dataset, the dataset's (a copy of another
    /// store keeps them, so ids a client holds stay valid); None: new ones.
    pub id: Option<String>,
    pub dataset_id: Option<String>,
}

/// Canary rollouts: their plan and state, and the tag moves that start and end them.
pub trait RolloutStore: Send + Sync {
    /// Starts a rollout, in one transaction: the tag must still point at the rollout's
    /// baseline and have no rollout running; the canary tag is set to the candidate (a tag
    /// event whose evidence names the rollout).
    fn start_rollout(
        &self,
        rollout: &crate::canary::Rollout,
        change: &TagChange,
    ) -> Result<TagEvent>;

    /// Rollouts, newest first: of one prompt, or of every prompt; only running ones if asked.
    fn rollouts(&self, prompt: Option<&str>, running: bool) -> Result<Vec<crate::canary::Rollout>>;

    /// The rollout's status and step now, and whether its tag points at its baseline: one
    /// indexed read, for every lookup under the rollout. None for an unknown id.
    fn rollout_now(&self, id: &str) -> Result<Option<crate::canary::RolloutNow>>;

    /// Records a look that keeps the rollout running (held, or advanced to another step), only
    /// if the rollout is still as `seen` (running, same step and looks): false when another
    /// process decided first.
    fn record_look(
        &self,
        seen: &crate::canary::Rollout,
        next: &crate::canary::Rollout,
    ) -> Result<bool>;

    /// Ends a rollout still as `seen`: completed moves `tag` to the candidate as a promotion
    /// (the tag must still point at the baseline), every end deletes the canary tag; each move
    /// carries `evidence`. None when another process ended or moved it first.
    fn finish_rollout(
        &self,
        seen: &crate::canary::Rollout,
        status: crate::canary::Status,
        evidence: serde_json::Value,
        change: &TagChange,
    ) -> Result<Option<Vec<TagEvent>>>;
}

/// A token of the team server as the store keeps it: never its secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApiToken {
    pub name: String,
    /// read, write, promote, deploy, ingest or admin.
    pub role: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

impl ApiToken {
    /// Whether it is accepted at `now` (RFC 3339): not revoked, not expired.
    pub fn valid_at(&self, now: time::OffsetDateTime) -> bool {
        let expired = self.expires_at.as_deref().is_some_and(|at| {
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map_or(true, |at| at <= now)
        });
        self.revoked_at.is_none() && !expired
    }
}

/// What `create_token` stores.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewToken {
    pub name: String,
    pub role: String,
    /// The sha256 of the secret, lower-case hex.
    pub digest: String,
    pub created_by: String,
    pub expires_at: Option<String>,
}

/// The team server's tokens (`runner token create|list|revoke`).
pub trait TokenStore: Send + Sync {
    /// Stores a new token; refused (`TokenExists`) when its name, or its secret, is taken.
    fn create_token(&self, new: &NewToken) -> Result<ApiToken>;

    /// Every token, revoked and expired ones too, by name.
    fn api_tokens(&self) -> Result<Vec<ApiToken>>;

    /// Revokes a token; false when there is none of that name still valid.
    fn revoke_token(&self, name: &str, actor: &str) -> Result<bool>;

    /// The token whose secret hashes to `digest` (lower-case hex), whatever its state.
    fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>>;
}

pub trait Store:
    PromptStore
    + TokenStore
    + ExperimentStore
    + ResultSink
    + ResponseCache
    + WorkQueue
    + TraceStore
    + RolloutStore
    + DatasetStore
    + TaskStore
{
    /// The schema version this store is at.
    fn schema_version(&self) -> Result<i64>;

    /// Where the store is, as shown to a person (never with a password).
    fn location(&self) -> String;

    /// The runner server this store is behind, for the one thing a remote store does
    /// differently: a promotion's tag move is evaluated by the server (see `remote`).
    fn remote(&self) -> Option<&remote::RemoteStore> {
        None
    }

    /// Word of every change to what a tag lookup reads (prompts, versions, tags, rollouts), by
    /// any program, so a server may keep those answers in memory; None when the store has no
    /// such word (a SQLite read is a local file read and needs no copy). The first call starts
    /// listening.
    fn routing_feed(&self) -> Option<Arc<RoutingFeed>> {
        None
    }
}

/// A counter that moves whenever what a tag lookup reads may have changed, and says whether
/// it can be trusted right now. An answer read from the store may be kept while the counter
/// stands where it stood before the read began (`current` both times); it is dropped when the
/// counter moves. While the store's word cannot be received (the listening connection is down,
/// or not yet up) `current` is None and every lookup reads the store.
#[derive(Debug, Default)]
pub struct RoutingFeed {
    /// Twice the number of moves, plus one while the word is being received.
    state: std::sync::atomic::AtomicU64,
}

impl RoutingFeed {
    /// Where the counter stands, if the store's word is being received.
    pub fn current(&self) -> Option<u64> {
        let state = self.state.load(std::sync::atomic::Ordering::Acquire);
        (state & 1 == 1).then_some(state >> 1)
    }

    /// Something changed: every answer kept so far is stale.
    pub fn changed(&self) {
        self.state.fetch_add(2, std::sync::atomic::Ordering::AcqRel);
    }

    /// The store's word is received from now on (a listener is registered). What changed while
    /// nobody listened is unknown, so the counter moves too.
    pub fn listening(&self) {
        self.set_listening(true);
    }

    /// The store's word can no longer be received: answers are read afresh until `listening`.
    pub fn lost(&self) {
        self.set_listening(false);
    }

    fn set_listening(&self, on: bool) {
        use std::sync::atomic::Ordering;
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                Some((((state >> 1) + 1) << 1) | u64::from(on))
            });
    }
}

/// The per-row spread of an experiment with one answer a row, from whole-experiment sums:
/// every result is a row, a pass counts 1 (its square too), and an errored call, which has no
/// score, adds 0.
pub(crate) fn single_answer_spread(
    results: i64,
    passed: i64,
    score_sum: f64,
    score_sum_sq: f64,
) -> crate::model::RowSpread {
    use crate::model::{RowSpread, SpreadSums};
    RowSpread {
        rows: results,
        answers: results,
        pass: SpreadSums {
            sum: passed as f64,
            sum_sq: passed as f64,
            within: 0.0,
        },
        score: SpreadSums {
            sum: score_sum,
            sum_sq: score_sum_sq,
            within: 0.0,
        },
    }
}

/// The position, from 0 in ascending order, of the nearest-rank percentile `p` of `count`
/// values: the one definition of p50 / p95, whether the database or memory sorts.
pub(crate) fn nearest_rank(count: i64, p: f64) -> i64 {
    ((p * count as f64).ceil() as i64).clamp(1, count) - 1
}

/// The nearest-rank percentiles `ps` of the successful calls' latencies among `outcomes`,
/// found in memory from one list of latencies (the store's summary finds the same ones in the
/// database); None for each when no call succeeded.
pub fn latency_percentiles<const N: usize>(
    outcomes: &[RowOutcome],
    ps: [f64; N],
) -> [Option<f64>; N] {
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.ok)
        .map(|o| o.latency_ms)
        .collect();
    ps.map(|p| {
        if latencies.is_empty() {
            return None;
        }
        let rank = nearest_rank(latencies.len() as i64, p) as usize;
        Some(*latencies.select_nth_unstable_by(rank, f64::total_cmp).1)
    })
}

/// The longest start of an output a page is shown (characters): the whole answer is on the
/// experiment's own page.
pub(crate) const ROW_TEXT_CHARS: i64 = 4000;

/// Outcomes read in storage order (row index, repetition), each with its key, given their
/// scores, which come in the same order; returned in row-id order, as `visit_outcomes`
/// gives them.
pub(crate) fn in_row_id_order(
    mut keyed: Vec<((i64, i64), RowOutcome)>,
    scores: impl IntoIterator<Item = ((i64, i64), (String, bool, f64))>,
) -> Vec<RowOutcome> {
    let mut at = 0;
    for (key, score) in scores {
        while at < keyed.len() && keyed[at].0 < key {
            at += 1;
        }
        match keyed.get_mut(at) {
            Some((k, outcome)) if *k == key => outcome.scores.push(score),
            // A score without its result (the foreign key forbids it): nothing to attach to.
            _ => {}
        }
    }
    keyed.sort_unstable_by(|(a_key, a), (b_key, b)| {
        (a.row_id.as_bytes(), a.repetition, a_key.0).cmp(&(
            b.row_id.as_bytes(),
            b.repetition,
            b_key.0,
        ))
    });
    keyed.into_iter().map(|(_, outcome)| outcome).collect()
}

/// The `postgres://` (or `postgresql://`) URL `--db` holds, if it names a PostgreSQL database
/// rather than an SQLite file.
fn postgres_url(location: &Path) -> Option<&str> {
    location
        .to_str()
        .filter(|text| postgres::conninfo::is_url(text))
}

/// The `postgres://` URL `location` holds, if it names a PostgreSQL database.
pub fn postgres_url_of(location: &Path) -> Option<&str> {
    postgres_url(location)
}

/// `--db` as shown to a person: a path as it is, a URL without its password.
pub fn display_location(location: &Path) -> String {
    match postgres_url(location) {
        Some(url) => postgres::conninfo::redact(url),
        None => location.display().to_string(),
    }
}

/// Opens (creating and migrating if needed) the store `--db` names: an SQLite file, or a
/// PostgreSQL database for a `postgres://` URL.
pub fn open(location: &Path) -> Result<Arc<dyn Store>> {
    if remote::is_url(location) {
        return Ok(Arc::new(remote::RemoteStore::open(
            &location.to_string_lossy(),
        )?));
    }
    if let Some(url) = postgres_url(location) {
        return Ok(Arc::new(PgStore::open(url)?));
    }
    Ok(Arc::new(SqliteStore::open(location)?))
}

/// Opens a store for a command that only reads: a store that does not exist yet reads as an
/// empty one and is not created, and an existing one is opened read-only, never migrated, so
/// a read command never changes a file or a database.
pub fn open_for_reading(location: &Path) -> Result<Arc<dyn Store>> {
    if remote::is_url(location) {
        return open(location);
    }
    if let Some(url) = postgres_url(location) {
        return match PgStore::open_read_only(url)? {
            Some(store) => Ok(Arc::new(store)),
            None => open_in_memory(),
        };
    }
    if location.exists() {
        match SqliteStore::open_read_only(location)? {
            Some(store) => Ok(Arc::new(store)),
            // An empty SQLite file: nothing to read yet.
            None => open_in_memory(),
        }
    } else {
        open_in_memory()
    }
}

/// An empty store in memory: tests, and reads of a store that does not exist yet.
pub fn open_in_memory() -> Result<Arc<dyn Store>> {
    Ok(Arc::new(SqliteStore::open_in_memory()?))
}

/// `append_version_with` for a builder that fails with the caller's own error type: that
/// error comes back as it was, and nothing is written.
pub fn append_version<S, F, E>(
    store: &S,
    name: &str,
    build: F,
    tags: &[String],
    change: &TagChange,
) -> Result<PromptVersion, E>
where
    S: PromptStore + ?Sized,
    F: FnMut(&PromptVersion) -> Result<NewVersion, E>,
    E: From<StoreError>,
{
    let mut build = build;
    let mut failure = None;
    // The builder may run more than once: a remote store builds again when another writer
    // appended first.
    let appended = store.append_version_with(
        name,
        &mut |latest| match build(latest) {
            Ok(version) => Ok(version),
            Err(e) => {
                failure = Some(e);
                Err(StoreError::Abandoned)
            }
        },
        tags,
        change,
    );
    match (appended, failure) {
        (Ok(version), _) => Ok(version),
        (Err(StoreError::Abandoned), Some(e)) => Err(e),
        (Err(e), _) => Err(e.into()),
    }
}

/// `visit_results` with a visitor that fails with the caller's own error type.
pub fn visit_results<S, F, E>(store: &S, id: &str, mut visit: F) -> Result<(), E>
where
    S: ExperimentStore + ?Sized,
    F: FnMut(RunResult) -> Result<(), E>,
    E: From<StoreError>,
{
    let mut failure = None;
    let visited = store.visit_results(id, &mut |result| {
        visit(result).map_err(|e| {
            failure = Some(e);
            StoreError::Abandoned
        })
    });
    match (visited, failure) {
        (Ok(()), _) => Ok(()),
        (Err(StoreError::Abandoned), Some(e)) => Err(e),
        (Err(e), _) => Err(e.into()),
    }
}

#[cfg(test)]
pub(crate) mod test_cluster;

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod trace_tests;
