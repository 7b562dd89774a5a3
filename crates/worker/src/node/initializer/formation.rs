//! Cluster formation: joiners are validated, welcomed and given their data connection before
//! anything flows; after formation, a worker started with `--join-running` joins the running
//! cluster the same way (and one without it is told the cluster is complete).
//!
//! Each connection's join is read on its own thread (at most [`PENDING_JOINS`] at once), so a
//! peer that trickles its join, or many of them, cannot hold up a real worker behind it.
//! Where partitions go once a worker is in is the router's and migrator's business.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use plumbline_core::intake::Slots;
use plumbline_core::Shutdown;
use plumbline_transport::tcp;

use super::super::protect;
use super::super::wire::{recv_hello, Control, WireError, PROTOCOL};
use super::super::{app_name, io, valid_name, NodeConfig, NodeError};
use super::{log, warn, Event};

/// How long a joiner has, once welcomed, to open its data connection and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection has to send its join, or its data hello.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Control connections whose join is being read at once; more are closed.
const PENDING_JOINS: usize = 64;

/// A control connection and the join it sent (or why it sent none).
type JoinRead = (TcpStream, std::net::SocketAddr, Result<Control, WireError>);

/// A welcomed joiner: its name and control connection.
pub(super) type Joiner = (String, TcpStream);

/// Waits for `worker_count - 1` valid joiners (each with `token`, where the cluster has one). `None`: shut down before the cluster formed.
pub(super) fn form(
    config: &NodeConfig,
    worker_count: usize,
    token: Option<&str>,
    listener: &TcpListener,
    events: &Receiver<Event>,
    stop: &Shutdown,
) -> Result<Option<Vec<Joiner>>, NodeError> {
    let mut joiners: Vec<Joiner> = Vec::new();
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
            let taken: Vec<String> = std::iter::once(config.name.clone())
                .chain(joiners.iter().map(|(n, _)| n.clone()))
                .collect();
            match admit(config, token, &taken, join, false) {
                Ok(name) => {
                    log(config, &format!("worker {name} joined from {peer}"));
                    joiners.push((name, stream));
                }
                Err(reason) => {
                    warn(config, &format!("refused a worker from {peer}: {reason}"));
                    let _ = Control::Refused { reason }.send(&mut &stream);
                }
            }
        }
        let (stream, peer) = match tcp::accept_or_nap(listener) {
            Ok(Some(conn)) => conn,
            Ok(None) => continue,
            Err(e) => {
                warn(config, &format!("accepting a worker failed: {e}"));
                continue;
            }
        };
        let Some(slot) = pending.try_acquire() else {
            warn(
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
pub(super) fn connect_data(
    config: &NodeConfig,
    names: &[String],
    joiners: &[Joiner],
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
            Ok(other) => warn(
                config,
                &format!(
                    "ignored a data connection that sent a {} without a valid ticket",
                    other.kind()
                ),
            ),
            Err(e) => warn(config, &format!("ignored a data connection: {e}")),
        }
    }
    Ok(streams)
}

/// Checks a joiner's `Join` (as read from its control connection) against the cluster and the
/// names `taken`; after formation (`formed`) only a `--join-running` worker is let in. The
/// reason names the mismatch.
fn admit(
    config: &NodeConfig,
    token: Option<&str>,
    taken: &[String],
    join: Result<Control, WireError>,
    formed: bool,
) -> Result<String, String> {
    match join {
        Ok(Control::Join {
            name,
            app,
            partitions,
            balanced,
            protocol,
            token: given,
            running,
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
            } else if taken.contains(&name) {
                Err(format!(
                    "the name {name} is taken: give each worker its own --name"
                ))
            } else if formed && !running {
                Err(format!(
                    "the cluster is complete with {} workers (start this worker with \
                     --join-running to grow it)",
                    taken.len()
                ))
            } else {
                Ok(name)
            }
        }
        Ok(other) => Err(format!("expected a join, got a {}", other.kind())),
        Err(e) => Err(format!("no valid join message: {e}")),
    }
}

/// What a late join needs of the running cluster.
pub(super) struct LateJoins {
    pub config: NodeConfig,
    pub token: Option<String>,
    pub data: TcpListener,
    pub data_addr: String,
    /// Every name in the cluster, past and present (a name is never reused in one run).
    pub taken: Arc<Mutex<Vec<String>>>,
    pub events: Sender<Event>,
    pub stop: Shutdown,
}

/// After formation: admits `--join-running` workers one at a time (welcome, data connection)
/// and hands each to the main loop as [`Event::Joined`]; refuses the others by name.
pub(super) fn spawn_late_joins(listener: TcpListener, late: LateJoins) {
    let late = Arc::new(Mutex::new(late));
    let pending = Slots::new(PENDING_JOINS);
    std::thread::spawn(move || loop {
        let Ok(Some((stream, peer))) = tcp::accept_or_nap(&listener) else {
            continue;
        };
        let Some(slot) = pending.try_acquire() else {
            continue;
        };
        let late = late.clone();
        std::thread::spawn(move || {
            let join = recv_hello(&stream, JOIN_TIMEOUT, "join");
            // One late join at a time: each takes the data listener and a name.
            let late = late.lock().unwrap_or_else(|p| p.into_inner());
            let taken: Vec<String> = late.taken.lock().expect("not poisoned").clone();
            match admit(&late.config, late.token.as_deref(), &taken, join, true) {
                Ok(name) => {
                    let joiner = [(name.clone(), stream)];
                    let names: Vec<String> = taken.iter().cloned().chain([name.clone()]).collect();
                    match connect_data(
                        &late.config,
                        &names,
                        &joiner,
                        &late.data,
                        &late.data_addr,
                        &late.stop,
                    ) {
                        Ok(mut data) => {
                            late.taken.lock().expect("not poisoned").push(name.clone());
                            log(
                                &late.config,
                                &format!("worker {name} joined the running cluster from {peer}"),
                            );
                            let [(_, control)] = joiner;
                            let _ = late.events.send(Event::Joined {
                                data: data.remove(&name).expect("connected above"),
                                name,
                                control,
                            });
                        }
                        Err(e) => warn(
                            &late.config,
                            &format!("worker {name} from {peer} did not join: {e}"),
                        ),
                    }
                }
                Err(reason) => {
                    warn(
                        &late.config,
                        &format!("refused a worker from {peer}: {reason}"),
                    );
                    let _ = Control::Refused { reason }.send(&mut &stream);
                }
            }
            drop(slot);
        });
    });
}
