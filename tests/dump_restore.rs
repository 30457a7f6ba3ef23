//! `caskadectl dump` then `restore` into a fresh server gives back every item, flags and
//! expiry included (checked through a second dump, and against memcached as the target where
//! it is installed); a damaged dump is refused with a clear error before anything is loaded.

mod common;
mod wire;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use caskade::protocol::binary::{Opcode, RequestExtras, Status};
use common::{run_with_timeout, Server, ServerKind};
use wire::{request, Wire};

const DAY: u32 = 24 * 60 * 60;

fn now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32
}

/// (key, value, flags, exptime as sent)
fn items() -> Vec<(Vec<u8>, Vec<u8>, u32, u32)> {
    let mut v = Vec::new();
    for i in 0..3000u32 {
        let exptime = match i % 4 {
            0 => 0,
            1 => 1000 + i,          // relative seconds
            2 => now() + 40 * DAY,  // absolute: beyond memcached's 30 days
            _ => 0,
        };
        v.push((format!("item:{i}").into_bytes(), format!("value-{i}").repeat(1 + i as usize % 7).into_bytes(), i * 7919, exptime));
    }
    v.push((b"binary".to_vec(), (0..=255u8).collect(), u32::MAX, 0));
    v.push((b"big".to_vec(), vec![b'x'; 600_000], 1, 0));
    v.push((b"empty".to_vec(), Vec::new(), 0, 0));
    v
}

fn load(server: &Server, items: &[(Vec<u8>, Vec<u8>, u32, u32)]) {
    let mut c = Wire::connect(server.addr());
    for chunk in items.chunks(200) {
        let reqs: Vec<_> = chunk
            .iter()
            .map(|(k, v, flags, exptime)| request(Opcode::Set, k, v, RequestExtras::Store { flags: *flags, exptime: *exptime }, 0))
            .collect();
        c.send(&wire::encode(&reqs));
        for _ in chunk {
            assert_eq!(c.recv().status, Status::NoError);
        }
    }
}

fn ctl(args: &[&str]) -> (Option<i32>, String) {
    let (status, out) = run_with_timeout(Command::new(env!("CARGO_BIN_EXE_caskadectl")).args(args), Duration::from_secs(60));
    (status.and_then(|s| s.code()), out)
}

fn dump(server: &Server, file: &Path) {
    let (code, out) = ctl(&["--admin", &server.admin(), "dump", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
}

/// Every item of a dump file: key -> (value, flags, expiry).
fn read_dump(file: &Path) -> std::collections::BTreeMap<Vec<u8>, (Vec<u8>, u32, u32)> {
    let mut r = caskade::dump::Reader::new(std::io::BufReader::new(std::fs::File::open(file).unwrap())).unwrap();
    let mut out = std::collections::BTreeMap::new();
    while let Some(it) = r.next().unwrap() {
        out.insert(it.key, (it.value, it.flags, it.expiry));
    }
    out
}

#[test]
fn dump_then_restore_reproduces_every_item() {
    let dir = tempfile::tempdir().unwrap();
    let source = Server::start_caskade(&["-t", "2"], &[]);
    let items = items();
    let loaded_at = now();
    load(&source, &items);
    let first = dir.path().join("first.dump");
    dump(&source, &first);
    let dumped = read_dump(&first);
    assert_eq!(dumped.len(), items.len());
    for (k, v, flags, exptime) in &items {
        let (dv, dflags, dexpiry) = &dumped[k];
        assert_eq!((dv, dflags), (v, flags), "{}", String::from_utf8_lossy(k));
        let want = match *exptime {
            0 => 0,
            e if e <= 30 * DAY => loaded_at + e,
            e => e,
        };
        assert!(dexpiry.abs_diff(want) <= 2, "{}: expiry {dexpiry}, want {want}", String::from_utf8_lossy(k));
    }

    // Into a fresh caskade (in memory, one core: another shape than the source).
    let target = Server::start_caskade(&["-t", "1", "--in-memory"], &[]);
    let (code, out) = ctl(&["--server", &target.host_port(), "restore", first.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("restored {} of {} items", items.len(), items.len())), "{out}");
    let second = dir.path().join("second.dump");
    dump(&target, &second);
    let again = read_dump(&second);
    assert_eq!(again.len(), dumped.len());
    for (k, (v, flags, expiry)) in &dumped {
        let (v2, flags2, expiry2) = &again[k];
        assert_eq!((v2, flags2), (v, flags));
        assert!(expiry2.abs_diff(*expiry) <= 2, "{}: {expiry2} vs {expiry}", String::from_utf8_lossy(k));
    }

    // Into memcached, which knows nothing of caskade: plain SETs.
    if Path::new("/usr/bin/memcached").exists() {
        let memcached = Server::start_kind(ServerKind::Memcached, &["-I", "2m"], &[]);
        let (code, out) = ctl(&["--server", &memcached.host_port(), "restore", first.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{out}");
        let mut c = Wire::connect(memcached.addr());
        for (k, v, flags, _) in items.iter().step_by(97).chain(items.iter().rev().take(3)) {
            c.send(&wire::get(k, 0));
            let r = c.recv();
            assert_eq!(r.status, Status::NoError, "{}", String::from_utf8_lossy(k));
            assert_eq!((&r.value, u32::from_be_bytes(r.extras[..4].try_into().unwrap())), (v, *flags));
        }
    }
}

#[test]
fn a_damaged_dump_is_refused_before_anything_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let source = Server::start_caskade(&["-t", "2", "--in-memory"], &[]);
    load(&source, &items()[..500]);
    let good = dir.path().join("good.dump");
    dump(&source, &good);
    let bytes = std::fs::read(&good).unwrap();

    let target = Server::start_caskade(&["-t", "2", "--in-memory"], &[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped bit in a value", {
            let mut b = bytes.clone();
            let at = b.len() / 2;
            b[at] ^= 0x01;
            b
        }),
        ("cut short", bytes[..bytes.len() - 100].to_vec()),
        ("no trailer", bytes[..bytes.len() - caskade::dump::TRAILER_LEN].to_vec()),
        ("not a dump", b"hello, world".to_vec()),
    ];
    for (what, content) in cases {
        let bad = dir.path().join("bad.dump");
        std::fs::write(&bad, &content).unwrap();
        let (code, out) = ctl(&["--server", &target.host_port(), "restore", bad.to_str().unwrap()]);
        assert_eq!(code, Some(1), "{what}: {out}");
        let err = out.split("--- stderr ---\n").nth(1).unwrap_or("");
        assert!(err.starts_with("caskadectl: ") && err.lines().count() == 1, "{what}: not one clear line: {out}");
        assert!(out.contains("nothing restored"), "{what}: {out}");
    }
    let (_, body) = target.http_get("/stats");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["stats"]["curr_items"], 0, "a refused dump loaded items");

    // And the clear one-liners of the other commands.
    let (code, out) = ctl(&["--server", &target.host_port(), "get", "nope"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("caskadectl: nope: not found"), "{out}");
    let (code, out) = ctl(&["--server", "127.0.0.1:1", "stats"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("cannot connect to 127.0.0.1:1"), "{out}");
    let (code, out) = ctl(&["--admin", "127.0.0.1:1", "dump", dir.path().join("x").to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(!dir.path().join("x.partial").exists());
}

#[test]
fn caskadectl_set_get_delete_flush_and_stats() {
    let server = Server::start_caskade(&["-t", "2", "--in-memory"], &[]);
    let s = server.host_port();
    assert_eq!(ctl(&["-s", &s, "set", "greeting", "hello", "--flags", "42", "--ttl", "100"]).0, Some(0));
    let (code, out) = ctl(&["-s", &s, "get", "greeting"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("hello\n") && out.contains("flags 42"), "{out}");
    let (code, out) = ctl(&["-s", &s, "stats"]);
    assert_eq!(code, Some(0));
    assert!(out.lines().any(|l| l.starts_with("curr_items") && l.trim_end().ends_with(" 1")), "{out}");
    let (code, out) = ctl(&["-s", &s, "stats", "--watch", "--count", "2"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("per second"), "{out}");
    assert_eq!(ctl(&["-s", &s, "delete", "greeting"]).0, Some(0));
    assert_eq!(ctl(&["-s", &s, "delete", "greeting"]).0, Some(1));
    assert_eq!(ctl(&["-s", &s, "set", "a", "1"]).0, Some(0));
    assert_eq!(ctl(&["-s", &s, "flush"]).0, Some(0));
    assert_eq!(ctl(&["-s", &s, "get", "a"]).0, Some(1));
}
