//! The log of the long-running processes (`runner serve`, `runner worker`): levelled lines
//! through `tracing`, written to stderr as text for a person or as JSON lines for a log
//! collector (`--log-format json`), each line of an HTTP request carrying its request id.
//!
//! Only those processes log here. The CLI's own output (results on stdout, `error:` and
//! `hint:` lines, progress) never goes through this module, and nothing here reads the store
//! or the network.

use std::sync::atomic::{AtomicU64, Ordering};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-06T05:40:01.123Z  INFO request{id=… method=GET path=/v1/prompts}: served status=200`
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `fields` (the message and its values),
    /// and the request span's fields.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format '{other}' (text or json)")),
        }
    }
}

/// Sends this process's log lines to stderr in `format`, at info level and above, and returns
/// the guard that flushes them: keep it until the process is done.
///
/// Lines go through a buffer written by a thread of their own, so a stderr nobody reads (a
/// full pipe, a stalled collector) never stalls a request: past the buffer, lines are dropped
/// rather than waited for. A second call (a test that starts two servers in one process) keeps
/// the first.
#[must_use = "dropping the guard stops the log's writer"]
pub fn init(format: LogFormat) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("runner-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(tracing::Level::INFO);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.ok().map(|()| guard)
}

/// The id of a request: the caller's `X-Request-Id` when it is a plain token (so a proxy's id
/// follows the request through), else a new one, unique in this process and sortable by
/// arrival.
pub fn request_id(offered: Option<&str>) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    match offered {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            id.to_string()
        }
        _ => format!(
            "{:08x}-{:06}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_offered_id_is_kept_and_anything_else_replaced() {
        assert_eq!(request_id(Some("abc-123_x.y")), "abc-123_x.y");
        let fresh = request_id(Some("evil\nid"));
        assert!(!fresh.contains('\n') && fresh.contains('-'), "{fresh}");
        let long = "a".repeat(65);
        assert_ne!(request_id(Some(&long)), long);
        assert_ne!(request_id(None), request_id(None));
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
