//! The memcached text protocol, classic and meta commands: a codec with no I/O.
//!
//! [`decode`] takes the bytes a connection has read and returns one request and the number of
//! bytes it used, `Ok(None)` while it is not whole, or a [`DecodeError`] that carries
//! memcached's error line and says which bytes to drop and whether to close.
//! [`dispatch::action`] maps a request to storage commands, each with the [`ReplyTo`] that
//! [`write_outcome`] turns, with the shard's outcome, into memcached's reply on whichever core
//! ran it. Commands, replies, limits and what caskade does not serve:
//! `protocol-spec/memcached-text.md`.

pub mod base64;
pub mod dispatch;
pub mod line;
pub mod meta;
pub mod metadump;
pub mod reply;
pub mod request;
pub mod watch;

#[cfg(test)]
mod tests;

pub use dispatch::{action, Action};
pub use reply::{write_outcome, MetaReply, ReplyTo};
pub use request::{decode, frame_len, DecodeError, Key, Keys, Request, StoreKind, Unlink};
