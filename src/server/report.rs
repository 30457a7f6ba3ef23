//! The STAT command's lists, under memcached's names.

use std::sync::atomic::Ordering::Relaxed;

use super::{Node, VERSION};
use crate::stats::{merged, unix_now};

/// The statistics of a STAT group ("" for the general ones), or `None` for a group caskade
/// does not have.
pub fn stats(node: &Node, group: &[u8]) -> Option<Vec<(&'static str, String)>> {
    match group {
        b"" => Some(general(node)),
        b"settings" => Some(settings(node)),
        _ => None,
    }
}

fn general(node: &Node) -> Vec<(&'static str, String)> {
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
    out.push(("limit_maxbytes", config.memory_limit_bytes().to_string()));
    out.push(("threads", node.core_stats.len().to_string()));
    out
}

fn settings(node: &Node) -> Vec<(&'static str, String)> {
    let c = &node.config;
    vec![
        ("maxbytes", c.memory_limit_bytes().to_string()),
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
        ("binding_protocol", "binary".to_string()),
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
