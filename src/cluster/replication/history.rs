//! A primary's history of each partition, as branches (DCP's failover log): a copy on a
//! backup can be caught up from its seqno only if what it holds is a prefix of the primary's
//! history, and seqnos alone cannot say so. A primary that lost the tail of its log (a power
//! loss under `everysec`) and then took as many new writes gives the same seqnos to other
//! changes.
//!
//! So every time a primary starts it opens a new branch: a random id and, per partition, the
//! seqno it recovered (where the branch begins). A backup keeps, per partition, the branch
//! its copy follows (told by the primary when it accepts the copy). A copy at seqno `S`
//! following branch `b` is a prefix of this history when `b` is one of its branches and `S`
//! is at most where the next branch began (or the primary's seqno now, for the current
//! branch). Anything else (an unknown branch, a copy past the point its branch was cut) is
//! resynced in full. An empty copy (seqno 0) is a prefix of every history.
//!
//! Encoded for the primary's data directory (file `history` of each shard):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 4 | magic `CKH1` |
//! | 4 | 2 | branches `n` (oldest first) |
//! | then, per branch | 8 | id |
//! | | 2 | `m`: partitions listed |
//! | | 10·m | (partition u16, start seqno u64), partitions with a nonzero start |
//!
//! Integers big-endian. No I/O here.

use crate::cluster::PARTITIONS;

/// Branches kept; a copy following an older one is resynced in full.
pub const BRANCHES: usize = 16;

const MAGIC: &[u8; 4] = b"CKH1";

#[derive(Clone, Debug, PartialEq, Eq)]
struct Branch {
    id: u64,
    /// Per partition: the seqno the branch began at.
    start: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    branches: Vec<Branch>,
}

impl History {
    /// A history of one branch, `id`, beginning at `start(p)`.
    pub fn single(id: u64, start: &[u64]) -> History {
        let mut h = History::default();
        h.open(id, start);
        h
    }

    /// A new branch, `id`, beginning at `start[p]` (the primary's seqnos now).
    pub fn open(&mut self, id: u64, start: &[u64]) {
        self.branches.push(Branch { id, start: start.to_vec() });
        if self.branches.len() > BRANCHES {
            self.branches.remove(0);
        }
    }

    /// The current branch's id.
    pub fn current(&self) -> u64 {
        self.branches.last().map_or(0, |b| b.id)
    }

    /// Whether a copy of `p` following `branch` up to `seqno` is a prefix of this history,
    /// `last` being the primary's seqno of `p` now.
    pub fn is_prefix(&self, branch: u64, p: u16, seqno: u64, last: u64) -> bool {
        if seqno == 0 {
            return true;
        }
        let Some(k) = self.branches.iter().rposition(|b| b.id == branch) else { return false };
        let end = match self.branches.get(k + 1) {
            Some(next) => next.start.get(p as usize).copied().unwrap_or(0).min(last),
            None => last,
        };
        seqno <= end
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.branches.len() as u16).to_be_bytes());
        for b in &self.branches {
            out.extend_from_slice(&b.id.to_be_bytes());
            let listed: Vec<(usize, u64)> = b.start.iter().copied().enumerate().filter(|&(_, s)| s != 0).collect();
            out.extend_from_slice(&(listed.len() as u16).to_be_bytes());
            for (p, s) in listed {
                out.extend_from_slice(&(p as u16).to_be_bytes());
                out.extend_from_slice(&s.to_be_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<History, &'static str> {
        let mut at = 0;
        let mut take = |n: usize| -> Result<&[u8], &'static str> {
            let b = bytes.get(at..at + n).ok_or("cut short")?;
            at += n;
            Ok(b)
        };
        if take(4)? != MAGIC {
            return Err("not a history file");
        }
        let be = |b: &[u8]| b.iter().fold(0u64, |v, &x| v << 8 | x as u64);
        let n = be(take(2)?) as usize;
        if n > BRANCHES {
            return Err("too many branches");
        }
        let mut h = History::default();
        for _ in 0..n {
            let id = be(take(8)?);
            let m = be(take(2)?) as usize;
            let mut start = vec![0; PARTITIONS as usize];
            for _ in 0..m {
                let p = be(take(2)?) as usize;
                let s = be(take(8)?);
                *start.get_mut(p).ok_or("a partition out of range")? = s;
            }
            h.branches.push(Branch { id, start });
        }
        if at != bytes.len() {
            return Err("bytes after the last branch");
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Vec<u64> {
        vec![s; PARTITIONS as usize]
    }

    #[test]
    fn a_copy_past_the_point_its_branch_was_cut_is_not_a_prefix() {
        // Branch 7 ran from 0; the primary restarted having kept seqno 100 (its tail, 101..
        // 120, lost), opened branch 9, and has taken writes up to 150 since.
        let mut h = History::single(7, &at(0));
        h.open(9, &at(100));
        assert!(h.is_prefix(7, 3, 100, 150), "everything branch 7 kept");
        assert!(!h.is_prefix(7, 3, 101, 150), "101 under branch 7 is not 101 under branch 9");
        assert!(!h.is_prefix(7, 3, 120, 150));
        assert!(h.is_prefix(9, 3, 150, 150) && !h.is_prefix(9, 3, 151, 150), "the current branch: up to now");
        assert!(!h.is_prefix(8, 3, 5, 150), "a branch this primary never had");
        assert!(h.is_prefix(8, 3, 0, 150), "an empty copy");
        assert_eq!(h.current(), 9);
    }

    #[test]
    fn old_branches_go_and_the_file_round_trips() {
        let mut h = History::default();
        for id in 1..=(BRANCHES as u64 + 3) {
            let mut start = at(0);
            start[5] = id * 10;
            h.open(id, &start);
        }
        assert!(!h.is_prefix(1, 5, 1, 1000), "branch 1 is forgotten");
        assert!(h.is_prefix(4, 5, 40, 1000));
        let bytes = h.encode();
        assert_eq!(History::decode(&bytes), Ok(h));
        assert!(History::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(History::decode(b"CKH0\0\0").is_err());
    }
}
