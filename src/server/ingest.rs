//! Production evidence on its way into the store, off the request path: a bounded queue of
//! span batches and annotations, one writer thread that stores them in order (so an annotation
//! sent after its span finds it), the per-minute roll-up of tag lookups, the version names
//! spans claim resolved through a small cache, and retention.
//!
//! The API (`serve`) decodes requests and hands finished batches here; prompt lookups never
//! wait on anything in this module (the roll-up is a counter behind a short lock). It speaks
//! no HTTP and must not decode a wire format; it must not decide a span's fields beyond its
//! link.

use crate::store::{Store, StoreError};
use crate::trace::{Annotation, Claim, Link, LookupKey, Span, now_ms};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Spans held in the queue at most before senders are asked to retry (`Full`).
pub const DEFAULT_QUEUE_SPANS: usize = 100_000;
/// How long spans are kept by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Spans written per transaction at most.
const WRITE_BATCH: usize = 5_000;
/// How often the lookup roll-up is written.
const LOOKUP_FLUSH: Duration = Duration::from_secs(2);
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How long a version name (a tag, or a name that matched nothing) is trusted.
const CLAIM_TTL: Duration = Duration::from_secs(5);
/// Distinct lookup keys held between flushes at most; beyond it they are flushed early.
const MAX_LOOKUP_KEYS: usize = 10_000;

/// What the server was given for ingest.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue_spans: usize,
    pub retention: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            queue_spans: DEFAULT_QUEUE_SPANS,
            retention: DEFAULT_RETENTION,
        }
    }
}

/// Why a batch was not queued.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// The queue is full: the sender should retry after a while.
    Full,
    /// The writer has stopped (the server is shutting down).
    Closed,
}

/// An annotation request's answer: the ids, or the targets that do not exist.
pub type Annotated = std::result::Result<Vec<i64>, Vec<String>>;

enum Job {
    Spans(Vec<Span>, Vec<Annotation>),
    Annotate(
        Vec<Annotation>,
        Option<tokio::sync::oneshot::Sender<Result<Annotated, StoreError>>>,
    ),
}

/// Counters an operator (and the tests) can read.
#[derive(Debug, Default)]
pub struct Counters {
    pub spans_received: AtomicU64,
    pub spans_written: AtomicU64,
    pub spans_unlinked: AtomicU64,
    pub write_failures: AtomicU64,
}

/// The queue, the writer thread and the lookup roll-up.
pub struct Ingest {
    sender: Mutex<Option<SyncSender<Job>>>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    lookups: Arc<Mutex<HashMap<LookupKey, i64>>>,
    claims: Mutex<HashMap<Claim, (Instant, Option<Link>)>>,
    store: Arc<dyn Store>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stopping: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
}

impl Ingest {
    /// Starts the writer thread over `store`.
    pub fn start(store: Arc<dyn Store>, settings: Settings) -> Arc<Ingest> {
        // The channel bounds jobs; `queued` bounds spans, which is what costs memory.
        let (sender, receiver) = std::sync::mpsc::sync_channel(4_096);
        let queued = Arc::new(AtomicUsize::new(0));
        let lookups = Arc::new(Mutex::new(HashMap::new()));
        let counters = Arc::new(Counters::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            store: Arc::clone(&store),
            receiver,
            queued: Arc::clone(&queued),
            lookups: Arc::clone(&lookups),
            counters: Arc::clone(&counters),
            retention: settings.retention,
            stopping: Arc::clone(&stopping),
        };
        let span = tracing::Span::current();
        let handle = std::thread::Builder::new()
            .name("runner-ingest".into())
            .spawn(move || span.in_scope(|| writer.run()))
            .expect("the ingest writer thread starts");
        Arc::new(Ingest {
            sender: Mutex::new(Some(sender)),
            queued,
            capacity: settings.queue_spans.max(1),
            lookups,
            claims: Mutex::new(HashMap::new()),
            store,
            writer: Mutex::new(Some(handle)),
            stopping,
            counters,
        })
    }

    /// Queues spans (with the evaluation events they carried) to be written.
    pub fn spans(&self, spans: Vec<Span>, events: Vec<Annotation>) -> Result<(), Refused> {
        let n = spans.len();
        let before = self.queued.fetch_add(n, Ordering::SeqCst);
        if before > 0 && before + n > self.capacity {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(Refused::Full);
        }
        self.counters
            .spans_received
            .fetch_add(n as u64, Ordering::Relaxed);
        let unlinked = spans
            .iter()
            .filter(|s| s.link.is_none() && s.is_llm())
            .count();
        self.counters
            .spans_unlinked
            .fetch_add(unlinked as u64, Ordering::Relaxed);
        self.send(Job::Spans(spans, events)).inspect_err(|_| {
            self.queued.fetch_sub(n, Ordering::SeqCst);
        })
    }

    /// Queues annotations behind every span queued before them. With `wait`, answers once they
    /// are written (or refused because a target does not exist); without, answers at once and
    /// annotations of unknown targets are dropped with a warning, as Phoenix does.
    pub async fn annotate(
        &self,
        annotations: Vec<Annotation>,
        wait: bool,
    ) -> Result<Option<Result<Annotated, StoreError>>, Refused> {
        if !wait {
            self.send(Job::Annotate(annotations, None))?;
            return Ok(None);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Annotate(annotations, Some(reply)))?;
        answer.await.map(Some).map_err(|_| Refused::Closed)
    }

    fn send(&self, job: Job) -> Result<(), Refused> {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(Refused::Closed);
        };
        match sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Closed),
        }
    }

    /// Counts one tag lookup in the current minute's roll-up.
    pub fn lookup(&self, prompt: &str, tag: &str, version_id: &str, sender: &str, agent: &str) {
        let key = LookupKey {
            minute: now_ms().div_euclid(60_000),
            prompt: prompt.to_string(),
            tag: tag.to_string(),
            version_id: version_id.to_string(),
            sender: sender.to_string(),
            user_agent: agent.chars().take(200).collect(),
        };
        let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        // Past the bound, further distinct keys in this interval are folded into one, so a
        // client sending a new User-Agent on every call cannot grow the map.
        if lookups.len() >= MAX_LOOKUP_KEYS && !lookups.contains_key(&key) {
            let folded = LookupKey {
                user_agent: "(other)".into(),
                ..key
            };
            *lookups.entry(folded).or_insert(0) += 1;
            return;
        }
        *lookups.entry(key).or_insert(0) += 1;
    }

    /// The version a claim names, if it names one that exists: ids and numbers are cached for
    /// good (versions never change), tags and misses for a few seconds (tags move, versions
    /// get created). Runs on a blocking thread: it may read the store.
    pub fn resolve(&self, claim: &Claim, source: &'static str) -> Result<Option<Link>, StoreError> {
        {
            let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, link)) = claims.get(claim) {
                let lasting =
                    matches!(claim, Claim::Id(_) | Claim::Number { .. }) && link.is_some();
                if lasting || at.elapsed() < CLAIM_TTL {
                    return Ok(link.clone().map(|l| Link { source, ..l }));
                }
            }
        }
        let found = match claim {
            Claim::Id(id) => self.store.version_by_id(id)?.map(|v| (v, None)),
            Claim::Number { prompt, number } => {
                let reference = crate::model::VersionRef::Seq(*number);
                match self.store.version(prompt, &reference) {
                    Ok(v) => Some((v, None)),
                    Err(e) if e.is_invalid_input() => None,
                    Err(e) => return Err(e),
                }
            }
            Claim::Tag { prompt, tag } => match self.store.tag_target(prompt, tag) {
                Ok((id, _)) => self
                    .store
                    .version_by_id(&id)?
                    .map(|v| (v, Some(tag.clone()))),
                Err(e) if e.is_invalid_input() => None,
                Err(e) => return Err(e),
            },
        };
        let link = found.map(|(version, tag)| Link {
            prompt: version.prompt.clone(),
            version_id: version.id.clone(),
            version_number: version.seq,
            tag,
            source,
        });
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if claims.len() >= 10_000 {
            claims.clear();
        }
        claims.insert(claim.clone(), (Instant::now(), link.clone()));
        Ok(link)
    }

    /// Spans waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Stops taking work, writes what is queued and the lookup roll-up, and waits for the
    /// writer (at most `patience`).
    pub fn close(&self, patience: Duration) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(handle) = handle else { return };
        let deadline = Instant::now() + patience;
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        } else {
            self.stopping.store(true, Ordering::SeqCst);
            tracing::error!(
                queued = self.queued(),
                "ingest writer did not finish in time; queued spans are lost"
            );
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    receiver: Receiver<Job>,
    queued: Arc<AtomicUsize>,
    lookups: Arc<Mutex<HashMap<LookupKey, i64>>>,
    counters: Arc<Counters>,
    retention: Duration,
    stopping: Arc<AtomicBool>,
}

impl Writer {
    fn run(self) {
        let mut last_flush = Instant::now();
        let mut last_prune: Option<Instant> = None;
        loop {
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                self.prune();
                last_prune = Some(Instant::now());
            }
            match self.receiver.recv_timeout(LOOKUP_FLUSH) {
                Ok(job) => self.handle(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush_lookups();
                    return;
                }
            }
            if last_flush.elapsed() >= LOOKUP_FLUSH || self.lookup_keys() >= MAX_LOOKUP_KEYS {
                self.flush_lookups();
                last_flush = Instant::now();
            }
        }
    }

    fn lookup_keys(&self) -> usize {
        self.lookups.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn handle(&self, job: Job) {
        match job {
            Job::Spans(mut spans, mut events) => {
                // Whatever else is already queued goes into the same transaction.
                let mut held = None;
                while spans.len() < WRITE_BATCH {
                    match self.receiver.try_recv() {
                        Ok(Job::Spans(more, more_events)) => {
                            spans.extend(more);
                            events.extend(more_events);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let n = spans.len();
                self.retrying("write spans", || self.store.write_spans(&spans, &events));
                self.queued.fetch_sub(n, Ordering::SeqCst);
                self.counters
                    .spans_written
                    .fetch_add(n as u64, Ordering::Relaxed);
                if let Some(job) = held {
                    self.handle(job);
                }
            }
            Job::Annotate(annotations, reply) => {
                let answer = self.store.annotate(&annotations);
                match (&answer, &reply) {
                    (Ok(Err(missing)), None) => tracing::warn!(
                        unknown = %missing.join(", "),
                        "annotations for unknown spans or traces were dropped"
                    ),
                    (Err(e), None) => tracing::error!("cannot write annotations: {e}"),
                    _ => {}
                }
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Retries a write until it succeeds: a store that is briefly unavailable (a restart, a
    /// lock) costs time, not spans. New batches meanwhile fill the queue, and senders are told
    /// to retry later.
    fn retrying(&self, what: &str, mut write: impl FnMut() -> Result<u64, StoreError>) {
        let mut pause = Duration::from_millis(100);
        loop {
            match write() {
                Ok(_) => return,
                Err(e) => {
                    self.counters.write_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("cannot {what}: {e}; retrying in {} ms", pause.as_millis());
                    if self.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn flush_lookups(&self) {
        let counts: Vec<(LookupKey, i64)> = {
            let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            lookups.drain().collect()
        };
        if counts.is_empty() {
            return;
        }
        if let Err(e) = self.store.record_lookups(&counts) {
            tracing::error!("cannot record {} lookup counts: {e}", counts.len());
            // Kept for the next flush rather than lost.
            let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            for (key, count) in counts {
                *lookups.entry(key).or_insert(0) += count;
            }
        }
    }

    fn prune(&self) {
        let before = now_ms() - self.retention.as_millis() as i64;
        match self.store.prune_traces(before) {
            Ok(0) => {}
            Ok(n) => tracing::info!(spans = n, "pruned spans past the trace retention"),
            Err(e) => tracing::error!("cannot prune spans: {e}"),
        }
    }
}
