//! A model-based property test of a shard on disk (issue 3): random sequences of
//! set/add/replace/append/prepend/incr/decr/delete/touch/gat/get/flush, the clock moving
//! forward, commits, and restarts, checked against a `HashMap` model after every step.
//!
//! Restarts are clean (`close()`: everything written, hints and all), crash-like (the shard
//! dropped without a close: what was appended since the last commit is lost, as a process
//! killed between two event-loop turns loses it), or a power loss (every file cut back to
//! what it had synced: under `--fsync never` that is what the last roll, merge or close
//! synced). A segment roll writes and syncs the records queued before it, so the model moves
//! its written and synced states forward at each roll too. Segments are a few KiB (many
//! rolls), values from 64 bytes up are compressed where that pays, and one setting keeps
//! memory so small that most values are read back from disk. Merge compaction runs in small
//! steps after a turn's commit, as the event loop runs it, so merges interleave with writes,
//! rolls and restarts.
//!
//! 1000 cases by default (about a second on tmpfs); `PROPTEST_CASES=20000 cargo test
//! --release --test storage_model` for a longer run.

mod durable;

use std::collections::HashMap;
use std::sync::Arc;

use caskade::storage::disk::merge::MergePolicy;
use caskade::storage::disk::{Fsync, SharedFs};
use caskade::storage::{Command, Outcome, Shard, StoreMode};
use durable::{own, FaultFs, Faults, Owned, Setup, NOW};
use proptest::prelude::*;

const MAX_ITEM_SIZE: usize = 2048;
const KEYS: usize = 10;

fn key_name(k: usize) -> Vec<u8> {
    match k {
        // The longest key the protocol allows.
        8 => vec![b'x'; 250],
        _ => format!("key:{k}").into_bytes(),
    }
}

/// memcached's expiry argument, in the forms that behave differently.
#[derive(Clone, Copy, Debug)]
enum Exp {
    Never,
    /// Seconds from now.
    Relative(u32),
    /// An absolute unix time already past: the item is gone at once.
    PastAbsolute,
    /// An absolute unix time this many seconds ahead.
    FutureAbsolute(u32),
}

impl Exp {
    fn arg(self, now: u32) -> u32 {
        match self {
            Exp::Never => 0,
            Exp::Relative(s) => s,
            Exp::PastAbsolute => now - 1,
            Exp::FutureAbsolute(s) => now + s,
        }
    }
}

/// The model's reading of an expiry argument (memcached's rules).
fn absolute(exptime: u32, now: u32) -> u32 {
    const THIRTY_DAYS: u32 = 60 * 60 * 24 * 30;
    match exptime {
        0 => 0,
        e if e <= THIRTY_DAYS => now + e,
        e if e <= now => 1,
        e => e,
    }
}

#[derive(Clone, Copy, Debug)]
enum CasPick {
    Zero,
    /// The item's current CAS (an arbitrary one when it is missing).
    Current,
    /// A CAS the item does not have.
    Stale,
}

#[derive(Clone, Debug)]
enum Val {
    /// Short lowercase text: never compressed.
    Text(u8, usize),
    /// Long and repetitive: stored compressed.
    Repetitive(u8, usize),
    /// Long and random: compression does not pay, stored as is.
    Noise(u64, usize),
    /// A counter.
    Number(u64),
}

impl Val {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            Val::Text(seed, len) => (0..len).map(|i| b'a' + ((seed as usize + i * 7) % 26) as u8).collect(),
            Val::Repetitive(seed, len) => (0..len).map(|i| b"abcdefgh"[(i + seed as usize) % 3]).collect(),
            Val::Noise(mut x, len) => (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect(),
            Val::Number(n) => n.to_string().into_bytes(),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Store { mode: StoreMode, key: usize, value: Val, flags: u32, exp: Exp, cas: CasPick },
    Arith { incr: bool, key: usize, delta: u64, initial: Option<u64>, exp: Exp },
    Delete { key: usize, cas: CasPick },
    Touch { key: usize, exp: Exp },
    GetAndTouch { key: usize, exp: Exp },
    Get { key: usize },
    Flush { delay: u32 },
    Advance { secs: u32 },
    Commit,
    /// Steps of merge compaction, as the event loop runs them: after the turn's commit.
    Maintain,
    Restart(How),
}

#[derive(Clone, Copy, Debug)]
enum How {
    Clean,
    Crash,
    PowerLoss,
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        6 => Just(Exp::Never),
        3 => (1u32..6).prop_map(Exp::Relative),
        1 => Just(Exp::PastAbsolute),
        1 => (1u32..6).prop_map(Exp::FutureAbsolute),
    ]
}

fn cas_pick() -> impl Strategy<Value = CasPick> {
    prop_oneof![4 => Just(CasPick::Zero), 2 => Just(CasPick::Current), 1 => Just(CasPick::Stale)]
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        4 => (any::<u8>(), 0usize..40).prop_map(|(s, n)| Val::Text(s, n)),
        2 => (any::<u8>(), 64usize..1500).prop_map(|(s, n)| Val::Repetitive(s, n)),
        2 => (any::<u64>().prop_map(|x| x | 1), 64usize..1000).prop_map(|(s, n)| Val::Noise(s, n)),
        2 => prop_oneof![0u64..100, Just(u64::MAX - 1), any::<u64>()].prop_map(Val::Number),
    ]
}

fn store_mode() -> impl Strategy<Value = StoreMode> {
    prop_oneof![
        4 => Just(StoreMode::Set),
        1 => Just(StoreMode::Add),
        1 => Just(StoreMode::Replace),
        1 => Just(StoreMode::Append),
        1 => Just(StoreMode::Prepend),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = || 0..KEYS;
    prop_oneof![
        12 => (store_mode(), key(), val(), any::<u32>(), exp(), cas_pick()).prop_map(|(mode, key, value, flags, exp, cas)| {
            // Only SET takes a CAS here; the others' CAS rules are not about durability.
            let cas = if mode == StoreMode::Set { cas } else { CasPick::Zero };
            Op::Store { mode, key, value, flags, exp, cas }
        }),
        4 => (any::<bool>(), key(), prop_oneof![0u64..10, any::<u64>()], proptest::option::of(0u64..1000), exp())
            .prop_map(|(incr, key, delta, initial, exp)| Op::Arith { incr, key, delta, initial, exp }),
        3 => (key(), cas_pick()).prop_map(|(key, cas)| Op::Delete { key, cas }),
        2 => (key(), exp()).prop_map(|(key, exp)| Op::Touch { key, exp }),
        1 => (key(), exp()).prop_map(|(key, exp)| Op::GetAndTouch { key, exp }),
        3 => key().prop_map(|key| Op::Get { key }),
        1 => (0u32..4).prop_map(|delay| Op::Flush { delay }),
        3 => (1u32..4).prop_map(|secs| Op::Advance { secs }),
        4 => Just(Op::Commit),
        3 => Just(Op::Maintain),
        3 => prop_oneof![Just(How::Clean), Just(How::Crash), Just(How::PowerLoss)].prop_map(Op::Restart),
    ]
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    value: Vec<u8>,
    flags: u32,
    expiry: u32,
    cas: u64,
}

/// What the shard should hold, per memcached's rules.
#[derive(Clone, Debug, Default)]
struct Model {
    items: HashMap<Vec<u8>, Item>,
    flush_at: Option<u32>,
    /// The highest CAS given so far: every new one must be higher (invariant 5).
    max_cas: u64,
    /// Whether that is checked (see [`Run::merges`]).
    check_cas: bool,
}

impl Model {
    fn tick(&mut self, now: u32) {
        if self.flush_at.is_some_and(|at| now >= at) {
            self.flush_at = None;
            self.items.clear();
        }
    }

    /// The live item under `key`; an expired one is forgotten.
    fn live(&mut self, key: &[u8], now: u32) -> Option<&mut Item> {
        if self.items.get(key).is_some_and(|it| it.expiry != 0 && it.expiry <= now) {
            self.items.remove(key);
        }
        self.items.get_mut(key)
    }

    fn take_cas(&mut self, fresh: u64) -> u64 {
        assert!(fresh > self.max_cas || !self.check_cas, "new CAS {fresh} is not above {} given before", self.max_cas);
        self.max_cas = self.max_cas.max(fresh);
        fresh
    }

    fn counter(value: &[u8]) -> Option<u64> {
        if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(value).ok()?.parse().ok()
    }

    /// Applies a command and says what the shard must answer; `fresh` is the CAS the shard
    /// gave (0 if none), taken as the new item's CAS when the command stores.
    fn apply(&mut self, cmd: &Command<Vec<u8>>, now: u32, fresh: u64) -> Owned {
        match cmd {
            Command::Get { key } => match self.live(key, now) {
                Some(it) => Outcome::Value { flags: it.flags, cas: it.cas, value: it.value.clone() },
                None => Outcome::NotFound,
            },
            Command::Touch { key, exptime } | Command::GetAndTouch { key, exptime } => {
                let touch = matches!(cmd, Command::Touch { .. });
                match self.live(key, now) {
                    Some(it) => {
                        it.expiry = absolute(*exptime, now);
                        let value = if touch { Vec::new() } else { it.value.clone() };
                        Outcome::Value { flags: it.flags, cas: it.cas, value }
                    }
                    None => Outcome::NotFound,
                }
            }
            Command::Store { mode, key, value, flags, exptime, cas } => {
                if value.len() > MAX_ITEM_SIZE {
                    return Outcome::TooLarge;
                }
                let old = self.live(key, now).cloned();
                let item = match (mode, &old) {
                    (StoreMode::Add, Some(_)) => return Outcome::NotStored,
                    (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => return Outcome::NotStored,
                    (_, None) if *cas != 0 => return Outcome::NotFound,
                    (_, Some(o)) if *cas != 0 && o.cas != *cas => return Outcome::Exists,
                    (StoreMode::Append | StoreMode::Prepend, Some(o)) => {
                        let value = if *mode == StoreMode::Append { [&o.value[..], value].concat() } else { [value, &o.value[..]].concat() };
                        if value.len() > MAX_ITEM_SIZE {
                            return Outcome::TooLarge;
                        }
                        Item { value, flags: o.flags, expiry: o.expiry, cas: 0 }
                    }
                    _ => Item { value: value.clone(), flags: *flags, expiry: absolute(*exptime, now), cas: 0 },
                };
                let cas = self.take_cas(fresh);
                self.items.insert(key.clone(), Item { cas, ..item });
                Outcome::Done { cas }
            }
            Command::Delete { key, cas } => {
                let Some(it) = self.live(key, now) else { return Outcome::NotFound };
                if *cas != 0 && it.cas != *cas {
                    return Outcome::Exists;
                }
                self.items.remove(key);
                Outcome::Done { cas: 0 }
            }
            Command::Arith { incr, key, delta, initial, exptime, .. } => {
                let (value, flags, expiry) = match self.live(key, now) {
                    None => match initial {
                        None => return Outcome::NotFound,
                        Some(i) => (*i, 0, absolute(*exptime, now)),
                    },
                    Some(it) => {
                        let Some(current) = Model::counter(&it.value) else { return Outcome::NonNumeric };
                        let value = if *incr { current.wrapping_add(*delta) } else { current.saturating_sub(*delta) };
                        (value, it.flags, it.expiry)
                    }
                };
                let cas = self.take_cas(fresh);
                self.items.insert(key.clone(), Item { value: value.to_string().into_bytes(), flags, expiry, cas });
                Outcome::Counter { value, cas }
            }
            Command::Flush { delay } => {
                if *delay == 0 {
                    self.flush_at = None;
                    self.items.clear();
                } else {
                    self.flush_at = Some(absolute(*delay, now));
                }
                Outcome::Done { cas: 0 }
            }
        }
    }
}

/// The shard under test, the model of what it holds, of what a crash keeps (written) and of
/// what a power loss keeps (synced).
struct Run {
    dir: tempfile::TempDir,
    setup: Setup,
    /// The real file system, keeping track of what was synced.
    fs: SharedFs,
    faults: Arc<Faults>,
    shard: Option<Shard>,
    now: u32,
    model: Model,
    durable: Model,
    synced: Model,
    restarts: usize,
    /// Merges allowed (CAS values are checked to rise across restarts all the same).
    merge: bool,
}

/// Merges as soon as a closed segment is a third dead, a few hundred bytes per step.
const EAGER_MERGES: MergePolicy = MergePolicy { dead_fraction: 0.3, min_dead_bytes: 1, max_live_bytes: 1 << 20, step_bytes: 700 };

impl Run {
    fn new(setup: Setup, merge: bool) -> Run {
        let dir = durable::scratch_dir();
        let (fs, faults) = FaultFs::new();
        let (mut shard, _) = setup.open(fs.clone(), dir.path(), NOW).expect("open");
        if merge {
            shard.set_merge_policy(EAGER_MERGES);
        }
        let model = Model { check_cas: true, ..Model::default() };
        Run {
            dir,
            setup,
            fs,
            faults,
            shard: Some(shard),
            now: NOW,
            model: model.clone(),
            durable: model.clone(),
            synced: model,
            restarts: 0,
            merge,
        }
    }

    /// What a commit makes durable: written, and synced under `always`.
    fn committed(&mut self) {
        self.durable = self.model.clone();
        if self.setup.fsync == Fsync::Always {
            self.synced = self.model.clone();
        }
    }

    fn shard(&mut self) -> &mut Shard {
        self.shard.as_mut().expect("the shard is open")
    }

    fn active_segment(&self) -> u32 {
        self.shard.as_ref().and_then(|s| s.log()).expect("a shard on disk").active_id()
    }

    /// Runs `step` on the shard; if the log rolled meanwhile, everything queued before the
    /// step was written and synced by the roll, and a crash or a power loss now keeps it.
    fn logged<T>(&mut self, step: impl FnOnce(&mut Run) -> T) -> T {
        let before = (self.active_segment(), self.model.clone());
        let out = step(self);
        if self.active_segment() != before.0 {
            self.durable = before.1.clone();
            self.synced = before.1;
        }
        out
    }

    fn execute(&mut self, cmd: Command<Vec<u8>>) -> Result<(), TestCaseError> {
        // A delayed flush falls due before the command, as a step of its own.
        let now = self.now;
        self.logged(|r| {
            r.shard().tick(now);
            r.model.tick(now);
        });
        let got = self.logged(|r| own(r.shard().execute(&cmd, now)));
        let fresh = match got {
            Outcome::Done { cas } | Outcome::Counter { cas, .. } => cas,
            _ => 0,
        };
        let want = self.model.apply(&cmd, now, fresh);
        prop_assert_eq!(got, want, "{:?} at +{}s", cmd, now - NOW);
        Ok(())
    }

    fn restart(&mut self, how: How) -> Result<(), TestCaseError> {
        let mut shard = self.shard.take().expect("the shard is open");
        match how {
            How::Clean => {
                shard.close().expect("close");
                self.durable = self.model.clone();
                self.synced = self.model.clone();
            }
            // What was written survives in the page cache, and start-up syncs it before it
            // serves it (the test file system remembers what was synced across the crash).
            How::Crash => {
                self.model = self.durable.clone();
                self.synced = self.durable.clone();
            }
            How::PowerLoss => {
                self.faults.power_loss();
                self.model = self.synced.clone();
                self.durable = self.synced.clone();
            }
        }
        drop(shard);
        let (mut shard, report) = self.setup.open(self.fs.clone(), self.dir.path(), self.now).expect("reopen");
        if self.merge {
            shard.set_merge_policy(EAGER_MERGES);
        }
        self.shard = Some(shard);
        self.restarts += 1;
        prop_assert_eq!((report.bytes_cut, report.corrupt_records), (0, 0), "recovery of files no test damaged: {:?}", report);
        self.check_all()
    }

    /// Every key as the model has it, and nothing more.
    fn check_all(&mut self) -> Result<(), TestCaseError> {
        for k in 0..KEYS {
            self.execute(Command::Get { key: key_name(k) })?;
        }
        let (len, want) = (self.shard().len(), self.model.items.len());
        prop_assert_eq!(len, want, "items in the shard");
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now;
        let current_cas = |m: &mut Model, key: &[u8]| m.live(key, now).map(|it| it.cas);
        match op {
            Op::Store { mode, key, value, flags, exp, cas } => {
                let k = key_name(*key);
                let cas = match cas {
                    CasPick::Zero => 0,
                    CasPick::Current => current_cas(&mut self.model, &k).unwrap_or(987_654),
                    CasPick::Stale => current_cas(&mut self.model, &k).map_or(987_655, |c| c + 1000),
                };
                self.execute(Command::Store { mode: *mode, key: k, value: value.bytes(), flags: *flags, exptime: exp.arg(now), cas })
            }
            Op::Arith { incr, key, delta, initial, exp } => self.execute(Command::Arith {
                incr: *incr,
                key: key_name(*key),
                delta: *delta,
                initial: *initial,
                exptime: exp.arg(now),
                cas: 0,
            }),
            Op::Delete { key, cas } => {
                let k = key_name(*key);
                let cas = match cas {
                    CasPick::Zero => 0,
                    CasPick::Current => current_cas(&mut self.model, &k).unwrap_or(987_654),
                    CasPick::Stale => current_cas(&mut self.model, &k).map_or(987_655, |c| c + 1000),
                };
                self.execute(Command::Delete { key: k, cas })
            }
            Op::Touch { key, exp } => self.execute(Command::Touch { key: key_name(*key), exptime: exp.arg(now) }),
            Op::GetAndTouch { key, exp } => self.execute(Command::GetAndTouch { key: key_name(*key), exptime: exp.arg(now) }),
            Op::Get { key } => self.execute(Command::Get { key: key_name(*key) }),
            Op::Flush { delay } => self.execute(Command::Flush { delay: *delay }),
            Op::Advance { secs } => {
                self.now += secs;
                Ok(())
            }
            Op::Commit => {
                self.shard().commit().expect("commit");
                self.committed();
                Ok(())
            }
            Op::Maintain => {
                // As a turn of the event loop: tick, commands (none here), commit, merge steps.
                self.logged(|r| {
                    r.shard().tick(now);
                    r.model.tick(now);
                });
                self.shard().commit().expect("commit");
                self.committed();
                let merges = self.shard().counters().merges;
                self.logged(|r| {
                    for _ in 0..4 {
                        r.shard().maintain(now);
                    }
                });
                if self.shard().counters().merges > merges {
                    // A merge syncs the log before its output replaces its inputs.
                    self.synced = self.model.clone();
                }
                Ok(())
            }
            Op::Restart(how) => self.restart(*how),
        }
    }
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        // Ample memory, or so little that most values live on disk only.
        prop_oneof![Just(1usize << 20), Just(6 << 10)],
        prop_oneof![Just(3000u64), Just(8192)],
        prop_oneof![Just(Fsync::Always), Just(Fsync::Never)],
    )
        .prop_map(|(memory_limit, segment_size, fsync)| Setup {
            memory_limit,
            max_item_size: MAX_ITEM_SIZE,
            segment_size,
            compress_min: 64,
            fsync,
            ..Setup::default()
        })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_shard_on_disk_agrees_with_a_hashmap_across_restarts(setup in setup(), merge in any::<bool>(), ops in proptest::collection::vec(op(), 1..160)) {
        let mut run = Run::new(setup, merge);
        for op in &ops {
            run.step(op)?;
        }
        // A last power loss, crash and clean restart: each must find the model's data.
        run.restart(How::PowerLoss)?;
        run.restart(How::Crash)?;
        run.restart(How::Clean)?;
    }
}

/// Fixed sequences for what random ones reach only now and then.
#[test]
fn a_delayed_flush_that_falls_due_while_the_shard_is_down_drops_later_writes_too() {
    // memcached's FLUSH with a delay drops every item stored before its time, including
    // those stored after the flush command; a restart after that time must agree.
    for clean in [true, false] {
        let mut run = Run::new(Setup::default(), false);
        let steps = [
            Op::Store { mode: StoreMode::Set, key: 0, value: Val::Text(1, 5), flags: 0, exp: Exp::Never, cas: CasPick::Zero },
            Op::Flush { delay: 3 },
            Op::Store { mode: StoreMode::Set, key: 1, value: Val::Text(2, 5), flags: 0, exp: Exp::Never, cas: CasPick::Zero },
            Op::Commit,
            Op::Advance { secs: 5 },
            Op::Restart(if clean { How::Clean } else { How::Crash }),
            Op::Store { mode: StoreMode::Set, key: 2, value: Val::Text(3, 5), flags: 0, exp: Exp::Never, cas: CasPick::Zero },
            Op::Commit,
            Op::Restart(How::Crash),
        ];
        for op in &steps {
            run.step(op).unwrap_or_else(|e| panic!("clean={clean} {op:?}: {e}"));
        }
        assert!(run.restarts >= 2);
    }
}
