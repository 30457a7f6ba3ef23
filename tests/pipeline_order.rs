//! Pipelined requests are answered in order, even when consecutive requests of one
//! connection belong to different cores, and frames split at any byte still work.

mod common;
mod wire;

use caskade::cluster::core_of;
use caskade::protocol::binary::{Opcode, Request, RequestExtras, Status};
use common::Server;
use wire::{request, Wire};

const CORES: usize = 4;

#[test]
fn replies_keep_request_order_across_cores() {
    let server = Server::start(&["-t", &CORES.to_string()]);
    let mut c = Wire::connect(server.addr());
    let keys: Vec<Vec<u8>> = (0..400).map(|i| format!("order:{i}").into_bytes()).collect();
    let owners: std::collections::HashSet<usize> = keys.iter().map(|k| core_of(k, CORES)).collect();
    assert_eq!(owners.len(), CORES, "the keys cover every core");
    let value = |i: usize| format!("value-{i}").into_bytes();
    let values: Vec<Vec<u8>> = (0..keys.len()).map(value).collect();

    // One write: SET, GET, quiet SETQ, GETQ of a missing key, DELETE... interleaved over cores.
    let mut reqs: Vec<Request<'_>> = Vec::new();
    let mut expect: Vec<(u32, Opcode)> = Vec::new();
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    for (i, key) in keys.iter().enumerate() {
        let op = (i * 4) as u32;
        reqs.push(request(Opcode::Set, key, &values[i], store, op));
        expect.push((op, Opcode::Set));
        reqs.push(request(Opcode::GetK, key, b"", RequestExtras::None, op + 1));
        expect.push((op + 1, Opcode::GetK));
        reqs.push(request(Opcode::GetQ, b"no-such-key", b"", RequestExtras::None, op + 2));
        reqs.push(request(Opcode::SetQ, key, &values[i], store, op + 3));
    }
    reqs.push(request(Opcode::Noop, b"", b"", RequestExtras::None, u32::MAX));
    expect.push((u32::MAX, Opcode::Noop));
    c.send(&wire::encode(&reqs));

    for (opaque, opcode) in expect {
        let r = c.recv();
        assert_eq!((r.opaque, r.opcode, r.status), (opaque, opcode, Status::NoError), "reply out of order");
        if opcode == Opcode::GetK {
            let i = (opaque / 4) as usize;
            assert_eq!((r.key.as_slice(), r.value.as_slice()), (keys[i].as_slice(), values[i].as_slice()));
        }
    }
}

#[test]
fn flush_then_set_on_other_cores_keeps_order() {
    let server = Server::start(&["-t", &CORES.to_string()]);
    let mut c = Wire::connect(server.addr());
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    let keys: Vec<Vec<u8>> = (0..32).map(|i| format!("flush:{i}").into_bytes()).collect();
    let mut reqs = Vec::new();
    for k in &keys {
        reqs.push(request(Opcode::SetQ, k, b"old", store, 1));
    }
    reqs.push(request(Opcode::Flush, b"", b"", RequestExtras::None, 2));
    for k in &keys {
        reqs.push(request(Opcode::SetQ, k, b"new", store, 3));
    }
    for k in &keys {
        reqs.push(request(Opcode::GetK, k, b"", RequestExtras::None, 4));
    }
    c.send(&wire::encode(&reqs));
    let r = c.recv();
    assert_eq!((r.opcode, r.opaque, r.status), (Opcode::Flush, 2, Status::NoError));
    for k in &keys {
        let r = c.recv();
        assert_eq!((r.key.as_slice(), r.value.as_slice()), (k.as_slice(), &b"new"[..]));
    }
}

#[test]
fn frames_split_at_every_byte_are_served() {
    let server = Server::start(&["-t", "2"]);
    let mut c = Wire::connect(server.addr());
    let store = RequestExtras::Store { flags: 7, exptime: 0 };
    let bytes = wire::encode(&[
        request(Opcode::Set, b"split-a", b"first", store, 1),
        request(Opcode::Set, b"split-b", b"second", store, 2),
        request(Opcode::GetK, b"split-a", b"", RequestExtras::None, 3),
        request(Opcode::GetK, b"split-b", b"", RequestExtras::None, 4),
    ]);
    // One byte per write, so the server sees every boundary (TCP_NODELAY is on).
    for b in &bytes {
        c.send(std::slice::from_ref(b));
    }
    let replies: Vec<_> = (0..4).map(|_| c.recv()).collect();
    assert_eq!(replies.iter().map(|r| r.opaque).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(replies[2].value, b"first");
    assert_eq!(replies[3].value, b"second");
    assert_eq!(replies[3].extras, 7u32.to_be_bytes());
}
