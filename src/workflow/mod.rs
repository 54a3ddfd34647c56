//! Workflows: the lifecycles the CLI, the API and the UI share (an experiment from plan to
//! summary, a promotion from evidence to tag move, an archive out and back), over the store
//! traits. Each takes one settings value that `settings` builds once from the command line
//! and runner.toml; no other module here parses a flag, and nothing here prints results.

pub mod agreement;
pub mod archive;
pub mod canary;
pub mod datasets;
pub mod examples;
pub mod experiment;
pub mod pairwise;
pub mod playground;
pub mod production;
pub mod promotion;
pub mod settings;
pub mod shards;
pub mod sync;
pub mod task_experiments;
pub mod worker;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{self, Store, TagChange};
use std::path::PathBuf;
use std::sync::Arc;

/// The prompt version an experiment judged, for a workflow that needs one (`doing` says
/// what, for the error): an experiment of your own code that names no version is refused.
pub fn judged<'a>(
    experiment: &'a crate::model::Experiment,
    doing: &str,
) -> Result<(&'a str, &'a str, i64)> {
    experiment.judged().ok_or_else(|| {
        Error::invalid(format!(
            "experiment {} names no prompt version (your own code ran it through the Phoenix \
             client): it can be listed, shown and compared, not {doing}",
            experiment.id
        ))
        .with_hint(
            "name the version in the experiment's metadata ({\"prompt\": NAME, \"tag\": TAG} \
             or {\"prompt_version_id\": ID}) when your code runs it",
        )
    })
}

/// A stored experiment runner itself can run (resume, a worker): one your own code ran
/// through the Phoenix client is refused, as runner cannot run its task.
pub fn runnable(experiment: &crate::model::Experiment) -> Result<(&str, &str, i64)> {
    if task_experiments::run_by_your_code(experiment) {
        return Err(Error::invalid(format!(
            "experiment {} was run by your own code through the Phoenix client: runner cannot \
             run its task",
            experiment.id
        ))
        .with_hint(
            "run it again from your code (run_experiment), or run a new experiment with runner",
        ));
    }
    judged(experiment, "run by runner")
}

/// The store when nothing names one: an SQLite file in the working directory.
pub const DEFAULT_DB: &str = "runner.db";

/// What every workflow needs besides its own input: who acts, the project's configuration,
/// and the store, opened once on first use.
pub struct Context {
    /// `--db` (or `RUNNER_DB`); None: runner.toml's `db`, else `runner.db`.
    db: Option<PathBuf>,
    pub author: String,
    config_path: Option<PathBuf>,
    config: std::cell::OnceCell<Config>,
    /// The store, opened once on first use and shared by everything the command does.
    store: std::cell::OnceCell<Arc<dyn Store>>,
    /// The store opened read-only, for commands (or parts of them) that only read.
    reader: std::cell::OnceCell<Arc<dyn Store>>,
    /// Datasets already read by this command: compare and promote prepare two sides over one
    /// file, which is read and hashed once.
    scans: std::cell::RefCell<Vec<(PathBuf, crate::dataset::DatasetInfo)>>,
    /// Say on stderr where a new store was made (not where stderr carries a log's lines).
    announce: std::cell::Cell<bool>,
}

impl Context {
    /// A context over a store the caller opened (a library user, a test), with `config` as
    /// the project's configuration.
    pub fn with_store(store: Arc<dyn Store>, author: &str, config: Config) -> Context {
        let context = Context::new(Some(PathBuf::from(store.location())), author.into(), None);
        let _ = context.store.set(store);
        let _ = context.config.set(config);
        context
    }

    pub fn new(db: Option<PathBuf>, author: String, config_path: Option<PathBuf>) -> Context {
        Context {
            db,
            author,
            config_path,
            config: std::cell::OnceCell::new(),
            store: std::cell::OnceCell::new(),
            reader: std::cell::OnceCell::new(),
            scans: std::cell::RefCell::default(),
            announce: std::cell::Cell::new(true),
        }
    }

    /// runner.toml, read on first use: commands that need no defaults never touch it.
    pub fn config(&self) -> Result<&Config> {
        if let Some(config) = self.config.get() {
            return Ok(config);
        }
        let config = Config::load(self.config_path.as_deref()).map_err(|e| {
            Error::invalid(e.to_string())
                .with_hint("fix the file, or point --config at another one")
        })?;
        Ok(self.config.get_or_init(|| config))
    }

    /// Where the store is: `--db` or `RUNNER_DB`, else runner.toml's `db`, else `runner.db`.
    pub fn location(&self) -> Result<PathBuf> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        Ok(self
            .config()?
            .db
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB)))
    }

    /// A dataset's validating scan, done once per command and file.
    pub fn scan(
        &self,
        path: &std::path::Path,
    ) -> Result<crate::dataset::DatasetInfo, crate::dataset::DatasetError> {
        if let Some((_, info)) = self.scans.borrow().iter().find(|(p, _)| p == path) {
            return Ok(info.clone());
        }
        let info = crate::dataset::scan(path)?;
        if let Some(separator) = info.separator {
            crate::note!(
                "note: {} is separated by {}, not commas: read so",
                path.display(),
                if separator == ';' {
                    "semicolons"
                } else {
                    "tabs"
                }
            );
        }
        self.scans
            .borrow_mut()
            .push((path.to_path_buf(), info.clone()));
        Ok(info)
    }

    /// Keeps the creation of a new store out of stderr (a server's log lines are there).
    pub fn quiet_store(&self) {
        self.announce.set(false);
    }

    /// The store, created and migrated if needed; opened once per command.
    pub fn store(&self) -> Result<Arc<dyn Store>> {
        if let Some(store) = self.store.get() {
            return Ok(store.clone());
        }
        let location = self.location()?;
        let local =
            store::postgres_url_of(&location).is_none() && !store::remote::is_url(&location);
        let new = local && !location.exists();
        let opened = store::open(&location)?;
        if new && self.announce.get() {
            // The first write says where the store is, so a file made in the wrong folder is
            // noticed at once.
            crate::note!("created the store {}", store::display_location(&location));
        }
        Ok(self.store.get_or_init(|| opened).clone())
    }

    /// The store for reading, which must exist: a read command in a folder without one says
    /// so (exit 2) rather than answering as if the store were empty, and leaves no file behind.
    pub fn store_for_reading(&self) -> Result<Arc<dyn Store>> {
        let location = self.location()?;
        let local =
            store::postgres_url_of(&location).is_none() && !store::remote::is_url(&location);
        if local && self.store.get().is_none() && !location.exists() {
            return Err(Error::invalid(format!(
                "no store at {}",
                store::display_location(&location)
            ))
            .with_hint(
                "create one with `runner prompt create NAME --template TEXT` (or `runner sync DIR`), \
                 or point --db (or RUNNER_DB) at an existing store",
            ));
        }
        self.store_or_empty()
    }

    /// The store for reading, or an empty one when none exists yet (nothing is created): for a
    /// command that answers on an empty store too (`sync --check`, `serve`'s token count).
    pub fn store_or_empty(&self) -> Result<Arc<dyn Store>> {
        if let Some(store) = self.store.get() {
            return Ok(store.clone());
        }
        if let Some(reader) = self.reader.get() {
            return Ok(reader.clone());
        }
        let opened = store::open_for_reading(&self.location()?)?;
        Ok(self.reader.get_or_init(|| opened).clone())
    }

    pub fn tag_change(&self, message: Option<String>) -> TagChange {
        TagChange {
            actor: self.author.clone(),
            message,
            ..TagChange::default()
        }
    }

    /// A tag change under the tag policy; the store checks it inside the write transaction,
    /// and records a forced change of a protected tag as forced.
    pub fn guarded_change(&self, force: bool, message: Option<String>) -> Result<TagChange> {
        Ok(TagChange {
            force,
            policy: self.config()?.tag_policy(),
            ..self.tag_change(message)
        })
    }
}

#[cfg(test)]
mod tests;
