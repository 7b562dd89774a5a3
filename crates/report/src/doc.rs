//! `run.json`: the one document a report folder is rendered from, whatever kind of run made it.
//!
//! Every command maps its own figures onto [`Run`] rows (what the plots, `runs.csv` and
//! `compare` read) and keeps its full report under `detail`, so nothing it measured is lost.
//! A bench's run record (`bench --json`, [`BenchReport`]) maps onto rows here, in [`rows`], so a
//! report folder and a `--json` file read alike. Latency histograms travel in HdrHistogram's
//! serialized form ([`LatencySummary::hdr`]), so runs from separate reports can be merged
//! exactly. This module does not measure or draw.

use std::collections::HashSet;
use std::path::Path;

use plumbline_measure::report::{BenchReport, Host, RunRecord};
use plumbline_measure::{LatencySummary, Tick};
use serde::{Deserialize, Serialize};

use crate::capacity::CapacityCharts;
use crate::ReportError;

/// The largest `run.json` read (a day's timeline and thousands of runs fit in a few MB).
pub const MAX_RUN_JSON: u64 = 256 << 20;

/// What `format` says in every `run.json` this version writes.
pub const FORMAT: &str = "plumbline-report/1";

/// Everything a report folder shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunDoc {
    /// [`FORMAT`]; another value is refused rather than misread.
    pub format: String,
    pub meta: Meta,
    pub runs: Vec<Run>,
    /// One tick per second of the command (rates, late sends, in-flight, latency).
    #[serde(default)]
    pub timeline: Vec<Tick>,
    /// Ticks dropped from the start of a very long timeline.
    #[serde(default)]
    pub timeline_dropped: u64,
    /// The command's own report (`bench --json`, `send --json`, …), unabridged.
    #[serde(default)]
    pub detail: serde_json::Value,
    /// `capacity` only: what its demand and per-trial lag charts draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityCharts>,
}

/// How to reproduce the run, and where and when it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// `bench`, `send`, `receive`, `stream`, `worker`, …
    pub kind: String,
    /// The exact command line.
    pub command: Vec<String>,
    /// The preset or plan with every value resolved (defaults and flags applied).
    #[serde(default)]
    pub resolved: serde_json::Value,
    /// The seeds that made the load; empty when the load was not random.
    #[serde(default)]
    pub seeds: Vec<u64>,
    pub version: String,
    /// The commit HEAD pointed at when the binary was built (uncommitted edits are not
    /// reflected), or "unknown" outside a git checkout.
    pub git_commit: String,
    pub host: Host,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: String,
}

/// Now, as RFC 3339 UTC to the millisecond.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// One run of a report: the figures every kind of run shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Unique within a report; `compare` matches runs of two reports by it.
    pub label: String,
    /// Runs of one group differ only in their worker count: one line of the scaling curve.
    pub group: String,
    pub workers: usize,
    pub items: u64,
    pub wall_s: f64,
    /// What the run would take with zero overhead; `None` when there is no ideal (open load).
    pub ideal_s: Option<f64>,
    pub overhead_pct: Option<f64>,
    /// The group's 1-worker wall time ÷ this wall time.
    pub speedup: Option<f64>,
    /// The speedup the key distribution (and cores) allow: 1-worker ideal ÷ this ideal.
    pub ideal_speedup: Option<f64>,
    pub items_per_s: f64,
    pub lost: u64,
    pub duplicates: u64,
    /// Latency as the command defines it (intended send → result for runs of items).
    pub latency_s: Option<LatencySummary>,
    /// Items each worker handled; empty when not known.
    #[serde(default)]
    pub per_worker: Vec<u64>,
    /// The highest rate the run's worker count sustained, items/s (`capacity` rows only):
    /// `compare` fails a drop beyond its limit.
    #[serde(default)]
    pub capacity_per_s: Option<f64>,
}

/// A bench's runs as report rows: one scaling-curve group per load (everything but the worker
/// count), and the speedup the keys allow from the group's 1-worker ideal.
pub fn rows(records: &[RunRecord]) -> Vec<Run> {
    let group = |r: &RunRecord| {
        let mut group = format!(
            "{} {} x {}s {} {} {} ({})",
            r.items, r.workload, r.delay_s, r.work, r.step, r.cluster, r.keys
        );
        if let Some(threads) = r.threads_per_worker() {
            group.push_str(&format!(" x {threads} thread(s)"));
        }
        group
    };
    let mut labels = HashSet::new();
    records
        .iter()
        .map(|r| {
            let one_worker_ideal = records
                .iter()
                .find(|b| b.workers == 1 && group(b) == group(r))
                .map(|b| b.ideal_s);
            let mut label = format!("{} on {}", group(r), r.workers);
            let mut n = 2;
            while !labels.insert(label.clone()) {
                label = format!("{} on {} #{n}", group(r), r.workers);
                n += 1;
            }
            Run {
                label,
                group: group(r),
                workers: r.workers,
                items: r.items,
                wall_s: r.wall_s,
                ideal_s: Some(r.ideal_s),
                overhead_pct: r.overhead_pct,
                speedup: r.speedup,
                ideal_speedup: one_worker_ideal
                    .filter(|_| r.ideal_s > 0.0)
                    .map(|one| one / r.ideal_s),
                items_per_s: r.items_per_s,
                lost: r.lost,
                duplicates: r.duplicates,
                // A run that measured no latency (the pipeline's) shows none, not zeros.
                latency_s: Some(r.latency_s.clone()).filter(|l| l.count > 0),
                per_worker: r.per_worker.clone(),
                capacity_per_s: None,
            }
        })
        .collect()
}

impl RunDoc {
    /// A `bench --json` run record as a report document. The record does not hold the build's
    /// commit or the run's times: they read `unknown`.
    pub fn from_record(record: &BenchReport) -> RunDoc {
        let unknown = || "unknown".to_string();
        RunDoc {
            format: FORMAT.into(),
            meta: Meta {
                kind: "bench".into(),
                command: record.command.clone(),
                resolved: serde_json::json!({ "preset": record.preset }),
                seeds: record.seed.into_iter().collect(),
                version: record.plumbline_version.clone(),
                git_commit: unknown(),
                host: record.host.clone(),
                started_at: unknown(),
                ended_at: unknown(),
            },
            runs: rows(&record.runs),
            timeline: Vec::new(),
            timeline_dropped: 0,
            detail: serde_json::to_value(record).unwrap_or_default(),
            capacity: None,
        }
    }

    /// Reads a report folder's `run.json`, or a file: a `run.json` itself or a run record
    /// (`bench --json`), naming the file and what is wrong with it.
    pub fn load(at: &Path) -> Result<RunDoc, ReportError> {
        if !at.exists() {
            return Err(ReportError::Missing(at.to_path_buf()));
        }
        if at.is_file() {
            return Self::load_file(at, |source| ReportError::Io {
                path: at.to_path_buf(),
                source,
            });
        }
        if !at.is_dir() {
            return Err(ReportError::NotFileOrFolder(at.to_path_buf()));
        }
        Self::load_file(&at.join("run.json"), |source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ReportError::NoRunJson(at.to_path_buf())
            } else {
                ReportError::Io {
                    path: at.join("run.json"),
                    source,
                }
            }
        })
    }

    fn load_file(
        path: &Path,
        io: impl Fn(std::io::Error) -> ReportError,
    ) -> Result<RunDoc, ReportError> {
        // Checked before reading, so a huge file is refused rather than loaded.
        let size = std::fs::metadata(path).map_err(&io)?.len();
        if size > MAX_RUN_JSON {
            return Err(ReportError::TooLarge {
                path: path.to_path_buf(),
                size,
            });
        }
        let text = std::fs::read(path).map_err(&io)?;
        Self::parse(&text).map_err(|e| e.at(path))
    }

    /// Decodes a `run.json`'s or a run record's bytes and checks what serde cannot: the format
    /// (or schema) and that every latency histogram decodes. Errors carry an empty path;
    /// [`RunDoc::load`] fills it in.
    pub fn parse(bytes: &[u8]) -> Result<RunDoc, ReportError> {
        let path = std::path::PathBuf::new();
        let corrupt = |source| ReportError::Corrupt {
            path: path.clone(),
            source,
        };
        // A report folder's document says its `format`; another object is taken for a run record.
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
        let doc: RunDoc = if value.get("format").is_some() || !value.is_object() {
            serde_json::from_value(value).map_err(corrupt)?
        } else {
            let record = BenchReport::from_value(value).map_err(|source| ReportError::Record {
                path: path.clone(),
                source,
            })?;
            Self::from_record(&record)
        };
        if doc.format != FORMAT {
            return Err(ReportError::Format {
                path,
                found: doc.format,
            });
        }
        doc.check_figures()
            .map_err(|(what, value)| ReportError::Implausible {
                path: path.clone(),
                what,
                value,
            })?;
        for run in &doc.runs {
            if let Some(latency) = &run.latency_s {
                latency
                    .recorder()
                    .map_err(|source| ReportError::Histogram {
                        path: path.clone(),
                        run: run.label.clone(),
                        source,
                    })?;
            }
        }
        Ok(doc)
    }

    /// The first figure no run could have measured (not finite, or beyond 10^15), which would
    /// give a plot an endless axis: `(which, value)`.
    fn check_figures(&self) -> Result<(), (String, f64)> {
        let mut figures: Vec<(String, f64)> = Vec::new();
        for run in &self.runs {
            let l = &run.label;
            let mut add = |name: &str, v: Option<f64>| {
                if let Some(v) = v {
                    figures.push((format!("run {l:?}: {name}"), v));
                }
            };
            add("wall_s", Some(run.wall_s));
            add("ideal_s", run.ideal_s);
            add("overhead_pct", run.overhead_pct);
            add("speedup", run.speedup);
            add("ideal_speedup", run.ideal_speedup);
            add("items_per_s", Some(run.items_per_s));
            if let Some(lat) = &run.latency_s {
                for (name, v) in [("p50", lat.p50), ("p99", lat.p99), ("max", lat.max)] {
                    add(name, Some(v));
                }
            }
        }
        for (i, t) in self.timeline.iter().enumerate() {
            let at = format!("timeline[{i}]");
            for (name, v) in [
                ("t_s", Some(t.t_s)),
                ("target_per_s", t.target_per_s),
                ("in_per_s", Some(t.in_per_s)),
                ("out_per_s", Some(t.out_per_s)),
            ] {
                if let Some(v) = v {
                    figures.push((format!("{at}: {name}"), v));
                }
            }
        }
        match figures
            .into_iter()
            .find(|(_, v)| !v.is_finite() || v.abs() > 1e15)
        {
            Some(bad) => Err(bad),
            None => Ok(()),
        }
    }

    /// The document as `run.json` holds it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a RunDoc always serializes")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use plumbline_measure::Recorder;

    /// A document with one run per `(label, overhead %, p99 seconds)`.
    pub(crate) fn doc_with(runs: &[(&str, f64, f64)]) -> RunDoc {
        RunDoc {
            format: FORMAT.into(),
            meta: Meta {
                kind: "bench".into(),
                command: vec!["plumbline".into(), "bench".into()],
                resolved: serde_json::json!({"items": 100}),
                seeds: vec![7],
                version: "0.1.0".into(),
                git_commit: "abc".into(),
                host: Host::current(),
                started_at: now_rfc3339(),
                ended_at: now_rfc3339(),
            },
            runs: runs
                .iter()
                .enumerate()
                .map(|(i, &(label, overhead, p99))| {
                    let mut rec = Recorder::new();
                    (0..99).for_each(|_| rec.record_ns((p99 * 0.5e9) as u64));
                    rec.record_ns((p99 * 1e9) as u64);
                    rec.record_ns((p99 * 1e9) as u64);
                    Run {
                        label: label.into(),
                        group: "g".into(),
                        workers: i + 1,
                        items: 100,
                        wall_s: 1.0 + overhead / 100.0,
                        ideal_s: Some(1.0),
                        overhead_pct: Some(overhead),
                        speedup: Some((i + 1) as f64 * 0.9),
                        ideal_speedup: Some((i + 1) as f64),
                        items_per_s: 100.0,
                        lost: 0,
                        duplicates: 0,
                        latency_s: Some(rec.summary()),
                        per_worker: vec![100 / (i as u64 + 1); i + 1],
                        capacity_per_s: None,
                    }
                })
                .collect(),
            timeline: Vec::new(),
            timeline_dropped: 0,
            detail: serde_json::Value::Null,
            capacity: None,
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
    }
}
