//! plumbline-core: the vocabulary every other crate speaks.
//!
//! Sits at the bottom of the flow (load → transport → worker → measure): it defines what a
//! [`Message`] is, how messages are framed on a byte stream ([`frame`]), the seed payload formats
//! ([`payload`]: nonces, votes), plumbline's own message header ([`header`]), how users write
//! durations ([`duration`]), the run clock ([`clock`]), what a listener allows an untrusted peer
//! ([`intake`]), secrets that never print ([`secret`]), what one item of work costs and the timer
//! that makes it cost exactly that ([`work`], used by the cluster's workers and the pipeline's
//! alike) and the poll [`backoff`] of threads that nap instead of being woken. It does no I/O of
//! its own beyond the blocking [`frame::FrameReader`] and knows nothing of workers, schedules or
//! reports.

pub mod backoff;
pub mod clock;
pub mod duration;
pub mod frame;
pub mod header;
pub mod intake;
pub mod message;
pub mod payload;
pub mod secret;
pub mod shutdown;
pub mod work;

pub use clock::RunClock;
pub use message::Message;
pub use shutdown::Shutdown;
