//! Text replies: what a request's reply needs to know ([`ReplyTo`], small and `Copy`, so it
//! travels with a command to the core that owns the key), and the lines written from a
//! shard's [`Outcome`] on that core.

use super::base64;
use super::meta::{MetaCmd, Opaque, Returns};
use crate::storage::{ItemInfo, MetaOps, Outcome};

pub const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value";
pub const OUT_OF_MEMORY_STORING: &str = "SERVER_ERROR out of memory storing object";
pub const OUT_OF_MEMORY: &str = "SERVER_ERROR out of memory";
/// The disk failed under the command (caskade's own; memcached has no disk to fail).
pub const STORAGE_ERROR: &str = "SERVER_ERROR storage error";
/// A forwarded request whose owner did not answer in time or cannot be reached.
pub const TEMPORARY_FAILURE: &str = "SERVER_ERROR temporary failure";
/// A durable write whose backups did not acknowledge in time (binary 0xa3).
pub const SYNC_WRITE_AMBIGUOUS: &str = "SERVER_ERROR sync write ambiguous";
/// A durable write refused: too few live backups (binary 0xa1).
pub const DURABILITY_IMPOSSIBLE: &str = "SERVER_ERROR durability impossible";
const TOO_LARGE: &str = super::request::TOO_LARGE;

/// How to answer one storage command of the text protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    /// `get`/`gets`/`gat`/`gats`: a VALUE block per hit (with the CAS when `cas`), nothing on
    /// a miss; the connection writes END after the last key.
    Value { cas: bool },
    /// `set`/`add`/`replace`/`append`/`prepend`/`cas`. `concat`: an append or prepend, which
    /// answers NOT_STORED when the item would grow past `-I` (as memcached).
    Stored { concat: bool, noreply: bool },
    /// `cas` with unique 0, run as a read: no item has CAS 0, so EXISTS or NOT_FOUND.
    CasZero { noreply: bool },
    Deleted { noreply: bool },
    Counter { noreply: bool },
    Touched { noreply: bool },
    Flushed { noreply: bool },
    Meta(MetaReply),
    /// `me`.
    Debug { base64: bool },
}

/// How to answer a meta command: its return flags in request order, its opaque, `q`, `v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaReply {
    pub cmd: MetaCmd,
    /// `ms`/`md` with `C0`, run as a read: an item answers EX (its CAS is never 0), a miss NF.
    pub cas_zero: bool,
    pub quiet: bool,
    pub value: bool,
    pub base64: bool,
    pub returns: Returns,
    pub opaque: Opaque,
    /// `ma` with `T`: the exptime to set once the counter has changed.
    pub touch: Option<u32>,
    /// What the shard is asked to do with the item's state (`N R I`, `md I T`).
    pub ops: MetaOps,
    /// `t` came after `T`: it shows the TTL the command set.
    pub ttl_after_touch: bool,
    /// `Y`: the durability this write asks for (`None`: the cluster's default).
    pub durability: Option<crate::protocol::Durability>,
}

impl ReplyTo {
    /// What the shard must do with, or tell of, the item's state for this reply: every
    /// `mg` (it may win or find the item stale), `ms`/`md` with `I`, `ma` with `t`, `me`.
    /// `None`: a plain [`Command`](crate::storage::Command) will do.
    pub fn meta_ops(&self) -> Option<MetaOps> {
        match self {
            ReplyTo::Meta(m) if m.cmd == MetaCmd::Get || m.ops.invalidate => Some(m.ops),
            ReplyTo::Meta(m) if m.cmd == MetaCmd::Arith && m.returns.iter().any(|l| l == b't') => Some(m.ops),
            ReplyTo::Debug { .. } => Some(MetaOps { peek: true, ..MetaOps::default() }),
            _ => None,
        }
    }

    /// A command to run on the same shard right after this one, given its outcome (`ma` with
    /// `T` touches the counter it changed).
    pub fn then<'k, V>(&self, key: &'k [u8], outcome: &Outcome<V>) -> Option<crate::storage::Command<&'k [u8]>> {
        match (self, outcome) {
            (ReplyTo::Meta(MetaReply { touch: Some(exptime), .. }), Outcome::Counter { .. }) => {
                Some(crate::storage::Command::Touch { key, exptime: *exptime })
            }
            _ => None,
        }
    }
}

/// The decimal digits of `v`: `buf[start..]`.
#[inline]
fn digits(mut v: u64) -> ([u8; 20], usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return (buf, i);
        }
    }
}

/// Appends `v` in decimal.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    let (buf, start) = digits(v);
    out.extend_from_slice(&buf[start..]);
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the reply to a shard's outcome (nothing under `noreply`, for a GET miss, or for
/// the nominal outcome of a quiet meta command).
pub fn write_outcome<V: AsRef<[u8]>>(out: &mut Vec<u8>, to: &ReplyTo, key: &[u8], outcome: &Outcome<V>) {
    write_outcome_with(out, to, key, outcome, None)
}

/// [`write_outcome`], with what the shard told of the item's state when
/// [`ReplyTo::meta_ops`] asked for it (`None`: not known, as for a command another node ran;
/// the flags that need it are left out).
pub fn write_outcome_with<V: AsRef<[u8]>>(out: &mut Vec<u8>, to: &ReplyTo, key: &[u8], outcome: &Outcome<V>, info: Option<&ItemInfo>) {
    use Outcome::*;
    let text = match (*to, outcome) {
        (ReplyTo::Value { cas: with_cas }, &Value { flags, cas, ref value }) => {
            let value = value.as_ref();
            out.reserve(key.len() + value.len() + 64);
            out.extend_from_slice(b"VALUE ");
            out.extend_from_slice(key);
            out.push(b' ');
            push_u64(out, flags.into());
            out.push(b' ');
            push_u64(out, value.len() as u64);
            if with_cas {
                out.push(b' ');
                push_u64(out, cas);
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
            return;
        }
        (ReplyTo::Meta(m), _) => return write_meta(out, &m, key, outcome, info),
        (_, StorageError) => STORAGE_ERROR,
        // A classic get's key whose owner cannot answer reads as a miss: a get response has
        // no per-key error a client can parse (memcached ends a response at an error, and
        // clients then lose their place in the stream). Every other command, and meta `mg`,
        // gets the error line.
        (ReplyTo::Value { .. }, TemporaryFailure) => return,
        (_, TemporaryFailure) => TEMPORARY_FAILURE,
        (_, SyncWriteAmbiguous) => SYNC_WRITE_AMBIGUOUS,
        (_, DurabilityImpossible) => DURABILITY_IMPOSSIBLE,
        (ReplyTo::Value { .. }, _) => return,
        (ReplyTo::Debug { base64: b64 }, &Value { cas, ref value, .. }) => {
            // memcached: `exp la cas fetch cls size`; one class, size the bytes charged.
            out.extend_from_slice(b"ME ");
            write_key(out, key, b64);
            if let Some(i) = info {
                out.extend_from_slice(b" exp=");
                push_i64(out, i.ttl);
                out.extend_from_slice(b" la=");
                push_u64(out, i.last_access.into());
            }
            out.extend_from_slice(b" cas=");
            push_u64(out, cas);
            if let Some(i) = info {
                out.extend_from_slice(if i.fetched { b" fetch=yes" } else { b" fetch=no" });
                out.extend_from_slice(b" cls=1");
            }
            out.extend_from_slice(b" size=");
            push_u64(out, info.map_or(value.as_ref().len() as u64, |i| i.size));
            out.extend_from_slice(b"\r\n");
            return;
        }
        (ReplyTo::Debug { .. }, _) => "EN",
        (
            ReplyTo::Stored { noreply: true, .. }
            | ReplyTo::CasZero { noreply: true }
            | ReplyTo::Deleted { noreply: true }
            | ReplyTo::Counter { noreply: true }
            | ReplyTo::Touched { noreply: true }
            | ReplyTo::Flushed { noreply: true },
            _,
        ) => return,
        (ReplyTo::Counter { .. }, &Counter { value, .. }) => {
            push_u64(out, value);
            out.extend_from_slice(b"\r\n");
            return;
        }
        (ReplyTo::Stored { .. }, Done { .. }) => "STORED",
        (ReplyTo::Stored { concat: true, .. }, TooLarge) => "NOT_STORED",
        (ReplyTo::Deleted { .. }, Done { .. }) => "DELETED",
        (ReplyTo::Touched { .. }, Value { .. }) => "TOUCHED",
        (ReplyTo::Flushed { .. }, _) => "OK",
        (ReplyTo::CasZero { .. }, Value { .. }) => "EXISTS",
        (_, NotFound) => "NOT_FOUND",
        (_, NotStored) => "NOT_STORED",
        (_, Exists) => "EXISTS",
        (_, NonNumeric) => NON_NUMERIC,
        (_, TooLarge) => TOO_LARGE,
        (ReplyTo::Counter { .. }, OutOfMemory) => OUT_OF_MEMORY,
        (_, OutOfMemory) => OUT_OF_MEMORY_STORING,
        // Outcomes a command of this kind does not produce.
        (_, Value { .. } | Done { .. } | Counter { .. }) => "SERVER_ERROR unexpected outcome",
    };
    line(out, text);
}

fn write_key(out: &mut Vec<u8>, key: &[u8], b64: bool) {
    if b64 {
        base64::encode(key, out);
    } else {
        out.extend_from_slice(key);
    }
}

/// What a meta reply can return of an item; `None` leaves a flag out (memcached echoes only
/// `O` and `k` when there is no item).
#[derive(Default)]
struct Fields<'i> {
    cas: Option<u64>,
    size: Option<usize>,
    flags: Option<u32>,
    info: Option<&'i ItemInfo>,
}

/// The return flags of a meta reply, in request order, then `Z`, `X`, `W` as memcached
/// appends them.
fn write_flags(out: &mut Vec<u8>, m: &MetaReply, key: &[u8], f: Fields<'_>) {
    let Fields { cas, size, flags, info } = f;
    for letter in m.returns.iter() {
        match letter {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(m.opaque.as_bytes());
            }
            b'k' => {
                out.extend_from_slice(b" k");
                write_key(out, key, m.base64);
                if m.base64 {
                    out.extend_from_slice(b" b");
                }
            }
            b'c' => {
                if let Some(cas) = cas {
                    out.extend_from_slice(b" c");
                    push_u64(out, cas);
                }
            }
            b's' => {
                if let Some(size) = size {
                    out.extend_from_slice(b" s");
                    push_u64(out, size as u64);
                }
            }
            b'f' => {
                if let Some(flags) = flags {
                    out.extend_from_slice(b" f");
                    push_u64(out, flags.into());
                }
            }
            b't' => {
                if let Some(i) = info {
                    out.extend_from_slice(b" t");
                    push_i64(out, if m.ttl_after_touch { i.ttl } else { i.ttl_before });
                }
            }
            b'h' => {
                if let Some(i) = info {
                    out.extend_from_slice(if i.fetched { b" h1" } else { b" h0" });
                }
            }
            b'l' => {
                if let Some(i) = info {
                    out.extend_from_slice(b" l");
                    push_u64(out, i.last_access.into());
                }
            }
            _ => {}
        }
    }
    if let Some(i) = info.filter(|_| m.cmd == MetaCmd::Get) {
        if i.token_sent {
            out.extend_from_slice(b" Z");
        }
        if i.stale {
            out.extend_from_slice(b" X");
        }
        if i.won {
            out.extend_from_slice(b" W");
        }
    }
}

fn write_meta<V: AsRef<[u8]>>(out: &mut Vec<u8>, m: &MetaReply, key: &[u8], outcome: &Outcome<V>, info: Option<&ItemInfo>) {
    use Outcome::*;
    let (code, cas) = match (m.cmd, outcome) {
        (_, NonNumeric) => return line(out, NON_NUMERIC),
        (_, StorageError) => return line(out, STORAGE_ERROR),
        (_, TemporaryFailure) => return line(out, TEMPORARY_FAILURE),
        (_, SyncWriteAmbiguous) => return line(out, SYNC_WRITE_AMBIGUOUS),
        (_, DurabilityImpossible) => return line(out, DURABILITY_IMPOSSIBLE),
        (MetaCmd::Arith, OutOfMemory) => return line(out, OUT_OF_MEMORY),
        (_, OutOfMemory) => return line(out, OUT_OF_MEMORY_STORING),
        (MetaCmd::Get, &Value { flags, cas, ref value }) => {
            let value = value.as_ref();
            out.reserve(value.len() + key.len() + 64);
            if m.value {
                out.extend_from_slice(b"VA ");
                push_u64(out, value.len() as u64);
            } else {
                out.extend_from_slice(b"HD");
            }
            write_flags(out, m, key, Fields { cas: Some(cas), size: Some(value.len()), flags: Some(flags), info });
            out.extend_from_slice(b"\r\n");
            if m.value {
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            return;
        }
        (MetaCmd::Get, _) if m.quiet => return,
        (MetaCmd::Get, _) => (&b"EN"[..], None),
        (MetaCmd::Arith, &Counter { value, cas }) => {
            if m.quiet {
                return;
            }
            let (buf, start) = digits(value);
            let digits = &buf[start..];
            if m.value {
                out.extend_from_slice(b"VA ");
                push_u64(out, digits.len() as u64);
            } else {
                out.extend_from_slice(b"HD");
            }
            write_flags(out, m, key, Fields { cas: Some(cas), info, ..Fields::default() });
            out.extend_from_slice(b"\r\n");
            if m.value {
                out.extend_from_slice(digits);
                out.extend_from_slice(b"\r\n");
            }
            return;
        }
        (_, Value { .. }) if m.cas_zero => (&b"EX"[..], Some(0)),
        (_, Done { .. }) if m.quiet => return,
        (_, &Done { cas }) => (&b"HD"[..], Some(cas)),
        (_, NotFound) => (&b"NF"[..], Some(0)),
        (_, Exists) => (&b"EX"[..], Some(0)),
        (_, NotStored | TooLarge) => (&b"NS"[..], Some(0)),
        (_, Value { .. } | Counter { .. }) => return line(out, "SERVER_ERROR unexpected outcome"),
    };
    out.extend_from_slice(code);
    // Only `ms` echoes a CAS (0) when it did not store.
    let cas = if m.cmd == MetaCmd::Set { cas } else { None };
    write_flags(out, m, key, Fields { cas, ..Fields::default() });
    out.extend_from_slice(b"\r\n");
}
