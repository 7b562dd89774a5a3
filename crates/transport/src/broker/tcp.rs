//! `tcp://host:port` behind the broker traits: plumbline's own length-prefixed frames with no
//! broker in between. The consumer binds the address and takes frames from every producer
//! that connects; the producer connects (with retries) and writes through a 64 KiB buffer.
//!
//! Its peers are untrusted, as `receive --listen`'s are: at most `max_connections` at once
//! (more are closed and counted), each frame under the `intake` limits (read timeout, minimum
//! rate, a buffer budget all connections share), so slow or stalled producers are closed,
//! counted and named in [`ConsumerStats`] while the others go on.
//!
//! At-most-once: there are no acks, so what a dead consumer had read but not processed is
//! gone, and sequence numbers report it. A producer's `finish` means "written to the socket".

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use plumbline_core::frame::{FrameAtOffset, FrameCodec, FrameError, FrameReader};
use plumbline_core::intake::{IntakeLimits, Slots};

use super::{
    check_size, take_ready, BrokerError, ClientOptions, Consumer, ConsumerStats, Delivery,
    Producer, ProducerStats, QueuedBytes, MAX_REASONS,
};
use crate::tcp;

pub struct TcpProducer {
    addr: String,
    out: BufWriter<TcpStream>,
    max_payload: usize,
    sent: u64,
}

impl TcpProducer {
    pub fn connect(addr: &str, options: &ClientOptions) -> Result<Self, BrokerError> {
        let stream =
            tcp::connect(addr, options.connect_timeout).map_err(|e| BrokerError::Unreachable {
                what: "a tcp receiver",
                addr: addr.to_string(),
                timeout: options.connect_timeout,
                why: e.to_string(),
            })?;
        Ok(Self {
            addr: addr.to_string(),
            out: BufWriter::with_capacity(64 * 1024, stream),
            max_payload: options.max_payload,
            sent: 0,
        })
    }

    fn gone(&self, e: std::io::Error) -> BrokerError {
        BrokerError::Backend(format!("tcp receiver {}: {e}", self.addr))
    }
}

impl Producer for TcpProducer {
    fn send(&mut self, _key: u32, payload: &[u8]) -> Result<(), BrokerError> {
        check_size(payload.len(), self.max_payload, "this tcp transport")?;
        let len = (payload.len() as u32).to_be_bytes();
        self.out
            .write_all(&len)
            .and_then(|()| self.out.write_all(payload))
            .map_err(|e| self.gone(e))?;
        self.sent += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BrokerError> {
        self.out.flush().map_err(|e| self.gone(e))
    }

    fn finish(&mut self, _timeout: Duration) -> Result<(), BrokerError> {
        self.flush()
    }

    fn stats(&self) -> ProducerStats {
        ProducerStats {
            sent: self.sent,
            acked: self.sent,
            ..ProducerStats::default()
        }
    }
}

/// Frames queued between the connection threads and `poll`. When full, connection threads
/// stop reading, so TCP's own flow control slows the producers: nothing is dropped.
const QUEUE: usize = 4096;

pub struct TcpConsumer {
    frames: Receiver<Bytes>,
    queued: QueuedBytes,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    bound: String,
    stats: ConsumerStats,
    peers: Arc<Peers>,
}

/// What became of the connections, kept by their threads for [`TcpConsumer::stats`].
#[derive(Default)]
struct Peers {
    oversized: AtomicU64,
    refused: AtomicU64,
    bad: AtomicU64,
    stalled: AtomicU64,
    reasons: Mutex<Vec<String>>,
}

impl Peers {
    /// Counts and names a connection that ended on a bad frame.
    fn closed(&self, peer: SocketAddr, error: &FrameAtOffset) {
        self.bad.fetch_add(1, Ordering::Relaxed);
        match error.source {
            FrameError::TooLarge { .. } => self.oversized.fetch_add(1, Ordering::Relaxed),
            FrameError::Stalled(_) => self.stalled.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let mut reasons = self.reasons.lock().expect("not poisoned");
        if reasons.len() < MAX_REASONS {
            reasons.push(format!("tcp peer {peer}: {error}"));
        }
    }
}

impl TcpConsumer {
    /// Binds `addr` and serves at most `options.max_connections` producers at once, each
    /// under `options.intake` when given.
    pub fn bind(addr: &str, options: &ClientOptions) -> Result<Self, BrokerError> {
        let listener = tcp::listen(addr).map_err(|e| BrokerError::Backend(e.to_string()))?;
        let bound = listener
            .local_addr()
            .map_err(|e| BrokerError::Backend(format!("listener {addr}: {e}")))?
            .to_string();
        listener
            .set_nonblocking(true)
            .map_err(|e| BrokerError::Backend(format!("listener {addr}: {e}")))?;
        let (tx, frames) = bounded(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Peers::default());
        let queued = QueuedBytes::default();
        let (max, slots) = (options.max_payload, Slots::new(options.max_connections));
        let intake = options.intake.clone();
        let acceptor = std::thread::Builder::new()
            .name("tcp-accept".into())
            .spawn({
                let (stop, peers, queued) = (stop.clone(), peers.clone(), queued.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(Some((stream, peer))) = tcp::accept_or_nap(&listener) else {
                            continue;
                        };
                        let Some(slot) = slots.try_acquire() else {
                            peers.refused.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        // Reads wake this often, so a stalled frame is judged on time.
                        let tick = intake.as_ref().map(IntakeLimits::tick);
                        if stream.set_read_timeout(tick).is_err() {
                            continue;
                        }
                        let mut reader = FrameReader::new(stream, FrameCodec::new(max));
                        if let Some(limits) = &intake {
                            reader = reader.limited(limits);
                        }
                        let tx = tx.clone();
                        let (queued, stop, peers) = (queued.clone(), stop.clone(), peers.clone());
                        std::thread::spawn(move || {
                            for frame in &mut reader {
                                let frame = match frame {
                                    Ok(frame) => frame,
                                    Err(e) => {
                                        peers.closed(peer, &e);
                                        break;
                                    }
                                };
                                queued.wait_for_room(|| stop.load(Ordering::Relaxed));
                                queued.add(frame.len());
                                if tx.send(frame).is_err() {
                                    break;
                                }
                            }
                            drop(slot);
                        });
                    }
                }
            })
            .map_err(|e| BrokerError::backend(format!("spawning the tcp acceptor: {e}")))?;
        Ok(Self {
            frames,
            queued,
            stop,
            acceptor: Some(acceptor),
            bound,
            stats: ConsumerStats::default(),
            peers,
        })
    }
}

impl Consumer for TcpConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let (frames, queued) = (&self.frames, &self.queued);
        // A bad peer only ends its own thread (counted in `peers`): the others go on.
        let ready = || {
            let frame = frames.try_recv().ok()?;
            queued.taken(frame.len());
            Some(frame)
        };
        let first = match frames.recv_timeout(timeout) {
            Ok(frame) => {
                queued.taken(frame.len());
                frame
            }
            Err(RecvTimeoutError::Timeout) => return Ok(Vec::new()),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(BrokerError::backend("the tcp acceptor stopped"))
            }
        };
        // Frames above the cap never get here: their reader stops at the length.
        Ok(take_ready(first, max, usize::MAX, &mut self.stats, ready))
    }

    fn ack(&mut self, _done: &[Delivery]) -> Result<(), BrokerError> {
        Ok(())
    }

    fn stats(&self) -> ConsumerStats {
        let peers = &self.peers;
        ConsumerStats {
            oversized: peers.oversized.load(Ordering::Relaxed),
            refused: peers.refused.load(Ordering::Relaxed),
            bad_peers: peers.bad.load(Ordering::Relaxed),
            stalled: peers.stalled.load(Ordering::Relaxed),
            bad_reasons: peers.reasons.lock().expect("not poisoned").clone(),
            ..self.stats.clone()
        }
    }

    fn bound(&self) -> Option<String> {
        Some(self.bound.clone())
    }
}

impl Drop for TcpConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Instant;

    use plumbline_core::intake::ByteBudget;

    use super::*;

    /// A consumer on a free port serving `max` producers, each frame due within 300 ms.
    fn consumer(max: usize) -> (TcpConsumer, String) {
        let options = ClientOptions {
            max_connections: max,
            intake: Some(IntakeLimits::new(
                Duration::from_millis(300),
                0,
                Arc::new(ByteBudget::new(1 << 20)),
            )),
            ..ClientOptions::default()
        };
        let consumer = TcpConsumer::bind("127.0.0.1:0", &options).unwrap();
        let addr = consumer.bound().unwrap();
        (consumer, addr)
    }

    /// Whether the consumer closed `peer` within `within`.
    fn closed_within(peer: &mut TcpStream, within: Duration) -> bool {
        peer.set_read_timeout(Some(within)).unwrap();
        matches!(peer.read(&mut [0u8; 1]), Ok(0))
    }

    fn hello(consumer: &mut TcpConsumer, producer: &mut TcpProducer) {
        producer.send(0, b"hello").unwrap();
        producer.flush().unwrap();
        let got = consumer.poll(10, Duration::from_secs(5)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].payload[..], b"hello");
    }

    #[test]
    fn a_stalled_frame_closes_its_producer_and_is_named_while_the_others_go_on() {
        let (mut consumer, addr) = consumer(4);
        let mut stalled = TcpStream::connect(&addr).unwrap();
        stalled.write_all(&[0, 0, 0, 100, b'x']).unwrap();
        let start = Instant::now();
        let mut good = TcpProducer::connect(&addr, &ClientOptions::default()).unwrap();
        hello(&mut consumer, &mut good);
        assert!(closed_within(&mut stalled, Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(3), "300 ms deadline");
        let stats = consumer.stats();
        assert_eq!((stats.bad_peers, stats.stalled), (1, 1), "{stats:?}");
        assert!(
            stats.bad_reasons[0].contains("sent 5 bytes of a 100-byte frame"),
            "{stats:?}"
        );
        hello(&mut consumer, &mut good);
    }

    #[test]
    fn producers_past_the_cap_are_closed_at_once_and_counted() {
        let (mut consumer, addr) = consumer(1);
        let mut first = TcpProducer::connect(&addr, &ClientOptions::default()).unwrap();
        hello(&mut consumer, &mut first);
        let mut second = TcpStream::connect(&addr).unwrap();
        assert!(closed_within(&mut second, Duration::from_secs(2)));
        assert_eq!(consumer.stats().refused, 1);
        hello(&mut consumer, &mut first);
    }
}
