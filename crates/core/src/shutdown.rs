//! `Shutdown`: a cooperative stop signal shared by a run's threads (Ctrl-C sets it).
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
