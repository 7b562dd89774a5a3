//! Secured brokers, against real TLS-only servers with a login (crates/servers makes their
//! certificates for `localhost` per run): the right CA, name and password connect and carry
//! messages; a wrong CA, a host-name mismatch, a wrong or missing password and a plaintext
//! client each fail at once (not after the connect timeout) with the broker's reason, and no
//! error shows the password.
#![cfg(all(feature = "redis", feature = "nats"))]

use std::time::{Duration, Instant};

use plumbline_core::secret::Secret;
use plumbline_servers::{Kind, Server, Setup};
use plumbline_transport::broker::{connect_consumer, connect_producer, BrokerError, ClientOptions};
use plumbline_transport::config::TransportConfig;

const PASSWORD: &str = "pl-s3cret-PW";
/// Longer than any fail-fast below may take; a retried failure takes the whole of it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

fn options(ca: Option<&std::path::Path>) -> ClientOptions {
    ClientOptions {
        connect_timeout: CONNECT_TIMEOUT,
        tls_ca: ca.map(Into::into),
        group: "secured".into(),
        ..ClientOptions::default()
    }
}

fn url(text: &str) -> TransportConfig {
    text.parse().expect("a valid URL")
}

/// Sends 20 messages and takes them back.
fn round_trip(config: &TransportConfig, options: &ClientOptions) {
    let mut consumer = connect_consumer(config, options).unwrap_or_else(|e| panic!("{e}"));
    let mut producer = connect_producer(config, options).unwrap_or_else(|e| panic!("{e}"));
    for n in 0..20u32 {
        producer.send(n, &n.to_be_bytes()).unwrap();
    }
    producer.finish(Duration::from_secs(10)).unwrap();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < 20 && Instant::now() < deadline {
        let batch = consumer.poll(64, Duration::from_millis(200)).unwrap();
        consumer.ack(&batch).unwrap();
        got += batch.len();
    }
    assert_eq!(got, 20, "{config}: every message back over TLS");
}

/// Connecting fails, at once, with an error that does not show the password.
fn refused(config: &TransportConfig, options: &ClientOptions) -> BrokerError {
    let start = Instant::now();
    let err = match connect_producer(config, options) {
        Ok(_) => panic!("{config}: connected, but must not"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(
        !text.contains(PASSWORD),
        "{config}: the error shows the password: {text}"
    );
    assert!(
        start.elapsed() < CONNECT_TIMEOUT / 2,
        "{config}: took {:?}, so it was retried: {text}",
        start.elapsed()
    );
    err
}

fn secured(kind: Kind, user: Option<&str>, test: &str) -> Option<Server> {
    Server::for_test_with(kind, &Setup::tls_login(user, PASSWORD), test)
}

#[test]
fn redis_over_tls_with_a_password_connects_only_when_everything_is_right() {
    let Some(server) = secured(Kind::Redis, None, "redis tls") else {
        return;
    };
    let certs = server.certs.clone().unwrap();
    let good = url(&format!("rediss://:{PASSWORD}@{}/s", server.tls_addr()));
    round_trip(&good, &options(Some(&certs.ca)));
    // --password in place of the URL's.
    let bare = url(&format!("rediss://{}/s", server.tls_addr()));
    let with_flag = ClientOptions {
        password: Some(Secret::new(PASSWORD)),
        ..options(Some(&certs.ca))
    };
    round_trip(&bare, &with_flag);

    let err = refused(&good, &options(Some(&certs.wrong_ca)));
    assert!(matches!(err, BrokerError::Tls { .. }), "wrong CA: {err}");
    let by_ip = url(&format!("rediss://:{PASSWORD}@{}/s", server.addr));
    let err = refused(&by_ip, &options(Some(&certs.ca)));
    assert!(
        matches!(err, BrokerError::Tls { .. }),
        "host-name mismatch: {err}"
    );
    let wrong = url(&format!("rediss://:not-it@{}/s", server.tls_addr()));
    let err = refused(&wrong, &options(Some(&certs.ca)));
    assert!(
        matches!(err, BrokerError::Auth { .. })
            && err
                .to_string()
                .to_lowercase()
                .contains("authentication failed"),
        "wrong password: {err}"
    );
    let err = refused(&bare, &options(Some(&certs.ca)));
    assert!(
        matches!(err, BrokerError::Auth { .. }) && err.to_string().contains("NOAUTH"),
        "no password: {err}"
    );
}

#[test]
fn redis_refuses_a_ca_for_plaintext_and_plaintext_never_reaches_a_tls_port() {
    let Some(server) = secured(Kind::Redis, Some("alice"), "redis plaintext") else {
        return;
    };
    let certs = server.certs.clone().unwrap();
    let plain = url(&format!("redis://alice:{PASSWORD}@{}/s", server.tls_addr()));
    let err = refused(&plain, &options(Some(&certs.ca)));
    assert!(err.to_string().contains("does not ask for TLS"), "{err}");
    let quick = ClientOptions {
        connect_timeout: Duration::from_secs(1),
        ..options(None)
    };
    let err = match connect_producer(&plain, &quick) {
        Ok(_) => panic!("a plaintext client got through to a TLS-only port"),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains(PASSWORD), "{err}");
    // An ACL user logs in by name.
    let good = url(&format!(
        "rediss://alice:{PASSWORD}@{}/s",
        server.tls_addr()
    ));
    round_trip(&good, &options(Some(&certs.ca)));
}

#[test]
fn nats_with_user_and_password_over_tls() {
    let Some(server) = secured(Kind::Nats, Some("bob"), "nats tls") else {
        return;
    };
    let certs = server.certs.clone().unwrap();
    let good = url(&format!(
        "nats://bob:{PASSWORD}@{}/s?tls=1",
        server.tls_addr()
    ));
    round_trip(&good, &options(Some(&certs.ca)));

    let err = refused(&good, &options(Some(&certs.wrong_ca)));
    assert!(matches!(err, BrokerError::Tls { .. }), "wrong CA: {err}");
    let by_ip = url(&format!("nats://bob:{PASSWORD}@{}/s?tls=1", server.addr));
    let err = refused(&by_ip, &options(Some(&certs.ca)));
    assert!(
        matches!(err, BrokerError::Tls { .. }),
        "host-name mismatch: {err}"
    );
    let wrong = url(&format!("nats://bob:not-it@{}/s?tls=1", server.tls_addr()));
    let err = refused(&wrong, &options(Some(&certs.ca)));
    assert!(
        matches!(err, BrokerError::Auth { .. }) && err.to_string().contains("uthoriz"),
        "wrong password: {err}"
    );
}

#[test]
fn nats_user_and_password_in_the_url_log_in_without_tls() {
    let setup = Setup {
        user: Some("carol".into()),
        password: Some(PASSWORD.into()),
        tls: false,
    };
    let Some(server) = Server::for_test_with(Kind::NatsJetStream, &setup, "nats login") else {
        return;
    };
    let good = url(&format!(
        "nats://carol:{PASSWORD}@{}/jobs?jetstream=1",
        server.addr
    ));
    round_trip(&good, &options(None));
    let wrong = url(&format!("nats://carol:nope@{}/jobs", server.addr));
    let err = refused(&wrong, &options(None));
    assert!(matches!(err, BrokerError::Auth { .. }), "{err}");
}

#[test]
fn asking_for_tls_from_a_plaintext_broker_never_talks_plaintext() {
    // NATS' INFO says the server has no TLS: refused at once.
    if let Some(server) = Server::for_test(Kind::Nats, "nats tls from plaintext") {
        let config = url(&format!("nats://{}/s?tls=1", server.addr));
        let err = refused(&config, &options(None));
        assert!(matches!(err, BrokerError::Tls { .. }), "{config}: {err}");
    }
    // A plaintext Redis never answers the TLS hello: the connect times out and says why.
    if let Some(server) = Server::for_test(Kind::Redis, "redis tls from plaintext") {
        let config = url(&format!("rediss://{}/s", server.addr));
        let quick = ClientOptions {
            connect_timeout: Duration::from_secs(1),
            ..options(None)
        };
        let err = match connect_producer(&config, &quick) {
            Ok(_) => panic!("rediss:// connected to a plaintext Redis"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("TLS was asked for"), "{err}");
    }
}
