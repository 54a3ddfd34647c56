//! The `runner` binary: parse, run, map the outcome to an exit code. It must hold nothing else:
//! every command is `commands::run`'s, and the only lines it writes are a failure's `error:`,
//! `Caused by:` and `hint:` lines on stderr.

use std::process::ExitCode;

/// mimalloc instead of the system's allocator: glibc's malloc and free (with their
/// consolidation) were about a tenth of an experiment's CPU at latency 0 and a fifth of span
/// ingest's. Built without transparent huge pages, which otherwise made the peak RSS of a
/// 10,000-row experiment 56 MB instead of 36 (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = runner::cli::parse();
    match runner::commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            runner::note!("error: {error}");
            for cause in error.causes() {
                runner::note!("  Caused by: {cause}");
            }
            if let Some(hint) = error.hint() {
                runner::note!("hint: {hint}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}
