//! The lists of the STAT command (binary) and `stats` (text), under memcached's names.

use std::sync::atomic::Ordering::Relaxed;

use super::{Node, VERSION};
use crate::stats::{merged, unix_now};

/// The statistics of a STAT group ("" for the general ones), or `None` for a group caskade
/// does not have.
pub fn stats(node: &Node, group: &[u8]) -> Option<Vec<(std::borrow::Cow<'static, str>, String)>> {
    let fixed = |list: Vec<(&'static str, String)>| list.into_iter().map(|(n, v)| (n.into(), v)).collect();
    match group {
        b"" => Some(fixed(general(node))),
        b"settings" => Some(fixed(settings(node))),
        b"items" => Some(fixed(items(node))),
        b"slabs" => Some(fixed(slabs(node))),
        // `stats cluster`: the map, each node's state, forwarded requests, link round trips.
        b"cluster" => Some(match &node.cluster {
            Some(c) => c.stats().into_iter().map(|(n, v)| (n.into(), v)).collect(),
            None => vec![("cluster_nodes".into(), "1".to_string())],
        }),
        _ => None,
    }
}

/// A counter summed over the cores.
fn total(node: &Node, name: &str) -> u64 {
    merged(&node.core_stats).into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v)
}

/// caskade has no slab classes: every item is counted in one class, 1, which memcached tools
/// that read `stats items` can show. Nothing at all when there are no items, as memcached.
fn items(node: &Node) -> Vec<(&'static str, String)> {
    let number = total(node, "curr_items");
    if number == 0 {
        return Vec::new();
    }
    vec![
        ("items:1:number", number.to_string()),
        ("items:1:evicted", total(node, "evictions").to_string()),
        ("items:1:reclaimed", total(node, "reclaimed").to_string()),
    ]
}

/// No slab classes, no per-class lines: the totals memcached ends `stats slabs` with.
fn slabs(node: &Node) -> Vec<(&'static str, String)> {
    let active = u64::from(total(node, "curr_items") > 0);
    vec![("active_slabs", active.to_string()), ("total_malloced", total(node, "bytes").to_string())]
}

pub fn general(node: &Node) -> Vec<(&'static str, String)> {
    let (user, system) = rusage();
    let config = &node.config;
    let mut out: Vec<(&'static str, String)> = vec![
        ("pid", std::process::id().to_string()),
        ("uptime", node.stats.started.elapsed().as_secs().to_string()),
        ("time", unix_now().to_string()),
        ("version", VERSION.to_string()),
        ("pointer_size", (8 * std::mem::size_of::<usize>()).to_string()),
        ("rusage_user", format!("{:.6}", user)),
        ("rusage_system", format!("{:.6}", system)),
        ("max_connections", config.max_connections.to_string()),
        ("curr_connections", node.stats.curr_connections().to_string()),
        ("total_connections", node.stats.total_connections.load(Relaxed).to_string()),
    ];
    for (name, value) in merged(&node.core_stats) {
        // Node-wide connection counts are reported above.
        if name != "total_connections" {
            out.push((name, value.to_string()));
        }
    }
    out.push(("limit_maxbytes", node.memory_limit.load(Relaxed).to_string()));
    out.push(("threads", node.core_stats.len().to_string()));
    out.extend(recovery(node));
    out
}

/// What start-up recovery did: set once, before the node serves (`RECOVERY_STATS` says what
/// each means).
pub fn recovery(node: &Node) -> Vec<(&'static str, String)> {
    let r = &node.recovery.report;
    vec![
        ("recovery_seconds", format!("{:.6}", node.recovery.seconds)),
        ("recovery_segments", r.segments.to_string()),
        ("recovery_segments_from_hints", r.from_hints.to_string()),
        ("recovery_records", r.records.to_string()),
        ("recovery_bytes_cut", r.bytes_cut.to_string()),
        ("recovery_corrupt_records", r.corrupt_records.to_string()),
        ("recovery_corrupt_bytes", r.corrupt_bytes.to_string()),
        ("recovery_files_removed", r.files_removed.to_string()),
    ]
}

/// The STAT names of [`recovery`] with their meaning (the HELP lines of `/metrics`).
pub const RECOVERY_STATS: &[(&str, &str)] = &[
    ("recovery_seconds", "Seconds the start-up recovery of every shard took (wall clock; shards recover in parallel)."),
    ("recovery_segments", "Log segments found by the start-up recovery."),
    ("recovery_segments_from_hints", "Segments the start-up recovery read from their hint files instead of scanning them."),
    ("recovery_records", "Records replayed by the start-up recovery."),
    ("recovery_bytes_cut", "Bytes of torn or damaged segment tails cut off at start-up."),
    ("recovery_corrupt_records", "Damaged records stepped over inside segments at start-up."),
    ("recovery_corrupt_bytes", "Bytes of the damaged records stepped over at start-up."),
    ("recovery_files_removed", "Files removed at start-up: leftovers of interrupted writes and merges."),
];

fn settings(node: &Node) -> Vec<(&'static str, String)> {
    let c = &node.config;
    vec![
        ("maxbytes", node.memory_limit.load(Relaxed).to_string()),
        ("maxconns", c.max_connections.to_string()),
        ("tcpport", c.port.to_string()),
        ("udpport", "0".to_string()),
        ("inter", c.listen.to_string()),
        ("verbosity", node.verbosity.load(Relaxed).to_string()),
        ("num_threads", node.core_stats.len().to_string()),
        ("evictions", "on".to_string()),
        ("cas_enabled", "yes".to_string()),
        ("item_size_max", c.max_item_size.to_string()),
        ("flush_enabled", "yes".to_string()),
        ("binding_protocol", "auto-negotiate".to_string()),
        ("shutdown_command", if c.enable_shutdown { "yes" } else { "no" }.to_string()),
    ]
}

/// CPU seconds (user, system) of this process.
fn rusage() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}
