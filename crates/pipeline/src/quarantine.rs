//! `Quarantine`: tasks a worker's crash left under suspicion, run one at a time on a worker
//! that holds nothing else, so the next crash names its culprit for certain.
//!
//! A worker that dies holding several unfinished tasks ran one (or one per thread) of them,
//! and which cannot be told: charging them all sends innocent tasks prefetched beside a poison
//! task to the failed list; charging none lets the poison task kill every worker. So none is
//! charged, and each goes out again alone: a *ward* (a worker of the task's type) gets no new
//! task until it holds none, then gets one suspect, and nothing else until that suspect's lease
//! is settled. A ward that dies then held one task, which [`crate::lease::Leases`] charges.
//! Only crashes pay this price; the normal path never waits. This type is pure bookkeeping for
//! one task type: the distributor's loop asks it where suspects go, and does the sending.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use crate::lease::WorkerId;

/// A task waiting to run alone: its id, its delivery number, its descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    pub id: u64,
    pub attempt: u32,
    pub data: Value,
}

/// What a ward is doing for the quarantine.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ward {
    /// Gets no new task until it holds none.
    Draining,
    /// Runs this suspect, and nothing else.
    Holding(u64),
}

/// A worker as the quarantine sees it, each round.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub worker: WorkerId,
    /// Leases it holds, ACK not yet in.
    pub held: usize,
    /// Connected and with a credit to spare.
    pub can_take: bool,
}

/// The suspects of one task type and the wards running them.
#[derive(Debug, Default)]
pub struct Quarantine {
    suspects: VecDeque<Suspect>,
    wards: HashMap<WorkerId, Ward>,
    /// Suspects sent out alone so far.
    isolated: u64,
}

impl Quarantine {
    /// A task to run alone, oldest first.
    pub fn admit(&mut self, suspect: Suspect) {
        let at = self.suspects.partition_point(|s| s.id < suspect.id);
        self.suspects.insert(at, suspect);
    }

    /// No suspect waits (wards may still be running one: their leases are the distributor's).
    pub fn is_empty(&self) -> bool {
        self.suspects.is_empty()
    }

    /// Takes a waiting suspect out (its result arrived after all); whether it was waiting.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.suspects.len();
        self.suspects.retain(|s| s.id != id);
        self.suspects.len() != before
    }

    /// Whether `worker` is a ward: it gets no task but what [`Quarantine::plan`] gives it.
    pub fn is_ward(&self, worker: WorkerId) -> bool {
        self.wards.contains_key(&worker)
    }

    /// The task `id` is settled (ACKed, or taken back): its ward is free for the next suspect,
    /// or back to normal work when none waits.
    pub fn settled(&mut self, id: u64) {
        let Some(worker) = self
            .wards
            .iter()
            .find(|(_, ward)| **ward == Ward::Holding(id))
            .map(|(&w, _)| w)
        else {
            return;
        };
        if self.suspects.is_empty() {
            self.wards.remove(&worker);
        } else {
            self.wards.insert(worker, Ward::Draining);
        }
    }

    /// `worker` left: it is no ward any more (its leases are reclaimed by the caller).
    pub fn gone(&mut self, worker: WorkerId) {
        self.wards.remove(&worker);
    }

    /// Suspects sent out alone so far.
    pub fn isolated(&self) -> u64 {
        self.isolated
    }

    /// This round's moves, given the connected workers of this type: recruits wards (the
    /// emptiest workers, keeping one for normal work where there are two or more, one ward
    /// per waiting suspect), releases wards nothing waits for, and returns which suspect goes
    /// to which emptied ward now.
    pub fn plan(&mut self, workers: &[Candidate]) -> Vec<(WorkerId, Suspect)> {
        let draining = |wards: &HashMap<WorkerId, Ward>| {
            wards.values().filter(|w| **w == Ward::Draining).count()
        };
        // Wards nothing waits for go back to normal work.
        while draining(&self.wards) > self.suspects.len() {
            let Some(idle) = self
                .wards
                .iter()
                .find(|(_, w)| **w == Ward::Draining)
                .map(|(&id, _)| id)
            else {
                break;
            };
            self.wards.remove(&idle);
        }
        let cap = workers.len().saturating_sub(1).max(1);
        while draining(&self.wards) < self.suspects.len() && self.wards.len() < cap {
            let Some(next) = workers
                .iter()
                .filter(|c| !self.wards.contains_key(&c.worker))
                .min_by_key(|c| (c.held, c.worker))
            else {
                break;
            };
            self.wards.insert(next.worker, Ward::Draining);
        }
        let mut moves = Vec::new();
        for c in workers {
            if self.wards.get(&c.worker) != Some(&Ward::Draining) || c.held > 0 || !c.can_take {
                continue;
            }
            let Some(suspect) = self.suspects.pop_front() else {
                break;
            };
            self.wards.insert(c.worker, Ward::Holding(suspect.id));
            self.isolated += 1;
            moves.push((c.worker, suspect));
        }
        moves
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn suspect(id: u64) -> Suspect {
        Suspect {
            id,
            attempt: 1,
            data: json!(id),
        }
    }

    fn worker(worker: WorkerId, held: usize) -> Candidate {
        Candidate {
            worker,
            held,
            can_take: true,
        }
    }

    #[test]
    fn with_nothing_suspected_no_worker_is_held_back() {
        let mut q = Quarantine::default();
        assert!(q.plan(&[worker(1, 3), worker(2, 0)]).is_empty());
        assert!(!q.is_ward(1) && !q.is_ward(2));
    }

    #[test]
    fn a_suspect_waits_for_the_emptiest_worker_to_drain_then_runs_alone() {
        let mut q = Quarantine::default();
        q.admit(suspect(7));
        assert!(
            q.plan(&[worker(1, 3), worker(2, 1)]).is_empty(),
            "2 holds one"
        );
        assert!(q.is_ward(2) && !q.is_ward(1), "the emptier worker drains");
        let moves = q.plan(&[worker(1, 3), worker(2, 0)]);
        assert_eq!(moves, [(2, suspect(7))]);
        assert!(q.is_ward(2), "nothing else goes to it while 7 runs");
        assert!(q.plan(&[worker(1, 3), worker(2, 1)]).is_empty());
        q.settled(7);
        assert!(!q.is_ward(2), "back to normal work");
        assert_eq!(q.isolated(), 1);
    }

    #[test]
    fn one_worker_keeps_normal_work_while_others_run_suspects() {
        let mut q = Quarantine::default();
        for id in [3, 1, 2] {
            q.admit(suspect(id));
        }
        let all = [worker(1, 0), worker(2, 0), worker(3, 0)];
        let moves = q.plan(&all);
        assert_eq!(moves, [(1, suspect(1)), (2, suspect(2))], "oldest first");
        assert!(!q.is_ward(3));
        q.settled(1);
        assert!(q.is_ward(1), "3 still waits: 1 stays a ward");
        assert_eq!(q.plan(&all), [(1, suspect(3))]);
    }

    #[test]
    fn a_lone_worker_runs_the_suspects_one_by_one() {
        let mut q = Quarantine::default();
        q.admit(suspect(1));
        q.admit(suspect(2));
        assert_eq!(q.plan(&[worker(5, 0)]), [(5, suspect(1))]);
        assert!(q.plan(&[worker(5, 1)]).is_empty());
        q.settled(1);
        assert_eq!(q.plan(&[worker(5, 0)]), [(5, suspect(2))]);
        q.settled(2);
        assert!(!q.is_ward(5) && q.is_empty());
    }

    #[test]
    fn a_ward_without_credit_or_gone_gets_nothing() {
        let mut q = Quarantine::default();
        q.admit(suspect(1));
        let busy = Candidate {
            can_take: false,
            ..worker(4, 0)
        };
        assert!(q.plan(&[busy]).is_empty());
        q.gone(4);
        assert!(!q.is_ward(4));
        assert_eq!(q.plan(&[worker(6, 0)]), [(6, suspect(1))]);
    }

    #[test]
    fn a_suspect_whose_result_arrives_late_is_not_run_again() {
        let mut q = Quarantine::default();
        q.admit(suspect(1));
        assert!(q.remove(1));
        assert!(!q.remove(1));
        assert!(q.is_empty());
        assert!(q.plan(&[worker(1, 0), worker(2, 0)]).is_empty());
        assert!(
            !q.is_ward(1) && !q.is_ward(2),
            "drafted for nothing: released"
        );
    }
}
