//! Hostile and broken peers against every listener that takes outside frames (`receive
//! --listen`, the initializer's `--in`, a group member's `--in tcp://`): slowloris connections that trickle a frame, peers that
//! announce 8 MiB and stop a byte short, and floods past `--max-connections`. Each test runs the
//! real binary on loopback, samples its RSS and descriptors from /proc, and checks that the
//! attackers are closed within the deadline, named and counted, while a legitimate sender's
//! messages all arrive. The attack tool drives every hostile socket from one thread.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{cluster, exclusive, open_fds, plumbline, scratch, stderr, Node, PeakRss, Receiving};
use serde_json::Value;

/// What a hostile peer does.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Sends a 1 KiB frame a byte at a time, one byte every `every`.
    Slowloris { every: Duration },
    /// Announces a frame of `announce` bytes and sends all of it but the last byte.
    Partial { announce: u32 },
}

/// One hostile connection.
struct Peer {
    stream: TcpStream,
    /// Bytes of its frame written so far.
    sent: u64,
    next_due: Instant,
    closed: Option<Duration>,
}

/// Hostile peers in flight; [`Attack::finish`] says when each was closed by the server.
struct Attack {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Option<Duration>>>,
}

static FILLER: [u8; 64 * 1024] = [b'A'; 64 * 1024];

impl Attack {
    /// Opens `n` connections to `addr` and starts each one's script; times count from when
    /// the last connection is open (so a slow accept backlog does not count against the
    /// server's deadline), and connections the server refused count as closed at once.
    fn start(addr: &str, n: usize, kind: Kind) -> Self {
        let peers: Vec<Peer> = (0..n)
            .map(|_| {
                let stream = TcpStream::connect(addr).expect("the listener accepts the connect");
                stream.set_nonblocking(true).unwrap();
                Peer {
                    stream,
                    sent: 0,
                    next_due: Instant::now(),
                    closed: None,
                }
            })
            .collect();
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::spawn(move || drive(peers, kind, started, &halt));
        Self { stop, thread }
    }

    /// Stops the peers still open and returns, per peer, when the server closed it.
    fn finish(self) -> Vec<Option<Duration>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }

    /// Waits until every peer was closed or `within` passed, then finishes.
    fn wait_closed(self, within: Duration) -> Vec<Option<Duration>> {
        let deadline = Instant::now() + within;
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.finish()
    }
}

fn drive(
    mut peers: Vec<Peer>,
    kind: Kind,
    started: Instant,
    stop: &AtomicBool,
) -> Vec<Option<Duration>> {
    let header = |announce: u32| announce.to_be_bytes();
    let mut scratch = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) && peers.iter().any(|p| p.closed.is_none()) {
        for peer in peers.iter_mut().filter(|p| p.closed.is_none()) {
            let written = match kind {
                Kind::Slowloris { every } if Instant::now() >= peer.next_due => {
                    peer.next_due += every;
                    let at = peer.sent as usize;
                    let byte = if at < 4 { header(1024)[at] } else { b'A' };
                    // A whole frame would be a legitimate (if slow) sender: stop one short.
                    (at < 4 + 1023).then(|| peer.stream.write(&[byte]))
                }
                Kind::Slowloris { .. } => None,
                Kind::Partial { announce } => {
                    let total = 4 + u64::from(announce) - 1;
                    let at = peer.sent;
                    (at < total).then(|| {
                        if at < 4 {
                            peer.stream.write(&header(announce)[at as usize..])
                        } else {
                            let n = (total - at).min(FILLER.len() as u64) as usize;
                            peer.stream.write(&FILLER[..n])
                        }
                    })
                }
            };
            match written {
                Some(Ok(n)) => peer.sent += n as u64,
                Some(Err(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Some(Err(_)) => peer.closed = Some(started.elapsed()),
                None => {}
            }
            match peer.stream.read(&mut scratch) {
                Ok(0) => peer.closed = Some(started.elapsed()),
                Err(e) if e.kind() != ErrorKind::WouldBlock => {
                    peer.closed = Some(started.elapsed())
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    peers.iter().map(|p| p.closed).collect()
}

/// The latest close among `closed`, or `None` if any peer was never closed.
fn all_closed_by(closed: &[Option<Duration>]) -> Option<Duration> {
    closed
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// The one run of a send's or receive's run record.
fn json(path: &std::path::Path) -> Value {
    common::record_run(path)
}

/// `send` of `messages` plumbline-framed nonces at `rate`/s to `host`; returns its report.
fn legit_send(host: &str, rate: u32, messages: u32, dir: &std::path::Path) -> Value {
    let report = dir.join("send.json");
    let out = plumbline(&[
        "send",
        "--host",
        host,
        "--gen",
        "nonces",
        "--rate",
        &format!("{rate}/s"),
        "--messages",
        &messages.to_string(),
        "--quiet",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    json(&report)
}

/// Waits (up to 10 s) until `pid` has at most `fds` descriptors open; returns the count.
fn fds_settle(pid: u32, fds: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            common::rss_kib(pid) > 0,
            "process {pid} ended before its descriptors could be counted"
        );
        let now = open_fds(pid);
        if now <= fds || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a siege of one listener did to its process.
struct Siege {
    base_mb: f64,
    peak_mb: f64,
    /// When the last hostile peer was closed, from the attack's start; `None`: some never were.
    closed_by: Option<Duration>,
    base_fds: usize,
    fds_after: usize,
}

impl std::fmt::Display for Siege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MB -> peak {:.1} MB; all closed by {}; fds {} -> {} after",
            self.base_mb,
            self.peak_mb,
            self.closed_by
                .map_or("never (still open)".into(), |d| format!(
                    "{:.1}s",
                    d.as_secs_f64()
                )),
            self.base_fds,
            self.fds_after
        )
    }
}

/// Runs `n` peers of `kind` against the listener at `addr` of process `pid` for at most
/// `within`, with `during` (a legitimate sender, say) running meanwhile.
fn siege<T>(
    pid: u32,
    addr: &str,
    n: usize,
    kind: Kind,
    within: Duration,
    during: impl FnOnce() -> T,
) -> (Siege, T) {
    let base_fds = open_fds(pid);
    let base_mb = common::rss_kib(pid) as f64 / 1024.0;
    let peak = PeakRss::watch(pid);
    let attack = Attack::start(addr, n, kind);
    let result = during();
    let closed = attack.wait_closed(within);
    let peak_mb = peak.peak_mb();
    let siege = Siege {
        base_mb,
        peak_mb,
        closed_by: all_closed_by(&closed),
        base_fds,
        fds_after: fds_settle(pid, base_fds),
    };
    (siege, result)
}

/// The figures at full scale, at the defaults: 1000 slowloris peers (a byte every
/// 10 s) with a legitimate sender at 20 000/s meanwhile, then 60 peers stopping an 8 MiB
/// frame a byte short, against `receive` and then the initializer's `--in`. About 3 minutes
/// on an unfixed build; run with `cargo test -p plumbline --test hostile -- --ignored
/// --nocapture`, and `PLUMBLINE_BIN=path` to measure another build the same way.
#[test]
#[ignore]
fn full_scale_figures() {
    let _cpu = exclusive();
    let dir = scratch("hostile-full");
    let slow = Kind::Slowloris {
        every: Duration::from_secs(10),
    };
    let partial = Kind::Partial { announce: 8 << 20 };
    let within = Duration::from_secs(45);
    let mut failures = Vec::new();
    // Under 100 MB, and closed within the 30 s deadline plus a 1 s read tick and slack.
    let mut check = |role: &str, what: &str, s: &Siege| {
        println!("{role}, {what}: {s}");
        if s.peak_mb >= 100.0 || s.closed_by.is_none_or(|d| d > Duration::from_secs(35)) {
            failures.push(format!("{role}, {what}: {s}"));
        }
    };
    let receiving = Receiving::start(&["--idle-timeout", "300s"]);
    let (s, sent) = siege(receiving.pid(), &receiving.addr, 1000, slow, within, || {
        legit_send(&receiving.addr, 20_000, 100_000, &dir)
    });
    println!(
        "receive: legitimate sender {:.0}/s of 20000/s during the slowloris",
        sent["achieved_per_s"]
    );
    check("receive", "1000 slowloris", &s);
    let (s, ()) = siege(receiving.pid(), &receiving.addr, 60, partial, within, || ());
    check("receive", "60 x 8 MiB partial frames", &s);
    drop(receiving);

    let (init, _, source, _) = cluster("sleepy", "0ms", 0, None, &[]);
    let (s, sent) = siege(init.child.id(), &source, 1000, slow, within, || {
        legit_send(&source, 20_000, 100_000, &dir)
    });
    println!(
        "initializer: legitimate sender {:.0}/s of 20000/s during the slowloris",
        sent["achieved_per_s"]
    );
    check("initializer", "1000 slowloris", &s);
    let (s, ()) = siege(init.child.id(), &source, 60, partial, within, || ());
    check("initializer", "60 x 8 MiB partial frames", &s);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The receiver's JSON summary, once it ended.
fn finished(receiving: Receiving, report: &std::path::Path) -> Value {
    let (code, out, err) = receiving.finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    json(report)
}

#[test]
fn slowloris_peers_are_closed_within_the_read_timeout_and_cost_little() {
    let _cpu = exclusive();
    let dir = scratch("hostile-slowloris");
    let report = dir.join("recv.json");
    let receiving = Receiving::start(&[
        "--read-timeout",
        "1s",
        // Still running when the attack is over, so its descriptors can be counted.
        "--idle-timeout",
        "2s",
        "--json",
        report.to_str().unwrap(),
    ]);
    // 200 peers, a byte every 200 ms: each read is on time, no frame ever is.
    let slow = Kind::Slowloris {
        every: Duration::from_millis(200),
    };
    let (s, sent) = siege(
        receiving.pid(),
        &receiving.addr,
        200,
        slow,
        Duration::from_secs(10),
        || legit_send(&receiving.addr, 5_000, 20_000, &dir),
    );
    println!("receive, 200 slowloris: {s}");
    // Unfixed: 200 connections cost ~140 MB and none was ever closed.
    assert!(s.peak_mb < 60.0, "{s}");
    let closed_by = s.closed_by.unwrap_or_else(|| panic!("{s}"));
    assert!(closed_by < Duration::from_secs(5), "1 s deadline: {s}");
    assert!(s.fds_after <= s.base_fds, "{s}");
    assert!(
        sent["achieved_per_s"].as_f64().unwrap() >= 0.95 * 5_000.0,
        "{sent}"
    );
    let received = finished(receiving, &report);
    assert_eq!(received["delivered"], 20_000, "{received}");
    assert_eq!(received["lost"], 0);
    assert_eq!(received["receive"]["slow_connections"], 200, "{received}");
    let reason = received["receive"]["bad_reasons"][0].as_str().unwrap();
    assert!(
        reason.starts_with("127.0.0.1:")
            && reason.contains("bytes of a 1024-byte frame")
            && reason.contains("1s read timeout"),
        "names the peer and what it did: {reason}"
    );
}

#[test]
fn partial_8_mib_frames_cannot_exhaust_memory() {
    let _cpu = exclusive();
    let dir = scratch("hostile-partial");
    let report = dir.join("recv.json");
    let receiving = Receiving::start(&[
        "--read-timeout",
        "2s",
        "--buffer-budget",
        "16777216",
        // Still running when the attack is over, so its descriptors can be counted.
        "--idle-timeout",
        "3s",
        "--json",
        report.to_str().unwrap(),
    ]);
    // 12 peers announce 8 MiB each and stop a byte short: 96 MiB if all were buffered. The
    // legitimate sender outlasts their deadline, so the receiver is still running to close them.
    let partial = Kind::Partial { announce: 8 << 20 };
    let (s, sent) = siege(
        receiving.pid(),
        &receiving.addr,
        12,
        partial,
        Duration::from_secs(10),
        || legit_send(&receiving.addr, 2_500, 10_000, &dir),
    );
    println!("receive, 12 x 8 MiB partial frames: {s}");
    assert!(s.peak_mb < 60.0, "a 16 MiB budget: {s}");
    let closed_by = s.closed_by.unwrap_or_else(|| panic!("{s}"));
    assert!(closed_by < Duration::from_secs(6), "2 s deadline: {s}");
    assert!(s.fds_after <= s.base_fds, "{s}");
    assert!(
        sent["achieved_per_s"].as_f64().unwrap() >= 0.95 * 2_500.0,
        "{sent}"
    );
    let received = finished(receiving, &report);
    assert_eq!(received["delivered"], 10_000, "{received}");
    assert_eq!(received["receive"]["slow_connections"], 12, "{received}");
    assert!(
        received["receive"]["budget_waits"].as_u64() > Some(0),
        "16 MiB for 96: {received}"
    );
    assert!(
        received["receive"]["bad_reasons"][0]
            .as_str()
            .unwrap()
            .contains("of a 8388608-byte frame and not the rest within the 2s read timeout"),
        "{received}"
    );
}

#[test]
fn a_connection_flood_past_the_cap_is_refused_and_counted() {
    let _cpu = exclusive();
    let dir = scratch("hostile-flood");
    let report = dir.join("recv.json");
    let receiving = Receiving::start(&[
        "--max-connections",
        "20",
        "--idle-timeout",
        "5s",
        "--json",
        report.to_str().unwrap(),
    ]);
    let base_fds = open_fds(receiving.pid());
    // 20 quiet peers take every slot (a quiet connection is no attack, and stays open) ...
    let mut quiet: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&receiving.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // ... so the next 30 are closed at once.
    let flood = Attack::start(&receiving.addr, 30, Kind::Partial { announce: 64 });
    let closed = flood.wait_closed(Duration::from_secs(5));
    let closed_by = all_closed_by(&closed).expect("every connection past the cap is closed");
    assert!(closed_by < Duration::from_secs(2), "{closed_by:?}");
    assert!(
        quiet.iter_mut().all(|q| {
            q.set_nonblocking(true).unwrap();
            matches!(q.read(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock)
        }),
        "the quiet ones are still open"
    );
    // Once a slot is free again, a legitimate sender gets in.
    quiet.truncate(19);
    std::thread::sleep(Duration::from_millis(200));
    legit_send(&receiving.addr, 2_000, 1_000, &dir);
    drop(quiet);
    assert!(fds_settle(receiving.pid(), base_fds) <= base_fds);
    let received = finished(receiving, &report);
    assert_eq!(received["receive"]["refused_connections"], 30, "{received}");
    assert_eq!(received["delivered"], 1_000);
}

#[test]
fn a_tcp_group_member_closes_stalled_producers_refuses_past_its_cap_and_keeps_working() {
    let _cpu = exclusive();
    let dir = scratch("hostile-worker-tcp");
    let report = dir.join("recv.json");
    let receiving = Receiving::start(&["--idle-timeout", "3s", "--json", report.to_str().unwrap()]);
    let mut worker = Node::start(&[
        "--in",
        "tcp://127.0.0.1:0",
        "--out",
        &receiving.addr,
        "--read-timeout",
        "1s",
        "--max-connections",
        "205",
        // Still running through both attacks, so its descriptors can be counted.
        "--idle-timeout",
        "5s",
    ]);
    let addr = worker.wait_for("producers connect to ");
    let pid = worker.child.id();
    // 200 slowloris producers (a byte every 200 ms) and a legitimate one, all under the cap.
    let slow = Kind::Slowloris {
        every: Duration::from_millis(200),
    };
    let (s, sent) = siege(pid, &addr, 200, slow, Duration::from_secs(10), || {
        legit_send(&addr, 5_000, 10_000, &dir)
    });
    println!("worker --in tcp://, 200 slowloris: {s}");
    // Unfixed: none was ever closed, each holding a thread and its buffer.
    let closed_by = s.closed_by.unwrap_or_else(|| panic!("{s}"));
    assert!(closed_by < Duration::from_secs(5), "1 s deadline: {s}");
    assert!(s.peak_mb < 60.0, "{s}");
    assert!(s.fds_after <= s.base_fds, "{s}");
    assert!(
        sent["achieved_per_s"].as_f64().unwrap() >= 0.95 * 5_000.0,
        "{sent}"
    );
    // 205 quiet producers take every slot (quiet is no attack), so the next 20 are closed at once.
    let quiet: Vec<TcpStream> = (0..205)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let flood = Attack::start(&addr, 20, Kind::Partial { announce: 64 });
    let flood_closed = all_closed_by(&flood.wait_closed(Duration::from_secs(3)));
    assert!(
        flood_closed.is_some_and(|d| d < Duration::from_secs(2)),
        "{flood_closed:?}"
    );
    drop(quiet);
    assert_eq!(worker.exit_code(30), Some(0), "{}", worker.log());
    let log = worker.log();
    assert!(
        log.contains(
            "producer connections: 200 closed for a bad frame (200 of them stalled), 20 refused"
        ),
        "{log}"
    );
    assert!(
        log.contains("tcp peer 127.0.0.1:")
            && log
                .contains("bytes of a 1024-byte frame and not the rest within the 1s read timeout"),
        "names the peer and what it did: {log}"
    );
    assert!(log.contains("(--max-connections)"), "{log}");
    let received = finished(receiving, &report);
    assert_eq!(received["delivered"], 10_000, "{received}");
    assert_eq!(received["lost"], 0, "{received}");
}

#[test]
fn the_initializer_closes_stalled_sources_and_keeps_routing() {
    let _cpu = exclusive();
    let dir = scratch("hostile-initializer");
    let (init, _, source, _) = cluster(
        "sleepy",
        "0ms",
        0,
        None,
        &["--read-timeout", "1s", "--buffer-budget", "16777216"],
    );
    let slow = Kind::Slowloris {
        every: Duration::from_millis(200),
    };
    let (s, ()) = siege(
        init.child.id(),
        &source,
        200,
        slow,
        Duration::from_secs(10),
        || {
            legit_send(&source, 5_000, 10_000, &dir);
        },
    );
    assert!(s.peak_mb < 60.0, "{s}");
    assert!(
        s.closed_by.is_some_and(|d| d < Duration::from_secs(5)),
        "{s}"
    );
    assert!(s.fds_after <= s.base_fds, "{s}");
    let partial = Kind::Partial { announce: 8 << 20 };
    let (s, ()) = siege(
        init.child.id(),
        &source,
        8,
        partial,
        Duration::from_secs(10),
        || (),
    );
    assert!(s.peak_mb < 60.0, "a 16 MiB budget: {s}");
    assert!(
        s.closed_by.is_some_and(|d| d < Duration::from_secs(5)),
        "{s}"
    );
    let metrics = common::scrape(&init);
    assert!(
        metrics.contains("plumbline_items_in_total 10000\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plumbline_source_slow_total 208\n"),
        "{metrics}"
    );
    assert!(
        init.log()
            .contains("bytes of a 1024-byte frame and not the rest within the 1s read timeout"),
        "{}",
        init.log()
    );
}

#[test]
fn peers_trickling_joins_do_not_hold_up_the_cluster() {
    let _cpu = exclusive();
    let init = common::Node::start(&[
        "--app",
        "sleepy",
        "--delay",
        "0ms",
        "--in",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--data",
        "127.0.0.1:0",
        "--cluster-initializer",
        "--worker-count",
        "2",
    ]);
    let control = init.control_addr();
    // Read one after another, ten joins trickled a byte a second would hold the cluster
    // 10 x 5 s before the real worker's turn.
    let trickle = Attack::start(
        &control,
        10,
        Kind::Slowloris {
            every: Duration::from_secs(1),
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let _joiner = common::Node::start(&[
        "--app",
        "sleepy",
        "--delay",
        "0ms",
        "--control",
        &control,
        "--name",
        "w2",
    ]);
    init.wait_for("ready; sources on ");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "formed after {:?}: {}",
        started.elapsed(),
        init.log()
    );
    let closed = trickle.wait_closed(Duration::from_secs(10));
    let closed_by = all_closed_by(&closed).expect("each trickled join is given up");
    assert!(
        closed_by < Duration::from_secs(8),
        "5 s to join: {closed_by:?}"
    );
}

#[test]
fn a_peer_that_never_answers_is_named_for_what_it_did_not_do() {
    // Accepts, then says nothing: the shutdown client names the wait, not an errno.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = plumbline(&["shutdown", &addr, "--timeout", "1s"]);
    common::assert_fails(&out, 1, "did not answer the shutdown: no reply within 1s");
    assert!(!stderr(&out).contains("os error"), "{}", stderr(&out));
}
