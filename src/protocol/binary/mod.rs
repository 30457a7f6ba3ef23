//! The memcached binary protocol: a codec with no I/O.
//!
//! [`Request::decode`] takes the bytes a connection has read and returns one request and the
//! number of bytes it used, `Ok(None)` when the frame is not whole yet, or a [`DecodeError`]
//! that says which status to answer with and whether the connection survives. The wire
//! format is written out in `protocol-spec/memcached-binary.md`.

pub mod dispatch;
pub mod header;
pub mod opcode;
pub mod request;
pub mod response;
pub mod status;

pub use header::{Header, HEADER_LEN, REQUEST_MAGIC, RESPONSE_MAGIC};
pub use opcode::Opcode;
pub use request::{DecodeError, Limits, Request, RequestExtras, MAX_KEY_LEN};
pub use response::{write_error, write_response, Response};
pub use status::Status;
