//! Replies held until the commit of their records.
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

use std::ops::Range;

use super::connection::Connection;
use crate::protocol::ReplyTo;
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
