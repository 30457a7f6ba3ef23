//! The register-with-CAS model one key is checked against: absent or a number.

use crate::history::{Op, Ret};

pub type State = Option<u64>;

/// The state after `op` from `state`, if `op` could have answered `ret` there; `ret` is
/// `None` for an operation whose outcome is unknown (any answer will do; whether it took
/// effect at all is the search's business: it may be linearized after everything else).
pub fn step(state: State, op: Op, ret: Option<Ret>) -> Option<State> {
    match (op, ret) {
        (Op::Read, Some(Ret::Value(v))) => (v == state).then_some(state),
        (Op::Read, None) => Some(state),
        (Op::Set(v), None | Some(Ret::Stored)) => Some(Some(v)),
        (Op::Cas { expect, new }, None) => Some(if state == Some(expect) { Some(new) } else { state }),
        (Op::Cas { expect, new }, Some(Ret::Stored)) => (state == Some(expect)).then_some(Some(new)),
        (Op::Cas { expect, .. }, Some(Ret::Exists)) => (state.is_some() && state != Some(expect)).then_some(state),
        (Op::Cas { .. } | Op::Delete | Op::Incr, Some(Ret::NotFound)) => state.is_none().then_some(state),
        (Op::Delete, None) => Some(None),
        (Op::Delete, Some(Ret::Deleted)) => state.is_some().then_some(None),
        (Op::Incr, None) => Some(state.map(|s| s.wrapping_add(1))),
        (Op::Incr, Some(Ret::Incremented(v))) => (state.map(|s| s.wrapping_add(1)) == Some(v)).then_some(Some(v)),
        // An answer this operation cannot give.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(step(None, Op::Read, Some(Ret::Value(None))), Some(None));
        assert_eq!(step(Some(1), Op::Read, Some(Ret::Value(None))), None);
        assert_eq!(step(Some(1), Op::Cas { expect: 1, new: 5 }, Some(Ret::Stored)), Some(Some(5)));
        assert_eq!(step(Some(2), Op::Cas { expect: 1, new: 5 }, Some(Ret::Stored)), None);
        assert_eq!(step(Some(2), Op::Cas { expect: 1, new: 5 }, Some(Ret::Exists)), Some(Some(2)));
        assert_eq!(step(None, Op::Cas { expect: 1, new: 5 }, Some(Ret::Exists)), None);
        assert_eq!(step(Some(1), Op::Cas { expect: 1, new: 5 }, None), Some(Some(5)));
        assert_eq!(step(Some(7), Op::Incr, Some(Ret::Incremented(8))), Some(Some(8)));
        assert_eq!(step(None, Op::Incr, Some(Ret::NotFound)), Some(None));
        assert_eq!(step(Some(7), Op::Delete, Some(Ret::NotFound)), None);
        assert_eq!(step(Some(7), Op::Delete, None), Some(None));
    }
}
