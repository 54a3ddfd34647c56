//! `runner serve`: read the token files, check the bind address, open the store, then serve the
//! HTTP API until Ctrl-C or SIGTERM. It answers no request itself: the routes, the auth and the
//! connection limits in force are `server::serve`'s and `server::ui`'s, and a token file's format
//! is `access`'s.

use super::{Context, out};
use crate::cli::ServeArgs;
use crate::error::{Error, Result, exit};
use crate::serve::{self, Access, Limits, Settings, Tokens};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The largest timeout accepted, in seconds (a day): beyond it a timeout bounds nothing.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// The most connections accepted: each holds a file descriptor and a task.
const MAX_CONNECTIONS: usize = 65_536;

pub fn run(args: ServeArgs, ctx: &Context) -> Result<u8> {
    let bind = parse_bind(&args.bind)?;
    let limits = limits(&args)?;
    let mut tokens = read_tokens(&args)?;
    // Tokens kept in the store (`runner token create`) turn authentication on as token files
    // do; each request's token is looked up there when no file lists it.
    let now = time::OffsetDateTime::now_utc();
    // Read without creating the store (a refused bind must leave none behind); a store of an
    // older schema, which cannot hold tokens yet, has none.
    let stored = ctx
        .store_or_empty()?
        .api_tokens()
        .map(|tokens| tokens.iter().filter(|t| t.valid_at(now)).count())
        .unwrap_or(0);
    if tokens.is_none() && stored > 0 {
        tokens = Some(Tokens::default());
    }
    if tokens.is_none() && !bind.ip().is_loopback() {
        return Err(Error::invalid(format!(
            "refusing to serve on {bind} without authentication"
        ))
        .with_hint(
            "pass --token-file FILE (one token a line) to serve beyond this machine, \
             or bind a loopback address such as 127.0.0.1:6006",
        ));
    }
    let _log = crate::logging::init(args.log_format.parse().map_err(Error::invalid)?);
    let summary = match &tokens {
        None => "no authentication (loopback only)".to_string(),
        Some(tokens) => format!(
            "bearer tokens: {} deploy, {} read-write, {} read-only, {} ingest in token files; \
             {stored} valid in the store",
            tokens.count(Access::Deploy),
            tokens.count(Access::ReadWrite),
            tokens.count(Access::ReadOnly),
            tokens.count(Access::Ingest)
        ),
    };
    let ingest_settings = ingest_settings(&args)?;
    ctx.quiet_store();
    let store = ctx.store()?;
    let ingest = crate::ingest::Ingest::start(store.clone(), ingest_settings);
    let settings = Settings {
        store,
        tokens,
        config: ctx.config()?.clone(),
        body_limit: serve::DEFAULT_BODY_LIMIT,
        ingest: Some(ingest.clone()),
        trace_body_limit: serve::DEFAULT_TRACE_BODY_LIMIT,
    };
    let app = serve::router(settings).map_err(Error::operational)?;
    let deciding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let decider = decide_rollouts(
        ctx.store()?,
        ctx.config()?.tag_policy(),
        std::sync::Arc::clone(&deciding),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::operational(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
            Error::operational(format!("cannot listen on {bind}: {e}"))
                .with_hint("pick another --bind address or port (port 0 picks a free one)")
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::operational(e.to_string()))?;
        // Tests and scripts read the address from this first line (port 0 picks one).
        out(&format!(
            "runner serve listening on http://{address} (store {}); Ctrl-C stops it",
            crate::store::display_location(&ctx.location()?)
        ));
        tracing::info!(
            "{summary}; at most {} connections, header timeout {} s, idle timeout {} s",
            limits.max_connections,
            limits.header_timeout.as_secs_f64(),
            limits.idle_timeout.as_secs_f64()
        );
        serve::serve(listener, app, limits, shutdown_signal())
            .await
            .map_err(|e| Error::operational(format!("server failed: {e}")))
    })?;
    deciding.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = decider.join();
    // Spans already answered 200 are written before the process ends.
    ingest.close(Duration::from_secs(30));
    Ok(exit::OK)
}

/// How often the server looks for rollout looks that are due.
const DECIDE_EVERY: Duration = Duration::from_secs(2);

/// Takes the due looks of every running rollout, in the background, until `running` turns
/// false. Decisions are compare-and-sets in the store, so several servers on one store record
/// each decision once.
fn decide_rollouts(
    store: std::sync::Arc<dyn crate::store::Store>,
    policy: crate::store::TagPolicy,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("runner-rollouts".into())
        .spawn(move || {
            let mut waited = Duration::ZERO;
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
                if waited < DECIDE_EVERY {
                    continue;
                }
                waited = Duration::ZERO;
                let now = crate::trace::now_ms();
                match crate::workflow::canary::evaluate_all(
                    &*store,
                    None,
                    now,
                    &policy,
                    "runner serve",
                ) {
                    Ok(outcomes) => {
                        for o in outcomes.iter().filter(|o| o.recorded) {
                            tracing::info!(
                                rollout = %o.rollout,
                                prompt = %o.prompt,
                                tag = %o.tag,
                                look = o.look.look,
                                share = o.look.share,
                                decision = ?o.look.decision,
                                "rollout look"
                            );
                        }
                    }
                    Err(e) => tracing::error!("cannot evaluate rollouts: {e}"),
                }
            }
        })
        .expect("the rollout thread starts")
}

/// `--trace-retention` and `--ingest-queue`, checked.
fn ingest_settings(args: &ServeArgs) -> Result<crate::ingest::Settings> {
    let retention = super::settings::duration_of("--trace-retention", &args.trace_retention)?;
    if retention == 0 {
        return Err(Error::invalid("--trace-retention must be more than 0")
            .with_hint("for example --trace-retention 30d"));
    }
    if !(1..=10_000_000).contains(&args.ingest_queue) {
        return Err(Error::invalid(format!(
            "--ingest-queue must be from 1 to 10000000 spans, got {}",
            args.ingest_queue
        ))
        .with_hint(format!(
            "the default, {}, holds a few seconds of heavy traffic",
            crate::ingest::DEFAULT_QUEUE_SPANS
        )));
    }
    Ok(crate::ingest::Settings {
        queue_spans: args.ingest_queue,
        retention: Duration::from_secs(retention),
    })
}

/// `--header-timeout`, `--idle-timeout` and `--max-connections`, checked.
fn limits(args: &ServeArgs) -> Result<Limits> {
    let seconds = |flag: &str, value: f64| {
        if value > 0.0 && value <= MAX_TIMEOUT_SECS {
            Ok(Duration::from_secs_f64(value))
        } else {
            Err(Error::invalid(format!(
                "{flag} must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds, got {value}"
            ))
            .with_hint(format!("for example {flag} 10")))
        }
    };
    if !(1..=MAX_CONNECTIONS).contains(&args.max_connections) {
        return Err(Error::invalid(format!(
            "--max-connections must be from 1 to {MAX_CONNECTIONS}, got {}",
            args.max_connections
        ))
        .with_hint(format!(
            "the default, {}, suits most servers",
            serve::DEFAULT_MAX_CONNECTIONS
        )));
    }
    Ok(Limits {
        header_timeout: seconds("--header-timeout", args.header_timeout)?,
        idle_timeout: seconds("--idle-timeout", args.idle_timeout)?,
        max_connections: args.max_connections,
        body_limit: serve::DEFAULT_BODY_LIMIT,
    })
}

/// `IP:PORT`, `[IPv6]:PORT`, or `localhost:PORT`.
fn parse_bind(text: &str) -> Result<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Some(port) = text.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(
        Error::invalid(format!("invalid --bind '{text}': expected IP:PORT")).with_hint(
            "for example --bind 127.0.0.1:6006, or --bind 0.0.0.0:6006 with --token-file",
        ),
    )
}

fn read_tokens(args: &ServeArgs) -> Result<Option<Tokens>> {
    if args.token_file.is_none() && args.read_token_file.is_none() {
        return Ok(None);
    }
    let mut tokens = Tokens::default();
    for (path, access) in [
        (&args.token_file, Access::ReadWrite),
        (&args.read_token_file, Access::ReadOnly),
    ] {
        if let Some(path) = path {
            add_token_file(&mut tokens, path, access)?;
        }
    }
    Ok(Some(tokens))
}

fn add_token_file(tokens: &mut Tokens, path: &Path, access: Access) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!("cannot read token file {}: {e}", path.display()))
            .with_hint("check the path and that the file is UTF-8 text")
    })?;
    tokens.add_file(&text, access).map_err(|e| {
        Error::invalid(format!("invalid token file {}: {e}", path.display())).with_hint(
            "one token a line, TOKEN, NAME:TOKEN or deploy:NAME:TOKEN; \
             `openssl rand -hex 32` makes a good token",
        )
    })?;
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what service managers send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => {},
            () = terminate => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(
            parse_bind("127.0.0.1:6006").unwrap(),
            "127.0.0.1:6006".parse().unwrap()
        );
        assert_eq!(parse_bind("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(
            parse_bind("localhost:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        for bad in ["6006", "localhost", "example.com:80", "127.0.0.1:99999"] {
            assert!(parse_bind(bad).is_err(), "{bad}");
        }
    }

    /// The flags' defaults (written out in `cli`, which imports nothing of the server) are the
    /// server's own.
    #[test]
    fn the_flag_defaults_are_the_servers_limits() {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from(["runner", "serve"]);
        let crate::cli::Command::Serve(args) = cli.command else {
            panic!("serve parses as serve");
        };
        let limits = limits(&args).unwrap();
        let defaults = serve::Limits::default();
        assert_eq!(limits.header_timeout, defaults.header_timeout);
        assert_eq!(limits.idle_timeout, defaults.idle_timeout);
        assert_eq!(limits.max_connections, defaults.max_connections);
        assert_eq!(args.log_format, "text");
    }
}
