//! A peer that is down or hung (issue 11): requests for its partitions get a temporary
//! failure within the forward timeout (1 s here), in request order; the others' keys keep
//! working; after the peer comes back, everything it held is served again.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{cluster_stats, keys_on, stat, text_round_trip, wait_until, ClusterFiles};

const IDS: [&str; 3] = ["a", "b", "c"];
const TEMPORARY_FAILURE: &str = "SERVER_ERROR temporary failure\r\n";

/// A meta get: the value, or the error line where the owner cannot answer.
fn get(node: &common::Server, key: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(node.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(format!("mg {key} v\r\n").as_bytes()).expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("a reply within 20 s");
        assert!(n > 0, "closed");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        let lines = text.matches("\r\n").count();
        if text.starts_with("VA ") && lines >= 2 {
            return text.lines().nth(1).unwrap_or_default().to_string();
        }
        if !text.starts_with("VA ") && lines >= 1 {
            return text;
        }
    }
}

fn value_reply(key: &str) -> String {
    key.to_string()
}

#[test]
fn a_killed_or_hung_peer_gets_temporary_failures_then_serves_again() {
    let files = ClusterFiles::new(&IDS);
    let mut nodes = files.start_all(&["-t", "2"]);
    let on_c = keys_on(&IDS, "c", 200, "c-");
    let on_b = keys_on(&IDS, "b", 20, "b-");
    let on_a = keys_on(&IDS, "a", 20, "a-");
    let all: Vec<&String> = on_c.iter().chain(&on_b).chain(&on_a).collect();
    let mut sets = Vec::new();
    for k in &all {
        sets.extend_from_slice(format!("set {k} 0 0 {}\r\n{k}\r\n", k.len()).as_bytes());
    }
    let expect = "STORED\r\n".repeat(all.len());
    assert_eq!(text_round_trip(&nodes[0], &sets, expect.as_bytes()), expect.as_bytes());

    // c crashes.
    nodes[2].kill();
    for k in on_c.iter().take(20) {
        let started = Instant::now();
        assert_eq!(get(&nodes[0], k), TEMPORARY_FAILURE, "{k} while c is down");
        assert!(started.elapsed() < Duration::from_secs(3), "answered in {:?}", started.elapsed());
    }
    for k in on_a.iter().chain(&on_b) {
        assert_eq!(get(&nodes[0], k), value_reply(k), "{k} is not on c");
    }
    // A pipeline mixing the three: the failure keeps its place. A classic text get reads a
    // key it cannot reach as a miss (a get response has no per-key error); a store gets
    // the error line.
    let (a0, b0, c0) = (&on_a[0], &on_b[0], &on_c[0]);
    let pipeline = format!("get {a0}\r\nset {c0} 0 0 1\r\nx\r\nget {c0} {b0}\r\nmg {c0} v\r\nmn\r\n");
    let reply = text_round_trip(&nodes[1], pipeline.as_bytes(), b"MN\r\n");
    let expected = format!(
        "VALUE {a0} 0 {}\r\n{a0}\r\nEND\r\n{TEMPORARY_FAILURE}VALUE {b0} 0 {}\r\n{b0}\r\nEND\r\n{TEMPORARY_FAILURE}MN\r\n",
        a0.len(),
        b0.len()
    );
    assert_eq!(String::from_utf8_lossy(&reply), expected);
    let stats = cluster_stats(&nodes[0]);
    assert_eq!(stat(&stats, "node:c:state").as_deref(), Some("unreachable"), "{stats:?}");
    assert!(nodes[0].log().contains("peer link to node c"), "the link's fall is logged");

    // c comes back with its data directory: a's links reconnect and serve everything.
    nodes[2] = files.start("c", &["-t", "2"]);
    wait_until("a sees c up again", Duration::from_secs(20), || {
        stat(&cluster_stats(&nodes[0]), "node:c:state").as_deref() == Some("up")
    });
    // Links to c still in their backoff reconnect at once now that c is known to be up.
    for k in &on_c {
        assert_eq!(get(&nodes[0], k), value_reply(k), "{k} after c came back");
    }

    // c hangs (SIGSTOP): its kernel still takes the bytes, nobody answers. The forward
    // timeout answers instead, and once c runs again the link comes back.
    common::sigstop(&nodes[2]);
    let started = Instant::now();
    assert_eq!(get(&nodes[1], &on_c[1]), TEMPORARY_FAILURE, "while c is stopped");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(get(&nodes[1], &on_a[1]), value_reply(&on_a[1]), "a's keys meanwhile");
    nodes[2].signal(libc::SIGCONT);
    wait_until("b serves c's keys after SIGCONT", Duration::from_secs(20), || get(&nodes[1], &on_c[1]) == value_reply(&on_c[1]));
    for node in nodes {
        assert!(node.stop().success());
    }
}
