//! Start-up: rebuild a shard's keydir from its segments, hints first, cutting off a torn
//! tail and stepping over damaged records, and say what was cut.
//!
//! Records are replayed in log order (segments by id, records by offset), so the last record
//! of a key wins; a merge output stands where the segments it replaced stood, so the order
//! holds across merges. Before it returns, the newest segment (the only one a killed process
//! can have left unsynced) and the directory are synced, so nothing the shard then serves
//! can vanish at a power loss.

use std::io;
use std::path::Path;

use super::fs::SharedFs;
use super::hint;
use super::log::Segment;
use super::record::{self, Kind, Meta, RecordError};
use super::segment::{HeaderError, Location, SegmentHeader, SegmentName, SEGMENT_HEADER_LEN};

/// One record, as recovery hands it to the shard.
#[derive(Debug)]
pub struct Event<'a> {
    pub kind: Kind,
    pub meta: Meta,
    pub key: &'a [u8],
    pub loc: Location,
    /// The record's whole length.
    pub len: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub compressed: bool,
    /// The stored value when the segment was scanned (not when a hint was read).
    pub value: Option<&'a [u8]>,
}

#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub from_hints: usize,
    pub records: u64,
    /// Bytes cut off torn or damaged tails.
    pub bytes_cut: u64,
    /// Damaged records stepped over inside a segment, and their bytes.
    pub corrupt_records: u64,
    pub corrupt_bytes: u64,
    /// Files removed: leftovers of interrupted writes and merges.
    pub files_removed: usize,
}

/// About how many records the hint files of `dir` hold, from their trailers (unchecked: an
/// estimate to size the keydir by before replaying; hints that turn out bad count anyway).
pub fn hinted_records(fs: &SharedFs, dir: &Path) -> usize {
    let mut total = 0;
    let Ok(paths) = fs.list(dir) else { return 0 };
    for path in paths {
        if !matches!(path.file_name().and_then(|n| n.to_str()).and_then(SegmentName::parse), Some((_, "hint"))) {
            continue;
        }
        let mut trailer = [0u8; hint::HINT_TRAILER_LEN];
        let claimed = fs.open(&path).and_then(|f| {
            let len = f.len()?;
            f.read_at(&mut trailer, len.saturating_sub(hint::HINT_TRAILER_LEN as u64))?;
            Ok(hint::claimed_entries(&trailer, len))
        });
        total += claimed.unwrap_or(0);
    }
    total
}

/// Replays every segment of `dir` into `apply` and returns the segments, ready for a log.
pub fn recover(
    fs: &SharedFs,
    dir: &Path,
    shard: u32,
    mut apply: impl FnMut(Event<'_>),
) -> io::Result<(Vec<Segment>, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let mut names = Vec::new();
    let mut hints = std::collections::HashSet::new();
    for path in fs.list(dir)? {
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if file_name.ends_with(".tmp") {
            log::info!("removing {} left by an interrupted write", path.display());
            fs.remove(&path)?;
            report.files_removed += 1;
            continue;
        }
        match SegmentName::parse(file_name) {
            Some((name, "log")) => names.push(name),
            Some((name, _)) => {
                hints.insert(name);
            }
            None => {}
        }
    }
    names.sort();

    // Read headers; a merge output makes the older files of its range garbage.
    let mut headers = Vec::new();
    for name in names {
        let path = name.path(dir);
        let file = fs.open(&path)?;
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        let len = file.len()?;
        let header = if len >= SEGMENT_HEADER_LEN as u64 { file.read_at(&mut b, 0).ok().map(|_| SegmentHeader::decode(&b)) } else { None };
        match header {
            Some(Ok(h)) if h.name == name && h.shard == shard => headers.push((h, file, len)),
            Some(Ok(h)) => {
                return Err(io::Error::other(format!(
                    "{} belongs to shard {} segment {:?}, not here: was the data directory written with another --threads?",
                    path.display(),
                    h.shard,
                    h.name
                )))
            }
            Some(Err(why)) if len > SEGMENT_HEADER_LEN as u64 || matches!(why, HeaderError::Version(_)) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display())));
            }
            _ => {
                // Cut before its header was whole: a segment created just before a crash.
                log::warn!("removing {}: its header was never completed ({len} bytes)", path.display());
                fs.remove(&path)?;
                report.files_removed += 1;
            }
        }
    }
    let superseded: Vec<SegmentName> = headers
        .iter()
        .flat_map(|(h, _, _)| {
            headers
                .iter()
                .filter(move |(o, _, _)| {
                    o.name.id >= h.first && o.name.id <= h.name.id && o.name.generation < h.name.generation
                })
                .map(|(o, _, _)| o.name)
        })
        .collect();
    headers.retain(|(h, _, _)| !superseded.contains(&h.name));
    for name in &superseded {
        log::info!("removing {}: replaced by a merge", name.file_name());
        fs.remove(&name.hint_path(dir))?;
        fs.remove(&name.path(dir))?;
        report.files_removed += 1;
    }

    let last = headers.len().saturating_sub(1);
    let mut segments = Vec::with_capacity(headers.len());
    for (i, (h, mut file, mut len)) in headers.into_iter().enumerate() {
        report.segments += 1;
        let name = h.name;
        let from_hint = hints.contains(&name) && {
            match fs.read(&name.hint_path(dir)) {
                Ok(bytes) => match hint::read(&bytes, name) {
                    Ok(entries) => {
                        let mut watermark = Vec::new();
                        for e in entries {
                            let len = record::record_len(e.key.len(), e.stored_len as usize) as u32;
                            report.records += 1;
                            // A hint holds no values, and a watermark's is what it is for.
                            let value = (e.kind == Kind::Watermark)
                                .then(|| read_value(&*file, e.offset, len, &mut watermark, name))
                                .flatten();
                            apply(Event {
                                kind: e.kind,
                                meta: e.meta,
                                key: e.key,
                                loc: Location { segment: name.id, offset: e.offset },
                                len,
                                stored_len: e.stored_len,
                                raw_len: e.raw_len,
                                compressed: e.compressed,
                                value,
                            });
                        }
                        true
                    }
                    Err(why) => {
                        log::warn!("ignoring {}: {why}; scanning the segment", name.hint_name());
                        false
                    }
                },
                Err(e) => {
                    log::warn!("cannot read {}: {e}; scanning the segment", name.hint_name());
                    false
                }
            }
        };
        if from_hint {
            report.from_hints += 1;
        } else {
            let mut bytes = vec![0u8; len as usize];
            file.read_at(&mut bytes, 0)?;
            let good = scan(&bytes, name, &mut report, &mut apply);
            if (good as u64) < len {
                let cut = len - good as u64;
                log::warn!(
                    "{}: cut {cut} bytes of torn or damaged tail at offset {good}{}",
                    name.file_name(),
                    if i == last { "" } else { " (not the newest segment)" }
                );
                file.truncate(good as u64)?;
                report.bytes_cut += cut;
                len = good as u64;
            }
        }
        segments.push(Segment { name, first: h.first, file, len, dead: 0, marks: 0 });
    }
    // A killed process may have left written but unsynced records in its active segment (the
    // newest: every other one was synced when it was closed or merged). They are replayed and
    // served from now on, so they must not vanish at a later power loss: sync them, and the
    // directory (files created or removed since its last sync), before the shard serves.
    if let Some(newest) = segments.last_mut() {
        newest.file.sync().map_err(|e| io::Error::new(e.kind(), format!("cannot sync {}: {e}", newest.name.file_name())))?;
    }
    fs.sync_dir(dir).map_err(|e| io::Error::new(e.kind(), format!("cannot sync {}: {e}", dir.display())))?;
    Ok((segments, report))
}

/// Reads the value of the record at `offset` (`len` bytes) into `buf`; `None`, with a log
/// line, when the record cannot be read or fails its checksum.
fn read_value<'b>(file: &dyn super::fs::LogFile, offset: u32, len: u32, buf: &'b mut Vec<u8>, name: SegmentName) -> Option<&'b [u8]> {
    buf.resize(len as usize, 0);
    let problem = match file.read_at(buf, offset as u64) {
        Ok(()) => match record::decode(buf) {
            Ok((r, _)) if r.kind == Kind::Watermark => return Some(r.value),
            Ok((r, _)) => format!("a {:?} record, not the watermark its hint names", r.kind),
            Err(e) => format!("{e:?}"),
        },
        Err(e) => e.to_string(),
    };
    log::error!("{}: the record at offset {offset} its hint names cannot be read ({problem})", name.file_name());
    None
}

/// Replays the records of one segment; returns where its intact part ends.
fn scan(bytes: &[u8], name: SegmentName, report: &mut RecoveryReport, apply: &mut impl FnMut(Event<'_>)) -> usize {
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < bytes.len() {
        match record::decode(&bytes[pos..]) {
            Ok((r, len)) => {
                report.records += 1;
                apply(Event {
                    kind: r.kind,
                    meta: r.meta,
                    key: r.key,
                    loc: Location { segment: name.id, offset: pos as u32 },
                    len: len as u32,
                    stored_len: r.value.len() as u32,
                    raw_len: r.raw_len,
                    compressed: r.compressed,
                    value: Some(r.value),
                });
                pos += len;
            }
            Err(e) => {
                // Look for the next intact record; if there is none, this is the tail. A
                // damaged length field reads like a torn write, but intact records follow it.
                let why = match e {
                    RecordError::Corrupt(why) => why,
                    RecordError::Truncated => "its length runs past intact records",
                };
                let Some(next) = (pos + 1..bytes.len()).find(|&p| record::decode(&bytes[p..]).is_ok()) else {
                    return pos;
                };
                log::warn!(
                    "{}: damaged record at offset {pos} ({why}); skipped {} bytes to the next intact record",
                    name.file_name(),
                    next - pos
                );
                report.corrupt_records += 1;
                report.corrupt_bytes += (next - pos) as u64;
                pos = next;
            }
        }
    }
    pos
}
