//! `redis://host:port/name`: a Redis stream with a consumer group (`?mode=streams`, the
//! default) or a pub/sub channel (`?mode=pubsub`), on the `redis` crate's blocking client.
//!
//! * Streams, at-least-once, used as a work queue: producers pipeline `XADD name * d <payload>`
//!   (the reply is the ack); consumers `XREADGROUP` in `options.group`, and `ack` is
//!   `XACK` + `XDEL` (an entry every group member has finished is removed, so a run leaves no
//!   backlog; one group per stream). Entries a consumer took and never acked (it died) are
//!   claimed by the others with `XAUTOCLAIM` once idle for `redeliver_after`.
//! * Pub/sub, at-most-once: producers pipeline `PUBLISH` (the reply counts subscribers; none
//!   means the message reached nobody, counted as unrouted). A reader thread owns the
//!   subscription and feeds a bounded queue. A subscriber that falls behind by more than the
//!   server's `client-output-buffer-limit pubsub` is disconnected by Redis: the consumer then
//!   fails with [`BrokerError::Dropped`], which says so and what to use instead.
//!
//! A connection presents the URL's user and password (`AUTH`), speaks TLS for `rediss://`
//! (rustls, verified against the system's roots or `--tls-ca`; never plaintext), and checks
//! both with a `PING` before anything else, so a refused login (`WRONGPASS`, `NOAUTH`) or a
//! certificate that does not verify fails the connect at once, with Redis' reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use redis::{
    Connection, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    TlsCertificates, Value,
};

use super::{
    check_size, retry, take_ready, tls_failure, AckTally, AckToken, BrokerError, ClientOptions,
    Consumer, ConsumerStats, Delivery, Login, Producer, ProducerStats, QueuedBytes,
};
use crate::config::RedisMode;

/// The stream entry's field holding the payload.
const FIELD: &str = "d";
/// Commands a producer pipelines before it sends them on its own.
const PIPELINE: usize = 128;
/// Bytes a producer buffers before it sends them on its own.
const PIPELINE_BYTES: usize = 1 << 20;
/// Slack over a blocking read's own timeout before the socket gives up: a reply that arrives
/// after the socket timed out would be thrown away with the entries it carried.
const READ_SLACK: Duration = Duration::from_secs(5);

pub fn connect(addr: &str, login: Login<'_>, timeout: Duration) -> Result<Connection, BrokerError> {
    let client = client(addr, login)?;
    let con = retry(
        "redis",
        addr,
        timeout,
        |e| final_error(addr, e),
        |left| {
            let mut con = client.get_connection_with_timeout(left)?;
            // Without a password Redis accepts the connection and refuses each command.
            redis::cmd("PING").query::<()>(&mut con)?;
            Ok::<_, RedisError>(con)
        },
    )
    .map_err(|e| match e {
        // A plaintext Redis never answers a TLS hello: the wait times out, unexplained.
        BrokerError::Unreachable {
            what,
            addr,
            timeout,
            why,
        } if login.tls => BrokerError::Unreachable {
            what,
            addr,
            timeout,
            why: format!("{why} (TLS was asked for: is this a TLS port?)"),
        },
        other => other,
    })?;
    con.set_write_timeout(Some(Duration::from_secs(30)))
        .and_then(|()| con.set_read_timeout(Some(Duration::from_secs(30))))
        .map_err(|e| BrokerError::backend(format!("redis {addr}: {e}")))?;
    Ok(con)
}

fn client(addr: &str, login: Login<'_>) -> Result<redis::Client, BrokerError> {
    let bad = |e: RedisError| BrokerError::backend(format!("redis address {addr}: {e}"));
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
        .ok_or_else(|| BrokerError::backend(format!("redis address {addr}: not host:port")))?;
    let address = if login.tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    };
    let mut settings = RedisConnectionInfo::default();
    if let Some(user) = login.user {
        settings = settings.set_username(user);
    }
    if let Some(password) = login.password {
        settings = settings.set_password(password.expose());
    }
    let info = address
        .into_connection_info()
        .map_err(bad)?
        .set_redis_settings(settings);
    match login.ca_pem()? {
        Some(root_cert) => redis::Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        ),
        None => redis::Client::open(info),
    }
    .map_err(bad)
}

/// A connect error retrying cannot cure: a refused login or a TLS failure.
fn final_error(addr: &str, e: &RedisError) -> Option<BrokerError> {
    let why = e.to_string();
    let refused = matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || e.kind() == redis::ErrorKind::AuthenticationFailed;
    if refused {
        return Some(BrokerError::Auth {
            what: "redis",
            addr: addr.to_string(),
            why,
        });
    }
    tls_failure(&why).then(|| BrokerError::Tls {
        what: "redis",
        addr: addr.to_string(),
        why,
    })
}

fn failed(addr: &str, e: &RedisError) -> BrokerError {
    BrokerError::Backend(format!("redis {addr}: {e}"))
}

pub fn producer(
    addr: &str,
    name: &str,
    mode: RedisMode,
    login: Login<'_>,
    options: &ClientOptions,
) -> Result<Box<dyn Producer>, BrokerError> {
    let mut con = connect(addr, login, options.connect_timeout)?;
    if mode == RedisMode::Streams && !options.create {
        let exists: bool = redis::cmd("EXISTS")
            .arg(name)
            .query(&mut con)
            .map_err(|e| failed(addr, &e))?;
        if !exists {
            return Err(BrokerError::Missing {
                what: "redis stream",
                name: name.to_string(),
            });
        }
    }
    Ok(Box::new(RedisProducer {
        addr: addr.to_string(),
        name: name.to_string(),
        mode,
        con,
        pipe: pipeline(),
        queued: Vec::with_capacity(PIPELINE),
        queued_bytes: 0,
        max_payload: options.max_payload,
        sent: 0,
        acks: AckTally::default(),
    }))
}

/// A pipeline whose replies come back one per command even when some are errors, so one
/// refused command does not count its whole batch as refused.
fn pipeline() -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe
}

struct RedisProducer {
    addr: String,
    name: String,
    mode: RedisMode,
    con: Connection,
    pipe: redis::Pipeline,
    /// When each pipelined command was handed to `send`.
    queued: Vec<Instant>,
    queued_bytes: usize,
    max_payload: usize,
    sent: u64,
    /// Filled from each pipeline's replies.
    acks: AckTally,
}

impl Producer for RedisProducer {
    fn send(&mut self, _key: u32, payload: &[u8]) -> Result<(), BrokerError> {
        check_size(payload.len(), self.max_payload, "this redis transport")?;
        match self.mode {
            RedisMode::Streams => self
                .pipe
                .cmd("XADD")
                .arg(&self.name)
                .arg("*")
                .arg(FIELD)
                .arg(payload),
            RedisMode::PubSub => self.pipe.cmd("PUBLISH").arg(&self.name).arg(payload),
        };
        self.queued.push(Instant::now());
        self.queued_bytes += payload.len();
        self.sent += 1;
        if self.queued.len() >= PIPELINE || self.queued_bytes >= PIPELINE_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BrokerError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let pipe = std::mem::replace(&mut self.pipe, pipeline());
        self.queued_bytes = 0;
        let replies = pipe.query::<Vec<Value>>(&mut self.con);
        let queued = self.queued.drain(..);
        match replies {
            Ok(replies) => {
                for (reply, sent) in replies.iter().zip(queued) {
                    match reply {
                        Value::ServerError(e) => self.acks.refused(1, format!("{e:?}")),
                        // PUBLISH's reply counts the subscribers that got it.
                        Value::Int(0) => self.acks.unrouted(),
                        _ => self.acks.acked(sent),
                    }
                }
                Ok(())
            }
            Err(e) if e.is_io_error() || e.is_connection_dropped() => Err(failed(&self.addr, &e)),
            Err(e) => {
                // Not one command's refusal (those are per-reply errors above): the whole
                // batch's answer was unreadable, so none of it counts as acknowledged.
                self.acks.refused(queued.len() as u64, e);
                Ok(())
            }
        }
    }

    fn finish(&mut self, timeout: Duration) -> Result<(), BrokerError> {
        self.flush()?;
        self.acks.outcome(self.sent, timeout)
    }

    fn stats(&self) -> ProducerStats {
        self.acks.stats(self.sent)
    }
}

pub fn consumer(
    addr: &str,
    name: &str,
    mode: RedisMode,
    login: Login<'_>,
    options: &ClientOptions,
) -> Result<Box<dyn Consumer>, BrokerError> {
    let con = connect(addr, login, options.connect_timeout)?;
    match mode {
        RedisMode::Streams => Ok(Box::new(StreamConsumer::connect(con, addr, name, options)?)),
        RedisMode::PubSub => Ok(Box::new(PubSubConsumer::subscribe(
            con, addr, name, options,
        )?)),
    }
}

struct StreamConsumer {
    addr: String,
    name: String,
    group: String,
    consumer: String,
    con: Connection,
    redeliver_after: Duration,
    last_claim: Instant,
    max_payload: usize,
    prefetch: usize,
    stats: ConsumerStats,
}

impl StreamConsumer {
    fn connect(
        mut con: Connection,
        addr: &str,
        name: &str,
        options: &ClientOptions,
    ) -> Result<Self, BrokerError> {
        let mut create = redis::cmd("XGROUP");
        create.arg("CREATE").arg(name).arg(&options.group).arg("0");
        if options.create {
            create.arg("MKSTREAM");
        }
        match create.query::<()>(&mut con) {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(_) if !options.create => {
                return Err(BrokerError::Missing {
                    what: "redis stream",
                    name: name.to_string(),
                })
            }
            Err(e) => return Err(failed(addr, &e)),
        }
        Ok(Self {
            addr: addr.to_string(),
            name: name.to_string(),
            group: options.group.clone(),
            consumer: options.consumer.clone(),
            con,
            redeliver_after: options.redeliver_after,
            last_claim: Instant::now(),
            max_payload: options.max_payload,
            prefetch: options.prefetch.max(1),
            stats: ConsumerStats::default(),
        })
    }

    /// Entries other consumers took and left unacked longer than `redeliver_after`.
    fn claim(&mut self, max: usize) -> Result<Vec<(String, Bytes)>, BrokerError> {
        self.last_claim = Instant::now();
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.name)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.redeliver_after.as_millis() as u64)
            .arg("0-0")
            .arg(StreamAutoClaimOptions::default().count(max))
            .query(&mut self.con)
            .map_err(|e| failed(&self.addr, &e))?;
        Ok(reply
            .claimed
            .into_iter()
            .map(|entry| (entry.id.clone(), field(entry.map.get(FIELD))))
            .collect())
    }

    fn read(&mut self, max: usize, timeout: Duration) -> Result<Vec<(String, Bytes)>, BrokerError> {
        // BLOCK 0 would mean forever.
        let block = timeout.as_millis().max(1) as usize;
        self.con
            .set_read_timeout(Some(timeout + READ_SLACK))
            .map_err(|e| failed(&self.addr, &e))?;
        let options = StreamReadOptions::default()
            .group(&self.group, &self.consumer)
            .count(max)
            .block(block);
        let reply: Option<StreamReadReply> =
            redis::Commands::xread_options(&mut self.con, &[&self.name], &[">"], &options)
                .map_err(|e| failed(&self.addr, &e))?;
        Ok(reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|key| key.ids)
            .map(|entry| (entry.id.clone(), field(entry.map.get(FIELD))))
            .collect())
    }

    fn remove(&mut self, ids: &[&str]) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&self.name).arg(&self.group).arg(ids);
        pipe.cmd("XDEL").arg(&self.name).arg(ids).ignore();
        let (acked,): (u64,) = pipe
            .query(&mut self.con)
            .map_err(|e| failed(&self.addr, &e))?;
        self.stats.acked += acked;
        Ok(())
    }
}

/// The payload field of an entry (empty if it has none: not written by plumbline).
fn field(value: Option<&Value>) -> Bytes {
    match value {
        Some(Value::BulkString(b)) => Bytes::copy_from_slice(b),
        _ => Bytes::new(),
    }
}

impl Consumer for StreamConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let max = max.clamp(1, self.prefetch);
        let mut redelivered = false;
        let mut entries = Vec::new();
        if self.last_claim.elapsed() >= self.redeliver_after / 2 {
            entries = self.claim(max)?;
            redelivered = !entries.is_empty();
        }
        if entries.is_empty() {
            entries = self.read(max, timeout)?;
        }
        let mut out = Vec::with_capacity(entries.len());
        let mut oversized = Vec::new();
        for (id, payload) in entries {
            if payload.len() > self.max_payload {
                oversized.push(id);
                continue;
            }
            out.push(Delivery {
                payload,
                redelivered,
                token: AckToken::Id(id),
            });
        }
        if !oversized.is_empty() {
            self.stats.oversized += oversized.len() as u64;
            let ids: Vec<&str> = oversized.iter().map(String::as_str).collect();
            self.remove(&ids)?;
        }
        self.stats.delivered += out.len() as u64;
        if redelivered {
            self.stats.redelivered += out.len() as u64;
        }
        Ok(out)
    }

    fn ack(&mut self, done: &[Delivery]) -> Result<(), BrokerError> {
        let ids: Vec<&str> = done
            .iter()
            .filter_map(|d| match &d.token {
                AckToken::Id(id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.remove(&ids)
    }

    fn stats(&self) -> ConsumerStats {
        self.stats.clone()
    }
}

/// Messages queued between the subscription's reader thread and `poll`. When full, the
/// reader stops reading and Redis buffers for us, up to its pub/sub output-buffer limit.
const SUBSCRIBER_QUEUE: usize = 4096;
/// How often the reader thread looks at its stop flag.
const READER_TICK: Duration = Duration::from_millis(200);

struct PubSubConsumer {
    messages: Receiver<Result<Bytes, String>>,
    queued: QueuedBytes,
    /// Why the subscription ended, seen after messages that were still returned.
    ended: Option<String>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    max_payload: usize,
    stats: ConsumerStats,
}

impl PubSubConsumer {
    fn subscribe(
        mut con: Connection,
        addr: &str,
        channel: &str,
        options: &ClientOptions,
    ) -> Result<Self, BrokerError> {
        let (tx, messages) = sync_channel(SUBSCRIBER_QUEUE);
        let (ready_tx, ready) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let queued = QueuedBytes::default();
        let (addr, channel) = (addr.to_string(), channel.to_string());
        let reader = std::thread::Builder::new()
            .name("redis-subscriber".into())
            .spawn({
                let stop = stop.clone();
                let queued = queued.clone();
                move || {
                    // The PubSub borrows the connection and unsubscribes when dropped, so this
                    // thread owns both for the subscription's life.
                    let mut sub = con.as_pubsub();
                    let subscribed = sub
                        .subscribe(&channel)
                        .and_then(|()| sub.set_read_timeout(Some(READER_TICK)));
                    let ok = subscribed.is_ok();
                    let _ = ready_tx.send(subscribed.map_err(|e| failed(&addr, &e)));
                    if !ok {
                        return;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        match sub.get_message() {
                            Ok(m) => {
                                let payload = Bytes::copy_from_slice(m.get_payload_bytes());
                                queued.wait_for_room(|| stop.load(Ordering::Relaxed));
                                queued.add(payload.len());
                                if tx.send(Ok(payload)).is_err() {
                                    return;
                                }
                            }
                            Err(e) if e.is_timeout() => {}
                            Err(e) => {
                                let _ = tx.send(Err(format!(
                                    "redis {addr} ended the subscription to '{channel}' ({e}). \
                                     Redis disconnects a subscriber that falls behind by more than \
                                     its client-output-buffer-limit for pubsub (CONFIG GET \
                                     client-output-buffer-limit); what was published after that \
                                     is lost to it. Pub/sub holds no backlog: use ?mode=streams, \
                                     or send references (--stream-method proxy) for large payloads"
                                )));
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| BrokerError::backend(format!("spawning the redis subscriber: {e}")))?;
        ready
            .recv()
            .map_err(|_| BrokerError::backend("the redis subscriber thread died"))??;
        Ok(Self {
            messages,
            stop,
            reader: Some(reader),
            queued,
            ended: None,
            max_payload: options.max_payload,
            stats: ConsumerStats::default(),
        })
    }
}

impl Consumer for PubSubConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError> {
        if let Some(why) = self.ended.take() {
            return Err(BrokerError::Dropped(why));
        }
        let first = match self.messages.recv_timeout(timeout) {
            Ok(Ok(payload)) => payload,
            Ok(Err(why)) => return Err(BrokerError::Dropped(why)),
            Err(RecvTimeoutError::Timeout) => return Ok(Vec::new()),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(BrokerError::Dropped("the subscriber thread ended".into()))
            }
        };
        self.queued.taken(first.len());
        let (messages, queued, ended) = (&self.messages, &self.queued, &mut self.ended);
        // The subscription's end after some messages: they are returned, the end next poll.
        let more = || match messages.try_recv() {
            Ok(Ok(payload)) => {
                queued.taken(payload.len());
                Some(payload)
            }
            Ok(Err(why)) => {
                *ended = Some(why);
                None
            }
            Err(_) => None,
        };
        Ok(take_ready(
            first,
            max,
            self.max_payload,
            &mut self.stats,
            more,
        ))
    }

    fn ack(&mut self, _done: &[Delivery]) -> Result<(), BrokerError> {
        Ok(())
    }

    fn stats(&self) -> ConsumerStats {
        self.stats.clone()
    }
}

impl Drop for PubSubConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a reader waiting on a full queue.
        while self.messages.try_recv().is_ok() {}
        if let Some(reader) = self.reader.take() {
            while !reader.is_finished() {
                while self.messages.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = reader.join();
        }
    }
}
