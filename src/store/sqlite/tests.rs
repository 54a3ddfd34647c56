use super::*;
use crate::model::{NewVersion, TagAction, Template, TemplateFormat, VersionRef};
use crate::store::{Expect, ExperimentStore, TagPolicy};

fn new_version(text: &str) -> NewVersion {
    let mut params = JsonObject::new();
    params.insert("temperature".into(), 0.7.into());
    NewVersion {
        format: TemplateFormat::Mustache,
        template: Template::Str(text.into()),
        model: Some("gpt-4".into()),
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

fn table_count(store: &SqliteStore, table: &str) -> i64 {
    lock(&store.writer)
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
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
fn versions_are_numbered_and_carry_their_fields() {
    let store = SqliteStore::open_in_memory().unwrap();
    let v1 = store
        .create_prompt(
            "p",
            new_version("one {{x}}"),
            &["staging".into()],
            &change(),
        )
        .unwrap();
    assert_eq!(v1.seq, 1);
    let v2 = store
        .append_version(
            "p",
            |latest| -> Result<NewVersion, StoreError> {
                assert_eq!(latest.seq, 1);
                Ok(new_version("two {{x}}"))
            },
            &[],
            &change(),
        )
        .unwrap();
    assert_eq!(v2.seq, 2);
    assert_ne!(v1.id, v2.id);
    assert_ne!(v1.content_hash, v2.content_hash);
    assert_eq!(store.version("p", &VersionRef::Latest).unwrap(), v2);
    assert_eq!(store.version("p", &VersionRef::Seq(1)).unwrap(), v1);
    assert_eq!(
        store.version("p", &VersionRef::Id(v2.id.clone())).unwrap(),
        v2
    );
    assert_eq!(
        store
            .version("p", &VersionRef::Tag("staging".into()))
            .unwrap(),
        v1
    );
    assert_eq!(
        store.version("p", &VersionRef::Any("2".into())).unwrap(),
        v2
    );
    assert_eq!(
        store
            .version("p", &VersionRef::Any("staging".into()))
            .unwrap(),
        v1
    );
    assert_eq!(
        store.version("p", &VersionRef::Any(v1.id.clone())).unwrap(),
        v1
    );
    let seqs: Vec<i64> = store.versions("p").unwrap().iter().map(|v| v.seq).collect();
    assert_eq!(seqs, vec![2, 1]);
}

#[test]
fn unknown_references_are_input_errors() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_prompt("p", new_version("x"), &[], &change())
        .unwrap();
    let cases = [
        VersionRef::Seq(9),
        VersionRef::Id("nope".into()),
        VersionRef::Tag("nope".into()),
        VersionRef::Any("nope".into()),
    ];
    for reference in cases {
        let err = store.version("p", &reference).unwrap_err();
        assert!(err.is_invalid_input(), "{reference}: {err}");
    }
    let err = store.version("absent", &VersionRef::Latest).unwrap_err();
    assert!(matches!(err, StoreError::UnknownPrompt { .. }));
    let err = store
        .create_prompt("p", new_version("x"), &[], &change())
        .unwrap_err();
    assert!(matches!(err, StoreError::PromptExists { .. }));
}

#[test]
fn a_failed_build_writes_nothing() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_prompt("p", new_version("x"), &[], &change())
        .unwrap();
    let result: Result<PromptVersion, StoreError> = store.append_version(
        "p",
        |_| Err(StoreError::Corrupt("refused".into())),
        &["t".into()],
        &change(),
    );
    assert!(result.is_err());
    assert_eq!(table_count(&store, "prompt_versions"), 1);
    assert_eq!(table_count(&store, "tags"), 0);
}

#[test]
fn tag_moves_are_recorded_and_rolled_back() {
    let store = SqliteStore::open_in_memory().unwrap();
    let v1 = store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    let v2 = store
        .append_version(
            "p",
            |_| Ok::<_, StoreError>(new_version("2")),
            &[],
            &change(),
        )
        .unwrap();
    let set = store
        .set_tag("p", "production", &VersionRef::Seq(1), &change())
        .unwrap();
    assert!(matches!(set, TagOutcome::Changed(ref e) if e.action == TagAction::Set));
    let again = store
        .set_tag("p", "production", &VersionRef::Seq(1), &change())
        .unwrap();
    assert!(matches!(again, TagOutcome::Unchanged(_)));
    let moved = store
        .set_tag("p", "production", &VersionRef::Seq(2), &change())
        .unwrap();
    let TagOutcome::Changed(moved) = moved else {
        panic!("move not recorded")
    };
    assert_eq!(moved.action, TagAction::Move);
    assert_eq!(moved.from_seq, Some(1));
    assert_eq!(moved.to_seq, Some(2));

    let rolled = store.rollback_tag("p", "production", &change()).unwrap();
    assert_eq!(rolled.action, TagAction::Rollback);
    assert_eq!(rolled.to_version_id.as_deref(), Some(v1.id.as_str()));
    assert_eq!(
        store.tag("p", "production").unwrap().unwrap().version_id,
        v1.id
    );

    let deleted = store.delete_tag("p", "production", &change()).unwrap();
    assert_eq!(deleted.to_version_id, None);
    assert!(store.tag("p", "production").unwrap().is_none());
    // Rolling back a delete restores the tag.
    store.rollback_tag("p", "production", &change()).unwrap();
    assert_eq!(
        store.tag("p", "production").unwrap().unwrap().version_id,
        v1.id
    );

    let actions: Vec<TagAction> = store
        .history("p", Some("production"))
        .unwrap()
        .iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        vec![
            TagAction::Set,
            TagAction::Move,
            TagAction::Rollback,
            TagAction::Delete,
            TagAction::Rollback
        ]
    );
    assert_ne!(v1.id, v2.id);
}

#[test]
fn rollback_without_an_earlier_version_is_refused() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_prompt("p", new_version("1"), &["staging".into()], &change())
        .unwrap();
    assert!(matches!(
        store.rollback_tag("p", "staging", &change()),
        Err(StoreError::NothingToRollBack { .. })
    ));
    assert!(matches!(
        store.rollback_tag("p", "never", &change()),
        Err(StoreError::UnknownTag { .. })
    ));
}

#[test]
fn versions_and_history_cannot_be_rewritten() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_prompt("p", new_version("1"), &["t".into()], &change())
        .unwrap();
    for sql in [
        "UPDATE prompt_versions SET template = 'changed'",
        "DELETE FROM prompt_versions",
        "UPDATE tag_events SET actor = 'someone else'",
        "DELETE FROM tag_events",
    ] {
        assert!(
            lock(&store.writer).execute(sql, []).is_err(),
            "{sql} was allowed"
        );
    }
}

#[test]
fn archive_and_import_round_trip() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_prompt("p", new_version("1"), &["staging".into()], &change())
        .unwrap();
    store
        .append_version(
            "p",
            |_| Ok::<_, StoreError>(new_version("2")),
            &["production".into()],
            &change(),
        )
        .unwrap();
    store.rollback_tag("p", "production", &change()).ok();
    let archive = store.archive("p").unwrap();

    let copy = SqliteStore::open_in_memory().unwrap();
    copy.import(std::slice::from_ref(&archive)).unwrap();
    assert_eq!(copy.archive("p").unwrap(), archive);
    // A second import of the same prompt is refused as a whole.
    assert!(matches!(
        copy.import(&[archive]),
        Err(StoreError::PromptExists { .. })
    ));
    assert_eq!(table_count(&copy, "prompts"), 1);
}

#[test]
fn concurrent_writers_number_versions_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    SqliteStore::open(&path)
        .unwrap()
        .create_prompt("p", new_version("0"), &[], &change())
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = SqliteStore::open(&path).unwrap();
                for i in 0..10 {
                    store
                        .append_version(
                            "p",
                            |_| Ok::<_, StoreError>(new_version(&format!("{t}-{i}"))),
                            &["moving".into()],
                            &change(),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let mut seqs: Vec<i64> = store.versions("p").unwrap().iter().map(|v| v.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=41).collect::<Vec<_>>());
    let history = store.history("p", Some("moving")).unwrap();
    assert_eq!(history.len(), 40);
    let tag = store.tag("p", "moving").unwrap().unwrap();
    assert_eq!(
        history.last().unwrap().to_version_id.as_deref(),
        Some(tag.version_id.as_str())
    );
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
        assert!(store.experiments(None).unwrap().is_empty());
    }
}

#[test]
fn protected_tags_are_checked_inside_the_write() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    store
        .append_version(
            "p",
            |_| Ok::<_, StoreError>(new_version("2")),
            &[],
            &change(),
        )
        .unwrap();
    let guarded = TagChange {
        policy: TagPolicy::new(vec!["production".into()]),
        ..change()
    };
    // Creating displaces nothing; moving, deleting and rolling back need force.
    let TagOutcome::Changed(set) = store
        .set_tag("p", "production", &VersionRef::Seq(1), &guarded)
        .unwrap()
    else {
        panic!("not set")
    };
    assert!(!set.forced);
    let refused = store.set_tag("p", "production", &VersionRef::Seq(2), &guarded);
    assert!(matches!(refused, Err(StoreError::ProtectedTag { .. })));
    assert!(matches!(
        store.delete_tag("p", "production", &guarded),
        Err(StoreError::ProtectedTag { .. })
    ));
    let forced = TagChange {
        force: true,
        ..guarded.clone()
    };
    let TagOutcome::Changed(moved) = store
        .set_tag("p", "production", &VersionRef::Seq(2), &forced)
        .unwrap()
    else {
        panic!("not moved")
    };
    assert!(moved.forced);
    // An unprotected tag under the same change is not marked forced.
    let TagOutcome::Changed(other) = store
        .set_tag("p", "staging", &VersionRef::Seq(2), &forced)
        .unwrap()
    else {
        panic!("not set")
    };
    assert!(!other.forced);
    assert_eq!(table_count(&store, "tag_events"), 3);
}

#[test]
fn targets_pages_and_version_tags() {
    let store = SqliteStore::open_in_memory().unwrap();
    for name in ["b", "a", "c"] {
        store
            .create_prompt(name, new_version("x"), &[], &TagChange::default())
            .unwrap();
    }
    let v1 = store
        .version_by_id(&store.versions("a").unwrap()[0].id)
        .unwrap()
        .unwrap();
    let v2 = store
        .append_version::<_, StoreError>(
            "a",
            |_| Ok(new_version("y")),
            &["staging".into()],
            &TagChange {
                actor: "ci".into(),
                ..TagChange::default()
            },
        )
        .unwrap();
    assert_eq!(
        store.latest_target("a").unwrap(),
        (v2.id.clone(), v2.content_hash.clone())
    );
    assert_eq!(store.tag_target("a", "staging").unwrap().0, v2.id);
    assert!(matches!(
        store.tag_target("a", "prod"),
        Err(StoreError::UnknownTag { .. })
    ));
    assert!(matches!(
        store.tag_target("z", "prod"),
        Err(StoreError::UnknownPrompt { .. })
    ));
    assert!(matches!(
        store.latest_target("z"),
        Err(StoreError::UnknownPrompt { .. })
    ));
    assert!(store.version_by_id("nope").unwrap().is_none());

    let names = |page: Vec<(Prompt, PromptVersion)>| -> Vec<String> {
        page.into_iter().map(|(p, _)| p.name).collect()
    };
    assert_eq!(names(store.prompts_page(None, 2).unwrap()), ["a", "b"]);
    assert_eq!(names(store.prompts_page(Some("b"), 5).unwrap()), ["b", "c"]);
    let (first, latest) = store.prompts_page(None, 1).unwrap().remove(0);
    assert_eq!(
        (first.version_count, first.tags.clone()),
        (2, vec!["staging".to_string()])
    );
    assert_eq!(latest.id, v2.id);

    assert!(store.version_tags(&v1.id).unwrap().is_empty());
    let tags = store.version_tags(&v2.id).unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(
        (tags[0].0.name.as_str(), tags[0].0.updated_by.as_str()),
        ("staging", "ci")
    );
}

#[test]
fn tag_writes_go_ahead_only_where_the_caller_expects_the_tag() {
    let store = SqliteStore::open_in_memory().unwrap();
    let v1 = store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    let v2 = store
        .append_version::<_, StoreError>("p", |_| Ok(new_version("2")), &[], &change())
        .unwrap();
    let expecting = |expect: Expect| TagChange { expect, ..change() };
    // Expected absent, and absent: created.
    store
        .set_tag("p", "prod", &VersionRef::Seq(1), &expecting(Expect::Absent))
        .unwrap();
    // Expected absent, but there: refused, and the tag stays.
    assert!(matches!(
        store.set_tag("p", "prod", &VersionRef::Seq(2), &expecting(Expect::Absent)),
        Err(StoreError::TagMoved { .. })
    ));
    assert!(matches!(
        store.set_tag(
            "p",
            "prod",
            &VersionRef::Seq(2),
            &expecting(Expect::At(v2.id.clone()))
        ),
        Err(StoreError::TagMoved { .. })
    ));
    assert_eq!(store.tag_target("p", "prod").unwrap().0, v1.id);
    // Deleting through a version the tag does not point at is refused.
    assert!(matches!(
        store.delete_tag("p", "prod", &expecting(Expect::At(v2.id.clone()))),
        Err(StoreError::TagMoved { .. })
    ));
    let event = store
        .delete_tag("p", "prod", &expecting(Expect::At(v1.id.clone())))
        .unwrap();
    assert_eq!(event.action, TagAction::Delete);
    assert_eq!(store.history("p", Some("prod")).unwrap().len(), 2);
}

#[test]
fn a_promotion_moves_a_protected_tag_without_force_and_says_so() {
    let store = SqliteStore::open_in_memory().unwrap();
    store
        .create_prompt("p", new_version("1"), &["production".into()], &change())
        .unwrap();
    let v2 = store
        .append_version::<_, StoreError>("p", |_| Ok(new_version("2")), &[], &change())
        .unwrap();
    let promote = TagChange {
        policy: TagPolicy::new(vec!["production".into()]),
        action: Some(TagAction::Promote),
        ..change()
    };
    let TagOutcome::Changed(event) = store
        .set_tag("p", "production", &VersionRef::Id(v2.id.clone()), &promote)
        .unwrap()
    else {
        panic!("not promoted")
    };
    assert_eq!((event.action, event.forced), (TagAction::Promote, false));
}

#[test]
fn latency_percentiles_are_nearest_rank_over_the_successful_calls() {
    use crate::model::{
        DatasetRef, ExperimentStatus, NewExperiment, ResultStatus, RunResult, RunSettings,
    };
    use crate::store::ResultSink;
    let store = SqliteStore::open_in_memory().unwrap();
    let version = store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    let experiment = store
        .create_experiment(&NewExperiment {
            name: None,
            prompt: "p".into(),
            version_id: version.id,
            tag: None,
            dataset: DatasetRef {
                path: "d.csv".into(),
                hash: "h".into(),
                rows: 11,
                columns: vec!["id".into()],
            },
            model: "m".into(),
            base_url: "http://x".into(),
            evaluators: vec![],
            settings: RunSettings {
                concurrency: 1,
                repetitions: 1,
                limit: None,
                timeout_secs: 1.0,
                max_retries: 0,
                vars: JsonObject::new(),
                columns: vec![],
                expected_column: None,
                no_cache: true,
                fresh: false,
                cache_ttl_secs: None,
                judge_model: None,
            },
            planned: 11,
            author: "t".into(),
            fingerprint: "f".into(),
        })
        .unwrap();
    // Latencies 10, 20, … 100 on ten answered calls, shuffled; one errored call at 1000 ms
    // that no percentile may see.
    let batch: Vec<RunResult> = [70, 10, 100, 40, 20, 90, 30, 60, 50, 80, 1000]
        .iter()
        .enumerate()
        .map(|(i, ms)| RunResult {
            row_index: i as i64,
            row_id: format!("r{i}"),
            repetition: 0,
            vars: JsonObject::new(),
            expected: None,
            messages: vec![],
            output: Some("x".into()),
            finish_reason: None,
            status: if *ms == 1000 {
                ResultStatus::Error
            } else {
                ResultStatus::Ok
            },
            error_kind: None,
            error_message: None,
            http_status: None,
            attempts: 1,
            latency_ms: *ms as f64,
            prompt_tokens: None,
            completion_tokens: None,
            cached: false,
            started_at: "t".into(),
            finished_at: "t".into(),
            scores: vec![],
            cache_key: None,
        })
        .collect();
    store.write_results(&experiment.id, &batch).unwrap();
    store
        .finish_experiment(&experiment.id, ExperimentStatus::Completed, 0)
        .unwrap();
    let summary = store.summary(&experiment).unwrap();
    // Nearest rank: p50 is the ceil(0.5 × 10) = 5th value, p95 the ceil(9.5) = 10th.
    assert_eq!(summary.latency_p50_ms, Some(50.0));
    assert_eq!(summary.latency_p95_ms, Some(100.0));
    assert_eq!(summary.latency_max_ms, Some(100.0));
    assert_eq!((summary.ok, summary.errored), (10, 1));
}
