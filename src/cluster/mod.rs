//! The cluster's decisions, free of I/O: where a key's partition lives ([`partition`]), the
//! map of nodes, primaries and backups ([`map`]), the cluster file ([`config`]), and the
//! replication stream's decisions ([`replication`]), and the split-brain audit ([`claims`]). Failover will join here.

pub mod claims;
pub mod config;
pub mod map;
pub mod partition;
pub mod replication;

pub use map::{ClusterMap, Owner};
pub use partition::{core_of, partition_of, PartitionSet, PARTITIONS};
