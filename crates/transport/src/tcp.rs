//! TCP: connect with retries and backoff, listen on an address, tune sockets for frames.
//!
//! A peer that is not up yet is the normal case when a benchmark starts its parts in any order,
//! so [`connect`] retries (100 ms doubling to 1 s) until its deadline and then names the address,
//! the last error and the attempts. Nothing here reads or writes frames.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error("could not connect to {addr} within {timeout:?} ({attempts} attempts): {last}")]
    Connect {
        addr: String,
        timeout: Duration,
        attempts: u32,
        last: io::Error,
    },
    #[error("'{addr}' is not a host:port address: {source}")]
    Address { addr: String, source: io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
}

/// Resolves `host:port`.
pub fn resolve(addr: &str) -> Result<Vec<SocketAddr>, TcpError> {
    let found = addr.to_socket_addrs().map_err(|source| TcpError::Address {
        addr: addr.to_string(),
        source,
    })?;
    let found: Vec<SocketAddr> = found.collect();
    if found.is_empty() {
        return Err(TcpError::Address {
            addr: addr.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        });
    }
    Ok(found)
}

/// Connects to `addr`, retrying with backoff until `timeout` has passed.
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, TcpError> {
    let targets = resolve(addr)?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        let mut last = None;
        for target in &targets {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(target, left.max(Duration::from_millis(10))) {
                Ok(stream) => {
                    stream.set_nodelay(true).ok();
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(TcpError::Connect {
                addr: addr.to_string(),
                timeout,
                attempts,
                last: last.unwrap_or_else(|| io::Error::other("no attempt made")),
            });
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Binds a listener on `addr` (`host:port`; port 0 picks a free one).
pub fn listen(addr: &str) -> Result<TcpListener, TcpError> {
    let targets = resolve(addr)?;
    TcpListener::bind(&targets[..]).map_err(|source| TcpError::Listen {
        addr: addr.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_gives_up_with_a_named_error() {
        // Bind then drop, so the port is very likely closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        let err = connect(&addr, Duration::from_millis(400)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(400));
        let text = err.to_string();
        assert!(text.contains(&addr) && text.contains("attempts"), "{text}");
    }

    #[test]
    fn connect_waits_for_a_late_listener() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let late = std::thread::spawn({
            let addr = addr.clone();
            move || {
                std::thread::sleep(Duration::from_millis(250));
                let listener = listen(&addr).unwrap();
                listener.accept().unwrap();
            }
        });
        connect(&addr, Duration::from_secs(5)).unwrap();
        late.join().unwrap();
    }

    #[test]
    fn bad_addresses_are_named() {
        assert!(connect("nonsense", Duration::from_millis(10))
            .unwrap_err()
            .to_string()
            .contains("'nonsense' is not a host:port"));
    }
}
