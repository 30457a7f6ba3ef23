//! `-l` takes a host name (issue 16), as memcached does: the server listens on every address
//! the name resolves to. `-l localhost` serves on 127.0.0.1, and on ::1 as well where the
//! name resolves to it and this machine has IPv6.

mod common;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use common::{noop_round_trip, Server};

#[test]
fn listen_on_localhost_serves_every_address_it_resolves_to() {
    let server = Server::start_caskade(&["-l", "localhost", "-t", "2"], &[]);
    // The harness waited for 127.0.0.1 to answer.
    let port = server.port();
    let log = server.log();
    assert!(log.contains(&format!("listening on 127.0.0.1:{port}")), "{log}");
    let resolved: Vec<SocketAddr> = ("localhost", port).to_socket_addrs().expect("resolve localhost").collect();
    for addr in resolved {
        // An address this machine cannot bind (no IPv6) is skipped, with a warning.
        let bindable = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).is_ok();
        if bindable {
            noop_round_trip(addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{addr}: {e}\n{log}"));
            assert!(log.contains(&addr.to_string()), "{addr} is not in the start-up line:\n{log}");
        }
    }
    assert!(server.stop().success());
}
