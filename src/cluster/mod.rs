//! Cluster concepts. Today: where a key lives. Replication and failover will join here.

pub mod partition;

pub use partition::{core_of, partition_of, PARTITIONS};
