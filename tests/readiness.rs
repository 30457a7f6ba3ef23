//! systemd readiness: with `NOTIFY_SOCKET` pointing at a unix datagram socket, caskade
//! sends `READY=1` once its listeners are up and its shards recovered (so the data port
//! answers by then), and `STOPPING=1` when SIGTERM stops it.

mod common;
mod wire;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::Server;
use wire::Wire;

/// Datagrams received until one contains `want`, or panics after 10 s.
fn wait_for(socket: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = msg.lines().any(|l| l == want);
            seen.push(msg);
            if found {
                return;
            }
        }
    }
    panic!("no {want} within 10 s; got {seen:?}");
}

#[test]
fn ready_once_serving_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let server = Server::start_caskade(&["-t", "2"], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut seen = Vec::new();
    wait_for(&socket, "READY=1", &mut seen);
    assert!(seen.iter().any(|m| m.contains("STATUS=")), "{seen:?}");
    // READY came after the listeners and recovery: the node serves, and says so.
    Wire::connect(server.addr()).assert_serves(b"ready");
    assert_eq!(server.http_get("/health").0, 200);
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains(&format!("MAINPID={}", server.pid())), "{ready}");

    server.signal(libc::SIGTERM);
    wait_for(&socket, "STOPPING=1", &mut seen);
    assert_eq!(server.stop().code(), Some(0));
}
