//! Worker processes end to end: seed 002 as processes, the hot letter, a killed worker, bad
//! input on every port, and shutdown.

mod common;

use std::io::Write;
use std::time::Instant;

use common::{
    assert_fails, closed_addr, cluster, exclusive, initializer_args, plumbline, scrape, scratch,
    stderr, Receiving, Scratch,
};

/// A votes file of `letters`, in the folder returned with it (removed when that is dropped).
fn votes_file(name: &str, letters: &str) -> (Scratch, String) {
    let dir = scratch(name);
    let path = dir.join("votes.msg");
    let out = plumbline(&[
        "gen",
        "votes",
        "--letters",
        letters,
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

/// The blog's sender flags against `source`.
fn send_votes(source: &str, file: &str) {
    let out = plumbline(&[
        "send",
        "--host",
        source,
        "--file",
        file,
        "--batch-size",
        "26",
        "--interval",
        "10_000_000",
        "--messages",
        "52",
        "--binary",
        "--msg-size",
        "9",
        "--repeat",
        "--ponythreads=1",
        "--ponynoblock",
        "--no-write",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Runs the votes experiment on `joiners + 1` workers and returns the seconds from the first
/// send to the last result, and what the receiver printed. The shutdown is asked for as soon as
/// the sender is done, with nearly every item still in flight: all must still arrive.
fn votes_run(letters: &str, joiners: usize, delay: &str) -> (f64, String) {
    let (_votes, file) = votes_file(&format!("votes-{letters}-{joiners}"), letters);
    let receiving = Receiving::start(&["--print", "--expect", "52", "--idle-timeout", "20s"]);
    let (mut init, mut workers, source, external) =
        cluster("votes", delay, joiners, Some(&receiving.addr), &[]);
    let start = Instant::now();
    send_votes(&source, &file);
    let out = plumbline(&["shutdown", &external]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    let took = start.elapsed().as_secs_f64();
    assert_eq!(code, Some(0), "{err}\n{}", init.log());
    assert_eq!(init.exit_code(10), Some(0), "{}", init.log());
    for worker in &mut workers {
        assert_eq!(worker.exit_code(10), Some(0), "{}", worker.log());
    }
    (took, text)
}

#[test]
fn seed_002_as_processes_two_workers_take_half_the_time() {
    let _cpu = exclusive();
    let (one, _) = votes_run("abcdefghijklmnopqrstuvwxyz", 0, "50ms");
    let (two, text) = votes_run("abcdefghijklmnopqrstuvwxyz", 1, "50ms");
    // Ideal: 52 × 50 ms = 2.6 s on one worker, 1.3 s on two.
    assert!(one > 2.5, "one worker took {one:.3} s");
    assert!(
        two / one < 0.7,
        "two workers took {two:.3} s against {one:.3} s"
    );
    common::assert_every_letter_ends_at_3(&text);
}

#[test]
fn the_hot_letter_does_not_scale_and_metrics_show_one_partition() {
    let _cpu = exclusive();
    let (one, _) = votes_run("a", 0, "10ms");
    let (two, _) = votes_run("a", 1, "10ms");
    assert!(
        two / one > 0.8,
        "a second worker cannot help one key: {two:.3} s vs {one:.3} s"
    );
    let (_votes, file) = votes_file("hot", "a");
    let receiving = Receiving::start(&["--expect", "52", "--idle-timeout", "20s"]);
    let (init, _workers, source, external) = cluster("votes", "0", 1, Some(&receiving.addr), &[]);
    send_votes(&source, &file);
    let (code, _, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    let metrics = scrape(&init);
    assert!(
        metrics.contains("plumbline_partition_items_total{partition=\"a\"} 52"),
        "{metrics}"
    );
    assert!(
        metrics.contains("plumbline_partition_items_total{partition=\"b\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("plumbline_items_in_total 52"), "{metrics}");
    plumbline(&["shutdown", &external]);
}

#[test]
fn a_killed_worker_stops_the_cluster_with_its_name_and_partitions() {
    let _cpu = exclusive();
    let dir = scratch("kill");
    let recv_json = dir.join("recv.json");
    let receiving = Receiving::start(&[
        "--expect",
        "3000",
        "--idle-timeout",
        "2s",
        "--json",
        recv_json.to_str().unwrap(),
    ]);
    let (mut init, mut workers, source, _) =
        cluster("sleepy", "1ms", 1, Some(&receiving.addr), &[]);
    let sender = std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args([
            "send",
            "--host",
            &source,
            "--gen",
            "nonces",
            "--rate",
            "1000/s",
            "--messages",
            "3000",
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once items are flowing.
    while !scrape(&init)
        .lines()
        .any(|l| l.starts_with("plumbline_items_in_total") && !l.ends_with(" 0"))
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = Instant::now();
    workers[0].child.kill().unwrap(); // SIGKILL
    assert_eq!(init.exit_code(10), Some(1));
    let detected = killed.elapsed();
    assert!(detected.as_secs_f64() < 1.5, "took {detected:?} to notice");
    let log = init.log();
    assert!(log.contains("worker w2 died"), "{log}");
    assert!(log.contains("it owned partitions [1,3,5,"), "{log}");
    let (code, text, _) = receiving.finish();
    assert_eq!(code, Some(1), "the receiver reports the loss: {text}");
    assert!(text.contains("never arrived (first runs): "), "{text}");
    let summary = common::record_run(&recv_json);
    let received = summary["receive"]["frames"].as_u64().unwrap();
    // The sender is cut off when the initializer stops, and says how many it had sent.
    let out = sender.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    let sent: u64 = said
        .split("failed after ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the sender should report where it was cut ({:?}): {said}",
                out.status
            )
        });
    assert!(
        received < sent,
        "{received} received of {sent} sent: the dead worker's items are lost"
    );
    assert_eq!(summary["lost"].as_u64().unwrap(), 3000 - received, "{text}");
}

#[test]
fn every_partitions_count_advances_by_one_per_item_across_two_workers() {
    let _cpu = exclusive();
    let receiving = Receiving::start(&["--continuity", "--expect", "600", "--idle-timeout", "20s"]);
    let (init, _workers, source, external) = cluster("sleepy", "0", 1, Some(&receiving.addr), &[]);
    let out = common::send_nonces(&source, "3000/s", 600);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(0), "{text}\n{err}\n{}", init.log());
    assert!(
        text.contains("state continuity: 600 results on") && text.contains("0 violation(s)"),
        "{text}"
    );
    let out = plumbline(&["shutdown", &external]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_worker_arriving_after_the_cluster_formed_is_refused() {
    let (init, _workers, _source, _external) = cluster("sleepy", "0", 0, None, &[]);
    let control = init.control_addr();
    let out = plumbline(&[
        "worker",
        "--app",
        "sleepy",
        "--control",
        &control,
        "--name",
        "late",
    ]);
    assert_fails(&out, 1, "the cluster is complete with 1 workers");
}

#[test]
fn garbage_on_the_source_port_closes_that_connection_only() {
    let _cpu = exclusive();
    let (_votes, file) = votes_file("garbage", "abcdefghijklmnopqrstuvwxyz");
    let receiving = Receiving::start(&["--expect", "52", "--idle-timeout", "20s"]);
    let (init, _workers, source, external) = cluster("votes", "0", 1, Some(&receiving.addr), &[]);
    let mut junk = std::net::TcpStream::connect(&source).unwrap();
    junk.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 1, 2]).unwrap();
    let mut bad_vote = std::net::TcpStream::connect(&source).unwrap();
    bad_vote.write_all(&[0, 0, 0, 5, b'A', 0, 0, 0, 1]).unwrap();
    init.wait_for("exceeds the 8388608-byte limit");
    init.wait_for("is not one of a..z");
    send_votes(&source, &file);
    let (code, _, err) = receiving.finish();
    assert_eq!(code, Some(0), "the cluster kept running: {err}");
    assert!(scrape(&init).contains("plumbline_source_errors_total 2"));
    plumbline(&["shutdown", &external]);
}

#[test]
fn a_worker_of_another_app_or_partition_count_is_refused() {
    let init = common::Node::start(&initializer_args(
        "127.0.0.1:0",
        &["--app", "sleepy", "--worker-count", "2"],
    ));
    let control = init.control_addr();
    let out = plumbline(&[
        "worker",
        "--app",
        "votes",
        "--control",
        &control,
        "--name",
        "x",
    ]);
    assert_fails(
        &out,
        1,
        "--app votes does not match the initializer's --app sleepy",
    );
    let out = plumbline(&[
        "worker",
        "--app",
        "sleepy",
        "--partitions",
        "30",
        "--control",
        &control,
        "--name",
        "y",
    ]);
    assert_fails(&out, 1, "30 partitions do not match the initializer's 60");
    let out = plumbline(&["worker", "--control", &control, "--name", "bad\"name"]);
    assert_fails(&out, 1, "a worker name is 1 to 64 of");
}

#[test]
fn shutdown_needs_the_token_and_a_live_address() {
    let dir = scratch("token");
    let (good, bad) = (dir.join("good"), dir.join("bad"));
    std::fs::write(&good, "s3cret\n").unwrap();
    std::fs::write(&bad, "guess\n").unwrap();
    let good_arg = format!("file:{}", good.display());
    let (mut init, _, _, external) = cluster("sleepy", "0", 0, None, &["--token", &good_arg]);
    let out = plumbline(&[
        "shutdown",
        &external,
        "--token",
        &format!("file:{}", bad.display()),
    ]);
    assert_fails(&out, 1, "refused: wrong or missing token");
    assert!(!init.log().contains("s3cret"), "the token is never logged");
    let out = plumbline(&["shutdown", &external, "--token", &good_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(init.exit_code(10), Some(0), "{}", init.log());

    let out = plumbline(&["shutdown", &closed_addr()]);
    assert_fails(&out, 1, "does not answer");

    let out = plumbline(&[
        "worker",
        "--in",
        "127.0.0.1:0",
        "--external",
        "0.0.0.0:0",
        "--cluster-initializer",
        "--control",
        "127.0.0.1:0",
        "--data",
        "127.0.0.1:0",
    ]);
    assert_fails(&out, 1, "is not a loopback address: give --token");
}

#[test]
fn a_worker_whose_initializer_dies_exits_with_an_error() {
    let (mut init, mut workers, _source, _) = cluster("sleepy", "0", 1, None, &[]);
    init.child.kill().unwrap(); // SIGKILL
    assert_eq!(workers[0].exit_code(10), Some(1));
    assert!(
        workers[0].log().contains("lost the initializer"),
        "{}",
        workers[0].log()
    );
}

/// A token file for `name` holding `secret`, as the `--token` argument that names it.
fn token_arg(dir: &std::path::Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    format!("file:{}", path.display())
}

/// Asserts that a worker joining `control` as `name` with `extra` flags is refused for its
/// token: it exits 1 (within 10 s, so a regression that admits it fails rather than hangs).
fn assert_refused_for_its_token(control: &str, name: &str, extra: &[&str]) {
    let mut args = vec!["--control", control, "--name", name];
    args.extend_from_slice(extra);
    let mut joiner = common::Node::start(&args);
    assert_eq!(joiner.exit_code(10), Some(1), "{}", joiner.log());
    assert!(
        joiner.log().contains("wrong or missing token"),
        "{}",
        joiner.log()
    );
}

#[test]
fn with_a_token_a_joiner_without_it_or_with_a_wrong_one_is_refused_and_the_right_one_joins() {
    let dir = scratch("join-token");
    let good = token_arg(&dir, "good", "j0in-s3cret");
    let bad = token_arg(&dir, "bad", "guess");
    // A token lets the control port face the network (protected mode refuses it otherwise).
    let mut init = common::Node::start(&initializer_args(
        "0.0.0.0:0",
        &[
            "--external",
            "127.0.0.1:0",
            "--worker-count",
            "2",
            "--token",
            &good,
        ],
    ));
    let port = init.control_addr().rsplit(':').next().unwrap().to_string();
    let control = format!("127.0.0.1:{port}");
    let external = init.wait_for("external (shutdown) on ");

    assert_refused_for_its_token(&control, "nobody", &[]);
    assert_refused_for_its_token(&control, "guesser", &["--token", &bad]);
    let log = init.log();
    let refusals = log
        .lines()
        .filter(|l| l.contains("refused a worker from 127.0.0.1:") && l.contains("token"))
        .count();
    assert_eq!(refusals, 2, "each refusal is logged with its peer: {log}");
    assert!(
        !log.contains("j0in-s3cret") && !log.contains("guess"),
        "{log}"
    );
    assert!(
        !log.contains("ready; sources on"),
        "no refused joiner formed the cluster"
    );

    let mut roo = common::Node::start(&["--control", &control, "--name", "roo", "--token", &good]);
    init.wait_for("worker roo joined from 127.0.0.1:");
    init.wait_for("ready; sources on ");
    let out = plumbline(&["shutdown", &external, "--token", &good]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(init.exit_code(10), Some(0), "{}", init.log());
    assert_eq!(roo.exit_code(10), Some(0), "{}", roo.log());
    assert!(!roo.log().contains("j0in-s3cret"), "{}", roo.log());
}

/// This host's address on its default route (not loopback), if it has one.
fn host_address() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("203.0.113.1:9").ok()?; // TEST-NET-3: picks a route, sends nothing
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `GET /metrics` on `addr` with these extra header lines; returns the status line.
fn get_metrics(addr: &str, headers: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    // In pieces, as a slow client might send it: the headers are read to their end.
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write!(stream, "{headers}Connection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines().next().unwrap_or("").to_string()
}

#[test]
fn with_a_token_a_metrics_port_beyond_loopback_answers_remote_scrapers_only_with_the_bearer() {
    let Some(ip) = host_address() else {
        eprintln!("SKIPPED: this host has no address beyond loopback to scrape from");
        return;
    };
    let dir = scratch("metrics-token");
    let good = token_arg(&dir, "good", "m3trics-s3cret");
    let init = common::Node::start(&initializer_args(
        "127.0.0.1:0",
        &["--metrics", "0.0.0.0:0", "--token", &good],
    ));
    let url = init.wait_for("metrics on http://");
    let port = url.trim_end_matches("/metrics").rsplit(':').next().unwrap();
    let remote = std::net::SocketAddr::new(ip, port.parse().unwrap()).to_string();
    let loopback = format!("127.0.0.1:{port}");
    assert!(
        get_metrics(&remote, "").contains(" 401"),
        "no bearer from another address"
    );
    assert!(get_metrics(&remote, "Authorization: Bearer guess\r\n").contains(" 401"));
    let right = get_metrics(&remote, "Authorization: Bearer m3trics-s3cret\r\n");
    assert!(right.contains(" 200"), "{right}");
    assert!(
        get_metrics(&loopback, "").contains(" 200"),
        "this host reads freely"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = init.log();
    assert!(
        log.contains(&format!("refused a metrics scrape from {ip}:")),
        "{log}"
    );
    assert!(!log.contains("m3trics-s3cret"), "{log}");
}
