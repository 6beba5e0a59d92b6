//! soma-flow-localnet's integration tests, in one binary: transactions are
//! built and signed with soma-flow-chain exactly as a client would.

mod common;
mod epochs;
mod fees;
mod inputs;
mod models;
mod persistence;
mod robustness;
mod targets;
