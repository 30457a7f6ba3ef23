//! One item in a single allocation: a fixed header, then the key, then the value.
//!
//! | offset | size | field                                         |
//! |-------:|-----:|-----------------------------------------------|
//! | 0      | 8    | CAS (native endian)                           |
//! | 8      | 4    | flags, verbatim from the client               |
//! | 12     | 4    | expiry: absolute unix seconds, 0 = never      |
//! | 16     | 1    | bits: 0x01 = referenced since the clock hand passed |
//! | 17     | 1    | key length (1..=250)                          |
//! | 18     | k    | key                                           |
//! | 18 + k | v    | value                                         |
//!
//! A boxed slice rather than a struct of fields keeps an item to one allocation, which is
//! what keeps caskade's bytes per item at or below memcached's.

const OFF_CAS: usize = 0;
const OFF_FLAGS: usize = 8;
const OFF_EXPIRY: usize = 12;
const OFF_BITS: usize = 16;
const OFF_KEY_LEN: usize = 17;
pub const ITEM_HEADER_LEN: usize = 18;

const BIT_REFERENCED: u8 = 0x01;

pub struct Item(Box<[u8]>);

impl Item {
    /// `key` is at most 255 bytes (the protocols allow 250).
    pub fn new(key: &[u8], value_len: usize, flags: u32, expiry: u32, cas: u64) -> Item {
        debug_assert!(key.len() <= u8::MAX as usize);
        let mut data = vec![0u8; ITEM_HEADER_LEN + key.len() + value_len].into_boxed_slice();
        data[OFF_CAS..OFF_CAS + 8].copy_from_slice(&cas.to_ne_bytes());
        data[OFF_FLAGS..OFF_FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
        data[OFF_EXPIRY..OFF_EXPIRY + 4].copy_from_slice(&expiry.to_ne_bytes());
        data[OFF_KEY_LEN] = key.len() as u8;
        data[ITEM_HEADER_LEN..ITEM_HEADER_LEN + key.len()].copy_from_slice(key);
        Item(data)
    }

    pub fn with_value(key: &[u8], value: &[u8], flags: u32, expiry: u32, cas: u64) -> Item {
        let mut item = Item::new(key, value.len(), flags, expiry, cas);
        item.value_mut().copy_from_slice(value);
        item
    }

    fn key_len(&self) -> usize {
        self.0[OFF_KEY_LEN] as usize
    }

    pub fn key(&self) -> &[u8] {
        &self.0[ITEM_HEADER_LEN..ITEM_HEADER_LEN + self.key_len()]
    }

    pub fn value(&self) -> &[u8] {
        &self.0[ITEM_HEADER_LEN + self.key_len()..]
    }

    pub fn value_mut(&mut self) -> &mut [u8] {
        let start = ITEM_HEADER_LEN + self.key_len();
        &mut self.0[start..]
    }

    fn u32_at(&self, off: usize) -> u32 {
        u32::from_ne_bytes([self.0[off], self.0[off + 1], self.0[off + 2], self.0[off + 3]])
    }

    pub fn cas(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[OFF_CAS..OFF_CAS + 8]);
        u64::from_ne_bytes(b)
    }

    pub fn set_cas(&mut self, cas: u64) {
        self.0[OFF_CAS..OFF_CAS + 8].copy_from_slice(&cas.to_ne_bytes());
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
        self.0[OFF_BITS] & BIT_REFERENCED != 0
    }

    pub fn set_referenced(&mut self, on: bool) {
        if on {
            self.0[OFF_BITS] |= BIT_REFERENCED;
        } else {
            self.0[OFF_BITS] &= !BIT_REFERENCED;
        }
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

/// The charge of an item with this key and value before it is built.
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
        it.set_referenced(true);
        it.set_cas(100);
        it.set_expiry(0);
        assert!(it.referenced());
        assert_eq!((it.cas(), it.expiry(), it.value()), (100, 0, &b"value"[..]));
        assert_eq!(it.charge(), charge_for(3, 5));
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
