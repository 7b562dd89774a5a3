//! The cluster initializer: forms the cluster, accepts sources, routes every frame to its
//! partition's owner, runs its own share of the partitions, serves shutdown and metrics, and
//! watches the other workers.

use std::collections::HashMap;
use std::io::{BufWriter, ErrorKind, Write};
use std::net::{Shutdown as Socket, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use plumbline_core::frame::{FrameCodec, FrameReader};
use plumbline_core::Shutdown;
use plumbline_transport::tcp;

use super::metrics::{self, Metrics};
use super::wire::{Control, ControlReader, WireError, WorkerStats, PROTOCOL};
use super::{app_name, frame_key, io, partition_label, NodeConfig, NodeError, Processor, Role};
use crate::partition::PartitionMap;

/// Batches queued per worker before the router (and so the source) waits. Frames travel in
/// batches (one socket read's worth, split by owner) so a queue hand-off, and any thread
/// wake-up it causes, is paid per batch, not per frame.
const QUEUE: usize = 64;

/// The frames of one source read that belong to one worker.
type Batch = Vec<Bytes>;
const POLL: Duration = Duration::from_millis(10);
/// How long a graceful shutdown waits for the other workers to report done.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// What the watcher threads tell the initializer's main loop.
enum Event {
    Stats(WorkerStats),
    Done(WorkerStats),
    Died { name: String, why: String },
    ShutdownRequested,
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
    } = &config.role
    else {
        unreachable!("called for initializers only");
    };
    if let Some(addr) = external {
        let loopback = tcp::resolve(addr)?.iter().all(|a| a.ip().is_loopback());
        if !loopback && token.is_none() {
            return Err(NodeError::Unsafe(format!(
                "--external {addr} is not a loopback address: give --token so that only holders \
                 of the token can shut the cluster down"
            )));
        }
    }
    let control_listener = tcp::listen(control)?;
    let data_listener = tcp::listen(data)?;
    let data_addr = data_listener
        .local_addr()
        .map_err(io("data listener"))?
        .to_string();
    let (events_tx, events) = bounded::<Event>(1024);
    if let Some(addr) = external {
        let listener = tcp::listen(addr)?;
        log(
            config,
            &format!("external (shutdown) on {}", local(&listener)),
        );
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

    // 1. Cluster formation: every joiner is validated before anything flows.
    let mut joiners: Vec<(String, TcpStream)> = Vec::new();
    control_listener
        .set_nonblocking(true)
        .map_err(io("control listener"))?;
    while joiners.len() + 1 < *worker_count {
        if stop.requested() {
            return Ok(WorkerStats::default());
        }
        let (stream, peer) = match control_listener.accept() {
            Ok(conn) => conn,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => return Err(io("accepting a worker")(e)),
        };
        stream
            .set_nonblocking(false)
            .map_err(io("control connection"))?;
        match admit(config, &joiners, &stream) {
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
    let names: Vec<String> = std::iter::once(config.name.clone())
        .chain(joiners.iter().map(|(n, _)| n.clone()))
        .collect();
    let map = PartitionMap::round_robin(config.partitions, names.len());
    for (_, stream) in &joiners {
        Control::Welcome {
            workers: names.clone(),
            data: data_addr.clone(),
        }
        .send(&mut &*stream)?;
    }
    let mut data_streams: HashMap<String, TcpStream> = HashMap::new();
    while data_streams.len() < joiners.len() {
        let (stream, _) = data_listener
            .accept()
            .map_err(io("accepting a data connection"))?;
        match ControlReader::new(&stream).recv() {
            Ok(Control::DataHello { name }) if names.contains(&name) => {
                data_streams.insert(name, stream);
            }
            other => log(
                config,
                &format!("ignored a data connection that said {other:?}"),
            ),
        }
    }
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
    let shared = Arc::new(Metrics::new(config.app, config.partitions, &names));
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
        spawn_watcher(
            name.clone(),
            stream.try_clone().map_err(io("control connection"))?,
            events_tx.clone(),
        );
    }
    let own = spawn_local(config, local_rx, shared.clone())?;
    if let Some(addr) = metrics_addr {
        let listener = tcp::listen(addr)?;
        log(
            config,
            &format!("metrics on http://{}/metrics", local(&listener)),
        );
        metrics::serve(listener, shared.clone());
    }
    let sources = Sources::start(config, source, map.clone(), routes, shared.clone())?;
    log(
        config,
        &format!(
            "cluster of {} ready; sources on {}",
            names.len(),
            sources.addr
        ),
    );

    // 3. Wait for a shutdown or a fault.
    let mut finished: HashMap<String, WorkerStats> = HashMap::new();
    let mut draining: Option<Instant> = None;
    loop {
        if stop.requested() && draining.is_none() {
            draining = Some(begin_drain(config, &sources, &joiners, &mut writers));
        }
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Stats(stats)) => shared.update(stats),
            Ok(Event::Done(stats)) => {
                finished.insert(stats.name.clone(), stats.clone());
                shared.update(stats);
            }
            Ok(Event::Died { name, why }) if !finished.contains_key(&name) => {
                let index = names.iter().position(|n| *n == name).unwrap_or(0);
                return Err(NodeError::WorkerDied {
                    name,
                    why,
                    partitions: owned(index),
                });
            }
            Ok(Event::Died { .. }) => {}
            Ok(Event::ShutdownRequested) if draining.is_none() => {
                draining = Some(begin_drain(config, &sources, &joiners, &mut writers));
            }
            Ok(Event::ShutdownRequested) => {}
            Err(_) => {}
        }
        if let Some(since) = draining {
            if finished.len() == joiners.len() {
                break;
            }
            if since.elapsed() > DRAIN_TIMEOUT {
                return Err(NodeError::InitializerLost(format!(
                    "{} worker(s) did not finish within {DRAIN_TIMEOUT:?}",
                    joiners.len() - finished.len()
                )));
            }
        }
    }
    let mine = own.join().expect("the local worker does not panic")?;
    shared.update(mine.clone());
    log(config, &format!("shut down: {}", shared.summary()));
    Ok(mine)
}

/// Reads and checks a joiner's `Join`; the reason names the mismatch.
fn admit(
    config: &NodeConfig,
    joined: &[(String, TcpStream)],
    stream: &TcpStream,
) -> Result<String, String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let join = ControlReader::new(stream).recv();
    stream.set_read_timeout(None).ok();
    match join {
        Ok(Control::Join {
            name,
            app,
            partitions,
            protocol,
        }) => {
            let ours = app_name(config.app);
            if protocol != PROTOCOL {
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
            } else if name == config.name || joined.iter().any(|(n, _)| *n == name) {
                Err(format!(
                    "the name {name:?} is taken: give each worker its own --name"
                ))
            } else {
                Ok(name)
            }
        }
        Ok(other) => Err(format!("expected a join, got {other:?}")),
        Err(e) => Err(format!("no valid join message: {e}")),
    }
}

/// Stops the sources; once their frames are routed, tells every joiner to finish.
fn begin_drain(
    config: &NodeConfig,
    sources: &Sources,
    joiners: &[(String, TcpStream)],
    writers: &mut Vec<std::thread::JoinHandle<()>>,
) -> Instant {
    log(
        config,
        "shutting down: no new input; finishing what is in flight",
    );
    sources.stop();
    // The data writers end once every source thread has dropped its routes and their queues are
    // written; then each joiner gets Finish after the last frame of its data stream.
    for writer in writers.drain(..) {
        let _ = writer.join();
    }
    for (_, stream) in joiners {
        let _ = Control::Finish.send(&mut &*stream);
    }
    Instant::now()
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
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Sources {
    fn start(
        config: &NodeConfig,
        addr: &str,
        map: PartitionMap,
        routes: Vec<Sender<Batch>>,
        shared: Arc<Metrics>,
    ) -> Result<Self, NodeError> {
        let listener = tcp::listen(addr)?;
        let bound = local(&listener);
        listener
            .set_nonblocking(true)
            .map_err(io("source listener"))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let (app, max_frame, name) = (config.app, config.max_frame, config.name.clone());
        let acceptor = {
            let (stopping, open) = (stopping.clone(), open.clone());
            std::thread::spawn(move || {
                let mut sources = Vec::new();
                while !stopping.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nonblocking(false);
                            if let Ok(clone) = stream.try_clone() {
                                open.lock().expect("not poisoned").push(clone);
                            }
                            let (routes, map, shared, name) =
                                (routes.clone(), map.clone(), shared.clone(), name.clone());
                            sources.push(std::thread::spawn(move || {
                                if let Err(reason) =
                                    route(stream, app, max_frame, &map, &routes, &shared)
                                {
                                    shared.source_errors.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("[{name}] source {peer} closed: {reason}");
                                }
                            }));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
                        Err(e) => eprintln!("[{name}] accepting a source failed: {e}"),
                    }
                }
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

    /// Stops accepting and reading; returns once every source thread has ended.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        for stream in self.open.lock().expect("not poisoned").iter() {
            let _ = stream.shutdown(Socket::Read);
        }
        if let Some(acceptor) = self.acceptor.lock().expect("not poisoned").take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads one source connection and hands each frame to its partition's owner. A bad frame or
/// a payload the application cannot key ends this connection only.
fn route(
    stream: TcpStream,
    app: crate::App,
    max_frame: usize,
    map: &PartitionMap,
    routes: &[Sender<Batch>],
    shared: &Metrics,
) -> Result<(), String> {
    let mut reader = FrameReader::new(stream, FrameCodec::new(max_frame));
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
            per_owner[map.owner(partition)].push(frame);
        }
        // Frames before a bad one are routed all the same.
        for (owner, frames) in per_owner.iter_mut().enumerate() {
            if frames.is_empty() {
                continue;
            }
            accepted += frames.len() as u64;
            if routes[owner].send(std::mem::take(frames)).is_err() {
                return Err("its partition's worker is gone".into());
            }
        }
        shared.routed(&mut counts);
        if let Some(reason) = bad {
            return Err(reason);
        }
        match read {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Writes routed frames to a joiner's data connection; flushes whenever its queue is empty, and
/// at least every [`super::FLUSH_EVERY`].
fn spawn_data_writer(
    name: String,
    stream: TcpStream,
    batches: Receiver<Batch>,
    events: Sender<Event>,
) -> std::thread::JoinHandle<()> {
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
            let batch = match batches.try_recv() {
                Ok(batch) => batch,
                Err(_) => {
                    if let Err(e) = out.flush() {
                        failed = Some(e);
                        break;
                    }
                    match batches.recv() {
                        Ok(batch) => batch,
                        Err(_) => break,
                    }
                }
            };
            let written = batch.iter().try_for_each(|frame| {
                out.write_all(&(frame.len() as u32).to_be_bytes())?;
                out.write_all(frame)
            });
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

/// Reads a joiner's control connection: stats, done, and its death.
fn spawn_watcher(name: String, stream: TcpStream, events: Sender<Event>) {
    std::thread::spawn(move || {
        let mut reader = ControlReader::new(&stream);
        loop {
            let event = match reader.recv() {
                Ok(Control::Stats(stats)) => Event::Stats(stats),
                Ok(Control::Done(stats)) => {
                    let _ = events.send(Event::Done(stats));
                    return;
                }
                Ok(other) => Event::Died {
                    name: name.clone(),
                    why: format!("it sent {other:?} on its control connection"),
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
) -> Result<std::thread::JoinHandle<Result<WorkerStats, NodeError>>, NodeError> {
    let mut processor = Processor::new(config)?;
    Ok(std::thread::spawn(move || {
        let mut reported = Instant::now();
        loop {
            let batch = match batches.try_recv() {
                Ok(batch) => batch,
                Err(_) => {
                    processor.flush();
                    match batches.recv_timeout(Duration::from_millis(500)) {
                        Ok(batch) => batch,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            shared.update(processor.stats());
                            continue;
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            for frame in &batch {
                processor.process(frame);
            }
            if reported.elapsed() >= Duration::from_secs(1) {
                shared.update(processor.stats());
                reported = Instant::now();
            }
        }
        processor.flush();
        Ok(processor.stats())
    }))
}

/// Serves `plumbline shutdown` requests.
fn spawn_external(listener: TcpListener, token: Option<String>, events: Sender<Event>) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let request = ControlReader::new(&stream).recv();
            let reply = match request {
                Ok(Control::Shutdown { token: given }) if token.is_none() || given == token => {
                    let _ = events.send(Event::ShutdownRequested);
                    Control::Reply {
                        ok: true,
                        message: "shutting down".into(),
                    }
                }
                Ok(Control::Shutdown { .. }) => Control::Reply {
                    ok: false,
                    message: "refused: wrong or missing token".into(),
                },
                other => Control::Reply {
                    ok: false,
                    message: format!("expected a shutdown request, got {other:?}"),
                },
            };
            let _ = reply.send(&mut &stream);
        }
    });
}
