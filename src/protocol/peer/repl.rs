//! Replication frames: a primary's core streams each partition's changes to the core of each
//! backup that holds the partition (`protocol-spec/peer-protocol.md`, Replication). No I/O.
//!
//! Two requests, on the same links as forwarded commands, answered in order:
//! - REPL_OPEN (0xD0): value = the [`PartitionSet`] the stream carries; the answer lists,
//!   for each, the last seqno the backup holds and whether its copy is whole.
//! - REPL_CHANGES (0xD1): value = records ([`Record`]) applied in order; the answer lists
//!   each named partition's last seqno once applied and committed by the backup's policy.
//!
//! A refusal (any status but OK) carries its reason as text; the primary closes the stream
//! and opens it again from what the backup holds.

use super::{write_frame, Fields, Frame, Op};
use crate::protocol::binary::{MAX_KEY_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};
use crate::storage::change::PartitionSet;

/// Bytes of a record before its key and value.
pub const RECORD_HEADER_LEN: usize = 33;

/// Statuses of replication answers.
pub mod status {
    pub const OK: u16 = 0x0000;
    /// The frame names a partition this node does not back up for the sender, or that this
    /// core does not hold.
    pub const NOT_BACKUP: u16 = 0x0020;
    /// A change whose seqno is not the next of its partition (a gap, a repeat, a reorder).
    pub const BAD_SEQNO: u16 = 0x0021;
    /// A frame or record that does not parse.
    pub const MALFORMED: u16 = 0x0022;
    /// The backup's disk refused the changes: none of this frame is acknowledged.
    pub const STORAGE_ERROR: u16 = 0x0084;
    /// The backup cannot apply now (out of memory): none of this frame is acknowledged.
    pub const TEMPORARY_FAILURE: u16 = 0x0086;
}

/// Record types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    Put = 1,
    Delete = 2,
    /// Drop every item of the partitions in the key (a [`PartitionSet`]): the primary's flush.
    Flush = 3,
    /// A full resync of the partitions in the key begins: drop their items; the copies are
    /// incomplete until each one's `SnapshotEnd`. With `flags` [`SNAPSHOT_BACKFILL`], a
    /// backfill: the items are kept, and only those that may have changed follow.
    SnapshotBegin = 4,
    /// A live item of a partition being resynced or backfilled (seqno 0).
    SnapshotItem = 5,
    /// The resync or backfill of `partition` is complete at `seqno`.
    SnapshotEnd = 6,
    /// A key of a partition being backfilled that no longer lives (seqno 0, no value).
    SnapshotDelete = 7,
    /// The whole copies of the partitions in the key follow the primary's branch `cas` from
    /// here on (sent when the primary accepts a copy from an earlier branch).
    Branch = 8,
}

/// `SnapshotBegin` flags: a backfill (keep the copy's items) rather than a full resync.
pub const SNAPSHOT_BACKFILL: u32 = 1;

impl RecordType {
    fn from_u8(b: u8) -> Option<RecordType> {
        use RecordType::*;
        [Put, Delete, Flush, SnapshotBegin, SnapshotItem, SnapshotEnd, SnapshotDelete, Branch].into_iter().find(|t| *t as u8 == b)
    }
}

/// One record of a REPL_CHANGES frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: RecordType,
    pub partition: u16,
    pub seqno: u64,
    pub cas: u64,
    pub flags: u32,
    pub expiry: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl Record<'_> {
    /// Appends the record to a frame's value being built.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.reserve(RECORD_HEADER_LEN + self.key.len() + self.value.len());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.partition.to_be_bytes());
        out.extend_from_slice(&self.seqno.to_be_bytes());
        out.extend_from_slice(&self.cas.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.expiry.to_be_bytes());
        out.extend_from_slice(&(self.key.len() as u16).to_be_bytes());
        out.extend_from_slice(&(self.value.len() as u32).to_be_bytes());
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.value);
    }

    pub fn len(&self) -> usize {
        RECORD_HEADER_LEN + self.key.len() + self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The records of a REPL_CHANGES value, in order; a malformed one ends the walk with `Err`.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(value: &'a [u8]) -> Records<'a> {
        Records { rest: value }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = parse_record(self.rest);
        match r {
            Ok((rec, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok(rec))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

fn parse_record(b: &[u8]) -> Result<(Record<'_>, usize), &'static str> {
    let (head, body) = b.split_at_checked(RECORD_HEADER_LEN).ok_or("a record cut short")?;
    let mut x = Fields::new(head);
    let kind = RecordType::from_u8(x.u8().ok_or("record type")?).ok_or("an unknown record type")?;
    let partition = x.u16().ok_or("partition")?;
    let seqno = x.u64().ok_or("seqno")?;
    let cas = x.u64().ok_or("cas")?;
    let flags = x.u32().ok_or("flags")?;
    let expiry = x.u32().ok_or("expiry")?;
    let key_len = x.u16().ok_or("key length")? as usize;
    let value_len = x.u32().ok_or("value length")? as usize;
    if body.len() < key_len.saturating_add(value_len) {
        return Err("a record cut short");
    }
    let (key, value) = (&body[..key_len], &body[key_len..key_len + value_len]);
    if partition >= crate::cluster::PARTITIONS {
        return Err("a partition out of range");
    }
    let ok = match kind {
        RecordType::Put | RecordType::SnapshotItem => (1..=MAX_KEY_LEN).contains(&key_len),
        RecordType::Delete | RecordType::SnapshotDelete => (1..=MAX_KEY_LEN).contains(&key_len) && value_len == 0,
        RecordType::Flush | RecordType::SnapshotBegin | RecordType::Branch => key_len == PartitionSet::LEN && value_len == 0,
        RecordType::SnapshotEnd => key_len == 0 && value_len == 0,
    };
    if !ok {
        return Err("key or value lengths wrong for the record type");
    }
    if kind == RecordType::SnapshotBegin && flags != 0 && flags != SNAPSHOT_BACKFILL {
        return Err("an unknown snapshot marker");
    }
    if matches!(kind, RecordType::Put | RecordType::Delete) && seqno == 0 {
        return Err("a change with seqno 0");
    }
    Ok((Record { kind, partition, seqno, cas, flags, expiry, key, value }, RECORD_HEADER_LEN + key_len + value_len))
}

pub fn write_open(out: &mut Vec<u8>, opaque: u32, set: &PartitionSet) {
    write_frame(out, REQUEST_MAGIC, Op::ReplOpen, 0, opaque, 0, &[], &[], &set.0);
}

/// REPL_CHANGES flag bits, in the request's vbucket field.
pub mod flags {
    /// The backup answers only once the changes are on its disk (fsynced).
    pub const PERSIST: u16 = 1;
}

/// A REPL_CHANGES request whose value (records) is `records`.
pub fn write_changes(out: &mut Vec<u8>, opaque: u32, persist: bool, records: &[u8]) {
    let flags = if persist { flags::PERSIST } else { 0 };
    write_frame(out, REQUEST_MAGIC, Op::ReplChanges, flags, opaque, 0, &[], &[], records);
}

/// A REPL_VERIFY request: the digests of `set`'s items live at `now` (unix seconds).
pub fn write_verify(out: &mut Vec<u8>, opaque: u32, set: &PartitionSet, now: u32) {
    let mut value = set.0.to_vec();
    value.extend_from_slice(&now.to_be_bytes());
    write_frame(out, REQUEST_MAGIC, Op::ReplVerify, 0, opaque, 0, &[], &[], &value);
}

/// A REPL_VERIFY request's set and time.
pub fn parse_verify(value: &[u8]) -> Option<(PartitionSet, u32)> {
    let (set, now) = value.split_at_checked(PartitionSet::LEN)?;
    Some((PartitionSet::from_bytes(set)?, u32::from_be_bytes(now.try_into().ok()?)))
}

/// One partition's digest: its seqno, an order-independent hash of its live items, and
/// their number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    pub partition: u16,
    pub seqno: u64,
    pub digest: u64,
    pub items: u32,
}

/// Bytes one digest takes in an answer.
pub const DIGEST_LEN: usize = 22;

pub fn write_digests(out: &mut Vec<u8>, opaque: u32, digests: &[Digest]) {
    let mut value = Vec::with_capacity(digests.len() * DIGEST_LEN);
    for d in digests {
        value.extend_from_slice(&d.partition.to_be_bytes());
        value.extend_from_slice(&d.seqno.to_be_bytes());
        value.extend_from_slice(&d.digest.to_be_bytes());
        value.extend_from_slice(&d.items.to_be_bytes());
    }
    write_frame(out, RESPONSE_MAGIC, Op::ReplVerify, status::OK, opaque, 0, &[], &[], &value);
}

pub fn parse_digests(value: &[u8]) -> Result<Vec<Digest>, &'static str> {
    if !value.len().is_multiple_of(DIGEST_LEN) {
        return Err("a digest list of the wrong length");
    }
    let mut out = Vec::with_capacity(value.len() / DIGEST_LEN);
    for chunk in value.chunks_exact(DIGEST_LEN) {
        let mut x = Fields::new(chunk);
        let partition = x.u16().ok_or("partition")?;
        let seqno = x.u64().ok_or("seqno")?;
        let digest = x.u64().ok_or("digest")?;
        let items = x.u32().ok_or("items")?;
        if partition >= crate::cluster::PARTITIONS {
            return Err("a partition out of range");
        }
        out.push(Digest { partition, seqno, digest, items });
    }
    Ok(out)
}

/// Where one partition's copy stands on a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub partition: u16,
    pub seqno: u64,
    /// The copy is whole (no full resync under way).
    pub whole: bool,
    /// The primary's branch the copy follows (`cluster::replication::history`; 0: none).
    pub branch: u64,
}

/// Bytes one position takes in an answer.
pub const POSITION_LEN: usize = 19;

/// An OK answer to REPL_OPEN or REPL_CHANGES listing positions.
pub fn write_positions(out: &mut Vec<u8>, op: Op, opaque: u32, positions: impl Iterator<Item = Position>) {
    let mut value = Vec::new();
    for p in positions {
        value.extend_from_slice(&p.partition.to_be_bytes());
        value.extend_from_slice(&p.seqno.to_be_bytes());
        value.push(p.whole as u8);
        value.extend_from_slice(&p.branch.to_be_bytes());
    }
    write_frame(out, RESPONSE_MAGIC, op, status::OK, opaque, 0, &[], &[], &value);
}

pub fn write_refusal(out: &mut Vec<u8>, op: Op, opaque: u32, code: u16, reason: &str) {
    write_frame(out, RESPONSE_MAGIC, op, code, opaque, 0, &[], &[], reason.as_bytes());
}

/// The positions an OK answer lists.
pub fn parse_positions(f: &Frame<'_>) -> Result<Vec<Position>, &'static str> {
    if !f.key.is_empty() || !f.extras.is_empty() {
        return Err("a positions answer with a key or extras");
    }
    parse_positions_value(f.value)
}

/// The positions in an OK answer's value.
pub fn parse_positions_value(value: &[u8]) -> Result<Vec<Position>, &'static str> {
    if !value.len().is_multiple_of(POSITION_LEN) {
        return Err("a positions list of the wrong length");
    }
    let mut out = Vec::with_capacity(value.len() / POSITION_LEN);
    for chunk in value.chunks_exact(POSITION_LEN) {
        let mut x = Fields::new(chunk);
        let partition = x.u16().ok_or("partition")?;
        let seqno = x.u64().ok_or("seqno")?;
        let whole = match x.u8().ok_or("state")? {
            0 => false,
            1 => true,
            _ => return Err("a state byte other than 0 or 1"),
        };
        let branch = x.u64().ok_or("branch")?;
        if partition >= crate::cluster::PARTITIONS {
            return Err("a partition out of range");
        }
        out.push(Position { partition, seqno, whole, branch });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_what_is_malformed() {
        let mut set = PartitionSet::empty();
        set.insert(3);
        let recs = [
            Record { kind: RecordType::Put, partition: 3, seqno: 9, cas: 77, flags: 5, expiry: 0, key: b"k", value: b"v" },
            Record { kind: RecordType::Delete, partition: 3, seqno: 10, cas: 0, flags: 0, expiry: 0, key: b"k", value: b"" },
            Record { kind: RecordType::Flush, partition: 0, seqno: 0, cas: 0, flags: 0, expiry: 0, key: &set.0, value: b"" },
            Record { kind: RecordType::SnapshotEnd, partition: 3, seqno: 10, cas: 0, flags: 0, expiry: 0, key: b"", value: b"" },
            Record { kind: RecordType::SnapshotDelete, partition: 3, seqno: 0, cas: 0, flags: 0, expiry: 0, key: b"k", value: b"" },
        ];
        let mut buf = Vec::new();
        for r in &recs {
            r.write(&mut buf);
        }
        let back: Vec<_> = Records::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, recs);
        // Every cut of the last record is refused, never a panic.
        for cut in 1..recs[3].len() {
            let all: Vec<_> = Records::new(&buf[..buf.len() - cut]).collect();
            assert!(all.last().unwrap().is_err(), "cut {cut}");
        }
        let mut bad = Vec::new();
        Record { kind: RecordType::Put, partition: 3, seqno: 0, cas: 0, flags: 0, expiry: 0, key: b"k", value: b"" }.write(&mut bad);
        assert!(Records::new(&bad).next().unwrap().is_err(), "seqno 0");
        bad[0] = 99;
        assert!(Records::new(&bad).next().unwrap().is_err(), "unknown type");
    }

    #[test]
    fn positions_round_trip() {
        let ps = vec![Position { partition: 1, seqno: 5, whole: true, branch: 0 }, Position { partition: 1023, seqno: 0, whole: false, branch: 0 }];
        let mut out = Vec::new();
        write_positions(&mut out, Op::ReplOpen, 7, ps.clone().into_iter());
        let (f, _) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(parse_positions(&f).unwrap(), ps);
    }
}
