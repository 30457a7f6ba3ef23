//! A three-node cluster on loopback: any node serves any key (issue 11).
//!
//! Three real `caskade` processes share one cluster file. Clients that know one node only
//! read and write every key: pylibmc (binary) and pymemcache (text) in
//! `tests/clients/cluster_check.py`, memccapable against every node, and a raw text
//! multi-get whose keys live on all three nodes, whose values must come back in order.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::{cluster_stats, keys_on, stat, text_round_trip, wait_until, ClusterFiles};
use common::run_with_timeout;

const IDS: [&str; 3] = ["a", "b", "c"];

#[test]
fn any_node_serves_any_key() {
    let files = ClusterFiles::new(&IDS);
    let nodes = files.start_all(&["-t", "2"]);

    // A text multi-get through b of keys on a, b and c, interleaved: the values come back in
    // request order, END last.
    let mut keys = Vec::new();
    for i in 0..34 {
        for id in IDS {
            keys.push(keys_on(&IDS, id, 34, &format!("mg-{id}-"))[i].clone());
        }
    }
    keys.truncate(100);
    let mut sets = Vec::new();
    for k in &keys {
        sets.extend_from_slice(format!("set {k} 7 0 {}\r\n{k}\r\n", k.len()).as_bytes());
    }
    let stored = text_round_trip(&nodes[0], &sets, "STORED\r\n".repeat(keys.len()).as_bytes());
    assert_eq!(stored, "STORED\r\n".repeat(keys.len()).as_bytes());
    let request = format!("get {}\r\n", keys.join(" "));
    let reply = text_round_trip(&nodes[1], request.as_bytes(), b"END\r\n");
    let expected: String = keys.iter().map(|k| format!("VALUE {k} 7 {}\r\n{k}\r\n", k.len())).collect::<String>() + "END\r\n";
    assert_eq!(String::from_utf8_lossy(&reply), expected, "a multi-get over three nodes, in order");

    // c has only been asked by a and b so far: every request reached the core that owns its
    // partition directly (the HELLO named it), so c's cores passed nothing to each other.
    let c_stats = String::from_utf8_lossy(&text_round_trip(&nodes[2], b"stats\r\n", b"END\r\n")).into_owned();
    assert!(c_stats.contains("STAT forwarded_requests 0\r\n"), "c made cross-core hops for forwarded requests:\n{c_stats}");
    assert!(c_stats.contains("STAT cmd_get 34\r\n") || c_stats.contains("STAT cmd_get 33\r\n"), "{c_stats}");

    // Every node sees the two others up, and forwarded the multi-get's keys.
    for node in &nodes {
        let stats = cluster_stats(node);
        assert_eq!(stat(&stats, "cluster_nodes").as_deref(), Some("3"), "{stats:?}");
    }
    let b = cluster_stats(&nodes[1]);
    for id in ["a", "c"] {
        assert_eq!(stat(&b, &format!("node:{id}:state")).as_deref(), Some("up"), "{b:?}");
        let forwarded: u64 = stat(&b, &format!("node:{id}:forwarded")).and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(forwarded >= 33, "b forwarded {forwarded} requests to {id}");
        assert_eq!(stat(&b, &format!("node:{id}:primary_partitions")).as_deref(), Some(if id == "a" { "342" } else { "341" }));
    }

    // The same figures on the admin port: JSON and Prometheus (parsed, and linted by promtool
    // where it is installed).
    let (code, json) = nodes[1].http_get("/stats");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(doc["cluster"]["node:a:state"], "up", "{json}");
    assert!(doc["cluster"]["node:a:forwarded"].as_u64().unwrap_or(0) >= 33, "{json}");
    let (code, metrics) = nodes[1].http_get("/metrics");
    assert_eq!(code, 200);
    let lines: Vec<std::io::Result<String>> = metrics.lines().map(|l| Ok(l.to_string())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("the Prometheus text format");
    let forwarded = scrape.samples.iter().find(|s| s.metric == "caskade_peer_forwarded_total" && s.labels.get("node") == Some("a"));
    assert!(matches!(forwarded.map(|s| &s.value), Some(prometheus_parse::Value::Counter(n)) if *n >= 33.0), "{metrics}");
    assert!(metrics.contains("caskade_peer_rtt_seconds_bucket{node=\"c\",le=\"+Inf\"}"), "{metrics}");
    if let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("to promtool");
        let out = child.wait_with_output().expect("promtool");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
    }

    // caskadectl cluster status, through any node.
    let out = Command::new(env!("CARGO_BIN_EXE_caskadectl"))
        .args(["--server", &nodes[2].host_port(), "cluster", "status"])
        .output()
        .expect("run caskadectl");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    for (id, state, primaries) in [("a", "up", "342"), ("b", "up", "341"), ("c", "self", "341")] {
        let row = table.lines().find(|l| l.split_whitespace().next() == Some(id)).unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!((cols[1], cols[3]), (state, primaries), "{row}");
    }

    // Python clients that know one node each.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/cluster_check.py");
    let (status, output) = run_with_timeout(
        Command::new(common::python())
            .arg(&script)
            .args(nodes.iter().map(|n| n.host_port()))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1"),
        Duration::from_secs(300),
    );
    println!("{output}");
    assert!(status.is_some_and(|s| s.success()), "cluster_check.py failed:\n{output}");

    // memccapable, both protocols, against every node (its keys land on all three).
    for node in &nodes {
        for flag in ["-a", "-b"] {
            let (status, output) = run_with_timeout(
                Command::new("memccapable").args(["-h", "127.0.0.1", "-p", &node.port().to_string(), flag]),
                Duration::from_secs(120),
            );
            assert!(status.is_some_and(|s| s.success()), "memccapable {flag} against {}:\n{output}", node.host_port());
        }
    }
    wait_until("links stay up", Duration::from_secs(5), || {
        let s = cluster_stats(&nodes[2]);
        stat(&s, "node:a:state").as_deref() == Some("up") && stat(&s, "node:b:state").as_deref() == Some("up")
    });
    for node in nodes {
        assert!(node.stop().success());
    }
}
