//! The store's contract, tested through the traits on both backends: every test here runs
//! once on an SQLite file and once on a fresh database of a real PostgreSQL server.

use super::*;
use crate::model::{
    JsonObject, NewVersion, PromptUpdate, TagAction, Template, TemplateFormat, VersionRef,
};

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
    the_deploy_role_moves_protected_tags_without_force,
    targets_pages_and_version_tags,
    tag_writes_go_ahead_only_where_the_caller_expects_the_tag,
    prompt_fields_archive_and_restore,
    archiving_a_prompt_with_a_protected_tag_needs_force_or_the_deploy_role,
    version_tags_list_newest_first,
    a_promotion_moves_a_protected_tag_without_force_and_says_so,
    latency_percentiles_are_nearest_rank_over_the_successful_calls,
    put_version_creates_appends_or_leaves_alone,
    concurrent_puts_of_the_same_content_make_one_version,
    row_spreads_fold_repetitions_and_outcomes_carry_their_cluster,
    verdicts_are_the_outcomes_without_their_texts,
    work_items_are_leased_once_and_a_taken_over_lease_writes_nothing,
    a_claim_starts_past_the_last_claimed_row_and_still_finds_items_handed_back,
    claimers_sharing_one_store_get_every_item_exactly_once,
    planning_with_a_key_is_idempotent_under_concurrent_planners,
    concurrent_appends_to_a_dataset_all_land_and_a_copy_keeps_their_shape,
);

pub(crate) fn new_version(text: &str) -> NewVersion {
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

pub(crate) fn change() -> TagChange {
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

fn the_deploy_role_moves_protected_tags_without_force(fx: &Fixture) {
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
    let policy = TagPolicy::new(vec!["production".into()]);
    let writer = TagChange {
        policy: policy.clone(),
        ..change()
    };
    let deploy = TagChange {
        actor: "api:release".into(),
        role: TagRole::Deploy,
        policy,
        ..change()
    };
    store
        .set_tag("p", "production", &VersionRef::Seq(1), &writer)
        .unwrap();
    let refused = store.set_tag("p", "production", &VersionRef::Seq(2), &writer);
    assert!(matches!(
        refused,
        Err(StoreError::ProtectedTag {
            action: TagAction::Move,
            ..
        })
    ));
    let TagOutcome::Changed(moved) = store
        .set_tag("p", "production", &VersionRef::Seq(2), &deploy)
        .unwrap()
    else {
        panic!("not moved")
    };
    assert!(moved.deploy && !moved.forced);
    assert_eq!(moved.actor, "api:release");
    // Force asked for as well changes nothing: the role is what allowed it.
    let rolled = store
        .rollback_tag(
            "p",
            "production",
            &TagChange {
                force: true,
                ..deploy.clone()
            },
        )
        .unwrap();
    assert!(rolled.deploy && !rolled.forced);
    // Creating a tag, or moving an unprotected one, is not a deploy.
    let TagOutcome::Changed(staging) = store
        .set_tag("p", "staging", &VersionRef::Seq(2), &deploy)
        .unwrap()
    else {
        panic!("not set")
    };
    assert!(!staging.deploy);
    let history = store.history("p", Some("production")).unwrap();
    assert_eq!(
        history.iter().map(|e| e.deploy).collect::<Vec<_>>(),
        [false, true, true]
    );
    // The flag survives an export and an import, whose replay accepts the deploy changes.
    let archive = store.archive("p").unwrap();
    let other = fx.another();
    let copy = other.open();
    copy.import(std::slice::from_ref(&archive)).unwrap();
    assert_eq!(copy.archive("p").unwrap(), archive);
    // The database refuses an event that claims both, whatever program writes it.
    let insert = |forced: &str, deploy: &str| {
        fx.raw(&format!(
            "INSERT INTO tag_events (prompt_id, tag, action, actor, at, forced, deploy) \
             SELECT id, 'other', 'set', 'raw', '2026-01-01T00:00:00Z', {forced}, {deploy} \
             FROM prompts WHERE name = 'p'"
        ))
    };
    insert("TRUE", "FALSE").expect("one of them is fine");
    let both = insert("TRUE", "TRUE").expect_err("both are refused");
    assert!(both.to_lowercase().contains("check"), "{both}");
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
    // Newest first (created b, a, c), as Phoenix lists them; `prompts()` stays by name.
    assert_eq!(names(store.prompts_page(None, 2).unwrap()), ["c", "a"]);
    assert_eq!(names(store.prompts_page(Some("a"), 5).unwrap()), ["a", "b"]);
    assert_eq!(names(store.prompts().unwrap()), ["a", "b", "c"]);
    let (first, latest) = store.prompts_page(Some("a"), 1).unwrap().remove(0);
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

fn archiving_a_prompt_with_a_protected_tag_needs_force_or_the_deploy_role(fx: &Fixture) {
    let store = fx.open();
    for name in ["a", "b", "c"] {
        store
            .create_prompt(name, new_version("x"), &["production".into()], &change())
            .unwrap();
    }
    let guarded = |force: bool, role: TagRole| TagChange {
        actor: "ci".into(),
        force,
        role,
        policy: TagPolicy::new(vec!["production".into()]),
        ..change()
    };
    // Refused inside the write: nothing archived, nothing recorded.
    let before = store.archive("a").unwrap();
    assert!(matches!(
        store.archive_prompt("a", &guarded(false, TagRole::Writer)),
        Err(StoreError::ProtectedArchive { ref tag, .. }) if tag == "production"
    ));
    assert_eq!(store.archive("a").unwrap(), before);
    // With force, or by the deploy role: archived, and recorded as such.
    store
        .archive_prompt("a", &guarded(true, TagRole::Writer))
        .unwrap();
    store
        .archive_prompt("b", &guarded(false, TagRole::Deploy))
        .unwrap();
    let last = |name: &str| store.archive(name).unwrap().events.pop().unwrap();
    let (a, b) = (last("a"), last("b"));
    assert_eq!(
        (a.action.as_str(), a.forced, a.deploy),
        ("archive", true, false)
    );
    assert_eq!(
        (b.action.as_str(), b.forced, b.deploy),
        ("archive", false, true)
    );
    // An unprotected tag needs neither; the flags travel with a copy of the store.
    let open = TagChange {
        policy: TagPolicy::new(vec!["gold".into()]),
        ..change()
    };
    store.archive_prompt("c", &open).unwrap();
    assert!(!last("c").forced && !last("c").deploy);
    let copy = fx.another();
    let other = copy.open();
    crate::store::copy::copy(&*store, &*other).unwrap();
    assert_eq!(
        other.archive("a").unwrap().events,
        store.archive("a").unwrap().events
    );
}

fn prompt_fields_archive_and_restore(fx: &Fixture) {
    let store = fx.open();
    let mut first = new_version("x");
    first.description = Some("Greets".into());
    first.provider = Some("ANTHROPIC".into());
    first.metadata.insert("ticket".into(), "PR-1".into());
    let v1 = store.create_prompt("p", first, &[], &change()).unwrap();
    assert_eq!(v1.provider.as_deref(), Some("ANTHROPIC"));
    let read = store.version_by_id(&v1.id).unwrap().unwrap();
    assert_eq!(read.provider.as_deref(), Some("ANTHROPIC"));
    assert_eq!(read.metadata["ticket"], "PR-1");
    let (prompt, _) = store.prompt("p").unwrap();
    assert_eq!(prompt.description.as_deref(), Some("Greets"));
    assert!(prompt.metadata.is_empty());

    // An update changes only what it names; None clears the description.
    let mut metadata = JsonObject::new();
    metadata.insert("owner".into(), "cx".into());
    let update = PromptUpdate {
        description: None,
        metadata: Some(metadata.clone()),
    };
    store.update_prompt("p", &update, "alice").unwrap();
    let (prompt, _) = store.prompt("p").unwrap();
    assert_eq!(
        (prompt.description.as_deref(), &prompt.metadata),
        (Some("Greets"), &metadata)
    );
    let clear = PromptUpdate {
        description: Some(None),
        metadata: None,
    };
    store.update_prompt("p", &clear, "alice").unwrap();
    assert_eq!(store.prompt("p").unwrap().0.description, None);
    store
        .set_tag("p", "prod", &VersionRef::Seq(1), &change())
        .unwrap();

    // Archived: hidden from lists and every lookup, by name or version id.
    let bob = TagChange {
        actor: "bob".into(),
        ..change()
    };
    store.archive_prompt("p", &bob).unwrap();
    assert!(store.prompts().unwrap().is_empty());
    assert!(store.prompts_page(None, 10).unwrap().is_empty());
    assert_eq!(store.archived_prompts().unwrap(), ["p"]);
    for e in [
        store.prompt("p").err(),
        store.latest_target("p").err(),
        store.tag_target("p", "prod").err(),
        store.versions("p").err(),
        store.version("p", &VersionRef::Latest).err(),
    ] {
        assert!(matches!(e, Some(StoreError::UnknownPrompt { .. })), "{e:?}");
    }
    assert!(store.version_by_id(&v1.id).unwrap().is_none());
    assert!(matches!(
        store.create_prompt("p", new_version("y"), &[], &change()),
        Err(StoreError::PromptArchived { .. })
    ));
    assert!(matches!(
        store.archive_prompt("p", &bob),
        Err(StoreError::UnknownPrompt { .. })
    ));

    // Exported and copied while archived, with its own history.
    let archived = store.archive("p").unwrap();
    assert!(archived.archived_at.is_some());
    assert_eq!(archived.metadata, metadata);
    let actions: Vec<(&str, &str)> = archived
        .events
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        [("update", "alice"), ("update", "alice"), ("archive", "bob")]
    );
    let copy = fx.another();
    let other = copy.open();
    crate::store::copy::copy(&*store, &*other).unwrap();
    assert_eq!(other.archive("p").unwrap(), archived);

    // Restored as it was: versions, tags and fields.
    store.restore_prompt("p", "carol").unwrap();
    assert!(matches!(
        store.restore_prompt("p", "carol"),
        Err(StoreError::NotArchived { .. })
    ));
    assert_eq!(store.tag_target("p", "prod").unwrap().0, v1.id);
    assert_eq!(store.prompt("p").unwrap().0.metadata, metadata);
    let events = store.archive("p").unwrap().events;
    assert_eq!(events.last().unwrap().action, "restore");
    assert!(
        fx.raw("DELETE FROM prompt_events").is_err(),
        "history is append-only"
    );
}

fn version_tags_list_newest_first(fx: &Fixture) {
    let store = fx.open();
    let v = store
        .create_prompt("p", new_version("x"), &[], &change())
        .unwrap();
    for tag in ["b", "a", "c"] {
        store
            .set_tag("p", tag, &VersionRef::Id(v.id.clone()), &change())
            .unwrap();
    }
    let names = |store: &dyn Store| -> Vec<String> {
        store
            .version_tags(&v.id)
            .unwrap()
            .into_iter()
            .map(|(t, _)| t.name)
            .collect()
    };
    assert_eq!(names(&*store), ["c", "a", "b"]);
    // Deleted and set again: new.
    store.delete_tag("p", "b", &change()).unwrap();
    store
        .set_tag("p", "b", &VersionRef::Id(v.id.clone()), &change())
        .unwrap();
    assert_eq!(names(&*store), ["b", "c", "a"]);
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
    experiment_with(store, "p", rows, 1)
}

fn experiment_with(store: &dyn Store, prompt: &str, rows: i64, repetitions: usize) -> Experiment {
    let version = store
        .create_prompt(prompt, new_version("1"), &[], &change())
        .unwrap();
    store
        .create_experiment(&NewExperiment {
            name: None,
            prompt: Some(prompt.into()),
            version_id: Some(version.id),
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
                repetitions,
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
                detached: None,
                shard: None,
                target: None,
                target_env: Vec::new(),
                mock: false,
            },
            planned: rows,
            author: "t".into(),
            fingerprint: "f".into(),
        })
        .unwrap()
}

fn result(row: i64, latency_ms: f64, status: ResultStatus, output: &str) -> RunResult {
    RunResult {
        row_id: format!("r{row}"),
        output: Some(output.into()),
        status,
        latency_ms,
        prompt_tokens: Some(3),
        started_at: "t".into(),
        finished_at: "t".into(),
        scores: vec![Score {
            evaluator: "exact".into(),
            score: 1.0,
            pass: status == ResultStatus::Ok,
            reason: output.into(),
            error: false,
        }],
        ..RunResult::answered(row)
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
    // Found in memory from the verdicts, the same ones.
    let nearest = |p: f64| (p * 10.0).ceil().clamp(1.0, 10.0) * 10.0;
    let outcomes = store.verdicts(&experiment, None).unwrap();
    let ps = [0.5, 0.95, 0.01, 1.0];
    for (p, in_memory) in ps.into_iter().zip(latency_percentiles(&outcomes, ps)) {
        assert_eq!(in_memory, Some(nearest(p)), "p{p}");
    }
    assert_eq!(latency_percentiles(&[], [0.5]), [None]);
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

/// The per-row aggregates the error bars come from: repetitions folded into a row's mean (an
/// errored call, which has no score, counts as a fail scoring 0), summed by the database; and
/// the cluster column's value carried with each outcome.
fn row_spreads_fold_repetitions_and_outcomes_carry_their_cluster(fx: &Fixture) {
    let store = fx.open();
    let experiment = experiment_with(&*store, "p", 3, 2);
    let answer = |row: i64, rep: i64, ok: bool, score: f64, doc: serde_json::Value| {
        let mut r = result(
            row,
            5.0,
            if ok {
                ResultStatus::Ok
            } else {
                ResultStatus::Error
            },
            "x",
        );
        r.repetition = rep;
        if !doc.is_null() {
            r.vars.insert("doc".into(), doc);
        }
        if ok {
            r.scores[0].score = score;
            r.scores[0].pass = score >= 0.75;
        } else {
            r.scores.clear();
        }
        r
    };
    let batch = vec![
        answer(0, 0, true, 1.0, "a".into()),
        answer(0, 1, true, 1.0, "a".into()),
        answer(1, 0, true, 1.0, 3.into()),
        answer(1, 1, true, 0.5, 3.into()),
        answer(2, 0, false, 0.0, serde_json::Value::Null),
        answer(2, 1, true, 0.8, serde_json::Value::Null),
    ];
    store.write_results(&experiment.id, &batch).unwrap();
    let summary = store.summary(&experiment).unwrap();
    let spread = summary.evaluators[0].spread;
    assert_eq!((spread.rows, spread.answers), (3, 6));
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    // Row pass shares 1, ½, ½; their sample variances over two answers 0, ½, ½.
    assert!(close(spread.pass.sum, 2.0), "{spread:?}");
    assert!(close(spread.pass.sum_sq, 1.5), "{spread:?}");
    assert!(close(spread.pass.within, 1.0), "{spread:?}");
    // Row scores [1, 1], [1, 0.5], [0, 0.8]: means 1, 0.75, 0.4; variances 0, 0.125, 0.32.
    assert!(close(spread.score.sum, 2.15), "{spread:?}");
    assert!(close(spread.score.sum_sq, 1.7225), "{spread:?}");
    assert!(close(spread.score.within, 0.445), "{spread:?}");

    let mut clusters = Vec::new();
    store
        .visit_outcomes(&experiment, Some("doc"), &mut |o| {
            clusters.push((o.row_id, o.repetition, o.cluster));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        clusters,
        vec![
            ("r0".to_string(), 0, Some("a".to_string())),
            ("r0".to_string(), 1, Some("a".to_string())),
            ("r1".to_string(), 0, Some("3".to_string())),
            ("r1".to_string(), 1, Some("3".to_string())),
            ("r2".to_string(), 0, None),
            ("r2".to_string(), 1, None),
        ]
    );
    let mut none = 0;
    store
        .visit_outcomes(&experiment, None, &mut |o| {
            none += usize::from(o.cluster.is_none());
            Ok(())
        })
        .unwrap();
    assert_eq!(none, 6);

    // One answer a row: the same sums from the whole-experiment aggregates.
    let single = experiment_with(&*store, "q", 3, 1);
    let batch = vec![
        answer(0, 0, true, 1.0, "a".into()),
        answer(1, 0, true, 0.5, "a".into()),
        answer(2, 0, false, 0.0, "b".into()),
    ];
    store.write_results(&single.id, &batch).unwrap();
    let spread = store.summary(&single).unwrap().evaluators[0].spread;
    assert_eq!((spread.rows, spread.answers), (3, 3));
    assert!(close(spread.pass.sum, 1.0) && close(spread.pass.sum_sq, 1.0));
    assert!(close(spread.score.sum, 1.5) && close(spread.score.sum_sq, 1.25));
    assert!(close(spread.pass.within, 0.0) && close(spread.score.within, 0.0));
}

/// `verdicts` reads in storage order and sorts: the same outcomes, in the same order, as
/// `visit_outcomes` streams, less their texts; `row_texts` gives a row's first repetition.
fn verdicts_are_the_outcomes_without_their_texts(fx: &Fixture) {
    let store = fx.open();
    let experiment = experiment_with(&*store, "p", 5, 2);
    // Row ids out of row-index order, with upper case and non-ASCII (byte order), two
    // evaluators on some answers and none on an errored one.
    let ids = ["zeta", "alpha", "Émile", "Beta", "alpha2"];
    let mut batch = Vec::new();
    for (row, id) in ids.iter().enumerate() {
        for rep in [1, 0] {
            let ok = !(row == 3 && rep == 1);
            let mut r = result(
                row as i64,
                (10 * row + rep) as f64,
                if ok {
                    ResultStatus::Ok
                } else {
                    ResultStatus::Error
                },
                &format!("answer {id} {rep}"),
            );
            r.row_id = id.to_string();
            r.repetition = rep as i64;
            r.vars.insert("q".into(), format!("question {row}").into());
            r.vars.insert("doc".into(), (row % 2).into());
            r.completion_tokens = Some(row as i64);
            if ok {
                r.scores.push(Score {
                    evaluator: "contains".into(),
                    score: 0.5,
                    pass: rep == 0,
                    reason: String::new(),
                    error: false,
                });
            } else {
                r.output = None;
                r.error_message = Some("HTTP 500 <b>boom</b>".into());
                r.scores.clear();
            }
            batch.push(r);
        }
    }
    store.write_results(&experiment.id, &batch).unwrap();
    for cluster in [None, Some("doc")] {
        let mut streamed = Vec::new();
        store
            .visit_outcomes(&experiment, cluster, &mut |mut o| {
                o.input.clear();
                o.output.clear();
                o.scores.sort_by(|a, b| a.0.cmp(&b.0));
                streamed.push(o);
                Ok(())
            })
            .unwrap();
        let mut read = store.verdicts(&experiment, cluster).unwrap();
        for o in &mut read {
            o.scores.sort_by(|a, b| a.0.cmp(&b.0));
        }
        assert_eq!(read.len(), 10);
        assert_eq!(read, streamed);
        let order: Vec<&str> = read.iter().step_by(2).map(|o| o.row_id.as_str()).collect();
        assert_eq!(order, ["Beta", "alpha", "alpha2", "zeta", "Émile"]);
        assert_eq!(read[0].scores.len(), 2);
        assert!(read[1].scores.is_empty() && !read[1].ok);
        assert_eq!(read[0].cluster, cluster.map(|_| "1".to_string()));
    }

    let asked: Vec<String> = ["zeta", "missing", "Beta", "Émile"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let texts = store.row_texts(&experiment, &asked).unwrap();
    let got: Vec<(&str, &str, bool)> = texts
        .iter()
        .map(|t| (t.row_id.as_str(), t.output.as_str(), t.error))
        .collect();
    assert_eq!(
        got,
        [
            ("zeta", "answer zeta 0", false),
            ("Beta", "answer Beta 0", false),
            ("Émile", "answer Émile 0", false),
        ]
    );
    assert_eq!(texts[1].input, "1 | question 3");
    // A row whose first repetition failed shows the error.
    let broken = experiment_with(&*store, "q", 1, 1);
    let mut r = result(0, 1.0, ResultStatus::Error, "");
    r.output = None;
    r.error_message = Some("x".repeat(5000));
    r.scores.clear();
    store.write_results(&broken.id, &[r]).unwrap();
    let texts = store.row_texts(&broken, &["r0".to_string()]).unwrap();
    assert!(texts[0].error);
    assert_eq!(texts[0].output.chars().count(), ROW_TEXT_CHARS as usize);
}

/// A detached experiment of prompt `p` over `rows` rows × `repetitions`, planned with `key`.
pub(crate) fn plan_detached(
    store: &dyn Store,
    rows: i64,
    repetitions: i64,
    key: Option<&str>,
) -> (Experiment, bool) {
    let template = experiment_template(store, rows);
    let mut next = 0;
    store
        .plan_experiment(&template, key, repetitions, &mut || {
            next += 1;
            Ok((next <= rows).then(|| {
                let mut values = JsonObject::new();
                values.insert(
                    "q".into(),
                    serde_json::json!(format!("question {}", next - 1)),
                );
                (next - 1, format!("r{}", next - 1), values)
            }))
        })
        .unwrap()
}

/// The fields of a new experiment of prompt `p` (created if missing).
fn experiment_template(store: &dyn Store, rows: i64) -> NewExperiment {
    let version = match store.version("p", &VersionRef::Latest) {
        Ok(version) => version,
        Err(_) => match store.create_prompt("p", new_version("1"), &[], &change()) {
            Ok(version) => version,
            // Another planner created it meanwhile.
            Err(_) => store.version("p", &VersionRef::Latest).unwrap(),
        },
    };
    let mut settings = experiment(&*open_in_memory().unwrap(), rows).settings;
    settings.detached = Some(crate::model::Detached {
        key: None,
        min_pass_rate: None,
        max_error_rate: None,
    });
    NewExperiment {
        name: None,
        prompt: Some("p".into()),
        version_id: Some(version.id),
        tag: None,
        dataset: DatasetRef {
            path: "d.csv".into(),
            hash: "h".into(),
            rows,
            columns: vec!["id".into(), "q".into()],
        },
        model: "m".into(),
        base_url: "http://x".into(),
        evaluators: vec!["exact".into()],
        settings,
        planned: rows,
        author: "t".into(),
        fingerprint: "f".into(),
    }
}

fn work_items_are_leased_once_and_a_taken_over_lease_writes_nothing(fx: &Fixture) {
    use std::time::Duration;
    let store = fx.open();
    let (e, created) = plan_detached(&*store, 5, 2, None);
    assert!(created);
    let counts = store.work_counts(&e.id).unwrap().unwrap();
    assert_eq!((counts.items, counts.pending, counts.done), (10, 10, 0));
    // Two workers never get the same item while a lease lives.
    let a = store
        .claim_items(&e.id, "a", Duration::from_secs(60), 4)
        .unwrap();
    let b = store
        .claim_items(&e.id, "b", Duration::from_secs(60), 100)
        .unwrap();
    assert_eq!((a.len(), b.len()), (4, 6));
    assert_eq!(
        (a[0].row_index, a[0].repetition, a[0].row_id.as_str()),
        (0, 0, "r0")
    );
    assert_eq!(a[0].values["q"], serde_json::json!("question 0"));
    assert!(a.iter().all(|x| {
        !b.iter()
            .any(|y| (x.row_index, x.repetition) == (y.row_index, y.repetition))
    }));
    assert!(
        store
            .claim_items(&e.id, "c", Duration::from_secs(60), 100)
            .unwrap()
            .is_empty()
    );
    let as_result = |item: &WorkItem, output: &str| {
        let mut r = result(item.row_index, 5.0, ResultStatus::Ok, output);
        r.repetition = item.repetition;
        r
    };
    // b's leases run out (it renews to a lease of 1 ms and stalls); c takes its items over.
    assert_eq!(
        store
            .renew_items(&e.id, "b", Duration::from_millis(1))
            .unwrap(),
        6
    );
    std::thread::sleep(Duration::from_millis(50));
    let c = store
        .claim_items(&e.id, "c", Duration::from_secs(60), 100)
        .unwrap();
    assert_eq!(c.len(), 6);
    // b comes back: none of its results is written, for none of its items is its own now.
    let late: Vec<RunResult> = b.iter().map(|i| as_result(i, "from b")).collect();
    assert_eq!(store.complete_items(&e.id, "b", &late).unwrap(), 0);
    assert_eq!(
        store
            .renew_items(&e.id, "b", Duration::from_secs(60))
            .unwrap(),
        0
    );
    let from_c: Vec<RunResult> = c.iter().map(|i| as_result(i, "from c")).collect();
    assert_eq!(store.complete_items(&e.id, "c", &from_c).unwrap(), 6);
    // A completed item is never completed again, even by its last owner.
    assert_eq!(store.complete_items(&e.id, "c", &from_c).unwrap(), 0);
    // a gives back one item unfinished: it is pending again, for anyone.
    let from_a: Vec<RunResult> = a[..3].iter().map(|i| as_result(i, "from a")).collect();
    assert_eq!(store.complete_items(&e.id, "a", &from_a).unwrap(), 3);
    assert_eq!(store.release_items(&e.id, "a").unwrap(), 1);
    let counts = store.work_counts(&e.id).unwrap().unwrap();
    assert_eq!(
        (counts.pending, counts.leased, counts.done, counts.reclaimed),
        (1, 0, 9, 6)
    );
    assert_eq!(store.finish_work(&e.id).unwrap(), ExperimentStatus::Running);
    let d = store
        .claim_items(&e.id, "d", Duration::from_secs(60), 100)
        .unwrap();
    assert_eq!(d.len(), 1);
    store
        .complete_items(&e.id, "d", &[as_result(&d[0], "from d")])
        .unwrap();
    assert_eq!(
        store.finish_work(&e.id).unwrap(),
        ExperimentStatus::Completed
    );
    let mut outputs = Vec::new();
    visit_results(&*store, &e.id, |r| -> Result<()> {
        outputs.push(r.output.unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(outputs.len(), 10);
    assert!(!outputs.iter().any(|o| o == "from b"), "{outputs:?}");
    // An experiment without items is not detached.
    let plain = experiment(&*fx.another().open(), 1);
    assert_eq!(fx.another().open().work_counts(&plain.id).unwrap(), None);
}

fn a_claim_starts_past_the_last_claimed_row_and_still_finds_items_handed_back(fx: &Fixture) {
    use std::time::Duration;
    let store = fx.open();
    let (e, _) = plan_detached(&*store, 10, 1, None);
    let claim_by = |store: &dyn Store, owner: &str, max: usize| -> Vec<i64> {
        store
            .claim_items(&e.id, owner, Duration::from_secs(60), max)
            .unwrap()
            .iter()
            .map(|item| item.row_index)
            .collect()
    };
    let claim = |owner: &str, max: usize| claim_by(&*store, owner, max);
    assert_eq!(claim("a", 4), [0, 1, 2, 3]);
    assert_eq!(claim("b", 3), [4, 5, 6]);
    // a hands its items back: they are pending below where this store's claims now start, and
    // wait there while items above are left.
    assert_eq!(store.release_items(&e.id, "a").unwrap(), 4);
    assert_eq!(claim("c", 2), [7, 8]);
    // Another handle on the store (another worker's process) knows no floor: it looks from the
    // first row.
    assert_eq!(claim_by(&*fx.open(), "g", 1), [0]);
    assert_eq!(claim("d", 100), [1, 2, 3, 9]);
    assert_eq!(claim("e", 100), Vec::<i64>::new());
    // The empty claim forgot the floor: d's items handed back are found from the first row.
    assert_eq!(store.release_items(&e.id, "d").unwrap(), 4);
    assert_eq!(claim("f", 1), [1]);
    // b's leases run out: found below the floor too, each item once.
    store
        .renew_items(&e.id, "b", Duration::from_millis(1))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(claim("f", 100), [2, 3, 4, 5, 6, 9]);
    let counts = store.work_counts(&e.id).unwrap().unwrap();
    assert_eq!((counts.pending, counts.leased, counts.done), (0, 10, 0));
}

fn claimers_sharing_one_store_get_every_item_exactly_once(fx: &Fixture) {
    use std::time::Duration;
    // A team server's store serves all its remote workers: their claims overlap.
    let store = fx.open();
    let (e, _) = plan_detached(&*store, 600, 2, None);
    let claimed: Vec<(i64, i64)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..6)
            .map(|n| {
                let store = &store;
                let id = &e.id;
                scope.spawn(move || {
                    let owner = format!("w{n}");
                    let mut mine = Vec::new();
                    for round in 1.. {
                        let items = store
                            .claim_items(id, &owner, Duration::from_secs(60), 7 + n * 11)
                            .unwrap();
                        if items.is_empty() {
                            break;
                        }
                        // One hands back all it holds every third claim: claimed again later,
                        // below where the others' claims have moved on.
                        if n == 0 && round % 3 == 0 {
                            store.release_items(id, &owner).unwrap();
                            mine.clear();
                            continue;
                        }
                        mine.extend(items.iter().map(|i| (i.row_index, i.repetition)));
                    }
                    mine
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let mut sorted = claimed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), claimed.len(), "an item was claimed twice");
    assert_eq!(claimed.len(), 1200);
    let counts = store.work_counts(&e.id).unwrap().unwrap();
    assert_eq!((counts.pending, counts.leased), (0, 1200));
}

fn planning_with_a_key_is_idempotent_under_concurrent_planners(fx: &Fixture) {
    let store = fx.open();
    store
        .create_prompt("p", new_version("1"), &[], &change())
        .unwrap();
    let location = fx.location.clone();
    let planners: Vec<_> = (0..6)
        .map(|_| {
            let location = location.clone();
            std::thread::spawn(move || {
                let store = open(&location).unwrap();
                let (e, created) = plan_detached(&*store, 50, 1, Some("ci-42"));
                (e.id, created)
            })
        })
        .collect();
    let planned: Vec<(String, bool)> = planners.into_iter().map(|p| p.join().unwrap()).collect();
    assert_eq!(
        planned.iter().filter(|(_, created)| *created).count(),
        1,
        "{planned:?}"
    );
    assert!(
        planned.iter().all(|(id, _)| id == &planned[0].0),
        "{planned:?}"
    );
    assert_eq!(store.work_counts(&planned[0].0).unwrap().unwrap().items, 50);
    // Another key is another experiment.
    let (other, created) = plan_detached(&*store, 50, 1, Some("ci-43"));
    assert!(created);
    assert_ne!(other.id, planned[0].0);
}

fn concurrent_appends_to_a_dataset_all_land_and_a_copy_keeps_their_shape(fx: &Fixture) {
    use crate::workflow::examples::{Action, Incoming, Upload, upload};
    let example = |q: String| Incoming {
        external_id: None,
        input: serde_json::json!({ "q": q }).as_object().unwrap().clone(),
        output: JsonObject::new(),
        metadata: JsonObject::new(),
    };
    let store = fx.open();
    let first = Upload {
        name: "queries".into(),
        description: Some("what customers ask".into()),
        action: Action::Create,
        examples: vec![example("first".into())],
    };
    upload(&*store, first, "ada").unwrap();
    // Each append builds on the version before it, read under the dataset's lock: none is lost.
    let location = fx.location.clone();
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let location = location.clone();
            std::thread::spawn(move || {
                let store = open(&location).unwrap();
                let more = Upload {
                    name: "queries".into(),
                    description: None,
                    action: Action::Append,
                    examples: vec![example(format!("append {i}"))],
                };
                upload(&*store, more, "ada").unwrap()
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let (latest, content) = store.dataset_content("queries", None).unwrap();
    assert_eq!(
        (latest.seq, latest.rows, latest.shape.as_str()),
        (7, 7, "examples")
    );
    let examples = crate::workflow::examples::examples_of(&latest, &content).unwrap();
    assert_eq!(examples[0].input["q"], "first");
    // An experiment of the Phoenix client on it, with a run and an evaluation.
    let experiment = crate::workflow::task_experiments::create(
        &*store,
        crate::workflow::task_experiments::NewRun {
            version: &latest,
            name: "plain".into(),
            description: None,
            metadata: JsonObject::new(),
            repetitions: 1,
            author: "ada",
        },
    )
    .unwrap();
    let run = crate::model::TaskRun {
        id: String::new(),
        experiment_id: experiment.id.clone(),
        example_key: examples[0].key.clone(),
        repetition: 1,
        output: "\"hi\"".into(),
        error: None,
        start_time: "2026-12-06T10:00:00+00:00".into(),
        end_time: "2026-12-06T10:00:01+00:00".into(),
        trace_id: None,
    };
    let run_id = store.record_task_run(&run, None).unwrap();
    let evaluation = crate::model::TaskEvaluation {
        id: String::new(),
        run_id: run_id.clone(),
        name: "correct".into(),
        annotator_kind: "HUMAN".into(),
        label: Some("True".into()),
        score: None,
        explanation: None,
        error: None,
        metadata: "{}".into(),
        start_time: run.start_time.clone(),
        end_time: run.end_time.clone(),
        trace_id: None,
    };
    store.record_task_evaluation(&evaluation, None).unwrap();
    // A copy keeps every version, its shape, the dataset's description and every id.
    let other = fx.another();
    let to = other.open();
    let copied = copy::copy(&*store, &*to).unwrap();
    assert_eq!(copied.task_experiments, 1);
    let copied_experiment = to.task_experiment(&experiment.id).unwrap().unwrap();
    assert_eq!(copied_experiment.successful_runs, 1);
    assert_eq!(copied_experiment.dataset_version_id, latest.id);
    assert_eq!(
        to.task_evaluations(&experiment.id).unwrap()[0].run_id,
        run_id
    );
    let entry = to
        .dataset_entries(Some("queries"), None, 1)
        .unwrap()
        .remove(0);
    assert_eq!(entry.description.as_deref(), Some("what customers ask"));
    assert_eq!(entry.example_count, 7);
    let (copied, copied_content) = to.dataset_content("queries", None).unwrap();
    assert_eq!((copied.seq, copied.shape.as_str()), (7, "examples"));
    assert_eq!(copied_content, content);
}
