//! SOMA stage kinds.

pub mod crypto;
pub mod identity;
pub mod network;
mod private_file;
pub mod storage;
