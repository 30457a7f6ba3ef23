//! One replication stream: a primary core's changes for the partitions one backup core holds,
//! and the backup's side of the same rules ([`check`]). No I/O: the event loop says when the
//! link is up, hands in the answers, and sends the frames this returns.
//!
//! A stream is `Down` until its link is up; it then sends REPL_OPEN and waits (`Opening`).
//! The backup's answer sets each partition's mode: `Live` from the backup's seqno when the
//! backlog covers it, else a backfill from that seqno when [`Backfill`](super::backfill::Backfill) still can, else a
//! full resync. `Running`, it fills frames of records from its
//! cursor in the backlog (each partition's changes in seqno order, flush markers where they
//! happened) while fewer than `window` bytes are unacknowledged. A full resync (one at a
//! time per stream, for every partition that needs it) writes SNAPSHOT_BEGIN, the live items
//! a slice at a time (the scan the caller runs), SNAPSHOT_END at the seqno each partition
//! had when it began, then rewinds the cursor to the changes made since. A backfill is the
//! same with the copy kept: SNAPSHOT_BEGIN flagged [`SNAPSHOT_BACKFILL`], the state now of
//! every noted key newer than the backup's seqno (the item, or SNAPSHOT_DELETE), the items
//! whose CAS is above what the backup's seqno had, SNAPSHOT_END, the changes made since.
//!
//! Any refusal, bad answer or link failure puts the stream `Down`; it opens again from what
//! the backup then says it holds, so nothing is applied twice or out of order.

use std::collections::VecDeque;

use super::backlog::{Backlog, EntryKind};
use crate::cluster::{PartitionSet, PARTITIONS};
use crate::protocol::peer::repl::{status, Digest, Position, Record, RecordType, SNAPSHOT_BACKFILL};

/// Bytes of records a frame takes before it is sent (one larger item may overshoot it).
pub const FRAME_BYTES: usize = 256 * 1024;
/// Unacknowledged bytes a stream may have on its link.
pub const WINDOW_BYTES: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    Down,
    Opening,
    Running,
}

/// A frame awaiting its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flight {
    Open,
    /// REPL_CHANGES of this many bytes, and when its oldest change (not snapshot items) was
    /// committed.
    Changes { bytes: usize, oldest_us: Option<u64> },
    Verify,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Live,
    NeedResync,
    /// A backfill from the backup's seqno.
    NeedBackfill,
    Resyncing,
}

struct Resync {
    set: PartitionSet,
    /// Each partition's seqno when the snapshot began.
    high: Vec<(u16, u64)>,
    /// The slot the scan goes on from (`None`: done).
    next: Option<u64>,
    /// The backlog index of the first change made after the snapshot began.
    resume: u64,
    /// A backfill: per partition, the CAS an item must be above to be sent (`u64::MAX` for
    /// those not in `set`), and the next note to look at.
    backfill: Option<(Box<[u64]>, u64)>,
    /// Partitions a noted key of could not be read: resynced in full instead.
    failed: PartitionSet,
}

/// Counters a stream keeps for `stats cluster`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCounters {
    pub opens: u64,
    pub partial_catchups: u64,
    pub resyncs: u64,
    pub backfills: u64,
    /// Keys sent by backfills because a note named them (deleted or touched).
    pub noted_keys: u64,
    pub frames: u64,
    pub bytes: u64,
    pub records: u64,
    pub snapshot_items: u64,
    /// Verifications answered, partitions compared, and those found to differ (each then
    /// resynced).
    pub verifies: u64,
    pub verified_partitions: u64,
    pub mismatches: u64,
}

pub struct Stream {
    /// The backup node (its index in the map) and core.
    pub node: usize,
    pub core: u16,
    pub partitions: PartitionSet,
    state: StreamState,
    cursor: u64,
    sent: Vec<u64>,
    acked: Vec<u64>,
    /// Per partition: the seqno REPL_CHANGES answers since the last OPEN confirm. Only these
    /// count for durable writes: a backup answers CHANGES after its own commit (and fsync
    /// when asked), while its OPEN answer says what it holds, committed or not.
    confirmed: Vec<u64>,
    mode: Vec<Mode>,
    /// Whole copies accepted from another branch of the primary's history: told the current
    /// one before their next change.
    rebranch: PartitionSet,
    resync: Option<Resync>,
    /// The frames in flight, in order.
    in_flight: VecDeque<Flight>,
    unacked: usize,
    /// Frames sent on the link whose answers have not been taken yet, of any opening.
    outstanding: usize,
    /// How many of those were sent before the stream last went down with the link up: they
    /// belong to no frame of this opening and are dropped unread.
    stale: usize,
    window: usize,
    /// Why the stream last went down.
    pub last_error: Option<String>,
    pub counters: StreamCounters,
    /// Milliseconds (the caller's clock) of the last acknowledgement.
    pub last_ack_ms: u64,
    /// The primary's digests sent with each verification in flight, in order.
    verifying: VecDeque<Vec<(u16, u64, u64, u32)>>,
    /// The last verification round this stream has answered (`Cluster::verify_requested`).
    pub verified_round: u64,
    /// The round of the verification in flight.
    verify_round: u64,
}

/// What the caller reads from the shard for a full resync or a backfill. Items changed
/// meanwhile may be seen or not: the changes replayed after the snapshot make the copy right
/// either way.
pub trait Snapshot {
    /// Appends SNAPSHOT_ITEM records of the live items of `set` from slot `from` on, about
    /// `budget` bytes, to `out`; with `above`, only the items of partition `p` whose CAS is
    /// above `above[p]`. Returns the slot to go on from (`None` at the end) and the items
    /// written.
    fn items(&mut self, set: &PartitionSet, above: Option<&[u64]>, from: u64, budget: usize, out: &mut Vec<u8>) -> (Option<u64>, u64);
    /// Appends `key`'s state now: a SNAPSHOT_ITEM if it lives, else a SNAPSHOT_DELETE.
    /// `false`: it cannot be read (a disk error), and the copy cannot be made whole this way.
    fn key(&mut self, partition: u16, key: &[u8], out: &mut Vec<u8>) -> bool;
}

pub type Scan<'a> = dyn Snapshot + 'a;

impl Stream {
    pub fn new(node: usize, core: u16, partitions: PartitionSet) -> Stream {
        let n = PARTITIONS as usize;
        Stream {
            node,
            core,
            partitions,
            state: StreamState::Down,
            cursor: 0,
            sent: vec![0; n],
            acked: vec![0; n],
            confirmed: vec![0; n],
            mode: vec![Mode::NeedResync; n],
            rebranch: PartitionSet::empty(),
            resync: None,
            in_flight: VecDeque::new(),
            unacked: 0,
            outstanding: 0,
            stale: 0,
            window: WINDOW_BYTES,
            last_error: None,
            counters: StreamCounters::default(),
            last_ack_ms: 0,
            verifying: VecDeque::new(),
            verified_round: 0,
            verify_round: 0,
        }
    }

    pub fn state(&self) -> StreamState {
        self.state
    }

    /// Whether a full resync is under way.
    pub fn resyncing(&self) -> bool {
        self.resync.is_some() || self.partitions.iter().any(|p| self.mode[p as usize] != Mode::Live)
    }

    /// What a running stream is doing, for `stats cluster`: "resyncing" while a full resync
    /// is under way or due, else "backfilling" while a backfill is, else "live".
    pub fn phase(&self) -> &'static str {
        let due = |m: Mode| self.partitions.iter().any(|p| self.mode[p as usize] == m);
        match &self.resync {
            Some(r) if r.backfill.is_none() => "resyncing",
            _ if due(Mode::NeedResync) => "resyncing",
            Some(_) => "backfilling",
            None if due(Mode::NeedBackfill) => "backfilling",
            None => "live",
        }
    }

    /// The link is up: the set to name in a REPL_OPEN.
    pub fn open(&mut self) -> PartitionSet {
        self.state = StreamState::Opening;
        self.in_flight.clear();
        self.verifying.clear();
        self.in_flight.push_back(Flight::Open);
        self.outstanding += 1;
        self.unacked = 0;
        self.resync = None;
        self.counters.opens += 1;
        self.partitions
    }

    /// The backup refused something, or answered out of turn: everything in flight is void,
    /// and its answers, still to come on the same link, are [`stale`](Self::stale_answer).
    /// When the link itself failed, call [`link_lost`](Self::link_lost) too.
    pub fn down(&mut self, why: String) {
        self.stale = self.outstanding;
        self.state = StreamState::Down;
        self.in_flight.clear();
        self.verifying.clear();
        self.unacked = 0;
        self.resync = None;
        self.last_error = Some(why);
    }

    /// The link failed or was made again: no answer to an earlier frame will come.
    pub fn link_lost(&mut self) {
        self.outstanding = 0;
        self.stale = 0;
    }

    /// Takes note of an answer from the link (call it for every one, first) and says
    /// whether it is for a frame sent before the stream last went down (drop it): an answer
    /// from then must not count for this opening, above all not as an acknowledgement a
    /// durable write relies on.
    pub fn stale_answer(&mut self) -> bool {
        self.outstanding = self.outstanding.saturating_sub(1);
        let stale = self.stale > 0;
        self.stale = self.stale.saturating_sub(1);
        stale
    }

    /// The backup's answer to REPL_OPEN.
    pub fn on_open(&mut self, positions: &[Position], backlog: &Backlog, now_ms: u64) -> Result<(), String> {
        if self.state != StreamState::Opening || self.in_flight.pop_front() != Some(Flight::Open) {
            return Err("an OPEN answer out of turn".into());
        }
        let mut seen = PartitionSet::empty();
        for pos in positions {
            if !self.partitions.contains(pos.partition) {
                return Err(format!("the OPEN answer names partition {} the stream does not carry", pos.partition));
            }
            seen.insert(pos.partition);
            let p = pos.partition as usize;
            // What the backup holds counts for durable writes only when it is a prefix of
            // this primary's history: a copy ahead of it (the primary lost its tail: a power
            // loss under everysec) holds other changes under the seqnos this primary gives
            // next, and is resynced.
            self.acked[p] = 0;
            self.confirmed[p] = 0;
            self.rebranch.remove(pos.partition);
            // A copy whose history is not a prefix of this primary's (another branch past
            // where it was cut, or ahead of it) is resynced in full.
            let prefix = pos.whole && backlog.history.is_prefix(pos.branch, pos.partition, pos.seqno, backlog.last(pos.partition));
            if prefix && pos.branch != backlog.history.current() {
                self.rebranch.insert(pos.partition);
            }
            if prefix && backlog.covers(pos.partition, pos.seqno) {
                self.acked[p] = pos.seqno;
                self.mode[p] = Mode::Live;
                self.sent[p] = pos.seqno;
                if pos.seqno < backlog.last(pos.partition) {
                    self.counters.partial_catchups += 1;
                }
            } else if prefix && backlog.backfill.since(pos.partition, pos.seqno, backlog.last(pos.partition)).is_some() {
                self.mode[p] = Mode::NeedBackfill;
                self.sent[p] = pos.seqno;
            } else {
                self.mode[p] = Mode::NeedResync;
            }
        }
        if seen != self.partitions {
            return Err("the OPEN answer leaves partitions out".into());
        }
        self.cursor = backlog.base();
        self.state = StreamState::Running;
        self.last_ack_ms = now_ms;
        Ok(())
    }

    /// The backup's answer to REPL_CHANGES: where the partitions it named now stand. Returns
    /// when the oldest change it acknowledges was committed (the backlog's clock), if it
    /// carried changes: the caller's replication lag.
    pub fn on_ack(&mut self, positions: &[Position], now_ms: u64) -> Result<Option<u64>, String> {
        if self.state != StreamState::Running {
            return Err("an acknowledgement out of turn".into());
        }
        let Some(Flight::Changes { bytes, oldest_us }) = self.in_flight.pop_front() else { return Err("an acknowledgement out of turn".into()) };
        self.unacked -= bytes;
        for pos in positions {
            if !self.partitions.contains(pos.partition) {
                return Err(format!("an acknowledgement of partition {} the stream does not carry", pos.partition));
            }
            let c = &mut self.confirmed[pos.partition as usize];
            *c = (*c).max(pos.seqno);
            let a = &mut self.acked[pos.partition as usize];
            *a = (*a).max(pos.seqno);
        }
        self.last_ack_ms = now_ms;
        Ok(oldest_us)
    }

    /// The next REPL_CHANGES value to send, if the window has room and there is something
    /// to send.
    pub fn next_frame(&mut self, backlog: &Backlog, scan: &mut Scan<'_>) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        self.next_frame_into(backlog, scan, &mut buf).then_some(buf)
    }

    /// [`next_frame`](Self::next_frame) into `buf` (cleared first), so that the caller can
    /// keep one buffer for every frame: a fresh 256 KiB one each time costs page faults.
    pub fn next_frame_into(&mut self, backlog: &Backlog, scan: &mut Scan<'_>, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        if self.state != StreamState::Running || self.unacked >= self.window {
            return false;
        }
        if !self.rebranch.is_empty() {
            // Before any change of those partitions; a backfill's or resync's end tells the
            // branch itself.
            let mut set = PartitionSet::empty();
            for p in self.rebranch.iter().filter(|&p| self.mode[p as usize] == Mode::Live) {
                set.insert(p);
            }
            if !set.is_empty() {
                let branch = backlog.history.current();
                Record { kind: RecordType::Branch, partition: 0, seqno: 0, cas: branch, flags: 0, expiry: 0, key: &set.0, value: b"" }.write(buf);
            }
            self.rebranch = PartitionSet::empty();
        }
        self.resync_step(backlog, scan, buf);
        let oldest_us = self.live_step(backlog, buf);
        if buf.is_empty() {
            return false;
        }
        self.in_flight.push_back(Flight::Changes { bytes: buf.len(), oldest_us });
        self.outstanding += 1;
        self.unacked += buf.len();
        self.counters.frames += 1;
        self.counters.bytes += buf.len() as u64;
        true
    }

    fn resync_step(&mut self, backlog: &Backlog, scan: &mut Scan<'_>, buf: &mut Vec<u8>) {
        if self.resync.is_none() {
            self.begin_snapshot(backlog, buf);
        }
        let Some(r) = self.resync.as_mut() else { return };
        if let Some((above, note)) = r.backfill.as_mut() {
            // The noted keys first: each one's state now.
            let fill = &backlog.backfill;
            *note = (*note).max(fill.first_note());
            // Bounded per frame: most notes may be other streams' partitions.
            let stop = note.saturating_add(1 << 16);
            while *note < fill.end_note() && *note < stop && buf.len() < FRAME_BYTES {
                if let Some((p, seqno, key)) = fill.note(*note) {
                    if r.set.contains(p) && seqno > self.sent[p as usize] {
                        if !scan.key(p, key, buf) {
                            r.failed.insert(p);
                        }
                        self.counters.noted_keys += 1;
                    }
                }
                *note += 1;
            }
            if *note < fill.end_note() {
                return;
            }
            if let Some(from) = r.next {
                let (next, items) = scan.items(&r.set, Some(above), from, FRAME_BYTES.saturating_sub(buf.len()), buf);
                r.next = next;
                self.counters.snapshot_items += items;
            }
        } else if let Some(from) = r.next {
            let (next, items) = scan.items(&r.set, None, from, FRAME_BYTES.saturating_sub(buf.len()), buf);
            r.next = next;
            self.counters.snapshot_items += items;
        }
        if r.next.is_some() {
            return;
        }
        let r = self.resync.take().expect("a resync is under way");
        // Every change made since the snapshot began is still in the backlog when its first
        // one is (`covers` alone cannot tell a flush before the snapshot from one during it).
        let kept = r.resume >= backlog.base();
        for (p, high) in r.high {
            // A backfill needs every note after the backup's seqno: none purged meanwhile.
            let noted = r.backfill.is_none() || (backlog.backfill.floor(p) <= self.sent[p as usize] && !r.failed.contains(p));
            if noted && (kept || backlog.covers(p, high)) {
                // The copy now follows this primary's current branch.
                let branch = backlog.history.current();
                Record { kind: RecordType::SnapshotEnd, partition: p, seqno: high, cas: branch, flags: 0, expiry: 0, key: b"", value: b"" }.write(buf);
                self.mode[p as usize] = Mode::Live;
                self.sent[p as usize] = high;
            } else {
                // Changes made during the snapshot already left the backlog (or notes a
                // backfill needed were purged): a full resync.
                self.mode[p as usize] = Mode::NeedResync;
            }
        }
        self.cursor = self.cursor.min(r.resume);
    }

    /// Starts a full resync of the partitions that need one, or else a backfill of those
    /// that can have one.
    fn begin_snapshot(&mut self, backlog: &Backlog, buf: &mut Vec<u8>) {
        let mut full = PartitionSet::empty();
        let mut fill = PartitionSet::empty();
        for p in self.partitions.iter() {
            match self.mode[p as usize] {
                Mode::NeedResync => full.insert(p),
                Mode::NeedBackfill => fill.insert(p),
                _ => {}
            }
        }
        let backfill = full.is_empty();
        let set = if backfill { fill } else { full };
        if set.is_empty() {
            return;
        }
        let mut above = None;
        if backfill {
            let mut a = vec![u64::MAX; PARTITIONS as usize].into_boxed_slice();
            for p in set.iter() {
                match backlog.backfill.since(p, self.sent[p as usize], backlog.last(p)) {
                    Some(cas) => a[p as usize] = cas,
                    // Purged since the OPEN: resynced in full next.
                    None => self.mode[p as usize] = Mode::NeedResync,
                }
            }
            above = Some(a);
        }
        let mut set = set;
        set = {
            let mut s = PartitionSet::empty();
            for p in set.iter().filter(|&p| self.mode[p as usize] != Mode::NeedResync || !backfill) {
                s.insert(p);
            }
            s
        };
        if set.is_empty() {
            return;
        }
        let high = set.iter().map(|p| (p, backlog.last(p))).collect();
        for p in set.iter() {
            self.mode[p as usize] = Mode::Resyncing;
        }
        let flags = if backfill { SNAPSHOT_BACKFILL } else { 0 };
        Record { kind: RecordType::SnapshotBegin, partition: 0, seqno: 0, cas: 0, flags, expiry: 0, key: &set.0, value: b"" }.write(buf);
        if backfill {
            self.counters.backfills += 1;
        } else {
            self.counters.resyncs += 1;
        }
        let backfill = above.map(|a| (a, backlog.backfill.first_note()));
        self.resync = Some(Resync { set, high, next: Some(0), resume: backlog.end(), backfill, failed: PartitionSet::empty() });
    }

    /// Appends the changes from the cursor on; returns when the first of them was committed.
    fn live_step(&mut self, backlog: &Backlog, buf: &mut Vec<u8>) -> Option<u64> {
        let mut oldest_us = None;
        if self.cursor < backlog.base() {
            for p in self.partitions.iter() {
                if self.mode[p as usize] == Mode::Live && !backlog.covers(p, self.sent[p as usize]) {
                    self.mode[p as usize] = Mode::NeedResync;
                }
            }
            self.cursor = backlog.base();
        }
        while self.cursor < backlog.end() && buf.len() < FRAME_BYTES {
            let Some(e) = backlog.get(self.cursor) else { break };
            self.cursor += 1;
            match e.kind {
                EntryKind::Flush => {
                    let Some(after) = e.after.as_ref() else { continue };
                    let mut set = PartitionSet::empty();
                    for p in self.partitions.iter() {
                        if self.mode[p as usize] == Mode::Live && self.sent[p as usize] <= after[p as usize] {
                            set.insert(p);
                        }
                    }
                    if !set.is_empty() {
                        Record { kind: RecordType::Flush, partition: 0, seqno: 0, cas: 0, flags: 0, expiry: 0, key: &set.0, value: b"" }.write(buf);
                        self.counters.records += 1;
                        oldest_us.get_or_insert(e.at_us);
                    }
                }
                EntryKind::Put | EntryKind::Delete => {
                    let p = e.partition as usize;
                    if !self.partitions.contains(e.partition) || self.mode[p] != Mode::Live || e.seqno <= self.sent[p] {
                        continue;
                    }
                    if e.seqno != self.sent[p] + 1 {
                        // A change the backlog never held (the primary's commit failed).
                        self.mode[p] = Mode::NeedResync;
                        continue;
                    }
                    let kind = if e.kind == EntryKind::Put { RecordType::Put } else { RecordType::Delete };
                    Record { kind, partition: e.partition, seqno: e.seqno, cas: e.cas, flags: e.flags, expiry: e.expiry, key: e.key(), value: e.value() }
                        .write(buf);
                    self.sent[p] = e.seqno;
                    self.counters.records += 1;
                    oldest_us.get_or_insert(e.at_us);
                }
            }
        }
        oldest_us
    }

    /// Whether a verification may be sent now: every change the backlog holds has been sent
    /// and no resync is under way, so the backup's copy, once it has applied what was sent,
    /// must equal the primary's as it is now.
    pub fn can_verify(&self, backlog: &Backlog) -> bool {
        self.state == StreamState::Running && self.cursor >= backlog.end() && !self.resyncing() && self.verifying.is_empty()
    }

    /// A REPL_VERIFY of the stream's partitions is being sent, with the primary's digests
    /// (partition, seqno, digest, items) now, for verification round `round`.
    pub fn verify_sent(&mut self, mine: Vec<(u16, u64, u64, u32)>, round: u64) {
        self.in_flight.push_back(Flight::Verify);
        self.outstanding += 1;
        self.verifying.push_back(mine);
        self.verify_round = round;
    }

    /// The backup's digests: the partitions whose copy differs from the primary's, now
    /// marked for a full resync (the repair).
    pub fn on_verify(&mut self, theirs: &[Digest]) -> Result<Vec<u16>, String> {
        let (Some(Flight::Verify), Some(mine)) = (self.in_flight.pop_front(), self.verifying.pop_front()) else {
            return Err("a verification answer out of turn".into());
        };
        if theirs.len() != mine.len() {
            return Err("a verification answer of the wrong length".into());
        }
        let mut differ = Vec::new();
        for (&(p, seqno, digest, items), t) in mine.iter().zip(theirs) {
            if t.partition != p {
                return Err(format!("a verification answer for partition {} where {p} was asked", t.partition));
            }
            self.counters.verified_partitions += 1;
            if t.seqno != seqno || t.digest != digest || t.items != items {
                differ.push(p);
                self.counters.mismatches += 1;
                self.mode[p as usize] = Mode::NeedResync;
            }
        }
        self.counters.verifies += 1;
        self.verified_round = self.verify_round;
        Ok(differ)
    }

    /// Changes of `p` the backup has not acknowledged.
    pub fn lag(&self, backlog: &Backlog, p: u16) -> u64 {
        backlog.last(p).saturating_sub(self.acked[p as usize])
    }

    /// Whether `p`'s changes flow to the backup now (running, not being resynced).
    pub fn is_live(&self, p: u16) -> bool {
        self.state == StreamState::Running && self.mode[p as usize] == Mode::Live
    }

    pub fn acked(&self, p: u16) -> u64 {
        self.acked[p as usize]
    }

    /// What the backup has confirmed of `p` in REPL_CHANGES answers since the stream last
    /// opened: what a durable write may count on.
    pub fn confirmed(&self, p: u16) -> u64 {
        self.confirmed[p as usize]
    }

    pub fn unacked_bytes(&self) -> usize {
        self.unacked
    }
}

/// Where a backup's copy of a partition stands, as [`check`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copy {
    pub seqno: u64,
    /// A full resync began and has not ended.
    pub incomplete: bool,
}

/// The backup's rule for one record of a partition it holds: a change must be the next seqno
/// of a whole copy; a snapshot item must belong to a resync under way; a snapshot end must
/// close one. `Err` gives the refusal's status and reason: the backup applies nothing more
/// of the frame, and the primary opens the stream again.
pub fn check(r: &Record<'_>, copy: Copy) -> Result<(), (u16, String)> {
    match r.kind {
        RecordType::Put | RecordType::Delete => {
            if copy.incomplete {
                return Err((status::BAD_SEQNO, format!("a change of partition {} during its resync", r.partition)));
            }
            if Some(r.seqno) != copy.seqno.checked_add(1) {
                return Err((status::BAD_SEQNO, format!("partition {}: seqno {} after {}", r.partition, r.seqno, copy.seqno)));
            }
            Ok(())
        }
        RecordType::SnapshotItem | RecordType::SnapshotDelete | RecordType::SnapshotEnd if !copy.incomplete => {
            Err((status::BAD_SEQNO, format!("a snapshot record for partition {} with no resync under way", r.partition)))
        }
        _ => Ok(()),
    }
}

