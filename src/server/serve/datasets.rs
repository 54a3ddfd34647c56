//! Phoenix's dataset routes, as the official client calls them: upload (JSON, or a CSV or
//! JSONL file in a multipart form, gzip or not), list, get by id, versions, the examples of a
//! version, delete. The datasets are the store's (`runner dataset …` sees the same ones); what
//! an upload does is `workflow::examples`'s, and ids are Phoenix's global ids.
//!
//! Where Phoenix differs for no reason a client relies on, runner is stricter: a dataset that
//! a recorded experiment ran on is not deleted (409), so no result loses the rows it saw.

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{PageQuery, Shared, data, page, query};
use crate::model::{DatasetEntry, DatasetVersion, JsonObject};
use crate::workflow::examples::{
    self, Action, DATASET, Decoded, Incoming, Upload, VERSION, global_id,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::Read;
use std::sync::Arc;

/// Phoenix's page size for datasets and versions when the client gives none.
const DEFAULT_LIMIT: usize = 10;

/// The largest upload body.
pub const UPLOAD_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// The most a gzipped file in a form decompresses to.
const UNZIPPED_LIMIT: usize = 64 * 1024 * 1024;
/// Examples in one upload at most.
pub const MAX_EXAMPLES: usize = 100_000;
/// Cells of an uploaded CSV at most (rows × columns): each becomes a value in memory.
const MAX_CELLS: usize = 2_000_000;

fn dataset_json(entry: &DatasetEntry) -> Value {
    let metadata: Value = serde_json::from_str(&entry.metadata).unwrap_or_else(|_| json!({}));
    json!({
        "id": global_id(DATASET, &entry.id),
        "name": entry.name,
        "description": entry.description,
        "metadata": metadata,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
        "example_count": entry.example_count,
    })
}

fn version_json(version: &DatasetVersion) -> Value {
    json!({
        "version_id": global_id(VERSION, &version.id),
        "description": version.message,
        "metadata": {},
        "created_at": version.created_at,
    })
}

/// A dataset id from a path: 422 when it is not a global id (or, with `strict`, names another
/// type: the versions and delete routes), 404 for another type otherwise, as Phoenix answers.
fn dataset_id(id: &str, strict: bool) -> ApiResult<String> {
    match examples::decode(DATASET, id) {
        Decoded::Is(raw) => Ok(raw),
        Decoded::Other(kind) if !strict => Err(ApiError::not_found(format!(
            "ID {id} refers to a {kind}, not a dataset"
        ))),
        _ => Err(ApiError::unprocessable(format!("Invalid Dataset ID: {id}"))),
    }
}

fn limit(params: &PageQuery) -> ApiResult<usize> {
    if params.limit.is_none() {
        return Ok(DEFAULT_LIMIT);
    }
    params.limit()
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
    name: Option<String>,
}

/// `GET /v1/datasets`: newest first, `?name=` to find one by name.
pub(super) async fn list_datasets(
    State(shared): State<Arc<Shared>>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let params = query(params)?;
    let paging = PageQuery {
        cursor: params.cursor.clone(),
        limit: params.limit.clone(),
    };
    let limit = limit(&paging)?;
    let from = match &params.cursor {
        None => None,
        Some(cursor) => match examples::decode(DATASET, cursor) {
            Decoded::Is(raw) => Some(raw),
            _ => return Err(ApiError::unprocessable(format!("Invalid cursor: {cursor}"))),
        },
    };
    let name = params.name.clone().filter(|n| !n.is_empty());
    let mut entries = shared
        .with_store(move |store| {
            Ok(store.dataset_entries(name.as_deref(), from.as_deref(), limit + 1)?)
        })
        .await?;
    let next = (entries.len() > limit).then(|| global_id(DATASET, &entries.remove(limit).id));
    Ok(page(entries.iter().map(dataset_json).collect(), next))
}

/// `GET /v1/datasets/{id}`.
pub(super) async fn get_dataset(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let text = super::path(id)?;
    let id = dataset_id(&text, false)?;
    let entry = shared
        .with_store(move |store| Ok(store.dataset_entry(&id)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Dataset with ID {text} not found")))?;
    Ok(data(dataset_json(&entry)))
}

/// `GET /v1/datasets/{id}/versions`: newest first; an unknown dataset has none.
pub(super) async fn list_versions(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let id = dataset_id(&super::path(id)?, true)?;
    let params = query(params)?;
    let limit = limit(&params)?;
    let cursor = match &params.cursor {
        None => None,
        Some(cursor) => match examples::decode(VERSION, cursor) {
            Decoded::Is(raw) => Some(raw),
            _ => return Err(ApiError::unprocessable(format!("Invalid cursor: {cursor}"))),
        },
    };
    let mut versions = shared
        .with_store(move |store| {
            let from_seq = match cursor {
                None => None,
                Some(version) => match store.dataset_version(&version)? {
                    Some((v, _)) if v.dataset_id == id => Some(v.seq),
                    _ => return Ok(Vec::new()),
                },
            };
            Ok(store.dataset_versions_of(&id, from_seq, limit + 1)?)
        })
        .await?;
    let next = (versions.len() > limit).then(|| global_id(VERSION, &versions.remove(limit).id));
    Ok(page(versions.iter().map(version_json).collect(), next))
}

#[derive(Debug, Deserialize)]
pub(super) struct ExamplesQuery {
    version_id: Option<String>,
    split: Option<String>,
}

/// `GET /v1/datasets/{id}/examples?version_id=…`: a version's examples, oldest first (the
/// latest version without `version_id`).
pub(super) async fn list_examples(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<ExamplesQuery>, QueryRejection>,
) -> ApiResult {
    let text = super::path(id)?;
    let id = dataset_id(&text, false)?;
    let params = query(params)?;
    if params.split.is_some() {
        return Err(ApiError::unprocessable(
            "dataset splits are not kept by runner: read the whole version",
        ));
    }
    let version_id = match &params.version_id {
        None => None,
        Some(version) => match examples::decode(VERSION, version) {
            Decoded::Is(raw) => Some(raw),
            _ => {
                return Err(ApiError::unprocessable(format!(
                    "Invalid dataset version ID: {version}"
                )));
            }
        },
    };
    let (version, examples) = shared
        .with_store(move |store| {
            let version_id = match version_id {
                Some(version) => version,
                None => match store.dataset_entry(&id)? {
                    Some(entry) => entry.latest_version_id,
                    None => return Ok(None),
                },
            };
            let Some((version, content)) = store.dataset_version(&version_id)? else {
                return Ok(None);
            };
            if version.dataset_id != id {
                return Ok(None);
            }
            let examples = examples::examples_of(&version, &content)?;
            Ok(Some((version, examples)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No dataset or version found for {text}")))?;
    let items: Vec<Value> = examples
        .iter()
        .map(|e| e.to_json(&version.created_at))
        .collect();
    Ok(data(json!({
        "dataset_id": global_id(DATASET, &version.dataset_id),
        "version_id": global_id(VERSION, &version.id),
        "filtered_splits": [],
        "examples": items,
    })))
}

/// `DELETE /v1/datasets/{id}`: 204; 409 while a recorded experiment ran on it.
pub(super) async fn delete_dataset(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = dataset_id(&super::path(id)?, true)?;
    let deleted = shared
        .with_store(move |store| Ok(store.delete_dataset(&id)?))
        .await?;
    if !deleted {
        return Err(ApiError::not_found("Dataset does not exist"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The JSON form of an upload.
#[derive(Debug, Deserialize)]
struct JsonUpload {
    name: Option<String>,
    action: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "bounded")]
    inputs: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "bounded")]
    outputs: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "bounded")]
    metadata: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "bounded")]
    splits: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "bounded")]
    span_ids: Option<Vec<Value>>,
    #[serde(default, deserialize_with = "bounded")]
    example_ids: Option<Vec<Value>>,
}

/// A list of at most `MAX_EXAMPLES` values, refused as soon as it is longer (before the rest
/// is read into memory).
fn bounded<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<Value>>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Option<Vec<Value>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_EXAMPLES} values")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(Bounded)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(value) = seq.next_element::<Value>()? {
                if out.len() == MAX_EXAMPLES {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_EXAMPLES} examples in one upload"
                    )));
                }
                out.push(value);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(Bounded)
}

fn objects(field: &str, values: Option<Vec<Value>>, count: usize) -> ApiResult<Vec<JsonObject>> {
    let Some(values) = values.filter(|v| !v.is_empty()) else {
        return Ok(vec![JsonObject::new(); count]);
    };
    if values.len() != count {
        return Err(ApiError::unprocessable(format!(
            "{field} should be a list of same length as input containing only dictionary objects"
        )));
    }
    values
        .into_iter()
        .map(|v| match v {
            Value::Object(map) => Ok(map),
            _ => Err(ApiError::unprocessable(format!(
                "{field} should be a list of same length as input containing only dictionary objects"
            ))),
        })
        .collect()
}

fn json_upload(body: &[u8]) -> ApiResult<Upload> {
    let body: JsonUpload = crate::json::from_slice(body)
        .map_err(|e| ApiError::unprocessable(format!("invalid JSON body: {e}")))?;
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::unprocessable("Dataset name is required"))?;
    let inputs = body
        .inputs
        .ok_or_else(|| ApiError::unprocessable("input is required"))?;
    let count = inputs.len();
    let inputs = objects("Input", Some(inputs), count).map_err(|_| {
        ApiError::unprocessable("Input should be a list containing only dictionary objects")
    })?;
    let outputs = objects("outputs", body.outputs, count)?;
    let metadata = objects("metadata", body.metadata, count)?;
    for (given, what) in [
        (
            &body.splits,
            "dataset splits are not kept by runner: upload without splits",
        ),
        (
            &body.span_ids,
            "span ids on examples are not kept by runner: upload without span_ids",
        ),
    ] {
        if given
            .as_ref()
            .is_some_and(|s| s.iter().any(|v| !v.is_null()))
        {
            return Err(ApiError::unprocessable(what));
        }
    }
    let ids = match body.example_ids {
        None => vec![None; count],
        Some(ids) if ids.len() == count => {
            let mut seen = std::collections::HashSet::new();
            ids.into_iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::String(id) if seen.insert(id.clone()) => Ok(Some(id)),
                    Value::String(id) => Err(ApiError::unprocessable(format!(
                        "Duplicate example_id in request: '{id}'"
                    ))),
                    _ => Err(ApiError::unprocessable(
                        "example_ids must contain only strings or None",
                    )),
                })
                .collect::<ApiResult<Vec<_>>>()?
        }
        Some(ids) => {
            return Err(ApiError::unprocessable(format!(
                "example_ids must have same length as inputs ({} != {count})",
                ids.len()
            )));
        }
    };
    let action = Action::parse(body.action.as_deref()).map_err(ApiError::unprocessable)?;
    let examples = inputs
        .into_iter()
        .zip(outputs)
        .zip(metadata)
        .zip(ids)
        .map(|(((input, output), metadata), external_id)| Incoming {
            external_id,
            input,
            output,
            metadata,
        })
        .collect();
    Ok(Upload {
        name,
        description: body.description.filter(|d| !d.is_empty()),
        action,
        examples,
    })
}

/// The fields of a multipart upload.
#[derive(Default)]
struct Form {
    action: Option<String>,
    name: Option<String>,
    description: Option<String>,
    input_keys: Vec<String>,
    output_keys: Vec<String>,
    metadata_keys: Vec<String>,
    other_keys: Vec<String>,
    file: Option<(String, Option<String>, Bytes)>,
    file_name: Option<String>,
}

async fn read_form(mut multipart: Multipart, limit: usize) -> ApiResult<Form> {
    let mut form = Form::default();
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(
            e.status(),
            format!("unreadable multipart form: {}", e.body_text()),
        )
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let kind = field.content_type().unwrap_or_default().to_string();
            form.file_name = field.file_name().map(str::to_string);
            let encoding = field
                .headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = field.bytes().await.map_err(bad)?;
            if bytes.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the uploaded file is over the size limit",
                ));
            }
            form.file = Some((kind, encoding, bytes));
            continue;
        }
        let value = field.text().await.map_err(bad)?;
        match name.as_str() {
            "action" => form.action = Some(value),
            "name" => form.name = Some(value),
            "description" => form.description = Some(value),
            "input_keys[]" => form.input_keys.push(value),
            "output_keys[]" => form.output_keys.push(value),
            "metadata_keys[]" => form.metadata_keys.push(value),
            "split_keys[]" | "split_key" | "span_id_key" | "example_id_key" | "flatten_keys[]"
                if !value.is_empty() =>
            {
                form.other_keys.push(name)
            }
            _ => {}
        }
    }
    Ok(form)
}

/// A file from a form, decompressed (at most `limit` bytes out) and read as CSV or JSONL rows.
fn form_upload(form: Form, limit: usize) -> ApiResult<Upload> {
    let name = form
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::unprocessable("Dataset name is required"))?;
    if let Some(key) = form.other_keys.first() {
        return Err(ApiError::unprocessable(format!(
            "{key}: dataset splits, span ids and example id columns are not kept by runner"
        )));
    }
    let (kind, encoding, bytes) = form
        .file
        .ok_or_else(|| ApiError::unprocessable("the form has no file"))?;
    let limit = limit.min(UNZIPPED_LIMIT);
    let raw = match encoding.as_deref() {
        None | Some("") => bytes.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::unprocessable(format!("the file is not gzip: {e}")))?;
            if out.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the uploaded file decompresses past the size limit",
                ));
            }
            out
        }
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "unsupported content encoding '{other}' (gzip or none)"
            )));
        }
    };
    let text = String::from_utf8(raw)
        .map_err(|_| ApiError::unprocessable("the uploaded file is not UTF-8 text"))?;
    let rows: Vec<JsonObject> = match kind.as_str() {
        "text/csv" => csv_rows(&text)?,
        "application/jsonl" => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                if i >= MAX_EXAMPLES {
                    Err(ApiError::unprocessable(format!(
                        "more than {MAX_EXAMPLES} examples in one upload"
                    )))
                } else {
                    Ok(line)
                }
            })
            .collect::<ApiResult<Vec<&str>>>()?
            .into_iter()
            .map(|line| match crate::json::from_str::<Value>(line) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(ApiError::unprocessable(
                    "each JSONL line must be a JSON object",
                )),
            })
            .collect::<ApiResult<_>>()?,
        other => {
            return Err(ApiError::unprocessable(format!(
                "unsupported file type '{other}' (text/csv or application/jsonl)"
            )));
        }
    };
    let known: std::collections::HashSet<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    for key in form
        .input_keys
        .iter()
        .chain(&form.output_keys)
        .chain(&form.metadata_keys)
    {
        if !known.contains(key) && !rows.is_empty() {
            return Err(ApiError::unprocessable(format!(
                "Missing keys in the file: {key}"
            )));
        }
    }
    let pick = |row: &JsonObject, keys: &[String]| -> JsonObject {
        keys.iter()
            .filter_map(|k| row.get(k).map(|v| (k.clone(), v.clone())))
            // A CSV's empty cells are left out, as Phoenix does.
            .filter(|(_, v)| !(kind == "text/csv" && v.as_str() == Some("")))
            .collect()
    };
    let examples = rows
        .iter()
        .map(|row| Incoming {
            external_id: None,
            input: pick(row, &form.input_keys),
            output: pick(row, &form.output_keys),
            metadata: pick(row, &form.metadata_keys),
        })
        .collect();
    Ok(Upload {
        name,
        // A form without a description is described by its file's name, as in Phoenix.
        description: form
            .description
            .filter(|d| !d.is_empty())
            .or(form.file_name.filter(|f| !f.is_empty())),
        action: Action::parse(form.action.as_deref()).map_err(ApiError::unprocessable)?,
        examples,
    })
}

/// A CSV with a header row: each row an object of strings.
fn csv_rows(text: &str) -> ApiResult<Vec<JsonObject>> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ApiError::unprocessable(format!("unreadable CSV header: {e}")))?
        .clone();
    let mut seen = std::collections::HashSet::new();
    if let Some(duplicate) = headers.iter().find(|h| !seen.insert(*h)) {
        return Err(ApiError::unprocessable(format!(
            "Duplicated column header in CSV file: {duplicate}"
        )));
    }
    let columns = headers.len().max(1);
    reader
        .records()
        .enumerate()
        .map(|(i, record)| {
            if i >= MAX_EXAMPLES || (i + 1) * columns > MAX_CELLS {
                return Err(ApiError::unprocessable(format!(
                    "the CSV holds more than {MAX_EXAMPLES} rows or {MAX_CELLS} cells; upload it \
                     in parts (append)"
                )));
            }
            let record =
                record.map_err(|e| ApiError::unprocessable(format!("unreadable CSV row: {e}")))?;
            Ok(headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                .collect())
        })
        .collect()
}

/// Parsing an upload is CPU work: off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("reading the upload failed: {e}")))?
}

/// `POST /v1/datasets/upload?sync=true`: JSON or a multipart form; the new (or unchanged)
/// version's ids and what changed.
pub(super) async fn upload(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> ApiResult {
    let media = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let limit = crate::workflow::datasets::MAX_BYTES as usize;
    let upload = if media.starts_with("application/json") {
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        blocking(move || json_upload(&body)).await?
    } else if media.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let form = read_form(multipart, limit).await?;
        blocking(move || form_upload(form, limit)).await?
    } else {
        return Err(ApiError::unprocessable(
            "Invalid request Content-Type (application/json or multipart/form-data)",
        ));
    };
    let (version, changes) = shared
        .with_store(move |store| Ok(examples::upload(store, upload, &caller.actor)?))
        .await?;
    Ok(Json(json!({"data": {
        "dataset_id": global_id(DATASET, &version.dataset_id),
        "version_id": global_id(VERSION, &version.id),
        "num_created_examples": changes.created,
        "num_updated_examples": changes.updated,
        "num_deleted_examples": changes.deleted,
    }}))
    .into_response())
}
