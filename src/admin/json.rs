//! `GET /stats`: one JSON object.
//!
//! ```text
//! { "version": "0.1.0", "phase": "serving", "uptime_s": 12,
//!   "stats":    { every STAT of the general group, numbers as numbers: "cmd_get": 10, … },
//!   "settings": { every flag by its long name: "memory-limit": "1024", … },
//!   "latency_us": { "get": { "count": 10, "mean": 41.5, "p50": 38, "p90": 60, "p99": 95,
//!                            "p99_9": 120, "max": 130 }, "set": {…}, … },
//!   "fsync_us": { "count": 4, "mean": 812.0, "p50": …, "p90": …, "p99": …, "p99_9": …, "max": … } }
//! ```
//!
//! `fsync_us`: how long the logs' fsyncs took, every shard's together (the same fsyncs as
//! the `fsyncs` counter).
//!
//! ```text
//! ```

use serde_json::{json, Map, Value};

use super::CORE_TIMEOUT;
use crate::server::{Handle, Phase};
use crate::stats::latency::{Op, Summary};

fn summary(s: Summary) -> Value {
    json!({
        "count": s.count,
        "mean": (s.mean * 10.0).round() / 10.0,
        "p50": s.p50,
        "p90": s.p90,
        "p99": s.p99,
        "p99_9": s.p999,
        "max": s.max,
    })
}

/// `stats cluster` as an object (`null` for a single node): numbers as numbers.
fn cluster(handle: &Handle) -> Value {
    let Some(c) = handle.node.cluster.as_deref() else { return Value::Null };
    let mut out = Map::new();
    for (name, value) in c.stats() {
        let v = value.parse::<u64>().map(Value::from).unwrap_or(Value::from(value));
        out.insert(name, v);
    }
    Value::Object(out)
}

pub fn stats(handle: &Handle, phase: Phase) -> String {
    // The histograms first: each core answers between two turns, so the counters read after
    // include everything the turns before had answered.
    let latencies = handle.latencies(CORE_TIMEOUT);
    let mut stats = Map::new();
    for (name, value) in handle.general_stats() {
        let v = if let Ok(n) = value.parse::<u64>() {
            Value::from(n)
        } else if let Ok(f) = value.parse::<f64>() {
            Value::from(f)
        } else {
            Value::from(value)
        };
        stats.insert(name.to_string(), v);
    }
    let settings: Map<String, Value> =
        handle.config().settings().iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
    let mut latency = Map::new();
    for op in Op::ALL {
        latency.insert(op.name().to_string(), summary(latencies.summary(op)));
    }
    let doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "phase": phase.name(),
        "uptime_s": handle.node.stats.started.elapsed().as_secs(),
        "stats": stats,
        "settings": settings,
        "latency_us": latency,
        "fsync_us": summary(latencies.fsync.summary()),
        "cluster": cluster(handle),
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_string());
    text.push('\n');
    text
}
