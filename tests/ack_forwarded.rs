//! `--fsync always` across nodes: no reply to a forwarded mutation before the OWNER's fsync
//! (issues 11 and 18).
//!
//! Two nodes of one cluster run in this process, each on a file system whose fsyncs pass
//! through a gate (`tests/gate`). A client of node a writes keys that node b owns. With b's
//! gate held, nothing comes back to the client, not even the replies to a's own keys that
//! follow in its pipeline; opened, every reply arrives in request order; failed, each of the
//! forwarded mutations gets the error status and nothing overtakes it.

mod common;
mod gate;
mod text_wire;
mod wire;

use std::time::Duration;

use caskade::cluster::map::{ClusterMap, MapNode};
use caskade::protocol::binary::Status;
use common::cluster::{wait_until, ClusterFiles};
use gate::Node;
use text_wire::Text;
use wire::Wire;

const IDS: [&str; 2] = ["a", "b"];

/// A key whose partition node `id` is primary for, distinct for each `n`.
fn key_on(id: &str, n: usize) -> String {
    let map = ClusterMap::derive("", IDS.iter().map(|i| MapNode { id: i.to_string(), peer: String::new() }).collect(), 1);
    let index = map.node_index(id).unwrap();
    (0..).map(|i| format!("f{n}-{i}")).find(|k| map.primary(caskade::cluster::partition_of(k.as_bytes())) == index).unwrap()
}

fn start() -> (ClusterFiles, Node, Node) {
    let files = ClusterFiles::new(&IDS);
    let file = files.path().display().to_string();
    let a = Node::start_with(2, "always", &["--cluster", &file, "--node", "a"]);
    let b = Node::start_with(2, "always", &["--cluster", &file, "--node", "b"]);
    for node in [&a, &b] {
        let mut t = Text::connect(node.addr);
        wait_until("the other node is up", Duration::from_secs(20), || {
            let other = if std::ptr::eq(node, &a) { "b" } else { "a" };
            t.stats("cluster").get(&format!("node:{other}:state")).map(String::as_str) == Some("up")
        });
    }
    (files, a, b)
}

#[test]
fn text_and_meta_replies_wait_for_the_owner_s_fsync() {
    let (_files, a, b) = start();
    let (on_a, on_b, on_b2) = (key_on("a", 1), key_on("b", 2), key_on("b", 3));
    let mut t = Text::connect(a.addr);
    t.send(format!("set {on_a} 0 0 3\r\npre\r\n"));
    t.expect("STORED\r\n");

    // Synced: held back until b's fsync, then all in order.
    b.gate.hold();
    t.send(format!("set {on_b} 0 0 1\r\nx\r\nget {on_a}\r\nms {on_b2} 1 T0\r\ny\r\nmn\r\n"));
    b.gate.wait_blocked(1);
    gate::assert_silent(&t.stream, t.buffered(), "a forwarded set while b's fsync is held");
    b.gate.open();
    t.expect(format!("STORED\r\nVALUE {on_a} 0 3\r\npre\r\nEND\r\nHD\r\nMN\r\n"));
    t.send(format!("get {on_b} {on_b2}\r\n"));
    t.expect(format!("VALUE {on_b} 0 1\r\nx\r\nVALUE {on_b2} 0 1\r\ny\r\nEND\r\n"));

    // Failed: the forwarded mutations get the error line, the rest keeps its place.
    b.gate.hold();
    t.send(format!("set {on_b} 0 0 1\r\nz\r\nget {on_a}\r\nincr {on_b2} 1\r\nmn\r\n"));
    b.gate.wait_blocked(1);
    gate::assert_silent(&t.stream, t.buffered(), "a forwarded set while b's fsync is held");
    b.gate.fail();
    t.expect(format!("SERVER_ERROR storage error\r\nVALUE {on_a} 0 3\r\npre\r\nEND\r\n"));
    let incr = t.line();
    // The incr came to b after the failure: refused, or (the disk failed, the value is not a
    // number) never a success.
    assert!(incr.starts_with("SERVER_ERROR") || incr.starts_with("CLIENT_ERROR"), "{incr}");
    t.expect("MN\r\n");
    b.gate.open();
}

#[test]
fn binary_replies_wait_for_the_owner_s_fsync() {
    let (_files, a, b) = start();
    let (on_a, on_b) = (key_on("a", 4), key_on("b", 5));
    let mut w = Wire::connect(a.addr);
    w.send(&wire::set(on_a.as_bytes(), b"pre", 1));
    assert_eq!(w.recv().status, Status::NoError);

    b.gate.hold();
    let mut pipeline = wire::set(on_b.as_bytes(), b"x", 2);
    pipeline.extend(wire::get(on_a.as_bytes(), 3));
    pipeline.extend(wire::noop(4));
    w.send(&pipeline);
    b.gate.wait_blocked(1);
    gate::assert_silent(&w.stream, w.leftover(), "a forwarded binary set while b's fsync is held");
    b.gate.fail();
    let replies: Vec<(u32, Status)> = (0..3).map(|_| w.recv()).map(|r| (r.opaque, r.status)).collect();
    assert_eq!(replies, vec![(2, Status::InternalError), (3, Status::NoError), (4, Status::NoError)]);
    b.gate.open();
    // Once b's disk works again, the forwarded write goes through.
    wait_until("b accepts writes again", Duration::from_secs(20), || {
        w.send(&wire::set(on_b.as_bytes(), b"y", 5));
        w.recv().status == Status::NoError
    });
}
