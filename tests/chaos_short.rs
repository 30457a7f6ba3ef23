//! Short chaos runs (issue 13) against what exists today: a cluster of three nodes, one
//! backup per partition, `durability = "majority"`, `--fsync always`, no failover. Under
//! kill -9, SIGSTOP and partitions every acknowledged write must survive, every key's
//! history must be linearizable, and while a killed primary is down its backup's copy
//! (GET_REPLICA) must hold every write it acknowledged. And known-bad settings must fail the
//! checks: `--in-memory` nodes forget what they acknowledged when killed, and under
//! `durability = "none"` a primary cut off from its backup acknowledges writes its backup
//! never gets; and a node whose map differs from the others' writes as primary partitions
//! another node owns, which the nodes' logs show (two primaries in one epoch).
//!
//! Each run is the real `caskade-chaos` binary starting real `caskade` processes on free
//! loopback ports; it polls until they serve and stops them by pid.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn chaos(out: &Path, flags: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_caskade-chaos"));
    command
        .args(["--caskade", env!("CARGO_BIN_EXE_caskade"), "--out"])
        .arg(out)
        .args(["--seed", "13", "--warmup-s", "1", "--faults-s", "6", "--recover-s", "1"])
        .args(["--fault-min-ms", "800", "--fault-max-ms", "1500", "--quiet-ms", "700"])
        .args(flags);
    let (status, output) = common::run_with_timeout(&mut command, Duration::from_secs(90));
    let report = std::fs::read_to_string(out.join("run-0/report.json")).unwrap_or_default();
    let report = serde_json::from_str(&report).unwrap_or(serde_json::Value::Null);
    (status.and_then(|s| s.code()), output, report)
}

fn expect_valid(nemesis: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, output, report) = chaos(dir.path(), &["--nemesis", nemesis]);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(report["valid"], true, "{output}");
    assert_eq!(report["lost_acknowledged_writes"].as_array().map(Vec::len), Some(0), "{output}");
    assert_eq!(report["not_linearizable_keys"].as_array().map(Vec::len), Some(0), "{output}");
    assert_eq!(report["too_hard_keys"].as_array().map(Vec::len), Some(0), "{output}");
    assert_eq!(report["durability"], "majority", "{output}");
    assert_eq!(report["lost_on_backup"].as_array().map(Vec::len), Some(0), "{output}");
    assert_eq!(report["split_brain"].as_array().map(Vec::len), Some(0), "{output}");
    // The split-brain check had the nodes' own word to go on: their logs' primary claims.
    assert!(report["primary_claims"].as_u64().unwrap_or(0) >= 3, "{output}");
    // The final reads of every key's backup copy, at least.
    assert!(report["replica_reads"].as_u64().unwrap_or(0) >= 10, "{output}");
    let faults = report["faults"].as_array().cloned().unwrap_or_default();
    assert!(faults.len() >= 2, "at least two faults were injected: {output}");
    assert!(faults.iter().all(|f| f["recover_ms"].is_number()), "every node served again after each fault: {output}");
    assert!(report["ok"].as_u64().unwrap_or(0) > 500, "{output}");
}

/// kill -9 of a node, and of a node cut off from the others first: what it acknowledged
/// under majority is on its disk after the restart and was on its backup while it was dead.
#[test]
fn kill9_loses_no_acknowledged_write() {
    expect_valid("kill,kill-isolated");
}

#[test]
fn sigstop_keeps_the_history_linearizable() {
    expect_valid("pause");
}

#[test]
fn partitions_keep_the_history_linearizable() {
    expect_valid("partition-one,partition-majority,one-way");
}

/// The checker can fail: nodes that keep nothing on disk lose, at each kill, what they had
/// acknowledged, and reads after the restart miss it.
#[test]
fn in_memory_nodes_under_kill9_fail_the_check() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, output, report) = chaos(dir.path(), &["--nemesis", "kill", "--in-memory"]);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(report["valid"], false, "{output}");
    let broken = report["not_linearizable_keys"].as_array().map_or(0, Vec::len)
        + report["lost_acknowledged_writes"].as_array().map_or(0, Vec::len);
    assert!(broken > 0, "{output}");
}

/// The backup-copy check can fail: under `durability = "none"` a primary cut off from its
/// backup goes on acknowledging writes alone; killed, its backup lacks them (what a failover
/// would lose), though its own disk has them (nothing lost at the end).
#[test]
fn durability_none_loses_writes_on_the_backup() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, output, report) = chaos(dir.path(), &["--nemesis", "kill-isolated", "--durability", "none"]);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(report["valid"], false, "{output}");
    assert!(report["lost_on_backup"].as_array().map_or(0, Vec::len) > 0, "{output}");
    assert_eq!(report["lost_acknowledged_writes"].as_array().map(Vec::len), Some(0), "{output}");
}

/// The split-brain check can fail on real nodes: node a runs with a cluster file that
/// leaves node c out, so its map makes it primary of partitions b and c own, and it writes
/// them (under `durability = "none"` nothing waits for a backup). The nodes' logs say two
/// primaries wrote those partitions in epoch 1.
#[test]
fn a_node_with_another_map_fails_the_split_brain_check() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, output, report) = chaos(dir.path(), &["--nemesis", "pause", "--rogue-map", "--durability", "none"]);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(report["valid"], false, "{output}");
    let split = report["split_brain"].as_array().cloned().unwrap_or_default();
    assert!(!split.is_empty(), "{output}");
    // Node a (index 0) is one of the two primaries of each.
    assert!(split.iter().all(|b| b["epoch"] == 1 && b["primaries"].as_array().is_some_and(|p| p.len() == 2 && p[0] == 0)), "{output}");
}

/// `--check` on a hand-made history: acknowledged set 1, set 2, then a read of 1 (stale) is
/// refused; reading 2 instead, or an unknown delete that may explain a miss, passes. And two
/// primaries acknowledging in one epoch are refused.
#[test]
fn injected_stale_read_and_split_brain_fail_the_check() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let line = |op: &str, args: &str, t: u64, outcome: &str, ret: &str| {
        format!(
            r#"{{"process":0,"node":"a","key":"k1","op":"{op}","args":{args},"invoke_ns":{t},"complete_ns":{},"outcome":"{outcome}","ret":{ret}}}"#,
            t + 5
        )
    };
    let check = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n")).expect("write the history");
        let mut command = Command::new(env!("CARGO_BIN_EXE_caskade-chaos"));
        command.arg("--check").arg(&path);
        let (status, output) = common::run_with_timeout(&mut command, Duration::from_secs(30));
        (status.and_then(|s| s.code()), output)
    };
    let writes = [
        line("set", "[1000000]", 0, "ok", r#""stored""#),
        line("set", "[2000000]", 10, "ok", r#""stored""#),
    ];
    let stale = [&writes[..], &[line("read", "[]", 20, "ok", r#"{"value":1000000}"#)]].concat();
    let (code, output) = check("stale.jsonl", &stale);
    assert_eq!(code, Some(1), "{output}");
    let fresh = [&writes[..], &[line("read", "[]", 20, "ok", r#"{"value":2000000}"#)]].concat();
    let (code, output) = check("fresh.jsonl", &fresh);
    assert_eq!(code, Some(0), "{output}");
    let ambiguous = [
        &writes[..],
        &[line("delete", "[]", 12, "unknown", r#""timeout""#), line("read", "[]", 20, "ok", r#"{"value":null}"#)],
    ]
    .concat();
    let (code, output) = check("ambiguous.jsonl", &ambiguous);
    assert_eq!(code, Some(0), "{output}");
    // Split brain: writes to one partition acknowledged by primaries a and b in epoch 1.
    let by = |line: String, primary: &str, epoch: u64| line.replace(r#""ret":"stored"}"#, &format!(r#""ret":"stored","primary":"{primary}","epoch":{epoch}}}"#));
    let two = [by(writes[0].clone(), "a", 1), by(writes[1].clone(), "b", 1)];
    let (code, output) = check("split.jsonl", &two);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("1 split-brain partitions"), "{output}");
    // The same two in different epochs (a failover between them) are fine.
    let failover = [by(writes[0].clone(), "a", 1), by(writes[1].clone(), "b", 2)];
    let (code, output) = check("failover.jsonl", &failover);
    assert_eq!(code, Some(0), "{output}");
}
