//! Replies held until the commit of their records, and under group commit until the fsync
//! of their turn's sync round ([`Rounds`]).
//!
//! A mutation's reply must not leave before the record it appended is written (and, under
//! `--fsync always`, synced), and if that write fails the client must get an error status,
//! not the success already encoded. So a reply to a command that appended a record is taken
//! out of its connection's output into this core's [`Held`] list, with the error reply beside
//! it, and its place in the connection's reply order is kept by a pending slot (the one
//! forwarded requests use). After the turn's commit each held reply goes into its slot: the
//! success bytes, or the error bytes if the commit failed. Replies to commands that appended
//! nothing (reads, misses, refused mutations) are true whatever the commit does, and are not
//! held.
//!
//! Replies to commands another core forwarded here travel in a [`ReplyBatch`] instead; each
//! carries what its connection must get if this core's commit fails ([`OnFailure`]).
//!
//! [`ReplyBatch`]: super::mailbox::ReplyBatch

use std::collections::VecDeque;
use std::ops::Range;

use super::connection::Connection;
use crate::protocol::ReplyTo;
use crate::storage::disk::SyncRounds;
use crate::storage::Outcome;

/// What a reply becomes when the commit of its turn fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The command appended nothing: its reply stands.
    Stands,
    /// The command appended a record: this error reply (a range of the same arena) replaces it.
    Error(Range<u32>),
    /// The command appended a record and has no reply of its own to replace (a flush's
    /// acknowledgement to the core that fanned it out): the connection is closed unanswered.
    Close,
}

/// Appends the error reply a failed commit gives `to` in place of its success.
pub fn write_failure(out: &mut Vec<u8>, to: Option<&ReplyTo>, key: &[u8]) -> OnFailure {
    match to {
        Some(to) => {
            let start = out.len() as u32;
            to.write_outcome::<&[u8]>(out, key, &Outcome::StorageError);
            OnFailure::Error(start..out.len() as u32)
        }
        None => OnFailure::Close,
    }
}

struct Entry {
    conn: usize,
    generation: u64,
    seq: u64,
    /// Bytes of the reply counted in the connection's `held`.
    len: usize,
    ok: Range<u32>,
    on_failure: OnFailure,
}

/// This core's held replies, in the order they were made.
#[derive(Default)]
pub struct Held {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

/// Where a held reply goes once its commit is known.
pub struct Release<'h> {
    pub conn: usize,
    pub generation: u64,
    pub seq: u64,
    /// `None`: close the connection.
    pub bytes: Option<&'h [u8]>,
    /// What to take off the connection's `held` count.
    pub held: usize,
}

impl Held {
    /// Moves the reply written to `conn.out()` from `start` on into the held list, and keeps
    /// its place in the connection's order. If the command appended a record, the error
    /// reply for `to` goes beside it; else (a read that must not reveal what is not yet
    /// durable, under group commit) the reply stands whatever the commit does.
    pub fn hold(&mut self, conn: &mut Connection, key: usize, start: usize, appended: bool, to: &ReplyTo, cmd_key: &[u8]) {
        let out = conn.out();
        let ok_start = self.arena.len() as u32;
        self.arena.extend_from_slice(&out[start..]);
        out.truncate(start);
        let ok = ok_start..self.arena.len() as u32;
        conn.held += ok.len();
        let on_failure = match appended {
            true => write_failure(&mut self.arena, Some(to), cmd_key),
            false => OnFailure::Stands,
        };
        self.push(conn, key, ok, on_failure);
    }

    /// Holds the slot `seq` the connection already reserved (a flush fanned out to other
    /// cores, whose own reply waits there): it gets nothing more on success, and the
    /// connection is closed on failure.
    pub fn hold_slot(&mut self, conn: &Connection, key: usize, seq: u64) {
        let at = self.arena.len() as u32;
        self.entries.push(Entry { conn: key, generation: conn.generation, seq, len: 0, ok: at..at, on_failure: OnFailure::Close });
    }

    fn push(&mut self, conn: &mut Connection, key: usize, ok: Range<u32>, on_failure: OnFailure) {
        let seq = conn.expect_replies(1, Vec::new());
        let len = ok.len();
        self.entries.push(Entry { conn: key, generation: conn.generation, seq, len, ok, on_failure });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hands every held reply to `each`, in order, as the commit turned out, and empties the list.
    pub fn release(&mut self, committed: bool, mut each: impl FnMut(Release<'_>)) {
        for e in &self.entries {
            let bytes = match (committed, &e.on_failure) {
                (true, _) | (false, OnFailure::Stands) => Some(&self.arena[e.ok.start as usize..e.ok.end as usize]),
                (false, OnFailure::Error(r)) => Some(&self.arena[r.start as usize..r.end as usize]),
                (false, OnFailure::Close) => None,
            };
            each(Release { conn: e.conn, generation: e.generation, seq: e.seq, bytes, held: e.len });
        }
        self.entries.clear();
        self.arena.clear();
    }
}

/// Under group commit, the turns whose replies wait for an fsync, in order. No I/O: the
/// core tells it each commit's result and group commit's progress; it says which turns may
/// now leave, and whether as written (`true`) or as error statuses (`false`: the fsync that
/// covered them failed).
pub struct Rounds<T> {
    waiting: VecDeque<(u64, T)>,
}

impl<T> Default for Rounds<T> {
    fn default() -> Self {
        Rounds { waiting: VecDeque::new() }
    }
}

impl<T> Rounds<T> {
    /// The sync round a turn just committed must wait for: `None` when its replies may leave
    /// now, as the commit turned out (no group commit, everything written is synced already,
    /// or the commit failed, which no fsync will change).
    pub fn wait_for(committed: bool, progress: Option<SyncRounds>) -> Option<u64> {
        progress.filter(|p| committed && p.written > p.durable).map(|p| p.written)
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Keeps a turn's replies until round `round` is decided.
    pub fn push(&mut self, round: u64, turn: T) {
        self.waiting.push_back((round, turn));
    }

    /// Hands out, oldest first, each waiting turn whose round group commit has decided:
    /// synced (`true`) or failed (`false`). A later turn never leaves before an earlier one.
    /// Without group commit (never, or no more: a reload synced the log before it left
    /// `always`) whatever still waits is durable.
    pub fn settle(&mut self, progress: Option<SyncRounds>, mut each: impl FnMut(u64, T, bool)) {
        let p = progress.unwrap_or(SyncRounds { written: u64::MAX, durable: u64::MAX, failed: 0 });
        while let Some(&(round, _)) = self.waiting.front() {
            let ok = match round {
                n if n <= p.durable => true,
                n if n <= p.failed => false,
                _ => break,
            };
            if let Some((round, turn)) = self.waiting.pop_front() {
                each(round, turn, ok);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds(written: u64, durable: u64, failed: u64) -> Option<SyncRounds> {
        Some(SyncRounds { written, durable, failed })
    }

    fn settled(r: &mut Rounds<&'static str>, progress: Option<SyncRounds>) -> Vec<(u64, &'static str, bool)> {
        let mut out = Vec::new();
        r.settle(progress, |n, t, ok| out.push((n, t, ok)));
        out
    }

    #[test]
    fn a_turn_waits_for_its_round_and_leaves_in_order() {
        assert_eq!(Rounds::<()>::wait_for(true, None), None, "no group commit: at once");
        assert_eq!(Rounds::<()>::wait_for(true, rounds(3, 3, 0)), None, "all synced already");
        assert_eq!(Rounds::<()>::wait_for(false, rounds(4, 3, 0)), None, "a failed commit answers now");
        assert_eq!(Rounds::<()>::wait_for(true, rounds(4, 3, 0)), Some(4));
        let mut r = Rounds::default();
        r.push(4, "a");
        r.push(5, "b");
        r.push(6, "c");
        assert!(settled(&mut r, rounds(6, 3, 0)).is_empty(), "nothing synced");
        assert_eq!(settled(&mut r, rounds(6, 4, 0)), vec![(4, "a", true)]);
        // Round 5's fsync failed, 6 not decided: 5 leaves as errors, 6 waits.
        assert_eq!(settled(&mut r, rounds(6, 4, 5)), vec![(5, "b", false)]);
        assert_eq!(settled(&mut r, rounds(6, 6, 5)), vec![(6, "c", true)]);
    }

    #[test]
    fn a_later_round_never_leaves_before_an_earlier_one() {
        let mut r = Rounds::default();
        r.push(7, "a");
        r.push(8, "b");
        // Progress that names 8 failed and 7 neither: both wait (7 is first).
        assert!(settled(&mut r, rounds(8, 6, 6)).is_empty());
        // Group commit turned off (a reload synced the log): what waits is durable.
        assert_eq!(settled(&mut r, None), vec![(7, "a", true), (8, "b", true)]);
    }
}
