//! The conformance suite on a JetStream work-queue stream, against nats-server -js.
#![cfg(feature = "nats")]
mod conformance;
suite!(
    Some(plumbline_servers::Kind::NatsJetStream),
    |addr| format!("nats://{addr}/conformance?jetstream=1")
);
