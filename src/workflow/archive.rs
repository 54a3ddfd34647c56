//! The archive: prompts as reviewable files, and back, losslessly.
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
    JsonObject, Message, PromptArchive, PromptVersion, Tag, TagAction, TagEvent, Template,
    TemplateFormat, TemplateType, content_hash,
};
use crate::template::CompiledTemplate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct PromptFile {
    name: String,
    created_at: String,
}

#[derive(Serialize, Deserialize)]
struct VersionFile {
    id: String,
    seq: i64,
    template_type: TemplateType,
    format: TemplateFormat,
    model: Option<String>,
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

#[derive(Serialize, Deserialize)]
struct EventFile {
    tag: String,
    action: TagAction,
    from_version_id: Option<String>,
    to_version_id: Option<String>,
    actor: String,
    message: Option<String>,
    at: String,
    forced: bool,
    evidence: Option<serde_json::Value>,
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::operational(format!("cannot write {}: {e}", path.display()))
        .with_hint("check that the folder is writable")
}

fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| write_error(path, e))
}

fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

/// Writes every archive into `dir`, one folder per prompt.
pub fn write(dir: &Path, archives: &[PromptArchive]) -> Result<()> {
    for archive in archives {
        write_archive(dir, archive)?;
    }
    Ok(())
}

fn write_archive(dir: &Path, archive: &PromptArchive) -> Result<()> {
    let root = dir.join(&archive.name);
    let versions_dir = root.join("versions");
    std::fs::create_dir_all(&versions_dir).map_err(|e| write_error(&versions_dir, e))?;
    write_file(
        &root.join("prompt.json"),
        &pretty(&PromptFile {
            name: archive.name.clone(),
            created_at: archive.created_at.clone(),
        }),
    )?;
    for v in &archive.versions {
        let folder = versions_dir.join(format!("{:04}", v.seq));
        std::fs::create_dir_all(&folder).map_err(|e| write_error(&folder, e))?;
        write_file(
            &folder.join("version.json"),
            &pretty(&VersionFile {
                id: v.id.clone(),
                seq: v.seq,
                template_type: v.template_type,
                format: v.format,
                model: v.model.clone(),
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
    for e in &archive.history {
        let line = serde_json::to_string(&EventFile {
            tag: e.tag.clone(),
            action: e.action,
            from_version_id: e.from_version_id.clone(),
            to_version_id: e.to_version_id.clone(),
            actor: e.actor.clone(),
            message: e.message.clone(),
            at: e.at.clone(),
            forced: e.forced,
            evidence: e.evidence.clone(),
        })
        .unwrap_or_default();
        history.push_str(&line);
        history.push('\n');
    }
    write_file(&root.join("history.jsonl"), history.as_bytes())
}

/// Reads every prompt folder in `dir` and checks it whole (hashes, numbering, tags, history)
/// before anything is returned.
pub fn read(dir: &Path) -> Result<Vec<PromptArchive>> {
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
    folders.iter().map(|folder| read_archive(folder)).collect()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("invalid JSON in {}: {e}", path.display())))
}

fn read_archive(folder: &Path) -> Result<PromptArchive> {
    let prompt: PromptFile = read_json(&folder.join("prompt.json"))?;
    check_prompt_name(&prompt.name)?;
    let bad = |what: String| {
        Error::invalid(format!("{}: {what}", folder.display())).with_hint(
            "exported files are meant to be read back as written; restore them from the export",
        )
    };

    let mut version_dirs: Vec<_> = std::fs::read_dir(folder.join("versions"))
        .map_err(|e| bad(format!("cannot read versions/: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    version_dirs.sort();
    let mut versions = Vec::new();
    for dir in version_dirs {
        let file: VersionFile = read_json(&dir.join("version.json"))?;
        let template = match file.template_type {
            TemplateType::Str => Template::Str(
                std::fs::read_to_string(dir.join("template.txt"))
                    .map_err(|e| bad(format!("v{}: cannot read template.txt: {e}", file.seq)))?,
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
    let history_text = std::fs::read_to_string(&history_path)
        .map_err(|e| bad(format!("cannot read history.jsonl: {e}")))?;
    let mut history = Vec::new();
    for (index, line) in history_text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: EventFile = serde_json::from_str(line)
            .map_err(|err| bad(format!("history.jsonl line {}: {err}", index + 1)))?;
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
            evidence: e.evidence,
        });
    }
    Ok(PromptArchive {
        name: prompt.name,
        created_at: prompt.created_at,
        versions,
        tags,
        history,
    })
}
