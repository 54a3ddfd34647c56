//! The store's contract, tested through the traits on both backends: every test here runs
//! once on an SQLite file and once on a fresh database of a real PostgreSQL server.

use super::*;
use crate::model::{JsonObject, NewVersion, TagAction, Template, TemplateFormat, VersionRef};

/// One test's store: an SQLite file in a temporary folder, or a fresh PostgreSQL database.
pub(crate) struct Fixture {
    pub location: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            location: dir.path().join("store.db"),
            _dir: Some(dir),
        }
    }

    pub fn postgres() -> Fixture {
        Fixture {
            location: PathBuf::from(test_cluster::fresh_database()),
            _dir: None,
        }
    }

    /// A second, empty store on the same backend.
    pub fn another(&self) -> Fixture {
        if self._dir.is_some() {
            Fixture::sqlite()
        } else {
            Fixture::postgres()
        }
    }

    fn is_postgres(&self) -> bool {
        self._dir.is_none()
    }

    /// A new handle on the store (its own connections), created and migrated if needed.
    pub fn open(&self) -> Arc<dyn Store> {
        open(&self.location).unwrap()
    }

    /// Runs SQL as another program connected to the same store would.
    pub fn raw(&self, sql: &str) -> std::result::Result<String, String> {
        if self.is_postgres() {
            let url = self.location.to_str().unwrap();
            let dbname = url.rsplit('/').next().unwrap();
            let output = test_cluster::cluster()
                .psql_command(dbname, sql)
                .output()
                .map_err(|e| e.to_string())?;
            if output.status.success() {
                Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).to_string())
            }
        } else {
            let conn = rusqlite::Connection::open(&self.location).map_err(|e| e.to_string())?;
            let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
            let columns = stmt.column_count();
            let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                let values: Vec<String> = (0..columns)
                    .map(|i| match row.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Null => String::new(),
                        rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                        rusqlite::types::ValueRef::Real(x) => x.to_string(),
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                        rusqlite::types::ValueRef::Blob(_) => "<blob>".into(),
                    })
                    .collect();
                out.push(values.join("|"));
            }
            Ok(out.join("\n"))
        }
    }

    pub fn count(&self, table: &str) -> i64 {
        self.raw(&format!("SELECT COUNT(*) FROM {table}"))
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// Runs each named test on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::Fixture::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(&super::Fixture::postgres()) } )*
        }
    };
}

on_both_backends!(
    a_successful_result_is_never_overwritten,
    versions_are_numbered_and_carry_their_fields,
    unknown_references_are_input_errors,
    a_failed_build_writes_nothing,
    tag_moves_are_recorded_and_rolled_back,
    rollback_without_an_earlier_version_is_refused,
    versions_and_history_cannot_be_rewritten,
    archive_and_import_round_trip,
    concurrent_writers_number_versions_without_gaps,
    protected_tags_are_checked_inside_the_write,
    targets_pages_and_version_tags,
    tag_writes_go_ahead_only_where_the_caller_expects_the_tag,
    a_promotion_moves_a_protected_tag_without_force_and_says_so,
    latency_percentiles_are_nearest_rank_over_the_successful_calls,
    put_version_creates_appends_or_leaves_alone,
    concurrent_puts_of_the_same_content_make_one_version,
);

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

fn versions_are_numbered_and_carry_their_fields(fx: &Fixture) {
    let store = fx.open();
    let v1 = store
        .create_prompt(
            "p",
            new_version("one {{x}}"),
            &["staging".into()],
            &change(),
        )
        .unwrap();
    assert_eq!(v1.seq, 1);
    let v2 = append_version::<_, _, StoreError>(
        &*store,
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

fn unknown_references_are_input_errors(fx: &Fixture) {
    let store = fx.open();
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

fn a_failed_build_writes_nothing(fx: &Fixture) {
    let store = fx.open();
    store
        .create_prompt("p", new_version("x"), &[], &change())
        .unwrap();
    let result: Result<PromptVersion, StoreError> = append_version::<_, _, StoreError>(
        &*store,
        "p",
        |_| Err(StoreError::Corrupt("refused".into())),
        &["t".into()],
        &change(),
    );
    assert!(result.is_err());
    assert_eq!(fx.count("prompt_versions"), 1);
    assert_eq!(fx.count("tags"), 0);
}

fn tag_moves_are_recorded_and_rolled_back(fx: &Fixture) {
    let store = fx.open();
    let v1 = store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    let v2 = append_version::<_, _, StoreError>(
        &*store,
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

fn rollback_without_an_earlier_version_is_refused(fx: &Fixture) {
    let store = fx.open();
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

fn versions_and_history_cannot_be_rewritten(fx: &Fixture) {
    let store = fx.open();
    store
        .create_prompt("p", new_version("1"), &["t".into()], &change())
        .unwrap();
    for sql in [
        "UPDATE prompt_versions SET template = 'changed'",
        "DELETE FROM prompt_versions",
        "UPDATE tag_events SET actor = 'someone else'",
        "DELETE FROM tag_events",
    ] {
        assert!(fx.raw(sql).is_err(), "{sql} was allowed");
    }
}

fn archive_and_import_round_trip(fx: &Fixture) {
    let store = fx.open();
    store
        .create_prompt("p", new_version("1"), &["staging".into()], &change())
        .unwrap();
    append_version::<_, _, StoreError>(
        &*store,
        "p",
        |_| Ok::<_, StoreError>(new_version("2")),
        &["production".into()],
        &change(),
    )
    .unwrap();
    store.rollback_tag("p", "production", &change()).ok();
    let archive = store.archive("p").unwrap();

    let other = fx.another();
    let copy = other.open();
    copy.import(std::slice::from_ref(&archive)).unwrap();
    assert_eq!(copy.archive("p").unwrap(), archive);
    // A second import of the same prompt is refused as a whole.
    assert!(matches!(
        copy.import(&[archive]),
        Err(StoreError::PromptExists { .. })
    ));
    assert_eq!(other.count("prompts"), 1);
}

fn concurrent_writers_number_versions_without_gaps(fx: &Fixture) {
    // Eight writers, each with its own store (its own connections: as separate machines
    // would be), append 25 versions each and move one tag with every append.
    fx.open()
        .create_prompt("p", new_version("0"), &[], &change())
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = fx.open();
            std::thread::spawn(move || {
                for i in 0..25 {
                    append_version::<_, _, StoreError>(
                        &*store,
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
    let store = fx.open();
    let mut seqs: Vec<i64> = store.versions("p").unwrap().iter().map(|v| v.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=201).collect::<Vec<_>>());
    let history = store.history("p", Some("moving")).unwrap();
    assert_eq!(history.len(), 200);
    let tag = store.tag("p", "moving").unwrap().unwrap();
    assert_eq!(
        history.last().unwrap().to_version_id.as_deref(),
        Some(tag.version_id.as_str())
    );
}

fn put_version_creates_appends_or_leaves_alone(fx: &Fixture) {
    let store = fx.open();
    let staging = ["staging".to_string()];
    let put = |v: NewVersion| store.put_version("p", v, &staging, &change()).unwrap();
    let Put::Created(v1) = put(new_version("one")) else {
        panic!("not created")
    };
    assert_eq!(v1.seq, 1);
    assert_eq!(store.tag("p", "staging").unwrap().unwrap().version_seq, 1);
    // The same content, another message and author: nothing is written.
    let mut again = new_version("one");
    again.message = Some("another commit".into());
    again.author = "someone else".into();
    assert_eq!(put(again), Put::Unchanged(v1.clone()));
    let Put::Appended(v2) = put(new_version("two")) else {
        panic!("not appended")
    };
    assert_eq!(v2.seq, 2);
    assert_eq!(store.tag("p", "staging").unwrap().unwrap().version_seq, 2);
    // A new description alone is new content for a file, though not for the hash.
    let mut described = new_version("two");
    described.description = Some("what it is for".into());
    let Put::Appended(v3) = put(described) else {
        panic!("not appended")
    };
    assert_eq!(v3.content_hash, v2.content_hash);
    assert_eq!(store.versions("p").unwrap().len(), 3);
    assert_eq!(store.history("p", Some("staging")).unwrap().len(), 3);
}

fn concurrent_puts_of_the_same_content_make_one_version(fx: &Fixture) {
    // Eight writers with their own connections put the same content at once, twice over:
    // first a new prompt, then a new version of it. Each round makes one version.
    for (round, text) in ["first", "second"].iter().enumerate() {
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = fx.open();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    store
                        .put_version("p", new_version(text), &["staging".into()], &change())
                        .unwrap()
                })
            })
            .collect();
        let puts: Vec<Put> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let written = puts
            .iter()
            .filter(|p| matches!(p, Put::Created(_) | Put::Appended(_)))
            .count();
        assert_eq!(written, 1, "round {round}: {puts:?}");
        let store = fx.open();
        assert_eq!(store.versions("p").unwrap().len(), round + 1);
        assert_eq!(
            store.history("p", Some("staging")).unwrap().len(),
            round + 1
        );
    }
}

fn protected_tags_are_checked_inside_the_write(fx: &Fixture) {
    let store = fx.open();
    store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    append_version::<_, _, StoreError>(
        &*store,
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
    assert_eq!(fx.count("tag_events"), 3);
}

fn targets_pages_and_version_tags(fx: &Fixture) {
    let store = fx.open();
    for name in ["b", "a", "c"] {
        store
            .create_prompt(name, new_version("x"), &[], &TagChange::default())
            .unwrap();
    }
    let v1 = store
        .version_by_id(&store.versions("a").unwrap()[0].id)
        .unwrap()
        .unwrap();
    let v2 = append_version::<_, _, StoreError>(
        &*store,
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

fn tag_writes_go_ahead_only_where_the_caller_expects_the_tag(fx: &Fixture) {
    let store = fx.open();
    let v1 = store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    let v2 =
        append_version::<_, _, StoreError>(&*store, "p", |_| Ok(new_version("2")), &[], &change())
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

fn a_promotion_moves_a_protected_tag_without_force_and_says_so(fx: &Fixture) {
    let store = fx.open();
    store
        .create_prompt("p", new_version("1"), &["production".into()], &change())
        .unwrap();
    let v2 =
        append_version::<_, _, StoreError>(&*store, "p", |_| Ok(new_version("2")), &[], &change())
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

use crate::model::{
    DatasetRef, Experiment, ExperimentStatus, NewExperiment, ResultStatus, RunResult, RunSettings,
    Score,
};

/// An experiment of prompt `p` (created here) planned over `rows` rows.
fn experiment(store: &dyn Store, rows: i64) -> Experiment {
    let version = store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    store
        .create_experiment(&NewExperiment {
            name: None,
            prompt: "p".into(),
            version_id: version.id,
            tag: None,
            dataset: DatasetRef {
                path: "d.csv".into(),
                hash: "h".into(),
                rows,
                columns: vec!["id".into()],
            },
            model: "m".into(),
            base_url: "http://x".into(),
            evaluators: vec!["exact".into()],
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
                max_rpm: None,
                max_tpm: None,
                max_cost: None,
                judge_model: None,
            },
            planned: rows,
            author: "t".into(),
            fingerprint: "f".into(),
        })
        .unwrap()
}

fn result(row: i64, latency_ms: f64, status: ResultStatus, output: &str) -> RunResult {
    RunResult {
        row_index: row,
        row_id: format!("r{row}"),
        repetition: 0,
        vars: JsonObject::new(),
        expected: None,
        messages: vec![],
        output: Some(output.into()),
        finish_reason: None,
        status,
        error_kind: None,
        error_message: None,
        http_status: Some(200),
        attempts: 1,
        latency_ms,
        prompt_tokens: Some(3),
        completion_tokens: None,
        cached: false,
        started_at: "t".into(),
        finished_at: "t".into(),
        scores: vec![Score {
            evaluator: "exact".into(),
            score: 1.0,
            pass: status == ResultStatus::Ok,
            reason: output.into(),
            error: false,
        }],
        cache_key: None,
    }
}

fn latency_percentiles_are_nearest_rank_over_the_successful_calls(fx: &Fixture) {
    let store = fx.open();
    let experiment = experiment(&*store, 11);
    // Latencies 10, 20, … 100 on ten answered calls, shuffled; one errored call at 1000 ms
    // that no percentile may see.
    let batch: Vec<RunResult> = [70, 10, 100, 40, 20, 90, 30, 60, 50, 80, 1000]
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            let status = if *ms == 1000 {
                ResultStatus::Error
            } else {
                ResultStatus::Ok
            };
            result(i as i64, *ms as f64, status, "x")
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

fn a_successful_result_is_never_overwritten(fx: &Fixture) {
    let store = fx.open();
    let experiment = experiment(&*store, 2);
    store
        .write_results(
            &experiment.id,
            &[
                result(0, 5.0, ResultStatus::Ok, "first answer"),
                result(1, 5.0, ResultStatus::Error, "timeout"),
            ],
        )
        .unwrap();
    // A later attempt replaces the errored row, never the answered one (nor its scores).
    store
        .write_results(
            &experiment.id,
            &[
                result(0, 9.0, ResultStatus::Error, "late failure"),
                result(1, 7.0, ResultStatus::Ok, "second answer"),
            ],
        )
        .unwrap();
    let mut seen = Vec::new();
    visit_results(&*store, &experiment.id, |r| -> Result<()> {
        seen.push((
            r.row_index,
            r.status,
            r.output.clone().unwrap(),
            r.scores[0].reason.clone(),
            r.http_status,
            r.prompt_tokens,
        ));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            (
                0,
                ResultStatus::Ok,
                "first answer".into(),
                "first answer".into(),
                Some(200),
                Some(3)
            ),
            (
                1,
                ResultStatus::Ok,
                "second answer".into(),
                "second answer".into(),
                Some(200),
                Some(3)
            ),
        ]
    );
    // Whatever program connects: the database refuses to rewrite a successful result.
    assert!(fx.raw("UPDATE results SET output = 'rewritten'").is_err());
    let mut successes = Vec::new();
    store
        .visit_successes(&experiment.id, &mut |row, rep| successes.push((row, rep)))
        .unwrap();
    successes.sort();
    assert_eq!(successes, vec![(0, 0), (1, 0)]);
}
