//! Accepting peers: one thread per bound endpoint hands each connection to a handler thread.
//!
//! The distributor and the collector both serve many peers with blocking reads, each peer on its
//! own thread, funnelling what they read into one bounded channel that a single loop owns. This
//! module only accepts and spawns; what a peer may say is the handler's business.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use plumbline_core::Shutdown;
use plumbline_transport::endpoint::{Conn, Listener};

/// Capacity of a role's event channel. Full, the peers' reader threads block, so a flood of
/// messages backs up into TCP rather than memory.
pub const EVENT_QUEUE: usize = 4096;
/// How long a new peer has to say hello before it is dropped, so idle connections do not
/// hold threads for ever. A deadline for the whole hello, not a timeout per read: a peer
/// trickling a byte every few seconds is dropped as surely as a silent one.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the watchdog looks for peers past their hello deadline.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Handed to a peer's handler with its connection: say [`Greeting::done`] once the hello is
/// in, or the connection is closed at its deadline.
pub struct Greeting(Arc<AtomicBool>);

impl Greeting {
    /// The hello is in: the connection is the handler's to keep, with blocking reads.
    pub fn done(&self, conn: &Conn) {
        self.0.store(true, Ordering::Release);
        conn.set_read_timeout(None).ok();
    }
}

/// Peers that have not said hello yet: (deadline, a handle to close it, greeted).
type Pending = Mutex<Vec<(Instant, Conn, Arc<AtomicBool>)>>;

/// Accepts on `listener` until `stop` is requested, running `handler` on a new thread per
/// connection. A peer whose handler has not called [`Greeting::done`] within
/// [`HELLO_TIMEOUT`] is closed. Accept errors (out of descriptors) are logged and retried
/// after a nap.
pub fn serve<H>(
    listener: Listener,
    stop: Shutdown,
    role: &'static str,
    handler: H,
) -> std::io::Result<JoinHandle<()>>
where
    H: Fn(Conn, Greeting) + Send + Sync + 'static,
{
    serve_with_deadline(listener, stop, role, HELLO_TIMEOUT, handler)
}

fn serve_with_deadline<H>(
    listener: Listener,
    stop: Shutdown,
    role: &'static str,
    hello_within: Duration,
    handler: H,
) -> std::io::Result<JoinHandle<()>>
where
    H: Fn(Conn, Greeting) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let pending: Arc<Pending> = Arc::default();
    {
        let (pending, stop) = (Arc::clone(&pending), stop.clone());
        std::thread::Builder::new()
            .name(format!("{role}-hello"))
            .spawn(move || {
                while !stop.requested() {
                    std::thread::sleep(WATCH_EVERY);
                    let now = Instant::now();
                    let mut list = pending.lock().unwrap_or_else(|p| p.into_inner());
                    list.retain(|(deadline, conn, greeted)| {
                        if greeted.load(Ordering::Acquire) {
                            return false;
                        }
                        if now < *deadline {
                            return true;
                        }
                        tracing::warn!(
                            "{role}: dropped {}: no hello within {hello_within:?}",
                            conn.peer()
                        );
                        conn.close();
                        false
                    });
                }
            })?;
    }
    std::thread::Builder::new()
        .name(format!("{role}-accept"))
        .spawn(move || {
            let endpoint = listener.endpoint();
            while !stop.requested() {
                match listener.accept_or_nap() {
                    Ok(Some(conn)) => {
                        // Reads still time out, so a handler never blocks past the deadline
                        // by much even if the watchdog is late.
                        conn.set_read_timeout(Some(hello_within)).ok();
                        let greeted = Arc::new(AtomicBool::new(false));
                        if let Ok(watched) = conn.try_clone() {
                            pending.lock().unwrap_or_else(|p| p.into_inner()).push((
                                Instant::now() + hello_within,
                                watched,
                                Arc::clone(&greeted),
                            ));
                        }
                        let handler = Arc::clone(&handler);
                        let spawned = std::thread::Builder::new()
                            .name(format!("{role}-peer"))
                            .spawn(move || handler(conn, Greeting(greeted)));
                        if let Err(e) = spawned {
                            tracing::warn!(
                                "{role}: cannot start a thread for a peer on {endpoint}: {e}"
                            );
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("{role}: accept on {endpoint} failed: {e}"),
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_transport::endpoint::Endpoint;
    use std::io::{Read, Write};

    /// Regression: the hello timeout was per read, so a byte every 3 s kept a peer for ever.
    #[test]
    fn a_peer_trickling_its_hello_is_closed_at_the_deadline() {
        let listener: Endpoint = "tcp://127.0.0.1:0".parse().unwrap();
        let listener = listener.bind().unwrap();
        let at = listener.endpoint();
        let stop = Shutdown::new();
        let _accepting = serve_with_deadline(
            listener,
            stop.clone(),
            "test",
            Duration::from_millis(400),
            |mut conn: Conn, _greeting| {
                // Never greeted: reads whatever trickles in until the connection is closed.
                let mut byte = [0u8; 1];
                while matches!(conn.read(&mut byte), Ok(1)) {}
            },
        )
        .unwrap();
        let mut peer = at.connect(Duration::from_secs(2)).unwrap();
        let start = Instant::now();
        let mut closed = false;
        while start.elapsed() < Duration::from_secs(5) {
            if peer.write_all(b"x").is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(150));
            let mut probe = [0u8; 1];
            peer.set_read_timeout(Some(Duration::from_millis(1))).ok();
            if matches!(peer.read(&mut probe), Ok(0)) {
                closed = true;
                break;
            }
        }
        stop.request();
        assert!(closed, "still open after {:?}", start.elapsed());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "closed only after {:?}",
            start.elapsed()
        );
    }
}
