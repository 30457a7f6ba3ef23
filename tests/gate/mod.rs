//! A node started in this process (`caskade::server::run_with`) whose log files sync through
//! a [`Gate`] the test holds: while it is held, every fsync of every shard blocks (so no
//! reply that waits for one may leave); opened, they complete; failed, they return EIO.
//! The gate counts the fsyncs blocked on it, so a test waits for the fsync it holds back
//! instead of sleeping.

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use caskade::config::Config;
use caskade::server::{Options, Stop};
use caskade::storage::disk::fs::SyncHandle;
use caskade::storage::disk::{Fs, LogFile, RealFs};

/// How long a loaded machine may take to do what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// How long nothing may arrive while an fsync is held back. The positive case does not rest
/// on it: the gate guarantees the fsync has not completed.
pub const QUIET: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    Held,
    Fail,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    /// fsyncs blocked on the gate now.
    blocked: usize,
    /// fsyncs the gate made fail.
    failed: u64,
}

/// What every fsync of the node's log files passes through.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate { state: Mutex::new(State { mode: Mode::Open, blocked: 0, failed: 0 }), changed: Condvar::new() })
    }

    fn set(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
        self.changed.notify_all();
    }

    /// fsyncs from now on block until [`open`](Self::open) or [`fail`](Self::fail).
    pub fn hold(&self) {
        self.set(Mode::Held);
    }

    /// Blocked fsyncs complete, and later ones pass.
    pub fn open(&self) {
        self.set(Mode::Open);
    }

    /// Blocked fsyncs fail with EIO, and later ones too until [`open`](Self::open).
    pub fn fail(&self) {
        self.set(Mode::Fail);
    }

    /// Waits until `n` fsyncs are blocked on the gate.
    pub fn wait_blocked(&self, n: usize) {
        self.wait_until(&format!("{n} fsyncs blocked"), |s| s.blocked >= n);
    }

    /// Waits until the gate has failed `n` fsyncs in all.
    pub fn wait_failed(&self, n: u64) {
        self.wait_until(&format!("{n} fsyncs failed"), |s| s.failed >= n);
    }

    fn wait_until(&self, what: &str, done: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut s = self.state.lock().unwrap();
        while !done(&s) {
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("waited {PATIENCE:?} for {what}: {s:?}"));
            s = self.changed.wait_timeout(s, left).unwrap().0;
        }
    }

    /// One fsync passes: waits while held, then says whether it succeeds.
    fn pass(&self) -> io::Result<()> {
        let mut s = self.state.lock().unwrap();
        if s.mode == Mode::Held {
            s.blocked += 1;
            self.changed.notify_all();
            while s.mode == Mode::Held {
                s = self.changed.wait(s).unwrap();
            }
            s.blocked -= 1;
        }
        if s.mode == Mode::Fail {
            s.failed += 1;
            self.changed.notify_all();
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

/// [`RealFs`] whose log files sync through a [`Gate`].
struct GateFs(Arc<Gate>);

struct GateFile {
    inner: Box<dyn LogFile>,
    gate: Arc<Gate>,
}

struct GateSync {
    inner: Box<dyn SyncHandle>,
    gate: Arc<Gate>,
}

impl SyncHandle for GateSync {
    fn sync(&mut self) -> io::Result<()> {
        self.gate.pass()?;
        self.inner.sync()
    }
}

impl LogFile for GateFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.append(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.gate.pass()?;
        self.inner.sync()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(GateSync { inner: self.inner.sync_handle()?, gate: self.gate.clone() }))
    }
}

impl Fs for GateFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(GateFile { inner: RealFs.create(path)?, gate: self.0.clone() }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(GateFile { inner: RealFs.open(path)?, gate: self.0.clone() }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        Fs::write_atomic(&RealFs, path, bytes)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.list(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}

/// A node serving on 127.0.0.1 (a free port) in this process; stopped when dropped.
pub struct Node {
    pub addr: SocketAddr,
    pub gate: Arc<Gate>,
    pub threads: usize,
    stop: Stop,
    thread: Option<JoinHandle<io::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node with `-t threads --fsync fsync` on a data directory of its own.
    pub fn start(threads: usize, fsync: &str) -> Node {
        Node::start_with(threads, fsync, &[])
    }

    /// [`start`](Self::start) with more command-line arguments.
    pub fn start_with(threads: usize, fsync: &str, extra: &[&str]) -> Node {
        let dir = tempfile::Builder::new().prefix("caskade-gate-").tempdir().expect("a temporary directory");
        let args: Vec<OsString> = [
            "caskade", "-l", "127.0.0.1", "-p", "0", "--admin", "off", "-t", &threads.to_string(), "--fsync", fsync,
            "--data-dir", &dir.path().display().to_string(),
        ]
        .iter()
        .chain(extra)
        .map(OsString::from)
        .collect();
        let config = Config::load(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        config.validate().unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let gate = Gate::new();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let options = Options { fs: Arc::new(GateFs(gate.clone())), serving: Some(tx) };
        let thread = std::thread::Builder::new()
            .name("caskade-node".into())
            .spawn(move || caskade::server::run_with(config, args, options))
            .expect("spawn the node");
        let serving = match rx.recv_timeout(PATIENCE) {
            Ok(s) => s,
            Err(_) => panic!("the node did not serve within {PATIENCE:?}: {:?}", thread.join().map_err(|_| "panicked")),
        };
        Node { addr: serving.addr, gate, threads, stop: serving.stop, thread: Some(thread), dir }
    }

    /// A key whose shard is on `core`, distinct for each `n`.
    pub fn key_on(&self, core: usize, n: usize) -> String {
        (0..).map(|i| format!("k{n}-{i}")).find(|k| caskade::cluster::core_of(k.as_bytes(), self.threads) == core).unwrap()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.gate.open();
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let result = t.join();
            if !std::thread::panicking() {
                result.expect("the node panicked").expect("the node stopped cleanly");
            }
        }
    }
}

/// Asserts that nothing arrives on `stream` for [`QUIET`] (and nothing was already buffered
/// by the caller: `buffered`).
pub fn assert_silent(stream: &TcpStream, buffered: usize, what: &str) {
    assert_eq!(buffered, 0, "{what}: bytes arrived while the fsync was held back");
    stream.set_read_timeout(Some(QUIET)).unwrap();
    let mut byte = [0u8; 64];
    let got = stream.peek(&mut byte);
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    match got {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        Ok(n) => panic!("{what}: a reply arrived while the fsync was held back: {:?}", String::from_utf8_lossy(&byte[..n])),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Reads exactly `n` bytes (for text replies whose length is known).
pub fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read the replies");
    buf
}

/// How many segment files the shards of `dir` hold.
pub fn segment_count(dir: &Path) -> usize {
    let mut n = 0;
    for shard in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()) {
        n += std::fs::read_dir(&shard).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log")).count();
    }
    n
}
