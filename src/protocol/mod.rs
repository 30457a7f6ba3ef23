//! Wire protocols. Codecs here do no I/O.
//!
//! Both protocols are served on the same port, as memcached serves them: a connection whose
//! first byte is `0x80` (the binary request magic) speaks [`binary`]; any other first byte
//! means [`text`]. Either way a request becomes storage [`Command`]s plus a [`ReplyTo`] that
//! travels with each command to the core that owns its key, where the reply is written.

pub mod binary;
pub mod peer;
pub mod text;

pub use binary::Limits;

use crate::storage::{Command, Outcome};

/// The protocol a connection speaks, fixed by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Binary,
    Text,
    /// A connection to the peer port (never detected from a client's first byte).
    Peer,
}

impl Protocol {
    pub fn detect(first_byte: u8) -> Protocol {
        if first_byte == binary::REQUEST_MAGIC {
            Protocol::Binary
        } else {
            Protocol::Text
        }
    }
}

/// What the reply to one storage command needs to know about its request, per protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    Binary(binary::dispatch::ReplyTo),
    Text(text::ReplyTo),
    /// A request forwarded by another node: the outcome goes back as it is.
    Peer(PeerReply),
}

/// Where a forwarded request's outcome goes: its opcode and opaque, and the touch meta
/// `ma ... T` asks for after a successful arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerReply {
    pub op: peer::Op,
    pub opaque: u32,
    pub then_touch: Option<u32>,
}

impl ReplyTo {
    /// Appends the reply to a shard's outcome for `key`.
    #[inline]
    pub fn write_outcome<V: AsRef<[u8]>>(&self, out: &mut Vec<u8>, key: &[u8], outcome: &Outcome<V>) {
        match self {
            ReplyTo::Binary(to) => binary::dispatch::write_outcome(out, *to, key, outcome),
            ReplyTo::Text(to) => text::write_outcome(out, to, key, outcome),
            ReplyTo::Peer(to) => peer::forward::write_outcome(out, to.op, to.opaque, key, outcome),
        }
    }

    /// Whether this answers a meta command (`mg ms md ma me`).
    #[inline]
    pub fn is_meta(&self) -> bool {
        matches!(self, ReplyTo::Text(text::ReplyTo::Meta(_) | text::ReplyTo::Debug { .. }))
    }

    /// What the shard must do with, or tell of, the item's per-item state (meta commands).
    #[inline]
    pub fn meta_ops(&self) -> Option<crate::storage::MetaOps> {
        match self {
            ReplyTo::Text(to) => to.meta_ops(),
            _ => None,
        }
    }

    /// [`write_outcome`](Self::write_outcome) with what the shard told of the item.
    #[inline]
    pub fn write_outcome_with<V: AsRef<[u8]>>(&self, out: &mut Vec<u8>, key: &[u8], outcome: &Outcome<V>, info: Option<&crate::storage::ItemInfo>) {
        match self {
            ReplyTo::Text(to) => text::reply::write_outcome_with(out, to, key, outcome, info),
            other => other.write_outcome(out, key, outcome),
        }
    }

    /// A command the same shard runs right after, given the first one's outcome.
    #[inline]
    pub fn then<'k, V>(&self, key: &'k [u8], outcome: &Outcome<V>) -> Option<Command<&'k [u8]>> {
        match self {
            ReplyTo::Binary(_) => None,
            ReplyTo::Text(to) => to.then(key, outcome),
            ReplyTo::Peer(PeerReply { then_touch: Some(exptime), .. }) => match outcome {
                Outcome::Counter { .. } => Some(Command::Touch { key, exptime: *exptime }),
                _ => None,
            },
            ReplyTo::Peer(_) => None,
        }
    }

    /// The expiry a command run for this reply's sake sets after a successful arithmetic
    /// (meta `ma ... T`), for a node that forwards the command.
    pub fn then_touch(&self) -> Option<u32> {
        match self {
            ReplyTo::Text(text::ReplyTo::Meta(m)) => m.touch,
            ReplyTo::Peer(p) => p.then_touch,
            _ => None,
        }
    }
}
