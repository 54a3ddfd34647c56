//! Unit tests of the SQLite backend alone: opening, refusing and migrating files, and what only a file shows (WAL, read-only opens).

use super::*;
use crate::model::JsonObject;
use crate::model::{NewVersion, Template, TemplateFormat};
use crate::store::ExperimentStore;
use crate::store::{PromptStore, TagChange};

fn new_version(text: &str) -> NewVersion {
    let mut params = JsonObject::new();
    params.insert("temperature".into(), 0.7.into());
    NewVersion {
        format: TemplateFormat::Mustache,
        template: Template::Str(text.into()),
        model: Some("gpt-4".into()),
        provider: None,
        params,
        metadata: JsonObject::new(),
        description: None,
        message: None,
        author: "tester".into(),
    }
}

fn change() -> TagChange {
    TagChange {
        actor: "tester".into(),
        ..TagChange::default()
    }
}

#[test]
fn fresh_file_reaches_newest_schema_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        SqliteStore::latest_schema_version()
    );
    let mode: String = lock(&store.writer)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = lock(&store.writer)
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
}

#[test]
fn a_new_store_takes_16_kib_pages_and_an_older_one_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |store: &SqliteStore| -> i64 {
        lock(&store.writer)
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    let path = dir.path().join("new.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(page_size(&store), 16384);
    store
        .create_prompt("p", new_version("hi"), &[], &change())
        .unwrap();
    drop(store);
    // A store from before keeps SQLite's 4 KiB pages: nothing rewrites it on open.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = DELETE; PRAGMA page_size = 4096; VACUUM; \
             PRAGMA journal_mode = WAL;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(page_size(&store), 4096);
    assert_eq!(store.versions("p").unwrap().len(), 1);
    store
        .create_prompt("q", new_version("hello"), &[], &change())
        .unwrap();
    assert_eq!(page_size(&store), 4096);
}

#[test]
fn existing_file_is_reopened_without_reapplying_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .create_prompt("p", new_version("hi"), &[], &change())
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        SqliteStore::latest_schema_version()
    );
    assert_eq!(store.versions("p").unwrap().len(), 1);
}

#[test]
fn another_programs_database_is_refused_byte_for_byte_untouched() {
    // A file at schema 0 with tables of its own belongs to someone else.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theirs.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('kept');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::NotRunnerStore { .. })
    ));
    assert!(matches!(
        SqliteStore::open_read_only(&path),
        Err(StoreError::NotRunnerStore { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("theirs.db-wal").exists());
}

#[test]
fn reading_an_older_store_changes_nothing_and_says_how_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        SqliteStore::open_read_only(&path),
        Err(StoreError::OlderSchema { found: 1, .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        SqliteStore::latest_schema_version()
    );
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::NewerSchema { found, .. }) => assert_eq!(found, 999),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the file was altered"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "this is not a database, just some text that is long enough",
    )
    .unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::NotADatabase { .. })
    ));
}

#[test]
fn a_missing_directory_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("s.db");
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Open { .. })
    ));
    assert!(!path.exists());
}

#[test]
fn reading_a_missing_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let store = crate::store::open_for_reading(&path).unwrap();
    assert!(store.prompts().unwrap().is_empty());
    assert!(!path.exists());
}

#[test]
fn a_store_at_every_older_schema_reaches_the_newest_with_its_rows() {
    for applied in 1..SqliteStore::latest_schema_version() as usize {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // A store as an older runner left it: the first `applied` migrations, one prompt.
            let conn = Connection::open(&path).unwrap();
            for (i, sql) in MIGRATIONS.iter().take(applied).enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", i as i64 + 1)
                    .unwrap();
            }
            conn.execute_batch(
                "INSERT INTO prompts (id, name, created_at) VALUES (1, 'p', 't');
                 INSERT INTO prompt_versions (id, prompt_id, seq, template_type, format, template,
                   params, metadata, author, content_hash, created_at)
                 VALUES ('v1', 1, 1, 'str', 'none', 'hello', '{}', '{}', 'a', 'h', 't');",
            )
            .unwrap();
            if applied >= 2 {
                // An experiment and its result, in the columns schema 2 made.
                conn.execute_batch(
                    "INSERT INTO experiments (id, name, prompt_id, version_id, dataset_path,
                       dataset_hash, dataset_rows, dataset_columns, model, base_url, evaluators,
                       settings, planned, status, author, created_at)
                     VALUES ('exp_old', NULL, 1, 'v1', 'd.csv', 'h', 1, '[]', 'm', 'u', '[]',
                       '{\"concurrency\": 1, \"repetitions\": 1, \"limit\": null,
                         \"timeout_secs\": 30.0, \"max_retries\": 0, \"vars\": {},
                         \"columns\": [], \"expected_column\": null, \"no_cache\": false,
                         \"judge_model\": null}',
                       1, 'completed', 'a', 't');
                     INSERT INTO results (experiment_id, row_index, repetition, row_id, vars,
                       messages, status, attempts, latency_ms, started_at, finished_at)
                     VALUES ('exp_old', 0, 0, 'r0', '{}', '[]', 'ok', 1, 1.0, 't', 't');",
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            SqliteStore::latest_schema_version()
        );
        assert_eq!(
            store.versions("p").unwrap()[0].template,
            Template::Str("hello".into())
        );
        let experiments = store.experiments(None).unwrap();
        if applied >= 2 {
            // Rebuilt tables keep their rows and every reference holds.
            assert_eq!(experiments.len(), 1, "from schema {applied}");
            assert_eq!(experiments[0].prompt.as_deref(), Some("p"));
            assert_eq!(experiments[0].version_seq, Some(1));
            let conn = Connection::open(&path).unwrap();
            let dangling: i64 = conn
                .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(dangling, 0, "from schema {applied}");
            let results: i64 = conn
                .query_row("SELECT COUNT(*) FROM results", [], |r| r.get(0))
                .unwrap();
            assert_eq!(results, 1, "from schema {applied}");
        } else {
            assert!(experiments.is_empty());
        }
    }
}

/// A cached statement is compiled once: binding other values to a join's parameters must not
/// make SQLite compile it again at each execution (it did, before plans were made once).
#[test]
fn a_cached_join_is_not_compiled_again_for_each_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(&path).unwrap();
    for name in ["a", "b", "c"] {
        store
            .create_prompt(name, new_version("hi"), &[], &change())
            .unwrap();
    }
    for (conn, kind) in [
        (connect(&path).unwrap(), "read-write"),
        (connect_read_only(&path).unwrap(), "read-only"),
    ] {
        let sql = "SELECT v.id FROM prompts p JOIN prompt_versions v ON v.prompt_id = p.id \
                   WHERE p.name = ?1 AND p.archived_at IS NULL";
        for name in ["a", "b", "c", "a", "b"] {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            let found: String = stmt.query_row([name], |r| r.get(0)).unwrap();
            assert!(!found.is_empty());
        }
        let stmt = conn.prepare_cached(sql).unwrap();
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "{kind}: the statement was compiled again for new values"
        );
    }
}
