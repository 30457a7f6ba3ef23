//! The data directory: its lock, its META file, and the shards it holds.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::Config;
use crate::storage::disk::recovery::RecoveryReport;
use crate::storage::disk::{LogConfig, RealFs, SharedFs};
use crate::storage::{Shard, ShardConfig};

/// Format of the data directory (see protocol-spec/storage-format.md).
const FORMAT: u64 = 2;

/// Holds the directory's lock for as long as it lives.
pub struct DataDir {
    pub path: PathBuf,
    _lock: File,
    /// Set while a directory this start created would be removed if the start failed.
    created: Created,
}

/// The topmost directory this start created for the data directory: removed when dropped,
/// unless [`DataDir::keep`] was called (a failed start leaves nothing new behind, and never
/// removes what was there before).
struct Created(Option<PathBuf>);

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            match fs::remove_dir_all(&dir) {
                Ok(()) => log::info!("removed {}, which this failed start had created", dir.display()),
                Err(e) => log::warn!("cannot remove {}, which this failed start had created: {e}", dir.display()),
            }
        }
    }
}

impl DataDir {
    /// Creates the directory if needed and takes its lock; a second server on the same
    /// directory gets a clear error. A directory this call creates is removed again when
    /// the `DataDir` is dropped before [`keep`](Self::keep) (the start failed).
    pub fn open(path: &Path, shards: usize) -> io::Result<DataDir> {
        match fs::metadata(path) {
            Ok(m) if !m.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--data-dir {} is not a directory", path.display()),
                ));
            }
            _ => {}
        }
        let first_missing = path
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err())
            .last()
            .map(Path::to_path_buf);
        fs::create_dir_all(path).map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
        let created = Created(first_missing);
        let lock_path = path.join("LOCK");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another caskade (its LOCK is held)", path.display()),
            ));
        }
        let meta_path = path.join("META");
        match fs::read_to_string(&meta_path) {
            Ok(text) => {
                let meta: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", meta_path.display())))?;
                let (format, found) = (meta["format"].as_u64(), meta["shards"].as_u64());
                if format != Some(FORMAT) {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!(
                            "{}: data format {} is not readable by this build (it reads format {FORMAT}); start on an empty data directory",
                            meta_path.display(),
                            format.map_or("unknown".to_string(), |f| f.to_string())
                        )));
                }
                if found != Some(shards as u64) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{} holds {} shards; start with --threads {} (moving data between shard counts is not supported yet)",
                            path.display(),
                            found.unwrap_or(0),
                            found.unwrap_or(0)
                        ),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let meta = serde_json::json!({ "format": FORMAT, "shards": shards });
                RealFs.write_atomic_path(&meta_path, meta.to_string().as_bytes())?;
            }
            Err(e) => return Err(e),
        }
        Ok(DataDir { path: path.to_path_buf(), _lock: lock, created })
    }

    /// The start went through: the directory stays, whoever created it.
    pub fn keep(&mut self) {
        self.created.0 = None;
    }

    pub fn shard_dir(&self, shard: usize) -> PathBuf {
        self.path.join(format!("shard-{shard:03}"))
    }
}

/// What start-up recovery did, over every shard: the node's `recovery_*` statistics.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Wall-clock time of the whole recovery (shards recover in parallel).
    pub seconds: f64,
    /// The shards' reports, summed.
    pub report: RecoveryReport,
}

/// Opens every shard, recovering them in parallel (one thread each).
pub fn open_shards(config: &Config, fs: &SharedFs, dir: Option<&DataDir>, shard_config: ShardConfig, now: u32) -> io::Result<(Vec<Shard>, Recovery)> {
    let threads = config.threads();
    let Some(dir) = dir else {
        return Ok(((0..threads).map(|_| Shard::new(shard_config)).collect(), Recovery::default()));
    };
    let started = Instant::now();
    let results: Vec<io::Result<(Shard, RecoveryReport)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let log_config = LogConfig {
                    dir: dir.shard_dir(i),
                    shard: i as u32,
                    segment_size: config.segment_size,
                    fsync: config.fsync,
                    compress_min: config.compress_min,
                };
                let fs = fs.clone();
                scope.spawn(move || Shard::open(shard_config, fs, log_config, now))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("recovery panicked")))).collect()
    });
    let mut shards = Vec::with_capacity(threads);
    let mut total = RecoveryReport::default();
    for (i, r) in results.into_iter().enumerate() {
        let (mut shard, report) = r.map_err(|e| io::Error::new(e.kind(), format!("shard {i}: {e}")))?;
        shard.set_merge_policy(config.merge_policy());
        total.segments += report.segments;
        total.from_hints += report.from_hints;
        total.records += report.records;
        total.bytes_cut += report.bytes_cut;
        total.corrupt_records += report.corrupt_records;
        total.corrupt_bytes += report.corrupt_bytes;
        total.files_removed += report.files_removed;
        shards.push(shard);
    }
    let seconds = started.elapsed().as_secs_f64();
    let items: usize = shards.iter().map(Shard::len).sum();
    // A recovery that had to cut or skip damaged records is a warning: an operator should see it.
    let level = if total.bytes_cut + total.corrupt_bytes > 0 { log::Level::Warn } else { log::Level::Info };
    log::log!(
        level,
        "recovered {items} items from {} records in {} segments ({} by hint) in {:.3} s{}",
        total.records,
        total.segments,
        total.from_hints,
        seconds,
        if total.bytes_cut + total.corrupt_bytes > 0 {
            format!("; cut {} bytes of torn tail, skipped {} damaged records ({} bytes)", total.bytes_cut, total.corrupt_records, total.corrupt_bytes)
        } else {
            String::new()
        }
    );
    Ok((shards, Recovery { seconds, report: total }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_removes_only_what_it_created() {
        let scratch = tempfile::tempdir().unwrap();
        // Created by this start (parents too), and the start fails: all of it goes.
        let made = scratch.path().join("a/b/data");
        drop(DataDir::open(&made, 2).unwrap());
        assert!(!scratch.path().join("a").exists());
        // Created, and the start went through: it stays.
        let mut kept = DataDir::open(&made, 2).unwrap();
        kept.keep();
        drop(kept);
        assert!(made.join("META").is_file());
        // There before: it stays, though the start failed.
        let before = scratch.path().join("before");
        fs::create_dir(&before).unwrap();
        drop(DataDir::open(&before, 2).unwrap());
        assert!(before.is_dir());
        // A file is not a directory.
        let file = scratch.path().join("afile");
        fs::write(&file, b"x").unwrap();
        let err = DataDir::open(&file, 2).err().unwrap().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
