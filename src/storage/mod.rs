//! Storage: what a shard holds and how it answers commands.

pub mod change;
pub mod command;
pub mod disk;
pub mod expiry;
pub mod item;
pub mod keydir;
pub mod shard;

pub use command::{Command, Outcome, StoreMode};
pub use shard::{Evicted, ItemInfo, ItemMeta, MetaOps, Mode, Shard, ShardConfig, ShardCounters};
