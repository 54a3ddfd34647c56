//! Sessions and CSRF tokens for the pages: a login exchanges a bearer token for a signed,
//! expiring cookie, and every form that changes something carries a token derived from the
//! session, so a page on another site can neither read nor forge one. It deals in values only: it
//! must not read a request or set a header (the handlers do), check a bearer token (that is
//! `access`'s), or touch the store.
//!
//! The cookie is `v2.ACCESS.NAME.EXPIRES.NONCE.MAC`: what the token allows (`rw`, `ro`, `dp` for a
//! deploy token), the token's name (`-` for a token without one), the expiry in Unix seconds, a
//! random nonce (two logins in the same second are two sessions, so ending one leaves the other),
//! and an HMAC-SHA256 of the rest under a key drawn when the server starts (restarting the server
//! logs everyone out, which is also how every session is revoked at once). Logging out revokes that
//! one session on the server: its MAC is kept, until the session would have expired, in a list
//! every request is checked against, so a copy of the old cookie is no session any more.

use crate::access::Access;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::Mutex;

/// The session cookie's name.
pub const COOKIE: &str = "runner_session";

/// How long a session lasts: a working day.
pub const SESSION_SECS: u64 = 8 * 60 * 60;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub access: Access,
    /// The token's name from the token file, if it has one.
    pub name: Option<String>,
    pub expires: u64,
    /// The cookie's MAC, which the CSRF token is derived from.
    mac: String,
}

/// The signing key, drawn once per server, and the sessions logged out before their expiry.
pub struct Keys {
    key: hmac::Key,
    /// MAC → expiry (Unix seconds) of each session logged out; an entry goes once its session
    /// would have expired anyway, so the list holds at most a working day of logouts.
    revoked: Mutex<HashMap<String, u64>>,
}

impl Keys {
    pub fn generate() -> Result<Keys, String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "the system random number generator failed".to_string())?;
        Ok(Keys {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            revoked: Mutex::new(HashMap::new()),
        })
    }

    /// Ends `session` on the server: its cookie is refused from now on, wherever it was copied.
    pub fn revoke(&self, session: &Session, now: u64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        revoked.retain(|_, expires| *expires > now);
        revoked.insert(session.mac.clone(), session.expires);
    }

    fn is_revoked(&self, mac: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(mac)
    }

    fn mac(&self, text: &str) -> String {
        crate::model::hex(hmac::sign(&self.key, text.as_bytes()).as_ref())
    }

    /// A cookie value for a session of `access` under `name` that expires `SESSION_SECS`
    /// after `now`.
    pub fn issue(&self, access: Access, name: Option<&str>, now: u64) -> String {
        let mut nonce = [0u8; 8];
        // The system generator failing leaves a zero nonce: the session is still signed, only
        // not told apart from another of the same second.
        let _ = SystemRandom::new().fill(&mut nonce);
        let body = format!(
            "v2.{}.{}.{}.{}",
            access_code(access),
            name.unwrap_or("-"),
            now + SESSION_SECS,
            crate::model::hex(&nonce)
        );
        let mac = self.mac(&body);
        format!("{body}.{mac}")
    }

    /// The session a cookie value carries, if its MAC is right and it has not expired.
    pub fn verify(&self, value: &str, now: u64) -> Option<Session> {
        let (body, mac) = value.rsplit_once('.')?;
        let expected = self.mac(body);
        // Compared without an early exit: the time taken tells nothing about the MAC.
        if expected.len() != mac.len()
            || expected
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0
        {
            return None;
        }
        let mut parts = body.split('.');
        let (Some("v2"), Some(access), Some(name), Some(expires), Some(_nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let access = match access {
            "rw" => Access::ReadWrite,
            "ro" => Access::ReadOnly,
            "dp" => Access::Deploy,
            "in" => Access::Ingest,
            "pr" => Access::Promote,
            "ad" => Access::Admin,
            _ => return None,
        };
        let expires: u64 = expires.parse().ok()?;
        if expires <= now || self.is_revoked(mac) {
            return None;
        }
        Some(Session {
            access,
            name: (name != "-").then(|| name.to_string()),
            expires,
            mac: mac.to_string(),
        })
    }

    /// The CSRF token of a session (None: the server runs without tokens, loopback only).
    pub fn csrf(&self, session: Option<&Session>) -> String {
        match session {
            Some(session) => self.mac(&format!("csrf.{}", session.mac)),
            None => self.mac("csrf.anonymous"),
        }
    }

    /// The token the login form carries, before there is a session.
    pub fn login_csrf(&self) -> String {
        self.mac("csrf.login")
    }

    /// Whether `presented` is `expected`, compared in constant time.
    pub fn same(expected: &str, presented: &str) -> bool {
        expected.len() == presented.len()
            && expected
                .bytes()
                .zip(presented.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn access_code(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "ro",
        Access::ReadWrite => "rw",
        Access::Deploy => "dp",
        Access::Ingest => "in",
        Access::Promote => "pr",
        Access::Admin => "ad",
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_round_trips_and_anything_else_is_refused() {
        let keys = Keys::generate().unwrap();
        let cookie = keys.issue(Access::ReadOnly, Some("alice"), 1000);
        let session = keys.verify(&cookie, 1001).expect("valid");
        assert_eq!(session.access, Access::ReadOnly);
        assert_eq!(session.name.as_deref(), Some("alice"));
        assert_eq!(session.expires, 1000 + SESSION_SECS);
        // Expired.
        assert!(keys.verify(&cookie, 1000 + SESSION_SECS).is_none());
        // Tampered: read-only turned read-write keeps the old MAC.
        let forged = cookie.replacen(".ro.", ".rw.", 1);
        assert!(keys.verify(&forged, 1001).is_none());
        // Logged out, the same cookie is no session, and the list forgets it once it expires.
        let other_session = keys.issue(Access::ReadOnly, Some("b"), 1000);
        keys.revoke(&session, 1001);
        assert!(keys.verify(&cookie, 1001).is_none());
        assert!(keys.verify(&other_session, 1001).is_some());
        keys.revoke(
            &keys.verify(&other_session, 1001).unwrap(),
            1000 + SESSION_SECS + 1,
        );
        assert_eq!(keys.revoked.lock().unwrap().len(), 1);
        // Another server's key.
        let other = Keys::generate().unwrap();
        assert!(other.verify(&cookie, 1001).is_none());
        for junk in [
            "",
            ".",
            "v1.rw.-.9999999999.",
            "v1.rw.-.x.00",
            "v2.rw.-.9999999999.00",
        ] {
            assert!(keys.verify(junk, 1001).is_none(), "{junk:?}");
        }
        // A write token's session does not turn into a deploy token's.
        let writer = keys.issue(Access::ReadWrite, Some("ci"), 1000);
        assert!(
            keys.verify(&writer.replacen(".rw.", ".dp.", 1), 1001)
                .is_none()
        );
        let deploy = keys.issue(Access::Deploy, Some("release"), 1000);
        assert_eq!(keys.verify(&deploy, 1001).unwrap().access, Access::Deploy);
        let anonymous = keys.issue(Access::ReadWrite, None, 1000);
        assert_eq!(keys.verify(&anonymous, 1001).unwrap().name, None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let keys = Keys::generate().unwrap();
        let a = keys
            .verify(&keys.issue(Access::ReadWrite, Some("a"), 5), 6)
            .unwrap();
        let b = keys
            .verify(&keys.issue(Access::ReadWrite, Some("b"), 5), 6)
            .unwrap();
        assert_ne!(keys.csrf(Some(&a)), keys.csrf(Some(&b)));
        assert_ne!(keys.csrf(Some(&a)), keys.csrf(None));
        assert!(Keys::same(&keys.csrf(Some(&a)), &keys.csrf(Some(&a))));
        assert!(!Keys::same(&keys.csrf(Some(&a)), "x"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let header = "a=1; runner_session=v1.x; b=2";
        assert_eq!(cookie(header, COOKIE), Some("v1.x"));
        assert_eq!(cookie(header, "c"), None);
    }
}
