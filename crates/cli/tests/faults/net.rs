//! Scenarios 13–16: connections dropped by the seeded fault proxy, a partitioned cluster's
//! worker killed (and restarted with the same argv), a Redis Streams consumer killed with
//! entries pending, and a graceful cluster shutdown mid-run and idle.

use std::time::{Duration, Instant};

use plumbline_faults::nemesis::Nemesis;
use plumbline_faults::proxy::{schedule, FaultPlan, Proxy};
use plumbline_servers::{Kind, Server};

use crate::common::{
    assert_fails, cluster, exclusive, pipeline_distributor, pipeline_worker, plumbline, record_run,
    redis_cli, scratch, stderr, Node, PipelineCollector, Receiving,
};
use crate::kit::{check_dwc, json, scenario, u};

/// The proxy's plan: the first three connections are cut (some with an RST) somewhere in
/// their first 20 kB; later ones pass clean, so the run can finish.
fn drops() -> FaultPlan {
    FaultPlan {
        faulty: 3,
        cut_after: 1_000..20_000,
        reset_share: 0.5,
        delay: Duration::from_micros(200),
    }
}

#[test]
fn s13_dropped_worker_to_collector_connections_are_reconnected_and_lose_nothing() {
    let _cpu = exclusive();
    let mut row = scenario(13, "connection drops between stages, seeded and replayable");
    let dir = scratch("f13");
    let results_at = dir.join("results.jsonl");
    let collector = PipelineCollector::start(&["--results", results_at.to_str().unwrap()]);
    const SEED: u64 = 13;
    let upstream = collector
        .results
        .trim_start_matches("tcp://")
        .parse()
        .unwrap();
    let proxy = Proxy::start(upstream, SEED, drops()).unwrap();
    let via = format!("tcp://{}", proxy.addr);
    let report_at = dir.join("report.json");
    let (mut dist, endpoint) = pipeline_distributor(
        &collector.acks,
        &report_at,
        &[
            "--task",
            "C:400",
            "--delay",
            "2ms",
            "--workers",
            "2",
            "--lease",
            "2s",
        ],
    );
    let _w1 = pipeline_worker(&endpoint, &via, "w1", &[]);
    let _w2 = pipeline_worker(&endpoint, &via, "w2", &[]);
    let started = Instant::now();
    assert_eq!(dist.exit_code(60), Some(0), "{}", dist.log());
    let r = json(&report_at);
    let check = check_dwc(1..=400, &[&results_at]);
    assert!(check.valid(), "{check:?}");
    assert_eq!(u(&r["acked"]), 400);
    // The faults were the seed's, in its order: a failing run replays with the same seed.
    let cuts = proxy.cuts();
    assert!(!cuts.is_empty(), "the proxy cut nothing");
    let planned = schedule(SEED, &drops(), 3);
    for cut in &cuts {
        assert_eq!(Some(cut), planned.get(cut.conn as usize), "{cuts:?}");
    }
    // Reconnecting is not waiting out a lease per drop.
    assert!(started.elapsed() < Duration::from_secs(20));
    let at_most_once = sender_cut_is_counted(&dir);
    row.lost(check.lost)
        .duplicated(check.duplicated)
        .note(&format!(
            "{} seeded cuts (seed {SEED}) on worker->collector, 400 tasks; sender->receiver (at-most-once, no reconnect): {at_most_once} lost, all counted",
            cuts.len()
        ))
        .pass();
}

/// The at-most-once path of scenario 13: a sender → receiver connection cut by the proxy
/// mid-run. The sender fails with its count, the receiver delivers no partial frame, and every
/// message it did not get is counted lost. Returns how many.
fn sender_cut_is_counted(dir: &std::path::Path) -> u64 {
    const SEED: u64 = 31;
    let plan = FaultPlan {
        faulty: 1,
        cut_after: 100_000..400_000,
        reset_share: 0.0,
        delay: Duration::ZERO,
    };
    let recv_json = dir.join("recv.json");
    let receiving = Receiving::start(&[
        "--expect",
        "3000",
        "--idle-timeout",
        "2s",
        "--json",
        recv_json.to_str().unwrap(),
    ]);
    let proxy = Proxy::start(receiving.addr.parse().unwrap(), SEED, plan.clone()).unwrap();
    let out = plumbline(&[
        "send",
        "--host",
        &proxy.addr.to_string(),
        "--gen",
        "nonces",
        "--rate",
        "3000/s",
        "--messages",
        "3000",
        "--quiet",
    ]);
    let (code, _, err) = receiving.finish();
    assert_eq!(proxy.cuts(), schedule(SEED, &plan, 1), "the seed's one cut");
    assert_ne!(out.status.code(), Some(0), "the sender saw its peer go");
    assert!(stderr(&out).contains("failed after "), "{}", stderr(&out));
    assert_eq!(code, Some(1), "fewer than expected: {err}");
    let r = record_run(&recv_json);
    let (frames, lost) = (u(&r["receive"]["frames"]), u(&r["lost"]));
    assert_eq!(
        frames + lost,
        3000,
        "every message is received or counted lost: {r}"
    );
    assert_eq!(u(&r["duplicates"]), 0);
    // The cut lands inside a frame (1 056 bytes each): that frame is refused, not delivered.
    assert!(
        r["receive"]["bad_reasons"]
            .to_string()
            .contains("truncated"),
        "{r}"
    );
    lost
}

#[test]
fn s14_a_killed_cluster_worker_stops_the_run_with_its_losses_counted_not_a_wrong_total() {
    let _cpu = exclusive();
    let mut row = scenario(14, "stateful results after a worker crash (PIPE)");
    let dir = scratch("f14");
    let votes = dir.join("votes.msg");
    let out = plumbline(&["gen", "votes", "-o", votes.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recv_json = dir.join("recv.json");
    let receiving = Receiving::start(&[
        "--expect",
        "52",
        "--idle-timeout",
        "3s",
        "--json",
        recv_json.to_str().unwrap(),
    ]);
    let (mut init, workers, source, _) = cluster("votes", "50ms", 1, Some(&receiving.addr), &[]);
    // 52 votes at 20/s: the kill lands after about 26 (1.3 s).
    let mut sender = Node::spawn(&[
        "send",
        "--host",
        &source,
        "--file",
        votes.to_str().unwrap(),
        "--binary",
        "--msg-size",
        "9",
        "--messages",
        "52",
        "--rate",
        "20/s",
        "--quiet",
    ]);
    std::thread::sleep(Duration::from_millis(1300));
    let mut nemesis = Nemesis::new();
    nemesis.kill(workers[0].child.id(), "worker w2").unwrap();
    let killed = Instant::now();
    assert_eq!(init.exit_code(10), Some(1), "{}", init.log());
    let detect = killed.elapsed().as_secs_f64();
    assert!(init.log().contains("worker w2 died"), "{}", init.log());
    // No exactly-once claim: the receiver reports what never arrived and fails.
    let (code, text, _) = receiving.finish();
    assert_eq!(code, Some(1), "{text}");
    let r = record_run(&recv_json);
    let lost = 52 - u(&r["receive"]["frames"]);
    assert!(lost > 0, "{text}");
    let _ = sender.exit_code(10);
    // The same argv again finds no cluster to join: refused with a named error, not a hang.
    let control = init.control_addr();
    let argv = [
        "worker",
        "--app",
        "votes",
        "--delay",
        "50ms",
        "--control",
        &control,
        "--name",
        "w2",
    ];
    let out = nemesis.restart("worker w2", &argv, plumbline, |_| 0);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    row.lost(lost)
        .detect_s(detect)
        .note("no resilience mode: the cluster stops naming w2 and the receiver counts the loss; restart cannot rejoin, exactly-once is not claimed")
        .pass();
}

#[cfg(feature = "redis")]
#[test]
fn s15_a_redis_streams_consumer_killed_with_entries_pending_loses_nothing() {
    let Some(server) = Server::for_test(Kind::Redis, "s15") else {
        return;
    };
    let _cpu = exclusive();
    let mut row = scenario(
        15,
        "broker faults: Redis Streams consumer killed with entries pending",
    );
    let dir = scratch("f15");
    let url = format!("redis://{}/f15", server.addr);
    const ITEMS: u64 = 600;
    crate::common::fill(&url, ITEMS);
    let recv_json = dir.join("recv.json");
    let receiver = Receiving::start(&[
        "--idle-timeout",
        "6s",
        "--json",
        recv_json.to_str().unwrap(),
    ]);
    let worker = |name: &str| {
        Node::start(&[
            "--in",
            &url,
            "--delay",
            "10ms",
            "--out",
            &receiver.addr,
            "--name",
            name,
            "--idle-timeout",
            "8s",
            "--redeliver-after",
            "1s",
        ])
    };
    let mut victim = worker("victim");
    let survivor = worker("survivor");
    victim.wait_for("consuming");
    survivor.wait_for("consuming");
    // Mid-run, and at a moment the victim holds entries (between batches it holds none, and
    // then there is nothing to reclaim).
    std::thread::sleep(Duration::from_millis(500));
    // Frozen first, so the entries it is seen holding are still unacked when it dies (seen
    // holding, then killed, it could ack its batch in between and leave nothing to claim).
    let mut nemesis = Nemesis::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        nemesis.pause(victim.child.id(), "consumer victim").unwrap();
        if held_by(&server.addr, "f15", "victim") > 0 {
            break;
        }
        nemesis
            .resume(victim.child.id(), "consumer victim")
            .unwrap();
        assert!(Instant::now() < deadline, "the victim never held an entry");
        std::thread::sleep(Duration::from_millis(5));
    }
    nemesis.kill(victim.child.id(), "consumer victim").unwrap();
    let _ = victim.child.wait();
    let first = redis_first(&server.addr, &["XPENDING", "f15", "plumbline"]);
    let (_, out, err) = receiver.finish();
    let r = record_run(&recv_json);
    let duplicates = u(&r["duplicates"]);
    assert_eq!(u(&r["lost"]), 0, "{out}\n{err}");
    assert_eq!(u(&r["receive"]["frames"]) - duplicates, ITEMS, "{out}");
    let done = survivor.wait_for("done:");
    let redelivered: u64 = done
        .split("items (")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        redelivered > 0,
        "the victim's pending entries were claimed: {done}"
    );
    assert!(
        first.parse::<u64>().is_ok_and(|n| n > 0),
        "XPENDING showed the victim's entries after the kill: {first:?}"
    );
    row.lost(0)
        .duplicated(duplicates)
        .note("Redis part only (600 entries); Kafka with 3 brokers, RF=3, leader kill and acks=1 need a cluster this machine lacks")
        .pass();
}

/// The first line redis-cli prints for `args`.
fn redis_first(addr: &str, args: &[&str]) -> String {
    redis_cli(addr, args).into_iter().next().unwrap_or_default()
}

/// Entries of `stream` the group's `consumer` holds unacked (XPENDING's summary lists each
/// consumer's name, then its count).
fn held_by(addr: &str, stream: &str, consumer: &str) -> u64 {
    let lines = redis_cli(addr, &["XPENDING", stream, "plumbline"]);
    lines
        .iter()
        .position(|l| l == consumer)
        .and_then(|i| lines.get(i + 1)?.parse().ok())
        .unwrap_or(0)
}

#[cfg(feature = "redis")]
#[test]
fn s15b_a_group_member_whose_sink_dies_leaves_the_undelivered_for_others() {
    let Some(server) = Server::for_test(Kind::Redis, "s15b") else {
        return;
    };
    let _cpu = exclusive();
    let mut row = scenario(15, "worker --in whose sink dies: nothing acked unsent");
    let url = format!("redis://{}/f15b", server.addr);
    crate::common::fill(&url, 2000);
    let mut receiver = Receiving::start(&[]);
    let mut worker = Node::start(&[
        "--in",
        &url,
        "--delay",
        "2ms",
        "--out",
        &receiver.addr,
        "--idle-timeout",
        "3s",
    ]);
    worker.wait_for("consuming");
    std::thread::sleep(Duration::from_millis(1500));
    Nemesis::new().kill(receiver.pid(), "receiver").unwrap();
    let code = worker.exit_code(30);
    receiver.reap();
    // "… failed (…) after N results reached it; the M items in hand were left …"
    let failed = worker.wait_for("the sink --out");
    let results: u64 = failed
        .split(" after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no result count in {failed:?}"));
    let left: u64 = redis_first(&server.addr, &["XLEN", "f15b"])
        .parse()
        .unwrap();
    assert_ne!(
        code,
        Some(0),
        "a run whose sink died failed: {}",
        worker.log()
    );
    assert!(
        left + results >= 2000,
        "{results} results delivered and {left} entries left of 2000: the rest were acked unsent"
    );
    row.lost(2000 - (left + results).min(2000)).pass();
}

#[test]
fn s16_a_graceful_shutdown_mid_run_and_idle_exits_cleanly_and_frees_its_ports() {
    let _cpu = exclusive();
    let mut row = scenario(16, "graceful cluster shutdown");
    let receiving = Receiving::start(&["--idle-timeout", "3s"]);
    let (mut init, mut workers, source, external) =
        cluster("sleepy", "1ms", 1, Some(&receiving.addr), &[]);
    let mut sender = Node::spawn(&[
        "send",
        "--host",
        &source,
        "--gen",
        "nonces",
        "--rate",
        "1000/s",
        "--messages",
        "20000",
    ]);
    std::thread::sleep(Duration::from_millis(800));
    let asked = Instant::now();
    let out = plumbline(&["shutdown", &external]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(init.exit_code(10), Some(0), "{}", init.log());
    assert_eq!(workers[0].exit_code(10), Some(0), "{}", workers[0].log());
    let took = asked.elapsed().as_secs_f64();
    assert!(
        init.log().contains("shut down: "),
        "final accounting: {}",
        init.log()
    );
    // The sender sees its peer close: a non-zero exit with its counts.
    assert_ne!(sender.exit_code(10), Some(0));
    assert!(sender.log().contains("failed after "), "{}", sender.log());
    // Nothing is left listening: the ports bind again at once.
    for addr in [&source, &external] {
        std::net::TcpListener::bind(addr.as_str())
            .unwrap_or_else(|e| panic!("{addr} still taken: {e}"));
    }
    assert_fails(&plumbline(&["shutdown", &external]), 1, "does not answer");
    let _ = receiving.finish();
    // Idle: formed, nothing sent, shut down.
    let (mut init, mut workers, _, external) = cluster("sleepy", "1ms", 1, None, &[]);
    assert!(plumbline(&["shutdown", &external]).status.success());
    assert_eq!(init.exit_code(10), Some(0), "{}", init.log());
    assert_eq!(workers[0].exit_code(10), Some(0));
    row.detect_s(took)
        .note("detect_s = shutdown asked to every process exited; 'shutdown ADDR' is the seed's cluster_shutdown; the sender exits 1 with counts (no --reconnect)")
        .pass();
}
