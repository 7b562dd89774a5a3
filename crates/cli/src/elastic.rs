//! `plumbline elastic`: a broker consumer group that grows and shrinks mid-run on a worker
//! schedule (`--workers 2@0s,4@5s,1@10s`) under a steady open-loop rate, and what each change
//! cost: the pause (the longest time the group finished nothing while items waited), the lag
//! peak, the time until lag was back under its threshold; over the run, items lost (0 on the
//! at-least-once brokers) and duplicated.
//!
//! args → [`ElasticPlan`] (pure) → the group engine with the schedule
//! (`plumbline_engine::external::External::elastic`) → one sampled run
//! (`plumbline_engine::trial`) → per-change figures (`plumbline_scale::change`) → table, JSON,
//! report folder. Starting and stopping members is the engine's; the arithmetic is scale's.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use plumbline_core::duration::Human;
use plumbline_engine::external::External;
use plumbline_engine::members::Leave;
use plumbline_engine::trial;
use plumbline_engine::{Engine, EngineKind};
use plumbline_load::schedule::parse_rate;
use plumbline_measure::RunInfo;
use plumbline_scale::change::{change_figures, ChangeFigures, Reading, WorkerSchedule};
use plumbline_worker::Shutdown;
use serde::Serialize;

use crate::args::ElasticArgs;
use crate::bench::Verdict;
use crate::plan::{BenchPlan, RunPlan, RunShape};
use crate::session::{Outcome, Session};

/// The JSON document's schema.
pub const SCHEMA: &str = "plumbline.elastic/1";

/// A validated elastic run.
#[derive(Debug)]
pub struct ElasticPlan {
    pub bench: BenchPlan,
    pub url: String,
    pub schedule: WorkerSchedule,
    pub leave: Leave,
    pub rate: f64,
    pub duration: Duration,
    /// Lag at or under this many items counts as recovered; `None`: twice the lag before the
    /// change, and at least 50 ms of the rate.
    pub recover_lag: Option<f64>,
}

impl ElasticPlan {
    pub fn build(args: &ElasticArgs, cores: usize) -> Result<Self> {
        let schedule: WorkerSchedule = args.workers.parse()?;
        let rate = parse_rate(&args.rate).map_err(|e| anyhow::anyhow!("--rate: {e}"))?;
        let Some(rate) = rate else {
            bail!(
                "--rate {}: a membership change is measured under a steady rate, not max",
                args.rate
            );
        };
        ensure!(!args.duration.is_zero(), "--duration must be above 0");
        let last = schedule.steps().last().map_or(Duration::ZERO, |s| s.at);
        ensure!(
            last < args.duration,
            "--workers {schedule}: its last change at {} is not before the load ends \
             (--duration {})",
            Human(last),
            Human(args.duration)
        );
        let items = (rate * args.duration.as_secs_f64()).ceil().max(1.0) as u64;
        let shape = RunShape {
            items: Some(vec![items]),
            workers: Some(vec![schedule.steps()[0].workers]),
            rate: Some(args.rate.clone()),
        };
        let bench = BenchPlan::build(&args.matrix, &shape, cores)?;
        ensure!(
            bench.runs.len() == 1,
            "elastic runs one configuration: give one --delay, --work, --step and --cluster \
             (this matrix has {} runs)",
            bench.runs.len()
        );
        let EngineKind::Group(url) = &bench.runs[0].engine else {
            bail!(
                "--cluster {}: elastic grows and shrinks a broker's consumer group \
                 (redis://…, nats://…?jetstream=1, kafka://…); the TCP cluster's migration is \
                 not built yet",
                bench.runs[0].engine
            );
        };
        if let Some(lag) = args.recover_lag {
            ensure!(
                lag >= 0.0 && lag.is_finite(),
                "--recover-lag {lag}: items, at least 0"
            );
        }
        Ok(Self {
            url: url.clone(),
            bench,
            schedule,
            leave: args.leave,
            rate,
            duration: args.duration,
            recover_lag: args.recover_lag,
        })
    }

    fn run_plan(&self) -> &RunPlan {
        &self.bench.runs[0]
    }
}

/// One change as measured.
#[derive(Debug, Serialize)]
pub struct ChangeRow {
    pub from: usize,
    pub to: usize,
    pub leave: String,
    /// Since the load started, as applied.
    pub at_s: f64,
    pub pause_s: f64,
    pub lag_before: f64,
    pub lag_peak: f64,
    pub recover_lag: f64,
    /// From the change until lag was back under `recover_lag`; null when it never was
    /// before the next change or the end.
    pub recovered_s: Option<f64>,
}

/// Everything `elastic --json` writes.
#[derive(Debug, Serialize)]
pub struct ElasticReport {
    pub schema: &'static str,
    pub cluster: String,
    pub schedule: String,
    pub rate_per_s: f64,
    pub achieved_per_s: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Stopped 1 s plus a quarter of the duration after the load ended with items not done:
    /// `lost` then counts those too (abandoned, perhaps still on their way).
    pub cut: bool,
    pub changes: Vec<ChangeRow>,
    /// Seconds since the first item → items due and not done, every sample.
    pub lag: Vec<(f64, f64)>,
}

pub fn run(args: &ElasticArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = ElasticPlan::build(args, cores)?;
    let exe = std::env::current_exe()?;
    // Built for the most members it will have (a Kafka topic gets a partition for each).
    let cluster = plumbline_worker::ClusterConfig {
        workers: plan.schedule.peak(),
        ..plan.run_plan().cluster.clone()
    };
    let engine =
        External::group(&plan.url, &cluster, &exe).elastic(plan.schedule.clone(), plan.leave);
    let session = Session::start(
        "elastic",
        &args.output.out,
        (!args.output.no_report).then(|| crate::session::timestamped("elastic")),
    )?;
    let live = session.live();
    live.begin_run(RunInfo {
        label: format!(
            "{}: {} at {:.0}/s",
            engine.describe(),
            plan.schedule,
            plan.rate
        ),
        workers: plan.schedule.peak(),
        total: None,
        target_per_s: Some(plan.rate),
    });
    let load = plan.bench.load(0);
    let run = trial::run(
        &engine,
        &load,
        plan.rate,
        (Duration::ZERO, plan.duration),
        live,
        shutdown,
    )?;
    // `lag()` covers the samples of the load's window: the same ones, in order.
    let lag = run.lag();
    let window = plan.duration.as_secs_f64();
    let readings: Vec<Reading> = run
        .samples
        .iter()
        .filter(|s| s.t <= window)
        .zip(&lag)
        .map(|(s, &(t, lag))| Reading {
            t,
            lag,
            done: s.done,
        })
        .collect();
    let end = readings.last().map_or(0.0, |r| r.t);
    let applied = engine.changes();
    let changes: Vec<ChangeRow> = applied
        .iter()
        .enumerate()
        .map(|(i, change)| {
            let at = change.at.as_secs_f64();
            let until = applied.get(i + 1).map_or(end, |next| next.at.as_secs_f64());
            let before = change_figures(&readings, at, until, f64::INFINITY).lag_before;
            let threshold = plan
                .recover_lag
                .unwrap_or_else(|| (2.0 * before).max(plan.rate * 0.05));
            let figures: ChangeFigures = change_figures(&readings, at, until, threshold);
            ChangeRow {
                from: change.from,
                to: change.to,
                leave: match change.to < change.from {
                    true => plan.leave.to_string(),
                    false => "join".into(),
                },
                at_s: at,
                pause_s: figures.pause_s,
                lag_before: figures.lag_before,
                lag_peak: figures.lag_peak,
                recover_lag: threshold,
                recovered_s: figures.recovered_s,
            }
        })
        .collect();
    let report = ElasticReport {
        schema: SCHEMA,
        cluster: plumbline_core::secret::redact_url(&plan.url),
        schedule: plan.schedule.to_string(),
        rate_per_s: plan.rate,
        achieved_per_s: run.achieved(),
        duration_s: plan.duration.as_secs_f64(),
        sent: run.figures.sent,
        delivered: run.figures.delivered,
        lost: run.figures.lost,
        duplicates: run.figures.duplicates,
        cut: run.cut,
        changes,
        lag,
    };
    print!("{}", table(&report));
    if let Some(path) = &args.output.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    session.finish(Outcome {
        runs: Vec::new(),
        resolved: plan.bench.resolved.clone(),
        seeds: vec![plan.bench.seed],
        detail: serde_json::to_value(&report)?,
    })?;
    let failures = match report.lost {
        0 => Vec::new(),
        lost if report.cut => vec![format!(
            "{lost} of {} items were not done when the run was cut, {} after the load \
             ended (the group fell behind, or they wait for a redelivery)",
            report.sent,
            Human(trial::grace(Duration::ZERO, plan.duration))
        )],
        lost => vec![format!(
            "{lost} of {} items were lost across the membership changes",
            report.sent
        )],
    };
    Ok(Verdict::of(shutdown.requested(), failures))
}

fn table(report: &ElasticReport) -> String {
    let mut out = format!(
        "{} · {} at {:.0}/s (achieved {:.1}/s) for {:.0}s: sent {}, delivered {}, lost {}, \
         duplicates {}\n",
        report.cluster,
        report.schedule,
        report.rate_per_s,
        report.achieved_per_s,
        report.duration_s,
        report.sent,
        report.delivered,
        report.lost,
        report.duplicates
    );
    out.push_str("change      how       at      pause    lag before  lag peak  recovered\n");
    for c in &report.changes {
        let recovered = c
            .recovered_s
            .map_or("never".into(), |s| format!("after {s:.2}s"));
        out.push_str(&format!(
            "{:>2} → {:<5} {:<9} {:>6.2}s {:>7.3}s {:>10.0} {:>9.0}  {recovered} (≤ {:.0})\n",
            c.from, c.to, c.leave, c.at_s, c.pause_s, c.lag_before, c.lag_peak, c.recover_lag
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<ElasticPlan> {
        let cli =
            crate::args::Cli::try_parse_from(["plumbline", "elastic"].iter().chain(args).copied())?;
        let crate::args::Command::Elastic(args) = cli.command else {
            unreachable!()
        };
        ElasticPlan::build(&args, 2)
    }

    const GROUP: &str = "redis://127.0.0.1:6379/jobs";

    #[test]
    fn a_schedule_on_a_broker_group_makes_one_run_at_the_rate() {
        let p = plan(&[
            "--cluster",
            GROUP,
            "--workers",
            "2@0s,4@5s",
            "--rate",
            "300/s",
        ])
        .unwrap();
        assert_eq!(p.rate, 300.0);
        assert_eq!(p.run_plan().cluster.workers, 2);
        assert_eq!(p.schedule.steps().len(), 2);
        assert_eq!(p.leave, Leave::Graceful);
    }

    #[test]
    fn what_cannot_be_measured_is_refused_by_name() {
        for (args, says) in [
            (vec!["--workers", "2@0s,1@5s"], "broker's consumer group"),
            (
                vec!["--cluster", GROUP, "--workers", "2@0s,1@20s"],
                "is not before the load ends",
            ),
            (
                vec!["--cluster", GROUP, "--workers", "2@0s", "--rate", "max"],
                "steady rate",
            ),
            (
                vec!["--cluster", GROUP, "--workers", "2@0s,0@5s"],
                "at least 1",
            ),
            (
                vec![
                    "--cluster",
                    GROUP,
                    "--workers",
                    "2@0s",
                    "--delay",
                    "1ms,2ms",
                ],
                "one configuration",
            ),
        ] {
            let error = format!("{:#}", plan(&args).unwrap_err());
            assert!(error.contains(says), "{args:?}: {error}");
        }
    }
}
