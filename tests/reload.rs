//! The config file and SIGHUP: a reload applies the log level and the memory limit live,
//! says which changed settings take a restart, and a broken file changes nothing. SIGTERM
//! exits 0 within 5 s, with what was written on disk for the next start.

mod common;
mod wire;

use std::time::{Duration, Instant};

use caskade::protocol::binary::{Opcode, RequestExtras, Status};
use common::Server;
use wire::{request, Wire};

fn settings(server: &Server) -> serde_json::Value {
    let (status, body) = server.http_get("/stats");
    assert_eq!(status, 200);
    serde_json::from_str::<serde_json::Value>(&body).unwrap()
}

/// An unknown opcode: logged at debug level only.
fn provoke_a_debug_line(server: &Server) {
    let mut c = Wire::connect(server.addr());
    c.send(&wire::encode(&[request(Opcode::from_u8(0x7f), b"", b"", RequestExtras::None, 1)]));
    assert_eq!(c.recv().status, Status::UnknownCommand);
}

#[test]
fn sighup_applies_log_level_and_memory_limit_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("caskade.toml");
    std::fs::write(&config, "log-level = \"info\"\nmemory-limit = 64\nmax-connections = 100\n").unwrap();
    let server = Server::start_caskade(&["-t", "2", "--config", config.to_str().unwrap()], &[("RUST_LOG", "")]);
    let doc = settings(&server);
    assert_eq!(doc["settings"]["memory-limit"], "64");
    assert_eq!(doc["stats"]["limit_maxbytes"], 64 << 20);
    assert_eq!(doc["stats"]["max_connections"], 100);
    provoke_a_debug_line(&server);

    // A broken file: nothing changes.
    std::fs::write(&config, "memory-limit = \"lots\"\n").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for("the reload error", Duration::from_secs(5), || server.log().contains("not reloaded"));
    assert_eq!(settings(&server)["settings"]["memory-limit"], "64");

    std::fs::write(&config, "log-level = \"debug\"\nmemory-limit = 128\nmax-connections = 200\n").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for("the new memory limit", Duration::from_secs(5), || {
        settings(&server)["settings"]["memory-limit"] == "128"
    });
    let doc = settings(&server);
    assert_eq!(doc["stats"]["limit_maxbytes"], 128 << 20);
    assert_eq!(doc["settings"]["log-level"], "debug");
    // -c takes a restart: reported, not applied.
    assert_eq!(doc["settings"]["max-connections"], "100");
    assert_eq!(doc["stats"]["max_connections"], 100);
    let log = server.log();
    assert!(log.contains("memory-limit changed from \"64\" to \"128\""), "{log}");
    assert!(log.contains("max-connections changed from \"100\" to \"200\": this takes a restart"), "{log}");
    assert!(!log.contains("rejected opcode"), "a debug line was logged at level info:\n{log}");

    provoke_a_debug_line(&server);
    server.wait_for("a debug line", Duration::from_secs(5), || server.log().contains("rejected opcode"));
    assert_eq!(server.stop().code(), Some(0));
}

#[test]
fn sigterm_exits_0_within_5_s_with_the_data_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let server = Server::start_caskade(&["-t", "2", "--data-dir", data, "--fsync", "never"], &[]);
    let mut c = Wire::connect(server.addr());
    let store = RequestExtras::Store { flags: 9, exptime: 0 };
    let keys: Vec<Vec<u8>> = (0..500).map(|i| format!("k{i}").into_bytes()).collect();
    let reqs: Vec<_> = keys.iter().map(|k| request(Opcode::Set, k, b"value", store, 0)).collect();
    c.send(&wire::encode(&reqs));
    for _ in 0..keys.len() {
        assert_eq!(c.recv().status, Status::NoError);
    }
    drop(c);
    let started = Instant::now();
    let status = server.stop();
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5), "stopped in {:?}", started.elapsed());

    let server = Server::start_caskade(&["-t", "2", "--data-dir", data], &[]);
    let mut c = Wire::connect(server.addr());
    for k in &keys {
        c.send(&wire::get(k, 0));
        let r = c.recv();
        assert_eq!((r.status, &r.value[..]), (Status::NoError, &b"value"[..]), "{}", String::from_utf8_lossy(k));
    }
}

#[test]
fn sighup_applies_merge_thresholds_live_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("caskade.toml");
    std::fs::write(&config, "merge-dead-fraction = 0.5\n").unwrap();
    let server = Server::start_caskade(
        &["-t", "1", "--segment-size", "64k", "-I", "16k", "--fsync", "never", "--config", config.to_str().unwrap()],
        &[],
    );
    let doc = settings(&server);
    assert_eq!((doc["settings"]["merge-dead-fraction"].as_str(), doc["settings"]["merge-min-dead"].as_str()), (Some("0.5"), Some("16m")));
    let merges = || settings(&server)["stats"]["merges"].as_u64().unwrap();

    // Two rounds over the same keys: the first round's segments are all dead, but hold far
    // less than the 16 MiB of dead bytes a merge waits for.
    let mut c = Wire::connect(server.addr());
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    let value = |i: usize, round: usize| format!("{i:05}-{round}-{}", "m".repeat(200)).into_bytes();
    let keys: Vec<Vec<u8>> = (0..2000).map(|i| format!("merge:{i}").into_bytes()).collect();
    for round in 0..2 {
        let values: Vec<Vec<u8>> = (0..keys.len()).map(|i| value(i, round)).collect();
        let reqs: Vec<_> = keys.iter().zip(&values).map(|(k, v)| request(Opcode::Set, k, v, store, 0)).collect();
        c.send(&wire::encode(&reqs));
        for _ in 0..reqs.len() {
            assert_eq!(c.recv().status, Status::NoError);
        }
    }
    // The shard looks for a merge once a second: watch it not merge for a while.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        assert_eq!(merges(), 0, "merged under the default thresholds");
        std::thread::sleep(Duration::from_millis(100));
    }
    // (The disk figures are summed once a second: they are up to date by now.)
    let dead = settings(&server)["stats"]["dead_bytes"].as_u64().unwrap();
    assert!(dead > 64 << 10, "{dead} dead bytes");

    // A bad value: refused, with the setting named, and nothing changes.
    std::fs::write(&config, "merge-dead-fraction = 1.5\nmerge-min-dead = \"64k\"\n").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for("the reload error", Duration::from_secs(5), || server.log().contains("not reloaded"));
    let log = server.log();
    let line = log.lines().find(|l| l.contains("not reloaded")).unwrap();
    assert!(line.contains("merge-dead-fraction"), "{line}");
    let doc = settings(&server);
    assert_eq!((doc["settings"]["merge-dead-fraction"].as_str(), doc["settings"]["merge-min-dead"].as_str()), (Some("0.5"), Some("16m")));
    assert_eq!(merges(), 0);

    // Good values: applied live, and the shard merges.
    std::fs::write(&config, "merge-dead-fraction = 0.25\nmerge-min-dead = \"64k\"\n").unwrap();
    server.signal(libc::SIGHUP);
    server.wait_for("the new merge thresholds", Duration::from_secs(5), || {
        settings(&server)["settings"]["merge-dead-fraction"] == "0.25"
    });
    assert_eq!(settings(&server)["settings"]["merge-min-dead"], "64k");
    server.wait_for("a merge", Duration::from_secs(20), || merges() > 0);
    let log = server.log();
    assert!(log.contains("merge-min-dead changed from \"16m\" to \"64k\""), "{log}");
    server.wait_for("dead bytes reclaimed", Duration::from_secs(5), || {
        settings(&server)["stats"]["dead_bytes"].as_u64().unwrap() < dead
    });
    for (i, k) in keys.iter().enumerate() {
        c.send(&wire::get(k, 0));
        let r = c.recv();
        assert_eq!((r.status, r.value), (Status::NoError, value(i, 1)), "{}", String::from_utf8_lossy(k));
    }
    assert_eq!(server.stop().code(), Some(0));
}
