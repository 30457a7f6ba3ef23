//! The file operations the log needs, behind a trait so tests can inject failures (EIO,
//! ENOSPC on write or fsync) and see what a crash leaves.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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

struct RealFile(File);

impl LogFile for RealFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        self.0.sync_all()
    }

    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(RealSyncHandle(self.0.try_clone()?)))
    }
}

impl Fs for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let f = OpenOptions::new().read(true).append(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let f = OpenOptions::new().read(true).append(true).open(path)?;
        Ok(Box::new(RealFile(f)))
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
