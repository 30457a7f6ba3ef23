//! The clients: each a thread on one node's memcached port, doing a mix of get, set, CAS,
//! delete and incr on a small key space, one operation at a time, recording each.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use caskade::cluster::{partition_of, ClusterMap};

use crate::client::{self, Client};
use crate::history::{Op, Outcome, Record, Ret};
use crate::rng::Rng;

/// Every written value is a multiple of this (a run-wide unique number times it), so that
/// incr on it never reaches another write's value.
pub const VALUE_STEP: u64 = 1_000_000;

pub struct Shared {
    pub epoch: Instant,
    pub stop: AtomicBool,
    pub next_process: AtomicU64,
    pub next_value: AtomicU64,
    pub op_timeout: Duration,
}

impl Shared {
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// The key space: `count` key numbers (names `k{n}`) chosen so that every node is the
/// primary of about as many (the first numbers whose primary still has room). Taking
/// k0..k{count-1} as they hash would leave a node with none (with 3 nodes and 10 keys node
/// a is the primary of none of them), and a kill of that node would test no backup copy.
pub fn spread_keys(map: &ClusterMap, count: u32) -> Vec<u32> {
    let nodes = map.nodes().len().max(1) as u32;
    let room = |node: usize| (count / nodes + u32::from((node as u32) < count % nodes)) as usize;
    let mut taken = vec![0usize; nodes as usize];
    let mut keys = Vec::with_capacity(count as usize);
    for n in 0..u32::MAX {
        if keys.len() == count as usize {
            break;
        }
        let primary = map.primary(partition_of(format!("k{n}").as_bytes()));
        if taken[primary] < room(primary) {
            taken[primary] += 1;
            keys.push(n);
        }
    }
    keys
}

/// Runs one client until `stop` or `max_ops`; returns what it did.
/// `pace`: the least time between the starts of two operations (the client's rate bound).
pub fn run_client(shared: Arc<Shared>, node: usize, addr: SocketAddr, keys: Arc<[u32]>, max_ops: u64, pace: Duration, seed: u64) -> Vec<Record> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut process = shared.next_process.fetch_add(1, Relaxed);
    let mut conn: Option<Client> = None;
    while !shared.stop.load(Relaxed) && (out.len() as u64) < max_ops {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Client::connect(addr, shared.op_timeout) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    // The node is down: try again shortly (not an operation).
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let started = Instant::now();
        let key = keys[rng.below(keys.len() as u64) as usize];
        let name = format!("k{key}");
        let roll = rng.below(100);
        let mut records = Vec::with_capacity(2);
        let lost = if roll < 40 {
            let (rec, lost, _) = read(&shared, c, process, node, key, &name);
            records.push(rec);
            lost
        } else if roll < 65 {
            let v = (shared.next_value.fetch_add(1, Relaxed) + 1) * VALUE_STEP;
            mutate(&shared, (process, node, key), Op::Set(v), &mut records, |c| c.set(name.as_bytes(), v.to_string().as_bytes(), 0), c)
        } else if roll < 80 {
            let (rec, lost, cas) = read(&shared, c, process, node, key, &name);
            let expect = match rec.outcome {
                Outcome::Ok(Ret::Value(Some(v))) => Some(v),
                _ => None,
            };
            records.push(rec);
            match (lost, expect) {
                (false, Some(expect)) => {
                    let v = (shared.next_value.fetch_add(1, Relaxed) + 1) * VALUE_STEP;
                    let op = Op::Cas { expect, new: v };
                    mutate(&shared, (process, node, key), op, &mut records, |c| c.set(name.as_bytes(), v.to_string().as_bytes(), cas), c)
                }
                _ => lost,
            }
        } else if roll < 85 {
            mutate(&shared, (process, node, key), Op::Delete, &mut records, |c| c.delete(name.as_bytes()), c)
        } else {
            mutate(&shared, (process, node, key), Op::Incr, &mut records, |c| c.incr(name.as_bytes()), c)
        };
        let answered = records.iter().all(|r| matches!(r.outcome, Outcome::Ok(_)));
        out.extend(records);
        if !answered {
            // A node down or cut off: do not spin on it (every unknown operation makes the
            // history harder to check).
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(pause) = pace.checked_sub(started.elapsed()) {
            std::thread::sleep(pause);
        }
        if lost {
            // The operation may still be in flight: go on as a new process, on a new connection.
            conn = None;
            process = shared.next_process.fetch_add(1, Relaxed);
        }
    }
    out
}

/// A GET, recorded as a read; returns the record, whether the connection is lost, and the CAS id.
pub fn read(shared: &Shared, c: &mut Client, process: u64, node: usize, key: u32, name: &str) -> (Record, bool, u64) {
    let invoke_ns = shared.now_ns();
    let reply = c.get(name.as_bytes());
    let complete_ns = shared.now_ns();
    let (outcome, lost, cas) = match reply {
        // A value that is not a number is no value anyone wrote: u64::MAX stands for it.
        Ok(r) if r.status == client::OK => (Outcome::Ok(Ret::Value(Some(client::number(&r.value).unwrap_or(u64::MAX)))), false, r.cas),
        Ok(r) if r.status == client::NOT_FOUND => (Outcome::Ok(Ret::Value(None)), false, 0),
        Ok(r) => (Outcome::Failed(format!("status 0x{:02x}", r.status)), false, 0),
        Err(e) => (Outcome::Unknown(e.to_string()), true, 0),
    };
    (Record { process, node, key, op: Op::Read, invoke_ns, complete_ns, outcome, acked_by: None }, lost, cas)
}

/// A GET_REPLICA of `name`: the copy its backup holds; every write acknowledged before
/// `cutoff_ns` must be in it. `None` if no definite answer came.
pub fn replica_read(shared: &Shared, c: &mut Client, process: u64, node: usize, key: u32, name: &str, cutoff_ns: u64) -> Record {
    let invoke_ns = shared.now_ns();
    let reply = c.get_replica(name.as_bytes());
    let complete_ns = shared.now_ns();
    let outcome = match reply {
        Ok(r) if r.status == client::OK => Outcome::Ok(Ret::Value(Some(client::number(&r.value).unwrap_or(u64::MAX)))),
        Ok(r) if r.status == client::NOT_FOUND => Outcome::Ok(Ret::Value(None)),
        Ok(r) => Outcome::Failed(format!("status 0x{:02x}", r.status)),
        Err(e) => Outcome::Unknown(e.to_string()),
    };
    Record { process, node, key, op: Op::ReplicaRead { cutoff_ns }, invoke_ns, complete_ns, outcome, acked_by: None }
}

/// `who`: the process, node and key of the operation.
fn mutate(
    shared: &Shared,
    (process, node, key): (u64, usize, u32),
    op: Op,
    records: &mut Vec<Record>,
    send: impl FnOnce(&mut Client) -> std::io::Result<client::Reply>,
    c: &mut Client,
) -> bool {
    let invoke_ns = shared.now_ns();
    let reply = send(c);
    let complete_ns = shared.now_ns();
    let (outcome, lost) = match reply {
        Ok(r) => (classify(op, &r), false),
        Err(e) => (Outcome::Unknown(e.to_string()), true),
    };
    records.push(Record { process, node, key, op, invoke_ns, complete_ns, outcome, acked_by: None });
    lost
}

/// A mutation's reply as an outcome. A temporary failure (0x86: the owner did not answer a
/// forwarded request in time, but may have applied it), a storage error (0x84: written,
/// not known durable) and a sync write ambiguous (0xa3: applied on the primary, the backups
/// did not confirm in time) are unknown; durability impossible (0xa1: refused before it
/// ran) and every other error status are failed.
pub fn classify(op: Op, r: &client::Reply) -> Outcome {
    match (op, r.status) {
        (Op::Incr, client::OK) => match client::counter(&r.value) {
            Some(v) => Outcome::Ok(Ret::Incremented(v)),
            None => Outcome::Unknown("an incr reply without its 8-byte value".into()),
        },
        (Op::Delete, client::OK) => Outcome::Ok(Ret::Deleted),
        (_, client::OK) => Outcome::Ok(Ret::Stored),
        (Op::Cas { .. } | Op::Delete | Op::Incr, client::NOT_FOUND) => Outcome::Ok(Ret::NotFound),
        (Op::Cas { .. }, client::EXISTS) => Outcome::Ok(Ret::Exists),
        (_, client::SYNC_WRITE_AMBIGUOUS) => Outcome::Unknown("sync write ambiguous (0xa3)".into()),
        (_, client::DURABILITY_IMPOSSIBLE) => Outcome::Failed("durability impossible (0xa1)".into()),
        (_, client::STORAGE_ERROR | client::TEMPORARY_FAILURE) => Outcome::Unknown(format!("status 0x{:02x}", r.status)),
        (_, s) => Outcome::Failed(format!("status 0x{s:02x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16) -> client::Reply {
        client::Reply { status, cas: 0, value: Vec::new() }
    }

    /// The durable-write statuses: 0xa3 may have happened (it did, on the primary), 0xa1
    /// did not.
    #[test]
    fn durable_write_statuses() {
        assert!(matches!(classify(Op::Set(1), &reply(client::SYNC_WRITE_AMBIGUOUS)), Outcome::Unknown(_)));
        assert!(matches!(classify(Op::Delete, &reply(client::SYNC_WRITE_AMBIGUOUS)), Outcome::Unknown(_)));
        assert!(matches!(classify(Op::Set(1), &reply(client::DURABILITY_IMPOSSIBLE)), Outcome::Failed(_)));
        assert!(matches!(classify(Op::Incr, &reply(client::DURABILITY_IMPOSSIBLE)), Outcome::Failed(_)));
        assert!(matches!(classify(Op::Set(1), &reply(client::TEMPORARY_FAILURE)), Outcome::Unknown(_)));
        assert_eq!(classify(Op::Set(1), &reply(client::OK)), Outcome::Ok(Ret::Stored));
    }

    /// Every node is the primary of its share of the keys; one node takes k0..k{n-1}.
    #[test]
    fn the_keys_are_spread_over_the_primaries() {
        use caskade::cluster::map::MapNode;
        let nodes = |n: usize| (0..n).map(|i| MapNode { id: format!("{}", (b'a' + i as u8) as char), peer: format!("127.0.0.1:{}", 7000 + i) }).collect();
        for (n, count, want) in [(3, 10, vec![4, 3, 3]), (5, 10, vec![2; 5]), (3, 2, vec![1, 1, 0])] {
            let map = ClusterMap::derive("chaos", nodes(n), 1);
            let keys = spread_keys(&map, count);
            assert_eq!(keys.len(), count as usize);
            let mut per = vec![0; n];
            for k in &keys {
                per[map.primary(partition_of(format!("k{k}").as_bytes()))] += 1;
            }
            assert_eq!(per, want, "{n} nodes, {keys:?}");
        }
        assert_eq!(spread_keys(&ClusterMap::single(), 4), vec![0, 1, 2, 3]);
    }
}
