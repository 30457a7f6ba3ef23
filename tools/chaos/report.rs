//! The run's summary: counts, the checker's findings, availability during each fault and
//! time to recover after it; on stdout and as JSON.

use crate::check::Findings;
use crate::history::{Outcome, Record};
use crate::nemesis::Window;

pub struct FaultFigures {
    pub window: Window,
    pub ops: usize,
    pub ok: usize,
    /// From the heal until every node's clients had an acknowledged operation again (ms);
    /// `None` if some never did.
    pub recover_ms: Option<f64>,
}

pub fn fault_figures(records: &[Record], windows: &[Window], nodes: usize) -> Vec<FaultFigures> {
    windows
        .iter()
        .map(|w| {
            let during: Vec<&Record> = records.iter().filter(|r| r.invoke_ns >= w.start_ns && r.invoke_ns < w.end_ns).collect();
            let ok = during.iter().filter(|r| matches!(r.outcome, Outcome::Ok(_))).count();
            let recover = (0..nodes)
                .map(|n| {
                    records
                        .iter()
                        .filter(|r| r.node == n && r.invoke_ns >= w.end_ns && matches!(r.outcome, Outcome::Ok(_)))
                        .map(|r| r.complete_ns)
                        .min()
                })
                .collect::<Option<Vec<u64>>>()
                .and_then(|firsts| firsts.into_iter().max())
                .map(|t| t.saturating_sub(w.end_ns) as f64 / 1e6);
            FaultFigures { window: w.clone(), ops: during.len(), ok, recover_ms: recover }
        })
        .collect()
}

pub fn summary_json(run: u64, seed: u64, records: &[Record], findings: &Findings, faults: &[FaultFigures]) -> serde_json::Value {
    let count = |f: fn(&Outcome) -> bool| records.iter().filter(|r| f(&r.outcome)).count();
    serde_json::json!({
        "run": run,
        "seed": seed,
        "ops": records.len(),
        "ok": count(|o| matches!(o, Outcome::Ok(_))),
        "failed": count(|o| matches!(o, Outcome::Failed(_))),
        "unknown": count(|o| matches!(o, Outcome::Unknown(_))),
        "keys": findings.keys,
        "linearizable_keys": findings.linearizable,
        "not_linearizable_keys": findings.not_linearizable,
        "too_hard_keys": findings.too_hard,
        "lost_acknowledged_writes": findings.lost_writes.iter().map(|l| serde_json::json!({
            "key": format!("k{}", l.key), "found": l.found, "acked": format!("{:?}", l.acked), "acked_complete_ns": l.acked_complete_ns,
        })).collect::<Vec<_>>(),
        "phantom_reads": findings.phantom_reads.iter().map(|(k, v)| serde_json::json!({ "key": format!("k{k}"), "value": v })).collect::<Vec<_>>(),
        "divergent_final_reads": findings.divergent.iter().map(|k| format!("k{k}")).collect::<Vec<_>>(),
        "replica_reads": findings.replica_reads,
        "lost_on_backup": findings.lost_on_backup.iter().map(|l| serde_json::json!({
            "key": format!("k{}", l.key), "found": l.found, "acked": format!("{:?}", l.acked), "acked_complete_ns": l.acked_complete_ns,
            "read_ns": l.replica_read.map(|(at, _)| at), "cutoff_ns": l.replica_read.map(|(_, cutoff)| cutoff),
        })).collect::<Vec<_>>(),
        "primary_claims": findings.primary_claims,
        "split_brain": findings.split_brain.iter().map(|b| serde_json::json!({
            "partition": b.partition, "epoch": b.epoch, "primaries": b.primaries,
        })).collect::<Vec<_>>(),
        "faults": faults.iter().map(|f| serde_json::json!({
            "nemesis": f.window.nemesis.name(),
            "target": f.window.target,
            "start_s": f.window.start_ns as f64 / 1e9,
            "end_s": f.window.end_ns as f64 / 1e9,
            "ops": f.ops,
            "availability": if f.ops == 0 { 0.0 } else { f.ok as f64 / f.ops as f64 },
            "recover_ms": f.recover_ms,
        })).collect::<Vec<_>>(),
        "valid": findings.ok(),
    })
}

pub fn print_summary(s: &serde_json::Value, ids: &[String]) {
    println!(
        "run {} seed {}: {} ops ({} ok, {} failed, {} unknown), {} keys: {} linearizable, {} not, {} too hard; \
         {} lost acknowledged writes, {} missing from a backup ({} backup reads), {} phantom reads, {} divergent keys, \
         {} split-brain partitions ({} primary claims logged) => {}",
        s["run"], s["seed"], s["ops"], s["ok"], s["failed"], s["unknown"], s["keys"], s["linearizable_keys"],
        s["not_linearizable_keys"].as_array().map_or(0, |a| a.len()),
        s["too_hard_keys"].as_array().map_or(0, |a| a.len()),
        s["lost_acknowledged_writes"].as_array().map_or(0, |a| a.len()),
        s["lost_on_backup"].as_array().map_or(0, |a| a.len()),
        s["replica_reads"],
        s["phantom_reads"].as_array().map_or(0, |a| a.len()),
        s["divergent_final_reads"].as_array().map_or(0, |a| a.len()),
        s["split_brain"].as_array().map_or(0, |a| a.len()),
        s["primary_claims"],
        if s["valid"] == true { "VALID" } else { "INVALID" },
    );
    for f in s["faults"].as_array().into_iter().flatten() {
        let target = f["target"].as_u64().and_then(|t| ids.get(t as usize)).map_or("?", |s| s.as_str());
        println!(
            "  {:<18} node {target}  {:>6.2}s..{:>6.2}s  {:>5} ops, availability {:>5.1}%, recovered in {}",
            f["nemesis"].as_str().unwrap_or("?"),
            f["start_s"].as_f64().unwrap_or(0.0),
            f["end_s"].as_f64().unwrap_or(0.0),
            f["ops"],
            f["availability"].as_f64().unwrap_or(0.0) * 100.0,
            f["recover_ms"].as_f64().map_or("never".to_string(), |ms| format!("{ms:.0} ms")),
        );
    }
    for l in s["lost_acknowledged_writes"].as_array().into_iter().flatten().take(5) {
        println!("  lost: {l}");
    }
    for l in s["lost_on_backup"].as_array().into_iter().flatten().take(5) {
        println!("  missing from the backup while the primary was dead: {l}");
    }
    for b in s["split_brain"].as_array().into_iter().flatten().take(5) {
        println!("  two primaries in one epoch: {b}");
    }
}
