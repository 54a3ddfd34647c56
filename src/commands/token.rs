//! `runner token create|list|revoke`: the team server's tokens, kept in the store (only the
//! sha256 of a secret; the secret is printed once). `runner login|logout|whoami`: the token this
//! user keeps for a server, and who the server takes it for.

use super::{Context, out, out_json};
use crate::access::{Access, MIN_TOKEN_CHARS};
use crate::cli::{
    LoginArgs, LogoutArgs, TokenCommand, TokenCreateArgs, TokenListArgs, TokenRevokeArgs,
    WhoamiArgs,
};
use crate::error::{Error, Result};
use crate::model::{NameKind, check_name};
use crate::store::NewToken;
use crate::store::remote::{self, RemoteStore, credentials};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn run(command: TokenCommand, ctx: &Context) -> Result<()> {
    match command {
        TokenCommand::Create(args) => create(args, ctx),
        TokenCommand::List(args) => list(args, ctx),
        TokenCommand::Revoke(args) => revoke(args, ctx),
    }
}

/// `--expires`: `90d`, `12h`, `30m` from now, or an RFC 3339 time in the future.
fn expiry(text: &str, now: OffsetDateTime) -> Result<String> {
    let bad = || {
        Error::invalid(format!("--expires {text}: not a duration or a time"))
            .with_hint("for example --expires 90d, 12h or 30m, or 2027-06-30T00:00:00Z")
    };
    let at = match text.char_indices().last() {
        Some((i, unit @ ('d' | 'h' | 'm'))) => {
            let n: i64 = text[..i].parse().map_err(|_| bad())?;
            if n <= 0 || n > 3650 * 24 * 60 {
                return Err(bad());
            }
            let seconds = match unit {
                'd' => n * 86_400,
                'h' => n * 3_600,
                _ => n * 60,
            };
            now + time::Duration::seconds(seconds)
        }
        _ => OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())?,
    };
    if at <= now {
        return Err(Error::invalid(format!(
            "--expires {text}: that time has passed"
        )));
    }
    Ok(crate::model::format_time(at))
}

/// A new secret: 32 bytes from the system's random generator, as hex, behind a prefix that
/// says what it is (secret scanners look for such prefixes).
fn secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::operational("the system's random generator failed"))?;
    Ok(format!("runner_{}", crate::model::hex(&bytes)))
}

fn create(args: TokenCreateArgs, ctx: &Context) -> Result<()> {
    check_name(NameKind::Prompt, &args.name).map_err(|reason| {
        Error::invalid(format!("invalid token name '{}': {reason}", args.name))
            .with_hint("letters, digits, '_', '-' and '.'; for example ci or checkout-app")
    })?;
    let Some(access) = Access::from_role_name(&args.role) else {
        return Err(
            Error::invalid(format!("--role {}: no such role", args.role))
                .with_hint("one of read, ingest, write, promote, deploy, admin"),
        );
    };
    let expires_at = args
        .expires
        .as_deref()
        .map(|text| expiry(text, OffsetDateTime::now_utc()))
        .transpose()?;
    let secret = secret()?;
    debug_assert!(secret.len() >= MIN_TOKEN_CHARS);
    let digest = crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes()));
    let store = ctx.store()?;
    let token = store.create_token(&NewToken {
        name: args.name.clone(),
        role: access.role_name().to_string(),
        digest,
        created_by: ctx.author.clone(),
        expires_at,
    })?;
    if args.quiet {
        out(&secret);
    } else if args.json {
        let mut value = serde_json::to_value(&token)
            .map_err(|e| Error::operational(format!("cannot encode JSON: {e}")))?;
        value["secret"] = serde_json::Value::String(secret);
        out_json(&value)?;
    } else {
        out(&format!(
            "created token {} (role {}{}); its secret, shown this once:\n{secret}",
            token.name,
            token.role,
            token
                .expires_at
                .as_deref()
                .map(|at| format!(", expires {at}"))
                .unwrap_or_default()
        ));
        crate::note!(
            "give it as RUNNER_TOKEN (or `runner login URL`); `runner token revoke {}` ends it",
            token.name
        );
    }
    Ok(())
}

fn state(token: &crate::store::ApiToken, now: OffsetDateTime) -> String {
    if let Some(at) = &token.revoked_at {
        return format!("revoked {at}");
    }
    if token.valid_at(now) {
        "valid".into()
    } else {
        "expired".into()
    }
}

fn list(args: TokenListArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store_for_reading()?;
    let tokens = store.api_tokens()?;
    let now = OffsetDateTime::now_utc();
    if args.json {
        let values: Vec<serde_json::Value> = tokens
            .iter()
            .map(|t| {
                let mut value = serde_json::to_value(t).unwrap_or_default();
                value["valid"] = serde_json::Value::Bool(t.valid_at(now));
                value
            })
            .collect();
        return out_json(&values);
    }
    if tokens.is_empty() {
        out("no tokens in the store; `runner token create NAME --role ROLE` makes one");
        return Ok(());
    }
    let rows = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.role.clone(),
                state(t, now),
                t.expires_at.clone().unwrap_or_else(|| "-".into()),
                t.created_by.clone(),
                t.created_at.clone(),
            ]
        })
        .collect();
    out(&crate::report::table(
        &["NAME", "ROLE", "STATE", "EXPIRES", "CREATED BY", "CREATED"],
        rows,
    ));
    Ok(())
}

fn revoke(args: TokenRevokeArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    if store.revoke_token(&args.name, &ctx.author)? {
        out(&format!(
            "revoked token {}: the server refuses it within a second",
            args.name
        ));
        Ok(())
    } else {
        Err(
            Error::invalid(format!("no valid token named '{}'", args.name))
                .with_hint("`runner token list` shows the tokens and which are revoked"),
        )
    }
}

/// A server's address as `--db` takes it, checked.
fn server_url(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let loopback = ["http://127.", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.starts_with(p));
    if !(url.starts_with("https://") || loopback) {
        return Err(
            Error::invalid(format!("{url}: not a runner server's address"))
                .with_hint("https://HOST (or http:// on this machine: http://127.0.0.1:6006)"),
        );
    }
    Ok(url.to_string())
}

fn profile_name(url: &str) -> String {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("server");
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn login(args: LoginArgs) -> Result<()> {
    let url = server_url(&args.url)?;
    let mut token = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(std::io::stdin(), 4096), &mut token)
        .map_err(|e| Error::operational(format!("cannot read the token from stdin: {e}")))?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(Error::invalid("no token on stdin")
            .with_hint("echo \"$TOKEN\" | runner login URL, or type it and press Ctrl-D"));
    }
    // Checked against the server before it is kept: a typo is found now.
    let hello = RemoteStore::open_with(&url, Some(token.clone()))?
        .hello()
        .clone();
    let mut profiles = credentials::load().map_err(Error::operational)?;
    let name = args.profile.unwrap_or_else(|| profile_name(&url));
    profiles.profiles.insert(
        name.clone(),
        credentials::Profile {
            url: url.clone(),
            token,
        },
    );
    let path = credentials::save(&profiles).map_err(Error::operational)?;
    out(&format!(
        "logged in to {url} as {} (role {}); profile '{name}' kept in {}",
        hello.actor,
        hello.role,
        path.display()
    ));
    Ok(())
}

pub fn logout(args: LogoutArgs) -> Result<()> {
    let mut profiles = credentials::load().map_err(Error::operational)?;
    let url = args.url.as_deref().map(server_url).transpose()?;
    let before = profiles.profiles.len();
    profiles.profiles.retain(|name, profile| {
        let named = args.profile.as_deref() == Some(name.as_str());
        let same_url = url.as_deref() == Some(profile.url.trim_end_matches('/'));
        !(named || same_url)
    });
    let removed = before - profiles.profiles.len();
    if removed == 0 {
        return Err(Error::invalid("no kept token for that server or profile")
            .with_hint("`runner login URL` keeps one"));
    }
    credentials::save(&profiles).map_err(Error::operational)?;
    out(&format!("forgot {removed} kept token(s)"));
    Ok(())
}

pub fn whoami(args: WhoamiArgs, ctx: &Context) -> Result<()> {
    let location = ctx.location()?;
    if !remote::is_url(&location) {
        return Err(Error::invalid(format!(
            "{} is a local store: no server, no token",
            crate::store::display_location(&location)
        ))
        .with_hint("pass --db https://HOST (or set RUNNER_DB) to ask a runner server"));
    }
    let store = RemoteStore::open(&location.to_string_lossy())?;
    let hello = store.hello();
    if args.json {
        let mut value = serde_json::to_value(hello)
            .map_err(|e| Error::operational(format!("cannot encode JSON: {e}")))?;
        value["server"] = serde_json::Value::String(store.base().to_string());
        out_json(&value)
    } else {
        out(&format!(
            "{} (role {}) at {}, runner {} (store schema {})",
            hello.actor,
            hello.role,
            store.base(),
            hello.runner,
            hello.schema
        ));
        Ok(())
    }
}
