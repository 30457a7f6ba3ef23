//! The command line, memcached-style, and the settings it yields.

use std::net::IpAddr;

use clap::{ArgAction, Parser};

/// Largest `-I` accepted (memcached's own ceiling).
pub const MAX_ITEM_SIZE_CEILING: usize = 1024 * 1024 * 1024;
/// Smallest `-I` accepted (memcached's own floor).
pub const MAX_ITEM_SIZE_FLOOR: usize = 1024;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "caskade",
    version,
    about = "A memcached-compatible cache-store (binary protocol), one event loop per core",
    disable_help_flag = false
)]
pub struct Config {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,

    /// Address to listen on (IPv4 or IPv6).
    #[arg(short = 'l', long = "listen", default_value = "127.0.0.1")]
    pub listen: IpAddr,

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

    /// More logging: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
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

    /// Checks that need more than one flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_item_size > self.memory_limit_bytes() {
            return Err(format!(
                "-I {} is larger than -m {} MiB: no item of that size could ever be stored",
                self.max_item_size, self.memory_limit_mib
            ));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.memory_limit_mib, 1024);
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.max_item_size, 1 << 20);
        assert!(Config::try_parse_from(["caskade", "-t", "0"]).is_err());
        assert!(Config::try_parse_from(["caskade", "-p", "x"]).is_err());
        let c = Config::try_parse_from(["caskade", "-vv", "-I", "2m", "-m", "64", "-t", "2"]).unwrap();
        assert_eq!((c.verbose, c.max_item_size, c.threads()), (2, 2 << 20, 2));
    }
}
