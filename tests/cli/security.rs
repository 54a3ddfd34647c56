//! Holes an outside review found, each shut and kept shut: names that escape a folder, exports
//! that follow links or keep stale files, imports that trust what they read.

use super::{Env, dump};
use serde_json::Value;

fn prompt(env: &Env, name: &str) {
    env.ok(&["prompt", "create", name, "--template", "Hi {{name}}"]);
}

#[test]
fn names_made_of_dots_are_refused_everywhere() {
    let env = Env::new();
    for name in [".", "..", "..."] {
        let stderr = env.fails(&["prompt", "create", name, "--template", "x"], 2);
        assert!(stderr.contains("dots"), "{stderr}");
    }
    prompt(&env, "greet");
    let stderr = env.fails(&["tag", "set", "greet", "..", "--version", "1"], 2);
    assert!(stderr.contains("dots"), "{stderr}");
}

#[test]
fn export_writes_only_inside_its_folder_and_never_through_a_link() {
    let env = Env::new();
    prompt(&env, "greet");
    // A folder holding someone else's files is not an export's to replace.
    std::fs::create_dir(env.path("mine")).unwrap();
    env.write("mine/notes.txt", "keep me");
    let stderr = env.fails(&["export", "mine"], 2);
    assert!(stderr.contains("did not write"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(env.path("mine/notes.txt")).unwrap(),
        "keep me"
    );
    // A link as the destination is refused, and its target is left alone.
    std::fs::create_dir(env.path("target")).unwrap();
    std::os::unix::fs::symlink(env.path("target"), env.path("link")).unwrap();
    let stderr = env.fails(&["export", "link"], 2);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read_dir(env.path("target")).unwrap().count(), 0);
}

#[test]
fn a_second_export_leaves_no_stale_files() {
    let env = Env::new();
    prompt(&env, "greet");
    prompt(&env, "other");
    env.ok(&["export", "out"]);
    assert!(env.path("out/other/prompt.json").exists());
    env.ok(&["export", "out", "greet"]);
    assert!(env.path("out/greet/prompt.json").exists());
    assert!(
        !env.path("out/other").exists(),
        "a prompt of the earlier export survived"
    );
    // No staging folder is left beside it.
    let left: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".export-") || n.contains(".replaced-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn import_refuses_links_inside_an_export() {
    let env = Env::new();
    prompt(&env, "greet");
    env.ok(&["export", "out"]);
    let template = env.path("out/greet/versions/0001/template.txt");
    let outside = env.write("outside.txt", "Hi {{name}}");
    std::fs::remove_file(&template).unwrap();
    std::os::unix::fs::symlink(&outside, &template).unwrap();
    let fresh = env.path("fresh.db");
    let out = env
        .cmd()
        .args(["--db", fresh.to_str().unwrap(), "import", "out"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("symbolic link"));
    assert!(!fresh.exists() || dump(&fresh).is_empty());
}

/// An export of `greet` with v1 in production and v2 in staging.
fn tagged_export(env: &Env) {
    prompt(env, "greet");
    env.ok(&["prompt", "update", "greet", "--template", "Hello {{name}}"]);
    env.ok(&["tag", "set", "greet", "production", "--version", "1"]);
    env.ok(&["tag", "set", "greet", "staging", "--version", "2"]);
    env.ok(&["export", "out"]);
}

/// Imports `out` into a fresh store, expecting a refusal that says `why`.
fn import_refused(env: &Env, why: &str) {
    let fresh = env.path("fresh.db");
    let out = env
        .cmd()
        .args(["--db", fresh.to_str().unwrap(), "import", "out"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(why), "expected '{why}': {stderr}");
    assert!(!fresh.exists() || dump(&fresh).is_empty());
}

fn history_lines(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(env.path("out/greet/history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_history(env: &Env, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(env.path("out/greet/history.jsonl"), text).unwrap();
}

/// Appends a hand-made `action` of production from v1 to v2 to the history of `tagged_export`
/// (line 0 set production on v1, line 1 set staging on v2).
fn push_production_v1_to_v2(lines: &mut Vec<Value>, action: &str) {
    let mut event = lines[0].clone();
    event["action"] = action.into();
    event["from_version_id"] = lines[0]["to_version_id"].clone();
    event["to_version_id"] = lines[1]["to_version_id"].clone();
    lines.push(event);
}

/// Writes the history without its hash chain, as an export from before the chain would be:
/// what the other checks alone must catch.
fn write_history_unchained(env: &Env, mut lines: Vec<Value>) {
    for line in &mut lines {
        line.as_object_mut().unwrap().remove("hash");
    }
    write_history(env, &lines);
}

#[test]
fn a_hand_moved_tag_is_refused_on_import() {
    let env = Env::new();
    tagged_export(&env);
    // production edited to v2 in tags.json alone: the history does not lead there.
    let path = env.path("out/greet/tags.json");
    let mut tags: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let v2 = tags["staging"]["version_id"].clone();
    tags["production"]["version_id"] = v2;
    tags["production"]["version"] = 2.into();
    std::fs::write(&path, tags.to_string()).unwrap();
    import_refused(&env, "tags.json does not match");
}

#[test]
fn an_edited_history_line_breaks_the_chain() {
    let env = Env::new();
    tagged_export(&env);
    let mut lines = history_lines(&env);
    lines[0]["actor"] = "someone else".into();
    write_history(&env, &lines);
    import_refused(&env, "line 1 was changed");
}

#[test]
fn a_forged_promotion_without_evidence_is_refused() {
    let env = Env::new();
    tagged_export(&env);
    let mut lines = history_lines(&env);
    // production v1 → v2 "promoted", with no evidence; the chain is left out, as an
    // export written before the chain existed would have it.
    push_production_v1_to_v2(&mut lines, "promote");
    write_history_unchained(&env, lines);
    import_refused(&env, "without the evidence of a passed gate");
}

#[test]
fn a_protected_tag_moved_without_force_in_the_history_is_refused() {
    let env = Env::new();
    tagged_export(&env);
    let mut lines = history_lines(&env);
    push_production_v1_to_v2(&mut lines, "move");
    write_history_unchained(&env, lines);
    import_refused(&env, "moved without a promotion, a deploy token or force");
}

#[test]
fn bad_names_and_times_in_an_export_are_refused() {
    let env = Env::new();
    tagged_export(&env);
    let mut lines = history_lines(&env);
    lines[0]["tag"] = "../../x y".into();
    write_history_unchained(&env, lines);
    import_refused(&env, "invalid tag name");

    let env = Env::new();
    tagged_export(&env);
    let mut lines = history_lines(&env);
    lines[1]["at"] = "not-a-date".into();
    write_history_unchained(&env, lines);
    import_refused(&env, "not an RFC 3339 time");
}

#[test]
fn an_untouched_export_still_imports() {
    let env = Env::new();
    tagged_export(&env);
    let fresh = env.path("fresh.db");
    env.ok(&["--db", fresh.to_str().unwrap(), "import", "out"]);
    let tags = env.json(&[
        "--db",
        fresh.to_str().unwrap(),
        "tag",
        "list",
        "greet",
        "--json",
    ]);
    assert_eq!(tags.as_array().unwrap().len(), 2);
}

const KEY: &str = "sk-test-0123456789abcdef";

#[test]
fn scorers_never_see_the_key_and_nothing_stored_carries_it() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    super::echo_prompt(&env);
    // The endpoint echoes the query, which holds the key; the scorer prints its environment.
    let data = env.write("rows.csv", &format!("id,query\n1,the key is {KEY}\n"));
    let scorer = env.write(
        "score.sh",
        "#!/bin/sh\ncat > /dev/null\nprintf '{\"score\": 1, \"pass\": true, \"reason\": \"key=%s home=%s\"}\\n' \"$OPENAI_API_KEY\" \"${HOME:+set}\"\n",
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&scorer)
        .status()
        .unwrap();
    let base = server.base_url();
    let eval = format!("cmd:{}", scorer.display());
    let out = env
        .cmd()
        .env("OPENAI_API_KEY", KEY)
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            data.to_str().unwrap(),
            "--base-url",
            &base,
            "--eval",
            &eval,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = summary["experiment"]["id"].as_str().unwrap().to_string();
    let rows = env.json(&["experiment", "show", &id, "--rows", "--json"]);
    let row = &rows["rows"][0];
    let reason = row["scores"][0]["reason"].as_str().unwrap();
    assert_eq!(reason, "key= home=set", "the scorer saw: {reason}");
    assert!(
        row["output"].as_str().unwrap().contains("[redacted]"),
        "{row}"
    );
    // Not one byte of the store holds the key.
    if super::is_postgres(&env.db) {
        assert!(
            !dump(&env.db).join("\n").contains(KEY),
            "the key reached the store"
        );
        return;
    }
    let bytes = std::fs::read(&env.db).unwrap();
    let wal = std::fs::read(env.db.with_extension("db-wal")).unwrap_or_default();
    for file in [bytes, wal] {
        assert!(
            !file.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key reached the store"
        );
    }
}

#[test]
fn endpoint_urls_never_carry_or_echo_a_secret() {
    let env = Env::new();
    super::echo_prompt(&env);
    let data = env.write("rows.csv", "id,query\n1,hi\n");
    for url in [
        "http://127.0.0.1:9/v1?key=supersecret",
        "http://user:supersecret@[::1/v1",
        "http://user:supersecret@127.0.0.1:9/v1",
    ] {
        let stderr = env.fails(
            &[
                "experiment",
                "--prompt",
                "echo",
                "--dataset",
                data.to_str().unwrap(),
                "--base-url",
                url,
            ],
            2,
        );
        assert!(!stderr.contains("supersecret"), "{url}: {stderr}");
    }
}

#[test]
fn another_programs_database_is_never_touched() {
    let env = Env::new();
    let theirs = env.path("theirs.db");
    {
        let conn = rusqlite::Connection::open(&theirs).unwrap();
        conn.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('kept');")
            .unwrap();
    }
    let before = std::fs::read(&theirs).unwrap();
    for args in [
        vec!["prompt", "list"],
        vec!["experiment", "list", "--json"],
        vec!["prompt", "create", "greet", "--template", "x"],
    ] {
        let mut full = vec!["--db", theirs.to_str().unwrap()];
        full.extend(args.iter());
        let out = env.cmd().args(&full).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("did not create"), "{stderr}");
    }
    assert_eq!(std::fs::read(&theirs).unwrap(), before, "the file changed");
    assert!(!env.path("theirs.db-wal").exists());
}

#[test]
fn reading_an_older_store_changes_nothing_until_it_is_migrated() {
    let env = Env::new();
    if super::sqlite_only(
        &env,
        "store::postgres::tests::a_store_at_every_older_schema_reaches_the_newest_with_its_rows",
    ) {
        return;
    }
    env.ok(&["prompt", "create", "greet", "--template", "x"]);
    // Back to schema 3, as an older runner left it.
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.execute_batch(
            "ALTER TABLE results DROP COLUMN extra; \
             DROP TABLE api_tokens; \
             DROP TABLE task_evaluations; \
             DROP TABLE task_runs; \
             DROP TABLE task_experiments; \
             DROP TABLE dataset_versions; \
             DROP TABLE datasets; \
             DROP TABLE rollouts; \
             DROP TABLE spans; \
             DROP TABLE annotations; \
             DROP TABLE lookups; \
             ALTER TABLE tag_events DROP COLUMN deploy; \
             DROP TABLE work_items; \
             DROP INDEX experiments_by_detach_key; \
             ALTER TABLE experiments DROP COLUMN detach_key; \
             DROP TABLE prompt_events; \
             ALTER TABLE prompts DROP COLUMN description; \
             ALTER TABLE prompts DROP COLUMN metadata; \
             ALTER TABLE prompts DROP COLUMN archived_at; \
             ALTER TABLE prompt_versions DROP COLUMN provider; \
             DROP INDEX results_by_latency; \
             ALTER TABLE experiments DROP COLUMN lease_owner; \
             ALTER TABLE experiments DROP COLUMN lease_until; \
             PRAGMA user_version = 3;",
        )
        .unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let before = std::fs::read(&env.db).unwrap();
    let out = env.run(&["prompt", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("runner migrate"), "{stderr}");
    assert_eq!(
        std::fs::read(&env.db).unwrap(),
        before,
        "a read changed the store"
    );
    let migrated = env.ok(&["migrate"]);
    assert!(migrated.contains("is at schema version"), "{migrated}");
    assert!(!migrated.contains("version 3"), "{migrated}");
    assert!(env.ok(&["prompt", "list"]).contains("greet"));
}

#[test]
fn a_second_run_of_a_running_experiment_is_refused_and_names_the_first() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(30));
    super::echo_prompt(&env);
    let queries: Vec<String> = (0..150).map(|i| format!("q{i:03}")).collect();
    let data = super::echo_dataset(&env, "rows.csv", &queries);
    let base = server.base_url();
    let (mut first, id) = super::spawn_listed_experiment(&env, &data, &base, "2", "running");
    let out = env.run(&["experiment", "resume", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("is being run by pid {}", first.id())),
        "{stderr}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended too soon to test"
    );
    assert!(first.wait().unwrap().success());
    // Every row was sent once.
    let sent = server.log().len();
    assert_eq!(sent, 150, "rows sent twice or missing");
    // Once it is done, the experiment is free again.
    let again = env.run(&["experiment", "resume", &id]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// Runs an experiment of `echo` over `data` (no endpoint is needed: bad data stops it first).
fn experiment_on(env: &Env, data: &std::path::Path) -> String {
    env.fails(
        &[
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            data.to_str().unwrap(),
            "--base-url",
            "http://127.0.0.1:9/v1",
        ],
        2,
    )
}

#[test]
fn a_header_of_sixty_thousand_columns_is_checked_at_once() {
    let env = Env::new();
    super::echo_prompt(&env);
    let mut header: Vec<String> = (0..60_000).map(|i| format!("c{i}")).collect();
    header.push("c17".into());
    let text = format!("{}\n{}\n", header.join(","), vec!["x"; 60_001].join(","));
    let data = env.write("wide.csv", &text);
    let stderr = experiment_on(&env, &data);
    assert!(stderr.contains("duplicate column name \"c17\""), "{stderr}");
}

#[test]
fn an_endless_record_is_refused_at_the_cap() {
    let env = Env::new();
    super::echo_prompt(&env);
    for name in ["zero.csv", "zero.jsonl"] {
        let link = env.path(name);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let stderr = experiment_on(&env, &link);
        assert!(stderr.contains("longer than 64 MiB"), "{name}: {stderr}");
    }
}

#[test]
fn jsonl_rows_keep_every_key_and_every_digit_or_are_refused() {
    let env = Env::new();
    super::echo_prompt(&env);
    let twice = env.write(
        "twice.jsonl",
        "{\"id\": 1, \"query\": \"a\", \"query\": \"b\"}\n",
    );
    let stderr = experiment_on(&env, &twice);
    assert!(stderr.contains("duplicate key \"query\""), "{stderr}");
    let big = env.write(
        "big.jsonl",
        "{\"id\": 1, \"query\": \"a\", \"n\": 123456789012345678901234567890}\n",
    );
    let stderr = experiment_on(&env, &big);
    assert!(stderr.contains("too large to keep exactly"), "{stderr}");
}

#[test]
fn output_that_cannot_be_written_is_a_failure() {
    let env = Env::new();
    prompt(&env, "greet");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = env
        .std_cmd()
        .args(["prompt", "list"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the output"));
}

/// Renames prompt `from` in the store itself, as anyone who can write the database could.
fn plant_name(env: &Env, from: &str, to: &str) {
    super::sql(
        &env.db,
        &format!("UPDATE prompts SET name = '{to}' WHERE name = '{from}'"),
    );
}

#[test]
fn pull_and_store_copy_refuse_a_stored_name_that_would_escape() {
    let env = Env::new();
    prompt(&env, "greet");
    prompt(&env, "fine");
    for planted in ["../escaped", "/tmp/absolute"] {
        plant_name(&env, "greet", planted);
        let out = env.run(&["pull", "out"]);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("a name no command accepts") && stderr.contains(planted),
            "{stderr}"
        );
        // Nothing written, inside DIR or out of it.
        assert!(!env.path("out").exists());
        assert!(!env.path("escaped.yaml").exists());
        assert!(!std::path::Path::new("/tmp/absolute.yaml").exists());
        plant_name(&env, planted, "greet");
    }
    plant_name(&env, "greet", "../escaped");
    let copy = env.path("copy.db");
    let out = env.run(&[
        "store",
        "copy",
        "--from",
        env.db.to_str().unwrap(),
        "--to",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("../escaped"));
}

#[test]
fn pull_never_writes_through_a_link_in_its_folder() {
    let env = Env::new();
    prompt(&env, "greet");
    prompt(&env, "other");
    std::fs::create_dir(env.path("prompts")).unwrap();
    env.write("secret.txt", "keep me");
    std::os::unix::fs::symlink(env.path("secret.txt"), env.path("prompts/greet.yaml")).unwrap();
    let stderr = env.fails(&["pull", "prompts"], 2);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(env.path("secret.txt")).unwrap(),
        "keep me"
    );
    // Checked before anything is written: the other prompt's file is not there either.
    assert!(!env.path("prompts/other.yaml").exists());
    let left: Vec<_> = std::fs::read_dir(env.path("prompts")).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file is left behind");
}

#[test]
fn a_postgres_url_that_does_not_parse_never_shows_its_password() {
    let env = Env::new();
    for url in [
        "postgres://runner:Hunter2#x@127.0.0.1:99999/db",
        "postgres://runner:Hunter2?x@127.0.0.1/db?sslmode=require",
        "postgres://runner:Hun?ter2@127.0.0.1/db?pool_size=0",
    ] {
        let out = env.run(&["prompt", "list", "--db", url]);
        assert_ne!(out.status.code(), Some(0));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("Hun"), "{url}: {stderr}");
    }
}

#[test]
fn json_a_user_writes_never_holds_a_key_twice() {
    let env = Env::new();
    std::fs::create_dir(env.path("prompts")).unwrap();
    env.write(
        "prompts/triage.json",
        r#"{"template": "Hi {{name}}", "model": "gpt-4o-mini",
            "params": {"temperature": 0.2, "max_tokens": 50, "temperature": 1.9}}"#,
    );
    let stderr = env.fails(&["sync", "prompts"], 2);
    assert!(stderr.contains("duplicate key \"temperature\""), "{stderr}");
    let stderr = env.fails(
        &[
            "prompt",
            "create",
            "p",
            "--template",
            "x",
            "--param",
            r#"response_format={"type": "json_object", "type": "text"}"#,
        ],
        2,
    );
    assert!(stderr.contains("duplicate key \"type\""), "{stderr}");
    env.write(
        "messages.json",
        r#"[{"role": "user", "content": "a", "content": "b"}]"#,
    );
    let stderr = env.fails(
        &["prompt", "create", "p", "--messages-file", "messages.json"],
        2,
    );
    assert!(stderr.contains("duplicate key \"content\""), "{stderr}");
    // Each key once, the same file syncs.
    env.write(
        "prompts/triage.json",
        r#"{"template": "Hi {{name}}", "params": {"temperature": 0.2}}"#,
    );
    env.ok(&["sync", "prompts"]);
    let shown = env.json(&["prompt", "show", "triage", "--json"]);
    assert_eq!(shown["params"]["temperature"], 0.2, "{shown}");
}

/// Two shard stores of one plan (`echo` v1 over 20 rows), each run by its own job.
fn two_shards(env: &Env, url: &str) -> (String, String, String) {
    let queries: Vec<String> = (0..20).map(|i| format!("q{i}")).collect();
    let data = super::echo_dataset(env, "d.csv", &queries);
    let path = |name: &str| env.path(name).to_str().unwrap().to_string();
    let (s1, s2) = (path("s1.db"), path("s2.db"));
    env.ok(&[
        "--db",
        &s1,
        "prompt",
        "create",
        "echo",
        "--template",
        "{{query}}",
        "--model",
        "m",
    ]);
    env.ok(&["--db", &s1, "export", "prompts"]);
    for db in [&s2, &env.db.to_str().unwrap().to_string()] {
        env.ok(&["--db", db, "import", "prompts"]);
    }
    for (db, shard) in [(&s1, "1/2"), (&s2, "2/2")] {
        env.ok(&[
            "--db",
            db,
            "experiment",
            "--prompt",
            "echo",
            "--version",
            "1",
            "--dataset",
            &data,
            "--base-url",
            url,
            "--shard",
            shard,
        ]);
    }
    (s1, s2, data)
}

#[test]
fn merge_takes_only_each_shards_own_rows_and_the_plans_count() {
    let env = Env::new();
    let mock = super::Mock::start(&env, &[]);
    let (s1, s2, _) = two_shards(&env, &mock.url);
    let into = env.db.to_str().unwrap().to_string();
    // A row of shard 2 claimed by shard 1 is refused, and so are shards that plan too few.
    let theirs = super::sql_value(
        std::path::Path::new(&s2),
        "SELECT row_id FROM results LIMIT 1",
    );
    // Whoever wrote the shard store can drop its guards too.
    super::sql(
        std::path::Path::new(&s1),
        "DROP TRIGGER results_ok_is_final",
    );
    super::sql(
        std::path::Path::new(&s1),
        &format!(
            "UPDATE results SET row_id = '{theirs}' WHERE row_index = (SELECT MIN(row_index) FROM results)"
        ),
    );
    let err = env.fails(&["experiment", "merge", &s1, &s2, "--into", &into], 2);
    assert!(err.contains(&format!("holds row '{theirs}'")), "{err}");
    super::sql(
        std::path::Path::new(&s1),
        "UPDATE results SET row_id = 'r' || row_index",
    );
    for statement in [
        "DELETE FROM scores WHERE row_index = (SELECT MAX(row_index) FROM results)",
        "DELETE FROM results WHERE row_index = (SELECT MAX(row_index) FROM results)",
        "UPDATE experiments SET planned = planned - 1",
    ] {
        super::sql(std::path::Path::new(&s2), statement);
    }
    let err = env.fails(&["experiment", "merge", &s1, &s2, "--into", &into], 2);
    assert!(err.contains("the shards plan 19 results in all"), "{err}");
}

#[test]
fn merged_answers_are_cached_under_their_own_keys_and_a_future_date_expires_them() {
    let env = Env::new();
    let mock = super::Mock::start(&env, &[]);
    let (s1, s2, data) = two_shards(&env, &mock.url);
    super::sql(
        std::path::Path::new(&s1),
        "INSERT INTO response_cache VALUES ('planted', 'planted answer', 'stop', 1, 1, 200, 1.0, \
         '2999-01-01T00:00:00.000Z')",
    );
    let into = env.db.to_str().unwrap().to_string();
    // The shard's cache holds an entry dated far ahead that no merged row made: not copied.
    env.ok(&["experiment", "merge", &s1, &s2, "--into", &into]);
    assert_eq!(
        super::sql_value(
            &env.db,
            "SELECT COUNT(*) FROM response_cache WHERE key = 'planted'"
        ),
        "0"
    );
    // The unsharded run of the plan finds every merged answer: no request is sent.
    let sent = mock.requests();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "--prompt",
            "echo",
            "--version",
            "1",
            "--dataset",
            &data,
            "--base-url",
            &mock.url,
            "--json",
        ];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    let again = run(&[]);
    assert_eq!(again["summary"]["cached"], 20, "{again}");
    assert_eq!(mock.requests(), sent);
    // Dated ahead of now, an entry is never fresh, whatever --cache-ttl says.
    super::sql(
        &env.db,
        "UPDATE response_cache SET created_at = '2999-01-01T00:00:00.000Z'",
    );
    let later = run(&["--cache-ttl", "30d"]);
    assert_eq!(later["summary"]["cached"], 0, "{later}");
    assert_eq!(mock.requests(), sent + 20);
}

#[test]
fn a_worker_runs_a_program_or_reads_a_file_from_the_store_only_when_allowed() {
    let env = Env::new();
    let mock = super::Mock::start(&env, &[]);
    super::echo_prompt(&env);
    let data = super::echo_dataset(&env, "d.csv", &["a", "b", "c"]);
    // The scorer leaves a mark when it runs.
    let mark = env.path("ran");
    let scorer = env.write(
        "score.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\ntouch {}\nprintf '{{\"score\": 1, \"pass\": true}}\\n'\n",
            mark.display()
        ),
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&scorer)
        .status()
        .unwrap();
    let program = scorer.to_str().unwrap().to_string();
    let eval = format!("cmd:{program}");
    let plan = |evals: &[&str]| {
        let mut args = vec![
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            &data,
            "--base-url",
            &mock.url,
            "--detach",
            "--json",
        ];
        for e in evals {
            args.extend(["--eval", e]);
        }
        env.json(&args)["id"].as_str().unwrap().to_string()
    };
    let id = plan(&[&eval]);
    // Not allowed: refused before anything runs, with the flag that would allow it.
    let out = env.run(&["worker", &id]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("names evaluator '{eval}'"))
            && stderr.contains(&format!("--allow-cmd '{program}'")),
        "{stderr}"
    );
    assert!(!mark.exists());
    assert_eq!(mock.requests(), 0);
    // Another program is not this one.
    let out = env.run(&["worker", &id, "--allow-cmd", "/bin/true"]);
    assert_eq!(out.status.code(), Some(2));
    // Allowed on the command line, exactly: it runs.
    env.ok(&["worker", &id, "--allow-cmd", &program]);
    assert!(mark.exists());
    // A judge's rubric is a file the worker would read and send: the same rule, and
    // runner.toml can allow it.
    let rubric = env.write("rubric.md", "Is the answer polite? Say PASS or FAIL.");
    let judge = format!("judge:{}", rubric.display());
    let id = plan(&[&judge]);
    let out = env.run(&["worker", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-eval"),
        "{out:?}"
    );
    env.write(
        "runner.toml",
        &format!("[worker]\nallow_eval = [\"{judge}\"]\n"),
    );
    let out = env.run(&["worker", &id]);
    assert_ne!(out.status.code(), Some(2), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("names evaluator"));
    assert_eq!(
        env.json(&["experiment", "show", &id, "--json"])["summary"]["results"],
        3
    );
}
