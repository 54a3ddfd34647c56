//! `runner mock-server`: the runner's own deterministic endpoint, on loopback.

use super::out;
use crate::cli::MockServerArgs;
use crate::error::{Error, Result, exit};
use std::time::Duration;

pub fn run(args: MockServerArgs) -> Result<u8> {
    let rules = match &args.responses {
        Some(path) => crate::mock::load_rules(path).map_err(|e| {
            Error::invalid(e.to_string()).with_hint(
                "a rules file is a JSON or YAML list of {\"pattern\": REGEX, \"reply\": TEXT}",
            )
        })?,
        None => Vec::new(),
    };
    let config = crate::mock::MockConfig {
        latency: Duration::from_millis(args.latency_ms),
        rules,
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
