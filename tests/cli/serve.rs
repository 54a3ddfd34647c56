//! `runner serve` as a real process on a free loopback port per test, driven over HTTP.

use super::Env;

mod canary;
mod datasets;
mod experiments;
mod traces;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const WRITER: &str = "ci-0123456789abcdef0123456789abcdef";
const READER: &str = "ro-fedcba9876543210fedcba9876543210";

/// A running `runner serve`, killed when dropped.
struct Server {
    child: Child,
    /// Reads the server's stderr as it comes, so a full pipe never stalls the server; its text
    /// when the server stops.
    stderr: Option<std::thread::JoinHandle<String>>,
    base: String,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    /// The body as sent (a protobuf answer is not text).
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

impl Server {
    /// Starts `runner serve --bind 127.0.0.1:0 EXTRA…`, reads the address from the first line of
    /// stdout, then waits (bounded) for /healthz.
    fn start(env: &Env, extra: &[&str]) -> Server {
        let mut child = env
            .std_cmd()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start runner serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .expect("read the address line");
        let Some(at) = first.find("http://") else {
            let _ = child.kill();
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .ok();
            panic!("no address on the first line {first:?}; stderr: {stderr}");
        };
        let base = first[at..].split_whitespace().next().unwrap().to_string();
        let server = Server {
            stderr: child.stderr.take().map(|mut stderr| {
                std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = stderr.read_to_string(&mut text);
                    text
                })
            }),
            child,
            base,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: {
                runner::client::install_tls();
                reqwest::Client::new()
            },
        };
        for _ in 0..200 {
            if server
                .request("GET", "/healthz", &[], None)
                .is_ok_and(|r| r.status == 200)
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("runner serve at {} never answered /healthz", server.base);
    }

    /// Sends a request; a body goes as `application/json` unless `headers` name a content type.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> reqwest::Result<Reply> {
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        let mut all = headers.to_vec();
        if body.is_some() && !typed {
            all.push(("content-type", "application/json"));
        }
        self.send(method, path, &all, body)
    }

    /// Sends exactly these headers (and whatever the HTTP client adds: Host, Content-Length).
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> reqwest::Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        self.runtime.block_on(async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.bytes().await?.to_vec();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            Ok(Reply {
                status,
                headers,
                text,
                bytes,
            })
        })
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        self.request(
            method,
            path,
            headers,
            body.map(|b| serde_json::to_vec(b).unwrap()),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], None)
    }

    /// A GET that follows a write by another program (the CLI on the same store). On SQLite the
    /// server reads the file on every lookup, so the first answer must already be `settled`.
    /// On PostgreSQL the server keeps tag answers until the database's notification of the
    /// commit reaches it, normally within milliseconds: the GET is repeated until `settled`,
    /// for at most 10 s.
    fn get_after_write(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        settled: impl Fn(&Reply) -> bool,
    ) -> Reply {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self.call("GET", path, headers, None);
            if settled(&reply) || !crate::POSTGRES || std::time::Instant::now() > deadline {
                return reply;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, &[], Some(body))
    }

    /// A raw connection to the server; every read on it gives up after `read_timeout`.
    fn connect(&self, read_timeout: Duration) -> TcpStream {
        let stream = TcpStream::connect(self.base.trim_start_matches("http://")).expect("connect");
        stream.set_read_timeout(Some(read_timeout)).unwrap();
        stream
    }

    /// Stops the server and returns what it wrote on stderr.
    /// Stops the server as an operator would (SIGTERM, so it flushes its log), killing it if it
    /// is still there after ten seconds.
    fn stop(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stderr
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chat_body(name: &str, user: &str) -> Value {
    json!({
        "prompt": {"name": name, "description": "Greets customers", "metadata": {"owner": "support"}},
        "version": {
            "description": "first cut",
            "model_provider": "OPENAI",
            "model_name": "gpt-4o-mini",
            "template": {"type": "chat", "messages": [
                {"role": "system", "content": "You answer for {{company}}."},
                {"role": "user", "content": user}
            ]},
            "template_type": "CHAT",
            "template_format": "MUSTACHE",
            "invocation_parameters": {"type": "openai", "openai": {"temperature": 0.2}}
        }
    })
}

fn tokens(env: &Env) -> Vec<String> {
    env.write("writers.txt", &format!("# deployers\nci:{WRITER}\n"));
    env.write("readers.txt", &format!("{READER}\n"));
    vec![
        "--token-file".into(),
        env.path("writers.txt").display().to_string(),
        "--read-token-file".into(),
        env.path("readers.txt").display().to_string(),
    ]
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn post_creates_then_appends_and_every_read_route_serves_it() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let first = server.post("/v1/prompts", &chat_body("greet", "Hi {{name}}"));
    assert_eq!(first.status, 200, "{}", first.text);
    let first = first.json()["data"].clone();
    assert_eq!(first["sequence_number"], 1);
    assert_eq!(first["prompt_name"], "greet");
    assert_eq!(first["description"], "first cut");
    assert_eq!(first["template"]["messages"][1]["content"], "Hi {{name}}");
    let mut second_body = chat_body("greet", "Hello {{name}}");
    second_body["prompt"] = json!({"name": "greet"});
    second_body["version"]["description"] = json!("friendlier");
    let second = server.post("/v1/prompts", &second_body).json()["data"].clone();
    assert_eq!(second["sequence_number"], 2);

    let latest = server.get("/v1/prompts/greet/latest");
    assert_eq!(latest.status, 200);
    assert_eq!(latest.json()["data"]["id"], second["id"]);
    let by_id = server.get(&format!(
        "/v1/prompt_versions/{}",
        first["id"].as_str().unwrap()
    ));
    assert_eq!(by_id.json()["data"], first);

    // The CLI sees what the API wrote: same store, numbers, messages, carried-over description.
    let shown = env.json(&["prompt", "show", "greet", "--version", "2", "--json"]);
    assert_eq!(shown["message"], "friendlier");
    assert_eq!(shown["description"], "Greets customers");
    // The prompt's metadata is the prompt's (Phoenix keeps it there); the version has its own.
    assert_eq!(shown["metadata"], json!({}));
    assert_eq!(shown["author"], "api");
    let listed = server.get("/v1/prompts").json();
    assert_eq!(listed["data"][0]["metadata"], json!({"owner": "support"}));

    let page = server.get("/v1/prompts/greet/versions?limit=1").json();
    assert_eq!(page["data"][0]["id"], second["id"]);
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let rest = server
        .get(&format!(
            "/v1/prompts/greet/versions?limit=1&cursor={cursor}"
        ))
        .json();
    assert_eq!(rest["data"][0]["id"], first["id"]);
    assert_eq!(rest["next_cursor"], Value::Null);

    let prompts = server.get("/v1/prompts").json();
    assert_eq!(prompts["data"][0]["name"], "greet");
    assert_eq!(prompts["data"][0]["id"], "greet");
    assert_eq!(prompts["data"][0]["description"], "Greets customers");
    assert_eq!(prompts["data"][0]["version_count"], 2);
}

#[test]
fn prompts_list_pages_newest_first_with_a_cursor() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    for name in ["c", "a", "b"] {
        assert_eq!(
            server.post("/v1/prompts", &chat_body(name, "x")).status,
            200
        );
    }
    let mut names = Vec::new();
    let mut path = "/v1/prompts?limit=2".to_string();
    loop {
        let page = server.get(&path).json();
        for prompt in page["data"].as_array().unwrap() {
            names.push(prompt["name"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/prompts?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        names,
        ["b", "a", "c"],
        "newest first, as Phoenix lists them"
    );
    for bad in ["limit=0", "limit=abc", "limit=1001", "cursor=bad%20name"] {
        let reply = server.get(&format!("/v1/prompts?{bad}"));
        assert_eq!(reply.status, 422, "{bad}: {}", reply.text);
    }
}

#[test]
fn cli_versions_are_served_in_phoenix_shape_with_etags_and_cache_lifetimes() {
    let env = Env::new();
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "Hello {{name}}",
        "--model",
        "gpt-4o",
        "--param",
        "temperature=0.7",
        "--param",
        r#"response_format={"type":"json_schema","json_schema":{"name":"reply"}}"#,
    ]);
    env.ok(&[
        "tag",
        "set",
        "greet",
        "production",
        "--version",
        "1",
        "--force",
    ]);
    let shown = env.json(&["prompt", "show", "greet", "--json"]);
    let hash = shown["content_hash"].as_str().unwrap().to_string();
    let server = Server::start(&env, &[]);

    let reply = server.get("/v1/prompts/greet/tags/production");
    assert_eq!(reply.status, 200, "{}", reply.text);
    let data = reply.json()["data"].clone();
    assert_eq!(data["template_type"], "CHAT");
    assert_eq!(
        data["template"],
        json!({"type": "chat", "messages": [{"role": "user", "content": "Hello {{name}}"}]})
    );
    assert_eq!(data["model_name"], "gpt-4o");
    assert_eq!(data["model_provider"], "OPENAI");
    assert_eq!(
        data["invocation_parameters"],
        json!({"type": "openai", "openai": {"temperature": 0.7}})
    );
    assert_eq!(
        data["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "reply"}})
    );
    assert_eq!(data["sequence_number"], 1);
    assert_eq!(data["created_at"], shown["created_at"]);
    assert_eq!(data["content_hash"], hash.as_str());
    let etag = body_etag(&reply.text);
    assert_eq!(reply.header("etag"), etag);
    assert_eq!(reply.header("cache-control"), "max-age=5");

    for (path, cache) in [
        ("/v1/prompts/greet/tags/production".to_string(), "max-age=5"),
        ("/v1/prompts/greet/latest".to_string(), "max-age=5"),
        (
            format!("/v1/prompt_versions/{}", shown["id"].as_str().unwrap()),
            "max-age=31536000, immutable",
        ),
    ] {
        let fresh = server.call("GET", &path, &[("if-none-match", &etag)], None);
        assert_eq!(fresh.status, 304, "{path}");
        assert!(fresh.text.is_empty());
        assert_eq!(fresh.header("etag"), etag);
        assert_eq!(fresh.header("cache-control"), cache);
        let weak = format!("W/{etag}");
        let revalidated = server.call("GET", &path, &[("if-none-match", &weak)], None);
        assert_eq!(
            revalidated.status, 304,
            "{path}: If-None-Match compares weakly"
        );
        let stale = server.call("GET", &path, &[("if-none-match", "W/\"0000\"")], None);
        assert_eq!(stale.status, 200, "{path}");
    }

    // A new version behind the tag changes the validator.
    env.ok(&["prompt", "update", "greet", "--template", "Hi {{name}}"]);
    env.ok(&[
        "tag",
        "set",
        "greet",
        "production",
        "--version",
        "2",
        "--force",
    ]);
    let moved = server.get_after_write(
        "/v1/prompts/greet/tags/production",
        &[("if-none-match", &etag)],
        |reply| reply.status == 200,
    );
    assert_eq!(moved.status, 200);
    assert_eq!(moved.json()["data"]["sequence_number"], 2);
    assert_ne!(moved.header("etag"), etag);
}

#[test]
fn the_etag_changes_when_a_tag_moves_to_a_version_with_the_same_content() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "Hello {{name}}"]);
    // The same template, model and parameters again: same content hash, new id and number.
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--allow-same",
        "-m",
        "same words, new version",
    ]);
    let versions = env.json(&["prompt", "versions", "greet", "--json"]);
    let shown = |n: &str| env.json(&["prompt", "show", "greet", "--version", n, "--json"]);
    let (v1, v2) = (shown("1"), shown("2"));
    assert_eq!(v1["content_hash"], v2["content_hash"], "{versions}");
    env.ok(&["tag", "set", "greet", "production", "--version", "1"]);
    let server = Server::start(&env, &[]);

    let path = "/v1/prompts/greet/tags/production";
    let before = server.get(path);
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(before.json()["data"]["sequence_number"], 1);
    let etag = before.header("etag").to_string();
    assert_eq!(
        server
            .call("GET", path, &[("if-none-match", &etag)], None)
            .status,
        304
    );

    env.ok(&[
        "tag",
        "set",
        "greet",
        "production",
        "--version",
        "2",
        "--force",
    ]);
    let after = server.get_after_write(path, &[("if-none-match", &etag)], |reply| {
        reply.status == 200
    });
    assert_eq!(after.status, 200, "a stale copy was confirmed as fresh");
    assert_eq!(after.json()["data"]["sequence_number"], 2);
    assert_eq!(after.json()["data"]["id"], v2["id"]);
    assert_ne!(after.header("etag"), etag);
    // The validator is the body's own digest, so equal bodies (and only those) share one.
    assert_eq!(after.header("etag"), body_etag(&after.text));
    let by_id = |v: &Value| {
        server.get(&format!(
            "/v1/prompt_versions/{}",
            v["id"].as_str().unwrap()
        ))
    };
    assert_eq!(by_id(&v1).header("etag"), etag);
    assert_eq!(by_id(&v2).header("etag"), after.header("etag"));
}

#[test]
fn a_version_whose_prompt_another_server_archived_is_not_served_by_id() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "v1 {{name}}"]);
    let id = env.json(&["prompt", "show", "greet", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Two servers on one store, as behind a load balancer: `a` has served the version by id
    // (and keeps its body), `b` archives the prompt.
    let a = Server::start(&env, &[]);
    let b = Server::start(&env, &[]);
    let path = format!("/v1/prompt_versions/{id}");
    for _ in 0..2 {
        let served = a.get(&path);
        assert_eq!(served.status, 200, "{}", served.text);
        assert_eq!(served.json()["data"]["id"], id.as_str());
    }
    let archived = b.call("DELETE", "/v1/prompts/greet", &[], None);
    assert_eq!(archived.status, 204, "{}", archived.text);
    let gone = a.get_after_write(&path, &[], |r| r.status == 404);
    assert_eq!(
        gone.status, 404,
        "a version of an archived prompt was still served by id: {}",
        gone.text
    );
    assert_eq!(a.get("/v1/prompts/greet/latest").status, 404);
    // A version of a live prompt is still served by id from both.
    env.ok(&["prompt", "create", "other", "--template", "o {{name}}"]);
    let other = env.json(&["prompt", "show", "other", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    for server in [&a, &b] {
        let served = server.get(&format!("/v1/prompt_versions/{other}"));
        assert_eq!(served.status, 200, "{}", served.text);
    }
}

#[test]
fn tag_lookups_follow_every_move_and_on_postgres_are_answered_from_memory() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "v1 {{name}}"]);
    for n in 2..=3 {
        let template = format!("v{n} {{{{name}}}}");
        env.ok(&["prompt", "update", "greet", "--template", &template]);
    }
    env.ok(&["tag", "set", "greet", "staging", "--version", "1"]);
    let server = Server::start(&env, &[]);
    let tag = "/v1/prompts/greet/tags/staging";
    let latest = "/v1/prompts/greet/latest";
    let seq = |reply: &Reply| {
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["data"]["sequence_number"].as_i64().unwrap()
    };
    assert_eq!(seq(&server.get(tag)), 1);
    assert_eq!(seq(&server.get(latest)), 3);

    // Moved by another program (the CLI, straight to the store).
    env.ok(&["tag", "set", "greet", "staging", "--version", "2"]);
    assert_eq!(seq(&server.get_after_write(tag, &[], |r| seq(r) == 2)), 2);
    env.ok(&["prompt", "update", "greet", "--template", "v4 {{name}}"]);
    assert_eq!(
        seq(&server.get_after_write(latest, &[], |r| seq(r) == 4)),
        4
    );

    // Moved through this server: the very next lookup serves it, on either backend.
    let v3 = env.json(&["prompt", "show", "greet", "--version", "3", "--json"]);
    let moved = server.post(
        &format!("/v1/prompt_versions/{}/tags", v3["id"].as_str().unwrap()),
        &json!({"name": "staging"}),
    );
    assert_eq!(moved.status, 204, "{}", moved.text);
    assert_eq!(seq(&server.get(tag)), 3);

    if crate::POSTGRES {
        // Another connection takes every tag row and holds it: a lookup that read the tags
        // table would wait for it. The server answers from what it keeps.
        let url = env.db.to_str().unwrap().to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let locker = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the store");
            tokio::spawn(connection);
            client
                .batch_execute("BEGIN; LOCK TABLE tags IN ACCESS EXCLUSIVE MODE")
                .await
                .expect("lock the tags");
            client
        });
        let base = server.base.clone();
        let (answered, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let reply = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    reqwest::get(format!("{base}/v1/prompts/greet/tags/staging"))
                        .await?
                        .json::<Value>()
                        .await
                });
            let _ = answered.send(reply.map(|v| v["data"]["sequence_number"].clone()));
        });
        let seen = answer.recv_timeout(Duration::from_secs(5));
        runtime.block_on(client_rollback(&locker));
        let seen = seen.expect("the lookup waited on the locked tags table");
        assert_eq!(seen.expect("the lookup's answer"), 3);
    }
}

async fn client_rollback(client: &tokio_postgres::Client) {
    client.batch_execute("ROLLBACK").await.expect("rollback");
}

/// The ETag `runner serve` sends for a body: its sha256, quoted.
fn body_etag(body: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body.as_bytes());
    format!("\"{}\"", runner::model::hex(&digest))
}

#[test]
fn tag_changes_over_http_land_in_the_history_with_the_caller() {
    let env = Env::new();
    let args = tokens(&env);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&env, &args);
    let auth = bearer(WRITER);
    let writer = [("authorization", auth.as_str())];
    let created = server.call(
        "POST",
        "/v1/prompts",
        &writer,
        Some(&chat_body("greet", "x")),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json()["data"]["id"].as_str().unwrap().to_string();

    let tagged = server.call(
        "POST",
        &format!("/v1/prompt_versions/{id}/tags"),
        &[("authorization", &auth), ("x-runner-actor", "alice")],
        Some(&json!({"name": "staging", "description": "ready for review"})),
    );
    assert_eq!(tagged.status, 204, "{}", tagged.text);
    // Setting it where it already is changes nothing and records nothing.
    let again = server.call(
        "POST",
        &format!("/v1/prompt_versions/{id}/tags"),
        &writer,
        Some(&json!({"name": "staging"})),
    );
    assert_eq!(again.status, 204);

    let tags = server
        .call(
            "GET",
            &format!("/v1/prompt_versions/{id}/tags"),
            &writer,
            None,
        )
        .json();
    assert_eq!(tags["data"][0]["name"], "staging");
    assert_eq!(tags["data"][0]["description"], "ready for review");
    assert_eq!(tags["next_cursor"], Value::Null);
    let all = server
        .call("GET", "/v1/prompts/greet/tags", &writer, None)
        .json();
    assert_eq!(all["data"][0]["version_id"], id.as_str());
    assert_eq!(all["data"][0]["updated_by"], "api:ci (alice)");

    let history = server
        .call(
            "GET",
            "/v1/prompts/greet/tags/staging/history",
            &writer,
            None,
        )
        .json();
    let events = history["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{history}");
    assert_eq!(events[0]["action"], "set");
    assert_eq!(events[0]["actor"], "api:ci (alice)");
    assert_eq!(events[0]["message"], "ready for review");
    let cli = env.json(&["tag", "history", "greet", "staging", "--json"]);
    assert_eq!(cli[0]["actor"], "api:ci (alice)");
    assert_eq!(
        env.json(&["prompt", "show", "greet", "--json"])["author"],
        "api:ci"
    );

    let deleted = server.call(
        "DELETE",
        &format!("/v1/prompt_versions/{id}/tags/staging"),
        &writer,
        None,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let history = server
        .call(
            "GET",
            "/v1/prompts/greet/tags/staging/history",
            &writer,
            None,
        )
        .json();
    assert_eq!(history["data"][1]["action"], "delete");
    assert_eq!(
        server
            .call("GET", "/v1/prompts/greet/tags/staging", &writer, None)
            .status,
        404
    );
}

#[test]
fn protected_tags_move_or_go_over_http_only_when_forced() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let v1 = server
        .post("/v1/prompts", &chat_body("greet", "one"))
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v2 = server
        .post("/v1/prompts", &chat_body("greet", "two"))
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let production = json!({"name": "production"});
    // Creating a protected tag displaces nothing: allowed without force, as in the CLI.
    let created = server.post(&format!("/v1/prompt_versions/{v2}/tags"), &production);
    assert_eq!(created.status, 204, "{}", created.text);
    let before = super::dump(&env.db);
    let refused = server.post(&format!("/v1/prompt_versions/{v1}/tags"), &production);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("tag 'production' is protected: moving it needs a deploy token, or force"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("force=true"), "{}", refused.text);
    assert_eq!(
        super::dump(&env.db),
        before,
        "a refused change wrote something"
    );

    let forced = server.post(
        &format!("/v1/prompt_versions/{v1}/tags?force=true"),
        &production,
    );
    assert_eq!(forced.status, 204, "{}", forced.text);
    let moved = server.call(
        "POST",
        &format!("/v1/prompt_versions/{v2}/tags"),
        &[("x-runner-force", "true")],
        Some(&production),
    );
    assert_eq!(moved.status, 204, "{}", moved.text);
    let served = server.get("/v1/prompts/greet/tags/production").json();
    assert_eq!(served["data"]["id"], v2.as_str());

    // Deleting through a version the tag does not point at is refused.
    let elsewhere = server.call(
        "DELETE",
        &format!("/v1/prompt_versions/{v1}/tags/production?force=true"),
        &[],
        None,
    );
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.text);
    let unforced = server.call(
        "DELETE",
        &format!("/v1/prompt_versions/{v2}/tags/production"),
        &[],
        None,
    );
    assert_eq!(unforced.status, 403, "{}", unforced.text);
    assert!(
        unforced.text.contains("deleting it needs a deploy token"),
        "{}",
        unforced.text
    );
    let deleted = server.call(
        "DELETE",
        &format!("/v1/prompt_versions/{v2}/tags/production?force=1"),
        &[],
        None,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.text);

    let history = env.json(&["tag", "history", "greet", "production", "--json"]);
    let summary: Vec<(String, bool, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["forced"].as_bool().unwrap(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("set".to_string(), false, "api".to_string()),
            ("move".to_string(), true, "api".to_string()),
            ("move".to_string(), true, "api".to_string()),
            ("delete".to_string(), true, "api".to_string()),
        ]
    );
    let bad = server.post(
        &format!("/v1/prompt_versions/{v1}/tags?force=maybe"),
        &production,
    );
    assert_eq!(bad.status, 422);
}

pub(super) const DEPLOYER: &str = "dp-00112233445566778899aabbccddeeff";

#[test]
fn deploy_tokens_move_protected_tags_and_other_tokens_get_403() {
    let env = Env::new();
    // One file holds the write token and the deploy token (`deploy:NAME:TOKEN`).
    env.write(
        "writers.txt",
        &format!("ci:{WRITER}\n# may move production\ndeploy:release:{DEPLOYER}\n"),
    );
    env.write("readers.txt", &format!("{READER}\n"));
    let writers = env.path("writers.txt").display().to_string();
    let readers = env.path("readers.txt").display().to_string();
    let server = Server::start(
        &env,
        &["--token-file", &writers, "--read-token-file", &readers],
    );
    let (writer, deployer, reader) = (bearer(WRITER), bearer(DEPLOYER), bearer(READER));
    let as_writer = [("authorization", writer.as_str())];
    let as_deployer = [("authorization", deployer.as_str())];
    let as_reader = [("authorization", reader.as_str())];
    let create = |user: &str| {
        let reply = server.call(
            "POST",
            "/v1/prompts",
            &as_writer,
            Some(&chat_body("greet", user)),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["data"]["id"].as_str().unwrap().to_string()
    };
    let (v1, v2, v3) = (create("one"), create("two"), create("three"));
    let production = json!({"name": "production", "description": "ship it"});
    let tag = |version: &str, headers: &[(&str, &str)]| {
        server.call(
            "POST",
            &format!("/v1/prompt_versions/{version}/tags"),
            headers,
            Some(&production),
        )
    };

    // Creating a protected tag that does not exist yet displaces nothing: any write token.
    let created = tag(&v1, &as_writer);
    assert_eq!(created.status, 204, "{}", created.text);

    // A write token may not move it: 403, naming the rule; nothing is written.
    let before = super::dump(&env.db);
    let refused = tag(&v2, &as_writer);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused
            .text
            .contains("tag 'production' is protected: moving it needs a deploy token, or force"),
        "{}",
        refused.text
    );
    // The same through the route that appends a version with tags.
    let appended = server.call(
        "POST",
        "/v1/prompts/greet/versions",
        &as_writer,
        Some(&json!({"version": chat_body("greet", "four")["version"], "tags": [{"name": "production"}]})),
    );
    assert_eq!(appended.status, 403, "{}", appended.text);
    assert!(
        appended.text.contains("tag 'production' is protected"),
        "{}",
        appended.text
    );
    // A read token stays refused before any tag rule; no token is 401.
    let read = tag(&v2, &as_reader);
    assert_eq!(read.status, 403, "{}", read.text);
    assert!(read.text.contains("read-only"), "{}", read.text);
    assert_eq!(tag(&v2, &[]).status, 401);
    assert_eq!(
        super::dump(&env.db),
        before,
        "a refused change wrote something"
    );

    // The deploy token moves it without force, recorded under its name.
    let moved = server.call(
        "POST",
        &format!("/v1/prompt_versions/{v2}/tags"),
        &[("authorization", &deployer), ("x-runner-actor", "alice")],
        Some(&production),
    );
    assert_eq!(moved.status, 204, "{}", moved.text);
    let served = server
        .call("GET", "/v1/prompts/greet/tags/production", &as_reader, None)
        .json();
    assert_eq!(served["data"]["id"], v2.as_str());
    let again = tag(&v3, &as_deployer);
    assert_eq!(again.status, 204, "{}", again.text);
    // A write token with force still may, recorded as forced.
    let forced = server.call(
        "POST",
        &format!("/v1/prompt_versions/{v1}/tags?force=true"),
        &as_writer,
        Some(&production),
    );
    assert_eq!(forced.status, 204, "{}", forced.text);
    // Deleting it: 403 for the write token, allowed for the deploy token.
    let delete = |headers: &[(&str, &str)]| {
        server.call(
            "DELETE",
            &format!("/v1/prompt_versions/{v1}/tags/production"),
            headers,
            None,
        )
    };
    let unforced = delete(&as_writer);
    assert_eq!(unforced.status, 403, "{}", unforced.text);
    assert!(
        unforced.text.contains("deleting it needs a deploy token"),
        "{}",
        unforced.text
    );
    assert_eq!(delete(&as_deployer).status, 204);

    let history = server
        .call(
            "GET",
            "/v1/prompts/greet/tags/production/history",
            &as_reader,
            None,
        )
        .json();
    let summary: Vec<(String, String, bool, bool)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
                e["forced"].as_bool().unwrap(),
                e["deploy"].as_bool().unwrap(),
            )
        })
        .collect();
    let row = |action: &str, actor: &str, forced, deploy| {
        (action.to_string(), actor.to_string(), forced, deploy)
    };
    assert_eq!(
        summary,
        [
            row("set", "api:ci", false, false),
            row("move", "api:release (alice)", false, true),
            row("move", "api:release", false, true),
            row("move", "api:ci", true, false),
            row("delete", "api:release", false, true),
        ]
    );
    // The CLI reads the same history back, saying which moves a deploy token made.
    let cli = env.json(&["tag", "history", "greet", "production", "--json"]);
    assert_eq!(cli[1]["actor"], "api:release (alice)");
    assert_eq!(cli[1]["deploy"], true);
    let table = env.ok(&["tag", "history", "greet", "production"]);
    assert!(table.contains("move (deploy)"), "{table}");
    assert!(table.contains("move (forced)"), "{table}");
    // An export carries the deploy moves, and its import replays them under the tag policy.
    env.ok(&["export", "out"]);
    let fresh = env.path("fresh.db");
    let fresh = fresh.to_str().unwrap();
    env.ok(&["--db", fresh, "import", "out"]);
    let imported = env.json(&[
        "--db",
        fresh,
        "tag",
        "history",
        "greet",
        "production",
        "--json",
    ]);
    assert_eq!(imported, cli);

    let stderr = server.stop();
    assert!(
        stderr.contains("1 deploy, 1 read-write, 1 read-only"),
        "{stderr}"
    );
    assert!(!stderr.contains(DEPLOYER), "stderr shows a token: {stderr}");
}

#[test]
fn a_deploy_token_in_a_read_only_file_is_refused_at_start() {
    let env = Env::new();
    env.write("writers.txt", &format!("{WRITER}\n"));
    env.write("readers.txt", &format!("deploy:release:{DEPLOYER}\n"));
    let writers = env.path("writers.txt").display().to_string();
    let readers = env.path("readers.txt").display().to_string();
    let stderr = env.fails(
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--token-file",
            &writers,
            "--read-token-file",
            &readers,
        ],
        2,
    );
    assert!(
        stderr.contains("line 1: a deploy token (deploy:NAME:TOKEN) may move protected tags"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(!stderr.contains(DEPLOYER), "{stderr}");
}

#[test]
fn tokens_are_required_checked_and_never_logged() {
    let env = Env::new();
    let args = tokens(&env);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&env, &args);
    let body = chat_body("greet", "x");

    let missing = server.get("/v1/prompts");
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        "Bearer realm=\"runner\""
    );
    let wrong_token = "wrong-token-0123456789-SECRET";
    let wrong = server.call(
        "GET",
        "/v1/prompts",
        &[("authorization", &bearer(wrong_token))],
        None,
    );
    assert_eq!(wrong.status, 401);
    // A prefix of a valid token is not a valid token.
    let prefix = server.call(
        "GET",
        "/v1/prompts",
        &[("authorization", &bearer(&WRITER[..WRITER.len() - 1]))],
        None,
    );
    assert_eq!(prefix.status, 401);
    let basic = server.call("GET", "/v1/prompts", &[("authorization", WRITER)], None);
    assert_eq!(basic.status, 401);
    assert_eq!(server.post("/v1/prompts", &body).status, 401);

    let reader = bearer(READER);
    let read = server.call("GET", "/v1/prompts", &[("authorization", &reader)], None);
    assert_eq!(read.status, 200);
    let write = server.call(
        "POST",
        "/v1/prompts",
        &[("authorization", &reader)],
        Some(&body),
    );
    assert_eq!(write.status, 403);
    assert!(write.text.contains("read-only"), "{}", write.text);
    let writer = server.call(
        "POST",
        "/v1/prompts",
        &[("authorization", &bearer(WRITER))],
        Some(&body),
    );
    assert_eq!(writer.status, 200, "{}", writer.text);
    // Liveness probes carry no token.
    assert_eq!(server.get("/healthz").status, 200);

    let stderr = server.stop();
    assert!(stderr.contains("401"), "{stderr}");
    for secret in [wrong_token, "SECRET", WRITER, READER] {
        assert!(!stderr.contains(secret), "stderr shows a token: {stderr}");
    }
}

#[test]
fn the_bearer_scheme_is_accepted_in_any_case() {
    let env = Env::new();
    let args = tokens(&env);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&env, &args);
    // RFC 7235: the auth scheme is case-insensitive; one or more spaces separate it.
    for scheme in ["bearer", "BEARER", "BeArEr", "Bearer "] {
        let value = format!("{scheme} {READER}");
        let reply = server.call("GET", "/v1/prompts", &[("authorization", &value)], None);
        assert_eq!(reply.status, 200, "{value:?}: {}", reply.text);
    }
    let lower = format!("bearer {WRITER}");
    let written = server.call(
        "POST",
        "/v1/prompts",
        &[("authorization", &lower)],
        Some(&chat_body("greet", "x")),
    );
    assert_eq!(written.status, 200, "{}", written.text);
    // Another scheme, or the token glued to the scheme, is still no bearer token.
    for value in [
        format!("Basic {WRITER}"),
        format!("Bearer{WRITER}"),
        format!("Bearerx {WRITER}"),
        "Bearer".to_string(),
        "bearer ".to_string(),
    ] {
        let reply = server.call("GET", "/v1/prompts", &[("authorization", &value)], None);
        assert_eq!(reply.status, 401, "{value:?}");
    }
}

#[test]
fn cross_site_writes_and_rebound_hosts_are_refused() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let id = |reply: Reply| reply.json()["data"]["id"].as_str().unwrap().to_string();
    let v1 = id(server.post("/v1/prompts", &chat_body("greet", "one")));
    let v2 = id(server.post("/v1/prompts", &chat_body("greet", "two")));
    let tag = |v: &str| format!("/v1/prompt_versions/{v}/tags?force=true");
    let production = br#"{"name": "production"}"#.to_vec();
    assert_eq!(
        server
            .request("POST", &tag(&v2), &[], Some(production.clone()))
            .unwrap()
            .status,
        204
    );
    let before = super::dump(&env.db);

    // What any web page can send without a CORS preflight: text/plain, a form, or no type.
    for content_type in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| ("content-type", t))
            .into_iter()
            .collect();
        let reply = server
            .send("POST", &tag(&v1), &headers, Some(production.clone()))
            .unwrap();
        assert_eq!(reply.status, 422, "{content_type:?}: {}", reply.text);
        assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
        assert!(reply.text.contains("application/json"), "{}", reply.text);
    }
    // JSON from another origin is refused too, and so is a rebound name, for reads as well.
    let evil = [("origin", "http://evil.example")];
    let cross = server
        .request("POST", &tag(&v1), &evil, Some(production.clone()))
        .unwrap();
    assert_eq!(cross.status, 403, "{}", cross.text);
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "10.0.0.1:6006",
    ] {
        for (method, path) in [("GET", "/v1/prompts/greet/latest"), ("GET", "/healthz")] {
            let reply = server.send(method, path, &[("host", host)], None).unwrap();
            assert_eq!(reply.status, 403, "{host} {path}: {}", reply.text);
            assert!(
                reply.text.contains(&format!("Host {host} is not served"))
                    && reply.text.contains("loopback names only"),
                "{}",
                reply.text
            );
        }
        let write = server
            .request(
                "POST",
                &tag(&v1),
                &[("host", host)],
                Some(production.clone()),
            )
            .unwrap();
        assert_eq!(write.status, 403, "{host}");
    }
    for origin in [
        "http://evil.example",
        &format!("http://localhost:{port}"),
        "http://127.0.0.1:1",
        "null",
    ] {
        let reply = server
            .send("GET", "/v1/prompts", &[("origin", origin)], None)
            .unwrap();
        assert_eq!(reply.status, 403, "{origin}: {}", reply.text);
        assert!(reply.text.contains("cross-origin"), "{}", reply.text);
    }
    assert_eq!(
        super::dump(&env.db),
        before,
        "a refused request wrote something"
    );

    // What the server's own clients send is served.
    let own = format!("http://127.0.0.1:{port}");
    assert_eq!(
        server
            .send("GET", "/v1/prompts", &[("origin", &own)], None)
            .unwrap()
            .status,
        200
    );
    for host in [
        format!("localhost:{port}"),
        "LOCALHOST".into(),
        format!("[::1]:{port}"),
        "127.0.0.1".into(),
    ] {
        let reply = server
            .send("GET", "/v1/prompts", &[("host", &host)], None)
            .unwrap();
        assert_eq!(reply.status, 200, "{host}: {}", reply.text);
    }
    let moved = server
        .request(
            "POST",
            &tag(&v1),
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("origin", &own),
            ],
            Some(production.clone()),
        )
        .unwrap();
    assert_eq!(moved.status, 204, "{}", moved.text);
    assert_eq!(
        server.get("/v1/prompts/greet/tags/production").json()["data"]["id"],
        v1.as_str()
    );
    // A DELETE without a body needs no content type.
    let deleted = server
        .send(
            "DELETE",
            &format!("/v1/prompt_versions/{v1}/tags/production?force=true"),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(deleted.status, 204, "{}", deleted.text);
}

#[test]
fn with_tokens_any_host_is_served_but_origins_must_match() {
    let env = Env::new();
    let args = tokens(&env);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&env, &args);
    let auth = bearer(READER);
    let get = |headers: &[(&str, &str)]| {
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        server.send("GET", "/v1/prompts", &all, None).unwrap()
    };
    // Behind a token the server may be reached by any name (a proxy, a service name).
    assert_eq!(get(&[("host", "prompts.example")]).status, 200);
    let own = get(&[
        ("host", "prompts.example:8080"),
        ("origin", "http://prompts.example:8080"),
    ]);
    assert_eq!(own.status, 200, "{}", own.text);
    let proxied = get(&[
        ("host", "prompts.example"),
        ("origin", "https://prompts.example"),
    ]);
    assert_eq!(proxied.status, 200, "{}", proxied.text);
    for origin in [
        "https://evil.example",
        "http://prompts.example:9090",
        "null",
    ] {
        let reply = get(&[("host", "prompts.example:8080"), ("origin", origin)]);
        assert_eq!(reply.status, 403, "{origin}: {}", reply.text);
    }
    // The media type is checked after the token: no token is still 401.
    let anonymous = server
        .send(
            "POST",
            "/v1/prompts",
            &[("content-type", "text/plain")],
            Some(b"{}".to_vec()),
        )
        .unwrap();
    assert_eq!(anonymous.status, 401);
    let writer = bearer(WRITER);
    let typed = server
        .send(
            "POST",
            "/v1/prompts",
            &[("authorization", &writer), ("content-type", "text/plain")],
            Some(serde_json::to_vec(&chat_body("greet", "x")).unwrap()),
        )
        .unwrap();
    assert_eq!(typed.status, 422, "{}", typed.text);
}

#[test]
fn serving_beyond_loopback_needs_tokens_and_token_files_are_checked() {
    let env = Env::new();
    let stderr = env.fails(&["serve", "--bind", "0.0.0.0:0"], 2);
    assert!(stderr.contains("without authentication"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    env.write("weak.txt", "ci:tiny-secret\n");
    let stderr = env.fails(&["serve", "--token-file", "weak.txt"], 2);
    assert!(
        stderr.contains("weak.txt") && stderr.contains("line 1"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(!stderr.contains("tiny-secret"), "{stderr}");
    let stderr = env.fails(&["serve", "--token-file", "missing.txt"], 2);
    assert!(stderr.contains("missing.txt"), "{stderr}");
    let stderr = env.fails(&["serve", "--bind", "somewhere"], 2);
    assert!(stderr.contains("invalid --bind"), "{stderr}");
}

#[test]
fn bad_bodies_get_422_or_413_and_write_nothing() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    assert_eq!(
        server.post("/v1/prompts", &chat_body("greet", "x")).status,
        200
    );
    let before = super::dump(&env.db);

    let malformed = server
        .request("POST", "/v1/prompts", &[], Some(b"{\"prompt\": ".to_vec()))
        .unwrap();
    assert_eq!(malformed.status, 422);
    assert!(
        malformed.text.starts_with("invalid JSON body"),
        "{}",
        malformed.text
    );
    assert_eq!(
        malformed.header("content-type"),
        "text/plain; charset=utf-8"
    );

    // A key given twice is refused, not read as its last value.
    let twice = serde_json::to_string(&chat_body("greet", "x"))
        .unwrap()
        .replace(
            r#""temperature":0.2"#,
            r#""temperature":0.2,"temperature":1.9"#,
        );
    assert!(twice.contains("1.9"));
    let repeated = server
        .request("POST", "/v1/prompts", &[], Some(twice.into_bytes()))
        .unwrap();
    assert_eq!(repeated.status, 422);
    assert!(
        repeated.text.contains("duplicate key \"temperature\""),
        "{}",
        repeated.text
    );

    let mut bad_template = chat_body("greet", "{{#items}}x{{/items}}");
    bad_template["prompt"]["name"] = json!("greet");
    let mut bad_name = chat_body("greet", "x");
    bad_name["prompt"]["name"] = json!("has space");
    let mut bad_provider = chat_body("greet", "x");
    bad_provider["version"]["model_provider"] = json!("ACME");
    let mut missing = chat_body("greet", "x");
    missing["version"]
        .as_object_mut()
        .unwrap()
        .remove("model_name");
    for (body, expected) in [
        (bad_template, "version.template"),
        (bad_name, "prompt.name"),
        (bad_provider, "version.model_provider"),
        (missing, "model_name"),
    ] {
        let reply = server.post("/v1/prompts", &body);
        assert_eq!(reply.status, 422, "{}", reply.text);
        assert!(reply.text.contains(expected), "{expected}: {}", reply.text);
    }
    let huge = chat_body("greet", &"x".repeat(1024 * 1024 + 1));
    let reply = server.post("/v1/prompts", &huge);
    assert_eq!(reply.status, 413, "{}", reply.text);
    let version = env.json(&["prompt", "show", "greet", "--json"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bad_tag = server.post(
        &format!("/v1/prompt_versions/{version}/tags"),
        &json!({"name": "123"}),
    );
    assert_eq!(bad_tag.status, 422, "{}", bad_tag.text);
    assert_eq!(
        super::dump(&env.db),
        before,
        "a refused request wrote something"
    );
}

#[test]
fn unknown_prompts_tags_versions_and_routes_are_404_in_plain_text() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let id = server.post("/v1/prompts", &chat_body("greet", "x")).json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (path, expected) in [
        ("/v1/prompts/nope/latest", "unknown prompt 'nope'"),
        (
            "/v1/prompts/greet/tags/production",
            "has no tag 'production'",
        ),
        (
            "/v1/prompts/greet/tags/production/history",
            "has no tag 'production'",
        ),
        (
            "/v1/prompt_versions/00000000-0000-0000-0000-000000000000/tags",
            "unknown prompt version '00000000-0000-0000-0000-000000000000'",
        ),
        (
            "/v1/prompt_versions/00000000-0000-0000-0000-000000000000",
            "unknown prompt version '00000000-0000-0000-0000-000000000000'",
        ),
        ("/v1/nothing", "no such route"),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text);
        assert!(reply.text.contains(expected), "{path}: {}", reply.text);
        assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
    }
    let tag_unknown_version = server.post(
        "/v1/prompt_versions/00000000-0000-0000-0000-000000000000/tags",
        &json!({"name": "staging"}),
    );
    assert_eq!(tag_unknown_version.status, 404);
    // As in Phoenix: an unknown prompt has no versions (an empty list), and what is not a
    // version id or a name at all is 422.
    let none = server.get("/v1/prompts/nope/versions");
    assert_eq!((none.status, none.json()["data"].clone()), (200, json!([])));
    for path in [
        "/v1/prompt_versions/0000",
        "/v1/prompt_versions/0000/tags",
        "/v1/prompts/bad%20name/latest",
        "/v1/prompts/greet/tags/bad%20tag",
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 422, "{path}: {}", reply.text);
    }
    let delete_missing = server.call(
        "DELETE",
        &format!("/v1/prompt_versions/{id}/tags/staging"),
        &[],
        None,
    );
    assert_eq!(delete_missing.status, 404);
}

#[test]
fn readers_are_served_while_the_cli_writes_to_the_same_store() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "v1 {{name}}"]);
    env.ok(&[
        "tag",
        "set",
        "greet",
        "production",
        "--version",
        "1",
        "--force",
    ]);
    let server = Server::start(&env, &[]);
    let base = server.base.clone();
    let reader = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            runner::client::install_tls();
            let http = reqwest::Client::new();
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..400 {
                let response = http
                    .get(format!("{base}/v1/prompts/greet/tags/production"))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status().as_u16(), 200);
                let body: Value = response.json().await.unwrap();
                seen.insert(body["data"]["sequence_number"].as_i64().unwrap());
            }
            seen
        })
    });
    for n in 2..=6 {
        env.ok(&[
            "prompt",
            "update",
            "greet",
            "--template",
            &format!("v{n} {{{{name}}}}"),
        ]);
        env.ok(&[
            "tag",
            "set",
            "greet",
            "production",
            "--version",
            &n.to_string(),
            "--force",
        ]);
    }
    let seen = reader.join().expect("the reader thread");
    assert!(seen.iter().all(|seq| (1..=6).contains(seq)), "{seen:?}");
    let now = server
        .get_after_write("/v1/prompts/greet/tags/production", &[], |reply| {
            reply.json()["data"]["sequence_number"] == 6
        })
        .json();
    assert_eq!(now["data"]["sequence_number"], 6);
    assert_eq!(
        now["data"]["template"]["messages"][0]["content"],
        "v6 {{name}}"
    );
}

#[test]
fn a_write_to_a_store_locked_by_another_writer_is_503_with_retry_after() {
    let env = Env::new();
    if super::sqlite_only(&env, "writers queue on row locks; no busy timeout") {
        return;
    }
    let server = Server::start(&env, &[]);
    let created = server.post("/v1/prompts", &chat_body("greet", "x"));
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json()["data"]["id"].as_str().unwrap().to_string();
    let before = super::dump(&env.db);

    // Another process's writer holds the write lock for longer than the store's busy timeout.
    let other = rusqlite::Connection::open(&env.db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Readers do not wait for writers.
    assert_eq!(server.get("/v1/prompts/greet/latest").status, 200);
    let tag = server.post(
        &format!("/v1/prompt_versions/{id}/tags"),
        &json!({"name": "staging"}),
    );
    assert_eq!(tag.status, 503, "{}", tag.text);
    assert!(tag.text.contains("locked"), "{}", tag.text);
    let wait: u64 = tag
        .header("retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        super::dump(&env.db),
        before,
        "a refused write wrote something"
    );

    // Once the lock is released the same request goes through.
    let retried = server.post(
        &format!("/v1/prompt_versions/{id}/tags"),
        &json!({"name": "staging"}),
    );
    assert_eq!(retried.status, 204, "{}", retried.text);
}

/// One HTTP/1.1 request on a raw connection, kept alive.
fn raw_get(stream: &mut TcpStream, path: &str, token: Option<&str>) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
}

/// Reads one response (head and Content-Length body) and returns its status.
fn raw_status(stream: &mut TcpStream) -> u16 {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("read a response"),
            1,
            "closed mid-response"
        );
        data.push(byte[0]);
    }
    let head = String::from_utf8(data).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head[9..12].parse().unwrap()
}

/// Whether the server has closed this connection: end of stream (or a reset) within the
/// stream's read timeout, after whatever it still had to say.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A GET on a new connection of its own, given up after 30 s.
fn fresh_get(server: &Server, path: &str, token: &str) -> u16 {
    runner::client::install_tls();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    server.runtime.block_on(async {
        let response = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        response.status().as_u16()
    })
}

#[test]
fn idle_kept_alive_connections_beyond_the_cap_make_room_for_new_clients() {
    let env = Env::new();
    let args = tokens(&env);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--max-connections", "8", "--idle-timeout", "60"]);
    let server = Server::start(&env, &args);

    // Eight clients, each with a request answered and its connection kept open, idle: with the
    // health check's connection, more than the cap.
    let mut idle: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = server.connect(Duration::from_secs(10));
            raw_get(&mut stream, "/v1/prompts", Some(READER));
            assert_eq!(raw_status(&mut stream), 200);
            stream
        })
        .collect();
    // A new client is answered at once, long before any idle timeout.
    let started = Instant::now();
    let fresh = fresh_get(&server, "/v1/prompts", READER);
    assert_eq!(fresh, 200);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // Only as many idle connections closed as newcomers needed (the ninth and this one); the
    // others are still served.
    let mut open = 0;
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if !closed_by_server(stream) {
            open += 1;
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            raw_get(stream, "/v1/prompts", Some(READER));
            assert_eq!(raw_status(stream), 200);
        }
    }
    assert!(open >= 6, "{open} of 8 idle connections left open");
}

#[test]
fn silent_connections_beyond_the_cap_are_dropped_after_the_header_timeout() {
    let env = Env::new();
    let args = tokens(&env);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--max-connections", "8", "--header-timeout", "1"]);
    let server = Server::start(&env, &args);

    // Ten connections that never send a byte: eight hold every slot, the rest wait.
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = (0..10)
        .map(|_| server.connect(Duration::from_secs(10)))
        .collect();
    // A normal request waits behind them, then is answered once they time out.
    let reply = fresh_get(&server, "/v1/prompts", READER);
    assert_eq!(reply, 200);
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}: the cap held?"
    );
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(closed_by_server(stream), "silent connection {i} still open");
    }
    assert!(opened.elapsed() < Duration::from_secs(30));
}

#[test]
fn slow_headers_slow_bodies_and_idle_connections_are_cut_off() {
    let env = Env::new();
    let server = Server::start(&env, &["--header-timeout", "1", "--idle-timeout", "1"]);

    // Headers dribbled a line every 100 ms never finish: the server hangs up after the header
    // timeout, and answers other clients meanwhile.
    let started = Instant::now();
    let mut slow = server.connect(Duration::from_millis(100));
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut closed = false;
    for line in 0..100 {
        if line == 3 {
            assert_eq!(fresh_get(&server, "/healthz", "no token needed"), 200);
        }
        if slow
            .write_all(format!("X-Slow-{line}: 1\r\n").as_bytes())
            .is_err()
        {
            closed = true;
            break;
        }
        // The read timeout (100 ms) paces the loop.
        if closed_by_server(&mut slow) {
            closed = true;
            break;
        }
    }
    let cut = started.elapsed();
    assert!(
        closed,
        "a client sending headers for 10 s was still connected"
    );
    assert!(cut >= Duration::from_millis(900), "cut off after {cut:?}");

    // A body that stops half-way gets 408 once the same time has passed after its headers.
    let mut stalled = server.connect(Duration::from_secs(10));
    stalled
        .write_all(
            b"POST /v1/prompts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"prompt\":",
        )
        .unwrap();
    let started = Instant::now();
    assert_eq!(raw_status(&mut stalled), 408);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(closed_by_server(&mut stalled));

    // A kept-alive connection without a next request is closed after the idle timeout.
    let mut idle = server.connect(Duration::from_secs(10));
    raw_get(&mut idle, "/healthz", None);
    assert_eq!(raw_status(&mut idle), 200);
    let started = Instant::now();
    assert!(closed_by_server(&mut idle), "idle for 10 s and still open");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The server still answers (on a new connection: the client's pooled one timed out too).
    assert_eq!(fresh_get(&server, "/healthz", "no token needed"), 200);

    let stderr = env.fails(&["serve", "--header-timeout", "0"], 2);
    assert!(stderr.contains("--header-timeout"), "{stderr}");
    let stderr = env.fails(&["serve", "--max-connections", "0"], 2);
    assert!(stderr.contains("--max-connections"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_server_cleanly() {
    let env = Env::new();
    let mut server = Server::start(&env, &[]);
    let pid = i32::try_from(server.child.id()).unwrap();
    // SAFETY: signals the child this test started, by its id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = server.child.wait().expect("wait for runner serve");
    assert_eq!(status.code(), Some(0));
}

/// One response read off a raw connection: its status, head and body, read exactly as framed
/// by Content-Length (every answer of the server has one). Panics naming `what` when the
/// connection ends before the answer is complete.
fn raw_response(stream: &mut TcpStream, what: &str) -> (u16, String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "{what}: the connection ended mid-answer ({other:?}) after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{what}: no Content-Length in {head:?}"));
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .unwrap_or_else(|e| panic!("{what}: the body was cut short ({e})"));
    (head[9..12].parse().unwrap(), head, body)
}

#[test]
fn unread_bodies_do_not_break_the_kept_alive_connection() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    assert_eq!(
        server.post("/v1/prompts", &chat_body("greet", "Hi")).status,
        200
    );
    let mut stream = server.connect(Duration::from_secs(30));
    stream.set_nodelay(true).unwrap();
    // 1,000 requests on one connection: a POST with a body no route reads (an unknown route:
    // 404; a route without POST: 405), alternating with GETs that must still be answered. Half
    // the bodies are sent after their headers in a write of their own, so they often arrive
    // after the server has its answer ready: the case that used to close the connection.
    let mut answered = 0;
    for i in 0..1000usize {
        let body = "x".repeat(1 + (i * 37) % 6000);
        let (method, path, expected) = match i % 4 {
            0 => ("POST", "/v1/no-such-route", 404),
            2 => ("POST", "/v1/prompts/greet/latest", 405),
            _ => ("GET", "/v1/prompts/greet/latest", 200),
        };
        let what = format!("request {i} ({method} {path})");
        let head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        let sent = if method == "GET" {
            stream.write_all(format!("{head}\r\n").as_bytes())
        } else {
            let head = format!(
                "{head}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if i % 8 < 4 {
                stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(body.as_bytes()))
            } else {
                stream.write_all(format!("{head}{body}").as_bytes())
            }
        };
        sent.unwrap_or_else(|e| panic!("{what}: the server closed the connection ({e})"));
        let (status, head, answer) = raw_response(&mut stream, &what);
        assert_eq!(status, expected, "{what}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{what}: the server means to close: {head}"
        );
        if status == 200 {
            let version: Value = serde_json::from_slice(&answer).unwrap();
            assert_eq!(version["data"]["sequence_number"], 1, "{what}");
        }
        answered += 1;
    }
    assert_eq!(answered, 1000);
}

#[test]
fn a_body_over_the_limit_is_not_read_and_the_connection_closes_after_its_answer() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    // Announced over the 1 MiB limit to a route that reads no body: answered, marked
    // `Connection: close`, then closed (the body is not waited for).
    let mut stream = server.connect(Duration::from_secs(30));
    stream
        .write_all(
            b"POST /v1/no-such-route HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{}",
        )
        .unwrap();
    let (status, head, _) = raw_response(&mut stream, "the oversized POST");
    assert_eq!(status, 404, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(closed_by_server(&mut stream), "the connection stayed open");

    // A body within the limit that nothing reads is drained: the connection stays.
    let mut stream = server.connect(Duration::from_secs(30));
    let body = "y".repeat(900_000);
    let request = format!(
        "PUT /v1/prompts HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, head, _) = raw_response(&mut stream, "the large PUT");
    assert_eq!(status, 405, "{head}");
    raw_get(&mut stream, "/healthz", None);
    assert_eq!(raw_response(&mut stream, "the GET after it").0, 200);
}

#[test]
fn archiving_a_prompt_that_holds_a_protected_tag_needs_a_deploy_token_or_force() {
    let env = Env::new();
    env.write(
        "writers.txt",
        &format!("ci:{WRITER}\ndeploy:release:{DEPLOYER}\n"),
    );
    let writers = env.path("writers.txt").display().to_string();
    let server = Server::start(&env, &["--token-file", &writers]);
    let (writer, deployer) = (bearer(WRITER), bearer(DEPLOYER));
    let as_writer = [("authorization", writer.as_str())];
    let as_deployer = [("authorization", deployer.as_str())];
    for name in ["greet", "other", "third"] {
        let created = server.call(
            "POST",
            "/v1/prompts",
            &as_writer,
            Some(&chat_body(name, "x")),
        );
        let id = created.json()["data"]["id"].as_str().unwrap().to_string();
        let tagged = server.call(
            "POST",
            &format!("/v1/prompt_versions/{id}/tags"),
            &as_writer,
            Some(&json!({"name": "production"})),
        );
        assert_eq!(tagged.status, 204, "{}", tagged.text);
    }
    // A plain write token cannot take production offline by archiving its prompt.
    let before = super::dump(&env.db);
    let refused = server.call("DELETE", "/v1/prompts/greet", &as_writer, None);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.text.contains("holds protected tag 'production'")
            && refused.text.contains("force=true"),
        "{}",
        refused.text
    );
    assert_eq!(
        super::dump(&env.db),
        before,
        "a refused archive wrote something"
    );
    let served = server.call("GET", "/v1/prompts/greet/tags/production", &as_writer, None);
    assert_eq!(served.status, 200);
    // A deploy token may; a write token with force may; each is recorded as such.
    let by_deploy = server.call("DELETE", "/v1/prompts/greet", &as_deployer, None);
    assert_eq!(by_deploy.status, 204, "{}", by_deploy.text);
    let forced = server.call("DELETE", "/v1/prompts/other?force=true", &as_writer, None);
    assert_eq!(forced.status, 204, "{}", forced.text);
    let recorded = |name: &str| {
        super::sql_value(
            &env.db,
            &format!(
                "SELECT e.actor || ' ' || CAST(e.forced AS INTEGER) || ' ' || CAST(e.deploy AS INTEGER) \
                 FROM prompt_events e JOIN prompts p ON p.id = e.prompt_id \
                 WHERE p.name = '{name}' AND e.action = 'archive'"
            ),
        )
    };
    assert_eq!(recorded("greet"), "api:release 0 1");
    assert_eq!(recorded("other"), "api:ci 1 0");

    // sync --prune is held to the same rule, before anything is written.
    std::fs::create_dir(env.path("prompts")).unwrap();
    env.write("prompts/kept.yaml", "template: hello\n");
    let before = super::dump(&env.db);
    let stderr = env.fails(&["sync", "prompts", "--prune"], 2);
    assert!(
        stderr.contains("holds protected tag 'production'"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(super::dump(&env.db), before);
    env.ok(&["sync", "prompts", "--prune", "--force"]);
    assert_eq!(recorded("third"), "tester 1 0");
}

/// `--log-format json`: one JSON object a line on stderr; every request gets an id (the
/// caller's plain `X-Request-Id`, else a new one), sent back in the answer and carried by each
/// of the request's lines, with its status; a refusal's line carries it too, and no line
/// carries a token or the query string.
#[test]
fn json_logs_carry_a_request_id_per_request() {
    let env = Env::new();
    env.write("tokens.txt", &format!("ci:{WRITER}\n"));
    let server = Server::start(
        &env,
        &["--token-file", "tokens.txt", "--log-format", "json"],
    );
    let auth = bearer(WRITER);
    let listed = server.call(
        "GET",
        "/v1/prompts?limit=5&secret=QUERYSECRET",
        &[("authorization", &auth), ("x-request-id", "ci-run-42.7")],
        None,
    );
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.header("x-request-id"), "ci-run-42.7");
    // An id that is not a plain token is replaced, never echoed.
    let refused = server.call(
        "GET",
        "/v1/prompts",
        &[("x-request-id", "bad id with spaces")],
        None,
    );
    assert_eq!(refused.status, 401);
    let fresh = refused.header("x-request-id").to_string();
    assert!(!fresh.is_empty() && !fresh.contains(' '), "{fresh}");

    let stderr = server.stop();
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let of = |id: &str| -> Vec<&Value> { lines.iter().filter(|l| l["span"]["id"] == id).collect() };
    let answered = of("ci-run-42.7");
    let last = answered.last().expect("a line for the request");
    assert_eq!(last["fields"]["message"], "answered");
    assert_eq!(last["fields"]["status"], 200);
    assert_eq!(last["span"]["method"], "GET");
    assert_eq!(last["span"]["path"], "/v1/prompts");
    assert_eq!(last["level"], "INFO");
    assert!(last["fields"]["ms"].is_number(), "{last}");
    let refusal = of(&fresh);
    assert!(
        refusal
            .iter()
            .any(|l| l["fields"]["message"] == "no bearer token" && l["level"] == "WARN"),
        "{refusal:?}"
    );
    assert!(
        refusal.iter().any(|l| l["fields"]["status"] == 401),
        "{refusal:?}"
    );
    // The startup line is a log line too.
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bearer tokens: 0 deploy, 1 read-write"))),
        "{stderr}"
    );
    assert!(
        !stderr.contains(WRITER) && !stderr.contains("QUERYSECRET"),
        "{stderr}"
    );
}

/// Text logs (the default) name the request id on each of its lines.
#[test]
fn text_logs_name_the_request_id() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let reply = server.call("GET", "/v1/prompts", &[("x-request-id", "abc-1")], None);
    assert_eq!(reply.status, 200);
    let stderr = server.stop();
    let line = stderr
        .lines()
        .find(|l| l.contains("abc-1"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("INFO") && line.contains("answered"), "{line}");
    assert!(
        line.contains("status=200") && line.contains("path=/v1/prompts"),
        "{line}"
    );
}

/// A bad --log-format is refused before anything starts.
#[test]
fn an_unknown_log_format_is_refused() {
    let env = Env::new();
    let stderr = env.fails(&["serve", "--log-format", "xml"], 2);
    assert!(stderr.contains("xml"), "{stderr}");
}

/// A log nobody reads (stderr a pipe left full) never stalls the server: past the log's
/// buffer, lines are dropped, not waited for. 2,000 requests log about 300 KB, several times
/// what a pipe holds.
#[test]
fn a_log_nobody_reads_never_stalls_the_server() {
    let env = Env::new();
    let mut child = env
        .std_cmd()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runner serve");
    // Kept open and never read.
    let _stderr = child.stderr.take();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first
        .split_whitespace()
        .find_map(|word| word.strip_prefix("http://"))
        .expect("the address")
        .to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for i in 0..2000 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let (status, _, _) = raw_response(&mut stream, &format!("request {i}"));
        assert_eq!(status, 200, "request {i}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
