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
    /// The letter's vote total so far.
    Vote { letter: u8, total: u64 },
    /// A balanced task finished (stateless).
    Done,
}

impl Output {
    /// The state key this output reports on, if any.
    pub fn state(&self) -> Option<(u32, u64)> {
        match *self {
            Output::Count { partition, count } => Some((partition, count)),
            Output::Vote { letter, total } => Some((u32::from(letter), total)),
            Output::Done => None,
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Count { partition, count } => write!(f, "{partition}=>{count}"),
            Output::Vote { letter, total } => write!(f, "{}=>{total}", char::from(*letter)),
            Output::Done => f.write_str("ok"),
        }
    }
}

/// The state one worker holds for the partitions it owns.
#[derive(Debug, Default)]
pub struct PartitionState {
    values: HashMap<u32, u64>,
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
                let count = state.values.entry(partition).or_default();
                *count += 1;
                Ok(Output::Count {
                    partition,
                    count: *count,
                })
            }
            App::Votes => {
                let vote = Vote::decode(&message.payload)?;
                let total = state.values.entry(vote.letter_index()?).or_default();
                *total += u64::from(vote.count);
                Ok(Output::Vote {
                    letter: vote.letter,
                    total: *total,
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
    fn a_malformed_vote_is_an_error_not_a_panic() {
        let mut state = PartitionState::default();
        let err = App::Votes
            .apply(&mut state, 0, &message(Bytes::from_static(b"??")))
            .unwrap_err();
        assert_eq!(err, PayloadError::VoteLength { len: 2 });
    }
}
