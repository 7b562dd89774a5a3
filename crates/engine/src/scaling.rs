//! How a group's membership changes mid-run: on a fixed worker schedule, or by the
//! autoscaler reading the run's lag every sync period, as Kubernetes' HPA reads KEDA's Kafka
//! lag metric, or the members' busy fraction, as HPA reads CPU utilisation.
//! [`Scaler::tick`] is pure (the time and the figures are the caller's), so the watcher
//! ([`crate::members::Members::watch`]) asks it every tick and applies what it says;
//! [`Elastic`] is what an engine that resizes holds: the scaling, how members leave, and what
//! its last run did. It measures nothing itself.

use std::sync::Mutex;
use std::time::Duration;

use plumbline_scale::autoscale::{AutoscaleConfig, Autoscaler, Decision, Observation, Target};
use plumbline_scale::change::WorkerSchedule;

use crate::members::{Change, Leave};

/// What drives the membership.
#[derive(Clone, Debug)]
pub enum Scaling {
    /// Counts at fixed times (the first at 0 s: the starting count).
    Schedule(WorkerSchedule),
    /// The HPA rule on total lag or busy fraction, from `start` workers (a validated
    /// configuration). `cost` is what one item costs a member (the cluster's work): a busy
    /// target reads each member's busy fraction as the cost of the items done in the sync
    /// period over the members' time in it, the work's known cost standing for the CPU
    /// time HPA would read (the plumbing's own cost is not counted).
    Autoscale {
        config: AutoscaleConfig,
        start: usize,
        cost: Duration,
    },
}

impl Scaling {
    /// Workers when the run starts.
    pub fn start(&self) -> usize {
        match self {
            Scaling::Schedule(schedule) => schedule.steps()[0].workers,
            Scaling::Autoscale { start, .. } => *start,
        }
    }

    /// The most workers it may run at once.
    pub fn peak(&self) -> usize {
        match self {
            Scaling::Schedule(schedule) => schedule.peak(),
            Scaling::Autoscale { config, start, .. } => (config.range.max as usize).max(*start),
        }
    }
}

/// An engine's elastic side: what resizes its group mid-run and how members leave, and the
/// changes and decisions of its last run.
#[derive(Debug)]
pub struct Elastic {
    pub scaling: Scaling,
    pub leave: Leave,
    changes: Mutex<Vec<Change>>,
    decided: Mutex<Vec<Decided>>,
    migrations: Mutex<Vec<Migration>>,
}

/// One migration of the TCP cluster's partitions, as its initializer announced it settled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Migration {
    /// When it settled, since the load started.
    pub at: Duration,
    /// Workers owning partitions after it.
    pub workers: usize,
    pub moved: u32,
    /// From the membership change to the last state installed.
    pub took: Duration,
    /// The longest one partition's items were held while its state moved.
    pub longest_hold: Duration,
}

impl Elastic {
    pub fn new(scaling: Scaling, leave: Leave) -> Self {
        Self {
            scaling,
            leave,
            changes: Mutex::new(Vec::new()),
            decided: Mutex::new(Vec::new()),
            migrations: Mutex::new(Vec::new()),
        }
    }

    /// A fresh scaler for one run.
    pub fn scaler(&self) -> Scaler {
        Scaler::new(&self.scaling)
    }

    /// Keeps what one run did.
    pub fn ran(&self, changes: Vec<Change>, scaler: &Scaler) {
        *self.changes.lock().unwrap_or_else(|p| p.into_inner()) = changes;
        *self.decided.lock().unwrap_or_else(|p| p.into_inner()) = scaler.decided().to_vec();
    }

    /// Keeps the migrations of one run (the TCP cluster's; a broker moves its own).
    pub fn migrated(&self, migrations: Vec<Migration>) {
        *self.migrations.lock().unwrap_or_else(|p| p.into_inner()) = migrations;
    }

    /// The partition migrations of the last run, in order (none for a broker group).
    pub fn migrations(&self) -> Vec<Migration> {
        self.migrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The membership changes the last run applied.
    pub fn changes(&self) -> Vec<Change> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The autoscaler's decisions in the last run, one per sync period (none on a schedule).
    pub fn decided(&self) -> Vec<Decided> {
        self.decided
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One autoscaler sync period: what it saw and what it decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decided {
    /// Since the load started.
    pub at: Duration,
    /// Items sent and not yet done.
    pub lag: f64,
    /// With a busy target: the members' mean busy fraction over the sync period.
    pub busy: Option<f64>,
    /// Workers running when it decided.
    pub from: usize,
    pub decision: Decision,
}

/// One run's scaling, step by step.
#[derive(Debug)]
pub struct Scaler {
    kind: Kind,
    decided: Vec<Decided>,
}

#[derive(Debug)]
enum Kind {
    /// The schedule's steps after the first, and the next one's index.
    Schedule(WorkerSchedule, usize),
    Autoscale {
        autoscaler: Box<Autoscaler>,
        /// When the next decision is due.
        due: Duration,
        cost: Duration,
        /// The time and the items done at the last decision (the busy fraction's period).
        last: (Duration, u64),
    },
}

impl Scaler {
    pub fn new(scaling: &Scaling) -> Self {
        let kind = match scaling {
            Scaling::Schedule(schedule) => Kind::Schedule(schedule.clone(), 1),
            Scaling::Autoscale { config, cost, .. } => Kind::Autoscale {
                autoscaler: Box::new(Autoscaler::new(config.clone())),
                // The first decision one sync period in, as HPA's first look at a new target.
                due: config.sync,
                cost: *cost,
                last: (Duration::ZERO, 0),
            },
        };
        Self {
            kind,
            decided: Vec::new(),
        }
    }

    /// The worker count to run from `now` on, if it changes: `running` workers are up, `lag`
    /// items wait and `done` were done since the load started.
    pub fn tick(&mut self, now: Duration, running: usize, lag: f64, done: u64) -> Option<usize> {
        match &mut self.kind {
            Kind::Schedule(schedule, next) => {
                let step = schedule.steps().get(*next).filter(|s| now >= s.at)?;
                *next += 1;
                (step.workers != running).then_some(step.workers)
            }
            Kind::Autoscale {
                autoscaler,
                due,
                cost,
                last,
            } => {
                if now < *due {
                    return None;
                }
                let sync = autoscaler.config().sync;
                // The next period counts from this one's due time, so a late tick does not
                // push every later decision back.
                while *due <= now {
                    *due += sync;
                }
                let busy = matches!(autoscaler.config().target, Target::Busy(_)).then(|| {
                    let member_time = running as f64 * (now - last.0).as_secs_f64();
                    let work = done.saturating_sub(last.1) as f64 * cost.as_secs_f64();
                    if member_time > 0.0 {
                        work / member_time
                    } else {
                        0.0
                    }
                });
                *last = (now, done);
                let decision = autoscaler.decide(
                    now,
                    Observation {
                        replicas: u32::try_from(running).unwrap_or(u32::MAX),
                        metric: busy.unwrap_or(lag),
                    },
                );
                self.decided.push(Decided {
                    at: now,
                    lag,
                    busy,
                    from: running,
                    decision,
                });
                let replicas = decision.replicas as usize;
                (replicas != running).then_some(replicas)
            }
        }
    }

    /// Every autoscaler decision so far, in order (none on a schedule).
    pub fn decided(&self) -> &[Decided] {
        &self.decided
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_scale::autoscale::{ReplicaRange, Target};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_schedule_changes_the_count_once_each_step_is_due() {
        let mut scaler = Scaler::new(&Scaling::Schedule("2@0s,4@1s,1@2s".parse().unwrap()));
        assert_eq!(scaler.tick(ms(500), 2, 0.0, 0), None);
        assert_eq!(scaler.tick(ms(1000), 2, 0.0, 0), Some(4));
        assert_eq!(scaler.tick(ms(1500), 4, 0.0, 0), None);
        assert_eq!(scaler.tick(ms(2100), 4, 0.0, 0), Some(1));
        assert_eq!(scaler.tick(ms(9000), 1, 0.0, 0), None);
        assert!(scaler.decided().is_empty());
    }

    fn autoscale() -> Scaling {
        let range: ReplicaRange = "1..4".parse().unwrap();
        Scaling::Autoscale {
            config: AutoscaleConfig::kubernetes(range, Target::LagPerReplica(10.0)).scaled(15),
            start: 1,
            cost: ms(10),
        }
    }

    #[test]
    fn the_autoscaler_decides_once_per_sync_period_on_the_lag_it_is_shown() {
        let scaling = autoscale();
        assert_eq!((scaling.start(), scaling.peak()), (1, 4));
        let mut scaler = Scaler::new(&scaling);
        // Sync 1 s: nothing before it, whatever the lag.
        assert_eq!(scaler.tick(ms(200), 1, 500.0, 0), None);
        assert!(scaler.decided().is_empty());
        // 35 items of lag at 10 per replica: 4, and HPA may double or add 4 in one step.
        assert_eq!(scaler.tick(ms(1000), 1, 35.0, 0), Some(4));
        // Within the same period: no second decision.
        assert_eq!(scaler.tick(ms(1500), 4, 0.0, 0), None);
        assert_eq!(scaler.decided().len(), 1);
        let first = scaler.decided()[0];
        assert_eq!(
            (first.from, first.lag, first.decision.replicas),
            (1, 35.0, 4)
        );
        // Lag gone: the scale-down window (300 s / 15 = 20 s) holds the replicas.
        assert_eq!(scaler.tick(ms(2000), 4, 0.0, 0), None);
        assert_eq!(scaler.decided().len(), 2);
    }

    #[test]
    fn a_late_tick_does_not_delay_the_periods_after_it() {
        let mut scaler = Scaler::new(&autoscale());
        scaler.tick(ms(2700), 1, 0.0, 0);
        // Due again at 3 s, not at 3.7 s.
        scaler.tick(ms(3000), 1, 0.0, 0);
        assert_eq!(scaler.decided().len(), 2);
    }

    #[test]
    fn a_busy_target_reads_the_work_done_in_the_period_over_the_members_time() {
        let range: ReplicaRange = "1..8".parse().unwrap();
        let mut scaler = Scaler::new(&Scaling::Autoscale {
            config: AutoscaleConfig::kubernetes(range, Target::Busy(0.5)).scaled(15),
            start: 2,
            cost: ms(10),
        });
        // 1 s on 2 members, 160 items of 10 ms done: 80 % busy, over 50 %: ceil(2 × 1.6) = 4.
        assert_eq!(scaler.tick(ms(1000), 2, 0.0, 160), Some(4));
        assert_eq!(scaler.decided()[0].busy, Some(0.8));
        // The next period counts only what it did: 200 more on 4 members, 50 %: no change.
        assert_eq!(scaler.tick(ms(2000), 4, 0.0, 360), None);
        assert_eq!(scaler.decided()[1].busy, Some(0.5));
        // A lag target has no busy fraction to show.
        let mut lag = Scaler::new(&autoscale());
        lag.tick(ms(1000), 1, 5.0, 100);
        assert_eq!(lag.decided()[0].busy, None);
    }
}
