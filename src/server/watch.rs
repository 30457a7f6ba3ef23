//! `watch`: memcached 1.6's log streams. A text connection that sends `watch [kinds...]`
//! gets `OK` and from then on only log lines, one per event of the kinds it asked for, in
//! memcached's format (`ts=<sec>.<usec> gid=<n> type=item_get key=... status=...`), each
//! ended by `\n`.
//!
//! Events happen on every core; a watcher's connection lives on one. Each watcher has a
//! bounded buffer (memcached's 256 KiB) that the core an event happens on appends the
//! formatted line to, and its own core moves into the connection each turn. A buffer that is
//! full loses the line and counts it; the next line that fits is preceded by `skipped=N`, as
//! memcached does. Nothing on the data path waits for a watcher. When nobody watches a kind,
//! the data path pays one relaxed atomic load per event ([`Watchers::wants`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::protocol::text::watch as line;
use crate::storage::{Command, Evicted, Outcome, StoreMode};

pub use crate::protocol::text::watch::kind;

/// memcached's `WATCHER_LIMIT`.
pub const WATCHER_LIMIT: usize = 20;
/// memcached's default `logger_watcher_buf_size`.
pub const WATCHER_BUFFER: usize = 256 * 1024;
/// Room kept for a `skipped=N` line (memcached's 128).
const SKIPPED_ROOM: usize = 128;

/// Every watcher of the node.
#[derive(Default)]
pub struct Watchers {
    /// The union of the watchers' kinds: what the data path checks.
    kinds: AtomicU32,
    /// memcached's global id of log lines.
    gid: AtomicU64,
    list: Mutex<Vec<Arc<Watcher>>>,
}

/// One watching connection's buffer.
pub struct Watcher {
    kinds: u32,
    buf: Mutex<Buffer>,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    skipped: u64,
}

impl Watchers {
    /// Whether a watcher wants events of `kind`.
    #[inline]
    pub fn wants(&self, kind: u32) -> bool {
        self.kinds.load(Relaxed) & kind != 0
    }

    /// A new watcher of `kinds`, its buffer starting with `OK`; `None` past the limit.
    pub fn add(&self, kinds: u32) -> Option<Arc<Watcher>> {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= WATCHER_LIMIT {
            return None;
        }
        let w = Arc::new(Watcher { kinds, buf: Mutex::new(Buffer { bytes: b"OK\r\n".to_vec(), skipped: 0 }) });
        list.push(w.clone());
        self.kinds.store(list.iter().fold(0, |k, w| k | w.kinds), Relaxed);
        Some(w)
    }

    pub fn remove(&self, w: &Arc<Watcher>) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|x| !Arc::ptr_eq(x, w));
        self.kinds.store(list.iter().fold(0, |k, w| k | w.kinds), Relaxed);
    }

    /// Offers a line of `kind` (`body`: from `type=` on) to every watcher of it.
    pub fn log(&self, kind: u32, body: impl FnOnce(&mut String)) {
        let list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|w| w.kinds & kind != 0) {
            return;
        }
        let gid = self.gid.fetch_add(1, Relaxed) + 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        // memcached prints the microseconds unpadded (`%d`).
        let mut line = format!("ts={}.{} gid={gid} ", now.as_secs(), now.subsec_micros());
        body(&mut line);
        line.push('\n');
        for w in list.iter().filter(|w| w.kinds & kind != 0) {
            w.offer(line.as_bytes());
        }
    }
}

impl Watcher {
    fn offer(&self, line: &[u8]) {
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if b.bytes.len() + line.len() + SKIPPED_ROOM > WATCHER_BUFFER {
            b.skipped += 1;
            return;
        }
        if b.skipped > 0 {
            let skipped = format!("skipped={}\n", b.skipped);
            b.bytes.extend_from_slice(skipped.as_bytes());
            b.skipped = 0;
        }
        b.bytes.extend_from_slice(line);
    }

    /// Moves what the buffer holds to `out`; returns how many bytes.
    pub fn take(&self, out: &mut Vec<u8>) -> usize {
        let mut b = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let n = b.bytes.len();
        out.append(&mut b.bytes);
        n
    }
}

thread_local! {
    /// The watchers of the node this thread (a core) serves.
    static HERE: RefCell<Option<Arc<Watchers>>> = const { RefCell::new(None) };
    /// The client connection whose request this thread runs now (`cfd=`; -1: one that
    /// came from another core or node).
    static CFD: Cell<i32> = const { Cell::new(-1) };
}

/// This thread serves the node of `watchers`.
pub fn enter(watchers: Arc<Watchers>) {
    HERE.with(|h| *h.borrow_mut() = Some(watchers));
}

/// The connection whose requests run now (`-1` for none).
pub fn set_client_fd(fd: i32) {
    CFD.with(|c| c.set(fd));
}

/// Whether a watcher of this thread's node wants `kind`.
#[inline]
pub fn wanted(kind: u32) -> bool {
    HERE.with(|h| h.borrow().as_ref().is_some_and(|w| w.wants(kind)))
}

/// Logs a line of `kind` to this thread's node's watchers.
pub fn log(kind: u32, body: impl FnOnce(&mut String)) {
    HERE.with(|h| {
        if let Some(w) = h.borrow().as_ref() {
            w.log(kind, body);
        }
    });
}

/// What a storage command's outcome shows a watcher: `item_get` for the commands that
/// fetch an item (reads, touch, arithmetic, delete), `item_store` for stores.
pub fn command<V: AsRef<[u8]>>(cmd: &Command<&[u8]>, outcome: &Outcome<V>, now: u32) {
    if !wanted(kind::FETCHERS | kind::MUTATIONS) {
        return;
    }
    let cfd = CFD.with(Cell::get);
    match *cmd {
        Command::Store { mode, key, value, exptime, cas, .. } => {
            let status = match outcome {
                Outcome::Done { .. } => "stored",
                Outcome::Exists => "exists",
                Outcome::NotFound => "not_found",
                Outcome::TooLarge => "too_large",
                Outcome::OutOfMemory => "no_memory",
                _ => "not_stored",
            };
            let cmd = match (mode, cas) {
                (StoreMode::Set, 0) => "set",
                (_, c) if c != 0 => "cas",
                (StoreMode::Add, _) => "add",
                (StoreMode::Replace, _) => "replace",
                (StoreMode::Append, _) => "append",
                (StoreMode::Prepend, _) => "prepend",
                (StoreMode::Set, _) => "set",
            };
            // memcached's ttl: seconds left, from a relative or an absolute exptime.
            let ttl = match exptime {
                0 => 0,
                e if e <= 60 * 60 * 24 * 30 => e,
                e => e.saturating_sub(now),
            };
            log(kind::MUTATIONS, |s| line::item_store(s, key, status, cmd, ttl, value.len(), cfd));
        }
        Command::Get { key } | Command::GetAndTouch { key, .. } | Command::Touch { key, .. } | Command::Delete { key, .. } | Command::Arith { key, .. } => {
            let (found, size) = match outcome {
                Outcome::Value { value, .. } => (true, value.as_ref().len()),
                Outcome::NotFound => (false, 0),
                _ => (true, 0),
            };
            log(kind::FETCHERS, |s| line::item_get(s, key, found, size, cfd));
        }
        Command::Flush { .. } => {}
    }
}

/// `type=eviction` lines for items a shard evicted.
pub fn evictions(items: &[Evicted]) {
    for e in items {
        let ttl = crate::storage::shard::ttl_left(e.meta.expiry, e.at);
        log(kind::EVICTIONS, |s| line::eviction(s, &e.key, e.meta.fetched, ttl, e.at.saturating_sub(e.meta.atime), e.value_len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_loses_lines_and_says_how_many() {
        let ws = Watchers::default();
        assert!(!ws.wants(kind::FETCHERS));
        let w = ws.add(kind::FETCHERS).unwrap();
        assert!(ws.wants(kind::FETCHERS) && !ws.wants(kind::MUTATIONS));
        let mut out = Vec::new();
        w.take(&mut out);
        assert_eq!(out, b"OK\r\n");
        let big = "x".repeat(200);
        let mut offered = 0;
        while offered < 5000 {
            ws.log(kind::FETCHERS, |s| s.push_str(&big));
            offered += 1;
        }
        ws.log(kind::MUTATIONS, |_| panic!("nobody watches mutations: not even formatted"));
        let mut out = Vec::new();
        let n = w.take(&mut out);
        assert!(n <= WATCHER_BUFFER, "bounded: {n}");
        let kept = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        assert!(kept < offered);
        // Room again: the next line says how many were lost first.
        ws.log(kind::FETCHERS, |s| s.push_str("type=item_get"));
        let mut out = Vec::new();
        w.take(&mut out);
        let text = String::from_utf8(out).unwrap();
        let lost: usize = text.lines().next().unwrap().strip_prefix("skipped=").unwrap().parse().unwrap();
        assert_eq!(lost + kept, offered);
        assert!(text.lines().nth(1).unwrap().contains(" gid=5001 type=item_get"), "{text}");
        ws.remove(&w);
        assert!(!ws.wants(kind::FETCHERS));
    }

    #[test]
    fn at_most_twenty_watchers() {
        let ws = Watchers::default();
        let all: Vec<_> = (0..WATCHER_LIMIT).map(|_| ws.add(kind::FETCHERS).unwrap()).collect();
        assert!(ws.add(kind::FETCHERS).is_none());
        ws.remove(&all[0]);
        assert!(ws.add(kind::FETCHERS).is_some());
    }
}
