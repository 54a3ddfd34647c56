//! The routing feed on PostgreSQL: one connection of its own that `LISTEN`s on the channel the
//! schema's statement triggers notify (migration 20) whenever a statement writes prompts,
//! versions, tags or rollouts, whichever program ran it. Each notification moves the feed's
//! counter, so a server's copies of tag answers are dropped as soon as PostgreSQL delivers the
//! word of a commit.
//!
//! A notification can only be missed while nobody listens, so the feed says it cannot be
//! trusted from the moment the connection fails until a new one has registered its `LISTEN`. A
//! connection that dies without a word (a cable pulled, a firewall dropping the flow) is found
//! by a heartbeat query, so a lookup serves a stale answer for at most `HEARTBEAT` plus
//! `HEARTBEAT_TIMEOUT`.

use crate::store::RoutingFeed;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// The statement that registers the listener; the channel is the one migration 20's
/// `runner_routing_changed()` notifies.
const LISTEN: &str = "LISTEN runner_routing";

/// How often the listening connection is asked whether it is still there.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// How long the heartbeat's answer may take before the connection counts as lost.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// The first wait before connecting again, doubled up to `RETRY_LONGEST`.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LONGEST: Duration = Duration::from_secs(5);

/// The application name the listening connection shows in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "runner routing feed";

/// Starts listening on `runtime` (the pool's own runtime thread, which runs every socket) and
/// keeps listening, connecting again after each failure, until the runtime shuts down with
/// the store.
pub fn start(
    runtime: &tokio::runtime::Handle,
    mut config: tokio_postgres::Config,
    feed: Arc<RoutingFeed>,
) {
    config.application_name(APPLICATION_NAME);
    runtime.spawn(async move {
        let mut wait = RETRY_FIRST;
        let mut failing = false;
        loop {
            let outcome = listen(&config, &feed).await;
            feed.lost();
            match outcome {
                Listened::Lost(why) => {
                    tracing::warn!(
                        "the store's change feed was lost ({why}); tag lookups read the store \
                         until it is back"
                    );
                    wait = RETRY_FIRST;
                    failing = false;
                }
                Listened::NotConnected(why) => {
                    if !failing {
                        tracing::warn!(
                            "cannot listen to the store's changes ({why}); tag lookups read the \
                             store, and listening is tried again"
                        );
                    }
                    failing = true;
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_LONGEST);
        }
    });
}

/// How one listening connection ended.
enum Listened {
    /// It never listened.
    NotConnected(String),
    /// It listened, then failed.
    Lost(String),
}

async fn listen(config: &tokio_postgres::Config, feed: &RoutingFeed) -> Listened {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(connected) => connected,
        Err(e) => return Listened::NotConnected(super::describe(&e)),
    };
    let (notified, mut notes) = tokio::sync::mpsc::unbounded_channel::<()>();
    // The socket task: it hands over each notification and ends with the connection. (A
    // connection polled as a plain future drops notifications.)
    let socket = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if notified.send(()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let _stop_socket = AbortOnDrop(socket);
    if let Err(e) = client.batch_execute(LISTEN).await {
        return Listened::NotConnected(super::describe(&e));
    }
    feed.listening();
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                Some(()) => feed.changed(),
                None => return Listened::Lost("the connection closed".into()),
            },
            _ = beat.tick() => {
                match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.batch_execute("SELECT 1")).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Listened::Lost(super::describe(&e)),
                    Err(_) => {
                        return Listened::Lost(format!(
                            "no answer within {} s",
                            HEARTBEAT_TIMEOUT.as_secs()
                        ));
                    }
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
