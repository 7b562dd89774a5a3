//! `plumbline elastic` end to end: a consumer group of plumbline's own members grown and
//! shrunk mid-run on real brokers started on free ports, and the TCP cluster grown and shrunk
//! with its partitions' state. Every change is reported (when, from, to, how, pause, lag peak,
//! recovery) and nothing is lost on the at-least-once brokers, whether members leave
//! gracefully (SIGTERM) or are killed, nor on the TCP cluster, whose keys' state stays
//! continuous. Bounds are generous: the figures come from a noisy 2-core machine; the
//! behaviour must not.

mod common;

use common::{exclusive, plumbline, stderr, Node};
use plumbline_servers::{Kind, Server};

/// Runs `elastic` at 200/s of 10 ms items on `cluster` with `extra`; the one run of its run
/// record.
fn elastic(name: &str, cluster: &str, extra: &[&str]) -> serde_json::Value {
    elastic_at(name, cluster, "200/s", extra)
}

fn elastic_at(name: &str, cluster: &str, rate: &str, extra: &[&str]) -> serde_json::Value {
    let _cpu = exclusive();
    let mut args = vec![
        "--cluster",
        cluster,
        "--delay",
        "10ms",
        "--rate",
        rate,
        "--no-report",
    ];
    args.extend_from_slice(extra);
    let record = common::command_json(name, "elastic", &args);
    assert_eq!(record["schema"], "plumbline.run/3");
    assert_eq!(record["command"], "elastic");
    assert_eq!(
        record["runs"].as_array().map(Vec::len),
        Some(1),
        "{record:#}"
    );
    record["runs"][0].clone()
}

/// The changes as (from, to, how), each applied within a second of its time in the schedule.
fn changes(report: &serde_json::Value, times: &[f64]) -> Vec<(u64, u64, String)> {
    let changes = report["elastic"]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), times.len(), "{report:#}");
    changes
        .iter()
        .zip(times)
        .map(|(c, &at)| {
            let applied = c["at_s"].as_f64().unwrap();
            assert!((at..at + 1.0).contains(&applied), "{c:#}");
            let (before, peak) = (
                c["lag_before"].as_f64().unwrap(),
                c["lag_peak"].as_f64().unwrap(),
            );
            assert!(
                peak >= before && c["pause_s"].as_f64().unwrap() >= 0.0,
                "{c:#}"
            );
            (
                c["from"].as_u64().unwrap(),
                c["to"].as_u64().unwrap(),
                c["how"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_redis_group_grown_and_shrunk_gracefully_loses_nothing_and_recovers() {
    let Some(server) = Server::for_test(Kind::Redis, "elastic_redis") else {
        return;
    };
    let cluster = format!("redis://{}/jobs", server.addr);
    let report = elastic(
        "elastic-redis",
        &cluster,
        &["--workers", "3@0s,4@2s,3@4s", "--duration", "6s"],
    );
    assert_eq!(
        changes(&report, &[2.0, 4.0]),
        [(3, 4, "join".into()), (4, 3, "graceful".into())]
    );
    assert_eq!(report["sent"], 1200, "{report:#}");
    assert_eq!(report["lost"], 0, "a graceful leave lost items: {report:#}");
    assert_eq!(report["delivered"], 1200);
    for c in report["elastic"]["changes"].as_array().unwrap() {
        assert!(
            c["recovered_s"].is_number(),
            "4 or 3 members keep up with 200/s: {c:#}"
        );
    }
}

/// A member killed with items in hand: the group reclaims them (Redis `XAUTOCLAIM` after its
/// 5 s idle time), so nothing is lost; what ran twice is counted.
#[test]
fn a_redis_member_killed_mid_run_loses_nothing() {
    let Some(server) = Server::for_test(Kind::Redis, "elastic_kill") else {
        return;
    };
    let cluster = format!("redis://{}/jobs", server.addr);
    let report = elastic(
        "elastic-kill",
        &cluster,
        &[
            "--workers",
            "4@0s,3@1s",
            "--leave",
            "kill",
            "--duration",
            "8s",
        ],
    );
    assert_eq!(changes(&report, &[1.0]), [(4, 3, "kill".into())]);
    assert_eq!(report["lost"], 0, "{report:#}");
}

/// A Kafka member that leaves closes its consumer (revoke, then LeaveGroup) before it exits, so
/// the group moves its partitions at once; exiting still in the group left them to wait out the
/// session timeout, and a short run counted their items lost. tansu holds each rejoining
/// follower for 3 s (its `PAUSE_MS`), so the change pauses part of the group that long: the
/// rate leaves 3 members room to drain it.
#[cfg(feature = "kafka")]
#[test]
fn a_kafka_group_shrunk_gracefully_hands_its_partitions_over_and_loses_nothing() {
    let Some(server) = Server::for_test(Kind::Kafka, "elastic_kafka") else {
        return;
    };
    let cluster = format!("kafka://{}/jobs", server.addr);
    let report = elastic_at(
        "elastic-kafka",
        &cluster,
        "100/s",
        &["--workers", "4@0s,3@1s", "--duration", "9s"],
    );
    assert_eq!(changes(&report, &[1.0]), [(4, 3, "graceful".into())]);
    assert_eq!(report["lost"], 0, "a graceful leave lost items: {report:#}");
    let change = &report["elastic"]["changes"][0];
    assert!(
        change["recovered_s"].is_number(),
        "3 members drain the rebalance's backlog before the load ends: {change:#}"
    );
}

/// A JetStream member's pull stream keeps a pull request open at the server, and what it
/// delivers as the member leaves waits out AckWait (5 s) before another member gets it: the
/// run waits that long for its last items, so they count late, never lost.
#[test]
fn a_jetstream_group_grown_and_shrunk_loses_nothing() {
    let Some(server) = Server::for_test(Kind::NatsJetStream, "elastic_jetstream") else {
        return;
    };
    let cluster = format!("nats://{}/jobs?jetstream=1", server.addr);
    let report = elastic(
        "elastic-jetstream",
        &cluster,
        &["--workers", "3@0s,4@2s,3@4s", "--duration", "6s"],
    );
    assert_eq!(changes(&report, &[2.0, 4.0]).len(), 2);
    assert_eq!(report["lost"], 0, "{report:#}");
}

/// A graceful leave is SIGTERM, as `kill` and Kubernetes send it: the member finishes and acks
/// what it took and exits by itself. Dying of the signal left an item pending in the group,
/// for another member to reclaim only after the idle time (lost in a short run).
#[test]
fn a_member_told_to_stop_with_sigterm_finishes_and_exits_by_itself() {
    let Some(server) = Server::for_test(Kind::Redis, "elastic_sigterm") else {
        return;
    };
    let url = format!("redis://{}/jobs", server.addr);
    let mut member = Node::start(&["--in", &url, "--delay", "1ms"]);
    member.wait_for("] consuming ");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &member.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(
        member.exit_code(10).is_some(),
        "the member died of SIGTERM instead of stopping: {}",
        member.log()
    );
    assert!(member.log().contains("interrupted"), "{}", member.log());
}

#[test]
fn a_schedule_that_cannot_be_run_is_refused_before_anything_starts() {
    for (args, says) in [
        (vec!["--workers", "2@0s,0@5s"], "at least 1"),
        (vec!["--workers", "2@3s"], "the first step is at 3s"),
        (
            vec!["--workers", "2@0s,3@20s", "--duration", "10s"],
            "is not before the load ends",
        ),
        (vec!["--workers", "2@0s", "--leave", "drain"], "graceful"),
        (
            vec![
                "--workers",
                "1@0s",
                "--autoscale",
                "1..4",
                "--busy-target",
                "1.5",
            ],
            "busy fraction at most 1",
        ),
    ] {
        let mut all = vec!["elastic", "--cluster", "redis://127.0.0.1:1/jobs"];
        all.extend(args.iter());
        let out = plumbline(&all);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// From one worker, the autoscaler between 1 and 4 aiming at 20 items of lag each, syncing
/// every second, for 6 s.
const AUTOSCALED_6S: [&str; 10] = [
    "--workers",
    "1@0s",
    "--duration",
    "6s",
    "--autoscale",
    "1..4",
    "--lag-target",
    "20",
    "--autoscale-speed",
    "15",
];

#[test]
fn an_autoscaled_redis_group_grows_on_its_lag_and_loses_nothing() {
    let Some(server) = Server::for_test(Kind::Redis, "elastic_autoscale") else {
        return;
    };
    let cluster = format!("redis://{}/jobs", server.addr);
    // One member does ~100 items/s of 10 ms; 200/s needs two or more. Sync every second.
    let report = elastic("elastic-autoscale", &cluster, &AUTOSCALED_6S);
    let autoscale = &report["elastic"]["autoscale"];
    let decisions = autoscale["decisions"].as_array().expect("decisions");
    assert!(decisions.len() >= 3, "one a second: {autoscale:#}");
    let first = &report["elastic"]["changes"][0];
    assert_eq!(first["from"], 1, "{report:#}");
    assert!(first["to"].as_u64().unwrap() >= 2, "{report:#}");
    assert!(
        first["at_s"].as_f64().unwrap() < 3.0,
        "it reacts within a few sync periods: {report:#}"
    );
    assert!(
        decisions.iter().all(|d| d["to"].as_u64().unwrap() <= 4),
        "never above MAX: {autoscale:#}"
    );
    let used = autoscale["replica_seconds"].as_f64().unwrap();
    let ideal = autoscale["ideal_replica_seconds"].as_f64().unwrap();
    assert!(
        (ideal - 12.0).abs() < 1e-6,
        "200/s × 10 ms × 6 s: {autoscale:#}"
    );
    assert!(used > 6.0 && used <= 24.0, "{autoscale:#}");
    // Lag passes 20 items within ~0.2 s of one member falling behind; the first change
    // answers it within a few sync periods, and lag stays over target only around it.
    let reacted = first["reaction_s"].as_f64().expect("it answered a backlog");
    assert!(reacted > 0.0 && reacted < 3.0, "{report:#}");
    let over = autoscale["over_target_s"].as_f64().unwrap();
    assert!(over > 0.0 && over < 6.0, "{autoscale:#}");
    assert_eq!(report["lost"], 0, "{report:#}");
}

/// HPA's utilisation rule: 200/s of 10 ms is two members' work. Aiming at 50 % busy, the
/// saturated group doubles (1 → 2 → 4; draining the backlog keeps four busy enough to grow
/// again), and once the backlog is gone the busy fraction it reads is the load's (2 ÷ the
/// members) and asks for four, which the scale-down window holds off.
#[test]
fn an_autoscaler_on_busy_fraction_grows_a_saturated_group_and_reads_the_loads_share() {
    let Some(server) = Server::for_test(Kind::Redis, "elastic_busy") else {
        return;
    };
    let cluster = format!("redis://{}/jobs", server.addr);
    let report = elastic(
        "elastic-busy",
        &cluster,
        &[
            "--workers",
            "1@0s",
            "--duration",
            "8s",
            "--autoscale",
            "1..6",
            "--busy-target",
            "0.5",
            "--autoscale-speed",
            "15",
        ],
    );
    let autoscale = &report["elastic"]["autoscale"];
    assert_eq!(autoscale["busy_target"], 0.5, "{autoscale:#}");
    assert!(autoscale["lag_per_replica"].is_null(), "{autoscale:#}");
    assert!(autoscale["over_target_s"].is_null(), "{autoscale:#}");
    let decisions = autoscale["decisions"].as_array().expect("decisions");
    let (first, last) = (&decisions[0], decisions.last().unwrap());
    assert!(
        first["busy"].as_f64().unwrap() > 0.6 && first["to"] == 2,
        "one member at 200/s is saturated: {autoscale:#}"
    );
    for d in &decisions[decisions.len() - 2..] {
        let (busy, members) = (d["busy"].as_f64().unwrap(), d["from"].as_f64().unwrap());
        assert!(
            (busy - 2.0 / members).abs() < 0.1,
            "two members' work over {members}: {autoscale:#}"
        );
    }
    let asked = last["recommended"].as_u64().unwrap();
    assert!((3..=5).contains(&asked), "asks for about 4: {autoscale:#}");
    assert!(
        decisions.iter().all(|d| d["to"].as_u64().unwrap() <= 6),
        "never above MAX: {autoscale:#}"
    );
    assert_eq!(report["lost"], 0, "{report:#}");
}

/// Seed 003's day under the HPA emulation: the group grows through the morning and shrinks
/// again in the evening, and nothing is lost on the way. One member does ~100 items/s; the
/// day peaks at 400/s (noon of 12 s at hour 8, again at hour 17) and ends at 3 % of it.
#[test]
fn an_autoscaled_group_follows_a_day_night_load_up_and_back_down() {
    let Some(server) = Server::for_test(Kind::Redis, "elastic_day_night") else {
        return;
    };
    let cluster = format!("redis://{}/jobs", server.addr);
    let report = elastic_at(
        "elastic-day-night",
        &cluster,
        "400/s",
        &[
            "--shape",
            "day-night",
            "--workers",
            "1@0s",
            "--duration",
            "12s",
            "--autoscale",
            "1..6",
            "--lag-target",
            "20",
            // Sync every 75 ms, scale down after 1.5 s of lower recommendations.
            "--autoscale-speed",
            "200",
        ],
    );
    assert_eq!(report["elastic"]["shape"], "day-night", "{report:#}");
    assert_eq!(report["elastic"]["peak_per_s"], 400.0);
    let mean = report["target_per_s"].as_f64().unwrap();
    assert!(mean > 150.0 && mean < 250.0, "the day's mean: {report:#}");
    let achieved = report["achieved_per_s"].as_f64().unwrap();
    assert!(
        (achieved / mean - 1.0).abs() < 0.1,
        "sent as shaped: {achieved} of {mean}/s"
    );
    let changes = report["elastic"]["changes"].as_array().unwrap();
    let at = |c: &serde_json::Value| c["at_s"].as_f64().unwrap();
    let first = &changes[0];
    assert_eq!(first["how"], "join", "{report:#}");
    assert!(at(first) < 6.0, "the morning grows the group: {report:#}");
    let peak = changes
        .iter()
        .filter_map(|c| c["to"].as_u64())
        .max()
        .unwrap();
    assert!(peak >= 3, "noon needs 3 or more: {report:#}");
    let evening = changes
        .iter()
        .filter(|c| at(c) > 9.0 && c["how"] == "graceful")
        .count();
    assert!(evening > 0, "the evening shrinks it: {report:#}");
    let last = changes.last().unwrap()["to"].as_u64().unwrap();
    assert!(last < peak, "the night ends below noon's count: {report:#}");
    assert_eq!(report["lost"], 0, "{report:#}");
}

/// The state continuity and migrations of a TCP-cluster run: every result checked, none out
/// of step, nothing lost; the migrations, each as (owners after it, partitions moved).
fn state_moved_intact(report: &serde_json::Value) -> Vec<(u64, u64)> {
    let e = &report["elastic"];
    assert_eq!(report["lost"], 0, "{report:#}");
    assert_eq!(report["duplicates"], 0, "{report:#}");
    assert_eq!(report["delivered"], report["sent"], "{report:#}");
    let continuity = &e["continuity"];
    assert_eq!(continuity["violations"], 0, "{continuity:#}");
    assert_eq!(
        continuity["checked"], report["sent"],
        "every result's state checked: {continuity:#}"
    );
    e["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .map(|m| {
            let hold = m["longest_hold_s"].as_f64().unwrap();
            assert!(
                hold >= 0.0 && hold <= m["took_s"].as_f64().unwrap(),
                "{m:#}"
            );
            (m["workers"].as_u64().unwrap(), m["moved"].as_u64().unwrap())
        })
        .collect()
}

/// Seed 000's sleepy nonces on the TCP cluster, 2 → 4 → 2 under a steady rate: the joiners
/// start with `--join-running`, the leavers are shrunk through the initializer, and each
/// moving partition's count moves with it (60 partitions: 20 then 15 move on the way up, 15
/// then 20 on the way down, one worker at a time).
#[test]
fn the_tcp_cluster_grown_and_shrunk_mid_run_moves_each_partitions_state_and_loses_nothing() {
    let report = elastic_at(
        "elastic-tcp",
        "processes",
        "150/s",
        &[
            "--step",
            "partitioned",
            "--workers",
            "2@0s,4@1s,2@2.5s",
            "--duration",
            "4s",
        ],
    );
    assert_eq!(
        changes(&report, &[1.0, 2.5]),
        [(2, 4, "join".into()), (4, 2, "graceful".into())]
    );
    assert_eq!(report["sent"], 600, "{report:#}");
    assert_eq!(
        state_moved_intact(&report),
        [(3, 20), (4, 15), (3, 15), (2, 20)],
        "{report:#}"
    );
    assert_eq!(report["elastic"]["cluster"], "processes");
}

/// The emulated HPA on the TCP cluster: one worker cannot keep up with 200/s of 10 ms, so
/// the lag grows and the autoscaler adds workers; the state moves with their partitions.
#[test]
fn an_autoscaled_tcp_cluster_grows_on_its_lag_with_every_keys_state_intact() {
    let report = elastic(
        "elastic-tcp-autoscale",
        "processes",
        &[&["--step", "partitioned"], &AUTOSCALED_6S[..]].concat(),
    );
    let first = &report["elastic"]["changes"][0];
    assert_eq!(first["from"], 1, "{report:#}");
    assert!(first["to"].as_u64().unwrap() >= 2, "{report:#}");
    let migrations = state_moved_intact(&report);
    assert!(
        migrations
            .first()
            .is_some_and(|&(owners, moved)| owners >= 2 && moved > 0),
        "{report:#}"
    );
}

#[test]
fn the_tcp_cluster_refuses_killed_members_and_other_engines_refuse_to_resize() {
    for (cluster, leave, says) in [
        ("processes", "kill", "leave gracefully"),
        ("threads", "graceful", "or the TCP cluster"),
    ] {
        let out = plumbline(&[
            "elastic",
            "--cluster",
            cluster,
            "--workers",
            "2@0s,1@2s",
            "--leave",
            leave,
        ]);
        assert!(!out.status.success(), "{cluster} {leave} was accepted");
        assert!(stderr(&out).contains(says), "{cluster}: {}", stderr(&out));
    }
}
