//! What the history is checked for: linearizability per key (P-compositionality: a history
//! is linearizable iff each key's is), and direct checks that need no search.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::history::{Op, Outcome, Record, Ret};
use crate::wgl::{self, Call, Verdict};
use crate::workload::VALUE_STEP;

/// The final read of one key through one node, after the faults healed.
#[derive(Clone, Debug)]
pub struct FinalRead {
    pub key: u32,
    pub value: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct LostWrite {
    pub key: u32,
    /// What the final read found.
    pub found: Option<u64>,
    /// The acknowledged write it should have seen (or something later).
    pub acked: Op,
    pub acked_complete_ns: u64,
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
    /// Keys whose final reads differ between nodes.
    pub divergent: Vec<u32>,
}

impl Findings {
    pub fn ok(&self) -> bool {
        self.not_linearizable.is_empty() && self.lost_writes.is_empty() && self.phantom_reads.is_empty() && self.divergent.is_empty()
    }
}

/// `records` includes the final reads (as reads); `finals` lists them again by key.
pub fn check(records: &[Record], finals: &[FinalRead], budget_per_key: Duration) -> Findings {
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
        if let Some(first) = key_finals.first() {
            if key_finals.iter().any(|x| x.value != first.value) {
                f.divergent.push(key);
            }
            if let Some(lost) = lost_write(key, ops, first.value) {
                f.lost_writes.push(lost);
            }
        }
    }
    f
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
        if let (Op::Read, Outcome::Ok(Ret::Value(Some(v)))) = (r.op, &r.outcome) {
            if !written.contains(&(v - v % VALUE_STEP)) || v % VALUE_STEP > incrs {
                out.push((key, *v));
            }
        }
    }
    out
}

/// The latest acknowledged write the final value `found` contradicts: one that was invoked
/// after every operation that could have produced `found` had completed.
fn lost_write(key: u32, ops: &[&Record], found: Option<u64>) -> Option<LostWrite> {
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
        .filter(|r| produces(r))
        .map(|r| if unknown(r) { u64::MAX } else { r.complete_ns })
        .max();
    let acked = |r: &&&Record| matches!(r.outcome, Outcome::Ok(Ret::Stored | Ret::Deleted | Ret::Incremented(_)));
    let later = ops
        .iter()
        .filter(acked)
        .filter(|r| producer_done.is_none_or(|done| r.invoke_ns > done))
        .max_by_key(|r| r.invoke_ns)?;
    Some(LostWrite { key, found, acked: later.op, acked_complete_ns: later.complete_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Op, outcome: Outcome, invoke_ns: u64, complete_ns: u64) -> Record {
        Record { process: 0, node: 0, key: 1, op, invoke_ns, complete_ns, outcome }
    }
    const M: u64 = VALUE_STEP;

    #[test]
    fn a_lost_acknowledged_write_and_a_phantom_are_found() {
        let h = vec![
            rec(Op::Set(M), Outcome::Ok(Ret::Stored), 0, 1),
            rec(Op::Set(2 * M), Outcome::Ok(Ret::Stored), 2, 3),
            rec(Op::Read, Outcome::Ok(Ret::Value(Some(M))), 10, 11),
        ];
        let finals = [FinalRead { key: 1, value: Some(M) }];
        let f = check(&h, &finals, Duration::from_secs(1));
        assert_eq!(f.not_linearizable, vec![1]);
        assert_eq!(f.lost_writes.len(), 1);
        assert_eq!(f.lost_writes[0].acked, Op::Set(2 * M));
        assert!(!f.ok());

        let h = vec![rec(Op::Set(M), Outcome::Ok(Ret::Stored), 0, 1), rec(Op::Read, Outcome::Ok(Ret::Value(Some(M + 1))), 2, 3)];
        let f = check(&h, &[], Duration::from_secs(1));
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
        let finals = [FinalRead { key: 1, value: None }, FinalRead { key: 1, value: None }];
        let f = check(&h, &finals, Duration::from_secs(1));
        assert!(f.ok(), "{f:?}");
        // Nodes that disagree at the end.
        let finals = [FinalRead { key: 1, value: None }, FinalRead { key: 1, value: Some(M) }];
        assert_eq!(check(&h, &finals, Duration::from_secs(1)).divergent, vec![1]);
    }
}
