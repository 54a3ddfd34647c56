//! Tests of what every format shares: ids, hashing, empty and unreadable files, and the
//! agreement of `rows` with `scan`.

use super::*;
use serde_json::json;

pub(super) fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path
}
pub(super) fn collect(path: &Path) -> Result<Vec<Row>, DatasetError> {
    rows(path)?.collect()
}
/// Runs both entry points, checks they agree, and returns the rows.
pub(super) fn load(path: &Path) -> Result<Vec<Row>, DatasetError> {
    let streamed = collect(path);
    let scanned = scan(path);
    match (&streamed, &scanned) {
        (Ok(rows), Ok(info)) => assert_eq!(info.rows, rows.len(), "{}", path.display()),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("rows() and scan() disagree: {streamed:?} vs {scanned:?}"),
    }
    streamed
}
pub(super) fn parse_line(error: &DatasetError) -> u64 {
    match error {
        DatasetError::Parse { line, .. } => *line,
        other => panic!("expected a parse error, got {other:?}"),
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

#[test]
fn a_missing_file_with_a_typo_in_its_name_is_said_so_with_the_near_name() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "tickets.csv", b"id,q\n1,a\n");
    let error = scan(&dir.path().join("tickets.cvs")).expect_err("missing");
    assert!(matches!(error, DatasetError::Io { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("tickets.cvs") && text.contains("no such file (did you mean tickets.csv?)"),
        "{text}"
    );
    let text = scan(&dir.path().join("other.csv")).unwrap_err().to_string();
    assert!(text.ends_with("no such file"), "{text}");
}

#[test]
fn a_quote_that_never_closes_is_named_on_the_line_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "open.csv",
        b"id,q,expected\na,x,x\nb,\"y unterminated,y\nc,z,z\nd,w,w\n",
    );
    let error = load(&path).expect_err("unbalanced");
    assert_eq!(parse_line(&error), 3, "{error}");
    assert!(error.to_string().contains("never closed"), "{error}");
}

#[test]
fn a_file_separated_by_semicolons_or_tabs_is_read_with_its_separator() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, separator) in [
        (
            "semi.csv",
            &b"id;query;expected\na;\"x; y\";1,5\nb;;z\n"[..],
            ';',
        ),
        (
            "tabs.csv",
            &b"id\tquery\texpected\na\tx; y\t1,5\nb\t\tz\n"[..],
            '\t',
        ),
    ] {
        let path = write(&dir, name, bytes);
        let rows = load(&path).expect(name);
        assert_eq!(rows.len(), 2, "{name}");
        assert_eq!(rows[0].values["query"], "x; y", "{name}");
        assert_eq!(rows[0].values["expected"], "1,5", "{name}");
        let info = scan(&path).unwrap();
        assert_eq!(info.separator, Some(separator), "{name}");
        assert_eq!(info.columns, ["id", "query", "expected"], "{name}");
        assert_eq!(info.empty_cells, [("query".to_string(), 1)], "{name}");
    }
    // A comma anywhere in the header (outside quotes) keeps commas; one column is fine, and
    // so is a semicolon inside a comma-separated file's column.
    let one = write(&dir, "one.csv", b"query\nx\n");
    assert_eq!(load(&one).unwrap().len(), 1);
    assert_eq!(scan(&one).unwrap().separator, None);
    let mixed = write(&dir, "mixed.csv", b"id,a;b\n1,x\n");
    assert_eq!(load(&mixed).unwrap().len(), 1);
    assert_eq!(scan(&mixed).unwrap().columns, ["id", "a;b"]);
    let quoted = write(&dir, "quoted.csv", b"\"a,b\";c\n1;2\n");
    assert_eq!(scan(&quoted).unwrap().separator, Some(';'));
    assert_eq!(scan(&quoted).unwrap().columns, ["a,b", "c"]);
}
