//! The embedded local cluster: N workers as threads of one process, joined by bounded channels.
//!
//! ```text
//!  source thread ──route──▶ [bounded queue per worker | one shared queue] ──▶ worker threads
//!                                                                      │ work + state
//!  calling thread (sink) ◀──────────── [bounded results queue] ◀───────┘
//! ```
//!
//! Every queue is bounded (`capacity`): when one is full its sender waits, so a fast source
//! meets backpressure instead of an unbounded queue, and nothing is dropped. The source and the
//! sink wait by polling with [`Backoff`], never by parking, so a worker never pays a thread
//! wake-up to take an item or hand over a result; workers stamp each result's time themselves. `Partitioned` routes
//! by key to the partition's owner (head-of-line blocking on the busiest owner is the real cost of
//! key affinity); `Balanced` lets whichever worker is free take the next item; `Sequential` is the
//! baseline loop with no threads or channels at all. Building the messages and judging the figures
//! are the caller's job.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use plumbline_core::clock::Sleeper;
use plumbline_core::{Message, RunClock, Shutdown};
use plumbline_measure::{Live, Recorder};

use crate::app::App;
use crate::backoff::Backoff;
use crate::item::ItemWorker;
use crate::partition::PartitionMap;
use crate::sink::{Delivery, Sink, SinkReport};
use crate::work::Work;

/// How items reach workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keyed: each partition's items go to its owner, which keeps the partition's state.
    Partitioned,
    /// Load-balanced tasks: no key affinity, a free worker takes the next item.
    Balanced,
    /// No workers: the calling thread loops over the items (seed 001's baseline).
    Sequential,
}

impl FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "partitioned" => Ok(Step::Partitioned),
            "balanced" => Ok(Step::Balanced),
            "sequential" => Ok(Step::Sequential),
            _ => Err(format!(
                "'{s}' is not a step: use partitioned, balanced or sequential"
            )),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Partitioned => "partitioned",
            Step::Balanced => "balanced",
            Step::Sequential => "sequential",
        })
    }
}

/// The results queue is this many times an input queue, so the sink's longest nap (1 ms) does
/// not fill it even at 2 M results/s and stall the workers.
pub const RESULTS_PER_SLOT: usize = 16;

/// A validated cluster shape.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Worker threads (1 for `Sequential`).
    pub workers: usize,
    pub step: Step,
    pub app: App,
    pub partitions: u32,
    pub work: Work,
    pub delay: Duration,
    /// Capacity of each input queue; the results queue holds [`RESULTS_PER_SLOT`] times as many.
    pub capacity: usize,
}

/// What one run of the cluster did.
#[derive(Debug)]
pub struct RunOutcome {
    /// From the run clock's start to the last result a worker emitted.
    pub wall: Duration,
    /// Messages the source handed to the cluster.
    pub sent: u64,
    pub sink: SinkReport,
    /// Actual cost of each item's work, all workers merged.
    pub work: Recorder,
    /// Items a worker could not apply (malformed payloads), and the first reason.
    pub rejected: u64,
    pub first_rejection: Option<String>,
    pub interrupted: bool,
}

/// What a worker thread hands back when its queue closes.
struct WorkerReport {
    work: Recorder,
    rejected: u64,
    first_rejection: Option<String>,
}

impl ClusterConfig {
    /// Runs `messages` through the cluster and waits for every result.
    ///
    /// Each message is held back until its `intended_ns` (0: at once). `live` follows the run
    /// for watchers: items in as the source queues them, items out as results land. Setting `shutdown` stops
    /// the source; queued items still finish.
    pub fn run<I>(
        &self,
        messages: I,
        shutdown: &Shutdown,
        live: &Live,
    ) -> Result<RunOutcome, ClusterError>
    where
        I: Iterator<Item = Message> + Send,
    {
        match self.step {
            Step::Sequential => Ok(self.run_sequential(messages, shutdown, live)),
            Step::Partitioned | Step::Balanced => self.run_threads(messages, shutdown, live),
        }
    }

    fn run_sequential<I: Iterator<Item = Message>>(
        &self,
        messages: I,
        shutdown: &Shutdown,
        live: &Live,
    ) -> RunOutcome {
        let mut sink = Sink::new(1);
        let clock = RunClock::start();
        let mut worker = WorkerLoop::new(self, 0);
        let mut pacer = Pacer::new(clock);
        let mut sent = 0;
        for message in messages.take_while(|_| !shutdown.requested()) {
            pacer.wait_for(&message);
            sent += 1;
            live.items_in.store(sent, Ordering::Relaxed);
            if let Some(delivery) = worker.handle(&message, &clock) {
                sink.deliver(delivery, live);
            }
        }
        let report = worker.finish();
        let sink = sink.finish(live);
        RunOutcome {
            wall: wall(&sink, &clock),
            sent,
            sink,
            work: report.work,
            rejected: report.rejected,
            first_rejection: report.first_rejection,
            interrupted: shutdown.requested(),
        }
    }

    fn run_threads<I>(
        &self,
        messages: I,
        shutdown: &Shutdown,
        live: &Live,
    ) -> Result<RunOutcome, ClusterError>
    where
        I: Iterator<Item = Message> + Send,
    {
        let map = PartitionMap::round_robin(self.partitions, self.workers);
        let mut sink = Sink::new(self.workers);
        std::thread::scope(|scope| {
            let (results_tx, results_rx) =
                bounded::<Delivery>(self.capacity.saturating_mul(RESULTS_PER_SLOT));
            // Partitioned: one queue per worker. Balanced: one queue every worker pulls from.
            // If a spawn fails, returning drops the queues' senders (and the start line's), so
            // the threads already started see them close and end before the scope joins them.
            let queues: Vec<(Sender<Message>, Receiver<Message>)> = match self.step {
                Step::Partitioned => (0..self.workers).map(|_| bounded(self.capacity)).collect(),
                _ => vec![bounded(self.capacity)],
            };
            // The workers and the source.
            let line = StartLine::new(self.workers + 1);
            let mut workers = Vec::with_capacity(self.workers);
            for index in 0..self.workers {
                let inbox = queues[index % queues.len()].1.clone();
                let results = results_tx.clone();
                let line = line.clone();
                let handle = spawn(scope, format!("worker-{index}"), move || {
                    let mut worker = WorkerLoop::new(self, index);
                    let Some(clock) = line.ready() else {
                        return worker.finish();
                    };
                    for message in inbox {
                        if let Some(delivery) = worker.handle(&message, &clock) {
                            if results.send(delivery).is_err() {
                                break;
                            }
                        }
                    }
                    worker.finish()
                })?;
                workers.push(handle);
            }
            drop(results_tx);
            let senders: Vec<Sender<Message>> = queues.into_iter().map(|(tx, _)| tx).collect();
            let source_line = line.clone();
            let source = spawn(scope, "source".into(), move || {
                let mut sent = 0u64;
                let Some(clock) = source_line.ready() else {
                    return sent;
                };
                let mut backoff = Backoff::new();
                let mut pacer = Pacer::new(clock);
                // While a queue holds no more items than it has workers, one of them may be
                // waiting, just woken by this send. On fewer cores than threads the source
                // then yields its core, so that worker starts now and not after the source's
                // time slice: ten workers of a batch on two cores started up to 2 ms late,
                // 0.3 % of a 1 s run. Only for slow items: with short ones a yield per item
                // forces a context switch per item (2 workers at 0 ms: 5x slower).
                let pullers = self.workers / senders.len();
                let yield_to_woken = self.delay >= YIELD_FOR;
                'items: for message in messages.take_while(|_| !shutdown.requested()) {
                    pacer.wait_for(&message);
                    let queue = &senders[map.owner_of_key(message.key) % senders.len()];
                    let mut message = message;
                    loop {
                        match queue.try_send(message) {
                            Ok(()) => break,
                            Err(TrySendError::Full(back)) => {
                                message = back;
                                backoff.wait();
                            }
                            Err(TrySendError::Disconnected(_)) => break 'items,
                        }
                    }
                    backoff.reset();
                    if yield_to_woken && queue.len() <= pullers {
                        std::thread::yield_now();
                    }
                    sent += 1;
                    live.items_in.store(sent, Ordering::Relaxed);
                }
                sent
            })?;
            let clock = line.start();
            let mut backoff = Backoff::new();
            loop {
                match results_rx.try_recv() {
                    Ok(delivery) => {
                        sink.deliver(delivery, live);
                        backoff.reset();
                    }
                    Err(TryRecvError::Empty) => backoff.wait(),
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            let sent = source.join().expect("the source does not panic");
            let mut work = Recorder::new();
            let mut rejected = 0;
            let mut first_rejection = None;
            for handle in workers {
                let report = handle.join().expect("workers do not panic");
                work.merge(&report.work);
                rejected += report.rejected;
                first_rejection = first_rejection.or(report.first_rejection);
            }
            let sink = sink.finish(live);
            Ok(RunOutcome {
                wall: wall(&sink, &clock),
                sent,
                sink,
                work,
                rejected,
                first_rejection,
                interrupted: shutdown.requested(),
            })
        })
    }
}

/// Why a cluster could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("could not start thread {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
}

fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: String,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Result<std::thread::ScopedJoinHandle<'scope, T>, ClusterError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn_scoped(scope, f)
        .map_err(|source| ClusterError::Spawn { name, source })
}

/// A run ends with the last result a worker emitted (the in-process sink is a measuring device,
/// not part of the cluster, so its hop is not charged); without any result, now.
fn wall(sink: &SinkReport, clock: &RunClock) -> Duration {
    if sink.delivered > 0 {
        Duration::from_nanos(sink.last_ns)
    } else {
        clock.origin().elapsed()
    }
}

/// Items at least this slow make the source yield to a worker it may have woken.
const YIELD_FOR: Duration = Duration::from_millis(1);

/// Where a run's threads line up before its clock starts: thread start-up (0.1–0.4 ms each on
/// this VM, 4 ms for ten workers) is set-up, as a process cluster's formation is, not plumbing
/// charged to the items. Every party but the starter calls [`StartLine::ready`] once it is set
/// up; the starter's [`StartLine::start`] waits for them all, then starts the clock and hands
/// it out. If the starter is gone (a spawn failed), `ready` returns `None`.
#[derive(Clone)]
struct StartLine {
    ready: (Sender<()>, Receiver<()>),
    go: (Sender<RunClock>, Receiver<RunClock>),
    /// Parties that call `ready`.
    waiters: usize,
}

impl StartLine {
    fn new(waiters: usize) -> Self {
        Self {
            ready: bounded(waiters),
            go: bounded(waiters),
            waiters,
        }
    }

    fn ready(self) -> Option<RunClock> {
        let Self { ready, go, .. } = self;
        ready.0.send(()).ok()?;
        drop(ready);
        let (tx, rx) = go;
        drop(tx);
        rx.recv().ok()
    }

    fn start(self) -> RunClock {
        let Self { ready, go, waiters } = self;
        drop(ready.0);
        for _ in 0..waiters {
            if ready.1.recv().is_err() {
                break;
            }
        }
        let clock = RunClock::start();
        for _ in 0..waiters {
            let _ = go.0.send(clock);
        }
        clock
    }
}

/// Holds each message back until its intended send time (a paced run; a batch is all due at 0).
struct Pacer {
    clock: RunClock,
    sleeper: Sleeper,
}

impl Pacer {
    fn new(clock: RunClock) -> Self {
        Self {
            clock,
            sleeper: Sleeper::new(),
        }
    }

    fn wait_for(&mut self, message: &Message) {
        if message.intended_ns > 0 {
            self.sleeper.sleep_until(self.clock.at(message.intended_ns));
        }
    }
}

/// One worker thread's loop body: the item step, then a stamped delivery.
struct WorkerLoop {
    index: usize,
    item: ItemWorker,
}

impl WorkerLoop {
    fn new(config: &ClusterConfig, index: usize) -> Self {
        let app = (config.step != Step::Balanced).then_some(config.app);
        Self {
            index,
            item: ItemWorker::new(app, config.partitions, config.work, config.delay),
        }
    }

    /// Does one item's work and returns its result stamped on the run's `clock`, or `None` if
    /// the item was rejected.
    fn handle(&mut self, message: &Message, clock: &RunClock) -> Option<Delivery> {
        let output = self.item.handle(message)?;
        Some(Delivery {
            seq: message.seq,
            intended_ns: message.intended_ns,
            done_ns: clock.now_ns(),
            worker: self.index,
            output,
        })
    }

    fn finish(self) -> WorkerReport {
        WorkerReport {
            work: self.item.work,
            rejected: self.item.rejected,
            first_rejection: self.item.first_rejection,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_load::{Generator, KeyDist, Workload};

    fn config(step: Step, workers: usize, app: App, partitions: u32) -> ClusterConfig {
        ClusterConfig {
            workers,
            step,
            app,
            partitions,
            work: Work::Sleep,
            delay: Duration::ZERO,
            capacity: 4,
        }
    }

    fn votes(letters: &str, count: u64) -> Generator {
        Generator::new(
            Workload::votes(letters).unwrap(),
            KeyDist::Uniform,
            0,
            count,
        )
        .unwrap()
    }

    #[test]
    fn partitioned_votes_end_with_every_letter_at_three() {
        let live = Live::new();
        for step in [Step::Partitioned, Step::Sequential] {
            let cfg = config(
                step,
                if step == Step::Sequential { 1 } else { 2 },
                App::Votes,
                26,
            );
            let outcome = cfg
                .run(
                    votes("abcdefghijklmnopqrstuvwxyz", 52),
                    &Shutdown::new(),
                    &live,
                )
                .unwrap();
            assert_eq!(outcome.sent, 52);
            assert_eq!(outcome.sink.lost(52), 0);
            assert_eq!(outcome.sink.duplicates(), 0);
            assert_eq!(outcome.sink.final_state.len(), 26);
            assert!(outcome.sink.final_state.values().all(|&total| total == 3));
        }
    }

    #[test]
    fn partitioned_state_lives_on_the_owner() {
        let live = Live::new();
        let cfg = config(Step::Partitioned, 2, App::Votes, 26);
        let outcome = cfg.run(votes("a", 52), &Shutdown::new(), &live).unwrap();
        assert_eq!(outcome.sink.per_worker, vec![52, 0]);
        assert_eq!(outcome.sink.final_state[&u32::from(b'a')], 26 + 2 * 26);
    }

    #[test]
    fn balanced_tasks_reach_every_worker_through_tiny_queues() {
        let live = Live::new();
        let mut cfg = config(Step::Balanced, 3, App::Count, 60);
        cfg.delay = Duration::from_micros(200);
        let workload = Workload::Nonces {
            size: 64,
            partitions: 60,
        };
        let messages = Generator::new(workload, KeyDist::Hot(1.0), 1, 300).unwrap();
        let outcome = cfg.run(messages, &Shutdown::new(), &live).unwrap();
        assert_eq!(outcome.sink.delivered, 300);
        assert_eq!(outcome.sink.per_worker.iter().sum::<u64>(), 300);
        assert!(
            outcome.sink.per_worker.iter().all(|&n| n > 0),
            "{:?}",
            outcome.sink.per_worker
        );
        assert_eq!(outcome.work.count(), 300);
    }

    #[test]
    fn shutdown_stops_the_source_and_loses_nothing_accepted() {
        let live = Live::new();
        let shutdown = Shutdown::new();
        let mut cfg = config(Step::Balanced, 2, App::Count, 60);
        cfg.delay = Duration::from_millis(1);
        // Ctrl-C arrives while the source is on its 20th item, with items queued and in work.
        let stop = shutdown.clone();
        let messages = votes("ab", 1000).inspect(move |m| {
            if m.seq == 20 {
                stop.request();
            }
        });
        let outcome = cfg.run(messages, &shutdown, &live).unwrap();
        assert!(outcome.interrupted);
        assert!((20..1000).contains(&outcome.sent), "sent {}", outcome.sent);
        assert_eq!(
            outcome.sink.delivered, outcome.sent,
            "every accepted item finished"
        );
        assert_eq!(outcome.sink.lost(outcome.sent), 0);
    }

    #[test]
    fn paced_messages_wait_for_their_intended_time() {
        let live = Live::new();
        let cfg = config(Step::Partitioned, 2, App::Votes, 26);
        let paced = votes("ab", 10).map(|mut m| {
            m.intended_ns = m.seq * 5_000_000;
            m
        });
        let outcome = cfg.run(paced, &Shutdown::new(), &live).unwrap();
        assert!(
            outcome.wall >= Duration::from_millis(45),
            "{:?}",
            outcome.wall
        );
        // Latency counts from each item's own due time, so it stays small.
        assert!(outcome.sink.latency.summary().p50 < 0.02);
    }

    #[test]
    fn malformed_payloads_are_counted_not_fatal() {
        let live = Live::new();
        let cfg = config(Step::Partitioned, 2, App::Votes, 26);
        let bad = (0..4).map(|seq| Message {
            seq,
            key: 0,
            intended_ns: 0,
            payload: bytes::Bytes::from_static(b"x"),
        });
        let outcome = cfg.run(bad, &Shutdown::new(), &live).unwrap();
        assert_eq!(outcome.rejected, 4);
        assert_eq!(outcome.sink.lost(4), 4);
        assert!(outcome.first_rejection.unwrap().contains("got 1"));
    }
}
