//! `plumbline capacity`: for each worker count, the highest open-loop rate the engine
//! sustains, and for given loads the fewest workers that do (Theodolite's capacity and demand
//! metrics, on any engine plumbline runs).
//!
//! args → [`CapacityPlan`] (pure: the bench matrix with one batch per worker count to take the
//! ideal rate from, the SLO, the trial timing) → per curve and worker count a
//! `plumbline_scale` search whose trials run on the engine (`plumbline_engine::trial`) →
//! one [`CapacityReport`] → table, JSON, report folder. Judging and searching are
//! `plumbline-scale`'s; running and sampling the engine's.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use plumbline_core::duration::Human;
use plumbline_engine::external::{External, Spawn, PER_ITEM};
use plumbline_engine::trial::{self, TrialRun};
use plumbline_engine::{Engine, EngineKind};
use plumbline_load::schedule::parse_rate;
use plumbline_measure::record::{
    CapacityCurve, CapacityPoint, CapacitySection, Command, Demand, Record, RunRecord, TrialSection,
};
use plumbline_measure::report::Host;
use plumbline_measure::{Ideal, Limit, RunInfo};
use plumbline_report::{CapacityCharts, TrialLag};
use plumbline_scale::{
    fewest_workers, judge, CapacitySearch, LagSlope, SearchConfig, SearchOutcome, Slo, Step,
    TrialFigures, TrialSearch, Verdict,
};
use plumbline_transport::config::TransportConfig;
use plumbline_worker::Shutdown;

use crate::args::CapacityArgs;
use crate::bench::Verdict as CommandVerdict;
use crate::plan::{BenchPlan, RunPlan, RunShape};
use crate::session::{Outcome, Session};

/// Items of the batch each worker count's first ideal estimate is derived from (the ideal a
/// search is judged against is that of the items its trials send: [`CapacityPlan::trial_ideal`]).
const ESTIMATE_ITEMS: u64 = 20_000;
/// Rounds of [`settle`] at most: the ideal of a trial's items moves little with the rate.
const SETTLE_ROUNDS: usize = 8;
/// The JSON document's schema.
/// Items per worker of the batch that finds where to start on a system of unknown cost.
const PROBE_ITEMS: u64 = 50;

/// The user's own system (`--to`, `--from`, `--spawn`), run in place of the matrix's engine.
#[derive(Debug)]
pub struct System {
    pub to: String,
    pub from: String,
    pub spawn: Spawn,
    /// `--per-item`: what an item costs a worker; `None`: unknown.
    pub per_item: Option<Duration>,
}

/// A validated capacity experiment.
#[derive(Debug)]
pub struct CapacityPlan {
    pub bench: BenchPlan,
    /// Runs of one curve differ only in their worker count (ascending): indexes into
    /// `bench.runs`.
    pub curves: Vec<(String, Vec<usize>)>,
    pub slo: Slo,
    pub resolution: f64,
    pub warmup: Duration,
    pub window: Duration,
    pub start: Option<f64>,
    pub max_trials: u32,
    pub max_duration: Duration,
    pub loads: Vec<f64>,
    pub system: Option<System>,
    /// The machine's cores, which bound a CPU-bound ideal.
    pub cores: usize,
}

impl CapacityPlan {
    pub fn build(args: &CapacityArgs, cores: usize) -> Result<Self> {
        ensure!(
            args.matrix.preset != "pipeline",
            "capacity runs on threads, processes, a broker group or your system; the pipeline \
             preset is bench's"
        );
        let system = match (&args.to, &args.from, &args.spawn) {
            (Some(to), Some(from), Some(spawn)) => {
                to.parse::<TransportConfig>().context("--to")?;
                from.parse::<TransportConfig>().context("--from")?;
                Some(System {
                    to: to.clone(),
                    from: from.clone(),
                    spawn: match args.per_item {
                        Some(cost) => {
                            Spawn::parse(spawn)?.with_env(PER_ITEM, cost.as_secs_f64().to_string())
                        }
                        None => Spawn::parse(spawn)?,
                    },
                    per_item: args.per_item,
                })
            }
            _ => None,
        };
        let mut matrix = args.matrix.clone();
        if let Some(system) = &system {
            // The known cost gives the ideal as a delay would; an unknown one has none.
            matrix.delay = Some(vec![system.per_item.unwrap_or_default()]);
        }
        let shape = RunShape {
            items: Some(vec![ESTIMATE_ITEMS]),
            workers: Some(args.workers.clone().unwrap_or_else(|| vec![1, 2, 4])),
            rate: None,
        };
        let bench = BenchPlan::build(&matrix, &shape, cores)?;
        let resolution = percent(&args.resolution).context("--resolution")?;
        ensure!(
            resolution > 0.0 && resolution < 1.0,
            "--resolution {}: between 0 and 100 %",
            args.resolution
        );
        let min_achieved = percent(&args.min_achieved).context("--min-achieved")?;
        ensure!(
            min_achieved > 0.0 && min_achieved <= 1.0,
            "--min-achieved {}: above 0 and at most 100 %",
            args.min_achieved
        );
        let max_lag_slope: LagSlope = args
            .lag_slope
            .parse()
            .map_err(|e| anyhow::anyhow!("--lag-slope: {e}"))?;
        ensure!(
            args.window >= Duration::from_millis(200),
            "--window {}: a trial needs at least 200ms to show a lag trend",
            Human(args.window)
        );
        let start = match &args.start {
            None => None,
            Some(text) => Some(rate(text).context("--start")?),
        };
        let loads = args
            .loads
            .iter()
            .flatten()
            .map(|text| rate(text).with_context(|| format!("--loads {text}")))
            .collect::<Result<Vec<f64>>>()?;
        let mut curves: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, run) in bench.runs.iter().enumerate() {
            let label = curve_label(run, system.as_ref());
            // A system of unknown cost is probed for a start instead.
            if start.is_none() && run.ideal.time.is_zero() && system.is_none() {
                bail!("{label}: zero work per item has no ideal rate to start from; give --start");
            }
            match curves.iter_mut().find(|(l, _)| *l == label) {
                Some((_, runs)) => runs.push(index),
                None => curves.push((label, vec![index])),
            }
        }
        // Only Kafka keeps a key with one member; elsewhere a group shares items in any order.
        if let Some(run) = bench.runs.iter().find(|r| {
            matches!(&r.engine, EngineKind::Group(url) if !url.starts_with("kafka://"))
                && r.cluster.step == plumbline_worker::Step::Partitioned
        }) {
            bail!(
                "--step partitioned on {}: its consumer group shares items in any order, not by \
                 key; use --step balanced, or a kafka:// group",
                run.engine
            );
        }
        for (_, runs) in &mut curves {
            runs.sort_by_key(|&i| bench.runs[i].cluster.workers);
        }
        Ok(Self {
            bench,
            curves,
            slo: Slo {
                max_lag_slope,
                p99: args.slo_p99.map(|d| d.as_secs_f64()),
                min_achieved,
            },
            resolution,
            warmup: args.warmup,
            window: args.window,
            start,
            max_trials: args.max_trials,
            max_duration: args.max_duration,
            loads,
            system,
            cores,
        })
    }

    /// The engine that runs `run`: the user's system with its worker count, or the matrix's.
    pub fn engine(&self, run: &RunPlan, exe: &std::path::Path) -> Result<Box<dyn Engine>> {
        Ok(match &self.system {
            Some(s) => Box::new(External::new(
                &s.to,
                &s.from,
                s.spawn.clone(),
                run.cluster.workers,
            )?),
            None => BenchPlan::engine(run, exe),
        })
    }

    /// The rate a zero-overhead engine would sustain on `run`'s batch: its first estimate.
    pub fn ideal_rate(run: &RunPlan) -> f64 {
        rate_of(run.items, run.ideal.time)
    }

    /// The ideal of the items a trial at `rate` on `run` sends, and the rate that ideal
    /// allows: the items over the time their busiest owner needs.
    pub fn trial_ideal(&self, run: &RunPlan, rate: f64) -> Result<(f64, Ideal)> {
        let items = trial::items(rate, (self.warmup, self.window));
        let ideal = self.bench.batch_ideal_of(run, items, self.cores)?;
        Ok((rate_of(items, ideal.time), ideal))
    }

    /// The highest rate a zero-overhead engine sustains on `run` when each trial sends its own
    /// items: where the ideal of a trial's items meets the trial's rate.
    pub fn settled_ideal(&self, run: &RunPlan) -> Result<f64> {
        settle(Self::ideal_rate(run), |rate| {
            Ok(self.trial_ideal(run, rate)?.0)
        })
    }
}

/// `items` over `time` per second; infinite when the time is zero (no work, no ideal).
fn rate_of(items: u64, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 {
        items as f64 / secs
    } else {
        f64::INFINITY
    }
}

/// The fixed point of `ideal_at` (the ideal rate of the items a trial at a rate sends) from
/// `estimate`: a trial sends rate × its length items, whose busiest owner's share moves with
/// their number, so the ideal of a trial at the ideal is found by iterating. Within 0.1 %, or
/// after [`SETTLE_ROUNDS`] the lower of the last two (a step of the share can make it swing).
fn settle(estimate: f64, mut ideal_at: impl FnMut(f64) -> Result<f64>) -> Result<f64> {
    let near = |a: f64, b: f64| (a - b).abs() <= b * 1e-3;
    let (mut before, mut rate) = (f64::NAN, estimate);
    for _ in 0..SETTLE_ROUNDS {
        if !rate.is_finite() {
            return Ok(rate);
        }
        let next = ideal_at(rate)?;
        if near(next, rate) {
            return Ok(next);
        }
        if near(next, before) {
            return Ok(rate.min(next));
        }
        (before, rate) = (rate, next);
    }
    Ok(rate)
}

fn curve_label(run: &RunPlan, system: Option<&System>) -> String {
    match system {
        // URLs as shown: without a password.
        Some(s) => format!(
            "{} per item, `{}` from {} to {}",
            s.per_item
                .map_or("unknown".into(), |d| Human(d).to_string()),
            s.spawn.shown(),
            plumbline_core::secret::redact_url(&s.to),
            plumbline_core::secret::redact_url(&s.from)
        ),
        None => format!(
            "{} {} {} on {}",
            Human(run.cluster.delay),
            run.cluster.work,
            run.cluster.step,
            run.engine
        ),
    }
}

/// `2%` or `0.02` as a fraction.
fn percent(text: &str) -> Result<f64> {
    let value = match text.trim().strip_suffix('%') {
        Some(number) => number.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.trim().parse::<f64>(),
    }
    .map_err(|_| anyhow::anyhow!("{text:?} is not a share: write 2% or 0.02"))?;
    ensure!(value.is_finite(), "{text:?} is not a share");
    Ok(value)
}

/// `200/s` (or `200`) as items per second.
fn rate(text: &str) -> Result<f64> {
    match parse_rate(text)? {
        Some(rate) if rate > 0.0 => Ok(rate),
        _ => bail!("{text:?}: a rate above 0, e.g. 200/s"),
    }
}

/// Everything `capacity` found; `--json` and the report folder hold it as a run record
/// ([`record`]).
#[derive(Debug)]
pub struct CapacityReport {
    pub slo: Slo,
    pub resolution: f64,
    pub warmup_s: f64,
    pub window_s: f64,
    pub curves: Vec<Curve>,
    /// For each `--loads` load, the fewest workers whose capacity reached it.
    pub demand: Vec<Demand>,
    /// What ended the experiment early, if anything did.
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct Curve {
    pub label: String,
    pub points: Vec<Point>,
}

/// One worker count's search: its figures as the run record holds them (their `search` and
/// `trials` are filled in by [`record`], from the two beside them), how the search ended,
/// and its trials as run, each a run record with its trial section.
#[derive(Debug)]
pub struct Point {
    pub figures: CapacityPoint,
    pub search: SearchOutcome,
    pub trials: Vec<RunRecord>,
}

/// A trial's figures for the judge: the engine held the source back when it fell short with
/// more items in hand than a starved engine holds (4 per worker, or 5 ms of the rate), so
/// only a source short of the rate against an idle engine is sender-bound.
fn figures(run: &TrialRun, workers: usize) -> TrialFigures {
    let starved_below = (4 * workers).max(16) as f64 + run.rate() * 0.005;
    TrialFigures {
        rate: run.rate(),
        achieved: run.achieved(),
        lag: run.lag(),
        p99_s: (run.window_latency.count > 0).then_some(run.window_latency.p99),
        // Cut past its window, the run abandoned items the engine never lost.
        lost: if run.cut { 0 } else { run.figures.lost },
        duplicated: run.figures.duplicates,
        source_held_back: run.mean_in_flight() > starved_below,
    }
}

pub fn run(args: &CapacityArgs, shutdown: &Shutdown) -> Result<CommandVerdict> {
    let host = Host::current();
    let plan = CapacityPlan::build(args, host.cores)?;
    let limits = args.output.limits.for_command(Command::Capacity)?;
    let exe = std::env::current_exe().context("finding the plumbline binary")?;
    let default_report = (!args.output.no_report).then(|| crate::session::timestamped("capacity"));
    let session = Session::start("capacity", &args.output.out, default_report)?;
    let began = Instant::now();
    let mut error = None;
    let mut curves = Vec::new();
    let mut charts = CapacityCharts::default();
    for (label, runs) in &plan.curves {
        let mut points: Vec<Point> = Vec::new();
        let mut below: Option<f64> = None;
        for &index in runs {
            let run = &plan.bench.runs[index];
            let started = plan.settled_ideal(run).and_then(|ideal_rate| {
                let engine = plan.engine(run, &exe)?;
                let start = start_rate(&plan, ideal_rate, engine.as_ref(), &session, shutdown)?;
                Ok((engine, start, ideal_rate))
            });
            let (engine, start, ideal_rate) = match started {
                Ok(started) => started,
                Err(e) => {
                    error = Some(format!(
                        "{label} on {} worker(s): {e:#}",
                        run.cluster.workers
                    ));
                    break;
                }
            };
            let config = SearchConfig {
                resolution: plan.resolution,
                lower_bound: below.filter(|&b| b <= start),
                // No engine beats its ideal by more than the lag tolerance: try just above it
                // before growing (a hair inside the resolution, so one failure brackets it).
                ceiling: (plan.start.is_none() && ideal_rate.is_finite())
                    .then_some(start * (1.0 + plan.resolution * 0.99)),
                max_trials: plan.max_trials,
                ..SearchConfig::starting_at(start)
            };
            let mut search = CapacitySearch::new(config)?;
            let mut trials = Vec::new();
            let outcome = loop {
                let rate = match search.next() {
                    Step::Done(outcome) => break outcome,
                    Step::Try(rate) => rate,
                };
                if shutdown.requested() {
                    break search.stop("interrupted");
                }
                if began.elapsed() + plan.warmup + plan.window > plan.max_duration {
                    error = Some(format!(
                        "--max-duration {} reached: stopped with the brackets reached",
                        Human(plan.max_duration)
                    ));
                    break search.stop("--max-duration reached");
                }
                let ran = one_trial(&plan, &session, engine.as_ref(), label, rate, shutdown);
                let ran = ran.map(|(trial, verdict, lag)| {
                    charts.trials.push(lag);
                    (trial, verdict)
                });
                match ran {
                    Ok((trial, _)) if shutdown.requested() => {
                        trials.push(trial);
                        break search.stop("interrupted");
                    }
                    Ok((trial, verdict)) => {
                        if !args.output.quiet {
                            tracing::info!(
                                "{label}, {}: {:.1}/s {verdict}",
                                engine.describe(),
                                rate
                            );
                        }
                        search.record(rate, &verdict);
                        trials.push(trial);
                    }
                    Err(e) => {
                        let why = format!(
                            "the trial at {rate:.1}/s on {} failed: {e:#}",
                            engine.describe()
                        );
                        error = Some(why.clone());
                        break search.stop(why);
                    }
                }
            };
            below = outcome.capacity;
            let one_worker = points
                .first()
                .filter(|p| p.figures.workers == 1)
                .and_then(|p| p.figures.capacity);
            // Judged against the ideal of the items its capacity trial sent.
            let ideal = match outcome.capacity {
                Some(capacity) => plan.trial_ideal(run, capacity).map(|(r, i)| (r, i.limit)),
                None => Ok((ideal_rate, run.ideal.limit)),
            };
            let ideal = ideal.unwrap_or_else(|e| {
                error = Some(format!("{label}: the ideal of the capacity trial: {e:#}"));
                (ideal_rate, run.ideal.limit)
            });
            points.push(point(
                run,
                engine.as_ref(),
                ideal,
                outcome,
                trials,
                one_worker,
            ));
            if error.is_some() || shutdown.requested() {
                break;
            }
        }
        curves.push(Curve {
            label: label.clone(),
            points,
        });
        if error.is_some() || shutdown.requested() {
            break;
        }
    }
    let demand = demand(&plan.loads, &curves);
    let report = CapacityReport {
        slo: plan.slo.clone(),
        resolution: plan.resolution,
        warmup_s: plan.warmup.as_secs_f64(),
        window_s: plan.window.as_secs_f64(),
        curves,
        demand,
        error: error.clone(),
    };
    print!("{}", table(&report));
    let record = Record {
        preset: Some(plan.bench.preset.clone()),
        seed: Some(plan.bench.seed),
        ..record(&report, host)?
    };
    if let Some(path) = &args.output.json {
        std::fs::write(path, record.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
        crate::logs::result(format_args!("wrote {}", path.display()));
    }
    charts.demand = report.demand.clone();
    session.finish_capacity(
        Outcome {
            runs: plumbline_report::rows(&record),
            resolved: plan.bench.resolved.clone(),
            seeds: vec![plan.bench.seed],
            detail: serde_json::to_value(&record)?,
        },
        charts,
    )?;
    if shutdown.requested() {
        return Ok(CommandVerdict::Interrupted);
    }
    let mut failures: Vec<String> = error.into_iter().collect();
    for curve in &report.curves {
        for p in curve.points.iter().filter(|p| p.figures.capacity.is_none()) {
            failures.push(format!(
                "{} on {} worker(s): {}",
                curve.label, p.figures.workers, p.search.why_stopped
            ));
        }
    }
    Ok(CommandVerdict::of(false, failures).held_to(limits, &record))
}

/// Where a search starts: `--start`, else the ideal, else (a system of unknown cost) the
/// rate a batch of [`PROBE_ITEMS`] per worker came back at, said on stderr.
fn start_rate(
    plan: &CapacityPlan,
    ideal_rate: f64,
    engine: &dyn Engine,
    session: &Session,
    stop: &Shutdown,
) -> Result<f64> {
    if let Some(start) = plan.start.or(ideal_rate.is_finite().then_some(ideal_rate)) {
        return Ok(start);
    }
    let items = PROBE_ITEMS * engine.workers() as u64;
    let live = session.live();
    live.begin_run(RunInfo {
        label: format!("probe of {}", engine.describe()),
        workers: engine.workers(),
        total: Some(items),
        target_per_s: None,
    });
    let figures = engine.run(&plan.bench.load(items), live, stop)?;
    let secs = figures.wall.as_secs_f64();
    ensure!(
        figures.delivered > 0 && secs > 0.0,
        "the probe's {items} items brought no result back from {}",
        engine.describe()
    );
    let rate = figures.delivered as f64 / secs;
    tracing::info!(
        "no --per-item: a batch of {items} items came back from {} at {rate:.1}/s; the search \
         starts there, and capacity is judged against the 1-worker capacity",
        engine.describe()
    );
    Ok(rate)
}

/// Runs and judges one trial; also its lag over time, for the report's chart.
fn one_trial(
    plan: &CapacityPlan,
    session: &Session,
    engine: &dyn Engine,
    label: &str,
    rate: f64,
    stop: &Shutdown,
) -> Result<(RunRecord, Verdict, TrialLag)> {
    let live = session.live();
    live.begin_run(RunInfo {
        label: format!("{label}, {}: trial at {rate:.1}/s", engine.describe()),
        workers: engine.workers(),
        total: None,
        target_per_s: Some(rate),
    });
    let load = plan.bench.load(0);
    let at = plumbline_load::Shape::Constant { rate };
    let phases = (
        plan.warmup,
        plan.window,
        trial::grace(plan.warmup, plan.window),
    );
    let run = trial::run(engine, &load, &at, phases, live, stop)?;
    let figures = figures(&run, engine.workers());
    let judged = judge(&figures, &plan.slo);
    let (verdict, why) = match &judged.verdict {
        Verdict::Pass => ("pass", None),
        Verdict::Fail(why) => ("fail", Some(why.to_string())),
        sender_bound @ Verdict::SenderBound { .. } => {
            ("sender-bound", Some(sender_bound.to_string()))
        }
    };
    let trial = RunRecord {
        sent: Some(run.figures.sent),
        delivered: Some(run.figures.delivered),
        lost: run.figures.lost,
        duplicates: run.figures.duplicates,
        target_per_s: Some(rate),
        achieved_per_s: figures.achieved,
        latency_s: run.window_latency.clone(),
        per_worker: run.figures.per_worker.clone(),
        interrupted: run.figures.interrupted,
        trial: Some(TrialSection {
            curve: label.to_string(),
            engine: engine.describe(),
            lag_slope: judged.lag_slope,
            lag_limit: plan.slo.max_lag_slope.limit(rate),
            mean_in_flight: run.mean_in_flight(),
            cut: run.cut,
            verdict: verdict.into(),
            why,
        }),
        ..RunRecord::new(engine.workers(), run.figures.wall.as_secs_f64())
    };
    let lag = trial_lag(label, &run, &judged.verdict, engine.workers());
    Ok((trial, judged.verdict, lag))
}

/// Lag samples a trial's chart line keeps at most (a 4 s trial has 200).
const CHART_SAMPLES: usize = 400;

/// A trial's line on the report's lag chart: its samples thinned to [`CHART_SAMPLES`].
fn trial_lag(curve: &str, run: &TrialRun, verdict: &Verdict, workers: usize) -> TrialLag {
    let lag = run.lag_over_time();
    let every = lag.len().div_ceil(CHART_SAMPLES).max(1);
    TrialLag {
        curve: curve.to_string(),
        workers,
        rate: run.rate(),
        verdict: match verdict {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::SenderBound { .. } => "sender-bound",
        }
        .into(),
        warmup_s: run.warmup.as_secs_f64(),
        lag: lag.into_iter().step_by(every).collect(),
    }
}

fn point(
    run: &RunPlan,
    engine: &dyn Engine,
    (ideal_rate, ideal_limit): (f64, Limit),
    search: SearchOutcome,
    trials: Vec<RunRecord>,
    one_worker: Option<f64>,
) -> Point {
    let workers = run.cluster.workers;
    let capacity = search.capacity;
    let vs_ideal = capacity
        .filter(|_| ideal_rate.is_finite())
        .map(|c| c / ideal_rate);
    let efficiency = match (capacity, one_worker, workers) {
        (Some(_), _, 1) => Some(1.0),
        (Some(c), Some(one), n) => Some(c / (one * n as f64)),
        _ => None,
    };
    let limited_by = if search.sender_bound_at.is_some() {
        "sender".to_string()
    } else if vs_ideal.is_some_and(|r| r >= 0.9) {
        match ideal_limit {
            Limit::Workers => "workers",
            Limit::KeyDistribution => "keys",
            Limit::Partitions => "partitions",
            Limit::Arrivals => "arrivals",
            Limit::Cores => "cores",
        }
        .to_string()
    } else if capacity.is_some() {
        "overhead".to_string()
    } else {
        "nothing passed".to_string()
    };
    Point {
        figures: CapacityPoint {
            workers,
            engine: engine.describe(),
            ideal_rate: Some(ideal_rate).filter(|r| r.is_finite()),
            ideal_limit,
            capacity,
            capacity_vs_ideal: vs_ideal,
            efficiency,
            limited_by,
            search: serde_json::Value::Null,
            trials: Vec::new(),
        },
        search,
        trials,
    }
}

fn demand(loads: &[f64], curves: &[Curve]) -> Vec<Demand> {
    curves
        .iter()
        .flat_map(|curve| {
            let capacities: Vec<(usize, Option<f64>)> = curve
                .points
                .iter()
                .map(|p| (p.figures.workers, p.figures.capacity))
                .collect();
            loads.iter().map(move |&load| Demand {
                curve: curve.label.clone(),
                load,
                workers: fewest_workers(load, &capacities),
            })
        })
        .collect()
}

fn table(report: &CapacityReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for curve in &report.curves {
        writeln!(out, "capacity: {}", curve.label).ok();
        writeln!(
            out,
            "{:>7} {:>12} {:>12} {:>9} {:>10} {:>7}  limited by",
            "workers", "capacity/s", "ideal/s", "÷ ideal", "efficiency", "trials"
        )
        .ok();
        for Point {
            figures: p, trials, ..
        } in &curve.points
        {
            let or_dash = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".into(), f);
            writeln!(
                out,
                "{:>7} {:>12} {:>12} {:>9} {:>10} {:>7}  {}",
                p.workers,
                or_dash(p.capacity, &|c| format!("{c:.1}")),
                // A system of unknown cost has no ideal.
                or_dash(p.ideal_rate, &|r| format!("{r:.1}")),
                or_dash(p.capacity_vs_ideal, &|r| format!("{r:.3}")),
                or_dash(p.efficiency, &|e| format!("{:.0} %", e * 100.0)),
                trials.len(),
                p.limited_by
            )
            .ok();
        }
    }
    for d in &report.demand {
        writeln!(
            out,
            "demand: {:.1}/s on {} needs {}",
            d.load,
            d.curve,
            d.workers
                .map_or("more workers than measured".into(), |w| format!(
                    "{w} worker(s)"
                ))
        )
        .ok();
    }
    out
}

/// What `capacity` found as its run record: the runs are the trials, in the order run, and
/// the capacity section holds the curves (each point naming its trials by index) and demand.
fn record(report: &CapacityReport, host: Host) -> Result<Record> {
    let mut runs = Vec::new();
    let mut curves = Vec::new();
    for curve in &report.curves {
        let mut points = Vec::new();
        for p in &curve.points {
            let first = runs.len();
            runs.extend(p.trials.iter().cloned());
            points.push(CapacityPoint {
                search: serde_json::to_value(&p.search)?,
                trials: (first..runs.len()).collect(),
                ..p.figures.clone()
            });
        }
        curves.push(CapacityCurve {
            label: curve.label.clone(),
            points,
        });
    }
    Ok(Record {
        runs,
        capacity: Some(CapacitySection {
            slo: serde_json::to_value(&report.slo)?,
            resolution: report.resolution,
            warmup_s: report.warmup_s,
            window_s: report.window_s,
            curves,
            demand: report.demand.clone(),
            error: report.error.clone(),
        }),
        ..Record::new(Command::Capacity, crate::session::command_line(), host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(extra: &[&str]) -> Result<CapacityPlan> {
        let cli =
            crate::args::Cli::try_parse_from(["plumbline", "capacity"].iter().chain(extra.iter()))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        match cli.command {
            crate::args::Command::Capacity(args) => CapacityPlan::build(&args, 2),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_default_is_one_curve_of_10ms_sleeps_on_1_2_4_threads_starting_at_the_ideal() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.curves.len(), 1);
        let (label, runs) = &p.curves[0];
        assert_eq!(label, "10ms sleep balanced on threads");
        let rates: Vec<f64> = runs
            .iter()
            .map(|&i| CapacityPlan::ideal_rate(&p.bench.runs[i]).round())
            .collect();
        assert_eq!(rates, [100.0, 200.0, 400.0]);
        assert_eq!(p.resolution, 0.02);
        assert_eq!(p.slo.min_achieved, 0.99);
    }

    #[test]
    fn a_hot_key_caps_the_partitioned_ideal_whatever_the_worker_count() {
        let p = plan(&[
            "--workload",
            "votes",
            "--letters",
            "a",
            "--step",
            "partitioned",
            "--workers",
            "1,4",
        ])
        .unwrap();
        let rates: Vec<f64> = p.curves[0]
            .1
            .iter()
            .map(|&i| CapacityPlan::ideal_rate(&p.bench.runs[i]).round())
            .collect();
        assert_eq!(rates, [100.0, 100.0]);
        assert_eq!(
            p.bench.runs[p.curves[0].1[1]].ideal.limit,
            Limit::KeyDistribution
        );
    }

    #[test]
    fn bad_shares_rates_and_windows_are_refused_by_name() {
        let err = |extra: &[&str]| format!("{:#}", plan(extra).unwrap_err());
        assert!(err(&["--resolution", "two"]).contains("--resolution"));
        assert!(err(&["--resolution", "0%"]).contains("--resolution 0%"));
        assert!(err(&["--loads", "fast"]).contains("--loads fast"));
        assert!(err(&["--lag-slope", "x"]).contains("--lag-slope"));
        assert!(err(&["--window", "50ms"]).contains("--window 50ms"));
        assert!(err(&["--delay", "0"]).contains("give --start"));
        assert!(err(&["--preset", "pipeline"]).contains("pipeline"));
        let group = [
            "--cluster",
            "redis://127.0.0.1:6379/jobs",
            "--step",
            "partitioned",
        ];
        assert!(err(&group).contains("not by key"));
        assert!(err(&["--to", "redis://127.0.0.1:6379/in"]).contains("--from"));
        let system = [
            "--to",
            "redis://h:1/in",
            "--from",
            "redis://h:1/out",
            "--spawn",
            "a 'b",
        ];
        assert!(err(&system).contains("unbalanced quotes"));
    }

    /// A trial at 1000/s of 4 s (1 s warm-up) where `sent` items/s were sent, the engine
    /// holding `held` all along; its whole run's latencies `run_ms`, those after the warm-up
    /// `window_ms`.
    fn trial_run(sent: f64, held: u64, run_ms: u64, window_ms: u64) -> TrialRun {
        use plumbline_engine::trial::Sample;
        let latency = |ms: u64| {
            let mut r = plumbline_measure::Recorder::new();
            (0..100).for_each(|_| r.record_ns(ms * 1_000_000));
            r.summary()
        };
        let samples = (0..=8)
            .map(|i| {
                let t = f64::from(i) * 0.5;
                let sent = (sent * t) as u64 + held;
                Sample {
                    t,
                    sent,
                    done: sent - held,
                    // Offered at 1000/s: 4000 items over the 4 s.
                    due: ((1000.0 * t) as u64 + 1).min(4000),
                }
            })
            .collect();
        TrialRun {
            shape: plumbline_load::Shape::Constant { rate: 1000.0 },
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(3),
            samples,
            figures: plumbline_engine::RunFigures {
                wall: Duration::from_secs(4),
                sent: 4000,
                delivered: 4000,
                lost: 0,
                duplicates: 0,
                latency: latency(run_ms),
                work: plumbline_measure::Recorder::new().summary(),
                per_worker: vec![],
                final_state: None,
                rejected: 0,
                first_rejection: None,
                interrupted: false,
                continuity: None,
            },
            window_latency: latency(window_ms),
            cut: false,
        }
    }

    #[test]
    fn a_source_short_against_an_idle_engine_is_sender_bound_but_against_full_queues_it_is_not() {
        let verdict =
            |held| judge(&figures(&trial_run(500.0, held, 5, 5), 2), &Slo::default()).verdict;
        assert!(
            matches!(verdict(2), Verdict::SenderBound { .. }),
            "{:?}",
            verdict(2)
        );
        assert!(
            matches!(verdict(2000), Verdict::Fail(_)),
            "{:?}",
            verdict(2000)
        );
    }

    #[test]
    fn the_p99_judged_is_the_one_after_the_warm_up() {
        let slo = Slo {
            p99: Some(0.1),
            ..Slo::default()
        };
        // 2 s latencies while warming up, 5 ms after: within a 100 ms p99.
        let judged = figures(&trial_run(1000.0, 0, 2000, 5), 2);
        assert!(
            judged.p99_s.is_some_and(|p| p < 0.006),
            "{:?}",
            judged.p99_s
        );
        assert_eq!(judge(&judged, &slo).verdict, Verdict::Pass);
        // 300 ms after the warm-up is over the limit, whatever the warm-up had.
        let slow = judge(&figures(&trial_run(1000.0, 0, 5, 300), 2), &slo).verdict;
        assert!(
            matches!(slow, Verdict::Fail(plumbline_scale::Why::P99 { .. })),
            "{slow:?}"
        );
    }

    #[test]
    fn the_ideal_settles_where_a_trials_own_items_allow_its_rate() {
        // The ideal of a trial's items falls as the rate rises (a hot key's share grows).
        let ideal_at = |rate: f64| Ok(1000.0 - rate / 4.0);
        let settled = settle(1000.0, ideal_at).unwrap();
        assert!((settled - 800.0).abs() < 1.0, "{settled}");
        // A share that swings between two steps settles on the lower one.
        let swing = |rate: f64| Ok(if rate > 450.0 { 400.0 } else { 500.0 });
        assert_eq!(settle(500.0, swing).unwrap(), 400.0);
        // No work: no ideal to settle.
        assert!(settle(f64::INFINITY, |_| unreachable!())
            .unwrap()
            .is_infinite());
    }

    #[test]
    fn a_zipf_trials_ideal_is_the_busiest_owner_of_its_own_items() {
        let p = plan(&[
            "--keys",
            "zipf:1.1",
            "--step",
            "partitioned",
            "--workers",
            "2",
        ])
        .unwrap();
        let run = &p.bench.runs[p.curves[0].1[0]];
        // Default timing: 4 s per trial, so 700 items at 175/s.
        let (rate, ideal) = p.trial_ideal(run, 175.0).unwrap();
        let map = plumbline_worker::PartitionMap::round_robin(run.cluster.partitions, 2);
        let mut owned = [0u64; 2];
        for m in plumbline_load::Generator::new(
            p.bench.workload.clone(),
            p.bench.keys,
            p.bench.seed,
            700,
        )
        .unwrap()
        {
            owned[map.owner_of_key(m.key)] += 1;
        }
        let busiest = owned.iter().max().copied().unwrap();
        assert_eq!(ideal.busiest, Duration::from_millis(10 * busiest));
        assert!((rate - 700.0 / (busiest as f64 * 0.01)).abs() < 1e-6);
        // Settled, the trial at the ideal rate fits its own items' ideal.
        let settled = p.settled_ideal(run).unwrap();
        let (own, _) = p.trial_ideal(run, settled).unwrap();
        assert!(settled <= own * 1.001, "{settled} > {own}");
    }
}
