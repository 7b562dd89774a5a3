//! Secrets stay secret, end to end, against TLS-only brokers with a password (crates/servers
//! makes their certificates per run): `send`, `worker --in` and `receive --from` carry
//! messages over `rediss://` and NATS TLS (`worker --out` and `stream` too), and no output of theirs (stdout, stderr, `--json`,
//! the report folder's run.json, runs.csv and index.html) holds the password, whether it was
//! typed in the URL or read by `--password env:VAR`. A wrong password or CA fails at once,
//! naming why, and echoing neither secret. Listeners on a non-loopback address say so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{exclusive, scratch, stderr, stdout, Node, Receiving};
use plumbline_servers::{Kind, Server, Setup};

const PASSWORD: &str = "pl-e2e-S3cret";
/// Given as the wrong password: must not show either.
const WRONG: &str = "pl-e2e-Wr0ng";

/// `plumbline ARGS` with `PLUMBLINE_TEST_PW` set to the password.
fn run(args: &[&str]) -> Output {
    let cwd = common::workdir();
    Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .current_dir(&cwd)
        .env("PLUMBLINE_TEST_PW", PASSWORD)
        .args(args)
        .output()
        .expect("plumbline runs")
}

/// `send --to URL --tls-ca CA --gen nonces --rate max --messages N`, then `extra`.
fn send(url: &str, ca: &str, messages: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "send",
        "--to",
        url,
        "--tls-ca",
        ca,
        "--gen",
        "nonces",
        "--rate",
        "max",
        "--messages",
        messages,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Every file under `dir` (a report folder) or the file itself.
fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .flat_map(|entry| files(&entry.unwrap().path()))
        .collect()
}

/// Fails if any text or file holds a secret; returns how many files were read.
fn assert_no_secret(texts: &[(&str, String)], paths: &[&Path]) -> usize {
    for (what, text) in texts {
        for secret in [PASSWORD, WRONG] {
            assert!(!text.contains(secret), "{what} shows the secret:\n{text}");
        }
    }
    let all: Vec<PathBuf> = paths.iter().flat_map(|p| files(p)).collect();
    for file in &all {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [PASSWORD, WRONG] {
            assert!(
                !text.contains(secret),
                "{} shows the secret",
                file.display()
            );
        }
    }
    all.len()
}

fn tls_broker(kind: Kind, user: Option<&str>, test: &str) -> Option<Server> {
    Server::for_test_with(kind, &Setup::tls_login(user, PASSWORD), test)
}

#[cfg(feature = "redis")]
#[test]
fn issue13_no_output_of_a_tls_redis_run_shows_its_password() {
    let Some(server) = tls_broker(Kind::Redis, None, "secrets over rediss") else {
        return;
    };
    let _cpu = exclusive();
    let certs = server.certs.clone().unwrap();
    let ca = certs.ca.to_str().unwrap();
    let dir = scratch("secrets-redis");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let typed = format!("rediss://:{PASSWORD}@{}/jobs", server.tls_addr());

    // Send with the password in the URL (warned about), work it through a group member.
    let receiver = Receiving::start(&["--idle-timeout", "3s", "--json", &path("recv.json")]);
    let sent = send(
        &typed,
        ca,
        "300",
        &[
            "--json",
            &path("send.json"),
            "--report",
            &path("send-report"),
        ],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(
        stdout(&sent).contains(":***@"),
        "the URL shows, less its password"
    );
    assert!(
        stderr(&sent).contains("shows in the process list"),
        "{}",
        stderr(&sent)
    );
    let mut worker = Node::start(&[
        "--in",
        &typed,
        "--tls-ca",
        ca,
        "--out",
        &receiver.addr,
        "--idle-timeout",
        "1s",
    ]);
    assert_eq!(worker.exit_code(30), Some(0), "{}", worker.log());
    let (code, recv_out, recv_err) = receiver.finish();
    assert_eq!(code, Some(0), "{recv_out}\n{recv_err}");

    // Send with the password from a variable, receive with it in the URL.
    let bare = format!("rediss://{}/direct", server.tls_addr());
    let typed_direct = format!("rediss://:{PASSWORD}@{}/direct", server.tls_addr());
    let sent_direct = send(&bare, ca, "50", &["--password", "env:PLUMBLINE_TEST_PW"]);
    assert!(sent_direct.status.success(), "{}", stderr(&sent_direct));
    let received = run(&[
        "receive",
        "--from",
        &typed_direct,
        "--tls-ca",
        ca,
        "--expect",
        "50",
        "--quiet",
        "--json",
        &path("from.json"),
        "--report",
        &path("from-report"),
    ]);
    assert!(received.status.success(), "{}", stderr(&received));

    // Refused: at once, naming why, echoing neither the wrong nor the right password.
    let wrong = format!("rediss://:{WRONG}@{}/jobs", server.tls_addr());
    let start = Instant::now();
    let refused = send(&wrong, ca, "1", &[]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a refused login was retried"
    );
    common::assert_fails(&refused, 1, "refused the login");
    let bad_ca = send(&typed, certs.wrong_ca.to_str().unwrap(), "1", &[]);
    common::assert_fails(&bad_ca, 1, "no plaintext fallback");
    let no_password = send(&bare, ca, "1", &[]);
    common::assert_fails(&no_password, 1, "NOAUTH");
    assert!(
        !stdout(&no_password).contains("sends no acks"),
        "{}",
        stdout(&no_password)
    );

    let read = assert_no_secret(
        &[
            ("send's stdout", stdout(&sent)),
            ("send's stderr", stderr(&sent)),
            ("the worker's log", worker.log()),
            ("receive's stdout", recv_out),
            ("receive's stderr", recv_err),
            ("receive --from's stdout", stdout(&received)),
            ("receive --from's stderr", stderr(&received)),
            ("the refusal", stderr(&refused) + &stdout(&refused)),
            ("the CA failure", stderr(&bad_ca) + &stdout(&bad_ca)),
            (
                "the NOAUTH failure",
                stderr(&no_password) + &stdout(&no_password),
            ),
        ],
        &[
            &dir.join("send.json"),
            &dir.join("send-report"),
            &dir.join("recv.json"),
            &dir.join("from.json"),
            &dir.join("from-report"),
        ],
    );
    for report in ["send-report", "from-report"] {
        for file in ["run.json", "runs.csv", "index.html"] {
            assert!(
                dir.join(report).join(file).is_file(),
                "{report}/{file} was read"
            );
        }
    }
    assert!(read >= 9, "read only {read} files");
    let run_json = std::fs::read_to_string(dir.join("send-report/run.json")).unwrap();
    assert!(
        run_json.contains(":***@"),
        "the report records the command, less its password"
    );
}

/// `worker --out URL` is a broker client like `--in`: the worker's `--password` and
/// `--tls-ca` reach it too (it used to connect with neither, so a TLS-only sink with a login
/// was out of reach), and no output shows the password.
#[cfg(feature = "redis")]
#[test]
fn issue13_a_worker_sends_its_results_to_a_tls_redis_with_the_worker_s_login() {
    let Some(server) = tls_broker(Kind::Redis, None, "worker --out rediss") else {
        return;
    };
    let _cpu = exclusive();
    let ca = server.certs.clone().unwrap().ca;
    let ca = ca.to_str().unwrap();
    let dir = scratch("secrets-worker-out");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let url = |name: &str| format!("rediss://{}/{name}", server.tls_addr());
    let login = ["--password", "env:PLUMBLINE_TEST_PW", "--tls-ca", ca];
    let sent = send(
        &url("work"),
        ca,
        "200",
        &["--password", "env:PLUMBLINE_TEST_PW"],
    );
    assert!(sent.status.success(), "{}", stderr(&sent));
    let (work, results) = (url("work"), url("results"));
    let mut args = vec![
        "worker",
        "--in",
        &work,
        "--out",
        &results,
        "--idle-timeout",
        "1s",
    ];
    args.extend_from_slice(&login);
    let worked = run(&args);
    assert!(worked.status.success(), "{}", stderr(&worked));
    let (json, report) = (path("from.json"), path("report"));
    let mut args = vec!["receive", "--from", &results, "--expect", "200", "--quiet"];
    args.extend_from_slice(&login);
    args.extend_from_slice(&["--json", &json, "--report", &report]);
    let received = run(&args);
    assert!(received.status.success(), "{}", stderr(&received));
    let summary = common::record_run(std::path::Path::new(&json));
    assert_eq!(summary["delivered"], 200, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    let read = assert_no_secret(
        &[
            ("send's output", stdout(&sent) + &stderr(&sent)),
            ("the worker's output", stdout(&worked) + &stderr(&worked)),
            ("receive's output", stdout(&received) + &stderr(&received)),
        ],
        &[&dir],
    );
    assert!(read >= 2, "the JSON and the report were read: {read}");
}

/// `stream` takes the shared login flags: its Redis stream and its Redis store (proxy mode)
/// both go over TLS with `--password`, and nothing it writes shows the password.
#[cfg(feature = "redis")]
#[test]
fn issue13_stream_runs_over_a_tls_redis_with_a_password_for_stream_and_store() {
    let Some(server) = tls_broker(Kind::Redis, None, "stream over rediss") else {
        return;
    };
    let _cpu = exclusive();
    let ca = server.certs.clone().unwrap().ca;
    let dir = scratch("secrets-stream");
    let json = dir.join("stream.json").to_str().unwrap().to_string();
    let addr = server.tls_addr();
    let stream = |extra: &[&str]| {
        let mut args = vec![
            "stream",
            "--stream",
            "redis-streams",
            "--stream-servers",
            &addr,
            "--tls-ca",
            ca.to_str().unwrap(),
            "--data-size-bytes",
            "10000",
            "--task-count",
            "6",
            "--task-sleep",
            "10ms",
            "--max-workers",
            "3",
            "--connect-timeout",
            "3s",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let ran = stream(&["--password", "env:PLUMBLINE_TEST_PW", "--json", &json]);
    assert!(ran.status.success(), "{}\n{}", stderr(&ran), stdout(&ran));
    let runs = common::record_runs(std::path::Path::new(&json));
    assert_eq!(runs.len(), 2, "default and proxy: {runs:?}");
    for run in &runs {
        assert_eq!(run["delivered"], 6, "{run}");
        assert_eq!(run["lost"], 0, "{run}");
        assert_eq!(run["stream"]["leaked_keys"], 0, "{run}");
    }
    let proxy = runs
        .iter()
        .find(|r| r["stream"]["stream_method"] == "proxy")
        .unwrap();
    assert_eq!(
        proxy["stream"]["store_bytes"], 60_000,
        "the store was used: {proxy}"
    );
    // Compute processes (Parsl's htex-local) open the store themselves: over TLS, with the
    // password the run was given.
    let json_processes = dir.join("processes.json").to_str().unwrap().to_string();
    let processes = stream(&[
        "--password",
        "env:PLUMBLINE_TEST_PW",
        "--stream-method",
        "proxy",
        "--executor",
        "parsl",
        "--parsl-executor",
        "htex-local",
        "--json",
        &json_processes,
    ]);
    assert!(
        processes.status.success(),
        "{}\n{}",
        stderr(&processes),
        stdout(&processes)
    );
    let run = common::record_run(std::path::Path::new(&json_processes));
    assert_eq!(run["stream"]["executor"], "process", "{run}");
    assert_eq!(
        (run["delivered"].as_u64(), run["lost"].as_u64()),
        (Some(6), Some(0)),
        "{run}"
    );
    assert_eq!(run["stream"]["store_bytes"], 60_000, "{run}");
    assert_eq!(run["stream"]["leaked_keys"], 0, "{run}");
    // Without the password: refused at once, named.
    let refused = stream(&["--stream-method", "default"]);
    common::assert_fails(&refused, 1, "NOAUTH");
    let read = assert_no_secret(
        &[
            ("stream's output", stdout(&ran) + &stderr(&ran)),
            (
                "the processes' output",
                stdout(&processes) + &stderr(&processes),
            ),
            ("the refusal", stdout(&refused) + &stderr(&refused)),
        ],
        &[&dir],
    );
    assert!(read >= 1, "the JSON was read");
}

#[cfg(feature = "nats")]
#[test]
fn issue13_nats_user_and_password_over_tls_end_to_end() {
    let Some(server) = tls_broker(Kind::NatsJetStream, Some("ops"), "secrets over nats tls") else {
        return;
    };
    let _cpu = exclusive();
    let certs = server.certs.clone().unwrap();
    let ca = certs.ca.to_str().unwrap();
    let dir = scratch("secrets-nats");
    let url = format!("nats://ops@{}/jobs?jetstream=1&tls=1", server.tls_addr());
    let sent = send(&url, ca, "100", &["--password", "env:PLUMBLINE_TEST_PW"]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(
        stdout(&sent).contains("100 acknowledged"),
        "{}",
        stdout(&sent)
    );
    let report = dir.join("report");
    let received = run(&[
        "receive",
        "--from",
        &url,
        "--password",
        "env:PLUMBLINE_TEST_PW",
        "--tls-ca",
        ca,
        "--expect",
        "100",
        "--quiet",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(received.status.success(), "{}", stderr(&received));
    let by_ip = format!("nats://ops@{}/jobs?jetstream=1&tls=1", server.addr);
    let mismatch = send(&by_ip, ca, "1", &["--password", "env:PLUMBLINE_TEST_PW"]);
    common::assert_fails(&mismatch, 1, "certificate");
    assert_no_secret(
        &[
            ("send", stdout(&sent) + &stderr(&sent)),
            ("receive", stdout(&received) + &stderr(&received)),
            ("the mismatch", stdout(&mismatch) + &stderr(&mismatch)),
        ],
        &[&report],
    );
}

#[test]
fn issue13_listeners_off_loopback_say_so_and_refused_shutdowns_are_logged() {
    let dir = scratch("exposed");
    let token = dir.join("token");
    std::fs::write(&token, "tok-s3cret\n").unwrap();
    let token_arg = format!("file:{}", token.display());
    let mut init = Node::start(&[
        "--in",
        "0.0.0.0:0",
        "--metrics",
        "0.0.0.0:0",
        "--control",
        "127.0.0.1:0",
        "--data",
        "127.0.0.1:0",
        "--external",
        "127.0.0.1:0",
        "--cluster-initializer",
        "--token",
        &token_arg,
        "--ui",
        "0.0.0.0:0",
    ]);
    let external = init.wait_for("external (shutdown) on ");
    init.wait_for("ready; sources on ");
    let log = init.log();
    // Each a warning-level log line.
    for flag in ["--in", "--metrics", "--ui"] {
        let said = format!("{flag} 0.0.0.0:0 is not a loopback address");
        assert!(
            log.lines().any(|l| l.contains("WARN") && l.contains(&said)),
            "{said}: {log}"
        );
    }
    assert!(!log.contains("--control 127.0.0.1:0 is not"), "{log}");

    let refused = common::plumbline(&["shutdown", &external]);
    common::assert_fails(&refused, 1, "wrong or missing token");
    let line = init.wait_for("refused a shutdown request from ");
    assert!(line.starts_with("127.0.0.1:"), "the peer is named: {line}");
    let typed = common::plumbline(&["shutdown", &external, "--token", "tok-s3cret"]);
    common::assert_fails(&typed, 2, "file:PATH or env:VAR");
    assert!(!stderr(&typed).contains("tok-s3cret"), "{}", stderr(&typed));
    let done = common::plumbline(&["shutdown", &external, "--token", &token_arg]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(init.exit_code(10), Some(0), "{}", init.log());
    assert!(!init.log().contains("tok-s3cret"));
}
