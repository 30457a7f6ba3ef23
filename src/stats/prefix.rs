//! Per-prefix statistics, memcached's `stats detail on|off|dump`: for each key prefix (the
//! bytes before the first `:`, memcached's default `-D` delimiter) the gets, their hits, the
//! stores and the deletes. Keys without the delimiter are not counted, as memcached.
//!
//! Off by default. While off, a command costs one relaxed load. While on, each counted command
//! locks its core's table; the lock is contended only by a `stats detail dump` (or a reset)
//! reading it, so each core keeps its own table rather than memcached's one node-wide one.
//! A dump sums the cores' tables.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

use crate::storage::{Command, Outcome};

/// memcached's default prefix delimiter (`-D`).
pub const DELIMITER: u8 = b':';

/// The counts of one prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub get: u64,
    pub hit: u64,
    pub set: u64,
    pub del: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.get += o.get;
        self.hit += o.hit;
        self.set += o.set;
        self.del += o.del;
    }
}

/// One core's prefix table.
#[derive(Debug, Default)]
pub struct PrefixStats {
    on: AtomicBool,
    table: Mutex<HashMap<Vec<u8>, Counts>>,
}

impl PrefixStats {
    #[inline]
    pub fn enabled(&self) -> bool {
        self.on.load(Relaxed)
    }

    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Relaxed);
    }

    /// Counts a command as memcached's `stats_prefix_record_*` do: a get or GAT (hit or not),
    /// any store (stored or not), any delete (found or not). Other commands are not counted.
    pub fn record<B: AsRef<[u8]>, V>(&self, cmd: &Command<B>, outcome: &Outcome<V>) {
        let Some(key) = cmd.key() else { return };
        let Some(end) = key.iter().position(|&b| b == DELIMITER) else { return };
        let hit = matches!(outcome, Outcome::Value { .. });
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let counts = match table.get_mut(&key[..end]) {
            Some(c) => c,
            None => table.entry(key[..end].to_vec()).or_default(),
        };
        match cmd {
            Command::Get { .. } | Command::GetAndTouch { .. } => {
                counts.get += 1;
                counts.hit += u64::from(hit);
            }
            Command::Store { .. } => counts.set += 1,
            Command::Delete { .. } => counts.del += 1,
            _ => {}
        }
    }

    pub fn clear(&self) {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Adds this core's counts into `into`.
    pub fn add_to(&self, into: &mut HashMap<Vec<u8>, Counts>) {
        for (prefix, c) in self.table.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            into.entry(prefix.clone()).or_default().add(c);
        }
    }
}

/// `stats detail dump`: memcached's `PREFIX <prefix> get <n> hit <n> set <n> del <n>` lines,
/// sorted by prefix (memcached's order is its hash table's), then `END`.
pub fn dump<'a>(cores: impl Iterator<Item = &'a PrefixStats>, out: &mut Vec<u8>) {
    let mut all = HashMap::new();
    for core in cores {
        core.add_to(&mut all);
    }
    let mut all: Vec<_> = all.into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (prefix, c) in all {
        out.extend_from_slice(b"PREFIX ");
        out.extend_from_slice(&prefix);
        out.extend_from_slice(format!(" get {} hit {} set {} del {}\r\n", c.get, c.hit, c.set, c.del).as_bytes());
    }
    out.extend_from_slice(b"END\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoreMode;

    #[test]
    fn counts_as_memcached() {
        let p = PrefixStats::default();
        let hit: Outcome<&[u8]> = Outcome::Value { flags: 0, cas: 1, value: b"v" };
        let miss: Outcome<&[u8]> = Outcome::NotFound;
        p.record(&Command::Get { key: "a:1" }, &hit);
        p.record(&Command::Get { key: "a:2" }, &miss);
        p.record(&Command::Get { key: "nodelim" }, &hit);
        p.record(&Command::GetAndTouch { key: "a:1", exptime: 0 }, &miss);
        p.record(&Command::Touch { key: "a:1", exptime: 0 }, &hit);
        p.record(&Command::Store { mode: StoreMode::Add, key: ":z", value: "", flags: 0, exptime: 0, cas: 0 }, &miss);
        p.record(&Command::Delete { key: "a:x:y", cas: 0 }, &miss);
        let mut out = Vec::new();
        dump([&p, &PrefixStats::default()].into_iter(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PREFIX  get 0 hit 0 set 1 del 0\r\nPREFIX a get 3 hit 1 set 0 del 1\r\nEND\r\n"
        );
    }
}
