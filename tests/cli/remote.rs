//! The CLI against a team server: `--db http://…` with a token and nothing else. The seed
//! workflow with tokens of each role, the gate the server evaluates, tokens kept in the store
//! (created, listed, revoked, expired), login / whoami, and the faults: no server, a wrong
//! token, a role too weak, a server restarted under a running experiment, another protocol.
//! The server runs over this binary's backend (an SQLite file, or PostgreSQL in
//! `cli_postgres`).

use super::{Env, Mock};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `runner serve` over the test's store on `bind`, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(env: &Env, bind: &str) -> Served {
    let mut child = env
        .std_cmd()
        .args(["serve", "--bind", bind])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runner serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("runner serve said {first:?}"))
        .to_string();
    Served { child, url }
}

/// A command of a client that knows only the server's URL and a token: no store of its own
/// (RUNNER_DB is the URL), in a folder of its own.
fn client(env: &Env, url: &str, token: &str) -> std::process::Command {
    let mut cmd = env.std_cmd();
    cmd.env("RUNNER_DB", url)
        .env("RUNNER_TOKEN", token)
        .current_dir(env.path("client"));
    cmd
}

fn run(mut cmd: std::process::Command, args: &[&str]) -> (i32, String, String) {
    let out = cmd.args(args).output().expect("run runner");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ok(cmd: std::process::Command, args: &[&str]) -> String {
    let (code, stdout, stderr) = run(cmd, args);
    assert_eq!(code, 0, "runner {args:?}: {stderr}");
    stdout
}

fn fails(cmd: std::process::Command, args: &[&str], code: i32) -> String {
    let (got, stdout, stderr) = run(cmd, args);
    assert_eq!(got, code, "runner {args:?}: {stdout}\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("\nhint: "), "{stderr}");
    stderr
}

/// A token of the store, made on the store directly (as the server's operator does once).
fn token(env: &Env, name: &str, role: &str) -> String {
    env.ok(&["token", "create", name, "--role", role, "--quiet"])
        .trim()
        .to_string()
}

fn dataset(env: &Env) -> String {
    let mut data = String::from("id,query,expected\n");
    for (i, word) in [
        "order", "refund", "password", "invoice", "delivery", "account",
    ]
    .iter()
    .enumerate()
    {
        data.push_str(&format!("r{i},where is my {word},{word}\n"));
    }
    env.write("client/cases.csv", &data).display().to_string()
}

/// `promote support` from staging to production on `cases`, as JSON, with `extra` after.
fn promote_args<'a>(cases: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "promote",
        "--prompt",
        "support",
        "--candidate",
        "staging",
        "--baseline",
        "production",
        "--dataset",
        cases,
        "--eval",
        "icontains",
        "--expected-column",
        "expected",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

fn http(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, String) {
    runner::client::install_tls();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut request = client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
            .bearer_auth(token)
            .header("x-runner-store-protocol", "1");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.expect("request");
        let status = reply.status().as_u16();
        (status, reply.text().await.unwrap())
    })
}

#[test]
fn a_team_runs_the_seed_workflow_with_only_a_url_and_tokens() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("client")).unwrap();
    let admin = token(&env, "admin", "admin");
    let server = serve(&env, "127.0.0.1:0");
    let url = server.url.clone();
    let mock = Mock::start(&env, &[]);
    let base_url = mock.url.clone();

    // The admin hands out tokens through the server.
    let ci = ok(
        client(&env, &url, &admin),
        &["token", "create", "ci", "--role", "promote", "--quiet"],
    )
    .trim()
    .to_string();
    let release = ok(
        client(&env, &url, &admin),
        &["token", "create", "release", "--role", "deploy", "--quiet"],
    )
    .trim()
    .to_string();
    let reader = ok(
        client(&env, &url, &admin),
        &["token", "create", "dashboard", "--role", "read", "--quiet"],
    )
    .trim()
    .to_string();
    let listed: Value = serde_json::from_str(&ok(
        client(&env, &url, &admin),
        &["token", "list", "--json"],
    ))
    .unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ci", "dashboard", "release"]);
    assert!(
        !listed.to_string().contains(&ci),
        "a secret is never listed"
    );
    let who: Value =
        serde_json::from_str(&ok(client(&env, &url, &ci), &["whoami", "--json"])).unwrap();
    assert_eq!(who["role"], "promote");
    assert_eq!(who["actor"], "api:ci (tester)");

    // CI: the prompt, two versions, experiments on both, a comparison, the promotion.
    let cases = dataset(&env);
    let ci_cmd = || {
        let mut cmd = client(&env, &url, &ci);
        cmd.env("OPENAI_BASE_URL", &base_url);
        cmd
    };
    ok(
        ci_cmd(),
        &[
            "prompt",
            "create",
            "support",
            "--template",
            "I cannot help.",
            "--model",
            "m",
            "--tag",
            "production",
        ],
    );
    ok(
        ci_cmd(),
        &[
            "prompt",
            "update",
            "support",
            "--template",
            "About {{query}}",
            "--tag",
            "staging",
            "-m",
            "answers the question",
        ],
    );
    for tag in ["production", "staging"] {
        ok(
            ci_cmd(),
            &[
                "experiment",
                "--prompt",
                "support",
                "--tag",
                tag,
                "--dataset",
                &cases,
                "--eval",
                "icontains",
                "--expected-column",
                "expected",
            ],
        );
    }
    let compared: Value = serde_json::from_str(&ok(
        ci_cmd(),
        &[
            "compare",
            "--prompt",
            "support",
            "--tags",
            "production,staging",
            "--dataset",
            &cases,
            "--eval",
            "icontains",
            "--expected-column",
            "expected",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(compared["candidate"]["rows"], 6, "{compared}");
    // A promote token may not move production by hand, not even with force.
    let err = fails(
        ci_cmd(),
        &[
            "tag",
            "set",
            "support",
            "production",
            "--version",
            "2",
            "--force",
        ],
        2,
    );
    assert!(err.contains("deploy role"), "{err}");
    let promoted: Value = serde_json::from_str(&ok(
        ci_cmd(),
        &promote_args(&cases, &["-m", "better answers"]),
    ))
    .unwrap();
    assert_eq!(promoted["passed"], true, "{promoted}");
    assert_eq!(promoted["moved"], true, "{promoted}");
    let history: Value = serde_json::from_str(&ok(
        client(&env, &url, &reader),
        &["tag", "history", "support", "production", "--json"],
    ))
    .unwrap();
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["action"], "promote");
    assert_eq!(last["actor"], "api:ci (tester)");
    assert_eq!(last["to_seq"], 2);
    assert!(
        last["evidence"]["candidate_experiment"].is_string(),
        "{last}"
    );

    // An incident: the deploy token rolls production back by hand, recorded as such.
    let err = fails(ci_cmd(), &["rollback", "support", "production"], 2);
    assert!(err.contains("protected"), "{err}");
    ok(
        client(&env, &url, &release),
        &[
            "rollback",
            "support",
            "production",
            "-m",
            "answers confuse users",
        ],
    );
    let shown: Value = serde_json::from_str(&ok(
        client(&env, &url, &reader),
        &["prompt", "show", "support", "--tag", "production", "--json"],
    ))
    .unwrap();
    assert_eq!(shown["seq"], 1);
    let history: Value = serde_json::from_str(&ok(
        client(&env, &url, &reader),
        &["tag", "history", "support", "production", "--json"],
    ))
    .unwrap();
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["action"], "rollback");
    assert_eq!(last["deploy"], true);
    assert_eq!(last["actor"], "api:release (tester)");

    // A read token reads and writes nothing; tokens are the admin's.
    let err = fails(
        client(&env, &url, &reader),
        &["prompt", "create", "other", "--template", "x"],
        2,
    );
    assert!(err.contains("write role"), "{err}");
    let err = fails(client(&env, &url, &ci), &["token", "list"], 2);
    assert!(err.contains("admin role"), "{err}");

    // A revoked token is refused within a second: exit 3, with a hint.
    ok(
        client(&env, &url, &admin),
        &["token", "revoke", "dashboard"],
    );
    std::thread::sleep(Duration::from_millis(1100));
    let err = fails(client(&env, &url, &reader), &["prompt", "list"], 3);
    assert!(err.contains("refused the token"), "{err}");
    assert!(err.contains(&url), "{err}");
}

#[test]
fn the_server_decides_the_gate_and_refuses_a_client_s_own_verdict() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("client")).unwrap();
    let admin = token(&env, "admin", "admin");
    let ci = token(&env, "ci", "promote");
    let server = serve(&env, "127.0.0.1:0");
    let url = server.url.clone();
    let mock = Mock::start(&env, &[]);
    let ci_cmd = || {
        let mut cmd = client(&env, &url, &ci);
        cmd.env("OPENAI_BASE_URL", &mock.url);
        cmd
    };
    let cases = dataset(&env);
    // Production answers the question; staging does not: a worse candidate.
    ok(
        ci_cmd(),
        &[
            "prompt",
            "create",
            "support",
            "--template",
            "About {{query}}",
            "--model",
            "m",
            "--tag",
            "production",
        ],
    );
    ok(
        ci_cmd(),
        &[
            "prompt",
            "update",
            "support",
            "--template",
            "I cannot help.",
            "--tag",
            "staging",
        ],
    );
    let (code, stdout, _) = run(ci_cmd(), &promote_args(&cases, &[]));
    assert_eq!(code, 1, "{stdout}");
    let experiments: Value =
        serde_json::from_str(&ok(ci_cmd(), &["experiment", "list", "--json"])).unwrap();
    let id_of = |seq: i64| {
        experiments
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["version_seq"] == seq)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (candidate, baseline) = (id_of(2), id_of(1));
    // The client asks with a gate that passes anything: the server's gate is its own code
    // on the stored results, with the server's [gate] as a floor; this one has none, so the
    // criteria asked for decide, and a worse candidate fails them.
    let ask = |policy: Value| {
        http(
            "POST",
            &format!("{url}/v1/promotions"),
            &ci,
            Some(json!({
                "prompt": "support", "from": "staging", "to": "production",
                "candidate_experiment": candidate, "baseline_experiment": baseline,
                "policy": policy, "confidence": 0.95, "cluster_column": null,
                "same_endpoint": false, "message": null, "dry_run": false
            })),
        )
    };
    let (status, body) = ask(json!({"no_new_failures": true, "max_regression": null,
        "min_pass_rate": null, "max_error_rate": null, "max_p95_latency_ms": null}));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["passed"], false, "{answer}");
    assert!(answer["moved"].is_null());
    let (status, body) = ask(json!({"no_new_failures": false, "max_regression": null,
        "min_pass_rate": null, "max_error_rate": null, "max_p95_latency_ms": null}));
    assert_eq!(status, 422, "a gate with no criterion: {body}");
    // No store call may record a promotion, and a promote token may not force.
    for (change, needs) in [
        (
            json!({"actor": "me", "message": null, "force": false, "role": "Deploy",
                "evidence": {"verdict": "pass"}, "policy": {"protected": []},
                "action": "promote", "expect": "Any"}),
            "promote",
        ),
        (
            json!({"actor": "me", "message": null, "force": true, "role": "Writer",
                "evidence": null, "policy": {"protected": []}, "action": null,
                "expect": "Any"}),
            "deploy",
        ),
    ] {
        let (status, body) = http(
            "POST",
            &format!("{url}/v1/store/set_tag"),
            &ci,
            Some(json!(["support", "production", {"Seq": 2}, change])),
        );
        assert_eq!(status, 403, "{body}");
        assert!(body.contains(needs), "{body}");
    }
    // Even an admin's store call is held to the server's policy: a claimed deploy role and an
    // empty policy do not move production.
    let (status, body) = http(
        "POST",
        &format!("{url}/v1/store/set_tag"),
        &token(&env, "writer", "write"),
        Some(
            json!(["support", "production", {"Seq": 2}, {"actor": "me", "message": null,
            "force": false, "role": "Deploy", "evidence": null, "policy": {"protected": []},
            "action": null, "expect": "Any"}]),
        ),
    );
    assert_eq!(status, 403, "{body}");
    let shown: Value = serde_json::from_str(&ok(
        client(&env, &url, &admin),
        &["prompt", "show", "support", "--tag", "production", "--json"],
    ))
    .unwrap();
    assert_eq!(shown["seq"], 1, "production never moved");
}

#[test]
fn no_server_a_wrong_token_and_another_protocol_say_so_at_once() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("client")).unwrap();
    // Nothing listens: exit 3 at once, naming the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let err = fails(
        client(&env, &nowhere, "whatever-token-123"),
        &["prompt", "list"],
        3,
    );
    assert!(started.elapsed() < Duration::from_secs(10), "it hung");
    assert!(
        err.contains(&nowhere) && err.contains("runner serve"),
        "{err}"
    );

    let _admin = token(&env, "admin", "admin");
    let expired = token(&env, "old", "write");
    // An expired token: its expiry set in the past, as time would.
    crate::sql(
        &env.db,
        "UPDATE api_tokens SET expires_at = '2020-01-01T00:00:00.000Z' WHERE name = 'old'",
    );
    let server = serve(&env, "127.0.0.1:0");
    for bad in ["not-a-token-of-this-server", expired.as_str()] {
        let err = fails(client(&env, &server.url, bad), &["prompt", "list"], 3);
        assert!(err.contains("refused the token"), "{err}");
    }
    // A client of another protocol is told which versions meet.
    let (status, body) = runtime_get(&format!("{}/v1/store", server.url), &_admin, "99");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("protocol 1") && body.contains("99"), "{body}");
}

fn runtime_get(url: &str, token: &str, protocol: &str) -> (u16, String) {
    runner::client::install_tls();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let reply = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .header("x-runner-store-protocol", protocol)
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    })
}

#[test]
fn a_server_restarted_under_a_running_experiment_loses_and_doubles_nothing() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("client")).unwrap();
    let ci = token(&env, "ci", "write");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut server = serve(&env, &bind);
    let url = server.url.clone();
    // 400 rows at 10 ms each, 4 at a time: about a second of work.
    let mock = Mock::start(&env, &["--latency-ms", "10"]);
    let mut data = String::from("id,query\n");
    for i in 0..400 {
        data.push_str(&format!("r{i},question {i}\n"));
    }
    let path = env.write("client/many.csv", &data);
    ok(
        client(&env, &url, &ci),
        &[
            "prompt",
            "create",
            "p",
            "--template",
            "{{query}}",
            "--model",
            "m",
        ],
    );
    let mut run = client(&env, &url, &ci);
    run.env("OPENAI_BASE_URL", &mock.url)
        .args([
            "experiment",
            "--prompt",
            "p",
            "--dataset",
            path.to_str().unwrap(),
            "--concurrency",
            "4",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let experiment = run.spawn().unwrap();
    // Stop the server once some results are stored, and start it again on the same port.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored: i64 = crate::sql_value(&env.db, "SELECT COUNT(*) FROM results")
            .parse()
            .unwrap_or(0);
        if stored >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "no results arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    std::thread::sleep(Duration::from_millis(1500));
    server = serve(&env, &bind);
    let out = experiment.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = crate::sql(
        &env.db,
        "SELECT COUNT(*), COUNT(DISTINCT row_index), SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) FROM results",
    );
    assert_eq!(
        counts[0],
        ["400", "400", "400"],
        "every row once, each answered"
    );
    drop(server);
}

#[test]
fn login_keeps_a_checked_token_readable_by_the_user_alone() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    std::fs::create_dir_all(env.path("client")).unwrap();
    let admin = token(&env, "admin", "admin");
    let server = serve(&env, "127.0.0.1:0");
    let login = |token: &str| {
        use std::io::Write;
        let mut child = env
            .std_cmd()
            .env_remove("RUNNER_DB")
            .args(["login", &server.url, "--profile", "team"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{token}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let refused = login("a-token-the-server-does-not-know");
    assert_eq!(refused.status.code(), Some(3));
    let file = env.path(".config/credentials.toml");
    assert!(!file.exists(), "a refused token is not kept");
    let out = login(&admin);
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // With the kept token, --db URL is enough.
    let mut cmd = env.std_cmd();
    cmd.env("RUNNER_DB", &server.url).env_remove("RUNNER_TOKEN");
    let who = ok(cmd, &["whoami"]);
    assert!(who.contains("api:admin") && who.contains("admin"), "{who}");
    let mut cmd = env.std_cmd();
    cmd.env_remove("RUNNER_DB");
    ok(cmd, &["logout", "--profile", "team"]);
    let mut cmd = env.std_cmd();
    cmd.env("RUNNER_DB", &server.url).env_remove("RUNNER_TOKEN");
    fails(cmd, &["whoami"], 3);
    assert!(Path::new(&file).exists());
}

#[test]
fn production_figures_and_a_canary_work_through_the_server() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("client")).unwrap();
    let admin = token(&env, "admin", "admin");
    let ci = token(&env, "ci", "promote");
    let server = serve(&env, "127.0.0.1:0");
    let url = server.url.clone();
    ok(
        client(&env, &url, &ci),
        &[
            "prompt",
            "create",
            "greet",
            "--template",
            "Hi {{name}}",
            "--tag",
            "production",
        ],
    );
    ok(
        client(&env, &url, &ci),
        &[
            "prompt",
            "update",
            "greet",
            "--template",
            "Hello {{name}}",
            "--tag",
            "staging",
        ],
    );
    // Production figures read the server's spans: none yet, said so.
    let figures: Value = serde_json::from_str(&ok(
        client(&env, &url, &ci),
        &["production", "greet", "--json"],
    ))
    .unwrap();
    assert_eq!(figures["versions"], json!([]), "{figures}");
    assert_eq!(figures["unlinked_spans"], 0);
    let moves: Vec<&str> = figures["tag_moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["actor"].as_str().unwrap())
        .collect();
    assert_eq!(moves, ["api:ci (tester)", "api:ci (tester)"], "{figures}");
    // A canary started through the server records the token's name; the server serves it.
    ok(
        client(&env, &url, &ci),
        &[
            "canary",
            "start",
            "greet",
            "--tag",
            "production",
            "--candidate",
            "staging",
        ],
    );
    let status: Value = serde_json::from_str(&ok(
        client(&env, &url, &ci),
        &["canary", "status", "greet", "--json"],
    ))
    .unwrap();
    let rollout = if status.is_array() {
        status[0].clone()
    } else {
        status.clone()
    };
    assert!(rollout.to_string().contains("api:ci (tester)"), "{rollout}");
    let canary: Value = serde_json::from_str(&ok(
        client(&env, &url, &ci),
        &["prompt", "show", "greet", "--tag", "canary", "--json"],
    ))
    .unwrap();
    assert_eq!(canary["seq"], 2);
    ok(client(&env, &url, &admin), &["canary", "stop", "greet"]);
    let (code, _, _) = run(
        client(&env, &url, &ci),
        &["prompt", "show", "greet", "--tag", "canary", "--json"],
    );
    assert_eq!(
        code, 2,
        "the canary tag is withdrawn when the rollout stops"
    );
}
