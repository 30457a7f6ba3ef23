//! One run: start, warm up, break and heal on the schedule, recover, read every key through
//! every node, check, report.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caskade::cluster::{partition_of, ClusterMap};

use crate::check::{self, FinalRead};
use crate::client::Client;
use crate::cluster::{Claims, Cluster, FileSettings};
use crate::history::{self, Op, Outcome, Record, Ret};
use crate::nemesis::{self, Nemesis, Schedule, Window};
use crate::proxy::{self, Faults};
use crate::workload::{self, Shared};
use crate::{report, svg, Args};

/// The process ids of the final reads: this plus the node's index (the final reads of the
/// backup copies: plus the node count).
const FINAL_PROCESS: u64 = 1 << 40;
/// The process ids of the backup-copy reads taken while a primary is dead: this plus a count.
const SNAPSHOT_PROCESS: u64 = 1 << 41;

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
    let settings = FileSettings {
        forward_timeout_ms: args.forward_timeout_ms,
        replicas: args.replicas,
        durability: args.durability.clone(),
        durability_timeout_ms: args.durability_timeout_ms,
        rogue_map: args.rogue_map,
    };
    let mut cluster = Cluster::new(dir, args.nodes, binary, server_args, settings).map_err(|e| e.to_string())?;
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
    let claims = cluster.claims();
    if !args.keep_data {
        for node in &cluster.nodes {
            let _ = std::fs::remove_dir_all(&node.data);
        }
    }

    history::write_jsonl(&dir.join("history.jsonl"), &records, &ids).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("claims.json"), claims_json(&claims, &ids)).map_err(|e| e.to_string())?;
    let findings = check::check(&records, &finals, &claims, Duration::from_millis(args.check_budget_ms));
    let figures = report::fault_figures(&records, &windows, ids.len());
    let mut summary = report::summary_json(run, seed, &records, &findings, &figures);
    summary["durability"] = serde_json::json!(args.durability);
    report::print_summary(&summary, &ids);
    std::fs::write(dir.join("report.json"), format!("{summary:#}")).map_err(|e| e.to_string())?;
    let title = format!(
        "caskade-chaos run {run}, seed {seed}, {} nodes, --fsync {}, durability {}",
        ids.len(),
        args.fsync,
        args.durability
    );
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
    let map = cluster.map();
    let keys: Arc<[u32]> = workload::spread_keys(&map, args.keys).into();
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let node = c % ids.len();
            let (shared, addr) = (shared.clone(), cluster.nodes[node].client);
            let (keys, max_ops) = (keys.clone(), args.max_ops_per_client);
            let pace = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
            let client_seed = seed.wrapping_mul(31).wrapping_add(c as u64);
            std::thread::spawn(move || workload::run_client(shared, node, addr, keys, max_ops, pace, client_seed))
        })
        .collect();

    let mut windows = Vec::new();
    let mut schedule = Schedule::new(seed, enabled.to_vec(), Duration::from_millis(args.fault_min_ms), Duration::from_millis(args.fault_max_ms));
    let phase_end = Duration::from_secs_f64(args.warmup_s + args.faults_s);
    std::thread::sleep(Duration::from_secs_f64(args.warmup_s));
    let read_backups = ids.len() > 1 && args.replicas == 1;
    let mut snapshots = Vec::new();
    let mut failure = None;
    while !enabled.is_empty() && shared.epoch.elapsed() < phase_end {
        let (nemesis, target, length) = schedule.next(ids.len());
        let start_ns = shared.now_ns();
        nemesis::inject(nemesis, target, cluster, faults);
        std::thread::sleep(length);
        // Writes acknowledged before the kill must be in the backups' copies: for `kill`
        // the node died at the start of the window, for `kill-isolated` now.
        let cutoff_ns = if nemesis == Nemesis::Kill { start_ns } else { shared.now_ns() };
        nemesis::finish(nemesis, target, cluster);
        if nemesis.kills() && read_backups {
            read_backup_copies(&shared, cluster, &map, target, &keys, cutoff_ns, &mut snapshots);
        }
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
    records.extend(snapshots);
    cluster.wait_connected(Duration::from_secs(30))?;
    let mut finals = final_reads(&shared, cluster, &keys, &mut records);
    if read_backups {
        final_backup_reads(&shared, cluster, &map, &keys, &mut finals, &mut records);
    }
    records.sort_by_key(|r| (r.invoke_ns, r.process));
    Ok((records, finals, windows))
}

fn backup_of(map: &ClusterMap, key: u32) -> Option<usize> {
    map.backups(partition_of(format!("k{key}").as_bytes())).first().map(|&b| b as usize)
}

/// While node `dead` is down: each of its keys read from its backup's copy (GET_REPLICA on
/// the backup's own port, so nothing is forwarded), a few tries each.
fn read_backup_copies(shared: &Shared, cluster: &Cluster, map: &ClusterMap, dead: usize, keys: &[u32], cutoff_ns: u64, out: &mut Vec<Record>) {
    for &key in keys.iter().filter(|&&k| map.primary(partition_of(format!("k{k}").as_bytes())) == dead) {
        let Some(backup) = backup_of(map, key) else { continue };
        let process = SNAPSHOT_PROCESS + out.len() as u64;
        for _ in 0..3 {
            let Ok(mut c) = Client::connect(cluster.nodes[backup].client, shared.op_timeout) else { continue };
            let rec = workload::replica_read(shared, &mut c, process, backup, key, &format!("k{key}"), cutoff_ns);
            let definite = matches!(rec.outcome, Outcome::Ok(_));
            out.push(rec);
            if definite {
                break;
            }
        }
    }
}

/// At the end, each key's backup copy, read until it matches the final read through the
/// nodes (the backups catch up after the heal), at most 3 s per key; the last read is kept
/// (every write acknowledged before it must be in it).
fn final_backup_reads(shared: &Shared, cluster: &Cluster, map: &ClusterMap, keys: &[u32], finals: &mut Vec<FinalRead>, records: &mut Vec<Record>) {
    let process = FINAL_PROCESS + cluster.nodes.len() as u64;
    for &key in keys {
        let Some(backup) = backup_of(map, key) else { continue };
        let want = finals.iter().find(|f| f.key == key && !f.replica).map(|f| f.value);
        let mut last = None;
        for _ in 0..30 {
            if let Ok(mut c) = Client::connect(cluster.nodes[backup].client, shared.op_timeout) {
                let now = shared.now_ns();
                let rec = workload::replica_read(shared, &mut c, process, backup, key, &format!("k{key}"), now);
                let value = match rec.outcome {
                    Outcome::Ok(Ret::Value(v)) => Some(v),
                    _ => None,
                };
                last = Some((rec, value));
                if value.is_some() && value == want {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some((rec, value)) = last {
            records.push(rec);
            if let Some(value) = value {
                finals.push(FinalRead { key, value, replica: true });
            }
        }
    }
}

/// Reads every key through every node, each until a definite answer (at most 20 tries).
fn final_reads(shared: &Shared, cluster: &Cluster, keys: &[u32], records: &mut Vec<Record>) -> Vec<FinalRead> {
    let mut finals = Vec::new();
    for (node, n) in cluster.nodes.iter().enumerate() {
        let process = FINAL_PROCESS + node as u64;
        for &key in keys {
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
                    finals.push(FinalRead { key, value, replica: false });
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
        .filter(|r| (FINAL_PROCESS..SNAPSHOT_PROCESS).contains(&r.process))
        .filter_map(|r| match (r.op, &r.outcome) {
            (Op::Read, Outcome::Ok(Ret::Value(value))) => Some(FinalRead { key: r.key, value: *value, replica: false }),
            (Op::ReplicaRead { .. }, Outcome::Ok(Ret::Value(value))) => Some(FinalRead { key: r.key, value: *value, replica: true }),
            _ => None,
        })
        .collect();
    // The nodes' claims of the run, when the history is a run's (claims.json beside it).
    let claims = match std::fs::read_to_string(path.with_file_name("claims.json")) {
        Ok(text) => match claims_from_json(&text, &mut ids) {
            Some(c) => c,
            None => {
                eprintln!("caskade-chaos: {}: not a claims file", path.with_file_name("claims.json").display());
                return 2;
            }
        },
        Err(_) => Claims::new(),
    };
    let findings = check::check(&records, &finals, &claims, Duration::from_millis(args.check_budget_ms));
    let summary = report::summary_json(0, args.seed.unwrap_or(0), &records, &findings, &[]);
    report::print_summary(&summary, &ids);
    if findings.ok() { 0 } else { 1 }
}

/// The nodes' primary claims as JSON: `[{"partition": 5, "epoch": 1, "nodes": ["a"]}, ...]`.
fn claims_json(claims: &Claims, ids: &[String]) -> String {
    let list: Vec<_> = claims
        .iter()
        .map(|(&(partition, epoch), nodes)| {
            let nodes: Vec<&str> = nodes.iter().map(|&n| ids.get(n).map_or("?", |s| s.as_str())).collect();
            serde_json::json!({ "partition": partition, "epoch": epoch, "nodes": nodes })
        })
        .collect();
    format!("{:#}", serde_json::Value::from(list))
}

fn claims_from_json(text: &str, ids: &mut Vec<String>) -> Option<Claims> {
    let mut claims = Claims::new();
    for c in serde_json::from_str::<serde_json::Value>(text).ok()?.as_array()? {
        let partition = u16::try_from(c["partition"].as_u64()?).ok()?;
        let epoch = c["epoch"].as_u64()?;
        for id in c["nodes"].as_array()? {
            let id = id.as_str()?;
            let n = ids.iter().position(|i| i == id).unwrap_or_else(|| {
                ids.push(id.to_string());
                ids.len() - 1
            });
            claims.entry((partition, epoch)).or_default().insert(n);
        }
    }
    Some(claims)
}
