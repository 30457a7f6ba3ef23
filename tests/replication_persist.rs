//! `persist_majority` (issue 12): a write's reply leaves only once a majority of its copies
//! are on disk. Each test runs one node of a two-node cluster in this process, its fsyncs
//! through a gate the test holds (`tests/gate`), and the other as a real process:
//! - the backup held: a `persist_majority` write is not answered until the backup's fsync
//!   completes (so its frame asked for one: PERSIST), while a `majority` write is;
//! - the primary held: a `persist_majority` write waits for the primary's own fsync too,
//!   even under `--fsync everysec`.

mod common;
mod gate;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use caskade::cluster::map::{ClusterMap, MapNode};
use common::cluster::{cluster_stats, stat, wait_until, ClusterFiles, SECRET};

const IDS: [&str; 2] = ["a", "b"];

/// A key whose primary is node `primary` (the other node is its backup).
fn key_on(primary: usize, n: usize) -> String {
    let m = ClusterMap::derive("", IDS.iter().map(|id| MapNode { id: id.to_string(), peer: String::new() }).collect(), 1);
    (0..).map(|i| format!("pk{n}-{i}")).find(|k| m.primary(caskade::cluster::partition_of(k.as_bytes())) == primary).unwrap()
}

fn line(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n") {
        assert!(s.read(&mut b).expect("a reply") > 0, "closed");
        got.push(b[0]);
    }
    String::from_utf8_lossy(&got).trim_end().to_string()
}

fn files() -> ClusterFiles {
    ClusterFiles::with_settings(&IDS, "test", SECRET, "replicas = 1\ndurability_timeout_ms = 20000\n")
}

/// Node `id` of the cluster in this process, its fsyncs through its gate.
fn in_process(files: &ClusterFiles, id: &str) -> gate::Node {
    let file = files.path().display().to_string();
    gate::Node::start_with(1, "everysec", &["--cluster", &file, "--node", id])
}

fn live(stats_of: impl Fn() -> Vec<(String, String)>, other: &str) {
    wait_until("the stream to the backup is live", Duration::from_secs(30), || {
        stat(&stats_of(), &format!("node:{other}:repl_state")).as_deref() == Some("live")
    });
}

fn text_stats(s: &mut TcpStream) -> Vec<(String, String)> {
    s.write_all(b"stats cluster\r\n").expect("send");
    let mut out = Vec::new();
    loop {
        let l = line(s);
        if l == "END" {
            return out;
        }
        let mut parts = l.splitn(3, ' ');
        if let (Some("STAT"), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) {
            out.push((k.to_string(), v.to_string()));
        }
    }
}

#[test]
fn a_persist_majority_write_waits_for_the_backups_fsync() {
    let files = files();
    let a = files.start("a", &["-t", "1"]);
    let b = in_process(&files, "b");
    live(|| cluster_stats(&a), "b");
    let mut client = TcpStream::connect(a.addr()).expect("connect");
    client.set_read_timeout(Some(gate::PATIENCE)).expect("timeout");

    b.gate.hold();
    // majority: held in the backup's memory is enough.
    client.write_all(format!("ms {} 1 Y1\r\n1\r\n", key_on(0, 1)).as_bytes()).expect("send");
    assert_eq!(line(&mut client), "HD", "majority needs no fsync of the backup");
    // persist_majority: its frame asks the backup to answer after its fsync, which is held.
    client.write_all(format!("ms {} 1 Y3\r\n2\r\n", key_on(0, 2)).as_bytes()).expect("send");
    b.gate.wait_blocked(1);
    gate::assert_silent(&client, 0, "a persist_majority write while the backup's fsync is held");
    b.gate.open();
    assert_eq!(line(&mut client), "HD");
}

#[test]
fn a_persist_majority_write_waits_for_the_primarys_own_fsync() {
    let files = files();
    let b = files.start("b", &["-t", "1"]);
    let a = in_process(&files, "a");
    let mut client = a.connect();
    live(|| text_stats(&mut a.connect()), "b");

    a.gate.hold();
    client.write_all(format!("ms {} 1 Y1\r\n1\r\n", key_on(0, 3)).as_bytes()).expect("send");
    assert_eq!(line(&mut client), "HD", "majority: the primary's everysec policy applies");
    client.write_all(format!("ms {} 1 Y3\r\n2\r\n", key_on(0, 4)).as_bytes()).expect("send");
    a.gate.wait_blocked(1);
    gate::assert_silent(&client, 0, "a persist_majority write while the primary's fsync is held");
    a.gate.open();
    assert_eq!(line(&mut client), "HD");
    drop(b);
}

#[test]
fn a_backup_whose_disk_fails_acknowledges_nothing() {
    let files = ClusterFiles::with_settings(&IDS, "test", SECRET, "replicas = 1\ndurability_timeout_ms = 1000\n");
    let a = files.start("a", &["-t", "1"]);
    let b = in_process(&files, "b");
    live(|| cluster_stats(&a), "b");
    let mut client = TcpStream::connect(a.addr()).expect("connect");
    client.set_read_timeout(Some(gate::PATIENCE)).expect("timeout");
    // The backup's fsyncs fail (EIO): its answer to a frame that asks for one is a refusal,
    // never an acknowledgement, and the write it carried is not called durable.
    b.gate.fail();
    client.write_all(format!("ms {} 1 Y3\r\n1\r\n", key_on(0, 5)).as_bytes()).expect("send");
    assert_eq!(line(&mut client), "SERVER_ERROR sync write ambiguous");
    wait_until("the stream shows the backup's refusal", Duration::from_secs(30), || {
        let stats = cluster_stats(&a);
        stat(&stats, "node:b:repl_last_error").is_some_and(|e| e.contains("refused"))
    });
    // Its disk works again: the stream reopens and durable writes are acknowledged.
    b.gate.open();
    live(|| cluster_stats(&a), "b");
    client.write_all(format!("ms {} 1 Y3\r\n2\r\n", key_on(0, 6)).as_bytes()).expect("send");
    assert_eq!(line(&mut client), "HD");
}
