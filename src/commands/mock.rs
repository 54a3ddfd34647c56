//! `runner mock-server`: the runner's own deterministic endpoint, on loopback. It holds no part of
//! the endpoint and never opens the store: rules, limits and answers are `engine::mock`'s; this
//! file only starts it, here or as a detached child.

use super::out;
use crate::cli::MockServerArgs;
use crate::error::{Error, Result, exit};
use std::time::Duration;

pub fn run(args: MockServerArgs) -> Result<u8> {
    // Checked here even when detaching, so a bad file is exit 2 before anything starts.
    let rules = match &args.responses {
        Some(path) => crate::mock::load_rules(path).map_err(|e| {
            Error::invalid(e.to_string()).with_hint(
                "a rules file is a JSON or YAML list of {\"pattern\": REGEX, \"reply\": TEXT}",
            )
        })?,
        None => Vec::new(),
    };
    for (flag, value) in [("--rpm", args.rpm), ("--tpm", args.tpm)] {
        if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(
                Error::invalid(format!("{flag} must be a positive number per minute"))
                    .with_hint("e.g. --rpm 1200 --tpm 90000"),
            );
        }
    }
    if args
        .burst_secs
        .is_some_and(|b| !(b.is_finite() && b > 0.0 && b <= 3600.0))
    {
        return Err(Error::invalid(
            "--burst-secs must be a number of seconds above 0, at most 3600",
        )
        .with_hint("e.g. --rpm 600 --burst-secs 10: 100 requests at once, then 10 a second"));
    }
    if args.detach {
        return detach(&args);
    }
    let config = crate::mock::MockConfig {
        latency: Duration::from_millis(args.latency_ms),
        rules,
        rpm: args.rpm,
        tpm: args.tpm,
        chunk: Duration::from_millis(args.chunk_ms),
        priced: args.priced,
        burst: args.burst_secs.map(Duration::from_secs_f64),
    };
    let runtime = crate::workflow::experiment::runtime()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| {
                Error::operational(format!("cannot listen on 127.0.0.1:{}: {e}", args.port))
                    .with_hint("pick another --port (0 picks a free one)")
            })?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::operational(e.to_string()))?;
        out(&format!(
            "mock endpoint listening on http://{address}/v1 (latency {} ms); Ctrl-C stops it",
            args.latency_ms
        ));
        crate::mock::serve(listener, config, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Error::operational(format!("mock endpoint failed: {e}")))
    })?;
    Ok(exit::OK)
}

/// Starts the endpoint as a child process of its own and returns once it listens, printing
/// the child's pid: a script (or the walkthrough in docs/prompts-as-code.md) gets an endpoint that is ready,
/// without a sleep, and stops it with `kill PID`.
fn detach(args: &MockServerArgs) -> Result<u8> {
    use std::io::{BufRead, Read};
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()
        .map_err(|e| Error::operational(format!("cannot find runner's own program: {e}")))?;
    let mut command = Command::new(exe);
    command
        .arg("mock-server")
        .arg("--port")
        .arg(args.port.to_string())
        .arg("--latency-ms")
        .arg(args.latency_ms.to_string())
        .arg("--chunk-ms")
        .arg(args.chunk_ms.to_string());
    if let Some(path) = &args.responses {
        command.arg("--responses").arg(path);
    }
    if let Some(rpm) = args.rpm {
        command.arg("--rpm").arg(rpm.to_string());
    }
    if args.priced {
        command.arg("--priced");
    }
    if let Some(burst) = args.burst_secs {
        command.arg("--burst-secs").arg(burst.to_string());
    }
    if let Some(tpm) = args.tpm {
        command.arg("--tpm").arg(tpm.to_string());
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        // Its own process group: a Ctrl-C meant for the shell's next command leaves it be.
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command
        .spawn()
        .map_err(|e| Error::operational(format!("cannot start the mock endpoint: {e}")))?;
    let mut first = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = std::io::BufReader::new(stdout).read_line(&mut first);
    }
    if !first.contains("listening on") {
        // It stopped before listening: its own error says why (a bad rules file, a busy port).
        let _ = child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let reason = stderr
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or("it exited before listening")
            .to_string();
        return Err(
            Error::operational(format!("the mock endpoint did not start: {reason}"))
                .with_hint("pick another --port, or check the --responses file"),
        );
    }
    let pid = child.id();
    let listening = first.trim().trim_end_matches("; Ctrl-C stops it");
    crate::note!("{listening}, pid {pid}: stop it with `kill {pid}`");
    out(&pid.to_string());
    Ok(exit::OK)
}
