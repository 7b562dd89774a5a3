//! Benchmark: what each engine's plumbing costs over the ideal, issue 14's "the engines cost no
//! more" measured in one run.
//!
//! `cargo bench -p plumbline --bench engine_overhead [-- ENGINE…]` runs the real binary:
//! `plumbline bench` at 10 ms × 1000 balanced sleep items on 1, 2 and 10 workers, on every
//! engine named (default: threads, processes, pipeline), three times, and prints per engine and
//! worker count the median ratio wall ÷ ideal and the median, lowest and highest overhead
//! beside the target, a median ≤ 0.25 % over the ideal.
//! It reads the run record `bench --json` writes (the one type every engine's runs share), so
//! it measures nothing itself and judges nothing but that target. Exit 1 when a run misses it
//! or failed, so a script can gate on it. Run it on a quiet machine: on this 2-core VM shared
//! with builds (load 1–10) every engine measured 0.2–5 %, whatever the code.

use std::process::{Command, ExitCode};

use plumbline_measure::record::Record;

const PLUMBLINE: &str = env!("CARGO_BIN_EXE_plumbline");
/// Overhead allowed over the ideal, in percent.
const TARGET_PCT: f64 = 0.25;

/// Runs of the whole matrix; each point's verdict is on its median.
const RUNS: usize = 3;

/// An engine and a worker count, in the matrix's order.
type Point = (String, usize);
/// One run's wall ÷ ideal and overhead in percent.
type Sample = (f64, f64);

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; every other argument names an engine.
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let engines = if named.is_empty() {
        "threads,processes,pipeline".to_string()
    } else {
        named.join(",")
    };
    let mut missed = false;
    let mut points: Vec<(Point, Vec<Sample>)> = Vec::new();
    for _ in 0..RUNS {
        let Some(report) = run_once(&engines) else {
            missed = true;
            continue;
        };
        for run in &report.runs {
            let ideal_s = run.ideal_s.unwrap_or(f64::NAN);
            let overhead = run.overhead_pct.unwrap_or(f64::NAN);
            missed |= run.lost > 0 || run.duplicates > 0;
            let engine = run.bench.as_ref().map_or("?", |b| b.cluster.as_str());
            let key = (engine.to_string(), run.workers);
            let sample = (run.wall_s / ideal_s, overhead);
            match points.iter_mut().find(|(k, _)| *k == key) {
                Some((_, samples)) => samples.push(sample),
                None => points.push((key, vec![sample])),
            }
        }
    }
    println!(
        "bench: 1000 x 10 ms balanced sleep items, {RUNS} runs; target: median overhead <= {TARGET_PCT} %"
    );
    println!(
        "{:<10} {:>7} {:>12} {:>10} {:>10} {:>10} {:>10}  verdict",
        "engine", "workers", "wall/ideal", "median", "min", "max", "target"
    );
    for ((engine, workers), mut samples) in points {
        samples.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (ratio, median) = samples[samples.len() / 2];
        let ok = median <= TARGET_PCT;
        missed |= !ok;
        println!(
            "{:<10} {:>7} {:>12.5} {:>8.2} % {:>8.2} % {:>8.2} % {:>10}  {}",
            engine,
            workers,
            ratio,
            median,
            samples[0].1,
            samples[samples.len() - 1].1,
            format!("<= {TARGET_PCT} %"),
            if ok { "ok" } else { "MISSED" },
        );
    }
    if missed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One `plumbline bench` over the matrix; `None` (said on stderr) if it failed.
fn run_once(engines: &str) -> Option<Record> {
    let json = std::env::temp_dir().join(format!("plumbline-overhead-{}.json", std::process::id()));
    let status = Command::new(PLUMBLINE)
        .args([
            "bench",
            "--items",
            "1000",
            "--delay",
            "10ms",
            "--workers",
            "1,2,10",
        ])
        .args([
            "--work",
            "sleep",
            "--step",
            "balanced",
            "--cluster",
            engines,
        ])
        .args(["--no-report", "--quiet", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("plumbline runs");
    let text = std::fs::read(&json).ok();
    let _ = std::fs::remove_file(&json);
    match (status.success(), text) {
        (true, Some(text)) => match Record::parse(&text) {
            Ok(record) => Some(record),
            Err(e) => {
                eprintln!("bench --json wrote no run record of this build's schema: {e}");
                None
            }
        },
        _ => {
            eprintln!("plumbline bench failed ({status})");
            None
        }
    }
}
