//! Worker processes: the multi-process cluster of seeds 000 and 002 (Wallaroo's `machida`).
//!
//! ```text
//!  sender ─▶ --in ─▶ initializer ──route by key──▶ its own partitions ─▶ sink (--out)
//!                         │  data (TCP, frames as received)
//!                         └──────────▶ joiner "roo" ──▶ its partitions ─▶ sink (--out)
//!           control (TCP, JSON frames): join, welcome, stats, finish, done
//!           external: `plumbline shutdown`    metrics: Prometheus text over HTTP
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
pub mod protect;
pub mod wire;

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use plumbline_core::header::{is_plumbline, Header, HEADER_LEN};
use plumbline_core::Message;
use plumbline_measure::Live;
use plumbline_transport::broker::{connect_producer, ClientOptions, FramePublisher};
use plumbline_transport::config::TransportConfig;
use plumbline_transport::tcp;

use crate::app::{App, Output};
use crate::item::ItemWorker;
use crate::work::Work;
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
    /// Load-balanced tasks instead of keyed state: the initializer deals frames to the workers
    /// in turn and nobody keeps state (each result is `ok`).
    pub balanced: bool,
    pub role: Role,
    pub max_frame: usize,
    pub connect_timeout: Duration,
    /// The initializer's view for watchers (`--ui`): items routed in, items each worker
    /// processed, items per partition.
    pub live: Arc<Live>,
    /// Where the initializer announces its bound addresses and closing figures (`--announce`).
    pub announce: crate::announce::Announcer,
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
        Role::Joiner { control, token } => joiner::run(config, control, token.as_deref(), stop),
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

/// How long a request on the external or metrics port may take to arrive.
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
    sink: Option<Sink>,
    /// An `--out` was given: results without a sink are then undelivered, not dropped.
    wants_sink: bool,
    last_flush: Instant,
    /// Reused for each result's text, so formatting allocates nothing per item.
    text: String,
    /// Results written to the sink's buffer since the last successful flush: delivered only
    /// once the flush succeeds.
    pending: u64,
    /// Why the sink was lost, once it was.
    lost: Option<String>,
    stats: WorkerStats,
}

/// The `--out` sink failed: results written since the last delivery did not all reach it.
#[derive(Debug)]
struct SinkLost(String);

/// Longest a result waits in the sink buffer while input keeps coming: long enough to batch
/// writes at a million results a second, short against any latency worth measuring.
pub const FLUSH_EVERY: Duration = Duration::from_millis(1);

/// Longest a broker sink may take to acknowledge the last results.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where results go: a receiver over TCP (`host:port`), or a broker (a URL).
enum Sink {
    Tcp(BufWriter<TcpStream>),
    Broker(BufWriter<FramePublisher>),
}

impl Sink {
    fn connect(out: &str, config: &NodeConfig) -> Result<Sink, NodeError> {
        if !out.contains("://") {
            let stream = tcp::connect(out, config.connect_timeout)?;
            return Ok(Sink::Tcp(BufWriter::with_capacity(64 * 1024, stream)));
        }
        let broker = |source| NodeError::Broker {
            what: format!("--out {out}"),
            source,
        };
        let target: TransportConfig = out
            .parse()
            .map_err(|e| NodeError::Refused(format!("--out: {e}")))?;
        let producer = connect_producer(&target, &config.out_options).map_err(broker)?;
        let publisher = FramePublisher::new(producer, config.max_frame);
        Ok(Sink::Broker(BufWriter::with_capacity(64 * 1024, publisher)))
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Tcp(w) => w,
            Sink::Broker(w) => w,
        }
    }
}

/// Whether a receiver that never writes back has closed its end: a write into the socket
/// buffer succeeds for a while after the peer died, but its FIN or RST is already here.
fn peer_gone(stream: &TcpStream) -> Option<String> {
    if stream.set_nonblocking(true).is_err() {
        return None;
    }
    let seen = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false).ok();
    match seen {
        Ok(0) => Some("the receiver closed the connection".into()),
        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => Some(e.to_string()),
        _ => None,
    }
}

impl Processor {
    fn new(config: &NodeConfig) -> Result<Self, NodeError> {
        let sink = match &config.out {
            Some(out) => Some(Sink::connect(out, config)?),
            None => None,
        };
        Ok(Self {
            app: config.app,
            ok: config.ok,
            item: ItemWorker::new(
                Some(config.app),
                config.partitions,
                config.work,
                config.delay,
            ),
            wants_sink: sink.is_some(),
            sink,
            last_flush: Instant::now(),
            text: String::new(),
            pending: 0,
            lost: None,
            stats: WorkerStats {
                name: config.name.clone(),
                ..WorkerStats::default()
            },
        })
    }

    /// Works on one input frame and writes its result frame (the input's header, if any, then
    /// the result text). Returns what it read of the frame, or `None` if it was rejected.
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
        let Some(output) = self.item.handle(&message) else {
            self.stats.rejected += 1;
            return None;
        };
        let output = if self.ok { Output::Done } else { output };
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        let _ = write!(text, "{output}");
        let head = if header.is_some() {
            &frame[..HEADER_LEN]
        } else {
            &[][..]
        };
        self.emit(head, text.as_bytes());
        self.text = text;
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
        Some(Processed {
            key,
            intended_unix_ns: header.map(|h| h.intended_unix_ns),
        })
    }

    fn emit(&mut self, head: &[u8], text: &[u8]) {
        let Some(sink) = &mut self.sink else {
            if self.wants_sink {
                self.stats.undelivered += 1;
            } else {
                self.stats.results += 1;
            }
            return;
        };
        let len = (head.len() + text.len()) as u32;
        let sink = sink.writer();
        let written = sink
            .write_all(&len.to_be_bytes())
            .and_then(|()| sink.write_all(head))
            .and_then(|()| sink.write_all(text));
        match written {
            Ok(()) => self.pending += 1,
            Err(e) => self.sink_failed(&e, 1),
        }
    }

    /// Pushes buffered results out (whenever input pauses, and at least every [`FLUSH_EVERY`]).
    fn flush(&mut self) {
        self.last_flush = Instant::now();
        let Some(sink) = &mut self.sink else {
            return;
        };
        match sink.writer().flush() {
            Ok(()) => self.stats.results += std::mem::take(&mut self.pending),
            Err(e) => self.sink_failed(&e, 0),
        }
    }

    /// The sink is gone: what was buffered and `more` results are undelivered, and so is
    /// every result after them.
    fn sink_failed(&mut self, error: &std::io::Error, more: u64) {
        eprintln!(
            "[{}] the sink failed ({error}); results are counted as undelivered",
            self.stats.name
        );
        self.lost.get_or_insert_with(|| error.to_string());
        self.sink = None;
        self.stats.undelivered += std::mem::take(&mut self.pending) + more;
    }

    /// Makes every result so far reach the sink: flushed, and for a broker sink acknowledged
    /// by the broker. Only then may the inputs they came from be acknowledged; an error means
    /// the sink is gone (now or earlier), and some of those results never got there.
    fn deliver(&mut self) -> Result<(), SinkLost> {
        self.flush();
        let gone = match &mut self.sink {
            Some(Sink::Broker(out)) => out
                .get_mut()
                .finish(FINISH_TIMEOUT)
                .err()
                .map(|e| e.to_string()),
            Some(Sink::Tcp(out)) => peer_gone(out.get_ref()),
            None => None,
        };
        if let Some(why) = gone {
            self.sink_failed(&std::io::Error::other(why), 0);
        }
        match (&self.sink, &self.lost) {
            (None, Some(why)) if self.wants_sink => Err(SinkLost(why.clone())),
            _ => Ok(()),
        }
    }

    /// Flushes, then waits for a broker sink's acks: results it refused are undelivered.
    fn finish(&mut self) {
        self.flush();
        if let Some(Sink::Broker(out)) = &mut self.sink {
            if let Err(e) = out.get_mut().finish(FINISH_TIMEOUT) {
                eprintln!("[{}] the result broker: {e}", self.stats.name);
                let stats = out.get_ref().producer().stats();
                self.stats.undelivered += stats.sent - stats.acked;
                self.stats.results = self.stats.results.saturating_sub(stats.sent - stats.acked);
            }
        }
    }

    /// Stats so far; results still buffered count as delivered once flushed.
    fn stats(&self) -> WorkerStats {
        WorkerStats {
            step: Some(self.item.work.summary()),
            ..self.stats.clone()
        }
    }
}
