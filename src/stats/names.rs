//! What each counter of [`CoreStats`](super::CoreStats) means, for the admin endpoints.
//!
//! The counters themselves are declared once, in `core_stats!`; a counter added there shows
//! up in STAT, `/stats` and `/metrics` without more work. It is a running total unless it is
//! listed in [`GAUGES`], and its HELP line is [`describe`]'s, or a generic one.

/// Counters that are levels (they go down as well as up), not running totals.
pub const GAUGES: &[&str] = &["curr_items", "bytes", "segments", "disk_bytes", "dead_bytes"];

pub fn is_gauge(name: &str) -> bool {
    GAUGES.contains(&name)
}

/// One line on what the counter `name` counts.
pub fn describe(name: &str) -> &'static str {
    match name {
        "curr_items" => "Items stored now.",
        "total_items" => "Items ever stored.",
        "bytes" => "Bytes of items charged against the memory limit.",
        "evictions" => "Items evicted to make room under the memory limit.",
        "reclaimed" => "Expired items reclaimed.",
        "cmd_get" => "GET requests (GAT included), one per key.",
        "cmd_set" => "Store requests: SET, ADD, REPLACE, APPEND, PREPEND, CAS.",
        "cmd_flush" => "FLUSH requests.",
        "cmd_touch" => "TOUCH and GAT requests.",
        "get_hits" => "GETs that found their key.",
        "get_misses" => "GETs that did not find their key.",
        "get_flushed" => "GETs that found a key invalidated by a flush.",
        "delete_hits" => "DELETEs of an existing key.",
        "delete_misses" => "DELETEs of a missing key.",
        "incr_hits" => "INCREMENTs of an existing key.",
        "incr_misses" => "INCREMENTs of a missing key.",
        "decr_hits" => "DECREMENTs of an existing key.",
        "decr_misses" => "DECREMENTs of a missing key.",
        "cas_hits" => "CAS stores that matched.",
        "cas_misses" => "CAS stores of a missing key.",
        "cas_badval" => "CAS stores whose CAS did not match.",
        "touch_hits" => "TOUCHes of an existing key.",
        "touch_misses" => "TOUCHes of a missing key.",
        "bytes_read" => "Bytes read from client connections.",
        "bytes_written" => "Bytes written to client connections.",
        "total_connections" => "Client connections accepted.",
        "rejected_connections" => "Client connections refused over the connection limit (-c).",
        "protocol_errors" => "Requests refused as malformed.",
        "forwarded_requests" => "Requests sent to the core that owns their key.",
        "replica_reads" => "GETs answered from a backup copy (GET_REPLICA, and read fallbacks).",
        "replica_fallback_reads" => "GETs whose primary was unreachable, read from a backup instead (read_fallback = replica).",
        "durable_writes" => "Durable writes acknowledged once enough backups held them.",
        "durable_ambiguous" => "Durable writes answered 'sync write ambiguous' (backups too slow).",
        "durable_impossible" => "Durable writes refused: too few live backups.",
        "disk_errors" => "Failed disk writes, syncs and reads.",
        "disk_reads" => "Values read back from disk.",
        "values_evicted" => "Values dropped from memory (kept on disk) to make room.",
        "fsyncs" => "fsync calls on the logs.",
        "fsync_micros" => "Time spent in fsync on the logs.",
        "segments" => "Log segments on disk.",
        "disk_bytes" => "Bytes of log segments on disk.",
        "dead_bytes" => "Bytes of log segments holding overwritten, deleted or expired records.",
        "merges" => "Merges of log segments completed.",
        "merge_bytes_read" => "Bytes of segments read by merges.",
        "merge_bytes_written" => "Bytes of live records written by merges.",
        _ => "A caskade counter (see README, Operations).",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::CoreStats;

    #[test]
    fn gauges_are_counters() {
        for g in GAUGES {
            assert!(CoreStats::default().values().iter().any(|(n, _)| n == g), "{g} is not a counter");
        }
    }
}
