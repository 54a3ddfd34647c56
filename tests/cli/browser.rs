//! The web UI in a real headless Chromium, driven through `chromedriver` (the W3C WebDriver
//! protocol over HTTP on a loopback port): browse, search, a diff, a tag moved and rolled back,
//! a comparison filtered, log in and out, a read-only token offered no action, a prompt's
//! production traffic and one span. Every page is saved as a screenshot under
//! `target/ui-screenshots/`, at desktop and phone width, light and dark.
//!
//! Chromium and chromedriver are the distribution's packages (`.ci/run` installs them); when
//! they are missing the test fails, it does not skip.

use super::Env;
use super::ui::{READER, Server, WRITER};
use crate::fault_server::FaultServer;
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    base: String,
    // Dropped before the runtime its connections live on.
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start() -> Driver {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: install Debian's chromium and chromium-driver packages \
                 (`.ci/run` does)"
            );
        }
        runner::client::install_tls();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let (child, base) = Driver::spawn();
        let mut driver = Driver {
            child,
            base,
            http,
            runtime,
        };
        // A free port is released just before chromedriver takes it, so another test may take
        // it first: chromedriver then exits, and it starts again on another port (bounded).
        let mut attempts = 1;
        let mut deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = driver.http.get(format!("{}/status", driver.base));
            let ready = driver.runtime.block_on(async {
                match status.send().await {
                    Ok(reply) => reply.json::<Value>().await.ok(),
                    Err(_) => None,
                }
            });
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                return driver;
            }
            if let Ok(Some(exit)) = driver.child.try_wait() {
                assert!(
                    attempts < 5,
                    "chromedriver exited at once five times: {exit}"
                );
                attempts += 1;
                (driver.child, driver.base) = Driver::spawn();
                deadline = Instant::now() + Duration::from_secs(20);
                continue;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// chromedriver on a port that was free a moment ago, and its address.
    fn spawn() -> (Child, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        (child, format!("http://127.0.0.1:{port}"))
    }

    /// A new headless browser with a fresh profile.
    fn browser(&self, profile: &Path) -> Browser<'_> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,800",
        ];
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": all},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let reply = self.call("POST", "/session", Some(capabilities));
        let id = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_string();
        Browser { driver: self, id }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let reply: Value = self.runtime.block_on(async {
            request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"))
        });
        if let Some(error) = reply["value"]["error"].as_str() {
            panic!("{method} {path}: {error}: {}", reply["value"]["message"]);
        }
        reply.get("value").cloned().unwrap_or(Value::Null)
    }
}

/// One browser session.
struct Browser<'a> {
    driver: &'a Driver,
    id: String,
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let request = self
            .driver
            .http
            .delete(format!("{}/session/{}", self.driver.base, self.id));
        let _ = self.driver.runtime.block_on(async { request.send().await });
    }
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_string()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn find(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    fn count(&self, css: &str) -> usize {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/clear"), None);
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        );
    }

    fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Clicks what submits a form or follows a link and waits (bounded) until a new document
    /// is loaded at a URL containing `to`: a navigation may still be under way when a click
    /// returns, and the old page's URL may already contain `to` (the login page's own address
    /// starts with the library's), so the old document is marked first and must be gone.
    fn submit(&self, css: &str, to: &str) {
        self.execute("window.runnerStale = true; return true;", json!([]));
        self.click(css);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.execute(
                "return [location.href, document.readyState, window.runnerStale === true];",
                json!([]),
            );
            let at = state[0].as_str().unwrap_or_default().to_string();
            if at.contains(to) && state[1] == "complete" && state[2] == false {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {css}: at {at} ({}), never reached {to}",
                if state[2] == true {
                    "the old page"
                } else {
                    "a new page"
                }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn size(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    fn dark(&self, on: bool) {
        let value = if on { "dark" } else { "light" };
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": value}]
            }})),
        );
    }

    /// The console's errors since the last call (a script that failed, a resource refused,
    /// a Content-Security-Policy violation). The site has no icon: the browser's request for
    /// `/favicon.ico` is answered 404, which is not a page's error.
    fn console_errors(&self) -> Vec<String> {
        let entries = self.call("POST", "/se/log", Some(json!({"type": "browser"})));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .filter(|message| !message.contains("/favicon.ico "))
            .collect()
    }

    /// Runs `script` in the page with `args` (a JSON array): what it returns.
    fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// How many elements `css` matches that the page lays out (not `display: none`).
    fn shown(&self, css: &str) -> usize {
        let reply = self.execute(
            "return [...document.querySelectorAll(arguments[0])]\
                           .filter(e => e.getClientRects().length > 0).length;",
            json!([css]),
        );
        reply.as_u64().unwrap_or(0) as usize
    }

    /// How many elements `css` matches that the page lays out wholly inside the window's width
    /// and inside their drawing (an `<svg>` clips what runs past it), at least `min_px` CSS
    /// pixels tall: text a person can read without scrolling sideways.
    fn readable(&self, css: &str, min_px: f64) -> usize {
        let reply = self.execute(
            "return [...document.querySelectorAll(arguments[0])].filter(e => {\
                             const r = e.getBoundingClientRect();\
                             const box = e.ownerSVGElement\
                               ? e.ownerSVGElement.getBoundingClientRect()\
                               : { left: 0, right: window.innerWidth };\
                             return r.width > 0 && r.left >= Math.max(0, box.left)\
                                    && r.right <= Math.min(window.innerWidth, box.right)\
                                    && r.height >= arguments[1]; }).length;",
            json!([css, min_px]),
        );
        reply.as_u64().unwrap_or(0) as usize
    }

    /// How many elements `css` matches whose content is wider than they are (a table that
    /// would scroll sideways inside its box).
    fn too_wide(&self, css: &str) -> usize {
        let reply = self.execute(
            "return [...document.querySelectorAll(arguments[0])]\
                           .filter(e => e.scrollWidth > e.clientWidth + 1).length;",
            json!([css]),
        );
        reply.as_u64().unwrap_or(0) as usize
    }

    /// The page's width in CSS pixels beyond the window's: a layout that does not fit.
    fn overflow(&self) -> i64 {
        let reply = self.execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            json!([]),
        );
        reply.as_i64().unwrap_or(0)
    }

    /// The whole page, not only the window (at most 4,000 CSS pixels tall): a comparison's
    /// rows sit below the fold.
    fn screenshot(&self, name: &str) {
        // Right after the window is resized the page may not be laid out yet and measure 0
        // wide, which Chromium cannot capture: measure again until it has a size (bounded).
        let mut size = (0.0, 0.0);
        for _ in 0..100 {
            let metrics = self.call(
                "POST",
                "/goog/cdp/execute",
                Some(json!({"cmd": "Page.getLayoutMetrics", "params": {}})),
            );
            let content = &metrics["cssContentSize"];
            size = (
                content["width"].as_f64().unwrap_or(1280.0),
                content["height"].as_f64().unwrap_or(800.0).min(4000.0),
            );
            if size.0 >= 1.0 && size.1 >= 1.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let (width, height) = size;
        assert!(
            width >= 1.0 && height >= 1.0,
            "{name}: the page has no size to capture after 5 s ({width} x {height})"
        );
        let shot = self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Page.captureScreenshot", "params": {
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
            }})),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots")
}

/// A store with a chat prompt promoted through the gate (two experiments behind the move), made
/// by the real CLI against a local endpoint.
fn store(env: &Env, endpoint: &FaultServer) {
    env.write(
        "v1.json",
        r#"[{"role": "system", "content": "You are a support agent. Never answer <script>alert(1)</script>."},
            {"role": "user", "content": "I cannot help."}]"#,
    );
    env.write(
        "v2.json",
        r#"[{"role": "system", "content": "You are a friendly support agent. Be brief."},
            {"role": "user", "content": "About {{query}}"}]"#,
    );
    env.ok(&[
        "prompt",
        "create",
        "support",
        "--messages-file",
        "v1.json",
        "--model",
        "gpt-4o-mini",
        "--param",
        "temperature=0.2",
        "--meta",
        "team=care",
        "--description",
        "Answers customer questions",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "support",
        "--messages-file",
        "v2.json",
        "--tag",
        "staging",
        "-m",
        "Friendlier, answers the question",
    ]);
    for (name, text) in [
        ("billing", "Invoice {{id}} is due"),
        ("onboarding", "Welcome {{name}}"),
    ] {
        env.ok(&["prompt", "create", name, "--template", text, "--model", "m"]);
    }
    let mut data = String::from("id,query,expected\n");
    for (i, word) in [
        "order", "refund", "password", "invoice", "delivery", "account",
    ]
    .iter()
    .enumerate()
    {
        data.push_str(&format!("r{i},where is my {word},{word}\n"));
    }
    data.push_str("r6,<b>bold</b> question,nothing\n");
    let path = env.write("cases.csv", &data);
    env.ok(&[
        "promote",
        "--prompt",
        "support",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        path.to_str().unwrap(),
        "--base-url",
        &endpoint.base_url(),
        "--min-pass-rate",
        "0.5",
        "-m",
        "better answers on the support set",
    ]);
    // A later run in which one call was refused: listed as completed with errors.
    data.push_str("r7,refund fault=400:1000,refund\n");
    let path = env.write("cases-errors.csv", &data);
    env.ok(&[
        "experiment",
        "--prompt",
        "support",
        "--tag",
        "staging",
        "--dataset",
        path.to_str().unwrap(),
        "--base-url",
        &endpoint.base_url(),
        "--max-error-rate",
        "0.2",
    ]);
}

#[test]
fn the_ui_in_a_real_browser() {
    let env = Env::new();
    let endpoint = FaultServer::start(Duration::ZERO);
    store(&env, &endpoint);
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
    let base = server.base.clone();
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path());
    browser.size(1280, 800);

    // Log in with the read-only token: everything is visible, nothing can be changed.
    browser.open(&format!("{base}/prompts/support"));
    assert!(browser.url().contains("/login?next="), "{}", browser.url());
    browser.screenshot("login");
    browser.type_into("#token", READER);
    browser.submit("form[action='/login'] button", "/prompts/support");
    assert!(
        browser.url().ends_with("/prompts/support"),
        "{}",
        browser.url()
    );
    assert!(browser.text(".who").contains("read-only"));
    assert_eq!(
        browser.count("form.action"),
        0,
        "a read-only token is offered no action"
    );
    browser.screenshot("prompt-read-only");
    browser.submit("form[action='/logout'] button", "/login");

    // Log in with the write token.
    browser.type_into("#token", WRITER);
    browser.submit("form[action='/login'] button", &format!("{base}/"));
    assert_eq!(browser.url(), format!("{base}/"));
    assert!(browser.text(".who").contains("ui:ci"));
    browser.screenshot("library");

    // Search the library.
    browser.type_into("input[name='q']", "supp");
    browser.submit("form.filters button", "q=supp");

    assert_eq!(browser.count("table.list tbody tr"), 1);
    assert!(browser.source().contains("Answers customer questions"));
    browser.screenshot("library-search");

    // The prompt, a version, a diff.
    browser.submit("a[href='/prompts/support']", "/prompts/support");
    assert!(browser.text("h1").contains("support"));
    assert!(browser.text("#deployments").contains("gated"));
    browser.screenshot("prompt");
    browser.submit(
        "a[href='/prompts/support/versions/1']",
        "/prompts/support/versions/1",
    );
    assert_eq!(
        browser.count(".message"),
        2,
        "chat messages render as messages"
    );
    assert!(
        browser
            .text(".message.role-system")
            .contains("<script>alert(1)</script>")
    );
    browser.screenshot("version");
    browser.open(&format!("{base}/prompts/support/diff?from=1&to=2"));
    assert!(
        browser.count(".diff-line.ins mark") > 0,
        "word-level highlights"
    );
    browser.screenshot("diff");

    // Move a tag, see it in the history; roll production back with force and a reason.
    browser.open(&format!("{base}/prompts/support"));
    browser.click("details.act summary");
    browser.type_into("form[action$='/tags'] input[name='tag']", "canary");
    browser.click("form[action$='/tags'] input[name='confirm']");
    browser.submit("form[action$='/tags'] button", "#deployments");
    assert!(
        browser.url().ends_with("/prompts/support#deployments"),
        "{}",
        browser.url()
    );
    assert!(browser.text("#history").contains("canary"));
    let history = env.json(&["tag", "history", "support", "canary", "--json"]);
    assert_eq!(history[0]["actor"], "ui:ci");
    browser.screenshot("prompt-tag-moved");
    browser.click("details.act summary");
    browser.click("form[action$='/rollback'] select[name='tag'] option[value='production']");
    browser.click("form[action$='/rollback'] input[name='force']");
    browser.type_into(
        "form[action$='/rollback'] input[name='reason']",
        "the new answers confuse users",
    );
    browser.click("form[action$='/rollback'] input[name='confirm']");
    browser.submit("form[action$='/rollback'] button", "#deployments");
    assert!(
        browser
            .text("#history")
            .contains("the new answers confuse users")
    );
    let production = env.json(&["prompt", "show", "support", "--tag", "production", "--json"]);
    assert_eq!(production["seq"], 1);
    browser.screenshot("prompt-rolled-back");

    // Experiments, a comparison and its filters, one experiment's rows.
    browser.submit(
        "a[href='/prompts/support/experiments']",
        "/prompts/support/experiments",
    );
    assert_eq!(browser.count("svg polyline"), 1);
    assert!(browser.text("table.list").contains("completed with errors"));
    browser.screenshot("experiments");
    browser.submit("form[action='/compare'] button", "/compare?");
    assert!(
        browser
            .text("table.metrics")
            .contains("icontains pass rate")
    );
    // The promotion in the tag history links to its comparison, which shows the verdict.
    browser.open(&format!("{base}/prompts/support"));
    browser.submit("#history a[href^='/compare']", "/compare?");
    assert!(browser.text(".verdict-box").contains("production"));
    browser.screenshot("compare");
    browser.submit(".tabs a[href*='show=improved']", "show=improved");

    assert!(browser.count("table.compare tbody tr") >= 5);
    browser.screenshot("compare-improved");
    browser.submit(".tabs a[href*='show=regressed']", "show=regressed");
    assert!(
        browser
            .text("table.compare")
            .contains("no rows changed verdict")
    );
    browser.submit(".tabs a[href*='show=all']", "show=all");
    assert!(browser.text("body").contains("Every row"));
    assert!(browser.count("table.compare tbody tr .badge.unchanged") >= 1);
    browser.screenshot("compare-all");
    let compare_all = browser.url().replacen(&base, "", 1);
    browser.open(&format!("{base}/prompts/support/experiments"));
    browser.submit(
        "table.list tbody tr:first-child td:first-child a",
        "/experiments/",
    );
    browser.submit(".tabs a[href*='show=failed']", "show=failed");
    assert!(browser.text("table.rows").contains("r6"));
    browser.screenshot("experiment-failed");
    let experiment = browser.url().replacen(&base, "", 1);

    // Phone width and dark: every page fits the window.
    let pages = [
        ("library", "/".to_string()),
        ("prompt", "/prompts/support".to_string()),
        ("diff", "/prompts/support/diff?from=1&to=2".to_string()),
        ("experiments", "/prompts/support/experiments".to_string()),
        ("compare", compare_all),
        ("experiment", experiment),
    ];
    for (dark, suffix) in [(false, ""), (true, "-dark")] {
        browser.dark(dark);
        browser.size(390, 844);
        for (name, path) in &pages {
            browser.open(&format!("{base}{path}"));
            browser.screenshot(&format!("phone-{name}{suffix}"));
            assert!(browser.overflow() <= 0, "{name} is wider than a phone");
            // Every table reads as cards: none is cut at the window's edge, and each value
            // that has a column's name shows it.
            if *name != "diff" {
                assert!(browser.count(".scroll table") >= 1, "{name} has no table");
            }
            assert_eq!(browser.too_wide(".scroll"), 0, "a table on {name} is cut");
            assert_eq!(
                browser.count(".scroll td[data-label]:not(:empty)"),
                browser.readable(".scroll td[data-label]", 1.0),
                "a cell on {name} is out of view"
            );
            assert_eq!(browser.too_wide(".scroll td"), 0, "a cell on {name} is cut");
            if *name == "prompt" {
                assert_eq!(browser.count("#deployments .scroll, #versions .scroll"), 2);
            }
            if *name == "compare" {
                // The two sides of a row share its card's width; the links to the two
                // experiments, in the table's header on a page, stand above it.
                assert_eq!(browser.count("p.phone-only a[href^='/experiments/']"), 2);
                assert!(browser.readable("p.phone-only a", 9.0) == 2);
            }
        }
        browser.size(1280, 800);
        if dark {
            for (name, path) in &pages {
                browser.open(&format!("{base}{path}"));
                browser.screenshot(&format!("{name}-dark"));
            }
        }
    }
    browser.dark(false);

    // Log out: the pages ask for a login again.
    browser.submit("form[action='/logout'] button", "/login");
    browser.open(&format!("{base}/"));
    assert!(browser.url().contains("/login"), "{}", browser.url());
}

/// Polls (bounded) until `check` holds for the text of `css`; returns that text.
fn wait_for(browser: &Browser<'_>, css: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = browser.text(css);
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{css} never got there: {text:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_playground_streams_an_answer_in_a_real_browser() {
    let env = Env::new();
    let endpoint = FaultServer::start(Duration::ZERO);
    store(&env, &endpoint);
    let experiments = |env: &Env| {
        env.json(&["experiment", "list", "--json"])
            .as_array()
            .unwrap()
            .len()
    };
    let before = experiments(&env);
    // Each word of an answer 250 ms after the one before: the answer arrives over a second.
    let mock = super::Mock::start(&env, &["--chunk-ms", "250"]);
    let mock_url = mock.url.clone();
    env.write("writers.txt", &format!("ci:{WRITER}\n"));
    let server = Server::start_with(
        &env,
        &["--token-file", "writers.txt"],
        &[("OPENAI_BASE_URL", &mock_url)],
    );
    let base = server.base.clone();
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path());
    browser.size(1280, 1000);
    browser.open(&format!("{base}/prompts/support/versions/2"));
    browser.type_into("#token", WRITER);
    browser.submit(
        "form[action='/login'] button",
        "/prompts/support/versions/2",
    );

    // Fill the variables from a row of the dataset the promotion's experiments ran on.
    browser.click("#play details.act summary");
    browser.type_into("#playground input[name='row']", "r1");
    browser.submit("#playground button[value='fill']", "/versions/2/try");
    let query = browser.find("#playground textarea[name='var.query']");
    let value = browser.call("GET", &format!("/element/{query}/property/value"), None);
    assert_eq!(value, "where is my refund");

    // Run beside v1: the answer appears piece by piece, then its figures.
    browser.click("#playground select[name='other'] option[value='v1']");
    let at = browser.url();
    browser.click("#playground button[value='run']");
    let partial = wait_for(&browser, "#answer-this", |t| !t.is_empty());
    assert_ne!(
        partial, "About where is my refund",
        "the first words show before the answer is complete"
    );
    assert!(
        "About where is my refund".starts_with(&partial),
        "{partial}"
    );
    let figures = wait_for(&browser, "#figures-this", |t| t.contains("first token"));
    assert!(figures.contains("finish: stop"), "{figures}");
    assert_eq!(browser.text("#answer-this"), "About where is my refund");
    wait_for(&browser, "#figures-other", |t| t.contains("first token"));
    assert_eq!(browser.text("#answer-other"), "I cannot help.");
    assert!(browser.text("#side-other .label").contains("support v1"));
    assert_eq!(
        browser.url(),
        at,
        "the page stayed: the script ran the form"
    );
    browser.screenshot("playground-streamed");
    assert_eq!(experiments(&env), before, "a run records no experiment");
}

#[test]
fn the_production_views_in_a_real_browser() {
    use super::ui::production::{
        MINUTE, annotate, export, greet, llm_span, now_ms, span_hex, text, version, wait_for_spans,
    };
    let env = Env::new();
    greet(&env);
    let server = Server::start(&env, &[]);
    let base = server.base.clone();
    // Three hours of traffic: v1 first, then v2 erring more often; one span's output is hostile.
    let start = now_ms() - 180 * MINUTE;
    let mut spans: Vec<_> = (0..60u64)
        .map(|i| {
            let seq = if i < 40 { 1 } else { 2 };
            let error = if seq == 1 { i % 20 == 3 } else { i % 4 == 1 };
            llm_span(
                i + 1,
                start + i * 3 * MINUTE,
                150 + (i * 37) % 400,
                vec![version(seq)],
                error,
            )
        })
        .collect();
    spans.push(llm_span(
        61,
        start + 179 * MINUTE,
        420,
        vec![
            version(1),
            text("llm.prompt_template.variables", r#"{"name": "<b>Ann</b>"}"#),
            text("llm.input_messages.0.message.role", "system"),
            text("llm.input_messages.0.message.content", "Be brief"),
            text("llm.input_messages.1.message.role", "user"),
            text("llm.input_messages.1.message.content", "Hi"),
            text("llm.output_messages.0.message.role", "assistant"),
            text(
                "llm.output_messages.0.message.content",
                "<script>alert(1)</script> done",
            ),
        ],
        false,
    ));
    export(&server, spans);
    wait_for_spans(&env, 61);
    let scores: Vec<serde_json::Value> = (1..=60u64)
        .step_by(2)
        .map(|i| {
            json!({"span_id": span_hex(i), "name": "correctness", "annotator_kind": "LLM",
                   "result": {"score": if i <= 40 { 0.9 } else { 0.6 }}})
        })
        .collect();
    annotate(&server, json!(scores));

    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.browser(profile.path());
    browser.size(1280, 1000);

    // The prompt's Production section: the chart with a line per tag move, a row per version.
    browser.open(&format!("{base}/prompts/greet"));
    // Drawn wide for a page and narrow for a phone; a page shows the wide one.
    assert_eq!(
        browser.count("#production svg"),
        2,
        "{}",
        browser.text("main")
    );
    assert_eq!(browser.shown("#production svg"), 1);
    assert_eq!(browser.shown("#production svg.wide"), 1);
    assert_eq!(browser.count("#production svg.wide line.move"), 3);
    assert_eq!(browser.count("#production svg.wide .move-label"), 3);
    assert!(browser.count("#production svg.wide rect") >= 10);
    assert_eq!(browser.readable("#production svg.wide text.title", 10.0), 3);
    assert_eq!(browser.count("table.traffic-table tbody tr"), 2);
    assert!(browser.text("#production figcaption").contains("tag move"));
    assert!(
        browser
            .text("table.traffic-table tbody tr[data-version='1'] td.requests")
            .starts_with("41")
    );
    browser.screenshot("production");
    browser.submit("#production .tabs a[href*='window=7d']", "window=7d");
    assert!(browser.source().contains("Requests per 6 hours"));
    assert_eq!(browser.count("#production svg.wide line.move"), 3);
    assert_eq!(browser.console_errors(), Vec::<String>::new());

    // A version's spans, one opened: its messages, its output as text, its raw attributes.
    browser.open(&format!("{base}/prompts/greet/versions/1"));
    assert_eq!(browser.count("#spans table tbody tr"), 41);
    browser.screenshot("version-spans");
    browser.submit(
        &format!("#spans a[href='/spans/{}']", span_hex(61)),
        "/spans/",
    );
    assert!(browser.text("h1").contains("ChatCompletion"));
    assert_eq!(browser.count(".messages .message"), 2);
    assert_eq!(
        browser.text("pre.output"),
        "<script>alert(1)</script> done",
        "the output shows as text"
    );
    assert!(browser.text("table.variables").contains("<b>Ann</b>"));
    browser.click("details.raw summary");
    assert!(browser.text("details.raw pre").contains("llm.model_name"));
    assert_eq!(browser.text("a.replay"), "Replay in the playground");
    browser.screenshot("span");
    assert_eq!(browser.console_errors(), Vec::<String>::new());

    // Phone width and dark: both fit the window.
    let pages = [
        ("production", "/prompts/greet#production".to_string()),
        ("span", format!("/spans/{}", span_hex(61))),
        ("version", "/prompts/greet/versions/1".to_string()),
    ];
    for (dark, suffix) in [(false, ""), (true, "-dark")] {
        browser.dark(dark);
        for (width, height, size) in [(390, 844, "phone-"), (1280, 1000, "")] {
            browser.size(width, height);
            for (name, path) in &pages {
                browser.open(&format!("{base}{path}"));
                browser.screenshot(&format!("{size}{name}{suffix}"));
                assert!(browser.overflow() <= 0, "{name} is wider than the window");
                if width == 390 {
                    // Every table fits: the version's spans read as cards, none of their cells
                    // is cut, and each named value lies inside the window.
                    assert_eq!(browser.too_wide(".scroll"), 0, "a table on {name} is cut");
                    assert_eq!(browser.too_wide(".scroll td"), 0, "a cell on {name} is cut");
                    assert_eq!(
                        browser.count(".scroll td[data-label]:not(:empty)"),
                        browser.readable(".scroll td[data-label]", 1.0),
                        "a cell on {name} is out of view"
                    );
                }
                if *name == "production" && width == 390 {
                    // A phone shows the narrow drawing, its three panel titles and its times
                    // in the window at a legible size, and its three tag moves.
                    assert_eq!(browser.shown("#production svg.narrow"), 1);
                    assert_eq!(browser.shown("#production svg.wide"), 0);
                    assert_eq!(
                        browser.readable("#production svg.narrow text.title", 10.0),
                        3
                    );
                    // Every value and time label: 3 values on each of the 3 panels (the
                    // request axis labels whole counts only) and the times.
                    let axis = browser.count("#production svg.narrow text.axis");
                    assert!(axis >= 8, "{axis} axis labels");
                    assert_eq!(
                        browser.readable("#production svg.narrow text.axis", 9.0),
                        axis
                    );
                    assert_eq!(
                        browser.readable("#production svg.narrow .move-label", 9.0),
                        3
                    );
                    assert_eq!(browser.count("#production svg.narrow line.move"), 3);
                    // Each version's figures read as a card, not cut at the window's edge.
                    assert_eq!(browser.count("#production .scroll"), 1);
                    assert_eq!(browser.too_wide("#production .scroll"), 0);
                }
            }
        }
    }
    assert_eq!(browser.console_errors(), Vec::<String>::new());

    browser.open(&format!("{base}/spans/{}", span_hex(999)));
    assert_eq!(browser.text("h1"), "404 Not Found");
}
