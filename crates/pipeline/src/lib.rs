//! plumbline-pipeline: load-balanced task pipelines, seed 001's py-zmq-pipeline in Rust.
//!
//! ```text
//!   Distributor ──task──▶ Worker(s) ──result──▶ Collector
//!        ▲  (binds one endpoint      (connect)      │ (binds result + ACK endpoints)
//!        │   per task type)                         │
//!        └──────────────────── ack ◀────────────────┘
//! ```
//!
//! [`task`] says what a task type is and produces descriptors; [`distributor`] hands tasks to
//! workers with credit and keeps [`lease`]s until the collector ACKs them; [`worker`] executes
//! them; [`collector`] receives results and ACKs them. [`release`] is the distributor's optional
//! open-loop schedule (task k available at its intended time). [`wire`] is the protocol they share (JSON
//! in length-prefixed frames, documented for workers in other languages). Endpoints are
//! `tcp://` or `ipc://` (plumbline-transport). The work a task costs (sleep, spin) is
//! plumbline-core's `Work`; the CLI roles and the benchmark live in the binary.

pub mod collector;
pub mod distributor;
pub mod lease;
mod peers;
pub mod quarantine;
pub mod release;
pub mod task;
pub mod wire;
pub mod worker;

pub use collector::{BoundCollector, Collector, CollectorSummary, TaskResult};
pub use distributor::{Bound, Distributor, DistributorConfig, PipelineReport};
pub use plumbline_transport::endpoint::Endpoint;
pub use task::{SleepTask, Task, TaskType, Workload};
pub use worker::{
    run_multi, run_single, Assignment, MultiThreadedWorker, SingleThreadedWorker, WorkerConfig,
    WorkerSummary,
};
