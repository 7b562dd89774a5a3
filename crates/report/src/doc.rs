//! `run.json`: the one document a report folder is rendered from, whatever kind of run made it.
//!
//! Every command's run record ([`Record`], what `--json` writes) maps onto [`Run`] rows here, in
//! [`rows`] (what the plots, `runs.csv` and `compare` read), and the folder keeps the record
//! whole under `detail`, so nothing it measured is lost and a report folder and a `--json` file
//! read alike. Latency histograms travel in HdrHistogram's
//! serialized form ([`LatencySummary::hdr`]), so runs from separate reports can be merged
//! exactly. This module does not measure or draw.

use std::collections::HashSet;
use std::path::Path;

use plumbline_measure::record::{CapacitySection, Record, RunRecord};
use plumbline_measure::report::Host;
use plumbline_measure::{LatencyInterval, LatencySummary, Tick};
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
    /// `latency_s` one second at a time (the `.hlog`); empty when the run has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_intervals: Vec<LatencyInterval>,
    /// Items each worker handled; empty when not known.
    #[serde(default)]
    pub per_worker: Vec<u64>,
    /// The highest rate the run's worker count sustained, items/s (`capacity` rows only):
    /// `compare` fails a drop beyond its limit.
    #[serde(default)]
    pub capacity_per_s: Option<f64>,
}

/// A record's runs as report rows. Capacity's rows are its curves' points (throughput =
/// capacity); every other command's are its runs, grouped by everything but the worker count.
pub fn rows(record: &Record) -> Vec<Run> {
    match &record.capacity {
        Some(capacity) => capacity_rows(capacity, &record.runs),
        None => run_rows(&record.runs),
    }
}

/// The group of a run (one line of a scaling curve) and, for runs that are not a bench's, its
/// label: `None` labels it "{group} on {workers}".
fn group(r: &RunRecord) -> (String, Option<String>) {
    if let Some(b) = &r.bench {
        let mut group = format!(
            "{} {} x {}s {} {} {} ({})",
            r.items.unwrap_or(0),
            b.workload,
            b.delay_s,
            b.work,
            b.step,
            b.cluster,
            b.keys
        );
        if let Some(threads) = r.threads_per_worker() {
            group.push_str(&format!(" x {threads} thread(s)"));
        }
        (group, None)
    } else if let Some(s) = &r.stream {
        let label = format!(
            "{} {} {} B #{}",
            s.stream,
            s.stream_method,
            s.data_size_bytes,
            s.repeat + 1
        );
        (format!("{} {}", s.stream, s.stream_method), Some(label))
    } else if let Some(s) = &r.send {
        (format!("send to {}", s.to), Some("send".into()))
    } else if let Some(s) = &r.receive {
        (format!("receive from {}", s.from), Some("receive".into()))
    } else if let Some(e) = &r.elastic {
        (
            format!("elastic on {}", e.cluster),
            Some(format!("{} ({})", e.schedule, e.leave)),
        )
    } else if let Some(t) = &r.trial {
        let rate = r.target_per_s.unwrap_or(0.0);
        let label = format!("{} on {} at {rate:.1}/s", t.curve, r.workers);
        (t.curve.clone(), Some(label))
    } else {
        ("run".into(), None)
    }
}

/// Runs as rows: the speedup the keys allow from the group's 1-worker ideal; a send's latency
/// is its lateness (send start − deadline), as it sees no results.
fn run_rows(records: &[RunRecord]) -> Vec<Run> {
    let mut labels = HashSet::new();
    records
        .iter()
        .map(|r| {
            let (group, label) = group(r);
            let one_worker_ideal = records
                .iter()
                .find(|b| b.workers == 1 && self::group(b).0 == group)
                .and_then(|b| b.ideal_s);
            let base = label.unwrap_or_else(|| format!("{group} on {}", r.workers));
            let mut label = base.clone();
            let mut n = 2;
            while !labels.insert(label.clone()) {
                label = format!("{base} #{n}");
                n += 1;
            }
            let latency = match &r.send {
                Some(send) => send.lateness_s.clone(),
                None => r.latency_s.clone(),
            };
            let ideal = r.ideal_s.filter(|&i| i > 0.0);
            Run {
                label,
                group,
                workers: r.workers,
                items: r.items.or(r.delivered).or(r.sent).unwrap_or(0),
                wall_s: r.wall_s,
                ideal_s: r.ideal_s,
                overhead_pct: r.overhead_pct,
                speedup: r.bench.as_ref().and_then(|b| b.speedup),
                ideal_speedup: one_worker_ideal.zip(ideal).map(|(one, i)| one / i),
                items_per_s: r.achieved_per_s,
                lost: r.lost,
                duplicates: r.duplicates,
                // A run that measured no latency (the pipeline's) shows none, not zeros.
                latency_s: Some(latency).filter(|l| l.count > 0),
                latency_intervals: r.latency_intervals.clone(),
                per_worker: r.per_worker.clone(),
                capacity_per_s: None,
            }
        })
        .collect()
}

/// Capacity's points as rows: one scaling group per curve, throughput = capacity, and speedup
/// = capacity ÷ the 1-worker capacity against the ideal's, so the report's scaling chart is
/// the scalability plot (with the key-distribution limit where the keys bound it).
fn capacity_rows(capacity: &CapacitySection, trials: &[RunRecord]) -> Vec<Run> {
    capacity
        .curves
        .iter()
        .flat_map(|curve| {
            let one = curve.points.iter().find(|p| p.workers == 1);
            let (one_capacity, one_ideal) =
                (one.and_then(|p| p.capacity), one.and_then(|p| p.ideal_rate));
            curve.points.iter().map(move |p| {
                let runs = || p.trials.iter().filter_map(|&i| trials.get(i));
                Run {
                    label: format!("{} on {}", curve.label, p.workers),
                    group: curve.label.clone(),
                    workers: p.workers,
                    items: p.trials.len() as u64,
                    wall_s: runs().map(|t| t.wall_s).sum(),
                    ideal_s: None,
                    overhead_pct: None,
                    speedup: p.capacity.zip(one_capacity).map(|(c, one)| c / one),
                    ideal_speedup: one_ideal.zip(p.ideal_rate).map(|(one, i)| i / one),
                    items_per_s: p.capacity.unwrap_or(0.0),
                    lost: runs().map(|t| t.lost).sum(),
                    duplicates: runs().map(|t| t.duplicates).sum(),
                    latency_s: None,
                    latency_intervals: Vec::new(),
                    per_worker: Vec::new(),
                    capacity_per_s: p.capacity,
                }
            })
        })
        .collect()
}

impl RunDoc {
    /// Any command's run record (`--json`) as a report document. The record does not hold the
    /// build's commit or the run's times: they read `unknown`.
    pub fn from_record(record: &Record) -> RunDoc {
        let unknown = || "unknown".to_string();
        RunDoc {
            format: FORMAT.into(),
            meta: Meta {
                kind: record.command.to_string(),
                command: record.command_line.clone(),
                resolved: serde_json::json!({ "preset": record.preset }),
                seeds: record.seed.into_iter().collect(),
                version: record.plumbline_version.clone(),
                git_commit: unknown(),
                host: record.host.clone(),
                started_at: unknown(),
                ended_at: unknown(),
            },
            runs: rows(record),
            timeline: Vec::new(),
            timeline_dropped: 0,
            detail: serde_json::to_value(record).unwrap_or_default(),
            capacity: None,
        }
    }

    /// Reads a report folder's `run.json`, or a file: a `run.json` itself or a run record
    /// (any command's `--json`), naming the file and what is wrong with it.
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
            let record = Record::from_value(value).map_err(|source| ReportError::Record {
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
    use plumbline_measure::record::{CapacityPoint, Command, SendSection};
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
                        latency_intervals: Vec::new(),
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

    fn record(command: Command, runs: Vec<RunRecord>) -> Record {
        Record {
            runs,
            ..Record::new(command, vec![], Host::current())
        }
    }

    #[test]
    fn a_send_row_shows_its_lateness_as_latency_and_a_receive_row_none_it_lacks() {
        let mut late = Recorder::new();
        late.record_ns(2_000_000);
        let send = RunRecord {
            send: Some(SendSection {
                to: "tcp".into(),
                bytes: 0,
                rate_error_pct: None,
                per_second: None,
                late_after_s: 0.001,
                late: 1,
                lateness_s: late.summary(),
                write_s: 0.0,
                stalls: 0,
                stall_s: 0.0,
                segments: vec![],
                peak_rss_mb: None,
                reconnects: 0,
                at_risk: 0,
                broker: None,
                split: None,
                late_start_s: None,
                clock: None,
            }),
            ..RunRecord::new(2, 1.0)
        }
        .with_ideal(Some(0.5));
        let rows = rows(&record(Command::Send, vec![send]));
        assert_eq!(
            (rows[0].label.as_str(), rows[0].group.as_str()),
            ("send", "send to tcp")
        );
        assert_eq!(rows[0].latency_s.as_ref().map(|l| l.count), Some(1));
        assert_eq!(rows[0].overhead_pct, Some(100.0));
        let bare = rows_of_one(RunRecord::new(1, 1.0));
        assert_eq!(bare.latency_s, None, "no latency measured, none shown");
    }

    fn rows_of_one(run: RunRecord) -> Run {
        rows(&record(Command::Receive, vec![run])).remove(0)
    }

    #[test]
    fn capacity_rows_are_its_points_with_their_trials_summed() {
        let trial = |lost| RunRecord {
            lost,
            ..RunRecord::new(1, 2.0)
        };
        let point = |workers, capacity, trials| CapacityPoint {
            workers,
            engine: "threads".into(),
            ideal_rate: Some(100.0 * workers as f64),
            ideal_limit: plumbline_measure::Limit::Workers,
            capacity,
            capacity_vs_ideal: None,
            efficiency: None,
            limited_by: "workers".into(),
            search: serde_json::Value::Null,
            trials,
        };
        let doc = Record {
            capacity: Some(CapacitySection {
                slo: serde_json::Value::Null,
                resolution: 0.02,
                warmup_s: 1.0,
                window_s: 3.0,
                curves: vec![plumbline_measure::record::CapacityCurve {
                    label: "c".into(),
                    points: vec![
                        point(1, Some(98.0), vec![0, 1]),
                        point(2, Some(196.0), vec![2]),
                    ],
                }],
                demand: vec![],
                error: None,
            }),
            ..record(Command::Capacity, vec![trial(0), trial(3), trial(1)])
        };
        let rows = rows(&doc);
        assert_eq!(rows.len(), 2, "one row per point, not per trial");
        assert_eq!(
            (rows[0].label.as_str(), rows[0].wall_s, rows[0].lost),
            ("c on 1", 4.0, 3)
        );
        assert_eq!(
            (rows[1].capacity_per_s, rows[1].speedup),
            (Some(196.0), Some(2.0))
        );
        assert_eq!(rows[1].ideal_speedup, Some(2.0));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
    }
}
