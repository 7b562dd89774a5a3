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
    check_size, AckTally, AckToken, BrokerError, ClientOptions, Consumer, ConsumerStats, Delivery,
    Producer, ProducerStats,
};

/// Room for Kafka's record overhead above the payload cap.
const RECORD_OVERHEAD: usize = 1024;

fn failed(bootstrap: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Backend(format!("kafka {bootstrap}: {e}"))
}

/// The topic's partition count, creating the topic if allowed. Also the reachability check:
/// librdkafka would otherwise retry quietly forever.
fn partitions(bootstrap: &str, topic: &str, options: &ClientOptions) -> Result<i32, BrokerError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| failed(bootstrap, e))?;
    let deadline = Instant::now() + options.connect_timeout;
    let mut created = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let why = match admin.inner().fetch_metadata(
            Some(topic),
            left.clamp(Duration::from_millis(100), Duration::from_secs(2)),
        ) {
            Ok(m) => {
                let found = m.topics().iter().find(|t| t.name() == topic);
                if let Some(t) = found.filter(|t| t.error().is_none() && !t.partitions().is_empty())
                {
                    return Ok(t.partitions().len() as i32);
                }
                if !options.create {
                    return Err(BrokerError::Missing {
                        what: "kafka topic",
                        name: topic.to_string(),
                    });
                }
                if !created {
                    create(&admin, bootstrap, topic, options.partitions)?;
                    created = true;
                }
                format!("topic '{topic}' has no partitions yet")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(BrokerError::Unreachable {
                what: "kafka",
                addr: bootstrap.to_string(),
                timeout: options.connect_timeout,
                why,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
        options: &ClientOptions,
    ) -> Result<Self, BrokerError> {
        let partitions = partitions(bootstrap, topic, options)?;
        let reports = Deliveries::default();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
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

/// Keeps the partitions the group currently assigns to this member.
#[derive(Clone, Default)]
struct Assignment(Arc<Mutex<Vec<i32>>>);

impl ClientContext for Assignment {}

impl ConsumerContext for Assignment {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut partitions = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match rebalance {
            Rebalance::Assign(list) => {
                *partitions = list.elements().iter().map(|e| e.partition()).collect();
                partitions.sort_unstable();
            }
            Rebalance::Revoke(_) => partitions.clear(),
            Rebalance::Error(_) => {}
        }
    }
}

pub struct KafkaConsumer {
    bootstrap: String,
    topic: String,
    /// `Option` only so `Drop` can take it; always `Some` before.
    consumer: Option<BaseConsumer<Assignment>>,
    assignment: Assignment,
    max_payload: usize,
    stats: ConsumerStats,
}

impl KafkaConsumer {
    pub fn connect(
        bootstrap: &str,
        topic: &str,
        options: &ClientOptions,
    ) -> Result<Self, BrokerError> {
        partitions(bootstrap, topic, options)?;
        let assignment = Assignment::default();
        let consumer: BaseConsumer<Assignment> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
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
        })
    }

    fn consumer(&self) -> &BaseConsumer<Assignment> {
        self.consumer.as_ref().expect("present until dropped")
    }

    /// Commits `offset + 1` of each processed (partition, offset), without waiting.
    fn commit(&self, done: impl Iterator<Item = (i32, i64)>) -> Result<u64, BrokerError> {
        let mut list = TopicPartitionList::new();
        let mut n = 0;
        for (partition, offset) in done {
            // The highest offset per partition wins: entries are added in delivery order.
            list.add_partition_offset(&self.topic, partition, Offset::Offset(offset + 1))
                .map_err(|e| failed(&self.bootstrap, e))?;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        match self.consumer().commit(&list, CommitMode::Async) {
            Ok(()) => Ok(n),
            // A rebalance took the partition away: the new owner gets these again (counted as
            // duplicates downstream), which at-least-once allows.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(0),
            Err(e) => Err(failed(&self.bootstrap, e)),
        }
    }
}

impl Consumer for KafkaConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let mut out = Vec::new();
        let mut oversized = Vec::new();
        let mut wait = timeout;
        while out.len() < max {
            let Some(result) = self.consumer().poll(wait) else {
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
                oversized.push((partition, offset));
                continue;
            }
            out.push(Delivery {
                payload: Bytes::copy_from_slice(payload),
                redelivered: false,
                token: AckToken::Offset { partition, offset },
            });
        }
        if !oversized.is_empty() {
            self.stats.oversized += oversized.len() as u64;
            self.commit(oversized.into_iter())?;
        }
        self.stats.delivered += out.len() as u64;
        Ok(out)
    }

    fn ack(&mut self, done: &[Delivery]) -> Result<(), BrokerError> {
        let n = self.commit(done.iter().filter_map(|d| match d.token {
            AckToken::Offset { partition, offset } => Some((partition, offset)),
            _ => None,
        }))?;
        self.stats.acked += n;
        Ok(())
    }

    fn stats(&self) -> ConsumerStats {
        ConsumerStats {
            assigned: Some(
                self.assignment
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            ),
            ..self.stats.clone()
        }
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        // Make the last commits durable and leave the group, so the partitions move now
        // rather than after the session timeout.
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
        consumer.unsubscribe();
        let _ = consumer.poll(Duration::from_millis(100));
        // Against tansu 0.6 librdkafka's destroy waits forever for a broker thread that never
        // leaves its fetch loop (seen in gdb: rd_kafka_destroy_app → rd_kafka_broker_consumer_serve),
        // so the handle is leaked instead: one thread and socket until the process exits.
        std::mem::forget(consumer);
    }
}
