//! The conformance suite on a Redis stream with a consumer group, against redis-server.
#![cfg(feature = "redis")]
mod conformance;
suite!(Some(plumbline_servers::Kind::Redis), |addr| format!(
    "redis://{addr}/conformance?mode=streams"
));
