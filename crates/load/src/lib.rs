//! plumbline-load: the first stage of the flow, what gets sent.
//!
//! A [`Workload`] (nonces, votes, random bytes) with a [`KeyDist`] and a seed turns into a
//! reproducible stream of [`Message`](plumbline_core::Message)s. Pacing (when each message is
//! due) and sending over a wire are not here: the bench's source stamps intended send times, and
//! transports move bytes.

pub mod keys;
pub mod workload;

pub use keys::{KeyDist, KeyError};
pub use workload::{Generator, Workload, WorkloadError};
