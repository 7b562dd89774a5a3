//! plumbline-worker: the work stage of the flow.
//!
//! Messages arrive from a source, are routed to workers ([`partition`] for keyed state, one shared
//! queue for balanced tasks), cost a controlled [`work`] delay (core's work model), update per-partition state
//! ([`app`]) and emit results to a [`sink`] that measures them. [`cluster`] wires N workers as
//! threads of one process with bounded channels; [`membership`] is the balanced, least-moving
//! assignment of partitions for workers that join and leave, and [`migration`] moves a
//! partition's state to its new owner without losing or doubling an item. Generating load and
//! writing reports are not here. A role process tells whoever started it what it bound and did
//! through [`announce`], in types.

pub mod announce;
pub mod app;
pub mod cluster;
pub mod item;
pub mod membership;
pub mod migration;
pub mod node;
pub mod partition;
pub mod receiver;
pub mod sink;

pub use app::{App, Output};
pub use cluster::{ClusterConfig, ClusterError, RunOutcome, Step};
pub use partition::PartitionMap;
pub use plumbline_core::Shutdown;
// The work model and poll backoff are core's (the pipeline uses them too); they are part of
// a worker's vocabulary, so they are reachable from here as well.
pub use plumbline_core::{backoff, work, work::Work};
