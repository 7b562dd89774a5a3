//! The conformance suite on a Kafka topic with a consumer group, against tansu.
#![cfg(feature = "kafka")]
mod conformance;
suite!(Some(plumbline_servers::Kind::Kafka), |addr| format!(
    "kafka://{addr}/conformance"
));
