//! Workloads: the seeds' message kinds, generated reproducibly from a seed.
//!
//! * `nonces` (seed 000): `size`-byte nonces whose 4-byte selector picks one of `partitions`
//!   partitions (`selector % partitions`). With uniform keys the selector is drawn from
//!   `0..60000` as the seed's `gen.py` meant; its `randint(0, 60000)` included 60000, which
//!   skews partition 0, so we draw the half-open range.
//! * `votes` (seed 002): message `i` votes for `letters[i % L]` with count `i / 26 + 1`, so the
//!   default 52 messages over a..z are exactly the seed's `fake_votes.msg` (a..z with 1, then a..z
//!   with 2). Their keys are the letters; a key distribution does not apply.
//! * `random` (seed 004): `size` random bytes; the key travels beside the payload.
//!
//! Keys and padding come from separate seeded streams. Timing is not here: generated messages
//! carry `intended_ns = 0` for the caller's schedule to stamp.

use bytes::{BufMut, BytesMut};
use plumbline_core::frame::DEFAULT_MAX_FRAME;
use plumbline_core::header::HEADER_LEN;
use plumbline_core::payload::{self, Vote, LETTERS, SELECTOR_RANGE};
use plumbline_core::Message;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::keys::{KeyDist, KeyError, KeySampler};

/// The default letters of the votes workload.
pub const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz";

/// What kind of message to generate.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    Nonces { size: usize, partitions: u32 },
    Votes { letters: Vec<u8> },
    Random { size: usize, keys: u32 },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Payload(#[from] payload::PayloadError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("partition count {0} must be between 1 and {SELECTOR_RANGE} (the selector range)")]
    Partitions(u32),
    #[error("letters {0:?} must be one or more of a..z")]
    Letters(String),
    #[error("a random payload needs at least 1 byte, got --size 0")]
    EmptyRandom,
    #[error("--size {size} exceeds the {max}-byte frame limit")]
    TooLarge { size: usize, max: usize },
    #[error("votes take their keys from --letters; the key distribution {0} does not apply")]
    KeysOnVotes(KeyDist),
}

impl Workload {
    /// Votes over `letters` (e.g. "abc…z", or "a" for the hot-key exercise).
    pub fn votes(letters: &str) -> Result<Self, WorkloadError> {
        if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(WorkloadError::Letters(letters.to_string()));
        }
        Ok(Workload::Votes {
            letters: letters.as_bytes().to_vec(),
        })
    }

    /// How many partitions the keys of this workload fall into.
    pub fn partitions(&self) -> u32 {
        match self {
            Workload::Nonces { partitions, .. } => *partitions,
            Workload::Votes { .. } => LETTERS,
            Workload::Random { keys, .. } => *keys,
        }
    }

    /// Payload bytes per message.
    pub fn payload_size(&self) -> usize {
        match self {
            Workload::Nonces { size, .. } | Workload::Random { size, .. } => *size,
            Workload::Votes { .. } => payload::VOTE_LEN,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Workload::Nonces { .. } => "nonces",
            Workload::Votes { .. } => "votes",
            Workload::Random { .. } => "random",
        }
    }

    /// Checks the workload's own parameters and that `keys` applies to it.
    pub fn validate(&self, keys: KeyDist) -> Result<(), WorkloadError> {
        let size = self.payload_size();
        if size > DEFAULT_MAX_FRAME - HEADER_LEN {
            // Checked before anything of that size is allocated.
            return Err(WorkloadError::TooLarge {
                size,
                max: DEFAULT_MAX_FRAME - HEADER_LEN,
            });
        }
        match self {
            Workload::Nonces { size, partitions } => {
                if *size < payload::SELECTOR_LEN {
                    return Err(payload::PayloadError::NonceTooSmall { size: *size }.into());
                }
                if *partitions == 0 || *partitions > SELECTOR_RANGE {
                    return Err(WorkloadError::Partitions(*partitions));
                }
            }
            Workload::Votes { .. } if keys != KeyDist::Uniform => {
                return Err(WorkloadError::KeysOnVotes(keys))
            }
            Workload::Votes { letters } => {
                Self::votes(std::str::from_utf8(letters).unwrap_or(""))?;
            }
            Workload::Random { size: 0, .. } => return Err(WorkloadError::EmptyRandom),
            Workload::Random { keys: 0, .. } => return Err(WorkloadError::Partitions(0)),
            Workload::Random { .. } => {}
        }
        keys.validate()?;
        Ok(())
    }
}

/// A reproducible stream of `count` messages numbered from 0.
pub struct Generator {
    workload: Workload,
    sampler: KeySampler,
    key_rng: ChaCha8Rng,
    pad_rng: ChaCha8Rng,
    padding: Vec<u8>,
    next: u64,
    count: u64,
}

impl Generator {
    pub fn new(
        workload: Workload,
        keys: KeyDist,
        seed: u64,
        count: u64,
    ) -> Result<Self, WorkloadError> {
        workload.validate(keys)?;
        let sampler = keys.sampler(workload.partitions())?;
        let mut pad_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        // Padding comes from a pool twice the payload size; each message starts at a random
        // offset, so payloads differ without drawing a kilobyte of randomness per message.
        let mut padding = vec![0; 2 * workload.payload_size()];
        pad_rng.fill_bytes(&mut padding);
        Ok(Self {
            workload,
            sampler,
            key_rng: ChaCha8Rng::seed_from_u64(seed),
            pad_rng,
            padding,
            next: 0,
            count,
        })
    }

    fn draw_key(&mut self, seq: u64) -> u32 {
        match &self.workload {
            Workload::Nonces { partitions, .. } => {
                let partition = self.sampler.sample(&mut self.key_rng);
                let per_partition = SELECTOR_RANGE / partitions;
                partition + partitions * self.key_rng.gen_range(0..per_partition)
            }
            Workload::Votes { letters } => {
                u32::from(letters[(seq % letters.len() as u64) as usize] - b'a')
            }
            Workload::Random { .. } => self.sampler.sample(&mut self.key_rng),
        }
    }

    fn padding(&mut self, len: usize) -> &[u8] {
        if len == 0 {
            return &[];
        }
        let start = self.pad_rng.gen_range(0..=self.padding.len() - len);
        &self.padding[start..start + len]
    }
}

impl Generator {
    /// Message number `seq`. Vote letters and counts follow from `seq` alone; keys and padding
    /// are the next draws of this generator's streams, so a sender thread that owns every T-th
    /// sequence number can keep its own generator.
    pub fn message(&mut self, seq: u64) -> Message {
        let (key, parts) = self.parts(seq);
        let mut payload = BytesMut::with_capacity(parts.len());
        payload.put_slice(parts.head());
        payload.put_slice(parts.tail);
        Message {
            seq,
            key,
            intended_ns: 0,
            payload: payload.freeze(),
        }
    }

    /// Message `seq`'s key and payload as borrowed parts, for writers that copy the payload into
    /// their own buffer anyway (the sender): no allocation per message.
    pub fn parts(&mut self, seq: u64) -> (u32, PayloadParts<'_>) {
        let key = self.draw_key(seq);
        let mut head = [0u8; payload::VOTE_LEN];
        let (head_len, tail_len) = match self.workload {
            Workload::Nonces { size, .. } => {
                head[..payload::SELECTOR_LEN].copy_from_slice(&key.to_be_bytes());
                (payload::SELECTOR_LEN, size - payload::SELECTOR_LEN)
            }
            Workload::Votes { .. } => {
                let vote = Vote {
                    letter: b'a' + key as u8,
                    count: u32::try_from(seq / u64::from(LETTERS) + 1).unwrap_or(u32::MAX),
                };
                head.copy_from_slice(&vote.encode());
                (payload::VOTE_LEN, 0)
            }
            Workload::Random { size, .. } => (0, size),
        };
        let tail = self.padding(tail_len);
        (
            key,
            PayloadParts {
                head,
                head_len,
                tail,
            },
        )
    }
}

/// A generated payload in two borrowed pieces: a short encoded head (selector, vote) and a tail
/// of padding or random bytes.
#[derive(Debug)]
pub struct PayloadParts<'a> {
    head: [u8; payload::VOTE_LEN],
    head_len: usize,
    pub tail: &'a [u8],
}

impl PayloadParts<'_> {
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    pub fn len(&self) -> usize {
        self.head_len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Iterator for Generator {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        if self.next >= self.count {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        Some(self.message(seq))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.next) as usize;
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use plumbline_core::payload::nonce_selector;

    #[test]
    fn default_votes_are_the_seed_file() {
        let votes: Vec<Vote> =
            Generator::new(Workload::votes(ALPHABET).unwrap(), KeyDist::Uniform, 0, 52)
                .unwrap()
                .map(|m| Vote::decode(&m.payload).unwrap())
                .collect();
        let expected: Vec<Vote> = (1..=2)
            .flat_map(|count| (b'a'..=b'z').map(move |letter| Vote { letter, count }))
            .collect();
        assert_eq!(votes, expected);
    }

    #[test]
    fn hot_letter_votes_all_land_on_one_key() {
        let keys: Vec<u32> = Generator::new(Workload::votes("a").unwrap(), KeyDist::Uniform, 0, 52)
            .unwrap()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, vec![0; 52]);
    }

    #[test]
    fn nonce_selectors_stay_in_range_and_carry_the_key() {
        let workload = Workload::Nonces {
            size: 1024,
            partitions: 60,
        };
        for message in Generator::new(workload, KeyDist::Zipf(1.1), 7, 2000).unwrap() {
            assert_eq!(message.payload.len(), 1024);
            let selector = nonce_selector(&message.payload).unwrap();
            assert!(selector < SELECTOR_RANGE);
            assert_eq!(selector, message.key);
        }
    }

    #[test]
    fn seeds_repeat() {
        let workload = Workload::Nonces {
            size: 64,
            partitions: 60,
        };
        let payloads = |seed| -> Vec<Bytes> {
            Generator::new(workload.clone(), KeyDist::Hot(0.5), seed, 5)
                .unwrap()
                .map(|m| m.payload)
                .collect()
        };
        assert_eq!(payloads(3), payloads(3));
        assert_ne!(payloads(3), payloads(4));
    }

    #[test]
    fn parts_and_messages_agree() {
        for workload in [
            Workload::Nonces {
                size: 64,
                partitions: 60,
            },
            Workload::votes(ALPHABET).unwrap(),
            Workload::Random { size: 33, keys: 4 },
        ] {
            let mut a = Generator::new(workload.clone(), KeyDist::Uniform, 5, 10).unwrap();
            let mut b = Generator::new(workload, KeyDist::Uniform, 5, 10).unwrap();
            for seq in 0..10 {
                let m = a.message(seq);
                let (key, parts) = b.parts(seq);
                assert_eq!(key, m.key);
                assert_eq!([parts.head(), parts.tail].concat(), m.payload.to_vec());
            }
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let small = Workload::Nonces {
            size: 3,
            partitions: 60,
        };
        assert!(Generator::new(small, KeyDist::Uniform, 0, 1).is_err());
        assert_eq!(
            Workload::votes("aB").unwrap_err(),
            WorkloadError::Letters("aB".into())
        );
        assert_eq!(
            Workload::votes(ALPHABET)
                .unwrap()
                .validate(KeyDist::Hot(0.9)),
            Err(WorkloadError::KeysOnVotes(KeyDist::Hot(0.9)))
        );
        let zero = Workload::Nonces {
            size: 1024,
            partitions: 0,
        };
        assert_eq!(
            zero.validate(KeyDist::Uniform),
            Err(WorkloadError::Partitions(0))
        );
    }
}
