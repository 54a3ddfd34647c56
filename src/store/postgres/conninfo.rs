//! A `postgres://` URL as runner reads it: the connection settings, the password from the URL,
//! `PGPASSWORD` or a password file (`passfile=`, `PGPASSFILE`, `~/.pgpass`, as libpq reads
//! them), the pool size, and the URL as shown to a person, which never carries the password.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};

/// Connections a store keeps open at most, unless the URL's `pool_size=` says otherwise: more
/// than the result writer, the lease renewer and a busy `runner serve` use at once, far
/// fewer than PostgreSQL's default `max_connections` (100) shared by a team.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long connecting may take before the store is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `--db` names a PostgreSQL database rather than an SQLite file.
pub fn is_url(location: &str) -> bool {
    let lower = location.get(..13).unwrap_or(location).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// Where to connect, and how the place is shown.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    /// The URL without the password.
    pub display: String,
    pub pool_size: usize,
}

/// Reads a `postgres://` URL. The error never repeats the URL (it may hold a password).
pub fn parse(url: &str) -> Result<Target, String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut passfile = None;
    let mut pool_size = DEFAULT_POOL_SIZE;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "passfile" => passfile = Some(PathBuf::from(percent_decode(value)?)),
            "pool_size" => {
                pool_size = percent_decode(value)?
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or("pool_size must be a whole number from 1 to 1000")?;
            }
            "sslmode" if !matches!(value, "disable" | "prefer" | "allow") => {
                return Err(format!(
                    "sslmode={value} needs TLS, which this runner does not speak to PostgreSQL; \
                     use sslmode=disable or prefer (plain connection) over loopback, a Unix \
                     socket or an SSH tunnel"
                ));
            }
            // libpq's `allow` tries without TLS first: the same as what runner does.
            "sslmode" => kept.push("sslmode=disable".to_string()),
            _ => kept.push(pair.to_string()),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&rebuilt)
        .map_err(|e| format!("not a valid PostgreSQL URL ({e})"))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err("sslmode=require needs TLS, which this runner does not speak".into());
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if config.get_user().is_none()
        && let Some(user) = env("PGUSER")
    {
        config.user(user);
    }
    if config.get_hosts().is_empty() {
        config.host(env("PGHOST").as_deref().unwrap_or("localhost"));
    }
    if config.get_ports().is_empty()
        && let Some(port) = env("PGPORT").and_then(|p| p.parse().ok())
    {
        config.port(port);
    }
    if config.get_dbname().is_none()
        && let Some(db) = env("PGDATABASE")
    {
        config.dbname(db);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("runner");
    }
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| env("USER"))
        .unwrap_or_default();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config.get_dbname().unwrap_or(&user).to_string();
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        } else {
            let file = passfile
                .or_else(|| env("PGPASSFILE").map(PathBuf::from))
                .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".pgpass")));
            let lookup_host = match config.get_hosts().first() {
                Some(Host::Unix(_)) => "localhost",
                _ => host.as_str(),
            };
            if let Some(password) = file.and_then(|file| {
                from_passfile(&file, lookup_host, &port.to_string(), &dbname, &user)
            }) {
                config.password(password);
            }
        }
    }
    let display_host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let display = if user.is_empty() {
        format!("postgres://{display_host}:{port}/{dbname}")
    } else {
        format!("postgres://{user}@{display_host}:{port}/{dbname}")
    };
    Ok(Target {
        config,
        display,
        pool_size,
    })
}

/// The URL as shown to a person: whatever `parse` makes of it, or, for a URL it cannot read,
/// its scheme, user and host and never anything of the credentials. A password may hold an
/// unescaped `?`, `#`, `/` or `@` (which is often why the URL does not parse), so the
/// credentials end at the last `@`, before any other cut; without an `@`, only the host
/// before the first `:` is shown.
pub fn redact(url: &str) -> String {
    if let Ok(target) = parse(url) {
        return target.display;
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let cut = |text: &str| text.split(['?', '#']).next().unwrap_or("").to_string();
    let shown = match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split([':', '/', '?', '#']).next().unwrap_or("");
            format!("{user}@{}", cut(host))
        }
        None => {
            let host = rest.split([':', '/', '?', '#']).next().unwrap_or("");
            format!("{host}/…")
        }
    };
    format!("{scheme}://{shown}")
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a URL parameter has a bad %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a URL parameter is not UTF-8".into())
}

/// The password for (host, port, dbname, user) from a libpq password file: lines of
/// `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`.
/// Like libpq, a file others may read is ignored.
fn from_passfile(
    path: &std::path::Path,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = passfile_fields(line);
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = |field: &str, value: &str| field == "*" || field == value;
            (matches(h, host) && matches(p, port) && matches(d, dbname) && matches(u, user))
                .then(|| password.clone())
        })
}

fn passfile_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url("postgres://u@h/db"));
        assert!(is_url("postgresql://h/db"));
        assert!(is_url("POSTGRES://h/db"));
        assert!(!is_url("runner.db"));
        assert!(!is_url("./postgres://x"));
    }

    #[test]
    fn the_password_is_never_in_the_display() {
        let target = parse("postgres://ada:s3cret@db.example:5433/team?pool_size=4").unwrap();
        assert_eq!(target.display, "postgres://ada@db.example:5433/team");
        assert_eq!(target.pool_size, 4);
        assert_eq!(target.config.get_password(), Some(&b"s3cret"[..]));
        assert!(!redact("postgres://ada:s3cret@h/db?port=x&y").contains("s3cret"));
        assert!(!redact("postgres://ada:s3cret@h:notaport/db").contains("s3cret"));
    }

    #[test]
    fn a_password_with_unescaped_url_characters_is_never_shown_in_part() {
        for url in [
            "postgres://runner:Hunter2?x@localhost/db",
            "postgres://runner:Hunter2?x@localhost/db?sslmode=require",
            "postgres://runner:Hunter2#x@localhost:99999/db",
            "postgres://runner:Hun?ter2@h/db?pool_size=0",
            "postgres://runner:Hunter2#x@localhost/db",
            "postgres://runner:Hun/ter2@localhost/db",
            "postgres://runner:Hun@ter2@localhost/db",
            "postgres://runner:Hunter2",
            "postgres://runner:Hunter2?",
            "postgresql://runner:Hunter2#frag",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("Hun"), "{url} shown as {shown}");
            if let Err(reason) = parse(url) {
                assert!(!reason.contains("Hun"), "{url}: {reason}");
            }
        }
        // One that does not parse: its user and host, nothing between.
        assert_eq!(
            redact("postgres://runner:Hunter2?x@localhost/db?sslmode=require"),
            "postgres://runner@localhost/db"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for url in [
            "postgres://ada:s3cret@h:99999/db",
            "postgres://ada:s3cret@h/db?pool_size=0",
            "postgres://ada:s3cret@h/db?sslmode=require",
            "postgres://ada:s3cret@h/db?nonsense=1",
        ] {
            let e = parse(url).err().unwrap();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn a_password_file_is_read_as_libpq_reads_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:*:wrong\nh:5432:te\\:am:ada:pa\\:ss\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            from_passfile(&file, "h", "5432", "te:am", "ada").as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            from_passfile(&file, "x", "1", "d", "u").as_deref(),
            Some("fallback")
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(from_passfile(&file, "h", "5432", "te:am", "ada"), None);
    }
}
