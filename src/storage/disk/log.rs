//! The log of one shard: the active segment records are appended to, the closed segments
//! they are read from, and the durability policy.
//!
//! Records are encoded into `pending` as commands run and written with one `write` per
//! event-loop turn ([`Log::commit`]); under [`Fsync::Always`] the same call syncs before any
//! reply of the turn leaves (group commit). A segment is rolled at the size limit: synced,
//! a new one created and the directory synced, and a hint file written beside the old one.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::fs::{LogFile, SharedFs, SyncHandle};
use super::group_commit::{Finished, GroupCommit, Notify, SyncStats};
use super::hint::HintWriter;
use super::record::{self, Kind, Meta, Record};
use super::segment::{Location, SegmentHeader, SegmentName, SEGMENT_HEADER_LEN};
use crate::stats::latency::FsyncTimes;

/// When appended records are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Before any reply to the mutation leaves; one fsync per event-loop turn covers every
    /// write of that turn.
    Always,
    /// At most about one second after the reply.
    EverySec,
    /// When the operating system writes back (and at roll and shutdown).
    Never,
}

impl std::str::FromStr for Fsync {
    type Err = String;
    fn from_str(s: &str) -> Result<Fsync, String> {
        match s {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::EverySec),
            "never" => Ok(Fsync::Never),
            other => Err(format!("'{other}' is not a fsync policy (always, everysec, never)")),
        }
    }
}

/// The flag's spelling, as `FromStr` reads it.
impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::Never => "never",
        })
    }
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub shard: u32,
    pub segment_size: u64,
    pub fsync: Fsync,
    /// Values at least this long are zstd-compressed when that saves space; 0 = never.
    pub compress_min: usize,
}

/// A segment the log knows.
pub struct Segment {
    pub name: SegmentName,
    /// First id this segment stands for (a merge output replaces `first..=name.id`).
    pub first: u32,
    pub file: Box<dyn LogFile>,
    /// Bytes in the file.
    pub len: u64,
    /// Bytes of records no longer needed to rebuild the keydir (overwritten, deleted,
    /// expired when noticed, tombstones themselves).
    pub dead: u64,
    /// Bytes of watermark records (merge outputs' high-water marks), counted in `dead`: a
    /// merge must gain more than these, or a lone output would be merged again and again.
    pub marks: u64,
}

/// Where an appended record went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub loc: Location,
    /// The whole record's length.
    pub len: u32,
    pub stored_len: u32,
    pub compressed: bool,
}

#[derive(Debug)]
pub enum LogError {
    /// An earlier write or fsync failed and its data is still waiting to be written.
    Unavailable,
    Io(io::Error),
}

pub struct Log {
    fs: SharedFs,
    config: LogConfig,
    segments: BTreeMap<u32, Segment>,
    active: u32,
    /// Records appended and not yet written.
    pending: Vec<u8>,
    /// Under `Always`: bytes written since the last successful fsync, to write again if an
    /// fsync fails (the kernel may have dropped them).
    unsynced: Vec<u8>,
    unsynced_from: u64,
    /// Under `Always`: a failed fsync's bytes could not be written again either; the next
    /// commit writes them before anything else.
    rewrite: bool,
    dirty: bool,
    last_sync: Instant,
    /// Set by a failed write or fsync; mutations are refused until it clears.
    failed: bool,
    scratch: Vec<u8>,
    counters: LogCounters,
    /// Under `EverySec`: the thread that syncs off the event loop.
    syncer: Option<Syncer>,
    /// The hint of the active segment, built as records are appended so that a roll need
    /// not read the segment back; dropped (and the segment read at the roll instead) once
    /// it passes [`HINT_MEMORY_CAP`].
    hint: Option<HintWriter>,
    /// Under `Always`, once the event loop asked for it: fsyncs off the loop (`group_commit`).
    group: Option<GroupCommit>,
    /// How the commit thread wakes the loop; kept to start a new thread after a reload.
    notify: Option<Notify>,
    /// SyncRounds: commits that wrote bytes (under `Always`), the last of them known durable,
    /// and the last whose fsync failed.
    sync_rounds: SyncRounds,
    /// How long the fsyncs on the event loop took (the syncer keeps its own).
    fsync_times: FsyncTimes,
}

/// Where group commit stands: replies made in round `e` may leave once `durable >= e`, and
/// get an error status if `failed >= e` first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncRounds {
    pub written: u64,
    pub durable: u64,
    pub failed: u64,
}

/// Bytes of hint a shard builds in memory for its active segment at most: a 64 MiB segment of
/// 1 KiB values needs about 4 MiB; one of tiny values needs more and is read back at the roll.
const HINT_MEMORY_CAP: usize = 8 << 20;

/// A thread that fsyncs the active segment once a second for `EverySec`, so that the event
/// loop never waits for the disk. A failure is reported back and refuses further writes
/// until a sync on the loop succeeds.
struct Syncer {
    jobs: crossbeam_channel::Sender<Box<dyn SyncHandle>>,
    state: std::sync::Arc<SyncState>,
}

#[derive(Default)]
struct SyncState {
    failed: std::sync::atomic::AtomicBool,
    stats: SyncStats,
}

impl Syncer {
    fn spawn(shard: u32) -> io::Result<Syncer> {
        use std::sync::atomic::Ordering::Relaxed;
        let (jobs, rx) = crossbeam_channel::bounded::<Box<dyn SyncHandle>>(1);
        let state = std::sync::Arc::new(SyncState::default());
        let s = state.clone();
        std::thread::Builder::new().name(format!("caskade-sync-{shard}")).spawn(move || {
            for mut handle in rx {
                if let Err(e) = s.stats.sync(&mut *handle) {
                    log::error!("shard {shard}: background fsync failed: {e}");
                    s.failed.store(true, Relaxed);
                }
            }
        })?;
        Ok(Syncer { jobs, state })
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LogCounters {
    pub fsyncs: u64,
    pub fsync_micros: u64,
    pub write_errors: u64,
    pub fsync_errors: u64,
    pub segments_rolled: u64,
}

impl Log {
    /// A log over `segments` found by recovery; starts a new active segment after them.
    pub fn open(fs: SharedFs, config: LogConfig, segments: Vec<Segment>) -> io::Result<Log> {
        let next_id = segments.iter().map(|s| s.name.id + 1).max().unwrap_or(1);
        let mut log = Log {
            fs,
            config,
            segments: segments.into_iter().map(|s| (s.name.id, s)).collect(),
            active: 0,
            pending: Vec::with_capacity(1 << 16),
            unsynced: Vec::new(),
            unsynced_from: 0,
            rewrite: false,
            dirty: false,
            last_sync: Instant::now(),
            failed: false,
            scratch: Vec::new(),
            counters: LogCounters::default(),
            syncer: None,
            hint: None,
            group: None,
            notify: None,
            sync_rounds: SyncRounds::default(),
            fsync_times: FsyncTimes::default(),
        };
        if log.config.fsync == Fsync::EverySec {
            log.syncer = Some(Syncer::spawn(log.config.shard)?);
        }
        log.start_segment(next_id)?;
        Ok(log)
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The log's own counts with those of its sync threads. The event loop asks every turn,
    /// so this reads a few atomics and leaves the fsync-time histograms alone (copying and
    /// merging them cost ~40k instructions a turn: bench/RESULTS.md, issue 15).
    pub fn counters(&self) -> LogCounters {
        let mut c = self.counters;
        for stats in self.sync_stats() {
            stats.add_counters(&mut c);
        }
        c
    }

    /// How long every fsync counted in [`LogCounters::fsyncs`] took (for STAT and the admin
    /// port, not per turn).
    pub fn fsync_times(&self) -> FsyncTimes {
        let mut times = self.fsync_times.clone();
        for stats in self.sync_stats() {
            stats.add_times(&mut times);
        }
        times
    }

    fn sync_stats(&self) -> impl Iterator<Item = &SyncStats> {
        self.syncer.iter().map(|s| &s.state.stats).chain(self.group.iter().map(GroupCommit::stats))
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    fn start_segment(&mut self, id: u32) -> io::Result<()> {
        let name = SegmentName { id, generation: 0 };
        let path = name.path(&self.config.dir);
        let mut file = self.fs.create(&path)?;
        let header = SegmentHeader { name, first: id, shard: self.config.shard };
        let made = file.append(&header.encode()).and_then(|()| file.sync()).and_then(|()| self.fs.sync_dir(&self.config.dir));
        if let Err(e) = made {
            // Leave no half-made file behind, or the next try could not create it again.
            drop(file);
            let _ = self.fs.remove(&path);
            return Err(e);
        }
        self.segments.insert(id, Segment { name, first: id, file, len: SEGMENT_HEADER_LEN as u64, dead: 0, marks: 0 });
        self.active = id;
        self.hint = Some(HintWriter::new(name));
        self.unsynced.clear();
        self.unsynced_from = SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    fn active(&self) -> &Segment {
        &self.segments[&self.active]
    }

    /// Appends a record; it is written by the next [`commit`](Self::commit).
    pub fn append(&mut self, kind: Kind, meta: &Meta, key: &[u8], value: &[u8]) -> Result<Appended, LogError> {
        if let Some(s) = &self.syncer {
            // A background fsync failed: the next commit syncs on the loop and clears this.
            if s.state.failed.load(std::sync::atomic::Ordering::Relaxed) {
                self.failed = true;
                self.dirty = true;
            }
        }
        if self.failed {
            return Err(LogError::Unavailable);
        }
        let compressed = self.compress(value);
        let stored: &[u8] = match compressed {
            Some(ref c) => c,
            None => value,
        };
        let len = record::record_len(key.len(), stored.len()) as u64;
        let end = self.active().len + self.pending.len() as u64;
        if end + len > self.config.segment_size && end > SEGMENT_HEADER_LEN as u64 {
            self.roll().map_err(LogError::Io)?;
        }
        let offset = self.active().len + self.pending.len() as u64;
        let offset = u32::try_from(offset).map_err(|_| LogError::Io(io::Error::other("segment over 4 GiB")))?;
        let start = self.pending.len();
        record::encode(&mut self.pending, kind, meta, key, stored, compressed.is_some(), value.len() as u32);
        if let Some(hint) = &mut self.hint {
            hint.add(offset, &self.pending[start..], key.len());
            if hint.len() > HINT_MEMORY_CAP {
                self.hint = None;
            }
        }
        Ok(Appended {
            loc: Location { segment: self.active, offset },
            len: len as u32,
            stored_len: stored.len() as u32,
            compressed: compressed.is_some(),
        })
    }

    fn compress(&self, value: &[u8]) -> Option<Vec<u8>> {
        let min = self.config.compress_min;
        if min == 0 || value.len() < min {
            return None;
        }
        let c = zstd::bulk::compress(value, 1).ok()?;
        (c.len() + 16 < value.len()).then_some(c)
    }

    /// Counts a record as no longer needed.
    pub fn mark_dead(&mut self, loc: Location, len: u32) {
        if let Some(s) = self.segments.get_mut(&loc.segment) {
            s.dead += len as u64;
        }
    }

    /// Changes the fsync policy (a configuration reload). The log is synced first, so the
    /// new policy starts from a synced file whatever the old one left.
    pub fn set_fsync(&mut self, fsync: Fsync) -> io::Result<()> {
        // Always: it also brings the unsynced-bytes bookkeeping `always` needs up to date.
        self.sync()?;
        // `EverySec` syncs on its own thread; `Always` on the commit thread once the loop
        // asked for it (replies wait for their round), else on the loop.
        match (fsync, self.syncer.is_some()) {
            (Fsync::EverySec, false) => self.syncer = Some(Syncer::spawn(self.config.shard)?),
            (Fsync::Always | Fsync::Never, true) => {
                if let Some(s) = self.syncer.take() {
                    // Keep its counts: a counter must not go back.
                    s.state.stats.add_to(&mut self.counters, &mut self.fsync_times);
                }
            }
            _ => {}
        }
        if fsync != Fsync::Always {
            if let Some(g) = self.group.take() {
                g.stats().add_to(&mut self.counters, &mut self.fsync_times);
            }
        }
        self.config.fsync = fsync;
        if let (Fsync::Always, None, Some(notify)) = (fsync, &self.group, &self.notify) {
            self.group = Some(GroupCommit::spawn(self.config.shard, notify.clone())?);
        }
        Ok(())
    }

    /// Under `Always`, syncs off the event loop from now on: [`commit`](Self::commit) only
    /// writes and starts an fsync, `notify` is called when one finishes, and the loop releases
    /// the replies of the sync_rounds [`sync_rounds`](Self::sync_rounds) says are durable.
    pub fn enable_group_commit(&mut self, notify: Notify) -> io::Result<()> {
        self.notify = Some(notify.clone());
        if self.config.fsync == Fsync::Always && self.group.is_none() {
            self.group = Some(GroupCommit::spawn(self.config.shard, notify)?);
        }
        Ok(())
    }

    /// Whether fsyncs run off the loop, so that replies must wait for [`sync_rounds`](Self::sync_rounds).
    pub fn group_commit(&self) -> bool {
        self.group.is_some()
    }

    pub fn sync_rounds(&self) -> SyncRounds {
        self.sync_rounds
    }

    /// Takes in the result of the fsync in flight, if it has finished. A failure is handled
    /// like one on the loop: the unsynced bytes are written again and writes are refused
    /// until a sync works.
    fn poll_group(&mut self) {
        let Some(finished) = self.group.as_mut().and_then(GroupCommit::poll) else { return };
        match finished {
            // Older than what a sync on the loop already made durable: nothing to learn from
            // it. (A failure is never ignored: the loop waits for the thread's fsync before
            // one of its own, since an fsync error is reported to one file handle only.)
            Finished::Synced { round, .. } if round <= self.sync_rounds.durable => {}
            Finished::Synced { round, mark } => {
                self.sync_rounds.durable = round;
                self.last_sync = Instant::now();
                // The bytes up to `mark` need no rewrite should a later fsync fail.
                if mark > self.unsynced_from {
                    let n = ((mark - self.unsynced_from) as usize).min(self.unsynced.len());
                    self.unsynced.drain(..n);
                    self.unsynced_from = mark;
                }
            }
            Finished::Failed { .. } => {
                self.failed = true;
                self.sync_rounds.failed = self.sync_rounds.written;
                let active = self.segments.get_mut(&self.active).expect("the active segment exists");
                let redo = active.file.truncate(self.unsynced_from).and_then(|_| active.file.append(&self.unsynced));
                self.rewrite = redo.is_err();
                self.dirty = true;
            }
        }
    }

    /// Whether records await a write or an fsync.
    pub fn needs_commit(&self) -> bool {
        let sync_due = match self.config.fsync {
            Fsync::Always => true,
            Fsync::EverySec => self.last_sync.elapsed() >= Duration::from_secs(1),
            Fsync::Never => false,
        };
        // After a failure, a commit is what finds out whether the disk works again.
        !self.pending.is_empty()
            || self.failed
            || (self.dirty && sync_due)
            || self.group.as_ref().is_some_and(|g| !g.is_idle())
    }

    /// Writes what was appended and, per the policy, syncs it. After an error the records
    /// stay queued and are tried again by the next call.
    pub fn commit(&mut self) -> io::Result<()> {
        // A finished fsync is taken in whatever else fails, so the replies it covers go.
        self.poll_group();
        if self.rewrite {
            let active = self.segments.get_mut(&self.active).expect("the active segment exists");
            if let Err(e) = active.file.truncate(self.unsynced_from).and_then(|_| active.file.append(&self.unsynced)) {
                self.failed = true;
                self.counters.write_errors += 1;
                return Err(e);
            }
            self.rewrite = false;
            self.dirty = true;
        }
        if !self.pending.is_empty() {
            let active = self.segments.get_mut(&self.active).expect("the active segment exists");
            if let Err(e) = active.file.append(&self.pending) {
                self.failed = true;
                self.counters.write_errors += 1;
                // A partial write leaves bytes we do not account for: cut back to what we know.
                let _ = active.file.truncate(active.len);
                return Err(e);
            }
            active.len += self.pending.len() as u64;
            if self.config.fsync == Fsync::Always {
                self.unsynced.extend_from_slice(&self.pending);
                self.sync_rounds.written += 1;
            }
            self.pending.clear();
            self.dirty = true;
        }
        let due = match self.config.fsync {
            Fsync::Always => true,
            Fsync::EverySec => self.failed || self.last_sync.elapsed() >= Duration::from_secs(1),
            Fsync::Never => false,
        };
        if self.dirty && due && self.group.is_some() && !self.failed {
            // Group commit: start an fsync unless one runs (then the next turn starts one
            // for everything written meanwhile, once this one is done).
            let idle = self.group.as_ref().is_some_and(GroupCommit::is_idle);
            if idle {
                let (round, mark) = (self.sync_rounds.written, self.active().len);
                let started = self.active().file.sync_handle().and_then(|h| match &mut self.group {
                    Some(g) => g.start(h, round, mark),
                    None => Ok(()),
                });
                match started {
                    Ok(()) => self.dirty = false,
                    Err(e) => {
                        log::warn!("shard {}: fsync on the event loop ({e})", self.config.shard);
                        self.sync()?;
                    }
                }
            }
        } else if self.dirty && due {
            let handle = match &self.syncer {
                Some(_) if !self.failed => self.active().file.sync_handle().ok(),
                _ => None,
            };
            match (&self.syncer, handle) {
                // Hand the fsync to the syncer unless one is still running (then next turn).
                (Some(s), Some(handle)) => {
                    if s.jobs.try_send(handle).is_ok() {
                        self.dirty = false;
                        self.last_sync = Instant::now();
                    }
                }
                _ => {
                    self.sync()?;
                    if let Some(s) = &self.syncer {
                        s.state.failed.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
        self.failed = false;
        Ok(())
    }

    /// fsyncs the active segment. When it fails the kernel may have dropped the dirty pages,
    /// so under `Always` the unsynced bytes are cut off and written again before a retry.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(g) = &self.group {
            g.wait();
            self.poll_group();
        }
        if self.rewrite {
            // The file is shorter than what the keydir points into: no sync can make it whole.
            return Err(io::Error::other("the unsynced bytes are still to be written again"));
        }
        let started = Instant::now();
        let active = self.segments.get_mut(&self.active).expect("the active segment exists");
        match active.file.sync() {
            Ok(()) => {
                let took = started.elapsed();
                self.counters.fsyncs += 1;
                self.counters.fsync_micros += took.as_micros() as u64;
                self.fsync_times.record(took);
                self.sync_rounds.durable = self.sync_rounds.written;
                self.dirty = false;
                self.last_sync = Instant::now();
                self.unsynced.clear();
                self.unsynced_from = active.len;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                self.sync_rounds.failed = self.sync_rounds.written;
                self.counters.fsync_errors += 1;
                if self.config.fsync == Fsync::Always {
                    let redo = active.file.truncate(self.unsynced_from).and_then(|_| active.file.append(&self.unsynced));
                    // The keydir points into those bytes: they must reach the file.
                    self.rewrite = redo.is_err();
                }
                Err(e)
            }
        }
    }

    /// Closes the active segment (write, sync, hint) and starts the next.
    pub fn roll(&mut self) -> io::Result<()> {
        self.commit()?;
        // With an fsync in flight on the commit thread, sync here all the same: the next
        // segment's unsynced bytes are counted from its start.
        if self.dirty || self.config.fsync != Fsync::Always || self.group.is_some() {
            self.sync()?;
        }
        let closed = self.active().name;
        let hint = self.hint.take();
        if let Err(e) = self.start_segment(self.active + 1) {
            self.hint = hint;
            return Err(e);
        }
        if let Some(s) = self.segments.get_mut(&closed.id) {
            s.file.seal();
        }
        self.counters.segments_rolled += 1;
        let (fs, dir) = (self.fs.clone(), self.config.dir.clone());
        // Hints are an optimisation: written off the event loop, checked when read.
        std::thread::Builder::new()
            .name("caskade-hint".into())
            .spawn(move || {
                let written = match hint {
                    Some(hint) => fs.write_atomic(&closed.hint_path(&dir), &hint.finish()),
                    None => write_hint(&*fs, &dir, closed),
                };
                if let Err(e) = written {
                    log::warn!("hint for {} not written: {e}", closed.file_name());
                }
            })
            .map(|_| ())
    }

    /// Reads the record at `loc` (`len` bytes in all) and checks its checksum.
    pub fn read(&mut self, loc: Location, len: u32) -> io::Result<Record<'_>> {
        let segment = self.segments.get(&loc.segment).ok_or_else(|| io::Error::other("record in a segment that is gone"))?;
        let (start, len) = (loc.offset as u64, len as usize);
        let buf: &[u8] = if loc.segment == self.active && start >= segment.len {
            let from = (start - segment.len) as usize;
            self.pending.get(from..from + len).ok_or_else(|| io::Error::other("record beyond the log"))?
        } else {
            self.scratch.resize(len, 0);
            segment.file.read_at(&mut self.scratch, start)?;
            &self.scratch
        };
        match record::decode(buf) {
            Ok((r, _)) => Ok(r),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("record at {}:{start}: {e:?}", loc.segment))),
        }
    }

    /// Writes everything, syncs, and writes the active segment's hint (a clean stop).
    pub fn close(&mut self) -> io::Result<()> {
        self.commit()?;
        self.sync()?;
        if let Some(s) = self.segments.get_mut(&self.active) {
            s.file.seal();
        }
        let name = self.active().name;
        match self.hint.take() {
            Some(hint) => self.fs.write_atomic(&name.hint_path(&self.config.dir), &hint.finish()),
            None => write_hint(&*self.fs, &self.config.dir.clone(), name),
        }
    }

    /// Replaces segments `first..=last` by `merged` (already renamed into place), and
    /// deletes their files and hints.
    pub fn swap_merged(&mut self, merged: Segment) -> io::Result<()> {
        let (first, last) = (merged.first, merged.name.id);
        let old: Vec<u32> = self.segments.range(first..=last).map(|(&id, _)| id).collect();
        self.segments.insert(last, merged);
        for id in old {
            if id == last {
                continue;
            }
            if let Some(s) = self.segments.remove(&id) {
                self.fs.remove(&s.name.hint_path(&self.config.dir))?;
                self.fs.remove(&s.name.path(&self.config.dir))?;
            }
        }
        Ok(())
    }

    pub fn segment(&self, id: u32) -> Option<&Segment> {
        self.segments.get(&id)
    }

    /// The id of the oldest segment.
    pub fn oldest_id(&self) -> u32 {
        self.segments.keys().next().copied().unwrap_or(self.active)
    }

    pub fn fs(&self) -> &SharedFs {
        &self.fs
    }

    pub fn active_id(&self) -> u32 {
        self.active
    }
}

/// Bytes of a segment [`write_hint`] reads at a time.
const HINT_READ_CHUNK: usize = 1 << 20;

/// Reads a closed segment, a chunk at a time, and writes its hint file beside it.
pub fn write_hint(fs: &dyn super::fs::Fs, dir: &Path, name: SegmentName) -> io::Result<()> {
    let file = fs.open(&name.path(dir))?;
    let len = file.len()?;
    let mut hint = HintWriter::new(name);
    // `buf` holds the file from offset `at` on; `pos` is the next record in it.
    let (mut buf, mut at, mut pos) = (Vec::new(), SEGMENT_HEADER_LEN as u64, 0usize);
    loop {
        while pos < buf.len() {
            match record::decode(&buf[pos..]) {
                Ok((r, n)) => {
                    hint.add((at + pos as u64) as u32, &buf[pos..], r.key.len());
                    pos += n;
                }
                Err(record::RecordError::Truncated) => break,
                // A damaged record: leave this segment to a full scan at start-up.
                Err(record::RecordError::Corrupt(_)) => return Ok(()),
            }
        }
        buf.drain(..pos);
        at += pos as u64;
        pos = 0;
        let end = at + buf.len() as u64;
        if end >= len {
            if !buf.is_empty() {
                // A record cut short at the end: the same.
                return Ok(());
            }
            break;
        }
        // A chunk, or as much again as is buffered when one record is larger than that.
        let more = (HINT_READ_CHUNK.max(buf.len()) as u64).min(len - end) as usize;
        let from = buf.len();
        buf.resize(from + more, 0);
        file.read_at(&mut buf[from..], end)?;
    }
    fs.write_atomic(&name.hint_path(dir), &hint.finish())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::disk::fs::RealFs;

    /// The hint built as records are appended is the one a read of the closed segment gives.
    #[test]
    fn the_hint_built_while_appending_matches_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let fs: SharedFs = Arc::new(RealFs);
        let config = LogConfig {
            dir: dir.path().to_path_buf(),
            shard: 0,
            segment_size: 64 << 20,
            fsync: Fsync::Never,
            compress_min: 0,
        };
        let mut log = Log::open(fs.clone(), config, Vec::new()).unwrap();
        for i in 0..500u64 {
            let key = format!("key:{i}");
            // Some values larger than a read chunk, so records straddle chunks.
            let len = if i % 97 == 0 { HINT_READ_CHUNK + 4321 } else { (i as usize * 7) % 300 };
            let value = vec![b'a' + (i % 26) as u8; len];
            let meta = Meta { partition: (i % 1024) as u16, flags: i as u32, seqno: i, cas: i + 1, expiry: 0 };
            let kind = if i % 10 == 9 { Kind::Delete } else { Kind::Put };
            log.append(kind, &meta, key.as_bytes(), if kind == Kind::Put { &value } else { b"" }).unwrap();
            if i % 50 == 0 {
                log.commit().unwrap();
            }
        }
        let name = log.active().name;
        log.close().unwrap();
        let built = std::fs::read(name.hint_path(dir.path())).unwrap();
        std::fs::remove_file(name.hint_path(dir.path())).unwrap();
        write_hint(&*fs, dir.path(), name).unwrap();
        let read_back = std::fs::read(name.hint_path(dir.path())).unwrap();
        assert_eq!(built.len(), read_back.len());
        assert!(built == read_back, "the hints differ");

        // A segment whose last record is cut short gets no hint: start-up scans it.
        std::fs::remove_file(name.hint_path(dir.path())).unwrap();
        let seg = std::fs::OpenOptions::new().write(true).open(name.path(dir.path())).unwrap();
        let len = seg.metadata().unwrap().len();
        seg.set_len(len - 10).unwrap();
        write_hint(&*fs, dir.path(), name).unwrap();
        assert!(!name.hint_path(dir.path()).exists(), "a hint for a torn segment");
    }
}
