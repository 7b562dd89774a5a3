//! Load shapes: when each message is due, as an offset from the run start.
//!
//! A [`Shape`] is the user's description (constant rate, Giles' batch-per-interval, steps, a
//! linear ramp, Poisson arrivals, a CSV of rates, seed 003's day/night cycle, or as fast as
//! possible). [`Shape::schedule`] turns it into one [`Schedule`] per sender thread: thread `t` of
//! `T` sends the global messages `t, t+T, t+2T, …`, so the threads share the rate. Deterministic
//! shapes are pure functions of the message number; Poisson gives each thread its own Poisson
//! process at `rate/T` (their superposition is Poisson at `rate`). Schedules never look at the
//! clock: the sender compares offsets with the clock, and sending late never moves a deadline.

use std::fmt::Write as _;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Most stretches of constant rate a day/night shape may have (breakpoints × cycles).
pub const MAX_STRETCHES: usize = 1_000_000;
/// Latest time a rate CSV may name, in seconds (about 31 years).
const MAX_CSV_SECONDS: f64 = 1e9;

/// Seed 003's default 24-hour cycle: the share of the maximum rate in each hour.
pub const DAY_NIGHT: [f64; 24] = [
    0.03, 0.06, 0.09, 0.12, 0.266, 0.412, 0.558, 0.704, 0.85, 0.7625, 0.675, 0.587, 0.5, 0.59,
    0.68, 0.77, 0.86, 0.97, 0.813, 0.656, 0.5, 0.343, 0.186, 0.03,
];

/// When a thread's messages are due.
pub trait Schedule: Send {
    /// Offset from the run start at which this thread's `k`-th message (from 0) is due, or `None`
    /// when the shape has no such message. Called with `k = 0, 1, 2, …` in order.
    fn offset(&mut self, k: u64) -> Option<Duration>;
}

/// A load shape as the user described it. Rates are messages per second.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// Every message due at the start: send as fast as the connection takes them.
    Max,
    Constant {
        rate: f64,
    },
    /// Giles: `size` messages every `interval`.
    Batch {
        size: u64,
        interval: Duration,
    },
    /// Piecewise-constant rates: (rate, how long).
    Steps(Vec<(f64, Duration)>),
    /// Rate rising (or falling) linearly from `from` to `to` over `over`.
    Ramp {
        from: f64,
        to: f64,
        over: Duration,
    },
    Poisson {
        rate: f64,
        seed: u64,
    },
    /// Seed 003: `cycles` repetitions of the 24-point day, stretched to `breakpoints` points by
    /// linear interpolation, each cycle `duration / cycles` long, peaking at `max_rate`.
    DayNight {
        breakpoints: usize,
        cycles: usize,
        duration: Duration,
        max_rate: f64,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("rate {0} must be a positive, finite number of messages per second")]
    Rate(f64),
    #[error("'{0}' is not a rate: use e.g. 2000/s, 1.5k/s, 2M/s or max")]
    RateText(String),
    #[error("a step or ramp needs a non-zero duration")]
    ZeroDuration,
    #[error("--breakpoints {0}: the day/night cycle needs at least 2 breakpoints")]
    Breakpoints(usize),
    #[error("--cycles 0: the day/night shape needs at least 1 cycle")]
    Cycles,
    #[error("a batch needs at least 1 message (--batch-size 0)")]
    Batch,
    #[error("--interval 0 schedules every batch at once: use --rate max for as fast as possible")]
    ZeroInterval,
    #[error("{0} breakpoints in all (breakpoints × cycles) is more than {MAX_STRETCHES}")]
    TooManyStretches(usize),
    #[error("line {line} of the rate CSV: {reason}")]
    Csv { line: usize, reason: String },
    #[error(
        "the rate CSV has no rows: expected lines of 'seconds,rate', ending with the end time"
    )]
    EmptyCsv,
}

/// Reads a rate as typed: `2000/s`, `2000`, `1.5k/s`, or `max` (as fast as possible: `None`).
pub fn parse_rate(text: &str) -> Result<Option<f64>, ShapeError> {
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    let number = t.strip_suffix("/s").unwrap_or(t).replace('_', "");
    let (number, scale) = match number.strip_suffix('k') {
        Some(n) => (n.to_string(), 1e3),
        None => match number.strip_suffix('M') {
            Some(n) => (n.to_string(), 1e6),
            None => (number, 1.0),
        },
    };
    let rate = number
        .parse::<f64>()
        .map(|r| r * scale)
        .map_err(|_| ShapeError::RateText(text.to_string()))?;
    check_rate(rate)?;
    Ok(Some(rate))
}

fn check_rate(rate: f64) -> Result<(), ShapeError> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(ShapeError::Rate(rate))
    }
}

/// One stretch of constant rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub start: Duration,
    pub end: Duration,
    pub rate: f64,
}

impl Shape {
    /// Reads a CSV of `seconds,rate` rows: each rate holds from its time until the next row's;
    /// the last row only marks the end. A header line and blank lines are skipped.
    pub fn from_csv(text: &str) -> Result<Self, ShapeError> {
        let mut rows: Vec<(f64, f64)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            let first_field_is_text = |l: &str| {
                l.split(',')
                    .next()
                    .is_some_and(|f| f.trim().parse::<f64>().is_err())
            };
            if line.is_empty() || (i == 0 && first_field_is_text(line)) {
                continue;
            }
            let bad = |reason: String| ShapeError::Csv {
                line: i + 1,
                reason,
            };
            let (t, r) = line
                .split_once(',')
                .ok_or_else(|| bad(format!("{line:?} is not 'seconds,rate'")))?;
            let t: f64 = t
                .trim()
                .parse()
                .map_err(|_| bad(format!("time {t:?} is not a number")))?;
            let r: f64 = r
                .trim()
                .parse()
                .map_err(|_| bad(format!("rate {r:?} is not a number")))?;
            if !(t.is_finite() && r.is_finite() && r >= 0.0 && t <= MAX_CSV_SECONDS) {
                return Err(bad(format!(
                    "time {t} and rate {r} must be finite, the rate >= 0 and the time at most \
                     {MAX_CSV_SECONDS} s"
                )));
            }
            if let Some(&(prev, _)) = rows.last() {
                if t <= prev {
                    return Err(bad(format!("time {t} does not come after {prev}")));
                }
            } else if t != 0.0 {
                return Err(bad(format!("the first row must start at 0, not {t}")));
            }
            rows.push((t, r));
        }
        if rows.len() < 2 {
            return Err(ShapeError::EmptyCsv);
        }
        Ok(Shape::Steps(
            rows.windows(2)
                .map(|w| (w[0].1, Duration::from_secs_f64(w[1].0 - w[0].0)))
                .collect(),
        ))
    }

    pub fn validate(&self) -> Result<(), ShapeError> {
        match self {
            Shape::Max => Ok(()),
            Shape::Constant { rate } | Shape::Poisson { rate, .. } => check_rate(*rate),
            Shape::Batch { size: 0, .. } => Err(ShapeError::Batch),
            Shape::Batch { interval, .. } if interval.is_zero() => Err(ShapeError::ZeroInterval),
            Shape::Batch { .. } => Ok(()),
            Shape::Steps(steps) => steps.iter().try_for_each(|&(rate, d)| {
                if d.is_zero() {
                    Err(ShapeError::ZeroDuration)
                } else if rate.is_finite() && rate >= 0.0 {
                    Ok(())
                } else {
                    Err(ShapeError::Rate(rate))
                }
            }),
            Shape::Ramp { from, to, over } => {
                if over.is_zero() {
                    return Err(ShapeError::ZeroDuration);
                }
                for r in [from, to] {
                    if !(r.is_finite() && *r >= 0.0) {
                        return Err(ShapeError::Rate(*r));
                    }
                }
                check_rate(from.max(*to))
            }
            Shape::DayNight {
                breakpoints,
                cycles,
                duration,
                max_rate,
            } => {
                if *breakpoints < 2 {
                    return Err(ShapeError::Breakpoints(*breakpoints));
                }
                if *cycles == 0 {
                    return Err(ShapeError::Cycles);
                }
                if breakpoints.saturating_mul(*cycles) > MAX_STRETCHES {
                    return Err(ShapeError::TooManyStretches(
                        breakpoints.saturating_mul(*cycles),
                    ));
                }
                if duration.is_zero() {
                    return Err(ShapeError::ZeroDuration);
                }
                check_rate(*max_rate)
            }
        }
    }

    /// A constant `rate`, or with none every message at once.
    pub fn at(rate: Option<f64>) -> Shape {
        rate.map_or(Shape::Max, |rate| Shape::Constant { rate })
    }

    /// The mean rate the shape asks for, if it has one (`Max` has none).
    pub fn mean_rate(&self) -> Option<f64> {
        match self {
            Shape::Max => None,
            Shape::Constant { rate } | Shape::Poisson { rate, .. } => Some(*rate),
            Shape::Batch { size, interval } => Some(*size as f64 / interval.as_secs_f64()),
            Shape::Ramp { from, to, .. } => Some((from + to) / 2.0),
            Shape::Steps(_) | Shape::DayNight { .. } => {
                let segments = self.segments();
                let end = segments.last()?.end.as_secs_f64();
                let count: f64 = segments
                    .iter()
                    .map(|s| s.rate * (s.end - s.start).as_secs_f64())
                    .sum();
                Some(count / end)
            }
        }
    }

    /// The shape's own end, if it has one.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Shape::Ramp { over, .. } => Some(*over),
            _ => self.segments().last().map(|s| s.end),
        }
    }

    /// The stretches of constant rate of piecewise shapes (steps, CSV, day/night); empty for the
    /// others.
    pub fn segments(&self) -> Vec<Segment> {
        let pieces: Vec<(f64, Duration)> = match self {
            Shape::Steps(steps) => steps.clone(),
            Shape::DayNight {
                breakpoints,
                cycles,
                duration,
                max_rate,
            } => {
                let each = *duration / (*breakpoints * *cycles) as u32;
                let day = stretch(&DAY_NIGHT, *breakpoints);
                (0..*cycles)
                    .flat_map(|_| day.iter().map(|share| (share * max_rate, each)))
                    .collect()
            }
            _ => return Vec::new(),
        };
        let mut start = Duration::ZERO;
        pieces
            .into_iter()
            .map(|(rate, len)| {
                let segment = Segment {
                    start,
                    end: start + len,
                    rate,
                };
                start += len;
                segment
            })
            .collect()
    }

    /// The schedule of thread `thread` of `threads`.
    pub fn schedule(&self, thread: u64, threads: u64) -> Box<dyn Schedule> {
        match self {
            Shape::Poisson { rate, seed } => Box::new(PoissonSchedule {
                rate: rate / threads as f64,
                rng: ChaCha8Rng::seed_from_u64(seed ^ thread.wrapping_mul(0x9e37_79b9)),
                at: 0.0,
            }),
            _ => Box::new(Interleaved {
                global: GlobalSchedule::new(self),
                thread,
                threads,
            }),
        }
    }

    /// A table of the shape, for `--dry-run`: one row per stretch of constant rate, with its
    /// share of the peak rate (for day/night, of `--max-mbps`: the seed's percentages).
    pub fn describe(&self, bytes_per_message: usize) -> String {
        let mut out = String::new();
        let segments = self.segments();
        if segments.is_empty() {
            let _ = writeln!(out, "{self:?}: no stretches to list");
            return out;
        }
        let peak = match self {
            Shape::DayNight { max_rate, .. } => *max_rate,
            _ => segments.iter().map(|s| s.rate).fold(0.0, f64::max),
        };
        let _ = writeln!(
            out,
            "{:>10} {:>10} {:>10} {:>8} {:>10} {:>12}",
            "breakpoint", "start_s", "end_s", "share", "MB/s", "msgs/s"
        );
        for (i, s) in segments.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:>10} {:>10.3} {:>10.3} {:>8.4} {:>10.4} {:>12.1}",
                i,
                s.start.as_secs_f64(),
                s.end.as_secs_f64(),
                if peak > 0.0 { s.rate / peak } else { 0.0 },
                s.rate * bytes_per_message as f64 / 1e6,
                s.rate
            );
        }
        out
    }
}

/// `points` stretched to `n` values by linear interpolation at `n` evenly spaced positions over
/// the same span (numpy's `interp(linspace(0, len-1, n), arange(len), points)`).
pub fn stretch(points: &[f64], n: usize) -> Vec<f64> {
    let last = (points.len() - 1) as f64;
    (0..n)
        .map(|i| {
            let x = if n == 1 {
                0.0
            } else {
                last * i as f64 / (n - 1) as f64
            };
            let lo = (x.floor() as usize).min(points.len() - 2);
            let frac = x - lo as f64;
            points[lo] + (points[lo + 1] - points[lo]) * frac
        })
        .collect()
}

/// A deterministic shape as a function of the global message number.
#[derive(Clone, Debug)]
enum GlobalSchedule {
    Max,
    Constant(f64),
    Batch(u64, Duration),
    /// Segments with the message count reached at each segment's start.
    Piecewise(Vec<(Segment, f64)>),
    Ramp {
        from: f64,
        slope: f64,
        over: f64,
    },
}

impl GlobalSchedule {
    fn new(shape: &Shape) -> Self {
        match shape {
            Shape::Max => GlobalSchedule::Max,
            Shape::Constant { rate } | Shape::Poisson { rate, .. } => {
                GlobalSchedule::Constant(*rate)
            }
            Shape::Batch { size, interval } => GlobalSchedule::Batch(*size, *interval),
            Shape::Ramp { from, to, over } => GlobalSchedule::Ramp {
                from: *from,
                slope: (to - from) / over.as_secs_f64(),
                over: over.as_secs_f64(),
            },
            Shape::Steps(_) | Shape::DayNight { .. } => {
                let mut count = 0.0;
                GlobalSchedule::Piecewise(
                    shape
                        .segments()
                        .into_iter()
                        .map(|s| {
                            let at = count;
                            // Rounded to a millionth of a message, so 50/s × 1.1 s is 55, not
                            // 55.000…07, and boundaries land where the user wrote them.
                            count = ((count + s.rate * (s.end - s.start).as_secs_f64()) * 1e6)
                                .round()
                                / 1e6;
                            (s, at)
                        })
                        .collect(),
                )
            }
        }
    }

    fn offset(&self, n: u64) -> Option<Duration> {
        let secs = match *self {
            GlobalSchedule::Max => 0.0,
            GlobalSchedule::Constant(rate) => n as f64 / rate,
            GlobalSchedule::Batch(size, interval) => {
                let ns = interval.as_nanos().checked_mul(u128::from(n / size))?;
                return u64::try_from(ns).ok().map(Duration::from_nanos);
            }
            GlobalSchedule::Ramp { from, slope, over } => {
                // Messages due by t: from·t + slope·t²/2; message n is due when that reaches n.
                let n = n as f64;
                let t = if slope.abs() < 1e-12 {
                    n / from
                } else {
                    let disc = from * from + 2.0 * slope * n;
                    if disc < 0.0 {
                        return None;
                    }
                    (disc.sqrt() - from) / slope
                };
                if !(t.is_finite() && t < over) {
                    return None;
                }
                t
            }
            GlobalSchedule::Piecewise(ref segments) => {
                let n = n as f64;
                // The stretch holding message n: the last that starts at or before it, walked
                // back over silent stretches; if float rounding puts n at that stretch's very
                // end, it belongs to the next stretch that sends at all.
                let i = segments.partition_point(|(_, at)| *at <= n);
                let first = segments[..i].iter().rposition(|(s, _)| s.rate > 0.0)?;
                segments[first..]
                    .iter()
                    .filter(|(s, _)| s.rate > 0.0)
                    .map(|(s, at)| (s, s.start.as_secs_f64() + (n - at).max(0.0) / s.rate))
                    .find(|(s, t)| *t < s.end.as_secs_f64())
                    .map(|(_, t)| t)?
            }
        };
        // An offset too far to represent (a vanishing rate) ends the schedule.
        Duration::try_from_secs_f64(secs).ok()
    }
}

/// Thread `thread`'s share of a deterministic shape: global messages `thread + k·threads`.
struct Interleaved {
    global: GlobalSchedule,
    thread: u64,
    threads: u64,
}

impl Schedule for Interleaved {
    fn offset(&mut self, k: u64) -> Option<Duration> {
        self.global
            .offset(k.checked_mul(self.threads)?.checked_add(self.thread)?)
    }
}

struct PoissonSchedule {
    rate: f64,
    rng: ChaCha8Rng,
    at: f64,
}

impl Schedule for PoissonSchedule {
    fn offset(&mut self, k: u64) -> Option<Duration> {
        if k > 0 {
            // Exponential gap by inversion; 1 - u is in (0, 1], so ln is finite.
            let u: f64 = self.rng.gen();
            self.at += -(1.0 - u).ln() / self.rate;
        }
        Duration::try_from_secs_f64(self.at).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offsets(shape: &Shape, thread: u64, threads: u64, n: u64) -> Vec<Duration> {
        let mut s = shape.schedule(thread, threads);
        (0..n).map_while(|k| s.offset(k)).collect()
    }

    #[test]
    fn day_night_stretch_interpolates_like_numpy() {
        // Spot values of the seed README's 48-point table; the whole table is checked end to
        // end against `send --dry-run` in crates/cli/tests/send_receive.rs.
        let ours = stretch(&DAY_NIGHT, 48);
        for (i, seed) in [(1, 0.0447), (7, 0.1821), (35, 0.95), (47, 0.03)] {
            assert!(
                (ours[i] - seed).abs() < 0.0005,
                "breakpoint {i}: {} vs {seed}",
                ours[i]
            );
        }
        assert_eq!(stretch(&DAY_NIGHT, 24), DAY_NIGHT.to_vec());
    }

    #[test]
    fn day_night_segments_follow_the_readme() {
        // Each cycle duration / cycles, each breakpoint duration / (cycles × breakpoints).
        let shape = Shape::DayNight {
            breakpoints: 24,
            cycles: 2,
            duration: Duration::from_secs(48),
            max_rate: 1000.0,
        };
        let segments = shape.segments();
        assert_eq!(segments.len(), 48);
        assert_eq!(segments[1].start, Duration::from_secs(1));
        assert_eq!(segments[24].rate, 30.0, "the second cycle starts over");
        assert_eq!(shape.duration(), Some(Duration::from_secs(48)));
        let table = shape.describe(1000);
        assert!(table.contains("0.9700"), "{table}");
    }

    #[test]
    fn giles_batches_share_a_deadline() {
        let shape = Shape::Batch {
            size: 20,
            interval: Duration::from_micros(100),
        };
        let o = offsets(&shape, 0, 1, 41);
        assert_eq!(o[19], Duration::ZERO);
        assert_eq!(o[20], Duration::from_micros(100));
        assert_eq!(o[40], Duration::from_micros(200));
    }

    #[test]
    fn threads_interleave_the_global_schedule() {
        let shape = Shape::Constant { rate: 1000.0 };
        assert_eq!(
            offsets(&shape, 1, 4, 2),
            vec![Duration::from_millis(1), Duration::from_millis(5)]
        );
    }

    #[test]
    fn steps_end_and_skip_silent_stretches() {
        let shape = Shape::from_csv("time,rate\n0,10\n1,0\n2,20\n3,0\n").unwrap();
        let o = offsets(&shape, 0, 1, 1000);
        assert_eq!(o.len(), 30);
        assert_eq!(o[10], Duration::from_secs(2));
        assert!(o
            .iter()
            .all(|t| *t < Duration::from_secs(1) || *t >= Duration::from_secs(2)));
    }

    #[test]
    fn ramp_delivers_the_area_under_the_rate() {
        let shape = Shape::Ramp {
            from: 100.0,
            to: 300.0,
            over: Duration::from_secs(10),
        };
        let o = offsets(&shape, 0, 1, 10_000);
        assert_eq!(o.len(), 2000, "mean rate 200/s for 10 s");
        let first_half = o.iter().filter(|t| **t < Duration::from_secs(5)).count();
        assert_eq!(first_half, 750);
    }

    #[test]
    fn poisson_has_its_rate_in_the_long_run() {
        let shape = Shape::Poisson {
            rate: 1000.0,
            seed: 3,
        };
        let o = offsets(&shape, 0, 2, 5000);
        let rate = 5000.0 / o[4999].as_secs_f64();
        assert!((450.0..550.0).contains(&rate), "thread rate {rate}");
    }

    #[test]
    fn a_boundary_lost_to_float_rounding_still_sends_the_next_step() {
        // 50 × 1.1 = 55.000…07 in floats: message 55 must start the second step, not end it.
        let shape = Shape::Steps(vec![
            (50.0, Duration::from_millis(1100)),
            (10.0, Duration::from_secs(1)),
        ]);
        let o = offsets(&shape, 0, 1, 1000);
        assert_eq!(o.len(), 65);
        assert!(o[55] >= Duration::from_millis(1100) && o[55] < Duration::from_millis(1101));
    }

    #[test]
    fn far_offsets_end_the_schedule_instead_of_panicking() {
        assert!(offsets(&Shape::Constant { rate: 1e-20 }, 0, 1, 3).len() < 3);
        let batch = Shape::Batch {
            size: 1,
            interval: Duration::from_micros(1),
        };
        let mut s = batch.schedule(0, 1);
        assert_eq!(s.offset(1 << 33), Some(Duration::from_micros(1 << 33)));
        assert!(matches!(
            Shape::Batch {
                size: 1,
                interval: Duration::ZERO
            }
            .validate(),
            Err(ShapeError::ZeroInterval)
        ));
        assert!(Shape::from_csv("0,1\n1e30,0\n").is_err());
        let huge = Shape::DayNight {
            breakpoints: 1 << 32,
            cycles: 1,
            duration: Duration::from_secs(1),
            max_rate: 1.0,
        };
        assert!(matches!(
            huge.validate(),
            Err(ShapeError::TooManyStretches(_))
        ));
    }

    #[test]
    fn rates_read_as_typed() {
        assert_eq!(parse_rate("2000/s"), Ok(Some(2000.0)));
        assert_eq!(parse_rate("200_000"), Ok(Some(200_000.0)));
        assert_eq!(parse_rate("1.5k/s"), Ok(Some(1500.0)));
        assert_eq!(parse_rate("2M/s"), Ok(Some(2e6)));
        assert_eq!(parse_rate("max"), Ok(None));
        assert_eq!(parse_rate("fast"), Err(ShapeError::RateText("fast".into())));
        assert_eq!(parse_rate("0/s"), Err(ShapeError::Rate(0.0)));
    }

    #[test]
    fn bad_shapes_are_named() {
        assert_eq!(
            Shape::Constant { rate: 0.0 }.validate(),
            Err(ShapeError::Rate(0.0))
        );
        assert!(matches!(
            Shape::from_csv("0,5\n0,6\n"),
            Err(ShapeError::Csv { line: 2, .. })
        ));
        assert!(matches!(
            Shape::from_csv("0,x\n"),
            Err(ShapeError::Csv { line: 1, .. })
        ));
        assert_eq!(Shape::from_csv("\n"), Err(ShapeError::EmptyCsv));
        let d = Shape::DayNight {
            breakpoints: 1,
            cycles: 1,
            duration: Duration::from_secs(1),
            max_rate: 1.0,
        };
        assert_eq!(d.validate(), Err(ShapeError::Breakpoints(1)));
    }

    proptest! {
        #[test]
        fn offsets_never_go_backwards(rate in 1.0f64..1e6, threads in 1u64..8) {
            for shape in [
                Shape::Constant { rate },
                Shape::Ramp { from: rate, to: rate / 3.0, over: Duration::from_secs(5) },
                Shape::Steps(vec![(rate, Duration::from_secs(1)), (rate * 2.0, Duration::from_secs(1))]),
                Shape::Poisson { rate, seed: 1 },
            ] {
                for t in 0..threads {
                    let o = offsets(&shape, t, threads, 200);
                    prop_assert!(o.windows(2).all(|w| w[0] <= w[1]), "{shape:?}");
                }
            }
        }

        #[test]
        fn constant_rate_sends_rate_times_duration(rate in 1.0f64..10_000.0, secs in 1u64..5) {
            let shape = Shape::Steps(vec![(rate, Duration::from_secs(secs))]);
            let n = offsets(&shape, 0, 1, 100_000).len() as f64;
            prop_assert!((n - rate * secs as f64).abs() <= 1.0);
        }
    }
}
