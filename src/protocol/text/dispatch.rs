//! What a text request asks of the server: storage commands for the shards that own their
//! keys (with the [`ReplyTo`] that says how to answer), or something the connection answers
//! itself. No I/O.

use super::meta::{MetaCmd, MetaFlags};
use super::reply::{MetaReply, ReplyTo};
use super::request::{exptime, Keys, Request, StoreKind};
use crate::storage::{Command, MetaOps, StoreMode};

#[derive(Clone, Debug, PartialEq)]
pub enum Action<'r> {
    /// Run on the shard that owns the key (every shard for a flush).
    Storage(Command<&'r [u8]>, ReplyTo),
    /// The GET family: one command per key, each answered by its shard, then `END`.
    Get { keys: Keys<'r>, touch: Option<u32>, reply: ReplyTo },
    /// A fixed reply.
    Reply(&'static [u8]),
    Version,
    Verbosity { level: u32, noreply: bool },
    Quit,
    Stats(&'r [u8]),
    Shutdown { graceful: Option<bool> },
    /// `lru_crawler metadump`.
    Metadump,
    /// `watch`: the connection becomes a watcher of these kinds.
    Watch(u32),
}

pub fn action<'r>(req: &'r Request<'_>) -> Action<'r> {
    use Action::Storage;
    match *req {
        Request::Get { cas, touch, keys } => Action::Get { keys, touch, reply: ReplyTo::Value { cas } },
        Request::Store { kind, key, flags, exptime, value, cas, noreply } => {
            if kind == StoreKind::Cas && cas == 0 {
                return Storage(Command::Get { key }, ReplyTo::CasZero { noreply });
            }
            let mode = match kind {
                StoreKind::Set | StoreKind::Cas => StoreMode::Set,
                StoreKind::Add => StoreMode::Add,
                StoreKind::Replace => StoreMode::Replace,
                StoreKind::Append => StoreMode::Append,
                StoreKind::Prepend => StoreMode::Prepend,
            };
            let concat = matches!(kind, StoreKind::Append | StoreKind::Prepend);
            Storage(Command::Store { mode, key, value, flags, exptime, cas }, ReplyTo::Stored { concat, noreply })
        }
        Request::Delete { key, noreply } => Storage(Command::Delete { key, cas: 0 }, ReplyTo::Deleted { noreply }),
        Request::Arith { incr, key, delta, noreply } => Storage(
            Command::Arith { incr, key, delta, initial: None, exptime: 0, cas: 0 },
            ReplyTo::Counter { noreply },
        ),
        Request::Touch { key, exptime, noreply } => {
            Storage(Command::Touch { key, exptime }, ReplyTo::Touched { noreply })
        }
        Request::FlushAll { delay, noreply } => Storage(Command::Flush { delay }, ReplyTo::Flushed { noreply }),
        Request::Version => Action::Version,
        Request::Verbosity { level, noreply } => Action::Verbosity { level, noreply },
        Request::Quit => Action::Quit,
        Request::Stats { group } => Action::Stats(group),
        Request::Shutdown { graceful } => Action::Shutdown { graceful },
        Request::Metadump => Action::Metadump,
        Request::Watch { kinds } => Action::Watch(kinds),
        Request::MetaNoop => Action::Reply(b"MN\r\n"),
        Request::MetaGet { ref key, flags } => {
            let key = key.as_bytes();
            let cmd = match flags.ttl {
                Some(t) => Command::GetAndTouch { key, exptime: exptime(t) },
                None => Command::Get { key },
            };
            Storage(cmd, meta(MetaCmd::Get, &flags, false))
        }
        Request::MetaSet { ref key, value, flags } => {
            let key = key.as_bytes();
            let mode = match flags.mode {
                Some(b'E') => StoreMode::Add,
                Some(b'A') => StoreMode::Append,
                Some(b'P') => StoreMode::Prepend,
                Some(b'R') => StoreMode::Replace,
                _ => StoreMode::Set,
            };
            if matches!(mode, StoreMode::Set | StoreMode::Replace) && flags.cas == Some(0) {
                return Storage(Command::Get { key }, meta(MetaCmd::Set, &flags, true));
            }
            // memcached's add ignores a compare CAS.
            let cas = if mode == StoreMode::Add { 0 } else { flags.cas.unwrap_or(0) };
            let exptime = flags.ttl.map_or(0, exptime);
            let cmd = Command::Store { mode, key, value, flags: flags.client_flags, exptime, cas };
            Storage(cmd, meta(MetaCmd::Set, &flags, false))
        }
        Request::MetaDelete { ref key, flags } => {
            let key = key.as_bytes();
            if flags.cas == Some(0) {
                return Storage(Command::Get { key }, meta(MetaCmd::Delete, &flags, true));
            }
            Storage(Command::Delete { key, cas: flags.cas.unwrap_or(0) }, meta(MetaCmd::Delete, &flags, false))
        }
        Request::MetaArith { ref key, flags } => {
            let cmd = Command::Arith {
                incr: !matches!(flags.mode, Some(b'D' | b'-')),
                key: key.as_bytes(),
                delta: flags.delta,
                initial: flags.vivify.map(|_| flags.initial),
                exptime: flags.vivify.map_or(0, exptime),
                cas: flags.cas.unwrap_or(0),
            };
            Storage(cmd, meta(MetaCmd::Arith, &flags, false))
        }
        Request::MetaDebug { ref key, base64 } => {
            Storage(Command::Get { key: key.as_bytes() }, ReplyTo::Debug { base64 })
        }
    }
}

fn meta(cmd: MetaCmd, f: &MetaFlags, cas_zero: bool) -> ReplyTo {
    ReplyTo::Meta(MetaReply {
        cmd,
        cas_zero,
        quiet: f.quiet,
        value: f.value,
        base64: f.base64,
        returns: f.returns,
        opaque: f.opaque,
        touch: if cmd == MetaCmd::Arith { f.ttl.map(exptime) } else { None },
        ops: MetaOps {
            vivify: f.vivify.filter(|_| cmd == MetaCmd::Get).map(exptime),
            recache: f.recache.map(exptime),
            invalidate: f.invalidate && !cas_zero,
            ttl: f.ttl.filter(|_| cmd == MetaCmd::Delete).map(exptime),
            peek: false,
            no_update: f.no_update,
        },
        ttl_after_touch: f.ttl_after_touch,
        durability: f.durability,
    })
}
