//! plumbline-measure: the last stage of the flow, turning what happened into figures.
//!
//! One measurement path: a per-thread [`Recorder`] (an HDR histogram) → a serializable
//! [`LatencySummary`] → report writers ([`report`]). [`ideal`] holds the math of what a run
//! would take with zero overhead. Nothing here runs load or workers.

pub mod ideal;
pub mod recorder;
pub mod report;
pub mod seq;

pub use ideal::{Ideal, IdealInput, Limit};
pub use recorder::{LatencySummary, Recorder};
pub use seq::{SeqSummary, SeqTracker};
