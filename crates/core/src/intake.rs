//! What a listener allows a peer it does not trust: how many connections at once
//! ([`Slots`]), how many bytes of unfinished frames all connections may hold together
//! ([`ByteBudget`]), and how long and how slowly one frame may take to arrive
//! ([`FrameDeadline`]).
//!
//! These are the limits a [`crate::frame::FrameReader`] applies when given [`IntakeLimits`];
//! sockets, threads and reports are the caller's. [`FrameDeadline`] is a pure state machine fed
//! with what each read brought and how long it waited, so the decision is tested without a clock.
//!
//! An idle connection *between* frames is not an attack: a sender between bursts, a worker
//! waiting for input. It holds a slot and one small read buffer (its reader shrinks the buffer
//! when a read times out on an empty one), and it is never closed for being quiet. Only a frame
//! that has begun and does not finish is.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Defaults of the listeners' flags (`--max-connections`, `--read-timeout`, `--min-rate`,
/// `--buffer-budget`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes per second, as Apache's `mod_reqtimeout` `MinRate=500`.
pub const DEFAULT_MIN_RATE: u64 = 500;
pub const DEFAULT_BUFFER_BUDGET: usize = 32 * 1024 * 1024;
/// Buffer every connection may hold without asking the budget: one full-speed read of small
/// frames, so a legitimate sender of small frames never waits for budget that attackers hold.
pub const FREE_PER_CONNECTION: usize = 16 * 1024;
/// A frame must have waited this long before its rate is judged: a retransmission or a
/// sender's hiccup mid-frame is not slowness.
pub const RATE_GRACE: Duration = Duration::from_secs(5);

/// How one connection's frames must arrive, and the budget its buffer draws on.
#[derive(Clone, Debug)]
pub struct IntakeLimits {
    /// Longest a frame may take from its first byte to its last (time spent waiting on the
    /// peer; the reader's own pauses do not count).
    pub read_timeout: Duration,
    /// Least bytes per second a frame must average once it has waited [`RATE_GRACE`]
    /// (or the read timeout, if shorter); 0: no minimum.
    pub min_rate: u64,
    pub budget: Arc<ByteBudget>,
}

impl IntakeLimits {
    pub fn new(read_timeout: Duration, min_rate: u64, budget: Arc<ByteBudget>) -> Self {
        Self {
            read_timeout,
            min_rate,
            budget,
        }
    }

    /// The socket read timeout a reader under these limits needs: short enough that a stalled
    /// frame is closed within a tenth of its deadline of it, long enough that idle connections
    /// cost almost no wake-ups.
    pub fn tick(&self) -> Duration {
        (self.read_timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// A fresh deadline for one connection.
    pub fn deadline(&self) -> FrameDeadline {
        FrameDeadline::new(self.read_timeout, self.min_rate)
    }
}

/// Bytes of buffer that all connections together may hold beyond their free share.
#[derive(Debug)]
pub struct ByteBudget {
    limit: usize,
    held: AtomicUsize,
    /// Times a connection asked for more and was told to wait.
    refusals: AtomicU64,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            held: AtomicUsize::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    /// Takes `n` bytes if they fit under the limit.
    pub fn try_take(&self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok();
        if !taken {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Returns `n` bytes taken before.
    pub fn give_back(&self, n: usize) {
        if n > 0 {
            self.held.fetch_sub(n, Ordering::AcqRel);
        }
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
}

/// A cap on connections served at once; excess ones are refused and counted.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    busy: Arc<AtomicUsize>,
    refused: AtomicU64,
}

/// One connection's place under a [`Slots`] cap, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    busy: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            busy: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
        }
    }

    /// A slot, or `None` (and one more refusal counted) when all are taken.
    pub fn try_acquire(&self) -> Option<Slot> {
        let got = self
            .busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |busy| {
                (busy < self.max).then_some(busy + 1)
            })
            .is_ok();
        if got {
            Some(Slot {
                busy: self.busy.clone(),
            })
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Why a connection's frame was given up on: what the peer did, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stall {
    /// The frame did not complete within the read timeout.
    Deadline {
        /// Bytes of the frame (its length prefix included) that did arrive.
        have: u64,
        /// Its announced payload length, once the prefix was complete.
        announced: Option<u64>,
        timeout: Duration,
    },
    /// The frame arrived slower than the minimum rate.
    TooSlow {
        have: u64,
        announced: Option<u64>,
        waited: Duration,
        min_rate: u64,
    },
}

fn frame_of(announced: Option<u64>) -> String {
    announced.map_or_else(|| "a frame".to_string(), |n| format!("a {n}-byte frame"))
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stall::Deadline {
                have,
                announced,
                timeout,
            } => write!(
                f,
                "sent {have} bytes of {} and not the rest within the {timeout:?} read timeout",
                frame_of(*announced)
            ),
            Stall::TooSlow {
                have,
                announced,
                waited,
                min_rate,
            } => write!(
                f,
                "sent {have} bytes of {} in {:.1}s, slower than the minimum rate of {min_rate} bytes/s",
                frame_of(*announced),
                waited.as_secs_f64()
            ),
        }
    }
}

/// The clock of the frame a connection is in the middle of.
///
/// Fed after every read (and every wait for budget) with the stream offset where the current
/// frame begins, the bytes of it buffered, and how long the read waited. A new offset is a new
/// frame, whose clock starts at zero; no buffered bytes is the idle state between frames, with
/// no clock at all (unless the first frame is due at once, see [`FrameDeadline::due_at_once`]).
#[derive(Clone, Debug)]
pub struct FrameDeadline {
    timeout: Duration,
    min_rate: u64,
    /// The frame being timed, by its offset in the stream.
    frame: Option<u64>,
    waited: Duration,
    /// The first frame is due from the start (a hello), not from its first byte.
    first_due: bool,
}

impl FrameDeadline {
    pub fn new(timeout: Duration, min_rate: u64) -> Self {
        Self {
            timeout,
            min_rate,
            frame: None,
            waited: Duration::ZERO,
            first_due: false,
        }
    }

    /// The first frame is due from the moment the connection opened: a peer that must say
    /// hello cannot hold the connection by saying nothing.
    pub fn due_at_once(mut self) -> Self {
        self.first_due = true;
        self.frame = Some(0);
        self
    }

    /// After a read or a wait: the current frame begins at stream offset `head`, `have` bytes
    /// of it (and of any after it) are buffered, its length prefix announced `announced`, and
    /// the read waited `waited` on the peer. `Err` says why the connection should close.
    pub fn observe(
        &mut self,
        head: u64,
        have: u64,
        announced: Option<u64>,
        waited: Duration,
    ) -> Result<(), Stall> {
        let hello_pending = self.first_due && head == 0;
        if have == 0 && !hello_pending {
            self.frame = None;
            return Ok(());
        }
        if self.frame == Some(head) {
            self.waited += waited;
        } else {
            // The read that brought a frame's first bytes waited between frames, not on it.
            self.frame = Some(head);
            self.waited = Duration::ZERO;
        }
        if self.waited >= self.timeout {
            return Err(Stall::Deadline {
                have,
                announced,
                timeout: self.timeout,
            });
        }
        let judged_after = RATE_GRACE.min(self.timeout);
        if self.min_rate > 0
            && self.waited >= judged_after
            && (have as f64) < self.min_rate as f64 * self.waited.as_secs_f64()
        {
            return Err(Stall::TooSlow {
                have,
                announced,
                waited: self.waited,
                min_rate: self.min_rate,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_frame_that_does_not_finish_in_time_is_given_up() {
        let mut d = FrameDeadline::new(1000 * MS, 0);
        assert!(
            d.observe(0, 1, None, 400 * MS).is_ok(),
            "the first byte starts the clock"
        );
        assert!(d.observe(0, 2, None, 600 * MS).is_ok());
        let stall = d.observe(0, 3, None, 400 * MS).unwrap_err();
        assert_eq!(
            stall.to_string(),
            "sent 3 bytes of a frame and not the rest within the 1s read timeout"
        );
    }

    #[test]
    fn each_frame_has_its_own_clock() {
        let mut d = FrameDeadline::new(1000 * MS, 0);
        for head in 0..20 {
            // A steady stream that always ends mid-frame: every frame finishes in time.
            assert!(d.observe(head * 100, 50, Some(96), 900 * MS).is_ok());
        }
    }

    #[test]
    fn idle_between_frames_is_never_timed() {
        let mut d = FrameDeadline::new(1000 * MS, 500);
        for _ in 0..100 {
            assert!(d.observe(4096, 0, None, 1000 * MS).is_ok());
        }
        // A frame that begins after a long idle gets its full time.
        assert!(d.observe(4096, 10, Some(8), 1000 * MS).is_ok());
        assert!(d.observe(4096, 10, Some(8), 999 * MS).is_ok());
        assert!(d.observe(4096, 10, Some(8), MS).is_err());
    }

    #[test]
    fn a_hello_is_due_from_the_start() {
        let mut d = FrameDeadline::new(2000 * MS, 0).due_at_once();
        assert!(d.observe(0, 0, None, 1500 * MS).is_ok());
        let stall = d.observe(0, 0, None, 500 * MS).unwrap_err();
        assert!(matches!(stall, Stall::Deadline { have: 0, .. }), "{stall}");
        // Once the hello is in, the connection is an ordinary one.
        let mut d = FrameDeadline::new(2000 * MS, 0).due_at_once();
        assert!(d.observe(40, 0, None, 5000 * MS).is_ok());
    }

    #[test]
    fn a_slow_frame_is_judged_on_its_rate_after_the_grace() {
        let mut d = FrameDeadline::new(Duration::from_secs(30), 500);
        // A byte a second: fine during the grace, too slow after it (the first byte starts the
        // clock, so the sixth is the one five seconds in).
        for have in 1..=5 {
            assert!(d.observe(0, have, None, Duration::from_secs(1)).is_ok());
        }
        let stall = d.observe(0, 6, None, Duration::from_secs(1)).unwrap_err();
        assert!(
            stall
                .to_string()
                .contains("slower than the minimum rate of 500 bytes/s"),
            "{stall}"
        );
        // Fast enough: 4 KiB/s goes on to the deadline.
        let mut d = FrameDeadline::new(Duration::from_secs(30), 500);
        for s in 1..=30 {
            assert!(d
                .observe(0, s * 4096, Some(1 << 20), Duration::from_secs(1))
                .is_ok());
        }
        assert!(matches!(
            d.observe(0, 31 * 4096, Some(1 << 20), Duration::from_secs(1)),
            Err(Stall::Deadline {
                announced: Some(1_048_576),
                ..
            })
        ));
    }

    #[test]
    fn the_budget_never_lends_past_its_limit() {
        let budget = ByteBudget::new(100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(41));
        assert!(budget.try_take(40));
        assert_eq!((budget.held(), budget.refusals()), (100, 1));
        budget.give_back(60);
        assert!(budget.try_take(60));
        assert!(budget.try_take(0), "nothing is always there");
    }

    #[test]
    fn slots_refuse_and_count_past_the_cap_and_come_back() {
        let slots = Slots::new(2);
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        assert!(slots.try_acquire().is_none());
        assert_eq!((slots.busy(), slots.refused()), (2, 2));
        drop(a);
        assert!(slots.try_acquire().is_some());
    }

    #[test]
    fn the_tick_is_a_tenth_of_the_timeout_within_bounds() {
        let limits = |t| IntakeLimits::new(t, 0, Arc::new(ByteBudget::new(1)));
        assert_eq!(limits(Duration::from_secs(1)).tick(), 100 * MS);
        assert_eq!(
            limits(Duration::from_secs(30)).tick(),
            Duration::from_secs(1)
        );
        assert_eq!(limits(MS).tick(), 10 * MS);
    }
}
