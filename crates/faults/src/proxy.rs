//! A TCP fault proxy between two plumbline roles (scenario 13): it forwards each connection to
//! the upstream and, as its seed says, cuts it after a number of client bytes (with a FIN, or
//! an RST), and delays what it forwards. The cut points count bytes, not time, so one seed
//! replays the same faults on any machine. It parses nothing it forwards: whether a frame was
//! split is for the receiver to notice, and that is what the scenario checks. A small one of
//! our own rather than `noxious`, because each cut must be a pure function of the seed; std
//! threads, two per connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// What the proxy does to connections.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// The first `faulty` connections are cut; later ones pass clean, so a run can finish.
    pub faulty: u64,
    /// Each cut lands after this many client → upstream bytes.
    pub cut_after: Range<u64>,
    /// The share of cuts that reset (RST) instead of closing (FIN).
    pub reset_share: f64,
    /// Added before each forwarded read, both ways.
    pub delay: Duration,
}

/// One connection's fate, a pure function of the seed, the plan and the connection's number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fate {
    pub conn: u64,
    /// `None`: forwarded until either side closes.
    pub cut_after: Option<u64>,
    pub reset: bool,
}

/// The fate of connection `conn` (0 = the first accepted). Each connection draws from its own
/// ChaCha stream, so a fate does not depend on how many connections came before or in what
/// order their threads ran.
pub fn fate(seed: u64, plan: &FaultPlan, conn: u64) -> Fate {
    if conn >= plan.faulty || plan.cut_after.is_empty() {
        return Fate {
            conn,
            cut_after: None,
            reset: false,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(conn);
    Fate {
        conn,
        cut_after: Some(rng.gen_range(plan.cut_after.clone())),
        reset: rng.gen_bool(plan.reset_share.clamp(0.0, 1.0)),
    }
}

/// The schedule of the first `n` connections.
pub fn schedule(seed: u64, plan: &FaultPlan, n: u64) -> Vec<Fate> {
    (0..n).map(|conn| fate(seed, plan, conn)).collect()
}

/// A running proxy; stops accepting when dropped (connections in flight run out by themselves).
pub struct Proxy {
    pub addr: SocketAddr,
    /// Every fate inflicted so far, in the order the cuts happened.
    cuts: Arc<Mutex<Vec<Fate>>>,
    accepted: Arc<Mutex<u64>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub fn start(upstream: SocketAddr, seed: u64, plan: FaultPlan) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let cuts = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, a, s) = (cuts.clone(), accepted.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, upstream, seed, plan, c, a, s))?;
        Ok(Self {
            addr,
            cuts,
            accepted,
            stop,
        })
    }

    /// The cuts inflicted so far.
    pub fn cuts(&self) -> Vec<Fate> {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        *self.accepted.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    seed: u64,
    plan: FaultPlan,
    cuts: Arc<Mutex<Vec<Fate>>>,
    accepted: Arc<Mutex<u64>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn = 0;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                let fate = fate(seed, &plan, conn);
                conn += 1;
                *accepted.lock().unwrap_or_else(|p| p.into_inner()) = conn;
                // A refused upstream is the client's problem to see: it gets a closed socket.
                if let Ok(server) = TcpStream::connect(upstream) {
                    let _ = forward(client, server, fate, plan.delay, cuts.clone());
                }
            }
            // Nonblocking, so a dropped proxy stops within one poll.
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn forward(
    mut client: TcpStream,
    mut server: TcpStream,
    fate: Fate,
    delay: Duration,
    cuts: Arc<Mutex<Vec<Fate>>>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let cut = Arc::new(AtomicBool::new(false));
    let (mut client_w, mut server_r) = (client.try_clone()?, server.try_clone()?);
    let was_cut = cut.clone();
    // Upstream → client: a plain copy; its end is passed on as a half-close, unless the
    // connection was cut, whose closing is the other pump's.
    std::thread::spawn(move || {
        pump(&mut server_r, &mut client_w, None, delay);
        if !was_cut.load(Ordering::Relaxed) {
            let _ = client_w.shutdown(Shutdown::Write);
        }
    });
    std::thread::spawn(move || {
        let copied = pump(&mut client, &mut server, fate.cut_after, delay);
        if fate.cut_after != Some(copied) {
            let _ = server.shutdown(Shutdown::Write);
            return;
        }
        cut.store(true, Ordering::Relaxed);
        if fate.reset {
            // The client sees ECONNRESET once both pumps dropped their handles.
            reset_on_close(&client);
        } else {
            let _ = client.shutdown(Shutdown::Both);
        }
        cuts.lock().unwrap_or_else(|p| p.into_inner()).push(fate);
        // Ends the other pump's read of the upstream, so it drops its handles too.
        let _ = server.shutdown(Shutdown::Both);
    });
    Ok(())
}

/// Copies `from` to `to` until EOF, an error or `limit` bytes; returns the bytes copied.
fn pump(from: &mut TcpStream, to: &mut TcpStream, limit: Option<u64>, delay: Duration) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let room = limit.map_or(buf.len() as u64, |l| (l - copied).min(buf.len() as u64));
        if room == 0 {
            return copied;
        }
        let n = match from.read(&mut buf[..room as usize]) {
            Ok(0) | Err(_) => return copied,
            Ok(n) => n,
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if to.write_all(&buf[..n]).is_err() {
            return copied;
        }
        copied += n as u64;
    }
}

/// Makes the next close of `stream` send an RST instead of a FIN (SO_LINGER with 0 s).
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid fd, and a pointer to a linger struct of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> FaultPlan {
        FaultPlan {
            faulty: 5,
            cut_after: 100..10_000,
            reset_share: 0.5,
            delay: Duration::ZERO,
        }
    }

    #[test]
    fn one_seed_gives_one_schedule_and_another_seed_another() {
        assert_eq!(schedule(7, &plan(), 20), schedule(7, &plan(), 20));
        assert_ne!(schedule(7, &plan(), 20), schedule(8, &plan(), 20));
    }

    #[test]
    fn a_fate_depends_on_its_connection_alone_and_only_the_first_faulty_are_cut() {
        let all = schedule(3, &plan(), 8);
        assert_eq!(fate(3, &plan(), 4), all[4]);
        assert!(all[..5].iter().all(|f| f.cut_after.is_some()));
        assert!(all[5..].iter().all(|f| f.cut_after.is_none() && !f.reset));
        assert!(all[..5]
            .iter()
            .all(|f| (100..10_000).contains(&f.cut_after.unwrap())));
    }

    /// An upstream that counts what each connection brought until it closed.
    fn counting_upstream() -> (SocketAddr, std::sync::mpsc::Receiver<u64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    let mut buf = [0u8; 4096];
                    let mut conn = conn;
                    while let Ok(k @ 1..) = conn.read(&mut buf) {
                        n += k as u64;
                    }
                    let _ = tx.send(n);
                });
            }
        });
        (addr, rx)
    }

    #[test]
    fn the_proxy_cuts_each_connection_at_exactly_its_scheduled_byte() {
        let (upstream, counts) = counting_upstream();
        let proxy = Proxy::start(upstream, 11, plan()).unwrap();
        let expected = schedule(11, &plan(), 4);
        assert!(
            expected.iter().any(|f| f.reset) && expected.iter().any(|f| !f.reset),
            "this seed tries both kinds of cut: {expected:?}"
        );
        for fate in &expected {
            let mut conn = TcpStream::connect(proxy.addr).unwrap();
            // Exactly up to the cut, so nothing unread is left to turn a FIN into an RST.
            conn.write_all(&vec![7u8; fate.cut_after.unwrap() as usize])
                .unwrap();
            let got = counts.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(Some(got), fate.cut_after, "{fate:?}");
            let mut rest = Vec::new();
            let end = conn.read_to_end(&mut rest);
            if fate.reset {
                let kind = end.unwrap_err().kind();
                assert_eq!(kind, std::io::ErrorKind::ConnectionReset);
            } else {
                assert_eq!(end.unwrap(), 0, "a FIN, nothing more");
            }
        }
        assert_eq!(proxy.cuts(), expected);
        assert_eq!(proxy.accepted(), 4);
    }

    #[test]
    fn a_clean_connection_passes_every_byte_both_ways() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = echo.accept().unwrap();
            let mut w = c.try_clone().unwrap();
            std::io::copy(&mut c, &mut w).unwrap();
        });
        let clean = FaultPlan {
            faulty: 0,
            ..plan()
        };
        let proxy = Proxy::start(upstream, 1, clean).unwrap();
        let mut conn = TcpStream::connect(proxy.addr).unwrap();
        let sent: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        conn.write_all(&sent).unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        conn.read_to_end(&mut back).unwrap();
        assert_eq!(back, sent);
        assert!(proxy.cuts().is_empty());
    }
}
