//! Bridges between plumbline's frame streams and brokers, so the paced sender and the
//! receiver run unchanged on any backend.
//!
//! * [`FramePublisher`] is a `Write` for `load::sender`: it cuts the byte stream the sender
//!   writes into frames (4-byte big-endian length + payload) and sends each payload as one
//!   message. `flush` pushes the broker client's buffer; broker acks are awaited only by
//!   [`FramePublisher::finish`].
//! * [`FrameSource`] is a `Read` for `worker::receiver`: it polls a consumer and hands out each
//!   delivery as a frame, acknowledging a batch once the next read asks for more (the reader
//!   has taken it).
//!
//! Neither decides what a frame means beyond the plumbline header's routing key.

use std::io::{self, Read, Write};
use std::time::Duration;

use plumbline_core::header;

use super::{BrokerError, Consumer, ConsumerStats, Delivery, Producer};

/// A `Write` that publishes each frame written to it.
pub struct FramePublisher {
    producer: Box<dyn Producer>,
    /// Bytes of a frame not yet complete.
    pending: Vec<u8>,
    max_payload: usize,
    /// Key for frames without a plumbline header: a counter, so raw frames spread evenly.
    next_key: u32,
    /// The first failure. After it every write fails at once: a caller's buffer flushed again
    /// on drop must not republish frames already sent.
    failed: Option<String>,
}

impl FramePublisher {
    pub fn new(producer: Box<dyn Producer>, max_payload: usize) -> Self {
        Self {
            producer,
            pending: Vec::new(),
            max_payload,
            next_key: 0,
            failed: None,
        }
    }

    /// Waits for the broker to acknowledge everything sent; see [`Producer::finish`].
    pub fn finish(&mut self, timeout: Duration) -> Result<(), BrokerError> {
        self.producer.finish(timeout)
    }

    pub fn producer(&self) -> &dyn Producer {
        self.producer.as_ref()
    }

    fn publish(&mut self, payload_at: usize, len: usize) -> io::Result<()> {
        let payload = &self.pending[payload_at..payload_at + len];
        let key = header::key(payload).unwrap_or_else(|| {
            self.next_key = self.next_key.wrapping_add(1);
            self.next_key
        });
        self.producer
            .send(key, payload)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

impl Write for FramePublisher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(failure) = &self.failed {
            return Err(io::Error::other(failure.clone()));
        }
        let result = self.publish_complete(buf);
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
            self.pending.clear();
        }
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(failure) = &self.failed {
            return Err(io::Error::other(failure.clone()));
        }
        self.producer
            .flush()
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

impl FramePublisher {
    /// Appends `buf` and publishes every frame it completes.
    fn publish_complete(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let mut at = 0;
        while self.pending.len() - at >= 4 {
            let len =
                u32::from_be_bytes(self.pending[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len > self.max_payload {
                return Err(io::Error::other(format!(
                    "frame of {len} bytes exceeds the {}-byte limit",
                    self.max_payload
                )));
            }
            if self.pending.len() - at < 4 + len {
                break;
            }
            self.publish(at + 4, len)?;
            at += 4 + len;
        }
        self.pending.drain(..at);
        Ok(buf.len())
    }
}

/// A `Read` that yields a consumer's deliveries as length-prefixed frames.
pub struct FrameSource<F: Fn() -> bool> {
    consumer: Box<dyn Consumer>,
    /// Frames of the current batch not yet read.
    buffer: Vec<u8>,
    at: usize,
    /// The batch being read: acknowledged once the reader asks for more.
    batch: Vec<Delivery>,
    /// Asked before each wait: true ends the stream (EOF).
    stop: F,
    /// Empty messages skipped.
    empty: u64,
}

/// How long one poll waits before the stop condition is asked again.
const POLL: Duration = Duration::from_millis(100);

impl<F: Fn() -> bool> FrameSource<F> {
    pub fn new(consumer: Box<dyn Consumer>, stop: F) -> Self {
        Self {
            consumer,
            buffer: Vec::new(),
            at: 0,
            batch: Vec::new(),
            stop,
            empty: 0,
        }
    }

    /// The consumer's stats, with the empty messages this source skipped.
    pub fn stats(&self) -> ConsumerStats {
        ConsumerStats {
            empty: self.empty,
            ..self.consumer.stats()
        }
    }

    fn refill(&mut self) -> io::Result<bool> {
        let done = std::mem::take(&mut self.batch);
        if !done.is_empty() {
            self.consumer
                .ack(&done)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        loop {
            if (self.stop)() {
                return Ok(false);
            }
            let batch = self
                .consumer
                .poll(1024, POLL)
                .map_err(|e| io::Error::other(e.to_string()))?;
            if batch.is_empty() {
                continue;
            }
            self.buffer.clear();
            self.at = 0;
            for d in &batch {
                // A zero-length frame is invalid to every reader: skip it (it is still
                // acknowledged with its batch) rather than end the stream on it.
                if d.payload.is_empty() {
                    self.empty += 1;
                    continue;
                }
                self.buffer
                    .extend_from_slice(&(d.payload.len() as u32).to_be_bytes());
                self.buffer.extend_from_slice(&d.payload);
            }
            if self.buffer.is_empty() {
                // Only empty messages: nothing to read, acknowledge them and wait for more.
                self.consumer
                    .ack(&batch)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                continue;
            }
            self.batch = batch;
            return Ok(true);
        }
    }
}

impl<F: Fn() -> bool> Read for FrameSource<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() && !self.refill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.buffer.len() - self.at);
        buf[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::ProducerStats;
    use plumbline_core::header::Header;
    use std::sync::{Arc, Mutex};

    /// (key, payload) of each message sent.
    type Sent = Arc<Mutex<Vec<(u32, Vec<u8>)>>>;
    struct Collect(Sent);
    impl Producer for Collect {
        fn send(&mut self, key: u32, payload: &[u8]) -> Result<(), BrokerError> {
            self.0.lock().unwrap().push((key, payload.to_vec()));
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BrokerError> {
            Ok(())
        }
        fn finish(&mut self, _: Duration) -> Result<(), BrokerError> {
            Ok(())
        }
        fn stats(&self) -> ProducerStats {
            ProducerStats::default()
        }
    }

    #[test]
    fn frames_split_across_writes_are_published_whole_with_the_header_key() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut out = FramePublisher::new(Box::new(Collect(seen.clone())), 1024);
        let mut bytes = Vec::new();
        let mut framed = Vec::new();
        Header {
            source: 1,
            seq: 7,
            intended_unix_ns: 9,
            key: 42,
        }
        .write(&mut framed);
        framed.extend_from_slice(b"hello");
        for payload in [&framed[..], b"raw"] {
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(payload);
        }
        for chunk in bytes.chunks(3) {
            out.write_all(chunk).unwrap();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], (42, framed.clone()));
        assert_eq!(seen[1].1, b"raw");
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_buffered() {
        let mut out = FramePublisher::new(Box::new(Collect(Arc::new(Mutex::new(Vec::new())))), 100);
        let err = out.write(&1000u32.to_be_bytes()).unwrap_err();
        assert!(err
            .to_string()
            .contains("frame of 1000 bytes exceeds the 100-byte limit"));
    }

    /// Refuses every send after the first `ok` ones.
    struct FailAfter(usize, Sent);
    impl Producer for FailAfter {
        fn send(&mut self, key: u32, payload: &[u8]) -> Result<(), BrokerError> {
            if self.1.lock().unwrap().len() == self.0 {
                return Err(BrokerError::Backend("down".into()));
            }
            self.1.lock().unwrap().push((key, payload.to_vec()));
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BrokerError> {
            Ok(())
        }
        fn finish(&mut self, _: Duration) -> Result<(), BrokerError> {
            Ok(())
        }
        fn stats(&self) -> ProducerStats {
            ProducerStats::default()
        }
    }

    #[test]
    fn after_a_failed_send_nothing_is_published_again() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut out = FramePublisher::new(Box::new(FailAfter(1, seen.clone())), 1024);
        let mut bytes = Vec::new();
        for payload in [b"one", b"two"] {
            bytes.extend_from_slice(&3u32.to_be_bytes());
            bytes.extend_from_slice(payload);
        }
        assert!(out.write(&bytes).is_err());
        // What a BufWriter does when it is dropped: write the same bytes again.
        assert!(out.write(&bytes).unwrap_err().to_string().contains("down"));
        assert!(out.flush().is_err());
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(1, b"one".to_vec())],
            "\"one\" went out once"
        );
    }

    /// Hands out `batches` in turn, then nothing; counts what was acknowledged.
    struct Scripted(Vec<Vec<&'static [u8]>>, Arc<Mutex<u64>>);
    impl Consumer for Scripted {
        fn poll(&mut self, _: usize, _: Duration) -> Result<Vec<Delivery>, BrokerError> {
            if self.0.is_empty() {
                return Ok(Vec::new());
            }
            Ok(self
                .0
                .remove(0)
                .into_iter()
                .map(|p| Delivery {
                    payload: bytes::Bytes::from_static(p),
                    redelivered: false,
                    token: crate::broker::AckToken::None,
                })
                .collect())
        }
        fn ack(&mut self, done: &[Delivery]) -> Result<(), BrokerError> {
            *self.1.lock().unwrap() += done.len() as u64;
            Ok(())
        }
        fn stats(&self) -> ConsumerStats {
            ConsumerStats::default()
        }
    }

    #[test]
    fn empty_messages_are_skipped_acknowledged_and_counted_not_the_end_of_the_stream() {
        let acked = Arc::new(Mutex::new(0));
        let consumer = Scripted(vec![vec![b""], vec![b"", b"ab"]], acked.clone());
        let reads = std::sync::atomic::AtomicU32::new(0);
        // Stop once the script is spent: the third wait.
        let mut source = FrameSource::new(Box::new(consumer), || {
            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 3
        });
        let mut out = Vec::new();
        source.read_to_end(&mut out).unwrap();
        assert_eq!(out, [&2u32.to_be_bytes()[..], b"ab"].concat());
        assert_eq!(source.stats().empty, 2);
        assert_eq!(
            *acked.lock().unwrap(),
            3,
            "the empty ones are acknowledged too"
        );
    }
}
