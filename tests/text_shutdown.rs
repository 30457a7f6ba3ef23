//! The text `shutdown` command stops the node only when `-A` allowed it, and then as SIGTERM
//! does: replies before it are written and the process exits 0.

mod common;
mod text_wire;

use std::time::{Duration, Instant};

use common::Server;
use text_wire::Text;

#[test]
fn shutdown_needs_the_flag() {
    let server = Server::start(&["-t", "2"]);
    let mut c = Text::connect(server.addr());
    c.send("shutdown\r\nshutdown graceful\r\n");
    c.expect("ERROR: shutdown not enabled\r\nERROR: shutdown not enabled\r\n");
    c.assert_serves("still-up");
    assert_eq!(c.stats("settings")["shutdown_command"], "no");
}

#[test]
fn shutdown_with_the_flag_stops_the_node_cleanly() {
    let server = Server::start(&["-t", "2", "-A"]);
    let mut c = Text::connect(server.addr());
    assert_eq!(c.stats("settings")["shutdown_command"], "yes");
    c.send("shutdown now\r\n");
    c.expect("CLIENT_ERROR invalid shutdown mode\r\n");
    c.send("set k 0 0 1\r\nx\r\nshutdown\r\n");
    c.expect("STORED\r\n");
    assert!(c.closed(), "the connection that asked is closed");
    // The process exits on its own, with 0, well before the harness would SIGTERM it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(server.addr()).is_ok() {
        assert!(Instant::now() < deadline, "still listening 10 s after shutdown");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = server.stop();
    assert!(status.success(), "exit status {status}");
}
