//! Benchmark: what a cluster of worker processes costs on the wire path, measured in one run.
//!
//! `cargo bench -p plumbline --bench cluster_vs_direct [-- ITEMS]` runs, with zero work delay and
//! 1 KiB nonces (plumbline framing), as real processes on loopback:
//! 1. direct: `send --rate max` → `receive`;
//! 2. cluster: `send --rate max` → initializer → 2 workers (the initializer and one joiner,
//!    routing by partition over a data connection) → `receive`;
//!
//! and prints items/s and input MB/s of each (from the receiver: first to last arrival) and the
//! ratio cluster ÷ direct. Issue 4's goal: at least 0.50.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PLUMBLINE: &str = env!("CARGO_BIN_EXE_plumbline");
const PAYLOAD: f64 = 1024.0;

fn main() {
    let items: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500_000);
    let dir = std::env::temp_dir().join(format!("plumbline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Alternate the two, three rounds each, and compare medians (single runs on a 2-core VM
    // swing by ±10 %).
    let (mut direct, mut cluster) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        direct.push(run(&dir, items, false));
        cluster.push(run(&dir, items, true));
    }
    let (direct, cluster) = (median(direct), median(cluster));
    println!("zero delay, 1 KiB nonces, {items} items, all processes on loopback, median of 3");
    for (name, rate) in [
        ("direct send -> receive", direct),
        ("send -> initializer -> 2 workers -> receive", cluster),
    ] {
        println!(
            "{name:<46} {rate:>10.0} items/s {:>8.1} MB/s in",
            rate * PAYLOAD / 1e6
        );
    }
    println!(
        "ratio cluster / direct: {:.2} (goal: at least 0.50)",
        cluster / direct
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn free_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn spawn(args: &[&str]) -> Child {
    Command::new(PLUMBLINE)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("plumbline runs")
}

/// One measurement: items/s at the receiver.
fn run(dir: &std::path::Path, items: u64, cluster: bool) -> f64 {
    let sink = free_port();
    let json = dir.join(if cluster {
        "cluster.json"
    } else {
        "direct.json"
    });
    let expect = items.to_string();
    let mut receiver = spawn(&[
        "receive",
        "--listen",
        &sink,
        "--expect",
        &expect,
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let mut workers = Vec::new();
    let target = if cluster {
        let (source, control, data, external) =
            (free_port(), free_port(), free_port(), free_port());
        workers.push(spawn(&[
            "worker",
            "--app",
            "sleepy",
            "--in",
            &source,
            "--out",
            &sink,
            "--control",
            &control,
            "--data",
            &data,
            "--external",
            &external,
            "--cluster-initializer",
            "--worker-count",
            "2",
        ]));
        std::thread::sleep(Duration::from_millis(200));
        workers.push(spawn(&[
            "worker",
            "--app",
            "sleepy",
            "--out",
            &sink,
            "--control",
            &control,
            "--name",
            "w2",
        ]));
        std::thread::sleep(Duration::from_millis(500));
        source
    } else {
        sink.clone()
    };
    let status = Command::new(PLUMBLINE)
        .args([
            "send",
            "--host",
            &target,
            "--gen",
            "nonces",
            "--rate",
            "max",
            "--messages",
            &expect,
            "--quiet",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "send failed");
    assert!(
        receiver.wait().unwrap().success(),
        "receive did not get every item"
    );
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let record = plumbline_measure::record::Record::parse(&std::fs::read(json).unwrap()).unwrap();
    record.runs[0].achieved_per_s
}
