//! `bench --preset pipeline`: seed 001's benchmark table, every role a process on loopback.
//!
//! For each tasks × workers × threads it starts `plumbline pipeline collector`, `distributor`
//! and the workers on free loopback ports, lets the distributor run until the collector has ACKed
//! every task, and reads the distributor's JSON report: wall time from the first dispatch to the
//! last ACK, against the ideal ⌈tasks / threads⌉ × delay. The seed's published figures are
//! printed beside ours. The pipeline itself is plumbline-pipeline; this only orchestrates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use plumbline_core::duration::Human;
use plumbline_core::Shutdown;
use plumbline_measure::RunInfo;
use plumbline_pipeline::PipelineReport;
use plumbline_report::Run;
use serde::Serialize;

use crate::args::BenchArgs;
use crate::bench::Verdict;
use crate::session::{Outcome, Session};
use plumbline_engine::child::Proc;

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

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row {
    tasks: u64,
    workers: usize,
    threads: u32,
    delay_secs: f64,
    work: String,
    ideal_secs: Option<f64>,
    wall_secs: f64,
    overhead: Option<f64>,
    seed_ms: Option<f64>,
    seed_overhead_pct: Option<f64>,
    report: PipelineReport,
}

#[derive(Debug, Serialize)]
struct PipelineBench {
    plumbline_version: String,
    command: Vec<String>,
    preset: String,
    runs: Vec<Row>,
}

pub fn run(args: &BenchArgs, shutdown: &Shutdown) -> Result<Verdict> {
    reject_other_flags(args)?;
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
    let default_report = (!args.no_report).then(|| crate::session::timestamped("bench"));
    let session = Session::start("bench", &args.out, default_report)?;
    let mut runs = Vec::new();
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
                if !args.quiet {
                    eprintln!(
                        "run {}/{total}: {n} tasks on {w} worker(s) x {t} thread(s)…",
                        runs.len() + 1
                    );
                }
                session.live().begin_run(RunInfo {
                    label: format!(
                        "run {}/{total}: {n} tasks on {w} worker(s) x {t} thread(s)",
                        runs.len() + 1
                    ),
                    workers: w,
                    total: Some(n),
                    target_per_s: None,
                });
                let report = one_run(&exe, n, w, t, delay, &work)
                    .with_context(|| format!("{n} tasks on {w} x {t}"))?;
                let seed = SEED
                    .iter()
                    .find(|s| (s.0, s.1, s.2) == (n, w, t) && delay == Duration::from_millis(10));
                let row = Row {
                    tasks: n,
                    workers: w,
                    threads: t,
                    delay_secs: delay.as_secs_f64(),
                    work: work.clone(),
                    ideal_secs: report.ideal_secs,
                    wall_secs: report.wall_secs,
                    overhead: report.overhead,
                    seed_ms: seed.map(|s| s.3),
                    seed_overhead_pct: seed.map(|s| s.4),
                    report,
                };
                print_row(&row);
                if row.report.lost > 0 || !row.report.failed.is_empty() {
                    failures.push(format!(
                        "{n} tasks on {w} x {t}: {} lost, {} failed",
                        row.report.lost,
                        row.report.failed.len()
                    ));
                }
                runs.push(row);
            }
        }
    }
    let report_runs = report_runs(&runs);
    let bench = PipelineBench {
        plumbline_version: env!("CARGO_PKG_VERSION").to_string(),
        command: crate::session::command_line(),
        preset: "pipeline".into(),
        runs,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&bench)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    session.finish(Outcome {
        runs: report_runs,
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
    Ok(Verdict::of(shutdown.requested(), failures))
}

/// The table as report rows: one scaling-curve group per tasks x threads, speedups against the
/// group's 1-worker run.
fn report_runs(rows: &[Row]) -> Vec<Run> {
    let one_worker = |row: &Row| {
        rows.iter()
            .find(|o| o.workers == 1 && (o.tasks, o.threads) == (row.tasks, row.threads))
    };
    rows.iter()
        .map(|row| {
            let label = format!(
                "{} tasks on {} x {} thread(s)",
                row.tasks, row.workers, row.threads
            );
            let mut run = crate::pipeline::report_run(&row.report, label);
            run.group = format!("{} tasks x {} thread(s)", row.tasks, row.threads);
            run.workers = row.workers;
            if let Some(one) = one_worker(row).filter(|_| row.wall_secs > 0.0) {
                run.speedup = Some(one.wall_secs / row.wall_secs);
                run.ideal_speedup = one
                    .ideal_secs
                    .zip(row.ideal_secs)
                    .filter(|(_, ideal)| *ideal > 0.0)
                    .map(|(one, ideal)| one / ideal);
            }
            run
        })
        .collect()
}

fn print_row(row: &Row) {
    let ms = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.1}", s * 1e3));
    let pct = |o: Option<f64>| o.map_or("-".to_string(), |o| format!("{:+.2} %", o * 100.0));
    println!(
        "{:>6} {:>7} {:>7} {:>10} {:>11} {:>9} | {:>8} {:>9}",
        row.tasks,
        row.workers,
        row.threads,
        ms(row.ideal_secs),
        format!("{:.1}", row.wall_secs * 1e3),
        pct(row.overhead),
        row.seed_ms.map_or("-".into(), |m| format!("{m:.0}")),
        row.seed_overhead_pct
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
    let collector = Proc::start(
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
    let line = collector.wait_for("collector: results on ")?;
    let Some((results, acks)) = line.split_once(", ACKs to the distributor on ") else {
        bail!("the collector did not name its endpoints: {line}");
    };
    let report_at = report_path();
    let (task, delay_text, workers_text) = (
        format!("C:{tasks}"),
        format!("{}ns", delay.as_nanos()),
        workers.to_string(),
    );
    let distributor = Proc::start(
        exe,
        &[
            "pipeline",
            "distributor",
            "--endpoint",
            any,
            "--collector-ack",
            acks,
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
    let endpoint = distributor.wait_for("C workers connect to ")?;
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
                    results,
                    "--threads",
                    &threads_text,
                    "--name",
                    &name,
                ],
            )
        })
        .collect::<Result<_>>()?;
    let ideal = delay * u32::try_from(tasks.div_ceil(u64::from(threads) * workers as u64))?;
    // A distributor that exits 1 over failed tasks still wrote its report: the table shows them.
    let exited = distributor.wait_exit(ideal * 3 + Duration::from_secs(60));
    let text = std::fs::read_to_string(&report_at);
    std::fs::remove_file(&report_at).ok();
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

fn report_path() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "plumbline-pipeline-{}-{}.json",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ))
}
