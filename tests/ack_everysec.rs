//! `--fsync everysec` (issue 18): what it promises, checked with the fsync held back or
//! failed through the gate of `tests/gate` (a node in this process).
//!
//! 1. A mutation is acknowledged once its record is written (write(2)), without waiting for
//!    the background fsync: with that fsync blocked on the gate, SETs are still answered,
//!    and their bytes are in the segment file when the reply arrives.
//! 2. Once a background fsync has failed (and its thread has recorded it, a moment after the
//!    fsync returns), every mutation is refused (binary 0x84, text `SERVER_ERROR storage
//!    error`), never acknowledged, until an fsync on the event loop works; reads go on.

mod gate;
mod text_wire;
mod wire;

use std::path::Path;
use std::time::{Duration, Instant};

use caskade::protocol::binary::Status;
use gate::Node;
use text_wire::Text;
use wire::Wire;

/// Every segment file's bytes under the data directory.
fn segments(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()) {
        for f in std::fs::read_dir(&shard).unwrap().map(|e| e.unwrap().path()) {
            if f.extension().is_some_and(|x| x == "log") {
                all.extend(std::fs::read(&f).unwrap());
            }
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_mutation_is_acknowledged_once_written_without_waiting_for_the_background_fsync() {
    for threads in [1, 2] {
        let node = Node::start(threads, "everysec");
        let mut w = Wire::connect(node.addr);
        node.gate.hold();
        // Dirty every shard, then wait for each one's background fsync to block on the gate.
        for core in 0..threads {
            let key = node.key_on(core, 0);
            w.send(&wire::set(key.as_bytes(), b"first", 1));
            assert_eq!(w.recv().status, Status::NoError, "-t {threads}: the first SET on core {core}");
        }
        node.gate.wait_blocked(threads);
        for core in 0..threads {
            let key = node.key_on(core, 1);
            let value = format!("written-before-synced-{core}");
            w.send(&wire::set(key.as_bytes(), value.as_bytes(), 2));
            let r = w.recv();
            assert_eq!((r.opaque, r.status), (2, Status::NoError), "-t {threads}: a SET while the fsync is blocked");
            assert!(contains(&segments(node.dir.path()), value.as_bytes()), "-t {threads}: acknowledged before written");
        }
        // The text protocol and meta commands are acknowledged the same way.
        let mut t = Text::connect(node.addr);
        let key = node.key_on(threads - 1, 2);
        t.send(format!("set {key} 0 0 4\r\ntext\r\nms {key} 4 O7\r\nmeta\r\n"));
        t.expect("STORED\r\nHD O7\r\n");
        assert!(contains(&segments(node.dir.path()), b"meta"), "-t {threads}: ms acknowledged before written");
    }
}

#[test]
fn after_a_failed_background_fsync_mutations_are_refused_until_a_sync_works() {
    for threads in [1, 2] {
        let node = Node::start(threads, "everysec");
        let mut w = Wire::connect(node.addr);
        let mut t = Text::connect(node.addr);
        let keys: Vec<String> = (0..threads).map(|core| node.key_on(core, 0)).collect();
        node.gate.fail();
        for key in &keys {
            w.send(&wire::set(key.as_bytes(), b"acked", 1));
            assert_eq!(w.recv().status, Status::NoError, "-t {threads}: the SET before the fsync fails");
        }
        // Each shard's background fsync fails (within about a second). The sync thread
        // records the failure as the fsync returns, a moment after the gate counted it: until
        // the loop sees it a SET may still be acknowledged (written, as `everysec` promises),
        // and from then on none is.
        node.gate.wait_failed(threads as u64);
        for key in &keys {
            let deadline = Instant::now() + gate::PATIENCE;
            loop {
                w.send(&wire::set(key.as_bytes(), b"acked", 2));
                let r = w.recv();
                if r.status == Status::InternalError {
                    break;
                }
                assert_eq!((r.opaque, r.status), (2, Status::NoError), "-t {threads}: {key} after the failed fsync");
                assert!(Instant::now() < deadline, "-t {threads}: {key} still acknowledged after the fsync failed");
                std::thread::sleep(Duration::from_millis(1));
            }
            // Refused still, while the disk fails: the sync on the loop fails too.
            t.send(format!("set {key} 0 0 7\r\nrefused\r\nms {key} 7 O3\r\nrefused\r\n"));
            t.expect("SERVER_ERROR storage error\r\nSERVER_ERROR storage error\r\n");
            // Reads go on, and see what was acknowledged.
            t.send(format!("get {key}\r\n"));
            t.expect(format!("VALUE {key} 0 5\r\nacked\r\nEND\r\n"));
        }
        node.gate.open();
        let deadline = Instant::now() + gate::PATIENCE;
        for key in &keys {
            loop {
                w.send(&wire::set(key.as_bytes(), b"again", 3));
                if w.recv().status == Status::NoError {
                    break;
                }
                assert!(Instant::now() < deadline, "-t {threads}: {key} still refused after the disk healed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
