//! The lists of the STAT command (binary) and `stats` (text), under memcached's names.

use std::sync::atomic::Ordering::Relaxed;

use super::{Node, VERSION};
use crate::stats::{merged, unix_now};

/// The connection that asked for statistics (`stats conns` lists it).
pub struct Asker {
    pub fd: i32,
    pub peer: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
}

impl Asker {
    pub fn of(socket: &mio::net::TcpStream) -> Asker {
        use std::os::fd::AsRawFd;
        Asker { fd: socket.as_raw_fd(), peer: socket.peer_addr().ok(), local: socket.local_addr().ok() }
    }
}

/// The counters at the last `stats reset`, subtracted from what `stats` reports (the cores'
/// counters themselves are never written by another thread, and `/metrics` stays monotonic).
#[derive(Default)]
pub struct Baseline(std::sync::Mutex<Vec<(&'static str, u64)>>);

/// The counters memcached's `stats reset` leaves alone: what is, not what happened.
const GAUGES: &[&str] = &["curr_items", "bytes", "segments", "disk_bytes", "dead_bytes"];

impl Baseline {
    fn reset(&self, node: &Node) {
        let mut now: Vec<(&'static str, u64)> =
            merged(&node.core_stats).into_iter().filter(|(n, _)| !GAUGES.contains(n) && *n != "total_connections").collect();
        now.push(("total_connections", node.stats.total_connections.load(Relaxed)));
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    fn of(&self, name: &str) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v)
    }

    /// `list` with every counter counted since the last reset.
    fn apply(&self, list: &mut [(&'static str, String)]) {
        let base = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (name, value) in list.iter_mut() {
            if let (Some((_, b)), Ok(v)) = (base.iter().find(|(n, _)| n == name), value.parse::<u64>()) {
                *value = v.saturating_sub(*b).to_string();
            }
        }
    }
}

/// The statistics of a STAT group ("" for the general ones), or `None` for a group caskade
/// does not have. `stats reset` resets the counters and answers an empty list (the text
/// protocol answers it `RESET`).
pub fn stats(node: &Node, group: &[u8], asker: &Asker) -> Option<Vec<(std::borrow::Cow<'static, str>, String)>> {
    let fixed = |list: Vec<(&'static str, String)>| list.into_iter().map(|(n, v)| (n.into(), v)).collect();
    match detail(node, group) {
        // Binary STAT, as memcached's: on/off answer the terminator alone, dump one
        // statistic "detailed" holding the text dump, anything else not found.
        Some(Detail::Switched) => return Some(Vec::new()),
        Some(Detail::Dump(text)) => return Some(vec![("detailed".into(), String::from_utf8_lossy(&text).into_owned())]),
        Some(Detail::Usage) => return None,
        None => {}
    }
    match group {
        b"" => {
            let mut list = general(node);
            node.stats_baseline.apply(&mut list);
            Some(fixed(list))
        }
        b"settings" => Some(fixed(settings(node))),
        b"items" => Some(fixed(items(node))),
        b"slabs" => Some(fixed(slabs(node))),
        // memcached's per-size histogram is off unless `-o track_sizes`; caskade has none.
        b"sizes" => Some(fixed(vec![("sizes_status", "disabled".to_string())])),
        b"conns" => Some(conns(node, asker)),
        b"reset" => {
            node.stats_baseline.reset(node);
            node.core_stats.iter().for_each(|c| c.prefixes.clear());
            Some(Vec::new())
        }
        // `stats cluster`: the map, each node's state, forwarded requests, link round trips.
        b"cluster" => Some(match &node.cluster {
            Some(c) => c.stats().into_iter().map(|(n, v)| (n.into(), v)).collect(),
            None => vec![("cluster_nodes".into(), "1".to_string())],
        }),
        _ => None,
    }
}

/// What `stats detail …` did.
pub enum Detail {
    /// `on` or `off`: every core counts per prefix from now on, or stops.
    Switched,
    /// `dump`: memcached's `PREFIX …` lines and `END`.
    Dump(Vec<u8>),
    /// No argument or another one.
    Usage,
}

/// `stats detail on|off|dump` (`group` is `detail` and its argument); `None` for any other
/// group. Turning it off keeps the counts, as memcached (a reset clears them).
pub fn detail(node: &Node, group: &[u8]) -> Option<Detail> {
    let mut words = group.split(|&b| b == b' ').filter(|w| !w.is_empty());
    if words.next() != Some(b"detail") {
        return None;
    }
    Some(match (words.next(), words.next()) {
        (Some(on @ (b"on" | b"off")), None) => {
            node.core_stats.iter().for_each(|c| c.prefixes.set_enabled(on == b"on"));
            Detail::Switched
        }
        (Some(b"dump"), None) => {
            let mut out = Vec::new();
            crate::stats::prefix::dump(node.core_stats.iter().map(|c| &c.prefixes), &mut out);
            Detail::Dump(out)
        }
        _ => Detail::Usage,
    })
}

/// `stats conns` as memcached names it: every core's published copy of its listeners and
/// connections (`crate::stats::conns`), with the asking connection as it is now.
fn conns(node: &Node, asker: &Asker) -> Vec<(std::borrow::Cow<'static, str>, String)> {
    use crate::stats::conns::{list, ConnEntry};
    let now = unix_now();
    let entries = node.core_stats.iter().flat_map(|c| c.conns.snapshot()).collect();
    let me = ConnEntry { fd: asker.fd, addr: asker.peer, listen_addr: asker.local, state: "conn_parse_cmd", last_cmd: now };
    list(entries, me, now).into_iter().map(|(n, v)| (n.into(), v)).collect()
}

/// A counter summed over the cores, counted since the last `stats reset`.
fn total(node: &Node, name: &str) -> u64 {
    let now = merged(&node.core_stats).into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v);
    now.saturating_sub(node.stats_baseline.of(name))
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

/// Every setting memcached 1.6 lists, in its order: caskade's values where it has the
/// setting, memcached's defaults for tunables of features caskade does not have, `NULL`,
/// `(null)` or `no` where memcached answers so for a feature that is off
/// (`protocol-spec/memcached-text.md`, "stats settings").
fn settings(node: &Node) -> Vec<(&'static str, String)> {
    let c = &node.config;
    let threads = node.core_stats.len().to_string();
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut out = vec![
        ("maxbytes", node.memory_limit.load(Relaxed).to_string()),
        ("maxconns", c.max_connections.to_string()),
        ("tcpport", c.port.to_string()),
        ("udpport", "0".to_string()),
        ("inter", c.listen.to_string()),
        ("verbosity", node.verbosity.load(Relaxed).to_string()),
        ("oldest", "0".to_string()),
        ("evictions", "on".to_string()),
        ("domain_socket", "NULL".to_string()),
        ("umask", "700".to_string()),
        ("shutdown_command", yes_no(c.enable_shutdown)),
        ("growth_factor", "1.25".to_string()),
        ("chunk_size", "48".to_string()),
        ("num_threads", threads.clone()),
        ("num_threads_per_udp", threads),
        ("stat_key_prefix", ":".to_string()),
        ("detail_enabled", yes_no(node.core_stats.first().is_some_and(|c| c.prefixes.enabled()))),
        ("reqs_per_event", "20".to_string()),
        ("cas_enabled", "yes".to_string()),
        ("tcp_backlog", "1024".to_string()),
        ("binding_protocol", "auto-negotiate".to_string()),
        ("auth_enabled_sasl", "no".to_string()),
        ("auth_enabled_ascii", "no".to_string()),
        ("item_size_max", c.max_item_size.to_string()),
        ("maxconns_fast", "yes".to_string()),
        ("hashpower_init", "0".to_string()),
        ("slab_reassign", "no".to_string()),
        ("slab_automove", "0".to_string()),
    ];
    // memcached's defaults for the tunables of slabs, LRUs, logging and extstore, which
    // caskade does not have; then its TLS settings, off.
    out.extend(
        [
            ("slab_automove_ratio", "0.80"),
            ("slab_automove_window", "30"),
            ("slab_chunk_max", "524288"),
            ("lru_crawler", "no"),
            ("lru_crawler_sleep", "100"),
            ("lru_crawler_tocrawl", "0"),
            ("tail_repair_time", "0"),
            ("flush_enabled", "yes"),
            ("dump_enabled", "no"),
            ("hash_algorithm", "murmur3"),
            ("lru_maintainer_thread", "no"),
            ("lru_segmented", "no"),
            ("hot_lru_pct", "20"),
            ("warm_lru_pct", "40"),
            ("hot_max_factor", "0.20"),
            ("warm_max_factor", "2.00"),
            ("temp_lru", "no"),
            ("temporary_ttl", "61"),
            ("idle_timeout", "0"),
            ("watcher_logbuf_size", "262144"),
            ("worker_logbuf_size", "65536"),
            ("read_buf_mem_limit", "0"),
            ("track_sizes", "no"),
            ("inline_ascii_response", "no"),
            ("ext_item_size", "512"),
            ("ext_item_age", "4294967295"),
            ("ext_low_ttl", "0"),
            ("ext_recache_rate", "2000"),
            ("ext_wbuf_size", "4194304"),
            ("ext_compact_under", "0"),
            ("ext_drop_under", "0"),
            ("ext_max_sleep", "1000000"),
            ("ext_max_frag", "0.80"),
            ("slab_automove_freeratio", "0.010"),
            ("ext_drop_unread", "no"),
            ("ssl_enabled", "no"),
            ("ssl_chain_cert", "(null)"),
            ("ssl_key", "(null)"),
            ("ssl_verify_mode", "0"),
            ("ssl_keyformat", "1"),
            ("ssl_ciphers", "NULL"),
            ("ssl_ca_cert", "NULL"),
            ("ssl_wbuf_size", "16384"),
            ("ssl_session_cache", "no"),
            ("ssl_kernel_tls", "no"),
            ("ssl_min_version", "tlsv1.2"),
            ("num_napi_ids", "(null)"),
            ("memory_file", "(null)"),
        ]
        .into_iter()
        .map(|(n, v)| (n, v.to_string())),
    );
    out
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
