//! A small blocking memcached binary-protocol client: one request at a time, with a
//! deadline. Nothing read from the socket is trusted: lengths are checked before use.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const GET: u8 = 0x00;
pub const SET: u8 = 0x01;
pub const DELETE: u8 = 0x04;
pub const INCREMENT: u8 = 0x05;
/// Couchbase's GET_REPLICA: the key's first backup copy.
pub const GET_REPLICA: u8 = 0x83;

pub const OK: u16 = 0x0000;
pub const NOT_FOUND: u16 = 0x0001;
pub const EXISTS: u16 = 0x0002;
/// A durable write refused before it ran: too few live copies (no effect).
pub const DURABILITY_IMPOSSIBLE: u16 = 0x00a1;
/// A durable write the backups did not acknowledge in time: applied on the primary, may or
/// may not survive its loss.
pub const SYNC_WRITE_AMBIGUOUS: u16 = 0x00a3;
/// The owner did not answer a forwarded request in time (it may have applied it).
pub const TEMPORARY_FAILURE: u16 = 0x0086;
/// Written, not known to be durable.
pub const STORAGE_ERROR: u16 = 0x0084;

/// Replies larger than this are taken as a broken stream.
const MAX_BODY: usize = 1 << 20;

pub struct Reply {
    pub status: u16,
    pub cas: u64,
    pub value: Vec<u8>,
}

pub struct Client {
    stream: TcpStream,
    opaque: u32,
}

impl Client {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, opaque: 0 })
    }

    pub fn request(&mut self, opcode: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64) -> io::Result<Reply> {
        self.opaque = self.opaque.wrapping_add(1);
        let body = extras.len() + key.len() + value.len();
        let mut out = Vec::with_capacity(24 + body);
        out.extend_from_slice(&[0x80, opcode]);
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
        out.extend_from_slice(&(body as u32).to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&cas.to_be_bytes());
        out.extend_from_slice(extras);
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        self.stream.write_all(&out)?;
        let mut header = [0u8; 24];
        self.stream.read_exact(&mut header)?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if header[0] != 0x81 || header[1] != opcode {
            return Err(bad("not the response to this request"));
        }
        let key_len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let extras_len = header[4] as usize;
        let status = u16::from_be_bytes([header[6], header[7]]);
        let body_len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let opaque = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
        let mut cas_bytes = [0u8; 8];
        cas_bytes.copy_from_slice(&header[16..24]);
        if body_len > MAX_BODY || extras_len + key_len > body_len {
            return Err(bad("inconsistent lengths"));
        }
        let mut body = vec![0u8; body_len];
        self.stream.read_exact(&mut body)?;
        if opaque != self.opaque {
            return Err(bad("another request's opaque"));
        }
        let value = body.split_off(extras_len + key_len);
        Ok(Reply { status, cas: u64::from_be_bytes(cas_bytes), value })
    }

    pub fn get(&mut self, key: &[u8]) -> io::Result<Reply> {
        self.request(GET, key, &[], &[], 0)
    }

    /// GET_REPLICA: the key as its (first) backup holds it.
    pub fn get_replica(&mut self, key: &[u8]) -> io::Result<Reply> {
        self.request(GET_REPLICA, key, &[], &[], 0)
    }

    /// SET, with `cas` 0 for an unconditional one.
    pub fn set(&mut self, key: &[u8], value: &[u8], cas: u64) -> io::Result<Reply> {
        self.request(SET, key, &[0; 8], value, cas)
    }

    pub fn delete(&mut self, key: &[u8]) -> io::Result<Reply> {
        self.request(DELETE, key, &[], &[], 0)
    }

    /// INCREMENT by 1, not creating an absent key (expiration 0xffffffff).
    pub fn incr(&mut self, key: &[u8]) -> io::Result<Reply> {
        let mut extras = [0u8; 20];
        extras[7] = 1;
        extras[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        self.request(INCREMENT, key, &extras, &[], 0)
    }
}

/// A value as the number it must be (every value the clients write is a decimal number).
pub fn number(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// An INCREMENT reply's value: the new value, 8 bytes big-endian.
pub fn counter(value: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = value.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
