//! Requests a web page could make a browser send: the checks that keep a page on another site
//! from writing to the store (cross-site requests) or reading it through a rebound DNS name.
//!
//! - `Host`: without tokens the server answers loopback names only (`127.0.0.1`, `localhost`,
//!   `[::1]`, any port). A page on `evil.example` whose name an attacker re-points at
//!   127.0.0.1 (DNS rebinding) is then same-origin to the browser, but its requests still say
//!   `Host: evil.example`.
//! - `Origin`: a request that carries one (browsers add it to cross-origin requests and to every
//!   POST) must come from the server's own origin, the one its `Host` names.
//! - `Content-Type`: a write must say `application/json`. A page can send `text/plain` or a
//!   form to any site without a CORS preflight; it cannot send `application/json` cross-site
//!   without one, and the server answers no preflight.

use super::Shared;
use super::error::ApiError;
use crate::client::is_loopback_name;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Checks `Host` and `Origin` on every request, before authentication.
pub(super) async fn check_origin(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let authenticated = shared.tokens.is_some();
    // An absolute-form request target names the host itself; `Host` then does not count
    // (RFC 9112, section 3.2.2).
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => match request.headers().get(HOST).map(|v| v.to_str()) {
            None => None,
            Some(Ok(text)) => Some(text),
            Some(Err(_)) => return refuse(&request, "the Host header is not readable text".into()),
        },
    };
    if let Err(reason) = check_host(host, authenticated) {
        return refuse(&request, reason);
    }
    if let Some(origin) = request.headers().get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("(unreadable)");
        if let Err(reason) = check_origin_header(origin, host, authenticated) {
            return refuse(&request, reason);
        }
    }
    next.run(request).await
}

/// Checks that every write says its body is JSON, after authentication.
pub(super) async fn check_content_type(request: Request, next: Next) -> Response {
    if let Err(message) = json_content_type(request.method(), request.headers()) {
        // 422, as Phoenix answers a body it cannot read as JSON.
        return ApiError::unprocessable(message).into_response();
    }
    next.run(request).await
}

fn refuse(request: &Request, reason: String) -> Response {
    tracing::warn!(
        status = 403,
        method = %request.method(),
        path = request.uri().path(),
        "{}",
        reason.escape_debug()
    );
    ApiError::new(StatusCode::FORBIDDEN, reason).into_response()
}

/// A write's body must be declared JSON: POST, PUT and PATCH always, DELETE when it has a body.
/// Parameters are allowed (`application/json; charset=utf-8`); the media type is compared
/// ignoring case, as RFC 9110 says.
fn json_content_type(method: &Method, headers: &HeaderMap) -> Result<(), String> {
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let write = matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        || (*method == Method::DELETE && has_body);
    if !write {
        return Ok(());
    }
    let declared = headers.get(CONTENT_TYPE).map(|v| v.to_str());
    let media_type = match declared {
        Some(Ok(text)) => text.split(';').next().unwrap_or("").trim(),
        Some(Err(_)) => "(unreadable)",
        None => {
            return Err(format!(
                "{method} needs a JSON body sent with Content-Type: application/json \
                 (the request has no Content-Type)"
            ));
        }
    };
    if media_type.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(format!(
        "{method} needs a JSON body sent with Content-Type: application/json, not {media_type}"
    ))
}

/// Without tokens only loopback names are served: a request for any other name comes through
/// a name that points here without being this machine's, the mark of DNS rebinding.
fn check_host(host: Option<&str>, authenticated: bool) -> Result<(), String> {
    if authenticated {
        return Ok(());
    }
    let Some(host) = host else {
        return Err(
            "a Host header is required: runner serve without tokens answers loopback names only"
                .into(),
        );
    };
    match split_authority(host) {
        Some((name, _)) if is_loopback_name(name) => Ok(()),
        _ => Err(format!(
            "Host {host} is not served: runner serve without tokens answers loopback names only"
        )),
    }
}

/// The request's `Origin` must be the server's own: the host and port its `Host` names (a
/// `Host` without a port means the default port of the origin's scheme), and loopback when no
/// tokens are configured. `Origin: null` (a sandboxed page, a local file) matches nothing.
fn check_origin_header(
    origin: &str,
    host: Option<&str>,
    authenticated: bool,
) -> Result<(), String> {
    let refused = || {
        format!(
            "Origin {origin} is not this server's ({}): runner serve refuses cross-origin requests",
            host.unwrap_or("no Host")
        )
    };
    let (scheme, authority) = origin.split_once("://").ok_or_else(refused)?;
    let (origin_name, origin_port) = split_authority(authority).ok_or_else(refused)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let origin_port = origin_port.or(default_port).ok_or_else(refused)?;
    let (host_name, host_port) = host.and_then(split_authority).ok_or_else(refused)?;
    let same = origin_name.eq_ignore_ascii_case(host_name)
        && host_port.or(default_port) == Some(origin_port);
    if !same || (!authenticated && !is_loopback_name(origin_name)) {
        return Err(refused());
    }
    Ok(())
}

/// `name[:port]` or `[ipv6][:port]`, the name without brackets; None when malformed.
fn split_authority(text: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = text.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (name, port)
    } else {
        match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn authorities_split_into_name_and_port() {
        assert_eq!(
            split_authority("127.0.0.1:6006"),
            Some(("127.0.0.1", Some(6006)))
        );
        assert_eq!(split_authority("localhost"), Some(("localhost", None)));
        assert_eq!(split_authority("[::1]:80"), Some(("::1", Some(80))));
        assert_eq!(split_authority("[::1]"), Some(("::1", None)));
        for bad in [
            "",
            ":80",
            "localhost:",
            "localhost:x",
            "[::1",
            "[::1]x",
            "::1",
            "a:1:2",
        ] {
            assert_eq!(split_authority(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn without_tokens_only_loopback_hosts_are_served() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:6006",
            "localhost:1",
            "LocalHost",
            "[::1]:6006",
        ] {
            assert_eq!(check_host(Some(ok), false), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:6006",
            "localhost.",
            "10.0.0.1:6006",
            "",
        ] {
            let reason = check_host(Some(bad), false).unwrap_err();
            assert!(reason.contains("loopback names only"), "{reason}");
        }
        assert!(check_host(None, false).is_err());
        assert_eq!(check_host(Some("evil.example"), true), Ok(()));
        assert_eq!(check_host(None, true), Ok(()));
    }

    #[test]
    fn an_origin_must_be_the_servers_own() {
        let host = Some("127.0.0.1:6006");
        assert_eq!(
            check_origin_header("http://127.0.0.1:6006", host, false),
            Ok(())
        );
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:3000",
            "http://localhost:6006",
            "https://127.0.0.1",
            "null",
            "127.0.0.1:6006",
        ] {
            assert!(check_origin_header(bad, host, false).is_err(), "{bad}");
        }
        // A Host without a port is the origin scheme's default port.
        let named = Some("prompts.example");
        assert_eq!(
            check_origin_header("https://prompts.example", named, true),
            Ok(())
        );
        assert_eq!(
            check_origin_header("http://Prompts.Example:80", named, true),
            Ok(())
        );
        assert!(check_origin_header("https://prompts.example:8443", named, true).is_err());
        assert!(check_origin_header("https://evil.example", named, true).is_err());
        // Without tokens the origin must be loopback too, even when it matches the Host.
        assert!(check_origin_header("http://prompts.example", named, false).is_err());
        assert!(check_origin_header("http://127.0.0.1", None, true).is_err());
    }

    #[test]
    fn writes_need_a_json_content_type() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        let json = headers(&[("content-type", "application/json")]);
        let charset = headers(&[("content-type", "Application/JSON; charset=utf-8")]);
        let text = headers(&[("content-type", "text/plain")]);
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let none = HeaderMap::new();
        for method in [Method::POST, Method::PUT, Method::PATCH] {
            assert_eq!(json_content_type(&method, &json), Ok(()));
            assert_eq!(json_content_type(&method, &charset), Ok(()));
            for bad in [&text, &form, &none] {
                assert!(json_content_type(&method, bad).is_err(), "{method} {bad:?}");
            }
        }
        assert_eq!(json_content_type(&Method::GET, &text), Ok(()));
        assert_eq!(json_content_type(&Method::DELETE, &none), Ok(()));
        let delete_with_body = headers(&[("content-length", "12"), ("content-type", "text/plain")]);
        assert!(json_content_type(&Method::DELETE, &delete_with_body).is_err());
        let empty_delete = headers(&[("content-length", "0")]);
        assert_eq!(json_content_type(&Method::DELETE, &empty_delete), Ok(()));
    }
}
