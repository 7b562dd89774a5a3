//! `Shutdown`: a cooperative stop signal shared by a run's threads (Ctrl-C sets it), and the
//! [`SignalThread`] that turns the process's stop signals into it.
//!
//! Setting it asks sources to stop producing; what is already queued still drains, so a stop
//! never loses an accepted message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop producing. Idempotent.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The process's stop signals (SIGINT, SIGTERM, SIGHUP), taken by one thread of their own with
/// `sigwait`, while every other thread blocks them. A signal handler would run on whichever
/// thread the kernel picks and cut short its blocking call: a socket read with a timeout is not
/// restarted after a handler (it fails with EINTR, see signal(7)), and a broker client then
/// drops its connection with what it had taken. Here no other thread ever sees one. (A whole
/// process is needed to show it: `crates/cli/tests/elastic.rs` sends SIGTERM to a member.)
#[cfg(unix)]
pub struct SignalThread;

#[cfg(unix)]
impl SignalThread {
    /// Blocks the stop signals in the calling thread (and so in every thread it starts after)
    /// and starts the thread that waits for them: `on_signal(n, signal)` runs there for the
    /// `n`-th (from 1). Call it first thing in `main`, before any other thread exists.
    pub fn start(mut on_signal: impl FnMut(u32, i32) + Send + 'static) -> std::io::Result<()> {
        // SAFETY: a zeroed sigset_t is valid storage for sigemptyset to initialise; the set
        // lives on this stack while pthread_sigmask reads it, then moves into the thread.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            set
        };
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = 0;
                loop {
                    let mut signal = 0;
                    // SAFETY: `set` is initialised and blocked in every thread; sigwait
                    // only writes the signal number.
                    if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                        seen += 1;
                        on_signal(seen, signal);
                    }
                }
            })
            .map(drop)
    }
}
