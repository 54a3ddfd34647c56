//! Fuzzes the dataset reader: any bytes, read as CSV and as JSONL, must give rows or a
//! DatasetError (never a panic), and the validating pass (`scan`) and the streaming reader
//! (`rows`) must agree on how many rows there are, or on the error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::dataset;
use std::path::PathBuf;

fuzz_target!(|bytes: &[u8]| {
    let dir = std::env::temp_dir().join(format!("runner-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for name in ["input.csv", "input.jsonl"] {
        let path: PathBuf = dir.join(name);
        std::fs::write(&path, bytes).expect("write input");
        let scanned = dataset::scan(&path);
        let streamed: Result<Vec<dataset::Row>, dataset::DatasetError> =
            dataset::rows(&path).and_then(|rows| rows.collect());
        match (&scanned, &streamed) {
            (Ok(info), Ok(rows)) => {
                assert_eq!(info.rows, rows.len());
                for (i, row) in rows.iter().enumerate() {
                    assert_eq!(row.index, i);
                }
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("scan and rows disagree: {scanned:?} vs {streamed:?}"),
        }
    }
});
