//! Pipeline workers: ask the distributor for tasks, execute them, send results to the collector
//! (seed 001's `SingleThreadedWorker` and `MultiThreadedWorker`).
//!
//! A worker connects to its task type's distributor endpoint and says hello with its credits:
//! its threads plus `prefetch`, so the next task is already waiting when one finishes. Each
//! finished task's result goes to an [`Outbox`] thread, which sends it to the collector and then
//! `ready` to the distributor: credit comes back only once the result is out, so a worker whose
//! collector is down stops taking tasks when its credits are spent. The outbox polls its queue
//! with [`Backoff`] naps instead of being woken: handing it a result is then a lock-free push,
//! where writing the result inline on the task's thread measured ~110 µs per task (a loopback
//! write that wakes the collector's reader), 1.5 % overhead on 10 ms tasks. Even that push,
//! and building the result, cost ~12 µs straight after a 10 ms sleep (a cold core), so a result
//! is posted while the next task runs, inside its wait ([`SingleThreadedWorker::
//! handle_execution_while`]), or at once when no task waits. The run's end is the
//! distributor's `end`. What a task *does* is the caller's [`SingleThreadedWorker`] or
//! [`MultiThreadedWorker`]; plumbline's own (sleep/spin for the descriptor's workload) lives in
//! the binary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use plumbline_core::backoff::Backoff;
use plumbline_core::header::unix_now_ns;
use plumbline_core::Shutdown;
use plumbline_transport::endpoint::{Conn, Endpoint, EndpointError};
use serde_json::Value;

use crate::task::TaskType;
use crate::wire::{self, Message, MessageReader, Role, WireError};

/// One task as the worker receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub id: u64,
    pub task_type: String,
    pub attempt: u32,
    pub data: Value,
}

/// A worker that executes one task at a time.
pub trait SingleThreadedWorker {
    /// Executes one task; what it returns goes to the collector as the result's `data`.
    fn handle_execution(&mut self, task: &Assignment) -> Value;

    /// [`Self::handle_execution`], given `meanwhile` (the previous task's result, on its way
    /// out) to call exactly once while this task waits, where it waits: a task that sleeps or
    /// does I/O can overlap it. By default it runs first.
    fn handle_execution_while(&mut self, task: &Assignment, meanwhile: &mut dyn FnMut()) -> Value {
        meanwhile();
        self.handle_execution(task)
    }
}

/// A worker whose main loop hands tasks to `n_threads` threads.
pub trait MultiThreadedWorker: Send + Sync + 'static {
    fn n_threads(&self) -> usize;

    /// Runs on the main loop for each task as it arrives; returns what the thread gets.
    fn handle_execution(&self, task: &Assignment) -> Value {
        task.data.clone()
    }

    /// Executes a task on thread `index` (0-based); the result's `data` for the collector.
    fn handle_thread_execution(&self, data: Value, index: usize) -> Value;

    /// [`Self::handle_thread_execution`], given `meanwhile` to call exactly once while the task
    /// waits ([`SingleThreadedWorker::handle_execution_while`]). By default it runs first.
    fn handle_thread_execution_while(
        &self,
        data: Value,
        index: usize,
        meanwhile: &mut dyn FnMut(),
    ) -> Value {
        meanwhile();
        self.handle_thread_execution(data, index)
    }
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub name: String,
    pub task_type: TaskType,
    /// The distributor's endpoint for this task type.
    pub distributor: Endpoint,
    /// The collector's result endpoint.
    pub collector: Endpoint,
    /// Tasks held beyond one per thread, so the next is already here when one finishes;
    /// `None`: one per thread. With 10 threads, a prefetch of 1 left threads waiting for the
    /// credit's round trip when several finished at once: 2.3 % overhead on 1000 × 10 ms over
    /// 2 × 10 threads, against 0.7 % with 10.
    pub prefetch: Option<u32>,
    /// How long to keep trying to reach the distributor or the collector.
    pub connect_timeout: Duration,
    /// After losing the distributor mid-run, how long to keep reconnecting (with backoff)
    /// before giving up; zero gives up at once.
    pub reconnect_timeout: Duration,
    /// The run's shared secret, said in both hellos.
    pub token: Option<String>,
}

impl WorkerConfig {
    pub fn new(
        name: &str,
        task_type: TaskType,
        distributor: Endpoint,
        collector: Endpoint,
    ) -> Self {
        Self {
            name: name.to_string(),
            task_type,
            distributor,
            collector,
            prefetch: None,
            connect_timeout: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(10),
            token: None,
        }
    }

    /// Tasks this worker may hold: its threads plus the prefetch.
    pub fn credits(&self, threads: u32) -> u32 {
        threads.saturating_add(self.prefetch.unwrap_or(threads))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("the distributor refused this worker: {0}")]
    Refused(String),
    #[error("the distributor at {endpoint} broke the protocol: {reason}")]
    Protocol { endpoint: Endpoint, reason: String },
    #[error("lost the distributor at {endpoint} before the end of the run: {reason}")]
    DistributorLost { endpoint: Endpoint, reason: String },
    #[error("could not deliver a result to the collector at {endpoint} within {waited:?}: {last}")]
    CollectorUnreachable {
        endpoint: Endpoint,
        waited: Duration,
        last: String,
    },
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
    #[error("worker thread {0} panicked")]
    Panicked(usize),
    #[error("the thread sending results panicked")]
    OutboxPanicked,
}

/// What a worker did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerSummary {
    pub executions: u64,
    /// Ctrl-C ended it before the distributor's `end`.
    pub interrupted: bool,
}

/// Runs a single-threaded worker until the distributor ends the run. Tasks are read on a
/// thread of their own, so the next one is decoded while this one runs: read after each task,
/// it cost ~50 µs here (the first syscall after a 10 ms sleep), 0.5 % of a 10 ms task.
pub fn run_single(
    config: &WorkerConfig,
    worker: &mut impl SingleThreadedWorker,
    shutdown: &Shutdown,
) -> Result<WorkerSummary, WorkerError> {
    let mut link = Link::open(config, 1, shutdown)?;
    let outbox = Outbox::start(config, &link, config.credits(1))?;
    // Capacity = credits: the distributor never has more out with us, so sends never block.
    let (tasks, queue) = crossbeam_channel::bounded::<(Assignment, ())>(config.credits(1) as usize);
    let executions = AtomicU64::new(0);
    let received = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            link.each_task(config, |task| {
                tasks.send((task, ())).ok();
            })
        });
        execute_queue(
            &queue,
            &outbox,
            config,
            &executions,
            |task, (), meanwhile| worker.handle_execution_while(task, meanwhile),
        );
        reader.join().map_err(|_| WorkerError::Panicked(0))?
    });
    outbox.finish()?;
    Ok(WorkerSummary {
        executions: executions.into_inner(),
        interrupted: received?,
    })
}

/// Runs a multi-threaded worker until the distributor ends the run.
pub fn run_multi<W: MultiThreadedWorker>(
    config: &WorkerConfig,
    worker: Arc<W>,
    shutdown: &Shutdown,
) -> Result<WorkerSummary, WorkerError> {
    let threads = worker.n_threads().max(1);
    let mut link = Link::open(config, threads as u32, shutdown)?;
    let outbox = Arc::new(Outbox::start(
        config,
        &link,
        config.credits(threads as u32),
    )?);
    // Capacity = credits: the distributor never has more out with us, so sends never block.
    let (tasks, queue) =
        crossbeam_channel::bounded::<(Assignment, Value)>(config.credits(threads as u32) as usize);
    let executions = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for index in 0..threads {
        let (queue, worker, outbox) = (queue.clone(), Arc::clone(&worker), Arc::clone(&outbox));
        let (executions, config) = (Arc::clone(&executions), config.clone());
        let handle = std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                execute_queue(
                    &queue,
                    &outbox,
                    &config,
                    &executions,
                    |_, data, meanwhile| {
                        worker.handle_thread_execution_while(data, index, meanwhile)
                    },
                );
            })
            .map_err(WorkerError::Thread)?;
        handles.push(handle);
    }
    drop(queue);
    let received = link.each_task(config, |task| {
        let data = worker.handle_execution(&task);
        tasks.send((task, data)).ok();
    });
    drop(tasks);
    for (index, handle) in handles.into_iter().enumerate() {
        if handle.join().is_err() {
            return Err(WorkerError::Panicked(index));
        }
    }
    match Arc::into_inner(outbox) {
        Some(outbox) => outbox.finish()?,
        None => return Err(WorkerError::OutboxPanicked),
    }
    Ok(WorkerSummary {
        executions: executions.load(Ordering::Relaxed),
        interrupted: received?,
    })
}

/// A finished task whose result is not posted yet.
struct Finished {
    task: Assignment,
    data: Value,
    started_ns: u64,
    finished_ns: u64,
}

/// One executing thread: runs each queued task with `execute` and posts its result while the
/// next task runs (its `meanwhile`, inside that task's wait where it has one), or at once when
/// no task is waiting, so a result never waits for work that is not there.
fn execute_queue<T>(
    queue: &crossbeam_channel::Receiver<(Assignment, T)>,
    outbox: &Outbox,
    config: &WorkerConfig,
    executions: &AtomicU64,
    mut execute: impl FnMut(&Assignment, T, &mut dyn FnMut()) -> Value,
) {
    // `urgent`: no task waits, so nothing would post this result inside a wait; the outbox is
    // woken from its nap rather than let it leave up to a nap late.
    let post = |held: &mut Option<Finished>, urgent: bool| {
        if let Some(f) = held.take() {
            outbox.post(result(config, f.task, f.data, f.started_ns, f.finished_ns));
            if urgent {
                outbox.wake();
            }
        }
    };
    let mut held = None;
    loop {
        let (task, input) = match queue.try_recv() {
            Ok(next) => next,
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                post(&mut held, true);
                match queue.recv() {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
        };
        let started_ns = unix_now_ns();
        let data = execute(&task, input, &mut || post(&mut held, false));
        let finished_ns = unix_now_ns();
        executions.fetch_add(1, Ordering::Relaxed);
        // Posted by the closure already, unless `execute` broke its contract.
        post(&mut held, false);
        held = Some(Finished {
            task,
            data,
            started_ns,
            finished_ns,
        });
    }
    post(&mut held, true);
}

/// Sends finished tasks' results to the collector, then their credit to the distributor, on
/// its own thread. Its queue holds at most the worker's credits (the distributor sends no more),
/// so [`Outbox::post`] never blocks.
struct Outbox {
    queue: crossbeam_channel::Sender<Message>,
    thread: JoinHandle<Result<(), WorkerError>>,
}

impl Outbox {
    fn start(config: &WorkerConfig, link: &Link, credits: u32) -> Result<Self, WorkerError> {
        let mut results = ResultLink::open(config)?;
        let current = link.current.clone();
        let (queue, posted) = crossbeam_channel::bounded::<Message>(credits as usize);
        let thread = std::thread::Builder::new()
            .name("worker-outbox".into())
            .spawn(move || {
                let mut backoff = Backoff::new();
                let mut frames = Vec::new();
                loop {
                    let mut count = 0u32;
                    frames.clear();
                    let mut closed = false;
                    loop {
                        match posted.try_recv() {
                            Ok(message) => {
                                if let Err(e) = message.encode_into(&mut frames) {
                                    // Too big for a frame: say so instead, so the task is
                                    // settled (as an error) rather than redelivered for ever.
                                    tracing::warn!("worker: a result cannot be sent ({e}); sending an error instead");
                                    too_big(message, &e).encode_into(&mut frames).ok();
                                }
                                count += 1;
                            }
                            Err(crossbeam_channel::TryRecvError::Empty) => break,
                            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    if count > 0 {
                        backoff.reset();
                        if let Err(e) = results.deliver(&frames) {
                            // Wakes the reading loop, which then ends.
                            current.close_for_good();
                            return Err(e);
                        }
                        // A failed write shows up as a lost distributor on the reading side
                        // (which reconnects; credit for results sent meanwhile is not owed
                        // to the new connection, whose hello grants its own).
                        current.send(&Message::Ready { credits: count });
                    } else if closed {
                        return Ok(());
                    } else {
                        backoff.wait_unparkable();
                    }
                }
            })
            .map_err(WorkerError::Thread)?;
        Ok(Self { queue, thread })
    }

    fn post(&self, result: Message) {
        self.queue.send(result).ok();
    }

    /// Cuts the outbox's nap short (a result that must leave now was posted).
    fn wake(&self) {
        self.thread.thread().unpark();
    }

    /// Sends what is queued, then stops; the first delivery error, if any.
    fn finish(self) -> Result<(), WorkerError> {
        drop(self.queue);
        self.thread
            .join()
            .map_err(|_| WorkerError::OutboxPanicked)?
    }
}

/// The error result that replaces one that cannot be encoded.
fn too_big(mut message: Message, e: &WireError) -> Message {
    if let Message::Result { data, .. } = &mut message {
        *data = serde_json::json!({ "error": e.to_string() });
    }
    message
}

fn result(
    config: &WorkerConfig,
    task: Assignment,
    data: Value,
    started_ns: u64,
    finished_ns: u64,
) -> Message {
    Message::Result {
        id: task.id,
        task_type: task.task_type,
        attempt: task.attempt,
        worker: config.name.clone(),
        started_ns,
        finished_ns,
        data,
    }
}

/// The distributor connection in use, replaced when the link reconnects: the outbox writes
/// credit on it, and Ctrl-C or a failed outbox closes it for good (no reconnecting then).
#[derive(Clone)]
struct Current(Arc<(Mutex<Conn>, AtomicBool)>);

impl Current {
    fn new(conn: Conn) -> Self {
        Self(Arc::new((Mutex::new(conn), AtomicBool::new(false))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.0 .0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, message: &Message) {
        message.send(&mut *self.lock()).ok();
    }

    fn replace(&self, conn: Conn) {
        *self.lock() = conn;
    }

    fn close_for_good(&self) {
        self.0 .1.store(true, Ordering::Release);
        self.lock().close();
    }

    fn closed_for_good(&self) -> bool {
        self.0 .1.load(Ordering::Acquire)
    }
}

/// First and longest wait between reconnection attempts.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// The connection to the distributor: tasks in, credit out.
struct Link {
    reader: MessageReader<Conn>,
    current: Current,
    hello: Message,
    shutdown: Shutdown,
}

impl Link {
    fn open(config: &WorkerConfig, threads: u32, shutdown: &Shutdown) -> Result<Self, WorkerError> {
        let credits = config.credits(threads);
        let hello = wire::worker_hello(
            &config.name,
            config.task_type.as_str(),
            threads,
            credits,
            config.token.as_deref(),
        );
        let (reader, writer) = Self::greet(config, &hello, config.connect_timeout)?;
        let current = Current::new(writer);
        // Ctrl-C: close the socket under the blocked read, which then ends the loop.
        let (watched, watch) = (current.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("worker-ctrl-c".into())
            .spawn(move || {
                while !watch.requested() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                watched.close_for_good();
            })
            .map_err(WorkerError::Thread)?;
        Ok(Self {
            reader,
            current,
            hello,
            shutdown: shutdown.clone(),
        })
    }

    /// Connects and says hello: the reader, and a handle to write on.
    fn greet(
        config: &WorkerConfig,
        hello: &Message,
        timeout: Duration,
    ) -> Result<(MessageReader<Conn>, Conn), WorkerError> {
        let lost = |e: WireError| WorkerError::DistributorLost {
            endpoint: config.distributor.clone(),
            reason: e.to_string(),
        };
        let mut conn = config.distributor.connect(timeout)?;
        hello.send(&mut conn).map_err(lost)?;
        let writer = conn.try_clone().map_err(|e| lost(e.into()))?;
        Ok((MessageReader::new(conn), writer))
    }

    /// The distributor went away mid-run (`why`): connects again with exponential backoff for
    /// up to the reconnect timeout. Tasks already here still run and their results still go
    /// to the collector; the distributor took their leases back when the connection broke.
    fn reconnect(&mut self, config: &WorkerConfig, why: &WireError) -> Result<(), WorkerError> {
        let deadline = Instant::now() + config.reconnect_timeout;
        let mut wait = RECONNECT_FIRST;
        let mut last = why.to_string();
        tracing::warn!(
            "worker {}: lost the distributor at {} ({last}); reconnecting for up to {:?}",
            config.name,
            config.distributor,
            config.reconnect_timeout
        );
        while Instant::now() < deadline && !self.current.closed_for_good() {
            let left = deadline.saturating_duration_since(Instant::now());
            match Self::greet(config, &self.hello, left.min(RECONNECT_MAX)) {
                Ok((reader, writer)) => {
                    tracing::info!(
                        "worker {}: reconnected to {}",
                        config.name,
                        config.distributor
                    );
                    self.reader = reader;
                    self.current.replace(writer);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
            wait = (wait * 2).min(RECONNECT_MAX);
        }
        Err(WorkerError::DistributorLost {
            endpoint: config.distributor.clone(),
            reason: format!(
                "{why}; reconnecting for {:?} (--reconnect-timeout) failed: {last}",
                config.reconnect_timeout
            ),
        })
    }

    /// Calls `each` for every task until `end` (`Ok(false)`) or Ctrl-C (`Ok(true)`).
    fn each_task(
        &mut self,
        config: &WorkerConfig,
        mut each: impl FnMut(Assignment),
    ) -> Result<bool, WorkerError> {
        let protocol = |reason: String| WorkerError::Protocol {
            endpoint: config.distributor.clone(),
            reason,
        };
        loop {
            match self.reader.recv() {
                Ok(Message::Task {
                    id,
                    task_type,
                    attempt,
                    data,
                }) => {
                    if task_type != config.task_type.as_str() {
                        return Err(protocol(format!(
                            "sent a task of type '{task_type}' to a worker of '{}'",
                            config.task_type
                        )));
                    }
                    each(Assignment {
                        id,
                        task_type,
                        attempt,
                        data,
                    });
                }
                Ok(Message::End {}) => return Ok(false),
                Ok(Message::Refused { reason }) => return Err(WorkerError::Refused(reason)),
                Ok(other) => return Err(protocol(format!("sent '{}'", other.kind()))),
                Err(_) if self.shutdown.requested() => return Ok(true),
                Err(e) if self.current.closed_for_good() || config.reconnect_timeout.is_zero() => {
                    return Err(WorkerError::DistributorLost {
                        endpoint: config.distributor.clone(),
                        reason: e.to_string(),
                    })
                }
                Err(e) => self.reconnect(config, &e)?,
            }
        }
    }
}

/// The connection to the collector; reconnects when it breaks.
struct ResultLink {
    endpoint: Endpoint,
    name: String,
    token: Option<String>,
    timeout: Duration,
    conn: Option<Conn>,
}

impl ResultLink {
    fn open(config: &WorkerConfig) -> Result<Self, WorkerError> {
        let mut link = Self {
            endpoint: config.collector.clone(),
            name: config.name.clone(),
            token: config.token.clone(),
            timeout: config.connect_timeout,
            conn: None,
        };
        link.conn = Some(link.connect(Instant::now() + link.timeout)?);
        Ok(link)
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, WorkerError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let unreachable = |last: String| WorkerError::CollectorUnreachable {
            endpoint: self.endpoint.clone(),
            waited: self.timeout,
            last,
        };
        let mut conn = self
            .endpoint
            .connect(left)
            .map_err(|e| unreachable(e.to_string()))?;
        wire::plain_hello(Role::Worker, &self.name, self.token.as_deref())
            .send(&mut conn)
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(conn)
    }

    /// Sends encoded results, reconnecting for up to the timeout if the collector went away.
    fn deliver(&mut self, frames: &[u8]) -> Result<(), WorkerError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut conn = match self.conn.take() {
                Some(conn) => conn,
                None => self.connect(deadline)?,
            };
            match std::io::Write::write_all(&mut conn, frames) {
                Ok(()) => {
                    self.conn = Some(conn);
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(WorkerError::CollectorUnreachable {
                        endpoint: self.endpoint.clone(),
                        waited: self.timeout,
                        last: e.to_string(),
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
