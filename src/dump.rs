//! The dump format: every live item of a node, with its flags and expiry, in one checksummed
//! stream. `GET /dump` on the admin port writes it, `caskadectl dump` saves it to a file,
//! `caskadectl restore` checks it and loads it into any memcached-protocol server with SETs.
//! The byte layout is specified in `protocol-spec/dump-format.md`; the constants below
//! follow its tables.
//!
//! ```text
//! header   magic "CASKDUMP" | version u16 | reserved u16 | dumped_at u32        16 bytes
//! item     tag 0x01 | key_len u8 | flags u32 | expiry u32 | value_len u32 | key | value
//! trailer  tag 0x00 | items u64 | crc32c u32                                       13 bytes
//! ```
//!
//! Integers are big-endian. `expiry` is absolute unix seconds, 0 for never. The CRC-32C
//! covers every byte before it (header, items, the trailer's tag and count), so a file cut
//! short, a flipped bit or a missing item is refused before anything is loaded.

use std::io::{self, Read, Write};

pub const MAGIC: &[u8; 8] = b"CASKDUMP";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 16;
pub const TAG_END: u8 = 0x00;
pub const TAG_ITEM: u8 = 0x01;
/// tag, key_len, flags, expiry, value_len.
pub const ITEM_HEAD_LEN: usize = 1 + 1 + 4 + 4 + 4;
pub const TRAILER_LEN: usize = 1 + 8 + 4;
/// Keys are at most memcached's 250 bytes, so one byte holds their length.
pub const MAX_KEY_LEN: usize = 250;

/// One item as dumped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub flags: u32,
    /// Absolute unix seconds; 0: never expires.
    pub expiry: u32,
}

pub fn write_header(out: &mut Vec<u8>, dumped_at: u32) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&dumped_at.to_be_bytes());
}

/// Appends one item. Keys longer than [`MAX_KEY_LEN`] cannot be stored by any memcached
/// server, so none reaches here; such a key is skipped and `false` returned.
pub fn write_item(out: &mut Vec<u8>, key: &[u8], value: &[u8], flags: u32, expiry: u32) -> bool {
    if key.len() > MAX_KEY_LEN || value.len() > u32::MAX as usize {
        return false;
    }
    out.push(TAG_ITEM);
    out.push(key.len() as u8);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&expiry.to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    true
}

/// The trailer for a stream of `items` items whose bytes so far have the CRC `crc`.
pub fn trailer(items: u64, crc: u32) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[0] = TAG_END;
    t[1..9].copy_from_slice(&items.to_be_bytes());
    let crc = crc32c::crc32c_append(crc, &t[..9]);
    t[9..].copy_from_slice(&crc.to_be_bytes());
    t
}

/// Why a dump cannot be read.
#[derive(Debug)]
pub enum DumpError {
    Io(io::Error),
    /// Not a dump file at all.
    NotADump,
    UnknownVersion(u16),
    /// The stream ended before its trailer: an interrupted dump or a cut file.
    Truncated { items: u64 },
    /// A record that cannot be, at this byte offset.
    Malformed { offset: u64, what: &'static str },
    /// The checksum or the item count does not match the content.
    Checksum { expected: u32, actual: u32 },
    Count { expected: u64, actual: u64 },
    /// Bytes after the trailer.
    TrailingBytes,
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Io(e) => write!(f, "{e}"),
            DumpError::NotADump => write!(f, "not a caskade dump (no CASKDUMP header)"),
            DumpError::UnknownVersion(v) => write!(f, "dump format version {v} is not known to this caskadectl"),
            DumpError::Truncated { items } => write!(f, "the dump is cut short after {items} items (no trailer)"),
            DumpError::Malformed { offset, what } => write!(f, "corrupt dump at byte {offset}: {what}"),
            DumpError::Checksum { expected, actual } => {
                write!(f, "corrupt dump: checksum {actual:08x} does not match the recorded {expected:08x}")
            }
            DumpError::Count { expected, actual } => {
                write!(f, "corrupt dump: {actual} items found, the trailer says {expected}")
            }
            DumpError::TrailingBytes => write!(f, "corrupt dump: bytes after the trailer"),
        }
    }
}

impl std::error::Error for DumpError {}

impl From<io::Error> for DumpError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            // Only reached where a caller did not map it to Truncated with a count.
            return DumpError::Truncated { items: 0 };
        }
        DumpError::Io(e)
    }
}

/// Reads a dump item by item, checking as it goes; the checksum is known right only once
/// [`next`](Reader::next) has returned `Ok(None)` (the trailer was read and matched).
pub struct Reader<R> {
    inner: R,
    crc: u32,
    offset: u64,
    items: u64,
    pub dumped_at: u32,
    done: bool,
}

impl<R: Read> Reader<R> {
    pub fn new(mut inner: R) -> Result<Reader<R>, DumpError> {
        let mut header = [0u8; HEADER_LEN];
        inner.read_exact(&mut header).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => DumpError::NotADump,
            _ => DumpError::Io(e),
        })?;
        if &header[..8] != MAGIC {
            return Err(DumpError::NotADump);
        }
        let version = u16::from_be_bytes([header[8], header[9]]);
        if version != VERSION {
            return Err(DumpError::UnknownVersion(version));
        }
        let dumped_at = u32::from_be_bytes(header[12..16].try_into().unwrap_or_default());
        Ok(Reader {
            inner,
            crc: crc32c::crc32c(&header),
            offset: HEADER_LEN as u64,
            items: 0,
            dumped_at,
            done: false,
        })
    }

    /// The reader it reads from.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Items read so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), DumpError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => DumpError::Truncated { items: self.items },
            _ => DumpError::Io(e),
        })?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The next item, or `None` after a trailer that matches everything read.
    #[allow(clippy::should_implement_trait)] // not an Iterator: reading can fail, and the trailer is checked at the end
    pub fn next(&mut self) -> Result<Option<Item>, DumpError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let mut tag = [0u8; 1];
        self.fill(&mut tag)?;
        match tag[0] {
            TAG_ITEM => {
                let mut head = [0u8; ITEM_HEAD_LEN - 1];
                self.fill(&mut head)?;
                let key_len = head[0] as usize;
                let flags = u32::from_be_bytes(head[1..5].try_into().unwrap_or_default());
                let expiry = u32::from_be_bytes(head[5..9].try_into().unwrap_or_default());
                let value_len = u32::from_be_bytes(head[9..13].try_into().unwrap_or_default()) as usize;
                if key_len == 0 {
                    return Err(DumpError::Malformed { offset: at, what: "an item with an empty key" });
                }
                let mut key = vec![0u8; key_len];
                self.fill(&mut key)?;
                // Read the value in bounded steps so a corrupt length cannot allocate 4 GiB
                // before the stream runs out.
                let mut value = Vec::with_capacity(value_len.min(1 << 20));
                let mut chunk = [0u8; 64 * 1024];
                while value.len() < value_len {
                    let n = (value_len - value.len()).min(chunk.len());
                    self.fill(&mut chunk[..n])?;
                    value.extend_from_slice(&chunk[..n]);
                }
                self.items += 1;
                Ok(Some(Item { key, value, flags, expiry }))
            }
            TAG_END => {
                let mut count = [0u8; 8];
                self.fill(&mut count)?;
                let computed = self.crc;
                let mut crc = [0u8; 4];
                self.inner.read_exact(&mut crc).map_err(|_| DumpError::Truncated { items: self.items })?;
                self.offset += 4;
                let expected = u32::from_be_bytes(crc);
                if expected != computed {
                    return Err(DumpError::Checksum { expected, actual: computed });
                }
                let count = u64::from_be_bytes(count);
                if count != self.items {
                    return Err(DumpError::Count { expected: count, actual: self.items });
                }
                let mut extra = [0u8; 1];
                match self.inner.read(&mut extra) {
                    Ok(0) => {}
                    Ok(_) => return Err(DumpError::TrailingBytes),
                    Err(e) => return Err(DumpError::Io(e)),
                }
                self.done = true;
                Ok(None)
            }
            _ => Err(DumpError::Malformed { offset: at, what: "an unknown record tag" }),
        }
    }
}

/// Writes a dump to `out` from items handed one by one (used by tests and tools; the server
/// streams the same bytes from its cores).
pub struct Writer<W: Write> {
    out: W,
    crc: u32,
    items: u64,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, dumped_at: u32) -> io::Result<Writer<W>> {
        let mut w = Writer { out, crc: 0, items: 0, buf: Vec::new() };
        write_header(&mut w.buf, dumped_at);
        w.flush_buf()?;
        Ok(w)
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    pub fn item(&mut self, key: &[u8], value: &[u8], flags: u32, expiry: u32) -> io::Result<()> {
        if write_item(&mut self.buf, key, value, flags, expiry) {
            self.items += 1;
        }
        self.flush_buf()
    }

    pub fn finish(mut self) -> io::Result<W> {
        let t = trailer(self.items, self.crc);
        self.out.write_all(&t)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), 1_700_000_000).unwrap();
        w.item(b"a", b"1", 7, 0).unwrap();
        w.item(b"key:2", &[0u8; 70_000], 0xdead_beef, 1_800_000_000).unwrap();
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Item>, DumpError> {
        let mut r = Reader::new(bytes)?;
        let mut items = Vec::new();
        while let Some(it) = r.next()? {
            items.push(it);
        }
        Ok(items)
    }

    #[test]
    fn layout_follows_the_spec() {
        let mut out = Vec::new();
        write_header(&mut out, 0x0102_0304);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(&out[..], b"CASKDUMP\x00\x01\x00\x00\x01\x02\x03\x04");
        out.clear();
        write_item(&mut out, b"k", b"vv", 5, 6);
        assert_eq!(out.len(), ITEM_HEAD_LEN + 3);
        assert_eq!(&out[..], b"\x01\x01\x00\x00\x00\x05\x00\x00\x00\x06\x00\x00\x00\x02kvv");
        assert_eq!(trailer(3, 0).len(), TRAILER_LEN);
    }

    #[test]
    fn round_trip() {
        let items = read_all(&sample()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], Item { key: b"a".to_vec(), value: b"1".to_vec(), flags: 7, expiry: 0 });
        assert_eq!(items[1].value.len(), 70_000);
        assert_eq!((items[1].flags, items[1].expiry), (0xdead_beef, 1_800_000_000));
    }

    #[test]
    fn every_corruption_is_refused() {
        let good = sample();
        // Any single flipped bit.
        for at in (0..good.len()).step_by(97).chain([good.len() - 1, 9, 20]) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(read_all(&bad).is_err(), "flip at {at} accepted");
        }
        // Any cut.
        for len in [0, 5, HEADER_LEN, HEADER_LEN + 3, good.len() - TRAILER_LEN, good.len() - 1] {
            assert!(read_all(&good[..len]).is_err(), "cut at {len} accepted");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(read_all(&longer), Err(DumpError::TrailingBytes)));
        assert!(matches!(read_all(b"GARBAGE GARBAGE GARBAGE"), Err(DumpError::NotADump)));
    }
}
