//! Endpoints as seed 001 writes them: `tcp://host:port` and `ipc://path` (a Unix domain socket).
//!
//! One [`Endpoint`] parses the URL a flag takes; [`Endpoint::bind`] gives a [`Listener`] and
//! [`Endpoint::connect`] a [`Conn`], each an enum over the two socket kinds so the pipeline's
//! roles never care which they hold. `tcp://*:port` binds every interface, as in ZeroMQ. Binding
//! an `ipc://` path replaces a stale socket file left by a dead process, refuses to replace
//! anything that is not a socket, and removes the file when the listener is dropped. Nothing
//! here reads or writes frames.

use std::convert::Infallible;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::retry::Failed;
use crate::tcp::{self, TcpError};

/// Where a pipeline role binds or connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`; `*` as host binds every interface.
    Tcp(String),
    /// A Unix domain socket's path.
    Ipc(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("'{0}' is not an endpoint: use tcp://host:port or ipc://path")]
    Syntax(String),
    #[error(transparent)]
    Tcp(#[from] TcpError),
    #[error("cannot bind {endpoint}: {source}")]
    Bind { endpoint: String, source: io::Error },
    #[error("cannot bind {endpoint}: {path} exists and is not a socket")]
    NotASocket { endpoint: String, path: String },
    #[error(transparent)]
    Connect(crate::retry::TimedOut<io::Error>),
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, EndpointError> {
        if let Some(addr) = s.strip_prefix("tcp://") {
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| EndpointError::Syntax(s.to_string()))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(EndpointError::Syntax(s.to_string()));
            }
            return Ok(Endpoint::Tcp(addr.to_string()));
        }
        match s.strip_prefix("ipc://") {
            Some(path) if !path.is_empty() => Ok(Endpoint::Ipc(PathBuf::from(path))),
            _ => Err(EndpointError::Syntax(s.to_string())),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            Endpoint::Ipc(path) => write!(f, "ipc://{}", path.display()),
        }
    }
}

impl Endpoint {
    /// Binds this endpoint. `tcp://host:0` picks a free port: ask [`Listener::endpoint`].
    pub fn bind(&self) -> Result<Listener, EndpointError> {
        match self {
            Endpoint::Tcp(addr) => {
                let addr = match addr.strip_prefix("*:") {
                    Some(port) => format!("0.0.0.0:{port}"),
                    None => addr.clone(),
                };
                let listener = tcp::listen(&addr).map_err(|e| match e {
                    TcpError::Listen { source, .. } => EndpointError::Bind {
                        endpoint: self.to_string(),
                        source,
                    },
                    other => other.into(),
                })?;
                Ok(Listener::Tcp(listener))
            }
            Endpoint::Ipc(path) => {
                remove_stale_socket(self, path)?;
                let listener = UnixListener::bind(path).map_err(|source| EndpointError::Bind {
                    endpoint: self.to_string(),
                    source,
                })?;
                Ok(Listener::Ipc(listener, path.clone()))
            }
        }
    }

    /// Connects, retrying with backoff until `timeout`: the peer may not be up yet.
    pub fn connect(&self, timeout: Duration) -> Result<Conn, EndpointError> {
        match self {
            Endpoint::Tcp(addr) => Ok(Conn::Tcp(tcp::connect(addr, timeout)?)),
            Endpoint::Ipc(path) => {
                let endpoint = self.to_string();
                let connect = |_| UnixStream::connect(path).map_err(Failed::<_, Infallible>::Retry);
                crate::retry::connect(&endpoint, timeout, connect)
                    .map(Conn::Ipc)
                    .map_err(|e| EndpointError::Connect(e.timed_out()))
            }
        }
    }
}

/// A socket file nobody listens on is left over from a dead process: remove it so the bind
/// works. A live listener or a file of another kind is left alone, and the bind names it.
fn remove_stale_socket(endpoint: &Endpoint, path: &Path) -> Result<(), EndpointError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(EndpointError::NotASocket {
            endpoint: endpoint.to_string(),
            path: path.display().to_string(),
        });
    }
    if UnixStream::connect(path).is_err() {
        std::fs::remove_file(path).ok();
    }
    Ok(())
}

/// A bound endpoint. An `ipc://` listener removes its socket file when dropped.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Ipc(UnixListener, PathBuf),
}

impl Listener {
    /// The endpoint as bound, with the real port for `tcp://host:0`.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Listener::Tcp(l) => Endpoint::Tcp(
                l.local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "?".into()),
            ),
            Listener::Ipc(_, path) => Endpoint::Ipc(path.clone()),
        }
    }

    /// One accept for loops that also watch a stop flag: `Ok(Some(..))` a connection (in
    /// blocking mode) as soon as one knocks within a short wait, `Ok(None)` when nobody
    /// knocked, `Err` after a longer nap (see [`tcp::accept_or_nap`]).
    pub fn accept_or_nap(&self) -> io::Result<Option<Conn>> {
        match self {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                Ok(tcp::accept_or_nap(l)?.map(|(stream, _)| {
                    stream.set_nodelay(true).ok();
                    Conn::Tcp(stream)
                }))
            }
            Listener::Ipc(l, _) => {
                l.set_nonblocking(true)?;
                let mut accepted = l.accept();
                if matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                    tcp::wait_for_knock(l, tcp::ACCEPT_NAP);
                    accepted = l.accept();
                }
                match accepted {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false)?;
                        Ok(Some(Conn::Ipc(stream)))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => {
                        std::thread::sleep(tcp::ACCEPT_NAP * 10);
                        Err(e)
                    }
                }
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Ipc(_, path) = self {
            std::fs::remove_file(path).ok();
        }
    }
}

/// A connected stream of either kind.
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Ipc(UnixStream),
}

impl Conn {
    /// A second handle on the same socket (one thread reads while another writes).
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Ipc(s) => Conn::Ipc(s.try_clone()?),
        })
    }

    /// Closes both directions, waking any thread blocked reading this socket.
    pub fn close(&self) {
        match self {
            Conn::Tcp(s) => s.shutdown(Shutdown::Both).ok(),
            Conn::Ipc(s) => s.shutdown(Shutdown::Both).ok(),
        };
    }

    /// Bounds how long a read may block (`None`: for ever), e.g. waiting for a hello.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(timeout),
            Conn::Ipc(s) => s.set_read_timeout(timeout),
        }
    }

    /// Bounds how long a write may block on a peer that stopped reading.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_write_timeout(timeout),
            Conn::Ipc(s) => s.set_write_timeout(timeout),
        }
    }

    /// Who is on the other end, for logs.
    pub fn peer(&self) -> String {
        match self {
            Conn::Tcp(s) => s
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp peer".into()),
            Conn::Ipc(_) => "ipc peer".into(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Ipc(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Ipc(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Ipc(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_named() {
        assert_eq!(
            "tcp://localhost:5558".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("localhost:5558".into())
        );
        assert_eq!(
            "ipc://worker.ipc".parse::<Endpoint>().unwrap(),
            Endpoint::Ipc("worker.ipc".into())
        );
        for bad in [
            "localhost:5558",
            "tcp://nohost",
            "tcp://h:99999",
            "ipc://",
            "udp://h:1",
        ] {
            let err = bad.parse::<Endpoint>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn ipc_binds_connects_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("plumbline-ipc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let endpoint = Endpoint::Ipc(dir.join("a.ipc"));
        let listener = endpoint.bind().unwrap();
        let mut client = endpoint.connect(Duration::from_secs(1)).unwrap();
        let mut server = loop {
            if let Some(conn) = listener.accept_or_nap().unwrap() {
                break conn;
            }
        };
        client.write_all(b"hi").unwrap();
        let mut buf = [0; 2];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        drop(listener);
        assert!(!dir.join("a.ipc").exists());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unbindable_ipc_path_and_port_in_use_are_named() {
        let err = Endpoint::Ipc("/nonexistent-dir/x.ipc".into())
            .bind()
            .unwrap_err()
            .to_string();
        assert!(err.contains("ipc:///nonexistent-dir/x.ipc"), "{err}");
        let first = Endpoint::Tcp("127.0.0.1:0".into()).bind().unwrap();
        let taken = first.endpoint();
        let err = taken.bind().unwrap_err().to_string();
        assert!(
            err.contains(&taken.to_string()) && err.contains("in use"),
            "{err}"
        );
    }
}
