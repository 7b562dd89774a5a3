//! `Backoff`: how the cluster's non-worker threads wait for a queue without costing workers.
//!
//! A blocking channel operation parks its thread, and the other side then pays the wake-up: on
//! this class of VM a send to a parked receiver measured 14 µs p50 and 124 µs p99 (futex wake plus
//! a cross-core interrupt). Charged to every item, that is a 0.5 % overhead on 10 ms work. So the
//! sink and the source never park on a queue: they retry with a short spin, then yields, then
//! naps that double from [`FIRST_NAP`] to [`LAST_NAP`], and the workers' sends and receives never
//! find anyone to wake. The naps grow because each wake-up of an idle poller preempts a worker
//! when every core is busy (spin work): at 10 000 wake-ups/s, two spinning workers on two cores
//! measured 3.8 % overhead.

use std::time::Duration;

/// The first nap once spinning and yielding found nothing.
pub const FIRST_NAP: Duration = Duration::from_micros(50);
/// The longest nap: short against any queue's drain time at a 10 ms delay, and the most a
/// result's arrival at the sink is delayed (workers stamp their own result times, so latency
/// figures do not include it). 100 µs cost two spinning workers on two cores ~3.8 % overhead;
/// 500 µs and 1 ms measured alike (1.7–2.8 %, within this VM's run-to-run noise).
pub const LAST_NAP: Duration = Duration::from_micros(500);

/// Escalating wait: spin, then yield, then nap.
#[derive(Debug, Default)]
pub struct Backoff {
    step: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits a little longer than last time.
    pub fn wait(&mut self) {
        self.wait_with(std::thread::sleep);
    }

    /// [`Backoff::wait`], napping with `park_timeout`, so a producer with something that must
    /// not wait out a nap (a run's last result) can `unpark` this thread; the producers'
    /// everyday hand-offs still wake nobody.
    pub fn wait_unparkable(&mut self) {
        self.wait_with(std::thread::park_timeout);
    }

    fn wait_with(&mut self, nap: impl FnOnce(Duration)) {
        match self.step {
            0..=6 => (0..1 << self.step).for_each(|_| std::hint::spin_loop()),
            7..=10 => std::thread::yield_now(),
            naps => nap(FIRST_NAP
                .saturating_mul(1 << (naps - 11).min(5))
                .min(LAST_NAP)),
        }
        self.step = self.step.saturating_add(1);
    }

    /// Progress was made: start again from a spin.
    pub fn reset(&mut self) {
        self.step = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Steps until [`Backoff`] naps its longest.
    fn at_longest_nap() -> Backoff {
        Backoff { step: 16 }
    }

    #[test]
    fn an_unparkable_nap_ends_when_the_thread_is_unparked() {
        // A generous pass and a clear failure: 50 naps of 500 µs take at least 25 ms unwoken.
        let woken = std::thread::spawn(|| {
            let mut backoff = at_longest_nap();
            let started = Instant::now();
            for _ in 0..50 {
                std::thread::current().unpark();
                backoff.wait_unparkable();
            }
            started.elapsed()
        })
        .join()
        .unwrap();
        assert!(woken < Duration::from_millis(20), "{woken:?}");
        let mut backoff = at_longest_nap();
        let started = Instant::now();
        for _ in 0..50 {
            backoff.wait_unparkable();
        }
        assert!(started.elapsed() >= Duration::from_millis(25));
    }
}
