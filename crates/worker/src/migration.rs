//! Partition migration as a pure state machine: a partition's state moves from its old owner
//! to its new one with no item lost, doubled or applied out of order.
//!
//! ```text
//!  Resize ──▶ per moving partition p:  route(p) = Hold ──Handover(p) to old owner──▶
//!      old owner applies every item routed before the marker, sends StateOut(p, state) ──▶
//!      Install(p, state) to new owner, Release(p): held items follow, route(p) = new owner
//!  all moved ──▶ Retire(leavers), Settled(moved, longest pause)
//! ```
//!
//! Order is what makes it exact, and the links give it: a `Handover` goes in-band on the old
//! owner's data link after every item already routed there, and an `Install` in-band on the new
//! owner's before any item of the partition, so the new owner starts from the state the old
//! one reached. Items that arrive meanwhile are held by the router (a bounded buffer: the source
//! waits, nothing is dropped). A resize asked for during a migration waits for it to settle,
//! the latest one winning, and its assignment is computed when it starts, from the
//! assignment reached then: a member that left meanwhile is never given partitions back. A
//! member that dies holding a moving partition's state loses it: reported as lost, never
//! papered over. This type decides; the initializer's router and links act on its
//! [`Action`]s. No sockets, no clock (`now` is given).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::membership::{Assignment, MemberId};

/// Where the router sends an item of a partition now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    To(MemberId),
    /// The partition is moving: hold the item until [`Action::Release`].
    Hold,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// These members should own the partitions (a worker joined, or one is leaving): the
    /// assignment moves to [`Assignment::rebalanced`] over them.
    Resize(Vec<MemberId>),
    /// The old owner applied everything before its handover marker and sent the state.
    StateOut {
        partition: u32,
        from: MemberId,
        state: Vec<u8>,
    },
    /// A member died (its link closed without a goodbye).
    Gone(MemberId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// In-band on `from`'s data link: finish `partition` and send its state back.
    Handover { partition: u32, from: MemberId },
    /// In-band on `to`'s data link, before any item of `partition`: start from this state.
    Install {
        partition: u32,
        to: MemberId,
        state: Vec<u8>,
    },
    /// The items held for `partition` go to `to` now, in order; routing resumes.
    Release { partition: u32, to: MemberId },
    /// `member` owns nothing any more: tell it to finish and leave.
    Retire(MemberId),
    /// The state of `partition` died with `member`: its new owner starts empty (a loss the
    /// report must show).
    StateLost { partition: u32, member: MemberId },
    /// Every member is gone: no one is left to own the partitions.
    NoneLeft,
    /// A state arrived for a partition not moving from its sender: a protocol error.
    Unexpected { partition: u32 },
    /// The rebalance is complete.
    Settled(Settled),
}

/// What one membership change cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The members owning partitions once it settled (a resize waiting behind it not yet).
    pub owners: Vec<MemberId>,
    pub moved: u32,
    /// The longest time one partition was held (handover → state back).
    pub longest_pause: Duration,
    /// From the rebalance to the last state back.
    pub took: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Moving {
    from: MemberId,
    to: MemberId,
    since: Instant,
}

/// The initializer's view of who owns what, and what is on its way.
#[derive(Debug)]
pub struct Migrator {
    current: Assignment,
    moving: BTreeMap<u32, Moving>,
    /// The members the current rebalance retires once nothing moves from them.
    leaving: BTreeSet<MemberId>,
    started: Option<Instant>,
    longest: Duration,
    moved: u32,
    /// The membership asked for while a migration was under way (the latest ask).
    waiting: Option<Vec<MemberId>>,
    gone: BTreeSet<MemberId>,
}

impl Migrator {
    pub fn new(assignment: Assignment) -> Self {
        Self {
            current: assignment,
            moving: BTreeMap::new(),
            leaving: BTreeSet::new(),
            started: None,
            longest: Duration::ZERO,
            moved: 0,
            waiting: None,
            gone: BTreeSet::new(),
        }
    }

    pub fn route(&self, partition: u32) -> Route {
        match self.moving.contains_key(&partition) {
            true => Route::Hold,
            false => Route::To(self.current.owner(partition)),
        }
    }

    /// Whether a rebalance is under way.
    pub fn migrating(&self) -> bool {
        self.started.is_some()
    }

    pub fn assignment(&self) -> &Assignment {
        &self.current
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Resize(members) => {
                if self.migrating() {
                    self.waiting = Some(members);
                    return Vec::new();
                }
                self.start(&members, now)
            }
            Event::StateOut {
                partition,
                from,
                state,
            } => {
                if self.moving.get(&partition).map(|m| m.from) != Some(from) {
                    return vec![Action::Unexpected { partition }];
                }
                let moving = self.moving.remove(&partition).expect("checked above");
                self.longest = self
                    .longest
                    .max(now.saturating_duration_since(moving.since));
                let mut actions = vec![
                    Action::Install {
                        partition,
                        to: moving.to,
                        state,
                    },
                    Action::Release {
                        partition,
                        to: moving.to,
                    },
                ];
                actions.extend(self.settle_if_done(now));
                actions
            }
            Event::Gone(member) => self.lose(member, now),
        }
    }

    /// `member` died: the states it held are lost (its partitions start empty on their new
    /// owners), moves to it go elsewhere, and the rest rebalance over those left.
    fn lose(&mut self, member: MemberId, now: Instant) -> Vec<Action> {
        self.gone.insert(member);
        self.leaving.remove(&member);
        let Some(next) = self.over_alive(self.current.counts().into_keys()) else {
            return vec![Action::NoneLeft];
        };
        let mut actions = Vec::new();
        let mut changed = 0;
        for partition in 0..next.partitions() {
            let (was, will) = (self.current.owner(partition), next.owner(partition));
            let restart = match self.moving.get_mut(&partition) {
                Some(moving) if moving.from == member => true,
                // Its state is still on its way from the old owner: it goes to the new one.
                Some(moving) => {
                    moving.to = will;
                    false
                }
                None if was == member => true,
                None if was != will => {
                    self.moving.insert(
                        partition,
                        Moving {
                            from: was,
                            to: will,
                            since: now,
                        },
                    );
                    actions.push(Action::Handover {
                        partition,
                        from: was,
                    });
                    changed += 1;
                    false
                }
                None => false,
            };
            if restart {
                self.moving.remove(&partition);
                actions.extend([
                    Action::StateLost { partition, member },
                    Action::Install {
                        partition,
                        to: will,
                        state: Vec::new(),
                    },
                    Action::Release {
                        partition,
                        to: will,
                    },
                ]);
                changed += 1;
            }
        }
        if changed > 0 && self.started.is_none() {
            self.started = Some(now);
            self.longest = Duration::ZERO;
            self.moved = 0;
        }
        self.moved += changed;
        self.current = next;
        actions.extend(self.settle_if_done(now));
        actions
    }

    /// The current assignment rebalanced over those of `members` not gone; `None`: no one
    /// is left.
    fn over_alive(&self, members: impl IntoIterator<Item = MemberId>) -> Option<Assignment> {
        let alive: Vec<MemberId> = members
            .into_iter()
            .filter(|m| !self.gone.contains(m))
            .collect();
        self.current.rebalanced(&alive).ok()
    }

    fn start(&mut self, members: &[MemberId], now: Instant) -> Vec<Action> {
        let Some(next) = self.over_alive(members.iter().copied()) else {
            return vec![Action::NoneLeft];
        };
        let moves = self.current.moves_to(&next);
        let before: BTreeSet<MemberId> = self.current.counts().into_keys().collect();
        let after: BTreeSet<MemberId> = next.counts().into_keys().collect();
        self.leaving = before.difference(&after).copied().collect();
        self.started = Some(now);
        self.longest = Duration::ZERO;
        self.moved = moves.len() as u32;
        let mut actions = Vec::new();
        for m in moves {
            self.moving.insert(
                m.partition,
                Moving {
                    from: m.from,
                    to: m.to,
                    since: now,
                },
            );
            actions.push(Action::Handover {
                partition: m.partition,
                from: m.from,
            });
        }
        self.current = next;
        actions.extend(self.settle_if_done(now));
        actions
    }

    fn settle_if_done(&mut self, now: Instant) -> Vec<Action> {
        let Some(started) = self.started else {
            return Vec::new();
        };
        if !self.moving.is_empty() {
            return Vec::new();
        }
        let mut actions: Vec<Action> = std::mem::take(&mut self.leaving)
            .into_iter()
            .filter(|m| !self.gone.contains(m))
            .map(Action::Retire)
            .collect();
        actions.push(Action::Settled(Settled {
            owners: self.current.counts().into_keys().collect(),
            moved: self.moved,
            longest_pause: self.longest,
            took: now.saturating_duration_since(started),
        }));
        self.started = None;
        if let Some(members) = self.waiting.take() {
            actions.extend(self.start(&members, now));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(at: Instant, n: u64) -> Instant {
        at + Duration::from_millis(n)
    }

    fn settled(actions: &[Action]) -> Option<Settled> {
        actions.iter().find_map(|a| match a {
            Action::Settled(s) => Some(s.clone()),
            _ => None,
        })
    }

    #[test]
    fn growing_one_to_two_holds_each_moving_partition_until_its_state_is_installed() {
        let t = Instant::now();
        let one = Assignment::round_robin(4, &[0]).unwrap();
        let two = one.rebalanced(&[0, 1]).unwrap();
        let mut m = Migrator::new(one);
        let handovers = m.handle(Event::Resize(vec![0, 1]), t);
        let moving: Vec<u32> = handovers
            .iter()
            .map(|a| match a {
                Action::Handover { partition, from: 0 } => *partition,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(moving.len(), 2);
        for p in 0..4 {
            let expected = match moving.contains(&p) {
                true => Route::Hold,
                false => Route::To(0),
            };
            assert_eq!(m.route(p), expected, "partition {p}");
        }
        let first = m.handle(
            Event::StateOut {
                partition: moving[0],
                from: 0,
                state: b"3".to_vec(),
            },
            ms(t, 4),
        );
        assert_eq!(
            first,
            [
                Action::Install {
                    partition: moving[0],
                    to: 1,
                    state: b"3".to_vec()
                },
                Action::Release {
                    partition: moving[0],
                    to: 1
                }
            ],
            "the state goes in before the held items, and nothing settles yet"
        );
        assert_eq!(m.route(moving[0]), Route::To(1));
        assert_eq!(m.route(moving[1]), Route::Hold);
        let last = m.handle(
            Event::StateOut {
                partition: moving[1],
                from: 0,
                state: Vec::new(),
            },
            ms(t, 9),
        );
        assert_eq!(
            settled(&last),
            Some(Settled {
                owners: vec![0, 1],
                moved: 2,
                longest_pause: Duration::from_millis(9),
                took: Duration::from_millis(9)
            })
        );
        assert!(!m.migrating());
        assert_eq!(m.assignment(), &two);
    }

    #[test]
    fn a_leaver_hands_over_everything_then_is_retired() {
        let t = Instant::now();
        let two = Assignment::round_robin(2, &[0, 1]).unwrap();
        let mut m = Migrator::new(two);
        assert_eq!(
            m.handle(Event::Resize(vec![0]), t),
            [Action::Handover {
                partition: 1,
                from: 1
            }]
        );
        let done = m.handle(
            Event::StateOut {
                partition: 1,
                from: 1,
                state: b"x".to_vec(),
            },
            ms(t, 2),
        );
        assert!(done.contains(&Action::Retire(1)), "{done:?}");
        assert_eq!(settled(&done).unwrap().moved, 1);
    }

    #[test]
    fn a_member_killed_mid_handover_loses_its_state_and_says_so() {
        let t = Instant::now();
        let two = Assignment::round_robin(4, &[0, 1]).unwrap();
        let mut m = Migrator::new(two);
        assert_eq!(m.handle(Event::Resize(vec![0]), t).len(), 2);
        let after = m.handle(Event::Gone(1), ms(t, 5));
        let lost: Vec<u32> = after
            .iter()
            .filter_map(|a| match a {
                Action::StateLost {
                    partition,
                    member: 1,
                } => Some(*partition),
                _ => None,
            })
            .collect();
        assert_eq!(lost, [1, 3]);
        assert!(!after.contains(&Action::Retire(1)), "it is gone already");
        assert!(settled(&after).is_some());
        assert_eq!(m.route(3), Route::To(0));
    }

    #[test]
    fn a_member_killed_outside_a_migration_loses_its_partitions_to_the_others() {
        let t = Instant::now();
        let mut m = Migrator::new(Assignment::round_robin(6, &[0, 1, 2]).unwrap());
        let after = m.handle(Event::Gone(2), t);
        let lost: Vec<u32> = after
            .iter()
            .filter_map(|a| match a {
                Action::StateLost { partition, .. } => Some(*partition),
                _ => None,
            })
            .collect();
        assert_eq!(lost, [2, 5]);
        assert_eq!(settled(&after).unwrap().moved, 2);
        assert!(![m.route(2), m.route(5)].contains(&Route::To(2)));
        assert!(!m.migrating());
        assert_eq!(
            m.handle(Event::Gone(0), t).len(),
            3 * 3 + 1,
            "0 held 3 of the 6: each lost, installed empty, released; then settled"
        );
        assert_eq!(m.handle(Event::Gone(1), t), [Action::NoneLeft]);
    }

    #[test]
    fn a_move_whose_target_dies_goes_to_another_member_with_its_state() {
        let t = Instant::now();
        let one = Assignment::round_robin(4, &[0, 1]).unwrap();
        let mut m = Migrator::new(one);
        let handovers = m.handle(Event::Resize(vec![0, 1, 2]), t);
        let Some(Action::Handover { partition, from }) = handovers.first().cloned() else {
            panic!("{handovers:?}");
        };
        let after = m.handle(Event::Gone(2), ms(t, 1));
        assert!(
            !after.iter().any(|a| matches!(a, Action::StateLost { .. })),
            "the state is still with {from}: {after:?}"
        );
        let landed = m.handle(
            Event::StateOut {
                partition,
                from,
                state: b"7".to_vec(),
            },
            ms(t, 2),
        );
        let Some(Action::Install { to, state, .. }) = landed.first().cloned() else {
            panic!("{landed:?}");
        };
        assert_ne!(to, 2);
        assert_eq!(state, b"7");
        assert!(settled(&landed).is_some());
    }

    #[test]
    fn a_rebalance_during_another_waits_for_it() {
        let t = Instant::now();
        let one = Assignment::round_robin(4, &[0]).unwrap();
        let mut m = Migrator::new(one);
        let first = m.handle(Event::Resize(vec![0, 1]), t);
        assert!(m.handle(Event::Resize(vec![0, 1, 2]), ms(t, 1)).is_empty());
        let mut next = Vec::new();
        for a in first {
            let Action::Handover { partition, from } = a else {
                continue;
            };
            next = m.handle(
                Event::StateOut {
                    partition,
                    from,
                    state: Vec::new(),
                },
                ms(t, 3),
            );
        }
        assert!(settled(&next).is_some());
        assert!(
            next.iter().any(|a| matches!(a, Action::Handover { .. })),
            "the waiting rebalance starts at once: {next:?}"
        );
        assert!(m.migrating());
    }

    #[test]
    fn a_state_nobody_asked_for_or_from_the_wrong_member_is_a_protocol_error() {
        let t = Instant::now();
        let one = Assignment::round_robin(2, &[0]).unwrap();
        let mut m = Migrator::new(one);
        let stray = |partition, from| Event::StateOut {
            partition,
            from,
            state: Vec::new(),
        };
        assert_eq!(
            m.handle(stray(1, 0), t),
            [Action::Unexpected { partition: 1 }]
        );
        m.handle(Event::Resize(vec![0, 1]), t);
        assert_eq!(
            m.handle(stray(1, 1), t),
            [Action::Unexpected { partition: 1 }],
            "partition 1 moves from 0, not from 1"
        );
        assert_eq!(m.route(1), Route::Hold, "still waiting for 0");
    }

    #[test]
    fn a_rebalance_that_moves_nothing_settles_at_once() {
        let one = Assignment::round_robin(3, &[0]).unwrap();
        let mut m = Migrator::new(one);
        let actions = m.handle(Event::Resize(vec![0]), Instant::now());
        assert_eq!(settled(&actions).unwrap().moved, 0);
        assert!(!m.migrating());
    }

    /// Hands every moving partition's state over, returning the actions of the last.
    fn hand_all_over(m: &mut Migrator, handovers: &[Action], at: Instant) -> Vec<Action> {
        let mut last = Vec::new();
        for a in handovers {
            if let Action::Handover { partition, from } = *a {
                last.extend(m.handle(
                    Event::StateOut {
                        partition,
                        from,
                        state: Vec::new(),
                    },
                    at,
                ));
            }
        }
        last
    }

    #[test]
    fn a_shrink_asked_while_another_leaver_hands_over_never_gives_the_first_partitions_back() {
        let t = Instant::now();
        let four = Assignment::round_robin(8, &[0, 1, 2, 3]).unwrap();
        let mut m = Migrator::new(four);
        let first = m.handle(Event::Resize(vec![0, 1, 2]), t);
        assert!(
            m.handle(Event::Resize(vec![0, 1]), ms(t, 1)).is_empty(),
            "3 is still handing over: 2's leave waits"
        );
        let settled_first = hand_all_over(&mut m, &first, ms(t, 2));
        assert!(settled_first.contains(&Action::Retire(3)));
        assert!(
            !settled_first.iter().any(|a| matches!(
                a,
                Action::Install { to: 3, .. } | Action::Release { to: 3, .. }
            )),
            "{settled_first:?}"
        );
        let second = hand_all_over(&mut m, &settled_first, ms(t, 3));
        assert!(second.contains(&Action::Retire(2)), "{second:?}");
        assert_eq!(
            m.assignment().counts().into_keys().collect::<Vec<_>>(),
            [0, 1]
        );
        assert!(!m.migrating());
    }

    #[test]
    fn the_latest_resize_asked_during_a_migration_is_the_one_applied() {
        let t = Instant::now();
        let mut m = Migrator::new(Assignment::round_robin(6, &[0]).unwrap());
        let first = m.handle(Event::Resize(vec![0, 1]), t);
        m.handle(Event::Resize(vec![0, 1, 2]), t);
        m.handle(Event::Resize(vec![0, 1, 2, 3]), t);
        let next = hand_all_over(&mut m, &first, ms(t, 1));
        assert_eq!(
            settled(&next).unwrap().owners,
            [0, 1],
            "the first settled on two, though the next already started"
        );
        hand_all_over(&mut m, &next, ms(t, 2));
        assert_eq!(
            m.assignment().counts().len(),
            4,
            "one move to four, not two moves"
        );
    }
}
