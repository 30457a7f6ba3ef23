//! Counters written by one thread and read by any.
//!
//! Each core owns its counters and is the only writer, so an increment is a plain load and
//! store (no locked read-modify-write, no cache line bouncing between cores); readers, such
//! as a STAT request on another core, see a recent value.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Only the owning core may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        if cfg!(feature = "stats-off") {
            return;
        }
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// Only the owning core may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}
