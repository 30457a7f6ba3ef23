//! `GET /metrics`: the Prometheus text exposition format (0.0.4).
//!
//! * Every counter of `CoreStats`, summed over the cores, as `caskade_<name>_total`
//!   (a counter), or as `caskade_<name>` (a gauge) for the levels in `stats::names::GAUGES`.
//!   A name ending in `_micros` is exposed in seconds (`caskade_fsync_seconds_total`), and
//!   one starting with `total_` loses it (`caskade_items_total`, `caskade_connections_total`).
//! * Node figures: `caskade_info{version}`, `caskade_uptime_seconds`,
//!   `caskade_curr_connections`, `caskade_max_connections`, `caskade_limit_maxbytes`,
//!   `caskade_threads`, `caskade_cpu_{user,system}_seconds_total`.
//! * What start-up recovery did, as gauges set once: `caskade_recovery_seconds`,
//!   `caskade_recovery_segments`, `…_segments_from_hints`, `…_records`, `…_bytes_cut`,
//!   `…_corrupt_records`, `…_corrupt_bytes`, `…_files_removed`.
//! * `caskade_request_duration_seconds{op}`: a histogram per command class (get, set,
//!   delete, incr_decr, touch, other), with the buckets of [`BUCKETS_MICROS`], from the
//!   cores' hdrhistograms (`stats::latency` says what is timed).
//! * In a cluster, per other node (label `node`): `caskade_peer_up`,
//!   `caskade_peer_forwarded_total`, `caskade_peer_in_flight`, `caskade_peer_errors_total`,
//!   `caskade_peer_connects_total`, and `caskade_peer_rtt_seconds`, a histogram of forwarded
//!   requests' round trips; `caskade_peer_connections_refused_total`. With replicas, per
//!   backup node: `caskade_replication_live`, `_lag_max`, `_lag_changes`, `_unacked_bytes`,
//!   `_ack_age_seconds`, `_resyncs_total`, `_bytes_total`, the histogram `_lag_seconds`; and
//!   `caskade_replication_backlog_bytes`.
//! * `caskade_fsync_duration_seconds`: a histogram of how long each fsync of the logs took
//!   (every shard's, the same fsyncs as `caskade_fsyncs_total`), with the same buckets.

use std::fmt::Write;

use super::CORE_TIMEOUT;
use crate::server::Handle;
use crate::stats::latency::Op;
use crate::stats::names;

/// Upper bounds of the latency buckets, in microseconds (`+Inf` follows).
pub const BUCKETS_MICROS: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000,
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(micros: u64) -> String {
    format!("{}", micros as f64 / 1e6)
}

/// The cluster's figures, per other node.
fn cluster(out: &mut String, handle: &Handle) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(c) = handle.node.cluster.as_deref() else { return };
    let others: Vec<(usize, &str)> = (0..c.map.nodes().len()).filter(|&i| i != c.me).map(|i| (i, c.node_id(i))).collect();
    type Figure = fn(&crate::server::peer::PeerStats) -> u64;
    let figures: [(&str, &str, &str, Figure); 5] = [
        ("caskade_peer_up", "gauge", "1 while a link to the node is up.", |p| (p.links_up.load(Relaxed) > 0) as u64),
        ("caskade_peer_forwarded_total", "counter", "Requests forwarded to the node.", |p| p.forwarded.load(Relaxed)),
        ("caskade_peer_in_flight", "gauge", "Forwarded requests waiting for the node's answer.", |p| p.in_flight.load(Relaxed).max(0) as u64),
        ("caskade_peer_errors_total", "counter", "Requests for the node answered with a temporary failure.", |p| p.errors.load(Relaxed)),
        ("caskade_peer_connects_total", "counter", "Connections made to the node (first ones and reconnects).", |p| p.reconnects.load(Relaxed)),
    ];
    for (name, kind, help, get) in figures {
        family(out, name, kind, help);
        for &(i, id) in &others {
            let _ = writeln!(out, "{name}{{node=\"{id}\"}} {}", get(&c.peers[i]));
        }
    }
    family(out, "caskade_peer_rtt_seconds", "histogram", "Round trips of requests forwarded to the node.");
    for &(i, id) in &others {
        let p = &c.peers[i];
        let mut cumulative = 0;
        for (b, bound) in crate::server::peer::RTT_BUCKETS_MICROS.iter().enumerate() {
            cumulative += p.rtt_buckets[b].load(Relaxed);
            let _ = writeln!(out, "caskade_peer_rtt_seconds_bucket{{node=\"{id}\",le=\"{}\"}} {cumulative}", seconds(*bound));
        }
        cumulative += p.rtt_buckets[crate::server::peer::RTT_BUCKETS_MICROS.len()].load(Relaxed);
        let _ = writeln!(out, "caskade_peer_rtt_seconds_bucket{{node=\"{id}\",le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "caskade_peer_rtt_seconds_sum{{node=\"{id}\"}} {}", seconds(p.rtt_micros.load(Relaxed)));
        let _ = writeln!(out, "caskade_peer_rtt_seconds_count{{node=\"{id}\"}} {cumulative}");
    }
    family(out, "caskade_peer_connections_refused_total", "counter", "Connections to the peer port refused (authentication, cluster, version, map, bad frames).");
    let _ = writeln!(out, "caskade_peer_connections_refused_total {}", c.refused.load(Relaxed));
    if c.map.replicas() == 0 {
        return;
    }
    // Replication, per backup node (as published by the cores about once a second).
    let summaries: Vec<_> = others.iter().map(|&(i, id)| (id, c.replication_to(i))).collect();
    type Repl = fn(&crate::server::peer::ReplicationSummary) -> u64;
    let repl: [(&str, &str, &str, Repl); 8] = [
        ("caskade_replication_live", "gauge", "1 while every stream to the backup node is live.", |r| (r.state == "live") as u64),
        ("caskade_replication_lag_max", "gauge", "Changes of the worst partition the backup has not acknowledged.", |r| r.lag_max),
        ("caskade_replication_lag_changes", "gauge", "Changes the backup has not acknowledged, summed over partitions.", |r| r.lag_sum),
        ("caskade_replication_unacked_bytes", "gauge", "Bytes sent to the backup and not yet acknowledged.", |r| r.unacked_bytes as u64),
        ("caskade_replication_ack_age_seconds", "gauge", "Time since the backup's oldest stream last acknowledged (seconds, ms precision).", |r| r.ack_age_ms),
        ("caskade_replication_resyncs_total", "counter", "Full resyncs of partitions started toward the backup.", |r| r.resyncs),
        ("caskade_replication_backfills_total", "counter", "Backfills (partitions caught up from a seqno older than the backlog) started toward the backup.", |r| r.backfills),
        ("caskade_replication_bytes_total", "counter", "Bytes of change frames sent to the backup.", |r| r.bytes),
    ];
    for (name, kind, help, get) in repl {
        family(out, name, kind, help);
        for (id, r) in &summaries {
            let v = get(r);
            if name == "caskade_replication_ack_age_seconds" {
                let _ = writeln!(out, "{name}{{node=\"{id}\"}} {}", v as f64 / 1e3);
            } else {
                let _ = writeln!(out, "{name}{{node=\"{id}\"}} {v}");
            }
        }
    }
    family(out, "caskade_replication_lag_seconds", "histogram", "Time from a change's commit on this node to the backup's acknowledgement of it (per acknowledged frame, its oldest change).");
    for (id, r) in &summaries {
        let mut cumulative = 0;
        for (i, bound) in crate::cluster::replication::lag::BOUNDS_US.iter().enumerate() {
            cumulative += r.lag.counts[i];
            let _ = writeln!(out, "caskade_replication_lag_seconds_bucket{{node=\"{id}\",le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
        }
        let _ = writeln!(out, "caskade_replication_lag_seconds_bucket{{node=\"{id}\",le=\"+Inf\"}} {}", r.lag.count());
        let _ = writeln!(out, "caskade_replication_lag_seconds_sum{{node=\"{id}\"}} {}", r.lag.sum_us as f64 / 1e6);
        let _ = writeln!(out, "caskade_replication_lag_seconds_count{{node=\"{id}\"}} {}", r.lag.count());
    }
    family(out, "caskade_replication_backlog_bytes", "gauge", "Bytes of recent changes the cores keep for backups that fall behind.");
    let _ = writeln!(out, "caskade_replication_backlog_bytes {}", c.backlog_bytes());
}

pub fn render(handle: &Handle) -> String {
    // The histograms first: each core answers between two turns, so the counters read after
    // include everything the turns before had answered.
    let latencies = handle.latencies(CORE_TIMEOUT);
    let mut out = String::with_capacity(16 * 1024);
    let general = handle.general_stats();
    let stat = |name: &str| general.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default();

    family(&mut out, "caskade_info", "gauge", "The caskade version, as a label.");
    let _ = writeln!(out, "caskade_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    for (name, help, value) in [
        ("caskade_uptime_seconds", "Seconds since the server started.", stat("uptime")),
        ("caskade_curr_connections", "Client connections open now.", stat("curr_connections")),
        ("caskade_max_connections", "The connection limit (-c).", stat("max_connections")),
        ("caskade_limit_maxbytes", "The item memory limit in bytes (-m).", stat("limit_maxbytes")),
        ("caskade_threads", "Event-loop threads (cores).", stat("threads")),
    ] {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {}", if value.is_empty() { "0".to_string() } else { value });
    }
    for (name, help, value) in [
        ("caskade_cpu_user_seconds_total", "User CPU time of the process.", stat("rusage_user")),
        ("caskade_cpu_system_seconds_total", "System CPU time of the process.", stat("rusage_system")),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", if value.is_empty() { "0".to_string() } else { value });
    }

    for (key, help) in crate::server::RECOVERY_STATS {
        let name = format!("caskade_{key}");
        family(&mut out, &name, "gauge", help);
        let value = stat(key);
        let _ = writeln!(out, "{name} {}", if value.is_empty() { "0".to_string() } else { value });
    }

    for (name, value) in crate::stats::merged(&handle.node.core_stats) {
        let (base, value) = match name.strip_suffix("_micros") {
            Some(stem) => (format!("caskade_{stem}_seconds"), seconds(value)),
            None => (format!("caskade_{name}"), value.to_string()),
        };
        if names::is_gauge(name) {
            family(&mut out, &base, "gauge", names::describe(name));
            let _ = writeln!(out, "{base} {value}");
        } else {
            // `total_items` is `caskade_items_total`, not `caskade_total_items_total`.
            let metric = match base.strip_prefix("caskade_total_") {
                Some(rest) => format!("caskade_{rest}_total"),
                None => format!("{base}_total"),
            };
            family(&mut out, &metric, "counter", names::describe(name));
            let _ = writeln!(out, "{metric} {value}");
        }
    }

    let name = "caskade_request_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from the read of a request to the write of its reply, by command class.",
    );
    for op in Op::ALL {
        let op_name = op.name();
        for &le in BUCKETS_MICROS {
            let n = latencies.count_at_most(op, le);
            let _ = writeln!(out, "{name}_bucket{{op=\"{op_name}\",le=\"{}\"}} {n}", seconds(le));
        }
        let count = latencies.histogram(op).len();
        let _ = writeln!(out, "{name}_bucket{{op=\"{op_name}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{op=\"{op_name}\"}} {}", seconds(latencies.sum_micros(op)));
        let _ = writeln!(out, "{name}_count{{op=\"{op_name}\"}} {count}");
    }

    let name = "caskade_fsync_duration_seconds";
    family(&mut out, name, "histogram", "Time each fsync of the shards' logs took.");
    let fsync = &latencies.fsync;
    for &le in BUCKETS_MICROS {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {}", seconds(le), fsync.count_at_most(le));
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", fsync.count());
    let _ = writeln!(out, "{name}_sum {}", seconds(fsync.sum_micros()));
    let _ = writeln!(out, "{name}_count {}", fsync.count());
    cluster(&mut out, handle);
    out
}
