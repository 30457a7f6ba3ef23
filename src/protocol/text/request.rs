//! Decoding of text-protocol requests, classic and meta. No I/O: bytes in, a request and the
//! number of bytes it used out, `Ok(None)` while it is not whole, or the error line memcached
//! 1.6 answers and what to do with the bytes.

use super::base64;
use super::line::{find_newline, is_multiget, line_before, parse_i32, parse_u32, parse_u64, Tokens, MAX_LINE};
use super::meta::{self, MetaCmd, MetaFlags, MAX_META_TOKENS};
use crate::protocol::binary::{Limits, MAX_KEY_LEN};
use crate::storage::expiry::MAX_RELATIVE_EXPTIME;

pub const ERROR: &str = "ERROR";
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const BAD_CHUNK: &str = "CLIENT_ERROR bad data chunk";
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
pub const INVALID_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
pub const INVALID_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
pub const DELETE_USAGE: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";

/// An exptime that has always passed: an absolute unix time in 1970, past the 30-day bound
/// of relative times. memcached maps negative exptimes to the same (`REALTIME_MAXDELTA + 1`).
pub const EXPIRED: u32 = MAX_RELATIVE_EXPTIME + 1;

/// A text exptime (signed) as the storage layer takes it: negative means already expired.
pub fn exptime(v: i32) -> u32 {
    if v < 0 {
        EXPIRED
    } else {
        v as u32
    }
}

/// The longest `get`/`gets` line caskade buffers: memcached lets a multi-get line grow
/// without bound; caskade bounds it by `-I`, as it bounds a value.
pub fn max_multiget_line(limits: &Limits) -> usize {
    limits.max_value_len.max(MAX_LINE)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// The key of a meta command: as sent, or decoded from base64 (`b`).
#[derive(Clone, Copy)]
#[allow(clippy::large_enum_variant)] // lives on the stack for one request; boxing would allocate per request
pub enum Key<'a> {
    Plain(&'a [u8]),
    Decoded { buf: [u8; MAX_KEY_LEN], len: u8 },
}

impl Key<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Plain(k) => k,
            Key::Decoded { buf, len } => &buf[..*len as usize],
        }
    }
}

impl std::fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// The keys of a `get` line, in order (split lazily; each at most 250 bytes, checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a>(&'a [u8]);

impl<'a> Keys<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> {
        self.0.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Request<'a> {
    /// `get`, `gets` (`cas`), `gat`, `gats` (`touch`: the new exptime).
    Get { cas: bool, touch: Option<u32>, keys: Keys<'a> },
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas` (`cas` holds the unique).
    Store { kind: StoreKind, key: &'a [u8], flags: u32, exptime: u32, value: &'a [u8], cas: u64, noreply: bool },
    Delete { key: &'a [u8], noreply: bool },
    Arith { incr: bool, key: &'a [u8], delta: u64, noreply: bool },
    Touch { key: &'a [u8], exptime: u32, noreply: bool },
    FlushAll { delay: u32, noreply: bool },
    Version,
    Verbosity { level: u32, noreply: bool },
    Quit,
    /// `stats` with its first argument ("" for none).
    Stats { group: &'a [u8] },
    /// `lru_crawler metadump <all|hash|class>`: every item's key and state (one class: all).
    Metadump,
    /// `watch [kinds...]`: the connection becomes a watcher of these kinds
    /// (`super::watch::kind`).
    Watch { kinds: u32 },
    /// `shutdown` (`Some(false)`), `shutdown graceful` (`Some(true)`), anything else `None`.
    Shutdown { graceful: Option<bool> },
    MetaNoop,
    MetaGet { key: Key<'a>, flags: MetaFlags },
    MetaSet { key: Key<'a>, value: &'a [u8], flags: MetaFlags },
    MetaDelete { key: Key<'a>, flags: MetaFlags },
    MetaArith { key: Key<'a>, flags: MetaFlags },
    /// `me`: what caskade knows of an item.
    MetaDebug { key: Key<'a>, base64: bool },
}

/// Why bytes cannot be served as a request, and what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The line to answer (without `\r\n`); `None` when `noreply` silences it.
    pub reply: Option<&'static str>,
    /// Bytes to drop from the front of the buffer (the line, with its data block if any).
    pub used: usize,
    /// Bytes after those to discard as they arrive (the data block of a refused store).
    pub skip: u64,
    /// Close the connection once the replies before this one are written.
    pub close: bool,
    /// A store refused as too large: the key whose old value goes too (memcached unlinks
    /// it, so a client never reads the value it meant to replace).
    pub unlink: Option<Unlink>,
}

/// Where the key to unlink is in the bytes decoded (relative to their start), and whether it
/// is base64 (`ms ... b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlink {
    pub start: usize,
    pub len: usize,
    pub base64: bool,
}

impl Unlink {
    /// The key in `buf`, the bytes that were decoded; `None` if it does not decode.
    pub fn key<'a>(&self, buf: &'a [u8]) -> Option<Key<'a>> {
        meta_key(buf.get(self.start..self.start + self.len)?, self.base64)
    }

    fn of(buf: &[u8], key: &[u8], base64: bool) -> Unlink {
        Unlink { start: key.as_ptr() as usize - buf.as_ptr() as usize, len: key.len(), base64 }
    }
}

impl DecodeError {
    fn line(reply: &'static str, used: usize) -> DecodeError {
        DecodeError { reply: Some(reply), used, skip: 0, close: false, unlink: None }
    }

    fn quiet_if(noreply: bool, reply: &'static str, used: usize) -> DecodeError {
        DecodeError { reply: (!noreply).then_some(reply), used, skip: 0, close: false, unlink: None }
    }

    fn close() -> DecodeError {
        DecodeError { reply: None, used: 0, skip: 0, close: true, unlink: None }
    }
}

/// What decoding found: a request and its length, or how many bytes are needed in all.
#[allow(clippy::large_enum_variant)] // returned by value once per request; boxing would allocate per request
enum Decoded<'a> {
    Request(Request<'a>, usize),
    Need(usize),
}

type Result<'a> = std::result::Result<Decoded<'a>, DecodeError>;

/// Decodes one request from the front of `buf`. `Ok(None)`: more bytes are needed.
pub fn decode<'a>(buf: &'a [u8], limits: &Limits) -> std::result::Result<Option<(Request<'a>, usize)>, DecodeError> {
    match decode_inner(buf, limits)? {
        Decoded::Request(req, used) => Ok(Some((req, used))),
        Decoded::Need(_) => Ok(None),
    }
}

/// How many bytes the request at the front of `buf` takes in all, once its line has arrived
/// (a storage line announces its data block); 0 when that is not known yet.
pub fn frame_len(buf: &[u8], limits: &Limits) -> usize {
    match decode_inner(buf, limits) {
        Ok(Decoded::Need(n)) => n,
        _ => 0,
    }
}

fn decode_inner<'a>(buf: &'a [u8], limits: &Limits) -> Result<'a> {
    let Some(nl) = find_newline(buf) else {
        // memcached gives up on a line past 2048 bytes, closing the connection, unless it
        // may be a long multi-get.
        let too_long = buf.len() > MAX_LINE && (!is_multiget(buf) || buf.len() > max_multiget_line(limits));
        return if too_long { Err(DecodeError::close()) } else { Ok(Decoded::Need(0)) };
    };
    let used = nl + 1;
    let line = line_before(buf, nl);
    let t = Tokens::split(line);
    let cmd = t.get(0);
    if t.ntokens() < 2 || cmd.len() < 2 {
        return Err(DecodeError::line(ERROR, used));
    }
    let n = t.ntokens();
    let request = |req| Ok(Decoded::Request(req, used));
    let error = || Err(DecodeError::line(ERROR, used));
    match cmd {
        b"mg" | b"ms" | b"md" | b"ma" | b"me" | b"mn" => meta_command(buf, used, &t, limits),
        b"get" | b"gets" | b"gat" | b"gats" => get(line, used, &t),
        b"set" | b"add" | b"replace" | b"append" | b"prepend" if n == 6 || n == 7 => {
            let kind = match cmd {
                b"set" => StoreKind::Set,
                b"add" => StoreKind::Add,
                b"replace" => StoreKind::Replace,
                b"append" => StoreKind::Append,
                _ => StoreKind::Prepend,
            };
            store(buf, used, &t, kind, limits)
        }
        b"cas" if n == 7 || n == 8 => store(buf, used, &t, StoreKind::Cas, limits),
        b"delete" if (3..=5).contains(&n) => delete(used, &t),
        b"incr" | b"decr" if n == 4 || n == 5 => {
            let noreply = t.noreply();
            let key = key(&t, noreply, used)?;
            let Some(delta) = parse_u64(t.get(2)) else {
                return Err(DecodeError::quiet_if(noreply, INVALID_DELTA, used));
            };
            request(Request::Arith { incr: cmd == b"incr", key, delta, noreply })
        }
        b"touch" if n == 4 || n == 5 => {
            let noreply = t.noreply();
            let key = key(&t, noreply, used)?;
            let Some(v) = parse_i32(t.get(2)) else {
                return Err(DecodeError::quiet_if(noreply, INVALID_EXPTIME, used));
            };
            request(Request::Touch { key, exptime: exptime(v), noreply })
        }
        b"flush_all" if (2..=4).contains(&n) => {
            let noreply = t.noreply();
            let mut delay = 0;
            if n != if noreply { 3 } else { 2 } {
                let Some(v) = parse_i32(t.get(1)) else {
                    return Err(DecodeError::quiet_if(noreply, INVALID_EXPTIME, used));
                };
                delay = v.max(0) as u32;
            }
            request(Request::FlushAll { delay, noreply })
        }
        b"version" => request(Request::Version),
        b"quit" => request(Request::Quit),
        b"verbosity" if n == 3 || n == 4 => {
            let noreply = t.noreply();
            let Some(level) = parse_u32(t.get(1)) else {
                return Err(DecodeError::quiet_if(noreply, BAD_FORMAT, used));
            };
            request(Request::Verbosity { level, noreply })
        }
        // Of the crawler's subcommands only `metadump` is served (with any class or `all` or
        // `hash`: caskade has one class); the others are `ERROR`, as for a crawler not built.
        b"lru_crawler" if t.get(1) == b"metadump" && !t.get(2).is_empty() => request(Request::Metadump),
        // memcached answers an argument it does not know with `ERROR`.
        b"watch" => match super::watch::parse_kinds(t.from(1).iter().copied().filter(|a| !a.is_empty())) {
            Some(kinds) => request(Request::Watch { kinds }),
            None => error(),
        },
        b"stats" => {
            // `stats detail <on|off|dump>` is one group, as binary STAT's key "detail on".
            let (first, second) = (t.get(1), t.get(2));
            let group = if first == b"detail" && !second.is_empty() {
                let start = first.as_ptr() as usize - line.as_ptr() as usize;
                let end = second.as_ptr() as usize - line.as_ptr() as usize + second.len();
                &line[start..end]
            } else {
                first
            };
            request(Request::Stats { group })
        }
        b"shutdown" => {
            let graceful = match (n, t.get(1)) {
                (2, _) => Some(false),
                (3, b"graceful") => Some(true),
                _ => None,
            };
            request(Request::Shutdown { graceful })
        }
        _ if looks_like_http(&t) => Err(DecodeError::close()),
        _ => error(),
    }
}

/// memcached closes the connection, answering nothing, on a line whose last token starts
/// with `HTTP/` (`GET / HTTP/1.0`), unless its command is one memcached dispatches before
/// that check: any starting with `g s a c i d t`, a two-letter `m…`, or one of the others
/// it knows, which answer as they would anyway.
fn looks_like_http(t: &Tokens<'_>) -> bool {
    const BEFORE: &[&[u8]] = &[
        b"mget", b"mset", b"mdelete", b"mincr", b"mdecr", b"flush_all", b"version", b"quit", b"lru_crawler", b"watch",
        b"cache_memlimit", b"verbosity", b"lru", b"memlimit", b"extstore", b"debugtime",
    ];
    let cmd = t.get(0);
    let dispatched = matches!(cmd[0], b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't')
        || (cmd[0] == b'm' && cmd.len() == 2)
        || BEFORE.contains(&cmd);
    !dispatched && t.get(t.ntokens() - 2).starts_with(b"HTTP/")
}

/// The key token of a classic command; over 250 bytes is a format error.
fn key<'a>(t: &Tokens<'a>, noreply: bool, used: usize) -> std::result::Result<&'a [u8], DecodeError> {
    let key = t.get(1);
    if key.len() > MAX_KEY_LEN {
        return Err(DecodeError::quiet_if(noreply, BAD_FORMAT, used));
    }
    Ok(key)
}

fn get<'a>(line: &'a [u8], used: usize, t: &Tokens<'a>) -> Result<'a> {
    if t.ntokens() < 3 {
        return Err(DecodeError::line(ERROR, used));
    }
    let cmd = t.get(0);
    let cas = cmd.ends_with(b"s");
    let (touch, first_key) = if cmd.starts_with(b"gat") {
        let Some(v) = parse_i32(t.get(1)) else {
            return Err(DecodeError::line(INVALID_EXPTIME, used));
        };
        (Some(exptime(v)), 2)
    } else {
        (None, 1)
    };
    // The keys are the rest of the line from the first key token on (memcached reads past
    // its 24 tokens for the GET family).
    let rest = match t.get(first_key) {
        [] => &line[line.len()..],
        k => &line[k.as_ptr() as usize - line.as_ptr() as usize..],
    };
    let keys = Keys(rest);
    // memcached answers a key over 250 bytes with an error and none of the hits before it.
    if keys.iter().any(|k| k.len() > MAX_KEY_LEN) {
        return Err(DecodeError::line(BAD_FORMAT, used));
    }
    Ok(Decoded::Request(Request::Get { cas, touch, keys }, used))
}

fn store<'a>(buf: &'a [u8], used: usize, t: &Tokens<'a>, kind: StoreKind, limits: &Limits) -> Result<'a> {
    let noreply = t.noreply();
    let key = key(t, noreply, used)?;
    let bad = || Err(DecodeError::quiet_if(noreply, BAD_FORMAT, used));
    let (Some(flags), Some(exptime_v), Some(vlen)) = (parse_u32(t.get(2)), parse_i32(t.get(3)), parse_i32(t.get(4)))
    else {
        return bad();
    };
    let cas = if kind == StoreKind::Cas {
        match parse_u64(t.get(5)) {
            Some(c) => c,
            None => return bad(),
        }
    } else {
        0
    };
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return bad();
    }
    let vlen = vlen as usize;
    if vlen > limits.max_value_len {
        // Refused before its data arrives; the data is discarded as it comes. A `set` also
        // removes the old value (memcached unlinks it for `set` only, `noreply` or not).
        let unlink = (kind == StoreKind::Set).then(|| Unlink::of(buf, key, false));
        return Err(DecodeError { reply: (!noreply).then_some(TOO_LARGE), used, skip: vlen as u64 + 2, close: false, unlink });
    }
    let (value, used) = match data_block(buf, used, vlen, noreply)? {
        Ok(v) => v,
        Err(need) => return Ok(Decoded::Need(need)),
    };
    Ok(Decoded::Request(Request::Store { kind, key, flags, exptime: exptime(exptime_v), value, cas, noreply }, used))
}

/// The data block of `vlen` bytes and its `\r\n` after a storage line ending at `start`:
/// the value and the bytes used in all, or the bytes needed in all.
#[allow(clippy::type_complexity)]
fn data_block(
    buf: &[u8],
    start: usize,
    vlen: usize,
    noreply: bool,
) -> std::result::Result<std::result::Result<(&[u8], usize), usize>, DecodeError> {
    let end = start + vlen + 2;
    if buf.len() < end {
        return Ok(Err(end));
    }
    if &buf[start + vlen..end] != b"\r\n" {
        // memcached has read the block and goes on after it.
        return Err(DecodeError::quiet_if(noreply, BAD_CHUNK, end));
    }
    Ok(Ok((&buf[start..start + vlen], end)))
}

fn delete<'a>(used: usize, t: &Tokens<'a>) -> Result<'a> {
    let n = t.ntokens();
    let noreply = n > 3 && t.noreply();
    if n > 3 {
        // `delete <key> 0` is an old form memcached still accepts.
        let hold_is_zero = t.get(2) == b"0";
        let valid = (n == 4 && (hold_is_zero || noreply)) || (n == 5 && hold_is_zero && noreply);
        if !valid {
            return Err(DecodeError::quiet_if(noreply, DELETE_USAGE, used));
        }
    }
    let key = key(t, noreply, used)?;
    Ok(Decoded::Request(Request::Delete { key, noreply }, used))
}

fn meta_command<'a>(buf: &'a [u8], used: usize, t: &Tokens<'a>, limits: &Limits) -> Result<'a> {
    let line = |reply| Err(DecodeError::line(reply, used));
    let cmd = t.get(0);
    if cmd == b"mn" {
        return Ok(Decoded::Request(Request::MetaNoop, used));
    }
    let n = t.ntokens();
    let raw_key = t.get(1);
    if cmd == b"me" {
        if n < 3 || raw_key.len() > MAX_KEY_LEN {
            return line(BAD_FORMAT);
        }
        let base64 = n >= 4 && t.get(2) == b"b";
        let Some(key) = meta_key(raw_key, base64) else { return line(BAD_FORMAT) };
        return Ok(Decoded::Request(Request::MetaDebug { key, base64 }, used));
    }
    if n < 3 {
        return line(ERROR);
    }
    if raw_key.len() > MAX_KEY_LEN {
        return line(BAD_FORMAT);
    }
    let too_many = n > MAX_META_TOKENS;
    match cmd {
        b"mg" => {
            if too_many {
                return line("CLIENT_ERROR options flags are too long");
            }
            let flags = meta::parse(MetaCmd::Get, t, 2).map_err(|e| DecodeError::line(e, used))?;
            let Some(key) = meta_key(raw_key, flags.base64) else { return line(meta::DECODING_KEY) };
            Ok(Decoded::Request(Request::MetaGet { key, flags }, used))
        }
        b"ms" => {
            if n == 3 {
                return line(BAD_FORMAT);
            }
            if too_many {
                return line("CLIENT_ERROR options flags too long");
            }
            let vlen = match parse_i32(t.get(2)) {
                Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
                _ => return line(BAD_FORMAT),
            };
            // From here on an error discards the data block, as memcached does.
            let refuse = |reply| Err(DecodeError { reply: Some(reply), used, skip: vlen as u64 + 2, close: false, unlink: None });
            let flags = match meta::parse(MetaCmd::Set, t, 3) {
                Ok(f) => f,
                Err(e) => return refuse(e),
            };
            let Some(key) = meta_key(raw_key, flags.base64) else { return refuse(meta::DECODING_KEY) };
            if !matches!(flags.mode, None | Some(b'E' | b'A' | b'P' | b'R' | b'S')) {
                return refuse("CLIENT_ERROR invalid mode for ms M token");
            }
            if vlen > limits.max_value_len {
                // memcached unlinks the old value whatever the mode.
                let unlink = Some(Unlink::of(buf, raw_key, flags.base64));
                return Err(DecodeError { reply: Some(TOO_LARGE), used, skip: vlen as u64 + 2, close: false, unlink });
            }
            // A meta set always reports a bad data block, `q` or not.
            let (value, used) = match data_block(buf, used, vlen, false)? {
                Ok(v) => v,
                Err(need) => return Ok(Decoded::Need(need)),
            };
            Ok(Decoded::Request(Request::MetaSet { key, value, flags }, used))
        }
        b"md" | b"ma" => {
            if too_many {
                return line("CLIENT_ERROR options flags too long");
            }
            let which = if cmd == b"md" { MetaCmd::Delete } else { MetaCmd::Arith };
            let flags = meta::parse(which, t, 2).map_err(|e| {
                let e = if e == meta::OPAQUE_TOO_LONG { e } else { meta::INVALID_OR_DUPLICATE };
                DecodeError::line(e, used)
            })?;
            let Some(key) = meta_key(raw_key, flags.base64) else { return line(meta::INVALID_OR_DUPLICATE) };
            if which == MetaCmd::Delete {
                return Ok(Decoded::Request(Request::MetaDelete { key, flags }, used));
            }
            if !matches!(flags.mode, None | Some(b'I' | b'+' | b'D' | b'-')) {
                return line("CLIENT_ERROR invalid mode for ma M token");
            }
            Ok(Decoded::Request(Request::MetaArith { key, flags }, used))
        }
        _ => line(ERROR),
    }
}

/// The key as the shard sees it: decoded from base64 when `b` was given.
fn meta_key(raw: &[u8], base64: bool) -> Option<Key<'_>> {
    if !base64 {
        return Some(Key::Plain(raw));
    }
    let mut buf = [0u8; MAX_KEY_LEN];
    let len = base64::decode(raw, &mut buf)?;
    Some(Key::Decoded { buf, len: len as u8 })
}
