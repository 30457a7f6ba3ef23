//! The owner's end of a peer link: a connection to the peer port, served on the core its
//! HELLO names.
//!
//! Until AUTH succeeds only HELLO and AUTH are served; anything else, a wrong cluster name,
//! version or map, or a proof that does not check out, gets a refusal (its reason in the
//! value), a log line and the connection closed. After AUTH, each frame is a forwarded
//! storage command, served by the same routing as a client's (`route::storage`) with a
//! [`ReplyTo::Peer`], so held replies, commits and fsync sync_rounds keep their promises for it
//! as they do for a client.

use std::sync::atomic::Ordering::Relaxed;

use super::Cluster;
use crate::protocol::peer::auth::{self, status, Hello, HelloOk, Role, Transcript};
use crate::protocol::peer::{self, forward, Frame, Op};
use crate::protocol::{PeerReply, ReplyTo};
use crate::server::connection::Connection;
use crate::server::mailbox::ReturnAddress;
use crate::server::route::{self, Ctx};

/// Where the handshake of an accepted peer connection stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Session {
    AwaitHello,
    AwaitAuth { initiator: usize, nonce_initiator: auth::Nonce, nonce_responder: auth::Nonce },
    Up { node: usize },
}

/// The core a connection's first frame, a HELLO, asks for, once it has arrived whole.
pub fn target_core(unread: &[u8], max_body: u32) -> Option<u16> {
    match Frame::decode(unread, max_body) {
        Ok(Some((f, _))) => Hello::parse(&f).map(|h| h.target_core),
        _ => None,
    }
}

/// Serves every whole frame in the connection's buffer.
pub fn process(ctx: &mut Ctx<'_>, cluster: &Cluster, conn: &mut Connection, key: usize) {
    let (rbuf, mut pos, end) = conn.take_input();
    while !conn.closing && !conn.over_high_water() {
        let limit = match conn.peer {
            Some(Session::Up { .. }) => super::MAX_BODY,
            _ => super::HANDSHAKE_MAX_BODY,
        };
        match Frame::decode(&rbuf[pos..end], limit) {
            Ok(None) => break,
            Err(e) => {
                refuse(ctx, cluster, conn, None, &format!("malformed frame: {e}"));
                break;
            }
            Ok(Some((frame, used))) => {
                pos += used;
                serve(ctx, cluster, conn, key, &frame);
            }
        }
    }
    conn.restore_input(rbuf, pos);
}

fn serve(ctx: &mut Ctx<'_>, cluster: &Cluster, conn: &mut Connection, key: usize, f: &Frame<'_>) {
    let session = conn.peer.clone().unwrap_or(Session::AwaitHello);
    match session {
        Session::AwaitHello => hello(ctx, cluster, conn, f),
        Session::AwaitAuth { initiator, nonce_initiator, nonce_responder } => {
            let Some(proof) = auth::parse_auth(f) else {
                return refuse(ctx, cluster, conn, Some((Op::Auth, status::PROTOCOL_ERROR)), "expected AUTH");
            };
            let t = Transcript {
                cluster: cluster.map.name().as_bytes(),
                initiator: cluster.node_id(initiator).as_bytes(),
                responder: cluster.node_id(cluster.me).as_bytes(),
                nonce_initiator,
                nonce_responder,
            };
            if !t.verify(&cluster.file.secret, Role::Initiator, proof) {
                let reason = format!("node '{}' failed authentication (another secret?)", cluster.node_id(initiator));
                return refuse(ctx, cluster, conn, Some((Op::Auth, status::AUTH_ERROR)), &reason);
            }
            auth::write_auth_ok(conn.out());
            conn.peer = Some(Session::Up { node: initiator });
            log::info!("core {}: peer link from node {} accepted", ctx.core, cluster.node_id(initiator));
        }
        Session::Up { node } => {
            let op = match f.op() {
                Some(op) if f.is_request() => op,
                _ => return refuse(ctx, cluster, conn, None, &format!("unexpected frame opcode {:#04x}", f.header.opcode)),
            };
            if matches!(op, Op::ReplOpen | Op::ReplChanges | Op::ReplVerify) {
                return crate::server::replicate::serve(ctx, cluster, conn, key, node, op, f);
            }
            let fwd = match forward::parse_request(f) {
                Ok(fwd) => fwd,
                Err(e) => return refuse(ctx, cluster, conn, None, &format!("malformed {op:?} request: {}", e.0)),
            };
            let to = ReplyTo::Peer(PeerReply { op, opaque: fwd.opaque, then_touch: fwd.then_touch, durability: fwd.durability });
            if let Some(k) = fwd.cmd.key() {
                let p = crate::cluster::partition_of(k);
                if p != fwd.partition {
                    return refuse(ctx, cluster, conn, None, &format!("partition {} named for a key of partition {p}", fwd.partition));
                }
                if op == Op::GetReplica {
                    // A read of this node's copy, on the core that holds it.
                    if !cluster.map.is_backup(p, cluster.me) {
                        forward::write_not_my_partition(conn.out(), op, fwd.opaque, k);
                    } else if p as usize % ctx.node.core_stats.len() != ctx.core {
                        forward::write_outcome::<&[u8]>(conn.out(), op, fwd.opaque, k, &crate::storage::Outcome::TemporaryFailure);
                    } else {
                        route::execute_here(ctx, conn, key, &fwd.cmd, &to);
                    }
                    return;
                }
                if cluster.map.primary(p) != cluster.me {
                    // Forwarded again it could loop: the sender's map is not ours.
                    forward::write_not_my_partition(conn.out(), op, fwd.opaque, k);
                    return;
                }
            }
            let from = ReturnAddress { core: ctx.core, conn: key, generation: conn.generation, seq: 0, read_at: 0, op: None };
            route::storage(ctx, conn, from, &fwd.cmd, to);
        }
    }
}

fn hello(ctx: &mut Ctx<'_>, cluster: &Cluster, conn: &mut Connection, f: &Frame<'_>) {
    let Some(h) = Hello::parse(f) else {
        let reason = match f.op() {
            Some(Op::Hello) => "a malformed HELLO".to_string(),
            Some(op) => format!("{op:?} before HELLO"),
            None if f.is_request() => format!("opcode {:#04x} before HELLO (a client on the peer port?)", f.header.opcode),
            None => "a response before HELLO".to_string(),
        };
        return refuse(ctx, cluster, conn, Some((Op::Hello, status::PROTOCOL_ERROR)), &reason);
    };
    let who = super::printable(h.node_id);
    let refusal = if h.cluster != cluster.map.name().as_bytes() {
        Some((status::AUTH_ERROR, format!("node '{who}' is of cluster '{}', not '{}'", super::printable(h.cluster), cluster.map.name())))
    } else if h.version != peer::VERSION {
        Some((status::VERSION_MISMATCH, format!("node '{who}' speaks peer protocol {}, this node {}", h.version, peer::VERSION)))
    } else if h.map_checksum != cluster.map.checksum() {
        Some((status::MAP_MISMATCH, format!("node '{who}' has map {:08x}, this node {:08x} (are the cluster files the same?)", h.map_checksum, cluster.map.checksum())))
    } else {
        None
    };
    if let Some((code, reason)) = refusal {
        return refuse(ctx, cluster, conn, Some((Op::Hello, code)), &reason);
    }
    let Some(initiator) = std::str::from_utf8(h.node_id).ok().and_then(|id| cluster.map.node_index(id)).filter(|&i| i != cluster.me) else {
        return refuse(ctx, cluster, conn, Some((Op::Hello, status::AUTH_ERROR)), &format!("unknown node '{who}'"));
    };
    let nonce_responder = auth::nonce();
    let t = Transcript {
        cluster: cluster.map.name().as_bytes(),
        initiator: h.node_id,
        responder: cluster.node_id(cluster.me).as_bytes(),
        nonce_initiator: h.nonce,
        nonce_responder,
    };
    HelloOk {
        version: peer::VERSION,
        cores: ctx.node.core_stats.len() as u16,
        map_checksum: cluster.map.checksum(),
        node_id: cluster.node_id(cluster.me).as_bytes(),
        nonce: nonce_responder,
        proof: t.proof(&cluster.file.secret, Role::Responder),
    }
    .write(conn.out());
    conn.peer = Some(Session::AwaitAuth { initiator, nonce_initiator: h.nonce, nonce_responder });
}

/// Answers with a refusal where the handshake has one, logs why, and closes.
fn refuse(ctx: &mut Ctx<'_>, cluster: &Cluster, conn: &mut Connection, answer: Option<(Op, u16)>, reason: &str) {
    let peer_addr = conn.socket.peer_addr().map_or("?".to_string(), |a| a.to_string());
    log::warn!("core {}: peer connection from {peer_addr} refused: {reason}", ctx.core);
    cluster.refused.fetch_add(1, Relaxed);
    ctx.stats.protocol_errors.incr();
    if let Some((op, code)) = answer {
        auth::write_refusal(conn.out(), op, code, reason);
    }
    conn.closing = true;
}
