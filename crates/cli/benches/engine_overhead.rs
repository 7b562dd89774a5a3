//! Benchmark: what each engine's plumbing costs over the ideal, issue 14's "the engines cost no
//! more" measured in one run.
//!
//! `cargo bench -p plumbline --bench engine_overhead [-- ENGINE…]` runs the real binary once:
//! `plumbline bench` at 10 ms × 1000 balanced sleep items on 1, 2 and 10 workers, on every
//! engine named (default: threads, processes, pipeline), and prints per run the wall time, the
//! ideal, the overhead and the ratio wall ÷ ideal beside the target, ≤ 0.25 % over the ideal.
//! It reads the run record `bench --json` writes (the one type every engine's runs share), so
//! it measures nothing itself and judges nothing but that target. Exit 1 when a run misses it
//! or failed, so a script can gate on it. Run it on a quiet machine: on this 2-core VM shared
//! with builds (load 1–10) every engine measured 0.2–5 %, whatever the code.

use std::process::{Command, ExitCode};

use plumbline_measure::record::Record;

const PLUMBLINE: &str = env!("CARGO_BIN_EXE_plumbline");
/// Overhead allowed over the ideal, in percent.
const TARGET_PCT: f64 = 0.25;

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
            &engines,
        ])
        .args(["--no-report", "--quiet", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("plumbline runs");
    let text = std::fs::read(&json).expect("bench --json wrote its record");
    let _ = std::fs::remove_file(&json);
    let report = Record::parse(&text).expect("a run record of this build's schema");
    println!(
        "bench: 1000 x 10 ms balanced sleep items, one run; target: overhead <= {TARGET_PCT} %"
    );
    println!(
        "{:<10} {:>7} {:>9} {:>9} {:>9} {:>12} {:>10}  verdict",
        "engine", "workers", "wall", "ideal", "overhead", "wall/ideal", "target"
    );
    let mut missed = !status.success();
    for run in &report.runs {
        let ideal_s = run.ideal_s.unwrap_or(f64::NAN);
        let ratio = run.wall_s / ideal_s;
        let overhead = run.overhead_pct.unwrap_or(f64::NAN);
        let ok = overhead <= TARGET_PCT && run.lost == 0 && run.duplicates == 0;
        missed |= !ok;
        let engine = run.bench.as_ref().map_or("?", |b| b.cluster.as_str());
        println!(
            "{:<10} {:>7} {:>8.4}s {:>8.4}s {:>8.2} % {:>12.5} {:>10}  {}",
            engine,
            run.workers,
            run.wall_s,
            ideal_s,
            overhead,
            ratio,
            format!("<= {:.5}", 1.0 + TARGET_PCT / 100.0),
            if ok { "ok" } else { "MISSED" },
        );
    }
    if missed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
