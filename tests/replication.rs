//! Replication (issue 12) with real processes: three nodes, `replicas = 1`. Every write
//! made through any node reaches the partition's backup, with the primary's CAS; a backup
//! killed with SIGKILL catches up when it comes back (from the primary's backlog when that
//! still covers it, by a full resync when it does not), and then every copy equals its
//! primary, read with GET_REPLICA (0x83).

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

fn backup_of(key: &str) -> usize {
    map().backups(caskade::cluster::partition_of(key.as_bytes()))[0] as usize
}

fn primary_of(key: &str) -> usize {
    map().primary(caskade::cluster::partition_of(key.as_bytes()))
}

/// A binary GET or GET_REPLICA: (status, flags, cas, value).
fn binary_get(s: &mut TcpStream, opcode: u8, key: &str) -> (u16, u32, u64, Vec<u8>) {
    let mut req = vec![0x80, opcode];
    req.extend_from_slice(&(key.len() as u16).to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 0]);
    req.extend_from_slice(&(key.len() as u32).to_be_bytes());
    req.extend_from_slice(&[0; 12]);
    req.extend_from_slice(key.as_bytes());
    s.write_all(&req).expect("send");
    let mut head = [0u8; 24];
    s.read_exact(&mut head).expect("a response header");
    assert_eq!((head[0], head[1]), (0x81, opcode), "response to {key}");
    let status = u16::from_be_bytes([head[6], head[7]]);
    let body = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let extras = head[4] as usize;
    let key_len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let cas = u64::from_be_bytes(head[16..24].try_into().expect("8 bytes"));
    let mut b = vec![0u8; body];
    s.read_exact(&mut b).expect("a response body");
    let flags = if extras == 4 { u32::from_be_bytes(b[..4].try_into().expect("4 bytes")) } else { 0 };
    (status, flags, cas, b[extras + key_len..].to_vec())
}

fn connect(node: &Server) -> TcpStream {
    let s = TcpStream::connect(node.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s
}

/// Sends text commands that each answer one line, in batches, and returns the lines.
fn text_batch(s: &mut TcpStream, commands: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in commands.chunks(200) {
        let mut req = Vec::new();
        for c in chunk {
            req.extend_from_slice(c.as_bytes());
        }
        s.write_all(&req).expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while got.iter().filter(|&&b| b == b'\n').count() < chunk.len() {
            let n = s.read(&mut buf).expect("replies within 30 s");
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
        out.extend(String::from_utf8_lossy(&got).lines().map(str::to_string));
    }
    out
}

/// The mixed load: sets, deletes, incr, append and TTLs over `keys`, `n` commands.
fn load(keys: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let k = &keys[next() as usize % keys.len()];
            match next() % 10 {
                0 => format!("delete {k}\r\n"),
                1 => format!("incr {k} 3\r\n"),
                2 => format!("append {k} 0 0 2\r\n+a\r\n"),
                3 => format!("set {k} 5 3600 {}\r\n{i}\r\n", i.to_string().len()),
                4 => format!("set {k} 0 0 1\r\n7\r\n"),
                _ => {
                    let v = format!("value-{i}-{}", "x".repeat(next() as usize % 200));
                    format!("set {k} {} 0 {}\r\n{v}\r\n", i % 7, v.len())
                }
            }
        })
        .collect()
}

/// Waits until every node's streams to every other node are live with nothing unacknowledged.
fn wait_caught_up(nodes: &[&Server], timeout: Duration) -> Duration {
    let started = Instant::now();
    wait_until("every stream live with no lag", timeout, || {
        nodes.iter().all(|n| {
            let stats = cluster_stats(n);
            let me = stat(&stats, "cluster_node").unwrap_or_default();
            IDS.iter().filter(|&&id| id != me).all(|id| {
                stat(&stats, &format!("node:{id}:repl_state")).as_deref() == Some("live")
                    && stat(&stats, &format!("node:{id}:repl_lag_sum")).as_deref() == Some("0")
            })
        })
    });
    started.elapsed()
}

/// Every key's primary copy (GET through `any`) equals its backup copy (GET_REPLICA):
/// value, flags and CAS, or missing on both. Returns how many keys are present.
fn assert_copies_equal(any: &Server, keys: &[String]) -> usize {
    let mut s = connect(any);
    let mut present = 0;
    for k in keys {
        let primary = binary_get(&mut s, 0x00, k);
        let replica = binary_get(&mut s, 0x83, k);
        assert!(primary.0 == 0 || primary.0 == 1, "{k}: GET status {:#x}", primary.0);
        assert_eq!(primary, replica, "{k}: the backup's copy (node {}) differs from the primary's (node {})", IDS[backup_of(k)], IDS[primary_of(k)]);
        present += (primary.0 == 0) as usize;
    }
    present
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("rk-{i}")).collect()
}

#[test]
fn every_write_through_every_node_reaches_the_backup() {
    let files = ClusterFiles::new(&IDS);
    let nodes = files.start_all(&["-t", "2"]);
    let keys = keys(2000);
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = nodes.iter().map(connect).collect();
    let all = load(&keys, 20_000, 42);
    for (i, chunk) in all.chunks(1000).enumerate() {
        let replies = text_batch(&mut conns[i % 3], chunk);
        assert!(replies.iter().all(|r| !r.starts_with("SERVER_ERROR") && !r.starts_with("ERROR")), "{replies:?}");
    }
    let took = started.elapsed();
    let refs: Vec<&Server> = nodes.iter().collect();
    let caught_up = wait_caught_up(&refs, Duration::from_secs(60));
    let present = assert_copies_equal(&nodes[1], &keys);
    assert!(present > 1000, "only {present} keys present");
    println!("20000 writes through 3 nodes in {took:?}; backups caught up {caught_up:?} later; {present} keys equal on both copies");
    // Lag is measured per acknowledged frame: every node streamed to both others.
    let stats = cluster_stats(&nodes[0]);
    for id in ["b", "c"] {
        let samples: u64 = stat(&stats, &format!("node:{id}:repl_lag_samples")).and_then(|v| v.parse().ok()).unwrap_or(0);
        let p99 = stat(&stats, &format!("node:{id}:repl_lag_p99_us")).unwrap_or_default();
        println!("a -> {id}: {samples} lag samples, p99 <= {p99} us");
        assert!(samples > 0, "no lag sample toward {id}");
        assert!(p99 == "inf" || p99.parse::<u64>().is_ok_and(|v| v > 0), "p99 {p99:?}");
        assert_eq!(stat(&stats, &format!("node:{id}:repl_worst_partitions")).as_deref(), Some(""), "caught up: no partition behind");
    }
    let (status, metrics) = nodes[0].http_get("/metrics");
    assert_eq!(status, 200);
    let count = metrics.lines().find_map(|l| l.strip_prefix("caskade_replication_lag_seconds_count{node=\"b\"} ")).and_then(|v| v.trim().parse::<u64>().ok());
    assert!(count.is_some_and(|c| c > 0), "the lag histogram in /metrics: {count:?}");
    assert!(metrics.contains("caskade_replication_lag_seconds_bucket{node=\"c\",le=\"+Inf\"}"));
    // Flush reaches the backups too.
    let mut s = connect(&nodes[2]);
    assert_eq!(text_batch(&mut s, &["flush_all\r\n".to_string()]), vec!["OK".to_string()]);
    wait_caught_up(&refs, Duration::from_secs(60));
    assert_eq!(assert_copies_equal(&nodes[0], &keys), 0, "a flush leaves nothing on the backups");
}

#[test]
fn a_killed_backup_catches_up_partially_then_by_a_backfill() {
    // A 1 MiB backlog: a short outage fits in it, a long one does not (and is backfilled:
    // the deletions it missed are still noted).
    let files = ClusterFiles::with_settings(&IDS, "test", SECRET, "replication_backlog_mb = 1\n");
    let mut nodes = files.start_all(&["-t", "2"]);
    // Keys c backs up, whose primary is a or b (c's own keys cannot be written while it is down).
    let keys: Vec<String> = keys(6000).into_iter().filter(|k| backup_of(k) == 2).take(1500).collect();
    let mut on_a = connect(&nodes[0]);
    text_batch(&mut on_a, &load(&keys, 3000, 7));
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));

    for (round, writes, value_len) in [(1, 300, 10), (2, 4000, 900)] {
        let resyncs_before = resyncs_to_c(&nodes);
        let backfills_before = to_c(&nodes, "repl_backfills");
        nodes[2].kill();
        // Writes while c is down, under load from both live nodes.
        let cmds: Vec<String> = load(&keys, writes, round)
            .into_iter()
            .map(|c| if c.starts_with("set ") && value_len > 100 { big_set(&c, value_len) } else { c })
            .collect();
        let (half_a, half_b) = cmds.split_at(cmds.len() / 2);
        let mut on_b = connect(&nodes[1]);
        let mut on_a = connect(&nodes[0]);
        text_batch(&mut on_a, half_a);
        text_batch(&mut on_b, half_b);
        let started = Instant::now();
        nodes[2] = files.start("c", &["-t", "2"]);
        let caught_up = wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(90));
        let present = assert_copies_equal(&nodes[0], &keys);
        let resyncs = resyncs_to_c(&nodes) - resyncs_before;
        let backfills = to_c(&nodes, "repl_backfills") - backfills_before;
        println!(
            "round {round}: {writes} writes while c was down; c caught up {:?} after its start ({caught_up:?} of waiting); {backfills} backfills, {resyncs} full resyncs; {present} keys equal",
            started.elapsed()
        );
        match round {
            1 => assert_eq!((backfills, resyncs), (0, 0), "a short outage is caught up from the backlog"),
            _ => assert!(backfills > 0 && resyncs == 0, "past the backlog, a backfill ({backfills} backfills, {resyncs} resyncs)"),
        }
    }
}

#[test]
fn past_the_purge_interval_a_backup_is_resynced_in_full() {
    // Deletions are noted for 1 s only.
    let files = ClusterFiles::with_settings(&IDS, "test", SECRET, "replication_backlog_mb = 1\npurge_interval_s = 1\n");
    let mut nodes = files.start_all(&["-t", "2"]);
    let keys: Vec<String> = keys(6000).into_iter().filter(|k| backup_of(k) == 2).take(1500).collect();
    let mut on_a = connect(&nodes[0]);
    text_batch(&mut on_a, &load(&keys, 3000, 7));
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    let resyncs_before = resyncs_to_c(&nodes);
    nodes[2].kill();
    let cmds: Vec<String> = load(&keys, 4000, 3).into_iter().map(|c| if c.starts_with("set ") { big_set(&c, 900) } else { c }).collect();
    let (half_a, half_b) = cmds.split_at(cmds.len() / 2);
    text_batch(&mut connect(&nodes[0]), half_a);
    text_batch(&mut connect(&nodes[1]), half_b);
    // The interval passes (the setting's own time, not a wait for readiness); then a write
    // on every core of a and b purges the notes.
    std::thread::sleep(Duration::from_millis(2500));
    let later: Vec<String> = keys.iter().take(200).map(|k| format!("set {k} 0 0 5\r\nlater\r\n")).collect();
    text_batch(&mut connect(&nodes[0]), &later);
    nodes[2] = files.start("c", &["-t", "2"]);
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(90));
    assert_copies_equal(&nodes[0], &keys);
    let resyncs = resyncs_to_c(&nodes) - resyncs_before;
    assert!(resyncs > 0, "the deletions c missed were purged: a full resync");
}

fn big_set(cmd: &str, len: usize) -> String {
    let key = cmd.split_whitespace().nth(1).expect("a key");
    let v = "v".repeat(len);
    format!("set {key} 3 0 {len}\r\n{v}\r\n")
}

/// Full resyncs a and b have started toward c (the counters live in the primaries' streams).
fn resyncs_to_c(nodes: &[Server]) -> u64 {
    to_c(nodes, "repl_resyncs")
}

/// A counter of a's and b's streams toward c, summed.
fn to_c(nodes: &[Server], what: &str) -> u64 {
    nodes[..2].iter().map(|n| stat(&cluster_stats(n), &format!("node:c:{what}")).and_then(|v| v.parse().ok()).unwrap_or(0)).sum()
}

#[test]
fn a_get_falls_back_to_the_backup_when_its_primary_is_down() {
    let files = ClusterFiles::with_settings(&IDS, "test", SECRET, "read_fallback = \"replica\"\n");
    let mut nodes = files.start_all(&["-t", "2"]);
    // Keys c is primary for, backed up by a or b.
    let keys: Vec<String> = keys(3000).into_iter().filter(|k| primary_of(k) == 2).take(200).collect();
    let mut on_a = connect(&nodes[0]);
    let sets: Vec<String> = keys.iter().map(|k| format!("set {k} 9 0 {}\r\n{k}\r\n", k.len())).collect();
    assert!(text_batch(&mut on_a, &sets).iter().all(|r| r == "STORED"));
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    nodes[2].kill();
    wait_until("a sees c unreachable", Duration::from_secs(30), || {
        stat(&cluster_stats(&nodes[0]), "node:c:state").as_deref() == Some("unreachable")
    });
    let mut s = connect(&nodes[0]);
    for k in &keys {
        let (status, flags, _, value) = binary_get(&mut s, 0x00, k);
        assert_eq!((status, flags, value.as_slice()), (0, 9, k.as_bytes()), "{k} read from its backup");
    }
    let stats = common::cluster::text_round_trip(&nodes[0], b"stats\r\n", b"END\r\n");
    assert!(String::from_utf8_lossy(&stats).contains(&format!("STAT replica_fallback_reads {}\r\n", keys.len())));
}

/// Asks `node` for a verification round and waits until every stream to `backup` has done it;
/// returns the mismatches counted so far toward `backup`.
fn verify(node: &Server, backup: &str) -> u64 {
    let (code, body) = node.http_get("/cluster/verify");
    assert_eq!(code, 200, "{body}");
    let round: u64 = body.trim().strip_prefix("round ").and_then(|r| r.parse().ok()).expect("round N");
    wait_until("the verification round is done", Duration::from_secs(60), || {
        stat(&cluster_stats(node), &format!("node:{backup}:repl_verified_round")).and_then(|r| r.parse::<u64>().ok()).is_some_and(|r| r >= round)
    });
    stat(&cluster_stats(node), &format!("node:{backup}:repl_mismatches")).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn a_backup_changed_behind_replications_back_is_found_and_repaired() {
    use caskade::storage::change::ChangeKind;
    use caskade::storage::disk::{Fsync, LogConfig, RealFs};
    use caskade::storage::{Command, Mode, Outcome, Shard, ShardConfig};
    let files = ClusterFiles::new(&IDS);
    let mut nodes = files.start_all(&["-t", "2"]);
    // Keys a is primary for and b backs up.
    let keys: Vec<String> = keys(4000).into_iter().filter(|k| primary_of(k) == 0 && backup_of(k) == 1).take(100).collect();
    let mut on_c = connect(&nodes[2]);
    let sets: Vec<String> = keys.iter().map(|k| format!("set {k} 4 0 {}\r\n{k}\r\n", k.len())).collect();
    assert!(text_batch(&mut on_c, &sets).iter().all(|r| r == "STORED"));
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    assert_eq!(verify(&nodes[0], "b"), 0, "equal copies verify equal");

    // b stops; its copy of one key is edited offline, keeping the seqno and the CAS.
    let victim = &keys[0];
    let b = nodes.remove(1);
    b.stop();
    let p = caskade::cluster::partition_of(victim.as_bytes());
    let dir = files.data_dir("b").join(format!("shard-{:03}", p % 2));
    let config = ShardConfig { memory_limit: 64 << 20, max_item_size: 1 << 20, mode: Mode::Store, primary_only: None, epoch: None };
    let log = LogConfig { dir, shard: (p % 2) as u32, segment_size: 64 << 20, fsync: Fsync::Always, compress_min: 0 };
    let now = caskade::stats::unix_now();
    let (mut shard, _) = Shard::open(config, std::sync::Arc::new(RealFs), log, now).expect("open b's shard");
    let (flags, cas) = match shard.execute(&Command::Get { key: victim.as_bytes() }, now) {
        Outcome::Value { flags, cas, .. } => (flags, cas),
        other => panic!("b holds no copy of {victim}: {other:?}"),
    };
    let seqno = shard.last_seqno(p);
    shard.apply(ChangeKind::Put, victim.as_bytes(), b"corrupted", flags, 0, cas, seqno, now).expect("edit");
    assert_eq!(shard.last_seqno(p), seqno);
    shard.commit().expect("commit");
    shard.close().expect("close");
    nodes.insert(1, files.start("b", &["-t", "2"]));
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    let mut s = connect(&nodes[2]);
    assert_eq!(binary_get(&mut s, 0x83, victim).3, b"corrupted", "replication alone does not see the edit");

    // A verification finds it and resyncs the partition.
    assert!(verify(&nodes[0], "b") >= 1, "the edited copy is found");
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    assert_copies_equal(&nodes[2], &keys);
    assert_eq!(verify(&nodes[0], "b"), 1, "and then verifies equal");
}

#[test]
fn a_backup_s_own_flush_does_not_drop_what_its_primary_wrote_after_flushing() {
    // c's flush_all reaches a while a is stopped; meanwhile c (flushed) takes new writes of
    // keys a backs up, on both cores. When a resumes, the stream's changes and the forwarded
    // flush arrive on different links: a's own flush must not drop c's later writes.
    let files = ClusterFiles::new(&IDS);
    let nodes = files.start_all(&["-t", "2"]);
    let keys: Vec<String> = keys(4000).into_iter().filter(|k| primary_of(k) == 2 && backup_of(k) == 0).take(200).collect();
    let old: Vec<String> = keys.iter().map(|k| format!("set {k} 0 0 3\r\nold\r\n")).collect();
    text_batch(&mut connect(&nodes[2]), &old);
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    common::sigstop(&nodes[0]);
    let mut flusher = connect(&nodes[2]);
    flusher.write_all(b"flush_all\r\n").unwrap();
    // c flushes itself whatever a does; then the new writes.
    wait_until("c flushed", Duration::from_secs(30), || binary_get(&mut connect(&nodes[2]), 0x00, &keys[0]).0 == 1);
    let new: Vec<String> = keys.iter().map(|k| format!("set {k} 0 0 3\r\nnew\r\n")).collect();
    assert!(text_batch(&mut connect(&nodes[2]), &new).iter().all(|r| r == "STORED"));
    nodes[0].signal(libc::SIGCONT);
    let mut reply = [0u8; 64];
    let n = flusher.read(&mut reply).unwrap();
    println!("flush_all answered {:?}", String::from_utf8_lossy(&reply[..n]));
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    assert_eq!(assert_copies_equal(&nodes[1], &keys), keys.len(), "every new write on both copies");
}

#[test]
fn a_restarted_primary_catches_its_backups_up_without_a_resync() {
    // kill -9 loses nothing written: the backups' copies are a prefix of the restarted
    // primary's history (its new branch begins where they stand), so no full resync.
    let files = ClusterFiles::new(&IDS);
    let mut nodes = files.start_all(&["-t", "2"]);
    let keys: Vec<String> = keys(3000).into_iter().filter(|k| primary_of(k) == 0).take(300).collect();
    let sets = |v: &str| keys.iter().map(|k| format!("set {k} 0 0 {}\r\n{v}\r\n", v.len())).collect::<Vec<_>>();
    assert!(text_batch(&mut connect(&nodes[0]), &sets("before")).iter().all(|r| r == "STORED"));
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    nodes[0].kill();
    nodes[0] = files.start("a", &["-t", "2"]);
    assert!(text_batch(&mut connect(&nodes[0]), &sets("after")).iter().all(|r| r == "STORED"));
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    assert_eq!(assert_copies_equal(&nodes[1], &keys), keys.len());
    let stats = cluster_stats(&nodes[0]);
    for id in ["b", "c"] {
        assert_eq!(stat(&stats, &format!("node:{id}:repl_resyncs")).as_deref(), Some("0"), "a resynced {id}'s copies after its restart");
    }
}

#[test]
fn a_backfill_removes_a_version_that_expired_while_the_backup_was_down() {
    // k lived on both copies without an expiry; while c was down it was written again with
    // a 1 s expiry (a new CAS) and expired. A backfill must not leave the old version on c.
    let files = ClusterFiles::with_settings(&IDS, "test", SECRET, "replication_backlog_mb = 1\n");
    let mut nodes = files.start_all(&["-t", "2"]);
    let keys: Vec<String> = keys(6000).into_iter().filter(|k| backup_of(k) == 2 && primary_of(k) == 0).take(300).collect();
    let (short, rest) = keys.split_at(50);
    let old: Vec<String> = keys.iter().map(|k| format!("set {k} 0 0 3\r\nold\r\n")).collect();
    text_batch(&mut connect(&nodes[0]), &old);
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(60));
    nodes[2].kill();
    let mut on_a = connect(&nodes[0]);
    text_batch(&mut on_a, &short.iter().map(|k| format!("set {k} 0 1 5\r\nshort\r\n")).collect::<Vec<_>>());
    // Past the 1 MiB backlog.
    text_batch(&mut on_a, &(0..1500).map(|i| big_set(&format!("set {} 0 0 1\r\nx\r\n", rest[i % rest.len()]), 900)).collect::<Vec<_>>());
    // The expiry's own time (2 s covers the one-second clock), then some reads that reclaim.
    std::thread::sleep(Duration::from_millis(2500));
    for k in short.iter().take(10) {
        assert_eq!(binary_get(&mut connect(&nodes[0]), 0x00, k).0, 1, "{k} expired on its primary");
    }
    nodes[2] = files.start("c", &["-t", "2"]);
    wait_caught_up(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(90));
    assert_copies_equal(&nodes[1], &keys);
}
