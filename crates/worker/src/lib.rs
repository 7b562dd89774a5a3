//! plumbline-worker: the work stage of the flow.
//!
//! Messages arrive from a source, are routed to workers ([`partition`] for keyed state, one shared
//! queue for balanced tasks), cost a controlled [`work`] delay, update per-partition state
//! ([`app`]) and emit results to a [`sink`] that measures them. [`cluster`] wires N workers as
//! threads of one process with bounded channels. Generating load and writing reports are not
//! here; transports between processes come later and reuse these parts. A role process tells
//! whoever started it what it bound and did through [`announce`], in types.

pub mod announce;
pub mod app;
pub mod backoff;
pub mod cluster;
pub mod item;
pub mod node;
pub mod partition;
pub mod receiver;
pub mod sink;
pub mod work;

pub use app::{App, Output};
pub use cluster::{ClusterConfig, ClusterError, RunOutcome, Step};
pub use partition::PartitionMap;
pub use plumbline_core::Shutdown;
pub use work::Work;
