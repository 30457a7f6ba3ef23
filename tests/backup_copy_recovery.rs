//! A backup's copy of a partition across restarts: a backfill that began and did not end
//! leaves the copy incomplete (its items kept); a full resync that began leaves it incomplete
//! and empty; SNAPSHOT_END makes it whole at the primary's seqno. Read back from the log by
//! a fresh `Shard::open`, as a restart does.

use std::sync::Arc;

use caskade::cluster::{partition_of, PartitionSet};
use caskade::storage::change::ChangeKind;
use caskade::storage::disk::{Fsync, LogConfig, RealFs};
use caskade::storage::{Command, Mode, Outcome, Shard, ShardConfig};

fn open(dir: &std::path::Path) -> Shard {
    let config = ShardConfig { memory_limit: 64 << 20, max_item_size: 1 << 20, mode: Mode::Store, primary_only: None, epoch: None };
    let log = LogConfig { dir: dir.to_path_buf(), shard: 0, segment_size: 64 << 20, fsync: Fsync::Always, compress_min: 0 };
    Shard::open(config, Arc::new(RealFs), log, caskade::stats::unix_now()).expect("open the shard").0
}

fn restart(shard: Shard, dir: &std::path::Path) -> Shard {
    let mut shard = shard;
    shard.commit().expect("commit");
    shard.close().expect("close");
    open(dir)
}

fn has(shard: &mut Shard, key: &str) -> bool {
    matches!(shard.execute(&Command::Get { key: key.as_bytes() }, caskade::stats::unix_now()), Outcome::Value { .. })
}

#[test]
fn a_copy_mid_backfill_or_resync_stays_incomplete_across_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let now = caskade::stats::unix_now();
    let keys = ["alpha", "beta"];
    let mut shard = open(dir.path());
    for (i, k) in keys.iter().enumerate() {
        shard.apply(ChangeKind::Put, k.as_bytes(), b"v", 0, 0, 10 + i as u64, 1 + i as u64, now).expect("apply");
    }
    let mut set = PartitionSet::empty();
    for k in keys {
        set.insert(partition_of(k.as_bytes()));
    }
    let p = partition_of(b"alpha");

    // A backfill begins: incomplete, items kept, here and after a restart.
    shard.begin_backfill(&set).expect("begin");
    assert!(shard.is_incomplete(p));
    let mut shard = restart(shard, dir.path());
    assert!(shard.is_incomplete(p), "a backfill that did not end is not whole after a restart");
    assert!(has(&mut shard, "alpha") && has(&mut shard, "beta"), "a backfill keeps the copy's items");
    // It ends: whole at the primary's seqno.
    for q in set.iter() {
        shard.end_snapshot(q, 40).expect("end");
    }
    let mut shard = restart(shard, dir.path());
    assert!(!shard.is_incomplete(p));
    assert_eq!(shard.last_seqno(p), 40);
    assert!(has(&mut shard, "alpha"));

    // The branch the copy follows is kept across a restart.
    shard.set_branch(p, 0xfeed);
    shard.save_branches().expect("save");
    let mut shard = restart(shard, dir.path());
    assert_eq!(shard.branch(p), 0xfeed);

    // A full resync begins: incomplete and empty across a restart, following no branch.
    shard.flush_partitions(&set, true).expect("resync begins");
    shard.save_branches().expect("save");
    let mut shard = restart(shard, dir.path());
    assert!(shard.is_incomplete(p));
    assert_eq!(shard.branch(p), 0);
    assert!(!has(&mut shard, "alpha") && !has(&mut shard, "beta"));
}

#[test]
fn a_merge_after_a_full_resync_does_not_bring_back_the_old_seqno() {
    use caskade::storage::disk::merge::MergePolicy;
    // A backup held partition p up to seqno 500; a full resync (its primary lost its tail)
    // made it whole at 300. Merges drop the old records; the watermark they leave must not
    // say 500, or a restarted backup would claim changes 301..500 it never had.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let now = caskade::stats::unix_now();
    let open_small = |dir: &std::path::Path| {
        let config = ShardConfig { memory_limit: 64 << 20, max_item_size: 1 << 20, mode: Mode::Store, primary_only: None, epoch: None };
        let log = LogConfig { dir: dir.to_path_buf(), shard: 0, segment_size: 16 << 10, fsync: Fsync::Never, compress_min: 0 };
        let mut s = Shard::open(config, Arc::new(RealFs), log, now).expect("open the shard").0;
        s.set_merge_policy(MergePolicy { dead_fraction: 0.1, min_dead_bytes: 1, max_live_bytes: 1 << 20, step_bytes: 8 << 10 });
        s
    };
    let key = "resynced-key";
    let p = partition_of(key.as_bytes());
    let mut set = PartitionSet::empty();
    set.insert(p);
    let mut shard = open_small(dir.path());
    let value = vec![b'v'; 300];
    for s in 1..=500 {
        shard.apply(ChangeKind::Put, key.as_bytes(), &value, 0, 0, s, s, now).expect("apply");
    }
    shard.flush_partitions(&set, true).expect("resync begins");
    shard.apply(ChangeKind::Put, key.as_bytes(), b"snap", 0, 0, 900, 0, now).expect("snapshot item");
    shard.end_snapshot(p, 300).expect("end");
    for s in 301..=310 {
        shard.apply(ChangeKind::Put, key.as_bytes(), &value, 0, 0, 900 + s, s, now).expect("apply");
    }
    // Then enough writes of a key of another partition for the resync's records to leave the
    // active segment and be merged with the older ones.
    let other = (0..).map(|i| format!("other-{i}")).find(|k| partition_of(k.as_bytes()) != p).expect("a key");
    for s in 1..=300 {
        shard.apply(ChangeKind::Put, other.as_bytes(), &value, 0, 0, 2000 + s, s, now).expect("apply");
    }
    shard.commit().expect("commit");
    for t in 0..3000 {
        shard.maintain(now + t);
    }
    assert!(shard.counters().merges > 0, "no merge ran");
    assert_eq!(shard.last_seqno(p), 310);
    let mut shard = restart(shard, dir.path());
    assert_eq!(shard.last_seqno(p), 310, "the seqno from before the resync came back");
    assert!(has(&mut shard, key));
}
