//! `runner dataset push|list|show|pull`: datasets kept in the store. Each reads its flags, hands
//! the work to `workflow::datasets` or the store, and prints; what a version is and how it is
//! stored are theirs.

use super::{Context, out, out_json};
use crate::cli::{DatasetListArgs, DatasetPullArgs, DatasetPushArgs, DatasetShowArgs};
use crate::error::{Error, Result, exit};
use crate::model::DatasetVersion;
use crate::workflow::datasets;
use std::fmt::Write as _;

fn line(v: &DatasetVersion) -> String {
    format!(
        "{}@{}  {} rows, {} ({}), sha256 {}, {} by {}{}",
        v.dataset,
        v.seq,
        v.rows,
        v.format,
        v.columns.join(", "),
        &v.hash[..12.min(v.hash.len())],
        v.created_at,
        v.created_by,
        v.message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    )
}

pub fn push(args: &DatasetPushArgs, ctx: &Context) -> Result<u8> {
    datasets::check_name(&args.name)?;
    let store = ctx.store()?;
    let (version, added) = datasets::push(
        &*store,
        &args.file,
        &args.name,
        args.message.as_deref(),
        &ctx.author,
    )?;
    if args.json {
        out_json(&serde_json::json!({"version": version, "added": added}))?;
    } else if added {
        out(&format!(
            "pushed {} as {}@{} ({} rows); use it with --dataset store:{}@{}",
            args.file.display(),
            version.dataset,
            version.seq,
            version.rows,
            version.dataset,
            version.seq
        ));
    } else {
        out(&format!(
            "{}@{} already holds these bytes; nothing was added",
            version.dataset, version.seq
        ));
    }
    Ok(exit::OK)
}

pub fn list(args: &DatasetListArgs, ctx: &Context) -> Result<u8> {
    let store = ctx.store_for_reading()?;
    let latest = store.datasets()?;
    if args.json {
        out_json(&latest)?;
    } else if latest.is_empty() {
        out("no datasets in the store; `runner dataset push FILE --name NAME` adds one");
    } else {
        out(&latest.iter().map(line).collect::<Vec<_>>().join("\n"));
    }
    Ok(exit::OK)
}

pub fn show(args: &DatasetShowArgs, ctx: &Context) -> Result<u8> {
    let (name, seq) = datasets::name_and_version(&args.dataset)?;
    let store = ctx.store_for_reading()?;
    let Some(seq) = seq else {
        let versions = store.dataset_versions(&name)?;
        if args.json {
            out_json(&versions)?;
        } else {
            out(&versions.iter().map(line).collect::<Vec<_>>().join("\n"));
        }
        return Ok(exit::OK);
    };
    let (version, path, _) = datasets::materialize(&*store, &name, Some(seq))?;
    let mut rows = Vec::new();
    for row in crate::dataset::rows(&path)
        .map_err(|e| Error::invalid(e.to_string()))?
        .take(args.rows)
    {
        let row = row.map_err(|e| Error::invalid(e.to_string()))?;
        rows.push(serde_json::json!({"id": row.id, "values": row.values}));
    }
    if args.json {
        out_json(&serde_json::json!({"version": version, "rows": rows}))?;
    } else {
        let mut text = line(&version);
        for row in &rows {
            let _ = write!(
                text,
                "\n  {}  {}",
                row["id"].as_str().unwrap_or(""),
                row["values"]
            );
        }
        out(&text);
    }
    Ok(exit::OK)
}

pub fn pull(args: &DatasetPullArgs, ctx: &Context) -> Result<u8> {
    let (name, seq) = datasets::name_and_version(&args.dataset)?;
    let store = ctx.store_for_reading()?;
    let (version, content) = store.dataset_content(&name, seq)?;
    datasets::check_stored(&version, &content)?;
    let extension = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let matches = match version.format.as_str() {
        "jsonl" => matches!(extension.as_deref(), Some("jsonl" | "ndjson")),
        format => extension.as_deref() == Some(format),
    };
    if !matches {
        return Err(Error::invalid(format!(
            "--out {}: {}@{} is {}, and runner reads a dataset's format from its extension",
            args.out.display(),
            version.dataset,
            version.seq,
            version.format
        ))
        .with_hint(format!("name the file .{}", version.format)));
    }
    if args.out.is_dir() {
        return Err(
            Error::invalid(format!("--out {} is a directory", args.out.display()))
                .with_hint("name a file in it, e.g. --out DIR/queries.csv"),
        );
    }
    if args.out.exists() && !args.force {
        return Err(
            Error::invalid(format!("--out {} exists", args.out.display()))
                .with_hint("add --force to replace it"),
        );
    }
    let temporary = args.out.with_file_name(format!(
        ".{}.{:016x}.tmp",
        args.out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        fastrand::u64(..)
    ));
    std::fs::write(&temporary, content.as_bytes())
        .and_then(|()| std::fs::rename(&temporary, &args.out))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            Error::operational(format!("cannot write {}: {e}", args.out.display()))
                .with_hint("check that the folder exists and is writable")
        })?;
    out(&format!(
        "wrote {}@{} ({} rows, sha256 {}) to {}",
        version.dataset,
        version.seq,
        version.rows,
        &version.hash[..12.min(version.hash.len())],
        args.out.display()
    ));
    Ok(exit::OK)
}
