//! The per-item state memcached's meta commands read and set, kept by the shard that owns the
//! item: whether it was read before (`h`, `me fetch`), its last access (`l`, `me la`), and the
//! stale-while-revalidate bits: a win token already sent (`Z`) and stale (`X`, after `md I`
//! or an `ms I` with an older CAS). One win (`W`) is handed out per item until a store
//! replaces it: to the first reader of a stale item, to the reader that finds less TTL left
//! than its `R`, or to the reader that created the item with `N`. The rules are memcached
//! 1.6's (`proto_text.c`, `process_mget_command`, `process_mdelete_command`, `do_store_item`);
//! what each flag answers is `protocol-spec/memcached-text.md`.
//!
//! The bits and the last access live in the item's header (`item.rs`): 4 bytes of last
//! access and three bits of a byte that was there already. They are not written to the log:
//! after a restart every item reads as not fetched, last accessed at the restart, not stale.

use super::{Shard, Slot};
use crate::storage::command::{Command, Outcome, StoreMode};
use crate::storage::expiry;
use crate::storage::item::{ClientState, BIT_FETCHED, BIT_STALE, BIT_TOKEN_SENT};

/// What a meta command asks of an item beyond its [`Command`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaOps {
    /// `mg N`: on a miss, create an empty item with this exptime, and win it.
    pub vivify: Option<u32>,
    /// `mg R`: win when the item expires sooner than this exptime.
    pub recache: Option<u32>,
    /// `md I`, `ms I`: mark stale instead of deleting / store an older CAS as stale.
    pub invalidate: bool,
    /// `md I T`: the stale item's new exptime.
    pub ttl: Option<u32>,
    /// `me`: look at the item without counting a read.
    pub peek: bool,
    /// `mg u`: a read that leaves the item as it was (not fetched, not accessed).
    pub no_update: bool,
}

/// What a meta reply can tell of the item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemInfo {
    /// Seconds of TTL left after the command (-1: none).
    pub ttl: i64,
    /// Seconds of TTL left before the command touched it (-1: none).
    pub ttl_before: i64,
    /// Seconds since the last access before this command.
    pub last_access: u32,
    /// Whether it had been read before this command.
    pub fetched: bool,
    /// `Z`: a win token had been sent before.
    pub token_sent: bool,
    /// `X`: stale.
    pub stale: bool,
    /// `W`: this command won the right to recache.
    pub won: bool,
    /// Bytes charged for the item (`me size`).
    pub size: u64,
}

/// TTL left at `now` of an item expiring at `expiry` (absolute; 0 = never), as memcached
/// prints it: -1 for none.
pub fn ttl_left(expiry: u32, now: u32) -> i64 {
    if expiry == 0 {
        -1
    } else {
        i64::from(expiry) - i64::from(now)
    }
}

/// An outcome that borrows nothing (every kind but a value, which the callers below never
/// hold on to).
fn detach(o: Outcome<&[u8]>) -> Outcome<&'static [u8]> {
    match o {
        Outcome::Value { flags, cas, .. } => Outcome::Value { flags, cas, value: &[] },
        Outcome::Done { cas } => Outcome::Done { cas },
        Outcome::Counter { value, cas } => Outcome::Counter { value, cas },
        Outcome::NotFound => Outcome::NotFound,
        Outcome::Exists => Outcome::Exists,
        Outcome::NotStored => Outcome::NotStored,
        Outcome::NonNumeric => Outcome::NonNumeric,
        Outcome::TooLarge => Outcome::TooLarge,
        Outcome::OutOfMemory => Outcome::OutOfMemory,
        Outcome::StorageError => Outcome::StorageError,
        Outcome::TemporaryFailure => Outcome::TemporaryFailure,
        Outcome::SyncWriteAmbiguous => Outcome::SyncWriteAmbiguous,
        Outcome::DurabilityImpossible => Outcome::DurabilityImpossible,
    }
}

/// One item as `lru_crawler metadump` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemMeta {
    /// Absolute unix seconds; 0 = never.
    pub expiry: u32,
    /// Last access, unix seconds.
    pub atime: u32,
    pub cas: u64,
    pub fetched: bool,
    /// Bytes charged for the item.
    pub size: u64,
}

/// An item evicted to make room, as `watch evictions` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evicted {
    pub key: Box<[u8]>,
    pub meta: ItemMeta,
    pub value_len: usize,
    /// When it was evicted (unix seconds).
    pub at: u32,
}

impl Shard {
    /// Whether evicted items are kept for [`take_evicted`](Self::take_evicted) (a watcher
    /// of evictions exists); off, evictions cost nothing more.
    pub fn set_eviction_log(&mut self, on: bool) {
        match (on, self.evicted.is_some()) {
            (true, false) => self.evicted = Some(Vec::new()),
            (false, true) => self.evicted = None,
            _ => {}
        }
    }

    /// Moves the items evicted since the last call into `into`.
    pub fn take_evicted(&mut self, into: &mut Vec<Evicted>) {
        if let Some(e) = self.evicted.as_mut() {
            into.append(e);
        }
    }

    /// Notes the item in `slot` as evicted, if asked to (`set_eviction_log`).
    pub(super) fn note_evicted(&mut self, slot: Slot, now: u32) {
        let Some(log) = self.evicted.as_mut() else { return };
        let it = self.keydir.get(slot);
        let meta = ItemMeta { expiry: it.expiry(), atime: it.atime(), cas: it.cas(), fetched: it.has(BIT_FETCHED), size: it.charge() as u64 };
        // Bounded: a watcher far behind loses lines anyway.
        if log.len() < 10_000 {
            log.push(Evicted { key: it.key().into(), meta, value_len: it.value_len(), at: now });
        }
    }

    /// Hands `each` the key and state of live items from keydir slot `from` on, at most
    /// `max_items` of them (and four times as many slots), without reading any value; returns
    /// the slot to go on from, or `None` at the end. Like [`scan`](Self::scan), not a snapshot.
    pub fn scan_meta(&mut self, from: Slot, max_items: usize, now: u32, mut each: impl FnMut(&[u8], &ItemMeta)) -> Option<Slot> {
        self.tick(now);
        let end = self.keydir.slot_end();
        let stop = from.saturating_add(max_items.saturating_mul(4)).min(end);
        let (mut slot, mut n) = (from, 0);
        while slot < stop && n < max_items {
            let s = slot;
            slot += 1;
            let Some(it) = self.keydir.try_get(s).filter(|it| !it.is_expired(now)) else { continue };
            n += 1;
            let meta = ItemMeta { expiry: it.expiry(), atime: it.atime(), cas: it.cas(), fetched: it.has(BIT_FETCHED), size: it.charge() as u64 };
            each(it.key(), &meta);
        }
        (slot < end).then_some(slot)
    }

    /// Marks the item in `slot` read at `now` (every read does, classic or meta); returns
    /// its state after.
    pub(super) fn note_read(&mut self, slot: Slot, now: u32) -> ClientState {
        let item = self.keydir.get_mut(slot);
        item.set(BIT_FETCHED, true);
        item.set_atime(now);
        item.state()
    }

    /// Runs a meta command's `cmd` with what `ops` adds, and says what its reply needs to
    /// know of the item. Without anything in `ops` this is [`execute`](Self::execute).
    pub fn execute_meta<'s, B: AsRef<[u8]>>(&'s mut self, cmd: &Command<B>, ops: &MetaOps, now: u32) -> (Outcome<&'s [u8]>, ItemInfo) {
        self.tick(now);
        match cmd {
            Command::Get { key } if ops.peek => self.peek(key.as_ref(), now),
            Command::Get { key } => self.meta_get(key.as_ref(), None, ops, now),
            Command::GetAndTouch { key, exptime } => self.meta_get(key.as_ref(), Some(*exptime), ops, now),
            Command::Delete { key, cas } if ops.invalidate => {
                (self.invalidate(key.as_ref(), *cas, ops.ttl, now), ItemInfo::default())
            }
            Command::Store { mode: StoreMode::Set | StoreMode::Replace, key, value, flags, cas, .. }
                if ops.invalidate && *cas != 0 =>
            {
                (self.store_stale(key.as_ref(), value.as_ref(), *flags, *cas, now, cmd), ItemInfo::default())
            }
            Command::Arith { key, .. } => {
                let outcome = detach(self.execute(cmd, now));
                let mut info = ItemInfo::default();
                if let Some(slot) = self.keydir.find(key.as_ref()) {
                    info.ttl = ttl_left(self.keydir.get(slot).expiry(), now);
                    info.ttl_before = info.ttl;
                }
                (outcome, info)
            }
            _ => (self.execute(cmd, now), ItemInfo::default()),
        }
    }

    /// `me`: the item as it is, its read not counted.
    fn peek(&mut self, key: &[u8], now: u32) -> (Outcome<&[u8]>, ItemInfo) {
        let Some(slot) = self.find(key, now) else { return (Outcome::NotFound, ItemInfo::default()) };
        let it = self.keydir.get(slot);
        let ttl = ttl_left(it.expiry(), now);
        let info = ItemInfo {
            ttl,
            ttl_before: ttl,
            last_access: now.saturating_sub(it.atime()),
            fetched: it.has(BIT_FETCHED),
            token_sent: it.has(BIT_TOKEN_SENT),
            stale: it.has(BIT_STALE),
            won: false,
            size: it.charge() as u64,
        };
        (Outcome::Value { flags: it.flags(), cas: it.cas(), value: &[] }, info)
    }

    /// `mg`, with `N` and `R`: the read, and who wins the right to recache.
    fn meta_get(&mut self, key: &[u8], touch: Option<u32>, ops: &MetaOps, now: u32) -> (Outcome<&[u8]>, ItemInfo) {
        let mut info = ItemInfo::default();
        let Some(slot) = self.find(key, now) else {
            let Some(exptime) = ops.vivify else { return (Outcome::NotFound, info) };
            // Vivify: an empty item stands for the value being fetched; its creator wins.
            let expiry = expiry::absolute(exptime, now);
            let cas = self.next_cas();
            let slot = match self.put(None, key, b"", 0, expiry, cas, now, None) {
                Ok(s) => s,
                Err(o) => return (o, info),
            };
            self.keydir.get_mut(slot).set(BIT_TOKEN_SENT, true);
            self.note_read(slot, now);
            info.won = true;
            info.ttl = ttl_left(expiry, now);
            info.ttl_before = info.ttl;
            return (self.answer(slot), info);
        };
        let it = self.keydir.get(slot);
        info.fetched = it.has(BIT_FETCHED);
        info.last_access = now.saturating_sub(it.atime());
        info.token_sent = it.has(BIT_TOKEN_SENT);
        info.stale = it.has(BIT_STALE);
        info.ttl_before = ttl_left(it.expiry(), now);
        info.ttl = touch.map_or(info.ttl_before, |e| ttl_left(expiry::absolute(e, now), now));
        let recache = ops.recache.map_or(0, |r| expiry::absolute(r, now));
        let expires_soon = it.expiry() != 0 && it.expiry() < recache;
        info.won = !info.token_sent && (info.stale || expires_soon);
        if info.won {
            self.keydir.get_mut(slot).set(BIT_TOKEN_SENT, true);
        }
        if ops.no_update && touch.is_none() {
            return (self.answer(slot), info);
        }
        (self.get(key, touch, now), info)
    }

    /// `md I`: the item stays, marked stale with a new CAS (and TTL, with `T`); its next
    /// reader wins.
    fn invalidate(&mut self, key: &[u8], cas: u64, ttl: Option<u32>, now: u32) -> Outcome<&'static [u8]> {
        let Some(slot) = self.find(key, now) else { return Outcome::NotFound };
        if cas != 0 && self.keydir.get(slot).cas() != cas {
            return Outcome::Exists;
        }
        let value = match self.value_copy(slot) {
            Ok(v) => v,
            Err(o) => return o,
        };
        let it = self.keydir.get(slot);
        let (flags, state) = (it.flags(), it.state());
        let expiry = ttl.map_or(it.expiry(), |e| expiry::absolute(e, now));
        let new_cas = self.next_cas();
        // Written again so that the new CAS and TTL survive a restart (the stale bit does not).
        let slot = match self.put(Some(slot), key, &value, flags, expiry, new_cas, now, None) {
            Ok(s) => s,
            Err(o) => return o,
        };
        let item = self.keydir.get_mut(slot);
        item.set_state(state);
        item.set(BIT_STALE, true);
        item.set(BIT_TOKEN_SENT, false);
        Outcome::Done { cas: new_cas }
    }

    /// `ms I` with a CAS: a CAS older than the item's still stores, keeping the item's TTL
    /// and win token, and marks the new item stale. Otherwise an ordinary compare-and-set.
    fn store_stale<B: AsRef<[u8]>>(&mut self, key: &[u8], value: &[u8], flags: u32, cas: u64, now: u32, cmd: &Command<B>) -> Outcome<&'static [u8]> {
        let older = self.find(key, now).filter(|&s| cas < self.keydir.get(s).cas());
        let Some(slot) = older.filter(|_| value.len() <= self.config.max_item_size) else {
            return detach(self.execute(cmd, now));
        };
        let it = self.keydir.get(slot);
        let (expiry, token) = (it.expiry(), it.has(BIT_TOKEN_SENT));
        let new_cas = self.next_cas();
        let slot = match self.put(Some(slot), key, value, flags, expiry, new_cas, now, None) {
            Ok(s) => s,
            Err(o) => return o,
        };
        let item = self.keydir.get_mut(slot);
        item.set(BIT_STALE, true);
        item.set(BIT_TOKEN_SENT, token);
        Outcome::Done { cas: new_cas }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::shard::{Mode, ShardConfig};

    const NOW: u32 = 1_800_000_000;

    fn shard() -> Shard {
        Shard::new(ShardConfig { memory_limit: 1 << 20, max_item_size: 1024, mode: Mode::Cache, primary_only: None, epoch: None })
    }

    fn set(s: &mut Shard, key: &str, ttl: u32) -> u64 {
        let cmd = Command::Store { mode: StoreMode::Set, key, value: "v", flags: 0, exptime: ttl, cas: 0 };
        match s.execute(&cmd, NOW) {
            Outcome::Done { cas } => cas,
            o => panic!("{o:?}"),
        }
    }

    fn mg(s: &mut Shard, key: &str, ops: MetaOps, now: u32) -> (bool, ItemInfo) {
        let (o, info) = s.execute_meta(&Command::Get { key }, &ops, now);
        (matches!(o, Outcome::Value { .. }), info)
    }

    #[test]
    fn fetched_and_last_access() {
        let mut s = shard();
        set(&mut s, "k", 0);
        let (hit, i) = mg(&mut s, "k", MetaOps::default(), NOW + 5);
        assert!(hit && !i.fetched && i.last_access == 5 && i.ttl == -1);
        let (_, i) = mg(&mut s, "k", MetaOps::default(), NOW + 7);
        assert!(i.fetched && i.last_access == 2);
        let (_, i) = mg(&mut s, "k", MetaOps { peek: true, ..MetaOps::default() }, NOW + 9);
        assert!(i.fetched && i.last_access == 2 && i.size > 0);
        let (_, i) = mg(&mut s, "k", MetaOps { peek: true, ..MetaOps::default() }, NOW + 9);
        assert_eq!(i.last_access, 2, "me counts no read");
        set(&mut s, "u", 0);
        let (_, i) = mg(&mut s, "u", MetaOps { no_update: true, ..MetaOps::default() }, NOW + 3);
        let (_, i2) = mg(&mut s, "u", MetaOps::default(), NOW + 4);
        assert!(!i.fetched && !i2.fetched && i2.last_access == 4, "u leaves the item as it was");
    }

    #[test]
    fn scan_meta_lists_every_live_item_in_bounded_steps() {
        let mut s = shard();
        for i in 0..10 {
            set(&mut s, &format!("k{i}"), if i == 3 { 1 } else { 0 });
        }
        mg(&mut s, "k5", MetaOps::default(), NOW + 1);
        let (mut from, mut seen, mut steps) = (Some(0), Vec::new(), 0);
        while let Some(f) = from {
            from = s.scan_meta(f, 3, NOW + 2, |k, m| seen.push((String::from_utf8_lossy(k).into_owned(), m.fetched, m.atime)));
            steps += 1;
        }
        seen.sort();
        assert_eq!(seen.len(), 9, "k3 expired: {seen:?}");
        assert!(steps >= 3);
        assert!(seen.iter().all(|(k, fetched, atime)| (k == "k5") == *fetched && *atime == if k == "k5" { NOW + 1 } else { NOW }));
    }

    #[test]
    fn one_win_per_item_until_a_store() {
        let mut s = shard();
        let recache = MetaOps { vivify: Some(30), recache: Some(30), ..MetaOps::default() };
        // A miss with N creates an empty item and wins; the next readers get Z.
        let (hit, i) = mg(&mut s, "v", recache, NOW);
        assert!(hit && i.won && i.ttl == 30);
        let (hit, i) = mg(&mut s, "v", recache, NOW);
        assert!(hit && !i.won && i.token_sent);
        // R: TTL left below it wins, once.
        set(&mut s, "k", 10);
        let (_, i) = mg(&mut s, "k", recache, NOW);
        assert!(i.won && !i.token_sent && i.ttl == 10);
        let (_, i) = mg(&mut s, "k", recache, NOW);
        assert!(!i.won && i.token_sent);
        set(&mut s, "k", 100);
        let (_, i) = mg(&mut s, "k", recache, NOW);
        assert!(!i.won && !i.token_sent && !i.stale);
    }

    #[test]
    fn invalidate_marks_stale_and_hands_out_one_win() {
        let mut s = shard();
        let cas = set(&mut s, "k", 0);
        let inv = MetaOps { invalidate: true, ttl: Some(30), ..MetaOps::default() };
        let (o, _) = s.execute_meta(&Command::Delete { key: "k", cas: 0 }, &inv, NOW);
        assert!(matches!(o, Outcome::Done { cas: c } if c > cas));
        let (hit, i) = mg(&mut s, "k", MetaOps::default(), NOW);
        assert!(hit && i.stale && i.won && i.ttl == 30);
        let (_, i) = mg(&mut s, "k", MetaOps::default(), NOW);
        assert!(i.stale && !i.won && i.token_sent);
        // An older CAS with I stores, stale, keeping the token; the current one stores fresh.
        let store = |cas| Command::Store { mode: StoreMode::Set, key: "k", value: "n", flags: 0, exptime: 0, cas };
        let (o, _) = s.execute_meta(&store(cas), &MetaOps { invalidate: true, ..MetaOps::default() }, NOW);
        let Outcome::Done { cas: now_cas } = o else { panic!("{o:?}") };
        let (_, i) = mg(&mut s, "k", MetaOps::default(), NOW);
        assert!(i.stale && i.token_sent && i.ttl == 30);
        let (o, _) = s.execute_meta(&store(now_cas), &MetaOps { invalidate: true, ..MetaOps::default() }, NOW);
        assert!(matches!(o, Outcome::Done { .. }));
        let (_, i) = mg(&mut s, "k", MetaOps::default(), NOW);
        assert!(!i.stale && !i.token_sent && !i.won);
        let (o, _) = s.execute_meta(&Command::Delete { key: "nope", cas: 0 }, &inv, NOW);
        assert_eq!(o, Outcome::NotFound);
    }
}
