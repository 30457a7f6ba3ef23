//! Keys and the choice of the next request: `key:%08d` written without allocation, and a
//! small PRNG so that picking a key costs a few instructions.

/// Room for `key:` and the 20 digits of `u64::MAX`.
pub const KEY_CAP: usize = 24;
const PREFIX: &[u8] = b"key:";
/// `%08d`: at least eight digits, zero-padded.
const MIN_DIGITS: usize = 8;

/// Writes `v` in decimal at the end of `digits`; returns where its first digit is (the
/// places before it are left as they were).
pub fn decimal(mut v: u64, digits: &mut [u8; 20]) -> usize {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    i
}

/// Writes `key:%08d` of `n` into `out` and returns its length.
pub fn format_key(n: u64, out: &mut [u8; KEY_CAP]) -> usize {
    let mut digits = [b'0'; 20];
    let i = decimal(n, &mut digits);
    let start = i.min(digits.len() - MIN_DIGITS);
    let digits = &digits[start..];
    out[..PREFIX.len()].copy_from_slice(PREFIX);
    out[PREFIX.len()..PREFIX.len() + digits.len()].copy_from_slice(digits);
    PREFIX.len() + digits.len()
}

/// xorshift64*: not for cryptography, only to spread keys and operations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that seeds 0, 1, 2 … give unrelated streams.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift instead of a division.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> String {
        let mut buf = [0u8; KEY_CAP];
        let len = format_key(n, &mut buf);
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn keys_are_printf_08d() {
        assert_eq!(key(0), "key:00000000");
        assert_eq!(key(42), "key:00000042");
        assert_eq!(key(99_999_999), "key:99999999");
        assert_eq!(key(123_456_789), "key:123456789");
        assert_eq!(key(u64::MAX), format!("key:{}", u64::MAX));
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::new(7);
        for n in [1u64, 2, 3, 11, 100_000] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
    }
}
