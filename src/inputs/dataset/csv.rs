//! CSV files: the header, records with the line each starts on, and quoting the csv crate
//! would let pass. It must not open or hash the file or give rows their ids: `dataset` does, and
//! hands it a reader.

use super::{BUFFER, DatasetError, ID, MAX_RECORD_BYTES, Shape, Source};
use crate::model::JsonObject;
use serde_json::Value;
use std::io::{self, Read};
use std::path::Path;

/// The CSV side of the parser behind `rows` and `scan`: the header is read (and, for `scan`,
/// recorded as the columns and fields) before the first row, and decides whether rows have ids.
pub(super) fn source<R: Read>(
    path: &Path,
    input: R,
    shape: Option<&mut Shape>,
) -> Result<(Source<R>, Option<bool>), DatasetError> {
    let mut tail = Tail::new(input);
    let separator = tail.sniff_separator().map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator)
        // The header is read by hand so its line and errors are ours to report.
        .has_headers(false)
        // Ragged rows are checked here to report them in this module's words.
        .flexible(true)
        .buffer_capacity(BUFFER)
        .from_reader(tail);
    let mut record = csv::ByteRecord::new();
    let headers = read_csv_header(path, &mut reader, &mut record)?;
    if let Some(shape) = shape {
        shape.columns = headers.clone();
        shape.fields = headers.clone();
        shape.separator = separator;
    }
    let has_id = headers.iter().any(|h| h == ID);
    let source = Source::Csv {
        reader,
        headers,
        record,
    };
    Ok((source, Some(has_id)))
}

/// Keeps a copy of the latest chunk handed to the CSV reader, so the byte just before its
/// stopping point can be looked at (see `csv_line`), and follows its quoting (see `Quotes`).
pub(super) struct Tail<R> {
    pub(super) inner: R,
    chunk: Vec<u8>,
    /// File offset of `chunk[0]`.
    start: u64,
    quotes: Quotes,
    /// The start of the file, read ahead to find its separator, handed out before the rest.
    ahead: Vec<u8>,
}

/// How much of the file's start is read to find the header's separator.
const SNIFF_BYTES: usize = 64 * 1024;

impl<R> Tail<R> {
    fn new(inner: R) -> Self {
        Tail {
            inner,
            chunk: Vec::new(),
            start: 0,
            quotes: Quotes::default(),
            ahead: Vec::new(),
        }
    }
}

impl<R: Read> Tail<R> {
    /// The header's separator: a comma, unless the header line (outside quotes) has no comma
    /// and has semicolons or tabs, as spreadsheets export in many locales (then the more
    /// frequent of the two). The bytes read stay to be handed out first.
    fn sniff_separator(&mut self) -> io::Result<u8> {
        let mut buf = [0u8; 8192];
        while self.ahead.len() < SNIFF_BYTES && !self.ahead.contains(&b'\n') {
            let n = self.inner.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.ahead.extend_from_slice(&buf[..n]);
        }
        let (mut commas, mut semicolons, mut tabs, mut quoted) = (0, 0, 0, false);
        for &b in &self.ahead {
            match b {
                b'"' => quoted = !quoted,
                b'\n' | b'\r' if !quoted => break,
                b',' if !quoted => commas += 1,
                b';' if !quoted => semicolons += 1,
                b'\t' if !quoted => tabs += 1,
                _ => {}
            }
        }
        self.quotes.separator = match (commas, semicolons, tabs) {
            (0, s, t) if s > 0 && s >= t => b';',
            (0, _, t) if t > 0 => b'\t',
            _ => b',',
        };
        Ok(self.quotes.separator)
    }

    fn byte_at(&self, offset: u64) -> Option<u8> {
        let at = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        self.chunk.get(at).copied()
    }
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.ahead.is_empty() {
            self.inner.read(buf)?
        } else {
            let n = self.ahead.len().min(buf.len());
            buf[..n].copy_from_slice(&self.ahead[..n]);
            self.ahead.drain(..n);
            n
        };
        if n > 0 {
            self.start += self.chunk.len() as u64;
            self.chunk.clear();
            self.chunk.extend_from_slice(&buf[..n]);
            self.quotes.feed(&buf[..n]);
            if let Some(line) = self.quotes.too_long {
                // Stopping the read bounds the memory a record can take (a file that is one
                // endless field, /dev/zero say).
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the record starting on line {line} is longer than {} MiB",
                        MAX_RECORD_BYTES >> 20
                    ),
                ));
            }
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
    /// The byte between fields (see `Tail::sniff_separator`).
    separator: u8,
    state: QuoteState,
    /// Newlines fed so far, and the 1-based line of the quote that opened the current field.
    newlines: u64,
    opened_on: u64,
    /// Bytes since the last record ended, the line that record started on (0: line 1), and
    /// that line once the record grew past the cap.
    in_record: u64,
    record_line: u64,
    too_long: Option<u64>,
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
            let ends_field = b == self.separator || matches!(b, b'\n' | b'\r');
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
            if b == b'\n' && self.state == FieldStart {
                self.in_record = 0;
                self.record_line = self.newlines;
            } else {
                self.in_record += 1;
                if self.in_record > MAX_RECORD_BYTES && self.too_long.is_none() {
                    self.too_long = Some(self.record_line + 1);
                }
            }
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
    let mut seen = std::collections::HashSet::with_capacity(record.len());
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
        if !seen.insert(name) {
            return Err(parse(format!(
                "duplicate column name \"{name}\" in the header"
            )));
        }
        headers.push(name.to_owned());
    }
    Ok(headers)
}

pub(super) fn next_csv<R: Read>(
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
        // A quote that never closes swallows the rest of the file into one field: say so, with
        // the line where it opened.
        let runaway = record
            .iter()
            .next_back()
            .is_some_and(|f| f.contains(&b'\n'));
        if runaway && let Some(opened) = reader.get_ref().quotes.unclosed() {
            return Err(DatasetError::Parse {
                path: path.to_path_buf(),
                line: opened,
                message: "a quoted field opened on this line is never closed (unbalanced \"), \
                          so the rest of the file reads as one value"
                    .into(),
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::tests::{collect, load, parse_line, write};
    use crate::dataset::{DatasetFormat, Row, scan};
    use proptest::prelude::*;
    use serde_json::json;

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
    fn csv_fields_equal_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "c.csv", b"b,a,customer.name\n1,2,3\n");
        let info = scan(&path).unwrap();
        assert_eq!(info.columns, ["b", "a", "customer.name"]);
        assert_eq!(info.fields, info.columns);
        assert_eq!(info.format, DatasetFormat::Csv);
        assert!(!info.has_id);
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
