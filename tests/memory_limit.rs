//! `-m` bounds item memory: past it the least recently used items are evicted and counted.

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

#[test]
fn writes_past_the_limit_evict_and_stay_under_it() {
    let server = Server::start(&["-t", "2", "-m", "2"]);
    let mut c = Wire::connect(server.addr());
    let value = vec![b'x'; 1000];
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    // 8 MiB of values into a 2 MiB server, in pipelined batches.
    for batch in 0..8 {
        let keys: Vec<Vec<u8>> = (0..1024).map(|i| format!("evict:{batch}:{i}").into_bytes()).collect();
        let reqs: Vec<_> = keys.iter().map(|k| request(Opcode::SetQ, k, &value, store, 1)).collect();
        c.send(&wire::encode(&reqs));
        c.send(&wire::noop(2));
        let r = c.recv();
        assert_eq!((r.opcode, r.status), (Opcode::Noop, Status::NoError), "a SETQ failed: {r:?}");
    }
    let s = stats(&mut c);
    assert!(s["evictions"] > 0, "{s:?}");
    assert!(s["bytes"] <= s["limit_maxbytes"], "{s:?}");
    assert_eq!(s["limit_maxbytes"], 2 * 1024 * 1024);
    assert!(s["curr_items"] > 1000 && s["curr_items"] < 8 * 1024, "{s:?}");
    // The newest items are there.
    c.send(&wire::get(b"evict:7:1023", 3));
    assert_eq!(c.recv().value, value);
}
