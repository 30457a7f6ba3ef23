//! Where a storage command runs, whatever the protocol it came in: on this core's shard, on
//! the core that owns its key (through the outbox), or, for a flush, on every core.

use mio::Registry;

use super::connection::Connection;
use super::gate::{Dest, Gate};
use super::held::Held;
use super::replicate::Replication;
use super::mailbox::{Outbox, ReturnAddress};
use super::peer::link::{InFlightReq, Links};
use super::peer::Cluster;
use super::Node;
use crate::cluster::{self, Owner};
use crate::protocol::{Limits, ReplyTo};
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

/// What a durable write of this node must wait for: how many backups, and until when.
#[derive(Clone, Copy, Debug)]
pub struct Durable {
    pub need: usize,
    pub timeout_ms: u64,
}

impl Durable {
    /// The requirement of `cmd` on a node of `cluster` (none for reads and flushes, and with
    /// `durability = "none"`).
    pub fn of(cluster: Option<&Cluster>, cmd: &Command<&[u8]>) -> Option<Durable> {
        let c = cluster?;
        let need = c.file.durability.backups_needed(c.map.replicas());
        let mutation = matches!(cmd, Command::Store { .. } | Command::Delete { .. } | Command::Arith { .. } | Command::Touch { .. } | Command::GetAndTouch { .. });
        (need > 0 && mutation).then_some(Durable { need, timeout_ms: c.file.durability_timeout.as_millis() as u64 })
    }

    /// Whether enough of `p`'s backups are live to try.
    pub fn possible(self, replication: Option<&Replication>, p: u16) -> bool {
        replication.is_some_and(|r| r.live_backups(p) >= self.need)
    }
}

/// The two other answers a durable write's reply is held with: the disk error, and the
/// ambiguous one a deadline gives.
pub fn durable_alternatives(to: &ReplyTo, key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut disk, mut ambiguous) = (Vec::new(), Vec::new());
    to.write_outcome::<&[u8]>(&mut disk, key, &Outcome::StorageError);
    to.write_outcome::<&[u8]>(&mut ambiguous, key, &Outcome::SyncWriteAmbiguous);
    (disk, ambiguous)
}

/// Runs `cmd` on `shard`, counts it, and appends the reply for `to` (nothing when `to` is
/// `None`: a flush's acknowledgement). A reply may ask for a second command on the same shard
/// (meta arithmetic with a new TTL); it runs at once, so nothing comes between the two.
/// Returns whether a record was appended to the log: then the reply must wait for the commit.
pub fn execute(shard: &mut Shard, stats: &CoreStats, cmd: &Command<&[u8]>, to: Option<&ReplyTo>, now: u32, out: &mut Vec<u8>) -> bool {
    let appended = shard.records_appended();
    let key = cmd.key().unwrap_or(&[]);
    let (outcome, info) = match to.and_then(ReplyTo::meta_ops) {
        Some(ops) => {
            let (o, info) = shard.execute_meta(cmd, &ops, now);
            (o, Some(info))
        }
        None => (shard.execute(cmd, now), None),
    };
    stats.record(cmd, &outcome);
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
/// have seen a record not yet durable).
pub(super) fn execute_here(ctx: &mut Ctx<'_>, conn: &mut Connection, key: usize, cmd: &Command<&[u8]>, to: &ReplyTo) {
    let durable = Durable::of(ctx.cluster, cmd);
    let cmd_key = cmd.key().unwrap_or(&[]);
    if let Some(d) = durable {
        if !d.possible(ctx.replication, cluster::partition_of(cmd_key)) {
            ctx.stats.durable_impossible.incr();
            to.write_outcome::<&[u8]>(conn.out(), cmd_key, &Outcome::DurabilityImpossible);
            return;
        }
    }
    let start = conn.out().len();
    let mark = ctx.shard.changes_len();
    let appended = execute(ctx.shard, ctx.stats, cmd, Some(to), ctx.now, conn.out());
    if let (Some(d), Some((p, seqno))) = (durable, ctx.shard.change_since(mark)) {
        // The reply waits in the gate: this turn's commit, then the backups.
        let ok = conn.out()[start..].to_vec();
        conn.out().truncate(start);
        let seq = conn.expect_replies(1, Vec::new());
        let (disk, ambiguous) = durable_alternatives(to, cmd_key);
        let dest = Dest::Conn { conn: key, generation: conn.generation, seq };
        ctx.gate.hold(dest, &ok, &disk, &ambiguous, p, seqno, d.need, ctx.now_ms + d.timeout_ms);
        return;
    }
    if appended || ctx.shard.epochs().is_some() {
        ctx.held.hold(conn, key, start, appended, to, cmd.key().unwrap_or(&[]));
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
