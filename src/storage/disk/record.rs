//! The record: the unit of the log. Every mutation of a shard is one record appended to its
//! active segment. The layout is `protocol-spec/storage-format.md`; the constants below follow
//! its table and a test checks them against it.
//!
//! | off | size | field                                                            |
//! |----:|-----:|------------------------------------------------------------------|
//! | 0   | 4    | CRC32C of bytes 4..len                                           |
//! | 4   | 4    | len: the whole record, header included                           |
//! | 8   | 1    | kind: 1 put, 2 delete, 3 flush, 4 watermark                      |
//! | 9   | 1    | bits: 0x01 = value is zstd-compressed                            |
//! | 10  | 2    | partition                                                        |
//! | 12  | 4    | item flags                                                       |
//! | 16  | 8    | seqno: per partition, gap-free                                   |
//! | 24  | 8    | CAS                                                              |
//! | 32  | 4    | expiry, absolute unix seconds (flush: when it takes effect)      |
//! | 36  | 2    | key length                                                       |
//! | 38  | 2    | reserved, 0                                                      |
//! | 40  | 4    | stored value length                                              |
//! | 44  | 4    | value length before compression                                  |
//! | 48  | k    | key                                                              |
//! | 48+k| v    | value                                                            |
//!
//! Integers are little-endian.

pub const OFF_CRC: usize = 0;
pub const OFF_LEN: usize = 4;
pub const OFF_KIND: usize = 8;
pub const OFF_BITS: usize = 9;
pub const OFF_PARTITION: usize = 10;
pub const OFF_FLAGS: usize = 12;
pub const OFF_SEQNO: usize = 16;
pub const OFF_CAS: usize = 24;
pub const OFF_EXPIRY: usize = 32;
pub const OFF_KEY_LEN: usize = 36;
pub const OFF_RESERVED: usize = 38;
pub const OFF_VALUE_LEN: usize = 40;
pub const OFF_RAW_LEN: usize = 44;
pub const RECORD_HEADER_LEN: usize = 48;

pub const BIT_COMPRESSED: u8 = 0x01;

/// Keys are at most 250 bytes on every protocol; a longer one on disk is corruption.
pub const MAX_KEY_LEN: usize = 250;
/// Values are at most 1 GiB (`-I`'s ceiling).
pub const MAX_VALUE_LEN: usize = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Put = 1,
    Delete = 2,
    /// Everything before it in the log is gone from `expiry` on (0: at once).
    Flush = 3,
    /// Written by a merge: the highest CAS and seqnos of its inputs (see `watermark.rs`).
    Watermark = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Put,
            2 => Kind::Delete,
            3 => Kind::Flush,
            4 => Kind::Watermark,
            _ => return None,
        })
    }
}

/// The fixed fields of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    pub partition: u16,
    pub flags: u32,
    pub seqno: u64,
    pub cas: u64,
    pub expiry: u32,
}

/// A record decoded from a buffer, borrowing key and (stored) value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub compressed: bool,
    pub meta: Meta,
    pub key: &'a [u8],
    /// As stored: compressed when `compressed`.
    pub value: &'a [u8],
    pub raw_len: u32,
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the header or than `len` says: at the end of a log, a torn write.
    Truncated,
    /// The checksum, a length or the kind is wrong.
    Corrupt(&'static str),
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(x)
}

/// Bytes a record with this key and stored value takes.
pub fn record_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_LEN + key_len + value_len
}

/// Appends one record to `out`. `value` is stored as given; `raw_len` is its length before
/// compression (equal to `value.len()` when not compressed).
pub fn encode(out: &mut Vec<u8>, kind: Kind, meta: &Meta, key: &[u8], value: &[u8], compressed: bool, raw_len: u32) {
    let start = out.len();
    let len = record_len(key.len(), value.len());
    out.resize(start + RECORD_HEADER_LEN, 0);
    let h = &mut out[start..];
    h[OFF_LEN..OFF_LEN + 4].copy_from_slice(&(len as u32).to_le_bytes());
    h[OFF_KIND] = kind as u8;
    h[OFF_BITS] = if compressed { BIT_COMPRESSED } else { 0 };
    h[OFF_PARTITION..OFF_PARTITION + 2].copy_from_slice(&meta.partition.to_le_bytes());
    h[OFF_FLAGS..OFF_FLAGS + 4].copy_from_slice(&meta.flags.to_le_bytes());
    h[OFF_SEQNO..OFF_SEQNO + 8].copy_from_slice(&meta.seqno.to_le_bytes());
    h[OFF_CAS..OFF_CAS + 8].copy_from_slice(&meta.cas.to_le_bytes());
    h[OFF_EXPIRY..OFF_EXPIRY + 4].copy_from_slice(&meta.expiry.to_le_bytes());
    h[OFF_KEY_LEN..OFF_KEY_LEN + 2].copy_from_slice(&(key.len() as u16).to_le_bytes());
    h[OFF_VALUE_LEN..OFF_VALUE_LEN + 4].copy_from_slice(&(value.len() as u32).to_le_bytes());
    h[OFF_RAW_LEN..OFF_RAW_LEN + 4].copy_from_slice(&raw_len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[start + OFF_LEN..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The fields of a record's header, checked for consistency but not against the checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: Kind,
    pub compressed: bool,
    pub meta: Meta,
    /// The whole record's length.
    pub len: u32,
    pub value_len: u32,
    pub raw_len: u32,
}

/// Decodes a header and the key after it (all a hint entry holds).
pub fn decode_header(buf: &[u8]) -> Result<(RecordHeader, &[u8]), RecordError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(RecordError::Truncated);
    }
    let len = le32(buf, OFF_LEN) as usize;
    let key_len = le16(buf, OFF_KEY_LEN) as usize;
    let value_len = le32(buf, OFF_VALUE_LEN) as usize;
    if key_len > MAX_KEY_LEN || value_len > MAX_VALUE_LEN || len != record_len(key_len, value_len) {
        return Err(RecordError::Corrupt("lengths do not add up"));
    }
    let kind = Kind::from_u8(buf[OFF_KIND]).ok_or(RecordError::Corrupt("unknown record kind"))?;
    let bits = buf[OFF_BITS];
    if bits & !BIT_COMPRESSED != 0 || le16(buf, OFF_RESERVED) != 0 {
        return Err(RecordError::Corrupt("unknown bits set"));
    }
    if buf.len() < RECORD_HEADER_LEN + key_len {
        return Err(RecordError::Truncated);
    }
    let header = RecordHeader {
        kind,
        compressed: bits & BIT_COMPRESSED != 0,
        meta: Meta {
            partition: le16(buf, OFF_PARTITION),
            flags: le32(buf, OFF_FLAGS),
            seqno: le64(buf, OFF_SEQNO),
            cas: le64(buf, OFF_CAS),
            expiry: le32(buf, OFF_EXPIRY),
        },
        len: len as u32,
        value_len: value_len as u32,
        raw_len: le32(buf, OFF_RAW_LEN),
    };
    Ok((header, &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + key_len]))
}

/// Decodes the record at the front of `buf`, checking its lengths and checksum.
pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), RecordError> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(RecordError::Truncated);
    }
    // A torn tail is told apart from damage by the length field alone: the checksum cannot
    // be checked until every byte it covers is there.
    let len = le32(buf, OFF_LEN) as usize;
    if len >= RECORD_HEADER_LEN && len <= record_len(MAX_KEY_LEN, MAX_VALUE_LEN) && buf.len() < len {
        return Err(RecordError::Truncated);
    }
    let (header, key) = decode_header(buf)?;
    let len = header.len as usize;
    if le32(buf, OFF_CRC) != crc32c::crc32c(&buf[OFF_LEN..len]) {
        return Err(RecordError::Corrupt("checksum mismatch"));
    }
    let key_end = RECORD_HEADER_LEN + key.len();
    Ok((
        Record {
            kind: header.kind,
            compressed: header.compressed,
            meta: header.meta,
            key,
            value: &buf[key_end..len],
            raw_len: header.raw_len,
        },
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta { partition: 513, flags: 0xdeadbeef, seqno: 3, cas: 9, expiry: 1_800_000_000 }
    }

    #[test]
    fn offsets_follow_the_spec_table() {
        // protocol-spec/storage-format.md, "Record".
        let table = [
            (OFF_CRC, 4),
            (OFF_LEN, 4),
            (OFF_KIND, 1),
            (OFF_BITS, 1),
            (OFF_PARTITION, 2),
            (OFF_FLAGS, 4),
            (OFF_SEQNO, 8),
            (OFF_CAS, 8),
            (OFF_EXPIRY, 4),
            (OFF_KEY_LEN, 2),
            (OFF_RESERVED, 2),
            (OFF_VALUE_LEN, 4),
            (OFF_RAW_LEN, 4),
        ];
        let mut next = 0;
        for (off, size) in table {
            assert_eq!(off, next, "field at {off} does not follow the one before");
            next = off + size;
        }
        assert_eq!(next, RECORD_HEADER_LEN);
        let spec = include_str!("../../../protocol-spec/storage-format.md");
        assert!(spec.contains(&format!("header is {RECORD_HEADER_LEN} bytes")));
    }

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Put, &meta(), b"key", b"value", false, 5);
        encode(&mut out, Kind::Delete, &Meta { seqno: 4, ..meta() }, b"key", b"", false, 0);
        let (r, used) = decode(&out).unwrap();
        assert_eq!(used, record_len(3, 5));
        assert_eq!((r.kind, r.meta, r.key, r.value, r.raw_len), (Kind::Put, meta(), &b"key"[..], &b"value"[..], 5));
        let (r, used2) = decode(&out[used..]).unwrap();
        assert_eq!((r.kind, r.meta.seqno, used + used2), (Kind::Delete, 4, out.len()));
    }

    #[test]
    fn little_endian_literal() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Put, &Meta { seqno: 1, ..Meta::default() }, b"k", b"v", false, 1);
        assert_eq!(&out[4..8], &[50, 0, 0, 0]);
        assert_eq!(out[8], 1);
        assert_eq!(&out[16..24], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[48..], b"kv");
    }

    #[test]
    fn every_cut_of_a_record_is_truncated() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Put, &meta(), b"key", b"value", false, 5);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]).err(), Some(RecordError::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut out = Vec::new();
        encode(&mut out, Kind::Put, &meta(), b"key", b"value", false, 5);
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }
}
