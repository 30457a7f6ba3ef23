//! What a binary request asks of the server, and the frames that answer it. No I/O.
//!
//! [`action`] turns a decoded [`Request`] into an [`Action`]: a storage [`Command`] for the
//! key's shard, or something the connection answers itself. [`write_outcome`] turns a
//! shard's [`Outcome`] into memcached's reply, on whichever core the shard ran.

use super::opcode::Opcode;
use super::request::{Request, RequestExtras};
use super::response::{write_error, write_response};
use super::status::Status;
use crate::storage::{Command, Outcome, StoreMode};

/// INCR/DECR with this expiry do not create a missing counter.
pub const ARITH_NO_CREATE: u32 = 0xffff_ffff;

/// The part of a request its reply echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub opcode: Opcode,
    pub opaque: u32,
    /// The durability the request asked for (`None`: the cluster's default).
    pub durability: Option<crate::protocol::Durability>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Run on the shard that owns the key (every shard for a flush).
    Storage(Command<&'a [u8]>),
    Noop,
    Version,
    Quit,
    /// `stats` with an optional group ("settings").
    Stat(&'a [u8]),
    Verbosity(u32),
    /// GET_REPLICA: a GET served by a node that holds a backup of the key.
    GetReplica(&'a [u8]),
}

pub fn action<'a>(req: &Request<'a>) -> Action<'a> {
    use Opcode::*;
    let key = req.key;
    let (exptime, flags) = match req.extras {
        RequestExtras::Store { flags, exptime } => (exptime, flags),
        RequestExtras::Expiry(e) => (e, 0),
        _ => (0, 0),
    };
    let store = |mode| Command::Store { mode, key, value: req.value, flags, exptime, cas: req.cas };
    Action::Storage(match req.opcode {
        Get | GetQ | GetK | GetKQ => Command::Get { key },
        Gat | GatQ | GatK | GatKQ => Command::GetAndTouch { key, exptime },
        Touch => Command::Touch { key, exptime },
        Set | SetQ => store(StoreMode::Set),
        Add | AddQ => store(StoreMode::Add),
        Replace | ReplaceQ => store(StoreMode::Replace),
        Append | AppendQ => store(StoreMode::Append),
        Prepend | PrependQ => store(StoreMode::Prepend),
        Delete | DeleteQ => Command::Delete { key, cas: req.cas },
        Increment | IncrementQ | Decrement | DecrementQ => {
            let RequestExtras::Arith { delta, initial, exptime } = req.extras else {
                unreachable!("decode gives INCR/DECR their 20 bytes of extras")
            };
            Command::Arith {
                incr: matches!(req.opcode, Increment | IncrementQ),
                key,
                delta,
                initial: (exptime != ARITH_NO_CREATE).then_some(initial),
                exptime,
                cas: req.cas,
            }
        }
        Flush | FlushQ => Command::Flush { delay: exptime },
        GetReplica => return Action::GetReplica(key),
        Noop => return Action::Noop,
        Version => return Action::Version,
        Quit | QuitQ => return Action::Quit,
        Stat => return Action::Stat(key),
        Verbosity => {
            let RequestExtras::Verbosity(level) = req.extras else { return Action::Verbosity(0) };
            return Action::Verbosity(level);
        }
        // decode rejects these before they get here.
        SaslListMechs | SaslAuth | SaslStep | Unknown(_) => return Action::Noop,
    })
}

/// Appends the reply to a shard's outcome (nothing for a quiet success or a quiet miss).
pub fn write_outcome<V: AsRef<[u8]>>(out: &mut Vec<u8>, to: ReplyTo, key: &[u8], outcome: &Outcome<V>) {
    use Opcode::*;
    let quiet = to.opcode.is_quiet();
    let error = |out: &mut Vec<u8>, status| write_error(out, to.opcode, to.opaque, status);
    match *outcome {
        Outcome::Value { flags, cas, ref value } => {
            let flags = flags.to_be_bytes();
            let key = if to.opcode.returns_key() { key } else { &[] };
            let value = if to.opcode == Touch { &[][..] } else { value.as_ref() };
            write_response(out, to.opcode, to.opaque, Status::NoError, cas, &flags, key, value);
        }
        Outcome::Done { cas } if !quiet => write_response(out, to.opcode, to.opaque, Status::NoError, cas, &[], &[], &[]),
        Outcome::Counter { value, cas } if !quiet => {
            write_response(out, to.opcode, to.opaque, Status::NoError, cas, &[], &[], &value.to_be_bytes())
        }
        Outcome::Done { .. } | Outcome::Counter { .. } => {}
        Outcome::NotFound => match to.opcode {
            GetQ | GetKQ | GatQ | GatKQ => {}
            GetK | GatK => write_response(out, to.opcode, to.opaque, Status::KeyNotFound, 0, &[], key, &[]),
            _ => error(out, Status::KeyNotFound),
        },
        Outcome::Exists => error(out, Status::KeyExists),
        // memcached's binary ADD answers "exists", REPLACE "not found" (complete_update_bin).
        Outcome::NotStored => match to.opcode {
            Add | AddQ => error(out, Status::KeyExists),
            Replace | ReplaceQ => error(out, Status::KeyNotFound),
            _ => error(out, Status::ItemNotStored),
        },
        Outcome::NonNumeric => error(out, Status::NonNumeric),
        Outcome::TooLarge => error(out, Status::ValueTooLarge),
        Outcome::OutOfMemory => error(out, Status::OutOfMemory),
        Outcome::StorageError => error(out, Status::InternalError),
        Outcome::TemporaryFailure => error(out, Status::TemporaryFailure),
        Outcome::SyncWriteAmbiguous => error(out, Status::SyncWriteAmbiguous),
        Outcome::DurabilityImpossible => error(out, Status::DurabilityImpossible),
    }
}

/// A reply with no body: NOOP, VERSION's header, VERBOSITY, QUIT.
pub fn write_ok(out: &mut Vec<u8>, to: ReplyTo, value: &[u8]) {
    write_response(out, to.opcode, to.opaque, Status::NoError, 0, &[], &[], value);
}

/// STAT's reply: one frame per statistic, then one with an empty key.
pub fn write_stats<'s>(out: &mut Vec<u8>, to: ReplyTo, stats: impl IntoIterator<Item = (&'s str, String)>) {
    for (name, value) in stats {
        write_response(out, to.opcode, to.opaque, Status::NoError, 0, &[], name.as_bytes(), value.as_bytes());
    }
    write_response(out, to.opcode, to.opaque, Status::NoError, 0, &[], &[], &[]);
}

#[cfg(test)]
mod tests {
    use super::super::response::Response;
    use super::*;

    fn reply(opcode: Opcode, outcome: Outcome<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        write_outcome(&mut out, ReplyTo { opcode, opaque: 5, durability: None }, b"key", &outcome);
        out
    }

    fn decoded(bytes: &[u8]) -> Response<'_> {
        let (r, used) = Response::decode(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        r
    }

    #[test]
    fn hits_carry_flags_and_the_key_when_asked() {
        let hit = Outcome::Value { flags: 0xabcd, cas: 9, value: &b"v"[..] };
        let r = reply(Opcode::Get, hit);
        let r = decoded(&r);
        assert_eq!((r.extras, r.key, r.value, r.cas, r.opaque), (&[0, 0, 0xab, 0xcd][..], &b""[..], &b"v"[..], 9, 5));
        let r = reply(Opcode::GetK, hit);
        assert_eq!(decoded(&r).key, b"key");
        let r = reply(Opcode::Touch, hit);
        assert_eq!(decoded(&r).value, b"");
    }

    #[test]
    fn quiet_misses_and_successes_are_silent_but_errors_are_not() {
        assert!(reply(Opcode::GetQ, Outcome::NotFound).is_empty());
        assert!(reply(Opcode::GetKQ, Outcome::NotFound).is_empty());
        assert!(reply(Opcode::SetQ, Outcome::Done { cas: 1 }).is_empty());
        assert!(reply(Opcode::IncrementQ, Outcome::Counter { value: 1, cas: 1 }).is_empty());
        assert_eq!(decoded(&reply(Opcode::DeleteQ, Outcome::NotFound)).status, Status::KeyNotFound);
        assert_eq!(decoded(&reply(Opcode::AddQ, Outcome::NotStored)).status, Status::KeyExists);
    }

    #[test]
    fn misses_and_not_stored_map_like_memcached() {
        let r = reply(Opcode::Get, Outcome::NotFound);
        assert_eq!((decoded(&r).status, decoded(&r).value), (Status::KeyNotFound, &b"Not found"[..]));
        let r = reply(Opcode::GetK, Outcome::NotFound);
        assert_eq!((decoded(&r).status, decoded(&r).key, decoded(&r).value), (Status::KeyNotFound, &b"key"[..], &b""[..]));
        assert_eq!(decoded(&reply(Opcode::Replace, Outcome::NotStored)).status, Status::KeyNotFound);
        assert_eq!(decoded(&reply(Opcode::Append, Outcome::NotStored)).status, Status::ItemNotStored);
        assert_eq!(decoded(&reply(Opcode::Increment, Outcome::NonNumeric)).status, Status::NonNumeric);
        assert_eq!(decoded(&reply(Opcode::Set, Outcome::OutOfMemory)).status, Status::OutOfMemory);
        assert_eq!(decoded(&reply(Opcode::Set, Outcome::TooLarge)).status, Status::ValueTooLarge);
        assert_eq!(decoded(&reply(Opcode::Set, Outcome::Exists)).status, Status::KeyExists);
    }

    #[test]
    fn counter_is_eight_bytes_big_endian() {
        let r = reply(Opcode::Increment, Outcome::Counter { value: 258, cas: 3 });
        assert_eq!(decoded(&r).value, &[0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn arith_no_create_expiry() {
        let req = Request {
            opcode: Opcode::Increment,
            data_type: 0,
            vbucket: 0,
            opaque: 0,
            cas: 0,
            extras: RequestExtras::Arith { delta: 1, initial: 5, exptime: ARITH_NO_CREATE },
            key: b"k",
            value: b"",
            durability: None,
        };
        assert!(matches!(action(&req), Action::Storage(Command::Arith { initial: None, .. })));
    }

    #[test]
    fn stats_end_with_an_empty_frame() {
        let mut out = Vec::new();
        write_stats(&mut out, ReplyTo { opcode: Opcode::Stat, opaque: 1, durability: None }, [("pid", "1".to_string())]);
        let (first, used) = Response::decode(&out).unwrap().unwrap();
        assert_eq!((first.key, first.value), (&b"pid"[..], &b"1"[..]));
        let last = decoded(&out[used..]);
        assert!(last.key.is_empty() && last.value.is_empty());
    }
}
