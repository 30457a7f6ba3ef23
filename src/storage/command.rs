//! What a shard is asked to do and what it answers, free of any wire protocol.
//!
//! Protocol layers turn requests into a [`Command`] and an [`Outcome`] back into a reply. A
//! command is generic over its byte buffers: `Command<&[u8]>` borrows from a connection's
//! read buffer when the shard is local; `Command<Range<u32>>` points into a batch's byte
//! arena when it travels to another core's mailbox.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<B> {
    Get { key: B },
    /// Read and set a new expiry in one step (GAT).
    GetAndTouch { key: B, exptime: u32 },
    Touch { key: B, exptime: u32 },
    /// `cas != 0` makes the store conditional on the item's current CAS.
    Store { mode: StoreMode, key: B, value: B, flags: u32, exptime: u32, cas: u64 },
    Delete { key: B, cas: u64 },
    /// `initial: None`: do not create a missing item.
    Arith { incr: bool, key: B, delta: u64, initial: Option<u64>, exptime: u32, cas: u64 },
    /// Invalidate every item now (`delay == 0`) or `delay` seconds from now.
    Flush { delay: u32 },
}

impl<B: AsRef<[u8]>> Command<B> {
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Command::Get { key }
            | Command::GetAndTouch { key, .. }
            | Command::Touch { key, .. }
            | Command::Store { key, .. }
            | Command::Delete { key, .. }
            | Command::Arith { key, .. } => Some(key.as_ref()),
            Command::Flush { .. } => None,
        }
    }

}

impl<B> Command<B> {
    /// The same command with every buffer passed through `f` (to copy it into a batch
    /// that crosses to another core, and to read it back there).
    pub fn map<C>(&self, mut f: impl FnMut(&B) -> C) -> Command<C> {
        match self {
            Command::Get { key } => Command::Get { key: f(key) },
            Command::GetAndTouch { key, exptime } => Command::GetAndTouch { key: f(key), exptime: *exptime },
            Command::Touch { key, exptime } => Command::Touch { key: f(key), exptime: *exptime },
            Command::Store { mode, key, value, flags, exptime, cas } => Command::Store {
                mode: *mode,
                key: f(key),
                value: f(value),
                flags: *flags,
                exptime: *exptime,
                cas: *cas,
            },
            Command::Delete { key, cas } => Command::Delete { key: f(key), cas: *cas },
            Command::Arith { incr, key, delta, initial, exptime, cas } => Command::Arith {
                incr: *incr,
                key: f(key),
                delta: *delta,
                initial: *initial,
                exptime: *exptime,
                cas: *cas,
            },
            Command::Flush { delay } => Command::Flush { delay: *delay },
        }
    }
}

/// A shard's answer. `V` is `&[u8]` borrowed from the shard, or owned bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<V> {
    /// A hit (GET, GAT) or a touched item (TOUCH: `value` is empty).
    Value { flags: u32, cas: u64, value: V },
    /// Stored or deleted; `cas` is the item's new CAS (0 after a delete).
    Done { cas: u64 },
    /// The counter's new value.
    Counter { value: u64, cas: u64 },
    /// No such item (or it expired).
    NotFound,
    /// The request's CAS does not match the item's.
    Exists,
    /// The store's condition failed: ADD of an existing key, REPLACE/APPEND/PREPEND of a
    /// missing one.
    NotStored,
    /// INCR/DECR on a value that is not a decimal number below 2^64.
    NonNumeric,
    /// The item would exceed the maximum item size.
    TooLarge,
    /// It cannot be stored within the memory limit.
    OutOfMemory,
    /// The disk failed (a write, an fsync or a read); the command did not take effect.
    StorageError,
    /// The key's owner did not answer in time, or cannot be reached (a peer node down or
    /// slow): the command may or may not have taken effect there.
    TemporaryFailure,
    /// A durable write whose backups did not acknowledge it in time: it happened on the
    /// primary and may or may not survive the primary's loss.
    SyncWriteAmbiguous,
    /// A durable write refused before it ran: too few of the partition's backups are live to
    /// meet its durability level.
    DurabilityImpossible,
}
