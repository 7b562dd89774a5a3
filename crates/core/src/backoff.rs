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
        match self.step {
            0..=6 => (0..1 << self.step).for_each(|_| std::hint::spin_loop()),
            7..=10 => std::thread::yield_now(),
            naps => std::thread::sleep(
                FIRST_NAP
                    .saturating_mul(1 << (naps - 11).min(5))
                    .min(LAST_NAP),
            ),
        }
        self.step = self.step.saturating_add(1);
    }

    /// Progress was made: start again from a spin.
    pub fn reset(&mut self) {
        self.step = 0;
    }
}
