//! Frames: a 4-byte big-endian length followed by that many payload bytes, the framing of the
//! seeds' files and wires (Giles sender, Wallaroo sources, `--msg-size 1028` = 4 + 1024).
//!
//! [`FrameCodec`] is the one decoder of outside bytes: it checks the announced length against a
//! cap *before* reserving anything, so a hostile length cannot make us allocate. It plugs into
//! tokio-util's `Framed*` for sockets; [`FrameReader`] drives the same codec over any blocking
//! `Read` (files, sockets) and names the byte offset of a bad frame; given
//! [`IntakeLimits`](crate::intake::IntakeLimits) it also gives up on a frame that arrives too
//! slowly and draws its buffer from a shared budget. What a payload means is not decided here
//! (see [`crate::payload`]).

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::intake::{ByteBudget, FrameDeadline, IntakeLimits, Stall, FREE_PER_CONNECTION};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;
/// Default cap on a frame's payload: 8 MiB, large enough for seed 004's 1 MB items, small enough
/// that a corrupt length cannot exhaust memory.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;
/// The largest cap a user may set (`--max-frame`).
pub const MAX_FRAME_LIMIT: u64 = 1 << 30;

/// Why a byte stream is not a valid sequence of frames. Each message names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u64, max: usize },
    #[error("zero-length frame where a payload is required")]
    Empty,
    #[error("truncated frame: its header announces {expected} bytes but the stream ends after {available}")]
    Truncated { expected: usize, available: usize },
    #[error("truncated frame header: the stream ends after {available} of its {HEADER_LEN} length bytes")]
    TruncatedHeader { available: usize },
    /// Under [`IntakeLimits`]: the peer began a frame and did not finish it in time.
    #[error("{0}")]
    Stalled(Stall),
    #[error("i/o error while reading frames: {0}")]
    Io(#[from] io::Error),
}

/// Length-prefixed framing with a size cap.
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    max_len: usize,
    allow_empty: bool,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameCodec {
    /// A codec refusing payloads longer than `max_len` and, by default, empty ones (no seed
    /// format has an empty message, so an empty frame means a broken writer).
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            allow_empty: false,
        }
    }

    /// Accepts zero-length frames.
    pub fn allow_empty(mut self) -> Self {
        self.allow_empty = true;
        self
    }

    /// Checks a payload length against this codec's rules.
    pub fn check_len(&self, len: usize) -> Result<(), FrameError> {
        if len > self.max_len {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: self.max_len,
            });
        }
        if len == 0 && !self.allow_empty {
            return Err(FrameError::Empty);
        }
        Ok(())
    }

    /// Appends one frame (header + payload) to `dst`.
    pub fn encode_into(&self, payload: &[u8], dst: &mut impl BufMut) -> Result<(), FrameError> {
        self.check_len(payload.len())?;
        dst.put_u32(payload.len() as u32);
        dst.put_slice(payload);
        Ok(())
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
        self.check_len(len)?;
        // Nothing is reserved for the announced length: the buffer grows only as bytes arrive,
        // so a peer that announces a large frame and stalls costs no memory.
        if src.len() < HEADER_LEN + len {
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len).freeze()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None if src.len() < HEADER_LEN => Err(FrameError::TruncatedHeader {
                available: src.len(),
            }),
            None => Err(FrameError::Truncated {
                expected: u32::from_be_bytes(src[..HEADER_LEN].try_into().expect("4 bytes"))
                    as usize,
                available: src.len() - HEADER_LEN,
            }),
        }
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: T, dst: &mut BytesMut) -> Result<(), FrameError> {
        let payload = payload.as_ref();
        dst.reserve(HEADER_LEN + payload.len());
        self.encode_into(payload, dst)
    }
}

/// A frame error with the byte offset of the frame that caused it.
#[derive(Debug)]
pub struct FrameAtOffset {
    pub offset: u64,
    /// Bytes the stream had delivered when it failed.
    pub received: u64,
    pub source: FrameError,
}

impl std::fmt::Display for FrameAtOffset {
    /// Says what happened: a peer that reset or stalled sent no bad frame.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let received = self.received;
        match &self.source {
            FrameError::Io(e) if is_reset(e) => {
                write!(f, "the peer reset the connection after {received} bytes")
            }
            FrameError::Io(e) if is_timeout(e) => write!(
                f,
                "nothing more arrived within the read timeout, after {received} bytes"
            ),
            FrameError::Io(e) => write!(f, "reading failed after {received} bytes: {e}"),
            FrameError::Stalled(stall) => write!(f, "the peer {stall}"),
            other => write!(f, "bad frame at byte offset {}: {other}", self.offset),
        }
    }
}

impl std::error::Error for FrameAtOffset {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The peer went away abruptly (a reset, a killed process), as opposed to sending bad bytes.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A socket read timeout expired (`EAGAIN` on Unix, `TimedOut` elsewhere).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads frames from a blocking reader (a file, stdin, a socket) with [`FrameCodec`].
///
/// Each read asks for twice what the last one brought (from 1 KiB up to 64 KiB), so a peer that
/// trickles bytes costs about a kilobyte and a fast one reads in large chunks. A frame longer
/// than the buffer gets room to its end in one allocation, but only the pages its bytes reach
/// are touched: resident memory grows as bytes arrive, never from an announced length. Memory
/// is bounded by the codec's cap plus one read chunk. After the first error the reader is
/// finished: it yields nothing more.
///
/// With [`FrameReader::limited`] (outside peers on a socket whose read timeout is
/// [`IntakeLimits::tick`]), a frame that does not arrive within the limits ends the reader with
/// [`FrameError::Stalled`], an empty buffer is freed whenever the peer is quiet, and buffer
/// beyond [`FREE_PER_CONNECTION`] is taken from the shared [`ByteBudget`]: without it the reader
/// reads into the room it has, or waits (time that counts against the frame's deadline).
pub struct FrameReader<R> {
    inner: R,
    codec: FrameCodec,
    buf: BytesMut,
    /// Offset of the first byte in `buf` within the stream.
    offset: u64,
    /// Bytes read from the stream so far.
    received: u64,
    /// How much the next read asks for.
    chunk: usize,
    guard: Option<Guard>,
    done: bool,
}

/// The limits of a reader of outside bytes, and the budget it holds.
struct Guard {
    deadline: FrameDeadline,
    budget: Arc<ByteBudget>,
    /// Budget bytes taken for the current buffer.
    charged: usize,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.budget.give_back(self.charged);
    }
}

const READ_CHUNK: usize = 64 * 1024;
const MIN_CHUNK: usize = 1024;
/// How long a reader denied budget waits before asking again.
const BUDGET_WAIT: Duration = Duration::from_millis(10);

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, codec: FrameCodec) -> Self {
        Self {
            inner,
            codec,
            buf: BytesMut::new(),
            offset: 0,
            received: 0,
            chunk: MIN_CHUNK,
            guard: None,
            done: false,
        }
    }

    /// Applies `limits` to a reader of outside bytes. Its socket must time reads out at
    /// [`IntakeLimits::tick`], or a silent peer is only judged when its next byte comes.
    pub fn limited(mut self, limits: &IntakeLimits) -> Self {
        self.guard = Some(Guard {
            deadline: limits.deadline(),
            budget: limits.budget.clone(),
            charged: 0,
        });
        self
    }

    /// The first frame (a hello) is due within the read timeout of the start, not of its first
    /// byte. Only with [`FrameReader::limited`].
    pub fn first_frame_due(mut self) -> Self {
        if let Some(guard) = &mut self.guard {
            guard.deadline = guard.deadline.clone().due_at_once();
        }
        self
    }

    /// The stream ended or failed here, after `received` bytes.
    fn at_offset(&self, source: FrameError) -> FrameAtOffset {
        FrameAtOffset {
            offset: self.offset,
            received: self.received,
            source,
        }
    }

    fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            let before = self.buf.len();
            if let Some(frame) = self.codec.decode(&mut self.buf)? {
                self.offset += (before - self.buf.len()) as u64;
                return Ok(Some(frame));
            }
            if self.fill()? == 0 {
                let before = self.buf.len();
                let frame = self.codec.decode_eof(&mut self.buf)?;
                self.offset += (before - self.buf.len()) as u64;
                return Ok(frame);
            }
        }
    }

    /// Appends to `out` every frame that is complete after at most one read from the stream,
    /// so a caller can do per-read work (publish counters, take a timestamp) once per batch.
    /// `Ok(false)`: the stream ended cleanly and nothing more will come. On an error, the good
    /// frames before the bad one are in `out` too.
    pub fn read_batch(&mut self, out: &mut Vec<Bytes>) -> Result<bool, FrameAtOffset> {
        if self.done {
            return Ok(false);
        }
        let result = self.fill_batch(out);
        if !matches!(result, Ok(true)) {
            self.done = true;
        }
        result.map_err(|source| self.at_offset(source))
    }

    fn fill_batch(&mut self, out: &mut Vec<Bytes>) -> Result<bool, FrameError> {
        let start = out.len();
        loop {
            loop {
                let before = self.buf.len();
                let Some(frame) = self.codec.decode(&mut self.buf)? else {
                    break;
                };
                self.offset += (before - self.buf.len()) as u64;
                out.push(frame);
            }
            if out.len() > start {
                return Ok(true);
            }
            if self.fill()? == 0 {
                let before = self.buf.len();
                let last = self.codec.decode_eof(&mut self.buf)?;
                self.offset += (before - self.buf.len()) as u64;
                return Ok(match last {
                    Some(frame) => {
                        out.push(frame);
                        true
                    }
                    None => false,
                });
            }
        }
    }

    /// Reads once into the buffer; 0 means end of stream. Under limits, read timeouts are
    /// waited through until the frame in progress overstays.
    fn fill(&mut self) -> Result<usize, FrameError> {
        loop {
            let room = self.make_room()?;
            let start = self.buf.len();
            self.buf.resize(start + room, 0);
            let began = Instant::now();
            let result = self.inner.read(&mut self.buf[start..]);
            let waited = began.elapsed();
            self.buf.truncate(start + *result.as_ref().unwrap_or(&0));
            match result {
                Ok(n) => {
                    self.received += n as u64;
                    self.chunk = (2 * n).clamp(MIN_CHUNK, READ_CHUNK);
                    self.watch(waited)?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if self.guard.is_some() && is_timeout(&e) => {
                    if self.buf.is_empty() {
                        // A quiet peer between frames holds no buffer.
                        self.release();
                    }
                    self.watch(waited)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The payload length the buffered frame announced, once its prefix is in.
    fn announced(&self) -> Option<usize> {
        let header = self.buf.get(..HEADER_LEN)?;
        Some(u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize)
    }

    /// Feeds the frame deadline (under limits) with the state after a read or a wait.
    fn watch(&mut self, waited: Duration) -> Result<(), FrameError> {
        let announced = self.announced().map(|n| n as u64);
        let (head, have) = (self.offset, self.buf.len() as u64);
        match &mut self.guard {
            Some(guard) => guard
                .deadline
                .observe(head, have, announced, waited)
                .map_err(FrameError::Stalled),
            None => Ok(()),
        }
    }

    /// Frees the buffer and its budget; the next read starts small.
    fn release(&mut self) {
        self.buf = BytesMut::new();
        self.chunk = MIN_CHUNK;
        if let Some(guard) = &mut self.guard {
            guard.budget.give_back(std::mem::take(&mut guard.charged));
        }
    }

    /// Makes room for the next read and says how many bytes it may ask for.
    fn make_room(&mut self) -> Result<usize, FrameError> {
        let len = self.buf.len();
        if len == 0 && self.buf.capacity() > 2 * READ_CHUNK {
            // A large frame is done: give its buffer back rather than hold it for small ones.
            self.release();
        }
        let spare = self.buf.capacity() - len;
        if spare >= self.chunk || self.buf.try_reclaim(self.chunk) {
            return Ok(self.chunk);
        }
        if 2 * spare >= self.chunk {
            return Ok(spare);
        }
        // Double while the buffer is within the free share. Past it, a frame longer than the
        // room gets room to its end in one allocation (charged to the budget): its pages are
        // touched only as its bytes arrive, and no chain of outgrown buffers is left in the
        // allocator (doubling all the way left about as much again as the budget).
        let doubled = (len + self.chunk).max(2 * len);
        let frame_end = self.announced().map_or(0, |n| HEADER_LEN + n);
        let grow_to = if doubled <= FREE_PER_CONNECTION {
            doubled
        } else {
            doubled.max(frame_end)
        };
        loop {
            let granted = match &mut self.guard {
                None => true,
                Some(guard) => {
                    let need = grow_to
                        .saturating_sub(FREE_PER_CONNECTION)
                        .saturating_sub(guard.charged);
                    let granted = guard.budget.try_take(need);
                    if granted {
                        guard.charged += need;
                    }
                    granted
                }
            };
            if granted {
                let mut grown = BytesMut::with_capacity(grow_to);
                grown.extend_from_slice(&self.buf);
                self.buf = grown;
                return Ok(self.chunk);
            }
            // No budget: read into the room there is, or wait for some.
            let spare = self.buf.capacity() - len;
            if spare > 0 {
                return Ok(spare);
            }
            let began = Instant::now();
            std::thread::sleep(BUDGET_WAIT);
            self.watch(began.elapsed())?;
        }
    }
}

impl<R: Read> Iterator for FrameReader<R> {
    type Item = Result<Bytes, FrameAtOffset>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_frame() {
            Ok(Some(frame)) => Some(Ok(frame)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(source) => {
                self.done = true;
                Some(Err(self.at_offset(source)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
        let codec = FrameCodec::default().allow_empty();
        let mut out = Vec::new();
        for p in payloads {
            codec.encode_into(p, &mut out).unwrap();
        }
        out
    }

    proptest! {
        #[test]
        fn codec_round_trips_any_frames(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 0..20)) {
            let bytes = framed(&payloads);
            let decoded: Vec<Vec<u8>> = FrameReader::new(&bytes[..], FrameCodec::default().allow_empty())
                .map(|f| f.unwrap().to_vec())
                .collect();
            prop_assert_eq!(decoded, payloads);
        }

        #[test]
        fn damaged_streams_yield_their_good_frames_then_one_error(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 1..10),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte: u8,
        ) {
            // Valid frames, then truncated or with one byte changed: the reader yields frames
            // (each within the cap) until at most one typed error, and never panics.
            let mut bytes = framed(&payloads);
            let at = flip.index(bytes.len());
            bytes[at] = byte;
            bytes.truncate(cut.index(bytes.len() + 1));
            let items: Vec<_> = FrameReader::new(&bytes[..], FrameCodec::new(256)).collect();
            let errors = items.iter().filter(|i| i.is_err()).count();
            prop_assert!(errors <= 1);
            prop_assert!(items.last().is_none_or(|i| i.is_ok() || errors == 1));
            for frame in items.iter().flatten() {
                prop_assert!(!frame.is_empty() && frame.len() <= 256);
            }
            if let Some(Err(e)) = items.last() {
                prop_assert!(e.offset <= bytes.len() as u64);
            }
        }

        #[test]
        fn split_reads_decode_the_same(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 1..10), chunk in 1usize..17) {
            let bytes = framed(&payloads);
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in bytes.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = codec.decode(&mut buf).unwrap() { out.push(f.to_vec()); }
            }
            prop_assert!(codec.decode_eof(&mut buf).unwrap().is_none());
            prop_assert_eq!(out, payloads);
        }
    }

    proptest! {
        // Streams of up to ~0.5 MB, so frames straddle reads; few cases keep it quick.
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn batches_hold_the_same_frames_as_the_iterator(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40_000), 1..12),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = framed(&payloads);
            bytes.truncate(cut.index(bytes.len() + 1));
            let iterated: Vec<_> = FrameReader::new(&bytes[..], FrameCodec::default()).collect();
            let mut reader = FrameReader::new(&bytes[..], FrameCodec::default());
            let mut batched = Vec::new();
            let end = loop {
                match reader.read_batch(&mut batched) {
                    Ok(true) => continue,
                    Ok(false) => break None,
                    Err(e) => break Some(e),
                }
            };
            let good: Vec<&Bytes> = iterated.iter().flatten().collect();
            prop_assert_eq!(good, batched.iter().collect::<Vec<_>>());
            match (iterated.last(), end) {
                (Some(Err(a)), Some(b)) => prop_assert_eq!(a.offset, b.offset),
                (Some(Err(_)), None) | (_, Some(_)) => prop_assert!(false, "the two paths disagree on errors"),
                _ => {}
            }
            prop_assert!(reader.read_batch(&mut batched).is_ok_and(|more| !more));
        }
    }

    /// A peer that hands over `script` one step per read: bytes, or a read timeout after
    /// waiting `wait`, then a reset (or the end of the stream).
    struct Peer {
        script: std::collections::VecDeque<Option<Vec<u8>>>,
        wait: Duration,
        reset_at_end: bool,
        /// Room the reader offered to each read that timed out.
        offered_while_quiet: Vec<usize>,
    }

    impl Peer {
        fn new(script: Vec<Option<Vec<u8>>>, wait: Duration) -> Self {
            Self {
                script: script.into(),
                wait,
                reset_at_end: false,
                offered_while_quiet: Vec::new(),
            }
        }
    }

    impl Read for Peer {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match self.script.pop_front() {
                Some(Some(mut bytes)) => {
                    let n = bytes.len().min(out.len());
                    out[..n].copy_from_slice(&bytes[..n]);
                    if n < bytes.len() {
                        self.script.push_front(Some(bytes.split_off(n)));
                    }
                    Ok(n)
                }
                Some(None) => {
                    self.offered_while_quiet.push(out.len());
                    std::thread::sleep(self.wait);
                    Err(io::ErrorKind::WouldBlock.into())
                }
                None if self.reset_at_end => Err(io::ErrorKind::ConnectionReset.into()),
                None => Ok(0),
            }
        }
    }

    fn limits(timeout_ms: u64, budget: usize) -> IntakeLimits {
        IntakeLimits::new(
            Duration::from_millis(timeout_ms),
            0,
            Arc::new(ByteBudget::new(budget)),
        )
    }

    #[test]
    fn a_reset_is_named_as_one_not_as_a_bad_frame() {
        let mut peer = Peer::new(vec![Some(vec![0, 0, 0, 1, 7, 0, 0])], Duration::ZERO);
        peer.reset_at_end = true;
        let items: Vec<_> = FrameReader::new(peer, FrameCodec::default()).collect();
        assert_eq!(
            items[1].as_ref().unwrap_err().to_string(),
            "the peer reset the connection after 7 bytes"
        );
    }

    #[test]
    fn a_trickling_peer_costs_about_a_kilobyte_whatever_it_announces() {
        // 8 MiB announced, then a byte per read: the buffer holds what came, not what was
        // announced.
        let mut script = vec![Some(vec![0x00, 0x80, 0x00, 0x00])];
        script.extend((0..100).map(|_| Some(vec![1])));
        let mut reader = FrameReader::new(Peer::new(script, Duration::ZERO), FrameCodec::default());
        let err = reader.next().unwrap().unwrap_err();
        assert!(matches!(
            err.source,
            FrameError::Truncated { available: 100, .. }
        ));
        assert!(
            reader.buf.capacity() <= 2 * MIN_CHUNK,
            "{}",
            reader.buf.capacity()
        );
    }

    #[test]
    fn a_frame_that_stalls_is_given_up_within_its_deadline() {
        let script = [Some(vec![0, 0, 0, 9, 1])]
            .into_iter()
            .chain(std::iter::repeat_n(None, 1000))
            .collect();
        let started = Instant::now();
        let mut reader = FrameReader::new(
            Peer::new(script, Duration::from_millis(10)),
            FrameCodec::default(),
        )
        .limited(&limits(200, 1 << 20));
        let err = reader.next().unwrap().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            "the peer sent 5 bytes of a 9-byte frame and not the rest within the 200ms read timeout"
        );
    }

    #[test]
    fn a_quiet_peer_between_frames_is_kept_and_holds_no_buffer() {
        // A 40 KiB frame grows the buffer to fast reads; a quiet time shrinks it back.
        let mut big = Vec::new();
        FrameCodec::default()
            .encode_into(&[5; 40_000], &mut big)
            .unwrap();
        let mut small = Vec::new();
        FrameCodec::default()
            .encode_into(b"hi", &mut small)
            .unwrap();
        let mut script = vec![Some(big)];
        script.extend(std::iter::repeat_n(None, 30));
        script.push(Some(small));
        let mut reader = FrameReader::new(
            Peer::new(script, Duration::from_millis(10)),
            FrameCodec::default(),
        )
        .limited(&limits(100, 1 << 20));
        assert_eq!(reader.next().unwrap().unwrap().len(), 40_000);
        // 300 ms of silence (three read timeouts' worth) between frames is no stall.
        assert_eq!(&reader.next().unwrap().unwrap()[..], b"hi");
        assert!(reader.next().is_none());
        let offered = &reader.inner.offered_while_quiet;
        assert!(offered[0] > MIN_CHUNK, "{offered:?}");
        assert!(
            offered[1..].iter().all(|&n| n == MIN_CHUNK),
            "after one quiet read the buffer is a small one: {offered:?}"
        );
    }

    #[test]
    fn large_frames_share_one_budget_and_wait_for_it() {
        // Two peers each announce 256 KiB and send 200 KiB of it; the budget holds one.
        let budget = Arc::new(ByteBudget::new(300 * 1024));
        let limits = IntakeLimits::new(Duration::from_millis(300), 0, budget.clone());
        let peer = || {
            let mut script = vec![Some(vec![0, 4, 0, 0])];
            script.extend((0..200).map(|_| Some(vec![7; 1024])));
            script.extend(std::iter::repeat_n(None, 100));
            Peer::new(script, Duration::from_millis(10))
        };
        let mut first = FrameReader::new(peer(), FrameCodec::default()).limited(&limits);
        let mut second = FrameReader::new(peer(), FrameCodec::default()).limited(&limits);
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| first.next());
            let b = s.spawn(|| second.next());
            (a.join().unwrap(), b.join().unwrap())
        });
        for result in [a, b] {
            let err = result.unwrap().unwrap_err();
            assert!(matches!(err.source, FrameError::Stalled(_)), "{err}");
        }
        assert!(budget.refusals() > 0, "one of them waited for budget");
        drop((first, second));
        assert_eq!(budget.held(), 0, "readers give their budget back");
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut buf = BytesMut::from(&[0x00, 0x89, 0x54, 0x40, 1, 2][..]); // 9_000_000
        let err = FrameCodec::default().decode(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame of 9000000 bytes exceeds the 8388608-byte limit"
        );
        assert!(
            buf.capacity() < 1024,
            "no room was reserved for the bogus length"
        );
    }

    #[test]
    fn truncated_frames_name_what_is_missing() {
        let mut bytes = framed(&[b"hello".to_vec()]);
        bytes.truncate(7);
        let err = FrameReader::new(&bytes[..], FrameCodec::default())
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(matches!(
            err.source,
            FrameError::Truncated {
                expected: 5,
                available: 3
            }
        ));

        let mut bytes = framed(&[b"ok".to_vec()]);
        bytes.extend_from_slice(&[0, 0]);
        let items: Vec<_> = FrameReader::new(&bytes[..], FrameCodec::default()).collect();
        assert_eq!(items.len(), 2);
        let err = items[1].as_ref().unwrap_err();
        assert_eq!(err.offset, 6);
        assert!(matches!(
            err.source,
            FrameError::TruncatedHeader { available: 2 }
        ));
        assert!(err.to_string().starts_with("bad frame at byte offset 6:"));
    }

    #[test]
    fn empty_frames_are_refused_unless_allowed() {
        let bytes = [0u8, 0, 0, 0];
        let first = FrameReader::new(&bytes[..], FrameCodec::default()).next();
        assert!(matches!(
            first,
            Some(Err(FrameAtOffset {
                source: FrameError::Empty,
                ..
            }))
        ));
        let first = FrameReader::new(&bytes[..], FrameCodec::default().allow_empty()).next();
        assert_eq!(first.unwrap().unwrap().len(), 0);
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would() {
        let mut dst = BytesMut::new();
        let err = FrameCodec::new(4)
            .encode(&b"12345"[..], &mut dst)
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 5, max: 4 }));
        assert!(dst.is_empty());
    }
}
