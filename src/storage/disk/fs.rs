//! The file operations the log needs, behind a trait so tests can inject failures (EIO,
//! ENOSPC on write or fsync) and see what a crash leaves.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One open file of the log.
#[allow(clippy::len_without_is_empty)] // `len` is an I/O call that can fail; nothing asks for emptiness
pub trait LogFile: Send {
    /// Appends all of `buf` at the end.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes what was appended durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    /// Cuts the file to `len` bytes (a torn tail at recovery).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A way to fsync this file from another thread (the `everysec` syncer). Files that
    /// have none are synced on the event loop.
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Nothing more will be appended: gives back the space reserved ahead of the appends
    /// (the real file's preallocation). Best effort, and no change to the bytes.
    fn seal(&mut self) {}
}

/// Syncs one file; moved to a background thread.
pub trait SyncHandle: Send {
    fn sync(&mut self) -> io::Result<()>;
}

struct RealSyncHandle(File);

impl SyncHandle for RealSyncHandle {
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// Directory-level operations.
pub trait Fs: Send + Sync {
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Writes `bytes` to `path` through a temporary file, fsync and rename, so `path` holds
    /// either its old content or all of the new one.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Makes the creation, renaming or removal of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

pub type SharedFs = Arc<dyn Fs>;

/// The real file system.
pub struct RealFs;

/// Appends allocate the file's blocks ahead of them, this much at a time.
///
/// An append into blocks the file does not have yet costs the kernel more than the copy:
/// ext4 zeroes the rest of each new block (and, with large folios, of the folio) before
/// the data goes in. At 1 KiB records that zeroing was 6.5 % of a disk-backed server's
/// CPU under YCSB F and half the system time of plain appends (bench/RESULTS.md, issue
/// 15). Blocks reserved with `fallocate(FALLOC_FL_KEEP_SIZE)` skip it. The file's size
/// stays what was written, so recovery and the bytes on disk are as before; after a crash
/// at most this much stays allocated past a segment's end until a merge removes it.
pub const RESERVE_STEP: u64 = 4 << 20;

/// Writeback of appended bytes is started every this many bytes (`sync_file_range`, not
/// waited for), as RocksDB's `bytes_per_sync` does: dirty pages never pile up to the kernel's
/// limits, where `write(2)` would stall the event loop while the page cache is flushed
/// (1 KiB SETs under everysec append ~200 MB/s; their p99.9 was 30-40 ms, issue 15), and
/// the everysec fsync finds little left to write. No promise changes: only fsync and
/// fdatasync say the bytes are on disk.
pub const WRITEBACK_STEP: u64 = 1 << 20;

struct RealFile {
    file: File,
    /// Writeback has been started for the bytes before this.
    kicked: u64,
    /// Where the next append lands: the file's length as this handle last knew it (only
    /// the reservation goes by it, never the bytes).
    end: u64,
    /// Blocks are reserved up to here (at or past `end`).
    reserved: u64,
}

impl RealFile {
    fn new(file: File) -> io::Result<RealFile> {
        let end = file.metadata()?.len();
        Ok(RealFile { file, kicked: end, end, reserved: end })
    }

    /// Reserves blocks up to the step boundary past `want`. A failure (no room, a file
    /// system without `fallocate`) leaves the appends to allocate as they go, and is not
    /// tried again before the next step.
    fn reserve(&mut self, want: u64) {
        let to = want.next_multiple_of(RESERVE_STEP);
        // SAFETY: fallocate on a descriptor this struct owns; no memory is passed.
        let rc = unsafe {
            libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, self.end as libc::off_t, (to - self.end) as libc::off_t)
        };
        if rc != 0 {
            log::debug!("fallocate: {}", io::Error::last_os_error());
        }
        self.reserved = to;
    }

    /// Starts writeback of what was appended since the last time, once it is a step.
    fn kick_writeback(&mut self) {
        if self.end < self.kicked + WRITEBACK_STEP {
            return;
        }
        // SAFETY: sync_file_range on a descriptor this struct owns; no memory is passed.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.kicked as libc::off64_t,
                (self.end - self.kicked) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            log::debug!("sync_file_range: {}", io::Error::last_os_error());
        }
        self.kicked = self.end;
    }
}

impl LogFile for RealFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let want = self.end + buf.len() as u64;
        if want > self.reserved {
            self.reserve(want);
        }
        match self.file.write_all(buf) {
            Ok(()) => {
                self.end = want;
                self.kick_writeback();
                Ok(())
            }
            Err(e) => {
                // Part of it may be in: the file says where the end is now.
                self.end = self.file.metadata().map_or(self.end, |m| m.len());
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        // Cutting frees the blocks past `len`, reserved ones included.
        self.end = len;
        self.reserved = len;
        self.kicked = self.kicked.min(len);
        self.file.set_len(len)?;
        self.file.sync_all()
    }

    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(RealSyncHandle(self.file.try_clone()?)))
    }

    fn seal(&mut self) {
        if self.reserved > self.end {
            // ftruncate to the same length frees the blocks reserved past it (ext4, xfs).
            match self.file.metadata().and_then(|m| self.file.set_len(m.len())) {
                Ok(()) => self.reserved = self.end,
                Err(e) => log::debug!("giving back reserved blocks: {e}"),
            }
        }
    }
}

impl Fs for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let f = OpenOptions::new().read(true).append(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile::new(f)?))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let f = OpenOptions::new().read(true).append(true).open(path)?;
        Ok(Box::new(RealFile::new(f)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = tmp_path(path);
        {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            self.sync_dir(dir)?;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            out.push(entry?.path());
        }
        out.sort();
        Ok(out)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl RealFs {
    /// [`Fs::write_atomic`] without a trait object.
    pub fn write_atomic_path(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        Fs::write_atomic(self, path, bytes)
    }
}

/// Where a file is written before it is renamed into place. Recovery removes leftovers.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn allocated(path: &Path) -> u64 {
        fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn appends_reserve_ahead_and_sealing_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut f = RealFs.create(&path).unwrap();
        let record = vec![7u8; 1000];
        for _ in 0..10 {
            f.append(&record).unwrap();
        }
        // The size is what was written; the blocks ahead of it are reserved, where the file
        // system can (tmpfs and ext4 can; one that cannot only allocates as it goes).
        assert_eq!(f.len().unwrap(), 10_000);
        let reserved = allocated(&path);
        assert!(reserved >= 10_000);
        let mut back = vec![0u8; 1000];
        f.read_at(&mut back, 9_000).unwrap();
        assert_eq!(back, record);
        f.seal();
        assert_eq!(f.len().unwrap(), 10_000);
        assert!(allocated(&path) <= 10_000u64.next_multiple_of(64 << 10), "{} bytes still allocated", allocated(&path));
        assert!(allocated(&path) <= reserved);
        // A torn tail cut at recovery: shorter, and appends go on from there.
        f.truncate(4_000).unwrap();
        f.append(&record).unwrap();
        assert_eq!(f.len().unwrap(), 5_000);
        assert_eq!(fs::read(&path).unwrap(), [&[7u8; 5000][..]].concat());
    }

    /// Writeback is started once a step has been appended, from where it last was; a cut
    /// tail moves that point back, and the bytes are whatever was appended.
    #[test]
    fn writeback_is_started_every_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let file = OpenOptions::new().read(true).append(true).create_new(true).open(&path).unwrap();
        let mut f = RealFile::new(file).unwrap();
        let chunk = vec![3u8; (WRITEBACK_STEP / 4) as usize];
        for _ in 0..3 {
            f.append(&chunk).unwrap();
        }
        assert_eq!(f.kicked, 0);
        f.append(&chunk).unwrap();
        assert_eq!(f.kicked, WRITEBACK_STEP);
        f.append(&chunk).unwrap();
        assert_eq!(f.kicked, WRITEBACK_STEP);
        f.truncate(100).unwrap();
        assert_eq!(f.kicked, 100);
        f.append(&chunk).unwrap();
        assert_eq!(f.len().unwrap(), 100 + chunk.len() as u64);
        assert_eq!(fs::read(&path).unwrap(), [&[3u8; 100][..], &chunk].concat());
    }

    #[test]
    fn appends_cross_reservation_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut f = RealFs.create(&path).unwrap();
        let chunk = vec![1u8; 1 << 20];
        let chunks = (RESERVE_STEP as usize / chunk.len()) * 2 + 1;
        for _ in 0..chunks {
            f.append(&chunk).unwrap();
        }
        assert_eq!(f.len().unwrap(), (chunks * chunk.len()) as u64);
        f.seal();
        assert!(allocated(&path) <= (chunks * chunk.len()) as u64 + (64 << 10));
    }
}
