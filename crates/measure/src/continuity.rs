//! The state-continuity checker: every key's results must advance by exactly one version per
//! item, with no reset, gap or repeat, even while the key's partition moves between workers.
//!
//! A stateful result carries its key and the key's version after the item (its item count: the
//! `count` app's `p=>count`, or a vote total when every vote counts one). Results of one key
//! may arrive out of order while its partition changes hands (the old and the new owner write
//! on different connections), so a version above the next one expected is held as pending, not
//! called a gap, until the run ends. A repeat of a version already seen is a duplicate when it
//! comes with the same sequence number (the transport delivered it twice: counted elsewhere),
//! and a **state** error otherwise: the item was applied twice, or the state was reset and
//! counted again. Each violation names the key and the two results around it (the key's last
//! result before it, and it), as Wallaroo's issue 3117 would have needed. Memory per key is its
//! out-of-order window, which the partition's in-flight items bound. Where results come from is
//! the receiver's business; this type is pure.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

/// One stateful result as the checker sees it: key, version, sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub key: u32,
    /// The key's version after this item: its item count.
    pub version: u64,
    /// The item's sequence number (tells a redelivery from a double apply).
    pub seq: u64,
}

/// What went wrong with one key's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// A version seen before, from another item: applied twice, or counted again after a reset.
    Repeat,
    /// Back to a version far below the key's: the state was lost and started over.
    Reset,
    /// Versions never seen by the end: items whose effect on the state is missing.
    Gap { missing: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub key: u32,
    /// The key's result that arrived just before (none for its first).
    pub before: Option<Versioned>,
    /// The result that broke continuity (for a gap: the first version missing, as `version`,
    /// with the key's highest result as `before`).
    pub at: Versioned,
}

impl Violation {
    /// The violation in words, the key called `name` (a receiver knows keys by their labels).
    pub fn describe(&self, name: &str) -> String {
        let show = |r: &Versioned| format!("v{} (seq {})", r.version, r.seq);
        let before = self.before.as_ref().map_or("nothing".into(), show);
        match self.kind {
            ViolationKind::Repeat => format!(
                "key {name}: version {} seen twice, from two items: {} after {before}",
                self.at.version,
                show(&self.at)
            ),
            ViolationKind::Reset => {
                format!("key {name}: state reset: {} after {before}", show(&self.at))
            }
            ViolationKind::Gap { missing } => format!(
                "key {name}: {missing} version(s) never seen, from v{} (the highest seen: {before})",
                self.at.version
            ),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(&self.key.to_string()))
    }
}

/// What a continuity check found, for reports: counts, and the first violations in words.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContinuityReport {
    /// Stateful results checked.
    pub checked: u64,
    pub keys: u64,
    /// The same item's result again (a redelivery, counted as a duplicate elsewhere).
    pub redelivered: u64,
    /// Repeats, resets and gaps, all of them.
    pub violations: u64,
    /// The first [`EXAMPLES`] of them, each naming its key and the two results around it.
    pub examples: Vec<String>,
}

/// Violations a report spells out; the rest are counted.
pub const EXAMPLES: usize = 20;

/// One key's progress.
#[derive(Clone, Debug, Default)]
struct Key {
    /// Every version below this has been seen.
    next: u64,
    /// Versions seen above `next`, waiting for the ones between.
    pending: BTreeSet<u64>,
    /// Sequence number of each version seen, for the out-of-order window and its edge.
    seqs: HashMap<u64, u64>,
    last: Option<Versioned>,
}

/// Checks every key's results as they arrive; [`Continuity::finish`] adds the gaps.
#[derive(Clone, Debug, Default)]
pub struct Continuity {
    keys: HashMap<u32, Key>,
    violations: Vec<Violation>,
    /// Same version, same sequence number: a redelivery (not a state error).
    redelivered: u64,
    checked: u64,
}

/// Versions a key may keep per key for telling redeliveries from double applies; older ones
/// are forgotten (a repeat that far back is still a repeat, just without the seq comparison).
const REMEMBERED: usize = 4096;

impl Continuity {
    pub fn new() -> Self {
        Self::default()
    }

    /// One result, in arrival order. Versions start at 1.
    pub fn observe(&mut self, result: Versioned) {
        self.checked += 1;
        let key = self.keys.entry(result.key).or_insert_with(|| Key {
            next: 1,
            ..Key::default()
        });
        let before = key.last.replace(result);
        let v = result.version;
        let seen = v < key.next || key.pending.contains(&v);
        if seen {
            match key.seqs.get(&v) {
                Some(&seq) if seq == result.seq => self.redelivered += 1,
                _ => {
                    // Far below the key's progress, and at the start of a count: it began again.
                    let kind = if v <= 1 && key.next > 2 {
                        ViolationKind::Reset
                    } else {
                        ViolationKind::Repeat
                    };
                    self.violations.push(Violation {
                        kind,
                        key: result.key,
                        before,
                        at: result,
                    });
                }
            }
            return;
        }
        key.seqs.insert(v, result.seq);
        if key.seqs.len() > REMEMBERED {
            let oldest = key.next.saturating_sub(REMEMBERED as u64);
            key.seqs.retain(|&version, _| version >= oldest);
        }
        if v == key.next {
            key.next += 1;
            while key.pending.remove(&key.next) {
                key.next += 1;
            }
        } else {
            key.pending.insert(v);
        }
    }

    /// Results checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Results that were the same item delivered again.
    pub fn redelivered(&self) -> u64 {
        self.redelivered
    }

    /// Keys seen so far.
    pub fn keys(&self) -> u64 {
        self.keys.len() as u64
    }

    /// [`Continuity::finish`] as a report, each key named by `name`.
    pub fn report(self, name: impl Fn(u32) -> String) -> ContinuityReport {
        let (checked, keys, redelivered) = (self.checked, self.keys(), self.redelivered);
        let violations = self.finish(&HashMap::new());
        ContinuityReport {
            checked,
            keys,
            redelivered,
            violations: violations.len() as u64,
            examples: violations
                .iter()
                .take(EXAMPLES)
                .map(|v| v.describe(&name(v.key)))
                .collect(),
        }
    }

    /// The violations so far, and those only the end shows: for each key, the versions below
    /// its highest never seen, and, where `expected` gives a key's item count, the ones above.
    pub fn finish(mut self, expected: &HashMap<u32, u64>) -> Vec<Violation> {
        let mut keys: Vec<u32> = self.keys.keys().chain(expected.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            let state = self.keys.remove(&k).unwrap_or(Key {
                next: 1,
                ..Key::default()
            });
            let highest = state.pending.last().copied().unwrap_or(state.next - 1);
            let top = expected.get(&k).copied().unwrap_or(0).max(highest);
            let seen = state.next - 1 + state.pending.len() as u64;
            let missing = top - seen;
            if missing > 0 {
                let high = state.pending.last().map(|&v| Versioned {
                    key: k,
                    version: v,
                    seq: state.seqs.get(&v).copied().unwrap_or(0),
                });
                self.violations.push(Violation {
                    kind: ViolationKind::Gap { missing },
                    key: k,
                    before: high.or(state.last),
                    at: Versioned {
                        key: k,
                        version: state.next,
                        seq: 0,
                    },
                });
            }
        }
        self.violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(key: u32, version: u64, seq: u64) -> Versioned {
        Versioned { key, version, seq }
    }

    fn check(results: &[Versioned], expected: &[(u32, u64)]) -> (Vec<Violation>, u64) {
        let mut c = Continuity::new();
        results.iter().for_each(|&x| c.observe(x));
        let redelivered = c.redelivered();
        (c.finish(&expected.iter().copied().collect()), redelivered)
    }

    #[test]
    fn keys_that_advance_one_step_per_item_are_clean_even_out_of_order() {
        let results = [
            r(1, 1, 10),
            r(2, 1, 11),
            r(1, 3, 13),
            r(1, 2, 12),
            r(2, 2, 14),
        ];
        assert_eq!(check(&results, &[(1, 3), (2, 2)]), (vec![], 0));
    }

    #[test]
    fn the_same_item_twice_is_a_redelivery_not_a_state_error() {
        let (violations, redelivered) = check(&[r(1, 1, 5), r(1, 1, 5), r(1, 2, 6)], &[]);
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(redelivered, 1);
    }

    #[test]
    fn an_item_applied_twice_is_a_repeat_named_with_the_results_around_it() {
        let (violations, _) = check(&[r(7, 1, 1), r(7, 2, 2), r(7, 2, 3), r(7, 3, 4)], &[]);
        assert_eq!(
            violations,
            [Violation {
                kind: ViolationKind::Repeat,
                key: 7,
                before: Some(r(7, 2, 2)),
                at: r(7, 2, 3),
            }]
        );
        assert!(violations[0]
            .to_string()
            .contains("key 7: version 2 seen twice"));
    }

    /// Wallaroo's issue 3117: per-key counts dropping to 0 (then 1) during a grow.
    #[test]
    fn state_lost_in_a_move_is_a_reset() {
        let results = [r(3, 1, 1), r(3, 2, 2), r(3, 3, 3), r(3, 1, 4), r(3, 2, 5)];
        let (violations, _) = check(&results, &[]);
        assert_eq!(violations[0].kind, ViolationKind::Reset);
        assert_eq!(violations[0].before, Some(r(3, 3, 3)));
        assert_eq!(violations[0].at, r(3, 1, 4));
        assert!(violations[0]
            .to_string()
            .contains("state reset: v1 (seq 4) after v3 (seq 3)"));
    }

    #[test]
    fn a_jump_or_a_missing_tail_is_a_gap_at_the_end() {
        let (violations, _) = check(&[r(1, 1, 1), r(1, 3, 3)], &[(1, 3), (2, 2)]);
        let gaps: Vec<(u32, ViolationKind, u64)> = violations
            .iter()
            .map(|v| (v.key, v.kind, v.at.version))
            .collect();
        assert_eq!(
            gaps,
            [
                (1, ViolationKind::Gap { missing: 1 }, 2),
                (2, ViolationKind::Gap { missing: 2 }, 1),
            ],
            "key 1 lacks v2; key 2 never had a result"
        );
    }

    proptest! {
        /// A clean history of several keys, shuffled within a small window as a handover
        /// would, with some results delivered twice, is clean; dropping one result or applying
        /// one twice is caught by key.
        #[test]
        fn clean_histories_pass_and_a_planted_fault_is_caught(
            counts in prop::collection::vec(1u64..30, 1..5),
            swaps in prop::collection::vec(0usize..200, 0..20),
            twice in prop::collection::vec(0usize..200, 0..5),
            fault in 0usize..200,
            drop_it in any::<bool>(),
        ) {
            let mut results: Vec<Versioned> = Vec::new();
            let mut seq = 0;
            for (key, &n) in counts.iter().enumerate() {
                for v in 1..=n {
                    seq += 1;
                    results.push(r(key as u32, v, seq));
                }
            }
            for s in swaps {
                let i = s % results.len();
                if i + 1 < results.len() {
                    results.swap(i, i + 1);
                }
            }
            for t in twice {
                let again = results[t % results.len()];
                results.push(again);
            }
            let expected: Vec<(u32, u64)> =
                counts.iter().enumerate().map(|(k, &n)| (k as u32, n)).collect();
            let (clean, _) = check(&results, &expected);
            prop_assert!(clean.is_empty(), "{clean:?}");
            let victim = results[fault % results.len()];
            if drop_it {
                results.retain(|x| *x != victim);
            } else {
                results.push(Versioned { seq: 10_000, ..victim });
            }
            let (caught, _) = check(&results, &expected);
            prop_assert!(caught.iter().any(|v| v.key == victim.key), "{caught:?}");
        }
    }
}
