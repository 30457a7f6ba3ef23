pub mod cluster;
pub mod config;
pub mod protocol;
pub mod server;
pub mod stats;
pub mod storage;
