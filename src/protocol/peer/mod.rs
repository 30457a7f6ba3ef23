//! The peer protocol: what nodes of one cluster say to each other on the peer port
//! (`protocol-spec/peer-protocol.md`). No I/O.
//!
//! Every frame is a memcached binary header (24 bytes) and a body of extras, key and value.
//! Requests carry magic 0x80, responses 0x81; caskade's own opcodes fill 0xC0..=0xEF
//! ([`Op`]). A link starts with HELLO and AUTH ([`auth`]); after that it carries forwarded
//! storage commands ([`forward`]) pipelined, each answered by one response with the same
//! opaque, in request order.

pub mod auth;
pub mod forward;
pub mod repl;

use crate::protocol::binary::{Header, HEADER_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};

/// The peer protocol's version, sent in HELLO. A node answers only its own.
pub const VERSION: u16 = 1;

/// The first and last opcode of the range caskade keeps for peer frames. A client that
/// sends one of these on the client port is told off and closed.
pub const FIRST_OPCODE: u8 = 0xC0;
pub const LAST_OPCODE: u8 = 0xEF;

/// Peer opcodes. 0xC0..=0xCF: the link and forwarding; 0xD0..=0xDF kept for replication,
/// 0xE0..=0xEF for the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Hello,
    Auth,
    Get,
    GetAndTouch,
    Touch,
    Store,
    Delete,
    Arith,
    Flush,
    /// A read of a backup's copy (GET_REPLICA), served by a node that backs the key up.
    GetReplica,
    ReplOpen,
    ReplChanges,
    ReplVerify,
}

impl Op {
    pub const ALL: [Op; 13] = [
        Op::Hello,
        Op::Auth,
        Op::Get,
        Op::GetAndTouch,
        Op::Touch,
        Op::Store,
        Op::Delete,
        Op::Arith,
        Op::Flush,
        Op::GetReplica,
        Op::ReplOpen,
        Op::ReplChanges,
        Op::ReplVerify,
    ];

    pub fn to_u8(self) -> u8 {
        match self {
            Op::Hello => 0xC0,
            Op::Auth => 0xC1,
            Op::Get => 0xC4,
            Op::GetAndTouch => 0xC5,
            Op::Touch => 0xC6,
            Op::Store => 0xC7,
            Op::Delete => 0xC8,
            Op::Arith => 0xC9,
            Op::Flush => 0xCA,
            Op::GetReplica => 0xCB,
            Op::ReplOpen => 0xD0,
            Op::ReplChanges => 0xD1,
            Op::ReplVerify => 0xD2,
        }
    }

    pub fn from_u8(b: u8) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.to_u8() == b)
    }

    /// Whether `opcode` lies in the range caskade keeps for peers.
    pub fn is_peer_opcode(opcode: u8) -> bool {
        (FIRST_OPCODE..=LAST_OPCODE).contains(&opcode)
    }
}

/// One frame, borrowing its body from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Header,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Why bytes on a peer link cannot be a frame. Each closes the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Neither 0x80 nor 0x81 where a frame starts.
    BadMagic(u8),
    /// The body announces more than the link accepts.
    TooLarge(u32),
    /// Extras and key longer than the body.
    BadLengths,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadMagic(m) => write!(f, "bad magic {m:#04x}"),
            FrameError::TooLarge(n) => write!(f, "a frame of {n} body bytes is over the limit"),
            FrameError::BadLengths => f.write_str("extras and key lengths exceed the body length"),
        }
    }
}

impl<'a> Frame<'a> {
    /// The frame at the front of `buf` and its length; `Ok(None)` until all of it is there.
    /// A header is judged before its body is awaited, so a huge length is refused at once.
    pub fn decode(buf: &'a [u8], max_body: u32) -> Result<Option<(Frame<'a>, usize)>, FrameError> {
        if let Some(&m) = buf.first() {
            if m != REQUEST_MAGIC && m != RESPONSE_MAGIC {
                return Err(FrameError::BadMagic(m));
            }
        }
        let Some(header) = Header::peek(buf) else { return Ok(None) };
        if header.body_len > max_body {
            return Err(FrameError::TooLarge(header.body_len));
        }
        let Some(value_len) = header.value_len() else { return Err(FrameError::BadLengths) };
        let len = HEADER_LEN + header.body_len as usize;
        if buf.len() < len {
            return Ok(None);
        }
        let extras_end = HEADER_LEN + header.extras_len as usize;
        let key_end = extras_end + header.key_len as usize;
        debug_assert_eq!(key_end + value_len as usize, len);
        Ok(Some((Frame { header, extras: &buf[HEADER_LEN..extras_end], key: &buf[extras_end..key_end], value: &buf[key_end..len] }, len)))
    }

    pub fn is_request(&self) -> bool {
        self.header.magic == REQUEST_MAGIC
    }

    pub fn op(&self) -> Option<Op> {
        Op::from_u8(self.header.opcode)
    }

    /// The partition a forwarded request names (the vbucket field of a request).
    pub fn partition(&self) -> u16 {
        self.header.vbucket_or_status
    }

    /// A response's status.
    pub fn status(&self) -> u16 {
        self.header.vbucket_or_status
    }
}

/// Appends one frame.
#[allow(clippy::too_many_arguments)] // One argument per header field a frame sets.
pub fn write_frame(out: &mut Vec<u8>, magic: u8, op: Op, vbucket_or_status: u16, opaque: u32, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) {
    let header = Header {
        magic,
        opcode: op.to_u8(),
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        data_type: 0,
        vbucket_or_status,
        body_len: (extras.len() + key.len() + value.len()) as u32,
        opaque,
        cas,
    };
    out.reserve(HEADER_LEN + header.body_len as usize);
    header.write_to(out);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// A big-endian reader over a frame's extras that never panics.
pub(crate) struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Fields<'a> {
        Fields(b)
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_are_in_the_peer_range_and_round_trip() {
        for op in Op::ALL {
            assert!(Op::is_peer_opcode(op.to_u8()), "{op:?}");
            assert_eq!(Op::from_u8(op.to_u8()), Some(op));
        }
        assert!(!Op::is_peer_opcode(0x00) && !Op::is_peer_opcode(0xF0));
    }

    #[test]
    fn frames_decode_whole_or_not_at_all() {
        let mut out = Vec::new();
        write_frame(&mut out, REQUEST_MAGIC, Op::Get, 7, 42, 0, &[], b"key", &[]);
        for cut in 0..out.len() {
            assert_eq!(Frame::decode(&out[..cut], 1 << 20), Ok(None), "{cut} bytes");
        }
        let (f, used) = Frame::decode(&out, 1 << 20).unwrap().unwrap();
        assert_eq!((used, f.op(), f.partition(), f.header.opaque, f.key), (out.len(), Some(Op::Get), 7, 42, &b"key"[..]));
        assert_eq!(Frame::decode(&out, 2), Err(FrameError::TooLarge(3)));
        assert_eq!(Frame::decode(b"get x\r\n", 100), Err(FrameError::BadMagic(b'g')));
        // extras_len past the body.
        let mut bad = out.clone();
        bad[4] = 200;
        assert_eq!(Frame::decode(&bad, 1 << 20), Err(FrameError::BadLengths));
    }
}
