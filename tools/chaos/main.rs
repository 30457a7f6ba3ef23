//! caskade-chaos: runs a real caskade cluster (or one node) on loopback, breaks it on
//! purpose (kill -9, SIGSTOP, partitions, one-way cuts, slow and lossy links through a
//! fault proxy per peer link), records what every client saw, and checks the history:
//! linearizability per key (WGL search with memoisation), acknowledged writes present at
//! the end and in the backup's copy while the primary is dead (GET_REPLICA), no read of a
//! value nobody wrote, one primary acknowledging per partition and epoch.
//!
//! ```text
//!  clients ──▶ node a ──▶ proxy(b) ──▶ node b      history.jsonl ──▶ check ──▶ report.json
//!         ──▶ node b ──▶ proxy(c) ──▶ node c                                    timeline.svg
//!         ──▶ node c ──▶ proxy(a) ──▶ node a      nemesis: kill/stop/cut/hold/delay/lossy
//! ```
//! Exit status: 0 every run valid, 1 a violation found, 2 the harness itself failed (one
//! run, three times).

mod check;
mod client;
mod cluster;
mod history;
mod model;
mod nemesis;
mod proxy;
mod report;
mod rng;
mod run;
mod svg;
mod wgl;
mod workload;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(name = "caskade-chaos", about = "Break a real caskade cluster on purpose and check what the clients saw")]
pub struct Args {
    /// Nodes (1 = a single node, no cluster file).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Faults to choose from, comma-separated: kill, pause, partition-one, partition-majority,
    /// bridge, kill-isolated, one-way, delay, lossy (those that need a cluster are skipped
    /// with one node).
    #[arg(long, default_value = "kill,pause,partition-one", value_delimiter = ',')]
    pub nemesis: Vec<String>,
    /// The seed of the schedule and the workload; run k uses seed + k.
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 1)]
    pub runs: u64,
    /// Seconds of load before the first fault.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    /// Seconds during which faults are injected.
    #[arg(long, default_value_t = 10.0)]
    pub faults_s: f64,
    /// Seconds of load after the last heal, before the final reads.
    #[arg(long, default_value_t = 2.0)]
    pub recover_s: f64,
    #[arg(long, default_value_t = 1000)]
    pub fault_min_ms: u64,
    #[arg(long, default_value_t = 3000)]
    pub fault_max_ms: u64,
    /// Between a heal and the next fault.
    #[arg(long, default_value_t = 1000)]
    pub quiet_ms: u64,
    /// Client connections (spread over the nodes).
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Keys (names kN), chosen so that every node is the primary of about as many.
    #[arg(long, default_value_t = 10)]
    pub keys: u32,
    #[arg(long, default_value_t = 20_000)]
    pub max_ops_per_client: u64,
    /// Each client's operations per second at most (the checker's search grows with the
    /// operations in flight together, so a modest rate keeps every key checkable).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// A client's deadline for one reply; past it the outcome is unknown.
    #[arg(long, default_value_t = 2000)]
    pub op_timeout_ms: u64,
    /// The cluster file's forward_timeout_ms.
    #[arg(long, default_value_t = 500)]
    pub forward_timeout_ms: u64,
    /// The cluster file's durability: when a write is acknowledged (none, majority,
    /// persist_majority). Under majority every acknowledged write must be in its backup's
    /// copy while its primary is dead; `none` is the known-bad setting for that check.
    #[arg(long, default_value = "majority", value_parser = ["none", "majority", "persist_majority"])]
    pub durability: String,
    /// The cluster file's durability_timeout_ms (a durable write not confirmed by then gets
    /// 0xa3, "sync write ambiguous": an unknown outcome). Below --op-timeout-ms, so that
    /// clients see the status rather than a timeout.
    #[arg(long, default_value_t = 1000)]
    pub durability_timeout_ms: u64,
    /// The cluster file's replicas (backups per partition). The backup copies are read
    /// (GET_REPLICA reads the first backup) only with 1: with more, a majority need not
    /// include the first backup.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// The linearizability search's time per key before it says "too hard".
    #[arg(long, default_value_t = 2000)]
    pub check_budget_ms: u64,
    /// The nodes' --fsync.
    #[arg(long, default_value = "always")]
    pub fsync: String,
    /// Run the nodes --in-memory (a known-bad setting under kill: acknowledged writes are lost).
    #[arg(long)]
    pub in_memory: bool,
    /// Known-bad: node a runs with a cluster file that leaves the last node out, so it writes
    /// as primary partitions another node owns (the split-brain check must fail).
    /// Its links are refused (the maps differ); use with --durability none.
    #[arg(long)]
    pub rogue_map: bool,
    /// Where the runs' files go (history.jsonl, report.json, timeline.svg, node logs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The caskade binary [default: next to this one].
    #[arg(long)]
    pub caskade: Option<PathBuf>,
    /// Keep the nodes' data directories.
    #[arg(long)]
    pub keep_data: bool,
    /// Start nothing: check this history.jsonl (of an earlier run, or written by hand).
    #[arg(long, value_name = "HISTORY")]
    pub check: Option<PathBuf>,
}

/// How many times one run is started before a harness failure ends the whole command.
const HARNESS_TRIES: u32 = 3;

fn main() {
    let args = Args::parse();
    if let Some(path) = &args.check {
        std::process::exit(run::check_file(path, &args));
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    let out = args.out.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("caskade-chaos-{seed}")));
    let mut invalid = 0;
    let mut harness_failures = 0;
    let mut summaries = Vec::new();
    for run in 0..args.runs {
        let dir = out.join(format!("run-{run}"));
        let mut attempt = 0;
        let summary = loop {
            match run::run(&args, run, seed.wrapping_add(run), &dir) {
                Ok(summary) => break summary,
                Err(e) => {
                    // The harness failed (a node did not start, a restart did not serve):
                    // no verdict on the history. The run is kept aside and tried again,
                    // on fresh ports, at most HARNESS_TRIES times; each failure is counted.
                    eprintln!("caskade-chaos: run {run} (seed {}): {e}", seed.wrapping_add(run));
                    harness_failures += 1;
                    attempt += 1;
                    let _ = std::fs::rename(&dir, out.join(format!("run-{run}-harness-failed-{attempt}")));
                    if attempt == HARNESS_TRIES {
                        std::process::exit(2);
                    }
                }
            }
        };
        if summary["valid"] != true {
            invalid += 1;
            println!("  replay: --seed {} --runs 1 (same flags)", seed.wrapping_add(run));
        }
        summaries.push(summary);
    }
    let total = |k: &str| summaries.iter().map(|s| s[k].as_u64().unwrap_or(0)).sum::<u64>();
    let all = serde_json::json!({
        "runs": args.runs, "seed": seed, "invalid_runs": invalid, "harness_failures": harness_failures,
        "durability": args.durability, "nemesis": args.nemesis,
        "ops": total("ops"), "ok": total("ok"), "failed": total("failed"), "unknown": total("unknown"),
        "replica_reads": total("replica_reads"),
        "faults": summaries.iter().map(|s| s["faults"].as_array().map_or(0, |a| a.len())).sum::<usize>(),
        "summaries": summaries,
    });
    let _ = std::fs::write(out.join("summary.json"), format!("{all:#}"));
    println!(
        "{} runs, {} ops, {} faults, {} invalid runs ({} harness failures tried again); files under {}",
        args.runs, all["ops"], all["faults"], invalid, harness_failures, out.display()
    );
    std::process::exit(if invalid == 0 { 0 } else { 1 });
}
