//! `runner sync` / `runner pull`: prompts as code, a folder of prompt files against the store
//! (the file format is `prompt_file`'s, the work `workflow::sync`'s). It decides no change itself:
//! what a sync or pull writes is `workflow::sync`'s and every refusal the store's; this file reads
//! the folder's files, opens the store and hands the report to `report`.

use super::{Context, check_prompt_name, check_tag_name, out, out_json};
use crate::cli::{PullArgs, SyncArgs};
use crate::error::{Error, Result, exit};
use crate::model::VersionRef;
use crate::prompt_file::{self, PromptSource};
use crate::report;
use crate::store::StoreError;
use crate::workflow::sync::{self, PullError, Writer};
use std::io::Write as _;
use std::path::Path;

const FORMAT_HINT: &str = "a prompt file holds template (or messages) and optionally format, \
     model, params, metadata, description, message and tags; schemas/prompt-file.schema.json \
     describes it, `runner sync --help` shows an example";

pub fn sync(args: SyncArgs, ctx: &Context) -> Result<u8> {
    // Every file is read and checked before the store is opened: one bad file writes nothing.
    let sources = read_sources(&args.dir)?;
    if args.prune && sources.is_empty() {
        return Err(Error::invalid(format!(
            "{} holds no prompt files: --prune would archive every prompt",
            args.dir.display()
        ))
        .with_hint("check the folder's path; to archive prompts one by one, leave --prune out"));
    }
    let writer = Writer {
        author: &ctx.author,
        policy: ctx.config()?.tag_policy(),
        message: args.message.clone().or_else(|| git_subject(&args.dir)),
        prune: args.prune,
        force: args.force,
    };
    let report = if args.check {
        // A check against no store says what a sync would create.
        let store = ctx.store_or_empty()?;
        sync::check(&*store, &args.dir, &sources, &writer)?
    } else {
        let store = ctx.store()?;
        sync::sync(&*store, &args.dir, &sources, &writer)?
    };
    if let Some(path) = &args.markdown {
        std::fs::write(path, report::sync_markdown(&report)).map_err(|e| {
            Error::operational(format!("cannot write {}: {e}", path.display()))
                .with_hint("check that the folder exists and is writable")
        })?;
    }
    if args.json {
        out_json(&report)?;
    } else {
        out(&report::sync_text(&report));
    }
    Ok(if args.check && !report.in_sync {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}

/// Every prompt file in `dir`, or one error listing every problem of every file.
fn read_sources(dir: &Path) -> Result<Vec<PromptSource>> {
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(
            Error::invalid(format!("{} {what}", dir.display())).with_hint(
                "pass the folder that holds the prompt files (NAME.yaml, .json or .toml), \
                 e.g. `runner sync prompts/`",
            ),
        );
    }
    let (sources, problems) = prompt_file::read_dir(dir).map_err(|e| {
        Error::invalid(format!("cannot read the folder {}: {e}", dir.display()))
            .with_hint("check its permissions")
    })?;
    if problems.is_empty() {
        return Ok(sources);
    }
    let mut message = format!(
        "{} of {} prompt file(s) in {} {} invalid; nothing was written",
        problems.len(),
        problems.len() + sources.len(),
        dir.display(),
        if problems.len() == 1 { "is" } else { "are" }
    );
    for problem in &problems {
        for reason in &problem.reasons {
            message.push_str(&format!("\n  {}: {reason}", problem.path.display()));
        }
    }
    Err(Error::invalid(message).with_hint(FORMAT_HINT))
}

/// The subject of the latest commit of the git checkout holding `dir`, if it is in one.
fn git_subject(dir: &Path) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%s"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let subject = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !subject.is_empty()).then_some(subject)
}

pub fn pull(args: PullArgs, ctx: &Context) -> Result<()> {
    for name in &args.names {
        check_prompt_name(name)?;
    }
    if let Some(tag) = &args.tag {
        check_tag_name(tag)?;
    }
    if args.dir.exists() && !args.dir.is_dir() {
        return Err(
            Error::invalid(format!("{} is not a folder", args.dir.display()))
                .with_hint("pull into a folder: a new one, or the one that holds the prompt files"),
        );
    }
    let store = ctx.store_for_reading()?;
    let mut names = args.names.clone();
    names.dedup();
    if names.is_empty() {
        names = store.prompts()?.into_iter().map(|(p, _)| p.name).collect();
    }
    let reference = match &args.tag {
        Some(tag) => VersionRef::Tag(tag.clone()),
        None => VersionRef::Latest,
    };
    // Everything is read and rendered first, so an unknown name writes no file.
    let mut versions = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        // A name becomes a path in DIR: one read from the store is checked as one typed is.
        crate::store::check_stored(crate::model::NameKind::Prompt, &name)?;
        match store.version(&name, &reference) {
            Ok(version) => {
                let mut tags: Vec<String> = store
                    .tags(&name)?
                    .into_iter()
                    .filter(|t| t.version_id == version.id)
                    .map(|t| t.name)
                    .collect();
                tags.sort();
                versions.push((version, tags));
            }
            Err(StoreError::UnknownTag { .. }) if args.names.is_empty() => skipped.push(name),
            Err(e) => return Err(e.into()),
        }
    }
    let files = sync::pull_files(&args.dir, &versions).map_err(|e| match e {
        PullError::Store(e) => e.into(),
        PullError::Render { path, reason } => {
            Error::invalid(format!("cannot write {}: {reason}", path.display())).with_hint(
                "rename the file to NAME.yaml (or .json), which can hold any stored version",
            )
        }
        PullError::TwoFiles { name, paths } => {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            Error::invalid(format!(
                "prompt '{name}' has {} files in {} ({})",
                paths.len(),
                args.dir.display(),
                shown.join(", ")
            ))
            .with_hint("keep one file per prompt")
        }
    })?;
    // Every file is checked before any is written: a link in DIR stops the pull whole.
    for file in files.iter().filter(|f| !f.unchanged) {
        refuse_link(&file.path)?;
    }
    std::fs::create_dir_all(&args.dir).map_err(|e| write_error(&args.dir, e))?;
    let mut lines = String::new();
    let mut written = 0;
    for file in &files {
        if file.unchanged {
            lines.push_str(&format!(
                "{}: already holds {} v{}\n",
                file.path.display(),
                file.name,
                file.version
            ));
            continue;
        }
        write_atomically(&file.path, &file.text)?;
        written += 1;
        lines.push_str(&format!(
            "{}: wrote {} v{}\n",
            file.path.display(),
            file.name,
            file.version
        ));
    }
    if !skipped.is_empty() {
        lines.push_str(&format!(
            "without tag {}, skipped: {}\n",
            args.tag.as_deref().unwrap_or_default(),
            crate::template::list_names(&skipped)
        ));
    }
    lines.push_str(&format!(
        "pulled {} prompt(s) into {}: {written} written, {} already up to date",
        files.len(),
        args.dir.display(),
        files.len() - written
    ));
    out(&lines);
    Ok(())
}

/// Writes a whole file or nothing: a temporary file beside it, renamed over it. The
/// temporary file has an unpredictable name and is created only if nothing is there (so a
/// link planted under that name is never followed), and a file in DIR that is a link is not
/// replaced: pulling writes into DIR, never through it.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    refuse_link(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.pull-{:016x}", fastrand::u64(..)));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
    let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = renamed {
        let _ = std::fs::remove_file(&temporary);
        return Err(write_error(path, e));
    }
    Ok(())
}

/// A file in DIR that is a symbolic link is not replaced (nor written through).
fn refuse_link(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::invalid(format!(
            "{} is a symbolic link; pull replaces files, not links",
            path.display()
        ))
        .with_hint("replace the link with the file itself, or pull into another folder"));
    }
    Ok(())
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::operational(format!("cannot write {}: {e}", path.display()))
        .with_hint("check that the folder is writable and the disk has room")
}
