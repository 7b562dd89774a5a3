//! The run clock: one monotonic origin per run, so every timestamp in a run is an offset from it.
//!
//! Offsets are plain `u64` nanoseconds so they fit in a message header and compare across threads.
//! [`Sleeper`] waits until an absolute instant with microsecond precision; it is how both the
//! pacer (send on time) and the work models (an item costs exactly its delay) wait.

use std::time::{Duration, Instant};

/// A run's time origin. Cheap to copy; every thread of a run shares the same origin.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    /// Starts the clock now.
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// The origin itself.
    pub fn origin(&self) -> Instant {
        self.start
    }

    /// Nanoseconds since the origin (saturating at `u64::MAX`, about 584 years).
    pub fn now_ns(&self) -> u64 {
        duration_ns(self.start.elapsed())
    }

    /// The instant `offset_ns` after the origin.
    pub fn at(&self, offset_ns: u64) -> Instant {
        self.start + Duration::from_nanos(offset_ns)
    }
}

/// A duration in whole nanoseconds, saturating instead of wrapping.
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Waits until absolute instants, precisely and mostly off-core.
///
/// On a VM a `thread::sleep` overshoots by 0.1–0.25 ms (measured here: 115 µs p50, 166 µs p99 for
/// 10 ms even with 1 ns timer slack), a tokio timer by ~1.1 ms. So a `Sleeper` sleeps until
/// shortly before the deadline, by a margin that tracks this thread's own measured wake-up
/// lateness (mean + 4 deviations), and finishes with a yield loop that lands within microseconds.
/// The margin never exceeds an eighth of the wait, so short waits stay mostly off-core (at the
/// price of precision: a 500 µs wait may overshoot by tens of µs). The estimate is per thread:
/// give each thread its own `Sleeper`.
#[derive(Debug)]
pub struct Sleeper {
    late_ns: f64,
    dev_ns: f64,
    /// Timer slack is per thread: it is set by the first sleep, on the thread that sleeps
    /// (a worker's timer is often built on another thread than the one it runs on).
    slack_set: bool,
}

const MIN_MARGIN_NS: f64 = 20_000.0;
const MAX_MARGIN_NS: f64 = 2_000_000.0;

impl Default for Sleeper {
    fn default() -> Self {
        Self::new()
    }
}

impl Sleeper {
    /// A sleeper (its first sleep asks Linux for the finest timer slack for its thread).
    pub fn new() -> Self {
        Self {
            late_ns: 150_000.0,
            dev_ns: 50_000.0,
            slack_set: false,
        }
    }

    /// Returns at `deadline` or, if it has passed, at once.
    pub fn sleep_until(&mut self, deadline: Instant) {
        if !self.slack_set {
            reduce_timer_slack();
            self.slack_set = true;
        }
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        let margin = Duration::from_nanos(
            (self.late_ns + 4.0 * self.dev_ns).clamp(MIN_MARGIN_NS, MAX_MARGIN_NS) as u64,
        )
        .min(left / 8);
        if let Some(nap) = left.checked_sub(margin).filter(|nap| !nap.is_zero()) {
            std::thread::sleep(nap);
            let late = now.elapsed().saturating_sub(nap).as_nanos() as f64;
            let err = late - self.late_ns;
            self.late_ns += err / 8.0;
            self.dev_ns += (err.abs() - self.dev_ns) / 8.0;
        }
        finish_until(deadline);
    }
}

/// The tail of a wait: yield the core while more than a few microseconds remain, so a crowd of
/// threads on few cores does not spin each other past their deadlines.
fn finish_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        if deadline - now > Duration::from_micros(5) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Asks Linux to wake this thread as close to its timers as it can (the default slack is 50 µs).
fn reduce_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeper_is_never_early_and_rarely_late() {
        let mut sleeper = Sleeper::new();
        let mut late = Vec::new();
        for _ in 0..20 {
            let deadline = Instant::now() + Duration::from_millis(2);
            sleeper.sleep_until(deadline);
            late.push(Instant::now() - deadline);
        }
        late.sort();
        // Generous: the median must beat a bare thread::sleep's ~100 µs overshoot by far,
        // unless the machine is so loaded that nothing is precise.
        assert!(late[10] < Duration::from_millis(5), "{late:?}");
        let past = Instant::now() - Duration::from_millis(1);
        let t = Instant::now();
        sleeper.sleep_until(past);
        assert!(t.elapsed() < Duration::from_millis(5));
    }

    #[test]
    fn offsets_are_monotonic_and_map_back_to_instants() {
        let clock = RunClock::start();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        assert_eq!(clock.at(0), clock.origin());
        assert_eq!(clock.at(1_000) - clock.origin(), Duration::from_micros(1));
    }

    #[test]
    fn duration_ns_saturates() {
        assert_eq!(duration_ns(Duration::MAX), u64::MAX);
        assert_eq!(duration_ns(Duration::from_millis(10)), 10_000_000);
    }
}
