//! TCP: connect with retries and backoff, listen on an address, tune sockets for frames.
//!
//! A peer that is not up yet is the normal case when a benchmark starts its parts in any order,
//! so [`connect`] retries by the one policy of every connect ([`crate::retry`]) until its
//! deadline and then names the address, the last error and the attempts. Nothing here reads or writes frames.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::retry::Failed;

#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error(transparent)]
    Connect(crate::retry::TimedOut<io::Error>),
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

/// Whether a listener on `addr` is reachable from this host only: every address it resolves
/// to is loopback. `0.0.0.0`, `::` and a host's own name are not. An address that does not
/// resolve counts as loopback here: binding it fails, naming it.
pub fn is_loopback(addr: &str) -> bool {
    resolve(addr).map_or(true, |found| found.iter().all(|a| a.ip().is_loopback()))
}

/// Connects to `addr`, retrying ([`crate::retry`]) until `timeout` has passed; each attempt
/// tries every address `addr` resolves to.
pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, TcpError> {
    let targets = resolve(addr)?;
    crate::retry::connect(addr, timeout, |left| {
        let mut last = None;
        for target in &targets {
            match TcpStream::connect_timeout(target, left) {
                Ok(stream) => {
                    stream.set_nodelay(true).ok();
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        let last = last.unwrap_or_else(|| io::Error::other("no address to try"));
        Err(Failed::<_, Infallible>::Retry(last))
    })
    .map_err(|e| TcpError::Connect(e.timed_out()))
}

/// How long a polling accept loop waits for a knock before it looks at its stop flag or clock
/// again; after an error it naps ten times as long, so a caller that logs and retries does not
/// spin.
pub const ACCEPT_NAP: Duration = Duration::from_millis(10);

/// One accept on a non-blocking listener, for loops that also watch a stop flag or a clock:
/// `Ok(Some(..))` a connection, already back in blocking mode, as soon as one knocks within
/// [`ACCEPT_NAP`] (a nap that slept through a knock would add up to its length to the first
/// item's latency of every run: 0.5 % of a 1 s run on average); `Ok(None)` when nobody knocked;
/// `Err` (out of descriptors, say) after a longer nap.
pub fn accept_or_nap(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    if let Some(conn) = accept_now(listener)? {
        return Ok(Some(conn));
    }
    wait_for_knock(listener, ACCEPT_NAP);
    accept_now(listener)
}

/// An accept that does not wait: `Ok(None)` when nobody is waiting.
fn accept_now(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    match listener.accept() {
        Ok((stream, peer)) => {
            stream.set_nonblocking(false)?;
            Ok(Some((stream, peer)))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => {
            std::thread::sleep(ACCEPT_NAP * 10);
            Err(e)
        }
    }
}

/// Returns once a connection waits on `listener` (or it has an error to report), or after
/// `timeout`.
#[cfg(unix)]
pub(crate) fn wait_for_knock(listener: &impl std::os::fd::AsRawFd, timeout: Duration) {
    let mut knock = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, alive for the call; the descriptor is borrowed from `listener`,
    // which outlives it. An interrupted poll just returns early, which callers allow.
    unsafe { libc::poll(&mut knock, 1, ms) };
}

#[cfg(not(unix))]
pub(crate) fn wait_for_knock<T>(_: &T, timeout: Duration) {
    std::thread::sleep(timeout);
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
    use std::time::Instant;

    #[test]
    fn only_loopback_addresses_are_loopback() {
        for addr in ["127.0.0.1:1", "[::1]:1", "localhost:1", "127.9.9.9:0"] {
            assert!(is_loopback(addr), "{addr}");
        }
        for addr in ["0.0.0.0:1", "[::]:1", "192.0.2.1:1"] {
            assert!(!is_loopback(addr), "{addr}");
        }
    }

    /// Bound then dropped, so very likely closed (and free for a late listener).
    fn closed_addr() -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("127.0.0.1:{port}")
    }

    #[test]
    fn connect_gives_up_with_a_named_error() {
        let addr = closed_addr();
        let start = Instant::now();
        let err = connect(&addr, Duration::from_millis(400)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(400));
        let text = err.to_string();
        assert!(text.contains(&addr) && text.contains("attempts"), "{text}");
    }

    #[test]
    fn connect_waits_for_a_late_listener() {
        let addr = closed_addr();
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
    fn a_knock_during_the_wait_is_answered_by_the_same_call() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        // A knock 2 ms into the call's wait: a call that naps through it returns nothing. A
        // knocker that a busy machine delays past the wait shows nothing either way: try again.
        for _ in 0..5 {
            let (go, wait) = std::sync::mpsc::channel();
            let knocker = std::thread::spawn(move || {
                wait.recv().unwrap();
                std::thread::sleep(Duration::from_millis(2));
                let client = TcpStream::connect(addr).unwrap();
                (Instant::now(), client)
            });
            go.send(()).unwrap();
            let accepted = accept_or_nap(&listener).unwrap();
            let returned = Instant::now();
            let (knocked, _client) = knocker.join().unwrap();
            if accepted.is_some() {
                return;
            }
            assert!(
                knocked + Duration::from_millis(1) > returned,
                "the call returned nothing {:?} after a knock during its wait",
                returned - knocked
            );
            // Accept the late knock so the next round starts with nobody waiting.
            while accept_or_nap(&listener).unwrap().is_none() {}
        }
        panic!("the knocker never knocked within the wait: the machine is too busy to tell");
    }

    #[test]
    fn accept_or_nap_naps_when_nobody_knocks() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        assert!(accept_or_nap(&listener).unwrap().is_none());
        assert!(start.elapsed() >= ACCEPT_NAP);
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = (0..100).find_map(|_| accept_or_nap(&listener).unwrap());
        let (stream, _) = accepted.expect("the waiting client is accepted");
        stream
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut buf = [0u8; 1];
        // Blocking again: a read times out instead of failing with WouldBlock at once.
        let err = std::io::Read::read(&mut &stream, &mut buf).unwrap_err();
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }

    #[test]
    fn bad_addresses_are_named() {
        assert!(connect("nonsense", Duration::from_millis(10))
            .unwrap_err()
            .to_string()
            .contains("'nonsense' is not a host:port"));
    }
}
