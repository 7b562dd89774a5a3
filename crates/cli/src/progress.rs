//! Progress for long commands: a bar with ETA per run, drawn on stderr only when it is a terminal
//! and `--quiet` is not given. It polls a counter the sink updates; it never touches the hot path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar that follows `counter` until dropped.
pub struct RunProgress<'a> {
    bar: ProgressBar,
    counter: &'a AtomicU64,
}

impl<'a> RunProgress<'a> {
    pub fn new(quiet: bool, total: u64, label: String, counter: &'a AtomicU64) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} items, ETA {eta}",
            )
            .expect("static template"),
        );
        bar.set_message(label);
        Self { bar, counter }
    }

    /// Runs `f` while a helper thread refreshes the bar ten times a second.
    pub fn track<T>(&self, f: impl FnOnce() -> T) -> T {
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    self.bar.set_position(self.counter.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let out = f();
            done.store(true, Ordering::Relaxed);
            out
        })
    }

    /// Prints a line above the bar (or plainly, when the bar is hidden).
    pub fn finish(self, line: &str) {
        self.bar.finish_and_clear();
        if !self.bar.is_hidden() {
            eprintln!("{line}");
        }
    }
}
