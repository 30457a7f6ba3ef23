//! One client connection: its socket, its read buffer, and its replies in request order.
//!
//! Replies are appended to `wbuf` while nothing is outstanding. Once a request has gone to
//! another core, everything after it waits in `pending` (one slot per outstanding request,
//! which also holds the replies produced locally after that request) and moves to `wbuf`
//! when the slots before it are complete. So replies leave in request order, and in as few writes as
//! the socket allows.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::protocol::Protocol;

/// Bytes read per `read` call at least.
const READ_CHUNK: usize = 16 * 1024;
/// Stop reading new requests while this many reply bytes wait for the socket.
pub const WRITE_HIGH_WATER: usize = 4 * 1024 * 1024;
/// Stop reading new requests while this many replies are outstanding (sent to another core,
/// or held for a commit): their sizes are not known until they come back, so this bounds
/// what one connection can make the server buffer to this many items.
pub const MAX_OUTSTANDING: usize = 64;

struct Slot {
    seq: u64,
    bytes: Vec<u8>,
    /// Replies still to come before this slot is complete.
    waiting: u32,
    /// `bytes.len()` when a later slot was opened (counted in `Connection::frozen`).
    frozen: usize,
    /// How many of `bytes` are the slot's own reply (a flush's), which a failure replaces.
    head: usize,
}

pub struct Connection {
    pub socket: TcpStream,
    pub generation: u64,
    /// Fixed by the first byte the client sends.
    pub protocol: Option<Protocol>,
    rbuf: Vec<u8>,
    /// `rbuf[rstart..rend]` holds bytes read and not yet consumed.
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    pending: VecDeque<Slot>,
    next_seq: u64,
    /// Bytes of a refused request (a binary body, a text data block) still to discard.
    pub skip: u64,
    /// Close once every reply has been written.
    pub closing: bool,
    /// Bytes of the slots before the last one, as they were when the next one opened.
    frozen: usize,
    /// Bytes of this connection's replies held by its core until a commit (`held.rs`).
    pub held: usize,
    /// Reading stopped because [`backlog`](Self::backlog) passed the high-water mark; it
    /// resumes once written replies bring it back under.
    pub throttled: bool,
    /// A connection to the peer port: where its handshake stands.
    pub peer: Option<crate::server::peer::serve::Session>,
    /// Replies outstanding past which reading pauses: [`MAX_OUTSTANDING`] for a client; for
    /// a peer link, which carries the requests of all of a core's clients, the sender's
    /// `max_in_flight` (under group commit every reply waits for an fsync).
    pub max_outstanding: usize,
    /// When the connection was accepted (unix seconds): a peer connection must finish its
    /// handshake within [`HANDSHAKE_SECONDS`](crate::server::peer::HANDSHAKE_SECONDS).
    pub accepted_at: u32,
    /// Unix seconds of the last bytes read (`stats conns`' `secs_since_last_cmd`).
    pub last_read: u32,
    /// The client's address and the listener's, kept from the accept for `stats conns`.
    pub addrs: Option<(std::net::SocketAddr, Option<std::net::SocketAddr>)>,
    /// Set once the connection sent `watch`: it gets log lines only.
    pub watcher: Option<std::sync::Arc<crate::server::watch::Watcher>>,
}

pub enum ReadStatus {
    /// Bytes were added (how many); `drained`: fewer than there was room for, so the socket
    /// had no more (epoll(7): for a stream socket a short read shows that the input was
    /// exhausted, and data that arrives later raises a new edge).
    Data { n: usize, drained: bool },
    /// Nothing more to read for now.
    WouldBlock,
    /// The peer closed its side, or the socket failed.
    Closed,
}

impl Connection {
    pub fn new(socket: TcpStream, generation: u64) -> Connection {
        Connection {
            socket,
            generation,
            protocol: None,
            rbuf: Vec::new(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            wpos: 0,
            pending: VecDeque::new(),
            next_seq: 0,
            skip: 0,
            closing: false,
            frozen: 0,
            held: 0,
            throttled: false,
            peer: None,
            max_outstanding: MAX_OUTSTANDING,
            accepted_at: 0,
            last_read: 0,
            addrs: None,
            watcher: None,
        }
    }

    /// Puts bytes read by another core (a peer connection handed over) before what is read next.
    pub fn prefill(&mut self, bytes: &[u8]) {
        self.rbuf.extend_from_slice(bytes);
        self.rend = self.rbuf.len();
    }

    /// Replaces the own reply of slot `seq` (a flush's acknowledgement) by `bytes`: another
    /// node could not run it. Only the first replacement counts.
    pub fn replace_head(&mut self, seq: u64, bytes: &[u8]) {
        let Some(front) = self.pending.front() else { return };
        let index = seq.wrapping_sub(front.seq) as usize;
        let Some(slot) = self.pending.get_mut(index) else { return };
        if slot.head == usize::MAX {
            return;
        }
        let head = slot.head.min(slot.bytes.len());
        slot.bytes.splice(0..head, bytes.iter().copied());
        slot.head = usize::MAX;
    }

    /// Reads once into the buffer, making room for at least `want` unread bytes in all.
    pub fn read_some(&mut self, want: usize) -> ReadStatus {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        let needed = want.max(self.rend - self.rstart + READ_CHUNK);
        if self.rbuf.len() - self.rstart < needed {
            // Move the unread bytes to the front, then grow if that is not enough.
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
            if self.rbuf.len() < needed {
                self.rbuf.resize(needed, 0);
            }
        }
        let room = self.rbuf.len() - self.rend;
        loop {
            match self.socket.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => return ReadStatus::Closed,
                Ok(n) => {
                    self.rend += n;
                    return ReadStatus::Data { n, drained: n < room };
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadStatus::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("read failed: {e}");
                    return ReadStatus::Closed;
                }
            }
        }
    }

    /// The unread bytes.
    pub fn unread(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    /// Takes the read buffer out so requests can borrow it while replies are written.
    pub fn take_input(&mut self) -> (Vec<u8>, usize, usize) {
        (std::mem::take(&mut self.rbuf), self.rstart, self.rend)
    }

    pub fn restore_input(&mut self, rbuf: Vec<u8>, rstart: usize) {
        self.rbuf = rbuf;
        self.rstart = rstart;
    }

    /// Discards what is left of a refused request from `input[*pos..end]`; `false` while
    /// some of it has still to arrive.
    pub fn discard(&mut self, pos: &mut usize, end: usize) -> bool {
        if self.skip > 0 {
            let n = self.skip.min((end - *pos) as u64);
            *pos += n as usize;
            self.skip -= n;
        }
        self.skip == 0
    }

    /// Where the next reply goes: straight to the socket buffer, or after outstanding ones.
    ///
    /// Behind an outstanding reply, local bytes join the last slot: a slot's own bytes leave
    /// after the replies it waits for, which is request order (a text `get` of a remote key
    /// puts its `END` there without a slot of its own).
    pub fn out(&mut self) -> &mut Vec<u8> {
        match self.pending.back_mut() {
            None => &mut self.wbuf,
            Some(slot) => &mut slot.bytes,
        }
    }

    /// Reserves the place of a reply that `waiting` other cores will complete; `bytes` is
    /// sent after theirs. Returns the slot's sequence number.
    pub fn expect_replies(&mut self, waiting: u32, bytes: Vec<u8>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(back) = self.pending.back_mut() {
            back.frozen = back.bytes.len();
            self.frozen += back.frozen;
        }
        let head = bytes.len();
        self.pending.push_back(Slot { seq, bytes, waiting, frozen: 0, head });
        seq
    }

    /// A reply for slot `seq` (from another core, or held for a commit); moves every
    /// complete slot at the front to `wbuf`.
    pub fn complete(&mut self, seq: u64, bytes: &[u8]) {
        let Some(front) = self.pending.front() else { return };
        let index = seq.wrapping_sub(front.seq) as usize;
        let Some(slot) = self.pending.get_mut(index) else { return };
        debug_assert_eq!(slot.seq, seq);
        slot.waiting = slot.waiting.saturating_sub(1);
        if index == 0 && slot.waiting == 0 {
            // The usual case: the front slot's last reply. It goes straight out, then the
            // slot's own bytes, with no copy into the slot first.
            let slot = self.pending.pop_front().expect("front exists");
            self.frozen -= slot.frozen;
            self.wbuf.extend_from_slice(bytes);
            self.append_to_wbuf(slot.bytes);
        } else if !bytes.is_empty() {
            // A reply goes before the local bytes queued in its slot (a flush's own reply,
            // replies to the requests that came after it).
            slot.bytes.splice(0..0, bytes.iter().copied());
        }
        while self.pending.front().is_some_and(|s| s.waiting == 0) {
            let slot = self.pending.pop_front().expect("front exists");
            self.frozen -= slot.frozen;
            self.append_to_wbuf(slot.bytes);
        }
    }

    fn append_to_wbuf(&mut self, bytes: Vec<u8>) {
        if self.wbuf.is_empty() && bytes.capacity() > self.wbuf.capacity() {
            self.wbuf = bytes;
        } else {
            self.wbuf.extend_from_slice(&bytes);
        }
    }

    /// Reply bytes not yet taken by the socket.
    pub fn unwritten(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Reply bytes this connection has made and the socket has not taken: written, queued
    /// behind outstanding replies, or held for a commit. Reading stops while this is over
    /// [`WRITE_HIGH_WATER`], so a client that does not read its replies cannot make the
    /// server buffer without bound.
    pub fn backlog(&self) -> usize {
        self.unwritten() + self.frozen + self.pending.back().map_or(0, |s| s.bytes.len()) + self.held
    }

    /// Whether reading must pause: too many reply bytes waiting, or too many replies
    /// outstanding.
    pub fn is_backed_up(&self) -> bool {
        self.backlog() > WRITE_HIGH_WATER || self.pending.len() > self.max_outstanding
    }

    /// [`is_backed_up`](Self::is_backed_up), marking the connection to resume once it is not.
    pub fn over_high_water(&mut self) -> bool {
        let over = self.is_backed_up();
        self.throttled |= over;
        over
    }

    /// Writes what is ready. `Err` means the connection is broken.
    pub fn write(&mut self) -> io::Result<usize> {
        let mut written = 0;
        while self.wpos < self.wbuf.len() {
            match self.socket.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
            if self.wbuf.capacity() > WRITE_HIGH_WATER {
                self.wbuf = Vec::new();
            }
        }
        Ok(written)
    }

    /// Nothing left to send or to wait for.
    pub fn is_idle_for_close(&self) -> bool {
        self.pending.is_empty() && self.unwritten() == 0
    }

    /// Gives back memory held after a large request.
    pub fn shrink_if_idle(&mut self) {
        if self.rstart == self.rend && self.rbuf.len() > 4 * READ_CHUNK {
            self.rbuf = Vec::new();
            self.rstart = 0;
            self.rend = 0;
        }
    }
}
