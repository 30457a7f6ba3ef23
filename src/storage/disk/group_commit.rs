//! Group commit for `--fsync always` off the event loop.
//!
//! Each event-loop turn that writes records to the log is one *sync round* ("epoch" is kept
//! for the cluster's per-partition epoch). The loop does not wait
//! for the fsync: it hands one to this thread (one at a time, covering every round written
//! before it started), keeps serving, and holds the replies of each round until that round is
//! durable (`server/held.rs`). So while one fsync runs, the next turns' writes gather for the
//! next one, and many clients share each fsync without the loop ever blocking on the disk.
//!
//! The thread only syncs and reports: which round it finished and whether it failed. What a
//! failure means for the log (write the unsynced bytes again, refuse writes until a sync
//! works) is decided on the loop, in `Log`.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::fs::SyncHandle;
use super::log::LogCounters;
use crate::stats::latency::FsyncTimes;

/// Wakes the event loop that owns the log (a `mio::Waker`), once an fsync has finished.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// What a thread that fsyncs off the event loop counts (this one, and the `everysec`
/// syncer in `log.rs`).
#[derive(Default)]
pub struct SyncStats {
    fsyncs: AtomicU64,
    micros: AtomicU64,
    errors: AtomicU64,
    /// Locked once per fsync by the thread, and when statistics are asked for.
    times: std::sync::Mutex<FsyncTimes>,
}

impl SyncStats {
    /// Runs one fsync and counts it.
    pub fn sync(&self, handle: &mut dyn SyncHandle) -> io::Result<()> {
        let started = Instant::now();
        let result = handle.sync();
        match &result {
            Ok(()) => {
                let took = started.elapsed();
                self.times.lock().unwrap_or_else(|e| e.into_inner()).record(took);
                self.fsyncs.fetch_add(1, Relaxed);
                self.micros.fetch_add(took.as_micros() as u64, Relaxed);
            }
            Err(_) => {
                self.errors.fetch_add(1, Relaxed);
            }
        }
        result
    }

    /// Adds what was counted to the log's own figures.
    pub fn add_to(&self, counters: &mut LogCounters, times: &mut FsyncTimes) {
        self.add_counters(counters);
        self.add_times(times);
    }

    /// Adds the counts alone: a few atomic loads, no lock.
    pub fn add_counters(&self, counters: &mut LogCounters) {
        counters.fsyncs += self.fsyncs.load(Relaxed);
        counters.fsync_micros += self.micros.load(Relaxed);
        counters.fsync_errors += self.errors.load(Relaxed);
    }

    /// Adds how long each fsync took (a histogram merge, under the thread's lock).
    pub fn add_times(&self, times: &mut FsyncTimes) {
        times.add(&self.times.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// What the thread tells the loop.
#[derive(Default)]
struct Shared {
    /// The highest round whose fsync succeeded / failed.
    done: AtomicU64,
    failed: AtomicU64,
    stats: SyncStats,
}

/// The outcome of the fsync in flight, once there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Every byte up to `mark` of the segment that was active is durable, as is `round`.
    Synced { round: u64, mark: u64 },
    Failed { round: u64 },
}

pub struct GroupCommit {
    jobs: Sender<(Box<dyn SyncHandle>, u64)>,
    shared: Arc<Shared>,
    /// The fsync running: its round and the segment length it covers.
    in_flight: Option<(u64, u64)>,
}

impl GroupCommit {
    pub fn spawn(shard: u32, notify: Notify) -> io::Result<GroupCommit> {
        let (jobs, rx) = crossbeam_channel::bounded::<(Box<dyn SyncHandle>, u64)>(1);
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::Builder::new().name(format!("caskade-commit-{shard}")).spawn(move || {
            for (mut handle, round) in rx {
                match s.stats.sync(&mut *handle) {
                    Ok(()) => s.done.store(round, Release),
                    Err(e) => {
                        log::error!("shard {shard}: fsync failed: {e}");
                        s.failed.store(round, Release);
                    }
                }
                notify();
            }
        })?;
        Ok(GroupCommit { jobs, shared, in_flight: None })
    }

    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none()
    }

    /// Starts an fsync of `handle` covering `round` and the segment up to `mark`. The caller
    /// checks [`is_idle`](Self::is_idle) first.
    pub fn start(&mut self, handle: Box<dyn SyncHandle>, round: u64, mark: u64) -> io::Result<()> {
        debug_assert!(self.in_flight.is_none());
        self.jobs.try_send((handle, round)).map_err(|_| io::Error::other("the commit thread is gone"))?;
        self.in_flight = Some((round, mark));
        Ok(())
    }

    /// Waits until the fsync in flight (if any) has finished, without taking its result in:
    /// for the rare fsync on the loop (a roll, a reload, a stop), which must not run beside it.
    pub fn wait(&self) {
        let Some((round, _)) = self.in_flight else { return };
        while self.shared.done.load(Acquire) < round && self.shared.failed.load(Acquire) < round {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    /// The fsync in flight, if it has finished.
    pub fn poll(&mut self) -> Option<Finished> {
        let (round, mark) = self.in_flight?;
        let finished = if self.shared.done.load(Acquire) >= round {
            Finished::Synced { round, mark }
        } else if self.shared.failed.load(Acquire) >= round {
            Finished::Failed { round }
        } else {
            return None;
        };
        self.in_flight = None;
        Some(finished)
    }

    pub fn stats(&self) -> &SyncStats {
        &self.shared.stats
    }
}
