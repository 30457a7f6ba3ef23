//! Merge compaction: rewrite the live records of a run of closed segments into one new
//! segment, in small steps on the shard's own thread, then swap it in atomically.
//!
//! A merge reads its inputs a window at a time ([`Merge::step`]); the caller decides from the
//! keydir whether each record is live and the merge copies the live ones verbatim (their
//! checksums stay valid) into `seg-<last>-<generation+1>.log.tmp`, building its hint as it
//! goes. Every input record, copied or not, raises the merge's [`Watermark`] (highest CAS,
//! highest seqno per partition); inputs' own watermarks are folded into it, never copied.
//! [`Merge::finish`] appends the watermark record, syncs the output, writes its hint, renames it into place and syncs
//! the directory; only then does the shard move its keys and delete the inputs. The output
//! stands where its inputs stood in the log (see protocol-spec/storage-format.md), so a crash
//! at any point leaves either the inputs, or the output with some leftover inputs that
//! start-up removes.

use std::io;
use std::path::{Path, PathBuf};

use super::fs::{tmp_path, LogFile, SharedFs};
use super::hint::HintWriter;
use super::log::Segment;
use super::record::{self, Kind, Record, RecordError};
use super::segment::{Location, SegmentHeader, SegmentName, SEGMENT_HEADER_LEN};
use super::watermark::Watermark;
use crate::storage::change::{flush_scope, PartitionSet};

/// When a run of closed segments is worth merging.
#[derive(Clone, Copy, Debug)]
pub struct MergePolicy {
    /// A segment joins a merge when at least this fraction of it is dead.
    pub dead_fraction: f64,
    /// ... and a merge starts only when its inputs hold at least this many dead bytes.
    pub min_dead_bytes: u64,
    /// The inputs' live bytes are at most this (keeps offsets and merge time bounded).
    pub max_live_bytes: u64,
    /// Input bytes examined per step (per event-loop turn).
    pub step_bytes: usize,
}

impl Default for MergePolicy {
    fn default() -> Self {
        MergePolicy { dead_fraction: 0.5, min_dead_bytes: 16 << 20, max_live_bytes: 128 << 20, step_bytes: 256 << 10 }
    }
}

/// The inputs a merge takes: a contiguous run of closed segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub inputs: Vec<SegmentName>,
    /// The lowest id the output stands for.
    pub first: u32,
    /// The run starts at the shard's oldest segment: no older record can need a tombstone.
    pub from_oldest: bool,
    /// Bytes of the watermark record ending the output (0 until the merge appends it): not
    /// dead, not live, and not worth merging again.
    pub watermark_len: u64,
}

/// Picks the first run of closed segments (all but `active`) that the policy says to merge.
pub fn plan<'a>(segments: impl Iterator<Item = &'a Segment>, active: u32, policy: &MergePolicy) -> Option<Plan> {
    let closed: Vec<&Segment> = segments.filter(|s| s.name.id != active).collect();
    let dead_enough = |s: &Segment| {
        let body = s.len.saturating_sub(SEGMENT_HEADER_LEN as u64);
        body > 0 && s.dead as f64 >= policy.dead_fraction * body as f64
    };
    let start = closed.iter().position(|s| dead_enough(s))?;
    let (mut live, mut dead, mut marks, mut inputs) = (0u64, 0u64, 0u64, Vec::new());
    for s in &closed[start..] {
        let body = s.len.saturating_sub(SEGMENT_HEADER_LEN as u64);
        let l = body.saturating_sub(s.dead);
        if !dead_enough(s) || (!inputs.is_empty() && live + l > policy.max_live_bytes) {
            break;
        }
        live += l;
        dead += s.dead;
        marks += s.marks;
        inputs.push(*s);
    }
    // Nothing dead but watermarks, nothing to gain (with a fraction and a minimum of 0,
    // merges would otherwise rewrite their own outputs forever).
    if dead < policy.min_dead_bytes || dead <= marks {
        return None;
    }
    Some(Plan {
        first: inputs.iter().map(|s| s.first).min()?,
        from_oldest: start == 0,
        watermark_len: 0,
        inputs: inputs.iter().map(|s| s.name).collect(),
    })
}

/// What the caller says of a record the merge found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Copy it; the tag comes back in its [`Moved`] (the shard passes its keydir slot).
    Keep(Option<usize>),
    Drop,
}

/// A record moved by the merge: where it was, where it is in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    pub from: Location,
    pub to: Location,
    /// The record's whole length.
    pub len: u32,
    pub tag: Option<usize>,
}

pub struct Merge {
    fs: SharedFs,
    dir: PathBuf,
    pub plan: Plan,
    pub output: SegmentName,
    out: Box<dyn LogFile>,
    out_len: u64,
    hint: HintWriter,
    /// Index into `plan.inputs` of the segment being read, and the offset reached in it.
    input: usize,
    offset: u64,
    window: Vec<u8>,
    /// Records copied, in output order, with the key of each (for the swap).
    pub moved: Vec<Moved>,
    pub bytes_read: u64,
    /// The highest CAS and seqnos of every input record, dropped ones included: written as
    /// the output's last record, so the counters recovery derives never go back.
    watermark: Watermark,
}

impl Merge {
    pub fn start(fs: SharedFs, dir: &Path, shard: u32, plan: Plan, next_generation: u32) -> io::Result<Merge> {
        let last = *plan.inputs.last().ok_or_else(|| io::Error::other("a merge needs inputs"))?;
        let output = SegmentName { id: last.id, generation: next_generation };
        let tmp = tmp_path(&output.path(dir));
        fs.remove(&tmp)?;
        let mut out = fs.create(&tmp)?;
        out.append(&SegmentHeader { name: output, first: plan.first, shard }.encode())?;
        Ok(Merge {
            fs,
            dir: dir.to_path_buf(),
            hint: HintWriter::new(output),
            plan,
            output,
            out,
            out_len: SEGMENT_HEADER_LEN as u64,
            input: 0,
            offset: SEGMENT_HEADER_LEN as u64,
            window: Vec::new(),
            moved: Vec::new(),
            bytes_read: 0,
            watermark: Watermark::default(),
        })
    }

    /// Examines up to `budget` bytes of input, asking `judge` about every record, and copies
    /// the kept ones. Returns `Ok(true)` once every input has been read.
    pub fn step<'a>(
        &mut self,
        budget: usize,
        inputs: impl Fn(u32) -> Option<(u64, &'a dyn LogFile)>,
        mut judge: impl FnMut(&Record<'_>, Location) -> Verdict,
    ) -> io::Result<bool> {
        let mut spent = 0;
        while spent < budget {
            let Some(&name) = self.plan.inputs.get(self.input) else { return Ok(true) };
            let (len, file) = inputs(name.id).ok_or_else(|| io::Error::other("a merge input is gone"))?;
            if self.offset >= len {
                self.input += 1;
                self.offset = SEGMENT_HEADER_LEN as u64;
                continue;
            }
            // Read a window; grow it when one record does not fit.
            let mut want = budget.max(64 << 10).min((len - self.offset) as usize);
            loop {
                self.window.resize(want, 0);
                file.read_at(&mut self.window, self.offset)?;
                match record::decode(&self.window) {
                    Err(RecordError::Truncated) if want < (len - self.offset) as usize => {
                        want = (want * 2).min((len - self.offset) as usize);
                    }
                    _ => break,
                }
            }
            let mut pos = 0;
            while pos < self.window.len() {
                let at = Location { segment: name.id, offset: (self.offset + pos as u64) as u32 };
                match record::decode(&self.window[pos..]) {
                    Ok((r, n)) => {
                        self.watermark.observe(&r.meta);
                        if r.kind == Kind::Flush && r.meta.flags == flush_scope::SNAPSHOT_BEGIN {
                            // The inputs are read in log order: what came before the resync
                            // no longer counts for those partitions.
                            match PartitionSet::from_bytes(r.key) {
                                Some(set) => self.watermark.restart(set.iter()),
                                None => log::error!("merge: snapshot record at {}:{} names no partition set", name.id, at.offset),
                            }
                        }
                        if r.kind == Kind::Watermark {
                            // An input's own watermark: folded into the output's.
                            match Watermark::decode(r.meta.cas, r.value) {
                                Ok(w) => self.watermark.absorb(&w),
                                Err(why) => log::error!("merge: watermark record at {}:{} unreadable ({why})", name.id, at.offset),
                            }
                        } else if let Verdict::Keep(tag) = judge(&r, at) {
                            let to = Location { segment: self.output.id, offset: self.out_len as u32 };
                            let bytes = &self.window[pos..pos + n];
                            self.out.append(bytes)?;
                            self.hint.add(self.out_len as u32, bytes, r.key.len());
                            self.out_len += n as u64;
                            self.moved.push(Moved { from: at, to, len: n as u32, tag });
                        }
                        pos += n;
                    }
                    Err(RecordError::Truncated) => break,
                    Err(RecordError::Corrupt(why)) => {
                        // Recovery already stepped over damage; a record damaged since is lost.
                        log::error!("merge: damaged record at {}:{} ({why}); skipping to the next", name.id, at.offset);
                        let next = (pos + 1..self.window.len()).find(|&p| record::decode(&self.window[p..]).is_ok());
                        pos = next.unwrap_or(self.window.len());
                    }
                }
            }
            if pos == 0 {
                // Not even one record in what is left: a damaged tail. Skip it.
                log::error!("merge: {} bytes at the end of segment {} are not a record", len - self.offset, name.id);
                pos = (len - self.offset) as usize;
            }
            self.offset += pos as u64;
            self.bytes_read += pos as u64;
            spent += pos;
        }
        Ok(self.input >= self.plan.inputs.len())
    }

    /// Makes the output durable and puts it in place. The caller then moves its keys and
    /// calls `Log::swap_merged` with the returned segment.
    pub fn finish(mut self) -> io::Result<(Segment, Vec<Moved>, Plan)> {
        self.append_watermark()?;
        self.out.sync()?;
        self.out.seal();
        let hint = std::mem::replace(&mut self.hint, HintWriter::new(self.output)).finish();
        self.fs.write_atomic(&self.output.hint_path(&self.dir), &hint)?;
        let path = self.output.path(&self.dir);
        self.fs.rename(&tmp_path(&path), &path)?;
        self.fs.sync_dir(&self.dir)?;
        let out = self.fs.open(&path)?;
        Ok((
            Segment { name: self.output, first: self.plan.first, file: out, len: self.out_len, dead: 0, marks: self.plan.watermark_len },
            self.moved,
            self.plan,
        ))
    }

    /// Ends the output with the merge's watermark record, if it saw any record.
    fn append_watermark(&mut self) -> io::Result<()> {
        if !self.watermark.is_empty() {
            let meta = record::Meta { cas: self.watermark.cas, ..record::Meta::default() };
            let value = self.watermark.encode_value();
            let mut bytes = Vec::with_capacity(record::record_len(0, value.len()));
            record::encode(&mut bytes, Kind::Watermark, &meta, b"", &value, false, value.len() as u32);
            self.out.append(&bytes)?;
            self.hint.add(self.out_len as u32, &bytes, 0);
            self.out_len += bytes.len() as u64;
            self.plan.watermark_len = bytes.len() as u64;
        }
        Ok(())
    }

    /// [`finish`](Self::finish) off the event loop: the output, its hint, the rename and the
    /// directory, in the same order, on a thread of their own. The caller syncs the log's
    /// active segment first, on its own file handle (the records that made the inputs'
    /// records dead must be durable before the output replaces the inputs; and an fsync
    /// error is reported to one handle only, so the log must be the one to see it).
    pub fn finish_off_loop(mut self) -> io::Result<Finishing> {
        self.append_watermark()?;
        let hint = std::mem::replace(&mut self.hint, HintWriter::new(self.output)).finish();
        let (fs, dir, output, mut out) = (self.fs.clone(), self.dir.clone(), self.output, self.out);
        let thread = std::thread::Builder::new().name("caskade-merge".into()).spawn(move || {
            out.sync()?;
            out.seal();
            fs.write_atomic(&output.hint_path(&dir), &hint)?;
            let path = output.path(&dir);
            fs.rename(&tmp_path(&path), &path)?;
            fs.sync_dir(&dir)?;
            fs.open(&path)
        })?;
        Ok(Finishing {
            thread,
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            output,
            first: self.plan.first,
            out_len: self.out_len,
            moved: self.moved,
            plan: self.plan,
            bytes_read: self.bytes_read,
        })
    }

    /// Gives up: removes the unfinished output.
    pub fn abandon(self) {
        let tmp = tmp_path(&self.output.path(&self.dir));
        if let Err(e) = self.fs.remove(&tmp) {
            log::warn!("cannot remove {}: {e}", tmp.display());
        }
    }
}

/// Whether a record must survive a merge, by the rules of protocol-spec/storage-format.md.
/// `live` tells whether the keydir points at this very record.
pub fn keep(kind: Kind, live: bool, expired: bool, flush_pending: bool, from_oldest: bool) -> Verdict {
    let keep = match kind {
        // A live put is kept; an expired live one only while an older put of its key could
        // sit in a segment before the merge (it shadows it).
        Kind::Put => live && (!expired || !from_oldest),
        // Tombstones shadow older puts; from the oldest segment there are none.
        Kind::Delete => !from_oldest,
        // A flush still to come must survive; a past one only shadows older segments.
        Kind::Flush => flush_pending || !from_oldest,
        // `Merge::step` folds watermarks into the output's own and never asks.
        Kind::Watermark => false,
    };
    if keep {
        Verdict::Keep(None)
    } else {
        Verdict::Drop
    }
}

/// A merge whose output is being synced and renamed into place off the event loop.
pub struct Finishing {
    thread: std::thread::JoinHandle<io::Result<Box<dyn LogFile>>>,
    fs: SharedFs,
    dir: PathBuf,
    output: SegmentName,
    first: u32,
    out_len: u64,
    moved: Vec<Moved>,
    pub plan: Plan,
    pub bytes_read: u64,
}

impl Finishing {
    pub fn is_done(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread; the output segment, in place, as [`Merge::finish`] gives it.
    pub fn join(self) -> io::Result<(Segment, Vec<Moved>, Plan)> {
        let joined = self.thread.join().unwrap_or_else(|_| Err(io::Error::other("the merge thread panicked")));
        let file = match joined {
            Ok(file) => file,
            Err(e) => {
                // Whatever got in place goes: an output left beside its inputs would stand for
                // them at the next start, with a generation a later merge could repeat.
                let path = self.output.path(&self.dir);
                for p in [tmp_path(&path), path, self.output.hint_path(&self.dir)] {
                    let _ = self.fs.remove(&p);
                }
                let _ = self.fs.sync_dir(&self.dir);
                return Err(e);
            }
        };
        let marks = self.plan.watermark_len;
        Ok((Segment { name: self.output, first: self.first, file, len: self.out_len, dead: 0, marks }, self.moved, self.plan))
    }
}
