//! Merge compaction at the shard level: dead records go, live ones move, values stay
//! readable from disk, deletes do not come back, and a restart finds the same data.

use std::sync::Arc;

use caskade::storage::disk::merge::MergePolicy;
use caskade::storage::disk::{Fsync, LogConfig, RealFs, SharedFs};
use caskade::storage::{Command, Mode, Outcome, Shard, ShardConfig, StoreMode};

const NOW: u32 = 1_800_000_000;

fn open(dir: &std::path::Path, memory: usize) -> Shard {
    let fs: SharedFs = Arc::new(RealFs);
    let config = ShardConfig { memory_limit: memory, max_item_size: 1 << 20, mode: Mode::Store, primary_only: None, epoch: None };
    let log = LogConfig { dir: dir.to_path_buf(), shard: 0, segment_size: 64 << 10, fsync: Fsync::Never, compress_min: 0 };
    let (mut shard, _) = Shard::open(config, fs, log, NOW).expect("open");
    shard.set_merge_policy(MergePolicy { dead_fraction: 0.3, min_dead_bytes: 1, max_live_bytes: 1 << 20, step_bytes: 8 << 10 });
    shard
}

fn set(s: &mut Shard, key: &str, value: &str) {
    let cmd = Command::Store { mode: StoreMode::Set, key, value, flags: 1, exptime: 0, cas: 0 };
    assert!(matches!(s.execute(&cmd, NOW), Outcome::Done { .. }));
}

fn get(s: &mut Shard, key: &str) -> Option<Vec<u8>> {
    match s.execute(&Command::Get { key }, NOW) {
        Outcome::Value { value, .. } => Some(value.to_vec()),
        Outcome::NotFound => None,
        other => panic!("get {key}: {other:?}"),
    }
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log")).count()
}

#[test]
fn merges_reclaim_dead_bytes_and_keep_every_live_value() {
    let dir = tempfile::tempdir().unwrap();
    // Little memory: most values are served from disk.
    let mut s = open(dir.path(), 64 << 10);
    let value = |k: usize, round: usize| format!("{k:05}-{round}-{}", "v".repeat(200));
    for round in 0..5 {
        for k in 0..400 {
            set(&mut s, &format!("key:{k}"), &value(k, round));
            s.commit().unwrap();
        }
    }
    for k in (0..400).step_by(3) {
        assert!(matches!(s.execute(&Command::Delete { key: format!("key:{k}").as_str(), cas: 0 }, NOW), Outcome::Done { .. }));
    }
    s.commit().unwrap();
    let before = segments(dir.path());
    for t in 0..2000 {
        s.maintain(NOW + t);
    }
    let after = segments(dir.path());
    assert!(s.counters().merges > 0, "no merge ran");
    assert!(after < before, "segments {before} -> {after}");
    for k in 0..400 {
        let want = (k % 3 != 0).then(|| value(k, 4).into_bytes());
        assert_eq!(get(&mut s, &format!("key:{k}")), want, "key:{k} after merge");
    }
    drop(s);
    // A restart without a clean close (hints of merged segments, scans of the rest).
    let mut s = open(dir.path(), 64 << 10);
    for k in 0..400 {
        let want = (k % 3 != 0).then(|| value(k, 4).into_bytes());
        assert_eq!(get(&mut s, &format!("key:{k}")), want, "key:{k} after restart");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().path().to_string_lossy().ends_with(".tmp")));
}

#[test]
fn a_merge_leftover_is_cleaned_up_and_replaced_segments_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), 1 << 20);
    for round in 0..4 {
        for k in 0..300 {
            set(&mut s, &format!("k{k}"), &format!("{round}{}", "x".repeat(300)));
        }
        s.commit().unwrap();
    }
    s.close().unwrap();
    drop(s);
    // Pretend a merge of the first two segments got as far as its rename but no further:
    // copy segment 2 as a generation-1 output standing for 1..=2.
    let shard_dir = dir.path();
    let seg2 = std::fs::read(shard_dir.join("seg-00000002-000.log")).unwrap();
    let header = caskade::storage::disk::segment::SegmentHeader {
        name: caskade::storage::disk::segment::SegmentName { id: 2, generation: 1 },
        first: 1,
        shard: 0,
    };
    let mut merged = header.encode().to_vec();
    merged.extend_from_slice(&seg2[32..]);
    std::fs::write(shard_dir.join("seg-00000002-001.log"), merged).unwrap();
    std::fs::write(shard_dir.join("seg-00000009-000.log.tmp"), b"half a merge").unwrap();
    let mut s = open(dir.path(), 1 << 20);
    assert!(!shard_dir.join("seg-00000001-000.log").exists(), "replaced by the merge output");
    assert!(!shard_dir.join("seg-00000002-000.log").exists(), "replaced by the merge output");
    assert!(!shard_dir.join("seg-00000009-000.log.tmp").exists());
    for k in 0..300 {
        assert_eq!(get(&mut s, &format!("k{k}")).unwrap()[0], b'3');
    }
}

#[test]
fn a_merge_stopped_after_any_step_loses_nothing_and_resurrects_nothing() {
    let value = |k: usize| format!("{k:05}-{}", "w".repeat(150));
    let build = |dir: &std::path::Path| {
        let mut s = open(dir, 32 << 10);
        for round in 0..3 {
            for k in 0..300 {
                set(&mut s, &format!("key:{k}"), &format!("{round}-{}", value(k)));
            }
            s.commit().unwrap();
        }
        for k in (0..300).step_by(4) {
            s.execute(&Command::Delete { key: format!("key:{k}").as_str(), cas: 0 }, NOW);
        }
        s.commit().unwrap();
        s
    };
    let check = |s: &mut Shard, when: &str| {
        for k in 0..300 {
            let want = (k % 4 != 0).then(|| format!("2-{}", value(k)).into_bytes());
            assert_eq!(get(s, &format!("key:{k}")), want, "key:{k} {when}");
        }
    };
    let mut steps_seen = 0;
    for stop_after in (1..400).step_by(7) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = build(dir.path());
        for t in 0..stop_after {
            s.maintain(NOW + t as u32);
        }
        steps_seen = steps_seen.max(s.counters().merges);
        // Stopped like a crash: no close, no final hint.
        drop(s);
        let mut s = open(dir.path(), 32 << 10);
        check(&mut s, &format!("after stopping at step {stop_after}"));
    }
    assert!(steps_seen > 0, "the merges never finished within the steps tried");
}

/// As the server runs merges: the output is synced and renamed on a thread of its own, and
/// swapped in by a later turn; writes made meanwhile win over the copies.
#[test]
fn a_merge_finished_off_the_event_loop_keeps_every_live_value_and_the_writes_made_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), 64 << 10);
    s.finish_merges_off_loop();
    let value = |k: usize, round: usize| format!("{k:05}-{round}-{}", "v".repeat(200));
    for round in 0..4 {
        for k in 0..400 {
            set(&mut s, &format!("key:{k}"), &value(k, round));
            s.commit().unwrap();
        }
    }
    let before = segments(dir.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut t = 0;
    let mut during = 0;
    while s.counters().merges < 1 {
        assert!(std::time::Instant::now() < deadline, "merges did not finish");
        s.maintain(NOW + t);
        t += 1;
        // Writes between steps, and while an output is being synced off the loop.
        if s.is_busy() {
            let k = during % 400;
            set(&mut s, &format!("key:{k}"), &value(k, 10 + during));
            s.commit().unwrap();
            during += 1;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    while s.is_busy() {
        s.maintain(NOW + t);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(during > 0);
    let want = |k: usize| {
        let last_during = (0..during).filter(|d| d % 400 == k).max();
        match last_during {
            Some(d) => value(k, 10 + d),
            None => value(k, 3),
        }
        .into_bytes()
    };
    for k in 0..400 {
        assert_eq!(get(&mut s, &format!("key:{k}")), Some(want(k)), "key:{k} after merges");
    }
    assert!(segments(dir.path()) < before + 2, "segments {before} -> {}", segments(dir.path()));
    s.close().unwrap();
    drop(s);
    let mut s = open(dir.path(), 64 << 10);
    for k in 0..400 {
        assert_eq!(get(&mut s, &format!("key:{k}")), Some(want(k)), "key:{k} after a restart");
    }
}

/// Outputs whose only dead bytes are their watermark records are not merged again: with
/// no minimum of dead bytes, a shard whose keys were nearly all deleted settles.
#[test]
fn merges_settle_when_only_watermarks_are_left_dead() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), 1 << 20);
    s.set_merge_policy(MergePolicy { dead_fraction: 0.1, min_dead_bytes: 0, max_live_bytes: 1 << 20, step_bytes: 8 << 10 });
    for k in 0..800 {
        set(&mut s, &format!("key:{k}"), &"v".repeat(200));
        s.commit().unwrap();
    }
    for k in 1..800 {
        assert!(matches!(s.execute(&Command::Delete { key: format!("key:{k}").as_str(), cas: 0 }, NOW), Outcome::Done { .. }));
        s.commit().unwrap();
    }
    // Fill past a roll so the deletes' segment closes too.
    for k in 0..400 {
        set(&mut s, "filler", &format!("{k}{}", "f".repeat(200)));
        s.commit().unwrap();
    }
    let mut t = 0;
    for _ in 0..3000 {
        s.maintain(NOW + t);
        t += 1;
    }
    let settled = s.counters().merges;
    assert!(settled > 0, "no merge ran");
    for _ in 0..3000 {
        s.maintain(NOW + t);
        t += 1;
    }
    assert_eq!(s.counters().merges, settled, "merges go on with nothing but watermarks dead");
    assert_eq!(get(&mut s, "key:0"), Some("v".repeat(200).into_bytes()));
}
