//! The durability gate: replies to durable writes, held until enough backups hold the write.
//! No I/O: the core hands in its commit results, the group-commit sync rounds and how many
//! backups have acknowledged each write; the gate hands back which reply goes where.
//!
//! A durable write's reply is taken out of the way as soon as its command has run, with two
//! other replies beside it: the disk error (this node's own commit of the write failed, so
//! it did not happen) and the ambiguous answer (the deadline passed before enough backups
//! acknowledged: the write may or may not survive a failover). It then waits, in order:
//! 1. for the turn's commit (`committed`), and under group commit for its fsync (`fsynced`);
//! 2. for `need` backups to acknowledge its partition's seqno (`poll`).
//!
//! The deadline covers both: whatever is still waiting at it gets the ambiguous answer, never
//! a success it has not earned and never a failure that may be false.
//!
//! Until it is released, a durable write is *pending* on its key, and no reply to another
//! command on that key leaves before it: a read would show a value that may yet be lost, a
//! write's answer (a CAS, a counter) would build on it. Those replies wait in the gate behind
//! the write ([`Gate::pending`], [`Gate::hold_behind`]) and leave when it is released,
//! whatever its verdict: after a deadline the write stays applied on the primary, so what
//! they show is what the primary holds.

use std::collections::HashMap;
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
    /// Committed; group commit's fsync of this round is awaited.
    Fsync(u64),
    /// On this node's disk as its policy promises; backups are awaited.
    Acks,
}

/// What a held reply waits for: seqno `seqno` of `partition` on `need` backups (on their
/// disks if `persist`), until `deadline_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub partition: u16,
    pub seqno: u64,
    pub need: usize,
    pub persist: bool,
    pub deadline_ms: u64,
}

struct Entry {
    dest: Dest,
    ok: Range<u32>,
    disk_error: Range<u32>,
    ambiguous: Range<u32>,
    /// The durable write's own key (`None`: a reply waiting behind another's write).
    key: Option<Range<u32>>,
    wait: Wait,
    state: State,
}

/// How a released reply turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Durable,
    DiskError,
    Ambiguous,
    /// A reply that waited behind another command's durable write.
    Behind,
}

/// The replies to durable writes of one core, and those waiting behind them.
#[derive(Default)]
pub struct Gate {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// The last durable write held on each key, until it is released.
    pending: HashMap<Box<[u8]>, Wait>,
}

impl Gate {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Holds the reply to a durable write of `key` until `wait` is met or its deadline.
    pub fn hold(&mut self, dest: Dest, key: &[u8], ok: &[u8], disk_error: &[u8], ambiguous: &[u8], wait: Wait) {
        let key_range = self.put(key);
        self.push(dest, Some(key_range), ok, disk_error, ambiguous, wait);
        self.pending.insert(key.into(), wait);
    }

    /// The durable write pending on `key`, if any: what a reply on that key must wait for.
    pub fn pending(&self, key: &[u8]) -> Option<Wait> {
        match self.pending.is_empty() {
            true => None,
            false => self.pending.get(key).copied(),
        }
    }

    /// Holds a reply to a command on a key with a pending durable write until that write is
    /// released (`wait` is [`pending`](Self::pending)'s). `disk_error`: what it becomes if
    /// its own turn's commit fails (the reply itself, if the command wrote nothing).
    pub fn hold_behind(&mut self, dest: Dest, ok: &[u8], disk_error: &[u8], wait: Wait) {
        let wait = Wait { persist: false, ..wait };
        self.push(dest, None, ok, disk_error, ok, wait);
    }

    fn put(&mut self, b: &[u8]) -> Range<u32> {
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(b);
        start..self.arena.len() as u32
    }

    fn push(&mut self, dest: Dest, key: Option<Range<u32>>, ok: &[u8], disk_error: &[u8], ambiguous: &[u8], wait: Wait) {
        let (ok, disk_error, ambiguous) = (self.put(ok), self.put(disk_error), self.put(ambiguous));
        self.entries.push(Entry { dest, ok, disk_error, ambiguous, key, wait, state: State::Commit });
    }

    /// The earliest deadline of a held reply: the loop must turn by then even if no
    /// acknowledgement wakes it.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.wait.deadline_ms).min()
    }

    /// Whether a durable write waits for backups' disks: the frames sent now ask for them.
    pub fn wants_persist(&self) -> bool {
        self.entries.iter().any(|e| e.wait.persist)
    }

    /// The turn's commit ran: it failed (its writes did not happen), or wrote them, and under
    /// group commit they wait for the fsync of `round`.
    pub fn committed(&mut self, ok: bool, round: Option<u64>, mut each: impl FnMut(Dest, &[u8], Verdict)) {
        let (arena, pending) = (&self.arena, &mut self.pending);
        self.entries.retain_mut(|e| {
            if e.state != State::Commit {
                return true;
            }
            if !ok {
                release(arena, pending, e, &e.disk_error, Verdict::DiskError, &mut each);
                return false;
            }
            e.state = round.map_or(State::Acks, State::Fsync);
            true
        });
        self.compact();
    }

    /// Group commit's progress: every sync round up to `durable` is synced; `failed` the
    /// last one whose fsync failed.
    pub fn fsynced(&mut self, durable: u64, failed: u64, mut each: impl FnMut(Dest, &[u8], Verdict)) {
        let (arena, pending) = (&self.arena, &mut self.pending);
        self.entries.retain_mut(|e| match e.state {
            State::Fsync(n) if n <= durable => {
                e.state = State::Acks;
                true
            }
            State::Fsync(n) if n <= failed => {
                release(arena, pending, e, &e.disk_error, Verdict::DiskError, &mut each);
                false
            }
            _ => true,
        });
        self.compact();
    }

    /// Releases what `acked(partition, seqno)` (how many backups hold it) now satisfies, and
    /// what has waited past its deadline as ambiguous.
    pub fn poll(&mut self, now_ms: u64, acked: impl Fn(u16, u64) -> usize, mut each: impl FnMut(Dest, &[u8], Verdict)) {
        let (arena, pending) = (&self.arena, &mut self.pending);
        self.entries.retain(|e| {
            let w = e.wait;
            let (range, verdict) = if e.state == State::Acks && acked(w.partition, w.seqno) >= w.need {
                (&e.ok, Verdict::Durable)
            } else if now_ms >= w.deadline_ms {
                (&e.ambiguous, Verdict::Ambiguous)
            } else {
                return true;
            };
            release(arena, pending, e, range, verdict, &mut each);
            false
        });
        self.compact();
    }

    fn compact(&mut self) {
        if self.entries.is_empty() {
            self.arena.clear();
            self.pending.clear();
        }
    }
}

/// Hands `e`'s reply `range` out with `verdict` (behind-replies as [`Verdict::Behind`]); a
/// durable write released ends its key's pending state, unless a later one took its place.
fn release(arena: &[u8], pending: &mut HashMap<Box<[u8]>, Wait>, e: &Entry, range: &Range<u32>, verdict: Verdict, each: &mut impl FnMut(Dest, &[u8], Verdict)) {
    let bytes = &arena[range.start as usize..range.end as usize];
    match &e.key {
        Some(k) => {
            let key = &arena[k.start as usize..k.end as usize];
            if pending.get(key).is_some_and(|w| w.seqno == e.wait.seqno && w.partition == e.wait.partition) {
                pending.remove(key);
            }
            each(e.dest, bytes, verdict);
        }
        None => each(e.dest, bytes, Verdict::Behind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(seq: u64) -> Dest {
        Dest::Conn { conn: 1, generation: 1, seq }
    }

    fn wait(partition: u16, seqno: u64, need: usize, deadline_ms: u64) -> Wait {
        Wait { partition, seqno, need, persist: false, deadline_ms }
    }

    fn released(g: &mut Gate, f: impl FnOnce(&mut Gate, &mut dyn FnMut(Dest, &[u8], Verdict))) -> Vec<(Dest, Vec<u8>, Verdict)> {
        let mut out = Vec::new();
        f(g, &mut |d, b, v| out.push((d, b.to_vec(), v)));
        out
    }

    #[test]
    fn a_reply_leaves_only_once_committed_and_acknowledged() {
        let mut g = Gate::default();
        g.hold(conn(1), b"k", b"OK", b"DISK", b"AMBIG", wait(7, 10, 1, 1000));
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
        g.hold(conn(1), b"k", b"OK", b"DISK", b"AMBIG", wait(7, 10, 1, 1000));
        assert_eq!(released(&mut g, |g, f| g.committed(false, None, f)), vec![(conn(1), b"DISK".to_vec(), Verdict::DiskError)]);
        g.hold(conn(2), b"k", b"OK", b"DISK", b"AMBIG", wait(7, 11, 2, 1000));
        g.committed(true, None, |_, _, _| panic!("nothing yet"));
        assert!(released(&mut g, |g, f| g.poll(999, |_, _| 1, f)).is_empty(), "one backup of two");
        assert_eq!(released(&mut g, |g, f| g.poll(1000, |_, _| 1, f)), vec![(conn(2), b"AMBIG".to_vec(), Verdict::Ambiguous)]);
    }

    #[test]
    fn group_commit_waits_for_the_fsync_of_its_round() {
        let mut g = Gate::default();
        g.hold(conn(1), b"k", b"A", b"DA", b"XA", wait(1, 1, 1, 1000));
        g.committed(true, Some(5), |_, _, _| panic!("nothing yet"));
        g.hold(conn(2), b"k", b"B", b"DB", b"XB", wait(1, 2, 1, 1000));
        g.committed(true, Some(6), |_, _, _| panic!("nothing yet"));
        assert!(released(&mut g, |g, f| g.poll(1, |_, _| 1, f)).is_empty(), "acknowledged but not synced here");
        g.fsynced(5, 0, |_, _, _| panic!("nothing yet"));
        assert_eq!(released(&mut g, |g, f| g.poll(2, |_, _| 1, f)), vec![(conn(1), b"A".to_vec(), Verdict::Durable)]);
        assert_eq!(released(&mut g, |g, f| g.fsynced(5, 6, f)), vec![(conn(2), b"DB".to_vec(), Verdict::DiskError)]);
    }

    #[test]
    fn replies_on_a_pending_key_leave_with_its_write_and_not_before() {
        let mut g = Gate::default();
        assert_eq!(g.pending(b"k"), None);
        g.hold(conn(1), b"k", b"STORED", b"DISK", b"AMBIG", wait(7, 10, 1, 1000));
        let w = g.pending(b"k").expect("the write is pending on its key");
        assert_eq!(g.pending(b"other"), None);
        // A read of the key in the same turn, and a write that appended a record.
        g.hold_behind(conn(2), b"VALUE", b"VALUE", w);
        g.hold_behind(conn(3), b"STORED2", b"DISK2", w);
        g.committed(true, None, |_, _, _| panic!("nothing before the backups"));
        assert!(released(&mut g, |g, f| g.poll(5, |_, _| 0, f)).is_empty());
        assert_eq!(
            released(&mut g, |g, f| g.poll(6, |_, s| usize::from(s <= 10), f)),
            vec![
                (conn(1), b"STORED".to_vec(), Verdict::Durable),
                (conn(2), b"VALUE".to_vec(), Verdict::Behind),
                (conn(3), b"STORED2".to_vec(), Verdict::Behind),
            ]
        );
        assert_eq!(g.pending(b"k"), None, "released: the key is no longer pending");
    }

    #[test]
    fn behind_a_write_past_its_deadline_a_reply_is_what_it_was() {
        let mut g = Gate::default();
        g.hold(conn(1), b"k", b"OK", b"DISK", b"AMBIG", wait(7, 10, 1, 1000));
        let w = g.pending(b"k").unwrap();
        g.hold_behind(conn(2), b"VALUE", b"VALUE", w);
        g.committed(true, None, |_, _, _| {});
        assert_eq!(
            released(&mut g, |g, f| g.poll(1000, |_, _| 0, f)),
            vec![(conn(1), b"AMBIG".to_vec(), Verdict::Ambiguous), (conn(2), b"VALUE".to_vec(), Verdict::Behind)]
        );
        // A failed commit: the write did not happen, the reply behind it in that turn is
        // its own disk error.
        g.hold(conn(3), b"k", b"OK", b"DISK", b"AMBIG", wait(7, 11, 1, 2000));
        let w = g.pending(b"k").unwrap();
        g.hold_behind(conn(4), b"STORED", b"DISK4", w);
        assert_eq!(
            released(&mut g, |g, f| g.committed(false, None, f)),
            vec![(conn(3), b"DISK".to_vec(), Verdict::DiskError), (conn(4), b"DISK4".to_vec(), Verdict::Behind)]
        );
        assert!(g.is_empty() && g.pending(b"k").is_none());
    }

    #[test]
    fn a_later_write_keeps_the_key_pending_when_an_earlier_one_leaves() {
        let mut g = Gate::default();
        g.hold(conn(1), b"k", b"A", b"DA", b"XA", wait(7, 10, 1, 1000));
        g.hold(conn(2), b"k", b"B", b"DB", b"XB", wait(7, 11, 1, 1000));
        g.committed(true, None, |_, _, _| {});
        assert_eq!(released(&mut g, |g, f| g.poll(1, |_, s| usize::from(s <= 10), f)), vec![(conn(1), b"A".to_vec(), Verdict::Durable)]);
        assert_eq!(g.pending(b"k").map(|w| w.seqno), Some(11));
    }

    #[test]
    fn the_next_deadline_is_the_earliest_held() {
        let mut g = Gate::default();
        assert_eq!(g.next_deadline_ms(), None);
        g.hold(conn(1), b"k", b"A", b"DA", b"XA", wait(7, 10, 1, 900));
        g.hold(conn(2), b"j", b"B", b"DB", b"XB", wait(7, 11, 1, 700));
        assert_eq!(g.next_deadline_ms(), Some(700));
    }

    #[test]
    fn persist_is_wanted_while_a_persist_write_waits() {
        let mut g = Gate::default();
        g.hold(conn(1), b"k", b"A", b"DA", b"XA", wait(7, 10, 1, 1000));
        assert!(!g.wants_persist());
        g.hold(conn(2), b"j", b"B", b"DB", b"XB", Wait { persist: true, ..wait(8, 3, 1, 1000) });
        let behind = g.pending(b"j").unwrap();
        g.hold_behind(conn(3), b"V", b"V", behind);
        assert!(g.wants_persist());
        g.committed(true, None, |_, _, _| {});
        g.poll(2, |p, _| usize::from(p == 8), |_, _, _| {});
        assert!(!g.wants_persist(), "the reply behind it asks for no disk of its own");
    }

    #[test]
    fn a_released_write_ends_its_keys_pending_state_while_others_wait() {
        let mut g = Gate::default();
        g.hold(conn(1), b"k", b"A", b"DA", b"XA", wait(7, 10, 1, 1000));
        g.hold(conn(2), b"other", b"B", b"DB", b"XB", wait(8, 5, 1, 1000));
        g.committed(true, None, |_, _, _| {});
        g.poll(1, |p, _| usize::from(p == 7), |_, _, _| {});
        assert_eq!(g.pending(b"k"), None, "k's write is released");
        assert!(g.pending(b"other").is_some(), "other's still waits");
    }

    #[test]
    fn the_arena_is_emptied_once_nothing_waits() {
        let mut g = Gate::default();
        for i in 0..100 {
            g.hold(conn(i), b"k", &[0; 100], b"D", b"X", wait(7, i, 1, 1000));
        }
        g.committed(true, None, |_, _, _| {});
        g.poll(1, |_, _| 1, |_, _, _| {});
        assert!(g.is_empty());
        assert_eq!((g.arena.len(), g.pending.len()), (0, 0), "memory goes with the replies");
    }
}
