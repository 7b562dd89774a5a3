//! The cluster initializer: forms the cluster, accepts sources, routes every frame to its
//! partition's owner, runs its own share of the partitions, serves shutdown and metrics, and
//! watches the other workers.
//!
//! Every listener here faces outside peers: sources are capped (`--max-connections`, excess
//! refused and counted) and read under the `--read-timeout`/`--min-rate` deadline with buffers
//! from the shared `--buffer-budget`; a join, a data hello and a shutdown request are each due
//! within a fixed time of the connection, however slowly they trickle in.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{Shutdown as Socket, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use plumbline_core::frame::{FrameCodec, FrameError, FrameReader};
use plumbline_core::intake::{IntakeLimits, Slots};
use plumbline_core::Shutdown;
use plumbline_transport::tcp;

use super::metrics::{self, Metrics};
use super::protect;
use super::wire::{recv_hello, Control, ControlReader, WireError, WorkerStats, PROTOCOL};
use super::{
    app_name, frame_key, io, partition_label, valid_name, NodeConfig, NodeError, Processor, Role,
};
use crate::announce::Announcement;
use crate::partition::PartitionMap;

/// Batches queued per worker before the router (and so the source) waits. Frames travel in
/// batches (one socket read's worth, split by owner) so a queue hand-off, and any thread
/// wake-up it causes, is paid per batch, not per frame.
const QUEUE: usize = 64;
const POLL: Duration = Duration::from_millis(10);
/// How long a joiner has, once welcomed, to open its data connection and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection has to send its join, or its data hello.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Control connections whose join is being read at once; more are closed.
const PENDING_JOINS: usize = 64;
/// After a worker dies, how long the initializer spends flushing its own results before exiting.
const FAULT_FLUSH: Duration = Duration::from_secs(3);

/// The frames of one source read that belong to one worker.
type Batch = Vec<Bytes>;

/// What the watcher threads tell the initializer's main loop.
enum Event {
    Stats(WorkerStats),
    Done(WorkerStats),
    Died {
        name: String,
        why: String,
    },
    ShutdownRequested,
    /// Sources stopped, routed frames written, Finish sent to every joiner.
    Drained,
}

pub(super) fn run(config: &NodeConfig, stop: &Shutdown) -> Result<WorkerStats, NodeError> {
    let Role::Initializer {
        source,
        control,
        data,
        external,
        metrics: metrics_addr,
        worker_count,
        token,
        max_sources,
        intake,
    } = &config.role
    else {
        unreachable!("called for initializers only");
    };
    let guarded = protect::control_plane(control, external.as_deref(), metrics_addr.as_deref());
    protect::require_token(&guarded, token.is_some(), tcp::is_loopback)
        .map_err(NodeError::Unsafe)?;
    let control_listener = tcp::listen(control)?;
    let data_listener = tcp::listen(data)?;
    let data_addr = local(&data_listener);
    let (events_tx, events) = bounded::<Event>(1024);
    let mut external_addr = None;
    if let Some(addr) = external {
        let listener = tcp::listen(addr)?;
        let bound = local(&listener);
        log(config, &format!("external (shutdown) on {bound}"));
        external_addr = Some(bound);
        spawn_external(listener, token.clone(), events_tx.clone());
    }
    log(
        config,
        &format!(
            "control on {}, waiting for {} more worker(s)",
            local(&control_listener),
            worker_count - 1
        ),
    );
    config.announce.announce(&Announcement::ClusterListening {
        control: local(&control_listener),
        external: external_addr,
    });

    // 1. Cluster formation: every joiner is validated before anything flows.
    let Some(joiners) = form(
        config,
        *worker_count,
        token.as_deref(),
        &control_listener,
        &events,
        stop,
    )?
    else {
        log(config, "shut down before the cluster formed");
        return Ok(WorkerStats::default());
    };
    spawn_refuser(control_listener, *worker_count);
    let names: Vec<String> = std::iter::once(config.name.clone())
        .chain(joiners.iter().map(|(n, _)| n.clone()))
        .collect();
    let map = PartitionMap::round_robin(config.partitions, names.len());
    let mut data_streams =
        connect_data(config, &names, &joiners, &data_listener, &data_addr, stop)?;
    let owned = |worker: usize| -> String {
        let parts: Vec<String> = (0..config.partitions)
            .filter(|&p| map.owner(p) == worker)
            .map(|p| partition_label(config.app, p))
            .collect();
        format!("[{}]", parts.join(","))
    };
    for (i, name) in names.iter().enumerate() {
        log(config, &format!("{name} owns partitions {}", owned(i)));
    }

    // 2. The running cluster.
    let shared = Arc::new(Metrics::new(
        config.app,
        config.partitions,
        &names,
        config.live.clone(),
    ));
    let (local_tx, local_rx) = bounded::<Batch>(QUEUE);
    let mut routes: Vec<Sender<Batch>> = vec![local_tx];
    let mut writers = Vec::new();
    for (name, _) in &joiners {
        let (tx, rx) = bounded::<Batch>(QUEUE);
        routes.push(tx);
        let stream = data_streams
            .remove(name)
            .expect("one data connection per joiner");
        writers.push(spawn_data_writer(
            name.clone(),
            stream,
            rx,
            events_tx.clone(),
        ));
    }
    for (name, stream) in &joiners {
        let stream = stream.try_clone().map_err(io("control connection"))?;
        spawn_watcher(name.clone(), stream, events_tx.clone());
    }
    let own = spawn_local(config, local_rx, shared.clone())?;
    let mut metrics_at = None;
    if let Some(addr) = metrics_addr {
        let listener = tcp::listen(addr)?;
        let bound = local(&listener);
        log(config, &format!("metrics on http://{bound}/metrics"));
        metrics_at = Some(bound);
        metrics::serve(listener, shared.clone(), token.clone());
    }
    let sources = Arc::new(Sources::start(
        config,
        source,
        (*max_sources, intake.clone()),
        map.clone(),
        routes,
        shared.clone(),
    )?);
    log(
        config,
        &format!(
            "cluster of {} ready; sources on {}",
            names.len(),
            sources.addr
        ),
    );
    config.announce.announce(&Announcement::ClusterReady {
        sources: sources.addr.clone(),
        metrics: metrics_at,
        workers: names.clone(),
    });

    // 3. Wait for a shutdown or a fault. Draining runs on its own thread so that a worker
    // dying meanwhile is still noticed.
    let mut finished: HashMap<String, WorkerStats> = HashMap::new();
    let mut draining = false;
    let mut drained = false;
    loop {
        let event = events.recv_timeout(Duration::from_millis(100));
        if !draining && (stop.requested() || matches!(event, Ok(Event::ShutdownRequested))) {
            draining = true;
            spawn_drain(
                config,
                &sources,
                &joiners,
                std::mem::take(&mut writers),
                &events_tx,
            )?;
        }
        match event {
            Ok(Event::Stats(stats)) => shared.update(stats),
            Ok(Event::Done(stats)) => {
                finished.insert(stats.name.clone(), stats.clone());
                shared.update(stats);
            }
            Ok(Event::Died { name, why }) if !finished.contains_key(&name) => {
                let index = names.iter().position(|n| *n == name).unwrap_or(0);
                log(
                    config,
                    &format!("worker {name} died ({why}); flushing this worker's results"),
                );
                // Stop taking input and flush what this worker already has, within a bound:
                // the survivors' results must not be counted lost with the dead worker's.
                sources.stop_now();
                let deadline = Instant::now() + FAULT_FLUSH;
                while !own.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(POLL);
                }
                return Err(NodeError::WorkerDied {
                    name,
                    why,
                    partitions: owned(index),
                });
            }
            Ok(Event::Died { .. }) => {}
            Ok(Event::ShutdownRequested) => {}
            Ok(Event::Drained) => drained = true,
            Err(_) => {}
        }
        if drained && finished.len() == joiners.len() {
            break;
        }
    }
    let mine = own.join().expect("the local worker does not panic")?;
    shared.update(mine.clone());
    log(config, &format!("shut down: {}", shared.summary()));
    let accepted = shared.items_in.load(Ordering::Relaxed);
    let accounted = shared.items_processed();
    if accepted != accounted {
        return Err(NodeError::Unaccounted {
            accepted,
            accounted,
            missing: accepted.saturating_sub(accounted),
        });
    }
    config.announce.announce(&Announcement::ClusterDone {
        workers: shared.workers(),
    });
    Ok(mine)
}

/// A control connection and the join it sent (or why it sent none).
type JoinRead = (TcpStream, std::net::SocketAddr, Result<Control, WireError>);

/// Waits for `worker_count - 1` valid joiners (each with `token`, where the cluster has one). `None`: shut down before the cluster formed.
///
/// Each connection's join is read on its own thread (at most [`PENDING_JOINS`] at once), so a
/// peer that trickles its join, or many of them, cannot hold up a real worker behind it.
fn form(
    config: &NodeConfig,
    worker_count: usize,
    token: Option<&str>,
    listener: &TcpListener,
    events: &Receiver<Event>,
    stop: &Shutdown,
) -> Result<Option<Vec<(String, TcpStream)>>, NodeError> {
    let mut joiners: Vec<(String, TcpStream)> = Vec::new();
    listener
        .set_nonblocking(true)
        .map_err(io("control listener"))?;
    let pending = Slots::new(PENDING_JOINS);
    // Room for every pending reader's answer, so none waits to hand it over.
    let (read_tx, reads) = bounded::<JoinRead>(PENDING_JOINS);
    while joiners.len() + 1 < worker_count {
        if stop.requested() || matches!(events.try_recv(), Ok(Event::ShutdownRequested)) {
            return Ok(None);
        }
        while let Ok((stream, peer, join)) = reads.try_recv() {
            match admit(config, token, &joiners, join) {
                Ok(name) => {
                    log(config, &format!("worker {name} joined from {peer}"));
                    joiners.push((name, stream));
                }
                Err(reason) => {
                    log(config, &format!("refused a worker from {peer}: {reason}"));
                    let _ = Control::Refused { reason }.send(&mut &stream);
                }
            }
        }
        let (stream, peer) = match tcp::accept_or_nap(listener) {
            Ok(Some(conn)) => conn,
            Ok(None) => continue,
            Err(e) => {
                log(config, &format!("accepting a worker failed: {e}"));
                continue;
            }
        };
        let Some(slot) = pending.try_acquire() else {
            log(
                config,
                &format!("refused a connection from {peer}: {PENDING_JOINS} joins are pending"),
            );
            continue;
        };
        let read_tx = read_tx.clone();
        std::thread::spawn(move || {
            let join = recv_hello(&stream, JOIN_TIMEOUT, "join");
            let _ = read_tx.send((stream, peer, join));
            drop(slot);
        });
    }
    Ok(Some(joiners))
}

/// Welcomes every joiner and waits for each one's data connection, proven by its ticket.
fn connect_data(
    config: &NodeConfig,
    names: &[String],
    joiners: &[(String, TcpStream)],
    listener: &TcpListener,
    data_addr: &str,
    stop: &Shutdown,
) -> Result<HashMap<String, TcpStream>, NodeError> {
    // Unguessable enough to stop a stray or mistaken connection from claiming a joiner's data
    // stream (std's RandomState is seeded from the OS); the real guard is loopback binding.
    let tickets: HashMap<String, u64> = joiners
        .iter()
        .map(|(name, _)| {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write(name.as_bytes());
            (name.clone(), hasher.finish())
        })
        .collect();
    for (name, stream) in joiners {
        Control::Welcome {
            workers: names.to_vec(),
            data: data_addr.to_string(),
            ticket: tickets[name],
            max_frame: config.max_frame,
        }
        .send(&mut &*stream)?;
    }
    listener
        .set_nonblocking(true)
        .map_err(io("data listener"))?;
    let deadline = Instant::now() + HELLO_TIMEOUT;
    let mut streams: HashMap<String, TcpStream> = HashMap::new();
    while streams.len() < joiners.len() {
        if stop.requested() {
            return Err(NodeError::InitializerLost(
                "interrupted while the cluster formed".into(),
            ));
        }
        if Instant::now() > deadline {
            let missing: Vec<&String> = tickets
                .keys()
                .filter(|n| !streams.contains_key(*n))
                .collect();
            return Err(NodeError::WorkerDied {
                name: format!("{missing:?}"),
                why: format!("no data connection within {HELLO_TIMEOUT:?}"),
                partitions: "not yet assigned".into(),
            });
        }
        let Some((stream, _)) =
            tcp::accept_or_nap(listener).map_err(io("accepting a data connection"))?
        else {
            continue;
        };
        match recv_hello(&stream, JOIN_TIMEOUT, "data hello") {
            Ok(Control::DataHello { name, ticket })
                if tickets.get(&name) == Some(&ticket) && !streams.contains_key(&name) =>
            {
                streams.insert(name, stream);
            }
            Ok(other) => log(
                config,
                &format!(
                    "ignored a data connection that sent a {} without a valid ticket",
                    other.kind()
                ),
            ),
            Err(e) => log(config, &format!("ignored a data connection: {e}")),
        }
    }
    Ok(streams)
}

/// Checks a joiner's `Join` (as read from its control connection); the reason names the mismatch.
fn admit(
    config: &NodeConfig,
    token: Option<&str>,
    joined: &[(String, TcpStream)],
    join: Result<Control, WireError>,
) -> Result<String, String> {
    match join {
        Ok(Control::Join {
            name,
            app,
            partitions,
            balanced,
            protocol,
            token: given,
        }) => {
            let ours = app_name(config.app);
            // First, so a peer without the token learns nothing of the cluster.
            if !protect::admits(token, given.as_deref()) {
                Err("wrong or missing token (give the initializer's --token)".into())
            } else if protocol != PROTOCOL {
                Err(format!(
                    "protocol {protocol} does not match the initializer's {PROTOCOL}"
                ))
            } else if app != ours {
                Err(format!(
                    "--app {app} does not match the initializer's --app {ours}"
                ))
            } else if partitions != config.partitions {
                Err(format!(
                    "{partitions} partitions do not match the initializer's {}",
                    config.partitions
                ))
            } else if balanced != config.balanced {
                let mode = |b: bool| if b { "balanced" } else { "partitioned" };
                Err(format!(
                    "a {} worker cannot join a {} cluster",
                    mode(balanced),
                    mode(config.balanced)
                ))
            } else if !valid_name(&name) {
                Err("a worker name is 1 to 64 of A-Z a-z 0-9 _ . -".into())
            } else if name == config.name || joined.iter().any(|(n, _)| *n == name) {
                Err(format!(
                    "the name {name} is taken: give each worker its own --name"
                ))
            } else {
                Ok(name)
            }
        }
        Ok(other) => Err(format!("expected a join, got a {}", other.kind())),
        Err(e) => Err(format!("no valid join message: {e}")),
    }
}

/// Refuses workers that arrive after the cluster formed, so they exit instead of waiting.
fn spawn_refuser(listener: TcpListener, workers: usize) {
    std::thread::spawn(move || loop {
        if let Ok(Some((stream, _))) = tcp::accept_or_nap(&listener) {
            let reason = format!("the cluster is complete with {workers} workers");
            let _ = Control::Refused { reason }.send(&mut &stream);
        }
    });
}

/// Stops the sources; once their frames are written, tells every joiner to finish.
fn spawn_drain(
    config: &NodeConfig,
    sources: &Arc<Sources>,
    joiners: &[(String, TcpStream)],
    writers: Vec<JoinHandle<()>>,
    events: &Sender<Event>,
) -> Result<(), NodeError> {
    log(
        config,
        "shutting down: no new input; finishing what is in flight",
    );
    let sources = sources.clone();
    let controls: Vec<TcpStream> = joiners
        .iter()
        .map(|(_, s)| s.try_clone())
        .collect::<Result<_, _>>()
        .map_err(io("control connection"))?;
    let events = events.clone();
    std::thread::spawn(move || {
        sources.stop();
        // The data writers end once every source thread has dropped its routes and their queues
        // are written; only then is Finish sent, after the last frame of each data stream.
        for writer in writers {
            let _ = writer.join();
        }
        for stream in &controls {
            let _ = Control::Finish.send(&mut &*stream);
        }
        let _ = events.send(Event::Drained);
    });
    Ok(())
}

fn log(config: &NodeConfig, text: &str) {
    eprintln!("[{}] {text}", config.name);
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string())
}

/// The source side: accepts connections on `--in` and routes their frames.
struct Sources {
    addr: String,
    stopping: Arc<AtomicBool>,
    /// Open source connections by id, to cut them at shutdown; each removes itself when done.
    open: Arc<Mutex<HashMap<u64, TcpStream>>>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl Sources {
    fn start(
        config: &NodeConfig,
        addr: &str,
        (max_sources, intake): (usize, IntakeLimits),
        map: PartitionMap,
        routes: Vec<Sender<Batch>>,
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
        let deal = Deal::new(config.balanced);
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
                            eprintln!("[{name}] accepting a source failed: {e}");
                            continue;
                        }
                    };
                    let Some(slot) = slots.try_acquire() else {
                        shared.source_refused.fetch_add(1, Ordering::Relaxed);
                        if slots.refused() == 1 {
                            eprintln!(
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
                    let (routes, map, shared, name, deal) = (
                        routes.clone(),
                        map.clone(),
                        shared.clone(),
                        name.clone(),
                        deal.clone(),
                    );
                    let (open, stopping, intake) = (open.clone(), stopping.clone(), intake.clone());
                    sources.push(std::thread::spawn(move || {
                        let reader =
                            FrameReader::new(stream, FrameCodec::new(max_frame)).limited(&intake);
                        let result = route(reader, app, &map, &deal, &routes, &shared);
                        open.lock().expect("not poisoned").remove(&id);
                        drop(slot);
                        match result {
                            Ok(()) => {}
                            Err((reason, _)) if stopping.load(Ordering::Relaxed) => {
                                eprintln!(
                                    "[{name}] source {peer} cut as the cluster stops ({reason})"
                                )
                            }
                            Err((reason, stalled)) => {
                                shared.source_errors.fetch_add(1, Ordering::Relaxed);
                                if stalled {
                                    shared.source_slow.fetch_add(1, Ordering::Relaxed);
                                }
                                eprintln!("[{name}] source {peer} closed: {reason}");
                            }
                        }
                    }));
                }
                // A connection accepted while stop() was cutting the others is cut here.
                cut(&open);
                drop(routes);
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
    fn stop_now(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        cut(&self.open);
    }

    /// Stops the sources and returns once every source thread has ended (and so has dropped
    /// its routes).
    fn stop(&self) {
        self.stop_now();
        if let Some(acceptor) = self.acceptor.lock().expect("not poisoned").take() {
            let _ = acceptor.join();
        }
    }
}

/// Balanced clusters deal frames to the workers in turn, across all source connections.
#[derive(Clone)]
struct Deal(Option<Arc<AtomicU64>>);

impl Deal {
    fn new(balanced: bool) -> Self {
        Self(balanced.then(|| Arc::new(AtomicU64::new(0))))
    }

    /// The next worker in turn, or `None` for keyed routing.
    fn next(&self, workers: usize) -> Option<usize> {
        let turn = self.0.as_ref()?.fetch_add(1, Ordering::Relaxed);
        Some((turn % workers as u64) as usize)
    }
}

/// Closes both directions of every open source connection: reads end, and senders see it.
fn cut(open: &Mutex<HashMap<u64, TcpStream>>) {
    for stream in open.lock().expect("not poisoned").values() {
        let _ = stream.shutdown(Socket::Both);
    }
}

/// Reads one source connection and hands each frame to its partition's owner. A bad frame, a
/// stalled one or a payload the application cannot key ends this connection only; the error
/// says why, and whether the frame stalled.
fn route(
    mut reader: FrameReader<TcpStream>,
    app: crate::App,
    map: &PartitionMap,
    deal: &Deal,
    routes: &[Sender<Batch>],
    shared: &Metrics,
) -> Result<(), (String, bool)> {
    let mut batch = Vec::new();
    let mut per_owner: Vec<Batch> = vec![Vec::new(); routes.len()];
    let mut counts = vec![0u64; map.partitions() as usize];
    let mut accepted = 0u64;
    loop {
        batch.clear();
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
            let partition = map.partition_of(key);
            counts[partition as usize] += 1;
            let owner = deal
                .next(routes.len())
                .unwrap_or_else(|| map.owner(partition));
            per_owner[owner].push(frame);
        }
        // Frames before a bad one are routed all the same.
        for (owner, frames) in per_owner.iter_mut().enumerate() {
            if frames.is_empty() {
                continue;
            }
            accepted += frames.len() as u64;
            if routes[owner].send(std::mem::take(frames)).is_err() {
                return Err(("its partition's worker is gone".into(), false));
            }
        }
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

/// Writes routed frames to a joiner's data connection; flushes whenever its queue is empty,
/// after the first batch that ends an idle spell, and at least every [`super::FLUSH_EVERY`].
fn spawn_data_writer(
    name: String,
    stream: TcpStream,
    batches: Receiver<Batch>,
    events: Sender<Event>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut out = BufWriter::with_capacity(64 * 1024, &stream);
        let mut failed = None;
        let mut last_flush = Instant::now();
        loop {
            if last_flush.elapsed() >= super::FLUSH_EVERY {
                last_flush = Instant::now();
                if let Err(e) = out.flush() {
                    failed = Some(e);
                    break;
                }
            }
            let (batch, after_idle) = match batches.try_recv() {
                Ok(batch) => (batch, false),
                Err(_) => {
                    if let Err(e) = out.flush() {
                        failed = Some(e);
                        break;
                    }
                    match batches.recv() {
                        Ok(batch) => (batch, true),
                        Err(_) => break,
                    }
                }
            };
            let written = batch.iter().try_for_each(|frame| {
                out.write_all(&(frame.len() as u32).to_be_bytes())?;
                out.write_all(frame)
            });
            // The first batch after an idle spell leaves at once: its worker has likely run
            // dry and waits for it (a burst's first frames otherwise waited up to a flush
            // period for the rest of the burst).
            let written = written.and_then(|()| if after_idle { out.flush() } else { Ok(()) });
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

/// Reads a joiner's control connection: stats, done, and its death. Stats carry the name the
/// joiner joined with, whatever it writes in them.
fn spawn_watcher(name: String, stream: TcpStream, events: Sender<Event>) {
    std::thread::spawn(move || {
        let mut reader = ControlReader::new(&stream);
        let named = |mut stats: WorkerStats| {
            stats.name = name.clone();
            stats
        };
        loop {
            let event = match reader.recv() {
                Ok(Control::Stats(stats)) => Event::Stats(named(stats)),
                Ok(Control::Done(stats)) => {
                    let _ = events.send(Event::Done(named(stats)));
                    return;
                }
                Ok(other) => Event::Died {
                    name: name.clone(),
                    why: format!("it sent a {} on its control connection", other.kind()),
                },
                Err(WireError::Closed) => Event::Died {
                    name: name.clone(),
                    why: "its control connection closed".into(),
                },
                Err(e) => Event::Died {
                    name: name.clone(),
                    why: format!("its control connection failed: {e}"),
                },
            };
            let died = matches!(event, Event::Died { .. });
            if events.send(event).is_err() || died {
                return;
            }
        }
    });
}

/// The initializer's own share of the partitions.
fn spawn_local(
    config: &NodeConfig,
    batches: Receiver<Batch>,
    shared: Arc<Metrics>,
) -> Result<JoinHandle<Result<WorkerStats, NodeError>>, NodeError> {
    let published = shared.clone();
    let mut processor = Processor::new(config)?
        .publishing(Duration::from_secs(1), move |stats| published.update(stats));
    Ok(std::thread::spawn(move || {
        loop {
            let batch = match batches.try_recv() {
                Ok(batch) => batch,
                Err(_) => {
                    processor.flush();
                    match batches.recv_timeout(Duration::from_millis(500)) {
                        Ok(batch) => batch,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            processor.publish();
                            continue;
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            for frame in &batch {
                processor.process(frame);
            }
        }
        processor.finish();
        Ok(processor.stats())
    }))
}

/// Serves `plumbline shutdown` requests.
fn spawn_external(listener: TcpListener, token: Option<String>, events: Sender<Event>) {
    super::serve_each(listener, 4, move |stream| {
        let reply = match recv_hello(&stream, super::SERVE_READ_TIMEOUT, "shutdown request") {
            Ok(Control::Shutdown { token: given }) => {
                if protect::admits(token.as_deref(), given.as_deref()) {
                    let _ = events.send(Event::ShutdownRequested);
                    Control::Reply {
                        ok: true,
                        message: "shutting down".into(),
                    }
                } else {
                    let peer = stream.peer_addr().map_or("?".into(), |a| a.to_string());
                    eprintln!("refused a shutdown request from {peer}: wrong or missing token");
                    Control::Reply {
                        ok: false,
                        message: "refused: wrong or missing token".into(),
                    }
                }
            }
            Ok(other) => Control::Reply {
                ok: false,
                message: format!("expected a shutdown request, got a {}", other.kind()),
            },
            Err(e) => Control::Reply {
                ok: false,
                message: format!("expected a shutdown request: {e}"),
            },
        };
        let _ = reply.send(&mut &stream);
    });
}
