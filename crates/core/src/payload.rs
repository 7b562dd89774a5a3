//! The seeds' payload formats, byte-compatible with their files.
//!
//! * Nonce (seed 000, Sleepy Python): `size` bytes, the first 4 a big-endian partition selector,
//!   the rest padding the application ignores.
//! * Vote (seed 002, alphabet_partitioned): 1 letter byte + 4-byte big-endian vote count.
//!
//! These are payloads: the 4-byte frame header around them belongs to [`crate::frame`]. Drawing
//! selectors and letters (key distributions) belongs to the load crate.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of a nonce's partition selector.
pub const SELECTOR_LEN: usize = 4;
/// Bytes of a vote payload.
pub const VOTE_LEN: usize = 5;
/// The seed's selectors are drawn from `0..SELECTOR_RANGE`, a multiple of 60 so that 1–6, 10, 12,
/// 15, 20, 30 and 60 partitions all divide it evenly.
pub const SELECTOR_RANGE: u32 = 60_000;
/// Letters a..z: the votes application has one partition per letter.
pub const LETTERS: u32 = 26;

/// Why a payload does not match its format; messages name the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("a nonce of {size} bytes is too small: it needs at least {SELECTOR_LEN} bytes for its partition selector")]
    NonceTooSmall { size: usize },
    #[error("a vote payload is {VOTE_LEN} bytes (letter + 4-byte count), got {len}")]
    VoteLength { len: usize },
    #[error("vote letter {letter:?} (byte 0x{byte:02x}) is not one of a..z")]
    VoteLetter { letter: char, byte: u8 },
}

/// Writes a nonce: the selector, then `size - 4` bytes of `padding` (repeated if shorter).
pub fn encode_nonce(selector: u32, size: usize, padding: &[u8]) -> Result<Bytes, PayloadError> {
    if size < SELECTOR_LEN {
        return Err(PayloadError::NonceTooSmall { size });
    }
    let mut buf = BytesMut::with_capacity(size);
    buf.put_u32(selector);
    let mut rest = size - SELECTOR_LEN;
    while rest > 0 && !padding.is_empty() {
        let take = rest.min(padding.len());
        buf.put_slice(&padding[..take]);
        rest -= take;
    }
    buf.resize(size, 0);
    Ok(buf.freeze())
}

/// Reads a nonce's partition selector.
pub fn nonce_selector(payload: &[u8]) -> Result<u32, PayloadError> {
    match payload.get(..SELECTOR_LEN) {
        Some(bytes) => Ok(u32::from_be_bytes(bytes.try_into().expect("4 bytes"))),
        None => Err(PayloadError::NonceTooSmall {
            size: payload.len(),
        }),
    }
}

/// One vote: `count` votes for `letter` (a..z).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vote {
    pub letter: u8,
    pub count: u32,
}

impl Vote {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(VOTE_LEN);
        buf.put_u8(self.letter);
        buf.put_u32(self.count);
        buf.freeze()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
        let bytes: &[u8; VOTE_LEN] = payload
            .try_into()
            .map_err(|_| PayloadError::VoteLength { len: payload.len() })?;
        let vote = Self {
            letter: bytes[0],
            count: u32::from_be_bytes(bytes[1..].try_into().expect("4 bytes")),
        };
        vote.letter_index()?;
        Ok(vote)
    }

    /// 0 for `a` … 25 for `z`: the vote's key and partition.
    pub fn letter_index(&self) -> Result<u32, PayloadError> {
        if self.letter.is_ascii_lowercase() {
            Ok(u32::from(self.letter - b'a'))
        } else {
            Err(PayloadError::VoteLetter {
                letter: char::from(self.letter),
                byte: self.letter,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vote_matches_the_seed_struct_pack() {
        // struct.pack('>sI', b'z', 2) after the seed's 4-byte length 5.
        assert_eq!(
            &Vote {
                letter: b'z',
                count: 2
            }
            .encode()[..],
            &[b'z', 0, 0, 0, 2]
        );
    }

    #[test]
    fn bad_votes_are_named() {
        assert_eq!(
            Vote::decode(b"abc"),
            Err(PayloadError::VoteLength { len: 3 })
        );
        let err = Vote::decode(&[b'A', 0, 0, 0, 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vote letter 'A' (byte 0x41) is not one of a..z"
        );
    }

    #[test]
    fn nonce_needs_room_for_its_selector() {
        let err = encode_nonce(1, 3, b"x").unwrap_err();
        assert!(err.to_string().contains("3 bytes is too small"), "{err}");
        assert!(nonce_selector(b"ab").is_err());
    }

    proptest! {
        #[test]
        fn nonce_round_trips(selector in 0u32..SELECTOR_RANGE, size in 4usize..4096, pad in prop::collection::vec(any::<u8>(), 0..64)) {
            let payload = encode_nonce(selector, size, &pad).unwrap();
            prop_assert_eq!(payload.len(), size);
            prop_assert_eq!(nonce_selector(&payload).unwrap(), selector);
        }

        #[test]
        fn vote_round_trips(letter in b'a'..=b'z', count in any::<u32>()) {
            let vote = Vote { letter, count };
            prop_assert_eq!(Vote::decode(&vote.encode()).unwrap(), vote);
        }
    }
}
