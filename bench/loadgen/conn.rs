//! One client connection: its socket, a read buffer that responses are decoded from in
//! place, a write buffer that a whole refill is encoded into and sent with one `write()`,
//! and the queue of requests in flight. Buffers are allocated once and reused.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

/// What a request in flight asked for; the response must echo its opaque and opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
}

#[derive(Clone, Copy, Debug)]
pub struct InFlight {
    pub opaque: u32,
    pub op: Op,
    /// When the write that carried it was issued.
    pub sent: Instant,
    /// A YCSB read-modify-write's GET: the key number to SET once it is answered.
    pub then_set: Option<u64>,
}

/// Which keys a connection sends next.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    /// Random keys and operations, by the thread's budget and the set:get ratio.
    Mix,
    /// SET keys `next..end` in order (the prefill).
    Range { next: u64, end: u64 },
}

/// How a connection ended before its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The server closed the connection or the socket failed.
    Closed,
    /// A frame we could not accept: bad magic, bad lengths, an opaque or opcode that does
    /// not match the request in flight, a response nobody asked for.
    Protocol,
}

/// A read that fills less than this much of the buffer's free space is not worth a
/// syscall: compact first.
const MIN_READ_ROOM: usize = 4096;

pub struct Conn {
    pub stream: TcpStream,
    pub alive: bool,
    pub plan: Plan,
    pub inflight: VecDeque<InFlight>,
    /// Key numbers whose read-modify-write GET was answered: their SETs go out first.
    pub due_sets: VecDeque<u64>,
    pub next_opaque: u32,
    /// Bytes `rstart..rend` of `rbuf` have been read and not yet decoded.
    pub rbuf: Vec<u8>,
    pub rstart: usize,
    pub rend: usize,
    /// Bytes `wpos..` of `wbuf` are encoded and not yet written.
    pub wbuf: Vec<u8>,
    pub wpos: usize,
}

pub enum ReadOutcome {
    /// New bytes are in `rbuf[rstart..rend]`; `drained` when the socket had no more.
    Data {
        drained: bool,
    },
    /// Nothing to read now.
    WouldBlock,
    Closed,
}

impl Conn {
    pub fn new(stream: TcpStream, depth: usize, rbuf_len: usize, wbuf_len: usize) -> Conn {
        Conn {
            stream,
            alive: true,
            plan: Plan::Mix,
            inflight: VecDeque::with_capacity(depth),
            due_sets: VecDeque::with_capacity(depth),
            next_opaque: 0,
            rbuf: vec![0; rbuf_len],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(wbuf_len),
            wpos: 0,
        }
    }

    /// Reads once into the free end of the read buffer, compacting or (for a frame larger
    /// than the buffer) growing it first.
    pub fn read_some(&mut self) -> ReadOutcome {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        if self.rbuf.len() - self.rend < MIN_READ_ROOM {
            if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            }
            if self.rbuf.len() - self.rend < MIN_READ_ROOM {
                let grown = self.rbuf.len() * 2;
                self.rbuf.resize(grown, 0);
            }
        }
        let room = self.rbuf.len() - self.rend;
        loop {
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.rend += n;
                    // On Linux, epoll reports every arrival of data, so a read that did
                    // not fill the buffer has drained the socket and saves the extra
                    // read that would only say WouldBlock.
                    return ReadOutcome::Data { drained: n < room };
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Writes what is pending. `Ok(())` also when the socket is full: the rest goes out
    /// on the next writable event.
    pub fn flush(&mut self) -> Result<(), Fault> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(Fault::Closed),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Fault::Closed),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        Ok(())
    }

    pub fn take_opaque(&mut self) -> u32 {
        let o = self.next_opaque;
        self.next_opaque = o.wrapping_add(1);
        o
    }
}
