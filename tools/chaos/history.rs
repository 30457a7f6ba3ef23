//! The history: every operation a client made, with when it was invoked and completed
//! (nanoseconds on one monotonic clock) and what came of it. Written as JSON lines.

use std::io::Write;

/// What a client asked. Values are numbers, so that `incr` applies to every value; each
/// write's value is unique in the run (see `workload`), so a value names the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Set(u64),
    /// A compare-and-set on the value the same client read just before (binary SET with
    /// that read's CAS id): since every write changes the value to one never seen before,
    /// "the CAS id is unchanged" is "the value is `expect`".
    Cas { expect: u64, new: u64 },
    Delete,
    Incr,
    /// A read of the key's backup copy (binary GET_REPLICA, 0x83), not of the register:
    /// left out of the linearizability search. Every write acknowledged before `cutoff_ns`
    /// must be in the copy (or overwritten by a later write): taken while the key's primary
    /// is dead (cutoff: the kill), which is what a failover would promote, and at the end
    /// (cutoff: the read itself).
    ReplicaRead { cutoff_ns: u64 },
}

/// The answer of an operation that completed with a definite reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    Value(Option<u64>),
    Stored,
    /// CAS on a changed value (status 0x02).
    Exists,
    /// Status 0x01: delete, incr or CAS of an absent key.
    NotFound,
    Deleted,
    Incremented(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Ret),
    /// A definite error status: the operation did not take effect.
    Failed(String),
    /// A timeout, a lost connection, a temporary failure or a storage error: it may or may
    /// not have taken effect, now or later.
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct Record {
    /// The client process; a client whose operation ended unknown goes on as a new process
    /// (the old operation may still be in flight).
    pub process: u64,
    /// The node the client sent it to.
    pub node: usize,
    pub key: u32,
    pub op: Op,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
    /// For an acknowledged write, when something says so: the node that acknowledged it as
    /// the partition's primary, and the epoch. A live run leaves it empty (replies do not
    /// name the node; the nodes' logs do, per partition: see `check::split_brain`); a
    /// history written by hand may set it.
    pub acked_by: Option<AckedBy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AckedBy {
    pub primary: usize,
    pub epoch: u64,
}

impl Record {
    pub fn to_json(&self, nodes: &[String]) -> serde_json::Value {
        let (op, args) = match self.op {
            Op::Read => ("read", serde_json::json!([])),
            Op::Set(v) => ("set", serde_json::json!([v])),
            Op::Cas { expect, new } => ("cas", serde_json::json!([expect, new])),
            Op::Delete => ("delete", serde_json::json!([])),
            Op::Incr => ("incr", serde_json::json!([1])),
            Op::ReplicaRead { cutoff_ns } => ("replica-read", serde_json::json!([cutoff_ns])),
        };
        let (outcome, ret) = match &self.outcome {
            Outcome::Ok(r) => ("ok", ret_json(r)),
            Outcome::Failed(why) => ("failed", serde_json::json!(why)),
            Outcome::Unknown(why) => ("unknown", serde_json::json!(why)),
        };
        let mut line = serde_json::json!({
            "process": self.process,
            "node": nodes.get(self.node).map_or("?", |s| s.as_str()),
            "key": format!("k{}", self.key),
            "op": op,
            "args": args,
            "invoke_ns": self.invoke_ns,
            "complete_ns": self.complete_ns,
            "outcome": outcome,
            "ret": ret,
        });
        if let Some(by) = self.acked_by {
            line["primary"] = serde_json::json!(nodes.get(by.primary).map_or("?", |s| s.as_str()));
            line["epoch"] = serde_json::json!(by.epoch);
        }
        line
    }
}

fn ret_json(r: &Ret) -> serde_json::Value {
    match r {
        Ret::Value(v) => serde_json::json!({ "value": v }),
        Ret::Stored => serde_json::json!("stored"),
        Ret::Exists => serde_json::json!("exists"),
        Ret::NotFound => serde_json::json!("not_found"),
        Ret::Deleted => serde_json::json!("deleted"),
        Ret::Incremented(v) => serde_json::json!({ "incremented": v }),
    }
}

pub fn write_jsonl(path: &std::path::Path, records: &[Record], nodes: &[String]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in records {
        writeln!(out, "{}", r.to_json(nodes))?;
    }
    out.flush()
}

/// One line of `history.jsonl` back into a record (`nodes` grows with the node ids seen).
pub fn from_json(line: &str, nodes: &mut Vec<String>) -> Result<Record, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let num = |x: &serde_json::Value| x.as_u64().ok_or_else(|| format!("not a number: {x}"));
    let arg = |i: usize| num(&v["args"][i]);
    let op = match v["op"].as_str() {
        Some("read") => Op::Read,
        Some("set") => Op::Set(arg(0)?),
        Some("cas") => Op::Cas { expect: arg(0)?, new: arg(1)? },
        Some("delete") => Op::Delete,
        Some("incr") => Op::Incr,
        Some("replica-read") => Op::ReplicaRead { cutoff_ns: arg(0)? },
        other => return Err(format!("unknown op {other:?}")),
    };
    let why = || v["ret"].as_str().unwrap_or("").to_string();
    let outcome = match (v["outcome"].as_str(), &v["ret"]) {
        (Some("ok"), r) => Outcome::Ok(match r.as_str() {
            Some("stored") => Ret::Stored,
            Some("exists") => Ret::Exists,
            Some("not_found") => Ret::NotFound,
            Some("deleted") => Ret::Deleted,
            _ if r.get("value").is_some() => Ret::Value(r["value"].as_u64()),
            _ if r.get("incremented").is_some() => Ret::Incremented(num(&r["incremented"])?),
            _ => return Err(format!("unknown answer {r}")),
        }),
        (Some("failed"), _) => Outcome::Failed(why()),
        (Some("unknown"), _) => Outcome::Unknown(why()),
        (other, _) => return Err(format!("unknown outcome {other:?}")),
    };
    let mut index_of = |id: &str| match nodes.iter().position(|n| n == id) {
        Some(i) => i,
        None => {
            nodes.push(id.to_string());
            nodes.len() - 1
        }
    };
    let node = index_of(v["node"].as_str().unwrap_or("?"));
    let acked_by = match v["primary"].as_str() {
        Some(id) => Some(AckedBy { primary: index_of(id), epoch: num(&v["epoch"])? }),
        None => None,
    };
    let key = v["key"].as_str().and_then(|k| k.strip_prefix('k')).and_then(|k| k.parse().ok()).ok_or("a key kN")?;
    Ok(Record { process: num(&v["process"])?, node, key, op, invoke_ns: num(&v["invoke_ns"])?, complete_ns: num(&v["complete_ns"])?, outcome, acked_by })
}
