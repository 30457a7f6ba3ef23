//! One core: a mio event loop owning its listeners (one per address `-l` names), its
//! connections and its shard.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

mod commit;
mod peers;

use super::connection::{Connection, ReadStatus};
use super::control;
use super::gate::{Dest, Gate};
use super::held::{Held, Rounds};
use super::mailbox::{Mailboxes, Message, Outbox, ReplyBatch};
use super::peer::link::{Links, LINK_TOKEN_BASE};
use super::peer::serve::{self, Session};
use super::replicate::Replication;
use super::route::{self, Ctx};
use super::{binary, text, watch, Node};
use crate::protocol::{self, Limits, Protocol};
use crate::stats::latency::Recorder;
use crate::stats::{unix_now, CoreStats};
use crate::storage::Shard;

pub const WAKER: Token = Token(usize::MAX - 2);
const PEER_LISTENER: Token = Token(usize::MAX - 3);
/// Listener `i` has the token `FIRST_LISTENER - i`: far above any connection's slab key
/// (and above the peer links' tokens, which are matched after them).
const FIRST_LISTENER: usize = usize::MAX - 4;

/// How long a stopping node waits for replies in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// memcached's answer to a connection over `-c`.
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

pub struct Core {
    pub id: usize,
    pub poll: Poll,
    /// One per listening address, all on the same port.
    pub listeners: Vec<TcpListener>,
    /// The peer port's listener of this core, in a cluster.
    peer_listener: Option<TcpListener>,
    /// This core's links to cores of other nodes.
    links: Links,
    pub inbox: Receiver<Message>,
    pub mailboxes: Mailboxes,
    pub shard: Shard,
    pub stats: Arc<CoreStats>,
    pub node: Arc<Node>,
    conns: Slab<Connection>,
    outbox: Outbox,
    next_generation: u64,
    now: u32,
    limits: Limits,
    /// Connections that got replies from other cores this turn and need a write.
    dirty: Vec<usize>,
    /// While stopping: this core's own replies are all written.
    drained: bool,
    /// When the per-segment disk figures were last summed.
    stats_published_at: u32,
    /// A connection opened or closed this turn: `stats conns`' copy is published again.
    conns_changed: bool,
    /// This core's latency histograms (`stats::latency`).
    pub latency: Recorder,
    /// Replies waiting for this turn's commit (`held.rs`).
    held: Held,
    /// Under group commit (`--fsync always`): the replies of earlier turns, each turn's with
    /// the round that must be durable before they leave.
    waiting: Rounds<Waiting>,
    /// The streams to this core's backups (a cluster with `replicas` > 0).
    replication: Option<Replication>,
    /// Replies to durable writes waiting for backups (`gate.rs`).
    gate: Gate,
    /// The origin of `now_ms`.
    started: Instant,
    /// A reply another core's request gets, before it goes into the batch or the gate.
    scratch: Vec<u8>,
    /// This core's connections that sent `watch` (`watch.rs`).
    watching: Vec<usize>,
    /// Items the shard evicted, for `watch evictions`.
    evicted: Vec<crate::storage::Evicted>,
}

/// One turn's replies that wait for an fsync: to this core's connections, and to others.
struct Waiting {
    held: Held,
    replies: Vec<(usize, ReplyBatch)>,
}

impl Core {
    #[allow(clippy::too_many_arguments)] // each is a part the core owns from here on, made by `server::run`
    pub fn new(
        id: usize,
        poll: Poll,
        listeners: Vec<TcpListener>,
        peer_listener: Option<TcpListener>,
        inbox: Receiver<Message>,
        mailboxes: Mailboxes,
        shard: Shard,
        stats: Arc<CoreStats>,
        node: Arc<Node>,
    ) -> Core {
        let cores = mailboxes.len();
        let mut shard = shard;
        let replication = Replication::new(node.cluster.as_deref(), &mut shard);
        let limits = Limits { max_value_len: node.config.max_item_size };
        let mut core = Core {
            id,
            poll,
            listeners,
            peer_listener,
            links: Links::default(),
            inbox,
            mailboxes,
            shard,
            stats,
            node,
            conns: Slab::new(),
            outbox: Outbox::new(cores),
            next_generation: 1,
            now: unix_now(),
            limits,
            dirty: Vec::new(),
            drained: false,
            stats_published_at: 0,
            conns_changed: false,
            latency: Recorder::new(),
            held: Held::default(),
            waiting: Rounds::default(),
            replication,
            gate: Gate::default(),
            started: Instant::now(),
            scratch: Vec::new(),
            watching: Vec::new(),
            evicted: Vec::new(),
        };
        // The levels recovery left (curr_items, bytes, segments, ...) are published before
        // any core accepts, so that the first STAT after a restart sums every shard.
        core.publish_stats();
        core.stats_published_at = core.now;
        core
    }

    pub fn run(mut self) -> io::Result<()> {
        for (i, listener) in self.listeners.iter_mut().enumerate() {
            self.poll.registry().register(listener, Token(FIRST_LISTENER - i), Interest::READABLE)?;
        }
        if let Some(l) = self.peer_listener.as_mut() {
            self.poll.registry().register(l, PEER_LISTENER, Interest::READABLE)?;
        }
        if let (0, Some(cluster)) = (self.id, self.node.cluster.as_deref()) {
            self.links.keep_up(cluster);
        }
        let (mailboxes, id) = (self.mailboxes.clone(), self.id);
        if let Err(e) = self.shard.enable_group_commit(Arc::new(move || mailboxes.wake(id))) {
            log::warn!("core {}: no commit thread ({e}); --fsync always syncs on the event loop", self.id);
        }
        self.shard.finish_merges_off_loop();
        watch::enter(self.node.watchers.clone());
        let mut events = Events::with_capacity(1024);
        let mut draining_since: Option<Instant> = None;
        loop {
            let waiting = !self.waiting.is_empty();
            let timeout = if !self.outbox.is_empty()
                || draining_since.is_some()
                || self.shard.is_busy()
                || waiting
                || !self.dirty.is_empty()
                || self.shard.needs_commit()
                || self.links.busy()
                || self.replication.as_ref().is_some_and(Replication::busy)
            {
                Duration::from_millis(1)
            } else if self.links.reconnecting() {
                Duration::from_millis(50)
            } else {
                Duration::from_secs(1)
            };
            // Watchers get their lines within 10 ms (memcached's logger sleeps 1 ms..1 s).
            let timeout = if self.watching.is_empty() { timeout } else { timeout.min(Duration::from_millis(10)) };
            // Held durable replies: acknowledgements wake the loop (link events), a group
            // commit's fsync too (its waker); only a deadline needs the clock.
            let timeout = match self.gate.next_deadline_ms() {
                Some(d) => timeout.min(Duration::from_millis(d.saturating_sub(self.started.elapsed().as_millis() as u64) + 1)),
                None => timeout,
            };
            // Batches sent from now on wake this core; one that came since the last drain
            // means no sleep at all.
            let timeout = if self.mailboxes.going_to_sleep(self.id, &self.inbox) { timeout } else { Duration::ZERO };
            let polled = self.poll.poll(&mut events, Some(timeout));
            self.mailboxes.awake(self.id);
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.now = unix_now();
            self.latency.wake();
            self.shard.tick(self.now);
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    PEER_LISTENER => self.accept_peers(),
                    Token(t) if t <= FIRST_LISTENER && FIRST_LISTENER - t < self.listeners.len() => {
                        self.accept(FIRST_LISTENER - t)
                    }
                    Token(t) if t >= LINK_TOKEN_BASE => self.on_link_event(Token(t), event.is_read_closed()),
                    Token(key) => {
                        // Writable first: it sends replies committed in earlier turns, while
                        // the replies to what is read now must wait for this turn's commit.
                        if event.is_writable() {
                            self.on_writable(key);
                        }
                        if draining_since.is_none() && (event.is_readable() || event.is_read_closed()) {
                            // A peer's close that came with its last bytes raises no edge of
                            // its own: then read until the read that returns 0.
                            self.on_readable(key, event.is_read_closed());
                        }
                    }
                }
            }
            self.drain_inbox();
            // Nothing of this turn waits for its commit: what the other cores asked for, and
            // what this core asks of them, leaves now rather than after this core's own
            // sockets are written (the other core's clients wait on it).
            if !self.shard.needs_commit() {
                self.outbox.send(&self.mailboxes);
            }
            self.tick_links();
            // Requests to other nodes: they need not wait for this core's disk.
            self.write_links();
            // Requests to other cores first: they need not wait for this core's disk.
            if self.shard.needs_commit() {
                self.outbox.send_requests(&self.mailboxes);
            }
            let committed = self.commit();
            self.replicate(committed);
            if self.now != self.stats_published_at {
                self.close_slow_handshakes();
            }
            // Counters first, so a STAT answered after these replies sees them.
            self.publish_stats();
            if self.conns_changed || self.now != self.stats_published_at {
                self.publish_conns();
            }
            self.stats_published_at = self.now;
            let evictions = self.node.watchers.wants(watch::kind::EVICTIONS);
            self.shard.set_eviction_log(evictions);
            if !self.watching.is_empty() || evictions {
                self.pump_watchers(evictions);
            }
            self.write_dirty();
            self.latency.end_turn();
            self.outbox.send(&self.mailboxes);
            // Background work in small steps, after this turn's replies have left.
            self.shard.maintain(self.now);

            if self.node.stopping.load(Relaxed) {
                let since = *draining_since.get_or_insert_with(|| {
                    for listener in &mut self.listeners {
                        let _ = self.poll.registry().deregister(listener);
                    }
                    if let Some(l) = self.peer_listener.as_mut() {
                        let _ = self.poll.registry().deregister(l);
                    }
                    log::debug!("core {}: stopping, draining {} connections", self.id, self.conns.len());
                    Instant::now()
                });
                let idle = self.conns.iter().all(|(_, c)| c.is_idle_for_close())
                    && self.outbox.is_empty()
                    && self.waiting.is_empty();
                let timed_out = since.elapsed() > DRAIN_TIMEOUT;
                if (idle || timed_out) && !self.drained {
                    self.drained = true;
                    self.node.cores_draining.fetch_sub(1, Relaxed);
                    self.mailboxes.wake_all();
                }
                if self.node.cores_draining.load(Relaxed) == 0 || timed_out {
                    break;
                }
            }
        }
        if let Err(e) = self.shard.close() {
            log::error!("core {}: the log was not closed cleanly: {e}", self.id);
        }
        let open = self.conns.iter().filter(|(_, c)| c.protocol != Some(Protocol::Peer)).count();
        self.conns.clear();
        self.node.stats.curr_connections.fetch_sub(open, Relaxed);
        Ok(())
    }

    fn accept(&mut self, listener: usize) {
        loop {
            let (mut socket, peer) = match self.listeners[listener].accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("core {}: accept failed: {e}", self.id);
                    return;
                }
            };
            let node_stats = &self.node.stats;
            if node_stats.curr_connections.load(Relaxed) >= self.node.config.max_connections as usize {
                self.stats.rejected_connections.incr();
                log::warn!("refused connection from {peer}: {} connections open (-c)", self.node.config.max_connections);
                let _ = socket.write(TOO_MANY_CONNECTIONS);
                continue;
            }
            let _ = socket.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) =
                self.poll.registry().register(&mut socket, Token(key), Interest::READABLE | Interest::WRITABLE)
            {
                log::warn!("core {}: cannot register a connection: {e}", self.id);
                continue;
            }
            let generation = self.next_generation;
            self.next_generation += 1;
            let conn = entry.insert(Connection::new(socket, generation));
            conn.addrs = Some((peer, self.listeners[listener].local_addr().ok()));
            conn.last_read = self.now;
            self.conns_changed = true;
            node_stats.curr_connections.fetch_add(1, Relaxed);
            node_stats.total_connections.fetch_add(1, Relaxed);
            self.stats.total_connections.incr();
            if self.node.watchers.wants(watch::kind::CONNEVENTS) {
                let fd = conn.socket.as_raw_fd();
                watch::log(watch::kind::CONNEVENTS, |s| protocol::text::watch::conn_event(s, Some(peer), None, fd));
            }
            log::trace!("core {}: accepted {peer} as {key}", self.id);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            self.conns_changed = true;
            let _ = self.poll.registry().deregister(&mut conn.socket);
            if conn.protocol != Some(Protocol::Peer) {
                self.node.stats.curr_connections.fetch_sub(1, Relaxed);
                if self.node.watchers.wants(watch::kind::CONNEVENTS) {
                    let reason = if self.node.stopping.load(Relaxed) { "shutdown" } else { "normal" };
                    let peer = conn.addrs.map(|(p, _)| p);
                    watch::log(watch::kind::CONNEVENTS, |s| protocol::text::watch::conn_event(s, peer, Some(reason), conn.socket.as_raw_fd()));
                }
            }
            if let Some(w) = conn.watcher.take() {
                self.node.watchers.remove(&w);
            }
        }
    }

    /// Reads and serves until the socket is drained: a short read, or `WouldBlock`. With
    /// `to_would_block` it reads on past a short read (the peer's close was signalled with
    /// the data, or reading stopped at the high-water mark and an edge may have gone by).
    /// One exception to "short means drained": Linux ends a read at TCP urgent data
    /// (`MSG_OOB`); no memcached client sends it, and a connection that did waits for its
    /// next bytes (tests/half_close.rs covers the close that comes with the data).
    fn on_readable(&mut self, key: usize, to_would_block: bool) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else { return };
            if conn.closing || conn.over_high_water() {
                break;
            }
            let want = match conn.protocol {
                Some(Protocol::Binary) => match protocol::binary::Request::decode(conn.unread(), &self.limits) {
                    Ok(None) => binary::frame_len(conn.unread()),
                    _ => 0,
                },
                Some(Protocol::Text) => protocol::text::frame_len(conn.unread(), &self.limits),
                Some(Protocol::Peer) => binary::frame_len(conn.unread()),
                None => 0,
            };
            match conn.read_some(want) {
                ReadStatus::Data { n, drained } => {
                    conn.last_read = self.now;
                    self.stats.bytes_read.add(n as u64);
                    self.process(key);
                    // Saves the read that would only say EAGAIN: a third of the system
                    // calls of an unpipelined request (bench/RESULTS.md, issue 15).
                    if drained && !to_would_block {
                        break;
                    }
                }
                ReadStatus::WouldBlock => break,
                ReadStatus::Closed => {
                    self.close(key);
                    return;
                }
            }
        }
        // Written at the end of the turn, after the shard's records are committed.
        self.dirty.push(key);
    }

    fn on_writable(&mut self, key: usize) {
        self.flush(key);
    }

    /// Writes what is ready; closes a connection that asked for it once it is done.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        match conn.write() {
            Ok(n) => self.stats.bytes_written.add(n as u64),
            Err(e) => {
                log::debug!("core {}: write to {key} failed: {e}", self.id);
                self.close(key);
                return;
            }
        }
        if conn.closing && conn.is_idle_for_close() {
            self.close(key);
            return;
        }
        conn.shrink_if_idle();
        // Reading stopped at the high-water mark; edge-triggered readiness will not repeat.
        if conn.throttled && !conn.is_backed_up() {
            conn.throttled = false;
            self.process(key);
            self.on_readable(key, true);
        }
    }

    /// Serves every whole request in the connection's buffer, in the protocol its first
    /// byte chose.
    fn process(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let protocol = match conn.protocol {
            Some(p) => p,
            None => {
                let Some(&first) = conn.unread().first() else { return };
                *conn.protocol.insert(Protocol::detect(first))
            }
        };
        let cluster = self.node.cluster.as_deref();
        if let (Some(_), Some(Session::AwaitHello)) = (cluster, &conn.peer) {
            match serve::target_core(conn.unread(), super::peer::HANDSHAKE_MAX_BODY) {
                Some(core) if core as usize != self.id && (core as usize) < self.mailboxes.len() => {
                    return self.hand_over(key, core as usize);
                }
                _ => {}
            }
        }
        let Some(conn) = self.conns.get_mut(key) else { return };
        let mut ctx = Ctx {
            core: self.id,
            shard: &mut self.shard,
            stats: &self.stats,
            outbox: &mut self.outbox,
            node: &self.node,
            now: self.now,
            limits: &self.limits,
            latency: &mut self.latency,
            held: &mut self.held,
            cluster,
            links: &mut self.links,
            registry: self.poll.registry(),
            gate: &mut self.gate,
            replication: self.replication.as_ref(),
            now_ms: self.started.elapsed().as_millis() as u64,
            mailboxes: &self.mailboxes,
        };
        let watched = self.node.watchers.wants(watch::kind::FETCHERS | watch::kind::MUTATIONS);
        if watched {
            watch::set_client_fd(conn.socket.as_raw_fd());
        }
        match (protocol, cluster) {
            (Protocol::Binary, _) => binary::process(&mut ctx, conn, key),
            (Protocol::Text, _) => text::process(&mut ctx, conn, key),
            (Protocol::Peer, Some(cluster)) => serve::process(&mut ctx, cluster, conn, key),
            (Protocol::Peer, None) => conn.closing = true,
        }
        if watched {
            watch::set_client_fd(-1);
        }
        if conn.watcher.is_some() && !self.watching.contains(&key) {
            self.watching.push(key);
        }
    }

    /// Moves the watchers' log lines into their connections, and the shard's evictions
    /// into log lines, while someone watches them.
    fn pump_watchers(&mut self, evictions: bool) {
        if evictions {
            self.shard.take_evicted(&mut self.evicted);
            watch::evictions(&self.evicted);
            self.evicted.clear();
        }
        let (conns, dirty) = (&mut self.conns, &mut self.dirty);
        self.watching.retain(|&key| {
            let Some(w) = conns.get(key).and_then(|c| c.watcher.clone()) else { return false };
            if let Some(conn) = conns.get_mut(key) {
                // Only once the socket took what it had: a watcher that does not read keeps
                // its lines in its bounded buffer, where the newest are lost and counted.
                if conn.backlog() == 0 && w.take(conn.out()) > 0 {
                    dirty.push(key);
                }
            }
            true
        });
    }

    /// Runs requests other cores sent here and slots in the replies they sent back.
    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                Message::Requests(batch) => {
                    let now_ms = self.started.elapsed().as_millis() as u64;
                    for f in &batch.items {
                        let cmd = batch.command(f);
                        let (shard, stats, now) = (&mut self.shard, &*self.stats, self.now);
                        let (reply, key) = (f.reply.as_ref(), cmd.key().unwrap_or(&[]));
                        let cluster = self.node.cluster.as_deref();
                        // A flush's share (no reply of its own), and any command when no
                        // durable write is asked for or pending: the reply goes straight out.
                        let gated = |to: &crate::protocol::ReplyTo| !self.gate.is_empty() || route::Durable::of(cluster, &cmd, to.durability()).is_some();
                        let Some(to) = reply.filter(|to| gated(to)) else {
                            self.outbox.replies(f.from.core).push(f.from, reply, key, |out| route::execute(shard, stats, &cmd, reply, now, out));
                            continue;
                        };
                        self.scratch.clear();
                        let placed = route::execute_gated(shard, stats, &self.gate, cluster, self.replication.as_ref(), &cmd, to, now, now_ms, &mut self.scratch);
                        let appended = match placed {
                            route::Placed::Now { appended } => appended,
                            route::Placed::Impossible => false,
                            gated => {
                                gated.hold(&mut self.gate, Dest::Core(f.from), key, &self.scratch);
                                continue;
                            }
                        };
                        let bytes = &self.scratch;
                        self.outbox.replies(f.from.core).push(f.from, reply, key, |out| {
                            out.extend_from_slice(bytes);
                            appended
                        });
                    }
                }
                Message::Control(c) => control::answer(self.id, &mut self.shard, &self.latency, self.now, c),
                Message::AdoptPeer(socket, unread) => self.adopt_peer(socket, &unread),
                Message::Complete { conn, generation, seq, bytes } => {
                    if let Some(c) = self.conns.get_mut(conn).filter(|c| c.generation == generation) {
                        c.complete(seq, &bytes);
                        self.dirty.push(conn);
                    }
                }
                Message::Replies(batch) => {
                    for reply in &batch.items {
                        let to = reply.to;
                        if self.conns.get(to.conn).is_none_or(|c| c.generation != to.generation) {
                            continue;
                        }
                        let Some(bytes) = batch.bytes(reply) else {
                            self.close(to.conn);
                            continue;
                        };
                        if let Some(conn) = self.conns.get_mut(to.conn) {
                            conn.complete(to.seq, bytes);
                            self.dirty.push(to.conn);
                            if let Some(op) = to.op {
                                self.latency.returned(op, to.read_at);
                            }
                        }
                    }
                }
            }
        }
    }

    fn write_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &key in &dirty {
            self.flush(key);
        }
        dirty.clear();
        // A connection that resumed reading in `flush` is dirty again, for the next turn.
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// `stats conns`' copy of this core's listeners and client connections (at most
    /// [`MAX_PER_CORE`](crate::stats::conns::MAX_PER_CORE); peer links are not listed).
    fn publish_conns(&mut self) {
        use crate::stats::conns::{ConnEntry, MAX_PER_CORE};
        use std::os::fd::AsRawFd;
        self.conns_changed = false;
        let started = self.node.stats.started_unix as u32;
        let mut entries: Vec<ConnEntry> = self
            .listeners
            .iter()
            .map(|l| ConnEntry { fd: l.as_raw_fd(), addr: l.local_addr().ok(), listen_addr: None, state: "conn_listening", last_cmd: started })
            .collect();
        for (_, c) in self.conns.iter().filter(|(_, c)| c.protocol != Some(Protocol::Peer)).take(MAX_PER_CORE) {
            let Some((peer, listen)) = c.addrs else { continue };
            let state = if c.skip > 0 {
                "conn_nread"
            } else if c.unwritten() > 0 {
                "conn_mwrite"
            } else {
                "conn_read"
            };
            entries.push(ConnEntry { fd: c.socket.as_raw_fd(), addr: Some(peer), listen_addr: listen, state, last_cmd: c.last_read });
        }
        self.stats.conns.publish(entries);
    }

    fn publish_stats(&mut self) {
        let c = self.shard.counters();
        self.stats.curr_items.set(self.shard.len() as u64);
        self.stats.bytes.set(self.shard.used_bytes() as u64);
        self.stats.evictions.set(c.evictions);
        self.stats.reclaimed.set(c.reclaimed);
        self.stats.total_items.set(c.total_items);
        self.stats.values_evicted.set(c.values_evicted);
        self.stats.disk_reads.set(c.disk_reads);
        self.stats.merges.set(c.merges);
        self.stats.merge_bytes_read.set(c.merge_bytes_read);
        self.stats.merge_bytes_written.set(c.merge_bytes_written);
        let mut disk_errors = c.disk_errors;
        if let Some(log) = self.shard.log() {
            let l = log.counters();
            disk_errors += l.write_errors + l.fsync_errors;
            self.stats.fsyncs.set(l.fsyncs);
            self.stats.fsync_micros.set(l.fsync_micros);
            if self.now != self.stats_published_at {
                let (mut n, mut bytes, mut dead) = (0, 0, 0);
                for s in log.segments() {
                    n += 1;
                    bytes += s.len;
                    dead += s.dead;
                }
                self.stats.segments.set(n);
                self.stats.disk_bytes.set(bytes);
                self.stats.dead_bytes.set(dead);
            }
        }
        self.stats.disk_errors.set(disk_errors);
    }
}
