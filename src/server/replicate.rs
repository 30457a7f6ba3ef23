//! A core's replication, both ends: the primary side carries its streams' frames
//! (`cluster::replication` decides them) and runs the shard scans a full resync needs; the
//! backup side ([`serve`]) applies what a primary sends, by the rules of
//! `cluster::replication::stream::check`, and answers once its own commit has the changes.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;


use super::connection::Connection;
use super::peer::link::{Links, ReplAnswer};
use super::peer::{printable, Cluster};
use super::route::Ctx;
use crate::cluster::replication::backlog::EntryKind;
use crate::cluster::replication::stream::{check, Copy, Snapshot};
use crate::cluster::replication::history::History;
use crate::cluster::replication::{Backlog, LagHistogram, Stream, StreamState};
use crate::cluster::{partition_of, PartitionSet, PARTITIONS};
use crate::protocol::peer::repl::{self, status, Position, Record, RecordType, Records};
use crate::protocol::peer::{Frame, Op};
use crate::protocol::{PeerReply, ReplyTo};
use crate::storage::change::{ChangeKind, Changes};
use crate::storage::{Outcome, Shard};

/// How often (ms) a core publishes its streams' figures.
const PUBLISH_MS: u64 = 100;

/// Frames a stream may send per turn (the window bounds the bytes).
const FRAMES_PER_TURN: usize = 8;

/// One core's primary side.
pub struct Replication {
    backlog: Backlog,
    streams: Vec<Stream>,
    /// The link generation each stream was opened on.
    opened_on: Vec<u64>,
    /// Which backup nodes' streams exist (made once the node's core count is known).
    built: Vec<bool>,
    changes: Changes,
    answers: Vec<ReplAnswer>,
    /// Each stream's replication lag (`cluster::replication::lag`), since the start.
    lags: Vec<LagHistogram>,
    /// The frame being filled (kept: a fresh one per frame costs page faults).
    frame: Vec<u8>,
    started: Instant,
    published_at: u64,
    /// When core 0 starts the next verification round by itself.
    next_verify_ms: u64,
}

/// What a core reports of one stream (`stats cluster`, `/stats`, `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct StreamReport {
    pub node: usize,
    pub core: u16,
    pub state: &'static str,
    pub partitions: usize,
    /// Changes of the stream's partitions the backup has not acknowledged: the worst
    /// partition's and the sum.
    pub lag_max: u64,
    pub lag_sum: u64,
    /// The partitions that lag most: (partition, changes unacknowledged), worst first.
    pub worst: Vec<(u16, u64)>,
    /// Time from a change's commit to its acknowledgement, since the start.
    pub lag: LagHistogram,
    pub unacked_bytes: usize,
    /// Milliseconds since the backup last acknowledged (or the stream opened).
    pub ack_age_ms: u64,
    pub opens: u64,
    pub partial_catchups: u64,
    pub backfills: u64,
    pub noted_keys: u64,
    pub resyncs: u64,
    pub bytes: u64,
    pub records: u64,
    pub snapshot_items: u64,
    pub verified_round: u64,
    pub verified_partitions: u64,
    pub mismatches: u64,
    pub last_error: Option<String>,
}

impl Replication {
    /// The primary side of core `core`, if this node has backups to feed.
    pub fn new(cluster: Option<&Cluster>, shard: &mut Shard) -> Option<Replication> {
        let cluster = cluster.filter(|c| c.map.replicas() > 0)?;
        shard.record_changes(true);
        let n = cluster.map.nodes().len();
        let mut backlog = Backlog::with_backfill(cluster.file.backlog_bytes, |p| shard.last_seqno(p), shard.last_cas(), cluster.file.purge_interval.as_secs());
        backlog.history = open_branch(shard, backlog.lasts());
        Some(Replication {
            backlog,
            streams: Vec::new(),
            opened_on: Vec::new(),
            built: vec![false; n],
            changes: Changes::default(),
            answers: Vec::new(),
            lags: Vec::new(),
            frame: Vec::new(),
            started: Instant::now(),
            published_at: 0,
            next_verify_ms: 0,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Takes the changes of the turn just committed into the backlog (`committed`: the
    /// commit wrote them; else they are lost to the backups, which will need a resync).
    pub fn after_commit(&mut self, shard: &mut Shard, committed: bool) {
        shard.take_changes(&mut self.changes);
        self.backlog.set_clock(self.started.elapsed().as_micros() as u64);
        // Items that went without a change (expired, evicted): a backup behind now may hold
        // an older version a backfill would not replace; it is resynced in full instead.
        for p in shard.take_gone().iter() {
            let last = self.backlog.last(p);
            self.backlog.backfill.raise_floor(p, last);
        }
        for c in &self.changes.items {
            let kind = match c.kind {
                ChangeKind::Put => EntryKind::Put,
                ChangeKind::Delete => EntryKind::Delete,
                ChangeKind::Flush => EntryKind::Flush,
            };
            if committed || kind == EntryKind::Flush {
                self.backlog.push(kind, c.partition, c.seqno, c.cas, c.flags, c.expiry, self.changes.key(c), self.changes.value(c));
            } else {
                self.backlog.lost(c.partition, c.seqno);
            }
        }
    }

    /// Makes the streams whose backup's core count is now known, takes their answers and
    /// sends what they have for their links.
    /// `persist`: a `persist_majority` write waits, so the frames sent now ask the backups
    /// to answer only once the changes are on their disks.
    #[allow(clippy::too_many_arguments)]
    pub fn pump(&mut self, shard: &mut Shard, links: &mut Links, cluster: &Cluster, this_core: usize, cores: usize, now: u32, persist: bool) {
        self.build(cluster, this_core, cores);
        let now_ms = self.now_ms();
        // Core 0 starts a verification round every `verify_interval_s`.
        if let (0, Some(every)) = (this_core, cluster.file.verify_interval) {
            if now_ms >= self.next_verify_ms {
                if self.next_verify_ms != 0 {
                    cluster.verify_requested.fetch_add(1, Relaxed);
                }
                self.next_verify_ms = now_ms + every.as_millis() as u64;
            }
        }
        for (i, s) in self.streams.iter_mut().enumerate() {
            let Some(generation) = links.repl_link(s.node, s.core) else {
                if s.state() != StreamState::Down {
                    s.down("the link is down".into());
                }
                s.link_lost();
                continue;
            };
            if self.opened_on[i] != generation {
                if s.state() != StreamState::Down {
                    s.down("the link was made again".into());
                }
                s.link_lost();
            }
            if s.state() == StreamState::Down {
                let set = s.open();
                self.opened_on[i] = generation;
                if links.submit_repl(cluster, s.node, s.core, Op::ReplOpen, |out, opaque| repl::write_open(out, opaque, &set)).is_err() {
                    s.down("cannot send on the link".into());
                    s.link_lost();
                }
                continue;
            }
            self.answers.clear();
            links.take_repl_answers(s.node, s.core, &mut self.answers);
            for a in self.answers.drain(..) {
                if s.stale_answer() {
                    continue;
                }
                let result = match (a.status, a.op) {
                    (status::OK, Op::ReplOpen) => {
                        repl::parse_positions_value(&a.value).and_then(|ps| s.on_open(&ps, &self.backlog, now_ms).map_err(|_| "out of turn"))
                    }
                    (status::OK, Op::ReplVerify) => match repl::parse_digests(&a.value).map_err(str::to_string).and_then(|ds| s.on_verify(&ds)) {
                        Ok(differ) => {
                            if !differ.is_empty() {
                                log::error!(
                                    "core {this_core}: verification: node {}'s copies of partitions {differ:?} differ from this primary's; resyncing them",
                                    cluster.node_id(s.node)
                                );
                            }
                            Ok(())
                        }
                        Err(_) => Err("a bad verification answer"),
                    },
                    (status::OK, _) => match repl::parse_positions_value(&a.value).and_then(|ps| s.on_ack(&ps, now_ms).map_err(|_| "out of turn")) {
                        Ok(oldest_us) => {
                            if let Some(committed_us) = oldest_us {
                                let now_us = self.started.elapsed().as_micros() as u64;
                                self.lags[i].record(now_us.saturating_sub(committed_us));
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    _ => {
                        let why = format!("node {} refused ({:#06x}): {}", cluster.node_id(s.node), a.status, printable(&a.value));
                        if s.last_error.as_deref() != Some(why.as_str()) {
                            log::warn!("core {this_core}: replication to node {} core {}: {why}; reopening", cluster.node_id(s.node), s.core);
                        }
                        s.down(why);
                        break;
                    }
                };
                if let Err(why) = result {
                    log::warn!("core {this_core}: replication to node {} core {}: a bad answer ({why}); reopening", cluster.node_id(s.node), s.core);
                    s.down(format!("a bad answer: {why}"));
                    break;
                }
            }
            if s.state() == StreamState::Down {
                continue;
            }
            // A verification round asked for, once this stream has sent all it has.
            let round = cluster.verify_requested.load(Relaxed);
            if round > s.verified_round && s.can_verify(&self.backlog) {
                let set = s.partitions;
                let mine: Vec<(u16, u64, u64, u32)> = shard.digests(&set, now).into_iter().map(|(p, d, n)| (p, shard.last_seqno(p), d, n)).collect();
                if links.submit_repl(cluster, s.node, s.core, Op::ReplVerify, |out, opaque| repl::write_verify(out, opaque, &set, now)).is_err() {
                    s.down("cannot send on the link".into());
                    s.link_lost();
                    continue;
                }
                s.verify_sent(mine, round);
            }
            let mut scan = ShardSnapshot { shard: &mut *shard, now };
            for _ in 0..FRAMES_PER_TURN {
                if !s.next_frame_into(&self.backlog, &mut scan, &mut self.frame) {
                    break;
                }
                let frame = &self.frame;
                if links.submit_repl(cluster, s.node, s.core, Op::ReplChanges, |out, opaque| repl::write_changes(out, opaque, persist, frame)).is_err() {
                    s.down("cannot send on the link".into());
                    s.link_lost();
                    break;
                }
            }
        }
        // Ten times a second: `stats cluster` and the catch-up benchmark read these figures.
        if now_ms / PUBLISH_MS != self.published_at {
            self.published_at = now_ms / PUBLISH_MS;
            self.publish(cluster, this_core, now_ms);
        }
    }

    /// Backups of `p` whose stream is live for it: those a durable write can count on.
    pub fn live_backups(&self, p: u16) -> usize {
        self.streams.iter().filter(|s| s.partitions.contains(p) && s.is_live(p)).count()
    }

    /// Backups that have acknowledged seqno `seqno` of `p`.
    pub fn acked_count(&self, p: u16, seqno: u64) -> usize {
        self.streams.iter().filter(|s| s.partitions.contains(p) && s.confirmed(p) >= seqno).count()
    }

    /// Whether a stream has work the loop should come back for soon (a resync).
    pub fn busy(&self) -> bool {
        self.streams.iter().any(|s| s.state() == StreamState::Running && s.resyncing())
    }

    fn build(&mut self, cluster: &Cluster, this_core: usize, cores: usize) {
        for node in 0..self.built.len() {
            let backup_cores = cluster.peer_cores[node].load(Relaxed) as usize;
            if self.built[node] || node == cluster.me || backup_cores == 0 {
                continue;
            }
            self.built[node] = true;
            for core in 0..backup_cores {
                let mut set = PartitionSet::empty();
                for p in 0..PARTITIONS {
                    let mine = cluster.map.primary(p) == cluster.me && p as usize % cores == this_core;
                    if mine && cluster.map.is_backup(p, node) && p as usize % backup_cores == core {
                        set.insert(p);
                    }
                }
                if !set.is_empty() {
                    self.streams.push(Stream::new(node, core as u16, set));
                    self.opened_on.push(0);
                    self.lags.push(LagHistogram::default());
                }
            }
        }
    }

    fn publish(&self, cluster: &Cluster, this_core: usize, now_ms: u64) {
        let reports = self
            .streams
            .iter()
            .zip(&self.lags)
            .map(|(s, lag)| {
                let lags: Vec<(u16, u64)> = s.partitions.iter().map(|p| (p, s.lag(&self.backlog, p))).collect();
                StreamReport {
                    node: s.node,
                    core: s.core,
                    state: match s.state() {
                        StreamState::Down => "down",
                        StreamState::Opening => "opening",
                        StreamState::Running => s.phase(),
                    },
                    partitions: lags.len(),
                    lag_max: lags.iter().map(|&(_, l)| l).max().unwrap_or(0),
                    lag_sum: lags.iter().map(|&(_, l)| l).sum(),
                    worst: worst_partitions(lags),
                    lag: *lag,
                    unacked_bytes: s.unacked_bytes(),
                    ack_age_ms: now_ms.saturating_sub(s.last_ack_ms),
                    opens: s.counters.opens,
                    partial_catchups: s.counters.partial_catchups,
                    backfills: s.counters.backfills,
                    noted_keys: s.counters.noted_keys,
                    resyncs: s.counters.resyncs,
                    bytes: s.counters.bytes,
                    records: s.counters.records,
                    snapshot_items: s.counters.snapshot_items,
                    verified_round: s.verified_round,
                    verified_partitions: s.counters.verified_partitions,
                    mismatches: s.counters.mismatches,
                    last_error: s.last_error.clone(),
                }
            })
            .collect();
        cluster.publish_replication(this_core, reports, self.backlog.bytes());
    }
}

/// How many of a stream's partitions `stats cluster` names, worst lag first.
pub const WORST_PARTITIONS: usize = 5;

/// The partitions with the most changes unacknowledged (none that lag by nothing), worst
/// first.
pub fn worst_partitions(mut lags: Vec<(u16, u64)>) -> Vec<(u16, u64)> {
    lags.retain(|&(_, l)| l > 0);
    lags.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    lags.truncate(WORST_PARTITIONS);
    lags
}

/// Serves a replication frame from `node` on this (backup) core.
pub fn serve(ctx: &mut Ctx<'_>, cluster: &Cluster, conn: &mut Connection, key: usize, node: usize, op: Op, f: &Frame<'_>) {
    let opaque = f.header.opaque;
    let cores = ctx.node.core_stats.len();
    let mine = |p: u16| cluster.map.primary(p) == node && cluster.map.is_backup(p, cluster.me) && p as usize % cores == ctx.core;
    let refuse = |conn: &mut Connection, code: u16, why: String| {
        log::warn!("core {}: replication from node {} refused: {why}", ctx.core, cluster.node_id(node));
        repl::write_refusal(conn.out(), op, opaque, code, &why);
    };
    let position = |shard: &Shard, p: u16| Position { partition: p, seqno: shard.last_seqno(p), whole: !shard.is_incomplete(p), branch: shard.branch(p) };
    match op {
        Op::ReplVerify => {
            let Some((set, at)) = repl::parse_verify(f.value) else {
                return refuse(conn, status::MALFORMED, "a VERIFY without a partition set and a time".into());
            };
            if let Some(p) = set.iter().find(|&p| !mine(p)) {
                return refuse(conn, status::NOT_BACKUP, format!("partition {p} is not backed up here for node {}", cluster.node_id(node)));
            }
            let digests: Vec<repl::Digest> = ctx
                .shard
                .digests(&set, at)
                .into_iter()
                .map(|(p, digest, items)| repl::Digest { partition: p, seqno: ctx.shard.last_seqno(p), digest, items })
                .collect();
            repl::write_digests(conn.out(), opaque, &digests);
        }
        Op::ReplOpen => {
            let Some(set) = PartitionSet::from_bytes(f.value) else {
                return refuse(conn, status::MALFORMED, "an OPEN without a partition set".into());
            };
            if let Some(p) = set.iter().find(|&p| !mine(p)) {
                return refuse(conn, status::NOT_BACKUP, format!("partition {p} is not backed up here for node {}", cluster.node_id(node)));
            }
            repl::write_positions(conn.out(), op, opaque, set.iter().map(|p| position(ctx.shard, p)));
        }
        _ => {
            if f.partition() & repl::flags::PERSIST != 0 {
                if ctx.shard.log().is_none() {
                    // An acknowledgement would promise a disk this node does not write.
                    return refuse(conn, status::STORAGE_ERROR, "asked to persist, but this node runs --in-memory".into());
                }
                ctx.shard.request_sync();
            }
            let start = conn.out().len();
            let appended = ctx.shard.records_appended();
            let mut touched = PartitionSet::empty();
            let applied = apply(ctx.shard, &mine, f.value, ctx.now, &mut touched);
            // The branches the copies now follow are on disk before any answer says so.
            if let Err(e) = ctx.shard.save_branches() {
                log::error!("core {}: cannot keep the backup copies' branches: {e}", ctx.core);
                return refuse(conn, status::STORAGE_ERROR, format!("cannot keep the copies' branches: {e}"));
            }
            if let Err((code, why)) = applied {
                return refuse(conn, code, why);
            }
            repl::write_positions(conn.out(), op, opaque, touched.iter().map(|p| position(ctx.shard, p)));
            // The acknowledgement leaves once the backup's own commit has the changes (and,
            // under `--fsync always`, its fsync); a failed commit turns it into a refusal.
            let appended = ctx.shard.records_appended() != appended;
            if appended || ctx.shard.sync_rounds().is_some() {
                let to = ReplyTo::Peer(PeerReply { op, opaque, then_touch: None, durability: None });
                ctx.held.hold(conn, key, start, appended, &to, b"");
            }
        }
    }
}

/// The shard's history as a primary (its file `history`), with a new branch from the seqnos
/// it recovered: what it lost of its tail, if anything, was never any backup's to keep.
fn open_branch(shard: &Shard, start: &[u64]) -> History {
    let mut history = match shard.read_file(HISTORY_FILE) {
        Ok(Some(bytes)) => History::decode(&bytes).unwrap_or_else(|why| {
            log::error!("the shard's {HISTORY_FILE} file is unreadable ({why}): its backups' copies will be resynced");
            History::default()
        }),
        Ok(None) => History::default(),
        Err(e) => {
            log::error!("cannot read the shard's {HISTORY_FILE} file ({e}): its backups' copies will be resynced");
            History::default()
        }
    };
    // Random, never 0 (a copy that follows no branch).
    let id = std::hash::BuildHasher::hash_one(&ahash::RandomState::new(), (std::process::id(), Instant::now())).max(1);
    history.open(id, start);
    if let Err(e) = shard.write_file(HISTORY_FILE, &history.encode()) {
        // A restart then knows nothing of this branch: copies following it are resynced.
        log::error!("cannot write the shard's {HISTORY_FILE} file: {e}");
    }
    history
}

/// The file of a shard's directory that keeps its history as a primary.
const HISTORY_FILE: &str = "history";

/// What a full resync or a backfill reads of the primary's shard.
struct ShardSnapshot<'a> {
    shard: &'a mut Shard,
    now: u32,
}

impl Snapshot for ShardSnapshot<'_> {
    fn items(&mut self, set: &PartitionSet, above: Option<&[u64]>, from: u64, budget: usize, out: &mut Vec<u8>) -> (Option<u64>, u64) {
        let mut items = 0;
        let out = std::cell::RefCell::new(out);
        let next = self.shard.scan_partitions(
            set,
            above,
            from as usize,
            budget,
            self.now,
            |key, value, flags, expiry, cas| {
                let r = Record { kind: RecordType::SnapshotItem, partition: partition_of(key), seqno: 0, cas, flags, expiry, key, value };
                r.write(&mut out.borrow_mut());
                items += 1;
            },
            |key| {
                let r = Record { kind: RecordType::SnapshotDelete, partition: partition_of(key), seqno: 0, cas: 0, flags: 0, expiry: 0, key, value: b"" };
                r.write(&mut out.borrow_mut());
            },
        );
        (next.map(|s| s as u64), items)
    }

    fn key(&mut self, partition: u16, key: &[u8], out: &mut Vec<u8>) -> bool {
        let live = self.shard.read_for_backfill(key, self.now, |value, flags, expiry, cas| {
            Record { kind: RecordType::SnapshotItem, partition, seqno: 0, cas, flags, expiry, key, value }.write(out);
        });
        match live {
            Ok(true) => true,
            Ok(false) => {
                Record { kind: RecordType::SnapshotDelete, partition, seqno: 0, cas: 0, flags: 0, expiry: 0, key, value: b"" }.write(out);
                true
            }
            Err(_) => false,
        }
    }
}

/// Applies a REPL_CHANGES value's records in order until one is refused.
fn apply(shard: &mut Shard, mine: &dyn Fn(u16) -> bool, value: &[u8], now: u32, touched: &mut PartitionSet) -> Result<(), (u16, String)> {
    for r in Records::new(value) {
        let r = r.map_err(|why| (status::MALFORMED, why.to_string()))?;
        let disk = |o: Outcome<&[u8]>| match o {
            Outcome::StorageError => (status::STORAGE_ERROR, "the backup's disk refused the change".to_string()),
            other => (status::TEMPORARY_FAILURE, format!("the backup cannot apply the change: {other:?}")),
        };
        match r.kind {
            RecordType::Flush | RecordType::SnapshotBegin | RecordType::Branch => {
                let set = PartitionSet::from_bytes(r.key).ok_or((status::MALFORMED, "a partition set".to_string()))?;
                if let Some(p) = set.iter().find(|&p| !mine(p)) {
                    return Err((status::NOT_BACKUP, format!("partition {p} is not backed up here")));
                }
                if r.kind == RecordType::Branch {
                    if let Some(p) = set.iter().find(|&p| shard.is_incomplete(p)) {
                        return Err((status::BAD_SEQNO, format!("a branch for partition {p} during its resync")));
                    }
                    for p in set.iter() {
                        shard.set_branch(p, r.cas);
                    }
                    continue;
                }
                if r.kind == RecordType::SnapshotBegin && r.flags == repl::SNAPSHOT_BACKFILL {
                    shard.begin_backfill(&set).map_err(disk)?;
                } else {
                    shard.flush_partitions(&set, r.kind == RecordType::SnapshotBegin).map_err(disk)?;
                }
                for p in set.iter() {
                    touched.insert(p);
                }
                continue;
            }
            _ => {}
        }
        let p = r.partition;
        if !mine(p) {
            return Err((status::NOT_BACKUP, format!("partition {p} is not backed up here")));
        }
        if matches!(r.kind, RecordType::Put | RecordType::Delete | RecordType::SnapshotItem | RecordType::SnapshotDelete) && partition_of(r.key) != p {
            return Err((status::MALFORMED, format!("a key of partition {} named as partition {p}", partition_of(r.key))));
        }
        check(&r, Copy { seqno: shard.last_seqno(p), incomplete: shard.is_incomplete(p) })?;
        let result = match r.kind {
            RecordType::Put | RecordType::SnapshotItem => shard.apply(ChangeKind::Put, r.key, r.value, r.flags, r.expiry, r.cas, r.seqno, now),
            RecordType::Delete | RecordType::SnapshotDelete => shard.apply(ChangeKind::Delete, r.key, b"", 0, 0, r.cas, r.seqno, now),
            RecordType::SnapshotEnd => shard.end_snapshot(p, r.seqno).map(|()| shard.set_branch(p, r.cas)),
            RecordType::Flush | RecordType::SnapshotBegin | RecordType::Branch => Ok(()),
        };
        result.map_err(disk)?;
        touched.insert(p);
    }
    Ok(())
}
