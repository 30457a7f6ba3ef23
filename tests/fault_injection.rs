//! A failing disk (issue 3): EIO and ENOSPC on write and on fsync, injected through a test
//! `Fs` whose log files fail on demand (`tests/durable`), and a full disk under the real
//! server (RLIMIT_FSIZE, which makes writes past a size fail with EFBIG).
//!
//! What must hold: while the disk fails, the shard refuses mutations (`StorageError`, status
//! 0x84 on the wire) and acknowledges nothing it could not write; reads keep working; once
//! the disk heals, the commits of the following turns write what was queued; and a restart
//! finds every acknowledged write. The shard is driven as the event loop drives it: a turn
//! of commands, then `commit()` when `needs_commit()` says so.

mod common;
mod durable;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caskade::protocol::binary::Status;
use caskade::storage::disk::{Fsync, RealFs, SharedFs};
use caskade::storage::{Command, Outcome, Shard, StoreMode};
use durable::client::Client;
use durable::{end_turn, get, run, set, Errno, FaultFs, Faults, Setup, NOW};

type Book = BTreeMap<String, Vec<u8>>;

fn value(key: &str, tag: &str) -> Vec<u8> {
    format!("{key}={tag}:{}", "v".repeat(150)).into_bytes()
}

/// Writes `n` keys, one turn each, and books them: each commit succeeded.
fn write_acknowledged(shard: &mut Shard, book: &mut Book, prefix: &str, n: usize) {
    for k in 0..n {
        let key = format!("{prefix}:{k}");
        let v = value(&key, "acked");
        assert!(matches!(set(shard, &key, &v, NOW), Outcome::Done { .. }), "{key}");
        end_turn(shard).expect("a healthy disk");
        book.insert(key, v);
    }
}

fn check_reads(shard: &mut Shard, book: &Book, context: &str) {
    for (key, v) in book {
        assert_eq!(get(shard, key, NOW).as_ref(), Some(v), "{context}: {key}");
    }
}

/// Reopens the directory on the real file system, as after a crash, and checks it holds
/// exactly `book`.
fn reopen_and_check(setup: &Setup, dir: &Path, book: &Book, absent: &[&str], context: &str) {
    let fs: SharedFs = Arc::new(RealFs);
    let (mut shard, report) = setup.open(fs, dir, NOW).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    assert_eq!((report.bytes_cut, report.corrupt_records), (0, 0), "{context}: nothing torn nor damaged: {report:?}");
    check_reads(&mut shard, book, &format!("{context}, after a restart"));
    for key in absent {
        assert_eq!(get(&mut shard, key, NOW), None, "{context}: {key} was refused, yet it is there after a restart");
    }
    assert_eq!(shard.len(), book.len(), "{context}: items after a restart");
}

/// Every kind of mutation, each of which must be refused while the log fails.
fn mutations() -> Vec<Command<&'static [u8]>> {
    let store = |mode, key: &'static str| Command::Store { mode, key: key.as_bytes(), value: &b"refused"[..], flags: 0, exptime: 0, cas: 0 };
    vec![
        store(StoreMode::Set, "refused"),
        store(StoreMode::Add, "refused"),
        store(StoreMode::Replace, "k:0"),
        store(StoreMode::Append, "k:0"),
        store(StoreMode::Prepend, "k:0"),
        Command::Arith { incr: true, key: b"refused", delta: 1, initial: Some(5), exptime: 0, cas: 0 },
        Command::Delete { key: b"k:1", cas: 0 },
        Command::Touch { key: b"k:2", exptime: 100 },
        Command::GetAndTouch { key: b"k:2", exptime: 100 },
        Command::Flush { delay: 0 },
        Command::Flush { delay: 5 },
    ]
}

/// Turns run until `pred` holds, for at most `limit` (an `everysec` log retries its fsync
/// about once a second).
fn turns_until(shard: &mut Shard, limit: Duration, mut pred: impl FnMut(&mut Shard) -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let _ = end_turn(shard);
        if pred(shard) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn faulty(setup: &Setup) -> (tempfile::TempDir, Shard, Arc<Faults>) {
    let dir = durable::scratch_dir();
    let (fs, faults) = FaultFs::new();
    let (shard, _) = setup.open(fs, dir.path(), NOW).expect("open");
    (dir, shard, faults)
}

#[test]
fn a_failed_write_refuses_mutations_keeps_reads_and_writes_the_queue_once_the_disk_heals() {
    for fsync in [Fsync::Always, Fsync::EverySec, Fsync::Never] {
        for errno in [Errno::Eio, Errno::Enospc] {
            for partial in [false, true] {
                let context = format!("{fsync:?}, {errno:?} on write{}", if partial { " after half the bytes" } else { "" });
                // Little memory: some reads come from disk.
                let setup = Setup { fsync, memory_limit: 6 << 10, segment_size: 1 << 20, ..Setup::default() };
                let (dir, mut shard, faults) = faulty(&setup);
                faults.partial.store(partial, SeqCst);
                let mut book = Book::new();
                write_acknowledged(&mut shard, &mut book, "k", 20);

                faults.append.fail(errno);
                // Taken in memory and queued; its turn's commit fails, so it is never
                // acknowledged (the server closes the connection instead of replying).
                let queued = value("queued", "unacknowledged");
                assert!(matches!(set(&mut shard, "queued", &queued, NOW), Outcome::Done { .. }), "{context}");
                assert!(end_turn(&mut shard).is_err(), "{context}: the commit of a failed write succeeded");
                for cmd in mutations() {
                    assert_eq!(run(&mut shard, &cmd, NOW), Outcome::StorageError, "{context}: {cmd:?}");
                    assert!(end_turn(&mut shard).is_err(), "{context}: the queue is written again each turn and fails");
                }
                check_reads(&mut shard, &book, &format!("{context}, while the disk fails"));
                assert!(shard.counters().disk_errors >= mutations().len() as u64, "{context}");

                faults.heal();
                end_turn(&mut shard).unwrap_or_else(|e| panic!("{context}: the first commit after the disk heals: {e}"));
                let after = value("after", "acked");
                assert!(matches!(set(&mut shard, "after", &after, NOW), Outcome::Done { .. }), "{context}");
                end_turn(&mut shard).unwrap();
                drop(shard);
                // The queued write went out with the first commit that worked.
                book.insert("queued".into(), queued);
                book.insert("after".into(), after);
                reopen_and_check(&setup, dir.path(), &book, &["refused"], &context);
            }
        }
    }
}

#[test]
fn a_failed_fsync_refuses_mutations_until_a_sync_succeeds() {
    for errno in [Errno::Eio, Errno::Enospc] {
        let context = format!("always, {errno:?} on fsync");
        let setup = Setup { fsync: Fsync::Always, segment_size: 1 << 20, ..Setup::default() };
        let (dir, mut shard, faults) = faulty(&setup);
        let mut book = Book::new();
        write_acknowledged(&mut shard, &mut book, "k", 10);

        faults.sync.fail(errno);
        let queued = value("queued", "unacknowledged");
        assert!(matches!(set(&mut shard, "queued", &queued, NOW), Outcome::Done { .. }));
        assert!(end_turn(&mut shard).is_err(), "{context}: a commit whose fsync failed succeeded");
        for cmd in mutations() {
            assert_eq!(run(&mut shard, &cmd, NOW), Outcome::StorageError, "{context}: {cmd:?}");
            assert!(end_turn(&mut shard).is_err(), "{context}: the fsync is tried again each turn and fails");
        }
        check_reads(&mut shard, &book, &context);

        faults.heal();
        end_turn(&mut shard).unwrap_or_else(|e| panic!("{context}: the first commit after the disk heals: {e}"));
        let after = value("after", "acked");
        assert!(matches!(set(&mut shard, "after", &after, NOW), Outcome::Done { .. }));
        end_turn(&mut shard).unwrap();
        drop(shard);
        book.insert("queued".into(), queued);
        book.insert("after".into(), after);
        reopen_and_check(&setup, dir.path(), &book, &["refused"], &context);
    }
}

#[test]
fn an_fsync_failure_whose_rewrite_fails_too_is_rewritten_once_the_disk_heals() {
    // After a failed fsync the log cuts the unsynced bytes and writes them again (the kernel
    // may have dropped them); here that write fails too.
    let setup = Setup { fsync: Fsync::Always, segment_size: 1 << 20, ..Setup::default() };
    let (dir, mut shard, faults) = faulty(&setup);
    let mut book = Book::new();
    write_acknowledged(&mut shard, &mut book, "k", 10);

    faults.sync.fail(Errno::Eio);
    faults.append.fail_after(1, Errno::Enospc);
    let queued = value("queued", "unacknowledged");
    assert!(matches!(set(&mut shard, "queued", &queued, NOW), Outcome::Done { .. }));
    assert!(end_turn(&mut shard).is_err());
    assert_eq!(run(&mut shard, &mutations()[0], NOW), Outcome::StorageError);
    assert!(end_turn(&mut shard).is_err());
    assert!(faults.append.failures.load(SeqCst) >= 1, "the rewrite was not tried");

    faults.heal();
    end_turn(&mut shard).expect("the first commit after the disk heals");
    let after = value("after", "acked");
    assert!(matches!(set(&mut shard, "after", &after, NOW), Outcome::Done { .. }));
    end_turn(&mut shard).unwrap();
    // The shard holds `queued`; once a commit has succeeded, the disk must too.
    assert_eq!(get(&mut shard, "queued", NOW).as_ref(), Some(&queued));
    drop(shard);
    book.insert("queued".into(), queued);
    book.insert("after".into(), after);
    reopen_and_check(&setup, dir.path(), &book, &["refused"], "always, the fsync and its rewrite failed");
}

/// The active segment's length.
fn active_len(shard: &Shard) -> u64 {
    let log = shard.log().expect("a shard on disk");
    log.segments().find(|s| s.name.id == log.active_id()).expect("the active segment").len
}

#[test]
fn a_segment_roll_that_fails_is_done_once_the_disk_heals() {
    // `ok` fsyncs succeed before the failing one: 0 fails the roll's first fsync (the old
    // segment's under everysec and never, the new segment's header under always, whose old
    // segment is already synced), 1 the new segment's header.
    for (fsync, ok) in [(Fsync::Always, 0), (Fsync::EverySec, 0), (Fsync::EverySec, 1), (Fsync::Never, 0), (Fsync::Never, 1)] {
        let context = format!("{fsync:?}, fsync {} of a roll fails", ok + 1);
        let setup = Setup { fsync, segment_size: 2048, compress_min: 0, ..Setup::default() };
        let (dir, mut shard, faults) = faulty(&setup);
        let mut book = Book::new();
        let record_len = |key: &str| 48 + key.len() as u64 + value(key, "acked").len() as u64;
        let mut k = 0;
        while active_len(&shard) + record_len(&format!("k:{k}")) <= setup.segment_size {
            write_acknowledged(&mut shard, &mut book, &format!("k:{k}"), 1);
            k += 1;
        }
        let segments = durable::segment_files(dir.path()).len();

        faults.sync.fail_after(ok, Errno::Eio);
        let refused = format!("refused:{k}");
        assert_eq!(set(&mut shard, &refused, &value(&refused, "no"), NOW), Outcome::StorageError, "{context}");
        assert_eq!(faults.sync.failures.load(SeqCst), 1, "{context}: the fault did not strike where meant");
        let _ = end_turn(&mut shard);
        faults.heal();

        let after = value("after", "acked");
        let stored = turns_until(&mut shard, Duration::from_secs(3), |s| matches!(set(s, "after", &after, NOW), Outcome::Done { .. }));
        assert!(stored, "{context}: writes are still refused 3 s after the disk healed");
        end_turn(&mut shard).unwrap();
        assert!(durable::segment_files(dir.path()).len() > segments, "{context}: no new segment");
        drop(shard);
        book.insert("after".into(), after);
        reopen_and_check(&setup, dir.path(), &book, &[&refused], &context);
    }
}

#[test]
fn a_failed_background_fsync_under_everysec_refuses_writes_until_a_sync_works() {
    let setup = Setup { fsync: Fsync::EverySec, segment_size: 1 << 20, ..Setup::default() };
    let (dir, mut shard, faults) = faulty(&setup);
    let mut book = Book::new();
    write_acknowledged(&mut shard, &mut book, "k", 5);

    faults.sync.fail(Errno::Eio);
    // Within about a second the log hands an fsync to its syncer thread, which fails.
    let failed = turns_until(&mut shard, Duration::from_secs(3), |_| faults.sync.failures.load(SeqCst) > 0);
    assert!(failed, "no fsync was tried within 3 s under everysec");
    assert_eq!(set(&mut shard, "refused", b"x", NOW), Outcome::StorageError);
    check_reads(&mut shard, &book, "everysec, after a failed background fsync");

    faults.heal();
    let after = value("after", "acked");
    let stored = turns_until(&mut shard, Duration::from_secs(3), |s| matches!(set(s, "after", &after, NOW), Outcome::Done { .. }));
    assert!(stored, "writes are still refused 3 s after the disk healed");
    end_turn(&mut shard).unwrap();
    drop(shard);
    book.insert("after".into(), after);
    reopen_and_check(&setup, dir.path(), &book, &["refused"], "everysec, a failed background fsync");
}

/// Sets the soft limit on the size of files a process may write (`RLIM_INFINITY` lifts it);
/// past it, writes fail with EFBIG.
fn limit_file_size(pid: u32, bytes: u64) {
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: prlimit on our own child with a valid rlimit and no old-limit pointer.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The arguments of a server on `dir` whose disk a test fills with [`limit_file_size`]
/// (`--fsync always`, `threads` cores). Children inherit an ignored SIGXFSZ, so a write past
/// the limit fails with EFBIG instead of killing the server.
fn full_disk_args(dir: &tempfile::TempDir, threads: &str) -> Vec<String> {
    // SAFETY: setting a signal to SIG_IGN has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let data_dir = dir.path().to_str().unwrap();
    ["--data-dir", data_dir, "--fsync", "always", "-t", threads, "--segment-size", "4m", "--compress-min", "0"]
        .map(String::from)
        .to_vec()
}

fn kill9(server: &common::Server) {
    // SAFETY: the pid names our own child, which has not been reaped.
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) };
}

/// SETs, one at a time, until one is not acknowledged; records the keys that were, and
/// returns the first that was not with the status it got (`None`: the connection closed).
fn fill(server: &common::Server, prefix: &str, book: &mut Book, limit: usize) -> Option<(String, Option<Status>)> {
    let mut client = Client::connect(server.addr()).unwrap();
    for i in 0..limit {
        let key = format!("{prefix}:{i}");
        let v = value(&key, prefix).repeat(8);
        match client.set(key.as_bytes(), &v) {
            Some(Status::NoError) => {
                book.insert(key, v);
            }
            status => return Some((key, status)),
        }
    }
    None
}

fn check_server(server: &common::Server, book: &Book, absent: &[String], context: &str) {
    let mut client = Client::connect(server.addr()).unwrap();
    for (key, v) in book {
        let got = client.get(key.as_bytes()).unwrap_or_else(|| panic!("{context}: connection closed on GET {key}"));
        assert!(got.as_ref() == Some(v), "{context}: acknowledged {key} is {}", if got.is_some() { "changed" } else { "missing" });
    }
    for key in absent {
        assert_eq!(client.get(key.as_bytes()), Some(None), "{context}: refused {key} is there");
    }
}

#[test]
fn a_server_whose_disk_fills_up_acknowledges_only_what_it_wrote() {
    if common::ServerKind::from_env() != common::ServerKind::Caskade {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let owned = full_disk_args(&dir, "1");
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut book = Book::new();

    // 1. The disk fills up and the server is killed before it heals: what was acknowledged
    //    is all there after a restart.
    let server = common::Server::start(&args);
    limit_file_size(server.pid(), 64 << 10);
    let (_, status) = fill(&server, "before", &mut book, 100).expect("64 KiB of file took 100 writes of 1.2 KiB");
    assert!(!book.is_empty());
    // The SET whose write failed gets an error status on its open connection, and so do
    // the writes after it while the disk is full; never a success.
    assert_eq!(status, Some(Status::InternalError), "the SET whose write failed");
    let mut client = Client::connect(server.addr()).unwrap();
    let status = client.set(b"refused-while-full", b"x");
    assert_eq!(status, Some(Status::InternalError), "a SET on a full disk");
    // Reads go on, on the same connection.
    let (key, v) = book.iter().next().expect("one write was acknowledged");
    assert_eq!(client.get(key.as_bytes()), Some(Some(v.clone())), "a GET while the disk is full");
    kill9(&server);
    drop(server);
    let server = common::Server::start(&args);
    check_server(&server, &book, &["refused-while-full".to_string()], "killed while the disk was full");

    // 2. The disk fills up, then heals: the server takes writes again without a restart.
    limit_file_size(server.pid(), 64 << 10);
    fill(&server, "again", &mut book, 100).expect("64 KiB of file took 100 writes");
    limit_file_size(server.pid(), libc::RLIM_INFINITY);
    let deadline = Instant::now() + Duration::from_secs(5);
    let healed = loop {
        let mut client = Client::connect(server.addr()).unwrap();
        if client.set(b"healed", b"yes") == Some(Status::NoError) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(healed, "writes still fail 5 s after the disk healed\n{}", server.log());
    book.insert("healed".into(), b"yes".to_vec());
    fill(&server, "after", &mut book, 20);
    kill9(&server);
    drop(server);
    let server = common::Server::start(&args);
    check_server(&server, &book, &["refused-while-full".to_string()], "killed after the disk healed");
    assert!(server.stop().success());
}

#[test]
fn a_merge_leaves_a_key_its_old_value_or_its_new_one_after_a_power_loss() {
    // Under `never` the record that makes an old one dead may still be unsynced when a merge
    // drops the old one; a power loss then must not take both.
    let setup = Setup { fsync: Fsync::Never, segment_size: 4096, compress_min: 0, ..Setup::default() };
    let dir = durable::scratch_dir();
    let (fs, faults) = FaultFs::new();
    let (mut shard, _) = setup.open(fs.clone(), dir.path(), NOW).unwrap();
    set(&mut shard, "k", b"old", NOW);
    for i in 0..10 {
        set(&mut shard, &format!("filler{i}"), &[b'f'; 100], NOW);
    }
    shard.close().unwrap();
    drop(shard);

    let (mut shard, _) = setup.open(fs, dir.path(), NOW).unwrap();
    shard.set_merge_policy(caskade::storage::disk::merge::MergePolicy {
        dead_fraction: 0.5,
        min_dead_bytes: 1,
        max_live_bytes: 1 << 20,
        step_bytes: 1 << 20,
    });
    // The old segment all dead: "k" rewritten, the fillers deleted; written, not synced.
    set(&mut shard, "k", b"new", NOW);
    for i in 0..10 {
        assert_eq!(run(&mut shard, &Command::Delete { key: format!("filler{i}").as_bytes(), cas: 0 }, NOW), Outcome::Done { cas: 0 });
    }
    for t in 0..3 {
        end_turn(&mut shard).unwrap();
        shard.maintain(NOW + t);
    }
    assert!(shard.counters().merges > 0, "no merge ran");
    faults.power_loss();
    drop(shard);

    let (mut shard, _) = Setup { fsync: Fsync::Never, ..setup }.open_real(dir.path(), NOW);
    let k = get(&mut shard, "k", NOW);
    let fillers = (0..10).filter(|i| get(&mut shard, &format!("filler{i}"), NOW).is_some()).count();
    match k.as_deref() {
        Some(b"new") => assert_eq!(fillers, 0, "the deletes written after \"new\" were lost, \"new\" was not"),
        Some(b"old") => assert_eq!(fillers, 10, "a state that was never: the old value without the fillers"),
        other => panic!("k is {other:?} after a merge and a power loss: neither its old value nor its new one"),
    }
}

#[test]
fn with_two_cores_a_failed_write_is_an_error_status_whichever_core_owns_the_key() {
    if common::ServerKind::from_env() != common::ServerKind::Caskade {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let owned = full_disk_args(&dir, "2");
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut book = Book::new();
    let server = common::Server::start(&args);
    limit_file_size(server.pid(), 64 << 10);
    // Each shard fills its own file; keys go to both cores, half of them forwarded from the
    // core that reads the connection. Every refused SET must be an error status.
    let mut refused = Vec::new();
    for round in 0..4 {
        if let Some((key, status)) = fill(&server, &format!("r{round}"), &mut book, 200) {
            assert_eq!(status, Some(Status::InternalError), "SET {key} on a full disk");
            refused.push(key);
        }
    }
    assert!(!refused.is_empty() && !book.is_empty());
    // Reads of both shards go on.
    check_server(&server, &book, &[], "disk full, two cores");
    kill9(&server);
    drop(server);
    let server = common::Server::start(&args);
    check_server(&server, &book, &[], "killed while the disk was full, two cores");
    assert!(server.stop().success());
}

/// Drives turns until `done` says the shard's sync_rounds are where the test wants them; each
/// wait is for the commit thread's wake-up, as the event loop waits.
fn turns_until_sync_rounds(shard: &mut Shard, wake: &crossbeam_channel::Receiver<()>, done: impl Fn(caskade::storage::disk::SyncRounds) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(shard.sync_rounds().expect("group commit is on")) {
        assert!(Instant::now() < deadline, "sync_rounds stuck at {:?}", shard.sync_rounds());
        let _ = wake.recv_timeout(Duration::from_millis(100));
        let _ = end_turn(shard);
    }
}

#[test]
fn under_group_commit_a_sync_round_is_durable_once_its_fsync_is_done_and_fails_with_it() {
    let setup = Setup { fsync: Fsync::Always, segment_size: 1 << 20, ..Setup::default() };
    let (dir, mut shard, faults) = faulty(&setup);
    let (tx, wake) = crossbeam_channel::unbounded();
    shard.enable_group_commit(Arc::new(move || {
        let _ = tx.send(());
    }))
    .unwrap();
    let mut book = Book::new();

    // 1. Each turn's records make a round; it becomes durable once the commit thread's
    //    fsync is taken in by a later turn, and only then would its replies leave.
    for k in 0..10 {
        let key = format!("k:{k}");
        let v = value(&key, "acked");
        assert!(matches!(set(&mut shard, &key, &v, NOW), Outcome::Done { .. }));
        end_turn(&mut shard).expect("a healthy disk");
        let round = shard.sync_rounds().unwrap().written;
        assert_eq!(round, k + 1, "one round per turn that wrote");
        turns_until_sync_rounds(&mut shard, &wake, |e| e.durable >= round);
        assert!(shard.sync_rounds().unwrap().failed < round);
        book.insert(key, v);
    }
    // What power loss leaves holds every write of a durable round.
    faults.power_loss();
    check_reads(&mut shard, &book, "group commit, before the fault");

    // 2. The fsync of a round fails: the round is failed, not durable, and mutations are
    //    refused until a sync works again.
    faults.sync.fail(Errno::Eio);
    let queued = value("queued", "unacknowledged");
    assert!(matches!(set(&mut shard, "queued", &queued, NOW), Outcome::Done { .. }));
    end_turn(&mut shard).expect("the write itself works");
    let round = shard.sync_rounds().unwrap().written;
    turns_until_sync_rounds(&mut shard, &wake, |e| e.failed >= round);
    assert!(shard.sync_rounds().unwrap().durable < round, "a failed round counted durable");
    assert_eq!(run(&mut shard, &mutations()[0], NOW), Outcome::StorageError, "a mutation after a failed fsync");
    check_reads(&mut shard, &book, "group commit, while fsync fails");

    // 3. The disk heals: the queued record is written again and synced.
    faults.heal();
    end_turn(&mut shard).expect("the first commit after the disk heals");
    turns_until_sync_rounds(&mut shard, &wake, |e| e.durable >= e.written);
    let after = value("after", "acked");
    assert!(matches!(set(&mut shard, "after", &after, NOW), Outcome::Done { .. }));
    end_turn(&mut shard).unwrap();
    let round = shard.sync_rounds().unwrap().written;
    turns_until_sync_rounds(&mut shard, &wake, |e| e.durable >= round);
    faults.power_loss();
    drop(shard);
    book.insert("queued".into(), queued);
    book.insert("after".into(), after);
    reopen_and_check(&setup, dir.path(), &book, &[], "group commit, after the disk healed");
}

#[test]
fn records_a_killed_process_left_unsynced_survive_a_power_loss_once_a_restart_served_them() {
    // Under `never` a killed process leaves written, unsynced records in the page cache;
    // start-up replays and serves them, so it must sync them before a later power loss.
    let setup = Setup { fsync: Fsync::Never, segment_size: 1 << 20, ..Setup::default() };
    let dir = durable::scratch_dir();
    let (fs, faults) = FaultFs::new();
    let (mut shard, _) = setup.open(fs.clone(), dir.path(), NOW).unwrap();
    let mut book = Book::new();
    for k in 0..10 {
        let key = format!("k:{k}");
        let v = value(&key, "written");
        assert!(matches!(set(&mut shard, &key, &v, NOW), Outcome::Done { .. }));
        end_turn(&mut shard).unwrap();
        book.insert(key, v);
    }
    assert_eq!(shard.log().map(|l| l.counters().fsyncs), Some(0), "nothing synced under never");
    drop(shard); // killed: no close, no sync

    let (mut shard, _) = setup.open(fs.clone(), dir.path(), NOW).unwrap();
    check_reads(&mut shard, &book, "after the kill");
    drop(shard);
    faults.power_loss();
    let (mut shard, _) = setup.open_real(dir.path(), NOW);
    check_reads(&mut shard, &book, "served after the kill, then a power loss");
}

#[test]
fn a_delayed_flush_due_while_the_disk_fails_is_applied_and_its_marker_written_by_the_retry() {
    // The delayed marker is in the log; at its time the shard must drop everything (as a
    // replay of that marker would) and, once the disk works, log the immediate marker before
    // any later record, or a restart would drop what was acknowledged after the flush.
    let setup = Setup::default();
    let dir = durable::scratch_dir();
    let (fs, faults) = FaultFs::new();
    let (mut shard, _) = setup.open(fs, dir.path(), NOW).unwrap();
    set(&mut shard, "before", b"v", NOW);
    assert_eq!(run(&mut shard, &Command::Flush { delay: 5 }, NOW), Outcome::Done { cas: 0 });
    end_turn(&mut shard).unwrap();

    faults.append.fail(Errno::Eio);
    set(&mut shard, "unacked", b"v", NOW + 1);
    assert!(end_turn(&mut shard).is_err(), "the turn's commit fails");
    shard.tick(NOW + 5);
    assert_eq!(get(&mut shard, "before", NOW + 5), None, "the flush is applied at its time, disk or no disk");
    assert_eq!(get(&mut shard, "unacked", NOW + 5), None);
    assert_eq!(set(&mut shard, "refused", b"v", NOW + 5), Outcome::StorageError);

    faults.heal();
    end_turn(&mut shard).unwrap();
    shard.tick(NOW + 6);
    let mut book = Book::new();
    assert!(matches!(set(&mut shard, "after", b"v", NOW + 6), Outcome::Done { .. }));
    end_turn(&mut shard).unwrap();
    book.insert("after".to_string(), b"v".to_vec());
    drop(shard);
    reopen_and_check(&setup, dir.path(), &book, &["before", "unacked", "refused"], "a delayed flush due while the disk failed");
}

#[test]
fn an_immediate_flush_the_log_refuses_leaves_a_delayed_one_in_place() {
    let setup = Setup::default();
    let dir = durable::scratch_dir();
    let (fs, faults) = FaultFs::new();
    let (mut shard, _) = setup.open(fs, dir.path(), NOW).unwrap();
    set(&mut shard, "k", b"v", NOW);
    assert_eq!(run(&mut shard, &Command::Flush { delay: 5 }, NOW), Outcome::Done { cas: 0 });
    end_turn(&mut shard).unwrap();
    faults.append.fail(Errno::Eio);
    set(&mut shard, "unacked", b"v", NOW + 1);
    assert!(end_turn(&mut shard).is_err());
    assert_eq!(run(&mut shard, &Command::Flush { delay: 0 }, NOW + 1), Outcome::StorageError);
    assert_eq!(get(&mut shard, "k", NOW + 1).as_deref(), Some(&b"v"[..]), "a refused flush changes nothing");
    faults.heal();
    end_turn(&mut shard).unwrap();
    // The delayed flush the log still holds happens, as a restart would replay it.
    assert_eq!(get(&mut shard, "k", NOW + 5), None, "the delayed flush still falls due");
    end_turn(&mut shard).unwrap();
    drop(shard);
    let (mut shard, _) = setup.open_real(dir.path(), NOW + 5);
    assert_eq!((get(&mut shard, "k", NOW + 5), get(&mut shard, "unacked", NOW + 5), shard.len()), (None, None, 0));
}
