//! Datasets: the rows and facts of a CSV / JSONL file, its content hash and the checks every
//! format shares (row ids, columns and dotted fields).
//!
//! A dataset may hold a million rows, so nothing here keeps rows around: `rows` streams them
//! from a buffered reader and `scan` makes one validating pass (hashing the bytes as they go
//! by) so a malformed file is reported, with its line, before any request is sent.
//!
//! Reading each format is in `csv` and `jsonl`; this module opens the file, hashes it and
//! gives every row its identity.

mod csv;
mod jsonl;

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{JsonObject, hex};

/// How the rows of a dataset file are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    Csv,
    Jsonl,
}

/// One data row: its position, its identity and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 0-based position among data rows (headers and blank lines do not count).
    pub index: usize,
    /// The row's `id` column/key when the file has one, otherwise `index` as text.
    pub id: String,
    pub values: JsonObject,
}

/// What a full validating pass learned about a file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetInfo {
    pub path: PathBuf,
    pub format: DatasetFormat,
    /// sha256 (hex) of the file's bytes exactly as read.
    pub hash: String,
    pub rows: usize,
    /// CSV: the header names in order. JSONL: the union of top-level keys, in order of first appearance.
    pub columns: Vec<String>,
    /// Every dotted path to a non-object value seen (JSONL nested objects: "customer.name"); for CSV equals `columns`. Union over rows, first-seen order, capped at 1,000 entries.
    pub fields: Vec<String>,
    /// Whether the file has an `id` column.
    pub has_id: bool,
    /// A CSV file separated by semicolons or tabs rather than commas (read as such: its
    /// header line has no comma outside quotes, and one of them).
    pub separator: Option<char>,
    /// CSV: the columns with empty cells, and in how many rows (a template renders an empty
    /// cell as nothing; the run warns before it starts).
    pub empty_cells: Vec<(String, usize)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read dataset {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: unknown dataset format (use a .csv or .jsonl file)", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}, line {line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}: no data rows", path.display())]
    Empty { path: PathBuf },
}

/// The column/key that gives a row its identity.
const ID: &str = "id";
/// Bound on `DatasetInfo::fields`, so a file whose rows all have different shapes cannot grow it
/// without limit.
const MAX_FIELDS: usize = 1_000;
/// The longest record (a CSV record, a JSONL line) a dataset may hold: a bound on what one row
/// can make runner hold in memory, far above any real row.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;
/// Large reads keep the per-syscall overhead negligible on million-row files.
const BUFFER: usize = 256 * 1024;

/// sha256 of a file's bytes, read in large chunks: what a run checks to see that its dataset
/// (or an evaluator's file) did not change under it.
pub fn file_hash(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Reads the whole file once, validating every row, hashing the bytes, counting rows and collecting columns. Memory stays flat: rows are not kept.
pub fn scan(path: &Path) -> Result<DatasetInfo, DatasetError> {
    let format = format_of(path)?;
    let file = open(path)?;
    let reader = HashingReader {
        inner: file,
        hasher: Sha256::new(),
    };
    let mut parser = Parser::new(path, format, reader, true)?;
    let mut rows = 0;
    while parser.next_row()?.is_some() {
        rows += 1;
    }
    let has_id = parser.has_id.unwrap_or(false);
    let shape = parser.shape.take().unwrap_or_default();
    let separator = shape.other_separator();
    let empty_cells = shape.empty_cells();
    let mut reader = parser.into_inner();
    // The parsers stop at end of input, but draining makes the hash cover every byte even if
    // one of them ever stops early.
    io::copy(&mut reader, &mut io::sink()).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let hash = hex(&reader.hasher.finalize());
    Ok(DatasetInfo {
        path: path.to_path_buf(),
        format,
        hash,
        rows,
        columns: shape.columns,
        fields: shape.fields,
        has_id,
        separator,
        empty_cells,
    })
}

/// Every row of `content` held in memory (a version from the store), validated as `scan`
/// validates a file, with what a scan finds; `label` names it in errors.
pub fn rows_of_text(
    label: &Path,
    format: DatasetFormat,
    content: &str,
) -> Result<(DatasetInfo, Vec<Row>), DatasetError> {
    let reader = HashingReader {
        inner: content.as_bytes(),
        hasher: Sha256::new(),
    };
    let mut parser = Parser::new(label, format, reader, true)?;
    let mut rows = Vec::new();
    while let Some(row) = parser.next_row()? {
        rows.push(row);
    }
    let has_id = parser.has_id.unwrap_or(false);
    let shape = parser.shape.take().unwrap_or_default();
    let separator = shape.other_separator();
    let empty_cells = shape.empty_cells();
    let mut reader = parser.into_inner();
    io::copy(&mut reader, &mut io::sink()).map_err(|source| DatasetError::Io {
        path: label.to_path_buf(),
        source,
    })?;
    let hash = hex(&reader.hasher.finalize());
    let info = DatasetInfo {
        path: label.to_path_buf(),
        format,
        hash,
        rows: rows.len(),
        columns: shape.columns,
        fields: shape.fields,
        has_id,
        separator,
        empty_cells,
    };
    Ok((info, rows))
}

/// Streams rows in file order (each row validated as in `scan`; the same errors), reading the
/// file through a buffer rather than loading it, so a later malformed row is only reported when
/// the iterator reaches it; `scan` first to fail before doing any work.
///
/// Problems that can be seen without reading past the first data row (an unknown format, an
/// unreadable file, a bad CSV header, a file without data rows) are returned here rather than
/// from the iterator. The iterator ends after the first error it yields.
pub fn rows(path: &Path) -> Result<Rows, DatasetError> {
    let format = format_of(path)?;
    let file = HashingReader {
        inner: open(path)?,
        hasher: Sha256::new(),
    };
    let mut parser = Parser::new(path, format, file, false)?;
    // Peeking at the first row makes an empty file fail here, before the caller starts work.
    let peeked = parser.next_row()?;
    Ok(Rows {
        parser,
        format,
        peeked,
        done: false,
    })
}

/// The rows of a dataset, read lazily; see [`rows`].
pub struct Rows {
    parser: Parser<HashingReader<File>>,
    format: DatasetFormat,
    peeked: Option<Row>,
    done: bool,
}

impl Rows {
    pub fn format(&self) -> DatasetFormat {
        self.format
    }

    /// The sha256 of the bytes these rows were parsed from, read to the end of the file: the
    /// content the results really came from, whatever happened to the file meanwhile.
    pub fn content_hash(self) -> Result<String, DatasetError> {
        let path = self.parser.path.clone();
        let mut reader = self.parser.into_inner();
        io::copy(&mut reader, &mut io::sink())
            .map_err(|source| DatasetError::Io { path, source })?;
        Ok(hex(&reader.hasher.finalize()))
    }
}

impl fmt::Debug for Rows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rows")
            .field("path", &self.parser.path)
            .field("format", &self.format)
            .field("next_index", &self.parser.index)
            .finish_non_exhaustive()
    }
}

impl Iterator for Rows {
    type Item = Result<Row, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(row) = self.peeked.take() {
            return Some(Ok(row));
        }
        if self.done {
            return None;
        }
        match self.parser.next_row() {
            Ok(Some(row)) => Some(Ok(row)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                // After an I/O error or a broken CSV record the reader's position is not
                // trustworthy, so stop rather than risk yielding garbage or looping.
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

fn format_of(path: &Path) -> Result<DatasetFormat, DatasetError> {
    // A missing file is said as such, whatever its name ends with (`tickets.cvs`).
    if !path.exists() {
        return Err(DatasetError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, missing_file(path)),
        });
    }
    let ext = path
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => Ok(DatasetFormat::Csv),
        Some("jsonl" | "ndjson") => Ok(DatasetFormat::Jsonl),
        _ => Err(DatasetError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// "no such file", with the nearest name in its folder when one is close (a typo).
fn missing_file(path: &Path) -> String {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return "no such file".into();
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nearest = std::fs::read_dir(&folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .map(|candidate| (strsim::damerau_levenshtein(name, &candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    match nearest {
        Some((_, candidate)) => format!("no such file (did you mean {candidate}?)"),
        None => "no such file".into(),
    }
}

fn open(path: &Path) -> Result<File, DatasetError> {
    File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Feeds every byte read through a Sha256, so `scan` hashes and parses in a single read.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Columns and dotted fields seen so far (only collected by `scan`).
#[derive(Debug, Default)]
struct Shape {
    columns: Vec<String>,
    column_set: HashSet<String>,
    fields: Vec<String>,
    field_set: HashSet<String>,
    /// Reused buffer for the dotted path being visited, so known paths cost no allocation.
    path: String,
    /// CSV: the byte between fields.
    separator: u8,
    /// CSV: per column (in header order), the rows whose cell is empty.
    empty: Vec<usize>,
}

impl Shape {
    /// The separator when it is not a comma (a file exported with semicolons or tabs).
    fn other_separator(&self) -> Option<char> {
        matches!(self.separator, b';' | b'\t').then_some(self.separator as char)
    }

    fn empty_cells(&self) -> Vec<(String, usize)> {
        self.columns
            .iter()
            .zip(&self.empty)
            .filter(|(_, n)| **n > 0)
            .map(|(name, n)| (name.clone(), *n))
            .collect()
    }
}

impl Shape {
    fn add_column(&mut self, key: &str) {
        if !self.column_set.contains(key) {
            self.column_set.insert(key.to_owned());
            self.columns.push(key.to_owned());
        }
    }

    fn add_current_field(&mut self) {
        if self.fields.len() < MAX_FIELDS && !self.field_set.contains(self.path.as_str()) {
            self.field_set.insert(self.path.clone());
            self.fields.push(self.path.clone());
        }
    }
}

enum Source<R: Read> {
    // `::csv` is the csv crate; `csv::Tail` is this module's own `csv` file.
    Csv {
        reader: ::csv::Reader<csv::Tail<R>>,
        headers: Vec<String>,
        record: ::csv::ByteRecord,
    },
    Jsonl {
        reader: BufReader<R>,
        buf: Vec<u8>,
        line: u64,
    },
}

/// The shared machinery behind `rows` and `scan`: parses, validates and identifies rows.
struct Parser<R: Read> {
    path: PathBuf,
    source: Source<R>,
    /// Index the next row will get.
    index: usize,
    /// Whether rows carry an `id`: known from the CSV header, from the first JSONL row.
    has_id: Option<bool>,
    /// Hashes rather than strings keep this at 8 bytes a row; a 64-bit collision among a
    /// million ids is about one in thirty million, an acceptable false alarm.
    seen_ids: HashSet<u64>,
    shape: Option<Shape>,
}

impl<R: Read> Parser<R> {
    fn new(
        path: &Path,
        format: DatasetFormat,
        input: R,
        collect: bool,
    ) -> Result<Self, DatasetError> {
        let mut shape = collect.then(Shape::default);
        let (source, has_id) = match format {
            DatasetFormat::Csv => csv::source(path, input, shape.as_mut())?,
            DatasetFormat::Jsonl => jsonl::source(input),
        };
        Ok(Parser {
            path: path.to_path_buf(),
            source,
            index: 0,
            has_id,
            seen_ids: HashSet::new(),
            shape,
        })
    }

    fn into_inner(self) -> R {
        match self.source {
            Source::Csv { reader, .. } => reader.into_inner().inner,
            Source::Jsonl { reader, .. } => reader.into_inner(),
        }
    }

    fn parse_error(&self, line: u64, message: impl Into<String>) -> DatasetError {
        DatasetError::Parse {
            path: self.path.clone(),
            line,
            message: message.into(),
        }
    }

    /// The next data row; `Err(Empty)` when the file ends before the first one.
    fn next_row(&mut self) -> Result<Option<Row>, DatasetError> {
        let next = match &mut self.source {
            Source::Csv {
                reader,
                headers,
                record,
            } => csv::next_csv(&self.path, reader, headers, record)?,
            Source::Jsonl { reader, buf, line } => {
                jsonl::next_jsonl(&self.path, reader, buf, line, self.shape.as_mut())?
            }
        };
        let Some((line, values)) = next else {
            if self.index == 0 {
                return Err(DatasetError::Empty {
                    path: self.path.clone(),
                });
            }
            return Ok(None);
        };
        if let (Some(shape), Source::Csv { headers, .. }) = (self.shape.as_mut(), &self.source) {
            shape.empty.resize(headers.len(), 0);
            for (count, name) in shape.empty.iter_mut().zip(headers) {
                if values.get(name).is_some_and(|v| v.as_str() == Some("")) {
                    *count += 1;
                }
            }
        }
        let id = self.identify(&values, line)?;
        let row = Row {
            index: self.index,
            id,
            values,
        };
        self.index += 1;
        Ok(Some(row))
    }

    fn identify(&mut self, values: &JsonObject, line: u64) -> Result<String, DatasetError> {
        let value = values.get(ID);
        // JSONL has no header, so the first row decides whether ids are in use; every later
        // row must agree, or ids would silently mix file values and positions.
        let has_id = *self.has_id.get_or_insert(value.is_some());
        if !has_id {
            if value.is_some() {
                return Err(self.parse_error(
                    line,
                    "row has an \"id\" but the first row does not (give every row an id, or none)",
                ));
            }
            return Ok(self.index.to_string());
        }
        let id = match value {
            None => {
                return Err(self.parse_error(
                    line,
                    "row has no \"id\" (the first row has one, so every row needs one)",
                ));
            }
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) => return Err(self.parse_error(line, "empty \"id\"")),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(self.parse_error(
                    line,
                    format!("\"id\" must be a string or a number, found {}", kind(other)),
                ));
            }
        };
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        if !self.seen_ids.insert(hasher.finish()) {
            return Err(self.parse_error(line, format!("duplicate id \"{id}\"")));
        }
        Ok(id)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
