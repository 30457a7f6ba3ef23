//! The text protocol, classic and meta commands, with exact replies. Each expectation was
//! checked against memcached 1.6.18 (`CASKADE_TEST_SERVER=memcached` runs this file against
//! it); what caskade answers differently is kept out of here and written in
//! `protocol-spec/memcached-text.md`.

mod common;
mod text_wire;

use common::Server;
use text_wire::Text;

fn server() -> (Server, Text) {
    let server = Server::start(&["-t", "2"]);
    let c = Text::connect(server.addr());
    (server, c)
}

#[test]
fn set_get_gets_and_multi_get() {
    let (_s, mut c) = server();
    c.send("set a 5 0 3\r\nabc\r\nset b 0 0 0\r\n\r\n");
    c.expect("STORED\r\nSTORED\r\n");
    c.send("get a nope b a\r\n");
    c.expect("VALUE a 5 3\r\nabc\r\nVALUE b 0 0\r\n\r\nVALUE a 5 3\r\nabc\r\nEND\r\n");
    let cas = c.cas_of("a");
    c.send("gets a b\r\n");
    let line = c.line();
    assert_eq!(line, format!("VALUE a 5 3 {cas}"));
    c.expect("abc\r\n");
    assert!(c.line().starts_with("VALUE b 0 0 "));
    c.expect("\r\nEND\r\n");
    // Values may hold \r\n; flags are 32 bits; a bare \n ends a line.
    c.send("set bin 4294967295 0 4\r\n\r\n\r\n\r\nget bin\n");
    c.expect("STORED\r\nVALUE bin 4294967295 4\r\n\r\n\r\n\r\nEND\r\n");
    c.send("get nope\r\n");
    c.expect("END\r\n");
}

#[test]
fn add_replace_append_prepend() {
    let (_s, mut c) = server();
    c.send("add k 1 0 1\r\nx\r\nadd k 1 0 1\r\ny\r\nreplace k 2 0 1\r\nz\r\nreplace nope 0 0 1\r\nz\r\n");
    c.expect("STORED\r\nNOT_STORED\r\nSTORED\r\nNOT_STORED\r\n");
    c.send("append k 9 0 2\r\nab\r\nprepend k 9 0 2\r\n01\r\nget k\r\n");
    c.expect("STORED\r\nSTORED\r\nVALUE k 2 5\r\n01zab\r\nEND\r\n");
    c.send("append nope 0 0 1\r\nx\r\nprepend nope 0 0 1\r\nx\r\n");
    c.expect("NOT_STORED\r\nNOT_STORED\r\n");
}

#[test]
fn cas() {
    let (_s, mut c) = server();
    c.send("cas k 0 0 1 1\r\nx\r\n");
    c.expect("NOT_FOUND\r\n");
    c.send("set k 0 0 1\r\nx\r\n");
    c.expect("STORED\r\n");
    let cas = c.cas_of("k");
    c.send(format!("cas k 3 0 1 {}\r\ny\r\ncas k 0 0 1 0\r\nz\r\n", cas + 1));
    c.expect("EXISTS\r\nEXISTS\r\n");
    c.send(format!("cas k 3 0 1 {cas}\r\ny\r\ncas k 0 0 1 {cas}\r\nz\r\nget k\r\n"));
    c.expect("STORED\r\nEXISTS\r\nVALUE k 3 1\r\ny\r\nEND\r\n");
    let cas = c.cas_of("k");
    c.send(format!("cas k 0 0 1 {cas} noreply\r\nn\r\ncas k 0 0 1 {cas} noreply\r\nm\r\nget k\r\n"));
    c.expect("VALUE k 0 1\r\nn\r\nEND\r\n");
}

#[test]
fn noreply_is_silent() {
    let (_s, mut c) = server();
    c.send(concat!(
        "set k 0 0 1 noreply\r\n5\r\n",
        "add k 0 0 1 noreply\r\n6\r\n",
        "replace k 0 0 1 noreply\r\n7\r\n",
        "append k 0 0 1 noreply\r\n0\r\n",
        "prepend k 0 0 1 noreply\r\n1\r\n",
        "incr k 3 noreply\r\n",
        "decr k 1 noreply\r\n",
        "touch k 100 noreply\r\n",
        "incr nope 1 noreply\r\n",
        "delete nope noreply\r\n",
        "verbosity 0 noreply\r\n",
        "get k\r\n",
    ));
    c.expect("VALUE k 0 3\r\n172\r\nEND\r\n");
    c.send("delete k noreply\r\ndelete k 0 noreply\r\nflush_all noreply\r\nget k\r\n");
    c.expect("END\r\n");
}

#[test]
fn delete_incr_decr_touch() {
    let (_s, mut c) = server();
    c.send("set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n 18446744073709551615\r\nincr n 2\r\n");
    c.expect("STORED\r\n15\r\n0\r\n18446744073709551615\r\n1\r\n");
    c.send("incr nope 1\r\ndecr nope 1\r\nset t 0 0 1\r\nx\r\nincr t 1\r\n");
    c.expect("NOT_FOUND\r\nNOT_FOUND\r\nSTORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    c.send("incr n x\r\nincr n -1\r\n");
    c.expect("CLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERROR invalid numeric delta argument\r\n");
    c.send("touch n 100\r\ntouch nope 100\r\ntouch n x\r\n");
    c.expect("TOUCHED\r\nNOT_FOUND\r\nCLIENT_ERROR invalid exptime argument\r\n");
    c.send("delete n\r\ndelete n\r\ndelete t 0\r\ndelete t 1\r\n");
    c.expect("DELETED\r\nNOT_FOUND\r\nDELETED\r\nCLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
}

#[test]
fn expiry_touch_and_gat() {
    let (_s, mut c) = server();
    // Negative exptime: gone at once. An absolute time in the past: gone too.
    c.send("set a 0 -1 1\r\nx\r\nset b 0 2592001 1\r\nx\r\nset c 0 100 1\r\nx\r\nget a b c\r\n");
    c.expect("STORED\r\nSTORED\r\nSTORED\r\nVALUE c 0 1\r\nx\r\nEND\r\n");
    c.send("gat 100 c nope\r\ngats 100 c\r\n");
    c.expect("VALUE c 0 1\r\nx\r\nEND\r\n");
    assert!(c.line().starts_with("VALUE c 0 1 "));
    c.expect("x\r\nEND\r\n");
    // gat with a negative exptime returns the item one last time.
    c.send("gat -1 c\r\nget c\r\ngat 10\r\n");
    c.expect("VALUE c 0 1\r\nx\r\nEND\r\nEND\r\nEND\r\n");
    c.send("set d 0 1 1\r\nx\r\ntouch d -1\r\nget d\r\n");
    c.expect("STORED\r\nTOUCHED\r\nEND\r\n");
}

#[test]
fn flush_all_version_verbosity_and_errors() {
    let (_s, mut c) = server();
    c.send("set a 0 0 1\r\nx\r\nset b 0 0 1\r\nx\r\nflush_all\r\nget a b\r\nflush_all 0\r\nflush_all x\r\nflush_all 1 2 3\r\n");
    c.expect("STORED\r\nSTORED\r\nOK\r\nEND\r\nOK\r\nCLIENT_ERROR invalid exptime argument\r\nERROR\r\n");
    c.send("version\r\n");
    assert!(c.line().starts_with("VERSION 1.6."));
    c.send("verbosity 1\r\nverbosity\r\nverbosity x\r\n");
    c.expect("OK\r\nERROR\r\nCLIENT_ERROR bad command line format\r\n");
    c.send("bogus\r\n\r\nGET a\r\nget\r\nset k 0 0\r\nshutdown\r\n");
    c.expect("ERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR: shutdown not enabled\r\n");
    c.send("stats nonsense\r\n");
    c.expect("ERROR\r\n");
    c.send("quit\r\nversion\r\n");
    assert!(c.closed(), "quit closes the connection");
}

#[test]
fn keys_of_251_bytes_are_refused() {
    let (_s, mut c) = server();
    let long = "k".repeat(251);
    let ok = "k".repeat(250);
    c.send(format!("set {ok} 0 0 1\r\nx\r\n"));
    c.expect("STORED\r\n");
    // (memcached also drops replies queued before such a get in the same read; caskade
    // keeps them. Sent apart here so that the test holds for both.)
    c.send(format!("get a {long}\r\nget {ok}\r\n"));
    c.expect(format!("CLIENT_ERROR bad command line format\r\nVALUE {ok} 0 1\r\nx\r\nEND\r\n"));
    // The set's data line is then read as a command.
    c.send(format!("set {long} 0 0 1\r\nx\r\nincr {long} 1\r\n"));
    c.expect("CLIENT_ERROR bad command line format\r\nERROR\r\nCLIENT_ERROR bad command line format\r\n");
}

#[test]
fn meta_get_set_delete() {
    let (_s, mut c) = server();
    c.send("ms a 3 F7 T0\r\nabc\r\nmg a v\r\nmg a\r\nmg a s v f k Oop q\r\nmg nope v\r\nmg nope v q Oxx k\r\nmn\r\n");
    c.expect("HD\r\nVA 3\r\nabc\r\nHD\r\nVA 3 s3 f7 ka Oop\r\nabc\r\nEN\r\nMN\r\n");
    c.send("mg a c\r\n");
    let line = c.line();
    let cas: u64 = line.strip_prefix("HD c").unwrap_or_else(|| panic!("{line}")).parse().unwrap();
    c.send(format!("ms a 1 C{} O1 k\r\nx\r\nms a 1 C{cas} O2 k\r\ny\r\nms nope 1 C{cas}\r\nz\r\n", cas + 1));
    c.expect("EX O1 ka\r\nHD O2 ka\r\nNF\r\n");
    c.send("ms a 2 MA\r\nzz\r\nms a 2 MP\r\n00\r\nms a 1 ME\r\nq\r\nms nope 1 MR\r\nq\r\nmg a v\r\n");
    c.expect("HD\r\nHD\r\nNS\r\nNS\r\nVA 5\r\n00yzz\r\n");
    c.send("ms a 1 q\r\nz\r\nms a 1 MX\r\nz\r\nmn\r\n");
    c.expect("CLIENT_ERROR invalid mode for ms M token\r\nMN\r\n");
    c.send("md a q\r\nmd a q\r\nmd a k O9\r\nmn\r\n");
    c.expect("NF\r\nNF ka O9\r\nMN\r\n");
    c.send("ms e 2 T-1\r\nhi\r\nmg e v\r\nms s 3 MS C0\r\nabc\r\nms s 3 ME C5\r\nabc\r\nmd s C0\r\n");
    c.expect("HD\r\nEN\r\nNF\r\nHD\r\nEX\r\n");
}

#[test]
fn meta_arithmetic() {
    let (_s, mut c) = server();
    c.send("ma c\r\nma c N0 J10\r\nma c\r\nma c v\r\nma c MD D5 v\r\nma c M- D100 v k Oq\r\nma c D1 q\r\nmn\r\n");
    c.expect("NF\r\nHD\r\nHD\r\nVA 2\r\n12\r\nVA 1\r\n7\r\nVA 1 kc Oq\r\n0\r\nMN\r\n");
    c.send("ms d 1\r\nx\r\nma d\r\nma c Mx\r\nma c Dx\r\nma nope O5 k\r\n");
    c.expect(concat!(
        "HD\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        "CLIENT_ERROR invalid mode for ma M token\r\n",
        "CLIENT_ERROR invalid or duplicate flag\r\n",
        "NF O5 knope\r\n",
    ));
}

#[test]
fn meta_base64_keys_and_errors() {
    let (_s, mut c) = server();
    c.send("ms Zm9v 3 b\r\nbar\r\nmg foo v\r\nmg !!! b v\r\n");
    c.expect("HD\r\nVA 3\r\nbar\r\nCLIENT_ERROR error decoding key\r\n");
    c.send("mg\r\nmg a zz\r\nmg a v v\r\nms a\r\nmx a\r\n");
    c.expect(concat!(
        "ERROR\r\n",
        "CLIENT_ERROR invalid flag\r\n",
        "CLIENT_ERROR duplicate flag\r\n",
        "CLIENT_ERROR bad command line format\r\n",
        "ERROR\r\n"
    ));
    c.send(format!("mg a O{}\r\nme nope\r\n", "x".repeat(32)));
    c.expect("CLIENT_ERROR opaque token too long\r\nEN\r\n");
}
