//! Encoding (server) and decoding (client side: load generator and tests) of responses.

use super::header::{Header, HEADER_LEN, RESPONSE_MAGIC};
use super::opcode::Opcode;
use super::status::Status;

/// Appends one response frame to `out`.
#[inline]
#[allow(clippy::too_many_arguments)] // one argument per field of the frame, on the hot path: no struct to fill first
pub fn write_response(
    out: &mut Vec<u8>,
    opcode: Opcode,
    opaque: u32,
    status: Status,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    let header = Header {
        magic: RESPONSE_MAGIC,
        opcode: opcode.to_u8(),
        key_len: key.len() as u16,
        extras_len: extras.len() as u8,
        data_type: 0,
        vbucket_or_status: status.to_u16(),
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

/// Appends an error response whose body is memcached's text for `status`.
pub fn write_error(out: &mut Vec<u8>, opcode: Opcode, opaque: u32, status: Status) {
    write_response(out, opcode, opaque, status, 0, &[], &[], status.message().as_bytes());
}

/// A decoded response, borrowing from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub opcode: Opcode,
    pub status: Status,
    pub opaque: u32,
    pub cas: u64,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    pub value: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    BadMagic(u8),
    BadLengths,
}

impl<'a> Response<'a> {
    /// Decodes one response from the front of `buf`; `Ok(None)` when more bytes are needed.
    pub fn decode(buf: &'a [u8]) -> Result<Option<(Response<'a>, usize)>, ResponseError> {
        let Some(h) = Header::peek(buf) else { return Ok(None) };
        if h.magic != RESPONSE_MAGIC {
            return Err(ResponseError::BadMagic(h.magic));
        }
        if h.value_len().is_none() {
            return Err(ResponseError::BadLengths);
        }
        let len = HEADER_LEN + h.body_len as usize;
        if buf.len() < len {
            return Ok(None);
        }
        let e = HEADER_LEN + h.extras_len as usize;
        let k = e + h.key_len as usize;
        Ok(Some((
            Response {
                opcode: Opcode::from_u8(h.opcode),
                status: Status::from_u16(h.vbucket_or_status),
                opaque: h.opaque,
                cas: h.cas,
                extras: &buf[HEADER_LEN..e],
                key: &buf[e..k],
                value: &buf[k..len],
            },
            len,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_hit_literal() {
        let mut out = Vec::new();
        write_response(&mut out, Opcode::Get, 7, Status::NoError, 1, &0xdeadbeefu32.to_be_bytes(), b"", b"World");
        let want = [
            0x81, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x07, 0, 0, 0, 0, 0,
            0, 0, 1, 0xde, 0xad, 0xbe, 0xef, b'W', b'o', b'r', b'l', b'd',
        ];
        assert_eq!(out, want);
        let (r, used) = Response::decode(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(r.value, b"World");
        assert_eq!(r.extras, &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn error_carries_memcached_text() {
        let mut out = Vec::new();
        write_error(&mut out, Opcode::Get, 1, Status::KeyNotFound);
        assert_eq!(&out[6..8], &[0, 1]);
        assert_eq!(&out[24..], b"Not found");
        let mut out = Vec::new();
        write_error(&mut out, Opcode::Unknown(0x3f), 1, Status::UnknownCommand);
        assert_eq!(out[1], 0x3f);
        assert_eq!(&out[6..8], &[0, 0x81]);
        assert_eq!(&out[24..], b"Unknown command");
    }

    #[test]
    fn every_status_encodes_its_number() {
        for s in [
            Status::KeyNotFound,
            Status::KeyExists,
            Status::ValueTooLarge,
            Status::InvalidArguments,
            Status::ItemNotStored,
            Status::NonNumeric,
            Status::UnknownCommand,
            Status::OutOfMemory,
        ] {
            let mut out = Vec::new();
            write_error(&mut out, Opcode::Set, 0, s);
            let (r, _) = Response::decode(&out).unwrap().unwrap();
            assert_eq!(r.status, s);
            assert_eq!(r.value, s.message().as_bytes());
        }
    }
}
