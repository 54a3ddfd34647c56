//! The closed set of ways a command can fail, and the one mapping from failure to exit code.

use crate::store::StoreError;
use crate::template::TemplateError;
use std::fmt;

/// Exit codes, identical for every command (README "Exit codes").
pub mod exit {
    /// Success: the gate passed, the tag moved, the command did its work.
    pub const OK: u8 = 0;
    /// A check failed: the promotion gate, or an experiment's own threshold.
    pub const CHECK_FAILED: u8 = 1;
    /// Usage or invalid input; nothing was written.
    pub const INVALID: u8 = 2;
    /// Operational failure: endpoint or store unavailable.
    pub const OPERATIONAL: u8 = 3;
    /// Interrupted by Ctrl-C after writing what was finished.
    pub const INTERRUPTED: u8 = 130;
}

/// Whether the caller or the world is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The input was wrong (exit 2).
    Invalid,
    /// Something outside the input failed (exit 3).
    Operational,
    /// Stopped by Ctrl-C / SIGTERM after storing what finished (exit 130).
    Interrupted,
}

/// A failure as shown to a person: one line saying what failed, the chain of causes below it
/// (`Caused by:` lines), and a hint where one helps.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Invalid,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    pub fn operational(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Operational,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    pub fn interrupted(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Interrupted,
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps `cause` as the reason behind this failure, shown as `Caused by:` lines.
    pub fn with_source(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        self.source = Some(cause.into());
        self
    }

    /// The causes behind the message, outermost first, each said once.
    pub fn causes(&self) -> Vec<String> {
        let mut causes: Vec<String> = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            let text = cause.to_string();
            if !self.message.contains(&text) && !causes.contains(&text) {
                causes.push(text);
            }
            next = cause.source();
        }
        causes
    }

    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Invalid => exit::INVALID,
            Kind::Operational => exit::OPERATIONAL,
            Kind::Interrupted => exit::INTERRUPTED,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        let hint = match &e {
            StoreError::UnknownPrompt { .. } => {
                Some("`runner prompt list` shows the prompts".into())
            }
            StoreError::PromptExists { name } => Some(format!(
                "add a version with `runner prompt update {name} ...`"
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
            StoreError::Open { .. } => {
                Some("pass --db PATH (or set RUNNER_DB) to a writable location".into())
            }
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
            StoreError::OlderSchema { .. } => {
                Some("`runner migrate` brings it forward (so does any command that writes)".into())
            }
            StoreError::NewerSchema { .. } => {
                Some("upgrade runner; this store was written by a newer release".into())
            }
            StoreError::ProtectedTag { prompt, tag } => Some(format!(
                "runner promote --prompt {prompt} --from staging --to {tag} --dataset FILE; \
                 a forced change is recorded in the tag history"
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
            StoreError::Corrupt(_) | StoreError::Abandoned => None,
        };
        let kind = if e.is_invalid_input() {
            Kind::Invalid
        } else {
            Kind::Operational
        };
        let message = e.to_string();
        // A driver's error is the cause of "the store failed", not a message of its own.
        let source = match e {
            StoreError::Backend(cause) => Some(cause),
            _ => None,
        };
        Error {
            kind,
            message,
            hint,
            source,
        }
    }
}

impl From<TemplateError> for Error {
    fn from(e: TemplateError) -> Error {
        let hint = match &e {
            TemplateError::Missing { .. } => {
                Some("pass each with --var NAME=VALUE or in --vars-file FILE.json".into())
            }
            TemplateError::Parse { .. } => Some(
                "mustache placeholders read {{name}}, f-string ones {name}; \
                 `--format none` sends the text as written"
                    .into(),
            ),
            _ => None,
        };
        Error {
            kind: Kind::Invalid,
            message: e.to_string(),
            hint,
            source: None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
