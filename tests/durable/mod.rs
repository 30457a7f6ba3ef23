//! Support for the durability tests (issue 3): a shard opened on a directory with the knobs
//! the tests turn, outcomes copied out of the shard, and a file system whose log files fail
//! on demand (EIO or ENOSPC, on write or on fsync, whole or after half the bytes) and that
//! can cut every file back to what it had synced, as a power loss would.

#![allow(dead_code)]

pub mod client;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caskade::storage::disk::recovery::RecoveryReport;
use caskade::storage::disk::fs::SyncHandle;
use caskade::storage::disk::{Fs, Fsync, LogConfig, LogFile, RealFs, SharedFs};
use caskade::storage::{Command, Mode, Outcome, Shard, ShardConfig, StoreMode};

/// A fixed clock: tests move time themselves.
pub const NOW: u32 = 1_800_000_000;

/// How a shard is opened.
#[derive(Clone, Debug)]
pub struct Setup {
    pub memory_limit: usize,
    pub max_item_size: usize,
    pub mode: Mode,
    pub segment_size: u64,
    pub compress_min: usize,
    pub fsync: Fsync,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            memory_limit: 1 << 20,
            max_item_size: 2048,
            mode: Mode::Store,
            segment_size: 4096,
            compress_min: 64,
            fsync: Fsync::Always,
        }
    }
}

impl Setup {
    pub fn open(&self, fs: SharedFs, dir: &Path, now: u32) -> io::Result<(Shard, RecoveryReport)> {
        let config = ShardConfig { memory_limit: self.memory_limit, max_item_size: self.max_item_size, mode: self.mode, primary_only: None, epoch: None };
        let log = LogConfig {
            dir: dir.to_path_buf(),
            shard: 0,
            segment_size: self.segment_size,
            fsync: self.fsync,
            compress_min: self.compress_min,
        };
        Shard::open(config, fs, log, now)
    }

    /// Opens on the real file system; panics if recovery fails.
    pub fn open_real(&self, dir: &Path, now: u32) -> (Shard, RecoveryReport) {
        self.open(Arc::new(RealFs), dir, now).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
    }
}

/// An outcome that no longer borrows the shard.
pub type Owned = Outcome<Vec<u8>>;

pub fn own(o: Outcome<&[u8]>) -> Owned {
    match o {
        Outcome::Value { flags, cas, value } => Outcome::Value { flags, cas, value: value.to_vec() },
        Outcome::Done { cas } => Outcome::Done { cas },
        Outcome::Counter { value, cas } => Outcome::Counter { value, cas },
        Outcome::NotFound => Outcome::NotFound,
        Outcome::Exists => Outcome::Exists,
        Outcome::NotStored => Outcome::NotStored,
        Outcome::NonNumeric => Outcome::NonNumeric,
        Outcome::TooLarge => Outcome::TooLarge,
        Outcome::OutOfMemory => Outcome::OutOfMemory,
        Outcome::StorageError => Outcome::StorageError,
        Outcome::TemporaryFailure => Outcome::TemporaryFailure,
        Outcome::SyncWriteAmbiguous => Outcome::SyncWriteAmbiguous,
        Outcome::DurabilityImpossible => Outcome::DurabilityImpossible,
    }
}

pub fn run(shard: &mut Shard, cmd: &Command<&[u8]>, now: u32) -> Owned {
    own(shard.execute(cmd, now))
}

pub fn set(shard: &mut Shard, key: &str, value: &[u8], now: u32) -> Owned {
    let cmd = Command::Store { mode: StoreMode::Set, key: key.as_bytes(), value, flags: 0, exptime: 0, cas: 0 };
    run(shard, &cmd, now)
}

/// The value under `key`, `None` when it is missing; panics on any other answer.
pub fn get(shard: &mut Shard, key: &str, now: u32) -> Option<Vec<u8>> {
    match run(shard, &Command::Get { key: key.as_bytes() }, now) {
        Outcome::Value { value, .. } => Some(value),
        Outcome::NotFound => None,
        other => panic!("get {key}: {other:?}"),
    }
}

/// What the server's event loop does at the end of a turn: commit when the shard asks.
pub fn end_turn(shard: &mut Shard) -> io::Result<()> {
    if shard.needs_commit() {
        shard.commit()
    } else {
        Ok(())
    }
}

/// The segment files of a shard directory, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    files_with_extension(dir, "log")
}

pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// Waits until every segment but the newest has its hint file: hints of rolled segments are
/// written by a background thread, and a test that edits segment files must not race it.
pub fn wait_for_hints(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let segments = segment_files(dir);
        let missing = segments
            .iter()
            .take(segments.len().saturating_sub(1))
            .filter(|s| !s.with_extension("hint").exists())
            .count();
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{missing} hint files still missing in {}", dir.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes every hint file, so that start-up scans the segments themselves.
pub fn remove_hints(dir: &Path) {
    wait_for_hints(dir);
    for h in files_with_extension(dir, "hint") {
        std::fs::remove_file(&h).unwrap_or_else(|e| panic!("remove {}: {e}", h.display()));
    }
}

/// Which error a failing operation returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    Eio,
    Enospc,
}

impl Errno {
    fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            Errno::Eio => libc::EIO,
            Errno::Enospc => libc::ENOSPC,
        })
    }

    fn code(self) -> i32 {
        match self {
            Errno::Eio => libc::EIO,
            Errno::Enospc => libc::ENOSPC,
        }
    }

    fn from_code(code: i32) -> Errno {
        if code == libc::ENOSPC {
            Errno::Enospc
        } else {
            Errno::Eio
        }
    }
}

/// A budget of operations: how many more succeed before they start failing (`-1`: never
/// fail), and with which error. Shared between the test and every file of a [`FaultFs`].
#[derive(Debug)]
pub struct Budget {
    left: AtomicI32,
    errno: AtomicI32,
    pub attempts: AtomicU64,
    pub failures: AtomicU64,
}

impl Budget {
    fn new() -> Budget {
        Budget { left: AtomicI32::new(-1), errno: AtomicI32::new(libc::EIO), attempts: AtomicU64::new(0), failures: AtomicU64::new(0) }
    }

    /// Every operation from now on fails with `errno`.
    pub fn fail(&self, errno: Errno) {
        self.fail_after(0, errno);
    }

    /// `ok` more operations succeed, then every one fails with `errno`.
    pub fn fail_after(&self, ok: i32, errno: Errno) {
        self.errno.store(errno.code(), SeqCst);
        self.left.store(ok, SeqCst);
    }

    /// The fault clears: every operation succeeds again.
    pub fn heal(&self) {
        self.left.store(-1, SeqCst);
    }

    /// `Err` when this operation is to fail.
    fn take(&self) -> Result<(), io::Error> {
        self.attempts.fetch_add(1, SeqCst);
        let left = self.left.load(SeqCst);
        if left < 0 {
            return Ok(());
        }
        if left > 0 {
            self.left.store(left - 1, SeqCst);
            return Ok(());
        }
        self.failures.fetch_add(1, SeqCst);
        Err(Errno::from_code(self.errno.load(SeqCst)).error())
    }
}

/// What the test controls.
#[derive(Debug)]
pub struct Faults {
    pub append: Budget,
    pub sync: Budget,
    /// A failing append writes the first half of its bytes before it fails, as a write cut
    /// short by a full disk does.
    pub partial: AtomicBool,
    /// How many bytes of each file were synced: what a power loss leaves of it.
    synced: Mutex<HashMap<PathBuf, u64>>,
}

impl Faults {
    pub fn heal(&self) {
        self.append.heal();
        self.sync.heal();
    }

    fn synced(&self, path: &Path, len: u64) {
        self.synced.lock().unwrap().insert(path.to_path_buf(), len);
    }

    /// What the machine losing power leaves: every file cut to the length it had at its
    /// last fsync. (Renames and removals are taken as durable.)
    pub fn power_loss(&self) {
        for (path, len) in self.synced.lock().unwrap().iter() {
            if path.exists() {
                std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(*len)).unwrap();
            }
        }
    }
}

/// [`RealFs`] whose log files fail as [`Faults`] says. Directory operations and hint files
/// (written whole through `write_atomic`) pass through untouched.
pub struct FaultFs {
    pub faults: Arc<Faults>,
}

impl FaultFs {
    #[allow(clippy::new_ret_no_self)] // the file system to hand out, and the switches that fail it
    pub fn new() -> (SharedFs, Arc<Faults>) {
        let faults = Arc::new(Faults {
            append: Budget::new(),
            sync: Budget::new(),
            partial: AtomicBool::new(false),
            synced: Mutex::new(HashMap::new()),
        });
        (Arc::new(FaultFs { faults: faults.clone() }), faults)
    }
}

struct FaultFile {
    inner: Box<dyn LogFile>,
    faults: Arc<Faults>,
    path: PathBuf,
}

impl LogFile for FaultFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Err(e) = self.faults.append.take() {
            if self.faults.partial.load(SeqCst) && buf.len() > 1 {
                self.inner.append(&buf[..buf.len() / 2])?;
            }
            return Err(e);
        }
        self.inner.append(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.faults.sync.take()?;
        self.inner.sync()?;
        self.faults.synced(&self.path, self.inner.len()?);
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        // The real file's truncate syncs.
        self.inner.truncate(len)?;
        self.faults.synced(&self.path, len);
        Ok(())
    }

    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(FaultSyncHandle { inner: self.inner.sync_handle()?, faults: self.faults.clone(), path: self.path.clone() }))
    }
}

/// The `everysec` syncer's way to the file: fails as the file's own fsync does.
struct FaultSyncHandle {
    inner: Box<dyn SyncHandle>,
    faults: Arc<Faults>,
    path: PathBuf,
}

impl SyncHandle for FaultSyncHandle {
    fn sync(&mut self) -> io::Result<()> {
        self.faults.sync.take()?;
        // Bytes appended while this fsync runs may count as synced: power-loss tests should
        // not use `everysec`.
        let len = std::fs::metadata(&self.path)?.len();
        self.inner.sync()?;
        self.faults.synced(&self.path, len);
        Ok(())
    }
}

impl Fs for FaultFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let inner = RealFs.create(path)?;
        self.faults.synced(path, 0);
        Ok(Box::new(FaultFile { inner, faults: self.faults.clone(), path: path.to_path_buf() }))
    }

    /// A file this file system never saw counts as synced whole; one it wrote keeps the
    /// length it had at its last fsync (a killed process leaves its unsynced bytes in the
    /// page cache, and only an fsync makes them survive a power loss).
    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let inner = RealFs.open(path)?;
        let len = inner.len()?;
        self.faults.synced.lock().unwrap().entry(path.to_path_buf()).or_insert(len);
        Ok(Box::new(FaultFile { inner, faults: self.faults.clone(), path: path.to_path_buf() }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        Fs::write_atomic(&RealFs, path, bytes)?;
        self.faults.synced(path, bytes.len() as u64);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)?;
        let mut synced = self.faults.synced.lock().unwrap();
        if let Some(len) = synced.remove(from) {
            synced.insert(to.to_path_buf(), len);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)?;
        self.faults.synced.lock().unwrap().remove(path);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.list(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}

/// A temporary directory for a test's data: on tmpfs (`/dev/shm`) when there is one, since
/// the library-level tests check logic, not the disk, and fsyncs there cost nothing.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("caskade-test-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::Builder::new().prefix("caskade-test-").tempdir().expect("create a temporary directory")
}
