//! The prompt store commands: prompt, tag, rollback, export, import.

use crate::{Env, dump};
use serde_json::{Value, json};

const SEED_TEMPLATE: &str = "You are a customer support agent for {{company_name}}.\n\
Your role is to help users with account issues, billing questions and product information.\n\
Be professional, friendly, and concise.\n\
Customer Query: {{query}}\n\
Response:";

fn seed(env: &Env) {
    env.ok(&[
        "prompt",
        "create",
        "customer_support_greeting",
        "--template",
        SEED_TEMPLATE,
        "--model",
        "gpt-4",
        "--param",
        "temperature=0.7",
        "--param",
        "max_tokens=500",
        "--meta",
        "owner=support-team",
        "--description",
        "Greets customers",
    ]);
}

#[test]
fn seed_workflow() {
    let env = Env::new();
    seed(&env);
    let v1 = env.json(&["prompt", "show", "customer_support_greeting", "--json"]);
    assert_eq!(v1["seq"], 1);
    assert_eq!(v1["model"], "gpt-4");
    assert_eq!(v1["params"], json!({"temperature": 0.7, "max_tokens": 500}));
    assert_eq!(v1["metadata"], json!({"owner": "support-team"}));
    assert_eq!(v1["format"], "mustache");
    assert_eq!(v1["template_type"], "str");
    assert_eq!(v1["author"], crate::actor("tester"));
    assert_eq!(v1["variables"], json!(["company_name", "query"]));
    assert_eq!(v1["content_hash"].as_str().unwrap().len(), 64);
    let v1_id = v1["id"].as_str().unwrap().to_string();

    let v2_template = format!("{SEED_TEMPLATE}\nEscalate to a human when the customer asks twice.");
    let out = env.ok(&[
        "prompt",
        "update",
        "customer_support_greeting",
        "--template",
        &v2_template,
        "-m",
        "Added escalation guidelines",
    ]);
    assert!(out.contains("v2"), "{out}");

    // Versions, newest first, with what carried over.
    let versions = env.json(&["prompt", "versions", "customer_support_greeting", "--json"]);
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["seq"], 2);
    assert_eq!(versions[0]["message"], "Added escalation guidelines");
    assert_eq!(versions[0]["model"], "gpt-4");
    assert_eq!(versions[0]["params"]["temperature"], 0.7);
    assert_eq!(versions[0]["metadata"]["owner"], "support-team");
    assert_eq!(versions[0]["description"], "Greets customers");
    assert_eq!(versions[1]["seq"], 1);
    let v2_id = versions[0]["id"].as_str().unwrap().to_string();
    let table = env.ok(&["prompt", "versions", "customer_support_greeting"]);
    assert!(table.contains("Added escalation guidelines"), "{table}");

    // v1 by number, by id; latest; then by tag.
    let by_number = env.json(&[
        "prompt",
        "show",
        "customer_support_greeting",
        "--version",
        "1",
        "--json",
    ]);
    assert_eq!(by_number["id"], v1_id.as_str());
    let by_id = env.json(&[
        "prompt",
        "show",
        "customer_support_greeting",
        "--version-id",
        &v1_id,
        "--json",
    ]);
    assert_eq!(by_id["seq"], 1);
    let latest = env.json(&["prompt", "show", "customer_support_greeting", "--json"]);
    assert_eq!(latest["id"], v2_id.as_str());

    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "production",
        "--version",
        "1",
    ]);
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "staging",
        "--version-id",
        &v2_id,
    ]);
    let by_tag = env.json(&[
        "prompt",
        "show",
        "customer_support_greeting",
        "--tag",
        "production",
        "--json",
    ]);
    assert_eq!(by_tag["seq"], 1);
    assert_eq!(by_tag["tags"], json!(["production"]));

    // Move production to v2.
    let moved = env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "production",
        "--version",
        "2",
        "-m",
        "ship v2",
        "--force",
    ]);
    assert!(moved.contains("v1 → v2"), "{moved}");
    let tags = env.json(&["tag", "list", "customer_support_greeting", "--json"]);
    let tags: Vec<(String, i64)> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["version_seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tags, vec![("production".into(), 2), ("staging".into(), 2)]);

    // History shows both production moves.
    let history = env.json(&[
        "tag",
        "history",
        "customer_support_greeting",
        "production",
        "--json",
    ]);
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["action"], "set");
    assert_eq!(history[0]["to_seq"], 1);
    assert_eq!(history[1]["action"], "move");
    assert_eq!(history[1]["from_seq"], 1);
    assert_eq!(history[1]["to_seq"], 2);
    assert_eq!(history[1]["message"], "ship v2");
    assert_eq!(history[1]["actor"], crate::actor("tester"));

    // Rollback puts production back on v1.
    let rolled = env.ok(&[
        "rollback",
        "customer_support_greeting",
        "production",
        "-m",
        "v2 too long",
        "--force",
    ]);
    assert!(rolled.contains("v2 → v1"), "{rolled}");
    let prod = env.json(&[
        "prompt",
        "show",
        "customer_support_greeting",
        "--tag",
        "production",
        "--json",
    ]);
    assert_eq!(prod["seq"], 1);
    let all = env.json(&["tag", "history", "customer_support_greeting", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 4);
    let text = env.ok(&["tag", "history", "customer_support_greeting"]);
    assert!(
        text.contains("rollback") && text.contains("v2 too long"),
        "{text}"
    );

    // Render with both variables.
    let rendered = env.ok(&[
        "prompt",
        "render",
        "customer_support_greeting",
        "--tag",
        "production",
        "--var",
        "company_name=Acme",
        "--var",
        "query=Where is my order?",
    ]);
    assert!(
        rendered.starts_with("You are a customer support agent for Acme."),
        "{rendered}"
    );
    assert!(
        rendered.contains("Customer Query: Where is my order?"),
        "{rendered}"
    );

    // A missing variable fails with exit 2 naming it.
    let err = env.fails(
        &[
            "prompt",
            "render",
            "customer_support_greeting",
            "--var",
            "company_name=Acme",
        ],
        2,
    );
    assert!(err.contains("query"), "{err}");
    assert!(!err.contains("company_name"), "{err}");
}

#[test]
fn render_json_and_vars_file_with_dotted_names() {
    let env = Env::new();
    env.ok(&[
        "prompt",
        "create",
        "p",
        "--template",
        "Hi {{ user.name }}, re {{topic}}",
        "--model",
        "m",
    ]);
    let vars = env.write(
        "vars.json",
        r#"{"user": {"name": "Ada"}, "topic": "billing"}"#,
    );
    let out = env.json(&[
        "prompt",
        "render",
        "p",
        "--vars-file",
        vars.to_str().unwrap(),
        "--var",
        "topic=refunds",
        "--json",
    ]);
    assert_eq!(
        out["messages"],
        json!([{"role": "user", "content": "Hi Ada, re refunds"}])
    );
    assert_eq!(out["model"], "m");
    let err = env.fails(&["prompt", "render", "p"], 2);
    assert!(err.contains("user.name") && err.contains("topic"), "{err}");
    let bad = env.write("bad.json", "[1, 2]");
    env.fails(
        &[
            "prompt",
            "render",
            "p",
            "--vars-file",
            bad.to_str().unwrap(),
        ],
        2,
    );
}

#[test]
fn chat_templates_from_a_messages_file() {
    let env = Env::new();
    let file = env.write(
        "messages.json",
        r#"[{"role": "system", "content": "You help {company}."}, {"role": "user", "content": "{query}"}]"#,
    );
    env.ok(&[
        "prompt",
        "create",
        "triage",
        "--messages-file",
        file.to_str().unwrap(),
        "--format",
        "fstring",
    ]);
    let shown = env.json(&["prompt", "show", "triage", "--json"]);
    assert_eq!(shown["template_type"], "chat");
    assert_eq!(shown["variables"], json!(["company", "query"]));
    let out = env.json(&[
        "prompt",
        "render",
        "triage",
        "--var",
        "company=Acme",
        "--var",
        "query=help",
        "--json",
    ]);
    assert_eq!(
        out["messages"],
        json!([
            {"role": "system", "content": "You help Acme."},
            {"role": "user", "content": "help"}
        ])
    );
    let bad_role = env.write("bad.json", r#"[{"role": "wizard", "content": "x"}]"#);
    let err = env.fails(
        &[
            "prompt",
            "create",
            "t2",
            "--messages-file",
            bad_role.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("wizard"), "{err}");
    let not_json = env.write("broken.json", r#"[{"role": "user""#);
    env.fails(
        &[
            "prompt",
            "create",
            "t3",
            "--messages-file",
            not_json.to_str().unwrap(),
        ],
        2,
    );
}

#[test]
fn update_carries_over_and_merges_params() {
    let env = Env::new();
    seed(&env);
    env.ok(&[
        "prompt",
        "update",
        "customer_support_greeting",
        "--param",
        "temperature=0.2",
        "--param",
        "max_tokens=null",
        "--meta",
        "reviewed=true",
        "--tag",
        "staging",
    ]);
    let v2 = env.json(&[
        "prompt",
        "show",
        "customer_support_greeting",
        "--tag",
        "staging",
        "--json",
    ]);
    assert_eq!(v2["seq"], 2);
    assert_eq!(v2["template"], SEED_TEMPLATE);
    assert_eq!(v2["params"], json!({"temperature": 0.2}));
    assert_eq!(
        v2["metadata"],
        json!({"owner": "support-team", "reviewed": true})
    );
    assert_eq!(v2["message"], Value::Null);
    // Changing only the format re-checks the carried template: `{raw` is literal text in
    // mustache but an unclosed field in an f-string.
    env.ok(&[
        "prompt",
        "create",
        "q",
        "--template",
        "Use {{name}} or {raw",
    ]);
    let err = env.fails(&["prompt", "update", "q", "--format", "fstring"], 2);
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn param_values_are_json_where_valid() {
    let env = Env::new();
    env.ok(&[
        "prompt",
        "create",
        "p",
        "--template",
        "x",
        "--param",
        "temperature=0.7",
        "--param",
        "stop=[\"\\n\"]",
        "--param",
        "response_format={\"type\": \"json_object\"}",
        "--param",
        "user=alice",
        "--param",
        "seed=7",
        "--meta",
        "beta=true",
    ]);
    let v = env.json(&["prompt", "show", "p", "--json"]);
    assert_eq!(
        v["params"],
        json!({"temperature": 0.7, "stop": ["\n"], "response_format": {"type": "json_object"}, "user": "alice", "seed": 7})
    );
    assert_eq!(v["metadata"], json!({"beta": true}));
}

#[test]
fn list_filters_by_search_tag_and_metadata() {
    let env = Env::new();
    seed(&env);
    env.ok(&[
        "prompt",
        "create",
        "billing_faq",
        "--template",
        "x",
        "--meta",
        "owner=billing",
        "--tag",
        "production",
    ]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["prompt", "list", "--json"];
        full.extend_from_slice(args);
        env.json(&full)
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&[]), vec!["billing_faq", "customer_support_greeting"]);
    assert_eq!(
        names(&["--search", "GREET"]),
        vec!["customer_support_greeting"]
    );
    assert_eq!(
        names(&["--search", "greets customers"]),
        vec!["customer_support_greeting"]
    );
    assert_eq!(names(&["--tag", "production"]), vec!["billing_faq"]);
    assert_eq!(
        names(&["--meta", "owner=support-team"]),
        vec!["customer_support_greeting"]
    );
    assert!(names(&["--meta", "owner=nobody"]).is_empty());
    let table = env.ok(&["prompt", "list"]);
    assert!(
        table.contains("NAME") && table.contains("billing_faq"),
        "{table}"
    );
}

#[test]
fn diff_by_number_tag_and_id() {
    let env = Env::new();
    seed(&env);
    env.ok(&[
        "prompt",
        "update",
        "customer_support_greeting",
        "--template",
        "Hello {{query}}",
        "--param",
        "temperature=0.2",
        "--model",
        "gpt-4o",
        "--tag",
        "staging",
    ]);
    let v1_id = env.json(&[
        "prompt",
        "show",
        "customer_support_greeting",
        "--version",
        "1",
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let text = env.ok(&[
        "prompt",
        "diff",
        "customer_support_greeting",
        "1",
        "staging",
    ]);
    assert!(text.contains("-Customer Query: {{query}}"), "{text}");
    assert!(text.contains("+Hello {{query}}"), "{text}");
    assert!(text.contains("model: gpt-4 → gpt-4o"), "{text}");
    assert!(text.contains("params.temperature: 0.7 → 0.2"), "{text}");
    let json = env.json(&[
        "prompt",
        "diff",
        "customer_support_greeting",
        &v1_id,
        "2",
        "--json",
    ]);
    assert_eq!(json["from_version"], 1);
    assert_eq!(json["to_version"], 2);
    assert_eq!(json["template_changed"], true);
    let same = env.ok(&[
        "prompt",
        "diff",
        "customer_support_greeting",
        "2",
        "staging",
    ]);
    assert!(same.contains("no differences"), "{same}");
    env.fails(
        &["prompt", "diff", "customer_support_greeting", "1", "nosuch"],
        2,
    );
}

#[test]
fn tag_delete_and_rollback_restores_it() {
    let env = Env::new();
    seed(&env);
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "canary",
        "--version",
        "1",
    ]);
    env.ok(&[
        "tag",
        "delete",
        "customer_support_greeting",
        "canary",
        "-m",
        "done",
    ]);
    assert_eq!(
        env.json(&["tag", "list", "customer_support_greeting", "--json"]),
        json!([])
    );
    env.fails(
        &[
            "prompt",
            "show",
            "customer_support_greeting",
            "--tag",
            "canary",
        ],
        2,
    );
    env.ok(&["rollback", "customer_support_greeting", "canary"]);
    let tags = env.json(&["tag", "list", "customer_support_greeting", "--json"]);
    assert_eq!(tags[0]["name"], "canary");
    // A tag with no earlier version cannot be rolled back.
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "fresh",
        "--version",
        "1",
    ]);
    let err = env.fails(&["rollback", "customer_support_greeting", "fresh"], 2);
    assert!(err.contains("no earlier version"), "{err}");
    // Setting a tag to where it already is writes nothing.
    let before = dump(&env.db);
    let out = env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "fresh",
        "--version",
        "1",
    ]);
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(dump(&env.db), before);
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let env = Env::new();
    seed(&env);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["prompt", "show", "nosuch"], "unknown prompt"),
        (
            vec![
                "prompt",
                "show",
                "customer_support_greeting",
                "--version",
                "9",
            ],
            "version 9",
        ),
        (
            vec![
                "prompt",
                "show",
                "customer_support_greeting",
                "--version-id",
                "nope",
            ],
            "nope",
        ),
        (
            vec![
                "prompt",
                "show",
                "customer_support_greeting",
                "--tag",
                "nope",
            ],
            "nope",
        ),
        (
            vec!["prompt", "create", "bad name", "--template", "x"],
            "invalid prompt name",
        ),
        (
            vec![
                "prompt",
                "create",
                "customer_support_greeting",
                "--template",
                "x",
            ],
            "already exists",
        ),
        (
            vec!["prompt", "create", "p", "--template", "Hi {{name"],
            "unclosed",
        ),
        (
            vec![
                "prompt",
                "create",
                "p",
                "--template",
                "x",
                "--param",
                "response_format={\"type\":",
            ],
            "invalid JSON",
        ),
        (
            vec![
                "prompt",
                "create",
                "p",
                "--template",
                "x",
                "--param",
                "novalue",
            ],
            "KEY=VALUE",
        ),
        (vec!["prompt", "create", "p"], "needs a template"),
        (
            vec!["prompt", "create", "p", "--template-file", "missing.txt"],
            "cannot read template file",
        ),
        (
            vec!["prompt", "create", "p", "--template", "x", "--tag", "123"],
            "invalid tag name",
        ),
        (
            vec!["prompt", "update", "nosuch", "--template", "x"],
            "unknown prompt",
        ),
        (
            vec![
                "tag",
                "set",
                "customer_support_greeting",
                "123",
                "--version",
                "1",
            ],
            "invalid tag name",
        ),
        (
            vec![
                "tag",
                "set",
                "customer_support_greeting",
                "prod",
                "--version",
                "7",
            ],
            "version 7",
        ),
        (
            vec!["tag", "delete", "customer_support_greeting", "nope"],
            "no tag 'nope'",
        ),
        (
            vec!["rollback", "customer_support_greeting", "nope"],
            "no tag 'nope'",
        ),
        (vec!["tag", "history", "nosuch"], "unknown prompt"),
        (vec!["prompt", "render", "nosuch"], "unknown prompt"),
    ];
    for (args, needle) in cases {
        let err = env.fails(&args, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A hint accompanies the unknown prompt.
    let err = env.fails(&["prompt", "show", "nosuch"], 2);
    assert!(err.contains("hint: "), "{err}");
    // clap's own usage errors use the same code.
    env.fails(
        &["prompt", "show", "customer_support_greeting", "--bogus"],
        2,
    );
    env.fails(&["tag", "set", "customer_support_greeting", "prod"], 2);
}

#[test]
fn reading_commands_do_not_create_a_store() {
    let env = Env::new();
    if crate::is_postgres(&env.db) || crate::REMOTE {
        // A database or a server always has a store: reads answer on it, empty or not.
        assert_eq!(env.json(&["prompt", "list", "--json"]), json!([]));
        env.fails(&["prompt", "show", "anything"], 2);
        return;
    }
    // In a folder without a store, a read says so (exit 2) and creates nothing.
    for args in [
        &["prompt", "list", "--json"][..],
        &["prompt", "show", "anything"],
        &["experiment", "list"],
        &["tag", "history", "anything"],
    ] {
        let err = env.fails(args, 2);
        assert!(err.starts_with("error: no store at "), "{args:?}: {err}");
        assert!(err.contains("runner prompt create"), "{err}");
    }
    assert!(!env.db.exists());
    // A check of prompt files against no store says what a sync would create.
    std::fs::create_dir_all(env.path("prompts")).unwrap();
    env.write("prompts/greet.yaml", "template: \"Hi {{name}}\"\n");
    let out = env.run(&["sync", "prompts", "--check"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!env.db.exists());
    // The first write says where it made the store.
    let out = env.run(&["prompt", "create", "greet", "--template", "Hi"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("created the store"),
        "{out:?}"
    );
    assert!(env.db.exists());
}

#[test]
fn store_problems_exit_3() {
    let env = Env::new();
    let missing_dir = env.path("no/such/dir/runner.db");
    let output = env
        .cmd()
        .args([
            "--db",
            missing_dir.to_str().unwrap(),
            "prompt",
            "create",
            "p",
            "--template",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("hint:"),
        "{stderr}"
    );
    let not_db = env.write("notes.db", &"not a database ".repeat(100));
    let output = env
        .cmd()
        .args(["--db", not_db.to_str().unwrap(), "prompt", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an SQLite database"));
}

#[test]
fn runner_db_environment_variable_picks_the_store() {
    let env = Env::new();
    let other = env.path("other.db");
    let mut cmd = assert_cmd::Command::cargo_bin("runner").unwrap();
    cmd.current_dir(env.dir.path())
        .env("RUNNER_DB", &other)
        .env("USER", "tester")
        .args(["prompt", "create", "p", "--template", "x"])
        .assert()
        .success();
    assert!(other.exists());
    assert!(!env.path("runner.db").exists());
    // Default: runner.db in the working folder.
    let mut cmd = assert_cmd::Command::cargo_bin("runner").unwrap();
    cmd.current_dir(env.dir.path())
        .env_remove("RUNNER_DB")
        .args([
            "--author",
            "ada",
            "prompt",
            "create",
            "q",
            "--template",
            "x",
        ])
        .assert()
        .success();
    assert!(env.path("runner.db").exists());
}

#[test]
fn export_import_round_trip_is_identical() {
    let env = Env::new();
    seed(&env);
    let chat = env.write(
        "m.json",
        r#"[{"role": "system", "content": "Be {tone}."}, {"role": "user", "content": "{q}"}]"#,
    );
    env.ok(&[
        "prompt",
        "create",
        "chatty",
        "--messages-file",
        chat.to_str().unwrap(),
        "--format",
        "fstring",
        "--tag",
        "staging",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "customer_support_greeting",
        "--allow-same",
        "-m",
        "second",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "production",
        "--version",
        "1",
        "--force",
    ]);
    env.ok(&[
        "rollback",
        "customer_support_greeting",
        "production",
        "--force",
    ]);
    env.ok(&["export", "out1"]);
    let template = std::fs::read_to_string(
        env.path("out1/customer_support_greeting/versions/0001/template.txt"),
    )
    .unwrap();
    assert_eq!(template, SEED_TEMPLATE);
    assert!(env.path("out1/chatty/versions/0001/messages.json").exists());

    let fresh = env.path("fresh.db");
    let fresh_str = fresh.to_str().unwrap();
    env.ok(&["--db", fresh_str, "import", "out1"]);
    env.ok(&["--db", fresh_str, "export", "out2"]);
    let a = read_tree(&env.path("out1"));
    let b = read_tree(&env.path("out2"));
    assert!(!a.is_empty());
    assert_eq!(a, b);
    // Importing again is refused whole, and writes nothing.
    let before = dump(&fresh);
    let out = env
        .cmd()
        .args(["--db", fresh_str, "import", "out1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(dump(&fresh), before);
    // A hand-edited template is caught by its hash.
    std::fs::write(
        env.path("out2/chatty/versions/0001/messages.json"),
        r#"[{"role": "user", "content": "edited"}]"#,
    )
    .unwrap();
    let third = env.path("third.db");
    let out = env
        .cmd()
        .args(["--db", third.to_str().unwrap(), "import", "out2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed after export"));
    assert!(!third.exists() || dump(&third).is_empty());
}

#[test]
fn export_of_named_prompts_only() {
    let env = Env::new();
    seed(&env);
    env.ok(&["prompt", "create", "other", "--template", "x"]);
    env.ok(&["export", "out", "other"]);
    assert!(env.path("out/other/prompt.json").exists());
    assert!(!env.path("out/customer_support_greeting").exists());
    env.fails(&["export", "out2", "nosuch"], 2);
    assert!(!env.path("out2").exists());
}

fn read_tree(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                files.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn eight_processes_append_200_versions_without_gaps() {
    let env = Env::new();
    env.ok(&["prompt", "create", "busy", "--template", "v0"]);
    let children: Vec<_> = (0..8)
        .map(|p| {
            let db = env.db.clone();
            let dir = env.dir.path().to_path_buf();
            let remote = env.remote_env();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
                        .current_dir(&dir)
                        .envs(remote.clone())
                        .env("USER", format!("writer{p}"))
                        .args([
                            "--db",
                            db.to_str().unwrap(),
                            "prompt",
                            "update",
                            "busy",
                            "--template",
                        ])
                        .arg(format!("from {p} number {i}"))
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "writer {p} update {i}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for child in children {
        child.join().unwrap();
    }
    let versions = env.json(&["prompt", "versions", "busy", "--json"]);
    let mut seqs: Vec<i64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["seq"].as_i64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=201).collect::<Vec<_>>());
    let mut templates: Vec<String> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["template"].as_str().unwrap().to_string())
        .collect();
    templates.sort();
    templates.dedup();
    assert_eq!(templates.len(), 201, "every update kept its own content");
}

#[test]
fn two_processes_moving_one_tag_leave_it_consistent() {
    let env = Env::new();
    env.ok(&["prompt", "create", "p", "--template", "a"]);
    env.ok(&["prompt", "update", "p", "--template", "b"]);
    let movers: Vec<_> = [1, 2]
        .into_iter()
        .map(|version| {
            let db = env.db.clone();
            let remote = env.remote_env();
            std::thread::spawn(move || {
                for _ in 0..15 {
                    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
                        .envs(remote.clone())
                        .args([
                            "--db",
                            db.to_str().unwrap(),
                            "tag",
                            "set",
                            "p",
                            "production",
                            "--force",
                            "--version",
                        ])
                        .arg(version.to_string())
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for mover in movers {
        mover.join().unwrap();
    }
    let history = env.json(&["tag", "history", "p", "production", "--json"]);
    let history = history.as_array().unwrap();
    assert!(!history.is_empty());
    // Each entry starts where the previous one ended, and the tag sits where the last one ended.
    for pair in history.windows(2) {
        assert_eq!(pair[1]["from_version_id"], pair[0]["to_version_id"]);
    }
    let tag = env.json(&["tag", "list", "p", "--json"]);
    assert_eq!(
        tag[0]["version_id"],
        history.last().unwrap()["to_version_id"]
    );
    let moves_to = |seq: i64| history.iter().filter(|e| e["to_seq"] == seq).count();
    assert!(
        moves_to(1) >= 1 && moves_to(2) >= 1,
        "both processes' moves are in the history"
    );
}

#[test]
fn chat_templates_from_a_yaml_messages_file() {
    let env = Env::new();
    let file = env.write(
        "messages.yaml",
        "- role: system\n  content: You help {{company}}.\n- role: user\n  content: \"{{query}}\"\n",
    );
    env.ok(&[
        "prompt",
        "create",
        "triage",
        "--messages-file",
        file.to_str().unwrap(),
    ]);
    let out = env.json(&[
        "prompt",
        "render",
        "triage",
        "--var",
        "company=Acme",
        "--var",
        "query=hi",
        "--json",
    ]);
    assert_eq!(
        out["messages"],
        json!([{"role": "system", "content": "You help Acme."}, {"role": "user", "content": "hi"}])
    );
    let broken = env.write("broken.yml", "- role: user\n  content: [unclosed\n");
    let err = env.fails(
        &[
            "prompt",
            "create",
            "t2",
            "--messages-file",
            broken.to_str().unwrap(),
        ],
        2,
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

#[test]
fn protected_tags_need_force_and_forced_moves_are_recorded() {
    let env = Env::new();
    seed(&env);
    env.ok(&[
        "prompt",
        "update",
        "customer_support_greeting",
        "--template",
        "v2 {{query}} {{company_name}}",
    ]);
    // Creating the protected tag displaces nothing and needs no force.
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "production",
        "--version",
        "1",
    ]);
    for args in [
        vec![
            "tag",
            "set",
            "customer_support_greeting",
            "production",
            "--version",
            "2",
        ],
        vec!["tag", "delete", "customer_support_greeting", "production"],
        vec![
            "prompt",
            "update",
            "customer_support_greeting",
            "--template",
            "v3",
            "--tag",
            "production",
        ],
    ] {
        let err = env.fails(&args, 2);
        assert!(
            err.contains("protected") && err.contains("runner promote"),
            "{args:?}: {err}"
        );
    }
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "production",
        "--version",
        "2",
        "--force",
        "-m",
        "hotfix",
    ]);
    let history = env.json(&[
        "tag",
        "history",
        "customer_support_greeting",
        "production",
        "--json",
    ]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["forced"], true);
    assert_eq!(last["message"], "hotfix");
    let text = env.ok(&["tag", "history", "customer_support_greeting", "production"]);
    assert!(text.contains("move (forced)"), "{text}");
    let err = env.fails(&["rollback", "customer_support_greeting", "production"], 2);
    assert!(err.contains("protected"), "{err}");
    // The hint points at what works during an incident.
    assert!(
        err.contains("rollback customer_support_greeting production --force")
            && err.contains("deploy role"),
        "{err}"
    );
    env.ok(&[
        "rollback",
        "customer_support_greeting",
        "production",
        "--force",
    ]);
    // Other tags are not protected; a project file can change which are.
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "staging",
        "--version",
        "1",
    ]);
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "staging",
        "--version",
        "2",
    ]);
    env.write("runner.toml", "protected_tags = [\"staging\"]\n");
    let staging_back = [
        "tag",
        "set",
        "customer_support_greeting",
        "staging",
        "--version",
        "1",
    ];
    let production_back = [
        "tag",
        "set",
        "customer_support_greeting",
        "production",
        "--version",
        "1",
    ];
    if crate::REMOTE {
        // Behind a server, the server's policy rules: a client's runner.toml does not change
        // which tags are protected.
        env.ok(&staging_back);
        let err = env.fails(
            &[
                "tag",
                "set",
                "customer_support_greeting",
                "production",
                "--version",
                "2",
            ],
            2,
        );
        assert!(err.contains("protected"), "{err}");
    } else {
        env.fails(&staging_back, 2);
        env.ok(&production_back);
    }
    env.write("broken.toml", "protected_tags = \"oops\"\n");
    let err = env.fails(
        &[
            "--config",
            "broken.toml",
            "tag",
            "set",
            "customer_support_greeting",
            "qa",
            "--version",
            "1",
        ],
        2,
    );
    assert!(err.contains("broken.toml"), "{err}");
}

#[test]
fn a_failing_store_names_its_cause_below_the_error() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "Hi {{name}}"]);
    // A table the store needs is gone: the database's own message is the cause.
    crate::sql(&env.db, "DROP TABLE tag_events");
    let output = env.run(&["tag", "set", "greet", "staging", "--version", "1"]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "error: the store failed", "{stderr}");
    assert!(
        lines[1].starts_with("  Caused by: ") && lines[1].contains("tag_events"),
        "{stderr}"
    );
    assert!(lines.last().unwrap().starts_with("hint: "), "{stderr}");
}

#[test]
fn store_copy_moves_everything_between_backends_and_refuses_a_full_destination() {
    let env = Env::new();
    seed(&env);
    env.ok(&[
        "prompt",
        "update",
        "customer_support_greeting",
        "--template",
        "v2 {{query}}",
    ]);
    env.ok(&[
        "tag",
        "set",
        "customer_support_greeting",
        "staging",
        "--version",
        "2",
    ]);
    env.ok(&["prompt", "create", "other", "--template", "x"]);
    let server = crate::fault_server::FaultServer::start(std::time::Duration::from_millis(0));
    crate::echo_prompt(&env);
    let data = crate::echo_dataset(&env, "d.csv", &["a", "b", "c"]);
    env.ok(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &server.base_url(),
    ]);

    // SQLite (or PostgreSQL) → PostgreSQL → a new SQLite file: each end exports byte for byte
    // the same and lists the same experiments and results.
    let pg = crate::postgres::fresh_database();
    let back = env.path("back.db");
    let back = back.to_str().unwrap();
    let source = env.db.to_str().unwrap().to_string();
    let copied = env.ok(&["store", "copy", "--from", &source, "--to", &pg]);
    assert!(copied.contains("3 result(s)"), "{copied}");
    assert!(!copied.contains(crate::postgres::PASSWORD), "{copied}");
    env.ok(&["store", "copy", "--from", &pg, "--to", back]);
    let mut exports = Vec::new();
    for (i, db) in [source.as_str(), pg.as_str(), back].iter().enumerate() {
        let dir = format!("export{i}");
        env.ok(&["--db", db, "export", &dir]);
        exports.push(read_tree(&env.path(&dir)));
        let listed = env.json(&["--db", db, "experiment", "list", "--json"]);
        let id = listed[0]["id"].as_str().unwrap().to_string();
        let rows = env.json(&["--db", db, "experiment", "show", &id, "--rows", "--json"]);
        let history = env.json(&[
            "--db",
            db,
            "tag",
            "history",
            "customer_support_greeting",
            "--json",
        ]);
        exports.push(vec![(
            "json".into(),
            format!("{listed}{rows}{history}").into_bytes(),
        )]);
    }
    assert_eq!(exports[0], exports[2]);
    assert_eq!(exports[2], exports[4]);
    assert_eq!(exports[1], exports[3]);
    assert_eq!(exports[3], exports[5]);

    // A destination that holds anything is refused, and left as it was.
    let before = dump(std::path::Path::new(back));
    let out = env.run(&["store", "copy", "--from", &pg, "--to", back]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("not empty"),
        "{stderr}"
    );
    assert!(!stderr.contains(crate::postgres::PASSWORD), "{stderr}");
    assert_eq!(dump(std::path::Path::new(back)), before);
}

#[test]
fn a_postgres_password_comes_from_pgpassword_and_is_never_printed() {
    let env = Env::new();
    let url = crate::postgres::fresh_database();
    let password = crate::postgres::PASSWORD;
    let bare = url.replace(&format!(":{password}@"), "@");
    assert_ne!(bare, url);
    // Without a password (none in the URL, no PGPASSWORD, no password file) the server
    // refuses: exit 3 with the server's reason, and the store's URL shown without secrets.
    let refused = env
        .cmd()
        .args(["--db", &bare, "prompt", "list"])
        .env_remove("PGPASSWORD")
        .env("HOME", env.dir.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("error: cannot open store postgres://"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    // PGPASSWORD supplies it; nothing printed carries it, with the password in the URL either.
    for (db, env_password) in [(bare.as_str(), Some(password)), (url.as_str(), None)] {
        let mut cmd = env.cmd();
        cmd.args(["--db", db, "migrate"])
            .env("HOME", env.dir.path());
        match env_password {
            Some(p) => cmd.env("PGPASSWORD", p),
            None => cmd.env_remove("PGPASSWORD"),
        };
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("postgres://runner_test@127.0.0.1:"), "{text}");
        assert!(!text.contains(password), "{text}");
    }
}

#[test]
fn an_update_that_changes_nothing_is_refused_unless_asked_for() {
    let env = Env::new();
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "Hi {{name}}",
        "--model",
        "m",
    ]);
    let err = env.fails(&["prompt", "update", "greet", "-m", "nothing changed"], 2);
    assert!(err.contains("greet v1 already holds this content"), "{err}");
    assert!(
        err.contains("runner tag set greet TAG --version 1"),
        "{err}"
    );
    let err = env.fails(
        &[
            "prompt",
            "update",
            "greet",
            "--template",
            "Hi {{name}}",
            "--tag",
            "staging",
        ],
        2,
    );
    assert!(err.contains("--allow-same"), "{err}");
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--allow-same",
        "-m",
        "re-release",
    ]);
    let versions = env.json(&["prompt", "versions", "greet", "--json"]);
    assert_eq!(versions.as_array().unwrap().len(), 2);
    env.ok(&["prompt", "update", "greet", "--template", "Hello {{name}}"]);
}

#[test]
fn a_variable_the_template_does_not_use_is_warned_about_and_an_f_string_placeholder_named() {
    let env = Env::new();
    env.ok(&["prompt", "create", "fs", "--template", "Hello {name}"]);
    let out = env
        .cmd()
        .args(["prompt", "render", "fs", "--var", "name=Ann"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello {name}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: fs v1 uses no variable 'name'") && err.contains("--format fstring"),
        "{err}"
    );
    // Every variable used: no warning.
    env.ok(&["prompt", "create", "ok", "--template", "Hello {{name}}"]);
    let out = env
        .cmd()
        .args(["prompt", "render", "ok", "--var", "name=Ann"])
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_parameter_openai_does_not_take_is_warned_about_with_the_nearest_one() {
    let env = Env::new();
    let out = env
        .cmd()
        .args([
            "prompt",
            "create",
            "pp",
            "--template",
            "x",
            "--param",
            "temprature=0.3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("warning: --param temprature: not a parameter of OpenAI's chat completions (did you mean temperature?)").count(),
        1,
        "{err}"
    );
    std::fs::create_dir_all(env.path("prompts")).unwrap();
    env.write(
        "prompts/p1.yaml",
        "template: \"Hi {{name}}\"\nparams:\n  temprature: 0.2\n",
    );
    let out = env.cmd().args(["sync", "prompts"]).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("params.temprature") && err.contains("temperature?"),
        "{err}"
    );
    // Known parameters, and another provider's, say nothing.
    let out = env
        .cmd()
        .args([
            "prompt",
            "create",
            "ok",
            "--template",
            "x",
            "--param",
            "temperature=0.3",
        ])
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
