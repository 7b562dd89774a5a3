//! The conformance suite on NATS core with a queue group, against nats-server.
#![cfg(feature = "nats")]
mod conformance;
suite!(Some(plumbline_servers::Kind::Nats), |addr| format!(
    "nats://{addr}/conformance"
));
