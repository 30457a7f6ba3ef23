//! A small binary-protocol client for tests that kill the server under it: every failure
//! of the connection (closed, reset, broken pipe, timeout) is `None`, never a panic, so a
//! test can tell a reply from a connection the server dropped.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use caskade::protocol::binary::{Opcode, Request, RequestExtras, Response, Status};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub opcode: Opcode,
    pub status: Status,
    pub opaque: u32,
    pub cas: u64,
    pub value: Vec<u8>,
}

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn encode(opcode: Opcode, key: &[u8], value: &[u8], extras: RequestExtras, opaque: u32, cas: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Request { opcode, data_type: 0, vbucket: 0, opaque, cas, extras, key, value, durability: None }.encode(&mut out);
    out
}

pub fn set_request(key: &[u8], value: &[u8], exptime: u32, opaque: u32) -> Vec<u8> {
    encode(Opcode::Set, key, value, RequestExtras::Store { flags: opaque, exptime }, opaque, 0)
}

pub fn get_request(key: &[u8], opaque: u32) -> Vec<u8> {
    encode(Opcode::Get, key, b"", RequestExtras::None, opaque, 0)
}

pub fn flush_request(delay: u32, opaque: u32) -> Vec<u8> {
    encode(Opcode::Flush, b"", b"", RequestExtras::Expiry(delay), opaque, 0)
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, buf: Vec::new() })
    }

    /// Sends bytes; `false` if the connection is gone.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next reply, or `None` once the connection is closed or broken.
    pub fn recv(&mut self) -> Option<Reply> {
        loop {
            match Response::decode(&self.buf) {
                Ok(Some((r, used))) => {
                    let reply = Reply { opcode: r.opcode, status: r.status, opaque: r.opaque, cas: r.cas, value: r.value.to_vec() };
                    self.buf.drain(..used);
                    return Some(reply);
                }
                Ok(None) => {}
                Err(e) => panic!("a malformed response from the server: {e:?}"),
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn round_trip(&mut self, request: &[u8]) -> Option<Reply> {
        if !self.send(request) {
            return None;
        }
        self.recv()
    }

    /// SET with no expiry; the status, or `None` if the connection went.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Option<Status> {
        self.round_trip(&set_request(key, value, 0, 0)).map(|r| r.status)
    }

    pub fn set_with_ttl(&mut self, key: &[u8], value: &[u8], exptime: u32) -> Option<Reply> {
        self.round_trip(&set_request(key, value, exptime, 0))
    }

    /// GET: `Some(Some(value))` for a hit, `Some(None)` for a miss, `None` if the connection
    /// went; any other status panics.
    pub fn get(&mut self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let r = self.get_reply(key)?;
        match r.status {
            Status::NoError => Some(Some(r.value)),
            Status::KeyNotFound => Some(None),
            other => panic!("GET {}: {other:?}", String::from_utf8_lossy(key)),
        }
    }

    pub fn get_reply(&mut self, key: &[u8]) -> Option<Reply> {
        self.round_trip(&get_request(key, 0))
    }

    pub fn flush(&mut self, delay: u32) -> Option<Status> {
        self.round_trip(&flush_request(delay, 0)).map(|r| r.status)
    }
}
