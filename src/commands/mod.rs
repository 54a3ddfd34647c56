//! Command glue: hand parsed arguments to `workflow::settings`, which turns them into each
//! workflow's settings, call the workflow with them, and hand the results to `report`. It holds no
//! rule of its own: checks and decisions live in the workflows and the store, and this file only
//! chooses the command, writes output (`out`, `out_json`) and maps how it ended to an exit code.

pub mod cli;

mod canary;
mod compare;
mod dataset;
mod dataset_store;
mod demo;
mod experiment;
mod judge;
mod mock;
mod plan;
mod production;
mod promote;
mod prompt;
mod serve;
pub mod settings;
mod store;
mod sync;
mod tag;
mod token;
mod transfer;
mod try_version;
mod worker;

use crate::cli::{Cli, Command, VersionSelector};
use crate::error::{Error, Result, exit};
use crate::gate::Verdict;
use crate::model::{Experiment, VersionRef};
use std::io::Write;

pub use crate::input::{
    apply_assignments, check_prompt_name, check_tag_name, parse_value, rate, read_structured,
    read_text, split_assignment,
};
pub use crate::workflow::Context;

/// Runs one command and returns its exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let author = cli
        .author
        .filter(|a| !a.trim().is_empty())
        .or_else(default_author)
        .unwrap_or_else(|| "unknown".into());
    crate::report::colour::choose(cli.color);
    // Against a runner server, the token names who writes; the author follows it.
    crate::store::remote::credentials::set_actor(&author);
    let ctx = Context::new(cli.db, author, cli.config);
    crate::report::fit_tables_to(crate::report::terminal_width());
    match cli.command {
        Command::Prompt(command) => prompt::run(command, &ctx).map(|_| exit::OK),
        Command::Tag(command) => tag::run(command, &ctx).map(|_| exit::OK),
        Command::Rollback(args) => tag::rollback(args, &ctx).map(|_| exit::OK),
        Command::Export(args) => transfer::export(args, &ctx).map(|_| exit::OK),
        Command::Import(args) => transfer::import(args, &ctx).map(|_| exit::OK),
        Command::Sync(args) => sync::sync(args, &ctx),
        Command::Pull(args) => sync::pull(args, &ctx).map(|_| exit::OK),
        Command::Migrate => {
            let store = ctx.store()?;
            out(&format!(
                "store {} is at schema version {}",
                store.location(),
                store.schema_version()?
            ));
            Ok(exit::OK)
        }
        Command::Experiment(args) => experiment::run(args, &ctx),
        Command::Worker(args) => worker::run(args, &ctx),
        Command::Compare(args) => compare::compare(args, &ctx),
        Command::Promote(args) => promote::promote(args, &ctx),
        Command::Demo(args) => demo::run(args, &ctx),
        Command::MockServer(args) => mock::run(args),
        Command::Serve(args) => serve::run(args, &ctx),
        Command::Store(command) => store::run(command).map(|_| exit::OK),
        Command::Try(args) => try_version::run(args, &ctx),
        Command::Production(args) => production::run(args, &ctx),
        Command::Canary(command) => canary::run(command, &ctx),
        Command::Dataset(command) => dataset::run(command, &ctx),
        Command::Judge(command) => judge::run(command, &ctx),
        Command::Token(command) => token::run(command, &ctx).map(|_| exit::OK),
        Command::Login(args) => token::login(args).map(|_| exit::OK),
        Command::Logout(args) => token::logout(args).map(|_| exit::OK),
        Command::Whoami(args) => token::whoami(args, &ctx).map(|_| exit::OK),
    }
}

/// An experiment as a command names it: `last` is the newest (ids start with `exp_`, so no id
/// is spelled so); anything else is left to the store's lookup (id, name, start of an id).
fn experiment_named(store: &dyn crate::store::Store, name: &str) -> Result<String> {
    if name != "last" {
        return Ok(name.to_string());
    }
    match store.experiments(None)?.into_iter().next() {
        Some(newest) => Ok(newest.id),
        None => Err(Error::invalid("there is no experiment yet")
            .with_hint("run one: runner experiment --prompt NAME --dataset FILE")),
    }
}

/// Who acts when `--author` does not say: `$USER`, else git's `user.name`, else the login
/// name (`$LOGNAME`, then the account of this process).
fn default_author() -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    env("USER")
        .or_else(|| {
            let out = std::process::Command::new("git")
                .args(["config", "user.name"])
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (out.status.success() && !name.is_empty()).then_some(name)
        })
        .or_else(|| env("LOGNAME"))
        .or_else(account_name)
}

/// The name of this process's account, from /etc/passwd.
fn account_name() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_string())
    })
}

/// Writes to stdout. A closed pipe (`runner … | head`) ends output quietly; any other failure
/// to write (a full disk, `> /dev/full`) is an operational failure: exit 3, never a silent 0.
pub fn out(text: &str) {
    write_out(&crate::report::colour::stdout_text(text));
}

/// Writes text as it is (JSON is never painted).
fn write_out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let mut written = stdout.write_all(text.as_bytes());
    if written.is_ok() && !text.ends_with('\n') {
        written = stdout.write_all(b"\n");
    }
    fail_unless_written(written.and_then(|()| stdout.flush()));
}

/// Stops the process with exit 3 when output could not be written (a closed pipe aside).
pub fn fail_unless_written(written: std::io::Result<()>) {
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            crate::note!("error: cannot write the output: {e}");
            crate::note!("hint: check the disk or file that stdout goes to");
            std::process::exit(i32::from(exit::OPERATIONAL));
        }
        _ => {}
    }
}

/// Prints a value as pretty JSON.
pub fn out_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::operational(format!("cannot encode JSON: {e}")))?;
    write_out(&text);
    Ok(())
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

/// The exit code of a finished run with its own check: a failed check (said on stderr, with
/// the fix) turns a success into exit 1.
pub fn checked(code: u8, check: &[crate::gate::Criterion], experiment: &Experiment) -> u8 {
    if code != exit::OK || check.iter().all(|c| c.passed) {
        return code;
    }
    for c in check.iter().filter(|c| !c.passed) {
        crate::note!(
            "check failed: {} is {}, needs {}",
            c.name,
            c.actual_text(),
            c.threshold_text()
        );
    }
    if check
        .iter()
        .any(|c| !c.passed && c.name == crate::gate::MAX_ERROR_RATE)
    {
        crate::note!(
            "hint: `runner experiment show {} --errored` lists the errored rows; \
             `runner experiment resume {}` runs them again; --max-error-rate R (or \
             `max_error_rate` under [thresholds] in runner.toml) allows a share of them",
            experiment.id,
            experiment.id
        );
    }
    exit::CHECK_FAILED
}

/// The confidence level of the intervals: the flag, else runner.toml's, else 0.95.
pub fn confidence(flag: Option<f64>, ctx: &Context) -> Result<f64> {
    crate::input::confidence(flag, ctx.config()?.confidence)
}

/// Resolves on Ctrl-C, or on SIGTERM where there is one (a cancelled CI job).
pub async fn interrupted() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The gate's power warnings and notes on stderr, for people watching a run whose report on
/// stdout is JSON: text and Markdown reports carry them already, once.
pub fn notes_on_stderr(verdict: &Verdict) {
    for w in &verdict.warnings {
        crate::note!("warning: {}", w.message);
    }
    for n in &verdict.notes {
        crate::note!("note: {n}");
    }
}

pub fn verdict_code(verdict: &Verdict) -> u8 {
    if verdict.passed {
        exit::OK
    } else {
        exit::CHECK_FAILED
    }
}
