//! `kafka://host:port[,host:port…]/topic` on rdkafka (librdkafka), against any
//! Kafka-protocol broker (tansu in the tests).
//!
//! * Producer: `acks=all` and the idempotent producer. Each message goes to partition
//!   `key mod partitions`, so a plumbline key (and the state kept for it) lives in exactly one
//!   Kafka partition, and a consumer group's partition assignment is the worker's partition map.
//!   Delivery reports time each message from `send` to its ack.
//! * Consumer: a group member (`options.group`) that stores an offset only for what was
//!   processed and commits after each acked batch: at-least-once. A dead member's partitions
//!   move to the others after its session timeout and resume from the last commit, so what
//!   it had not committed is delivered again.
//! * A missing topic is created with `options.partitions` (Kafka brokers, tansu included, need
//!   not auto-create), or refused when `options.create` is false.
//! * Security ([`security`]): `?tls=1` is `security.protocol=SSL` with host-name verification
//!   and `--tls-ca` as `ssl.ca.location`; `?sasl=MECHANISM` adds SASL (`SASL_SSL`, or
//!   `SASL_PLAINTEXT` without TLS) with the URL's user and the password (librdkafka is built
//!   with the system's OpenSSL for SSL and SCRAM). A refused login or a TLS failure ends the
//!   connect at once, never in plaintext.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{
    check_size, retry_broker, AckTally, AckToken, BrokerError, ClientOptions, Consumer,
    ConsumerStats, Delivery, Login, Producer, ProducerStats,
};
use crate::retry::Failed;

/// Room for Kafka's record overhead above the payload cap.
const RECORD_OVERHEAD: usize = 1024;

/// How long a leaving member waits for the group to let it go before it exits all the same
/// (then its partitions wait out the session timeout).
const LEAVE_WITHIN: Duration = Duration::from_secs(3);

fn failed(bootstrap: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Backend(format!("kafka {bootstrap}: {e}"))
}

/// librdkafka's settings for `login`: security protocol, host-name verification, CA, SASL.
/// A password without a SASL mechanism, or SASL without a user or a password, is refused:
/// it could only be ignored.
fn security(bootstrap: &str, login: Login<'_>) -> Result<Vec<(&'static str, String)>, BrokerError> {
    let refuse = |why: &str| Err(failed(bootstrap, why));
    let mut settings = Vec::new();
    let protocol = match (login.tls, login.sasl) {
        (false, None) => None,
        (true, None) => Some("SSL"),
        (false, Some(_)) => Some("SASL_PLAINTEXT"),
        (true, Some(_)) => Some("SASL_SSL"),
    };
    if let Some(protocol) = protocol {
        settings.push(("security.protocol", protocol.to_string()));
    }
    if login.tls {
        settings.push(("ssl.endpoint.identification.algorithm", "https".into()));
        settings.push(("enable.ssl.certificate.verification", "true".into()));
        if let Some(ca) = login.ca {
            settings.push(("ssl.ca.location", ca.display().to_string()));
        }
    }
    match (login.sasl, login.user, login.password) {
        (None, _, Some(_)) => {
            return refuse(
                "a password needs a SASL mechanism: add ?sasl=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512",
            )
        }
        (Some(_), None, _) | (Some(_), _, None) => {
            return refuse("SASL needs a user (kafka://USER@…) and a password (--password)")
        }
        (Some(mechanism), Some(user), Some(password)) => {
            settings.push(("sasl.mechanism", mechanism.to_string()));
            settings.push(("sasl.username", user.to_string()));
            settings.push(("sasl.password", password.expose().to_string()));
        }
        (None, _, None) => {}
    }
    Ok(settings)
}

/// A client configuration for `bootstrap` with `login`'s security settings.
fn client_config(bootstrap: &str, login: Login<'_>) -> Result<ClientConfig, BrokerError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in security(bootstrap, login)? {
        config.set(key, value);
    }
    Ok(config)
}

/// A metadata error retrying cannot cure: a refused login or a TLS failure.
fn final_error(bootstrap: &str, e: &KafkaError) -> Option<BrokerError> {
    let (what, addr, why) = ("kafka", bootstrap.to_string(), e.to_string());
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some(BrokerError::Auth { what, addr, why })
        }
        Some(RDKafkaErrorCode::SSL) => Some(BrokerError::Tls { what, addr, why }),
        _ => None,
    }
}

/// The topic's partition count, creating the topic if allowed. Also the reachability check:
/// librdkafka would otherwise retry quietly forever.
fn partitions(
    bootstrap: &str,
    topic: &str,
    login: Login<'_>,
    options: &ClientOptions,
) -> Result<i32, BrokerError> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, login)?
        .create()
        .map_err(|e| failed(bootstrap, e))?;
    let mut created = false;
    retry_broker(
        "kafka",
        bootstrap,
        options.connect_timeout,
        |left| match admin
            .inner()
            .fetch_metadata(Some(topic), left.min(Duration::from_secs(2)))
        {
            Ok(m) => {
                let found = m.topics().iter().find(|t| t.name() == topic);
                if let Some(t) = found.filter(|t| t.error().is_none() && !t.partitions().is_empty())
                {
                    return Ok(t.partitions().len() as i32);
                }
                if !options.create {
                    return Err(Failed::Final(BrokerError::Missing {
                        what: "kafka topic",
                        name: topic.to_string(),
                    }));
                }
                if !created {
                    create(&admin, bootstrap, topic, options.partitions).map_err(Failed::Final)?;
                    created = true;
                }
                Err(Failed::Retry(format!(
                    "topic '{topic}' has no partitions yet"
                )))
            }
            Err(e) => Err(match final_error(bootstrap, &e) {
                Some(fatal) => Failed::Final(fatal),
                None => Failed::Retry(e.to_string()),
            }),
        },
    )
}

/// Who answers at `bootstrap`, from a Metadata request of its own (see kafka_identity).
pub(crate) fn identify(
    bootstrap: &str,
    login: Login<'_>,
    options: &ClientOptions,
) -> Result<super::BrokerIdentity, BrokerError> {
    let client: BaseConsumer = client_config(bootstrap, login)?
        .create()
        .map_err(|e| failed(bootstrap, e))?;
    let metadata = client
        .fetch_metadata(None, options.connect_timeout)
        .map_err(|e| failed(bootstrap, format!("metadata: {e}")))?;
    let nodes = metadata.brokers().iter().map(|b| b.id()).collect();
    let cluster_id = client.client().fetch_cluster_id(options.connect_timeout);
    Ok(super::BrokerIdentity::from_metadata(cluster_id, nodes))
}

fn create(
    admin: &AdminClient<DefaultClientContext>,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), BrokerError> {
    let new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let results = futures_executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| failed(bootstrap, e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(failed(
                    bootstrap,
                    format!("creating topic '{name}': {code}"),
                ))
            }
        }
    }
    Ok(())
}

/// Receives delivery reports on librdkafka's polling thread.
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<AckTally>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// When `send` was called.
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let mut acks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => acks.acked(*sent),
            Err((e, _)) => acks.refused(1, e),
        }
    }
}

pub struct KafkaProducer {
    bootstrap: String,
    topic: String,
    producer: ThreadedProducer<Deliveries>,
    reports: Deliveries,
    partitions: i32,
    max_payload: usize,
    sent: u64,
}

impl KafkaProducer {
    pub fn connect(
        bootstrap: &str,
        topic: &str,
        login: Login<'_>,
        options: &ClientOptions,
    ) -> Result<Self, BrokerError> {
        let partitions = partitions(bootstrap, topic, login, options)?;
        let reports = Deliveries::default();
        let producer = client_config(bootstrap, login)?
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .set(
                "message.max.bytes",
                (options.max_payload + RECORD_OVERHEAD)
                    .min(1_000_000_000)
                    .to_string(),
            )
            .create_with_context(reports.clone())
            .map_err(|e| failed(bootstrap, e))?;
        Ok(Self {
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            producer,
            reports,
            partitions,
            max_payload: options.max_payload,
            sent: 0,
        })
    }
}

impl Producer for KafkaProducer {
    fn send(&mut self, key: u32, payload: &[u8]) -> Result<(), BrokerError> {
        check_size(payload.len(), self.max_payload, "this kafka transport")?;
        let key_bytes = key.to_be_bytes();
        let partition = (key % self.partitions as u32) as i32;
        let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new(Instant::now()))
            .key(&key_bytes[..])
            .payload(payload)
            .partition(partition);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                // librdkafka's queue is full: wait for deliveries to make room (backpressure).
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Err(BrokerError::TooLarge {
                        len: payload.len(),
                        limit: self.max_payload,
                        what: format!("kafka {}", self.bootstrap),
                    })
                }
                Err((e, _)) => return Err(failed(&self.bootstrap, e)),
            }
        }
        self.sent += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BrokerError> {
        // librdkafka sends on its own thread within linger.ms.
        Ok(())
    }

    fn finish(&mut self, timeout: Duration) -> Result<(), BrokerError> {
        // A flush that times out leaves messages unacknowledged, which the outcome counts.
        let _ = self.producer.flush(timeout);
        let acks = self.reports.0.lock().unwrap_or_else(|p| p.into_inner());
        acks.outcome(self.sent, timeout)
    }

    fn stats(&self) -> ProducerStats {
        let acks = self.reports.0.lock().unwrap_or_else(|p| p.into_inner());
        acks.stats(self.sent)
    }
}

/// Keeps the partitions the group currently assigns to this member, and those it took away
/// since the consumer last looked (their positions are no longer this member's to commit).
#[derive(Clone, Default)]
struct Assignment(Arc<Shared>);

#[derive(Default)]
struct Shared {
    owned: Mutex<Owned>,
    /// Something was revoked since the last look: the poll loop reads this flag per message
    /// and takes the lock only when it is set.
    revoked_since: AtomicBool,
}

#[derive(Default)]
struct Owned {
    partitions: Vec<i32>,
    revoked: Vec<i32>,
    /// The group has assigned this member its partitions (none, maybe) at least once: until
    /// then an empty `partitions` is a member still joining, not one with nothing to do.
    assigned: bool,
}

impl Assignment {
    fn lock(&self) -> std::sync::MutexGuard<'_, Owned> {
        self.0.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops from `positions` the partitions the group took away since the last look.
    fn forget_revoked(&self, positions: &mut Positions) {
        if !self.0.revoked_since.swap(false, Ordering::AcqRel) {
            return;
        }
        for partition in std::mem::take(&mut self.lock().revoked) {
            positions.forget(partition);
        }
    }
}

impl ClientContext for Assignment {}

impl ConsumerContext for Assignment {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut owned = self.lock();
        match rebalance {
            Rebalance::Assign(list) => {
                owned.partitions = list.elements().iter().map(|e| e.partition()).collect();
                owned.partitions.sort_unstable();
                owned.assigned = true;
            }
            Rebalance::Revoke(list) => {
                owned.partitions.clear();
                owned
                    .revoked
                    .extend(list.elements().iter().map(|e| e.partition()));
                self.0.revoked_since.store(true, Ordering::Release);
            }
            Rebalance::Error(_) => {}
        }
    }
}

pub struct KafkaConsumer {
    bootstrap: String,
    topic: String,
    /// `Some` until it left the group (`release`, or when dropped).
    consumer: Option<BaseConsumer<Assignment>>,
    assignment: Assignment,
    max_payload: usize,
    stats: ConsumerStats,
    positions: Positions,
}

/// Which position each partition may commit. Kafka commits a position, not a message, so a
/// partition's position may pass an offset only once it and every offset delivered before it
/// are done; a skipped (oversized) message moves it only when nothing before it is open.
#[derive(Debug, Default)]
struct Positions {
    /// Delivered and not yet acknowledged.
    open: BTreeMap<i32, BTreeSet<i64>>,
    /// One past the highest offset seen.
    next: BTreeMap<i32, i64>,
    committed: BTreeMap<i32, i64>,
}

impl Positions {
    fn seen(&mut self, partition: i32, offset: i64) {
        let next = self.next.entry(partition).or_insert(0);
        *next = (*next).max(offset + 1);
    }

    fn delivered(&mut self, partition: i32, offset: i64) {
        self.open.entry(partition).or_default().insert(offset);
        self.seen(partition, offset);
    }

    fn done(&mut self, partition: i32, offset: i64) {
        if let Some(open) = self.open.get_mut(&partition) {
            open.remove(&offset);
        }
    }

    /// The partition moved to another member: what this one holds of it is no longer its to
    /// commit (the new owner may be far past it; committing it would rewind the group).
    fn forget(&mut self, partition: i32) {
        self.open.remove(&partition);
        self.next.remove(&partition);
        self.committed.remove(&partition);
    }

    /// Every partition's position if it moved since the last call (and records it as
    /// committed); with `all`, every partition's position.
    fn ready(&mut self, all: bool) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, &next) in &self.next {
            let position = self
                .open
                .get(&partition)
                .and_then(|open| open.first().copied())
                .unwrap_or(next);
            let committed = self.committed.entry(partition).or_insert(0);
            if all || position > *committed {
                *committed = position.max(*committed);
                out.push((partition, position));
            }
        }
        out
    }
}

impl KafkaConsumer {
    pub fn connect(
        bootstrap: &str,
        topic: &str,
        login: Login<'_>,
        options: &ClientOptions,
    ) -> Result<Self, BrokerError> {
        partitions(bootstrap, topic, login, options)?;
        let assignment = Assignment::default();
        let consumer: BaseConsumer<Assignment> = client_config(bootstrap, login)?
            .set("group.id", &options.group)
            .set("client.id", &options.consumer)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100")
            .set(
                "fetch.message.max.bytes",
                (options.max_payload + RECORD_OVERHEAD)
                    .min(1_000_000_000)
                    .to_string(),
            )
            .create_with_context(assignment.clone())
            .map_err(|e| failed(bootstrap, e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| failed(bootstrap, e))?;
        Ok(Self {
            bootstrap: bootstrap.to_string(),
            topic: topic.to_string(),
            consumer: Some(consumer),
            assignment,
            max_payload: options.max_payload,
            stats: ConsumerStats::default(),
            positions: Positions::default(),
        })
    }

    fn consumer(&self) -> &BaseConsumer<Assignment> {
        self.consumer
            .as_ref()
            .expect("not used after it left the group")
    }

    /// Commits the positions that moved. Returns false when a rebalance took the partitions
    /// away (the new owner gets their messages again, which at-least-once allows).
    fn commit(&mut self, mode: CommitMode, all: bool) -> Result<bool, BrokerError> {
        self.assignment.forget_revoked(&mut self.positions);
        let ready = self.positions.ready(all);
        if ready.is_empty() {
            return Ok(true);
        }
        let mut list = TopicPartitionList::new();
        for (partition, position) in ready {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(position))
                .map_err(|e| failed(&self.bootstrap, e))?;
        }
        match self.consumer().commit(&list, mode) {
            Ok(()) => Ok(true),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(false),
            Err(e) => Err(failed(&self.bootstrap, e)),
        }
    }
}

impl Consumer for KafkaConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let mut out = Vec::new();
        let mut oversized = 0;
        let mut wait = timeout;
        // The field, not `self.consumer()`: a message borrows the consumer while positions move.
        let consumer = self
            .consumer
            .as_ref()
            .expect("not used after it left the group");
        while out.len() < max {
            let polled = consumer.poll(wait);
            // Rebalance callbacks run inside that poll: partitions it took away are forgotten
            // before anything after it is recorded.
            self.assignment.forget_revoked(&mut self.positions);
            let Some(result) = polled else {
                break;
            };
            wait = Duration::ZERO;
            let message = match result {
                Ok(m) => m,
                // Not errors of this consumer: end of a partition, or a transient broker state.
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(KafkaError::MessageConsumption(code))
                    if code != RDKafkaErrorCode::UnknownTopicOrPartition =>
                {
                    continue
                }
                Err(e) => return Err(failed(&self.bootstrap, e)),
            };
            let (partition, offset) = (message.partition(), message.offset());
            let payload = message.payload().unwrap_or_default();
            if payload.len() > self.max_payload {
                oversized += 1;
                self.positions.seen(partition, offset);
                continue;
            }
            self.positions.delivered(partition, offset);
            out.push(Delivery {
                payload: Bytes::copy_from_slice(payload),
                redelivered: false,
                token: AckToken::Offset { partition, offset },
            });
        }
        if oversized > 0 {
            self.stats.oversized += oversized;
            // Moves a position only past skipped messages with nothing open before them.
            self.commit(CommitMode::Async, false)?;
        }
        self.stats.delivered += out.len() as u64;
        Ok(out)
    }

    fn ack(&mut self, done: &[Delivery]) -> Result<(), BrokerError> {
        let mut n = 0;
        for delivery in done {
            if let AckToken::Offset { partition, offset } = delivery.token {
                self.positions.done(partition, offset);
                n += 1;
            }
        }
        if self.commit(CommitMode::Async, false)? {
            self.stats.acked += n;
        }
        Ok(())
    }

    /// Leaves the group now: its uncommitted offsets go to the next owner, and the others
    /// need not wait out the session timeout for its partitions.
    fn release(&mut self) -> Result<u64, BrokerError> {
        self.leave();
        Ok(0)
    }

    fn stats(&self) -> ConsumerStats {
        let owned = self.assignment.lock();
        ConsumerStats {
            assigned: owned.assigned.then(|| owned.partitions.clone()),
            ..self.stats.clone()
        }
    }
}

impl KafkaConsumer {
    /// Makes the last positions durable (an async commit may still be in flight) and leaves
    /// the group, so its partitions move now rather than after the session timeout. Commits
    /// only partitions this member still owns: one the group moved away may be far ahead at
    /// its new owner, and an old position committed now would rewind the group. Idempotent.
    fn leave(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        self.assignment.forget_revoked(&mut self.positions);
        let owned = self.assignment.lock().partitions.clone();
        let ready: Vec<_> = self
            .positions
            .ready(true)
            .into_iter()
            .filter(|(partition, _)| owned.contains(partition))
            .collect();
        if !ready.is_empty() {
            let mut list = TopicPartitionList::new();
            for (partition, position) in ready {
                let _ = list.add_partition_offset(&self.topic, partition, Offset::Offset(position));
            }
            let _ = consumer.commit(&list, CommitMode::Sync);
        }
        // Closing runs the revoke and sends LeaveGroup; the queue must be polled until it is
        // done. (One poll after `unsubscribe` returns at once with a prefetched message, and
        // the member left the process still in the group.)
        if consumer.close_queue().is_ok() {
            let until = Instant::now() + LEAVE_WITHIN;
            while !consumer.closed() && Instant::now() < until {
                let _ = consumer.poll(Duration::from_millis(50));
            }
        }
        // Against tansu 0.6 librdkafka's destroy waits forever for a broker thread that never
        // leaves its fetch loop (seen in gdb: rd_kafka_destroy_app → rd_kafka_broker_consumer_serve),
        // so the handle is leaked instead: one thread and socket until the process exits.
        std::mem::forget(consumer);
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::{client_config, security, Login, Positions};
    use plumbline_core::secret::Secret;
    use std::path::Path;

    fn settings(login: Login<'_>) -> Vec<(&'static str, String)> {
        security("b:1", login).unwrap()
    }

    #[test]
    fn plaintext_without_tls_or_sasl() {
        assert_eq!(settings(Login::default()), vec![]);
    }

    #[test]
    fn tls_verifies_the_host_name_against_the_given_ca() {
        let ca = Path::new("/etc/ca.pem");
        let login = Login {
            tls: true,
            ca: Some(ca),
            ..Login::default()
        };
        let config = client_config("b:1", login).unwrap();
        for (key, value) in [
            ("bootstrap.servers", "b:1"),
            ("security.protocol", "SSL"),
            ("ssl.endpoint.identification.algorithm", "https"),
            ("enable.ssl.certificate.verification", "true"),
            ("ssl.ca.location", "/etc/ca.pem"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
        assert_eq!(config.get("sasl.mechanism"), None);
        // librdkafka refuses SSL at creation when built without OpenSSL.
        let system_roots = client_config(
            "b:1",
            Login {
                tls: true,
                ..Login::default()
            },
        )
        .unwrap();
        let created: Result<rdkafka::consumer::BaseConsumer, _> = system_roots.create();
        assert!(created.is_ok(), "built with SSL: {:?}", created.err());
    }

    #[test]
    fn sasl_over_tls_passes_the_mechanism_user_and_password_through() {
        let password = Secret::new("pw");
        let login = Login {
            tls: true,
            sasl: Some("SCRAM-SHA-512"),
            user: Some("alice"),
            password: Some(&password),
            ..Login::default()
        };
        let config = client_config("b:1", login).unwrap();
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "pw"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
        let plain = Login {
            tls: false,
            ..login
        };
        let config = client_config("b:1", plain).unwrap();
        assert_eq!(config.get("security.protocol"), Some("SASL_PLAINTEXT"));
    }

    #[test]
    fn a_password_that_would_be_ignored_is_refused_without_showing_it() {
        let password = Secret::new("hunter2");
        for (login, needle) in [
            (
                Login {
                    password: Some(&password),
                    user: Some("u"),
                    ..Login::default()
                },
                "needs a SASL mechanism",
            ),
            (
                Login {
                    sasl: Some("PLAIN"),
                    password: Some(&password),
                    ..Login::default()
                },
                "needs a user",
            ),
            (
                Login {
                    sasl: Some("PLAIN"),
                    user: Some("u"),
                    ..Login::default()
                },
                "and a password",
            ),
        ] {
            let err = security("b:1", login).unwrap_err().to_string();
            assert!(err.contains(needle) && !err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn a_skipped_message_does_not_commit_past_open_ones_before_it() {
        let mut p = Positions::default();
        p.delivered(0, 10);
        p.seen(0, 11); // oversized, skipped
        assert_eq!(p.ready(false), vec![(0, 10)], "10 is still open");
        p.done(0, 10);
        assert_eq!(p.ready(false), vec![(0, 12)], "now past the skipped 11 too");
        assert_eq!(p.ready(false), vec![], "nothing moved since");
    }

    #[test]
    fn out_of_order_acks_commit_only_the_done_prefix_one_entry_per_partition() {
        let mut p = Positions::default();
        for offset in 0..4 {
            p.delivered(0, offset);
        }
        p.delivered(1, 7);
        p.done(0, 2);
        p.done(1, 7);
        assert_eq!(p.ready(false), vec![(1, 8)]);
        p.done(0, 0);
        p.done(0, 1);
        assert_eq!(p.ready(false), vec![(0, 3)]);
        assert_eq!(
            p.ready(true),
            vec![(0, 3), (1, 8)],
            "all, for the last commit"
        );
    }

    /// Regression: a member's exit commit rewound a partition that had moved to another member
    /// (its committed offset went from past 836 back to 120).
    #[test]
    fn a_partition_taken_away_is_never_committed_again() {
        let mut p = Positions::default();
        p.delivered(0, 119);
        p.done(0, 119);
        p.delivered(1, 5);
        p.done(1, 5);
        assert_eq!(p.ready(false), vec![(0, 120), (1, 6)]);
        p.forget(0);
        assert_eq!(
            p.ready(true),
            vec![(1, 6)],
            "partition 0 is another member's now"
        );
        p.delivered(0, 900);
        assert_eq!(
            p.ready(false),
            vec![(0, 900)],
            "given back later, it starts from what this member is handed, not its old position"
        );
    }
}
