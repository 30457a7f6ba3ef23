//! The storage one core owns alone: an index from key to item, a memory limit enforced by
//! CLOCK eviction (an approximation of LRU), lazy expiry and delayed flush.
//!
//! The shard is protocol-free and does no I/O: [`Shard::execute`] takes a [`Command`] and the
//! current time and returns an [`Outcome`] whose value borrows from the shard. Durable
//! storage will put segments behind the same call.

use ahash::RandomState;
use hashbrown::HashTable;
use slab::Slab;

use super::command::{Command, Outcome, StoreMode};
use super::expiry;
use super::item::{charge_for, Item};

#[derive(Clone, Copy, Debug)]
pub struct ShardConfig {
    /// Bytes of items this shard may hold (its share of `-m`).
    pub memory_limit: usize,
    /// Largest value accepted, in bytes (`-I`).
    pub max_item_size: usize,
}

/// Counters only the shard can know; the core publishes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Items dropped to make room under the memory limit.
    pub evictions: u64,
    /// Expired items reclaimed by the clock hand or on access.
    pub reclaimed: u64,
    /// Items ever stored.
    pub total_items: u64,
}

pub struct Shard {
    /// Hash of the key → slot in `items`. Four bytes per entry; the key lives in the item.
    index: HashTable<u32>,
    items: Slab<Item>,
    hasher: RandomState,
    config: ShardConfig,
    /// Sum of `Item::charge` over `items`.
    used: usize,
    /// CLOCK hand: the next slot to look at when memory must be freed.
    hand: usize,
    last_cas: u64,
    /// A FLUSH with a delay: every item is dropped when this time is reached.
    flush_at: Option<u32>,
    counters: ShardCounters,
}

impl Shard {
    pub fn new(config: ShardConfig) -> Shard {
        Shard {
            index: HashTable::new(),
            items: Slab::new(),
            hasher: RandomState::new(),
            config,
            used: 0,
            hand: 0,
            last_cas: 0,
            flush_at: None,
            counters: ShardCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes charged against the memory limit.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    pub fn counters(&self) -> ShardCounters {
        self.counters
    }

    pub fn set_memory_limit(&mut self, bytes: usize) {
        self.config.memory_limit = bytes;
    }

    /// Runs what is due at `now` without a command: a delayed flush.
    pub fn tick(&mut self, now: u32) {
        if let Some(at) = self.flush_at {
            if now >= at {
                self.flush_at = None;
                self.clear();
            }
        }
    }

    pub fn execute<'s, B: AsRef<[u8]>>(&'s mut self, cmd: &Command<B>, now: u32) -> Outcome<&'s [u8]> {
        self.tick(now);
        match cmd {
            Command::Get { key } => self.get(key.as_ref(), None, now),
            Command::GetAndTouch { key, exptime } => self.get(key.as_ref(), Some(*exptime), now),
            Command::Touch { key, exptime } => match self.get(key.as_ref(), Some(*exptime), now) {
                Outcome::Value { flags, cas, .. } => Outcome::Value { flags, cas, value: &[] },
                other => other,
            },
            Command::Store { mode, key, value, flags, exptime, cas } => {
                self.store(*mode, key.as_ref(), value.as_ref(), *flags, *exptime, *cas, now)
            }
            Command::Delete { key, cas } => self.delete(key.as_ref(), *cas, now),
            Command::Arith { incr, key, delta, initial, exptime, cas } => {
                self.arith(*incr, key.as_ref(), *delta, *initial, *exptime, *cas, now)
            }
            Command::Flush { delay } => {
                if *delay == 0 {
                    self.flush_at = None;
                    self.clear();
                } else {
                    self.flush_at = Some(expiry::absolute(*delay, now));
                }
                Outcome::Done { cas: 0 }
            }
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of a live item; an expired one is removed on the way.
    fn find(&mut self, key: &[u8], now: u32) -> Option<usize> {
        let hash = self.hash(key);
        let items = &self.items;
        let slot = *self.index.find(hash, |&i| items[i as usize].key() == key)? as usize;
        if self.items[slot].is_expired(now) {
            self.remove(slot);
            self.counters.reclaimed += 1;
            return None;
        }
        Some(slot)
    }

    fn remove(&mut self, slot: usize) {
        let hash = self.hash(self.items[slot].key());
        if let Ok(entry) = self.index.find_entry(hash, |&i| i as usize == slot) {
            entry.remove();
        }
        let item = self.items.remove(slot);
        self.used -= item.charge();
    }

    fn clear(&mut self) {
        self.index.clear();
        self.items.clear();
        self.used = 0;
        self.hand = 0;
    }

    fn next_cas(&mut self) -> u64 {
        self.last_cas += 1;
        self.last_cas
    }

    /// Frees memory until `charge` more bytes fit. The caller has already removed the item
    /// being replaced, so no slot it holds can be evicted here.
    fn make_room(&mut self, charge: usize, now: u32) -> bool {
        if charge > self.config.memory_limit {
            return false;
        }
        while self.used + charge > self.config.memory_limit {
            if !self.evict_one(now) {
                return false;
            }
        }
        true
    }

    /// One step of CLOCK: clear referenced bits until an unreferenced (or expired) item is
    /// found, and drop it.
    fn evict_one(&mut self, now: u32) -> bool {
        if self.items.is_empty() {
            return false;
        }
        let slots = self.items.capacity();
        for _ in 0..=2 * slots {
            if self.hand >= slots {
                self.hand = 0;
            }
            let slot = self.hand;
            self.hand += 1;
            let Some(item) = self.items.get_mut(slot) else { continue };
            if item.is_expired(now) {
                self.remove(slot);
                self.counters.reclaimed += 1;
                return true;
            }
            if item.referenced() {
                item.set_referenced(false);
                continue;
            }
            self.remove(slot);
            self.counters.evictions += 1;
            return true;
        }
        false
    }

    /// Puts `item` in the index; no item with its key may be there.
    fn insert(&mut self, item: Item, now: u32) -> Outcome<&[u8]> {
        let charge = item.charge();
        if !self.make_room(charge, now) {
            return Outcome::OutOfMemory;
        }
        let cas = item.cas();
        let hash = self.hash(item.key());
        let slot = self.items.insert(item);
        self.used += charge;
        let (items, hasher) = (&self.items, &self.hasher);
        self.index.insert_unique(hash, slot as u32, |&i| hasher.hash_one(items[i as usize].key()));
        self.counters.total_items += 1;
        Outcome::Done { cas }
    }

    fn get(&mut self, key: &[u8], touch: Option<u32>, now: u32) -> Outcome<&[u8]> {
        let Some(slot) = self.find(key, now) else { return Outcome::NotFound };
        let item = &mut self.items[slot];
        item.set_referenced(true);
        if let Some(exptime) = touch {
            item.set_expiry(expiry::absolute(exptime, now));
        }
        let item = &self.items[slot];
        Outcome::Value { flags: item.flags(), cas: item.cas(), value: item.value() }
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        mode: StoreMode,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: u32,
        cas: u64,
        now: u32,
    ) -> Outcome<&[u8]> {
        if value.len() > self.config.max_item_size {
            return Outcome::TooLarge;
        }
        let old = self.find(key, now);
        let concat = matches!(mode, StoreMode::Append | StoreMode::Prepend);
        match (mode, old) {
            (StoreMode::Add, Some(slot)) if cas == 0 => {
                self.items[slot].set_referenced(true);
                return Outcome::NotStored;
            }
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) if cas == 0 || concat => {
                return Outcome::NotStored;
            }
            (_, None) if cas != 0 => return Outcome::NotFound,
            (_, Some(slot)) if cas != 0 && self.items[slot].cas() != cas => return Outcome::Exists,
            _ => {}
        }
        let new_cas = self.next_cas();
        let item = match (mode, old) {
            (StoreMode::Append | StoreMode::Prepend, Some(slot)) => {
                let old_item = &self.items[slot];
                let old_value = old_item.value();
                if old_value.len() + value.len() > self.config.max_item_size {
                    return Outcome::TooLarge;
                }
                let mut item =
                    Item::new(key, old_value.len() + value.len(), old_item.flags(), old_item.expiry(), new_cas);
                let (first, second) = if mode == StoreMode::Append { (old_value, value) } else { (value, old_value) };
                let out = item.value_mut();
                out[..first.len()].copy_from_slice(first);
                out[first.len()..].copy_from_slice(second);
                item
            }
            _ => Item::with_value(key, value, flags, expiry::absolute(exptime, now), new_cas),
        };
        if let Some(slot) = old {
            // As memcached does for SET: a store that fails for memory leaves no stale value.
            self.remove(slot);
        }
        if charge_for(key.len(), item.value().len()) > self.config.memory_limit {
            return Outcome::OutOfMemory;
        }
        self.insert(item, now)
    }

    fn delete(&mut self, key: &[u8], cas: u64, now: u32) -> Outcome<&[u8]> {
        let Some(slot) = self.find(key, now) else { return Outcome::NotFound };
        if cas != 0 && self.items[slot].cas() != cas {
            return Outcome::Exists;
        }
        self.remove(slot);
        Outcome::Done { cas: 0 }
    }

    #[allow(clippy::too_many_arguments)]
    fn arith(
        &mut self,
        incr: bool,
        key: &[u8],
        delta: u64,
        initial: Option<u64>,
        exptime: u32,
        cas: u64,
        now: u32,
    ) -> Outcome<&[u8]> {
        let (value, flags, expiry) = match self.find(key, now) {
            None => {
                let Some(initial) = initial else { return Outcome::NotFound };
                (initial, 0, expiry::absolute(exptime, now))
            }
            Some(slot) => {
                let item = &self.items[slot];
                if cas != 0 && item.cas() != cas {
                    return Outcome::Exists;
                }
                let Some(current) = parse_counter(item.value()) else { return Outcome::NonNumeric };
                let value = if incr { current.wrapping_add(delta) } else { current.saturating_sub(delta) };
                let (flags, expiry) = (item.flags(), item.expiry());
                self.remove(slot);
                (value, flags, expiry)
            }
        };
        let cas = self.next_cas();
        let item = Item::with_value(key, value.to_string().as_bytes(), flags, expiry, cas);
        match self.insert(item, now) {
            Outcome::Done { cas } => Outcome::Counter { value, cas },
            other => other,
        }
    }
}

/// A counter is ASCII decimal below 2^64, as memcached's `safe_strtoull` reads it
/// (trailing spaces, left by memcached's in-place decrement, are allowed).
pub fn parse_counter(value: &[u8]) -> Option<u64> {
    let digits = value.strip_suffix(b"\r\n").unwrap_or(value);
    let end = digits.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
    let digits = &digits[..end];
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u32 = 1_800_000_000;

    fn shard() -> Shard {
        Shard::new(ShardConfig { memory_limit: 1 << 20, max_item_size: 1024 })
    }

    fn set(s: &mut Shard, k: &str, v: &str) -> Outcome<Vec<u8>> {
        own(s.execute(
            &Command::Store { mode: StoreMode::Set, key: k, value: v, flags: 7, exptime: 0, cas: 0 },
            NOW,
        ))
    }

    fn get(s: &mut Shard, k: &str) -> Option<Vec<u8>> {
        match s.execute(&Command::Get { key: k }, NOW) {
            Outcome::Value { value, .. } => Some(value.to_vec()),
            _ => None,
        }
    }

    fn own(o: Outcome<&[u8]>) -> Outcome<Vec<u8>> {
        match o {
            Outcome::Value { flags, cas, value } => Outcome::Value { flags, cas, value: value.to_vec() },
            Outcome::Done { cas } => Outcome::Done { cas },
            Outcome::Counter { value, cas } => Outcome::Counter { value, cas },
            Outcome::NotFound => Outcome::NotFound,
            Outcome::Exists => Outcome::Exists,
            Outcome::NotStored => Outcome::NotStored,
            Outcome::NonNumeric => Outcome::NonNumeric,
            Outcome::TooLarge => Outcome::TooLarge,
            Outcome::OutOfMemory => Outcome::OutOfMemory,
        }
    }

    #[test]
    fn set_get_delete() {
        let mut s = shard();
        assert!(matches!(set(&mut s, "a", "1"), Outcome::Done { cas } if cas > 0));
        assert_eq!(get(&mut s, "a").as_deref(), Some(&b"1"[..]));
        assert_eq!(own(s.execute(&Command::Delete { key: "a", cas: 0 }, NOW)), Outcome::Done { cas: 0 });
        assert_eq!(get(&mut s, "a"), None);
        assert_eq!(own(s.execute(&Command::Delete { key: "a", cas: 0 }, NOW)), Outcome::NotFound);
        assert_eq!(s.used_bytes(), 0);
    }

    #[test]
    fn cas_rules() {
        let mut s = shard();
        let Outcome::Done { cas } = set(&mut s, "a", "1") else { panic!() };
        let store = |mode, cas| Command::Store { mode, key: "a", value: "2", flags: 0, exptime: 0, cas };
        assert_eq!(own(s.execute(&store(StoreMode::Set, cas + 1), NOW)), Outcome::Exists);
        assert!(matches!(s.execute(&store(StoreMode::Set, cas), NOW), Outcome::Done { cas: c } if c > cas));
        let missing = Command::Store { mode: StoreMode::Set, key: "b", value: "2", flags: 0, exptime: 0, cas: 5 };
        assert_eq!(own(s.execute(&missing, NOW)), Outcome::NotFound);
        assert_eq!(own(s.execute(&Command::Delete { key: "a", cas: 1 }, NOW)), Outcome::Exists);
    }

    #[test]
    fn add_replace_append_prepend() {
        let mut s = shard();
        let cmd = |mode, v| Command::Store { mode, key: "a", value: v, flags: 3, exptime: 0, cas: 0 };
        assert_eq!(own(s.execute(&cmd(StoreMode::Replace, "x"), NOW)), Outcome::NotStored);
        assert_eq!(own(s.execute(&cmd(StoreMode::Append, "x"), NOW)), Outcome::NotStored);
        assert!(matches!(s.execute(&cmd(StoreMode::Add, "b"), NOW), Outcome::Done { .. }));
        assert_eq!(own(s.execute(&cmd(StoreMode::Add, "x"), NOW)), Outcome::NotStored);
        assert!(matches!(s.execute(&cmd(StoreMode::Append, "c"), NOW), Outcome::Done { .. }));
        assert!(matches!(s.execute(&cmd(StoreMode::Prepend, "a"), NOW), Outcome::Done { .. }));
        assert_eq!(get(&mut s, "a").as_deref(), Some(&b"abc"[..]));
        assert!(matches!(s.execute(&cmd(StoreMode::Replace, "z"), NOW), Outcome::Done { .. }));
        assert_eq!(get(&mut s, "a").as_deref(), Some(&b"z"[..]));
    }

    #[test]
    fn incr_decr() {
        let mut s = shard();
        let arith = |incr, delta, initial| Command::Arith { incr, key: "n", delta, initial, exptime: 0, cas: 0 };
        assert_eq!(own(s.execute(&arith(true, 1, None), NOW)), Outcome::NotFound);
        assert!(matches!(s.execute(&arith(true, 1, Some(10)), NOW), Outcome::Counter { value: 10, .. }));
        assert!(matches!(s.execute(&arith(true, 5, Some(0)), NOW), Outcome::Counter { value: 15, .. }));
        assert!(matches!(s.execute(&arith(false, 100, None), NOW), Outcome::Counter { value: 0, .. }));
        set(&mut s, "n", &u64::MAX.to_string());
        assert!(matches!(s.execute(&arith(true, 2, None), NOW), Outcome::Counter { value: 1, .. }));
        assert_eq!(get(&mut s, "n").as_deref(), Some(&b"1"[..]));
        set(&mut s, "n", "abc");
        assert_eq!(own(s.execute(&arith(true, 1, None), NOW)), Outcome::NonNumeric);
        set(&mut s, "n", "18446744073709551616");
        assert_eq!(own(s.execute(&arith(true, 1, None), NOW)), Outcome::NonNumeric);
    }

    #[test]
    fn counters_parse_like_memcached() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"9 "), Some(9));
        assert_eq!(parse_counter(b"42\r\n"), Some(42));
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"-1"), None);
        assert_eq!(parse_counter(b"1a"), None);
    }

    #[test]
    fn expiry_and_touch() {
        let mut s = shard();
        let cmd = Command::Store { mode: StoreMode::Set, key: "a", value: "v", flags: 0, exptime: 10, cas: 0 };
        s.execute(&cmd, NOW);
        assert!(matches!(s.execute(&Command::Get { key: "a" }, NOW + 9), Outcome::Value { .. }));
        assert!(matches!(s.execute(&Command::Touch { key: "a", exptime: 100 }, NOW + 9), Outcome::Value { .. }));
        assert!(matches!(s.execute(&Command::Get { key: "a" }, NOW + 50), Outcome::Value { .. }));
        assert_eq!(own(s.execute(&Command::Get { key: "a" }, NOW + 109)), Outcome::NotFound);
        assert_eq!(s.len(), 0);
        // An absolute time in the past is gone at once.
        let past = Command::Store { mode: StoreMode::Set, key: "b", value: "v", flags: 0, exptime: NOW - 1, cas: 0 };
        s.execute(&past, NOW);
        assert_eq!(own(s.execute(&Command::Get { key: "b" }, NOW)), Outcome::NotFound);
    }

    #[test]
    fn delayed_flush() {
        let mut s = shard();
        set(&mut s, "a", "1");
        s.execute(&Command::<&[u8]>::Flush { delay: 5 }, NOW);
        assert!(get(&mut s, "a").is_some());
        s.tick(NOW + 5);
        assert!(s.is_empty());
    }

    #[test]
    fn eviction_keeps_usage_under_the_limit_and_prefers_unreferenced_items() {
        let mut s = Shard::new(ShardConfig { memory_limit: 100 * charge_for(4, 10), max_item_size: 1024 });
        for i in 0..100 {
            set(&mut s, &format!("k{i:03}"), "0123456789");
        }
        assert_eq!(s.counters().evictions, 0);
        // Touch the first ten so the clock passes over them.
        for i in 0..10 {
            assert!(get(&mut s, &format!("k{i:03}")).is_some());
        }
        for i in 100..150 {
            set(&mut s, &format!("k{i:03}"), "0123456789");
        }
        assert!(s.used_bytes() <= 100 * charge_for(4, 10));
        assert_eq!(s.counters().evictions, 50);
        for i in 0..10 {
            assert!(get(&mut s, &format!("k{i:03}")).is_some(), "k{i:03} was referenced");
        }
    }

    #[test]
    fn an_item_larger_than_the_shard_is_out_of_memory() {
        let mut s = Shard::new(ShardConfig { memory_limit: 100, max_item_size: 1024 });
        assert_eq!(set(&mut s, "a", &"x".repeat(200)), Outcome::OutOfMemory);
        let mut s = shard();
        assert_eq!(set(&mut s, "a", &"x".repeat(2000)), Outcome::TooLarge);
    }
}
