//! `plumbline bench`: executes a [`BenchPlan`], each run on the engine its `--cluster` names
//! (`plumbline-engine`: threads, worker processes), and reports them alike.
//!
//! Each run gets fresh generated load (all items due at the run start: a bench is a batch), a
//! progress bar, and a record built from the cluster's outcome and the plan's derived ideal. The
//! report goes to stdout as a table and optionally to `--json`. A run that loses items, sees
//! duplicates or ends in the wrong state makes the command fail after reporting.

use anyhow::{bail, Context, Result};
use plumbline_engine::RunFigures;
use plumbline_measure::record::{BenchSection, Command, Record, RunRecord};
use plumbline_measure::report::{fill_ratios, per_s, table, Host};
use plumbline_measure::threshold::Threshold;
use plumbline_measure::RunInfo;
use plumbline_worker::Shutdown;

use crate::args::BenchArgs;
use crate::plan::{BenchPlan, RunPlan, RunShape, PRESETS};
use crate::progress::{Follow, RunProgress};
use crate::session::{Outcome, Session};

/// Outcome of the command: did every run check out, and keep its limits?
#[derive(Debug)]
pub enum Verdict {
    Passed,
    /// A run failed its own checks (items lost, state wrong) or a part of it failed: exit 1.
    Failed(Vec<String>),
    /// Every run checked out but broke a `--threshold` (or `compare` found it worse): exit 99.
    Breached(Vec<String>),
    Interrupted,
}

impl Verdict {
    /// Interrupted if the user stopped the run, else failed if anything did, else passed.
    pub fn of(interrupted: bool, failures: Vec<String>) -> Self {
        if interrupted {
            Verdict::Interrupted
        } else if failures.is_empty() {
            Verdict::Passed
        } else {
            Verdict::Failed(failures)
        }
    }

    /// This verdict, with `record` held to `thresholds`: a run that passed but broke a limit
    /// is breached; a failure stays one (its breaches said beside it); an interrupted run is
    /// judged on nothing.
    pub fn held_to(self, thresholds: &[Threshold], record: &Record) -> Self {
        let breaches = plumbline_measure::threshold::breaches(thresholds, record);
        match self {
            Verdict::Passed if breaches.is_empty() => Verdict::Passed,
            Verdict::Passed => Verdict::Breached(breaches),
            Verdict::Failed(mut failures) => {
                failures.extend(breaches);
                Verdict::Failed(failures)
            }
            Verdict::Breached(mut breached) => {
                breached.extend(breaches);
                Verdict::Breached(breached)
            }
            Verdict::Interrupted => Verdict::Interrupted,
        }
    }
}

pub fn run(args: &BenchArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let limits = args.output.limits.for_command(Command::Bench)?;
    if args.list_presets {
        for (name, _) in PRESETS {
            let preset = crate::plan::Preset::load(name)?;
            println!("{name:<14} {}", preset.description);
        }
        println!(
            "{:<14} seed 001's task pipeline table: distributor, workers, collector as processes",
            "pipeline"
        );
        return Ok(Verdict::Passed);
    }
    if args.matrix.preset == "pipeline" {
        return crate::bench_pipeline::run(args, shutdown);
    }
    if args.threads.is_some() {
        bail!("--threads is for the pipeline preset; the others take --workers");
    }
    let host = Host::current();
    let plan = BenchPlan::build(&args.matrix, &RunShape::of(args), host.cores)?;
    let exe = std::env::current_exe().context("finding the plumbline binary")?;
    let default_report = (!args.output.no_report).then(|| crate::session::timestamped("bench"));
    let session = Session::start("bench", &args.output.out, default_report)?;
    let live = session.live();
    let mut report = Record {
        preset: Some(plan.preset.clone()),
        seed: Some(plan.seed),
        ..Record::new(Command::Bench, crate::session::command_line(), host)
    };
    let total = plan.runs.len();
    for (index, run) in plan.runs.iter().enumerate() {
        let engine = BenchPlan::engine(run, &exe);
        let label = format!(
            "run {}/{total}: {} x {} {} {} on {}",
            index + 1,
            run.items,
            plumbline_core::duration::Human(run.cluster.delay),
            run.cluster.work,
            run.cluster.step,
            engine.describe()
        );
        live.begin_run(RunInfo {
            label: label.clone(),
            workers: run.cluster.workers,
            total: Some(run.items),
            target_per_s: plan.rate,
        });
        let progress = RunProgress::new(
            args.output.quiet,
            Some(run.items),
            label.clone(),
            live,
            Follow::Out,
        );
        let measured = progress
            .track(|| engine.run(&plan.load(run.items), live, shutdown))
            .with_context(|| format!("run {} of {total}", index + 1))?;
        let record = record(&plan, run, &measured).with_intervals(live.run_intervals());
        progress.finish(&format!(
            "{label}: {:.3}s (ideal {:.3}s)",
            record.wall_s,
            record.ideal_s.unwrap_or(0.0)
        ));
        report.runs.push(record);
        if shutdown.requested() {
            break;
        }
    }
    fill_ratios(&mut report.runs);
    print!("{}", table(&report));
    if let Some(path) = &args.output.json {
        write_json(path, &report)?;
        crate::logs::result(format_args!("wrote {}", path.display()));
    }
    session.finish(Outcome {
        runs: plumbline_report::rows(&report),
        resolved: plan.resolved.clone(),
        seeds: vec![plan.seed],
        detail: serde_json::to_value(&report)?,
    })?;
    if shutdown.requested() {
        return Ok(Verdict::Interrupted);
    }
    let failures: Vec<String> = report
        .runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r, r.bench.as_ref()?)))
        .filter(|(_, r, b)| r.lost > 0 || r.duplicates > 0 || b.state_ok == Some(false))
        .map(|(i, r, b)| {
            format!(
                "run {}: {} lost, {} duplicates, state {}",
                i + 1,
                r.lost,
                r.duplicates,
                b.state
            )
        })
        .collect();
    Ok(Verdict::of(false, failures).held_to(limits, &report))
}

/// `--json PATH`: the run record document, whichever preset made it.
pub fn write_json(path: &std::path::Path, report: &Record) -> Result<()> {
    std::fs::write(path, report.to_json()).with_context(|| format!("writing {}", path.display()))
}

fn record(plan: &BenchPlan, run: &RunPlan, outcome: &RunFigures) -> RunRecord {
    let wall_s = outcome.wall.as_secs_f64();
    let delivered = outcome.delivered;
    let (state_ok, state) = check_state(run, outcome);
    RunRecord {
        items: Some(run.items),
        sent: Some(outcome.sent),
        delivered: Some(delivered),
        lost: outcome.lost,
        duplicates: outcome.duplicates,
        target_per_s: plan.rate,
        achieved_per_s: per_s(delivered as f64, wall_s),
        latency_s: outcome.latency.clone(),
        latency_intervals: Vec::new(),
        per_worker: outcome.per_worker.clone(),
        interrupted: outcome.interrupted,
        bench: Some(BenchSection {
            delay_s: run.cluster.delay.as_secs_f64(),
            work: run.cluster.work.to_string(),
            step: run.cluster.step.to_string(),
            cluster: run.engine.to_string(),
            workload: plan.workload.name().to_string(),
            keys: plan.keys_label(),
            limit: run.ideal.limit,
            even_spread_ideal_s: run.ideal.even_spread.as_secs_f64(),
            busiest_worker_s: run.ideal.busiest.as_secs_f64(),
            speedup: None,
            efficiency: None,
            vs_sequential: None,
            mb_per_s: per_s(
                (delivered * plan.workload.payload_size() as u64) as f64,
                wall_s,
            ) / 1e6,
            work_s: outcome.work.clone(),
            rejected: outcome.rejected,
            state_ok,
            state,
        }),
        ..RunRecord::new(run.cluster.workers, wall_s)
    }
    .with_ideal(Some(run.ideal.time.as_secs_f64()))
}

/// Compares the final state at the sink with the plan's reference.
fn check_state(run: &RunPlan, outcome: &RunFigures) -> (Option<bool>, String) {
    let (Some(expected), Some(actual)) = (&run.expected_state, &outcome.final_state) else {
        return (None, String::new());
    };
    if outcome.interrupted {
        return (None, "not checked: interrupted".into());
    }
    let label = |key: u32| match run.cluster.app {
        plumbline_worker::App::Votes => char::from_u32(key).unwrap_or('?').to_string(),
        plumbline_worker::App::Count => format!("p{key}"),
    };
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, v)| actual.get(k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{}=>{} (expected {v})",
                label(*k),
                actual.get(k).map_or("none".into(), |a| a.to_string())
            )
        })
        .collect();
    if !wrong.is_empty() || actual.len() != expected.len() {
        let mut text = wrong.join(", ");
        if let Some(reason) = &outcome.first_rejection {
            text.push_str(&format!("; {} items rejected: {reason}", outcome.rejected));
        }
        return (Some(false), text);
    }
    let text = if expected.len() <= 26 {
        expected
            .iter()
            .map(|(k, v)| format!("{}=>{v}", label(*k)))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        format!("{} partitions, every count matches", expected.len())
    };
    (Some(true), text)
}
