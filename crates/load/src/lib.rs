//! plumbline-load: the first stage of the flow, what gets sent.
//!
//! A [`Workload`] (nonces, votes, random bytes) with a [`KeyDist`] and a seed turns into a
//! reproducible stream of [`Message`](plumbline_core::Message)s; a [`Shape`] says when each is
//! due; the [`sender`] writes them to connections on that schedule, open loop, alone or as its
//! [`Share`] of a schedule several senders emit together. Connecting and listening are the
//! transport's.

pub mod keys;
pub mod schedule;
pub mod sender;
pub mod share;
pub mod workload;

pub use keys::{KeyDist, KeyError};
pub use schedule::{Schedule, Shape, ShapeError};
pub use share::Share;
pub use workload::{Generator, Workload, WorkloadError};
