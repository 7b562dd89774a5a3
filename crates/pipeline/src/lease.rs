//! `Leases`: the distributor's record of every task in flight, for at-least-once delivery.
//!
//! A task sent to a worker is leased to it until the collector's ACK retires it. A lease whose
//! worker disconnects, or whose deadline passes, is taken back (the distributor also drops a
//! worker that has not been heard from since such a lease was granted: wedged). A task taken
//! back goes out again unless it has already been delivered `max_deliver` times, in which case
//! it is failed; a dead worker's unfinished tasks go out again alone ([`crate::quarantine`]),
//! and only one that ended a worker while alone is failed. An ACK for a task no longer leased
//! (retired earlier, its first delivery finishing late) is a duplicate: counted by the caller,
//! never hidden. Memory is one entry per task in flight, which the workers' credits bound. This
//! type decides nothing about where tasks go: that is the distributor's loop.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Which connected worker holds a lease.
pub type WorkerId = u64;

/// One task in flight.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Index of the task type in the distributor's registry.
    pub task_type: usize,
    /// Deliveries so far, this one included.
    pub attempt: u32,
    pub worker: WorkerId,
    /// When it was sent: a worker works its tasks in the order they came.
    pub granted: Instant,
    pub deadline: Instant,
    /// The descriptor, kept to redeliver it.
    pub data: Value,
}

/// What becomes of a lease taken back from a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Reclaimed {
    /// Send it again; `attempt` is the delivery number it will have. `alone`: an unfinished
    /// task of a worker that died, which may have ended it, to go out to a worker holding
    /// nothing else ([`crate::quarantine`]).
    Redeliver {
        id: u64,
        task_type: usize,
        attempt: u32,
        data: Value,
        alone: bool,
    },
    /// Delivered `attempts` times without an ACK: give up on it.
    Failed {
        id: u64,
        task_type: usize,
        attempts: u32,
    },
}

impl Reclaimed {
    pub fn id(&self) -> u64 {
        match self {
            Reclaimed::Redeliver { id, .. } | Reclaimed::Failed { id, .. } => *id,
        }
    }
}

/// Every task in flight (the "AckTracker").
#[derive(Debug)]
pub struct Leases {
    live: HashMap<u64, Lease>,
    term: Duration,
    max_deliver: u32,
}

impl Leases {
    /// `term`: how long a worker has from dispatch to ACK. `max_deliver` ≥ 1.
    pub fn new(term: Duration, max_deliver: u32) -> Self {
        Self {
            live: HashMap::new(),
            term,
            max_deliver: max_deliver.max(1),
        }
    }

    /// Records that task `id` was just sent to `worker` for the `attempt`-th time.
    pub fn grant(
        &mut self,
        id: u64,
        task_type: usize,
        attempt: u32,
        worker: WorkerId,
        data: Value,
        now: Instant,
    ) {
        let deadline = now + self.term;
        self.live.insert(
            id,
            Lease {
                task_type,
                attempt,
                worker,
                granted: now,
                deadline,
                data,
            },
        );
    }

    /// The collector ACKed task `id`: its lease, or `None` if it was not leased (a duplicate).
    pub fn ack(&mut self, id: u64) -> Option<Lease> {
        self.live.remove(&id)
    }

    /// Takes back every lease `worker` holds (it disconnected). A worker takes its tasks in
    /// the order they came, so of its leases, oldest first, `done` are finished (their
    /// results are out, the ACKs not yet in): they are innocent of whatever ended it and go
    /// out again as they were. One of the rest was running, and each goes out again alone, so that a worker it ends next time held nothing else. Only a
    /// task that was alone is failed after `max_deliver` deliveries: beside others, which one
    /// ended the worker cannot be told (a result may still sit in its outbox), and charging
    /// them all would fail innocent tasks prefetched beside a poison one.
    pub fn reclaim_worker(&mut self, worker: WorkerId, done: u64) -> Vec<Reclaimed> {
        let mut held: Vec<(Instant, u64)> = self
            .live
            .iter()
            .filter(|(_, lease)| lease.worker == worker)
            .map(|(&id, lease)| (lease.granted, id))
            .collect();
        held.sort_unstable();
        let done = usize::try_from(done).unwrap_or(usize::MAX).min(held.len());
        let alone = held.len() - done == 1;
        let mut back: Vec<Reclaimed> = held
            .iter()
            .enumerate()
            .filter_map(|(at, &(_, id))| {
                let lease = self.live.remove(&id)?;
                let (task_type, attempt, data) = (lease.task_type, lease.attempt, lease.data);
                let finished = at < done;
                Some(if !finished && alone && attempt >= self.max_deliver {
                    Reclaimed::Failed {
                        id,
                        task_type,
                        attempts: attempt,
                    }
                } else {
                    Reclaimed::Redeliver {
                        id,
                        task_type,
                        attempt: attempt + u32::from(!finished),
                        data,
                        alone: !finished,
                    }
                })
            })
            .collect();
        back.sort_by_key(Reclaimed::id);
        back
    }

    /// Leases `worker` holds.
    pub fn held_by(&self, worker: WorkerId) -> usize {
        self.live.values().filter(|l| l.worker == worker).count()
    }

    /// The workers holding a lease whose deadline has passed, each with its oldest such task
    /// and when that was granted: the distributor decides whether the worker is wedged.
    pub fn expired_holders(&self, now: Instant) -> Vec<(WorkerId, u64, Instant)> {
        let mut holders: Vec<(WorkerId, u64, Instant)> = self
            .live
            .iter()
            .filter(|(_, lease)| lease.deadline <= now)
            .map(|(id, lease)| (lease.worker, *id, lease.deadline - self.term))
            .collect();
        holders.sort_unstable();
        holders.dedup_by_key(|(worker, ..)| *worker);
        holders
    }

    /// Takes back `worker`'s leases whose deadline has passed (it lives, but those results
    /// never came: lost on the way to a collector that died, say).
    pub fn reclaim_expired(&mut self, worker: WorkerId, now: Instant) -> Vec<Reclaimed> {
        self.reclaim(|_, lease| lease.worker == worker && lease.deadline <= now)
    }

    /// Takes back the leases `take` picks, each charged a delivery.
    fn reclaim(&mut self, mut take: impl FnMut(u64, &Lease) -> bool) -> Vec<Reclaimed> {
        let ids: Vec<u64> = self
            .live
            .iter()
            .filter(|(&id, lease)| take(id, lease))
            .map(|(id, _)| *id)
            .collect();
        let mut out: Vec<Reclaimed> = ids
            .into_iter()
            .filter_map(|id| self.live.remove(&id).map(|lease| (id, lease)))
            .map(|(id, lease)| {
                if lease.attempt >= self.max_deliver {
                    Reclaimed::Failed {
                        id,
                        task_type: lease.task_type,
                        attempts: lease.attempt,
                    }
                } else {
                    Reclaimed::Redeliver {
                        id,
                        task_type: lease.task_type,
                        attempt: lease.attempt + 1,
                        data: lease.data,
                        alone: false,
                    }
                }
            })
            .collect();
        // Oldest task first, so redelivery keeps the original order.
        out.sort_by_key(Reclaimed::id);
        out
    }

    /// Restarts every lease's term from `now`: the collector was away, so no worker could have
    /// had its results ACKed, and nobody is to blame for the time.
    pub fn renew_all(&mut self, now: Instant) {
        for lease in self.live.values_mut() {
            lease.deadline = now + self.term;
        }
    }

    /// The earliest deadline, for the loop's next wake-up.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.live.values().map(|l| l.deadline).min()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn leases() -> (Leases, Instant) {
        (Leases::new(Duration::from_secs(5), 3), Instant::now())
    }

    #[test]
    fn an_ack_retires_a_lease_once_and_the_second_is_a_duplicate() {
        let (mut l, now) = leases();
        l.grant(7, 0, 1, 1, json!({}), now);
        assert!(!l.is_empty());
        assert!(l.ack(7).is_some());
        assert!(l.ack(7).is_none());
        assert!(l.is_empty());
    }

    #[test]
    fn a_dead_workers_unfinished_leases_go_out_again_alone_in_task_order() {
        let (mut l, now) = leases();
        l.grant(2, 0, 1, 9, json!(2), now);
        l.grant(1, 0, 1, 9, json!(1), now);
        l.grant(3, 0, 1, 8, json!(3), now);
        assert_eq!(l.held_by(9), 2);
        let back = l.reclaim_worker(9, 0);
        assert_eq!(
            back,
            [
                Reclaimed::Redeliver {
                    id: 1,
                    task_type: 0,
                    attempt: 2,
                    data: json!(1),
                    alone: true,
                },
                Reclaimed::Redeliver {
                    id: 2,
                    task_type: 0,
                    attempt: 2,
                    data: json!(2),
                    alone: true,
                },
            ]
        );
        assert_eq!(l.held_by(9), 0);
        assert!(!l.is_empty());
        assert!(l.reclaim_worker(9, 0).is_empty());
    }

    /// Flapping connections charged every task a worker held, finished ones included, pushing
    /// innocent tasks to the failed list.
    #[test]
    fn the_finished_tasks_of_a_dead_worker_go_out_again_uncharged() {
        let (mut l, now) = leases();
        let at = |ms| now + Duration::from_millis(ms);
        for (id, ms) in [(4, 0), (5, 1), (6, 2), (7, 3)] {
            l.grant(id, 0, 3, 9, json!(id), at(ms));
        }
        let again = |id: u64| Reclaimed::Redeliver {
            id,
            task_type: 0,
            attempt: 3,
            data: json!(id),
            alone: false,
        };
        let suspect = |id: u64| Reclaimed::Redeliver {
            id,
            task_type: 0,
            attempt: 4,
            data: json!(id),
            alone: true,
        };
        assert_eq!(
            l.reclaim_worker(9, 2),
            [again(4), again(5), suspect(6), suspect(7)],
            "4 and 5 were done (their ACKs on the way); 6 or 7 was running: neither fails \
             at its third delivery, each runs alone"
        );
    }

    #[test]
    fn the_one_unfinished_lease_of_a_dead_worker_runs_alone_again() {
        let (mut l, now) = leases();
        l.grant(4, 0, 1, 9, json!(4), now);
        l.grant(5, 0, 1, 9, json!(5), now + Duration::from_millis(1));
        assert_eq!(
            l.reclaim_worker(9, 1),
            [
                Reclaimed::Redeliver {
                    id: 4,
                    task_type: 0,
                    attempt: 1,
                    data: json!(4),
                    alone: false,
                },
                Reclaimed::Redeliver {
                    id: 5,
                    task_type: 0,
                    attempt: 2,
                    data: json!(5),
                    alone: true,
                },
            ],
            "4 was done; 5 was running"
        );
    }

    #[test]
    fn the_third_lost_delivery_fails_the_task() {
        let (mut l, now) = leases();
        l.grant(1, 0, 3, 4, json!({}), now);
        assert_eq!(
            l.reclaim_worker(4, 0),
            [Reclaimed::Failed {
                id: 1,
                task_type: 0,
                attempts: 3
            }]
        );
    }

    #[test]
    fn only_holders_of_expired_leases_are_named() {
        let (mut l, now) = leases();
        l.grant(1, 0, 1, 4, json!({}), now);
        l.grant(3, 0, 1, 4, json!({}), now);
        l.grant(2, 0, 1, 5, json!({}), now + Duration::from_secs(3));
        assert_eq!(l.next_deadline(), Some(now + Duration::from_secs(5)));
        assert!(l.expired_holders(now + Duration::from_secs(4)).is_empty());
        assert_eq!(
            l.expired_holders(now + Duration::from_secs(6)),
            [(4, 1, now)]
        );
        let later = now + Duration::from_secs(9);
        assert_eq!(
            l.expired_holders(later),
            [(4, 1, now), (5, 2, now + Duration::from_secs(3))]
        );
        let back = l.reclaim_expired(4, later);
        assert_eq!(back.len(), 2);
        assert!(matches!(
            back[0],
            Reclaimed::Redeliver {
                id: 1,
                attempt: 2,
                ..
            }
        ));
        assert_eq!(
            l.expired_holders(later),
            [(5, 2, now + Duration::from_secs(3))]
        );
    }
}
