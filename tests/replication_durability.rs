//! Durable writes (issue 12): with `durability = "majority"` a write's reply leaves once a
//! backup holds it, so a primary killed with SIGKILL right after its acknowledged writes
//! loses none of them (read back from the backups with GET_REPLICA). A backup that does not
//! answer in time turns the reply into "sync write ambiguous", never a success; a partition
//! with no live backup refuses durable writes before running them ("durability impossible").
//! With `durability = "none"` the same kill may lose the replication lag: counted, printed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use caskade::cluster::map::{ClusterMap, MapNode};
use common::cluster::{cluster_stats, stat, wait_until, ClusterFiles, SECRET};
use common::Server;

const IDS: [&str; 3] = ["a", "b", "c"];

fn map() -> ClusterMap {
    ClusterMap::derive("", IDS.iter().map(|id| MapNode { id: id.to_string(), peer: String::new() }).collect(), 1)
}

/// Keys whose primary is node `primary` and whose backup is node `backup` (map indexes).
fn keys_on(primary: usize, backup: usize, n: usize) -> Vec<String> {
    let m = map();
    (0..)
        .map(|i| format!("dk-{i}"))
        .filter(|k| {
            let p = caskade::cluster::partition_of(k.as_bytes());
            m.primary(p) == primary && m.backups(p)[0] as usize == backup
        })
        .take(n)
        .collect()
}

fn connect(node: &Server) -> TcpStream {
    let s = TcpStream::connect(node.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s
}

fn line(s: &mut TcpStream, cmd: &str) -> String {
    if !cmd.is_empty() {
        s.write_all(cmd.as_bytes()).expect("send");
    }
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n") {
        let n = s.read(&mut b).expect("a reply");
        assert!(n > 0, "closed");
        got.push(b[0]);
    }
    String::from_utf8_lossy(&got).trim_end().to_string()
}

/// A binary GET_REPLICA: the value, or `None` on a miss.
fn get_replica(s: &mut TcpStream, key: &str) -> Option<Vec<u8>> {
    let mut req = vec![0x80, 0x83];
    req.extend_from_slice(&(key.len() as u16).to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 0]);
    req.extend_from_slice(&(key.len() as u32).to_be_bytes());
    req.extend_from_slice(&[0; 12]);
    req.extend_from_slice(key.as_bytes());
    s.write_all(&req).expect("send");
    let mut head = [0u8; 24];
    s.read_exact(&mut head).expect("a header");
    let status = u16::from_be_bytes([head[6], head[7]]);
    let body = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
    let mut b = vec![0u8; body];
    s.read_exact(&mut b).expect("a body");
    match status {
        0 => Some(b[head[4] as usize..].to_vec()),
        1 => None,
        other => panic!("GET_REPLICA {key}: status {other:#x}"),
    }
}

fn stop(node: &Server) {
    common::sigstop(node);
}

fn streams_live(nodes: &[&Server]) {
    wait_until("every stream live", Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            let stats = cluster_stats(n);
            let me = stat(&stats, "cluster_node").unwrap_or_default();
            IDS.iter().filter(|&&id| id != me).all(|id| stat(&stats, &format!("node:{id}:repl_state")).as_deref() == Some("live"))
        })
    });
}

/// Writes `keys` through a (forwarded to c, their primary) and through c, pipelined, the
/// last round with the backup b hung, then kills c the moment the last reply is in. Returns how many acknowledged writes the backup b does
/// not hold, and how many were acknowledged.
fn acknowledged_then_kill(durability: &str) -> (usize, usize) {
    let settings = format!("durability = \"{durability}\"\ndurability_timeout_ms = 500\n");
    let files = ClusterFiles::with_settings(&IDS, "test", SECRET, &settings);
    let mut nodes = files.start_all(&["-t", "2"]);
    streams_live(&[&nodes[0], &nodes[1], &nodes[2]]);
    let keys = keys_on(2, 1, 400);
    let mut acknowledged = Vec::new();
    let mut written = Vec::new();
    for (node, round) in [(0, 0), (2, 1), (2, 2), (2, 3)] {
        if round == 3 {
            // The backup hangs (SIGSTOP; its link stays up): what the primary acknowledges now
            // is on the primary alone, unless the acknowledgement waits for the backup.
            stop(&nodes[1]);
        }
        let mut conn = connect(&nodes[node]);
        let values: Vec<String> = (0..keys.len()).map(|i| format!("v{round}-{i}-{}", "x".repeat(i % 50))).collect();
        let mut req = Vec::new();
        for (k, v) in keys.iter().zip(&values) {
            req.extend_from_slice(format!("set {k} 0 0 {}\r\n{v}\r\n", v.len()).as_bytes());
        }
        conn.write_all(&req).expect("send");
        for (k, v) in keys.iter().zip(&values) {
            let r = line(&mut conn, "");
            written.push((k.clone(), v.clone(), r == "STORED"));
            if r == "STORED" {
                acknowledged.push((k.clone(), v.clone()));
            } else {
                assert!(r.starts_with("SERVER_ERROR"), "{k}: {r}");
            }
        }
    }
    nodes[2].kill();
    // The hung backup dies too, with what it had not read; it restarts from its disk.
    nodes[1].kill();
    nodes[1] = files.start("b", &["-t", "2"]);
    // The backup must hold each key's last acknowledged value, or a later write's (one that
    // was not acknowledged may or may not have happened).
    let mut allowed = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (k, v, acked) in &written {
        match (acked, allowed.get_mut(k)) {
            (true, _) => {
                allowed.insert(k.clone(), vec![v.clone()]);
            }
            (false, Some(later)) => later.push(v.clone()),
            (false, None) => {}
        }
    }
    let mut on_a = connect(&nodes[0]);
    let lost = allowed
        .iter()
        .filter(|(k, vs)| {
            let got = get_replica(&mut on_a, k).map(|v| String::from_utf8_lossy(&v).into_owned());
            !got.is_some_and(|g| vs.contains(&g))
        })
        .count();
    (lost, acknowledged.len())
}

#[test]
fn majority_loses_no_acknowledged_write_when_the_primary_is_killed() {
    let (lost, acked) = acknowledged_then_kill("majority");
    println!("durability = \"majority\": {acked} acknowledged writes, {lost} missing on the backup after kill -9 of the primary");
    assert_eq!(acked, 1200, "every write is acknowledged while the backup answers; none while it is stopped");
    assert_eq!(lost, 0, "an acknowledged majority write is on the backup");
}

#[test]
fn none_may_lose_the_replication_lag() {
    let (lost, acked) = acknowledged_then_kill("none");
    // The documented window: what the backup had not received when the primary died.
    println!("durability = \"none\": {acked} acknowledged writes, {lost} missing on the backup after kill -9 of the primary");
    assert_eq!(acked, 1600, "none waits for no backup");
    assert!(lost > 0, "what the stopped backup did not get is lost with the primary");
}

#[test]
fn a_silent_backup_gives_ambiguous_and_a_dead_one_impossible() {
    let files = ClusterFiles::with_settings(&IDS, "test", SECRET, "durability = \"majority\"\ndurability_timeout_ms = 300\n");
    let mut nodes = files.start_all(&["-t", "2"]);
    streams_live(&[&nodes[0], &nodes[1], &nodes[2]]);
    let keys = keys_on(0, 1, 3);
    let mut on_a = connect(&nodes[0]);
    assert_eq!(line(&mut on_a, &format!("set {} 0 0 1\r\n1\r\n", keys[0])), "STORED");

    // b stops answering (SIGSTOP): the write happens on a, its acknowledgement never comes.
    stop(&nodes[1]);
    let started = Instant::now();
    assert_eq!(line(&mut on_a, &format!("set {} 0 0 1\r\n2\r\n", keys[1])), "SERVER_ERROR sync write ambiguous");
    // The node's clock counts whole milliseconds: its deadline may fall up to 1 ms short of ours.
    assert!(started.elapsed() >= Duration::from_millis(298), "not before the deadline: {:?}", started.elapsed());
    assert_eq!(line(&mut on_a, &format!("mg {} v\r\n", keys[1])), "VA 1", "it happened on the primary");
    assert_eq!(line(&mut on_a, ""), "2");
    nodes[1].signal(libc::SIGCONT);

    // b dies: once a's stream to it is down, durable writes to its partitions are refused.
    nodes[1].kill();
    wait_until("a sees b's stream down", Duration::from_secs(30), || {
        stat(&cluster_stats(&nodes[0]), "node:b:repl_state").as_deref() != Some("live")
    });
    assert_eq!(line(&mut on_a, &format!("set {} 0 0 1\r\n3\r\n", keys[2])), "SERVER_ERROR durability impossible");
    assert_eq!(line(&mut on_a, &format!("mg {} v\r\n", keys[2])), "EN", "a refused durable write did not happen");
    let stats = common::cluster::text_round_trip(&nodes[0], b"stats\r\n", b"END\r\n");
    let text = String::from_utf8_lossy(&stats);
    assert!(text.contains("STAT durable_ambiguous 1\r\n") && text.contains("STAT durable_impossible 1\r\n"), "{text}");
}

/// A binary request with Couchbase's flexible framing (magic 0x08) and the frame infos
/// `framing`; returns the response's status.
fn flex_request(s: &mut TcpStream, opcode: u8, framing: &[u8], extras: &[u8], key: &str, value: &[u8]) -> u16 {
    let body = framing.len() + extras.len() + key.len() + value.len();
    let mut req = vec![0x08, opcode, framing.len() as u8, key.len() as u8, extras.len() as u8, 0, 0, 0];
    req.extend_from_slice(&(body as u32).to_be_bytes());
    req.extend_from_slice(&[0; 12]);
    req.extend_from_slice(framing);
    req.extend_from_slice(extras);
    req.extend_from_slice(key.as_bytes());
    req.extend_from_slice(value);
    s.write_all(&req).expect("send");
    let mut head = [0u8; 24];
    s.read_exact(&mut head).expect("a header");
    assert_eq!(head[0], 0x81, "a plain response");
    let mut b = vec![0u8; u32::from_be_bytes(head[8..12].try_into().expect("4 bytes")) as usize];
    s.read_exact(&mut b).expect("a body");
    u16::from_be_bytes([head[6], head[7]])
}

/// Whether a reply arrives on `s` within `wait` (one byte is read and lost).
fn answers_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut b = [0u8; 1];
    let got = match s.read(&mut b) {
        Ok(n) => n > 0,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => false,
        Err(e) => panic!("read: {e}"),
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    got
}

#[test]
fn a_request_asks_its_own_level_and_a_pending_write_is_seen_by_nobody() {
    // The cluster's default is `none`: only the requests that ask wait for the backup.
    let files = ClusterFiles::with_settings(&IDS, "test", SECRET, "durability = \"none\"\ndurability_timeout_ms = 2000\n");
    let nodes = files.start_all(&["-t", "2"]);
    streams_live(&[&nodes[0], &nodes[1], &nodes[2]]);
    let keys = keys_on(0, 1, 5);
    let mut on_a = connect(&nodes[0]);
    let mut on_c = connect(&nodes[2]);
    // A connection speaks one protocol, fixed by its first byte.
    let mut binary_a = connect(&nodes[0]);
    assert_eq!(line(&mut on_a, &format!("ms {} 1 Y1\r\n1\r\n", keys[0])), "HD", "a live backup acknowledges");
    assert_eq!(flex_request(&mut binary_a, 0x01, &[0x11, 3], &[0; 8], &keys[0], b"p"), 0, "persist to majority, live backup");

    stop(&nodes[1]);
    // No level asked: the default, `none`, answers at once.
    assert_eq!(line(&mut on_a, &format!("set {} 0 0 1\r\n1\r\n", keys[1])), "STORED");
    // Asked for, here and through another node (the level travels with the forwarded request).
    let started = Instant::now();
    assert_eq!(flex_request(&mut binary_a, 0x01, &[0x11, 1], &[0; 8], &keys[2], b"2"), 0xa3, "binary majority: sync write ambiguous");
    assert!(started.elapsed() >= Duration::from_millis(1998), "{:?}", started.elapsed());
    assert_eq!(line(&mut on_c, &format!("ms {} 1 Y1\r\n2\r\n", keys[2])), "SERVER_ERROR sync write ambiguous", "forwarded from c");
    assert_eq!(line(&mut on_c, &format!("md {} Y3\r\n", keys[2])), "SERVER_ERROR sync write ambiguous", "md persist, forwarded");
    // Levels no one offers get their own answers, and the connection goes on.
    assert_eq!(flex_request(&mut binary_a, 0x01, &[0x11, 2], &[0; 8], &keys[3], b"x"), 0xa0, "level 2: invalid");
    assert_eq!(flex_request(&mut binary_a, 0x00, &[0x11, 1], &[], &keys[3], b""), 0x04, "on a read: invalid arguments");
    assert_eq!(line(&mut on_a, &format!("ms {} 1 Y2\r\nx\r\n", keys[3])), "CLIENT_ERROR bad durability level");
    assert_eq!(line(&mut on_a, &format!("mg {} v\r\n", keys[3])), "EN", "refused requests did not run");

    // A durable write pending on a key hides it: a read of the key, on the primary's either
    // core and through another node, answers only once the write is released.
    let k = &keys[4];
    let mut readers: Vec<TcpStream> = vec![connect(&nodes[0]), connect(&nodes[0]), connect(&nodes[2])];
    let sets = || {
        let stats = common::cluster::text_round_trip(&nodes[0], b"stats\r\n", b"END\r\n");
        let text = String::from_utf8_lossy(&stats).into_owned();
        text.lines().find_map(|l| l.strip_prefix("STAT cmd_set ")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    let before = sets();
    on_a.write_all(format!("ms {k} 1 Y1\r\nv\r\n").as_bytes()).expect("send");
    wait_until("the durable write has run", Duration::from_secs(10), || sets() > before);
    let asked = Instant::now();
    for r in &mut readers {
        r.write_all(format!("mg {k} v\r\n").as_bytes()).expect("send");
    }
    for (i, r) in readers.iter_mut().enumerate() {
        assert!(!answers_within(r, Duration::from_millis(250)), "reader {i} saw the pending write");
    }
    assert_eq!(line(&mut on_a, ""), "SERVER_ERROR sync write ambiguous");
    for r in &mut readers {
        assert_eq!(line(r, ""), "VA 1");
        assert_eq!(line(r, ""), "v");
    }
    assert!(asked.elapsed() >= Duration::from_millis(400), "the reads waited for the write: {:?}", asked.elapsed());
    nodes[1].signal(libc::SIGCONT);
}

#[test]
fn a_single_node_is_its_own_majority() {
    // On disk: majority is a plain write, persist_majority one answered once fsynced.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().display().to_string();
    let node = Server::start_caskade(&["--data-dir", &data, "--fsync", "never"], &[]);
    let mut s = connect(&node);
    assert_eq!(line(&mut s, "ms k1 1 Y1\r\n1\r\n"), "HD");
    assert_eq!(line(&mut s, "ms k2 1 Y3\r\n2\r\n"), "HD");
    assert_eq!(line(&mut s, "md k1 Y3\r\n"), "HD");
    // In memory there is no disk to persist to: refused, not run.
    let memory = Server::start_caskade(&["--in-memory"], &[]);
    let mut m = connect(&memory);
    assert_eq!(line(&mut m, "ms k 1 Y3\r\nx\r\n"), "SERVER_ERROR durability impossible");
    assert_eq!(line(&mut m, "ms k 1 Y1\r\ny\r\n"), "HD");
    assert_eq!(line(&mut m, "mg k v\r\n"), "VA 1");
    assert_eq!(line(&mut m, ""), "y");
    let mut b = connect(&memory);
    assert_eq!(flex_request(&mut b, 0x01, &[0x11, 3], &[0; 8], "k", b"z"), 0xa1, "binary: durability impossible");
}
