//! What the threads around the data path (the admin HTTP server, the SIGHUP reload) ask of
//! the cores, and how a core answers.
//!
//! A core's shard and latency histograms belong to its thread alone, so nobody reads them
//! from outside: a [`Control`] message goes into the core's mailbox (the same bounded
//! channel and `Waker` as the cores' batches), the core answers it between two event-loop
//! turns, and replies on a channel the message carried. Each answer is small and bounded (a
//! copy of the histograms, about [`DUMP_CHUNK_BYTES`] of items), so the data path is paused
//! for well under a millisecond per message.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};

use super::mailbox::{Mailboxes, Message};
use super::Node;
use crate::config::Config;
use crate::stats::latency::{Latencies, Recorder};
use crate::storage::disk::merge::MergePolicy;
use crate::storage::disk::Fsync;
use crate::storage::Shard;

/// Items a core lists in one metadump chunk: a few milliseconds of the loop at most.
pub const METADUMP_CHUNK_ITEMS: usize = 10_000;

/// Bytes of items (keys and values) a core puts in one dump chunk, about.
pub const DUMP_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub enum Control {
    /// Send a copy of this core's latency histograms, and its log's fsync times.
    Latency(Sender<Latencies>),
    /// Write the live items from keydir slot `from` on in the dump format (`crate::dump`).
    Dump { from: usize, reply: Sender<DumpChunk> },
    /// `lru_crawler metadump`: the live items from keydir slot `from` on, in memcached's
    /// metadump lines (`crate::protocol::text::metadump`).
    Metadump { from: usize, reply: Sender<DumpChunk> },
    /// A new share of the memory limit, in bytes (a reload).
    MemoryLimit(usize),
    /// A new fsync policy (a reload).
    Fsync(Fsync),
    /// New merge thresholds (a reload); a merge under way finishes with its inputs.
    MergePolicy(MergePolicy),
}

/// One core's slice of a dump.
#[derive(Debug, Default)]
pub struct DumpChunk {
    /// Items in the dump format, without header or trailer.
    pub bytes: Vec<u8>,
    pub items: u64,
    /// Where the next chunk of this core starts; `None`: this core is done.
    pub next: Option<usize>,
}

/// Answers one control message on the core that owns `shard` and `latency`.
pub fn answer(core: usize, shard: &mut Shard, latency: &Recorder, now: u32, msg: Control) {
    match msg {
        Control::Metadump { from, reply } => {
            let mut chunk = DumpChunk::default();
            chunk.next = shard.scan_meta(from, METADUMP_CHUNK_ITEMS, now, |key, meta| {
                crate::protocol::text::metadump::line(&mut chunk.bytes, key, meta);
                chunk.items += 1;
            });
            let _ = reply.send(chunk);
        }
        Control::Latency(reply) => {
            let mut copy = latency.snapshot();
            if let Some(log) = shard.log() {
                copy.fsync = log.fsync_times();
            }
            let _ = reply.send(copy);
        }
        Control::Dump { from, reply } => {
            let mut chunk = DumpChunk::default();
            chunk.next = shard.scan(from, DUMP_CHUNK_BYTES, now, |key, value, flags, expiry| {
                if crate::dump::write_item(&mut chunk.bytes, key, value, flags, expiry) {
                    chunk.items += 1;
                }
            });
            let _ = reply.send(chunk);
        }
        Control::MemoryLimit(bytes) => shard.set_memory_limit(bytes),
        Control::Fsync(policy) => {
            if let Err(e) = shard.set_fsync(policy) {
                log::error!("core {core}: cannot sync the log before changing --fsync: {e}");
            }
        }
        Control::MergePolicy(policy) => shard.set_merge_policy(policy),
    }
}

/// What the node's lifecycle is at, for `/health` and systemd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Recovering,
    Serving,
    Stopping,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Recovering => "recovering",
            Phase::Serving => "serving",
            Phase::Stopping => "stopping",
        }
    }
}

/// Shared by the main thread (which moves the phase on) and the admin thread (which reads
/// it, and reaches the cores through the [`Handle`] once they run).
pub struct Lifecycle {
    phase: Mutex<Phase>,
    handle: std::sync::OnceLock<Arc<Handle>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { phase: Mutex::new(Phase::Starting), handle: std::sync::OnceLock::new() }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// The cores run: from now on the admin thread can ask them.
    pub fn serve(&self, handle: Arc<Handle>) {
        let _ = self.handle.set(handle);
        self.set_phase(Phase::Serving);
    }

    /// The running node, once there is one.
    pub fn handle(&self) -> Option<&Arc<Handle>> {
        self.handle.get()
    }
}

/// The running node as seen from outside its cores.
pub struct Handle {
    pub node: Arc<Node>,
    mailboxes: Mailboxes,
    /// The configuration in force (the command line and file, as last reloaded).
    config: Mutex<Config>,
}

impl Handle {
    pub(super) fn new(node: Arc<Node>, mailboxes: Mailboxes) -> Handle {
        let config = node.config.clone();
        Handle { node, mailboxes, config: Mutex::new(config) }
    }

    pub fn cores(&self) -> usize {
        self.mailboxes.len()
    }

    pub fn config(&self) -> Config {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set_config(&self, config: Config) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// The general STAT list, memcached's names (what `stats` answers over the protocol).
    pub fn general_stats(&self) -> Vec<(&'static str, String)> {
        super::report::general(&self.node)
    }

    /// Sends `msg` to `core`, waiting up to `timeout` for room in its mailbox.
    pub(super) fn send(&self, core: usize, msg: Control, timeout: Duration) -> io::Result<()> {
        self.mailboxes
            .send_control(core, Message::Control(msg), timeout)
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("core {core} did not take a control message")))
    }

    /// Every core's latency histograms, merged; cores that do not answer within `timeout`
    /// (a stopping node) are left out.
    pub fn latencies(&self, timeout: Duration) -> Latencies {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = bounded(self.cores());
        let asked = (0..self.cores()).filter(|&c| self.send(c, Control::Latency(tx.clone()), timeout).is_ok()).count();
        let mut merged = Latencies::new();
        for _ in 0..asked {
            match rx.recv_deadline(deadline) {
                Ok(l) => merged.add(&l),
                Err(_) => break,
            }
        }
        merged
    }

    /// The next slice of `core`'s items for a dump.
    pub fn dump_chunk(&self, core: usize, from: usize, timeout: Duration) -> io::Result<DumpChunk> {
        let (tx, rx) = bounded(1);
        self.send(core, Control::Dump { from, reply: tx }, timeout)?;
        rx.recv_timeout(timeout)
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("core {core} did not answer a dump request")))
    }

    /// Sends a control message to every core, each made by `make`; says which cores it
    /// could not reach.
    pub(super) fn broadcast(&self, make: impl Fn() -> Control) -> Result<(), Vec<usize>> {
        let failed: Vec<usize> =
            (0..self.cores()).filter(|&c| self.send(c, make(), Duration::from_secs(1)).is_err()).collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }
}
