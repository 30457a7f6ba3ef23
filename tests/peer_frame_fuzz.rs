//! The `peer_frame` fuzz target's checks (`tools/fuzz/fuzz_targets/peer_frame_check.rs`) run
//! by plain `cargo test`: over the seeds in `tools/fuzz/seeds/peer_frame/`, then over
//! 100,000 inputs made from them (mutated, spliced, cut) and at random, from a fixed seed,
//! so that a failure repeats. libFuzzer goes further (`tools/fuzz/README.md`); this keeps
//! the properties exercised in CI, where there is no nightly toolchain.

#[path = "../tools/fuzz/fuzz_targets/peer_frame_check.rs"]
mod peer_frame_check;

use peer_frame_check::{check, Parsed};

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/fuzz/seeds/peer_frame");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 30, "{} seeds in {dir}", seeds.len());
    seeds
}

/// xorshift64*: a fixed, dependency-free sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes a decoder's edges like: lengths, magics, peer opcodes, statuses.
const INTERESTING: [u8; 14] = [0x00, 0x01, 0x03, 0x04, 0x07, 0x08, 0x0C, 0x10, 0x7F, 0x80, 0x81, 0xC0, 0xC7, 0xFF];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[(String, Vec<u8>)]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => input[rng.below(len)] ^= 1 << rng.below(8),
            1 if len > 0 => input[rng.below(len)] = INTERESTING[rng.below(INTERESTING.len())],
            2 if len > 0 => input[rng.below(len)] = rng.next() as u8,
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 1 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(8));
                input.drain(at..at + n);
            }
            5 => input.truncate(rng.below(len + 1)),
            6 => {
                // Another seed's frames behind these (without its selector byte).
                let other = &seeds[rng.below(seeds.len())].1;
                input.extend_from_slice(&other[1.min(other.len())..]);
            }
            7 if len > 0 => input[0] = rng.next() as u8,
            _ => {}
        }
    }
}

#[test]
fn seeds_reach_every_parser() {
    let mut total = Parsed::default();
    for (name, data) in seeds() {
        let parsed = std::panic::catch_unwind(|| check(&data)).unwrap_or_else(|_| panic!("seed {name}"));
        total += parsed;
    }
    assert!(total.hello >= 2 && total.hello_ok >= 2 && total.auth >= 2, "{total:?}");
    assert!(total.requests >= 15 && total.outcomes >= 15, "{total:?}");
}

#[test]
fn random_and_mutated_inputs() {
    let seeds = seeds();
    let mut rng = Rng(0x5EED_CA5C_ADE0_0001);
    let mut total = Parsed::default();
    for i in 0..100_000 {
        let input = if i % 10 == 0 {
            // Plain random bytes, often starting like a frame.
            let n = rng.below(96);
            let mut v: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            if v.len() > 2 && rng.below(2) == 0 {
                v[1] = 0x80 + (rng.below(2) as u8);
                v[2] = 0xC0 + rng.below(0x30) as u8;
            }
            v
        } else {
            let mut v = seeds[rng.below(seeds.len())].1.clone();
            mutate(&mut rng, &mut v, &seeds);
            v
        };
        match std::panic::catch_unwind(|| check(&input)) {
            Ok(parsed) => total += parsed,
            Err(_) => panic!("input {i} fails: {input:02x?}"),
        }
    }
    // The mutations keep most frames whole: every parser keeps being exercised.
    assert!(total.frames > 50_000 && total.requests > 10_000 && total.outcomes > 10_000, "{total:?}");
    assert!(total.hello > 1_000 && total.hello_ok > 1_000 && total.auth > 1_000, "{total:?}");
}
