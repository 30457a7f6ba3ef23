//! memcached 1.6's answers at the edges (issue 14, items 2 and 5): a store refused as too
//! large removes the old value, a line that looks like HTTP closes the connection, and the
//! stats groups `settings`, `sizes`, `conns`, `reset` in both protocols. Every check runs
//! against the server `CASKADE_TEST_SERVER` selects, with the same assertions, so that
//! `CASKADE_TEST_SERVER=memcached` proves they are memcached's behaviour (checked against
//! Debian's memcached 1.6.18). Where caskade deliberately differs the test says so, and so
//! does the deviations table of `protocol-spec/memcached-text.md`.

mod common;
mod text_wire;
mod wire;

use std::thread;
use std::time::Duration;

use caskade::protocol::binary::{Opcode, RequestExtras, Status};
use common::{Server, ServerKind};
use text_wire::Text;
use wire::Wire;

/// Values over this are refused (`-I 1m`); [`TOO_BIG`] is well over it, so that memcached's
/// per-item overhead does not matter.
const TOO_BIG: usize = 2 * 1024 * 1024;

fn server() -> Server {
    Server::start(&["-t", "2", "-I", "1m"])
}

fn text(s: &Server) -> Text {
    Text::connect(s.addr())
}

// ---- item 5: a store refused as too large ----

#[test]
fn text_set_too_large_removes_the_old_value() {
    let s = server();
    let mut c = text(&s);
    let big = "x".repeat(TOO_BIG);
    c.send(format!("set k 0 0 3\r\nold\r\nset k 0 0 {TOO_BIG}\r\n{big}\r\nget k\r\n"));
    c.expect("STORED\r\nSERVER_ERROR object too large for cache\r\nEND\r\n");
    // noreply or not.
    c.send(format!("set k 0 0 3\r\nold\r\nset k 0 0 {TOO_BIG} noreply\r\n{big}\r\nget k\r\n"));
    c.expect("STORED\r\nEND\r\n");
    // memcached unlinks for `set` only: add, replace, append, prepend and cas leave it.
    for cmd in ["add", "replace", "append", "prepend", "cas"] {
        let cas = if cmd == "cas" { " 1" } else { "" };
        c.send(format!("set k 0 0 3\r\nold\r\n{cmd} k 0 0 {TOO_BIG}{cas}\r\n{big}\r\nget k\r\n"));
        c.expect("STORED\r\nSERVER_ERROR object too large for cache\r\nVALUE k 0 3\r\nold\r\nEND\r\n");
    }
    c.assert_serves("after");
}

#[test]
fn meta_set_too_large_removes_the_old_value_in_every_mode() {
    let s = server();
    let mut c = text(&s);
    let big = "x".repeat(TOO_BIG);
    for flags in ["", " MS", " ME", " MR", " MA", " MP", " q", " C1"] {
        c.send(format!("set k 0 0 3\r\nold\r\nms k {TOO_BIG}{flags}\r\n{big}\r\nmn\r\nget k\r\n"));
        c.expect("STORED\r\nSERVER_ERROR object too large for cache\r\nMN\r\nEND\r\n");
    }
    // A base64 key: the decoded key's value goes ("a2V5" is "key").
    c.send(format!("set key 0 0 3\r\nold\r\nms a2V5 {TOO_BIG} b\r\n{big}\r\nget key\r\n"));
    c.expect("STORED\r\nSERVER_ERROR object too large for cache\r\nEND\r\n");
}

fn store(op: Opcode, key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let extras = match op {
        Opcode::Append | Opcode::Prepend => RequestExtras::None,
        _ => RequestExtras::Store { flags: 0, exptime: 0 },
    };
    wire::encode(&[wire::request(op, key, value, extras, opaque)])
}

#[test]
fn binary_set_too_large_removes_the_old_value() {
    let s = server();
    let mut w = Wire::connect(s.addr());
    let big = vec![b'x'; TOO_BIG];
    for op in [Opcode::Set, Opcode::SetQ] {
        w.send(&wire::set(b"k", b"old", 1));
        assert_eq!(w.recv().status, Status::NoError);
        // The header alone first: the refusal must wait for the key.
        let frame = store(op, b"k", &big, 2);
        w.send(&frame[..24]);
        thread::sleep(Duration::from_millis(100));
        w.send(&frame[24..]);
        let r = w.recv();
        assert_eq!((r.opcode, r.status, r.opaque), (op, Status::ValueTooLarge, 2));
        w.send(&wire::get(b"k", 3));
        assert_eq!(w.recv().status, Status::KeyNotFound, "{op:?} too large leaves no old value");
    }
    // ADD, REPLACE, APPEND, PREPEND refused as too large leave it.
    for op in [Opcode::Add, Opcode::Replace, Opcode::Append, Opcode::Prepend] {
        w.send(&wire::set(b"k", b"old", 1));
        assert_eq!(w.recv().status, Status::NoError);
        w.send(&store(op, b"k", &big, 2));
        assert_eq!(w.recv().status, Status::ValueTooLarge);
        w.send(&wire::get(b"k", 3));
        let r = w.recv();
        assert_eq!((r.status, r.value.as_slice()), (Status::NoError, &b"old"[..]), "{op:?}");
    }
    w.assert_serves(b"after");
}

// ---- item 5: a line that looks like HTTP ----

#[test]
fn an_http_request_line_closes_the_connection_without_an_answer() {
    let s = server();
    for line in [
        "GET / HTTP/1.0",
        "PUT /x HTTP/1.1",
        "DELETE /x HTTP/1.1",
        "POST / HTTP/1.1",
        "HEAD / HTTP/1.0",
        "OPTIONS * HTTP/1.1",
        "Get / HTTP/1.0",
        "HTTP/1.0",
        "zzz a b HTTP/1.1",
        "ugh HTTP/",
        "mxx HTTP/1.0",
    ] {
        let mut c = text(&s);
        c.send(format!("{line}\r\nversion\r\n"));
        assert!(c.closed(), "{line:?} closes the connection, answering nothing");
    }
}

#[test]
fn http_like_lines_memcached_answers_as_commands() {
    let s = server();
    let mut c = text(&s);
    // Commands memcached dispatches before its HTTP check, a last token that is not
    // `HTTP/…`, a command of one byte: answered as usual, the connection stays.
    c.send("get a HTTP/1.1\r\nset x HTTP/1.1\r\nGET /\r\nGET / HTTP/1.0 extra\r\nGET / http/1.0\r\n");
    c.expect("END\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\n");
    c.send("x HTTP/1.0\r\nmx HTTP/1.0\r\ntouch HTTP/1.0\r\nflush_all HTTP/1.0\r\n");
    c.expect("ERROR\r\nERROR\r\nERROR\r\nCLIENT_ERROR invalid exptime argument\r\n");
    c.assert_serves("still");
}

// ---- item 2: stats groups ----

/// memcached 1.6.18's `stats settings` names, in its order.
const SETTINGS: &[&str] = &[
    "maxbytes", "maxconns", "tcpport", "udpport", "inter", "verbosity", "oldest", "evictions", "domain_socket",
    "umask", "shutdown_command", "growth_factor", "chunk_size", "num_threads", "num_threads_per_udp",
    "stat_key_prefix", "detail_enabled", "reqs_per_event", "cas_enabled", "tcp_backlog", "binding_protocol",
    "auth_enabled_sasl", "auth_enabled_ascii", "item_size_max", "maxconns_fast", "hashpower_init", "slab_reassign",
    "slab_automove", "slab_automove_ratio", "slab_automove_window", "slab_chunk_max", "lru_crawler",
    "lru_crawler_sleep", "lru_crawler_tocrawl", "tail_repair_time", "flush_enabled", "dump_enabled",
    "hash_algorithm", "lru_maintainer_thread", "lru_segmented", "hot_lru_pct", "warm_lru_pct", "hot_max_factor",
    "warm_max_factor", "temp_lru", "temporary_ttl", "idle_timeout", "watcher_logbuf_size", "worker_logbuf_size",
    "read_buf_mem_limit", "track_sizes", "inline_ascii_response", "ext_item_size", "ext_item_age", "ext_low_ttl",
    "ext_recache_rate", "ext_wbuf_size", "ext_compact_under", "ext_drop_under", "ext_max_sleep", "ext_max_frag",
    "slab_automove_freeratio", "ext_drop_unread", "ssl_enabled", "ssl_chain_cert", "ssl_key", "ssl_verify_mode",
    "ssl_keyformat", "ssl_ciphers", "ssl_ca_cert", "ssl_wbuf_size", "ssl_session_cache", "ssl_kernel_tls",
    "ssl_min_version", "num_napi_ids", "memory_file",
];

/// `stats <group>` as (name, value) in the server's order.
fn stats_list(c: &mut Text, group: &str) -> Vec<(String, String)> {
    c.send(format!("stats {group}\r\n"));
    let mut out = Vec::new();
    loop {
        let line = c.line();
        if line == "END" {
            return out;
        }
        let mut parts = line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("STAT"), "stats {group}: {line}");
        out.push((parts.next().unwrap().to_string(), parts.next().unwrap_or_default().to_string()));
    }
}

#[test]
fn stats_settings_lists_every_setting_memcached_lists() {
    let s = server();
    let mut c = text(&s);
    let list = stats_list(&mut c, "settings");
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, SETTINGS);
    let get = |name: &str| list.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(get("tcpport"), s.addr().port().to_string());
    assert_eq!(get("inter"), "127.0.0.1");
    assert_eq!(get("num_threads"), "2");
    assert_eq!(get("item_size_max"), "1048576");
    assert_eq!(get("maxconns"), "1024");
    assert_eq!(get("udpport"), "0");
    assert_eq!(get("domain_socket"), "NULL");
    assert_eq!(get("cas_enabled"), "yes");
    assert_eq!(get("flush_enabled"), "yes");
    assert_eq!(get("evictions"), "on");
    assert_eq!(get("shutdown_command"), "no");
    assert_eq!(get("ssl_enabled"), "no");
    assert_eq!(get("binding_protocol"), "auto-negotiate");
}

#[test]
fn stats_sizes_conns_and_known_groups_end_with_end() {
    let s = server();
    let mut c = text(&s);
    c.send("stats sizes\r\n");
    c.expect("STAT sizes_status disabled\r\nEND\r\n");
    // The asking connection is listed under memcached's names.
    let conns = stats_list(&mut c, "conns");
    let me = format!("tcp:{}", c.stream.local_addr().unwrap());
    let (id, _) = conns
        .iter()
        .find_map(|(n, v)| (v == &me).then(|| n.split_once(':').unwrap()))
        .unwrap_or_else(|| panic!("no {me} in {conns:?}"));
    let field = |f: &str| conns.iter().find(|(n, _)| *n == format!("{id}:{f}")).map(|(_, v)| v.clone());
    assert_eq!(field("listen_addr"), Some(format!("tcp:{}", s.addr())));
    assert_eq!(field("state").as_deref(), Some("conn_parse_cmd"));
    assert!(field("secs_since_last_cmd").is_some());
    // No group memcached knows gets ERROR.
    for group in ["", "settings", "items", "slabs", "sizes", "conns"] {
        stats_list(&mut c, group);
    }
    c.assert_serves("after");
}

#[test]
fn stats_reset_resets_the_counters_memcached_resets() {
    let s = server();
    let mut c = text(&s);
    c.send("set a 0 0 1\r\n1\r\nget a\r\nget nope\r\nincr a 1\r\ndelete nope\r\n");
    c.expect("STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\nEND\r\n2\r\nNOT_FOUND\r\n");
    let before = c.stats("");
    assert_eq!(before["cmd_get"], "2");
    c.send("stats reset\r\n");
    c.expect("RESET\r\n");
    let after = c.stats("");
    for counter in [
        "cmd_get", "cmd_set", "get_hits", "get_misses", "incr_hits", "delete_misses", "total_items", "cmd_touch",
        "evictions",
    ] {
        assert_eq!(after[counter], "0", "{counter} after stats reset");
    }
    // What is, not what happened, stays.
    for gauge in ["curr_items", "bytes", "curr_connections"] {
        assert_eq!(after[gauge], before[gauge], "{gauge} after stats reset");
    }
    // Counting goes on from zero.
    c.send("get a\r\n");
    c.expect("VALUE a 0 1\r\n2\r\nEND\r\n");
    let again = c.stats("");
    assert_eq!((again["cmd_get"].as_str(), again["get_hits"].as_str()), ("1", "1"));
}

/// A binary STAT of `group`: (status, the name → value pairs before the terminator).
fn binary_stats(w: &mut Wire, group: &str) -> (Status, Vec<(String, String)>) {
    w.send(&wire::encode(&[wire::request(Opcode::Stat, group.as_bytes(), b"", RequestExtras::None, 7)]));
    let mut out = Vec::new();
    loop {
        let r = w.recv();
        assert_eq!((r.opcode, r.opaque), (Opcode::Stat, 7));
        if r.status != Status::NoError || r.key.is_empty() {
            return (r.status, out);
        }
        out.push((String::from_utf8(r.key).unwrap(), String::from_utf8(r.value).unwrap()));
    }
}

#[test]
fn binary_stat_groups() {
    let s = server();
    let mut w = Wire::connect(s.addr());
    let (status, settings) = binary_stats(&mut w, "settings");
    assert_eq!(status, Status::NoError);
    assert_eq!(settings.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), SETTINGS);
    let (status, sizes) = binary_stats(&mut w, "sizes");
    assert_eq!((status, sizes), (Status::NoError, vec![("sizes_status".to_string(), "disabled".to_string())]));
    for group in ["items", "slabs"] {
        assert_eq!(binary_stats(&mut w, group).0, Status::NoError, "STAT {group}");
    }
    w.assert_serves(b"k");
    let (_, general) = binary_stats(&mut w, "");
    assert_ne!(general.iter().find(|(n, _)| n == "cmd_get").unwrap().1, "0");
    assert_eq!(binary_stats(&mut w, "reset"), (Status::NoError, Vec::new()));
    let (_, general) = binary_stats(&mut w, "");
    assert_eq!(general.iter().find(|(n, _)| n == "cmd_get").unwrap().1, "0", "STAT reset resets cmd_get");
    // memcached's binary STAT does not know `conns` (only its text `stats` does); caskade
    // answers it in both protocols (a deliberate difference: spec, deviations).
    let (status, conns) = binary_stats(&mut w, "conns");
    match s.kind() {
        ServerKind::Memcached => assert_eq!(status, Status::KeyNotFound),
        ServerKind::Caskade => {
            assert_eq!(status, Status::NoError);
            assert!(conns.iter().any(|(n, _)| n.ends_with(":state")), "{conns:?}");
        }
    }
    assert_eq!(binary_stats(&mut w, "no-such-group").0, Status::KeyNotFound);
}

/// The `PREFIX` lines of `stats detail dump`, sorted (memcached lists them in its hash
/// table's order), up to `END`.
fn detail_dump(c: &mut Text) -> Vec<String> {
    c.send("stats detail dump\r\n");
    let mut lines = Vec::new();
    loop {
        let line = c.line();
        if line == "END" {
            lines.sort();
            return lines;
        }
        assert!(line.starts_with("PREFIX "), "{line}");
        lines.push(line);
    }
}

#[test]
fn stats_detail_counts_per_prefix() {
    let s = server();
    let mut c = text(&s);
    c.send("stats detail\r\nstats detail foo\r\nstats detail on\r\n");
    c.expect("CLIENT_ERROR usage: stats detail on|off|dump\r\nCLIENT_ERROR usage: stats detail on|off|dump\r\nOK\r\n");
    assert_eq!(c.stats("settings")["detail_enabled"], "yes");
    // Gets (hit or not, GAT too), stores (stored or not), deletes (found or not) of keys with
    // a `:`; not touch, incr, keys without the delimiter, or meta commands.
    c.send(concat!(
        "set a:1 0 0 1\r\nv\r\nadd a:1 0 0 1\r\nv\r\nget a:1 a:2 nodelim\r\ngets a:1\r\n",
        "delete a:2\r\ndelete a:1\r\nincr a:3 1\r\ntouch a:1 1\r\ngat 0 a:1\r\n",
        "mg b:1 v\r\nms b:1 1\r\nx\r\nmd b:1\r\nma b:1\r\nset c:x:y 0 0 1\r\nv\r\nset :z 0 0 1\r\nv\r\n",
    ));
    c.expect("STORED\r\nNOT_STORED\r\nVALUE a:1 0 1\r\nv\r\nEND\r\n");
    let _gets = (c.line(), c.line(), c.line());
    c.expect("NOT_FOUND\r\nDELETED\r\nNOT_FOUND\r\nNOT_FOUND\r\nEND\r\nEN\r\nHD\r\nHD\r\nNF\r\nSTORED\r\nSTORED\r\n");
    let want = ["PREFIX  get 0 hit 0 set 1 del 0", "PREFIX a get 4 hit 2 set 2 del 2", "PREFIX c get 0 hit 0 set 1 del 0"];
    assert_eq!(detail_dump(&mut c), want);
    // Off stops counting and keeps the counts.
    c.send("stats detail off\r\nget a:9\r\n");
    c.expect("OK\r\nEND\r\n");
    assert_eq!(detail_dump(&mut c), want);
    assert_eq!(c.stats("settings")["detail_enabled"], "no");
    // Binary STAT knows the same group: on/off answer the terminator, dump one "detailed".
    let mut w = Wire::connect(s.addr());
    assert_eq!(binary_stats(&mut w, "detail on"), (Status::NoError, Vec::new()));
    let (status, dump) = binary_stats(&mut w, "detail dump");
    assert_eq!(status, Status::NoError);
    assert_eq!(dump.len(), 1);
    assert_eq!(dump[0].0, "detailed");
    assert!(dump[0].1.contains("PREFIX a get 4 hit 2 set 2 del 2\r\n") && dump[0].1.ends_with("END\r\n"), "{dump:?}");
    assert_eq!(binary_stats(&mut w, "detail off"), (Status::NoError, Vec::new()));
    assert_eq!(binary_stats(&mut w, "detail foo").0, Status::KeyNotFound);
}

// ---- item 5: numbers as memcached's safe_strto* read them ----

#[test]
fn numbers_are_read_as_memcached_s_safe_strto_functions_read_them() {
    let s = server();
    let mut c = text(&s);
    // Signs, trailing junk, 32- and 64-bit overflow of flags, lengths and CAS. A refused
    // store's data line is then read as a command (ERROR).
    c.send(concat!(
        "set k 0 0 +3\r\nabc\r\nset k 0 0 3x\r\nabc\r\nset k -1 0 1\r\nx\r\nset k 4294967296 0 1\r\nx\r\n",
        "set k 18446744073709551616 0 1\r\nx\r\nset k -0 0 1\r\nx\r\nget k\r\n",
    ));
    c.expect(concat!(
        "STORED\r\nCLIENT_ERROR bad command line format\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nERROR\r\n",
        "STORED\r\nCLIENT_ERROR bad command line format\r\nERROR\r\nSTORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n",
    ));
    c.send(concat!(
        "set n 0 0 1\r\n5\r\nincr n 18446744073709551616\r\nincr n 18446744073709551615\r\nincr n +5\r\n",
        "decr n -0\r\ndecr n -1\r\nincr n 5x\r\ngat 1x n\r\ncas n 0 0 1 -1\r\nx\r\n",
        "cas n 0 0 1 18446744073709551616\r\nx\r\nverbosity -1\r\nverbosity 4294967296\r\n",
    ));
    c.expect(concat!(
        "STORED\r\nCLIENT_ERROR invalid numeric delta argument\r\n4\r\n9\r\n9\r\n",
        "CLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERROR invalid numeric delta argument\r\n",
        "CLIENT_ERROR invalid exptime argument\r\nCLIENT_ERROR bad command line format\r\nERROR\r\n",
        "CLIENT_ERROR bad command line format\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nOK\r\n",
    ));
    // A signed 32-bit number is cut from a 64-bit one with no range check: exptime
    // 2147483648 is -2147483648 (expired at once), -2147483649 is 2147483647 (far future),
    // a length of 4294967299 is 3.
    c.send(concat!(
        "set e 0 2147483648 1\r\nx\r\nget e\r\nset f 0 -2147483649 1\r\nx\r\nget f\r\n",
        "set g 0 0 4294967299\r\nabc\r\nget g\r\n",
        "set t 0 0 1\r\nx\r\ntouch t 2147483648\r\nget t\r\nset m 0 0 1\r\nx\r\nmg m T2147483648 v\r\nmg m v\r\n",
    ));
    c.expect(concat!(
        "STORED\r\nEND\r\nSTORED\r\nVALUE f 0 1\r\nx\r\nEND\r\nSTORED\r\nVALUE g 0 3\r\nabc\r\nEND\r\n",
        "STORED\r\nTOUCHED\r\nEND\r\nSTORED\r\nVA 1\r\nx\r\nEN\r\n",
    ));
    // flush_all's delay too: 99999999999 is 1215752191, an absolute time in 2008. (What a
    // flush at a past time does differs: memcached flushes nothing, caskade flushes now; see
    // the deviations table.)
    c.send("flush_all 99999999999\r\n");
    c.expect("OK\r\n");
    c.assert_serves("after");
}

/// `stats conns` as fd → (field → value).
fn conns_by_fd(c: &mut Text) -> std::collections::BTreeMap<String, std::collections::HashMap<String, String>> {
    let mut by_fd = std::collections::BTreeMap::<String, std::collections::HashMap<String, String>>::new();
    for (name, value) in stats_list(c, "conns") {
        let (fd, field) = name.split_once(':').unwrap_or_else(|| panic!("{name}"));
        by_fd.entry(fd.to_string()).or_default().insert(field.to_string(), value);
    }
    by_fd
}

#[test]
fn stats_conns_lists_every_connection_and_listener() {
    let s = server();
    let mut a = text(&s);
    // Several other connections (with -t 2 some live on the other core).
    let mut others: Vec<Text> = (0..4).map(|_| text(&s)).collect();
    for o in &mut others {
        o.send("version\r\n");
        let _ = o.line();
    }
    let conns = conns_by_fd(&mut a);
    let listen = format!("tcp:{}", s.addr());
    assert!(
        conns.values().any(|f| f.get("state").map(String::as_str) == Some("conn_listening") && f.get("addr") == Some(&listen)),
        "no listener on {listen}: {conns:?}"
    );
    for o in others.iter().map(|o| format!("tcp:{}", o.stream.local_addr().unwrap())).chain([format!("tcp:{}", a.stream.local_addr().unwrap())]) {
        let f = conns.values().find(|f| f.get("addr") == Some(&o)).unwrap_or_else(|| panic!("{o} not listed: {conns:?}"));
        assert_eq!(f.get("listen_addr"), Some(&listen));
        assert!(f.contains_key("state") && f.contains_key("secs_since_last_cmd"), "{f:?}");
    }
    // A closed connection leaves the list.
    let gone = format!("tcp:{}", others[0].stream.local_addr().unwrap());
    drop(others.remove(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while conns_by_fd(&mut a).values().any(|f| f.get("addr") == Some(&gone)) {
        assert!(std::time::Instant::now() < deadline, "{gone} still listed");
        thread::sleep(Duration::from_millis(50));
    }
}
