//! `bench --preset pipeline`: seed 001's benchmark table, every role a process on loopback.
//!
//! For each tasks × workers × threads it starts `plumbline pipeline collector`, `distributor`
//! and the workers on free loopback ports (the collector's and distributor's endpoints come as
//! typed `--announce` events on their stdout), lets the distributor run until the collector has ACKed
//! every task, and reads the distributor's JSON report: wall time from the first dispatch to the
//! last ACK, against the ideal ⌈tasks / threads⌉ × delay. Each run becomes a run record, the
//! same type the other presets write, with the pipeline's own figures and the seed's published
//! ones in its `pipeline` part; the seed's are printed beside ours. The pipeline itself is
//! plumbline-pipeline; this only orchestrates.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use plumbline_core::duration::Human;
use plumbline_core::Shutdown;
use plumbline_measure::ideal::batch_ideal;
use plumbline_measure::record::{BenchSection, Command, PipelineFigures, Record, RunRecord};
use plumbline_measure::report::{fill_ratios, per_s, Host};
use plumbline_measure::{Limit, Recorder, RunInfo};
use plumbline_pipeline::PipelineReport;

use crate::args::BenchArgs;
use crate::bench::Verdict;
use crate::session::{Outcome, Session};
use plumbline_engine::child::Proc;
use plumbline_worker::announce::Announcement;

/// Seed 001's tables: (tasks, workers, threads per worker, milliseconds, overhead %), 10 ms tasks.
const SEED: [(u64, usize, u32, f64, f64); 12] = [
    (100, 1, 1, 1060.0, 6.0),
    (1000, 1, 1, 10850.0, 8.5),
    (5000, 1, 1, 53940.0, 7.8),
    // The seed prints 550 ms for 1000 tasks on two workers, with 10 % overhead: 5500 ms meant.
    (100, 2, 1, 527.0, 5.4),
    (1000, 2, 1, 550.0, 10.0),
    (5000, 2, 1, 26900.0, 7.6),
    (100, 1, 10, 93.0, -7.0),
    (1000, 1, 10, 1070.0, 7.0),
    (5000, 1, 10, 5430.0, 8.6),
    (100, 2, 10, 51.0, 2.0),
    (1000, 2, 10, 560.0, 12.0),
    (5000, 2, 10, 2818.0, 12.7),
];

pub fn run(args: &BenchArgs, shutdown: &Shutdown) -> Result<Verdict> {
    reject_other_flags(args)?;
    let limits = args.output.limits.for_command(Command::Bench)?;
    let tasks = args.items.clone().unwrap_or_else(|| vec![100, 1000, 5000]);
    let workers = args.workers.clone().unwrap_or_else(|| vec![1, 2]);
    let threads = args.threads.clone().unwrap_or_else(|| vec![1, 10]);
    let delay = match args.matrix.delay.as_deref() {
        None => Duration::from_millis(10),
        Some([one]) => *one,
        Some(_) => bail!("the pipeline preset takes one --delay"),
    };
    let work = match args.matrix.work.as_deref() {
        None => "sleep".to_string(),
        Some([one]) => one.parse::<plumbline_worker::Work>()?.to_string(),
        Some(_) => bail!("the pipeline preset takes one --work"),
    };
    let zero = [
        ("--items", tasks.contains(&0)),
        ("--workers", workers.contains(&0)),
        ("--threads", threads.contains(&0)),
    ];
    if let Some((flag, _)) = zero.iter().find(|(_, zero)| *zero) {
        bail!("{flag} must be at least 1 (got 0)");
    }
    let exe = std::env::current_exe().context("finding the plumbline binary")?;
    let default_report = (!args.output.no_report).then(|| crate::session::timestamped("bench"));
    let session = Session::start("bench", &args.output.out, default_report)?;
    let mut bench = Record {
        preset: Some("pipeline".into()),
        ..Record::new(
            Command::Bench,
            crate::session::command_line(),
            Host::current(),
        )
    };
    let total = threads.len() * workers.len() * tasks.len();
    println!(
        "seed 001 pipeline: collector, distributor and workers as processes on loopback, {} {work} tasks",
        Human(delay)
    );
    println!(
        "{:>6} {:>7} {:>7} {:>10} {:>11} {:>9} | {:>8} {:>9}",
        "tasks", "workers", "threads", "ideal ms", "measured ms", "overhead", "seed ms", "seed ovh"
    );
    let mut failures = Vec::new();
    // The seed's order: single-threaded workers first, then multi-threaded.
    'all: for &t in &threads {
        for &w in &workers {
            for &n in &tasks {
                if shutdown.requested() {
                    break 'all;
                }
                if !args.output.quiet {
                    tracing::info!(
                        "run {}/{total}: {n} tasks on {w} worker(s) x {t} thread(s)…",
                        bench.runs.len() + 1
                    );
                }
                session.live().begin_run(RunInfo {
                    label: format!(
                        "run {}/{total}: {n} tasks on {w} worker(s) x {t} thread(s)",
                        bench.runs.len() + 1
                    ),
                    workers: w,
                    total: Some(n),
                    target_per_s: None,
                });
                let report = one_run(&exe, n, w, t, delay, &work)
                    .with_context(|| format!("{n} tasks on {w} x {t}"))?;
                let run = record(report, n, w, t, delay, &work)?;
                print_row(&run);
                let failed = run.pipeline.as_ref().map_or(0, |p| p.failed);
                if run.lost > 0 || failed > 0 {
                    failures.push(format!(
                        "{n} tasks on {w} x {t}: {} lost, {failed} failed",
                        run.lost
                    ));
                }
                bench.runs.push(run);
            }
        }
    }
    fill_ratios(&mut bench.runs);
    if let Some(path) = &args.output.json {
        crate::bench::write_json(path, &bench)?;
    }
    session.finish(Outcome {
        runs: plumbline_report::rows(&bench),
        resolved: serde_json::json!({
            "preset": "pipeline",
            "items": tasks,
            "workers": workers,
            "threads": threads,
            "delay": Human(delay).to_string(),
            "work": work,
        }),
        seeds: Vec::new(),
        detail: serde_json::to_value(&bench)?,
    })?;
    Ok(Verdict::of(shutdown.requested(), failures).held_to(limits, &bench))
}

/// One pipeline run as a run record: its slots are workers × threads, its ideal, overhead and
/// latency (the start of the batch → each task's first ACK) the distributor's.
fn record(
    report: PipelineReport,
    tasks: u64,
    workers: usize,
    threads: u32,
    delay: Duration,
    work: &str,
) -> Result<RunRecord> {
    let seed = SEED.iter().find(|s| {
        (s.0, s.1, s.2) == (tasks, workers, threads) && delay == Duration::from_millis(10)
    });
    let ideal_s = report.ideal_s.unwrap_or(0.0);
    let nothing = Recorder::new().summary();
    Ok(RunRecord {
        items: Some(tasks),
        sent: Some(report.issued),
        delivered: Some(report.acked),
        lost: report.lost,
        duplicates: report.duplicates,
        achieved_per_s: per_s(report.acked as f64, report.wall_s),
        latency_s: report.latency.clone().unwrap_or_else(|| nothing.clone()),
        latency_intervals: Vec::new(),
        per_worker: report.workers.iter().map(|w| w.acked).collect(),
        interrupted: report.interrupted,
        bench: Some(BenchSection {
            delay_s: delay.as_secs_f64(),
            work: work.to_string(),
            // Credits hand the next task to whichever thread is free.
            step: "balanced".into(),
            cluster: "pipeline".into(),
            workload: "tasks".into(),
            keys: "none".into(),
            limit: Limit::Workers,
            even_spread_ideal_s: ideal_s,
            busiest_worker_s: ideal_s,
            speedup: None,
            efficiency: None,
            vs_sequential: None,
            mb_per_s: 0.0,
            work_s: nothing,
            rejected: 0,
            state_ok: None,
            state: String::new(),
        }),
        pipeline: Some(PipelineFigures {
            threads_per_worker: threads,
            dispatches: report.dispatches,
            redelivered: report.redeliveries,
            failed: report.failed.len() as u64,
            seed_wall_s: seed.map(|s| s.3 / 1e3),
            seed_overhead_pct: seed.map(|s| s.4),
            distributor: serde_json::to_value(&report)?,
        }),
        ..RunRecord::new(workers, report.wall_s)
    }
    .with_ideal(Some(ideal_s)))
}

fn print_row(run: &RunRecord) {
    let ms = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.1}", s * 1e3));
    let pipeline = run.pipeline.as_ref();
    println!(
        "{:>6} {:>7} {:>7} {:>10} {:>11} {:>9} | {:>8} {:>9}",
        run.items.unwrap_or(0),
        run.workers,
        run.threads_per_worker().unwrap_or(1),
        ms(run.ideal_s.filter(|&i| i > 0.0)),
        ms(Some(run.wall_s)),
        run.overhead_pct
            .map_or("-".into(), |o| format!("{o:+.2} %")),
        pipeline
            .and_then(|p| p.seed_wall_s)
            .map_or("-".into(), |s| format!("{:.0}", s * 1e3)),
        pipeline
            .and_then(|p| p.seed_overhead_pct)
            .map_or("-".into(), |p| format!("{p:+.1} %")),
    );
}

/// The flags of the other presets mean nothing here: say so rather than ignore them.
fn reject_other_flags(args: &BenchArgs) -> Result<()> {
    let unused = [
        ("--step", args.matrix.step.is_some()),
        ("--keys", args.matrix.keys.is_some()),
        ("--workload", args.matrix.workload.is_some()),
        ("--size", args.matrix.size.is_some()),
        ("--letters", args.matrix.letters.is_some()),
        ("--partitions", args.matrix.partitions.is_some()),
        ("--capacity", args.matrix.capacity.is_some()),
        ("--seed", args.matrix.seed.is_some()),
        ("--rate", args.rate.is_some()),
        ("--cluster", args.matrix.cluster.is_some()),
    ];
    let given: Vec<&str> = unused.iter().filter(|(_, g)| *g).map(|(f, _)| *f).collect();
    if !given.is_empty() {
        bail!(
            "the pipeline preset does not use {}: it takes --items, --workers, --threads, --delay, --work",
            given.join(", ")
        );
    }
    Ok(())
}

fn one_run(
    exe: &std::path::Path,
    tasks: u64,
    workers: usize,
    threads: u32,
    delay: Duration,
    work: &str,
) -> Result<PipelineReport> {
    let any = "tcp://127.0.0.1:0";
    let collector = Proc::start_announcing(
        exe,
        &[
            "pipeline",
            "collector",
            "--endpoint",
            any,
            "--ack-endpoint",
            any,
        ],
    )?;
    let (results, acks) = collector.wait_announced("its endpoints", |event| match event {
        Announcement::CollectorListening { results, acks } => Some((results.clone(), acks.clone())),
        _ => None,
    })?;
    // The distributor's report, in a folder removed when this returns (whichever way).
    let scratch = tempfile::Builder::new()
        .prefix("plumbline-pipeline-")
        .tempdir()
        .context("making a folder for the distributor's report")?;
    let report_at = scratch.path().join("distributor.json");
    let (task, delay_text, workers_text) = (
        format!("C:{tasks}"),
        format!("{}ns", delay.as_nanos()),
        workers.to_string(),
    );
    let distributor = Proc::start_announcing(
        exe,
        &[
            "pipeline",
            "distributor",
            "--endpoint",
            any,
            "--collector-ack",
            &acks,
            "--task",
            &task,
            "--delay",
            &delay_text,
            "--work",
            work,
            "--workers",
            &workers_text,
            "--json",
            report_at
                .to_str()
                .context("a temporary path that is not UTF-8")?,
            "-q",
        ],
    )?;
    let endpoint = distributor.wait_announced("where C workers connect", |event| match event {
        Announcement::DistributorListening { tasks } => tasks
            .iter()
            .find(|t| t.task_type == "C")
            .map(|t| t.endpoint.clone()),
        _ => None,
    })?;
    let threads_text = threads.to_string();
    let running: Vec<Proc> = (0..workers)
        .map(|i| {
            let name = format!("w{}", i + 1);
            Proc::start(
                exe,
                &[
                    "pipeline",
                    "worker",
                    "--endpoint",
                    &endpoint,
                    "--collector",
                    &results,
                    "--threads",
                    &threads_text,
                    "--name",
                    &name,
                ],
            )
        })
        .collect::<Result<_>>()?;
    let ideal = batch_ideal(tasks, u64::from(threads) * workers as u64, delay);
    // A distributor that exits 1 over failed tasks still wrote its report: the table shows them.
    let exited = distributor.wait_exit(ideal * 3 + Duration::from_secs(60));
    let text = std::fs::read_to_string(&report_at);
    let text = match (text, exited) {
        (Ok(text), _) => text,
        (Err(_), Err(e)) => return Err(e),
        (Err(e), Ok(())) => {
            return Err(e).with_context(|| {
                format!("reading the distributor's report {}", report_at.display())
            })
        }
    };
    for worker in &running {
        worker.wait_exit(Duration::from_secs(10))?;
    }
    collector.wait_exit(Duration::from_secs(10))?;
    serde_json::from_str(&text).context("the distributor's report")
}
