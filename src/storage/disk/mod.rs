//! The on-disk log of a shard: records, segments, hint files, recovery and merges.
//! The formats are `protocol-spec/storage-format.md`.

pub mod fs;
pub mod group_commit;
pub mod hint;
pub mod record;
pub mod segment;
pub mod log;
pub mod merge;
pub mod recovery;
pub mod watermark;

pub use fs::{Fs, LogFile, RealFs, SharedFs};
pub use log::{SyncRounds, Fsync, Log, LogConfig, LogError, Segment};
pub use segment::Location;
