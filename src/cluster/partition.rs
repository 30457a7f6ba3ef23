//! Placement of keys: `partition = crc32c(key) mod PARTITIONS`, then a partition's core.
//!
//! CRC32C is stable across builds, machines and versions (unlike a randomly seeded hash),
//! so every node and every client-side tool computes the same partition for a key. The
//! partition count is fixed for the life of a cluster; with one node, partition `p` is
//! served by core `p mod cores`.

/// Partitions in a cluster (Couchbase's vBuckets use 1024 too).
pub const PARTITIONS: u16 = 1024;

pub fn partition_of(key: &[u8]) -> u16 {
    (crc32c::crc32c(key) % PARTITIONS as u32) as u16
}

/// A set of partitions, as a flush record's key and a replication frame carry it: 1024 bits,
/// partition `p` at bit `p % 8` of byte `p / 8`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PartitionSet(pub [u8; PARTITIONS as usize / 8]);

impl PartitionSet {
    pub const LEN: usize = PARTITIONS as usize / 8;

    pub fn empty() -> PartitionSet {
        PartitionSet([0; Self::LEN])
    }

    pub fn from_bytes(b: &[u8]) -> Option<PartitionSet> {
        Some(PartitionSet(b.try_into().ok()?))
    }

    pub fn insert(&mut self, p: u16) {
        if let Some(b) = self.0.get_mut(p as usize / 8) {
            *b |= 1 << (p % 8);
        }
    }

    pub fn remove(&mut self, p: u16) {
        if let Some(b) = self.0.get_mut(p as usize / 8) {
            *b &= !(1 << (p % 8));
        }
    }

    pub fn contains(&self, p: u16) -> bool {
        self.0.get(p as usize / 8).is_some_and(|b| b & (1 << (p % 8)) != 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..PARTITIONS).filter(|&p| self.contains(p))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl std::fmt::Debug for PartitionSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The core of this node that owns `key`.
pub fn core_of(key: &[u8], cores: usize) -> usize {
    partition_of(key) as usize % cores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_sets_round_trip() {
        let mut s = PartitionSet::empty();
        for p in [0, 7, 8, 1023] {
            s.insert(p);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 7, 8, 1023]);
        assert_eq!(PartitionSet::from_bytes(&s.0), Some(s));
        assert!(PartitionSet::from_bytes(&[0; 3]).is_none());
        assert!(!s.contains(1) && !s.contains(5000));
        s.remove(7);
        assert!(!s.contains(7));
    }

    #[test]
    fn stable_documented_values() {
        // crc32c("123456789") is the standard check value 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(partition_of(b"123456789"), (0xE306_9283u32 % 1024) as u16);
        assert_eq!(core_of(b"123456789", 1), 0);
    }

    #[test]
    fn spreads_keys_over_cores() {
        let mut per_core = [0usize; 4];
        for i in 0..10_000 {
            per_core[core_of(format!("key:{i:08}").as_bytes(), 4)] += 1;
        }
        for n in per_core {
            assert!((2_000..3_000).contains(&n), "{per_core:?}");
        }
    }
}
