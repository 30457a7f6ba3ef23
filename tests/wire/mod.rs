//! A raw binary-protocol client for tests that need exact bytes on the wire, built on the
//! library's own codec (requests encoded, responses decoded).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use caskade::protocol::binary::{Opcode, Request, RequestExtras, Response, Status};

pub struct Wire {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// An owned copy of a decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub opcode: Opcode,
    pub status: Status,
    pub opaque: u32,
    pub cas: u64,
    pub extras: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

pub fn request<'a>(opcode: Opcode, key: &'a [u8], value: &'a [u8], extras: RequestExtras, opaque: u32) -> Request<'a> {
    Request { opcode, data_type: 0, vbucket: 0, opaque, cas: 0, extras, key, value, durability: None }
}

pub fn encode(reqs: &[Request<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in reqs {
        r.encode(&mut out);
    }
    out
}

pub fn set(key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    encode(&[request(Opcode::Set, key, value, RequestExtras::Store { flags: 0, exptime: 0 }, opaque)])
}

pub fn get(key: &[u8], opaque: u32) -> Vec<u8> {
    encode(&[request(Opcode::Get, key, b"", RequestExtras::None, opaque)])
}

pub fn noop(opaque: u32) -> Vec<u8> {
    encode(&[request(Opcode::Noop, b"", b"", RequestExtras::None, opaque)])
}

impl Wire {
    pub fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Wire { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The next response; panics on timeout or a closed connection.
    pub fn recv(&mut self) -> Reply {
        self.try_recv().expect("connection closed before a reply")
    }

    /// The next response, or `None` when the server closed the connection.
    pub fn try_recv(&mut self) -> Option<Reply> {
        loop {
            if let Some((r, used)) = Response::decode(&self.buf).expect("a well-formed response") {
                let reply = Reply {
                    opcode: r.opcode,
                    status: r.status,
                    opaque: r.opaque,
                    cas: r.cas,
                    extras: r.extras.to_vec(),
                    key: r.key.to_vec(),
                    value: r.value.to_vec(),
                };
                self.buf.drain(..used);
                return Some(reply);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Bytes received that do not make a whole response.
    pub fn leftover(&self) -> usize {
        self.buf.len()
    }

    /// A SET then GET round trip on this connection: the server still serves it.
    pub fn assert_serves(&mut self, key: &[u8]) {
        self.send(&set(key, b"alive", 1));
        assert_eq!(self.recv().status, Status::NoError);
        self.send(&get(key, 2));
        let r = self.recv();
        assert_eq!((r.status, r.value.as_slice()), (Status::NoError, &b"alive"[..]));
    }
}
