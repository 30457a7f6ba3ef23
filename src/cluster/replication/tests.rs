//! The stream against a model backup, over a simulated link that drops, repeats and reorders
//! frames, with the primary's backlog small enough to overflow: the backup must end equal to
//! the primary, and every bad frame must be refused by `check`, never applied.

use std::collections::{BTreeMap, VecDeque};

use super::backlog::{Backlog, EntryKind};
use super::stream::{check, Copy, Snapshot, Stream};
use crate::cluster::PartitionSet;
use crate::protocol::peer::repl::{Position, RecordType, Records};

const PARTS: [u16; 3] = [1, 5, 9];

/// xorshift64*: the simulator's only source of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (partition, key) -> (value, CAS, flags: what a touch changes while the CAS stays).
type Items = BTreeMap<(u16, Vec<u8>), (Vec<u8>, u64, u32)>;

#[derive(Default)]
struct Primary {
    items: Items,
    seqnos: BTreeMap<u16, u64>,
    cas: u64,
}

impl Primary {
    fn mutate(&mut self, rng: &mut Rng, backlog: &mut Backlog) {
        let p = PARTS[rng.below(3) as usize];
        let key = format!("k{}", rng.below(6)).into_bytes();
        let roll = rng.below(100);
        if roll < 2 && rng.below(4) == 0 {
            self.items.clear();
            backlog.push(EntryKind::Flush, 0, 0, 0, 0, 0, b"", b"");
            return;
        }
        let s = self.seqnos.entry(p).or_default();
        *s += 1;
        if roll < 25 {
            self.items.remove(&(p, key.clone()));
            backlog.push(EntryKind::Delete, p, *s, 0, 0, 0, &key, b"");
        } else if let (true, Some((value, cas, flags))) = (roll < 40, self.items.get_mut(&(p, key.clone()))) {
            // A touch: a new expiry (here: flags) under the same CAS.
            *flags += 1;
            backlog.push(EntryKind::Put, p, *s, *cas, *flags, 0, &key, value);
        } else {
            self.cas += 1;
            let value = format!("v{}", self.cas).into_bytes();
            self.items.insert((p, key.clone()), (value.clone(), self.cas, 0));
            backlog.push(EntryKind::Put, p, *s, self.cas, 0, 0, &key, &value);
        }
    }

    /// The scan a full resync or backfill runs: two items of `set` per call, from slot
    /// `from` on. As in the keydir, an item keeps its slot while it lives (slot = partition *
    /// 16 + key number).
    fn scan(&self, set: &PartitionSet, above: Option<&[u64]>, from: u64, out: &mut Vec<u8>) -> (Option<u64>, u64) {
        let slot_of = |p: u16, k: &[u8]| p as u64 * 16 + (k[1] - b'0') as u64;
        let mut all: Vec<_> = self
            .items
            .iter()
            .filter(|((p, k), (_, cas, _))| set.contains(*p) && slot_of(*p, k) >= from && above.is_none_or(|a| *cas > a[*p as usize]))
            .collect();
        all.sort_by_key(|((p, k), _)| slot_of(*p, k));
        let mut n = 0;
        let mut next = None;
        for ((p, k), (v, cas, flags)) in all.iter().take(2) {
            item_record(*p, k, v, *cas, *flags).write(out);
            n += 1;
            next = Some(slot_of(*p, k) + 1);
        }
        (next.filter(|_| all.len() > 2), n)
    }
}

fn item_record<'a>(partition: u16, key: &'a [u8], value: &'a [u8], cas: u64, flags: u32) -> crate::protocol::peer::repl::Record<'a> {
    crate::protocol::peer::repl::Record { kind: RecordType::SnapshotItem, partition, seqno: 0, cas, flags, expiry: 0, key, value }
}

impl Snapshot for &Primary {
    fn items(&mut self, set: &PartitionSet, above: Option<&[u64]>, from: u64, _budget: usize, out: &mut Vec<u8>) -> (Option<u64>, u64) {
        self.scan(set, above, from, out)
    }

    fn key(&mut self, partition: u16, key: &[u8], out: &mut Vec<u8>) -> bool {
        match self.items.get(&(partition, key.to_vec())) {
            Some((v, cas, flags)) => item_record(partition, key, v, *cas, *flags).write(out),
            None => crate::protocol::peer::repl::Record { kind: RecordType::SnapshotDelete, partition, seqno: 0, cas: 0, flags: 0, expiry: 0, key, value: b"" }.write(out),
        }
        true
    }
}

/// A snapshot source for tests that need none.
struct NoScan;

impl Snapshot for NoScan {
    fn items(&mut self, _: &PartitionSet, _: Option<&[u64]>, _: u64, _: usize, _: &mut Vec<u8>) -> (Option<u64>, u64) {
        (None, 0)
    }

    fn key(&mut self, _: u16, _: &[u8], _: &mut Vec<u8>) -> bool {
        true
    }
}

#[derive(Default, Clone)]
struct Backup {
    items: Items,
    copies: BTreeMap<u16, Copy>,
}

impl Backup {
    fn copy(&self, p: u16) -> Copy {
        self.copies.get(&p).copied().unwrap_or(Copy { seqno: 0, incomplete: false })
    }

    fn positions(&self) -> Vec<Position> {
        PARTS.iter().map(|&p| Position { partition: p, seqno: self.copy(p).seqno, whole: !self.copy(p).incomplete, branch: 0 }).collect()
    }

    /// Applies a frame as the server does: record by record until one is refused.
    fn apply(&mut self, frame: &[u8]) -> Result<Vec<Position>, String> {
        for r in Records::new(frame) {
            let r = r.map_err(str::to_string)?;
            let sets = |key: &[u8]| PartitionSet::from_bytes(key).expect("a set");
            match r.kind {
                RecordType::SnapshotBegin if r.flags == crate::protocol::peer::repl::SNAPSHOT_BACKFILL => {
                    for p in sets(r.key).iter() {
                        let seqno = self.copy(p).seqno;
                        self.copies.insert(p, Copy { seqno, incomplete: true });
                    }
                    continue;
                }
                RecordType::Branch => continue,
                RecordType::Flush | RecordType::SnapshotBegin => {
                    let set = sets(r.key);
                    self.items.retain(|(p, _), _| !set.contains(*p));
                    if r.kind == RecordType::SnapshotBegin {
                        for p in set.iter() {
                            self.copies.insert(p, Copy { seqno: 0, incomplete: true });
                        }
                    }
                    continue;
                }
                _ => {}
            }
            check(&r, self.copy(r.partition)).map_err(|(_, why)| why)?;
            let key = (r.partition, r.key.to_vec());
            match r.kind {
                RecordType::Put | RecordType::SnapshotItem => {
                    self.items.insert(key, (r.value.to_vec(), r.cas, r.flags));
                }
                RecordType::Delete | RecordType::SnapshotDelete => {
                    self.items.remove(&key);
                }
                RecordType::SnapshotEnd => {
                    self.copies.insert(r.partition, Copy { seqno: r.seqno, incomplete: false });
                    continue;
                }
                _ => unreachable!(),
            }
            if matches!(r.kind, RecordType::Put | RecordType::Delete) {
                self.copies.insert(r.partition, Copy { seqno: r.seqno, incomplete: false });
            }
        }
        Ok(self.positions())
    }
}

fn set_of(parts: &[u16]) -> PartitionSet {
    let mut s = PartitionSet::empty();
    for &p in parts {
        s.insert(p);
    }
    s
}

/// One seeded run: writes, a link that fails and a backup that restarts (keeping or losing
/// what it applied), then a healed link; the backup must end equal to the primary.
fn run(seed: u64, budget: usize) -> (Stream, usize) {
    let mut rng = Rng(seed | 1);
    let mut primary = Primary::default();
    let mut backlog = Backlog::new(budget, |_| 0);
    let mut backup = Backup::default();
    let mut stream = Stream::new(1, 0, set_of(&PARTS));
    // Frames sent and not yet answered, in order.
    let mut wire: VecDeque<Vec<u8>> = VecDeque::new();
    let mut opening = false;
    for step in 0..400 {
        let healing = step >= 300;
        for _ in 0..rng.below(4) {
            if !healing {
                primary.mutate(&mut rng, &mut backlog);
            }
        }
        match stream.state() {
            super::StreamState::Down => {
                stream.open();
                opening = true;
                wire.clear();
            }
            _ if opening => {
                opening = false;
                stream.on_open(&backup.positions(), &backlog, step).expect("a good OPEN answer");
            }
            _ => {
                if let Some(f) = stream.next_frame(&backlog, &mut &primary) {
                    wire.push_back(f);
                }
                // The backup answers some of what is on the wire, in order.
                while !wire.is_empty() && rng.below(3) != 0 {
                    let f = wire.pop_front().expect("a frame");
                    match backup.apply(&f) {
                        Ok(pos) => {
                            stream.on_ack(&pos, step).expect("a good acknowledgement");
                        }
                        Err(why) => {
                            stream.down(why);
                            break;
                        }
                    }
                }
            }
        }
        if !healing && rng.below(40) == 0 {
            // The link fails: frames in flight are lost (some may have been applied).
            stream.down("cut".into());
        }
        if !healing && rng.below(150) == 0 {
            // The backup restarts from nothing (a new disk).
            backup = Backup::default();
            stream.down("backup restarted".into());
        }
    }
    // Drain: nothing new is written; the stream must converge.
    for step in 400..2000 {
        match stream.state() {
            super::StreamState::Down => {
                stream.open();
                stream.on_open(&backup.positions(), &backlog, step).expect("a good OPEN answer");
            }
            super::StreamState::Opening => unreachable!(),
            super::StreamState::Running => {
                if let Some(f) = wire.pop_front().or_else(|| stream.next_frame(&backlog, &mut &primary)) {
                    match backup.apply(&f) {
                        Ok(pos) => {
                            stream.on_ack(&pos, step).expect("ack");
                        }
                        Err(why) => stream.down(why),
                    }
                } else if !stream.resyncing() {
                    break;
                }
            }
        }
    }
    assert_eq!(backup.items, primary.items, "seed {seed}: the backup differs from the primary");
    for &p in &PARTS {
        assert_eq!(stream.lag(&backlog, p), 0, "seed {seed}: partition {p} lags");
    }
    (stream, primary.items.len())
}

#[test]
fn converges_with_a_large_backlog() {
    for seed in 1..200 {
        let (s, _) = run(seed, 1 << 20);
        assert_eq!(s.counters.resyncs, s.counters.resyncs.min(s.counters.opens + 1), "seed {seed}");
    }
}

#[test]
fn converges_when_the_backlog_overflows() {
    let (mut resyncs, mut backfills, mut noted) = (0, 0, 0);
    for seed in 1..400 {
        // Half the runs with a backlog large enough to keep notes for a while.
        let c = run(seed, if seed % 2 == 0 { 20 * 80 } else { 60 * 80 }).0.counters;
        resyncs += c.resyncs;
        backfills += c.backfills;
        noted += c.noted_keys;
    }
    assert!(resyncs > 100, "a small backlog (and a smaller note budget) must force full resyncs ({resyncs})");
    // Rarer: the note budget (a quarter of the backlog's) runs out about as fast as the
    // backlog here, where a third of the changes are deletions and touches.
    assert!(backfills > 10 && noted > 50, "and backfills where the notes still reach ({backfills}, {noted} noted keys)");
}

#[test]
fn a_backfill_sends_the_changed_and_noted_keys_only() {
    // Partition 1 at seqno 0 on both sides; 100 items written, then the backup (at 100)
    // falls behind a backlog that keeps only the last few changes.
    let mut primary = Primary::default();
    let mut backlog = Backlog::new(8 * 80, |_| 0);
    let put = |primary: &mut Primary, backlog: &mut Backlog, s: u64, k: &str| {
        primary.cas += 1;
        let v = format!("v{}", primary.cas).into_bytes();
        primary.items.insert((1, k.as_bytes().to_vec()), (v.clone(), primary.cas, 0));
        backlog.push(EntryKind::Put, 1, s, primary.cas, 0, 0, k.as_bytes(), &v);
    };
    for s in 1..=100 {
        put(&mut primary, &mut backlog, s, &format!("k{}", if s <= 10 { s % 10 } else { 5 }));
    }
    // Then: k1 deleted, k2 touched, k3 written, and enough writes of k4 to push them all out
    // of the backlog.
    primary.items.remove(&(1, b"k1".to_vec()));
    backlog.push(EntryKind::Delete, 1, 101, 0, 0, 0, b"k1", b"");
    let (v, cas, _) = primary.items[&(1, b"k2".to_vec())].clone();
    primary.items.insert((1, b"k2".to_vec()), (v.clone(), cas, 7));
    backlog.push(EntryKind::Put, 1, 102, cas, 7, 0, b"k2", &v);
    put(&mut primary, &mut backlog, 103, "k3");
    for s in 104..=150 {
        put(&mut primary, &mut backlog, s, "k4");
    }
    assert!(!backlog.covers(1, 100), "the backlog no longer reaches the backup");
    let mut backup = Backup::default();
    for ((p, k), v) in &primary.items {
        if k != b"k3" && k != b"k4" {
            backup.items.insert((*p, k.clone()), v.clone());
        }
    }
    backup.items.insert((1, b"k1".to_vec()), (b"old".to_vec(), 1, 0));
    let (v2, c2, _) = backup.items[&(1, b"k2".to_vec())].clone();
    backup.items.insert((1, b"k2".to_vec()), (v2, c2, 0));
    backup.copies.insert(1, Copy { seqno: 100, incomplete: false });

    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 100, whole: true, branch: 0 }], &backlog, 0).unwrap();
    assert_eq!(stream.phase(), "backfilling");
    let mut sent = Vec::new();
    while let Some(f) = stream.next_frame(&backlog, &mut &primary) {
        sent.extend(Records::new(&f).map(|r| r.unwrap()).map(|r| (r.kind, r.key.to_vec())).collect::<Vec<_>>());
        let pos: Vec<Position> = backup.apply(&f).expect("applied").into_iter().filter(|p| p.partition == 1).collect();
        stream.on_ack(&pos, 1).unwrap();
    }
    assert_eq!(backup.items, primary.items);
    assert_eq!((stream.counters.backfills, stream.counters.resyncs), (1, 0));
    assert_eq!(stream.counters.noted_keys, 2, "k1's deletion and k2's touch");
    let items: Vec<&[u8]> = sent.iter().filter(|(k, _)| *k == RecordType::SnapshotItem).map(|(_, key)| &key[..]).collect();
    assert!(items.len() <= 4, "only the keys that changed after seqno 100 (and the marks' slack): {items:?}");
    assert!(sent.contains(&(RecordType::SnapshotDelete, b"k1".to_vec())));
    assert_eq!(backup.copy(1), Copy { seqno: 150, incomplete: false });
    assert_eq!(stream.phase(), "live");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn catch_up_from_any_point(seed in 1u64.., budget in 200usize..20_000) {
        run(seed, budget);
    }
}

#[test]
fn partial_catch_up_sends_only_what_the_backup_lacks() {
    let mut backlog = Backlog::new(1 << 20, |_| 0);
    for s in 1..=10 {
        backlog.push(EntryKind::Put, 1, s, s, 0, 0, b"k", b"v");
    }
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 7, whole: true, branch: 0 }], &backlog, 0).unwrap();
    let mut no_scan = NoScan;
    let f = stream.next_frame(&backlog, &mut no_scan).unwrap();
    let seqnos: Vec<u64> = Records::new(&f).map(|r| r.unwrap().seqno).collect();
    assert_eq!(seqnos, vec![8, 9, 10]);
    assert_eq!(stream.counters.partial_catchups, 1);
    assert!(stream.next_frame(&backlog, &mut no_scan).is_none());
}

#[test]
fn an_acknowledgement_tells_when_its_oldest_change_was_committed() {
    let mut backlog = Backlog::new(1 << 20, |_| 0);
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 0, whole: true, branch: 0 }], &backlog, 0).unwrap();
    let mut no_scan = NoScan;
    backlog.set_clock(1_000);
    backlog.push(EntryKind::Put, 1, 1, 1, 0, 0, b"k", b"v");
    backlog.set_clock(2_000);
    backlog.push(EntryKind::Put, 1, 2, 2, 0, 0, b"k", b"v");
    stream.next_frame(&backlog, &mut no_scan).unwrap();
    backlog.set_clock(3_000);
    backlog.push(EntryKind::Put, 1, 3, 3, 0, 0, b"k", b"v");
    stream.next_frame(&backlog, &mut no_scan).unwrap();
    let ack = |s: u64| [Position { partition: 1, seqno: s, whole: true, branch: 0 }];
    assert_eq!(stream.on_ack(&ack(2), 5), Ok(Some(1_000)), "the frame's first change");
    assert_eq!(stream.on_ack(&ack(3), 6), Ok(Some(3_000)));
}

#[test]
fn a_backup_ahead_of_the_primary_acknowledges_nothing_until_resynced() {
    // The primary restarted at seqno 5 of partition 1 (its tail lost); the backup has 9.
    let backlog = Backlog::new(1 << 20, |p| if p == 1 { 5 } else { 0 });
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 9, whole: true, branch: 0 }], &backlog, 0).unwrap();
    assert_eq!(stream.acked(1), 0, "seqnos 6..9 of the backup are not this primary's");
    assert!(!stream.is_live(1), "resynced");
}

#[test]
fn only_changes_answers_count_for_durable_writes() {
    // The backup says it holds seqno 5 (uncommitted, maybe): that is where the stream goes
    // on from, and no durable write may count on it.
    let mut backlog = Backlog::new(1 << 20, |_| 0);
    for s in 1..=5 {
        backlog.push(EntryKind::Put, 1, s, s, 0, 0, b"k", b"v");
    }
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 5, whole: true, branch: 0 }], &backlog, 0).unwrap();
    assert_eq!((stream.acked(1), stream.confirmed(1)), (5, 0));
    let mut no_scan = NoScan;
    backlog.push(EntryKind::Put, 1, 6, 6, 0, 0, b"k", b"v");
    stream.next_frame(&backlog, &mut no_scan).unwrap();
    stream.on_ack(&[Position { partition: 1, seqno: 6, whole: true, branch: 0 }], 1).unwrap();
    assert_eq!(stream.confirmed(1), 6, "an answer after the backup's commit covers all it holds");
    // Reopened: nothing confirmed until the next answer.
    stream.down("cut".into());
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 6, whole: true, branch: 0 }], &backlog, 2).unwrap();
    assert_eq!(stream.confirmed(1), 0);
}

#[test]
fn reordered_duplicated_and_dropped_frames_are_refused() {
    let mut backlog = Backlog::new(1 << 20, |_| 0);
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 0, whole: true, branch: 0 }], &backlog, 0).unwrap();
    let mut no_scan = NoScan;
    let mut frames = Vec::new();
    for s in 1..=3 {
        backlog.push(EntryKind::Put, 1, s, s, 0, 0, b"k", b"v");
        frames.push(stream.next_frame(&backlog, &mut no_scan).unwrap());
    }
    let fresh = || {
        let mut b = Backup::default();
        b.copies.insert(1, Copy { seqno: 0, incomplete: false });
        b
    };
    let mut b = fresh();
    assert!(b.apply(&frames[1]).is_err(), "reordered: 2 before 1");
    let mut b = fresh();
    b.apply(&frames[0]).unwrap();
    assert!(b.apply(&frames[0]).is_err(), "duplicated");
    assert!(b.apply(&frames[2]).is_err(), "dropped: 3 after 1");
    b.apply(&frames[1]).unwrap();
    b.apply(&frames[2]).unwrap();
    assert_eq!(b.copy(1).seqno, 3);
    // A snapshot item outside a resync is refused too.
    let mut item = Vec::new();
    crate::protocol::peer::repl::Record { kind: RecordType::SnapshotItem, partition: 1, seqno: 0, cas: 1, flags: 0, expiry: 0, key: b"x", value: b"" }
        .write(&mut item);
    assert!(b.apply(&item).is_err());
}

#[test]
fn notes_purged_during_a_backfill_turn_it_into_a_full_resync() {
    let mut primary = Primary::default();
    let mut backlog = Backlog::new(16 << 20, |_| 0);
    for s in 1..=10 {
        primary.cas += 1;
        let k = format!("k{s}");
        primary.items.insert((1, k.clone().into_bytes()), (b"v".to_vec(), primary.cas, 0));
        backlog.push(EntryKind::Put, 1, s, primary.cas, 0, 0, k.as_bytes(), b"v");
    }
    let mut backup = Backup { items: primary.items.clone(), ..Default::default() };
    backup.copies.insert(1, Copy { seqno: 10, incomplete: false });
    // More notes of another partition than one frame looks at, then k1's deletion.
    for s in 1..=70_000 {
        backlog.push(EntryKind::Delete, 2, s, 0, 0, 0, b"other", b"");
    }
    primary.items.remove(&(1, b"k1".to_vec()));
    backlog.push(EntryKind::Delete, 1, 11, 0, 0, 0, b"k1", b"");
    // A large change pushes everything else out of the backlog (not out of the notes).
    primary.cas += 1;
    let big = vec![b'x'; 16 << 20];
    backlog.push(EntryKind::Put, 3, 1, primary.cas, 0, 0, b"big", &big);
    assert!(!backlog.covers(1, 10) && backlog.backfill.since(1, 10, 11).is_some());

    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 10, whole: true, branch: 0 }], &backlog, 0).unwrap();
    let mut step = 0;
    while let Some(f) = stream.next_frame(&backlog, &mut &primary) {
        if step == 0 {
            // The notes go before the backfill has looked at k1's.
            backlog.set_clock(u64::MAX / 2);
            assert!(backlog.backfill.since(1, 10, 11).is_none());
        }
        step += 1;
        let pos: Vec<Position> = backup.apply(&f).expect("applied").into_iter().filter(|p| p.partition == 1).collect();
        stream.on_ack(&pos, 1).unwrap();
    }
    assert_eq!((stream.counters.backfills, stream.counters.resyncs), (1, 1), "the backfill gave way to a full resync");
    assert!(!backup.items.contains_key(&(1, b"k1".to_vec())), "k1's deletion reached the backup");
}

#[test]
fn answers_to_frames_sent_before_a_refusal_are_dropped_after_it() {
    let mut backlog = Backlog::new(1 << 20, |_| 0);
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    assert!(!stream.stale_answer(), "the OPEN answer is this opening's");
    stream.on_open(&[Position { partition: 1, seqno: 0, whole: true, branch: 0 }], &backlog, 0).unwrap();
    for s in 1..=3 {
        backlog.push(EntryKind::Put, 1, s, s, 0, 0, b"k", b"v");
    }
    stream.next_frame(&backlog, &mut NoScan).unwrap();
    for s in 4..=6 {
        backlog.push(EntryKind::Put, 1, s, s, 0, 0, b"k", b"v");
    }
    stream.next_frame(&backlog, &mut NoScan).unwrap();
    // The first frame is refused; the second's answer is still on its way.
    assert!(!stream.stale_answer());
    stream.down("refused".into());
    stream.open();
    // The second frame's answer (the backup applied it, say: seqno 6) comes before the new
    // OPEN's: dropped unread, so it cannot confirm seqno 6 for this opening.
    assert!(stream.stale_answer(), "an answer to a frame of the last opening");
    assert!(!stream.stale_answer(), "the new OPEN's answer");
    stream.on_open(&[Position { partition: 1, seqno: 3, whole: true, branch: 0 }], &backlog, 1).unwrap();
    assert_eq!(stream.confirmed(1), 0);
    // A lost link takes its answers with it: nothing more to drop.
    stream.next_frame(&backlog, &mut NoScan).unwrap();
    stream.down("the link is down".into());
    stream.link_lost();
    stream.open();
    assert!(!stream.stale_answer());
}

#[test]
fn a_copy_from_a_cut_branch_is_resynced_and_one_within_it_is_rebranched() {
    use super::history::History;
    // Branch 7 reached seqno 120 of partition 1 on the old primary process; it restarted
    // having kept 100, opened branch 9, and has written 101..130 since.
    let mut backlog = Backlog::new(1 << 20, |p| if p == 1 { 100 } else { 0 });
    let mut history = History::single(7, &vec![0; crate::cluster::PARTITIONS as usize]);
    history.open(9, backlog.lasts());
    backlog.history = history;
    for s in 101..=130 {
        backlog.push(EntryKind::Put, 1, s, 1000 + s, 0, 0, b"k", b"v");
    }
    // A backup at 120 under branch 7: ahead of what branch 7 kept, though behind the primary.
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 120, whole: true, branch: 7 }], &backlog, 0).unwrap();
    assert!(!stream.is_live(1) && stream.phase() == "resyncing", "not a prefix: resynced");
    assert_eq!(stream.acked(1), 0);
    // A backup at 100 under branch 7: a prefix; told branch 9 before the changes 101..130.
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 100, whole: true, branch: 7 }], &backlog, 0).unwrap();
    assert!(stream.is_live(1));
    let f = stream.next_frame(&backlog, &mut NoScan).unwrap();
    let records: Vec<_> = Records::new(&f).map(|r| r.unwrap()).collect();
    assert_eq!((records[0].kind, records[0].cas), (RecordType::Branch, 9));
    assert_eq!(records[1].seqno, 101);
    assert_eq!(records.last().unwrap().seqno, 130);
    // Already on branch 9: no Branch record.
    let mut stream = Stream::new(1, 0, set_of(&[1]));
    stream.open();
    stream.on_open(&[Position { partition: 1, seqno: 125, whole: true, branch: 9 }], &backlog, 0).unwrap();
    let f = stream.next_frame(&backlog, &mut NoScan).unwrap();
    assert_eq!(Records::new(&f).next().unwrap().unwrap().seqno, 126);
}
