//! Command-line options.

use std::time::Duration;

use clap::Parser;

use crate::ycsb;

/// A load generator for servers that speak the memcached binary or text protocol.
///
/// A few threads each drive many non-blocking connections; every connection keeps
/// `--pipeline` requests in flight and sends each refill in one write. The run stops at
/// `--duration` or after `--requests`, whichever comes first.
#[derive(Parser, Debug, Clone)]
#[command(name = "caskade-loadgen", version)]
pub struct Args {
    /// Address of the server.
    #[arg(long, default_value = "127.0.0.1:11211")]
    pub server: String,

    /// Connections in total, spread over the threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,

    /// Threads, each with its own event loop (at most one per connection).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,

    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,

    /// SETs to GETs, as `S:G` (`1:10`, `0:1` GET only, `1:0` SET only).
    #[arg(long, default_value = "1:10", value_parser = parse_ratio)]
    pub set_ratio: Ratio,

    /// Size of the key space: keys are `key:00000000` up to `key:%08d` of N-1.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,

    /// Bytes in each SET's value.
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,

    /// Seconds to run; the run also ends at --requests, whichever comes first.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub duration: f64,

    /// Requests to complete; the run also ends at --duration, whichever comes first.
    #[arg(long)]
    pub requests: Option<u64>,

    /// SET every key of the key space once before the measured run (pipelined, not
    /// measured). With `--requests 0` this only fills the server.
    #[arg(long)]
    pub prefill: bool,

    /// Seconds the prefill may take at most.
    #[arg(long, default_value_t = 300.0, value_parser = parse_seconds)]
    pub prefill_timeout: f64,

    /// Requests in flight per connection during the prefill (default: max(--pipeline, 64)).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub prefill_pipeline: Option<u32>,

    /// Print one JSON line of results instead of the text report.
    #[arg(long)]
    pub json: bool,

    /// Protocol: `binary` (GET/SET frames) or `text` (`get`/`set` lines).
    #[arg(long, default_value = "binary", value_parser = ["binary", "text"])]
    pub protocol: String,

    /// Requests per second in all, spread evenly over the threads (default: as fast as
    /// the connections go). A latency is measured from when a request is sent.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Seed of the key and operation choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// `K/T`: send only keys that caskade `-t T` places on core K (`crc32c(key) % 1024 % T`),
    /// so that one connection's requests are all local or all cross-core.
    #[arg(long, value_parser = parse_only_core)]
    pub only_core: Option<(usize, usize)>,

    /// `mix` (random GETs and SETs by --set-ratio over --keys, uniform), or one of YCSB's
    /// core workloads `ycsb-a` .. `ycsb-f` (not `ycsb-e`: scans), which take their keys,
    /// mix and distribution from YCSB and their sizes from --record-count, --field-count
    /// and --field-length instead of --keys, --set-ratio and --value-size.
    #[arg(long, default_value = "mix", value_parser = parse_workload)]
    pub workload: Workload,

    /// YCSB: records loaded by --prefill (keys `user` + fnvhash64(0..N)), and the key space
    /// reads and updates draw from (YCSB's `recordcount`).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub record_count: u64,

    /// YCSB: fields per record (`fieldcount`); a record is one item of count x length bytes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub field_count: u64,

    /// YCSB: bytes per field (`fieldlength`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=64 << 20))]
    pub field_length: u64,

    /// YCSB: the request distribution instead of the workload's (`requestdistribution`).
    #[arg(long)]
    pub request_distribution: Option<ycsb::Distribution>,
}

/// What the measured run sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    Mix,
    Ycsb(ycsb::Workload),
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workload::Mix => write!(f, "mix"),
            Workload::Ycsb(w) => write!(f, "ycsb-{}", w.name),
        }
    }
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    match s {
        "mix" => Ok(Workload::Mix),
        _ if s.starts_with("ycsb-") => ycsb::Workload::core(s).map(Workload::Ycsb),
        _ => Err(format!("`{s}`: mix, or ycsb-a, ycsb-b, ycsb-c, ycsb-d, ycsb-f")),
    }
}

impl Args {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    pub fn prefill_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.prefill_timeout)
    }

    pub fn prefill_pipeline(&self) -> usize {
        self.prefill_pipeline.unwrap_or(self.pipeline.max(64)) as usize
    }

    /// Threads actually started: never more than connections.
    pub fn text(&self) -> bool {
        self.protocol == "text"
    }

    pub fn threads(&self) -> usize {
        self.threads.min(self.connections) as usize
    }

    /// The workload with --request-distribution applied.
    pub fn ycsb(&self) -> Option<ycsb::Workload> {
        match &self.workload {
            Workload::Mix => None,
            Workload::Ycsb(w) => {
                let mut w = w.clone();
                if let Some(d) = &self.request_distribution {
                    w.distribution = d.clone();
                }
                Some(w)
            }
        }
    }

    /// Keys the prefill writes and the run draws from: --keys, or YCSB's record count.
    pub fn key_space(&self) -> u64 {
        match self.workload {
            Workload::Mix => self.keys,
            Workload::Ycsb(_) => self.record_count,
        }
    }

    /// Bytes in each SET's value: --value-size, or a YCSB record's fields.
    pub fn value_size(&self) -> u64 {
        match self.workload {
            Workload::Mix => self.value_size as u64,
            Workload::Ycsb(_) => self.field_count.saturating_mul(self.field_length),
        }
    }

    /// Options that do not go together.
    pub fn check(&self) -> Result<(), String> {
        if matches!(self.workload, Workload::Ycsb(_)) && self.only_core.is_some() {
            return Err("--only-core works with --workload mix only".into());
        }
        if self.workload == Workload::Mix && self.request_distribution.is_some() {
            return Err("--request-distribution is for the ycsb-* workloads".into());
        }
        Ok(())
    }
}

/// SETs to GETs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub sets: u32,
    pub gets: u32,
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.sets, self.gets)
    }
}

fn parse_ratio(s: &str) -> Result<Ratio, String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not S:G"))?;
    let sets: u32 = a.trim().parse().map_err(|e| format!("`{a}`: {e}"))?;
    let gets: u32 = b.trim().parse().map_err(|e| format!("`{b}`: {e}"))?;
    if sets as u64 + gets as u64 == 0 {
        return Err("S:G needs at least one non-zero side".into());
    }
    if sets as u64 + gets as u64 > u32::MAX as u64 {
        return Err("S + G must fit in 32 bits".into());
    }
    Ok(Ratio { sets, gets })
}

fn parse_only_core(s: &str) -> Result<(usize, usize), String> {
    let (k, t) = s.split_once('/').ok_or_else(|| format!("`{s}` is not K/T"))?;
    let k: usize = k.trim().parse().map_err(|e| format!("`{k}`: {e}"))?;
    let t: usize = t.trim().parse().map_err(|e| format!("`{t}`: {e}"))?;
    if t == 0 || k >= t {
        return Err(format!("`{s}`: K must be below T"));
    }
    Ok((k, t))
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("`{s}`: {e}"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("`{s}`: seconds must be in (0, 86400]"));
    }
    Ok(v)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("'{s}' is not a positive number of requests per second")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios() {
        assert_eq!(parse_ratio("1:10"), Ok(Ratio { sets: 1, gets: 10 }));
        assert_eq!(parse_ratio("0:1"), Ok(Ratio { sets: 0, gets: 1 }));
        assert!(parse_ratio("0:0").is_err());
        assert!(parse_ratio("3").is_err());
        assert!(parse_ratio("a:1").is_err());
    }

    #[test]
    fn only_core() {
        assert_eq!(parse_only_core("1/2"), Ok((1, 2)));
        assert!(parse_only_core("2/2").is_err());
        assert!(parse_only_core("0/0").is_err());
        assert!(parse_only_core("1").is_err());
    }

    #[test]
    fn workloads() {
        assert_eq!(parse_workload("mix"), Ok(Workload::Mix));
        let a = parse_workload("ycsb-a").unwrap();
        assert_eq!(a.to_string(), "ycsb-a");
        let e = parse_workload("ycsb-e").unwrap_err();
        assert!(e.contains("scan"), "{e}");
        assert!(parse_workload("ycsb-z").is_err());
        assert!(parse_workload("a").is_err());

        let args = Args::parse_from(["loadgen", "--workload", "ycsb-d", "--record-count", "5000", "--field-count", "4"]);
        assert_eq!((args.key_space(), args.value_size()), (5000, 400));
        assert_eq!(args.ycsb().unwrap().distribution, ycsb::Distribution::Latest);
        let args = Args::parse_from(["loadgen", "--workload", "ycsb-d", "--request-distribution", "uniform"]);
        assert_eq!(args.ycsb().unwrap().distribution, ycsb::Distribution::Uniform);
        // YCSB's defaults: 1000 records of 10 fields of 100 bytes.
        let args = Args::parse_from(["loadgen", "--workload", "ycsb-a"]);
        assert_eq!((args.key_space(), args.value_size()), (1000, 1000));
        assert!(args.check().is_ok());
        assert!(Args::parse_from(["loadgen", "--workload", "ycsb-a", "--only-core", "0/2"]).check().is_err());
        assert!(Args::parse_from(["loadgen", "--request-distribution", "latest"]).check().is_err());
        let mix = Args::parse_from(["loadgen", "--keys", "7", "--value-size", "9"]);
        assert_eq!((mix.key_space(), mix.value_size()), (7, 9));
    }

    #[test]
    fn seconds_are_bounded() {
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(0.5));
    }
}
