//! The distributor's release schedule: when each task becomes available, for open-loop runs
//! (`DistributorConfig::release`, `plumbline pipeline distributor --rate`).
//!
//! Task k (from 0, all task types together, in id order) is released at the k-th offset of a
//! load [`Shape`]'s schedule from the run's start, and its latency counts from that intended
//! time, so a distributor that falls behind shows it as latency, not as a slower schedule.
//! Without a release schedule every task is available at the start (a batch, as fast as credits
//! allow). This is pure bookkeeping: it never looks at the clock (the caller says how long the
//! run has been going) and does not dispatch; the distributor's loop does.

use std::time::Duration;

use plumbline_load::{Schedule, Shape};

/// Which tasks are released so far and when each was due.
pub struct Release {
    schedule: Box<dyn Schedule>,
    /// Tasks the run has: nothing is released past them.
    total: u64,
    /// The due offset of every released task, by release order (task id − 1).
    due: Vec<Duration>,
    /// The offset of the next task to release; `None` once every task is released.
    next: Option<Duration>,
}

impl Release {
    /// `shape` must not end before `total` tasks are released (the distributor refuses a
    /// shape with a duration); a schedule that ends early releases nothing more.
    pub fn new(shape: &Shape, total: u64) -> Self {
        let mut schedule = shape.schedule(0, 1);
        let next = if total > 0 { schedule.offset(0) } else { None };
        Self {
            schedule,
            total,
            due: Vec::new(),
            next,
        }
    }

    /// Releases every task due by `elapsed` (since the run's start); returns how many were
    /// released now.
    pub fn advance(&mut self, elapsed: Duration) -> u64 {
        let before = self.due.len();
        while let Some(at) = self.next.filter(|&at| at <= elapsed) {
            self.due.push(at);
            let k = self.due.len() as u64;
            self.next = if k < self.total {
                self.schedule.offset(k)
            } else {
                None
            };
        }
        (self.due.len() - before) as u64
    }

    /// Tasks released so far.
    pub fn released(&self) -> u64 {
        self.due.len() as u64
    }

    /// When task `index` (its id − 1) was due, from the run's start; `None` if not released.
    pub fn due(&self, index: u64) -> Option<Duration> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.due.get(i))
            .copied()
    }

    /// How long after `elapsed` the next task is due (zero if already), `None` when all are out.
    pub fn next_in(&self, elapsed: Duration) -> Option<Duration> {
        self.next.map(|at| at.saturating_sub(elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn tasks_are_released_at_their_schedule_offsets_and_remember_when_they_were_due() {
        // 100/s: task k is due at k × 10 ms.
        let mut release = Release::new(&Shape::Constant { rate: 100.0 }, 5);
        assert_eq!(release.next_in(ms(0)), Some(ms(0)));
        assert_eq!(
            release.advance(ms(0)),
            1,
            "the first task is due at the start"
        );
        assert_eq!(release.next_in(ms(4)), Some(ms(6)));
        assert_eq!(
            release.advance(ms(9)),
            0,
            "the second is not due before 10 ms"
        );
        assert_eq!(
            release.advance(ms(25)),
            2,
            "10 ms and 20 ms are due by 25 ms"
        );
        assert_eq!(release.released(), 3);
        assert_eq!(release.due(2), Some(ms(20)));
        assert_eq!(release.due(3), None, "not released yet");
    }

    #[test]
    fn nothing_is_released_past_the_last_task() {
        let mut release = Release::new(&Shape::Constant { rate: 1000.0 }, 3);
        assert_eq!(release.advance(Duration::from_secs(10)), 3);
        assert_eq!(release.advance(Duration::from_secs(20)), 0);
        assert_eq!(release.next_in(Duration::from_secs(20)), None);
        let mut empty = Release::new(&Shape::Constant { rate: 1000.0 }, 0);
        assert_eq!(empty.advance(Duration::from_secs(1)), 0);
        assert_eq!(empty.next_in(Duration::ZERO), None);
    }

    #[test]
    fn a_late_caller_releases_everything_due_at_once_without_moving_the_deadlines() {
        let mut release = Release::new(&Shape::Constant { rate: 10.0 }, 100);
        // A loop that woke half a second late: five tasks due, each keeping its own time.
        assert_eq!(release.advance(ms(450)), 5);
        let due: Vec<Duration> = (0..5).map(|k| release.due(k).unwrap()).collect();
        assert_eq!(due, [ms(0), ms(100), ms(200), ms(300), ms(400)]);
        assert_eq!(release.next_in(ms(450)), Some(ms(50)));
    }
}
