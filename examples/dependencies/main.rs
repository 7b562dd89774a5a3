//! Seed 001 (py-zmq-pipeline), example 4: task dependencies.
//!
//! Two task types: `first` (FirstTask) and `second` (SecondTask), 500 tasks of
//! `{"workload": 0.01}` each, where `second` depends on `first`: the distributor sends no
//! `second` task before every `first` task is done and ACKed. Each type has its own workers on
//! its own endpoint (`ipc://first.ipc`, `ipc://second.ipc`), which print each task as they work
//! on it: the second worker's lines begin only once the first worker's are over. The collector is
//! the seed's stopwatch (`../common/mod.rs`). Run the roles from one directory (the `ipc://`
//! endpoints are socket files in the current directory), the collector first:
//!
//! ```text
//! terminal 1:  cargo run --release -p plumbline-pipeline --example dependencies -- collector
//! terminal 2:  cargo run --release -p plumbline-pipeline --example dependencies -- distributor
//! terminal 3:  cargo run --release -p plumbline-pipeline --example dependencies -- first-worker
//! terminal 4:  cargo run --release -p plumbline-pipeline --example dependencies -- second-worker
//! ```
//!
//! The distributor starts its clock once two workers have joined. All four roles as threads of
//! one process, on free ports, with 50 tasks of each type to keep it short, and the
//! distributor's report (wall time, ideal, overhead):
//!
//! ```text
//! cargo run --release -p plumbline-pipeline --example dependencies -- all
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
const TASK_TYPE_FIRST: &str = "first";
const TASK_TYPE_SECOND: &str = "second";
const COLLECTOR_ENDPOINT: &str = "tcp://127.0.0.1:5558";
const COLLECTOR_ACK_ENDPOINT: &str = "tcp://127.0.0.1:5551";
const FIRST_WORKER_ENDPOINT: &str = "ipc://first.ipc";
const SECOND_WORKER_ENDPOINT: &str = "ipc://second.ipc";

/// Tasks of each type in the seed's run, and in `all`.
const N_TASKS: u64 = 500;
const N_TASKS_ALL: u64 = 50;

/// The seed's FirstTask and SecondTask, which differ only in their task type and dependencies:
/// `total` descriptors, then complete.
struct WorkloadTask {
    task_type: TaskType,
    dependencies: Vec<TaskType>,
    total: u64,
    n_count: u64,
    is_complete: bool,
}

impl WorkloadTask {
    fn first(total: u64) -> Result<Self> {
        Ok(Self {
            task_type: TaskType::new(TASK_TYPE_FIRST)?,
            dependencies: Vec::new(),
            total,
            n_count: 0,
            is_complete: false,
        })
    }

    fn second(total: u64) -> Result<Self> {
        Ok(Self {
            task_type: TaskType::new(TASK_TYPE_SECOND)?,
            dependencies: vec![TaskType::new(TASK_TYPE_FIRST)?],
            ..Self::first(total)?
        })
    }
}

impl Task for WorkloadTask {
    fn task_type(&self) -> &TaskType {
        &self.task_type
    }

    fn dependencies(&self) -> Vec<TaskType> {
        self.dependencies.clone()
    }

    fn handle(&mut self, _worker: &str) -> Value {
        self.n_count += 1;
        if self.n_count >= self.total {
            self.is_complete = true;
        }
        json!({ "workload": WORKLOAD_SECS })
    }

    fn is_complete(&self) -> bool {
        self.is_complete
    }

    fn ideal(&self, threads: u32) -> Option<Duration> {
        Some(common::ideal(self.total, threads))
    }
}

/// The seed's FirstWorker and SecondWorker, which differ only in what they print.
struct SleepWorker {
    label: String,
    n_executions: u64,
}

impl SingleThreadedWorker for SleepWorker {
    fn handle_execution(&mut self, task: &Assignment) -> Value {
        self.n_executions += 1;
        let workload = common::workload(&task.data);
        println!(
            "{} - working for {:.6} seconds",
            self.label,
            workload.as_secs_f64()
        );
        std::thread::sleep(workload);
        // Returning nothing forwards no extra information to the collector.
        Value::Null
    }
}

/// Runs the worker of `task_type` ("first" or "second").
fn run_worker(
    task_type: &str,
    workers: Endpoint,
    collector: Endpoint,
    shutdown: &Shutdown,
) -> Result<()> {
    let name = format!("{task_type}-worker-{}", std::process::id());
    let config = WorkerConfig::new(&name, TaskType::new(task_type)?, workers, collector);
    let mut worker = SleepWorker {
        label: format!("{task_type} worker"),
        n_executions: 0,
    };
    println!("worker running");
    worker::run_single(&config, &mut worker, shutdown)?;
    println!("finished - handled {} executions", worker.n_executions);
    Ok(())
}

/// Registers both tasks, each with its workers' endpoint, and binds them.
fn bind_distributor(
    collector_ack: Endpoint,
    first_workers: Endpoint,
    second_workers: Endpoint,
    total: u64,
) -> Result<Bound> {
    let mut config = DistributorConfig::new(collector_ack);
    // A first and a second worker; the second has nothing to do until the first is done,
    // but the run's clock starts once both are there.
    config.workers = 2;
    let mut distributor = Distributor::new(config);
    distributor.register(Box::new(WorkloadTask::first(total)?), first_workers);
    distributor.register(Box::new(WorkloadTask::second(total)?), second_workers);
    Ok(distributor.bind()?)
}

/// Collector, both workers and distributor as threads of this process, on free ports. Both task
/// types are registered with `tcp://127.0.0.1:0`, the same endpoint, so they share one port:
/// each worker's hello names its task type.
fn all(shutdown: &Shutdown) -> Result<()> {
    let collector = BoundCollector::bind(&common::free_port()?, &common::free_port()?)?;
    let (results_at, acks_at) = collector.endpoints();
    let any = common::free_port()?;
    let distributor = bind_distributor(acks_at, any.clone(), any, N_TASKS_ALL)?;
    let first_at = common::workers_endpoint(&distributor, TASK_TYPE_FIRST)?;
    let second_at = common::workers_endpoint(&distributor, TASK_TYPE_SECOND)?;
    let second_results_at = results_at.clone();
    common::side_by_side(
        shutdown,
        vec![
            (
                "collector",
                Box::new(|| common::run_collector(collector, shutdown)),
            ),
            (
                "first worker",
                Box::new(|| run_worker(TASK_TYPE_FIRST, first_at, results_at, shutdown)),
            ),
            (
                "second worker",
                Box::new(|| run_worker(TASK_TYPE_SECOND, second_at, second_results_at, shutdown)),
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
            let bound = bind_distributor(
                endpoint(COLLECTOR_ACK_ENDPOINT)?,
                endpoint(FIRST_WORKER_ENDPOINT)?,
                endpoint(SECOND_WORKER_ENDPOINT)?,
                N_TASKS,
            )?;
            common::run_distributor(bound, shutdown)
        }
        "first-worker" => {
            let workers = endpoint(FIRST_WORKER_ENDPOINT)?;
            run_worker(
                TASK_TYPE_FIRST,
                workers,
                endpoint(COLLECTOR_ENDPOINT)?,
                shutdown,
            )
        }
        "second-worker" => {
            let workers = endpoint(SECOND_WORKER_ENDPOINT)?;
            run_worker(
                TASK_TYPE_SECOND,
                workers,
                endpoint(COLLECTOR_ENDPOINT)?,
                shutdown,
            )
        }
        "all" => all(shutdown),
        other => bail!("no role {other}"),
    }
}

fn main() -> ExitCode {
    let roles = [
        "collector",
        "distributor",
        "first-worker",
        "second-worker",
        "all",
    ];
    common::main("dependencies", &roles, run)
}
