//! `--fsync always`: no reply to a mutation before the fsync that covers it (issue 18).
//!
//! A node runs in this process on a file system whose fsyncs pass through a gate the test
//! holds (`tests/gate`). With the gate held, a pipeline of mutations is sent; the test waits
//! until every shard it touched has an fsync blocked on the gate, then checks that nothing
//! arrives. Opened, every reply arrives in request order; failed, every mutation gets the
//! error status (binary 0x84, text `SERVER_ERROR storage error`), never success, and the
//! replies after them in the pipeline do not overtake them.
//!
//! With two cores the connection lands on a core the kernel picks, so each case is run with
//! a key on core 0 and a key on core 1: one of them is owned by the connection's core, the
//! other by the other core, whose replies travel back through the mailbox. The pipelines mix
//! both.

mod gate;
mod text_wire;
mod wire;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use caskade::protocol::binary::{Opcode, RequestExtras, Status};
use gate::Node;
use text_wire::Text;
use wire::Wire;

#[derive(Clone, Copy, Debug)]
enum Proto {
    Binary,
    Text,
    Meta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The held fsync completes.
    Synced,
    /// The held fsync fails with EIO.
    Failed,
}

const PRE: &str = "pre";
const PRE_VALUE: &str = "pre";

/// One binary reply as the test expects it: opaque, status, value (`None`: not checked).
type Want = (u32, Status, Option<&'static [u8]>);

enum Client {
    Binary(Wire),
    Text(Text),
}

impl Client {
    fn connect(node: &Node, proto: Proto) -> Client {
        match proto {
            Proto::Binary => Client::Binary(Wire::connect(node.addr)),
            Proto::Text | Proto::Meta => Client::Text(Text::connect(node.addr)),
        }
    }

    fn assert_silent(&self, what: &str) {
        match self {
            Client::Binary(w) => gate::assert_silent(&w.stream, w.leftover(), what),
            Client::Text(t) => gate::assert_silent(&t.stream, t.buffered(), what),
        }
    }

    /// Stores `key` with the gate open; panics unless it is acknowledged.
    fn store(&mut self, key: &str, value: &str) {
        match self {
            Client::Binary(w) => {
                w.send(&wire::set(key.as_bytes(), value.as_bytes(), 99));
                let r = w.recv();
                assert_eq!((r.opaque, r.status), (99, Status::NoError), "set {key}");
            }
            Client::Text(t) => {
                t.send(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()));
                t.expect("STORED\r\n");
            }
        }
    }

    /// Tries one SET; true if it was acknowledged.
    fn try_store(&mut self, key: &str) -> bool {
        match self {
            Client::Binary(w) => {
                w.send(&wire::set(key.as_bytes(), b"again", 98));
                w.recv().status == Status::NoError
            }
            Client::Text(t) => {
                t.send(format!("set {key} 0 0 5\r\nagain\r\n"));
                let line = t.line();
                assert!(line == "STORED" || line.starts_with("SERVER_ERROR"), "{line}");
                line == "STORED"
            }
        }
    }
}

fn bin(opcode: Opcode, key: &str, value: &str, opaque: u32) -> Vec<u8> {
    let extras = match opcode {
        Opcode::Set | Opcode::SetQ => RequestExtras::Store { flags: 0, exptime: 0 },
        _ => RequestExtras::None,
    };
    wire::encode(&[wire::request(opcode, key.as_bytes(), value.as_bytes(), extras, opaque)])
}

/// The pipeline for `keys` (one key: a single SET; two: mutations of both keys, a quiet
/// one, a read and a non-storage command mixed), and what it is answered when the fsync
/// ends as `end`: for binary as [`Want`]s, for text as bytes.
fn pipeline(proto: Proto, keys: &[String], end: End) -> (Vec<u8>, Vec<Want>, String) {
    let ok = end == End::Synced;
    let mutation = if ok { Status::NoError } else { Status::InternalError };
    let text_ok = |reply: &str| if ok { reply.to_string() } else { "SERVER_ERROR storage error\r\n".to_string() };
    let (a, b) = (&keys[0], keys.get(1));
    let mut req = Vec::new();
    let (mut want, mut text) = (Vec::new(), String::new());
    match (proto, b) {
        (Proto::Binary, None) => {
            req.extend(bin(Opcode::Set, a, "va", 1));
            want.push((1, mutation, None));
        }
        (Proto::Text, None) => {
            req.extend(format!("set {a} 0 0 2\r\nva\r\n").bytes());
            text += &text_ok("STORED\r\n");
        }
        (Proto::Meta, None) => {
            req.extend(format!("ms {a} 2 O1\r\nva\r\n").bytes());
            text += &text_ok("HD O1\r\n");
        }
        (Proto::Binary, Some(b)) => {
            req.extend(bin(Opcode::Set, a, "va", 1));
            req.extend(bin(Opcode::Set, b, "vb", 2));
            req.extend(bin(Opcode::SetQ, a, "vc", 3));
            req.extend(bin(Opcode::Get, PRE, "", 4));
            req.extend(bin(Opcode::Set, b, "vd", 5));
            req.extend(bin(Opcode::Noop, "", "", 6));
            want.push((1, mutation, None));
            want.push((2, mutation, None));
            if !ok {
                // A quiet mutation is silent when it succeeds, not when it fails.
                want.push((3, mutation, None));
            }
            want.push((4, Status::NoError, Some(PRE_VALUE.as_bytes())));
            want.push((5, mutation, None));
            want.push((6, Status::NoError, None));
        }
        (Proto::Text, Some(b)) => {
            req.extend(format!("set {a} 0 0 2\r\nva\r\nset {b} 0 0 2\r\nvb\r\nset {a} 0 0 2 noreply\r\nvc\r\n").bytes());
            req.extend(format!("get {PRE}\r\nset {b} 0 0 2\r\nvd\r\nverbosity 1\r\n").bytes());
            text += &text_ok("STORED\r\n");
            text += &text_ok("STORED\r\n");
            // noreply hides success, never a failure.
            text += &text_ok("");
            text += &format!("VALUE {PRE} 0 {}\r\n{PRE_VALUE}\r\nEND\r\n", PRE_VALUE.len());
            text += &text_ok("STORED\r\n");
            text += "OK\r\n";
        }
        (Proto::Meta, Some(b)) => {
            req.extend(format!("ms {a} 2 O1\r\nva\r\nms {b} 2 O2\r\nvb\r\nms {a} 2 O3 q\r\nvc\r\n").bytes());
            req.extend(format!("mg {PRE} v O4\r\nms {b} 2 O5 k\r\nvd\r\nmn\r\n").bytes());
            text += &text_ok("HD O1\r\n");
            text += &text_ok("HD O2\r\n");
            text += &text_ok("");
            text += &format!("VA {} O4\r\n{PRE_VALUE}\r\n", PRE_VALUE.len());
            text += &text_ok(&format!("HD O5 k{b}\r\n"));
            text += "MN\r\n";
        }
    }
    (req, want, text)
}

/// Sends the pipeline for `keys` while the fsync is held, checks that nothing arrives, then
/// ends the fsync as `end` and checks the replies.
fn case(threads: usize, proto: Proto, keys: &[String], end: End) {
    let what = format!("-t {threads}, {proto:?}, keys {keys:?}, fsync {end:?}");
    let node = Node::start(threads, "always");
    let keys: Vec<String> = keys.to_vec();
    let mut c = Client::connect(&node, proto);
    c.store(PRE, PRE_VALUE);
    let (req, want, text) = pipeline(proto, &keys, end);
    node.gate.hold();
    match &mut c {
        Client::Binary(w) => w.send(&req),
        Client::Text(t) => t.send(&req),
    }
    // Every shard the pipeline writes to has its fsync blocked: the replies must wait.
    let shards: BTreeSet<usize> = keys.iter().map(|k| caskade::cluster::core_of(k.as_bytes(), threads)).collect();
    node.gate.wait_blocked(shards.len());
    c.assert_silent(&what);
    match end {
        End::Synced => node.gate.open(),
        End::Failed => node.gate.fail(),
    }
    match &mut c {
        Client::Binary(w) => {
            for &(opaque, status, value) in &want {
                let r = w.recv();
                assert_eq!((r.opaque, r.status), (opaque, status), "{what}: reply {r:?}");
                if let Some(v) = value {
                    assert_eq!(r.value, v, "{what}: value of reply {opaque}");
                }
                if status == Status::NoError && opaque != 6 && opaque != 4 {
                    assert_ne!(r.cas, 0, "{what}: a stored item's CAS");
                }
            }
            // Nothing more: a quiet success stays silent.
            w.send(&bin(Opcode::Noop, "", "", 77));
            assert_eq!(w.recv().opaque, 77, "{what}: the reply after the pipeline's");
        }
        Client::Text(t) => {
            t.expect(&text);
            t.send("mn\r\n");
            t.expect("MN\r\n");
        }
    }
    // The fsync the gate held is counted, with the time it was held.
    let stats = Text::connect(node.addr).stats("");
    let stat = |name: &str| stats[name].parse::<u64>().unwrap_or_else(|e| panic!("{name}: {e}"));
    match end {
        End::Synced => {
            assert!(stat("fsyncs") >= 1, "{what}: fsyncs {}", stat("fsyncs"));
            assert!(stat("fsync_micros") >= gate::QUIET.as_micros() as u64, "{what}: fsync_micros {}", stat("fsync_micros"));
        }
        End::Failed => assert!(stat("disk_errors") >= 1, "{what}: disk_errors {}", stat("disk_errors")),
    }
    if end == End::Failed {
        // Once the disk works again, so does the node.
        node.gate.open();
        let deadline = Instant::now() + gate::PATIENCE;
        while !c.try_store(&keys[0]) {
            assert!(Instant::now() < deadline, "{what}: writes still refused after the disk healed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn cases(threads: usize, proto: Proto) {
    let node = Node::start(threads, "always");
    let on: Vec<String> = (0..threads).map(|core| node.key_on(core, core)).collect();
    drop(node);
    for end in [End::Synced, End::Failed] {
        // One key alone on each core: local to the connection's core for one, remote for the other.
        for key in &on {
            case(threads, proto, std::slice::from_ref(key), end);
        }
        // A pipeline over both (with one core, two keys on it).
        let mixed = if threads == 1 { vec![on[0].clone(), "other".to_string()] } else { vec![on[0].clone(), on[1].clone()] };
        case(threads, proto, &mixed, end);
        case(threads, proto, &[mixed[1].clone(), mixed[0].clone()], end);
    }
}

#[test]
fn binary_one_core() {
    cases(1, Proto::Binary);
}

#[test]
fn binary_two_cores() {
    cases(2, Proto::Binary);
}

#[test]
fn text_one_core() {
    cases(1, Proto::Text);
}

#[test]
fn text_two_cores() {
    cases(2, Proto::Text);
}

#[test]
fn meta_one_core() {
    cases(1, Proto::Meta);
}

#[test]
fn meta_two_cores() {
    cases(2, Proto::Meta);
}
