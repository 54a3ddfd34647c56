//! JSON Lines files: one object per line, with columns and dotted fields recorded in file order. It
//! must not open or hash the file or give rows their ids: `dataset` does, and hands it a reader.

use super::{BUFFER, DatasetError, MAX_RECORD_BYTES, Shape, Source, kind};
use crate::model::JsonObject;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The JSONL side of the parser behind `rows` and `scan`: there is no header, so whether rows
/// have ids is decided by the first row.
pub(super) fn source<R: Read>(input: R) -> (Source<R>, Option<bool>) {
    let source = Source::Jsonl {
        reader: BufReader::with_capacity(BUFFER, input),
        buf: Vec::new(),
        line: 0,
    };
    (source, None)
}

pub(super) fn next_jsonl<R: Read>(
    path: &Path,
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
    line: &mut u64,
    shape: Option<&mut Shape>,
) -> Result<Option<(u64, JsonObject)>, DatasetError> {
    loop {
        buf.clear();
        // One byte past the cap tells a line at the cap from a longer one.
        let n = (&mut *reader)
            .take(MAX_RECORD_BYTES + 1)
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
        if n as u64 > MAX_RECORD_BYTES && !buf.ends_with(b"\n") {
            return Err(parse(format!(
                "a line longer than {} MiB (is this a JSONL file?)",
                MAX_RECORD_BYTES >> 20
            )));
        }
        if let Some(number) = oversized_integer(bytes) {
            return Err(parse(format!(
                "the integer {number} is too large to keep exactly; quote it as a string"
            )));
        }
        let value = match shape {
            Some(shape) => {
                let mut de = serde_json::Deserializer::from_slice(bytes);
                ValueSeed { shape, depth: 0 }
                    .deserialize(&mut de)
                    .and_then(|value| de.end().map(|()| value))
            }
            None => crate::json::parse_slice(bytes),
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

/// The first integer literal of a JSON text (outside strings) that no 64-bit integer holds:
/// serde_json would keep it only as a rounded float, and the row would silently change.
fn oversized_integer(bytes: &[u8]) -> Option<String> {
    let (mut in_string, mut escaped, mut i) = (false, false, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let is_float = matches!(bytes.get(i), Some(b'.' | b'e' | b'E'));
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                i += 1;
            }
            if !is_float {
                let text = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
                let digits = text.trim_start_matches('-');
                if !digits.is_empty()
                    && text.parse::<i64>().is_err()
                    && text.parse::<u64>().is_err()
                {
                    return Some(text.to_string());
                }
            }
            continue;
        }
        i += 1;
    }
    None
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

    crate::json::scalar_visits!();

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(crate::json::Strict)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Arrays are leaves for dotted paths, so their elements need no recording.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(crate::json::Strict)? {
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
            // serde_json keeps the last of two equal keys without a word; a CSV with two
            // equal columns is refused, and so is this.
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::oversized_integer;
    use crate::dataset::tests::{collect, load, parse_line, write};
    use crate::dataset::{DatasetFormat, MAX_FIELDS, scan};
    use serde_json::json;

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
                "a key twice inside a list",
                "{\"a\": 1}\n{\"tags\": [{\"k\": 1, \"k\": 2}]}\n",
                2,
                "duplicate key \"k\"",
            ),
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
    fn integers_no_64_bit_integer_holds_are_found() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"a": 1, "b": -2}"#, None),
            (r#"{"a": 18446744073709551615}"#, None),
            (r#"{"a": -9223372036854775808}"#, None),
            (
                r#"{"a": 18446744073709551616}"#,
                Some("18446744073709551616"),
            ),
            (
                r#"{"a": -9223372036854775809}"#,
                Some("-9223372036854775809"),
            ),
            (r#"{"a": 1.5e300, "b": 123456789012345678901234.5}"#, None),
            (r#"{"a": "123456789012345678901234567890"}"#, None),
            (r#"{"a": "quote \" 99999999999999999999999"}"#, None),
            (
                r#"{"a": [1, 99999999999999999999999]}"#,
                Some("99999999999999999999999"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                oversized_integer(text.as_bytes()).as_deref(),
                *expected,
                "{text}"
            );
        }
    }
}
