//! Datasets in the store: pushing a file (checked as any dataset is, then kept byte for byte, so
//! an experiment over the pushed version records the same hash as one over the file), naming
//! a version (`store:NAME`, `store:NAME@3`), and materializing a version as a file the row
//! engine reads, in a cache folder keyed by the content's hash. It must not print.

use crate::dataset::{self, DatasetFormat};
use crate::error::{Error, Result};
use crate::model::DatasetVersion;
use crate::store::{NewDatasetVersion, Store};
use std::path::{Path, PathBuf};

/// How `--dataset` names a dataset in the store.
pub const PREFIX: &str = "store:";
/// The largest file `push` stores.
pub const MAX_BYTES: u64 = 100 << 20;

/// `store:NAME` or `store:NAME@V` (`V` a number, or `vN`), if `text` names the store.
pub fn reference(text: &str) -> Option<Result<(String, Option<i64>)>> {
    text.strip_prefix(PREFIX).map(name_and_version)
}

/// `NAME` or `NAME@V` (`V` a number, or `vN`), checked.
pub fn name_and_version(text: &str) -> Result<(String, Option<i64>)> {
    let (name, version) = match text.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (text, None),
    };
    check_name(name)?;
    let seq = version
        .map(|v| {
            v.trim_start_matches('v')
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    Error::invalid(format!("'{text}': the version is a number from 1"))
                        .with_hint(format!("for example {PREFIX}{name}@2"))
                })
        })
        .transpose()?;
    Ok((name.to_string(), seq))
}

/// A dataset's name: what a prompt's name may be.
pub fn check_name(name: &str) -> Result<()> {
    crate::model::check_name(crate::model::NameKind::Prompt, name).map_err(|reason| {
        Error::invalid(format!("invalid dataset name '{name}': {reason}"))
            .with_hint("letters, digits, '_', '-' and '.', e.g. support_queries")
    })
}

/// Pushes a dataset file as `name`'s next version (nothing when its latest version holds the
/// same bytes). The file is checked as `runner experiment` checks one, before anything is
/// written.
pub fn push(
    store: &dyn Store,
    path: &Path,
    name: &str,
    message: Option<&str>,
    author: &str,
) -> Result<(DatasetVersion, bool)> {
    check_name(name)?;
    let hint =
        "a dataset is a .csv file with a header row, or a .jsonl file with one object a line";
    let size = std::fs::metadata(path)
        .map_err(|e| {
            Error::invalid(format!("cannot read {}: {e}", path.display())).with_hint(hint)
        })?
        .len();
    if size > MAX_BYTES {
        return Err(Error::invalid(format!(
            "{} is {} MiB; the store keeps datasets up to {} MiB",
            path.display(),
            size >> 20,
            MAX_BYTES >> 20
        ))
        .with_hint("split it, or keep it as a file and pass --dataset FILE"));
    }
    let info = dataset::scan(path).map_err(|e| Error::invalid(e.to_string()).with_hint(hint))?;
    let bytes = std::fs::read(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    let content = String::from_utf8(bytes).map_err(|_| {
        Error::invalid(format!("{} is not UTF-8 text", path.display()))
            .with_hint("save the file as UTF-8")
    })?;
    if content.contains('\0') {
        return Err(
            Error::invalid(format!("{} holds a NUL byte", path.display()))
                .with_hint("a dataset is text: remove the NUL bytes"),
        );
    }
    // The bytes stored are the bytes scanned: a file changed in between is refused.
    if crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes())) != info.hash {
        return Err(
            Error::operational(format!("{} changed while it was read", path.display()))
                .with_hint("push it again once nothing writes to it"),
        );
    }
    let version = NewDatasetVersion {
        format: format_name(info.format).to_string(),
        content,
        hash: info.hash,
        rows: info.rows as i64,
        columns: info.columns,
        message: message.map(str::to_string),
        author: author.to_string(),
        created_at: None,
        shape: "rows".into(),
        description: None,
        metadata: None,
        id: None,
        dataset_id: None,
    };
    Ok(store.push_dataset(name, &version)?)
}

fn format_name(format: DatasetFormat) -> &'static str {
    match format {
        DatasetFormat::Csv => "csv",
        DatasetFormat::Jsonl => "jsonl",
    }
}

/// The folder versions are materialized in: the user's own cache (`$XDG_CACHE_HOME/runner/
/// datasets`, else `~/.cache/runner/datasets`), one file per content hash; a version never
/// changes, so a file there is reused while its bytes hash right. Without a home, a folder of
/// this process's own in the temporary folder.
fn cache_dir() -> PathBuf {
    let home = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        });
    match home {
        Some(cache) => cache.join("runner").join("datasets"),
        None => std::env::temp_dir().join(format!("runner-datasets-{}", std::process::id())),
    }
}

/// Creates the cache folder private to this user (0700) and checks it is a real folder that
/// nobody else can write: a folder another account prepared could swap a file after its hash
/// was checked.
fn private_dir() -> Result<PathBuf> {
    let dir = cache_dir();
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| cache_error(&dir, e))?;
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| cache_error(&dir, e))?;
        // SAFETY: geteuid(2) reads this process's effective user id; it cannot fail.
        let owner = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != owner || meta.permissions().mode() & 0o022 != 0 {
            return Err(Error::operational(format!(
                "{} is not a private folder of this user (a link, another owner, or writable by others)",
                dir.display()
            ))
            .with_hint("remove it; runner creates it again, private"));
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(&dir).map_err(|e| cache_error(&dir, e))?;
    Ok(dir)
}

/// Writes `content` as the cache file of `version` (unless one with the same bytes is there)
/// and returns its path. What the store says is checked first: a hash that is not one (it
/// names the file) or content that does not hash to it is refused.
fn cache_file(version: &DatasetVersion, content: &str) -> Result<PathBuf> {
    check_stored(version, content)?;
    let dir = private_dir()?;
    let path = dir.join(format!("{}.{}", version.hash, version.format));
    if dataset::file_hash(&path).is_ok_and(|hash| hash == version.hash) {
        return Ok(path);
    }
    let temporary = dir.join(format!(".{}.{:016x}.tmp", version.hash, fastrand::u64(..)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&temporary)
        .and_then(|mut file| std::io::Write::write_all(&mut file, content.as_bytes()))
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            cache_error(&path, e)
        })?;
    Ok(path)
}

/// A stored version as the store gave it: its hash 64 lower-case hex digits, its format csv or
/// jsonl, and its content hashing to that hash (a store anyone could write is not trusted).
pub fn check_stored(version: &DatasetVersion, content: &str) -> Result<()> {
    let hex = version.hash.len() == 64
        && version
            .hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let known = matches!(version.format.as_str(), "csv" | "jsonl");
    let digest = crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes()));
    if hex && known && digest == version.hash {
        return Ok(());
    }
    Err(Error::operational(format!(
        "the store's copy of {}@{} is damaged: its recorded hash or format does not match its content",
        version.dataset, version.seq
    ))
    .with_hint("push the file again as a new version"))
}

fn cache_error(path: &Path, e: std::io::Error) -> Error {
    Error::operational(format!("cannot write {}: {e}", path.display())).with_hint(
        "the store's datasets are read from files in your cache folder (XDG_CACHE_HOME or ~/.cache)",
    )
}

/// A version of a dataset in the store as a file to read, and the label experiments record
/// (`store:NAME@V`).
pub fn materialize(
    store: &dyn Store,
    name: &str,
    seq: Option<i64>,
) -> Result<(DatasetVersion, PathBuf, String)> {
    let (version, content) = store.dataset_content(name, seq)?;
    let path = cache_file(&version, &content)?;
    let label = format!("{PREFIX}{}@{}", version.dataset, version.seq);
    Ok((version, path, label))
}

/// The file an experiment's recorded dataset is read from: `store:NAME@V` materialized, a file
/// as it is; a file that is gone comes back from the store when a pushed version holds the
/// bytes the experiment recorded.
pub fn recorded(store: &dyn Store, recorded_path: &str, hash: &str) -> Result<PathBuf> {
    if let Some(parsed) = reference(recorded_path) {
        let (name, seq) = parsed?;
        let (version, content) = store.dataset_content(&name, seq)?;
        if version.hash == hash {
            return cache_file(&version, &content);
        }
        // Not the bytes the experiment recorded: a version that holds them, or a refusal.
        return match store.dataset_by_hash(hash)? {
            Some((version, content)) => cache_file(&version, &content),
            None => Err(Error::invalid(format!(
                "{recorded_path} no longer holds the rows the experiment recorded (sha256 {hash})"
            ))
            .with_hint("start a new experiment on the dataset as it is now")),
        };
    }
    let path = PathBuf::from(recorded_path);
    if !path.exists()
        && let Some((version, content)) = store.dataset_by_hash(hash)?
    {
        return cache_file(&version, &content);
    }
    Ok(path)
}
