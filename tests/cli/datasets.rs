//! Datasets in the store: `runner dataset push|list|show|pull` and `--dataset store:NAME[@V]`.

use crate::{Env, Mock, echo_prompt};
use serde_json::Value;

const V1: &str = "id,query,expected\nr1,Where is my order?,order\nr2,\"Refund, please\",Refund\n";
const V2: &str = "id,query,expected\nr1,Where is my order?,order\nr2,\"Refund, please\",Refund\nr3,Reset my password,password\n";

#[test]
fn versions_are_pushed_once_listed_shown_and_pulled_byte_for_byte() {
    let env = Env::new();
    env.write("queries.csv", V1);
    let first = env.json(&[
        "dataset",
        "push",
        "queries.csv",
        "--name",
        "support_queries",
        "-m",
        "two cases",
        "--json",
    ]);
    assert_eq!(first["added"], true);
    assert_eq!(first["version"]["seq"], 1);
    assert_eq!(first["version"]["rows"], 2);
    assert_eq!(first["version"]["format"], "csv");
    assert_eq!(
        first["version"]["columns"],
        serde_json::json!(["id", "query", "expected"])
    );
    assert_eq!(first["version"]["message"], "two cases");
    // The same bytes again: nothing added.
    let again = env.json(&[
        "dataset",
        "push",
        "queries.csv",
        "--name",
        "support_queries",
        "--json",
    ]);
    assert_eq!(again["added"], false);
    assert_eq!(again["version"]["seq"], 1);
    env.write("queries.csv", V2);
    let second = push(&env, "queries.csv", "support_queries", None);
    assert!(second.contains("as support_queries@2 (3 rows)"), "{second}");
    env.write("other.jsonl", "{\"id\": \"a\", \"query\": \"hi\"}\n");
    push(&env, "other.jsonl", "greetings", None);

    let listed = env.json(&["dataset", "list", "--json"]);
    let names: Vec<(String, i64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["dataset"].as_str().unwrap().to_string(),
                v["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("greetings".into(), 1), ("support_queries".into(), 2)]
    );
    let versions = env.json(&["dataset", "show", "support_queries", "--json"]);
    let seqs: Vec<i64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 1]);
    let one = env.json(&[
        "dataset",
        "show",
        "support_queries@1",
        "--rows",
        "1",
        "--json",
    ]);
    assert_eq!(one["version"]["rows"], 2);
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);
    assert_eq!(one["rows"][0]["values"]["query"], "Where is my order?");

    env.ok(&["dataset", "pull", "support_queries@1", "--out", "v1.csv"]);
    assert_eq!(std::fs::read_to_string(env.path("v1.csv")).unwrap(), V1);
    env.ok(&["dataset", "pull", "support_queries", "--out", "latest.csv"]);
    assert_eq!(std::fs::read_to_string(env.path("latest.csv")).unwrap(), V2);
    env.ok(&["dataset", "pull", "greetings", "--out", "g.jsonl"]);
}

#[test]
fn bad_pushes_and_pulls_say_why_and_write_nothing() {
    let env = Env::new();
    env.write("queries.csv", V1);
    push(&env, "queries.csv", "support_queries", None);
    env.write("broken.csv", "id,query\nr1,\"unclosed\n");
    env.write("empty.csv", "id,query\n");
    env.write("notes.txt", "hello\n");
    for (args, says) in [
        (
            vec!["dataset", "push", "queries.csv", "--name", "Bad Name"],
            "invalid dataset name",
        ),
        (
            vec!["dataset", "push", "missing.csv", "--name", "x"],
            "missing.csv",
        ),
        (
            vec!["dataset", "push", "broken.csv", "--name", "x"],
            "broken.csv",
        ),
        (
            vec!["dataset", "push", "empty.csv", "--name", "x"],
            "no data rows",
        ),
        (
            vec!["dataset", "push", "notes.txt", "--name", "x"],
            "unknown dataset format",
        ),
        (vec!["dataset", "show", "nope"], "no dataset named 'nope'"),
        (
            vec!["dataset", "show", "support_queries@9"],
            "has no version 9",
        ),
        (
            vec!["dataset", "show", "support_queries@zero"],
            "the version is a number",
        ),
        (
            vec!["dataset", "pull", "support_queries", "--out", "q.jsonl"],
            "is csv",
        ),
        (
            vec!["dataset", "pull", "support_queries", "--out", "queries.csv"],
            "exists",
        ),
    ] {
        let stderr = env.fails(&args, 2);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("hint:"), "{args:?}: {stderr}");
    }
    assert!(!env.path("q.jsonl").exists());
    assert_eq!(
        std::fs::read_to_string(env.path("queries.csv")).unwrap(),
        V1
    );
}

/// `runner dataset push FILE --name NAME [-m MESSAGE]`; returns what it printed.
fn push(env: &Env, file: &str, name: &str, message: Option<&str>) -> String {
    let mut args = vec!["dataset", "push", file, "--name", name];
    if let Some(message) = message {
        args.extend(["-m", message]);
    }
    env.ok(&args)
}

fn experiment(env: &Env, mock: &Mock, dataset: &str) -> Value {
    env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        dataset,
        "--base-url",
        &mock.url,
        "--json",
    ])
}

#[test]
fn experiments_read_a_stored_version_and_record_it_as_the_same_evidence_as_the_file() {
    let env = Env::new();
    let mock = Mock::start(&env, &[]);
    echo_prompt(&env);
    env.write("queries.csv", V2);
    push(&env, "queries.csv", "support_queries", None);

    let stored = experiment(&env, &mock, "store:support_queries");
    assert_eq!(stored["experiment"]["status"], "completed", "{stored:#}");
    assert_eq!(
        stored["experiment"]["dataset"]["path"],
        "store:support_queries@1"
    );
    assert_eq!(stored["experiment"]["dataset"]["rows"], 3);
    let from_file = experiment(&env, &mock, "queries.csv");
    // The same bytes: the same dataset hash, so compare and promote take either as evidence
    // about the same rows.
    assert_eq!(
        stored["experiment"]["dataset"]["hash"],
        from_file["experiment"]["dataset"]["hash"]
    );
    let compared = env.run(&[
        "compare",
        stored["experiment"]["id"].as_str().unwrap(),
        from_file["experiment"]["id"].as_str().unwrap(),
    ]);
    let warned = String::from_utf8_lossy(&compared.stderr);
    assert!(compared.status.success(), "{warned}");
    assert!(!warned.contains("ran on different datasets"), "{warned}");

    // A version by number, and errors for what is not there (nothing written).
    env.write("queries.csv", V1);
    push(&env, "queries.csv", "support_queries", None);
    let older = experiment(&env, &mock, "store:support_queries@1");
    assert_eq!(older["experiment"]["dataset"]["rows"], 3);
    let newer = experiment(&env, &mock, "store:support_queries@2");
    assert_eq!(newer["experiment"]["dataset"]["rows"], 2);
    for (dataset, says) in [
        ("store:nope", "no dataset named 'nope'"),
        ("store:support_queries@7", "has no version 7"),
        ("store:Bad Name", "invalid dataset name"),
    ] {
        let stderr = env.fails(
            &[
                "experiment",
                "--prompt",
                "echo",
                "--dataset",
                dataset,
                "--base-url",
                &mock.url,
            ],
            2,
        );
        assert!(stderr.contains(says), "{dataset}: {stderr}");
    }
}

#[test]
fn a_deleted_dataset_file_comes_back_from_the_store_on_resume() {
    let env = Env::new();
    echo_prompt(&env);
    let queries: String = std::iter::once("id,query,expected\n".to_string())
        .chain((0..200).map(|i| format!("r{i},q{i},q{i}\n")))
        .collect();
    env.write("big.csv", &queries);
    push(&env, "big.csv", "big", None);
    // A slow endpoint, killed half way.
    let mock = Mock::start(&env, &["--latency-ms", "20"]);
    super::experiments::kill_mid_run(
        &env,
        &[
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            "big.csv",
            "--base-url",
            &mock.url,
            "--concurrency",
            "2",
        ],
        10,
    );
    let stored = crate::sql(&env.db, "SELECT COUNT(*) FROM results")[0][0].clone();
    assert!(
        stored.parse::<i64>().unwrap() < 200,
        "killed in the middle: {stored}"
    );
    std::fs::remove_file(env.path("big.csv")).unwrap();
    let id = crate::sql(&env.db, "SELECT id FROM experiments").remove(0)[0].clone();
    let out = env.json(&["experiment", "resume", &id, "--json"]);
    assert_eq!(out["experiment"]["status"], "completed", "{out:#}");
    assert_eq!(out["summary"]["ok"], 200);
}

#[test]
fn a_store_copy_carries_every_version_with_its_bytes() {
    let env = Env::new();
    env.write("queries.csv", V1);
    push(&env, "queries.csv", "support_queries", Some("first"));
    env.write("queries.csv", V2);
    push(&env, "queries.csv", "support_queries", None);
    let copy = env.path("copy.db");
    let copy = copy.to_str().unwrap();
    let source = env.db.to_str().unwrap().to_string();
    let said = env.ok(&["store", "copy", "--from", &source, "--to", copy]);
    assert!(said.contains("2 dataset version(s)"), "{said}");
    let original = env.json(&["dataset", "show", "support_queries", "--json"]);
    let copied = env.json(&["--db", copy, "dataset", "show", "support_queries", "--json"]);
    let fields = |versions: &Value| -> Vec<Value> {
        versions
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                serde_json::json!([
                    v["seq"],
                    v["hash"],
                    v["rows"],
                    v["message"],
                    v["created_at"],
                    v["created_by"]
                ])
            })
            .collect()
    };
    assert_eq!(fields(&copied), fields(&original));
    env.ok(&[
        "--db",
        copy,
        "dataset",
        "pull",
        "support_queries@1",
        "--out",
        "back.csv",
    ]);
    assert_eq!(std::fs::read_to_string(env.path("back.csv")).unwrap(), V1);
}

#[test]
fn a_tampered_store_copy_is_refused_and_nothing_is_written_outside_the_cache() {
    let env = Env::new();
    echo_prompt(&env);
    env.write("queries.csv", V1);
    push(&env, "queries.csv", "support_queries", None);
    env.write("queries.csv", V2);
    push(&env, "queries.csv", "support_queries", None);
    // Another program with write access to the store: a hash that is a path, content that
    // does not match its hash, a format that is not one.
    crate::sql(
        &env.db,
        "UPDATE dataset_versions SET hash = '/../../escaped/' WHERE seq = 1",
    );
    crate::sql(
        &env.db,
        "UPDATE dataset_versions SET content = content || 'r9,planted,planted\n' WHERE seq = 2",
    );
    for version in ["support_queries@1", "support_queries@2"] {
        let out = env.run(&["dataset", "show", version]);
        assert_eq!(out.status.code(), Some(3), "{version}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("is damaged"), "{stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
        let out = env.run(&["dataset", "pull", version, "--out", "pulled.csv"]);
        assert_eq!(out.status.code(), Some(3));
        let dataset = format!("store:{version}");
        let out = env.run(&["experiment", "--prompt", "echo", "--dataset", &dataset]);
        assert_eq!(out.status.code(), Some(3));
    }
    assert!(!env.path("pulled.csv").exists());
    assert!(!env.path("escaped").exists());
    assert!(!env.path(".cache/escaped").exists());
    assert_eq!(
        crate::sql(&env.db, "SELECT COUNT(*) FROM experiments")[0][0],
        "0"
    );
}

/// A promotion that runs its experiments over a stored dataset names it by its store name in
/// its progress, not by the file it was read into.
#[test]
fn a_promotion_over_a_stored_dataset_names_it() {
    let env = Env::new();
    echo_prompt(&env);
    env.ok(&["prompt", "update", "echo", "--template", "Re: {{query}}"]);
    env.ok(&["tag", "set", "echo", "production", "--version", "1"]);
    env.ok(&["tag", "set", "echo", "staging", "--version", "2"]);
    env.write("queries.csv", V1);
    push(&env, "queries.csv", "support_queries", None);
    let mock = Mock::start(&env, &[]);
    let out = env.run(&[
        "promote",
        "--prompt",
        "echo",
        "--candidate",
        "staging",
        "--baseline",
        "production",
        "--dataset",
        "store:support_queries@1",
        "--base-url",
        &mock.url,
        "--max-regression",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("running echo v2 over store:support_queries@1"),
        "{stderr}"
    );
    assert!(!stderr.contains(".cache"), "{stderr}");
}
