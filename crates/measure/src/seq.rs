//! `SeqTracker`: which sequence numbers arrived, in bounded memory.
//!
//! Every message of plumbline's framing carries `(source, seq)`; a sink feeds them here and learns
//! how many were lost, duplicated or reordered. Each source keeps a sliding bitmap of
//! [`WINDOW`] sequence numbers (128 KiB): a gap that slides out of the window is final and counted
//! lost; a number arriving below the window is counted `too_late` (a duplicate or a very late
//! arrival of one already counted lost: without unbounded memory the two cannot be told apart).
//! At most [`MAX_SOURCES`] sources are tracked; messages of further sources are counted, not
//! tracked. It neither decodes nor times anything.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Sequence numbers tracked exactly per source.
pub const WINDOW: u64 = 1 << 20;
/// Sources tracked at once.
pub const MAX_SOURCES: usize = 64;

const WORD: u64 = 64;

#[derive(Clone, Debug, Default)]
struct Window {
    /// Every sequence number below `base` is settled.
    base: u64,
    /// Bit i of word w: `base + w * 64 + i` arrived.
    words: VecDeque<u64>,
    highest: Option<u64>,
    received: u64,
    duplicates: u64,
    reordered: u64,
    too_late: u64,
    lost_settled: u64,
}

impl Window {
    /// Whether `seq` is new (not a duplicate, not below the window).
    fn record(&mut self, seq: u64) -> bool {
        self.received += 1;
        if seq < self.base {
            self.too_late += 1;
            return false;
        }
        if seq - self.base >= WINDOW {
            self.slide_to(seq - (WINDOW - 1));
        }
        let offset = seq - self.base;
        let word = (offset / WORD) as usize;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << (offset % WORD);
        if self.words[word] & bit != 0 {
            self.duplicates += 1;
            return false;
        }
        self.words[word] |= bit;
        match self.highest {
            Some(h) if seq < h => self.reordered += 1,
            _ => self.highest = Some(seq),
        }
        true
    }

    /// Moves `base` up to at least `new_base` (rounded down to a word), settling what leaves.
    fn slide_to(&mut self, new_base: u64) {
        let new_base = new_base - new_base % WORD;
        if new_base <= self.base {
            return;
        }
        let words = ((new_base - self.base) / WORD) as usize;
        if words >= self.words.len() {
            // A jump past the whole window (a far-ahead or hostile sequence number): settle
            // what the window holds and skip the gap in one step.
            let present: u64 = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
            self.lost_settled += (new_base - self.base) - present;
            self.words.clear();
        } else {
            for word in self.words.drain(..words) {
                self.lost_settled += u64::from(word.count_zeros());
            }
        }
        self.base = new_base;
    }

    /// Missing numbers in `base..end`.
    fn missing_below(&self, end: u64) -> u64 {
        let span = end.saturating_sub(self.base);
        let full = (span / WORD) as usize;
        let mut present: u64 = self
            .words
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        if !span.is_multiple_of(WORD) {
            let word = self.words.get(full).copied().unwrap_or(0);
            present += u64::from((word & ((1u64 << (span % WORD)) - 1)).count_ones());
        }
        span - present
    }

    /// The first `limit` runs of missing numbers in `base..end`, as inclusive ranges.
    fn missing_runs(&self, end: u64, limit: usize, out: &mut Vec<(u64, u64)>) {
        let mut run: Option<(u64, u64)> = None;
        // Past the window's words nothing arrived: one run to `end`, found without walking it.
        let tracked_end = end.min(self.base.saturating_add(self.words.len() as u64 * WORD));
        for seq in self.base..tracked_end {
            let offset = seq - self.base;
            let word = self.words[(offset / WORD) as usize];
            if word == u64::MAX && offset.is_multiple_of(WORD) && run.is_none() {
                continue;
            }
            let present = word & (1 << (offset % WORD)) != 0;
            match (present, &mut run) {
                (false, Some((_, last))) => *last = seq,
                (false, None) => run = Some((seq, seq)),
                (true, Some(done)) => {
                    out.push(*done);
                    run = None;
                    if out.len() >= limit {
                        return;
                    }
                }
                (true, None) => {}
            }
        }
        if tracked_end < end && out.len() < limit {
            match &mut run {
                Some((_, last)) => *last = end - 1,
                None => run = Some((tracked_end, end - 1)),
            }
        }
        out.extend(run);
    }
}

/// Missing runs listed in a summary; the count is always complete.
pub const MISSING_RUNS: usize = 10;

/// Loss, duplicate and order accounting for many sources.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    sources: HashMap<u32, Window>,
    untracked: u64,
}

/// What a [`SeqTracker`] concluded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqSummary {
    pub sources: usize,
    pub received: u64,
    /// Numbers never received: gaps below the highest seen, plus any short of `expected`.
    pub lost: u64,
    pub duplicates: u64,
    /// Arrived after a higher number from the same source.
    pub reordered: u64,
    /// Arrived below the tracking window: a duplicate, or a loss that arrived very late.
    pub too_late: u64,
    /// Messages from sources beyond the tracked count.
    pub untracked: u64,
    /// The first missing sequence numbers, as ranges (`"17"`, `"20-31"`), at most
    /// [`MISSING_RUNS`]; numbers settled out of the window are counted in `lost` only.
    pub missing: Vec<String>,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one arrival; `true` if it is the first of `(source, seq)`, so a sink can count
    /// messages once however often they are delivered. A number below the window (too late to
    /// tell) is not new; one of an untracked source is, as nothing says otherwise.
    pub fn record(&mut self, source: u32, seq: u64) -> bool {
        // One hash lookup for the common case, a known source.
        if let Some(window) = self.sources.get_mut(&source) {
            window.record(seq)
        } else if self.sources.len() < MAX_SOURCES {
            self.sources.entry(source).or_default().record(seq)
        } else {
            self.untracked += 1;
            true
        }
    }

    /// Sums it up. With `expected` (messages each source sent, numbered from 0) losses at the
    /// end of a stream count too; without, only gaps below each source's highest number.
    pub fn summary(&self, expected: Option<u64>) -> SeqSummary {
        let mut s = SeqSummary {
            sources: self.sources.len(),
            untracked: self.untracked,
            ..SeqSummary::default()
        };
        for w in self.sources.values() {
            let end = match (expected, w.highest) {
                (Some(n), Some(h)) => n.max(h.saturating_add(1)),
                (Some(n), None) => n,
                (None, Some(h)) => h.saturating_add(1),
                (None, None) => 0,
            };
            s.received += w.received;
            s.lost += w.lost_settled + w.missing_below(end);
            let mut runs = Vec::new();
            w.missing_runs(end, MISSING_RUNS.saturating_sub(s.missing.len()), &mut runs);
            s.missing.extend(runs.into_iter().map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            }));
            s.duplicates += w.duplicates;
            s.reordered += w.reordered;
            s.too_late += w.too_late;
        }
        if self.sources.is_empty() {
            s.lost = expected.unwrap_or(0);
            if s.lost > 0 {
                s.missing.push(format!("0-{}", s.lost - 1));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_gaps_duplicates_and_reorders() {
        let mut t = SeqTracker::new();
        for seq in [0, 1, 3, 2, 2, 5] {
            t.record(7, seq);
        }
        let s = t.summary(None);
        assert_eq!(
            (s.received, s.lost, s.duplicates, s.reordered),
            (6, 1, 1, 1)
        );
        assert_eq!(t.summary(Some(10)).lost, 5, "4 plus 6..=9 never came");
        assert_eq!(t.summary(Some(10)).missing, vec!["4", "6-9"]);
    }

    #[test]
    fn each_message_is_new_once_however_often_it_comes() {
        let mut t = SeqTracker::new();
        let arrivals = [(1, 0), (1, 1), (1, 0), (2, 0), (1, 1), (2, 0), (1, 2)];
        let new: Vec<bool> = arrivals.iter().map(|&(s, q)| t.record(s, q)).collect();
        assert_eq!(new, [true, true, false, true, false, false, true]);
        let s = t.summary(Some(3));
        assert_eq!((s.received, s.duplicates), (7, 3));
        assert_eq!(s.lost, 2, "source 2 sent 3 and only its 0 came");
        let mut t = SeqTracker::new();
        t.record(0, 3 * WINDOW);
        assert!(
            !t.record(0, 1),
            "below the window: too late to count as new"
        );
    }

    #[test]
    fn sources_are_separate() {
        let mut t = SeqTracker::new();
        t.record(1, 0);
        t.record(2, 0);
        t.record(2, 1);
        let s = t.summary(Some(2));
        assert_eq!((s.sources, s.lost, s.duplicates), (2, 1, 0));
    }

    #[test]
    fn memory_stays_bounded_over_long_streams() {
        let mut t = SeqTracker::new();
        let n = 3 * WINDOW + 17;
        for seq in (0..n).filter(|s| s % 1000 != 0) {
            t.record(0, seq);
        }
        assert!(t.sources[&0].words.len() as u64 <= WINDOW / WORD + 1);
        let s = t.summary(Some(n));
        assert_eq!(s.lost, n.div_ceil(1000));
        t.record(0, 5);
        assert_eq!(t.summary(Some(n)).too_late, 1);
    }

    #[test]
    fn a_far_jump_settles_at_once_instead_of_walking_the_gap() {
        let mut t = SeqTracker::new();
        t.record(0, 0);
        t.record(0, 1 << 50);
        t.record(0, u64::MAX);
        let s = t.summary(None);
        assert_eq!(s.received, 3);
        assert!(s.lost > 1 << 49);
        let mut t = SeqTracker::new();
        t.record(0, 3);
        let s = t.summary(Some(2_000_000_000));
        assert_eq!(s.missing, vec!["0-2", "4-1999999999"]);
    }

    #[test]
    fn too_many_sources_are_counted_not_tracked() {
        let mut t = SeqTracker::new();
        for source in 0..(MAX_SOURCES as u32 + 3) {
            t.record(source, 0);
        }
        assert_eq!(t.summary(None).untracked, 3);
    }

    #[test]
    fn nothing_received_is_all_lost() {
        assert_eq!(SeqTracker::new().summary(Some(5)).lost, 5);
    }

    proptest! {
        #[test]
        fn matches_a_set_model(seqs in prop::collection::vec(0u64..300, 0..400)) {
            let mut t = SeqTracker::new();
            let mut seen = std::collections::HashSet::new();
            let mut dups = 0;
            for &s in &seqs {
                let new = t.record(0, s);
                let first = seen.insert(s);
                prop_assert_eq!(new, first);
                if !first { dups += 1; }
            }
            let summary = t.summary(Some(300));
            prop_assert_eq!(summary.duplicates, dups);
            prop_assert_eq!(summary.lost, 300 - seen.len() as u64);
        }
    }
}
