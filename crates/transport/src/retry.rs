//! Connecting to a peer that may not be up yet: the one retry policy of every connect in
//! plumbline (TCP peers, `ipc://` sockets, the Redis and NATS clients, the object store).
//!
//! Attempts follow each other with pauses doubling from [`FIRST_PAUSE`] to [`LAST_PAUSE`]
//! until the timeout has passed; the last pause is cut to end at the deadline and one attempt
//! is made there, so a peer that comes up just in time is still found. Each attempt is given
//! what is left of the timeout, but at least [`MIN_ATTEMPT`]. Giving up names the address, the
//! timeout, the attempts made and the last attempt's error. What an attempt is (a TCP connect,
//! a login) is the caller's; nothing here knows a protocol.

use std::convert::Infallible;
use std::time::{Duration, Instant};

/// The pause after the first failed attempt.
pub const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause: a peer that comes up is found within this.
pub const LAST_PAUSE: Duration = Duration::from_secs(1);
/// The least time an attempt is given, the one at the deadline too (a TCP or TLS handshake
/// with a peer on this host takes far less).
pub const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// The timeout passed with every attempt failed.
#[derive(Debug, thiserror::Error)]
#[error("could not connect to {addr} within {timeout:?} ({attempts} attempts): {last}")]
pub struct TimedOut<E: std::fmt::Display> {
    pub addr: String,
    pub timeout: Duration,
    pub attempts: u32,
    /// The last attempt's error.
    pub last: E,
}

/// What a failed attempt means.
#[derive(Debug)]
pub enum Failed<E, F> {
    /// Worth another attempt (the peer is not up yet).
    Retry(E),
    /// No retry mends it (a refused login): [`connect`] ends with it at once.
    Final(F),
}

/// Why [`connect`] gave up.
#[derive(Debug)]
pub enum GaveUp<E: std::fmt::Display, F> {
    TimedOut(TimedOut<E>),
    /// An attempt failed in a way no retry mends (a refused login), as the caller named it.
    Final(F),
}

impl<E: std::fmt::Display> GaveUp<E, Infallible> {
    /// The timeout, where no error is final.
    pub fn timed_out(self) -> TimedOut<E> {
        match self {
            GaveUp::TimedOut(t) => t,
            GaveUp::Final(never) => match never {},
        }
    }
}

/// The pause after the `n`th failed attempt (from 0).
fn pause(n: u32) -> Duration {
    FIRST_PAUSE.saturating_mul(1 << n.min(16)).min(LAST_PAUSE)
}

/// Calls `attempt` (with the time it may take) until it succeeds, fails for good, or `timeout`
/// has passed.
pub fn connect<T, E: std::fmt::Display, F>(
    addr: &str,
    timeout: Duration,
    mut attempt: impl FnMut(Duration) -> Result<T, Failed<E, F>>,
) -> Result<T, GaveUp<E, F>> {
    let deadline = Instant::now() + timeout;
    let mut attempts = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        attempts += 1;
        let last = match attempt(left.max(MIN_ATTEMPT)) {
            Ok(value) => return Ok(value),
            Err(Failed::Retry(e)) => e,
            Err(Failed::Final(fatal)) => return Err(GaveUp::Final(fatal)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(GaveUp::TimedOut(TimedOut {
                addr: addr.to_string(),
                timeout,
                attempts,
                last,
            }));
        }
        std::thread::sleep(pause(attempts - 1).min(left));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_the_longest() {
        let pauses: Vec<u64> = (0..8).map(|n| pause(n).as_millis() as u64).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(pause(u32::MAX), LAST_PAUSE);
    }

    #[test]
    fn a_peer_that_comes_up_is_found() {
        let mut tries = 0;
        let got = connect("h:1", Duration::from_secs(30), |_| {
            tries += 1;
            if tries < 3 {
                Err(Failed::<_, Infallible>::Retry("refused"))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn giving_up_names_the_address_the_attempts_and_the_last_error() {
        let mut tries = 0;
        let started = Instant::now();
        let err = connect("h:1", Duration::from_millis(200), |given| {
            assert!(given >= MIN_ATTEMPT);
            tries += 1;
            Err::<(), _>(Failed::<_, Infallible>::Retry(format!("refused #{tries}")))
        })
        .unwrap_err()
        .timed_out();
        assert!(started.elapsed() >= Duration::from_millis(200));
        // 50 + 100 ms of pauses, then the rest cut to the deadline: 4 attempts, the last at
        // it (fewer when a busy machine oversleeps).
        assert!((2..=4).contains(&err.attempts), "{}", err.attempts);
        let n = err.attempts;
        assert_eq!(
            err.to_string(),
            format!("could not connect to h:1 within 200ms ({n} attempts): refused #{n}")
        );
    }

    #[test]
    fn a_final_error_ends_it_at_once() {
        let mut tries = 0;
        let got = connect("h:1", Duration::from_secs(30), |_| {
            tries += 1;
            Err::<(), _>(match tries {
                1 => Failed::Retry("refused"),
                _ => Failed::Final("refused the login"),
            })
        });
        assert!(matches!(got, Err(GaveUp::Final("refused the login"))));
        assert_eq!(tries, 2);
    }
}
