//! `plumbline send` → `plumbline receive` on loopback: the seeds' commands, open-loop behaviour
//! under a slow receiver, and bad input on either side.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{
    assert_fails, closed_addr, exclusive, plumbline, scratch, stderr, stdout, Node, Receiving,
};
use serde_json::Value;

/// The one run of a send's or receive's run record.
fn json(path: &std::path::Path) -> Value {
    common::record_run(path)
}

/// The seed's README table of the 24-hour cycle stretched to 48 breakpoints (0.7853 is its
/// value, not π/4).
#[allow(clippy::approx_constant)]
const SEED_48: [f64; 48] = [
    0.03, 0.0447, 0.0594, 0.074, 0.0887, 0.1034, 0.1181, 0.1821, 0.2536, 0.325, 0.3965, 0.4679,
    0.5394, 0.6108, 0.6823, 0.7537, 0.8251, 0.8221, 0.7793, 0.7364, 0.6936, 0.6507, 0.6076, 0.5648,
    0.5222, 0.5211, 0.5651, 0.6091, 0.6532, 0.6972, 0.7413, 0.7853, 0.8294, 0.8764, 0.9302, 0.95,
    0.8731, 0.7963, 0.7195, 0.6427, 0.5664, 0.49, 0.4131, 0.3363, 0.2595, 0.1827, 0.1063, 0.03,
];

#[test]
fn day_night_dry_run_reproduces_the_seed_table() {
    let out = plumbline(&[
        "send",
        "--shape",
        "day-night",
        "--breakpoints",
        "48",
        "--duration",
        "48s",
        "--max-mbps",
        "15",
        "--gen",
        "nonces",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let shares: Vec<f64> = text
        .lines()
        .skip(1)
        .take(48)
        .map(|l| l.split_whitespace().nth(3).unwrap().parse().unwrap())
        .collect();
    assert_eq!(shares.len(), 48, "{text}");
    for (i, (ours, seed)) in shares.iter().zip(SEED_48).enumerate() {
        assert!(
            (ours - seed).abs() < 0.0005,
            "breakpoint {i}: {ours} vs {seed}"
        );
    }
    // Each breakpoint lasts duration / (cycles × breakpoints) = 1 s; MB/s = share × 15.
    let second = text.lines().nth(2).unwrap();
    assert!(second.contains("1.000      2.000"), "{second}");
    assert!(second.contains("0.6702"), "{second}");
}

/// Seed 003's feeder line as its README writes it (`python3 app/feeder.py --max_mbps 15
/// --duration 7200 --breakpoints 200 --n_cycles 6`, the duration in seconds): a peak in MB/s
/// alone means the day/night shape, its rows random bytes.
#[test]
fn seed_003_feeder_line_runs_as_written() {
    let out = plumbline(&[
        "send",
        "--max_mbps",
        "15",
        "--duration",
        "7200",
        "--breakpoints",
        "200",
        "--n_cycles",
        "6",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().map(|w| w.parse().ok()).collect())
        .collect();
    assert_eq!(rows.len(), 1200, "200 breakpoints × 6 cycles: {text}");
    // Each breakpoint lasts 7200 s ÷ 1200 = 6 s; the day starts at 3 % of 15 MB/s.
    assert_eq!((rows[1][1], rows[1][2]), (6.0, 12.0));
    assert!((rows[0][4] - 0.45).abs() < 1e-3, "{:?}", rows[0]);
    let peak = rows.iter().map(|r| r[4]).fold(0.0, f64::max);
    assert!(peak <= 15.0 && peak > 14.0, "peak {peak} MB/s");
}

/// The same flags, scaled to seconds, really send: the feeder's day into a receiver.
#[test]
fn seed_003_feeder_flags_send_a_day_to_a_receiver() {
    let _cpu = exclusive();
    let dir = scratch("seed003");
    let (recv_json, send_json) = (dir.join("recv.json"), dir.join("send.json"));
    let receiving = Receiving::start(&[
        "--idle-timeout",
        "3s",
        "--json",
        recv_json.to_str().unwrap(),
    ]);
    let mut args = vec![
        "send",
        "--host",
        &receiving.addr,
        "--json",
        send_json.to_str().unwrap(),
    ];
    args.extend(common::FEEDER_DAY);
    let out = plumbline(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, _, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    // 2 s of a day peaking at 0.2 MB/s of 1 KiB rows (~195/s): its mean share, ~0.48, of it.
    let sent = json(&send_json)["sent"].as_u64().unwrap();
    assert!((120..=280).contains(&sent), "sent {sent}");
    assert_eq!(json(&recv_json)["receive"]["frames"], sent);
}

#[test]
fn seed_000_sender_command_reaches_the_receiver() {
    let _cpu = exclusive();
    let dir = scratch("seed000");
    let nonces = dir.join("_nonces.bin");
    let out = plumbline(&[
        "gen",
        "nonces",
        "--count",
        "1024",
        "--size",
        "1024",
        "-o",
        nonces.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let recv_json = dir.join("recv.json");
    let receiving = Receiving::start(&[
        "--expect",
        "40000",
        "--idle-timeout",
        "20s",
        "--json",
        recv_json.to_str().unwrap(),
    ]);
    let send_json = dir.join("send.json");
    let out = plumbline(&[
        "send",
        "--host",
        &receiving.addr,
        "--file",
        nonces.to_str().unwrap(),
        "--batch-size",
        "20",
        "--interval",
        "100_000",
        "--messages",
        "40000",
        "--msg-size",
        "1028",
        "--binary",
        "--repeat",
        "--ponythreads=1",
        "--ponynoblock",
        "--json",
        send_json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // An info line (not under --quiet): the seed's line works as typed, nothing is wrong.
    assert!(stderr(&out).contains("ignoring Pony runtime flags --ponythreads=1 --ponynoblock"));
    let (code, _, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    let sent = json(&send_json);
    assert_eq!(sent["sent"], 40000);
    assert_eq!(sent["send"]["bytes"], 40000 * 1028);
    assert_eq!(sent["target_per_s"], 200000.0);
    let received = json(&recv_json);
    assert_eq!(received["receive"]["frames"], 40000);
    assert_eq!(received["receive"]["bytes"], 40000 * 1024);
}

#[test]
fn plumbline_framing_measures_latency_and_counts_every_message() {
    let _cpu = exclusive();
    let dir = scratch("framed");
    let recv_json = dir.join("recv.json");
    let receiving = Receiving::expecting(3000, &recv_json);
    let out = plumbline(&[
        "send",
        "--host",
        &receiving.addr,
        "--gen",
        "votes",
        "--rate",
        "3000/s",
        "--messages",
        "3000",
        "--connections",
        "3",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("target 3000.0 msg/s"),
        "{}",
        stdout(&out)
    );
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("0 lost, 0 duplicated"), "{text}");
    let received = json(&recv_json);
    assert_eq!(received["receive"]["connections"], 3);
    assert_eq!(
        received["receive"]["sequence"]["sources"], 3,
        "each connection is its own source"
    );
    let p50 = received["latency_s"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 0.5, "p50 {p50}");
    assert!(!received["latency_s"]["hdr"].as_str().unwrap().is_empty());
}

#[test]
fn a_slow_receiver_makes_sends_late_and_latency_grow_but_loses_nothing() {
    let _cpu = exclusive();
    let dir = scratch("slow");
    let recv_json = dir.join("recv.json");
    // 400 × 64 KiB = 26 MB, more than loopback's socket buffers hold; read at 200/s.
    let receiving = Receiving::start(&[
        "--expect",
        "400",
        "--idle-timeout",
        "20s",
        "--throttle",
        "200/s",
        "--json",
        recv_json.to_str().unwrap(),
    ]);
    let send_json = dir.join("send.json");
    let out = plumbline(&[
        "send",
        "--host",
        &receiving.addr,
        "--gen",
        "random",
        "--size",
        "65536",
        "--rate",
        "800/s",
        "--messages",
        "400",
        "--quiet",
        "--json",
        send_json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, _, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    let sent = json(&send_json);
    assert_eq!(sent["sent"], 400);
    assert!(sent["send"]["late"].as_u64().unwrap() > 0, "{sent}");
    assert!(sent["send"]["stall_s"].as_f64().unwrap() > 0.1, "{sent}");
    assert!(sent["achieved_per_s"].as_f64().unwrap() < 600.0, "{sent}");
    if let Some(mb) = sent["send"]["peak_rss_mb"].as_f64() {
        assert!(mb < 100.0, "sender memory grew to {mb} MB");
    }
    let received = json(&recv_json);
    assert_eq!(received["receive"]["frames"], 400);
    assert_eq!(received["lost"], 0);
    assert!(
        received["latency_s"]["max"].as_f64().unwrap() > 0.5,
        "{received}"
    );
}

#[test]
fn garbage_closes_one_connection_and_the_others_go_on() {
    let _cpu = exclusive();
    let receiving = Receiving::start(&["--expect", "100", "--idle-timeout", "10s"]);
    let mut junk = std::net::TcpStream::connect(&receiving.addr).unwrap();
    junk.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    let out = plumbline(&[
        "send",
        "--host",
        &receiving.addr,
        "--gen",
        "nonces",
        "--rate",
        "max",
        "--messages",
        "100",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("received 100 messages"), "{text}");
    assert!(text.contains("bad connections: 1"), "{text}");
    assert!(
        text.contains("exceeds the 8388608-byte limit; connection closed"),
        "{text}"
    );
}

#[test]
fn receive_fails_when_fewer_than_expected_arrive() {
    let receiving = Receiving::start(&["--expect", "10", "--idle-timeout", "300ms"]);
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(1), "{text}");
    assert!(err.contains("expected 10 messages, received 0"), "{err}");
}

#[test]
fn bad_send_input_is_named() {
    let dir = scratch("badsend");
    // A good 5-byte vote frame, then a frame announcing 9 000 000 bytes at offset 9.
    let big = dir.join("big.bin");
    let mut bytes = vec![0, 0, 0, 5, b'a', 0, 0, 0, 1];
    bytes.extend_from_slice(&9_000_000u32.to_be_bytes());
    std::fs::write(&big, &bytes).unwrap();
    let out = plumbline(&[
        "send",
        "--host",
        "127.0.0.1:9",
        "--file",
        big.to_str().unwrap(),
        "--binary",
        "--variable-size",
    ]);
    assert_fails(&out, 1, "byte offset 9");
    assert!(
        stderr(&out).contains("frame of 9000000 bytes exceeds"),
        "{}",
        stderr(&out)
    );

    let votes = dir.join("votes.msg");
    plumbline(&["gen", "votes", "-o", votes.to_str().unwrap()]);
    let out = plumbline(&[
        "send",
        "--host",
        "127.0.0.1:9",
        "--file",
        votes.to_str().unwrap(),
        "--binary",
        "--msg-size",
        "10",
    ]);
    assert_fails(&out, 1, "--msg-size 10 does not divide");

    let host = closed_addr();
    let send = |extra: &[&str]| {
        let mut args = vec!["send", "--host", &host, "--gen", "votes"];
        args.extend_from_slice(extra);
        plumbline(&args)
    };
    let start = Instant::now();
    let out = send(&["--messages", "5", "--connect-timeout", "600ms"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(start.elapsed() >= Duration::from_millis(600));
    assert!(
        stderr(&out).contains(&format!("could not connect to {host} within")),
        "{}",
        stderr(&out)
    );
    assert_fails(&send(&[]), 1, "nothing says when to stop");
    assert_fails(
        &send(&["--rate", "fast", "--messages", "1"]),
        1,
        "'fast' is not a rate",
    );
    // A share beyond the senders, and a start that is long past or a unit mistake.
    let one = |flag: &str, value: &str| send(&["--messages", "1", flag, value]);
    assert_fails(
        &one("--split", "3/2"),
        2,
        "this sender's number I of N senders",
    );
    assert_fails(&one("--start-at", "1000"), 2, "passed");
    assert_fails(&one("--start-at", "99999999999"), 2, "more than 24 h ahead");
}

#[test]
fn send_reconnect_survives_a_receiver_restart_and_says_what_the_break_may_have_cost() {
    let _cpu = exclusive();
    let dir = scratch("send-reconnect");
    let addr = closed_addr();
    let receiver = || {
        Node::spawn(&[
            "receive",
            "--listen",
            &addr,
            "--quiet",
            "--idle-timeout",
            "2s",
        ])
    };
    let mut first = receiver();
    first.wait_for("listening on");
    let report = dir.join("send.json");
    let sender = std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args(["send", "--host", &addr, "--gen", "nonces", "--size", "64"])
        .args([
            "--rate",
            "2000/s",
            "--messages",
            "4000",
            "--reconnect",
            "-q",
        ])
        .args(["--json", report.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _second = receiver();
    let out = sender.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r = json(&report);
    assert_eq!(r["sent"], 4000, "the schedule went on to the end: {r}");
    assert_eq!(r["send"]["reconnects"], 1, "{r}");
    assert!(r["send"]["at_risk"].as_u64().unwrap() >= 1, "{r}");
    assert!(
        stdout(&out).contains("reconnected 1 time(s)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn without_reconnect_a_receiver_that_goes_away_fails_the_send_with_its_count() {
    let addr = closed_addr();
    let mut receiver = Node::spawn(&["receive", "--listen", &addr, "--quiet"]);
    receiver.wait_for("listening on");
    let sender = std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args(["send", "--host", &addr, "--gen", "nonces", "--size", "64"])
        .args(["--rate", "2000/s", "--messages", "20000", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    receiver.child.kill().unwrap();
    let out = sender.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("connection 0 failed after"),
        "{}",
        stderr(&out)
    );
}

/// Plumbline frames of source 7 numbered `seqs`, as one write.
fn numbered(seqs: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for seq in seqs {
        let mut payload = Vec::new();
        plumbline_core::header::Header {
            source: 7,
            seq,
            intended_unix_ns: plumbline_core::header::unix_now_ns(),
            key: 0,
        }
        .write(&mut payload);
        payload.extend_from_slice(b"nonce");
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

#[test]
fn expect_counts_unique_messages_and_duplicates_are_no_loss() {
    let _cpu = exclusive();
    let report_dir = scratch("expect-unique");
    let report = report_dir.join("recv.json");
    let receiving = Receiving::start(&[
        "--expect",
        "100",
        "--idle-timeout",
        "10s",
        "--json",
        report.to_str().unwrap(),
    ]);
    // 0..60, then a redelivery of everything: 160 frames, 100 messages, 60 of them twice.
    let mut first = std::net::TcpStream::connect(&receiving.addr).unwrap();
    first.write_all(&numbered(0..60)).unwrap();
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    // The redelivery comes in two parts: after the first, 100 frames have arrived but only 60
    // messages, so the run must go on.
    let mut again = std::net::TcpStream::connect(&receiving.addr).unwrap();
    again.write_all(&numbered(0..40)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = again.write_all(&numbered(40..100));
    let (code, out, err) = receiving.finish();
    drop(again);
    let received = json(&report);
    assert_eq!(
        (
            received["receive"]["frames"].as_u64(),
            received["delivered"].as_u64()
        ),
        (Some(160), Some(100)),
        "the run went on to 100 unique messages: {out}"
    );
    assert_eq!(received["lost"], 0, "no false loss: {out}");
    assert_eq!(received["duplicates"], 60);
    assert!(out.contains("100 unique, 60 duplicates"), "{out}");
    // Plain TCP promises at-most-once: its duplicates fail the run, and say so.
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("60 messages duplicated by an at-most-once transport")
            && !err.contains("lost"),
        "{err}"
    );
}

#[test]
fn receive_continuity_names_the_key_whose_state_was_applied_twice_or_skipped() {
    // Results as a partition's owner writes them, replayed with plumbline headers: key 7
    // gets v1, v2, v2 again (another item: applied twice), then v4 (v3 never came).
    let dir = scratch("continuity");
    let file = dir.join("results.bin");
    let mut bytes = Vec::new();
    for text in ["7=>1", "9=>1", "7=>2", "7=>2", "9=>2", "7=>4"] {
        bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
        bytes.extend_from_slice(text.as_bytes());
    }
    std::fs::write(&file, &bytes).unwrap();
    let json_path = dir.join("receive.json");
    let receiving = Receiving::start(&[
        "--continuity",
        "--expect",
        "6",
        "--idle-timeout",
        "10s",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let out = plumbline(&[
        "send",
        "--host",
        &receiving.addr,
        "--file",
        file.to_str().unwrap(),
        "--binary",
        "--variable-size",
        "--framing",
        "plumbline",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(1), "a broken state fails the run: {text}\n{err}");
    assert!(
        text.contains("state continuity: 6 results on 2 keys, 2 violation(s)"),
        "{text}"
    );
    assert!(text.contains("key 7: version 2 seen twice"), "{text}");
    assert!(
        text.contains("key 7: 1 version(s) never seen, from v3"),
        "{text}"
    );
    assert!(err.contains("state continuity broken 2 time(s)"), "{err}");
    let run = json(&json_path);
    assert_eq!(run["receive"]["continuity"]["violations"], 2, "{run}");
    assert_eq!(run["receive"]["continuity"]["keys"], 2, "{run}");
}

/// Issue 17: two senders, each `--split` half of one schedule and started at one instant,
/// feed one receiver exactly the schedule one sender would: its per-second rate is the whole
/// schedule's, and every message arrives once.
#[test]
fn two_senders_split_one_schedule_and_the_receiver_sees_it_whole() {
    let _cpu = exclusive();
    let dir = scratch("split");
    let recv_json = dir.join("recv.json");
    let receiving = Receiving::expecting(5000, &recv_json);
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + Duration::from_secs(2);
    let at = format!("{:.3}", at.as_secs_f64());
    // Different connection counts: the split does not depend on the senders agreeing on one.
    let spawned: Vec<_> = [("1/2", "1"), ("2/2", "3")]
        .iter()
        .map(|(split, connections)| {
            let json = dir.join(format!("send-{}.json", &split[..1]));
            let child = std::process::Command::new(common::binary())
                .args(["send", "--host", &receiving.addr, "--gen", "nonces"])
                .args(["--rate", "1000/s", "--messages", "5000", "--quiet"])
                .args([
                    "--split",
                    split,
                    "--start-at",
                    &at,
                    "--connections",
                    connections,
                ])
                .arg("--json")
                .arg(&json)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("plumbline starts");
            (child, json)
        })
        .collect();
    for (child, json_path) in spawned {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let sent = json(&json_path);
        assert_eq!(sent["sent"], 2500, "each sends its half");
        assert_eq!(sent["target_per_s"], 500.0, "its target is its share");
        assert!(sent["send"]["split"].is_string());
        let late = sent["send"]["late_start_s"].as_f64().unwrap();
        assert!(late < 0.5, "started {late} s after --start-at");
    }
    let (code, text, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    let received = json(&recv_json);
    assert_eq!(received["delivered"], 5000);
    assert_eq!(received["lost"], 0, "{text}");
    assert_eq!(received["duplicates"], 0, "{text}");
    assert_eq!(
        received["receive"]["sequence"]["sources"], 4,
        "one per connection"
    );
    // The whole schedule's rate, second by second: 1000/s (generous: a loaded 2-core box).
    let p50 = received["receive"]["per_second"]["p50"].as_u64().unwrap();
    assert!((950..=1050).contains(&p50), "{text}");
}

/// Issue 17: a receiver whose clock is planted 5 ms ahead (`PLUMBLINE_CLOCK_SKEW`, a host
/// whose clock drifted) measures the offset against a `plumbline clock` reference within
/// 0.5 ms and takes it out of the latency; without `--clock-ref` the skew shows as latency.
#[test]
fn a_receiver_5ms_off_measures_its_clock_and_corrects_the_latency() {
    let _cpu = exclusive();
    let dir = scratch("clock");
    let reference = Node::spawn(&["clock", "--listen", "127.0.0.1:0"]);
    let addr = reference.wait_for("clock reference on ").trim().to_string();
    let skewed = [("PLUMBLINE_CLOCK_SKEW", "5ms")];
    let run = |clock_ref: bool| {
        let path = dir.join(format!("recv-{clock_ref}.json"));
        let mut extra = vec!["--expect", "500", "--json", path.to_str().unwrap()];
        if clock_ref {
            extra.extend(["--clock-ref", addr.as_str()]);
        }
        let receiving = Receiving::start_with(&skewed, &["receive"], &extra);
        let out = common::send_nonces(&receiving.addr, "1000/s", 500);
        assert!(out.status.success(), "{}", stderr(&out));
        let (code, _, err) = receiving.finish();
        assert_eq!(code, Some(0), "{err}");
        (json(&path), err)
    };
    let (raw, _) = run(false);
    let raw_p50 = raw["latency_s"]["p50"].as_f64().unwrap();
    assert!(
        raw_p50 >= 0.005,
        "the 5 ms skew shows as latency: p50 {raw_p50}"
    );
    let (corrected, err) = run(true);
    let clock = &corrected["receive"]["clock"];
    let offset = clock["offset_s"].as_f64().unwrap();
    assert!(
        (offset + 0.005).abs() < 0.0005,
        "measured {offset} s, planted -5 ms\n{err}"
    );
    assert!(clock["uncertainty_s"].as_f64().unwrap() < 0.0005, "{clock}");
    let p50 = corrected["latency_s"]["p50"].as_f64().unwrap();
    assert!(
        p50 < raw_p50 - 0.004,
        "corrected p50 {p50} s against {raw_p50} s uncorrected"
    );
}
