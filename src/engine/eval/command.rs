//! External programs: `cmd:PROGRAM [ARGS...]`, run directly (never through a shell) with the
//! answer as JSON on stdin and a verdict expected on stdout.

use super::judge::parse_verdict;
use super::{EXCERPT, EvalInput, Kind, STDERR_EXCERPT, Score, error_score};
use crate::model::JsonObject;
use crate::text::one_line;
use serde::Serialize;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A `cmd:` evaluator that runs longer than this is killed and scored as an error.
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds memory if a command floods its pipes; the rest is drained so the child never blocks.
const CMD_STDOUT_LIMIT: u64 = 1 << 20;
const CMD_STDERR_LIMIT: u64 = 64 << 10;

/// Splits on whitespace only: quotes and shell syntax are not interpreted, because the
/// program is never run through a shell.
pub(super) fn prepare_cmd(command: &str) -> Result<Kind, String> {
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else {
        return Err("no program given: cmd:PROGRAM [ARGS...]".to_string());
    };
    check_program(program)?;
    Ok(Kind::Cmd {
        program: program.to_string(),
        args: words.map(str::to_string).collect(),
    })
}

fn check_program(program: &str) -> Result<(), String> {
    let path = Path::new(program);
    // Like the OS, a name with a separator is a path; a bare name is looked up on PATH.
    if path.components().count() > 1 {
        if !path.is_file() {
            return Err(format!("program '{program}' does not exist"));
        }
        if !is_executable(path) {
            return Err(format!("program '{program}' is not executable"));
        }
        return Ok(());
    }
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file() && is_executable(&candidate)
        })
    });
    if on_path {
        Ok(())
    } else {
        Err(format!(
            "program '{program}' not found (not a path to a file and not on PATH)"
        ))
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[derive(Serialize)]
struct CmdInput<'a> {
    vars: &'a JsonObject,
    output: &'a str,
    expected: Option<&'a str>,
}

pub(super) fn run_cmd(name: &str, program: &str, args: &[String], input: &EvalInput<'_>) -> Score {
    let mut payload = match serde_json::to_vec(&CmdInput {
        vars: input.vars,
        output: input.output,
        expected: input.expected,
    }) {
        Ok(p) => p,
        Err(e) => return error_score(name, format!("cannot encode the command's input: {e}")),
    };
    payload.push(b'\n');

    let mut child = match spawn(program, args) {
        Ok(child) => child,
        Err(e) => return error_score(name, format!("cannot start '{program}': {e}")),
    };
    let deadline = Instant::now() + CMD_TIMEOUT;

    // stdin, stdout and stderr are serviced on their own threads so a child that writes
    // before it reads (or never reads) cannot deadlock against us.
    if let Some(mut stdin) = child.stdin.take() {
        let spawned = thread::Builder::new()
            .name("eval-cmd-stdin".to_string())
            .spawn(move || {
                // A child that exits without reading stdin is its own business: EPIPE is fine.
                let _ = stdin.write_all(&payload);
            });
        if let Err(e) = spawned {
            kill(&mut child);
            return error_score(name, format!("cannot feed '{program}': {e}"));
        }
    }
    let stdout = child.stdout.take().map(|s| drain(s, CMD_STDOUT_LIMIT));
    let stderr = child.stderr.take().map(|s| drain(s, CMD_STDERR_LIMIT));
    let (stdout, stderr) = match (stdout, stderr) {
        (Some(Ok(out)), Some(Ok(err))) => (out, err),
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            kill(&mut child);
            return error_score(name, format!("cannot read from '{program}': {e}"));
        }
        _ => {
            kill(&mut child);
            return error_score(name, format!("'{program}' has no output pipes"));
        }
    };

    let status = wait_until(&mut child, deadline);
    // A grandchild that inherited the pipes can keep them open after the child exits (or is
    // killed, since only the child is killed); the readers are then abandoned at the deadline.
    let grace = Duration::from_millis(200);
    let collect = |rx: &mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(grace),
        )
        .ok()
    };
    let err_bytes = collect(&stderr).unwrap_or_default();
    let stderr_note = stderr_note(&err_bytes);

    let status = match status {
        Ok(Some(status)) => status,
        Ok(None) => {
            return error_score(
                name,
                format!(
                    "command timed out after {} s and was killed{stderr_note}",
                    CMD_TIMEOUT.as_secs()
                ),
            );
        }
        Err(e) => {
            return error_score(
                name,
                format!("cannot wait for '{program}': {e}{stderr_note}"),
            );
        }
    };
    if !status.success() {
        return error_score(
            name,
            format!("command failed ({}){stderr_note}", describe_status(status)),
        );
    }
    let Some(out_bytes) = collect(&stdout) else {
        return error_score(
            name,
            format!(
                "command's stdout stayed open past the {} s timeout{stderr_note}",
                CMD_TIMEOUT.as_secs()
            ),
        );
    };
    let out = String::from_utf8_lossy(&out_bytes);
    match parse_verdict(&out) {
        Ok(v) => v.into_score(name, "the command gave no reason"),
        Err(why) => error_score(
            name,
            format!(
                "invalid command output: {why}; stdout was \"{}\"{stderr_note}",
                one_line(out.trim(), EXCERPT)
            ),
        ),
    }
}

/// What a scorer program inherits of runner's environment: enough to find programs, read
/// files and format text, and nothing else: no API key, no token, no other secret.
const INHERITED: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

fn spawn(program: &str, args: &[String]) -> io::Result<Child> {
    let mut command = Command::new(program);
    command.env_clear();
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // ETXTBSY: another thread forked while a freshly written script was still open for
    // writing; the inherited descriptor closes at that child's exec, so retrying succeeds.
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempt < 5 => {
                attempt += 1;
                thread::sleep(Duration::from_millis(10 * attempt));
            }
            result => return result,
        }
    }
}

/// Reads up to `limit` bytes, then discards the rest so the child never blocks on a full pipe.
fn drain<R: Read + Send + 'static>(
    mut reader: R,
    limit: u64,
) -> io::Result<mpsc::Receiver<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("eval-cmd-output".to_string())
        .spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut reader).take(limit).read_to_end(&mut buf);
            let _ = io::copy(&mut reader, &mut io::sink());
            let _ = tx.send(buf);
        })?;
    Ok(rx)
}

/// Waits for the child until `deadline`, then kills it. `Ok(None)` means it timed out.
/// Polls with a short backoff because std offers no wait-with-timeout on a child.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) => {}
            Err(e) => {
                kill(child);
                return Err(e);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill(child);
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    // Reap it so no zombie is left behind.
    let _ = child.wait();
}

fn describe_status(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("{status}"),
    }
}

fn stderr_note(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; stderr: \"{}\"", one_line(text, STDERR_EXCERPT))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::eval::Evaluator;
    use crate::eval::tests::{check_invariants, prepare_err, vars, write};
    use serde_json::{Value, json};
    use std::fs;
    use std::path::PathBuf;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = write(dir, name, &format!("#!/bin/sh\n{body}\n"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn run_cmd_spec(spec: &str, vars: &JsonObject, output: &str, expected: Option<&str>) -> Score {
        let ev = Evaluator::prepare(spec).unwrap();
        assert!(!ev.needs_expected() && !ev.is_judge());
        let s = ev.score(&EvalInput {
            vars,
            output,
            expected,
            latency_ms: 1.0,
            tool_calls: crate::eval::NO_CALLS,
            tools: None,
        });
        check_invariants(&s, spec);
        s
    }

    #[test]
    fn cmd_scores_through_stdin_and_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let pass = script(
            dir.path(),
            "pass.sh",
            r#"if grep -q '"output":"Paris is the capital"'; then
  echo '{"score": 0.75, "pass": true, "reason": "saw the output"}'
else
  echo '{"score": 0, "pass": false, "reason": "output missing"}'
fi"#,
        );
        let spec = format!("cmd:{}", pass.display());
        let s = run_cmd_spec(&spec, &vars(), "Paris is the capital", Some("Paris"));
        assert_eq!((s.score, s.pass, s.error), (0.75, true, false), "{s:?}");
        assert_eq!(s.reason, "saw the output");
        let s = run_cmd_spec(&spec, &vars(), "London", None);
        assert_eq!(
            (s.pass, s.error, s.reason.as_str()),
            (false, false, "output missing")
        );

        let cases = [
            ("fail.sh", "echo 'boom happened' >&2; exit 1", "exit code 1"),
            (
                "garbage.sh",
                "echo 'I think it passes'; echo 'warn' >&2",
                "invalid command output",
            ),
            (
                "range.sh",
                r#"echo '{"score": 2, "pass": true}'"#,
                "invalid command output",
            ),
            ("silent.sh", "exit 0", "invalid command output"),
        ];
        for (name, body, needle) in cases {
            let path = script(dir.path(), name, body);
            let s = run_cmd_spec(&format!("cmd:{}", path.display()), &vars(), "x", None);
            assert!(s.error && !s.pass && s.score == 0.0, "{name}: {s:?}");
            assert!(s.reason.contains(needle), "{name}: {s:?}");
        }
        let fail = script(dir.path(), "fail2.sh", "printf '%0500d' 0 >&2; exit 3");
        let s = run_cmd_spec(&format!("cmd:{}", fail.display()), &vars(), "x", None);
        assert!(
            s.reason.contains("exit code 3") && s.reason.contains("stderr: \"000"),
            "{s:?}"
        );
        assert!(s.reason.len() < 320, "stderr excerpt is capped: {s:?}");
        let garbage = dir.path().join("garbage.sh");
        let s = run_cmd_spec(&format!("cmd:{}", garbage.display()), &vars(), "x", None);
        assert!(
            s.reason.contains("I think it passes") && s.reason.contains("warn"),
            "{s:?}"
        );
    }

    #[test]
    fn cmd_prepare_checks_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sh");
        assert!(prepare_err(&format!("cmd:{}", missing.display())).contains("does not exist"));
        let plain = write(dir.path(), "plain.sh", "#!/bin/sh\n");
        assert!(prepare_err(&format!("cmd:{}", plain.display())).contains("not executable"));
        // A bare name is looked up on PATH.
        Evaluator::prepare("cmd:sh -c true").unwrap();
    }

    #[test]
    fn cmd_never_uses_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let args_file = dir.path().join("args.txt");
        let stdin_file = dir.path().join("stdin.json");
        let recorder = script(
            dir.path(),
            "record.sh",
            &format!(
                "printf '%s\\n' \"$@\" > '{}'\ncat > '{}'\necho '{{\"score\": 1, \"pass\": true, \"reason\": \"recorded\"}}'",
                args_file.display(),
                stdin_file.display()
            ),
        );
        let pwned = dir.path().join("PWNED");
        let spec = format!(
            "cmd:{} $(touch {}) `touch {}` ; && |",
            recorder.display(),
            pwned.display(),
            pwned.display()
        );
        let canary = write(dir.path(), "canary", "still here");
        let mut vars = JsonObject::new();
        vars.insert(
            "q".to_string(),
            json!(format!("; rm -rf {}", canary.display())),
        );
        let output = format!("$(touch {}); rm -rf {}", pwned.display(), canary.display());
        let s = run_cmd_spec(&spec, &vars, &output, Some("`touch x`"));
        assert!(s.pass && !s.error, "{s:?}");

        // Arguments are split on whitespace and passed literally.
        let args = fs::read_to_string(&args_file).unwrap();
        let args: Vec<&str> = args.lines().collect();
        let expected_args = format!(
            "$(touch {}) `touch {}` ; && |",
            pwned.display(),
            pwned.display()
        );
        assert_eq!(args.join(" "), expected_args);
        assert_eq!(args[0], "$(touch");
        // Data reaches the program only as JSON on stdin.
        let received: Value =
            serde_json::from_str(&fs::read_to_string(&stdin_file).unwrap()).unwrap();
        assert_eq!(
            received,
            json!({"vars": vars, "output": output, "expected": "`touch x`"})
        );
        let s = run_cmd_spec(&spec, &vars, "x", None);
        assert!(s.pass, "{s:?}");
        let received: Value =
            serde_json::from_str(&fs::read_to_string(&stdin_file).unwrap()).unwrap();
        assert_eq!(received["expected"], Value::Null);

        assert!(!pwned.exists() && !Path::new("PWNED").exists());
        assert!(canary.exists());
    }
}
