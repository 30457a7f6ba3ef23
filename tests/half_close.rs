//! A client that sends its last requests and closes its side at once: the close arrives with
//! the data (one readiness event for both), and the server must still see it and close the
//! connection, although it stops reading a socket after a short read (edge-triggered epoll:
//! a short read has drained the socket, and later data raises a new edge; a close that came
//! with the data raises none).

mod common;
mod wire;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::Server;
use wire::{get, set, Wire};

fn curr_connections(c: &mut TcpStream) -> u64 {
    c.write_all(b"stats\r\n").unwrap();
    let mut text = String::new();
    let mut chunk = [0u8; 65536];
    while !text.ends_with("END\r\n") {
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "stats connection closed");
        text.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
    }
    text.lines()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("curr_connections")
}

#[test]
fn a_close_sent_with_the_last_requests_closes_the_connection() {
    for args in [&["-t", "2", "--in-memory"][..], &["-t", "1"][..]] {
        let server = Server::start_caskade(args, &[]);
        let mut setter = Wire::connect(server.addr());
        setter.send(&set(b"k", b"v", 1));
        setter.recv();
        let mut stats = TcpStream::connect(server.addr()).unwrap();
        stats.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let before = curr_connections(&mut stats);

        for round in 0..200u32 {
            let mut c = TcpStream::connect(server.addr()).unwrap();
            c.set_nodelay(true).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut burst = Vec::new();
            for i in 0..1 + round % 4 {
                burst.extend_from_slice(&get(b"k", i));
            }
            c.write_all(&burst).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            // Whatever replies come, the server must close: EOF (or a reset), never a timeout.
            let mut rest = Vec::new();
            match c.read_to_end(&mut rest) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("{args:?}, round {round}: the server kept a half-closed connection open: {e}"),
            }
        }
        // Every one of them is gone from the server's count too.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let now = curr_connections(&mut stats);
            if now == before {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{args:?}: curr_connections {now}, was {before}");
            std::thread::sleep(Duration::from_millis(20));
        }
        setter.assert_serves(b"after");
    }
}
