//! Progress for long commands, drawn on stderr only when it is a terminal and `--quiet` is not
//! given: a bar with ETA for a finite run, a one-line live status for an open-ended one, both
//! with the rate, p99 latency and in-flight count of the last second. It polls [`Live`] ten times
//! a second from its own thread; it never touches the hot path. While it is drawn, log lines are
//! written around it (logs.rs suspends it for each line).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plumbline_measure::Live;

/// Which of [`Live`]'s counters the bar follows.
#[derive(Clone, Copy)]
pub enum Follow {
    /// Items put in (a sender's progress).
    In,
    /// Items completed (a bench's or a receiver's progress).
    Out,
}

/// A bar (or status line) that follows `live` until finished.
pub struct RunProgress<'a> {
    bar: ProgressBar,
    live: &'a Live,
    follow: Follow,
}

impl<'a> RunProgress<'a> {
    /// A bar to `total` items, or a live status line when `total` is `None`.
    pub fn new(
        quiet: bool,
        total: Option<u64>,
        label: String,
        live: &'a Live,
        follow: Follow,
    ) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let template = match total {
            Some(_) => "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} items, ETA {eta} {prefix}",
            None => "{spinner} {msg} [{elapsed_precise}] {pos} items {prefix}",
        };
        let bar = ProgressBar::with_draw_target(total, target);
        bar.set_style(ProgressStyle::with_template(template).expect("static template"));
        bar.set_message(label);
        if !bar.is_hidden() {
            crate::logs::set_bar(&bar);
        }
        Self { bar, live, follow }
    }

    fn counter(&self) -> &AtomicU64 {
        match self.follow {
            Follow::In => &self.live.items_in,
            Follow::Out => &self.live.items_out,
        }
    }

    /// The last second's rate, p99 and in-flight, e.g. "| 998/s p99 10.2ms in flight 3".
    fn status(&self) -> String {
        let snap = self.live.snapshot(1);
        let Some(tick) = snap.recent.last() else {
            return String::new();
        };
        let rate = match self.follow {
            Follow::In => tick.in_per_s,
            Follow::Out => tick.out_per_s,
        };
        let mut text = format!("| {rate:.0}/s");
        if let Some(p99) = tick.p99_s {
            text.push_str(&format!(" p99 {}", plumbline_measure::report::secs(p99)));
        }
        if tick.in_flight > 0 {
            text.push_str(&format!(" in flight {}", tick.in_flight));
        }
        text
    }

    /// Runs `f` while a helper thread refreshes the display ten times a second.
    pub fn track<T>(&self, f: impl FnOnce() -> T) -> T {
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            if !self.bar.is_hidden() {
                scope.spawn(|| {
                    let mut n = 0u32;
                    while !done.load(Ordering::Relaxed) {
                        self.bar
                            .set_position(self.counter().load(Ordering::Relaxed));
                        if n.is_multiple_of(10) {
                            self.bar.set_prefix(self.status());
                        }
                        self.bar.tick();
                        n += 1;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            }
            let out = f();
            done.store(true, Ordering::Relaxed);
            out
        })
    }

    /// Prints a line where the bar was (nothing when the bar is hidden or `line` is empty).
    pub fn finish(self, line: &str) {
        crate::logs::clear_bar();
        self.bar.finish_and_clear();
        if !self.bar.is_hidden() && !line.is_empty() {
            tracing::info!("{line}");
        }
    }
}

impl Drop for RunProgress<'_> {
    /// A run that returned early (an error) must not leave log lines waiting on a dead bar.
    fn drop(&mut self) {
        crate::logs::clear_bar();
    }
}
