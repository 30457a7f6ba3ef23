//! The durability gate: replies to durable writes, held until enough backups hold the write.
//! No I/O: the core hands in its commit results, the group-commit epochs and how many backups
//! have acknowledged each write; the gate hands back which reply goes where.
//!
//! A durable write's reply is taken out of the way as soon as its command has run, with two
//! other replies beside it: the disk error (this node's own commit of the write failed, so
//! it did not happen) and the ambiguous answer (the deadline passed before enough backups
//! acknowledged: the write may or may not survive a failover). It then waits, in order:
//! 1. for the turn's commit (`committed`), and under group commit for its fsync (`durable`);
//! 2. for `need` backups to acknowledge its partition's seqno (`poll`).
//!
//! The deadline covers both: whatever is still waiting at it gets the ambiguous answer, never
//! a success it has not earned and never a failure that may be false.

use std::ops::Range;

use super::mailbox::ReturnAddress;

/// Where a released reply goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// A connection of this core, into its reserved slot `seq`.
    Conn { conn: usize, generation: u64, seq: u64 },
    /// A connection of another core, through its mailbox.
    Core(ReturnAddress),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// This turn's commit has not run yet.
    Commit,
    /// Committed; group commit's fsync of this epoch is awaited.
    Fsync(u64),
    /// On this node's disk as its policy promises; backups are awaited.
    Acks,
}

struct Entry {
    dest: Dest,
    ok: Range<u32>,
    disk_error: Range<u32>,
    ambiguous: Range<u32>,
    partition: u16,
    seqno: u64,
    need: usize,
    deadline_ms: u64,
    state: State,
}

/// How a released reply turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Durable,
    DiskError,
    Ambiguous,
}

/// The replies to durable writes of one core.
#[derive(Default)]
pub struct Gate {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

impl Gate {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Holds a reply until seqno `seqno` of `partition` is on `need` backups, or `deadline_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn hold(&mut self, dest: Dest, ok: &[u8], disk_error: &[u8], ambiguous: &[u8], partition: u16, seqno: u64, need: usize, deadline_ms: u64) {
        let mut put = |b: &[u8]| {
            let start = self.arena.len() as u32;
            self.arena.extend_from_slice(b);
            start..self.arena.len() as u32
        };
        let (ok, disk_error, ambiguous) = (put(ok), put(disk_error), put(ambiguous));
        self.entries.push(Entry { dest, ok, disk_error, ambiguous, partition, seqno, need, deadline_ms, state: State::Commit });
    }

    /// The turn's commit ran: it failed (its writes did not happen), or wrote them, and under
    /// group commit they wait for the fsync of `epoch`.
    pub fn committed(&mut self, ok: bool, epoch: Option<u64>, mut each: impl FnMut(Dest, &[u8], Verdict)) {
        let arena = &self.arena;
        self.entries.retain_mut(|e| {
            if e.state != State::Commit {
                return true;
            }
            if !ok {
                each(e.dest, &arena[e.disk_error.start as usize..e.disk_error.end as usize], Verdict::DiskError);
                return false;
            }
            e.state = epoch.map_or(State::Acks, State::Fsync);
            true
        });
        self.compact();
    }

    /// Group commit's progress: every epoch up to `durable` is synced; `failed` the last one
    /// whose fsync failed.
    pub fn fsynced(&mut self, durable: u64, failed: u64, mut each: impl FnMut(Dest, &[u8], Verdict)) {
        let arena = &self.arena;
        self.entries.retain_mut(|e| match e.state {
            State::Fsync(n) if n <= durable => {
                e.state = State::Acks;
                true
            }
            State::Fsync(n) if n <= failed => {
                each(e.dest, &arena[e.disk_error.start as usize..e.disk_error.end as usize], Verdict::DiskError);
                false
            }
            _ => true,
        });
        self.compact();
    }

    /// Releases what `acked(partition, seqno)` (how many backups hold it) now satisfies, and
    /// what has waited past its deadline as ambiguous.
    pub fn poll(&mut self, now_ms: u64, acked: impl Fn(u16, u64) -> usize, mut each: impl FnMut(Dest, &[u8], Verdict)) {
        let arena = &self.arena;
        self.entries.retain(|e| {
            let (range, verdict) = if e.state == State::Acks && acked(e.partition, e.seqno) >= e.need {
                (&e.ok, Verdict::Durable)
            } else if now_ms >= e.deadline_ms {
                (&e.ambiguous, Verdict::Ambiguous)
            } else {
                return true;
            };
            each(e.dest, &arena[range.start as usize..range.end as usize], verdict);
            false
        });
        self.compact();
    }

    fn compact(&mut self) {
        if self.entries.is_empty() {
            self.arena.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(seq: u64) -> Dest {
        Dest::Conn { conn: 1, generation: 1, seq }
    }

    fn released(g: &mut Gate, f: impl FnOnce(&mut Gate, &mut dyn FnMut(Dest, &[u8], Verdict))) -> Vec<(Dest, Vec<u8>, Verdict)> {
        let mut out = Vec::new();
        f(g, &mut |d, b, v| out.push((d, b.to_vec(), v)));
        out
    }

    #[test]
    fn a_reply_leaves_only_once_committed_and_acknowledged() {
        let mut g = Gate::default();
        g.hold(conn(1), b"OK", b"DISK", b"AMBIG", 7, 10, 1, 1000);
        // Acknowledged before the commit ran: still held.
        assert!(released(&mut g, |g, f| g.poll(0, |_, _| 1, f)).is_empty());
        assert!(released(&mut g, |g, f| g.committed(true, None, f)).is_empty());
        assert!(released(&mut g, |g, f| g.poll(1, |p, s| usize::from(p == 7 && s <= 9), f)).is_empty(), "seqno 9 acked is not 10");
        assert_eq!(released(&mut g, |g, f| g.poll(2, |_, s| usize::from(s <= 10), f)), vec![(conn(1), b"OK".to_vec(), Verdict::Durable)]);
        assert!(g.is_empty());
    }

    #[test]
    fn a_failed_commit_is_a_disk_error_and_a_deadline_is_ambiguous() {
        let mut g = Gate::default();
        g.hold(conn(1), b"OK", b"DISK", b"AMBIG", 7, 10, 1, 1000);
        assert_eq!(released(&mut g, |g, f| g.committed(false, None, f)), vec![(conn(1), b"DISK".to_vec(), Verdict::DiskError)]);
        g.hold(conn(2), b"OK", b"DISK", b"AMBIG", 7, 11, 2, 1000);
        g.committed(true, None, |_, _, _| panic!("nothing yet"));
        assert!(released(&mut g, |g, f| g.poll(999, |_, _| 1, f)).is_empty(), "one backup of two");
        assert_eq!(released(&mut g, |g, f| g.poll(1000, |_, _| 1, f)), vec![(conn(2), b"AMBIG".to_vec(), Verdict::Ambiguous)]);
    }

    #[test]
    fn group_commit_waits_for_the_fsync_of_its_epoch() {
        let mut g = Gate::default();
        g.hold(conn(1), b"A", b"DA", b"XA", 1, 1, 1, 1000);
        g.committed(true, Some(5), |_, _, _| panic!("nothing yet"));
        g.hold(conn(2), b"B", b"DB", b"XB", 1, 2, 1, 1000);
        g.committed(true, Some(6), |_, _, _| panic!("nothing yet"));
        assert!(released(&mut g, |g, f| g.poll(1, |_, _| 1, f)).is_empty(), "acknowledged but not synced here");
        g.fsynced(5, 0, |_, _, _| panic!("nothing yet"));
        assert_eq!(released(&mut g, |g, f| g.poll(2, |_, _| 1, f)), vec![(conn(1), b"A".to_vec(), Verdict::Durable)]);
        assert_eq!(released(&mut g, |g, f| g.fsynced(5, 6, f)), vec![(conn(2), b"DB".to_vec(), Verdict::DiskError)]);
    }
}
