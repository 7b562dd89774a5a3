//! The network sink: decodes frames from any number of connections and measures them.
//!
//! Each connection is served by its own thread through [`Receiver::serve`]: it counts frames and
//! bytes, and for plumbline-framed messages records latency (now − intended send time, both UNIX
//! time) in a per-connection HDR recorder and sequence numbers in batches into the shared
//! [`SeqTracker`]. A connection that sends a bad frame (oversized, truncated, not the framing
//! it promised) is closed, named and counted; the others go on. Accepting connections and
//! deciding when to stop are the caller's.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use plumbline_core::clock::Sleeper;
use plumbline_core::frame::{FrameCodec, FrameReader};
use plumbline_core::header::{self, Header};
use plumbline_measure::{LatencyFeed, LatencySummary, Live, Recorder, SeqSummary, SeqTracker};
use serde::{Deserialize, Serialize};

/// How frame payloads are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Decided per connection by its first frame.
    Auto,
    Raw,
    Plumbline,
}

/// A validated receiver setup.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub framing: Framing,
    pub max_frame: usize,
    /// Print every payload (the application part) as a line.
    pub print: bool,
    /// Read at most this many frames per second per connection (to test slow consumers).
    pub throttle: Option<f64>,
    /// Keep the latest value of every `label=>value` result (a worker's state updates), so a
    /// run's final state can be checked.
    pub track_results: bool,
}

/// Bad connections whose reasons are kept (all are counted).
const MAX_REASONS: usize = 100;
/// Sequence numbers a connection collects before taking the shared tracker's lock.
const SEQ_BATCH: usize = 1024;

/// Shared state of one receive run.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    start: Instant,
    frames: AtomicU64,
    bytes: AtomicU64,
    /// Nanoseconds after `start` of the first and the latest frame (0: none yet).
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    connections: AtomicU64,
    bad: AtomicU64,
    reasons: Mutex<Vec<String>>,
    latency: Mutex<Recorder>,
    seqs: Mutex<SeqTracker>,
    print: Mutex<()>,
    results: Mutex<BTreeMap<String, u64>>,
    stopped: std::sync::atomic::AtomicBool,
    /// Watchers' view: frames as they arrive, latencies every [`plumbline_measure::FEED_EVERY`].
    live: Arc<Live>,
}

/// What a receive run saw.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReceiveSummary {
    pub frames: u64,
    /// Payload bytes (frame headers excluded).
    pub bytes: u64,
    /// First frame to last frame.
    pub duration_s: f64,
    pub frames_per_s: f64,
    pub mb_per_s: f64,
    pub connections: u64,
    pub bad_connections: u64,
    pub bad_reasons: Vec<String>,
    /// Receive time − intended send time, plumbline-framed frames only.
    pub latency_s: LatencySummary,
    /// Loss and order accounting, plumbline-framed frames only.
    pub sequence: SeqSummary,
}

impl Receiver {
    pub fn new(config: ReceiverConfig) -> Self {
        Self::with_live(config, Arc::new(Live::new()))
    }

    /// A receiver that reports to `live` as frames arrive.
    pub fn with_live(config: ReceiverConfig, live: Arc<Live>) -> Self {
        Self {
            live,
            config,
            start: Instant::now(),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            reasons: Mutex::new(Vec::new()),
            latency: Mutex::new(Recorder::new()),
            seqs: Mutex::new(SeqTracker::new()),
            print: Mutex::new(()),
            results: Mutex::new(BTreeMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The run is over: connections are about to be cut, and errors from them no longer
    /// count against their peers.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Frames received so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// When the latest frame arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        let last = self.last_ns.load(Ordering::Relaxed);
        (last > 0).then(|| self.start + Duration::from_nanos(last))
    }

    /// The latest value of every `label=>value` result seen (with `track_results`).
    pub fn results(&self) -> BTreeMap<String, u64> {
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Time since the latest frame (or since the start, before any).
    pub fn idle(&self) -> Duration {
        let last = Duration::from_nanos(self.last_ns.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Serves one connection until it closes or sends a bad frame.
    ///
    /// Works a read's worth of frames at a time: one timestamp for the batch (they arrived
    /// together) and one update of the shared counters, so the hot path takes no shared lock and
    /// no atomic per frame. A throttled connection stamps each frame after its pacing wait.
    pub fn serve<R: Read>(&self, stream: R, peer: &str) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let mut reader = FrameReader::new(stream, FrameCodec::new(self.config.max_frame));
        let mut latency = LatencyFeed::default();
        let mut seqs: Vec<(u32, u64)> = Vec::with_capacity(SEQ_BATCH);
        let mut framing = self.config.framing;
        let mut pacer = self
            .config
            .throttle
            .map(|rate| (Sleeper::new(), Instant::now(), rate));
        let mut count = 0u64;
        let mut batch = Vec::new();
        let mut latest = BTreeMap::new();
        let failure = loop {
            batch.clear();
            // Frames decoded before a bad one are in the batch either way, and count.
            let (more, read_error) = match reader.read_batch(&mut batch) {
                Ok(more) => (more, None),
                Err(e) => (false, Some(e.to_string())),
            };
            let mut now = header::unix_now_ns();
            let (mut accepted, mut bytes) = (0u64, 0u64);
            let mut bad = None;
            for frame in batch.drain(..) {
                if let Some((sleeper, start, rate)) = &mut pacer {
                    // A throttled reader publishes each frame as it takes it, and stops
                    // waiting when the run is over.
                    self.arrived(std::mem::take(&mut accepted), std::mem::take(&mut bytes));
                    if self.stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    let due =
                        Duration::try_from_secs_f64(count as f64 / *rate).unwrap_or(Duration::MAX);
                    sleeper.sleep_until(start.checked_add(due).unwrap_or_else(Instant::now));
                    now = header::unix_now_ns();
                }
                count += 1;
                if framing == Framing::Auto {
                    framing = if header::is_plumbline(&frame) {
                        Framing::Plumbline
                    } else {
                        Framing::Raw
                    };
                }
                let payload = if framing == Framing::Plumbline {
                    match Header::read(&frame) {
                        Ok((head, payload)) => {
                            latency.record_ns(now.saturating_sub(head.intended_unix_ns));
                            seqs.push((head.source, head.seq));
                            payload
                        }
                        Err(e) => {
                            bad = Some(format!("frame {count}: {e}"));
                            break;
                        }
                    }
                } else {
                    frame
                };
                accepted += 1;
                bytes += payload.len() as u64;
                if self.config.print {
                    self.print(&payload);
                }
                if self.config.track_results {
                    latest.extend(parse_result(&payload));
                }
            }
            if !latest.is_empty() {
                self.results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&mut latest);
            }
            self.arrived(accepted, bytes);
            latency.publish_if_due(&self.live);
            if seqs.len() >= SEQ_BATCH {
                self.flush_seqs(&mut seqs);
            }
            if bad.is_some() || read_error.is_some() || !more {
                break bad.or(read_error);
            }
        };
        self.flush_seqs(&mut seqs);
        let latency = latency.finish(&self.live);
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(&latency);
        // After stop() the run cut its own connections: what they report is not the peer's fault.
        if let Some(reason) = failure.filter(|_| !self.stopped.load(Ordering::Relaxed)) {
            self.bad.fetch_add(1, Ordering::Relaxed);
            let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
            if reasons.len() < MAX_REASONS {
                reasons.push(format!("{peer}: {reason}; connection closed"));
            }
        }
    }

    fn arrived(&self, frames: u64, payload_bytes: u64) {
        if frames == 0 {
            return;
        }
        let now = (self.start.elapsed().as_nanos() as u64).max(1);
        let _ = self
            .first_ns
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_ns.fetch_max(now, Ordering::Relaxed);
        self.frames.fetch_add(frames, Ordering::Relaxed);
        self.live.items_out.fetch_add(frames, Ordering::Relaxed);
        self.bytes.fetch_add(payload_bytes, Ordering::Relaxed);
    }

    fn flush_seqs(&self, seqs: &mut Vec<(u32, u64)>) {
        if seqs.is_empty() {
            return;
        }
        let mut tracker = self.seqs.lock().unwrap_or_else(|p| p.into_inner());
        for (source, seq) in seqs.drain(..) {
            tracker.record(source, seq);
        }
    }

    fn print(&self, payload: &Bytes) {
        let _one_line_at_a_time = self.print.lock().unwrap_or_else(|p| p.into_inner());
        match std::str::from_utf8(payload) {
            Ok(text) if !text.chars().any(char::is_control) => println!("{text}"),
            _ => println!("{}", payload.escape_ascii()),
        }
    }

    /// Sums the run up; `expected` (messages the sender sent) lets losses at the end count.
    pub fn summary(&self, expected: Option<u64>) -> ReceiveSummary {
        let frames = self.frames();
        let bytes = self.bytes.load(Ordering::Relaxed);
        let first = self.first_ns.load(Ordering::Relaxed);
        let last = self.last_ns.load(Ordering::Relaxed);
        let duration_s = last.saturating_sub(first) as f64 / 1e9;
        let per_s = |n: f64| {
            if duration_s > 0.0 {
                n / duration_s
            } else {
                0.0
            }
        };
        let seqs = self.seqs.lock().unwrap_or_else(|p| p.into_inner());
        ReceiveSummary {
            frames,
            bytes,
            duration_s,
            frames_per_s: per_s(frames as f64),
            mb_per_s: per_s(bytes as f64) / 1e6,
            connections: self.connections.load(Ordering::Relaxed),
            bad_connections: self.bad.load(Ordering::Relaxed),
            bad_reasons: self
                .reasons
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            latency_s: self
                .latency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .summary(),
            // `expected` counts one stream: with several sources only gaps can be told.
            sequence: seqs.summary(expected.filter(|_| seqs.summary(None).sources == 1)),
        }
    }
}

/// `label=>value`, as workers write state updates (`z=>3`, `17=>5`).
fn parse_result(payload: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (label, value) = text.split_once("=>")?;
    Some((label.to_string(), value.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_core::frame::FrameCodec;

    fn config(framing: Framing) -> ReceiverConfig {
        ReceiverConfig {
            framing,
            max_frame: 1024,
            print: false,
            throttle: None,
            track_results: true,
        }
    }

    fn plumbline_frames(seqs: &[u64]) -> Vec<u8> {
        let codec = FrameCodec::default();
        let mut out = Vec::new();
        for &seq in seqs {
            let mut payload = Vec::new();
            Header {
                source: 1,
                seq,
                intended_unix_ns: header::unix_now_ns(),
                key: 0,
            }
            .write(&mut payload);
            payload.extend_from_slice(b"z=>3");
            codec.encode_into(&payload, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn counts_losses_across_connections() {
        let receiver = Receiver::new(config(Framing::Auto));
        receiver.serve(&plumbline_frames(&[0, 2, 4])[..], "a");
        receiver.serve(&plumbline_frames(&[1, 5, 5])[..], "b");
        let s = receiver.summary(Some(8));
        assert_eq!(receiver.results().get("z"), Some(&3));
        assert_eq!(s.frames, 6);
        assert_eq!(s.bytes, 6 * 4, "payload bytes, headers excluded");
        assert_eq!(
            (s.sequence.lost, s.sequence.duplicates),
            (3, 1),
            "3, 6 and 7 are missing"
        );
        assert_eq!(s.latency_s.count, 6);
        assert_eq!(s.connections, 2);
    }

    #[test]
    fn garbage_closes_only_its_connection() {
        let receiver = Receiver::new(config(Framing::Auto));
        let mut garbage = plumbline_frames(&[0]);
        garbage.extend_from_slice(&[0xff; 64]);
        receiver.serve(&garbage[..], "127.0.0.1:5555");
        receiver.serve(&plumbline_frames(&[1])[..], "127.0.0.1:6666");
        let s = receiver.summary(None);
        assert_eq!(s.frames, 2);
        assert_eq!(s.bad_connections, 1);
        assert!(
            s.bad_reasons[0].contains("127.0.0.1:5555"),
            "{:?}",
            s.bad_reasons
        );
        assert!(
            s.bad_reasons[0].contains("exceeds the 1024-byte limit"),
            "{:?}",
            s.bad_reasons
        );
    }

    #[test]
    fn raw_frames_are_counted_without_latency() {
        let receiver = Receiver::new(config(Framing::Auto));
        let mut raw = Vec::new();
        FrameCodec::default()
            .encode_into(b"z\0\0\0\x02", &mut raw)
            .unwrap();
        receiver.serve(&raw[..], "a");
        let s = receiver.summary(Some(1));
        assert_eq!((s.frames, s.latency_s.count, s.sequence.lost), (1, 0, 0));
    }

    #[test]
    fn promised_plumbline_framing_is_enforced() {
        let receiver = Receiver::new(config(Framing::Plumbline));
        let mut raw = Vec::new();
        FrameCodec::default()
            .encode_into(b"not a header", &mut raw)
            .unwrap();
        receiver.serve(&raw[..], "a");
        assert_eq!(receiver.summary(None).bad_connections, 1);
    }

    #[test]
    fn throttle_slows_reading() {
        let mut cfg = config(Framing::Auto);
        cfg.throttle = Some(200.0);
        let receiver = Receiver::new(cfg);
        let start = Instant::now();
        receiver.serve(
            &plumbline_frames(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])[..],
            "a",
        );
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
