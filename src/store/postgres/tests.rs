//! What only the PostgreSQL store has to prove against a real server: its migrations and
//! refusals, and that a password never shows. The store's contract is tested on both
//! backends in `store::tests`.

use super::*;
use crate::model::Template;
use crate::store::PromptStore;
use crate::store::test_cluster::{self, PASSWORD, USER};
use crate::store::tests::Fixture;

fn dbname(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// Every row of every table and the list of tables, as text.
fn dump(fx: &Fixture) -> String {
    let tables = fx
        .raw(
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
             WHERE schemaname = 'public'",
        )
        .unwrap();
    let mut out = tables.clone();
    for table in tables.split(',').filter(|t| !t.is_empty()) {
        out.push_str(
            &fx.raw(&format!("SELECT t::text FROM {table} t ORDER BY 1"))
                .unwrap(),
        );
    }
    out
}

#[test]
fn concurrent_first_connections_migrate_once() {
    let fx = Fixture::postgres();
    let url = fx.location.to_str().unwrap().to_string();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url).map(|s| s.schema_version()))
        })
        .collect();
    for t in threads {
        let version = t.join().unwrap().unwrap().unwrap();
        assert_eq!(version, PgStore::latest_schema_version());
    }
    assert_eq!(
        fx.raw("SELECT version FROM runner_schema").unwrap(),
        PgStore::latest_schema_version().to_string()
    );
    assert_eq!(fx.count("runner_schema"), 1);
}

#[test]
fn span_texts_are_compressed_with_lz4() {
    let fx = Fixture::postgres();
    fx.open();
    // Debian's PostgreSQL is built with LZ4; 'l' is LZ4 in pg_attribute.attcompression.
    assert_eq!(
        fx.raw(
            "SELECT string_agg(attname || '=' || attcompression::text, ',' ORDER BY attname) \
             FROM pg_attribute WHERE attrelid = 'spans'::regclass \
             AND attname IN ('attributes', 'input', 'output', 'variables')"
        )
        .unwrap(),
        "attributes=l,input=l,output=l,variables=l"
    );
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let fx = Fixture::postgres();
    fx.open();
    fx.raw("UPDATE runner_schema SET version = 99").unwrap();
    let before = dump(&fx);
    let url = fx.location.to_str().unwrap();
    assert!(matches!(
        PgStore::open(url),
        Err(StoreError::NewerSchema { found: 99, .. })
    ));
    assert!(matches!(
        PgStore::open_read_only(url),
        Err(StoreError::NewerSchema { found: 99, .. })
    ));
    assert_eq!(dump(&fx), before);
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let fx = Fixture::postgres();
    fx.raw("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('kept')")
        .unwrap();
    let before = dump(&fx);
    let url = fx.location.to_str().unwrap();
    let err = PgStore::open(url).err().unwrap();
    assert!(matches!(err, StoreError::ForeignDatabase { .. }), "{err}");
    assert!(!err.to_string().contains(PASSWORD));
    assert!(matches!(
        PgStore::open_read_only(url),
        Err(StoreError::ForeignDatabase { .. })
    ));
    assert_eq!(dump(&fx), before);
}

#[test]
fn reading_an_empty_database_creates_nothing() {
    let fx = Fixture::postgres();
    let store = crate::store::open_for_reading(&fx.location).unwrap();
    assert!(store.prompts().unwrap().is_empty());
    assert_eq!(dump(&fx), "");
}

#[test]
fn a_store_at_every_older_schema_reaches_the_newest_with_its_rows() {
    for applied in 1..PgStore::latest_schema_version() as usize {
        let fx = Fixture::postgres();
        let mut sql = String::from(
            "CREATE TABLE runner_schema (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE \
             CHECK (only_row), version BIGINT NOT NULL);",
        );
        for migration in MIGRATIONS.iter().take(applied) {
            sql.push_str(migration);
        }
        sql.push_str(&format!(
            "INSERT INTO runner_schema (version) VALUES ({applied});
             INSERT INTO prompts (name, created_at) VALUES ('p', 't');
             INSERT INTO prompt_versions (id, prompt_id, seq, template_type, format, template,
               params, metadata, author, content_hash, created_at)
             VALUES ('v1', 1, 1, 'str', 'none', 'hello', '{{}}', '{{}}', 'a', 'h', 't');"
        ));
        fx.raw(&sql).unwrap();
        let url = fx.location.to_str().unwrap();
        assert!(matches!(
            PgStore::open_read_only(url),
            Err(StoreError::OlderSchema { .. })
        ));
        let store = PgStore::open(url).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            PgStore::latest_schema_version()
        );
        assert_eq!(
            store.versions("p").unwrap()[0].template,
            Template::Str("hello".into())
        );
        assert!(
            crate::store::ExperimentStore::experiments(&store, None)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn the_password_shows_nowhere_and_comes_from_the_environment_or_a_file() {
    let fx = Fixture::postgres();
    let url = fx.location.to_str().unwrap().to_string();
    let store = PgStore::open(&url).unwrap();
    assert!(!store.location().contains(PASSWORD));
    assert!(
        store
            .location()
            .starts_with(&format!("postgres://{USER}@127.0.0.1:"))
    );
    assert!(!crate::store::display_location(&fx.location).contains(PASSWORD));

    let wrong = url.replace(PASSWORD, "not-the-password");
    let err = PgStore::open(&wrong).err().unwrap();
    let shown = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(matches!(err, StoreError::Open { .. }), "{shown}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(!shown.contains("not-the-password"), "{shown}");

    let port = test_cluster::cluster().port;
    let bare = format!("postgres://{USER}@127.0.0.1:{port}/{}", dbname(&url));
    // A password file named in the URL, as libpq reads it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    std::fs::write(&file, format!("127.0.0.1:{port}:*:{USER}:{PASSWORD}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let with_file = format!("{bare}?passfile={}", file.display());
    assert_eq!(
        PgStore::open(&with_file).unwrap().schema_version().unwrap(),
        PgStore::latest_schema_version()
    );
}

#[test]
fn a_score_finds_its_result_by_the_primary_key_even_planned_on_an_empty_table() {
    // The foreign key check of each score is planned once per connection, often while the
    // results table is empty; an index matching the experiment alone made it read every result
    // of the experiment per score (migration 0009).
    let fx = Fixture::postgres();
    fx.open();
    let plan = fx
        .raw(
            "SET plan_cache_mode = force_generic_plan; \
             PREPARE lookup(text, bigint, bigint) AS SELECT 1 FROM ONLY results x \
             WHERE experiment_id = $1 AND row_index = $2 AND repetition = $3 FOR KEY SHARE OF x; \
             EXPLAIN EXECUTE lookup('exp_1', 1, 0)",
        )
        .unwrap();
    assert!(plan.contains("using results_pkey"), "{plan}");
}

#[test]
fn a_claim_and_a_completion_read_items_by_their_key_whatever_the_planner_knows() {
    // Planned generically on an empty table, as a worker's statements are: a claim walks the
    // items not done from the floor in order (no sort of every pending item, no bitmap of an
    // index), and a completion looks each item up by its key (not every lease of the run).
    let fx = Fixture::postgres();
    fx.open();
    let plan_settings = crate::store::sql::Dialect::Postgres.claim_plan().unwrap();
    let claim = fx
        .raw(&format!(
            "SET plan_cache_mode = force_generic_plan; {plan_settings}; \
             PREPARE claim(text, text, bigint, bigint, bigint, bigint) AS {}; \
             EXPLAIN EXECUTE claim('exp_1', 'w', 1000, 128, 500, 9223372036854775807)",
            crate::store::sql::Dialect::Postgres.claim_items()
        ))
        .unwrap();
    assert!(
        claim.contains("Index Scan using work_items_open"),
        "{claim}"
    );
    assert!(
        claim
            .lines()
            .any(|line| line.contains("Index Cond") && line.contains("row_index >= $5")),
        "{claim}"
    );
    assert!(!claim.contains("Sort"), "{claim}");
    assert!(!claim.contains("Bitmap"), "{claim}");
    let complete = fx
        .raw(&format!(
            "SET plan_cache_mode = force_generic_plan; \
             PREPARE complete(text, bigint[], bigint[], text) AS {}; \
             EXPLAIN EXECUTE complete('exp_1', ARRAY[1, 2], ARRAY[0, 0], 'w')",
            super::db::COMPLETE_ITEMS
        ))
        .unwrap();
    assert!(
        complete
            .lines()
            .any(|line| line.contains("Index Cond") && line.contains("row_index = ANY ($2)")),
        "{complete}"
    );
    assert!(complete.contains("work_items_pkey"), "{complete}");
    assert!(!complete.contains("work_items_leased"), "{complete}");
}

#[test]
fn migration_21_puts_owners_right_and_keeps_them_right() {
    use crate::store::WorkQueue;
    let fx = Fixture::postgres();
    let store = fx.open();
    let (e, _) = crate::store::tests::plan_detached(&*store, 4, 1, None);
    drop(store);
    // The store as schema 20 left it, with the two ways an owner could disagree with a state.
    fx.raw(&format!(
        "ALTER TABLE work_items DROP CONSTRAINT work_items_owner_while_leased; \
         DROP INDEX work_items_leased; DROP INDEX work_items_open; \
         CREATE INDEX work_items_by_state ON work_items \
           (experiment_id, state, row_index, repetition); \
         UPDATE work_items SET state = 'done', lease_owner = 'gone' \
           WHERE experiment_id = '{id}' AND row_index = 1; \
         UPDATE work_items SET state = 'leased', lease_until = 1 \
           WHERE experiment_id = '{id}' AND row_index = 2; \
         UPDATE runner_schema SET version = 20",
        id = e.id
    ))
    .unwrap();
    let store = PgStore::open(fx.location.to_str().unwrap()).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        PgStore::latest_schema_version()
    );
    let rows = fx
        .raw(&format!(
            "SELECT row_index || ':' || state || ':' || coalesce(lease_owner, '-') \
             FROM work_items WHERE experiment_id = '{}' ORDER BY row_index",
            e.id
        ))
        .unwrap();
    assert_eq!(
        rows.lines().collect::<Vec<_>>(),
        ["0:pending:-", "1:done:-", "2:pending:-", "3:pending:-"]
    );
    let refused = fx
        .raw(&format!(
            "UPDATE work_items SET lease_owner = 'x' WHERE experiment_id = '{}' AND row_index = 0",
            e.id
        ))
        .unwrap_err();
    assert!(
        refused.contains("work_items_owner_while_leased"),
        "{refused}"
    );
    // The queue works on: the item put back is claimed again.
    let claimed: Vec<i64> = store
        .claim_items(&e.id, "w", std::time::Duration::from_secs(60), 10)
        .unwrap()
        .iter()
        .map(|item| item.row_index)
        .collect();
    assert_eq!(claimed, [0, 2, 3]);
}

/// Waits up to 10 s for `done`, then fails naming `what`.
fn within_10_s(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_routing_feed_hears_every_routing_write_another_program_commits() {
    use crate::store::VersionRef;
    use crate::store::tests::{change, new_version};
    let fx = Fixture::postgres();
    let server = fx.open();
    // Another program: its own connections, and no feed of its own started.
    let other = fx.open();
    let feed = server
        .routing_feed()
        .expect("PostgreSQL has a routing feed");
    within_10_s("listening", || feed.current().is_some());

    let heard = |what: &str, write: &dyn Fn()| {
        let before = feed.current().unwrap();
        write();
        within_10_s(what, || feed.current().is_some_and(|now| now > before));
    };
    heard("a new prompt", &|| {
        other
            .create_prompt("p", new_version("a"), &[], &change())
            .unwrap();
    });
    heard("a new version", &|| {
        crate::store::append_version::<_, _, StoreError>(
            &*other,
            "p",
            |_| Ok(new_version("b")),
            &[],
            &change(),
        )
        .unwrap();
    });
    heard("a tag set", &|| {
        other
            .set_tag("p", "production", &VersionRef::Seq(1), &change())
            .unwrap();
    });
    heard("a tag moved", &|| {
        other
            .set_tag("p", "production", &VersionRef::Seq(2), &change())
            .unwrap();
    });
    heard("a tag deleted", &|| {
        other.delete_tag("p", "production", &change()).unwrap();
    });
    heard("an archive", &|| {
        other.archive_prompt("p", &change()).unwrap()
    });
    heard("a restore", &|| {
        other.restore_prompt("p", "tester").unwrap()
    });
    // The rollouts table notifies too: a raw write stands for any program's.
    let before = feed.current().unwrap();
    fx.raw("DELETE FROM rollouts").unwrap();
    within_10_s("a rollout write", || {
        feed.current().is_some_and(|now| now > before)
    });
    assert!(other.rollouts(None, false).unwrap().is_empty());
}

#[test]
fn a_lost_listener_is_distrusted_until_it_listens_again() {
    let fx = Fixture::postgres();
    let server = fx.open();
    let feed = server
        .routing_feed()
        .expect("PostgreSQL has a routing feed");
    within_10_s("listening", || feed.current().is_some());
    let before = feed.current().unwrap();
    // Asking again starts no second listener.
    assert!(std::sync::Arc::ptr_eq(
        &feed,
        &server.routing_feed().unwrap()
    ));
    // One listening session, and the heartbeat's own, as another program's change comes.
    for name in [feed::APPLICATION_NAME, feed::HEARTBEAT_APPLICATION_NAME] {
        assert_eq!(
            fx.raw(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}' AND datname = current_database()"
            ))
            .unwrap(),
            "1",
            "{name}"
        );
    }
    fx.raw(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}' \
         AND datname = current_database()",
        feed::APPLICATION_NAME
    ))
    .unwrap();
    // Whatever was kept is stale from the loss on: the feed comes back further on, and
    // listening (the connection seen again).
    within_10_s("listening again", || {
        feed.current().is_some_and(|now| now > before)
    });
    within_10_s("a new listening connection", || {
        fx.raw(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}' \
             AND datname = current_database()",
            feed::APPLICATION_NAME
        ))
        .unwrap()
            == "1"
    });
}

/// A TCP proxy to `target` that passes every byte but the server's notifications (protocol
/// message 'A'): what a listener sees through a pooler that hands each transaction another
/// server connection. Returns its port and the count of notifications it dropped.
fn proxy_without_notifications(
    target: std::net::SocketAddr,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = dropped.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(target) else {
                continue;
            };
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_client, &mut to_server);
                let _ = to_server.shutdown(Shutdown::Write);
            });
            let (mut from_server, mut to_client) = (server, client);
            let counted = counted.clone();
            std::thread::spawn(move || {
                // Every message from the server: a type byte, then its length (itself included).
                let mut header = [0u8; 5];
                while from_server.read_exact(&mut header).is_ok() {
                    let length = u32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
                    let mut body = vec![0; length.saturating_sub(4)];
                    if from_server.read_exact(&mut body).is_err() {
                        break;
                    }
                    if header[0] == b'A' {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        continue;
                    }
                    if to_client.write_all(&header).is_err() || to_client.write_all(&body).is_err()
                    {
                        break;
                    }
                }
                let _ = to_client.shutdown(Shutdown::Both);
            });
        }
    });
    (port, dropped)
}

#[test]
fn a_listener_that_hears_no_notifications_is_never_trusted() {
    let fx = Fixture::postgres();
    fx.open();
    let url = fx.location.to_str().unwrap().to_string();
    let authority = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let (port, dropped) = proxy_without_notifications(authority.parse().unwrap());
    let proxied = url.replace(authority, &format!("127.0.0.1:{port}"));
    let store = PgStore::open(&proxied).unwrap();
    // Statements pass: the store works through the proxy.
    assert_eq!(
        store.schema_version().unwrap(),
        PgStore::latest_schema_version()
    );
    let feed = store.routing_feed().unwrap();
    // Its LISTEN succeeds, but its own notification never comes back: never trusted, so every
    // lookup reads the database. (Past the 3 s the first heartbeat may take, it tries again.)
    let until = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::time::Instant::now() < until {
        assert_eq!(
            feed.current(),
            None,
            "a feed that hears nothing was trusted"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        dropped.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the listener's heartbeat never reached the proxy"
    );
}

#[test]
fn heartbeats_move_no_feed_and_a_write_moves_every_one() {
    use crate::store::tests::{change, new_version};
    let fx = Fixture::postgres();
    let (one, two) = (fx.open(), fx.open());
    let feeds = [one.routing_feed().unwrap(), two.routing_feed().unwrap()];
    within_10_s("both listening", || {
        feeds.iter().all(|feed| feed.current().is_some())
    });
    let before: Vec<_> = feeds.iter().map(|feed| feed.current()).collect();
    // Two heartbeats of each (one every 2 s), each heard by both listeners.
    std::thread::sleep(std::time::Duration::from_millis(4500));
    let after: Vec<_> = feeds.iter().map(|feed| feed.current()).collect();
    assert_eq!(after, before, "a heartbeat dropped what the servers keep");
    fx.open()
        .create_prompt("p", new_version("a"), &[], &change())
        .unwrap();
    within_10_s("both hearing the write", || {
        feeds
            .iter()
            .zip(&before)
            .all(|(feed, was)| feed.current() > *was)
    });
}
