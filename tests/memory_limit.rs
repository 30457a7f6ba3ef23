//! `-m` bounds item memory. In memory only and in `cache` mode, the least recently used items
//! are evicted and counted past it; in `store` mode values move to disk only, and writes are
//! refused with out-of-memory once the keys alone no longer fit.

mod common;
mod wire;

use std::collections::HashMap;

use caskade::protocol::binary::{Opcode, RequestExtras, Status};
use common::Server;
use wire::{request, Wire};

fn stats(c: &mut Wire) -> HashMap<String, u64> {
    c.send(&wire::encode(&[request(Opcode::Stat, b"", b"", RequestExtras::None, 1)]));
    let mut map = HashMap::new();
    loop {
        let r = c.recv();
        if r.key.is_empty() {
            return map;
        }
        if let Ok(v) = String::from_utf8_lossy(&r.value).parse() {
            map.insert(String::from_utf8(r.key).unwrap(), v);
        }
    }
}

fn fill(c: &mut Wire, batches: usize, value: &[u8]) {
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    for batch in 0..batches {
        let keys: Vec<Vec<u8>> = (0..1024).map(|i| format!("evict:{batch}:{i}").into_bytes()).collect();
        let reqs: Vec<_> = keys.iter().map(|k| request(Opcode::SetQ, k, value, store, 1)).collect();
        c.send(&wire::encode(&reqs));
        c.send(&wire::noop(2));
        let r = c.recv();
        assert_eq!((r.opcode, r.status), (Opcode::Noop, Status::NoError), "a SETQ failed: {r:?}");
    }
}

#[test]
fn in_memory_writes_past_the_limit_evict_and_stay_under_it() {
    evicts(&["-t", "2", "-m", "2", "--in-memory"]);
}

#[test]
fn cache_mode_on_disk_evicts_like_memcached() {
    evicts(&["-t", "2", "-m", "2", "--mode", "cache"]);
}

#[test]
fn store_mode_keeps_every_item_and_serves_values_from_disk() {
    let server = Server::start(&["-t", "2", "-m", "2", "--mode", "store"]);
    let mut c = Wire::connect(server.addr());
    let value = vec![b'y'; 1000];
    fill(&mut c, 8, &value);
    // Each core publishes its counters at the end of its event-loop turn: poll briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let s = loop {
        let s = stats(&mut c);
        if s["curr_items"] == 8 * 1024 || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(s["evictions"], 0, "{s:?}");
    assert!(s["values_evicted"] > 0, "{s:?}");
    assert_eq!(s["curr_items"], 8 * 1024, "{s:?}");
    assert!(s["bytes"] <= s["limit_maxbytes"], "{s:?}");
    // The oldest items come back from disk.
    for i in [0, 1, 500, 1023] {
        c.send(&wire::get(format!("evict:0:{i}").as_bytes(), 3));
        assert_eq!(c.recv().value, value, "evict:0:{i}");
    }
    assert!(stats(&mut c)["disk_reads"] > 0);
}

#[test]
fn store_mode_refuses_writes_when_the_keys_alone_do_not_fit() {
    let server = Server::start(&["-t", "1", "-m", "1", "-I", "1k", "--mode", "store"]);
    let mut c = Wire::connect(server.addr());
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    let mut refused = None;
    for i in 0..40_000u32 {
        let key = format!("key-that-takes-some-room:{i:08}");
        c.send(&wire::encode(&[request(Opcode::Set, key.as_bytes(), b"v", store, i)]));
        let r = c.recv();
        if r.status != Status::NoError {
            refused = Some((i, r.status));
            break;
        }
    }
    let (at, status) = refused.expect("1 MiB cannot hold 40000 keys");
    assert_eq!(status, Status::OutOfMemory);
    // Nothing was dropped, and reads go on.
    let s = stats(&mut c);
    assert_eq!((s["evictions"], s["curr_items"]), (0, at as u64), "{s:?}");
    c.send(&wire::get(b"key-that-takes-some-room:00000000", 1));
    assert_eq!(c.recv().value, b"v");
}

fn evicts(args: &[&str]) {
    let server = Server::start(args);
    let mut c = Wire::connect(server.addr());
    let value = vec![b'x'; 1000];
    // 8 MiB of values into a 2 MiB server, in pipelined batches.
    fill(&mut c, 8, &value);
    let s = stats(&mut c);
    assert!(s["evictions"] > 0, "{s:?}");
    assert!(s["bytes"] <= s["limit_maxbytes"], "{s:?}");
    assert_eq!(s["limit_maxbytes"], 2 * 1024 * 1024);
    assert!(s["curr_items"] > 1000 && s["curr_items"] < 8 * 1024, "{s:?}");
    // The newest items are there.
    c.send(&wire::get(b"evict:7:1023", 3));
    assert_eq!(c.recv().value, value);
}
