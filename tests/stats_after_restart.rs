//! The first STAT after a restart counts every shard (issue 16): each core publishes the
//! levels recovery left (curr_items, bytes, ...) before any core accepts a connection, so a
//! readiness script that reads `curr_items` as soon as the port answers sees all the items,
//! not those of the cores that happened to have run a turn.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

const ITEMS: usize = 2000;
const RESTARTS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `request` and reads until the reply ends with `end` (or panics after the timeout).
fn exchange(stream: &mut TcpStream, request: &[u8], end: &[u8], count: usize) -> String {
    stream.write_all(request).expect("send");
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    while got.windows(end.len()).filter(|w| *w == end).count() < count {
        match stream.read(&mut chunk) {
            Ok(0) => panic!("the server closed the connection after {:?}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn stat(stats: &str, name: &str) -> u64 {
    let prefix = format!("STAT {name} ");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{stats}"))
}

/// The `stats` answer on the first connection the server accepts: connects as soon as the
/// port does, with nothing sent before.
fn first_stats(server: &mut Server) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = server.wait_exit(Duration::ZERO) {
            panic!("the server exited with {status}\n{}", server.log());
        }
        if let Ok(mut stream) = TcpStream::connect_timeout(&server.addr(), Duration::from_secs(1)) {
            stream.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
            return exchange(&mut stream, b"stats\r\n", b"END\r\n", 1);
        }
        assert!(Instant::now() < deadline, "the port did not accept within {TIMEOUT:?}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_first_stat_after_a_restart_counts_every_shard() {
    let dir = tempfile::tempdir().expect("a data directory");
    let data_dir = dir.path().to_str().expect("a UTF-8 path");
    let args = ["-t", "2", "--data-dir", data_dir];
    let server = Server::start_caskade(&args, &[]);
    let mut c = TcpStream::connect(server.addr()).expect("connect");
    c.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    let mut sets = Vec::new();
    for i in 0..ITEMS {
        sets.extend_from_slice(format!("set key:{i} 0 0 5\r\nvalue\r\n").as_bytes());
    }
    // Keys spread over both cores by their hash; every one is answered.
    exchange(&mut c, &sets, b"STORED\r\n", ITEMS);
    let stats = exchange(&mut c, b"stats\r\n", b"END\r\n", 1);
    assert_eq!(stat(&stats, "curr_items"), ITEMS as u64, "{stats}");
    drop(c);
    assert!(server.stop().success());

    for restart in 1..=RESTARTS {
        let mut server = Server::launch_caskade(&args, &[]);
        let stats = first_stats(&mut server);
        assert_eq!(stat(&stats, "curr_items"), ITEMS as u64, "restart {restart}: the first STAT\n{stats}");
        assert!(stat(&stats, "bytes") > 0, "restart {restart}: the first STAT\n{stats}");
        assert!(server.stop().success());
    }
}
