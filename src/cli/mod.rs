//! SOMA commands of the binary, beside the engine's generic ones.

pub mod account;
pub mod earn;
pub mod gaps;
pub mod localnet;
pub mod score;
