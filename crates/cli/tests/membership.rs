//! The TCP cluster growing and shrinking while load flows (issue 15, section 1): a
//! `--join-running` worker takes over partitions with their state, `plumbline shrink` hands a
//! worker's partitions back, and `receive --continuity` checks that every key's state
//! advanced by exactly one step per item across each move, and names the key where a planted
//! fault broke it. Timings here are generous: they show behaviour, the figures are the
//! closing note's.

mod common;

use common::{assert_fails, cluster, exclusive, plumbline, stderr, Node, Receiving};

/// A joiner of the running cluster at `control`.
fn join_running(
    app: &str,
    delay: &str,
    control: &str,
    out: &str,
    name: &str,
    extra: &[&str],
) -> Node {
    let mut args = vec![
        "--app",
        app,
        "--delay",
        delay,
        "--control",
        control,
        "--out",
        out,
        "--name",
        name,
        "--join-running",
    ];
    args.extend_from_slice(extra);
    Node::start(&args)
}

/// Sends `messages` of `gen` at `rate` on a thread of its own (the run goes on meanwhile).
fn send_in_background(
    source: &str,
    gen: &str,
    rate: &str,
    messages: u64,
) -> std::thread::JoinHandle<std::process::Output> {
    let (source, gen, rate) = (source.to_string(), gen.to_string(), rate.to_string());
    std::thread::spawn(move || {
        plumbline(&[
            "send",
            "--host",
            &source,
            "--gen",
            &gen,
            "--rate",
            &rate,
            "--messages",
            &messages.to_string(),
            "--quiet",
        ])
    })
}

fn shrink(external: &str, worker: &str) -> std::process::Output {
    plumbline(&["shrink", external, "--worker", worker])
}

/// Items the initializer has routed so far (its Prometheus count).
fn routed(init: &Node) -> u64 {
    common::scrape(init)
        .lines()
        .find_map(|l| l.strip_prefix("plumbline_items_in_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Waits (up to 20 s) until the initializer has routed `n` items.
fn wait_routed(init: &Node, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let routed = routed(init);
        if routed >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{routed} of {n} routed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// How many items a worker's closing line says it did (`done: N items`).
fn items_done(worker: &Node) -> u64 {
    worker
        .wait_for("done: ")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no item count in {}", worker.log()))
}

#[test]
fn seed_002s_votes_grown_from_one_worker_to_two_mid_run_end_at_three_with_state_continuous() {
    let _cpu = exclusive();
    let receiving = Receiving::start(&[
        "--print",
        "--continuity",
        "--expect",
        "52",
        "--idle-timeout",
        "20s",
    ]);
    let (init, _none, source, external) = cluster(
        "votes",
        "20ms",
        0,
        Some(&receiving.addr),
        &["--result-versions"],
    );
    // 52 votes, two per letter (counts 1 then 2), over 1.3 s; the second worker joins once
    // the first round is in, so the partitions it takes over move with their totals.
    let sending = send_in_background(&source, "votes", "40/s", 52);
    let control = init.control_addr();
    wait_routed(&init, 26);
    let mut roo = join_running(
        "votes",
        "20ms",
        &control,
        &receiving.addr,
        "roo",
        &["--result-versions"],
    );
    let moved = init.wait_for("membership now initializer, roo: ");
    assert!(moved.starts_with("13 partition(s) moved"), "{moved}");
    let sent = sending.join().unwrap();
    assert!(sent.status.success(), "{}", stderr(&sent));
    let out = plumbline(&["shutdown", &external]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(0), "{text}\n{err}\n{}", init.log());
    for letter in 'a'..='z' {
        assert!(
            text.contains(&format!("\n{letter}=>3@2\n"))
                || text.starts_with(&format!("{letter}=>3@2\n")),
            "{letter}: {text}"
        );
    }
    assert!(
        text.contains("state continuity: 52 results on 26 keys, 0 violation(s)"),
        "{text}"
    );
    assert!(text.contains("0 lost, 0 duplicated"), "{text}");
    assert_eq!(roo.exit_code(10), Some(0), "{}", roo.log());
    assert!(items_done(&roo) > 0, "the joiner worked: {}", roo.log());
}

#[test]
fn sleepy_nonces_grown_two_to_four_and_shrunk_back_to_two_keep_every_count_continuous() {
    let _cpu = exclusive();
    let receiving =
        Receiving::start(&["--continuity", "--expect", "1600", "--idle-timeout", "20s"]);
    let (init, mut formed, source, external) =
        cluster("sleepy", "2ms", 1, Some(&receiving.addr), &[]);
    let control = init.control_addr();
    // 1600 items over 4 s, every change while they flow.
    let sending = send_in_background(&source, "nonces", "400/s", 1600);
    let mut w3 = join_running("sleepy", "2ms", &control, &receiving.addr, "w3", &[]);
    init.wait_for("membership now initializer, w2, w3: ");
    let mut w4 = join_running("sleepy", "2ms", &control, &receiving.addr, "w4", &[]);
    init.wait_for("membership now initializer, w2, w3, w4: ");
    for (leaver, after) in [("w3", "initializer, w2, w4: "), ("w4", "initializer, w2: ")] {
        let out = shrink(&external, leaver);
        assert!(out.status.success(), "{}", stderr(&out));
        init.wait_for(&format!("membership now {after}"));
    }
    assert_eq!(w3.exit_code(10), Some(0), "{}", w3.log());
    assert_eq!(w4.exit_code(10), Some(0), "{}", w4.log());
    let sent = sending.join().unwrap();
    assert!(sent.status.success(), "{}", stderr(&sent));
    let out = plumbline(&["shutdown", &external]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(0), "{text}\n{err}\n{}", init.log());
    assert!(
        text.contains("state continuity: 1600 results on") && text.contains("0 violation(s)"),
        "{text}"
    );
    assert!(text.contains("0 lost, 0 duplicated"), "{text}");
    assert!(
        items_done(&w3) > 0 && items_done(&w4) > 0,
        "{}\n{}",
        w3.log(),
        w4.log()
    );
    for worker in &mut formed {
        assert_eq!(worker.exit_code(10), Some(0), "{}", worker.log());
    }
}

#[test]
fn a_state_doubled_in_a_migration_is_named_by_its_key() {
    let _cpu = exclusive();
    let receiving = Receiving::start(&["--continuity", "--expect", "600", "--idle-timeout", "20s"]);
    let (init, _none, source, external) = cluster("sleepy", "1ms", 0, Some(&receiving.addr), &[]);
    // Every partition has state before the join (200 items), and more items after it.
    let first = common::send_nonces(&source, "2000/s", 200);
    assert!(first.status.success(), "{}", stderr(&first));
    let sending = send_in_background(&source, "nonces", "400/s", 400);
    let control = init.control_addr();
    // The joiner installs each partition as if its last item had been applied twice.
    let _roo = join_running(
        "sleepy",
        "1ms",
        &control,
        &receiving.addr,
        "roo",
        &["--plant-fault", "double"],
    );
    init.wait_for("membership now initializer, roo: ");
    assert!(sending.join().unwrap().status.success());
    let out = plumbline(&["shutdown", &external]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(1), "{text}\n{err}");
    assert!(err.contains("error: state continuity broken"), "{err}");
    assert!(err.contains(": 1 version(s) never seen, from v"), "{err}");
}

#[test]
fn shrink_refuses_the_initializer_and_unknown_names_and_a_late_joiner_must_match() {
    let (init, _none, _source, external) = cluster("votes", "0", 0, None, &[]);
    assert_fails(
        &shrink(&external, "initializer"),
        1,
        "initializer is the initializer: it routes every item and cannot leave",
    );
    assert_fails(
        &shrink(&external, "nobody"),
        1,
        "no worker nobody in the cluster (its workers: initializer)",
    );
    let control = init.control_addr();
    let mut other_app = join_running("sleepy", "0", &control, "127.0.0.1:9", "late", &[]);
    assert_eq!(other_app.exit_code(10), Some(1));
    assert!(
        other_app
            .log()
            .contains("--app sleepy does not match the initializer's --app votes"),
        "{}",
        other_app.log()
    );
    let (sleepy, _none, _source, _external) = cluster("sleepy", "0", 0, None, &[]);
    let mut other_partitions = join_running(
        "sleepy",
        "0",
        &sleepy.control_addr(),
        "127.0.0.1:9",
        "late2",
        &["--partitions", "30"],
    );
    assert_eq!(other_partitions.exit_code(10), Some(1));
    assert!(
        other_partitions
            .log()
            .contains("30 partitions do not match the initializer's 60"),
        "{}",
        other_partitions.log()
    );
    let out = plumbline(&[
        "worker",
        "--cluster-initializer",
        "--join-running",
        "--in",
        "127.0.0.1:0",
    ]);
    assert_fails(&out, 1, "--join-running is a joiner's");
}

#[test]
fn a_balanced_cluster_deals_to_a_worker_that_joins_and_stops_once_it_leaves() {
    let _cpu = exclusive();
    let receiving = Receiving::start(&["--expect", "800", "--idle-timeout", "20s"]);
    let (init, _none, source, external) =
        cluster("sleepy", "1ms", 0, Some(&receiving.addr), &["--balanced"]);
    let sending = send_in_background(&source, "nonces", "400/s", 800);
    let control = init.control_addr();
    let mut w2 = join_running(
        "sleepy",
        "1ms",
        &control,
        &receiving.addr,
        "w2",
        &["--balanced"],
    );
    init.wait_for("worker w2 joined the running cluster from ");
    // Items dealt while w2 is in: every other one goes to it.
    wait_routed(&init, routed(&init) + 100);
    let out = shrink(&external, "w2");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(w2.exit_code(10), Some(0), "{}", w2.log());
    assert!(items_done(&w2) > 0, "{}", w2.log());
    assert!(sending.join().unwrap().status.success());
    let out = plumbline(&["shutdown", &external]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(0), "{text}\n{err}\n{}", init.log());
    assert!(text.contains("0 lost, 0 duplicated"), "{text}");
}
