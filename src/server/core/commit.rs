//! The end of a core's turn: its records committed, the replies that waited for them let
//! go (now, or under group commit once their sync round is synced: `held::Rounds`), and
//! the turn's changes handed to replication, whose acknowledgements release the replies
//! to durable writes (`gate`).

use super::{Core, Waiting};
use crate::server::gate::{Dest, Verdict};
use crate::server::held::{Held, Rounds};

impl Core {
    /// Writes (and per the policy syncs) the records of this turn, then lets the replies that
    /// waited for it go. If that fails, every reply to a command that appended a record this
    /// turn becomes an error status (here and in the batches going back to other cores);
    /// later mutations get one too until the disk works again, and reads go on.
    ///
    /// Under group commit the fsync runs on the shard's commit thread: this turn's replies
    /// (held ones, and those to other cores) wait with the turn's round, and leave once an
    /// fsync has covered it, as error statuses if that fsync failed.
    pub(super) fn commit(&mut self) -> bool {
        let committed = match self.shard.needs_commit() {
            false => true,
            true => match self.shard.commit() {
                Ok(()) => true,
                Err(e) => {
                    log::error!("core {}: cannot write the log: {e}; the mutations of this turn get an error status", self.id);
                    self.outbox.fail_replies();
                    false
                }
            },
        };
        let progress = self.shard.sync_rounds();
        match Rounds::<Waiting>::wait_for(committed, progress) {
            Some(round) => {
                let replies = self.outbox.take_replies();
                if !self.held.is_empty() || !replies.is_empty() {
                    let held = std::mem::take(&mut self.held);
                    self.waiting.push(round, Waiting { held, replies });
                }
            }
            None => {
                let mut held = std::mem::take(&mut self.held);
                self.release(&mut held, committed);
                self.held = held;
            }
        }
        let mut settled = Vec::new();
        self.waiting.settle(progress, |round, w, ok| settled.push((round, w, ok)));
        for (round, mut w, ok) in settled {
            if !ok {
                log::error!("core {}: an fsync failed; the mutations of sync round {round} get an error status", self.id);
            }
            self.release(&mut w.held, ok);
            for (core, mut batch) in w.replies {
                batch.failed |= !ok;
                self.outbox.push_ready(core, batch);
            }
        }
        committed
    }

    /// Hands the changes of the turn to the replication streams, sends what they have, and
    /// releases the replies to durable writes that are now durable (or past their deadline).
    pub(super) fn replicate(&mut self, committed: bool) {
        let (Some(r), Some(cluster)) = (self.replication.as_mut(), self.node.cluster.as_deref()) else {
            // No backups: nothing is ever held in the gate (a durable write is impossible).
            return;
        };
        r.after_commit(&mut self.shard, committed);
        r.pump(&mut self.shard, &mut self.links, cluster, self.id, self.mailboxes.len(), self.now, self.gate.wants_persist());
        self.write_links();
        if self.gate.is_empty() {
            return;
        }
        let mut released = Vec::new();
        let sync_rounds = self.shard.sync_rounds();
        let round = sync_rounds.filter(|e| e.written > e.durable).map(|e| e.written);
        self.gate.committed(committed, round, |d, b, v| released.push((d, b.to_vec(), v)));
        if let Some(e) = sync_rounds {
            self.gate.fsynced(e.durable, e.failed, |d, b, v| released.push((d, b.to_vec(), v)));
        }
        let r = self.replication.as_ref().expect("replication is on");
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.gate.poll(now_ms, |p, s| r.acked_count(p, s), |d, b, v| released.push((d, b.to_vec(), v)));
        for (dest, bytes, verdict) in released {
            match verdict {
                Verdict::Durable => self.stats.durable_writes.incr(),
                Verdict::Ambiguous => self.stats.durable_ambiguous.incr(),
                Verdict::DiskError | Verdict::Behind => {}
            }
            match dest {
                Dest::Conn { conn, generation, seq } => {
                    let Some(c) = self.conns.get_mut(conn).filter(|c| c.generation == generation) else { continue };
                    c.complete(seq, &bytes);
                    self.dirty.push(conn);
                }
                Dest::Core(to) => self.outbox.replies(to.core).push(to, None, b"", |out| {
                    out.extend_from_slice(&bytes);
                    false
                }),
            }
        }
    }

    /// Puts held replies in their connections' order, as the commit turned out.
    pub(super) fn release(&mut self, held: &mut Held, committed: bool) {
        if held.is_empty() {
            return;
        }
        let (conns, dirty) = (&mut self.conns, &mut self.dirty);
        let mut close = Vec::new();
        held.release(committed, |r| {
            let Some(conn) = conns.get_mut(r.conn).filter(|c| c.generation == r.generation) else { return };
            conn.held = conn.held.saturating_sub(r.held);
            match r.bytes {
                Some(bytes) => {
                    conn.complete(r.seq, bytes);
                    dirty.push(r.conn);
                }
                None => close.push(r.conn),
            }
        });
        for key in close {
            self.close(key);
        }
    }
}
