//! Wire protocols. Codecs here do no I/O.

pub mod binary;
