//! Datasets: stream CSV / JSONL rows, content hash, column checks.
//!
//! A dataset may hold a million rows, so nothing here keeps rows around: `rows` streams them
//! from a buffered reader and `scan` makes one validating pass (hashing the bytes as they go
//! by) so a malformed file is reported, with its line, before any request is sent.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
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
/// Large reads keep the per-syscall overhead negligible on million-row files.
const BUFFER: usize = 256 * 1024;

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
    })
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
    let file = open(path)?;
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
    parser: Parser<File>,
    format: DatasetFormat,
    peeked: Option<Row>,
    done: bool,
}

impl Rows {
    pub fn format(&self) -> DatasetFormat {
        self.format
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
    Csv {
        reader: csv::Reader<Tail<R>>,
        headers: Vec<String>,
        record: csv::ByteRecord,
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
            DatasetFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    // The header is read by hand so its line and errors are ours to report.
                    .has_headers(false)
                    // Ragged rows are checked here to report them in this module's words.
                    .flexible(true)
                    .buffer_capacity(BUFFER)
                    .from_reader(Tail::new(input));
                let mut record = csv::ByteRecord::new();
                let headers = read_csv_header(path, &mut reader, &mut record)?;
                if let Some(shape) = shape.as_mut() {
                    shape.columns = headers.clone();
                    shape.fields = headers.clone();
                }
                let has_id = headers.iter().any(|h| h == ID);
                let source = Source::Csv {
                    reader,
                    headers,
                    record,
                };
                (source, Some(has_id))
            }
            DatasetFormat::Jsonl => {
                let source = Source::Jsonl {
                    reader: BufReader::with_capacity(BUFFER, input),
                    buf: Vec::new(),
                    line: 0,
                };
                (source, None)
            }
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
            } => next_csv(&self.path, reader, headers, record)?,
            Source::Jsonl { reader, buf, line } => {
                next_jsonl(&self.path, reader, buf, line, self.shape.as_mut())?
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

/// Keeps a copy of the latest chunk handed to the CSV reader, so the byte just before its
/// stopping point can be looked at (see `csv_line`), and follows its quoting (see `Quotes`).
struct Tail<R> {
    inner: R,
    chunk: Vec<u8>,
    /// File offset of `chunk[0]`.
    start: u64,
    quotes: Quotes,
}

impl<R> Tail<R> {
    fn new(inner: R) -> Self {
        Tail {
            inner,
            chunk: Vec::new(),
            start: 0,
            quotes: Quotes::default(),
        }
    }

    fn byte_at(&self, offset: u64) -> Option<u8> {
        let at = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        self.chunk.get(at).copied()
    }
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.start += self.chunk.len() as u64;
            self.chunk.clear();
            self.chunk.extend_from_slice(&buf[..n]);
            self.quotes.feed(&buf[..n]);
        }
        Ok(n)
    }
}

/// Follows the quoting of every byte handed to the CSV reader, the way csv-core reads it.
///
/// csv-core accepts a quoted field that is still open at the end of the file: one stray `"`
/// would silently turn every later line into a single cell. This notices it.
#[derive(Debug, Default)]
struct Quotes {
    state: QuoteState,
    /// Newlines fed so far, and the 1-based line of the quote that opened the current field.
    newlines: u64,
    opened_on: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    #[default]
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: doubled (`""`) it is a literal quote, else the field ends.
    QuoteInQuoted,
}

impl Quotes {
    fn feed(&mut self, bytes: &[u8]) {
        use QuoteState::*;
        for &b in bytes {
            let ends_field = matches!(b, b',' | b'\n' | b'\r');
            self.state = match (self.state, b) {
                (FieldStart, b'"') => {
                    self.opened_on = self.newlines + 1;
                    Quoted
                }
                (FieldStart | Unquoted, _) if ends_field => FieldStart,
                (FieldStart | Unquoted, _) => Unquoted,
                (Quoted, b'"') => QuoteInQuoted,
                (Quoted, _) => Quoted,
                (QuoteInQuoted, b'"') => Quoted,
                (QuoteInQuoted, _) if ends_field => FieldStart,
                // csv-core keeps text after a closing quote as part of the field.
                (QuoteInQuoted, _) => Unquoted,
            };
            self.newlines += u64::from(b == b'\n');
        }
    }

    /// The line of a quote still open after everything fed so far.
    fn unclosed(&self) -> Option<u64> {
        (self.state == QuoteState::Quoted).then_some(self.opened_on)
    }
}

/// The physical line (1-based) on which the record just read starts.
///
/// The csv crate's record position is where the parser stood after the previous record, which
/// is off by the blank lines it skipped and, in CRLF files, by the `\n` it had not consumed
/// yet. Its count of `\n` bytes consumed so far is exact, though, so count back from the end of
/// the record instead: past the newlines inside quoted fields and the terminating `\n`, if the
/// record ended on one. The csv reader only refills its buffer once it is used up, so the byte
/// before its position is always in `Tail`'s latest chunk.
fn csv_line<R: Read>(reader: &csv::Reader<Tail<R>>, record: &csv::ByteRecord) -> u64 {
    let end = reader.position();
    let inside = record.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
    let terminator = end
        .byte()
        .checked_sub(1)
        .and_then(|last| reader.get_ref().byte_at(last))
        == Some(b'\n');
    end.line()
        .saturating_sub(inside + u64::from(terminator))
        .max(1)
}

fn csv_error(path: &Path, error: csv::Error) -> DatasetError {
    let line = error.position().map_or(0, |p| p.line());
    let message = error.to_string();
    match error.into_kind() {
        csv::ErrorKind::Io(source) => DatasetError::Io {
            path: path.to_path_buf(),
            source,
        },
        _ => DatasetError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        },
    }
}

fn read_csv_header<R: Read>(
    path: &Path,
    reader: &mut csv::Reader<Tail<R>>,
    record: &mut csv::ByteRecord,
) -> Result<Vec<String>, DatasetError> {
    if !reader
        .read_byte_record(record)
        .map_err(|e| csv_error(path, e))?
    {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    let line = csv_line(reader, record);
    let parse = |message: String| DatasetError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut headers: Vec<String> = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let name = std::str::from_utf8(field)
            .map_err(|_| parse(format!("header column {} is not valid UTF-8", i + 1)))?;
        if field.contains(&0) {
            return Err(parse(format!(
                "header column {} contains a NUL byte (is the file UTF-16 or binary?)",
                i + 1
            )));
        }
        // csv-core strips a BOM only when it arrives whole in the first read; this catches the rest.
        let name = if i == 0 {
            name.strip_prefix('\u{feff}').unwrap_or(name)
        } else {
            name
        };
        if name.trim().is_empty() {
            return Err(parse(format!("header column {} has an empty name", i + 1)));
        }
        if headers.iter().any(|h| h == name) {
            return Err(parse(format!(
                "duplicate column name \"{name}\" in the header"
            )));
        }
        headers.push(name.to_owned());
    }
    Ok(headers)
}

fn next_csv<R: Read>(
    path: &Path,
    reader: &mut csv::Reader<Tail<R>>,
    headers: &[String],
    record: &mut csv::ByteRecord,
) -> Result<Option<(u64, JsonObject)>, DatasetError> {
    if !reader
        .read_byte_record(record)
        .map_err(|e| csv_error(path, e))?
    {
        if let Some(line) = reader.get_ref().quotes.unclosed() {
            return Err(DatasetError::Parse {
                path: path.to_path_buf(),
                line,
                message: "a quoted field opened on this line is never closed (unbalanced \")"
                    .into(),
            });
        }
        return Ok(None);
    }
    let line = csv_line(reader, record);
    let parse = |message: String| DatasetError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    if record.len() != headers.len() {
        return Err(parse(format!(
            "expected {} fields (as in the header), found {}",
            headers.len(),
            record.len()
        )));
    }
    let mut values = JsonObject::new();
    for (name, field) in headers.iter().zip(record.iter()) {
        let text = std::str::from_utf8(field)
            .map_err(|_| parse(format!("column \"{name}\" is not valid UTF-8")))?;
        if field.contains(&0) {
            return Err(parse(format!(
                "column \"{name}\" contains a NUL byte (is the file UTF-16 or binary?)"
            )));
        }
        values.insert(name.clone(), Value::String(text.to_owned()));
    }
    Ok(Some((line, values)))
}

fn next_jsonl<R: Read>(
    path: &Path,
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
    line: &mut u64,
    shape: Option<&mut Shape>,
) -> Result<Option<(u64, JsonObject)>, DatasetError> {
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', buf)
            .map_err(|source| DatasetError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        *line += 1;
        let mut bytes = buf.as_slice();
        if *line == 1 {
            bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parse = |message: String| DatasetError::Parse {
            path: path.to_path_buf(),
            line: *line,
            message,
        };
        let value = match shape {
            Some(shape) => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                ValueSeed { shape, depth: 0 }
                    .deserialize(&mut de)
                    .and_then(|value| de.end().map(|()| value))
            }
            None => serde_json::from_slice::<Value>(bytes),
        }
        .map_err(|e| parse(json_message(&e)))?;
        return match value {
            Value::Object(values) => Ok(Some((*line, values))),
            other => Err(parse(format!(
                "expected a JSON object, found {}",
                kind(&other)
            ))),
        };
    }
}

/// serde_json's message with its "at line 1 column N" rewritten: within one line only the
/// column means anything, and the file line is already in the error.
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) if error.line() > 0 => &text[..at],
        _ => text.as_str(),
    };
    if error.column() > 0 {
        format!("invalid JSON at column {}: {message}", error.column())
    } else {
        format!("invalid JSON: {message}")
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

/// Builds a `Value` exactly as serde_json would while recording columns and dotted fields in
/// file order: serde_json's own map is sorted, so the order is only visible while parsing.
struct ValueSeed<'a> {
    shape: &'a mut Shape,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Arrays are leaves for dotted paths, so their elements need no recording.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = JsonObject::new();
        while let Some(key) = map.next_key::<String>()? {
            let start = self.shape.path.len();
            if start > 0 {
                self.shape.path.push('.');
            }
            self.shape.path.push_str(&key);
            let value = map.next_value_seed(ValueSeed {
                shape: &mut *self.shape,
                depth: self.depth + 1,
            })?;
            if self.depth == 0 {
                self.shape.add_column(&key);
            }
            if !value.is_object() {
                self.shape.add_current_field();
            }
            self.shape.path.truncate(start);
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write fixture");
        path
    }

    fn collect(path: &Path) -> Result<Vec<Row>, DatasetError> {
        rows(path)?.collect()
    }

    /// Runs both entry points, checks they agree, and returns the rows.
    fn load(path: &Path) -> Result<Vec<Row>, DatasetError> {
        let streamed = collect(path);
        let scanned = scan(path);
        match (&streamed, &scanned) {
            (Ok(rows), Ok(info)) => assert_eq!(info.rows, rows.len(), "{}", path.display()),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("rows() and scan() disagree: {streamed:?} vs {scanned:?}"),
        }
        streamed
    }

    fn parse_line(error: &DatasetError) -> u64 {
        match error {
            DatasetError::Parse { line, .. } => *line,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn strings(row: &Row) -> Vec<String> {
        row.values
            .values()
            .map(|v| v.as_str().expect("csv values are strings").to_owned())
            .collect()
    }

    #[test]
    fn csv_quoting() {
        // (name, file content, expected column → value pairs)
        type Case = (
            &'static str,
            &'static str,
            &'static [(&'static str, &'static str)],
        );
        let cases: &[Case] = &[
            ("plain", "a,b\n1,2\n", &[("a", "1"), ("b", "2")]),
            ("comma", "a,b\n\"x, y\",2\n", &[("a", "x, y"), ("b", "2")]),
            (
                "doubled quote",
                "a,b\n\"say \"\"hi\"\"\",2\n",
                &[("a", "say \"hi\""), ("b", "2")],
            ),
            (
                "newline",
                "a,b\n\"one\ntwo\",2\n",
                &[("a", "one\ntwo"), ("b", "2")],
            ),
            ("crlf", "a,b\r\n1,2\r\n", &[("a", "1"), ("b", "2")]),
            (
                "trailing blank lines",
                "a,b\n1,2\n\n\n",
                &[("a", "1"), ("b", "2")],
            ),
            ("no final newline", "a,b\n1,2", &[("a", "1"), ("b", "2")]),
            ("empty fields", "a,b\n,\n", &[("a", ""), ("b", "")]),
            (
                "unicode",
                "a,b\nnaïve,日本\n",
                &[("a", "naïve"), ("b", "日本")],
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, content, expected) in cases {
            let path = write(&dir, "data.csv", content.as_bytes());
            let rows = load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(rows.len(), 1, "{name}");
            let want: JsonObject = expected
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            assert_eq!(rows[0].values, want, "{name}");
            assert_eq!(rows[0].id, "0", "{name}");
        }
    }

    #[test]
    fn bom_is_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(&dir, "bom.csv", b"\xef\xbb\xbfid,text\nr1,hello\n");
        let info = scan(&csv).unwrap();
        assert_eq!(info.columns, ["id", "text"]);
        assert!(info.has_id);
        let rows = collect(&csv).unwrap();
        assert_eq!(rows[0].id, "r1");
        assert!(rows[0].values.contains_key("id"));

        let jsonl = write(
            &dir,
            "bom.jsonl",
            b"\xef\xbb\xbf{\"id\": \"r1\", \"x\": 1}\n",
        );
        let info = scan(&jsonl).unwrap();
        assert_eq!(info.columns, ["id", "x"]);
        let rows = collect(&jsonl).unwrap();
        assert_eq!(rows[0].id, "r1");
    }

    #[test]
    fn ragged_rows_name_their_line() {
        let cases: &[(&str, &str, u64)] = &[
            ("too few", "a,b\n1,2\n3\n", 3),
            ("too many", "a,b\n1,2\n3,4,5\n", 3),
            ("after multi-line field", "a,b\n\"x\ny\nz\",2\n3\n", 5),
            ("after blank line", "a,b\n1,2\n\n3\n", 4),
            ("crlf", "a,b\r\n1,2\r\n3\r\n", 3),
            ("crlf after blank line", "a,b\r\n1,2\r\n\r\n3\r\n", 4),
            (
                "crlf after multi-line field",
                "a,b\r\n\"x\r\ny\",2\r\n3\r\n",
                4,
            ),
            ("last line without newline", "a,b\n\"x\ny\",2\n\n3", 5),
            ("leading blank lines", "\n\na,b\n1,2\n3\n", 5),
            ("first data row", "a,b\n1\n", 2),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, content, line) in cases {
            let path = write(&dir, "ragged.csv", content.as_bytes());
            let error = load(&path).expect_err(name);
            assert_eq!(parse_line(&error), *line, "{name}: {error}");
            let text = error.to_string();
            assert!(text.contains("ragged.csv"), "{name}: {text}");
            assert!(text.contains(&format!("line {line}")), "{name}: {text}");
        }
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let cases: &[(&str, &[u8], u64)] = &[
            ("csv row", b"a,b\n1,2\n3,\xff\xfe\n", 3),
            ("csv header", b"a,\xff\n1,2\n", 1),
            ("jsonl", b"{\"a\": 1}\n{\"a\": \"\xff\"}\n", 2),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, content, line) in cases {
            let file = if name.starts_with("csv") {
                "bad.csv"
            } else {
                "bad.jsonl"
            };
            let path = write(&dir, file, content);
            let error = load(&path).expect_err(name);
            assert_eq!(parse_line(&error), *line, "{name}: {error}");
        }
    }

    #[test]
    fn unclosed_quotes_and_nul_bytes_name_their_line() {
        let cases: &[(&str, &[u8], u64, &str)] = &[
            (
                "open to the end",
                b"a,b\n1,\"x\n2,y\n3,z\n",
                2,
                "never closed",
            ),
            ("crlf", b"a,b\r\n1,2\r\n3,\"x\r\n", 3, "never closed"),
            ("header", b"\"a,b\n1,2\n", 1, "never closed"),
            ("after a doubled quote", b"a\n\"x\"\"\n", 2, "never closed"),
            ("nul in a row", b"a,b\n1,x\x00y\n", 2, "NUL byte"),
            ("nul in the header", b"a,\x00b\n1,2\n", 1, "NUL byte"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, content, line, message) in cases {
            let path = write(&dir, "q.csv", content);
            let error = load(&path).expect_err(name);
            assert_eq!(parse_line(&error), *line, "{name}: {error}");
            assert!(error.to_string().contains(message), "{name}: {error}");
        }
        // Quotes that csv-core reads leniently, and closed ones, stay accepted.
        let fine: &[&[u8]] = &[
            b"a,b\n\"x, \"\"y\"\"\",2\n",
            b"a,b\n\"one\ntwo\",2\n",
            b"a,b\nx\"y,2\n",
            b"a,b\n\"x\"y,2\n",
            b"a,b\n\"x\",\"\"",
        ];
        for content in fine {
            let path = write(&dir, "fine.csv", content);
            assert!(load(&path).is_ok(), "{}", String::from_utf8_lossy(content));
        }
    }

    #[test]
    fn bad_headers_are_errors() {
        let cases: &[(&str, &str, &str)] = &[
            ("duplicate", "a,b,a\n1,2,3\n", "duplicate column name \"a\""),
            (
                "empty",
                "a,,c\n1,2,3\n",
                "header column 2 has an empty name",
            ),
            ("blank", "a, \n1,2\n", "header column 2 has an empty name"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, content, message) in cases {
            let path = write(&dir, "head.csv", content.as_bytes());
            let error = load(&path).expect_err(name);
            assert_eq!(parse_line(&error), 1, "{name}");
            assert!(error.to_string().contains(message), "{name}: {error}");
        }
    }

    #[test]
    fn id_column_gives_ids() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(&dir, "ids.csv", b"text,id\nhello,a-1\nbye,b 2\n");
        let rows = load(&csv).unwrap();
        let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a-1", "b 2"]);
        assert_eq!(rows[1].index, 1);
        assert!(scan(&csv).unwrap().has_id);

        let jsonl = write(
            &dir,
            "ids.jsonl",
            b"{\"id\": 7, \"q\": \"x\"}\n{\"id\": \"s\", \"q\": \"y\"}\n{\"id\": 1.5, \"q\": \"z\"}\n",
        );
        let rows = load(&jsonl).unwrap();
        let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["7", "s", "1.5"]);
        assert_eq!(
            rows[0].values["id"],
            json!(7),
            "values keep their JSON type"
        );
        assert!(scan(&jsonl).unwrap().has_id);
    }

    #[test]
    fn bad_ids_are_errors() {
        let cases: &[(&str, &str, &[u8], u64, &str)] = &[
            (
                "csv empty id",
                "e.csv",
                b"id,x\na,1\n,2\n",
                3,
                "empty \"id\"",
            ),
            (
                "csv duplicate",
                "d.csv",
                b"id,x\na,1\nb,2\na,3\n",
                4,
                "duplicate id \"a\"",
            ),
            (
                "jsonl duplicate number",
                "d.jsonl",
                b"{\"id\": 1}\n{\"id\": 2}\n{\"id\": 1}\n",
                3,
                "duplicate id \"1\"",
            ),
            (
                "jsonl number equals string",
                "d.jsonl",
                b"{\"id\": 1}\n{\"id\": \"1\"}\n",
                2,
                "duplicate id \"1\"",
            ),
            (
                "jsonl missing",
                "m.jsonl",
                b"{\"id\": 1}\n{\"x\": 2}\n",
                2,
                "no \"id\"",
            ),
            (
                "jsonl late id",
                "l.jsonl",
                b"{\"x\": 1}\n{\"id\": 2}\n",
                2,
                "first row does not",
            ),
            (
                "jsonl null id",
                "n.jsonl",
                b"{\"id\": null}\n",
                1,
                "found null",
            ),
            (
                "jsonl object id",
                "o.jsonl",
                b"{\"id\": {\"a\": 1}}\n",
                1,
                "found an object",
            ),
            (
                "jsonl empty id",
                "e.jsonl",
                b"{\"id\": 1}\n{\"id\": \"\"}\n",
                2,
                "empty \"id\"",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, file, content, line, message) in cases {
            let path = write(&dir, file, content);
            let error = load(&path).expect_err(name);
            assert_eq!(parse_line(&error), *line, "{name}: {error}");
            assert!(error.to_string().contains(message), "{name}: {error}");
        }
    }

    #[test]
    fn no_id_column_uses_positions() {
        let dir = tempfile::tempdir().unwrap();
        for (file, content) in [
            ("n.csv", &b"ID,x\na,1\na,2\nb,3\n"[..]),
            ("n.jsonl", &b"{\"x\": 1}\n\n{\"x\": 1}\n{\"x\": 1}\n"[..]),
        ] {
            let path = write(&dir, file, content);
            let rows = load(&path).unwrap();
            let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids, ["0", "1", "2"], "{file}");
            let indexes: Vec<_> = rows.iter().map(|r| r.index).collect();
            assert_eq!(indexes, [0, 1, 2], "{file}");
            assert!(!scan(&path).unwrap().has_id, "{file}");
        }
    }

    #[test]
    fn jsonl_nested_objects_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "nested.ndjson",
            br#"{"z": 1, "customer": {"name": "Ann", "address": {"city": "Oslo"}}, "tags": ["a", {"b": 1}]}
{"m": true, "customer": {"name": "Bo", "vip": false}, "empty": {}}
"#,
        );
        let info = scan(&path).unwrap();
        assert_eq!(info.format, DatasetFormat::Jsonl);
        assert_eq!(info.columns, ["z", "customer", "tags", "m", "empty"]);
        assert_eq!(
            info.fields,
            [
                "z",
                "customer.name",
                "customer.address.city",
                "tags",
                "m",
                "customer.vip"
            ]
        );
        let rows = collect(&path).unwrap();
        assert_eq!(
            crate::template::lookup(&rows[0].values, "customer.address.city"),
            Some(&json!("Oslo"))
        );
        assert_eq!(rows[0].values["tags"], json!(["a", {"b": 1}]));
        assert_eq!(rows[1].values["empty"], json!({}));
    }

    #[test]
    fn fields_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = String::new();
        for i in 0..1_500 {
            content.push_str(&format!("{{\"k{i}\": {{\"v\": {i}}}}}\n"));
        }
        let path = write(&dir, "wide.jsonl", content.as_bytes());
        let info = scan(&path).unwrap();
        assert_eq!(info.fields.len(), MAX_FIELDS);
        assert_eq!(info.fields[0], "k0.v");
        assert_eq!(info.columns.len(), 1_500);
    }

    #[test]
    fn csv_fields_equal_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "c.csv", b"b,a,customer.name\n1,2,3\n");
        let info = scan(&path).unwrap();
        assert_eq!(info.columns, ["b", "a", "customer.name"]);
        assert_eq!(info.fields, info.columns);
        assert_eq!(info.format, DatasetFormat::Csv);
        assert!(!info.has_id);
    }

    #[test]
    fn jsonl_bad_lines_name_their_line() {
        let cases: &[(&str, &str, u64, &str)] = &[
            (
                "array",
                "{\"a\": 1}\n[1, 2]\n",
                2,
                "expected a JSON object, found an array",
            ),
            ("string", "{\"a\": 1}\n\n\"x\"\n", 3, "found a string"),
            (
                "invalid",
                "{\"a\": 1}\n{\"a\": }\n",
                2,
                "invalid JSON at column",
            ),
            (
                "two values",
                "{\"a\": 1} {\"b\": 2}\n",
                1,
                "trailing characters",
            ),
            ("truncated", "{\"a\": 1}\n{\"a\": 1", 2, "EOF"),
            (
                "after blank lines",
                "\n  \n{\"a\": 1}\n\t\nnope\n",
                5,
                "invalid JSON",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, content, line, message) in cases {
            let path = write(&dir, "bad.jsonl", content.as_bytes());
            let error = load(&path).expect_err(name);
            assert_eq!(parse_line(&error), *line, "{name}: {error}");
            let text = error.to_string();
            assert!(text.contains(message), "{name}: {text}");
            assert!(
                text.contains(&format!("bad.jsonl, line {line}: ")),
                "{name}: {text}"
            );
        }
    }

    #[test]
    fn jsonl_blank_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "b.jsonl", b"\n{\"a\": 1}\r\n   \n\n{\"a\": 2}\n\n");
        let rows = load(&path).unwrap();
        let values: Vec<_> = rows.iter().map(|r| r.values["a"].clone()).collect();
        assert_eq!(values, [json!(1), json!(2)]);
        assert_eq!(rows[1].index, 1);
    }

    #[test]
    fn files_without_rows_are_empty() {
        let cases: &[(&str, &[u8])] = &[
            ("e.csv", b""),
            ("h.csv", b"a,b\n"),
            ("hb.csv", b"a,b\n\n\n"),
            ("bom.csv", b"\xef\xbb\xbf"),
            ("e.jsonl", b""),
            ("blank.jsonl", b"\n  \n\r\n"),
            ("bom.jsonl", b"\xef\xbb\xbf\n"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (file, content) in cases {
            let path = write(&dir, file, content);
            let error = scan(&path).expect_err(file);
            assert!(
                matches!(error, DatasetError::Empty { .. }),
                "{file}: {error:?}"
            );
            assert!(error.to_string().ends_with("no data rows"), "{file}");
            let error = rows(&path).expect_err(file);
            assert!(
                matches!(error, DatasetError::Empty { .. }),
                "{file}: {error:?}"
            );
        }
    }

    #[test]
    fn unknown_extension() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["data.txt", "data", "data.json", "csv"] {
            let path = write(&dir, file, b"a,b\n1,2\n");
            let error = scan(&path).expect_err(file);
            assert!(
                matches!(error, DatasetError::UnknownFormat { .. }),
                "{file}"
            );
            let text = error.to_string();
            assert!(text.contains(".csv") && text.contains(".jsonl"), "{text}");
            assert!(matches!(
                rows(&path),
                Err(DatasetError::UnknownFormat { .. })
            ));
        }
        let path = write(&dir, "DATA.CSV", b"a\n1\n");
        assert_eq!(rows(&path).unwrap().format(), DatasetFormat::Csv);
    }

    #[test]
    fn missing_file_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.csv");
        let error = scan(&path).expect_err("missing");
        assert!(matches!(error, DatasetError::Io { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.csv"));
    }

    #[test]
    fn hash_is_sha256_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = String::from("\u{feff}id,text\n");
        for i in 0..20_000 {
            content.push_str(&format!("r{i},\"line, {i}\"\n"));
        }
        for (file, bytes) in [
            ("h.csv", content.as_bytes().to_vec()),
            ("h.jsonl", b"{\"a\": 1}\n\n{\"a\": 2}\n\n\n".to_vec()),
        ] {
            let path = write(&dir, file, &bytes);
            let info = scan(&path).unwrap();
            let direct = hex(&Sha256::digest(std::fs::read(&path).unwrap()));
            assert_eq!(info.hash, direct, "{file}");
            assert_eq!(info.hash.len(), 64);

            let mut changed = bytes.clone();
            let last = changed
                .iter()
                .rposition(u8::is_ascii_digit)
                .expect("a digit");
            changed[last] = if changed[last] == b'1' { b'2' } else { b'1' };
            std::fs::write(&path, &changed).unwrap();
            let other = scan(&path).unwrap();
            assert_ne!(other.hash, info.hash, "{file}");
            assert_eq!(other.hash, hex(&Sha256::digest(&changed)), "{file}");
        }
    }

    #[test]
    fn scan_counts_what_rows_yields() {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("id,text\n");
        let mut jsonl = String::new();
        for i in 0..5_000 {
            csv.push_str(&format!("{i},\"multi\nline {i}\"\n"));
            jsonl.push_str(&format!("{{\"id\": {i}, \"n\": {{\"v\": {i}}}}}\n"));
            if i % 7 == 0 {
                jsonl.push('\n');
            }
        }
        for (file, content) in [("c.csv", csv), ("j.jsonl", jsonl)] {
            let path = write(&dir, file, content.as_bytes());
            let info = scan(&path).unwrap();
            let rows = collect(&path).unwrap();
            assert_eq!(info.rows, 5_000, "{file}");
            assert_eq!(info.rows, rows.len(), "{file}");
            assert_eq!(rows[4_999].id, "4999", "{file}");
        }
    }

    #[test]
    fn iteration_stops_after_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "s.csv", b"a,b\n1,2\n3\n4,5\n");
        let mut rows = rows(&path).unwrap();
        assert_eq!(rows.format(), DatasetFormat::Csv);
        assert!(rows.next().unwrap().is_ok());
        assert_eq!(parse_line(&rows.next().unwrap().unwrap_err()), 3);
        assert!(rows.next().is_none());
        assert!(rows.next().is_none());
    }

    fn cell() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ]{0,6}",
            "[a-z,\"\n\r é日😀\u{feff}]{0,8}",
            Just(String::new()),
            Just("\"\"".to_owned()),
        ]
    }

    fn table() -> impl Strategy<Value = (usize, Vec<Vec<String>>)> {
        (1usize..5).prop_flat_map(|width| {
            (
                Just(width),
                prop::collection::vec(prop::collection::vec(cell(), width), 1..8),
            )
        })
    }

    #[test]
    fn line_numbers_survive_buffer_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        for terminator in ["\n", "\r\n"] {
            let mut content = format!("id,text{terminator}");
            let mut line = 2;
            for i in 0..40_000 {
                if i % 3 == 0 {
                    content.push_str(&format!("{i},\"two{terminator}lines\"{terminator}"));
                    line += 2;
                } else {
                    content.push_str(&format!("{i},plain{terminator}"));
                    line += 1;
                }
                if i % 11 == 0 {
                    content.push_str(terminator);
                    line += 1;
                }
            }
            assert!(content.len() > 2 * BUFFER);
            content.push_str(&format!("ragged{terminator}1,2{terminator}"));
            let path = write(&dir, "big.csv", content.as_bytes());
            let error = load(&path).expect_err(terminator);
            assert_eq!(parse_line(&error), line, "{terminator:?}: {error}");
        }
    }

    proptest! {
        #[test]
        fn ragged_row_line_is_physical(
            (width, table) in table(),
            blanks in prop::collection::vec(0usize..3, 8),
            crlf: bool,
        ) {
            let terminator = if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
            let blank: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut content = Vec::new();
            let mut chunks = vec![(0..width).map(|i| format!("c{i}")).collect::<Vec<_>>()];
            chunks.extend(table);
            for (record, blank_lines) in chunks.iter().zip(blanks.iter().cycle()) {
                let mut writer = csv::WriterBuilder::new().terminator(terminator).from_writer(Vec::new());
                writer.write_record(record).unwrap();
                content.extend(writer.into_inner().unwrap());
                for _ in 0..*blank_lines {
                    content.extend_from_slice(blank);
                }
            }
            let line = 1 + content.iter().filter(|&&b| b == b'\n').count() as u64;
            content.extend_from_slice(b"x,y,z,w,v");
            // Something after the ragged row, so its terminator is part of the count.
            content.extend_from_slice(blank);
            let dir = tempfile::tempdir().unwrap();
            let path = write(&dir, "r.csv", &content);
            let error = load(&path).unwrap_err();
            prop_assert_eq!(parse_line(&error), line);
        }

        #[test]
        fn csv_round_trips((width, table) in table()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.csv");
            let header: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
            let mut writer = csv::Writer::from_path(&path).unwrap();
            writer.write_record(&header).unwrap();
            for row in &table {
                writer.write_record(row).unwrap();
            }
            writer.flush().unwrap();
            drop(writer);

            let rows = collect(&path).unwrap();
            prop_assert_eq!(rows.len(), table.len());
            for (i, (row, want)) in rows.iter().zip(&table).enumerate() {
                prop_assert_eq!(row.index, i);
                let keys: Vec<&String> = row.values.keys().collect();
                prop_assert_eq!(keys, header.iter().collect::<Vec<_>>());
                // Columns are named c0..c4, so the map's sorted order is the header order.
                prop_assert_eq!(&strings(row), want);
            }
            prop_assert_eq!(scan(&path).unwrap().rows, table.len());
        }
    }
}
