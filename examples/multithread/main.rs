//! Seed 001 (py-zmq-pipeline), example 3: a multi-threaded worker.
//!
//! Example 2 (`singlethread`) with the worker switched to a `MultiThreadedWorker` of 10 threads:
//! its main loop counts each task and forwards the data to a thread, which sleeps the workload.
//! The task (100 × `{"workload": 0.01}`), the distributor, the stopwatch collector and the roles
//! are example 2's, unchanged, shared in `../common/mod.rs`; this file holds the worker. Run the
//! roles from one directory (the workers' endpoint `ipc://worker.ipc` is a socket file in the
//! current directory), the collector first so its stopwatch makes sense:
//!
//! ```text
//! terminal 1:  cargo run --release -p plumbline-pipeline --example multithread -- collector
//! terminal 2:  cargo run --release -p plumbline-pipeline --example multithread -- distributor
//! terminal 3:  cargo run --release -p plumbline-pipeline --example multithread -- worker
//! ```
//!
//! More workers (terminal 4, …) share the load. The distributor starts its clock once one worker
//! has joined and reckons the ideal from the threads there at that moment, so with several
//! workers its overhead comes out too low, even negative; the stopwatch is unaffected. All three
//! roles as threads of one process, on free ports, with the distributor's report (wall time,
//! ideal, overhead):
//!
//! ```text
//! cargo run --release -p plumbline-pipeline --example multithread -- all
//! ```

#[path = "../common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use plumbline_core::Shutdown;
use plumbline_pipeline::worker::{self, WorkerConfig};
use plumbline_pipeline::{Assignment, MultiThreadedWorker};
use serde_json::Value;

use common::calculation;

/// The seed's worker.py of example 3: the main loop hands each task to one of `n_threads`
/// threads, which simulate the work by sleeping the workload.
#[derive(Default)]
struct MyWorker {
    n_executions: AtomicU64,
}

impl MultiThreadedWorker for MyWorker {
    fn n_threads(&self) -> usize {
        10
    }

    /// Runs on the worker's main loop; what it returns is what the thread gets.
    fn handle_execution(&self, task: &Assignment) -> Value {
        // Forward all received data to the thread.
        self.n_executions.fetch_add(1, Ordering::Relaxed);
        task.data.clone()
    }

    fn handle_thread_execution(&self, data: Value, _index: usize) -> Value {
        std::thread::sleep(common::workload(&data));
        // Returning nothing forwards no extra information to the collector.
        Value::Null
    }
}

fn run_worker(config: &WorkerConfig, shutdown: &Shutdown) -> Result<()> {
    let worker = Arc::new(MyWorker::default());
    println!("worker running");
    worker::run_multi(config, Arc::clone(&worker), shutdown)?;
    let n_executions = worker.n_executions.load(Ordering::Relaxed);
    println!("finished - handled {n_executions} executions");
    Ok(())
}

fn main() -> ExitCode {
    calculation::main("multithread", run_worker)
}
