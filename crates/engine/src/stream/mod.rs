//! The stream (psbench, seed 004) engine: how a broker stream scales with bulk data, sent by
//! value ("default") or by reference through a store ("proxy").
//!
//! ```text
//!  generator ──(data | key+size)──▶ broker stream ──▶ dispatcher ──one task each──▶ compute workers
//!      │ proxy: put(key, data)                        (≤ 1 in flight per worker)    │ proxy: get, delete
//!      └──────────────────────────────▶ store ◀──────────────────────────────────────┘
//! ```
//!
//! One thread per part, each with its own broker or store connection; the compute workers
//! ([`ComputeWorkers`], `compute.rs`) are threads too, or child processes fed over pipes with
//! a store client each (`process.rs`), so bulk data by reference bypasses the dispatcher
//! either way. The generator emits the load's items on its one open-loop schedule (`Load::shape`), each with
//! the load's payload size of data seeded by the load's seed; a compute task resolves its data
//! (checking its size) and sleeps the task time. Latency runs from an item's intended
//! emission to its task's end. The broker and store are the user's (or the test's) servers;
//! which stream, store and prefix a run uses, and reporting, are the caller's.

mod compute;
mod process;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{BufMut, BytesMut};
use crossbeam_channel::{bounded, Receiver, Sender};
use plumbline_core::clock::Sleeper;
use plumbline_core::secret::Secret;
use plumbline_core::Shutdown;
use plumbline_load::Shape;
use plumbline_measure::report::secs;
use plumbline_measure::{LatencyFeed, Live, Recorder};
use plumbline_transport::broker::{
    connect_consumer, connect_producer, BrokerError, ClientOptions, Consumer, Delivery,
};
use plumbline_transport::config::TransportConfig;
use plumbline_transport::store::{open_store, Store};
use rand::{RngCore, SeedableRng};

use crate::{Engine, Load, RunFigures};
pub use compute::ComputeWorkers;
use compute::{ComputeWorker, Report, RunStart, Task, ThreadWorker};
pub use process::{serve as serve_compute, SUBCOMMAND as COMPUTE_SUBCOMMAND};

/// Bytes before the data in every stream message: seq (8), intended emission in ns since
/// the run's start (8), data size (8).
const HEAD: usize = 24;
/// The longest the generator waits without looking at the stop flags.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// How the data travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// In the stream message itself.
    Default,
    /// Put into the store; the stream carries its key.
    Proxy,
}

/// One experiment's stream: `workers` compute workers (run as `compute` says) behind a
/// dispatcher, on `config`, with `store` (proxy) and every key and group name under `prefix`.
#[derive(Clone, Debug)]
pub struct Stream {
    pub config: TransportConfig,
    pub store: Option<String>,
    pub method: Method,
    pub prefix: String,
    pub workers: usize,
    pub compute: ComputeWorkers,
    pub task_sleep: Duration,
    pub connect_timeout: Duration,
    pub password: Option<Secret>,
    pub tls_ca: Option<PathBuf>,
}

/// What a stream run measured beyond [`RunFigures`].
#[derive(Clone, Debug, Default)]
pub struct StreamFigures {
    /// Bytes of stream messages (data or key).
    pub broker_bytes: u64,
    /// Bytes put into the store (proxy).
    pub store_bytes: u64,
    /// Store keys under the prefix left after the run (must be 0).
    pub leaked_keys: u64,
    /// Why the run ended early, if it did.
    pub error: Option<String>,
    /// The wall-clock time (UNIX seconds) the clock started: just before the first item was
    /// due (psbench's `start_submit_tasks_timestamp`).
    pub started_unix_s: f64,
    /// The process id of each compute worker (threads: all this process's).
    pub pids: Vec<u32>,
}

impl Stream {
    /// The load psbench offers: one item per compute worker per task sleep (offered load equal
    /// to capacity); with no sleep, every item due at once.
    pub fn offered_rate(&self) -> Option<f64> {
        (self.task_sleep > Duration::ZERO)
            .then(|| self.workers as f64 / self.task_sleep.as_secs_f64())
    }

    /// What `load` takes with zero overhead: its last item's due time plus one task.
    pub fn ideal(&self, load: &Load) -> Duration {
        let last_due = load
            .shape()
            .schedule(0, 1)
            .offset(load.items.saturating_sub(1))
            .unwrap_or_default();
        last_due + self.task_sleep
    }

    /// Runs `load` through the stream: its figures, and the stream's own.
    pub fn experiment(
        &self,
        load: &Load,
        live: &Arc<Live>,
        stop: &Shutdown,
    ) -> Result<(RunFigures, StreamFigures)> {
        Experiment {
            stream: self,
            size: load.workload.payload_size(),
            seed: load.seed,
            items: load.items,
            live,
        }
        .run(&load.shape(), self.ideal(load), stop)
    }
}

impl Engine for Stream {
    fn workers(&self) -> usize {
        self.workers
    }

    fn describe(&self) -> String {
        format!(
            "{} compute {} on {}",
            self.workers,
            self.compute.noun(),
            self.config.kind()
        )
    }

    fn run(&self, load: &Load, live: &Arc<Live>, stop: &Shutdown) -> Result<RunFigures> {
        Ok(self.experiment(load, live, stop)?.0)
    }
}

/// What the parts of one run need.
struct Experiment<'a> {
    stream: &'a Stream,
    size: usize,
    seed: u64,
    items: u64,
    /// Watchers' view: items generated in, items done out, their latencies.
    live: &'a Live,
}

impl Experiment<'_> {
    fn options(&self, role: &str) -> ClientOptions {
        ClientOptions {
            connect_timeout: self.stream.connect_timeout,
            max_payload: self.size + HEAD + 64,
            group: format!("{}dispatch", self.stream.prefix),
            consumer: role.to_string(),
            // Generous: a stalled dispatcher is reported by the makespan, not by redelivery.
            redeliver_after: self.stream.task_sleep * 4 + Duration::from_secs(30),
            prefetch: 64,
            create: true,
            partitions: 1,
            password: self.stream.password.clone(),
            tls_ca: self.stream.tls_ca.clone(),
            ..ClientOptions::default()
        }
    }

    fn run(
        &self,
        shape: &Shape,
        ideal: Duration,
        shutdown: &Shutdown,
    ) -> Result<(RunFigures, StreamFigures)> {
        let workers = self.stream.workers;
        let config = &self.stream.config;
        // The dispatcher subscribes before anything is sent (pub/sub keeps nothing).
        let mut consumer = connect_consumer(config, &self.options("dispatcher"))
            .with_context(|| format!("the stream {config}"))?;
        let producer = connect_producer(config, &self.options("generator"))
            .with_context(|| format!("the stream {config}"))?;
        // Every connection is made and every compute worker is ready before the clock
        // starts, so none counts as plumbing and a failed one ends the run before any thread
        // waits for work.
        let computers = self.start_compute()?;
        let pids = computers.iter().map(|c| c.pid()).collect();
        let generator_store = self.open_store()?;
        let (task_tx, task_rx) = bounded::<Task>(0);
        let (done_tx, done_rx) = bounded::<Report>(workers);
        let clock = RunStart::now();
        let start = clock.instant;
        let started_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // Requested when the stream or a compute worker dies: the generator stops emitting.
        let dead = Shutdown::new();
        // Requested when the dispatcher gives up waiting: workers drop what is in flight.
        let abandon = Shutdown::new();
        let (generated, d) = std::thread::scope(|scope| {
            for computer in computers {
                let (rx, tx) = (task_rx.clone(), done_tx.clone());
                let (clock, abandon) = (&clock, &abandon);
                scope.spawn(move || computer.serve(rx, tx, clock, abandon));
            }
            drop((done_tx, task_rx));
            let dead = &dead;
            let generator = scope.spawn(move || {
                self.generate(producer, generator_store, shape, start, shutdown, dead)
            });
            let stops = Stops {
                shutdown,
                dead,
                abandon: &abandon,
            };
            let dispatched =
                self.dispatch(consumer.as_mut(), task_tx, &done_rx, ideal, start, stops);
            let generated = generator.join().expect("the generator does not panic");
            (generated, dispatched)
        });
        let generated = generated?;
        let wall = d.last_done.unwrap_or(start.elapsed());
        let leaked_keys = match self.open_store()? {
            Some(mut store) => store
                .count(&self.stream.prefix)
                .context("counting the store's keys after the run")?,
            None => 0,
        };
        let latency = d.latency.finish(self.live).summary();
        let completed = d.completed;
        let mut error = generated.error.or(d.error);
        if error.is_none() && completed < self.items {
            error = Some(format!("{} items never arrived", self.items - completed));
        }
        let figures = RunFigures {
            wall,
            sent: generated.sent,
            delivered: completed,
            lost: self.items - completed,
            duplicates: d.duplicates,
            latency,
            work: Recorder::new().summary(),
            per_worker: d.per_worker,
            final_state: None,
            rejected: 0,
            first_rejection: None,
            interrupted: shutdown.requested(),
            continuity: None,
        };
        let stream = StreamFigures {
            broker_bytes: generated.broker_bytes,
            store_bytes: generated.store_bytes,
            leaked_keys,
            error,
            started_unix_s,
            pids,
        };
        Ok((figures, stream))
    }

    /// The compute workers, started and ready: threads with a store connection each, or
    /// child processes that open their own.
    fn start_compute(&self) -> Result<Vec<Box<dyn ComputeWorker>>> {
        let sleep = self.stream.task_sleep;
        match &self.stream.compute {
            ComputeWorkers::Threads => (0..self.stream.workers)
                .map(|worker| {
                    let store = self.open_store()?;
                    Ok(Box::new(ThreadWorker {
                        worker,
                        store,
                        sleep,
                    }) as Box<dyn ComputeWorker>)
                })
                .collect(),
            ComputeWorkers::Processes { exe } => {
                let options = self.options("store");
                let setup = process::Setup {
                    store: self.stream.store.clone(),
                    password: options.password.map(|p| p.expose().to_string()),
                    tls_ca: options.tls_ca,
                    connect_timeout_ms: options.connect_timeout.as_millis() as u64,
                    max_payload: options.max_payload,
                    task_sleep_ns: sleep.as_nanos() as u64,
                };
                Ok(process::start(exe, self.stream.workers, &setup)?
                    .into_iter()
                    .map(|p| Box::new(p) as Box<dyn ComputeWorker>)
                    .collect())
            }
        }
    }

    fn open_store(&self) -> Result<Option<Box<dyn Store>>> {
        self.stream
            .store
            .as_deref()
            .map(|url| {
                open_store(url, &self.options("store")).with_context(|| format!("the store {url}"))
            })
            .transpose()
    }

    /// Emits every item at its deadline; in proxy mode the data goes to the store first.
    fn generate(
        &self,
        mut producer: Box<dyn plumbline_transport::broker::Producer>,
        mut store: Option<Box<dyn Store>>,
        shape: &Shape,
        start: Instant,
        shutdown: &Shutdown,
        dead: &Shutdown,
    ) -> Result<Generated> {
        let mut data = vec![0u8; self.size];
        rand::rngs::StdRng::seed_from_u64(self.seed).fill_bytes(&mut data);
        let mut sleeper = Sleeper::new();
        let mut out = Generated::default();
        let mut message = BytesMut::with_capacity(HEAD + self.size);
        let mut schedule = shape.schedule(0, 1);
        for seq in 0..self.items {
            let offset = schedule.offset(seq).unwrap_or_default();
            // Long waits in slices, so a Ctrl-C or a dead stream is seen within one.
            while !shutdown.requested() && !dead.requested() {
                let left = (start + offset).saturating_duration_since(Instant::now());
                if left <= STOP_CHECK {
                    break;
                }
                std::thread::sleep(STOP_CHECK);
            }
            if shutdown.requested() || dead.requested() {
                break;
            }
            sleeper.sleep_until(start + offset);
            message.clear();
            message.put_u64(seq);
            message.put_u64(offset.as_nanos() as u64);
            message.put_u64(self.size as u64);
            // Each item's data differs in its first bytes, as independent items would.
            data[..8.min(self.size)].copy_from_slice(&seq.to_be_bytes()[..8.min(self.size)]);
            match store.as_mut() {
                Some(store) => {
                    let key = format!("{}{seq}", self.stream.prefix);
                    store.put(&key, &data)?;
                    out.store_bytes += data.len() as u64;
                    message.put_slice(key.as_bytes());
                }
                None => message.put_slice(&data),
            }
            let sent = producer.send(0, &message).and_then(|()| producer.flush());
            if let Err(e) = sent {
                out.error = Some(e.to_string());
                break;
            }
            out.broker_bytes += message.len() as u64;
            out.sent += 1;
            self.live.items_in.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = producer.finish(Duration::from_secs(60)) {
            out.error.get_or_insert(e.to_string());
        }
        Ok(out)
    }

    /// Counts one finished item and queues its delivery for acknowledgement; a dead compute
    /// worker's error is the run's.
    fn report(&self, out: &mut Dispatched, r: Report, start: Instant, acks: &mut Vec<Delivery>) {
        let d = match r {
            Report::Done(d) => d,
            Report::Died(why) => {
                out.died = true;
                out.error.get_or_insert(why);
                return;
            }
        };
        out.completed += 1;
        if let Some(count) = out.per_worker.get_mut(d.worker) {
            *count += 1;
        }
        out.latency.record_ns(d.latency_ns);
        self.live.items_out.fetch_add(1, Ordering::Relaxed);
        out.last_done = Some(start.elapsed());
        if let Some(e) = d.error {
            out.error.get_or_insert(format!("item {}: {e}", d.seq));
        }
        acks.push(d.delivery);
    }

    /// Hands each arriving item to a free compute worker (one in flight each) and collects
    /// completions until every item is done, the stream or a compute worker fails, or the
    /// run times out.
    fn dispatch(
        &self,
        consumer: &mut dyn Consumer,
        tasks: Sender<Task>,
        done: &Receiver<Report>,
        ideal: Duration,
        start: Instant,
        stops: Stops<'_>,
    ) -> Dispatched {
        let shutdown = stops.shutdown;
        let mut out = Dispatched {
            per_worker: vec![0; self.stream.workers],
            ..Dispatched::default()
        };
        let n = self.items;
        let deadline = start + ideal * 3 + Duration::from_secs(30);
        let mut waiting: std::collections::VecDeque<Task> = Default::default();
        let mut seen = std::collections::HashSet::new();
        let mut acks = Vec::new();
        let mut stream_ok = true;
        while out.completed < n && Instant::now() < deadline && !shutdown.requested() {
            while let Ok(r) = done.try_recv() {
                self.report(&mut out, r, start, &mut acks);
            }
            // A compute worker died: the experiment ends, what is in flight elsewhere
            // finishes, the rest is lost (the error names the worker).
            if out.died {
                stops.dead.request();
                break;
            }
            out.latency.publish_if_due(self.live);
            if !acks.is_empty() {
                if let Err(e) = consumer.ack(&acks) {
                    out.error.get_or_insert(e.to_string());
                }
                acks.clear();
            }
            while let Some(task) = waiting.pop_front() {
                match tasks.try_send(task) {
                    Ok(()) => {}
                    Err(back) => {
                        waiting.push_front(back.into_inner());
                        break;
                    }
                }
            }
            // The stream died: nothing more will come, so the run ends once what it did
            // deliver is done, not at the timeout (the error names the loss).
            if !stream_ok && waiting.is_empty() && out.completed >= out.received {
                break;
            }
            if !stream_ok || out.received == n {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            match consumer.poll(16, Duration::from_millis(1)) {
                Ok(batch) => {
                    for delivery in batch {
                        match parse(&delivery.payload) {
                            Some((seq, intended_ns, size)) if seen.insert(seq) => {
                                out.received += 1;
                                waiting.push_back(Task {
                                    delivery,
                                    seq,
                                    intended_ns,
                                    size,
                                });
                            }
                            // Acknowledged at once, so an at-least-once stream does not
                            // hand them out again.
                            Some(_) => {
                                out.duplicates += 1;
                                acks.push(delivery);
                            }
                            None => {
                                out.error.get_or_insert(
                                    "a stream message without the plumbline stream header".into(),
                                );
                                acks.push(delivery);
                            }
                        }
                    }
                }
                Err(e) => {
                    stream_ok = false;
                    stops.dead.request();
                    out.error
                        .get_or_insert(stream_failure(&e, self.stream.method));
                }
            }
        }
        drop(tasks);
        let timed_out = out.completed < n && Instant::now() >= deadline;
        if timed_out {
            stops.abandon.request();
        }
        // Workers still busy finish; their completions count.
        for r in done.iter() {
            self.report(&mut out, r, start, &mut acks);
        }
        let _ = consumer.ack(&acks);
        if timed_out {
            out.error.get_or_insert(format!(
                "timed out after {} with {} of {n} items done",
                secs((deadline - start).as_secs_f64()),
                out.completed
            ));
        }
        out
    }
}

/// A stream failure, with the way out when it is Redis pub/sub's output-buffer limit.
fn stream_failure(e: &BrokerError, method: Method) -> String {
    match e {
        BrokerError::Dropped(why) if method == Method::Default => {
            format!("{why}; proxy mode sends only keys")
        }
        other => other.to_string(),
    }
}

/// (seq, intended ns, size) of a stream message.
fn parse(message: &[u8]) -> Option<(u64, u64, usize)> {
    if message.len() < HEAD {
        return None;
    }
    let at = |i: usize| u64::from_be_bytes(message[i..i + 8].try_into().expect("8 bytes"));
    Some((at(0), at(8), usize::try_from(at(16)).ok()?))
}

/// What the generator sent.
#[derive(Default)]
struct Generated {
    sent: u64,
    broker_bytes: u64,
    store_bytes: u64,
    error: Option<String>,
}

/// What ends a dispatch early, and what it ends.
#[derive(Clone, Copy)]
struct Stops<'a> {
    /// The caller's (Ctrl-C): finish what is in flight.
    shutdown: &'a Shutdown,
    /// Requested by the dispatcher when the stream or a compute worker dies: the generator
    /// stops emitting.
    dead: &'a Shutdown,
    /// Requested by the dispatcher when it times out: workers drop what is in flight.
    abandon: &'a Shutdown,
}

#[derive(Default)]
struct Dispatched {
    received: u64,
    completed: u64,
    duplicates: u64,
    latency: LatencyFeed,
    last_done: Option<Duration>,
    error: Option<String>,
    /// Items each compute worker finished.
    per_worker: Vec<u64>,
    /// A compute worker died.
    died: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_messages_carry_seq_time_and_size_before_the_data() {
        let mut m = Vec::new();
        m.extend_from_slice(&7u64.to_be_bytes());
        m.extend_from_slice(&1_000u64.to_be_bytes());
        m.extend_from_slice(&5u64.to_be_bytes());
        m.extend_from_slice(b"hello");
        assert_eq!(parse(&m), Some((7, 1_000, 5)));
        assert_eq!(parse(&m[..10]), None);
    }

    fn stream(workers: usize, task_sleep: Duration) -> Stream {
        Stream {
            config: "redis://127.0.0.1:1/s".parse().unwrap(),
            store: None,
            method: Method::Default,
            prefix: "p-".into(),
            workers,
            compute: ComputeWorkers::Threads,
            task_sleep,
            connect_timeout: Duration::from_secs(1),
            password: None,
            tls_ca: None,
        }
    }

    #[test]
    fn the_offered_load_is_one_item_per_worker_per_task_sleep_on_the_one_schedule() {
        let s = stream(2, Duration::from_millis(10));
        assert_eq!(s.offered_rate(), Some(200.0));
        let load = |rate| Load {
            workload: plumbline_load::Workload::Random { size: 8, keys: 1 },
            keys: plumbline_load::KeyDist::Uniform,
            seed: 0,
            items: 3,
            shape: plumbline_load::Shape::at(rate),
        };
        let mut schedule = load(s.offered_rate()).shape().schedule(0, 1);
        let due: Vec<Duration> = (0..3).map(|k| schedule.offset(k).unwrap()).collect();
        assert_eq!(
            due,
            [0, 5, 10].map(Duration::from_millis),
            "psbench's start + i × task_sleep ÷ workers"
        );
        assert_eq!(s.ideal(&load(s.offered_rate())), Duration::from_millis(20));
        let no_sleep = stream(2, Duration::ZERO);
        assert_eq!(no_sleep.offered_rate(), None, "no sleep: all due at once");
        assert_eq!(no_sleep.ideal(&load(None)), Duration::ZERO);
    }

    #[test]
    fn a_pubsub_overflow_points_to_proxy_mode() {
        let e = BrokerError::Dropped("client-output-buffer-limit".into());
        assert!(stream_failure(&e, Method::Default).contains("proxy mode"));
        assert!(!stream_failure(&e, Method::Proxy).contains("proxy mode"));
    }
}
