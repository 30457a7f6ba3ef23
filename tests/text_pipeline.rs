//! Text requests travel the same path as binary ones: pipelined lines keep their order across
//! cores (with `noreply` and meta `q` in between), a request split across reads is served
//! whole, both protocols see the same data, and `stats` counts text commands.

mod common;
mod text_wire;
mod wire;

use caskade::protocol::binary::Status;
use common::Server;
use text_wire::Text;
use wire::Wire;

/// A pipeline over 64 keys (spread over both cores) and its exact reply.
fn pipeline() -> (String, String) {
    let (mut req, mut want) = (String::new(), String::new());
    for i in 0..64 {
        let v = format!("v{i}");
        req += &format!("set k{i} {i} 0 {}\r\n{v}\r\n", v.len());
        want += "STORED\r\n";
        if i % 4 == 0 {
            req += &format!("set q{i} 0 0 1 noreply\r\nq\r\nmg q{i} v q\r\nmg none{i} v q\r\n");
            want += "VA 1\r\nq\r\n";
        }
        if i % 8 == 7 {
            req += "mn\r\n";
            want += "MN\r\n";
        }
    }
    req += "get";
    let mut values = String::new();
    for i in (0..64).rev() {
        req += &format!(" k{i} missing{i}");
        values += &format!("VALUE k{i} {i} {}\r\nv{i}\r\n", format!("v{i}").len());
    }
    req += "\r\n";
    want += &values;
    want += "END\r\n";
    for i in 0..64 {
        req += &format!("incr k{i} 1\r\nma k{i} q\r\ndelete k{i} noreply\r\nmg k{i} v q Oo{i}\r\n");
        want += "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
        want += "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
    }
    req += "mn\r\n";
    want += "MN\r\n";
    (req, want)
}

#[test]
fn pipelined_lines_keep_their_order_across_cores() {
    let server = Server::start(&["-t", "2"]);
    let (req, want) = pipeline();
    let mut c = Text::connect(server.addr());
    c.send(&req);
    c.expect(&want);
}

#[test]
fn a_pipeline_split_at_every_byte_is_served_the_same() {
    let server = Server::start(&["-t", "2"]);
    let (req, want) = pipeline();
    let mut c = Text::connect(server.addr());
    for b in req.as_bytes() {
        c.send([*b]);
    }
    c.expect(&want);
    // A line and its data block cut in two, with a pause between the halves.
    let mut d = Text::connect(server.addr());
    d.send("set spl");
    std::thread::sleep(std::time::Duration::from_millis(50));
    d.send("it 0 0 10\r\n01234");
    std::thread::sleep(std::time::Duration::from_millis(50));
    d.send("56789\r\nget split\r\n");
    d.expect("STORED\r\nVALUE split 0 10\r\n0123456789\r\nEND\r\n");
}

#[test]
fn text_and_binary_connections_see_the_same_data() {
    let server = Server::start(&["-t", "2"]);
    let mut text = Text::connect(server.addr());
    let mut bin = Wire::connect(server.addr());
    for i in 0..16 {
        text.send(format!("set shared{i} 0 0 5\r\nhello\r\n"));
        text.expect("STORED\r\n");
        bin.send(&wire::get(format!("shared{i}").as_bytes(), i));
        let r = bin.recv();
        assert_eq!((r.status, r.value.as_slice()), (Status::NoError, &b"hello"[..]));
    }
    bin.send(&wire::set(b"from-binary", b"world", 99));
    assert_eq!(bin.recv().status, Status::NoError);
    text.send("get from-binary\r\n");
    text.expect("VALUE from-binary 0 5\r\nworld\r\nEND\r\n");
}

#[test]
fn stats_count_text_commands() {
    let server = Server::start(&["-t", "2"]);
    let mut c = Text::connect(server.addr());
    let before = c.stats("");
    let n = |m: &std::collections::HashMap<String, String>, k: &str| -> u64 {
        m.get(k).unwrap_or_else(|| panic!("no stat {k}")).parse().unwrap()
    };
    c.send("set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b c\r\nget a\r\nincr a 1\r\nincr z 1\r\ndelete b\r\ndelete b\r\n");
    c.expect("STORED\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\nVALUE a 0 1\r\n1\r\nEND\r\n2\r\nNOT_FOUND\r\nDELETED\r\nNOT_FOUND\r\n");
    let after = c.stats("");
    for (stat, delta) in [
        ("cmd_set", 2),
        ("cmd_get", 4),
        ("get_hits", 3),
        ("get_misses", 1),
        ("incr_hits", 1),
        ("incr_misses", 1),
        ("delete_hits", 1),
        ("delete_misses", 1),
    ] {
        assert_eq!(n(&after, stat) - n(&before, stat), delta, "{stat}");
    }
    let settings = c.stats("settings");
    assert_eq!(settings["binding_protocol"], "auto-negotiate");
}
