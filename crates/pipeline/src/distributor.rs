//! The distributor: registers tasks, hands them to workers that have credit, and runs until every
//! task is ACKed by the collector (or failed), then ends the run (seed 001's `Distributor`).
//!
//! Threads: one accept thread per bound worker endpoint, one reader thread per worker, one
//! thread that keeps the collector link up (it reconnects for as long as `collector_timeout`
//! allows). They all feed one bounded [`Event`] channel (full: readers block, so a flood of
//! messages backs up into TCP rather than memory) that a single loop owns, so the task state
//! needs no locks. The loop only writes: task frames to workers, `end` at the finish.
//!
//! Load balancing is by asking: a worker's hello grants credits (its threads plus a prefetch)
//! and each `ready` grants more; a task goes only to a worker of its type with credit, the one
//! with the most. A slow worker returns credit slowly and so gets fewer tasks. While the
//! collector is unreachable nothing is dispatched; the run resumes when it is back, or fails
//! after `collector_timeout`. At-least-once
//! delivery and the failed list are [`Leases`]; dependencies gate a task type until every type
//! it depends on is complete: issued, and every task ACKed or failed. With a release schedule
//! (`release`) a new task goes out no earlier than its intended time ([`Release`]); latency
//! counts from that time (the start, for a batch) to its first ACK.
//!
//! Executing tasks is `worker.rs`; collecting results and ACKing them is `collector.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use plumbline_core::header::unix_now_ns;
use plumbline_core::Shutdown;
use plumbline_load::Shape;
use plumbline_measure::report::overhead_pct;
use plumbline_measure::{LatencyFeed, LatencySummary, Live};
use plumbline_transport::endpoint::{Conn, Endpoint, EndpointError, Listener};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lease::{Leases, Reclaimed, WorkerId};
use crate::peers::{self, Greeting, EVENT_QUEUE};
use crate::quarantine::{Candidate, Quarantine, Suspect};
use crate::release::Release;
use crate::task::{Task, TaskType};
use crate::wire::{self, Message, MessageReader, Role, WireError, PROTOCOL};

/// How the distributor runs; see each field.
#[derive(Debug, Clone)]
pub struct DistributorConfig {
    /// The collector's ACK endpoint, which the distributor connects to.
    pub collector: Endpoint,
    /// Workers that must have joined before the first dispatch, so a run's clock starts with
    /// its whole capacity.
    pub workers: usize,
    /// How long a worker has from dispatch to the collector's ACK before the task goes out again.
    pub lease: Duration,
    /// Deliveries of one task before it is failed.
    pub max_deliver: u32,
    /// How long the collector may be unreachable (or silent at the end) before the run fails.
    pub collector_timeout: Duration,
    /// How long to wait for the workers to join before the first dispatch.
    pub join_timeout: Duration,
    /// After the start, how long a task type with work may have no worker connected before
    /// the run fails (every worker of it died or was dropped).
    pub rejoin_timeout: Duration,
    /// Tasks an earlier run of the same tasks got results for (id → task type, from the
    /// collector's ledger): counted as done and not issued again.
    pub resume: BTreeMap<u64, String>,
    /// The run's shared secret: workers must say it in their hello, and the distributor says
    /// it to the collector.
    pub token: Option<String>,
    /// When each task becomes available (open loop, see [`Release`]); `None` (or
    /// `Shape::Max`): every task at the start, a batch as fast as credits allow.
    pub release: Option<Shape>,
}

impl DistributorConfig {
    pub fn new(collector: Endpoint) -> Self {
        Self {
            collector,
            workers: 1,
            lease: Duration::from_secs(30),
            max_deliver: 3,
            collector_timeout: Duration::from_secs(30),
            join_timeout: Duration::from_secs(60),
            rejoin_timeout: Duration::from_secs(10),
            resume: BTreeMap::new(),
            token: None,
            release: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DistributorError {
    #[error("task type {0} is registered twice")]
    DuplicateType(TaskType),
    #[error("task type {task} depends on {dependency}, which is not registered")]
    UnknownDependency {
        task: TaskType,
        dependency: TaskType,
    },
    #[error(
        "--resume needs task ids that do not depend on timing, but task types {0} and {1} run \
         side by side (their ids interleave as workers finish); resume runs with one type, or \
         types in a dependency chain"
    )]
    ResumeAmbiguous(TaskType, TaskType),
    #[error("task types depend on each other in a cycle through {0}")]
    Cycle(TaskType),
    #[error("no task registered")]
    NoTasks,
    #[error(
        "a release schedule needs to know how many tasks there are, and task type {0} does not \
         say (Task::total)"
    )]
    ReleaseUncounted(TaskType),
    #[error(
        "a release schedule must not end before the tasks do: give a rate (it ends after {0:?})"
    )]
    ReleaseEnds(Duration),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("the collector at {endpoint} was unreachable for {waited:?} (--collector-timeout); {acked} tasks ACKed, {outstanding} outstanding")]
    CollectorUnreachable {
        endpoint: Endpoint,
        waited: Duration,
        acked: u64,
        outstanding: u64,
    },
    #[error("{what} within {waited:?} ({flag}); {acked} tasks ACKed so far")]
    NoWorkers {
        what: String,
        waited: Duration,
        flag: &'static str,
        acked: u64,
    },
}

/// A task type as the distributor tracks it.
struct TypeState {
    task: Box<dyn Task>,
    deps: Vec<usize>,
    /// Tasks taken back from a worker, to go out again before new ones.
    retry: VecDeque<(u64, u32, Value)>,
    /// Tasks a crash left under suspicion, to run alone.
    quarantine: Quarantine,
    issued: u64,
    acked: u64,
    failed: u64,
    first_dispatch_ns: Option<u64>,
    last_ack_ns: Option<u64>,
    /// When this type last had work but no worker connected.
    starved_since: Option<Instant>,
    /// Threads of the workers serving it at its first dispatch, for its ideal.
    threads: u32,
}

/// Where each task stands, indexed by id: one byte per task issued.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fate {
    Leased,
    Queued,
    Acked,
    Failed,
}

struct WorkerState {
    name: String,
    task_type: usize,
    threads: u32,
    credits: u32,
    /// The credits of its hello: the most tasks it may hold.
    max_credits: u32,
    /// Its hello or its last `ready`.
    last_heard: Instant,
    /// Its silence past a lease was logged (once until it is heard again).
    told_silent: bool,
    /// Credits it gave back: tasks it finished and sent the result of.
    finished: u64,
    /// Its connection ended before the run did.
    left_early: bool,
    conn: Option<Conn>,
    /// Frames encoded this round, written in one go.
    out: Vec<u8>,
    dispatched: u64,
    acked: u64,
}

enum Event {
    Joined {
        worker: WorkerId,
        name: String,
        task_type: usize,
        threads: u32,
        credits: u32,
        conn: Conn,
    },
    Ready {
        worker: WorkerId,
        credits: u32,
    },
    /// A worker's connection ended; `reason` is `None` for a clean close.
    Gone {
        worker: WorkerId,
        reason: Option<String>,
    },
    /// A peer broke the protocol and was dropped.
    Bad {
        peer: String,
        reason: String,
    },
    CollectorUp(Conn),
    CollectorDown(String),
    Ack {
        id: u64,
    },
    Finished {
        results: u64,
        duplicates: u64,
    },
}

/// How a run ended.
enum Ending {
    Complete,
    Interrupted,
    Failed(String),
}

/// Longest worker name accepted in a hello.
pub const MAX_NAME: usize = 128;
/// After Ctrl-C, how long tasks in flight may take to be ACKed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// Longest wait of the loop with nothing to do, so timeouts are noticed.
const TICK: Duration = Duration::from_millis(50);

/// A distributor with its tasks registered, before binding.
pub struct Distributor {
    config: DistributorConfig,
    tasks: Vec<(Box<dyn Task>, Endpoint)>,
}

impl Distributor {
    pub fn new(config: DistributorConfig) -> Self {
        Self {
            config,
            tasks: Vec::new(),
        }
    }

    /// Registers a task; its workers connect to `endpoint` (task types may share one).
    pub fn register(&mut self, task: Box<dyn Task>, endpoint: Endpoint) -> &mut Self {
        self.tasks.push((task, endpoint));
        self
    }

    /// Checks the registry (unique types, known dependencies, no cycles) and binds every worker
    /// endpoint. After this the endpoints accept workers, which wait until [`Bound::run`].
    pub fn bind(self) -> Result<Bound, DistributorError> {
        if self.tasks.is_empty() {
            return Err(DistributorError::NoTasks);
        }
        let types: Vec<TaskType> = self
            .tasks
            .iter()
            .map(|(t, _)| t.task_type().clone())
            .collect();
        for (i, t) in types.iter().enumerate() {
            if types[..i].contains(t) {
                return Err(DistributorError::DuplicateType(t.clone()));
            }
        }
        let mut states = Vec::new();
        let mut endpoints: Vec<(Endpoint, Vec<usize>)> = Vec::new();
        for (index, (task, endpoint)) in self.tasks.into_iter().enumerate() {
            let mut deps = Vec::new();
            for dep in task.dependencies() {
                let found = types.iter().position(|t| *t == dep).ok_or_else(|| {
                    DistributorError::UnknownDependency {
                        task: task.task_type().clone(),
                        dependency: dep.clone(),
                    }
                })?;
                deps.push(found);
            }
            match endpoints.iter_mut().find(|(e, _)| *e == endpoint) {
                Some((_, served)) => served.push(index),
                None => endpoints.push((endpoint, vec![index])),
            }
            states.push(TypeState {
                task,
                deps,
                retry: VecDeque::new(),
                quarantine: Quarantine::default(),
                issued: 0,
                acked: 0,
                failed: 0,
                first_dispatch_ns: None,
                last_ack_ns: None,
                starved_since: None,
                threads: 0,
            });
        }
        let levels = levels(&states, &types)?;
        if !self.config.resume.is_empty() {
            for (i, &level) in levels.iter().enumerate() {
                if let Some(j) = (i + 1..levels.len()).find(|&j| levels[j] == level) {
                    return Err(DistributorError::ResumeAmbiguous(
                        types[i].clone(),
                        types[j].clone(),
                    ));
                }
            }
        }
        let release = match self.config.release.as_ref().filter(|s| **s != Shape::Max) {
            None => None,
            Some(shape) => {
                if let Some(ends) = shape.duration() {
                    return Err(DistributorError::ReleaseEnds(ends));
                }
                let mut total = 0u64;
                for (state, task_type) in states.iter().zip(&types) {
                    let count = state.task.total();
                    let count = count
                        .ok_or_else(|| DistributorError::ReleaseUncounted(task_type.clone()))?;
                    total = total.saturating_add(count);
                }
                Some(Release::new(shape, total))
            }
        };
        let mut listeners = Vec::new();
        for (endpoint, served) in endpoints {
            listeners.push((endpoint.bind()?, served));
        }
        Ok(Bound {
            config: self.config,
            types,
            states,
            levels,
            listeners,
            live: Arc::new(Live::new()),
            release,
        })
    }
}

/// Each type's depth in the dependency graph (0: depends on nothing), or the cycle.
fn levels(states: &[TypeState], types: &[TaskType]) -> Result<Vec<usize>, DistributorError> {
    let mut level = vec![None; states.len()];
    for _ in 0..=states.len() {
        for i in 0..states.len() {
            if level[i].is_some() {
                continue;
            }
            let deps: Option<Vec<usize>> = states[i].deps.iter().map(|&d| level[d]).collect();
            if let Some(deps) = deps {
                level[i] = Some(deps.iter().map(|d| d + 1).max().unwrap_or(0));
            }
        }
    }
    match level.iter().position(Option::is_none) {
        Some(i) => Err(DistributorError::Cycle(types[i].clone())),
        None => Ok(level.into_iter().map(|l| l.unwrap_or(0)).collect()),
    }
}

/// A distributor whose endpoints are bound.
pub struct Bound {
    config: DistributorConfig,
    types: Vec<TaskType>,
    states: Vec<TypeState>,
    levels: Vec<usize>,
    listeners: Vec<(Listener, Vec<usize>)>,
    live: Arc<Live>,
    release: Option<Release>,
}

/// One task given up on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailedTask {
    pub id: u64,
    pub task_type: String,
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypeReport {
    pub task_type: String,
    pub depends_on: Vec<String>,
    pub issued: u64,
    pub acked: u64,
    pub failed: u64,
    pub first_dispatch_unix_ns: Option<u64>,
    pub last_ack_unix_ns: Option<u64>,
    /// What this type ideally costs on the threads serving it when it started, in seconds.
    pub ideal_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    pub name: String,
    pub task_type: String,
    pub threads: u32,
    pub dispatched: u64,
    pub acked: u64,
    /// Left before the end of the run.
    pub lost_connection: bool,
}

/// What the collector said at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectorCounts {
    pub results: u64,
    pub duplicates: u64,
}

/// The run, as the distributor saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineReport {
    /// From the first dispatch to the last ACK, in seconds.
    pub wall_s: f64,
    /// The critical path of the types' ideals through the dependency graph, in seconds.
    pub ideal_s: Option<f64>,
    /// Over the ideal, in percent ([`overhead_pct`]); null without a (non-zero) ideal.
    pub overhead_pct: Option<f64>,
    pub issued: u64,
    pub acked: u64,
    pub dispatches: u64,
    pub redeliveries: u64,
    /// Redeliveries run alone on a worker holding nothing else: tasks a worker's crash left
    /// under suspicion (it held several unfinished, any of which may have ended it).
    #[serde(default)]
    pub isolated: u64,
    /// ACKs of tasks already ACKed: a task that ran more than once.
    pub duplicates: u64,
    /// Counted as ACKed because the `--resume` ledger had their results: not issued again.
    #[serde(default)]
    pub resumed: u64,
    pub failed: Vec<FailedTask>,
    /// Issued, but neither ACKed nor failed: 0 unless the run was interrupted.
    pub lost: u64,
    /// Peers dropped for breaking the protocol, and workers refused at hello.
    pub bad_peers: u64,
    pub collector: Option<CollectorCounts>,
    pub interrupted: bool,
    /// Why the run ended before every task settled (no worker left, the collector gone);
    /// the figures are what it reached.
    pub error: Option<String>,
    /// Intended time (its release, or the start for a batch) → the distributor's receipt of
    /// its first ACK, every task ACKed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    pub types: Vec<TypeReport>,
    pub workers: Vec<WorkerReport>,
}

impl Bound {
    /// Where each task type's workers connect (with the real port of `tcp://…:0`).
    pub fn endpoints(&self) -> Vec<(TaskType, Endpoint)> {
        self.listeners
            .iter()
            .flat_map(|(l, served)| {
                served
                    .iter()
                    .map(|&i| (self.types[i].clone(), l.endpoint()))
            })
            .collect()
    }

    /// The run as watchers see it: tasks issued (`items_in`; released, with a release
    /// schedule), ACKed (`items_out`), and their latencies.
    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live)
    }

    /// Reports to `live` instead of a `Live` of its own (an engine's run, counted by its caller).
    pub fn with_live(mut self, live: Arc<Live>) -> Self {
        self.live = live;
        self
    }

    /// Runs until every task is ACKed or failed, the collector has answered `end`, and every
    /// worker was sent `end`. `shutdown` stops dispatching; tasks in flight get a few seconds
    /// (at most a lease) to be ACKed, and the report says the run was interrupted.
    pub fn run(self, shutdown: &Shutdown) -> Result<PipelineReport, DistributorError> {
        let stop = Shutdown::new();
        let (events, inbox) = crossbeam_channel::bounded(EVENT_QUEUE);
        let next_worker = Arc::new(AtomicU64::new(1));
        let mut accepting = Vec::new();
        for (listener, served) in self.listeners {
            let names: Vec<(usize, TaskType)> =
                served.iter().map(|&i| (i, self.types[i].clone())).collect();
            let events: Sender<Event> = events.clone();
            let ids = Arc::clone(&next_worker);
            let token = self.config.token.clone();
            let handle = peers::serve(
                listener,
                stop.clone(),
                "distributor",
                move |conn, greeting| {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    serve_worker(conn, greeting, id, &names, token.as_deref(), &events);
                },
            )
            .map_err(DistributorError::Thread)?;
            accepting.push(handle);
        }
        {
            let events = events.clone();
            let stop = stop.clone();
            let endpoint = self.config.collector.clone();
            let token = self.config.token.clone();
            std::thread::Builder::new()
                .name("distributor-collector".into())
                .spawn(move || keep_collector_link(&endpoint, token.as_deref(), &stop, &events))
                .map_err(DistributorError::Thread)?;
        }
        // `events` stays alive until the loop ends, so the channel never reads as disconnected.
        let leases = Leases::new(self.config.lease, self.config.max_deliver);
        let mut run = Run {
            config: self.config,
            types: self.types,
            states: self.states,
            levels: self.levels,
            leases,
            fates: Vec::new(),
            workers: BTreeMap::new(),
            collector: None,
            collector_down_since: Some(Instant::now()),
            started: None,
            created: Instant::now(),
            dispatches: 0,
            redeliveries: 0,
            duplicates: 0,
            resumed: 0,
            failed: Vec::new(),
            bad_peers: 0,
            live: self.live,
            latency: LatencyFeed::default(),
            release: self.release,
            ended: false,
        };
        let result = run.main_loop(&inbox, shutdown);
        stop.request();
        for worker in run.workers.values() {
            if let Some(conn) = &worker.conn {
                conn.close();
            }
        }
        if let Some(conn) = &run.collector {
            conn.close();
        }
        // The accept threads own the listeners: joined, an ipc:// socket file is gone.
        for handle in accepting {
            handle.join().ok();
        }
        result
    }
}

/// Reads one worker: its hello, then `ready`s. Anything else ends the connection.
fn serve_worker(
    conn: Conn,
    greeting: Greeting,
    id: WorkerId,
    served: &[(usize, TaskType)],
    token: Option<&str>,
    events: &Sender<Event>,
) {
    let peer = conn.peer();
    let Ok(writer) = conn.try_clone() else {
        return;
    };
    let mut reader = MessageReader::new(conn);
    let refuse = |mut writer: Conn, reason: String| {
        Message::Refused {
            reason: reason.clone(),
        }
        .send(&mut writer)
        .ok();
        writer.close();
        events
            .send(Event::Bad {
                peer: peer.clone(),
                reason,
            })
            .ok();
    };
    let (name, task_type, threads, credits) = match reader.recv() {
        Ok(Message::Hello {
            protocol,
            role: Role::Worker,
            name,
            task_type: Some(task_type),
            threads,
            credits: Some(credits),
            token: given,
        }) => {
            if !wire::token_ok(token, given.as_deref()) {
                return refuse(writer, "wrong or missing token (--token)".into());
            }
            if protocol != PROTOCOL {
                return refuse(
                    writer,
                    format!("protocol {protocol} is not this distributor's {PROTOCOL}"),
                );
            }
            let Some(&(index, _)) = served.iter().find(|(_, t)| t.as_str() == task_type) else {
                let known: Vec<&str> = served.iter().map(|(_, t)| t.as_str()).collect();
                return refuse(
                    writer,
                    format!(
                        "task type '{task_type}' is not served here (this endpoint serves {})",
                        known.join(", ")
                    ),
                );
            };
            if credits == 0 || credits > 10_000 {
                return refuse(writer, format!("{credits} credits is not 1..=10000"));
            }
            let threads = threads.unwrap_or(1);
            if threads == 0 || threads > credits {
                return refuse(
                    writer,
                    format!("{threads} threads is not 1..={credits} (its credits)"),
                );
            }
            if name.is_empty() || name.len() > MAX_NAME {
                return refuse(
                    writer,
                    format!(
                        "a worker name of {} bytes is not 1..={MAX_NAME}",
                        name.len()
                    ),
                );
            }
            (name, index, threads, credits)
        }
        Ok(other) => {
            return refuse(
                writer,
                format!("expected a worker's hello, got '{}'", other.kind()),
            )
        }
        Err(WireError::Closed | WireError::Io(_)) => return,
        Err(e) => return refuse(writer, format!("expected a worker's hello: {e}")),
    };
    let Ok(answer) = writer.try_clone() else {
        return;
    };
    greeting.done(&writer);
    let joined = Event::Joined {
        worker: id,
        name,
        task_type,
        threads,
        credits,
        conn: writer,
    };
    if events.send(joined).is_err() {
        return;
    }
    let (reason, broke_protocol) = loop {
        let reason = match reader.recv() {
            Ok(Message::Ready { credits }) => {
                if events
                    .send(Event::Ready {
                        worker: id,
                        credits,
                    })
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Ok(other) => format!("worker sent '{}' where only 'ready' may come", other.kind()),
            Err(WireError::Closed) => break (None, false),
            Err(WireError::Io(e)) => break (Some(e.to_string()), false),
            Err(e) => e.to_string(),
        };
        break (Some(reason), true);
    };
    if let (Some(reason), true) = (&reason, broke_protocol) {
        refuse(answer, reason.clone());
    }
    events.send(Event::Gone { worker: id, reason }).ok();
}

/// Keeps a connection to the collector: connect, hello, forward its ACKs; reconnect on loss.
fn keep_collector_link(
    endpoint: &Endpoint,
    token: Option<&str>,
    stop: &Shutdown,
    events: &Sender<Event>,
) {
    while !stop.requested() {
        let mut conn = match endpoint.connect(Duration::from_millis(500)) {
            Ok(conn) => conn,
            Err(_) => continue,
        };
        let hello = wire::plain_hello(Role::Distributor, "distributor", token);
        let Ok(writer) = conn.try_clone() else {
            continue;
        };
        if hello.send(&mut conn).is_err() || events.send(Event::CollectorUp(writer)).is_err() {
            continue;
        }
        let mut reader = MessageReader::new(conn);
        let reason = loop {
            let event = match reader.recv() {
                Ok(Message::Ack { id, .. }) => Event::Ack { id },
                Ok(Message::Finished {
                    results,
                    duplicates,
                }) => Event::Finished {
                    results,
                    duplicates,
                },
                Ok(Message::Refused { reason }) => break format!("refused: {reason}"),
                Ok(other) => {
                    let reason = format!("collector sent '{}'", other.kind());
                    events
                        .send(Event::Bad {
                            peer: endpoint.to_string(),
                            reason: reason.clone(),
                        })
                        .ok();
                    break reason;
                }
                Err(WireError::Closed) => break "closed the connection".into(),
                Err(e) => break e.to_string(),
            };
            if events.send(event).is_err() {
                return;
            }
        };
        if events.send(Event::CollectorDown(reason)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The loop's state.
struct Run {
    config: DistributorConfig,
    types: Vec<TaskType>,
    states: Vec<TypeState>,
    levels: Vec<usize>,
    leases: Leases,
    /// Indexed by task id − 1.
    fates: Vec<Fate>,
    workers: BTreeMap<WorkerId, WorkerState>,
    collector: Option<Conn>,
    collector_down_since: Option<Instant>,
    started: Option<(Instant, u64)>,
    created: Instant,
    dispatches: u64,
    redeliveries: u64,
    duplicates: u64,
    /// Tasks the `--resume` ledger already had results for.
    resumed: u64,
    failed: Vec<FailedTask>,
    bad_peers: u64,
    live: Arc<Live>,
    /// Intended time → first ACK of every task, for `live` and the report.
    latency: LatencyFeed,
    release: Option<Release>,
    /// `end` has gone out to the workers.
    ended: bool,
}

impl Run {
    fn main_loop(
        &mut self,
        inbox: &Receiver<Event>,
        shutdown: &Shutdown,
    ) -> Result<PipelineReport, DistributorError> {
        let mut interrupted_at: Option<Instant> = None;
        loop {
            let wait = self
                .leases
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(TICK)
                .min(TICK)
                .min(self.next_release().unwrap_or(TICK));
            match inbox.recv_timeout(wait) {
                Ok(event) => {
                    self.handle(event);
                    // Take whatever else is waiting before dispatching once for all of it.
                    while let Ok(event) = inbox.try_recv() {
                        self.handle(event);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            let now = Instant::now();
            // With the collector away no result can be ACKed: leases wait (renewed on its return).
            let holders = match self.collector {
                Some(_) => self.leases.expired_holders(now),
                None => Vec::new(),
            };
            for (worker, task, granted) in holders {
                // Its tasks go out again either way. A worker silent since the lease was
                // granted is wedged, paused or slower than its lease: it keeps its connection
                // (its late results count as duplicates) but gets nothing new until it asks.
                let back = self.leases.reclaim_expired(worker, now);
                if let Some(w) = self.workers.get_mut(&worker) {
                    if w.last_heard <= granted && !w.told_silent {
                        w.told_silent = true;
                        tracing::warn!(
                            "distributor: worker {} is silent since its lease on task {task} was \
                             granted; {} task(s) past their lease ({:?}, --lease) go out again",
                            w.name,
                            back.len(),
                            self.config.lease
                        );
                    }
                }
                for back in back {
                    self.take_back(back);
                }
            }
            if let Err(error) = self.check_timeouts(now) {
                tracing::error!("distributor: {error}");
                return Ok(self.finish(inbox, Ending::Failed(error.to_string())));
            }
            if shutdown.requested() && interrupted_at.is_none() {
                interrupted_at = Some(now);
            }
            if let Some(at) = interrupted_at {
                // Tasks in flight get a few seconds to be ACKed; the rest are reported lost.
                if self.leases.is_empty() || now >= at + self.config.lease.min(INTERRUPT_GRACE) {
                    return Ok(self.finish(inbox, Ending::Interrupted));
                }
                self.flush();
                continue;
            }
            if self.started.is_none() && self.ready_to_start() {
                self.started = Some((now, unix_now_ns()));
            }
            if let Some((at, _)) = self.started {
                if (0..self.states.len()).all(|t| self.complete(t)) {
                    return Ok(self.finish(inbox, Ending::Complete));
                }
                if let Some(release) = &mut self.release {
                    // A released task is in the run (items in) even while no worker has credit.
                    let released = release.advance(now.duration_since(at));
                    self.live.items_in.fetch_add(released, Ordering::Relaxed);
                }
                self.dispatch(now);
            }
            self.latency.publish_if_due(&self.live);
            self.flush();
        }
    }

    /// How long until the next task is released, once the run has started.
    fn next_release(&self) -> Option<Duration> {
        let (at, _) = self.started?;
        self.release.as_ref()?.next_in(at.elapsed())
    }

    /// A new task may be issued: released, or no release schedule.
    fn may_issue(&self) -> bool {
        self.release
            .as_ref()
            .is_none_or(|r| (self.fates.len() as u64) < r.released())
    }

    fn ready_to_start(&self) -> bool {
        let joined = self.workers.values().filter(|w| w.conn.is_some()).count();
        joined >= self.config.workers.max(1) && self.collector.is_some()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Joined {
                worker,
                name,
                task_type,
                threads,
                credits,
                conn,
            } => {
                conn.set_write_timeout(Some(Duration::from_secs(5))).ok();
                self.workers.insert(
                    worker,
                    WorkerState {
                        name,
                        task_type,
                        threads,
                        credits,
                        max_credits: credits,
                        last_heard: Instant::now(),
                        told_silent: false,
                        finished: 0,
                        left_early: false,
                        conn: Some(conn),
                        out: Vec::new(),
                        dispatched: 0,
                        acked: 0,
                    },
                );
            }
            Event::Ready { worker, credits } => {
                // Never more than the hello announced: a worker cannot talk itself into more
                // tasks than it said it can hold.
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.credits = w.credits.saturating_add(credits).min(w.max_credits);
                    w.finished += u64::from(credits);
                    w.last_heard = Instant::now();
                    w.told_silent = false;
                }
            }
            Event::Gone { worker, reason } => self.worker_gone(worker, reason),
            Event::Bad { peer, reason } => {
                self.bad_peers += 1;
                tracing::warn!("distributor: dropped {peer}: {reason}");
            }
            Event::CollectorUp(conn) => {
                self.collector = Some(conn);
                if self.collector_down_since.take().is_some() {
                    self.leases.renew_all(Instant::now());
                }
            }
            Event::CollectorDown(reason) => {
                if self.collector.take().is_some() {
                    tracing::warn!(
                        "distributor: lost the collector at {}: {reason}; reconnecting",
                        self.config.collector
                    );
                    self.collector_down_since = Some(Instant::now());
                }
            }
            Event::Ack { id } => self.ack(id),
            Event::Finished { .. } => {
                self.bad_peers += 1;
                tracing::warn!("distributor: the collector said 'finished' before the end");
            }
        }
    }

    fn worker_gone(&mut self, worker: WorkerId, reason: Option<String>) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        let Some(conn) = w.conn.take() else {
            return;
        };
        conn.close();
        w.credits = 0;
        let task_type = w.task_type;
        self.states[task_type].quarantine.gone(worker);
        if self.ended {
            // Told `end`: leaving is what it should do.
            return;
        }
        w.left_early = true;
        // Credits come back once a result is out: those not yet ACKed are finished tasks.
        let done = w.finished.saturating_sub(w.acked);
        let held = self.leases.reclaim_worker(worker, done);
        let suspects = held
            .iter()
            .filter(|b| matches!(b, Reclaimed::Redeliver { alone: true, .. }))
            .count();
        tracing::info!(
            "distributor: worker {} left ({}); {} of its tasks go out again{}",
            w.name,
            reason.as_deref().unwrap_or("closed the connection"),
            held.len(),
            match suspects {
                0 => String::new(),
                n => format!(", {n} of them alone (any one may have ended it)"),
            }
        );
        for back in held {
            self.take_back(back);
        }
    }

    fn take_back(&mut self, back: Reclaimed) {
        for state in &mut self.states {
            state.quarantine.settled(back.id());
        }
        match back {
            Reclaimed::Redeliver {
                id,
                task_type,
                attempt,
                data,
                alone,
            } => {
                self.fates[(id - 1) as usize] = Fate::Queued;
                let state = &mut self.states[task_type];
                if alone {
                    state.quarantine.admit(Suspect { id, attempt, data });
                } else {
                    state.retry.push_back((id, attempt, data));
                }
            }
            Reclaimed::Failed {
                id,
                task_type,
                attempts,
            } => {
                self.fates[(id - 1) as usize] = Fate::Failed;
                self.states[task_type].failed += 1;
                tracing::warn!(
                    "distributor: task {id} ({}) failed after {attempts} deliveries",
                    self.types[task_type]
                );
                self.failed.push(FailedTask {
                    id,
                    task_type: self.types[task_type].to_string(),
                    attempts,
                });
            }
        }
    }

    fn ack(&mut self, id: u64) {
        let Some(fate) = id
            .checked_sub(1)
            .and_then(|i| self.fates.get(i as usize))
            .copied()
        else {
            self.bad_peers += 1;
            tracing::warn!("distributor: the collector ACKed task {id}, which was never issued");
            return;
        };
        let task_type = match fate {
            Fate::Acked => {
                self.duplicates += 1;
                return;
            }
            Fate::Leased => match self.leases.ack(id) {
                Some(lease) => {
                    if let Some(w) = self.workers.get_mut(&lease.worker) {
                        w.acked += 1;
                    }
                    self.states[lease.task_type].quarantine.settled(id);
                    lease.task_type
                }
                None => return,
            },
            // Its worker left (or its lease ran out) after the result reached the collector.
            Fate::Queued => {
                let Some(t) = (0..self.states.len()).find(|&t| {
                    let state = &mut self.states[t];
                    let queued = state.retry.iter().any(|(queued, ..)| *queued == id);
                    state.retry.retain(|(queued, ..)| *queued != id);
                    queued || state.quarantine.remove(id)
                }) else {
                    return;
                };
                t
            }
            Fate::Failed => {
                let Some(at) = self.failed.iter().position(|f| f.id == id) else {
                    return;
                };
                let failed = self.failed.remove(at);
                let t = self
                    .types
                    .iter()
                    .position(|t| t.as_str() == failed.task_type)
                    .unwrap_or(0);
                self.states[t].failed -= 1;
                t
            }
        };
        self.fates[(id - 1) as usize] = Fate::Acked;
        let state = &mut self.states[task_type];
        state.acked += 1;
        state.last_ack_ns = Some(unix_now_ns());
        self.live.items_out.fetch_add(1, Ordering::Relaxed);
        // From the task's intended time: its release, or the start for a batch.
        let due = match &self.release {
            Some(release) => release.due(id - 1),
            None => Some(Duration::ZERO),
        };
        if let (Some((at, _)), Some(due)) = (self.started, due) {
            let latency = at.elapsed().saturating_sub(due);
            self.latency
                .record_ns(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// Issued everything, and every task ACKed or failed.
    fn complete(&self, t: usize) -> bool {
        let state = &self.states[t];
        state.task.is_complete()
            && state.retry.is_empty()
            && state.quarantine.is_empty()
            && state.acked + state.failed == state.issued
    }

    /// Every type it depends on is complete: it may be dispatched.
    fn unblocked(&self, t: usize) -> bool {
        self.states[t].deps.iter().all(|&d| self.complete(d))
    }

    /// Tasks the normal path may send: taken back, or not yet issued (suspects go alone).
    fn has_more(&self, t: usize) -> bool {
        !self.states[t].retry.is_empty() || !self.states[t].task.is_complete()
    }

    fn dispatch(&mut self, now: Instant) {
        // Results would have nowhere to go: hold the tasks, so what is in flight (and the
        // collector's ACKs owed on its return) stays within the workers' credits.
        if self.collector.is_none() {
            return;
        }
        for t in 0..self.states.len() {
            if !self.unblocked(t) {
                continue;
            }
            self.dispatch_suspects(t, now);
            while self.has_more(t) {
                if self.states[t].retry.is_empty() && !self.may_issue() {
                    break;
                }
                // The worker of this type with the most credit; ties to the one given least.
                let quarantine = &self.states[t].quarantine;
                let Some((&id, _)) = self
                    .workers
                    .iter()
                    .filter(|(id, w)| {
                        w.task_type == t
                            && w.conn.is_some()
                            && w.credits > 0
                            && !quarantine.is_ward(**id)
                    })
                    .max_by_key(|(_, w)| (w.credits, std::cmp::Reverse(w.dispatched)))
                else {
                    break;
                };
                let state = &mut self.states[t];
                let (task_id, attempt, data) = match state.retry.pop_front() {
                    Some(again) => {
                        self.redeliveries += 1;
                        again
                    }
                    None => {
                        let worker_name = &self.workers[&id].name;
                        let data = state.task.handle(worker_name);
                        state.issued += 1;
                        if self.release.is_none() {
                            self.live.items_in.fetch_add(1, Ordering::Relaxed);
                        }
                        let task_id = self.fates.len() as u64 + 1;
                        let collected = self.config.resume.get(&task_id);
                        if collected.is_some_and(|ty| ty.as_str() == self.types[t].as_str()) {
                            // Its result is in the earlier run's ledger: done, not sent again.
                            self.fates.push(Fate::Acked);
                            state.acked += 1;
                            self.resumed += 1;
                            self.live.items_out.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        self.fates.push(Fate::Queued);
                        (task_id, 1, data)
                    }
                };
                self.send(id, t, task_id, attempt, data, now);
            }
        }
    }

    /// Suspects of type `t` to the wards the quarantine has emptied for them.
    fn dispatch_suspects(&mut self, t: usize, now: Instant) {
        if self.states[t].quarantine.is_empty() {
            return;
        }
        let candidates: Vec<Candidate> = self
            .workers
            .iter()
            .filter(|(_, w)| w.task_type == t && w.conn.is_some())
            .map(|(&worker, w)| Candidate {
                worker,
                held: self.leases.held_by(worker),
                can_take: w.credits > 0,
            })
            .collect();
        for (worker, suspect) in self.states[t].quarantine.plan(&candidates) {
            self.redeliveries += 1;
            self.send(worker, t, suspect.id, suspect.attempt, suspect.data, now);
        }
    }

    /// Encodes task `task_id` of type `t` into `id`'s frames of this round and leases it.
    fn send(
        &mut self,
        id: WorkerId,
        t: usize,
        task_id: u64,
        attempt: u32,
        data: Value,
        now: Instant,
    ) {
        let state = &mut self.states[t];
        if state.first_dispatch_ns.is_none() {
            state.first_dispatch_ns = Some(unix_now_ns());
            // The ideal counts the threads serving this type when it starts.
            state.threads = self
                .workers
                .values()
                .filter(|w| w.conn.is_some() && w.task_type == t)
                .map(|w| w.threads)
                .fold(0u32, u32::saturating_add);
        }
        let message = Message::Task {
            id: task_id,
            task_type: self.types[t].to_string(),
            attempt,
            data: data.clone(),
        };
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        if let Err(e) = message.encode_into(&mut worker.out) {
            // A descriptor too big for a frame can never be delivered.
            tracing::warn!(
                "distributor: task {task_id} ({}) cannot be sent: {e}",
                self.types[t]
            );
            self.take_back(Reclaimed::Failed {
                id: task_id,
                task_type: t,
                attempts: attempt - 1,
            });
            return;
        }
        worker.credits -= 1;
        worker.dispatched += 1;
        self.dispatches += 1;
        self.fates[(task_id - 1) as usize] = Fate::Leased;
        self.leases.grant(task_id, t, attempt, id, data, now);
    }

    /// Writes each worker's frames of this round in one go; a failed write means the worker left.
    fn flush(&mut self) {
        let mut gone = Vec::new();
        for (&id, w) in self.workers.iter_mut() {
            if w.out.is_empty() {
                continue;
            }
            let written = match &mut w.conn {
                Some(conn) => conn.write_all(&w.out).map_err(|e| e.to_string()),
                None => Ok(()),
            };
            w.out.clear();
            if let Err(e) = written {
                gone.push((id, e));
            }
        }
        for (id, e) in gone {
            self.worker_gone(id, Some(format!("write failed: {e}")));
        }
    }

    /// Tasks ACKed so far, from the distributor's own books (Live is for watchers only).
    fn acked(&self) -> u64 {
        self.states.iter().map(|s| s.acked).sum()
    }

    fn check_timeouts(&mut self, now: Instant) -> Result<(), DistributorError> {
        if let Some(since) = self.collector_down_since {
            if now.duration_since(since) > self.config.collector_timeout {
                return Err(DistributorError::CollectorUnreachable {
                    endpoint: self.config.collector.clone(),
                    waited: self.config.collector_timeout,
                    acked: self.acked(),
                    outstanding: self
                        .fates
                        .iter()
                        .filter(|f| matches!(f, Fate::Leased | Fate::Queued))
                        .count() as u64,
                });
            }
        }
        let waited = self.config.join_timeout;
        let acked = self.acked();
        if self.started.is_none() {
            if now.duration_since(self.created) > waited {
                let joined = self.workers.values().filter(|w| w.conn.is_some()).count();
                return Err(DistributorError::NoWorkers {
                    what: format!(
                        "only {joined} of {} workers joined",
                        self.config.workers.max(1)
                    ),
                    waited,
                    flag: "--join-timeout",
                    acked,
                });
            }
            return Ok(());
        }
        for t in 0..self.states.len() {
            // Unfinished and free to run: it needs a worker, if only to finish what is out.
            let has_work = !self.complete(t) && self.unblocked(t);
            let served = self
                .workers
                .values()
                .any(|w| w.task_type == t && w.conn.is_some());
            let state = &mut self.states[t];
            if !has_work || served {
                state.starved_since = None;
                continue;
            }
            let since = *state.starved_since.get_or_insert(now);
            if now.duration_since(since) > self.config.rejoin_timeout {
                return Err(DistributorError::NoWorkers {
                    what: format!(
                        "no worker of task type {} was left, and none joined",
                        self.types[t]
                    ),
                    waited: self.config.rejoin_timeout,
                    flag: "--rejoin-timeout",
                    acked,
                });
            }
        }
        Ok(())
    }

    /// Ends the run: `end` to every worker, then to the collector, and waits for its
    /// `finished` (at most `collector_timeout`; without it the report says so by its absence).
    fn finish(&mut self, inbox: &Receiver<Event>, ending: Ending) -> PipelineReport {
        let interrupted = matches!(ending, Ending::Interrupted);
        let failed = matches!(ending, Ending::Failed(_));
        let wall = self.started.map(|(at, _)| at.elapsed()).unwrap_or_default();
        self.ended = true;
        for w in self.workers.values_mut() {
            if let Some(conn) = &mut w.conn {
                Message::End {}.send(conn).ok();
            }
        }
        // Interrupted or failed with no collector: nobody to wait for.
        let patience = if (interrupted || failed) && self.collector.is_none() {
            Duration::ZERO
        } else {
            self.config.collector_timeout
        };
        let deadline = Instant::now() + patience;
        let mut counts = None;
        let mut told = false;
        while counts.is_none() && Instant::now() < deadline {
            if !told {
                if let Some(conn) = &mut self.collector {
                    told = Message::End {}.send(conn).is_ok();
                }
            }
            match inbox.recv_timeout(TICK) {
                Ok(Event::Finished {
                    results,
                    duplicates,
                }) => {
                    counts = Some(CollectorCounts {
                        results,
                        duplicates,
                    })
                }
                Ok(Event::CollectorUp(conn)) => {
                    self.collector = Some(conn);
                    told = false;
                }
                Ok(Event::CollectorDown(_)) => {
                    self.collector = None;
                    told = false;
                }
                Ok(other) => self.handle(other),
                Err(_) => {}
            }
        }
        if counts.is_none() && matches!(ending, Ending::Complete) {
            tracing::warn!(
                "distributor: every task is settled, but the collector at {} did not answer 'end' \
                 within {:?}: its counts are missing from the report",
                self.config.collector,
                self.config.collector_timeout
            );
        }
        let latency = std::mem::take(&mut self.latency).finish(&self.live);
        let mut report = self.report(wall, counts, interrupted);
        report.latency = (latency.count() > 0).then(|| latency.summary());
        if let Ending::Failed(why) = ending {
            report.error = Some(why);
        }
        report
    }

    fn report(
        &self,
        wall: Duration,
        collector: Option<CollectorCounts>,
        interrupted: bool,
    ) -> PipelineReport {
        let types: Vec<TypeReport> = (0..self.states.len())
            .map(|t| {
                let s = &self.states[t];
                TypeReport {
                    task_type: self.types[t].to_string(),
                    depends_on: s.deps.iter().map(|&d| self.types[d].to_string()).collect(),
                    issued: s.issued,
                    acked: s.acked,
                    failed: s.failed,
                    first_dispatch_unix_ns: s.first_dispatch_ns,
                    last_ack_unix_ns: s.last_ack_ns,
                    ideal_s: s.task.ideal(s.threads).map(|d| d.as_secs_f64()),
                }
            })
            .collect();
        // The critical path: a type ends its ideal after the last of its dependencies ends.
        let mut order: Vec<usize> = (0..types.len()).collect();
        order.sort_by_key(|&t| self.levels[t]);
        let mut ends: Vec<Option<f64>> = vec![None; types.len()];
        for t in order {
            let after = self.states[t]
                .deps
                .iter()
                .map(|&d| ends[d])
                .try_fold(0.0f64, |latest, end| end.map(|e| latest.max(e)));
            ends[t] = after.zip(types[t].ideal_s).map(|(a, own)| a + own);
        }
        let ideal_s = ends
            .iter()
            .try_fold(0.0f64, |latest, end| end.map(|e| latest.max(e)));
        let wall_s = wall.as_secs_f64();
        let issued: u64 = self.states.iter().map(|s| s.issued).sum();
        let acked = self.acked();
        PipelineReport {
            wall_s,
            ideal_s,
            overhead_pct: ideal_s.and_then(|ideal| overhead_pct(wall_s, ideal)),
            issued,
            acked,
            dispatches: self.dispatches,
            redeliveries: self.redeliveries,
            isolated: self.states.iter().map(|s| s.quarantine.isolated()).sum(),
            duplicates: self.duplicates,
            resumed: self.resumed,
            failed: self.failed.clone(),
            lost: issued.saturating_sub(acked + self.failed.len() as u64),
            bad_peers: self.bad_peers,
            collector,
            interrupted,
            error: None,
            latency: None,
            types,
            workers: self
                .workers
                .values()
                .map(|w| WorkerReport {
                    name: w.name.clone(),
                    task_type: self.types[w.task_type].to_string(),
                    threads: w.threads,
                    dispatched: w.dispatched,
                    acked: w.acked,
                    lost_connection: w.left_early,
                })
                .collect(),
        }
    }
}
