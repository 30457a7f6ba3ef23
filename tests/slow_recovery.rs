//! Signals and `/health` during a real, slow recovery: a data directory of many items whose
//! hint files are gone (a `kill -9` left the active segment without one, and the others are
//! deleted), so start-up must scan every record.
//!
//! * While the shards recover, `/health` answers `503 recovering` and the data port does not
//!   answer yet; then `/health` answers `200 serving`.
//! * A SIGHUP during recovery does not kill the node (its default action would): the reload
//!   is applied once the node serves.
//! * A SIGTERM during recovery stops the node once recovery is done, without serving, with
//!   exit code 0; the data is all there at the next start.

mod common;
mod wire;

use std::path::Path;
use std::time::{Duration, Instant};

use caskade::protocol::binary::{Opcode, RequestExtras, Status};
use common::Server;
use wire::{request, Wire};

/// Items written: enough for a recovery of a good fraction of a second on a slow machine
/// (the test checks that it saw it, and says so if the machine was too fast).
const ITEMS: usize = 600_000;
const BATCH: usize = 2_000;
/// The longest a fill, a recovery or a stop may take.
const BOUND: Duration = Duration::from_secs(120);

fn key(i: usize) -> Vec<u8> {
    format!("slow:{i:08}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("{i:08}-{}", "v".repeat(60)).into_bytes()
}

/// Fills `data` with [`ITEMS`] items through the protocol (`--fsync never`), kills the
/// server with SIGKILL and deletes every hint file.
fn fill_and_crash(data: &Path) {
    let data = data.to_str().unwrap();
    let server = Server::start_caskade(&["-t", "1", "--data-dir", data, "--fsync", "never", "--admin", "off"], &[]);
    let mut c = Wire::connect(server.addr());
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    let started = Instant::now();
    for batch in 0..ITEMS / BATCH {
        assert!(started.elapsed() < BOUND, "the fill took over {BOUND:?}");
        let (keys, values): (Vec<_>, Vec<_>) = (batch * BATCH..(batch + 1) * BATCH).map(|i| (key(i), value(i))).unzip();
        // Quiet SETs answer only on failure; the NOOP after them says the batch is done.
        let mut reqs: Vec<_> = keys.iter().zip(&values).map(|(k, v)| request(Opcode::SetQ, k, v, store, 0)).collect();
        reqs.push(request(Opcode::Noop, b"", b"", RequestExtras::None, 1));
        c.send(&wire::encode(&reqs));
        let r = c.recv();
        assert_eq!((r.opcode, r.status), (Opcode::Noop, Status::NoError), "a SET of batch {batch} failed: {r:?}");
    }
    server.signal(libc::SIGKILL);
    drop(server);
    let mut hints = 0;
    for entry in std::fs::read_dir(Path::new(data).join("shard-000")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "hint") {
            std::fs::remove_file(&path).unwrap();
            hints += 1;
        }
    }
    eprintln!("slow_recovery: {ITEMS} items written in {:.1} s; {hints} hint files deleted", started.elapsed().as_secs_f64());
}

/// Polls `/health` until it answers `503 recovering` (and checks that the data port does not
/// answer meanwhile). Panics if the node serves first: the recovery was too fast to see.
fn wait_for_recovering(server: &mut Server) {
    let deadline = Instant::now() + BOUND;
    loop {
        assert!(Instant::now() < deadline, "/health never said recovering\n{}", server.log());
        if let Some(status) = server.wait_exit(Duration::ZERO) {
            panic!("the server exited with {status} before it recovered\n{}", server.log());
        }
        match server.try_http_get("/health") {
            Some((503, body)) if body == "recovering\n" => {
                // Nothing listens on the data port before recovery is done.
                assert!(common::noop_round_trip(server.addr(), Duration::from_millis(500)).is_err());
                return;
            }
            Some((503, body)) => assert_eq!(body, "starting\n"),
            Some((200, _)) => panic!(
                "the node served before a recovering /health was seen: recovery was too fast to observe \
                 (raise ITEMS)\n{}",
                server.log()
            ),
            Some(other) => panic!("/health answered {other:?}"),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn check_some_items(server: &Server) {
    let mut c = Wire::connect(server.addr());
    for i in (0..ITEMS).step_by(ITEMS / 50).chain([ITEMS - 1]) {
        c.send(&wire::get(&key(i), 0));
        let r = c.recv();
        assert_eq!((r.status, r.value), (Status::NoError, value(i)), "item {i}");
    }
}

#[test]
fn health_is_503_during_a_real_recovery_and_a_sighup_then_does_not_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_and_crash(&data);
    let config = dir.path().join("caskade.toml");
    std::fs::write(&config, "memory-limit = 512\n").unwrap();
    let args = ["-t", "1", "--data-dir", data.to_str().unwrap(), "--config", config.to_str().unwrap()];
    let mut server = Server::launch_caskade(&args, &[]);
    wait_for_recovering(&mut server);

    // SIGHUP's default action is to end the process: the handler must be in place by now.
    std::fs::write(&config, "memory-limit = 256\n").unwrap();
    server.signal(libc::SIGHUP);
    let still_recovering = server.try_http_get("/health");

    // /health goes from 503 to 200, and the node serves, with the reload applied.
    let deadline = Instant::now() + BOUND;
    loop {
        assert!(Instant::now() < deadline, "never served\n{}", server.log());
        if let Some(status) = server.wait_exit(Duration::ZERO) {
            panic!("the server exited with {status} after a SIGHUP during recovery\n{}", server.log());
        }
        match server.try_http_get("/health") {
            Some((200, body)) => {
                assert_eq!(body, "serving\n");
                break;
            }
            Some((503, body)) => assert_eq!(body, "recovering\n"),
            other => panic!("/health answered {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    server.wait_ready(Duration::from_secs(10));
    server.wait_for("the deferred reload", Duration::from_secs(10), || {
        let (_, body) = server.http_get("/stats");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        doc["settings"]["memory-limit"] == "256"
    });
    let (_, body) = server.http_get("/stats");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["stats"]["limit_maxbytes"], 256 << 20);
    assert_eq!(doc["stats"]["curr_items"], ITEMS as u64);
    assert_eq!(doc["stats"]["recovery_records"], ITEMS as u64);
    assert_eq!(doc["stats"]["recovery_segments_from_hints"], 0);
    let recovery = doc["stats"]["recovery_seconds"].as_f64().unwrap();
    eprintln!("slow_recovery: recovery took {recovery:.3} s; /health right after the SIGHUP: {still_recovering:?}");
    let log = server.log();
    assert!(log.contains("SIGHUP during recovery"), "{log}");
    assert!(log.contains("memory-limit changed from \"512\" to \"256\""), "{log}");
    check_some_items(&server);
    Wire::connect(server.addr()).assert_serves(b"after-recovery");
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn sigterm_during_a_real_recovery_stops_without_serving_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill_and_crash(&data);
    let args = ["-t", "1", "--data-dir", data.to_str().unwrap()];
    let mut server = Server::launch_caskade(&args, &[]);
    wait_for_recovering(&mut server);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(BOUND).unwrap_or_else(|| panic!("still running after SIGTERM\n{}", server.log()));
    let log = server.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("during recovery: stopping without serving"), "{log}");
    assert!(!log.contains("listening on"), "it served after a SIGTERM during recovery:\n{log}");
    drop(server);

    // Nothing was lost, and the next start serves (after scanning again: recovery writes no
    // hints for the segments it scanned).
    let mut server = Server::launch_caskade(&args, &[]);
    server.wait_ready(BOUND);
    check_some_items(&server);
    assert_eq!(server.stop().code(), Some(0));
}
