//! Helpers shared by the end-to-end tests: run the real `plumbline` binary in a scratch folder.

#![allow(dead_code)]

pub mod browser;
/// The strict reader of Prometheus text that every scrape here goes through.
#[path = "../../../measure/tests/exposition/mod.rs"]
pub mod exposition;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

static CPU: Mutex<()> = Mutex::new(());

/// Held by every test that times a run or loads the cores, so such tests of one binary do not
/// run at once and skew each other's figures on a 2-core machine.
pub fn exclusive() -> MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The binary under test: this build's, or `PLUMBLINE_BIN` (to measure an older build with the
/// same test, as the hostile-peer figures do).
pub fn binary() -> String {
    std::env::var("PLUMBLINE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_plumbline").to_string())
}

/// The binary as a command, its logs at their default levels whatever RUST_LOG the tests run
/// under (the tests read its info lines).
pub fn command() -> Command {
    let mut command = Command::new(binary());
    command.env_remove("RUST_LOG");
    command
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/PID/status); 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of a process (entries of /proc/PID/fd).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Samples a process's RSS every 20 ms on its own thread and keeps the peak, until dropped.
pub struct PeakRss {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let peak = std::sync::Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        Self { peak, stop }
    }

    /// The highest RSS seen so far, in MB.
    pub fn peak_mb(&self) -> f64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs the binary to completion in a scratch working folder of its own, so the report
/// folders `bench` writes by default land there (and go with it), not in the source tree.
pub fn plumbline(args: &[&str]) -> Output {
    plumbline_in(&workdir(), args)
}

/// Runs the binary to completion in `cwd`.
pub fn plumbline_in(cwd: &Path, args: &[&str]) -> Output {
    command()
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("the plumbline binary runs")
}

/// `plumbline send` of `messages` generated nonces to `host` at `rate` (`2000/s`), quietly.
pub fn send_nonces(host: &str, rate: &str, messages: u64) -> Output {
    let messages = messages.to_string();
    plumbline(&[
        "send",
        "--host",
        host,
        "--gen",
        "nonces",
        "--rate",
        rate,
        "--messages",
        &messages,
        "--quiet",
    ])
}

/// `plumbline send --to URL` of `n` generated 1 KiB nonces as fast as it can, quietly, with
/// `extra` flags.
pub fn send_to(url: &str, n: u64, extra: &[&str]) -> Output {
    let n = n.to_string();
    let mut args = vec![
        "send",
        "--to",
        url,
        "--gen",
        "nonces",
        "--rate",
        "max",
        "--messages",
        &n,
        "-q",
    ];
    args.extend_from_slice(extra);
    plumbline(&args)
}

/// Puts `n` nonces into the broker at `url` before any consumer starts.
pub fn fill(url: &str, n: u64) {
    let out = send_to(url, n, &[]);
    assert!(out.status.success(), "send --to {url}: {}", stderr(&out));
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch folder (tempfile's), removed with everything in it when dropped: hold it as long
/// as its files are needed. It reads as the `Path` it is.
#[derive(Debug)]
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A fresh working folder for a binary this test runs.
pub fn workdir() -> Scratch {
    scratch("cwd")
}

/// A fresh scratch folder for one test, named after `name` (a unique suffix added).
pub fn scratch(name: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("plumbline-test-{name}-"))
        .tempdir()
        .expect("a scratch folder in the temp dir");
    Scratch(dir)
}

/// Runs `bench` with `args` plus `--json` and returns the parsed report.
pub fn bench_json(name: &str, args: &[&str]) -> serde_json::Value {
    let _cpu = exclusive();
    command_json(name, "bench", args)
}

/// Runs `plumbline COMMAND --quiet ARGS… --json FILE`, which must succeed, and returns the
/// parsed JSON.
pub fn command_json(name: &str, command: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec![command, "--quiet"];
    all.extend_from_slice(args);
    json_of(name, &all)
}

/// Runs `plumbline ARGS… --json FILE`, which must succeed, and returns the parsed JSON.
pub fn json_of(name: &str, args: &[&str]) -> serde_json::Value {
    let path_dir = scratch(name);
    let path = path_dir.join("run.json");
    let mut all = args.to_vec();
    all.extend(["--json", path.to_str().unwrap()]);
    let out = plumbline(&all);
    assert!(
        out.status.success(),
        "{all:?} failed: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The runs of the run record (`--json`) at `path`, checked to be of the one schema.
pub fn record_runs(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["schema"], "plumbline.run/3", "{}", path.display());
    doc["runs"]
        .as_array()
        .expect("a run record has runs")
        .clone()
}

/// The one run of a `send` or `receive` run record.
pub fn record_run(path: &std::path::Path) -> serde_json::Value {
    let mut runs = record_runs(path);
    assert_eq!(runs.len(), 1, "{}: one run", path.display());
    runs.remove(0)
}

/// The trials of a capacity record's `point`: the runs it names by index.
pub fn trials<'a>(
    record: &'a serde_json::Value,
    point: &serde_json::Value,
) -> Vec<&'a serde_json::Value> {
    point["trials"]
        .as_array()
        .expect("a point names its trials")
        .iter()
        .map(|i| &record["runs"][i.as_u64().expect("a run index") as usize])
        .collect()
}

/// A `plumbline receive` running in the background on a free loopback port.
pub struct Receiving {
    child: Option<std::process::Child>,
    pub addr: String,
    stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Receiving {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_as(&["receive"], extra)
    }

    /// [`Receiving::start`] of `command` (`["run", "receiver.toml"]`: an experiment file's).
    pub fn start_as(command: &[&str], extra: &[&str]) -> Self {
        Self::start_with(&[], command, extra)
    }

    /// [`Receiving::start_as`] with `env` set for the receiver (a planted clock skew).
    pub fn start_with(env: &[(&str, &str)], words: &[&str], extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = command()
            .envs(env.iter().copied())
            .args(words)
            .args(["--listen", "127.0.0.1:0", "--quiet"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("receive starts");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        // Lines before it (a clock measurement) are passed over.
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("receive ended before listening: {seen}");
            }
            if let Some((_, addr)) = line.trim().split_once("listening on ") {
                break addr.to_string();
            }
            seen += &line;
        };
        Self {
            child: Some(child),
            addr,
            stderr,
        }
    }

    /// A receiver that expects `messages`, gives up 20 s after the last, and writes its run
    /// record to `json`.
    pub fn expecting(messages: u64, json: &std::path::Path) -> Self {
        let messages = messages.to_string();
        Self::start(&[
            "--expect",
            &messages,
            "--idle-timeout",
            "20s",
            "--json",
            json.to_str().unwrap(),
        ])
    }

    /// The receiver's process id (for a sampler or a nemesis).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// Waits for a receiver that was killed, so it leaves no zombie.
    pub fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Waits for the receiver to end; returns (exit code, stdout, rest of stderr).
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        use std::io::Read;
        let mut err = String::new();
        self.stderr.read_to_string(&mut err).unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    }
}

impl Drop for Receiving {
    /// A failed assertion must not leave a receiver running.
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `plumbline` process (a cluster worker, a pipeline role) whose stderr lines are collected
/// as they come.
pub struct Node {
    pub child: std::process::Child,
    lines: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// `plumbline worker ARGS…`
    pub fn start(args: &[&str]) -> Self {
        let mut all = vec!["worker"];
        all.extend_from_slice(args);
        Self::spawn(&all)
    }

    /// `plumbline ARGS…`
    pub fn spawn(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = command()
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("worker starts");
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// Waits (up to 20 s) for a line containing `marker` and returns the text after it.
    pub fn wait_for(&self, marker: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(marker))
            {
                return line.split(marker).nth(1).unwrap_or("").trim().to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {marker:?} in {:?}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The initializer's control address, from its log.
    pub fn control_addr(&self) -> String {
        let line = self.wait_for("control on ");
        line.split(',').next().unwrap_or_default().to_string()
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for the process to exit (up to `secs`) and returns its exit code.
    pub fn exit_code(&mut self, secs: u64) -> Option<i32> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(std::time::Duration::from_millis(100));
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("worker did not exit within {secs} s: {}", self.log());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The argv (after `worker`) of an initializer with its control port on `control`, sources
/// and data on free loopback ports, then `extra`.
pub fn initializer_args<'a>(control: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--in",
        "127.0.0.1:0",
        "--control",
        control,
        "--data",
        "127.0.0.1:0",
        "--cluster-initializer",
    ];
    args.extend_from_slice(extra);
    args
}

/// An initializer on free loopback ports plus `joiners` more workers; returns them with the
/// source and external addresses once the cluster is ready.
pub fn cluster(
    app: &str,
    delay: &str,
    joiners: usize,
    out: Option<&str>,
    extra: &[&str],
) -> (Node, Vec<Node>, String, String) {
    let count = (joiners + 1).to_string();
    let mut args = vec![
        "--app",
        app,
        "--delay",
        delay,
        "--in",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--data",
        "127.0.0.1:0",
        "--external",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--cluster-initializer",
        "--worker-count",
        &count,
    ];
    let out_args: Vec<&str> = out.map_or(vec![], |o| vec!["--out", o]);
    args.extend_from_slice(&out_args);
    args.extend_from_slice(extra);
    let init = Node::start(&args);
    let control = init.control_addr();
    let external = init.wait_for("external (shutdown) on ");
    let workers: Vec<Node> = (0..joiners)
        .map(|i| {
            let name = format!("w{}", i + 2);
            let mut args = vec![
                "--app",
                app,
                "--delay",
                delay,
                "--control",
                &control,
                "--name",
                &name,
            ];
            args.extend_from_slice(&out_args);
            Node::start(&args)
        })
        .collect();
    let source = init.wait_for("ready; sources on ");
    (init, workers, source, external)
}

/// One HTTP/1.1 exchange on `addr`: `head` (the request line and header lines, each ending in
/// CRLF) with `Connection: close` added, so the whole response, head first, is read to its end.
pub fn http(addr: &str, head: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(stream, "{head}Connection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The initializer's Prometheus text (the body of its `/metrics`), checked by the strict
/// reader ([`exposition::parse_exposition`]) on the way.
pub fn scrape(init: &Node) -> String {
    let url = init.wait_for("metrics on http://");
    let addr = url.trim_end_matches("/metrics");
    let response = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    exposition::parse_exposition(body);
    body.to_string()
}

/// Asserts that a command exited with `code` and named the problem (`needle`) on stderr,
/// without a panic.
pub fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Seed 003's feeder line in its own spellings, scaled from two hours at 15 MB/s to one 2 s day
/// peaking at 0.2 MB/s (~195 rows/s of 1 KiB): the flags `examples/003-feeder.toml` holds.
pub const FEEDER_DAY: [&str; 9] = [
    "--max_mbps",
    "0.2",
    "--duration",
    "2",
    "--breakpoints",
    "24",
    "--n_cycles",
    "1",
    "--quiet",
];

/// Seed 002's check on what a receiver printed: each letter's last total is 3 (two rounds of
/// votes, of 1 and then of 2).
pub fn assert_every_letter_ends_at_3(text: &str) {
    for letter in 'a'..='z' {
        let last = text
            .lines()
            .rfind(|l| l.starts_with(&format!("{letter}=>")))
            .unwrap_or_else(|| panic!("no result for {letter}: {text}"));
        assert_eq!(last, format!("{letter}=>3"));
    }
}

/// A loopback address nobody listens on (a free port, bound and released).
pub fn closed_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// A `plumbline pipeline collector` on free ports, and where its two endpoints are.
pub struct PipelineCollector {
    pub node: Node,
    pub results: String,
    pub acks: String,
}

impl PipelineCollector {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_as(&["pipeline", "collector"], extra)
    }

    /// [`PipelineCollector::start`] of `command` (`["run", "collector.toml"]`: a file's).
    pub fn start_as(command: &[&str], extra: &[&str]) -> Self {
        let mut args = command.to_vec();
        args.extend([
            "--endpoint",
            "tcp://127.0.0.1:0",
            "--ack-endpoint",
            "tcp://127.0.0.1:0",
        ]);
        args.extend_from_slice(extra);
        let node = Node::spawn(&args);
        let line = node.wait_for("collector: results on ");
        let (results, acks) = line
            .split_once(", ACKs to the distributor on ")
            .expect("the collector names its endpoints");
        Self {
            results: results.to_string(),
            acks: acks.to_string(),
            node,
        }
    }
}

/// A `plumbline pipeline distributor` on a free port for its workers, writing its report to
/// `report`; returns it and that endpoint.
pub fn pipeline_distributor(
    acks: &str,
    report: &std::path::Path,
    extra: &[&str],
) -> (Node, String) {
    pipeline_distributor_as(&["pipeline", "distributor"], acks, report, extra)
}

/// [`pipeline_distributor`] of `command` (`["run", "distributor.toml"]`: a file's).
pub fn pipeline_distributor_as(
    command: &[&str],
    acks: &str,
    report: &std::path::Path,
    extra: &[&str],
) -> (Node, String) {
    let report = report.to_str().unwrap();
    let mut args = command.to_vec();
    args.extend([
        "--endpoint",
        "tcp://127.0.0.1:0",
        "--collector-ack",
        acks,
        "--json",
        report,
    ]);
    args.extend_from_slice(extra);
    // Not -q: the tests wait for its info lines.
    let node = Node::spawn(&args);
    let line = node.wait_for("workers connect to ");
    (node, line)
}

/// A `plumbline pipeline worker` named `name`.
pub fn pipeline_worker(endpoint: &str, results: &str, name: &str, extra: &[&str]) -> Node {
    pipeline_worker_as(&["pipeline", "worker"], endpoint, results, name, extra)
}

/// [`pipeline_worker`] of `command` (`["run", "worker.toml"]`: a file's).
pub fn pipeline_worker_as(
    command: &[&str],
    endpoint: &str,
    results: &str,
    name: &str,
    extra: &[&str],
) -> Node {
    let mut args = command.to_vec();
    args.extend([
        "--endpoint",
        endpoint,
        "--collector",
        results,
        "--name",
        name,
    ]);
    args.extend_from_slice(extra);
    Node::spawn(&args)
}

/// The lines `redis-cli` prints for `args` against the server at `addr` (installed with
/// redis-server by the test command).
pub fn redis_cli(addr: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-u", &format!("redis://{addr}")])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}: {}", stderr(&out));
    stdout(&out).lines().map(|l| l.trim().to_string()).collect()
}
