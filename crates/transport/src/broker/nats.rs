//! `nats://host:port/subject`: NATS core (consumers share the subject in a queue group,
//! at-most-once) or, with `?jetstream=1`, a JetStream work-queue stream (explicit acks,
//! AckWait redelivery, each member's pull batch as its credit: at-least-once).
//!
//! The client is `async-nats`; each producer or consumer owns a tokio runtime with one worker
//! thread, so the connection keeps reading and answering pings between the blocking calls
//! the traits make (a current-thread runtime would only run inside a call, and a consumer busy
//! working would drop messages as a slow consumer).
//!
//! JetStream: the stream is whichever stream already captures the subject, or else a new
//! memory stream `plumbline_<subject>` with work-queue retention (an acked message is
//! removed). The group is the durable pull consumer's name. Producers keep up to
//! [`ACK_WINDOW`] publishes awaiting their ack, each timed from `send`.
//!
//! A connection presents the URL's user and password (async-nats ignores a URL's userinfo, so
//! it is handed over explicitly), and with `?tls=1` requires TLS (verified against the system's
//! roots or `--tls-ca`). A refused login or a TLS failure ends the connect at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use super::{
    check_size, retry, take_ready, tls_failure, AckTally, AckToken, BrokerError, ClientOptions,
    Consumer, ConsumerStats, Delivery, Login, Producer, ProducerStats,
};

/// JetStream publishes in flight (sent, ack not yet back) per producer.
pub const ACK_WINDOW: usize = 1024;

/// A connection with the runtime that drives it.
struct Nats {
    addr: String,
    rt: Runtime,
    client: async_nats::Client,
    /// Slow-consumer events: the client dropped messages because its subscription queue was
    /// full. A lower bound: the client reports these events through a bounded channel.
    slow: Arc<AtomicU64>,
}

impl Nats {
    fn connect(addr: &str, login: Login<'_>, options: &ClientOptions) -> Result<Self, BrokerError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats-client")
            .enable_all()
            .build()
            .map_err(|e| BrokerError::backend(format!("starting the NATS client runtime: {e}")))?;
        let slow = Arc::new(AtomicU64::new(0));
        let client = retry(
            "nats",
            addr,
            options.connect_timeout,
            |e| final_error(addr, e),
            |left| {
                let slow = slow.clone();
                let mut connect = async_nats::ConnectOptions::new()
                    .connection_timeout(left.min(Duration::from_secs(5)))
                    .event_callback(move |event| {
                        let slow = slow.clone();
                        async move {
                            if let async_nats::Event::SlowConsumer(_) = event {
                                slow.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                // A password without a user is NATS' token.
                connect = match (login.user, login.password) {
                    (Some(user), Some(password)) => {
                        connect.user_and_password(user.into(), password.expose().into())
                    }
                    (None, Some(token)) => connect.token(token.expose().into()),
                    _ => connect,
                };
                if login.tls {
                    connect = connect.require_tls(true);
                }
                if let Some(ca) = login.ca {
                    connect = connect.add_root_certificates(ca.to_path_buf());
                }
                rt.block_on(connect.connect(addr))
            },
        )?;
        Ok(Self {
            addr: addr.to_string(),
            rt,
            client,
            slow,
        })
    }

    fn failed(&self, e: impl std::fmt::Display) -> BrokerError {
        BrokerError::Backend(format!("nats {}: {e}", self.addr))
    }

    /// The smaller of plumbline's cap and the server's max_payload.
    fn limit(&self, max_payload: usize) -> (usize, String) {
        let server = self.client.server_info().max_payload;
        if server > 0 && server < max_payload {
            (server, format!("nats server {} (max_payload)", self.addr))
        } else {
            (max_payload, "this nats transport".to_string())
        }
    }

    fn flush(&self) -> Result<(), BrokerError> {
        self.rt
            .block_on(self.client.flush())
            .map_err(|e| self.failed(e))
    }

    /// The JetStream stream capturing `subject`: an existing one, or a new work queue.
    fn stream(&self, subject: &str, create: bool) -> Result<stream::Stream, BrokerError> {
        let _runtime = self.rt.enter();
        let js = jetstream::new(self.client.clone());
        self.rt.block_on(async {
            if let Ok(name) = js.stream_by_subject(subject).await {
                return js.get_stream(name).await.map_err(|e| self.failed(e));
            }
            if !create {
                return Err(BrokerError::Missing {
                    what: "jetstream stream for subject",
                    name: subject.to_string(),
                });
            }
            let created = js
                .get_or_create_stream(stream::Config {
                    name: stream_name(subject),
                    subjects: vec![subject.to_string()],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: stream::StorageType::Memory,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(stream) => Ok(stream),
                // Members starting together race to create it: the loser is told the subjects
                // overlap with an existing stream, the winner's, which is the one to use.
                Err(e) => match js.stream_by_subject(subject).await {
                    Ok(name) => js.get_stream(name).await.map_err(|e| self.failed(e)),
                    Err(_) => Err(self.failed(e)),
                },
            }
        })
    }
}

/// A connect error retrying cannot cure: a refused login or a TLS failure.
fn final_error(addr: &str, e: &async_nats::ConnectError) -> Option<BrokerError> {
    use async_nats::ConnectErrorKind as Kind;
    let why = e.to_string();
    let addr = addr.to_string();
    match e.kind() {
        Kind::AuthorizationViolation | Kind::Authentication => Some(BrokerError::Auth {
            what: "nats",
            addr,
            why,
        }),
        Kind::Tls => Some(BrokerError::Tls {
            what: "nats",
            addr,
            why,
        }),
        Kind::Io if tls_failure(&why) => Some(BrokerError::Tls {
            what: "nats",
            addr,
            why,
        }),
        _ => None,
    }
}

/// `plumbline_<subject>` with what stream names may not hold replaced.
fn stream_name(subject: &str) -> String {
    let safe: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("plumbline_{safe}")
}

pub fn producer(
    addr: &str,
    subject: &str,
    jetstream: bool,
    login: Login<'_>,
    options: &ClientOptions,
) -> Result<Box<dyn Producer>, BrokerError> {
    let nats = Nats::connect(addr, login, options)?;
    let (limit, what) = nats.limit(options.max_payload);
    if !jetstream {
        return Ok(Box::new(CoreProducer {
            nats,
            subject: subject.to_string(),
            limit,
            what,
            sent: 0,
        }));
    }
    nats.stream(subject, options.create)?;
    let js = {
        let _runtime = nats.rt.enter();
        jetstream::new(nats.client.clone())
    };
    Ok(Box::new(JetStreamProducer {
        nats,
        js,
        subject: subject.to_string(),
        limit,
        what,
        window: Arc::new(Semaphore::new(ACK_WINDOW)),
        acks: Arc::new(Mutex::new(AckTally::default())),
        sent: 0,
    }))
}

struct CoreProducer {
    nats: Nats,
    subject: String,
    limit: usize,
    what: String,
    sent: u64,
}

impl Producer for CoreProducer {
    fn send(&mut self, _key: u32, payload: &[u8]) -> Result<(), BrokerError> {
        check_size(payload.len(), self.limit, &self.what)?;
        let nats = &self.nats;
        nats.rt
            .block_on(
                nats.client
                    .publish(self.subject.clone(), Bytes::copy_from_slice(payload)),
            )
            .map_err(|e| nats.failed(e))?;
        self.sent += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BrokerError> {
        self.nats.flush()
    }

    fn finish(&mut self, _timeout: Duration) -> Result<(), BrokerError> {
        self.nats.flush()
    }

    fn stats(&self) -> ProducerStats {
        ProducerStats {
            sent: self.sent,
            acked: self.sent,
            ..ProducerStats::default()
        }
    }
}

struct JetStreamProducer {
    nats: Nats,
    js: jetstream::Context,
    subject: String,
    limit: usize,
    what: String,
    /// One permit per publish awaiting its ack.
    window: Arc<Semaphore>,
    acks: Arc<Mutex<AckTally>>,
    sent: u64,
}

impl Producer for JetStreamProducer {
    fn send(&mut self, _key: u32, payload: &[u8]) -> Result<(), BrokerError> {
        check_size(payload.len(), self.limit, &self.what)?;
        let nats = &self.nats;
        let sent = Instant::now();
        let (permit, ack) = nats.rt.block_on(async {
            let permit = self.window.clone().acquire_owned().await;
            let ack = self
                .js
                .publish(self.subject.clone(), Bytes::copy_from_slice(payload))
                .await;
            (permit, ack)
        });
        let permit = permit.map_err(|e| nats.failed(e))?;
        let ack = ack.map_err(|e| nats.failed(e))?;
        let acks = self.acks.clone();
        nats.rt.spawn(async move {
            let result = ack.await;
            let mut acks = acks.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(_) => acks.acked(sent),
                Err(e) => acks.refused(1, e),
            }
            drop(permit);
        });
        self.sent += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BrokerError> {
        self.nats.flush()
    }

    fn finish(&mut self, timeout: Duration) -> Result<(), BrokerError> {
        self.nats.flush()?;
        let all = self.nats.rt.block_on(async {
            tokio::time::timeout(timeout, self.window.acquire_many(ACK_WINDOW as u32)).await
        });
        drop(all);
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        acks.outcome(self.sent, timeout)
    }

    fn stats(&self) -> ProducerStats {
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        acks.stats(self.sent)
    }
}

pub fn consumer(
    addr: &str,
    subject: &str,
    jetstream: bool,
    login: Login<'_>,
    options: &ClientOptions,
) -> Result<Box<dyn Consumer>, BrokerError> {
    let nats = Nats::connect(addr, login, options)?;
    if !jetstream {
        let sub = nats
            .rt
            .block_on(
                nats.client
                    .queue_subscribe(subject.to_string(), options.group.clone()),
            )
            .map_err(|e| nats.failed(e))?;
        // The subscription is in place at the server before anyone is told to publish.
        nats.flush()?;
        return Ok(Box::new(CoreConsumer {
            nats,
            sub,
            max_payload: options.max_payload,
            stats: ConsumerStats::default(),
        }));
    }
    let stream = nats.stream(subject, options.create)?;
    let messages = nats.rt.block_on(async {
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &options.group,
                pull::Config {
                    durable_name: Some(options.group.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: options.redeliver_after,
                    // MaxAckPending counts the whole group's unacked messages: a cap of one
                    // member's prefetch would let one member starve the others. Each member
                    // is held to `prefetch` by its pull batch instead.
                    max_ack_pending: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats.failed(e))?;
        consumer
            .stream()
            .max_messages_per_batch(options.prefetch)
            .messages()
            .await
            .map_err(|e| nats.failed(e))
    })?;
    Ok(Box::new(JetStreamConsumer {
        nats,
        messages,
        max_payload: options.max_payload,
        stats: ConsumerStats::default(),
    }))
}

struct CoreConsumer {
    nats: Nats,
    sub: async_nats::Subscriber,
    max_payload: usize,
    stats: ConsumerStats,
}

impl Consumer for CoreConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let sub = &mut self.sub;
        let first = self
            .nats
            .rt
            .block_on(async { tokio::time::timeout(timeout, sub.next()).await });
        let first = match first {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err(self.nats.failed("the subscription ended")),
            Ok(Some(m)) => m.payload,
        };
        let more = || sub.next().now_or_never().flatten().map(|m| m.payload);
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
        ConsumerStats {
            dropped: self.nats.slow.load(Ordering::Relaxed),
            ..self.stats.clone()
        }
    }
}

struct JetStreamConsumer {
    nats: Nats,
    messages: pull::Stream,
    max_payload: usize,
    stats: ConsumerStats,
}

impl JetStreamConsumer {
    fn ack_subjects<'a>(
        &self,
        subjects: impl Iterator<Item = &'a str>,
    ) -> Result<u64, BrokerError> {
        self.reply(subjects, b"+ACK")
    }

    /// Sends `body` (`+ACK`, `-NAK`) to each reply subject and flushes: the replies leave
    /// before the caller moves on, so a crash right after loses none.
    fn reply<'a>(
        &self,
        subjects: impl Iterator<Item = &'a str>,
        body: &'static [u8],
    ) -> Result<u64, BrokerError> {
        let nats = &self.nats;
        nats.rt.block_on(async {
            let mut n = 0;
            for reply in subjects {
                nats.client
                    .publish(reply.to_string(), Bytes::from_static(body))
                    .await
                    .map_err(|e| nats.failed(e))?;
                n += 1;
            }
            nats.client.flush().await.map_err(|e| nats.failed(e))?;
            Ok(n)
        })
    }
}

impl Consumer for JetStreamConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let _runtime = self.nats.rt.enter();
        let messages = &mut self.messages;
        let first = self
            .nats
            .rt
            .block_on(async { tokio::time::timeout(timeout, messages.next()).await });
        let mut next = match first {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err(self.nats.failed("the JetStream consumer ended")),
            Ok(Some(m)) => Some(m),
        };
        let mut out = Vec::new();
        let mut oversized = Vec::new();
        while let Some(m) = next.take() {
            let m = m.map_err(|e| self.nats.failed(e))?;
            let redelivered = m.info().map(|i| i.delivered > 1).unwrap_or(false);
            let Some(reply) = m.reply.as_ref().map(|r| r.to_string()) else {
                continue;
            };
            if m.payload.len() > self.max_payload {
                oversized.push(reply);
            } else {
                self.stats.redelivered += u64::from(redelivered);
                out.push(Delivery {
                    payload: m.payload.clone(),
                    redelivered,
                    token: AckToken::Id(reply),
                });
            }
            if out.len() < max {
                next = messages.next().now_or_never().flatten();
            }
        }
        if !oversized.is_empty() {
            self.stats.oversized += oversized.len() as u64;
            self.ack_subjects(oversized.iter().map(String::as_str))?;
        }
        self.stats.delivered += out.len() as u64;
        Ok(out)
    }

    fn ack(&mut self, done: &[Delivery]) -> Result<(), BrokerError> {
        let n = self.ack_subjects(done.iter().filter_map(|d| match &d.token {
            AckToken::Id(reply) => Some(reply.as_str()),
            _ => None,
        }))?;
        self.stats.acked += n;
        Ok(())
    }

    fn stats(&self) -> ConsumerStats {
        self.stats.clone()
    }

    /// The pull stream fetches ahead: what it buffered is NAKed, which JetStream redelivers
    /// at once (to another member), instead of after AckWait.
    fn release(&mut self) -> Result<u64, BrokerError> {
        let _runtime = self.nats.rt.enter();
        let mut replies = Vec::new();
        while let Some(Some(next)) = self.messages.next().now_or_never() {
            if let Some(reply) = next
                .ok()
                .and_then(|m| m.reply.as_ref().map(|r| r.to_string()))
            {
                replies.push(reply);
            }
        }
        self.reply(replies.iter().map(String::as_str), b"-NAK")
    }
}

#[cfg(test)]
mod tests {
    use super::stream_name;

    #[test]
    fn stream_names_hold_no_subject_wildcards_or_dots() {
        assert_eq!(stream_name("jobs.eu.>"), "plumbline_jobs_eu__");
    }
}
