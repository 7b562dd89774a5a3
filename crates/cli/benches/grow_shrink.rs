//! Benchmark: what growing and shrinking the TCP cluster costs while load flows (issue 15),
//! measured in one run on real processes over loopback.
//!
//! `cargo bench -p plumbline --bench grow_shrink` runs
//! 1. seed 002's votes (500 ms scaled to 50 ms, 52 votes at 40/s) on one worker, grown to two
//!    0.4 s in, and prints the wall time (first send to last result) beside the one- and
//!    two-worker ideals and the wall predicted from when the join started and settled (each
//!    worker a FIFO of 50 ms items: the old owner keeps every item routed to it before the
//!    join, the new owner takes its partitions' later items once their state arrived);
//! 2. seed 000's sleepy nonces (5 ms) under a steady 300/s on two workers, grown to four and
//!    shrunk back to two, and prints each change's partitions moved, time to settle and longest
//!    hold.
//!
//! Both check what a migration must keep: every key's state continuous (`receive
//! --continuity`), nothing lost or duplicated; it exits 1 otherwise. It judges no speed: the
//! figures are for the reader.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plumbline_worker::announce::Announcement;
use plumbline_worker::membership::Assignment;

const PLUMBLINE: &str = env!("CARGO_BIN_EXE_plumbline");

fn main() -> ExitCode {
    let mut ok = votes_grown();
    ok &= sleepy_grown_and_shrunk();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(PLUMBLINE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plumbline runs")
}

/// A receiver on a free port: the child and its address.
fn receiver(expect: u64) -> (Child, String) {
    let expect = expect.to_string();
    let mut child = spawn(&[
        "receive",
        "--listen",
        "127.0.0.1:0",
        "--print",
        "--continuity",
        "--quiet",
        "--expect",
        &expect,
        "--idle-timeout",
        "30s",
    ]);
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().trim_start_matches("listening on ").to_string();
    (child, addr)
}

/// An initializer announcing on stdout: the child, and its announcements as they come, each
/// with the instant it was read.
fn initializer(args: &[&str]) -> (Child, mpsc::Receiver<(Instant, Announcement)>) {
    let mut all = vec![
        "worker",
        "--in",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--data",
        "127.0.0.1:0",
        "--external",
        "127.0.0.1:0",
        "--cluster-initializer",
        "--announce",
        "-",
    ];
    all.extend_from_slice(args);
    let mut child = spawn(&all);
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if let Ok(a) = Announcement::parse(&line) {
                let _ = tx.send((Instant::now(), a));
            }
        }
    });
    (child, rx)
}

/// The cluster's control, external and source addresses, once it is ready; `listening` is
/// called with the control address as soon as it is bound (to start the formation's joiners).
fn addresses(
    events: &mpsc::Receiver<(Instant, Announcement)>,
    mut listening: impl FnMut(&str),
) -> (String, String, String) {
    let (mut control, mut external) = (String::new(), String::new());
    loop {
        match events
            .recv_timeout(Duration::from_secs(20))
            .expect("the cluster forms")
            .1
        {
            Announcement::ClusterListening {
                control: c,
                external: e,
            } => {
                listening(&c);
                control = c;
                external = e.unwrap_or_default();
            }
            Announcement::ClusterReady { sources, .. } => return (control, external, sources),
            _ => {}
        }
    }
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(PLUMBLINE)
        .args(args)
        .output()
        .expect("plumbline runs")
}

/// Waits for the receiver to exit; returns when, and what it printed.
fn finish(mut receiving: Child) -> (Instant, bool, String) {
    loop {
        if let Some(status) = receiving.try_wait().unwrap() {
            let at = Instant::now();
            let out = receiving.wait_with_output().unwrap();
            return (
                at,
                status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Each worker a FIFO of `item`-long items; `to_new(i)` says whether item `i`, arriving at
/// `arrivals[i]`, goes to the new owner (available from `settled`). The last finish.
fn fifo_wall(arrivals: &[f64], item: f64, to_new: impl Fn(usize) -> bool, settled: f64) -> f64 {
    let (mut old, mut new) = (0.0f64, 0.0f64);
    for (i, &at) in arrivals.iter().enumerate() {
        if to_new(i) {
            new = new.max(at.max(settled)) + item;
        } else {
            old = old.max(at) + item;
        }
    }
    old.max(new)
}

fn votes_grown() -> bool {
    let (items, rate, item, join_after) = (52usize, 40.0, 0.05, 0.4);
    let (receiving, sink) = receiver(items as u64);
    let (mut init, events) = initializer(&[
        "--app",
        "votes",
        "--delay",
        "50ms",
        "--result-versions",
        "--worker-count",
        "1",
        "--out",
        &sink,
    ]);
    let (control, external, source) = addresses(&events, |_| {});
    let start = Instant::now();
    let mut sender = spawn(&[
        "send",
        "--host",
        &source,
        "--gen",
        "votes",
        "--rate",
        "40/s",
        "--messages",
        "52",
        "--quiet",
    ]);
    std::thread::sleep(Duration::from_secs_f64(join_after));
    let mut joiner = spawn(&[
        "worker",
        "--app",
        "votes",
        "--delay",
        "50ms",
        "--result-versions",
        "--control",
        &control,
        "--out",
        &sink,
        "--name",
        "roo",
        "--join-running",
    ]);
    let (done, clean, printed) = finish(receiving);
    let wall = done.duration_since(start).as_secs_f64();
    let _ = sender.wait();
    run(&["shutdown", &external]);
    let _ = (init.wait(), joiner.wait());
    let (mut began, mut settled) = (None, None);
    for (at, event) in events.try_iter() {
        let t = at.duration_since(start).as_secs_f64();
        match event {
            Announcement::ClusterChanging { .. } => began = began.or(Some(t)),
            Announcement::ClusterChanged { .. } => settled = settled.or(Some(t)),
            _ => {}
        }
    }
    let (Some(began), Some(settled)) = (began, settled) else {
        println!("votes 1 -> 2: the join never settled");
        return false;
    };
    // Vote i is letter i % 26, its own partition; these move to the joiner.
    let one = Assignment::round_robin(26, &[0]).unwrap();
    let moving: BTreeSet<u32> = one
        .moves_to(&one.rebalanced(&[0, 1]).unwrap())
        .iter()
        .map(|m| m.partition)
        .collect();
    let arrivals: Vec<f64> = (0..items).map(|i| i as f64 / rate).collect();
    let moves = |i: usize| moving.contains(&((i % 26) as u32));
    let ideal_one = fifo_wall(&arrivals, item, |_| false, 0.0);
    let ideal_two = fifo_wall(&arrivals, item, moves, 0.0);
    let predicted = fifo_wall(
        &arrivals,
        item,
        |i| moves(i) && arrivals[i] >= began,
        settled,
    );
    let threes = (b'a'..=b'z')
        .filter(|l| printed.lines().any(|r| r == format!("{}=>3@2", *l as char)))
        .count();
    let continuous = printed.contains("0 violation(s)") && printed.contains("0 lost, 0 duplicated");
    println!("seed 002 votes (50 ms, 52 at 40/s), grown 1 -> 2 workers {join_after} s in");
    println!(
        "  join began {began:.3} s, settled {settled:.3} s ({} partitions moved)",
        moving.len()
    );
    println!(
        "  wall {wall:.3} s; ideal on 1 worker {ideal_one:.3} s, on 2 {ideal_two:.3} s; \
         predicted from the join {predicted:.3} s; measured / predicted {:.3}",
        wall / predicted
    );
    println!(
        "  letters at 3: {threes} of 26; continuity and sequence clean: {continuous}; receive ok: {clean}"
    );
    clean && continuous && threes == 26
}

fn sleepy_grown_and_shrunk() -> bool {
    let items = 2400u64;
    let (receiving, sink) = receiver(items);
    let (mut init, events) = initializer(&[
        "--app",
        "sleepy",
        "--delay",
        "5ms",
        "--worker-count",
        "2",
        "--out",
        &sink,
    ]);
    let worker = |control: &str, name: &str, running: bool| {
        let mut args = vec![
            "worker",
            "--app",
            "sleepy",
            "--delay",
            "5ms",
            "--control",
            control,
            "--out",
            &sink,
            "--name",
            name,
        ];
        if running {
            args.push("--join-running");
        }
        spawn(&args)
    };
    let mut w2 = None;
    let (control, external, source) =
        addresses(&events, |control| w2 = Some(worker(control, "w2", false)));
    let mut w2 = w2.expect("started once the control port was bound");
    let mut sender = spawn(&[
        "send",
        "--host",
        &source,
        "--gen",
        "nonces",
        "--rate",
        "300/s",
        "--messages",
        "2400",
        "--quiet",
    ]);
    let mut changes = Vec::new();
    let settle = |changes: &mut Vec<String>| loop {
        match events.recv_timeout(Duration::from_secs(20)) {
            Ok((
                _,
                Announcement::ClusterChanged {
                    workers,
                    moved,
                    took_s,
                    longest_pause_s,
                },
            )) => {
                changes.push(format!(
                    "  -> {:<22} {moved:>2} partitions moved, settled in {:>6.1} ms, longest hold {:>6.1} ms",
                    workers.join(","),
                    took_s * 1e3,
                    longest_pause_s * 1e3
                ));
                return;
            }
            Ok(_) => {}
            Err(_) => panic!("a change never settled"),
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    let mut w3 = worker(&control, "w3", true);
    settle(&mut changes);
    std::thread::sleep(Duration::from_secs(1));
    let mut w4 = worker(&control, "w4", true);
    settle(&mut changes);
    for leaver in ["w3", "w4"] {
        std::thread::sleep(Duration::from_secs(1));
        run(&["shrink", &external, "--worker", leaver]);
        settle(&mut changes);
    }
    let (_, clean, printed) = finish(receiving);
    let _ = sender.wait();
    run(&["shutdown", &external]);
    for child in [&mut init, &mut w2, &mut w3, &mut w4] {
        let _ = child.wait();
    }
    let continuous = printed.contains("0 violation(s)") && printed.contains("0 lost, 0 duplicated");
    println!("seed 000 sleepy nonces (5 ms) at 300/s: 2 -> 3 -> 4 -> 3 -> 2 workers");
    for change in &changes {
        println!("{change}");
    }
    println!("  continuity and sequence clean: {continuous}; receive ok: {clean}");
    clean && continuous
}
