//! Scenarios 23 and 24: safe by default (loopback defaults, the token on a non-loopback
//! control port, read-only metrics) and brokers with credentials and TLS failing closed.

use plumbline_servers::{Kind, Server};

use crate::common::{
    assert_fails, cluster, http, initializer_args, plumbline, scrape, scratch, stderr, stdout, Node,
};
use crate::kit::scenario;

/// Every `[default: …]` of every command's help that is an address.
fn default_addresses() -> Vec<String> {
    let commands: [&[&str]; 7] = [
        &["worker"],
        &["receive"],
        &["send"],
        &["pipeline", "collector"],
        &["pipeline", "distributor"],
        &["pipeline", "worker"],
        &["bench"],
    ];
    commands
        .iter()
        .flat_map(|c| {
            let mut args = c.to_vec();
            args.push("--help");
            let help = stdout(&plumbline(&args));
            help.split("[default: ")
                .skip(1)
                .filter_map(|d| d.split(']').next())
                .filter(|d| d.contains(':') && d.chars().any(|c| c.is_ascii_digit()))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The argv (after `worker`) of a lone initializer with these control, external and metrics
/// addresses.
fn initializer<'a>(control: &'a str, external: &'a str, metrics: &'a str) -> Vec<&'a str> {
    initializer_args(control, &["--external", external, "--metrics", metrics])
}

#[test]
fn s23_defaults_are_loopback_a_public_control_port_needs_a_token_and_metrics_are_read_only() {
    let mut row = scenario(23, "safe by default: loopback, token on the control plane");
    let defaults = default_addresses();
    assert!(!defaults.is_empty(), "the pipeline endpoints have defaults");
    for d in &defaults {
        assert!(
            !d.contains("0.0.0.0") && !d.contains("[::]") && !d.contains("*"),
            "a default listens beyond loopback: {d}"
        );
    }
    // A non-loopback external (shutdown) port without a token refuses to start.
    let mut refused = Node::start(&initializer("127.0.0.1:0", "0.0.0.0:0", "127.0.0.1:0"));
    assert_eq!(refused.exit_code(10), Some(1), "{}", refused.log());
    assert!(refused.log().contains("give --token"), "{}", refused.log());
    // With a token: no token or a wrong one is refused and the cluster keeps running; the
    // token never shows in the log, the help or the process list.
    let dir = scratch("f23");
    let (good, bad) = (dir.join("good"), dir.join("bad"));
    std::fs::write(&good, "t0ken-f23\n").unwrap();
    std::fs::write(&bad, "guess\n").unwrap();
    let token = format!("file:{}", good.display());
    let (mut init, _, _, external) = cluster("sleepy", "0", 0, None, &["--token", &token]);
    assert_fails(&plumbline(&["shutdown", &external]), 1, "refused");
    let wrong = format!("file:{}", bad.display());
    assert_fails(
        &plumbline(&["shutdown", &external, "--token", &wrong]),
        1,
        "refused",
    );
    assert!(init.child.try_wait().unwrap().is_none(), "still running");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", init.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("t0ken-f23"));
    // Metrics only read: a POST changes nothing and the cluster still runs.
    let metrics = scrape(&init);
    assert!(metrics.contains("plumbline_"), "{metrics}");
    let url = init.wait_for("metrics on http://");
    let addr = url.trim_end_matches("/metrics");
    let response = http(
        addr,
        "POST /shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n",
    );
    let status = response.lines().next().unwrap_or("");
    assert!(!status.contains(" 200"), "{status}");
    assert!(
        init.child.try_wait().unwrap().is_none(),
        "a POST stopped it"
    );
    assert!(plumbline(&["shutdown", &external, "--token", &token])
        .status
        .success());
    assert_eq!(init.exit_code(10), Some(0));
    assert!(!init.log().contains("t0ken-f23"), "{}", init.log());
    row.note("defaults and the token path; a --metrics/--ui bind beyond loopback is s23b")
        .pass();
}

#[test]
fn s23b_a_public_control_metrics_or_ui_port_without_a_token_refuses_to_start() {
    let mut row = scenario(23, "control/metrics/ui beyond loopback need a token");
    // Spawned, not run to completion: a build without protected mode starts and serves, and
    // must not hang the test.
    let mut metrics = Node::start(&initializer("127.0.0.1:0", "127.0.0.1:0", "0.0.0.0:0"));
    assert_eq!(metrics.exit_code(5), Some(1), "{}", metrics.log());
    let said = metrics.log();
    assert!(
        said.contains(
            "--metrics 0.0.0.0:0 is not a loopback address: give --token file:PATH|env:VAR"
        ) && said.contains("or bind it to 127.0.0.1"),
        "{said}"
    );
    let mut control = Node::start(&initializer("0.0.0.0:0", "127.0.0.1:0", "127.0.0.1:0"));
    assert_eq!(control.exit_code(5), Some(1), "{}", control.log());
    assert!(
        control
            .log()
            .contains("--control 0.0.0.0:0 is not a loopback address"),
        "{}",
        control.log()
    );
    // The initializer's live page shows the same figures as --metrics: refused alike, before
    // it binds.
    let mut args = initializer("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0");
    args.extend(["--ui", "0.0.0.0:0"]);
    let mut ui = Node::start(&args);
    assert_eq!(ui.exit_code(5), Some(1), "{}", ui.log());
    assert!(
        ui.log()
            .contains("--ui 0.0.0.0:0 is not a loopback address"),
        "{}",
        ui.log()
    );
    assert!(!ui.log().contains("live page: http://"), "{}", ui.log());
    row.note("--data and --in warn (data plane); other commands' --ui warns")
        .pass();
}

#[test]
fn s23c_a_refused_shutdown_is_logged_with_the_peer_that_tried() {
    let mut row = scenario(23, "a refused shutdown is logged with its peer");
    let dir = scratch("f23c");
    let token = dir.join("token");
    std::fs::write(&token, "t0ken-f23c\n").unwrap();
    let token = format!("file:{}", token.display());
    let (init, _, _, external) = cluster("sleepy", "0", 0, None, &["--token", &token]);
    assert_fails(&plumbline(&["shutdown", &external]), 1, "refused");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = init.log();
    assert!(
        log.lines()
            .any(|l| l.contains("refused") && l.contains("127.0.0.1:")),
        "{log}"
    );
    assert!(!log.contains("t0ken-f23c"), "{log}");
    row.pass();
}

/// Sets a Redis password with redis-cli.
fn require_password(addr: &str, password: &str) {
    crate::common::redis_cli(addr, &["CONFIG", "SET", "requirepass", password]);
}

#[cfg(feature = "redis")]
#[test]
fn s24_broker_credentials_are_redacted_and_tls_fails_closed() {
    let Some(server) = Server::for_test(Kind::Redis, "s24") else {
        return;
    };
    let mut row = scenario(24, "TLS and auth for brokers, failing closed");
    require_password(&server.addr, "right-f24");
    let send = |url: &str| {
        plumbline(&[
            "send",
            "--to",
            url,
            "--gen",
            "nonces",
            "--messages",
            "10",
            "--rate",
            "max",
            "--quiet",
            "--connect-timeout",
            "2s",
        ])
    };
    let wrong = send(&format!("redis://:wrong-f24@{}/s24", server.addr));
    assert_ne!(wrong.status.code(), Some(0));
    let said = stderr(&wrong);
    assert!(
        said.to_lowercase().contains("password") || said.contains("WRONGPASS"),
        "{said}"
    );
    assert!(
        !said.contains("wrong-f24"),
        "the password is redacted: {said}"
    );
    let right = send(&format!("redis://:right-f24@{}/s24", server.addr));
    assert!(right.status.success(), "{}", stderr(&right));
    assert!(!stderr(&right).contains("right-f24"));
    // TLS to a plaintext-only server: a TLS error, never a silent plaintext fallback.
    let tls = send(&format!("rediss://:right-f24@{}/s24", server.addr));
    assert_ne!(tls.status.code(), Some(0), "{}", stderr(&tls));
    assert!(
        stderr(&tls).to_lowercase().contains("tls"),
        "{}",
        stderr(&tls)
    );
    row.note(
        "Redis only; Kafka SSL and a private CA need certificates this suite does not make yet",
    )
    .pass();
}
