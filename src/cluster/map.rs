//! The cluster map: the nodes, and for each partition its primary and its backups; a
//! revision and a checksum.
//!
//! No I/O. Today the map is derived from the node list alone (every node computes the same
//! one from the same cluster file); the control plane will later change it by consensus,
//! which is why it carries a revision. Two nodes whose maps differ (their checksums) refuse to
//! exchange data: forwarding between them could loop or land on a node that does not own the
//! key.

use super::partition::PARTITIONS;

/// Where a partition's requests are served, as seen from one core of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The asking core owns it.
    Here,
    /// Another core of this node.
    Core(usize),
    /// Another node (its index in the map's node list).
    Node(usize),
}

/// One node of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapNode {
    pub id: String,
    /// The peer address the others connect to (part of the checksum: two nodes that would
    /// send a partition's requests to different places must not agree).
    pub peer: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMap {
    name: String,
    nodes: Vec<MapNode>,
    /// `primary[p]`: the index in `nodes` of partition `p`'s primary.
    primary: Vec<u16>,
    /// `backups[p * replicas ..][..replicas]`: the nodes holding partition `p`'s copies.
    backups: Vec<u16>,
    replicas: usize,
    revision: u64,
    checksum: u32,
}

impl ClusterMap {
    /// The map of a single node that owns every partition (no `--cluster`).
    pub fn single() -> ClusterMap {
        ClusterMap::derive("", vec![MapNode { id: String::new(), peer: String::new() }], 0)
    }

    /// The map every node derives from the same node list: nodes ordered by id (so the order
    /// of the file does not matter), partition `p` on node `p mod N`. Balanced: each node is
    /// primary for `PARTITIONS / N` or one more.
    ///
    /// Each partition has `replicas` backups (at most `N - 1`), on nodes other than its
    /// primary and each other: backup `j` of `p` is `N - 1` steps of a rotation that turns
    /// with `p / N`, so the partitions a node is primary for are backed up evenly by all the
    /// others (no node holds every backup of another's).
    pub fn derive(name: &str, mut nodes: Vec<MapNode>, replicas: usize) -> ClusterMap {
        assert!(!nodes.is_empty() && nodes.len() <= PARTITIONS as usize, "a map needs 1..=PARTITIONS nodes");
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let n = nodes.len();
        let replicas = replicas.min(n - 1);
        let primary: Vec<u16> = (0..PARTITIONS as usize).map(|p| (p % n) as u16).collect();
        let mut backups = Vec::with_capacity(PARTITIONS as usize * replicas);
        for (p, &first) in primary.iter().enumerate() {
            for j in 0..replicas {
                let step = 1 + (p / n + j) % (n - 1);
                backups.push(((first as usize + step) % n) as u16);
            }
        }
        let mut map = ClusterMap { name: name.to_string(), nodes, primary, backups, replicas, revision: 1, checksum: 0 };
        map.checksum = map.compute_checksum();
        map
    }

    /// CRC32C over the name, the revision, every node (id, peer address) and every primary,
    /// each length-prefixed so that no two different maps serialize alike.
    fn compute_checksum(&self) -> u32 {
        let mut bytes = Vec::with_capacity(64 + self.primary.len() * 2);
        let mut field = |b: &[u8]| {
            bytes.extend_from_slice(&(b.len() as u32).to_be_bytes());
            bytes.extend_from_slice(b);
        };
        field(self.name.as_bytes());
        field(&self.revision.to_be_bytes());
        for node in &self.nodes {
            field(node.id.as_bytes());
            field(node.peer.as_bytes());
        }
        for p in &self.primary {
            bytes.extend_from_slice(&p.to_be_bytes());
        }
        bytes.extend_from_slice(&4u32.to_be_bytes());
        bytes.extend_from_slice(&(self.replicas as u32).to_be_bytes());
        for b in &self.backups {
            bytes.extend_from_slice(&b.to_be_bytes());
        }
        crc32c::crc32c(&bytes)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn nodes(&self) -> &[MapNode] {
        &self.nodes
    }

    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn checksum(&self) -> u32 {
        self.checksum
    }

    /// The index of partition `p`'s primary.
    pub fn primary(&self, p: u16) -> usize {
        self.primary[p as usize % self.primary.len()] as usize
    }

    /// Backups per partition.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The nodes holding backups of partition `p`, in order.
    pub fn backups(&self, p: u16) -> &[u16] {
        let at = p as usize % PARTITIONS as usize * self.replicas;
        &self.backups[at..at + self.replicas]
    }

    /// Whether `node` holds a backup of partition `p`.
    pub fn is_backup(&self, p: u16, node: usize) -> bool {
        self.backups(p).iter().any(|&b| b as usize == node)
    }

    /// How many partitions each node is primary for, in node order.
    pub fn primaries_per_node(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.len()];
        for &p in &self.primary {
            counts[p as usize] += 1;
        }
        counts
    }

    /// Where partition `p` is served, asked by core `core` of node `me` with `cores` cores.
    /// Inside a node, partition `p` is on core `p mod cores`.
    #[inline]
    pub fn owner(&self, p: u16, me: usize, core: usize, cores: usize) -> Owner {
        let node = self.primary(p);
        if node != me {
            return Owner::Node(node);
        }
        local_owner(p, core, cores)
    }
}

/// Where partition `p` is served inside a node of `cores` cores, asked by core `core`.
#[inline]
pub fn local_owner(p: u16, core: usize, cores: usize) -> Owner {
    match p as usize % cores {
        c if c == core => Owner::Here,
        c => Owner::Core(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<MapNode> {
        (0..n).map(|i| MapNode { id: format!("n{i:02}"), peer: format!("127.0.0.1:{}", 11311 + i) }).collect()
    }

    #[test]
    fn balanced_and_deterministic_for_1_to_16_nodes() {
        for n in 1..=16 {
            let map = ClusterMap::derive("prod", nodes(n), 1);
            let counts = map.primaries_per_node();
            let (lo, hi) = (PARTITIONS as usize / n, PARTITIONS as usize / n + 1);
            assert!(counts.iter().all(|&c| c == lo || c == hi), "{n} nodes: {counts:?}");
            assert_eq!(counts.iter().sum::<usize>(), PARTITIONS as usize);
            // The same list in another order gives the same map, checksum included.
            let mut reversed = nodes(n);
            reversed.reverse();
            assert_eq!(ClusterMap::derive("prod", reversed, 1), map, "{n} nodes");
        }
    }

    #[test]
    fn checksum_tells_maps_apart() {
        let a = ClusterMap::derive("prod", nodes(3), 1);
        assert_ne!(a.checksum(), ClusterMap::derive("test", nodes(3), 1).checksum(), "another name");
        assert_ne!(a.checksum(), ClusterMap::derive("prod", nodes(4), 1).checksum(), "another node list");
        let mut moved = nodes(3);
        moved[1].peer = "127.0.0.1:9999".into();
        assert_ne!(a.checksum(), ClusterMap::derive("prod", moved, 1).checksum(), "a peer address moved");
    }

    #[test]
    fn backups_are_distinct_other_nodes_spread_evenly() {
        for n in 2..=7 {
            for r in 1..=3 {
                let map = ClusterMap::derive("prod", nodes(n), r);
                let r = r.min(n - 1);
                assert_eq!(map.replicas(), r);
                // per (primary, backup) pair: how many partitions.
                let mut pairs = vec![vec![0usize; n]; n];
                for p in 0..PARTITIONS {
                    let mut all = vec![map.primary(p) as u16];
                    all.extend_from_slice(map.backups(p));
                    let mut sorted = all.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    assert_eq!(sorted.len(), r + 1, "{n} nodes, p {p}: {all:?}");
                    for &b in map.backups(p) {
                        pairs[map.primary(p)][b as usize] += 1;
                    }
                }
                for (a, row) in pairs.iter().enumerate() {
                    let others: Vec<usize> = row.iter().enumerate().filter(|&(b, _)| b != a).map(|(_, &c)| c).collect();
                    let (lo, hi) = (others.iter().min().unwrap(), others.iter().max().unwrap());
                    assert!(hi - lo <= 1 + r, "{n} nodes r {r}: node {a} backed up unevenly {row:?}");
                }
            }
        }
        assert_ne!(ClusterMap::derive("prod", nodes(3), 1).checksum(), ClusterMap::derive("prod", nodes(3), 2).checksum());
    }

    #[test]
    fn owner_is_here_another_core_or_another_node() {
        let map = ClusterMap::derive("prod", nodes(2), 1);
        // Partition 2 is on node 0 (2 mod 2), core 0 of 2 (2 mod 2).
        assert_eq!(map.owner(2, 0, 0, 2), Owner::Here);
        assert_eq!(map.owner(2, 0, 1, 2), Owner::Core(0));
        assert_eq!(map.owner(3, 0, 0, 2), Owner::Node(1));
        assert_eq!(ClusterMap::single().owner(3, 0, 0, 2), Owner::Core(1));
    }
}
