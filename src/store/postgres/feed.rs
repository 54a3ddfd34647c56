//! The routing feed on PostgreSQL: one connection of its own that `LISTEN`s on the channel the
//! schema's statement triggers notify (migration 20) whenever a statement writes prompts,
//! versions, tags or rollouts, whichever program ran it. Each notification moves the feed's
//! counter, so a server's copies of tag answers are dropped as soon as PostgreSQL delivers the
//! word of a commit.
//!
//! A notification can only be missed while nobody listens, so the feed says it cannot be
//! trusted from the moment the connection fails until a new one has registered its `LISTEN`
//! and heard a first heartbeat: a notification sent from a second session of its own, which
//! makes the whole way another program's change makes. Every `HEARTBEAT` another is sent, and it
//! must arrive within `HEARTBEAT_TIMEOUT`: a connection that dies without a word (a cable
//! pulled, a firewall dropping the flow), or one through a pooler that passes statements but not
//! notifications, is distrusted within `HEARTBEAT` plus `HEARTBEAT_TIMEOUT`.

use crate::store::RoutingFeed;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// The statement that registers the listener; the channel is the one migration 20's
/// `runner_routing_changed()` notifies.
const LISTEN: &str = "LISTEN runner_routing";

/// How often a heartbeat is sent to show the feed still works.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// How long the heartbeat may take to come back before the feed counts as lost.
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
    let connect = |config: tokio_postgres::Config| async move {
        tokio::time::timeout(HEARTBEAT_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| format!("no connection within {} s", HEARTBEAT_TIMEOUT.as_secs()))?
            .map_err(|e| super::describe(&e))
    };
    let (client, mut connection) = match connect(config.clone()).await {
        Ok(connected) => connected,
        Err(why) => return Listened::NotConnected(why),
    };
    // The heartbeat goes out on a session of its own, the way another program's change does:
    // a notification a session sends itself comes back with its own statement's answer, which
    // would prove nothing about the others'.
    let mut beating = config.clone();
    beating.application_name(HEARTBEAT_APPLICATION_NAME);
    let (sender, sender_connection) = match connect(beating).await {
        Ok(connected) => connected,
        Err(why) => return Listened::NotConnected(why),
    };
    let _stop_sender_socket = AbortOnDrop(tokio::spawn(async move {
        let _ = sender_connection.await;
    }));
    let sender = Arc::new(sender);
    let (notified, mut notes) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The socket task: it hands over each notification's payload and ends with the
    // connection. (A connection polled as a plain future drops notifications.)
    let _stop_socket = AbortOnDrop(tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    if notified.send(note.payload().to_string()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    }));
    match tokio::time::timeout(HEARTBEAT_TIMEOUT, client.batch_execute(LISTEN)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Listened::NotConnected(super::describe(&e)),
        Err(_) => {
            return Listened::NotConnected(format!(
                "no answer to LISTEN within {} s",
                HEARTBEAT_TIMEOUT.as_secs()
            ));
        }
    }
    // Trusted only once a heartbeat has made the whole way: a LISTEN through a pooler that
    // hands each transaction another server connection succeeds, and hears nothing.
    let mut alive = Alive::new(sender);
    // Sends run beside the loop, so a slow one never holds up the changes heard meanwhile; a
    // send that fails is a heartbeat that does not come back.
    let mut sends = tokio::task::JoinSet::new();
    let mut expected = Some(alive.send(&mut sends));
    let mut deadline = tokio::time::Instant::now() + HEARTBEAT_TIMEOUT;
    let mut trusted = false;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                None if trusted => return Listened::Lost("the connection closed".into()),
                None => return Listened::NotConnected("the connection closed".into()),
                Some(payload) if payload.starts_with(ALIVE_PREFIX) => {
                    // Another server's heartbeat is nobody's change.
                    if expected.as_deref() == Some(payload.as_str()) {
                        expected = None;
                        if !trusted {
                            trusted = true;
                            feed.listening();
                        }
                    }
                }
                Some(_) => feed.changed(),
            },
            _ = tokio::time::sleep_until(deadline), if expected.is_some() => {
                let why = format!(
                    "a notification sent from another session did not arrive within {} s",
                    HEARTBEAT_TIMEOUT.as_secs()
                );
                return if trusted { Listened::Lost(why) } else { Listened::NotConnected(why) };
            }
            _ = beat.tick(), if expected.is_none() => {
                expected = Some(alive.send(&mut sends));
                deadline = tokio::time::Instant::now() + HEARTBEAT_TIMEOUT;
            }
            Some(_) = sends.join_next(), if !sends.is_empty() => {}
        }
    }
}

/// The payloads of the heartbeat: each listener's own, numbered, so it knows its notification
/// from another server's.
const ALIVE_PREFIX: &str = "alive:";

/// The heartbeat: a notification sent from a second session to the listening one. It makes the
/// whole way another program's change makes (through the server's queue to the listener), so
/// its arrival shows the feed works, not only that the connection answers.
const ALIVE_NOTIFY: &str = "SELECT pg_notify('runner_routing', $1)";

/// The application name the heartbeat's session shows in `pg_stat_activity`.
pub const HEARTBEAT_APPLICATION_NAME: &str = "runner routing feed heartbeat";

struct Alive {
    sender: Arc<tokio_postgres::Client>,
    listener: u64,
    sent: u64,
}

impl Alive {
    fn new(sender: Arc<tokio_postgres::Client>) -> Alive {
        Alive {
            sender,
            listener: fastrand::u64(..),
            sent: 0,
        }
    }

    /// Starts sending the next heartbeat into `sends`; its payload, to arrive within
    /// `HEARTBEAT_TIMEOUT`.
    fn send(&mut self, sends: &mut tokio::task::JoinSet<()>) -> String {
        self.sent += 1;
        let payload = format!("{ALIVE_PREFIX}{:016x}:{}", self.listener, self.sent);
        let sender = Arc::clone(&self.sender);
        let sent = payload.clone();
        sends.spawn(async move {
            let _ = tokio::time::timeout(HEARTBEAT_TIMEOUT, sender.execute(ALIVE_NOTIFY, &[&sent]))
                .await;
        });
        payload
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
