//! `lru_crawler metadump`: a helper thread lists every core's items, a core at a time.
//!
//! A core's shard belongs to its thread, and no event loop may wait for another core (two
//! cores waiting for each other would never turn again). So the connection's core reserves
//! one reply slot per core and hands the listing to a thread, which asks each core in turn
//! for bounded chunks ([`Control::Metadump`], [`METADUMP_CHUNK_ITEMS`] items, answered
//! between two turns of that core's loop) and sends each core's whole listing back to the
//! connection's core ([`Message::Complete`]) as soon as it has it, `END` after the last. The
//! connection's later replies wait behind those slots, in order. At most [`MAX_RUNNING`]
//! listings run at once in the process; another gets memcached's `BUSY` line.
//!
//! [`METADUMP_CHUNK_ITEMS`]: super::control::METADUMP_CHUNK_ITEMS

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use crossbeam_channel::bounded;

use super::connection::Connection;
use super::control::Control;
use super::mailbox::{Mailboxes, Message};
use super::route::Ctx;

/// Listings running at once, process-wide.
pub const MAX_RUNNING: usize = 2;
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// memcached's answer while its crawler is busy.
const BUSY: &[u8] = b"BUSY currently processing crawler request\r\n";
/// How long the thread waits for a core's mailbox or answer (a stopping node).
const TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the listing for connection `key` (served by this core).
pub fn start(ctx: &Ctx<'_>, conn: &mut Connection, key: usize) {
    if RUNNING.fetch_add(1, SeqCst) >= MAX_RUNNING {
        RUNNING.fetch_sub(1, SeqCst);
        conn.out().extend_from_slice(BUSY);
        return;
    }
    let cores = ctx.mailboxes.len();
    let first = conn.expect_replies(1, Vec::new());
    for _ in 1..cores {
        conn.expect_replies(1, Vec::new());
    }
    let (mailboxes, home, generation) = (ctx.mailboxes.clone(), ctx.core, conn.generation);
    let spawned = std::thread::Builder::new().name("metadump".into()).spawn(move || {
        for core in 0..cores {
            let mut bytes = list(&mailboxes, core);
            if core + 1 == cores {
                bytes.extend_from_slice(b"END\r\n");
            }
            let done = Message::Complete { conn: key, generation, seq: first + core as u64, bytes };
            if mailboxes.send_control(home, done, TIMEOUT).is_err() {
                break;
            }
        }
        RUNNING.fetch_sub(1, SeqCst);
    });
    if spawned.is_err() {
        RUNNING.fetch_sub(1, SeqCst);
        for core in 0..cores {
            let last = core + 1 == cores;
            conn.complete(first + core as u64, if last { b"SERVER_ERROR out of memory\r\n" } else { b"" });
        }
    }
}

/// One core's items, chunk by chunk; what a core that does not answer had is left out.
fn list(mailboxes: &Mailboxes, core: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = Some(0);
    while let Some(f) = from {
        let (reply, chunk) = bounded(1);
        if mailboxes.send_control(core, Message::Control(Control::Metadump { from: f, reply }), TIMEOUT).is_err() {
            break;
        }
        let Ok(c) = chunk.recv_timeout(TIMEOUT) else { break };
        out.extend_from_slice(&c.bytes);
        from = c.next;
    }
    out
}
