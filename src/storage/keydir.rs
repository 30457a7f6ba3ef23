//! The keydir: an index from key to item, and the memory those items take.
//!
//! Items live in a `Slab` (which gives the CLOCK hand a stable order to sweep); the hash
//! table holds only each item's slot, four bytes, and compares keys through the slab.

use ahash::RandomState;
use hashbrown::HashTable;
use slab::Slab;

use super::item::Item;

pub struct Keydir {
    index: HashTable<u32>,
    items: Slab<Item>,
    hasher: RandomState,
    /// Sum of `Item::charge` over `items`.
    used: usize,
    /// Bytes of values held in memory by items that are also on disk (they can be dropped).
    droppable: usize,
    /// CLOCK hand: the next slot to look at when memory must be freed.
    hand: usize,
}

/// A slot in the keydir.
pub type Slot = usize;

impl Keydir {
    pub fn new() -> Keydir {
        Keydir {
            index: HashTable::new(),
            items: Slab::new(),
            hasher: RandomState::new(),
            used: 0,
            droppable: 0,
            hand: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn used(&self) -> usize {
        self.used
    }

    /// Bytes that dropping every on-disk value from memory would free.
    pub fn droppable(&self) -> usize {
        self.droppable
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn find(&self, key: &[u8]) -> Option<Slot> {
        let items = &self.items;
        self.index.find(self.hash(key), |&i| items[i as usize].key() == key).map(|&i| i as usize)
    }

    pub fn get(&self, slot: Slot) -> &Item {
        &self.items[slot]
    }

    pub fn try_get(&self, slot: Slot) -> Option<&Item> {
        self.items.get(slot)
    }

    pub fn get_mut(&mut self, slot: Slot) -> &mut Item {
        &mut self.items[slot]
    }

    fn droppable_of(item: &Item) -> usize {
        if item.disk().is_some() && item.is_resident() {
            item.value().len()
        } else {
            0
        }
    }

    /// Adds an item whose key is not in the keydir.
    pub fn insert(&mut self, item: Item) -> Slot {
        let hash = self.hash(item.key());
        self.used += item.charge();
        self.droppable += Self::droppable_of(&item);
        let slot = self.items.insert(item);
        let (items, hasher) = (&self.items, &self.hasher);
        self.index.insert_unique(hash, slot as u32, |&i| hasher.hash_one(items[i as usize].key()));
        slot
    }

    /// Makes room in the index for `additional` more keys at once (start-up, which knows
    /// about how many are coming): growing step by step rehashes every key, through its
    /// item, at each doubling.
    pub fn reserve(&mut self, additional: usize) {
        let (items, hasher) = (&self.items, &self.hasher);
        self.index.reserve(additional, |&i| hasher.hash_one(items[i as usize].key()));
    }

    /// Gives back index room well beyond what the keys need (after a [`reserve`](Self::reserve)
    /// that counted records which turned out to be overwrites or deletes).
    pub fn shrink_if_oversized(&mut self) {
        if self.index.capacity() > 2 * self.items.len() + 1024 {
            let (items, hasher) = (&self.items, &self.hasher);
            self.index.shrink_to(self.items.len(), |&i| hasher.hash_one(items[i as usize].key()));
        }
    }

    /// Puts `item` (same key) in place of the one in `slot`; returns the old one.
    pub fn replace(&mut self, slot: Slot, item: Item) -> Item {
        debug_assert_eq!(self.items[slot].key(), item.key());
        self.used += item.charge();
        self.droppable += Self::droppable_of(&item);
        let old = std::mem::replace(&mut self.items[slot], item);
        self.used -= old.charge();
        self.droppable -= Self::droppable_of(&old);
        old
    }

    pub fn remove(&mut self, slot: Slot) -> Item {
        let hash = self.hash(self.items[slot].key());
        if let Ok(entry) = self.index.find_entry(hash, |&i| i as usize == slot) {
            entry.remove();
        }
        let item = self.items.remove(slot);
        self.used -= item.charge();
        self.droppable -= Self::droppable_of(&item);
        item
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.items.clear();
        self.used = 0;
        self.droppable = 0;
        self.hand = 0;
    }

    /// One step of CLOCK: clears referenced bits until it finds an unreferenced item for
    /// which `pick` is true, and returns its slot. Gives up after two sweeps.
    pub fn clock(&mut self, mut pick: impl FnMut(&Item) -> bool) -> Option<Slot> {
        let slots = self.items.capacity();
        for _ in 0..=2 * slots {
            if self.hand >= slots {
                self.hand = 0;
            }
            let slot = self.hand;
            self.hand += 1;
            let Some(item) = self.items.get_mut(slot) else { continue };
            if !pick(item) {
                continue;
            }
            if item.referenced() {
                item.set_referenced(false);
                continue;
            }
            return Some(slot);
        }
        None
    }

    /// One past the highest slot that may hold an item: a scan's cursor runs up to it.
    pub fn slot_end(&self) -> Slot {
        self.items.capacity()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Item)> {
        self.items.iter()
    }
}

impl Default for Keydir {
    fn default() -> Self {
        Keydir::new()
    }
}
