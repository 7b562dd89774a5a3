//! `--threshold` end to end: a run held to k6-style limits exits 0 when it keeps them, 99
//! naming each breached limit and the figure when it breaks one (its report written all the
//! same), and 1 only for an error; a limit that cannot be read, or that the command does not
//! record, is refused before anything runs.

mod common;

use common::{assert_fails, exclusive, plumbline, scratch, stderr};

/// A small bench (200 items of 1 ms on 2 threads) with `limits` as `--threshold`s.
fn bench(limits: &[&str]) -> std::process::Output {
    let _cpu = exclusive();
    let mut args = vec![
        "bench",
        "--items",
        "200",
        "--workers",
        "2",
        "--delay",
        "1ms",
        "--no-report",
        "-q",
    ];
    for limit in limits {
        args.extend(["--threshold", limit]);
    }
    plumbline(&args)
}

#[test]
fn a_run_that_keeps_its_limits_passes() {
    // 200 × 1 ms on 2 workers: ideal 0.1 s; nothing lost; latency well under 10 s.
    let out = bench(&["p99<10s", "lost<=0", "duplicates<=0", "overhead<400%"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_breached_limit_exits_99_naming_the_limit_and_the_figure() {
    let out = bench(&["p99<10s", "p99<1us", "wall<1us"]);
    assert_fails(
        &out,
        99,
        "breached: threshold p99<1us breached (2 workers): ",
    );
    let err = stderr(&out);
    assert!(err.contains("is not < 1.0µs"), "{err}");
    assert!(err.contains("threshold wall<1us"), "{err}");
    assert!(
        !err.contains("p99<10s"),
        "a kept limit is not reported: {err}"
    );
    assert!(!err.contains("error:"), "a breach is no error: {err}");
}

#[test]
fn a_report_is_written_before_the_limits_are_judged() {
    let scratch = scratch("threshold");
    let dir = scratch.join("report");
    let json = scratch.join("report.json");
    let _cpu = exclusive();
    let out = plumbline(&[
        "bench",
        "--items",
        "100",
        "--workers",
        "1",
        "--delay",
        "1ms",
        "-q",
        "--report",
        dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--threshold",
        "max<1ns",
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", stderr(&out));
    assert!(dir.join("run.json").is_file() && json.is_file());
}

#[test]
fn a_limit_that_cannot_be_read_or_is_not_recorded_is_refused_before_the_run() {
    let unreadable = plumbline(&["bench", "--threshold", "p98<1ms"]);
    assert_fails(&unreadable, 2, "'p98' is no metric");
    let unitless = plumbline(&["bench", "--threshold", "p99<20"]);
    assert_fails(&unitless, 2, "a time with its unit");
    let elsewhere = plumbline(&["bench", "--threshold", "capacity>0.9ideal", "--no-report"]);
    assert_fails(&elsewhere, 1, "only `capacity` measures a capacity");
    let trials = plumbline(&["capacity", "--threshold", "p99<1ms", "--no-report"]);
    assert_fails(&trials, 1, "--slo-p99");
}
