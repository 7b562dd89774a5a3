//! Seed 001 (py-zmq-pipeline), example 2: a single-threaded worker.
//!
//! A `CalculationTask` issues 100 tasks of `{"workload": 0.01}`; each worker sleeps the workload
//! and counts its executions; the seed's `StopWatchCollector` (in `../common/mod.rs`) times the
//! collection. The seed's scripts (collector.py, run_distributor.py, worker.py) are the roles of
//! this one binary. Run them from one directory (the workers' endpoint `ipc://worker.ipc` is a
//! socket file in the current directory), the collector first so its stopwatch makes sense:
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
use std::time::Duration;

use anyhow::{bail, Result};
use plumbline_core::Shutdown;
use plumbline_pipeline::distributor::Bound;
use plumbline_pipeline::worker::{self, WorkerConfig};
use plumbline_pipeline::{
    Assignment, BoundCollector, Distributor, DistributorConfig, SingleThreadedWorker, Task,
    TaskType,
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

fn run_worker(
    name: &str,
    workers: Endpoint,
    collector: Endpoint,
    shutdown: &Shutdown,
) -> Result<()> {
    let config = WorkerConfig::new(name, TaskType::new(TASK_TYPE_CALC)?, workers, collector);
    let mut worker = MyWorker::default();
    println!("worker running");
    worker::run_single(&config, &mut worker, shutdown)?;
    println!("finished - handled {} executions", worker.n_executions);
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
    common::main("singlethread", &roles, run)
}
