//! The cluster's decisions, free of I/O: where a key's partition lives ([`partition`]), the
//! map of nodes and primaries ([`map`]), and the cluster file ([`config`]). Replication and
//! failover will join here.

pub mod config;
pub mod map;
pub mod partition;

pub use map::{ClusterMap, Owner};
pub use partition::{core_of, partition_of, PARTITIONS};
