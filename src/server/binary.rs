//! Serving a connection that speaks the binary protocol.

use std::sync::atomic::Ordering::Relaxed;

use super::connection::Connection;
use super::mailbox::ReturnAddress;
use super::report;
use super::route::{self, Ctx};
use crate::protocol::binary::dispatch::{self, Action, ReplyTo};
use crate::protocol::binary::request::refused_set_key;
use crate::protocol::binary::{write_error, DecodeError, Opcode, Request, Status};
use crate::protocol::text::ReplyTo as TextReplyTo;
use crate::storage::Command;
use crate::protocol::ReplyTo as AnyReplyTo;

/// Serves every whole request in the connection's buffer.
pub fn process(ctx: &mut Ctx<'_>, conn: &mut Connection, key: usize) {
    let (rbuf, mut pos, end) = conn.take_input();
    while !conn.closing && !conn.over_high_water() {
        if !conn.discard(&mut pos, end) {
            break;
        }
        match Request::decode(&rbuf[pos..end], ctx.limits) {
            Ok(None) => break,
            Ok(Some((req, used))) => {
                pos += used;
                let from = ReturnAddress { core: ctx.core, conn: key, generation: conn.generation, seq: 0, read_at: 0, op: None };
                serve(ctx, conn, from, &req);
            }
            Err(DecodeError::Reject { header, .. }) if crate::protocol::peer::Op::is_peer_opcode(header.opcode) => {
                let from = conn.socket.peer_addr().map_or("?".to_string(), |a| a.to_string());
                log::warn!("core {}: {from} sent peer opcode {:#04x} to the client port; closing it (peers use the peer port)", ctx.core, header.opcode);
                ctx.stats.protocol_errors.incr();
                write_error(conn.out(), Opcode::from_u8(header.opcode), header.opaque, Status::UnknownCommand);
                conn.closing = true;
            }
            Err(DecodeError::Reject { header, status, skip }) => {
                log::debug!("core {}: rejected opcode {:#04x}: {status:?}", ctx.core, header.opcode);
                ctx.stats.protocol_errors.incr();
                if status == Status::ValueTooLarge {
                    if let Some(old) = refused_set_key(&rbuf[pos..end]) {
                        // memcached unlinks the old value of a SET refused as too large.
                        let from = ReturnAddress { core: ctx.core, conn: key, generation: conn.generation, seq: 0, read_at: 0, op: None };
                        let cmd = Command::Delete { key: old, cas: 0 };
                        let to = TextReplyTo::Deleted { noreply: true };
                        route::storage(ctx, conn, from, &cmd, AnyReplyTo::Text(to));
                    }
                }
                write_error(conn.out(), Opcode::from_u8(header.opcode), header.opaque, status);
                conn.skip = skip;
            }
            Err(DecodeError::Close { header, status }) => {
                log::debug!("core {}: closing connection {key} on a bad frame: {header:?}", ctx.core);
                ctx.stats.protocol_errors.incr();
                if let Some(h) = header {
                    write_error(conn.out(), Opcode::from_u8(h.opcode), h.opaque, status);
                }
                conn.closing = true;
            }
        }
    }
    conn.restore_input(rbuf, pos);
}

/// Serves one request: storage commands go to the key's shard, the rest is answered here.
fn serve(ctx: &mut Ctx<'_>, conn: &mut Connection, from: ReturnAddress, req: &Request<'_>) {
    let to = ReplyTo { opcode: req.opcode, opaque: req.opaque, durability: req.durability };
    let action = dispatch::action(req);
    if !matches!(action, Action::Storage(_)) {
        ctx.latency.served(crate::stats::latency::Op::Other);
    }
    match action {
        Action::Storage(cmd) => route::storage(ctx, conn, from, &cmd, AnyReplyTo::Binary(to)),
        Action::GetReplica(k) => route::replica_get(ctx, conn, from, k, AnyReplyTo::Binary(to)),
        Action::Noop => dispatch::write_ok(conn.out(), to, &[]),
        Action::Version => dispatch::write_ok(conn.out(), to, super::VERSION.as_bytes()),
        Action::Verbosity(level) => {
            ctx.node.verbosity.store(level, Relaxed);
            dispatch::write_ok(conn.out(), to, &[]);
        }
        Action::Quit => {
            if !req.opcode.is_quiet() {
                dispatch::write_ok(conn.out(), to, &[]);
            }
            conn.closing = true;
        }
        Action::Stat(group) => match report::stats(ctx.node, group, &report::Asker::of(&conn.socket)) {
            Some(list) => dispatch::write_stats(conn.out(), to, list.iter().map(|(n, v)| (n.as_ref(), v.clone()))),
            None => write_error(conn.out(), to.opcode, to.opaque, Status::KeyNotFound),
        },
    }
}

/// The length of the frame at the front of `buf`, once its header has arrived, so the
/// reader can make room for all of it at once.
pub fn frame_len(buf: &[u8]) -> usize {
    crate::protocol::binary::Header::peek(buf).map_or(0, |h| crate::protocol::binary::HEADER_LEN + h.body_len as usize)
}
