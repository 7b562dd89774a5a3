//! Seed 001's task pipeline as an engine (`--cluster pipeline`): the same run, measured the
//! same way, as the threads and processes engines, so capacity and bench can put a
//! load-balanced task pipeline on the same curve.
//!
//! The distributor and the collector run in-process (plumbline-pipeline's library, on threads
//! of this run), so the distributor counts the run's [`Live`] itself: a task in when it is
//! released (its intended time on the load's schedule; at the start, for a batch), out at its
//! first ACK, latency from that intended time to the ACK. The N workers are `plumbline
//! pipeline worker` processes (one thread each unless told), connected over free loopback
//! `tcp://` ports; a worker that dies mid-run ends the run with an error naming it.
//!
//! Tasks are the pipeline's sleep descriptors: `--delay` spent as `--work`, no key and no
//! payload, so only a balanced step makes sense (a partitioned one needs keys, a sequential
//! one has no cluster) and the load's workload is not sent. Redelivery and lease tuning are the
//! distributor's defaults; this does not judge the figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use plumbline_core::Shutdown;
use plumbline_measure::{Live, Recorder};
use plumbline_pipeline::distributor::PipelineReport;
use plumbline_pipeline::{
    BoundCollector, Collector, Distributor, DistributorConfig, Endpoint, SleepTask, TaskResult,
    TaskType,
};
use plumbline_worker::{ClusterConfig, Step};

use crate::child::{Proc, SETTLE};
use crate::{Engine, Load, RunFigures};

/// The one task type every worker serves.
const TASK_TYPE: &str = "C";
/// How often the run checks on its worker processes and the caller's stop.
const WATCH_EVERY: Duration = Duration::from_millis(10);

/// A distributor and a collector in-process, `cluster.workers` worker processes of `threads`
/// threads each, started from `exe` (the plumbline binary).
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub cluster: ClusterConfig,
    pub exe: PathBuf,
    pub threads: u32,
}

impl Engine for Pipeline {
    fn workers(&self) -> usize {
        self.cluster.workers
    }

    fn describe(&self) -> String {
        format!(
            "{} pipeline worker(s) x {} thread(s)",
            self.cluster.workers, self.threads
        )
    }

    fn run(&self, load: &Load, live: &Arc<Live>, stop: &Shutdown) -> Result<RunFigures> {
        check_step(self.cluster.step)?;
        ensure!(
            self.threads > 0,
            "a pipeline worker needs at least 1 thread"
        );
        run(self, load, live, stop)
    }
}

/// The steps this engine runs: balanced only (its tasks carry no key).
pub fn check_step(step: Step) -> Result<()> {
    ensure!(
        step == Step::Balanced,
        "--cluster pipeline runs --step balanced only, not {step}: its tasks carry no key to \
         partition by, and a sequential run has no cluster"
    );
    Ok(())
}

/// Results are counted by the collector and the distributor; nothing else is kept.
struct Discard;

impl Collector for Discard {
    fn handle_collection(&mut self, _result: &TaskResult) {}
}

fn run(engine: &Pipeline, load: &Load, live: &Arc<Live>, stop: &Shutdown) -> Result<RunFigures> {
    let any: Endpoint = "tcp://127.0.0.1:0".parse()?;
    let collector = BoundCollector::bind(&any, &any).context("binding the pipeline's collector")?;
    let (results_at, acks_at) = collector.endpoints();
    let mut config = DistributorConfig::new(acks_at);
    config.workers = engine.cluster.workers;
    config.join_timeout = SETTLE;
    config.release = Some(load.shape());
    let mut distributor = Distributor::new(config);
    distributor.register(
        Box::new(SleepTask::new(
            TaskType::new(TASK_TYPE)?,
            load.items,
            engine.cluster.delay,
            engine.cluster.work,
        )),
        any,
    );
    let bound = distributor
        .bind()
        .context("starting the pipeline's distributor")?
        .with_live(live.clone());
    let tasks_at = bound
        .endpoints()
        .first()
        .map(|(_, at)| at.to_string())
        .context("the distributor bound no endpoint")?;
    // The run's own stops: the caller's stop (or a dead worker) halts the distributor, which
    // ends the collector with `end`; the collector's is for a distributor that never did.
    let (halt, collector_stop) = (Shutdown::new(), Shutdown::new());
    let (report, collected, died, exits) = std::thread::scope(|scope| {
        let collecting = scope.spawn(|| collector.run(&mut Discard, &collector_stop));
        let distributing = scope.spawn(|| bound.run(&halt));
        let workers = start_workers(&engine.exe, engine, &tasks_at, &results_at.to_string());
        let died = match &workers {
            Ok(workers) => watch(workers, &distributing, stop, &halt),
            Err(_) => {
                halt.request();
                Ok(None)
            }
        };
        let report = distributing.join();
        collector_stop.request();
        let collected = collecting.join();
        // Told `end` by a distributor that finished, the workers exit; otherwise they are
        // killed when dropped.
        let exits = workers.and_then(|workers| match &report {
            Ok(Ok(_)) => workers.iter().try_for_each(|(name, worker)| {
                worker
                    .wait_exit(SETTLE)
                    .with_context(|| format!("pipeline worker {name}"))
            }),
            _ => Ok(()),
        });
        (report, collected, died, exits)
    });
    if let Some(death) = died? {
        bail!("{death}");
    }
    exits?;
    let report = match report {
        Ok(report) => report.context("the pipeline's distributor")?,
        Err(_) => bail!("the pipeline's distributor panicked"),
    };
    let collected = match collected {
        Ok(summary) => summary.context("the pipeline's collector")?,
        Err(_) => bail!("the pipeline's collector panicked"),
    };
    if let Some(error) = &report.error {
        bail!("the pipeline's distributor: {error}");
    }
    Ok(figures(
        &report,
        collected.duplicates,
        engine.cluster.workers,
    ))
}

/// Starts worker `w1` … `wN`, each `plumbline pipeline worker` connected to the distributor's
/// and the collector's endpoints.
fn start_workers(
    exe: &Path,
    engine: &Pipeline,
    tasks_at: &str,
    results_at: &str,
) -> Result<Vec<(String, Proc)>> {
    let threads = engine.threads.to_string();
    (1..=engine.cluster.workers)
        .map(|w| {
            let name = format!("w{w}");
            let args = [
                "pipeline",
                "worker",
                "--endpoint",
                tasks_at,
                "--collector",
                results_at,
                "--task-type",
                TASK_TYPE,
                "--threads",
                &threads,
                "--name",
                &name,
            ];
            let worker =
                Proc::start(exe, &args).with_context(|| format!("pipeline worker {name}"))?;
            Ok((name, worker))
        })
        .collect()
}

/// Until the distributor's thread ends: passes the caller's stop on, and halts the run when a
/// worker process exits before it was told to (returning what killed it).
fn watch<T>(
    workers: &[(String, Proc)],
    distributing: &std::thread::ScopedJoinHandle<'_, T>,
    stop: &Shutdown,
    halt: &Shutdown,
) -> Result<Option<String>> {
    let mut died = None;
    while !distributing.is_finished() {
        if stop.requested() {
            halt.request();
        }
        if died.is_none() {
            for (name, worker) in workers {
                match worker.exited()? {
                    Some(status) if !status.success() => {
                        died = Some(format!(
                            "pipeline worker {name} died mid-run ({status}): {}",
                            worker.last_lines(3).join(" | ")
                        ));
                        halt.request();
                        break;
                    }
                    _ => {}
                }
            }
        }
        std::thread::sleep(WATCH_EVERY);
    }
    Ok(died)
}

/// The distributor's report as the engines' figures; `duplicates` are the collector's (every
/// result past a task's first).
fn figures(report: &PipelineReport, duplicates: u64, workers: usize) -> RunFigures {
    let mut per_worker = vec![0; workers];
    for w in &report.workers {
        let index = w
            .name
            .strip_prefix('w')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1));
        if let Some(count) = index.and_then(|i| per_worker.get_mut(i)) {
            *count += w.acked;
        }
    }
    RunFigures {
        wall: Duration::from_secs_f64(report.wall_s.max(0.0)),
        sent: report.issued,
        delivered: report.acked,
        // Failed tasks (every delivery lost) were never delivered either.
        lost: report.lost + report.failed.len() as u64,
        duplicates,
        latency: report
            .latency
            .clone()
            .unwrap_or_else(|| Recorder::new().summary()),
        work: Recorder::new().summary(),
        per_worker,
        final_state: None,
        rejected: 0,
        first_rejection: None,
        interrupted: report.interrupted,
        continuity: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineKind;

    #[test]
    fn the_cluster_word_pipeline_round_trips() {
        let kind: EngineKind = "pipeline".parse().unwrap();
        assert_eq!(kind, EngineKind::Pipeline);
        assert_eq!(kind.to_string(), "pipeline");
        let error = "pipelines".parse::<EngineKind>().unwrap_err();
        assert!(error.contains("pipeline"), "{error}");
    }

    #[test]
    fn only_balanced_steps_run_on_the_pipeline() {
        assert!(check_step(Step::Balanced).is_ok());
        for step in [Step::Partitioned, Step::Sequential] {
            let error = check_step(step).unwrap_err().to_string();
            assert!(
                error.contains("--step balanced") && error.contains(&step.to_string()),
                "{error}"
            );
        }
    }

    fn report(workers: &[(&str, u64)]) -> PipelineReport {
        use plumbline_pipeline::distributor::{FailedTask, WorkerReport};
        PipelineReport {
            wall_s: 1.5,
            ideal_s: None,
            overhead_pct: None,
            issued: 10,
            acked: 8,
            dispatches: 12,
            redeliveries: 2,
            isolated: 0,
            duplicates: 1,
            resumed: 0,
            failed: vec![FailedTask {
                id: 3,
                task_type: TASK_TYPE.into(),
                attempts: 3,
            }],
            lost: 1,
            bad_peers: 0,
            collector: None,
            interrupted: false,
            error: None,
            latency: None,
            types: Vec::new(),
            workers: workers
                .iter()
                .map(|&(name, acked)| WorkerReport {
                    name: name.into(),
                    task_type: TASK_TYPE.into(),
                    threads: 1,
                    dispatched: acked,
                    acked,
                    lost_connection: false,
                })
                .collect(),
        }
    }

    #[test]
    fn figures_count_failed_tasks_as_lost_and_place_workers_by_name() {
        // Workers report in the order they joined; the figures list them w1, w2, w3.
        let figures = figures(&report(&[("w3", 1), ("w1", 4), ("w2", 3)]), 2, 3);
        assert_eq!(figures.sent, 10);
        assert_eq!(figures.delivered, 8);
        assert_eq!(figures.lost, 2, "one interrupted, one failed");
        assert_eq!(figures.duplicates, 2);
        assert_eq!(figures.per_worker, [4, 3, 1]);
        assert_eq!(figures.wall, Duration::from_millis(1500));
        assert_eq!(figures.latency.count, 0, "no latencies in the report");
    }
}
