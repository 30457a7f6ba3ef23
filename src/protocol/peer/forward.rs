//! Forwarded storage commands and their outcomes.
//!
//! A node that does not own a key's partition sends the storage command itself (not the
//! client's bytes) to the owner, and gets back the shard's outcome (not a reply in the
//! client's protocol): the node the client is connected to encodes the reply. So the owner
//! needs no knowledge of the client's protocol, and one request is one frame each way
//! whatever the protocol. The request's vbucket field holds the partition, its opaque the
//! link's request number, its CAS the command's CAS. Byte tables:
//! `protocol-spec/peer-protocol.md`.

use super::{write_frame, Fields, Frame, Op};
use crate::protocol::binary::{MAX_KEY_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};
use crate::protocol::Durability;
use crate::storage::{Command, Outcome, StoreMode};

/// Extras lengths of forwarded requests.
pub const STORE_EXTRAS: usize = 12;
/// Extras lengths of VALUE and COUNTER outcomes.
pub const VALUE_EXTRAS: usize = 4;
pub const COUNTER_EXTRAS: usize = 8;
pub const ARITH_EXTRAS: usize = 28;
pub const EXPIRY_EXTRAS: usize = 4;

/// ARITH flag bits.
const ARITH_INCR: u8 = 1;
const ARITH_CREATE: u8 = 2;
const ARITH_THEN_TOUCH: u8 = 4;

/// Outcome codes: the status field of a forwarded request's response.
pub mod code {
    pub const VALUE: u16 = 0x0000;
    pub const NOT_FOUND: u16 = 0x0001;
    pub const EXISTS: u16 = 0x0002;
    pub const TOO_LARGE: u16 = 0x0003;
    pub const NOT_STORED: u16 = 0x0005;
    pub const NON_NUMERIC: u16 = 0x0006;
    /// The responder's map does not make it the partition's primary: the request was not run.
    pub const NOT_MY_PARTITION: u16 = 0x0007;
    pub const DONE: u16 = 0x0010;
    pub const COUNTER: u16 = 0x0011;
    pub const OUT_OF_MEMORY: u16 = 0x0082;
    pub const STORAGE_ERROR: u16 = 0x0084;
    pub const TEMPORARY_FAILURE: u16 = 0x0086;
    pub const DURABILITY_IMPOSSIBLE: u16 = 0x00a1;
    pub const SYNC_WRITE_AMBIGUOUS: u16 = 0x00a3;
}

/// A forwarded command: what the owner runs, and the touch meta `ma ... T` asks for right
/// after a successful arithmetic on the same shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded<'a> {
    pub partition: u16,
    pub opaque: u32,
    pub cmd: Command<&'a [u8]>,
    pub then_touch: Option<u32>,
    /// The durability the client asked for (`None`: the cluster's default).
    pub durability: Option<Durability>,
}

/// Why a request frame is not a forwarded command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

pub fn write_request(out: &mut Vec<u8>, partition: u16, opaque: u32, cmd: &Command<&[u8]>, then_touch: Option<u32>, durability: Option<Durability>) {
    let start = out.len();
    let frame = |out: &mut Vec<u8>, op, cas, extras: &[u8], key: &[u8], value: &[u8]| {
        write_frame(out, REQUEST_MAGIC, op, partition, opaque, cas, extras, key, value)
    };
    match *cmd {
        Command::Get { key } => frame(out, Op::Get, 0, &[], key, &[]),
        Command::GetAndTouch { key, exptime } => frame(out, Op::GetAndTouch, 0, &exptime.to_be_bytes(), key, &[]),
        Command::Touch { key, exptime } => frame(out, Op::Touch, 0, &exptime.to_be_bytes(), key, &[]),
        Command::Store { mode, key, value, flags, exptime, cas } => {
            let mut x = [0u8; STORE_EXTRAS];
            x[0..4].copy_from_slice(&flags.to_be_bytes());
            x[4..8].copy_from_slice(&exptime.to_be_bytes());
            x[8] = match mode {
                StoreMode::Set => 0,
                StoreMode::Add => 1,
                StoreMode::Replace => 2,
                StoreMode::Append => 3,
                StoreMode::Prepend => 4,
            };
            frame(out, Op::Store, cas, &x, key, value)
        }
        Command::Delete { key, cas } => frame(out, Op::Delete, cas, &[], key, &[]),
        Command::Arith { incr, key, delta, initial, exptime, cas } => {
            let mut x = [0u8; ARITH_EXTRAS];
            x[0..8].copy_from_slice(&delta.to_be_bytes());
            x[8..16].copy_from_slice(&initial.unwrap_or(0).to_be_bytes());
            x[16..20].copy_from_slice(&exptime.to_be_bytes());
            x[20..24].copy_from_slice(&then_touch.unwrap_or(0).to_be_bytes());
            x[24] = (incr as u8 * ARITH_INCR)
                | (initial.is_some() as u8 * ARITH_CREATE)
                | (then_touch.is_some() as u8 * ARITH_THEN_TOUCH);
            frame(out, Op::Arith, cas, &x, key, &[])
        }
        Command::Flush { delay } => frame(out, Op::Flush, 0, &delay.to_be_bytes(), &[], &[]),
    }
    // The client's durability level rides in `data_type` (0: the cluster's default).
    out[start + crate::protocol::binary::header::OFF_DATA_TYPE] = Durability::peer_code(durability);
}

/// The command a forwarded request frame carries.
/// A key is 1..=250 bytes, as on every client protocol: the shard and the log take no other
/// (a longer key on disk reads as corruption).
pub fn parse_request<'a>(f: &Frame<'a>) -> Result<Forwarded<'a>, Malformed> {
    if !f.is_request() {
        return Err(Malformed("a response where a request belongs"));
    }
    let op = f.op().ok_or(Malformed("not a peer opcode"))?;
    let mut x = Fields::new(f.extras);
    let key = f.key;
    let need_key = |ok: bool| if ok && (1..=MAX_KEY_LEN).contains(&key.len()) { Ok(()) } else { Err(Malformed("a key of 1..=250 bytes is required")) };
    let mut then_touch = None;
    let cmd = match op {
        Op::Get | Op::GetReplica => {
            need_key(x.is_empty() && f.value.is_empty())?;
            Command::Get { key }
        }
        Op::GetAndTouch | Op::Touch => {
            let exptime = x.u32().ok_or(Malformed("expiry extras"))?;
            need_key(x.is_empty() && f.value.is_empty())?;
            match op {
                Op::Touch => Command::Touch { key, exptime },
                _ => Command::GetAndTouch { key, exptime },
            }
        }
        Op::Store => {
            if f.extras.len() != STORE_EXTRAS {
                return Err(Malformed("store extras"));
            }
            let (flags, exptime) = (x.u32().unwrap_or(0), x.u32().unwrap_or(0));
            let mode = match x.u8() {
                Some(0) => StoreMode::Set,
                Some(1) => StoreMode::Add,
                Some(2) => StoreMode::Replace,
                Some(3) => StoreMode::Append,
                Some(4) => StoreMode::Prepend,
                _ => return Err(Malformed("store mode")),
            };
            need_key(true)?;
            Command::Store { mode, key, value: f.value, flags, exptime, cas: f.header.cas }
        }
        Op::Delete => {
            need_key(x.is_empty() && f.value.is_empty())?;
            Command::Delete { key, cas: f.header.cas }
        }
        Op::Arith => {
            if f.extras.len() != ARITH_EXTRAS || !f.value.is_empty() {
                return Err(Malformed("arith extras"));
            }
            let (delta, initial, exptime, touch) = (x.u64().unwrap_or(0), x.u64().unwrap_or(0), x.u32().unwrap_or(0), x.u32().unwrap_or(0));
            let bits = x.u8().unwrap_or(0);
            if bits & ARITH_THEN_TOUCH != 0 {
                then_touch = Some(touch);
            }
            need_key(true)?;
            Command::Arith {
                incr: bits & ARITH_INCR != 0,
                key,
                delta,
                initial: (bits & ARITH_CREATE != 0).then_some(initial),
                exptime,
                cas: f.header.cas,
            }
        }
        Op::Flush => {
            let delay = x.u32().ok_or(Malformed("flush extras"))?;
            if !x.is_empty() || !key.is_empty() || !f.value.is_empty() {
                return Err(Malformed("flush takes no key or value"));
            }
            Command::Flush { delay }
        }
        Op::Hello | Op::Auth => return Err(Malformed("a handshake frame on an open link")),
        Op::ReplOpen | Op::ReplChanges | Op::ReplVerify => return Err(Malformed("a replication frame is not a forwarded command")),
    };
    let durability = Durability::from_peer_code(f.header.data_type).map_err(|_| Malformed("a durability level no level has"))?;
    Ok(Forwarded { partition: f.partition(), opaque: f.header.opaque, cmd, then_touch, durability })
}

/// Appends the response to a forwarded request: `op` and `opaque` of the request, its key
/// echoed, the outcome coded in the status.
pub fn write_outcome<V: AsRef<[u8]>>(out: &mut Vec<u8>, op: Op, opaque: u32, key: &[u8], outcome: &Outcome<V>) {
    let frame = |out: &mut Vec<u8>, status, cas, extras: &[u8], value: &[u8]| {
        write_frame(out, RESPONSE_MAGIC, op, status, opaque, cas, extras, key, value)
    };
    match outcome {
        Outcome::Value { flags, cas, value } => frame(out, code::VALUE, *cas, &flags.to_be_bytes(), value.as_ref()),
        Outcome::Done { cas } => frame(out, code::DONE, *cas, &[], &[]),
        Outcome::Counter { value, cas } => frame(out, code::COUNTER, *cas, &value.to_be_bytes(), &[]),
        Outcome::NotFound => frame(out, code::NOT_FOUND, 0, &[], &[]),
        Outcome::Exists => frame(out, code::EXISTS, 0, &[], &[]),
        Outcome::NotStored => frame(out, code::NOT_STORED, 0, &[], &[]),
        Outcome::NonNumeric => frame(out, code::NON_NUMERIC, 0, &[], &[]),
        Outcome::TooLarge => frame(out, code::TOO_LARGE, 0, &[], &[]),
        Outcome::OutOfMemory => frame(out, code::OUT_OF_MEMORY, 0, &[], &[]),
        Outcome::StorageError => frame(out, code::STORAGE_ERROR, 0, &[], &[]),
        Outcome::TemporaryFailure => frame(out, code::TEMPORARY_FAILURE, 0, &[], &[]),
        Outcome::SyncWriteAmbiguous => frame(out, code::SYNC_WRITE_AMBIGUOUS, 0, &[], &[]),
        Outcome::DurabilityImpossible => frame(out, code::DURABILITY_IMPOSSIBLE, 0, &[], &[]),
    }
}

/// Appends a refusal to run a request whose partition this node does not own.
pub fn write_not_my_partition(out: &mut Vec<u8>, op: Op, opaque: u32, key: &[u8]) {
    write_frame(out, RESPONSE_MAGIC, op, code::NOT_MY_PARTITION, opaque, 0, &[], key, &[]);
}

/// The outcome a response carries. A response that does not parse, and NOT_MY_PARTITION,
/// are a temporary failure to the client: the request may or may not be retried, but never
/// answered with something the owner did not say.
/// The extras of VALUE and COUNTER are exactly their length, and only VALUE has a value.
pub fn parse_outcome<'a>(f: &Frame<'a>) -> Result<Outcome<&'a [u8]>, Malformed> {
    if f.is_request() {
        return Err(Malformed("a request where a response belongs"));
    }
    let mut x = Fields::new(f.extras);
    let cas = f.header.cas;
    let no_body = f.extras.is_empty() && f.value.is_empty();
    let plain = |o: Outcome<&'a [u8]>| if no_body { Ok(o) } else { Err(Malformed("a body where none belongs")) };
    match f.status() {
        code::VALUE => {
            if f.extras.len() != VALUE_EXTRAS {
                return Err(Malformed("value extras"));
            }
            let flags = x.u32().ok_or(Malformed("value extras"))?;
            Ok(Outcome::Value { flags, cas, value: f.value })
        }
        code::DONE => plain(Outcome::Done { cas }),
        code::COUNTER => {
            if f.extras.len() != COUNTER_EXTRAS || !f.value.is_empty() {
                return Err(Malformed("counter extras"));
            }
            let value = x.u64().ok_or(Malformed("counter extras"))?;
            Ok(Outcome::Counter { value, cas })
        }
        code::NOT_FOUND => plain(Outcome::NotFound),
        code::EXISTS => plain(Outcome::Exists),
        code::NOT_STORED => plain(Outcome::NotStored),
        code::NON_NUMERIC => plain(Outcome::NonNumeric),
        code::TOO_LARGE => plain(Outcome::TooLarge),
        code::OUT_OF_MEMORY => plain(Outcome::OutOfMemory),
        code::STORAGE_ERROR => plain(Outcome::StorageError),
        code::TEMPORARY_FAILURE | code::NOT_MY_PARTITION => plain(Outcome::TemporaryFailure),
        code::SYNC_WRITE_AMBIGUOUS => plain(Outcome::SyncWriteAmbiguous),
        code::DURABILITY_IMPOSSIBLE => plain(Outcome::DurabilityImpossible),
        _ => Err(Malformed("unknown outcome code")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(cmd: Command<&[u8]>, then_touch: Option<u32>) {
        let mut out = Vec::new();
        write_request(&mut out, 513, 99, &cmd, then_touch, None);
        let (f, used) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(parse_request(&f), Ok(Forwarded { partition: 513, opaque: 99, cmd, then_touch, durability: None }));
    }

    #[test]
    fn every_command_round_trips() {
        round_trip(Command::Get { key: b"k" }, None);
        round_trip(Command::GetAndTouch { key: b"k", exptime: 7 }, None);
        round_trip(Command::Touch { key: b"k", exptime: 7 }, None);
        for mode in [StoreMode::Set, StoreMode::Add, StoreMode::Replace, StoreMode::Append, StoreMode::Prepend] {
            round_trip(Command::Store { mode, key: b"k", value: b"v\r\n", flags: u32::MAX, exptime: 3, cas: 1 << 40 }, None);
        }
        round_trip(Command::Delete { key: b"k", cas: 5 }, None);
        round_trip(Command::Arith { incr: true, key: b"k", delta: u64::MAX, initial: Some(4), exptime: 9, cas: 2 }, Some(30));
        round_trip(Command::Arith { incr: false, key: b"k", delta: 1, initial: None, exptime: 0, cas: 0 }, None);
        round_trip(Command::Flush { delay: 0 }, None);
    }

    #[test]
    fn every_outcome_round_trips() {
        let outcomes: [Outcome<&[u8]>; 11] = [
            Outcome::Value { flags: 3, cas: 9, value: b"abc" },
            Outcome::Done { cas: 10 },
            Outcome::Counter { value: 1 << 63, cas: 11 },
            Outcome::NotFound,
            Outcome::Exists,
            Outcome::NotStored,
            Outcome::NonNumeric,
            Outcome::TooLarge,
            Outcome::OutOfMemory,
            Outcome::StorageError,
            Outcome::TemporaryFailure,
        ];
        for o in outcomes {
            let mut out = Vec::new();
            write_outcome(&mut out, Op::Get, 4, b"key", &o);
            let (f, _) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
            assert_eq!((parse_outcome(&f), f.key, f.header.opaque), (Ok(o), &b"key"[..], 4));
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        let mut out = Vec::new();
        write_frame(&mut out, REQUEST_MAGIC, Op::Store, 0, 0, 0, &[0; 11], b"k", b"v");
        let (f, _) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
        assert!(parse_request(&f).is_err());
        let mut out = Vec::new();
        write_frame(&mut out, REQUEST_MAGIC, Op::Get, 0, 0, 0, &[], &[], &[]);
        let (f, _) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(parse_request(&f), Err(Malformed("a key of 1..=250 bytes is required")));
    }

    /// A peer could make the owner log a key its recovery reads as corruption.
    #[test]
    fn keys_over_250_bytes_are_refused() {
        let long = [b'k'; MAX_KEY_LEN + 1];
        let ok = &long[..MAX_KEY_LEN];
        for (key, fine) in [(&long[..], false), (ok, true)] {
            for cmd in [
                Command::Get { key },
                Command::Touch { key, exptime: 1 },
                Command::Store { mode: StoreMode::Set, key, value: b"v", flags: 0, exptime: 0, cas: 0 },
                Command::Delete { key, cas: 0 },
                Command::Arith { incr: true, key, delta: 1, initial: Some(0), exptime: 0, cas: 0 },
            ] {
                let mut out = Vec::new();
                write_request(&mut out, 0, 1, &cmd, None, None);
                let (f, _) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
                assert_eq!(parse_request(&f).is_ok(), fine, "{} bytes: {cmd:?}", key.len());
            }
        }
    }

    #[test]
    fn requests_and_responses_are_not_taken_for_each_other() {
        let mut out = Vec::new();
        write_request(&mut out, 0, 1, &Command::Get { key: b"k" }, None, None);
        let (f, _) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
        assert!(parse_outcome(&f).is_err(), "a GET request (status field 0) is no VALUE");
        let mut out = Vec::new();
        write_outcome::<&[u8]>(&mut out, Op::Get, 1, b"k", &Outcome::NotFound);
        let (f, _) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
        assert!(parse_request(&f).is_err(), "a response is no request");
    }

    #[test]
    fn value_and_counter_bodies_are_exact() {
        let bad: [(u16, &[u8], &[u8]); 4] =
            [(code::VALUE, &[0; 8], b"v"), (code::VALUE, &[], b"v"), (code::COUNTER, &[0; 12], &[]), (code::COUNTER, &[0; 8], b"v")];
        for (status, extras, value) in bad {
            let mut out = Vec::new();
            write_frame(&mut out, RESPONSE_MAGIC, Op::Get, status, 1, 0, extras, b"k", value);
            let (f, _) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
            assert!(parse_outcome(&f).is_err(), "{status:#06x} with {} extras, {} value bytes", extras.len(), value.len());
        }
    }
}
