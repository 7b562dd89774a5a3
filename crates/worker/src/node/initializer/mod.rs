//! The cluster initializer: forms the cluster, accepts sources, routes every frame to its
//! partition's owner, runs its own share of the partitions, grows and shrinks the running
//! cluster (a `--join-running` worker, `plumbline shrink`), serves shutdown and metrics, and
//! watches the other workers.
//!
//! Split by concern: `formation` (joins, welcomes, data connections), `routing` (sources, the
//! router that holds moving partitions, the data links), the pure `crate::migration::Migrator`
//! (which partitions move, and when they are done), and here the main loop that reacts to
//! joins, shrinks, states handed over, stats, deaths and the drain at shutdown.
//!
//! Every listener here faces outside peers: sources are capped (`--max-connections`, excess
//! refused and counted) and read under the `--read-timeout`/`--min-rate` deadline with buffers
//! from the shared `--buffer-budget`; a join, a data hello and a shutdown request are each due
//! within a fixed time of the connection, however slowly they trickle in.

mod formation;
mod routing;

use std::collections::{BTreeMap, HashMap};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use plumbline_core::Shutdown;
use plumbline_transport::tcp;

use super::metrics::Metrics;
use super::protect;
use super::wire::{recv_hello, Control, ControlReader, WireError, WorkerStats};
use super::{partition_label, NodeConfig, NodeError, Processor, Role};
use crate::announce::Announcement;
use crate::membership::MemberId;
use crate::migration::{self, Action};
use routing::{lock, Link, Router, SharedRouter, Sources};

/// Batches queued per worker before the router (and so the source) waits. Frames travel in
/// batches (one socket read's worth, split by owner) so a queue hand-off, and any thread
/// wake-up it causes, is paid per batch, not per frame.
const QUEUE: usize = 64;
const POLL: Duration = Duration::from_millis(10);
/// After a worker dies, how long the initializer spends flushing its own results before exiting.
const FAULT_FLUSH: Duration = Duration::from_secs(3);

/// What the watcher threads tell the initializer's main loop.
enum Event {
    Stats(WorkerStats),
    Done(WorkerStats),
    Died {
        name: String,
        why: String,
    },
    /// A worker handed over a partition's state (the initializer's own share included).
    StateOut {
        name: String,
        partition: u32,
        state: Vec<u8>,
    },
    /// A `--join-running` worker was welcomed and connected its data link.
    Joined {
        name: String,
        control: TcpStream,
        data: TcpStream,
    },
    /// `plumbline shrink`: the answer goes back on `reply`.
    Shrink {
        worker: String,
        reply: Sender<Result<String, String>>,
    },
    ShutdownRequested,
    /// Sources stopped: nothing new will be routed.
    SourcesStopped,
    /// Every data link written out, Finish sent to every joiner still in.
    Drained,
}

/// A worker of the cluster, by member id (formation order, then join order).
struct Member {
    name: String,
    /// A joiner's control connection (`None`: the initializer itself).
    control: Option<TcpStream>,
    /// A joiner's data writer, until it leaves or the cluster drains.
    writer: Option<JoinHandle<()>>,
    /// Owns partitions, or will once they moved (one retired or asked to leave is not).
    active: bool,
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
    let Some(joiners) = formation::form(
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
    let names: Vec<String> = std::iter::once(config.name.clone())
        .chain(joiners.iter().map(|(n, _)| n.clone()))
        .collect();
    let mut data_streams =
        formation::connect_data(config, &names, &joiners, &data_listener, &data_addr, stop)?;

    // 2. The running cluster.
    let shared = Arc::new(Metrics::new(
        config.app,
        config.partitions,
        &names,
        config.live.clone(),
    ));
    let (local_tx, local_rx) = bounded::<Link>(QUEUE);
    let mut routes = BTreeMap::from([(0, local_tx)]);
    let mut members = vec![Member {
        name: config.name.clone(),
        control: None,
        writer: None,
        active: true,
    }];
    for (name, stream) in joiners {
        let id = members.len() as MemberId;
        let data = data_streams
            .remove(&name)
            .expect("one data connection per joiner");
        let (tx, member) = start_member(&name, stream, data, &events_tx)?;
        routes.insert(id, tx);
        members.push(member);
    }
    let router: SharedRouter = Arc::new(Mutex::new(Router::new(
        config.partitions,
        routes,
        config.balanced,
        routing::MAX_HELD,
    )));
    for (id, member) in members.iter().enumerate() {
        log(
            config,
            &format!(
                "{} owns partitions {}",
                member.name,
                owned(config, &lock(&router), id as MemberId)
            ),
        );
    }
    let own = spawn_local(config, local_rx, shared.clone(), events_tx.clone())?;
    let (mut metrics_at, mut _metrics_server) = (None, None);
    if let Some(addr) = metrics_addr {
        let server = config.metrics_server.as_ref().ok_or_else(|| {
            NodeError::Refused("--metrics: this build has no metrics server".into())
        })?;
        let listener = tcp::listen(addr)?;
        let bound = local(&listener);
        _metrics_server = Some(
            server
                .serve(listener, config.live.clone(), token.clone())
                .map_err(|e| NodeError::Refused(format!("--metrics {addr}: {e}")))?,
        );
        log(config, &format!("metrics on http://{bound}/metrics"));
        metrics_at = Some(bound);
    }
    let sources = Arc::new(Sources::start(
        config,
        source,
        (*max_sources, intake.clone()),
        router.clone(),
        shared.clone(),
    )?);
    formation::spawn_late_joins(
        control_listener,
        formation::LateJoins {
            config: config.clone(),
            token: token.clone(),
            data: data_listener,
            data_addr,
            taken: Arc::new(Mutex::new(names.clone())),
            events: events_tx.clone(),
            stop: stop.clone(),
        },
    );
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

    // 3. Membership changes until a shutdown or a fault. Draining runs on its own thread so
    // that a worker dying meanwhile is still noticed; the routes close only once no
    // partition is moving, so nothing held is left behind.
    let mut finished: HashMap<String, WorkerStats> = HashMap::new();
    let (mut draining, mut sources_stopped, mut closed, mut drained) = (false, false, false, false);
    let by_name = |members: &[Member], name: &str| {
        members
            .iter()
            .position(|m| m.name == name)
            .map(|i| i as MemberId)
    };
    loop {
        let event = events.recv_timeout(Duration::from_millis(100));
        if !draining && (stop.requested() || matches!(event, Ok(Event::ShutdownRequested))) {
            draining = true;
            log(
                config,
                "shutting down: no new input; finishing what is in flight",
            );
            let (sources, events) = (sources.clone(), events_tx.clone());
            std::thread::spawn(move || {
                sources.stop();
                let _ = events.send(Event::SourcesStopped);
            });
        }
        match event {
            Ok(Event::Stats(stats)) => shared.update(stats),
            Ok(Event::Done(stats)) => {
                finished.insert(stats.name.clone(), stats.clone());
                shared.update(stats);
            }
            Ok(Event::Died { name, why }) if !finished.contains_key(&name) => {
                let index = by_name(&members, &name).unwrap_or(0);
                warn(
                    config,
                    &format!("worker {name} died ({why}); flushing this worker's results"),
                );
                // Stop taking input and flush what this worker already has, within a bound:
                // the survivors' results must not be counted lost with the dead worker's.
                sources.stop_now();
                let partitions = owned(config, &lock(&router), index);
                // Ends every queue: the local worker finishes what it holds, then stops.
                lock(&router).close();
                let deadline = Instant::now() + FAULT_FLUSH;
                while !own.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(POLL);
                }
                return Err(NodeError::WorkerDied {
                    name,
                    why,
                    partitions,
                });
            }
            Ok(Event::Died { .. }) => {}
            Ok(Event::StateOut {
                name,
                partition,
                state,
            }) => {
                let from = by_name(&members, &name).expect("states come from members");
                let actions = lock(&router).migrate(
                    migration::Event::StateOut {
                        partition,
                        from,
                        state,
                    },
                    Instant::now(),
                )?;
                act(config, &router, &mut members, actions)?;
            }
            Ok(Event::Joined {
                name,
                control,
                data,
            }) => {
                if draining {
                    log(
                        config,
                        &format!("worker {name} joined as the cluster stops; sent away"),
                    );
                    let _ = Control::Finish.send(&mut &control);
                    continue;
                }
                let id = members.len() as MemberId;
                let (tx, member) = start_member(&name, control, data, &events_tx)?;
                members.push(member);
                shared.add_worker(&name);
                let mut routes = lock(&router);
                routes.add(id, tx);
                if !routes.balanced() {
                    let wanted = wanted(&members);
                    let moving = moving_to(&routes, &wanted);
                    log(
                        config,
                        &format!("worker {name} joined: moving {moving} partition(s) to it"),
                    );
                    announce_changing(config, &members, &wanted, moving);
                    let actions =
                        routes.migrate(migration::Event::Resize(wanted), Instant::now())?;
                    drop(routes);
                    act(config, &router, &mut members, actions)?;
                }
            }
            Ok(Event::Shrink { worker, reply }) => {
                let answer = shrink(config, &router, &mut members, &worker, draining);
                let _ = reply.send(answer);
            }
            Ok(Event::ShutdownRequested) => {}
            Ok(Event::SourcesStopped) => sources_stopped = true,
            Ok(Event::Drained) => drained = true,
            Err(_) => {}
        }
        if sources_stopped && !closed && !lock(&router).migrating() {
            closed = true;
            lock(&router).close();
            spawn_finish(&mut members, &events_tx)?;
        }
        let joined = members.len() - 1;
        if drained && finished.len() == joined {
            break;
        }
    }
    let mine = own.join().expect("the local worker does not panic")?;
    shared.update(mine.clone());
    log(config, &format!("shut down: {}", shared.summary()));
    let accepted = shared.items_in.load(std::sync::atomic::Ordering::Relaxed);
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

/// Starts a joiner's data writer and control watcher; returns its route and its entry.
fn start_member(
    name: &str,
    control: TcpStream,
    data: TcpStream,
    events: &Sender<Event>,
) -> Result<(Sender<Link>, Member), NodeError> {
    let (tx, rx) = bounded::<Link>(QUEUE);
    let writer = routing::spawn_data_writer(name.to_string(), data, rx, events.clone());
    let watched = control
        .try_clone()
        .map_err(super::io("control connection"))?;
    spawn_watcher(name.to_string(), watched, events.clone());
    Ok((
        tx,
        Member {
            name: name.to_string(),
            control: Some(control),
            writer: Some(writer),
            active: true,
        },
    ))
}

/// Acts on what a migration step left to the main loop: retirements and outcomes.
fn act(
    config: &NodeConfig,
    router: &SharedRouter,
    members: &mut [Member],
    actions: Vec<Action>,
) -> Result<(), NodeError> {
    for action in actions {
        match action {
            Action::Retire(id) => {
                lock(router).remove(id);
                let member = &mut members[id as usize];
                member.active = false;
                log(
                    config,
                    &format!(
                        "worker {} handed its partitions over; it leaves",
                        member.name
                    ),
                );
                finish_member(member);
            }
            Action::Settled(settled) => {
                let workers: Vec<String> = settled
                    .owners
                    .iter()
                    .map(|&id| members[id as usize].name.clone())
                    .collect();
                log(
                    config,
                    &format!(
                        "membership now {}: {} partition(s) moved in {:.1} ms, the longest \
                         held {:.1} ms",
                        workers.join(", "),
                        settled.moved,
                        settled.took.as_secs_f64() * 1e3,
                        settled.longest_pause.as_secs_f64() * 1e3
                    ),
                );
                config.announce.announce(&Announcement::ClusterChanged {
                    workers,
                    moved: settled.moved,
                    took_s: settled.took.as_secs_f64(),
                    longest_pause_s: settled.longest_pause.as_secs_f64(),
                });
            }
            Action::Unexpected { partition } => {
                return Err(NodeError::Protocol(format!(
                    "a worker sent the state of partition {}, which was not moving from it",
                    partition_label(config.app, partition)
                )))
            }
            // Deaths stop the cluster before the migrator hears of them.
            Action::StateLost { .. } | Action::NoneLeft => {}
            Action::Handover { .. } | Action::Install { .. } | Action::Release { .. } => {
                unreachable!("applied by the router")
            }
        }
    }
    Ok(())
}

/// The members that should own partitions: every one not retired or leaving.
fn wanted(members: &[Member]) -> Vec<MemberId> {
    (0..members.len() as MemberId)
        .filter(|&id| members[id as usize].active)
        .collect()
}

/// Partitions a resize to `wanted` moves from where they are now (during a migration, from
/// where it is taking them: the count is the announcement's, the migrator decides).
fn moving_to(routes: &Router, wanted: &[MemberId]) -> usize {
    routes
        .assignment()
        .rebalanced(wanted)
        .map_or(0, |next| routes.assignment().moves_to(&next).len())
}

/// Announces a membership change as it starts: who will own the partitions, how many move.
fn announce_changing(config: &NodeConfig, members: &[Member], next: &[MemberId], moving: usize) {
    config.announce.announce(&Announcement::ClusterChanging {
        workers: next
            .iter()
            .map(|&id| members[id as usize].name.clone())
            .collect(),
        moving: moving as u32,
    });
}

/// Once a leaving member's data link is written out, tells it to finish (it answers Done).
fn finish_member(member: &mut Member) {
    let (Some(writer), Some(control)) = (member.writer.take(), member.control.as_ref()) else {
        return;
    };
    let Ok(control) = control.try_clone() else {
        return;
    };
    std::thread::spawn(move || {
        let _ = writer.join();
        let _ = Control::Finish.send(&mut &control);
    });
}

/// `plumbline shrink NAME`: moves the worker's partitions to the others, then retires it.
fn shrink(
    config: &NodeConfig,
    router: &SharedRouter,
    members: &mut [Member],
    worker: &str,
    draining: bool,
) -> Result<String, String> {
    if draining {
        return Err("the cluster is shutting down".into());
    }
    let Some(id) = members
        .iter()
        .position(|m| m.name == worker && m.active)
        .map(|i| i as MemberId)
    else {
        let active: Vec<&str> = members
            .iter()
            .filter(|m| m.active)
            .map(|m| m.name.as_str())
            .collect();
        return Err(format!(
            "no worker {worker} in the cluster (its workers: {})",
            active.join(", ")
        ));
    };
    if id == 0 {
        return Err(format!(
            "{worker} is the initializer: it routes every item and cannot leave (shrink \
             another worker)"
        ));
    }
    let mut routes = lock(router);
    if routes.balanced() {
        routes.remove(id);
        drop(routes);
        members[id as usize].active = false;
        finish_member(&mut members[id as usize]);
        log(config, &format!("worker {worker} leaves (shrink)"));
        return Ok(format!("{worker} finishes what it holds and leaves"));
    }
    // It stops being wanted now, so a join or shrink asked before its partitions moved
    // leaves it out too.
    members[id as usize].active = false;
    let left = wanted(members);
    let moving = moving_to(&routes, &left);
    announce_changing(config, members, &left, moving);
    let actions = routes
        .migrate(migration::Event::Resize(left), Instant::now())
        .map_err(|e| e.to_string())?;
    drop(routes);
    log(
        config,
        &format!("shrink: moving {moving} partition(s) from {worker}; it leaves once they moved"),
    );
    act(config, router, members, actions).map_err(|e| e.to_string())?;
    Ok(format!(
        "moving {moving} partition(s) from {worker}; it leaves once they have moved"
    ))
}

/// The routes are closed: once every data link is written, Finish goes to every joiner still
/// in, then [`Event::Drained`].
fn spawn_finish(members: &mut [Member], events: &Sender<Event>) -> Result<(), NodeError> {
    let mut writers = Vec::new();
    let mut controls = Vec::new();
    for member in members.iter_mut().filter(|m| m.writer.is_some()) {
        writers.extend(member.writer.take());
        if let Some(control) = &member.control {
            controls.push(
                control
                    .try_clone()
                    .map_err(super::io("control connection"))?,
            );
        }
    }
    let events = events.clone();
    std::thread::spawn(move || {
        // Finish goes after the last frame of each data stream.
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

/// The partitions `member` owns, as a list for logs and errors.
fn owned(config: &NodeConfig, router: &Router, member: MemberId) -> String {
    let assignment = router.assignment();
    let parts: Vec<String> = (0..config.partitions)
        .filter(|&p| !router.balanced() && assignment.owner(p) == member)
        .map(|p| partition_label(config.app, p))
        .collect();
    format!("[{}]", parts.join(","))
}

/// A line of the initializer's log, "[NAME] text" (readers wait for some of these texts).
fn log(config: &NodeConfig, text: &str) {
    tracing::info!("[{}] {text}", config.name);
}

/// As [`log`], for what went wrong but does not stop the cluster.
fn warn(config: &NodeConfig, text: &str) {
    tracing::warn!("[{}] {text}", config.name);
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string())
}

/// Reads a joiner's control connection: stats, states handed over, done, and its death. Stats
/// carry the name the joiner joined with, whatever it writes in them.
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
                Ok(Control::StateOut { partition, state }) => Event::StateOut {
                    name: name.clone(),
                    partition,
                    state,
                },
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
    links: Receiver<Link>,
    shared: Arc<Metrics>,
    events: Sender<Event>,
) -> Result<JoinHandle<Result<WorkerStats, NodeError>>, NodeError> {
    let published = shared.clone();
    let mut processor = Processor::new(config)?
        .publishing(Duration::from_secs(1), move |stats| published.update(stats));
    let name = config.name.clone();
    Ok(std::thread::spawn(move || {
        loop {
            let link = match links.try_recv() {
                Ok(link) => link,
                Err(_) => {
                    processor.flush();
                    match links.recv_timeout(Duration::from_millis(500)) {
                        Ok(link) => link,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            processor.publish();
                            continue;
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            match link {
                Link::Items(batch) => {
                    for frame in &batch {
                        processor.process(frame);
                    }
                }
                Link::Handover(partition) => {
                    let state = processor.take_state(partition);
                    let _ = events.send(Event::StateOut {
                        name: name.clone(),
                        partition,
                        state,
                    });
                }
                Link::Install { partition, state } => {
                    processor.install_state(&state).map_err(|e| {
                        NodeError::Protocol(format!(
                            "the state installed for partition {partition}: {e}"
                        ))
                    })?;
                }
            }
        }
        processor.finish();
        Ok(processor.stats())
    }))
}

/// Serves `plumbline shutdown` and `plumbline shrink` requests.
fn spawn_external(listener: TcpListener, token: Option<String>, events: Sender<Event>) {
    super::serve_each(listener, 4, move |stream| {
        let refused = |what: &str| {
            let peer = stream.peer_addr().map_or("?".into(), |a| a.to_string());
            tracing::info!("refused a {what} request from {peer}: wrong or missing token");
            Control::Reply {
                ok: false,
                message: "refused: wrong or missing token".into(),
            }
        };
        let reply = match recv_hello(&stream, super::SERVE_READ_TIMEOUT, "request") {
            Ok(Control::Shutdown { token: given }) => {
                if protect::admits(token.as_deref(), given.as_deref()) {
                    let _ = events.send(Event::ShutdownRequested);
                    Control::Reply {
                        ok: true,
                        message: "shutting down".into(),
                    }
                } else {
                    refused("shutdown")
                }
            }
            Ok(Control::Shrink {
                worker,
                token: given,
            }) => {
                if protect::admits(token.as_deref(), given.as_deref()) {
                    let (tx, answer) = bounded(1);
                    let _ = events.send(Event::Shrink { worker, reply: tx });
                    match answer.recv_timeout(super::SERVE_READ_TIMEOUT) {
                        Ok(Ok(message)) => Control::Reply { ok: true, message },
                        Ok(Err(message)) => Control::Reply { ok: false, message },
                        Err(_) => Control::Reply {
                            ok: false,
                            message: "the cluster did not answer".into(),
                        },
                    }
                } else {
                    refused("shrink")
                }
            }
            Ok(other) => Control::Reply {
                ok: false,
                message: format!(
                    "expected a shutdown or shrink request, got a {}",
                    other.kind()
                ),
            },
            Err(e) => Control::Reply {
                ok: false,
                message: format!("expected a shutdown or shrink request: {e}"),
            },
        };
        let _ = reply.send(&mut &stream);
    });
}
