//! Bad input on the peer and client ports (issue 11): a plain client on the peer port, a
//! wrong cluster name, a map that differs, a proof made with another secret, a malformed
//! frame, and peer opcodes on the client port. Each gets a refusal where the handshake has
//! one, a log line naming the reason, the connection closed, a counter; the node keeps
//! serving everyone else.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use caskade::protocol::binary::REQUEST_MAGIC;
use caskade::protocol::peer::auth::{self, status, Hello, HelloOk, Role, Transcript};
use caskade::protocol::peer::{forward, write_frame, Frame, Op};
use caskade::storage::Command;
use common::cluster::{cluster_stats, stat, text_round_trip, wait_until, ClusterFiles, SECRET};

const IDS: [&str; 2] = ["a", "b"];

/// A response's status, extras, key and value.
type Answer = (u16, Vec<u8>, Vec<u8>, Vec<u8>);

struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    fn connect(port: u16) -> Peer {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the peer port");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        Peer { stream, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The next frame's header fields, key and value; `None` once the node has closed.
    fn recv(&mut self) -> Option<Answer> {
        loop {
            if let Ok(Some((f, used))) = Frame::decode(&self.buf, 1 << 20) {
                let out = (f.status(), f.extras.to_vec(), f.key.to_vec(), f.value.to_vec());
                self.buf.drain(..used);
                return Some(out);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn closed(&mut self) -> bool {
        self.recv().is_none()
    }
}

fn hello(name: &str, node: &str, checksum: u32, nonce: auth::Nonce) -> Vec<u8> {
    let mut out = Vec::new();
    Hello { version: caskade::protocol::peer::VERSION, target_core: 0, map_checksum: checksum, node_id: node.as_bytes(), nonce, cluster: name.as_bytes() }
        .write(&mut out);
    out
}

#[test]
fn bad_peers_are_refused_and_logged() {
    let files = ClusterFiles::new(&IDS);
    let nodes = files.start_all(&["-t", "2"]);
    let peer_port = files.peer_ports[0];
    let checksum = caskade::cluster::config::ClusterFile::load(files.path()).expect("the file").map().checksum();
    let a = &nodes[0];

    // A connection that says nothing: closed once the handshake time is up (checked last).
    let mut silent = Peer::connect(peer_port);
    let silent_since = std::time::Instant::now();

    // A memcached client on the peer port.
    let mut p = Peer::connect(peer_port);
    p.send(&[REQUEST_MAGIC, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'k']);
    let (code, ..) = p.recv().expect("a refusal");
    assert_eq!(code, status::PROTOCOL_ERROR);
    assert!(p.closed());
    wait_until("the log names it", Duration::from_secs(10), || a.log().contains("before HELLO (a client on the peer port?)"));

    // Text on the peer port: not a frame at all.
    let mut p = Peer::connect(peer_port);
    p.send(b"get foo\r\n");
    assert!(p.closed());
    wait_until("malformed frame logged", Duration::from_secs(10), || a.log().contains("malformed frame: bad magic"));

    // Another cluster's name.
    let mut p = Peer::connect(peer_port);
    p.send(&hello("other", "b", checksum, [1; 16]));
    let (code, _, _, reason) = p.recv().expect("a refusal");
    assert_eq!(code, status::AUTH_ERROR);
    assert!(String::from_utf8_lossy(&reason).contains("of cluster 'other'"), "{reason:?}");
    assert!(p.closed());

    // Another map.
    let mut p = Peer::connect(peer_port);
    p.send(&hello("test", "b", checksum ^ 1, [2; 16]));
    let (code, ..) = p.recv().expect("a refusal");
    assert_eq!(code, status::MAP_MISMATCH);
    assert!(p.closed());
    wait_until("map mismatch logged", Duration::from_secs(10), || a.log().contains("are the cluster files the same?"));

    // The right HELLO, then a proof made with another secret.
    let mut p = Peer::connect(peer_port);
    let nonce = [3; 16];
    p.send(&hello("test", "b", checksum, nonce));
    let (code, extras, key, value) = p.recv().expect("HELLO answered");
    assert_eq!(code, status::OK);
    let mut frame = Vec::new();
    caskade::protocol::peer::write_frame(&mut frame, 0x81, Op::Hello, code, 0, 0, &extras, &key, &value);
    let (f, _) = Frame::decode(&frame, 1 << 20).unwrap().unwrap();
    let ok = HelloOk::parse(&f).expect("a HELLO answer");
    let t = Transcript { cluster: b"test", initiator: b"b", responder: b"a", nonce_initiator: nonce, nonce_responder: ok.nonce };
    assert!(t.verify(SECRET.as_bytes(), Role::Responder, &ok.proof), "the node proves it knows the secret");
    let mut bad = Vec::new();
    auth::write_auth(&mut bad, &t.proof(b"not the cluster's secret", Role::Initiator));
    // A forwarded request right behind the bad AUTH must not be served.
    forward::write_request(&mut bad, 0, 1, &Command::Get { key: b"x" }, None, None);
    p.send(&bad);
    let (code, ..) = p.recv().expect("AUTH refused");
    assert_eq!(code, status::AUTH_ERROR);
    assert!(p.closed(), "nothing is served after a failed AUTH");
    wait_until("auth failure logged", Duration::from_secs(10), || a.log().contains("node 'b' failed authentication"));

    // The right proof: the link works, and a forwarded request is answered.
    let mut p = Peer::connect(peer_port);
    p.send(&hello("test", "b", checksum, nonce));
    let (_, extras, key, value) = p.recv().expect("HELLO answered");
    let mut frame = Vec::new();
    write_frame(&mut frame, 0x81, Op::Hello, 0, 0, 0, &extras, &key, &value);
    let (f, _) = Frame::decode(&frame, 1 << 20).unwrap().unwrap();
    let ok = HelloOk::parse(&f).expect("a HELLO answer");
    let t = Transcript { cluster: b"test", initiator: b"b", responder: b"a", nonce_initiator: nonce, nonce_responder: ok.nonce };
    let mut good = Vec::new();
    auth::write_auth(&mut good, &t.proof(SECRET.as_bytes(), Role::Initiator));
    p.send(&good);
    assert_eq!(p.recv().expect("AUTH answered").0, status::OK);
    // A key a owns (partition p on node a: p even in a two-node map).
    let key = (0..).map(|i| format!("own-{i}")).find(|k| caskade::cluster::partition_of(k.as_bytes()).is_multiple_of(2)).unwrap();
    let p_of = caskade::cluster::partition_of(key.as_bytes());
    let mut req = Vec::new();
    forward::write_request(&mut req, p_of, 7, &Command::Get { key: key.as_bytes() }, None, None);
    p.send(&req);
    assert_eq!(p.recv().expect("answered").0, forward::code::NOT_FOUND);
    // A frame that announces more than any item: closed.
    p.send(&[0x80, 0xC4, 0, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(p.closed());

    // Peer opcodes on the client port: an error, the connection closed, a log line.
    let mut c = TcpStream::connect(a.addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(&hello("test", "b", checksum, nonce)).unwrap();
    let mut reply = Vec::new();
    let _ = c.read_to_end(&mut reply);
    assert_eq!(reply.get(6..8), Some(&[0x00, 0x81][..]), "unknown command status");
    wait_until("peer opcode on the client port logged", Duration::from_secs(10), || a.log().contains("to the client port"));

    // Through all this a serves clients, and its link with b is up.
    let stored = text_round_trip(a, b"set still 0 0 2\r\nok\r\nget still\r\n", b"END\r\n");
    assert_eq!(stored, b"STORED\r\nVALUE still 0 2\r\nok\r\nEND\r\n");
    let stats = cluster_stats(a);
    let refused: u64 = stat(&stats, "cluster_peer_connections_refused").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(refused >= 6, "refused {refused}: {stats:?}");
    assert!(!a.log().contains("panicked"));
    assert!(silent.closed(), "a silent peer connection is closed");
    let waited = silent_since.elapsed();
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(20), "closed after {waited:?}");
    assert!(a.log().contains("no handshake within 10 s"));
    for node in nodes {
        assert!(node.stop().success());
    }
}

#[test]
fn nodes_with_different_secrets_do_not_talk() {
    let files = ClusterFiles::new(&IDS);
    let a = files.start("a", &["-t", "1"]);
    // b's file names the same nodes and peers, with another secret.
    std::fs::write(files.dir.path().join("secret"), "another-secret-0123456789").unwrap();
    let b = files.start("b", &["-t", "1"]);
    // A key on b, asked through a: a's link fails authentication and answers the client.
    let key = (0..).map(|i| format!("on-b-{i}")).find(|k| caskade::cluster::partition_of(k.as_bytes()) % 2 == 1).unwrap();
    let reply = text_round_trip(&a, format!("set {key} 0 0 1\r\nx\r\n").as_bytes(), b"\r\n");
    assert_eq!(reply, b"SERVER_ERROR temporary failure\r\n");
    wait_until("a says b failed authentication", Duration::from_secs(10), || a.log().contains("failed authentication"));
    assert!(!a.log().contains("panicked") && !b.log().contains("panicked"));
    assert!(a.stop().success());
    assert!(b.stop().success());
}
