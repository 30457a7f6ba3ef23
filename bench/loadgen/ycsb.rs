//! YCSB's core workloads A-F on a key-value cache: the operation mixes and the request
//! distributions of YCSB's `CoreWorkload`, with its constants, so that a run here can be
//! read beside published YCSB figures.
//!
//! | workload | mix | distribution |
//! | --- | --- | --- |
//! | A | read 50 %, update 50 % | zipfian |
//! | B | read 95 %, update 5 % | zipfian |
//! | C | read 100 % | zipfian |
//! | D | read 95 %, insert 5 % | latest |
//! | E | scan 95 %, insert 5 % | zipfian: **not run**, memcached has no scan |
//! | F | read 50 %, read-modify-write 50 % | zipfian |
//!
//! Mapped onto memcached: a record is one item whose value is `fieldcount * fieldlength`
//! bytes; read = GET, update and insert = SET of the whole record (memcached cannot write one
//! field), read-modify-write = a GET and, once its reply is in, a SET of the same key (two
//! requests). Keys are YCSB's hashed names, `user` + `fnvhash64(keynum)` in decimal.
//!
//! * zipfian: YCSB's `ScrambledZipfianGenerator`: a zipfian (constant 0.99, Gray et al.'s
//!   method, as `ZipfianGenerator`) over 10^10 items with YCSB's precomputed zeta
//!   (26.46902820178302), each draw scattered over the records by `fnvhash64 % records`,
//!   so the popular keys are spread over the key space, not the first ones.
//! * latest: `SkewedLatestGenerator`: `last - zipfian(last)`, the newest insert the most
//!   popular; the zipfian's zeta grows incrementally with every insert.
//! * uniform: every record alike.
//!
//! Inserts take the next key number from a counter that the threads share (YCSB's
//! `transactioninsertkeysequence`). YCSB lets `latest` choose only among inserts already
//! acknowledged; here a read may pick one still in flight and miss.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::keys::Rng;

/// YCSB's `ZipfianGenerator.ZIPFIAN_CONSTANT`.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;
/// `ScrambledZipfianGenerator.ITEM_COUNT` and `ZETAN`: zeta(10^10, 0.99), precomputed.
pub const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;
pub const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

const FNV_OFFSET_BASIS_64: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME_64: u64 = 1_099_511_628_211;

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS_64, |h, &b| (h ^ b as u64).wrapping_mul(FNV_PRIME_64))
}

/// YCSB's `Utils.fnvhash64(long)`: FNV-1a over the value's 8 bytes, low byte first, then
/// `Math.abs` (which leaves `Long.MIN_VALUE` negative; here it becomes 2^63).
pub fn fnvhash64(v: u64) -> u64 {
    (fnv1a64(&v.to_le_bytes()) as i64).unsigned_abs()
}

/// Room for `user` and the 19 digits of a hash below 2^63 (or 2^63 itself).
pub const KEY_LEN_MAX: usize = 4 + 19;

/// YCSB's key name for a key number (`orderedinserts=false`): `user` + `fnvhash64(n)`.
pub fn format_key(n: u64, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 20];
    let i = crate::keys::decimal(fnvhash64(n), &mut digits);
    let len = 4 + digits.len() - i;
    out[..4].copy_from_slice(b"user");
    out[4..len].copy_from_slice(&digits[i..]);
    len
}

/// A double in [0, 1), as Java's `Random.nextDouble` gives.
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// `sum_{i=from+1..=to} 1 / i^theta` added to `initial`: YCSB's incremental `zeta`.
fn zeta(from: u64, to: u64, theta: f64, initial: f64) -> f64 {
    (from + 1..=to).fold(initial, |sum, i| sum + 1.0 / (i as f64).powf(theta))
}

/// YCSB's `ZipfianGenerator`: item `i` of `0..n` with probability ∝ 1 / (i+1)^theta.
#[derive(Clone, Debug)]
pub struct Zipfian {
    theta: f64,
    alpha: f64,
    zeta2theta: f64,
    /// The item count the current `zetan` and `eta` are for.
    count: u64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    pub fn new(count: u64) -> Zipfian {
        Zipfian::with_zetan(count, zeta(0, count, ZIPFIAN_CONSTANT, 0.0))
    }

    /// With zeta(count) given (the scrambled generator's precomputed constant).
    pub fn with_zetan(count: u64, zetan: f64) -> Zipfian {
        let theta = ZIPFIAN_CONSTANT;
        let zeta2theta = zeta(0, 2, theta, 0.0);
        let mut z = Zipfian { theta, alpha: 1.0 / (1.0 - theta), zeta2theta, count, zetan, eta: 0.0 };
        z.eta = z.eta_for(count);
        z
    }

    fn eta_for(&self, count: u64) -> f64 {
        (1.0 - (2.0 / count as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2theta / self.zetan)
    }

    /// A draw from `0..count`; a larger count than the last extends zeta incrementally (the
    /// latest distribution grows with every insert).
    pub fn next(&mut self, count: u64, rng: &mut Rng) -> u64 {
        if count > self.count {
            self.zetan = zeta(self.count, count, self.theta, self.zetan);
            self.count = count;
            self.eta = self.eta_for(count);
        }
        let u = unit(rng);
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let v = (count as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(count - 1)
    }
}

/// Which key number the next read or update goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Distribution {
    Zipfian,
    Latest,
    Uniform,
}

impl std::str::FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Distribution, String> {
        match s {
            "zipfian" => Ok(Distribution::Zipfian),
            "latest" => Ok(Distribution::Latest),
            "uniform" => Ok(Distribution::Uniform),
            _ => Err(format!("`{s}`: zipfian, latest or uniform")),
        }
    }
}

/// One of YCSB's core workloads: proportions of operations (out of 100) and a distribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub name: char,
    pub read: u32,
    pub update: u32,
    pub insert: u32,
    pub rmw: u32,
    pub distribution: Distribution,
}

impl Workload {
    /// `a`..`f` but `e` (its scans have no memcached equivalent).
    pub fn core(name: &str) -> Result<Workload, String> {
        let w = |name, read, update, insert, rmw, distribution| Workload { name, read, update, insert, rmw, distribution };
        let name = name.trim_start_matches("ycsb-").to_ascii_lowercase();
        match name.as_str() {
            "a" => Ok(w('a', 50, 50, 0, 0, Distribution::Zipfian)),
            "b" => Ok(w('b', 95, 5, 0, 0, Distribution::Zipfian)),
            "c" => Ok(w('c', 100, 0, 0, 0, Distribution::Zipfian)),
            "d" => Ok(w('d', 95, 0, 5, 0, Distribution::Latest)),
            "e" => Err("ycsb-e is 95 % scans, which memcached has no command for: not run".into()),
            "f" => Ok(w('f', 50, 0, 0, 50, Distribution::Zipfian)),
            _ => Err(format!("`{name}`: YCSB's core workloads are ycsb-a .. ycsb-f")),
        }
    }
}

/// The next YCSB operation, with its key number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YcsbOp {
    Read(u64),
    Update(u64),
    Insert(u64),
    /// A GET, then a SET of the same key once the GET is answered.
    ReadModifyWrite(u64),
}

/// One thread's chooser of operations and keys.
pub struct Chooser {
    workload: Workload,
    records: u64,
    /// The next key number to insert, shared by the threads; starts at `records`.
    inserts: Arc<AtomicU64>,
    zipfian: Zipfian,
}

impl Chooser {
    pub fn new(workload: Workload, records: u64, inserts: Arc<AtomicU64>) -> Chooser {
        let zipfian = match workload.distribution {
            Distribution::Zipfian => Zipfian::with_zetan(SCRAMBLED_ITEM_COUNT, SCRAMBLED_ZETAN),
            Distribution::Latest => Zipfian::new(inserts.load(Relaxed).max(1)),
            // Not drawn from.
            Distribution::Uniform => Zipfian::with_zetan(2, zeta(0, 2, ZIPFIAN_CONSTANT, 0.0)),
        };
        Chooser { workload, records: records.max(1), inserts, zipfian }
    }

    /// A key number for a read or an update.
    pub fn key(&mut self, rng: &mut Rng) -> u64 {
        match self.workload.distribution {
            Distribution::Zipfian => {
                let v = self.zipfian.next(SCRAMBLED_ITEM_COUNT, rng);
                fnvhash64(v) % self.records
            }
            Distribution::Latest => {
                let last = self.inserts.load(Relaxed).max(1) - 1;
                last - self.zipfian.next(last + 1, rng)
            }
            Distribution::Uniform => rng.below(self.records),
        }
    }

    pub fn next(&mut self, rng: &mut Rng) -> YcsbOp {
        let w = &self.workload;
        let (read, update, insert) = (w.read, w.read + w.update, w.read + w.update + w.insert);
        let total = insert + w.rmw;
        match rng.below(total as u64) as u32 {
            p if p < read => YcsbOp::Read(self.key(rng)),
            p if p < update => YcsbOp::Update(self.key(rng)),
            p if p < insert => YcsbOp::Insert(self.inserts.fetch_add(1, Relaxed)),
            _ => YcsbOp::ReadModifyWrite(self.key(rng)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chooser(w: &str, records: u64) -> Chooser {
        Chooser::new(Workload::core(w).unwrap(), records, Arc::new(AtomicU64::new(records)))
    }

    #[test]
    fn fnv_matches_the_published_vectors() {
        // FNV-1a 64 test vectors (Fowler, Noll, Vo).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // fnvhash64 is FNV-1a of the 8 little-endian bytes, made non-negative.
        for v in [0u64, 1, 42, u64::MAX] {
            assert_eq!(fnvhash64(v), (fnv1a64(&v.to_le_bytes()) as i64).unsigned_abs());
            assert!(fnvhash64(v) <= 1 << 63);
        }
    }

    #[test]
    fn keys_are_user_and_the_hash() {
        let mut buf = [0u8; 32];
        let n = format_key(7, &mut buf);
        assert_eq!(&buf[..n], format!("user{}", fnvhash64(7)).as_bytes());
        assert!(n <= KEY_LEN_MAX);
    }

    #[test]
    fn keys_are_the_ones_ycsb_loads() {
        // The first records of a YCSB load phase (`INSERT usertable user6284781860667377211`
        // ...), as YCSB's BasicDB prints them: key numbers 0, 1, 2, 3 through its fnvhash64.
        let key = |n| {
            let mut buf = [0u8; crate::keys::KEY_CAP];
            let len = format_key(n, &mut buf);
            String::from_utf8(buf[..len].to_vec()).unwrap()
        };
        assert_eq!(key(0), "user6284781860667377211");
        assert_eq!(key(1), "user8517097267634966620");
        assert_eq!(key(2), "user1820151046732198393");
        assert_eq!(key(3), "user4052466453699787802");
        assert_eq!(fnvhash64(0), 6_284_781_860_667_377_211);
        // Math.abs of a hash with the top bit set: the two's complement, not the bit cleared.
        let negative = (0..1000u64).find(|&v| (fnv1a64(&v.to_le_bytes()) as i64) < 0).unwrap();
        assert_eq!(fnvhash64(negative), fnv1a64(&negative.to_le_bytes()).wrapping_neg());
    }

    #[test]
    fn zipfian_follows_the_power_law_at_the_head() {
        let n = 1000;
        let mut z = Zipfian::new(n);
        let mut rng = Rng::new(3);
        let draws = 400_000;
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            counts[z.next(n, &mut rng) as usize] += 1;
        }
        let zetan = zeta(0, n, ZIPFIAN_CONSTANT, 0.0);
        // Items 0 and 1 are drawn exactly with their probabilities by Gray's method.
        for (i, &count) in counts.iter().enumerate().take(2) {
            let expected = 1.0 / ((i + 1) as f64).powf(ZIPFIAN_CONSTANT) / zetan;
            let got = count as f64 / draws as f64;
            assert!((got - expected).abs() < 0.05 * expected, "item {i}: {got} vs {expected}");
        }
        // Further down, the rank-frequency curve keeps falling by about the power law.
        let band = |r: std::ops::Range<usize>| counts[r].iter().sum::<u64>() as f64;
        let ratio = band(10..20) / band(100..200);
        let expected = (11..=20).map(|i| 1.0 / (i as f64).powf(0.99)).sum::<f64>()
            / (101..=200).map(|i| 1.0 / (i as f64).powf(0.99)).sum::<f64>();
        assert!((ratio - expected).abs() < 0.2 * expected, "{ratio} vs {expected}");
        assert!(counts[1..].iter().all(|&c| c < counts[0]));
    }

    #[test]
    fn scrambled_zipfian_spreads_the_hot_keys() {
        let records = 100_000;
        let mut c = chooser("ycsb-c", records);
        let mut rng = Rng::new(5);
        let draws = 300_000;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..draws {
            let k = c.key(&mut rng);
            assert!(k < records);
            *counts.entry(k).or_insert(0u64) += 1;
        }
        // The hottest key is item 0 of the 10^10 zipfian, scattered: P = 1 / zeta(10^10).
        let hottest = fnvhash64(0) % records;
        let (&top, &top_count) = counts.iter().max_by_key(|(_, &n)| n).unwrap();
        assert_eq!(top, hottest);
        let share = top_count as f64 / draws as f64;
        let expected = 1.0 / SCRAMBLED_ZETAN;
        assert!((share - expected).abs() < 0.1 * expected, "{share} vs {expected}");
        // Skewed, yet over much of the key space: neither uniform nor a few keys.
        assert!(counts.len() > 10_000 && counts.len() < 90_000, "{} distinct keys", counts.len());
        // The hot keys are not the low key numbers.
        let low: u64 = (0..100).filter_map(|k| counts.get(&k)).sum();
        assert!((low as f64) < 0.01 * draws as f64);
    }

    #[test]
    fn latest_prefers_the_newest_insert() {
        let records = 10_000;
        let inserts = Arc::new(AtomicU64::new(records));
        let mut c = Chooser::new(Workload::core("d").unwrap(), records, inserts.clone());
        let mut rng = Rng::new(9);
        let draw = |c: &mut Chooser, rng: &mut Rng| {
            let mut counts = std::collections::HashMap::new();
            for _ in 0..100_000 {
                *counts.entry(c.key(rng)).or_insert(0u64) += 1;
            }
            counts
        };
        let counts = draw(&mut c, &mut rng);
        assert_eq!(counts.iter().max_by_key(|(_, &n)| n).map(|(&k, _)| k), Some(records - 1));
        assert!(counts.keys().all(|&k| k < records));
        // After 500 inserts the newest is the hottest, and older keys cool down.
        inserts.fetch_add(500, Relaxed);
        let counts = draw(&mut c, &mut rng);
        assert_eq!(counts.iter().max_by_key(|(_, &n)| n).map(|(&k, _)| k), Some(records + 499));
        assert!(counts.get(&(records - 1)).copied().unwrap_or(0) < counts[&(records + 499)] / 10);
    }

    #[test]
    fn uniform_is_flat() {
        let w = Workload { distribution: Distribution::Uniform, ..Workload::core("c").unwrap() };
        let mut c = Chooser::new(w, 100, Arc::new(AtomicU64::new(100)));
        let mut rng = Rng::new(11);
        let mut counts = [0u64; 100];
        for _ in 0..200_000 {
            counts[c.key(&mut rng) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (1800..2200).contains(&n)), "{counts:?}");
    }

    #[test]
    fn mixes_have_the_workloads_proportions() {
        for (w, read, update, insert, rmw) in
            [("a", 50, 50, 0, 0), ("b", 95, 5, 0, 0), ("c", 100, 0, 0, 0), ("d", 95, 0, 5, 0), ("f", 50, 0, 0, 50)]
        {
            let mut c = chooser(w, 1000);
            let mut rng = Rng::new(1);
            let mut seen = [0u32; 4];
            for _ in 0..100_000 {
                let i = match c.next(&mut rng) {
                    YcsbOp::Read(_) => 0,
                    YcsbOp::Update(_) => 1,
                    YcsbOp::Insert(_) => 2,
                    YcsbOp::ReadModifyWrite(_) => 3,
                };
                seen[i] += 1;
            }
            for (got, want) in seen.iter().zip([read, update, insert, rmw]) {
                let got = *got as f64 / 1000.0;
                assert!((got - want as f64).abs() < 0.7, "ycsb-{w}: {seen:?}");
            }
        }
        assert!(Workload::core("ycsb-e").is_err());
        assert!(Workload::core("ycsb-g").is_err());
    }

    #[test]
    fn a_seed_replays_its_sequence() {
        let run = |seed| {
            let mut c = chooser("ycsb-a", 100_000);
            let mut rng = Rng::new(seed);
            (0..1000).map(|_| c.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
