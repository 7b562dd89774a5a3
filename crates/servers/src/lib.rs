//! Real brokers for tests: `redis-server`, `nats-server` (core or JetStream) and `tansu` (a
//! Kafka-protocol broker), each started on a free loopback port in its own scratch folder,
//! waited for until it accepts connections, and killed when dropped. Nothing here is a mock,
//! and nothing here speaks a broker's protocol: the transport backends do that.
//!
//! [`Server::start`] fails when a binary is missing. Tests go through [`Server::for_test`],
//! which then fails too if `PLUMBLINE_REQUIRE_BROKERS=1` (set by `scripts/test`, so CI runs
//! every broker test) and otherwise prints a loud `SKIPPED` line and returns `None`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
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
}

/// A running broker; killed (and its folder removed) when dropped.
pub struct Server {
    pub kind: Kind,
    /// `127.0.0.1:PORT`
    pub addr: String,
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
        match Server::start(kind) {
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
        let mut last = None;
        for _ in 0..3 {
            match Server::start_once(kind) {
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

    fn start_once(kind: Kind) -> Result<Server, ServerError> {
        let binary = kind.binary();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let dir =
            std::env::temp_dir().join(format!("plumbline-{binary}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| ServerError::Spawn { binary, source })?;
        let mut command = Command::new(binary);
        match kind {
            Kind::Redis => {
                command.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
                command.args(["--save", "", "--appendonly", "no"]);
                command.arg("--dir").arg(&dir);
            }
            Kind::Nats | Kind::NatsJetStream => {
                command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
                if kind == Kind::NatsJetStream {
                    command.arg("-js").arg("-sd").arg(&dir);
                }
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
}
