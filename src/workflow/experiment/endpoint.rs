//! The connection a run makes: the HTTP client a run or a single call uses (its URL checked
//! again, for one read back from the store), the probe that finds a missing server before
//! anything is written, and the async runtime. How the URL is chosen and checked belongs to
//! `workflow::settings`; this file must not touch the store, read a dataset or parse flags.

use super::super::settings::{check_endpoint, check_timeout, endpoint_error};
use crate::client::{Client, ClientConfig};
use crate::error::{Error, Result};
use crate::model::RunSettings;
use std::time::Duration;

/// The endpoint from the flag, the environment, or OpenAI's; the key only from the environment.
pub(in crate::workflow) fn client(base_url: &str, settings: &RunSettings) -> Result<Client> {
    check_endpoint(base_url)?;
    let mut config = ClientConfig::new(base_url);
    config.api_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    // A run whose answers come from its own target needs no key (judges aside: their first
    // call says so).
    if settings.target.is_none() {
        check_key(base_url, config.api_key.as_deref())?;
    }
    config.timeout = Duration::from_secs_f64(settings.timeout_secs);
    config.max_retries = settings.max_retries;
    config.pool_size = settings.concurrency;
    config.max_rpm = settings.max_rpm;
    config.max_tpm = settings.max_tpm;
    Client::new(config).map_err(endpoint_error)
}

/// OpenAI's own endpoint refuses every request without a key: said before anything is sent
/// (or written), rather than as a 401 on the first answers.
fn check_key(base_url: &str, key: Option<&str>) -> Result<()> {
    let openai = base_url.trim_end_matches('/') == crate::client::DEFAULT_BASE_URL;
    if openai && key.is_none() {
        return Err(Error::invalid(format!(
            "no OPENAI_API_KEY for {base_url}: OpenAI would refuse every request"
        ))
        .with_hint(
            "set OPENAI_API_KEY, or point --base-url (or OPENAI_BASE_URL) at another endpoint; \
             `runner mock-server` answers offline",
        ));
    }
    Ok(())
}

/// The run's target, when it names one (`--target`), with its timeout and retries.
pub(in crate::workflow) fn target(
    settings: &RunSettings,
) -> Result<Option<std::sync::Arc<crate::engine::target::Target>>> {
    settings
        .target
        .as_deref()
        .map(|spec| {
            crate::engine::target::Target::new(
                spec,
                Duration::from_secs_f64(settings.timeout_secs),
                settings.max_retries,
                &settings.target_env,
            )
            .map(std::sync::Arc::new)
        })
        .transpose()
}

/// A client for single calls with an experiment's key handling, timeout and retries.
pub fn call_client(base_url: &str, timeout_secs: f64, max_retries: u32) -> Result<Client> {
    check_timeout(timeout_secs)?;
    let mut config = ClientConfig::new(base_url);
    config.api_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    check_key(base_url, config.api_key.as_deref())?;
    config.timeout = Duration::from_secs_f64(timeout_secs);
    config.max_retries = max_retries;
    config.pool_size = 2;
    Client::new(config).map_err(endpoint_error)
}

/// Connects once before anything is written, so an endpoint that is not there fails the run
/// at once (exit 3) with the store untouched.
pub(in crate::workflow) fn probe(runtime: &tokio::runtime::Runtime, base_url: &str) -> Result<()> {
    reach(runtime, base_url).map_err(|cause| unreachable(base_url, &cause))
}

/// Connects once to an HTTP target before anything is written.
pub(in crate::workflow) fn probe_target(
    runtime: &tokio::runtime::Runtime,
    url: &str,
) -> Result<()> {
    reach(runtime, url).map_err(|cause| {
        Error::operational(format!("cannot reach the target {url}: {cause}"))
            .with_hint("start your application, or fix --target")
    })
}

fn reach(runtime: &tokio::runtime::Runtime, base_url: &str) -> std::result::Result<(), String> {
    let url = reqwest::Url::parse(base_url).map_err(|e| e.to_string())?;
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
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 10 s".into()),
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
