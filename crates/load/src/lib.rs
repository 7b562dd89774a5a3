//! plumbline-load: the first stage of the flow, what gets sent.
//!
//! A [`Workload`] (nonces, votes, random bytes) with a [`KeyDist`] and a seed turns into a
//! reproducible stream of [`Message`](plumbline_core::Message)s; a [`Shape`] says when each is
//! due; the [`sender`] writes them to connections on that schedule, open loop. Connecting and
//! listening are the transport's.

pub mod keys;
pub mod schedule;
pub mod sender;
pub mod workload;

pub use keys::{KeyDist, KeyError};
pub use schedule::{Schedule, Shape, ShapeError};
pub use workload::{Generator, Workload, WorkloadError};
