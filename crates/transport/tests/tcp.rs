//! The conformance suite on plumbline's own TCP frames (no broker: the consumer listens).
mod conformance;
suite!(None, |addr| format!("tcp://{addr}"));
