//! The run clock: one monotonic origin per run, so every timestamp in a run is an offset from it.
//!
//! Offsets are plain `u64` nanoseconds so they fit in a message header and compare across threads.

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

#[cfg(test)]
mod tests {
    use super::*;

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
