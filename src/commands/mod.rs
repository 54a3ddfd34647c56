//! Command glue: turn parsed arguments into settings, open the store, call the domain, hand the
//! results to `report`.

mod compare;
mod demo;
mod experiment;
mod prompt;
mod serve;
mod tag;
mod transfer;

use crate::cli::{Cli, Command, VersionSelector};
use crate::config::Config;
use crate::error::{Error, Result, exit};
use crate::model::{JsonObject, NameKind, VersionRef, check_name};
use crate::store::{self, Store, TagChange};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// What every command needs besides its own arguments.
pub struct Context {
    pub db: PathBuf,
    pub author: String,
    config_path: Option<PathBuf>,
    config: std::cell::OnceCell<Config>,
    /// The store, opened once on first use and shared by everything the command does.
    store: std::cell::OnceCell<Arc<dyn Store>>,
    /// Datasets already read by this command: compare and promote prepare two sides over one
    /// file, which is read and hashed once.
    scans: std::cell::RefCell<Vec<(PathBuf, crate::dataset::DatasetInfo)>>,
}

impl Context {
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

    /// A dataset's validating scan, done once per command and file.
    pub fn scan(
        &self,
        path: &std::path::Path,
    ) -> Result<crate::dataset::DatasetInfo, crate::dataset::DatasetError> {
        if let Some((_, info)) = self.scans.borrow().iter().find(|(p, _)| p == path) {
            return Ok(info.clone());
        }
        let info = crate::dataset::scan(path)?;
        self.scans
            .borrow_mut()
            .push((path.to_path_buf(), info.clone()));
        Ok(info)
    }

    /// The store, created and migrated if needed; opened once per command.
    pub fn store(&self) -> Result<Arc<dyn Store>> {
        if let Some(store) = self.store.get() {
            return Ok(store.clone());
        }
        let opened = store::open(&self.db)?;
        Ok(self.store.get_or_init(|| opened).clone())
    }

    /// The store for reading: a store that does not exist yet reads as an empty one and is not
    /// created, so a read command never leaves a file behind.
    pub fn store_for_reading(&self) -> Result<Arc<dyn Store>> {
        if self.store.get().is_some() || self.db.exists() {
            self.store()
        } else {
            Ok(store::open_in_memory()?)
        }
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

/// Runs one command and returns its exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let author = cli
        .author
        .filter(|a| !a.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    let ctx = Context {
        db: cli.db,
        author,
        config_path: cli.config,
        config: std::cell::OnceCell::new(),
        store: std::cell::OnceCell::new(),
        scans: std::cell::RefCell::default(),
    };
    match cli.command {
        Command::Prompt(command) => prompt::run(command, &ctx).map(|_| exit::OK),
        Command::Tag(command) => tag::run(command, &ctx).map(|_| exit::OK),
        Command::Rollback(args) => tag::rollback(args, &ctx).map(|_| exit::OK),
        Command::Export(args) => transfer::export(args, &ctx).map(|_| exit::OK),
        Command::Import(args) => transfer::import(args, &ctx).map(|_| exit::OK),
        Command::Experiment(args) => experiment::run(args, &ctx),
        Command::Compare(args) => compare::compare(args, &ctx),
        Command::Promote(args) => compare::promote(args, &ctx),
        Command::Demo(args) => demo::run(args, &ctx),
        Command::MockServer(args) => experiment::mock_server(args),
        Command::Serve(args) => serve::run(args, &ctx),
    }
}

/// Writes to stdout; a closed pipe (`runner … | head`) ends output quietly instead of panicking.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// Prints a value as pretty JSON.
pub fn out_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::operational(format!("cannot encode JSON: {e}")))?;
    out(&text);
    Ok(())
}

/// A name as an error message shows it: quoted with escapes (a newline stays on one line) and
/// cut short.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(60).collect();
    if cut.len() < name.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

pub fn check_prompt_name(name: &str) -> Result<()> {
    check_name(NameKind::Prompt, name).map_err(|reason| {
        Error::invalid(format!("invalid prompt name {}: {reason}", shown(name)))
            .with_hint("names use letters, digits, '_', '-' and '.', 1 to 128 characters")
    })
}

pub fn check_tag_name(tag: &str) -> Result<()> {
    check_name(NameKind::Tag, tag).map_err(|reason| {
        Error::invalid(format!("invalid tag name {}: {reason}", shown(tag)))
            .with_hint("tags use letters, digits, '_', '-' and '.', and are not only digits")
    })
}

/// The version a selector names; the latest when it names none.
pub fn version_ref(selector: &VersionSelector) -> Result<VersionRef> {
    Ok(
        match (selector.version, &selector.version_id, &selector.tag) {
            (Some(seq), _, _) => {
                if seq < 1 {
                    return Err(Error::invalid(format!(
                        "invalid version number {seq}: versions are numbered from 1"
                    )));
                }
                VersionRef::Seq(seq)
            }
            (_, Some(id), _) => VersionRef::Id(id.clone()),
            (_, _, Some(tag)) => {
                check_tag_name(tag)?;
                VersionRef::Tag(tag.clone())
            }
            _ => VersionRef::Latest,
        },
    )
}

/// Splits `KEY=VALUE` for the named flag.
pub fn split_assignment<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str)> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim(), value)),
        _ => Err(
            Error::invalid(format!("invalid {flag} '{text}': expected KEY=VALUE"))
                .with_hint(format!("for example {flag} temperature=0.7")),
        ),
    }
}

/// Reads a `--param` / `--meta` value: JSON where it is valid JSON (numbers, booleans, null,
/// objects, lists, quoted strings), otherwise the text itself. Text that opens like a JSON
/// object, list or string but does not parse is refused rather than silently kept as text.
pub fn parse_value(flag: &str, key: &str, raw: &str) -> Result<Value> {
    match serde_json::from_str::<Value>(raw) {
        Ok(value) => Ok(value),
        Err(e) if raw.trim_start().starts_with(['{', '[', '"']) => Err(Error::invalid(format!(
            "invalid JSON in {flag} {key}: {e}"
        ))
        .with_hint(format!(
            "quote the whole assignment for the shell, e.g. {flag} '{key}={{\"type\": \"json_object\"}}'"
        ))),
        Err(_) => Ok(Value::String(raw.to_string())),
    }
}

/// Applies `KEY=VALUE` assignments to an object; a JSON `null` removes the key.
pub fn apply_assignments(flag: &str, base: &mut JsonObject, assignments: &[String]) -> Result<()> {
    for text in assignments {
        let (key, raw) = split_assignment(flag, text)?;
        match parse_value(flag, key, raw)? {
            Value::Null => {
                base.remove(key);
            }
            value => {
                base.insert(key.to_string(), value);
            }
        }
    }
    Ok(())
}

/// Reads a whole text file, naming it in the error.
pub fn read_text(path: &std::path::Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!("cannot read {what} {}: {e}", path.display()))
            .with_hint("check the path and that the file is UTF-8 text")
    })
}

/// Reads a JSON file, or a YAML one when its name ends in `.yaml` / `.yml`, into `T`.
pub fn read_structured<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
) -> Result<T> {
    let text = read_text(path, what)?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let parsed = if yaml {
        // The YAML error is a multi-line annotated snippet; its first line carries the cause.
        serde_saphyr::from_str(&text).map_err(|e| {
            e.to_string()
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid YAML")
                .trim()
                .trim_start_matches("error: ")
                .to_string()
        })
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|cause| Error::invalid(format!("invalid {what} {}: {cause}", path.display())))
}
