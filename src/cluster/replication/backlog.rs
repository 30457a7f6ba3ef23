//! A primary core's recent changes, bounded in bytes: what a backup that fell behind can be
//! sent without a full resync (Redis's replication backlog, Couchbase's checkpoints).
//!
//! Entries are kept in the order they happened, across every partition the core is primary
//! for. Each has an absolute index (`base` + position) that streams use as their cursor.
//! When the budget is exceeded the oldest entries go, and each partition remembers the
//! highest seqno it lost: a backup at seqno `S` of partition `p` can be caught up from here
//! exactly when `S >= evicted(p)` (every change after `S` is still here) and `S <= last(p)`
//! (the backup is not ahead of the primary).

use std::collections::VecDeque;

use super::backfill::Backfill;
use super::history::History;
use crate::cluster::PARTITIONS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Put,
    Delete,
    /// Every item of the core was dropped; `after[p]` is partition `p`'s seqno at that time.
    Flush,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub partition: u16,
    pub seqno: u64,
    pub cas: u64,
    pub flags: u32,
    pub expiry: u32,
    /// Key then value.
    pub data: Box<[u8]>,
    pub key_len: u16,
    /// A flush's position in each partition's order.
    pub after: Option<Box<[u64]>>,
    /// When the primary committed it (the caller's clock, µs; see [`Backlog::set_clock`]).
    pub at_us: u64,
}

impl Entry {
    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    fn cost(&self) -> usize {
        64 + self.data.len() + self.after.as_ref().map_or(0, |a| a.len() * 8)
    }
}

pub struct Backlog {
    entries: VecDeque<Entry>,
    base: u64,
    bytes: usize,
    budget: usize,
    /// Per partition: the highest seqno pushed.
    last: Vec<u64>,
    /// Per partition: the lowest seqno a backup must hold to be caught up from here.
    evicted: Vec<u64>,
    /// The time stamped on changes pushed now.
    clock_us: u64,
    /// What a backup older than the backlog's reach can be backfilled from.
    pub backfill: Backfill,
    /// The branches of this primary's history: which copies are prefixes of it.
    pub history: History,
}

impl Backlog {
    /// A backlog of at most `budget` bytes (about), for a core whose partitions stand at
    /// `last` (their seqnos when the node started).
    pub fn new(budget: usize, last: impl Fn(u16) -> u64) -> Backlog {
        let mut b = Backlog::with_backfill(budget, last, 0, 3600);
        // One branch, id 0: what a copy that never heard of a branch follows.
        b.history = History::single(0, &b.last);
        b
    }

    /// [`new`](Self::new) for a shard that has issued CAS values up to `cas`, keeping
    /// deletions for backfills `purge_after_s` seconds (within a quarter of `budget`).
    pub fn with_backfill(budget: usize, last: impl Fn(u16) -> u64, cas: u64, purge_after_s: u64) -> Backlog {
        let last: Vec<u64> = (0..PARTITIONS).map(last).collect();
        // What happened before this process started is not here.
        let evicted = last.clone();
        let backfill = Backfill::new(&last, cas, budget / 4, purge_after_s);
        Backlog { entries: VecDeque::new(), base: 0, bytes: 0, budget, last, evicted, clock_us: 0, backfill, history: History::default() }
    }

    /// The time (µs, the caller's clock) the changes pushed from now on were committed at:
    /// what replication lag is measured from.
    pub fn set_clock(&mut self, now_us: u64) {
        self.clock_us = now_us;
        self.backfill.purge(now_us);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn push(&mut self, kind: EntryKind, partition: u16, seqno: u64, cas: u64, flags: u32, expiry: u32, key: &[u8], value: &[u8]) {
        let after = match kind {
            EntryKind::Flush => {
                // The flushed items leave no note: a backfill cannot start before the flush.
                for (p, &a) in self.last.iter().enumerate() {
                    self.backfill.raise_floor(p as u16, a + 1);
                }
                Some(self.last.clone().into_boxed_slice())
            }
            _ => {
                let l = &mut self.last[partition as usize % PARTITIONS as usize];
                *l = (*l).max(seqno);
                self.backfill.change(partition, seqno, cas, kind == EntryKind::Delete, key, self.clock_us);
                None
            }
        };
        let data = [key, value].concat().into_boxed_slice();
        let e = Entry { kind, partition, seqno, cas, flags, expiry, data, key_len: key.len() as u16, after, at_us: self.clock_us };
        self.bytes += e.cost();
        self.entries.push_back(e);
        while self.bytes > self.budget && self.entries.len() > 1 {
            self.evict_front();
        }
    }

    /// A change the primary made but could not commit (its log failed): it was never
    /// streamed, so a backup that has the seqno before it can only be resynced.
    pub fn lost(&mut self, partition: u16, seqno: u64) {
        let p = partition as usize % PARTITIONS as usize;
        self.last[p] = self.last[p].max(seqno);
        self.evicted[p] = self.evicted[p].max(seqno);
        self.backfill.raise_floor(partition, seqno);
    }

    fn evict_front(&mut self) {
        let Some(e) = self.entries.pop_front() else { return };
        self.base += 1;
        self.bytes -= e.cost();
        match &e.after {
            // A backup at `after[p]` may or may not have applied the flush: resync it.
            Some(after) => {
                for (ev, a) in self.evicted.iter_mut().zip(after.iter()) {
                    *ev = (*ev).max(a + 1);
                }
            }
            None => {
                let ev = &mut self.evicted[e.partition as usize % PARTITIONS as usize];
                *ev = (*ev).max(e.seqno);
            }
        }
    }

    /// Whether a backup at `seqno` of `partition` can be caught up from here.
    pub fn covers(&self, partition: u16, seqno: u64) -> bool {
        let p = partition as usize % PARTITIONS as usize;
        seqno >= self.evicted[p] && seqno <= self.last[p]
    }

    /// Every partition's seqno now (where a new branch of the history begins).
    pub fn lasts(&self) -> &[u64] {
        &self.last
    }

    pub fn last(&self, partition: u16) -> u64 {
        self.last[partition as usize % PARTITIONS as usize]
    }

    /// The index of the oldest entry kept.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The index the next entry will get.
    pub fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        index.checked_sub(self.base).and_then(|i| self.entries.get(i as usize))
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_exactly_what_it_still_holds() {
        let mut b = Backlog::new(64 * 10 + 100, |p| if p == 1 { 5 } else { 0 });
        assert!(b.covers(1, 5) && !b.covers(1, 4) && !b.covers(1, 6), "only the starting point");
        for s in 6..=20 {
            b.push(EntryKind::Put, 1, s, s, 0, 0, b"k", b"");
        }
        // About 10 entries fit: the oldest went.
        assert!(b.end() - b.base() <= 11);
        let oldest = b.get(b.base()).unwrap().seqno;
        assert!(b.covers(1, oldest - 1) && !b.covers(1, oldest - 2));
        assert!(b.covers(1, 20) && !b.covers(1, 21));
        b.lost(1, 21);
        assert!(!b.covers(1, 20) && b.covers(1, 21));
    }

    #[test]
    fn an_evicted_flush_forces_a_resync_of_every_partition_it_touched() {
        let mut b = Backlog::new(1 << 20, |_| 0);
        b.push(EntryKind::Put, 2, 1, 1, 0, 0, b"k", b"v");
        b.push(EntryKind::Flush, 0, 0, 0, 0, 0, b"", b"");
        assert_eq!(b.get(1).unwrap().after.as_ref().unwrap()[2], 1);
        b.budget = 0;
        b.push(EntryKind::Put, 3, 1, 2, 0, 0, b"k", b"v");
        assert_eq!(b.base(), 2);
        assert!(!b.covers(2, 1), "a backup at 1 may not have seen the flush");
        assert!(!b.covers(7, 0));
    }
}
