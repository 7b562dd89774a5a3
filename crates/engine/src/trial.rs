//! A capacity trial on any engine: run the load at one rate (or in any shape: elastic's
//! day/night) for a warm-up and a measurement window while sampling how many items were
//! sent, due and done, so the caller can judge whether the engine sustained the load (the lag
//! trend, the rate the source achieved).
//!
//! The sampler reads the run's [`Live`] counters, which every engine bumps, every
//! [`SAMPLE_EVERY`]; the clock starts at the first item sent, so an engine's start-up (worker
//! processes, say) is not charged as lag. A trial whose run goes on its grace (by default
//! [`grace`]) past its window
//! (an overloaded engine draining its backlog, a sender far short of the rate) is stopped
//! then: the window is all the verdict needs, and the items abandoned are not the engine's
//! losses ([`TrialRun::cut`]). The latency a trial is judged on is what came in after its
//! warm-up ([`TrialRun::window_latency`]: the run's latencies less a copy taken as the warm-up
//! ends). Judging a trial and searching for the capacity are `plumbline-scale`'s; this only
//! runs and measures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plumbline_core::Shutdown;
use plumbline_load::Shape;
use plumbline_measure::{LatencySummary, Live, Recorder};

use crate::{Engine, Load, RunFigures};

/// How often the sampler reads the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// One reading: `t` seconds after the first item was sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub sent: u64,
    pub done: u64,
    /// Items the shape had due by `t` (at most the items the trial sends).
    pub due: u64,
}

/// What one trial measured.
#[derive(Clone, Debug)]
pub struct TrialRun {
    pub shape: Shape,
    pub warmup: Duration,
    pub window: Duration,
    pub samples: Vec<Sample>,
    pub figures: RunFigures,
    /// Latency (intended send time → result) of the results that came in after the warm-up,
    /// to within the [`plumbline_measure::FEED_EVERY`] writers hand latencies over at;
    /// `figures.latency` is the whole run's.
    pub window_latency: LatencySummary,
    /// Stopped [`grace`] after its window, before every item was done: `figures.lost` then
    /// counts items abandoned, not lost.
    pub cut: bool,
}

/// How long past its window a trial may run to finish its items (what [`run`] is given,
/// unless the caller must wait longer: a broker's redelivery after a member left).
pub fn grace(warmup: Duration, window: Duration) -> Duration {
    Duration::from_secs(1) + (warmup + window) / 4
}

/// Items a trial at `rate` sends: the first ones of its load, as many as the schedule has due
/// over the warm-up and window.
pub fn items(rate: f64, (warmup, window): (Duration, Duration)) -> u64 {
    (rate * (warmup + window).as_secs_f64()).ceil().max(1.0) as u64
}

/// How many of `shape`'s items are due by each of `times` (seconds, ascending), the first
/// one at 0; none past `cap`. One walk of the schedule for all of them.
fn due_by(shape: &Shape, times: impl IntoIterator<Item = f64>, cap: u64) -> Vec<u64> {
    let mut schedule = shape.schedule(0, 1);
    let mut next = schedule.offset(0);
    let mut due = 0;
    times
        .into_iter()
        .map(|t| {
            while due < cap && next.is_some_and(|at| at.as_secs_f64() <= t) {
                due += 1;
                next = schedule.offset(due);
            }
            due
        })
        .collect()
}

/// Items of `shape` a run of `length` sends: those due before it ends.
fn items_in(shape: &Shape, length: Duration) -> u64 {
    match shape {
        Shape::Constant { rate } => items(*rate, (Duration::ZERO, length)),
        _ => due_by(shape, [length.as_secs_f64() - 1e-9], u64::MAX)[0].max(1),
    }
}

/// Runs `base` (its workload, keys, seed) in `shape` (a constant rate, for capacity) for
/// `warmup + window` on `engine`, reading `live`, which the caller has begun the trial on
/// (its counters start at zero).
pub fn run(
    engine: &dyn Engine,
    base: &Load,
    shape: &Shape,
    (warmup, window, grace): (Duration, Duration, Duration),
    live: &Arc<Live>,
    stop: &Shutdown,
) -> anyhow::Result<TrialRun> {
    let load = Load {
        items: items_in(shape, warmup + window),
        shape: shape.clone(),
        ..base.clone()
    };
    let finished = AtomicBool::new(false);
    let trial_stop = Shutdown::new();
    let watch = Watch {
        live,
        finished: &finished,
        user: stop,
        trial: &trial_stop,
        warmup,
        deadline: warmup + window + grace,
    };
    let (figures, watched) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| watch.sample());
        let figures = engine.run(&load, live, &trial_stop);
        finished.store(true, Ordering::Release);
        (figures, sampler.join().unwrap_or_default())
    });
    let figures = figures?;
    let mut samples = watched.samples;
    let due = due_by(shape, samples.iter().map(|s| s.t), load.items);
    for (sample, due) in samples.iter_mut().zip(due) {
        sample.due = due;
    }
    // A run over before its warm-up was has no window, nor latency in it.
    let window_latency = match &watched.at_warmup {
        Some(earlier) => live
            .run_latency()
            .since(earlier)
            .ok_or_else(|| anyhow::anyhow!("the trial's latencies were reset while it ran"))?,
        None => Recorder::new(),
    };
    Ok(TrialRun {
        shape: shape.clone(),
        warmup,
        window,
        samples,
        figures,
        window_latency: window_latency.summary(),
        cut: watched.cut,
    })
}

/// What the sampler saw.
#[derive(Default)]
struct Watched {
    samples: Vec<Sample>,
    /// The deadline cut the run.
    cut: bool,
    /// The run's latencies as the warm-up ended.
    at_warmup: Option<Recorder>,
}

/// The sampler, which also stops the run at the user's word or the trial's deadline.
struct Watch<'a> {
    live: &'a Live,
    finished: &'a AtomicBool,
    user: &'a Shutdown,
    trial: &'a Shutdown,
    /// After the first item.
    warmup: Duration,
    deadline: Duration,
}

impl Watch<'_> {
    fn sample(&self) -> Watched {
        let mut seen = Watched::default();
        let mut first: Option<Instant> = None;
        while !self.finished.load(Ordering::Acquire) {
            let sent = self.live.items_in.load(Ordering::Relaxed);
            let done = self.live.items_out.load(Ordering::Relaxed);
            let now = Instant::now();
            if sent > 0 {
                let t0 = *first.get_or_insert(now);
                let since = now.duration_since(t0);
                seen.samples.push(Sample {
                    t: since.as_secs_f64(),
                    sent,
                    done,
                    due: 0,
                });
                if seen.at_warmup.is_none() && since >= self.warmup {
                    seen.at_warmup = Some(self.live.run_latency());
                }
                if !seen.cut && since > self.deadline {
                    seen.cut = true;
                    self.trial.request();
                }
            }
            if self.user.requested() {
                self.trial.request();
            }
            std::thread::sleep(SAMPLE_EVERY);
        }
        seen
    }
}

impl TrialRun {
    /// The rate the trial offered (a shaped one's mean).
    pub fn rate(&self) -> f64 {
        self.shape.mean_rate().unwrap_or(f64::INFINITY)
    }

    fn in_window(&self) -> impl Iterator<Item = &Sample> {
        let (from, to) = (
            self.warmup.as_secs_f64(),
            (self.warmup + self.window).as_secs_f64(),
        );
        self.samples
            .iter()
            .filter(move |s| s.t >= from && s.t <= to)
    }

    /// Items due by the schedule at `t` but not done over the window: open-loop lag, which
    /// grows when the engine falls behind whether or not it holds the source back.
    pub fn lag(&self) -> Vec<(f64, f64)> {
        self.in_window().map(|s| self.lag_at(s)).collect()
    }

    /// The lag over the whole trial, warm-up and any drain past the window included, for
    /// charts.
    pub fn lag_over_time(&self) -> Vec<(f64, f64)> {
        self.samples.iter().map(|s| self.lag_at(s)).collect()
    }

    /// One sample's (t, items due by the schedule and not done).
    pub fn lag_at(&self, s: &Sample) -> (f64, f64) {
        (s.t, s.due as f64 - s.done as f64)
    }

    /// Items the source sent per second over the window: the trend of the sent count, so
    /// that where a sample falls between two sends (1.5 % of 125 items at 83/s over 1.5 s)
    /// does not read as a short sender.
    ///
    /// A shaped load (a day/night) is sent faster and slower on purpose, so its trend means
    /// nothing: it gets the mean over the window instead, to set beside the shape's mean.
    pub fn achieved(&self) -> f64 {
        let sent: Vec<(f64, f64)> = self.in_window().map(|s| (s.t, s.sent as f64)).collect();
        if !matches!(self.shape, Shape::Constant { .. }) {
            return match (sent.first(), sent.last()) {
                (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) / (b.0 - a.0),
                _ => 0.0,
            };
        }
        plumbline_scale::trend::slope(&sent).unwrap_or(0.0)
    }

    /// Mean of sent − done over the window: what the engine held. A source that fell short
    /// while the engine held next to nothing was itself the limit; one that fell short
    /// against full queues was held back by the engine.
    pub fn mean_in_flight(&self) -> f64 {
        let window: Vec<f64> = self
            .in_window()
            .map(|s| s.sent.saturating_sub(s.done) as f64)
            .collect();
        if window.is_empty() {
            0.0
        } else {
            window.iter().sum::<f64>() / window.len() as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_measure::Recorder;

    /// A trial at a constant `rate` of 300 items, its samples' `due` filled in by the shape.
    fn trial(rate: f64, mut samples: Vec<Sample>) -> TrialRun {
        let shape = Shape::Constant { rate };
        let due = due_by(&shape, samples.iter().map(|s| s.t), 300);
        for (sample, due) in samples.iter_mut().zip(due) {
            sample.due = due;
        }
        TrialRun {
            shape,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(2),
            samples,
            figures: RunFigures {
                wall: Duration::from_secs(3),
                sent: 300,
                delivered: 300,
                lost: 0,
                duplicates: 0,
                latency: Recorder::new().summary(),
                work: Recorder::new().summary(),
                per_worker: vec![300],
                final_state: None,
                rejected: 0,
                first_rejection: None,
                interrupted: false,
                continuity: None,
            },
            window_latency: Recorder::new().summary(),
            cut: false,
        }
    }

    /// An engine whose results take 1 s for its first 300 ms, then 1 ms, for 600 ms in all.
    struct SlowStart;

    impl Engine for SlowStart {
        fn workers(&self) -> usize {
            1
        }

        fn describe(&self) -> String {
            "a slow starter".into()
        }

        fn run(&self, _: &Load, live: &Arc<Live>, _: &Shutdown) -> anyhow::Result<RunFigures> {
            let start = Instant::now();
            let (mut all, mut batch) = (Recorder::new(), Recorder::new());
            let mut items = 0;
            while start.elapsed() < Duration::from_millis(600) {
                live.items_in.fetch_add(1, Ordering::Relaxed);
                live.items_out.fetch_add(1, Ordering::Relaxed);
                items += 1;
                let ns = if start.elapsed() < Duration::from_millis(300) {
                    1_000_000_000
                } else {
                    1_000_000
                };
                all.record_ns(ns);
                batch.record_ns(ns);
                live.add_latencies(&mut batch);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(RunFigures {
                latency: all.summary(),
                sent: items,
                delivered: items,
                per_worker: vec![items],
                ..trial(100.0, vec![]).figures
            })
        }
    }

    #[test]
    fn latency_from_the_warm_up_is_left_out_of_the_window() {
        let live = Arc::new(Live::new());
        live.begin_run(plumbline_measure::RunInfo::default());
        let load = Load {
            workload: plumbline_load::Workload::votes("a").unwrap(),
            keys: plumbline_load::KeyDist::Uniform,
            seed: 7,
            items: 0,
            shape: Shape::Max,
        };
        let (warmup, window) = (Duration::from_millis(300), Duration::from_millis(300));
        let timing = (warmup, window, grace(warmup, window));
        let at = Shape::Constant { rate: 100.0 };
        let run = super::run(&SlowStart, &load, &at, timing, &live, &Shutdown::new()).unwrap();
        assert!(
            run.figures.latency.p99 > 0.5,
            "the whole run holds the slow start"
        );
        let window = &run.window_latency;
        assert!(window.count > 10, "{window:?}");
        assert!(window.p99 < 0.1, "window p99 {} s", window.p99);
    }

    #[test]
    fn a_kept_up_run_has_flat_lag_and_the_full_rate_in_the_window_only() {
        // 100/s sent and done on time, sampled every 0.5 s from 0 to 3 s.
        let samples = (0..=6)
            .map(|i| {
                let t = i as f64 * 0.5;
                let n = (100.0 * t) as u64;
                Sample {
                    t,
                    sent: n,
                    done: n,
                    due: 0,
                }
            })
            .collect();
        let run = trial(100.0, samples);
        let lag = run.lag();
        assert_eq!(
            lag.first().map(|l| l.0),
            Some(1.0),
            "warm-up samples left out"
        );
        assert_eq!(lag.last().map(|l| l.0), Some(3.0));
        assert!(
            lag.iter().all(|&(_, l)| (0.0..=1.0).contains(&l)),
            "{lag:?}"
        );
        assert!((run.achieved() - 100.0).abs() < 1e-9);
        assert_eq!(run.mean_in_flight(), 0.0);
    }

    #[test]
    fn an_engine_that_holds_the_source_back_shows_growing_lag_and_full_queues() {
        // The source gets only 60/s in; the engine holds 50 all along.
        let samples = (0..=6)
            .map(|i| {
                let t = i as f64 * 0.5;
                let sent = (60.0 * t) as u64 + 50;
                Sample {
                    t,
                    sent,
                    done: sent - 50,
                    due: 0,
                }
            })
            .collect();
        let run = trial(100.0, samples);
        let lag = run.lag();
        assert!(
            lag.last().unwrap().1 > lag.first().unwrap().1 + 70.0,
            "{lag:?}"
        );
        assert!((run.achieved() - 60.0).abs() < 1e-9);
        assert_eq!(run.mean_in_flight(), 50.0);
    }

    #[test]
    fn a_shaped_load_is_due_as_its_schedule_has_it_and_sends_what_falls_in_the_run() {
        // 1 s at 100/s, then 1 s at 300/s: 400 items in all.
        let shape = Shape::Steps(vec![
            (100.0, Duration::from_secs(1)),
            (300.0, Duration::from_secs(1)),
        ]);
        assert_eq!(
            due_by(&shape, [0.0, 0.505, 1.499, 5.0], u64::MAX),
            [1, 51, 250, 400]
        );
        assert_eq!(
            due_by(&shape, [5.0], 300),
            [300],
            "never past the items sent"
        );
        assert_eq!(items_in(&shape, Duration::from_secs(1)), 100);
        assert_eq!(items_in(&shape, Duration::from_secs(3)), 400);
        assert_eq!(
            items_in(&Shape::Constant { rate: 100.0 }, Duration::from_secs(1)),
            items(100.0, (Duration::ZERO, Duration::from_secs(1)))
        );
    }
}
