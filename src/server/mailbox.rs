//! How cores talk: one bounded channel per core, paired with the `mio::Waker` of its poll.
//!
//! A core that must run a command on another core's shard sends a [`Message::Request`]; the
//! owner runs it, encodes the reply, and sends back a [`Message::Reply`] that the first core
//! slots into the connection's queue of pending replies. Messages to one core leave in the
//! order they were queued, so two commands of one connection on one shard never overtake
//! each other. Wakes are batched: one per destination per event-loop turn.

use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use crate::protocol::binary::dispatch::ReplyTo;
use crate::storage::Command;

/// Messages waiting in one core's inbox at most; past it the sender keeps them and retries.
pub const MAILBOX_CAPACITY: usize = 1 << 16;

/// Which connection a reply goes back to. `generation` tells a reused slab slot from the
/// connection that sent the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnAddress {
    pub core: usize,
    pub conn: usize,
    pub generation: u64,
    pub seq: u64,
}

#[derive(Debug)]
pub enum Message {
    /// Run `cmd` on your shard and reply to `from`; `reply: None` wants an empty
    /// acknowledgement (a flush fanned out to every core).
    Request { from: ReturnAddress, reply: Option<ReplyTo>, cmd: Command<Bytes> },
    /// The encoded reply (possibly empty) for the request sent from `to`.
    Reply { to: ReturnAddress, bytes: Vec<u8> },
}

/// The sending side of every core's mailbox.
#[derive(Clone)]
pub struct Mailboxes {
    senders: Arc<[Sender<Message>]>,
    wakers: Arc<[Arc<Waker>]>,
}

impl Mailboxes {
    pub fn new(senders: Vec<Sender<Message>>, wakers: Vec<Arc<Waker>>) -> Mailboxes {
        Mailboxes { senders: senders.into(), wakers: wakers.into() }
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn wake(&self, core: usize) {
        if let Err(e) = self.wakers[core].wake() {
            log::warn!("cannot wake core {core}: {e}");
        }
    }

    pub fn wake_all(&self) {
        (0..self.len()).for_each(|c| self.wake(c));
    }
}

pub fn channel() -> (Sender<Message>, Receiver<Message>) {
    crossbeam_channel::bounded(MAILBOX_CAPACITY)
}

/// Messages a core has queued for the others during one turn.
pub struct Outbox {
    queues: Vec<Vec<Message>>,
}

impl Outbox {
    pub fn new(cores: usize) -> Outbox {
        Outbox { queues: (0..cores).map(|_| Vec::new()).collect() }
    }

    pub fn push(&mut self, core: usize, msg: Message) {
        self.queues[core].push(msg);
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(Vec::is_empty)
    }

    /// Sends what fits, wakes each destination once, keeps the rest (a full mailbox) for the
    /// next turn. Returns whether anything was kept.
    pub fn send(&mut self, mailboxes: &Mailboxes) -> bool {
        let mut kept = false;
        for (core, queue) in self.queues.iter_mut().enumerate() {
            if queue.is_empty() {
                continue;
            }
            let mut sent = 0;
            for msg in queue.iter_mut() {
                // Swap a placeholder in so a message that does not fit can stay in place.
                let m = std::mem::replace(msg, Message::Reply { to: PLACEHOLDER, bytes: Vec::new() });
                match mailboxes.senders[core].try_send(m) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                        *msg = m;
                        break;
                    }
                }
            }
            queue.drain(..sent);
            kept |= !queue.is_empty();
            if sent > 0 {
                mailboxes.wake(core);
            }
        }
        kept
    }
}

const PLACEHOLDER: ReturnAddress = ReturnAddress { core: usize::MAX, conn: usize::MAX, generation: 0, seq: 0 };
