//! The conformance suite on a Redis pub/sub channel, against redis-server.
#![cfg(feature = "redis")]
mod conformance;
suite!(Some(plumbline_servers::Kind::Redis), |addr| format!(
    "redis://{addr}/conformance?mode=pubsub"
));
