//! The admin HTTP endpoints after a known sequence of commands: `/stats` (JSON) and
//! `/metrics` (Prometheus, parsed by a real parser, and linted by `promtool` where it is
//! installed) count exactly what was asked; `/health`, 404, 405 and 400 answer as documented
//! and never disturb the data port.

mod common;
mod wire;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use caskade::protocol::binary::{Opcode, RequestExtras, Status};
use common::Server;
use wire::{request, Wire};

/// Requests of class "other" so far: the harness's readiness probes are NOOPs.
fn others(server: &Server) -> u64 {
    let (_, body) = server.http_get("/stats");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["latency_us"]["other"]["count"].as_u64().unwrap()
}

/// 3 SETs, 5 GETs (3 hits, 2 misses), 2 DELETEs (1 hit), 2 INCREMENTs, 1 TOUCH, 1 NOOP;
/// keys chosen to land on both cores, so some requests are forwarded. Returns the count of
/// "other" requests expected after it.
fn known_sequence(server: &Server) -> u64 {
    let other = others(server) + 1;
    let mut c = Wire::connect(server.addr());
    let store = RequestExtras::Store { flags: 0, exptime: 0 };
    let mut reqs = Vec::new();
    for k in [&b"a"[..], b"b", b"c"] {
        reqs.push(request(Opcode::Set, k, b"1", store, 0));
    }
    for k in [&b"a"[..], b"b", b"c", b"x", b"y"] {
        reqs.push(request(Opcode::Get, k, b"", RequestExtras::None, 0));
    }
    reqs.push(request(Opcode::Delete, b"c", b"", RequestExtras::None, 0));
    reqs.push(request(Opcode::Delete, b"c", b"", RequestExtras::None, 0));
    let arith = RequestExtras::Arith { delta: 1, initial: 0, exptime: 0 };
    reqs.push(request(Opcode::Increment, b"n", b"", arith, 0));
    reqs.push(request(Opcode::Increment, b"n", b"", arith, 0));
    reqs.push(request(Opcode::Touch, b"a", b"", RequestExtras::Expiry(100), 0));
    reqs.push(request(Opcode::Noop, b"", b"", RequestExtras::None, 0));
    let n = reqs.len();
    c.send(&wire::encode(&reqs));
    for _ in 0..n {
        c.recv();
    }
    other
}

#[test]
fn stats_json_counts_the_known_sequence() {
    let server = Server::start_caskade(&["-t", "2"], &[]);
    let other = known_sequence(&server);
    let (status, body) = server.http_get("/stats");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let stat = |k: &str| doc["stats"][k].as_u64().unwrap_or_else(|| panic!("stats.{k} in {body}"));
    assert_eq!(stat("cmd_set"), 3);
    assert_eq!(stat("cmd_get"), 5);
    assert_eq!((stat("get_hits"), stat("get_misses")), (3, 2));
    assert_eq!((stat("delete_hits"), stat("delete_misses")), (1, 1));
    assert_eq!((stat("incr_hits"), stat("incr_misses")), (2, 0));
    assert_eq!((stat("touch_hits"), stat("cmd_touch")), (1, 1));
    assert_eq!(stat("curr_items"), 3);
    assert!(stat("bytes_read") > 0 && stat("bytes_written") > 0);
    assert_eq!(stat("rejected_connections"), 0);
    assert_eq!(stat("threads"), 2);
    assert_eq!(doc["settings"]["threads"], "2");
    assert_eq!(doc["settings"]["memory-limit"], "1024");
    // Defaults that are worked out show the value in force, in the flags' spelling.
    assert_eq!(doc["settings"]["log-level"], "info");
    assert_eq!(doc["phase"], "serving");
    let log = server.log();
    assert!(log.contains("(--fsync everysec, --mode store)"), "the start-up line spells the flags:\n{log}");
    let lat = &doc["latency_us"];
    for (op, count) in [("get", 5), ("set", 3), ("delete", 2), ("incr_decr", 2), ("touch", 1), ("other", other)] {
        assert_eq!(lat[op]["count"].as_u64(), Some(count), "latency_us.{op} in {body}");
        let p = |k: &str| lat[op][k].as_u64().unwrap();
        assert!(p("p50") >= 1 && p("p50") <= p("p90") && p("p90") <= p("p99"), "{op}: {}", lat[op]);
        assert!(p("p99") <= p("p99_9") && p("p99_9") <= p("max"), "{op}: {}", lat[op]);
    }
}

/// `(name, labels) -> value` of every sample, histograms as their buckets.
fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

#[test]
fn metrics_parse_and_count_the_known_sequence() {
    let server = Server::start_caskade(&["-t", "2"], &[]);
    let other = known_sequence(&server) as f64;
    let (status, text) = server.http_get("/metrics");
    assert_eq!(status, 200);
    let scrape = parse_metrics(&text);

    // Every family has HELP and TYPE, and every name is caskade_-prefixed.
    let types: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for name in types.keys() {
        assert!(name.starts_with("caskade_"), "{name}");
        assert!(scrape.docs.contains_key(*name), "{name} has no HELP");
    }
    for s in &scrape.samples {
        assert!(s.metric.starts_with("caskade_"), "{}", s.metric);
    }
    let value = |name: &str| -> f64 {
        let s = scrape.samples.iter().find(|s| s.metric == name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(types["caskade_cmd_get_total"], "counter");
    assert_eq!(value("caskade_cmd_get_total"), 5.0);
    assert_eq!(value("caskade_cmd_set_total"), 3.0);
    assert_eq!(value("caskade_get_hits_total"), 3.0);
    assert_eq!(value("caskade_get_misses_total"), 2.0);
    assert_eq!(value("caskade_delete_hits_total"), 1.0);
    assert_eq!(types["caskade_curr_items"], "gauge");
    assert_eq!(value("caskade_curr_items"), 3.0);
    assert_eq!(value("caskade_threads"), 2.0);
    assert!(value("caskade_bytes_read_total") > 0.0);
    assert_eq!(value("caskade_rejected_connections_total"), 0.0);

    // The latency histograms: buckets that only grow, ending at the count.
    assert_eq!(types["caskade_request_duration_seconds"], "histogram");
    for (op, count) in [("get", 5.0), ("set", 3.0), ("delete", 2.0), ("incr_decr", 2.0), ("touch", 1.0), ("other", other)] {
        let hist = scrape
            .samples
            .iter()
            .find(|s| s.metric == "caskade_request_duration_seconds" && s.labels.get("op") == Some(op))
            .and_then(|s| match &s.value {
                prometheus_parse::Value::Histogram(b) => Some(b.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no histogram for op {op} in\n{text}"));
        assert!(hist.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count), "{op}: {hist:?}");
        let last = hist.last().unwrap();
        assert!(last.less_than.is_infinite());
        assert_eq!(last.count, count, "{op}");
    }
    let count_of = |op: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("caskade_request_duration_seconds_count{{op=\"{op}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(count_of("get"), Some(5.0));

    promtool_check(&text);
}

/// `promtool check metrics` (Debian's prometheus package) where it is installed: the
/// strictest reading of the format there is, names and units included.
fn promtool_check(text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool is not installed: only the Rust parser checked /metrics");
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics:\n{said}\n{text}");
    assert!(said.trim().is_empty(), "promtool has remarks:\n{said}");
}

/// Sends raw bytes to the admin port and returns the status line.
fn raw(server: &Server, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(server.admin()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    // Up to the end of the status line: the server may keep the connection open.
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    while !out.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).lines().next().unwrap_or("").to_string()
}

#[test]
fn health_not_found_and_bad_requests_leave_the_data_path_alone() {
    let server = Server::start_caskade(&["-t", "2"], &[]);
    let mut c = Wire::connect(server.addr());
    c.assert_serves(b"before");
    assert_eq!(server.http_get("/health"), (200, "serving\n".to_string()));
    assert_eq!(server.http_get("/nope").0, 404);
    assert_eq!(server.http_get("/").0, 404);
    assert_eq!(server.http_get("/stats?pretty=1").0, 200);
    assert!(raw(&server, b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").contains("405"));
    assert!(raw(&server, b"GARBAGE\r\n\r\n").contains("400"), "a malformed request gets 400");
    assert!(raw(&server, b"GET /health HTTP/9.9\r\n\r\n").starts_with("HTTP/1.1 "), "any answer, no crash");
    // The data path saw none of it.
    c.assert_serves(b"after");
    c.send(&wire::noop(7));
    assert_eq!(c.recv().status, Status::NoError);
    let (_, body) = server.http_get("/stats");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["stats"]["protocol_errors"], 0);
}

#[test]
fn admin_off_and_port_in_use() {
    let server = Server::start_caskade(&["--admin", "off"], &[]);
    let mut c = Wire::connect(server.addr());
    c.assert_serves(b"no-admin");
    drop(server);

    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caskade"))
        .args(["-p", "0", "--in-memory", "--admin", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin: cannot listen"), "{err}");
}

/// One sample's value in a scrape, by metric name (and no labels).
fn sample(scrape: &prometheus_parse::Scrape, name: &str) -> prometheus_parse::Value {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .map(|s| s.value.clone())
        .unwrap_or_else(|| panic!("no {name} in the scrape"))
}

fn number(v: prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        other => panic!("not a number: {other:?}"),
    }
}

#[test]
fn recovery_figures_show_a_cut_torn_tail_and_a_removed_leftover() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["-t", "1", "--data-dir", data.to_str().unwrap(), "--fsync", "always"];
    let server = Server::start_caskade(&args, &[]);
    let mut c = Wire::connect(server.addr());
    for i in 0..100 {
        c.send(&wire::set(format!("k{i}").as_bytes(), b"value", i));
        assert_eq!(c.recv().status, Status::NoError);
    }
    // A fresh node recovered nothing.
    let (_, body) = server.http_get("/stats");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((doc["stats"]["recovery_records"].as_u64(), doc["stats"]["recovery_bytes_cut"].as_u64()), (Some(0), Some(0)));
    // A crash: no hint for the active segment, so the next start scans it.
    server.signal(libc::SIGKILL);
    drop(server);

    let shard = data.join("shard-000");
    let mut logs: Vec<_> = std::fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let newest = logs.last().expect("a segment");
    let mut f = std::fs::OpenOptions::new().append(true).open(newest).unwrap();
    f.write_all(&[0xab; 100]).unwrap();
    drop(f);
    std::fs::write(shard.join("seg-00000099-000.log.tmp"), b"an interrupted write").unwrap();

    let server = Server::start_caskade(&args, &[]);
    let (_, body) = server.http_get("/stats");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stat = |k: &str| doc["stats"][k].as_u64().unwrap_or_else(|| panic!("stats.{k} in {body}"));
    assert_eq!(stat("recovery_bytes_cut"), 100);
    assert_eq!(stat("recovery_files_removed"), 1);
    assert_eq!(stat("recovery_records"), 100);
    assert_eq!(stat("recovery_corrupt_records"), 0);
    assert_eq!((stat("recovery_segments"), stat("recovery_segments_from_hints")), (1, 0));
    assert!(doc["stats"]["recovery_seconds"].as_f64().is_some_and(|s| (0.0..60.0).contains(&s)), "{body}");

    let (_, text) = server.http_get("/metrics");
    let scrape = parse_metrics(&text);
    assert_eq!(number(sample(&scrape, "caskade_recovery_bytes_cut")), 100.0);
    assert_eq!(number(sample(&scrape, "caskade_recovery_files_removed")), 1.0);
    assert_eq!(number(sample(&scrape, "caskade_recovery_records")), 100.0);
    assert!(text.contains("# TYPE caskade_recovery_seconds gauge"), "{text}");
    assert!(scrape.docs.contains_key("caskade_recovery_bytes_cut"));
    promtool_check(&text);
    Wire::connect(server.addr()).assert_serves(b"k0");
}

#[test]
fn fsync_durations_are_a_histogram_under_always_and_everysec() {
    for policy in ["always", "everysec"] {
        let server = Server::start_caskade(&["-t", "2", "--fsync", policy], &[]);
        let mut c = Wire::connect(server.addr());
        for i in 0..50 {
            c.send(&wire::set(format!("k{i}").as_bytes(), b"value", i));
            assert_eq!(c.recv().status, Status::NoError);
        }
        // Every fsync counted is in the histogram (the background syncer's included, which
        // the counters see a turn later).
        let read = || {
            let (_, body) = server.http_get("/stats");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        };
        server.wait_for("fsync_us.count == fsyncs > 0", Duration::from_secs(10), || {
            let doc = read();
            let n = doc["fsync_us"]["count"].as_u64().unwrap();
            n > 0 && Some(n) == doc["stats"]["fsyncs"].as_u64()
        });
        let doc = read();
        let f = &doc["fsync_us"];
        let p = |k: &str| f[k].as_u64().unwrap();
        if policy == "always" {
            assert!(p("count") >= 50, "{policy}: one fsync per turn with a write at least: {f}");
        }
        assert!(p("p50") >= 1 && p("p50") <= p("p99") && p("p99") <= p("max"), "{policy}: {f}");

        let (_, text) = server.http_get("/metrics");
        let scrape = parse_metrics(&text);
        let fsyncs = number(sample(&scrape, "caskade_fsyncs_total"));
        let prometheus_parse::Value::Histogram(buckets) = sample(&scrape, "caskade_fsync_duration_seconds") else {
            panic!("caskade_fsync_duration_seconds is not a histogram:\n{text}")
        };
        assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count), "{buckets:?}");
        let last = buckets.last().unwrap();
        assert!(last.less_than.is_infinite());
        assert!(last.count > 0.0 && last.count == fsyncs, "{policy}: {} in the histogram, {fsyncs} fsyncs", last.count);
        promtool_check(&text);
        assert_eq!(server.stop().code(), Some(0));
    }
}
