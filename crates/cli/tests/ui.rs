//! Issue 7 end to end: `--ui` serves a live page that a real browser (headless Chromium) sees
//! change while a run goes on, and `/metrics` is valid Prometheus text; a port in use is a clear
//! error. The screenshot is kept at target/test-artifacts/live-page.png.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::{chromium, Browser};
use common::exposition;
use common::{exclusive, plumbline, stderr, workdir, Scratch};

/// A command run in the background with `--ui 127.0.0.1:0`; killed on drop.
struct Running {
    child: Child,
    url: String,
    /// Its working folder, removed after it (on drop).
    _cwd: Scratch,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let cwd = workdir();
        let mut child = Command::new(env!("CARGO_BIN_EXE_plumbline"))
            .current_dir(&cwd)
            .args(args)
            .args(["--ui", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("plumbline starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("a line naming the live page").unwrap();
            if let Some(rest) = line.strip_prefix("live page: ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url,
            _cwd: cwd,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over HTTP/1.0 (so the body is not chunked); returns the body.
fn get(url: &str, path: &str) -> String {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

fn number(browser: &mut Browser, id: &str) -> u64 {
    let text = browser
        .eval(&format!("document.getElementById('{id}').textContent"))
        .unwrap();
    let text = text.as_str().unwrap_or_default().trim().to_string();
    text.parse()
        .unwrap_or_else(|_| panic!("#{id} is not a number: {text:?}"))
}

#[test]
fn issue7_the_live_page_changes_in_a_real_browser_while_a_bench_runs() {
    let _cpu = exclusive();
    // 800 x 10 ms on one worker: about 8 s, long enough to watch.
    let run = Running::start(&[
        "bench",
        "--quiet",
        "--no-report",
        "--items",
        "800",
        "--delay",
        "10ms",
        "--workers",
        "1",
    ]);

    // /metrics first: valid exposition, and it counts the run.
    std::thread::sleep(Duration::from_millis(1500));
    let samples = exposition::parse_exposition(&get(&run.url, "/metrics"));
    let out = samples["plumbline_items_out_total"];
    assert!(out > 0.0 && out < 800.0, "items out {out} mid-run");
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("plumbline_run_info{label=\"run 1/1")),
        "{samples:?}"
    );
    assert_eq!(samples["plumbline_items_planned"], 800.0);
    assert!(
        samples.contains_key("plumbline_worker_items_total{worker=\"0\"}"),
        "{samples:?}"
    );

    let Some(mut browser) = browser_or_skip() else {
        return;
    };
    browser.goto(&run.url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while number(&mut browser, "updates") == 0 {
        assert!(
            Instant::now() < deadline,
            "the page received no update in 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out_before, updates_before) = (
        number(&mut browser, "items-out"),
        number(&mut browser, "updates"),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (out_after, updates_after) = (
        number(&mut browser, "items-out"),
        number(&mut browser, "updates"),
    );
    assert!(
        updates_after >= updates_before + 2,
        "the page was pushed {updates_before} then {updates_after} updates in 2.5 s"
    );
    assert!(
        out_after > out_before,
        "items out on the page did not move: {out_before} then {out_after}"
    );
    let status = browser
        .eval("document.getElementById('status').textContent")
        .unwrap();
    assert_eq!(status, "live");
    // What throws in the page is an error naming it, not a null.
    let thrown = browser
        .eval("document.getElementById('absent').textContent")
        .unwrap_err();
    assert!(thrown.contains("threw: TypeError"), "{thrown}");
    let label = browser
        .eval("document.getElementById('label').textContent")
        .unwrap();
    assert!(
        label.as_str().unwrap().starts_with("run 1/1: 800 x 10ms"),
        "{label}"
    );
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    let shot = artifacts.join("live-page.png");
    browser.screenshot(&shot).unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.canonicalize().unwrap().display());
}

#[test]
fn issue7_ui_on_a_port_in_use_fails_at_once_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let start = Instant::now();
    let out = plumbline(&[
        "bench",
        "--quiet",
        "--no-report",
        "--items",
        "10",
        "--ui",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&addr) && err.contains("already in use"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "it fails before running anything"
    );
    let out = plumbline(&["receive", "--listen", "127.0.0.1:0", "--ui", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
}

#[test]
fn issue7_the_initializers_live_page_shows_every_worker_and_partition() {
    let _cpu = exclusive();
    let dir = common::scratch("ui-cluster");
    let announce = dir.join("announce.jsonl");
    let announce_arg = announce.display().to_string();
    let (mut init, _workers, source, external) = common::cluster(
        "sleepy",
        "1ms",
        1,
        None,
        &["--ui", "127.0.0.1:0", "--announce", &announce_arg],
    );
    let url = format!(
        "http://{}",
        init.wait_for("live page: http://")
            .split_whitespace()
            .next()
            .unwrap()
    );
    let out = common::send_nonces(&source, "2000/s", 600);
    assert!(out.status.success(), "{}", stderr(&out));
    // Joiners report once a second: wait until both workers' counts add up to what was sent.
    let deadline = Instant::now() + Duration::from_secs(15);
    let snapshot = loop {
        let snapshot: serde_json::Value =
            serde_json::from_str(&get(&url, "/snapshot.json")).unwrap();
        if snapshot["items_out"] == 600 {
            break snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed 600 items out: {snapshot}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(snapshot["items_in"], 600);
    let per_worker: Vec<u64> = snapshot["per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(per_worker.len(), 2, "{snapshot}");
    assert!(per_worker.iter().all(|&n| n > 0) && per_worker.iter().sum::<u64>() == 600);
    let partitions = snapshot["per_partition"].as_array().unwrap();
    assert_eq!(partitions.len(), 60, "sleepy has 60 partitions");
    let routed: u64 = partitions.iter().map(|p| p[1].as_u64().unwrap()).sum();
    assert_eq!(routed, 600);
    // One writer: the initializer's --metrics, once every step reached it, and its live
    // page's /metrics pass the same strict check with the same series, workers by name.
    let deadline = Instant::now() + Duration::from_secs(15);
    let scraped = loop {
        let scraped = exposition::parse_exposition(&common::scrape(&init));
        let steps: f64 = ["initializer", "w2"]
            .iter()
            .filter_map(|w| scraped.get(&format!("plumbline_step_seconds_count{{worker=\"{w}\"}}")))
            .sum();
        if steps == 600.0 {
            break scraped;
        }
        assert!(
            Instant::now() < deadline,
            "the steps never added up: {scraped:?}\n{}",
            init.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let samples = exposition::parse_exposition(&get(&url, "/metrics"));
    assert_eq!(
        samples["plumbline_partition_items_total{partition=\"0\"}"],
        partitions[0][1].as_f64().unwrap()
    );
    let changing =
        |k: &String| k.starts_with("plumbline_elapsed") || k.starts_with("plumbline_rate_");
    for (series, value) in &scraped {
        if !changing(series) {
            assert_eq!(
                samples.get(series),
                Some(value),
                "{series} differs on the page"
            );
        }
    }
    assert_eq!(samples.len(), scraped.len());
    assert_eq!(
        scraped["plumbline_worker_items_total{worker=\"w2\"}"],
        per_worker[1] as f64
    );
    // The step of both workers summed by le, PromQL's way, gives plumbline's own p99 of the
    // merged HDR histograms (the closing figures) within the bucket it falls in.
    let summed = exposition::sum_by_le(&scraped, "plumbline_step_seconds", |_| true);
    let promql = exposition::histogram_quantile(0.99, &summed).expect("steps");
    assert!(plumbline(&["shutdown", &external]).status.success());
    assert_eq!(init.exit_code(10), Some(0), "{}", init.log());
    let done: serde_json::Value = std::fs::read_to_string(&announce)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "cluster_done")
        .expect("the closing figures");
    let mut merged = plumbline_measure::Recorder::new();
    for w in done["workers"].as_array().unwrap() {
        let step: plumbline_measure::LatencySummary =
            serde_json::from_value(w["step"].clone()).unwrap();
        merged.merge(&step.recorder().unwrap());
    }
    assert_eq!(merged.count(), 600);
    let ours = merged.summary().p99;
    let bounds = plumbline_measure::exposition::bounds_s();
    let upper = bounds.partition_point(|&b| b < ours);
    let width = bounds[upper] - bounds[upper.saturating_sub(1)];
    assert!(
        (promql - ours).abs() <= width,
        "histogram_quantile {promql} vs plumbline's p99 {ours} (bucket width {width})"
    );
}

#[cfg(feature = "redis")]
#[test]
fn issue7_a_broker_members_live_page_shows_what_it_took_did_and_holds() {
    use plumbline_servers::{Kind, Server};
    let Some(server) = Server::for_test(Kind::Redis, "a broker member's live page") else {
        return;
    };
    let _cpu = exclusive();
    let url = format!("redis://{}/watched", server.addr);
    // The backlog first, so the member is busy from its start however slowly `send` runs.
    let out = plumbline(&[
        "send",
        "--to",
        &url,
        "--gen",
        "nonces",
        "--rate",
        "max",
        "--messages",
        "400",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let member = common::Node::start(&[
        "--in",
        &url,
        "--delay",
        "5ms",
        "--name",
        "m1",
        "--idle-timeout",
        "3s",
        "--ui",
        "127.0.0.1:0",
    ]);
    let page = format!(
        "http://{}",
        member
            .wait_for("live page: http://")
            .split_whitespace()
            .next()
            .unwrap()
    );
    member.wait_for("consuming");
    // 400 x 5 ms is 2 s of work in batches of 100 (a tenth of the default 5 s redelivery):
    // 750 ms in, the member has done one batch and holds the next.
    std::thread::sleep(Duration::from_millis(750));
    let mid: serde_json::Value = serde_json::from_str(&get(&page, "/snapshot.json")).unwrap();
    let (taken, done) = (
        mid["items_in"].as_u64().unwrap(),
        mid["items_out"].as_u64().unwrap(),
    );
    assert!(done > 0 && done < 400, "{mid}");
    assert!(taken > done, "it holds a batch: {mid}");
    assert_eq!(mid["in_flight"].as_u64().unwrap(), taken - done, "{mid}");
    assert!(
        mid["run"]["label"]
            .as_str()
            .unwrap()
            .starts_with("m1 in group 'plumbline' on redis://"),
        "{mid}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let end = loop {
        let snapshot: serde_json::Value =
            serde_json::from_str(&get(&page, "/snapshot.json")).unwrap();
        // Per-partition counts are published with the latencies, every 100 ms.
        let routed: u64 = snapshot["per_partition"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_u64().unwrap())
            .sum();
        if snapshot["items_out"] == 400 && routed == 400 && snapshot["latency_count"] == 400 {
            break snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed all 400 done: {snapshot}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(end["in_flight"], 0, "{end}");
    assert_eq!(end["per_worker"], serde_json::json!([400]));
    assert_eq!(end["per_partition"].as_array().unwrap().len(), 60);
    // Latency counts from the intended send time: at least the 5 ms of work.
    assert!(end["p50_s"].as_f64().unwrap() >= 0.005, "{end}");
    let samples = exposition::parse_exposition(&get(&page, "/metrics"));
    assert_eq!(samples["plumbline_items_out_total"], 400.0);
    // The member is its --name in every per-worker series; its latency is a histogram.
    assert_eq!(
        samples["plumbline_worker_items_total{worker=\"m1\"}"],
        400.0
    );
    assert!(
        samples["plumbline_latency_seconds_count"] > 0.0,
        "{samples:?}"
    );
}

#[test]
fn issue7_a_cluster_joiner_refuses_ui_naming_the_initializer() {
    let out = plumbline(&[
        "worker",
        "--in",
        "127.0.0.1:1",
        "--control",
        "127.0.0.1:1",
        "--name",
        "j",
        "--ui",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--ui is the initializer's"),
        "{}",
        stderr(&out)
    );
}

/// Issue 15: `elastic --ui` tells watchers of each membership change as it is applied, and a
/// browser lists it under "Changes".
#[test]
fn issue15_the_elastic_live_page_lists_each_membership_change_as_it_happens() {
    use plumbline_servers::{Kind, Server};
    let Some(server) = Server::for_test(Kind::Redis, "the elastic live page") else {
        return;
    };
    let _cpu = exclusive();
    let cluster = format!("redis://{}/watched", server.addr);
    let run = Running::start(&[
        "elastic",
        "--cluster",
        &cluster,
        "--workers",
        "1@0s,2@1s",
        "--rate",
        "50/s",
        "--delay",
        "5ms",
        "--duration",
        "6s",
        "--quiet",
        "--no-report",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let notes = loop {
        let snapshot: serde_json::Value =
            serde_json::from_str(&get(&run.url, "/snapshot.json")).unwrap();
        let notes = snapshot["notes"].as_array().unwrap().clone();
        if !notes.is_empty() {
            break notes;
        }
        assert!(
            Instant::now() < deadline,
            "no membership change on the page: {snapshot}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["text"], "1 → 2 members (join)");
    let Some(mut browser) = browser_or_skip() else {
        return;
    };
    browser.goto(&run.url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = browser
            .eval("document.getElementById('notes').textContent")
            .unwrap();
        let listed = listed.as_str().unwrap_or_default().to_string();
        if listed.contains("1 → 2 members (join)") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page never listed the change: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A launched headless Chromium, or `None` when none is installed (the browser half of a test
/// is then skipped, loudly) unless `PLUMBLINE_REQUIRE_BROWSER` says a missing one is a failure.
fn browser_or_skip() -> Option<Browser> {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("PLUMBLINE_REQUIRE_BROWSER").is_err(),
            "PLUMBLINE_REQUIRE_BROWSER is set but Chromium is missing: apt-get install chromium"
        );
        eprintln!("SKIPPED the browser half: no Chromium (set PLUMBLINE_REQUIRE_BROWSER=1 to fail instead)");
        return None;
    };
    Some(Browser::launch(&chromium).unwrap())
}
