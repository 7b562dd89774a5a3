//! The collector: receives every worker's results, ACKs each to the distributor, and finishes
//! when the distributor says the run is over (seed 001's `Collector`).
//!
//! It binds two endpoints: `endpoint`, where workers send results, and `ack_endpoint`, where the
//! distributor connects (one at a time; a newer connection replaces an older one). Every result
//! is ACKed, duplicates included, so the distributor retires the lease whichever copy arrives
//! first; the caller's [`Collector`] sees each result with `duplicate` set for a task id it has
//! seen before. ACKs are written in one batch per wake-up. A result that arrives while no
//! distributor is connected is not ACKed: its lease runs out and it comes again, as a counted
//! duplicate. Remembering seen ids costs 8 bytes per task of the run.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use plumbline_core::Shutdown;
use plumbline_transport::endpoint::{Conn, Endpoint, EndpointError, Listener};
use serde::Serialize;
use serde_json::Value;

use crate::peers;
use crate::wire::{Message, MessageReader, Role, WireError, PROTOCOL};

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
    /// Results that arrived with no distributor to ACK them.
    pub unacked: u64,
    /// Ctrl-C ended it before the distributor's `end`.
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

enum Event {
    Result(Box<TaskResult>),
    DistributorUp(Conn),
    End,
    Bad { peer: String, reason: String },
}

/// Results wait here; full, the workers' reader threads block and TCP pushes back.
const EVENT_QUEUE: usize = 4096;

/// A collector with both endpoints bound.
pub struct BoundCollector {
    results: Listener,
    acks: Listener,
}

impl BoundCollector {
    pub fn bind(endpoint: &Endpoint, ack_endpoint: &Endpoint) -> Result<Self, CollectorError> {
        Ok(Self {
            results: endpoint.bind()?,
            acks: ack_endpoint.bind()?,
        })
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
        peers::serve(self.results, stop.clone(), "collector", move |conn| {
            serve_worker(conn, &sender)
        })
        .map_err(CollectorError::Thread)?;
        let sender = events.clone();
        peers::serve(self.acks, stop.clone(), "collector-ack", move |conn| {
            serve_distributor(conn, &sender)
        })
        .map_err(CollectorError::Thread)?;
        let mut seen = HashSet::new();
        let mut summary = CollectorSummary::default();
        let mut distributor: Option<Conn> = None;
        let mut acks = Vec::new();
        let finished = loop {
            let first = match inbox.recv_timeout(Duration::from_millis(50)) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    if shutdown.requested() {
                        summary.interrupted = true;
                        break false;
                    }
                    continue;
                }
            };
            let mut end = false;
            for event in std::iter::once(first).chain(inbox.try_iter()) {
                match event {
                    Event::Result(mut result) => {
                        result.duplicate = !seen.insert(result.id);
                        if result.duplicate {
                            summary.duplicates += 1;
                        } else {
                            summary.results += 1;
                        }
                        *summary.per_worker.entry(result.worker.clone()).or_default() += 1;
                        collector.handle_collection(&result);
                        if distributor.is_some() {
                            let ack = Message::Ack {
                                id: result.id,
                                attempt: result.attempt,
                                task_type: result.task_type,
                                worker: result.worker,
                            };
                            ack.encode_into(&mut acks).ok();
                        } else {
                            summary.unacked += 1;
                        }
                    }
                    Event::DistributorUp(conn) => {
                        if let Some(old) = distributor.replace(conn) {
                            old.close();
                        }
                    }
                    Event::End => end = true,
                    Event::Bad { peer, reason } => {
                        summary.bad_peers += 1;
                        eprintln!("collector: dropped {peer}: {reason}");
                    }
                }
            }
            if let Some(conn) = &mut distributor {
                if !acks.is_empty() && conn.write_all(&acks).is_err() {
                    distributor = None;
                }
            }
            acks.clear();
            if end {
                break true;
            }
        };
        stop.request();
        collector.handle_finished(&summary);
        if let Some(mut conn) = distributor {
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

fn hello_error(peer: &str, got: Result<Message, WireError>, want: Role) -> Option<Event> {
    let reason = match got {
        Ok(Message::Hello { protocol, role, .. }) if role == want && protocol == PROTOCOL => {
            return None
        }
        Ok(Message::Hello { protocol, role, .. }) if role == want => {
            format!("protocol {protocol} is not this collector's {PROTOCOL}")
        }
        Ok(other) => format!("expected a {want:?} hello, got '{}'", other.kind()),
        Err(e) => format!("expected a {want:?} hello: {e}"),
    };
    Some(Event::Bad {
        peer: peer.to_string(),
        reason,
    })
}

/// Reads one worker's results.
fn serve_worker(conn: Conn, events: &Sender<Event>) {
    let peer = conn.peer();
    let mut reader = MessageReader::new(conn);
    let first = reader.recv();
    if matches!(first, Err(WireError::Closed)) {
        return;
    }
    if let Some(bad) = hello_error(&peer, first, Role::Worker) {
        events.send(bad).ok();
        return;
    }
    loop {
        let event = match reader.recv() {
            Ok(Message::Result {
                id,
                task_type,
                attempt,
                worker,
                started_ns,
                finished_ns,
                data,
            }) => Event::Result(Box::new(TaskResult {
                id,
                task_type,
                attempt,
                worker,
                started_ns,
                finished_ns,
                data,
                duplicate: false,
            })),
            Ok(other) => Event::Bad {
                peer: peer.clone(),
                reason: format!("worker sent '{}' where only results may come", other.kind()),
            },
            Err(WireError::Closed | WireError::Io(_)) => return,
            Err(e) => Event::Bad {
                peer: peer.clone(),
                reason: e.to_string(),
            },
        };
        let bad = matches!(event, Event::Bad { .. });
        if events.send(event).is_err() || bad {
            return;
        }
    }
}

/// Reads the distributor's side of the ACK connection: its hello, then `end`.
fn serve_distributor(conn: Conn, events: &Sender<Event>) {
    let peer = conn.peer();
    let Ok(writer) = conn.try_clone() else {
        return;
    };
    let mut reader = MessageReader::new(conn);
    let first = reader.recv();
    if matches!(first, Err(WireError::Closed)) {
        return;
    }
    if let Some(bad) = hello_error(&peer, first, Role::Distributor) {
        events.send(bad).ok();
        return;
    }
    if events.send(Event::DistributorUp(writer)).is_err() {
        return;
    }
    let event = match reader.recv() {
        Ok(Message::End {}) => Event::End,
        Ok(other) => Event::Bad {
            peer,
            reason: format!(
                "distributor sent '{}' where only 'end' may come",
                other.kind()
            ),
        },
        Err(WireError::Closed | WireError::Io(_)) => return,
        Err(e) => Event::Bad {
            peer,
            reason: e.to_string(),
        },
    };
    events.send(event).ok();
}
