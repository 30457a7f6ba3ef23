//! Storage: what a shard holds and how it answers commands.

pub mod command;
pub mod expiry;
pub mod item;
pub mod shard;

pub use command::{Command, Outcome, StoreMode};
pub use shard::{Shard, ShardConfig, ShardCounters};
