//! The command line, memcached-style, and the settings it yields; `load.rs` adds the
//! config file under it.

mod load;

pub use load::{AdminAddr, LoadError};

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use clap::{ArgAction, Parser};

use crate::storage::disk::merge::MergePolicy;
use crate::storage::disk::Fsync;
use crate::storage::Mode;

/// Largest `-I` accepted (memcached's own ceiling).
pub const MAX_ITEM_SIZE_CEILING: usize = 1024 * 1024 * 1024;
/// Smallest `-I` accepted (memcached's own floor).
pub const MAX_ITEM_SIZE_FLOOR: usize = 1024;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "caskade",
    version,
    about = "A memcached-compatible cache-store (binary and text protocols), one event loop per core",
    disable_help_flag = false
)]
pub struct Config {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,

    /// Address to listen on (IPv4 or IPv6), or a host name: every address it resolves to.
    #[arg(short = 'l', long = "listen", default_value = "127.0.0.1")]
    pub listen: ListenHost,

    /// Event-loop threads, one shard each [default: number of CPUs].
    #[arg(short = 't', long = "threads", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,

    /// Item memory limit in MiB; least recently used items are evicted past it.
    #[arg(short = 'm', long = "memory-limit", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub memory_limit_mib: u64,

    /// Maximum simultaneous client connections; more are refused and counted.
    #[arg(short = 'c', long = "max-connections", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Largest value accepted, in bytes, with an optional k or m suffix (1k..=1024m).
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_size)]
    pub max_item_size: usize,

    /// Allow the text protocol's `shutdown` command to stop the server (memcached's -A).
    #[arg(short = 'A', long = "enable-shutdown")]
    pub enable_shutdown: bool,

    /// More logging: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,

    /// Directory of the data files (created if missing; locked while the server runs).
    #[arg(long = "data-dir", default_value = "./caskade-data")]
    pub data_dir: PathBuf,

    /// Keep nothing on disk (memcached's behaviour); --data-dir is ignored.
    #[arg(long = "in-memory")]
    pub in_memory: bool,

    /// When writes are made durable: always (before the reply; one fsync per event-loop turn),
    /// everysec (within about a second), never (when the OS writes back).
    #[arg(long = "fsync", default_value = "everysec")]
    pub fsync: Fsync,

    /// store: never drop data (values beyond -m are served from disk; writes are refused when
    /// the keys alone no longer fit). cache: evict least recently used items.
    #[arg(long = "mode", default_value = "store")]
    pub mode: Mode,

    /// Size at which the active segment is closed and a new one started (k/m/g suffixes).
    #[arg(long = "segment-size", default_value = "64m", value_parser = parse_segment_size)]
    pub segment_size: u64,

    /// Values at least this long are zstd-compressed on disk when that saves space (0 = off).
    #[arg(long = "compress-min", default_value = "4k", value_parser = parse_bytes)]
    pub compress_min: usize,

    /// A closed segment joins a merge when at least this fraction of it is dead (0..=1).
    /// SIGHUP applies a new value.
    #[arg(long = "merge-dead-fraction", default_value = "0.5", value_parser = parse_fraction)]
    pub merge_dead_fraction: f64,

    /// A merge starts only when its segments hold at least this many dead bytes (k/m/g
    /// suffixes; at most 4g). SIGHUP applies a new value.
    #[arg(long = "merge-min-dead", default_value = "16m", value_parser = parse_merge_min_dead)]
    pub merge_min_dead: u64,

    /// A merge takes segments holding at most this many live bytes in all (1m..=2g; k/m/g
    /// suffixes). SIGHUP applies a new value.
    #[arg(long = "merge-max-live", default_value = "128m", value_parser = parse_merge_max_live)]
    pub merge_max_live: u64,

    /// Admin HTTP server (GET /stats, /metrics, /health, /dump) on ADDR:PORT, or off.
    #[arg(long = "admin", default_value = "127.0.0.1:11212")]
    pub admin: AdminAddr,

    /// Read settings from this TOML file (keys are the long flag names); flags given here win.
    /// SIGHUP reads it again.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log level: off, error, warn, info, debug, trace [default: info, or as -v says].
    /// RUST_LOG overrides.
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<log::LevelFilter>,

    /// The cluster file (the same on every node); with it this process is one node of a
    /// cluster, named by --node. Its entry for this node gives -l/-p, --admin and the peer
    /// address, unless the flags say otherwise.
    #[arg(long = "cluster", value_name = "FILE", requires = "node")]
    pub cluster: Option<PathBuf>,

    /// This node's id in the cluster file.
    #[arg(long = "node", value_name = "ID", requires = "cluster")]
    pub node: Option<String>,

    /// Listen for peers on ADDR:PORT instead of this node's `peer` address in the cluster
    /// file (which the other nodes still dial, and which stays in the map): for a proxy in
    /// front of the peer port, as the chaos harness (`tools/chaos`) puts there.
    #[arg(long = "peer-listen", value_name = "ADDR:PORT", requires = "cluster")]
    pub peer_listen: Option<std::net::SocketAddr>,

    /// The cluster file, read at start (filled in by `Config::load`).
    #[arg(skip)]
    pub cluster_file: Option<crate::cluster::config::ClusterFile>,

    /// Every flag by its long name with the value in force (filled in by `Config::load`).
    #[arg(skip)]
    pub settings: Vec<(String, String)>,
}

impl Config {
    pub fn threads(&self) -> usize {
        self.threads
            .map(usize::from)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub fn memory_limit_bytes(&self) -> usize {
        (self.memory_limit_mib as usize).saturating_mul(1024 * 1024)
    }

    /// When segments are merged: `--merge-dead-fraction`, `--merge-min-dead`,
    /// `--merge-max-live` (the step size is the default's).
    pub fn merge_policy(&self) -> MergePolicy {
        MergePolicy {
            dead_fraction: self.merge_dead_fraction,
            min_dead_bytes: self.merge_min_dead,
            max_live_bytes: self.merge_max_live,
            ..MergePolicy::default()
        }
    }

    /// Checks that need more than one flag.
    pub fn validate(&self) -> Result<(), String> {
        if !self.in_memory && (self.max_item_size as u64 + 1024) > self.segment_size {
            return Err(format!(
                "--segment-size {} cannot hold an item of -I {} bytes",
                self.segment_size, self.max_item_size
            ));
        }
        if self.max_item_size > self.memory_limit_bytes() {
            return Err(format!(
                "-I {} is larger than -m {} MiB: no item of that size could ever be stored",
                self.max_item_size, self.memory_limit_mib
            ));
        }
        Ok(())
    }
}

/// `-l`: an IP address, or a host name resolved when the server starts (as memcached does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenHost {
    Ip(IpAddr),
    Name(String),
}

impl FromStr for ListenHost {
    type Err = String;
    fn from_str(s: &str) -> Result<ListenHost, String> {
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(ListenHost::Ip(ip));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if s.len() <= 253 && s.trim_end_matches('.').split('.').all(label_ok) {
            return Ok(ListenHost::Name(s.to_string()));
        }
        Err(format!("'{s}' is neither an IP address nor a host name"))
    }
}

impl fmt::Display for ListenHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenHost::Ip(ip) => write!(f, "{ip}"),
            ListenHost::Name(name) => f.write_str(name),
        }
    }
}

impl ListenHost {
    /// The addresses to listen on: the address itself, or every address the name resolves
    /// to (duplicates removed, in the resolver's order).
    pub fn resolve(&self, port: u16) -> io::Result<Vec<SocketAddr>> {
        let name = match self {
            ListenHost::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
            ListenHost::Name(name) => name,
        };
        let found = (name.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("-l {name}: cannot resolve this host name: {e}")))?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in found {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("-l {name}: the host name resolves to no address")));
        }
        Ok(addrs)
    }
}

/// `1048576`, `512k`, `1m` (case-insensitive); within memcached's bounds.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1024),
        Some(b'm') => (&lower[..lower.len() - 1], 1024 * 1024),
        _ => (&lower[..], 1),
    };
    let n: usize = digits.parse().map_err(|_| format!("'{s}' is not a size (try 1048576, 512k or 1m)"))?;
    let bytes = n.checked_mul(unit).ok_or_else(|| format!("'{s}' is too large"))?;
    if !(MAX_ITEM_SIZE_FLOOR..=MAX_ITEM_SIZE_CEILING).contains(&bytes) {
        return Err(format!("'{s}' must be between 1k and 1024m"));
    }
    Ok(bytes)
}

/// `0`, `4096`, `4k`, `64m`, `1g`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1usize << 10),
        Some(b'm') => (&lower[..lower.len() - 1], 1 << 20),
        Some(b'g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (&lower[..], 1),
    };
    let n: usize = digits.parse().map_err(|_| format!("'{s}' is not a size (try 4096, 4k, 64m or 1g)"))?;
    n.checked_mul(unit).ok_or_else(|| format!("'{s}' is too large"))
}

/// A segment holds at least one largest record and at most 4 GiB (offsets are 32-bit).
fn parse_segment_size(s: &str) -> Result<u64, String> {
    let n = parse_bytes(s)? as u64;
    if !(1 << 16..=4 << 30).contains(&n) {
        return Err(format!("'{s}' must be between 64k and 4g"));
    }
    Ok(n)
}

/// A fraction, `0` to `1` (`0.5`, `1`).
fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number from 0 to 1 (such as 0.5)"))?;
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("'{s}' must be from 0 to 1"));
    }
    Ok(f)
}

/// Dead bytes: `0` up to 4 GiB.
fn parse_merge_min_dead(s: &str) -> Result<u64, String> {
    let n = parse_bytes(s)? as u64;
    if n > 4 << 30 {
        return Err(format!("'{s}' must be at most 4g"));
    }
    Ok(n)
}

/// Live bytes a merge output may hold: its offsets are 32-bit, so at most 2 GiB (one more
/// input segment may come on top of it).
fn parse_merge_max_live(s: &str) -> Result<u64, String> {
    let n = parse_bytes(s)? as u64;
    if !(1 << 20..=2 << 30).contains(&n) {
        return Err(format!("'{s}' must be between 1m and 2g"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_flags() {
        let c = Config::try_parse_from(["caskade"]).unwrap();
        let p = c.merge_policy();
        let d = MergePolicy::default();
        assert_eq!((p.dead_fraction, p.min_dead_bytes, p.max_live_bytes), (d.dead_fraction, d.min_dead_bytes, d.max_live_bytes));
        let c = Config::try_parse_from(["caskade", "--merge-dead-fraction", "0.25", "--merge-min-dead", "512k", "--merge-max-live", "1g"])
            .unwrap();
        let p = c.merge_policy();
        assert_eq!((p.dead_fraction, p.min_dead_bytes, p.max_live_bytes), (0.25, 512 << 10, 1 << 30));
        for bad in [
            &["--merge-dead-fraction", "1.5"][..],
            &["--merge-dead-fraction", "-0.1"],
            &["--merge-dead-fraction", "half"],
            &["--merge-dead-fraction", "NaN"],
            &["--merge-min-dead", "5g"],
            &["--merge-min-dead", "lots"],
            &["--merge-max-live", "4k"],
            &["--merge-max-live", "3g"],
        ] {
            let args = std::iter::once("caskade").chain(bad.iter().copied());
            assert!(Config::try_parse_from(args).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn listen_hosts() {
        for ok in ["127.0.0.1", "::1", "[::1]", "0.0.0.0", "localhost", "cache-1.example.com", "a."] {
            assert!(ok.parse::<ListenHost>().is_ok(), "{ok} refused");
        }
        for bad in ["", "127.0.0.1:11211", "a b", "-", "a..b", "x/y"] {
            let err = bad.parse::<ListenHost>();
            assert!(err.is_err(), "{bad:?} accepted as {err:?}");
        }
        assert_eq!("[::1]".parse::<ListenHost>().unwrap().to_string(), "::1");
        let local = "localhost".parse::<ListenHost>().unwrap().resolve(7).unwrap();
        assert!(!local.is_empty() && local.iter().all(|a| a.ip().is_loopback() && a.port() == 7), "{local:?}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("1g").is_err());
        assert!(parse_size("10").is_err());
        assert!(parse_size("2048m").is_err());
    }

    #[test]
    fn defaults_are_memcached_s() {
        let c = Config::try_parse_from(["caskade"]).unwrap();
        assert_eq!(c.port, 11211);
        assert_eq!(c.listen.to_string(), "127.0.0.1");
        assert_eq!(c.listen.resolve(11211).unwrap(), vec!["127.0.0.1:11211".parse().unwrap()]);
        assert_eq!(c.memory_limit_mib, 1024);
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.max_item_size, 1 << 20);
        assert!(Config::try_parse_from(["caskade", "-t", "0"]).is_err());
        assert!(Config::try_parse_from(["caskade", "-p", "x"]).is_err());
        let c = Config::try_parse_from(["caskade", "-vv", "-I", "2m", "-m", "64", "-t", "2"]).unwrap();
        assert_eq!((c.verbose, c.max_item_size, c.threads()), (2, 2 << 20, 2));
        assert!(!c.enable_shutdown);
        assert!(Config::try_parse_from(["caskade", "-A"]).unwrap().enable_shutdown);
    }
}
