//! The cluster map: the nodes, and for each partition its primary; a revision and a checksum.
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
    revision: u64,
    checksum: u32,
}

impl ClusterMap {
    /// The map of a single node that owns every partition (no `--cluster`).
    pub fn single() -> ClusterMap {
        ClusterMap::derive("", vec![MapNode { id: String::new(), peer: String::new() }])
    }

    /// The map every node derives from the same node list: nodes ordered by id (so the order
    /// of the file does not matter), partition `p` on node `p mod N`. Balanced: each node is
    /// primary for `PARTITIONS / N` or one more.
    pub fn derive(name: &str, mut nodes: Vec<MapNode>) -> ClusterMap {
        assert!(!nodes.is_empty() && nodes.len() <= PARTITIONS as usize, "a map needs 1..=PARTITIONS nodes");
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let n = nodes.len();
        let primary = (0..PARTITIONS as usize).map(|p| (p % n) as u16).collect();
        let mut map = ClusterMap { name: name.to_string(), nodes, primary, revision: 1, checksum: 0 };
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
            let map = ClusterMap::derive("prod", nodes(n));
            let counts = map.primaries_per_node();
            let (lo, hi) = (PARTITIONS as usize / n, PARTITIONS as usize / n + 1);
            assert!(counts.iter().all(|&c| c == lo || c == hi), "{n} nodes: {counts:?}");
            assert_eq!(counts.iter().sum::<usize>(), PARTITIONS as usize);
            // The same list in another order gives the same map, checksum included.
            let mut reversed = nodes(n);
            reversed.reverse();
            assert_eq!(ClusterMap::derive("prod", reversed), map, "{n} nodes");
        }
    }

    #[test]
    fn checksum_tells_maps_apart() {
        let a = ClusterMap::derive("prod", nodes(3));
        assert_ne!(a.checksum(), ClusterMap::derive("test", nodes(3)).checksum(), "another name");
        assert_ne!(a.checksum(), ClusterMap::derive("prod", nodes(4)).checksum(), "another node list");
        let mut moved = nodes(3);
        moved[1].peer = "127.0.0.1:9999".into();
        assert_ne!(a.checksum(), ClusterMap::derive("prod", moved).checksum(), "a peer address moved");
    }

    #[test]
    fn owner_is_here_another_core_or_another_node() {
        let map = ClusterMap::derive("prod", nodes(2));
        // Partition 2 is on node 0 (2 mod 2), core 0 of 2 (2 mod 2).
        assert_eq!(map.owner(2, 0, 0, 2), Owner::Here);
        assert_eq!(map.owner(2, 0, 1, 2), Owner::Core(0));
        assert_eq!(map.owner(3, 0, 0, 2), Owner::Node(1));
        assert_eq!(ClusterMap::single().owner(3, 0, 0, 2), Owner::Core(1));
    }
}
