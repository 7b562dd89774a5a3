//! Seed 001 (py-zmq-pipeline), example 2: a single-threaded worker.
//!
//! A `CalculationTask` issues 100 tasks of `{"workload": 0.01}`; each worker sleeps the workload
//! and counts its executions; the seed's `StopWatchCollector` times the collection. The task, the
//! collector and the roles are shared with example 3 (`multithread`) in `../common/mod.rs`; this
//! file holds the worker. The seed's scripts (collector.py, run_distributor.py, worker.py) are
//! the roles of this one binary. Run them from one directory (the workers' endpoint
//! `ipc://worker.ipc` is a socket file in the current directory), the collector first so its
//! stopwatch makes sense:
//!
//! ```text
//! terminal 1:  cargo run --release -p plumbline-pipeline --example singlethread -- collector
//! terminal 2:  cargo run --release -p plumbline-pipeline --example singlethread -- distributor
//! terminal 3:  cargo run --release -p plumbline-pipeline --example singlethread -- worker
//! ```
//!
//! More workers (terminal 4, …) share the load. The distributor starts its clock once one worker
//! has joined and reckons the ideal from the threads there at that moment, so with several
//! workers its overhead comes out too low, even negative; the stopwatch is unaffected. All three
//! roles as threads of one process, on free ports, with the distributor's report (wall time,
//! ideal, overhead):
//!
//! ```text
//! cargo run --release -p plumbline-pipeline --example singlethread -- all
//! ```

#[path = "../common/mod.rs"]
mod common;

use std::process::ExitCode;

use anyhow::Result;
use plumbline_core::Shutdown;
use plumbline_pipeline::worker::{self, WorkerConfig};
use plumbline_pipeline::{Assignment, SingleThreadedWorker};
use serde_json::Value;

use common::calculation;

/// The seed's worker.py: simulates the work by sleeping the workload.
#[derive(Default)]
struct MyWorker {
    n_executions: u64,
}

impl SingleThreadedWorker for MyWorker {
    fn handle_execution(&mut self, task: &Assignment) -> Value {
        self.n_executions += 1;
        std::thread::sleep(common::workload(&task.data));
        // Returning nothing forwards no extra information to the collector.
        Value::Null
    }
}

fn run_worker(config: &WorkerConfig, shutdown: &Shutdown) -> Result<()> {
    let mut worker = MyWorker::default();
    println!("worker running");
    worker::run_single(config, &mut worker, shutdown)?;
    println!("finished - handled {} executions", worker.n_executions);
    Ok(())
}

fn main() -> ExitCode {
    calculation::main("singlethread", run_worker)
}
