//! Applications: what a stateful partitioned step does with an item.
//!
//! * `count` (seed 000, Sleepy Python): each partition counts its items; result `p=>count`.
//! * `votes` (seed 002, alphabet_partitioned): each letter keeps a running total; result
//!   `letter=>total`, as the seed's `z=>3`.
//!
//! State is a map held by the worker that owns the partitions; nothing here is shared. Routing
//! and timing are the cluster's.

use std::collections::HashMap;
use std::fmt;

use plumbline_core::payload::{nonce_selector, PayloadError, Vote};
use plumbline_core::Message;

/// A partitioned application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    Count,
    Votes,
}

/// One result emitted per item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The partition's item count so far.
    Count { partition: u32, count: u64 },
    /// The letter's vote total so far, after `items` votes for it.
    Vote { letter: u8, total: u64, items: u64 },
    /// A balanced task finished (stateless).
    Done,
}

impl Output {
    /// The state key this output reports on, if any.
    pub fn state(&self) -> Option<(u32, u64)> {
        match *self {
            Output::Count { partition, count } => Some((partition, count)),
            Output::Vote { letter, total, .. } => Some((u32::from(letter), total)),
            Output::Done => None,
        }
    }

    /// Items its key has seen, where the value alone does not say (a vote counts more than
    /// one): `worker --result-versions` writes it after the value (`z=>6@3`).
    pub fn version(&self) -> Option<u64> {
        match *self {
            Output::Vote { items, .. } => Some(items),
            _ => None,
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Count { partition, count } => write!(f, "{partition}=>{count}"),
            Output::Vote { letter, total, .. } => {
                write!(f, "{}=>{total}", char::from(*letter))
            }
            Output::Done => f.write_str("ok"),
        }
    }
}

/// The state one worker holds for the partitions it owns.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// By state key (a partition for counts, a letter for votes); a key's partition is
    /// `key % partitions`.
    values: HashMap<u32, Tally>,
}

/// One key's state: its value (a count, a vote total) and the items applied to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    value: u64,
    items: u64,
}

/// Bytes that are not a partition's state as [`PartitionState::take`] encodes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a partition's state is 20-byte (key, value, items) entries; got {len} bytes")]
pub struct StateError {
    pub len: usize,
}

/// One encoded entry: the key (u32 BE), its value and its items (u64 BE each).
const ENTRY: usize = 20;

impl PartitionState {
    /// Takes the state of `partition` out (every key of it), encoded to travel to its new
    /// owner; this worker holds none of it afterwards.
    pub fn take(&mut self, partition: u32, partitions: u32) -> Vec<u8> {
        let mut keys: Vec<u32> = self
            .values
            .keys()
            .copied()
            .filter(|k| k % partitions.max(1) == partition)
            .collect();
        keys.sort_unstable();
        let mut out = Vec::with_capacity(keys.len() * ENTRY);
        for key in keys {
            let tally = self.values.remove(&key).expect("listed above");
            out.extend_from_slice(&key.to_be_bytes());
            out.extend_from_slice(&tally.value.to_be_bytes());
            out.extend_from_slice(&tally.items.to_be_bytes());
        }
        out
    }

    /// Installs a state [`PartitionState::take`] encoded, with `adjust` added to each value
    /// and item count (0, except where a test plants a fault); returns the keys installed.
    pub fn install(&mut self, state: &[u8], adjust: i64) -> Result<usize, StateError> {
        if !state.len().is_multiple_of(ENTRY) {
            return Err(StateError { len: state.len() });
        }
        for entry in state.chunks_exact(ENTRY) {
            let key = u32::from_be_bytes(entry[..4].try_into().expect("4 bytes"));
            let word = |at: usize| {
                u64::from_be_bytes(entry[at..at + 8].try_into().expect("8 bytes"))
                    .saturating_add_signed(adjust)
            };
            self.values.insert(
                key,
                Tally {
                    value: word(4),
                    items: word(12),
                },
            );
        }
        Ok(state.len() / ENTRY)
    }
}

impl App {
    /// The routing key inside a payload of this application: a nonce's selector, a vote's
    /// letter index. This is how a worker fed raw seed bytes partitions them.
    pub fn key(&self, payload: &[u8]) -> Result<u32, PayloadError> {
        match self {
            App::Count => nonce_selector(payload),
            App::Votes => Vote::decode(payload)?.letter_index(),
        }
    }

    /// Applies one item routed to `partition` and returns its result.
    pub fn apply(
        &self,
        state: &mut PartitionState,
        partition: u32,
        message: &Message,
    ) -> Result<Output, PayloadError> {
        match self {
            App::Count => {
                let tally = state.values.entry(partition).or_default();
                tally.value += 1;
                tally.items += 1;
                Ok(Output::Count {
                    partition,
                    count: tally.value,
                })
            }
            App::Votes => {
                let vote = Vote::decode(&message.payload)?;
                let tally = state.values.entry(vote.letter_index()?).or_default();
                tally.value += u64::from(vote.count);
                tally.items += 1;
                Ok(Output::Vote {
                    letter: vote.letter,
                    total: tally.value,
                    items: tally.items,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(payload: Bytes) -> Message {
        Message {
            seq: 0,
            key: 0,
            intended_ns: 0,
            payload,
        }
    }

    #[test]
    fn votes_keep_running_totals_per_letter() {
        let mut state = PartitionState::default();
        let mut last = None;
        for (letter, count) in [(b'z', 1), (b'a', 1), (b'z', 2)] {
            let m = message(Vote { letter, count }.encode());
            last = Some(App::Votes.apply(&mut state, 25, &m).unwrap());
        }
        assert_eq!(last.unwrap().to_string(), "z=>3");
    }

    #[test]
    fn count_counts_per_partition() {
        let mut state = PartitionState::default();
        let m = message(Bytes::from_static(&[0; 8]));
        App::Count.apply(&mut state, 7, &m).unwrap();
        App::Count.apply(&mut state, 3, &m).unwrap();
        assert_eq!(
            App::Count.apply(&mut state, 7, &m).unwrap(),
            Output::Count {
                partition: 7,
                count: 2
            }
        );
    }

    #[test]
    fn a_partitions_state_moves_whole_and_leaves_nothing_behind() {
        let mut old = PartitionState::default();
        for letter in [b'a', b'c', b'a', b'z'] {
            let m = message(Vote { letter, count: 1 }.encode());
            App::Votes.apply(&mut old, 0, &m).unwrap();
        }
        // 13 partitions: a (0) and n (13) share partition 0; c is 2, z is 12.
        let state = old.take(0, 13);
        assert_eq!(state.len(), 20, "only a's entry");
        assert_eq!(old.take(0, 13), Vec::<u8>::new(), "nothing left behind");
        let mut new = PartitionState::default();
        assert_eq!(new.install(&state, 0), Ok(1));
        let m = message(
            Vote {
                letter: b'a',
                count: 2,
            }
            .encode(),
        );
        let next = App::Votes.apply(&mut new, 0, &m).unwrap();
        assert_eq!((next.to_string(), next.version()), ("a=>4".into(), Some(3)));
        assert_eq!(new.install(&state[..5], 0), Err(StateError { len: 5 }));
    }

    #[test]
    fn a_malformed_vote_is_an_error_not_a_panic() {
        let mut state = PartitionState::default();
        let err = App::Votes
            .apply(&mut state, 0, &message(Bytes::from_static(b"??")))
            .unwrap_err();
        assert_eq!(err, PayloadError::VoteLength { len: 2 });
    }
}
