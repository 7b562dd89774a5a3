//! One sender's share of a schedule that several senders emit together (`send --split I/N`,
//! issue 17): N senders on N hosts, started at one instant (`--start-at`), send exactly the
//! messages one sender would, each its own, so a receiver's loss and duplicate counts stay
//! exact across them.
//!
//! Sender `I` of `N` owns the global messages `n ≡ I−1 (mod N)`; inside it, its `T` threads
//! deal those out in turn. Thread `t` of sender `I` is thread `(I−1) + N·t` of a schedule of
//! `N·T` threads, which [`Shape::schedule`](crate::Shape::schedule) already interleaves, so
//! the split needs no agreement on `T` between hosts. This module holds that arithmetic only;
//! starting at an instant and reporting are the sender's and the caller's.

use std::fmt;
use std::str::FromStr;

/// Sender `index` (0-based) of `of` senders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    index: u64,
    of: u64,
}

impl Share {
    /// The one sender of an unsplit schedule.
    pub const WHOLE: Share = Share { index: 0, of: 1 };

    /// Sender `index` (0-based) of `of`; `None` unless `index < of`.
    pub fn new(index: u64, of: u64) -> Option<Share> {
        (index < of).then_some(Share { index, of })
    }

    pub fn of(&self) -> u64 {
        self.of
    }

    /// Thread `thread` of this sender's `threads` as a thread of the whole schedule, and how
    /// many threads the whole schedule has.
    pub fn thread(&self, thread: u64, threads: u64) -> (u64, u64) {
        (self.index + self.of * thread, self.of * threads)
    }

    /// This sender's part of a rate (messages per second) of the whole schedule.
    pub fn rate(&self, rate: f64) -> f64 {
        rate / self.of as f64
    }

    /// How many of the whole schedule's first `messages` messages are this sender's.
    pub fn count(&self, messages: u64) -> u64 {
        messages.saturating_sub(self.index).div_ceil(self.of)
    }
}

impl fmt::Display for Share {
    /// As `--split` takes it: 1-based, `I/N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.of)
    }
}

impl FromStr for Share {
    type Err = String;

    /// `I/N`, 1-based: `1/2` and `2/2` are the two halves.
    fn from_str(text: &str) -> Result<Share, String> {
        let bad = || format!("'{text}': give I/N, this sender's number I of N senders (1 ≤ I ≤ N)");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n): (u64, u64) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if !(1..=1_000_000).contains(&n) {
            return Err(format!("'{text}': N must be 1 to 1000000"));
        }
        i.checked_sub(1)
            .and_then(|i| Share::new(i, n))
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;
    use proptest::prelude::*;

    #[test]
    fn split_is_written_one_based_and_refused_out_of_range() {
        assert_eq!("1/2".parse::<Share>(), Ok(Share { index: 0, of: 2 }));
        assert_eq!("2/2".parse::<Share>().unwrap().to_string(), "2/2");
        for bad in ["0/2", "3/2", "2", "a/b", "1/0", "-1/2"] {
            assert!(bad.parse::<Share>().is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn the_count_of_a_share_is_its_messages_among_the_first_n() {
        let halves = [Share::new(0, 2).unwrap(), Share::new(1, 2).unwrap()];
        assert_eq!(halves.map(|s| s.count(5)), [3, 2]);
        assert_eq!(Share::new(2, 3).unwrap().count(2), 0);
        assert_eq!(Share::WHOLE.count(7), 7);
    }

    proptest! {
        /// Every sender's threads together with every other sender's send each message of
        /// the whole schedule exactly once, at the whole schedule's time for it, whatever
        /// thread count each sender picked.
        #[test]
        fn the_shares_together_are_the_whole_schedule(
            senders in 1u64..5,
            threads in proptest::collection::vec(1u64..4, 4),
            rate in 1.0f64..5000.0,
        ) {
            let shape = Shape::at(Some(rate));
            let messages = 200u64;
            let mut whole = shape.schedule(0, 1);
            let want: Vec<_> = (0..messages).map(|n| whole.offset(n).unwrap()).collect();
            let mut got = vec![None; messages as usize];
            for i in 0..senders {
                let share = Share::new(i, senders).unwrap();
                let t_count = threads[i as usize];
                let mut sent = 0;
                for t in 0..t_count {
                    let (g, all) = share.thread(t, t_count);
                    let mut schedule = shape.schedule(g, all);
                    for k in 0.. {
                        let n = g + k * all;
                        if n >= messages { break; }
                        prop_assert!(got[n as usize].is_none(), "message {} sent twice", n);
                        got[n as usize] = schedule.offset(k);
                        sent += 1;
                    }
                }
                prop_assert_eq!(sent, share.count(messages));
            }
            for (n, at) in got.iter().enumerate() {
                let at = at.expect("every message is some sender's");
                let gap = at.abs_diff(want[n]);
                prop_assert!(gap.as_nanos() <= 1, "message {} at {:?}, not {:?}", n, at, want[n]);
            }
        }
    }
}
