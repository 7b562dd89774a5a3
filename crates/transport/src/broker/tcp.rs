//! `tcp://host:port` behind the broker traits: plumbline's own length-prefixed frames with no
//! broker in between. The consumer binds the address and takes frames from every producer
//! that connects; the producer connects (with retries) and writes through a 64 KiB buffer.
//!
//! At-most-once: there are no acks, so what a dead consumer had read but not processed is
//! gone, and sequence numbers report it. A producer's `finish` means "written to the socket".

use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use plumbline_core::frame::{FrameCodec, FrameError, FrameReader};

use super::{
    check_size, take_ready, BrokerError, ClientOptions, Consumer, ConsumerStats, Delivery,
    Producer, ProducerStats, QueuedBytes,
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
    frames: Receiver<Result<Bytes, String>>,
    queued: QueuedBytes,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    stats: ConsumerStats,
    oversized: Arc<AtomicU64>,
}

impl TcpConsumer {
    pub fn bind(addr: &str, options: &ClientOptions) -> Result<Self, BrokerError> {
        let listener = tcp::listen(addr).map_err(|e| BrokerError::Backend(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| BrokerError::Backend(format!("listener {addr}: {e}")))?;
        let (tx, frames) = bounded(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let oversized = Arc::new(AtomicU64::new(0));
        let queued = QueuedBytes::default();
        let max = options.max_payload;
        let acceptor = std::thread::Builder::new()
            .name("tcp-accept".into())
            .spawn({
                let stop = stop.clone();
                let oversized = oversized.clone();
                let queued = queued.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(Some((stream, peer))) = tcp::accept_or_nap(&listener) else {
                            continue;
                        };
                        let tx = tx.clone();
                        let oversized = oversized.clone();
                        let (queued, stop) = (queued.clone(), stop.clone());
                        std::thread::spawn(move || {
                            let mut reader = FrameReader::new(stream, FrameCodec::new(max));
                            for frame in &mut reader {
                                let item = frame.map_err(|e| {
                                    if matches!(e.source, FrameError::TooLarge { .. }) {
                                        oversized.fetch_add(1, Ordering::Relaxed);
                                    }
                                    format!("tcp peer {peer}: {e}")
                                });
                                let bad = item.is_err();
                                if let Ok(frame) = &item {
                                    queued.wait_for_room(|| stop.load(Ordering::Relaxed));
                                    queued.add(frame.len());
                                }
                                if tx.send(item).is_err() || bad {
                                    break;
                                }
                            }
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
            stats: ConsumerStats::default(),
            oversized,
        })
    }
}

impl Consumer for TcpConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let (frames, queued) = (&self.frames, &self.queued);
        // A bad peer's error only ends that peer's thread: skip it, the others go on.
        let ready = || loop {
            match frames.try_recv() {
                Ok(Ok(frame)) => {
                    queued.taken(frame.len());
                    return Some(frame);
                }
                Ok(Err(_)) => continue,
                Err(_) => return None,
            }
        };
        let first = match frames.recv_timeout(timeout) {
            Ok(Ok(frame)) => {
                queued.taken(frame.len());
                frame
            }
            // A bad peer (its thread has ended): the others' frames come with the next poll.
            Ok(Err(_)) | Err(RecvTimeoutError::Timeout) => return Ok(Vec::new()),
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
        ConsumerStats {
            oversized: self.oversized.load(Ordering::Relaxed),
            ..self.stats.clone()
        }
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
