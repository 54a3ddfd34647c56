//! What every CLI test module shares: the temporary folder and store of a test (`Env`), the
//! mock endpoint, and reading a store as another program would. Shared by the `cli`,
//! `cli_postgres` and `cli_remote` binaries.

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A temporary working folder with its own store.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// What the commands are given (`RUNNER_DB`): a file, a database, or the URL of the
    /// `runner serve` in front of one (the `cli_remote` binary).
    pub db: PathBuf,
    /// That server, with the token the commands send.
    remote: Option<RemoteServer>,
}

/// `runner serve` over a fresh PostgreSQL database, with one write token named `tester`,
/// stopped when its test ends.
struct RemoteServer {
    child: std::process::Child,
    /// Its URL: the key of its entry in `BACKING`, forgotten when it stops.
    url: String,
    token: String,
    /// An admin token of the server's store (imports, which may write any history).
    admin: String,
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        // Forgotten before it stops: once its port is free, the next server given it registers
        // the same URL, and that entry must stay.
        BACKING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(url, _)| *url != self.url);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store behind each live server's URL, for the helpers that read a store directly. A
/// port (and so a URL) is handed out again once its server stopped: an entry lives exactly as
/// long as its server.
static BACKING: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// The store `db` names: itself, or the database behind a test server's URL.
pub fn backing(db: &Path) -> PathBuf {
    let text = db.to_string_lossy();
    BACKING
        .lock()
        .unwrap()
        .iter()
        .find(|(url, _)| *url == text)
        .map(|(_, store)| store.clone())
        .unwrap_or_else(|| db.to_path_buf())
}

impl RemoteServer {
    /// Starts one at `bind` (a loopback address; port 0 for a free port) over `store`; returns
    /// it and its URL.
    fn start(dir: &Path, store: &str, bind: &str) -> (RemoteServer, String) {
        use std::io::BufRead;
        let token = format!("tok{}x{}", std::process::id(), fastrand_token());
        let admin = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
            .args([
                "--db", store, "token", "create", "admin", "--role", "admin", "--quiet",
            ])
            .current_dir(dir)
            .output()
            .expect("create an admin token");
        assert!(admin.status.success(), "{admin:?}");
        let admin = String::from_utf8(admin.stdout).unwrap().trim().to_string();
        let tokens = dir.join(".tokens");
        std::fs::write(&tokens, format!("tester:{token}\n")).unwrap();
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
            .args(["--db", store, "serve", "--bind", bind, "--token-file"])
            .arg(&tokens)
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start runner serve");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("runner serve said {first:?}"))
            .to_string();
        (
            RemoteServer {
                child,
                url: url.clone(),
                token,
                admin,
            },
            url,
        )
    }
}

/// 24 characters no other test's token shares.
fn fastrand_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}{:04}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env::behind("127.0.0.1:0")
    }

    /// As `new`, with the server on this loopback port: one a finished test's server had, say.
    /// Only the `cli_remote` tests have a server; elsewhere the port is not used.
    pub fn behind_port(port: u16) -> Env {
        Env::behind(&format!("127.0.0.1:{port}"))
    }

    fn behind(bind: &str) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = if crate::POSTGRES {
            PathBuf::from(super::postgres::fresh_database())
        } else {
            dir.path().join("runner.db")
        };
        if crate::REMOTE {
            let (server, url) = RemoteServer::start(dir.path(), db.to_str().unwrap(), bind);
            let mut backing = BACKING.lock().unwrap();
            backing.retain(|(known, _)| *known != url);
            backing.push((url.clone(), db));
            drop(backing);
            return Env {
                dir,
                db: PathBuf::from(url),
                remote: Some(server),
            };
        }
        Env {
            dir,
            db,
            remote: None,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write fixture");
        path
    }

    /// `runner` on this test's store (`RUNNER_DB`, which `--db` overrides) in the temp folder,
    /// with a fixed author.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"));
        cmd.current_dir(self.dir.path())
            .env("RUNNER_DB", &self.db)
            .env_remove("RUNNER_AUTHOR")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("COLUMNS")
            .env("USER", "tester")
            // The store's datasets are materialized in the user's cache: this test's own.
            .env("XDG_CACHE_HOME", self.dir.path().join(".cache"))
            .env("NO_COLOR", "1");
        match &self.remote {
            Some(server) => cmd.env("RUNNER_TOKEN", &server.token),
            None => cmd.env_remove("RUNNER_TOKEN"),
        };
        cmd.env_remove("RUNNER_TOKEN_FILE")
            .env_remove("RUNNER_PROFILE")
            .env("RUNNER_CONFIG_DIR", self.dir.path().join(".config"));
        cmd
    }

    /// What a command this test spawns by itself needs to reach the store: the token, when
    /// the store is behind a server.
    pub fn remote_env(&self) -> Vec<(&'static str, String)> {
        match &self.remote {
            Some(server) => vec![("RUNNER_TOKEN", server.token.clone())],
            None => Vec::new(),
        }
    }

    /// `ok` with an admin token behind a server (an import may write any history, so it
    /// takes the admin role there); the same as `ok` on a store opened directly.
    pub fn ok_as_admin(&self, args: &[&str]) -> String {
        let mut cmd = self.std_cmd();
        if let Some(server) = &self.remote {
            cmd.env("RUNNER_TOKEN", &server.admin);
        }
        let output = cmd.args(args).output().expect("run runner");
        assert!(
            output.status.success(),
            "runner {args:?} failed with {:?}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run runner")
    }

    /// Runs and expects exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "runner {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    /// Runs and returns parsed JSON from stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("runner {args:?}: bad JSON {e}: {text}"))
    }

    /// Runs and expects the given exit code; returns stderr. The store must be unchanged.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let before = dump(&self.db);
        let output = self.run(args);
        let stderr = String::from_utf8(output.stderr).expect("utf-8 stderr");
        assert_eq!(
            output.status.code(),
            Some(code),
            "runner {args:?}: expected exit {code}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(stderr.starts_with("error: "), "no error line: {stderr}");
        assert_eq!(dump(&self.db), before, "runner {args:?} changed the store");
        stderr
    }
}

/// A detached `runner mock-server` on a free loopback port, stopped when dropped (passed or
/// not).
pub struct Mock {
    pub url: String,
    pid: String,
}

impl Mock {
    /// Starts one with these extra flags (`--rpm 60`, `--chunk-ms 50`, `--responses FILE` …).
    pub fn start(env: &Env, extra: &[&str]) -> Mock {
        Mock::start_on(env, "0", extra)
    }

    /// As `start`, on this port (an endpoint coming back where it was).
    pub fn start_on(env: &Env, port: &str, extra: &[&str]) -> Mock {
        let mut args = vec!["mock-server", "--port", port, "--detach"];
        args.extend_from_slice(extra);
        // A port just given up may take a moment to be free again (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let out = loop {
            let out = env.run(&args);
            let busy = String::from_utf8_lossy(&out.stderr).contains("Address already in use");
            if out.status.success() || !busy || std::time::Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(out.status.success(), "{out:?}");
        let pid = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let stderr = String::from_utf8(out.stderr).unwrap();
        let url = stderr
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap()
            .trim_end_matches(',')
            .to_string();
        Mock { url, pid }
    }

    /// Its `GET /stats`: requests, in flight, most in flight, rate_limited.
    pub fn stats(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let host = self
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap();
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        write!(
            stream,
            "GET /stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
    }

    /// Chat requests it has answered so far.
    pub fn requests(&self) -> u64 {
        self.stats()["requests"].as_u64().unwrap()
    }
}

impl Drop for Mock {
    /// Stops it and waits (bounded) until it is gone, so its port is free again for a mock
    /// started on it next.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(&self.pid).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
            && std::time::Instant::now() < deadline
        {
            // A zombie of a detached process is reaped by init; its port is already closed.
            let state =
                std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
            if state.split_whitespace().nth(2) == Some("Z") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The actor recorded for a command run as `user`: the user, or behind a server the token's
/// name with the user after it.
pub fn actor(user: &str) -> String {
    if crate::REMOTE {
        format!("api:tester ({user})")
    } else {
        user.to_string()
    }
}

/// Whether `--db` names a PostgreSQL database.
pub fn is_postgres(db: &Path) -> bool {
    backing(db)
        .to_str()
        .is_some_and(|s| s.starts_with("postgres://"))
}

/// Rows of a query on the store, each a list of its columns as text (NULL as empty), read
/// as another program would: with SQLite's library or PostgreSQL's psql. None when the query
/// fails (no store yet, a table not there yet).
pub fn try_sql(db: &Path, query: &str) -> Option<Vec<Vec<String>>> {
    let db = &backing(db);
    if is_postgres(db) {
        let name = db.to_str().unwrap().rsplit('/').next().unwrap();
        let output = super::postgres::cluster()
            .psql_command(name, query)
            .args(["-F", "\u{1f}", "-R", "\u{1e}"])
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8(output.stdout).expect("utf-8 from psql");
        let text = text.strip_suffix('\n').unwrap_or(&text);
        return Some(
            text.split('\u{1e}')
                .filter(|row| !row.is_empty())
                .map(|row| row.split('\u{1f}').map(String::from).collect())
                .collect(),
        );
    }
    if !db.exists() {
        return None;
    }
    let conn = rusqlite::Connection::open(db).ok()?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).ok()?;
    let mut stmt = conn.prepare(query).ok()?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([]).ok()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ok()? {
        let values: Vec<String> = (0..columns)
            .map(|i| match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Null => String::new(),
                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                rusqlite::types::ValueRef::Real(x) => x.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
            })
            .collect();
        out.push(values);
    }
    Some(out)
}

/// `try_sql` that must succeed.
pub fn sql(db: &Path, query: &str) -> Vec<Vec<String>> {
    try_sql(db, query).unwrap_or_else(|| panic!("the store did not answer {query}"))
}

/// The one value a query returns.
pub fn sql_value(db: &Path, query: &str) -> String {
    let rows = sql(db, query);
    assert_eq!(rows.len(), 1, "{query}: {rows:?}");
    rows[0][0].clone()
}

/// After a crash: SQLite's own check of the file. A PostgreSQL server keeps its files
/// consistent whatever happens to a client, so there it is that every table still reads.
pub fn integrity(db: &Path) -> String {
    if is_postgres(db) {
        for table in [
            "prompts",
            "prompt_versions",
            "tags",
            "tag_events",
            "experiments",
            "results",
            "scores",
        ] {
            sql(db, &format!("SELECT COUNT(*) FROM {table}"));
        }
        return "ok".into();
    }
    sql_value(db, "PRAGMA integrity_check")
}

/// True (with a note on stderr) when this test is about an SQLite file's own behaviour
/// and the store is a PostgreSQL database; the PostgreSQL counterpart is named in `instead`.
pub fn sqlite_only(env: &Env, instead: &str) -> bool {
    if is_postgres(&env.db) {
        eprintln!("about the SQLite file only; on PostgreSQL: {instead}");
        return true;
    }
    false
}

/// Every row of every table, as text, to prove a failed command wrote nothing; but the lookup
/// roll-up: `runner serve` counts the lookups a test makes and writes the counts in the
/// background, whatever else the test checks.
pub fn dump(db: &Path) -> Vec<String> {
    every_row(db)
        .into_iter()
        .filter(|row| !row.starts_with("lookups: "))
        .collect()
}

/// Every row of every table, as text.
fn every_row(db: &Path) -> Vec<String> {
    if is_postgres(db) {
        let tables = sql(
            db,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        );
        let mut rows = Vec::new();
        for table in tables {
            let table = &table[0];
            for row in sql(db, &format!("SELECT t::text FROM {table} t ORDER BY 1")) {
                rows.push(format!("{table}: {}", row[0]));
            }
        }
        return rows;
    }
    if !db.exists() {
        return vec!["<no store>".into()];
    }
    let conn = rusqlite::Connection::open(db).expect("open store");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.retain(|t| !t.starts_with("sqlite_"));
    let mut rows = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let columns = stmt.column_count();
        let mut query = stmt.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let values: Vec<String> = (0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect();
            rows.push(format!("{table}: {}", values.join(" | ")));
        }
    }
    rows
}

/// A prompt whose rendered message is exactly the row's `query`, so a row can choose how the
/// test endpoint behaves for it.
pub fn echo_prompt(env: &Env) {
    env.ok(&[
        "prompt",
        "create",
        "echo",
        "--template",
        "{{query}}",
        "--model",
        "test-model",
    ]);
}

/// A CSV with ids `r0`, `r1`, …, the query, and the query again as the expected answer.
pub fn echo_dataset<S: AsRef<str>>(env: &Env, name: &str, queries: &[S]) -> String {
    let mut text = String::from("id,query,expected\n");
    for (i, q) in queries.iter().enumerate() {
        let quoted = q.as_ref().replace('"', "\"\"");
        text.push_str(&format!("r{i},\"{quoted}\",\"{quoted}\"\n"));
    }
    env.write(name, &text).to_str().unwrap().to_string()
}

/// Starts `runner experiment` of the `echo` prompt over `data` in the background (output
/// discarded) and waits, bounded, until it is listed with `status`; returns it and its id.
pub fn spawn_listed_experiment(
    env: &Env,
    data: &str,
    base: &str,
    concurrency: &str,
    status: &str,
) -> (std::process::Child, String) {
    let mut child = env
        .std_cmd()
        .args([
            "experiment",
            "--prompt",
            "echo",
            "--dataset",
            data,
            "--base-url",
            base,
            "--concurrency",
            concurrency,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the experiment was never listed as {status}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended too soon"
        );
        let listed = env.json(&["experiment", "list", "--json"]);
        if listed[0]["status"] == status {
            let id = listed[0]["id"].as_str().unwrap().to_string();
            return (child, id);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Milliseconds since the epoch as an RFC 3339 time, for `--since` and `--until`.
pub fn production_time(ms: u64) -> String {
    runner::production::time_text(ms as i64)
}
