//! What seed 001's examples 2–4 share, included by each with `#[path = "../common/mod.rs"]`:
//! the seed's stopwatch collector (its collector.py, the same in every example), how a worker
//! reads a descriptor's workload, the distributor's report, and the plumbing of a binary with
//! one role per seed script plus `all`. Examples 2 and 3 differ only in their worker, so their
//! task and roles are here too, in [`calculation`]; the workers, and example 4's tasks and roles,
//! are in each example's main.rs.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use plumbline_core::Shutdown;
use plumbline_pipeline::distributor::Bound;
use plumbline_pipeline::{BoundCollector, Collector, CollectorSummary, TaskResult};
use plumbline_transport::endpoint::Endpoint;
use serde_json::Value;

/// Every example's task descriptor is `{"workload": 0.01}`: 10 ms of simulated work.
pub const WORKLOAD_SECS: f64 = 0.01;

/// The seed's collector.py: a stopwatch from the first result to the end of the run.
#[derive(Default)]
pub struct StopWatchCollector {
    start_time: Option<Instant>,
    end_time: Option<Instant>,
}

impl StopWatchCollector {
    pub fn total_msec(&self) -> f64 {
        match (self.start_time, self.end_time) {
            (Some(start), Some(end)) => (end - start).as_secs_f64() * 1000.0,
            _ => 0.0,
        }
    }
}

impl Collector for StopWatchCollector {
    fn handle_collection(&mut self, _result: &TaskResult) {
        self.start_time.get_or_insert_with(Instant::now);
    }

    fn handle_finished(&mut self, _summary: &CollectorSummary) {
        self.end_time = Some(Instant::now());
        println!("collection took {:.1} milliseconds", self.total_msec());
    }
}

pub fn run_collector(bound: BoundCollector, shutdown: &Shutdown) -> Result<()> {
    let mut collector = StopWatchCollector::default();
    println!("collector running");
    bound.run(&mut collector, shutdown)?;
    println!("finished");
    Ok(())
}

/// Runs a bound distributor to the end and prints what its report says of the run.
pub fn run_distributor(bound: Bound, shutdown: &Shutdown) -> Result<()> {
    let report = bound.run(shutdown)?;
    let secs = |s: Option<f64>| s.map_or("?".into(), |s| format!("{s:.3} s"));
    let percent = |o: Option<f64>| o.map_or("?".into(), |o| format!("{o:+.1} %"));
    println!(
        "finished - acked {} of {} tasks: wall {:.3} s, ideal {}, overhead {}",
        report.acked,
        report.issued,
        report.wall_s,
        secs(report.ideal_s),
        percent(report.overhead_pct)
    );
    Ok(())
}

/// A descriptor's `workload`, the seed's `data['workload']`.
pub fn workload(data: &Value) -> Duration {
    let secs = data["workload"].as_f64().unwrap_or(0.0);
    Duration::try_from_secs_f64(secs).unwrap_or_default()
}

/// `tasks` workloads spread evenly over `threads`: the ideal a `Task` reports to the
/// distributor, which divides the run's wall time by it for the overhead.
pub fn ideal(tasks: u64, threads: u32) -> Duration {
    plumbline_measure::ideal::batch_ideal(
        tasks,
        u64::from(threads),
        Duration::from_secs_f64(WORKLOAD_SECS),
    )
}

pub fn endpoint(text: &str) -> Result<Endpoint> {
    text.parse().with_context(|| format!("endpoint {text}"))
}

/// `tcp://127.0.0.1:0`: a free port, which the bound listener then names.
pub fn free_port() -> Result<Endpoint> {
    endpoint("tcp://127.0.0.1:0")
}

/// Where the bound distributor's workers of `task_type` connect.
pub fn workers_endpoint(bound: &Bound, task_type: &str) -> Result<Endpoint> {
    bound
        .endpoints()
        .into_iter()
        .find(|(t, _)| t.as_str() == task_type)
        .map(|(_, at)| at)
        .with_context(|| format!("the distributor has no endpoint for task type {task_type}"))
}

/// A role that runs on its own thread in `all`.
pub type Side<'a> = (&'static str, Box<dyn FnOnce() -> Result<()> + Send + 'a>);

/// `all`: runs the `sides` (collector, workers) on threads and the distributor on this one.
/// If the distributor fails, `shutdown` stops the others instead of leaving them waiting.
pub fn side_by_side(
    shutdown: &Shutdown,
    sides: Vec<Side<'_>>,
    distributor: impl FnOnce() -> Result<()>,
) -> Result<()> {
    thread::scope(|scope| {
        let running: Vec<_> = sides
            .into_iter()
            .map(|(role, side)| (role, scope.spawn(side)))
            .collect();
        let distributed = distributor();
        if distributed.is_err() {
            shutdown.request();
        }
        let sides: Vec<Result<()>> = running
            .into_iter()
            .map(|(role, handle)| match handle.join() {
                Ok(ran) => ran.context(role),
                Err(_) => Err(anyhow!("the {role} thread panicked")),
            })
            .collect();
        distributed.context("distributor")?;
        sides.into_iter().collect()
    })
}

/// The example's `main`: runs the role named by the one argument, one of `roles`; anything else
/// prints the usage and exits with 2.
pub fn main(
    example: &str,
    roles: &[&str],
    run: impl FnOnce(&str, &Shutdown) -> Result<()>,
) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = match args.as_slice() {
        [role] if roles.contains(&role.as_str()) => role,
        _ => {
            eprintln!(
                "usage: cargo run --release -p plumbline-pipeline --example {example} -- {}",
                roles.join("|")
            );
            return ExitCode::from(2);
        }
    };
    match run(role, &Shutdown::new()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Examples 2 (`singlethread`) and 3 (`multithread`) but for their worker: the seed's
/// settings.py, its tasks.py (`CalculationTask`) and its run_distributor.py, and the roles
/// (collector, distributor, worker, `all`) wired to the example's `run_worker`.
// The dependencies example includes this file too, and uses none of this.
#[allow(dead_code)]
pub mod calculation {
    use std::process::ExitCode;
    use std::time::Duration;

    use anyhow::{bail, Result};
    use plumbline_core::Shutdown;
    use plumbline_pipeline::distributor::Bound;
    use plumbline_pipeline::worker::WorkerConfig;
    use plumbline_pipeline::{BoundCollector, Distributor, DistributorConfig, Task, TaskType};
    use plumbline_transport::endpoint::Endpoint;
    use serde_json::{json, Value};

    use super::{endpoint, WORKLOAD_SECS};

    // The seed's settings.py.
    const TASK_TYPE_CALC: &str = "C";
    const COLLECTOR_ENDPOINT: &str = "tcp://127.0.0.1:5558";
    const COLLECTOR_ACK_ENDPOINT: &str = "tcp://127.0.0.1:5551";
    const WORKER_ENDPOINT: &str = "ipc://worker.ipc";

    const N_TASKS: u64 = 100;

    /// The example's worker: runs the worker that `config` describes until the run ends.
    pub type RunWorker = fn(config: &WorkerConfig, shutdown: &Shutdown) -> Result<()>;

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
            Some(super::ideal(N_TASKS, threads))
        }
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

    /// The worker role: a worker named `name` for the task's type, taking tasks at `workers`
    /// and sending results to `collector`.
    fn worker(
        name: &str,
        workers: Endpoint,
        collector: Endpoint,
        shutdown: &Shutdown,
        run_worker: RunWorker,
    ) -> Result<()> {
        let config = WorkerConfig::new(name, TaskType::new(TASK_TYPE_CALC)?, workers, collector);
        run_worker(&config, shutdown)
    }

    /// Collector, worker and distributor as threads of this process, on free ports.
    fn all(shutdown: &Shutdown, run_worker: RunWorker) -> Result<()> {
        let collector = BoundCollector::bind(&super::free_port()?, &super::free_port()?)?;
        let (results_at, acks_at) = collector.endpoints();
        let distributor = bind_distributor(acks_at, super::free_port()?)?;
        let workers_at = super::workers_endpoint(&distributor, TASK_TYPE_CALC)?;
        super::side_by_side(
            shutdown,
            vec![
                (
                    "collector",
                    Box::new(|| super::run_collector(collector, shutdown)),
                ),
                (
                    "worker",
                    Box::new(|| worker("worker", workers_at, results_at, shutdown, run_worker)),
                ),
            ],
            || super::run_distributor(distributor, shutdown),
        )
    }

    fn run(role: &str, shutdown: &Shutdown, run_worker: RunWorker) -> Result<()> {
        match role {
            "collector" => {
                let results = endpoint(COLLECTOR_ENDPOINT)?;
                let bound = BoundCollector::bind(&results, &endpoint(COLLECTOR_ACK_ENDPOINT)?)?;
                super::run_collector(bound, shutdown)
            }
            "distributor" => {
                let acks = endpoint(COLLECTOR_ACK_ENDPOINT)?;
                let bound = bind_distributor(acks, endpoint(WORKER_ENDPOINT)?)?;
                super::run_distributor(bound, shutdown)
            }
            "worker" => {
                let name = format!("worker-{}", std::process::id());
                let workers = endpoint(WORKER_ENDPOINT)?;
                let results = endpoint(COLLECTOR_ENDPOINT)?;
                worker(&name, workers, results, shutdown, run_worker)
            }
            "all" => all(shutdown, run_worker),
            other => bail!("no role {other}"),
        }
    }

    /// The `main` of `example`, whose worker role is `run_worker`: runs the role named by the
    /// one argument, or prints the usage and exits with 2.
    pub fn main(example: &str, run_worker: RunWorker) -> ExitCode {
        let roles = ["collector", "distributor", "worker", "all"];
        super::main(example, &roles, |role, shutdown| {
            run(role, shutdown, run_worker)
        })
    }
}
