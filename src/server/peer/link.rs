//! Peer links: one core's connections to cores of other nodes, which carry the requests
//! this core forwards and bring their outcomes back.
//!
//! A link is made when first needed, authenticates (`protocol::peer::auth`), then carries
//! requests pipelined: each is written into the link's buffer, and all a turn wrote leave
//! in one `write(2)` at the end of the turn. The owner answers in request order, so the
//! requests in flight are a queue: a response must match the front one's opaque.
//!
//! A link that fails (refused, reset, a frame that makes no sense, or no answer within the
//! forward timeout) is closed; every request in flight on it is answered with a temporary
//! failure, in order, and it stays down for a backoff (50 ms, doubling to 2 s) during which
//! requests for it fail at once. The next request after the backoff reconnects. Changes of
//! state are logged once each, not per request.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::Cluster;
use crate::protocol::peer::auth::{self, Hello, HelloOk, Role, Transcript};
use crate::protocol::peer::{self, forward, Frame, Op};
use crate::protocol::ReplyTo;
use crate::server::mailbox::ReturnAddress;
use crate::storage::{Command, Outcome};

/// Tokens from here up are peer links (`Token(LINK_TOKEN_BASE + slab index)`).
pub const LINK_TOKEN_BASE: usize = 1 << 40;

pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// HELLO written (or waiting for the connection to finish); waiting for its answer.
    Hello,
    /// AUTH written: requests flow; the AUTH answer is still to come.
    Up,
    /// Closed until `retry_at`.
    Down,
}

/// A request in flight, and where its outcome goes.
pub struct InFlight {
    pub opaque: u32,
    pub to: ReturnAddress,
    pub reply: ReplyTo,
    /// A flush's acknowledgement: success adds nothing to the reply, failure replaces it.
    pub flush: bool,
    /// Sent to a core of the peer that does not own its partition (which passes it on).
    pub hops: bool,
    pub sent: Instant,
    pub deadline: Instant,
    /// A replication frame: its answer goes to the core's streams, not to a connection.
    pub repl: bool,
}

struct Link {
    node: usize,
    core: u16,
    state: State,
    socket: Option<TcpStream>,
    rbuf: Vec<u8>,
    /// Bytes of `rbuf` read and not yet parsed.
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Requests made before the handshake is through, sent right after AUTH.
    queued: Vec<u8>,
    in_flight: VecDeque<InFlight>,
    next_opaque: u32,
    nonce: auth::Nonce,
    /// AUTH answered OK: the link counts as up.
    authenticated: bool,
    backoff: Duration,
    retry_at: Instant,
    /// Why the link last went down, as logged: a link that keeps failing the same way says
    /// so once; a new reason is logged again.
    said_down: Option<String>,
    /// Requests in flight sent here for partitions this peer core does not own.
    hopping: usize,
    /// Kept up whether or not requests need it (core 0's link to each node's core 0, and
    /// the links replication streams use).
    keep: bool,
    /// Counts the times AUTH succeeded: a stream opened on one incarnation of the link is
    /// void on the next.
    generation: u64,
    /// Answers to replication frames, in order, for the core's streams to take.
    repl_answers: Vec<ReplAnswer>,
}

/// An answer to a replication frame.
pub struct ReplAnswer {
    pub op: Op,
    pub status: u16,
    pub value: Vec<u8>,
}

/// What a link delivers: a request's outcome (the key echoed by the owner).
pub struct Delivery<'a> {
    pub req: InFlight,
    pub key: &'a [u8],
    pub outcome: Outcome<&'a [u8]>,
}

/// Why a request was not sent: the caller answers it with a temporary failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSent {
    /// The link is down and in its backoff, or cannot connect.
    Down,
    /// The link has `max_in_flight` requests waiting already.
    Full,
}

/// One core's links.
#[derive(Default)]
pub struct Links {
    links: Slab<Link>,
    by_dest: ahash::AHashMap<(usize, u16), usize>,
    dirty: Vec<usize>,
}

impl Links {
    /// Whether some request waits for an answer (the loop then wakes often enough to time
    /// them out).
    pub fn busy(&self) -> bool {
        self.links.iter().any(|(_, l)| !l.in_flight.is_empty())
    }

    /// Sends `cmd` for partition `p` to `node`; `Err` when the link cannot take it now: the
    /// caller answers with a temporary failure.
    #[allow(clippy::too_many_arguments)] // The request, where it goes, and where its answer goes.
    pub fn submit(
        &mut self,
        cluster: &Cluster,
        registry: &Registry,
        this_core: usize,
        node: usize,
        p: u16,
        cmd: &Command<&[u8]>,
        req: InFlightReq,
    ) -> Result<(), NotSent> {
        self.submit_as(cluster, registry, this_core, node, p, cmd, req, false)
    }

    /// Sends a GET of `node`'s backup copy (GET_REPLICA) the way [`submit`](Self::submit)
    /// sends a forwarded command.
    #[allow(clippy::too_many_arguments)]
    pub fn submit_replica_get(
        &mut self,
        cluster: &Cluster,
        registry: &Registry,
        this_core: usize,
        node: usize,
        p: u16,
        cmd: &Command<&[u8]>,
        req: InFlightReq,
    ) -> Result<(), NotSent> {
        self.submit_as(cluster, registry, this_core, node, p, cmd, req, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn submit_as(
        &mut self,
        cluster: &Cluster,
        registry: &Registry,
        this_core: usize,
        node: usize,
        p: u16,
        cmd: &Command<&[u8]>,
        req: InFlightReq,
        replica: bool,
    ) -> Result<(), NotSent> {
        let mut core = cluster.core_on(node, p);
        // Requests sent to B's core 0 before B's core count was known hop through core 0's
        // mailbox; until they are answered, later ones take the same path, so that no
        // request overtakes an earlier one of the same connection.
        if core != 0 && self.by_dest.get(&(node, 0)).is_some_and(|&i| self.links[i].hopping > 0) {
            core = 0;
        }
        let idx = self.link(node, core);
        let now = Instant::now();
        let peer = &cluster.peers[node];
        let link = &mut self.links[idx];
        if link.state == State::Down {
            // A backoff about to end: the request waits for the next attempt (made by
            // `tick`), so a node that has just come back is not refused for a whole backoff;
            // a longer one: answered at once, unless another link to the node is up.
            // Another link to the node is up (it has come back): no reason to wait.
            let reachable = peer.links_up.load(Relaxed) > 0;
            if now < link.retry_at && !reachable {
                if link.retry_at - now > cluster.file.forward_timeout / 2 {
                    peer.errors.fetch_add(1, Relaxed);
                    return Err(NotSent::Down);
                }
            } else if let Err(e) = link.connect(cluster, registry, idx, this_core) {
                // Only this request is answered here; requests already waiting on the link
                // are failed by `tick`, which tries again at once and delivers their answers.
                log::debug!("core {this_core}: cannot connect to node {}: {e}", cluster.node_id(node));
                link.retry_at = now;
                peer.errors.fetch_add(1, Relaxed);
                return Err(NotSent::Down);
            }
        }
        if link.in_flight.len() >= cluster.file.max_in_flight {
            peer.errors.fetch_add(1, Relaxed);
            return Err(NotSent::Full);
        }
        let opaque = link.next_opaque;
        link.next_opaque = link.next_opaque.wrapping_add(1);
        let out = if link.state == State::Up { &mut link.wbuf } else { &mut link.queued };
        let at = out.len();
        forward::write_request(out, p, opaque, cmd, req.reply.then_touch(), req.reply.durability());
        if replica {
            // The same frame as a forwarded GET, under GET_REPLICA's opcode (byte 1).
            out[at + 1] = Op::GetReplica.to_u8();
        }
        let cores = cluster.peer_cores[node].load(Relaxed);
        let hops = cores == 0 || p % cores != link.core;
        link.hopping += hops as usize;
        link.in_flight.push_back(InFlight {
            opaque,
            to: req.to,
            reply: req.reply,
            flush: req.flush,
            hops,
            sent: now,
            deadline: now + forward_deadline(cluster),
            repl: false,
        });
        peer.forwarded.fetch_add(1, Relaxed);
        peer.in_flight.fetch_add(1, Relaxed);
        self.dirty.push(idx);
        Ok(())
    }

    fn link(&mut self, node: usize, core: u16) -> usize {
        if let Some(&idx) = self.by_dest.get(&(node, core)) {
            return idx;
        }
        let idx = self.links.insert(Link {
            node,
            core,
            state: State::Down,
            socket: None,
            rbuf: Vec::new(),
            rlen: 0,
            wbuf: Vec::new(),
            wpos: 0,
            queued: Vec::new(),
            in_flight: VecDeque::new(),
            next_opaque: 1,
            nonce: [0; auth::NONCE_LEN],
            authenticated: false,
            backoff: BACKOFF_FIRST,
            retry_at: Instant::now(),
            said_down: None,
            hopping: 0,
            keep: false,
            generation: 0,
            repl_answers: Vec::new(),
        });
        self.by_dest.insert((node, core), idx);
        idx
    }

    /// The link replication uses to `node`'s core `core`, kept up from now on: its
    /// generation if it is up (authenticated), `None` if not.
    pub fn repl_link(&mut self, node: usize, core: u16) -> Option<u64> {
        let idx = self.link(node, core);
        let link = &mut self.links[idx];
        link.keep = true;
        (link.authenticated && link.state == State::Up).then_some(link.generation)
    }

    /// Sends a replication frame (`write` gets the buffer and the opaque) on an
    /// authenticated link.
    pub fn submit_repl(&mut self, cluster: &Cluster, node: usize, core: u16, op: Op, write: impl FnOnce(&mut Vec<u8>, u32)) -> Result<(), NotSent> {
        let Some(&idx) = self.by_dest.get(&(node, core)) else { return Err(NotSent::Down) };
        let link = &mut self.links[idx];
        if !(link.authenticated && link.state == State::Up) {
            return Err(NotSent::Down);
        }
        let opaque = link.next_opaque;
        link.next_opaque = link.next_opaque.wrapping_add(1);
        write(&mut link.wbuf, opaque);
        let now = Instant::now();
        link.in_flight.push_back(InFlight {
            opaque,
            to: ReturnAddress { core: 0, conn: 0, generation: 0, seq: 0, read_at: 0, op: None },
            reply: ReplyTo::Peer(crate::protocol::PeerReply { op, opaque, then_touch: None, durability: None }),
            flush: false,
            hops: false,
            sent: now,
            deadline: now + cluster.file.forward_timeout.max(Duration::from_secs(10)),
            repl: true,
        });
        cluster.peers[node].in_flight.fetch_add(1, Relaxed);
        self.dirty.push(idx);
        Ok(())
    }

    /// Moves the answers to replication frames `node`'s core `core` sent into `into`.
    pub fn take_repl_answers(&mut self, node: usize, core: u16, into: &mut Vec<ReplAnswer>) {
        if let Some(&idx) = self.by_dest.get(&(node, core)) {
            into.append(&mut self.links[idx].repl_answers);
        }
    }

    /// Writes what this turn gave each link: one `write(2)` per link.
    pub fn write_dirty(&mut self, cluster: &Cluster, registry: &Registry, this_core: usize, deliver: &mut impl FnMut(Delivery<'_>)) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &idx in &dirty {
            if let Some(link) = self.links.get_mut(idx) {
                if let Err(e) = link.write() {
                    link.down(cluster, this_core, &format!("write failed: {e}"), registry, deliver);
                }
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// A readiness event for the link behind `token`.
    /// `read_closed`: the event says the peer closed its side (then the socket is read to its
    /// end even after a short read, or that end would go unseen: edge-triggered readiness
    /// does not report it again).
    #[allow(clippy::too_many_arguments)]
    pub fn on_event(
        &mut self,
        token: Token,
        read_closed: bool,
        cluster: &Cluster,
        registry: &Registry,
        this_core: usize,
        deliver: &mut impl FnMut(Delivery<'_>),
    ) {
        let idx = token.0 - LINK_TOKEN_BASE;
        let Some(link) = self.links.get_mut(idx) else { return };
        if link.state == State::Down {
            return;
        }
        if let Err(reason) = link.on_event(read_closed, cluster, this_core, deliver) {
            link.down(cluster, this_core, &reason, registry, deliver);
        }
    }

    /// Makes the links kept up whatever the load: to core 0 of every other node.
    pub fn keep_up(&mut self, cluster: &Cluster) {
        for node in (0..cluster.map.nodes().len()).filter(|&n| n != cluster.me) {
            let idx = self.link(node, 0);
            self.links[idx].keep = true;
        }
    }

    /// Fails the links whose oldest request has waited past its deadline (see
    /// [`forward_deadline`]), and reconnects
    /// the kept ones whose backoff is over.
    pub fn tick(&mut self, cluster: &Cluster, registry: &Registry, this_core: usize, deliver: &mut impl FnMut(Delivery<'_>)) {
        let now = Instant::now();
        for (idx, link) in self.links.iter_mut() {
            if link.in_flight.front().is_some_and(|r| r.deadline <= now) {
                let reason = format!("no answer within {:?}", link.in_flight.front().map_or(cluster.file.forward_timeout, |r| r.deadline - r.sent));
                link.down(cluster, this_core, &reason, registry, deliver);
            }
            let wanted = link.keep || !link.in_flight.is_empty();
            if wanted && link.state == State::Down && now >= link.retry_at {
                if let Err(e) = link.connect(cluster, registry, idx, this_core) {
                    link.down(cluster, this_core, &format!("cannot connect: {e}"), registry, deliver);
                }
            }
        }
    }

    /// Whether a kept link, or one with requests waiting, waits to reconnect (the loop then
    /// wakes for it).
    pub fn reconnecting(&self) -> bool {
        self.links.iter().any(|(_, l)| (l.keep || !l.in_flight.is_empty()) && l.state == State::Down)
    }

    /// Closes every link (the node is stopping), answering what is in flight.
    pub fn close_all(&mut self, cluster: &Cluster, registry: &Registry, this_core: usize, deliver: &mut impl FnMut(Delivery<'_>)) {
        for (_, link) in self.links.iter_mut() {
            if link.state != State::Down {
                link.said_down = Some("stopping".into());
                link.down(cluster, this_core, "stopping", registry, deliver);
            }
        }
    }
}

/// What the caller of [`Links::submit`] says about the request.
pub struct InFlightReq {
    pub to: ReturnAddress,
    pub reply: ReplyTo,
    pub flush: bool,
}

impl Link {
    fn connect(&mut self, cluster: &Cluster, registry: &Registry, idx: usize, this_core: usize) -> io::Result<()> {
        let addr = cluster.peer_addrs[self.node];
        let mut socket = TcpStream::connect(addr)?;
        let _ = socket.set_nodelay(true);
        registry.register(&mut socket, Token(LINK_TOKEN_BASE + idx), Interest::READABLE | Interest::WRITABLE)?;
        self.socket = Some(socket);
        self.nonce = auth::nonce();
        self.wbuf.clear();
        self.wpos = 0;
        self.rlen = 0;
        self.authenticated = false;
        Hello {
            version: peer::VERSION,
            target_core: self.core,
            map_checksum: cluster.map.checksum(),
            node_id: cluster.node_id(cluster.me).as_bytes(),
            nonce: self.nonce,
            cluster: cluster.map.name().as_bytes(),
        }
        .write(&mut self.wbuf);
        self.state = State::Hello;
        cluster.peers[self.node].reconnects.fetch_add(1, Relaxed);
        log::debug!("core {this_core}: connecting to node {} core {} at {addr}", cluster.node_id(self.node), self.core);
        Ok(())
    }

    /// Writes what the buffer holds. A connection still in progress takes nothing yet.
    fn write(&mut self) -> io::Result<()> {
        let Some(socket) = self.socket.as_mut() else { return Ok(()) };
        while self.wpos < self.wbuf.len() {
            match socket.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        Ok(())
    }

    fn on_event(&mut self, read_closed: bool, cluster: &Cluster, this_core: usize, deliver: &mut impl FnMut(Delivery<'_>)) -> Result<(), String> {
        let Some(socket) = self.socket.as_mut() else { return Ok(()) };
        // Only a connection still being made can have failed silently.
        if self.state == State::Hello {
            if let Ok(Some(e)) | Err(e) = socket.take_error() {
                return Err(format!("connection failed: {e}"));
            }
        }
        self.write().map_err(|e| format!("write failed: {e}"))?;
        let max_body = if self.authenticated { super::MAX_BODY } else { super::HANDSHAKE_MAX_BODY };
        // `rbuf[..rlen]` holds what was read; the buffer is zero-filled only when it grows.
        let mut eof = false;
        loop {
            let Some(socket) = self.socket.as_mut() else { return Ok(()) };
            if self.rbuf.len() - self.rlen < READ_CHUNK / 2 {
                self.rbuf.resize(self.rlen + READ_CHUNK, 0);
            }
            let room = self.rbuf.len() - self.rlen;
            match socket.read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => {
                    // What came before the end is answered first.
                    eof = true;
                    break;
                }
                Ok(n) => {
                    self.rlen += n;
                    // A short read drained the socket (edge-triggered: new bytes raise a new
                    // event), which saves the read that would return EAGAIN; unless the peer
                    // has closed, whose end-of-file raises no new event.
                    if n < room && !read_closed {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        let rbuf = std::mem::take(&mut self.rbuf);
        let mut pos = 0;
        let result = loop {
            match Frame::decode(&rbuf[pos..self.rlen], max_body) {
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("malformed frame: {e}")),
                Ok(Some((frame, used))) => {
                    pos += used;
                    if let Err(e) = self.on_frame(cluster, this_core, &frame, deliver) {
                        break Err(e);
                    }
                }
            }
        };
        let mut rbuf = rbuf;
        rbuf.copy_within(pos..self.rlen, 0);
        self.rlen -= pos;
        if rbuf.len() > 4 * READ_CHUNK && self.rlen < READ_CHUNK {
            rbuf.truncate(READ_CHUNK);
            rbuf.shrink_to_fit();
        }
        self.rbuf = rbuf;
        result?;
        if eof {
            return Err("closed by the peer".into());
        }
        // What the frames asked to send (AUTH and the queued requests).
        self.write().map_err(|e| format!("write failed: {e}"))
    }

    fn on_frame(&mut self, cluster: &Cluster, this_core: usize, f: &Frame<'_>, deliver: &mut impl FnMut(Delivery<'_>)) -> Result<(), String> {
        if f.is_request() {
            return Err("a request on a link this node started".into());
        }
        match (self.state, f.op()) {
            (State::Hello, Some(Op::Hello)) => {
                let Some(ok) = HelloOk::parse(f) else {
                    return Err(format!("HELLO refused: {}", super::printable(f.value)));
                };
                let expected = cluster.node_id(self.node).as_bytes();
                let t = Transcript {
                    cluster: cluster.map.name().as_bytes(),
                    initiator: cluster.node_id(cluster.me).as_bytes(),
                    responder: expected,
                    nonce_initiator: self.nonce,
                    nonce_responder: ok.nonce,
                };
                if ok.node_id != expected {
                    return Err(format!("answered by node '{}'", super::printable(ok.node_id)));
                }
                if !t.verify(&cluster.file.secret, Role::Responder, &ok.proof) {
                    return Err("the peer failed authentication (another secret?)".into());
                }
                if ok.version != peer::VERSION || ok.map_checksum != cluster.map.checksum() || ok.cores == 0 {
                    return Err(format!("version {} / map {:08x} / {} cores do not fit", ok.version, ok.map_checksum, ok.cores));
                }
                cluster.peer_cores[self.node].store(ok.cores, Relaxed);
                auth::write_auth(&mut self.wbuf, &t.proof(&cluster.file.secret, Role::Initiator));
                self.wbuf.append(&mut self.queued);
                self.state = State::Up;
                Ok(())
            }
            (State::Up, Some(Op::Auth)) if !self.authenticated => {
                if f.status() != auth::status::OK {
                    return Err(format!("AUTH refused: {}", super::printable(f.value)));
                }
                self.authenticated = true;
                self.generation += 1;
                self.backoff = BACKOFF_FIRST;
                self.said_down = None;
                cluster.link_changed(self.node, true);
                log::info!("core {this_core}: peer link to node {} core {} is up", cluster.node_id(self.node), self.core);
                Ok(())
            }
            (State::Up, Some(op)) if self.authenticated && !matches!(op, Op::Hello | Op::Auth) => {
                let Some(front) = self.in_flight.front() else { return Err("an answer to nothing".into()) };
                if front.opaque != f.header.opaque {
                    return Err(format!("answer {} out of order (expected {})", f.header.opaque, front.opaque));
                }
                if front.repl {
                    if !matches!(op, Op::ReplOpen | Op::ReplChanges | Op::ReplVerify) {
                        return Err(format!("a {op:?} answer to a replication frame"));
                    }
                    self.in_flight.pop_front();
                    cluster.peers[self.node].in_flight.fetch_sub(1, Relaxed);
                    self.repl_answers.push(ReplAnswer { op, status: f.status(), value: f.value.to_vec() });
                    return Ok(());
                }
                let outcome = forward::parse_outcome(f).map_err(|e| format!("bad answer: {}", e.0))?;
                let req = self.in_flight.pop_front().expect("front exists");
                self.hopping -= req.hops as usize;
                let peer = &cluster.peers[self.node];
                peer.in_flight.fetch_sub(1, Relaxed);
                peer.record_rtt(req.sent.elapsed().as_micros() as u64);
                if matches!(outcome, Outcome::TemporaryFailure) {
                    peer.errors.fetch_add(1, Relaxed);
                }
                deliver(Delivery { req, key: f.key, outcome });
                Ok(())
            }
            (state, op) => Err(format!("unexpected {op:?} response in state {state:?}")),
        }
    }

    /// Closes the link and answers everything in flight with a temporary failure, in order.
    fn down(&mut self, cluster: &Cluster, this_core: usize, reason: &str, registry: &Registry, deliver: &mut impl FnMut(Delivery<'_>)) {
        if let Some(mut socket) = self.socket.take() {
            let _ = registry.deregister(&mut socket);
        }
        let failed = self.in_flight.len();
        let peer = &cluster.peers[self.node];
        peer.in_flight.fetch_sub(failed as i64, Relaxed);
        peer.errors.fetch_add(failed as u64, Relaxed);
        self.hopping = 0;
        self.repl_answers.clear();
        for req in self.in_flight.drain(..).filter(|r| !r.repl) {
            deliver(Delivery { req, key: &[], outcome: Outcome::TemporaryFailure });
        }
        if self.authenticated {
            cluster.link_changed(self.node, false);
        } else if cluster.peers[self.node].changed_at.load(Relaxed) == 0 {
            // Never reached: the node's state goes from unknown to unreachable.
            cluster.peers[self.node].changed_at.store(crate::stats::unix_now() as u64, Relaxed);
        }
        if self.said_down.as_deref() != Some(reason) {
            log::warn!(
                "core {this_core}: peer link to node {} core {} is down: {reason}; {failed} requests answered with a temporary failure; retrying with backoff",
                cluster.node_id(self.node),
                self.core
            );
            self.said_down = Some(reason.to_string());
        }
        self.authenticated = false;
        self.state = State::Down;
        self.wbuf.clear();
        self.wpos = 0;
        self.queued.clear();
        self.rlen = 0;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// How long a forwarded request may wait for its answer: the forward timeout, and in a
/// cluster with backups the durability timeout on top. There the owner answers a durable
/// write only once its backups have it or its deadline passed ("sync write ambiguous"), and
/// any request on the same key waits behind it (its answer would show the write); and the
/// owner answers in order. A link failed sooner would turn those answers into false temporary
/// failures. (A hung owner is found that much later; a closed or reset link at once.)
fn forward_deadline(cluster: &Cluster) -> Duration {
    match cluster.map.replicas() {
        0 => cluster.file.forward_timeout,
        _ => cluster.file.forward_timeout + cluster.file.durability_timeout,
    }
}
