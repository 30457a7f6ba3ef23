//! Per-command latency histograms, one set per core, merged on demand.
//!
//! Each core owns a [`Recorder`] and nobody else touches it: the hot path pays no lock and no
//! atomic. The admin thread asks every core for a copy ([`Recorder::snapshot`], through the
//! cores' mailboxes) and merges the copies with [`Latencies::add`].
//!
//! # What is measured, and at which resolution
//!
//! The clock is read twice per event-loop turn and never per request: when `poll` returns
//! ([`Recorder::wake`]) and at the end of the turn, after the turn's log records are committed
//! (and synced, with `--fsync always`) and its replies written to the sockets
//! ([`Recorder::end_turn`]). A request answered by the core that read it is timed from the
//! wake-up that found its bytes to the end of that turn. A request forwarded to the core that
//! owns its key carries that wake-up time in its return address, and is timed when its reply
//! has come back and been written, at the end of that later turn. So a latency is "bytes seen
//! by the event loop → reply handed to the kernel", at the resolution of a turn: the time a
//! request waited behind the other connections served in the same turn is counted, the time
//! it sat in the socket buffer before the wake-up is not; a request parsed from a backlog
//! when its connection became writable again is timed from that turn's wake-up. Values are
//! in microseconds, 1 µs to 60 s, at two significant digits (1 % resolution). Per request the
//! cost is one increment; per turn, two clock reads and a histogram update per command class
//! seen (`recorder_cost` below measures it).

use std::time::Instant;

use hdrhistogram::Histogram;

use crate::storage::Command;

/// Smallest and largest latency a histogram tracks, in microseconds.
pub const LOWEST_MICROS: u64 = 1;
pub const HIGHEST_MICROS: u64 = 60_000_000;
/// Significant digits kept: 2 → values within 1 %, about 2 k buckets (16 KiB) per histogram.
const SIGNIFICANT_DIGITS: u8 = 2;

/// The command classes that get a histogram each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// GET and its forms, GAT (get-and-touch) included.
    Get = 0,
    /// SET, ADD, REPLACE, APPEND, PREPEND, CAS.
    Set = 1,
    Delete = 2,
    /// INCREMENT and DECREMENT.
    IncrDecr = 3,
    Touch = 4,
    /// Everything else: FLUSH, NOOP, VERSION, STAT, VERBOSITY, QUIT, …
    Other = 5,
}

pub const OPS: usize = 6;

impl Op {
    pub const ALL: [Op; OPS] = [Op::Get, Op::Set, Op::Delete, Op::IncrDecr, Op::Touch, Op::Other];

    /// The name in JSON keys and in the Prometheus `op` label.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::IncrDecr => "incr_decr",
            Op::Touch => "touch",
            Op::Other => "other",
        }
    }

    pub fn of<B>(cmd: &Command<B>) -> Op {
        match cmd {
            Command::Get { .. } | Command::GetAndTouch { .. } => Op::Get,
            Command::Store { .. } => Op::Set,
            Command::Delete { .. } => Op::Delete,
            Command::Arith { .. } => Op::IncrDecr,
            Command::Touch { .. } => Op::Touch,
            Command::Flush { .. } => Op::Other,
        }
    }

    pub fn from_u8(b: u8) -> Op {
        Op::ALL.get(b as usize).copied().unwrap_or(Op::Other)
    }
}

/// One histogram per [`Op`], and the exact sum of what each recorded; and the fsyncs of the
/// core's log (filled in by the core from its shard when a copy is asked for).
#[derive(Clone, Debug)]
pub struct Latencies {
    hists: Vec<Histogram<u64>>,
    sums: [u64; OPS],
    pub fsync: FsyncTimes,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS).expect("constant histogram bounds are valid")
}

/// The percentiles of `h`, whose values add up to `sum` microseconds.
fn summarize(h: &Histogram<u64>, sum: u64) -> Summary {
    if h.is_empty() {
        return Summary { count: 0, mean: 0.0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    }
    Summary {
        count: h.len(),
        mean: sum as f64 / h.len() as f64,
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// How many values of `h` are at most `micros` (for Prometheus buckets).
fn at_most(h: &Histogram<u64>, micros: u64) -> u64 {
    if micros >= h.max() {
        return h.len();
    }
    h.count_between(0, micros)
}

/// How long each fsync of a shard's log took, in microseconds, as the request latencies
/// (1 µs to 60 s, 1 %). Every fsync counted in the `fsyncs` statistic is recorded here: the
/// log's own on the event loop (`--fsync always`, rolls, reloads, stops) in a histogram
/// only the core touches, and the background syncer's (`--fsync everysec`) in one of its
/// own, behind a lock taken once per fsync and when the admin asks, never per request.
#[derive(Clone, Debug)]
pub struct FsyncTimes {
    hist: Histogram<u64>,
    sum: u64,
}

impl Default for FsyncTimes {
    fn default() -> Self {
        FsyncTimes { hist: new_histogram(), sum: 0 }
    }
}

impl FsyncTimes {
    pub fn record(&mut self, took: std::time::Duration) {
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let _ = self.hist.record(micros.clamp(LOWEST_MICROS, HIGHEST_MICROS));
        self.sum = self.sum.wrapping_add(micros);
    }

    pub fn add(&mut self, other: &FsyncTimes) {
        let _ = self.hist.add(&other.hist);
        self.sum = self.sum.wrapping_add(other.sum);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Total microseconds recorded (exact, not from the buckets).
    pub fn sum_micros(&self) -> u64 {
        self.sum
    }

    pub fn summary(&self) -> Summary {
        summarize(&self.hist, self.sum)
    }

    pub fn count_at_most(&self, micros: u64) -> u64 {
        at_most(&self.hist, micros)
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

/// What `/stats` shows of one histogram, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies { hists: (0..OPS).map(|_| new_histogram()).collect(), sums: [0; OPS], fsync: FsyncTimes::default() }
    }

    /// Records `n` requests of `op` that took `micros` each (clamped to the tracked range).
    #[inline]
    pub fn record(&mut self, op: Op, micros: u64, n: u64) {
        let v = micros.clamp(LOWEST_MICROS, HIGHEST_MICROS);
        // Cannot fail: the value is within the bounds and a u64 count does not overflow.
        let _ = self.hists[op as usize].record_n(v, n);
        self.sums[op as usize] = self.sums[op as usize].wrapping_add(micros.saturating_mul(n));
    }

    /// Adds another core's histograms to these.
    pub fn add(&mut self, other: &Latencies) {
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            // Same bounds on both sides, so this cannot fail.
            let _ = mine.add(theirs);
        }
        for (mine, theirs) in self.sums.iter_mut().zip(other.sums) {
            *mine = mine.wrapping_add(theirs);
        }
        self.fsync.add(&other.fsync);
    }

    pub fn histogram(&self, op: Op) -> &Histogram<u64> {
        &self.hists[op as usize]
    }

    /// Total microseconds recorded for `op` (exact, not from the buckets).
    pub fn sum_micros(&self, op: Op) -> u64 {
        self.sums[op as usize]
    }

    pub fn summary(&self, op: Op) -> Summary {
        summarize(self.histogram(op), self.sums[op as usize])
    }

    /// How many recorded values of `op` are at most `micros` (for histogram buckets).
    pub fn count_at_most(&self, op: Op, micros: u64) -> u64 {
        at_most(self.histogram(op), micros)
    }
}

/// When a turn started: microseconds since the core's recorder was made, wrapping (every
/// ~71 minutes; a difference of two stamps is right as long as it is shorter).
pub type Stamp = u32;

/// A core's latency bookkeeping: its histograms, and the requests answered this turn.
pub struct Recorder {
    epoch: Instant,
    latencies: Latencies,
    /// When this turn's `poll` returned.
    woke: Stamp,
    /// Requests read and answered here this turn, by [`Op`].
    served: [u32; OPS],
    /// Replies from other cores written this turn: when their request was seen, and its op.
    returned: Vec<(Stamp, Op)>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { epoch: Instant::now(), latencies: Latencies::new(), woke: 0, served: [0; OPS], returned: Vec::new() }
    }

    #[inline]
    fn now(&self) -> Stamp {
        let d = self.epoch.elapsed();
        (d.as_secs() as u32).wrapping_mul(1_000_000).wrapping_add(d.subsec_micros())
    }

    /// `poll` returned: what is read in this turn was there by now.
    #[inline]
    pub fn wake(&mut self) {
        if cfg!(feature = "stats-off") {
            return;
        }
        self.woke = self.now();
    }

    /// When this turn woke, to travel with a forwarded request.
    #[inline]
    pub fn current(&self) -> Stamp {
        self.woke
    }

    /// A request read this turn was answered here; its reply leaves this turn.
    #[inline]
    pub fn served(&mut self, op: Op) {
        if cfg!(feature = "stats-off") {
            return;
        }
        self.served[op as usize] += 1;
    }

    /// Another core answered a request seen at `woke`; its reply leaves this turn.
    #[inline]
    pub fn returned(&mut self, op: Op, woke: Stamp) {
        if cfg!(feature = "stats-off") {
            return;
        }
        self.returned.push((woke, op));
    }

    /// The turn's replies are written: records every request answered in it.
    #[inline]
    pub fn end_turn(&mut self) {
        if self.served == [0; OPS] && self.returned.is_empty() {
            return;
        }
        let now = self.now();
        let micros = u64::from(now.wrapping_sub(self.woke));
        for op in Op::ALL {
            let n = std::mem::take(&mut self.served[op as usize]);
            if n > 0 {
                self.latencies.record(op, micros, u64::from(n));
            }
        }
        for (woke, op) in self.returned.drain(..) {
            self.latencies.record(op, u64::from(now.wrapping_sub(woke)), 1);
        }
    }

    /// A copy of this core's histograms.
    pub fn snapshot(&self) -> Latencies {
        self.latencies.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_through_u8() {
        for op in Op::ALL {
            assert_eq!(Op::from_u8(op as u8), op);
        }
        assert_eq!(Op::from_u8(200), Op::Other);
        assert_eq!(Op::of(&Command::Get { key: b"k" }), Op::Get);
        assert_eq!(Op::of(&Command::<&[u8]>::Flush { delay: 0 }), Op::Other);
    }

    #[test]
    fn fsync_times_merge_and_summarize() {
        use std::time::Duration;
        let mut a = FsyncTimes::default();
        for ms in 1..=10 {
            a.record(Duration::from_millis(ms));
        }
        let mut l = Latencies::new();
        l.fsync.record(Duration::from_micros(100));
        l.add(&Latencies { fsync: a, ..Latencies::new() });
        let s = l.fsync.summary();
        assert_eq!(s.count, 11);
        assert_eq!(l.fsync.sum_micros(), 55_100);
        assert!(s.max >= 9_900 && s.max <= 10_100, "{}", s.max);
        assert_eq!(l.fsync.count_at_most(500), 1);
        assert_eq!(l.fsync.count_at_most(60_000_000), 11);
        assert_eq!(Latencies::new().fsync.summary().count, 0);
    }

    #[test]
    fn summaries_and_merging() {
        let mut a = Latencies::new();
        for v in 1..=100 {
            a.record(Op::Get, v, 1);
        }
        let mut b = Latencies::new();
        b.record(Op::Get, 1000, 1);
        b.record(Op::Set, 5, 3);
        a.add(&b);
        let s = a.summary(Op::Get);
        assert_eq!(s.count, 101);
        assert_eq!(s.p50, 51);
        assert!(s.max >= 990 && s.max <= 1010, "{}", s.max);
        assert_eq!(a.sum_micros(Op::Get), 5050 + 1000);
        assert_eq!(a.summary(Op::Set).count, 3);
        assert_eq!(a.summary(Op::Delete).count, 0);
        assert_eq!(a.count_at_most(Op::Get, 10), 10);
        assert_eq!(a.count_at_most(Op::Get, 1_000_000), 101);
        // Out of range values are clamped, not lost.
        a.record(Op::Touch, 0, 1);
        a.record(Op::Touch, u64::MAX / 2, 1);
        assert_eq!(a.summary(Op::Touch).count, 2);
    }

    /// What the bookkeeping costs per request, for bench/RESULTS.md:
    /// `cargo test --release --lib recorder_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn recorder_cost() {
        for per_read in [1u32, 32] {
            let mut r = Recorder::new();
            let turns = 2_000_000 / per_read;
            let started = Instant::now();
            for _ in 0..turns {
                r.wake();
                for _ in 0..per_read {
                    r.served(std::hint::black_box(Op::Get));
                }
                r.end_turn();
            }
            let ns = started.elapsed().as_nanos() as f64 / f64::from(turns * per_read);
            println!("{per_read} request(s) per read and turn: {ns:.1} ns per request");
            assert_eq!(r.snapshot().summary(Op::Get).count, u64::from(turns * per_read));
        }
    }

    #[test]
    #[cfg(not(feature = "stats-off"))]
    fn recorder_times_turns_and_returns() {
        let mut r = Recorder::new();
        r.wake();
        r.served(Op::Get);
        r.served(Op::Get);
        let forwarded_at = r.current();
        r.served(Op::Set);
        r.end_turn();
        r.returned(Op::Delete, forwarded_at);
        r.end_turn();
        let l = r.snapshot();
        assert_eq!(l.summary(Op::Get).count, 2);
        assert_eq!(l.summary(Op::Set).count, 1);
        assert_eq!(l.summary(Op::Delete).count, 1);
        // A request served in a turn with no wake-up of its own is still counted.
        r.served(Op::Other);
        r.end_turn();
        assert_eq!(r.snapshot().summary(Op::Other).count, 1);
    }
}
