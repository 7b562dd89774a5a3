//! `plumbline bench` end to end, on scaled-down presets. Bounds are generous: these tests check
//! behaviour (who limits what, state, losses), and the benchmarks themselves measure speed.

mod common;

use common::{assert_fails, bench_json, exclusive, plumbline, scratch, stderr, stdout};
use serde_json::Value;

fn runs(report: &Value) -> &Vec<Value> {
    report["runs"].as_array().unwrap()
}

#[test]
fn alphabet_halves_on_two_workers_and_every_letter_ends_at_three() {
    let report = bench_json("alphabet", &["--preset", "alphabet", "--delay", "20ms"]);
    let runs = runs(&report);
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["bench"]["state_ok"], true, "{}", run["bench"]["state"]);
        assert!(run["bench"]["state"].as_str().unwrap().contains("z=>3"));
        assert_eq!(run["lost"], 0);
        assert_eq!(run["duplicates"], 0);
    }
    assert_eq!(runs[1]["per_worker"], serde_json::json!([26, 26]));
    let speedup = runs[1]["bench"]["speedup"].as_f64().unwrap();
    assert!(speedup > 1.6, "2 workers gave only {speedup:.2}x");
    assert_eq!(runs[1]["ideal_s"].as_f64().unwrap(), 0.52);
}

#[test]
fn alphabet_hot_cannot_scale_and_says_the_keys_are_why() {
    let _cpu = exclusive();
    let path = scratch("hot-table");
    let json = path.join("hot.json");
    let out = plumbline(&[
        "bench",
        "--quiet",
        "--preset",
        "alphabet-hot",
        "--delay",
        "10ms",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("limited by the key distribution, not the engine"),
        "{}",
        stdout(&out)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let two = &runs(&report)[1];
    assert_eq!(two["bench"]["limit"], "key-distribution");
    assert_eq!(two["per_worker"], serde_json::json!([52, 0]));
    assert_eq!(
        two["ideal_s"].as_f64().unwrap(),
        0.52,
        "the ideal is the sequential time"
    );
    let speedup = two["bench"]["speedup"].as_f64().unwrap();
    assert!((0.8..1.25).contains(&speedup), "speedup {speedup:.2}");
}

#[test]
fn balanced_sleep_tasks_scale_with_workers() {
    let report = bench_json(
        "scaling",
        // 0.2 s on 10 workers at the least: a shorter run is at the mercy of one late wake-up
        // on a busy machine.
        &["--items", "400", "--delay", "5ms", "--workers", "1,2,10"],
    );
    let runs = runs(&report);
    let ideal: Vec<f64> = runs
        .iter()
        .map(|r| r["ideal_s"].as_f64().unwrap())
        .collect();
    assert_eq!(ideal, vec![2.0, 1.0, 0.2]);
    for run in runs {
        let overhead = run["overhead_pct"].as_f64().unwrap();
        assert!(
            overhead > -0.5 && overhead < 30.0,
            "overhead {overhead:.2}%"
        );
        assert_eq!(
            run["per_worker"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>(),
            400
        );
    }
    assert!(runs[2]["bench"]["speedup"].as_f64().unwrap() > 5.0);
}

#[test]
fn spin_on_more_workers_than_cores_is_judged_against_the_cores() {
    let report = bench_json(
        "spin",
        &[
            "--items",
            "48",
            "--delay",
            "5ms",
            "--work",
            "spin",
            "--workers",
            "16",
        ],
    );
    let cores = report["host"]["cores"].as_f64().unwrap();
    let run = &runs(&report)[0];
    if cores < 16.0 {
        assert_eq!(run["bench"]["limit"], "cores");
        let expected = 48.0 * 0.005 / cores;
        assert!((run["ideal_s"].as_f64().unwrap() - expected).abs() < 1e-9);
        // Spin burns CPU time, so the run cannot beat the cores' ideal by much.
        assert!(run["wall_s"].as_f64().unwrap() > expected * 0.9, "{run}");
    }
}

#[test]
fn zero_delay_throughput_is_measured_against_the_plain_loop() {
    let report = bench_json(
        "throughput",
        &["--preset", "throughput", "--items", "20000"],
    );
    let runs = runs(&report);
    assert_eq!(runs.len(), 5);
    assert_eq!(runs[0]["bench"]["step"], "sequential");
    for run in runs {
        assert!(run["achieved_per_s"].as_f64().unwrap() > 1000.0);
        assert!(run["bench"]["vs_sequential"].as_f64().is_some());
        assert_eq!(run["overhead_pct"], Value::Null, "no ideal with zero delay");
        assert_eq!(run["lost"], 0);
    }
}

#[test]
fn json_has_the_documented_shape() {
    let report = bench_json(
        "shape",
        &["--preset", "sequential", "--items", "5", "--delay", "1ms"],
    );
    assert!(report["host"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(report["command"], "bench");
    let run = &runs(&report)[0];
    for key in [
        "workers",
        "items",
        "sent",
        "delivered",
        "wall_s",
        "ideal_s",
        "overhead_pct",
        "target_per_s",
        "achieved_per_s",
        "per_worker",
    ] {
        assert!(run.get(key).is_some(), "missing {key}");
    }
    for key in [
        "delay_s",
        "work",
        "step",
        "speedup",
        "efficiency",
        "mb_per_s",
    ] {
        assert!(run["bench"].get(key).is_some(), "missing bench.{key}");
    }
    for key in ["p50", "p99", "max"] {
        assert!(
            run["latency_s"][key].as_f64().is_some(),
            "missing latency_s.{key}"
        );
    }
    assert_eq!(run["bench"]["delay_s"].as_f64(), Some(0.001));
}

#[test]
fn bad_flags_are_named_and_exit_non_zero() {
    let cases: [(&[&str], &str); 11] = [
        (
            &["bench", "--items", "0"],
            "--items 0: a run needs at least 1 item",
        ),
        (
            &["bench", "--size", "100000000000"],
            "--size 100000000000 exceeds the",
        ),
        (
            &["bench", "--capacity", "200000000"],
            "--capacity 200000000: a queue holds between",
        ),
        (&["bench", "--preset", "/dev/zero"], "is not a regular file"),
        (
            &[
                "bench",
                "--workers",
                "4",
                "--step",
                "partitioned",
                "--capacity",
                "1000",
                "--size",
                "1000000",
            ],
            "lower --capacity",
        ),
        (
            &["bench", "--workers", "0"],
            "--workers 0: a run needs at least 1 worker",
        ),
        (&["bench", "--delay", "10"], "'10' is not a duration"),
        (&["bench", "--keys", "zipf:-1"], "zipf"),
        (&["bench", "--preset", "nope"], "no preset 'nope'"),
        (&["bench", "--work", "nap"], "'nap' is not a work model"),
        (
            &["bench", "--preset", "alphabet", "--keys", "hot:0.9"],
            "votes take their keys from --letters",
        ),
    ];
    for (args, message) in cases {
        let out = plumbline(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?} panicked");
    }
}

#[test]
fn a_preset_file_with_an_unknown_field_is_refused() {
    let path_dir = scratch("preset");
    let path = path_dir.join("mine.toml");
    std::fs::write(&path, "items = [10]\nwokers = [2]\n").unwrap();
    let out = plumbline(&["bench", "--preset", path.to_str().unwrap()]);
    assert_fails(&out, 1, "wokers");
}

#[test]
fn ctrl_c_stops_cleanly_and_reports_what_ran() {
    let _cpu = exclusive();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args([
            "bench",
            "--quiet",
            "--items",
            "100000",
            "--delay",
            "1ms",
            "--workers",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("interrupted by Ctrl-C after"), "{text}");
    assert!(
        !text.contains("items lost"),
        "an interrupt must not lose accepted items: {text}"
    );
}

#[test]
fn bench_on_worker_processes_matches_threads() {
    let report = bench_json(
        "processes",
        &[
            "--preset",
            "alphabet",
            "--delay",
            "20ms",
            "--cluster",
            "threads,processes",
        ],
    );
    let runs = runs(&report);
    assert_eq!(runs.len(), 4);
    for run in &runs[2..] {
        assert_eq!(run["bench"]["cluster"], "processes");
        assert_eq!(run["bench"]["state_ok"], true, "{}", run["bench"]["state"]);
        assert_eq!(run["lost"], 0);
    }
    assert_eq!(runs[3]["per_worker"], serde_json::json!([26, 26]));
    let speedup = runs[3]["bench"]["speedup"].as_f64().unwrap();
    assert!(speedup > 1.6, "2 worker processes gave only {speedup:.2}x");
}
