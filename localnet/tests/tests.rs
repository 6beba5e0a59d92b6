//! soma-flow-localnet's integration tests, in one binary.

mod common;
mod python_sdk;
mod server;
