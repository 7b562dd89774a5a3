//! The autoscaler behind `--autoscale MIN..MAX`: Kubernetes' Horizontal Pod Autoscaler rule as
//! a pure state machine, so a user sees what their scaling policy would do to their workers
//! before they run it on a cluster. It is an emulation for one machine, not a replacement for
//! HPA or KEDA.
//!
//! Every sync period the caller hands [`Autoscaler::decide`] an [`Observation`] (the replicas
//! running and the metric) and gets a [`Decision`]. The rule is HPA's, in its order:
//! 1. **Metric → desired.** Total lag against a per-replica target (KEDA's Kafka scaler: an
//!    `AverageValue` target, `desired = ceil(lag ÷ target)`), or the mean busy fraction against
//!    a target utilisation (`desired = ceil(replicas × busy ÷ target)`); nothing changes while
//!    the usage ratio is within the tolerance of 1.
//! 2. **Stabilization.** Scaling up goes no higher than the lowest recommendation of the
//!    scale-up window, scaling down no lower than the highest of the scale-down window (flapping
//!    load does not flap the replicas).
//! 3. **Rate policies.** Up: at most `max(replicas × (1 + percent), replicas + pods)` added per
//!    period (by default doubling, or 4 more, per 15 s); down: at most `percent` removed per
//!    period (all, per 15 s). Counted from the replicas at the start of the period.
//! 4. **Bounds.** Never outside `MIN..MAX`.
//!
//! [`AutoscaleConfig::kubernetes`] has Kubernetes' defaults; [`AutoscaleConfig::scaled`] divides
//! every period and window for experiments of minutes instead of hours. Starting and stopping
//! workers, and measuring lag, are the engines' work; this module has no clock of its own
//! (`now` is time since the run started).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `MIN..MAX` replicas, both at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaRange {
    pub min: u32,
    pub max: u32,
}

/// Why an `--autoscale` range is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("--autoscale {0:?}: expected MIN..MAX replicas, e.g. 1..6")]
    Syntax(String),
    #[error("--autoscale {0:?}: a worker count is a whole number of at least 1")]
    Count(String),
    #[error("--autoscale {given:?}: the range is empty ({min} is above {max})")]
    Empty { given: String, min: u32, max: u32 },
}

impl FromStr for ReplicaRange {
    type Err = RangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (min, max) = text
            .split_once("..")
            .ok_or_else(|| RangeError::Syntax(text.into()))?;
        let count = |s: &str| match s.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(RangeError::Count(text.into())),
        };
        let (min, max) = (count(min)?, count(max)?);
        if min > max {
            return Err(RangeError::Empty {
                given: text.into(),
                min,
                max,
            });
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for ReplicaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.min, self.max)
    }
}

/// What the autoscaler aims for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Items of lag per replica (KEDA's `lagThreshold`); the metric is the total lag.
    LagPerReplica(f64),
    /// Busy fraction of each replica, in (0, 1]; the metric is the replicas' mean.
    Busy(f64),
}

/// One rate limit: `percent` of the replicas at the period's start, or `pods` replicas, per
/// `period`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub period: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PolicyKind {
    Percent(u32),
    Pods(u32),
}

/// One direction's behaviour: its stabilization window and its rate policies (the most
/// permissive applies, HPA's `selectPolicy: Max`).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub window: Duration,
    pub policies: Vec<Policy>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AutoscaleConfig {
    pub range: ReplicaRange,
    pub target: Target,
    /// Usage ratios within this of 1 change nothing (HPA: 0.1).
    pub tolerance: f64,
    /// How often the metric is read and a decision taken (HPA: 15 s).
    pub sync: Duration,
    pub up: Rules,
    pub down: Rules,
}

/// Why a configuration is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("the autoscale target must be above 0 (and a busy fraction at most 1), not {0}")]
    Target(f64),
    #[error("the autoscale tolerance must be in [0, 1), not {0}")]
    Tolerance(f64),
    #[error("the autoscale sync period must be above 0")]
    Sync,
    #[error("an autoscale rate policy needs a period above 0 and a limit above 0")]
    Policy,
}

impl AutoscaleConfig {
    /// Kubernetes' defaults: sync 15 s, tolerance 0.1, scale up at once (window 0) by doubling or
    /// 4 replicas per 15 s, scale down after a 300 s window by up to all replicas per 15 s.
    pub fn kubernetes(range: ReplicaRange, target: Target) -> Self {
        let per = |kind| Policy {
            kind,
            period: Duration::from_secs(15),
        };
        Self {
            range,
            target,
            tolerance: 0.1,
            sync: Duration::from_secs(15),
            up: Rules {
                window: Duration::ZERO,
                policies: vec![per(PolicyKind::Percent(100)), per(PolicyKind::Pods(4))],
            },
            down: Rules {
                window: Duration::from_secs(300),
                policies: vec![per(PolicyKind::Percent(100))],
            },
        }
    }

    /// Every period and window divided by `factor` (10: sync 1.5 s, scale-down window 30 s), for
    /// experiments of minutes.
    pub fn scaled(mut self, factor: u32) -> Self {
        let factor = factor.max(1);
        self.sync /= factor;
        for rules in [&mut self.up, &mut self.down] {
            rules.window /= factor;
            for policy in &mut rules.policies {
                policy.period /= factor;
            }
        }
        self
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let target = match self.target {
            Target::LagPerReplica(t) => (t > 0.0 && t.is_finite()).then_some(()).ok_or(t),
            Target::Busy(t) => (t > 0.0 && t <= 1.0).then_some(()).ok_or(t),
        };
        target.map_err(ConfigError::Target)?;
        if !(0.0..1.0).contains(&self.tolerance) {
            return Err(ConfigError::Tolerance(self.tolerance));
        }
        if self.sync.is_zero() {
            return Err(ConfigError::Sync);
        }
        let bad = |p: &Policy| {
            p.period.is_zero() || matches!(p.kind, PolicyKind::Percent(0) | PolicyKind::Pods(0))
        };
        if self.up.policies.iter().chain(&self.down.policies).any(bad) {
            return Err(ConfigError::Policy);
        }
        Ok(())
    }
}

/// What the caller measured this sync period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Replicas running now.
    pub replicas: u32,
    /// Total lag (for [`Target::LagPerReplica`]) or the mean busy fraction ([`Target::Busy`]).
    pub metric: f64,
}

/// What limited a decision, beyond the metric itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The usage ratio is within the tolerance: nothing changes.
    WithinTolerance,
    /// The metric's recommendation, as it is.
    Metric,
    /// A stabilization window held the replicas back.
    Stabilized,
    /// A rate policy capped the step.
    RateLimited,
    /// The recommendation lay outside `MIN..MAX`.
    Bounded,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Replicas to run from now on.
    pub replicas: u32,
    /// What the metric alone asked for.
    pub recommended: u32,
    pub reason: Reason,
}

/// HPA for one experiment: the recommendations of the longest window and the recent changes.
#[derive(Debug)]
pub struct Autoscaler {
    config: AutoscaleConfig,
    /// (when, the metric's recommendation), oldest first.
    recommendations: VecDeque<(Duration, u32)>,
    /// (when, replicas added, negative when removed), oldest first.
    changes: VecDeque<(Duration, i64)>,
}

impl Autoscaler {
    /// A validated configuration ([`AutoscaleConfig::validate`]).
    pub fn new(config: AutoscaleConfig) -> Self {
        Self {
            config,
            recommendations: VecDeque::new(),
            changes: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &AutoscaleConfig {
        &self.config
    }

    /// The decision of the sync period at `now`; the caller is to apply it.
    pub fn decide(&mut self, now: Duration, seen: Observation) -> Decision {
        let current = seen.replicas.max(1);
        let (recommended, within) = self.recommend(current, seen.metric);
        let stabilized = self.stabilize(now, current, recommended);
        let limited = self.rate_limit(now, current, stabilized);
        let range = self.config.range;
        let replicas = limited.clamp(range.min, range.max);
        let reason = if replicas != limited {
            Reason::Bounded
        } else if limited != stabilized {
            Reason::RateLimited
        } else if stabilized != recommended {
            Reason::Stabilized
        } else if within {
            Reason::WithinTolerance
        } else {
            Reason::Metric
        };
        if replicas != current {
            self.changes
                .push_back((now, i64::from(replicas) - i64::from(current)));
        }
        Decision {
            replicas,
            recommended,
            reason,
        }
    }

    /// The metric's replicas, and whether the usage ratio was within the tolerance.
    fn recommend(&self, current: u32, metric: f64) -> (u32, bool) {
        let metric = if metric.is_finite() {
            metric.max(0.0)
        } else {
            0.0
        };
        let (ratio, desired) = match self.config.target {
            Target::LagPerReplica(target) => {
                (metric / (target * f64::from(current)), metric / target)
            }
            Target::Busy(target) => (metric / target, f64::from(current) * metric / target),
        };
        if (ratio - 1.0).abs() <= self.config.tolerance {
            return (current, true);
        }
        // Guards against ceil(2.0000000001) = 3 from a rounding error.
        let desired = (desired - 1e-9).ceil().clamp(1.0, f64::from(u32::MAX));
        (desired as u32, false)
    }

    /// HPA's stabilization: up to the lowest recommendation of the scale-up window, down to the
    /// highest of the scale-down window.
    fn stabilize(&mut self, now: Duration, current: u32, recommended: u32) -> u32 {
        let (up, down) = (self.config.up.window, self.config.down.window);
        let longest = up.max(down);
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| at + longest <= now)
        {
            self.recommendations.pop_front();
        }
        let within = |window: Duration, at: Duration| at + window > now;
        let (mut up_to, mut down_to) = (recommended, recommended);
        for &(at, r) in &self.recommendations {
            if within(up, at) {
                up_to = up_to.min(r);
            }
            if within(down, at) {
                down_to = down_to.max(r);
            }
        }
        self.recommendations.push_back((now, recommended));
        current.max(up_to).min(down_to)
    }

    /// HPA's rate policies, from the replicas at the start of each policy's period.
    fn rate_limit(&mut self, now: Duration, current: u32, desired: u32) -> u32 {
        let longest = self
            .config
            .up
            .policies
            .iter()
            .chain(&self.config.down.policies)
            .map(|p| p.period)
            .max()
            .unwrap_or_default();
        while self
            .changes
            .front()
            .is_some_and(|&(at, _)| at + longest <= now)
        {
            self.changes.pop_front();
        }
        let moved = |period: Duration, up: bool| -> i64 {
            self.changes
                .iter()
                .filter(|&&(at, delta)| at + period > now && (delta > 0) == up)
                .map(|&(_, delta)| delta.abs())
                .sum()
        };
        let current = i64::from(current);
        let limit = |p: &Policy, up: bool| -> i64 {
            if up {
                let start = current - moved(p.period, true);
                match p.kind {
                    PolicyKind::Percent(pct) => {
                        (start * (100 + i64::from(pct)) + 99).div_euclid(100)
                    }
                    PolicyKind::Pods(pods) => start + i64::from(pods),
                }
            } else {
                let start = current + moved(p.period, false);
                match p.kind {
                    PolicyKind::Percent(pct) => {
                        (start * (100 - i64::from(pct.min(100)))).div_euclid(100)
                    }
                    PolicyKind::Pods(pods) => start - i64::from(pods),
                }
            }
        };
        let desired_wide = i64::from(desired);
        let limited = if desired_wide > current {
            let most = self.config.up.policies.iter().map(|p| limit(p, true)).max();
            most.map_or(desired_wide, |m| desired_wide.min(m.max(current)))
        } else if desired_wide < current {
            let least = self
                .config
                .down
                .policies
                .iter()
                .map(|p| limit(p, false))
                .min();
            least.map_or(desired_wide, |m| desired_wide.max(m.min(current)))
        } else {
            desired_wide
        };
        u32::try_from(limited.max(1)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn lag(range: &str, per_replica: f64) -> Autoscaler {
        let config =
            AutoscaleConfig::kubernetes(range.parse().unwrap(), Target::LagPerReplica(per_replica));
        config.validate().unwrap();
        Autoscaler::new(config)
    }

    fn seen(replicas: u32, metric: f64) -> Observation {
        Observation { replicas, metric }
    }

    #[test]
    fn a_range_is_min_dot_dot_max_of_whole_workers() {
        assert_eq!(
            "1..6".parse::<ReplicaRange>().unwrap(),
            ReplicaRange { min: 1, max: 6 }
        );
        assert_eq!("2..2".parse::<ReplicaRange>().unwrap().to_string(), "2..2");
        for (bad, says) in [
            ("6", "expected MIN..MAX"),
            ("0..3", "at least 1"),
            ("1..x", "at least 1"),
            ("4..2", "the range is empty (4 is above 2)"),
        ] {
            let error = bad.parse::<ReplicaRange>().unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn bad_targets_tolerances_and_periods_are_refused() {
        let range = "1..4".parse().unwrap();
        let refused = |config: AutoscaleConfig| config.validate().unwrap_err().to_string();
        assert!(refused(AutoscaleConfig::kubernetes(
            range,
            Target::LagPerReplica(0.0)
        ))
        .contains("above 0"));
        assert!(
            refused(AutoscaleConfig::kubernetes(range, Target::Busy(1.5))).contains("at most 1")
        );
        let mut config = AutoscaleConfig::kubernetes(range, Target::Busy(0.6));
        config.tolerance = 1.0;
        assert!(refused(config.clone()).contains("tolerance"));
        config.tolerance = 0.1;
        config.up.policies[0].kind = PolicyKind::Pods(0);
        assert!(refused(config).contains("rate policy"));
    }

    /// KEDA's Kafka scaler: 1000 items of lag at 100 per replica asks for 10; HPA's default
    /// scale-up policy allows doubling or 4 more per 15 s, whichever is more.
    #[test]
    fn lag_scales_up_at_once_but_at_most_by_the_up_policy_per_period() {
        let mut hpa = lag("1..20", 100.0);
        let first = hpa.decide(S(0), seen(2, 1000.0));
        assert_eq!(
            first,
            Decision {
                replicas: 6,
                recommended: 10,
                reason: Reason::RateLimited
            }
        );
        let same_period = hpa.decide(S(5), seen(6, 1000.0));
        assert_eq!(
            same_period.replicas, 6,
            "6 added within the last 15 s already"
        );
        let next_period = hpa.decide(S(15), seen(6, 1000.0));
        assert_eq!(next_period.replicas, 10);
        assert_eq!(next_period.reason, Reason::Metric);
    }

    #[test]
    fn a_usage_ratio_within_the_tolerance_changes_nothing() {
        let mut hpa = lag("1..20", 100.0);
        let d = hpa.decide(S(0), seen(2, 215.0));
        assert_eq!((d.replicas, d.reason), (2, Reason::WithinTolerance));
        let d = hpa.decide(S(15), seen(2, 230.0));
        assert_eq!((d.replicas, d.reason), (3, Reason::Metric));
    }

    #[test]
    fn scale_down_waits_out_the_window_of_the_highest_recommendation() {
        let mut hpa = lag("1..20", 100.0);
        assert_eq!(hpa.decide(S(0), seen(4, 400.0)).replicas, 4);
        let held = hpa.decide(S(15), seen(4, 100.0));
        assert_eq!(
            (held.replicas, held.recommended, held.reason),
            (4, 1, Reason::Stabilized)
        );
        assert_eq!(hpa.decide(S(299), seen(4, 100.0)).replicas, 4);
        let after = hpa.decide(S(300), seen(4, 100.0));
        assert_eq!((after.replicas, after.reason), (1, Reason::Metric));
    }

    #[test]
    fn busy_fraction_scales_the_replicas_by_its_ratio_to_the_target() {
        let config = AutoscaleConfig::kubernetes("1..10".parse().unwrap(), Target::Busy(0.6));
        let mut hpa = Autoscaler::new(config);
        assert_eq!(hpa.decide(S(0), seen(2, 0.9)).replicas, 3);
    }

    #[test]
    fn the_range_bounds_every_decision() {
        let mut hpa = lag("2..5", 100.0);
        let up = hpa.decide(S(0), seen(4, 5000.0));
        assert_eq!((up.replicas, up.reason), (5, Reason::Bounded));
        let mut hpa = lag("2..5", 100.0);
        let down = hpa.decide(S(0), seen(3, 0.0));
        assert_eq!((down.replicas, down.reason), (2, Reason::Bounded));
    }

    #[test]
    fn scaled_divides_every_period_and_window() {
        let config =
            AutoscaleConfig::kubernetes("1..6".parse().unwrap(), Target::Busy(0.5)).scaled(10);
        assert_eq!(config.sync, Duration::from_millis(1500));
        assert_eq!(config.down.window, S(30));
        assert!(config
            .up
            .policies
            .iter()
            .all(|p| p.period == Duration::from_millis(1500)));
        let mut hpa = Autoscaler::new(config);
        assert_eq!(hpa.decide(S(0), seen(4, 0.5)).replicas, 4);
        assert_eq!(
            hpa.decide(S(2), seen(4, 0.1)).replicas,
            4,
            "held by the window"
        );
        assert_eq!(hpa.decide(S(30), seen(4, 0.1)).replicas, 1);
    }

    proptest! {
        /// Whatever the metric, a decision stays in range, moves only the way the metric
        /// points, and holds where the metric sits within the tolerance.
        #[test]
        fn decisions_stay_in_range_and_follow_the_metric(
            steps in prop::collection::vec((1u32..12, 0.0f64..5000.0), 1..40),
            min in 1u32..4,
            span in 0u32..8,
        ) {
            let range = ReplicaRange { min, max: min + span };
            let config = AutoscaleConfig::kubernetes(range, Target::LagPerReplica(100.0));
            let mut hpa = Autoscaler::new(config);
            for (i, (replicas, metric)) in steps.into_iter().enumerate() {
                let replicas = replicas.clamp(range.min, range.max);
                let d = hpa.decide(S(15 * i as u64), seen(replicas, metric));
                prop_assert!(range.min <= d.replicas && d.replicas <= range.max);
                let ratio = metric / (100.0 * f64::from(replicas));
                if ratio > 1.1 {
                    prop_assert!(d.replicas >= replicas, "{d:?} at ratio {ratio}");
                }
                if ratio < 0.9 {
                    prop_assert!(d.replicas <= replicas, "{d:?} at ratio {ratio}");
                }
                if (ratio - 1.0).abs() <= 0.1 {
                    prop_assert_eq!(d.replicas, replicas);
                }
            }
        }
    }
}
