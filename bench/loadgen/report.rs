//! The results of a run: a text report for people, one JSON line for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::args::Args;
use crate::worker::Counters;

pub struct Report {
    pub counters: Counters,
    pub hist: Histogram<u64>,
    pub elapsed: Duration,
    /// CPU (user + system) this process used during the measured run.
    pub cpu: Duration,
    pub prefill: Option<Prefill>,
    pub connections: usize,
}

pub struct Prefill {
    pub keys: u64,
    pub elapsed: Duration,
    pub counters: Counters,
}

impl Report {
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.counters.completed() as f64 / secs
        } else {
            0.0
        }
    }

    /// Latency at quantile `q`, in microseconds.
    pub fn us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn cpu_us_per_request(&self) -> f64 {
        match self.counters.completed() {
            0 => 0.0,
            n => self.cpu.as_secs_f64() * 1e6 / n as f64,
        }
    }

    pub fn text(&self, args: &Args) -> String {
        let mut out = String::new();
        let c = &self.counters;
        let mix = match args.ycsb() {
            None => format!("set:get {}", args.set_ratio),
            Some(w) => format!("{}  {:?}", args.workload, w.distribution).to_lowercase(),
        };
        let _ = writeln!(
            out,
            "server {}  {}  connections {} ({} open)  threads {}  pipeline {}  {}  keys {}  value {} B",
            args.server,
            args.protocol,
            args.connections,
            self.connections,
            args.threads(),
            args.pipeline,
            mix,
            args.key_space(),
            args.value_size()
        );
        if let Some(p) = &self.prefill {
            let _ = writeln!(
                out,
                "prefill    {} keys in {:.2} s ({} errors)",
                p.keys,
                p.elapsed.as_secs_f64(),
                p.counters.errors()
            );
        }
        let _ = writeln!(
            out,
            "requests   {} in {:.2} s = {:.0} ops/s",
            c.completed(),
            self.elapsed.as_secs_f64(),
            self.ops_per_sec()
        );
        let _ = writeln!(
            out,
            "gets       {} (hits {}, misses {})  sets {}",
            c.gets, c.hits, c.misses, c.sets
        );
        let _ = writeln!(
            out,
            "errors     {} (status {}, protocol {}, closed {}, lost {}, timeouts {}, connect {})",
            c.errors(),
            c.status_errors,
            c.protocol_errors,
            c.closed,
            c.lost,
            c.timeouts,
            c.connect_errors
        );
        let _ = writeln!(
            out,
            "latency us p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.hist.max() as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "loadgen    cpu {:.3} s = {:.3} us/request",
            self.cpu.as_secs_f64(),
            self.cpu_us_per_request()
        );
        out
    }

    pub fn json(&self, args: &Args) -> String {
        let c = &self.counters;
        let prefill = self.prefill.as_ref().map(|p| {
            json!({
                "keys": p.keys,
                "elapsed_s": p.elapsed.as_secs_f64(),
                "errors": p.counters.errors(),
            })
        });
        let line = json!({
            "server": args.server,
            "connections": args.connections,
            "connections_open": self.connections,
            "threads": args.threads(),
            "pipeline": args.pipeline,
            "protocol": args.protocol,
            "set_ratio": args.set_ratio.to_string(),
            "workload": args.workload.to_string(),
            "request_distribution": args.ycsb().map(|w| format!("{:?}", w.distribution).to_lowercase()),
            "keys": args.key_space(),
            "value_size": args.value_size(),
            "requests": c.completed(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops_per_sec": self.ops_per_sec(),
            "gets": c.gets,
            "hits": c.hits,
            "misses": c.misses,
            "sets": c.sets,
            "errors": c.errors(),
            "status_errors": c.status_errors,
            "protocol_errors": c.protocol_errors,
            "closed": c.closed,
            "lost": c.lost,
            "timeouts": c.timeouts,
            "connect_errors": c.connect_errors,
            "p50_us": self.us(0.5),
            "p99_us": self.us(0.99),
            "p999_us": self.us(0.999),
            "max_us": self.hist.max() as f64 / 1000.0,
            "loadgen_cpu_s": self.cpu.as_secs_f64(),
            "loadgen_cpu_us_per_req": self.cpu_us_per_request(),
            "prefill": prefill,
        });
        format!("{line}\n")
    }
}
