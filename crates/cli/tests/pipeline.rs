//! End to end: `plumbline pipeline` roles as real processes on loopback (issue 5, seed 001).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    exclusive, pipeline_distributor as distributor, pipeline_worker as worker, plumbline, scratch,
    stderr, Node, PipelineCollector as Collector,
};
use serde_json::Value;

/// What every test here starts with: a collector, and a distributor writing its report into
/// `dir`.
struct Run {
    collector: Collector,
    dist: Node,
    /// Where the distributor's workers connect.
    endpoint: String,
    report_at: PathBuf,
}

impl Run {
    fn start(dir: &Path, collector_args: &[&str], distributor_args: &[&str]) -> Self {
        let collector = Collector::start(collector_args);
        let report_at = dir.join("report.json");
        let (dist, endpoint) = distributor(&collector.acks, &report_at, distributor_args);
        Self {
            collector,
            dist,
            endpoint,
            report_at,
        }
    }

    fn worker(&self, name: &str, extra: &[&str]) -> Node {
        worker(&self.endpoint, &self.collector.results, name, extra)
    }

    /// Waits for the distributor to exit with `code` and returns its report.
    fn report(&mut self, code: i32) -> Value {
        assert_eq!(self.dist.exit_code(60), Some(code), "{}", self.dist.log());
        read_json(&self.report_at)
    }
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the distributor wrote its report");
    serde_json::from_str(&text).unwrap()
}

fn results(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Task ids in a collector's results file; a line torn by a kill -9 is skipped.
fn ids_in(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_u64())
        .collect()
}

fn dispatched_to(report: &Value, name: &str) -> u64 {
    report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["name"] == name)
        .map(|w| w["dispatched"].as_u64().unwrap())
        .sum()
}

fn kill_9(node: &mut Node) {
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

#[test]
fn two_workers_share_the_tasks_and_every_one_is_acked() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-basic");
    let mut run = Run::start(
        &dir,
        &[],
        &["--task", "C:200", "--delay", "10ms", "--workers", "2"],
    );
    let _w1 = run.worker("w1", &[]);
    let _w2 = run.worker("w2", &["--threads", "3"]);
    let r = run.report(0);
    assert_eq!(r["acked"], 200);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicates"], 0);
    assert_eq!(r["collector"]["results"], 200);
    // 4 threads: ideal 0.5 s. Generous: this test is about behaviour, the bench about speed.
    assert!((r["ideal_s"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{r}");
    assert!(r["overhead_pct"].as_f64().unwrap() < 50.0, "{r}");
    // Workers leave when told `end`: that is not leaving early.
    for w in r["workers"].as_array().unwrap() {
        assert_eq!(w["lost_connection"], false, "{w}");
    }
    // Three threads ask for about three times the tasks one does.
    let (one, three) = (dispatched_to(&r, "w1"), dispatched_to(&r, "w2"));
    assert!(three > 2 * one, "w1 {one}, w2 {three}");
}

#[test]
fn with_a_rate_tasks_go_out_on_schedule_and_latency_counts_from_each_release() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-rate");
    // 40 tasks at 40/s on 4 threads: the last is due at 0.975 s, where a batch takes 0.1 s,
    // and no task waits for a thread, so each latency is its 10 ms plus the plumbing.
    let mut run = Run::start(
        &dir,
        &[],
        &["--task", "C:40", "--delay", "10ms", "--rate", "40/s"],
    );
    let _w1 = run.worker("w1", &["--threads", "4"]);
    let r = run.report(0);
    assert_eq!(r["acked"], 40, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    let wall = r["wall_s"].as_f64().unwrap();
    assert!(
        (0.95..3.0).contains(&wall),
        "released over 0.975 s, took {wall} s: {r}"
    );
    let latency = &r["latency"];
    assert_eq!(latency["count"], 40, "{r}");
    let p50 = latency["p50"].as_f64().unwrap();
    assert!((0.009..0.1).contains(&p50), "p50 {p50} s: {r}");
}

#[test]
fn a_rate_that_is_not_one_is_refused() {
    let out = plumbline(&[
        "pipeline",
        "distributor",
        "--endpoint",
        "tcp://127.0.0.1:0",
        "--rate",
        "fast",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--rate") && err.contains("'fast' is not a rate"),
        "{err}"
    );
}

#[test]
fn a_worker_five_times_slower_receives_about_a_sixth_of_the_tasks() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-slow");
    let mut run = Run::start(
        &dir,
        &[],
        &["--task", "C:300", "--delay", "10ms", "--workers", "2"],
    );
    let _fast = run.worker("fast", &[]);
    let _slow = run.worker("slow", &["--delay", "50ms"]);
    let r = run.report(0);
    let share = dispatched_to(&r, "slow") as f64 / 300.0;
    assert!((0.10..0.25).contains(&share), "slow share {share}: {r}");
}

#[test]
fn no_second_task_starts_before_the_last_first_task_is_acked_even_when_a_first_worker_dies() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-deps");
    let results_at = dir.join("results.jsonl");
    let mut run = Run::start(
        &dir,
        &["--results", results_at.to_str().unwrap()],
        &[
            "--task",
            "first:80",
            "--task",
            "second:40:first",
            "--delay",
            "10ms",
            "--workers",
            "3",
        ],
    );
    let mut doomed = run.worker("first-a", &["--task-type", "first"]);
    let _first = run.worker("first-b", &["--task-type", "first"]);
    let _second = run.worker("second", &["--task-type", "second"]);
    doomed.wait_for("running");
    std::thread::sleep(Duration::from_millis(300));
    kill_9(&mut doomed);
    let r = run.report(0);
    assert_eq!(r["acked"], 120, "{r}");
    assert_eq!(r["lost"], 0);
    let first = &r["types"][0];
    assert_eq!(first["task_type"], "first");
    let last_first_ack = first["last_ack_unix_ns"].as_u64().unwrap();
    let seconds: Vec<u64> = results(&results_at)
        .iter()
        .filter(|x| x["task_type"] == "second")
        .map(|x| x["started_ns"].as_u64().unwrap())
        .collect();
    assert_eq!(seconds.len(), 40);
    let earliest = *seconds.iter().min().unwrap();
    assert!(
        earliest > last_first_ack,
        "a second task started {} µs before the last first task was ACKed",
        (last_first_ack - earliest) / 1000
    );
    // The killed worker's tasks went out again.
    assert!(r["redeliveries"].as_u64().unwrap() >= 1, "{r}");
}

#[test]
fn killing_one_of_four_workers_loses_nothing_and_counts_duplicates() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-kill");
    let mut run = Run::start(
        &dir,
        &[],
        &["--task", "C:400", "--delay", "10ms", "--workers", "4"],
    );
    let mut workers: Vec<Node> = (0..4).map(|i| run.worker(&format!("w{i}"), &[])).collect();
    workers[0].wait_for("running");
    std::thread::sleep(Duration::from_millis(400));
    kill_9(&mut workers[0]);
    let r = run.report(0);
    assert_eq!(r["acked"], 400, "{r}");
    assert_eq!(r["lost"], 0);
    assert!(r["failed"].as_array().unwrap().is_empty());
    let collected = &r["collector"];
    // Every result the collector saw beyond the 400 distinct ones is a duplicate, and the
    // distributor's count of them agrees with the collector's.
    assert_eq!(collected["results"], 400);
    assert_eq!(collected["duplicates"], r["duplicates"]);
    let w0 = &r["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "w0")
        .unwrap()
        .clone();
    assert_eq!(w0["lost_connection"], true);
    assert!(run.dist.log().contains("w0 left"), "{}", run.dist.log());
    // A killed worker is a lost connection, not a peer breaking the protocol.
    assert_eq!(r["bad_peers"], 0, "{}", run.dist.log());
}

#[test]
fn a_task_that_crashes_every_worker_fails_after_three_deliveries_and_the_run_completes() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-poison");
    let mut run = Run::start(
        &dir,
        &[],
        &[
            "--task",
            "C:30",
            "--delay",
            "5ms",
            "--workers",
            "4",
            "--poison",
            "7",
        ],
    );
    let _workers: Vec<Node> = (0..4).map(|i| run.worker(&format!("w{i}"), &[])).collect();
    // Completed, but a failed task fails the run.
    let r = run.report(1);
    let log = run.dist.log();
    assert!(
        log.contains("task 7 (C) failed after 3 deliveries"),
        "{log}"
    );
    assert!(
        log.contains("the run completed, but 1 task(s) failed"),
        "{log}"
    );
    assert_eq!(r["failed"][0]["id"], 7);
    assert_eq!(r["failed"][0]["attempts"], 3);
    assert_eq!(r["acked"], 29);
    assert_eq!(r["lost"], 0);
}

#[test]
fn malformed_messages_drop_the_peer_and_the_run_goes_on() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-bad");
    let mut run = Run::start(
        &dir,
        &[],
        &["--task", "C:20", "--delay", "5ms", "--join-timeout", "20s"],
    );
    let frame = |json: &[u8]| {
        let mut f = (json.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(json);
        f
    };
    let addr = |e: &str| e.trim_start_matches("tcp://").to_string();
    // To the distributor: junk JSON, an unknown type, an oversized frame, a bad hello.
    for bytes in [
        frame(b"{not json"),
        frame(br#"{"type":"gossip"}"#),
        (64u32 << 20).to_be_bytes().to_vec(),
        frame(br#"{"type":"hello","protocol":9,"role":"worker","name":"x","task_type":"C","credits":1}"#),
        frame(br#"{"type":"hello","protocol":1,"role":"worker","name":"x","task_type":"Z","credits":1}"#),
    ] {
        let mut peer = TcpStream::connect(addr(&run.endpoint)).unwrap();
        peer.write_all(&bytes).unwrap();
    }
    // To the collector: a result before any hello, and a message out of turn after one.
    let mut peer = TcpStream::connect(addr(&run.collector.results)).unwrap();
    peer.write_all(&frame(br#"{"type":"end"}"#)).unwrap();
    let mut peer = TcpStream::connect(addr(&run.collector.results)).unwrap();
    peer.write_all(&frame(
        br#"{"type":"hello","protocol":1,"role":"worker","name":"x"}"#,
    ))
    .unwrap();
    peer.write_all(&frame(br#"{"type":"ready","credits":1}"#))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _w = run.worker("w", &[]);
    let r = run.report(0);
    assert_eq!(r["acked"], 20);
    assert_eq!(r["bad_peers"], 5, "{}", run.dist.log());
    let log = run.dist.log();
    for needle in [
        "not a pipeline message",
        "exceeds",
        "protocol 9",
        "'Z' is not served",
    ] {
        assert!(log.contains(needle), "no {needle:?} in {log}");
    }
    let clog = run.collector.node.log();
    assert!(clog.contains("2 bad peers"), "{clog}");
}

#[test]
fn unbindable_endpoints_are_named() {
    let out = plumbline(&[
        "pipeline",
        "distributor",
        "--endpoint",
        "ipc:///nonexistent-dir/worker.ipc",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot bind ipc:///nonexistent-dir/worker.ipc"),
        "{}",
        stderr(&out)
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = format!("tcp://{}", taken.local_addr().unwrap());
    let out = plumbline(&["pipeline", "collector", "--endpoint", &at]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot bind {at}")) && err.contains("in use"),
        "{err}"
    );
    let out = plumbline(&["pipeline", "worker", "--endpoint", "udp://x:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("'udp://x:1' is not an endpoint"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_collector_ends_the_run_with_an_error_after_the_timeout() {
    let closed = format!("tcp://{}", common::closed_addr());
    let start = std::time::Instant::now();
    let out = plumbline(&[
        "pipeline",
        "distributor",
        "--endpoint",
        "tcp://127.0.0.1:0",
        "--collector-ack",
        &closed,
        "--collector-timeout",
        "1s",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the collector at {closed} was unreachable")),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_pipeline_bench_prints_the_seeds_table_beside_ours() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-bench");
    let json = dir.join("bench.json");
    let out = plumbline(&[
        "bench",
        "--preset",
        "pipeline",
        "--items",
        "20,100",
        "--workers",
        "1,2",
        "--threads",
        "10",
        "--json",
        json.to_str().unwrap(),
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = common::stdout(&out);
    // The seed's 2 workers x 10 threads, 100 tasks: 51 ms, +2.0 %.
    assert!(table.contains("51") && table.contains("+2.0 %"), "{table}");
    let bench = read_json(&json);
    assert_eq!(bench["schema"], "plumbline.run/3");
    let runs = bench["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        assert_eq!(run["bench"]["cluster"], "pipeline");
        assert_eq!(run["delivered"], run["items"], "{run}");
        assert_eq!(
            run["pipeline"]["distributor"]["acked"], run["items"],
            "{run}"
        );
        assert_eq!(run["lost"], 0);
        assert_eq!(run["pipeline"]["threads_per_worker"], 10);
        let ideal = run["ideal_s"].as_f64().unwrap();
        let expected = 0.01
            * (run["items"].as_f64().unwrap() / (10.0 * run["workers"].as_f64().unwrap())).ceil();
        assert!((ideal - expected).abs() < 1e-9, "{run}");
        let wall = run["wall_s"].as_f64().unwrap();
        assert!(wall >= ideal);
        // The one overhead formula, in percent.
        let overhead = run["overhead_pct"].as_f64().unwrap();
        assert!(
            (overhead - (wall / ideal - 1.0) * 100.0).abs() < 1e-6,
            "{run}"
        );
    }
    assert_eq!(
        runs[0]["pipeline"]["seed_wall_s"],
        Value::Null,
        "20 tasks: not in the seed's table"
    );
    assert_eq!(runs[1]["pipeline"]["seed_wall_s"], 0.093);
    assert_eq!(runs[1]["pipeline"]["seed_overhead_pct"], -7.0);
    // 20 tasks on 2 x 10 threads against 1 x 10: the speedup is filled as on the other presets.
    assert!(
        runs[2]["bench"]["speedup"].as_f64().unwrap() > 0.0,
        "{}",
        runs[2]
    );
    let out = plumbline(&["bench", "--preset", "pipeline", "--keys", "uniform"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not use --keys"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_collector_killed_mid_run_and_restarted_loses_nothing() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-collector-restart");
    let (results, acks) = (
        format!("tcp://{}", common::closed_addr()),
        format!("tcp://{}", common::closed_addr()),
    );
    let start_collector = |ledger: &Path| {
        let node = Node::spawn(&[
            "pipeline",
            "collector",
            "--endpoint",
            &results,
            "--ack-endpoint",
            &acks,
            "--results",
            ledger.to_str().unwrap(),
        ]);
        node.wait_for("collector: results on ");
        node
    };
    let (ledger1, ledger2) = (dir.join("results-1.jsonl"), dir.join("results-2.jsonl"));
    let mut first = start_collector(&ledger1);
    let report_at = dir.join("report.json");
    let (mut dist, endpoint) = distributor(
        &acks,
        &report_at,
        &[
            "--task",
            "C:200",
            "--delay",
            "10ms",
            "--workers",
            "2",
            "--lease",
            "3s",
        ],
    );
    let _w1 = worker(&endpoint, &results, "w1", &[]);
    let _w2 = worker(&endpoint, &results, "w2", &[]);
    std::thread::sleep(Duration::from_millis(500));
    kill_9(&mut first);
    std::thread::sleep(Duration::from_millis(1000));
    let _second = start_collector(&ledger2);
    assert_eq!(dist.exit_code(60), Some(0), "{}", dist.log());
    assert!(dist.log().contains("lost the collector"), "{}", dist.log());
    let r = read_json(&report_at);
    assert_eq!(r["acked"], 200, "{r}");
    assert_eq!(r["lost"], 0);
    // Record, then ACK: every task the distributor counted as ACKed is in one of the two
    // collectors' files (the killed one may end in a torn line, never miss an ACKed result).
    let mut recorded = std::collections::BTreeSet::new();
    for ledger in [&ledger1, &ledger2] {
        recorded.extend(ids_in(ledger));
    }
    let missing: Vec<u64> = (1..=200).filter(|id| !recorded.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "ACKed but recorded nowhere: {missing:?}"
    );
}

#[test]
fn a_wedged_workers_tasks_go_out_again_when_their_lease_runs_out_and_the_run_completes() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-wedged");
    let mut run = Run::start(
        &dir,
        &[],
        &[
            "--task",
            "C:200",
            "--delay",
            "10ms",
            "--workers",
            "2",
            "--lease",
            "1s",
        ],
    );
    let wedged = run.worker("wedged", &[]);
    let _ok = run.worker("ok", &[]);
    wedged.wait_for("running");
    std::thread::sleep(Duration::from_millis(300));
    let pid = wedged.child.id().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    let r = run.report(0);
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .ok();
    let log = run.dist.log();
    assert!(
        log.contains("worker wedged is silent since its lease on task"),
        "{log}"
    );
    assert_eq!(r["acked"], 200, "{r}");
    assert_eq!(r["lost"], 0);
}

#[test]
fn a_lease_shorter_than_the_task_is_warned_of_and_the_run_still_ends_with_its_report() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-short-lease");
    let mut run = Run::start(
        &dir,
        &[],
        &["--task", "C:40", "--delay", "10ms", "--lease", "5ms"],
    );
    let start = std::time::Instant::now();
    let _w = run.worker("w", &[]);
    let code = run.dist.exit_code(40);
    assert!(matches!(code, Some(0 | 1)), "{code:?}: {}", run.dist.log());
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "waited out a timeout: {:?}",
        start.elapsed()
    );
    let log = run.dist.log();
    assert!(
        log.contains("--lease 5ms is not longer than the 10ms task"),
        "{log}"
    );
    let r = read_json(&run.report_at);
    assert_eq!(r["lost"], 0, "{r}");
    let settled = r["acked"].as_u64().unwrap() + r["failed"].as_array().unwrap().len() as u64;
    assert_eq!(settled, 40, "{r}");
    assert!(r["redeliveries"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn a_run_whose_last_worker_died_fails_soon_with_its_report() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-no-worker-left");
    let mut run = Run::start(
        &dir,
        &[],
        &[
            "--task",
            "C:500",
            "--delay",
            "10ms",
            "--rejoin-timeout",
            "1s",
        ],
    );
    let mut w = run.worker("w", &[]);
    w.wait_for("running");
    std::thread::sleep(Duration::from_millis(300));
    kill_9(&mut w);
    let killed = std::time::Instant::now();
    let r = run.report(1);
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
    let error = r["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no worker of task type C was left") && error.contains("--rejoin-timeout"),
        "{r}"
    );
    assert!(r["acked"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn a_collector_whose_distributor_died_writes_what_it_recorded_and_fails() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-distributor-died");
    let summary_at = dir.join("collector.json");
    let mut run = Run::start(
        &dir,
        &[
            "--distributor-timeout",
            "1s",
            "--json",
            summary_at.to_str().unwrap(),
        ],
        &["--task", "C:500", "--delay", "10ms"],
    );
    let w = run.worker("w", &[]);
    w.wait_for("running");
    std::thread::sleep(Duration::from_millis(300));
    kill_9(&mut run.dist);
    let killed = std::time::Instant::now();
    assert_eq!(
        run.collector.node.exit_code(20),
        Some(1),
        "{}",
        run.collector.node.log()
    );
    assert!(killed.elapsed() < Duration::from_secs(10));
    let log = run.collector.node.log();
    assert!(
        log.contains("closed the ACK connection without ending the run"),
        "{log}"
    );
    let summary = read_json(&summary_at);
    assert!(summary["results"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["error"]
        .as_str()
        .unwrap()
        .contains("--distributor-timeout"));
}

#[test]
fn a_second_distributor_hello_is_refused_and_the_real_one_keeps_its_acks() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-impostor");
    let mut run = Run::start(&dir, &[], &["--task", "C:100", "--delay", "10ms"]);
    let w = run.worker("w", &[]);
    w.wait_for("running");
    let hello = br#"{"type":"hello","protocol":1,"role":"distributor","name":"impostor"}"#;
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(hello);
    let mut impostor = TcpStream::connect(run.collector.acks.trim_start_matches("tcp://")).unwrap();
    impostor.write_all(&frame).unwrap();
    let r = run.report(0);
    assert_eq!(r["acked"], 100, "{r}");
    assert_eq!(r["lost"], 0);
    let log = run.collector.node.log();
    assert!(
        log.contains("a distributor is already connected from"),
        "{log}"
    );
}

/// Scenario 12: the distributor dies mid-run; a new one resumes from the collector's ledger,
/// the workers reconnect to it, and only tasks without a result go out again.
#[test]
fn a_distributor_killed_mid_run_is_resumed_from_the_collectors_ledger_losing_nothing() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-resume");
    let ledger = dir.join("results.jsonl");
    let collector = Collector::start(&["--results", ledger.to_str().unwrap()]);
    let endpoint = format!("tcp://{}", common::closed_addr());
    let start = |report: &Path, extra: &[&str]| {
        let mut args = vec![
            "pipeline",
            "distributor",
            "--endpoint",
            &endpoint,
            "--collector-ack",
            &collector.acks,
            "--json",
            report.to_str().unwrap(),
            "--task",
            "C:300",
            "--delay",
            "10ms",
            "--workers",
            "2",
        ];
        args.extend_from_slice(extra);
        // Not -q: its info line says where workers connect.
        let node = Node::spawn(&args);
        node.wait_for("workers connect to ");
        node
    };
    let mut first = start(&dir.join("first.json"), &[]);
    let w1 = worker(&endpoint, &collector.results, "w1", &[]);
    let _w2 = worker(&endpoint, &collector.results, "w2", &[]);
    w1.wait_for("running");
    std::thread::sleep(Duration::from_millis(800));
    kill_9(&mut first);
    let before = ids_in(&ledger).len();
    assert!(
        before > 0 && before < 300,
        "{before} collected before the kill"
    );
    let report_at = dir.join("second.json");
    let mut second = start(&report_at, &["--resume", ledger.to_str().unwrap()]);
    assert_eq!(second.exit_code(60), Some(0), "{}", second.log());
    let r = read_json(&report_at);
    assert_eq!(r["acked"], 300, "{r}");
    assert_eq!(r["lost"], 0);
    let resumed = r["resumed"].as_u64().unwrap();
    assert!(resumed >= before as u64, "{r}");
    assert!(
        w1.log().contains("reconnected to"),
        "the worker did not reconnect: {}",
        w1.log()
    );
    let recorded: std::collections::BTreeSet<u64> = ids_in(&ledger).into_iter().collect();
    let missing: Vec<u64> = (1..=300).filter(|id| !recorded.contains(id)).collect();
    assert!(missing.is_empty(), "never collected: {missing:?}");
}

/// With a run token, nobody else on the host can join, feed the collector results or take its
/// ACKs: a peer whose hello lacks it is refused and logged with its address.
#[test]
fn with_a_token_impostors_are_refused_and_the_run_counts_only_its_own_results() {
    let _cpu = exclusive();
    let dir = scratch("pipeline-token");
    let secret = dir.join("token");
    std::fs::write(&secret, "s3cret-of-this-run\n").unwrap();
    let token = format!("file:{}", secret.display());
    let mut run = Run::start(
        &dir,
        &["--token", &token],
        &["--task", "C:100", "--delay", "5ms", "--token", &token],
    );
    let w = run.worker("w", &["--token", &token]);
    w.wait_for("running");
    let frame = |json: &[u8]| {
        let mut f = (json.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(json);
        f
    };
    let addr = |e: &str| e.trim_start_matches("tcp://").to_string();
    // A worker without the token at the distributor, and one feeding the collector a result.
    let mut joiner = TcpStream::connect(addr(&run.endpoint)).unwrap();
    joiner
        .write_all(&frame(br#"{"type":"hello","protocol":1,"role":"worker","name":"x","task_type":"C","credits":1}"#))
        .unwrap();
    let mut forger = TcpStream::connect(addr(&run.collector.results)).unwrap();
    forger
        .write_all(&frame(
            br#"{"type":"hello","protocol":1,"role":"worker","name":"x","token":"guess"}"#,
        ))
        .unwrap();
    forger
        .write_all(&frame(br#"{"type":"result","id":50,"task_type":"C","attempt":1,"worker":"x","started_ns":0,"finished_ns":0,"data":null}"#))
        .ok();
    let r = run.report(0);
    assert_eq!(r["acked"], 100, "{r}");
    assert_eq!(
        r["duplicates"], 0,
        "a forged result made a genuine one a duplicate: {r}"
    );
    let (dlog, clog) = (run.dist.log(), run.collector.node.log());
    assert!(dlog.contains("wrong or missing token"), "{dlog}");
    assert!(clog.contains("wrong or missing token"), "{clog}");
    assert!(clog.contains("0 duplicates"), "{clog}");
    assert!(
        !dlog.contains("s3cret") && !clog.contains("s3cret"),
        "the secret was logged"
    );
}
