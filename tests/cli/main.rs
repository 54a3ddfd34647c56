//! End-to-end tests: the real `runner` binary against a fresh temporary store per test.

mod browser;
mod experiments;
mod fault_server;
mod first_hour;
mod promote;
mod prompt_store;
mod reliability;
mod security;
mod serve;
mod ui;

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A temporary working folder with its own store.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("runner.db");
        Env { dir, db }
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
            .env("NO_COLOR", "1");
        cmd
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

/// Every row of every table, as text, to prove a failed command wrote nothing.
pub fn dump(db: &Path) -> Vec<String> {
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
