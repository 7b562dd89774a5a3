//! The open-loop sender: writes messages to connections at their scheduled times.
//!
//! One thread per connection; thread `t` of `T` owns global messages `t, t+T, …` (so several
//! hosts are fed round-robin, as Giles does) and its own [`Schedule`]. Before waiting for a
//! future deadline it flushes its 64 KiB buffer, so every message leaves on time; when the peer
//! pushes back, writes block, the thread falls behind, and each message is sent late and counted
//! late: the schedule never moves and nothing is skipped (no coordinated omission). Memory is the
//! buffer plus the payload source, whatever the peer does.
//!
//! It writes to any `Write`; connecting is the transport's job, reporting is the caller's.

use std::io::{self, BufWriter, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use plumbline_core::clock::{duration_ns, Sleeper};
use plumbline_core::frame::HEADER_LEN as FRAME_HEADER_LEN;
use plumbline_core::header::{self, Header};
use plumbline_core::Shutdown;
use plumbline_measure::{Live, Recorder};

use crate::schedule::{Schedule, Segment, Shape};
use crate::share::Share;
use crate::workload::Generator;
use crate::{KeyDist, Workload};

/// Where payloads come from.
#[derive(Clone, Debug)]
pub enum Payloads {
    /// Generated per thread from `seed ^ thread`; vote letters follow the sequence number.
    Generated {
        workload: Workload,
        keys: KeyDist,
        seed: u64,
    },
    /// Records read from files; message `n` is record `n % len`, and without `repeat` the run
    /// ends after the last record.
    Records {
        records: Arc<Vec<Bytes>>,
        repeat: bool,
    },
}

/// How a message is laid out in its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The payload alone: seed files' bytes go out unchanged.
    Raw,
    /// plumbline's v1 header (source, seq, intended send time, key), then the payload. Connection
    /// `t` is source `source + t` and numbers its own messages from 0.
    Plumbline { source: u32 },
}

/// What to send and when.
#[derive(Clone, Debug)]
pub struct SendPlan {
    pub shape: Shape,
    pub payloads: Payloads,
    pub framing: Framing,
    /// Stop after this many messages in all.
    pub messages: Option<u64>,
    /// Stop scheduling messages due at or after this offset. Every message due before it is
    /// sent, late if need be; only `Shape::Max` (no deadlines) stops by the clock.
    pub duration: Option<Duration>,
    /// A message whose write starts later than this after its deadline counts as late.
    pub late_after: Duration,
    /// This sender's part of a schedule several senders emit together ([`Share::WHOLE`]
    /// alone).
    pub share: Share,
    /// The UNIX time (ns) the schedule starts at, for senders on several hosts to start
    /// together; `None`: once set up. A sender set up after it starts at once, its schedule
    /// still counted from this time, so what was due meanwhile goes out late (and counted
    /// late), never skipped.
    pub start_at_unix_ns: Option<u64>,
    /// Added to this host's clock for every stamp and for `start_at_unix_ns` (the run
    /// reference's time minus this host's), so receivers on other hosts read stamps on
    /// one clock.
    pub clock_offset_ns: i64,
}

/// The longest a sending thread waits without looking at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// A socket write slower than this counts as a stall (the peer pushed back).
pub const STALL: Duration = Duration::from_millis(1);
const BUFFER: usize = 64 * 1024;
/// Per-second counts are kept for at most this many seconds (about 11.5 days).
const MAX_SECONDS: usize = 1_000_000;

/// What one sending thread (or, merged, the whole sender) did.
#[derive(Clone, Debug)]
pub struct SendTally {
    pub sent: u64,
    /// Bytes written, frame headers included.
    pub bytes: u64,
    /// Write start − deadline, every message.
    pub lateness: Recorder,
    pub late: u64,
    /// Time inside socket writes, and the writes slower than [`STALL`].
    pub write_time: Duration,
    pub stalls: u64,
    pub stall_time: Duration,
    /// Messages whose write started in each second of the run.
    pub per_second: Vec<u64>,
    /// Messages whose write started in each stretch of a piecewise shape.
    pub per_segment: Vec<u64>,
    /// The instant every deadline counts from: taken once each thread's schedule and payload
    /// generator are built, so set-up is never charged to the first messages.
    pub origin: Instant,
    /// From the origin until the last byte was handed to the OS.
    pub elapsed: Duration,
    /// Connections broken and opened again (`--reconnect`).
    pub reconnects: u64,
    /// Messages written since the last successful flush when a connection broke: at most
    /// this many were lost with it (the receiver's sequence numbers count what was).
    pub at_risk: u64,
    /// How long after its `start_at_unix_ns` the schedule was started (zero without one, or
    /// when on time).
    pub late_start: Duration,
}

impl SendTally {
    fn new(segments: usize, origin: Instant) -> Self {
        Self {
            origin,
            sent: 0,
            bytes: 0,
            lateness: Recorder::new(),
            late: 0,
            write_time: Duration::ZERO,
            stalls: 0,
            stall_time: Duration::ZERO,
            per_second: Vec::new(),
            per_segment: vec![0; segments],
            elapsed: Duration::ZERO,
            reconnects: 0,
            at_risk: 0,
            late_start: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: &SendTally) {
        self.sent += other.sent;
        self.bytes += other.bytes;
        self.lateness.merge(&other.lateness);
        self.late += other.late;
        self.write_time += other.write_time;
        self.stalls += other.stalls;
        self.stall_time += other.stall_time;
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (a, b) in self.per_second.iter_mut().zip(&other.per_second) {
            *a += b;
        }
        for (a, b) in self.per_segment.iter_mut().zip(&other.per_segment) {
            *a += b;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
        self.reconnects += other.reconnects;
        self.at_risk += other.at_risk;
        self.late_start = self.late_start.max(other.late_start);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connection {connection} failed after {sent} messages: {source}")]
    Write {
        connection: usize,
        sent: u64,
        source: io::Error,
    },
}

/// Counts time spent inside the wrapped writer's `write` calls.
struct TimedWriter<W> {
    inner: W,
    time: Duration,
    stalls: u64,
    stall_time: Duration,
}

impl<W: Write> Write for TimedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let start = Instant::now();
        let result = self.inner.write(buf);
        let took = start.elapsed();
        self.time += took;
        if took > STALL {
            self.stalls += 1;
            self.stall_time += took;
        }
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Sends `plan` over `connections` (one thread each) and returns the merged tally, which
/// includes what failed connections sent before they failed, and one error per failed
/// connection (the others carry on to the end).
///
/// `live` counts messages sent so far (`items_in`) and late sends (`late`); `shutdown` stops every thread after its current
/// message (what was written is flushed).
pub fn send<W: Write + Send>(
    plan: &SendPlan,
    connections: Vec<W>,
    shutdown: &Shutdown,
    live: &Live,
) -> (SendTally, Vec<SendError>) {
    send_reconnecting(plan, connections, None, shutdown, live)
}

/// Opens connection `t` again after it broke; called with backoff until it succeeds or its
/// time is up.
pub struct Reconnect<'a, W> {
    pub open: &'a (dyn Fn(usize) -> io::Result<W> + Sync),
    /// How long one break may take to mend before the connection's error is final.
    pub within: Duration,
}

/// First and longest wait between reconnection attempts.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// [`send`], with broken connections opened again through `reconnect`. The schedule goes on
/// meanwhile (messages due during the break go out late, none is skipped); what was written
/// to the broken connection since its last flush is counted at risk.
pub fn send_reconnecting<W: Write + Send>(
    plan: &SendPlan,
    connections: Vec<W>,
    reconnect: Option<&Reconnect<'_, W>>,
    shutdown: &Shutdown,
    live: &Live,
) -> (SendTally, Vec<SendError>) {
    let local_threads = connections.len() as u64;
    let (_, threads) = plan.share.thread(0, local_threads);
    let segments = plan.shape.segments();
    // Built before the clock starts (a Zipf table takes a while): the threads' schedules and
    // payload generators, each as its thread of the whole schedule.
    let prepared: Vec<Payload> = (0..local_threads)
        .map(|t| Payload::new(plan, plan.share.thread(t, local_threads).0, threads))
        .collect();
    let reference_now = || header::unix_now_ns().saturating_add_signed(plan.clock_offset_ns);
    let (start, start_unix_ns, late_start) = match plan.start_at_unix_ns {
        None => (Instant::now(), reference_now(), Duration::ZERO),
        Some(at) => start_at(at, &reference_now, shutdown),
    };
    let results: Vec<(SendTally, Option<SendError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = connections
            .into_iter()
            .zip(prepared)
            .enumerate()
            .map(|(t, (conn, payload))| {
                let segments = &segments;
                scope.spawn(move || {
                    let mut sender = ThreadSender {
                        plan,
                        thread: plan.share.thread(t as u64, local_threads).0,
                        threads,
                        start,
                        start_unix_ns,
                        segments,
                        tally: SendTally::new(segments.len(), start),
                        reconnect,
                        unflushed: 0,
                    };
                    match sender.run(conn, payload, shutdown, live) {
                        Ok(tally) => (tally, None),
                        Err((sent, source)) => {
                            sender.tally.elapsed = start.elapsed();
                            let error = SendError::Write {
                                connection: t,
                                sent,
                                source,
                            };
                            (sender.tally, Some(error))
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sender threads do not panic"))
            .collect()
    });
    let mut total = SendTally::new(segments.len(), start);
    total.late_start = late_start;
    let mut errors = Vec::new();
    for (tally, error) in results {
        total.merge(&tally);
        errors.extend(error);
    }
    (total, errors)
}

/// Waits until the UNIX time `at` (ns, on the clock `now` reads), in slices so a Ctrl-C is
/// seen, and returns the schedule's origin for it: the instant that matches `at` (in the
/// past if `at` already passed), `at` itself, and how late the wait ended.
fn start_at(at: u64, now: &dyn Fn() -> u64, shutdown: &Shutdown) -> (Instant, u64, Duration) {
    let ahead = Duration::from_nanos(at.saturating_sub(now()));
    let origin = Instant::now() + ahead;
    while origin.saturating_duration_since(Instant::now()) > STOP_CHECK && !shutdown.requested() {
        std::thread::sleep(STOP_CHECK / 2);
    }
    Sleeper::new().sleep_until(origin);
    let late = Duration::from_nanos(now().saturating_sub(at));
    // Late (set up after `at`): the origin moves back so every deadline keeps its UNIX time.
    let origin = Instant::now().checked_sub(late).unwrap_or(origin);
    (origin, at, late)
}

/// One sending thread's schedule and payload generator.
struct Payload {
    schedule: Box<dyn Schedule>,
    generator: Option<Generator>,
}

impl Payload {
    fn new(plan: &SendPlan, thread: u64, threads: u64) -> Self {
        let generator = match &plan.payloads {
            Payloads::Generated {
                workload,
                keys,
                seed,
            } => Some(
                Generator::new(workload.clone(), *keys, seed ^ thread, u64::MAX)
                    .expect("validated by the plan"),
            ),
            Payloads::Records { .. } => None,
        };
        Self {
            schedule: plan.shape.schedule(thread, threads),
            generator,
        }
    }
}

struct ThreadSender<'a, W> {
    plan: &'a SendPlan,
    thread: u64,
    threads: u64,
    start: Instant,
    start_unix_ns: u64,
    segments: &'a [Segment],
    tally: SendTally,
    reconnect: Option<&'a Reconnect<'a, W>>,
    /// Messages written since the last successful flush.
    unflushed: u64,
}

fn buffered<W: Write>(conn: W) -> BufWriter<TimedWriter<W>> {
    BufWriter::with_capacity(
        BUFFER,
        TimedWriter {
            inner: conn,
            time: Duration::ZERO,
            stalls: 0,
            stall_time: Duration::ZERO,
        },
    )
}

impl<W: Write> ThreadSender<'_, W> {
    /// The connection broke with `error`: opens it again with backoff (if allowed), leaving
    /// what the broken one buffered unsent; otherwise the error is final.
    fn mend(
        &mut self,
        out: &mut BufWriter<TimedWriter<W>>,
        error: io::Error,
        shutdown: &Shutdown,
    ) -> Result<(), (u64, io::Error)> {
        let Some(reconnect) = self.reconnect else {
            return Err((self.tally.sent, error));
        };
        let deadline = Instant::now() + reconnect.within;
        let mut wait = RECONNECT_FIRST;
        let mut last = error;
        while Instant::now() < deadline && !shutdown.requested() {
            match (reconnect.open)(self.thread as usize) {
                Ok(conn) => {
                    let broken = std::mem::replace(out, buffered(conn));
                    // Into parts: the broken connection's buffer is dropped, never flushed.
                    let (timed, _unsent) = broken.into_parts();
                    self.tally.write_time += timed.time;
                    self.tally.stalls += timed.stalls;
                    self.tally.stall_time += timed.stall_time;
                    self.tally.reconnects += 1;
                    self.tally.at_risk += std::mem::take(&mut self.unflushed);
                    return Ok(());
                }
                Err(e) => last = e,
            }
            std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
            wait = (wait * 2).min(RECONNECT_MAX);
        }
        Err((self.tally.sent, last))
    }

    fn flush(
        &mut self,
        out: &mut BufWriter<TimedWriter<W>>,
        shutdown: &Shutdown,
    ) -> Result<(), (u64, io::Error)> {
        match out.flush() {
            Ok(()) => {
                self.unflushed = 0;
                Ok(())
            }
            Err(e) => self.mend(out, e, shutdown),
        }
    }

    fn run(
        &mut self,
        conn: W,
        payload: Payload,
        shutdown: &Shutdown,
        live: &Live,
    ) -> Result<SendTally, (u64, io::Error)> {
        let mut out = buffered(conn);
        let Payload {
            mut schedule,
            mut generator,
        } = payload;
        let mut sleeper = Sleeper::new();
        let mut segment = 0;
        let unpaced = matches!(self.plan.shape, Shape::Max);
        for k in 0.. {
            let n = self.thread + k * self.threads;
            if shutdown.requested() || self.plan.messages.is_some_and(|m| n >= m) {
                break;
            }
            let Some(offset) = schedule.offset(k) else {
                break;
            };
            if self.plan.duration.is_some_and(|d| offset >= d) {
                break;
            }
            let record = match &self.plan.payloads {
                Payloads::Records { records, repeat } => {
                    if !repeat && n >= records.len() as u64 {
                        break;
                    }
                    Some(&records[(n % records.len() as u64) as usize])
                }
                Payloads::Generated { .. } => None,
            };
            let deadline = self.start + offset;
            let mut now = Instant::now();
            if now < deadline {
                // Everything due so far leaves now, before we wait for this one.
                self.flush(&mut out, shutdown)?;
                // Long waits go in slices, so a Ctrl-C is seen within one.
                while deadline.saturating_duration_since(Instant::now()) > STOP_CHECK {
                    std::thread::sleep(STOP_CHECK / 2);
                    if shutdown.requested() {
                        break;
                    }
                }
                if shutdown.requested() {
                    break;
                }
                sleeper.sleep_until(deadline);
                now = Instant::now();
            }
            // `--rate max` puts every deadline at 0: the duration is kept by the clock. A paced
            // shape sends every message scheduled before the end, however late (counted late):
            // an open-loop sender never skips one to catch up.
            if unpaced && self.plan.duration.is_some_and(|d| now - self.start >= d) {
                break;
            }
            let late = now.saturating_duration_since(deadline);
            self.tally.lateness.record_ns(duration_ns(late));
            if late > self.plan.late_after {
                self.tally.late += 1;
                live.late.fetch_add(1, Ordering::Relaxed);
            }
            // Each connection is its own source, numbering its messages 0, 1, 2, …, so a
            // receiver counts losses per connection whatever the others did.
            let written = match (record, &mut generator) {
                (Some(record), _) => self.write(&mut out, k, 0, offset, &[record]),
                (None, Some(g)) => {
                    let (key, parts) = g.parts(n);
                    self.write(&mut out, k, key, offset, &[parts.head(), parts.tail])
                }
                (None, None) => unreachable!("a generator exists for generated payloads"),
            };
            match written {
                Ok(()) => self.unflushed += 1,
                Err(e) => self.mend(&mut out, e, shutdown)?,
            }
            // The first message leaves at once: a batch's would otherwise wait for 64 KiB of
            // the rest, and the peer's first item with it.
            if k == 0 {
                self.flush(&mut out, shutdown)?;
            }
            self.count(now - self.start, &mut segment);
            live.items_in.fetch_add(1, Ordering::Relaxed);
        }
        self.flush(&mut out, shutdown)?;
        self.tally.elapsed = self.start.elapsed();
        let timed = out.get_ref();
        self.tally.write_time += timed.time;
        self.tally.stalls += timed.stalls;
        self.tally.stall_time += timed.stall_time;
        Ok(self.tally.clone())
    }

    /// Writes one frame whose payload is the concatenation of `pieces`.
    fn write<O: Write>(
        &mut self,
        out: &mut O,
        seq: u64,
        key: u32,
        offset: Duration,
        pieces: &[&[u8]],
    ) -> io::Result<()> {
        let payload_len: usize = pieces.iter().map(|p| p.len()).sum();
        let mut head = [0u8; FRAME_HEADER_LEN + header::HEADER_LEN];
        let head_len = match self.plan.framing {
            Framing::Raw => {
                head[..4].copy_from_slice(&(payload_len as u32).to_be_bytes());
                FRAME_HEADER_LEN
            }
            Framing::Plumbline { source } => {
                let len = (header::HEADER_LEN + payload_len) as u32;
                head[..4].copy_from_slice(&len.to_be_bytes());
                Header {
                    source: source.wrapping_add(self.thread as u32),
                    seq,
                    intended_unix_ns: self.start_unix_ns + duration_ns(offset),
                    key,
                }
                .write(&mut &mut head[4..]);
                head.len()
            }
        };
        out.write_all(&head[..head_len])?;
        for piece in pieces {
            out.write_all(piece)?;
        }
        self.tally.bytes += (head_len + payload_len) as u64;
        self.tally.sent += 1;
        Ok(())
    }

    /// Files the message just sent under its second and its stretch of the shape.
    fn count(&mut self, at: Duration, segment: &mut usize) {
        let second = at.as_secs() as usize;
        if second < MAX_SECONDS {
            if self.tally.per_second.len() <= second {
                self.tally.per_second.resize(second + 1, 0);
            }
            self.tally.per_second[second] += 1;
        }
        // A message sent late past the shape's end is the last stretch's, not nobody's.
        while *segment + 1 < self.segments.len() && at >= self.segments[*segment].end {
            *segment += 1;
        }
        if let Some(count) = self.tally.per_segment.get_mut(*segment) {
            if at >= self.segments[*segment].start {
                *count += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_core::frame::{FrameCodec, FrameReader};

    fn plan(shape: Shape, messages: u64, framing: Framing) -> SendPlan {
        SendPlan {
            shape,
            payloads: Payloads::Generated {
                workload: Workload::votes("abcdefghijklmnopqrstuvwxyz").unwrap(),
                keys: KeyDist::Uniform,
                seed: 1,
            },
            framing,
            messages: Some(messages),
            duration: None,
            late_after: Duration::from_millis(1),
            share: Share::WHOLE,
            start_at_unix_ns: None,
            clock_offset_ns: 0,
        }
    }

    fn run(plan: &SendPlan, connections: usize) -> (SendTally, Vec<Vec<u8>>) {
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); connections];
        let (tally, errors) = send(
            plan,
            bufs.iter_mut().collect(),
            &Shutdown::new(),
            &Live::new(),
        );
        assert!(errors.is_empty());
        (tally, bufs)
    }

    #[test]
    fn raw_votes_are_the_seed_bytes_round_robin_over_connections() {
        let (tally, bufs) = run(&plan(Shape::Max, 52, Framing::Raw), 2);
        assert_eq!(tally.sent, 52);
        assert_eq!(tally.bytes, 468);
        // Connection 0 carries the even messages: a, c, e, …
        let frames: Vec<Bytes> = FrameReader::new(&bufs[0][..], FrameCodec::default())
            .map(|f| f.unwrap())
            .collect();
        assert_eq!(frames.len(), 26);
        assert_eq!(&frames[1][..], &[b'c', 0, 0, 0, 1]);
    }

    #[test]
    fn plumbline_frames_carry_seq_and_intended_time() {
        let shape = Shape::Constant { rate: 1000.0 };
        let (tally, bufs) = run(&plan(shape, 20, Framing::Plumbline { source: 9 }), 1);
        let frames: Vec<Bytes> = FrameReader::new(&bufs[0][..], FrameCodec::default())
            .map(|f| f.unwrap())
            .collect();
        let headers: Vec<Header> = frames.iter().map(|f| Header::read(f).unwrap().0).collect();
        assert_eq!(
            headers.iter().map(|h| h.seq).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        assert!(headers.iter().all(|h| h.source == 9));
        let step = headers[10].intended_unix_ns - headers[9].intended_unix_ns;
        assert_eq!(
            step, 1_000_000,
            "1 ms apart at 1000/s, whatever the send times"
        );
        // 20 messages at 1000/s take about 19 ms.
        assert!(
            tally.elapsed >= Duration::from_millis(19),
            "{:?}",
            tally.elapsed
        );
    }

    /// A writer that takes 5 ms per write call.
    struct Slow(Vec<u8>);
    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(5));
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn send_slowly(plan: &SendPlan) -> SendTally {
        let (tally, errors) = send(plan, vec![Slow(Vec::new())], &Shutdown::new(), &Live::new());
        assert!(errors.is_empty());
        tally
    }

    /// A connection that breaks once, after `fail_after` bytes; what it took is shared.
    struct Flaky {
        fail_after: Option<usize>,
        taken: Arc<std::sync::Mutex<Vec<u8>>>,
    }
    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut taken = self.taken.lock().unwrap();
            if let Some(limit) = self.fail_after {
                if taken.len() + buf.len() > limit {
                    return Err(io::ErrorKind::ConnectionReset.into());
                }
            }
            taken.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_connection_is_opened_again_and_the_schedule_goes_on() {
        let first = Arc::new(std::sync::Mutex::new(Vec::new()));
        let second = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut plan = plan(
            Shape::Constant { rate: 2000.0 },
            40,
            Framing::Plumbline { source: 1 },
        );
        plan.late_after = Duration::from_secs(1);
        let opens = std::sync::atomic::AtomicUsize::new(0);
        let open = |_: usize| {
            // The first attempt fails too: backoff, then a good connection.
            if opens.fetch_add(1, Ordering::Relaxed) == 0 {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            Ok(Flaky {
                fail_after: None,
                taken: second.clone(),
            })
        };
        let reconnect = Reconnect {
            open: &open,
            within: Duration::from_secs(5),
        };
        let conn = Flaky {
            fail_after: Some(10 * 37),
            taken: first.clone(),
        };
        let (tally, errors) = send_reconnecting(
            &plan,
            vec![conn],
            Some(&reconnect),
            &Shutdown::new(),
            &Live::new(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(tally.reconnects, 1);
        assert!(tally.at_risk >= 1, "the message that hit the break");
        let seqs = |bytes: &[u8]| -> Vec<u64> {
            FrameReader::new(bytes, FrameCodec::default())
                .map(|f| Header::read(&f.unwrap()).unwrap().0.seq)
                .collect()
        };
        let before = seqs(&first.lock().unwrap());
        let after = seqs(&second.lock().unwrap());
        let k = before.len() as u64;
        assert!(k <= 10, "the break came after 370 bytes: {before:?}");
        assert_eq!(
            before,
            (0..k).collect::<Vec<_>>(),
            "whole frames before the break"
        );
        assert_eq!(
            after.last(),
            Some(&39),
            "the schedule went on to the end: {after:?}"
        );
        assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");
        let missing = 40 - before.len() - after.len();
        assert!(
            missing as u64 <= tally.at_risk && missing > 0,
            "{missing} missing, {} counted at risk: {before:?} {after:?}",
            tally.at_risk
        );
    }

    /// Regression: `--duration` stopped by the clock, so a sender that fell behind dropped
    /// what was still scheduled (6 746 of 60 000) while claiming it never skips.
    #[test]
    fn a_late_sender_still_sends_everything_scheduled_before_the_duration() {
        let mut plan = plan(Shape::Constant { rate: 20_000.0 }, u64::MAX, Framing::Raw);
        plan.messages = None;
        plan.duration = Some(Duration::from_millis(20));
        let tally = send_slowly(&plan);
        assert_eq!(tally.sent, 400, "every message due in 20 ms at 20 000/s");
        assert!(tally.late > 0);
    }

    #[test]
    fn a_blocked_peer_makes_sends_late_not_lost() {
        let plan = plan(Shape::Constant { rate: 2000.0 }, 50, Framing::Raw);
        let tally = send_slowly(&plan);
        assert_eq!(tally.sent, 50);
        assert!(tally.late > 10, "late {}", tally.late);
        // Once behind, the thread stops waiting, so frames pile into its buffer and go out in
        // few (slow) writes: at least one stall, all 50 frames delivered.
        assert!(tally.stalls >= 1 && tally.stall_time >= Duration::from_millis(5));
        assert_eq!(tally.bytes, 50 * 9);
    }

    #[test]
    fn max_rate_stops_at_the_duration() {
        let mut p = plan(Shape::Max, u64::MAX, Framing::Raw);
        p.messages = None;
        p.duration = Some(Duration::from_millis(100));
        let start = Instant::now();
        let (tally, _) = run(&p, 1);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(tally.sent > 0);
    }

    #[test]
    fn records_stop_at_the_end_without_repeat() {
        let records = Arc::new(vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]);
        let mut p = plan(Shape::Max, 10, Framing::Raw);
        p.payloads = Payloads::Records {
            records: records.clone(),
            repeat: false,
        };
        assert_eq!(run(&p, 1).0.sent, 2);
        p.payloads = Payloads::Records {
            records,
            repeat: true,
        };
        assert_eq!(run(&p, 1).0.sent, 10);
    }

    #[test]
    fn segments_count_what_was_sent_in_them() {
        let shape = Shape::Steps(vec![
            (200.0, Duration::from_millis(100)),
            (400.0, Duration::from_millis(100)),
        ]);
        let mut p = plan(shape, 1000, Framing::Raw);
        p.messages = None;
        let (tally, _) = run(&p, 2);
        assert_eq!(tally.sent, 60);
        // Counted by actual send time: on a busy machine a message may slip into the next.
        let [a, b] = tally.per_segment[..] else {
            panic!("two segments")
        };
        assert_eq!(a + b, 60);
        assert!((18..=22).contains(&a), "{:?}", tally.per_segment);
    }

    #[test]
    fn a_failing_connection_is_named() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "peer went away"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let plan = plan(Shape::Max, 100_000, Framing::Raw);
        let (tally, errors) = send(&plan, vec![Broken], &Shutdown::new(), &Live::new());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("connection 0 failed"),
            "{}",
            errors[0]
        );
        let counted = format!("after {} messages", tally.sent);
        assert!(
            errors[0].to_string().contains(&counted),
            "the partial tally comes back too"
        );
    }
}
