//! The storage one core owns alone: the keydir, and when the node has a data directory, the
//! shard's log. It enforces the memory limit (CLOCK, an approximation of LRU), lazy expiry
//! and delayed flush, and answers protocol-free [`Command`]s with [`Outcome`]s.
//!
//! With a log, every mutation is appended as a record before its outcome is returned; the
//! records of an event-loop turn are written (and synced, per the policy) by
//! [`Shard::commit`] before any reply of that turn leaves. Values stay in memory while the
//! limit allows; in `store` mode they are dropped from memory (kept on disk) under pressure
//! and read back with `pread`; in `cache` mode whole items are evicted.

use std::io;

use super::change::{flush_scope, ChangeKind, Changes, PartitionSet};
use super::command::{Command, Outcome, StoreMode};
use super::disk::record::{Kind, Meta};
use super::disk::recovery::{self, RecoveryReport};
use super::disk::merge::{self, Finishing, Merge, MergePolicy, Verdict};
use super::disk::watermark::Watermark;
use super::disk::{Log, LogConfig, LogError, SharedFs};
use super::expiry;
use super::item::{charge_for, DiskRef, Item};
use crate::cluster::claims::Claims;
use super::keydir::{Keydir, Slot};
use crate::cluster::{partition_of, PARTITIONS};

mod item_state;
pub use item_state::{ttl_left, Evicted, ItemInfo, ItemMeta, MetaOps};

/// What happens when items no longer fit in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Never drop data: values leave memory (they are on disk); when the keys alone no longer
    /// fit, writes are refused with out-of-memory.
    Store,
    /// memcached's semantics: least recently used items are evicted.
    Cache,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "store" => Ok(Mode::Store),
            "cache" => Ok(Mode::Cache),
            other => Err(format!("'{other}' is not a mode (store, cache)")),
        }
    }
}

/// The flag's spelling, as `FromStr` reads it.
impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Store => "store",
            Mode::Cache => "cache",
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ShardConfig {
    /// Bytes of items this shard may hold (its share of `-m`).
    pub memory_limit: usize,
    /// Largest value accepted, in bytes (`-I`).
    pub max_item_size: usize,
    pub mode: Mode,
    /// A node of a cluster: a client's flush drops only these partitions (those the node is
    /// primary for). The others are backup copies: their primaries' flushes reach them in
    /// stream order, and a local flush would drop changes the stream already applied.
    pub primary_only: Option<PartitionSet>,
    /// A node of a cluster: the map's epoch, in which this shard's fresh seqnos are written
    /// as primary (each partition's first is logged: the split-brain audit).
    pub epoch: Option<u64>,
}

/// Counters only the shard can know; the core publishes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Items dropped to make room under the memory limit.
    pub evictions: u64,
    /// Values dropped from memory (kept on disk) to make room.
    pub values_evicted: u64,
    /// Expired items reclaimed by the clock hand or on access.
    pub reclaimed: u64,
    /// Items ever stored.
    pub total_items: u64,
    /// Values read back from disk.
    pub disk_reads: u64,
    /// Mutations refused or reads failed because of the disk.
    pub disk_errors: u64,
    pub merges: u64,
    /// Records appended to the log (a reply that follows one waits for its commit).
    pub records_appended: u64,
    pub merge_bytes_read: u64,
    pub merge_bytes_written: u64,
}

pub struct Shard {
    keydir: Keydir,
    config: ShardConfig,
    /// In a cluster: the partitions written as primary in the epoch (the split-brain audit).
    claims: Option<Claims>,
    last_cas: u64,
    /// A FLUSH with a delay: every item is dropped when this time is reached.
    flush_at: Option<u32>,
    /// A delayed FLUSH (its time) applied to the keydir whose immediate marker the log could
    /// not take yet: the marker goes before any other record, and until it is in the log the
    /// delayed one it stands for survives merges.
    flush_owed: Option<u32>,
    counters: ShardCounters,
    /// The items evicted since the server last took them (`watch evictions`), while asked.
    evicted: Option<Vec<Evicted>>,
    log: Option<Log>,
    /// Last seqno given (or, on a backup, applied) per partition.
    seqnos: Vec<u64>,
    /// Whether mutations are recorded in `changes` (a node with backups to stream to).
    recording: bool,
    /// Partitions an item left without a change (expired and reclaimed, or evicted), while
    /// recording: a backfill cannot tell their backups, which are resynced instead.
    gone: PartitionSet,
    changes: Changes,
    /// Partitions whose backup copy is being rebuilt by a full resync (not yet complete).
    incomplete: PartitionSet,
    /// Per partition: the primary's branch this backup copy follows (0: none), kept in the
    /// file `branches` of the shard's directory (`cluster::replication::history`).
    branches: Vec<u64>,
    branches_dirty: bool,
    /// The next commit fsyncs whatever the policy.
    sync_requested: bool,
    /// A value read from disk, to answer from.
    scratch: Vec<u8>,
    merge: Option<Merge>,
    /// A merge whose output is synced and renamed off the event loop (`finish_off_loop`).
    finishing: Option<Finishing>,
    /// Whether merges finish off the loop (the server) or in the last step (tests that
    /// drive a shard turn by turn and want a finished merge at a known step).
    finish_off_loop: bool,
    merge_policy: MergePolicy,
    /// When a merge was last looked for (once a second).
    merge_checked: u32,
}

impl Shard {
    /// A shard in memory only.
    pub fn new(config: ShardConfig) -> Shard {
        Shard {
            keydir: Keydir::new(),
            claims: config.epoch.map(Claims::new),
            config,
            last_cas: 0,
            flush_at: None,
            flush_owed: None,
            counters: ShardCounters::default(),
            evicted: None,
            log: None,
            seqnos: vec![0; PARTITIONS as usize],
            recording: false,
            gone: PartitionSet::empty(),
            changes: Changes::default(),
            incomplete: PartitionSet::empty(),
            branches: vec![0; crate::cluster::PARTITIONS as usize],
            branches_dirty: false,
            sync_requested: false,
            scratch: Vec::new(),
            merge: None,
            finishing: None,
            finish_off_loop: false,
            merge_policy: MergePolicy::default(),
            merge_checked: 0,
        }
    }

    /// Whether background work is under way (the event loop should keep turning).
    pub fn is_busy(&self) -> bool {
        self.merge.is_some() || self.finishing.is_some()
    }

    /// Merges end with their fsyncs and renames on a thread of their own, so the event loop
    /// never waits for them; the swap happens in a later [`maintain`](Self::maintain).
    pub fn finish_merges_off_loop(&mut self) {
        self.finish_off_loop = true;
    }

    pub fn set_merge_policy(&mut self, policy: MergePolicy) {
        self.merge_policy = policy;
    }

    /// Background work in small steps, one per event-loop turn: merge compaction.
    pub fn maintain(&mut self, now: u32) {
        if self.finishing.as_ref().is_some_and(Finishing::is_done) {
            let f = self.finishing.take().expect("a merge is finishing");
            let read = f.bytes_read;
            if let Err(e) = f.join().and_then(|(segment, moved, plan)| self.swap_merged(segment, moved, plan, read)) {
                log::error!("merge abandoned at its end: {e}");
            }
        }
        if self.finishing.is_some() {
            return;
        }
        let Some(log) = &self.log else { return };
        if self.merge.is_none() {
            if now == self.merge_checked {
                return;
            }
            self.merge_checked = now;
            let Some(plan) = merge::plan(log.segments(), log.active_id(), &self.merge_policy) else { return };
            let generation = plan.inputs.iter().map(|n| n.generation).max().unwrap_or(0) + 1;
            let cfg = log.config();
            match Merge::start(log.fs().clone(), &cfg.dir, cfg.shard, plan, generation) {
                Ok(m) => {
                    log::debug!("shard {}: merging segments {:?}", cfg.shard, m.plan.inputs);
                    self.merge = Some(m);
                }
                Err(e) => {
                    log::error!("shard {}: cannot start a merge: {e}", cfg.shard);
                    return;
                }
            }
        }
        if let Err(e) = self.merge_step(now) {
            log::error!("merge abandoned: {e}");
            if let Some(m) = self.merge.take() {
                m.abandon();
            }
        }
    }

    fn merge_step(&mut self, now: u32) -> io::Result<()> {
        let (Some(m), Some(log)) = (self.merge.as_mut(), self.log.as_ref()) else { return Ok(()) };
        let from_oldest = m.plan.from_oldest && m.plan.inputs.first().map(|n| n.id) == Some(log.oldest_id());
        let keydir = &self.keydir;
        let (flush_at, flush_owed) = (self.flush_at, self.flush_owed);
        // Expired items whose record the merge drops leave the keydir with it.
        let mut expired_slots = Vec::new();
        let done = m.step(
            self.merge_policy.step_bytes,
            |id| log.segment(id).map(|s| (s.len, &*s.file)),
            |r, at| {
                let present = keydir.find(r.key);
                let slot = present.filter(|&s| keydir.get(s).disk().map(|d| d.loc) == Some(at));
                let expired = r.meta.expiry != 0 && r.meta.expiry <= now;
                // A put whose item left the keydir with no record of its own (reclaimed once
                // expired, evicted in cache mode) may still be its key's newest record: like
                // an expired live put, it goes on shadowing older puts of its key.
                let shadow = r.kind == Kind::Put && present.is_none();
                // Only the delayed flush still to be applied; one replaced by a later flush
                // must not come back.
                let flush_pending = r.kind == Kind::Flush
                    && r.meta.expiry != 0
                    && (flush_at == Some(r.meta.expiry) || flush_owed == Some(r.meta.expiry));
                match merge::keep(r.kind, slot.is_some() || shadow, expired || shadow, flush_pending, from_oldest) {
                    Verdict::Keep(_) => Verdict::Keep(slot),
                    Verdict::Drop => {
                        if let Some(slot) = slot {
                            expired_slots.push((slot, at));
                        }
                        Verdict::Drop
                    }
                }
            },
        )?;
        for (slot, at) in expired_slots {
            if self.keydir.try_get(slot).and_then(|it| it.disk()).map(|d| d.loc) == Some(at) {
                self.went_silently(slot);
                self.keydir.remove(slot);
                self.counters.reclaimed += 1;
            }
        }
        if !done {
            return Ok(());
        }
        // The records that made the inputs' records dead must be durable before the output
        // replaces the inputs, or a power loss could take a key's new value and its old one.
        let m = self.merge.take().expect("a merge is running");
        let read = m.bytes_read;
        let log = self.log.as_mut().expect("merging needs a log");
        log.commit()?;
        log.sync()?;
        if self.finish_off_loop {
            self.finishing = Some(m.finish_off_loop()?);
            return Ok(());
        }
        let (segment, moved, plan) = m.finish()?;
        self.swap_merged(segment, moved, plan, read)
    }

    /// Puts a finished merge's output in place of its inputs.
    fn swap_merged(&mut self, mut segment: super::disk::Segment, moved: Vec<merge::Moved>, plan: merge::Plan, read: u64) -> io::Result<()> {
        // Point every key still at its old record to the copy; what changed meanwhile is dead.
        let mut live = 0u64;
        for mv in &moved {
            let Some(slot) = mv.tag else { continue };
            if self.keydir.try_get(slot).and_then(|it| it.disk()).map(|d| d.loc) == Some(mv.from) {
                self.keydir.get_mut(slot).set_location(mv.to);
                live += mv.len as u64;
            }
        }
        segment.dead = segment.len - super::disk::segment::SEGMENT_HEADER_LEN as u64 - live;
        let written = segment.len;
        let log = self.log.as_mut().expect("merging needs a log");
        log.swap_merged(segment)?;
        self.counters.merges += 1;
        self.counters.merge_bytes_read += read;
        self.counters.merge_bytes_written += written;
        log::info!(
            "shard {}: merged {} segments ({read} bytes) into {written} bytes",
            log.config().shard,
            plan.inputs.len()
        );
        Ok(())
    }

    /// A shard on disk: recovers what `log_config.dir` holds, then opens a new segment.
    pub fn open(config: ShardConfig, fs: SharedFs, log_config: LogConfig, now: u32) -> io::Result<(Shard, RecoveryReport)> {
        std::fs::create_dir_all(&log_config.dir)?;
        let mut shard = Shard::new(config);
        shard.keydir.reserve(recovery::hinted_records(&fs, &log_config.dir));
        let mut marks = std::collections::HashMap::<u32, u64>::new();
        let (mut segments, report) = recovery::recover(&fs, &log_config.dir, log_config.shard, |e| {
            if e.kind == Kind::Watermark {
                *marks.entry(e.loc.segment).or_default() += e.len as u64;
            }
            shard.replay(e, now)
        })?;
        shard.keydir.shrink_if_oversized();
        // Dead bytes per segment: everything but the header and the live records.
        let mut live = std::collections::HashMap::<u32, u64>::new();
        for (_, item) in shard.keydir.iter() {
            if let Some(d) = item.disk() {
                *live.entry(d.loc.segment).or_default() += record_len(item.key().len(), d.stored_len) as u64;
            }
        }
        for s in &mut segments {
            let body = s.len.saturating_sub(super::disk::segment::SEGMENT_HEADER_LEN as u64);
            s.dead = body.saturating_sub(live.get(&s.name.id).copied().unwrap_or(0));
            s.marks = marks.get(&s.name.id).copied().unwrap_or(0);
        }
        match fs.read(&log_config.dir.join(BRANCHES_FILE)) {
            Ok(bytes) => match decode_branches(&bytes) {
                Some(b) => shard.branches = b,
                // Copies that follow no known branch are resynced: safe, only slower.
                None => log::error!("{}: unreadable; every backup copy here will be resynced", log_config.dir.join(BRANCHES_FILE).display()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::error!("{}: {e}; every backup copy here will be resynced", log_config.dir.join(BRANCHES_FILE).display()),
        }
        shard.log = Some(Log::open(fs, log_config, segments)?);
        // A delayed flush that fell due while the shard was down: a running shard would have
        // logged an immediate flush at that time, after every record written before it.
        shard.tick(now);
        if shard.keydir.used() > config.memory_limit {
            log::warn!(
                "shard holds {} bytes of keys and values over its limit of {}: {}",
                shard.keydir.used(),
                config.memory_limit,
                match config.mode {
                    Mode::Store => "writes will be refused until memory is freed",
                    Mode::Cache => "evicting",
                }
            );
        }
        Ok((shard, report))
    }

    /// Applies one record found at start-up: the last record of a key wins.
    fn replay(&mut self, e: recovery::Event<'_>, now: u32) {
        self.last_cas = self.last_cas.max(e.meta.cas);
        if let Some(s) = self.seqnos.get_mut(e.meta.partition as usize) {
            *s = (*s).max(e.meta.seqno);
        }
        match e.kind {
            Kind::Watermark => match e.value.map(|v| Watermark::decode(e.meta.cas, v)) {
                Some(Ok(w)) => {
                    for (p, s) in self.seqnos.iter_mut().enumerate() {
                        *s = (*s).max(w.seqno(p as u16));
                    }
                }
                Some(Err(why)) => log::error!("watermark record at {:?} unreadable ({why}): seqnos may restart lower", e.loc),
                None => log::error!("watermark record at {:?} unread: seqnos may restart lower", e.loc),
            },
            Kind::Flush if e.meta.flags != flush_scope::SHARD => match e.meta.flags {
                flush_scope::SNAPSHOT_END => {
                    self.incomplete.remove(e.meta.partition);
                }
                flush_scope::BACKFILL_BEGIN => match PartitionSet::from_bytes(e.key) {
                    Some(set) => {
                        for p in set.iter() {
                            self.incomplete.insert(p);
                        }
                    }
                    None => log::error!("backfill record at {:?} names no partition set: ignored", e.loc),
                },
                scope => match PartitionSet::from_bytes(e.key) {
                    Some(set) => {
                        self.drop_partitions(&set);
                        if scope == flush_scope::SNAPSHOT_BEGIN {
                            for p in set.iter() {
                                self.seqnos[p as usize] = 0;
                                self.incomplete.insert(p);
                            }
                        }
                    }
                    None => log::error!("flush record at {:?} names no partition set: ignored", e.loc),
                },
            },
            Kind::Flush => {
                if e.meta.expiry == 0 {
                    match self.config.primary_only {
                        Some(set) => self.drop_partitions(&set),
                        None => self.keydir.clear(),
                    }
                    self.flush_at = None;
                } else {
                    // Even when its time has passed: the records after it, up to that time,
                    // go too. `open` ticks once the log is replayed.
                    self.flush_at = Some(e.meta.expiry);
                }
            }
            Kind::Delete => {
                if let Some(slot) = self.keydir.find(e.key) {
                    self.keydir.remove(slot);
                }
            }
            Kind::Put => {
                let old = self.keydir.find(e.key);
                if e.meta.expiry != 0 && e.meta.expiry <= now {
                    if let Some(slot) = old {
                        self.keydir.remove(slot);
                    }
                    return;
                }
                let disk = DiskRef { loc: e.loc, stored_len: e.stored_len, value_len: e.raw_len, compressed: e.compressed };
                let warm = match e.value {
                    Some(v) if !e.compressed && self.keydir.used() + charge_for(e.key.len(), v.len()) + 16 <= self.config.memory_limit => Some(v),
                    _ => None,
                };
                let mut item = Item::new(e.key, e.raw_len as usize, e.meta.flags, e.meta.expiry, e.meta.cas, Some(disk), warm.is_some());
                if let Some(v) = warm {
                    item.value_mut().copy_from_slice(v);
                }
                item.set_atime(now);
                match old {
                    Some(slot) => {
                        self.keydir.replace(slot, item);
                    }
                    None => {
                        self.keydir.insert(item);
                    }
                }
                if self.config.mode == Mode::Cache {
                    let now_limit = self.config.memory_limit;
                    while self.keydir.used() > now_limit {
                        let Some(slot) = self.keydir.clock(|_| true) else { break };
                        self.note_evicted(slot, now);
                        self.keydir.remove(slot);
                        self.counters.evictions += 1;
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keydir.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keydir.is_empty()
    }

    /// Bytes charged against the memory limit.
    pub fn used_bytes(&self) -> usize {
        self.keydir.used()
    }

    /// The last seqno given in `partition` (0: none, or no log).
    pub fn last_seqno(&self, partition: u16) -> u64 {
        self.seqnos.get(partition as usize).copied().unwrap_or(0)
    }

    /// Records every mutation from now on (`take_changes`): this node streams its primary
    /// partitions to backups.
    pub fn record_changes(&mut self, on: bool) {
        self.recording = on;
    }

    /// The changes recorded since the last call, swapped with `into` (emptied first).
    pub fn take_changes(&mut self, into: &mut Changes) {
        into.clear();
        std::mem::swap(&mut self.changes, into);
    }

    /// The partitions items left without a change since the last call (expiry, eviction).
    pub fn take_gone(&mut self) -> PartitionSet {
        std::mem::replace(&mut self.gone, PartitionSet::empty())
    }

    /// An item leaves without a change of its own (no seqno, nothing streamed).
    fn went_silently(&mut self, slot: Slot) {
        if self.recording {
            if let Some(it) = self.keydir.try_get(slot) {
                self.gone.insert(partition_of(it.key()));
            }
        }
    }

    /// Whether this (backup) copy of `partition` is being rebuilt and is not complete.
    pub fn is_incomplete(&self, partition: u16) -> bool {
        self.incomplete.contains(partition)
    }

    /// Whether any copy here is mid-resync (cheap: no key to hash).
    pub fn any_incomplete(&self) -> bool {
        !self.incomplete.is_empty()
    }

    /// Applies a primary's mutation on a backup: the primary's seqno and CAS are kept, and
    /// the CAS this shard issues later stays above it (a promoted backup never reissues a
    /// CAS a client saw). Nothing is recorded as this shard's own change.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(&mut self, kind: ChangeKind, key: &[u8], value: &[u8], flags: u32, expiry: u32, cas: u64, seqno: u64, now: u32) -> Result<(), Outcome<&'static [u8]>> {
        self.tick(now);
        self.last_cas = self.last_cas.max(cas);
        match kind {
            ChangeKind::Put => {
                if value.len() > self.config.max_item_size {
                    return Err(Outcome::TooLarge);
                }
                let old = self.keydir.find(key);
                let result = self.put(old, key, value, flags, expiry, cas, now, Some(seqno)).map(|_| ());
                if result.is_err() {
                    // The seqno may have moved on without the item (no room for it): the copy
                    // is not whole any more, and says so, so the primary resyncs it.
                    self.incomplete.insert(partition_of(key));
                }
                result
            }
            ChangeKind::Delete => {
                self.append(Kind::Delete, 0, key, b"", 0, 0, Some(seqno))?;
                if let Some(slot) = self.keydir.find(key) {
                    self.drop_slot(slot);
                }
                Ok(())
            }
            ChangeKind::Flush => Err(Outcome::NotStored),
        }
    }

    /// Drops the items of `set` (a primary's flush reaching its backup, or the start of a
    /// full resync when `resync`), with a record that makes a restart do the same.
    pub fn flush_partitions(&mut self, set: &PartitionSet, resync: bool) -> Result<(), Outcome<&'static [u8]>> {
        let scope = if resync { flush_scope::SNAPSHOT_BEGIN } else { flush_scope::PARTITIONS };
        self.append(Kind::Flush, scope, &set.0, b"", 0, 0, Some(0))?;
        self.drop_partitions(set);
        if resync {
            for p in set.iter() {
                self.seqnos[p as usize] = 0;
                self.incomplete.insert(p);
                self.set_branch(p, 0);
            }
        }
        Ok(())
    }

    /// The primary's branch the copy of `p` follows (0: none).
    pub fn branch(&self, p: u16) -> u64 {
        self.branches.get(p as usize).copied().unwrap_or(0)
    }

    /// The copy of `p` follows the primary's branch `id` from now on; kept on disk by
    /// [`save_branches`](Self::save_branches).
    pub fn set_branch(&mut self, p: u16, id: u64) {
        if let Some(b) = self.branches.get_mut(p as usize) {
            if *b != id {
                *b = id;
                self.branches_dirty = true;
            }
        }
    }

    /// Writes the copies' branches, if they changed, before the answer that follows them
    /// leaves (atomically: a new file, fsynced, renamed).
    pub fn save_branches(&mut self) -> io::Result<()> {
        if !self.branches_dirty {
            return Ok(());
        }
        if let Some(log) = &self.log {
            let path = log.config().dir.join(BRANCHES_FILE);
            log.fs().write_atomic(&path, &encode_branches(&self.branches))?;
        }
        self.branches_dirty = false;
        Ok(())
    }

    /// Reads a small file of this shard's directory (`None`: no log, or no such file).
    pub fn read_file(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(log) = &self.log else { return Ok(None) };
        match log.fs().read(&log.config().dir.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a small file of this shard's directory atomically (nothing without a log).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        match &self.log {
            Some(log) => log.fs().write_atomic(&log.config().dir.join(name), bytes),
            None => Ok(()),
        }
    }

    /// A backfill of the copies of `set` begins: they keep their items, and are incomplete
    /// (here and after a restart) until each one's [`end_snapshot`](Self::end_snapshot).
    pub fn begin_backfill(&mut self, set: &PartitionSet) -> Result<(), Outcome<&'static [u8]>> {
        self.append(Kind::Flush, flush_scope::BACKFILL_BEGIN, &set.0, b"", 0, 0, Some(0))?;
        for p in set.iter() {
            self.incomplete.insert(p);
        }
        Ok(())
    }

    /// A full resync or backfill of `partition` ended: the copy is whole at the primary's
    /// `seqno`.
    pub fn end_snapshot(&mut self, partition: u16, seqno: u64) -> Result<(), Outcome<&'static [u8]>> {
        if let Some(log) = &mut self.log {
            let meta = Meta { partition, flags: flush_scope::SNAPSHOT_END, seqno, cas: 0, expiry: 0 };
            match log.append(Kind::Flush, &meta, b"", b"") {
                Ok(a) => {
                    self.counters.records_appended += 1;
                    log.mark_dead(a.loc, a.len);
                }
                Err(_) => {
                    self.counters.disk_errors += 1;
                    return Err(Outcome::StorageError);
                }
            }
        }
        self.seqnos[partition as usize] = seqno;
        self.incomplete.remove(partition);
        Ok(())
    }

    /// Removes every item of the partitions in `set`.
    fn drop_partitions(&mut self, set: &PartitionSet) {
        let slots: Vec<Slot> = self.keydir.iter().filter(|(_, it)| set.contains(partition_of(it.key()))).map(|(s, _)| s).collect();
        for slot in slots {
            self.drop_slot(slot);
        }
    }

    /// Per partition of `set`: an order-independent digest of its items live at `now` (the
    /// wrapping sum of a hash of each item's key, CAS, flags, expiry and value) and their
    /// number. Reads values on disk back. One pass over the keydir: a verification, not a
    /// data-path operation.
    pub fn digests(&mut self, set: &PartitionSet, now: u32) -> Vec<(u16, u64, u32)> {
        let mut sums = vec![(0u64, 0u32); PARTITIONS as usize];
        let mut slot = 0;
        let end = self.keydir.slot_end();
        while slot < end {
            let s = slot;
            slot += 1;
            let p = match self.keydir.try_get(s) {
                Some(item) if item.expiry() == 0 || item.expiry() > now => partition_of(item.key()),
                _ => continue,
            };
            if !set.contains(p) {
                continue;
            }
            let Ok(in_item) = self.load(s) else {
                // Unreadable: counted as a different item, so the copies differ.
                sums[p as usize].1 += 1;
                continue;
            };
            let item = self.keydir.get(s);
            let value = if in_item { item.value() } else { &self.scratch[..] };
            let mut head = Vec::with_capacity(item.key().len() + 24);
            head.extend_from_slice(&(item.key().len() as u16).to_be_bytes());
            head.extend_from_slice(item.key());
            head.extend_from_slice(&item.cas().to_be_bytes());
            head.extend_from_slice(&item.flags().to_be_bytes());
            head.extend_from_slice(&item.expiry().to_be_bytes());
            let lo = crc32c::crc32c_append(crc32c::crc32c(&head), value);
            let hi = crc32c::crc32c_append(crc32c::crc32c_append(0x9E37_79B9, &head), value);
            let e = &mut sums[p as usize];
            e.0 = e.0.wrapping_add((hi as u64) << 32 | lo as u64);
            e.1 += 1;
        }
        set.iter().map(|p| (p, sums[p as usize].0, sums[p as usize].1)).collect()
    }

    /// Like [`scan`](Self::scan), but only items of the partitions in `set`, with their CAS:
    /// a full resync reads a partition's live items a slice at a time. With `above`, only
    /// the items of partition `p` whose CAS is above `above[p]` (a backfill), whose values
    /// are not read otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_partitions(
        &mut self,
        set: &PartitionSet,
        above: Option<&[u64]>,
        from: Slot,
        budget: usize,
        now: u32,
        mut each: impl FnMut(&[u8], &[u8], u32, u32, u64),
        mut expired: impl FnMut(&[u8]),
    ) -> Option<Slot> {
        let end = self.keydir.slot_end();
        let mut slot = from;
        let mut used = 0;
        while slot < end && used < budget {
            let s = slot;
            slot += 1;
            match self.keydir.try_get(s) {
                Some(item)
                    if set.contains(partition_of(item.key()))
                        && above.is_none_or(|a| a.get(partition_of(item.key()) as usize).is_some_and(|&c| item.cas() > c)) =>
                {
                    if item.is_expired(now) {
                        // Changed since the backup's seqno and expired since: its older
                        // version on the backup may live on, so a backfill deletes it.
                        if above.is_some() {
                            expired(item.key());
                            used += 48;
                        }
                        continue;
                    }
                }
                Some(_) => {
                    used += 16;
                    continue;
                }
                None => continue,
            }
            let Ok(in_item) = self.load(s) else { continue };
            let item = self.keydir.get(s);
            let value = if in_item { item.value() } else { &self.scratch[..] };
            used += item.key().len() + value.len() + 48;
            each(item.key(), value, item.flags(), item.expiry(), item.cas());
        }
        (slot < end).then_some(slot)
    }

    /// Calls `each` with the live item of `key` (value, flags, expiry, CAS), if there is
    /// one, and says whether there was: what a backfill sends of a noted key. Not a read:
    /// no statistics, no LRU bit.
    pub fn read_for_backfill(&mut self, key: &[u8], now: u32, each: impl FnOnce(&[u8], u32, u32, u64)) -> Result<bool, Outcome<&'static [u8]>> {
        let Some(slot) = self.keydir.find(key) else { return Ok(false) };
        if self.keydir.get(slot).is_expired(now) {
            return Ok(false);
        }
        let in_item = self.load(slot)?;
        let item = self.keydir.get(slot);
        let value = if in_item { item.value() } else { &self.scratch[..] };
        each(value, item.flags(), item.expiry(), item.cas());
        Ok(true)
    }

    /// The highest CAS this shard has issued or applied.
    pub fn last_cas(&self) -> u64 {
        self.last_cas
    }

    pub fn counters(&self) -> ShardCounters {
        self.counters
    }

    /// Records appended so far: a command that moved this appended a record, so its reply
    /// may leave only once the commit that writes the record succeeds.
    #[inline]
    pub fn records_appended(&self) -> u64 {
        self.counters.records_appended
    }

    pub fn log(&self) -> Option<&Log> {
        self.log.as_ref()
    }

    pub fn set_memory_limit(&mut self, bytes: usize) {
        self.config.memory_limit = bytes;
    }

    /// Changes the fsync policy of the shard's log, if it has one (a configuration reload).
    pub fn set_fsync(&mut self, fsync: super::disk::Fsync) -> io::Result<()> {
        match &mut self.log {
            Some(log) => log.set_fsync(fsync),
            None => Ok(()),
        }
    }

    /// Hands `each` the live items from keydir slot `from` on (key, value, flags, absolute
    /// expiry), about `budget` bytes of them, and returns the slot to go on from, or `None`
    /// when the scan has reached the end. A dump calls it once per event-loop turn, so a
    /// large shard is read a slice at a time between requests. Values on disk are read back
    /// (and kept in memory only where that evicts nothing); an item whose value cannot be
    /// read is left out and counted in `disk_errors`. Items set or deleted between two calls
    /// may or may not be seen: a scan is not a snapshot.
    pub fn scan(&mut self, from: Slot, budget: usize, now: u32, mut each: impl FnMut(&[u8], &[u8], u32, u32)) -> Option<Slot> {
        self.tick(now);
        let end = self.keydir.slot_end();
        let mut slot = from;
        let mut used = 0;
        while slot < end && used < budget {
            let s = slot;
            slot += 1;
            match self.keydir.try_get(s) {
                Some(item) if !item.is_expired(now) => {}
                _ => continue,
            }
            let Ok(in_item) = self.load(s) else { continue };
            let item = self.keydir.get(s);
            let value = if in_item { item.value() } else { &self.scratch[..] };
            used += item.key().len() + value.len() + 16;
            each(item.key(), value, item.flags(), item.expiry());
        }
        (slot < end).then_some(slot)
    }

    /// Under `--fsync always`, fsyncs leave the event loop: `notify` wakes it when one
    /// finishes, and replies wait until [`sync_rounds`](Self::sync_rounds) says theirs is durable.
    pub fn enable_group_commit(&mut self, notify: super::disk::group_commit::Notify) -> io::Result<()> {
        match &mut self.log {
            Some(log) => log.enable_group_commit(notify),
            None => Ok(()),
        }
    }

    /// Where group commit stands; `None` when a successful [`commit`](Self::commit) is
    /// enough for replies to leave (no log, or a policy other than `always`).
    pub fn sync_rounds(&self) -> Option<super::disk::SyncRounds> {
        self.log.as_ref().filter(|l| l.group_commit()).map(Log::sync_rounds)
    }

    /// Whether records wait for [`commit`](Self::commit).
    pub fn needs_commit(&self) -> bool {
        self.log.as_ref().is_some_and(Log::needs_commit)
    }

    /// Writes (and per the policy syncs) the records of this turn.
    pub fn commit(&mut self) -> io::Result<()> {
        let sync = std::mem::take(&mut self.sync_requested);
        match &mut self.log {
            // Asked for by a backup's `persist_majority` frame: its answer promises the disk.
            // Under group commit the answer waits for the commit thread's fsync instead.
            Some(log) if sync && !log.group_commit() => log.commit().and_then(|()| log.sync()),
            Some(log) => log.commit(),
            None => Ok(()),
        }
    }

    /// The next commit also fsyncs, whatever the policy (see `commit`).
    pub fn request_sync(&mut self) {
        self.sync_requested = true;
    }

    /// Changes recorded this turn so far (a mark for [`change_since`](Self::change_since)).
    pub fn changes_len(&self) -> usize {
        self.changes.items.len()
    }

    /// The partition and seqno of the last change recorded after `mark`, if any.
    pub fn change_since(&self, mark: usize) -> Option<(u16, u64)> {
        self.changes.items.get(mark..)?.iter().rev().find(|c| c.kind != ChangeKind::Flush).map(|c| (c.partition, c.seqno))
    }

    /// A clean stop: write, sync, write the active segment's hint.
    pub fn close(&mut self) -> io::Result<()> {
        // A merge finishing off the loop is let finish: its output stands in for its inputs
        // at the next start whether or not it was swapped in here.
        if let Some(f) = self.finishing.take() {
            let read = f.bytes_read;
            if let Err(e) = f.join().and_then(|(segment, moved, plan)| self.swap_merged(segment, moved, plan, read)) {
                log::error!("merge abandoned at its end: {e}");
            }
        }
        match &mut self.log {
            Some(log) => log.close(),
            None => Ok(()),
        }
    }

    /// Runs what is due at `now` without a command: a delayed flush. It is applied at its
    /// time whatever the disk does, as replaying its delayed marker would; the immediate
    /// marker that closes it in the log (records after it must survive a restart) is
    /// appended now, or, while the log refuses records, before the next record it takes.
    pub fn tick(&mut self, now: u32) {
        if let Some(at) = self.flush_at.filter(|&at| now >= at) {
            self.flush_at = None;
            self.drop_everything();
            if self.log.is_some() {
                self.flush_owed = Some(at);
                if let Err(o) = self.settle_flush() {
                    log::error!("delayed flush applied; its marker waits for the log ({o:?}): writes are refused until then");
                }
            }
        } else if self.flush_owed.is_some() {
            let _ = self.settle_flush();
        }
    }

    /// Appends the marker of a delayed flush already applied, if one is owed.
    fn settle_flush(&mut self) -> Result<(), Outcome<&'static [u8]>> {
        let Some(at) = self.flush_owed.take() else { return Ok(()) };
        if let Err(o) = self.append(Kind::Flush, 0, b"", b"", 0, 0, None) {
            self.flush_owed = Some(at);
            return Err(o);
        }
        log::debug!("the marker of the delayed flush due at {at} is in the log");
        Ok(())
    }

    pub fn execute<'s, B: AsRef<[u8]>>(&'s mut self, cmd: &Command<B>, now: u32) -> Outcome<&'s [u8]> {
        self.tick(now);
        match cmd {
            Command::Get { key } => self.get(key.as_ref(), None, now),
            Command::GetAndTouch { key, exptime } => self.get(key.as_ref(), Some(*exptime), now),
            Command::Touch { key, exptime } => match self.get(key.as_ref(), Some(*exptime), now) {
                Outcome::Value { flags, cas, .. } => Outcome::Value { flags, cas, value: &[] },
                other => other,
            },
            Command::Store { mode, key, value, flags, exptime, cas } => {
                self.store(*mode, key.as_ref(), value.as_ref(), *flags, *exptime, *cas, now)
            }
            Command::Delete { key, cas } => self.delete(key.as_ref(), *cas, now),
            Command::Arith { incr, key, delta, initial, exptime, cas } => {
                self.arith(*incr, key.as_ref(), *delta, *initial, *exptime, *cas, now)
            }
            Command::Flush { delay } => {
                let result = if *delay == 0 {
                    // A pending delayed flush is replaced only once the log says so.
                    self.flush_now().map(|()| self.flush_at = None)
                } else {
                    let at = expiry::absolute(*delay, now);
                    self.append(Kind::Flush, 0, b"", b"", 0, at, None).map(|_| {
                        self.flush_at = Some(at);
                    })
                };
                match result {
                    Ok(()) => Outcome::Done { cas: 0 },
                    Err(o) => o,
                }
            }
        }
    }

    fn flush_now(&mut self) -> Result<(), Outcome<&'static [u8]>> {
        match self.config.primary_only {
            // Written with the partitions it drops: a restart does the same whatever the
            // map then says.
            Some(set) => self.append(Kind::Flush, flush_scope::PARTITIONS, &set.0, b"", 0, 0, Some(0))?,
            None => self.append(Kind::Flush, flush_scope::SHARD, b"", b"", 0, 0, None)?,
        };
        self.drop_everything();
        Ok(())
    }

    /// A client's flush takes effect: empties the keydir (in a cluster, the partitions this
    /// node is primary for), counting every record dropped dead.
    fn drop_everything(&mut self) {
        if self.recording {
            self.changes.push(ChangeKind::Flush, 0, 0, 0, 0, 0, b"", b"");
        }
        if let Some(set) = self.config.primary_only {
            self.drop_partitions(&set);
            return;
        }
        if let Some(log) = &mut self.log {
            let ids: Vec<(super::disk::Location, u32)> = self
                .keydir
                .iter()
                .filter_map(|(_, it)| it.disk().map(|d| (d.loc, record_len(it.key().len(), d.stored_len))))
                .collect();
            for (loc, len) in ids {
                log.mark_dead(loc, len);
            }
        }
        self.keydir.clear();
    }

    fn next_cas(&mut self) -> u64 {
        self.last_cas += 1;
        self.last_cas
    }

    /// Makes the mutation's record: appends it when the shard has a log (`Ok(None)`
    /// without one), gives it its partition's next seqno (or `given`, a primary's, on a
    /// backup) only once the log has taken it, and records the change.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        kind: Kind,
        flags: u32,
        key: &[u8],
        value: &[u8],
        cas: u64,
        expiry: u32,
        given: Option<u64>,
    ) -> Result<Option<DiskRef>, Outcome<&'static [u8]>> {
        // No record may go before the marker of a delayed flush already applied.
        if self.log.is_some() {
            self.settle_flush()?;
        }
        let seqno_of = |kind: Kind, key: &[u8]| kind != Kind::Flush && !key.is_empty();
        let partition = if seqno_of(kind, key) { partition_of(key) } else { 0 };
        let seqno = match (seqno_of(kind, key), given) {
            (false, _) => given.unwrap_or(0),
            (true, Some(s)) => s,
            (true, None) => self.seqnos[partition as usize] + 1,
        };
        let meta = Meta { partition, flags, seqno, cas, expiry };
        let disk = match &mut self.log {
            None => None,
            Some(log) => match log.append(kind, &meta, key, if kind == Kind::Flush { b"" } else { value }) {
                Ok(a) => {
                    self.counters.records_appended += 1;
                    if kind != Kind::Put {
                        // Tombstones and flush markers count as dead from the start: a merge
                        // keeps them only while older segments may still need them.
                        log.mark_dead(a.loc, a.len);
                    }
                    Some(DiskRef { loc: a.loc, stored_len: a.stored_len, value_len: value.len() as u32, compressed: a.compressed })
                }
                Err(e) => {
                    self.counters.disk_errors += 1;
                    match e {
                        LogError::Unavailable => log::debug!("write refused: the log is failing"),
                        LogError::Io(e) => log::error!("cannot append to the log: {e}"),
                    }
                    return Err(Outcome::StorageError);
                }
            },
        };
        if seqno_of(kind, key) {
            let s = &mut self.seqnos[partition as usize];
            *s = (*s).max(seqno);
            if let (None, Some(claims), Kind::Put | Kind::Delete) = (given, &mut self.claims, kind) {
                claims.note(partition);
            }
        }
        if self.recording && given.is_none() {
            let change = match kind {
                Kind::Put => Some(ChangeKind::Put),
                Kind::Delete => Some(ChangeKind::Delete),
                // A flush is recorded when it takes effect (`drop_everything`).
                Kind::Flush | Kind::Watermark => None,
            };
            if let Some(c) = change {
                self.changes.push(c, partition, seqno, cas, flags, expiry, key, value);
            }
        }
        Ok(disk)
    }

    /// The record of the item in `slot` is no longer needed.
    fn forget_record(&mut self, item: &Item) {
        if let (Some(log), Some(d)) = (&mut self.log, item.disk()) {
            log.mark_dead(d.loc, record_len(item.key().len(), d.stored_len));
        }
    }

    /// Removes the item in `slot`, counting its record dead.
    fn drop_slot(&mut self, slot: Slot) {
        let item = self.keydir.remove(slot);
        self.forget_record(&item);
    }

    /// The slot of a live item; an expired one is removed on the way.
    fn find(&mut self, key: &[u8], now: u32) -> Option<Slot> {
        let slot = self.keydir.find(key)?;
        if self.keydir.get(slot).is_expired(now) {
            self.went_silently(slot);
            self.drop_slot(slot);
            self.counters.reclaimed += 1;
            return None;
        }
        Some(slot)
    }

    /// Frees memory until `charge` more bytes fit.
    fn make_room(&mut self, charge: usize, now: u32) -> bool {
        if charge > self.config.memory_limit {
            return false;
        }
        while self.keydir.used() + charge > self.config.memory_limit {
            let drop_values = self.log.is_some() && self.config.mode == Mode::Store;
            if drop_values {
                // Only values can go; if all of them together would not make room, refuse.
                if self.keydir.used() - self.keydir.droppable() + charge > self.config.memory_limit {
                    return false;
                }
                let Some(slot) = self.keydir.clock(|it| it.is_resident() && it.disk().is_some()) else { return false };
                let cold = self.keydir.get(slot).without_value();
                self.keydir.replace(slot, cold);
                self.counters.values_evicted += 1;
            } else {
                let Some(slot) = self.keydir.clock(|_| true) else { return false };
                if self.keydir.get(slot).is_expired(now) {
                    self.counters.reclaimed += 1;
                } else {
                    self.note_evicted(slot, now);
                    self.counters.evictions += 1;
                }
                self.went_silently(slot);
                self.drop_slot(slot);
            }
        }
        true
    }

    /// Writes `value` under `key` (log first, then keydir), replacing `old`.
    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        old: Option<Slot>,
        key: &[u8],
        value: &[u8],
        flags: u32,
        expiry: u32,
        cas: u64,
        now: u32,
        given: Option<u64>,
    ) -> Result<Slot, Outcome<&'static [u8]>> {
        let disk = self.append(Kind::Put, flags, key, value, cas, expiry, given)?;
        if let Some(slot) = old {
            // As memcached does for SET: a store that fails for memory leaves no stale value.
            self.drop_slot(slot);
        }
        let mut item = Item::new(key, value.len(), flags, expiry, cas, disk, true);
        item.value_mut().copy_from_slice(value);
        item.set_atime(now);
        if !self.make_room(item.charge(), now) {
            // In store mode the record is on disk: keep the key with its value there.
            if let Some(d) = disk.filter(|_| self.config.mode == Mode::Store) {
                let mut cold = Item::new(key, 0, flags, expiry, cas, Some(d), false);
                cold.set_atime(now);
                if self.make_room(cold.charge(), now) {
                    self.counters.total_items += 1;
                    return Ok(self.keydir.insert(cold));
                }
                // Not even the key fits: undo with a tombstone so the log agrees.
                let _ = self.append(Kind::Delete, 0, key, b"", 0, 0, given);
            } else if let Some(d) = disk {
                // Cache mode: the record is written but the item is not kept.
                if let Some(log) = &mut self.log {
                    log.mark_dead(d.loc, record_len(key.len(), d.stored_len));
                }
                let _ = self.append(Kind::Delete, 0, key, b"", 0, 0, given);
            }
            return Err(Outcome::OutOfMemory);
        }
        self.counters.total_items += 1;
        Ok(self.keydir.insert(item))
    }

    /// The value of the item in `slot`, reading it from disk when it is not in memory. The
    /// bytes are in the item or in `self.scratch`.
    fn load(&mut self, slot: Slot) -> Result<bool, Outcome<&'static [u8]>> {
        let item = self.keydir.get(slot);
        if item.is_resident() {
            return Ok(true);
        }
        let (Some(d), Some(log)) = (item.disk(), self.log.as_mut()) else { return Ok(true) };
        let len = record_len(item.key().len(), d.stored_len);
        self.counters.disk_reads += 1;
        let record = match log.read(d.loc, len) {
            Ok(r) => r,
            Err(e) => {
                log::error!("cannot read the value of {:?}: {e}", String::from_utf8_lossy(item.key()));
                self.counters.disk_errors += 1;
                return Err(Outcome::StorageError);
            }
        };
        self.scratch.clear();
        if record.compressed {
            match zstd::bulk::decompress(record.value, d.value_len as usize) {
                Ok(v) => self.scratch.extend_from_slice(&v),
                Err(e) => {
                    log::error!("cannot decompress a value: {e}");
                    self.counters.disk_errors += 1;
                    return Err(Outcome::StorageError);
                }
            }
        } else {
            self.scratch.extend_from_slice(record.value);
        }
        // Keep it in memory if that costs no eviction.
        let warm = self.keydir.get(slot).with_resident(&self.scratch);
        let extra = warm.charge() - self.keydir.get(slot).charge();
        if self.keydir.used() + extra <= self.config.memory_limit {
            self.keydir.replace(slot, warm);
            return Ok(true);
        }
        Ok(false)
    }

    /// The current value of the item in `slot`, copied (for mutations built on it).
    fn value_copy(&mut self, slot: Slot) -> Result<Vec<u8>, Outcome<&'static [u8]>> {
        Ok(if self.load(slot)? { self.keydir.get(slot).value().to_vec() } else { self.scratch.clone() })
    }

    fn get(&mut self, key: &[u8], touch: Option<u32>, now: u32) -> Outcome<&[u8]> {
        let Some(slot) = self.find(key, now) else { return Outcome::NotFound };
        let state = self.note_read(slot, now);
        if let Some(exptime) = touch {
            let expiry = expiry::absolute(exptime, now);
            if self.log.is_some() || self.recording {
                // The new expiry must survive a restart (and reach backups): write the item again.
                let value = match self.value_copy(slot) {
                    Ok(v) => v,
                    Err(o) => return o,
                };
                let it = self.keydir.get(slot);
                let (flags, cas) = (it.flags(), it.cas());
                let slot = match self.put(Some(slot), key, &value, flags, expiry, cas, now, None) {
                    Ok(s) => s,
                    Err(o) => return o,
                };
                self.keydir.get_mut(slot).set_state(state);
                return self.answer(slot);
            }
            self.keydir.get_mut(slot).set_expiry(expiry);
        }
        self.answer(slot)
    }

    fn answer(&mut self, slot: Slot) -> Outcome<&[u8]> {
        let in_item = match self.load(slot) {
            Ok(b) => b,
            Err(o) => return o,
        };
        let item = self.keydir.get_mut(slot);
        item.set_referenced(true);
        let item = self.keydir.get(slot);
        let value = if in_item { item.value() } else { &self.scratch[..] };
        Outcome::Value { flags: item.flags(), cas: item.cas(), value }
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
        cas: u64,
        now: u32,
    ) -> Outcome<&[u8]> {
        if value.len() > self.config.max_item_size {
            return Outcome::TooLarge;
        }
        let old = self.find(key, now);
        let concat = matches!(mode, StoreMode::Append | StoreMode::Prepend);
        match (mode, old) {
            (StoreMode::Add, Some(slot)) if cas == 0 => {
                self.keydir.get_mut(slot).set_referenced(true);
                return Outcome::NotStored;
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) if cas == 0 || concat => {
                return Outcome::NotStored;
            }
            (_, None) if cas != 0 => return Outcome::NotFound,
            (_, Some(slot)) if cas != 0 && self.keydir.get(slot).cas() != cas => return Outcome::Exists,
            _ => {}
        }
        let (value, flags, expiry): (std::borrow::Cow<'_, [u8]>, u32, u32) = match (mode, old) {
            (StoreMode::Append | StoreMode::Prepend, Some(slot)) => {
                let old_value = match self.value_copy(slot) {
                    Ok(v) => v,
                    Err(o) => return o,
                };
                if old_value.len() + value.len() > self.config.max_item_size {
                    return Outcome::TooLarge;
                }
                let joined = if mode == StoreMode::Append { [&old_value[..], value].concat() } else { [value, &old_value[..]].concat() };
                let it = self.keydir.get(slot);
                (joined.into(), it.flags(), it.expiry())
            }
            _ => (value.into(), flags, expiry::absolute(exptime, now)),
        };
        if charge_for(key.len(), value.len()) > self.config.memory_limit {
            return Outcome::OutOfMemory;
        }
        let new_cas = self.next_cas();
        match self.put(old, key, &value, flags, expiry, new_cas, now, None) {
            Ok(_) => Outcome::Done { cas: new_cas },
            Err(o) => o,
        }
    }

    fn delete(&mut self, key: &[u8], cas: u64, now: u32) -> Outcome<&[u8]> {
        let Some(slot) = self.find(key, now) else { return Outcome::NotFound };
        if cas != 0 && self.keydir.get(slot).cas() != cas {
            return Outcome::Exists;
        }
        if let Err(o) = self.append(Kind::Delete, 0, key, b"", 0, 0, None) {
            return o;
        }
        self.drop_slot(slot);
        Outcome::Done { cas: 0 }
    }

    #[allow(clippy::too_many_arguments)]
    fn arith(
        &mut self,
        incr: bool,
        key: &[u8],
        delta: u64,
        initial: Option<u64>,
        exptime: u32,
        cas: u64,
        now: u32,
    ) -> Outcome<&[u8]> {
        let old = self.find(key, now);
        let (value, flags, expiry) = match old {
            None => {
                let Some(initial) = initial else { return Outcome::NotFound };
                (initial, 0, expiry::absolute(exptime, now))
            }
            Some(slot) => {
                if cas != 0 && self.keydir.get(slot).cas() != cas {
                    return Outcome::Exists;
                }
                let current = match self.value_copy(slot) {
                    Ok(v) => v,
                    Err(o) => return o,
                };
                let Some(current) = parse_counter(&current) else { return Outcome::NonNumeric };
                let value = if incr { current.wrapping_add(delta) } else { current.saturating_sub(delta) };
                let it = self.keydir.get(slot);
                (value, it.flags(), it.expiry())
            }
        };
        let new_cas = self.next_cas();
        match self.put(old, key, value.to_string().as_bytes(), flags, expiry, new_cas, now, None) {
            Ok(_) => Outcome::Counter { value, cas: new_cas },
            Err(o) => o,
        }
    }
}

fn record_len(key_len: usize, stored_len: u32) -> u32 {
    super::disk::record::record_len(key_len, stored_len as usize) as u32
}

/// A counter is ASCII decimal below 2^64, as memcached's `safe_strtoull` reads it
/// (trailing spaces, left by memcached's in-place decrement, are allowed).
/// The file of a shard's directory that keeps its backup copies' branches.
const BRANCHES_FILE: &str = "branches";

/// `CKB1`, then (partition u16, branch u64) big-endian for every partition with a branch.
fn encode_branches(branches: &[u64]) -> Vec<u8> {
    let mut out = b"CKB1".to_vec();
    for (p, &b) in branches.iter().enumerate().filter(|(_, &b)| b != 0) {
        out.extend_from_slice(&(p as u16).to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
    }
    out
}

fn decode_branches(bytes: &[u8]) -> Option<Vec<u64>> {
    let body = bytes.strip_prefix(b"CKB1")?;
    if body.len() % 10 != 0 {
        return None;
    }
    let mut out = vec![0; crate::cluster::PARTITIONS as usize];
    for e in body.chunks_exact(10) {
        let p = u16::from_be_bytes([e[0], e[1]]) as usize;
        let b = u64::from_be_bytes(e[2..10].try_into().ok()?);
        *out.get_mut(p)? = b;
    }
    Some(out)
}

pub fn parse_counter(value: &[u8]) -> Option<u64> {
    let digits = value.strip_suffix(b"\r\n").unwrap_or(value);
    let end = digits.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
    let digits = &digits[..end];
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u32 = 1_800_000_000;

    fn shard() -> Shard {
        Shard::new(ShardConfig { memory_limit: 1 << 20, max_item_size: 1024, mode: Mode::Cache, primary_only: None, epoch: None })
    }

    fn set(s: &mut Shard, k: &str, v: &str) -> Outcome<Vec<u8>> {
        own(s.execute(
            &Command::Store { mode: StoreMode::Set, key: k, value: v, flags: 7, exptime: 0, cas: 0 },
            NOW,
        ))
    }

    fn get(s: &mut Shard, k: &str) -> Option<Vec<u8>> {
        match s.execute(&Command::Get { key: k }, NOW) {
            Outcome::Value { value, .. } => Some(value.to_vec()),
            _ => None,
        }
    }

    fn own(o: Outcome<&[u8]>) -> Outcome<Vec<u8>> {
        match o {
            Outcome::Value { flags, cas, value } => Outcome::Value { flags, cas, value: value.to_vec() },
            Outcome::Done { cas } => Outcome::Done { cas },
            Outcome::Counter { value, cas } => Outcome::Counter { value, cas },
            Outcome::NotFound => Outcome::NotFound,
            Outcome::Exists => Outcome::Exists,
            Outcome::NotStored => Outcome::NotStored,
            Outcome::NonNumeric => Outcome::NonNumeric,
            Outcome::TooLarge => Outcome::TooLarge,
            Outcome::OutOfMemory => Outcome::OutOfMemory,
            Outcome::StorageError => Outcome::StorageError,
            Outcome::TemporaryFailure => Outcome::TemporaryFailure,
            Outcome::SyncWriteAmbiguous => Outcome::SyncWriteAmbiguous,
            Outcome::DurabilityImpossible => Outcome::DurabilityImpossible,
        }
    }

    #[test]
    fn set_get_delete() {
        let mut s = shard();
        assert!(matches!(set(&mut s, "a", "1"), Outcome::Done { cas } if cas > 0));
        assert_eq!(get(&mut s, "a").as_deref(), Some(&b"1"[..]));
        assert_eq!(own(s.execute(&Command::Delete { key: "a", cas: 0 }, NOW)), Outcome::Done { cas: 0 });
        assert_eq!(get(&mut s, "a"), None);
        assert_eq!(own(s.execute(&Command::Delete { key: "a", cas: 0 }, NOW)), Outcome::NotFound);
        assert_eq!(s.used_bytes(), 0);
    }

    #[test]
    fn cas_rules() {
        let mut s = shard();
        let Outcome::Done { cas } = set(&mut s, "a", "1") else { panic!() };
        let store = |mode, cas| Command::Store { mode, key: "a", value: "2", flags: 0, exptime: 0, cas };
        assert_eq!(own(s.execute(&store(StoreMode::Set, cas + 1), NOW)), Outcome::Exists);
        assert!(matches!(s.execute(&store(StoreMode::Set, cas), NOW), Outcome::Done { cas: c } if c > cas));
        let missing = Command::Store { mode: StoreMode::Set, key: "b", value: "2", flags: 0, exptime: 0, cas: 5 };
        assert_eq!(own(s.execute(&missing, NOW)), Outcome::NotFound);
        assert_eq!(own(s.execute(&Command::Delete { key: "a", cas: 1 }, NOW)), Outcome::Exists);
    }

    #[test]
    fn add_replace_append_prepend() {
        let mut s = shard();
        let cmd = |mode, v| Command::Store { mode, key: "a", value: v, flags: 3, exptime: 0, cas: 0 };
        assert_eq!(own(s.execute(&cmd(StoreMode::Replace, "x"), NOW)), Outcome::NotStored);
        assert_eq!(own(s.execute(&cmd(StoreMode::Append, "x"), NOW)), Outcome::NotStored);
        assert!(matches!(s.execute(&cmd(StoreMode::Add, "b"), NOW), Outcome::Done { .. }));
        assert_eq!(own(s.execute(&cmd(StoreMode::Add, "x"), NOW)), Outcome::NotStored);
        assert!(matches!(s.execute(&cmd(StoreMode::Append, "c"), NOW), Outcome::Done { .. }));
        assert!(matches!(s.execute(&cmd(StoreMode::Prepend, "a"), NOW), Outcome::Done { .. }));
        assert_eq!(get(&mut s, "a").as_deref(), Some(&b"abc"[..]));
        assert!(matches!(s.execute(&cmd(StoreMode::Replace, "z"), NOW), Outcome::Done { .. }));
        assert_eq!(get(&mut s, "a").as_deref(), Some(&b"z"[..]));
    }

    #[test]
    fn incr_decr() {
        let mut s = shard();
        let arith = |incr, delta, initial| Command::Arith { incr, key: "n", delta, initial, exptime: 0, cas: 0 };
        assert_eq!(own(s.execute(&arith(true, 1, None), NOW)), Outcome::NotFound);
        assert!(matches!(s.execute(&arith(true, 1, Some(10)), NOW), Outcome::Counter { value: 10, .. }));
        assert!(matches!(s.execute(&arith(true, 5, Some(0)), NOW), Outcome::Counter { value: 15, .. }));
        assert!(matches!(s.execute(&arith(false, 100, None), NOW), Outcome::Counter { value: 0, .. }));
        set(&mut s, "n", &u64::MAX.to_string());
        assert!(matches!(s.execute(&arith(true, 2, None), NOW), Outcome::Counter { value: 1, .. }));
        assert_eq!(get(&mut s, "n").as_deref(), Some(&b"1"[..]));
        set(&mut s, "n", "abc");
        assert_eq!(own(s.execute(&arith(true, 1, None), NOW)), Outcome::NonNumeric);
        set(&mut s, "n", "18446744073709551616");
        assert_eq!(own(s.execute(&arith(true, 1, None), NOW)), Outcome::NonNumeric);
    }

    #[test]
    fn counters_parse_like_memcached() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"9 "), Some(9));
        assert_eq!(parse_counter(b"42\r\n"), Some(42));
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"-1"), None);
        assert_eq!(parse_counter(b"1a"), None);
    }

    #[test]
    fn expiry_and_touch() {
        let mut s = shard();
        let cmd = Command::Store { mode: StoreMode::Set, key: "a", value: "v", flags: 0, exptime: 10, cas: 0 };
        s.execute(&cmd, NOW);
        assert!(matches!(s.execute(&Command::Get { key: "a" }, NOW + 9), Outcome::Value { .. }));
        assert!(matches!(s.execute(&Command::Touch { key: "a", exptime: 100 }, NOW + 9), Outcome::Value { .. }));
        assert!(matches!(s.execute(&Command::Get { key: "a" }, NOW + 50), Outcome::Value { .. }));
        assert_eq!(own(s.execute(&Command::Get { key: "a" }, NOW + 109)), Outcome::NotFound);
        assert_eq!(s.len(), 0);
        // An absolute time in the past is gone at once.
        let past = Command::Store { mode: StoreMode::Set, key: "b", value: "v", flags: 0, exptime: NOW - 1, cas: 0 };
        s.execute(&past, NOW);
        assert_eq!(own(s.execute(&Command::Get { key: "b" }, NOW)), Outcome::NotFound);
    }

    #[test]
    fn delayed_flush() {
        let mut s = shard();
        set(&mut s, "a", "1");
        s.execute(&Command::<&[u8]>::Flush { delay: 5 }, NOW);
        assert!(get(&mut s, "a").is_some());
        s.tick(NOW + 5);
        assert!(s.is_empty());
    }

    #[test]
    fn eviction_keeps_usage_under_the_limit_and_prefers_unreferenced_items() {
        let mut s = Shard::new(ShardConfig { memory_limit: 100 * charge_for(4, 10), max_item_size: 1024, mode: Mode::Cache, primary_only: None, epoch: None });
        for i in 0..100 {
            set(&mut s, &format!("k{i:03}"), "0123456789");
        }
        assert_eq!(s.counters().evictions, 0);
        // Touch the first ten so the clock passes over them.
        for i in 0..10 {
            assert!(get(&mut s, &format!("k{i:03}")).is_some());
        }
        for i in 100..150 {
            set(&mut s, &format!("k{i:03}"), "0123456789");
        }
        assert!(s.used_bytes() <= 100 * charge_for(4, 10));
        assert_eq!(s.counters().evictions, 50);
        for i in 0..10 {
            assert!(get(&mut s, &format!("k{i:03}")).is_some(), "k{i:03} was referenced");
        }
    }

    #[test]
    fn an_item_larger_than_the_shard_is_out_of_memory() {
        let mut s = Shard::new(ShardConfig { memory_limit: 100, max_item_size: 1024, mode: Mode::Cache, primary_only: None, epoch: None });
        assert_eq!(set(&mut s, "a", &"x".repeat(200)), Outcome::OutOfMemory);
        let mut s = shard();
        assert_eq!(set(&mut s, "a", &"x".repeat(2000)), Outcome::TooLarge);
    }

    #[test]
    fn a_backup_change_without_room_leaves_its_copy_not_whole() {
        // No room (store semantics, no log: nothing to evict): the apply fails, and the
        // partition says it is not whole, so its primary resyncs it rather than go on past.
        let mut s = Shard::new(ShardConfig { memory_limit: 100, max_item_size: 1024, mode: Mode::Store, primary_only: None, epoch: None });
        let p = partition_of(b"k");
        assert!(s.apply(ChangeKind::Put, b"k", &[7; 500], 0, 0, 1, 1, NOW).is_err());
        assert!(s.is_incomplete(p));
    }
}
