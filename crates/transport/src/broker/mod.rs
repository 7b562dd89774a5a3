//! Brokers as the data plane: one [`Producer`] and one [`Consumer`] trait that every backend
//! (plumbline's own TCP frames, Redis streams and pub/sub, NATS core and JetStream, Kafka)
//! implements, selected by the URL a flag takes ([`TransportConfig`]).
//!
//! ```text
//!  load::sender ─frames─▶ FramePublisher ─▶ Producer::send ──▶ broker ──▶ Consumer::poll ─▶ worker
//!                                          Producer::finish ◀─ acks       Consumer::ack ◀── processed
//! ```
//!
//! A message is an opaque payload (a plumbline frame payload: header + application bytes) and
//! a routing key (Kafka partitions by it; the others carry it in the header). What a backend
//! promises is [`TransportConfig::guarantee`]: at-least-once backends redeliver what a dead
//! consumer had not acked, at-most-once backends lose it, and plumbline counts either by
//! sequence number. Nothing here decides pacing or what a worker does with a message.
//!
//! Each broker's client is behind a cargo feature (`redis`, `nats`, `kafka`); a URL naming a
//! backend this build lacks is refused by [`connect_producer`] / [`connect_consumer`] with the
//! feature to enable.

// Acks, retries and ack latency are the brokers' alone; a build without any broker has only tcp.
#![cfg_attr(
    not(any(feature = "redis", feature = "nats", feature = "kafka")),
    allow(dead_code)
)]

mod frames;
#[cfg(feature = "kafka")]
mod kafka;
mod kafka_identity;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub(crate) use redis::connect as redis_connect;
mod tcp;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use plumbline_core::intake::{self, ByteBudget, IntakeLimits};
use plumbline_core::secret::Secret;
use plumbline_measure::{LatencySummary, Recorder};
use serde::Serialize;

use crate::config::{Access, TransportConfig};
use crate::retry::Failed;
pub use frames::{FramePublisher, FrameSource};
pub use kafka_identity::{BrokerIdentity, TANSU_RESUME_LIMITATION};

/// How to reach and use a backend. The defaults suit a benchmark on one host.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long to keep retrying an unreachable broker before giving up with its address.
    pub connect_timeout: Duration,
    /// Largest payload this client sends or accepts. Producers refuse larger ones before
    /// sending; consumers skip (and ack, and count) larger ones instead of processing them.
    pub max_payload: usize,
    /// The consumer group (Redis streams group, NATS queue group / JetStream durable, Kafka
    /// group.id). Consumers in one group share the messages.
    pub group: String,
    /// This consumer's name within its group (Redis streams' consumer name).
    pub consumer: String,
    /// How long a delivered, unacked message may sit before it is given to another consumer:
    /// Redis streams' claim idle time, JetStream's AckWait. Kafka moves a dead consumer's
    /// partitions after its session timeout instead.
    pub redeliver_after: Duration,
    /// Messages one consumer may hold unacked (JetStream's pull batch; Redis' read count).
    /// Brokers that time a redelivery from delivery (JetStream's AckWait) start the clock when
    /// a message reaches this consumer's buffer, not when it is polled.
    pub prefetch: usize,
    /// Create a missing stream/topic (Kafka with `partitions`). When false, a missing one is
    /// refused with its name.
    pub create: bool,
    /// Partitions of a Kafka topic this client creates.
    pub partitions: i32,
    /// The broker password (`--password`), in place of one in the URL.
    pub password: Option<Secret>,
    /// PEM file of the CA(s) a TLS broker's certificate must chain to, instead of the
    /// system's roots. Refused for a URL that does not ask for TLS.
    pub tls_ca: Option<PathBuf>,
    /// A `tcp://` consumer's listener: connections it serves at once; more are closed at
    /// once and counted ([`ConsumerStats::refused`]).
    pub max_connections: usize,
    /// A `tcp://` consumer's limits on each connection's frames (read timeout, minimum rate,
    /// the buffer budget all connections share); `None`: peers are trusted.
    pub intake: Option<IntakeLimits>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_payload: plumbline_core::frame::DEFAULT_MAX_FRAME,
            group: "plumbline".into(),
            consumer: format!("c{}", std::process::id()),
            redeliver_after: Duration::from_secs(5),
            prefetch: 256,
            create: true,
            partitions: 3,
            password: None,
            tls_ca: None,
            max_connections: intake::DEFAULT_MAX_CONNECTIONS,
            intake: Some(IntakeLimits::new(
                intake::DEFAULT_READ_TIMEOUT,
                intake::DEFAULT_MIN_RATE,
                std::sync::Arc::new(ByteBudget::new(intake::DEFAULT_BUFFER_BUDGET)),
            )),
        }
    }
}

/// Why a backend call failed. Each names the backend's address or the offending value.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("could not reach {what} at {addr} within {timeout:?}: {why}")]
    Unreachable {
        what: &'static str,
        addr: String,
        timeout: Duration,
        why: String,
    },
    /// Final: retrying a refused login cannot help.
    #[error("{what} at {addr} refused the login: {why}")]
    Auth {
        what: &'static str,
        addr: String,
        why: String,
    },
    /// Final: a certificate that does not verify will not verify on a retry. Never followed
    /// by a plaintext attempt.
    #[error("TLS to {what} at {addr} failed (no plaintext fallback): {why}")]
    Tls {
        what: &'static str,
        addr: String,
        why: String,
    },
    #[error("payload of {len} bytes exceeds the {limit}-byte limit of {what}")]
    TooLarge {
        len: usize,
        limit: usize,
        what: String,
    },
    #[error("{what} '{name}' does not exist (sending creates it unless told not to)")]
    Missing { what: &'static str, name: String },
    #[error(
        "this plumbline was built without {backend} support: rebuild with `--features {feature}`"
    )]
    NotBuilt {
        backend: &'static str,
        feature: &'static str,
    },
    #[error("{count} message(s) were not acknowledged by the broker within {timeout:?}")]
    Unacked { count: u64, timeout: Duration },
    #[error("the broker refused {count} message(s); first: {first}")]
    Refused { count: u64, first: String },
    #[error("the broker closed the subscription: {0}")]
    Dropped(String),
    #[error("{0}")]
    Backend(String),
}

impl BrokerError {
    pub(crate) fn backend(what: impl std::fmt::Display) -> Self {
        BrokerError::Backend(what.to_string())
    }
}

/// What a client presents when it connects: the URL's [`Access`] with `--password` in place of
/// the URL's password, and the CA file.
#[cfg_attr(
    not(any(feature = "redis", feature = "nats", feature = "kafka")),
    allow(dead_code)
)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Login<'a> {
    pub user: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub tls: bool,
    pub ca: Option<&'a Path>,
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub sasl: Option<&'a str>,
}

#[cfg_attr(
    not(any(feature = "redis", feature = "nats", feature = "kafka")),
    allow(dead_code)
)]
impl<'a> Login<'a> {
    /// Refuses a CA file for a URL without TLS: the user meant TLS, and plaintext would
    /// silently not be it.
    pub fn new(
        access: &'a Access,
        options: &'a ClientOptions,
        url: &impl std::fmt::Display,
    ) -> Result<Self, BrokerError> {
        if let (Some(ca), false) = (&options.tls_ca, access.tls) {
            return Err(BrokerError::Backend(format!(
                "--tls-ca {} is given but {url} does not ask for TLS (rediss://, or ?tls=1): \
                 refusing to connect in plaintext",
                ca.display()
            )));
        }
        Ok(Login {
            user: access.user.as_deref(),
            password: options.password.as_ref().or(access.password.as_ref()),
            tls: access.tls,
            ca: options.tls_ca.as_deref(),
            sasl: access.sasl.as_deref(),
        })
    }

    /// The CA file's bytes, its path named when it cannot be read.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, BrokerError> {
        self.ca
            .map(|path| {
                std::fs::read(path).map_err(|e| {
                    BrokerError::Backend(format!("reading --tls-ca {}: {e}", path.display()))
                })
            })
            .transpose()
    }
}

/// One message as a consumer receives it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub payload: Bytes,
    /// The backend says it delivered this message before (JetStream, Redis streams' claims);
    /// backends that cannot tell say `false`, and sequence numbers catch the duplicate.
    pub redelivered: bool,
    pub(crate) token: AckToken,
}

/// What a backend needs to acknowledge a delivery.
#[derive(Clone, Debug)]
pub(crate) enum AckToken {
    /// At-most-once backends: nothing to acknowledge.
    None,
    /// A Redis stream entry id, or a JetStream reply subject.
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    Id(String),
    /// A Kafka partition and offset.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    Offset { partition: i32, offset: i64 },
}

/// What a producer has seen since it was connected.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProducerStats {
    /// Messages accepted by [`Producer::send`].
    pub sent: u64,
    /// Messages the broker acknowledged (for backends without acks: written to the broker).
    pub acked: u64,
    /// Messages the broker refused or has not acknowledged (read after `finish`: never did).
    pub failed: u64,
    /// Redis pub/sub: messages published while no subscriber listened, so nobody got them.
    pub unrouted: u64,
    /// Send call → broker acknowledgement; empty for backends without acks.
    pub ack_latency_s: Option<LatencySummary>,
}

/// What a consumer has seen since it was connected.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConsumerStats {
    pub delivered: u64,
    pub redelivered: u64,
    pub acked: u64,
    /// Messages above `max_payload`: skipped, acknowledged so they do not come back, counted.
    pub oversized: u64,
    /// Messages the client library dropped before plumbline saw them (NATS slow consumer).
    pub dropped: u64,
    /// Empty messages (no frame can be empty): skipped, acknowledged, counted by
    /// [`FrameSource`](frames::FrameSource).
    pub empty: u64,
    /// `tcp://`: connections closed at once because `max_connections` were open.
    pub refused: u64,
    /// `tcp://`: connections closed for a bad frame or one that stalled; `stalled` of them
    /// for overstaying the read timeout or crawling below the minimum rate.
    pub bad_peers: u64,
    pub stalled: u64,
    /// The first [`MAX_REASONS`] of those connections, each named with what it did.
    pub bad_reasons: Vec<String>,
    /// Kafka: the partitions the group assigns to this member now (`None`: the backend does
    /// not assign partitions, or the group has not assigned this member yet).
    pub assigned: Option<Vec<i32>>,
}

/// Bad connections a consumer names in [`ConsumerStats::bad_reasons`]; the rest are counted.
pub const MAX_REASONS: usize = 10;

/// The sending half of a backend. Called from one thread (the sender's or a worker's output);
/// `Send` so it can be moved there.
pub trait Producer: Send {
    /// Hands one message to the backend; `key` routes it (Kafka partition = key mod partitions).
    /// `Ok` means accepted for delivery: it may still be buffered, and a later refusal shows
    /// in [`Producer::finish`]. Blocks while the client's own buffer is full (backpressure),
    /// never drops. `Err(TooLarge)` names a payload above the limit; other errors mean the
    /// backend is gone.
    fn send(&mut self, key: u32, payload: &[u8]) -> Result<(), BrokerError>;

    /// Pushes whatever is buffered to the broker without waiting for acknowledgements. The
    /// paced sender calls it before it waits for the next deadline.
    fn flush(&mut self) -> Result<(), BrokerError>;

    /// Waits until every message sent so far is acknowledged (or written, for backends without
    /// acks), at most `timeout`. `Err(Unacked)` / `Err(Refused)` say how many were not.
    fn finish(&mut self, timeout: Duration) -> Result<(), BrokerError>;

    /// Counts and ack latency so far.
    fn stats(&self) -> ProducerStats;
}

/// The receiving half of a backend, one per consuming thread.
pub trait Consumer: Send {
    /// Waits at most `timeout` for messages and returns up to `max` of them; empty means none
    /// arrived in time. An error means the consumer is unusable (the connection is gone, or
    /// Redis closed an overflowing subscription): report it and stop.
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError>;

    /// Marks deliveries processed, so the backend never hands them out again. Call it after
    /// the work and its result are done (at-least-once). No-op for at-most-once backends.
    fn ack(&mut self, done: &[Delivery]) -> Result<(), BrokerError>;

    /// Counts so far.
    fn stats(&self) -> ConsumerStats;

    /// Hands back what this member took from the broker but will not process (it is leaving
    /// the group), so another member gets it at once instead of after the redelivery time;
    /// returns how many. Kafka leaves the group here (its uncommitted offsets go to the next
    /// owner, at once rather than after the session timeout); backends that hold nothing for a
    /// member beyond `poll`'s batch (Redis streams) have nothing to do. Nothing is polled after.
    fn release(&mut self) -> Result<u64, BrokerError> {
        Ok(0)
    }

    /// The address a listening consumer (`tcp://`) bound, its port picked if it asked for 0;
    /// `None` for consumers that connect out.
    fn bound(&self) -> Option<String> {
        None
    }
}

/// Connects a producer to `config`.
pub fn connect_producer(
    config: &TransportConfig,
    options: &ClientOptions,
) -> Result<Box<dyn Producer>, BrokerError> {
    match config {
        TransportConfig::Tcp { addr } => Ok(Box::new(tcp::TcpProducer::connect(addr, options)?)),
        #[cfg(feature = "redis")]
        TransportConfig::Redis {
            addr,
            name,
            mode,
            access,
        } => redis::producer(
            addr,
            name,
            *mode,
            Login::new(access, options, config)?,
            options,
        ),
        #[cfg(feature = "nats")]
        TransportConfig::Nats {
            addr,
            subject,
            jetstream,
            access,
        } => nats::producer(
            addr,
            subject,
            *jetstream,
            Login::new(access, options, config)?,
            options,
        ),
        #[cfg(feature = "kafka")]
        TransportConfig::Kafka {
            bootstrap,
            topic,
            access,
        } => Ok(Box::new(kafka::KafkaProducer::connect(
            bootstrap,
            topic,
            Login::new(access, options, config)?,
            options,
        )?)),
        #[allow(unreachable_patterns)]
        other => Err(not_built(other)),
    }
}

/// Connects a consumer to `config` in `options.group`. For `tcp://`, binds the address and
/// takes frames from whoever connects.
pub fn connect_consumer(
    config: &TransportConfig,
    options: &ClientOptions,
) -> Result<Box<dyn Consumer>, BrokerError> {
    match config {
        TransportConfig::Tcp { addr } => Ok(Box::new(tcp::TcpConsumer::bind(addr, options)?)),
        #[cfg(feature = "redis")]
        TransportConfig::Redis {
            addr,
            name,
            mode,
            access,
        } => redis::consumer(
            addr,
            name,
            *mode,
            Login::new(access, options, config)?,
            options,
        ),
        #[cfg(feature = "nats")]
        TransportConfig::Nats {
            addr,
            subject,
            jetstream,
            access,
        } => nats::consumer(
            addr,
            subject,
            *jetstream,
            Login::new(access, options, config)?,
            options,
        ),
        #[cfg(feature = "kafka")]
        TransportConfig::Kafka {
            bootstrap,
            topic,
            access,
        } => Ok(Box::new(kafka::KafkaConsumer::connect(
            bootstrap,
            topic,
            Login::new(access, options, config)?,
            options,
        )?)),
        #[allow(unreachable_patterns)]
        other => Err(not_built(other)),
    }
}

/// The Kafka-protocol broker `config` reaches, for the run's report; `None` for the other
/// backends (their reports name them by URL).
#[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
pub fn identify(
    config: &TransportConfig,
    options: &ClientOptions,
) -> Result<Option<BrokerIdentity>, BrokerError> {
    match config {
        #[cfg(feature = "kafka")]
        TransportConfig::Kafka {
            bootstrap, access, ..
        } => kafka::identify(bootstrap, Login::new(access, options, config)?, options).map(Some),
        #[allow(unreachable_patterns)]
        _ => Ok(None),
    }
}

#[allow(dead_code)] // unused when every broker feature is on
fn not_built(config: &TransportConfig) -> BrokerError {
    let (backend, feature) = match config {
        TransportConfig::Redis { .. } => ("Redis", "redis"),
        TransportConfig::Nats { .. } => ("NATS", "nats"),
        _ => ("Kafka", "kafka"),
    };
    BrokerError::NotBuilt { backend, feature }
}

/// Bytes waiting in a reader thread's queue, so a queue of big messages stays bounded in
/// memory, not only in count: the reader waits for room while more than [`QUEUE_BYTES`] wait
/// (at least one message always fits), and its backend's own flow control does the rest.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueuedBytes(std::sync::Arc<std::sync::atomic::AtomicUsize>);

/// Most payload bytes a reader thread queues ahead of `poll`.
pub(crate) const QUEUE_BYTES: usize = 64 << 20;

impl QueuedBytes {
    /// Waits (polling) until the queue has room or `stop` says to give up.
    pub fn wait_for_room(&self, stop: impl Fn() -> bool) {
        use std::sync::atomic::Ordering;
        while self.0.load(Ordering::Relaxed) > QUEUE_BYTES && !stop() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn add(&self, n: usize) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn taken(&self, n: usize) {
        self.0.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Refuses a payload above the limit, naming both.
pub(crate) fn check_size(len: usize, limit: usize, what: &str) -> Result<(), BrokerError> {
    if len > limit {
        return Err(BrokerError::TooLarge {
            len,
            limit,
            what: what.to_string(),
        });
    }
    Ok(())
}

/// A producer's acknowledgements as they come back: counts, the first refusal, and
/// send → ack latency. Shared by every backend that has acks; whoever sees an ack records it.
#[derive(Debug, Default)]
pub(crate) struct AckTally {
    latency: Recorder,
    acked: u64,
    failed: u64,
    unrouted: u64,
    first_failure: Option<String>,
}

impl AckTally {
    /// The broker acknowledged a message handed over at `sent`.
    pub fn acked(&mut self, sent: Instant) {
        self.acked += 1;
        self.latency.record_ns(sent.elapsed().as_nanos() as u64);
    }

    /// The broker took a message but nobody received it (Redis pub/sub without subscribers).
    pub fn unrouted(&mut self) {
        self.acked += 1;
        self.unrouted += 1;
    }

    /// The broker refused `count` messages.
    pub fn refused(&mut self, count: u64, why: impl std::fmt::Display) {
        self.failed += count;
        self.first_failure.get_or_insert_with(|| why.to_string());
    }

    /// The stats of a producer that has sent `sent` messages: what is neither acknowledged
    /// nor refused counts as failed too, so `acked + failed = sent`.
    pub fn stats(&self, sent: u64) -> ProducerStats {
        ProducerStats {
            sent,
            acked: self.acked,
            failed: self.failed + sent.saturating_sub(self.acked + self.failed),
            unrouted: self.unrouted,
            ack_latency_s: (self.latency.count() > 0).then(|| self.latency.summary()),
        }
    }

    /// `finish`'s answer once the wait for acks is over: messages still unacknowledged after
    /// `timeout`, else the refusals, else Ok.
    pub fn outcome(&self, sent: u64, timeout: Duration) -> Result<(), BrokerError> {
        let open = sent.saturating_sub(self.acked + self.failed);
        if open > 0 {
            return Err(BrokerError::Unacked {
                count: open,
                timeout,
            });
        }
        match &self.first_failure {
            Some(first) => Err(BrokerError::Refused {
                count: self.failed,
                first: first.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// An at-most-once backend's batch (nothing to acknowledge): `first`, then whatever `more`
/// has ready at once, up to `max` payloads. Payloads above `max_payload` are counted and
/// skipped; `stats` counts the rest as delivered and acknowledged.
pub(crate) fn take_ready(
    first: Bytes,
    max: usize,
    max_payload: usize,
    stats: &mut ConsumerStats,
    mut more: impl FnMut() -> Option<Bytes>,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    let mut next = Some(first);
    let mut taken = 0;
    while let Some(payload) = next.take() {
        taken += 1;
        if payload.len() > max_payload {
            stats.oversized += 1;
        } else {
            out.push(Delivery {
                payload,
                redelivered: false,
                token: AckToken::None,
            });
        }
        if taken < max {
            next = more();
        }
    }
    stats.delivered += out.len() as u64;
    stats.acked = stats.delivered;
    out
}

/// rustls' handshake failures as the Redis and NATS clients word them (both wrap them in an
/// I/O error): a certificate that does not verify (unknown issuer, wrong name, expired) or a
/// peer that does not speak TLS.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn tls_failure(why: &str) -> bool {
    [
        "certificate",
        "InvalidContentType",
        "CorruptMessage",
        "handshake",
        "TLS",
    ]
    .iter()
    .any(|needle| why.contains(needle))
}

/// Retries `attempt` ([`crate::retry`]) until it succeeds or `timeout` passes, then names
/// what could not be reached. An error `is_final` turns into a [`BrokerError`] (a refused
/// login, a certificate that does not verify) ends it at once. Used by the Redis and NATS
/// connects.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn retry<T, E: std::fmt::Display>(
    what: &'static str,
    addr: &str,
    timeout: Duration,
    is_final: impl Fn(&E) -> Option<BrokerError>,
    mut attempt: impl FnMut(Duration) -> Result<T, E>,
) -> Result<T, BrokerError> {
    let attempt = |left| {
        attempt(left).map_err(|e| match is_final(&e) {
            Some(fatal) => Failed::Final(fatal),
            None => Failed::Retry(e),
        })
    };
    retry_broker(what, addr, timeout, attempt)
}

/// [`crate::retry::connect`] to a broker: giving up is [`BrokerError::Unreachable`] naming
/// `what`, the address, the timeout and the last attempt's error.
#[cfg_attr(
    not(any(feature = "redis", feature = "nats", feature = "kafka")),
    allow(dead_code)
)]
pub(crate) fn retry_broker<T, E: std::fmt::Display>(
    what: &'static str,
    addr: &str,
    timeout: Duration,
    attempt: impl FnMut(Duration) -> Result<T, Failed<E, BrokerError>>,
) -> Result<T, BrokerError> {
    crate::retry::connect(addr, timeout, attempt).map_err(|e| match e {
        crate::retry::GaveUp::Final(fatal) => fatal,
        crate::retry::GaveUp::TimedOut(t) => BrokerError::Unreachable {
            what,
            addr: t.addr,
            timeout,
            why: t.last.to_string(),
        },
    })
}
