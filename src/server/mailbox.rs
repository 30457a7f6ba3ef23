//! How cores talk: one bounded channel per core, paired with the `mio::Waker` of its poll.
//!
//! A core that must run commands on another core's shard gathers them, during one event-loop
//! turn, into one [`Message::Requests`] batch for that core: the commands' keys and values are
//! copied into one byte arena, so a batch costs a few allocations whatever its size. The owner
//! runs them in order, encodes each reply into one arena of its own, and sends back one
//! [`Message::Replies`] batch, whose replies the first core slots into each connection's queue
//! of pending replies. Batches to one core leave in the order they were made, so two commands
//! of one connection on one shard never overtake each other.
//!
//! A batch wakes its core only if that core is about to sleep: a core says so
//! ([`Mailboxes::going_to_sleep`]) before it polls and looks at its inbox once more; a
//! sender sends, then looks at that flag (both with a full fence between, so at least one
//! of them sees the other: the core finds the batch, or the sender sees the flag and
//! wakes it). A core in the middle of a turn drains its inbox in that turn or the next
//! without a wake, which saves the `eventfd` write (issue 15). At most one wake per
//! destination per turn.

use std::ops::Range;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use super::held::{self, OnFailure};
use crate::protocol::ReplyTo;
use crate::stats::latency::{Op, Stamp};
use crate::storage::Command;

/// Batches waiting in one core's inbox at most; past it the sender keeps them and retries.
pub const MAILBOX_CAPACITY: usize = 1 << 12;

/// Which connection a reply goes back to. `generation` tells a reused slab slot from the
/// connection that sent the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnAddress {
    pub core: usize,
    pub conn: usize,
    pub generation: u64,
    pub seq: u64,
    /// When the request was read, and its class, for its latency once the reply is back
    /// (`op: None`: not timed this way, as a flush's acknowledgements).
    pub read_at: Stamp,
    pub op: Option<Op>,
}

/// One command sent to another core; its buffers are ranges of the batch's arena.
#[derive(Debug)]
pub struct Forward {
    pub from: ReturnAddress,
    /// `None`: an empty acknowledgement is wanted (a flush fanned out to every core).
    pub reply: Option<ReplyTo>,
    pub cmd: Command<Range<u32>>,
}

#[derive(Debug, Default)]
pub struct RequestBatch {
    pub arena: Vec<u8>,
    pub items: Vec<Forward>,
}

impl RequestBatch {
    pub fn push(&mut self, from: ReturnAddress, reply: Option<ReplyTo>, cmd: &Command<&[u8]>) {
        let arena = &mut self.arena;
        let cmd = cmd.map(|b| {
            let start = arena.len() as u32;
            arena.extend_from_slice(b);
            start..arena.len() as u32
        });
        self.items.push(Forward { from, reply, cmd });
    }

    /// The command with its buffers resolved in the arena.
    pub fn command(&self, f: &Forward) -> Command<&[u8]> {
        f.cmd.map(|r| &self.arena[r.start as usize..r.end as usize])
    }
}

/// One reply in a [`ReplyBatch`]: its bytes, and what replaces them if the commit fails.
#[derive(Debug)]
pub struct Reply {
    pub to: ReturnAddress,
    pub ok: Range<u32>,
    pub on_failure: OnFailure,
}

#[derive(Debug, Default)]
pub struct ReplyBatch {
    pub arena: Vec<u8>,
    pub items: Vec<Reply>,
    /// The log could not be written: the replies of commands that appended a record are
    /// replaced as their [`OnFailure`] says.
    pub failed: bool,
}

impl ReplyBatch {
    /// Appends the reply `write` writes into the arena; `write` says whether its command
    /// appended a record, and if so the error reply for `reply` is written beside it.
    pub fn push(&mut self, to: ReturnAddress, reply: Option<&ReplyTo>, key: &[u8], write: impl FnOnce(&mut Vec<u8>) -> bool) {
        let start = self.arena.len() as u32;
        let appended = write(&mut self.arena);
        let ok = start..self.arena.len() as u32;
        let on_failure = if appended { held::write_failure(&mut self.arena, reply, key) } else { OnFailure::Stands };
        self.items.push(Reply { to, ok, on_failure });
    }

    /// What the connection of `reply` gets: `None` means it is closed unanswered.
    pub fn bytes(&self, reply: &Reply) -> Option<&[u8]> {
        let range = match (&reply.on_failure, self.failed) {
            (_, false) | (OnFailure::Stands, true) => &reply.ok,
            (OnFailure::Error(r), true) => r,
            (OnFailure::Close, true) => return None,
        };
        Some(&self.arena[range.start as usize..range.end as usize])
    }
}

#[derive(Debug)]
pub enum Message {
    Requests(RequestBatch),
    Replies(ReplyBatch),
    /// From the admin thread or a reload, not from another core (`control.rs`).
    Control(super::control::Control),
    /// A peer connection whose HELLO names this core, handed over by the core that accepted
    /// it, with what it had read.
    AdoptPeer(mio::net::TcpStream, Vec<u8>),
    /// The reply to a request a helper thread answered (`lru_crawler metadump`): `bytes` fill
    /// slot `seq` of connection `conn`, if it is still the same connection.
    Complete { conn: usize, generation: u64, seq: u64, bytes: Vec<u8> },
}

/// A core's "about to sleep" flag, on a cache line of its own (every sender reads it).
#[repr(align(64))]
#[derive(Default)]
struct Asleep(AtomicBool);

/// The sending side of every core's mailbox.
#[derive(Clone)]
pub struct Mailboxes {
    senders: Arc<[Sender<Message>]>,
    wakers: Arc<[Arc<Waker>]>,
    asleep: Arc<[Asleep]>,
}

impl Mailboxes {
    pub fn new(senders: Vec<Sender<Message>>, wakers: Vec<Arc<Waker>>) -> Mailboxes {
        let asleep = (0..senders.len()).map(|_| Asleep::default()).collect();
        Mailboxes { senders: senders.into(), wakers: wakers.into(), asleep }
    }

    /// Core `core` is about to poll: from now on a batch sent to it wakes it. Returns
    /// whether it may sleep, i.e. whether `inbox` (its own) is empty; if not, it must poll
    /// without waiting. [`awake`](Self::awake) once the poll returns.
    pub fn going_to_sleep(&self, core: usize, inbox: &Receiver<Message>) -> bool {
        self.asleep[core].0.store(true, Ordering::Relaxed);
        // Pairs with the fence in `wake_if_asleep`: the flag is seen there, or the batch
        // sent before it is seen here.
        fence(Ordering::SeqCst);
        inbox.is_empty()
    }

    /// Core `core`'s poll returned: it will drain its inbox without being woken.
    pub fn awake(&self, core: usize) {
        self.asleep[core].0.store(false, Ordering::Relaxed);
    }

    /// Wakes `core` if it is (about to be) asleep; called after sending it a batch.
    fn wake_if_asleep(&self, core: usize) {
        fence(Ordering::SeqCst);
        if self.asleep[core].0.load(Ordering::Relaxed) {
            self.wake(core);
        }
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

    /// Sends one message from outside the cores (a control message), waiting up to
    /// `timeout` for room, and wakes the core. Gives the message back if it could not.
    /// Sends a message from one core to another at once (a peer connection handed over);
    /// gives it back if the mailbox is full.
    pub fn try_send(&self, core: usize, msg: Message) -> Result<(), Message> {
        match self.senders[core].try_send(msg) {
            Ok(()) => {
                self.wake(core);
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }

    pub fn send_control(&self, core: usize, msg: Message, timeout: std::time::Duration) -> Result<(), Message> {
        match self.senders[core].send_timeout(msg, timeout) {
            Ok(()) => {
                self.wake(core);
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }
}

pub fn channel() -> (Sender<Message>, Receiver<Message>) {
    crossbeam_channel::bounded(MAILBOX_CAPACITY)
}

/// What a core has gathered for the others during one turn.
pub struct Outbox {
    requests: Vec<RequestBatch>,
    replies: Vec<ReplyBatch>,
    /// Batches a full mailbox did not take, in order, per destination.
    held: Vec<Vec<Message>>,
}

impl Outbox {
    pub fn new(cores: usize) -> Outbox {
        Outbox {
            requests: (0..cores).map(|_| RequestBatch::default()).collect(),
            replies: (0..cores).map(|_| ReplyBatch::default()).collect(),
            held: (0..cores).map(|_| Vec::new()).collect(),
        }
    }

    pub fn requests(&mut self, core: usize) -> &mut RequestBatch {
        &mut self.requests[core]
    }

    pub fn replies(&mut self, core: usize) -> &mut ReplyBatch {
        &mut self.replies[core]
    }

    /// Takes this turn's replies out, to send once their commit is durable.
    pub fn take_replies(&mut self) -> Vec<(usize, ReplyBatch)> {
        let mut taken = Vec::new();
        for (core, batch) in self.replies.iter_mut().enumerate() {
            if !batch.items.is_empty() {
                taken.push((core, std::mem::take(batch)));
            }
        }
        taken
    }

    /// Queues replies made in an earlier turn, now free to go, for the next send.
    pub fn push_ready(&mut self, core: usize, batch: ReplyBatch) {
        self.held[core].push(Message::Replies(batch));
    }

    /// Marks this turn's replies as failed (the log write failed).
    pub fn fail_replies(&mut self) {
        for batch in &mut self.replies {
            if !batch.items.is_empty() {
                batch.failed = true;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests.iter().all(|b| b.items.is_empty())
            && self.replies.iter().all(|b| b.items.is_empty())
            && self.held.iter().all(Vec::is_empty)
    }

    /// Sends this turn's batches, waking each destination once; keeps what a full mailbox
    /// refused for the next turn.
    pub fn send(&mut self, mailboxes: &Mailboxes) {
        self.send_some(mailboxes, true);
    }

    /// Sends this turn's requests only: they wait for nobody's commit, while the replies
    /// made this turn must wait for this core's.
    pub fn send_requests(&mut self, mailboxes: &Mailboxes) {
        self.send_some(mailboxes, false);
    }

    fn send_some(&mut self, mailboxes: &Mailboxes, replies: bool) {
        for core in 0..self.requests.len() {
            // Replies first: they unblock the other core's connections.
            if replies && !self.replies[core].items.is_empty() {
                let batch = std::mem::take(&mut self.replies[core]);
                self.held[core].push(Message::Replies(batch));
            }
            if !self.requests[core].items.is_empty() {
                let batch = std::mem::take(&mut self.requests[core]);
                self.held[core].push(Message::Requests(batch));
            }
            if self.held[core].is_empty() {
                continue;
            }
            let mut queue = std::mem::take(&mut self.held[core]).into_iter();
            let mut sent = false;
            while let Some(msg) = queue.next() {
                match mailboxes.senders[core].try_send(msg) {
                    Ok(()) => sent = true,
                    Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                        self.held[core].push(m);
                        self.held[core].extend(queue);
                        break;
                    }
                }
            }
            if sent {
                mailboxes.wake_if_asleep(core);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    const WAKER: Token = Token(0);

    /// Two cores' mailboxes with core 1's poll, and whether a poll of it sees a wake.
    fn two_cores() -> (Mailboxes, Receiver<Message>, Poll) {
        let poll = Poll::new().unwrap();
        let other = Poll::new().unwrap();
        let wakers = vec![Arc::new(Waker::new(other.registry(), WAKER).unwrap()), Arc::new(Waker::new(poll.registry(), WAKER).unwrap())];
        let ((tx0, _rx0), (tx1, rx1)) = (channel(), channel());
        (Mailboxes::new(vec![tx0, tx1], wakers), rx1, poll)
    }

    fn woken(poll: &mut Poll) -> bool {
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        events.iter().any(|e| e.token() == WAKER)
    }

    /// Sends one batch to core 1, as a core's turn would; a full mailbox is tried again
    /// (as the next turn would).
    fn send_one(mailboxes: &Mailboxes) {
        let mut outbox = Outbox::new(2);
        let to = ReturnAddress { core: 1, conn: 0, generation: 0, seq: 0, read_at: 0, op: None };
        outbox.replies(1).push(to, None, b"k", |out| {
            out.extend_from_slice(b"reply");
            false
        });
        outbox.send(mailboxes);
        while !outbox.is_empty() {
            std::thread::yield_now();
            outbox.send(mailboxes);
        }
    }

    #[test]
    fn a_batch_wakes_only_a_core_about_to_sleep() {
        let (mailboxes, inbox, mut poll) = two_cores();
        // Core 1 is in the middle of a turn: the batch waits in its inbox, no wake.
        send_one(&mailboxes);
        assert!(!woken(&mut poll));
        // Before it sleeps it looks again and finds it: it must not sleep.
        assert!(!mailboxes.going_to_sleep(1, &inbox));
        mailboxes.awake(1);
        assert!(matches!(inbox.try_recv(), Ok(Message::Replies(_))));
        // Now it sleeps with an empty inbox: the next batch wakes it.
        assert!(mailboxes.going_to_sleep(1, &inbox));
        send_one(&mailboxes);
        assert!(woken(&mut poll));
        mailboxes.awake(1);
        assert!(inbox.try_recv().is_ok());
        // Awake again: no wake.
        send_one(&mailboxes);
        assert!(!woken(&mut poll));
    }

    /// Sender and sleeper race on two threads: every batch is either found before the
    /// sleep or wakes it; none waits for the poll's timeout.
    #[test]
    fn no_batch_is_left_asleep() {
        let (mailboxes, inbox, mut poll) = two_cores();
        const BATCHES: usize = 20_000;
        let sender = {
            let mailboxes = mailboxes.clone();
            std::thread::spawn(move || {
                for i in 0..BATCHES {
                    send_one(&mailboxes);
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut events = Events::with_capacity(8);
        let (mut got, started) = (0, std::time::Instant::now());
        while got < BATCHES {
            // The end of a turn: a batch sent now is in the window the protocol closes.
            for _ in 0..500 {
                std::hint::spin_loop();
            }
            let timeout = if mailboxes.going_to_sleep(1, &inbox) { Duration::from_secs(5) } else { Duration::ZERO };
            let slept = std::time::Instant::now();
            poll.poll(&mut events, Some(timeout)).unwrap();
            mailboxes.awake(1);
            assert!(slept.elapsed() < Duration::from_secs(4), "a batch was left waiting after {got}");
            while inbox.try_recv().is_ok() {
                got += 1;
            }
        }
        sender.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
