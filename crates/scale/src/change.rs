//! Membership changes over a run: the schedule a user writes (`--workers 2@0s,4@20s,1@40s`)
//! and what each change cost, read off the run's samples: the pause (the longest time nothing
//! finished while work waited), the lag peak, and the time until lag was back under its
//! threshold.
//!
//! Pure: starting and stopping workers, and sampling the counters, are the engines' work.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use plumbline_core::duration::{parse_duration, Human};

/// From `at` on, run `workers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub workers: usize,
}

/// A run's worker counts over time: the first at 0 s, times strictly increasing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSchedule(Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("--workers {0:?}: expected COUNT@TIME,… e.g. 2@0s,4@20s,1@40s")]
    Syntax(String),
    #[error("--workers {given:?}: {what}")]
    Invalid { given: String, what: String },
}

impl WorkerSchedule {
    pub fn steps(&self) -> &[Step] {
        &self.0
    }

    /// The workers running at `t`.
    pub fn workers_at(&self, t: Duration) -> usize {
        self.0
            .iter()
            .rev()
            .find(|s| s.at <= t)
            .map_or(self.0[0].workers, |s| s.workers)
    }

    /// The most workers at any time.
    pub fn peak(&self) -> usize {
        self.0.iter().map(|s| s.workers).max().unwrap_or(1)
    }
}

impl FromStr for WorkerSchedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |what: String| ScheduleError::Invalid {
            given: text.into(),
            what,
        };
        let mut steps: Vec<Step> = Vec::new();
        for part in text.split(',') {
            let (count, at) = part
                .trim()
                .split_once('@')
                .ok_or_else(|| ScheduleError::Syntax(text.into()))?;
            let workers = match count.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(invalid(format!(
                        "{count:?} workers: a worker count is a whole number of at least 1 \
                         (shrinking below one worker leaves nobody to do the work)"
                    )))
                }
            };
            let at = parse_duration(at.trim()).map_err(|e| invalid(format!("{at:?}: {e}")))?;
            if let Some(last) = steps.last() {
                if at <= last.at {
                    return Err(invalid(format!(
                        "{} comes after {}: times must increase",
                        Human(at),
                        Human(last.at)
                    )));
                }
            }
            steps.push(Step { at, workers });
        }
        match steps.first() {
            Some(first) if first.at.is_zero() => Ok(Self(steps)),
            Some(first) => Err(invalid(format!(
                "the first step is at {}: say how many workers start (COUNT@0s)",
                Human(first.at)
            ))),
            None => Err(ScheduleError::Syntax(text.into())),
        }
    }
}

impl fmt::Display for WorkerSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|s| format!("{}@{}", s.workers, Human(s.at)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// One reading of the counters during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// Seconds since the run started.
    pub t: f64,
    /// Items due (or sent) and not yet done.
    pub lag: f64,
    /// Items done so far.
    pub done: u64,
}

/// What one change cost, in seconds and items.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChangeFigures {
    pub at_s: f64,
    /// The longest time, from the change until the next, that nothing finished while items
    /// waited (0 when work never stopped).
    pub pause_s: f64,
    pub lag_before: f64,
    pub lag_peak: f64,
    /// The lowest share of the items that came due in any 1 s after the change (until the
    /// next) that the group finished in it: 1 or more kept up, a partial stall (some
    /// partitions stopped, the rest working, so no pause) shows below 1. `None` when no
    /// whole second with items due followed.
    pub slowest_share: Option<f64>,
    /// From the change until lag was back under `threshold` after its peak; `None` when it
    /// never was before the next change (or the end).
    pub recovered_s: Option<f64>,
}

/// The figures of the change at `at_s`, from `readings` (in time order) up to `until_s` (the
/// next change or the end). Lag at or under `threshold` counts as recovered.
pub fn change_figures(
    readings: &[Reading],
    at_s: f64,
    until_s: f64,
    threshold: f64,
) -> ChangeFigures {
    let lag_before = readings
        .iter()
        .take_while(|r| r.t <= at_s)
        .last()
        .map_or(0.0, |r| r.lag);
    let window: Vec<&Reading> = readings
        .iter()
        .filter(|r| r.t >= at_s && r.t <= until_s)
        .collect();
    let mut pause: f64 = 0.0;
    let mut stalled_since: Option<f64> = None;
    let mut last_done = None;
    for r in &window {
        let progressed = last_done.is_some_and(|d| r.done > d);
        match (progressed, stalled_since) {
            (true, _) => stalled_since = None,
            (false, None) if r.lag > 0.0 => stalled_since = Some(r.t),
            _ => {}
        }
        if let Some(since) = stalled_since {
            if r.lag > 0.0 {
                pause = pause.max(r.t - since);
            }
        }
        last_done = Some(r.done);
    }
    let (peak_at, lag_peak) =
        window
            .iter()
            .map(|r| (r.t, r.lag))
            .fold(
                (at_s, lag_before),
                |best, x| if x.1 > best.1 { x } else { best },
            );
    let recovered_s = window
        .iter()
        .find(|r| r.t >= peak_at && r.lag <= threshold)
        .map(|r| r.t - at_s);
    let due = |r: &Reading| r.lag + r.done as f64;
    let slowest_share = window
        .iter()
        .enumerate()
        .filter_map(|(i, from)| {
            let to = window[i..].iter().find(|r| r.t >= from.t + 1.0)?;
            let came = due(to) - due(from);
            (came > 0.0).then(|| (to.done - from.done) as f64 / came)
        })
        .reduce(f64::min);
    ChangeFigures {
        at_s,
        pause_s: pause,
        lag_before,
        lag_peak,
        slowest_share,
        recovered_s,
    }
}

/// Offered and done per whole second of the run, as `(end of the second, items due in it,
/// items done in it)`, from `readings` in time order (due = lag + done): each second's counts
/// are the last reading in it minus the last one before it, so the flow and the lag are
/// drawn from the same samples on one time axis. A second with no reading gets none.
pub fn per_second(readings: &[Reading]) -> Vec<(f64, f64, f64)> {
    let mut out = Vec::new();
    let (mut due, mut done) = (0.0, 0.0);
    let mut i = 0;
    while i < readings.len() {
        let second = readings[i].t.floor();
        while i + 1 < readings.len() && readings[i + 1].t.floor() == second {
            i += 1;
        }
        let last = readings[i];
        let (due_now, done_now) = (last.lag + last.done as f64, last.done as f64);
        out.push((second + 1.0, due_now - due, done_now - done));
        (due, done) = (due_now, done_now);
        i += 1;
    }
    out
}

/// Seconds during which lag was above `limit(t)` (an SLO over time: the autoscaler's target
/// times the workers running at `t`), each reading standing for the time until the next.
pub fn over_limit(readings: &[Reading], limit: impl Fn(f64) -> f64) -> f64 {
    readings
        .windows(2)
        .filter(|w| w[0].lag > limit(w[0].t))
        .map(|w| w[1].t - w[0].t)
        .sum()
}

/// How long before `at` lag had been above `limit` without a break, counting no further back
/// than `since`: the time a change took to answer the load it answered. `None` if lag was not
/// above `limit` just before `at` (the change answered no backlog).
pub fn reaction(readings: &[Reading], since: f64, at: f64, limit: f64) -> Option<f64> {
    let mut first_over = None;
    for r in readings.iter().filter(|r| r.t >= since && r.t <= at) {
        if r.lag > limit {
            first_over.get_or_insert(r.t);
        } else {
            first_over = None;
        }
    }
    first_over.map(|t| at - t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_counts_at_increasing_times_from_zero() {
        let s: WorkerSchedule = "2@0s, 4@20s,1@40s".parse().unwrap();
        assert_eq!(s.to_string(), "2@0,4@20s,1@40s");
        assert_eq!(s.to_string().parse::<WorkerSchedule>().unwrap(), s);
        assert_eq!(s.workers_at(Duration::from_secs(19)), 2);
        assert_eq!(s.workers_at(Duration::from_secs(20)), 4);
        assert_eq!(s.workers_at(Duration::from_secs(99)), 1);
        assert_eq!(s.peak(), 4);
    }

    #[test]
    fn shrinking_to_none_a_late_start_and_times_out_of_order_are_refused() {
        for (bad, says) in [
            ("2@0s,0@10s", "at least 1"),
            ("2@5s", "the first step is at 5s"),
            ("2@0s,3@10s,1@10s", "10s comes after 10s"),
            ("2@0s,3@10s,1@5s", "5s comes after 10s"),
            ("2,3", "expected COUNT@TIME"),
            ("2@soon", "\"soon\""),
        ] {
            let error = bad.parse::<WorkerSchedule>().unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    fn readings(points: &[(f64, f64, u64)]) -> Vec<Reading> {
        points
            .iter()
            .map(|&(t, lag, done)| Reading { t, lag, done })
            .collect()
    }

    #[test]
    fn a_handover_shows_as_a_pause_a_lag_peak_and_a_recovery() {
        // Steady at lag 2; the change at 10 s stalls the group 0.5 s; lag peaks and drains.
        let r = readings(&[
            (9.9, 2.0, 100),
            (10.0, 2.0, 101),
            (10.1, 12.0, 101),
            (10.3, 32.0, 101),
            (10.5, 52.0, 101),
            (10.6, 40.0, 130),
            (11.0, 10.0, 200),
            (11.5, 2.0, 260),
            (12.0, 2.0, 310),
        ]);
        let f = change_figures(&r, 10.0, 20.0, 5.0);
        assert!((f.pause_s - 0.5).abs() < 1e-9, "{f:?}");
        assert_eq!((f.lag_before, f.lag_peak), (2.0, 52.0));
        assert!((f.recovered_s.unwrap() - 1.5).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn idle_time_is_no_pause_and_lag_that_never_drains_never_recovers() {
        let idle = readings(&[(0.0, 0.0, 5), (1.0, 0.0, 5), (2.0, 0.0, 5)]);
        assert_eq!(change_figures(&idle, 0.0, 2.0, 1.0).pause_s, 0.0);
        assert_eq!(change_figures(&idle, 0.0, 2.0, 1.0).slowest_share, None);
        let growing = readings(&[(0.0, 1.0, 0), (1.0, 50.0, 10), (2.0, 90.0, 20)]);
        let f = change_figures(&growing, 0.0, 2.0, 5.0);
        assert_eq!(f.recovered_s, None);
        assert_eq!(f.lag_peak, 90.0);
    }

    #[test]
    fn a_partial_stall_is_no_pause_but_a_slow_second() {
        // 100/s due; some partitions stop and the rest finish 30/s for 2 s, then catch up.
        let r = readings(&[
            (0.0, 0.0, 0),
            (0.5, 35.0, 15),
            (1.0, 70.0, 30),
            (1.5, 105.0, 45),
            (2.0, 140.0, 60),
            (2.5, 60.0, 190),
            (3.0, 0.0, 300),
        ]);
        let f = change_figures(&r, 0.0, 3.0, 5.0);
        assert_eq!(f.pause_s, 0.0, "something finished all along");
        assert!((f.slowest_share.unwrap() - 0.3).abs() < 1e-9, "{f:?}");
    }

    fn steady(lags: &[f64]) -> Vec<Reading> {
        lags.iter()
            .enumerate()
            .map(|(i, &lag)| Reading {
                t: i as f64 * 0.5,
                lag,
                done: 0,
            })
            .collect()
    }

    #[test]
    fn time_over_the_limit_counts_each_reading_until_the_next() {
        // Readings every 0.5 s; over 20 at 1.0 and 1.5 s with one worker, and at 2.0 s the
        // limit doubles with a second worker.
        let readings = steady(&[0.0, 10.0, 30.0, 50.0, 30.0, 0.0]);
        let workers = |t: f64| if t < 2.0 { 1.0 } else { 2.0 };
        assert_eq!(over_limit(&readings, |t| 20.0 * workers(t)), 1.0);
        assert_eq!(over_limit(&readings, |_| 1000.0), 0.0);
    }

    #[test]
    fn a_reaction_counts_from_when_lag_last_went_over_the_limit() {
        let readings = steady(&[30.0, 0.0, 30.0, 40.0, 50.0, 10.0]);
        // Over since 1.0 s (the dip at 0.5 s broke the first stretch); changed at 2.0 s.
        assert_eq!(reaction(&readings, 0.0, 2.0, 20.0), Some(1.0));
        // Counted no further back than `since`.
        assert_eq!(reaction(&readings, 1.5, 2.0, 20.0), Some(0.5));
        // Lag under the limit just before the change: it answered no backlog.
        assert_eq!(reaction(&readings, 0.0, 2.5, 20.0), None);
    }

    #[test]
    fn each_second_counts_what_came_due_and_what_was_done_in_it() {
        let at = |t: f64, lag: f64, done: u64| Reading { t, lag, done };
        // Second 0: 10 due, 8 done; second 1: 20 more due (lag 2 → 12), 10 done; second 2
        // has no reading; second 3: 0 due, 12 done (the backlog drained).
        let readings = [
            at(0.0, 0.0, 0),
            at(0.5, 1.0, 4),
            at(0.98, 2.0, 8),
            at(1.5, 7.0, 13),
            at(1.99, 12.0, 18),
            at(3.2, 0.0, 30),
        ];
        assert_eq!(
            per_second(&readings),
            [(1.0, 10.0, 8.0), (2.0, 20.0, 10.0), (4.0, 0.0, 12.0)]
        );
        assert!(per_second(&[]).is_empty());
    }
}
