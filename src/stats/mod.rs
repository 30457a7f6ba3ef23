//! Statistics: per-core counters and latency histograms, merged on demand; counters under
//! memcached's names.
//!
//! Building with the `stats-off` feature turns every per-request count and latency record
//! into nothing (the levels a core publishes once per turn stay): it exists to measure what
//! the statistics cost (`bench/RESULTS.md`), not to be run.

mod counter;
pub mod latency;
pub mod conns;
pub mod names;
pub mod prefix;

pub use counter::Counter;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::storage::{Command, Outcome};

/// Defines the per-core counters once, with the name each has in memcached's `stats`.
macro_rules! core_stats {
    ($($field:ident),* $(,)?) => {
        /// Counters of one core; only that core writes them.
        #[derive(Debug, Default)]
        pub struct CoreStats {
            $(pub $field: Counter,)*
            /// `stats detail`: this core's per-prefix counts.
            pub prefixes: prefix::PrefixStats,
            /// `stats conns`: this core's connections, as last published.
            pub conns: conns::ConnTable,
        }

        impl CoreStats {
            /// `(name, value)` for every counter, in declaration order.
            pub fn values(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field.get()),)*]
            }
        }
    };
}

core_stats!(
    curr_items,
    total_items,
    bytes,
    evictions,
    reclaimed,
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    get_hits,
    get_misses,
    get_flushed,
    delete_misses,
    delete_hits,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    touch_hits,
    touch_misses,
    bytes_read,
    bytes_written,
    total_connections,
    rejected_connections,
    protocol_errors,
    forwarded_requests,
    replica_reads,
    replica_fallback_reads,
    durable_writes,
    durable_ambiguous,
    durable_impossible,
    disk_errors,
    disk_reads,
    values_evicted,
    fsyncs,
    fsync_micros,
    segments,
    disk_bytes,
    dead_bytes,
    merges,
    merge_bytes_read,
    merge_bytes_written,
);

impl CoreStats {
    /// Counts one command by what the shard answered.
    pub fn record<B: AsRef<[u8]>, V>(&self, cmd: &Command<B>, outcome: &Outcome<V>) {
        let hit = !matches!(outcome, Outcome::NotFound);
        let pick = |hits: &Counter, misses: &Counter| if hit { hits.incr() } else { misses.incr() };
        match cmd {
            Command::Get { .. } => {
                self.cmd_get.incr();
                pick(&self.get_hits, &self.get_misses);
            }
            Command::GetAndTouch { .. } => {
                self.cmd_get.incr();
                self.cmd_touch.incr();
                pick(&self.get_hits, &self.get_misses);
                pick(&self.touch_hits, &self.touch_misses);
            }
            Command::Touch { .. } => {
                self.cmd_touch.incr();
                pick(&self.touch_hits, &self.touch_misses);
            }
            Command::Store { cas, .. } => {
                self.cmd_set.incr();
                if *cas != 0 {
                    match outcome {
                        Outcome::NotFound => self.cas_misses.incr(),
                        Outcome::Exists => self.cas_badval.incr(),
                        _ => self.cas_hits.incr(),
                    }
                }
            }
            Command::Delete { .. } => pick(&self.delete_hits, &self.delete_misses),
            Command::Arith { incr: true, .. } => pick(&self.incr_hits, &self.incr_misses),
            Command::Arith { incr: false, .. } => pick(&self.decr_hits, &self.decr_misses),
            Command::Flush { .. } => {}
        }
    }
}

/// Node-wide state that is not per core: set at start or touched only on accept and close.
#[derive(Debug)]
pub struct NodeStats {
    pub started: Instant,
    pub started_unix: u64,
    pub curr_connections: AtomicUsize,
    /// Connections accepted, over the node's life.
    pub total_connections: AtomicU64,
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats {
            started: Instant::now(),
            started_unix: unix_now() as u64,
            curr_connections: AtomicUsize::new(0),
            total_connections: AtomicU64::new(0),
        }
    }
}

impl NodeStats {
    pub fn curr_connections(&self) -> usize {
        self.curr_connections.load(Relaxed)
    }
}

/// Seconds since the unix epoch, as memcached's clock.
pub fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// Sums every core's counters by name.
pub fn merged(cores: &[std::sync::Arc<CoreStats>]) -> Vec<(&'static str, u64)> {
    let mut total = CoreStats::default().values();
    for core in cores {
        for (slot, (_, v)) in total.iter_mut().zip(core.values()) {
            slot.1 += v;
        }
    }
    total
}
