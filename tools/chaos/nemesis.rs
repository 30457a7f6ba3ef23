//! The faults, and the seeded schedule that picks them.

use std::time::Duration;

use crate::cluster::Cluster;
use crate::proxy::{Faults, LinkFault};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nemesis {
    /// kill -9, then a restart on the same data directory.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Every link of one node cut, both ways.
    PartitionOne,
    /// A minority (n/2 nodes) cut off from the majority.
    PartitionMajority,
    /// Two sides that cannot see each other, and one node that sees both.
    Bridge,
    /// One node's outgoing bytes held (it hears the others, they do not hear it).
    OneWay,
    /// Every link of one node cut, then, at the end of the window, kill -9 of that node
    /// while still cut off; the links heal and it restarts. What its backups hold then is
    /// what a failover would promote: under `durability = "none"` it misses what the node
    /// acknowledged alone (the known-bad setting of the backup-copy check).
    KillIsolated,
    /// 100 ms on every chunk of every link.
    Delay,
    /// A fifth of the chunks of every link wait 200-500 ms.
    Lossy,
}

pub const ALL: &[(&str, Nemesis)] = &[
    ("kill", Nemesis::Kill),
    ("pause", Nemesis::Pause),
    ("partition-one", Nemesis::PartitionOne),
    ("partition-majority", Nemesis::PartitionMajority),
    ("bridge", Nemesis::Bridge),
    ("kill-isolated", Nemesis::KillIsolated),
    ("one-way", Nemesis::OneWay),
    ("delay", Nemesis::Delay),
    ("lossy", Nemesis::Lossy),
];

impl Nemesis {
    pub fn parse(s: &str) -> Option<Nemesis> {
        ALL.iter().find(|(name, _)| *name == s).map(|&(_, n)| n)
    }

    pub fn name(self) -> &'static str {
        ALL.iter().find(|&&(_, n)| n == self).map_or("?", |(name, _)| name)
    }

    /// Whether it means anything with `n` nodes (the link faults need a cluster).
    pub fn applies(self, n: usize) -> bool {
        match self {
            Nemesis::Kill | Nemesis::Pause => true,
            Nemesis::Bridge => n >= 3,
            _ => n >= 2,
        }
    }

    /// Whether the target is dead at the end of the window (before `heal` restarts it):
    /// the moment to read its keys' backup copies.
    pub fn kills(self) -> bool {
        matches!(self, Nemesis::Kill | Nemesis::KillIsolated)
    }
}

/// One fault as it happened: which, on which node, from when to when (ns on the history's clock).
#[derive(Clone, Debug)]
pub struct Window {
    pub nemesis: Nemesis,
    pub target: usize,
    pub start_ns: u64,
    /// When the fault was healed (the restarted node serving again, for a kill).
    pub end_ns: u64,
}

pub struct Schedule {
    rng: Rng,
    pub enabled: Vec<Nemesis>,
    pub min: Duration,
    pub max: Duration,
}

impl Schedule {
    pub fn new(seed: u64, enabled: Vec<Nemesis>, min: Duration, max: Duration) -> Schedule {
        Schedule { rng: Rng::new(seed ^ 0x006E_656D_6573_6973), enabled, min, max }
    }

    /// The next fault, its target node and how long it lasts.
    pub fn next(&mut self, n: usize) -> (Nemesis, usize, Duration) {
        let nemesis = self.enabled[self.rng.below(self.enabled.len() as u64) as usize];
        let target = self.rng.below(n as u64) as usize;
        let spread = self.max.saturating_sub(self.min).as_millis() as u64;
        let length = self.min + Duration::from_millis(self.rng.below(spread + 1));
        (nemesis, target, length)
    }
}

/// Starts the fault (the link faults through the proxies).
pub fn inject(nemesis: Nemesis, target: usize, cluster: &mut Cluster, faults: &Faults) {
    let n = cluster.nodes.len();
    let cut_between = |a: &[usize], b: &[usize]| {
        for &x in a {
            for &y in b {
                faults.set(x, y, LinkFault::Cut);
                faults.set(y, x, LinkFault::Cut);
            }
        }
    };
    let others: Vec<usize> = (0..n).filter(|&j| j != target).collect();
    match nemesis {
        Nemesis::Kill => cluster.kill9(target),
        Nemesis::Pause => cluster.signal(target, libc::SIGSTOP),
        Nemesis::PartitionOne | Nemesis::KillIsolated => cut_between(&[target], &others),
        Nemesis::PartitionMajority => {
            let minority: Vec<usize> = (0..n / 2).map(|k| (target + k) % n).collect();
            let majority: Vec<usize> = (0..n).filter(|j| !minority.contains(j)).collect();
            cut_between(&minority, &majority);
        }
        Nemesis::Bridge => {
            let side: Vec<usize> = (1..n).map(|k| (target + k) % n).collect();
            let (a, b) = side.split_at(side.len() / 2);
            cut_between(a, b);
        }
        Nemesis::OneWay => {
            for &j in &others {
                faults.set(target, j, LinkFault::Hold);
            }
        }
        Nemesis::Delay | Nemesis::Lossy => {
            let fault = if nemesis == Nemesis::Delay { LinkFault::Delay(Duration::from_millis(100)) } else { LinkFault::Lossy(20) };
            for x in 0..n {
                for y in 0..n {
                    if x != y {
                        faults.set(x, y, fault);
                    }
                }
            }
        }
    }
}

/// The end of the window, before `heal`: kill -9 of a cut-off node.
pub fn finish(nemesis: Nemesis, target: usize, cluster: &mut Cluster) {
    if nemesis == Nemesis::KillIsolated {
        cluster.kill9(target);
    }
}

/// Ends the fault: restart (and wait until serving), SIGCONT, or heal the links.
pub fn heal(nemesis: Nemesis, target: usize, cluster: &mut Cluster, faults: &Faults) -> Result<(), String> {
    match nemesis {
        Nemesis::Kill | Nemesis::KillIsolated => {
            faults.heal();
            cluster.start(target).map_err(|e| format!("restart node {}: {e}", cluster.nodes[target].id))?;
            cluster.wait_ready(target, Duration::from_secs(30))
        }
        Nemesis::Pause => {
            cluster.signal(target, libc::SIGCONT);
            Ok(())
        }
        _ => {
            faults.heal();
            Ok(())
        }
    }
}
