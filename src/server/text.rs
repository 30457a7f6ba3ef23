//! Serving a connection that speaks the text protocol (classic and meta commands).

use std::sync::atomic::Ordering::Relaxed;

use super::connection::Connection;
use super::mailbox::ReturnAddress;
use super::report;
use super::route::{self, Ctx};
use crate::protocol::text::{self, Action};
use crate::protocol::ReplyTo;
use crate::storage::Command;

/// memcached's highest verbosity level.
const MAX_VERBOSITY: u32 = 2;

/// Serves every whole request in the connection's buffer.
pub fn process(ctx: &mut Ctx<'_>, conn: &mut Connection, key: usize) {
    let (rbuf, mut pos, end) = conn.take_input();
    while !conn.closing && !conn.over_high_water() {
        if conn.watcher.is_some() {
            // A watcher gets log lines only; what it sends is read and dropped (as
            // memcached's logger reads a watcher only to see it close).
            pos = end;
            break;
        }
        if !conn.discard(&mut pos, end) {
            break;
        }
        match text::decode(&rbuf[pos..end], ctx.limits) {
            Ok(None) => break,
            Ok(Some((req, used))) => {
                pos += used;
                let from = ReturnAddress { core: ctx.core, conn: key, generation: conn.generation, seq: 0, read_at: 0, op: None };
                serve(ctx, conn, from, &req);
            }
            Err(e) => {
                log::debug!("core {}: text request on connection {key} refused: {e:?}", ctx.core);
                ctx.stats.protocol_errors.incr();
                if let Some(old) = e.unlink.and_then(|u| u.key(&rbuf[pos..end])) {
                    // A store refused as too large removes the old value, as memcached's
                    // unlink does; the delete answers nothing.
                    let from = ReturnAddress { core: ctx.core, conn: key, generation: conn.generation, seq: 0, read_at: 0, op: None };
                    let cmd = Command::Delete { key: old.as_bytes(), cas: 0 };
                    route::storage(ctx, conn, from, &cmd, ReplyTo::Text(text::ReplyTo::Deleted { noreply: true }));
                }
                if let Some(reply) = e.reply {
                    let out = conn.out();
                    out.extend_from_slice(reply.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                pos += e.used;
                conn.skip = e.skip;
                conn.closing |= e.close;
            }
        }
    }
    conn.restore_input(rbuf, pos);
}

/// Serves one request: storage commands go to their keys' shards, the rest is answered here.
fn serve(ctx: &mut Ctx<'_>, conn: &mut Connection, from: ReturnAddress, req: &text::Request<'_>) {
    let action = text::action(req);
    if !matches!(action, Action::Storage(..) | Action::Get { .. }) {
        ctx.latency.served(crate::stats::latency::Op::Other);
    }
    match action {
        Action::Storage(cmd, to) => route::storage(ctx, conn, from, &cmd, ReplyTo::Text(to)),
        Action::Get { keys, touch, reply } => {
            // One command per key, each on its own shard; a miss writes nothing, and END
            // takes its place after every reply of the keys before it.
            for key in keys.iter() {
                let cmd = match touch {
                    Some(exptime) => Command::GetAndTouch { key, exptime },
                    None => Command::Get { key },
                };
                route::storage(ctx, conn, from, &cmd, ReplyTo::Text(reply));
            }
            conn.out().extend_from_slice(b"END\r\n");
        }
        Action::Reply(bytes) => conn.out().extend_from_slice(bytes),
        Action::Version => {
            let out = conn.out();
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(super::VERSION.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Action::Verbosity { level, noreply } => {
            ctx.node.verbosity.store(level.min(MAX_VERBOSITY), Relaxed);
            if !noreply {
                conn.out().extend_from_slice(b"OK\r\n");
            }
        }
        Action::Quit => conn.closing = true,
        Action::Stats(group) if group == b"detail" || group.starts_with(b"detail ") => {
            match report::detail(ctx.node, group) {
                Some(report::Detail::Switched) => conn.out().extend_from_slice(b"OK\r\n"),
                Some(report::Detail::Dump(text)) => conn.out().extend_from_slice(&text),
                Some(report::Detail::Usage) | None => {
                    conn.out().extend_from_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n")
                }
            }
        }
        Action::Stats(group) => match report::stats(ctx.node, group, &report::Asker::of(&conn.socket)) {
            Some(_) if group == b"reset" => conn.out().extend_from_slice(b"RESET\r\n"),
            Some(list) => {
                let out = conn.out();
                for (name, value) in list {
                    out.extend_from_slice(b"STAT ");
                    out.extend_from_slice(name.as_bytes());
                    out.push(b' ');
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"END\r\n");
            }
            None => conn.out().extend_from_slice(b"ERROR\r\n"),
        },
        Action::Metadump => super::metadump::start(ctx, conn, from.conn),
        Action::Watch(kinds) => match ctx.node.watchers.add(kinds) {
            // `OK` is the first thing in the watcher's buffer: it follows the replies before.
            Some(w) => conn.watcher = Some(w),
            None => conn.out().extend_from_slice(b"WATCHER_TOO_MANY log watcher limit reached\r\n"),
        },
        Action::Shutdown { graceful } => {
            if !ctx.node.config.enable_shutdown {
                conn.out().extend_from_slice(b"ERROR: shutdown not enabled\r\n");
            } else if graceful.is_none() {
                conn.out().extend_from_slice(b"CLIENT_ERROR invalid shutdown mode\r\n");
            } else {
                // caskade's only stop is the orderly one: the same path as SIGTERM.
                log::info!("shutdown command on core {}", ctx.core);
                conn.closing = true;
                // SAFETY: kill on our own pid with a signal the main thread handles.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            }
        }
    }
}
