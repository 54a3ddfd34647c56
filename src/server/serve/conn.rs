//! Connections: the accept loop and what bounds each connection, so that slow or idle clients
//! cannot hold the server.
//!
//! - At most `max_connections` are served at once. When every slot is taken, a new connection
//!   waits (accepted, or in the kernel's backlog) until a slot frees, and a kept-alive
//!   connection waiting for its next request is closed to make room, one per waiting newcomer.
//! - A request's headers must arrive within `header_timeout`: counted from the connection's
//!   opening for its first request, from the first byte for a later one. A client that is
//!   slower is disconnected. The body then has as long again (408 otherwise).
//! - A kept-alive connection is closed after `idle_timeout` without a request.
//! - A connection is busy until its answer's body is sent to its end, not only until the
//!   headers are ready: a streamed answer (the playground's server-sent events) is never
//!   closed as idle to make room. While a body is being sent, each piece it hands over counts
//!   as progress; a body that makes none for `idle_timeout` (a client that stopped reading)
//!   is cut off.
//! - A request body the application leaves unread (a 404, a 405, a refused token) is read to
//!   its end before the answer goes out, up to `body_limit` bytes in all, so the next request
//!   on the kept-alive connection starts where it should. A larger, slower or broken body is
//!   not waited for: the answer says `Connection: close` and the connection closes after it,
//!   lingering: it reads and drops what the client still sends for a bounded time, so that the
//!   client reads the answer rather than a reset (`linger`).
//!
//! Left to itself, hyper reads an unread body only as far as it has already arrived, and
//! closes the connection when more is due, without telling the client: a client that sent its
//! next request meanwhile sees "server disconnected" (about one request in fifty after a 404
//! to a POST, when the body arrives in its own TCP segment).
//!
//! hyper's own header timeout cannot express this: it also runs while a kept-alive connection
//! waits for its next request, so it would close idle connections after the header timeout.
//! Instead each connection has a watchdog that follows its phase (`Phase`), told by the socket
//! (bytes arrived) and by the service (a request is being answered, or was answered).

use axum::Router;
use axum::body::Body;
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::response::Response;
use axum::serve::Listener;
use hyper::body::Body as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, Sleep};

pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// What bounds the server's connections (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// The most of a request body read when the application leaves it unread (the API's own
    /// body limit).
    pub body_limit: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            body_limit: super::DEFAULT_BODY_LIMIT,
        }
    }
}

/// Serves on an already-bound listener until `shutdown` resolves, then lets every connection
/// finish the request it is answering and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = u32::try_from(max).map_err(|_| io::Error::other("too many connections"))?;
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(());
    let (asked, room_wanted) = watch::channel(0u64);
    let room = Arc::new(Room {
        wanted: AtomicUsize::new(0),
        asked,
    });
    let mut listener = listener;
    let mut shutdown = pin!(shutdown);
    loop {
        // Errors are retried inside `accept` (axum's listener: a pause when out of descriptors).
        let tcp = tokio::select! {
            (tcp, _) = Listener::accept(&mut listener) => tcp,
            () = &mut shutdown => break,
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                room.ask();
                let slot = tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                };
                // A slot freed by itself: no idle connection needs to go for this one.
                room.withdraw();
                slot
            }
        };
        // Replies are small single writes; Nagle's algorithm would hold each one back waiting
        // for the ACK of the previous one on a keep-alive connection.
        let _ = tcp.set_nodelay(true);
        let mut room_wanted = room_wanted.clone();
        room_wanted.mark_unchanged();
        let connection = Connection {
            app: app.clone(),
            limits,
            stopped: stopped.clone(),
            room: Arc::clone(&room),
            room_wanted,
        };
        let mut stop_lingering = stopped.clone();
        tokio::spawn(async move {
            let closing = connection.run(tcp).await;
            // A lingering close holds no slot, and a stopping server does not wait for it.
            drop(slot);
            if let Some(tcp) = closing {
                tokio::select! {
                    () = linger(tcp) => {}
                    _ = stop_lingering.changed() => {}
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(());
    // Every connection holds a slot until it ends.
    let _all = slots.acquire_many(permits).await;
    Ok(())
}

/// How many waiting newcomers still need an idle connection to close, and the signal that
/// wakes the connections to look.
struct Room {
    wanted: AtomicUsize,
    asked: watch::Sender<u64>,
}

impl Room {
    /// Every slot is taken and a newcomer waits: one idle connection should make room.
    fn ask(&self) {
        self.wanted.fetch_add(1, Ordering::SeqCst);
        self.asked.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The newcomer got a slot; if no connection has answered its request yet, none should.
    fn withdraw(&self) {
        let _ = self
            .wanted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// An idle connection offers to close: true when a newcomer still needs its slot.
    fn claim(&self) -> bool {
        self.wanted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Where a connection is between requests, which decides its deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Open, nothing received yet: the first request's headers are due `header_timeout` after.
    Opened(Instant),
    /// Kept alive after an answer, waiting for the next request: closed `idle_timeout` after.
    Idle(Instant),
    /// A request's headers are arriving: due `header_timeout` after the given instant.
    Head(Instant),
    /// Answering requests (counted): no deadline here; the body has its own.
    Busy(usize),
    /// The answer's headers are out and its body is being sent; the last piece went at the
    /// given instant, and the next is due `idle_timeout` after it.
    Sending(Instant),
}

/// A connection's phase, shared by the socket, the service and the watchdog (all in the
/// connection's one task, so the lock is never contended).
struct Activity {
    limits: Limits,
    phase: Mutex<Phase>,
    /// Signalled when a deadline appears (an answer made the connection idle).
    answered: Notify,
}

impl Activity {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *phase = change(*phase);
    }

    fn deadline(&self, phase: Phase) -> Option<Instant> {
        match phase {
            Phase::Opened(since) | Phase::Head(since) => Some(since + self.limits.header_timeout),
            Phase::Idle(since) | Phase::Sending(since) => Some(since + self.limits.idle_timeout),
            Phase::Busy(_) => None,
        }
    }

    /// Bytes arrived: a waiting connection starts receiving a request. The first request's
    /// headers keep the deadline counted from the opening.
    fn received(&self) {
        self.update(|phase| match phase {
            Phase::Opened(since) => Phase::Head(since),
            Phase::Idle(_) => Phase::Head(Instant::now()),
            other => other,
        });
    }

    fn request_started(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
    }

    /// The answer's headers are ready and its body starts going out (one request answered at
    /// a time; with more in flight the count stays).
    fn sending(&self) {
        self.update(|phase| match phase {
            Phase::Busy(1) => Phase::Sending(Instant::now()),
            other => other,
        });
        self.answered.notify_one();
    }

    /// A piece of the body went out: the next is due `idle_timeout` from now.
    fn progress(&self) {
        self.update(|phase| match phase {
            Phase::Sending(_) => Phase::Sending(Instant::now()),
            other => other,
        });
    }

    fn request_finished(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
        self.answered.notify_one();
    }
}

struct Connection {
    app: Router,
    limits: Limits,
    /// Changes when the server stops.
    stopped: watch::Receiver<()>,
    room: Arc<Room>,
    /// Changes when every slot is taken and a newcomer waits.
    room_wanted: watch::Receiver<u64>,
}

impl Connection {
    /// Serves one connection until the client closes it or a limit does; gives the socket back
    /// when its last answer went out and the server is not stopping, to close it lingering.
    async fn run(mut self, tcp: TcpStream) -> Option<TcpStream> {
        let activity = Arc::new(Activity {
            limits: self.limits,
            phase: Mutex::new(Phase::Opened(Instant::now())),
            answered: Notify::new(),
        });
        let io = TokioIo::new(Watched {
            inner: tcp,
            activity: Arc::clone(&activity),
        });
        let service = Tracked {
            app: TowerToHyperService::new(self.app.clone()),
            activity: Arc::clone(&activity),
            body_timeout: self.limits.header_timeout,
            body_limit: self.limits.body_limit,
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The header timeout is the watchdog's (see the module documentation).
        builder.keep_alive(true).header_read_timeout(None);
        // Polled without shutting the socket down, so that a connection closed with a request
        // body unread can linger (see `linger`).
        let mut http = builder.serve_connection(io, service);
        let mut timer = pin!(tokio::time::sleep_until(Instant::now()));
        let mut armed: Option<Instant> = None;
        let mut stopping = false;
        loop {
            let phase = activity.phase();
            let deadline = activity.deadline(phase);
            if let Some(deadline) = deadline {
                if deadline <= Instant::now() {
                    // Too slow or idle too long: closed without an answer.
                    return None;
                }
                if armed != Some(deadline) {
                    timer.as_mut().reset(deadline);
                    armed = Some(deadline);
                }
            }
            let waiting = matches!(phase, Phase::Opened(_) | Phase::Idle(_));
            if stopping && waiting {
                return None;
            }
            if matches!(phase, Phase::Idle(_)) && self.room.claim() {
                return None;
            }
            tokio::select! {
                _ = std::future::poll_fn(|cx| http.poll_without_shutdown(cx)) => {
                    let tcp = http.into_parts().io.into_inner().inner;
                    return (!stopping).then_some(tcp);
                }
                () = &mut timer, if deadline.is_some() => {}
                () = activity.answered.notified() => {}
                Ok(()) = self.stopped.changed(), if !stopping => {
                    stopping = true;
                    // Finish the request being answered, then close.
                    Pin::new(&mut http).graceful_shutdown();
                }
                // The loop's top sees whether this connection is idle and should make room.
                Ok(()) = self.room_wanted.changed() => {}
            }
        }
    }
}

/// How long a closing connection reads what its client still sends: at most `LINGER_IDLE`
/// without a byte, `LINGER_TOTAL` in all.
const LINGER_IDLE: Duration = Duration::from_secs(2);
const LINGER_TOTAL: Duration = Duration::from_secs(10);

/// Closes a connection whose last answer went out: its sending side at once, then, like a web
/// server's lingering close, reads and drops what the client still sends until it closes too
/// (bounded by `LINGER_IDLE` and `LINGER_TOTAL`). Closing a socket with unread bytes makes the
/// kernel reset the connection, and a client still sending a body the server refused (413 for
/// a body over the limit, answered before it arrived) would see "broken pipe" instead of the
/// answer waiting for it.
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tcp.shutdown().await.is_err() {
        return;
    }
    let end = Instant::now() + LINGER_TOTAL;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let deadline = end.min(Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// The socket, telling the connection's activity when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The application, telling the connection's activity when a request is being answered,
/// giving each request body its deadline, and reading what the application left of it.
struct Tracked {
    app: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    body_timeout: Duration,
    body_limit: usize,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let answering = Answering::new(Arc::clone(&self.activity));
        let timeout = self.body_timeout;
        let limit = self.body_limit;
        let mut lent = None;
        let request = request.map(|body| {
            if hyper::body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                let shared = Lent::new(Deadline {
                    inner: body,
                    timer: Box::pin(tokio::time::sleep(timeout)),
                    timeout,
                });
                lent = Some(Arc::clone(&shared));
                Body::new(Borrowed(shared))
            }
        });
        let response = hyper::service::Service::call(&self.app, request);
        Box::pin(async move {
            let mut response = response.await;
            if let (Some(lent), Ok(response)) = (lent, response.as_mut())
                && !drain(&lent, limit).await
            {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            // The connection stays busy until the body is sent (or dropped): see `Sent`.
            answering.0.sending();
            response.map(|response| {
                response.map(|body| {
                    Body::new(Sent {
                        inner: body,
                        answering: Some(answering),
                    })
                })
            })
        })
    }
}

/// An answer's body, which keeps its connection busy until it is sent to its end (or dropped,
/// when the client went), and counts each piece it hands over as progress.
struct Sent {
    inner: Body,
    answering: Option<Answering>,
}

impl hyper::body::Body for Sent {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                if let Some(answering) = &self.answering {
                    answering.0.progress();
                }
            }
            // The end, or a body that failed: the answer is over either way.
            Poll::Ready(None | Some(Err(_))) => self.answering = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks the connection busy while it lives, so a request dropped half-way (the client went)
/// still ends its busy phase.
struct Answering(Arc<Activity>);

impl Answering {
    fn new(activity: Arc<Activity>) -> Answering {
        activity.request_started();
        Answering(activity)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A request body the application borrows, shared with the connection, which takes back
/// what is left once the answer is ready (see `drain`).
struct Lent {
    body: Option<Deadline>,
    /// Bytes of data the application read.
    read: usize,
    /// The application read it to its end.
    ended: bool,
}

impl Lent {
    fn new(body: Deadline) -> Arc<Mutex<Lent>> {
        Arc::new(Mutex::new(Lent {
            body: Some(body),
            read: 0,
            ended: false,
        }))
    }
}

fn lock(lent: &Mutex<Lent>) -> std::sync::MutexGuard<'_, Lent> {
    lent.lock().unwrap_or_else(|e| e.into_inner())
}

/// The application's side of a `Lent` body. The lock is only ever taken by the connection's
/// own task, one poll at a time, so it is never contended.
struct Borrowed(Arc<Mutex<Lent>>);

impl hyper::body::Body for Borrowed {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut lent = lock(&self.0);
        let Some(body) = lent.body.as_mut() else {
            // Taken back after the answer: nothing more is read for this request.
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                lent.read += frame.data_ref().map_or(0, |data| data.len());
            }
            Poll::Ready(None) => lent.ended = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let lent = lock(&self.0);
        lent.ended || lent.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0)
            .body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// Reads to its end what the application left of a request body, so that the connection can
/// serve its next request. False when the connection must close instead: the body is over
/// `limit` bytes in all (announced or as it arrives), does not arrive in time, or breaks.
async fn drain(lent: &Mutex<Lent>, limit: usize) -> bool {
    let (mut body, mut read) = {
        let mut lent = lock(lent);
        if lent.ended {
            return true;
        }
        match lent.body.take() {
            Some(body) => (body, lent.read),
            None => return true,
        }
    };
    if body.is_end_stream() {
        return true;
    }
    let announced = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if read.saturating_add(announced) > limit {
        return false;
    }
    loop {
        let frame =
            std::future::poll_fn(|cx| hyper::body::Body::poll_frame(Pin::new(&mut body), cx)).await;
        match frame {
            None => return true,
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, |data| data.len());
                if read > limit {
                    return false;
                }
            }
            Some(Err(_)) => return false,
        }
    }
}

/// A request body that must arrive in full within `timeout` of its headers.
struct Deadline {
    inner: Incoming,
    timer: Pin<Box<Sleep>>,
    timeout: Duration,
}

/// A request body that did not arrive in time; `ApiError` answers it with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s of its headers", .0.as_secs_f64())]
pub struct BodyTimedOut(Duration);

impl hyper::body::Body for Deadline {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity() -> Activity {
        Activity {
            limits: Limits {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 1,
                body_limit: 1024,
            },
            phase: Mutex::new(Phase::Opened(Instant::now())),
            answered: Notify::new(),
        }
    }

    #[test]
    fn deadlines_follow_the_request_cycle() {
        let activity = activity();
        let header = Duration::from_secs(10);
        let Phase::Opened(opened) = activity.phase() else {
            panic!("a new connection is opened")
        };
        assert_eq!(activity.deadline(activity.phase()), Some(opened + header));
        // The first request's headers are counted from the opening.
        activity.received();
        assert!(matches!(activity.phase(), Phase::Head(since) if since == opened));
        activity.request_started();
        assert_eq!(activity.deadline(activity.phase()), None);
        activity.received();
        assert_eq!(activity.deadline(activity.phase()), None, "body bytes");
        let before = Instant::now();
        activity.request_finished();
        let Phase::Idle(answered) = activity.phase() else {
            panic!("answered, so idle")
        };
        assert!(answered >= before);
        assert_eq!(
            activity.deadline(activity.phase()),
            Some(answered + Duration::from_secs(60))
        );
        // A later request's headers are counted from its first byte.
        let before = Instant::now();
        activity.received();
        let Phase::Head(first_byte) = activity.phase() else {
            panic!("receiving a head")
        };
        assert!(first_byte >= before);
        assert_eq!(
            activity.deadline(activity.phase()),
            Some(first_byte + header)
        );
    }

    #[test]
    fn one_idle_connection_makes_room_per_newcomer() {
        let (asked, _seen) = watch::channel(0);
        let room = Room {
            wanted: AtomicUsize::new(0),
            asked,
        };
        assert!(!room.claim());
        room.ask();
        assert!(room.claim());
        assert!(!room.claim(), "a second idle connection stays");
        room.withdraw();
        assert!(!room.claim());
        room.ask();
        room.withdraw();
        assert!(!room.claim(), "the newcomer found a slot by itself");
    }

    /// A body refused before it arrived (413 on its announced length): the client, still
    /// sending, reads the answer instead of a reset connection, every time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_sending_a_refused_body_reads_the_answer() {
        use axum::http::StatusCode;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::post(|| async { StatusCode::PAYLOAD_TOO_LARGE }),
        );
        let limits = Limits {
            body_limit: 1024,
            ..Limits::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        let body = vec![b'x'; 8 * 1024 * 1024];
        for round in 0..5 {
            let body = body.clone();
            let answer = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Write};
                let mut tcp = std::net::TcpStream::connect(address).unwrap();
                let head = format!(
                    "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                tcp.write_all(head.as_bytes()).unwrap();
                let sent = tcp.write_all(&body);
                let mut answer = String::new();
                let read = tcp.read_to_string(&mut answer);
                (sent.is_ok(), read.is_ok(), answer)
            })
            .await
            .unwrap();
            assert_eq!(
                (answer.0, answer.1),
                (true, true),
                "round {round}: {answer:?}"
            );
            assert!(
                answer.2.starts_with("HTTP/1.1 413") && answer.2.contains("connection: close"),
                "round {round}: {}",
                answer.2
            );
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
