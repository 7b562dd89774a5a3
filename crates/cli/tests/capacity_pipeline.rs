//! `plumbline capacity --cluster pipeline` and `bench --cluster pipeline` end to end: the task
//! pipeline (distributor and collector in-process, `plumbline pipeline worker` processes) as an
//! engine, its tasks released open-loop on the trial's schedule.

mod common;

use std::time::{Duration, Instant};

use common::{assert_fails, exclusive, plumbline, scratch, stderr, stdout, Node};

#[test]
fn the_pipelines_capacity_grows_with_its_workers_near_the_ideal_and_loses_nothing() {
    let _cpu = exclusive();
    let json_dir = scratch("capacity-pipeline");
    let json = json_dir.join("capacity.json");
    let out = plumbline(&[
        "capacity",
        "--cluster",
        "pipeline",
        "--workers",
        "1,2",
        "--delay",
        "10ms",
        "--warmup",
        "500ms",
        "--window",
        "1500ms",
        "--no-report",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let points = report["capacity"]["curves"][0]["points"]
        .as_array()
        .unwrap();
    assert_eq!(points.len(), 2, "{report:#}");
    let mut capacities = Vec::new();
    for point in points {
        let workers = point["workers"].as_u64().unwrap();
        let vs_ideal = point["capacity_vs_ideal"].as_f64().unwrap();
        assert!(
            (0.5..=1.1).contains(&vs_ideal),
            "{workers} worker(s): capacity ÷ ideal {vs_ideal}: {point:#}"
        );
        for trial in common::trials(&report, point) {
            assert_eq!(trial["lost"], 0, "{workers} worker(s): {trial:#}");
        }
        capacities.push(point["capacity"].as_f64().unwrap());
    }
    assert!(
        capacities[1] > capacities[0],
        "2 workers {} /s not above 1 worker's {} /s",
        capacities[1],
        capacities[0]
    );
}

/// `bench` of 10 ms tasks on 2 pipeline workers, plus `extra`.
fn bench_on_2_workers<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "bench",
        "--quiet",
        "--no-report",
        "--cluster",
        "pipeline",
        "--delay",
        "10ms",
        "--workers",
        "2",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_paced_bench_on_the_pipeline_delivers_every_task_with_latency_from_its_release() {
    let _cpu = exclusive();
    let json_dir = scratch("bench-pipeline-engine");
    let json = json_dir.join("bench.json");
    // 100 tasks at 50/s on 2 workers: about 2 s, the workers idle half the time, so a task's
    // latency is its 10 ms plus the plumbing, not a queue.
    let out = plumbline(&bench_on_2_workers(&[
        "--items",
        "100",
        "--rate",
        "50/s",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &report["runs"][0];
    assert_eq!(run["items"], 100, "{run:#}");
    assert_eq!(run["delivered"], 100, "{run:#}");
    assert_eq!(run["lost"], 0, "{run:#}");
    let wall = run["wall_s"].as_f64().unwrap();
    assert!(
        (1.9..4.0).contains(&wall),
        "100 tasks released at 50/s took {wall} s: {run:#}"
    );
    let p50 = run["latency_s"]["p50"].as_f64().unwrap();
    assert!(
        (0.009..0.1).contains(&p50),
        "p50 latency {p50} s of a 10 ms task that never waits: {run:#}"
    );
    let per_worker: Vec<u64> = run["per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 100, "{run:#}");
    assert!(
        per_worker.iter().all(|&n| n >= 20),
        "both workers take tasks: {per_worker:?}"
    );
}

#[test]
fn the_pipeline_refuses_a_partitioned_step_before_it_starts() {
    let out = plumbline(&[
        "capacity",
        "--cluster",
        "pipeline",
        "--step",
        "partitioned",
        "--no-report",
    ]);
    assert_fails(&out, 1, "--cluster pipeline runs --step balanced only");
}

/// The pid of `parent`'s child whose command line holds every one of `words`, if it runs.
fn child_with(parent: u32, words: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The parent pid is the second field after the parenthesised command name.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read_to_string(entry.path().join("cmdline")).ok()?;
            let args: Vec<&str> = cmdline.split('\0').collect();
            (ppid == parent && words.iter().all(|w| args.contains(w))).then_some(pid)
        })
}

#[test]
fn a_pipeline_worker_killed_mid_run_fails_the_run_naming_it() {
    let _cpu = exclusive();
    // 600 tasks of 10 ms on 2 workers: 3 s, time enough to kill one.
    let mut bench = Node::spawn(&bench_on_2_workers(&["--items", "600"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let bench_pid = bench.child.id();
    let (w1, w2) = loop {
        let found = (
            child_with(bench_pid, &["worker", "w1"]),
            child_with(bench_pid, &["worker", "w2"]),
        );
        if let (Some(w1), Some(w2)) = found {
            break (w1, w2);
        }
        assert!(Instant::now() < deadline, "the workers did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-9", &w2.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(bench.exit_code(30), Some(1), "{}", bench.log());
    let log = bench.log();
    assert!(
        log.contains("pipeline worker w2 died mid-run"),
        "the error names the worker: {log}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{w1}")).exists(),
        "worker w1 outlived the run"
    );
}
