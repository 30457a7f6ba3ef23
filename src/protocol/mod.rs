//! Wire protocols. Codecs here do no I/O.
//!
//! Both protocols are served on the same port, as memcached serves them: a connection whose
//! first byte is `0x80` (the binary request magic, or Couchbase's `0x08` for a request with
//! flexible framing) speaks [`binary`]; any other first byte means [`text`]. Either way a request becomes storage [`Command`]s plus a [`ReplyTo`] that
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
        if first_byte == binary::REQUEST_MAGIC || first_byte == binary::request::ALT_REQUEST_MAGIC {
            Protocol::Binary
        } else {
            Protocol::Text
        }
    }
}

/// What a write's acknowledgement promises: the cluster's default (`durability` in
/// `[cluster]`), or what one request asks for (a binary frame info, a meta `Y` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Once the primary has it (its own fsync policy applies); backups get it after.
    None,
    /// Once a majority of the partition's copies hold it (the backups' answers follow their
    /// commit: written, synced only under their `--fsync always`).
    Majority,
    /// Once a majority of the copies have it on disk (backups fsync before they answer).
    PersistMajority,
}

impl Durability {
    /// Backups that must acknowledge a write, of `replicas`: a majority of the `replicas + 1`
    /// copies, less the primary's own.
    pub fn backups_needed(self, replicas: usize) -> usize {
        match self {
            Durability::None => 0,
            Durability::Majority | Durability::PersistMajority => replicas.div_ceil(2),
        }
    }
}

impl Durability {
    /// From a client's level: Couchbase's durability levels as its frame info numbers them
    /// (0 none, 1 majority, 3 persist to majority). Level 2 (majority and persisted on the
    /// primary) is not offered: `None` (the client gets "invalid level").
    pub fn from_level(level: u8) -> Option<Durability> {
        match level {
            0 => Some(Durability::None),
            1 => Some(Durability::Majority),
            3 => Some(Durability::PersistMajority),
            _ => None,
        }
    }

    /// The level as a forwarded request's `data_type` carries it (0: the cluster's default).
    pub fn peer_code(level: Option<Durability>) -> u8 {
        match level {
            None => 0,
            Some(Durability::None) => 1,
            Some(Durability::Majority) => 2,
            Some(Durability::PersistMajority) => 3,
        }
    }

    /// The inverse of [`peer_code`](Self::peer_code); `Err` for a code no level has.
    pub fn from_peer_code(code: u8) -> Result<Option<Durability>, u8> {
        match code {
            0 => Ok(None),
            1 => Ok(Some(Durability::None)),
            2 => Ok(Some(Durability::Majority)),
            3 => Ok(Some(Durability::PersistMajority)),
            other => Err(other),
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
    /// The durability the client asked of the forwarding node (`None`: the cluster's default).
    pub durability: Option<Durability>,
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

    /// The durability this request asked for (`None`: the cluster's default applies).
    #[inline]
    pub fn durability(&self) -> Option<Durability> {
        match self {
            ReplyTo::Binary(to) => to.durability,
            ReplyTo::Text(text::ReplyTo::Meta(m)) => m.durability,
            ReplyTo::Text(_) => None,
            ReplyTo::Peer(to) => to.durability,
        }
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
