//! Hint files: the keys of a closed segment and where their records are, without values, so
//! that start-up need not read the values.
//!
//! | part    | bytes | content                                                        |
//! |---------|------:|----------------------------------------------------------------|
//! | header  | 16    | magic `CASKHNT2`, segment id (4), generation (4)               |
//! | entries | ...   | per record: its 48-byte record header with the CRC field replaced by the record's offset in the segment, then the key |
//! | trailer | 8     | entry count (4), CRC32C of everything before (4)               |
//!
//! A hint file is written whole to a temporary file, synced and renamed into place. One that
//! fails its checksum is ignored (and the segment scanned instead).

use super::record::{self, Kind, Meta, RecordError, RECORD_HEADER_LEN};
use super::segment::SegmentName;

pub const HINT_MAGIC: &[u8; 8] = b"CASKHNT2";
pub const HINT_HEADER_LEN: usize = 16;
pub const HINT_TRAILER_LEN: usize = 8;

/// One record as a hint describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HintEntry<'a> {
    pub offset: u32,
    pub kind: Kind,
    pub compressed: bool,
    pub meta: Meta,
    pub key: &'a [u8],
    pub stored_len: u32,
    pub raw_len: u32,
}

pub struct HintWriter {
    buf: Vec<u8>,
    count: u32,
}

impl HintWriter {
    pub fn new(name: SegmentName) -> HintWriter {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(HINT_MAGIC);
        buf.extend_from_slice(&name.id.to_le_bytes());
        buf.extend_from_slice(&name.generation.to_le_bytes());
        HintWriter { buf, count: 0 }
    }

    /// Adds the record whose encoded bytes (header and key at least) start `record`.
    pub fn add(&mut self, offset: u32, record: &[u8], key_len: usize) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&record[..RECORD_HEADER_LEN + key_len]);
        self.buf[start..start + 4].copy_from_slice(&offset.to_le_bytes());
        self.count += 1;
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// No bytes yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// The entry count a hint file's trailer claims, unchecked (a sizing estimate only), bounded
/// by what a file of `file_len` bytes can hold.
pub fn claimed_entries(trailer: &[u8; HINT_TRAILER_LEN], file_len: u64) -> usize {
    let count = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as u64;
    let room = file_len.saturating_sub((HINT_HEADER_LEN + HINT_TRAILER_LEN) as u64) / RECORD_HEADER_LEN as u64;
    count.min(room) as usize
}

/// Checks a whole hint file (its checksum and entry count) and returns its entries, decoded
/// one at a time so that start-up holds no second copy of them.
pub fn read(bytes: &[u8], name: SegmentName) -> Result<impl Iterator<Item = HintEntry<'_>>, &'static str> {
    if bytes.len() < HINT_HEADER_LEN + HINT_TRAILER_LEN || &bytes[..8] != HINT_MAGIC {
        return Err("not a caskade hint file");
    }
    let le32 = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let body_end = bytes.len() - 4;
    if le32(body_end) != crc32c::crc32c(&bytes[..body_end]) {
        return Err("hint checksum mismatch");
    }
    if le32(8) != name.id || le32(12) != name.generation {
        return Err("hint names another segment");
    }
    let count = le32(bytes.len() - HINT_TRAILER_LEN) as usize;
    let entries = &bytes[HINT_HEADER_LEN..bytes.len() - HINT_TRAILER_LEN];
    // One pass to check every entry decodes, so a bad file is refused before any is used.
    let mut seen = 0;
    let mut pos = 0;
    while pos < entries.len() {
        let (_, key) = record::decode_header(&entries[pos..]).map_err(|e| match e {
            RecordError::Truncated => "hint entry cut short",
            RecordError::Corrupt(why) => why,
        })?;
        pos += RECORD_HEADER_LEN + key.len();
        seen += 1;
    }
    if seen != count {
        return Err("hint entry count mismatch");
    }
    let mut pos = 0;
    Ok(std::iter::from_fn(move || {
        let h = entries.get(pos..).filter(|h| !h.is_empty())?;
        let (header, key) = record::decode_header(h).ok()?;
        let offset = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        pos += RECORD_HEADER_LEN + key.len();
        Some(HintEntry {
            offset,
            kind: header.kind,
            compressed: header.compressed,
            meta: header.meta,
            key,
            stored_len: header.value_len,
            raw_len: header.raw_len,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let name = SegmentName { id: 3, generation: 0 };
        let mut w = HintWriter::new(name);
        let mut rec = Vec::new();
        let meta = Meta { partition: 1, flags: 2, seqno: 3, cas: 4, expiry: 5 };
        record::encode(&mut rec, Kind::Put, &meta, b"key", b"value", false, 5);
        w.add(32, &rec, 3);
        let mut rec2 = Vec::new();
        record::encode(&mut rec2, Kind::Delete, &Meta { cas: 0, ..meta }, b"other", b"", false, 0);
        w.add(32 + rec.len() as u32, &rec2, 5);
        let bytes = w.finish();
        let entries: Vec<_> = read(&bytes, name).unwrap().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].offset, entries[0].key, entries[0].stored_len, entries[0].meta), (32, &b"key"[..], 5, meta));
        assert_eq!((entries[1].kind, entries[1].key), (Kind::Delete, &b"other"[..]));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(read(&bad, name).is_err(), "flip at {i}");
        }
        assert!(read(&bytes, SegmentName { id: 4, generation: 0 }).is_err());
        let trailer: [u8; HINT_TRAILER_LEN] = bytes[bytes.len() - HINT_TRAILER_LEN..].try_into().unwrap();
        assert_eq!(claimed_entries(&trailer, bytes.len() as u64), 2);
        assert_eq!(claimed_entries(&[0xff; HINT_TRAILER_LEN], bytes.len() as u64), 2, "bounded by the file's size");
    }
}
