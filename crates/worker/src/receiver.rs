//! The network sink: decodes frames from any number of connections and measures them.
//!
//! Each connection is served by its own thread through [`Receiver::serve`]: it counts frames and
//! bytes, and for plumbline-framed messages hands latency (now − intended send time, both UNIX
//! time) and sequence numbers, one read's worth at a time, to the shared HDR feed and
//! [`SeqTracker`], which says which messages are new: duplicates do not count towards
//! [`Receiver::messages`]. A connection costs a few kilobytes (no histogram of its own, a frame
//! buffer that grows as bytes arrive), and with [`IntakeLimits`] it is closed when a frame
//! stalls. A connection that sends a bad frame (oversized, truncated, not the framing it
//! promised) or stalls is closed, named and counted; the others go on. Connections beyond
//! `max_connections` are refused ([`Receiver::admit`]) and counted. Accepting connections and
//! deciding when to stop are the caller's.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use plumbline_core::clock::Sleeper;
use plumbline_core::frame::{FrameCodec, FrameError, FrameReader};
use plumbline_core::header::{self, Header};
use plumbline_core::intake::{IntakeLimits, Slot, Slots};
use plumbline_measure::continuity::{Continuity, ContinuityReport, Versioned};
use plumbline_measure::record::PerSecond;
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
    /// Check that every key's `label=>count` results advance by exactly one per item
    /// ([`plumbline_measure::continuity`]); plumbline-framed results only (their sequence
    /// numbers tell a redelivery from an item applied twice).
    pub continuity: bool,
    /// Connections served at once; more are refused and counted.
    pub max_connections: usize,
    /// Deadlines and the shared buffer budget for peers on sockets (`None`: a broker's frames,
    /// already whole).
    pub intake: Option<IntakeLimits>,
    /// Added to this host's clock when it stamps arrivals (the run reference's time minus
    /// this host's, from `--clock-ref`), so latency from another host's stamp is true.
    pub clock_offset_ns: i64,
}

/// Per-second arrival counts are kept for at most this many seconds (about 11.5 days).
const MAX_SECONDS: usize = 1_000_000;
/// Bad connections whose reasons are kept (all are counted).
const MAX_REASONS: usize = 100;
/// Per-read scratch entries a connection keeps once its reads are small, so a quiet connection
/// holds almost nothing.
const KEEP: usize = 256;

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
    /// Frames arriving in each second after the first frame (at most [`MAX_SECONDS`]).
    per_second: Mutex<Vec<u64>>,
    connections: AtomicU64,
    bad: AtomicU64,
    /// Of the bad ones, closed because a frame stalled.
    slow: AtomicU64,
    slots: Slots,
    /// Raw frames plus plumbline frames seen for the first time.
    messages: AtomicU64,
    reasons: Mutex<Vec<String>>,
    /// Latencies of every connection, fed to `live` as they come.
    feed: Mutex<LatencyFeed>,
    latency: Mutex<Recorder>,
    seqs: Mutex<SeqTracker>,
    print: Mutex<()>,
    results: Mutex<BTreeMap<String, u64>>,
    state: Mutex<StateCheck>,
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
    /// Messages counted towards `--expect`: every raw frame, and plumbline frames the first time
    /// their (source, sequence number) arrives.
    pub unique: u64,
    pub connections: u64,
    /// Connections refused because `max_connections` were open.
    pub refused_connections: u64,
    pub bad_connections: u64,
    /// Of the bad connections, those closed because a frame stalled (slower than the minimum
    /// rate, or not complete within the read timeout).
    pub slow_connections: u64,
    /// Times a connection needed buffer beyond its free share and the budget was spent, so it
    /// waited (within its read timeout).
    pub budget_waits: u64,
    pub bad_reasons: Vec<String>,
    /// Receive time − intended send time, plumbline-framed frames only.
    pub latency_s: LatencySummary,
    /// Loss and order accounting, plumbline-framed frames only.
    pub sequence: SeqSummary,
    /// With `continuity`: what the state check found.
    pub continuity: Option<ContinuityReport>,
    /// Frames arriving in each full second from the first frame on.
    pub per_second: Option<PerSecond>,
}

/// The continuity checker, with its keys' labels: results name keys by label (`z`, `17`).
#[derive(Debug, Default)]
struct StateCheck {
    ids: HashMap<String, u32>,
    labels: Vec<String>,
    check: Continuity,
}

impl StateCheck {
    fn observe(&mut self, label: String, version: u64, source: u32, seq: u64) {
        let next = self.labels.len() as u32;
        let key = *self.ids.entry(label).or_insert_with_key(|label| {
            self.labels.push(label.clone());
            next
        });
        self.check.observe(Versioned {
            key,
            version,
            // Sequence numbers count per source: two sources' items must not look alike.
            seq: (u64::from(source) << 40) ^ seq,
        });
    }

    fn report(&self) -> ContinuityReport {
        self.check
            .clone()
            .report(|key| self.labels.get(key as usize).cloned().unwrap_or_default())
    }
}

impl Receiver {
    pub fn new(config: ReceiverConfig) -> Self {
        Self::with_live(config, Arc::new(Live::new()))
    }

    /// A receiver that reports to `live` as frames arrive.
    pub fn with_live(config: ReceiverConfig, live: Arc<Live>) -> Self {
        Self {
            slots: Slots::new(config.max_connections),
            live,
            config,
            start: Instant::now(),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            first_ns: AtomicU64::new(0),
            per_second: Mutex::default(),
            last_ns: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            reasons: Mutex::new(Vec::new()),
            feed: Mutex::new(LatencyFeed::default()),
            latency: Mutex::new(Recorder::new()),
            seqs: Mutex::new(SeqTracker::new()),
            print: Mutex::new(()),
            results: Mutex::new(BTreeMap::new()),
            state: Mutex::new(StateCheck::default()),
            stopped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The run is over: connections are about to be cut, and errors from them no longer
    /// count against their peers.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Frames received so far, duplicates included.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Messages received so far, each counted once: what `--expect` waits for.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// A place for one more connection, or `None` (counted) when `max_connections` are open.
    /// Hold it while serving the connection.
    pub fn admit(&self) -> Option<Slot> {
        self.slots.try_acquire()
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.slots.refused()
    }

    /// The read timeout a socket served here needs, so a stalled frame is judged on time.
    pub fn read_tick(&self) -> Option<Duration> {
        self.config.intake.as_ref().map(IntakeLimits::tick)
    }

    /// The most connections served at once.
    pub fn max_connections(&self) -> usize {
        self.slots.max()
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

    /// Serves one connection until it closes, sends a bad frame or stalls one.
    ///
    /// Works a read's worth of frames at a time: one timestamp for the batch (they arrived
    /// together) and one update of the shared counters and trackers, so the hot path takes no
    /// shared lock and no atomic per frame. A throttled connection stamps each frame after its
    /// pacing wait.
    pub fn serve<R: Read>(&self, stream: R, peer: &str) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let mut reader = FrameReader::new(stream, FrameCodec::new(self.config.max_frame));
        if let Some(limits) = &self.config.intake {
            reader = reader.limited(limits);
        }
        let mut latencies: Vec<u64> = Vec::new();
        let mut seqs: Vec<(u32, u64)> = Vec::new();
        let mut framing = self.config.framing;
        let mut pacer = self
            .config
            .throttle
            .map(|rate| (Sleeper::new(), Instant::now(), rate));
        let mut count = 0u64;
        let mut batch = Vec::new();
        let mut latest = BTreeMap::new();
        let mut versions = Vec::new();
        let failure = loop {
            batch.clear();
            // Frames decoded before a bad one are in the batch either way, and count.
            let (more, read_error) = match reader.read_batch(&mut batch) {
                Ok(more) => (more, None),
                Err(e) => (false, Some(e)),
            };
            let mut now = self.now_ns();
            let (mut accepted, mut bytes, mut raw) = (0u64, 0u64, 0u64);
            let mut bad = None;
            for frame in batch.drain(..) {
                if let Some((sleeper, start, rate)) = &mut pacer {
                    // A throttled reader publishes each frame as it takes it, and stops
                    // waiting when the run is over.
                    self.arrived(std::mem::take(&mut accepted), std::mem::take(&mut bytes));
                    self.counted(&mut latencies, &mut seqs, std::mem::take(&mut raw));
                    if self.stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    let due =
                        Duration::try_from_secs_f64(count as f64 / *rate).unwrap_or(Duration::MAX);
                    sleeper.sleep_until(start.checked_add(due).unwrap_or_else(Instant::now));
                    now = self.now_ns();
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
                            latencies.push(now.saturating_sub(head.intended_unix_ns));
                            seqs.push((head.source, head.seq));
                            if self.config.continuity {
                                // A count is its own version; a vote total carries one.
                                if let Some((label, value, version)) = parse_result(&payload) {
                                    let version = version.unwrap_or(value);
                                    versions.push((label, version, head.source, head.seq));
                                }
                            }
                            payload
                        }
                        Err(e) => {
                            bad = Some(format!("frame {count}: {e}"));
                            break;
                        }
                    }
                } else {
                    raw += 1;
                    frame
                };
                accepted += 1;
                bytes += payload.len() as u64;
                if self.config.print {
                    self.print(&payload);
                }
                if self.config.track_results {
                    latest.extend(parse_result(&payload).map(|(label, value, _)| (label, value)));
                }
            }
            if !latest.is_empty() {
                self.results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&mut latest);
            }
            if !versions.is_empty() {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                for (label, version, source, seq) in versions.drain(..) {
                    state.observe(label, version, source, seq);
                }
            }
            self.arrived(accepted, bytes);
            self.counted(&mut latencies, &mut seqs, raw);
            if bad.is_some() || read_error.is_some() || !more {
                break bad.map(|b| (b, false)).or(read_error.map(|e| {
                    let stalled = matches!(e.source, FrameError::Stalled(_));
                    (e.to_string(), stalled)
                }));
            }
        };
        drop(reader);
        // After stop() the run cut its own connections: what they report is not the peer's fault.
        if let Some((reason, stalled)) = failure.filter(|_| !self.stopped.load(Ordering::Relaxed)) {
            self.bad.fetch_add(1, Ordering::Relaxed);
            if stalled {
                self.slow.fetch_add(1, Ordering::Relaxed);
            }
            let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
            if reasons.len() < MAX_REASONS {
                reasons.push(format!("{peer}: {reason}; connection closed"));
            }
        }
    }

    /// Hands one read's latencies and sequence numbers to the shared feed and tracker, and
    /// counts the new messages among them (plus `raw` frames, which cannot be told apart).
    fn counted(&self, latencies: &mut Vec<u64>, seqs: &mut Vec<(u32, u64)>, raw: u64) {
        // A busy connection keeps its scratch for the next read; one whose read was small
        // (going quiet) gives the rest back.
        let busy = seqs.len().max(latencies.len()) > KEEP;
        let mut new = raw;
        if !seqs.is_empty() {
            let mut tracker = self.seqs.lock().unwrap_or_else(|p| p.into_inner());
            new += seqs
                .drain(..)
                .filter(|&(source, seq)| tracker.record(source, seq))
                .count() as u64;
        }
        if !latencies.is_empty() {
            let mut feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
            for ns in latencies.drain(..) {
                feed.record_ns(ns);
            }
            feed.publish_if_due(&self.live);
        }
        if new > 0 {
            self.messages.fetch_add(new, Ordering::Relaxed);
            // Items done, for watchers and a capacity trial's lag: a duplicate is no more done.
            self.live.items_out.fetch_add(new, Ordering::Relaxed);
        }
        if !busy {
            latencies.shrink_to(KEEP);
            seqs.shrink_to(KEEP);
        }
    }

    /// Now on the run's reference clock.
    fn now_ns(&self) -> u64 {
        header::unix_now_ns().saturating_add_signed(self.config.clock_offset_ns)
    }

    fn arrived(&self, frames: u64, payload_bytes: u64) {
        if frames == 0 {
            return;
        }
        let now = (self.start.elapsed().as_nanos() as u64).max(1);
        let first =
            match self
                .first_ns
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => now,
                Err(first) => first,
            };
        self.last_ns.fetch_max(now, Ordering::Relaxed);
        let second = (now.saturating_sub(first) / 1_000_000_000) as usize;
        if second < MAX_SECONDS {
            let mut counts = self.per_second.lock().unwrap_or_else(|p| p.into_inner());
            if counts.len() <= second {
                counts.resize(second + 1, 0);
            }
            counts[second] += frames;
        }
        self.frames.fetch_add(frames, Ordering::Relaxed);
        self.bytes.fetch_add(payload_bytes, Ordering::Relaxed);
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
        let fed = std::mem::take(&mut *self.feed.lock().unwrap_or_else(|p| p.into_inner()));
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        latency.merge(&fed.finish(&self.live));
        let seqs = self.seqs.lock().unwrap_or_else(|p| p.into_inner());
        ReceiveSummary {
            frames,
            bytes,
            duration_s,
            frames_per_s: per_s(frames as f64),
            mb_per_s: per_s(bytes as f64) / 1e6,
            unique: self.messages(),
            connections: self.connections.load(Ordering::Relaxed),
            refused_connections: self.slots.refused(),
            bad_connections: self.bad.load(Ordering::Relaxed),
            slow_connections: self.slow.load(Ordering::Relaxed),
            budget_waits: self
                .config
                .intake
                .as_ref()
                .map_or(0, |limits| limits.budget.refusals()),
            bad_reasons: self
                .reasons
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            latency_s: latency.summary(),
            // `expected` counts one stream: with several sources only gaps can be told.
            sequence: seqs.summary(expected.filter(|_| seqs.summary(None).sources == 1)),
            per_second: PerSecond::of(
                &self.per_second.lock().unwrap_or_else(|p| p.into_inner()),
                // Seconds the run covered completely: a last, partial one would look slow.
                duration_s as usize,
            ),
            continuity: self.config.continuity.then(|| {
                self.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .report()
            }),
        }
    }
}

/// `label=>value`, as workers write state updates (`z=>3`, `17=>5`), or
/// `label=>value@version` (`worker --result-versions`: `z=>6@3`).
fn parse_result(payload: &[u8]) -> Option<(String, u64, Option<u64>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (label, rest) = text.split_once("=>")?;
    let (value, version) = match rest.split_once('@') {
        Some((value, version)) => (value, Some(version.parse().ok()?)),
        None => (rest, None),
    };
    Some((label.to_string(), value.parse().ok()?, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_core::frame::FrameCodec;
    use std::io::Write;

    fn config(framing: Framing) -> ReceiverConfig {
        ReceiverConfig {
            framing,
            max_frame: 1024,
            print: false,
            throttle: None,
            track_results: true,
            continuity: false,
            max_connections: 2,
            intake: None,
            clock_offset_ns: 0,
        }
    }

    fn plumbline_frames(seqs: &[u64]) -> Vec<u8> {
        let of: Vec<(u64, &str)> = seqs.iter().map(|&seq| (seq, "z=>3")).collect();
        results(&of)
    }

    /// Plumbline frames of `(seq, result)`, from source 1.
    fn results(of: &[(u64, &str)]) -> Vec<u8> {
        let codec = FrameCodec::default();
        let mut out = Vec::new();
        for &(seq, text) in of {
            let mut payload = Vec::new();
            Header {
                source: 1,
                seq,
                intended_unix_ns: header::unix_now_ns(),
                key: 0,
            }
            .write(&mut payload);
            payload.extend_from_slice(text.as_bytes());
            codec.encode_into(&payload, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn state_continuity_names_the_key_a_double_apply_and_a_gap_broke() {
        let receiver = Receiver::new(ReceiverConfig {
            continuity: true,
            ..config(Framing::Auto)
        });
        // Key 7: v1, v2, v2 again from another item, then v4 (v3 never came). Key z: in
        // order across two connections, one result redelivered (same item, same seq).
        receiver.serve(
            &results(&[(0, "7=>1"), (1, "z=>1"), (2, "7=>2")])[..],
            "old owner",
        );
        receiver.serve(
            &results(&[(3, "7=>2"), (4, "z=>2"), (4, "z=>2"), (5, "7=>4")])[..],
            "new owner",
        );
        let c = receiver.summary(None).continuity.expect("asked for");
        assert_eq!((c.checked, c.keys, c.redelivered), (7, 2, 1));
        assert_eq!(c.violations, 2, "{:?}", c.examples);
        assert!(
            c.examples[0].contains("key 7: version 2 seen twice"),
            "{:?}",
            c.examples
        );
        assert!(
            c.examples[1].contains("key 7: 1 version(s) never seen, from v3"),
            "{:?}",
            c.examples
        );
        let unchecked = Receiver::new(config(Framing::Auto));
        unchecked.serve(&results(&[(0, "7=>1"), (1, "7=>1")])[..], "a");
        assert_eq!(unchecked.summary(None).continuity, None);
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
    fn duplicates_are_counted_but_not_towards_the_messages_nor_the_items_done() {
        let live = Arc::new(Live::new());
        let receiver = Receiver::with_live(config(Framing::Auto), live.clone());
        receiver.serve(&plumbline_frames(&[0, 1, 2])[..], "a");
        receiver.serve(&plumbline_frames(&[1, 2, 3, 3])[..], "redelivered");
        let mut raw = Vec::new();
        FrameCodec::default()
            .encode_into(b"z=>1", &mut raw)
            .unwrap();
        receiver.serve(&raw[..], "raw");
        let s = receiver.summary(Some(4));
        assert_eq!((s.frames, s.unique, receiver.messages()), (8, 5, 5));
        assert_eq!(
            live.items_out.load(Ordering::Relaxed),
            5,
            "a capacity trial's done count"
        );
        assert_eq!((s.sequence.lost, s.sequence.duplicates), (0, 3));
    }

    #[test]
    fn connections_past_the_cap_are_refused_and_counted() {
        let receiver = Receiver::new(config(Framing::Auto));
        let first = receiver.admit();
        let _second = receiver.admit();
        assert!(first.is_some() && receiver.admit().is_none());
        drop(first);
        assert!(receiver.admit().is_some());
        assert_eq!(receiver.summary(None).refused_connections, 1);
    }

    #[test]
    fn a_stalled_frame_closes_its_connection_as_slow() {
        use plumbline_core::intake::ByteBudget;
        let mut cfg = config(Framing::Auto);
        cfg.intake = Some(IntakeLimits::new(
            Duration::from_millis(100),
            0,
            Arc::new(ByteBudget::new(1 << 20)),
        ));
        let receiver = Receiver::new(cfg);
        let (client, server) = loopback();
        server
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        (&client).write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
        let started = Instant::now();
        receiver.serve(&server, "127.0.0.1:7777");
        assert!(started.elapsed() < Duration::from_secs(2));
        let s = receiver.summary(None);
        assert_eq!((s.bad_connections, s.slow_connections), (1, 1));
        assert_eq!(
            s.bad_reasons,
            [
                "127.0.0.1:7777: the peer sent 6 bytes of a 9-byte frame and not the rest within \
              the 100ms read timeout; connection closed"
            ]
        );
    }

    fn loopback() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
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
