//! The initializer's routing: source connections in, each frame to its partition's owner (or,
//! balanced, to the next worker in turn), and each member's data link out.
//!
//! One [`Router`] behind one lock holds the routes and the [`Migrator`]: a source thread
//! routes a whole socket read under it, and the migration's steps (hold a partition, hand it
//! over in-band, install its state, release what was held) are applied under the same lock,
//! so no item overtakes a handover or an install. Items of a moving partition wait in a
//! bounded buffer; when it is full the source stops reading (backpressure, never a loss).
//! Which partitions move is the [`Migrator`]'s decision, not this module's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufWriter, Write};
use std::net::{Shutdown as Socket, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use plumbline_core::frame::{FrameCodec, FrameError, FrameReader};
use plumbline_core::intake::{IntakeLimits, Slots};
use plumbline_transport::tcp;

use super::super::metrics::Metrics;
use super::super::wire::DataMessage;
use super::super::{frame_key, io, NodeConfig, NodeError};
use super::{local, Event};
use crate::membership::{Assignment, MemberId};
use crate::migration::{self, Action, Migrator, Route};

/// Items of moving partitions held at most, all partitions together, before sources wait.
pub(super) const MAX_HELD: usize = 65_536;
/// How long a source waits before trying again when the hold buffer is full.
const HELD_FULL_WAIT: Duration = Duration::from_millis(1);

/// The frames of one source read that belong to one worker.
pub(super) type Batch = Vec<Bytes>;

/// What the router puts on a member's queue, in order.
pub(super) enum Link {
    Items(Batch),
    /// Apply what came before, then send the partition's state back.
    Handover(u32),
    /// Start the partition from this state, before any of its items.
    Install {
        partition: u32,
        state: Bytes,
    },
}

/// Who gets which frame, and the migrations under way.
pub(super) struct Router {
    /// Balanced clusters deal frames in turn and keep no state, so nothing migrates.
    turn: Option<u64>,
    routes: BTreeMap<MemberId, Sender<Link>>,
    migrator: Migrator,
    held: BTreeMap<u32, VecDeque<Bytes>>,
    held_count: usize,
    max_held: usize,
}

/// What a source could not route.
#[derive(Debug)]
pub(super) enum Unrouted {
    /// The member the frame belongs to is gone (the cluster is stopping).
    Gone,
}

impl Router {
    /// Members `0..n` own partitions round robin (partition `p` → member `p mod n`).
    pub fn new(
        partitions: u32,
        routes: BTreeMap<MemberId, Sender<Link>>,
        balanced: bool,
        max_held: usize,
    ) -> Self {
        let members: Vec<MemberId> = routes.keys().copied().collect();
        Self {
            turn: balanced.then_some(0),
            migrator: Migrator::new(
                Assignment::round_robin(partitions, &members).expect("validated at formation"),
            ),
            routes,
            held: BTreeMap::new(),
            held_count: 0,
            max_held,
        }
    }

    pub fn balanced(&self) -> bool {
        self.turn.is_some()
    }

    pub fn assignment(&self) -> &Assignment {
        self.migrator.assignment()
    }

    pub fn migrating(&self) -> bool {
        self.migrator.migrating()
    }

    /// A member joined: it gets items once partitions move to it (balanced: at once).
    pub fn add(&mut self, member: MemberId, route: Sender<Link>) {
        self.routes.insert(member, route);
    }

    /// Stops routing to `member`: its queue ends, and its data link once written out.
    pub fn remove(&mut self, member: MemberId) {
        self.routes.remove(&member);
    }

    /// Ends every member's queue (the sources have stopped and nothing is held).
    pub fn close(&mut self) {
        self.routes.clear();
    }

    /// Routes `frames` (each with its partition) in order; returns how many it took, fewer
    /// than all when the hold buffer filled (the caller waits and offers the rest again).
    pub fn route(&mut self, frames: &[(u32, Bytes)]) -> Result<usize, Unrouted> {
        let mut per_owner: BTreeMap<MemberId, Batch> = BTreeMap::new();
        let mut taken = 0;
        for (partition, frame) in frames {
            let to = match &mut self.turn {
                Some(turn) => {
                    let members = self.routes.len().max(1) as u64;
                    let nth = (*turn % members) as usize;
                    *turn += 1;
                    match self.routes.keys().nth(nth) {
                        Some(&m) => Route::To(m),
                        None => return Err(Unrouted::Gone),
                    }
                }
                None => self.migrator.route(*partition),
            };
            match to {
                Route::To(member) => per_owner.entry(member).or_default().push(frame.clone()),
                Route::Hold if self.held_count >= self.max_held => break,
                Route::Hold => {
                    self.held
                        .entry(*partition)
                        .or_default()
                        .push_back(frame.clone());
                    self.held_count += 1;
                }
            }
            taken += 1;
        }
        for (member, batch) in per_owner {
            self.send(member, Link::Items(batch))?;
        }
        Ok(taken)
    }

    fn send(&self, member: MemberId, link: Link) -> Result<(), Unrouted> {
        let route = self.routes.get(&member).ok_or(Unrouted::Gone)?;
        route.send(link).map_err(|_| Unrouted::Gone)
    }

    /// Moves partitions to `next`, or records a state that arrived, applying the routing
    /// steps at once; returns what is the caller's to act on (retirements, the outcome).
    pub fn migrate(
        &mut self,
        event: migration::Event,
        now: Instant,
    ) -> Result<Vec<Action>, NodeError> {
        let mut rest = Vec::new();
        for action in self.migrator.handle(event, now) {
            match action {
                Action::Handover { partition, from } => {
                    self.send(from, Link::Handover(partition))
                        .map_err(|_| gone(from))?;
                }
                Action::Install {
                    partition,
                    to,
                    state,
                } => self
                    .send(
                        to,
                        Link::Install {
                            partition,
                            state: Bytes::from(state),
                        },
                    )
                    .map_err(|_| gone(to))?,
                Action::Release { partition, to } => {
                    let held: Batch = self.held.remove(&partition).unwrap_or_default().into();
                    self.held_count -= held.len();
                    if !held.is_empty() {
                        self.send(to, Link::Items(held)).map_err(|_| gone(to))?;
                    }
                }
                other => rest.push(other),
            }
        }
        Ok(rest)
    }
}

fn gone(member: MemberId) -> NodeError {
    NodeError::Protocol(format!(
        "member {member} left while a partition was moving to or from it"
    ))
}

pub(super) type SharedRouter = Arc<Mutex<Router>>;

pub(super) fn lock(router: &SharedRouter) -> MutexGuard<'_, Router> {
    router.lock().unwrap_or_else(|p| p.into_inner())
}

/// The source side: accepts connections on `--in` and routes their frames.
pub(super) struct Sources {
    pub addr: String,
    stopping: Arc<AtomicBool>,
    /// Open source connections by id, to cut them at shutdown; each removes itself when done.
    open: Arc<Mutex<HashMap<u64, TcpStream>>>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl Sources {
    pub fn start(
        config: &NodeConfig,
        addr: &str,
        (max_sources, intake): (usize, IntakeLimits),
        router: SharedRouter,
        shared: Arc<Metrics>,
    ) -> Result<Self, NodeError> {
        let slots = Slots::new(max_sources);
        let listener = tcp::listen(addr)?;
        let bound = local(&listener);
        listener
            .set_nonblocking(true)
            .map_err(io("source listener"))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(HashMap::<u64, TcpStream>::new()));
        let (app, max_frame, name) = (config.app, config.max_frame, config.name.clone());
        let partitions = config.partitions;
        let acceptor = {
            let (stopping, open) = (stopping.clone(), open.clone());
            let ids = AtomicU64::new(0);
            std::thread::spawn(move || {
                let mut sources: Vec<JoinHandle<()>> = Vec::new();
                while !stopping.load(Ordering::Relaxed) {
                    let (stream, peer) = match tcp::accept_or_nap(&listener) {
                        Ok(Some(conn)) => conn,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!("[{name}] accepting a source failed: {e}");
                            continue;
                        }
                    };
                    let Some(slot) = slots.try_acquire() else {
                        shared.source_refused();
                        if slots.refused() == 1 {
                            tracing::warn!(
                                "[{name}] refused source {peer}: {} are open \
                                 (--max-connections); further refusals are counted",
                                slots.max()
                            );
                        }
                        continue;
                    };
                    // Reads wake at least this often, so a stalled frame is judged on time.
                    let _ = stream.set_read_timeout(Some(intake.tick()));
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    if let Ok(clone) = stream.try_clone() {
                        open.lock().expect("not poisoned").insert(id, clone);
                    }
                    sources.retain(|s| !s.is_finished());
                    let (router, shared, name) = (router.clone(), shared.clone(), name.clone());
                    let (open, stopping, intake) = (open.clone(), stopping.clone(), intake.clone());
                    sources.push(std::thread::spawn(move || {
                        let reader =
                            FrameReader::new(stream, FrameCodec::new(max_frame)).limited(&intake);
                        let result = route(reader, app, partitions, &router, &shared);
                        open.lock().expect("not poisoned").remove(&id);
                        drop(slot);
                        match result {
                            Ok(()) => {}
                            Err((reason, _)) if stopping.load(Ordering::Relaxed) => {
                                tracing::info!(
                                    "[{name}] source {peer} cut as the cluster stops ({reason})"
                                )
                            }
                            Err((reason, stalled)) => {
                                shared.source_failed(stalled);
                                tracing::warn!("[{name}] source {peer} closed: {reason}");
                            }
                        }
                    }));
                }
                // A connection accepted while stop() was cutting the others is cut here.
                cut(&open);
                for source in sources {
                    let _ = source.join();
                }
            })
        };
        Ok(Self {
            addr: bound,
            stopping,
            open,
            acceptor: Mutex::new(Some(acceptor)),
        })
    }

    /// Stops accepting and cuts every source connection, without waiting.
    pub fn stop_now(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        cut(&self.open);
    }

    /// Stops the sources and returns once every source thread has ended (so has routed its
    /// last frame).
    pub fn stop(&self) {
        self.stop_now();
        if let Some(acceptor) = self.acceptor.lock().expect("not poisoned").take() {
            let _ = acceptor.join();
        }
    }
}

/// Closes both directions of every open source connection: reads end, and senders see it.
fn cut(open: &Mutex<HashMap<u64, TcpStream>>) {
    for stream in open.lock().expect("not poisoned").values() {
        let _ = stream.shutdown(Socket::Both);
    }
}

/// Reads one source connection and hands each frame to the router. A bad frame, a stalled
/// one or a payload the application cannot key ends this connection only; the error says why,
/// and whether the frame stalled.
fn route(
    mut reader: FrameReader<TcpStream>,
    app: crate::App,
    partitions: u32,
    router: &SharedRouter,
    shared: &Metrics,
) -> Result<(), (String, bool)> {
    let mut batch = Vec::new();
    let mut keyed: Vec<(u32, Bytes)> = Vec::new();
    let mut counts = vec![0u64; partitions as usize];
    let mut accepted = 0u64;
    loop {
        batch.clear();
        keyed.clear();
        let read = reader.read_batch(&mut batch);
        let mut bad = None;
        for (i, frame) in batch.drain(..).enumerate() {
            let key = match frame_key(app, &frame) {
                Ok(key) => key,
                Err(e) => {
                    bad = Some(format!(
                        "frame {} of this connection: {e}",
                        accepted + i as u64
                    ));
                    break;
                }
            };
            let partition = key % partitions;
            counts[partition as usize] += 1;
            keyed.push((partition, frame));
        }
        // Frames before a bad one are routed all the same.
        let mut next = 0;
        while next < keyed.len() {
            let taken = lock(router).route(&keyed[next..]);
            match taken {
                Ok(n) => next += n,
                Err(Unrouted::Gone) => {
                    return Err(("its partition's worker is gone".into(), false));
                }
            }
            if next < keyed.len() {
                // The hold buffer is full: a partition is moving; its release makes room.
                std::thread::sleep(HELD_FULL_WAIT);
            }
        }
        accepted += keyed.len() as u64;
        shared.routed(&mut counts);
        if let Some(reason) = bad {
            return Err((reason, false));
        }
        match read {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                let stalled = matches!(e.source, FrameError::Stalled(_));
                return Err((e.to_string(), stalled));
            }
        }
    }
}

/// Writes a joiner's queue to its data connection, each as a [`DataMessage`]; flushes
/// whenever its queue is empty, after the first batch that ends an idle spell, after a
/// migration step (a partition waits on it), and at least every [`super::super::FLUSH_EVERY`].
pub(super) fn spawn_data_writer(
    name: String,
    stream: TcpStream,
    links: Receiver<Link>,
    events: Sender<Event>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut out = BufWriter::with_capacity(64 * 1024, &stream);
        let mut failed = None;
        let mut last_flush = Instant::now();
        loop {
            if last_flush.elapsed() >= super::super::FLUSH_EVERY {
                last_flush = Instant::now();
                if let Err(e) = out.flush() {
                    failed = Some(e);
                    break;
                }
            }
            let (link, after_idle) = match links.try_recv() {
                Ok(link) => (link, false),
                Err(_) => {
                    if let Err(e) = out.flush() {
                        failed = Some(e);
                        break;
                    }
                    match links.recv() {
                        Ok(link) => (link, true),
                        Err(_) => break,
                    }
                }
            };
            let (written, urgent) = match link {
                Link::Items(batch) => (
                    batch
                        .into_iter()
                        .try_for_each(|frame| DataMessage::Item(frame).write_to(&mut out)),
                    after_idle,
                ),
                Link::Handover(partition) => {
                    (DataMessage::Handover(partition).write_to(&mut out), true)
                }
                Link::Install { partition, state } => (
                    DataMessage::Install { partition, state }.write_to(&mut out),
                    true,
                ),
            };
            // The first batch after an idle spell leaves at once: its worker has likely run
            // dry and waits for it (a burst's first frames otherwise waited up to a flush
            // period for the rest of the burst).
            let written = written.and_then(|()| if urgent { out.flush() } else { Ok(()) });
            if let Err(e) = written {
                failed = Some(e);
                break;
            }
        }
        let flushed = out.flush();
        drop(out);
        let _ = stream.shutdown(Socket::Write);
        if let Some(e) = failed.or(flushed.err()) {
            let _ = events.send(Event::Died {
                name,
                why: format!("its data connection failed: {e}"),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(members: u32, balanced: bool, max_held: usize) -> (Router, Vec<Receiver<Link>>) {
        let (mut routes, mut queues) = (BTreeMap::new(), Vec::new());
        for m in 0..members {
            let (tx, rx) = crossbeam_channel::bounded(64);
            routes.insert(m, tx);
            queues.push(rx);
        }
        (Router::new(4, routes, balanced, max_held), queues)
    }

    fn frames(partitions: &[u32]) -> Vec<(u32, Bytes)> {
        partitions
            .iter()
            .map(|&p| (p, Bytes::from(vec![p as u8])))
            .collect()
    }

    /// What one queue received, as a readable list.
    fn drained(queue: &Receiver<Link>) -> Vec<String> {
        queue
            .try_iter()
            .map(|link| match link {
                Link::Items(batch) => {
                    format!("items {:?}", batch.iter().map(|f| f[0]).collect::<Vec<_>>())
                }
                Link::Handover(p) => format!("handover {p}"),
                Link::Install { partition, state } => format!("install {partition} {state:?}"),
            })
            .collect()
    }

    #[test]
    fn a_moving_partition_is_held_then_follows_its_state_to_the_new_owner() {
        let (mut router, queues) = router(1, false, 100);
        let (tx, joiner) = crossbeam_channel::bounded(64);
        router.add(1, tx);
        let t = Instant::now();
        assert!(router
            .migrate(migration::Event::Resize(vec![0, 1]), t)
            .unwrap()
            .is_empty());
        // Partitions 0 and 1 stay with member 0 (its share); 2 and 3 move to member 1.
        assert_eq!(router.route(&frames(&[0, 2, 3, 2])).unwrap(), 4);
        assert_eq!(
            drained(&queues[0]),
            ["handover 2", "handover 3", "items [0]"]
        );
        let actions = router
            .migrate(
                migration::Event::StateOut {
                    partition: 2,
                    from: 0,
                    state: vec![7],
                },
                t,
            )
            .unwrap();
        assert!(actions.is_empty(), "partition 3 is still moving");
        assert_eq!(drained(&joiner), ["install 2 b\"\\x07\"", "items [2, 2]"]);
        assert_eq!(router.route(&frames(&[2, 3])).unwrap(), 2);
        assert_eq!(drained(&joiner), ["items [2]"], "3 is held still");
        let actions = router
            .migrate(
                migration::Event::StateOut {
                    partition: 3,
                    from: 0,
                    state: vec![],
                },
                t,
            )
            .unwrap();
        assert!(matches!(actions[..], [Action::Settled(ref s)] if s.moved == 2));
        assert_eq!(drained(&joiner), ["install 3 b\"\"", "items [3, 3]"]);
        assert!(!router.migrating());
    }

    #[test]
    fn a_full_hold_buffer_takes_no_more_until_a_release() {
        let (mut router, _queues) = router(1, false, 2);
        let (tx, _joiner) = crossbeam_channel::bounded(64);
        router.add(1, tx);
        router
            .migrate(migration::Event::Resize(vec![0, 1]), Instant::now())
            .unwrap();
        assert_eq!(
            router.route(&frames(&[2, 2, 2, 0])).unwrap(),
            2,
            "two held, then full"
        );
        router
            .migrate(
                migration::Event::StateOut {
                    partition: 2,
                    from: 0,
                    state: vec![],
                },
                Instant::now(),
            )
            .unwrap();
        assert_eq!(router.route(&frames(&[2, 0])).unwrap(), 2);
    }

    #[test]
    fn balanced_routing_deals_over_the_members_of_the_moment() {
        let (mut router, queues) = router(2, true, 0);
        router.route(&frames(&[0, 0, 0, 0])).unwrap();
        router.remove(1);
        router.route(&frames(&[1, 1])).unwrap();
        assert_eq!(drained(&queues[0]), ["items [0, 0]", "items [1, 1]"]);
        assert_eq!(drained(&queues[1]), ["items [0, 0]"]);
    }
}
