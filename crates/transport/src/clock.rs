//! Clock offsets between hosts (issue 17): latency from a sender's stamp to a receiver's clock
//! is only true when the two clocks agree, so a node measures how far its clock is from the
//! run's reference, NTP-style, over UDP.
//!
//! ```text
//!  node                       reference (`plumbline clock --listen ADDR`)
//!   t1 ──── request(t1) ────▶ t2
//!   t4 ◀─── reply(t1,t2,t3) ─ t3
//!   offset = ((t2 − t1) + (t3 − t4)) / 2     (reference − node)
//!   delay  = (t4 − t1) − (t3 − t2)           the offset is within ±delay/2
//! ```
//!
//! Of several exchanges the one with the least delay is kept (its offset is the best bounded).
//! The wire format and that arithmetic are pure and unit-tested; [`serve`] and [`measure`]
//! own the socket. What a node does with the offset (correct its latencies, flag them) is
//! the caller's business.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use plumbline_core::header::unix_now_ns;
use plumbline_core::Shutdown;

/// The first bytes of every datagram, so a stray packet is never read as a time.
const MAGIC: [u8; 4] = *b"PLCK";
const REQUEST_LEN: usize = 12;
const REPLY_LEN: usize = 28;

/// A request: the node's send time.
pub fn request(t1: u64) -> [u8; REQUEST_LEN] {
    let mut out = [0; REQUEST_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4..].copy_from_slice(&t1.to_be_bytes());
    out
}

/// The node's send time of a request; `None` for anything else.
pub fn read_request(bytes: &[u8]) -> Option<u64> {
    (bytes.len() == REQUEST_LEN && bytes[..4] == MAGIC)
        .then(|| u64::from_be_bytes(bytes[4..12].try_into().expect("8 bytes")))
}

/// A reply: the request's `t1`, the reference's receive time `t2` and send time `t3`.
pub fn reply(t1: u64, t2: u64, t3: u64) -> [u8; REPLY_LEN] {
    let mut out = [0; REPLY_LEN];
    out[..4].copy_from_slice(&MAGIC);
    for (i, t) in [t1, t2, t3].into_iter().enumerate() {
        out[4 + 8 * i..12 + 8 * i].copy_from_slice(&t.to_be_bytes());
    }
    out
}

/// `(t1, t2, t3)` of a reply; `None` for anything else.
pub fn read_reply(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    if bytes.len() != REPLY_LEN || bytes[..4] != MAGIC {
        return None;
    }
    let at = |i: usize| u64::from_be_bytes(bytes[4 + 8 * i..12 + 8 * i].try_into().expect("8"));
    Some((at(0), at(1), at(2)))
}

/// One exchange's four times (UNIX ns: t1, t4 on the node's clock, t2, t3 on the reference's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub t1: u64,
    pub t2: u64,
    pub t3: u64,
    pub t4: u64,
}

impl Exchange {
    /// Reference − node, ns.
    pub fn offset_ns(&self) -> i64 {
        let (t1, t2, t3, t4) = (
            self.t1 as i128,
            self.t2 as i128,
            self.t3 as i128,
            self.t4 as i128,
        );
        (((t2 - t1) + (t3 - t4)) / 2) as i64
    }

    /// The round trip less the reference's own time, ns (never below 0).
    pub fn delay_ns(&self) -> u64 {
        let (t1, t2, t3, t4) = (
            self.t1 as i128,
            self.t2 as i128,
            self.t3 as i128,
            self.t4 as i128,
        );
        ((t4 - t1) - (t3 - t2)).max(0) as u64
    }
}

/// How far a node's clock is from the reference, and how sure that is.
#[derive(Clone, Debug, PartialEq)]
pub struct Offset {
    /// Reference − node, ns: add it to a node time to get reference time.
    pub offset_ns: i64,
    /// The true offset is within ±this (half the best exchange's delay), ns.
    pub uncertainty_ns: u64,
    /// Exchanges that came back.
    pub samples: usize,
}

/// The offset of the exchange with the least delay; `None` without one.
pub fn best(exchanges: &[Exchange]) -> Option<Offset> {
    let best = exchanges.iter().min_by_key(|e| e.delay_ns())?;
    Some(Offset {
        offset_ns: best.offset_ns(),
        uncertainty_ns: best.delay_ns().div_ceil(2),
        samples: exchanges.len(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("clock reference {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("clock reference {addr} did not answer any of {tries} requests within {timeout:?} each (is `plumbline clock --listen {addr}` running?)")]
    NoAnswer {
        addr: String,
        tries: usize,
        timeout: Duration,
    },
}

/// Exchanges with a reference per measurement; the least-delay one is kept.
pub const EXCHANGES: usize = 32;
/// How long one exchange waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);

/// Measures this node's offset from the reference at `addr` over [`EXCHANGES`] exchanges.
pub fn measure(addr: &str) -> Result<Offset, ClockError> {
    let io = |source| ClockError::Io {
        addr: addr.to_string(),
        source,
    };
    let target: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(io)?
        .next()
        .ok_or_else(|| io(std::io::Error::other("resolves to no address")))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).map_err(io)?;
    socket.connect(target).map_err(io)?;
    socket.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    let mut exchanges = Vec::with_capacity(EXCHANGES);
    let mut buf = [0u8; 64];
    for _ in 0..EXCHANGES {
        let t1 = unix_now_ns();
        socket.send(&request(t1)).map_err(io)?;
        let sent = Instant::now();
        // Replies to an earlier, timed-out request are skipped by their t1.
        while sent.elapsed() < REPLY_TIMEOUT {
            let Ok(n) = socket.recv(&mut buf) else { break };
            let t4 = unix_now_ns();
            if let Some((echo, t2, t3)) = read_reply(&buf[..n]) {
                if echo == t1 {
                    exchanges.push(Exchange { t1, t2, t3, t4 });
                    break;
                }
            }
        }
    }
    best(&exchanges).ok_or_else(|| ClockError::NoAnswer {
        addr: addr.to_string(),
        tries: EXCHANGES,
        timeout: REPLY_TIMEOUT,
    })
}

/// Answers requests on `socket` until `shutdown`; returns how many it answered. Anything
/// that is not a request is ignored.
pub fn serve(socket: &UdpSocket, shutdown: &Shutdown) -> std::io::Result<u64> {
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 64];
    let mut answered = 0;
    while !shutdown.requested() {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let t2 = unix_now_ns();
        if let Some(t1) = read_request(&buf[..n]) {
            socket.send_to(&reply(t1, t2, unix_now_ns()), peer)?;
            answered += 1;
        }
    }
    Ok(answered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_node_5ms_behind_with_a_symmetric_path_measures_plus_5ms() {
        // True offset +5 ms, 100 µs each way, the reference takes 10 µs.
        let (ms, us) = (1_000_000u64, 1_000u64);
        let t1 = 1_000 * ms;
        let e = Exchange {
            t1,
            t2: t1 + 5 * ms + 100 * us,
            t3: t1 + 5 * ms + 110 * us,
            t4: t1 + 210 * us,
        };
        assert_eq!(e.offset_ns(), 5_000_000);
        assert_eq!(e.delay_ns(), 200_000);
    }

    #[test]
    fn the_least_delay_exchange_wins_and_bounds_the_offset() {
        let slow = Exchange {
            t1: 0,
            t2: 9_000,
            t3: 9_000,
            t4: 10_000,
        };
        let fast = Exchange {
            t1: 0,
            t2: 600,
            t3: 600,
            t4: 1_000,
        };
        let o = best(&[slow, fast]).unwrap();
        assert_eq!((o.offset_ns, o.uncertainty_ns, o.samples), (100, 500, 2));
        assert_eq!(best(&[]), None);
    }

    #[test]
    fn stray_datagrams_are_not_times() {
        assert_eq!(read_request(b"PLCKshort"), None);
        assert_eq!(read_request(&[0; REQUEST_LEN]), None);
        assert_eq!(read_reply(&request(5)), None);
    }

    #[test]
    fn a_reference_on_loopback_answers_with_its_own_clock() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let server = std::thread::spawn(move || serve(&socket, &stop).unwrap());
        let o = measure(&addr).unwrap();
        shutdown.request();
        assert!(server.join().unwrap() >= EXCHANGES as u64);
        // One clock on both ends: the offset is within its own uncertainty of zero.
        assert!(
            o.offset_ns.unsigned_abs() <= o.uncertainty_ns + 1_000,
            "{o:?}"
        );
        assert!(o.uncertainty_ns < 50_000_000, "{o:?}");
    }

    #[test]
    fn no_reference_is_named() {
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let e = measure(&addr).unwrap_err().to_string();
        assert!(e.contains(&addr), "{e}");
    }

    proptest! {
        #[test]
        fn datagrams_round_trip(t1: u64, t2: u64, t3: u64) {
            prop_assert_eq!(read_request(&request(t1)), Some(t1));
            prop_assert_eq!(read_reply(&reply(t1, t2, t3)), Some((t1, t2, t3)));
        }

        /// Whatever the path's asymmetry, the true offset lies within the uncertainty.
        #[test]
        fn the_true_offset_is_within_the_uncertainty(
            offset in -1_000_000_000i64..1_000_000_000,
            there in 0u64..10_000_000,
            back in 0u64..10_000_000,
            busy in 0u64..1_000_000,
        ) {
            let t1 = 10_000_000_000u64;
            let t2 = (t1 as i64 + there as i64 + offset) as u64;
            let t3 = t2 + busy;
            let t4 = (t3 as i64 - offset) as u64 + back;
            let o = best(&[Exchange { t1, t2, t3, t4 }]).unwrap();
            prop_assert!((o.offset_ns - offset).unsigned_abs() <= o.uncertainty_ns);
        }
    }
}
