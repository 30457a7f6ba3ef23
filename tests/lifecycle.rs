//! The command line and stopping: bad flags exit 2 with a message; SIGTERM and SIGINT stop
//! the server with exit code 0 after the replies in flight.

mod common;
mod wire;

use std::process::Command;

use caskade::protocol::binary::{Opcode, RequestExtras, Status};
use common::Server;
use wire::{request, Wire};

fn caskade(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_caskade")).args(args).output().expect("run caskade")
}

#[test]
fn bad_flags_exit_2_with_a_clear_message() {
    for args in [&["--no-such-flag"][..], &["-p", "notaport"], &["-t", "0"], &["-I", "5g"], &["-m", "1", "-I", "2m"]] {
        let out = caskade(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "{args:?} printed no message");
    }
}

#[test]
fn help_and_version() {
    let out = caskade(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--port", "--listen", "--threads", "--memory-limit", "--max-connections", "--max-item-size"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let out = caskade(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    // No admin port (the default one, 11212, may be taken too) and no data directory: the
    // only thing that can be refused is the data port.
    let out = caskade(&["-l", "127.0.0.1", "-p", &port, "--admin", "off", "--in-memory"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
}

#[test]
fn sigterm_answers_what_was_asked_and_exits_0() {
    let server = Server::start(&["-t", "4"]);
    let mut c = Wire::connect(server.addr());
    let keys: Vec<Vec<u8>> = (0..2000).map(|i| format!("stop:{i}").into_bytes()).collect();
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    let reqs: Vec<_> = keys.iter().map(|k| request(Opcode::Set, k, b"v", store, 1)).collect();
    c.send(&wire::encode(&reqs));
    // Wait for the first reply so the batch is being served, then stop the server.
    assert_eq!(c.recv().status, Status::NoError);
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    // Whatever was read before the stop was answered: whole frames, all successes, and no
    // reply cut in the middle.
    let mut answered = 1;
    while let Some(r) = c.try_recv() {
        assert_eq!(r.status, Status::NoError);
        answered += 1;
    }
    assert_eq!(c.leftover(), 0, "a reply was cut off after {answered} whole ones");
}

#[test]
fn sigint_exits_0() {
    let server = Server::start(&["-t", "2"]);
    let mut c = Wire::connect(server.addr());
    c.assert_serves(b"before-sigint");
    unsafe { libc::kill(server.pid() as i32, libc::SIGINT) };
    assert_eq!(server.stop().code(), Some(0));
}
