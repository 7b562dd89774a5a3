//! The collector: receives every worker's results, ACKs each to the distributor, and finishes
//! when the distributor says the run is over (seed 001's `Collector`).
//!
//! It binds two endpoints: `endpoint`, where workers send results, and `ack_endpoint`, where the
//! distributor connects (one at a time; a newer connection replaces an older one). Every result
//! is ACKed, duplicates included, so the distributor retires the lease whichever copy arrives
//! first; the caller's [`Collector`] sees each result with `duplicate` set for a task id it has
//! seen before. ACKs are written in one batch per wake-up, and only after the caller's
//! [`Collector::commit`] made that batch's results durable (record, then ACK). A result that arrives while no
//! distributor is connected is not ACKed: its lease runs out and it comes again, as a counted
//! duplicate. Remembering seen ids costs 8 bytes per task of the run.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use plumbline_core::Shutdown;
use plumbline_transport::endpoint::{Conn, Endpoint, EndpointError, Listener};
use serde::Serialize;
use serde_json::Value;

use crate::distributor::MAX_NAME;
use crate::peers::{self, Greeting, EVENT_QUEUE};
use crate::wire::{self, Message, MessageReader, Role, WireError, PROTOCOL};

/// One result as the collector hands it on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskResult {
    pub id: u64,
    pub task_type: String,
    pub attempt: u32,
    pub worker: String,
    pub started_ns: u64,
    pub finished_ns: u64,
    pub data: Value,
    /// A result for this task id already arrived: the task ran more than once.
    pub duplicate: bool,
}

/// What the caller does with results.
pub trait Collector {
    /// Called for every result, in arrival order, on the collector's loop.
    fn handle_collection(&mut self, result: &TaskResult);

    /// Makes every result handed to [`Collector::handle_collection`] so far durable (a
    /// results file flushed). Called before their ACKs are written: an ACK retires a task for
    /// good, so what it acknowledges must survive the collector's death right after. An error
    /// ends the run with nothing more ACKed; the distributor then hands those tasks out again.
    fn commit(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    /// Called once, when the distributor ends the run.
    fn handle_finished(&mut self, _summary: &CollectorSummary) {}
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CollectorSummary {
    /// Distinct tasks collected.
    pub results: u64,
    pub duplicates: u64,
    /// Results per worker, duplicates included.
    pub per_worker: BTreeMap<String, u64>,
    /// Peers dropped for breaking the protocol.
    pub bad_peers: u64,
    /// Results never ACKed: more were owed to an absent distributor than [`MAX_OWED_ACKS`].
    pub unacked: u64,
    /// Ctrl-C ended it before the distributor's `end`.
    pub interrupted: bool,
    /// Why it ended without the distributor's `end` (the distributor went away for good).
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("recording results failed ({0}); {1} results were left un-ACKed to come again")]
    Record(std::io::Error, usize),
}

enum Event {
    Result(Box<TaskResult>),
    /// A distributor said hello on ACK connection `id`.
    DistributorUp(u64, Conn),
    /// ACK connection `id` ended without `end`.
    DistributorGone(u64),
    End,
    Bad {
        peer: String,
        reason: String,
    },
}

/// ACKs kept for a distributor that is away. It dispatches nothing while away, so what is owed
/// is at most the workers' credits; past this cap results go un-ACKed (their leases run out).
const MAX_OWED_ACKS: usize = 100_000;

/// How long a distributor that went away may take to come back by default.
pub const DISTRIBUTOR_TIMEOUT: Duration = Duration::from_secs(30);

/// A collector with both endpoints bound.
pub struct BoundCollector {
    results: Listener,
    acks: Listener,
    distributor_timeout: Duration,
    token: Option<String>,
}

impl BoundCollector {
    pub fn bind(endpoint: &Endpoint, ack_endpoint: &Endpoint) -> Result<Self, CollectorError> {
        Ok(Self {
            results: endpoint.bind()?,
            acks: ack_endpoint.bind()?,
            distributor_timeout: DISTRIBUTOR_TIMEOUT,
            token: None,
        })
    }

    /// The run's shared secret: a worker or distributor whose hello lacks it is refused.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// How long a distributor whose ACK connection ended without `end` may take to connect
    /// again before the run ends with what was recorded and an error.
    pub fn distributor_timeout(mut self, timeout: Duration) -> Self {
        self.distributor_timeout = timeout;
        self
    }

    /// (result endpoint, ACK endpoint), with real ports for `tcp://…:0`.
    pub fn endpoints(&self) -> (Endpoint, Endpoint) {
        (self.results.endpoint(), self.acks.endpoint())
    }

    /// Collects until the distributor's `end` (or Ctrl-C), then answers `finished`.
    pub fn run(
        self,
        collector: &mut impl Collector,
        shutdown: &Shutdown,
    ) -> Result<CollectorSummary, CollectorError> {
        let stop = Shutdown::new();
        let (events, inbox) = crossbeam_channel::bounded(EVENT_QUEUE);
        let sender = events.clone();
        let token: Option<Arc<str>> = self.token.as_deref().map(Arc::from);
        let expected = token.clone();
        let results = peers::serve(
            self.results,
            stop.clone(),
            "collector",
            move |conn, greeting| serve_worker(conn, greeting, expected.as_deref(), &sender),
        )
        .map_err(CollectorError::Thread)?;
        let sender = events.clone();
        let ids = AtomicU64::new(0);
        let acking = peers::serve(
            self.acks,
            stop.clone(),
            "collector-ack",
            move |conn, greeting| {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                serve_distributor(conn, greeting, token.as_deref(), id, &sender)
            },
        )
        .map_err(CollectorError::Thread)?;
        let mut seen = HashSet::new();
        let mut summary = CollectorSummary::default();
        // The distributor this run is bound to (its connection id and a handle to answer it),
        // and since when none is connected.
        let mut distributor: Option<(u64, Conn)> = None;
        let mut away_since: Option<Instant> = None;
        let mut ever_connected = false;
        // ACKs not yet written: kept while no distributor is connected, sent when one is.
        let mut acks = Vec::new();
        let mut owed = 0usize;
        let finished = loop {
            if shutdown.requested() {
                summary.interrupted = true;
                break Ok(false);
            }
            if let Some(since) = away_since.filter(|_| ever_connected) {
                if since.elapsed() > self.distributor_timeout {
                    let why = format!(
                        "the distributor went away without ending the run and did not come \
                         back within {:?} (--distributor-timeout)",
                        self.distributor_timeout
                    );
                    tracing::error!("collector: {why}");
                    summary.error = Some(why);
                    break Ok(false);
                }
            }
            let first = match inbox.recv_timeout(Duration::from_millis(50)) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => continue,
            };
            let mut end = false;
            let mut recorded = false;
            for event in std::iter::once(first).chain(inbox.try_iter()) {
                match event {
                    Event::Result(mut result) => {
                        recorded = true;
                        result.duplicate = !seen.insert(result.id);
                        if result.duplicate {
                            summary.duplicates += 1;
                        } else {
                            summary.results += 1;
                        }
                        // One allocation per worker, not per result.
                        match summary.per_worker.get_mut(&result.worker) {
                            Some(count) => *count += 1,
                            None => {
                                summary.per_worker.insert(result.worker.clone(), 1);
                            }
                        }
                        collector.handle_collection(&result);
                        if owed < MAX_OWED_ACKS {
                            let ack = Message::Ack {
                                id: result.id,
                                attempt: result.attempt,
                                task_type: result.task_type,
                                worker: result.worker,
                            };
                            ack.encode_into(&mut acks).ok();
                            owed += 1;
                        } else {
                            summary.unacked += 1;
                        }
                    }
                    Event::DistributorUp(id, conn) => match &distributor {
                        // One distributor per run: another hello while it is connected is an
                        // impostor (or a second run), never a reason to drop the first.
                        Some((_, current)) => {
                            let reason = format!(
                                "a distributor is already connected from {}",
                                current.peer()
                            );
                            summary.bad_peers += 1;
                            tracing::warn!("collector: refused {}: {reason}", conn.peer());
                            tell_refused(conn, reason);
                        }
                        None => {
                            if away_since.take().is_some() && ever_connected {
                                tracing::info!(
                                    "collector: the distributor is back from {}",
                                    conn.peer()
                                );
                            }
                            ever_connected = true;
                            distributor = Some((id, conn));
                        }
                    },
                    Event::DistributorGone(id) => {
                        if distributor
                            .as_ref()
                            .is_some_and(|(current, _)| *current == id)
                        {
                            tracing::warn!(
                                "collector: the distributor closed the ACK connection without \
                                 ending the run; waiting {:?} for it to come back",
                                self.distributor_timeout
                            );
                            distributor = None;
                            away_since = Some(Instant::now());
                        }
                    }
                    Event::End => end = true,
                    Event::Bad { peer, reason } => {
                        summary.bad_peers += 1;
                        tracing::warn!("collector: dropped {peer}: {reason}");
                    }
                }
            }
            // Record, then ACK: a result is durable before the distributor forgets its task.
            if recorded {
                if let Err(e) = collector.commit() {
                    break Err(CollectorError::Record(e, owed));
                }
            }
            if let Some((_, conn)) = &mut distributor {
                if !acks.is_empty() {
                    if conn.write_all(&acks).is_ok() {
                        acks.clear();
                        owed = 0;
                    } else {
                        distributor = None;
                        away_since = Some(Instant::now());
                    }
                }
            }
            if end {
                break Ok(true);
            }
        };
        stop.request();
        // The accept threads own the listeners: joined, an ipc:// socket file is gone.
        results.join().ok();
        acking.join().ok();
        let finished = finished?;
        collector.handle_finished(&summary);
        if let Some((_, mut conn)) = distributor {
            if finished {
                let reply = Message::Finished {
                    results: summary.results,
                    duplicates: summary.duplicates,
                };
                reply.send(&mut conn).ok();
            }
        }
        Ok(summary)
    }
}

/// A peer that has said a good hello: its reader, a handle to answer it, and its address.
struct Greeted {
    reader: MessageReader<Conn>,
    writer: Conn,
    peer: String,
    /// The name its hello gave.
    name: String,
}

impl Greeted {
    /// Reads the hello; a wrong one is refused (told to the peer, counted as a bad peer).
    fn accept(
        conn: Conn,
        greeting: Greeting,
        want: Role,
        token: Option<&str>,
        events: &Sender<Event>,
    ) -> Option<Self> {
        let peer = conn.peer();
        let writer = conn.try_clone().ok()?;
        let mut reader = MessageReader::new(conn);
        let reason = match reader.recv() {
            Ok(Message::Hello { token: given, .. }) if !wire::token_ok(token, given.as_deref()) => {
                "wrong or missing token (--token)".to_string()
            }
            Ok(Message::Hello {
                protocol,
                role,
                name,
                ..
            }) if role == want && protocol == PROTOCOL && name.len() <= MAX_NAME => {
                greeting.done(&writer);
                return Some(Self {
                    reader,
                    writer,
                    peer,
                    name,
                });
            }
            Ok(Message::Hello { name, .. }) if name.len() > MAX_NAME => {
                format!("a name of {} bytes is longer than {MAX_NAME}", name.len())
            }
            Err(WireError::Closed | WireError::Io(_)) => return None,
            Ok(Message::Hello { protocol, role, .. }) if role == want => {
                format!("protocol {protocol} is not this collector's {PROTOCOL}")
            }
            Ok(other) => format!("expected a {want:?} hello, got '{}'", other.kind()),
            Err(e) => format!("expected a {want:?} hello: {e}"),
        };
        refuse(writer, peer, reason, events);
        None
    }

    fn refuse(self, reason: String, events: &Sender<Event>) {
        refuse(self.writer, self.peer, reason, events);
    }
}

/// Tells a peer why it is dropped, drops it, and counts it.
fn refuse(writer: Conn, peer: String, reason: String, events: &Sender<Event>) {
    tell_refused(writer, reason.clone());
    events.send(Event::Bad { peer, reason }).ok();
}

fn tell_refused(mut writer: Conn, reason: String) {
    Message::Refused { reason }.send(&mut writer).ok();
    writer.close();
}

/// Reads one worker's results.
fn serve_worker(conn: Conn, greeting: Greeting, token: Option<&str>, events: &Sender<Event>) {
    let Some(mut peer) = Greeted::accept(conn, greeting, Role::Worker, token, events) else {
        return;
    };
    loop {
        let reason = match peer.reader.recv() {
            Ok(Message::Result {
                id,
                task_type,
                attempt,
                started_ns,
                finished_ns,
                data,
                ..
            }) => {
                // Counted under the name its hello gave, whatever each result claims.
                let result = TaskResult {
                    id,
                    task_type,
                    attempt,
                    worker: peer.name.clone(),
                    started_ns,
                    finished_ns,
                    data,
                    duplicate: false,
                };
                if events.send(Event::Result(Box::new(result))).is_err() {
                    return;
                }
                continue;
            }
            Ok(other) => format!("worker sent '{}' where only results may come", other.kind()),
            Err(WireError::Closed | WireError::Io(_)) => return,
            Err(e) => e.to_string(),
        };
        return peer.refuse(reason, events);
    }
}

/// Reads the distributor's side of the ACK connection: its hello, then `end`.
fn serve_distributor(
    conn: Conn,
    greeting: Greeting,
    token: Option<&str>,
    id: u64,
    events: &Sender<Event>,
) {
    let Some(mut peer) = Greeted::accept(conn, greeting, Role::Distributor, token, events) else {
        return;
    };
    let Ok(writer) = peer.writer.try_clone() else {
        return;
    };
    if events.send(Event::DistributorUp(id, writer)).is_err() {
        return;
    }
    let reason = match peer.reader.recv() {
        Ok(Message::End {}) => {
            events.send(Event::End).ok();
            return;
        }
        Ok(other) => format!(
            "distributor sent '{}' where only 'end' may come",
            other.kind()
        ),
        Err(WireError::Closed | WireError::Io(_)) => {
            events.send(Event::DistributorGone(id)).ok();
            return;
        }
        Err(e) => e.to_string(),
    };
    events.send(Event::DistributorGone(id)).ok();
    peer.refuse(reason, events);
}
