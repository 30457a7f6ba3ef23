//! `caskade-loadgen`: a load generator for the memcached binary and text protocols.
//!
//! ```text
//!   main ── spawns ──> worker 0: Poll ─┬─ conn 0  (pipeline window, one write per refill)
//!    │                 worker 1: Poll  ├─ conn T
//!    │                   ...           └─ ...
//!    ├─ barrier: everyone connected (and prefilled); getrusage, clock start
//!    ├─ barrier: measured run starts
//!    └─ join: merge histograms and counters; getrusage, clock stop; print
//! ```
//!
//! The threads share nothing while they run. The generator's own CPU time per request is
//! reported so that it can be compared with the server's.

mod args;
mod conn;
mod keys;
mod report;
mod text;
mod worker;
mod ycsb;

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use args::Args;
use report::{Prefill, Report};
use worker::{Counters, Mix, Worker};

/// memcached's default item size limit is 1 MiB; caskade's -I goes further. Past this the
/// 32-bit body length and the buffers stop making sense for a benchmark.
const MAX_VALUE_SIZE: usize = 64 << 20;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if args.value_size() > MAX_VALUE_SIZE as u64 {
        eprintln!("--value-size (or --field-count x --field-length) must be at most {MAX_VALUE_SIZE}");
        return ExitCode::from(1);
    }
    if let Err(e) = args.check() {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let addr = match resolve(&args.server) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("--server {}: {e}", args.server);
            return ExitCode::from(1);
        }
    };
    let report = run(&args, addr);
    if report.connections == 0 {
        eprintln!("no connection to {} could be opened", args.server);
        return ExitCode::from(1);
    }
    let text = if args.json {
        report.json(&args)
    } else {
        report.text(&args)
    };
    // A closed stdout (`| head`) is not worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    if report.counters.errors() > 0
        || report
            .prefill
            .as_ref()
            .is_some_and(|p| p.counters.errors() > 0)
    {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn resolve(server: &str) -> std::io::Result<SocketAddr> {
    server
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
}

struct ThreadResult {
    worker: Worker,
    prefill: Counters,
}

fn run(args: &Args, addr: SocketAddr) -> Report {
    let threads = args.threads();
    let connections = args.connections as usize;
    let total_requests = args.requests.unwrap_or(u64::MAX);
    let mix = Mix {
        sets: args.set_ratio.sets,
        total: args.set_ratio.sets + args.set_ratio.gets,
        keys: args.key_space(),
        only_core: args.only_core,
    };
    // YCSB's inserts take key numbers from one counter, past the loaded records.
    let inserts = Arc::new(AtomicU64::new(args.key_space()));
    let depth = args.pipeline as usize;
    let prefill_depth = args.prefill_pipeline();
    // Barrier 1: all connected and prefilled. Barrier 2: the measured run starts.
    let ready = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let started = Instant::now();

    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let share = |total: u64| {
                total / threads as u64 + u64::from((t as u64) < total % threads as u64)
            };
            let conns = share(connections as u64) as usize;
            let budget = if total_requests == u64::MAX {
                u64::MAX
            } else {
                share(total_requests)
            };
            let key_space = args.key_space();
            let keys = (key_space * t as u64 / threads as u64)..(key_space * (t as u64 + 1) / threads as u64);
            let (ready, go) = (ready.clone(), go.clone());
            let chooser = args.ycsb().map(|w| ycsb::Chooser::new(w, key_space, inserts.clone()));
            let args = args.clone();
            thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || {
                    let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(t as u64);
                    let worker = Worker::connect(
                        addr,
                        conns,
                        depth.max(prefill_depth),
                        mix,
                        args.value_size() as usize,
                        seed,
                        args.text(),
                    )
                    .map(|w| w.with_ycsb(chooser));
                    let mut worker = match worker {
                        Ok(w) => Some(w),
                        Err(e) => {
                            eprintln!("thread {t}: {e}");
                            None
                        }
                    };
                    let mut prefill = Counters::default();
                    if let Some(w) = worker.as_mut().filter(|_| args.prefill) {
                        w.prefill(keys, prefill_depth, args.prefill_timeout());
                        prefill = std::mem::take(&mut w.counters);
                        // Connections that never opened count against the measured run too.
                        w.counters.connect_errors = prefill.connect_errors;
                    }
                    ready.wait();
                    go.wait();
                    let mut worker = worker?;
                    worker.measure(depth, args.duration(), budget, args.rate.map(|r| r / threads as f64));
                    Some(ThreadResult { worker, prefill })
                })
                .expect("spawn a loadgen thread")
        })
        .collect();

    ready.wait();
    let prefill_elapsed = started.elapsed();
    let cpu_before = cpu_time();
    let start = Instant::now();
    go.wait();
    let results: Vec<ThreadResult> = handles
        .into_iter()
        .filter_map(|h| h.join().ok().flatten())
        .collect();
    let elapsed = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);

    let mut counters = Counters::default();
    let mut prefill = Counters::default();
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .expect("static histogram bounds");
    let mut open = 0;
    for r in &results {
        counters.add(&r.worker.counters);
        prefill.add(&r.prefill);
        open += r.worker.opened();
        if let Err(e) = hist.add(&r.worker.hist) {
            log::error!("merging histograms: {e:?}");
        }
    }
    Report {
        counters,
        hist,
        elapsed,
        cpu,
        prefill: args.prefill.then_some(Prefill {
            keys: args.key_space(),
            elapsed: prefill_elapsed,
            counters: prefill,
        }),
        connections: open,
    }
}

/// User plus system CPU time of this process (all threads) so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
