//! A small blocking client of the memcached binary protocol, on the crate's own codec: what
//! caskadectl needs to poke at any memcached-protocol server.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use caskade::protocol::binary::{Opcode, Request, RequestExtras, Response, Status};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    stream: TcpStream,
    pub addr: String,
    rbuf: Vec<u8>,
    /// Requests encoded and not yet sent (quiet stores of a restore).
    wbuf: Vec<u8>,
}

/// An owned response.
#[derive(Debug)]
pub struct Reply {
    pub opcode: Opcode,
    pub status: Status,
    pub opaque: u32,
    pub extras: Vec<u8>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Reply {
    fn error(&self) -> String {
        let text = String::from_utf8_lossy(&self.value);
        if text.is_empty() {
            format!("{:?}", self.status)
        } else {
            text.into_owned()
        }
    }
}

fn req<'a>(opcode: Opcode, key: &'a [u8], value: &'a [u8], extras: RequestExtras, opaque: u32) -> Request<'a> {
    Request { opcode, data_type: 0, vbucket: 0, opaque, cas: 0, extras, key, value, durability: None }
}

impl Client {
    pub fn connect(addr: &str) -> Result<Client, String> {
        let addrs: Vec<_> = addr.to_socket_addrs().map_err(|e| format!("{addr}: {e}"))?.collect();
        let mut last = format!("{addr}: no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
                    return Ok(Client { stream, addr: addr.to_string(), rbuf: Vec::new(), wbuf: Vec::new() });
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        Err(last)
    }

    fn io_error(&self, e: std::io::Error) -> String {
        format!("{}: {e}", self.addr)
    }

    fn send(&mut self, r: &Request<'_>) -> Result<(), String> {
        r.encode(&mut self.wbuf);
        self.flush()
    }

    fn flush(&mut self) -> Result<(), String> {
        let buf = std::mem::take(&mut self.wbuf);
        self.stream.write_all(&buf).map_err(|e| self.io_error(e))
    }

    pub fn recv(&mut self) -> Result<Reply, String> {
        loop {
            match Response::decode(&self.rbuf) {
                Ok(Some((r, used))) => {
                    let reply = Reply {
                        opcode: r.opcode,
                        status: r.status,
                        opaque: r.opaque,
                        extras: r.extras.to_vec(),
                        key: r.key.to_vec(),
                        value: r.value.to_vec(),
                    };
                    self.rbuf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("{}: not a memcached binary-protocol reply ({e:?})", self.addr)),
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).map_err(|e| self.io_error(e))?;
            if n == 0 {
                return Err(format!("{}: the server closed the connection", self.addr));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    fn call(&mut self, r: &Request<'_>) -> Result<Reply, String> {
        self.send(r)?;
        self.recv()
    }

    /// The general STAT list.
    pub fn stats(&mut self) -> Result<Vec<(String, String)>, String> {
        self.stats_group(b"")
    }

    /// One STAT group's list (`cluster`, `settings`, ...).
    pub fn stats_group(&mut self, group: &[u8]) -> Result<Vec<(String, String)>, String> {
        self.send(&req(Opcode::Stat, group, b"", RequestExtras::None, 0))?;
        let mut out = Vec::new();
        loop {
            let r = self.recv()?;
            if r.status != Status::NoError {
                return Err(format!("{}: STAT failed: {}", self.addr, r.error()));
            }
            if r.key.is_empty() {
                return Ok(out);
            }
            out.push((String::from_utf8_lossy(&r.key).into_owned(), String::from_utf8_lossy(&r.value).into_owned()));
        }
    }

    /// The value and flags of `key`, or `None` when it is not there.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, String> {
        let r = self.call(&req(Opcode::Get, key, b"", RequestExtras::None, 0))?;
        match r.status {
            Status::NoError => {
                let flags = r.extras.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                Ok(Some((r.value, flags)))
            }
            Status::KeyNotFound => Ok(None),
            _ => Err(format!("get {}: {}", String::from_utf8_lossy(key), r.error())),
        }
    }

    pub fn set(&mut self, key: &[u8], value: &[u8], flags: u32, exptime: u32) -> Result<(), String> {
        let r = self.call(&req(Opcode::Set, key, value, RequestExtras::Store { flags, exptime }, 0))?;
        match r.status {
            Status::NoError => Ok(()),
            _ => Err(format!("set {}: {}", String::from_utf8_lossy(key), r.error())),
        }
    }

    /// `true` if the key was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, String> {
        let r = self.call(&req(Opcode::Delete, key, b"", RequestExtras::None, 0))?;
        match r.status {
            Status::NoError => Ok(true),
            Status::KeyNotFound => Ok(false),
            _ => Err(format!("delete {}: {}", String::from_utf8_lossy(key), r.error())),
        }
    }

    pub fn flush_all(&mut self) -> Result<(), String> {
        let r = self.call(&req(Opcode::Flush, b"", b"", RequestExtras::None, 0))?;
        match r.status {
            Status::NoError => Ok(()),
            _ => Err(format!("flush: {}", r.error())),
        }
    }

    /// Queues a quiet SET (SETQ): the server answers only if it fails.
    pub fn queue_set(&mut self, key: &[u8], value: &[u8], flags: u32, exptime: u32, opaque: u32) {
        req(Opcode::SetQ, key, value, RequestExtras::Store { flags, exptime }, opaque).encode(&mut self.wbuf);
    }

    pub fn queued_bytes(&self) -> usize {
        self.wbuf.len()
    }

    /// Sends what is queued and a NOOP, and returns the failures the server reported
    /// before the NOOP's answer: (opaque, error).
    pub fn sync(&mut self) -> Result<Vec<(u32, String)>, String> {
        const SYNC_OPAQUE: u32 = u32::MAX;
        req(Opcode::Noop, b"", b"", RequestExtras::None, SYNC_OPAQUE).encode(&mut self.wbuf);
        self.flush()?;
        let mut failed = Vec::new();
        loop {
            let r = self.recv()?;
            if r.opcode == Opcode::Noop && r.opaque == SYNC_OPAQUE {
                return Ok(failed);
            }
            failed.push((r.opaque, r.error()));
        }
    }
}
