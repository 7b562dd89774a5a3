//! `plumbline capacity` on systems outside plumbline, end to end on real brokers started on
//! free ports: a broker's consumer group of plumbline's own members (`--cluster URL`, Redis
//! streams, NATS JetStream, Kafka when tansu is installed) and a user's own app
//! (`--to/--from/--spawn`, the redis-py example), each at 1 and 2 workers with short windows.
//! Bounds are generous: a noisy 2-core machine must not fail them, a broken engine must.

mod common;

use common::{exclusive, plumbline, stderr};
use plumbline_servers::{Kind, Server};

const PYTHON_APP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/python/consumer_group.py"
);

/// Runs `capacity` with short trials and `extra`, and returns its JSON report.
fn capacity(name: &str, extra: &[&str]) -> serde_json::Value {
    let _cpu = exclusive();
    let json_dir = common::scratch(name);
    let json = json_dir.join("capacity.json");
    let mut args = vec![
        "capacity",
        "--warmup",
        "500ms",
        "--window",
        "1500ms",
        // Coarser than the default 2 %: fewer trials, and the bounds are far wider anyway.
        "--resolution",
        "5%",
        "--no-report",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = plumbline(&args);
    assert!(out.status.success(), "capacity failed: {}", stderr(&out));
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// Each count's capacity within 0.5–1.1 of its ideal, 2 workers above 1, no trial lost items.
fn assert_scales(report: &serde_json::Value) {
    let points = report["capacity"]["curves"][0]["points"]
        .as_array()
        .unwrap();
    assert_eq!(points.len(), 2, "{report:#}");
    let mut capacities = Vec::new();
    for p in points {
        let ratio = p["capacity_vs_ideal"].as_f64().unwrap_or(0.0);
        assert!(
            (0.5..=1.1).contains(&ratio),
            "{} worker(s): capacity ÷ ideal {ratio}: {p:#}",
            p["workers"]
        );
        for t in common::trials(report, p) {
            assert_eq!(t["lost"], 0, "a trial lost items: {t:#}");
        }
        capacities.push(p["capacity"].as_f64().unwrap());
    }
    assert!(capacities[1] > capacities[0], "{capacities:?}");
}

fn group(kind: Kind, test: &str, url: impl Fn(&str) -> String) {
    let Some(server) = Server::for_test(kind, test) else {
        return;
    };
    let cluster = url(&server.addr);
    let report = capacity(
        test,
        &["--cluster", &cluster, "--workers", "1,2", "--delay", "10ms"],
    );
    assert_scales(&report);
    assert!(
        report["capacity"]["curves"][0]["label"]
            .as_str()
            .unwrap()
            .ends_with(&format!("on {cluster}")),
        "{report:#}"
    );
}

#[test]
fn a_redis_consumer_group_of_plumbline_members_scales_with_its_members() {
    group(Kind::Redis, "redis_group", |a| format!("redis://{a}/jobs"));
}

#[test]
fn a_jetstream_consumer_group_of_plumbline_members_scales_with_its_members() {
    group(Kind::NatsJetStream, "jetstream_group", |a| {
        format!("nats://{a}/jobs?jetstream=1")
    });
}

#[cfg(feature = "kafka")]
#[test]
fn a_kafka_consumer_group_of_plumbline_members_scales_with_its_members() {
    group(Kind::Kafka, "kafka_group", |a| format!("kafka://{a}/jobs"));
}

/// Whether python3 can import redis-py; says SKIPPED when not (the test script installs it).
fn redis_py(test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import redis"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert_ne!(
            std::env::var("PLUMBLINE_REQUIRE_BROKERS").as_deref(),
            Ok("1"),
            "{test}: python3 with redis-py is required (pip install redis)"
        );
        eprintln!("SKIPPED {test}: python3 cannot import redis (pip install redis)");
    }
    ok
}

/// A Redis server, and the flags that point `capacity` at the app on it (`--to` its in
/// stream, `--from` its out stream, `--spawn` the command starting one copy); `None` (said)
/// without redis-py or redis-server.
fn python_app(test: &str) -> Option<(Server, Vec<String>)> {
    if !redis_py(test) {
        return None;
    }
    let server = Server::for_test(Kind::Redis, test)?;
    let flags = vec![
        "--to".into(),
        format!("redis://{}/in", server.addr),
        "--from".into(),
        format!("redis://{}/out", server.addr),
        "--spawn".into(),
        format!("python3 {PYTHON_APP}"),
    ];
    Some((server, flags))
}

/// `flags` then `extra`, as `capacity` takes them.
fn with<'a>(flags: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    flags
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

#[test]
fn a_python_consumer_group_app_scales_with_its_copies_against_its_known_cost() {
    let test = "python_group";
    let Some((_server, flags)) = python_app(test) else {
        return;
    };
    let report = capacity(
        test,
        // 20 ms: Python's own cost per message (two Redis calls) stays a small share.
        &with(&flags, &["--per-item", "20ms", "--workers", "1,2"]),
    );
    assert_scales(&report);
}

#[test]
fn without_a_known_cost_a_probe_picks_the_start_and_there_is_no_ideal() {
    let test = "python_probe";
    let Some((_server, flags)) = python_app(test) else {
        return;
    };
    // The app sleeps 10 ms per message by default: at most 100/s on one copy.
    let report = capacity(test, &with(&flags, &["--workers", "1"]));
    let point = &report["capacity"]["curves"][0]["points"][0];
    let capacity = point["capacity"].as_f64().unwrap();
    assert!((50.0..=110.0).contains(&capacity), "{point:#}");
    assert!(point["capacity_vs_ideal"].is_null(), "{point:#}");
    assert!(point["ideal_rate"].is_null(), "no ideal: {point:#}");
}

#[test]
fn a_copy_that_exits_mid_run_fails_the_run_naming_it_and_its_status() {
    let test = "copy_dies";
    let Some(server) = Server::for_test(Kind::Redis, test) else {
        return;
    };
    let (to, from) = (
        format!("redis://{}/in", server.addr),
        format!("redis://{}/out", server.addr),
    );
    let out = plumbline(&[
        "capacity",
        "--to",
        &to,
        "--from",
        &from,
        "--spawn",
        "sh -c 'echo giving up >&2; sleep 0.3; exit 3'",
        "--per-item",
        "10ms",
        "--workers",
        "1",
        "--warmup",
        "500ms",
        "--window",
        "1500ms",
        "--no-report",
        "-q",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("copy 0 of `sh -c 'echo giving up >&2; sleep 0.3; exit 3'` exited mid-run with exit status: 3; its last words: giving up"),
        "{err}{}",
        common::stdout(&out)
    );
}
