//! Seed 001 (py-zmq-pipeline), example 3: a multi-threaded worker.
//!
//! Example 2 (`singlethread`) with the worker switched to a `MultiThreadedWorker` of 10 threads:
//! its main loop counts each task and forwards the data to a thread, which sleeps the workload.
//! The task (100 × `{"workload": 0.01}`), the distributor and the stopwatch collector are
//! example 2's, unchanged. Run the roles from one directory (the workers' endpoint
//! `ipc://worker.ipc` is a socket file in the current directory), the collector first so its
//! stopwatch makes sense:
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
use std::time::Duration;

use anyhow::{bail, Result};
use plumbline_core::Shutdown;
use plumbline_pipeline::distributor::Bound;
use plumbline_pipeline::worker::{self, WorkerConfig};
use plumbline_pipeline::{
    Assignment, BoundCollector, Distributor, DistributorConfig, MultiThreadedWorker, Task, TaskType,
};
use plumbline_transport::endpoint::Endpoint;
use serde_json::{json, Value};

use common::{endpoint, WORKLOAD_SECS};

// The seed's settings.py.
const TASK_TYPE_CALC: &str = "C";
const COLLECTOR_ENDPOINT: &str = "tcp://127.0.0.1:5558";
const COLLECTOR_ACK_ENDPOINT: &str = "tcp://127.0.0.1:5551";
const WORKER_ENDPOINT: &str = "ipc://worker.ipc";

const N_TASKS: u64 = 100;

/// The seed's tasks.py: the work to be done, `N_TASKS` descriptors, then complete.
struct CalculationTask {
    task_type: TaskType,
    n_count: u64,
    is_complete: bool,
}

impl Task for CalculationTask {
    fn task_type(&self) -> &TaskType {
        &self.task_type
    }

    /// Called by the distributor for each task it sends to `_worker`; returns the descriptor.
    fn handle(&mut self, _worker: &str) -> Value {
        self.n_count += 1;
        if self.n_count >= N_TASKS {
            self.is_complete = true;
        }
        json!({ "workload": WORKLOAD_SECS })
    }

    fn is_complete(&self) -> bool {
        self.is_complete
    }

    fn ideal(&self, threads: u32) -> Option<Duration> {
        Some(common::ideal(N_TASKS, threads))
    }
}

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

fn run_worker(
    name: &str,
    workers: Endpoint,
    collector: Endpoint,
    shutdown: &Shutdown,
) -> Result<()> {
    let config = WorkerConfig::new(name, TaskType::new(TASK_TYPE_CALC)?, workers, collector);
    let worker = Arc::new(MyWorker::default());
    println!("worker running");
    worker::run_multi(&config, Arc::clone(&worker), shutdown)?;
    let n_executions = worker.n_executions.load(Ordering::Relaxed);
    println!("finished - handled {n_executions} executions");
    Ok(())
}

/// The seed's run_distributor.py up to `run`: register the task, bind its workers' endpoint.
fn bind_distributor(collector_ack: Endpoint, workers: Endpoint) -> Result<Bound> {
    let task = CalculationTask {
        task_type: TaskType::new(TASK_TYPE_CALC)?,
        n_count: 0,
        is_complete: false,
    };
    let mut distributor = Distributor::new(DistributorConfig::new(collector_ack));
    distributor.register(Box::new(task), workers);
    Ok(distributor.bind()?)
}

/// Collector, worker and distributor as threads of this process, on free ports.
fn all(shutdown: &Shutdown) -> Result<()> {
    let collector = BoundCollector::bind(&common::free_port()?, &common::free_port()?)?;
    let (results_at, acks_at) = collector.endpoints();
    let distributor = bind_distributor(acks_at, common::free_port()?)?;
    let workers_at = common::workers_endpoint(&distributor, TASK_TYPE_CALC)?;
    common::side_by_side(
        shutdown,
        vec![
            (
                "collector",
                Box::new(|| common::run_collector(collector, shutdown)),
            ),
            (
                "worker",
                Box::new(|| run_worker("worker", workers_at, results_at, shutdown)),
            ),
        ],
        || common::run_distributor(distributor, shutdown),
    )
}

fn run(role: &str, shutdown: &Shutdown) -> Result<()> {
    match role {
        "collector" => {
            let results = endpoint(COLLECTOR_ENDPOINT)?;
            let bound = BoundCollector::bind(&results, &endpoint(COLLECTOR_ACK_ENDPOINT)?)?;
            common::run_collector(bound, shutdown)
        }
        "distributor" => {
            let acks = endpoint(COLLECTOR_ACK_ENDPOINT)?;
            let bound = bind_distributor(acks, endpoint(WORKER_ENDPOINT)?)?;
            common::run_distributor(bound, shutdown)
        }
        "worker" => {
            let name = format!("worker-{}", std::process::id());
            let workers = endpoint(WORKER_ENDPOINT)?;
            run_worker(&name, workers, endpoint(COLLECTOR_ENDPOINT)?, shutdown)
        }
        "all" => all(shutdown),
        other => bail!("no role {other}"),
    }
}

fn main() -> ExitCode {
    let roles = ["collector", "distributor", "worker", "all"];
    common::main("multithread", &roles, run)
}
