//! Short chaos runs (issue 13) against what exists today: a cluster of three single-owner
//! nodes under `--fsync always`. Under kill -9, SIGSTOP and partitions every acknowledged
//! write must survive (the owner's disk has it) and every key's history must be
//! linearizable. And a known-bad setting must fail the check: `--in-memory` nodes forget
//! what they acknowledged when killed.
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
        .args(["--seed", "13", "--warmup-s", "1", "--faults-s", "7", "--recover-s", "1"])
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
    let faults = report["faults"].as_array().cloned().unwrap_or_default();
    assert!(faults.len() >= 2, "at least two faults were injected: {output}");
    assert!(faults.iter().all(|f| f["recover_ms"].is_number()), "every node served again after each fault: {output}");
    assert!(report["ok"].as_u64().unwrap_or(0) > 500, "{output}");
}

#[test]
fn kill9_loses_no_acknowledged_write() {
    expect_valid("kill");
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

/// `--check` on a hand-made history: acknowledged set 1, set 2, then a read of 1 (stale) is
/// refused; reading 2 instead, or an unknown delete that may explain a miss, passes.
#[test]
fn an_injected_stale_read_fails_the_check() {
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
}
