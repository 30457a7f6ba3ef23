//! `watch` (issue 14): memcached 1.6's log streams. A watcher sees the fetches and stores
//! another connection makes (on both cores), connections opened and closed, and evictions,
//! in memcached's line format; a watcher that does not read loses lines and is told how
//! many, while the data path goes on; bad arguments get memcached's `ERROR`. Where Debian's
//! memcached is installed, the same commands run against it and the field names of every
//! line type must be the same.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, ServerKind};

fn connect(s: &Server) -> TcpStream {
    let c = TcpStream::connect(s.addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    c
}

fn line(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\n") {
        assert!(s.read(&mut b).expect("a line") > 0, "closed");
        got.push(b[0]);
    }
    String::from_utf8_lossy(&got).trim_end().to_string()
}

fn watch(s: &Server, kinds: &str) -> TcpStream {
    let mut w = connect(s);
    w.write_all(format!("watch {kinds}\r\n").as_bytes()).expect("send");
    assert_eq!(line(&mut w), "OK");
    w
}

/// Reads log lines until one satisfies `done` (bounded by the read timeout).
fn lines_until(w: &mut TcpStream, done: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let l = line(w);
        let stop = done(&l);
        out.push(l);
        if stop {
            return out;
        }
    }
}

/// The commands both servers get, one round trip each.
const COMMANDS: &[&str] = &["set foo 5 0 3\r\nbar\r\n", "get foo\r\n", "get nope\r\n", "add foo 0 0 1\r\nx\r\n", "delete foo\r\n", "quit\r\n"];

fn run_commands(s: &Server) {
    let mut c = connect(s);
    for cmd in COMMANDS {
        c.write_all(cmd.as_bytes()).expect("send");
        if !cmd.starts_with("quit") {
            let mut b = [0u8; 256];
            let _ = c.read(&mut b).expect("a reply");
        }
    }
}

/// A line's type and its field names, in order: what must match memcached's.
fn shape(l: &str) -> (String, Vec<String>) {
    let fields: Vec<(String, String)> = l
        .split(' ')
        .filter_map(|f| f.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let ty = fields.iter().find(|(k, _)| k == "type").map(|(_, v)| v.clone()).unwrap_or_default();
    (ty, fields.into_iter().map(|(k, _)| k).collect())
}

fn watched(s: &Server) -> Vec<String> {
    let mut w = watch(s, "fetchers mutations connevents");
    run_commands(s);
    // Until the close of the connection whose opening it saw (another, such as the
    // harness's readiness probe, may close first).
    let mut opened = Vec::new();
    let mut out = Vec::new();
    loop {
        let l = line(&mut w);
        let port = l.split(' ').find_map(|f| f.strip_prefix("rport=")).map(str::to_string);
        if l.contains("type=conn_new") {
            opened.extend(port.clone());
        }
        let done = l.contains("type=conn_close") && port.is_some_and(|p| opened.contains(&p));
        out.push(l);
        if done {
            return out;
        }
    }
}

#[test]
fn a_watcher_sees_memcacheds_lines_for_another_connections_commands() {
    let caskade = Server::start_caskade(&["-t", "2", "--in-memory"], &[]);
    let got = watched(&caskade);
    let text = got.join("\n");
    for want in [
        "type=conn_new rip=127.0.0.1 ",
        "type=item_store key=foo status=stored cmd=set ttl=0 clsid=1 cfd=",
        "type=item_get key=foo status=found clsid=1 cfd=",
        "type=item_get key=nope status=not_found clsid=0 cfd=",
        "type=item_store key=foo status=not_stored cmd=add ttl=0 clsid=1 cfd=",
        "type=conn_close rip=127.0.0.1 ",
    ] {
        assert!(text.contains(want), "no line with {want:?} in:\n{text}");
    }
    let mut gids = Vec::new();
    for l in &got {
        let (ts, rest) = l.strip_prefix("ts=").and_then(|r| r.split_once(' ')).unwrap_or_else(|| panic!("{l:?}"));
        let (secs, micros) = ts.split_once('.').expect("ts=<sec>.<usec>");
        assert!(secs.parse::<u64>().is_ok() && micros.parse::<u32>().is_ok_and(|u| u < 1_000_000), "{l}");
        gids.push(rest.strip_prefix("gid=").and_then(|r| r.split(' ').next()).and_then(|g| g.parse::<u64>().ok()).expect("gid"));
    }
    gids.sort_unstable();
    gids.dedup();
    assert_eq!(gids.len(), got.len(), "each line its own gid");

    if std::path::Path::new("/usr/bin/memcached").exists() {
        // memcached logs a fetch before each store too; compare the shape of each type.
        let memcached = Server::start_kind(ServerKind::Memcached, &["-t", "2"], &[]);
        let theirs = watched(&memcached);
        for l in &got {
            let (ty, fields) = shape(l);
            let same = theirs.iter().map(|t| shape(t)).find(|(t, _)| *t == ty);
            let (_, their_fields) = same.unwrap_or_else(|| panic!("memcached wrote no {ty} line: {theirs:?}"));
            assert_eq!(fields, their_fields, "the fields of {ty}: ours {l:?}, memcached's {theirs:?}");
        }
    } else {
        eprintln!("/usr/bin/memcached is not installed: the lines were checked against memcached's recorded format only");
    }
}

#[test]
fn bad_arguments_get_error_and_the_connection_goes_on() {
    // Against memcached too (CASKADE_TEST_SERVER=memcached): the same answers.
    let s = Server::start(&[]);
    let mut c = connect(&s);
    for bad in ["watch bogus\r\n", "watch FETCHERS\r\n", "watch fetchers deletions\r\n"] {
        c.write_all(bad.as_bytes()).expect("send");
        assert_eq!(line(&mut c), "ERROR", "{bad:?}");
    }
    c.write_all(b"get x\r\n").expect("send");
    assert_eq!(line(&mut c), "END", "not a watcher: it is still served");
    // memcached's limit of 20 watchers.
    let watchers: Vec<TcpStream> = (0..20).map(|_| watch(&s, "mutations")).collect();
    c.write_all(b"watch\r\n").expect("send");
    assert_eq!(line(&mut c), "WATCHER_TOO_MANY log watcher limit reached");
    drop(watchers);
    // Closed watchers free their places (the server notices the close on its next turn).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut w = connect(&s);
        w.write_all(b"watch\r\n").expect("send");
        if line(&mut w) == "OK" {
            break;
        }
        assert!(Instant::now() < deadline, "the closed watchers were never removed");
    }
}

#[test]
fn a_watcher_that_does_not_read_loses_lines_and_never_slows_the_data_path() {
    let s = Server::start_caskade(&["-t", "2", "--in-memory"], &[]);
    let mut w = watch(&s, "fetchers");
    // The watcher reads nothing while 100,000 GETs run, pipelined, on another connection.
    let mut c = connect(&s);
    let started = Instant::now();
    let batch: String = (0..1000).map(|i| format!("get key-with-a-longish-name-{i}\r\n")).collect();
    for _ in 0..100 {
        c.write_all(batch.as_bytes()).expect("send");
        let mut ends = 0;
        let mut buf = [0u8; 65536];
        while ends < 1000 {
            let n = c.read(&mut buf).expect("replies");
            ends += buf[..n].windows(5).filter(|w| w == b"END\r\n").count();
        }
    }
    let took = started.elapsed();
    println!("100,000 GETs with a stalled watcher: {took:?}");
    assert!(took < Duration::from_secs(30), "the data path waited for the watcher: {took:?}");
    // Now it reads: what fit in its buffer, then, once there is room, how many it lost and
    // the lines after. More GETs go on meanwhile (one that came while the buffer was still
    // full is lost too, and counted).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let more = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && sent < 400 {
                c.write_all(b"get last-one\r\n").expect("send");
                sent += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            sent
        })
    };
    let got = lines_until(&mut w, |l| l.contains("key=last-one"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = more.join().expect("the sender");
    let skipped: u64 = got.iter().filter_map(|l| l.strip_prefix("skipped=")).filter_map(|n| n.parse::<u64>().ok()).sum();
    let kept = got.iter().filter(|l| l.contains("type=item_get key=key-with")).count() as u64;
    assert!(kept > 0 && skipped > 0, "kept {kept}, skipped {skipped}");
    assert!(kept + skipped >= 100_000 && kept + skipped <= 100_000 + sent, "every fetch is sent or counted: kept {kept}, skipped {skipped}, {sent} more");
}

#[test]
fn evictions_are_watched() {
    // In memory with 1 MiB: storing 4 MiB evicts.
    let s = Server::start_caskade(&["--in-memory", "-m", "1", "-t", "1"], &[]);
    let mut w = watch(&s, "evictions");
    let mut c = connect(&s);
    let value = "v".repeat(1000);
    for i in 0..4000 {
        c.write_all(format!("set k{i} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes()).expect("send");
        assert_eq!(line(&mut c), "STORED");
    }
    let l = line(&mut w);
    assert!(l.contains(" type=eviction key=k") && l.contains(" fetch=no ttl=-1 la=") && l.ends_with(" clsid=1 size=1000"), "{l}");
}
