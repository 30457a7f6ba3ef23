//! Linearizability of one key's history: the Wing & Gong search with Lowe's memoisation of
//! (set of operations linearized, model state), as Porcupine does it.
//!
//! The history becomes a list of call and return entries in time order. The search walks
//! it: at a call it tries to linearize that operation now (the model must accept its
//! answer), removing its call and return from the list; at a return whose operation is not
//! linearized yet it backtracks. A (linearized set, state) pair seen before is not explored
//! again. An operation with an unknown outcome returns at infinity: it may be linearized
//! anywhere after its call, at the end included, which is the same as "never happened".

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::history::{Op, Ret};
use crate::model::{step, State};

/// One operation as the search sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub op: Op,
    /// `None`: outcome unknown (returns at infinity, any answer).
    pub ret: Option<Ret>,
    pub invoke: u64,
    pub complete: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order fits; the longest prefix of operations linearized before the search gave up
    /// is in `linearized` (indices into the calls).
    NotLinearizable { linearized: usize },
    /// The time bound ran out first.
    TooHard,
}

const HEAD: usize = 0;
const NONE: usize = usize::MAX;

struct Entry {
    /// Operation index; `NONE` for the head.
    call: usize,
    is_return: bool,
    /// The other entry of the same operation.
    matching: usize,
    prev: usize,
    next: usize,
}

pub fn check(calls: &[Call], initial: State, budget: Duration) -> Verdict {
    let started = Instant::now();
    // Entries 1..: one call and one return per operation, sorted by time; at the same time
    // calls first (the operations overlap: the lenient reading).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(calls.len() * 2);
    for (i, c) in calls.iter().enumerate() {
        events.push((c.invoke, false, i));
        let complete = if c.ret.is_none() { u64::MAX } else { c.complete.max(c.invoke) };
        events.push((complete, true, i));
    }
    events.sort_by_key(|&(t, is_return, i)| (t, is_return, i));
    let mut list: Vec<Entry> = Vec::with_capacity(events.len() + 1);
    list.push(Entry { call: NONE, is_return: false, matching: NONE, prev: NONE, next: NONE });
    let mut call_at = vec![NONE; calls.len()];
    for (n, &(_, is_return, i)) in events.iter().enumerate() {
        let at = n + 1;
        let matching = if is_return { call_at[i] } else { NONE };
        if is_return {
            list[call_at[i]].matching = at;
        } else {
            call_at[i] = at;
        }
        list.push(Entry { call: i, is_return, matching, prev: at - 1, next: if at < events.len() { at + 1 } else { NONE } });
    }
    list[HEAD].next = if events.is_empty() { NONE } else { 1 };

    let words = calls.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = initial;
    let mut entry = list[HEAD].next;
    let mut best = 0usize;
    let mut steps = 0u64;
    while list[HEAD].next != NONE {
        steps += 1;
        if steps.is_multiple_of(4096) && started.elapsed() > budget {
            return Verdict::TooHard;
        }
        let e = &list[entry];
        if !e.is_return {
            let c = calls[e.call];
            let tried = step(state, c.op, c.ret).and_then(|next| {
                let mut lin = linearized.clone();
                lin[e.call / 64] |= 1 << (e.call % 64);
                cache.insert((lin.clone(), next)).then_some((lin, next))
            });
            match tried {
                Some((lin, next)) => {
                    stack.push((entry, state));
                    state = next;
                    linearized = lin;
                    lift(&mut list, entry);
                    best = best.max(stack.len());
                    entry = list[HEAD].next;
                }
                None => entry = list[entry].next,
            }
        } else {
            // The return of an operation not linearized yet: undo the last choice.
            let Some((back, previous)) = stack.pop() else {
                return Verdict::NotLinearizable { linearized: best };
            };
            state = previous;
            let i = list[back].call;
            linearized[i / 64] &= !(1 << (i % 64));
            unlift(&mut list, back);
            entry = list[back].next;
        }
    }
    Verdict::Linearizable
}

fn lift(list: &mut [Entry], call: usize) {
    let (prev, next) = (list[call].prev, list[call].next);
    list[prev].next = next;
    if next != NONE {
        list[next].prev = prev;
    }
    let ret = list[call].matching;
    let (prev, next) = (list[ret].prev, list[ret].next);
    list[prev].next = next;
    if next != NONE {
        list[next].prev = prev;
    }
}

fn unlift(list: &mut [Entry], call: usize) {
    let ret = list[call].matching;
    let (prev, next) = (list[ret].prev, list[ret].next);
    list[prev].next = ret;
    if next != NONE {
        list[next].prev = ret;
    }
    let (prev, next) = (list[call].prev, list[call].next);
    list[prev].next = call;
    if next != NONE {
        list[next].prev = call;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(op: Op, ret: Option<Ret>, invoke: u64, complete: u64) -> Call {
        Call { op, ret, invoke, complete }
    }
    const B: Duration = Duration::from_secs(5);
    fn read(v: Option<u64>, i: u64, e: u64) -> Call {
        c(Op::Read, Some(Ret::Value(v)), i, e)
    }

    #[test]
    fn sequential_and_concurrent_histories_that_are_linearizable() {
        // set 1; read 1; cas 1->2; incr -> 3; delete; read none
        let h = [
            c(Op::Set(1), Some(Ret::Stored), 0, 1),
            read(Some(1), 2, 3),
            c(Op::Cas { expect: 1, new: 2 }, Some(Ret::Stored), 4, 5),
            c(Op::Incr, Some(Ret::Incremented(3)), 6, 7),
            c(Op::Delete, Some(Ret::Deleted), 8, 9),
            read(None, 10, 11),
        ];
        assert_eq!(check(&h, None, B), Verdict::Linearizable);
        // Two overlapping writes; reads see them in the order the second write then the first.
        let h = [
            c(Op::Set(1), Some(Ret::Stored), 0, 10),
            c(Op::Set(2), Some(Ret::Stored), 1, 9),
            read(Some(2), 2, 3),
            read(Some(1), 11, 12),
        ];
        assert_eq!(check(&h, None, B), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_is_not_linearizable() {
        let h = [c(Op::Set(1), Some(Ret::Stored), 0, 1), c(Op::Set(2), Some(Ret::Stored), 2, 3), read(Some(1), 4, 5)];
        assert!(matches!(check(&h, None, B), Verdict::NotLinearizable { .. }));
        // A read of a value never written.
        let h = [c(Op::Set(1), Some(Ret::Stored), 0, 1), read(Some(9), 2, 3)];
        assert!(matches!(check(&h, None, B), Verdict::NotLinearizable { .. }));
        // Two CAS from the same value both succeed: a lost update.
        let h = [
            c(Op::Set(1), Some(Ret::Stored), 0, 1),
            c(Op::Cas { expect: 1, new: 2 }, Some(Ret::Stored), 2, 5),
            c(Op::Cas { expect: 1, new: 3 }, Some(Ret::Stored), 3, 6),
        ];
        assert!(matches!(check(&h, None, B), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_have_happened() {
        // The unknown set took effect (after the first read) ...
        let h = [
            c(Op::Set(1), Some(Ret::Stored), 0, 1),
            c(Op::Set(2), None, 2, 3),
            read(Some(1), 4, 5),
            read(Some(2), 6, 7),
        ];
        assert_eq!(check(&h, None, B), Verdict::Linearizable);
        // ... or never did.
        let h = [c(Op::Set(1), Some(Ret::Stored), 0, 1), c(Op::Set(2), None, 2, 3), read(Some(1), 40, 50)];
        assert_eq!(check(&h, None, B), Verdict::Linearizable);
        // An unknown incr and an unknown delete, both ambiguous: 5 then 6 then absent.
        let h = [
            c(Op::Set(5), Some(Ret::Stored), 0, 1),
            c(Op::Incr, None, 2, 3),
            c(Op::Delete, None, 2, 3),
            read(Some(6), 4, 5),
            read(None, 6, 7),
        ];
        assert_eq!(check(&h, None, B), Verdict::Linearizable);
    }

    #[test]
    fn unknown_outcomes_do_not_excuse_everything() {
        // The unknown set of 2 may explain reading 2, but not reading 1 after it.
        let h = [
            c(Op::Set(1), Some(Ret::Stored), 0, 1),
            c(Op::Set(2), None, 2, 3),
            read(Some(2), 4, 5),
            read(Some(1), 6, 7),
        ];
        assert!(matches!(check(&h, None, B), Verdict::NotLinearizable { .. }));
        // An acknowledged write lost: the only delete (unknown) was invoked after the read
        // that missed, so it cannot explain the miss.
        let h = [
            c(Op::Set(1), Some(Ret::Stored), 0, 1),
            read(None, 2, 3),
            c(Op::Delete, None, 4, 5),
        ];
        assert!(matches!(check(&h, None, B), Verdict::NotLinearizable { .. }));
        // But an unknown delete invoked before the write may still land after it (it may
        // have been in flight all along): that history is linearizable.
        let h = [c(Op::Delete, None, 0, 1), c(Op::Set(1), Some(Ret::Stored), 2, 3), read(None, 4, 5)];
        assert_eq!(check(&h, None, B), Verdict::Linearizable);
        // An unknown incr applies once, not twice.
        let h = [c(Op::Set(5), Some(Ret::Stored), 0, 1), c(Op::Incr, None, 2, 3), read(Some(7), 4, 5)];
        assert!(matches!(check(&h, None, B), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn a_hard_history_gives_a_verdict_within_its_budget() {
        // Many concurrent unknown writes and a read no order can explain.
        let mut h: Vec<Call> = (0..200).map(|i| c(Op::Set(i), None, i, i + 1)).collect();
        h.push(read(Some(9999), 500, 501));
        let started = Instant::now();
        let v = check(&h, None, Duration::from_millis(200));
        assert!(matches!(v, Verdict::TooHard | Verdict::NotLinearizable { .. }), "{v:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
