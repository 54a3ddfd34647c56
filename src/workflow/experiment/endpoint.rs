//! The endpoint a run talks to: its URL checked as given, the HTTP client a run or a single
//! call uses, the probe that finds a missing server before anything is written, and the async
//! runtime. It must not touch the store or read a dataset.

use super::super::settings::MAX_TIMEOUT_SECS;
use crate::client::{Client, ClientConfig, DEFAULT_BASE_URL};
use crate::config::RunDefaults;
use crate::error::{Error, Result};
use crate::model::RunSettings;
use std::time::Duration;

/// Checks an endpoint URL as given: well formed, http(s), and free of credentials.
pub(super) fn check_endpoint(base_url: &str) -> Result<()> {
    // The base URL is stored with the experiment and shown; a key written into it would be
    // too. Refused without echoing the URL.
    if let Ok(url) = reqwest::Url::parse(base_url)
        && (!url.username().is_empty() || url.password().is_some())
    {
        return Err(
            Error::invalid("the endpoint URL carries credentials (user:password@)").with_hint(
                "remove them from --base-url / OPENAI_BASE_URL and put the key in OPENAI_API_KEY",
            ),
        );
    }
    crate::client::check_base_url(base_url).map_err(endpoint_error)
}

fn endpoint_error(e: crate::client::ConfigError) -> Error {
    Error::invalid(e.to_string())
        .with_hint("pass --base-url http://HOST:PORT/v1 or set OPENAI_BASE_URL")
}

/// The endpoint from the flag, the environment, or OpenAI's; the key only from the environment.
pub(in crate::workflow) fn client(base_url: &str, settings: &RunSettings) -> Result<Client> {
    check_endpoint(base_url)?;
    let mut config = ClientConfig::new(base_url);
    config.api_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config.timeout = Duration::from_secs_f64(settings.timeout_secs);
    config.max_retries = settings.max_retries;
    config.pool_size = settings.concurrency;
    config.max_rpm = settings.max_rpm;
    config.max_tpm = settings.max_tpm;
    Client::new(config).map_err(endpoint_error)
}

/// The endpoint of one call outside an experiment (`runner try`): the flag, runner.toml, then
/// `OPENAI_BASE_URL`, then OpenAI's; checked as an experiment's is.
pub fn endpoint(flag: Option<&str>, defaults: &RunDefaults) -> Result<String> {
    let base_url = flag
        .map(str::to_string)
        .or_else(|| defaults.base_url.clone())
        .or_else(|| {
            std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|u| !u.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    check_endpoint(&base_url)?;
    Ok(base_url.trim_end_matches('/').to_string())
}

/// A client for single calls with an experiment's key handling, timeout and retries.
pub fn call_client(base_url: &str, timeout_secs: f64, max_retries: u32) -> Result<Client> {
    if !(timeout_secs.is_finite() && timeout_secs > 0.0 && timeout_secs <= MAX_TIMEOUT_SECS) {
        return Err(Error::invalid(format!(
            "--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_SECS}"
        )));
    }
    let mut config = ClientConfig::new(base_url);
    config.api_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config.timeout = Duration::from_secs_f64(timeout_secs);
    config.max_retries = max_retries;
    config.pool_size = 2;
    Client::new(config).map_err(endpoint_error)
}

/// Connects once before anything is written, so an endpoint that is not there fails the run
/// at once (exit 3) with the store untouched.
pub(in crate::workflow) fn probe(runtime: &tokio::runtime::Runtime, base_url: &str) -> Result<()> {
    let url = reqwest::Url::parse(base_url).map_err(|e| Error::invalid(e.to_string()))?;
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((host.clone(), port));
    let reached =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), connect).await });
    match reached {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(base_url, &e.to_string())),
        Err(_) => Err(unreachable(base_url, "no answer within 10 s")),
    }
}

fn unreachable(base_url: &str, cause: &str) -> Error {
    Error::operational(format!("cannot reach the endpoint {base_url}: {cause}")).with_hint(
        "start the server, or fix --base-url / OPENAI_BASE_URL; `runner mock-server` serves a local endpoint",
    )
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::operational(format!("cannot start the async runtime: {e}")))
}
