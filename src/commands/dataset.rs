//! `runner dataset …`: dataset files made from what the store holds. `from-traces` writes the
//! template variables of a prompt's production spans as JSON Lines rows for `runner experiment
//! --dataset`. It turns the flags into a checked `FromTraces` before anything is read, reads the
//! spans and the annotations that score them through the store's trait (either backend), and
//! writes the file whole or not at all. Which spans are kept and what a row holds are
//! `trace_rows`'s rules; this file must not decide them, nor write to the store.

use super::settings::instant;
use super::{Context, check_prompt_name, out_json};
use crate::cli::{DatasetCommand, FromTracesArgs};
use crate::error::{Error, Result, exit};
use crate::model::VersionRef;
use crate::store::StoreError;
use crate::trace::{Annotation, SpanFilter, now_ms};
use crate::trace_rows::{Condition, Rows, Selection};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub fn run(command: DatasetCommand, ctx: &Context) -> Result<u8> {
    match command {
        DatasetCommand::FromTraces(args) => from_traces(&args, ctx),
        DatasetCommand::Push(args) => super::dataset_store::push(&args, ctx),
        DatasetCommand::List(args) => super::dataset_store::list(&args, ctx),
        DatasetCommand::Show(args) => super::dataset_store::show(&args, ctx),
        DatasetCommand::Pull(args) => super::dataset_store::pull(&args, ctx),
    }
}

/// `from-traces`, every flag checked.
#[derive(Debug, Clone, PartialEq)]
struct FromTraces {
    prompt: String,
    /// `--version` as the store resolves it.
    version: Option<VersionRef>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    errors_only: bool,
    selection: Selection,
    limit: Option<usize>,
    out: PathBuf,
}

impl FromTraces {
    fn new(args: &FromTracesArgs, now_ms: i64) -> Result<FromTraces> {
        check_prompt_name(&args.prompt)?;
        let since_ms = args
            .since
            .as_deref()
            .map(|t| instant("--since", t, now_ms))
            .transpose()?;
        let until_ms = args
            .until
            .as_deref()
            .map(|t| instant("--until", t, now_ms))
            .transpose()?;
        if let (Some(since), Some(until)) = (since_ms, until_ms)
            && since >= until
        {
            return Err(Error::invalid(format!(
                "--since {} is not before --until {}",
                args.since.as_deref().unwrap_or_default(),
                args.until.as_deref().unwrap_or_default()
            ))
            .with_hint("--since is the start of the time range, --until its end"));
        }
        let mut conditions = Vec::new();
        for text in &args.conditions {
            conditions.push(Condition::parse_score(text).map_err(|e| {
                Error::invalid(format!("--where {e}")).with_hint(
                    "for example --where 'score.correctness < 0.5' (the name of an annotation, \
                     then <, <=, >, >=, == or !=, then a number)",
                )
            })?);
        }
        for text in &args.labels {
            conditions.push(Condition::parse_label(text).map_err(|e| {
                Error::invalid(format!("--label {e}"))
                    .with_hint("for example --label thumbs=down (an annotation's name and label)")
            })?);
        }
        if args.limit == Some(0) {
            return Err(Error::invalid("--limit 0 would write no row")
                .with_hint("give --limit a number of rows from 1, or leave it out for all"));
        }
        check_out(&args.out)?;
        Ok(FromTraces {
            prompt: args.prompt.clone(),
            version: args.version.as_deref().map(version_reference),
            since_ms,
            until_ms,
            errors_only: args.status.as_deref() == Some("error"),
            selection: Selection { conditions },
            limit: args.limit,
            out: args.out.clone(),
        })
    }
}

/// A version as `--version` names it: `vN` is version N; anything else is a number, a tag or
/// a version id, tried in that order.
fn version_reference(text: &str) -> VersionRef {
    match text.strip_prefix(['v', 'V']).map(str::parse::<i64>) {
        Some(Ok(seq)) => VersionRef::Seq(seq),
        _ => VersionRef::Any(text.to_string()),
    }
}

/// The output path must be a file in an existing folder, named `.jsonl` so that `runner
/// experiment` reads it as JSON Lines.
fn check_out(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(
            Error::invalid(format!("--out {} is a directory", path.display())).with_hint(format!(
                "name a file in it, e.g. --out {}",
                path.join("failing.jsonl").display()
            )),
        );
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(extension.as_deref(), Some("jsonl" | "ndjson")) {
        return Err(Error::invalid(format!(
            "--out {}: the rows are JSON Lines, and runner reads a dataset's format from its \
             file name",
            path.display()
        ))
        .with_hint("name the file .jsonl, e.g. --out failing.jsonl"));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(Error::invalid(format!(
            "--out {}: there is no folder {}",
            path.display(),
            folder.display()
        ))
        .with_hint(format!("create it first: mkdir -p {}", folder.display())));
    }
    Ok(())
}

/// What `--json` prints.
#[derive(Debug, Serialize, PartialEq)]
struct Summary {
    rows: usize,
    skipped_no_variables: usize,
    out: String,
}

/// What the run found, for the line on stderr.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    /// Spans the filters kept, with variables or not.
    matched: usize,
    rows: usize,
    skipped_no_variables: usize,
    /// Rows `--limit` left out (the oldest).
    limited: usize,
    /// (variable, column) pairs written under another name.
    renamed: BTreeSet<(String, String)>,
}

fn from_traces(args: &FromTracesArgs, ctx: &Context) -> Result<u8> {
    let settings = FromTraces::new(args, now_ms())?;
    let store = ctx.store_for_reading()?;
    let version_ids = match &settings.version {
        Some(reference) => vec![store.version(&settings.prompt, reference)?.id],
        None => {
            store.prompt(&settings.prompt)?;
            Vec::new()
        }
    };
    let filter = SpanFilter {
        prompt: Some(settings.prompt.clone()),
        version_ids,
        since_ms: settings.since_ms,
        until_ms: settings.until_ms,
        experiments: false,
        errors_only: settings.errors_only,
        newest: None,
    };
    let mut scoring: HashMap<String, Vec<Annotation>> = HashMap::new();
    for scored in store.scored_spans(&filter)? {
        scoring
            .entry(scored.span_id)
            .or_default()
            .push(scored.annotation);
    }

    let mut file = AtomicFile::create(&settings.out)?;
    let mut counts = Counts::default();
    let mut rows = Rows::default();
    // With --limit only the newest rows are kept, and spans come oldest first.
    let mut newest: VecDeque<String> = VecDeque::new();
    let mut failed: Option<std::io::Error> = None;
    let visited = store.visit_spans(&filter, &mut |span| {
        let annotations = scoring.get(&span.span_id).map_or(&[][..], Vec::as_slice);
        if !settings.selection.keeps(annotations) {
            return Ok(());
        }
        counts.matched += 1;
        let Some(row) = rows.row(&span, annotations) else {
            counts.skipped_no_variables += 1;
            return Ok(());
        };
        counts.renamed.extend(row.renamed);
        counts.rows += 1;
        match settings.limit {
            Some(limit) => {
                if newest.len() == limit {
                    newest.pop_front();
                    counts.limited += 1;
                }
                newest.push_back(row.line);
            }
            None => {
                if let Err(e) = file.line(&row.line) {
                    failed = Some(e);
                    return Err(StoreError::Abandoned);
                }
            }
        }
        Ok(())
    });
    match visited {
        Err(StoreError::Abandoned) if failed.is_some() => {}
        other => other?,
    }
    if let Some(e) = failed {
        return Err(file.failed(e));
    }
    for line in &newest {
        file.line(line).map_err(|e| file.failed(e))?;
    }
    counts.rows -= counts.limited;
    file.commit()?;

    crate::note!("{}", summary_line(&settings, &counts));
    for (variable, column) in &counts.renamed {
        crate::note!(
            "note: the variable {variable} was written as the column {column} ({variable} is \
             one of runner's columns); `runner experiment --column {variable}={column}` gives \
             it to the template"
        );
    }
    if args.json {
        out_json(&Summary {
            rows: counts.rows,
            skipped_no_variables: counts.skipped_no_variables,
            out: settings.out.display().to_string(),
        })?;
    }
    Ok(exit::OK)
}

fn summary_line(settings: &FromTraces, counts: &Counts) -> String {
    let out = settings.out.display();
    if counts.matched == 0 {
        return format!(
            "wrote 0 rows to {out}: no span of {} matches (the file is empty)",
            settings.prompt
        );
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut line = format!(
        "wrote {} to {out} from {} of {}",
        plural(counts.rows, "row"),
        plural(counts.matched, "matching span"),
        settings.prompt
    );
    if counts.skipped_no_variables > 0 {
        line.push_str(&format!(
            "; skipped {}: no template variables",
            plural(counts.skipped_no_variables, "span")
        ));
    }
    if counts.limited > 0 {
        line.push_str(&format!(
            "; left out the {} oldest by --limit",
            counts.limited
        ));
    }
    line
}

/// A file written whole or not at all: lines go to a temporary file beside it, created only
/// where nothing is (so a link planted under its name is never followed), which `commit`
/// renames over the path. Dropped without a commit, the temporary file is removed.
struct AtomicFile {
    path: PathBuf,
    temporary: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    fn create(path: &Path) -> Result<AtomicFile> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = path.with_file_name(format!(".{name}.{:016x}.tmp", fastrand::u64(..)));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(|e| write_error(path, e))?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            temporary,
            writer: Some(BufWriter::new(file)),
        })
    }

    fn line(&mut self, line: &str) -> std::io::Result<()> {
        let writer = self.writer.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")
    }

    fn failed(&self, e: std::io::Error) -> Error {
        write_error(&self.path, e)
    }

    fn commit(mut self) -> Result<()> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let written = writer
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .and_then(|file| file.sync_all())
            .and_then(|()| std::fs::rename(&self.temporary, &self.path));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&self.temporary);
            write_error(&self.path, e)
        })
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed: the writer is still open.
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::operational(format!("cannot write {}: {e}", path.display()))
        .with_hint("check that the folder is writable and the disk has room")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::trace_rows::Op;
    use clap::Parser;

    const NOW: i64 = 1_780_000_000_000;

    fn args(argv: &[&str]) -> FromTracesArgs {
        let all = [&["runner", "dataset", "from-traces"], argv].concat();
        match Cli::try_parse_from(all).unwrap().command {
            Command::Dataset(DatasetCommand::FromTraces(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_checked_settings() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rows.jsonl");
        let out = out.to_str().unwrap();
        let settings = FromTraces::new(
            &args(&[
                "greet",
                "--version",
                "v3",
                "--since",
                "24h",
                "--until",
                "2026-05-29T00:00:00Z",
                "--where",
                "score.correctness < 0.5",
                "--label",
                "thumbs=down",
                "--status",
                "error",
                "--limit",
                "10",
                "--out",
                out,
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!(
            settings,
            FromTraces {
                prompt: "greet".into(),
                version: Some(VersionRef::Seq(3)),
                since_ms: Some(NOW - 86_400_000),
                until_ms: Some(1_780_012_800_000),
                errors_only: true,
                selection: Selection {
                    conditions: vec![
                        Condition::Score {
                            name: "correctness".into(),
                            op: Op::Lt,
                            value: 0.5
                        },
                        Condition::Label {
                            name: "thumbs".into(),
                            label: "down".into()
                        },
                    ]
                },
                limit: Some(10),
                out: out.into(),
            }
        );
        let bare = FromTraces::new(&args(&["greet", "--out", out]), NOW).unwrap();
        assert_eq!(
            (bare.version, bare.since_ms, bare.errors_only, bare.limit),
            (None, None, false, None)
        );
    }

    #[test]
    fn versions_take_a_number_vn_a_tag_or_an_id() {
        assert_eq!(version_reference("v12"), VersionRef::Seq(12));
        assert_eq!(version_reference("V2"), VersionRef::Seq(2));
        assert_eq!(version_reference("4"), VersionRef::Any("4".into()));
        assert_eq!(
            version_reference("production"),
            VersionRef::Any("production".into())
        );
        assert_eq!(version_reference("vNext"), VersionRef::Any("vNext".into()));
    }

    #[test]
    fn times_are_durations_back_from_now_or_rfc_3339() {
        let cases = [
            ("30m", Some(NOW - 1_800_000)),
            ("7d", Some(NOW - 7 * 86_400_000)),
            ("90", Some(NOW - 90_000)),
            ("2026-05-29T00:00:00Z", Some(1_780_012_800_000)),
            ("2026-05-29T02:00:00.5+02:00", Some(1_780_012_800_500)),
            ("yesterday", None),
            ("24 hours", None),
            ("2026-05-29", None),
            ("-1h", None),
        ];
        for (text, want) in cases {
            let got = instant("--since", text, NOW);
            assert_eq!(got.as_ref().ok().copied(), want, "{text}");
            if let Err(e) = got {
                assert!(e.to_string().contains(text), "{e}");
                assert_eq!(e.exit_code(), exit::INVALID);
                assert!(e.hint().unwrap().contains("24h"));
            }
        }
        // A duration too long for the clock starts at the beginning of time.
        assert!(instant("--since", "9999999999999999999", NOW).unwrap() < 0);
    }

    #[test]
    fn bad_flags_are_refused_with_a_hint_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rows.jsonl");
        let out = out.to_str().unwrap();
        let folder = dir.path().to_str().unwrap();
        let missing = dir.path().join("nope/rows.jsonl");
        let cases: [(Vec<&str>, &str); 8] = [
            (vec!["greet", "--where", "correctness<0.5"], "--where"),
            (vec!["greet", "--where", "score.x = 1"], "operator"),
            (vec!["greet", "--label", "thumbs"], "--label"),
            (
                vec!["greet", "--since", "1h", "--until", "2h"],
                "not before",
            ),
            (vec!["greet", "--limit", "0"], "--limit 0"),
            (vec!["bad name!"], "invalid prompt name"),
            (vec!["greet", "--out", folder], "is a directory"),
            (vec!["greet", "--out", "rows.csv"], "JSON Lines"),
        ];
        for (argv, says) in cases {
            let mut argv = argv;
            if !argv.contains(&"--out") {
                argv.extend(["--out", out]);
            }
            let e = FromTraces::new(&args(&argv), NOW).unwrap_err();
            assert!(e.to_string().contains(says), "{argv:?}: {e}");
            assert_eq!(e.exit_code(), exit::INVALID, "{argv:?}");
            assert!(e.hint().is_some(), "{argv:?}");
        }
        let e = FromTraces::new(&args(&["greet", "--out", missing.to_str().unwrap()]), NOW)
            .unwrap_err();
        assert!(e.to_string().contains("there is no folder"), "{e}");
        assert!(e.hint().unwrap().contains("mkdir -p"));
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn an_atomic_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.line("{\"a\":1}").unwrap();
        drop(file);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no leftover"
        );
        let mut file = AtomicFile::create(&path).unwrap();
        file.line("{\"a\":1}").unwrap();
        file.line("{\"a\":2}").unwrap();
        file.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_summary_says_what_was_written_and_skipped() {
        let settings = FromTraces {
            prompt: "greet".into(),
            version: None,
            since_ms: None,
            until_ms: None,
            errors_only: false,
            selection: Selection::default(),
            limit: None,
            out: "failing.jsonl".into(),
        };
        let cases = [
            (
                Counts::default(),
                "wrote 0 rows to failing.jsonl: no span of greet matches (the file is empty)",
            ),
            (
                Counts {
                    matched: 1,
                    rows: 1,
                    ..Counts::default()
                },
                "wrote 1 row to failing.jsonl from 1 matching span of greet",
            ),
            (
                Counts {
                    matched: 5,
                    rows: 2,
                    skipped_no_variables: 1,
                    limited: 2,
                    ..Counts::default()
                },
                "wrote 2 rows to failing.jsonl from 5 matching spans of greet; skipped 1 span: \
                 no template variables; left out the 2 oldest by --limit",
            ),
            (
                Counts {
                    matched: 2,
                    rows: 0,
                    skipped_no_variables: 2,
                    ..Counts::default()
                },
                "wrote 0 rows to failing.jsonl from 2 matching spans of greet; skipped 2 spans: \
                 no template variables",
            ),
        ];
        for (counts, want) in cases {
            assert_eq!(summary_line(&settings, &counts), want);
        }
    }
}
