//! What the history is checked for: linearizability per key (P-compositionality: a history
//! is linearizable iff each key's is), and direct checks that need no search: acknowledged
//! writes present at the end, and in the backup's copy while the primary is dead; no read
//! of a value nobody wrote; nodes and backups agreeing at the end; one primary acknowledging
//! per partition and epoch.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::cluster::Claims;
use crate::history::{Op, Outcome, Record, Ret};
use crate::wgl::{self, Call, Verdict};
use crate::workload::VALUE_STEP;

/// The final read of one key through one node, after the faults healed.
#[derive(Clone, Debug)]
pub struct FinalRead {
    pub key: u32,
    pub value: Option<u64>,
    /// Read from the key's backup copy (GET_REPLICA) rather than through a node.
    pub replica: bool,
}

#[derive(Clone, Debug)]
pub struct LostWrite {
    pub key: u32,
    /// What the final read found.
    pub found: Option<u64>,
    /// The acknowledged write it should have seen (or something later).
    pub acked: Op,
    pub acked_complete_ns: u64,
    /// For a backup copy read: when it was read, and the cutoff (the kill of the primary).
    pub replica_read: Option<(u64, u64)>,
}

/// Writes to one partition acknowledged by more than one primary in one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitBrain {
    pub partition: u16,
    pub epoch: u64,
    pub primaries: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct Findings {
    pub keys: usize,
    pub linearizable: usize,
    pub not_linearizable: Vec<u32>,
    pub too_hard: Vec<u32>,
    pub lost_writes: Vec<LostWrite>,
    /// (key, value): a read of a value no operation wrote.
    pub phantom_reads: Vec<(u32, u64)>,
    /// Keys whose final reads differ between nodes, or between a node and the backup copy.
    pub divergent: Vec<u32>,
    /// Acknowledged writes missing from a backup's copy read while the primary was dead (or
    /// at the end): what a failover to that backup would lose.
    pub lost_on_backup: Vec<LostWrite>,
    /// Backup copies read (GET_REPLICA) with a definite answer.
    pub replica_reads: usize,
    pub split_brain: Vec<SplitBrain>,
    /// (partition, epoch) pairs some node's log says it wrote as primary.
    pub primary_claims: usize,
}

impl Findings {
    pub fn ok(&self) -> bool {
        self.not_linearizable.is_empty()
            && self.lost_writes.is_empty()
            && self.lost_on_backup.is_empty()
            && self.phantom_reads.is_empty()
            && self.divergent.is_empty()
            && self.split_brain.is_empty()
    }
}

/// `records` includes the final reads (as reads); `finals` lists them again by key.
pub fn check(records: &[Record], finals: &[FinalRead], claims: &Claims, budget_per_key: Duration) -> Findings {
    let mut by_key: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_key.entry(r.key).or_default().push(r);
    }
    let mut f = Findings { keys: by_key.len(), ..Findings::default() };
    for (&key, ops) in &by_key {
        let calls: Vec<Call> = ops.iter().filter_map(|r| call_of(r)).collect();
        // First without the unknown writes whose value nobody saw: leaving one out is
        // linearizing it last, one of the orders the search may pick, so "linearizable"
        // holds for the whole history too. Only if that fails, the whole search (each
        // unknown operation doubles what it may have to try).
        let seen = observed(&calls);
        let unseen = |c: &Call| c.ret.is_none() && matches!(c.op, Op::Set(v) | Op::Cas { new: v, .. } if !seen.contains(&v));
        let fast: Vec<Call> = calls.iter().filter(|c| !unseen(c)).copied().collect();
        let mut verdict = wgl::check(&fast, None, budget_per_key);
        if verdict != Verdict::Linearizable && fast.len() < calls.len() {
            verdict = wgl::check(&calls, None, budget_per_key);
        }
        match verdict {
            Verdict::Linearizable => f.linearizable += 1,
            Verdict::NotLinearizable { .. } => f.not_linearizable.push(key),
            Verdict::TooHard => f.too_hard.push(key),
        }
        f.phantom_reads.extend(phantoms(key, ops));
        let key_finals: Vec<&FinalRead> = finals.iter().filter(|x| x.key == key).collect();
        if let Some(first) = key_finals.iter().find(|x| !x.replica) {
            if key_finals.iter().any(|x| x.value != first.value) {
                f.divergent.push(key);
            }
            if let Some(lost) = lost_write(key, ops, first.value, u64::MAX, u64::MAX) {
                f.lost_writes.push(lost);
            }
        }
        for r in ops {
            if let (Op::ReplicaRead { cutoff_ns }, Outcome::Ok(Ret::Value(found))) = (r.op, &r.outcome) {
                f.replica_reads += 1;
                if let Some(mut lost) = lost_write(key, ops, *found, cutoff_ns, r.complete_ns) {
                    lost.replica_read = Some((r.invoke_ns, cutoff_ns));
                    f.lost_on_backup.push(lost);
                }
            }
        }
    }
    f.primary_claims = claims.len();
    f.split_brain = split_brain(records, claims);
    f
}

/// The split-brain check: per (partition, epoch), the nodes that wrote it as primary; more
/// than one is a violation. Two sources: the nodes' own logs (`claims`: each partition's
/// first write as primary per epoch, see `caskade::cluster::claims`), and any record that
/// names the primary and epoch that acknowledged it (`Record::acked_by`: a history written
/// by hand, or a client that learns them from replies).
pub fn split_brain(records: &[Record], claims: &Claims) -> Vec<SplitBrain> {
    let mut primaries: Claims = claims.clone();
    for r in records {
        if let (Some(by), true) = (r.acked_by, acknowledged_write(r)) {
            let partition = caskade::cluster::partition_of(format!("k{}", r.key).as_bytes());
            primaries.entry((partition, by.epoch)).or_default().insert(by.primary);
        }
    }
    primaries
        .into_iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|((partition, epoch), p)| SplitBrain { partition, epoch, primaries: p.into_iter().collect() })
        .collect()
}

/// A write that took effect and was answered so.
pub fn acknowledged_write(r: &Record) -> bool {
    matches!(r.outcome, Outcome::Ok(Ret::Stored | Ret::Deleted | Ret::Incremented(_)))
}

/// The written values (multiples of `VALUE_STEP`) some answer showed: a read, a CAS's
/// expected value, an incr's result.
fn observed(calls: &[Call]) -> HashSet<u64> {
    let base = |v: u64| v - v % VALUE_STEP;
    calls
        .iter()
        .filter_map(|c| match (c.op, c.ret) {
            (_, Some(Ret::Value(Some(v)) | Ret::Incremented(v))) => Some(base(v)),
            (Op::Cas { expect, .. }, _) => Some(base(expect)),
            _ => None,
        })
        .collect()
}

/// The operation as the search sees it; `None` for one that cannot matter (a failed
/// operation, or a read whose answer never came).
pub fn call_of(r: &Record) -> Option<Call> {
    let ret = match (&r.outcome, r.op) {
        // A backup's copy is not the register: its reads are checked directly.
        (_, Op::ReplicaRead { .. }) => return None,
        (Outcome::Ok(ret), _) => Some(*ret),
        (Outcome::Unknown(_), Op::Read) | (Outcome::Failed(_), _) => return None,
        (Outcome::Unknown(_), _) => None,
    };
    Some(Call { op: r.op, ret, invoke: r.invoke_ns, complete: r.complete_ns })
}

fn phantoms(key: u32, ops: &[&Record]) -> Vec<(u32, u64)> {
    let took = |r: &&&Record| !matches!(r.outcome, Outcome::Failed(_) | Outcome::Ok(Ret::Exists | Ret::NotFound));
    let written: HashSet<u64> = ops
        .iter()
        .filter(took)
        .filter_map(|r| match r.op {
            Op::Set(v) | Op::Cas { new: v, .. } => Some(v),
            _ => None,
        })
        .collect();
    let incrs = ops.iter().filter(took).filter(|r| r.op == Op::Incr).count() as u64;
    let mut out = Vec::new();
    for r in ops {
        if let (Op::Read | Op::ReplicaRead { .. }, Outcome::Ok(Ret::Value(Some(v)))) = (r.op, &r.outcome) {
            if !written.contains(&(v - v % VALUE_STEP)) || v % VALUE_STEP > incrs {
                out.push((key, *v));
            }
        }
    }
    out
}

/// The latest acknowledged write the value `found` contradicts: one that was invoked after
/// every operation that could have produced `found` had completed. Only writes acknowledged
/// before `cutoff_ns` count, and only operations invoked before `horizon_ns` (when `found`
/// was read) can have produced it.
fn lost_write(key: u32, ops: &[&Record], found: Option<u64>, cutoff_ns: u64, horizon_ns: u64) -> Option<LostWrite> {
    let unknown = |r: &Record| matches!(r.outcome, Outcome::Unknown(_));
    let produces = |r: &Record| match (found, r.op, &r.outcome) {
        (None, Op::Delete, Outcome::Ok(Ret::Deleted)) => true,
        (Some(v), Op::Set(w) | Op::Cas { new: w, .. }, Outcome::Ok(Ret::Stored)) => v == w,
        (Some(v), Op::Incr, Outcome::Ok(Ret::Incremented(w))) => v == *w,
        (None, Op::Delete, _) => unknown(r),
        (Some(v), Op::Set(w) | Op::Cas { new: w, .. }, _) => unknown(r) && v == w,
        (Some(v), Op::Incr, _) => unknown(r) && v % VALUE_STEP > 0,
        _ => false,
    };
    // When the last operation that could have produced the value completed (never, if
    // its outcome is unknown: it may land at any time).
    let producer_done = ops
        .iter()
        .filter(|r| produces(r) && r.invoke_ns < horizon_ns)
        .map(|r| if unknown(r) { u64::MAX } else { r.complete_ns })
        .max();
    let later = ops
        .iter()
        .filter(|r| acknowledged_write(r) && r.complete_ns < cutoff_ns)
        .filter(|r| producer_done.is_none_or(|done| r.invoke_ns > done))
        .max_by_key(|r| r.invoke_ns)?;
    Some(LostWrite { key, found, acked: later.op, acked_complete_ns: later.complete_ns, replica_read: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Op, outcome: Outcome, invoke_ns: u64, complete_ns: u64) -> Record {
        Record { process: 0, node: 0, key: 1, op, invoke_ns, complete_ns, outcome, acked_by: None }
    }
    const M: u64 = VALUE_STEP;

    #[test]
    fn a_lost_acknowledged_write_and_a_phantom_are_found() {
        let h = vec![
            rec(Op::Set(M), Outcome::Ok(Ret::Stored), 0, 1),
            rec(Op::Set(2 * M), Outcome::Ok(Ret::Stored), 2, 3),
            rec(Op::Read, Outcome::Ok(Ret::Value(Some(M))), 10, 11),
        ];
        let finals = [FinalRead { key: 1, value: Some(M), replica: false }];
        let f = check(&h, &finals, &Claims::new(), Duration::from_secs(1));
        assert_eq!(f.not_linearizable, vec![1]);
        assert_eq!(f.lost_writes.len(), 1);
        assert_eq!(f.lost_writes[0].acked, Op::Set(2 * M));
        assert!(!f.ok());

        let h = vec![rec(Op::Set(M), Outcome::Ok(Ret::Stored), 0, 1), rec(Op::Read, Outcome::Ok(Ret::Value(Some(M + 1))), 2, 3)];
        let f = check(&h, &[], &Claims::new(), Duration::from_secs(1));
        assert_eq!(f.phantom_reads, vec![(1, M + 1)]);
    }

    #[test]
    fn an_unknown_write_may_explain_the_end() {
        let h = vec![
            rec(Op::Set(M), Outcome::Ok(Ret::Stored), 0, 1),
            rec(Op::Delete, Outcome::Unknown("timeout".into()), 2, 3),
            rec(Op::Incr, Outcome::Unknown("timeout".into()), 2, 3),
            rec(Op::Read, Outcome::Ok(Ret::Value(None)), 10, 11),
        ];
        let finals = [FinalRead { key: 1, value: None, replica: false }, FinalRead { key: 1, value: None, replica: false }];
        let f = check(&h, &finals, &Claims::new(), Duration::from_secs(1));
        assert!(f.ok(), "{f:?}");
        // Nodes that disagree at the end.
        let finals = [FinalRead { key: 1, value: None, replica: false }, FinalRead { key: 1, value: Some(M), replica: false }];
        assert_eq!(check(&h, &finals, &Claims::new(), Duration::from_secs(1)).divergent, vec![1]);
    }

    fn replica_read(found: Option<u64>, cutoff_ns: u64, at: u64) -> Record {
        rec(Op::ReplicaRead { cutoff_ns }, Outcome::Ok(Ret::Value(found)), at, at + 1)
    }

    /// The backup's copy, read while the primary is dead (killed at 10), must hold every
    /// write acknowledged before the kill.
    #[test]
    fn a_backup_missing_an_acknowledged_write_is_found() {
        let writes = [
            rec(Op::Set(M), Outcome::Ok(Ret::Stored), 0, 1),
            rec(Op::Set(2 * M), Outcome::Ok(Ret::Stored), 2, 3),
        ];
        // The backup has only the first write: the second, acknowledged at 3, is lost.
        let h = [&writes[..], &[replica_read(Some(M), 10, 12)]].concat();
        let f = check(&h, &[], &Claims::new(), Duration::from_secs(1));
        assert_eq!(f.lost_on_backup.len(), 1, "{f:?}");
        assert_eq!(f.lost_on_backup[0].acked, Op::Set(2 * M));
        assert_eq!(f.lost_on_backup[0].replica_read, Some((12, 10)));
        assert!(!f.ok());
        // Nothing at all on the backup: lost too.
        let h = [&writes[..], &[replica_read(None, 10, 12)]].concat();
        assert_eq!(check(&h, &[], &Claims::new(), Duration::from_secs(1)).lost_on_backup.len(), 1);
        // The backup has the latest: fine; and a write acknowledged only after the kill
        // (at 11, by no primary that died) is not asked of it.
        let late = rec(Op::Set(3 * M), Outcome::Ok(Ret::Stored), 4, 11);
        let h = [&writes[..], &[late.clone(), replica_read(Some(2 * M), 10, 12)]].concat();
        let f = check(&h, &[], &Claims::new(), Duration::from_secs(1));
        assert!(f.lost_on_backup.is_empty() && f.replica_reads == 1, "{f:?}");
        // An ambiguous write (0xa3: unknown) of the value found explains it.
        let h = [
            &writes[..],
            &[rec(Op::Set(3 * M), Outcome::Unknown("sync write ambiguous (0xa3)".into()), 4, 5), replica_read(Some(3 * M), 10, 12)],
        ]
        .concat();
        assert!(check(&h, &[], &Claims::new(), Duration::from_secs(1)).lost_on_backup.is_empty());
        // A failed write (0xa1) explains nothing.
        let h = [
            &writes[..],
            &[rec(Op::Set(3 * M), Outcome::Failed("durability impossible (0xa1)".into()), 4, 5), replica_read(Some(3 * M), 10, 12)],
        ]
        .concat();
        let f = check(&h, &[], &Claims::new(), Duration::from_secs(1));
        assert_eq!(f.lost_on_backup.len(), 1);
        assert_eq!(f.phantom_reads, vec![(1, 3 * M)]);
        // Backup reads stay out of the linearizability search.
        assert!(f.not_linearizable.is_empty());
    }

    /// Two primaries acknowledging writes to one partition in one epoch are found; the same
    /// two in different epochs (a failover) are not.
    #[test]
    fn two_primaries_in_one_epoch_are_found() {
        use crate::history::AckedBy;
        let acked = |primary: usize, epoch: u64, t: u64| Record {
            acked_by: Some(AckedBy { primary, epoch }),
            ..rec(Op::Set((t + 1) * M), Outcome::Ok(Ret::Stored), t, t + 1)
        };
        let p = caskade::cluster::partition_of(b"k1");
        let h = vec![acked(0, 1, 0), acked(1, 1, 2), acked(0, 1, 4)];
        assert_eq!(split_brain(&h, &Claims::new()), vec![SplitBrain { partition: p, epoch: 1, primaries: vec![0, 1] }]);
        assert!(!check(&h, &[], &Claims::new(), Duration::from_secs(1)).ok());
        let h = vec![acked(0, 1, 0), acked(1, 2, 2), acked(1, 2, 4)];
        assert!(split_brain(&h, &Claims::new()).is_empty());
        // A write that did not take effect acknowledges nothing.
        let mut failed = acked(1, 1, 2);
        failed.outcome = Outcome::Failed("durability impossible (0xa1)".into());
        assert!(split_brain(&[acked(0, 1, 0), failed], &Claims::new()).is_empty());
    }

    /// The nodes' logs alone: two nodes claiming one partition in one epoch are found, with
    /// or without a history that names them; one node per (partition, epoch) is not.
    #[test]
    fn two_claims_in_one_epoch_are_found() {
        let claims = |entries: &[(u16, u64, usize)]| {
            let mut c = Claims::new();
            for &(p, e, n) in entries {
                c.entry((p, e)).or_default().insert(n);
            }
            c
        };
        let ok = claims(&[(5, 1, 0), (6, 1, 1), (5, 2, 1)]);
        assert!(split_brain(&[], &ok).is_empty());
        let bad = claims(&[(5, 1, 0), (6, 1, 1), (5, 1, 2)]);
        assert_eq!(split_brain(&[], &bad), vec![SplitBrain { partition: 5, epoch: 1, primaries: vec![0, 2] }]);
        let f = check(&[], &[], &bad, Duration::from_secs(1));
        assert!(!f.ok() && f.primary_claims == 2);
    }
}
