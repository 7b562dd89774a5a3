//! plumbline framing, version 1: the header a generated message carries inside its frame payload,
//! so any sink can measure latency from the *intended* send time and count losses.
//!
//! ```text
//! offset  size  field
//!      0     2  magic "PL"
//!      2     1  version (1)
//!      3     1  flags (0; receivers ignore unknown flags)
//!      4     4  source: random id of the sending run (u32, big-endian)
//!      8     8  seq: message number within the source, from 0 (u64, big-endian)
//!     16     8  intended send time, nanoseconds since the UNIX epoch (u64, big-endian)
//!     24     4  key: the routing key (u32, big-endian)
//!     28     …  the application payload (nonce, vote, random bytes)
//! ```
//!
//! All of it sits inside the usual 4-byte length frame, so raw-frame tools still read the stream.
//! Times are wall-clock (UNIX epoch) so sender and receiver processes agree on one host; across
//! hosts their clocks must be synchronized (NTP/PTP) for latency to mean anything. Workers pass the
//! header through unchanged. Raw mode (seed files with `--binary`) has no header at all.

use bytes::{BufMut, Bytes};

/// Bytes of the header.
pub const HEADER_LEN: usize = 28;
/// The first bytes of every version-1 header.
pub const MAGIC: [u8; 3] = [b'P', b'L', 1];

/// The decoded header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub source: u32,
    pub seq: u64,
    pub intended_unix_ns: u64,
    pub key: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("frame of {len} bytes is too short for the {HEADER_LEN}-byte plumbline header")]
    Short { len: usize },
    #[error("frame does not start with the plumbline v1 magic \"PL\\x01\" (found {found:02x?})")]
    Magic { found: [u8; 3] },
}

impl Header {
    /// Appends the header to `dst`.
    pub fn write(&self, dst: &mut impl BufMut) {
        dst.put_slice(&MAGIC);
        dst.put_u8(0);
        dst.put_u32(self.source);
        dst.put_u64(self.seq);
        dst.put_u64(self.intended_unix_ns);
        dst.put_u32(self.key);
    }

    /// Splits a frame payload into header and application payload.
    pub fn read(frame: &Bytes) -> Result<(Header, Bytes), HeaderError> {
        if frame.len() < HEADER_LEN {
            return Err(HeaderError::Short { len: frame.len() });
        }
        if !is_plumbline(frame) {
            return Err(HeaderError::Magic {
                found: [frame[0], frame[1], frame[2]],
            });
        }
        let u32_at = |i: usize| u32::from_be_bytes(frame[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(frame[i..i + 8].try_into().expect("8 bytes"));
        Ok((
            Header {
                source: u32_at(4),
                seq: u64_at(8),
                intended_unix_ns: u64_at(16),
                key: u32_at(24),
            },
            frame.slice(HEADER_LEN..),
        ))
    }
}

/// Whether a frame payload starts like a plumbline v1 header. Seed payloads never do: nonces
/// start with a selector below 60000 (a zero byte), votes with a lowercase letter.
pub fn is_plumbline(frame: &[u8]) -> bool {
    frame.len() >= HEADER_LEN && frame[..3] == MAGIC
}

/// The routing key of a plumbline-framed payload, read in place; `None` for other payloads.
pub fn key(frame: &[u8]) -> Option<u32> {
    is_plumbline(frame).then(|| u32::from_be_bytes(frame[24..28].try_into().expect("4 bytes")))
}

/// Nanoseconds since the UNIX epoch, now.
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, crate::clock::duration_ns)
        .saturating_add_signed(planted_skew_ns())
}

/// Tests only: `PLUMBLINE_CLOCK_SKEW=5ms` (or `-5ms`) makes this process's clock that far
/// off, as a host whose clock drifted, so the clock offset exchange can be tested on one
/// machine. Read once; anything unreadable is no skew.
fn planted_skew_ns() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SKEW.get_or_init(|| {
        let Ok(text) = std::env::var("PLUMBLINE_CLOCK_SKEW") else {
            return 0;
        };
        let (sign, magnitude) = match text.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, text.as_str()),
        };
        crate::duration::parse_duration(magnitude).map_or(0, |d| sign * d.as_nanos() as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_round_trips(source: u32, seq: u64, t: u64, key: u32, payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let header = Header { source, seq, intended_unix_ns: t, key };
            let mut buf = Vec::new();
            header.write(&mut buf);
            prop_assert_eq!(buf.len(), HEADER_LEN);
            buf.extend_from_slice(&payload);
            let (back, rest) = Header::read(&Bytes::from(buf)).unwrap();
            prop_assert_eq!(back, header);
            prop_assert_eq!(&rest[..], &payload[..]);
        }
    }

    #[test]
    fn seed_payloads_are_not_mistaken_for_headers() {
        let vote = crate::payload::Vote {
            letter: b'p',
            count: 1,
        }
        .encode();
        assert!(!is_plumbline(&vote));
        let nonce = crate::payload::encode_nonce(59_999, 1024, b"PL\x01").unwrap();
        assert!(!is_plumbline(&nonce));
    }

    #[test]
    fn bad_headers_are_named() {
        let err = Header::read(&Bytes::from_static(b"short")).unwrap_err();
        assert_eq!(err, HeaderError::Short { len: 5 });
        let err = Header::read(&Bytes::from(vec![b'X'; 40])).unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
    }
}
