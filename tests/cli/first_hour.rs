//! What a new user meets in the first hour: honest exit codes, output that survives pipes,
//! messages that name their cause.

use super::Env;

fn prompt(env: &Env, name: &str) {
    env.ok(&["prompt", "create", name, "--template", "Hi {{name}}"]);
}

#[test]
fn a_closed_stdout_and_stderr_never_make_runner_panic() {
    let env = Env::new();
    prompt(&env, "greet");
    for (args, code) in [
        (vec!["prompt", "show", "nosuch"], 2),
        (vec!["prompt", "list"], 0),
        (vec!["tag", "history", "greet", "--json"], 0),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .std_cmd()
            .args(&args)
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .status()
            .unwrap();
        assert_eq!(out.code(), Some(code), "{args:?} (101 is a panic)");
    }
}

#[test]
fn without_user_the_author_comes_from_git_then_the_account() {
    let env = Env::new();
    let home = env.path("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join(".gitconfig"), "[user]\n\tname = Ada Lovelace\n").unwrap();
    let out = env
        .std_cmd()
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["prompt", "create", "greet", "--template", "x"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = env.json(&["prompt", "show", "greet", "--json"]);
    assert_eq!(shown["author"], "Ada Lovelace");
    // No git name either: the account's name, never "unknown".
    let empty_home = env.path("empty");
    std::fs::create_dir(&empty_home).unwrap();
    let out = env
        .std_cmd()
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env("HOME", &empty_home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["prompt", "update", "greet", "--template", "y"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = env.json(&["prompt", "show", "greet", "--json"]);
    assert_ne!(shown["author"], "unknown");
    assert!(!shown["author"].as_str().unwrap().is_empty());
}

fn run_over(env: &Env, base: &str, data: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        data,
        "--base-url",
        base,
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

#[test]
fn an_experiment_below_its_own_threshold_exits_1() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    super::echo_prompt(&env);
    // The echo answers the query; `expected` is the query except on two rows of ten.
    let mut text = String::from("id,query,expected\n");
    for i in 0..10 {
        let expected = if i < 2 { "nowhere" } else { "row" };
        text.push_str(&format!("r{i},row {i},{expected}\n"));
    }
    let data = env.write("rows.csv", &text);
    let data = data.to_str().unwrap();
    let base = server.base_url();
    let out = run_over(&env, &base, data, &["--min-pass-rate", "0.9", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("check failed: min pass rate (icontains) is 80.0%, needs >= 90.0%"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["check"][0]["passed"], false);
    assert_eq!(
        run_over(&env, &base, data, &["--min-pass-rate", "0.8"])
            .status
            .code(),
        Some(0)
    );
    // From runner.toml too; a flag out of range is refused before anything runs.
    env.write(
        "runner.toml",
        "[thresholds]\nmax_error_rate = 0.0\nmin_pass_rate = 0.95\n",
    );
    assert_eq!(run_over(&env, &base, data, &[]).status.code(), Some(1));
    let experiments = env
        .json(&["experiment", "list", "--json"])
        .as_array()
        .unwrap()
        .len();
    let out = run_over(&env, &base, data, &["--max-error-rate", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        env.json(&["experiment", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        experiments
    );
}

#[test]
fn the_same_refusal_on_the_first_calls_stops_the_run() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    super::echo_prompt(&env);
    // Every row is refused with the same 400, as for a misspelled model.
    let queries: Vec<String> = (0..50).map(|i| format!("q{i} fault=400:1000")).collect();
    let data = super::echo_dataset(&env, "rows.csv", &queries);
    let before = super::dump(&env.db);
    let out = run_over(&env, &server.base_url(), &data, &["--concurrency", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("refused the first 5 calls the same way"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fault 400"),
        "the endpoint's own words: {stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    // A handful of calls, not 50 rows × retries; and no trace in the store.
    assert!(server.log().len() <= 10, "{} calls", server.log().len());
    assert_eq!(super::dump(&env.db), before);
}

#[test]
fn runner_toml_errors_say_where_and_why() {
    let env = Env::new();
    super::echo_prompt(&env);
    let data = env.write("rows.csv", "id,query\n1,a\n");
    let data = data.to_str().unwrap();
    let args = ["experiment", "--prompt", "echo", "--dataset", data];
    env.write("runner.toml", "concurency = 4\n");
    let stderr = env.fails(&args, 2);
    assert!(
        stderr.contains("line 1, column 1: unknown field `concurency`"),
        "{stderr}"
    );
    env.write("runner.toml", "model = \"m\"\nconcurrency = \"four\"\n");
    let stderr = env.fails(&args, 2);
    assert!(
        stderr.contains("line 2") && stderr.contains("invalid type: string \"four\""),
        "{stderr}"
    );
    env.write("runner.toml", "[prompts.echo]\nevals = [\"nosuch\"]\n");
    let stderr = env.fails(&args, 2);
    assert!(stderr.contains("(from `evals` in runner.toml)"), "{stderr}");
}

#[test]
fn a_diff_of_a_trailing_newline_says_so() {
    let env = Env::new();
    let one = env.write("one.txt", "Hello {{name}}");
    let two = env.write("two.txt", "Hello {{name}}\n");
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template-file",
        one.to_str().unwrap(),
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template-file",
        two.to_str().unwrap(),
    ]);
    let diff = env.ok(&["prompt", "diff", "greet", "1", "2"]);
    assert!(diff.contains("No newline at end of file"), "{diff}");
}

#[test]
fn compare_headers_name_the_tags_asked_for() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let base = server.base_url();
    let data = env.write("rows.csv", "id,query\n1,a\n2,b\n");
    let data = data.to_str().unwrap();
    for (text, tag) in [("{{query}}", "production"), ("v2 {{query}}", "staging")] {
        let verb = if tag == "production" {
            "create"
        } else {
            "update"
        };
        env.ok(&[
            "prompt",
            verb,
            "p",
            "--template",
            text,
            "--model",
            "m",
            "--tag",
            tag,
        ]);
    }
    // v2 runs as staging, then becomes production; v3 is the new staging.
    env.ok(&[
        "experiment",
        "--prompt",
        "p",
        "--tag",
        "staging",
        "--dataset",
        data,
        "--base-url",
        &base,
    ]);
    env.ok(&["tag", "set", "p", "production", "--version", "2", "--force"]);
    env.ok(&[
        "prompt",
        "update",
        "p",
        "--template",
        "v3 {{query}}",
        "--tag",
        "staging",
    ]);
    let out = env.json(&[
        "compare",
        "--prompt",
        "p",
        "--tags",
        "production,staging",
        "--dataset",
        data,
        "--run",
        "--base-url",
        &base,
        "--json",
    ]);
    assert_eq!(out["baseline"]["label"], "p v2 (production)", "{out}");
    assert_eq!(out["candidate"]["label"], "p v3 (staging)", "{out}");
}

#[test]
fn comparing_experiments_on_different_datasets_warns() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let base = server.base_url();
    super::echo_prompt(&env);
    let mut ids = Vec::new();
    for (name, text) in [("a.csv", "id,query\n1,a\n"), ("b.csv", "id,query\n1,b\n")] {
        let data = env.write(name, text);
        let out = env.json(&[
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            data.to_str().unwrap(),
            "--base-url",
            &base,
            "--json",
        ]);
        ids.push(out["experiment"]["id"].as_str().unwrap().to_string());
    }
    let out = env.run(&["compare", &ids[0], &ids[1]]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ran on different datasets"), "{stderr}");
}

#[test]
fn a_killed_run_is_listed_as_interrupted_with_the_resume_command() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::from_millis(30));
    super::echo_prompt(&env);
    let queries: Vec<String> = (0..200).map(|i| format!("q{i}")).collect();
    let data = super::echo_dataset(&env, "rows.csv", &queries);
    let base = server.base_url();
    let (mut child, id) = super::spawn_listed_experiment(&env, &data, &base, "16", "running");
    child.kill().unwrap();
    child.wait().unwrap();
    let listed = env.json(&["experiment", "list", "--json"]);
    assert_eq!(listed[0]["status"], "interrupted", "{listed}");
    let out = env.run(&["experiment", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("runner experiment resume {id}")),
        "{stderr}"
    );
}

#[test]
fn show_rows_has_the_expected_answer_and_filters_failures() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    super::echo_prompt(&env);
    let data = env.write(
        "rows.csv",
        "id,query,expected\nok,alpha,alpha\nwrong,beta,gamma\nbroken,d fault=400:9,x\n",
    );
    let out = env.json(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        data.to_str().unwrap(),
        "--base-url",
        &server.base_url(),
        "--json",
        "--max-error-rate",
        "1",
    ]);
    let id = out["experiment"]["id"].as_str().unwrap().to_string();
    let table = env.ok(&["experiment", "show", &id, "--rows"]);
    assert!(
        table.contains("EXPECTED") && table.contains("gamma"),
        "{table}"
    );
    let ids = |extra: &str| -> Vec<String> {
        let shown = env.json(&["experiment", "show", &id, "--rows", "--json", extra]);
        shown["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["row_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("--failed"), ["wrong", "broken"]);
    assert_eq!(ids("--errored"), ["broken"]);
    env.ok(&["experiment", "show", &id, "--failed", "--csv", "failed.csv"]);
    let csv = std::fs::read_to_string(env.path("failed.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[test]
fn known_parameters_are_type_checked_and_unknown_ones_pass_through() {
    let env = Env::new();
    for (param, why) in [
        (
            "temperature=0.7.1",
            "temperature must be a number from 0 to 2",
        ),
        (
            "max_tokens=-3",
            "max_tokens must be a whole number of at least 1",
        ),
        ("top_p=2", "top_p must be a number from 0 to 1"),
        ("stop=7", "stop must be a string or a list of strings"),
    ] {
        let stderr = env.fails(
            &["prompt", "create", "p", "--template", "x", "--param", param],
            2,
        );
        assert!(stderr.contains(why), "{param}: {stderr}");
        assert!(stderr.contains("hint: for example --param"), "{stderr}");
    }
    env.ok(&[
        "prompt",
        "create",
        "p",
        "--template",
        "x",
        "--param",
        "temperature=0.7",
        "--param",
        "max_tokens=100",
        "--param",
        "provider_specific=anything",
    ]);
    let shown = env.json(&["prompt", "show", "p", "--json"]);
    assert_eq!(shown["params"]["provider_specific"], "anything");
    assert_eq!(shown["params"]["max_tokens"], 100);
}

#[test]
fn the_progress_line_says_when_requests_wait_to_retry_and_why() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    super::echo_prompt(&env);
    // One row answers 429 with Retry-After: 7 once: the run sits in back-off past the first
    // progress line (every 5 s when stderr is not a terminal).
    let data = super::echo_dataset(&env, "slow.csv", &["plain", "held fault=429:1:7"]);
    let out = run_over(&env, &server.base_url(), &data, &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let waiting = stderr
        .lines()
        .find(|l| l.contains("waiting to retry"))
        .unwrap_or_else(|| panic!("no line tells of the wait:\n{stderr}"));
    assert!(
        waiting.contains("1/2 rows") && waiting.contains("1 waiting to retry after HTTP 429"),
        "{waiting}"
    );
    assert!(waiting.contains("s more; 1 retried)"), "{waiting}");
    // The last line, after the wait, counts the retry without a wait, and the 429 as a rate
    // limit the run was held back by.
    let last = stderr.lines().rfind(|l| l.contains(" rows, ")).unwrap();
    assert!(
        last.contains("2/2 rows") && last.contains(", 1 retried; rate limits: 1 × 429"),
        "{last}"
    );
    assert!(!last.contains("waiting to retry"), "{last}");
}

#[test]
fn row_tables_fit_the_terminal_width_and_json_keeps_every_word() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    super::echo_prompt(&env);
    let long = "a long answer that goes on and on about shipping times, refunds and the \
                warehouse in great detail, far past what one table cell can show";
    let data = super::echo_dataset(&env, "long.csv", &[long, "short"]);
    let out = run_over(&env, &server.base_url(), &data, &["--json"]);
    assert!(out.status.success());
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["experiment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for width in [80usize, 60] {
        let out = env
            .cmd()
            .env("COLUMNS", width.to_string())
            .args(["experiment", "show", &id, "--rows"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for line in text.lines() {
            assert!(
                line.chars().count() <= width,
                "wider than {width}: {line:?}\n{text}"
            );
        }
        assert!(text.contains('…'), "a cut cell is marked:\n{text}");
        assert!(
            text.contains("OUTPUT") && text.contains("EXPECTED"),
            "{text}"
        );
    }
    // Unfitted (a pipe without COLUMNS), and in JSON, nothing is folded away.
    let shown = env.json(&["experiment", "show", &id, "--rows", "--json"]);
    assert_eq!(shown["rows"][0]["output"], long);
}

#[test]
fn a_comparison_at_80_columns_wraps_between_words_and_keeps_every_word() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    let base = server.base_url();
    for (verb, text, tag) in [
        ("create", "{{query}}", "production"),
        ("update", "About {{query}}: we will look into it", "staging"),
    ] {
        env.ok(&[
            "prompt",
            verb,
            "p",
            "--template",
            text,
            "--model",
            "m",
            "--tag",
            tag,
        ]);
    }
    let data = super::echo_dataset(
        &env,
        "q.csv",
        &[
            "refund", "parcel", "invoice", "password", "delivery", "order",
        ],
    );
    let compare = |columns: Option<&str>| {
        let mut cmd = env.cmd();
        if let Some(columns) = columns {
            cmd.env("COLUMNS", columns);
        }
        let out = cmd
            .args([
                "compare",
                "--prompt",
                "p",
                "--baseline",
                "production",
                "--candidate",
                "staging",
                "--dataset",
                &data,
                "--base-url",
                &base,
                "--run",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let wide = compare(None);
    let narrow = compare(Some("80"));
    assert!(wide.contains("is the difference real?"), "{wide}");
    assert!(
        wide.lines().any(|l| l.chars().count() > 80),
        "the unfitted report needs more than 80 columns:\n{wide}"
    );
    for line in narrow.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80: {line:?}\n{narrow}"
        );
    }
    // Every word of the fitted report is a whole word of the unfitted one: nothing was cut
    // inside a word (`differenc` / `e`).
    let mut words: Vec<&str> = wide.split_whitespace().collect();
    for word in narrow.split_whitespace().filter(|w| !w.ends_with('…')) {
        let at = words.iter().position(|w| w == &word);
        assert!(
            at.is_some(),
            "{word:?} is not a word of the report\n{narrow}"
        );
        words.remove(at.unwrap());
    }
    // One style: no borders anywhere, capital headers.
    assert!(!narrow.contains('│') && !narrow.contains('┆'), "{narrow}");
    assert!(narrow.contains("METRIC"), "{narrow}");
}

#[test]
fn a_file_separated_by_semicolons_is_read_so_and_empty_cells_are_counted_before_the_run() {
    use super::fault_server::FaultServer;
    use std::time::Duration;
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    super::echo_prompt(&env);
    let data = env.write(
        "export.csv",
        "id;query;expected\n1;where is my parcel;parcel\n2;;refund\n3;\"a; b\";a\n",
    );
    let out = run_over(
        &env,
        &server.base_url(),
        data.to_str().unwrap(),
        &["--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is separated by semicolons, not commas: read so"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: column query is empty in 1 of 3 rows"),
        "{stderr}"
    );
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["summary"]["results"], 3, "{run}");
    assert_eq!(
        run["experiment"]["dataset"]["columns"],
        serde_json::json!(["id", "query", "expected"])
    );
    let rows = env.json(&["experiment", "show", "last", "--rows", "--json"]);
    let outputs: Vec<&str> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["output"].as_str().unwrap())
        .collect();
    assert!(outputs.contains(&"a; b"), "{rows}");
}

/// A README or docs/ block, with the page and line it starts on.
type Snippet = (String, String);

/// README.md, then the pages of docs/ in the order README's Documentation lists them: the
/// order the snippets run in (a later page may use what an earlier one made).
const DOC_PAGES: [&str; 13] = [
    "README.md",
    "docs/prompt-store.md",
    "docs/team-store.md",
    "docs/experiments.md",
    "docs/compare-and-promote.md",
    "docs/statistics.md",
    "docs/prompts-as-code.md",
    "docs/serving.md",
    "docs/production.md",
    "docs/web-ui.md",
    "docs/guarantees.md",
    "docs/performance.md",
    "docs/architecture.md",
];

/// The `sh` snippets of README.md and docs/ in order, each with its page and line; a block right after a
/// `<!-- not run: REASON -->` line is left out (returned second, with the reason).
fn readme_snippets() -> (Vec<Snippet>, Vec<Snippet>) {
    let (mut run, mut skipped) = (Vec::new(), Vec::new());
    for page in DOC_PAGES {
        let (r, s) = page_snippets(page);
        run.extend(r);
        skipped.extend(s);
    }
    (run, skipped)
}

/// The shell snippets of one page: those that run, and those marked as not run with why.
fn page_snippets(page: &str) -> (Vec<Snippet>, Vec<Snippet>) {
    let readme = std::fs::read_to_string(format!("{}/{page}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{page}: {e}"));
    let lines: Vec<&str> = readme.lines().collect();
    let (mut run, mut skipped) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_end();
        if let Some(lang) = fence.strip_prefix("```") {
            let start = i + 1;
            let mut end = start;
            while end < lines.len() && lines[end].trim_end() != "```" {
                end += 1;
            }
            assert!(
                !matches!(lang, "bash" | "shell" | "console" | "zsh"),
                "{page} line {start}: shell snippets are fenced as ```sh (run by this test) \
                 or ```text (a synopsis, not run)"
            );
            if lang == "sh" {
                let body = lines[start..end].join("\n");
                let marker = (i > 0)
                    .then(|| lines[i - 1].trim())
                    .and_then(|l| l.strip_prefix("<!-- not run:"))
                    .and_then(|l| l.strip_suffix("-->"))
                    .map(str::trim);
                match marker {
                    Some(reason) => {
                        assert!(
                            reason.split_whitespace().count() >= 3,
                            "{page} line {start}: say why the block is not run"
                        );
                        skipped.push((format!("{page} line {start}"), reason.to_string()));
                    }
                    None => run.push((format!("{page} line {start}"), body)),
                }
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    (run, skipped)
}

#[test]
fn the_readme_snippets_run_in_order_in_an_empty_folder() {
    let (snippets, skipped) = readme_snippets();
    assert!(
        snippets.len() >= 2,
        "the quick start and the walkthrough run"
    );
    assert!(skipped.len() < snippets.len() * 4, "{skipped:?}");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Run as written, in one shell, in order. Two things differ, both about this machine
    // rather than the snippets: the mock's port is a free one (tests run in parallel), and a
    // mock left running by a failed step is stopped.
    let mut script = String::from(
        "set -e\ntrap 'if [ -n \"$MOCK_PID\" ]; then kill \"$MOCK_PID\" 2>/dev/null || true; fi' EXIT\n",
    );
    for (line, body) in &snippets {
        script.push_str(&format!("echo '== {line}' >&2\n"));
        script.push_str(&body.replace("8089", &port.to_string()));
        script.push('\n');
    }
    let bin = assert_cmd::cargo::cargo_bin("runner");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = assert_cmd::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .env_remove("RUNNER_DB")
        .env_remove("RUNNER_AUTHOR")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("COLUMNS")
        .timeout(std::time::Duration::from_secs(180))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a README or docs/ snippet failed (the last `== PAGE line N` names its block)\n\
         --- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // The walkthrough teaches something: the better candidate passes and moves production,
    // the worse one fails and leaves it.
    assert!(
        stdout.contains("gate PASSED, tag moved: triage staging v2 → production (v1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("gate FAILED, nothing moved: triage staging v3 → production (v2)"),
        "{stdout}"
    );
    assert!(stdout.contains("gate failed with exit 1"), "{stdout}");
    assert!(dir.path().join("runner.db").exists());
}

#[test]
fn a_detached_mock_is_ready_when_the_command_returns_and_says_why_it_could_not_start() {
    let env = Env::new();
    let out = env.run(&["mock-server", "--port", "0", "--detach"]);
    assert!(out.status.success());
    let pid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let url = stderr
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches(',')
        .to_string();
    // Listening already: a request right away is answered.
    let port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/v1")
        .parse()
        .unwrap();
    let answered = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let killed = std::process::Command::new("kill")
        .arg(&pid)
        .status()
        .unwrap();
    assert!(answered, "{stderr}");
    assert!(killed.success(), "pid {pid} was running");
    // A port in use: exit 3 with the listener's own reason; a bad rules file: exit 2.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let err = env.fails(&["mock-server", "--port", &port, "--detach"], 3);
    assert!(
        err.contains("the mock endpoint did not start: cannot listen"),
        "{err}"
    );
    let err = env.fails(
        &["mock-server", "--detach", "--responses", "missing.yaml"],
        2,
    );
    assert!(err.contains("missing.yaml"), "{err}");
}

#[test]
fn without_a_key_openai_s_endpoint_is_refused_before_anything_is_sent_or_written() {
    let env = Env::new();
    env.ok(&[
        "prompt",
        "create",
        "p",
        "--template",
        "{{q}}",
        "--model",
        "gpt-4o-mini",
    ]);
    let data = env.write("d.csv", "id,q\n1,hello\n");
    let err = env.fails(
        &[
            "experiment",
            "--prompt",
            "p",
            "--dataset",
            data.to_str().unwrap(),
        ],
        2,
    );
    assert!(
        err.contains("no OPENAI_API_KEY for https://api.openai.com/v1")
            && err.contains("mock-server"),
        "{err}"
    );
    let err = env.fails(&["try", "p", "--var", "q=hi"], 2);
    assert!(err.contains("no OPENAI_API_KEY"), "{err}");
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_the_rows_in_flight_wait_for_resume() {
    use super::fault_server::FaultServer;
    use std::time::{Duration, Instant};
    let env = Env::new();
    // Every answer takes 20 s: the first Ctrl-C's grace (5 s) would be waited out in full.
    let server = FaultServer::start(Duration::from_secs(20));
    super::echo_prompt(&env);
    let queries: Vec<String> = (0..4).map(|i| format!("q{i}")).collect();
    let data = super::echo_dataset(&env, "rows.csv", &queries);
    let base = server.base_url();
    let (mut child, id) = super::spawn_listed_experiment(&env, &data, &base, "4", "running");
    let pid = child.id() as i32;
    // Wait until the first row is in flight (the others wait for its answer).
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log().is_empty() {
        assert!(Instant::now() < deadline, "the rows were never sent");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    std::thread::sleep(Duration::from_millis(500));
    let second = Instant::now();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    let took = second.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "stopped {took:?} after the second Ctrl-C"
    );
    assert!(!status.success());
    let shown = env.json(&["experiment", "show", &id, "--json"]);
    assert_eq!(shown["experiment"]["status"], "interrupted", "{shown}");
    assert_eq!(
        shown["summary"]["results"], 0,
        "no answer came, none is stored"
    );
}
