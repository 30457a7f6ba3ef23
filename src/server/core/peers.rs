//! A core's side of the cluster's peer connections: accepting and handing over those that
//! arrive on the peer port, and driving its own links to other nodes.

use std::io;
use std::sync::atomic::Ordering::Relaxed;

use mio::{Interest, Token};
use slab::Slab;

use super::Core;
use crate::protocol::Protocol;
use crate::server::connection::Connection;
use crate::server::mailbox::Message;
use crate::server::peer::link::Delivery;
use crate::server::peer::serve::Session;
use crate::stats::latency::Recorder;

impl Core {
    /// Accepts connections to the peer port; each must start with HELLO.
    pub(super) fn accept_peers(&mut self) {
        loop {
            let Some(listener) = self.peer_listener.as_ref() else { return };
            let socket = match listener.accept() {
                Ok((socket, _)) => socket,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("core {}: accept on the peer port failed: {e}", self.id);
                    return;
                }
            };
            self.adopt_peer(socket, &[]);
        }
    }

    /// Serves a peer connection on this core, with what another core read of it.
    pub(super) fn adopt_peer(&mut self, mut socket: mio::net::TcpStream, unread: &[u8]) {
        let _ = socket.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(&mut socket, Token(key), Interest::READABLE | Interest::WRITABLE) {
            log::warn!("core {}: cannot register a peer connection: {e}", self.id);
            return;
        }
        let mut conn = Connection::new(socket, self.next_generation);
        self.next_generation += 1;
        conn.protocol = Some(Protocol::Peer);
        conn.peer = Some(Session::AwaitHello);
        conn.accepted_at = self.now;
        if let Some(cluster) = self.node.cluster.as_deref() {
            conn.max_outstanding = cluster.file.max_in_flight + 1;
        }
        conn.prefill(unread);
        entry.insert(conn);
        if !unread.is_empty() {
            self.process(key);
            self.dirty.push(key);
        }
    }

    /// Closes peer connections that have not authenticated within `HANDSHAKE_SECONDS`.
    pub(super) fn close_slow_handshakes(&mut self) {
        let now = self.now;
        let slow: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.peer, Some(Session::AwaitHello | Session::AwaitAuth { .. })))
            .filter(|(_, c)| now.saturating_sub(c.accepted_at) >= crate::server::peer::HANDSHAKE_SECONDS)
            .map(|(key, _)| key)
            .collect();
        for key in slow {
            let from = self.conns.get(key).and_then(|c| c.socket.peer_addr().ok()).map_or("?".into(), |a| a.to_string());
            log::warn!("core {}: peer connection from {from} closed: no handshake within {} s", self.id, crate::server::peer::HANDSHAKE_SECONDS);
            if let Some(c) = self.node.cluster.as_deref() {
                c.refused.fetch_add(1, Relaxed);
            }
            self.close(key);
        }
    }

    /// Hands a peer connection whose HELLO names core `core` over to it.
    pub(super) fn hand_over(&mut self, key: usize, core: usize) {
        let Some(conn) = self.conns.try_remove(key) else { return };
        let unread = conn.unread().to_vec();
        let mut socket = conn.socket;
        let _ = self.poll.registry().deregister(&mut socket);
        if self.mailboxes.try_send(core, Message::AdoptPeer(socket, unread)).is_err() {
            log::warn!("core {}: core {core}'s mailbox is full; a peer connection is dropped (the peer reconnects)", self.id);
        }
    }

    pub(super) fn on_link_event(&mut self, token: Token, read_closed: bool) {
        let Some(cluster) = self.node.cluster.as_deref() else { return };
        let registry = self.poll.registry();
        let (conns, dirty, latency) = (&mut self.conns, &mut self.dirty, &mut self.latency);
        self.links.on_event(token, read_closed, cluster, registry, self.id, &mut |d| deliver(conns, dirty, latency, d));
    }

    pub(super) fn tick_links(&mut self) {
        let Some(cluster) = self.node.cluster.as_deref() else { return };
        let registry = self.poll.registry();
        let (conns, dirty, latency) = (&mut self.conns, &mut self.dirty, &mut self.latency);
        self.links.tick(cluster, registry, self.id, &mut |d| deliver(conns, dirty, latency, d));
    }

    pub(super) fn write_links(&mut self) {
        let Some(cluster) = self.node.cluster.as_deref() else { return };
        let registry = self.poll.registry();
        let (conns, dirty, latency) = (&mut self.conns, &mut self.dirty, &mut self.latency);
        self.links.write_dirty(cluster, registry, self.id, &mut |d| deliver(conns, dirty, latency, d));
    }
}

/// Puts the outcome a peer link brought back into its connection's reply order, encoded in
/// the connection's protocol.
pub(super) fn deliver(conns: &mut Slab<Connection>, dirty: &mut Vec<usize>, latency: &mut Recorder, d: Delivery<'_>) {
    let to = d.req.to;
    let Some(conn) = conns.get_mut(to.conn).filter(|c| c.generation == to.generation) else { return };
    let mut bytes = Vec::new();
    if d.req.flush {
        if !matches!(d.outcome, crate::storage::Outcome::Done { .. }) {
            d.req.reply.write_outcome::<&[u8]>(&mut bytes, &[], &crate::storage::Outcome::TemporaryFailure);
            conn.replace_head(to.seq, &bytes);
            bytes.clear();
        }
    } else {
        d.req.reply.write_outcome(&mut bytes, d.key, &d.outcome);
    }
    conn.complete(to.seq, &bytes);
    dirty.push(to.conn);
    if let Some(op) = to.op {
        latency.returned(op, to.read_at);
    }
}
