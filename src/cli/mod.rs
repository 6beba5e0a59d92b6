//! SOMA commands of the binary, beside the engine's generic ones.

pub mod devnet;
pub mod localnet;
pub mod score;
