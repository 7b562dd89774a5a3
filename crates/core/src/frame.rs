//! Frames: a 4-byte big-endian length followed by that many payload bytes, the framing of the
//! seeds' files and wires (Giles sender, Wallaroo sources, `--msg-size 1028` = 4 + 1024).
//!
//! [`FrameCodec`] is the one decoder of outside bytes: it checks the announced length against a
//! cap *before* reserving anything, so a hostile length cannot make us allocate. It plugs into
//! tokio-util's `Framed*` for sockets; [`FrameReader`] drives the same codec over any blocking
//! `Read` (files) and names the byte offset of a bad frame. What a payload means is not decided
//! here (see [`crate::payload`]).

use std::io::{self, Read};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

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
#[derive(Debug, thiserror::Error)]
#[error("bad frame at byte offset {offset}: {source}")]
pub struct FrameAtOffset {
    pub offset: u64,
    #[source]
    pub source: FrameError,
}

/// Reads frames from a blocking reader (a file, stdin) with [`FrameCodec`].
///
/// Memory is bounded by the codec's cap plus one read chunk. After the first error the reader is
/// finished: it yields nothing more.
pub struct FrameReader<R> {
    inner: R,
    codec: FrameCodec,
    buf: BytesMut,
    /// Offset of the first byte in `buf` within the stream.
    offset: u64,
    done: bool,
}

const READ_CHUNK: usize = 64 * 1024;

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, codec: FrameCodec) -> Self {
        Self {
            inner,
            codec,
            buf: BytesMut::with_capacity(READ_CHUNK),
            offset: 0,
            done: false,
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
        result.map_err(|source| FrameAtOffset {
            offset: self.offset,
            source,
        })
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

    /// Reads one chunk into the buffer; 0 means end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let result = loop {
            match self.inner.read(&mut self.buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(start + *result.as_ref().unwrap_or(&0));
        result
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
                Some(Err(FrameAtOffset {
                    offset: self.offset,
                    source,
                }))
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
            prop_assert!(items.last().map_or(true, |i| i.is_ok() || errors == 1));
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
