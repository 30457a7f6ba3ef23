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

/// The core of this node that owns `key`.
pub fn core_of(key: &[u8], cores: usize) -> usize {
    partition_of(key) as usize % cores
}

#[cfg(test)]
mod tests {
    use super::*;

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
