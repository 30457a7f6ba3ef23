//! Every binary opcode, generated from the opcode table itself (issue 18): each byte that
//! `Opcode::from_u8` knows is sent in four situations, and its reply checked against
//! [`expect`], a `match` with no catch-all, so an opcode added to the table without a case
//! here does not compile.
//!
//! The situations: the key holds an item (`Hit`), it does not (`Miss`), the item is there
//! but the log cannot be written (`Failing`: every fsync fails), and the request carries a
//! CAS that is not the item's (`StaleCas`). What is checked: whether a reply comes at all
//! (quiet variants are silent on success, and the GET family on a miss), its status, the
//! echoed opcode and opaque, the CAS (the item's, a new one, or 0), the key (only the K
//! variants echo it) and the value.

mod gate;
mod wire;

use std::time::{Duration, Instant};

use caskade::protocol::binary::{Opcode, Request, RequestExtras, Status};
use gate::Node;
use wire::{Reply, Wire};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Situation {
    Hit,
    Miss,
    Failing,
    StaleCas,
}

const SITUATIONS: [Situation; 4] = [Situation::Hit, Situation::Miss, Situation::Failing, Situation::StaleCas];

/// The item's value: a number, so INCR and DECR have something to count.
const VALUE: &[u8] = b"10";
const FLAGS: u32 = 0xdead;

#[derive(Clone, Copy, Debug)]
enum Cas {
    /// The stored item's.
    Item,
    /// Higher than the stored item's: the command wrote a record.
    New,
    /// Not 0, not checked further.
    NonZero,
    Zero,
}

#[derive(Clone, Copy, Debug)]
enum Value {
    Is(&'static [u8]),
    /// A counter's eight bytes.
    Counter(u64),
    /// Not checked (an error's message, VERSION).
    Any,
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// No reply at all.
    Silent,
    Reply { status: Status, key: bool, cas: Cas, value: Value },
    /// STAT's frames, the last with an empty key.
    Stats,
    /// A reply (unless quiet), then the connection is closed.
    Closes { quiet: bool },
}

fn ok(cas: Cas, value: Value) -> Expect {
    Expect::Reply { status: Status::NoError, key: false, cas, value }
}

fn ok_key(cas: Cas, value: Value) -> Expect {
    Expect::Reply { status: Status::NoError, key: true, cas, value }
}

fn err(status: Status) -> Expect {
    Expect::Reply { status, key: false, cas: Cas::Zero, value: Value::Any }
}

const STORED: Expect = Expect::Reply { status: Status::NoError, key: false, cas: Cas::New, value: Value::Is(b"") };
const DISK: Status = Status::InternalError;

/// What `op` answers in each situation. No `_` arm: a new opcode needs its own row.
fn expect(op: Opcode, s: Situation) -> Expect {
    use Opcode::*;
    use Situation::*;
    let hit = ok(Cas::Item, Value::Is(VALUE));
    let hit_k = ok_key(Cas::Item, Value::Is(VALUE));
    let touched = ok(Cas::NonZero, Value::Is(VALUE));
    let touched_k = ok_key(Cas::NonZero, Value::Is(VALUE));
    let not_found = Expect::Reply { status: Status::KeyNotFound, key: false, cas: Cas::Zero, value: Value::Is(b"Not found") };
    let not_found_k = Expect::Reply { status: Status::KeyNotFound, key: true, cas: Cas::Zero, value: Value::Is(b"") };
    let quiet_stored = Expect::Silent;
    match (op, s) {
        // Reads: a failing disk and a client's CAS change nothing.
        (Get, Hit | Failing | StaleCas) => hit,
        (Get, Miss) => not_found,
        // A single node has no backup copy to read.
        (GetReplica, _) => err(Status::TemporaryFailure),
        (GetQ, Hit | Failing | StaleCas) => hit,
        (GetQ, Miss) => Expect::Silent,
        (GetK, Hit | Failing | StaleCas) => hit_k,
        (GetK, Miss) => not_found_k,
        (GetKQ, Hit | Failing | StaleCas) => hit_k,
        (GetKQ, Miss) => Expect::Silent,
        // Get-and-touch writes a record: the disk's failure is the client's.
        (Gat, Hit | StaleCas) => touched,
        (Gat, Miss) => not_found,
        (GatQ, Hit | StaleCas) => touched,
        (GatQ, Miss) => Expect::Silent,
        (GatK, Hit | StaleCas) => touched_k,
        (GatK, Miss) => not_found_k,
        (GatKQ, Hit | StaleCas) => touched_k,
        (GatKQ, Miss) => Expect::Silent,
        (Touch, Hit | StaleCas) => ok(Cas::NonZero, Value::Is(b"")),
        (Touch, Miss) => not_found,
        (Gat | GatQ | GatK | GatKQ | Touch, Failing) => err(DISK),
        // Stores.
        (Set, Hit | Miss) => STORED,
        (SetQ, Hit | Miss) => quiet_stored,
        (Add, Hit) | (AddQ, Hit) => err(Status::KeyExists),
        (Add, Miss) => STORED,
        (AddQ, Miss) => quiet_stored,
        (Replace, Hit) => STORED,
        (ReplaceQ, Hit) => quiet_stored,
        (Replace | ReplaceQ, Miss) => err(Status::KeyNotFound),
        (Append | Prepend, Hit) => STORED,
        (AppendQ | PrependQ, Hit) => quiet_stored,
        (Append | AppendQ | Prepend | PrependQ, Miss) => err(Status::ItemNotStored),
        (Delete, Hit) => ok(Cas::Zero, Value::Is(b"")),
        (DeleteQ, Hit) => quiet_stored,
        (Delete | DeleteQ, Miss) => err(Status::KeyNotFound),
        (Increment, Hit) => ok(Cas::New, Value::Counter(11)),
        (Decrement, Hit) => ok(Cas::New, Value::Counter(9)),
        // A missing counter is created with the initial value (5 here).
        (Increment | Decrement, Miss) => ok(Cas::NonZero, Value::Counter(5)),
        (IncrementQ | DecrementQ, Hit | Miss) => Expect::Silent,
        // ADD of a key that is there appends nothing: its answer stands whatever the disk does.
        (Add | AddQ, Failing) => err(Status::KeyExists),
        (Set | SetQ | Replace | ReplaceQ | Append | AppendQ | Prepend | PrependQ, Failing) => err(DISK),
        (Delete | DeleteQ | Increment | IncrementQ | Decrement | DecrementQ, Failing) => err(DISK),
        // A CAS that is not the item's: EXISTS, quiet or not (finding 4 of issue 18).
        (Set | SetQ | Add | AddQ | Replace | ReplaceQ | Append | AppendQ | Prepend | PrependQ, StaleCas) => {
            err(Status::KeyExists)
        }
        (Delete | DeleteQ | Increment | IncrementQ | Decrement | DecrementQ, StaleCas) => err(Status::KeyExists),
        // A flush writes a marker.
        (Flush, Hit | Miss | StaleCas) => ok(Cas::Zero, Value::Is(b"")),
        (FlushQ, Hit | Miss | StaleCas) => Expect::Silent,
        (Flush | FlushQ, Failing) => err(DISK),
        // Answered by the connection.
        (Noop | Verbosity, _) => ok(Cas::Zero, Value::Is(b"")),
        (Version, _) => ok(Cas::Zero, Value::Any),
        (Stat, _) => Expect::Stats,
        (Quit, _) => Expect::Closes { quiet: false },
        (QuitQ, _) => Expect::Closes { quiet: true },
        (SaslListMechs | SaslAuth | SaslStep, _) => err(Status::UnknownCommand),
        (Unknown(_), _) => err(Status::UnknownCommand),
    }
}

fn set_request(key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    wire::encode(&[wire::request(Opcode::Set, key, value, RequestExtras::Store { flags: FLAGS, exptime: 0 }, opaque)])
}

/// The request of `op` on `key`, shaped as its opcode requires.
fn request(op: Opcode, key: &[u8], cas: u64, opaque: u32) -> Vec<u8> {
    use Opcode::*;
    let (extras, key, value): (RequestExtras, &[u8], &[u8]) = match op {
        Set | SetQ | Add | AddQ | Replace | ReplaceQ => (RequestExtras::Store { flags: FLAGS, exptime: 0 }, key, b"20"),
        Append | AppendQ | Prepend | PrependQ => (RequestExtras::None, key, b"0"),
        Increment | IncrementQ | Decrement | DecrementQ => (RequestExtras::Arith { delta: 1, initial: 5, exptime: 0 }, key, b""),
        Touch | Gat | GatQ | GatK | GatKQ => (RequestExtras::Expiry(0), key, b""),
        Verbosity => (RequestExtras::Verbosity(0), b"", b""),
        Flush | FlushQ | Noop | Version | Quit | QuitQ | Stat => (RequestExtras::None, b"", b""),
        _ => (RequestExtras::None, key, b""),
    };
    let mut out = Vec::new();
    Request { opcode: op, data_type: 0, vbucket: 0, opaque, cas, extras, key, value, durability: None }.encode(&mut out);
    out
}

const NOOP_OPAQUE: u32 = 0xfeed;

/// Stores the item; its CAS.
fn store(w: &mut Wire, key: &[u8]) -> u64 {
    w.send(&set_request(key, VALUE, 1));
    let r = w.recv();
    assert_eq!(r.status, Status::NoError, "store {key:?}");
    r.cas
}

/// SETs until one is acknowledged: the log works again.
fn until_writable(w: &mut Wire) {
    let deadline = Instant::now() + gate::PATIENCE;
    loop {
        w.send(&set_request(b"probe", b"p", 2));
        if w.recv().status == Status::NoError {
            return;
        }
        assert!(Instant::now() < deadline, "writes still refused after the disk healed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check_reply(what: &str, r: &Reply, op: Opcode, opaque: u32, key: &[u8], item_cas: u64, want: Expect) {
    let Expect::Reply { status, key: echoes_key, cas, value } = want else { unreachable!() };
    assert_eq!((r.opcode, r.opaque, r.status), (op, opaque, status), "{what}: {r:?}");
    let want_key: &[u8] = if echoes_key { key } else { b"" };
    assert_eq!(r.key, want_key, "{what}: key");
    match cas {
        Cas::Item => assert_eq!(r.cas, item_cas, "{what}: CAS"),
        Cas::New => assert!(r.cas > item_cas, "{what}: CAS {} not above the item's {item_cas}", r.cas),
        Cas::NonZero => assert_ne!(r.cas, 0, "{what}: CAS"),
        Cas::Zero => assert_eq!(r.cas, 0, "{what}: CAS"),
    }
    match value {
        Value::Is(v) => assert_eq!(r.value, v, "{what}: value"),
        Value::Counter(n) => assert_eq!(r.value, n.to_be_bytes(), "{what}: counter"),
        Value::Any => {}
    }
    if status == Status::NoError && matches!(op, Opcode::Get | Opcode::GetQ | Opcode::GetK | Opcode::GetKQ | Opcode::Gat | Opcode::GatQ | Opcode::GatK | Opcode::GatKQ) {
        assert_eq!(r.extras, FLAGS.to_be_bytes(), "{what}: flags");
    }
}

/// Runs `op` in situation `s` on a fresh connection and checks everything it answers.
fn run(node: &Node, op: Opcode, s: Situation) {
    let what = format!("{op:?} ({:#04x}), {s:?}", op.to_u8());
    let key = format!("key-{:02x}-{s:?}", op.to_u8()).into_bytes();
    let mut w = Wire::connect(node.addr);
    let item_cas = match s {
        Situation::Miss => 0,
        _ => store(&mut w, &key),
    };
    if s == Situation::Failing {
        node.gate.fail();
        // The first write to meet the failing fsync; from then on the log refuses writes.
        w.send(&set_request(b"trigger", b"t", 3));
        assert_eq!(w.recv().status, Status::InternalError, "{what}: the write that met the failed fsync");
    }
    let cas = if s == Situation::StaleCas { item_cas + 1000 } else { 0 };
    let opaque = 0x1000 + op.to_u8() as u32;
    let mut bytes = request(op, &key, cas, opaque);
    bytes.extend(wire::noop(NOOP_OPAQUE));
    w.send(&bytes);
    let want = expect(op, s);
    match want {
        Expect::Silent => {}
        Expect::Reply { .. } => check_reply(&what, &w.recv(), op, opaque, &key, item_cas, want),
        Expect::Stats => loop {
            let r = w.recv();
            assert_eq!((r.opcode, r.opaque, r.status), (op, opaque, Status::NoError), "{what}: {r:?}");
            if r.key.is_empty() {
                break;
            }
        },
        Expect::Closes { quiet } => {
            if !quiet {
                check_reply(&what, &w.recv(), op, opaque, &key, 0, ok(Cas::Zero, Value::Is(b"")));
            }
            assert!(w.try_recv().is_none(), "{what}: the connection stays open");
        }
    }
    if !matches!(want, Expect::Closes { .. }) {
        // Nothing more than the reply expected: the NOOP's comes next.
        let r = w.recv();
        assert_eq!((r.opcode, r.opaque), (Opcode::Noop, NOOP_OPAQUE), "{what}: a reply where none was expected: {r:?}");
    }
    if s == Situation::Failing {
        node.gate.open();
        until_writable(&mut Wire::connect(node.addr));
    }
}

#[test]
fn every_opcode_in_every_situation() {
    // One core: the write that trips the failing disk and the command checked share a shard.
    let node = Node::start(1, "always");
    let known: Vec<Opcode> = (0..=255u8).map(Opcode::from_u8).filter(|op| !matches!(op, Opcode::Unknown(_))).collect();
    assert!(known.len() >= 36, "the table lost opcodes: {known:?}");
    // Every mismatch is reported, not only the first.
    let mut failed = Vec::new();
    for op in known.iter().copied().chain([Opcode::Unknown(0x30), Opcode::Unknown(0xff)]) {
        for s in SITUATIONS {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&node, op, s)));
            if let Err(e) = result {
                let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                failed.push(msg.unwrap_or_default());
                node.gate.open();
                until_writable(&mut Wire::connect(node.addr));
            }
        }
    }
    assert!(failed.is_empty(), "{} cases failed:\n{}", failed.len(), failed.join("\n"));
}
