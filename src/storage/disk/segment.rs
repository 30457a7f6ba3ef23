//! Segment files: names, the 32-byte file header, and where a record lives.
//!
//! | off | size | field                                                         |
//! |----:|-----:|---------------------------------------------------------------|
//! | 0   | 8    | magic `CASKSEG2` (the last byte is the format version)        |
//! | 8   | 4    | segment id                                                    |
//! | 12  | 4    | generation: 0 when written by the log, n+1 by a merge of gen n|
//! | 16  | 4    | first id this file replaces (== id when generation is 0)      |
//! | 20  | 4    | shard                                                         |
//! | 24  | 4    | reserved, 0                                                   |
//! | 28  | 4    | CRC32C of bytes 0..28                                         |
//!
//! Records follow from byte 32. A merge of segments `first..=id` writes a file with the same
//! `id`, a higher generation and `first`; once it is renamed into place, the files it
//! replaces are garbage, and recovery removes any it finds.

use std::path::{Path, PathBuf};

pub const SEGMENT_MAGIC: &[u8; 8] = b"CASKSEG2";
/// The format version: the last byte of the magic. Version 2 added the watermark record.
pub const FORMAT_VERSION: u8 = b'2';
pub const SEGMENT_HEADER_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    pub id: u32,
    pub generation: u32,
}

impl SegmentName {
    pub fn file_name(&self) -> String {
        format!("seg-{:08}-{:03}.log", self.id, self.generation)
    }

    pub fn hint_name(&self) -> String {
        format!("seg-{:08}-{:03}.hint", self.id, self.generation)
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }

    pub fn hint_path(&self, dir: &Path) -> PathBuf {
        dir.join(self.hint_name())
    }

    /// Parses `seg-00000042-000.log` (or `.hint`); `None` for any other name.
    pub fn parse(file_name: &str) -> Option<(SegmentName, &str)> {
        let rest = file_name.strip_prefix("seg-")?;
        let (id, rest) = rest.split_once('-')?;
        let (generation, ext) = rest.split_once('.')?;
        if id.len() != 8 || generation.len() != 3 || !matches!(ext, "log" | "hint") {
            return None;
        }
        Some((SegmentName { id: id.parse().ok()?, generation: generation.parse().ok()? }, ext))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub name: SegmentName,
    pub first: u32,
    pub shard: u32,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.name.id.to_le_bytes());
        b[12..16].copy_from_slice(&self.name.generation.to_le_bytes());
        b[16..20].copy_from_slice(&self.first.to_le_bytes());
        b[20..24].copy_from_slice(&self.shard.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderError::Short);
        }
        if b[..7] != SEGMENT_MAGIC[..7] {
            return Err(HeaderError::NotASegment);
        }
        if b[7] != FORMAT_VERSION {
            return Err(HeaderError::Version(b[7]));
        }
        let le = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        if le(28) != crc32c::crc32c(&b[..28]) {
            return Err(HeaderError::Checksum);
        }
        Ok(SegmentHeader {
            name: SegmentName { id: le(8), generation: le(12) },
            first: le(16),
            shard: le(20),
        })
    }
}

/// Why a file's first bytes are not a segment header this build reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    NotASegment,
    /// A caskade segment of another format version (the magic's last byte).
    Version(u8),
    Checksum,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short => write!(f, "shorter than a segment header"),
            HeaderError::NotASegment => write!(f, "not a caskade segment"),
            HeaderError::Version(v) => write!(
                f,
                "segment format version {} is not readable by this build (it reads version {}); start on an empty data directory",
                char::from(*v).escape_default(),
                char::from(FORMAT_VERSION)
            ),
            HeaderError::Checksum => write!(f, "segment header checksum mismatch"),
        }
    }
}

/// Where a record lives: its segment and byte offset, and its stored value's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: u32,
    pub offset: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = SegmentName { id: 42, generation: 3 };
        assert_eq!(n.file_name(), "seg-00000042-003.log");
        assert_eq!(SegmentName::parse(&n.file_name()), Some((n, "log")));
        assert_eq!(SegmentName::parse(&n.hint_name()), Some((n, "hint")));
        assert_eq!(SegmentName::parse("seg-00000042-003.log.tmp"), None);
        assert_eq!(SegmentName::parse("LOCK"), None);
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let h = SegmentHeader { name: SegmentName { id: 7, generation: 1 }, first: 3, shard: 1 };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut bad = b;
            bad[i] ^= 1;
            assert!(SegmentHeader::decode(&bad).is_err(), "byte {i}");
        }
        let spec = include_str!("../../../protocol-spec/storage-format.md");
        let magic = std::str::from_utf8(SEGMENT_MAGIC).unwrap();
        assert!(spec.contains(&format!("magic `{magic}`")), "the spec names {magic}");
        let mut old = b;
        old[7] = b'1';
        assert_eq!(SegmentHeader::decode(&old), Err(HeaderError::Version(b'1')));
        assert!(HeaderError::Version(b'1').to_string().contains("version 1 is not readable"));
    }
}
