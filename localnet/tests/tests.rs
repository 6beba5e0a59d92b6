//! soma-flow-localnet's integration tests, in one binary: transactions are built and
//! signed with soma-flow-chain exactly as a client would; the server tests drive the
//! gRPC services with the Rust client and with the official Python SDK.

mod common;
mod epochs;
mod fees;
mod inputs;
mod models;
mod persistence;
mod python_sdk;
mod robustness;
mod served;
mod server;
mod targets;
