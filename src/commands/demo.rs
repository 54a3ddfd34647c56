//! `runner demo`: the whole loop, offline, in a folder of its own. It starts the mock endpoint
//! in-process and runs the real `runner` commands one after another, printing each first, so
//! what it shows is exactly what a user would type. It never opens a store itself and holds no step
//! of its own: every step is a real command in a child process, against the demo folder's own
//! `runner.db`.

use super::{Context, out};
use crate::cli::DemoArgs;
use crate::error::{Error, Result, exit};
use crate::mock::{MockConfig, Rule};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DATASET: &str = "id,company_name,query,expected
1,Acme,Where is my order?,order
2,Acme,How do I reset my password?,password
3,Acme,Can I get a refund for a damaged item?,refund
4,Acme,Why was I charged twice this month?,charged
5,Acme,Do you ship to Canada?,Canada
6,Acme,How do I change the email on my account?,email
7,Acme,\"My invoice says \"\"pending\"\", what does that mean?\",pending
8,Acme,Can I upgrade my plan mid-cycle?,upgrade
";

/// The mock's replies: v1 answers generically (misses the topic), v2 names the topic, v3 only
/// says "OK".
fn rules() -> Vec<Rule> {
    let rule = Rule::new;
    vec![
        rule("^Reply with OK", "OK"),
        rule(
            "Name the topic\\..*\\b(order|password|refund|charged|Canada|email|pending|upgrade)\\b",
            "About your $1: here is exactly what to do next.",
        ),
        rule(
            "^Answer briefly",
            "Thanks for reaching out! We will get back to you.",
        ),
    ]
}

struct Step<'a> {
    exe: &'a Path,
    dir: &'a Path,
}

impl Step<'_> {
    /// Prints the command, runs it, shows its output, and returns its exit code.
    fn run(&self, args: &[&str]) -> Result<i32> {
        out(&format!("\n$ runner {}", shell_words(args)));
        let output = Command::new(self.exe)
            .args(args)
            .current_dir(self.dir)
            .env("RUNNER_DB", self.dir.join("runner.db"))
            .env_remove("OPENAI_API_KEY")
            .output()
            .map_err(|e| Error::operational(format!("cannot run {}: {e}", self.exe.display())))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !stdout.trim().is_empty() {
            out(stdout.trim_end());
        }
        // Progress lines are noise here; errors are not.
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            if line.starts_with("error:") || line.starts_with("hint:") {
                crate::note!("{line}");
            }
        }
        Ok(output.status.code().unwrap_or(-1))
    }

    fn expect(&self, args: &[&str], code: i32) -> Result<()> {
        let got = self.run(args)?;
        if got != code {
            return Err(Error::operational(format!(
                "demo step `runner {}` exited {got}, expected {code}",
                shell_words(args)
            )));
        }
        Ok(())
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,".contains(c))
            {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn demo_dir(args: &DemoArgs) -> Result<PathBuf> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!(
            "runner-demo-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        )),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::operational(format!("cannot create {}: {e}", dir.display())))?;
    // Absolute: the steps run inside the folder.
    let dir = std::fs::canonicalize(&dir)
        .map_err(|e| Error::operational(format!("cannot resolve {}: {e}", dir.display())))?;
    if dir.join("runner.db").exists() {
        return Err(
            Error::invalid(format!("{} already holds a runner.db", dir.display()))
                .with_hint("give --dir an empty folder"),
        );
    }
    Ok(dir)
}

pub fn run(args: DemoArgs, _ctx: &Context) -> Result<u8> {
    let dir = demo_dir(&args)?;
    std::fs::write(dir.join("queries.csv"), DATASET)
        .map_err(|e| Error::operational(format!("cannot write the demo dataset: {e}")))?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::operational(format!("cannot find the runner executable: {e}")))?;

    // The mock endpoint, in-process on a free loopback port.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::operational(format!("cannot start the async runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| Error::operational(format!("cannot open a loopback port: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::operational(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = MockConfig {
        chunk: std::time::Duration::ZERO,
        latency: Duration::from_millis(20),
        rules: rules(),
        ..Default::default()
    };
    let server = runtime.spawn(crate::mock::serve(listener, config, async {
        let _ = stopped.await;
    }));
    let base = format!("http://{address}/v1");

    out(&format!(
        "runner demo: a prompt, three versions, experiments, a comparison and two promotions,\n\
         against a mock endpoint at {base}, in {}",
        dir.display()
    ));
    let step = Step {
        exe: &exe,
        dir: &dir,
    };
    let result = (|| -> Result<()> {
        step.expect(
            &[
                "prompt",
                "create",
                "support_greeting",
                "--model",
                "gpt-4o-mini",
                "--param",
                "temperature=0.2",
                "--template",
                "Answer briefly: {{query}}",
                "-m",
                "First draft",
                "--tag",
                "production",
            ],
            0,
        )?;
        step.expect(
            &[
                "prompt",
                "update",
                "support_greeting",
                "--template",
                "You are a support agent for {{company_name}}. Name the topic. {{query}}",
                "-m",
                "Name the topic",
                "--tag",
                "staging",
            ],
            0,
        )?;
        step.expect(
            &[
                "prompt",
                "diff",
                "support_greeting",
                "production",
                "staging",
            ],
            0,
        )?;
        step.expect(
            &[
                "experiment",
                "--prompt",
                "support_greeting",
                "--tag",
                "production",
                "--dataset",
                "queries.csv",
                "--base-url",
                &base,
            ],
            0,
        )?;
        step.expect(
            &[
                "experiment",
                "--prompt",
                "support_greeting",
                "--tag",
                "staging",
                "--dataset",
                "queries.csv",
                "--base-url",
                &base,
            ],
            0,
        )?;
        step.expect(
            &[
                "compare",
                "--prompt",
                "support_greeting",
                "--tags",
                "production,staging",
                "--dataset",
                "queries.csv",
                "--base-url",
                &base,
                "--rows",
                "3",
            ],
            0,
        )?;
        out("\n# staging is better: the gate passes and production moves to v2.");
        step.expect(
            &[
                "promote",
                "--prompt",
                "support_greeting",
                "--from",
                "staging",
                "--to",
                "production",
                "--dataset",
                "queries.csv",
                "--base-url",
                &base,
                "--min-pass-rate",
                "0.9",
                "--no-new-failures",
                "-m",
                "Names the topic",
            ],
            0,
        )?;
        out("\n# v3 is worse: the gate fails (exit 1) and production stays on v2.");
        step.expect(
            &[
                "prompt",
                "update",
                "support_greeting",
                "--template",
                "Reply with OK. {{query}}",
                "-m",
                "Shorter",
                "--tag",
                "staging",
            ],
            0,
        )?;
        step.expect(
            &[
                "promote",
                "--prompt",
                "support_greeting",
                "--from",
                "staging",
                "--to",
                "production",
                "--dataset",
                "queries.csv",
                "--base-url",
                &base,
                "--min-pass-rate",
                "0.9",
                "--no-new-failures",
            ],
            1,
        )?;
        step.expect(&["tag", "history", "support_greeting", "production"], 0)?;
        Ok(())
    })();
    let _ = stop.send(());
    let _ = runtime.block_on(server);
    result?;
    out(&format!(
        "\nDone. The store is {}; try `runner --db {} experiment list`.",
        dir.join("runner.db").display(),
        dir.join("runner.db").display()
    ));
    Ok(exit::OK)
}
