//! What is derived from run records and how a bench's are shown: the one overhead formula,
//! speedups between a bench's runs, the host a record names, and the bench table with its notes.
//!
//! The record itself ([`crate::record`]) is the commands' to fill; this module measures nothing.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::record::{BenchSection, Record, RunRecord};
use crate::Limit;

/// The machine a report was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cores: usize,
    pub os: String,
    pub arch: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub kernel: Option<String>,
}

impl Host {
    /// This machine; what the OS does not tell (Linux's `/proc` is read) is `None`.
    pub fn current() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            hostname: read("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .or_else(|| std::env::var("HOSTNAME").ok()),
            memory_bytes: read("/proc/meminfo").and_then(|m| {
                let kib = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
                let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().ok()?;
                Some(kib * 1024)
            }),
            kernel: read("/proc/sys/kernel/osrelease").map(|k| k.trim().to_string()),
        }
    }
}

/// Runs with the same load and work (and, on a pipeline, threads per worker), whatever
/// their step and worker count; `None` for a run that is not a bench's.
fn load_key(r: &RunRecord) -> Option<impl PartialEq> {
    let b = r.bench.as_ref()?;
    Some((
        r.items,
        b.delay_s,
        b.work.clone(),
        b.workload.clone(),
        b.keys.clone(),
        r.threads_per_worker(),
    ))
}

/// Fills the ratios between runs of one report: `speedup` and `efficiency` against the 1-worker
/// run of the same load and step, `vs_sequential` against the plain loop of the same load.
pub fn fill_ratios(runs: &mut [RunRecord]) {
    let find = |run: &RunRecord, pick: &dyn Fn(usize, &BenchSection) -> bool| {
        let key = load_key(run)?;
        runs.iter()
            .find(|b| {
                !b.interrupted
                    && load_key(b).is_some_and(|k| k == key)
                    && b.bench.as_ref().is_some_and(|bench| pick(b.workers, bench))
            })
            .map(|b| (b.wall_s, b.achieved_per_s))
    };
    let baselines: Vec<_> = runs
        .iter()
        .map(|run| {
            let Some(bench) = &run.bench else {
                return (None, None);
            };
            (
                find(run, &|workers, b| {
                    workers == 1 && b.step == bench.step && b.cluster == bench.cluster
                }),
                find(run, &|_, b| b.step == "sequential"),
            )
        })
        .collect();
    for (run, (one_worker, sequential)) in runs.iter_mut().zip(baselines) {
        let usable = run.wall_s > 0.0 && !run.interrupted;
        let (wall_s, workers, achieved) = (run.wall_s, run.workers, run.achieved_per_s);
        let Some(bench) = &mut run.bench else {
            continue;
        };
        bench.speedup = one_worker.filter(|_| usable).map(|(wall, _)| wall / wall_s);
        bench.efficiency = bench.speedup.map(|s| s / workers as f64);
        bench.vs_sequential = sequential
            .filter(|&(_, rate)| usable && rate > 0.0)
            .map(|(_, rate)| achieved / rate);
    }
}

/// Overhead over the ideal in percent, `(wall / ideal − 1) × 100`; `None` when the ideal is
/// zero (or not a number), where no overhead can be told. The one overhead formula.
pub fn overhead_pct(wall_s: f64, ideal_s: f64) -> Option<f64> {
    pct_above(wall_s, ideal_s)
}

/// How far `value` lies above `reference`, in percent: `(value / reference − 1) × 100`; `None`
/// when the reference is not positive.
pub fn pct_above(value: f64, reference: f64) -> Option<f64> {
    (reference > 0.0).then(|| (value / reference - 1.0) * 100.0)
}

/// `count` over `wall_s` seconds, per second; 0 for a run that took no time.
pub fn per_s(count: f64, wall_s: f64) -> f64 {
    if wall_s > 0.0 {
        count / wall_s
    } else {
        0.0
    }
}

/// The runs as an aligned text table, followed by notes on what limits each run.
pub fn table(report: &Record) -> String {
    let header = [
        "run",
        "workers",
        "items",
        "delay",
        "work",
        "step",
        "cluster",
        "wall",
        "ideal",
        "overhead",
        "speedup",
        "eff",
        "items/s",
        "vs loop",
        "p50",
        "p99",
        "max",
        "per worker",
    ];
    let rows: Vec<Vec<String>> = bench_runs(report)
        .map(|(i, r, b)| {
            vec![
                format!("{}{}", i + 1, if r.interrupted { "*" } else { "" }),
                r.workers.to_string(),
                r.items.unwrap_or(0).to_string(),
                secs(b.delay_s),
                b.work.clone(),
                b.step.clone(),
                b.cluster.clone(),
                secs(r.wall_s),
                secs(r.ideal_s.unwrap_or(0.0)),
                r.overhead_pct.map_or("-".into(), |o| format!("{o:.2}%")),
                b.speedup.map_or("-".into(), |s| format!("{s:.2}x")),
                b.efficiency.map_or("-".into(), |e| format!("{e:.2}")),
                rate(r.achieved_per_s),
                b.vs_sequential.map_or("-".into(), |v| format!("{v:.2}")),
                secs(r.latency_s.p50),
                secs(r.latency_s.p99),
                secs(r.latency_s.max),
                per_worker(&r.per_worker),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}", w = *w))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, &mut header.iter().copied());
    for row in &rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    for note in notes(report) {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// A record's bench runs with their index and section.
fn bench_runs(report: &Record) -> impl Iterator<Item = (usize, &RunRecord, &BenchSection)> {
    report
        .runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r, r.bench.as_ref()?)))
}

/// What the table alone does not say: limits, losses, state checks, interruptions.
pub fn notes(report: &Record) -> Vec<String> {
    let mut notes = Vec::new();
    for (i, r, b) in bench_runs(report) {
        let run = i + 1;
        let items = r.items.unwrap_or(0);
        match b.limit {
            _ if r.ideal_s.unwrap_or(0.0) == 0.0 => {}
            Limit::Workers => {}
            Limit::Arrivals => notes.push(format!(
                "run {run}: limited by {}: paced input, so the wall time shows arrivals, \
                 latency shows the plumbing",
                b.limit.describe()
            )),
            Limit::Partitions => notes.push(format!(
                "run {run}: limited by {}: {} of {} workers hold items",
                b.limit.describe(),
                r.per_worker.iter().filter(|&&n| n > 0).count(),
                r.workers
            )),
            Limit::KeyDistribution => {
                let busiest = r.per_worker.iter().max().copied().unwrap_or(0);
                let best = if busiest > 0 {
                    items as f64 / busiest as f64
                } else {
                    0.0
                };
                notes.push(format!(
                    "run {run}: limited by {}: the busiest worker holds {busiest} of {} items \
                     (keys: {}), so {} workers can reach at most {best:.2}x",
                    b.limit.describe(),
                    items,
                    b.keys,
                    r.workers
                ));
            }
            Limit::Cores => notes.push(format!(
                "run {run}: limited by {}: {} workers doing {} work share {} cores, so the ideal \
                 is {}, not the {} a core per worker would allow",
                b.limit.describe(),
                r.workers,
                b.work,
                report.host.cores,
                secs(r.ideal_s.unwrap_or(0.0)),
                secs(b.busiest_worker_s),
            )),
        }
        if r.lost > 0 || r.duplicates > 0 {
            notes.push(format!(
                "run {run}: {} of {} items lost, {} duplicates",
                r.lost, items, r.duplicates
            ));
        }
        match b.state_ok {
            Some(true) => notes.push(format!("run {run}: final state as expected: {}", b.state)),
            Some(false) => notes.push(format!("run {run}: FINAL STATE WRONG: {}", b.state)),
            None => {}
        }
        if r.interrupted {
            notes.push(format!(
                "run {run}*: interrupted by Ctrl-C after {} of {} items",
                r.delivered.unwrap_or(0),
                items
            ));
        }
    }
    notes
}

/// Seconds in the shortest readable unit (`1.234s`, `12.50ms`, `25.6us`, `0`).
pub fn secs(s: f64) -> String {
    match s {
        0.0 => "0".into(),
        s if s >= 1.0 => format!("{s:.3}s"),
        s if s >= 1e-3 => format!("{:.2}ms", s * 1e3),
        s => format!("{:.1}us", s * 1e6),
    }
}

fn rate(per_s: f64) -> String {
    match per_s {
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e4 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.1}"),
    }
}

fn per_worker(counts: &[u64]) -> String {
    if counts.len() <= 4 {
        counts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("/")
    } else {
        let min = counts.iter().min().unwrap_or(&0);
        let max = counts.iter().max().unwrap_or(&0);
        format!("{min}..{max}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{bench_run as run, record as report};
    use crate::record::PipelineFigures;

    fn bench(r: &mut RunRecord) -> &mut BenchSection {
        r.bench.as_mut().unwrap()
    }

    #[test]
    fn speedup_is_against_the_one_worker_run_of_the_same_config() {
        let mut other = run(2, 10.0);
        other.items = Some(100);
        let mut seq = run(1, 20.0);
        bench(&mut seq).step = "sequential".into();
        let mut runs = vec![run(1, 26.0), run(2, 13.0), other, seq];
        fill_ratios(&mut runs);
        let b = |i: usize| runs[i].bench.clone().unwrap();
        assert_eq!(b(0).speedup, Some(1.0));
        assert_eq!(b(1).speedup, Some(2.0));
        assert_eq!(b(1).efficiency, Some(1.0));
        assert_eq!(b(2).speedup, None, "no 1-worker run with 100 items");
        assert_eq!(b(3).speedup, Some(1.0), "the loop is its own baseline");
        assert!((b(1).vs_sequential.unwrap() - 20.0 / 13.0).abs() < 1e-9);
        assert_eq!(b(2).vs_sequential, None);
    }

    #[test]
    fn overhead_is_relative_to_the_ideal() {
        assert!((overhead_pct(13.013, 13.0).unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(overhead_pct(1.0, 0.0), None);
        assert_eq!(overhead_pct(1.0, f64::NAN), None);
    }

    #[test]
    fn pipeline_runs_compare_only_with_runs_of_as_many_threads_per_worker() {
        let piped = |workers: usize, threads: u32, wall_s: f64| {
            let mut r = run(workers, wall_s);
            bench(&mut r).cluster = "pipeline".into();
            r.pipeline = Some(PipelineFigures {
                threads_per_worker: threads,
                dispatches: 52,
                redelivered: 0,
                failed: 0,
                seed_wall_s: None,
                seed_overhead_pct: None,
                distributor: serde_json::Value::Null,
            });
            r
        };
        let mut runs = vec![piped(1, 10, 4.0), piped(1, 1, 26.0), piped(2, 1, 13.0)];
        fill_ratios(&mut runs);
        assert_eq!(
            runs[2].bench.as_ref().unwrap().speedup,
            Some(2.0),
            "against 1 x 1 thread, not 1 x 10"
        );
    }

    #[test]
    fn runs_of_other_commands_get_no_ratios_and_no_table_row() {
        let mut runs = vec![run(1, 26.0), crate::record::RunRecord::new(1, 26.0)];
        fill_ratios(&mut runs);
        assert!(runs[1].bench.is_none());
        let text = table(&report(runs));
        assert_eq!(
            text.lines().filter(|l| l.contains("26.000s")).count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn table_names_the_key_distribution_limit() {
        let mut hot = run(2, 26.0);
        hot.per_worker = vec![52, 0];
        bench(&mut hot).limit = Limit::KeyDistribution;
        let text = table(&report(vec![run(1, 26.0), hot]));
        assert!(
            text.contains("limited by the key distribution, not the engine"),
            "{text}"
        );
        assert!(text.contains("at most 1.00x"), "{text}");
        assert!(text.lines().next().unwrap().contains("overhead"));
    }

    #[test]
    fn the_host_is_read_from_this_machine() {
        let host = Host::current();
        assert!(host.cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(host.memory_bytes.unwrap() > 1 << 20);
            assert!(host.kernel.is_some());
        }
    }
}
