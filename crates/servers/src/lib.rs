//! Real brokers for tests: `redis-server`, `nats-server` (core or JetStream) and `tansu` (a
//! Kafka-protocol broker), each started on a free loopback port in its own scratch folder,
//! waited for until it accepts connections, and killed when dropped. Nothing here is a mock,
//! and nothing here speaks a broker's protocol: the transport backends do that.
//!
//! [`Server::start`] fails when a binary is missing. Tests go through [`Server::for_test`],
//! which then fails too if `PLUMBLINE_REQUIRE_BROKERS=1` (set by `scripts/test`, so CI runs
//! every broker test) and otherwise prints a loud `SKIPPED` line and returns `None`.
//!
//! A [`Setup`] asks for a login (redis' `requirepass` or an ACL user, nats' user and password)
//! and for TLS only: redis-server on a `--tls-port` with its plaintext port off, nats-server
//! requiring TLS. Its certificates ([`Certs`]) are made for the run, for `localhost` only, by
//! a CA of their own, so `127.0.0.1` is a host-name mismatch and another CA a wrong one.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Nats,
    NatsJetStream,
    Kafka,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server",
            Kind::Nats | Kind::NatsJetStream => "nats-server",
            Kind::Kafka => "tansu",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Kind::Redis => "apt-get install redis-server (scripts/test does it)",
            Kind::Nats | Kind::NatsJetStream => {
                "apt-get install nats-server (scripts/test does it)"
            }
            Kind::Kafka => {
                "cargo install tansu --locked --version 0.6.0 --features dynostore \
                 (scripts/test does it, once per machine)"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{binary} is not installed: {hint}")]
    Missing {
        binary: &'static str,
        hint: &'static str,
    },
    #[error("{binary} did not accept connections on {addr} within {waited:?}: {detail}")]
    NotReady {
        binary: &'static str,
        addr: String,
        waited: Duration,
        detail: String,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// How a broker is secured: a login, TLS only. Redis and NATS (core and JetStream) take both.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Redis: an ACL user (else `requirepass` for the default user). NATS: the user.
    pub user: Option<String>,
    pub password: Option<String>,
    /// TLS only, no plaintext port, with certificates made for this server.
    pub tls: bool,
}

impl Setup {
    /// TLS only, with `password` (for `user`, if given).
    pub fn tls_login(user: Option<&str>, password: &str) -> Setup {
        Setup {
            user: user.map(Into::into),
            password: Some(password.into()),
            tls: true,
        }
    }
}

/// A test CA, a server certificate it signed for `localhost`, and a second CA that signed
/// nothing (the wrong CA), as PEM files.
#[derive(Clone, Debug)]
pub struct Certs {
    pub ca: PathBuf,
    pub wrong_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    /// Makes them in `dir`.
    pub fn generate(dir: &Path) -> Result<Certs, ServerError> {
        let bad = |e: rcgen::Error| ServerError::Setup(format!("making test certificates: {e}"));
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem)
                .map(|()| path)
                .map_err(|e| ServerError::Setup(format!("writing {name}: {e}")))
        };
        let authority = |name: &str| -> Result<(rcgen::Certificate, rcgen::KeyPair), rcgen::Error> {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate()?;
            Ok((params.self_signed(&key)?, key))
        };
        let (ca, ca_key) = authority("plumbline test CA").map_err(bad)?;
        let (wrong, _) = authority("plumbline wrong CA").map_err(bad)?;
        let key = rcgen::KeyPair::generate().map_err(bad)?;
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .and_then(|params| params.signed_by(&key, &ca, &ca_key))
            .map_err(bad)?;
        Ok(Certs {
            ca: write("ca.pem", ca.pem())?,
            wrong_ca: write("wrong-ca.pem", wrong.pem())?,
            cert: write("server.pem", cert.pem())?,
            key: write("server.key", key.serialize_pem())?,
        })
    }
}

/// A running broker; killed (and its folder removed) when dropped.
pub struct Server {
    pub kind: Kind,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// With [`Setup::tls`]: its certificates (valid for `localhost`, see [`Server::tls_addr`]).
    pub certs: Option<Certs>,
    child: Child,
    dir: PathBuf,
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// How long a broker may take to start.
const READY: Duration = Duration::from_secs(20);

impl Server {
    /// For a test: the server, or `None` after a loud SKIPPED line when its binary is missing
    /// and `PLUMBLINE_REQUIRE_BROKERS` is not `1`. Any other failure panics: the test fails.
    pub fn for_test(kind: Kind, test: &str) -> Option<Server> {
        Server::for_test_with(kind, &Setup::default(), test)
    }

    /// [`Server::for_test`] with a login and/or TLS.
    pub fn for_test_with(kind: Kind, setup: &Setup, test: &str) -> Option<Server> {
        match Server::start_with(kind, setup) {
            Ok(server) => Some(server),
            Err(e @ ServerError::Missing { .. })
                if std::env::var("PLUMBLINE_REQUIRE_BROKERS").as_deref() != Ok("1") =>
            {
                eprintln!("SKIPPED {test}: {e} (set PLUMBLINE_REQUIRE_BROKERS=1 to fail instead)");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    /// Starts `kind` on a free port, retrying twice if another process took the port first.
    pub fn start(kind: Kind) -> Result<Server, ServerError> {
        Server::start_with(kind, &Setup::default())
    }

    /// [`Server::start`] with a login and/or TLS.
    pub fn start_with(kind: Kind, setup: &Setup) -> Result<Server, ServerError> {
        if kind == Kind::Kafka && (setup.tls || setup.password.is_some()) {
            return Err(ServerError::Setup(
                "tansu serves neither TLS nor SASL: the Kafka client's security settings are \
                 unit-tested instead"
                    .into(),
            ));
        }
        let mut last = None;
        for _ in 0..3 {
            match Server::start_once(kind, setup) {
                Ok(server) => return Ok(server),
                Err(e @ ServerError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ServerError::Missing {
            binary: kind.binary(),
            hint: kind.install_hint(),
        }))
    }

    /// `localhost:PORT`: the name the TLS certificate is for.
    pub fn tls_addr(&self) -> String {
        self.addr.replace("127.0.0.1", "localhost")
    }

    fn start_once(kind: Kind, setup: &Setup) -> Result<Server, ServerError> {
        let binary = kind.binary();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let dir =
            std::env::temp_dir().join(format!("plumbline-{binary}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| ServerError::Spawn { binary, source })?;
        let certs = setup.tls.then(|| Certs::generate(&dir)).transpose()?;
        let mut command = Command::new(binary);
        match kind {
            Kind::Redis => {
                command.args(["--bind", "127.0.0.1"]);
                match &certs {
                    None => command.args(["--port", &port.to_string()]),
                    Some(certs) => command
                        .args(["--port", "0", "--tls-port", &port.to_string()])
                        .arg("--tls-cert-file")
                        .arg(&certs.cert)
                        .arg("--tls-key-file")
                        .arg(&certs.key)
                        .arg("--tls-ca-cert-file")
                        .arg(&certs.ca)
                        .args(["--tls-auth-clients", "no"]),
                };
                match (&setup.user, &setup.password) {
                    (Some(user), Some(password)) => {
                        let acl = dir.join("users.acl");
                        std::fs::write(
                            &acl,
                            format!("user default off\nuser {user} on >{password} ~* &* +@all\n"),
                        )
                        .map_err(|source| ServerError::Spawn { binary, source })?;
                        command.arg("--aclfile").arg(acl);
                    }
                    (None, Some(password)) => {
                        command.args(["--requirepass", password]);
                    }
                    _ => {}
                }
                command.args(["--save", "", "--appendonly", "no"]);
                command.arg("--dir").arg(&dir);
            }
            Kind::Nats | Kind::NatsJetStream => {
                let mut conf = format!("listen: \"127.0.0.1:{port}\"\n");
                if kind == Kind::NatsJetStream {
                    conf += &format!(
                        "jetstream {{ store_dir: {:?} }}\n",
                        dir.display().to_string()
                    );
                }
                if let Some(certs) = &certs {
                    conf += &format!(
                        "tls {{ cert_file: {:?}, key_file: {:?} }}\n",
                        certs.cert.display().to_string(),
                        certs.key.display().to_string()
                    );
                }
                if let Some(password) = &setup.password {
                    let user = setup.user.as_deref().unwrap_or("plumbline");
                    conf +=
                        &format!("authorization {{ user: {user:?}, password: {password:?} }}\n");
                }
                let path = dir.join("nats.conf");
                std::fs::write(&path, conf)
                    .map_err(|source| ServerError::Spawn { binary, source })?;
                command.arg("-c").arg(path);
            }
            Kind::Kafka => {
                let url = format!("tcp://{addr}");
                command.args(["broker", "--listener-url", &url]);
                command.args(["--advertised-listener-url", &url]);
                command.args(["--storage-engine", "memory://tansu/"]);
            }
        }
        let log = std::fs::File::create(dir.join("server.log"))
            .map_err(|source| ServerError::Spawn { binary, source })?;
        let child = command
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|source| ServerError::Spawn { binary, source })?,
            )
            .stderr(log)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => ServerError::Missing {
                    binary,
                    hint: kind.install_hint(),
                },
                _ => ServerError::Spawn { binary, source },
            })?;
        let mut server = Server {
            kind,
            addr,
            certs,
            child,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), ServerError> {
        let start = Instant::now();
        loop {
            if TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || start.elapsed() > READY {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(ServerError::NotReady {
                    binary: self.kind.binary(),
                    addr: self.addr.clone(),
                    waited: start.elapsed(),
                    detail: match exited {
                        Some(status) => format!("it exited with {status}; log ends: {tail:?}"),
                        None => format!("log ends: {tail:?}"),
                    },
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_installed_broker_starts_and_accepts_connections() {
        for kind in [Kind::Redis, Kind::Nats, Kind::NatsJetStream, Kind::Kafka] {
            let Some(server) = Server::for_test(kind, &format!("{kind:?} starts")) else {
                continue;
            };
            TcpStream::connect(&server.addr).expect("accepts after start");
            let dir = server.dir.clone();
            drop(server);
            assert!(!dir.exists(), "{kind:?}: scratch folder left behind");
        }
    }

    #[test]
    fn a_tls_server_has_certificates_for_localhost_and_no_plaintext_port() {
        let setup = Setup {
            password: Some("pw".into()),
            tls: true,
            ..Setup::default()
        };
        for kind in [Kind::Redis, Kind::Nats] {
            let Some(server) = Server::for_test_with(kind, &setup, &format!("{kind:?} tls")) else {
                continue;
            };
            let certs = server.certs.clone().expect("tls servers have certificates");
            for file in [&certs.ca, &certs.wrong_ca, &certs.cert, &certs.key] {
                let pem = std::fs::read_to_string(file).unwrap();
                assert!(pem.starts_with("-----BEGIN"), "{}", file.display());
            }
            assert!(server.tls_addr().starts_with("localhost:"));
            TcpStream::connect(&server.addr).expect("its TLS port accepts connections");
        }
        assert!(
            Server::start_with(Kind::Kafka, &setup).is_err(),
            "tansu cannot serve TLS"
        );
    }
}
