//! soma-flow-chain's integration tests, in one binary.

mod client;
mod common;
mod convert;
mod crypto;
mod document;
mod identity;
mod proto;
mod robustness;
mod sdk;
mod vectors;
