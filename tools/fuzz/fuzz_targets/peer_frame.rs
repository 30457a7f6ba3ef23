//! Feeds fuzzer bytes to the peer protocol's decoder the way a peer link does: `Frame::decode`
//! from the front of the buffer, then every parser on every frame (`Hello::parse`,
//! `HelloOk::parse`, `auth::parse_auth`, `forward::parse_request`, `forward::parse_outcome`),
//! with round trips checked where a parse succeeds. The properties are in
//! `peer_frame_check.rs`, shared with `tests/peer_frame_fuzz.rs` (plain `cargo test`).
//!
//! Input: the first byte picks the body limit; the rest is the byte stream a peer sent.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "peer_frame_check.rs"]
mod peer_frame_check;

fuzz_target!(|data: &[u8]| {
    peer_frame_check::check(data);
});
