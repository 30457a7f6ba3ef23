//! One run: start, warm up, break and heal on the schedule, recover, read every key through
//! every node, check, report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::check::{self, FinalRead};
use crate::client::Client;
use crate::cluster::Cluster;
use crate::history::{self, Outcome, Record, Ret};
use crate::nemesis::{self, Nemesis, Schedule, Window};
use crate::proxy::{self, Faults};
use crate::workload::{self, Shared};
use crate::{report, svg, Args};

/// The process ids of the final reads: this plus the node's index.
const FINAL_PROCESS: u64 = 1 << 40;

pub fn run(args: &Args, run: u64, seed: u64, dir: &Path) -> Result<serde_json::Value, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let binary = match &args.caskade {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("caskade"),
    };
    let mut server_args = vec!["--fsync".to_string(), args.fsync.clone()];
    if args.in_memory {
        server_args.push("--in-memory".into());
    }
    let enabled: Vec<Nemesis> = args
        .nemesis
        .iter()
        .map(|s| Nemesis::parse(s).ok_or_else(|| format!("unknown nemesis '{s}'")))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|n| n.applies(args.nodes))
        .collect();
    let mut cluster = Cluster::new(dir, args.nodes, binary, server_args, args.forward_timeout_ms).map_err(|e| e.to_string())?;
    let ids: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
    let faults = Arc::new(Faults::default());
    if args.nodes > 1 {
        for (i, node) in cluster.nodes.iter().enumerate() {
            proxy::start(node.peer_map, node.peer_real, i, ids.clone(), faults.clone()).map_err(|e| format!("proxy: {e}"))?;
        }
    }
    let result = drive(args, seed, &mut cluster, &faults, &enabled, &ids);
    cluster.stop_all();
    faults.stop.store(true, Relaxed);
    let (records, finals, windows) = result?;
    if !args.keep_data {
        for node in &cluster.nodes {
            let _ = std::fs::remove_dir_all(&node.data);
        }
    }

    history::write_jsonl(&dir.join("history.jsonl"), &records, &ids).map_err(|e| e.to_string())?;
    let findings = check::check(&records, &finals, Duration::from_millis(args.check_budget_ms));
    let figures = report::fault_figures(&records, &windows, ids.len());
    let summary = report::summary_json(run, seed, &records, &findings, &figures);
    report::print_summary(&summary, &ids);
    std::fs::write(dir.join("report.json"), format!("{summary:#}")).map_err(|e| e.to_string())?;
    let title = format!("caskade-chaos run {run}, seed {seed}, {} nodes, --fsync {}", ids.len(), args.fsync);
    std::fs::write(dir.join("timeline.svg"), svg::timeline(&records, &windows, &ids, &title)).map_err(|e| e.to_string())?;
    Ok(summary)
}

type Outcome3 = (Vec<Record>, Vec<FinalRead>, Vec<Window>);

fn drive(args: &Args, seed: u64, cluster: &mut Cluster, faults: &Faults, enabled: &[Nemesis], ids: &[String]) -> Result<Outcome3, String> {
    for (i, id) in ids.iter().enumerate() {
        cluster.start(i).map_err(|e| format!("start node {id}: {e}"))?;
    }
    for i in 0..ids.len() {
        cluster.wait_ready(i, Duration::from_secs(30))?;
    }
    cluster.wait_connected(Duration::from_secs(30))?;

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        stop: AtomicBool::new(false),
        next_process: AtomicU64::new(0),
        next_value: AtomicU64::new(0),
        op_timeout: Duration::from_millis(args.op_timeout_ms),
    });
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let node = c % ids.len();
            let (shared, addr) = (shared.clone(), cluster.nodes[node].client);
            let (keys, max_ops) = (args.keys, args.max_ops_per_client);
            let pace = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
            let client_seed = seed.wrapping_mul(31).wrapping_add(c as u64);
            std::thread::spawn(move || workload::run_client(shared, node, addr, keys, max_ops, pace, client_seed))
        })
        .collect();

    let mut windows = Vec::new();
    let mut schedule = Schedule::new(seed, enabled.to_vec(), Duration::from_millis(args.fault_min_ms), Duration::from_millis(args.fault_max_ms));
    let phase_end = Duration::from_secs_f64(args.warmup_s + args.faults_s);
    std::thread::sleep(Duration::from_secs_f64(args.warmup_s));
    let mut failure = None;
    while !enabled.is_empty() && shared.epoch.elapsed() < phase_end {
        let (nemesis, target, length) = schedule.next(ids.len());
        let start_ns = shared.now_ns();
        nemesis::inject(nemesis, target, cluster, faults);
        std::thread::sleep(length);
        let healed = nemesis::heal(nemesis, target, cluster, faults);
        windows.push(Window { nemesis, target, start_ns, end_ns: shared.now_ns() });
        if let Err(e) = healed {
            failure = Some(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(args.quiet_ms));
    }
    if failure.is_none() {
        std::thread::sleep(Duration::from_secs_f64(args.recover_s));
    }
    shared.stop.store(true, Relaxed);
    let mut records: Vec<Record> = clients.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    if let Some(e) = failure {
        return Err(e);
    }
    cluster.wait_connected(Duration::from_secs(30))?;
    let finals = final_reads(&shared, cluster, args.keys, &mut records);
    records.sort_by_key(|r| (r.invoke_ns, r.process));
    Ok((records, finals, windows))
}

/// Reads every key through every node, each until a definite answer (at most 20 tries).
fn final_reads(shared: &Shared, cluster: &Cluster, keys: u32, records: &mut Vec<Record>) -> Vec<FinalRead> {
    let mut finals = Vec::new();
    for (node, n) in cluster.nodes.iter().enumerate() {
        let process = FINAL_PROCESS + node as u64;
        for key in 0..keys {
            let name = format!("k{key}");
            for _ in 0..20 {
                let Ok(mut c) = Client::connect(n.client, shared.op_timeout) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let (rec, _, _) = workload::read(shared, &mut c, process, node, key, &name);
                let value = match rec.outcome {
                    Outcome::Ok(Ret::Value(v)) => Some(v),
                    _ => None,
                };
                records.push(rec);
                if let Some(value) = value {
                    finals.push(FinalRead { key, value });
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    finals
}

/// `--check HISTORY`: the checks of a run on a history file; the final reads are the reads
/// of the final processes. Returns the exit status.
pub fn check_file(path: &Path, args: &Args) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("caskade-chaos: {}: {e}", path.display());
            return 2;
        }
    };
    let mut ids = Vec::new();
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match history::from_json(line, &mut ids) {
            Ok(r) => records.push(r),
            Err(e) => {
                eprintln!("caskade-chaos: {}:{}: {e}", path.display(), n + 1);
                return 2;
            }
        }
    }
    let finals: Vec<FinalRead> = records
        .iter()
        .filter(|r| r.process >= FINAL_PROCESS)
        .filter_map(|r| match r.outcome {
            Outcome::Ok(Ret::Value(value)) => Some(FinalRead { key: r.key, value }),
            _ => None,
        })
        .collect();
    let findings = check::check(&records, &finals, Duration::from_millis(args.check_budget_ms));
    let summary = report::summary_json(0, args.seed.unwrap_or(0), &records, &findings, &[]);
    report::print_summary(&summary, &ids);
    if findings.ok() { 0 } else { 1 }
}
