//! Who owns which partition while workers join and leave: a balanced assignment that, when the
//! membership changes, moves as few partitions as a balanced assignment can.
//!
//! Each member gets `P ÷ N` partitions, and `P mod N` of them one more; the extra ones go to the
//! members that hold the most already, and every member keeps what it holds up to its share, so
//! the partitions that move are exactly those of members that left plus each remaining member's
//! excess over its new share: the least any balanced assignment moves. With members `0..N` and
//! no history the assignment is the round robin of [`crate::partition::PartitionMap`]
//! (partition `p` → member `p mod N`). Moving the state of a partition is the migration's
//! work, not this module's: this is the pure map, with no sockets and no clock.

use std::collections::BTreeMap;

/// A member of the cluster, as the initializer names it (formation order).
pub type MemberId = u32;

/// The owner of each partition (index = partition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    owners: Vec<MemberId>,
}

/// A partition changing hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub partition: u32,
    pub from: MemberId,
    pub to: MemberId,
}

/// Why a membership cannot own the partitions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("a cluster needs at least one worker; shrinking would leave none")]
    Empty,
    #[error("worker {0} is listed twice")]
    Twice(MemberId),
    #[error("a cluster needs at least one partition")]
    NoPartitions,
}

impl Assignment {
    /// `partitions` round robin over `members` (in the order given).
    pub fn round_robin(partitions: u32, members: &[MemberId]) -> Result<Self, MembershipError> {
        check(members)?;
        if partitions == 0 {
            return Err(MembershipError::NoPartitions);
        }
        let owners = (0..partitions as usize)
            .map(|p| members[p % members.len()])
            .collect();
        Ok(Self { owners })
    }

    pub fn owner(&self, partition: u32) -> MemberId {
        self.owners[partition as usize]
    }

    pub fn partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    /// Partitions each member owns, by member.
    pub fn counts(&self) -> BTreeMap<MemberId, u32> {
        let mut counts = BTreeMap::new();
        for &owner in &self.owners {
            *counts.entry(owner).or_insert(0) += 1;
        }
        counts
    }

    /// The balanced assignment over `members` that keeps the most partitions where they are.
    pub fn rebalanced(&self, members: &[MemberId]) -> Result<Self, MembershipError> {
        check(members)?;
        let partitions = self.owners.len() as u32;
        let held = self.counts();
        let n = members.len() as u32;
        let (base, extra) = (partitions / n, (partitions % n) as usize);
        // The extra partitions go to those holding the most already (ties: lowest id).
        let mut by_held: Vec<MemberId> = members.to_vec();
        by_held.sort_by_key(|m| (std::cmp::Reverse(held.get(m).copied().unwrap_or(0)), *m));
        let mut room: BTreeMap<MemberId, u32> = by_held
            .iter()
            .enumerate()
            .map(|(rank, &m)| (m, base + u32::from(rank < extra)))
            .collect();
        let mut owners: Vec<Option<MemberId>> = self
            .owners
            .iter()
            .map(|owner| {
                let left = room.get_mut(owner)?;
                *left = left.checked_sub(1)?;
                Some(*owner)
            })
            .collect();
        let mut takers = members
            .iter()
            .flat_map(|m| std::iter::repeat_n(*m, room[m] as usize));
        for slot in owners.iter_mut().filter(|o| o.is_none()) {
            *slot = takers.next();
        }
        Ok(Self {
            owners: owners
                .into_iter()
                .map(|o| o.expect("the shares add up to the partitions"))
                .collect(),
        })
    }

    /// What changes hands from `self` to `next` (same partition count), by partition.
    pub fn moves_to(&self, next: &Assignment) -> Vec<Move> {
        self.owners
            .iter()
            .zip(&next.owners)
            .enumerate()
            .filter(|(_, (from, to))| from != to)
            .map(|(p, (&from, &to))| Move {
                partition: p as u32,
                from,
                to,
            })
            .collect()
    }
}

fn check(members: &[MemberId]) -> Result<(), MembershipError> {
    if members.is_empty() {
        return Err(MembershipError::Empty);
    }
    let mut seen = std::collections::BTreeSet::new();
    match members.iter().find(|m| !seen.insert(**m)) {
        Some(&twice) => Err(MembershipError::Twice(twice)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::PartitionMap;
    use proptest::prelude::*;

    #[test]
    fn with_no_history_it_is_the_clusters_round_robin() {
        let map = PartitionMap::round_robin(26, 4);
        let assignment = Assignment::round_robin(26, &[0, 1, 2, 3]).unwrap();
        for p in 0..26 {
            assert_eq!(assignment.owner(p) as usize, map.owner(p));
        }
    }

    #[test]
    fn growing_two_to_four_moves_only_what_the_newcomers_take() {
        let two = Assignment::round_robin(60, &[0, 1]).unwrap();
        let four = two.rebalanced(&[0, 1, 2, 3]).unwrap();
        assert!(
            four.counts().values().all(|&n| n == 15),
            "{:?}",
            four.counts()
        );
        let moves = two.moves_to(&four);
        assert_eq!(moves.len(), 30, "the newcomers' 15 each, nothing else");
        assert!(moves.iter().all(|m| m.to >= 2 && m.from < 2));
    }

    #[test]
    fn a_leaver_s_partitions_spread_over_the_rest_and_nothing_else_moves() {
        let four = Assignment::round_robin(60, &[0, 1, 2, 3]).unwrap();
        let three = four.rebalanced(&[0, 1, 3]).unwrap();
        let moves = four.moves_to(&three);
        assert_eq!(moves.len(), 15);
        assert!(moves.iter().all(|m| m.from == 2));
        assert!(three.counts().values().all(|&n| n == 20));
    }

    #[test]
    fn the_odd_partitions_stay_with_those_that_hold_them() {
        // 26 letters on 4: 7, 7, 6, 6. Shrinking to 3 (9, 9, 8) keeps the 7s with their owners.
        let four = Assignment::round_robin(26, &[0, 1, 2, 3]).unwrap();
        let three = four.rebalanced(&[0, 1, 2]).unwrap();
        assert_eq!(four.moves_to(&three).len(), 6, "only worker 3's");
        assert_eq!(three.counts(), BTreeMap::from([(0, 9), (1, 9), (2, 8)]));
    }

    #[test]
    fn no_worker_or_a_worker_twice_is_refused() {
        let one = Assignment::round_robin(4, &[0]).unwrap();
        assert_eq!(one.rebalanced(&[]), Err(MembershipError::Empty));
        assert_eq!(one.rebalanced(&[1, 1]), Err(MembershipError::Twice(1)));
        assert_eq!(
            Assignment::round_robin(0, &[0]),
            Err(MembershipError::NoPartitions)
        );
    }

    proptest! {
        /// Any sequence of memberships: always balanced, always owned by a member, and each
        /// change moves exactly the lower bound (leavers' partitions + excess over new shares).
        #[test]
        fn every_change_is_balanced_and_moves_the_least(
            partitions in 1u32..100,
            steps in prop::collection::vec(prop::collection::btree_set(0u32..10, 1..8), 1..8),
        ) {
            let mut current = Assignment::round_robin(partitions, &[0]).unwrap();
            for members in steps {
                let members: Vec<MemberId> = members.into_iter().collect();
                let next = current.rebalanced(&members).unwrap();
                let counts = next.counts();
                prop_assert!(counts.keys().all(|m| members.contains(m)));
                let (lo, hi) = (
                    members.iter().map(|m| counts.get(m).copied().unwrap_or(0)).min().unwrap(),
                    counts.values().copied().max().unwrap(),
                );
                prop_assert!(hi - lo <= 1, "{counts:?}");
                // Lower bound: shares chosen to keep the most; everything else must move.
                let held = current.counts();
                let n = members.len() as u32;
                let (base, extra) = (partitions / n, (partitions % n) as usize);
                let mut kept: Vec<u32> = members
                    .iter()
                    .map(|m| held.get(m).copied().unwrap_or(0))
                    .collect();
                kept.sort_unstable_by(|a, b| b.cmp(a));
                let most_kept: u32 = kept
                    .iter()
                    .enumerate()
                    .map(|(rank, &h)| h.min(base + u32::from(rank < extra)))
                    .sum();
                prop_assert_eq!(current.moves_to(&next).len() as u32, partitions - most_kept);
                current = next;
            }
        }
    }
}
