//! What a mutation changed: the fact the shard states once and the replication stream, the
//! reply gate and the stats read. No I/O.
//!
//! A shard that records changes (`Shard::record_changes`) appends one [`Change`] per
//! mutation that happened, with its partition's seqno, into a per-turn [`Changes`] buffer the
//! core drains after the turn's commit. A refused mutation records nothing and takes no
//! seqno, so each partition's seqnos are gap-free.

use std::ops::Range;

pub use crate::cluster::PartitionSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The key now holds this value (set, add, replace, append, prepend, incr, decr, touch).
    Put,
    Delete,
    /// Every item of the shard was dropped (a client's flush, now or at its delayed time).
    /// It has no seqno of its own: replication carries it as a marker, in order, placed
    /// after the seqno each partition had when it ran.
    Flush,
}

/// One change; `key` and `value` are ranges of the buffer's arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub partition: u16,
    /// The partition's seqno of this change (0 for a flush).
    pub seqno: u64,
    pub cas: u64,
    pub flags: u32,
    /// Absolute expiry (0: none).
    pub expiry: u32,
    pub key: Range<u32>,
    pub value: Range<u32>,
}

/// The changes of one turn.
#[derive(Default)]
pub struct Changes {
    pub arena: Vec<u8>,
    pub items: Vec<Change>,
}

impl Changes {
    #[allow(clippy::too_many_arguments)]
    pub fn push(&mut self, kind: ChangeKind, partition: u16, seqno: u64, cas: u64, flags: u32, expiry: u32, key: &[u8], value: &[u8]) {
        let k = self.arena.len() as u32;
        self.arena.extend_from_slice(key);
        let v = self.arena.len() as u32;
        self.arena.extend_from_slice(value);
        let end = self.arena.len() as u32;
        self.items.push(Change { kind, partition, seqno, cas, flags, expiry, key: k..v, value: v..end });
    }

    pub fn key(&self, c: &Change) -> &[u8] {
        &self.arena[c.key.start as usize..c.key.end as usize]
    }

    pub fn value(&self, c: &Change) -> &[u8] {
        &self.arena[c.value.start as usize..c.value.end as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.arena.clear();
    }
}

/// What a flush record's `flags` field says it is (the key holds a [`PartitionSet`] for the
/// scoped kinds). See `protocol-spec/storage-format.md`.
pub mod flush_scope {
    /// Every item of the shard (a client's flush; `expiry` may delay it).
    pub const SHARD: u32 = 0;
    /// The items of the partitions in the key (a replicated flush on a backup).
    pub const PARTITIONS: u32 = 1;
    /// The items of the partitions in the key, whose copy restarts from nothing: a backup's
    /// full resync began. Until [`SNAPSHOT_END`] the copy is incomplete.
    pub const SNAPSHOT_BEGIN: u32 = 2;
    /// The full resync or backfill of `meta.partition` ended at `meta.seqno` (key empty).
    pub const SNAPSHOT_END: u32 = 3;
    /// A backfill of the partitions in the key began: their items stay, and the copies are
    /// incomplete until each one's [`SNAPSHOT_END`].
    pub const BACKFILL_BEGIN: u32 = 4;
}

#[cfg(test)]
mod tests {
    use super::flush_scope;

    #[test]
    fn flush_scopes_follow_the_spec_table() {
        // protocol-spec/storage-format.md, "Flush records": the flags column, in order.
        let spec = include_str!("../../protocol-spec/storage-format.md");
        let section = spec.split("## Flush records").nth(1).expect("the section");
        let flags: Vec<u32> = section
            .lines()
            .skip_while(|l| !l.starts_with("| flags"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split('|').next().unwrap().trim().parse().expect("a number"))
            .collect();
        use flush_scope::*;
        assert_eq!(flags, vec![SHARD, PARTITIONS, SNAPSHOT_BEGIN, SNAPSHOT_END, BACKFILL_BEGIN]);
    }
}
