//! Worker processes: the multi-process cluster of seeds 000 and 002 (Wallaroo's `machida`).
//!
//! ```text
//!  sender ─▶ --in ─▶ initializer ──route by key──▶ its own partitions ─▶ sink (--out)
//!                         │  data (TCP, frames as received)
//!                         └──────────▶ joiner "roo" ──▶ its partitions ─▶ sink (--out)
//!           control (TCP, JSON frames): join, welcome, stats, finish, done
//!           external: `plumbline shutdown`    metrics: Prometheus text over HTTP, by a
//!                                             [`MetricsServer`] from outside this crate
//! ```
//!
//! The initializer waits for `--worker-count` workers, assigns partition `p` to worker
//! `p % n` (itself first, joiners in join order), and only then accepts sources. Every input
//! frame goes to its partition's owner; state lives only there. Frames travel unchanged, so a
//! plumbline header (sequence number, intended send time) reaches the sink and `receive`
//! measures end-to-end latency and losses. A worker that dies stops the cluster with an error
//! naming it and its partitions: its partitions' state is gone, and serving the rest would
//! report results that silently miss them.

mod consumer;
mod initializer;
mod joiner;
mod metrics;
mod outbox;
pub mod protect;
pub mod wire;

use std::fmt::Write as _;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use plumbline_core::header::{is_plumbline, Header, HEADER_LEN};
use plumbline_core::Message;
use plumbline_measure::Live;
use plumbline_transport::broker::ClientOptions;
use plumbline_transport::config::TransportConfig;
use plumbline_transport::tcp;

use crate::app::{App, Output};
use crate::item::ItemWorker;
use crate::work::Work;
pub use outbox::FLUSH_EVERY;
use outbox::{Outbox, SinkLost};
use wire::WorkerStats;

/// A validated worker process.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    pub app: App,
    pub partitions: u32,
    pub work: Work,
    pub delay: Duration,
    /// Where results go; without it they are counted and dropped.
    pub out: Option<String>,
    /// How a broker `--out` is reached: the worker's broker flags (its password, TLS CA,
    /// connect timeout and frame limit), as its `--in` consumer has them.
    pub out_options: ClientOptions,
    /// Emit `ok` per item instead of the application's result (seed 000's optional sink).
    pub ok: bool,
    /// Append each key's item count to results whose value does not say it (`z=>6@3`), so
    /// `receive --continuity` can check votes that count more than one.
    pub versions: bool,
    /// Load-balanced tasks instead of keyed state: the initializer deals frames to the workers
    /// in turn and nobody keeps state (each result is `ok`).
    pub balanced: bool,
    pub role: Role,
    pub max_frame: usize,
    pub connect_timeout: Duration,
    /// The initializer's view for watchers (`--ui`): items routed in, items each worker
    /// processed, items per partition.
    pub live: Arc<Live>,
    /// Serves the initializer's `--metrics` (plumbline-ui's server, wired in by the CLI);
    /// without one, `--metrics` is refused.
    pub metrics_server: Option<Arc<dyn MetricsServer>>,
    /// Where the initializer announces its bound addresses and closing figures (`--announce`).
    pub announce: crate::announce::Announcer,
    /// A fault planted in the state a migration installs, so a test can show the continuity
    /// checker catching it; `None` in every real run.
    pub plant: Option<PlantedFault>,
}

/// Serves an initializer's `GET /metrics`: the seam between the cluster, which binds the
/// listener once protected mode allowed it, and an HTTP server, which lives above this crate
/// (the live page's, in plumbline-ui), so the worker crate serves no HTTP of its own.
///
/// Contract: answers `GET /metrics` on `listener` with the Prometheus exposition of `live` (the
/// one writer, `plumbline_measure::exposition`) and anything else with 404, until the returned
/// handle is dropped; where `token` is set, a scraper not on this host that does not present it
/// as `Authorization: Bearer` (compared in constant time) is answered 401 and logged with its
/// address; connections are bounded in number, and one that sends no request in time is
/// dropped. An error says why serving could not start.
pub trait MetricsServer: std::fmt::Debug + Send + Sync {
    fn serve(
        &self,
        listener: std::net::TcpListener,
        live: Arc<Live>,
        token: Option<String>,
    ) -> Result<Box<dyn Send>, String>;
}

/// A fault a test plants in every state a worker installs (`worker --plant-fault`, hidden).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedFault {
    /// As if the partition's last item were lost in the move: its next result repeats a
    /// version.
    Drop,
    /// As if its last item were applied twice: its next result skips a version.
    Double,
}

impl PlantedFault {
    /// What the fault adds to each installed value.
    fn adjust(fault: Option<Self>) -> i64 {
        match fault {
            None => 0,
            Some(PlantedFault::Drop) => -1,
            Some(PlantedFault::Double) => 1,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Role {
    Initializer {
        /// Source listener.
        source: String,
        control: String,
        data: String,
        external: Option<String>,
        metrics: Option<String>,
        worker_count: usize,
        /// When set, required of every joiner and every `shutdown`; without it, protected mode
        /// keeps the control plane on loopback.
        token: Option<String>,
        /// Source connections served at once; more are refused and counted.
        max_sources: usize,
        /// Deadlines and the buffer budget of source connections.
        intake: plumbline_core::intake::IntakeLimits,
    },
    Joiner {
        /// The initializer's control address.
        control: String,
        /// Presented in the join.
        token: Option<String>,
        /// Join a cluster that is already running (it grows by this worker).
        running: bool,
    },
    /// A member of a broker's consumer group, on its own: the broker shares the messages out
    /// (Kafka: partitions by key, so keyed state stays with one member) and redelivers what a
    /// dead member held unacked.
    Consumer {
        source: TransportConfig,
        options: ClientOptions,
        /// Exit after nothing arrived for this long, counted from the first message.
        idle_timeout: Option<Duration>,
    },
}

/// Why a worker process ended badly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Tcp(#[from] tcp::TcpError),
    #[error("{what}: {source}")]
    Broker {
        what: String,
        source: plumbline_transport::broker::BrokerError,
    },
    #[error("{0}")]
    Refused(String),
    #[error("worker {name} died ({why}); it owned partitions {partitions}; stopping the cluster")]
    WorkerDied {
        name: String,
        why: String,
        partitions: String,
    },
    #[error("lost the initializer: {0}")]
    InitializerLost(String),
    #[error("cluster protocol: {0}")]
    Protocol(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("control protocol: {0}")]
    Wire(#[from] wire::WireError),
    #[error("{0}")]
    Unsafe(String),
    #[error(
        "the sink --out {out} failed ({why}) after {delivered} results reached it; the {unacked} \
         items in hand were left unacknowledged for the group's other members"
    )]
    SinkFailed {
        out: String,
        why: String,
        delivered: u64,
        unacked: usize,
    },
    #[error("{accepted} items were accepted but {accounted} were processed: {missing} lost")]
    Unaccounted {
        accepted: u64,
        accounted: u64,
        missing: u64,
    },
}

/// A worker name fit for logs and metric labels: 1–64 of `A-Z a-z 0-9 _ . -`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

/// Runs a worker process until shutdown (Ok) or a fault (Err).
pub fn run(config: &NodeConfig, stop: &plumbline_core::Shutdown) -> Result<WorkerStats, NodeError> {
    match &config.role {
        Role::Initializer { .. } => initializer::run(config, stop),
        Role::Joiner {
            control,
            token,
            running,
        } => joiner::run(config, control, token.as_deref(), *running, stop),
        Role::Consumer {
            source,
            options,
            idle_timeout,
        } => consumer::run(config, source, options, *idle_timeout, stop),
    }
}

/// Serves each connection of `listener` on its own short-lived thread, at most `max` at once
/// (more are closed at once), so one idle client cannot hold up the others. Each read times
/// out after 2 s; a handler reading a whole message bounds it with [`wire::recv_hello`].
fn serve_each(
    listener: std::net::TcpListener,
    max: usize,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let handle = std::sync::Arc::new(handle);
    let slots = plumbline_core::intake::Slots::new(max);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let Some(slot) = slots.try_acquire() else {
                continue;
            };
            let handle = handle.clone();
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(SERVE_READ_TIMEOUT)).ok();
                handle(stream);
                drop(slot);
            });
        }
    });
}

/// How long a request on the external port may take to arrive.
const SERVE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The application's name on the wire (what a joiner must match).
pub fn app_name(app: App) -> &'static str {
    match app {
        App::Count => "sleepy",
        App::Votes => "votes",
    }
}

/// Text names for partitions in logs and metrics: letters for votes, numbers otherwise.
pub fn partition_label(app: App, partition: u32) -> String {
    match app {
        App::Votes => char::from(b'a' + partition as u8).to_string(),
        App::Count => partition.to_string(),
    }
}

/// The routing key of an input frame (its plumbline header skipped, if it has one).
fn frame_key(app: App, frame: &[u8]) -> Result<u32, plumbline_core::payload::PayloadError> {
    let payload = if is_plumbline(frame) {
        &frame[HEADER_LEN..]
    } else {
        frame
    };
    app.key(payload)
}

/// Writes the held result, if any, to the outbox's buffer (`text` is reused for its text).
fn write_held(out: &mut Outbox, held: &mut Option<Held>, text: &mut String) {
    if let Some(Held {
        head,
        output,
        versioned,
    }) = held.take()
    {
        text.clear();
        let _ = write!(text, "{output}");
        if let Some(version) = output.version().filter(|_| versioned) {
            let _ = write!(text, "@{version}");
        }
        out.emit(head.as_ref().map_or(&[][..], |h| &h[..]), text.as_bytes());
    }
}

/// What [`Processor::process`] read of a frame it worked on.
#[derive(Clone, Copy, Debug)]
struct Processed {
    key: u32,
    /// From the plumbline header, if the frame had one.
    intended_unix_ns: Option<u64>,
}

/// A worker's processing: item step plus the result stream to the sink.
struct Processor {
    app: App,
    ok: bool,
    item: ItemWorker,
    out: Outbox,
    /// The last item's result, written out inside the next item's wait or when input pauses.
    held: Option<Held>,
    /// Where running figures go, if anywhere.
    publisher: Option<Publisher>,
    /// Reused for each result's text, so formatting allocates nothing per item.
    text: String,
    stats: WorkerStats,
    versions: bool,
    plant: Option<PlantedFault>,
}

/// A result not yet written to the outbox: its input's plumbline header, if any, and output.
struct Held {
    head: Option<[u8; HEADER_LEN]>,
    output: Output,
    /// Written with its version (`--result-versions`).
    versioned: bool,
}

impl Processor {
    fn new(config: &NodeConfig) -> Result<Self, NodeError> {
        Ok(Self {
            app: config.app,
            ok: config.ok,
            item: ItemWorker::new(
                Some(config.app),
                config.partitions,
                config.work,
                config.delay,
            ),
            out: Outbox::open(config)?,
            held: None,
            publisher: None,
            text: String::new(),
            stats: WorkerStats {
                name: config.name.clone(),
                ..WorkerStats::default()
            },
            versions: config.versions,
            plant: config.plant,
        })
    }

    /// Works on one input frame; its result frame (the input's header, if any, then the result
    /// text) is written when the next item starts, inside that item's wait, or when the caller
    /// flushes because input paused. So the previous result leaves when it would have anyway,
    /// and formatting and writing it cost this item nothing: on this VM the first write after
    /// a 10 ms sleep took 60–100 µs, 1 % of the item, when done between items
    /// ([`plumbline_core::work::WorkTimer::run_as_while`]). Returns what it read of the frame,
    /// or `None` if it was rejected.
    fn process(&mut self, frame: &Bytes) -> Option<Processed> {
        self.stats.items += 1;
        let (header, payload) = match Header::read(frame) {
            Ok((h, payload)) => (Some(h), payload),
            Err(_) => (None, frame.clone()),
        };
        let Ok(key) = self.app.key(&payload) else {
            self.stats.rejected += 1;
            return None;
        };
        let message = Message {
            seq: header.map_or(0, |h| h.seq),
            key,
            intended_ns: 0,
            payload,
        };
        let (out, held, text) = (&mut self.out, &mut self.held, &mut self.text);
        let (publisher, stats) = (&mut self.publisher, &self.stats);
        let output = self.item.handle_while(&message, |work| {
            write_held(out, held, text);
            out.flush_if_due();
            if let Some(publisher) = publisher.as_mut().filter(|p| p.due()) {
                publisher.publish(snapshot(stats, out, work));
            }
        });
        let Some(output) = output else {
            self.stats.rejected += 1;
            return None;
        };
        self.held = Some(Held {
            head: header.map(|_| {
                let mut head = [0; HEADER_LEN];
                head.copy_from_slice(&frame[..HEADER_LEN]);
                head
            }),
            output: if self.ok { Output::Done } else { output },
            versioned: self.versions,
        });
        Some(Processed {
            key,
            intended_unix_ns: header.map(|h| h.intended_unix_ns),
        })
    }

    /// Hands a partition over: every item before it is applied, so its state is final here.
    fn take_state(&mut self, partition: u32) -> Vec<u8> {
        self.item.take_state(partition)
    }

    /// Starts a partition that moved here from the state its old owner handed over.
    fn install_state(&mut self, state: &[u8]) -> Result<usize, crate::app::StateError> {
        self.item
            .install_state(state, PlantedFault::adjust(self.plant))
    }

    /// Sends running figures to `publish` at most every `every`, from inside an item's wait
    /// (or a pause): taken between items, they came with gaps of 1–2 ms (once 23 ms) about
    /// once a publish, 0.2–0.4 % of a run of 10 ms items (summing up the work histogram alone
    /// measured 0.1–0.2 ms cold; the rest was handing the figures over).
    fn publishing(
        mut self,
        every: Duration,
        publish: impl FnMut(WorkerStats) + Send + 'static,
    ) -> Self {
        self.publisher = Some(Publisher {
            every,
            last: Instant::now(),
            step: None,
            items: 0,
            publish: Box::new(publish),
        });
        self
    }

    /// Pushes every result out: callers do whenever input pauses. Watchers then get fresh
    /// counts (cheap), with the work figures of the last full publish unless those are due.
    fn flush(&mut self) {
        write_held(&mut self.out, &mut self.held, &mut self.text);
        self.out.flush();
        match &mut self.publisher {
            Some(p) if p.due() => self.publish(),
            Some(p) if p.items != self.stats.items => {
                p.publish_counts(counts(&self.stats, &self.out));
            }
            _ => {}
        }
    }

    /// Sends the running figures now (an idle worker's).
    fn publish(&mut self) {
        let stats = self.stats();
        if let Some(publisher) = &mut self.publisher {
            publisher.publish(stats);
        }
    }

    /// Makes every result so far reach the sink ([`Outbox::deliver`]).
    fn deliver(&mut self) -> Result<(), SinkLost> {
        write_held(&mut self.out, &mut self.held, &mut self.text);
        self.out.deliver()
    }

    /// Flushes, then waits for a broker sink's acks.
    fn finish(&mut self) {
        write_held(&mut self.out, &mut self.held, &mut self.text);
        self.out.finish();
    }

    /// Stats so far; results still buffered count as delivered once flushed.
    fn stats(&self) -> WorkerStats {
        snapshot(&self.stats, &self.out, &self.item.work)
    }
}

/// A worker's counts and its outbox's.
fn counts(stats: &WorkerStats, out: &Outbox) -> WorkerStats {
    WorkerStats {
        results: out.results,
        undelivered: out.undelivered,
        ..stats.clone()
    }
}

/// A worker's figures: its counts, and what its items' work cost.
fn snapshot(stats: &WorkerStats, out: &Outbox, work: &plumbline_measure::Recorder) -> WorkerStats {
    WorkerStats {
        step: Some(work.summary()),
        ..counts(stats, out)
    }
}

/// Running figures' destination and pace.
struct Publisher {
    every: Duration,
    /// When the work figures were last taken, and what they were.
    last: Instant,
    step: Option<plumbline_measure::LatencySummary>,
    /// Items counted in the last figures sent.
    items: u64,
    publish: Box<dyn FnMut(WorkerStats) + Send>,
}

impl Publisher {
    fn due(&self) -> bool {
        self.last.elapsed() >= self.every
    }

    /// Sends whole figures (work figures included).
    fn publish(&mut self, stats: WorkerStats) {
        self.last = Instant::now();
        self.step.clone_from(&stats.step);
        self.items = stats.items;
        (self.publish)(stats);
    }

    /// Sends fresh counts with the last work figures taken.
    fn publish_counts(&mut self, stats: WorkerStats) {
        self.items = stats.items;
        (self.publish)(WorkerStats {
            step: self.step.clone(),
            ..stats
        });
    }
}
