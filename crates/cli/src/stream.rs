//! `plumbline stream` (seed 004, psbench's stream_scaling): how a broker stream scales with
//! bulk data, sent by value ("default") or by reference through a store ("proxy").
//!
//! ```text
//!  generator ──(data | key+size)──▶ broker stream ──▶ dispatcher ──one task each──▶ compute workers
//!      │ proxy: put(key, data)                        (≤ 1 in flight per worker)    │ proxy: get, delete
//!      └──────────────────────────────▶ store ◀──────────────────────────────────────┘
//! ```
//!
//! One process, one thread per part, each with its own broker or store connection. The
//! generator emits item `i` when load's one open-loop `Schedule` says, at compute workers ÷
//! task_sleep per second (offered load equal to capacity); a compute task resolves its data
//! (checking its size) and sleeps `task_sleep`.
//! Ideal makespan: the last item's emission plus one task. Latency runs from an item's
//! intended emission to its task's end. The broker and store themselves are the user's (or the
//! test's) servers.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{bounded, Receiver, Sender};
use plumbline_core::clock::Sleeper;
use plumbline_core::Shutdown;
use plumbline_load::Shape;
use plumbline_measure::record::{Command, Record, RunRecord, StreamSection};
use plumbline_measure::report::{per_s, secs};
use plumbline_measure::{LatencyFeed, Live, RunInfo};
use plumbline_transport::broker::{
    connect_consumer, connect_producer, BrokerError, ClientOptions, Consumer, Delivery,
};
use plumbline_transport::config::TransportConfig;
use plumbline_transport::store::{open_store, Store};
use plumbline_worker::work::{Work, WorkTimer};
use rand::{RngCore, SeedableRng};

use crate::args::{PsConnector, StreamArgs, StreamKind, StreamMethod};
use crate::bench::Verdict;
use crate::session::{Outcome, Session};

/// Bytes before the data in every stream message: seq (8), intended emission in ns since
/// the run's start (8), data size (8).
const HEAD: usize = 24;
/// The longest the generator waits without looking at the stop flags.
const STOP_CHECK: Duration = Duration::from_millis(100);

const CSV_HEADER: &str = "stream,stream_method,data_size_bytes,task_count,task_sleep,max_workers,repeat,makespan_s,ideal_s,overhead_pct,completed,lost,duplicates,latency_p50_s,latency_p99_s,latency_max_s,broker_bytes,broker_bytes_per_item,store_bytes,leaked_keys,error";

/// One experiment as psbench's CSV row (its columns first, then what psbench lacks); its
/// workers are the compute workers, `max_workers` one more (the dispatcher).
fn csv(run: &RunRecord, s: &StreamSection) -> String {
    format!(
        "{},{},{},{},{},{},{},{:.6},{:.6},{},{},{},{},{:.6},{:.6},{:.6},{},{:.1},{},{},{}",
        s.stream,
        s.stream_method,
        s.data_size_bytes,
        run.items.unwrap_or(0),
        s.task_sleep_s,
        run.workers + 1,
        s.repeat,
        run.wall_s,
        run.ideal_s.unwrap_or(0.0),
        run.overhead_pct
            .map_or(String::new(), |o| format!("{o:.3}")),
        run.delivered.unwrap_or(0),
        run.lost,
        run.duplicates,
        run.latency_s.p50,
        run.latency_s.p99,
        run.latency_s.max,
        s.broker_bytes,
        s.broker_bytes_per_item,
        s.store_bytes,
        s.leaked_keys,
        s.error.as_deref().unwrap_or("").replace([',', '\n'], ";")
    )
}

/// What the parts of one experiment need.
struct Experiment<'a> {
    args: &'a StreamArgs,
    config: TransportConfig,
    store: Option<String>,
    method: StreamMethod,
    size: usize,
    repeat: u64,
    /// Store keys and stream names of this experiment start with it.
    prefix: String,
    /// Watchers' view: items generated in, items done out, their latencies.
    live: &'a Live,
}

pub fn run(args: &StreamArgs, shutdown: &Shutdown) -> Result<Verdict> {
    ensure!(
        args.data_size_bytes.iter().all(|&s| s > 0 && s <= 1 << 30),
        "--data-size-bytes: each size must be 1 byte to 1 GiB"
    );
    let store_url = store_url(args)?;
    let session = Session::start("stream", &args.out, None)?;
    let mut record = Record::new(
        Command::Stream,
        crate::session::command_line(),
        plumbline_measure::report::Host::current(),
    );
    let mut n = 0;
    println!(
        "{:>8} {:>9} {:>6} {:>10} {:>10} {:>9} {:>9} {:>10} {:>12} {:>12}",
        "method",
        "size",
        "done",
        "makespan",
        "ideal",
        "overhead",
        "p99",
        "broker/item",
        "store MB",
        "leaked keys"
    );
    for &method in &args.stream_method {
        for &size in &args.data_size_bytes {
            for repeat in 0..args.repeat {
                if shutdown.requested() {
                    break;
                }
                n += 1;
                let experiment = Experiment {
                    args,
                    config: stream_config(args, n)?,
                    store: (method == StreamMethod::Proxy).then(|| store_url.clone()),
                    method,
                    size,
                    repeat,
                    prefix: format!("plumbline-{}-{n}-", std::process::id()),
                    live: session.live(),
                };
                session.live().begin_run(RunInfo {
                    label: format!(
                        "experiment {n}: {} x {} B by {method:?} over {:?}",
                        args.task_count, size, args.stream
                    ),
                    workers: args.max_workers.saturating_sub(1) as usize,
                    total: Some(args.task_count),
                    target_per_s: (args.task_sleep > Duration::ZERO).then(|| {
                        (args.max_workers.saturating_sub(1)) as f64 / args.task_sleep.as_secs_f64()
                    }),
                });
                let run = experiment.run(shutdown)?;
                let s = run.stream.as_ref().expect("a stream run has its section");
                println!(
                    "{:>8} {:>9} {:>6} {:>10} {:>10} {:>9} {:>9} {:>10.0}B {:>12.1} {:>12}{}",
                    s.stream_method,
                    size,
                    format!("{}/{}", run.delivered.unwrap_or(0), args.task_count),
                    secs(run.wall_s),
                    secs(run.ideal_s.unwrap_or(0.0)),
                    run.overhead_pct.map_or("-".into(), |o| format!("{o:.2}%")),
                    secs(run.latency_s.p99),
                    s.broker_bytes_per_item,
                    s.store_bytes as f64 / 1e6,
                    s.leaked_keys,
                    s.error
                        .as_deref()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default()
                );
                if let Some(path) = &args.csv_file {
                    append_csv(path, &csv(&run, s))?;
                }
                record.runs.push(run);
            }
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, record.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    session.finish(Outcome {
        runs: plumbline_report::rows(&record),
        resolved: serde_json::json!({
            "stream": format!("{:?}", args.stream).to_lowercase(),
            "stream_servers": args.stream_servers,
            "stream_method": args.stream_method.iter().map(|m| format!("{m:?}").to_lowercase()).collect::<Vec<_>>(),
            "data_size_bytes": args.data_size_bytes,
            "task_count": args.task_count,
            "task_sleep_s": args.task_sleep.as_secs_f64(),
            "max_workers": args.max_workers,
            "repeat": args.repeat,
            "ps_connector": format!("{:?}", args.ps_connector).to_lowercase(),
        }),
        seeds: (0..args.repeat).collect(),
        detail: serde_json::to_value(&record)?,
    })?;
    let failures: Vec<String> = record
        .runs
        .iter()
        .filter_map(|r| Some((r, r.stream.as_ref()?)))
        .filter(|(r, s)| r.lost > 0 || s.leaked_keys > 0 || s.error.is_some())
        .map(|(r, s)| {
            format!(
                "{} {} B: {} of {} lost, {} keys leaked{}",
                s.stream_method,
                s.data_size_bytes,
                r.lost,
                args.task_count,
                s.leaked_keys,
                s.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    Ok(Verdict::of(shutdown.requested(), failures))
}

fn append_csv(path: &Path, row: &str) -> Result<()> {
    let new = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if new {
        writeln!(file, "{CSV_HEADER}")?;
    }
    writeln!(file, "{row}").with_context(|| format!("writing {}", path.display()))
}

/// The broker URL of experiment `n`: a fresh stream, topic or subject each time.
fn stream_config(args: &StreamArgs, n: usize) -> Result<TransportConfig> {
    let server = loopback(args, &args.stream_servers);
    let name = format!("plumbline-stream-{}-{n}", std::process::id());
    let (scheme, mode) = match args.stream {
        StreamKind::Redis => ("redis", Some("mode=pubsub")),
        StreamKind::RedisStreams => ("redis", Some("mode=streams")),
        StreamKind::Kafka => ("kafka", None),
        StreamKind::Nats => ("nats", None),
        StreamKind::Jetstream => ("nats", Some("jetstream=1")),
    };
    let query: Vec<&str> = mode
        .into_iter()
        .chain(tls(args).then_some("tls=1"))
        .collect();
    let url = match query.is_empty() {
        true => format!("{scheme}://{server}/{name}"),
        false => format!("{scheme}://{server}/{name}?{}", query.join("&")),
    };
    url.parse()
        .with_context(|| format!("--stream-servers {}", args.stream_servers))
}

/// Whether the stream and a Redis store are reached over TLS: `--tls`, or a `--tls-ca` given
/// (a CA makes no sense in plaintext, which would silently not be what was meant).
fn tls(args: &StreamArgs) -> bool {
    args.tls || args.login.tls_ca.is_some()
}

/// `localhost` as 127.0.0.1 (whatever IPv6 resolution says), except over TLS, where the name
/// is what the server's certificate is checked against.
fn loopback(args: &StreamArgs, host: &str) -> String {
    match tls(args) {
        true => host.to_string(),
        false => host.replace("localhost", "127.0.0.1"),
    }
}

/// The load psbench offers: one item per compute worker per task sleep (offered load equal to
/// capacity), paced by the one open-loop schedule; with no sleep, every item due at once.
fn offered(workers: usize, task_sleep: Duration) -> Shape {
    if task_sleep > Duration::ZERO {
        Shape::Constant {
            rate: workers as f64 / task_sleep.as_secs_f64(),
        }
    } else {
        Shape::Max
    }
}

/// The store URL proxy mode uses.
fn store_url(args: &StreamArgs) -> Result<String> {
    let redis_stream = matches!(args.stream, StreamKind::Redis | StreamKind::RedisStreams);
    let connector = args.ps_connector.unwrap_or(if redis_stream {
        PsConnector::Redis
    } else {
        PsConnector::File
    });
    Ok(match connector {
        PsConnector::File => {
            let dir = args.ps_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("plumbline-store-{}", std::process::id()))
            });
            format!("file://{}", dir.display())
        }
        PsConnector::Redis => {
            let (host, port) = match (&args.ps_host, args.ps_port) {
                (Some(h), Some(p)) => (h.clone(), p),
                (None, None) if redis_stream => {
                    let (h, p) = args
                        .stream_servers
                        .rsplit_once(':')
                        .context("--stream-servers is not host:port")?;
                    (h.to_string(), p.parse().context("--stream-servers port")?)
                }
                _ => bail!("--ps-connector redis needs --ps-host and --ps-port"),
            };
            let scheme = if tls(args) { "rediss" } else { "redis" };
            format!("{scheme}://{}:{port}", loopback(args, &host))
        }
    })
}

/// A task handed to a compute worker: the delivery (acked when done) and its header.
struct Task {
    delivery: Delivery,
    seq: u64,
    intended_ns: u64,
    size: usize,
}

/// What a compute worker reports per task.
struct Done {
    delivery: Delivery,
    seq: u64,
    /// Task end − intended emission.
    latency_ns: u64,
    error: Option<String>,
}

impl Experiment<'_> {
    fn options(&self, role: &str) -> ClientOptions {
        ClientOptions {
            connect_timeout: self.args.connect_timeout,
            max_payload: self.size + HEAD + 64,
            group: format!("{}dispatch", self.prefix),
            consumer: role.to_string(),
            // Generous: a stalled dispatcher is reported by the makespan, not by redelivery.
            redeliver_after: self.args.task_sleep * 4 + Duration::from_secs(30),
            prefetch: 64,
            create: true,
            partitions: 1,
            password: self.args.login.password.clone(),
            tls_ca: self.args.login.tls_ca.clone(),
            ..ClientOptions::default()
        }
    }

    fn run(&self, shutdown: &Shutdown) -> Result<RunRecord> {
        let args = self.args;
        let workers = (args.max_workers - 1) as usize;
        let shape = offered(workers, args.task_sleep);
        // The last item's due time plus one task.
        let last_due = shape
            .schedule(0, 1)
            .offset(args.task_count.saturating_sub(1))
            .unwrap_or_default();
        let ideal = last_due + args.task_sleep;
        let shape = &shape;
        // The dispatcher subscribes before anything is sent (pub/sub keeps nothing).
        let mut consumer = connect_consumer(&self.config, &self.options("dispatcher"))
            .with_context(|| format!("the stream {}", self.config))?;
        let producer = connect_producer(&self.config, &self.options("generator"))
            .with_context(|| format!("the stream {}", self.config))?;
        // Every connection is made before the clock starts, so none counts as plumbing and a
        // failed one ends the run before any thread waits for work.
        let stores = (0..workers)
            .map(|_| self.open_store())
            .collect::<Result<Vec<_>>>()?;
        let generator_store = self.open_store()?;
        let (task_tx, task_rx) = bounded::<Task>(0);
        let (done_tx, done_rx) = bounded::<Done>(workers);
        let start = Instant::now();
        // Requested when the stream dies: the generator stops emitting into it.
        let dead = Shutdown::new();
        let (generated, d) = std::thread::scope(|scope| {
            for store in stores {
                let (rx, tx) = (task_rx.clone(), done_tx.clone());
                let sleep = args.task_sleep;
                scope.spawn(move || compute(store, rx, tx, sleep, start));
            }
            drop(done_tx);
            let dead = &dead;
            let generator = scope.spawn(move || {
                self.generate(producer, generator_store, shape, start, shutdown, dead)
            });
            let dispatched =
                self.dispatch(consumer.as_mut(), task_tx, &done_rx, ideal, start, shutdown);
            if dispatched.stream_failed {
                dead.request();
            }
            let generated = generator.join().expect("the generator does not panic");
            (generated, dispatched)
        });
        let generated = generated?;
        let makespan = d.last_done.unwrap_or(start.elapsed());
        let leaked = match self.open_store()? {
            Some(mut store) => store
                .count(&self.prefix)
                .context("counting the store's keys after the run")?,
            None => 0,
        };
        let latency = d.latency.finish(self.live).summary();
        let completed = d.completed;
        let mut error = generated.error.or(d.error);
        if error.is_none() && completed < args.task_count {
            error = Some(format!(
                "{} items never arrived",
                args.task_count - completed
            ));
        }
        Ok(RunRecord {
            items: Some(args.task_count),
            sent: Some(generated.sent),
            delivered: Some(completed),
            lost: args.task_count - completed,
            duplicates: d.duplicates,
            target_per_s: shape.mean_rate(),
            achieved_per_s: per_s(completed as f64, makespan.as_secs_f64()),
            latency_s: latency,
            stream: Some(StreamSection {
                stream: self.config.kind().to_string(),
                stream_method: format!("{:?}", self.method).to_lowercase(),
                data_size_bytes: self.size,
                task_sleep_s: args.task_sleep.as_secs_f64(),
                repeat: self.repeat,
                broker_bytes: generated.broker_bytes,
                broker_bytes_per_item: generated.broker_bytes as f64
                    / args.task_count.max(1) as f64,
                store_bytes: generated.store_bytes,
                leaked_keys: leaked,
                error,
            }),
            ..RunRecord::new(workers, makespan.as_secs_f64())
        }
        .with_ideal(Some(ideal.as_secs_f64())))
    }

    fn open_store(&self) -> Result<Option<Box<dyn Store>>> {
        self.store
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
        rand::rngs::StdRng::seed_from_u64(self.repeat).fill_bytes(&mut data);
        let mut sleeper = Sleeper::new();
        let mut out = Generated::default();
        let mut message = BytesMut::with_capacity(HEAD + self.size);
        let mut schedule = shape.schedule(0, 1);
        for seq in 0..self.args.task_count {
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
                    let key = format!("{}{seq}", self.prefix);
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

    /// Counts one finished item and queues its delivery for acknowledgement.
    fn complete(&self, out: &mut Dispatched, d: Done, start: Instant, acks: &mut Vec<Delivery>) {
        out.completed += 1;
        out.latency.record_ns(d.latency_ns);
        self.live.items_out.fetch_add(1, Ordering::Relaxed);
        out.last_done = Some(start.elapsed());
        if let Some(e) = d.error {
            out.error.get_or_insert(format!("item {}: {e}", d.seq));
        }
        acks.push(d.delivery);
    }

    /// Hands each arriving item to a free compute worker (one in flight each) and collects
    /// completions until every item is done, the stream fails, or the run times out.
    fn dispatch(
        &self,
        consumer: &mut dyn Consumer,
        tasks: Sender<Task>,
        done: &Receiver<Done>,
        ideal: Duration,
        start: Instant,
        shutdown: &Shutdown,
    ) -> Dispatched {
        let mut out = Dispatched::default();
        let n = self.args.task_count;
        let deadline = start + ideal * 3 + Duration::from_secs(30);
        let mut waiting: std::collections::VecDeque<Task> = Default::default();
        let mut seen = std::collections::HashSet::new();
        let mut acks = Vec::new();
        let mut stream_ok = true;
        while out.completed < n && Instant::now() < deadline && !shutdown.requested() {
            while let Ok(d) = done.try_recv() {
                self.complete(&mut out, d, start, &mut acks);
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
                    out.stream_failed = true;
                    out.error.get_or_insert(stream_failure(&e, self.method));
                }
            }
        }
        drop(tasks);
        // Workers still busy finish; their completions count.
        for d in done.iter() {
            self.complete(&mut out, d, start, &mut acks);
        }
        let _ = consumer.ack(&acks);
        if out.completed < n && Instant::now() >= deadline {
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
fn stream_failure(e: &BrokerError, method: StreamMethod) -> String {
    match e {
        BrokerError::Dropped(why) if method == StreamMethod::Default => {
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

#[derive(Default)]
struct Dispatched {
    received: u64,
    completed: u64,
    duplicates: u64,
    latency: LatencyFeed,
    last_done: Option<Duration>,
    error: Option<String>,
    /// The stream itself failed (a subscriber cut off): nothing more will arrive.
    stream_failed: bool,
}

/// A compute worker: resolve the data (proxy: get it from the store, then delete it), check
/// its size, sleep the task's time.
fn compute(
    mut store: Option<Box<dyn Store>>,
    tasks: Receiver<Task>,
    done: Sender<Done>,
    sleep: Duration,
    start: Instant,
) {
    let mut timer = WorkTimer::new(Work::Sleep);
    for task in tasks.iter() {
        let body = task.delivery.payload.slice(HEAD..);
        let resolved: Result<Bytes, String> = match store.as_mut() {
            Some(store) => std::str::from_utf8(&body)
                .map_err(|_| "a proxy key that is not text".to_string())
                .and_then(|key| {
                    let data = store.get(key).map_err(|e| e.to_string())?;
                    store.delete(key).map_err(|e| e.to_string())?;
                    Ok(data)
                }),
            None => Ok(body),
        };
        let error = match &resolved {
            Ok(data) if data.len() == task.size => None,
            Ok(data) => Some(format!(
                "{} bytes where {} were sent",
                data.len(),
                task.size
            )),
            Err(e) => Some(e.clone()),
        };
        timer.run(sleep);
        let end_ns = start.elapsed().as_nanos() as u64;
        let report = Done {
            delivery: task.delivery,
            seq: task.seq,
            latency_ns: end_ns.saturating_sub(task.intended_ns),
            error,
        };
        if done.send(report).is_err() {
            return;
        }
    }
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

    #[test]
    fn the_offered_load_is_one_item_per_worker_per_task_sleep_on_the_one_schedule() {
        let shape = offered(2, Duration::from_millis(10));
        assert_eq!(shape.mean_rate(), Some(200.0));
        let mut schedule = shape.schedule(0, 1);
        let due: Vec<Duration> = (0..3).map(|k| schedule.offset(k).unwrap()).collect();
        assert_eq!(
            due,
            [0, 5, 10].map(Duration::from_millis),
            "psbench's start + i × task_sleep ÷ workers"
        );
        let mut batch = offered(2, Duration::ZERO).schedule(0, 1);
        assert_eq!(
            batch.offset(99),
            Some(Duration::ZERO),
            "no sleep: all due at once"
        );
    }

    #[test]
    fn a_pubsub_overflow_points_to_proxy_mode() {
        let e = BrokerError::Dropped("client-output-buffer-limit".into());
        assert!(stream_failure(&e, StreamMethod::Default).contains("proxy mode"));
        assert!(!stream_failure(&e, StreamMethod::Proxy).contains("proxy mode"));
    }
}
