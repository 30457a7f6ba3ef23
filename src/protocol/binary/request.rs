//! Decoding and encoding of binary-protocol requests. No I/O: bytes in, a request and the
//! number of bytes it used out.

use super::header::{Header, HEADER_LEN, REQUEST_MAGIC};
use super::opcode::{Extras, Key, Opcode};
use super::status::Status;
use crate::protocol::Durability;

/// Couchbase's "alternative request" magic: a request with flexible framing extras. Its
/// header's byte 2 is the framing extras' length and byte 3 the key's (one byte each); the
/// framing extras come first in the body, before the extras.
pub const ALT_REQUEST_MAGIC: u8 = 0x08;

/// The frame info id of a durability requirement (Couchbase's `DurabilityRequirement`): a
/// level byte, optionally followed by a 2-byte timeout in milliseconds.
pub const FRAME_INFO_DURABILITY: u8 = 1;

/// memcached's `KEY_MAX_LENGTH`.
pub const MAX_KEY_LEN: usize = 250;

/// The bounds a decoder enforces before it waits for a body.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A stored value (SET/ADD/REPLACE/APPEND/PREPEND) larger than this gets E2BIG.
    pub max_value_len: usize,
}

/// Extras of a request, by the shape of its opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestExtras {
    None,
    /// SET, ADD, REPLACE and their quiet forms.
    Store { flags: u32, exptime: u32 },
    /// INCREMENT and DECREMENT.
    Arith { delta: u64, initial: u64, exptime: u32 },
    /// TOUCH, GAT*, and FLUSH's optional delay.
    Expiry(u32),
    /// VERBOSITY.
    Verbosity(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub opcode: Opcode,
    pub data_type: u8,
    pub vbucket: u16,
    pub opaque: u32,
    pub cas: u64,
    pub extras: RequestExtras,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// The durability a flexibly framed request asks for (`None`: none asked, the cluster's
    /// default applies).
    pub durability: Option<Durability>,
}

/// Why a frame cannot be served as a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Answer with `status`, then discard `skip` bytes counted from the start of the frame
    /// (some of which may not have arrived yet). The connection stays open.
    Reject { header: Header, status: Status, skip: u64 },
    /// Answer with `status` if there is a header to echo, then close the connection.
    Close { header: Option<Header>, status: Status },
}

/// The key of a SET or SETQ at the front of `buf` that was refused as too large (its
/// [`DecodeError::Reject`] comes only once the key has arrived): memcached unlinks it.
pub fn refused_set_key(buf: &[u8]) -> Option<&[u8]> {
    let (header, framing) = peek(buf)?;
    if !matches!(Opcode::from_u8(header.opcode), Opcode::Set | Opcode::SetQ) {
        return None;
    }
    let start = HEADER_LEN + framing + header.extras_len as usize;
    buf.get(start..start + header.key_len as usize)
}

/// The header at the front of `buf`, read as its magic lays it out, and the length of its
/// flexible framing extras (0 for a plain request).
fn peek(buf: &[u8]) -> Option<(Header, usize)> {
    let mut header = Header::peek(buf)?;
    if header.magic != ALT_REQUEST_MAGIC {
        return Some((header, 0));
    }
    header.key_len = u16::from(buf[3]);
    Some((header, usize::from(buf[2])))
}

/// Why flexible framing extras cannot be served: the status to answer with.
fn frame_infos(mut b: &[u8]) -> Result<Option<Durability>, Status> {
    let mut durability = None;
    while let Some((&first, rest)) = b.split_first() {
        let (mut id, mut len, mut rest) = (first >> 4, usize::from(first & 0x0f), rest);
        // Ids and lengths of 15 are escapes: one more byte each, added to 15.
        if id == 15 {
            let (&more, r) = rest.split_first().ok_or(Status::InvalidArguments)?;
            (id, rest) = (15u8.saturating_add(more), r);
        }
        if len == 15 {
            let (&more, r) = rest.split_first().ok_or(Status::InvalidArguments)?;
            (len, rest) = (15 + usize::from(more), r);
        }
        let data = rest.get(..len).ok_or(Status::InvalidArguments)?;
        match (id, len) {
            // The timeout (2 more bytes) is read and not used: the cluster's
            // `durability_timeout_ms` applies (protocol-spec/memcached-binary.md).
            (FRAME_INFO_DURABILITY, 1 | 3) => {
                durability = Some(Durability::from_level(data[0]).ok_or(Status::DurabilityInvalidLevel)?);
            }
            _ => return Err(Status::InvalidArguments),
        }
        b = &rest[len..];
    }
    Ok(durability)
}

impl<'a> Request<'a> {
    /// Decodes one request from the front of `buf`. `Ok(None)`: more bytes are needed.
    ///
    /// A frame is judged by its header alone before the body is awaited, so a header that
    /// announces a huge body never makes the caller buffer it.
    pub fn decode(buf: &'a [u8], limits: &Limits) -> Result<Option<(Request<'a>, usize)>, DecodeError> {
        let Some((header, framing)) = peek(buf) else {
            if buf.first().is_some_and(|&m| m != REQUEST_MAGIC && m != ALT_REQUEST_MAGIC) {
                return Err(DecodeError::Close { header: None, status: Status::InvalidArguments });
            }
            return Ok(None);
        };
        if header.magic != REQUEST_MAGIC && header.magic != ALT_REQUEST_MAGIC {
            return Err(DecodeError::Close { header: None, status: Status::InvalidArguments });
        }
        let invalid = DecodeError::Close { header: Some(header), status: Status::InvalidArguments };
        if header.key_len as usize > MAX_KEY_LEN {
            return Err(invalid);
        }
        let opcode = Opcode::from_u8(header.opcode);
        let shape = opcode.shape();
        let frame_len = HEADER_LEN as u64 + header.body_len as u64;
        if matches!(opcode, Opcode::Unknown(_) | Opcode::SaslListMechs | Opcode::SaslAuth | Opcode::SaslStep) {
            return Err(DecodeError::Reject { header, status: Status::UnknownCommand, skip: frame_len });
        }
        let Some(value_len) = header.value_len().and_then(|v| v.checked_sub(framing as u32)) else { return Err(invalid) };
        let extras_ok = match shape.extras {
            Extras::Exactly(n) => header.extras_len == n,
            Extras::ZeroOr(n) => header.extras_len == 0 || header.extras_len == n,
            Extras::Any => true,
        };
        let key_ok = match shape.key {
            Key::Required => header.key_len > 0,
            Key::Optional => true,
            Key::Forbidden => header.key_len == 0,
        };
        if !extras_ok || !key_ok || (!shape.value && value_len > 0) {
            return Err(invalid);
        }
        if value_len as usize > limits.max_value_len {
            // A SET refused as too large also removes the key's old value (memcached unlinks
            // it): the refusal waits for the key, which the caller reads at
            // [`refused_set_key`].
            if matches!(opcode, Opcode::Set | Opcode::SetQ)
                && buf.len() < HEADER_LEN + header.extras_len as usize + header.key_len as usize
            {
                return Ok(None);
            }
            return Err(DecodeError::Reject { header, status: Status::ValueTooLarge, skip: frame_len });
        }
        let frame_len = frame_len as usize;
        if buf.len() < frame_len {
            return Ok(None);
        }
        let durability = match frame_infos(&buf[HEADER_LEN..HEADER_LEN + framing]) {
            Ok(d) => d,
            Err(status) => return Err(DecodeError::Reject { header, status, skip: frame_len as u64 }),
        };
        if durability.is_some() && !opcode.is_mutation() {
            // Couchbase answers a durability requirement on a read with EINVAL.
            return Err(DecodeError::Reject { header, status: Status::InvalidArguments, skip: frame_len as u64 });
        }
        let extras_start = HEADER_LEN + framing;
        let extras_end = extras_start + header.extras_len as usize;
        let key_end = extras_end + header.key_len as usize;
        let extras = decode_extras(opcode, &buf[extras_start..extras_end]);
        Ok(Some((
            Request {
                opcode,
                data_type: header.data_type,
                vbucket: header.vbucket_or_status,
                opaque: header.opaque,
                cas: header.cas,
                extras,
                key: &buf[extras_end..key_end],
                value: &buf[key_end..frame_len],
                durability,
            },
            frame_len,
        )))
    }

    /// Encodes this request (used by clients: the load generator and the tests).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut extras = [0u8; 20];
        let extras_len = match self.extras {
            RequestExtras::None => 0,
            RequestExtras::Store { flags, exptime } => {
                extras[..4].copy_from_slice(&flags.to_be_bytes());
                extras[4..8].copy_from_slice(&exptime.to_be_bytes());
                8
            }
            RequestExtras::Arith { delta, initial, exptime } => {
                extras[..8].copy_from_slice(&delta.to_be_bytes());
                extras[8..16].copy_from_slice(&initial.to_be_bytes());
                extras[16..20].copy_from_slice(&exptime.to_be_bytes());
                20
            }
            RequestExtras::Expiry(v) | RequestExtras::Verbosity(v) => {
                extras[..4].copy_from_slice(&v.to_be_bytes());
                4
            }
        };
        // A durability requirement goes in a frame info: id 1, length 1, the level.
        let framing: &[u8] = match self.durability {
            None => &[],
            Some(Durability::None) => &[0x11, 0],
            Some(Durability::Majority) => &[0x11, 1],
            Some(Durability::PersistMajority) => &[0x11, 3],
        };
        let header = Header {
            magic: if framing.is_empty() { REQUEST_MAGIC } else { ALT_REQUEST_MAGIC },
            opcode: self.opcode.to_u8(),
            key_len: if framing.is_empty() { self.key.len() as u16 } else { (framing.len() as u16) << 8 | self.key.len() as u16 },
            extras_len: extras_len as u8,
            data_type: self.data_type,
            vbucket_or_status: self.vbucket,
            body_len: (framing.len() + extras_len + self.key.len() + self.value.len()) as u32,
            opaque: self.opaque,
            cas: self.cas,
        };
        header.write_to(out);
        out.extend_from_slice(framing);
        out.extend_from_slice(&extras[..extras_len]);
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.value);
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// `extras` has the length the opcode's shape demands (checked by `decode`).
fn decode_extras(opcode: Opcode, extras: &[u8]) -> RequestExtras {
    use Opcode::*;
    match (opcode, extras.len()) {
        (Set | SetQ | Add | AddQ | Replace | ReplaceQ, 8) => {
            RequestExtras::Store { flags: be32(&extras[..4]), exptime: be32(&extras[4..8]) }
        }
        (Increment | IncrementQ | Decrement | DecrementQ, 20) => RequestExtras::Arith {
            delta: be64(&extras[..8]),
            initial: be64(&extras[8..16]),
            exptime: be32(&extras[16..20]),
        },
        (Touch | Gat | GatQ | GatK | GatKQ | Flush | FlushQ, 4) => RequestExtras::Expiry(be32(extras)),
        (Verbosity, 4) => RequestExtras::Verbosity(be32(extras)),
        _ => RequestExtras::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_value_len: 1024 };

    fn decode(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, DecodeError> {
        Request::decode(buf, &LIMITS)
    }

    /// A request frame from its parts, written out by hand (not by `encode`).
    fn frame(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
        let mut f = vec![0x80, opcode];
        f.extend_from_slice(&(key.len() as u16).to_be_bytes());
        f.push(extras.len() as u8);
        f.extend_from_slice(&[0, 0, 0]);
        f.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        f.extend_from_slice(&opaque.to_be_bytes());
        f.extend_from_slice(&cas.to_be_bytes());
        f.extend_from_slice(extras);
        f.extend_from_slice(key);
        f.extend_from_slice(value);
        f
    }

    #[test]
    fn get_from_literal_bytes() {
        let bytes = [
            0x80, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x07, 0, 0, 0, 0, 0,
            0, 0, 0, b'H', b'e', b'l', b'l', b'o',
        ];
        let (req, used) = decode(&bytes).unwrap().unwrap();
        assert_eq!(used, 29);
        assert_eq!(req.opcode, Opcode::Get);
        assert_eq!(req.key, b"Hello");
        assert_eq!(req.opaque, 7);
        assert_eq!(req.extras, RequestExtras::None);
    }

    #[test]
    fn set_from_literal_bytes() {
        // memcached's protocol_binary docs: "Add Hello World, flags 0xdeadbeef, expiry 3600".
        let bytes = [
            0x80, 0x02, 0x00, 0x05, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0,
            0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x0e, 0x10, b'H', b'e', b'l', b'l', b'o', b'W', b'o', b'r',
            b'l', b'd',
        ];
        let (req, used) = decode(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(req.opcode, Opcode::Add);
        assert_eq!(req.extras, RequestExtras::Store { flags: 0xdeadbeef, exptime: 3600 });
        assert_eq!(req.key, b"Hello");
        assert_eq!(req.value, b"World");
    }

    #[test]
    fn every_served_opcode_decodes_its_extras() {
        let store = [0, 0, 0, 1, 0, 0, 0, 2];
        let arith = [0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 5];
        let four = [0, 0, 0, 9];
        // opcode, extras, key, value, the extras decoded
        type Case<'a> = (u8, Vec<u8>, &'a [u8], &'a [u8], RequestExtras);
        let cases: Vec<Case> = vec![
            (0x00, vec![], b"k", b"", RequestExtras::None),
            (0x09, vec![], b"k", b"", RequestExtras::None),
            (0x0c, vec![], b"k", b"", RequestExtras::None),
            (0x0d, vec![], b"k", b"", RequestExtras::None),
            (0x01, store.to_vec(), b"k", b"v", RequestExtras::Store { flags: 1, exptime: 2 }),
            (0x11, store.to_vec(), b"k", b"v", RequestExtras::Store { flags: 1, exptime: 2 }),
            (0x02, store.to_vec(), b"k", b"v", RequestExtras::Store { flags: 1, exptime: 2 }),
            (0x12, store.to_vec(), b"k", b"", RequestExtras::Store { flags: 1, exptime: 2 }),
            (0x03, store.to_vec(), b"k", b"v", RequestExtras::Store { flags: 1, exptime: 2 }),
            (0x13, store.to_vec(), b"k", b"v", RequestExtras::Store { flags: 1, exptime: 2 }),
            (0x04, vec![], b"k", b"", RequestExtras::None),
            (0x14, vec![], b"k", b"", RequestExtras::None),
            (0x05, arith.to_vec(), b"k", b"", RequestExtras::Arith { delta: 3, initial: 4, exptime: 5 }),
            (0x15, arith.to_vec(), b"k", b"", RequestExtras::Arith { delta: 3, initial: 4, exptime: 5 }),
            (0x06, arith.to_vec(), b"k", b"", RequestExtras::Arith { delta: 3, initial: 4, exptime: 5 }),
            (0x16, arith.to_vec(), b"k", b"", RequestExtras::Arith { delta: 3, initial: 4, exptime: 5 }),
            (0x07, vec![], b"", b"", RequestExtras::None),
            (0x17, vec![], b"", b"", RequestExtras::None),
            (0x08, vec![], b"", b"", RequestExtras::None),
            (0x08, four.to_vec(), b"", b"", RequestExtras::Expiry(9)),
            (0x18, four.to_vec(), b"", b"", RequestExtras::Expiry(9)),
            (0x0a, vec![], b"", b"", RequestExtras::None),
            (0x0b, vec![], b"", b"", RequestExtras::None),
            (0x0e, vec![], b"k", b"v", RequestExtras::None),
            (0x19, vec![], b"k", b"v", RequestExtras::None),
            (0x0f, vec![], b"k", b"v", RequestExtras::None),
            (0x1a, vec![], b"k", b"v", RequestExtras::None),
            (0x10, vec![], b"", b"", RequestExtras::None),
            (0x10, vec![], b"settings", b"", RequestExtras::None),
            (0x1b, four.to_vec(), b"", b"", RequestExtras::Verbosity(9)),
            (0x1c, four.to_vec(), b"k", b"", RequestExtras::Expiry(9)),
            (0x1d, four.to_vec(), b"k", b"", RequestExtras::Expiry(9)),
            (0x1e, four.to_vec(), b"k", b"", RequestExtras::Expiry(9)),
            (0x23, four.to_vec(), b"k", b"", RequestExtras::Expiry(9)),
            (0x24, four.to_vec(), b"k", b"", RequestExtras::Expiry(9)),
        ];
        for (op, extras, key, value, want) in cases {
            let f = frame(op, &extras, key, value, 0x11223344, 42);
            let (req, used) = decode(&f).unwrap_or_else(|e| panic!("opcode {op:#x}: {e:?}")).unwrap();
            assert_eq!(used, f.len(), "opcode {op:#x}");
            assert_eq!(req.opcode.to_u8(), op);
            assert_eq!(req.extras, want, "opcode {op:#x}");
            assert_eq!(req.key, key);
            assert_eq!(req.value, value);
            assert_eq!(req.opaque, 0x11223344);
            assert_eq!(req.cas, 42);
            let mut again = Vec::new();
            req.encode(&mut again);
            assert_eq!(again, f, "opcode {op:#x} re-encodes to the same bytes");
        }
    }

    #[test]
    fn incomplete_until_the_last_byte() {
        let f = frame(0x01, &[0; 8], b"key", b"value", 1, 0);
        for cut in 0..f.len() {
            assert_eq!(decode(&f[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(decode(&f).unwrap().is_some());
    }

    #[test]
    fn wrong_magic_closes_even_before_a_whole_header() {
        assert_eq!(decode(&[0x81]), Err(DecodeError::Close { header: None, status: Status::InvalidArguments }));
        assert!(matches!(decode(b"get foo\r\n"), Err(DecodeError::Close { header: None, .. })));
    }

    #[test]
    fn key_over_250_bytes_is_invalid_and_closes() {
        let key = vec![b'k'; 251];
        let f = frame(0x00, &[], &key, b"", 1, 0);
        assert!(matches!(decode(&f[..24]), Err(DecodeError::Close { status: Status::InvalidArguments, .. })));
        let key = vec![b'k'; 250];
        assert!(decode(&frame(0x00, &[], &key, b"", 1, 0)).unwrap().is_some());
    }

    #[test]
    fn lengths_that_do_not_fit_the_opcode_are_invalid() {
        let bad = [
            frame(0x00, &[0; 4], b"k", b"", 1, 0),   // GET with extras
            frame(0x00, &[], b"", b"", 1, 0),        // GET without key
            frame(0x00, &[], b"k", b"v", 1, 0),      // GET with a value
            frame(0x01, &[0; 4], b"k", b"v", 1, 0),  // SET with 4 bytes of extras
            frame(0x05, &[0; 8], b"k", b"", 1, 0),   // INCR with short extras
            frame(0x0a, &[], b"k", b"", 1, 0),       // NOOP with a key
            frame(0x08, &[0; 8], b"", b"", 1, 0),    // FLUSH with 8 bytes of extras
            frame(0x1c, &[], b"k", b"", 1, 0),       // TOUCH without expiry
        ];
        for f in bad {
            let got = decode(&f[..24]);
            assert!(
                matches!(got, Err(DecodeError::Close { header: Some(_), status: Status::InvalidArguments })),
                "{:x?}: {got:?}",
                &f[..2]
            );
        }
        // Key and extras longer than the body.
        let mut f = frame(0x01, &[0; 8], b"key", b"", 1, 0);
        f[11] = 4;
        assert!(matches!(decode(&f), Err(DecodeError::Close { .. })));
    }

    #[test]
    fn unknown_opcode_is_rejected_and_its_body_skipped() {
        let f = frame(0x3f, &[1, 2], b"key", b"value", 9, 0);
        match decode(&f[..24]) {
            Err(DecodeError::Reject { header, status: Status::UnknownCommand, skip }) => {
                assert_eq!(skip, f.len() as u64);
                assert_eq!(header.opaque, 9);
            }
            other => panic!("{other:?}"),
        }
        // SASL is not served yet.
        let f = frame(0x20, &[], b"", b"", 9, 0);
        assert!(matches!(decode(&f), Err(DecodeError::Reject { status: Status::UnknownCommand, .. })));
    }

    #[test]
    fn value_over_the_limit_is_rejected_from_the_header_alone() {
        let mut f = frame(0x01, &[0; 8], b"key", b"", 1, 0);
        let body: u32 = 8 + 3 + 4 * 1024 * 1024 * 1023;
        f[8..12].copy_from_slice(&body.to_be_bytes());
        match decode(&f) {
            Err(DecodeError::Reject { status: Status::ValueTooLarge, skip, .. }) => {
                assert_eq!(skip, 24 + body as u64)
            }
            other => panic!("{other:?}"),
        }
        // A 4 GiB body on a GET is simply invalid.
        let mut f = frame(0x00, &[], b"key", b"", 1, 0);
        f[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&f), Err(DecodeError::Close { .. })));
    }

    /// A flexibly framed request (magic 0x08) written out by hand.
    fn alt_frame(opcode: u8, framing: &[u8], extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut f = vec![ALT_REQUEST_MAGIC, opcode, framing.len() as u8, key.len() as u8, extras.len() as u8, 0, 0, 0];
        f.extend_from_slice(&((framing.len() + extras.len() + key.len() + value.len()) as u32).to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&0u64.to_be_bytes());
        f.extend_from_slice(framing);
        f.extend_from_slice(extras);
        f.extend_from_slice(key);
        f.extend_from_slice(value);
        f
    }

    #[test]
    fn a_durability_frame_info_is_read_in_both_forms() {
        let extras = [0, 0, 0, 1, 0, 0, 0, 0];
        for (framing, level) in [
            (&[0x11u8, 1][..], Durability::Majority),
            (&[0x11, 3][..], Durability::PersistMajority),
            (&[0x11, 0][..], Durability::None),
            // With a timeout (read, not used).
            (&[0x13, 1, 0x01, 0xf4][..], Durability::Majority),
        ] {
            let f = alt_frame(0x01, framing, &extras, b"key", b"value");
            let (r, used) = decode(&f).unwrap().unwrap();
            assert_eq!(used, f.len());
            assert_eq!((r.key, r.value, r.durability, r.opaque), (&b"key"[..], &b"value"[..], Some(level), 7));
            assert_eq!(r.extras, RequestExtras::Store { flags: 1, exptime: 0 });
            // Cut anywhere, it waits for the rest.
            for cut in 0..f.len() {
                assert_eq!(decode(&f[..cut]), Ok(None), "cut at {cut}");
            }
        }
        // `encode` writes what `decode` reads.
        let f = alt_frame(0x04, &[0x11, 1], &[], b"k", b"");
        let (r, _) = decode(&f).unwrap().unwrap();
        let mut again = Vec::new();
        r.encode(&mut again);
        assert_eq!(again, f);
        // No frame info: a plain request.
        let f = alt_frame(0x00, &[], &[], b"k", b"");
        let (r, _) = decode(&f).unwrap().unwrap();
        assert_eq!(r.durability, None);
    }

    #[test]
    fn a_bad_frame_info_is_refused_and_the_connection_goes_on() {
        let extras = [0u8; 8];
        for (framing, status) in [
            (&[0x11u8, 2][..], Status::DurabilityInvalidLevel),
            (&[0x11, 9][..], Status::DurabilityInvalidLevel),
            (&[0x21, 1][..], Status::InvalidArguments),
            (&[0x12, 1][..], Status::InvalidArguments),
            (&[0x13, 1][..], Status::InvalidArguments),
            (&[0xf1][..], Status::InvalidArguments),
            (&[0x1f][..], Status::InvalidArguments),
        ] {
            let f = alt_frame(0x01, framing, &extras, b"key", b"v");
            match decode(&f) {
                Err(DecodeError::Reject { status: s, skip, .. }) => assert_eq!((s, skip), (status, f.len() as u64), "{framing:?}"),
                other => panic!("{framing:?}: {other:?}"),
            }
        }
        // A durability requirement on a read.
        let f = alt_frame(0x00, &[0x11, 1], &[], b"key", b"");
        assert!(matches!(decode(&f), Err(DecodeError::Reject { status: Status::InvalidArguments, .. })));
        // Framing longer than the body.
        let mut f = alt_frame(0x01, &[0x11, 1], &extras, b"key", b"");
        f[2] = 200;
        assert!(matches!(decode(&f), Err(DecodeError::Close { status: Status::InvalidArguments, .. })));
    }
}
