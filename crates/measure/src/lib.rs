//! plumbline-measure: the last stage of the flow, turning what happened into figures.
//!
//! One measurement path: a per-thread [`Recorder`] (an HDR histogram) → a serializable
//! [`LatencySummary`] → the run record ([`record`], one schema for every command) and its table
//! ([`report`]); [`live`] holds the figures watchers read while a run goes on, and cuts the run's
//! latency into intervals ([`hlog`], HdrHistogram's interval log); [`exposition`] is the one
//! Prometheus writer of them. [`ideal`] holds
//! the math of what a run would take with zero overhead; [`continuity`] checks that every key's
//! state advanced one step per item; [`threshold`] holds a finished record to the limits a user
//! set (`--threshold 'p99<20ms'`). Nothing here runs load or workers.

pub mod continuity;
pub mod exposition;
pub mod hlog;
pub mod ideal;
pub mod live;
pub mod record;
pub mod recorder;
pub mod report;
pub mod seq;
pub mod threshold;

pub use hlog::LatencyInterval;
pub use ideal::{Ideal, IdealInput, Limit};
pub use live::{
    LatencyFeed, Live, LiveSnapshot, Note, RunInfo, Tick, Ticker, WorkerFigures, FEED_EVERY,
};
pub use recorder::{LatencySummary, Recorder};
pub use seq::{SeqSummary, SeqTracker};
