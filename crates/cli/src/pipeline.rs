//! `plumbline pipeline distributor|worker|collector`: seed 001's roles as processes.
//!
//! Each role turns its flags into the library's config (plumbline-pipeline), runs it, and prints
//! what happened. The work is plumbline's own: a worker spends each descriptor's `workload` with
//! the spine's work models, and aborts on a `"crash": true` descriptor (`--poison`) to play a
//! worker that a bad task kills. Seed 001's table is `bench_pipeline.rs`, not here.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use plumbline_core::duration::Human;
use plumbline_core::Shutdown;
use plumbline_measure::RunInfo;
use plumbline_pipeline::distributor::{DistributorConfig, PipelineReport};
use plumbline_pipeline::worker::{self, WorkerConfig};
use plumbline_pipeline::{
    Assignment, BoundCollector, Collector, CollectorSummary, Distributor, MultiThreadedWorker,
    SingleThreadedWorker, SleepTask, TaskResult, TaskType, Workload,
};
use plumbline_report::Run;
use plumbline_transport::endpoint::Endpoint;
use plumbline_worker::announce::{Announcement, Announcer, TaskEndpoint};
use plumbline_worker::work::WorkTimer;
use plumbline_worker::Work;
use serde_json::{json, Value};

use crate::args::{CollectorArgs, DistributorArgs, PipelineCommand, PipelineWorkerArgs};
use crate::bench::Verdict;
use crate::progress::{Follow, RunProgress};
use crate::session::{Outcome, Session};

pub fn run(command: &PipelineCommand, shutdown: &Shutdown) -> Result<Verdict> {
    match command {
        PipelineCommand::Distributor(args) => distributor(args, shutdown),
        PipelineCommand::Worker(args) => worker(args, shutdown),
        PipelineCommand::Collector(args) => collector(args, shutdown),
    }
}

fn endpoint(flag: &str, value: &str) -> Result<Endpoint> {
    value.parse().with_context(|| format!("--{flag}"))
}

/// One `--task TYPE:COUNT[:DEP+DEP…]`.
fn task_spec(spec: &str, delay: Duration, work: Work, poison: &[u64]) -> Result<SleepTask> {
    let mut parts = spec.split(':');
    let (Some(name), Some(count)) = (parts.next(), parts.next()) else {
        bail!("--task '{spec}' is not TYPE:COUNT[:DEPENDENCY+DEPENDENCY]");
    };
    let task_type = TaskType::new(name).with_context(|| format!("--task '{spec}'"))?;
    let count: u64 = count.parse().ok().filter(|&n| n > 0).with_context(|| {
        format!("--task '{spec}': the count '{count}' is not a positive number")
    })?;
    let deps = match parts.next() {
        Some(deps) => deps
            .split('+')
            .map(TaskType::new)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--task '{spec}'"))?,
        None => Vec::new(),
    };
    if parts.next().is_some() {
        bail!("--task '{spec}' is not TYPE:COUNT[:DEPENDENCY+DEPENDENCY]");
    }
    Ok(SleepTask::new(task_type, count, delay, work)
        .after(deps)
        .poison(poison.iter().copied()))
}

fn distributor(args: &DistributorArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let work: Work = args.work.parse().context("--work")?;
    if args.delay > Duration::from_secs(3600) {
        bail!(
            "--delay {} is longer than a task may be (1 h)",
            Human(args.delay)
        );
    }
    let workers_at = endpoint("endpoint", &args.endpoint)?;
    let mut config = DistributorConfig::new(endpoint("collector-ack", &args.collector_ack)?);
    config.workers = args.workers.max(1);
    config.lease = args.lease;
    config.max_deliver = args.max_deliver;
    config.collector_timeout = args.collector_timeout;
    config.join_timeout = args.join_timeout;
    config.rejoin_timeout = args.rejoin_timeout;
    config.token = args.token.as_ref().map(|t| t.expose().to_string());
    config.release = plumbline_load::schedule::parse_rate(&args.rate)
        .context("--rate")?
        .map(|rate| plumbline_load::Shape::Constant { rate });
    if let Some(path) = &args.resume {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config.resume = collected(&text).with_context(|| format!("--resume {}", path.display()))?;
        tracing::info!(
            "distributor: resuming: {} task(s) already collected in {}",
            config.resume.len(),
            path.display()
        );
    }
    if args.lease <= args.delay {
        tracing::warn!(
            "--lease {} is not longer than the {} task: every delivery runs out before \
             its result can be ACKed, so tasks go out again while they run (expect many \
             duplicates); give --lease well above the task's p99",
            Human(args.lease),
            Human(args.delay)
        );
    }
    let mut distributor = Distributor::new(config);
    let mut total = 0;
    let mut described = Vec::new();
    for spec in &args.tasks {
        let task = task_spec(spec, args.delay, work, &args.poison)?;
        total += task.count();
        described.push(spec.as_str());
        distributor.register(Box::new(task), workers_at.clone());
    }
    let bound = distributor.bind()?;
    for (task_type, at) in bound.endpoints() {
        tracing::info!("distributor: {task_type} workers connect to {at}");
    }
    Announcer::open(args.announce.as_deref())
        .context("--announce")?
        .announce(&Announcement::DistributorListening {
            tasks: bound
                .endpoints()
                .iter()
                .map(|(task_type, at)| TaskEndpoint {
                    task_type: task_type.to_string(),
                    endpoint: at.to_string(),
                })
                .collect(),
        });
    tracing::info!(
        "distributor: waiting for {} worker(s) and the collector at {}",
        args.workers.max(1),
        args.collector_ack
    );
    let label = format!("{} x {} {work}", described.join(" "), Human(args.delay));
    let session = Session::with_live("pipeline", &args.out, None, bound.live())?;
    let live = session.live().clone();
    live.begin_run(RunInfo {
        label: label.clone(),
        workers: args.workers.max(1),
        total: Some(total),
        target_per_s: None,
    });
    let progress = RunProgress::new(args.quiet, Some(total), label.clone(), &live, Follow::Out);
    let report = progress.track(|| bound.run(shutdown))?;
    progress.finish("");
    // Stdout carries the announcements when they go there.
    if args.announce.as_deref() == Some("-") {
        print_report(&mut std::io::stderr().lock(), &report)?;
    } else {
        print_report(&mut std::io::stdout().lock(), &report)?;
    }
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    session.finish(Outcome {
        runs: vec![report_run(&report, label)],
        resolved: serde_json::json!({
            "tasks": described,
            "delay_s": args.delay.as_secs_f64(),
            "work": work.to_string(),
            "workers": args.workers.max(1),
            "lease_s": args.lease.as_secs_f64(),
            "max_deliver": args.max_deliver,
        }),
        seeds: Vec::new(),
        detail: serde_json::to_value(&report)?,
    })?;
    Ok(verdict(&report))
}

/// The tasks a collector's results file (JSON lines) holds a result for: id → task type. The
/// last line may be torn (the collector was killed mid-write); any other bad line is an error.
fn collected(ledger: &str) -> Result<std::collections::BTreeMap<u64, String>> {
    #[derive(serde::Deserialize)]
    struct Line {
        id: u64,
        task_type: String,
    }
    let lines: Vec<&str> = ledger.lines().collect();
    let mut done = std::collections::BTreeMap::new();
    for (n, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Line>(line) {
            Ok(l) => {
                done.insert(l.id, l.task_type);
            }
            Err(_) if n + 1 == lines.len() && !ledger.ends_with('\n') => {
                tracing::warn!("distributor: skipping the torn last line of the ledger");
            }
            Err(e) => bail!("line {}: not a collector result ({e})", n + 1),
        }
    }
    Ok(done)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// A pipeline run as a report row: its workers are the distributor's peers, the per-worker
/// counts their ACKed tasks.
pub fn report_run(r: &PipelineReport, label: String) -> Run {
    let threads: u32 = r.workers.iter().map(|w| w.threads).sum();
    Run {
        group: format!("{label} ({threads} threads)"),
        label,
        workers: r.workers.len(),
        items: r.acked,
        wall_s: r.wall_s,
        ideal_s: r.ideal_s,
        overhead_pct: r.overhead_pct,
        speedup: None,
        ideal_speedup: None,
        items_per_s: plumbline_measure::report::per_s(r.acked as f64, r.wall_s),
        lost: r.lost,
        duplicates: r.duplicates,
        latency_s: None,
        latency_intervals: Vec::new(),
        per_worker: r.workers.iter().map(|w| w.acked).collect(),
        capacity_per_s: None,
    }
}

/// Failed or lost tasks fail the run (exit 1) although it completed.
pub fn verdict(report: &PipelineReport) -> Verdict {
    if report.interrupted {
        return Verdict::Interrupted;
    }
    let mut failures = Vec::new();
    if let Some(error) = &report.error {
        failures.push(format!(
            "{error} ({} of {} issued tasks ACKed)",
            report.acked, report.issued
        ));
    }
    if !report.failed.is_empty() {
        let ids: Vec<String> = report
            .failed
            .iter()
            .map(|f| format!("{} ({}, {} deliveries)", f.id, f.task_type, f.attempts))
            .collect();
        failures.push(format!(
            "the run completed, but {} task(s) failed: {}",
            report.failed.len(),
            ids.join(", ")
        ));
    }
    if report.lost > 0 {
        failures.push(format!("{} task(s) lost", report.lost));
    }
    if failures.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(failures)
    }
}

fn print_report(out: &mut impl Write, r: &PipelineReport) -> std::io::Result<()> {
    let threads: u32 = r.workers.iter().map(|w| w.threads).sum();
    writeln!(
        out,
        "pipeline: {} tasks on {} worker(s), {threads} thread(s){}",
        r.issued,
        r.workers.len(),
        if r.interrupted { " (interrupted)" } else { "" }
    )?;
    if let Some(ideal) = r.ideal_s {
        writeln!(out, "  ideal      {ideal:>10.3} s")?;
    }
    write!(out, "  measured   {:>10.3} s", r.wall_s)?;
    match r.overhead_pct {
        Some(o) => writeln!(out, "   overhead {o:+.2} %")?,
        None => writeln!(out)?,
    }
    if let Some(l) = &r.latency {
        writeln!(
            out,
            "  latency    p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms (intended time to ACK)",
            l.p50 * 1e3,
            l.p99 * 1e3,
            l.max * 1e3
        )?;
    }
    if r.resumed > 0 {
        writeln!(
            out,
            "  resumed {} (their results were in the --resume ledger)",
            r.resumed
        )?;
    }
    writeln!(
        out,
        "  acked {}  duplicates {}  redeliveries {}  failed {}  lost {}  bad peers {}",
        r.acked,
        r.duplicates,
        r.redeliveries,
        r.failed.len(),
        r.lost,
        r.bad_peers
    )?;
    if let Some(c) = &r.collector {
        writeln!(
            out,
            "  collector: {} results, {} duplicates",
            c.results, c.duplicates
        )?;
    }
    for w in &r.workers {
        let share = if r.dispatches > 0 {
            100.0 * w.dispatched as f64 / r.dispatches as f64
        } else {
            0.0
        };
        writeln!(
            out,
            "  worker {:<16} {:<8} {:>3} thread(s) {:>7} tasks ({share:>5.1} %){}",
            w.name,
            w.task_type,
            w.threads,
            w.dispatched,
            if w.lost_connection {
                "  left early"
            } else {
                ""
            }
        )?;
    }
    for f in &r.failed {
        writeln!(
            out,
            "  failed: task {} ({}) after {} deliveries",
            f.id, f.task_type, f.attempts
        )?;
    }
    Ok(())
}

/// How plumbline's worker spends a task: the descriptor's workload, or the flags' overrides.
#[derive(Clone, Copy)]
struct Spend {
    delay: Option<Duration>,
    work: Option<Work>,
}

impl Spend {
    /// Spends the task's workload; `meanwhile` (the previous result on its way out) runs once,
    /// inside the wait where the work has one.
    fn execute(&self, timer: &mut WorkTimer, data: &Value, meanwhile: &mut dyn FnMut()) -> Value {
        let workload = match Workload::from_data(data) {
            Ok(w) => w,
            Err(e) => {
                meanwhile();
                tracing::warn!("worker: cannot execute a task: {e}");
                return json!({ "error": e.to_string() });
            }
        };
        if workload.crash {
            tracing::warn!("worker: a poison task: crashing, as asked");
            std::process::abort();
        }
        let (work, delay) = self.choose(&workload);
        timer.run_as_while(work, delay, meanwhile);
        Value::Null
    }

    /// The flags' overrides, else what the descriptor says.
    fn choose(&self, workload: &Workload) -> (Work, Duration) {
        (
            self.work.unwrap_or(workload.work),
            self.delay.unwrap_or(workload.delay),
        )
    }
}

struct SleepWorker {
    spend: Spend,
    timer: WorkTimer,
}

impl SingleThreadedWorker for SleepWorker {
    fn handle_execution(&mut self, task: &Assignment) -> Value {
        self.handle_execution_while(task, &mut || {})
    }

    fn handle_execution_while(&mut self, task: &Assignment, meanwhile: &mut dyn FnMut()) -> Value {
        self.spend.execute(&mut self.timer, &task.data, meanwhile)
    }
}

struct SleepThreads {
    spend: Spend,
    /// One timer per thread: a timer learns its own thread's wake-up latency.
    timers: Vec<Mutex<WorkTimer>>,
}

impl MultiThreadedWorker for SleepThreads {
    fn n_threads(&self) -> usize {
        self.timers.len()
    }

    fn handle_thread_execution(&self, data: Value, index: usize) -> Value {
        self.handle_thread_execution_while(data, index, &mut || {})
    }

    fn handle_thread_execution_while(
        &self,
        data: Value,
        index: usize,
        meanwhile: &mut dyn FnMut(),
    ) -> Value {
        match self.timers[index].lock() {
            Ok(mut timer) => self.spend.execute(&mut timer, &data, meanwhile),
            Err(_) => {
                meanwhile();
                json!({ "error": "timer poisoned" })
            }
        }
    }
}

fn worker(args: &PipelineWorkerArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let work = args
        .work
        .as_deref()
        .map(str::parse::<Work>)
        .transpose()
        .context("--work")?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let mut config = WorkerConfig::new(
        &name,
        TaskType::new(&args.task_type).context("--task-type")?,
        endpoint("endpoint", &args.endpoint)?,
        endpoint("collector", &args.collector)?,
    );
    config.prefetch = args.prefetch;
    config.connect_timeout = args.connect_timeout;
    config.reconnect_timeout = args.reconnect_timeout;
    config.token = args.token.as_ref().map(|t| t.expose().to_string());
    let spend = Spend {
        delay: args.delay,
        work,
    };
    tracing::info!("worker {name}: running ({} thread(s))", args.threads);
    let summary = if args.threads == 1 {
        let mut worker = SleepWorker {
            spend,
            timer: WorkTimer::new(Work::Sleep),
        };
        worker::run_single(&config, &mut worker, shutdown)?
    } else {
        let threads = SleepThreads {
            spend,
            timers: (0..args.threads)
                .map(|_| Mutex::new(WorkTimer::new(Work::Sleep)))
                .collect(),
        };
        worker::run_multi(&config, Arc::new(threads), shutdown)?
    };
    tracing::info!(
        "worker {name}: finished - handled {} executions",
        summary.executions
    );
    Ok(Verdict::of(summary.interrupted, Vec::new()))
}

/// The seed's stopwatch collector, writing each result as a JSON line if asked.
/// Times with the collector's own clock, as the seed's does (first collection → finished):
/// the times in results are the workers' and a peer may send anything there.
struct Recorder {
    lines: Option<BufWriter<File>>,
    first: Option<Instant>,
    write_error: Option<std::io::Error>,
}

impl Collector for Recorder {
    fn handle_collection(&mut self, result: &TaskResult) {
        self.first.get_or_insert_with(Instant::now);
        if let (Some(out), None) = (&mut self.lines, &self.write_error) {
            let written = serde_json::to_writer(&mut *out, result)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"));
            self.write_error = written.err();
        }
    }

    fn commit(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.write_error.take() {
            return Err(e);
        }
        match &mut self.lines {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    fn handle_finished(&mut self, summary: &CollectorSummary) {
        if let Some(first) = self.first {
            tracing::info!(
                "collector: collection took {:.1} milliseconds",
                first.elapsed().as_secs_f64() * 1e3
            );
        }
        tracing::info!(
            "collector: {} results, {} duplicates, {} bad peers",
            summary.results,
            summary.duplicates,
            summary.bad_peers
        );
    }
}

fn collector(args: &CollectorArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let results = endpoint("endpoint", &args.endpoint)?;
    let acks = endpoint("ack-endpoint", &args.ack_endpoint)?;
    let lines = match &args.results {
        Some(path) => Some(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let bound = BoundCollector::bind(&results, &acks)?
        .distributor_timeout(args.distributor_timeout)
        .token(args.token.as_ref().map(|t| t.expose().to_string()));
    let (at, acks_at) = bound.endpoints();
    tracing::info!("collector: results on {at}, ACKs to the distributor on {acks_at}");
    Announcer::open(args.announce.as_deref())
        .context("--announce")?
        .announce(&Announcement::CollectorListening {
            results: at.to_string(),
            acks: acks_at.to_string(),
        });
    let mut recorder = Recorder {
        lines,
        first: None,
        write_error: None,
    };
    let summary = bound
        .run(&mut recorder, shutdown)
        .context("writing the results file")?;
    recorder.commit().context("writing the results file")?;
    if let Some(path) = &args.json {
        write_json(path, &summary)?;
    }
    Ok(Verdict::of(
        summary.interrupted,
        summary.error.iter().cloned().collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_torn_at_its_end_resumes_and_one_torn_inside_is_refused() {
        let ledger =
            "{\"id\":1,\"task_type\":\"C\"}\n{\"id\":3,\"task_type\":\"C\"}\n{\"id\":4,\"ta";
        let done = collected(ledger).unwrap();
        assert_eq!(done.keys().copied().collect::<Vec<_>>(), [1, 3]);
        let inside = "{\"id\":1,\"ta\n{\"id\":3,\"task_type\":\"C\"}\n";
        let error = collected(inside).unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
    }

    /// Regression: a descriptor's `"work": "spin"` was ignored unless the worker overrode it.
    #[test]
    fn a_worker_spends_the_descriptors_work_unless_its_flags_override_it() {
        let workload = Workload::from_data(&json!({ "workload": 0.01, "work": "spin" })).unwrap();
        let as_sent = Spend {
            delay: None,
            work: None,
        };
        assert_eq!(
            as_sent.choose(&workload),
            (Work::Spin, Duration::from_millis(10))
        );
        let overridden = Spend {
            delay: Some(Duration::from_millis(50)),
            work: Some(Work::Sleep),
        };
        assert_eq!(
            overridden.choose(&workload),
            (Work::Sleep, Duration::from_millis(50))
        );
    }
}
