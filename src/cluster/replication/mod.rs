//! Replication's decisions, free of I/O: what a primary's core keeps of its recent changes
//! ([`backlog`]) and what it sends each backup, when ([`stream`]). Frames and ticks in,
//! frames and decisions out; the event loop (`server::replicate`) only carries the bytes,
//! runs the shard scans a stream asks for, and applies what a backup receives.
//!
//! The model, after Couchbase's DCP and Redis's PSYNC:
//! - every mutation of a partition gets the partition's next seqno on its primary;
//! - the primary's core streams each partition's changes in seqno order to the core of each
//!   backup that holds it, batched per turn, with a window of unacknowledged bytes;
//! - a backup that (re)connects says where each partition's copy stands; the primary goes on
//!   from there when its backlog still holds every later change (a partial catch-up), and
//!   otherwise sends the partition's live items between snapshot markers (a full resync),
//!   then the changes made since the snapshot began;
//! - a flush is a marker placed after the seqno each partition had when it ran.

pub mod backfill;
pub mod backlog;
pub mod history;
pub mod lag;
pub mod stream;

pub use backlog::Backlog;
pub use lag::LagHistogram;
pub use stream::{Stream, StreamState};

#[cfg(test)]
mod tests;
