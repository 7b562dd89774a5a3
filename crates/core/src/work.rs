//! Work models: what one item costs a worker, and the timer that makes it cost exactly that.
//!
//! * `sleep`: waits without holding a core (an I/O-bound step).
//! * `spin`: burns the whole delay in CPU time, holding a core the way seed 000's GIL-holding
//!   Python step does. It counts the thread's CPU clock, not the wall clock: a spinner that the
//!   OS preempts (10 workers on 2 cores) has not done its work yet, and must not pretend it has.
//! * `hybrid:F`: sleeps, then spins the last fraction `F` of the delay (default 0.5).
//!
//! Precision: on a VM a 10 ms `thread::sleep` overshoots by 0.1–0.25 ms, which alone would be a
//! 1–2 % overhead charged to the plumbing. So sleeps go through [`Sleeper`], which wakes early by
//! the thread's measured wake-up latency and yields out the remainder, landing within
//! microseconds.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::clock::Sleeper;

/// How an item's delay is spent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    Sleep,
    Spin,
    /// Sleep, then spin the last `spin_fraction` of the delay.
    Hybrid {
        spin_fraction: f64,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkError {
    #[error("'{0}' is not a work model: use sleep, spin or hybrid[:F] (F = share spun, 0..=1)")]
    Unknown(String),
}

impl FromStr for Work {
    type Err = WorkError;

    fn from_str(s: &str) -> Result<Self, WorkError> {
        match s {
            "sleep" => Ok(Work::Sleep),
            "spin" => Ok(Work::Spin),
            "hybrid" => Ok(Work::Hybrid { spin_fraction: 0.5 }),
            _ => s
                .strip_prefix("hybrid:")
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| (0.0..=1.0).contains(f))
                .map(|spin_fraction| Work::Hybrid { spin_fraction })
                .ok_or_else(|| WorkError::Unknown(s.to_string())),
        }
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::Sleep => f.write_str("sleep"),
            Work::Spin => f.write_str("spin"),
            Work::Hybrid { spin_fraction } => write!(f, "hybrid:{spin_fraction}"),
        }
    }
}

impl Work {
    /// The part of `delay` that holds a core.
    pub fn cpu_time(&self, delay: Duration) -> Duration {
        match self {
            Work::Sleep => Duration::ZERO,
            Work::Spin => delay,
            Work::Hybrid { spin_fraction } => delay.mul_f64(*spin_fraction),
        }
    }
}

/// A per-thread timer that performs [`Work`]. Its [`Sleeper`] learns how late this thread wakes,
/// so it is not `Sync`: give each worker its own.
///
/// The thread's work timeline is kept exact: when an item starts straight after the previous
/// one (within [`BACK_TO_BACK`]) and that one's sleep ended late, by at most an eighth of the
/// delay, this item's sleep is shortened by as much. So n items back to back cost n × delay plus
/// the last one's lateness, not n × (delay + wake-up latency): with 20 sleeping threads on 2
/// cores a wake-up is ~40 µs late on average (p99 ~0.5 ms), which would otherwise be charged as
/// 0.4 % overhead to the plumbing. Gaps between items (the plumbing) are never made up for, and
/// spun CPU time is never shortened: a core shared by spinners must show.
///
/// A worker's own I/O may overlap an item's wait ([`WorkTimer::run_as_while`]), as an I/O-bound
/// step's would: on this VM the first socket write after a 10 ms sleep measured 60–100 µs (a
/// cold core; 2 µs back to back), so flushing the previous result between two items cost a
/// worker process 1 % of a 10 ms item, against ~0 % inside the next item's sleep.
#[derive(Debug)]
pub struct WorkTimer {
    work: Work,
    sleeper: Sleeper,
    /// When the last item's work ended, and how late its sleep ended.
    last: Option<(Instant, Duration)>,
}

/// Longest pause between two items for the second to make up the first one's lateness.
pub const BACK_TO_BACK: Duration = Duration::from_millis(1);

impl WorkTimer {
    pub fn new(work: Work) -> Self {
        Self {
            work,
            sleeper: Sleeper::new(),
            last: None,
        }
    }

    /// Performs one item's work of `delay`, starting now.
    pub fn run(&mut self, delay: Duration) {
        self.run_as(self.work, delay);
    }

    /// Performs one item's work of `delay` the way `work` says, for items that each name their
    /// own model (pipeline task descriptors); the thread's wake-up estimate carries over.
    pub fn run_as(&mut self, work: Work, delay: Duration) {
        self.run_as_while(work, delay, || {});
    }

    /// [`WorkTimer::run`], running `meanwhile` inside the item's wait ([`Self::run_as_while`]).
    pub fn run_while(&mut self, delay: Duration, meanwhile: impl FnOnce()) {
        self.run_as_while(self.work, delay, meanwhile);
    }

    /// Performs one item's work, running `meanwhile` (the worker's pending output: the previous
    /// item's result) exactly once inside the item's wait. The item still costs its full
    /// `delay` from its start, whatever `meanwhile` takes: longer than the wait, and the item
    /// ends late. Work that holds a core has no wait to hide it in, so `meanwhile` runs first,
    /// outside the item's time.
    pub fn run_as_while(&mut self, work: Work, delay: Duration, meanwhile: impl FnOnce()) {
        let cpu = work.cpu_time(delay);
        if cpu == delay {
            // No wait to hide it in (no work at all, or all of it spun): first.
            meanwhile();
            if !delay.is_zero() {
                self.last = None;
                spin_for(cpu, Instant::now() + cpu);
            }
            return;
        }
        let start = Instant::now();
        let owed = match self.last.take() {
            Some((ended, late)) if start.duration_since(ended) <= BACK_TO_BACK => {
                late.min(delay / 8)
            }
            _ => Duration::ZERO,
        };
        let sleep = delay - cpu;
        let sleep_until = start + sleep - owed.min(sleep);
        meanwhile();
        // Only the wake-up's lateness is made up later, never a `meanwhile` that overran.
        let due = sleep_until.max(Instant::now());
        self.sleeper.sleep_until(sleep_until);
        let late = Instant::now().saturating_duration_since(due);
        if !cpu.is_zero() {
            spin_for(cpu, Instant::now() + cpu);
        }
        self.last = Some((Instant::now(), late));
    }
}

/// Burns `cpu` of this thread's CPU time, expected to end at `deadline` if nothing preempts us.
/// Spins on the cheap wall clock, then checks the (syscall) CPU clock and spins on for whatever
/// preemption took.
fn spin_for(cpu: Duration, mut deadline: Instant) {
    let start = thread_cpu_time();
    loop {
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
        let (Some(start), Some(now)) = (start, thread_cpu_time()) else {
            return;
        };
        match cpu.checked_sub(now.saturating_sub(start)) {
            Some(left) if left > Duration::from_micros(1) => deadline = Instant::now() + left,
            _ => return,
        }
    }
}

/// CPU time this thread has used, where the OS tells it.
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_models() {
        assert_eq!("sleep".parse(), Ok(Work::Sleep));
        assert_eq!("spin".parse(), Ok(Work::Spin));
        assert_eq!("hybrid".parse(), Ok(Work::Hybrid { spin_fraction: 0.5 }));
        assert_eq!(
            "hybrid:0.25".parse(),
            Ok(Work::Hybrid {
                spin_fraction: 0.25
            })
        );
        assert!("hybrid:2".parse::<Work>().is_err());
        assert!("nap"
            .parse::<Work>()
            .unwrap_err()
            .to_string()
            .contains("'nap'"));
        assert_eq!(
            Work::Hybrid {
                spin_fraction: 0.25
            }
            .to_string(),
            "hybrid:0.25"
        );
    }

    #[test]
    fn back_to_back_items_make_up_lateness_but_are_never_early_in_total() {
        let mut timer = WorkTimer::new(Work::Sleep);
        let delay = Duration::from_millis(1);
        let start = Instant::now();
        for _ in 0..30 {
            timer.run(delay);
        }
        let total = start.elapsed();
        assert!(total >= delay * 30, "{total:?}");
        // Generous: a loaded 2-core machine can oversleep one item by tens of ms.
        assert!(total < delay * 30 + Duration::from_millis(60), "{total:?}");
    }

    #[test]
    fn what_runs_meanwhile_hides_in_a_sleep_but_not_in_a_spin() {
        let delay = Duration::from_millis(20);
        let chore = Duration::from_millis(15);
        for (work, hidden) in [
            (Work::Sleep, true),
            (Work::Hybrid { spin_fraction: 0.5 }, true),
            (Work::Spin, false),
        ] {
            let mut timer = WorkTimer::new(work);
            let mut ran = 0;
            let start = Instant::now();
            timer.run_as_while(work, delay, || {
                ran += 1;
                std::thread::sleep(chore);
            });
            let took = start.elapsed();
            assert_eq!(ran, 1, "{work}: meanwhile runs exactly once");
            assert!(took >= delay, "{work}: {took:?}");
            if !hidden {
                assert!(took >= delay + chore, "{work}: a spin hid {took:?}");
            }
        }
        // A sleep absorbs its chore: 5 × 20 ms with a 15 ms chore each, where 5 × 35 ms if not.
        let mut timer = WorkTimer::new(Work::Sleep);
        let start = Instant::now();
        for _ in 0..5 {
            timer.run_while(delay, || std::thread::sleep(chore));
        }
        let took = start.elapsed();
        assert!(took >= delay * 5, "{took:?}");
        // 60 ms of slack for a loaded machine, yet below the 175 ms of chores outside the wait.
        assert!(took < delay * 5 + chore * 4, "{took:?}");
        // No wait at all: the chore still runs, once.
        let mut ran = false;
        timer.run_while(Duration::ZERO, || ran = true);
        assert!(ran);
    }

    #[test]
    fn cpu_time_is_the_spun_part() {
        let d = Duration::from_millis(10);
        assert_eq!(Work::Sleep.cpu_time(d), Duration::ZERO);
        assert_eq!(Work::Spin.cpu_time(d), d);
        assert_eq!(Work::Hybrid { spin_fraction: 0.5 }.cpu_time(d), d / 2);
    }

    #[test]
    fn spin_burns_cpu_time_even_when_preempted() {
        // More spinners than cores: each must still use its full delay of CPU.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let delay = Duration::from_millis(20);
        let used: Vec<Duration> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..cores * 3)
                .map(|_| {
                    s.spawn(move || {
                        let before = thread_cpu_time().unwrap();
                        WorkTimer::new(Work::Spin).run(delay);
                        thread_cpu_time().unwrap() - before
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for cpu in used {
            assert!(
                cpu >= delay - Duration::from_micros(50),
                "only {cpu:?} of CPU"
            );
        }
    }

    #[test]
    fn every_model_costs_at_least_its_delay_and_not_much_more() {
        // Never early in total; an item is short by at most the eighth it may make up. The
        // upper bound is loose on purpose: other tests spin on every core meanwhile; it still
        // catches a timer that sleeps whole multiples of the delay.
        for work in [Work::Sleep, Work::Spin, Work::Hybrid { spin_fraction: 0.5 }] {
            let mut timer = WorkTimer::new(work);
            let delay = Duration::from_millis(2);
            let start = Instant::now();
            for _ in 0..20 {
                let t = Instant::now();
                timer.run(delay);
                assert!(t.elapsed() >= delay - delay / 8, "{work} finished early");
            }
            let took = start.elapsed();
            assert!(took >= delay * 20, "{work}: 20 × 2 ms took only {took:?}");
            assert!(took < delay * 200, "{work}: 20 × 2 ms took {took:?}");
        }
    }
}
