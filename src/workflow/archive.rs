//! The archive: prompts as reviewable files, and back, losslessly. It reads and writes only the
//! folder: it never opens the store (callers read and import `PromptArchive`s through the store
//! traits) and prints nothing.
//!
//! Layout, one folder per prompt:
//!
//! ```text
//! DIR/NAME/prompt.json              name, created_at
//! DIR/NAME/versions/0001/version.json   every field but the template
//! DIR/NAME/versions/0001/template.txt   a string template, byte for byte
//! DIR/NAME/versions/0001/messages.json  or a chat template
//! DIR/NAME/tags.json                tag → version
//! DIR/NAME/history.jsonl            the tag history, one event a line, oldest first
//! ```

use crate::error::{Error, Result};
use crate::input::{check_prompt_name, check_tag_name};
use crate::model::{
    JsonObject, Message, PromptArchive, PromptEvent, PromptVersion, Tag, TagAction, TagEvent,
    Template, TemplateFormat, TemplateType, content_hash,
};
use crate::store::{TagPolicy, TagRole};
use crate::template::CompiledTemplate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct PromptFile {
    name: String,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    metadata: JsonObject,
    /// Set when the prompt is archived (hidden from lists and lookups until restored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archived_at: Option<String>,
    /// The prompt's own history: updates, archive, restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    events: Vec<PromptEventFile>,
}

#[derive(Serialize, Deserialize)]
struct PromptEventFile {
    action: String,
    actor: String,
    at: String,
    /// An archive that took a protected tag offline with force, or with the deploy role.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    forced: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deploy: bool,
}

#[derive(Serialize, Deserialize)]
struct VersionFile {
    id: String,
    seq: i64,
    template_type: TemplateType,
    format: TemplateFormat,
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    params: JsonObject,
    metadata: JsonObject,
    description: Option<String>,
    message: Option<String>,
    author: String,
    content_hash: String,
    created_at: String,
}

#[derive(Serialize, Deserialize)]
struct TagFile {
    version: i64,
    version_id: String,
    updated_at: String,
    updated_by: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct EventFile {
    tag: String,
    action: TagAction,
    from_version_id: Option<String>,
    to_version_id: Option<String>,
    actor: String,
    message: Option<String>,
    at: String,
    forced: bool,
    /// Moved by a deploy token without force. Written only when true, so the lines (and
    /// hashes) of exports made before the role existed stay as they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deploy: bool,
    evidence: Option<serde_json::Value>,
    /// sha256 over the previous line's hash and this event (see `chain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
}

/// The marker an export leaves in its folder: a later export may replace a folder holding
/// it, and only such a folder (or a missing or empty one).
const MARKER: &str = "runner-export.json";

/// Each history line carries `hash = sha256(previous hash, "\n", the event as JSON without its
/// hash)`, the first line chaining from "". An edit, insertion, removal or reordering of any
/// line that does not also recompute every later hash is refused on import. It is a check of
/// integrity, not a signature: whoever can edit the files can recompute the chain, which is why
/// import also replays the history under the tag policy and requires it to end where tags.json
/// says, and why a reviewer reads history.jsonl's diff.
fn chain(previous: &str, event: &EventFile) -> String {
    use sha2::{Digest, Sha256};
    let bare = EventFile {
        hash: None,
        ..event.clone()
    };
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(b"\n");
    hasher.update(serde_json::to_string(&bare).unwrap_or_default().as_bytes());
    crate::model::hex(&hasher.finalize())
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::operational(format!("cannot write {}: {e}", path.display()))
        .with_hint("check that the folder is writable")
}

/// Creates a new file (never through an existing file or link) and writes it.
fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| write_error(path, e))?;
    file.write_all(contents).map_err(|e| write_error(path, e))
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir(path).map_err(|e| write_error(path, e))
}

/// The one folder name a prompt's files go under: the name must be a single plain path
/// component, so nothing can be written outside the export folder.
fn folder_name(name: &str) -> Result<&str> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(std::path::Component::Normal(part)), None) if part == name => Ok(name),
        _ => Err(Error::invalid(format!(
            "prompt name '{name}' cannot name a folder inside the export"
        ))),
    }
}

/// Checks that `dir` may receive an export: missing, empty, or an earlier export, and not a
/// symbolic link.
fn check_destination(dir: &Path) -> Result<bool> {
    let refuse = |why: &str| {
        Error::invalid(format!("cannot export into {}: {why}", dir.display()))
            .with_hint("export into a new or empty folder, or one an earlier `runner export` wrote")
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(refuse(&e.to_string())),
        Ok(meta) if meta.file_type().is_symlink() => Err(refuse("it is a symbolic link")),
        Ok(meta) if !meta.is_dir() => Err(refuse("it is not a folder")),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(|e| refuse(&e.to_string()))?;
            if entries.next().is_none() {
                return Ok(true);
            }
            let marker = std::fs::symlink_metadata(dir.join(MARKER));
            if marker.is_ok_and(|m| m.is_file()) {
                Ok(true)
            } else {
                Err(refuse("it holds files an export did not write"))
            }
        }
    }
}

fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

/// Writes every archive into `dir`, one folder per prompt. The export is written whole into a
/// new folder beside `dir`, then put in its place: a reader never sees half an export, no file
/// of an earlier export survives into the new one, and nothing is written through a link.
pub fn write(dir: &Path, archives: &[PromptArchive]) -> Result<()> {
    for archive in archives {
        folder_name(&archive.name)?;
    }
    let replace = check_destination(dir)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let unique = format!("{}-{}", std::process::id(), fastrand::u64(..));
    let staging = parent.join(format!(".{base}.export-{unique}"));
    create_dir(&staging)?;
    let written = (|| -> Result<()> {
        for archive in archives {
            write_archive(&staging, archive)?;
        }
        write_file(
            &staging.join(MARKER),
            &pretty(&serde_json::json!({"format": "runner-export", "version": 1})),
        )
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let moved = if replace {
        let old = parent.join(format!(".{base}.replaced-{unique}"));
        std::fs::rename(dir, &old)
            .and_then(|()| std::fs::rename(&staging, dir))
            .map(|()| {
                let _ = std::fs::remove_dir_all(&old);
            })
    } else {
        std::fs::rename(&staging, dir)
    };
    moved.map_err(|e| {
        let _ = std::fs::remove_dir_all(&staging);
        write_error(dir, e)
    })
}

fn write_archive(dir: &Path, archive: &PromptArchive) -> Result<()> {
    let root = dir.join(folder_name(&archive.name)?);
    let versions_dir = root.join("versions");
    create_dir(&root)?;
    create_dir(&versions_dir)?;
    write_file(
        &root.join("prompt.json"),
        &pretty(&PromptFile {
            name: archive.name.clone(),
            created_at: archive.created_at.clone(),
            description: archive.description.clone(),
            metadata: archive.metadata.clone(),
            archived_at: archive.archived_at.clone(),
            events: archive
                .events
                .iter()
                .map(|e| PromptEventFile {
                    action: e.action.clone(),
                    actor: e.actor.clone(),
                    at: e.at.clone(),
                    forced: e.forced,
                    deploy: e.deploy,
                })
                .collect(),
        }),
    )?;
    for v in &archive.versions {
        let folder = versions_dir.join(format!("{:04}", v.seq));
        create_dir(&folder)?;
        write_file(
            &folder.join("version.json"),
            &pretty(&VersionFile {
                id: v.id.clone(),
                seq: v.seq,
                template_type: v.template_type,
                format: v.format,
                model: v.model.clone(),
                provider: v.provider.clone(),
                params: v.params.clone(),
                metadata: v.metadata.clone(),
                description: v.description.clone(),
                message: v.message.clone(),
                author: v.author.clone(),
                content_hash: v.content_hash.clone(),
                created_at: v.created_at.clone(),
            }),
        )?;
        match &v.template {
            Template::Str(text) => write_file(&folder.join("template.txt"), text.as_bytes())?,
            Template::Chat(messages) => {
                write_file(&folder.join("messages.json"), &pretty(messages))?
            }
        }
    }
    let tags: BTreeMap<&str, TagFile> = archive
        .tags
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                TagFile {
                    version: t.version_seq,
                    version_id: t.version_id.clone(),
                    updated_at: t.updated_at.clone(),
                    updated_by: t.updated_by.clone(),
                },
            )
        })
        .collect();
    write_file(&root.join("tags.json"), &pretty(&tags))?;
    let mut history = String::new();
    let mut previous = String::new();
    for e in &archive.history {
        let mut event = EventFile {
            tag: e.tag.clone(),
            action: e.action,
            from_version_id: e.from_version_id.clone(),
            to_version_id: e.to_version_id.clone(),
            actor: e.actor.clone(),
            message: e.message.clone(),
            at: e.at.clone(),
            forced: e.forced,
            deploy: e.deploy,
            evidence: e.evidence.clone(),
            hash: None,
        };
        let hash = chain(&previous, &event);
        event.hash = Some(hash.clone());
        previous = hash;
        let line = serde_json::to_string(&event).unwrap_or_default();
        history.push_str(&line);
        history.push('\n');
    }
    write_file(&root.join("history.jsonl"), history.as_bytes())
}

/// Reads every prompt folder in `dir` and checks it whole (hashes, numbering, tags, history)
/// before anything is returned.
pub fn read(dir: &Path, policy: &TagPolicy) -> Result<Vec<PromptArchive>> {
    refuse_link(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::invalid(format!("cannot read folder {}: {e}", dir.display()))
            .with_hint("pass a folder written by `runner export`")
    })?;
    let mut folders: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("prompt.json").is_file())
        .collect();
    folders.sort();
    if folders.is_empty() {
        return Err(Error::invalid(format!(
            "{} holds no exported prompt (no NAME/prompt.json inside)",
            dir.display()
        ))
        .with_hint("pass a folder written by `runner export`"));
    }
    folders
        .iter()
        .map(|folder| {
            refuse_link(folder)?;
            read_archive(folder, policy)
        })
        .collect()
}

/// An export is plain folders and files: a symbolic link anywhere in it is refused, so import
/// reads nothing from outside the folder it was given.
fn refuse_link(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::invalid(format!(
            "{} is a symbolic link; an export holds plain files only",
            path.display()
        ))
        .with_hint("import the folder `runner export` wrote, not links to it")),
        _ => Ok(()),
    }
}

/// Reads a whole text file that is a plain file, not a link.
fn read_plain(path: &Path) -> Result<String> {
    refuse_link(path)?;
    std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))
}

fn check_time(what: &str, at: &str) -> std::result::Result<(), String> {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map(|_| ())
        .map_err(|_| format!("{what} '{at}' is not an RFC 3339 time"))
}

fn check_actor(what: &str, actor: &str) -> std::result::Result<(), String> {
    if actor.trim().is_empty() || actor.chars().count() > 256 || actor.chars().any(char::is_control)
    {
        return Err(format!(
            "{what} must be 1 to 256 characters without control characters"
        ));
    }
    Ok(())
}

/// Replays the tag history from nothing: every event must start where the previous one left
/// its tag, obey the tag policy (a protected tag displaced only by a promotion with its
/// evidence, or by a change recorded as forced), and the replay must end exactly at tags.json.
fn replay(
    prompt: &str,
    history: &[TagEvent],
    tags: &[Tag],
    policy: &TagPolicy,
) -> std::result::Result<(), String> {
    let mut state: BTreeMap<&str, &str> = BTreeMap::new();
    for (index, e) in history.iter().enumerate() {
        let line = index + 1;
        let current = state.get(e.tag.as_str()).copied();
        if current != e.from_version_id.as_deref() {
            return Err(format!(
                "history.jsonl line {line}: tag '{}' starts from a version it was not at",
                e.tag
            ));
        }
        let shape_ok = match e.action {
            TagAction::Set => current.is_none() && e.to_version_id.is_some(),
            TagAction::Move => current.is_some() && e.to_version_id.is_some(),
            TagAction::Delete => current.is_some() && e.to_version_id.is_none(),
            TagAction::Rollback | TagAction::Promote => e.to_version_id.is_some(),
        };
        if !shape_ok {
            return Err(format!(
                "history.jsonl line {line}: a '{}' of tag '{}' cannot go from {} to {}",
                e.action.as_str(),
                e.tag,
                current.unwrap_or("nothing"),
                e.to_version_id.as_deref().unwrap_or("nothing")
            ));
        }
        if e.forced && e.deploy {
            return Err(format!(
                "history.jsonl line {line}: a change of tag '{}' cannot be both forced and a deploy",
                e.tag
            ));
        }
        let role = if e.deploy {
            TagRole::Deploy
        } else {
            TagRole::Writer
        };
        policy
            .check(prompt, &e.tag, current, e.action, e.forced, role)
            .map_err(|_| {
                format!(
                    "history.jsonl line {line}: protected tag '{}' moved without a promotion, a deploy token or force",
                    e.tag
                )
            })?;
        if e.action == TagAction::Promote {
            let evidence = e
                .evidence
                .clone()
                .and_then(|v| serde_json::from_value::<crate::view::Evidence>(v).ok());
            if evidence.is_none_or(|ev| ev.verdict != "pass") {
                return Err(format!(
                    "history.jsonl line {line}: a promotion of '{}' without the evidence of a passed gate",
                    e.tag
                ));
            }
        }
        match &e.to_version_id {
            Some(to) => state.insert(&e.tag, to),
            None => state.remove(e.tag.as_str()),
        };
    }
    let expected: BTreeMap<&str, &str> = tags
        .iter()
        .map(|t| (t.name.as_str(), t.version_id.as_str()))
        .collect();
    if state != expected {
        return Err("tags.json does not match where the tag history leaves the tags".to_string());
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_plain(path)?;
    crate::json::from_str(&text)
        .map_err(|e| Error::invalid(format!("invalid JSON in {}: {e}", path.display())))
}

fn read_archive(folder: &Path, policy: &TagPolicy) -> Result<PromptArchive> {
    let prompt: PromptFile = read_json(&folder.join("prompt.json"))?;
    check_prompt_name(&prompt.name)?;
    let bad = |what: String| {
        Error::invalid(format!("{}: {what}", folder.display())).with_hint(
            "exported files are meant to be read back as written; restore them from the export",
        )
    };
    check_time("created_at", &prompt.created_at).map_err(bad)?;
    refuse_link(&folder.join("versions"))?;

    let mut version_dirs: Vec<_> = std::fs::read_dir(folder.join("versions"))
        .map_err(|e| bad(format!("cannot read versions/: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    version_dirs.sort();
    for dir in &version_dirs {
        refuse_link(dir)?;
    }
    version_dirs.retain(|p| p.is_dir());
    let mut versions = Vec::new();
    for dir in version_dirs {
        let file: VersionFile = read_json(&dir.join("version.json"))?;
        let template = match file.template_type {
            TemplateType::Str => Template::Str(
                read_plain(&dir.join("template.txt"))
                    .map_err(|e| bad(format!("v{}: {e}", file.seq)))?,
            ),
            TemplateType::Chat => {
                Template::Chat(read_json::<Vec<Message>>(&dir.join("messages.json"))?)
            }
        };
        CompiledTemplate::compile(file.format, &template)
            .map_err(|e| bad(format!("v{}: {e}", file.seq)))?;
        let hash = content_hash(
            file.format,
            &template,
            file.model.as_deref(),
            &file.params,
            &file.metadata,
        );
        check_time(&format!("v{} created_at", file.seq), &file.created_at).map_err(bad)?;
        check_actor(&format!("v{} author", file.seq), &file.author).map_err(bad)?;
        if hash != file.content_hash {
            return Err(bad(format!(
                "v{} was changed after export (its content no longer matches its hash)",
                file.seq
            )));
        }
        versions.push(PromptVersion {
            id: file.id,
            prompt: prompt.name.clone(),
            seq: file.seq,
            template_type: file.template_type,
            format: file.format,
            template,
            model: file.model,
            provider: file.provider,
            params: file.params,
            metadata: file.metadata,
            description: file.description,
            message: file.message,
            author: file.author,
            content_hash: file.content_hash,
            created_at: file.created_at,
        });
    }
    versions.sort_by_key(|v| v.seq);
    if versions.is_empty() {
        return Err(bad("no versions".into()));
    }
    for (index, v) in versions.iter().enumerate() {
        if v.seq != index as i64 + 1 {
            return Err(bad(format!(
                "version numbers must run 1, 2, 3 … without gaps; found v{} at position {}",
                v.seq,
                index + 1
            )));
        }
    }
    let seq_of: BTreeMap<&str, i64> = versions.iter().map(|v| (v.id.as_str(), v.seq)).collect();
    let known = |id: &Option<String>| id.as_deref().is_none_or(|id| seq_of.contains_key(id));

    let tag_files: BTreeMap<String, TagFile> = read_json(&folder.join("tags.json"))?;
    let mut tags = Vec::new();
    for (name, t) in tag_files {
        check_tag_name(&name)?;
        check_time(&format!("tag {name} updated_at"), &t.updated_at).map_err(bad)?;
        check_actor(&format!("tag {name} updated_by"), &t.updated_by).map_err(bad)?;
        let Some(&seq) = seq_of.get(t.version_id.as_str()) else {
            return Err(bad(format!("tag {name} points at an unknown version id")));
        };
        tags.push(Tag {
            prompt: prompt.name.clone(),
            name,
            version_id: t.version_id,
            version_seq: seq,
            updated_at: t.updated_at,
            updated_by: t.updated_by,
        });
    }

    let history_path = folder.join("history.jsonl");
    let history_text = read_plain(&history_path).map_err(|e| bad(e.to_string()))?;
    // Exports written before the chain existed carry no hashes at all: those are read without
    // it; an export with some hashes must have every one right.
    let chained = history_text.contains("\"hash\"");
    let mut previous = String::new();
    let mut history = Vec::new();
    for (index, line) in history_text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: EventFile = crate::json::from_str(line)
            .map_err(|err| bad(format!("history.jsonl line {}: {err}", index + 1)))?;
        let line_no = index + 1;
        if chained {
            let expected = chain(&previous, &e);
            if e.hash.as_deref() != Some(expected.as_str()) {
                return Err(bad(format!(
                    "history.jsonl line {line_no} was changed, added, removed or moved after export \
                     (its hash does not follow from the lines before it)"
                )));
            }
            previous = expected;
        }
        check_tag_name(&e.tag)
            .map_err(|err| bad(format!("history.jsonl line {line_no}: {err}")))?;
        check_time(&format!("history.jsonl line {line_no}: at"), &e.at).map_err(bad)?;
        check_actor(&format!("history.jsonl line {line_no}: actor"), &e.actor).map_err(bad)?;
        if !known(&e.from_version_id) || !known(&e.to_version_id) {
            return Err(bad(format!(
                "history.jsonl line {} names an unknown version id",
                index + 1
            )));
        }
        history.push(TagEvent {
            id: index as i64 + 1,
            prompt: prompt.name.clone(),
            tag: e.tag,
            action: e.action,
            from_seq: e
                .from_version_id
                .as_deref()
                .and_then(|id| seq_of.get(id).copied()),
            from_version_id: e.from_version_id,
            to_seq: e
                .to_version_id
                .as_deref()
                .and_then(|id| seq_of.get(id).copied()),
            to_version_id: e.to_version_id,
            actor: e.actor,
            message: e.message,
            at: e.at,
            forced: e.forced,
            deploy: e.deploy,
            evidence: e.evidence,
        });
    }
    replay(&prompt.name, &history, &tags, policy).map_err(bad)?;
    let mut events = Vec::new();
    for (index, e) in prompt.events.into_iter().enumerate() {
        let at = format!("prompt.json events[{index}]");
        if !["update", "archive", "restore"].contains(&e.action.as_str()) {
            return Err(bad(format!("{at}: unknown action '{}'", e.action)));
        }
        check_time(&format!("{at}: at"), &e.at).map_err(bad)?;
        check_actor(&format!("{at}: actor"), &e.actor).map_err(bad)?;
        if e.forced && e.deploy {
            return Err(bad(format!("{at}: an event is forced or deploy, not both")));
        }
        events.push(PromptEvent {
            id: index as i64 + 1,
            prompt: prompt.name.clone(),
            action: e.action,
            actor: e.actor,
            at: e.at,
            forced: e.forced,
            deploy: e.deploy,
        });
    }
    if let Some(archived_at) = &prompt.archived_at {
        check_time("prompt.json archived_at", archived_at).map_err(bad)?;
    }
    Ok(PromptArchive {
        name: prompt.name,
        created_at: prompt.created_at,
        description: prompt.description,
        metadata: prompt.metadata,
        archived_at: prompt.archived_at,
        events,
        versions,
        tags,
        history,
    })
}
