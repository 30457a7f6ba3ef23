//! Torn and damaged logs (issue 3): what a crash in the middle of a write leaves, and what a
//! bad disk does to a record, must never stop a start-up nor lose the intact records.
//!
//! Records are written through a shard, the shard is dropped without a close (as a killed
//! process leaves it: no hint for the active segment), then a copy of the directory is
//! damaged and reopened, once per byte offset or per damaged byte.

mod durable;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use caskade::storage::disk::record;
use caskade::storage::disk::segment::SEGMENT_HEADER_LEN;
use caskade::storage::Shard;
use durable::{get, set, Setup, NOW};

/// One record as found in a segment file.
#[derive(Clone, Debug)]
struct Found {
    offset: usize,
    len: usize,
    key: String,
}

/// The records of a segment file, in order (decoded with the library's own decoder).
fn records(path: &Path) -> Vec<Found> {
    let bytes = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < bytes.len() {
        let (r, len) = record::decode(&bytes[pos..]).unwrap_or_else(|e| panic!("{}: record at {pos}: {e:?}", path.display()));
        out.push(Found { offset: pos, len, key: String::from_utf8(r.key.to_vec()).unwrap() });
        pos += len;
    }
    out
}

/// Copies the files of `from` into a fresh directory.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = durable::scratch_dir();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
    }
    to
}

fn value_of(key: usize, round: usize) -> Vec<u8> {
    format!("value of {key} written in round {round} {}", "~".repeat(key * 3)).into_bytes()
}

fn setup(segment_size: u64) -> Setup {
    // No compression: record offsets follow from the values alone.
    Setup { segment_size, compress_min: 0, ..Setup::default() }
}

/// Checks that the shard holds exactly `want`.
fn check(shard: &mut Shard, want: &BTreeMap<String, Vec<u8>>, keys: &[String], context: &str) {
    for key in keys {
        let got = get(shard, key, NOW);
        assert_eq!(got.as_ref(), want.get(key), "{context}: {key}");
    }
    assert_eq!(shard.len(), want.len(), "{context}: item count");
}

/// The log goes on after a recovery: a new write survives another crash.
fn still_writes(dir: &Path, setup: &Setup, mut want: BTreeMap<String, Vec<u8>>, keys: &[String], context: &str) {
    let (mut shard, _) = setup.open_real(dir, NOW);
    assert!(matches!(set(&mut shard, "after", b"recovery", NOW), caskade::storage::Outcome::Done { .. }));
    shard.commit().unwrap();
    drop(shard);
    let (mut shard, report) = setup.open_real(dir, NOW);
    assert_eq!((report.bytes_cut, report.corrupt_records), (0, 0), "{context}: second recovery");
    want.insert("after".into(), b"recovery".to_vec());
    let mut keys = keys.to_vec();
    keys.push("after".into());
    check(&mut shard, &want, &keys, &format!("{context}, after a write and another crash"));
}

#[test]
fn the_last_record_cut_at_every_byte_offset_leaves_the_records_before_it() {
    let pristine = durable::scratch_dir();
    let setup = setup(1 << 20);
    let keys: Vec<String> = (0..10).map(|k| format!("key:{k}")).collect();
    let mut want = BTreeMap::new();
    {
        let (mut shard, _) = setup.open_real(pristine.path(), NOW);
        for (k, key) in keys.iter().enumerate() {
            set(&mut shard, key, &value_of(k, 0), NOW);
            want.insert(key.clone(), value_of(k, 0));
        }
        // The last record overwrites a key: cut, it must give the old value back.
        set(&mut shard, &keys[3], &value_of(3, 1), NOW);
        shard.commit().unwrap();
        // Dropped without a close: no hint for this segment, as after a crash.
    }
    let segment = durable::segment_files(pristine.path()).pop().unwrap();
    let found = records(&segment);
    let last = found.last().unwrap().clone();
    assert_eq!(last.key, keys[3]);
    let name = segment.file_name().unwrap().to_owned();

    for cut in last.offset..last.offset + last.len {
        let dir = copy_dir(pristine.path());
        let path = dir.path().join(&name);
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut as u64).unwrap();
        let (mut shard, report) = setup.open_real(dir.path(), NOW);
        let context = format!("cut at {cut} (last record at {}..{})", last.offset, last.offset + last.len);
        assert_eq!(report.bytes_cut, (cut - last.offset) as u64, "{context}");
        assert_eq!(report.corrupt_records, 0, "{context}");
        assert_eq!(fs::metadata(&path).unwrap().len(), last.offset as u64, "{context}: the torn tail is cut off the file");
        check(&mut shard, &want, &keys, &context);
        drop(shard);
        still_writes(dir.path(), &setup, want.clone(), &keys, &context);
    }

    // Uncut, the last record is there.
    let (mut shard, report) = setup.open_real(pristine.path(), NOW);
    assert_eq!(report.bytes_cut, 0);
    want.insert(keys[3].clone(), value_of(3, 1));
    check(&mut shard, &want, &keys, "uncut");
}

#[test]
fn a_new_segment_cut_inside_its_header_is_removed_and_the_older_ones_kept() {
    let pristine = durable::scratch_dir();
    let setup = setup(1 << 20);
    let keys: Vec<String> = (0..5).map(|k| format!("key:{k}")).collect();
    let mut want = BTreeMap::new();
    {
        let (mut shard, _) = setup.open_real(pristine.path(), NOW);
        for (k, key) in keys.iter().enumerate() {
            set(&mut shard, key, &value_of(k, 0), NOW);
            want.insert(key.clone(), value_of(k, 0));
        }
        shard.close().unwrap();
    }
    // A start-up creates the next segment; the process dies before writing to it.
    drop(setup.open_real(pristine.path(), NOW));
    let newest = durable::segment_files(pristine.path()).pop().unwrap();
    assert_eq!(fs::metadata(&newest).unwrap().len(), SEGMENT_HEADER_LEN as u64);
    let name = newest.file_name().unwrap().to_owned();
    for cut in 0..SEGMENT_HEADER_LEN as u64 {
        let dir = copy_dir(pristine.path());
        OpenOptions::new().write(true).open(dir.path().join(&name)).unwrap().set_len(cut).unwrap();
        let (mut shard, report) = setup.open_real(dir.path(), NOW);
        assert_eq!(report.files_removed, 1, "header cut at {cut}");
        assert!(!dir.path().join(&name).exists() || durable::segment_files(dir.path()).len() == 2);
        check(&mut shard, &want, &keys, &format!("header cut at {cut}"));
        drop(shard);
        still_writes(dir.path(), &setup, want.clone(), &keys, &format!("header cut at {cut}"));
    }
}

/// Bytes that stand for what a crash or a bad disk can leave after the last record.
fn garbage() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for len in [1usize, 4, 47, 48, 49, 100, 4096] {
        out.push((format!("{len} zero bytes"), vec![0; len]));
        out.push((format!("{len} 0xff bytes"), vec![0xff; len]));
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for case in 0..200 {
        let len = 1 + (case * 37) % 700;
        let bytes = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        out.push((format!("{len} random bytes (case {case})"), bytes));
    }
    // A plausible header whose length runs past the end, and one whose length is in range
    // but whose checksum is wrong.
    let mut header = vec![0u8; record::RECORD_HEADER_LEN];
    header[4..8].copy_from_slice(&1000u32.to_le_bytes());
    header[8] = 1;
    out.push(("a header promising 1000 bytes".into(), header.clone()));
    let mut whole = header;
    whole[4..8].copy_from_slice(&(record::RECORD_HEADER_LEN as u32 + 3).to_le_bytes());
    whole[36..38].copy_from_slice(&3u16.to_le_bytes());
    whole.extend_from_slice(b"abc");
    out.push(("a whole record with a bad checksum".into(), whole));
    out
}

#[test]
fn random_bytes_after_the_last_record_are_cut_off() {
    let pristine = durable::scratch_dir();
    let setup = setup(1 << 20);
    let keys: Vec<String> = (0..10).map(|k| format!("key:{k}")).collect();
    let mut want = BTreeMap::new();
    {
        let (mut shard, _) = setup.open_real(pristine.path(), NOW);
        for (k, key) in keys.iter().enumerate() {
            set(&mut shard, key, &value_of(k, 0), NOW);
            want.insert(key.clone(), value_of(k, 0));
        }
        shard.commit().unwrap();
    }
    let name = durable::segment_files(pristine.path()).pop().unwrap().file_name().unwrap().to_owned();
    let intact = fs::metadata(pristine.path().join(&name)).unwrap().len();
    for (what, bytes) in garbage() {
        let dir = copy_dir(pristine.path());
        let path = dir.path().join(&name);
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&bytes).unwrap();
        let (mut shard, report) = setup.open_real(dir.path(), NOW);
        assert_eq!(report.bytes_cut, bytes.len() as u64, "{what}");
        assert_eq!(fs::metadata(&path).unwrap().len(), intact, "{what}");
        check(&mut shard, &want, &keys, &what);
        drop(shard);
        still_writes(dir.path(), &setup, want.clone(), &keys, &what);
    }
}

/// Writes keys `key:0..n` once each over several small segments; returns the directory,
/// the segment files and what they hold.
fn several_segments(setup: &Setup, n: usize, clean: bool) -> (tempfile::TempDir, Vec<PathBuf>, BTreeMap<String, Vec<u8>>) {
    let dir = durable::scratch_dir();
    let mut want = BTreeMap::new();
    let (mut shard, _) = setup.open_real(dir.path(), NOW);
    for k in 0..n {
        let key = format!("key:{k}");
        set(&mut shard, &key, &value_of(k % 7, 0), NOW);
        want.insert(key, value_of(k % 7, 0));
        shard.commit().unwrap();
    }
    if clean {
        shard.close().unwrap();
    }
    drop(shard);
    // Every segment scanned, none read from a hint: the damage must be seen.
    durable::remove_hints(dir.path());
    let segments = durable::segment_files(dir.path());
    (dir, segments, want)
}

/// Flips every byte of one record in turn; each time the record alone is lost.
fn flip_every_byte_of(pristine: &Path, segment: &Path, victim: &Found, setup: &Setup, want: &BTreeMap<String, Vec<u8>>) {
    let keys: Vec<String> = want.keys().cloned().collect();
    let mut without = want.clone();
    without.remove(&victim.key);
    let name = segment.file_name().unwrap().to_owned();
    let len = fs::metadata(segment).unwrap().len();
    for i in 0..victim.len {
        for flip in [0x01u8, 0x40, 0xff] {
            let dir = copy_dir(pristine);
            let path = dir.path().join(&name);
            let mut bytes = fs::read(&path).unwrap();
            bytes[victim.offset + i] ^= flip;
            fs::write(&path, &bytes).unwrap();
            let context = format!("{} byte {i} of the record of {} ^ {flip:#04x}", path.file_name().unwrap().to_string_lossy(), victim.key);
            let (mut shard, report) =
                setup.open(std::sync::Arc::new(caskade::storage::disk::RealFs), dir.path(), NOW).unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(report.corrupt_records, 1, "{context}: {report:?}");
            assert_eq!(report.bytes_cut, 0, "{context}: intact records follow, nothing is a tail: {report:?}");
            assert_eq!(fs::metadata(&path).unwrap().len(), len, "{context}: the segment keeps its length");
            check(&mut shard, &without, &keys, &context);
        }
    }
}

#[test]
fn a_damaged_record_inside_a_closed_segment_is_skipped_and_the_rest_kept() {
    let setup = setup(700);
    let (dir, segments, want) = several_segments(&setup, 30, true);
    assert!(segments.len() >= 4, "{} segments", segments.len());
    // A record in the middle of a segment that is neither the first nor the newest.
    let segment = &segments[1];
    let found = records(segment);
    assert!(found.len() >= 3, "{} records in {}", found.len(), segment.display());
    flip_every_byte_of(dir.path(), segment, &found[1], &setup, &want);
}

#[test]
fn a_damaged_record_before_intact_ones_in_the_newest_segment_is_skipped() {
    let setup = setup(1 << 20);
    let (dir, segments, want) = several_segments(&setup, 8, false);
    let segment = segments.last().unwrap();
    let found = records(segment);
    assert_eq!(found.len(), 8);
    flip_every_byte_of(dir.path(), segment, &found[4], &setup, &want);
}
