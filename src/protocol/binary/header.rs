//! The 24-byte header that starts every binary-protocol frame.
//!
//! ```text
//! byte  0       1       2       3
//!    +-------+-------+-------+-------+
//!  0 | magic | opcode|   key length  |
//!  4 | extlen| dtype | vbucket/status|
//!  8 |       total body length       |
//! 12 |            opaque             |
//! 16 |              CAS              |
//! 20 |                               |
//!    +-------+-------+-------+-------+
//! ```
//! All fields are big-endian. `total body length = extras + key + value`.

pub const HEADER_LEN: usize = 24;
pub const REQUEST_MAGIC: u8 = 0x80;
pub const RESPONSE_MAGIC: u8 = 0x81;

pub const OFF_MAGIC: usize = 0;
pub const OFF_OPCODE: usize = 1;
pub const OFF_KEY_LEN: usize = 2;
pub const OFF_EXTRAS_LEN: usize = 4;
pub const OFF_DATA_TYPE: usize = 5;
pub const OFF_STATUS: usize = 6;
pub const OFF_BODY_LEN: usize = 8;
pub const OFF_OPAQUE: usize = 12;
pub const OFF_CAS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    pub magic: u8,
    pub opcode: u8,
    pub key_len: u16,
    pub extras_len: u8,
    pub data_type: u8,
    /// vbucket id in a request, status in a response.
    pub vbucket_or_status: u16,
    pub body_len: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            magic: b[OFF_MAGIC],
            opcode: b[OFF_OPCODE],
            key_len: u16::from_be_bytes([b[OFF_KEY_LEN], b[OFF_KEY_LEN + 1]]),
            extras_len: b[OFF_EXTRAS_LEN],
            data_type: b[OFF_DATA_TYPE],
            vbucket_or_status: u16::from_be_bytes([b[OFF_STATUS], b[OFF_STATUS + 1]]),
            body_len: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            opaque: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            cas: u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        }
    }

    /// Parses the first 24 bytes of `buf`, or `None` if fewer have arrived.
    pub fn peek(buf: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header::parse(b))
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[OFF_MAGIC] = self.magic;
        b[OFF_OPCODE] = self.opcode;
        b[OFF_KEY_LEN..OFF_KEY_LEN + 2].copy_from_slice(&self.key_len.to_be_bytes());
        b[OFF_EXTRAS_LEN] = self.extras_len;
        b[OFF_DATA_TYPE] = self.data_type;
        b[OFF_STATUS..OFF_STATUS + 2].copy_from_slice(&self.vbucket_or_status.to_be_bytes());
        b[OFF_BODY_LEN..OFF_BODY_LEN + 4].copy_from_slice(&self.body_len.to_be_bytes());
        b[OFF_OPAQUE..OFF_OPAQUE + 4].copy_from_slice(&self.opaque.to_be_bytes());
        b[OFF_CAS..OFF_CAS + 8].copy_from_slice(&self.cas.to_be_bytes());
        b
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// Bytes of value after extras and key, if the lengths add up.
    pub fn value_len(&self) -> Option<u32> {
        self.body_len
            .checked_sub(self.extras_len as u32)?
            .checked_sub(self.key_len as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_literal_get_header() {
        let bytes: [u8; 24] = [
            0x80, 0x00, 0x00, 0x05, // magic, GET, key length 5
            0x00, 0x00, 0x00, 0x00, // no extras, raw, vbucket 0
            0x00, 0x00, 0x00, 0x05, // body 5
            0xde, 0xad, 0xbe, 0xef, // opaque
            0, 0, 0, 0, 0, 0, 0, 1, // cas 1
        ];
        let h = Header::parse(&bytes);
        assert_eq!(h.magic, REQUEST_MAGIC);
        assert_eq!(h.opcode, 0);
        assert_eq!(h.key_len, 5);
        assert_eq!(h.body_len, 5);
        assert_eq!(h.opaque, 0xdeadbeef);
        assert_eq!(h.cas, 1);
        assert_eq!(h.value_len(), Some(0));
        assert_eq!(h.to_bytes(), bytes);
    }

    #[test]
    fn lengths_that_do_not_add_up_have_no_value_len() {
        let h = Header { key_len: 10, extras_len: 8, body_len: 12, ..Header::default() };
        assert_eq!(h.value_len(), None);
    }

    #[test]
    fn peek_needs_24_bytes() {
        assert_eq!(Header::peek(&[0x80; 23]), None);
        assert!(Header::peek(&[0x80; 24]).is_some());
    }
}
