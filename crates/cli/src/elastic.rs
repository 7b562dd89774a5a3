//! `plumbline elastic`: a broker consumer group, or the TCP cluster (`--cluster processes`,
//! its partitions' state moving with them), that grows and shrinks mid-run on a worker
//! schedule (`--workers 2@0s,4@5s,1@10s`), or as an emulated HPA decides on its lag
//! (`--autoscale 1..6`), under an open-loop rate (steady, or seed 003's day/night), and what
//! each change cost: the pause (the longest time the group finished nothing while items
//! waited), the lag peak, the time until lag was back under its threshold; over the run, items
//! lost (0 on the at-least-once brokers and the TCP cluster) and duplicated, and on the TCP
//! cluster every key's state checked for continuity.
//!
//! args → [`ElasticPlan`] (pure) → the group engine with the schedule
//! (`plumbline_engine::external::External::elastic`, or
//! `plumbline_engine::processes::Processes::elastic`) → one sampled run
//! (`plumbline_engine::trial`) → per-change figures (`plumbline_scale::change`) → one run
//! record (`plumbline.run/3`, its `elastic` section) → table, JSON, report folder.
//! Starting and stopping members is the engine's; the arithmetic is scale's.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use plumbline_core::duration::Human;
use plumbline_engine::external::External;
use plumbline_engine::members::{Change, Leave};
use plumbline_engine::processes::Processes;
use plumbline_engine::scaling::{Decided, Scaling};
use plumbline_engine::trial;
use plumbline_engine::{Engine, EngineKind};
use plumbline_load::schedule::parse_rate;
use plumbline_load::Shape;
use plumbline_measure::record::{
    AutoscaleDecision, AutoscaleSection, Command, ElasticChange, ElasticMigration, ElasticSection,
    Record, RunRecord,
};
use plumbline_measure::report::Host;
use plumbline_measure::RunInfo;
use plumbline_scale::autoscale::{AutoscaleConfig, Reason, ReplicaRange, Target};
use plumbline_scale::change::{
    change_figures, over_limit, per_second, reaction, ChangeFigures, Reading, WorkerSchedule,
};
use plumbline_worker::Shutdown;

use crate::args::{ElasticArgs, ElasticShape};
use crate::bench::Verdict;
use crate::plan::{BenchPlan, RunPlan, RunShape};
use crate::session::{Outcome, Session};

/// A validated elastic run.
#[derive(Debug)]
pub struct ElasticPlan {
    pub bench: BenchPlan,
    /// A broker's consumer group, or the TCP cluster (`processes`).
    pub engine: EngineKind,
    /// `--workers`'s schedule, or (from its one count) the autoscaler.
    pub scaling: Scaling,
    pub leave: Leave,
    /// The rate, or with a day/night shape its peak.
    pub rate: f64,
    /// When each item is due: `rate` all along, or seed 003's day peaking at it.
    pub shape: Shape,
    pub duration: Duration,
    /// Lag at or under this many items counts as recovered; `None`: twice the lag before the
    /// change, and at least 50 ms of the rate.
    pub recover_lag: Option<f64>,
}

impl ElasticPlan {
    pub fn build(args: &ElasticArgs, cores: usize) -> Result<Self> {
        let schedule: WorkerSchedule = args.workers.parse()?;
        let autoscale = match &args.autoscale {
            None => None,
            Some(range) => {
                ensure!(
                    schedule.steps().len() == 1,
                    "--workers {schedule} with --autoscale: give the one count it starts from \
                     (e.g. 1@0s); the autoscaler makes every later change"
                );
                let range: ReplicaRange = range.parse().context("--autoscale")?;
                let (target, flag) = match args.busy_target {
                    Some(busy) => (Target::Busy(busy), "--busy-target"),
                    None => (Target::LagPerReplica(args.lag_target), "--lag-target"),
                };
                let config =
                    AutoscaleConfig::kubernetes(range, target).scaled(args.autoscale_speed);
                config.validate().context(flag)?;
                Some(config)
            }
        };
        let start = schedule.steps()[0].workers;
        let rate = parse_rate(&args.rate).map_err(|e| anyhow::anyhow!("--rate: {e}"))?;
        let Some(rate) = rate else {
            bail!(
                "--rate {}: a membership change is measured under a steady rate, not max",
                args.rate
            );
        };
        ensure!(!args.duration.is_zero(), "--duration must be above 0");
        let shape = match args.shape {
            ElasticShape::Constant => Shape::Constant { rate },
            ElasticShape::DayNight => Shape::DayNight {
                breakpoints: args.day_night.breakpoints,
                cycles: args.day_night.cycles,
                duration: args.duration,
                max_rate: rate,
            },
        };
        shape
            .validate()
            .map_err(|e| anyhow::anyhow!("--shape: {e}"))?;
        let last = schedule.steps().last().map_or(Duration::ZERO, |s| s.at);
        ensure!(
            last < args.duration,
            "--workers {schedule}: its last change at {} is not before the load ends \
             (--duration {})",
            Human(last),
            Human(args.duration)
        );
        let mean = shape.mean_rate().unwrap_or(rate);
        let items = (mean * args.duration.as_secs_f64()).ceil().max(1.0) as u64;
        let matrix_shape = RunShape {
            items: Some(vec![items]),
            workers: Some(vec![start]),
            rate: Some(args.rate.clone()),
        };
        let bench = BenchPlan::build(&args.matrix, &matrix_shape, cores)?;
        ensure!(
            bench.runs.len() == 1,
            "elastic runs one configuration: give one --delay, --work, --step and --cluster \
             (this matrix has {} runs)",
            bench.runs.len()
        );
        let engine = bench.runs[0].engine.clone();
        match &engine {
            EngineKind::Group(_) => {}
            EngineKind::Processes => ensure!(
                args.leave == Leave::Graceful,
                "--leave kill with --cluster processes: the TCP cluster's members leave \
                 gracefully (a shrink hands their partitions' state over); a killed worker's \
                 state dies with it and the cluster stops. Kill members of a broker group \
                 (--cluster redis://…, nats://…?jetstream=1, kafka://…)"
            ),
            other => bail!(
                "--cluster {other}: elastic grows and shrinks a broker's consumer group \
                 (redis://…, nats://…?jetstream=1, kafka://…) or the TCP cluster (processes)"
            ),
        }
        let scaling = match autoscale {
            None => Scaling::Schedule(schedule),
            Some(config) => Scaling::Autoscale {
                config,
                start,
                cost: bench.runs[0].cluster.delay,
            },
        };
        if let Some(lag) = args.recover_lag {
            ensure!(
                lag >= 0.0 && lag.is_finite(),
                "--recover-lag {lag}: items, at least 0"
            );
        }
        Ok(Self {
            engine,
            bench,
            scaling,
            leave: args.leave,
            rate,
            shape,
            duration: args.duration,
            recover_lag: args.recover_lag,
        })
    }

    /// The load's shape in the record's word.
    fn shape_name(&self) -> &'static str {
        match self.shape {
            Shape::DayNight { .. } => "day-night",
            _ => "constant",
        }
    }

    /// The rate offered on average: a constant's own, a day's mean.
    fn mean_rate(&self) -> f64 {
        self.shape.mean_rate().unwrap_or(self.rate)
    }

    fn run_plan(&self) -> &RunPlan {
        &self.bench.runs[0]
    }

    /// How long after the load the run waits for its last items: long enough for a broker to
    /// redeliver what a member that left at the last moment held (its members' redelivery
    /// time, 5 s by default, and 2 s for the claim to come round), so that only a real loss
    /// counts as lost.
    fn grace(&self) -> Duration {
        let default = trial::grace(Duration::ZERO, self.duration);
        match self.engine {
            EngineKind::Group(_) => default.max(
                plumbline_transport::broker::ClientOptions::default().redeliver_after
                    + Duration::from_secs(2),
            ),
            _ => default,
        }
    }

    /// The membership's driver in words: the schedule, or the autoscaler's bounds.
    fn driver(&self) -> String {
        match &self.scaling {
            Scaling::Schedule(schedule) => schedule.to_string(),
            Scaling::Autoscale { config, start, .. } => format!(
                "autoscale {} from {start} ({})",
                config.range,
                aim(config.target)
            ),
        }
    }

    /// Items of lag per member the autoscaler aims for; `None` on a schedule.
    fn lag_target(&self) -> Option<f64> {
        match &self.scaling {
            Scaling::Autoscale { config, .. } => match config.target {
                Target::LagPerReplica(t) => Some(t),
                Target::Busy(_) => None,
            },
            Scaling::Schedule(_) => None,
        }
    }
}

pub fn run(args: &ElasticArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = ElasticPlan::build(args, cores)?;
    let limits = args.output.limits.for_command(Command::Elastic)?;
    let exe = std::env::current_exe()?;
    // Built for the most members it will have (a Kafka topic gets a partition for each).
    let cluster = plumbline_worker::ClusterConfig {
        workers: plan.scaling.peak(),
        ..plan.run_plan().cluster.clone()
    };
    let (scaling, leave) = (plan.scaling.clone(), plan.leave);
    let engine: Box<dyn Engine> = match &plan.engine {
        EngineKind::Group(url) => {
            Box::new(External::group(url, &cluster, &exe).elastic(scaling, leave))
        }
        _ => Box::new(Processes::new(cluster, exe).elastic(scaling, leave)?),
    };
    let elastic = engine.elastic().context("an elastic engine")?;
    let session = Session::start(
        "elastic",
        &args.output.out,
        (!args.output.no_report).then(|| crate::session::timestamped("elastic")),
    )?;
    let live = session.live();
    live.begin_run(RunInfo {
        label: format!(
            "{}: {} at {:.0}/s{}",
            engine.describe(),
            plan.driver(),
            plan.rate,
            match plan.shape {
                Shape::DayNight { .. } => " at noon of a day/night load",
                _ => "",
            }
        ),
        workers: plan.scaling.peak(),
        total: None,
        target_per_s: Some(plan.mean_rate()),
    });
    let load = plan.bench.load(0);
    let run = trial::run(
        engine.as_ref(),
        &load,
        &plan.shape,
        (Duration::ZERO, plan.duration, plan.grace()),
        live,
        shutdown,
    )?;
    let lag = run.lag();
    let readings: Vec<Reading> = run
        .samples
        .iter()
        .filter(|s| s.t <= plan.duration.as_secs_f64())
        .map(|s| {
            let (t, lag) = run.lag_at(s);
            Reading {
                t,
                lag,
                done: s.done,
            }
        })
        .collect();
    let end = readings.last().map_or(0.0, |r| r.t);
    let applied = elastic.changes();
    let changes: Vec<ElasticChange> = applied
        .iter()
        .enumerate()
        .map(|(i, change)| {
            let at = change.at.as_secs_f64();
            let until = applied.get(i + 1).map_or(end, |next| next.at.as_secs_f64());
            let before = change_figures(&readings, at, until, f64::INFINITY).lag_before;
            // Under the autoscaler, recovered means back at what it aims for.
            let threshold = plan.recover_lag.unwrap_or_else(|| match plan.lag_target() {
                Some(target) => target * change.to as f64,
                None => (2.0 * before).max(plan.rate * 0.05),
            });
            let figures: ChangeFigures = change_figures(&readings, at, until, threshold);
            let since = i
                .checked_sub(1)
                .map_or(0.0, |p| applied[p].at.as_secs_f64());
            let reaction_s = plan
                .lag_target()
                .and_then(|target| reaction(&readings, since, at, target * change.from as f64));
            ElasticChange {
                from: change.from,
                to: change.to,
                how: change.how(plan.leave),
                at_s: at,
                pause_s: figures.pause_s,
                slowest_share: figures.slowest_share,
                lag_before: figures.lag_before,
                lag_peak: figures.lag_peak,
                recover_lag: threshold,
                recovered_s: figures.recovered_s,
                reaction_s,
            }
        })
        .collect();
    let figures = &run.figures;
    let record = Record {
        seed: Some(plan.bench.seed),
        preset: Some(plan.bench.preset.clone()),
        runs: vec![RunRecord {
            items: Some(figures.sent),
            sent: Some(figures.sent),
            delivered: Some(figures.delivered),
            lost: figures.lost,
            duplicates: figures.duplicates,
            target_per_s: Some(plan.mean_rate()),
            achieved_per_s: run.achieved(),
            latency_s: figures.latency.clone(),
            interrupted: figures.interrupted,
            elastic: Some(ElasticSection {
                cluster: plan.engine.to_string(),
                schedule: plan.driver(),
                leave: plan.leave.to_string(),
                shape: plan.shape_name().into(),
                peak_per_s: plan.rate,
                cut: run.cut,
                autoscale: autoscale_section(&plan, &applied, &elastic.decided(), &readings),
                changes,
                lag,
                flow: per_second(&readings),
                continuity: figures.continuity.clone(),
                migrations: elastic
                    .migrations()
                    .iter()
                    .map(|m| ElasticMigration {
                        at_s: m.at.as_secs_f64(),
                        workers: m.workers,
                        moved: m.moved,
                        took_s: m.took.as_secs_f64(),
                        longest_hold_s: m.longest_hold.as_secs_f64(),
                    })
                    .collect(),
            }),
            ..RunRecord::new(plan.scaling.peak(), figures.wall.as_secs_f64())
        }
        .with_intervals(live.run_intervals())],
        ..Record::new(
            Command::Elastic,
            crate::session::command_line(),
            Host::current(),
        )
    };
    print!("{}", table(&record.runs[0], plan.duration));
    if let Some(path) = &args.output.json {
        std::fs::write(path, record.to_json())?;
    }
    session.finish(Outcome {
        runs: plumbline_report::rows(&record),
        resolved: plan.bench.resolved.clone(),
        seeds: vec![plan.bench.seed],
        detail: serde_json::to_value(&record)?,
    })?;
    let run = &record.runs[0];
    let cut = run.elastic.as_ref().is_some_and(|e| e.cut);
    let sent = run.sent.unwrap_or(0);
    let mut failures = match run.lost {
        0 => Vec::new(),
        lost if cut => vec![format!(
            "{lost} of {sent} items were not done when the run was cut, {} after the load \
             ended (the group fell behind, or they wait for a redelivery)",
            Human(plan.grace())
        )],
        lost => vec![format!(
            "{lost} of {sent} items were lost across the membership changes"
        )],
    };
    if let Some(c) = run.elastic.as_ref().and_then(|e| e.continuity.as_ref()) {
        if c.violations > 0 {
            failures.push(format!(
                "{} key(s)' state broke continuity across the migrations: {}",
                c.violations,
                c.examples.join("; ")
            ));
        }
    }
    Ok(Verdict::of(shutdown.requested(), failures).held_to(limits, &record))
}

/// The autoscaler's part of the record: its setup, its decisions, and the replica-seconds it
/// used against a perfect scaler's (each item's cost, the load's shape followed exactly).
fn autoscale_section(
    plan: &ElasticPlan,
    applied: &[Change],
    decided: &[Decided],
    readings: &[Reading],
) -> Option<AutoscaleSection> {
    let Scaling::Autoscale { config, start, .. } = &plan.scaling else {
        return None;
    };
    let duration = plan.duration.as_secs_f64();
    let running = |t: f64| {
        applied
            .iter()
            .take_while(|c| c.at.as_secs_f64() <= t)
            .last()
            .map_or(*start, |c| c.to)
    };
    Some(AutoscaleSection {
        range: config.range.to_string(),
        lag_per_replica: plan.lag_target(),
        busy_target: match config.target {
            Target::Busy(busy) => Some(busy),
            Target::LagPerReplica(_) => None,
        },
        sync_s: config.sync.as_secs_f64(),
        scale_up_window_s: config.up.window.as_secs_f64(),
        scale_down_window_s: config.down.window.as_secs_f64(),
        decisions: decided
            .iter()
            .map(|d| AutoscaleDecision {
                at_s: d.at.as_secs_f64(),
                lag: d.lag,
                busy: d.busy,
                from: d.from,
                to: d.decision.replicas as usize,
                recommended: d.decision.recommended as usize,
                reason: reason(d.decision.reason).into(),
            })
            .collect(),
        replica_seconds: replica_seconds(*start, applied, duration),
        // A perfect scaler follows the load: every item's cost, and nothing idle.
        ideal_replica_seconds: plan.mean_rate()
            * plan.run_plan().cluster.delay.as_secs_f64()
            * duration,
        over_target_s: plan
            .lag_target()
            .map(|target| over_limit(readings, |t| target * running(t) as f64)),
    })
}

/// What an autoscaler aims for, in words.
fn aim(target: Target) -> String {
    match target {
        Target::LagPerReplica(lag) => format!("{lag:.0} items of lag per replica"),
        Target::Busy(busy) => format!("{:.0} % busy per replica", busy * 100.0),
    }
}

fn reason(reason: Reason) -> &'static str {
    match reason {
        Reason::WithinTolerance => "within tolerance",
        Reason::Metric => "metric",
        Reason::Stabilized => "stabilized",
        Reason::RateLimited => "rate limited",
        Reason::Bounded => "bounded",
    }
}

/// Workers integrated over `[0, end]` seconds: `start` until the first change, then each
/// change's count until the next.
fn replica_seconds(start: usize, changes: &[Change], end: f64) -> f64 {
    let mut total = 0.0;
    let (mut count, mut since) = (start as f64, 0.0);
    for change in changes {
        let at = change.at.as_secs_f64().min(end);
        total += count * (at - since).max(0.0);
        (count, since) = (change.to as f64, at);
    }
    total + count * (end - since).max(0.0)
}

fn table(run: &RunRecord, duration: Duration) -> String {
    let Some(e) = &run.elastic else {
        return String::new();
    };
    let mut out = format!(
        "{} · {} at {} (achieved {:.1}/s) for {}: sent {}, delivered {}, lost {}, \
         duplicates {}\n",
        e.cluster,
        e.schedule,
        match e.shape.as_str() {
            "day-night" => format!(
                "a day/night load peaking at {:.0}/s, {:.0}/s on average",
                e.peak_per_s,
                run.target_per_s.unwrap_or(0.0)
            ),
            _ => format!("{:.0}/s", run.target_per_s.unwrap_or(0.0)),
        },
        run.achieved_per_s,
        Human(duration),
        run.sent.unwrap_or(0),
        run.delivered.unwrap_or(0),
        run.lost,
        run.duplicates
    );
    if let Some(a) = &e.autoscale {
        let target = match (a.busy_target, a.lag_per_replica) {
            (Some(busy), _) => aim(Target::Busy(busy)),
            (None, lag) => aim(Target::LagPerReplica(lag.unwrap_or(0.0))),
        };
        out.push_str(&format!(
            "autoscaler {} on {target}, sync {:.2}s, scale-down window {:.1}s: {} decisions, {:.1} replica-seconds (ideal {:.1}){}\n",
            a.range,
            a.sync_s,
            a.scale_down_window_s,
            a.decisions.len(),
            a.replica_seconds,
            a.ideal_replica_seconds,
            a.over_target_s
                .map_or(String::new(), |s| format!(", lag over target for {s:.2}s"))
        ));
        for d in a.decisions.iter().filter(|d| d.to != d.from) {
            let busy = d
                .busy
                .map_or(String::new(), |b| format!(" busy {:>3.0} %", b * 100.0));
            out.push_str(&format!(
                "  at {:>6.2}s lag {:>6.0}{busy}: {} → {} (asked {}, {})\n",
                d.at_s, d.lag, d.from, d.to, d.recommended, d.reason
            ));
        }
        for c in e.changes.iter() {
            if let Some(r) = c.reaction_s {
                out.push_str(&format!(
                    "  {} → {} came {r:.2}s after lag went over the target\n",
                    c.from, c.to
                ));
            }
        }
    }
    if let Some(c) = &e.continuity {
        out.push_str(&format!(
            "state continuity: {} results of {} keys checked, {} violation(s), {} redelivered\n",
            c.checked, c.keys, c.violations, c.redelivered
        ));
    }
    out.push_str(
        "change      how       at      pause   slowest 1 s  lag before  lag peak  recovered\n",
    );
    for c in &e.changes {
        let recovered = c
            .recovered_s
            .map_or("never".into(), |s| format!("after {s:.2}s"));
        let slowest = c
            .slowest_share
            .map_or("-".into(), |s| format!("{:.0} %", s * 100.0));
        out.push_str(&format!(
            "{:>2} → {:<5} {:<9} {:>6.2}s {:>7.3}s {slowest:>12} {:>11.0} {:>9.0}  {recovered} (≤ {:.0})\n",
            c.from, c.to, c.how, c.at_s, c.pause_s, c.lag_before, c.lag_peak, c.recover_lag
        ));
    }
    if !e.migrations.is_empty() {
        out.push_str("migration settled  workers  moved  took      longest hold\n");
        for m in &e.migrations {
            out.push_str(&format!(
                "          {:>6.2}s {:>8} {:>6} {:>7.1}ms {:>9.1}ms\n",
                m.at_s,
                m.workers,
                m.moved,
                m.took_s * 1e3,
                m.longest_hold_s * 1e3
            ));
        }
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
    /// A group autoscaled between 1 and 4 members, from 1.
    const AUTOSCALED: [&str; 6] = [
        "--cluster",
        GROUP,
        "--workers",
        "1@0s",
        "--autoscale",
        "1..4",
    ];

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
        let Scaling::Schedule(schedule) = &p.scaling else {
            panic!("{:?}", p.scaling);
        };
        assert_eq!(schedule.steps().len(), 2);
        assert_eq!(p.leave, Leave::Graceful);
    }

    #[test]
    fn a_day_night_load_peaks_at_the_rate_over_the_duration_and_sends_its_mean() {
        let p = plan(
            &[
                &AUTOSCALED[..],
                &["--shape", "day-night", "--cycles", "2", "--rate", "400/s"],
                &["--duration", "20s"],
            ]
            .concat(),
        )
        .unwrap();
        let Shape::DayNight {
            breakpoints,
            cycles,
            duration,
            max_rate,
        } = p.shape
        else {
            panic!("{:?}", p.shape);
        };
        assert_eq!((breakpoints, cycles), (24, 2));
        assert_eq!((duration, max_rate), (Duration::from_secs(20), 400.0));
        let mean = p.shape.mean_rate().unwrap();
        assert!(mean > 100.0 && mean < 400.0, "{mean}");
        assert_eq!(p.run_plan().items, (mean * 20.0).ceil() as u64);
        let refused = plan(&[&AUTOSCALED[..], &["--shape", "day-night", "--cycles", "0"]].concat());
        assert!(refused.unwrap_err().to_string().contains("cycle"));
    }

    #[test]
    fn autoscale_starts_from_its_one_count_and_runs_up_to_its_max() {
        let p = plan(
            &[
                &AUTOSCALED[..],
                &["--lag-target", "20", "--autoscale-speed", "15"],
            ]
            .concat(),
        )
        .unwrap();
        let Scaling::Autoscale { config, start, .. } = &p.scaling else {
            panic!("{:?}", p.scaling);
        };
        assert_eq!((*start, p.scaling.peak()), (1, 4));
        assert_eq!(config.sync, Duration::from_secs(1), "Kubernetes' 15 s ÷ 15");
        assert_eq!(config.down.window, Duration::from_secs(20));
        assert_eq!(p.run_plan().cluster.workers, 1);
        assert_eq!(
            p.driver(),
            "autoscale 1..4 from 1 (20 items of lag per replica)"
        );
    }

    #[test]
    fn replica_seconds_integrate_each_count_until_the_next_change() {
        let change = |at_ms, from, to| Change {
            at: Duration::from_millis(at_ms),
            from,
            to,
        };
        // 1 for 2 s, 3 for 4 s, 2 for the last 4 s.
        let changes = [change(2000, 1, 3), change(6000, 3, 2)];
        assert!((replica_seconds(1, &changes, 10.0) - 22.0).abs() < 1e-9);
        assert!((replica_seconds(2, &[], 5.0) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn the_tcp_cluster_grows_and_shrinks_as_the_processes_engine() {
        let p = plan(&[
            "--cluster",
            "processes",
            "--step",
            "partitioned",
            "--workers",
            "2@0s,4@2s,2@4s",
            "--duration",
            "6s",
        ])
        .unwrap();
        assert_eq!(p.engine, EngineKind::Processes);
        assert_eq!((p.scaling.start(), p.scaling.peak()), (2, 4));
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
            (
                vec![
                    "--cluster",
                    GROUP,
                    "--workers",
                    "1@0s,2@5s",
                    "--autoscale",
                    "1..4",
                ],
                "the one count it starts from",
            ),
            (
                vec![
                    "--cluster",
                    GROUP,
                    "--autoscale",
                    "4..2",
                    "--workers",
                    "1@0s",
                ],
                "--autoscale",
            ),
            (
                [&AUTOSCALED[..], &["--lag-target", "0"]].concat(),
                "--lag-target",
            ),
            (
                vec![
                    "--cluster",
                    "processes",
                    "--workers",
                    "4@0s,3@5s",
                    "--leave",
                    "kill",
                ],
                "leave gracefully",
            ),
            (
                vec!["--cluster", "pipeline", "--workers", "2@0s,1@5s"],
                "or the TCP cluster",
            ),
        ] {
            let error = format!("{:#}", plan(&args).unwrap_err());
            assert!(error.contains(says), "{args:?}: {error}");
        }
    }
}
