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
