//! End to end: what the binary writes on stderr. Log lines carry a time and a level and
//! follow RUST_LOG, `-v` and `-q`; the broker clients' own events come through the same
//! subscriber; a broker's refusal reaches the user in its own words on the `error:` line.

mod common;

use common::{assert_fails, command, stderr, stdout};
use plumbline_servers::{Kind, Server, Setup};

/// Flags before the command (global) and after it.
type Flags<'a> = (&'a [&'a str], &'a [&'a str]);

/// Sends `n` messages to `url`, then runs `plumbline BEFORE… receive --from url --expect n
/// AFTER…` with `rust_log` as RUST_LOG; it must succeed.
fn send_then_receive(
    url: &str,
    n: u64,
    (before, after): Flags,
    rust_log: Option<&str>,
) -> std::process::Output {
    common::fill(url, n);
    let n = n.to_string();
    // Held until the run is over: a scratch folder goes when dropped.
    let cwd = common::workdir();
    let mut receive = command();
    receive
        .current_dir(&cwd)
        .args(before)
        .args([
            "receive",
            "--from",
            url,
            "--expect",
            &n,
            "--idle-timeout",
            "20s",
        ])
        .args(after);
    if let Some(filter) = rust_log {
        receive.env("RUST_LOG", filter);
    }
    let out = receive.output().expect("plumbline runs");
    assert!(out.status.success(), "receive: {}", stderr(&out));
    out
}

/// What `receive --expect 5`'s summary on stdout says of the five.
const RECEIVED: &str = "received 5 messages";

/// The lines of `text` that a log level opens (after the time), e.g. "INFO".
fn at_level<'a>(text: &'a str, level: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(level))
        .collect()
}

#[cfg(feature = "nats")]
#[test]
fn rust_log_debug_shows_the_nats_clients_own_events_and_quiet_shows_no_info_lines() {
    let Some(server) = Server::for_test(Kind::NatsJetStream, "logs of the nats client") else {
        return;
    };
    let url = |subject: &str| format!("nats://{}/{subject}?jetstream=1", server.addr);

    // Default: plumbline's own info lines, none of the client's (dependencies warn only).
    let plain = send_then_receive(&url("logs-plain"), 5, (&[], &[]), None);
    assert!(stdout(&plain).contains(RECEIVED), "{}", stdout(&plain));
    let plain = stderr(&plain);
    let info = at_level(&plain, "INFO");
    assert!(
        info.iter().any(|l| l.contains("consuming from nats://")),
        "{plain}"
    );
    assert!(!plain.contains("async_nats"), "{plain}");

    // RUST_LOG=debug: async-nats' own connection events, named by its crate's target.
    let debug = stderr(&send_then_receive(
        &url("logs-debug"),
        5,
        (&[], &[]),
        Some("debug"),
    ));
    assert!(
        debug
            .lines()
            .any(|l| l.contains("async_nats") && l.contains("connected successfully")),
        "{debug}"
    );
    assert!(!at_level(&debug, "DEBUG").is_empty(), "{debug}");

    // -v: the dependencies' info lines too, so the client's connection shows.
    let verbose = stderr(&send_then_receive(
        &url("logs-verbose"),
        5,
        (&["-v"], &[]),
        None,
    ));
    assert!(
        verbose.contains("async_nats") && verbose.contains("connected successfully"),
        "{verbose}"
    );

    // -q, before the command or (the old spelling) after it: no info lines, and stdout
    // keeps the result.
    let quiet: [(&str, Flags); 2] = [
        ("logs-quiet", (&["-q"], &[])),
        ("logs-quiet-after", (&[], &["-q"])),
    ];
    for (subject, flags) in quiet {
        let out = send_then_receive(&url(subject), 5, flags, None);
        let err = stderr(&out);
        assert!(at_level(&err, "INFO").is_empty(), "{flags:?}: {err}");
        assert!(!err.contains("consuming from"), "{flags:?}: {err}");
        assert!(stdout(&out).contains(RECEIVED), "{}", stdout(&out));
    }
}

/// A Redis that asks for a password, reached without one: the user reads redis' own reason
/// (NOAUTH, "Authentication required") on the one `error:` line, exit 1.
#[cfg(feature = "redis")]
#[test]
fn a_brokers_refusal_names_the_brokers_own_reason_on_the_error_line() {
    let setup = Setup {
        password: Some("s3cret-logs".into()),
        ..Setup::default()
    };
    let Some(server) = Server::for_test_with(Kind::Redis, &setup, "redis refusal named") else {
        return;
    };
    let url = format!("redis://{}/logs", server.addr);
    let out = common::plumbline(&[
        "receive",
        "--from",
        &url,
        "--expect",
        "1",
        "--connect-timeout",
        "2s",
    ]);
    assert_fails(&out, 1, "NOAUTH");
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("Authentication required"), "{err}");
}
