//! The cluster's side of a node: the peer port and the peer links between cores of nodes.
//!
//! Each core of a node keeps its own links to the other nodes ([`link::Links`]): one per
//! (node, core) pair it has forwarded to, so a forwarded request lands on the core of the
//! owner that owns its partition (the HELLO names that core; the owner's accepting core
//! hands the socket over if the kernel gave it to another). Links are long-lived, pipelined
//! and authenticated; what one turn forwards to one peer core leaves in one `write(2)`.
//! The other end of a link is a [`Connection`](super::connection::Connection) of the owner
//! in the peer protocol ([`serve`]), served by the same routing code as a client.
//!
//! Hops of a forwarded request, client on node A core k, key owned by node B core j:
//! A core k ─(peer link k→(B, j))─▶ B core j runs it ─▶ the outcome back on the same link
//! ─▶ A core k encodes the reply. No mailbox hop on either node once A knows B's core
//! count (learned at the first HELLO); before that, requests go to B's core 0, which
//! passes them to core j through its mailbox.

pub mod link;
pub mod serve;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::cluster::config::ClusterFile;
use crate::cluster::ClusterMap;
use crate::stats::unix_now;

/// The largest frame body before AUTH: a HELLO or an AUTH with room to spare (a cluster name
/// and a node id are short), so an unauthenticated connection cannot make a node buffer much.
pub const HANDSHAKE_MAX_BODY: u32 = 4096;

/// The largest frame body on an authenticated link: the largest item any node may accept
/// (`-I` at most 1 GiB) with its key and extras. Each node's own `-I` is enforced by its
/// shard (a forwarded store too large for the owner gets TOO_LARGE), so nodes of one cluster
/// may run different `-I` without breaking their links.
pub const MAX_BODY: u32 = (crate::config::MAX_ITEM_SIZE_CEILING + 1024) as u32;

/// Seconds an accepted peer connection has to authenticate; then it is closed, so idle or
/// slow connections to the peer port cannot pile up.
pub const HANDSHAKE_SECONDS: u32 = 10;

/// A peer-supplied name (node id, cluster name) as a log line may show it: escaped, and cut.
pub fn printable(bytes: &[u8]) -> String {
    const SHOWN: usize = 200;
    let text: String = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]).escape_debug().collect();
    if bytes.len() > SHOWN { format!("{text}…") } else { text }
}

/// What every core of a clustered node knows of the cluster.
pub struct Cluster {
    pub file: ClusterFile,
    pub map: ClusterMap,
    /// This node's index in the map.
    pub me: usize,
    /// By map index: the peer address.
    pub peer_addrs: Vec<SocketAddr>,
    /// By map index: the node's core count, once a HELLO has told it (0: not yet).
    pub peer_cores: Vec<AtomicU16>,
    /// By map index: the figures of this node's links to it.
    pub peers: Vec<PeerStats>,
    /// Connections to the peer port refused: failed authentication, another cluster, a
    /// version or map mismatch, a malformed frame.
    pub refused: AtomicU64,
    /// By core: its replication streams as last published (about once a second), and the
    /// bytes its backlog holds.
    pub replication: std::sync::Mutex<Vec<(Vec<crate::server::replicate::StreamReport>, usize)>>,
    /// The verification round asked for last (`/cluster/verify`, and every
    /// `verify_interval_s`): each stream compares digests with its backup once per round.
    pub verify_requested: AtomicU64,
}

/// This node's links to one other node, summed over its cores.
#[derive(Default)]
pub struct PeerStats {
    /// Links up now.
    pub links_up: AtomicUsize,
    /// When the node last became reachable or unreachable (unix seconds; 0: never tried).
    pub changed_at: AtomicU64,
    pub forwarded: AtomicU64,
    pub in_flight: AtomicI64,
    /// Requests answered with a temporary failure (link down, full or timed out).
    pub errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// Round trips of forwarded requests: count and total microseconds.
    pub rtt_count: AtomicU64,
    pub rtt_micros: AtomicU64,
    /// Round trips per bucket of [`RTT_BUCKETS_MICROS`] (not cumulative; the last: larger).
    pub rtt_buckets: [AtomicU64; RTT_BUCKETS_MICROS.len() + 1],
}

/// Upper bounds of the round-trip buckets, in microseconds: the admin port's latency buckets.
pub const RTT_BUCKETS_MICROS: &[u64] = crate::admin::metrics::BUCKETS_MICROS;

impl PeerStats {
    pub fn record_rtt(&self, micros: u64) {
        self.rtt_count.fetch_add(1, Relaxed);
        self.rtt_micros.fetch_add(micros, Relaxed);
        let bucket = RTT_BUCKETS_MICROS.partition_point(|&b| b < micros);
        self.rtt_buckets[bucket].fetch_add(1, Relaxed);
    }
}

impl Cluster {
    pub fn new(file: ClusterFile, node_id: &str) -> Result<Cluster, String> {
        let map = file.map();
        let me = map.node_index(node_id).ok_or_else(|| format!("node '{node_id}' is not in the cluster file"))?;
        let peer_addrs = map
            .nodes()
            .iter()
            .map(|n| file.node(&n.id).map(|e| e.peer).ok_or_else(|| format!("node '{}' has no entry", n.id)))
            .collect::<Result<Vec<_>, _>>()?;
        let n = map.nodes().len();
        Ok(Cluster {
            file,
            me,
            peer_addrs,
            peer_cores: (0..n).map(|_| AtomicU16::new(0)).collect(),
            peers: (0..n).map(|_| PeerStats::default()).collect(),
            refused: AtomicU64::new(0),
            replication: std::sync::Mutex::new(Vec::new()),
            verify_requested: AtomicU64::new(0),
            map,
        })
    }

    pub fn node_id(&self, index: usize) -> &str {
        self.map.nodes().get(index).map_or("?", |n| n.id.as_str())
    }

    /// The core of node `node` that owns partition `p`, as far as this node knows.
    pub fn core_on(&self, node: usize, p: u16) -> u16 {
        match self.peer_cores[node].load(Relaxed) {
            0 => 0,
            cores => p % cores,
        }
    }

    /// A link to `node` came up (`up`) or went down; the node's state changes with its first
    /// link up and its last link down.
    pub fn link_changed(&self, node: usize, up: bool) {
        let peer = &self.peers[node];
        let before = if up { peer.links_up.fetch_add(1, Relaxed) } else { peer.links_up.fetch_sub(1, Relaxed) };
        if (up && before == 0) || (!up && before == 1) {
            peer.changed_at.store(unix_now() as u64, Relaxed);
        }
    }

    /// Core `core`'s streams as they stand now.
    pub fn publish_replication(&self, core: usize, reports: Vec<crate::server::replicate::StreamReport>, backlog_bytes: usize) {
        let mut all = self.replication.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() <= core {
            all.resize_with(core + 1, Default::default);
        }
        all[core] = (reports, backlog_bytes);
    }

    /// The streams to `node`, summed over this node's cores: (state, partitions, worst lag,
    /// summed lag, unacked bytes, oldest acknowledgement age in ms, resyncs, partial
    /// catch-ups, bytes sent, snapshot items sent, last error).
    pub fn replication_to(&self, node: usize) -> ReplicationSummary {
        let all = self.replication.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = ReplicationSummary { state: "none", ..Default::default() };
        for r in all.iter().flat_map(|(rs, _)| rs).filter(|r| r.node == node) {
            s.streams += 1;
            s.state = worse(s.state, r.state);
            s.partitions += r.partitions;
            s.lag_max = s.lag_max.max(r.lag_max);
            s.lag_sum += r.lag_sum;
            s.worst.extend_from_slice(&r.worst);
            s.lag.merge(&r.lag);
            s.unacked_bytes += r.unacked_bytes;
            s.ack_age_ms = s.ack_age_ms.max(r.ack_age_ms);
            s.resyncs += r.resyncs;
            s.partial_catchups += r.partial_catchups;
            s.backfills += r.backfills;
            s.noted_keys += r.noted_keys;
            s.bytes += r.bytes;
            s.records += r.records;
            s.snapshot_items += r.snapshot_items;
            s.verified_round = if s.streams == 1 { r.verified_round } else { s.verified_round.min(r.verified_round) };
            s.verified_partitions += r.verified_partitions;
            s.mismatches += r.mismatches;
            if r.last_error.is_some() {
                s.last_error = r.last_error.clone();
            }
        }
        s.worst = crate::server::replicate::worst_partitions(std::mem::take(&mut s.worst));
        s
    }

    /// Bytes held by every core's backlog.
    pub fn backlog_bytes(&self) -> usize {
        self.replication.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(_, b)| b).sum()
    }

    /// `stats cluster`: the map, then each node's state and figures.
    pub fn stats(&self) -> Vec<(String, String)> {
        let now = unix_now() as u64;
        let mut out = vec![
            ("cluster_name".to_string(), self.map.name().to_string()),
            ("cluster_node".to_string(), self.node_id(self.me).to_string()),
            ("cluster_nodes".to_string(), self.map.nodes().len().to_string()),
            ("cluster_map_revision".to_string(), self.map.revision().to_string()),
            ("cluster_map_checksum".to_string(), format!("{:08x}", self.map.checksum())),
            ("cluster_peer_connections_refused".to_string(), self.refused.load(Relaxed).to_string()),
            ("cluster_replicas".to_string(), self.map.replicas().to_string()),
            ("cluster_replication_backlog_bytes".to_string(), self.backlog_bytes().to_string()),
            ("cluster_verify_requested".to_string(), self.verify_requested.load(Relaxed).to_string()),
        ];
        let primaries = self.map.primaries_per_node();
        for (i, node) in self.map.nodes().iter().enumerate() {
            let p = &self.peers[i];
            let prefix = format!("node:{}", node.id);
            let changed = p.changed_at.load(Relaxed);
            let state = match (i == self.me, p.links_up.load(Relaxed) > 0, changed) {
                (true, _, _) => "self",
                (false, true, _) => "up",
                (false, false, 0) => "unknown",
                (false, false, _) => "unreachable",
            };
            let rtt = p.rtt_micros.load(Relaxed).checked_div(p.rtt_count.load(Relaxed)).unwrap_or(0);
            out.extend([
                (format!("{prefix}:state"), state.to_string()),
                (format!("{prefix}:since_seconds"), if changed == 0 { "0".into() } else { now.saturating_sub(changed).to_string() }),
                (format!("{prefix}:peer"), node.peer.clone()),
                (format!("{prefix}:primary_partitions"), primaries[i].to_string()),
                (format!("{prefix}:links_up"), p.links_up.load(Relaxed).to_string()),
                (format!("{prefix}:forwarded"), p.forwarded.load(Relaxed).to_string()),
                (format!("{prefix}:in_flight"), p.in_flight.load(Relaxed).max(0).to_string()),
                (format!("{prefix}:errors"), p.errors.load(Relaxed).to_string()),
                (format!("{prefix}:reconnects"), p.reconnects.load(Relaxed).to_string()),
                (format!("{prefix}:rtt_mean_us"), rtt.to_string()),
            ]);
            if i != self.me && self.map.replicas() > 0 {
                let r = self.replication_to(i);
                out.extend([
                    (format!("{prefix}:repl_state"), r.state.to_string()),
                    (format!("{prefix}:repl_streams"), r.streams.to_string()),
                    (format!("{prefix}:repl_partitions"), r.partitions.to_string()),
                    (format!("{prefix}:repl_lag_max"), r.lag_max.to_string()),
                    (format!("{prefix}:repl_lag_sum"), r.lag_sum.to_string()),
                    (format!("{prefix}:repl_worst_partitions"), r.worst.iter().map(|(p, l)| format!("{p}:{l}")).collect::<Vec<_>>().join(",")),
                    (format!("{prefix}:repl_lag_samples"), r.lag.count().to_string()),
                    (format!("{prefix}:repl_lag_p50_us"), bound(r.lag.quantile_bound_us(0.5))),
                    (format!("{prefix}:repl_lag_p99_us"), bound(r.lag.quantile_bound_us(0.99))),
                    (format!("{prefix}:repl_lag_p999_us"), bound(r.lag.quantile_bound_us(0.999))),
                    (format!("{prefix}:repl_unacked_bytes"), r.unacked_bytes.to_string()),
                    (format!("{prefix}:repl_ack_age_ms"), r.ack_age_ms.to_string()),
                    (format!("{prefix}:repl_resyncs"), r.resyncs.to_string()),
                    (format!("{prefix}:repl_partial_catchups"), r.partial_catchups.to_string()),
                    (format!("{prefix}:repl_backfills"), r.backfills.to_string()),
                    (format!("{prefix}:repl_backfill_noted_keys"), r.noted_keys.to_string()),
                    (format!("{prefix}:repl_bytes"), r.bytes.to_string()),
                    (format!("{prefix}:repl_records"), r.records.to_string()),
                    (format!("{prefix}:repl_snapshot_items"), r.snapshot_items.to_string()),
                    (format!("{prefix}:repl_verified_round"), r.verified_round.to_string()),
                    (format!("{prefix}:repl_verified_partitions"), r.verified_partitions.to_string()),
                    (format!("{prefix}:repl_mismatches"), r.mismatches.to_string()),
                    // Why a stream to it last went down (or was refused), on one line.
                    (format!("{prefix}:repl_last_error"), r.last_error.as_deref().unwrap_or("none").replace(['\r', '\n'], " ")),
                ]);
            }
        }
        out
    }
}

/// The streams to one backup node, summed over this node's cores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicationSummary {
    pub streams: usize,
    /// The worst stream's: none (no stream yet), live, backfilling, opening, down.
    pub state: &'static str,
    pub partitions: usize,
    pub lag_max: u64,
    pub lag_sum: u64,
    /// The partitions that lag most, worst first: (partition, changes unacknowledged).
    pub worst: Vec<(u16, u64)>,
    /// Time from a change's commit on this node to the backup's acknowledgement.
    pub lag: crate::cluster::replication::LagHistogram,
    pub unacked_bytes: usize,
    pub ack_age_ms: u64,
    pub resyncs: u64,
    pub partial_catchups: u64,
    pub backfills: u64,
    pub noted_keys: u64,
    pub bytes: u64,
    pub records: u64,
    pub snapshot_items: u64,
    /// The oldest verification round every stream has completed.
    pub verified_round: u64,
    pub verified_partitions: u64,
    pub mismatches: u64,
    pub last_error: Option<String>,
}

/// A lag quantile's bucket bound for `stats cluster`: 0 without samples, `inf` past the last.
fn bound(b: Option<u64>) -> String {
    match b {
        None => "0".into(),
        Some(u64::MAX) => "inf".into(),
        Some(us) => us.to_string(),
    }
}

fn worse(a: &'static str, b: &'static str) -> &'static str {
    let rank = |s: &str| ["", "none", "live", "backfilling", "resyncing", "opening", "down"].iter().position(|x| *x == s).unwrap_or(0);
    if rank(b) > rank(a) { b } else { a }
}
