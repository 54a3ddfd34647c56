//! The `runner` binary: parse, run, map the outcome to an exit code. It must hold nothing else:
//! every command is `commands::run`'s, and the only lines it writes are a failure's `error:`,
//! `Caused by:` and `hint:` lines on stderr.

use std::process::ExitCode;

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
