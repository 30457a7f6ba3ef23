//! Where a storage command runs, whatever the protocol it came in: on this core's shard, on
//! the core that owns its key (through the outbox), or, for a flush, on every core.

use mio::Registry;

use super::connection::Connection;
use super::gate::{Dest, Gate, Wait};
use super::held::Held;
use super::replicate::Replication;
use super::mailbox::{Outbox, ReturnAddress};
use super::peer::link::{InFlightReq, Links};
use super::peer::Cluster;
use super::Node;
use crate::cluster::{self, Owner};
use crate::protocol::{Durability, Limits, ReplyTo};
use crate::storage::Outcome;
use crate::stats::latency::{Op, Recorder};
use crate::stats::CoreStats;
use crate::storage::{Command, Shard};

/// The answer to `md <key> I` for a key another node owns.
const INVALIDATE_NOT_FORWARDED: &[u8] = b"SERVER_ERROR invalidate not served for a key on another node\r\n";

/// What serving a request on a core needs besides its connection.
pub struct Ctx<'c> {
    pub core: usize,
    pub shard: &'c mut Shard,
    pub stats: &'c CoreStats,
    pub outbox: &'c mut Outbox,
    pub node: &'c Node,
    pub now: u32,
    pub limits: &'c Limits,
    /// This core's latency histograms: what is served here is counted for this turn.
    pub latency: &'c mut Recorder,
    /// Replies waiting for this turn's commit.
    pub held: &'c mut Held,
    /// The cluster this node is part of (`None`: a single node).
    pub cluster: Option<&'c Cluster>,
    /// This core's links to other nodes, and the poll they register with.
    pub links: &'c mut Links,
    pub registry: &'c Registry,
    /// Replies to durable writes, held until enough backups have them.
    pub gate: &'c mut Gate,
    /// This core's streams to its backups (`None`: no backups).
    pub replication: Option<&'c Replication>,
    /// The core's monotonic clock, in milliseconds (the gate's deadlines).
    pub now_ms: u64,
    /// Every core's mailbox (a helper thread answers `lru_crawler metadump` through them).
    pub mailboxes: &'c super::mailbox::Mailboxes,
}

/// What a durable write must wait for: how many backups (on their disks if `persist`, and
/// then on this node's disk too), and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Durable {
    pub need: usize,
    pub persist: bool,
    pub timeout_ms: u64,
}

/// How long a durable write waits without a cluster (a single node's `persist_majority`,
/// which waits only for its own fsync).
const SINGLE_NODE_TIMEOUT_MS: u64 = 2000;

impl Durable {
    /// The requirement of `cmd`: the level `asked` by the request, else the cluster's
    /// default; a majority of the partition's `replicas + 1` copies, the primary's among
    /// them. None for reads and flushes, for level `none`, and for `majority` without
    /// backups (the primary alone is the majority).
    pub fn of(cluster: Option<&Cluster>, cmd: &Command<&[u8]>, asked: Option<Durability>) -> Option<Durable> {
        let mutation = matches!(cmd, Command::Store { .. } | Command::Delete { .. } | Command::Arith { .. } | Command::Touch { .. } | Command::GetAndTouch { .. });
        let level = asked.or(cluster.map(|c| c.file.durability)).filter(|_| mutation)?;
        let need = level.backups_needed(cluster.map_or(0, |c| c.map.replicas()));
        let persist = level == Durability::PersistMajority;
        let timeout_ms = cluster.map_or(SINGLE_NODE_TIMEOUT_MS, |c| c.file.durability_timeout.as_millis() as u64);
        (need > 0 || persist).then_some(Durable { need, persist, timeout_ms })
    }

    /// Whether enough of `p`'s backups are live to try.
    pub fn possible(self, replication: Option<&Replication>, p: u16) -> bool {
        self.need == 0 || replication.is_some_and(|r| r.live_backups(p) >= self.need)
    }
}

/// What to do with a reply [`execute_gated`] wrote.
pub enum Placed {
    /// It may go as replies without a durable write go: with the turn's commit if `appended`.
    Now { appended: bool },
    /// It waits in the gate: hand it to [`Gate::hold`] (`key` set: the durable write itself)
    /// or [`Gate::hold_behind`], with these alternatives.
    Gated { wait: Wait, own: bool, disk: Vec<u8>, ambiguous: Vec<u8> },
    /// A durable write refused before it ran (too few live backups): the reply is written.
    Impossible,
}

/// Runs `cmd` on this core's shard like [`execute`], and says whether the reply it wrote
/// into `out` (from its length on entry) must wait in the gate: a durable write's own
/// reply, and any reply to a command on a key with a durable write still pending.
#[allow(clippy::too_many_arguments)]
pub fn execute_gated(
    shard: &mut Shard,
    stats: &CoreStats,
    gate: &Gate,
    cluster: Option<&Cluster>,
    replication: Option<&Replication>,
    cmd: &Command<&[u8]>,
    to: &ReplyTo,
    now: u32,
    now_ms: u64,
    out: &mut Vec<u8>,
) -> Placed {
    let key = cmd.key().unwrap_or(&[]);
    let durable = Durable::of(cluster, cmd, to.durability());
    if let Some(d) = durable {
        if !d.possible(replication, cluster::partition_of(key)) {
            stats.durable_impossible.incr();
            to.write_outcome::<&[u8]>(out, key, &Outcome::DurabilityImpossible);
            return Placed::Impossible;
        }
        if d.persist {
            if shard.log().is_none() {
                // A majority on disk counts this node's copy, and `--in-memory` has no disk.
                stats.durable_impossible.incr();
                to.write_outcome::<&[u8]>(out, key, &Outcome::DurabilityImpossible);
                return Placed::Impossible;
            }
            // The turn's commit syncs this node's copy.
            shard.request_sync();
        }
    }
    let mark = shard.changes_len();
    let appended = execute(shard, stats, cmd, Some(to), now, out);
    let own = durable.and_then(|d| {
        let (partition, seqno) = shard.change_since(mark)?;
        Some(Wait { partition, seqno, need: d.need, persist: d.persist, deadline_ms: now_ms + d.timeout_ms })
    });
    let (wait, own) = match (own, gate.pending(key)) {
        (Some(w), _) => (w, true),
        (None, Some(w)) => (w, false),
        (None, None) => return Placed::Now { appended },
    };
    let mut disk = Vec::new();
    if appended {
        to.write_outcome::<&[u8]>(&mut disk, key, &Outcome::StorageError);
    }
    let mut ambiguous = Vec::new();
    if own {
        to.write_outcome::<&[u8]>(&mut ambiguous, key, &Outcome::SyncWriteAmbiguous);
    }
    Placed::Gated { wait, own, disk, ambiguous }
}

impl Placed {
    /// Holds the reply `ok` in `gate` for `dest`, if it is gated; `false` if it is not.
    pub fn hold(self, gate: &mut Gate, dest: Dest, key: &[u8], ok: &[u8]) -> bool {
        let Placed::Gated { wait, own, disk, ambiguous } = self else { return false };
        // A command that wrote nothing keeps its reply whatever its turn's commit does.
        let disk: &[u8] = if disk.is_empty() { ok } else { &disk };
        match own {
            true => gate.hold(dest, key, ok, disk, &ambiguous, wait),
            false => gate.hold_behind(dest, ok, disk, wait),
        }
        true
    }
}

/// Runs `cmd` on `shard`, counts it, and appends the reply for `to` (nothing when `to` is
/// `None`: a flush's acknowledgement). A reply may ask for a second command on the same shard
/// (meta arithmetic with a new TTL); it runs at once, so nothing comes between the two.
/// Returns whether a record was appended to the log: then the reply must wait for the commit.
pub fn execute(shard: &mut Shard, stats: &CoreStats, cmd: &Command<&[u8]>, to: Option<&ReplyTo>, now: u32, out: &mut Vec<u8>) -> bool {
    let appended = shard.records_appended();
    let key = cmd.key().unwrap_or(&[]);
    if let (Command::Get { .. }, true, Some(to)) = (cmd, shard.any_incomplete(), to) {
        // A backup's copy mid-resync (GET_REPLICA, a read fallback) would answer false misses.
        if shard.is_incomplete(cluster::partition_of(key)) {
            to.write_outcome::<&[u8]>(out, key, &Outcome::TemporaryFailure);
            return false;
        }
    }
    let (outcome, info) = match to.and_then(ReplyTo::meta_ops) {
        Some(ops) => {
            let (o, info) = shard.execute_meta(cmd, &ops, now);
            (o, Some(info))
        }
        None => (shard.execute(cmd, now), None),
    };
    stats.record(cmd, &outcome);
    super::watch::command(cmd, &outcome, now);
    // memcached counts per prefix the classic and binary commands, not the meta ones.
    if stats.prefixes.enabled() && !to.is_some_and(ReplyTo::is_meta) {
        stats.prefixes.record(cmd, &outcome);
    }
    if let Some(to) = to {
        to.write_outcome_with(out, key, &outcome, info.as_ref());
        if let Some(then) = to.then(key, &outcome) {
            shard.execute(&then, now);
        }
    }
    shard.records_appended() != appended
}

/// Runs `cmd` on this core's shard for `conn`; a reply that must wait for the commit is held:
/// one to a command that appended a record, and under group commit every one (a read may
/// have seen a record not yet durable). One that waits for backups goes to the gate.
pub(super) fn execute_here(ctx: &mut Ctx<'_>, conn: &mut Connection, key: usize, cmd: &Command<&[u8]>, to: &ReplyTo) {
    let cmd_key = cmd.key().unwrap_or(&[]);
    let start = conn.out().len();
    let placed = execute_gated(ctx.shard, ctx.stats, ctx.gate, ctx.cluster, ctx.replication, cmd, to, ctx.now, ctx.now_ms, conn.out());
    match placed {
        Placed::Impossible => {}
        Placed::Now { appended } => {
            if appended || ctx.shard.sync_rounds().is_some() {
                ctx.held.hold(conn, key, start, appended, to, cmd_key);
            }
        }
        gated => {
            // The reply waits in the gate: this turn's commit, then the backups.
            let ok = conn.out()[start..].to_vec();
            conn.out().truncate(start);
            let seq = conn.expect_replies(1, Vec::new());
            let dest = Dest::Conn { conn: key, generation: conn.generation, seq };
            gated.hold(ctx.gate, dest, cmd_key, &ok);
        }
    }
}

/// Serves one storage command of the connection `from` names: here if this core owns the
/// key's partition; in the owning core's mailbox, or on the link to the owning node, with a
/// reserved place in the connection's reply order. A flush runs here and is sent to every
/// other core (and, from a client, to every other node); its reply leaves once all have
/// run it. A request that came from another node is never sent on to a third.
pub fn storage(ctx: &mut Ctx<'_>, conn: &mut Connection, mut from: ReturnAddress, cmd: &Command<&[u8]>, to: ReplyTo) {
    let cores = ctx.node.core_stats.len();
    let Some(key) = cmd.key() else { return flush(ctx, conn, from, cmd, to) };
    let p = cluster::partition_of(key);
    let owner = match ctx.cluster {
        Some(c) => c.map.owner(p, c.me, from.core, cores),
        None => cluster::map::local_owner(p, from.core, cores),
    };
    match owner {
        Owner::Here => {
            execute_here(ctx, conn, from.conn, cmd, &to);
            ctx.latency.served(Op::of(cmd));
        }
        Owner::Core(core) => {
            ctx.stats.forwarded_requests.incr();
            from.seq = conn.expect_replies(1, Vec::new());
            from.read_at = ctx.latency.current();
            from.op = Some(Op::of(cmd));
            ctx.outbox.requests(core).push(from, Some(to), cmd);
        }
        Owner::Node(node) => {
            let Some(cluster) = ctx.cluster else { return };
            if let Command::Get { key } = cmd {
                // `read_fallback = "replica"`: a GET whose primary is known unreachable reads
                // a backup's copy (possibly stale) instead of failing.
                let peer = &cluster.peers[node];
                let unreachable = peer.links_up.load(std::sync::atomic::Ordering::Relaxed) == 0
                    && peer.changed_at.load(std::sync::atomic::Ordering::Relaxed) != 0;
                if cluster.file.read_fallback_replica && unreachable && !cluster.map.backups(p).is_empty() {
                    ctx.stats.replica_fallback_reads.incr();
                    return replica_get(ctx, conn, from, key, to);
                }
            }
            if matches!(cmd, Command::Delete { .. }) && to.meta_ops().is_some_and(|o| o.invalidate) {
                // The peer protocol carries no item state: `md I` would arrive as a delete.
                from.seq = conn.expect_replies(1, Vec::new());
                conn.complete(from.seq, INVALIDATE_NOT_FORWARDED);
                return;
            }
            ctx.stats.forwarded_requests.incr();
            from.seq = conn.expect_replies(1, Vec::new());
            from.read_at = ctx.latency.current();
            from.op = Some(Op::of(cmd));
            let req = InFlightReq { to: from, reply: to, flush: false };
            if ctx.links.submit(cluster, ctx.registry, ctx.core, node, p, cmd, req).is_err() {
                let mut bytes = Vec::new();
                to.write_outcome::<&[u8]>(&mut bytes, key, &Outcome::TemporaryFailure);
                conn.complete(from.seq, &bytes);
            }
        }
    }
}

/// GET_REPLICA: a GET answered from the first backup's copy of the key, wherever it is. A
/// node without backups (no cluster, or `replicas = 0`) answers NOT_SUPPORTED... through the
/// outcome the protocol has for it: a temporary failure.
pub fn replica_get(ctx: &mut Ctx<'_>, conn: &mut Connection, mut from: ReturnAddress, key: &[u8], to: ReplyTo) {
    let cmd = Command::Get { key };
    let p = cluster::partition_of(key);
    let cores = ctx.node.core_stats.len();
    ctx.stats.replica_reads.incr();
    let Some((cluster, &backup)) = ctx.cluster.and_then(|c| c.map.backups(p).first().map(|b| (c, b))) else {
        let mut bytes = Vec::new();
        to.write_outcome::<&[u8]>(&mut bytes, key, &Outcome::TemporaryFailure);
        conn.out().extend_from_slice(&bytes);
        return;
    };
    let backup = backup as usize;
    if backup == cluster.me {
        match cluster::map::local_owner(p, from.core, cores) {
            Owner::Here => execute_here(ctx, conn, from.conn, &cmd, &to),
            Owner::Core(core) | Owner::Node(core) => {
                from.seq = conn.expect_replies(1, Vec::new());
                ctx.outbox.requests(core).push(from, Some(to), &cmd);
            }
        }
        return;
    }
    from.seq = conn.expect_replies(1, Vec::new());
    let req = InFlightReq { to: from, reply: to, flush: false };
    if ctx.links.submit_replica_get(cluster, ctx.registry, ctx.core, backup, p, &cmd, req).is_err() {
        let mut bytes = Vec::new();
        to.write_outcome::<&[u8]>(&mut bytes, key, &Outcome::TemporaryFailure);
        conn.complete(from.seq, &bytes);
    }
}

/// A flush: here, on every other core, and from a client on every other node. The reply
/// leaves once all have run it and this core's commit has written its marker; if another
/// node cannot, the reply is a temporary failure.
fn flush(ctx: &mut Ctx<'_>, conn: &mut Connection, mut from: ReturnAddress, cmd: &Command<&[u8]>, to: ReplyTo) {
    let cores = ctx.node.core_stats.len();
    ctx.stats.cmd_flush.incr();
    ctx.latency.served(Op::Other);
    let cluster = ctx.cluster.filter(|_| !matches!(to, ReplyTo::Peer(_)));
    let nodes: Vec<usize> = cluster.map_or(Vec::new(), |c| (0..c.map.nodes().len()).filter(|&n| n != c.me).collect());
    if cores == 1 && nodes.is_empty() {
        execute_here(ctx, conn, from.conn, cmd, &to);
        return;
    }
    let mut bytes = Vec::new();
    let appended = execute(ctx.shard, ctx.stats, cmd, Some(&to), ctx.now, &mut bytes);
    let waiting = cores as u32 - 1 + appended as u32 + nodes.len() as u32;
    from.seq = conn.expect_replies(waiting, bytes);
    if appended {
        ctx.held.hold_slot(conn, from.conn, from.seq);
    }
    for core in (0..cores).filter(|&c| c != from.core) {
        ctx.outbox.requests(core).push(from, None, cmd);
    }
    if let Some(cluster) = cluster {
        for node in nodes {
            let req = InFlightReq { to: from, reply: to, flush: true };
            if ctx.links.submit(cluster, ctx.registry, ctx.core, node, 0, cmd, req).is_err() {
                let mut error = Vec::new();
                to.write_outcome::<&[u8]>(&mut error, &[], &Outcome::TemporaryFailure);
                conn.replace_head(from.seq, &error);
                conn.complete(from.seq, &[]);
            }
        }
    }
}
