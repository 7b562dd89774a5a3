//! The unit of load: one keyed message as it travels from a source through workers to a sink.
//!
//! Only the in-process shape lives here; how a message is laid out on a wire is the business of
//! [`crate::frame`] and the transports.

use bytes::Bytes;

/// One keyed message.
///
/// `seq` numbers messages from 0 within a run so a sink can count losses and duplicates;
/// `intended_ns` is when the schedule meant to send it, in nanoseconds since the
/// [`RunClock`](crate::RunClock) started, so latency counts from the intended send time and a
/// stalled sender cannot hide its own delay (no coordinated omission).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub seq: u64,
    /// The routing key: nonce selector, vote letter index, or a drawn key for random payloads.
    pub key: u32,
    pub intended_ns: u64,
    pub payload: Bytes,
}
