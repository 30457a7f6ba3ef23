//! What must hold across a restart (issue 3): CAS values keep rising (and a client's CAS
//! still works), TTLs and a FLUSH with a delay keep their times, and a second server on the
//! same data directory refuses to start.
//!
//! The shard-level tests move the clock themselves; the wire-level ones use the real clock,
//! a restart taking a fraction of a second, and wait at most a few seconds for times to pass.

mod common;
mod durable;

use std::process::Command as Process;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use caskade::protocol::binary::Status;
use caskade::cluster::partition_of;
use caskade::storage::disk::merge::MergePolicy;
use caskade::storage::{Command, Outcome, Shard, StoreMode};
use common::{Server, ServerKind};
use durable::client::{set_request, Client};
use durable::{get, set, Setup, NOW};

fn store(key: &str, value: &[u8], exptime: u32, cas: u64) -> Command<Vec<u8>> {
    Command::Store { mode: StoreMode::Set, key: key.as_bytes().to_vec(), value: value.to_vec(), flags: 0, exptime, cas }
}

fn exec(shard: &mut Shard, cmd: &Command<Vec<u8>>, now: u32) -> durable::Owned {
    durable::own(shard.execute(cmd, now))
}

fn cas_of(o: durable::Owned) -> u64 {
    match o {
        Outcome::Done { cas } | Outcome::Counter { cas, .. } | Outcome::Value { cas, .. } => cas,
        other => panic!("no CAS in {other:?}"),
    }
}

/// Closes (or, for a crash, drops after a commit) and opens again at `now`.
fn restart(shard: Shard, setup: &Setup, dir: &std::path::Path, clean: bool, now: u32) -> Shard {
    let mut shard = shard;
    if clean {
        shard.close().unwrap();
    } else {
        shard.commit().unwrap();
    }
    drop(shard);
    setup.open_real(dir, now).0
}

#[test]
fn cas_values_keep_rising_across_restarts() {
    for clean in [true, false] {
        let dir = durable::scratch_dir();
        let setup = Setup::default();
        let (mut shard, _) = setup.open_real(dir.path(), NOW);
        let mut highest = 0;
        for i in 0..20 {
            let cas = cas_of(set(&mut shard, &format!("k{i}"), b"v", NOW));
            assert!(cas > highest);
            highest = cas;
        }
        // A CAS the client holds still works after the restart, and a new one is higher.
        let held = cas_of(exec(&mut shard, &store("held", b"1", 0, 0), NOW));
        highest = highest.max(held);
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW);
        assert_eq!(cas_of(exec(&mut shard, &Command::Get { key: b"held".to_vec() }, NOW)), held, "clean={clean}");
        let next = cas_of(exec(&mut shard, &store("held", b"2", 0, held), NOW));
        assert!(next > highest, "clean={clean}: CAS {next} after a restart, {highest} before");
        highest = next;

        // The item with the highest CAS deleted, then everything flushed: still higher.
        let top = cas_of(set(&mut shard, "top", b"v", NOW));
        assert!(top > highest);
        assert_eq!(exec(&mut shard, &Command::Delete { key: b"top".to_vec(), cas: 0 }, NOW), Outcome::Done { cas: 0 });
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW);
        let after_delete = cas_of(set(&mut shard, "x", b"v", NOW));
        assert!(after_delete > top, "clean={clean}: CAS {after_delete} after the top item was deleted, {top} before");
        assert_eq!(exec(&mut shard, &Command::Flush { delay: 0 }, NOW), Outcome::Done { cas: 0 });
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW);
        let after_flush = cas_of(set(&mut shard, "y", b"v", NOW));
        assert!(after_flush > after_delete, "clean={clean}: CAS {after_flush} after a flush, {after_delete} before");
    }
}

#[test]
fn cas_values_keep_rising_after_merges_drop_the_records_that_held_them() {
    let dir = durable::scratch_dir();
    let setup = Setup { segment_size: 4096, compress_min: 0, ..Setup::default() };
    let (mut shard, _) = setup.open_real(dir.path(), NOW);
    let mut highest = 0;
    for i in 0..100 {
        highest = cas_of(set(&mut shard, &format!("k{i:03}"), &[b'v'; 100], NOW));
        shard.commit().unwrap();
    }
    // Every item deleted: the puts that hold the CAS values are dead; tombstones fill
    // segments until the old ones are closed.
    for i in 0..100 {
        assert_eq!(exec(&mut shard, &Command::Delete { key: format!("k{i:03}").into_bytes(), cas: 0 }, NOW), Outcome::Done { cas: 0 });
        shard.commit().unwrap();
    }
    shard.set_merge_policy(MergePolicy { dead_fraction: 0.1, min_dead_bytes: 1, max_live_bytes: 1 << 20, step_bytes: 1 << 20 });
    for t in 0..50 {
        shard.maintain(NOW + t);
    }
    assert!(shard.counters().merges > 0, "no merge ran");
    let mut shard = restart(shard, &setup, dir.path(), true, NOW + 50);
    // A client read k000 with CAS 1 before it was deleted; the key is stored again: the
    // client's CAS must not match the new item.
    let again = cas_of(set(&mut shard, "k000", b"again", NOW + 50));
    assert!(again > highest, "CAS {again} after merges and a restart; {highest} was given before");
}

/// Every partition's seqno goes on from the last one given, gap-free, after a merge dropped
/// the records that held the last ones (read from the merge output's hint, or scanned).
#[test]
fn partition_seqnos_keep_rising_after_merges_drop_the_records_that_held_them() {
    for clean in [true, false] {
        let dir = durable::scratch_dir();
        let setup = Setup { segment_size: 4096, compress_min: 0, ..Setup::default() };
        let (mut shard, _) = setup.open_real(dir.path(), NOW);
        let keys: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
        for k in &keys {
            set(&mut shard, k, &[b'v'; 100], NOW);
            shard.commit().unwrap();
        }
        for k in &keys {
            assert_eq!(exec(&mut shard, &Command::Delete { key: k.clone().into_bytes(), cas: 0 }, NOW), Outcome::Done { cas: 0 });
            shard.commit().unwrap();
        }
        let last: Vec<(u16, u64)> = keys.iter().map(|k| partition_of(k.as_bytes())).map(|p| (p, shard.last_seqno(p))).collect();
        assert!(last.iter().all(|&(_, s)| s >= 2), "a put and a delete per key");
        shard.set_merge_policy(MergePolicy { dead_fraction: 0.1, min_dead_bytes: 1, max_live_bytes: 1 << 20, step_bytes: 1 << 20 });
        for t in 0..50 {
            shard.maintain(NOW + t);
        }
        assert!(shard.counters().merges > 0, "no merge ran");
        if !clean {
            shard.commit().unwrap();
            drop(shard);
            durable::remove_hints(dir.path());
            shard = setup.open_real(dir.path(), NOW + 50).0;
        }
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW + 50);
        for &(p, s) in &last {
            assert_eq!(shard.last_seqno(p), s, "clean={clean}: partition {p} after merges and a restart");
        }
        set(&mut shard, &keys[0], b"again", NOW + 50);
        assert_eq!(shard.last_seqno(last[0].0), last[0].1 + 1, "clean={clean}: the next seqno follows the last one given");
    }
}

#[test]
fn ttls_hold_across_restarts() {
    for clean in [true, false] {
        let dir = durable::scratch_dir();
        let setup = Setup::default();
        let (mut shard, _) = setup.open_real(dir.path(), NOW);
        exec(&mut shard, &store("relative", b"v", 10, 0), NOW);
        exec(&mut shard, &store("absolute", b"v", NOW + 20, 0), NOW);
        exec(&mut shard, &store("touched", b"v", 10, 0), NOW);
        exec(&mut shard, &store("gat", b"v", 10, 0), NOW);
        exec(&mut shard, &store("forever", b"v", 0, 0), NOW);
        exec(&mut shard, &store("untouched", b"v", 100, 0), NOW);
        exec(&mut shard, &Command::Touch { key: b"touched".to_vec(), exptime: 100 }, NOW + 5);
        exec(&mut shard, &Command::GetAndTouch { key: b"gat".to_vec(), exptime: 100 }, NOW + 5);
        exec(&mut shard, &Command::Touch { key: b"untouched".to_vec(), exptime: 3 }, NOW + 5);

        // Down for a while, up again before the first expiry.
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW + 7);
        for key in ["relative", "absolute", "touched", "gat", "forever"] {
            assert!(get(&mut shard, key, NOW + 7).is_some(), "clean={clean}: {key} at +7 s");
        }
        assert_eq!(get(&mut shard, "untouched", NOW + 8), None, "clean={clean}: a touch that shortened the TTL");
        assert_eq!(get(&mut shard, "relative", NOW + 10), None, "clean={clean}: relative at +10 s");
        assert!(get(&mut shard, "absolute", NOW + 19).is_some(), "clean={clean}: absolute at +19 s");

        // Down across the next expiries: gone at start-up.
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW + 30);
        assert_eq!(shard.len(), 3, "clean={clean}: touched, gat and forever are left");
        for key in ["touched", "gat", "forever"] {
            assert!(get(&mut shard, key, NOW + 30).is_some(), "clean={clean}: {key} at +30 s");
        }
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW + 200);
        assert_eq!(shard.len(), 1, "clean={clean}: only forever is left at +200 s");
        assert!(get(&mut shard, "forever", NOW + 200).is_some());
    }
}

#[test]
fn a_delayed_flush_holds_across_restarts() {
    for clean in [true, false] {
        let dir = durable::scratch_dir();
        let setup = Setup::default();
        let (mut shard, _) = setup.open_real(dir.path(), NOW);
        set(&mut shard, "before", b"v", NOW);
        assert_eq!(exec(&mut shard, &Command::Flush { delay: 10 }, NOW), Outcome::Done { cas: 0 });
        set(&mut shard, "between", b"v", NOW + 2);

        // Up again before the flush's time: everything is there until then.
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW + 5);
        assert!(get(&mut shard, "before", NOW + 5).is_some(), "clean={clean}");
        assert!(get(&mut shard, "between", NOW + 9).is_some(), "clean={clean}");
        assert_eq!(get(&mut shard, "before", NOW + 10), None, "clean={clean}: the flush's time passed");
        assert_eq!(get(&mut shard, "between", NOW + 10), None, "clean={clean}");
        set(&mut shard, "after", b"v", NOW + 11);
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW + 12);
        assert_eq!((shard.len(), get(&mut shard, "after", NOW + 12).is_some()), (1, true), "clean={clean}");

        // Down across the flush's time: gone at start-up, with what was written before it.
        assert_eq!(exec(&mut shard, &Command::Flush { delay: 10 }, NOW + 12), Outcome::Done { cas: 0 });
        set(&mut shard, "doomed", b"v", NOW + 13);
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW + 30);
        assert_eq!(shard.len(), 0, "clean={clean}: the flush fell due while the shard was down");
        set(&mut shard, "survivor", b"v", NOW + 31);
        let mut shard = restart(shard, &setup, dir.path(), clean, NOW + 32);
        assert_eq!((shard.len(), get(&mut shard, "survivor", NOW + 32).is_some()), (1, true), "clean={clean}");
    }
}

// ---- through the real server ----

/// `--data-dir DIR` and a small server.
fn args(dir: &std::path::Path) -> Vec<String> {
    ["--data-dir", dir.to_str().unwrap(), "--fsync", "always", "-t", "2"].iter().map(|s| s.to_string()).collect()
}

fn start(args: &[String]) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

fn kill9(server: Server) {
    // SAFETY: the pid names our own child, not yet reaped.
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) };
    drop(server);
}

fn unix_time() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Sleeps until just after the start of the next second: expiry counts whole seconds.
fn align_to_second() {
    let now = unix_time();
    std::thread::sleep(Duration::from_secs(1) - Duration::from_nanos(now.subsec_nanos() as u64) + Duration::from_millis(20));
}

fn caskade_only() -> bool {
    ServerKind::from_env() == ServerKind::Caskade
}

#[test]
fn cas_survives_a_restart_on_the_wire() {
    if !caskade_only() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = args(dir.path());
    let server = start(&args);
    let mut c = Client::connect(server.addr()).unwrap();
    let first = c.set_with_ttl(b"a", b"1", 0).unwrap();
    assert_eq!(first.status, Status::NoError);
    let b = c.set_with_ttl(b"b", b"1", 0).unwrap().cas;
    assert!(server.stop().success());

    let server = start(&args);
    let mut c = Client::connect(server.addr()).unwrap();
    let got = c.get_reply(b"a").unwrap();
    assert_eq!((got.status, got.cas), (Status::NoError, first.cas), "GET after a clean restart");
    let mut cas_set = set_request(b"a", b"2", 0, 7);
    cas_set[16..24].copy_from_slice(&first.cas.to_be_bytes());
    assert!(c.send(&cas_set));
    let replaced = c.recv().unwrap();
    assert_eq!(replaced.status, Status::NoError, "a CAS from before the restart");
    // CAS values are counted per shard (per core): compare them key by key.
    assert!(replaced.cas > first.cas, "CAS {} after a restart, {} before", replaced.cas, first.cas);
    kill9(server);

    let server = start(&args);
    let mut c = Client::connect(server.addr()).unwrap();
    assert!(c.send(&cas_set));
    assert_eq!(c.recv().unwrap().status, Status::KeyExists, "a CAS that was replaced before the crash");
    let a = c.set_with_ttl(b"a", b"3", 0).unwrap();
    assert!(a.cas > replaced.cas, "CAS {} after a kill, {} before", a.cas, replaced.cas);
    let b_again = c.set_with_ttl(b"b", b"2", 0).unwrap();
    assert!(b_again.cas > b, "CAS {} after two restarts, {b} before", b_again.cas);
    assert!(server.stop().success());
}

#[test]
fn ttls_hold_across_a_restart_on_the_wire() {
    if !caskade_only() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = args(dir.path());
    let server = start(&args);
    align_to_second();
    let mut c = Client::connect(server.addr()).unwrap();
    assert_eq!(c.set_with_ttl(b"short", b"v", 2).unwrap().status, Status::NoError);
    assert_eq!(c.set_with_ttl(b"long", b"v", 3600).unwrap().status, Status::NoError);
    let absolute = (unix_time().as_secs() + 2) as u32;
    assert_eq!(c.set_with_ttl(b"absolute", b"v", absolute).unwrap().status, Status::NoError);
    kill9(server);

    let server = start(&args);
    let mut c = Client::connect(server.addr()).unwrap();
    for key in ["short", "long", "absolute"] {
        assert!(c.get(key.as_bytes()).unwrap().is_some(), "{key} right after the restart");
    }
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(c.get(b"short"), Some(None), "a 2 s TTL over 2 s later");
    assert_eq!(c.get(b"absolute"), Some(None), "an absolute expiry passed");
    assert!(c.get(b"long").unwrap().is_some());
    assert!(server.stop().success());
}

#[test]
fn a_delayed_flush_holds_across_a_restart_on_the_wire() {
    if !caskade_only() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = args(dir.path());
    let server = start(&args);
    align_to_second();
    let mut c = Client::connect(server.addr()).unwrap();
    for i in 0..20 {
        assert_eq!(c.set(format!("k{i}").as_bytes(), b"v"), Some(Status::NoError));
    }
    assert_eq!(c.flush(2), Some(Status::NoError));
    kill9(server);

    let server = start(&args);
    let mut c = Client::connect(server.addr()).unwrap();
    assert!(c.get(b"k0").unwrap().is_some(), "flushed before its time");
    assert_eq!(c.set(b"between", b"v"), Some(Status::NoError));
    // Down across the flush's time.
    assert!(server.stop().success());
    std::thread::sleep(Duration::from_millis(2100));
    let server = start(&args);
    let mut c = Client::connect(server.addr()).unwrap();
    for key in ["k0", "k19", "between"] {
        assert_eq!(c.get(key.as_bytes()), Some(None), "{key} after the flush's time");
    }
    assert_eq!(c.set(b"after", b"v"), Some(Status::NoError));
    kill9(server);
    let server = start(&args);
    assert!(Client::connect(server.addr()).unwrap().get(b"after").unwrap().is_some());
    assert!(server.stop().success());
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_with_a_clear_message() {
    if !caskade_only() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = args(dir.path());
    let first = start(&args);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (status, output) = common::run_with_timeout(
        Process::new(env!("CARGO_BIN_EXE_caskade")).args(["-l", "127.0.0.1", "-p", &port.to_string()]).args(&args),
        Duration::from_secs(10),
    );
    let status = status.expect("the second server did not exit within 10 s");
    assert!(!status.success(), "the second server exited with {status}\n{output}");
    assert!(output.contains("LOCK") && output.contains(dir.path().to_str().unwrap()), "no clear message:\n{output}");
    // The first one is unharmed, and once it is gone the directory can be used again.
    Client::connect(first.addr()).unwrap().set(b"k", b"v").unwrap();
    kill9(first);
    let again = start(&args);
    assert!(Client::connect(again.addr()).unwrap().get(b"k").unwrap().is_some());
    assert!(again.stop().success());
}

// ---- across merges ----

/// Merges as soon as a closed segment is a tenth dead.
const EAGER_MERGES: MergePolicy = MergePolicy { dead_fraction: 0.1, min_dead_bytes: 1, max_live_bytes: 1 << 20, step_bytes: 1 << 20 };

/// A turn of the event loop with nothing to do but merge steps, at `now`.
fn merge_turns(shard: &mut Shard, now: u32) {
    for t in 0..5 {
        shard.tick(now + t);
        shard.commit().unwrap();
        shard.maintain(now + t);
    }
}

#[test]
fn an_expired_item_reclaimed_before_a_merge_does_not_bring_back_its_older_value() {
    let dir = durable::scratch_dir();
    let setup = Setup { segment_size: 4096, compress_min: 0, ..Setup::default() };
    let (mut shard, _) = setup.open_real(dir.path(), NOW);
    set(&mut shard, "k", b"old, never expires", NOW);
    // Enough to keep the oldest segment from being dead enough to merge.
    for i in 0..30 {
        set(&mut shard, &format!("keep{i}"), &[b'k'; 100], NOW);
    }
    let mut shard = restart(shard, &setup, dir.path(), true, NOW);
    exec(&mut shard, &store("k", b"new, with a TTL", 5, 0), NOW);
    let mut shard = restart(shard, &setup, dir.path(), true, NOW);
    shard.set_merge_policy(EAGER_MERGES);
    // Read after its time: the item is reclaimed, its record dead, and a merge of the
    // segment that holds it runs.
    assert_eq!(get(&mut shard, "k", NOW + 10), None);
    merge_turns(&mut shard, NOW + 10);
    assert!(shard.counters().merges > 0, "no merge ran");
    let mut shard = restart(shard, &setup, dir.path(), true, NOW + 20);
    assert_eq!(get(&mut shard, "k", NOW + 20), None, "an older value came back");
}

#[test]
fn a_delayed_flush_replaced_by_an_immediate_one_does_not_come_back_after_a_merge() {
    let dir = durable::scratch_dir();
    let setup = Setup { segment_size: 4096, compress_min: 0, ..Setup::default() };
    let (mut shard, _) = setup.open_real(dir.path(), NOW);
    assert_eq!(exec(&mut shard, &Command::Flush { delay: 100 }, NOW), Outcome::Done { cas: 0 });
    assert_eq!(exec(&mut shard, &Command::Flush { delay: 0 }, NOW), Outcome::Done { cas: 0 });
    set(&mut shard, "k", b"v", NOW);
    let mut shard = restart(shard, &setup, dir.path(), true, NOW);
    shard.set_merge_policy(EAGER_MERGES);
    merge_turns(&mut shard, NOW);
    assert!(shard.counters().merges > 0, "no merge ran");
    let mut shard = restart(shard, &setup, dir.path(), true, NOW + 10);
    assert!(get(&mut shard, "k", NOW + 200).is_some(), "the replaced delayed flush came back");
}
