//! How a consumer group's membership changes mid-run: on a fixed worker schedule, or by the
//! autoscaler reading the run's lag every sync period, as Kubernetes' HPA reads KEDA's Kafka
//! lag metric. [`Scaler::tick`] is pure (the time and the figures are the caller's), so the
//! watcher in [`crate::external`] asks it every tick and applies what it says; starting and
//! stopping members is [`crate::members`]'. It measures nothing itself.

use std::time::Duration;

use plumbline_scale::autoscale::{AutoscaleConfig, Autoscaler, Decision, Observation};
use plumbline_scale::change::WorkerSchedule;

/// What drives the membership.
#[derive(Clone, Debug)]
pub enum Scaling {
    /// Counts at fixed times (the first at 0 s: the starting count).
    Schedule(WorkerSchedule),
    /// The HPA rule on total lag, from `start` workers (a validated configuration).
    Autoscale {
        config: AutoscaleConfig,
        start: usize,
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
            Scaling::Autoscale { config, start } => (config.range.max as usize).max(*start),
        }
    }
}

/// One autoscaler sync period: what it saw and what it decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decided {
    /// Since the load started.
    pub at: Duration,
    /// Items sent and not yet done.
    pub lag: f64,
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
    Autoscale(Autoscaler, Duration),
}

impl Scaler {
    pub fn new(scaling: &Scaling) -> Self {
        let kind = match scaling {
            Scaling::Schedule(schedule) => Kind::Schedule(schedule.clone(), 1),
            Scaling::Autoscale { config, .. } => {
                // The first decision one sync period in, as HPA's first look at a new target.
                Kind::Autoscale(Autoscaler::new(config.clone()), config.sync)
            }
        };
        Self {
            kind,
            decided: Vec::new(),
        }
    }

    /// The worker count to run from `now` on, if it changes: `running` workers are up and
    /// `lag` items wait.
    pub fn tick(&mut self, now: Duration, running: usize, lag: f64) -> Option<usize> {
        match &mut self.kind {
            Kind::Schedule(schedule, next) => {
                let step = schedule.steps().get(*next).filter(|s| now >= s.at)?;
                *next += 1;
                (step.workers != running).then_some(step.workers)
            }
            Kind::Autoscale(autoscaler, due) => {
                if now < *due {
                    return None;
                }
                let sync = autoscaler.config().sync;
                // The next period counts from this one's due time, so a late tick does not
                // push every later decision back.
                while *due <= now {
                    *due += sync;
                }
                let decision = autoscaler.decide(
                    now,
                    Observation {
                        replicas: u32::try_from(running).unwrap_or(u32::MAX),
                        metric: lag,
                    },
                );
                self.decided.push(Decided {
                    at: now,
                    lag,
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
        assert_eq!(scaler.tick(ms(500), 2, 0.0), None);
        assert_eq!(scaler.tick(ms(1000), 2, 0.0), Some(4));
        assert_eq!(scaler.tick(ms(1500), 4, 0.0), None);
        assert_eq!(scaler.tick(ms(2100), 4, 0.0), Some(1));
        assert_eq!(scaler.tick(ms(9000), 1, 0.0), None);
        assert!(scaler.decided().is_empty());
    }

    fn autoscale() -> Scaling {
        let range: ReplicaRange = "1..4".parse().unwrap();
        Scaling::Autoscale {
            config: AutoscaleConfig::kubernetes(range, Target::LagPerReplica(10.0)).scaled(15),
            start: 1,
        }
    }

    #[test]
    fn the_autoscaler_decides_once_per_sync_period_on_the_lag_it_is_shown() {
        let scaling = autoscale();
        assert_eq!((scaling.start(), scaling.peak()), (1, 4));
        let mut scaler = Scaler::new(&scaling);
        // Sync 1 s: nothing before it, whatever the lag.
        assert_eq!(scaler.tick(ms(200), 1, 500.0), None);
        assert!(scaler.decided().is_empty());
        // 35 items of lag at 10 per replica: 4, and HPA may double or add 4 in one step.
        assert_eq!(scaler.tick(ms(1000), 1, 35.0), Some(4));
        // Within the same period: no second decision.
        assert_eq!(scaler.tick(ms(1500), 4, 0.0), None);
        assert_eq!(scaler.decided().len(), 1);
        let first = scaler.decided()[0];
        assert_eq!(
            (first.from, first.lag, first.decision.replicas),
            (1, 35.0, 4)
        );
        // Lag gone: the scale-down window (300 s / 15 = 20 s) holds the replicas.
        assert_eq!(scaler.tick(ms(2000), 4, 0.0), None);
        assert_eq!(scaler.decided().len(), 2);
    }

    #[test]
    fn a_late_tick_does_not_delay_the_periods_after_it() {
        let mut scaler = Scaler::new(&autoscale());
        scaler.tick(ms(2700), 1, 0.0);
        // Due again at 3 s, not at 3.7 s.
        scaler.tick(ms(3000), 1, 0.0);
        assert_eq!(scaler.decided().len(), 2);
    }
}
