//! Datasets as the Phoenix dataset API sees them: versions of examples (input, output and
//! metadata objects, each example with an id that stays the same across versions), written
//! by an upload that creates a dataset, appends to it or replaces its examples, and read back
//! whatever the version's shape. It must not print.
//!
//! A version written here is stored as JSONL, one example a line in order:
//! `{"id": KEY, "input": {...}, "output": {...}, "metadata": {...}}` (and `"external_id"` when
//! the client named the example), so `runner experiment --dataset store:NAME` reads it as any
//! dataset (`{{input.question}}` in a template). A version pushed as a file reads as one
//! example a row: the row is the input, output and metadata are empty.
//!
//! Ids are Phoenix's global ids, base64 of `Type:raw`: `Dataset:` and `DatasetVersion:` with
//! the store's ids, `DatasetExample:` with the example's key (a fresh id for an uploaded
//! example; `DATASET_ID/ROW_ID` for a row of a pushed file).

use crate::dataset::{self, DatasetFormat};
use crate::error::{Error, Result};
use crate::model::{DatasetVersion, JsonObject};
use crate::store::{NewDatasetVersion, Store};
use base64::Engine;
use serde_json::{Value, json};
use std::path::Path;

pub const DATASET: &str = "Dataset";
pub const VERSION: &str = "DatasetVersion";
pub const EXAMPLE: &str = "DatasetExample";

/// `Type:raw`, base64: the id form the Phoenix clients expect.
pub fn global_id(kind: &str, raw: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{raw}"))
}

/// What a global id names.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Of the expected type: the raw id.
    Is(String),
    /// A global id of another type.
    Other(String),
    /// Not a global id at all.
    Malformed,
}

pub fn decode(kind: &str, text: &str) -> Decoded {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) else {
        return Decoded::Malformed;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Decoded::Malformed;
    };
    match text.split_once(':') {
        Some((found, raw)) if !found.is_empty() && !raw.is_empty() => {
            if found == kind {
                Decoded::Is(raw.to_string())
            } else {
                Decoded::Other(found.to_string())
            }
        }
        _ => Decoded::Malformed,
    }
}

/// One example of a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// What its global id wraps (see the module documentation).
    pub key: String,
    /// The id the client gave it, if any.
    pub external_id: Option<String>,
    pub input: JsonObject,
    pub output: JsonObject,
    pub metadata: JsonObject,
}

impl Example {
    pub fn node_id(&self) -> String {
        global_id(EXAMPLE, &self.key)
    }

    /// What two examples must share to be the same content.
    fn content(&self) -> (&JsonObject, &JsonObject, &JsonObject) {
        (&self.input, &self.output, &self.metadata)
    }

    /// As the examples route answers it: `id` is the client's id when it gave one.
    pub fn to_json(&self, updated_at: &str) -> Value {
        let node_id = self.node_id();
        json!({
            "id": self.external_id.clone().unwrap_or_else(|| node_id.clone()),
            "node_id": node_id,
            "input": self.input,
            "output": self.output,
            "metadata": self.metadata,
            "updated_at": updated_at,
            "source": null,
        })
    }
}

/// An example as an upload gives it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub external_id: Option<String>,
    pub input: JsonObject,
    pub output: JsonObject,
    pub metadata: JsonObject,
}

/// What an upload does to an existing dataset (a missing one is created by any of them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Refused when the name exists.
    Create,
    /// Adds the examples; one matching an existing example (by id, else by content) changes it
    /// in place instead.
    Append,
    /// The new version holds exactly the given examples; unchanged content keeps the version.
    Update,
}

impl Action {
    pub fn parse(text: Option<&str>) -> std::result::Result<Action, String> {
        match text.unwrap_or("create") {
            "create" => Ok(Action::Create),
            "append" => Ok(Action::Append),
            "update" => Ok(Action::Update),
            other => Err(format!(
                "Invalid dataset action: {other} (create, append or update)"
            )),
        }
    }
}

/// Counts of what an upload changed, as Phoenix reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Changes {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
}

/// The examples of a stored version, in order.
pub fn examples_of(version: &DatasetVersion, content: &str) -> Result<Vec<Example>> {
    super::datasets::check_stored(version, content)?;
    let format = match version.format.as_str() {
        "csv" => DatasetFormat::Csv,
        _ => DatasetFormat::Jsonl,
    };
    let label = format!("{}@{}", version.dataset, version.seq);
    let (_, rows) = dataset::rows_of_text(Path::new(&label), format, content)
        .map_err(|e| Error::operational(format!("the store's copy of {label}: {e}")))?;
    let damaged = |what: &str| {
        Error::operational(format!("the store's copy of {label} is damaged: {what}"))
            .with_hint("upload its examples again as a new version")
    };
    rows.into_iter()
        .map(|row| {
            if version.shape != "examples" {
                return Ok(Example {
                    key: format!("{}/{}", version.dataset_id, row.id),
                    external_id: None,
                    input: row.values,
                    output: JsonObject::new(),
                    metadata: JsonObject::new(),
                });
            }
            let mut values = row.values;
            let mut object = |field: &str| match values.remove(field) {
                Some(Value::Object(map)) => Ok(map),
                None => Ok(JsonObject::new()),
                Some(_) => Err(damaged(&format!("an example's {field} is not an object"))),
            };
            let (input, output, metadata) =
                (object("input")?, object("output")?, object("metadata")?);
            let external_id = match values.remove("external_id") {
                Some(Value::String(id)) => Some(id),
                None => None,
                Some(_) => return Err(damaged("an example's external_id is not text")),
            };
            Ok(Example {
                key: row.id,
                external_id,
                input,
                output,
                metadata,
            })
        })
        .collect()
}

/// The examples of the next version: the previous ones changed by `incoming` as `action`
/// says, and what changed. Examples keep their keys; a new one gets a fresh key.
pub fn next_examples(
    previous: &[Example],
    incoming: Vec<Incoming>,
    action: Action,
) -> (Vec<Example>, Changes) {
    let mut changes = Changes::default();
    let mut matched: Vec<Option<Example>> = vec![None; previous.len()];
    let mut created = Vec::new();
    // Indexes, so that pairing is linear in the examples (it runs under the dataset's lock).
    let content_key = |input: &JsonObject, output: &JsonObject, metadata: &JsonObject| {
        serde_json::to_string(&(input, output, metadata)).unwrap_or_default()
    };
    let mut by_key = std::collections::HashMap::new();
    let mut by_external = std::collections::HashMap::new();
    let mut by_content: std::collections::HashMap<String, std::collections::VecDeque<usize>> =
        std::collections::HashMap::new();
    for (i, p) in previous.iter().enumerate() {
        by_key.entry(p.key.as_str()).or_insert(i);
        if let Some(id) = &p.external_id {
            by_external.entry(id.as_str()).or_insert(i);
        }
        by_content
            .entry(content_key(&p.input, &p.output, &p.metadata))
            .or_default()
            .push_back(i);
    }
    for example in incoming {
        let position = match &example.external_id {
            // A client's id pairs only by id: the node id of an example, or the id it gave.
            Some(id) => match decode(EXAMPLE, id) {
                Decoded::Is(key) => by_key.get(key.as_str()).copied(),
                _ => None,
            }
            .or_else(|| by_external.get(id.as_str()).copied()),
            // Without one, the first example not yet paired with the same content.
            None => by_content
                .get_mut(&content_key(
                    &example.input,
                    &example.output,
                    &example.metadata,
                ))
                .and_then(|queue| {
                    while let Some(i) = queue.pop_front() {
                        if matched[i].is_none() {
                            return Some(i);
                        }
                    }
                    None
                }),
        };
        match position {
            Some(i) if matched[i].is_none() => {
                let old = &previous[i];
                let new = Example {
                    key: old.key.clone(),
                    external_id: old.external_id.clone(),
                    input: example.input,
                    output: example.output,
                    metadata: example.metadata,
                };
                if new.content() != old.content() {
                    changes.updated += 1;
                }
                matched[i] = Some(new);
            }
            // Named twice in one upload: the later one is a new example.
            _ => {
                changes.created += 1;
                created.push(Example {
                    key: uuid::Uuid::now_v7().to_string(),
                    external_id: example
                        .external_id
                        .filter(|id| !matches!(decode(EXAMPLE, id), Decoded::Is(_))),
                    input: example.input,
                    output: example.output,
                    metadata: example.metadata,
                })
            }
        }
    }
    let mut next = Vec::with_capacity(previous.len() + created.len());
    for (old, new) in previous.iter().zip(matched) {
        match (new, action) {
            (Some(new), _) => next.push(new),
            (None, Action::Update) => changes.deleted += 1,
            (None, _) => next.push(old.clone()),
        }
    }
    next.extend(created);
    (next, changes)
}

/// The JSONL a version of `examples` is stored as.
pub fn content_of(examples: &[Example]) -> String {
    let mut content = String::new();
    for example in examples {
        let mut line = serde_json::Map::new();
        line.insert("id".into(), Value::String(example.key.clone()));
        if let Some(id) = &example.external_id {
            line.insert("external_id".into(), Value::String(id.clone()));
        }
        line.insert("input".into(), Value::Object(example.input.clone()));
        line.insert("output".into(), Value::Object(example.output.clone()));
        line.insert("metadata".into(), Value::Object(example.metadata.clone()));
        content.push_str(&Value::Object(line).to_string());
        content.push('\n');
    }
    content
}

/// What an upload asks for.
pub struct Upload {
    pub name: String,
    pub description: Option<String>,
    pub action: Action,
    pub examples: Vec<Incoming>,
}

/// Writes an upload as the dataset's next version (nothing when it changes nothing): under
/// the dataset's lock, so concurrent uploads each build on the other's version.
pub fn upload(
    store: &dyn Store,
    upload: Upload,
    author: &str,
) -> Result<(DatasetVersion, Changes)> {
    super::datasets::check_name(&upload.name)?;
    if upload.examples.is_empty() {
        return Err(Error::invalid("an upload needs at least one example"));
    }
    let mut failure: Option<Error> = None;
    let mut changes = Changes::default();
    let mut incoming = Some(upload.examples);
    let result = store.push_dataset_with(
        &upload.name,
        upload.action == Action::Create,
        &mut |previous| {
            let built = (|| {
                let previous = match previous {
                    Some((version, content)) => examples_of(version, content)?,
                    None => Vec::new(),
                };
                let (examples, changed) = next_examples(
                    &previous,
                    incoming.take().unwrap_or_default(),
                    upload.action,
                );
                changes = changed;
                let content = content_of(&examples);
                if content.len() as u64 > super::datasets::MAX_BYTES {
                    return Err(Error::invalid(format!(
                        "the dataset would be {} MiB; the store keeps datasets up to {} MiB",
                        content.len() >> 20,
                        super::datasets::MAX_BYTES >> 20
                    )));
                }
                let label = format!("{} (upload)", upload.name);
                let (info, _) =
                    dataset::rows_of_text(Path::new(&label), DatasetFormat::Jsonl, &content)
                        .map_err(|e| Error::invalid(e.to_string()))?;
                Ok(NewDatasetVersion {
                    format: "jsonl".into(),
                    content,
                    hash: info.hash,
                    rows: info.rows as i64,
                    columns: info.columns,
                    message: None,
                    author: author.to_string(),
                    created_at: None,
                    shape: "examples".into(),
                    description: upload.description.clone(),
                    metadata: None,
                    id: None,
                    dataset_id: None,
                })
            })();
            built.map(Some).map_err(|e| {
                failure = Some(e);
                crate::store::StoreError::Abandoned
            })
        },
    );
    match result {
        Ok((version, added)) => Ok((version, if added { changes } else { Changes::default() })),
        Err(crate::store::StoreError::Abandoned) if failure.is_some() => {
            Err(failure.unwrap_or_else(|| Error::operational("the upload failed")))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(q: &str, a: &str, id: Option<&str>) -> Incoming {
        Incoming {
            external_id: id.map(str::to_string),
            input: json!({ "q": q }).as_object().unwrap().clone(),
            output: json!({ "a": a }).as_object().unwrap().clone(),
            metadata: JsonObject::new(),
        }
    }

    #[test]
    fn global_ids_round_trip_and_tell_types_apart() {
        let id = global_id(DATASET, "0193-abc");
        assert_eq!(decode(DATASET, &id), Decoded::Is("0193-abc".into()));
        assert_eq!(decode(VERSION, &id), Decoded::Other("Dataset".into()));
        assert_eq!(decode(DATASET, "support_queries"), Decoded::Malformed);
        assert_eq!(decode(DATASET, &global_id(DATASET, "")), Decoded::Malformed);
    }

    #[test]
    fn append_keeps_examples_and_pairs_by_id_then_by_content() {
        let (first, changes) = next_examples(
            &[],
            vec![incoming("a", "1", None), incoming("b", "2", Some("ext-b"))],
            Action::Create,
        );
        assert_eq!(
            changes,
            Changes {
                created: 2,
                updated: 0,
                deleted: 0
            }
        );
        assert_eq!(first[1].external_id.as_deref(), Some("ext-b"));
        // The same content again is no new example; a changed one named by its id is patched.
        let (second, changes) = next_examples(
            &first,
            vec![
                incoming("a", "1", None),
                incoming("b", "22", Some("ext-b")),
                incoming("c", "3", None),
            ],
            Action::Append,
        );
        assert_eq!(
            changes,
            Changes {
                created: 1,
                updated: 1,
                deleted: 0
            }
        );
        assert_eq!(second.len(), 3);
        assert_eq!(second[0].key, first[0].key);
        assert_eq!(second[1].key, first[1].key);
        assert_eq!(second[1].output["a"], "22");
        // A node id names the example it wraps.
        let (third, changes) = next_examples(
            &second,
            vec![incoming("c", "33", Some(&second[2].node_id()))],
            Action::Append,
        );
        assert_eq!(
            changes,
            Changes {
                created: 0,
                updated: 1,
                deleted: 0
            }
        );
        assert_eq!(third[2].key, second[2].key);
        assert_eq!(
            third[2].external_id, None,
            "a node id is not kept as the client's id"
        );
    }

    #[test]
    fn update_holds_exactly_the_given_examples_and_same_content_changes_nothing() {
        let (first, _) = next_examples(
            &[],
            vec![incoming("a", "1", None), incoming("b", "2", None)],
            Action::Create,
        );
        let (same, changes) = next_examples(
            &first,
            vec![incoming("a", "1", None), incoming("b", "2", None)],
            Action::Update,
        );
        assert_eq!(changes, Changes::default());
        assert_eq!(content_of(&same), content_of(&first));
        let (next, changes) = next_examples(
            &first,
            vec![incoming("b", "2", None), incoming("d", "4", None)],
            Action::Update,
        );
        assert_eq!(
            changes,
            Changes {
                created: 1,
                updated: 0,
                deleted: 1
            }
        );
        assert_eq!(next.len(), 2);
        assert_eq!(next[0].key, first[1].key);
        assert_eq!(next[1].input["q"], "d");
    }

    #[test]
    fn a_stored_version_reads_back_as_its_examples() {
        let (examples, _) = next_examples(
            &[],
            vec![incoming("a", "1", Some("x")), incoming("b", "2", None)],
            Action::Create,
        );
        let content = content_of(&examples);
        let version = DatasetVersion {
            id: "v".into(),
            dataset: "d".into(),
            dataset_id: "did".into(),
            seq: 1,
            format: "jsonl".into(),
            shape: "examples".into(),
            hash: crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes())),
            rows: 2,
            columns: vec![],
            message: None,
            created_at: String::new(),
            created_by: String::new(),
        };
        assert_eq!(examples_of(&version, &content).unwrap(), examples);
        // A pushed file: each row is an example's input, keyed by the dataset and row id.
        let csv = "id,q\nr1,hello\n";
        let file = DatasetVersion {
            format: "csv".into(),
            shape: "rows".into(),
            hash: crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(csv.as_bytes())),
            rows: 1,
            ..version
        };
        let rows = examples_of(&file, csv).unwrap();
        assert_eq!(rows[0].key, "did/r1");
        assert_eq!(rows[0].input["q"], "hello");
        assert!(rows[0].output.is_empty());
    }
}
