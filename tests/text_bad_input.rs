//! Bad text input gets memcached's answer, the connection is closed only where memcached
//! closes it, nothing is buffered past `-I`, and every other client goes on being served.

mod common;
mod text_wire;

use common::Server;
use text_wire::Text;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_line_over_2048_bytes_closes_only_that_connection() {
    let server = Server::start(&["-t", "2"]);
    let mut other = Text::connect(server.addr());
    let mut bad = Text::connect(server.addr());
    bad.send("set ok 0 0 1\r\nx\r\n");
    bad.expect("STORED\r\n");
    bad.send(vec![b'x'; 4096]);
    assert!(bad.closed(), "2048 bytes without a newline close the connection");
    other.assert_serves("after-long-line");
    // A gat may not grow past 2048 bytes either; a get with many keys may.
    let mut gat = Text::connect(server.addr());
    gat.send(format!("gat 0 {}", "k ".repeat(1500)));
    assert!(gat.closed());
    let mut get = Text::connect(server.addr());
    let keys: String = (0..2000).map(|i| format!(" k{i}")).collect();
    get.send(format!("set k7 0 0 1\r\nx\r\nget{keys}\r\n"));
    get.expect("STORED\r\nVALUE k7 0 1\r\nx\r\nEND\r\n");
}

#[test]
fn bad_commands_and_numbers_answer_and_go_on() {
    let server = Server::start(&["-t", "2"]);
    let mut c = Text::connect(server.addr());
    c.send("bogus\r\nset k 0 0 abc\r\nhello\r\nincr k nan\r\ntouch k soon\r\nverbosity loud\r\n");
    c.expect(concat!(
        "ERROR\r\n",
        "CLIENT_ERROR bad command line format\r\n",
        "ERROR\r\n",
        "CLIENT_ERROR invalid numeric delta argument\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
        "CLIENT_ERROR bad command line format\r\n",
    ));
    c.assert_serves("after-bad-numbers");
}

#[test]
fn a_data_block_of_the_wrong_length_is_a_bad_chunk() {
    let server = Server::start(&["-t", "2"]);
    let mut c = Text::connect(server.addr());
    // Two bytes too many: memcached reads 5 + 2, finds no \r\n, and reads on after them.
    c.send("set k 0 0 5\r\nhelloXX\r\nget k\r\n");
    c.expect("CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n");
    // One byte too few: the block takes "hell\r\n\r", the \n left ends an empty line.
    c.send("set k 0 0 5\r\nhell\r\n\r\nget k\r\n");
    c.expect("CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n");
    c.send("ms k 5 q\r\nhelloXX\r\nmn\r\n");
    c.expect("CLIENT_ERROR bad data chunk\r\nERROR\r\nMN\r\n");
    c.assert_serves("after-bad-chunk");
}

#[test]
fn a_huge_data_block_is_refused_and_never_buffered() {
    let server = Server::start(&["-t", "2", "-I", "1m"]);
    let mut other = Text::connect(server.addr());
    other.assert_serves("before");
    let mut big = Text::connect(server.addr());
    let announced: usize = 64 << 20;
    big.send(format!("set big 0 0 {announced}\r\n"));
    big.expect("SERVER_ERROR object too large for cache\r\n");
    let rss_before = rss_kib(server.pid());
    let chunk = vec![b'v'; 1 << 20];
    for _ in 0..32 {
        big.send(&chunk);
    }
    other.assert_serves("during-big-block");
    let rss_after = rss_kib(server.pid());
    assert!(rss_after < rss_before + 8 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");
    // The rest of the block, its \r\n, then commands again on the same connection.
    for _ in 32..64 {
        big.send(&chunk);
    }
    big.send("\r\nget big\r\n");
    big.expect("END\r\n");
    big.assert_serves("after-big-block");
    // A value of exactly 1 MiB fits (caskade's -I bounds the value alone).
    let mut c = Text::connect(server.addr());
    c.send(format!("set fits 0 0 {}\r\n", 1 << 20));
    c.send(&chunk);
    c.send("\r\n");
    c.expect("STORED\r\n");
}

#[test]
fn garbage_never_takes_the_server_down() {
    let server = Server::start(&["-t", "2"]);
    let mut other = Text::connect(server.addr());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20 {
        let mut junk = Text::connect(server.addr());
        let mut bytes = Vec::with_capacity(3000);
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Mostly printable, with spaces and line ends, never the binary magic first.
            let b = match seed % 10 {
                0 => b'\n',
                1 => b' ',
                2 => b'\r',
                _ => b"gsetmadnkqv0123456789 "[(seed >> 8) as usize % 22],
            };
            bytes.push(b);
        }
        if bytes[0] == 0x80 {
            bytes[0] = b'x';
        }
        junk.send(&bytes);
        drop(junk);
        other.assert_serves(&format!("round-{round}"));
    }
    assert!(server.stop().success());
}
