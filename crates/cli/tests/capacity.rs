//! `plumbline capacity` end to end on the threads and processes engines, with short trials.
//! Bounds are generous (a noisy 2-core machine): these check what the search reports and why,
//! while the closing figures come from full-length runs.

mod common;

use common::{assert_fails, exclusive, plumbline, scratch, stderr, trials};
use serde_json::Value;

/// Runs `capacity` with short trials and returns its JSON document and exit code.
fn capacity(name: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let json_dir = scratch(name);
    let json = json_dir.join("capacity.json");
    let mut args = vec![
        "capacity",
        "--quiet",
        "--no-report",
        "--warmup",
        "500ms",
        "--window",
        "1500ms",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = plumbline(&args);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON ({e}); stderr: {}", stderr(&out)));
    (out.status.code(), serde_json::from_str(&text).unwrap())
}

fn points(report: &Value) -> &Vec<Value> {
    report["capacity"]["curves"][0]["points"]
        .as_array()
        .unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn balanced_sleeps_sustain_about_their_ideal_rate_at_each_worker_count() {
    let _cpu = exclusive();
    let (code, report) = capacity("cap-threads", &["--workers", "1,2", "--delay", "10ms"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["schema"], "plumbline.run/3");
    assert_eq!(report["command"], "capacity");
    let points = points(&report);
    assert_eq!(points.len(), 2);
    for p in points {
        let ratio = f(&p["capacity_vs_ideal"]);
        assert!(
            (0.8..=1.05).contains(&ratio),
            "capacity ÷ ideal {ratio}: {p}"
        );
        assert_eq!(p["limited_by"], "workers", "{p}");
        for t in trials(&report, p) {
            assert_eq!(t["lost"], 0, "{t}");
            assert!(f(&t["achieved_per_s"]) > 0.9 * f(&t["target_per_s"]), "{t}");
        }
        // Every trial above the capacity failed, and the capacity itself passed.
        let capacity = f(&p["capacity"]);
        for t in trials(&report, p) {
            let passed = t["trial"]["verdict"] == "pass";
            assert_eq!(passed, f(&t["target_per_s"]) <= capacity, "{t}");
        }
    }
    assert!(f(&points[1]["capacity"]) > 1.6 * f(&points[0]["capacity"]));
}

#[test]
fn a_hot_key_keeps_the_partitioned_capacity_flat_and_names_the_keys() {
    let _cpu = exclusive();
    let (code, report) = capacity(
        "cap-hot",
        &[
            "--workload",
            "votes",
            "--letters",
            "a",
            "--step",
            "partitioned",
            "--delay",
            "10ms",
            "--workers",
            "1,2",
        ],
    );
    assert_eq!(code, Some(0), "{report}");
    let points = points(&report);
    let (one, two) = (f(&points[0]["capacity"]), f(&points[1]["capacity"]));
    assert!(
        two < 1.2 * one,
        "one key, yet 2 workers sustained {two}/s against {one}/s"
    );
    assert_eq!(points[1]["limited_by"], "keys", "{}", points[1]);
}

/// A rate no sender reaches (50 M/s of 1 KiB nonces) against work that costs nothing: the
/// trial judges the sender, so no capacity may come of it.
#[test]
fn a_sender_bound_trial_is_never_reported_as_capacity() {
    let _cpu = exclusive();
    let (code, report) = capacity(
        "cap-sender",
        &["--delay", "0", "--start", "50000000/s", "--workers", "1"],
    );
    assert_eq!(
        code,
        Some(1),
        "no capacity was found, so the run fails: {report}"
    );
    let p = &points(&report)[0];
    assert_eq!(p["capacity"], Value::Null, "{p}");
    assert_eq!(p["limited_by"], "sender");
    let trial = trials(&report, p)[0];
    assert_eq!(trial["trial"]["verdict"], "sender-bound", "{trial}");
    assert!(f(&trial["achieved_per_s"]) < 0.99 * 50e6);
    // Cut after its window: the trial did not wait for 100 M items.
    assert_eq!(trial["trial"]["cut"], true);
    assert!(f(&trial["wall_s"]) < 10.0, "{trial}");
}

#[test]
fn worker_processes_are_searched_like_threads() {
    let _cpu = exclusive();
    let (code, report) = capacity(
        "cap-processes",
        &[
            "--cluster",
            "processes",
            "--workers",
            "1,2",
            "--delay",
            "10ms",
        ],
    );
    assert_eq!(code, Some(0), "{report}");
    for p in points(&report) {
        let ratio = f(&p["capacity_vs_ideal"]);
        assert!(
            (0.7..=1.05).contains(&ratio),
            "capacity ÷ ideal {ratio}: {p}"
        );
        assert_eq!(p["engine"], format!("{} process(es)", p["workers"]));
    }
}

#[test]
fn loads_become_the_fewest_workers_that_sustain_them() {
    let _cpu = exclusive();
    let (_, report) = capacity(
        "cap-demand",
        &[
            "--workers",
            "1,2",
            "--delay",
            "10ms",
            "--loads",
            "50/s,150/s,1000/s",
        ],
    );
    let demand: Vec<Value> = report["capacity"]["demand"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["workers"].clone())
        .collect();
    assert_eq!(
        demand,
        [Value::from(1), Value::from(2), Value::Null],
        "{report}"
    );
}

#[test]
fn malformed_slos_and_loads_are_refused_by_name() {
    assert_fails(
        &plumbline(&["capacity", "--lag-slope", "fast"]),
        1,
        "--lag-slope",
    );
    assert_fails(
        &plumbline(&["capacity", "--loads", "lots"]),
        1,
        "--loads lots",
    );
    assert_fails(
        &plumbline(&["capacity", "--min-achieved", "150%"]),
        1,
        "--min-achieved",
    );
}

#[test]
fn compare_fails_a_capacity_drop_beyond_its_limit() {
    let _cpu = exclusive();
    let dir = scratch("cap-compare");
    let (base, new) = (dir.join("base"), dir.join("new"));
    let out = plumbline(&[
        "capacity",
        "--quiet",
        "--warmup",
        "300ms",
        "--window",
        "1s",
        "--workers",
        "1",
        "--report",
        base.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let same = plumbline(&["compare", base.to_str().unwrap(), base.to_str().unwrap()]);
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
    // The same report with its capacity 10 % lower.
    std::fs::create_dir_all(&new).unwrap();
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("run.json")).unwrap()).unwrap();
    let capacity = f(&doc["runs"][0]["capacity_per_s"]);
    doc["runs"][0]["capacity_per_s"] = (capacity * 0.9).into();
    std::fs::write(new.join("run.json"), doc.to_string()).unwrap();
    let worse = plumbline(&["compare", base.to_str().unwrap(), new.to_str().unwrap()]);
    assert_fails(&worse, 99, "capacity");
    let allowed = plumbline(&[
        "compare",
        base.to_str().unwrap(),
        new.to_str().unwrap(),
        "--max-capacity-drop",
        "15%",
    ]);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
}
