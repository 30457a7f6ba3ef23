//! Bad input gets memcached's answer, the offending connection is closed where the protocol
//! says so, and every other client goes on being served.

mod common;
mod wire;

use std::io::Write;
use std::time::Duration;

use caskade::protocol::binary::{Header, Opcode, RequestExtras, Status, REQUEST_MAGIC};
use common::Server;
use wire::{encode, get, request, set, Wire};

fn header(opcode: u8, key_len: u16, extras_len: u8, body_len: u32, opaque: u32) -> Vec<u8> {
    Header { magic: REQUEST_MAGIC, opcode, key_len, extras_len, body_len, opaque, ..Header::default() }
        .to_bytes()
        .to_vec()
}

#[test]
fn wrong_magic_closes_only_that_connection() {
    let server = Server::start(&["-t", "2"]);
    let mut other = Wire::connect(server.addr());
    let mut bad = Wire::connect(server.addr());
    // The first byte (0x80) makes this a binary connection; a later frame with another
    // magic byte closes it. (A first byte other than 0x80 would make it a text connection.)
    bad.send(&wire::noop(1));
    assert_eq!(bad.recv().status, Status::NoError);
    bad.send(&[0x42; 24]);
    assert!(bad.try_recv().is_none(), "a wrong magic byte closes the connection");
    other.assert_serves(b"after-bad-magic");
}

#[test]
fn key_over_250_bytes_is_einval_and_closes() {
    let server = Server::start(&["-t", "2"]);
    let mut other = Wire::connect(server.addr());
    let mut bad = Wire::connect(server.addr());
    let key = vec![b'k'; 251];
    bad.send(&get(&key, 77));
    let r = bad.recv();
    assert_eq!((r.status, r.opaque), (Status::InvalidArguments, 77));
    assert!(bad.try_recv().is_none(), "closed after EINVAL");
    other.assert_serves(b"after-long-key");
}

#[test]
fn lengths_that_do_not_add_up_are_einval_and_close() {
    let server = Server::start(&["-t", "2"]);
    let mut other = Wire::connect(server.addr());
    // SET whose key and extras are longer than its body.
    let mut bad = Wire::connect(server.addr());
    bad.send(&header(0x01, 10, 8, 12, 5));
    let r = bad.recv();
    assert_eq!(r.status, Status::InvalidArguments);
    assert!(bad.try_recv().is_none());
    // GET with extras.
    let mut bad = Wire::connect(server.addr());
    let mut frame = header(0x00, 1, 4, 5, 6);
    frame.extend_from_slice(&[0, 0, 0, 0, b'k']);
    bad.send(&frame);
    assert_eq!(bad.recv().status, Status::InvalidArguments);
    assert!(bad.try_recv().is_none());
    other.assert_serves(b"after-bad-lengths");
}

#[test]
fn unknown_opcode_is_answered_and_the_connection_stays_open() {
    let server = Server::start(&["-t", "2"]);
    let mut c = Wire::connect(server.addr());
    let mut frame = header(0x3f, 3, 2, 10, 9);
    frame.extend_from_slice(b"xxkeyvalue");
    c.send(&frame);
    let r = c.recv();
    assert_eq!((r.status, r.opaque, r.value.as_slice()), (Status::UnknownCommand, 9, &b"Unknown command"[..]));
    // SASL is not served yet: the same answer.
    c.send(&header(0x20, 0, 0, 0, 10));
    assert_eq!(c.recv().status, Status::UnknownCommand);
    c.assert_serves(b"after-unknown");
}

#[test]
fn a_4gib_body_is_neither_buffered_nor_fatal_to_others() {
    let server = Server::start(&["-t", "2", "-I", "1m"]);
    let mut other = Wire::connect(server.addr());
    // A SET that announces a 4 GiB value: E2BIG once its extras and key have come (the key
    // whose old value memcached then unlinks), before any of the value.
    let mut big = Wire::connect(server.addr());
    big.send(&header(0x01, 3, 8, u32::MAX, 11));
    big.send(&[0u8; 8]);
    big.send(b"big");
    let r = big.recv();
    assert_eq!((r.status, r.opaque), (Status::ValueTooLarge, 11));
    // The server swallows the body as it comes: send 8 MiB of it and check memory did not grow.
    let rss_before = rss_kib(server.pid());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..8 {
        big.send(&chunk);
    }
    other.assert_serves(b"during-big-body");
    let rss_after = rss_kib(server.pid());
    assert!(rss_after < rss_before + 4 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");
    // A GET that announces 4 GiB is simply invalid.
    let mut bad = Wire::connect(server.addr());
    bad.send(&header(0x00, 3, 0, u32::MAX, 12));
    assert_eq!(bad.recv().status, Status::InvalidArguments);
    assert!(bad.try_recv().is_none());
    other.assert_serves(b"after-big-get");
}

#[test]
fn value_over_the_item_limit_is_e2big_and_the_connection_goes_on() {
    let server = Server::start(&["-t", "2", "-I", "1k"]);
    let mut c = Wire::connect(server.addr());
    let value = vec![b'v'; 1025];
    let frame = encode(&[request(Opcode::Set, b"big", &value, RequestExtras::Store { flags: 0, exptime: 0 }, 3)]);
    c.send(&frame);
    let r = c.recv();
    assert_eq!((r.status, r.value.as_slice()), (Status::ValueTooLarge, &b"Too large."[..]));
    c.send(&get(b"big", 4));
    assert_eq!(c.recv().status, Status::KeyNotFound);
    c.send(&set(b"fits", &vec![b'v'; 1024], 5));
    assert_eq!(c.recv().status, Status::NoError);
}

#[test]
fn a_stalled_half_frame_holds_nobody_up() {
    let server = Server::start(&["-t", "1"]);
    let mut stalled = Wire::connect(server.addr());
    let frame = set(b"half", b"value", 1);
    stalled.send(&frame[..frame.len() / 2]);
    let mut other = Wire::connect(server.addr());
    other.assert_serves(b"while-stalled");
    // The stalled frame completes later and is served.
    stalled.send(&frame[frame.len() / 2..]);
    assert_eq!(stalled.recv().status, Status::NoError);
}

#[test]
fn connections_beyond_the_limit_are_refused_and_counted() {
    let server = Server::start(&["-t", "1", "-c", "3"]);
    // The harness's readiness probe may still hold a slot for a moment: retry until served.
    let mut kept: Vec<Wire> = (0..3).map(|_| connect_served(&server)).collect();
    for (i, c) in kept.iter_mut().enumerate() {
        c.assert_serves(format!("conn-{i}").as_bytes());
    }
    let mut refused = Wire::connect(server.addr());
    refused.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = refused.stream.write_all(&wire::noop(1));
    let mut text = Vec::new();
    let _ = std::io::Read::read_to_end(&mut refused.stream, &mut text);
    assert!(text.starts_with(b"ERROR Too many open connections"), "got {:?}", String::from_utf8_lossy(&text));
    drop(kept.pop());
    let mut again = connect_served(&server);
    again.assert_serves(b"after-refusal");
    let stats = stat_map(&mut again);
    assert!(stats["rejected_connections"].parse::<u64>().unwrap() >= 1);
}

/// A connection that the server accepted and answered. A refused one gets memcached's text
/// error instead; a slot comes free once the server has seen a close: poll, never sleep blindly.
fn connect_served(server: &Server) -> Wire {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Wire::connect(server.addr());
        c.send(&wire::noop(2));
        let mut first = [0u8; 1];
        let answered = std::io::Read::read(&mut c.stream, &mut first).ok() == Some(1) && first[0] == 0x81;
        if answered {
            // Read the rest of the NOOP reply (24 bytes in all).
            let mut rest = [0u8; 23];
            std::io::Read::read_exact(&mut c.stream, &mut rest).unwrap();
            return c;
        }
        assert!(std::time::Instant::now() < deadline, "no connection slot came free");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stat_map(c: &mut Wire) -> std::collections::HashMap<String, String> {
    c.send(&encode(&[request(Opcode::Stat, b"", b"", RequestExtras::None, 1)]));
    let mut map = std::collections::HashMap::new();
    loop {
        let r = c.recv();
        if r.key.is_empty() {
            return map;
        }
        map.insert(String::from_utf8(r.key).unwrap(), String::from_utf8(r.value).unwrap());
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// A client that pipelines GETs of a large value and reads none of the replies: the server
/// stops reading it at the high-water mark instead of buffering every reply (replies held
/// for a commit or queued behind other replies count too), others are served meanwhile, and
/// once the client reads, every reply arrives.
#[test]
fn a_client_that_does_not_read_its_replies_is_not_buffered_without_bound() {
    for fsync in ["always", "everysec"] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let server = Server::start(&["-t", "2", "-I", "1m", "--fsync", fsync, "--data-dir", data_dir]);
        let value = vec![b'v'; 128 << 10];
        let mut setter = Wire::connect(server.addr());
        setter.send(&set(b"big", &value, 1));
        assert_eq!(setter.recv().status, Status::NoError);

        const GETS: usize = 2000; // 250 MiB of replies
        let mut greedy = std::net::TcpStream::connect(server.addr()).unwrap();
        let mut burst = Vec::new();
        for i in 0..GETS {
            burst.extend_from_slice(&get(b"big", i as u32));
        }
        greedy.write_all(&burst).unwrap();
        let rss_before = rss_kib(server.pid());
        // Give the server time to read what it will; poll its memory meanwhile.
        let mut rss_max = rss_before;
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
            rss_max = rss_max.max(rss_kib(server.pid()));
        }
        setter.assert_serves(b"while-greedy-stalls");
        assert!(rss_max < rss_before + 64 * 1024, "{fsync}: RSS grew from {rss_before} KiB to {rss_max} KiB");

        // Now the client reads: every reply comes, in order.
        greedy.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, greedy);
        for i in 0..GETS {
            let mut head = [0u8; 24];
            std::io::Read::read_exact(&mut reader, &mut head).unwrap_or_else(|e| panic!("{fsync}: reply {i}: {e}"));
            let h = Header::parse(&head);
            assert_eq!((h.opaque, h.body_len as usize), (i as u32, 4 + value.len()), "{fsync}: reply {i}");
            let mut body = vec![0u8; h.body_len as usize];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
        }
    }
}
