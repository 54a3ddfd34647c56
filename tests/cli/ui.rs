//! The web UI of `runner serve` at the HTML level: a store made by the real CLI, the real server
//! on a free loopback port, pages read over HTTP (status, content, escaping), the login, CSRF
//! tokens, and the tag actions checked against `runner tag history`; the production views in
//! `ui/production.rs`.

pub mod production;
mod rollout;

use super::Env;
use crate::fault_server::FaultServer;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

pub const WRITER: &str = "ui-0123456789abcdef0123456789abcdef";
pub const READER: &str = "ro-fedcba9876543210fedcba9876543210";

/// A running `runner serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    // Dropped before the runtime its connections live on.
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let at = self
            .text
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in {}", self.text));
        let rest = &self.text[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// The `name=value` of the session cookie this reply sets.
    fn session_cookie(&self) -> String {
        let set = self.header("set-cookie");
        set.split(';').next().unwrap().to_string()
    }
}

impl Server {
    pub fn start(env: &Env, extra: &[&str]) -> Server {
        Server::start_with(env, extra, &[])
    }

    /// As `start`, with these variables in the server's environment.
    pub fn start_with(env: &Env, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut child = env
            .std_cmd()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .envs(vars.iter().copied())
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
        runner::client::install_tls();
        Server {
            child,
            base,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&[(&str, &str)]>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(form) = form {
            let body: Vec<String> = form
                .iter()
                .map(|(k, v)| format!("{k}={}", runner::ui::html::url_part(v)))
                .collect();
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.join("&"));
        }
        self.runtime.block_on(async {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = response.text().await.expect("body");
            Reply {
                status,
                headers,
                text,
            }
        })
    }

    fn get(&self, path: &str) -> Reply {
        // The server binds before it prints its address, so the first request is answered.
        self.send("GET", path, None, None)
    }

    fn get_as(&self, path: &str, cookie: &str) -> Reply {
        self.send("GET", path, Some(cookie), None)
    }

    fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
        self.send("POST", path, cookie, Some(form))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `greet` with two versions (v1 holding hostile text, tagged production; v2 staging) and a
/// second prompt, made by the CLI.
fn store(env: &Env) {
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "Hello <script>alert(1)</script> {{name}}, how can I help?",
        "--model",
        "m",
        "--tag",
        "production",
        "--meta",
        "team=support",
        "--description",
        "Greets a customer",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "Hello {{name}}, how may I help?",
        "--tag",
        "staging",
        "-m",
        "<b>politer</b>",
        "--meta",
        "team=care",
    ]);
    env.ok(&[
        "prompt",
        "create",
        "billing",
        "--template",
        "Invoice {{id}}",
        "--model",
        "m",
    ]);
}

fn history(env: &Env) -> serde_json::Value {
    env.json(&["tag", "history", "greet", "--json"])
}

#[test]
fn pages_list_show_and_diff_prompts_and_escape_their_text() {
    let env = Env::new();
    store(&env);
    let server = Server::start(&env, &[]);

    let library = server.get("/");
    assert_eq!(library.status, 200, "{}", library.text);
    assert!(library.header("content-type").starts_with("text/html"));
    assert!(
        library
            .header("content-security-policy")
            .contains("default-src 'none'")
    );
    assert!(library.text.contains("href=\"/prompts/greet\""));
    assert!(library.text.contains("href=\"/prompts/billing\""));
    assert!(library.text.contains("Greets a customer"));
    assert!(library.text.contains(">production</span>"));

    // Search by name, by tag, by metadata; each keeps only greet.
    for query in [
        "/?q=GRE",
        "/?tag=staging",
        "/?meta=team%3Dcare",
        "/?q=customer",
    ] {
        let page = server.get(query);
        assert_eq!(page.status, 200, "{query}");
        assert!(page.text.contains("/prompts/greet\""), "{query}");
        assert!(!page.text.contains("/prompts/billing\""), "{query}");
    }
    assert_eq!(server.get("/?meta=nokeyvalue").status, 422);
    assert_eq!(server.get("/?page=0").status, 422);

    let prompt = server.get("/prompts/greet");
    assert_eq!(prompt.status, 200);
    assert!(prompt.text.contains("Deployments"));
    assert!(prompt.text.contains("Tag history"));
    assert!(
        prompt.text.contains("&lt;b&gt;politer&lt;/b&gt;"),
        "message escaped"
    );
    assert!(!prompt.text.contains("<b>politer"));
    assert!(prompt.text.contains("by tester"));

    let version = server.get("/prompts/greet/versions/1");
    assert_eq!(version.status, 200);
    assert!(
        version
            .text
            .contains("Hello &lt;script&gt;alert(1)&lt;/script&gt;")
    );
    assert!(
        !version.text.contains("<script>alert"),
        "a template renders as text"
    );
    assert_eq!(
        version.text.matches("<script").count(),
        1,
        "the one script is the playground's (no tokens: a loopback viewer may write)"
    );
    assert!(
        version
            .text
            .contains("&quot;team&quot;: &quot;support&quot;")
    );
    assert!(version.text.contains("<code class=\"var\">name</code>"));

    let diff = server.get("/prompts/greet/diff?from=1&to=2");
    assert_eq!(diff.status, 200);
    assert!(diff.text.contains("<mark>can</mark>"), "{}", diff.text);
    assert!(diff.text.contains("<mark>may</mark>"));
    assert!(!diff.text.contains("<script"));
    assert!(diff.text.contains("metadata.team"));

    assert_eq!(server.get("/prompts/nope").status, 404);
    assert_eq!(server.get("/prompts/greet/versions/9").status, 404);
    assert_eq!(server.get("/prompts/greet/diff?from=x").status, 422);
    assert_eq!(server.get("/experiments/nope").status, 404);
    let css = server.get("/assets/style.css");
    assert_eq!(css.status, 200);
    assert!(css.text.contains("prefers-color-scheme: dark"));
    // The API is still there, beside the pages.
    assert_eq!(server.get("/v1/prompts").status, 200);
}

/// The prompt `greet` with `production` on a version of the first template and `staging` on
/// one of the second.
fn production_and_staging(env: &Env, production: &str, staging: &str) {
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        production,
        "--model",
        "m",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        staging,
        "--tag",
        "staging",
    ]);
}

#[test]
fn experiments_compare_and_the_promotion_behind_a_tag() {
    let env = Env::new();
    let endpoint = FaultServer::start(Duration::ZERO);
    production_and_staging(&env, "I cannot help.", "About {{query}}");
    let data = env.write(
        "cases.csv",
        "id,query,expected\na,order,order\nb,password,password\nc,<script>x</script>,nothing\n",
    );
    let out = env.json(&[
        "promote",
        "--prompt",
        "greet",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        data.to_str().unwrap(),
        "--base-url",
        &endpoint.base_url(),
        "--min-pass-rate",
        "0.5",
        "-m",
        "better answers",
        "--json",
    ]);
    assert_eq!(out["moved"], true, "{out}");
    let experiments = env.json(&["experiment", "list", "--json"]);
    let ids: Vec<String> = experiments
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let event = history(&env)
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "promote")
        .cloned()
        .unwrap();
    let baseline = event["evidence"]["baseline_experiment"]
        .as_str()
        .unwrap()
        .to_string();
    let candidate = event["evidence"]["candidate_experiment"]
        .as_str()
        .unwrap()
        .to_string();

    let server = Server::start(&env, &[]);
    let prompt = server.get("/prompts/greet");
    let compare_link = format!("/compare?baseline={baseline}&amp;candidate={candidate}");
    assert!(
        prompt.text.contains(&compare_link),
        "the promote event links its comparison"
    );
    assert!(prompt.text.contains(&format!("/experiments/{candidate}")));
    assert!(prompt.text.contains(">gated</span>"));

    let list = server.get("/prompts/greet/experiments");
    assert_eq!(list.status, 200);
    assert!(list.text.contains("<svg"), "the pass-rate chart");
    assert!(list.text.contains("<polyline"));
    assert!(list.text.contains("icontains"));
    for id in &ids {
        assert!(list.text.contains(&format!("/experiments/{id}")));
    }

    let rows = server.get(&format!("/experiments/{candidate}"));
    assert_eq!(rows.status, 200);
    assert!(rows.text.contains("About order"));
    assert!(rows.text.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(!rows.text.contains("<script"));
    let failed = server.get(&format!("/experiments/{candidate}?show=failed"));
    assert!(failed.text.contains("<code>c</code>"), "{}", failed.text);
    assert!(!failed.text.contains("<code>a</code>"));
    let searched = server.get(&format!("/experiments/{candidate}?q=PASSWORD"));
    assert!(searched.text.contains("<code>b</code>"));
    assert!(!searched.text.contains("<code>a</code>"));
    assert!(searched.text.contains("1 in all"));
    assert_eq!(
        server
            .get(&format!("/experiments/{candidate}?show=bogus"))
            .status,
        422
    );

    let compare = server.get(&format!(
        "/compare?baseline={baseline}&candidate={candidate}"
    ));
    assert_eq!(compare.status, 200, "{}", compare.text);
    assert!(compare.text.contains("Promotion"));
    let verdict = event["evidence"]["verdict"].as_str().unwrap();
    assert!(
        compare
            .text
            .contains(&format!("<p class=\"verdict\">{verdict}</p>")),
        "{}",
        compare.text
    );
    assert!(compare.text.contains("icontains pass rate"));
    // Wilson's interval: none of 3 rows passing is not a rate of 0 for sure.
    assert!(compare.text.contains("0.0% (0.0–"), "{}", compare.text);
    assert!(compare.text.contains(">improved</span>"));
    // The paired difference with its interval and test, as `runner compare` prints it.
    let cli = env.json(&["compare", &baseline, &candidate, "--json"]);
    let d = &cli["evaluators"][0]["pass_rate_difference"];
    let test = d["test"].as_str().unwrap().replace('\'', "&#39;");
    assert!(compare.text.contains("95% CI"), "{}", compare.text);
    assert!(compare.text.contains(&test), "{}", compare.text);
    let regressed = server.get(&format!(
        "/compare?baseline={baseline}&candidate={candidate}&show=regressed"
    ));
    assert!(regressed.text.contains("no rows changed verdict"));
    let improved = server.get(&format!(
        "/compare?baseline={baseline}&candidate={candidate}&show=improved"
    ));
    assert!(improved.text.contains("<code>a</code>"));
    assert!(
        improved.text.contains("diff-line ins"),
        "outputs are diffed"
    );
    // Every row, in row-id order, each side with its verdict and what the row expected.
    let all = server.get(&format!(
        "/compare?baseline={baseline}&candidate={candidate}&show=all"
    ));
    assert_eq!(all.status, 200);
    assert!(all.text.contains("<h2>Every row</h2>"), "{}", all.text);
    let at = |code: &str| all.text.find(&format!("<code>{code}</code>")).unwrap();
    assert!(at("a") < at("b") && at("b") < at("c"), "{}", all.text);
    assert!(all.text.contains("badge unchanged"), "{}", all.text);
    assert!(all.text.contains("expected: password"), "{}", all.text);
    assert!(all.text.contains("3 in all"), "{}", all.text);
    assert!(all.text.contains("I cannot help."), "the baseline's output");
    assert!(!all.text.contains("<script>x"), "inputs are escaped");
    assert_eq!(
        server
            .get(&format!(
                "/compare?baseline={baseline}&candidate={candidate}&show=bogus"
            ))
            .status,
        422
    );
    assert_eq!(server.get("/compare?baseline=x").status, 422);
}

#[test]
fn a_row_that_moved_on_two_evaluators_is_listed_twice_with_its_texts_and_marked_mixed() {
    let env = Env::new();
    let endpoint = FaultServer::start(Duration::ZERO);
    production_and_staging(&env, "About {{query}}", "Plain words");
    let data = env.write("cases.csv", "id,query,expected\na,order,order\n");
    // The endpoint answers with the prompt: the baseline passes icontains and fails the
    // regex, the candidate the other way round.
    for tag in ["production", "staging"] {
        env.ok(&[
            "experiment",
            "--prompt",
            "greet",
            "--tag",
            tag,
            "--dataset",
            data.to_str().unwrap(),
            "--eval",
            "icontains",
            "--eval",
            "regex:^Plain",
            "--base-url",
            &endpoint.base_url(),
        ]);
    }
    let listed = env.json(&["experiment", "list", "--json"]);
    let id = |i: usize| listed[i]["id"].as_str().unwrap().to_string();
    // Newest first: the candidate, then the baseline.
    let (candidate, baseline) = (id(0), id(1));
    let server = Server::start(&env, &[]);
    let changed = server.get(&format!(
        "/compare?baseline={baseline}&candidate={candidate}&show=changed"
    ));
    assert_eq!(changed.status, 200);
    assert!(changed.text.contains("2 in all"), "{}", changed.text);
    assert_eq!(changed.text.matches("<code>a</code>").count(), 2);
    // Both listings carry both outputs, not only the first.
    assert_eq!(
        changed
            .text
            .matches("<pre class=\"cell\">About order</pre>")
            .count(),
        2,
        "{}",
        changed.text
    );
    assert_eq!(
        changed
            .text
            .matches("<pre class=\"cell\">Plain words</pre>")
            .count(),
        2,
        "{}",
        changed.text
    );
    let all = server.get(&format!(
        "/compare?baseline={baseline}&candidate={candidate}&show=all"
    ));
    assert!(all.text.contains("badge mixed"), "{}", all.text);
    assert!(all.text.contains("1 in all"), "{}", all.text);
}

#[test]
fn a_login_gives_a_session_and_only_write_tokens_act() {
    let env = Env::new();
    store(&env);
    env.write("writers.txt", &format!("ci:{WRITER}\n"));
    env.write("readers.txt", &format!("{READER}\n"));
    let server = Server::start(
        &env,
        &[
            "--token-file",
            "writers.txt",
            "--read-token-file",
            "readers.txt",
        ],
    );

    // Without a session every page sends the browser to the login form.
    let bounced = server.get("/prompts/greet");
    assert_eq!(bounced.status, 303);
    assert_eq!(bounced.header("location"), "/login?next=%2Fprompts%2Fgreet");
    let form = server.get("/login");
    assert_eq!(form.status, 200);
    let login_csrf = form.csrf();
    let refused = server.post(
        "/login",
        None,
        &[("token", "not-a-token-at-all-xx"), ("csrf", &login_csrf)],
    );
    assert_eq!(refused.status, 401);
    assert!(refused.header("set-cookie").is_empty());
    let stale = server.post("/login", None, &[("token", WRITER), ("csrf", "0")]);
    assert_eq!(stale.status, 403);

    // The read-only token sees everything and can act on nothing.
    let reader = server.post(
        "/login",
        None,
        &[
            ("token", READER),
            ("csrf", &login_csrf),
            ("next", "/prompts/greet"),
        ],
    );
    assert_eq!(reader.status, 303);
    assert_eq!(reader.header("location"), "/prompts/greet");
    // `next` is a plain local path or nothing: what a browser would turn into another site
    // (a tab or newline it drops, a backslash it reads as a slash) goes home instead.
    for next in [
        "/\t/evil.example/x",
        "/\n/evil.example/x",
        "/\\evil.example/x",
        "//evil.example/x",
        "https://evil.example/x",
        "/ /evil.example",
        "/\u{00e9}vil",
        "",
    ] {
        let bounced = server.post(
            "/login",
            None,
            &[("token", READER), ("csrf", &login_csrf), ("next", next)],
        );
        assert_eq!(bounced.status, 303, "{next:?}");
        assert_eq!(bounced.header("location"), "/", "{next:?}");
    }
    let set = reader.header("set-cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Max-Age="),
        "{set}"
    );
    let ro = reader.session_cookie();
    let page = server.get_as("/prompts/greet", &ro);
    assert_eq!(page.status, 200);
    assert!(page.text.contains("(read-only)"));
    assert!(
        !page.text.contains("Move tag"),
        "no action forms for a read-only token"
    );
    let before = history(&env);
    let denied = server.post(
        "/prompts/greet/tags",
        Some(&ro),
        &[
            ("csrf", &page.csrf()),
            ("tag", "beta"),
            ("version", "1"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert_eq!(history(&env), before);
    // A forged cookie is no session.
    let forged = ro.replacen(".ro.", ".rw.", 1);
    assert_eq!(server.get_as("/", &forged).status, 303);

    // The write token acts, with its CSRF token and a confirmation.
    let writer = server.post("/login", None, &[("token", WRITER), ("csrf", &login_csrf)]);
    let rw = writer.session_cookie();
    let page = server.get_as("/prompts/greet", &rw);
    assert!(page.text.contains("Move tag"));
    let csrf = page.csrf();
    let no_csrf = server.post(
        "/prompts/greet/tags",
        Some(&rw),
        &[
            ("csrf", "0"),
            ("tag", "beta"),
            ("version", "1"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(no_csrf.status, 403);
    let other_session = server.post(
        "/prompts/greet/tags",
        Some(&rw),
        &[
            ("csrf", &server.get_as("/", &ro).csrf()),
            ("tag", "beta"),
            ("version", "1"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(
        other_session.status, 403,
        "a CSRF token belongs to one session"
    );
    let unconfirmed = server.post(
        "/prompts/greet/tags",
        Some(&rw),
        &[("csrf", &csrf), ("tag", "beta"), ("version", "1")],
    );
    assert_eq!(unconfirmed.status, 422);
    assert_eq!(history(&env), before);
    let moved = server.post(
        "/prompts/greet/tags",
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("tag", "beta"),
            ("version", "1"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(moved.status, 303, "{}", moved.text);
    let events = history(&env);
    let last = events.as_array().unwrap().last().unwrap();
    assert_eq!(last["tag"], "beta");
    assert_eq!(last["action"], "set");
    assert_eq!(last["actor"], "ui:ci");
    assert_eq!(last["to_seq"], 1);

    // A protected tag follows the one tag policy: refused without force, force needs a reason.
    let protected = server.post(
        "/prompts/greet/tags",
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("tag", "production"),
            ("version", "2"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(protected.status, 403, "{}", protected.text);
    assert!(
        protected.text.contains(
            "tag &#39;production&#39; is protected: moving it needs a deploy token, or force"
        ),
        "{}",
        protected.text
    );
    let no_reason = server.post(
        "/prompts/greet/tags",
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("tag", "production"),
            ("version", "2"),
            ("confirm", "yes"),
            ("force", "yes"),
        ],
    );
    assert_eq!(no_reason.status, 422);
    assert_eq!(
        history(&env).as_array().unwrap().len(),
        events.as_array().unwrap().len()
    );
    let forced = server.post(
        "/prompts/greet/tags",
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("tag", "production"),
            ("version", "2"),
            ("confirm", "yes"),
            ("force", "yes"),
            ("reason", "hotfix <now>"),
        ],
    );
    assert_eq!(forced.status, 303, "{}", forced.text);
    let prod = env.json(&["tag", "history", "greet", "production", "--json"]);
    let last = prod.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "move");
    assert_eq!(last["forced"], true);
    assert_eq!(last["message"], "hotfix <now>");
    assert_eq!(last["to_seq"], 2);

    // Roll it back, forced with a reason; the page shows the history.
    let rolled = server.post(
        "/prompts/greet/rollback",
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("tag", "production"),
            ("confirm", "yes"),
            ("force", "yes"),
            ("reason", "undo"),
        ],
    );
    assert_eq!(rolled.status, 303, "{}", rolled.text);
    let shown = env.json(&["prompt", "show", "greet", "--tag", "production", "--json"]);
    assert_eq!(shown["seq"], 1);
    let page = server.get_as("/prompts/greet", &rw);
    assert!(page.text.contains(">rollback</span>"));
    assert!(page.text.contains("hotfix &lt;now&gt;"));

    // Logging out clears the cookie, and ends the session on the server: the old cookie (a
    // copy kept elsewhere) neither reads a page nor moves a tag.
    let out = server.post("/logout", Some(&rw), &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    assert_eq!(server.get_as("/prompts/greet", &rw).status, 303);
    let before = history(&env);
    let replayed = server.post(
        "/prompts/greet/tags",
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("tag", "beta"),
            ("version", "1"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(replayed.status, 401, "{}", replayed.text);
    assert_eq!(history(&env), before);
    // Another session of the same token goes on.
    let again = login(&server, WRITER);
    assert_eq!(server.get_as("/prompts/greet", &again).status, 200);
}

pub const DEPLOYER: &str = "dp-00112233445566778899aabbccddeeff";

#[test]
fn a_deploy_token_moves_protected_tags_from_the_pages_without_force() {
    let env = Env::new();
    store(&env);
    env.write(
        "writers.txt",
        &format!("ci:{WRITER}\ndeploy:release:{DEPLOYER}\n"),
    );
    let server = Server::start(&env, &["--token-file", "writers.txt"]);
    let login_csrf = server.get("/login").csrf();
    let login = |token: &str| {
        let reply = server.post("/login", None, &[("token", token), ("csrf", &login_csrf)]);
        assert_eq!(reply.status, 303, "{}", reply.text);
        reply.session_cookie()
    };
    let (rw, dp) = (login(WRITER), login(DEPLOYER));
    let move_production = |cookie: &str, version: &str| {
        let csrf = server.get_as("/prompts/greet", cookie).csrf();
        server.post(
            "/prompts/greet/tags",
            Some(cookie),
            &[
                ("csrf", &csrf),
                ("tag", "production"),
                ("version", version),
                ("confirm", "yes"),
                ("reason", "release 2"),
            ],
        )
    };
    // The write token is refused without force, as over HTTP; nothing is written.
    let before = history(&env);
    let refused = move_production(&rw, "2");
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.text.contains("needs a deploy token, or force"),
        "{}",
        refused.text
    );
    assert_eq!(history(&env), before);

    // The deploy token's page says it needs no force, and the move goes through.
    let page = server.get_as("/prompts/greet", &dp);
    assert!(page.text.contains("ui:release (deploy)"), "{}", page.text);
    assert!(page.text.contains("moves protected tags without force"));
    assert!(!page.text.contains("force a protected tag"));
    let moved = move_production(&dp, "2");
    assert_eq!(moved.status, 303, "{}", moved.text);
    let prod = env.json(&["tag", "history", "greet", "production", "--json"]);
    let last = prod.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            &last["action"],
            &last["actor"],
            &last["forced"],
            &last["deploy"]
        ),
        (
            &"move".into(),
            &"ui:release".into(),
            &false.into(),
            &true.into()
        )
    );
    assert_eq!(last["message"], "release 2");
    assert_eq!(last["to_seq"], 2);
    let shown = server.get_as("/prompts/greet", &rw);
    assert!(shown.text.contains("badge deploy"), "{}", shown.text);
}

#[test]
fn without_tokens_the_pages_act_on_loopback_with_a_csrf_token() {
    let env = Env::new();
    store(&env);
    let server = Server::start(&env, &[]);
    let page = server.get("/prompts/greet");
    assert!(page.text.contains("Move tag"));
    assert!(!page.text.contains("Log out"));
    let moved = server.post(
        "/prompts/greet/tags",
        None,
        &[
            ("csrf", &page.csrf()),
            ("tag", "staging"),
            ("version", "1"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(moved.status, 303, "{}", moved.text);
    let events = history(&env);
    let last = events.as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["tag"].as_str(), last["actor"].as_str()),
        (Some("staging"), Some("ui"))
    );
    let refused = server.post(
        "/prompts/greet/tags",
        None,
        &[
            ("csrf", "0"),
            ("tag", "staging"),
            ("version", "2"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(refused.status, 403);
    // The loopback rules of the API hold for the pages: another Host is refused.
    let rebound = server.runtime.block_on(async {
        server
            .http
            .get(format!("{}/", server.base))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(rebound, 403);
}

/// Logs in with `token`; returns the session cookie.
fn login(server: &Server, token: &str) -> String {
    let csrf = server.get("/login").csrf();
    let reply = server.post("/login", None, &[("token", token), ("csrf", &csrf)]);
    assert_eq!(reply.status, 303, "{}", reply.text);
    reply.session_cookie()
}

/// The server's key, which the endpoint must receive and no page may show.
const SERVER_KEY: &str = "sk-playground-0123456789abcdef";

/// `greet` and `billing` (see `store`) served with token files: the streaming mock
/// (`runner mock-server --chunk-ms`) is every prompt's endpoint through `OPENAI_BASE_URL` in
/// the server's environment, except `billing`'s, which runner.toml points at the fault server.
fn playground_server(env: &Env, mock_url: &str, fault: &FaultServer) -> Server {
    playground_server_with(env, mock_url, fault, &[])
}

/// `playground_server` with more flags for `runner serve`.
fn playground_server_with(
    env: &Env,
    mock_url: &str,
    fault: &FaultServer,
    extra: &[&str],
) -> Server {
    store(env);
    env.write(
        "runner.toml",
        &format!("[prompts.billing]\nbase_url = \"{}\"\n", fault.base_url()),
    );
    env.write("writers.txt", &format!("ci:{WRITER}\n"));
    env.write("readers.txt", &format!("viewer:{READER}\n"));
    let mut args = vec![
        "--token-file",
        "writers.txt",
        "--read-token-file",
        "readers.txt",
    ];
    args.extend_from_slice(extra);
    Server::start_with(
        env,
        &args,
        &[
            ("OPENAI_BASE_URL", mock_url),
            ("OPENAI_API_KEY", SERVER_KEY),
        ],
    )
}

const RUN: &str = "/prompts/greet/versions/1/try";
const STREAM: &str = "/prompts/greet/versions/1/try/stream";
const SAVE: &str = "/prompts/greet/versions/1/save";

#[test]
fn the_playground_is_offered_to_write_tokens_only_and_checks_csrf() {
    let env = Env::new();
    let mock = super::Mock::start(&env, &[]);
    let mock_url = mock.url.clone();
    let fault = FaultServer::start(Duration::ZERO);
    let server = playground_server(&env, &mock_url, &fault);
    let before = super::dump(&env.db);

    // A read-only token sees the version and no playground, and is refused every route.
    let ro = login(&server, READER);
    let page = server.get_as("/prompts/greet/versions/1", &ro);
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("id=\"playground\""), "{}", page.text);
    assert!(
        !page.text.contains("<script"),
        "no script without the panel"
    );
    let csrf = page.csrf();
    for route in [RUN, STREAM, SAVE] {
        let denied = server.post(
            route,
            Some(&ro),
            &[
                ("csrf", &csrf),
                ("var.name", "Ann"),
                ("action", "run"),
                ("template", "Yo {{name}}"),
                ("message", "m"),
                ("confirm", "yes"),
            ],
        );
        assert_eq!(denied.status, 403, "{route}: {}", denied.text);
        assert!(
            denied.text.contains("read-only"),
            "{route}: {}",
            denied.text
        );
    }

    // A write token sees the panel: one field per variable, the template ready to edit, the
    // other versions to run beside it, the inline script allowed by its hash and nothing else.
    let rw = login(&server, WRITER);
    let page = server.get_as("/prompts/greet/versions/1", &rw);
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"playground\""));
    assert!(page.text.contains("name=\"var.name\""));
    assert!(
        page.text.contains(
            "Hello &lt;script&gt;alert(1)&lt;/script&gt; {{name}}, how can I help?</textarea>"
        ),
        "the template, escaped, in the textarea"
    );
    assert!(
        page.text
            .contains("<option value=\"tag:staging\">staging (v2)</option>")
    );
    assert!(page.text.contains("<option value=\"v2\">v2</option>"));
    assert!(
        page.text
            .contains("formaction=\"/prompts/greet/versions/1/save\"")
    );
    assert_eq!(page.text.matches("<script>").count(), 1);
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("script-src 'sha256-") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    // A stale or foreign CSRF token is refused on every route.
    for csrf in ["0", csrf.as_str()] {
        for route in [RUN, STREAM, SAVE] {
            let refused = server.post(
                route,
                Some(&rw),
                &[
                    ("csrf", csrf),
                    ("var.name", "Ann"),
                    ("action", "run"),
                    ("template", "Yo {{name}}"),
                    ("message", "m"),
                    ("confirm", "yes"),
                ],
            );
            assert_eq!(refused.status, 403, "{route}: {}", refused.text);
            assert!(refused.text.contains("CSRF"), "{route}: {}", refused.text);
        }
    }
    // A row can be read only from a dataset recorded in an experiment: no other file.
    let csrf = page.csrf();
    let path = env.write("rows.csv", "id,name\nr1,Ann\n");
    for dataset in [path.to_str().unwrap(), "/etc/passwd"] {
        let refused = server.post(
            RUN,
            Some(&rw),
            &[
                ("csrf", &csrf),
                ("dataset", dataset),
                ("row", "r1"),
                ("action", "fill"),
            ],
        );
        assert_eq!(refused.status, 422, "{dataset}: {}", refused.text);
        assert!(
            refused
                .text
                .contains("only datasets recorded in experiments"),
            "{}",
            refused.text
        );
        assert!(!refused.text.contains(">\nAnn</textarea>"));
    }
    assert!(
        fault.log().is_empty() && mock.requests() == 0,
        "nothing refused reached an endpoint"
    );
    assert_eq!(super::dump(&env.db), before);
}

#[test]
fn the_playground_runs_without_javascript_and_streams_with_it_recording_nothing() {
    let env = Env::new();
    let mock = super::Mock::start(&env, &["--chunk-ms", "20"]);
    let mock_url = mock.url.clone();
    let fault = FaultServer::start(Duration::ZERO);
    let server = playground_server(&env, &mock_url, &fault);
    let before = super::dump(&env.db);
    let rw = login(&server, WRITER);
    let csrf = server.get_as("/prompts/greet/versions/1", &rw).csrf();

    // Run without JavaScript: the page comes back with both answers and their figures.
    let run = server.post(
        RUN,
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("var.name", "Ann"),
            ("other", "tag:staging"),
            ("action", "run"),
        ],
    );
    assert_eq!(run.status, 200, "{}", run.text);
    assert!(
        run.text.contains(
            "id=\"answer-this\">Hello &lt;script&gt;alert(1)&lt;/script&gt; Ann, how can I help?</pre>"
        ),
        "{}",
        run.text
    );
    assert!(run.text.contains("greet v2 (staging)"));
    assert!(
        run.text
            .contains("id=\"answer-other\">Hello Ann, how may I help?</pre>")
    );
    assert!(run.text.contains("first token"), "{}", run.text);
    assert!(run.text.contains("in / "), "{}", run.text);
    assert!(run.text.contains("finish: stop"), "{}", run.text);
    // The form comes back as it was sent.
    assert!(run.text.contains("<option value=\"tag:staging\" selected>"));
    assert!(run.text.contains(">\nAnn</textarea>"));

    // An edited template runs with the version's model, and is not stored.
    let edited = server.post(
        RUN,
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("var.name", "Bo"),
            ("template", "Yo {{name}}!\r\nBye."),
            ("action", "run"),
        ],
    );
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert!(edited.text.contains("greet v1, edited template"));
    assert!(
        edited
            .text
            .contains("id=\"answer-this\">Yo Bo!\nBye.</pre>"),
        "{}",
        edited.text
    );

    // With JavaScript: one column as server-sent events, piece by piece, then its figures.
    let streamed = server.post(
        STREAM,
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("var.name", "Ann"),
            ("side", "other"),
            ("other", "v2"),
        ],
    );
    assert_eq!(streamed.status, 200, "{}", streamed.text);
    assert_eq!(streamed.header("content-type"), "text/event-stream");
    let mut pieces = String::new();
    let mut done = serde_json::Value::Null;
    for block in streamed.text.split("\n\n").filter(|b| !b.is_empty()) {
        let (event, data) = block.split_once('\n').unwrap();
        let data: serde_json::Value =
            serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        match event {
            "event: piece" => pieces.push_str(data.as_str().unwrap()),
            "event: done" => done = data,
            other => panic!("unexpected {other}: {}", streamed.text),
        }
    }
    assert!(
        streamed.text.matches("event: piece").count() >= 5,
        "{}",
        streamed.text
    );
    assert_eq!(pieces, "Hello Ann, how may I help?");
    assert_eq!(done["output"], "Hello Ann, how may I help?");
    assert_eq!(done["version"], 2);
    assert_eq!(done["finish_reason"], "stop");
    assert!(done["ttft_ms"].as_f64().unwrap() > 0.0, "{done}");
    assert!(
        done["figures"].as_str().unwrap().contains("first token"),
        "{done}"
    );

    // A missing variable is a 422 naming it, before any request.
    let requests = mock.requests();
    let missing = server.post(
        RUN,
        Some(&rw),
        &[("csrf", &csrf), ("var.name", ""), ("action", "run")],
    );
    assert_eq!(missing.status, 422, "{}", missing.text);
    assert!(
        missing.text.contains("missing variable"),
        "{}",
        missing.text
    );
    assert!(missing.text.contains("id=\"play-problem\""));
    let missing = server.post(STREAM, Some(&rw), &[("csrf", &csrf), ("side", "this")]);
    assert_eq!(missing.status, 422);
    assert!(
        missing.text.starts_with("missing variable"),
        "{}",
        missing.text
    );
    assert_eq!(mock.requests(), requests);

    // The endpoint's failure is shown: a 502 with its message; the key went to the endpoint
    // from the server's environment and is on no page.
    let csrf_billing = server.get_as("/prompts/billing/versions/1", &rw).csrf();
    let failed = server.post(
        "/prompts/billing/versions/1/try",
        Some(&rw),
        &[
            ("csrf", &csrf_billing),
            ("var.id", "fault=401"),
            ("action", "run"),
        ],
    );
    assert_eq!(failed.status, 502, "{}", failed.text);
    assert!(
        failed.text.contains("the call to http://127.0.0.1"),
        "{}",
        failed.text
    );
    assert!(failed.text.contains("401"), "{}", failed.text);
    let failed = server.post(
        "/prompts/billing/versions/1/try/stream",
        Some(&rw),
        &[
            ("csrf", &csrf_billing),
            ("var.id", "fault=401"),
            ("side", "this"),
        ],
    );
    assert_eq!(failed.status, 502, "{}", failed.text);
    assert!(failed.text.contains("401"), "{}", failed.text);
    let log = fault.log();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|e| e.authorization.as_deref() == Some(&format!("Bearer {SERVER_KEY}"))),
        "{log:?}"
    );
    for reply in [&run, &edited, &streamed] {
        assert!(!reply.text.contains(SERVER_KEY));
    }

    // Nothing of it was recorded: no experiment, no cache entry, no version.
    assert_eq!(super::dump(&env.db), before);
}

#[test]
fn the_playground_saves_an_edited_template_as_the_tokens_version() {
    let env = Env::new();
    let mock = super::Mock::start(&env, &[]);
    let mock_url = mock.url.clone();
    let fault = FaultServer::start(Duration::ZERO);
    let server = playground_server(&env, &mock_url, &fault);
    let rw = login(&server, WRITER);
    let csrf = server.get_as("/prompts/greet/versions/2", &rw).csrf();
    let save = "/prompts/greet/versions/2/save";
    let before = super::dump(&env.db);
    let form = |message: &'static str, confirm: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("template", "Yo {{name}},\r\nwhat's up?".to_string()),
            ("message", message.to_string()),
            ("confirm", confirm.to_string()),
            ("action", "save".to_string()),
        ]
    };
    let send = |fields: Vec<(&str, String)>| {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        server.post(save, Some(&rw), &fields)
    };
    // A message and the confirmation are required; a template that does not parse is refused.
    let no_message = send(form("  ", "yes"));
    assert_eq!(no_message.status, 422);
    assert!(no_message.text.contains("needs a message"));
    let unconfirmed = send(form("Shorter", ""));
    assert_eq!(unconfirmed.status, 422);
    assert!(unconfirmed.text.contains("not confirmed"));
    let mut broken = form("Shorter", "yes");
    broken[1].1 = "Yo {{name".to_string();
    assert_eq!(send(broken).status, 422);
    assert_eq!(super::dump(&env.db), before);

    let saved = send(form("Shorter", "yes"));
    assert_eq!(saved.status, 303, "{}", saved.text);
    assert_eq!(saved.header("location"), "/prompts/greet/versions/3");
    let v3 = env.json(&["prompt", "show", "greet", "--version", "3", "--json"]);
    assert_eq!(v3["author"], "ui:ci", "{v3}");
    assert_eq!(v3["message"], "Shorter");
    assert_eq!(v3["template"], "Yo {{name}},\nwhat's up?", "{v3}");
    assert_eq!(v3["model"], "m", "the tried version's model");
    // No tag moved: production and staging stay where they were.
    let tags = env.ok(&["tag", "list", "greet"]);
    assert!(!tags.contains("v3"), "{tags}");
    let page = server.get_as("/prompts/greet/versions/3", &rw);
    assert!(page.text.contains("ui:ci"));
}

#[test]
fn the_playground_never_shows_the_servers_key_when_the_endpoint_echoes_it() {
    let env = Env::new();
    // The endpoint answers with the key it was sent, a word a piece.
    let rules = env.write(
        "echo-key.yaml",
        &format!(
            "- pattern: 'echo'\n  reply: 'your key is {SERVER_KEY} and again {SERVER_KEY}.'\n"
        ),
    );
    let mock = super::Mock::start(
        &env,
        &["--chunk-ms", "5", "--responses", rules.to_str().unwrap()],
    );
    let mock_url = mock.url.clone();
    let fault = FaultServer::start(Duration::ZERO);
    let server = playground_server(&env, &mock_url, &fault);
    let rw = login(&server, WRITER);
    let csrf = server.get_as("/prompts/greet/versions/1", &rw).csrf();
    let fields = [
        ("csrf", csrf.as_str()),
        ("var.name", "Ann"),
        ("template", "please echo {{name}}"),
        ("action", "run"),
    ];
    let streamed = server.post(STREAM, Some(&rw), &fields);
    assert_eq!(streamed.status, 200, "{}", streamed.text);
    assert!(
        !streamed.text.contains("0123456789abcdef"),
        "{}",
        streamed.text
    );
    assert!(streamed.text.contains("[redacted]"), "{}", streamed.text);
    let run = server.post(RUN, Some(&rw), &fields);
    assert_eq!(run.status, 200, "{}", run.text);
    assert!(!run.text.contains("0123456789abcdef"), "{}", run.text);
    assert!(
        run.text
            .contains("your key is [redacted] and again [redacted]."),
        "{}",
        run.text
    );
}

#[test]
fn fill_from_row_reads_the_values_stored_with_the_results_never_a_file_the_store_names() {
    let env = Env::new();
    let mock = super::Mock::start(&env, &[]);
    let mock_url = mock.url.clone();
    let fault = FaultServer::start(Duration::ZERO);
    let server = playground_server(&env, &mock_url, &fault);
    let rows = env.write("rows.csv", "id,name\nr1,Ann\n");
    env.ok(&[
        "experiment",
        "--prompt",
        "greet",
        "--version",
        "1",
        "--dataset",
        rows.to_str().unwrap(),
        "--base-url",
        &mock_url,
        "--eval",
        "max-latency:60000",
    ]);
    // Anyone who can write the store can record any path as an experiment's dataset.
    let secret = env.write("secret.csv", "id,name\nr1,TOPSECRET\n");
    let secret = secret.to_str().unwrap().to_string();
    super::sql(
        &env.db,
        &format!("UPDATE experiments SET dataset_path = '{secret}'"),
    );
    let rw = login(&server, WRITER);
    let csrf = server.get_as("/prompts/greet/versions/1", &rw).csrf();
    let filled = server.post(
        RUN,
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("dataset", &secret),
            ("row", "r1"),
            ("action", "fill"),
        ],
    );
    assert_eq!(filled.status, 200, "{}", filled.text);
    assert!(!filled.text.contains("TOPSECRET"), "{}", filled.text);
    assert!(filled.text.contains(">\nAnn</textarea>"), "{}", filled.text);
    let missing = server.post(
        RUN,
        Some(&rw),
        &[
            ("csrf", &csrf),
            ("dataset", &secret),
            ("row", "r9"),
            ("action", "fill"),
        ],
    );
    assert_eq!(missing.status, 422, "{}", missing.text);
}

#[test]
fn a_streamed_answer_is_never_closed_as_idle_to_make_room() {
    use std::io::{Read, Write};
    let env = Env::new();
    // A word every 150 ms: the answer takes over a second to stream.
    let mock = super::Mock::start(&env, &["--chunk-ms", "150"]);
    let mock_url = mock.url.clone();
    let fault = FaultServer::start(Duration::ZERO);
    let server = playground_server_with(&env, &mock_url, &fault, &["--max-connections", "2"]);
    let rw = login(&server, WRITER);
    let csrf = server.get_as("/prompts/greet/versions/1", &rw).csrf();
    let host = server.base.trim_start_matches("http://").to_string();
    let body = format!("csrf={csrf}&var.name=Ann&action=run");
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST {STREAM} HTTP/1.1\r\nHost: {host}\r\nCookie: {rw}\r\nOrigin: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        server.base,
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = stream.read(&mut first).unwrap();
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    // Three sockets that never send a byte want the slots; the streaming connection is
    // answering, not idle, so it is not the one closed to make room.
    let silent: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&host).unwrap())
        .collect();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&first[..n]),
        String::from_utf8_lossy(&rest)
    );
    assert!(text.contains("event: done"), "the stream was cut: {text}");
    assert!(text.matches("event: piece").count() >= 7, "{text}");
    drop(silent);
}

/// `?span=SPAN_ID` on a version's page: the variables a production call recorded fill the
/// playground, escaped, with a line naming the span, its trace, when it started and the version
/// it ran; a span that is not stored, or text that is no span id, leaves the fields empty and
/// says so on the page; a read-only token sees no variables at all.
#[test]
fn a_stored_span_fills_the_playground_escaped_and_an_unknown_one_is_said() {
    use super::from_traces::{call, export, span_hex, trace_hex, wait_for_spans};
    let env = Env::new();
    store(&env);
    env.write("writers.txt", &format!("ci:{WRITER}\n"));
    env.write("readers.txt", &format!("viewer:{READER}\n"));
    let server = Server::start(
        &env,
        &[
            "--token-file",
            "writers.txt",
            "--read-token-file",
            "readers.txt",
        ],
    );
    let variables =
        r#"{"name": "</textarea><script>alert(1)</script> \"Ada\" & co", "ticket": 42}"#;
    export(
        &server.base,
        Some(WRITER),
        None,
        vec![call(
            1,
            0xa1,
            1_780_000_000_000,
            "greet@v2",
            Some(variables),
            false,
        )],
    );
    wait_for_spans(&env, &[0xa1]);
    let before = super::dump(&env.db);
    let rw = login(&server, WRITER);
    let filled = "name=\"var.name\">\n&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt; \
                  &quot;Ada&quot; &amp; co</textarea>";
    for asked in [span_hex(0xa1), span_hex(0xa1).to_uppercase()] {
        let page = server.get_as(&format!("/prompts/greet/versions/1?span={asked}"), &rw);
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.text.contains(filled), "{}", page.text);
        assert_eq!(
            page.text.matches("<script>").count(),
            1,
            "the playground's own script only"
        );
        let line = format!(
            "<p class=\"muted small\" id=\"play-replay\">Variables from span <code>{}</code> of \
             trace <code>{}</code>, started 2026-05-28T20:26:40.000Z on greet v2. Not used by \
             this template, so left out: ticket.</p>",
            span_hex(0xa1),
            trace_hex(1)
        );
        assert!(page.text.contains(&line), "{}", page.text);
    }
    let empty = "name=\"var.name\">\n</textarea>";
    let plain = server.get_as("/prompts/greet/versions/1", &rw);
    assert!(plain.text.contains(empty) && !plain.text.contains("play-replay"));

    let unknown = server.get_as("/prompts/greet/versions/1?span=00000000000000ff", &rw);
    assert_eq!(unknown.status, 200, "{}", unknown.text);
    assert!(
        unknown
            .text
            .contains("no span 00000000000000ff is stored (it may be past the server&#39;s --trace-retention); the variables were not filled"),
        "{}",
        unknown.text
    );
    assert!(unknown.text.contains(empty) && !unknown.text.contains("play-replay"));
    let malformed = server.get_as(
        "/prompts/greet/versions/1?span=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &rw,
    );
    assert_eq!(malformed.status, 200, "{}", malformed.text);
    assert!(
        malformed.text.contains(
            "span &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;: a span id is 16 hexadecimal \
             digits"
        ),
        "{}",
        malformed.text
    );
    assert_eq!(malformed.text.matches("<script>").count(), 1);

    let ro = login(&server, READER);
    let read_only = server.get_as(
        &format!("/prompts/greet/versions/1?span={}", span_hex(0xa1)),
        &ro,
    );
    assert_eq!(read_only.status, 200);
    assert!(!read_only.text.contains("Ada") && !read_only.text.contains("play-replay"));
    assert_eq!(super::dump(&env.db), before, "a replay writes nothing");
}

#[test]
fn a_token_kept_in_the_store_logs_in_until_it_is_revoked() {
    let env = Env::new();
    store(&env);
    let secret = env
        .ok(&["token", "create", "alice", "--role", "write", "--quiet"])
        .trim()
        .to_string();
    let reader = env
        .ok(&["token", "create", "viewer", "--role", "read", "--quiet"])
        .trim()
        .to_string();
    // No token file: the store's tokens alone turn the login on.
    let server = Server::start(&env, &[]);
    assert_eq!(server.get("/prompts/greet").status, 303);
    let cookie = login(&server, &secret);
    let page = server.get_as("/prompts/greet", &cookie);
    assert_eq!(page.status, 200);
    assert!(page.text.contains("ui:alice"), "{}", page.text);
    assert!(
        page.text.contains("class=\"action\""),
        "a write token is offered actions"
    );
    let cookie = login(&server, &reader);
    let page = server.get_as("/prompts/greet", &cookie);
    assert!(
        !page.text.contains("class=\"action\""),
        "a read token is offered none"
    );
    env.ok(&["token", "revoke", "alice"]);
    let csrf = server.get("/login").csrf();
    let refused = server.post("/login", None, &[("token", &secret), ("csrf", &csrf)]);
    assert_eq!(refused.status, 401);
}
