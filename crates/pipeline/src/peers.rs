//! Accepting peers: one thread per bound endpoint hands each connection to a handler thread.
//!
//! The distributor and the collector both serve many peers with blocking reads, each peer on its
//! own thread, funnelling what they read into one bounded channel that a single loop owns. This
//! module only accepts and spawns; what a peer may say is the handler's business.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use plumbline_core::Shutdown;
use plumbline_transport::endpoint::{Conn, Listener};

/// Capacity of a role's event channel. Full, the peers' reader threads block, so a flood of
/// messages backs up into TCP rather than memory.
pub const EVENT_QUEUE: usize = 4096;
/// How long a new peer has to say hello before it is dropped, so idle connections do not
/// hold threads for ever.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts on `listener` until `stop` is requested, running `handler` on a new thread per
/// connection, whose reads time out after [`HELLO_TIMEOUT`] until the handler clears it once
/// the hello is in. Accept errors (out of descriptors) are logged and retried after a nap.
pub fn serve<H>(
    listener: Listener,
    stop: Shutdown,
    role: &'static str,
    handler: H,
) -> std::io::Result<JoinHandle<()>>
where
    H: Fn(Conn) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    std::thread::Builder::new()
        .name(format!("{role}-accept"))
        .spawn(move || {
            let endpoint = listener.endpoint();
            while !stop.requested() {
                match listener.accept_or_nap() {
                    Ok(Some(conn)) => {
                        conn.set_read_timeout(Some(HELLO_TIMEOUT)).ok();
                        let handler = Arc::clone(&handler);
                        let spawned = std::thread::Builder::new()
                            .name(format!("{role}-peer"))
                            .spawn(move || handler(conn));
                        if let Err(e) = spawned {
                            eprintln!(
                                "{role}: cannot start a thread for a peer on {endpoint}: {e}"
                            );
                        }
                    }
                    Ok(None) => {}
                    Err(e) => eprintln!("{role}: accept on {endpoint} failed: {e}"),
                }
            }
        })
}
