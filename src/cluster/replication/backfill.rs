//! What a backfill needs: the middle tier of catch-up, between the backlog (every change,
//! recent) and a full resync (every item). A backup at seqno `S` of partition `p`, older than
//! the backlog reaches, is sent the current state of every key that may have changed after
//! `S`, between snapshot markers, then the changes made since (Couchbase's backfill of a
//! vBucket from a seqno, DCP's deletions kept as tombstones until the purge interval).
//!
//! Items carry no seqno, but each carries its CAS, and a primary gives every stored item a
//! fresh CAS above every CAS its shard has seen: within a partition, CAS grows with seqno. So
//! a **mark** `(s, c)` says "every change of `p` after seqno `s` that stored a fresh CAS has a
//! CAS above `c`", and the items changed after `S` are among those whose CAS is above the
//! `c` of the newest mark at or before `S` (a superset: the coarser the marks, the more is
//! sent again, never less). The changes that leave no new CAS behind (deletions and
//! touches) are kept as **notes**: (partition, seqno, key), for `purge_after` seconds and
//! within a byte budget. For each note newer than `S` the backfill sends the key's state now:
//! the item if it lives, else a deletion.
//!
//! A backup older than what is kept cannot be backfilled, and gets a full resync: the
//! partition's **floor** is the lowest seqno a backfill can start from. It is raised when a
//! note is purged (a backup before it would miss that deletion), by a flush (the flushed
//! items leave no note), by a change that was never committed, and it starts at the seqno the
//! partition had when this process started (notes are not kept across restarts).
//!
//! No I/O: the stream reads these figures; the caller reads the shard.

use std::collections::VecDeque;

use crate::cluster::PARTITIONS;

/// Marks kept per partition; past it every other one goes and the spacing doubles.
const MARKS: usize = 32;
/// Changes between two marks, at first.
const FIRST_STEP: u64 = 64;

struct Note {
    partition: u16,
    seqno: u64,
    at_us: u64,
    key: Box<[u8]>,
}

impl Note {
    fn cost(&self) -> usize {
        48 + self.key.len()
    }
}

pub struct Backfill {
    /// Per partition: the lowest seqno a backfill can start from.
    floor: Vec<u64>,
    /// Per partition: marks (seqno, CAS), oldest first.
    marks: Vec<Vec<(u64, u64)>>,
    step: Vec<u64>,
    /// Per partition: the highest CAS of a change seen.
    max_cas: Vec<u64>,
    /// Deletions and touches, oldest first; `first_note` is the index of the front one.
    notes: VecDeque<Note>,
    first_note: u64,
    bytes: usize,
    budget: usize,
    purge_after_us: u64,
}

impl Backfill {
    /// For a core whose partitions stand at `last(p)` and whose shard has issued CAS values up
    /// to `cas`: notes of at most `budget` bytes, each kept `purge_after_s` seconds.
    pub fn new(last: &[u64], cas: u64, budget: usize, purge_after_s: u64) -> Backfill {
        Backfill {
            floor: last.to_vec(),
            // Every change from now on gets a CAS above `cas`, or a note.
            marks: last.iter().map(|&s| vec![(s, cas)]).collect(),
            step: vec![FIRST_STEP; PARTITIONS as usize],
            max_cas: vec![cas; PARTITIONS as usize],
            notes: VecDeque::new(),
            first_note: 0,
            bytes: 0,
            budget,
            purge_after_us: purge_after_s.saturating_mul(1_000_000),
        }
    }

    /// A committed change of `p`: a store (`deleted` false) or a deletion, at `now_us`.
    pub fn change(&mut self, p: u16, seqno: u64, cas: u64, deleted: bool, key: &[u8], now_us: u64) {
        let i = p as usize % PARTITIONS as usize;
        if deleted || cas <= self.max_cas[i] {
            // Nothing about the item says it changed: remember the key.
            let note = Note { partition: p, seqno, at_us: now_us, key: key.into() };
            self.bytes += note.cost();
            self.notes.push_back(note);
        } else {
            let marks = &mut self.marks[i];
            // `(seqno - 1, cas - 1)`: this change and every later fresh one is above it.
            if marks.last().is_none_or(|&(s, _)| seqno.saturating_sub(1) >= s + self.step[i]) {
                marks.push((seqno - 1, cas - 1));
                if marks.len() > MARKS {
                    // Keep the oldest (it sets how far back a backfill reaches) and every
                    // other one after it.
                    let mut n = 0;
                    marks.retain(|_| {
                        n += 1;
                        n == 1 || n % 2 == 0
                    });
                    self.step[i] *= 2;
                }
            }
            self.max_cas[i] = cas;
        }
        self.purge(now_us);
    }

    /// No backfill of `partitions[p]` reaches before `seqno` any more.
    pub fn raise_floor(&mut self, p: u16, seqno: u64) {
        let f = &mut self.floor[p as usize % PARTITIONS as usize];
        *f = (*f).max(seqno);
    }

    /// Drops the notes past their time or over the budget, raising their partitions' floors.
    pub fn purge(&mut self, now_us: u64) {
        while let Some(front) = self.notes.front() {
            let old = now_us.saturating_sub(front.at_us) > self.purge_after_us;
            if !old && self.bytes <= self.budget {
                break;
            }
            let Some(note) = self.notes.pop_front() else { break };
            self.first_note += 1;
            self.bytes -= note.cost();
            self.raise_floor(note.partition, note.seqno);
        }
    }

    /// The CAS above which `p`'s items may have changed after `seqno`, when a backfill can
    /// start there (`last`: the primary's seqno of `p` now); `None`: only a full resync can.
    pub fn since(&self, p: u16, seqno: u64, last: u64) -> Option<u64> {
        let i = p as usize % PARTITIONS as usize;
        if seqno < self.floor[i] || seqno > last {
            return None;
        }
        self.marks[i].iter().rev().find(|&&(s, _)| s <= seqno).map(|&(_, c)| c)
    }

    /// The index of the oldest note kept.
    pub fn first_note(&self) -> u64 {
        self.first_note
    }

    /// The index the next note will get.
    pub fn end_note(&self) -> u64 {
        self.first_note + self.notes.len() as u64
    }

    /// Note `index`: (partition, seqno, key).
    pub fn note(&self, index: u64) -> Option<(u16, u64, &[u8])> {
        let n = self.notes.get(index.checked_sub(self.first_note)? as usize)?;
        Some((n.partition, n.seqno, &n.key))
    }

    pub fn floor(&self, p: u16) -> u64 {
        self.floor[p as usize % PARTITIONS as usize]
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starting_at(s: u64, cas: u64) -> Backfill {
        Backfill::new(&vec![s; PARTITIONS as usize], cas, 1 << 20, 3600)
    }

    #[test]
    fn a_backfill_reaches_back_to_the_start_and_no_further() {
        let mut b = starting_at(10, 100);
        for s in 11..=1000 {
            b.change(3, s, 100 + s, false, b"k", 0);
        }
        assert_eq!(b.since(3, 10, 1000), Some(100), "from the start: every CAS above the start's");
        assert_eq!(b.since(3, 9, 1000), None, "before this process started: unknown");
        assert_eq!(b.since(3, 1001, 1000), None, "ahead of the primary");
        // A mark at or before the seqno, never after it.
        for s in [10, 11, 500, 999, 1000] {
            let c = b.since(3, s, 1000).unwrap();
            assert!(c <= 100 + s, "from {s}: CAS {c} would miss the change at {}", s + 1);
        }
        assert!(b.marks[3].len() <= MARKS + 1);
    }

    #[test]
    fn deletions_and_touches_are_noted_and_purged_with_the_floor() {
        let mut b = Backfill::new(&vec![0; PARTITIONS as usize], 0, 1 << 20, 1);
        b.change(1, 1, 5, false, b"a", 0);
        b.change(1, 2, 0, true, b"a", 0);
        b.change(1, 3, 5, false, b"b", 0); // a touch: the CAS did not move
        assert_eq!(b.end_note() - b.first_note(), 2);
        assert_eq!(b.note(b.first_note()), Some((1, 2, &b"a"[..])));
        assert_eq!(b.since(1, 0, 3), Some(0));
        // Past the purge interval the notes go, and a backup before them is resynced.
        b.purge(2_000_001);
        assert_eq!(b.end_note(), b.first_note());
        assert_eq!(b.since(1, 2, 3), None);
        assert_eq!(b.since(1, 3, 3), Some(0));
    }

    #[test]
    fn the_note_budget_purges_the_oldest_first() {
        let mut b = Backfill::new(&vec![0; PARTITIONS as usize], 0, 200, 3600);
        for s in 1..=10 {
            b.change(2, s, 0, true, b"key", 0);
        }
        assert!(b.bytes() <= 200);
        let first = b.note(b.first_note()).unwrap().1;
        assert_eq!(b.floor(2), first - 1);
    }
}
