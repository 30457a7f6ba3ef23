pub mod protocol;
pub mod storage;
