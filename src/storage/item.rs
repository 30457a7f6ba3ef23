//! One item in a single allocation: a fixed header, the record's location when the shard is
//! on disk, the key, then the value when it is held in memory.
//!
//! | offset | size | field                                                      |
//! |-------:|-----:|------------------------------------------------------------|
//! | 0      | 8    | CAS (native endian)                                        |
//! | 8      | 4    | flags, verbatim from the client                            |
//! | 12     | 4    | expiry: absolute unix seconds, 0 = never                   |
//! | 16     | 1    | bits: 0x01 referenced, 0x02 on disk, 0x04 value in memory, 0x08 compressed on disk, 0x10 fetched, 0x20 win token sent, 0x40 stale |
//! | 17     | 1    | key length (1..=250)                                       |
//! | 18     | 4    | last access: unix seconds (meta `l`, `me la`)              |
//! | 22     | 16   | only when on disk: segment id, offset, stored value length, value length (u32 each) |
//! | 22/38  | k    | key                                                        |
//! | ...    | v    | value, only when in memory                                 |
//!
//! A boxed slice rather than a struct of fields keeps an item to one allocation (and the
//! location costs nothing in memory-only mode), which is what keeps caskade's bytes per item
//! at or below memcached's.

use super::disk::Location;

const OFF_CAS: usize = 0;
const OFF_FLAGS: usize = 8;
const OFF_EXPIRY: usize = 12;
const OFF_BITS: usize = 16;
const OFF_KEY_LEN: usize = 17;
const OFF_ATIME: usize = 18;
const OFF_LOCATION: usize = 22;
pub const ITEM_HEADER_LEN: usize = 22;
const LOCATION_LEN: usize = 16;

const BIT_REFERENCED: u8 = 0x01;
const BIT_ON_DISK: u8 = 0x02;
const BIT_RESIDENT: u8 = 0x04;
const BIT_COMPRESSED: u8 = 0x08;
/// Served to a read at least once (meta `h`, `me fetch`).
pub const BIT_FETCHED: u8 = 0x10;
/// A meta `mg` was answered `W` for this item: later readers get `Z`.
pub const BIT_TOKEN_SENT: u8 = 0x20;
/// Invalidated (`md I`, `ms I`): readers get `X`, and one of them `W`.
pub const BIT_STALE: u8 = 0x40;
/// The state bits a client's reads and invalidations set (the rest describe storage).
const STATE_BITS: u8 = BIT_FETCHED | BIT_TOKEN_SENT | BIT_STALE;

/// Where an item's record is, and how its value is stored there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskRef {
    pub loc: Location,
    pub stored_len: u32,
    pub value_len: u32,
    pub compressed: bool,
}

pub struct Item(Box<[u8]>);

/// An item's state bits and last access, apart from the item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientState {
    bits: u8,
    atime: u32,
}

impl Item {
    /// An item with room for `value_len` bytes of value (zeroed), or with no value in memory
    /// when `resident` is false (then `disk` must be given).
    pub fn new(key: &[u8], value_len: usize, flags: u32, expiry: u32, cas: u64, disk: Option<DiskRef>, resident: bool) -> Item {
        debug_assert!(key.len() <= u8::MAX as usize);
        debug_assert!(resident || disk.is_some());
        let loc_len = if disk.is_some() { LOCATION_LEN } else { 0 };
        let held = if resident { value_len } else { 0 };
        let mut data = vec![0u8; ITEM_HEADER_LEN + loc_len + key.len() + held].into_boxed_slice();
        data[OFF_CAS..OFF_CAS + 8].copy_from_slice(&cas.to_ne_bytes());
        data[OFF_FLAGS..OFF_FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
        data[OFF_EXPIRY..OFF_EXPIRY + 4].copy_from_slice(&expiry.to_ne_bytes());
        let mut bits = if resident { BIT_RESIDENT } else { 0 };
        if let Some(d) = disk {
            bits |= BIT_ON_DISK | if d.compressed { BIT_COMPRESSED } else { 0 };
            let l = &mut data[OFF_LOCATION..OFF_LOCATION + LOCATION_LEN];
            l[0..4].copy_from_slice(&d.loc.segment.to_ne_bytes());
            l[4..8].copy_from_slice(&d.loc.offset.to_ne_bytes());
            l[8..12].copy_from_slice(&d.stored_len.to_ne_bytes());
            l[12..16].copy_from_slice(&d.value_len.to_ne_bytes());
        }
        data[OFF_BITS] = bits;
        data[OFF_KEY_LEN] = key.len() as u8;
        let key_start = ITEM_HEADER_LEN + loc_len;
        data[key_start..key_start + key.len()].copy_from_slice(key);
        Item(data)
    }

    /// A memory-only item holding `value`.
    pub fn with_value(key: &[u8], value: &[u8], flags: u32, expiry: u32, cas: u64) -> Item {
        let mut item = Item::new(key, value.len(), flags, expiry, cas, None, true);
        item.value_mut().copy_from_slice(value);
        item
    }

    fn bits(&self) -> u8 {
        self.0[OFF_BITS]
    }

    fn key_start(&self) -> usize {
        ITEM_HEADER_LEN + if self.bits() & BIT_ON_DISK != 0 { LOCATION_LEN } else { 0 }
    }

    fn key_len(&self) -> usize {
        self.0[OFF_KEY_LEN] as usize
    }

    pub fn key(&self) -> &[u8] {
        let s = self.key_start();
        &self.0[s..s + self.key_len()]
    }

    /// Whether the value is in memory.
    pub fn is_resident(&self) -> bool {
        self.bits() & BIT_RESIDENT != 0
    }

    /// The value; empty when it is not in memory (see [`is_resident`](Self::is_resident)).
    pub fn value(&self) -> &[u8] {
        &self.0[self.key_start() + self.key_len()..]
    }

    pub fn value_mut(&mut self) -> &mut [u8] {
        let start = self.key_start() + self.key_len();
        &mut self.0[start..]
    }

    /// Length of the value, in memory or not.
    pub fn value_len(&self) -> usize {
        match self.disk() {
            Some(d) if !self.is_resident() => d.value_len as usize,
            _ => self.value().len(),
        }
    }

    fn u32_at(&self, off: usize) -> u32 {
        u32::from_ne_bytes([self.0[off], self.0[off + 1], self.0[off + 2], self.0[off + 3]])
    }

    pub fn disk(&self) -> Option<DiskRef> {
        if self.bits() & BIT_ON_DISK == 0 {
            return None;
        }
        Some(DiskRef {
            loc: Location { segment: self.u32_at(OFF_LOCATION), offset: self.u32_at(OFF_LOCATION + 4) },
            stored_len: self.u32_at(OFF_LOCATION + 8),
            value_len: self.u32_at(OFF_LOCATION + 12),
            compressed: self.bits() & BIT_COMPRESSED != 0,
        })
    }

    /// Moves the record's location (a merge copied it).
    pub fn set_location(&mut self, loc: Location) {
        debug_assert!(self.bits() & BIT_ON_DISK != 0);
        self.0[OFF_LOCATION..OFF_LOCATION + 4].copy_from_slice(&loc.segment.to_ne_bytes());
        self.0[OFF_LOCATION + 4..OFF_LOCATION + 8].copy_from_slice(&loc.offset.to_ne_bytes());
    }

    pub fn cas(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[OFF_CAS..OFF_CAS + 8]);
        u64::from_ne_bytes(b)
    }

    pub fn flags(&self) -> u32 {
        self.u32_at(OFF_FLAGS)
    }

    pub fn expiry(&self) -> u32 {
        self.u32_at(OFF_EXPIRY)
    }

    pub fn set_expiry(&mut self, expiry: u32) {
        self.0[OFF_EXPIRY..OFF_EXPIRY + 4].copy_from_slice(&expiry.to_ne_bytes());
    }

    pub fn is_expired(&self, now: u32) -> bool {
        let e = self.expiry();
        e != 0 && e <= now
    }

    pub fn referenced(&self) -> bool {
        self.bits() & BIT_REFERENCED != 0
    }

    pub fn set_referenced(&mut self, on: bool) {
        if on {
            self.0[OFF_BITS] |= BIT_REFERENCED;
        } else {
            self.0[OFF_BITS] &= !BIT_REFERENCED;
        }
    }

    /// Whether a state bit ([`BIT_FETCHED`], [`BIT_TOKEN_SENT`], [`BIT_STALE`]) is set.
    pub fn has(&self, bit: u8) -> bool {
        debug_assert_eq!(bit & !STATE_BITS, 0);
        self.bits() & bit != 0
    }

    pub fn set(&mut self, bit: u8, on: bool) {
        debug_assert_eq!(bit & !STATE_BITS, 0);
        if on {
            self.0[OFF_BITS] |= bit;
        } else {
            self.0[OFF_BITS] &= !bit;
        }
    }

    /// Last access, unix seconds (0 until set).
    pub fn atime(&self) -> u32 {
        self.u32_at(OFF_ATIME)
    }

    pub fn set_atime(&mut self, now: u32) {
        self.0[OFF_ATIME..OFF_ATIME + 4].copy_from_slice(&now.to_ne_bytes());
    }

    /// The state clients' reads and invalidations gave this item, to carry onto the item
    /// that replaces it when only its storage changes.
    pub fn state(&self) -> ClientState {
        ClientState { bits: self.bits() & STATE_BITS, atime: self.atime() }
    }

    pub fn set_state(&mut self, state: ClientState) {
        self.0[OFF_BITS] = (self.bits() & !STATE_BITS) | state.bits;
        self.set_atime(state.atime);
    }

    /// The same item without its value in memory (it stays on disk).
    pub fn without_value(&self) -> Item {
        let d = self.disk().expect("only an item on disk can drop its value");
        let mut it = Item::new(self.key(), 0, self.flags(), self.expiry(), self.cas(), Some(d), false);
        it.set_state(self.state());
        it.set_referenced(false);
        it
    }

    /// The same item holding `value` in memory.
    pub fn with_resident(&self, value: &[u8]) -> Item {
        let mut it = Item::new(self.key(), value.len(), self.flags(), self.expiry(), self.cas(), self.disk(), true);
        it.set_state(self.state());
        it.value_mut().copy_from_slice(value);
        it
    }

    /// Bytes this item is charged against the memory limit: its allocation plus an estimate
    /// of the allocator's and the index's overhead per item.
    pub fn charge(&self) -> usize {
        self.0.len() + PER_ITEM_OVERHEAD
    }
}

/// Allocator header and rounding (~16), slab slot (16), hash-table slot with spare
/// capacity (~10), rounded up.
pub const PER_ITEM_OVERHEAD: usize = 48;

/// The charge of a memory-only item with this key and value before it is built.
pub fn charge_for(key_len: usize, value_len: usize) -> usize {
    ITEM_HEADER_LEN + key_len + value_len + PER_ITEM_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut it = Item::with_value(b"key", b"value", 0xdeadbeef, 1234, 99);
        assert_eq!(it.key(), b"key");
        assert_eq!(it.value(), b"value");
        assert_eq!(it.flags(), 0xdeadbeef);
        assert_eq!(it.expiry(), 1234);
        assert_eq!(it.cas(), 99);
        assert!(!it.referenced());
        assert!(it.disk().is_none() && it.is_resident());
        it.set_referenced(true);
        it.set_expiry(0);
        assert!(it.referenced());
        assert_eq!((it.cas(), it.expiry(), it.value()), (99, 0, &b"value"[..]));
        assert_eq!(it.charge(), charge_for(3, 5));
    }

    #[test]
    fn client_state_survives_dropping_and_regaining_the_value() {
        let d = DiskRef { loc: Location { segment: 1, offset: 32 }, stored_len: 1, value_len: 1, compressed: false };
        let mut it = Item::new(b"k", 1, 0, 0, 1, Some(d), true);
        assert!(!it.has(BIT_FETCHED) && !it.has(BIT_STALE) && it.atime() == 0);
        it.set(BIT_FETCHED, true);
        it.set(BIT_STALE, true);
        it.set_atime(77);
        let cold = it.without_value();
        assert!(cold.has(BIT_FETCHED) && cold.has(BIT_STALE) && !cold.has(BIT_TOKEN_SENT));
        assert_eq!(cold.atime(), 77);
        assert!(cold.disk().is_some() && !cold.is_resident());
        let warm = cold.with_resident(b"v");
        assert!(warm.has(BIT_STALE) && warm.is_resident() && warm.atime() == 77);
        let mut fresh = Item::with_value(b"k", b"v", 0, 0, 2);
        fresh.set(BIT_STALE, false);
        assert!(!fresh.has(BIT_STALE));
    }

    #[test]
    fn on_disk_items_can_drop_and_regain_their_value() {
        let d = DiskRef { loc: Location { segment: 3, offset: 40 }, stored_len: 4, value_len: 5, compressed: true };
        let mut it = Item::new(b"key", 5, 1, 2, 3, Some(d), true);
        it.value_mut().copy_from_slice(b"value");
        assert_eq!((it.key(), it.value(), it.disk()), (&b"key"[..], &b"value"[..], Some(d)));
        let cold = it.without_value();
        assert!(!cold.is_resident());
        assert_eq!((cold.key(), cold.value(), cold.value_len(), cold.disk()), (&b"key"[..], &b""[..], 5, Some(d)));
        assert!(cold.charge() < it.charge());
        let warm = cold.with_resident(b"value");
        assert_eq!((warm.value(), warm.cas(), warm.flags(), warm.expiry()), (&b"value"[..], 3, 1, 2));
        let mut moved = warm;
        moved.set_location(Location { segment: 9, offset: 32 });
        assert_eq!(moved.disk().unwrap().loc, Location { segment: 9, offset: 32 });
    }

    #[test]
    fn expiry_zero_never_expires() {
        let it = Item::with_value(b"k", b"", 0, 0, 1);
        assert!(!it.is_expired(u32::MAX));
        let it = Item::with_value(b"k", b"", 0, 10, 1);
        assert!(!it.is_expired(9));
        assert!(it.is_expired(10));
    }
}
