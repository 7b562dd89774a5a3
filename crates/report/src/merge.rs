//! `plumbline merge`: report folders from several hosts (senders, receivers, workers of one
//! experiment) as one report document (issue 17).
//!
//! Every host's rows are kept, labelled with the host; rows that share a label across hosts
//! (each receiver's `receive`, each sender's `send`) are also merged into one `all hosts` row:
//! counts summed, latency histograms merged exactly (HDR histograms add, so the merged p99 is
//! the p99 of every sample, never an average of p99s), the wall time the longest. Timelines
//! are aligned on each host's wall clock (its `started_at`) to the second and summed per
//! second. This module reads and writes nothing; it does not correct clocks (a host whose
//! clock is off shifts its timeline by as much: see the clock section of its `receive`).

use std::collections::BTreeMap;

use plumbline_measure::{Recorder, Tick};

use crate::doc::{Meta, Run, RunDoc, FORMAT};

/// One host's document and the name its rows carry (its hostname, or its folder's name).
pub struct Part {
    pub name: String,
    pub doc: RunDoc,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("merge needs at least two reports, got {0}")]
    TooFew(usize),
    #[error("{name}: run '{run}' has a latency histogram that does not decode: {source}")]
    Histogram {
        name: String,
        run: String,
        source: plumbline_measure::recorder::HdrError,
    },
    #[error("{name}: started_at '{at}' is not an RFC 3339 time, so its timeline cannot be placed")]
    Time { name: String, at: String },
}

/// The label of a merged row.
pub const ALL_HOSTS: &str = "all hosts";

/// The parts as one document: every part's rows (`NAME: label`), then one merged row per
/// label two or more parts share, and the timelines summed second by second on wall-clock
/// time. `command` is the merge's own command line.
pub fn merge(parts: &[Part], command: Vec<String>) -> Result<RunDoc, MergeError> {
    if parts.len() < 2 {
        return Err(MergeError::TooFew(parts.len()));
    }
    let mut runs = Vec::new();
    for part in parts {
        runs.extend(part.doc.runs.iter().map(|r| Run {
            label: format!("{}: {}", part.name, r.label),
            group: format!("{} ({})", r.group, part.name),
            ..r.clone()
        }));
    }
    // Labels in the order they first appear, each with its rows across parts.
    let mut shared: Vec<(&str, Vec<(&str, &Run)>)> = Vec::new();
    for part in parts {
        for run in &part.doc.runs {
            match shared.iter_mut().find(|(label, _)| *label == run.label) {
                Some((_, rows)) => rows.push((&part.name, run)),
                None => shared.push((&run.label, vec![(&part.name, run)])),
            }
        }
    }
    for (label, rows) in shared.iter().filter(|(_, rows)| rows.len() > 1) {
        runs.push(merged_row(label, rows)?);
    }
    let starts = parts
        .iter()
        .map(start_unix_s)
        .collect::<Result<Vec<_>, _>>()?;
    let first = starts.iter().copied().fold(f64::INFINITY, f64::min);
    let ended_at = parts
        .iter()
        .map(|p| p.doc.meta.ended_at.clone())
        .max()
        .unwrap_or_default();
    let meta = &parts[0].doc.meta;
    Ok(RunDoc {
        format: FORMAT.into(),
        meta: Meta {
            kind: "merge".into(),
            command,
            resolved: serde_json::json!({
                "hosts": parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                "kinds": parts.iter().map(|p| p.doc.meta.kind.as_str()).collect::<Vec<_>>(),
                "started_unix_s": starts,
            }),
            seeds: parts
                .iter()
                .flat_map(|p| p.doc.meta.seeds.clone())
                .collect(),
            version: meta.version.clone(),
            git_commit: meta.git_commit.clone(),
            host: meta.host.clone(),
            started_at: humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(first),
            )
            .to_string(),
            ended_at,
        },
        runs,
        timeline: timeline(parts, &starts, first),
        timeline_dropped: 0,
        detail: serde_json::json!({
            "hosts": parts
                .iter()
                .map(|p| serde_json::json!({ "name": p.name, "meta": p.doc.meta, "detail": p.doc.detail }))
                .collect::<Vec<_>>(),
        }),
        capacity: None,
    })
}

/// The rows of one label across hosts as one: counts and rates summed, latency merged.
fn merged_row(label: &str, rows: &[(&str, &Run)]) -> Result<Run, MergeError> {
    let mut latency: Option<Recorder> = None;
    for (name, run) in rows {
        if let Some(l) = &run.latency_s {
            let recorder = l.recorder().map_err(|source| MergeError::Histogram {
                name: name.to_string(),
                run: run.label.clone(),
                source,
            })?;
            latency.get_or_insert_with(Recorder::new).merge(&recorder);
        }
    }
    let sum = |f: fn(&Run) -> u64| rows.iter().map(|(_, r)| f(r)).sum::<u64>();
    Ok(Run {
        label: format!("{ALL_HOSTS}: {label}"),
        group: format!("{} ({ALL_HOSTS})", rows[0].1.group),
        workers: rows.iter().map(|(_, r)| r.workers).sum(),
        items: sum(|r| r.items),
        wall_s: rows.iter().map(|(_, r)| r.wall_s).fold(0.0, f64::max),
        // Each host's ideal is its own part's: no one ideal covers them all.
        ideal_s: None,
        overhead_pct: None,
        speedup: None,
        ideal_speedup: None,
        items_per_s: rows.iter().map(|(_, r)| r.items_per_s).sum(),
        lost: sum(|r| r.lost),
        duplicates: sum(|r| r.duplicates),
        latency_s: latency.map(|r| r.summary()),
        // Each host's intervals start at its own second: its own row keeps them.
        latency_intervals: Vec::new(),
        per_worker: rows
            .iter()
            .flat_map(|(_, r)| r.per_worker.iter().copied())
            .collect(),
        capacity_per_s: None,
    })
}

/// When a part started, UNIX seconds, from its `started_at`.
fn start_unix_s(part: &Part) -> Result<f64, MergeError> {
    let at = &part.doc.meta.started_at;
    humantime::parse_rfc3339(at)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .ok_or_else(|| MergeError::Time {
            name: part.name.clone(),
            at: at.clone(),
        })
}

/// Every part's ticks placed on one clock (seconds since the first part started) and summed
/// per whole second: rates, late sends and in-flight add up; a second's latency percentiles
/// cannot be merged from percentiles, so the worst host's stands.
fn timeline(parts: &[Part], starts: &[f64], first: f64) -> Vec<Tick> {
    let mut seconds: BTreeMap<i64, Tick> = BTreeMap::new();
    for (part, start) in parts.iter().zip(starts) {
        for tick in &part.doc.timeline {
            let t = (start - first + tick.t_s).round() as i64;
            let merged = seconds.entry(t).or_insert_with(|| Tick {
                t_s: t as f64,
                target_per_s: None,
                in_per_s: 0.0,
                out_per_s: 0.0,
                late: 0,
                in_flight: 0,
                p50_s: None,
                p99_s: None,
            });
            merged.target_per_s = match (merged.target_per_s, tick.target_per_s) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            merged.in_per_s += tick.in_per_s;
            merged.out_per_s += tick.out_per_s;
            merged.late += tick.late;
            merged.in_flight += tick.in_flight;
            merged.p50_s = max_of(merged.p50_s, tick.p50_s);
            merged.p99_s = max_of(merged.p99_s, tick.p99_s);
        }
    }
    seconds.into_values().collect()
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_measure::report::Host;

    fn part(name: &str, started_at: &str, latencies_ms: &[u64], ticks: &[(f64, f64)]) -> Part {
        let mut recorder = Recorder::new();
        for &ms in latencies_ms {
            recorder.record_ns(ms * 1_000_000);
        }
        let run = Run {
            label: "receive".into(),
            group: "receive from x".into(),
            workers: 1,
            items: latencies_ms.len() as u64,
            wall_s: 2.0,
            ideal_s: None,
            overhead_pct: None,
            speedup: None,
            ideal_speedup: None,
            items_per_s: latencies_ms.len() as f64 / 2.0,
            lost: 1,
            duplicates: 2,
            latency_s: Some(recorder.summary()),
            latency_intervals: Vec::new(),
            per_worker: vec![latencies_ms.len() as u64],
            capacity_per_s: None,
        };
        Part {
            name: name.into(),
            doc: RunDoc {
                format: FORMAT.into(),
                meta: Meta {
                    kind: "receive".into(),
                    command: vec![],
                    resolved: serde_json::Value::Null,
                    seeds: vec![],
                    version: "0".into(),
                    git_commit: "x".into(),
                    host: Host::current(),
                    started_at: started_at.into(),
                    ended_at: started_at.into(),
                },
                runs: vec![run],
                timeline: ticks
                    .iter()
                    .map(|&(t_s, out)| Tick {
                        t_s,
                        target_per_s: None,
                        in_per_s: 0.0,
                        out_per_s: out,
                        late: 0,
                        in_flight: 1,
                        p50_s: None,
                        p99_s: None,
                    })
                    .collect(),
                timeline_dropped: 0,
                detail: serde_json::Value::Null,
                capacity: None,
            },
        }
    }

    #[test]
    fn the_merged_p99_is_the_p99_of_every_sample_and_counts_add_up() {
        // One fast host, one slow: the average of their p99s would be 50 ms; the samples say
        // otherwise.
        let fast: Vec<u64> = (1..=990).map(|i| 1 + i % 5).collect();
        let slow: Vec<u64> = vec![100; 10];
        let parts = [
            part("a", "2026-12-04T10:00:00.000Z", &fast, &[]),
            part("b", "2026-12-04T10:00:00.000Z", &slow, &[]),
            part("c", "2026-12-04T10:00:00.000Z", &fast, &[]),
        ];
        let doc = merge(&parts, vec!["merge".into()]).unwrap();
        assert_eq!(doc.runs.len(), 4, "three hosts' rows and the merged one");
        assert_eq!(doc.runs[1].label, "b: receive");
        let all = &doc.runs[3];
        assert_eq!(all.label, "all hosts: receive");
        let mut direct = Recorder::new();
        for p in &parts {
            direct.merge(
                &p.doc.runs[0]
                    .latency_s
                    .as_ref()
                    .unwrap()
                    .recorder()
                    .unwrap(),
            );
        }
        let latency = all.latency_s.as_ref().unwrap();
        assert_eq!(latency.count, 1990);
        assert_eq!(latency.p99, direct.summary().p99);
        assert!(latency.p99 < 0.01, "p99 {} is a fast sample", latency.p99);
        assert_eq!((all.items, all.lost, all.duplicates), (1990, 3, 6));
        assert_eq!(all.per_worker, vec![990, 10, 990]);
    }

    #[test]
    fn timelines_line_up_on_wall_clock_time() {
        let parts = [
            part(
                "a",
                "2026-12-04T10:00:00.000Z",
                &[1],
                &[(1.0, 100.0), (2.0, 100.0)],
            ),
            // Started 1 s later: its first second is a's second.
            part(
                "b",
                "2026-12-04T10:00:01.000Z",
                &[1],
                &[(1.0, 50.0), (2.0, 50.0)],
            ),
        ];
        let doc = merge(&parts, vec![]).unwrap();
        let out: Vec<(f64, f64)> = doc.timeline.iter().map(|t| (t.t_s, t.out_per_s)).collect();
        assert_eq!(out, [(1.0, 100.0), (2.0, 150.0), (3.0, 50.0)]);
        assert_eq!(doc.timeline[1].in_flight, 2);
        assert_eq!(doc.meta.started_at, "2026-12-04T10:00:00.000Z");
    }

    #[test]
    fn one_report_or_an_unplaceable_one_is_refused_by_name() {
        let one = [part("a", "2026-12-04T10:00:00.000Z", &[1], &[])];
        assert!(matches!(merge(&one, vec![]), Err(MergeError::TooFew(1))));
        let parts = [
            part("a", "2026-12-04T10:00:00.000Z", &[1], &[]),
            part("b", "unknown", &[1], &[]),
        ];
        let e = merge(&parts, vec![]).unwrap_err().to_string();
        assert!(e.starts_with("b: started_at 'unknown'"), "{e}");
    }
}
