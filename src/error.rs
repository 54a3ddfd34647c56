//! The closed set of ways a command can fail, and the one mapping from failure to exit code. It
//! prints nothing and ends no process (`main` writes the lines and returns the code), and it reads
//! nothing: it only classifies the errors other modules raise.

use crate::store::StoreError;
use crate::template::TemplateError;
use std::fmt;

/// Exit codes, identical for every command (README "Exit codes").
pub mod exit {
    /// Success: the gate passed, the tag moved, the command did its work.
    pub const OK: u8 = 0;
    /// A check failed: the promotion gate, an experiment's own threshold, or its budget.
    pub const CHECK_FAILED: u8 = 1;
    /// Usage or invalid input; nothing was written.
    pub const INVALID: u8 = 2;
    /// Operational failure: endpoint or store unavailable.
    pub const OPERATIONAL: u8 = 3;
    /// Interrupted by Ctrl-C after writing what was finished.
    pub const INTERRUPTED: u8 = 130;
}

/// A failure as shown to a person: one line saying what failed, the chain of causes below it
/// (`Caused by:` lines), and a hint. The set is closed: each variant has its exit code and its
/// default hints here, and nowhere else.
#[derive(Debug)]
pub enum Error {
    /// The input was wrong; nothing was written (exit 2).
    Invalid(Failure),
    /// Something outside the input failed: endpoint, disk, output (exit 3).
    Operational(Failure),
    /// Stopped by Ctrl-C / SIGTERM after storing what finished (exit 130).
    Interrupted(Failure),
    /// Stopped at its `--max-cost` after storing what finished; the rest is resumable (exit 1).
    Budget(Failure),
    /// The store refused or failed (exit 2 when the caller named something wrong, else 3).
    Store(Box<StoreError>, Option<String>),
    /// A template that does not parse or render (exit 2).
    Template(Box<TemplateError>, Option<String>),
}

/// What a failure of runner's own says: the message, a hint, the cause.
#[derive(Debug)]
pub struct Failure {
    message: String,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            hint: None,
            source: None,
        }
    }
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(Failure::new(message))
    }

    pub fn operational(message: impl Into<String>) -> Error {
        Error::Operational(Failure::new(message))
    }

    pub fn budget(message: impl Into<String>) -> Error {
        Error::Budget(Failure::new(message))
    }

    pub fn interrupted(message: impl Into<String>) -> Error {
        Error::Interrupted(Failure::new(message))
    }

    /// Replaces the hint (a caller that knows better what to do next).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        let hint = Some(hint.into());
        match &mut self {
            Error::Invalid(f)
            | Error::Operational(f)
            | Error::Interrupted(f)
            | Error::Budget(f) => f.hint = hint,
            Error::Store(_, own) | Error::Template(_, own) => *own = hint,
        }
        self
    }

    /// Keeps `cause` as the reason behind this failure, shown as `Caused by:` lines.
    pub fn with_source(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        if let Error::Invalid(f)
        | Error::Operational(f)
        | Error::Interrupted(f)
        | Error::Budget(f) = &mut self
        {
            f.source = Some(cause.into());
        }
        self
    }

    /// What to do next: the caller's hint, else the variant's own.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Invalid(f)
            | Error::Operational(f)
            | Error::Interrupted(f)
            | Error::Budget(f) => f.hint.clone(),
            Error::Store(e, own) => own.clone().or_else(|| store_hint(e)),
            Error::Template(e, own) => own.clone().or_else(|| template_hint(e)),
        }
    }

    /// The causes behind the message, outermost first, each said once.
    pub fn causes(&self) -> Vec<String> {
        let message = self.to_string();
        let mut causes: Vec<String> = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            let text = cause.to_string();
            if !message.contains(&text) && !causes.contains(&text) {
                causes.push(text);
            }
            next = cause.source();
        }
        causes
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Invalid(_) | Error::Template(..) => exit::INVALID,
            Error::Operational(_) => exit::OPERATIONAL,
            Error::Interrupted(_) => exit::INTERRUPTED,
            Error::Budget(_) => exit::CHECK_FAILED,
            Error::Store(e, _) if e.is_invalid_input() => exit::INVALID,
            Error::Store(..) => exit::OPERATIONAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(x)
            | Error::Operational(x)
            | Error::Interrupted(x)
            | Error::Budget(x) => f.write_str(&x.message),
            Error::Store(e, _) => write!(f, "{e}"),
            Error::Template(e, _) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Invalid(f)
            | Error::Operational(f)
            | Error::Interrupted(f)
            | Error::Budget(f) => f
                .source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            // The store's own cause (a driver's words) comes through its source.
            Error::Store(e, _) => std::error::Error::source(e.as_ref()),
            Error::Template(e, _) => std::error::Error::source(e.as_ref()),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Store(Box::new(e), None)
    }
}

impl From<TemplateError> for Error {
    fn from(e: TemplateError) -> Error {
        Error::Template(Box::new(e), None)
    }
}

/// The hint of each store failure.
fn store_hint(e: &StoreError) -> Option<String> {
    match e {
        StoreError::UnknownPrompt { .. } => Some("`runner prompt list` shows the prompts".into()),
        StoreError::UnknownDataset { .. } => {
            Some("`runner dataset list` shows the store's datasets; `runner dataset push FILE --name N` adds one".into())
        }
        StoreError::UnknownDatasetVersion { name, .. } => {
            Some(format!("`runner dataset show {name}` lists its versions"))
        }
        StoreError::RunExists { .. } => None,
        StoreError::LinkedExperiment { .. } => Some(
            "it stays with its runs; an experiment that names no prompt version can be deleted"
                .into(),
        ),
        StoreError::DatasetExists { .. } => {
            Some("add a version to it (append or update), or choose another name".into())
        }
        StoreError::DatasetInUse { .. } => Some(
            "its versions stay as the evidence of those experiments; give new rows as a new version"
                .into(),
        ),
        StoreError::PromptExists { name } => Some(format!(
            "add a version with `runner prompt update {name} ...`"
        )),
        StoreError::PromptArchived { name } => Some(format!(
            "`runner prompt restore {name}` brings it back with its versions and tags"
        )),
        StoreError::NotArchived { name } => Some(format!(
            "`runner prompt show {name}` shows it; only an archived prompt is restored"
        )),
        StoreError::UnknownVersion { prompt, .. } => Some(format!(
            "`runner prompt versions {prompt}` lists its versions"
        )),
        StoreError::UnknownTag { prompt, .. } => {
            Some(format!("`runner tag list {prompt}` lists its tags"))
        }
        StoreError::NothingToRollBack { prompt, tag } => Some(format!(
            "`runner tag history {prompt} {tag}` shows how the tag got here"
        )),
        StoreError::RolloutRunning { prompt, .. } => Some(format!(
            "`runner canary status {prompt}` shows it; `runner canary stop {prompt}` ends it"
        )),
        StoreError::NoRollout { prompt, .. } => Some(format!(
            "`runner canary start {prompt} --tag TAG --candidate TAG` starts one"
        )),
        StoreError::Open { .. } => Some(
            "pass --db (or set RUNNER_DB) a writable file or a reachable postgres:// URL".into(),
        ),
        StoreError::Damaged { .. } => Some(
            "restore the file from a backup (or a `runner export` into a new store); \
                 `sqlite3 FILE 'PRAGMA integrity_check'` shows the damage"
                .into(),
        ),
        StoreError::NotADatabase { .. } => {
            Some("point --db (or RUNNER_DB) at a runner store, or at a new file".into())
        }
        StoreError::NotRunnerStore { .. } => {
            Some("point --db (or RUNNER_DB) at a runner store, or at a new file".into())
        }
        StoreError::NotEmpty { .. } => {
            Some("copy into a new file, or into a new database (`createdb -O ROLE NAME`)".into())
        }
        StoreError::ForeignDatabase { .. } => Some(
            "point --db (or RUNNER_DB) at a runner store, or at a new, empty database \
                 (`createdb -O ROLE NAME`)"
                .into(),
        ),
        StoreError::OlderSchema { .. } => {
            Some("`runner migrate` brings it forward (so does any command that writes)".into())
        }
        StoreError::NewerSchema { .. } => {
            Some("upgrade runner; this store was written by a newer release".into())
        }
        StoreError::ProtectedTag {
            prompt,
            tag,
            action,
        } => Some(match action {
            crate::model::TagAction::Rollback => format!(
                "during an incident: `runner rollback {prompt} {tag} --force -m REASON` (recorded \
                 as forced in the tag history), or a token with the deploy role on `runner serve`"
            ),
            crate::model::TagAction::Delete => format!(
                "`runner tag delete {prompt} {tag} --force -m REASON` (recorded as forced), or a \
                 token with the deploy role on `runner serve`"
            ),
            _ => format!(
                "runner promote --prompt {prompt} --candidate staging --baseline {tag} --dataset FILE \
                 moves it through the gate; by hand: --force (recorded as forced) or a token with \
                 the deploy role"
            ),
        }),
        StoreError::ProtectedArchive { prompt, tag } => Some(format!(
            "pass --force to archive it all the same (recorded in the prompt's history), or \
             first `runner tag delete {prompt} {tag} --force` where its consumers expect that"
        )),
        StoreError::TagMoved { prompt, tag } => Some(format!(
            "`runner tag history {prompt} {tag}` shows the move; run the promotion again"
        )),
        StoreError::ExperimentBusy { id, .. } => Some(format!(
            "wait for that run to end; if it was stopped, its lease expires by itself and \
                 `runner experiment resume {id}` runs the rest"
        )),
        StoreError::UnknownExperiment { .. } | StoreError::AmbiguousExperiment { .. } => {
            Some("`runner experiment list` shows the experiments".into())
        }
        StoreError::Backend(_) => Some(
            "the cause above is the database's own word; check that the store is reachable \
                 and writable and the disk has room, then run the command again"
                .into(),
        ),
        StoreError::Unreachable { .. } => Some(
            "is `runner serve` running there? check the URL in --db (or RUNNER_DB) and the network"
                .into(),
        ),
        StoreError::Unauthorized { .. } => Some(
            "set RUNNER_TOKEN to a valid token, or run `runner login URL`; `runner token list` \
             on the server shows which tokens exist and when they expire"
                .into(),
        ),
        StoreError::Forbidden { needs, .. } => Some(format!(
            "ask for a token with the {needs} role (`runner token create NAME --role {needs}`)"
        )),
        StoreError::Protocol { .. } => Some(
            "the server and this runner may be different releases: `runner --version` here and \
             GET /v1/store on the server say which"
                .into(),
        ),
        StoreError::TokenExists { name } => Some(format!(
            "`runner token list` shows the tokens; revoke it first (`runner token revoke {name}`) or pick another name"
        )),
        StoreError::Raced { name } => Some(format!(
            "run the command again; `runner prompt versions {name}` shows the new version"
        )),
        StoreError::Corrupt(_) | StoreError::Abandoned => None,
    }
}

/// The hint of each template failure.
fn template_hint(e: &TemplateError) -> Option<String> {
    match e {
        TemplateError::Missing { .. } => {
            Some("pass each with --var NAME=VALUE or in --vars-file FILE.json".into())
        }
        TemplateError::Parse { .. } => Some(
            "mustache placeholders read {{name}}, f-string ones {name}; \
                 `--format none` sends the text as written"
                .into(),
        ),
        _ => None,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_its_exit_code_hint_and_causes() {
        let unknown: Error = StoreError::UnknownPrompt { name: "p".into() }.into();
        assert_eq!(unknown.exit_code(), exit::INVALID);
        assert!(unknown.hint().unwrap().contains("runner prompt list"));
        let io = std::io::Error::other("disk on fire");
        let backend: Error = StoreError::Backend(Box::new(io)).into();
        assert_eq!(backend.exit_code(), exit::OPERATIONAL);
        assert_eq!(backend.to_string(), "the store failed");
        assert_eq!(backend.causes(), ["disk on fire"]);
        let overridden = backend.with_hint("free some space");
        assert_eq!(overridden.hint().as_deref(), Some("free some space"));
        let plain = Error::operational("cannot write x")
            .with_source(std::io::Error::other("no space left"));
        assert_eq!(plain.causes(), ["no space left"]);
        assert_eq!(Error::interrupted("stop").exit_code(), exit::INTERRUPTED);
    }
}
