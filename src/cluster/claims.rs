//! The split-brain audit: which node wrote as a partition's primary in which epoch.
//!
//! A shard writes as primary when it gives a change a fresh seqno (a backup's changes carry
//! their primary's). The first time it does so for a partition in an epoch (the map's
//! revision) it logs one line, at `debug` under the target [`TARGET`], before the change's
//! reply is even encoded:
//!
//! ```text
//! primary write: partition 17 epoch 1
//! ```
//!
//! Two nodes' logs with that line for one partition and one epoch mean two primaries took
//! writes at once: split brain. `caskade-chaos` runs its nodes with
//! `RUST_LOG=caskade::claims=debug` and checks exactly that ([`parse`] reads a line back).
//! The line is written on the first write, so it is in the log before any write it covers
//! is acknowledged, and a kill -9 cannot lose it (env_logger writes each line at once).
//! At most one line per partition per epoch per process: a few hundred when a node starts.

use super::partition::{PartitionSet, PARTITIONS};

/// The log target of the audit lines.
pub const TARGET: &str = "caskade::claims";

const PREFIX: &str = "primary write: partition ";

/// What one core has claimed in the current epoch.
#[derive(Clone, Copy)]
pub struct Claims {
    epoch: u64,
    seen: PartitionSet,
}

impl Claims {
    pub fn new(epoch: u64) -> Claims {
        Claims { epoch, seen: PartitionSet::empty() }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// This core wrote `p` as its primary: the first time in the epoch, logs the claim and
    /// returns true.
    pub fn note(&mut self, p: u16) -> bool {
        if p >= PARTITIONS || self.seen.contains(p) {
            return false;
        }
        self.seen.insert(p);
        log::debug!(target: TARGET, "{}", line(p, self.epoch));
        true
    }
}

/// The audit line for partition `p` in `epoch`.
pub fn line(p: u16, epoch: u64) -> String {
    format!("{PREFIX}{p} epoch {epoch}")
}

/// The (partition, epoch) of an audit line anywhere in a log line (after env_logger's
/// timestamp and target); `None` for any other line.
pub fn parse(log_line: &str) -> Option<(u16, u64)> {
    let rest = &log_line[log_line.find(PREFIX)? + PREFIX.len()..];
    let mut words = rest.split_whitespace();
    let p = words.next()?.parse::<u16>().ok().filter(|&p| p < PARTITIONS)?;
    let epoch = match (words.next(), words.next()) {
        (Some("epoch"), Some(e)) => e.parse().ok()?,
        _ => return None,
    };
    Some((p, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_partition_per_epoch() {
        let mut c = Claims::new(3);
        assert!(c.note(17));
        assert!(!c.note(17));
        assert!(c.note(18));
        assert!(!c.note(PARTITIONS));
        assert!(Claims::new(4).note(17));
    }

    #[test]
    fn a_line_parses_back_from_a_log_line() {
        let logged = format!("[2026-12-05T15:00:00Z DEBUG caskade::claims] {}", line(1023, 7));
        assert_eq!(parse(&logged), Some((1023, 7)));
        assert_eq!(parse("[.. INFO caskade] listening on 127.0.0.1:11211"), None);
        assert_eq!(parse("primary write: partition 1024 epoch 1"), None);
        assert_eq!(parse("primary write: partition 5 epoch"), None);
        assert_eq!(parse("primary write: partition x epoch 1"), None);
    }
}
