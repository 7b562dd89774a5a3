//! The run record: one document type ([`BenchReport`], schema [`SCHEMA`]) for every bench run,
//! on threads, processes or the task pipeline, and its terminal table.
//!
//! `bench --json` and `bench --preset pipeline --json` write it, and `report` and `compare` read
//! it; every field, its unit and the versioning rules are in docs/run-record.md. Renaming or
//! retyping a field is a new schema version; a reader refuses any other version by name
//! ([`BenchReport::parse`]). Producing the figures is the caller's job; this module only derives
//! overhead and speedups and lays figures out.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{LatencySummary, Limit};

/// What `schema` says in every run record document this version writes.
pub const SCHEMA: &str = "plumbline.run/2";

/// One run of a bench matrix, as measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub workers: usize,
    pub items: u64,
    pub delay_s: f64,
    pub work: String,
    pub step: String,
    /// Where the workers ran: `threads` (one process), `processes` (over loopback TCP) or
    /// `pipeline` (distributor, worker and collector processes).
    pub cluster: String,
    pub workload: String,
    pub keys: String,
    pub wall_s: f64,
    pub ideal_s: f64,
    /// What bounds the ideal: the worker count, the key distribution, or the cores.
    pub limit: Limit,
    /// The ideal had keys been spread perfectly evenly.
    pub even_spread_ideal_s: f64,
    /// The ideal with a core per worker: the busiest worker's items × delay.
    pub busiest_worker_s: f64,
    /// `(wall / ideal - 1) × 100`; null when the ideal is zero (zero delay).
    pub overhead_pct: Option<f64>,
    /// Wall time of the 1-worker run of the same configuration ÷ this wall time; null without one.
    pub speedup: Option<f64>,
    /// `speedup / workers`.
    pub efficiency: Option<f64>,
    /// items/s ÷ items/s of the sequential (plain loop) run of the same configuration.
    pub vs_sequential: Option<f64>,
    pub items_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Intended send time → result. Unpaced, every item is due at the run start (a batch), so
    /// this is each item's time to result; with `--rate` it counts from the item's own due time.
    pub latency_s: LatencySummary,
    /// What one item's work actually cost (the precision of the work model).
    pub work_s: LatencySummary,
    /// Items each worker handled.
    pub per_worker: Vec<u64>,
    /// Results that reached the sink.
    pub delivered: u64,
    /// Sequence numbers sent but never delivered.
    pub lost: u64,
    /// Sequence numbers delivered more than once.
    pub duplicates: u64,
    /// Items a worker could not apply (malformed payloads).
    pub rejected: u64,
    /// Whether the final state matched what the sent items imply (null for stateless steps).
    pub state_ok: Option<bool>,
    /// The final state in short, or what did not match.
    pub state: String,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    /// What only a task pipeline run has; null for the other clusters.
    pub pipeline: Option<PipelineFigures>,
}

/// The figures of a task pipeline run (`cluster: pipeline`) beyond those every run has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineFigures {
    /// Threads each worker process runs: the run has `workers × threads_per_worker` slots.
    pub threads_per_worker: u32,
    /// Tasks sent to a worker, redeliveries included.
    pub dispatches: u64,
    /// Tasks sent again after a lease expired or a worker left.
    pub redelivered: u64,
    /// Tasks given up after their last delivery.
    pub failed: u64,
    /// Seed 001's published wall time for this tasks × workers × threads (10 ms tasks only).
    pub seed_wall_s: Option<f64>,
    /// Seed 001's published overhead, in percent.
    pub seed_overhead_pct: Option<f64>,
    /// The distributor's own report (`pipeline distributor --json`), unabridged.
    pub distributor: serde_json::Value,
}

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

/// The run record document: everything `bench --json` writes, for every preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// [`SCHEMA`].
    pub schema: String,
    pub plumbline_version: String,
    pub command: Vec<String>,
    pub preset: String,
    /// The seed of the generated load; null when the load is not random (the pipeline's tasks).
    pub seed: Option<u64>,
    pub host: Host,
    pub runs: Vec<RunRecord>,
}

/// Why a document is not a run record this version reads.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error(
        "no \"schema\" field: a run record of plumbline.run/1 (before versioned schemas); \
         this plumbline reads {SCHEMA}: run the bench again"
    )]
    Unversioned,
    #[error("schema {found}; this plumbline reads {SCHEMA}")]
    Schema { found: String },
    #[error("not a valid {SCHEMA} document: {0}")]
    Invalid(serde_json::Error),
}

impl BenchReport {
    /// An empty document of this schema.
    pub fn new(command: Vec<String>, preset: &str, seed: Option<u64>, host: Host) -> Self {
        Self {
            schema: SCHEMA.to_string(),
            plumbline_version: env!("CARGO_PKG_VERSION").to_string(),
            command,
            preset: preset.to_string(),
            seed,
            host,
            runs: Vec::new(),
        }
    }

    /// Reads a run record, checking its schema before its fields, so an older or newer document
    /// is refused by its version rather than by whichever field changed.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        Self::from_value(serde_json::from_slice(bytes).map_err(RecordError::NotJson)?)
    }

    /// [`BenchReport::parse`] of a document already read as JSON.
    pub fn from_value(value: serde_json::Value) -> Result<Self, RecordError> {
        match value.get("schema") {
            None => Err(RecordError::Unversioned),
            Some(serde_json::Value::String(s)) if s == SCHEMA => {
                serde_json::from_value(value).map_err(RecordError::Invalid)
            }
            Some(other) => Err(RecordError::Schema {
                found: other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string),
            }),
        }
    }
}

impl RunRecord {
    /// Runs with the same load and work (and, on a pipeline, threads per worker), whatever
    /// their step and worker count.
    fn same_load(&self, other: &RunRecord) -> bool {
        let key = |r: &RunRecord| {
            (
                r.items,
                r.delay_s,
                r.work.clone(),
                r.workload.clone(),
                r.keys.clone(),
                r.threads_per_worker(),
            )
        };
        key(self) == key(other)
    }

    /// A pipeline worker's threads; `None` for the other clusters (a thread or process each).
    pub fn threads_per_worker(&self) -> Option<u32> {
        self.pipeline.as_ref().map(|p| p.threads_per_worker)
    }
}

/// Fills the ratios between runs of one report: `speedup` and `efficiency` against the 1-worker
/// run of the same load and step, `vs_sequential` against the plain loop of the same load.
pub fn fill_ratios(runs: &mut [RunRecord]) {
    let find = |run: &RunRecord, pick: &dyn Fn(&RunRecord) -> bool| {
        runs.iter()
            .find(|b| !b.interrupted && b.same_load(run) && pick(b))
            .map(|b| (b.wall_s, b.items_per_s))
    };
    let baselines: Vec<_> = runs
        .iter()
        .map(|run| {
            (
                find(run, &|b| {
                    b.workers == 1 && b.step == run.step && b.cluster == run.cluster
                }),
                find(run, &|b| b.step == "sequential"),
            )
        })
        .collect();
    for (run, (one_worker, sequential)) in runs.iter_mut().zip(baselines) {
        let usable = run.wall_s > 0.0 && !run.interrupted;
        run.speedup = one_worker
            .filter(|_| usable)
            .map(|(wall, _)| wall / run.wall_s);
        run.efficiency = run.speedup.map(|s| s / run.workers as f64);
        run.vs_sequential = sequential
            .filter(|&(_, rate)| usable && rate > 0.0)
            .map(|(_, rate)| run.items_per_s / rate);
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
pub fn table(report: &BenchReport) -> String {
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
    let rows: Vec<Vec<String>> = report
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                format!("{}{}", i + 1, if r.interrupted { "*" } else { "" }),
                r.workers.to_string(),
                r.items.to_string(),
                secs(r.delay_s),
                r.work.clone(),
                r.step.clone(),
                r.cluster.clone(),
                secs(r.wall_s),
                secs(r.ideal_s),
                r.overhead_pct.map_or("-".into(), |o| format!("{o:.2}%")),
                r.speedup.map_or("-".into(), |s| format!("{s:.2}x")),
                r.efficiency.map_or("-".into(), |e| format!("{e:.2}")),
                rate(r.items_per_s),
                r.vs_sequential.map_or("-".into(), |v| format!("{v:.2}")),
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

/// What the table alone does not say: limits, losses, state checks, interruptions.
pub fn notes(report: &BenchReport) -> Vec<String> {
    let mut notes = Vec::new();
    for (i, r) in report.runs.iter().enumerate() {
        let run = i + 1;
        match r.limit {
            _ if r.ideal_s == 0.0 => {}
            Limit::Workers => {}
            Limit::Arrivals => notes.push(format!(
                "run {run}: limited by {}: paced input, so the wall time shows arrivals, \
                 latency shows the plumbing",
                r.limit.describe()
            )),
            Limit::Partitions => notes.push(format!(
                "run {run}: limited by {}: {} of {} workers hold items",
                r.limit.describe(),
                r.per_worker.iter().filter(|&&n| n > 0).count(),
                r.workers
            )),
            Limit::KeyDistribution => {
                let busiest = r.per_worker.iter().max().copied().unwrap_or(0);
                let best = if busiest > 0 {
                    r.items as f64 / busiest as f64
                } else {
                    0.0
                };
                notes.push(format!(
                    "run {run}: limited by {}: the busiest worker holds {busiest} of {} items \
                     (keys: {}), so {} workers can reach at most {best:.2}x",
                    r.limit.describe(),
                    r.items,
                    r.keys,
                    r.workers
                ));
            }
            Limit::Cores => notes.push(format!(
                "run {run}: limited by {}: {} workers doing {} work share {} cores, so the ideal \
                 is {}, not the {} a core per worker would allow",
                r.limit.describe(),
                r.workers,
                r.work,
                report.host.cores,
                secs(r.ideal_s),
                secs(r.busiest_worker_s),
            )),
        }
        if r.lost > 0 || r.duplicates > 0 {
            notes.push(format!(
                "run {run}: {} of {} items lost, {} duplicates",
                r.lost, r.items, r.duplicates
            ));
        }
        match r.state_ok {
            Some(true) => notes.push(format!("run {run}: final state as expected: {}", r.state)),
            Some(false) => notes.push(format!("run {run}: FINAL STATE WRONG: {}", r.state)),
            None => {}
        }
        if r.interrupted {
            notes.push(format!(
                "run {run}*: interrupted by Ctrl-C after {} of {} items",
                r.delivered, r.items
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
    use crate::Recorder;

    fn run(workers: usize, wall_s: f64) -> RunRecord {
        RunRecord {
            workers,
            items: 52,
            delay_s: 0.5,
            work: "sleep".into(),
            step: "partitioned".into(),
            cluster: "threads".into(),
            workload: "votes".into(),
            keys: "letters".into(),
            wall_s,
            ideal_s: 26.0 / workers as f64,
            limit: Limit::Workers,
            even_spread_ideal_s: 26.0 / workers as f64,
            busiest_worker_s: 26.0 / workers as f64,
            overhead_pct: overhead_pct(wall_s, 26.0 / workers as f64),
            speedup: None,
            efficiency: None,
            vs_sequential: None,
            items_per_s: 52.0 / wall_s,
            mb_per_s: 0.0,
            latency_s: Recorder::new().summary(),
            work_s: Recorder::new().summary(),
            per_worker: vec![52 / workers as u64; workers],
            delivered: 52,
            lost: 0,
            duplicates: 0,
            rejected: 0,
            state_ok: None,
            state: String::new(),
            interrupted: false,
            pipeline: None,
        }
    }

    fn report(runs: Vec<RunRecord>) -> BenchReport {
        BenchReport {
            schema: SCHEMA.into(),
            plumbline_version: "test".into(),
            command: vec![],
            preset: "alphabet".into(),
            seed: Some(0),
            host: Host {
                cores: 2,
                os: "linux".into(),
                arch: "x86_64".into(),
                hostname: None,
                memory_bytes: None,
                kernel: None,
            },
            runs,
        }
    }

    #[test]
    fn speedup_is_against_the_one_worker_run_of_the_same_config() {
        let mut other = run(2, 10.0);
        other.items = 100;
        let mut seq = run(1, 20.0);
        seq.step = "sequential".into();
        let mut runs = vec![run(1, 26.0), run(2, 13.0), other, seq];
        fill_ratios(&mut runs);
        assert_eq!(runs[0].speedup, Some(1.0));
        assert_eq!(runs[1].speedup, Some(2.0));
        assert_eq!(runs[1].efficiency, Some(1.0));
        assert_eq!(runs[2].speedup, None, "no 1-worker run with 100 items");
        assert_eq!(runs[3].speedup, Some(1.0), "the loop is its own baseline");
        assert!((runs[1].vs_sequential.unwrap() - 20.0 / 13.0).abs() < 1e-9);
        assert_eq!(runs[2].vs_sequential, None);
    }

    #[test]
    fn overhead_is_relative_to_the_ideal() {
        assert!((overhead_pct(13.013, 13.0).unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(overhead_pct(1.0, 0.0), None);
        assert_eq!(overhead_pct(1.0, f64::NAN), None);
    }

    #[test]
    fn json_round_trips() {
        // The documented field names are pinned end to end in crates/cli/tests/bench.rs.
        let report = report(vec![run(2, 13.01)]);
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(BenchReport::parse(json.as_bytes()).unwrap(), report);
    }

    #[test]
    fn another_schema_is_refused_by_its_version() {
        let mut doc = serde_json::to_value(report(vec![run(1, 26.0)])).unwrap();
        doc["schema"] = "plumbline.run/9".into();
        let e = BenchReport::parse(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "schema plumbline.run/9; this plumbline reads plumbline.run/2"
        );
        doc.as_object_mut().unwrap().remove("schema");
        let e = BenchReport::parse(doc.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("plumbline.run/1"), "{e}");
        // A document of this schema missing a field is named as invalid, not as another version.
        let mut doc = serde_json::to_value(report(vec![run(1, 26.0)])).unwrap();
        doc["runs"][0].as_object_mut().unwrap().remove("wall_s");
        let e = BenchReport::parse(doc.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("missing field `wall_s`"), "{e}");
    }

    #[test]
    fn pipeline_runs_compare_only_with_runs_of_as_many_threads_per_worker() {
        let piped = |workers: usize, threads: u32, wall_s: f64| {
            let mut r = run(workers, wall_s);
            r.cluster = "pipeline".into();
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
            runs[2].speedup,
            Some(2.0),
            "against 1 x 1 thread, not 1 x 10"
        );
    }

    #[test]
    fn table_names_the_key_distribution_limit() {
        let mut hot = run(2, 26.0);
        hot.per_worker = vec![52, 0];
        hot.limit = Limit::KeyDistribution;
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
