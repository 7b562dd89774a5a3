//! Accepting peers: one thread per bound endpoint hands each connection to a handler thread.
//!
//! The distributor and the collector both serve many peers with blocking reads, each peer on its
//! own thread, funnelling what they read into one bounded channel that a single loop owns. This
//! module only accepts and spawns; what a peer may say is the handler's business.

use std::sync::Arc;
use std::thread::JoinHandle;

use plumbline_core::Shutdown;
use plumbline_transport::endpoint::{Conn, Listener};

/// Accepts on `listener` until `stop` is requested, running `handler` on a new thread per
/// connection. Accept errors (out of descriptors) are logged and retried after a nap.
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
