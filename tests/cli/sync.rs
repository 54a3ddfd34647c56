//! Prompts as code: `runner sync` and `runner pull` on real files in a real git repository,
//! with the real binary, on the test's store (SQLite here, PostgreSQL in `cli_postgres`).

use crate::{Env, dump, sql_value};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// `git` in the test's folder, as a person (or CI) would run it.
fn git(env: &Env, args: &[&str]) {
    let output = std::process::Command::new("git")
        .current_dir(env.dir.path())
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Commits everything in the folder but the store, with `subject`.
fn commit(env: &Env, subject: &str) {
    git(env, &["add", "prompts"]);
    git(env, &["commit", "-q", "-m", subject]);
}

/// A git repository with a prompts/ folder in the test's folder.
fn repository(env: &Env) {
    git(env, &["init", "-q"]);
    std::fs::create_dir_all(env.path("prompts")).unwrap();
}

const GREETING: &str = "\
description: Greets a customer
model: gpt-4o-mini
params:
  temperature: 0.7
  max_tokens: 200
metadata:
  owner: support-team
tags: [staging]
template: |
  You are a support agent for {{company_name}}.
  Customer: {{query}}
";

const TRIAGE: &str = r#"{
  "$schema": "../schemas/prompt-file.schema.json",
  "format": "fstring",
  "messages": [
    {"role": "system", "content": "Sort the ticket: urgent or not."},
    {"role": "user", "content": "{ticket}"}
  ],
  "tags": ["staging", "production"]
}
"#;

const BILLING: &str = r#"model = "gpt-4o"
message = "Billing answers, first cut"
template = """
Answer the billing question: {{question}}
"""

[params]
temperature = 0.0
"#;

fn write_prompts(env: &Env) {
    env.write("prompts/support_greeting.yaml", GREETING);
    env.write("prompts/triage.json", TRIAGE);
    env.write("prompts/billing.toml", BILLING);
    env.write(
        "prompts/README.md",
        "Prompt files; see runner sync --help.\n",
    );
}

fn run_in(env: &Env, dir: &Path, args: &[&str]) -> Output {
    env.cmd()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run runner")
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn versions(env: &Env, name: &str) -> Vec<Value> {
    env.json(&["prompt", "versions", name, "--json"])
        .as_array()
        .unwrap()
        .clone()
}

/// Tag name → version number.
fn tags(env: &Env, name: &str) -> Vec<(String, i64)> {
    let mut tags: Vec<(String, i64)> = env
        .json(&["tag", "list", name, "--json"])
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
    tags.sort();
    tags
}

#[test]
fn sync_creates_then_appends_only_what_changed_with_git_subjects_as_messages() {
    let env = Env::new();
    repository(&env);
    write_prompts(&env);
    commit(&env, "Add the support prompts");

    let first = env.ok(&["sync", "prompts"]);
    assert!(
        first.contains("prompts/support_greeting.yaml: created support_greeting v1"),
        "{first}"
    );
    assert!(
        first.contains("synced 3 prompt files: 3 created, 0 appended, 0 unchanged; 3 tags set"),
        "{first}"
    );
    let greeting = versions(&env, "support_greeting");
    assert_eq!(greeting.len(), 1);
    assert_eq!(greeting[0]["message"], "Add the support prompts");
    assert_eq!(greeting[0]["author"], crate::actor("tester"));
    // A file's own message wins over the commit's subject.
    assert_eq!(
        versions(&env, "billing")[0]["message"],
        "Billing answers, first cut"
    );
    let shown = env.json(&["prompt", "show", "support_greeting", "--json"]);
    assert_eq!(shown["params"]["temperature"], 0.7);
    assert_eq!(shown["params"]["max_tokens"], 200);
    assert_eq!(shown["metadata"]["owner"], "support-team");
    assert_eq!(shown["description"], "Greets a customer");
    assert_eq!(shown["model"], "gpt-4o-mini");
    assert_eq!(
        shown["template"],
        "You are a support agent for {{company_name}}.\nCustomer: {{query}}\n"
    );
    let triage = env.json(&["prompt", "show", "triage", "--json"]);
    assert_eq!(triage["template_type"], "chat");
    assert_eq!(triage["format"], "fstring");
    // A protected tag that does not exist yet is created with the prompt: that moves nothing.
    assert_eq!(
        tags(&env, "triage"),
        [("production".into(), 1), ("staging".into(), 1)]
    );

    // Idempotent: a second run writes nothing at all.
    let before = dump(&env.db);
    let second = env.ok(&["sync", "prompts"]);
    assert!(
        second.contains("synced 3 prompt files: 0 created, 0 appended, 3 unchanged; 0 tags set"),
        "{second}"
    );
    assert_eq!(dump(&env.db), before, "a second sync changed the store");

    // One file changes in a commit: one version, with the commit's subject, staging follows.
    let edited = GREETING
        .replace("temperature: 0.7", "temperature: 0.2")
        .replace(
            "Customer: {{query}}",
            "Customer: {{query}}\n  Answer in two sentences.",
        );
    env.write("prompts/support_greeting.yaml", &edited);
    commit(&env, "Shorter greeting answers");
    let third = env.ok(&["sync", "prompts", "--json"]);
    let report: Value = serde_json::from_str(&third).unwrap();
    assert_eq!(report["in_sync"], false);
    assert_eq!(report["counts"]["appended"], 1);
    assert_eq!(report["counts"]["unchanged"], 2);
    let entry = &report["prompts"][1];
    assert_eq!(entry["name"], "support_greeting");
    assert_eq!(entry["action"], "append");
    assert_eq!(entry["from_version"], 1);
    assert_eq!(entry["version"], 2);
    assert_eq!(
        entry["changed"],
        serde_json::json!(["template", "params.temperature"])
    );
    assert_eq!(
        entry["tags"][0],
        serde_json::json!({"tag": "staging", "from_version": 1, "to_version": 2})
    );
    let greeting = versions(&env, "support_greeting");
    assert_eq!(greeting.len(), 2);
    assert_eq!(greeting[0]["message"], "Shorter greeting answers");
    assert_eq!(tags(&env, "support_greeting"), [("staging".into(), 2)]);
    assert_eq!(versions(&env, "billing").len(), 1);
    assert_eq!(versions(&env, "triage").len(), 1);

    // -m is the message of a file without its own; a description alone is a change too.
    env.write(
        "prompts/support_greeting.yaml",
        &edited.replace("Greets a customer", "Greets a customer, briefly"),
    );
    env.ok(&["sync", "prompts", "-m", "Say what it does"]);
    let greeting = versions(&env, "support_greeting");
    assert_eq!(greeting.len(), 3);
    assert_eq!(greeting[0]["message"], "Say what it does");

    // Run from a sub-folder with the folder's path: the same checkout, the same result.
    let nested = run_in(&env, &env.path("prompts"), &["sync", ".", "--check"]);
    assert_eq!(code(&nested), 0, "{}", stdout(&nested));
}

#[test]
fn outside_a_git_checkout_a_version_has_no_message_unless_given() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("prompts")).unwrap();
    env.write("prompts/support_greeting.yaml", GREETING);
    env.ok(&["sync", "prompts"]);
    assert_eq!(
        versions(&env, "support_greeting")[0]["message"],
        Value::Null
    );
}

#[test]
fn check_lists_each_change_writes_nothing_and_exits_1_until_in_sync() {
    let env = Env::new();
    repository(&env);
    write_prompts(&env);
    commit(&env, "Add the support prompts");
    // Nothing in the store yet: a check neither creates nor changes it.
    let output = env.run(&["sync", "prompts", "--check", "--markdown", "sync.md"]);
    assert_eq!(code(&output), 1, "{}", stdout(&output));
    if !crate::is_postgres(&env.db) {
        assert!(!env.db.exists(), "a check created the store");
    }
    let text = stdout(&output);
    assert!(
        text.contains("prompts/triage.json: new prompt triage (v1)"),
        "{text}"
    );
    assert!(
        text.contains("the store differs from prompts: 3 new prompts, 3 tags to set"),
        "{text}"
    );
    let markdown = std::fs::read_to_string(env.path("sync.md")).unwrap();
    assert!(
        markdown.starts_with("### Prompts: `prompts` differs from the store"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| `billing` | `prompts/billing.toml` | new prompt (v1) | – |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("Answer the billing question: {{question}}"),
        "{markdown}"
    );

    env.ok(&["sync", "prompts"]);
    let before = dump(&env.db);
    let output = env.run(&["sync", "prompts", "--check", "--markdown", "sync.md"]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
    assert!(stdout(&output).contains("in sync: 3 prompt files match the store"));
    assert!(
        std::fs::read_to_string(env.path("sync.md"))
            .unwrap()
            .starts_with("### Prompts: `prompts` in sync with the store")
    );

    // A pull request edits the template, the params and the metadata, and adds a tag.
    env.write(
        "prompts/support_greeting.yaml",
        &GREETING
            .replace("temperature: 0.7", "temperature: 0.3")
            .replace("owner: support-team", "owner: cx-team")
            .replace("tags: [staging]", "tags: [staging, canary]")
            .replace("Customer: {{query}}", "Customer question: {{query}}"),
    );
    let output = env.run(&[
        "sync",
        "prompts",
        "--check",
        "--json",
        "--markdown",
        "sync.md",
    ]);
    assert_eq!(code(&output), 1);
    assert_eq!(dump(&env.db), before, "a check wrote to the store");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["check"], true);
    assert_eq!(report["in_sync"], false);
    let entry = &report["prompts"][1];
    assert_eq!(entry["action"], "append");
    assert_eq!(entry["version"], 2);
    assert_eq!(entry["version_id"], Value::Null);
    assert_eq!(
        entry["changed"],
        serde_json::json!(["template", "params.temperature", "metadata.owner"])
    );
    assert_eq!(entry["diff"]["changes"][0]["from"], 0.7);
    assert_eq!(entry["diff"]["changes"][0]["to"], 0.3);
    assert_eq!(
        entry["tags"],
        serde_json::json!([
            {"tag": "staging", "from_version": 1, "to_version": 2},
            {"tag": "canary", "from_version": null, "to_version": 2}
        ])
    );
    let markdown = std::fs::read_to_string(env.path("sync.md")).unwrap();
    for expected in [
        "| `support_greeting` | `prompts/support_greeting.yaml` | new version v2 (latest is v1) | `staging` v1 → v2, `canary` → v2 |",
        "-Customer: {{query}}\n+Customer question: {{query}}",
        "| `params.temperature` | `0.7` | `0.3` |",
        "| `metadata.owner` | `support-team` | `cx-team` |",
    ] {
        assert!(markdown.contains(expected), "{expected}\n---\n{markdown}");
    }
    let text = env.run(&["sync", "prompts", "--check"]);
    let text = stdout(&text);
    assert!(
        text.contains("    -Customer: {{query}}\n    +Customer question: {{query}}"),
        "{text}"
    );
    assert!(
        text.contains("  metadata.owner: support-team → cx-team"),
        "{text}"
    );
    assert!(text.contains("  tag canary: set on v2"), "{text}");

    // A tag alone differs: the check says so.
    env.write(
        "prompts/support_greeting.yaml",
        &GREETING.replace("tags: [staging]", "tags: [staging, canary]"),
    );
    let output = env.run(&["sync", "prompts", "--check"]);
    assert_eq!(code(&output), 1);
    assert!(
        stdout(&output).contains("the store differs from prompts: 1 tag to set"),
        "{}",
        stdout(&output)
    );
    env.ok(&["sync", "prompts"]);
    assert_eq!(
        versions(&env, "support_greeting").len(),
        1,
        "a tag alone is no new version"
    );
    assert_eq!(
        tags(&env, "support_greeting"),
        [("canary".into(), 1), ("staging".into(), 1)]
    );
    let output = env.run(&["sync", "prompts", "--check"]);
    assert_eq!(code(&output), 0, "{}", stdout(&output));
}

#[test]
fn a_protected_tag_is_never_moved_by_sync_and_the_output_says_so() {
    let env = Env::new();
    repository(&env);
    write_prompts(&env);
    commit(&env, "Add the support prompts");
    env.ok(&["sync", "prompts"]);
    assert_eq!(
        tags(&env, "triage"),
        [("production".into(), 1), ("staging".into(), 1)]
    );
    env.write(
        "prompts/triage.json",
        &TRIAGE.replace("urgent or not", "urgent, soon or later"),
    );
    commit(&env, "Three levels of urgency");
    let check = env.run(&["sync", "prompts", "--check", "--markdown", "sync.md"]);
    assert_eq!(code(&check), 1);
    let note = "production stays at v1 (the file is v2): a protected tag moves through `runner promote`, never by sync";
    assert!(stdout(&check).contains(note), "{}", stdout(&check));
    let markdown = std::fs::read_to_string(env.path("sync.md")).unwrap();
    assert!(
        markdown.contains("- `production` of `triage` stays at v1 (the file is v2)"),
        "{markdown}"
    );
    let synced = env.ok(&["sync", "prompts"]);
    assert!(synced.contains(note), "{synced}");
    assert_eq!(
        tags(&env, "triage"),
        [("production".into(), 1), ("staging".into(), 2)]
    );
    let history = env.json(&["tag", "history", "triage", "production", "--json"]);
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    // Still noted, never moved, and not a difference a check fails on.
    let check = env.run(&["sync", "prompts", "--check"]);
    assert_eq!(code(&check), 0, "{}", stdout(&check));
    assert!(stdout(&check).contains(note));
    // A project that protects staging too: sync leaves it where it is.
    env.write(
        "runner.toml",
        "protected_tags = [\"production\", \"staging\"]\n",
    );
    env.write("prompts/triage.json", TRIAGE);
    let synced = env.ok(&["sync", "prompts"]);
    assert!(
        synced.contains("staging stays at v2 (the file is v3)"),
        "{synced}"
    );
    assert_eq!(
        tags(&env, "triage"),
        [("production".into(), 1), ("staging".into(), 2)]
    );
}

#[test]
fn invalid_files_are_all_reported_before_anything_is_written() {
    let env = Env::new();
    repository(&env);
    write_prompts(&env);
    env.write("prompts/no_template.yaml", "model: gpt-4o\n");
    env.write(
        "prompts/bad_param.json",
        r#"{"template": "x", "params": {"temperature": 7}}"#,
    );
    env.write("prompts/typo.toml", "template = \"x\"\ntemprature = 0.2\n");
    env.write(
        "prompts/broken.yaml",
        "template: 'Hello {{name'\ntags: ['12']\n",
    );
    env.write("prompts/bad name.yaml", "template: x\n");
    env.write("prompts/support_greeting.json", r#"{"template": "twice"}"#);
    for args in [&["sync", "prompts"][..], &["sync", "prompts", "--check"]] {
        let stderr = env.fails(args, 2);
        let mut lines = stderr.lines();
        assert_eq!(
            lines.next().unwrap(),
            "error: 6 of 8 prompt file(s) in prompts are invalid; nothing was written"
        );
        let listed: Vec<&str> = lines.by_ref().take_while(|l| l.starts_with("  ")).collect();
        let expected = [
            "  prompts/bad name.yaml: the file name makes an invalid prompt name",
            "  prompts/bad_param.json: params: temperature must be a number from 0 to 2",
            "  prompts/broken.yaml: mustache template: ",
            "  prompts/broken.yaml: tags: invalid tag name \"12\"",
            "  prompts/no_template.yaml: it needs a template (or messages, for a chat prompt)",
            "  prompts/support_greeting.json: prompt 'support_greeting' has 2 files",
            "  prompts/typo.toml: invalid TOML at line 2: unknown field `temprature`",
        ];
        assert_eq!(listed.len(), expected.len(), "{stderr}");
        for (line, start) in listed.iter().zip(expected) {
            assert!(
                line.starts_with(start),
                "{line:?} should start with {start:?}\n{stderr}"
            );
        }
        assert!(
            stderr.contains("hint: a prompt file holds template (or messages)"),
            "{stderr}"
        );
    }
    let stderr = env.fails(&["sync", "missing"], 2);
    assert_eq!(
        stderr.lines().next().unwrap(),
        "error: missing does not exist"
    );
    let stderr = env.fails(&["sync", "prompts/billing.toml"], 2);
    assert!(
        stderr.starts_with("error: prompts/billing.toml is not a folder"),
        "{stderr}"
    );
    let stderr = env.fails(&["sync", "prompts", "--markdown", "x.md"], 2);
    assert!(stderr.contains("--check"), "{stderr}");
}

#[test]
fn prompts_without_a_file_are_left_alone_and_listed() {
    let env = Env::new();
    repository(&env);
    env.write("prompts/support_greeting.yaml", GREETING);
    env.ok(&[
        "prompt",
        "create",
        "legacy",
        "--template",
        "Old {{x}}",
        "--tag",
        "staging",
    ]);
    let before_legacy = env.json(&["prompt", "versions", "legacy", "--json"]);
    let synced = env.ok(&["sync", "prompts"]);
    assert!(
        synced.contains("in the store without a file, left alone: legacy"),
        "{synced}"
    );
    let report = env.json(&["sync", "prompts", "--check", "--json"]);
    assert_eq!(report["untracked"], serde_json::json!(["legacy"]));
    assert_eq!(report["in_sync"], true);
    assert_eq!(
        env.json(&["prompt", "versions", "legacy", "--json"]),
        before_legacy
    );
}

#[test]
fn pull_writes_files_that_sync_reads_as_in_sync() {
    let env = Env::new();
    repository(&env);
    // A store built by hand, as a team has it before its prompts live in the repository.
    env.write(
        "triage.json",
        r#"[{"role": "system", "content": "Sort: {kind}\n"}, {"role": "user", "content": "{ticket}"}]"#,
    );
    env.ok(&[
        "prompt",
        "create",
        "triage",
        "--messages-file",
        "triage.json",
        "--format",
        "fstring",
        "--param",
        "stop=[\"\\n\"]",
    ]);
    env.ok(&[
        "prompt",
        "create",
        "support_greeting",
        "--template",
        "Hello {{name}}\n\n  indented: yes\n",
        "--model",
        "gpt-4o-mini",
        "--param",
        "temperature=0.7",
        "--meta",
        "owner=support-team",
        "--meta",
        "reviewed=true",
        "--description",
        "Greets: politely",
        "--tag",
        "staging",
    ]);
    env.ok(&[
        "tag",
        "set",
        "support_greeting",
        "production",
        "--version",
        "1",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "support_greeting",
        "--template",
        "Hi {{name}}",
        "--tag",
        "canary",
    ]);
    env.ok(&[
        "prompt",
        "create",
        "billing",
        "--template",
        "Bill {{x}}",
        "--format",
        "none",
    ]);
    // billing already lives in the repository as TOML, triage as JSON with another layout.
    env.write("prompts/billing.toml", "template = \"an older text\"\n");
    env.write(
        "prompts/triage.json",
        r#"{
  "format": "fstring",
  "params": {"stop": ["\n"]},
  "messages": [
    {"role": "system", "content": "Sort: {kind}\n"},
    {"role": "user", "content": "{ticket}"}
  ]
}
"#,
    );
    let triage_before = std::fs::read_to_string(env.path("prompts/triage.json")).unwrap();

    let pulled = env.ok(&["pull", "prompts"]);
    assert!(
        pulled.contains("prompts/billing.toml: wrote billing v1"),
        "{pulled}"
    );
    assert!(
        pulled.contains("prompts/triage.json: already holds triage v1"),
        "{pulled}"
    );
    assert!(
        pulled.contains("prompts/support_greeting.yaml: wrote support_greeting v2"),
        "{pulled}"
    );
    assert!(
        pulled.ends_with("pulled 3 prompt(s) into prompts: 2 written, 1 already up to date\n"),
        "{pulled}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("prompts/triage.json")).unwrap(),
        triage_before
    );
    let greeting = std::fs::read_to_string(env.path("prompts/support_greeting.yaml")).unwrap();
    assert_eq!(
        greeting,
        "description: \"Greets: politely\"\nmodel: gpt-4o-mini\nformat: mustache\ntags:\n- canary\nparams:\n  temperature: 0.7\nmetadata:\n  owner: support-team\n  reviewed: true\ntemplate: Hi {{name}}\n"
    );
    let billing = std::fs::read_to_string(env.path("prompts/billing.toml")).unwrap();
    assert!(billing.contains("template = \"Bill {{x}}\""), "{billing}");

    let before = dump(&env.db);
    let check = env.run(&["sync", "prompts", "--check"]);
    assert_eq!(code(&check), 0, "{}", stdout(&check));
    env.ok(&["sync", "prompts"]);
    assert_eq!(
        dump(&env.db),
        before,
        "a sync of pulled files wrote something"
    );
    let again = env.ok(&["pull", "prompts"]);
    assert!(again.ends_with("3 already up to date\n"), "{again}");

    // --tag: the version under the tag, with its tags (a protected one too).
    let production = env.ok(&["pull", "released", "--tag", "production"]);
    assert!(
        production.contains("released/support_greeting.yaml: wrote support_greeting v1"),
        "{production}"
    );
    assert!(
        production.contains("without tag production, skipped: billing, triage"),
        "{production}"
    );
    let released = std::fs::read_to_string(env.path("released/support_greeting.yaml")).unwrap();
    assert!(
        released.contains("tags:\n- production\n- staging\n"),
        "{released}"
    );
    assert!(
        released.contains("template: |\n  Hello {{name}}\n\n    indented: yes\n"),
        "{released}"
    );
    // Synced back, it is v1's content again: a new version (a revert), and the tags stay.
    let check = env.run(&["sync", "released", "--check"]);
    assert_eq!(code(&check), 1);
    assert!(
        stdout(&check).contains("new version of support_greeting (v2 → v3)"),
        "{}",
        stdout(&check)
    );

    // Unknown names and tags: exit 2, no file written.
    env.fails(&["pull", "fresh", "nope"], 2);
    env.fails(&["pull", "fresh", "billing", "--tag", "production"], 2);
    env.fails(&["pull", "fresh", "bad name"], 2);
    assert!(!env.path("fresh").exists());
    env.write("prompts/billing.yaml", "template: x\n");
    let stderr = env.fails(&["pull", "prompts", "billing"], 2);
    assert!(
        stderr.starts_with("error: prompt 'billing' has 2 files in prompts"),
        "{stderr}"
    );
}

#[test]
fn pulled_files_pass_the_json_schema() {
    let env = Env::new();
    env.ok(&[
        "prompt",
        "create",
        "a",
        "--template",
        "Hello {{name}}\n",
        "--param",
        "max_tokens=5",
        "--tag",
        "staging",
    ]);
    env.write("m.json", r#"[{"role": "user", "content": "{q}"}]"#);
    env.ok(&[
        "prompt",
        "create",
        "b",
        "--messages-file",
        "m.json",
        "--format",
        "fstring",
        "--meta",
        "k={\"x\": [1, 2]}",
    ]);
    env.ok(&[
        "prompt",
        "create",
        "c",
        "--template",
        "plain",
        "--format",
        "none",
        "--description",
        "C",
    ]);
    std::fs::create_dir_all(env.path("out")).unwrap();
    env.write("out/b.json", "{}");
    env.write("out/c.toml", "");
    env.ok(&["pull", "out"]);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/prompt-file.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (file, value) in [
        (
            "a.yaml",
            serde_saphyr::from_str::<Value>(
                &std::fs::read_to_string(env.path("out/a.yaml")).unwrap(),
            )
            .unwrap(),
        ),
        (
            "b.json",
            serde_json::from_str(&std::fs::read_to_string(env.path("out/b.json")).unwrap())
                .unwrap(),
        ),
        (
            "c.toml",
            toml::from_str(&std::fs::read_to_string(env.path("out/c.toml")).unwrap()).unwrap(),
        ),
    ] {
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
    // And the schema refuses what sync refuses.
    env.write("out/d.yaml", "template: x\nparams:\n  temperature: 9\n");
    env.fails(&["sync", "out", "--check"], 2);
    let d: Value = serde_saphyr::from_str("template: x\nparams:\n  temperature: 9\n").unwrap();
    assert!(!validator.is_valid(&d));
}

#[test]
fn two_syncs_at_once_create_one_version() {
    let env = Env::new();
    repository(&env);
    write_prompts(&env);
    commit(&env, "Add the support prompts");
    // Make sure the store exists, so both processes race on the prompts, not on its creation.
    env.ok(&["migrate"]);
    for round in 1..=2 {
        if round == 2 {
            env.write(
                "prompts/support_greeting.yaml",
                &GREETING.replace("0.7", "0.1"),
            );
            env.write(
                "prompts/triage.json",
                &TRIAGE.replace("urgent or not", "urgent or later"),
            );
            commit(&env, "Second round");
        }
        let children: Vec<_> = (0..4)
            .map(|_| {
                env.std_cmd()
                    .args(["sync", "prompts", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut written = 0;
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let report: Value = serde_json::from_slice(&output.stdout).unwrap();
            written += report["counts"]["created"].as_i64().unwrap()
                + report["counts"]["appended"].as_i64().unwrap();
        }
        let expected = if round == 1 { 3 } else { 2 };
        assert_eq!(
            written, expected,
            "round {round}: versions written by all syncs together"
        );
        assert_eq!(versions(&env, "support_greeting").len(), round);
        assert_eq!(versions(&env, "triage").len(), round);
        assert_eq!(versions(&env, "billing").len(), 1);
        let count = sql_value(&env.db, "SELECT COUNT(*) FROM prompt_versions");
        assert_eq!(count, (2 * round + 1).to_string());
        // staging moved once per round, whoever moved it.
        let history = env.json(&["tag", "history", "support_greeting", "staging", "--json"]);
        assert_eq!(history.as_array().unwrap().len(), round);
    }
    // Four pruning syncs at once: every one succeeds, the prompt without a file is archived once.
    env.ok(&["prompt", "create", "legacy", "--template", "Old {{x}}"]);
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.std_cmd()
                .args(["sync", "prompts", "--prune"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(
        sql_value(
            &env.db,
            "SELECT COUNT(*) FROM prompt_events WHERE action = 'archive'"
        ),
        "1"
    );
}

#[test]
fn prune_archives_prompts_without_a_file_and_a_file_brings_one_back() {
    let env = Env::new();
    repository(&env);
    env.write("prompts/support_greeting.yaml", GREETING);
    env.ok(&[
        "prompt",
        "create",
        "legacy",
        "--template",
        "Old {{x}}",
        "--tag",
        "staging",
    ]);
    env.ok(&["sync", "prompts"]);
    let before = dump(&env.db);
    let check = env.run(&[
        "sync",
        "prompts",
        "--check",
        "--prune",
        "--markdown",
        "sync.md",
    ]);
    assert_eq!(code(&check), 1, "{}", stdout(&check));
    assert!(
        stdout(&check).contains("to archive (no file): legacy"),
        "{}",
        stdout(&check)
    );
    assert!(stdout(&check).contains("the store differs from prompts: 1 prompt to archive"));
    let markdown = std::fs::read_to_string(env.path("sync.md")).unwrap();
    assert!(
        markdown.contains("To archive (no file): `legacy`."),
        "{markdown}"
    );
    assert_eq!(dump(&env.db), before, "a check archived a prompt");

    let synced = env.ok(&["sync", "prompts", "--prune", "--json"]);
    let report: Value = serde_json::from_str(&synced).unwrap();
    assert_eq!(report["archived"], serde_json::json!(["legacy"]));
    assert_eq!(report["counts"]["archived"], 1);
    let listed = env.json(&["prompt", "list", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["support_greeting"]);
    env.fails(&["prompt", "show", "legacy"], 2);
    // Pruned once: a second run finds nothing to do.
    let before = dump(&env.db);
    let again = env.run(&["sync", "prompts", "--prune", "--check"]);
    assert_eq!(code(&again), 0, "{}", stdout(&again));
    env.ok(&["sync", "prompts", "--prune"]);
    assert_eq!(dump(&env.db), before);

    // Its file comes back (a revert): the prompt is restored as it was, with no new version.
    env.write(
        "prompts/legacy.yaml",
        "format: mustache\ntags: [staging]\ntemplate: Old {{x}}\n",
    );
    let check = env.run(&["sync", "prompts", "--check"]);
    assert_eq!(code(&check), 1);
    assert!(
        stdout(&check)
            .contains("prompts/legacy.yaml: legacy in sync (v1); archived: to be restored"),
        "{}",
        stdout(&check)
    );
    let synced = env.ok(&["sync", "prompts"]);
    assert!(
        synced.contains("prompts/legacy.yaml: legacy in sync (v1); restored from the archive"),
        "{synced}"
    );
    assert_eq!(versions(&env, "legacy").len(), 1);
    assert_eq!(tags(&env, "legacy"), [("staging".into(), 1)]);
    let check = env.run(&["sync", "prompts", "--check", "--prune"]);
    assert_eq!(code(&check), 0, "{}", stdout(&check));

    // --prune on a folder without prompt files would archive everything: refused.
    std::fs::create_dir_all(env.path("empty")).unwrap();
    let stderr = env.fails(&["sync", "empty", "--prune"], 2);
    assert!(
        stderr
            .starts_with("error: empty holds no prompt files: --prune would archive every prompt"),
        "{stderr}"
    );
}
